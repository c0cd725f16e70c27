# shellcheck shell=bash
# Helpers of the push worker's integration tests (test/integration/push_*.sh),
# sourced after tap.bash.  The cluster's push worker delivers the
# "membership" database's outbox to the mock servers script/lib.sh started
# (test/mock/push_mock.js); these helpers make organisations with the
# mocks' test credentials, members, devices and due notifications, and
# read what the mocks received.

worker_db

# push_org SLUG [apns topic]: an organisation with FCM and APNs credentials
# (the mocks' test service account and APNs key); prints its id.
push_org() {
	q -d membership -v slug="$1" -v topic="${2:-app.membership.test}" \
		-v fcm_key="$(cat "$MB_PUSH_DIR/fcm_sa.key")" -v apns_key="$(cat "$MB_PUSH_DIR/apns.p8")" \
		-v token_uri="$MB_PUSH_URL/token" <<'SQL'
SELECT fixture.new_org(:'slug') AS org \gset
INSERT INTO membership.push_credentials (organisation_id, fcm_project_id, fcm_client_email, fcm_private_key,
    fcm_token_uri, apns_key_id, apns_team_id, apns_private_key, apns_topic)
VALUES (:'org', 'membership-test', 'push-worker@membership-test.iam.gserviceaccount.com', :'fcm_key',
        :'token_uri', 'MOCKKEY001', 'MOCKTEAM01', :'apns_key', :'topic');
SELECT :'org';
SQL
}

# push_member ORG EXTERNAL_ID: a member of ORG; prints its id.
push_member() {
	q -d membership -c "INSERT INTO membership.members (organisation_id, external_id, email)
	                    VALUES ('$1', '$2', '$2@push.example') RETURNING id"
}

# push_device ORG MEMBER PLATFORM TOKEN: prints the device's id.
push_device() {
	q -d membership -c "INSERT INTO membership.devices (organisation_id, member_id, platform, token)
	                    VALUES ('$1', '$2', '$3', '$4') RETURNING id"
}

# push_enqueue ORG MEMBER [DUE_AT] [COLUMNS VALUES]: a queued push
# notification, due now by default (DUE_AT and VALUES are SQL, COLUMNS a
# list of more columns to set); prints its id.
push_enqueue() {
	q -d membership -c "INSERT INTO membership.notifications (organisation_id, member_id, channel, priority,
	                        category, title, body, sender, status, due_at${4:+, $4})
	                    VALUES ('$1', '$2', 'push', 2, 'news', 'Hello', 'A test notification',
	                            'organisation', 'queued', ${3:-now()}${5:+, $5}) RETURNING id"
}

# status ID: "status reason attempts" of a notification.
status() {
	q -d membership -c "SELECT concat_ws(' ', status, reason, attempts) FROM membership.notifications WHERE id = $1"
}

# mock_counts [JSON PATH...]: what the mocks received (the whole JSON, or one value).
mock_counts() {
	local json
	json=$(curl -s "$MB_PUSH_CONTROL/counts")
	if [ $# -eq 0 ]; then
		echo "$json"
	else
		echo "SELECT coalesce((:'j'::jsonb) #>> :'p', '0')" | q -d membership -v j="$json" -v p="{$1}"
	fi
}

mock_control() { curl -s -X POST "$MB_PUSH_CONTROL/$1" >/dev/null; }

# each test counts what the mocks received from its own start
mock_control reset

# wait_status SECONDS ID STATUS: until notification ID has STATUS.
wait_status() {
	wait_for "$1" "SELECT status = '$3' FROM membership.notifications WHERE id = $2"
}
