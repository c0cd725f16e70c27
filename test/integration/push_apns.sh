#!/usr/bin/env bash
# The push worker against the mock APNs server, end to end: 200 with the
# headers APNs wants; 410 Unregistered and 400 BadDeviceToken deactivate
# the device; 429 waits for Retry-After before the retry; 503 retries with
# backoff; 403 ExpiredProviderToken renews the provider token once; a
# request without an answer times out and is retried; 503 for ever fails
# the row after the last attempt; a topic APNs refuses fails the row.  One
# ES256 provider token serves every request of an organisation.
. "$(dirname "$0")/tap.bash"
. "$(dirname "$0")/push_lib.bash"
plan 20

q -d membership -c "ALTER SYSTEM SET membership.push_retry_base = '200ms'" \
	-c "ALTER SYSTEM SET membership.push_max_attempts = 3" \
	-c "ALTER SYSTEM SET membership.push_timeout_ms = '1500ms'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
jwts_before=$(mock_counts apns_distinct_jwts)

org=$(push_org apns-a)
m1=$(push_member "$org" m1)
m2=$(push_member "$org" m2)
m3=$(push_member "$org" m3)
m4=$(push_member "$org" m4)
m5=$(push_member "$org" m5)
push_device "$org" "$m1" apns ok-i1 >/dev/null
d_dead=$(push_device "$org" "$m2" apns dead-i2)
d_bad=$(push_device "$org" "$m3" apns bad-i3)
push_device "$org" "$m4" apns busy1-i4 >/dev/null
push_device "$org" "$m5" apns down2-i5 >/dev/null

ids=()
for i in $(seq 1 10); do ids+=("$(push_enqueue "$org" "$m1")"); done
urgent=$(q -d membership -c "INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category,
                                  title, body, data, sender, status, due_at, not_after)
                              VALUES ('$org', '$m1', 'push', 1, 'security', 'Hello', 'Urgent', '{\"deep_link\": \"app://offers/7\"}',
                                      'platform', 'queued', now(), '2030-01-01 00:00:00+00') RETURNING id")
wait_for 15 "SELECT count(*) = 11 FROM membership.notifications WHERE id IN ($(IFS=,; echo "${ids[*]}"), $urgent) AND status = 'sent'"
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE id IN ($(IFS=,; echo "${ids[*]}"), $urgent)
                          AND status = 'sent' AND attempts = 1")" 11 "eleven notifications to a live APNs token are sent"
is "$(mock_counts tokens,ok-i1,delivered)" 11 "the mock APNs received all of them"
is "$(mock_counts rejected)" "{}" "the mock rejected nothing: JWT signature, kid, iss, topic, push type and size were right"
is "$(( $(mock_counts apns_distinct_jwts) - jwts_before ))" 1 "one ES256 provider token served every request"
last=$(mock_counts tokens,ok-i1,last)
is "$(echo "SELECT concat_ws(' ', j->>'topic', j->>'push_type', j->>'priority', j->>'expiration', j->>'collapse_id' = 'membership-$urgent')
              FROM (SELECT :'j'::jsonb AS j) s" | q -d membership -v j="$last")" \
	"app.membership.test alert 10 1893456000 t" \
	"headers: apns-topic, apns-push-type alert, apns-priority 10 for priority 1, apns-expiration from not_after, apns-collapse-id"
is "$(echo "SELECT concat_ws(' ', j #>> '{payload,aps,alert,title}', j #>> '{payload,deep_link}', j #>> '{payload,membership_notification_id}')
              FROM (SELECT :'j'::jsonb AS j) s" | q -d membership -v j="$last")" \
	"Hello app://offers/7 $urgent" "the payload: the alert in aps, the data beside it, the notification's id"

n=$(push_enqueue "$org" "$m2")
wait_status 10 "$n" dropped
is "$(q -d membership -c "SELECT active || ' ' || deactivation_reason FROM membership.devices WHERE id = $d_dead")" \
	"false APNs: HTTP 410 Unregistered" "410 Unregistered deactivates the device"
n=$(push_enqueue "$org" "$m3")
wait_status 10 "$n" dropped
is "$(q -d membership -c "SELECT active || ' ' || deactivation_reason FROM membership.devices WHERE id = $d_bad")" \
	"false APNs: HTTP 400 BadDeviceToken" "400 BadDeviceToken deactivates the device"
is "$(status "$n")" "dropped no_device 1" "and the notification, with no device left, is dropped"

# 429 with Retry-After: 2 (the backoff alone would be 100-200 ms)
n=$(push_enqueue "$org" "$m4")
wait_for 10 "SELECT attempts = 1 AND status = 'queued' FROM membership.notifications WHERE id = $n"
is "$(q -d membership -c "SELECT (due_at - now() > interval '1.5 seconds') || ' ' || last_error FROM membership.notifications WHERE id = $n")" \
	"true APNs: HTTP 429 TooManyRequests" "429 queues the retry after the server's Retry-After"
wait_status 10 "$n" sent
is "$(q -d membership -c "SELECT status || ' ' || attempts || ' ' || (sent_at - created_at >= interval '2 seconds')
                          FROM membership.notifications WHERE id = $n")" "sent 2 true" "and the retry, two seconds later, delivers it"

n=$(push_enqueue "$org" "$m5")
wait_status 20 "$n" sent
is "$(status "$n")" "sent 3" "503 is retried with backoff: delivered on the third attempt"

# 403 ExpiredProviderToken: a new provider token, once
mock_control expire-apns
jwts=$(mock_counts apns_distinct_jwts)
n=$(push_enqueue "$org" "$m1")
wait_status 10 "$n" sent
is "$(status "$n")" "sent 1" "after 403 ExpiredProviderToken the worker renews the token and resends in the same attempt"
is "$(( $(mock_counts apns_distinct_jwts) - jwts ))" 1 "with one new provider token"
like "$(mock_counts rejected,apns_expired_token)" '^[1-9]' "the mock did refuse the old one"

# no answer, then delivered; 503 for ever: failed after the last attempt
m7=$(push_member "$org" m7)
m8=$(push_member "$org" m8)
push_device "$org" "$m7" apns stall1-i7 >/dev/null
push_device "$org" "$m8" apns down-i8 >/dev/null
n7=$(push_enqueue "$org" "$m7")
n8=$(push_enqueue "$org" "$m8")
wait_status 20 "$n7" sent
is "$(q -d membership -c "SELECT status || ' ' || attempts FROM membership.notifications WHERE id = $n7")" "sent 2" \
	"a request APNs does not answer times out and the retry delivers it"
wait_status 20 "$n8" failed
is "$(q -d membership -c "SELECT status || ' ' || attempts || ' ' || last_error FROM membership.notifications WHERE id = $n8")" \
	"failed 3 gave up after 3 attempts: APNs: HTTP 503 ServiceUnavailable" \
	"503 for ever: failed after push_max_attempts, with the last error"
is "$(mock_counts tokens,down-i8,requests)" 3 "retries are bounded: three requests, no more"

# a topic APNs refuses
org2=$(push_org apns-b app.not.ours)
m6=$(push_member "$org2" m6)
push_device "$org2" "$m6" apns ok-i6 >/dev/null
n=$(push_enqueue "$org2" "$m6")
wait_status 10 "$n" failed
is "$(q -d membership -c "SELECT status || ' ' || attempts || ' ' || last_error FROM membership.notifications WHERE id = $n")" \
	"failed 1 APNs: HTTP 400 TopicDisallowed" "a topic APNs refuses fails the row at once, with why"
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE status = 'sending'")" 0 "no row is left sending"

q -d membership -c "ALTER SYSTEM RESET membership.push_retry_base" -c "ALTER SYSTEM RESET membership.push_max_attempts" \
	-c "ALTER SYSTEM RESET membership.push_timeout_ms" -c "SELECT pg_reload_conf()" >/dev/null
finish
