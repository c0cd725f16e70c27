-- The realistic data set used by script/demo and script/bench: 9
-- professional organisations of uneven sizes, 118,000 members in all, with
-- professions, tiers, statuses, member-since dates and a few percent with
-- dependents; 12 providers holding keys on every plan.
--
-- Everything is deterministic (pseudo-random values come from hashes), so
-- two runs load the same data.  Members arrive the way organisations send
-- them: one full sync per organisation through membership_api.sync_members
-- with the organisation's own key.  This file only defines the generator;
-- script/lib.sh (mb_load_dataset) runs it organisation by organisation.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS dataset CASCADE;
CREATE SCHEMA dataset;

CREATE TABLE dataset.organisations (
    slug        text PRIMARY KEY,
    name        text NOT NULL,
    size        integer NOT NULL,
    domain      text NOT NULL,
    professions text[] NOT NULL,
    colour      text NOT NULL
);
INSERT INTO dataset.organisations VALUES
    ('physicians',    'Association of Physicians',      13500, 'physicians.example',    '{general practitioner,surgeon,psychiatrist,paediatrician,radiologist}', '#1a5f7a'),
    ('dentists',      'Dental Association',             13400, 'dentists.example',      '{dentist,orthodontist,dental hygienist}', '#2e8b57'),
    ('nurses',        'Nurses Union',                   13300, 'nurses.example',        '{registered nurse,midwife,nurse practitioner,public health nurse}', '#c0392b'),
    ('engineers',     'Society of Engineers',           13200, 'engineers.example',     '{civil engineer,software engineer,electrical engineer,mechanical engineer}', '#34495e'),
    ('lawyers',       'Bar Association',                13100, 'lawyers.example',       '{lawyer,judge,legal counsel}', '#6c3483'),
    ('teachers',      'Teachers Federation',            13000, 'teachers.example',      '{primary teacher,secondary teacher,lecturer,kindergarten teacher}', '#d35400'),
    ('economists',    'Economists Association',         12900, 'economists.example',    '{economist,accountant,auditor,financial analyst}', '#117a65'),
    ('architects',    'Architects Association',         12850, 'architects.example',    '{architect,landscape architect,urban planner}', '#7d6608'),
    ('psychologists', 'Psychological Association',      12750, 'psychologists.example', '{clinical psychologist,neuropsychologist,organisational psychologist}', '#1f618d');

CREATE TABLE dataset.providers (slug text PRIMARY KEY, name text NOT NULL);
INSERT INTO dataset.providers VALUES
    ('northbank', 'North Bank'), ('fjordbank', 'Fjord Savings Bank'), ('coastcredit', 'Coast Credit'),
    ('safeguard', 'Safeguard Insurance'), ('harbour-insurance', 'Harbour Insurance'),
    ('alpine-life', 'Alpine Life & Pension'), ('gearhub', 'GearHub Electronics'),
    ('trailsport', 'Trail Sport'), ('homeworks', 'HomeWorks'), ('skyways', 'Skyways Airline'),
    ('railnord', 'RailNord'), ('fitzone', 'FitZone Gyms');

-- Keys are shown once, at issue; the demo and the benchmarks keep them here.
CREATE TABLE dataset.keys (
    organisation text NOT NULL,
    provider     text,
    plan         text NOT NULL,
    key          text NOT NULL
);

-- A deterministic pseudo-random number in [0, 1) for a seed.
CREATE FUNCTION dataset.rnd(seed text) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || substr(md5(seed), 1, 8))::bit(32)::bigint / 4294967296.0 $$;

-- Member i of an organisation, as the organisation's sync would send it.
CREATE FUNCTION dataset.member(o dataset.organisations, i integer) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT dataset.rnd(o.slug || ':tier:' || i) AS tier,
               dataset.rnd(o.slug || ':status:' || i) AS status,
               dataset.rnd(o.slug || ':since:' || i) AS since,
               dataset.rnd(o.slug || ':prof:' || i) AS prof,
               dataset.rnd(o.slug || ':deps:' || i) AS deps,
               ('{anna,bjorn,camilla,david,eva,fredrik,guro,hans,ingrid,jonas,kari,lars,maria,nils,ole,'
                'petra,ragnhild,sindre,tone,ulrik,vera,william,yasmin,zara,ahmed,leila,tomasz,ana,mikkel,sofie}'
               ::text[])[1 + (i * 7) % 30] AS first,
               ('{hansen,johansen,olsen,larsen,andersen,pedersen,nilsen,kristiansen,jensen,karlsen,'
                'johnsen,pettersen,eriksen,berg,haugen,hagen,johannessen,andreassen,jacobsen,dahl,'
                'jorgensen,halvorsen,henriksen,lund,sorensen,jakobsen,moen,gundersen,iversen,strand}'
               ::text[])[1 + (i / 30) % 30] AS last)
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'external_id', upper(left(o.slug, 3)) || '-' || lpad(i::text, 6, '0'),
        'email', r.first || '.' || r.last || '.' || i || '@' || o.domain,
        'membership_tier', CASE WHEN r.tier < 0.70 THEN 'full' WHEN r.tier < 0.82 THEN 'student'
                                WHEN r.tier < 0.97 THEN 'retired' ELSE 'associate' END,
        'status', CASE WHEN r.status < 0.94 THEN 'active' WHEN r.status < 0.97 THEN 'inactive'
                       WHEN r.status < 0.99 THEN 'lapsed' ELSE 'suspended' END,
        'member_since', (date '1975-01-01' + (r.since * (current_date - date '1975-01-01'))::int)::text,
        'profession', o.professions[1 + floor(r.prof * r.prof * cardinality(o.professions))::int],
        'dependents', CASE
            WHEN r.deps < 0.02 THEN jsonb_build_array(
                jsonb_build_object('email', 'partner.' || i || '@home.' || o.domain, 'relationship', 'spouse'))
            WHEN r.deps < 0.035 THEN jsonb_build_array(
                jsonb_build_object('email', 'partner.' || i || '@home.' || o.domain, 'relationship', 'partner'),
                jsonb_build_object('email', 'child.' || i || '@home.' || o.domain, 'relationship', 'child'))
            END))
    FROM r
$$;

-- The whole member list of one organisation.
CREATE FUNCTION dataset.member_list(slug text, size integer DEFAULT NULL) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg(dataset.member(o, i) ORDER BY i)
    FROM dataset.organisations o, generate_series(1, coalesce(member_list.size, o.size)) AS i
    WHERE o.slug = member_list.slug
$$;

-- Organisations, providers and keys: each organisation gets its own key,
-- and each provider a key in three of every four organisations, the plans
-- taking turns.
CREATE FUNCTION dataset.create_tenants() RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    o record;
    p record;
    plans text[] := '{free,starter,pro,enterprise}';
    n integer := 0;
    org uuid;
BEGIN
    FOR p IN SELECT * FROM dataset.providers ORDER BY slug LOOP
        PERFORM membership.create_provider(p.slug, p.name);
    END LOOP;
    FOR o IN SELECT row_number() OVER (ORDER BY size DESC) AS rank, * FROM dataset.organisations ORDER BY size DESC LOOP
        org := membership.create_organisation(o.slug, o.name, jsonb_build_object(
            'app_name', o.name, 'theme', jsonb_build_object('primary', o.colour),
            'logo_url', 'https://' || o.domain || '/logo.png',
            'apns_topic', 'example.' || replace(o.slug, '-', '') || '.app',
            'fcm_project', o.slug || '-app', 'support_email', 'support@' || o.domain));
        INSERT INTO dataset.keys VALUES (o.slug, NULL, 'enterprise', membership.issue_api_key(org, NULL, 'enterprise', 'member sync'));
        FOR p IN SELECT row_number() OVER (ORDER BY slug) AS rank, * FROM dataset.providers ORDER BY slug LOOP
            IF (o.rank + p.rank) % 4 <> 0 THEN
                n := n + 1;
                INSERT INTO dataset.keys
                VALUES (o.slug, p.slug, plans[1 + n % 4],
                        membership.issue_api_key(org, p.slug, plans[1 + n % 4], 'checkout'));
            END IF;
        END LOOP;
    END LOOP;
END
$$;

CREATE FUNCTION dataset.org_key(slug text) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT key FROM dataset.keys WHERE organisation = slug AND provider IS NULL
$$;
