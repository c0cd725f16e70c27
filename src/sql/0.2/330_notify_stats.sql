-- Delivery statistics for the organisation portal, and the queue's health
-- for the platform.

-- An organisation's notifications created in [from_time, to_time), by
-- channel, status and reason (default: the last 30 days, up to now).
-- Counts only.
CREATE FUNCTION membership.notification_stats(organisation uuid, from_time timestamptz DEFAULT NULL,
                                              to_time timestamptz DEFAULT NULL)
    RETURNS TABLE (channel text, status text, reason text, notifications bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_from timestamptz := coalesce(from_time, coalesce(to_time, now()) - interval '30 days');
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF v_from > to_time THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('from_time %s is after to_time %s', v_from, to_time);
    END IF;
    RETURN QUERY
        SELECT n.channel, n.status, coalesce(n.reason, ''), count(*)
        FROM membership.notifications n
        WHERE n.organisation_id = organisation AND n.created_at >= v_from
          AND (to_time IS NULL OR n.created_at < to_time)
        GROUP BY 1, 2, 3
        ORDER BY 1, array_position(ARRAY['sent', 'sending', 'queued', 'deferred', 'failed', 'dropped',
                                         'suppressed'], n.status), 3;
END
$$;
GRANT EXECUTE ON FUNCTION membership.notification_stats(uuid, timestamptz, timestamptz) TO membership_platform_admin;
COMMENT ON FUNCTION membership.notification_stats(uuid, timestamptz, timestamptz) IS
    'platform: an organisation''s notifications by channel, status and reason (default: the last 30 days)';

CREATE FUNCTION membership_api.notification_stats(from_time timestamptz DEFAULT NULL,
                                                  to_time timestamptz DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS TABLE (channel text, status text, reason text, notifications bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN QUERY SELECT * FROM membership.notification_stats(v_caller.organisation_id, from_time, to_time);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.notification_stats(timestamptz, timestamptz, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.notification_stats(timestamptz, timestamptz, text) IS
    'organisations: their notifications by channel, status and reason (default: the last 30 days)';

-- The outbox across organisations, per channel: rows due now and not
-- claimed, the oldest of them, rows in flight (claimed, lease running),
-- rows whose lease ran out (due again), deferred rows and when the next
-- falls due, and promotions awaiting approval.  Counts only.
CREATE FUNCTION membership.notification_queue(at timestamptz DEFAULT now())
    RETURNS TABLE (channel text, due bigint, oldest_due timestamptz, in_flight bigint, lease_expired bigint,
                   deferred bigint, next_due timestamptz, awaiting_approval bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_org uuid;
BEGIN
    CREATE TEMPORARY TABLE IF NOT EXISTS membership_notification_queue
        (channel text, due bigint, oldest_due timestamptz, in_flight bigint, lease_expired bigint,
         deferred bigint, next_due timestamptz, awaiting_approval bigint) ON COMMIT DROP;
    TRUNCATE pg_temp.membership_notification_queue;
    FOR v_org IN SELECT membership.all_organisations() LOOP
        PERFORM membership.set_tenant(v_org);
        INSERT INTO pg_temp.membership_notification_queue
        SELECT n.channel,
               count(*) FILTER (WHERE n.status IN ('queued', 'deferred') AND n.due_at <= at),
               min(n.due_at) FILTER (WHERE n.status IN ('queued', 'deferred') AND n.due_at <= at),
               count(*) FILTER (WHERE n.status = 'sending' AND n.lease_until > at),
               count(*) FILTER (WHERE n.status = 'sending' AND n.lease_until <= at),
               count(*) FILTER (WHERE n.status = 'deferred' AND n.due_at > at),
               min(n.due_at) FILTER (WHERE n.status IN ('queued', 'deferred') AND n.due_at > at),
               count(*) FILTER (WHERE n.status = 'deferred' AND n.due_at IS NULL)
        FROM membership.notifications n
        WHERE n.organisation_id = v_org AND n.status IN ('queued', 'deferred', 'sending')
        GROUP BY n.channel;
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN QUERY
        SELECT c.channel, coalesce(sum(q.due), 0)::bigint, min(q.oldest_due),
               coalesce(sum(q.in_flight), 0)::bigint, coalesce(sum(q.lease_expired), 0)::bigint,
               coalesce(sum(q.deferred), 0)::bigint, min(q.next_due),
               coalesce(sum(q.awaiting_approval), 0)::bigint
        FROM unnest(membership.notification_channels()) WITH ORDINALITY AS c(channel, n)
        LEFT JOIN pg_temp.membership_notification_queue q ON q.channel = c.channel
        GROUP BY c.channel, c.n
        ORDER BY c.n;
END
$$;
GRANT EXECUTE ON FUNCTION membership.notification_queue(timestamptz) TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.notification_queue(timestamptz) IS
    'platform: the outbox''s health per channel: due, oldest due, in flight, expired leases, deferred';
