-- The verification audit (membership.audit_verifications = misses | all),
-- written from the shared-memory queue by the usage flusher.  It holds the
-- SHA-256 of the e-mail address (as members.email_hash) or of the user id
-- looked up, never the value itself.

CREATE TABLE membership.verification_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    api_key_id      bigint NOT NULL REFERENCES membership.api_keys (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL,
    lookup          text NOT NULL CHECK (lookup IN ('email', 'user_id')),
    subject_hash    bytea NOT NULL CHECK (length(subject_hash) = 32),
    verified        boolean NOT NULL
);
CREATE INDEX verification_audit_organisation_idx ON membership.verification_audit (organisation_id, at);
CREATE INDEX verification_audit_at_idx ON membership.verification_audit (at);
COMMENT ON TABLE membership.verification_audit IS
    'tenant: audited verification calls, with a hash of what was looked up';
SELECT membership.isolate_table('membership.verification_audit');

CREATE FUNCTION membership.flush_audit(p_keys bigint[], p_orgs uuid[], p_at timestamptz[],
                                       p_by_email boolean[], p_verified boolean[], p_hashes bytea[])
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    WITH written AS (
        INSERT INTO membership.verification_audit
            (organisation_id, api_key_id, at, lookup, subject_hash, verified)
        SELECT r.org, r.api_key_id, r.at, CASE WHEN r.by_email THEN 'email' ELSE 'user_id' END,
               r.subject_hash, r.verified
        FROM unnest(p_keys, p_orgs, p_at, p_by_email, p_verified, p_hashes)
                 AS r(api_key_id, org, at, by_email, verified, subject_hash)
        WHERE EXISTS (SELECT FROM membership.api_keys k WHERE k.id = r.api_key_id)
        RETURNING 1)
    SELECT count(*) FROM written
$$;

-- An organisation's audited verification calls in [since, until), newest
-- first, for the platform.
CREATE FUNCTION membership.verification_audit_of(organisation uuid, since timestamptz,
                                                 until timestamptz DEFAULT pg_catalog.now())
    RETURNS TABLE (at timestamptz, provider text, api_key text, lookup text, subject_hash bytea,
                   verified boolean)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF since IS NULL OR until IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'since and until must not be null';
    END IF;
    RETURN QUERY
        SELECT a.at, p.slug, k.prefix, a.lookup, a.subject_hash, a.verified
        FROM membership.verification_audit a
        JOIN membership.api_keys k ON k.id = a.api_key_id
        LEFT JOIN membership.providers p ON p.id = k.provider_id
        WHERE a.organisation_id = organisation AND a.at >= since AND a.at < until
        ORDER BY a.at DESC, a.id DESC;
END
$$;
GRANT EXECUTE ON FUNCTION membership.verification_audit_of(uuid, timestamptz, timestamptz)
    TO membership_platform_admin;
