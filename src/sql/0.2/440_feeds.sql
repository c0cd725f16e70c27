-- Personalised benefit feeds (src/scoring.c): each active member's 20 best
-- benefits, scored nightly in one pass by membership.score_feeds() and
-- again for one member when their preferences or consents change.
--
-- A feed is one row: the benefit ids in rank order and their scores.  The
-- nightly pass rewrites the feeds that changed in a single transaction, so
-- membership_api.feed() shows the previous night's feed or the new one,
-- never a mix.  The table has no foreign keys: it is derived data that
-- every night rewrites, and checking a key per row would cost the pass a
-- row lock on every member; a trigger on members removes the feeds of
-- deleted members instead.

CREATE TABLE membership.feeds (
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    benefit_ids     integer[] NOT NULL,
    scores          real[] NOT NULL,
    scored_at       timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, member_id),
    CHECK (pg_catalog.array_ndims(benefit_ids) = 1 AND pg_catalog.array_ndims(scores) = 1
           AND pg_catalog.cardinality(benefit_ids) BETWEEN 1 AND 20
           AND pg_catalog.cardinality(scores) = pg_catalog.cardinality(benefit_ids))
) WITH (fillfactor = 50);
-- Half of each page is left free so that a night that changes every feed
-- can write each new version beside the old one (a HOT update, with no new
-- index entry); the old versions are pruned after the night commits.
COMMENT ON TABLE membership.feeds IS
    'tenant: each member''s best benefits, in rank order, with their scores';
SELECT membership.isolate_table('membership.feeds');

CREATE FUNCTION membership.scored_feeds()
    RETURNS TABLE (member_id uuid, benefit_ids integer[], scores real[])
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 10000
    AS 'MODULE_PATHNAME', 'membership_scored_feeds';
COMMENT ON FUNCTION membership.scored_feeds() IS
    'internal: the feeds the nightly pass has just computed for the organisation it is writing';

CREATE FUNCTION membership.score_member(member uuid, as_of date DEFAULT CURRENT_DATE)
    RETURNS TABLE (rank integer, benefit_id integer, score real)
    LANGUAGE C STABLE PARALLEL UNSAFE ROWS 20
    AS 'MODULE_PATHNAME', 'membership_score_member';
COMMENT ON FUNCTION membership.score_member(uuid, date) IS
    'one member''s feed computed now (owner role, acting for the member''s organisation)';

CREATE FUNCTION membership.score_feeds(as_of date DEFAULT CURRENT_DATE) RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS 'MODULE_PATHNAME', 'membership_score_feeds';
COMMENT ON FUNCTION membership.score_feeds(date) IS
    'the nightly pass: score every active member and store their feeds; returns how many have one';
GRANT EXECUTE ON FUNCTION membership.score_feeds(date) TO membership_worker, membership_platform_admin;

-- Score one member again now and store the result.  Returns the feed's
-- length (0: no feed).  Acts within the tenant context of the caller,
-- which must be the member's organisation.
CREATE FUNCTION membership.refresh_feed(member uuid) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_org uuid;
    v_ids integer[];
    v_scores real[];
BEGIN
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member must not be null';
    END IF;
    -- A nightly pass noting its starting time waits for this refresh to
    -- commit; a pass that has noted it leaves this feed alone (the
    -- SCORING_LOCK_FENCE lock of src/scoring.c).
    PERFORM pg_advisory_xact_lock_shared(1835363682, 2);

    SELECT m.organisation_id INTO v_org FROM membership.members m WHERE m.id = member;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT array_agg(s.benefit_id ORDER BY s.rank), array_agg(s.score ORDER BY s.rank)
    INTO v_ids, v_scores
    FROM membership.score_member(member) s;

    IF v_ids IS NULL THEN
        DELETE FROM membership.feeds f WHERE f.organisation_id = v_org AND f.member_id = member;
        RETURN 0;
    END IF;
    INSERT INTO membership.feeds AS f (organisation_id, member_id, benefit_ids, scores, scored_at)
    VALUES (v_org, member, v_ids, v_scores, clock_timestamp())
    ON CONFLICT ON CONSTRAINT feeds_pkey
    DO UPDATE SET benefit_ids = EXCLUDED.benefit_ids, scores = EXCLUDED.scores, scored_at = EXCLUDED.scored_at;
    RETURN cardinality(v_ids);
END
$$;

-- Consents steer the feed: a change of personalisation or usage_tracking
-- rescores the member at once, and revoking usage_tracking makes their
-- recorded usage anonymous.
CREATE FUNCTION membership.consent_changed() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF NEW.consent = 'usage_tracking' AND NOT NEW.granted THEN
        UPDATE membership.benefit_usage u SET member_id = NULL
        WHERE u.member_id = NEW.member_id AND u.organisation_id = NEW.organisation_id;
    END IF;
    IF NEW.consent IN ('personalisation', 'usage_tracking') THEN
        PERFORM membership.refresh_feed(NEW.member_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER consents_steer_feed AFTER INSERT OR UPDATE OF granted ON membership.consents
    FOR EACH ROW EXECUTE FUNCTION membership.consent_changed();

CREATE FUNCTION membership.members_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    DELETE FROM membership.feeds f USING gone g
    WHERE f.organisation_id = g.organisation_id AND f.member_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER members_deleted_feeds AFTER DELETE ON membership.members
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION membership.members_deleted();

-- The calling member's feed with the benefits' details, best first.  A
-- member scored before the last night gets the stored feed; one who has
-- none yet (new since then) gets it computed now.  Benefits deactivated or
-- withdrawn since the feed was scored are left out.
CREATE FUNCTION membership_api.feed(max_results integer DEFAULT 20)
    RETURNS TABLE (rank integer, benefit_id integer, title text, description text, category text,
                   provider text, url text, score real, is_new boolean, scored_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_member membership.members := membership.require_active_member();
    v_feed membership.feeds;
BEGIN
    IF max_results IS NULL OR max_results NOT BETWEEN 1 AND 20 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_results must be between 1 and 20, not %s', coalesce(max_results::text, 'null'));
    END IF;
    SELECT * INTO v_feed FROM membership.feeds f
    WHERE f.organisation_id = v_caller.organisation_id AND f.member_id = v_member.id;
    IF NOT FOUND THEN
        SELECT v_caller.organisation_id, v_member.id, array_agg(s.benefit_id ORDER BY s.rank),
               array_agg(s.score ORDER BY s.rank), now()
        INTO v_feed
        FROM membership.score_member(v_member.id) s;
    END IF;

    RETURN QUERY
        SELECT (row_number() OVER (ORDER BY e.ord))::integer, b.id, b.title, b.description, b.category,
               p.name, b.url, e.score, b.added_on BETWEEN current_date - 6 AND current_date, v_feed.scored_at
        FROM unnest(v_feed.benefit_ids, v_feed.scores) WITH ORDINALITY AS e(benefit_id, score, ord)
        JOIN membership.benefits b ON b.id = e.benefit_id AND b.active
        JOIN membership.benefit_offers o ON o.benefit_id = b.id AND o.organisation_id = v_caller.organisation_id
        JOIN membership.providers p ON p.id = b.provider_id
        ORDER BY e.ord
        LIMIT max_results;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.feed(integer) TO membership_member;
COMMENT ON FUNCTION membership_api.feed(integer) IS
    'members: your personalised benefit feed, best first (at most 20)';

SELECT membership.register_job('score_feeds', '0 2 * * *', 'SELECT membership.score_feeds()',
    'score every active member''s benefit feed (DESIGN.md 4.5) and swap in the new feeds');
