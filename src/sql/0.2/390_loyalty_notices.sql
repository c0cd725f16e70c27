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
-- All are push notifications of category "loyalty"; the notice's id is the
-- idempotency key, so a notice is enqueued once however often the job runs.

CREATE FUNCTION membership.send_loyalty_notices(max_notices integer DEFAULT 10000) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[];
    v_org uuid;
    v_left integer := max_notices;
    v_notice membership.loyalty_notices;
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
        -- in member order, as every enqueue locks members, so that this job
        -- and an audience send never wait for each other in a circle
        FOR v_notice IN
            SELECT * FROM membership.loyalty_notices n
            WHERE n.organisation_id = v_org AND n.notification_id IS NULL
            ORDER BY n.member_id, n.id
            LIMIT v_left
            FOR UPDATE SKIP LOCKED
        LOOP
            UPDATE membership.loyalty_notices n
            SET notification_id = (
                SELECT e.notification_id
                FROM membership.enqueue_notification(
                    v_org, v_notice.member_id, 'push',
                    CASE WHEN v_notice.kind = 'points_expiring' THEN 2 ELSE 1 END,
                    'loyalty', v_notice.title, v_notice.body,
                    v_notice.data || jsonb_build_object('kind', v_notice.kind),
                    'organisation', 'loyalty:' || v_notice.id,
                    CASE WHEN v_notice.kind = 'points_expiring'
                         THEN (v_notice.data ->> 'expires_on')::date::timestamptz END) AS e)
            WHERE n.id = v_notice.id;
            v_sent := v_sent + 1;
            v_left := v_left - 1;
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
