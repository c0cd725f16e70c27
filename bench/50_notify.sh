# shellcheck shell=bash
# Audience enqueue: membership.enqueue_notification_audience() to every
# active member of the largest organisations of the data set (12,672 of
# 13,500 members for the largest), with realistic preferences (a tenth with quiet hours in
# one of four time zones, a twentieth opted out of push, a third consenting
# to marketing).  Each case is measured inside the server, median of 3,
# beside the floor: a plain INSERT ... SELECT of the same rows with no rule
# at all, measured in the same run.  Target: < 0.5 s.  Sourced by
# script/bench.
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TEMPORARY TABLE bench_orgs AS
SELECT id FROM membership.organisations WHERE slug IN ('physicians', 'dentists', 'nurses');
DO $$
DECLARE
    v_org uuid;
BEGIN
    FOR v_org IN SELECT id FROM bench_orgs LOOP
        PERFORM membership.set_tenant(v_org);
INSERT INTO membership.notification_preferences (organisation_id, member_id, opted_out_channels, quiet_start, quiet_end, time_zone)
SELECT m.organisation_id, m.id,
       CASE WHEN abs(hashtext(m.external_id)) % 20 = 0 THEN '{push}'::text[] ELSE '{}' END,
       CASE WHEN abs(hashtext(m.external_id)) % 10 = 1 THEN time '22:00' END,
       CASE WHEN abs(hashtext(m.external_id)) % 10 = 1 THEN time '07:00' END,
       (ARRAY['Europe/Oslo', 'America/New_York', 'Asia/Tokyo', 'UTC'])[1 + abs(hashtext(m.external_id || 'tz')) % 4]
FROM membership.members m
WHERE m.organisation_id = v_org AND abs(hashtext(m.external_id)) % 10 IN (0, 1);
INSERT INTO membership.consents (organisation_id, member_id, consent, granted)
SELECT m.organisation_id, m.id, 'marketing', true FROM membership.members m
WHERE m.organisation_id = v_org AND abs(hashtext(m.external_id || 'mkt')) % 3 = 0;
    END LOOP;
END
$$;
ANALYZE membership.notification_preferences;
ANALYZE membership.consents;
-- the data set was just written: flush it now, not in the middle of a measurement
CHECKPOINT;
SQL

# notify_ms SQL: milliseconds SQL takes inside the server, committed, in a
# session of its own.
notify_ms() {
	psql -X -q -At -v ON_ERROR_STOP=1 <<SQL | tail -n 1
SELECT id AS org FROM membership.organisations WHERE slug = 'physicians' \gset
SELECT clock_timestamp() AS t0 \gset
$1;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
SQL
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
audience() { # PRIORITY AT [ORGANISATION]: one audience send to everyone
	notify_ms "SELECT id AS org FROM membership.organisations WHERE slug = '${3:-physicians}' \gset
	           SELECT membership.enqueue_notification_audience(:'org', '{\"all\": true}', 'push', $1, 'news',
	           'Annual meeting', 'Join us on the 12th', '{\"article\": 42}', at => '$2')"
}

# the floor: the same number of rows, inserted with no rule, then removed
floor_sql="SELECT membership.set_tenant(:'org');
INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body, data,
                                      sender, status, reason, budgeted, slot_at, due_at)
SELECT m.organisation_id, m.id, 'push', 2, 'news', 'Annual meeting', 'Join us on the 12th', '{\"article\": 42}',
       'organisation', 'queued', 'floor', true, '2031-01-01', '2031-01-01'
FROM membership.members m WHERE m.organisation_id = :'org' AND m.status = 'active' AND m.removed_at IS NULL"
floor_clean="SELECT membership.set_tenant(:'org');
DELETE FROM membership.notifications WHERE organisation_id = :'org' AND reason = 'floor'"
floors=()
for i in 1 2 3; do
	floors+=("$(notify_ms "$floor_sql")")
	notify_ms "$floor_clean" >/dev/null
done
floor=$(median3 "${floors[@]}")

# one week: three sends on Monday take every slot (the first on empty
# budgets), a fourth waits for next week, a marketing send is mostly dropped
first=$(median3 "$(audience 2 '2031-03-03 10:00Z')" "$(audience 2 '2031-03-03 10:00Z' dentists)" \
	"$(audience 2 '2031-03-03 10:00Z' nurses)")
second=$(audience 2 '2031-03-03 11:00Z')
third=$(audience 2 '2031-03-03 12:00Z')
full=$(median3 "$(audience 2 '2031-03-04 10:00Z')" "$(audience 2 '2031-03-04 11:00Z')" "$(audience 2 '2031-03-04 12:00Z')")
marketing=$(median3 "$(audience 3 '2031-03-05 10:00Z')" "$(audience 3 '2031-03-05 11:00Z')" "$(audience 3 '2031-03-05 12:00Z')")
recipients=$(psql -X -At -c "SELECT recipients FROM membership.notification_batches ORDER BY id DESC LIMIT 1")
outcome=$(psql -X -At -c "SELECT string_agg(status || ' ' || reason || ': ' || n, ', ' ORDER BY n DESC) FROM (
    SELECT n.status, n.reason, count(*) AS n FROM membership.notifications n
    WHERE n.batch_id = (SELECT max(id) FROM membership.notification_batches) GROUP BY 1, 2) x")
sec() { awk -v ms="$1" 'BEGIN { printf "%.3f s", ms / 1000 }'; }

cat <<MD
## Audience enqueue

\`membership.enqueue_notification_audience()\` to every active member of the largest organisation
($recipients members): one statement plans every member's outcome (preferences, consent, quiet hours in
four time zones, the exact budget slot) and inserts the rows, after locking the members in id order.
Measured inside the server, committed. Target: < 0.5 s.

| what | time | x the floor |
|---|---|---|
| floor: plain \`INSERT ... SELECT\` of the same rows, no rule (median of 3) | $(sec "$floor") | 1.00 |
| **priority 2, empty budgets (the week's first send; median of the three largest organisations)** | **$(sec "$first")** | $(mb_ratio "$first" "$floor") |
| priority 2, second and third sends of the week | $(sec "$second"), $(sec "$third") | $(mb_ratio "$third" "$floor") |
| **priority 2, budgets full: every member deferred to the exact free slot (median of 3)** | **$(sec "$full")** | $(mb_ratio "$full" "$floor") |
| priority 3, consent and budget gating (median of 3) | $(sec "$marketing") | $(mb_ratio "$marketing" "$floor") |

Outcome of the last priority 3 send: $outcome.

MD
