-- Provider verification (src/verify.c, src/keycache.c, src/usage.c).

-- Any committed change to keys or plans makes every backend's cached keys
-- stale at once, so revocation and plan changes apply to the next call.
CREATE FUNCTION membership.invalidate_api_key_cache() RETURNS trigger
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'membership_invalidate_api_key_cache';

CREATE TRIGGER api_keys_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON membership.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION membership.invalidate_api_key_cache();
CREATE TRIGGER plans_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON membership.plans
    FOR EACH STATEMENT EXECUTE FUNCTION membership.invalidate_api_key_cache();

-- Verification answers are cached in shared memory (src/answercache.c)
-- and made stale, per organisation, by the commit of any change to the
-- rows they depend on.
CREATE FUNCTION membership.note_member_change() RETURNS trigger
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'membership_note_member_change';

CREATE TRIGGER members_note_change
    BEFORE INSERT OR UPDATE OR DELETE ON membership.members
    FOR EACH ROW EXECUTE FUNCTION membership.note_member_change('organisation_id');
CREATE TRIGGER members_note_truncate
    BEFORE TRUNCATE ON membership.members
    FOR EACH STATEMENT EXECUTE FUNCTION membership.note_member_change('organisation_id');
CREATE TRIGGER dependents_note_change
    BEFORE INSERT OR UPDATE OR DELETE ON membership.dependents
    FOR EACH ROW EXECUTE FUNCTION membership.note_member_change('organisation_id');
CREATE TRIGGER dependents_note_truncate
    BEFORE TRUNCATE ON membership.dependents
    FOR EACH STATEMENT EXECUTE FUNCTION membership.note_member_change('organisation_id');
CREATE TRIGGER organisations_note_change
    BEFORE INSERT OR UPDATE OR DELETE ON membership.organisations
    FOR EACH ROW EXECUTE FUNCTION membership.note_member_change('id');
CREATE TRIGGER organisations_note_truncate
    BEFORE TRUNCATE ON membership.organisations
    FOR EACH STATEMENT EXECUTE FUNCTION membership.note_member_change('id');

-- Verification finds current members and dependents by the hash of their
-- address alone: a hash index answers that in one bucket probe, with no
-- comparisons on the way down a tree.  The organisation is checked on the
-- row (an address may belong to members of several organisations).
CREATE INDEX members_email_lookup_idx ON membership.members USING hash (email_hash)
    WHERE removed_at IS NULL;
CREATE INDEX dependents_email_lookup_idx ON membership.dependents USING hash (email_hash)
    WHERE removed_at IS NULL;

-- Is this person an active member of the key's organisation?  In C and
-- without SQL inside: it needs neither SECURITY DEFINER nor a search_path
-- (see src/verify.c), and going without them keeps a call near the cost
-- of a bare round trip.
CREATE FUNCTION membership_api.verify_member(email text DEFAULT NULL, user_id text DEFAULT NULL,
                                             api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'membership_verify_member';
GRANT EXECUTE ON FUNCTION membership_api.verify_member(text, text, text) TO membership_provider;
COMMENT ON FUNCTION membership_api.verify_member(text, text, text) IS
    'provider checkout: {"verified": true, "member_since", "tier"} or {"verified": false}; PT401 bad key, PT429 over the plan''s limit';
