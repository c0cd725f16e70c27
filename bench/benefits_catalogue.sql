-- A realistic benefit catalogue for the data set of bench/dataset.sql, used
-- by the scoring benchmark (bench/60_scoring.sh) and the demo
-- (script/demo.d/60_benefits.sql): 15 categories, 150 benefits from the
-- data set's 12 providers (a few added this week, a few inactive), every
-- organisation offering nearly all of them and promoting some, a
-- profession-to-category relevance matrix for every profession of the data
-- set, and for the members: consents (about 60% personalisation, 50% usage
-- tracking), bookmarked and hidden categories, and a year of benefit usage
-- (about half a million uses, kept per member only with usage tracking).
--
-- Deterministic like the data set (dataset.rnd).  Needs bench/dataset.sql
-- loaded with its members.  The catalogue goes through the platform
-- functions; the members' history is bulk-loaded as a superuser, with
-- triggers off (session_replication_role), as a migration would load it.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS benefits_dataset CASCADE;
CREATE SCHEMA benefits_dataset;

CREATE TABLE benefits_dataset.categories (category text PRIMARY KEY, name text NOT NULL, ord integer NOT NULL);
INSERT INTO benefits_dataset.categories VALUES
    ('travel', 'Travel', 1), ('insurance', 'Insurance', 2), ('banking', 'Banking', 3),
    ('health', 'Health', 4), ('fitness', 'Fitness', 5), ('education', 'Courses and education', 6),
    ('electronics', 'Electronics', 7), ('home', 'Home and garden', 8), ('dining', 'Dining', 9),
    ('entertainment', 'Entertainment', 10), ('legal', 'Legal help', 11), ('childcare', 'Family and childcare', 12),
    ('pension', 'Pension and savings', 13), ('car', 'Car and transport', 14), ('wellness', 'Wellness', 15);

-- Which providers offer what kind of benefit.
CREATE TABLE benefits_dataset.provider_categories (provider text, category text);
INSERT INTO benefits_dataset.provider_categories VALUES
    ('northbank', 'banking'), ('northbank', 'pension'), ('northbank', 'travel'),
    ('fjordbank', 'banking'), ('fjordbank', 'home'), ('fjordbank', 'pension'),
    ('coastcredit', 'banking'), ('coastcredit', 'car'),
    ('safeguard', 'insurance'), ('safeguard', 'legal'), ('safeguard', 'car'),
    ('harbour-insurance', 'insurance'), ('harbour-insurance', 'health'), ('harbour-insurance', 'childcare'),
    ('alpine-life', 'pension'), ('alpine-life', 'insurance'), ('alpine-life', 'wellness'),
    ('gearhub', 'electronics'), ('gearhub', 'entertainment'), ('gearhub', 'education'),
    ('trailsport', 'fitness'), ('trailsport', 'travel'), ('trailsport', 'wellness'),
    ('homeworks', 'home'), ('homeworks', 'childcare'), ('homeworks', 'dining'),
    ('skyways', 'travel'), ('skyways', 'entertainment'), ('skyways', 'dining'),
    ('railnord', 'travel'), ('railnord', 'car'), ('railnord', 'education'),
    ('fitzone', 'fitness'), ('fitzone', 'health'), ('fitzone', 'wellness');

-- The catalogue, the offers and the relevance matrix.
CREATE FUNCTION benefits_dataset.create_catalogue() RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    pc record;
    n integer := 0;
    c record;
    o record;
    b record;
    prof text;
BEGIN
    FOR c IN SELECT * FROM benefits_dataset.categories ORDER BY ord LOOP
        PERFORM membership.set_benefit_category(c.category, c.name);
    END LOOP;
    -- 150 benefits: the providers' categories in turn
    WHILE n < 150 LOOP
        FOR pc IN SELECT * FROM benefits_dataset.provider_categories ORDER BY provider, category LOOP
            EXIT WHEN n >= 150;
            n := n + 1;
            PERFORM membership.create_benefit(
                pc.provider, pc.category,
                initcap(pc.category) || ' offer ' || n || ' from ' || (SELECT name FROM dataset.providers WHERE slug = pc.provider),
                round((0.1 + 0.5 * dataset.rnd('base:' || n))::numeric, 3)::double precision,
                'Members save on ' || (SELECT name FROM benefits_dataset.categories WHERE category = pc.category) || '.',
                'https://' || pc.provider || '.example/members/' || n,
                CASE WHEN n % 30 = 0 THEN current_date - (n % 7)
                     ELSE current_date - 7 - (dataset.rnd('added:' || n) * 700)::int END);
        END LOOP;
    END LOOP;
    UPDATE membership.benefits SET active = false WHERE id % 37 = 0;

    -- every organisation offers 95% of the catalogue and promotes a fifth of it
    FOR o IN SELECT d.slug, org.id FROM dataset.organisations d
             JOIN membership.organisations org ON org.slug = d.slug ORDER BY d.slug LOOP
        FOR b IN SELECT id FROM membership.benefits ORDER BY id LOOP
            CONTINUE WHEN dataset.rnd('offer:' || o.slug || ':' || b.id) < 0.05;
            PERFORM membership.offer_benefit(o.id, b.id,
                CASE WHEN dataset.rnd('promo:' || o.slug || ':' || b.id) < 0.2
                     THEN round(dataset.rnd('weight:' || o.slug || ':' || b.id)::numeric, 2)::double precision
                     ELSE 0 END);
        END LOOP;
    END LOOP;

    -- each profession finds four or five categories relevant
    FOR prof IN SELECT DISTINCT unnest(professions) FROM dataset.organisations ORDER BY 1 LOOP
        FOR c IN SELECT * FROM benefits_dataset.categories ORDER BY ord LOOP
            CONTINUE WHEN dataset.rnd('rel?:' || prof || ':' || c.category) >= 0.3;
            PERFORM membership.set_category_relevance(prof, c.category,
                round((0.3 + 0.7 * dataset.rnd('rel:' || prof || ':' || c.category))::numeric, 2)::double precision);
        END LOOP;
    END LOOP;
END
$$;

-- The members' consents, preferences and a year of usage up to "as_of".
CREATE FUNCTION benefits_dataset.create_history(as_of date DEFAULT current_date) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL session_replication_role = replica;

    CREATE TEMPORARY TABLE member_flags ON COMMIT DROP AS
    SELECT m.id, m.organisation_id, m.profession, o.slug || ':' || m.external_id AS seed,
           dataset.rnd('personal:' || o.slug || ':' || m.external_id) < 0.6 AS personalisation,
           dataset.rnd('tracking:' || o.slug || ':' || m.external_id) < 0.5 AS usage_tracking,
           dataset.rnd('usage:' || o.slug || ':' || m.external_id) AS activity
    FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
    WHERE m.removed_at IS NULL;

    INSERT INTO membership.consent_events (organisation_id, member_id, consent, granted, recorded_at)
    SELECT f.organisation_id, f.id, k.consent, true, as_of - 400
    FROM member_flags f,
         LATERAL (VALUES ('personalisation', f.personalisation), ('usage_tracking', f.usage_tracking)) AS k(consent, granted)
    WHERE k.granted;
    INSERT INTO membership.consents (organisation_id, member_id, consent, granted, updated_at)
    SELECT f.organisation_id, f.id, k.consent, true, as_of - 400
    FROM member_flags f,
         LATERAL (VALUES ('personalisation', f.personalisation), ('usage_tracking', f.usage_tracking)) AS k(consent, granted)
    WHERE k.granted
    ON CONFLICT (member_id, consent) DO NOTHING;

    -- one member in ten bookmarks or hides a category or two
    INSERT INTO membership.category_preferences (organisation_id, member_id, category, preference)
    SELECT DISTINCT ON (f.id, c.category) f.organisation_id, f.id, c.category,
           CASE WHEN dataset.rnd('hide:' || f.seed || ':' || i) < 0.3 THEN 'hidden' ELSE 'bookmarked' END
    FROM member_flags f, generate_series(1, 2) AS i,
         benefits_dataset.categories c
    WHERE dataset.rnd('prefs:' || f.seed) < 0.1
      AND c.ord = 1 + floor(dataset.rnd('prefcat:' || f.seed || ':' || i) * 15)::int
    ON CONFLICT (member_id, category) DO NOTHING;

    -- a year of usage: active members use a few benefits of their
    -- organisation's, kept with the member only with usage tracking
    CREATE TEMPORARY TABLE offered ON COMMIT DROP AS
    SELECT o.organisation_id, o.benefit_id, b.provider_id,
           row_number() OVER (PARTITION BY o.organisation_id ORDER BY o.benefit_id) AS ord
    FROM membership.benefit_offers o JOIN membership.benefits b ON b.id = o.benefit_id AND b.active;
    CREATE UNIQUE INDEX ON pg_temp.offered (organisation_id, ord);
    ANALYZE pg_temp.offered;

    INSERT INTO membership.benefit_usage (organisation_id, benefit_id, member_id, provider_id, used_at)
    SELECT u.organisation_id, o.benefit_id, CASE WHEN u.usage_tracking THEN u.id END, o.provider_id, u.used_at
    FROM (SELECT f.id, f.organisation_id, f.usage_tracking,
                 1 + floor(dataset.rnd('what:' || f.seed || ':' || (i % 3)) * n.offered)::int AS ord,
                 as_of - (dataset.rnd('when:' || f.seed || ':' || i) * 360)::int
                     + make_interval(secs => 36000 * dataset.rnd('time:' || f.seed || ':' || i)) AS used_at
          FROM member_flags f
          JOIN (SELECT organisation_id, count(*) AS offered FROM pg_temp.offered GROUP BY 1) n
            ON n.organisation_id = f.organisation_id,
               generate_series(1, floor(f.activity * f.activity * 14)::int) AS i) u
    JOIN pg_temp.offered o ON o.organisation_id = u.organisation_id AND o.ord = u.ord;
END
$$;
