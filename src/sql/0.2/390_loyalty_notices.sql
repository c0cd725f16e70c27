-- Loyalty notices reach members through the notification outbox.
--
-- The ledger records a notice (membership.loyalty_notice(): an expiry
-- reminder, a tier upgrade, a downgrade notice or a downgrade) in the same
-- transaction as the change it tells of; the job send_loyalty_notices
-- enqueues each recorded notice a moment later.  Enqueueing is not done
-- inside the ledger's own transaction on purpose: it locks the member's
-- row and counts the member's budget, which would put the notification
-- rules on the path of every earn and into the nightly expiry's hundreds of
-- thousands of rows, and it refuses REPEATABLE READ, which an earn must not.
--
--   tier_upgrade, tier_downgrade_notice, tier_downgrade
--       priority 1 (about the member's own account: no budget, no quiet hours)
--   points_expiring
--       priority 2 (takes a budget slot or waits for one), dropped if it
--       could only arrive after the points have expired
--
-- All are push notifications of category "loyalty", planned by the same
-- rules as every other (membership.plan_notifications: preferences, quiet
-- hours, the budget), set-based; the notice's id is the idempotency key,
-- so a notice is enqueued once however often the job runs.

CREATE FUNCTION membership.send_loyalty_notices(max_notices integer DEFAULT 10000) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[];
    v_org uuid;
    v_left integer := max_notices;
    v_round bigint[];
    v_group record;
    v_sent bigint := 0;
BEGIN
    IF max_notices IS NULL OR max_notices < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'max_notices must be at least 1';
    END IF;
    v_orgs := ARRAY(SELECT membership.all_organisations());
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        EXIT WHEN v_left = 0;
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        -- Set-based, as an audience send: in rounds of at most one notice
        -- per member (a member's budget is planned once per statement),
        -- each round's members locked in id order, then one planning
        -- statement and one insert per priority and deadline.
        LOOP
            v_round := ARRAY(
                SELECT first.id
                FROM (SELECT DISTINCT ON (n.member_id) n.id, n.member_id
                      FROM membership.loyalty_notices n
                      WHERE n.organisation_id = v_org AND n.notification_id IS NULL
                      ORDER BY n.member_id, n.id) AS first
                ORDER BY first.member_id
                LIMIT v_left);
            EXIT WHEN cardinality(v_round) = 0;
            PERFORM FROM membership.members m
            WHERE m.id IN (SELECT n.member_id FROM membership.loyalty_notices n WHERE n.id = ANY (v_round))
            ORDER BY m.id FOR NO KEY UPDATE;

            FOR v_group IN
                SELECT g.priority, g.not_after, array_agg(g.member_id ORDER BY g.member_id) AS members
                FROM (SELECT n.member_id,
                             CASE WHEN n.kind = 'points_expiring' THEN 2 ELSE 1 END AS priority,
                             CASE WHEN n.kind = 'points_expiring'
                                  THEN (n.data ->> 'expires_on')::date::timestamptz END AS not_after
                      FROM membership.loyalty_notices n WHERE n.id = ANY (v_round)) AS g
                GROUP BY g.priority, g.not_after
            LOOP
                INSERT INTO membership.notifications
                    (organisation_id, member_id, channel, priority, category, title, body, data, sender,
                     idempotency_key, status, reason, budgeted, slot_at, due_at, not_after)
                SELECT v_org, p.member_id, 'push', v_group.priority, 'loyalty', n.title, n.body,
                       n.data || jsonb_build_object('kind', n.kind), 'organisation', 'loyalty:' || n.id,
                       p.status, p.reason, p.budgeted, p.slot_at, p.due_at, v_group.not_after
                FROM membership.plan_notifications(v_org, v_group.members, 'push', v_group.priority, 'loyalty',
                                                   v_group.not_after, pg_catalog.now()) AS p
                JOIN membership.loyalty_notices n ON n.member_id = p.member_id AND n.id = ANY (v_round)
                ON CONFLICT ON CONSTRAINT notifications_organisation_id_idempotency_key_key DO NOTHING;
            END LOOP;

            -- the notification each became (inserted now, or by a run
            -- that got there first)
            UPDATE membership.loyalty_notices n SET notification_id = o.id
            FROM membership.notifications o
            WHERE n.id = ANY (v_round)
              AND o.organisation_id = v_org AND o.idempotency_key = 'loyalty:' || n.id;
            v_sent := v_sent + cardinality(v_round);
            v_left := v_left - cardinality(v_round);
            EXIT WHEN v_left = 0;
        END LOOP;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_sent;
END
$$;
GRANT EXECUTE ON FUNCTION membership.send_loyalty_notices(integer) TO membership_worker, membership_platform_admin;
COMMENT ON FUNCTION membership.send_loyalty_notices(integer) IS
    'job: enqueue the loyalty notices not yet handed to the notification outbox; returns how many';

SELECT membership.register_job('send_loyalty_notices', '* * * * *', 'SELECT membership.send_loyalty_notices()',
    'hand recorded loyalty notices (expiry reminders, tier changes) to the notification outbox');
