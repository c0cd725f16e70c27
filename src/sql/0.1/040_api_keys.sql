-- API keys: bound to one organisation, to one provider or to the
-- organisation itself (provider_id NULL: the key it syncs members with),
-- and to one plan.  Only the SHA-256 hash of a key is stored; the key is
-- returned once, by issue_api_key() or rotate_api_key().

CREATE TABLE membership.api_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id),
    provider_id     uuid REFERENCES membership.providers (id),
    plan            text NOT NULL REFERENCES membership.plans (plan) ON UPDATE CASCADE,
    prefix          text NOT NULL UNIQUE CHECK (prefix ~ '^mk_[a-z2-7]{8}$'),
    key_hash        bytea NOT NULL CHECK (length(key_hash) = 32),
    label           text CHECK (length(label) <= 200),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    replaced_by     bigint  -- the key that rotation issued in its place
);
CREATE UNIQUE INDEX api_keys_key_hash_idx ON membership.api_keys (key_hash);
CREATE INDEX api_keys_organisation_idx ON membership.api_keys (organisation_id);
COMMENT ON TABLE membership.api_keys IS
    'tenant: hashed API keys of providers and of the organisation itself';
SELECT membership.isolate_table('membership.api_keys');

-- Raise an error unless the plan exists.
CREATE FUNCTION membership.check_plan(plan text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF plan IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'plan must not be null';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.plans p WHERE p.plan = check_plan.plan) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('plan "%s" does not exist', plan),
            HINT = 'membership.list_plans() lists them.';
    END IF;
END
$$;

CREATE FUNCTION membership.issue_api_key(organisation uuid, provider text,
                                         plan text DEFAULT 'free', label text DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_provider uuid;
    v_key text := membership.generate_api_key();
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF length(label) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'label must be at most 200 characters';
    END IF;
    IF provider IS NOT NULL THEN
        SELECT p.id INTO v_provider FROM membership.providers p WHERE p.slug = provider;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('provider "%s" does not exist', provider),
                HINT = 'Create it with membership.create_provider(); membership.list_providers() lists them.';
        END IF;
    END IF;
    PERFORM membership.check_plan(plan);

    INSERT INTO membership.api_keys (organisation_id, provider_id, plan, prefix, key_hash, label)
    VALUES (organisation, v_provider, issue_api_key.plan, left(v_key, 11),
            membership.api_key_hash(v_key), issue_api_key.label);
    RETURN v_key;
END
$$;
GRANT EXECUTE ON FUNCTION membership.issue_api_key(uuid, text, text, text) TO membership_platform_admin;
COMMENT ON FUNCTION membership.issue_api_key(uuid, text, text, text) IS
    'issue a key for a provider (or, with provider NULL, the organisation itself); the key is shown only now';

-- Find a key by its text or public prefix and act for its organisation.
CREATE FUNCTION membership.enter_api_key(key text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint;
    v_org uuid;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'key must not be null';
    END IF;
    SELECT l.id, l.organisation_id INTO v_id, v_org FROM membership.locate_api_key(key) AS l;
    IF v_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('API key "%s" does not exist', left(key, 11)),
            HINT = 'Pass the whole key or its 11-character public prefix.';
    END IF;
    PERFORM membership.set_tenant(v_org);
    RETURN v_id;
END
$$;

-- Revoke a key at once; true if it was active.
CREATE FUNCTION membership.revoke_api_key(key text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint := membership.enter_api_key(key);
BEGIN
    UPDATE membership.api_keys k SET revoked_at = now()
    WHERE k.id = v_id AND k.revoked_at IS NULL;
    RETURN FOUND;
END
$$;
GRANT EXECUTE ON FUNCTION membership.revoke_api_key(text) TO membership_platform_admin;

-- Issue a successor with the same organisation, provider and plan; the old
-- key keeps working for "overlap", so clients can switch without downtime.
CREATE FUNCTION membership.rotate_api_key(key text, overlap interval DEFAULT '7 days')
    RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint := membership.enter_api_key(key);
    v_old membership.api_keys;
    v_key text := membership.generate_api_key();
    v_new bigint;
BEGIN
    IF overlap IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'overlap must not be null';
    END IF;
    IF overlap < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'overlap must be zero or positive';
    END IF;
    SELECT * INTO v_old FROM membership.api_keys k WHERE k.id = v_id FOR UPDATE;
    IF v_old.revoked_at IS NOT NULL OR v_old.expires_at <= now() THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('API key "%s" is no longer active', v_old.prefix),
            HINT = 'Issue a new key with membership.issue_api_key().';
    END IF;
    INSERT INTO membership.api_keys (organisation_id, provider_id, plan, prefix, key_hash, label)
    VALUES (v_old.organisation_id, v_old.provider_id, v_old.plan, left(v_key, 11),
            membership.api_key_hash(v_key), v_old.label)
    RETURNING id INTO v_new;
    UPDATE membership.api_keys k
    SET expires_at = least(coalesce(k.expires_at, 'infinity'), now() + overlap),
        replaced_by = v_new
    WHERE k.id = v_id;
    RETURN v_key;
END
$$;
GRANT EXECUTE ON FUNCTION membership.rotate_api_key(text, interval) TO membership_platform_admin;

CREATE FUNCTION membership.set_api_key_plan(key text, plan text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint := membership.enter_api_key(key);
BEGIN
    PERFORM membership.check_plan(plan);
    UPDATE membership.api_keys k SET plan = set_api_key_plan.plan WHERE k.id = v_id;
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_api_key_plan(text, text) TO membership_platform_admin;

-- The keys of one organisation, without their hashes.
CREATE FUNCTION membership.api_keys_of(organisation uuid)
    RETURNS TABLE (prefix text, provider text, plan text, label text,
                   created_at timestamptz, expires_at timestamptz, revoked_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    RETURN QUERY
        SELECT k.prefix::text, p.slug, k.plan, k.label, k.created_at, k.expires_at, k.revoked_at
        FROM membership.api_keys k
        LEFT JOIN membership.providers p ON p.id = k.provider_id
        ORDER BY k.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership.api_keys_of(uuid) TO membership_platform_admin;
