-- The push worker's side of the outbox (DESIGN.md 4.4; the worker itself is
-- src/push_worker.c).  The worker connects as a superuser and calls:
--
--   membership.push_claim(batch, lease, max_attempts)
--       claims due push rows under a lease and returns one row per device
--       still to reach, with the payload each service takes;
--   membership.push_record(...)
--       records what each service answered, per device and per row;
--   membership.push_next_wake()
--       when it must look again if nobody wakes it before.
--
-- A trigger on membership.notifications wakes the workers at commit when a
-- push row becomes due earlier than they planned to look (C, push_wake.c).

-- What each device got of each notification: the per-device attempt log.
-- A row is 'sent' once every device it went to is 'sent' or 'deactivated';
-- a retry goes only to the devices that have not got it yet.
CREATE TABLE membership.push_deliveries (
    organisation_id uuid NOT NULL,
    notification_id bigint NOT NULL REFERENCES membership.notifications (id) ON DELETE CASCADE,
    device_id       bigint NOT NULL REFERENCES membership.devices (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('sent', 'deactivated', 'retry', 'failed')),
    attempts        integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (notification_id, device_id)
);
CREATE INDEX push_deliveries_organisation_idx ON membership.push_deliveries (organisation_id, updated_at);
CREATE INDEX push_deliveries_device_idx ON membership.push_deliveries (device_id);
COMMENT ON TABLE membership.push_deliveries IS
    'tenant: what each device got of each push notification, attempt by attempt';
SELECT membership.isolate_table('membership.push_deliveries');

-- The largest payload APNs accepts, and the limit the worker applies to
-- both services (FCM's is the same 4 KB for the message content).
CREATE FUNCTION membership.push_payload_limit() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$ SELECT 4096 $$;

-- The APNs payload of a notification: the alert in "aps", the data beside
-- it, and the notification's id so that an app can drop a re-delivery.
CREATE FUNCTION membership.push_apns_payload(n membership.notifications) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT (n.data - 'aps')
        || pg_catalog.jsonb_build_object(
               'aps', pg_catalog.jsonb_build_object(
                   'alert', pg_catalog.jsonb_build_object('title', n.title, 'body', n.body),
                   'sound', 'default'),
               'membership_notification_id', n.id)
$$;

-- The FCM HTTP v1 request body for one device.  FCM data values must be
-- strings: non-string JSON values are sent as their JSON text.
CREATE FUNCTION membership.push_fcm_message(n membership.notifications, device_token text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT pg_catalog.jsonb_build_object('message', pg_catalog.jsonb_build_object(
        'token', device_token,
        'notification', pg_catalog.jsonb_build_object('title', n.title, 'body', n.body),
        'data', (SELECT pg_catalog.jsonb_object_agg(e.key, CASE pg_catalog.jsonb_typeof(e.value)
                                                               WHEN 'string' THEN e.value #>> '{}'
                                                               ELSE e.value::text END)
                 FROM pg_catalog.jsonb_each(n.data
                     || pg_catalog.jsonb_build_object('membership_notification_id', n.id::text)) AS e),
        'android', pg_catalog.jsonb_build_object('priority', CASE WHEN n.priority = 1 THEN 'HIGH' ELSE 'NORMAL' END)
            || CASE WHEN n.not_after IS NULL THEN '{}'::jsonb
                    ELSE pg_catalog.jsonb_build_object('ttl', GREATEST(0,
                             pg_catalog.ceil(EXTRACT(epoch FROM n.not_after - pg_catalog.now())))::bigint || 's')
               END))
$$;

-- Claim up to "batch" due push rows: queued or deferred rows whose due_at
-- has come, and 'sending' rows whose lease has run out (their worker died
-- between sending and recording).  Rows that can no longer be sent are
-- settled here instead: past not_after ('dropped', 'expired'), no active
-- device left ('dropped', 'no_device', or 'sent' if the devices that
-- remain all got it), a payload over the limit ('failed'), a lease that ran
-- out on the last attempt ('failed').  Rows dropped or failed before any
-- sending give their budget slot back.  The rest become 'sending' until
-- now() + lease, with one more attempt, and come back as one row per
-- device still to reach.  Devices are found by member alone: a member id is
-- unique, and the foreign keys of both tables tie it to its organisation.
CREATE FUNCTION membership.push_claim(batch integer, lease_seconds integer, max_attempts integer)
    RETURNS TABLE (notification_id bigint, organisation_id uuid, device_id bigint, platform text,
                   token text, payload text, priority smallint, expiration bigint, collapse_id text,
                   attempts integer)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT pg_catalog.array_agg(c.id) INTO v_ids
    FROM (SELECT n.id FROM membership.notifications n
          WHERE n.due_at <= pg_catalog.now()
            AND n.status IN ('queued', 'deferred', 'sending')
            AND n.channel = 'push'
            AND (n.status <> 'sending' OR n.lease_until <= pg_catalog.now())
          ORDER BY n.due_at
          LIMIT batch
          FOR UPDATE SKIP LOCKED) AS c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    UPDATE membership.notifications n
    SET status = 'dropped', reason = 'expired', lease_until = NULL,
        budgeted = n.budgeted AND n.attempts > 0
    WHERE n.id = ANY (v_ids) AND n.not_after < pg_catalog.now();

    UPDATE membership.notifications n
    SET status = 'failed', lease_until = NULL, budgeted = n.budgeted AND n.attempts > 0,
        last_error = CASE WHEN n.attempts >= max_attempts
                          THEN pg_catalog.format('lease ran out after the last attempt (%s)', n.attempts)
                          ELSE pg_catalog.format('payload too large: %s bytes, the limit is %s',
                                   pg_catalog.octet_length(membership.push_apns_payload(n)::text),
                                   membership.push_payload_limit()) END
    WHERE n.id = ANY (v_ids) AND n.status IN ('queued', 'deferred', 'sending')
      AND (n.attempts >= max_attempts
           OR pg_catalog.octet_length(membership.push_apns_payload(n)::text) > membership.push_payload_limit());

    UPDATE membership.notifications n
    SET status = CASE WHEN s.delivered THEN 'sent' ELSE 'dropped' END,
        reason = CASE WHEN s.delivered THEN n.reason ELSE 'no_device' END,
        sent_at = CASE WHEN s.delivered THEN pg_catalog.now() END,
        budgeted = n.budgeted AND (s.delivered OR n.attempts > 0),
        lease_until = NULL
    FROM (SELECT x.id, EXISTS (SELECT FROM membership.push_deliveries pd
                               WHERE pd.notification_id = x.id AND pd.status = 'sent') AS delivered
          FROM pg_catalog.unnest(v_ids) AS x(id)) AS s
    WHERE n.id = s.id AND n.status IN ('queued', 'deferred', 'sending')
      AND NOT EXISTS (SELECT FROM membership.devices d
                      WHERE d.member_id = n.member_id AND d.active
                        AND NOT EXISTS (SELECT FROM membership.push_deliveries pd
                                        WHERE pd.notification_id = n.id AND pd.device_id = d.id
                                          AND pd.status = 'sent'));

    RETURN QUERY
    WITH claimed AS (
        UPDATE membership.notifications n
        SET status = 'sending', lease_until = pg_catalog.now() + pg_catalog.make_interval(secs => lease_seconds), attempts = n.attempts + 1
        WHERE n.id = ANY (v_ids) AND n.status IN ('queued', 'deferred', 'sending')
        RETURNING n.*
    )
    SELECT c.id, c.organisation_id, d.id, d.platform, d.token,
           CASE d.platform WHEN 'fcm' THEN membership.push_fcm_message(c::membership.notifications, d.token)::text
                           ELSE membership.push_apns_payload(c::membership.notifications)::text END,
           c.priority,
           coalesce(EXTRACT(epoch FROM c.not_after)::bigint, 0),
           'membership-' || c.id,
           c.attempts
    FROM claimed c
    JOIN membership.devices d ON d.member_id = c.member_id AND d.active
    WHERE NOT EXISTS (SELECT FROM membership.push_deliveries pd
                      WHERE pd.notification_id = c.id AND pd.device_id = d.id AND pd.status = 'sent')
    ORDER BY c.organisation_id, d.platform;
END
$$;

-- Record what the services answered, one array element per device sent to
-- (outcome 'sent', 'dead': the service called the token dead, 'retry', or
-- 'failed': it will never work), in one statement per step:
--   each device's line in push_deliveries; dead devices deactivated;
--   each row 'failed' if a device failed, else queued again at the longest
--   of its devices' delays if one must retry (or 'failed' after the last
--   attempt), else 'sent' (or 'dropped', 'no_device', if every device it
--   went to turned out dead and none ever got it).
CREATE FUNCTION membership.push_record(notification_ids bigint[], device_ids bigint[], outcomes text[],
                                       errors text[], delays_ms integer[], max_attempts integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_rows integer;
BEGIN
    INSERT INTO membership.push_deliveries AS pd (organisation_id, notification_id, device_id, status, last_error)
    SELECT n.organisation_id, r.notification_id, r.device_id,
           CASE r.outcome WHEN 'dead' THEN 'deactivated' ELSE r.outcome END, r.error
    FROM ROWS FROM (pg_catalog.unnest(notification_ids), pg_catalog.unnest(device_ids), pg_catalog.unnest(outcomes),
                       pg_catalog.unnest(errors), pg_catalog.unnest(delays_ms))
             AS r(notification_id, device_id, outcome, error, delay_ms) JOIN membership.notifications n ON n.id = r.notification_id
    ON CONFLICT (notification_id, device_id) DO UPDATE
    SET status = excluded.status, last_error = excluded.last_error, attempts = pd.attempts + 1,
        updated_at = pg_catalog.now();

    UPDATE membership.devices d
    SET active = false, deactivated_at = pg_catalog.now(), deactivation_reason = r.error
    FROM ROWS FROM (pg_catalog.unnest(notification_ids), pg_catalog.unnest(device_ids), pg_catalog.unnest(outcomes),
                       pg_catalog.unnest(errors), pg_catalog.unnest(delays_ms))
             AS r(notification_id, device_id, outcome, error, delay_ms)
    WHERE r.outcome = 'dead' AND d.id = r.device_id AND d.active;

    UPDATE membership.notifications n
    SET status = CASE WHEN a.failed IS NOT NULL THEN 'failed'
                      WHEN a.retry IS NOT NULL AND n.attempts >= max_attempts THEN 'failed'
                      WHEN a.retry IS NOT NULL THEN 'queued'
                      WHEN a.any_sent THEN 'sent'
                      ELSE 'dropped' END,
        reason = CASE WHEN a.failed IS NULL AND a.retry IS NULL AND NOT a.any_sent THEN 'no_device'
                      ELSE n.reason END,
        last_error = CASE WHEN a.failed IS NOT NULL THEN a.failed
                          WHEN a.retry IS NOT NULL AND n.attempts >= max_attempts
                              THEN pg_catalog.format('gave up after %s attempts: %s', n.attempts, a.retry)
                          ELSE coalesce(a.retry, n.last_error) END,
        due_at = CASE WHEN a.failed IS NULL AND a.retry IS NOT NULL
                      THEN pg_catalog.now() + pg_catalog.make_interval(secs => a.delay_ms / 1000.0)
                      ELSE n.due_at END,
        sent_at = CASE WHEN a.failed IS NULL AND a.retry IS NULL AND a.any_sent THEN pg_catalog.now() END,
        lease_until = NULL
    FROM (SELECT r.notification_id,
                 (pg_catalog.array_agg(r.error ORDER BY r.device_id) FILTER (WHERE r.outcome = 'failed'))[1] AS failed,
                 (pg_catalog.array_agg(r.error ORDER BY r.device_id) FILTER (WHERE r.outcome = 'retry'))[1] AS retry,
                 pg_catalog.max(r.delay_ms) FILTER (WHERE r.outcome = 'retry') AS delay_ms,
                 EXISTS (SELECT FROM membership.push_deliveries pd
                         WHERE pd.notification_id = r.notification_id AND pd.status = 'sent') AS any_sent
          FROM ROWS FROM (pg_catalog.unnest(notification_ids), pg_catalog.unnest(device_ids), pg_catalog.unnest(outcomes),
                       pg_catalog.unnest(errors), pg_catalog.unnest(delays_ms))
             AS r(notification_id, device_id, outcome, error, delay_ms) GROUP BY r.notification_id) AS a
    WHERE n.id = a.notification_id AND n.status = 'sending';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

-- When the worker must look again by itself: the earliest due_at of a
-- waiting push row or lease_until of a claimed one (NULL: nothing waits).
CREATE FUNCTION membership.push_next_wake() RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT LEAST(
        (SELECT pg_catalog.min(n.due_at) FROM membership.notifications n
         WHERE n.due_at IS NOT NULL AND n.status IN ('queued', 'deferred') AND n.channel = 'push'),
        (SELECT pg_catalog.min(n.lease_until) FROM membership.notifications n
         WHERE n.due_at IS NOT NULL AND n.status = 'sending' AND n.channel = 'push'))
$$;

-- Wake the push workers at commit when a push row becomes due before they
-- planned to look (C: push_wake.c).
CREATE FUNCTION membership.push_wake() RETURNS trigger
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'membership_push_wake';

CREATE TRIGGER push_wake
    AFTER INSERT OR UPDATE OF status, due_at ON membership.notifications
    FOR EACH ROW
    WHEN (NEW.channel = 'push' AND NEW.status IN ('queued', 'deferred') AND NEW.due_at IS NOT NULL)
    EXECUTE FUNCTION membership.push_wake();

-- Each running push worker, its database, and when it plans to look at the
-- outbox again by itself (NULL while it is working): for monitoring.
CREATE FUNCTION membership.push_worker_plans(OUT worker integer, OUT database oid, OUT planned_wake timestamptz)
    RETURNS SETOF record
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_push_worker_plans';
GRANT EXECUTE ON FUNCTION membership.push_worker_plans() TO membership_platform_admin;
