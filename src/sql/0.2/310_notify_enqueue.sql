-- Enqueueing notifications: the rules that decide what becomes of each one,
-- for one member (enqueue_notification) or an audience
-- (enqueue_notification_audience), and the API entry points of
-- organisations and providers.
--
-- The rules, in order, each outcome a status with a reason:
--
--   member removed                  dropped     member_removed
--   channel opted out               suppressed  channel_opted_out
--   category muted                  suppressed  category_muted
--   priority 3 without marketing    dropped     no_marketing_consent
--     consent
--   priority 1                      queued      bypasses_budget   (due now)
--   priority 2 or 3, slot free now  queued      within_budget     (due now)
--   quiet hours now, slot free at   deferred    quiet_hours       (due then)
--     their end
--   priority 2, no slot             deferred    budget_full       (due at the
--                                                                 earliest free slot)
--   priority 3, no slot             dropped     budget_exhausted
--   would arrive after not_after    dropped     expired
--   a provider's promotion          deferred    awaiting_approval (due_at NULL
--                                                                 until approved)
--
-- A slot: a budgeted row at slot_at.  An organisation's budget N for a
-- channel allows at most N slots of a member in ANY half-open 7-day window
-- [t, t + 7 days).  Slots are counted whatever became of their rows
-- (queued, deferred to the future, sending, sent, failed); rows dropped or
-- cancelled before sending give theirs back (budgeted = false).
--
-- The earliest moment t >= "from" at which a new slot fits: a slot at t
-- breaks the rule exactly when N existing slots s_i <= ... <= s_(i+N-1)
-- (consecutive in time) and t fit together in less than 7 days, that is
-- when s_(i+N-1) - s_i < 7 days and s_(i+N-1) - 7 days < t < s_i + 7 days.
-- These open intervals are the blocked times; t is the earliest point at
-- or after "from" outside all of them and outside quiet hours, and must be
-- "from" itself, the end of a blocked interval (s_i + 7 days), or the end
-- of the quiet period one of those falls in.  Taken in order, the
-- intervals' starts and ends never decrease, so without quiet hours t is
-- "from" or the first interval end after it that the next interval does
-- not cover (window functions over the slots); with quiet hours the rules
-- try those few candidates per member.  Either way one statement decides
-- for the whole audience (sql/notify_slots.sql checks it by brute force).
--
-- Concurrency: every enqueue, approval and audience locks the members'
-- rows (FOR NO KEY UPDATE, in member id order) before it counts slots, and
-- counts them in a later statement, which sees what the previous holder
-- of the lock committed.  Two senders can never both take the last slot.

-- Audience sends and provider promotions: one row per send, its rows in
-- the outbox point back to it (notifications.batch_id).  A provider's
-- promotion waits for the organisation's approval (approval 'pending').
CREATE TABLE membership.notification_batches (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id) ON DELETE CASCADE,
    audience        jsonb NOT NULL CHECK (pg_catalog.jsonb_typeof(audience) = 'object'),
    channel         text NOT NULL CHECK (channel IN ('push', 'email', 'sms', 'in_app')),
    priority        smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    category        text NOT NULL CHECK (category <> ''),
    title           text NOT NULL,
    body            text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(data) = 'object'),
    sender          text NOT NULL CHECK (sender IN ('platform', 'organisation', 'provider')),
    provider_id     uuid REFERENCES membership.providers (id),
    idempotency_key text,
    not_after       timestamptz,
    approval        text CHECK (approval IN ('pending', 'approved', 'rejected')),
    decided_at      timestamptz,
    recipients      integer NOT NULL DEFAULT 0 CHECK (recipients >= 0),
    outcome         jsonb,          -- what became of the rows when sent, approved or rejected
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (organisation_id, idempotency_key),
    UNIQUE (id, organisation_id),
    CHECK ((sender = 'provider') = (approval IS NOT NULL)),
    CHECK ((approval = 'pending') = (approval IS NOT NULL AND decided_at IS NULL))
);
CREATE INDEX notification_batches_pending_idx ON membership.notification_batches (organisation_id, created_at)
    WHERE approval = 'pending';
COMMENT ON TABLE membership.notification_batches IS
    'tenant: audience sends and provider promotions (with their approval); outbox rows point to them';
SELECT membership.isolate_table('membership.notification_batches');

-- No foreign key: only the enqueue functions set it, to a batch of the
-- row's organisation, and checking it per row would cost an audience send
-- of 13,000 members a sixth of its time budget.
ALTER TABLE membership.notifications ADD COLUMN batch_id bigint;
-- a promotion's rows, for its approval (only those rows are in it)
CREATE INDEX notifications_awaiting_idx ON membership.notifications (batch_id) WHERE reason = 'awaiting_approval';
-- the member's inbox
CREATE INDEX notifications_inbox_idx ON membership.notifications (member_id, id) WHERE status = 'sent';

-- Raise an error unless a notification can be enqueued as given.
CREATE FUNCTION membership.check_notification(channel text, priority integer, category text, title text,
                                              body text, data jsonb, sender text, idempotency_key text,
                                              at timestamptz)
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_size integer;
BEGIN
    IF priority IS NULL OR title IS NULL OR body IS NULL OR data IS NULL OR sender IS NULL OR at IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'priority, title, body, data, sender and at must not be null';
    END IF;
    PERFORM membership.check_notification_channel(channel);
    PERFORM membership.check_notification_category(category);
    IF priority NOT BETWEEN 1 AND 3 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown notification priority %s', priority),
            HINT = 'Priority 1 is security and transactional, 2 editorial, 3 marketing.';
    END IF;
    IF sender NOT IN ('platform', 'organisation', 'provider') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown sender "%s"', left(sender, 100)),
            HINT = 'Senders are platform, organisation and provider.';
    END IF;
    IF sender = 'provider' AND priority <> 3 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'provider promotions are priority 3';
    END IF;
    IF btrim(title) = '' OR length(title) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'notification title must be 1 to 200 characters';
    END IF;
    IF jsonb_typeof(data) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('notification data must be a JSON object, not %s', jsonb_typeof(data));
    END IF;
    v_size := octet_length(jsonb_build_object('title', title, 'body', body, 'data', data)::text);
    IF v_size > 4096 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('notification payload is %s bytes, over the limit of 4096', v_size),
            DETAIL = 'Title, body and data together must fit in a push message (APNs allows 4 KB).';
    END IF;
    IF idempotency_key IS NOT NULL AND (idempotency_key = '' OR length(idempotency_key) > 200) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'idempotency_key must be 1 to 200 characters';
    END IF;
    IF NOT isfinite(at) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'at must be a finite time';
    END IF;
END
$$;

-- What becomes of a notification to each of "members" (all of the current
-- organisation) if it is enqueued at "at": status, reason, whether it takes
-- a slot and when, and when it is due.  The rules at the top of this file,
-- for the whole set in one statement.  Callers hold the members' locks.
CREATE FUNCTION membership.plan_notifications(organisation uuid, members uuid[], channel text, priority integer,
                                              category text, not_after timestamptz, at timestamptz)
    RETURNS TABLE (member_id uuid, status text, reason text, budgeted boolean, slot_at timestamptz,
                   due_at timestamptz)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    -- an audience's slots are sorted per member in memory
    SET work_mem = '64MB'
    AS $$
#variable_conflict use_column
DECLARE
    v_budget integer := membership.notification_budget(organisation, channel);
    -- quiet hours hold back priorities 2 and 3 on every channel but the
    -- in-app inbox, which interrupts nobody
    v_quiet boolean := priority > 1 AND channel <> 'in_app';
    v_week constant interval := interval '7 days';
    v_nestloop text;
BEGIN
    -- the slots are counted on a snapshot taken after the members' locks:
    -- REPEATABLE READ would count on the transaction's first snapshot and
    -- could miss what the previous holder of a lock committed
    -- (SERIALIZABLE is safe: one of two such transactions fails)
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'notifications cannot be enqueued in a REPEATABLE READ transaction',
            DETAIL = 'The budget is counted after locking the members, on a fresh snapshot.',
            HINT = 'Use READ COMMITTED (the default) or SERIALIZABLE.';
    END IF;
    -- Every join below is on the member id, between sets the size of the
    -- audience, but the row counts of the CTEs are guesses, and a nested
    -- loop chosen on a bad guess is quadratic (30 s for 13,000 members with
    -- full budgets).  Hash and merge joins only, for this statement.
    v_nestloop := current_setting('enable_nestloop');
    PERFORM set_config('enable_nestloop', 'off', true);
    RETURN QUERY
    WITH target AS (
        SELECT m.id, m.removed_at IS NOT NULL AS removed,
               coalesce(plan_notifications.channel = ANY (p.opted_out_channels), false) AS opted_out,
               coalesce(plan_notifications.category = ANY (p.muted_categories), false) AS muted,
               coalesce(c.granted, false) AS marketing,
               CASE WHEN v_quiet THEN p.quiet_start END AS qs, p.quiet_end AS qe,
               coalesce(p.time_zone, 'UTC') AS tz
        FROM unnest(members) AS u(id)
        JOIN membership.members m ON m.id = u.id AND m.organisation_id = plan_notifications.organisation
        LEFT JOIN membership.notification_preferences p
               ON p.member_id = m.id AND p.organisation_id = plan_notifications.organisation
        LEFT JOIN membership.consents c
               ON c.member_id = m.id AND c.organisation_id = plan_notifications.organisation AND c.consent = 'marketing'
    ),
    -- "s": when quiet hours let it go, "at" or the end of the quiet period
    -- "at" falls in (local time, possibly across midnight)
    started AS (
        SELECT t.*,
               CASE WHEN t.qs IS NULL THEN plan_notifications.at
                    WHEN t.qs < t.qe AND l.lt::time >= t.qs AND l.lt::time < t.qe
                        THEN (l.lt::date + t.qe) AT TIME ZONE t.tz
                    WHEN t.qs > t.qe AND l.lt::time >= t.qs THEN (l.lt::date + 1 + t.qe) AT TIME ZONE t.tz
                    WHEN t.qs > t.qe AND l.lt::time < t.qe THEN (l.lt::date + t.qe) AT TIME ZONE t.tz
                    ELSE plan_notifications.at END AS s
        FROM target t
        CROSS JOIN LATERAL (SELECT plan_notifications.at AT TIME ZONE t.tz AS lt) AS l
    ),
    -- the members' slots on this channel that can still matter, as groups
    -- of N consecutive ones: (lo, hi) blocks the open interval (hi - 7d, lo + 7d)
    blocks AS (
        SELECT x.member_id, x.lo, x.hi
        FROM (SELECT n.member_id, n.slot_at AS lo,
                     lead(n.slot_at, v_budget - 1) OVER (PARTITION BY n.member_id ORDER BY n.slot_at) AS hi
              FROM membership.notifications n
              WHERE v_budget IS NOT NULL AND plan_notifications.priority > 1
                AND n.organisation_id = plan_notifications.organisation
                AND n.member_id = ANY (members) AND n.channel = plan_notifications.channel AND n.budgeted
                AND n.slot_at > plan_notifications.at - v_week) AS x
        -- N slots spread over 7 days or more never share a window
        WHERE x.hi IS NOT NULL AND x.hi - x.lo < v_week
    ),
    -- Members without quiet hours ("s" is "at").  The blocked intervals of
    -- a member, taken in order, have non-decreasing starts and ends, so the
    -- end of block i is free exactly when the next block starts at or after
    -- it, and when "at" is blocked the answer is the first free end after
    -- it.  (Computed for every member with blocks; used for those without
    -- quiet hours.)
    fast AS (
        SELECT bl.member_id AS id,
               bool_or(bl.hi - v_week < plan_notifications.at AND plan_notifications.at < bl.lo + v_week)
                   AS at_blocked,
               min(bl.lo + v_week) FILTER (WHERE (bl.next_start IS NULL OR bl.next_start >= bl.lo + v_week)
                                             AND bl.lo + v_week > plan_notifications.at) AS first_free_end
        FROM (SELECT b.*, lead(b.hi) OVER (PARTITION BY b.member_id ORDER BY b.lo, b.hi) - v_week AS next_start
              FROM blocks b) AS bl
        GROUP BY bl.member_id
    ),
    -- Members with quiet hours: candidate moments, "s" and (priority 2) the
    -- end of each block after it, each moved past the quiet period it falls
    -- in; the earliest that no block covers.
    base AS (
        SELECT st.id, st.s AS b, st.qs, st.qe, st.tz FROM started st
        WHERE st.qs IS NOT NULL AND EXISTS (SELECT FROM blocks bl WHERE bl.member_id = st.id)
        UNION ALL
        SELECT st.id, bl.lo + v_week, st.qs, st.qe, st.tz
        FROM blocks bl JOIN started st ON st.id = bl.member_id
        WHERE st.qs IS NOT NULL AND plan_notifications.priority = 2 AND bl.lo + v_week > st.s
    ),
    candidates AS (
        SELECT b.id,
               CASE WHEN b.qs < b.qe AND l.lt::time >= b.qs AND l.lt::time < b.qe
                        THEN (l.lt::date + b.qe) AT TIME ZONE b.tz
                    WHEN b.qs > b.qe AND l.lt::time >= b.qs THEN (l.lt::date + 1 + b.qe) AT TIME ZONE b.tz
                    WHEN b.qs > b.qe AND l.lt::time < b.qe THEN (l.lt::date + b.qe) AT TIME ZONE b.tz
                    ELSE b.b END AS c
        FROM base b
        CROSS JOIN LATERAL (SELECT b.b AT TIME ZONE b.tz AS lt) AS l
    ),
    -- the earliest of them that no block covers (priority 3: "s" or nothing)
    earliest AS (
        SELECT c.id, min(c.c) AS t
        FROM candidates c
        WHERE NOT EXISTS (SELECT FROM blocks bl
                          WHERE bl.member_id = c.id AND bl.hi - v_week < c.c AND c.c < bl.lo + v_week)
        GROUP BY c.id
    ),
    timed AS (
        SELECT st.*,
               CASE WHEN plan_notifications.priority = 1 THEN plan_notifications.at
                    WHEN f.id IS NULL THEN st.s                     -- no block concerns the member
                    WHEN st.qs IS NULL THEN CASE WHEN NOT f.at_blocked THEN plan_notifications.at
                                                 WHEN plan_notifications.priority = 2 THEN f.first_free_end END
                    ELSE e.t END AS t
        FROM started st
        LEFT JOIN fast f ON f.id = st.id
        LEFT JOIN earliest e ON e.id = st.id
    ),
    decided AS (
        SELECT tm.id, tm.t, tm.s,
               CASE WHEN tm.removed THEN 'member_removed'
                    WHEN tm.opted_out THEN 'channel_opted_out'
                    WHEN tm.muted THEN 'category_muted'
                    WHEN plan_notifications.priority = 3 AND NOT tm.marketing THEN 'no_marketing_consent'
                    WHEN tm.t IS NULL THEN 'budget_exhausted'
                    WHEN tm.t > plan_notifications.not_after THEN 'expired'
                    WHEN plan_notifications.priority = 1 THEN 'bypasses_budget'
                    WHEN tm.t = plan_notifications.at THEN 'within_budget'
                    WHEN tm.t = tm.s THEN 'quiet_hours'
                    ELSE 'budget_full' END AS reason
        FROM timed tm
    )
    SELECT d.id,
           CASE WHEN d.reason IN ('channel_opted_out', 'category_muted') THEN 'suppressed'
                WHEN d.reason IN ('member_removed', 'no_marketing_consent', 'budget_exhausted', 'expired')
                    THEN 'dropped'
                WHEN d.reason IN ('quiet_hours', 'budget_full') THEN 'deferred'
                ELSE 'queued' END,
           d.reason,
           d.reason IN ('within_budget', 'quiet_hours', 'budget_full'),
           CASE WHEN d.reason IN ('within_budget', 'quiet_hours', 'budget_full') THEN d.t END,
           CASE WHEN d.reason IN ('bypasses_budget', 'within_budget', 'quiet_hours', 'budget_full') THEN d.t END
    FROM decided d;
    PERFORM set_config('enable_nestloop', v_nestloop, true);
END
$$;

-- Enqueue one notification for each of "members" (of the current
-- organisation, all of them checked): lock the members in id order (unless
-- the caller did), plan, and insert.  In-app notifications due now are delivered at once (status
-- 'sent').  With an idempotency key, a member who already has a row under
-- it keeps that row (per_member_keys: the key is "key:member id").
-- Returns the rows inserted.
CREATE FUNCTION membership.enqueue_for_members(organisation uuid, members uuid[], batch bigint, channel text,
                                               priority integer, category text, title text, body text,
                                               data jsonb, sender text, provider uuid, idempotency_key text,
                                               per_member_keys boolean, not_after timestamptz, at timestamptz,
                                               members_locked boolean DEFAULT false)
    RETURNS TABLE (member_id uuid, notification_id bigint, status text, reason text, due_at timestamptz)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    IF NOT members_locked THEN
        PERFORM FROM membership.members m WHERE m.id = ANY (members) ORDER BY m.id FOR NO KEY UPDATE;
    END IF;

    IF sender = 'provider' THEN
        -- a promotion waits for the organisation; approve_notification()
        -- applies the rules when it is approved
        RETURN QUERY
            INSERT INTO membership.notifications AS n
                (organisation_id, member_id, channel, priority, category, title, body, data, sender, provider_id,
                 idempotency_key, status, reason, not_after, batch_id)
            SELECT organisation, u.id, channel, priority, category, title, body, data, sender, provider,
                   CASE WHEN per_member_keys THEN idempotency_key || ':' || u.id ELSE idempotency_key END,
                   'deferred', 'awaiting_approval', not_after, batch
            FROM unnest(members) AS u(id)
            ON CONFLICT ON CONSTRAINT notifications_organisation_id_idempotency_key_key DO NOTHING
            RETURNING n.member_id, n.id, n.status, n.reason, n.due_at;
        RETURN;
    END IF;

    RETURN QUERY
        INSERT INTO membership.notifications AS n
            (organisation_id, member_id, channel, priority, category, title, body, data, sender, provider_id,
             idempotency_key, status, reason, budgeted, slot_at, due_at, not_after, batch_id, sent_at)
        SELECT organisation, p.member_id, channel, priority, category, title, body, data, sender, provider,
               CASE WHEN per_member_keys THEN idempotency_key || ':' || p.member_id ELSE idempotency_key END,
               CASE WHEN channel = 'in_app' AND p.status = 'queued' THEN 'sent' ELSE p.status END,
               p.reason, p.budgeted, p.slot_at, p.due_at, not_after, batch,
               CASE WHEN channel = 'in_app' AND p.status = 'queued' THEN at END
        FROM membership.plan_notifications(organisation, members, channel, priority, category, not_after, at) AS p
        ON CONFLICT ON CONSTRAINT notifications_organisation_id_idempotency_key_key DO NOTHING
        RETURNING n.member_id, n.id, n.status, n.reason, n.due_at;
END
$$;

-- Create the batch row of an audience send or a promotion.  With an
-- idempotency key already used by a batch of this organisation, returns
-- that batch's id and replayed = true instead.
CREATE FUNCTION membership.open_batch(organisation uuid, audience jsonb, channel text, priority integer,
                                      category text, title text, body text, data jsonb, sender text,
                                      provider uuid, idempotency_key text, not_after timestamptz,
                                      OUT batch bigint, OUT replayed boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    INSERT INTO membership.notification_batches AS b
        (organisation_id, audience, channel, priority, category, title, body, data, sender, provider_id,
         idempotency_key, not_after, approval)
    VALUES (organisation, audience, channel, priority, category, title, body, data, sender, provider,
            idempotency_key, not_after, CASE WHEN sender = 'provider' THEN 'pending' END)
    ON CONFLICT ON CONSTRAINT notification_batches_organisation_id_idempotency_key_key DO NOTHING
    RETURNING b.id INTO batch;
    replayed := batch IS NULL;
    IF replayed THEN
        SELECT b.id INTO batch FROM membership.notification_batches b
        WHERE b.organisation_id = open_batch.organisation AND b.idempotency_key = open_batch.idempotency_key;
    END IF;
END
$$;

-- What became of a batch's rows, from their statuses and reasons:
-- {"batch", "recipients", "<status>": n, ..., "reasons": {"<reason>": n}}.
CREATE FUNCTION membership.batch_outcome(batch bigint, statuses text[], reasons text[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    WITH rows AS (SELECT * FROM unnest(statuses, reasons) AS r(status, reason))
    SELECT jsonb_build_object('batch', batch, 'recipients', coalesce(cardinality(statuses), 0))
           || coalesce((SELECT jsonb_object_agg(x.status, x.n)
                        FROM (SELECT r.status, count(*) AS n FROM rows r GROUP BY 1) AS x), '{}')
           || jsonb_build_object('reasons', coalesce((SELECT jsonb_object_agg(x.reason, x.n)
                                                      FROM (SELECT r.reason, count(*) AS n FROM rows r GROUP BY 1) AS x),
                                                     '{}'))
$$;

-- Enqueue one notification (DESIGN.md 4.4).  Replaying an idempotency key
-- returns the first row's id and status.  "at" is the clock the rules use
-- (tests pass it; normally now()).
CREATE FUNCTION membership.enqueue_notification(organisation uuid, member uuid, channel text, priority integer,
                                                category text, title text, body text, data jsonb DEFAULT '{}',
                                                sender text DEFAULT 'organisation',
                                                idempotency_key text DEFAULT NULL,
                                                not_after timestamptz DEFAULT NULL,
                                                at timestamptz DEFAULT now(),
                                                OUT notification_id bigint, OUT status text, OUT reason text,
                                                OUT due_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_batch bigint;
    v_replayed boolean;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member must not be null';
    END IF;
    PERFORM membership.check_notification(channel, priority, category, title, body, data, sender,
                                          idempotency_key, at);
    IF NOT EXISTS (SELECT FROM membership.members m WHERE m.id = member AND m.organisation_id = organisation) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('member %s does not exist in organisation %s', member, organisation);
    END IF;

    IF idempotency_key IS NULL OR NOT EXISTS (
            SELECT FROM membership.notifications n
            WHERE n.organisation_id = organisation AND n.idempotency_key = enqueue_notification.idempotency_key) THEN
        IF sender = 'provider' THEN
            SELECT b.batch, b.replayed INTO v_batch, v_replayed
            FROM membership.open_batch(organisation, jsonb_build_object('member', member), channel, priority,
                                       category, title, body, data, sender, NULL, idempotency_key, not_after) AS b;
        END IF;
        SELECT e.notification_id, e.status, e.reason, e.due_at INTO notification_id, status, reason, due_at
        FROM membership.enqueue_for_members(organisation, ARRAY[member], v_batch, channel, priority, category,
                                            title, body, data, sender, NULL, idempotency_key, false,
                                            not_after, at) AS e;
        IF v_batch IS NOT NULL AND NOT v_replayed THEN
            UPDATE membership.notification_batches b
            SET recipients = 1, outcome = membership.batch_outcome(v_batch, ARRAY[status], ARRAY[reason])
            WHERE b.id = v_batch;
        END IF;
    END IF;
    IF notification_id IS NULL THEN
        -- a replay (or a concurrent sender with the same key got there first)
        SELECT n.id, n.status, n.reason, n.due_at INTO notification_id, status, reason, due_at
        FROM membership.notifications n
        WHERE n.organisation_id = organisation AND n.idempotency_key = enqueue_notification.idempotency_key;
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION membership.enqueue_notification(uuid, uuid, text, integer, text, text, text, jsonb,
                                                          text, text, timestamptz, timestamptz)
    TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.enqueue_notification(uuid, uuid, text, integer, text, text, text, jsonb,
                                                    text, text, timestamptz, timestamptz) IS
    'enqueue a notification to one member under the budget, preference and consent rules; returns its id and status';

-- The active members of the current organisation in an audience, in id
-- order, locked (FOR NO KEY UPDATE, in that order) for enqueueing:
--   {"all": true}  {"tier": "<membership tier>"}  {"profession": "<profession>"}
--   {"interest": "<benefit category the member bookmarked>"}
CREATE FUNCTION membership.lock_audience(organisation uuid, audience jsonb) RETURNS uuid[]
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_kind text;
    v_value jsonb;
BEGIN
    IF audience IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'audience must not be null';
    END IF;
    IF jsonb_typeof(audience) <> 'object' OR (SELECT count(*) FROM jsonb_object_keys(audience)) <> 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'audience must be a JSON object with one key',
            HINT = 'Use {"all": true}, {"tier": "..."}, {"profession": "..."} or {"interest": "<category>"}.';
    END IF;
    SELECT e.key, e.value INTO v_kind, v_value FROM jsonb_each(audience) AS e;
    IF v_kind = 'all' THEN
        IF v_value <> 'true' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'audience "all" must be true';
        END IF;
    ELSIF v_kind IN ('tier', 'profession', 'interest') THEN
        IF jsonb_typeof(v_value) <> 'string' OR btrim(v_value #>> '{}') = '' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('audience "%s" must be a non-empty string', v_kind);
        END IF;
        IF v_kind = 'interest' THEN
            PERFORM membership.check_category(v_value #>> '{}');
        END IF;
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown audience "%s"', left(v_kind, 100)),
            HINT = 'Audiences are all, tier, profession and interest.';
    END IF;
    RETURN ARRAY(
        SELECT m.id FROM membership.members m
        WHERE m.organisation_id = organisation AND m.status = 'active' AND m.removed_at IS NULL
          AND CASE v_kind
              WHEN 'all' THEN true
              WHEN 'tier' THEN m.membership_tier = v_value #>> '{}'
              WHEN 'profession' THEN lower(btrim(m.profession)) = lower(btrim(v_value #>> '{}'))
              WHEN 'interest' THEN EXISTS (
                  SELECT FROM membership.category_preferences cp
                  WHERE cp.member_id = m.id AND cp.category = v_value #>> '{}' AND cp.preference = 'bookmarked')
              END
        ORDER BY m.id
        FOR NO KEY UPDATE OF m);
END
$$;

-- Enqueue a notification to every active member of an audience, set-based:
-- one statement plans and inserts them all.  Idempotency: the key names
-- the send; each row gets "key:member id"; a replay returns the first
-- send's outcome.  Returns the outcome counts (batch_outcome()), which the
-- batch keeps.
CREATE FUNCTION membership.enqueue_notification_audience(organisation uuid, audience jsonb, channel text,
                                                         priority integer, category text, title text, body text,
                                                         data jsonb DEFAULT '{}',
                                                         sender text DEFAULT 'organisation',
                                                         idempotency_key text DEFAULT NULL,
                                                         not_after timestamptz DEFAULT NULL,
                                                         at timestamptz DEFAULT now(),
                                                         provider uuid DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_members uuid[];
    v_batch bigint;
    v_replayed boolean;
    v_outcome jsonb;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    PERFORM membership.check_notification(channel, priority, category, title, body, data, sender,
                                          idempotency_key, at);
    v_members := membership.lock_audience(organisation, audience);
    SELECT b.batch, b.replayed INTO v_batch, v_replayed
    FROM membership.open_batch(organisation, audience, channel, priority, category, title, body, data, sender,
                               provider, idempotency_key, not_after) AS b;
    IF v_replayed THEN
        RETURN (SELECT b.outcome FROM membership.notification_batches b WHERE b.id = v_batch)
               || '{"replayed": true}';
    END IF;
    SELECT membership.batch_outcome(v_batch, array_agg(e.status), array_agg(e.reason)) INTO v_outcome
    FROM membership.enqueue_for_members(organisation, v_members, v_batch, channel, priority, category, title,
                                        body, data, sender, provider, idempotency_key, true, not_after, at,
                                        members_locked => true) AS e;
    UPDATE membership.notification_batches b
    SET recipients = (v_outcome ->> 'recipients')::integer, outcome = v_outcome
    WHERE b.id = v_batch;
    RETURN v_outcome || '{"replayed": false}';
END
$$;
GRANT EXECUTE ON FUNCTION membership.enqueue_notification_audience(uuid, jsonb, text, integer, text, text, text,
                                                                   jsonb, text, text, timestamptz, timestamptz, uuid)
    TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.enqueue_notification_audience(uuid, jsonb, text, integer, text, text, text,
                                                             jsonb, text, text, timestamptz, timestamptz, uuid) IS
    'enqueue a notification to an audience (all, tier, profession, interest), set-based; returns outcome counts';

-------------------------------------------------------------------------
-- API: organisations and providers send
-------------------------------------------------------------------------

-- An organisation sends to one of its members, named by its own id.
CREATE FUNCTION membership_api.send_notification(external_id text, channel text, priority integer, category text,
                                                 title text, body text, data jsonb DEFAULT '{}',
                                                 idempotency_key text DEFAULT NULL,
                                                 not_after timestamptz DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
    v_member uuid;
    v_result record;
BEGIN
    IF external_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'external_id must not be null';
    END IF;
    SELECT m.id INTO v_member FROM membership.members m
    WHERE m.organisation_id = v_caller.organisation_id AND m.external_id = send_notification.external_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('member "%s" does not exist', left(external_id, 200));
    END IF;
    SELECT * INTO v_result
    FROM membership.enqueue_notification(v_caller.organisation_id, v_member, channel, priority, category, title,
                                         body, data, 'organisation', idempotency_key, not_after);
    RETURN jsonb_build_object('notification', v_result.notification_id, 'status', v_result.status,
                              'reason', v_result.reason, 'due_at', v_result.due_at);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.send_notification(text, text, integer, text, text, text, jsonb, text,
                                                           timestamptz, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.send_notification(text, text, integer, text, text, text, jsonb, text,
                                                     timestamptz, text) IS
    'organisations: notify one member (by external id) under the budget and preference rules';

CREATE FUNCTION membership_api.send_notification_audience(audience jsonb, channel text, priority integer,
                                                          category text, title text, body text,
                                                          data jsonb DEFAULT '{}', idempotency_key text DEFAULT NULL,
                                                          not_after timestamptz DEFAULT NULL,
                                                          api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN membership.enqueue_notification_audience(v_caller.organisation_id, audience, channel, priority,
                                                    category, title, body, data, 'organisation',
                                                    idempotency_key, not_after);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.send_notification_audience(jsonb, text, integer, text, text, text, jsonb,
                                                                    text, timestamptz, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.send_notification_audience(jsonb, text, integer, text, text, text, jsonb, text,
                                                              timestamptz, text) IS
    'organisations: notify an audience of members (all, tier, profession, interest); returns outcome counts';

-- A provider's promotion to an audience of the organisation its key is
-- bound to: priority 3, held until the organisation approves it.  The
-- provider learns the promotion's id, not who or how many it reaches.
CREATE FUNCTION membership_api.send_promotion(audience jsonb, title text, body text,
                                              category text DEFAULT 'promotion', data jsonb DEFAULT '{}',
                                              channel text DEFAULT 'push', idempotency_key text DEFAULT NULL,
                                              not_after timestamptz DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'provider');
    v_outcome jsonb;
BEGIN
    v_outcome := membership.enqueue_notification_audience(v_caller.organisation_id, audience, channel, 3, category,
                                                          title, body, data, 'provider',
                                                          -- keys are per organisation: keep providers apart
                                                          'provider:' || v_caller.provider_id || ':' || idempotency_key,
                                                          not_after, now(), v_caller.provider_id);
    RETURN jsonb_build_object('promotion', (v_outcome ->> 'batch')::bigint, 'status', 'deferred',
                              'reason', 'awaiting_approval');
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.send_promotion(jsonb, text, text, text, jsonb, text, text, timestamptz, text)
    TO membership_provider;
COMMENT ON FUNCTION membership_api.send_promotion(jsonb, text, text, text, jsonb, text, text, timestamptz, text) IS
    'providers: propose a promotion (priority 3) to an audience; it waits for the organisation''s approval';
