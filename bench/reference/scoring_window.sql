-- Reference for the scoring benchmark: the same formula as
-- membership.score_feeds() (DESIGN.md 4.5, src/scoring.c), written the
-- plain SQL way: every (member, offered benefit) pair scored in one query,
-- ranked with a window function, the best 20 per member aggregated and
-- written to a table shaped like membership.feeds.  The terms are added in
-- the same order in double precision, so both give the very same feeds
-- (bench/60_scoring.sh checks that).  It runs as a superuser, so row-level
-- security costs it nothing: a conservative reference.
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench;

CREATE TABLE IF NOT EXISTS bench.feeds (
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    benefit_ids     integer[] NOT NULL,
    scores          real[] NOT NULL,
    scored_at       timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, member_id)
);

CREATE OR REPLACE FUNCTION bench.score_feeds_sql(as_of date DEFAULT current_date) RETURNS bigint
    LANGUAGE sql AS $$
WITH member AS (
    SELECT m.id, m.organisation_id, lower(m.profession) AS profession,
           coalesce(p.granted, false) AS personalised, coalesce(t.granted, false) AS tracking
    FROM membership.members m
    LEFT JOIN membership.consents p ON p.member_id = m.id AND p.consent = 'personalisation'
    LEFT JOIN membership.consents t ON t.member_id = m.id AND t.consent = 'usage_tracking'
    WHERE m.status = 'active' AND m.removed_at IS NULL
), usage AS (
    SELECT u.member_id, b.category, count(*)::float8 AS uses,
           (sum(count(*)) OVER (PARTITION BY u.member_id))::float8 AS total
    FROM membership.benefit_usage u JOIN membership.benefits b ON b.id = u.benefit_id
    WHERE u.member_id IS NOT NULL AND u.used_at >= as_of - 365 AND u.used_at < as_of + 1
    GROUP BY u.member_id, b.category
), scored AS (
    SELECT m.organisation_id, m.id AS member_id, b.id AS benefit_id,
           b.base_score
           + 0.4::float8 * CASE WHEN NOT m.personalised THEN 0::float8
                                WHEN cp.preference = 'bookmarked' THEN 1::float8
                                ELSE coalesce(r.relevance, 0::float8) END
           + 0.3::float8 * CASE WHEN m.personalised AND m.tracking THEN coalesce(us.uses / us.total, 0::float8)
                                ELSE 0::float8 END
           + 0.2::float8 * o.promotion_weight
           + 0.1::float8 * CASE WHEN b.added_on <= as_of AND b.added_on > as_of - 7 THEN 1::float8
                                ELSE 0::float8 END AS score
    FROM member m
    JOIN membership.benefit_offers o ON o.organisation_id = m.organisation_id
    JOIN membership.benefits b ON b.id = o.benefit_id AND b.active
    LEFT JOIN membership.category_preferences cp ON cp.member_id = m.id AND cp.category = b.category
    LEFT JOIN membership.category_relevance r ON r.profession = m.profession AND r.category = b.category
    LEFT JOIN usage us ON us.member_id = m.id AND us.category = b.category
    WHERE cp.preference IS DISTINCT FROM 'hidden'
), ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.member_id ORDER BY s.score DESC, s.benefit_id) AS rank
    FROM scored s
), written AS (
    INSERT INTO bench.feeds (organisation_id, member_id, benefit_ids, scores, scored_at)
    SELECT organisation_id, member_id, array_agg(benefit_id ORDER BY rank), array_agg(score::real ORDER BY rank), now()
    FROM ranked
    WHERE rank <= 20
    GROUP BY organisation_id, member_id
    RETURNING 1
)
SELECT count(*) FROM written
$$;
