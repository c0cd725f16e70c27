-- The earliest free budget slot, checked against brute force.  For random
-- sets of existing slots (on whole hours, budgets of 1 to 4, some slots
-- deferred into the future), the moment plan_notifications() picks for a
-- priority 2 notification must be the first hour, from "at" on, at which
-- no 7-day window holding it would hold more than the budget: tried hour
-- by hour over five weeks, counting every window that starts at an
-- existing slot or at the candidate itself (a fullest window can always be
-- slid right until it starts at one of those), and outside quiet hours.
-- Members with and without quiet hours take different paths through the
-- rules: "plain" has none, "quiet" has quiet hours no whole hour falls in,
-- "tokyo" has 22:00 to 07:00 in Tokyo.  Priority 3 must take "at" when it
-- is free and be dropped otherwise.
SET timezone = 'UTC';
SELECT fixture.new_org('slots') IS NOT NULL AS org;
SELECT membership_api.sync_members('[{"external_id": "plain"}, {"external_id": "quiet"}, {"external_id": "tokyo"}]', 'delta',
                                   fixture.key('slots:org')) ->> 'inserted' AS members;
SELECT fixture.org('slots') AS org, membership.find_member(fixture.org('slots'), 'plain') AS plain,
       membership.find_member(fixture.org('slots'), 'quiet') AS quiet \gset
SELECT 1 AS tenant_set FROM membership.set_tenant(:'org');
-- quiet hours that never matter here (every moment tried is a whole hour)
INSERT INTO membership.notification_preferences (organisation_id, member_id, quiet_start, quiet_end, time_zone)
VALUES (:'org', :'quiet', '03:00:10', '03:00:50', 'UTC'),
       (:'org', membership.find_member(:'org', 'tokyo'), '22:00', '07:00', 'Asia/Tokyo');

-- priority 3 needs marketing consent
INSERT INTO membership.consents (organisation_id, member_id, consent, granted)
SELECT organisation_id, id, 'marketing', true FROM membership.members WHERE organisation_id = :'org';

CREATE FUNCTION pg_temp.feasible(member uuid, t timestamptz, budget integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT coalesce(max((SELECT count(*) FROM membership.notifications s
                         WHERE s.member_id = feasible.member AND s.budgeted
                           AND s.slot_at >= w.x AND s.slot_at < w.x + interval '7 days')), 0) + 1 <= budget
    FROM (SELECT t AS x
          UNION ALL
          SELECT n.slot_at FROM membership.notifications n
          WHERE n.member_id = feasible.member AND n.budgeted
            AND n.slot_at > t - interval '7 days' AND n.slot_at <= t) AS w
$$;

CREATE TEMPORARY TABLE trials (trial integer, budget integer, member text, planned timestamptz, brute timestamptz,
                               p3_planned timestamptz, p3_brute timestamptz);
SELECT setseed(0.42);
DO $$
DECLARE
    v_org uuid := fixture.org('slots');
    v_at timestamptz := '2030-06-03 12:00Z';
    v_budget integer;
    v_planned timestamptz;
    v_brute timestamptz;
    v_p3 timestamptz;
    v_member record;
BEGIN
    FOR trial IN 1 .. 30 LOOP
        v_budget := 1 + floor(random() * 4)::integer;
        PERFORM membership.set_notification_budget(v_org, 'push', v_budget);
        FOR v_member IN SELECT m.id, m.external_id FROM membership.members m
                        WHERE m.organisation_id = v_org ORDER BY m.external_id LOOP
            DELETE FROM membership.notifications WHERE member_id = v_member.id;
            -- 0 to 9 slots between 9 days ago and 12 days ahead, on whole hours
            INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title,
                                                  body, sender, status, reason, budgeted, slot_at, due_at)
            SELECT v_org, v_member.id, 'push', 2, 'news', 't', 'b', 'organisation', 'deferred', 'budget_full',
                   true, s, s
            FROM (SELECT v_at + make_interval(hours => (floor(random() * 21 * 24) - 9 * 24)::integer) AS s
                  FROM generate_series(1, floor(random() * 10)::integer)) AS r;
            SELECT p.due_at INTO v_planned
            FROM membership.plan_notifications(v_org, ARRAY[v_member.id], 'push', 2, 'news', NULL, v_at) AS p;
            SELECT p.due_at INTO v_p3
            FROM membership.plan_notifications(v_org, ARRAY[v_member.id], 'push', 3, 'news', NULL, v_at) AS p;
            SELECT t INTO v_brute
            FROM generate_series(v_at, v_at + interval '35 days', interval '1 hour') AS t
            WHERE (v_member.external_id <> 'tokyo'
                   OR ((t AT TIME ZONE 'Asia/Tokyo')::time >= '07:00' AND (t AT TIME ZONE 'Asia/Tokyo')::time < '22:00'))
              AND pg_temp.feasible(v_member.id, t, v_budget)
            ORDER BY t LIMIT 1;
            INSERT INTO trials VALUES (trial, v_budget, v_member.external_id, v_planned, v_brute, v_p3,
                                       CASE WHEN v_brute = v_at THEN v_at END);
        END LOOP;
    END LOOP;
END
$$;
SELECT member, count(*) AS trials, count(*) FILTER (WHERE planned > '2030-06-03 12:00Z') AS deferred,
       count(*) FILTER (WHERE planned IS DISTINCT FROM brute) AS mismatches,
       count(*) FILTER (WHERE p3_planned IS NULL) AS p3_dropped,
       count(*) FILTER (WHERE p3_planned IS DISTINCT FROM p3_brute) AS p3_mismatches
FROM trials GROUP BY member ORDER BY member;
SELECT * FROM trials WHERE planned IS DISTINCT FROM brute OR p3_planned IS DISTINCT FROM p3_brute ORDER BY trial, member;
-- leave nothing in the queue for the suites after this one
SELECT membership.cancel_notifications(:'org') >= 0 AS cleaned;
DELETE FROM membership.notifications WHERE organisation_id = :'org';
