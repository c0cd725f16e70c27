#!/usr/bin/env bash
# The push worker against the mock FCM and OAuth2 servers, end to end, for
# every class of answer: 200; 404 UNREGISTERED and 400 INVALID_ARGUMENT
# deactivate the device; 429 QUOTA_EXCEEDED backs off a minute at least;
# 503 retries with backoff until delivered, or until the last attempt
# fails the row; a request that gets no answer times out and is retried;
# 401 renews the access token once.  One OAuth2 exchange serves many
# messages.  Rows that cannot be sent are settled without a request: too
# late, no device, payload over 4 KB, no credentials.
. "$(dirname "$0")/tap.bash"
. "$(dirname "$0")/push_lib.bash"
plan 25

q -d membership -c "ALTER SYSTEM SET membership.push_retry_base = '200ms'" \
	-c "ALTER SYSTEM SET membership.push_max_attempts = 3" \
	-c "ALTER SYSTEM SET membership.push_timeout_ms = '1500ms'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

org=$(push_org fcm-a)
m1=$(push_member "$org" m1)
m2=$(push_member "$org" m2)
m3=$(push_member "$org" m3)
m4=$(push_member "$org" m4)
push_device "$org" "$m1" fcm ok-a1 >/dev/null
push_device "$org" "$m2" fcm ok-a2 >/dev/null
d_dead=$(push_device "$org" "$m2" fcm dead-a2)
d_bad=$(push_device "$org" "$m3" fcm bad-a3)
push_device "$org" "$m4" fcm busy-a4 >/dev/null

# 200, and one token exchange for all of them
ids=()
for i in $(seq 1 20); do ids+=("$(push_enqueue "$org" "$m1")"); done
wait_for 15 "SELECT count(*) = 20 FROM membership.notifications WHERE id IN ($(IFS=,; echo "${ids[*]}")) AND status = 'sent'"
is "$(q -d membership -c "SELECT count(*) FILTER (WHERE status = 'sent' AND sent_at IS NOT NULL AND lease_until IS NULL AND attempts = 1)
                          FROM membership.notifications WHERE id IN ($(IFS=,; echo "${ids[*]}"))")" 20 \
	"twenty notifications to a live FCM token are sent, each in one attempt"
is "$(mock_counts tokens,ok-a1,delivered)" 20 "the mock FCM received all twenty"
is "$(mock_counts oauth_exchanges)" 1 "one OAuth2 token exchange served all of them (the access token is cached)"
like "$(mock_counts tokens,ok-a1,last,message)" '"title": ?"Hello"' "the FCM message carries the notification's title"
like "$(mock_counts tokens,ok-a1,last,message,data,membership_notification_id)" '^[0-9]+$' \
	"and the notification's id as a string in data"
is "$(mock_counts tokens,ok-a1,last,project)" membership-test "posted to the organisation's project"
is "$(mock_counts rejected)" "{}" "the mock rejected nothing: paths, headers, JWT signature and claims were right"

# 404 UNREGISTERED: the dead device is deactivated; the live one got it
n=$(push_enqueue "$org" "$m2")
wait_status 10 "$n" sent
is "$(status "$n")" "sent 1" "a notification to a live and a dead device is sent"
is "$(q -d membership -c "SELECT active || ' ' || deactivation_reason FROM membership.devices WHERE id = $d_dead")" \
	"false FCM: UNREGISTERED" "404 UNREGISTERED deactivates the dead device"
is "$(q -d membership -c "SELECT string_agg(status, ',' ORDER BY device_id) FROM membership.push_deliveries WHERE notification_id = $n")" \
	"sent,deactivated" "each device's outcome is logged"

# 400 INVALID_ARGUMENT about the token: deactivated; no device got it
n=$(push_enqueue "$org" "$m3")
wait_for 10 "SELECT NOT active FROM membership.devices WHERE id = $d_bad"
is "$(q -d membership -c "SELECT active || ' ' || deactivation_reason FROM membership.devices WHERE id = $d_bad")" \
	"false FCM: INVALID_ARGUMENT: The registration token is not a valid FCM registration token" \
	"400 INVALID_ARGUMENT about the token deactivates the device"
wait_status 10 "$n" dropped
is "$(status "$n")" "dropped no_device 1" "a notification whose only device was dead is dropped (no_device)"

# 429 QUOTA_EXCEEDED: back off a minute at least
n=$(push_enqueue "$org" "$m4")
wait_for 10 "SELECT status = 'queued' AND attempts = 1 FROM membership.notifications WHERE id = $n"
is "$(q -d membership -c "SELECT status || ' ' || attempts || ' ' || (due_at > now() + interval '55 seconds') || ' ' || last_error
                          FROM membership.notifications WHERE id = $n")" \
	"queued 1 true FCM: HTTP 429 QUOTA_EXCEEDED" "429 QUOTA_EXCEEDED queues the retry a minute later at least"
q -d membership -c "DELETE FROM membership.notifications WHERE id = $n" >/dev/null

# 503 twice, then delivered; 503 for ever: failed after the last attempt
m5=$(push_member "$org" m5)
m6=$(push_member "$org" m6)
push_device "$org" "$m5" fcm down2-a5 >/dev/null
push_device "$org" "$m6" fcm down-a6 >/dev/null
n5=$(push_enqueue "$org" "$m5")
n6=$(push_enqueue "$org" "$m6")
wait_status 20 "$n5" sent
is "$(status "$n5")" "sent 3" "503 UNAVAILABLE is retried with backoff: delivered on the third attempt"
is "$(mock_counts tokens,down2-a5,requests)" 3 "the mock got three requests for it"
wait_status 20 "$n6" failed
is "$(q -d membership -c "SELECT status || ' ' || attempts || ' ' || last_error FROM membership.notifications WHERE id = $n6")" \
	"failed 3 gave up after 3 attempts: FCM: HTTP 503 UNAVAILABLE" \
	"a token that always meets 503 is failed after push_max_attempts, with the last error"
is "$(mock_counts tokens,down-a6,requests)" 3 "retries are bounded: three requests, no more"

# no answer: the request times out and the retry delivers
m7=$(push_member "$org" m7)
push_device "$org" "$m7" fcm stall1-a7 >/dev/null
n=$(push_enqueue "$org" "$m7")
wait_status 20 "$n" sent
is "$(q -d membership -c "SELECT status || ' ' || attempts FROM membership.notifications WHERE id = $n")" "sent 2" \
	"a request without an answer times out and the retry delivers it"

# 401: the access token is renewed once
mock_control revoke-oauth
n=$(push_enqueue "$org" "$m1")
wait_status 10 "$n" sent
is "$(status "$n")" "sent 1" "after a 401 the worker renews the access token and resends in the same attempt"
is "$(mock_counts oauth_exchanges)" 2 "with one more token exchange"

# settled without a request
before=$(mock_counts fcm_requests)
late=$(push_enqueue "$org" "$m1" "now() - interval '1 minute'" not_after "now() - interval '1 second'")
m8=$(push_member "$org" m8)
none=$(push_enqueue "$org" "$m8" "now()" "budgeted, slot_at" "true, now()")
big=$(push_enqueue "$org" "$m1" "now()" data "jsonb_build_object('blob', repeat('x', 5000))")
wait_for 10 "SELECT count(*) = 3 FROM membership.notifications WHERE id IN ($late, $none, $big) AND status IN ('dropped', 'failed')"
is "$(status "$late")" "dropped expired 0" "a row past not_after is dropped (expired) without being sent"
is "$(q -d membership -c "SELECT concat_ws(' ', status, reason, attempts, budgeted) FROM membership.notifications WHERE id = $none")" \
	"dropped no_device 0 f" "a member without an active device: dropped (no_device), the budget slot released"
like "$(q -d membership -c "SELECT status || ': ' || last_error FROM membership.notifications WHERE id = $big")" \
	"^failed: payload too large: 5[0-9]{3} bytes, the limit is 4096$" "a payload over 4 KB fails with a clear error"

other=$(q -d membership -c "SELECT fixture.new_org('fcm-nocreds')")
m9=$(push_member "$other" m9)
push_device "$other" "$m9" fcm ok-b9 >/dev/null
n=$(push_enqueue "$other" "$m9")
wait_status 10 "$n" failed
is "$(q -d membership -c "SELECT last_error FROM membership.notifications WHERE id = $n")" \
	"the organisation has no FCM credentials" "an organisation without FCM credentials: failed, with why"
is "$(mock_counts fcm_requests)" "$before" "none of these reached FCM"

q -d membership -c "ALTER SYSTEM RESET membership.push_retry_base" -c "ALTER SYSTEM RESET membership.push_max_attempts" \
	-c "ALTER SYSTEM RESET membership.push_timeout_ms" -c "SELECT pg_reload_conf()" >/dev/null
finish
