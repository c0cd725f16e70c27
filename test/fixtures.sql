-- Test fixtures, shared by the pg_regress suites (sql/install.sql loads them
-- once) and the pgTAP suites (each loads them inside its own transaction):
--   roles "authenticator" (the gateway PostgREST logs in as) and "mallory"
--   (a client that is not the gateway);
--   fixture.try(sql): run a statement, return 'ok' or 'SQLSTATE: message'
--   with random key prefixes and ids masked;
--   fixture.new_org(slug): an organisation with its own key "slug:org" and a
--   provider key "slug:provider", kept in fixture.keys (fixture.key(name));
--   fixture.org(slug), fixture.claims(role, slug, external_id).

DO $$
DECLARE
    g record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mallory') THEN
        CREATE ROLE mallory LOGIN;
    END IF;
    FOR g IN
        SELECT * FROM (VALUES
            ('authenticator', 'membership_member'), ('authenticator', 'membership_org_admin'),
            ('authenticator', 'membership_provider'), ('authenticator', 'membership_platform_admin'),
            ('mallory', 'membership_member'), ('mallory', 'membership_org_admin'),
            ('mallory', 'membership_provider')) AS v(member, granted)
        WHERE NOT pg_has_role(v.member, v.granted, 'MEMBER')
    LOOP
        EXECUTE format('GRANT %I TO %I', g.granted, g.member);
    END LOOP;
END
$$;

CREATE SCHEMA fixture;
GRANT USAGE ON SCHEMA fixture TO PUBLIC;

CREATE FUNCTION fixture.try(stmt text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_message text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
    -- key prefixes and ids are random: mask them
    RETURN v_state || ': ' || regexp_replace(regexp_replace(v_message,
        'mk_[a-z2-7]{8}', 'mk_<prefix>', 'g'),
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;

CREATE TABLE fixture.keys (name text PRIMARY KEY, key text NOT NULL);
GRANT SELECT ON fixture.keys TO PUBLIC;
CREATE FUNCTION fixture.key(name text) RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT key FROM fixture.keys k WHERE k.name = $1 $$;

CREATE FUNCTION fixture.org(slug text) RETURNS uuid
    LANGUAGE sql STABLE AS $$
    SELECT (SELECT id FROM membership.organisations o WHERE o.slug = $1)
$$;

-- An organisation "slug" with keys "slug:org" (its own, enterprise plan)
-- and "slug:provider" (provider "slug-bank", free plan).
CREATE FUNCTION fixture.new_org(slug text) RETURNS uuid
    LANGUAGE plpgsql AS $$
DECLARE
    v_org uuid := membership.create_organisation(slug, 'Organisation ' || slug);
BEGIN
    PERFORM membership.create_provider(slug || '-bank', 'Bank of ' || slug);
    INSERT INTO fixture.keys VALUES
        (slug || ':org', membership.issue_api_key(v_org, NULL, 'enterprise')),
        (slug || ':provider', membership.issue_api_key(v_org, slug || '-bank', 'free'));
    RETURN v_org;
END
$$;

-- JWT claims as PostgREST would set them.
CREATE FUNCTION fixture.claims(role text, org_slug text, external_id text DEFAULT NULL)
    RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT json_strip_nulls(json_build_object(
        'role', 'membership_' || role,
        'org_id', fixture.org(org_slug),
        'member_id', (SELECT m.id FROM membership.members m
                      WHERE m.organisation_id = fixture.org(org_slug)
                        AND m.external_id = claims.external_id)))::text
$$;

-- Normal verification traffic, per key and minute, as the demo sends it:
-- each key has its own rate (2 to 40 calls a minute), busier by day than
-- by night, with some noise, and 4 to 12 per cent of lookups finding no
-- member (customers who are not members, typos).  Deterministic.
CREATE FUNCTION fixture.normal_traffic(key_ids bigint[], first_minute timestamptz, minutes integer)
    RETURNS TABLE (api_key_id bigint, minute timestamptz, calls bigint, misses bigint)
    LANGUAGE sql IMMUTABLE AS $$
    WITH r AS (
        SELECT k.id, date_trunc('minute', first_minute) + make_interval(mins => m) AS minute,
               2 + (abs(hashint8(k.id)) % 39) AS rate,
               0.04 + (abs(hashint8(k.id + 7)) % 9) / 100.0 AS miss_share,
               (abs(hashint8(k.id * 1000003 + m)) % 61 - 30) / 100.0 AS noise
        FROM unnest(key_ids) AS k(id), generate_series(0, minutes - 1) AS m
    )
    SELECT id, minute, c, round(c * miss_share)::bigint
    FROM r, LATERAL (SELECT greatest(0, round(rate * (1 + 0.5 * sin(extract(hour FROM minute AT TIME ZONE 'UTC') * pi() / 12))
                                                     * (1 + noise)))::bigint AS c) AS calls
$$;
