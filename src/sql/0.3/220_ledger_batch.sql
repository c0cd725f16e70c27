-- Batches of earns, release 0.3 (issue #4 benchmarks).  earn_points_batch()
-- checks the events, finds what was earned before, and opens and locks
-- the accounts as in 0.2; then the new events are earned one after the
-- other in C with the tables opened once (loyalty_earn_events(), in
-- src/ledger_earn.c and src/ledger_write.c), instead of set-based waves
-- cut at each tier upgrade.  Same results, rows and errors.

-- The rules' set-based evaluation of 0.2, which single earns and the
-- waves shared, has no caller left: both evaluate the rules in C
-- (earn_calc() in src/ledger_earn.c, the same rules and arithmetic).
DROP FUNCTION membership.loyalty_earn_calc(uuid, membership.loyalty_earn_input[]);
DROP TYPE membership.loyalty_earn_input;

-- A program is created once: checking first keeps the INSERT, and so the
-- statement trigger that makes every backend read the organisation's
-- program again (loyalty_program_changed()), out of every batch and every
-- read of the program.
CREATE OR REPLACE FUNCTION membership.loyalty_ensure_program(organisation uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF EXISTS (SELECT FROM membership.loyalty_programs p WHERE p.organisation_id = organisation) THEN
        RETURN;
    END IF;
    INSERT INTO membership.loyalty_programs (organisation_id) VALUES (organisation)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO membership.loyalty_tiers (organisation_id, tier, threshold, multiplier, perks)
        VALUES (organisation, 'bronze', 0, 1, '[]'),
               (organisation, 'silver', 5000, 1.5, '["priority support"]'),
               (organisation, 'gold', 15000, 2, '["priority support", "free shipping"]'),
               (organisation, 'platinum', 50000, 3, '["priority support", "free shipping", "lounge access"]');
    END IF;
END
$$;

-- A batch's amount_cents and member_id as a bigint and a uuid when they
-- are written as one (an optional minus and 1 to 18 digits; 8-4-4-4-12
-- hexadecimal digits), else NULL: the event is then rejected, not the
-- batch.  In C, as regular expressions cost more than the rest of reading
-- an event.
CREATE FUNCTION membership.loyalty_int8_or_null(text) RETURNS bigint
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_int8_or_null';
CREATE FUNCTION membership.loyalty_uuid_or_null(text) RETURNS uuid
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_uuid_or_null';

-- Internal to earn_points_batch() (the owner's only).
CREATE FUNCTION membership.loyalty_earn_events(organisation uuid, events membership.loyalty_batch_event[])
    RETURNS TABLE (idx integer, points bigint)
    LANGUAGE C STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'membership_loyalty_earn_events';
REVOKE EXECUTE ON FUNCTION membership.loyalty_earn_events(uuid, membership.loyalty_batch_event[]) FROM PUBLIC;

-- Earn points for a batch of order events: see 0.2 (220_ledger_earn.sql)
-- for what it does and returns.
CREATE OR REPLACE FUNCTION membership.earn_points_batch(organisation uuid, events jsonb)
    RETURNS TABLE (idx integer, source_type text, source_ref text, member_id uuid, points bigint,
                   status text, error text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_all membership.loyalty_batch_event[];
    v_pending membership.loyalty_batch_event[];
    v_members uuid[];
    v_done_idx integer[] := '{}';
    v_done_points bigint[] := '{}';
    v_prior jsonb;
    v_n integer;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF events IS NULL OR jsonb_typeof(events) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'events must be a JSON array';
    END IF;
    v_n := jsonb_array_length(events);
    IF v_n > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
            MESSAGE = format('a batch holds at most 100000 events, not %s', v_n),
            HINT = 'Split the events into several batches.';
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);

    -- Parse and check every event; find its member.
    SELECT array_agg(ROW(e.idx, coalesce(by_id.id, by_external_id.id), f.amount_cents, f.source_type,
                         f.source_ref, f.category, f.occurred_at,
                         CASE WHEN jsonb_typeof(e.x) <> 'object' THEN 'event must be a JSON object'
                              -- amount_cents is NULL when amount_text is not an integer
                              WHEN f.amount_text IS NOT NULL AND f.amount_cents IS NULL
                                  THEN 'amount_cents must be an integer'
                              WHEN e.x ? 'member_id' = e.x ? 'external_id'
                                  THEN 'give the member_id or the external_id of the member'
                              ELSE coalesce(membership.loyalty_event_problem(f.amount_cents, f.source_type,
                                                                             f.source_ref, f.category, f.occurred_at),
                                            CASE WHEN coalesce(by_id.id, by_external_id.id) IS NULL
                                                 THEN 'member does not exist in this organisation' END)
                         END)::membership.loyalty_batch_event ORDER BY e.idx)
    INTO v_all
    FROM jsonb_array_elements(events) WITH ORDINALITY AS e(x, idx)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'amount_cents' END AS amount_text,
               CASE WHEN jsonb_typeof(e.x) = 'object'
                    THEN membership.loyalty_int8_or_null(e.x ->> 'amount_cents') END AS amount_cents,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'source_type' END AS source_type,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'source_ref' END AS source_ref,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'category' END AS category,
               CASE WHEN jsonb_typeof(e.x) = 'object'
                    THEN coalesce((e.x ->> 'occurred_at')::timestamptz, now()) END AS occurred_at,
               CASE WHEN jsonb_typeof(e.x) = 'object'
                    THEN membership.loyalty_uuid_or_null(e.x ->> 'member_id') END AS member_uuid,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'external_id' END AS external_id
        OFFSET 0  -- evaluate each field once, not at every use
    ) f
    LEFT JOIN membership.members by_id
           ON by_id.id = f.member_uuid AND by_id.organisation_id = earn_points_batch.organisation
    LEFT JOIN LATERAL (
        SELECT m.id FROM membership.members m
        WHERE f.member_uuid IS NULL AND m.organisation_id = earn_points_batch.organisation
          AND m.external_id = f.external_id
        OFFSET 0  -- looked up by the index, only for events that give an external_id
    ) by_external_id ON true;

    -- What was earned before under the keys of this batch, looked up by
    -- the unique index (a jsonb object: key -> the entry).
    SELECT jsonb_object_agg(l.idempotency_key, jsonb_build_object('member_id', l.member_id, 'points', l.points,
                                                                  'amount_cents', l.amount_cents,
                                                                  'category', l.category))
    INTO v_prior
    FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation
      AND l.idempotency_key = ANY (ARRAY(SELECT 'earn:' || e.source_type || ':' || e.source_ref
                                         FROM unnest(v_all) e WHERE e.problem IS NULL));
    v_prior := coalesce(v_prior, '{}');

    -- Events that are well formed and new: not earned before, and the
    -- first of their key in this batch.  The others are replays (checked
    -- at the end) or rejected.
    SELECT array_agg(ROW(e.idx, e.member_id, e.amount_cents, e.source_type, e.source_ref, e.category,
                         e.occurred_at, NULL)::membership.loyalty_batch_event ORDER BY e.idx)
    INTO v_pending
    FROM (SELECT d.*, row_number() OVER (PARTITION BY d.source_type, d.source_ref ORDER BY d.idx) AS nth
          FROM unnest(v_all) d WHERE d.problem IS NULL) e
    WHERE e.nth = 1 AND NOT v_prior ? ('earn:' || e.source_type || ':' || e.source_ref);

    -- Open the accounts and lock them, in one order so that concurrent
    -- batches cannot deadlock.
    v_members := ARRAY(SELECT DISTINCT e.member_id FROM unnest(v_pending) e ORDER BY 1);
    INSERT INTO membership.loyalty_accounts (organisation_id, member_id, tier)
    SELECT organisation, m,
           (SELECT t.tier FROM membership.loyalty_tiers t WHERE t.organisation_id = organisation
            ORDER BY t.threshold LIMIT 1)
    FROM unnest(v_members) m
    WHERE NOT EXISTS (SELECT FROM membership.loyalty_accounts a WHERE a.member_id = m)
    ON CONFLICT DO NOTHING;
    PERFORM FROM membership.loyalty_accounts a
    WHERE a.organisation_id = organisation AND a.member_id = ANY (v_members)
    ORDER BY a.member_id FOR UPDATE;

    -- Earn each new event in order, as earn_points() would (in C, the
    -- tables opened once): a tier reached applies to the member's next.
    SELECT coalesce(array_agg(r.idx ORDER BY r.idx), '{}'), coalesce(array_agg(r.points ORDER BY r.idx), '{}')
    INTO v_done_idx, v_done_points
    FROM membership.loyalty_earn_events(organisation, v_pending) AS r;

    RETURN QUERY
    WITH done AS (
        -- the points of each event earned now, by its position
        SELECT * FROM unnest(v_done_idx, v_done_points) AS d(idx, points)
    ), ev AS (
        SELECT e.*, 'earn:' || e.source_type || ':' || e.source_ref AS key,
               first_value(e) OVER (PARTITION BY e.problem IS NULL, e.source_type, e.source_ref ORDER BY e.idx)
                   AS first
        FROM unnest(v_all) e
    ), judged AS (
        SELECT ev.*, v_prior -> ev.key AS prior,
               CASE WHEN ev.problem IS NOT NULL THEN ev.problem
                    WHEN v_prior ? ev.key
                         AND ((v_prior -> ev.key ->> 'member_id')::uuid <> ev.member_id
                              OR (v_prior -> ev.key ->> 'amount_cents')::bigint <> ev.amount_cents
                              OR v_prior -> ev.key ->> 'category' IS DISTINCT FROM ev.category)
                         THEN format('%s "%s" was already earned with different parameters', ev.source_type, ev.source_ref)
                    WHEN NOT v_prior ? ev.key AND (ev.first).idx <> ev.idx
                         AND ((ev.first).member_id <> ev.member_id OR (ev.first).amount_cents <> ev.amount_cents
                              OR (ev.first).category IS DISTINCT FROM ev.category)
                         THEN format('%s "%s" was already earned with different parameters', ev.source_type, ev.source_ref)
               END AS error
        FROM ev
    )
    SELECT j.idx, j.source_type, j.source_ref, j.member_id,
           CASE WHEN j.error IS NOT NULL THEN NULL
                WHEN j.prior IS NOT NULL THEN (j.prior ->> 'points')::bigint
                ELSE d.points END,
           CASE WHEN j.error IS NOT NULL THEN 'rejected'
                WHEN j.prior IS NOT NULL OR (j.first).idx <> j.idx THEN 'replayed'
                ELSE 'earned' END,
           j.error
    FROM judged j
    LEFT JOIN done d ON d.idx = (j.first).idx
    ORDER BY j.idx;
END
$$;
