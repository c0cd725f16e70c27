-- Tenant context and caller identity (src/tenant.c, src/identity.c).
--
-- Row-level security policies compare organisation_id with
-- current_org_id(), a backend-private value that only the C code sets:
-- authenticate() from the caller's credentials, set_tenant() when extension
-- code acts for one organisation.  It is cleared at the end of every
-- transaction and is not a setting, so a client cannot SET it.

CREATE FUNCTION membership.current_org_id() RETURNS uuid
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_current_org_id';
COMMENT ON FUNCTION membership.current_org_id() IS
    'organisation of the current caller or job, NULL when none (read by every row-level security policy)';

CREATE FUNCTION membership.current_member_id() RETURNS uuid
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_current_member_id';

CREATE FUNCTION membership.current_provider_id() RETURNS uuid
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_current_provider_id';

CREATE FUNCTION membership.current_caller_kind() RETURNS text
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_current_caller_kind';

CREATE FUNCTION membership.set_tenant(organisation uuid) RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'membership_set_tenant';
COMMENT ON FUNCTION membership.set_tenant(uuid) IS
    'make extension code act for one organisation until the end of the transaction (owner role only)';

CREATE TYPE membership.caller AS (
    kind            text,
    organisation_id uuid,
    member_id       uuid,
    provider_id     uuid,
    api_key_id      bigint
);

CREATE FUNCTION membership.authenticate(api_key text, VARIADIC allowed text[])
    RETURNS membership.caller
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'membership_authenticate';
COMMENT ON FUNCTION membership.authenticate(text, text[]) IS
    'resolve the caller from an API key or gateway-trusted JWT claims, check its kind, and set the tenant context';

-- E-mail addresses (src/email.c): sync and verification share one
-- normalisation, so a member is found by the address it was synced with.
CREATE FUNCTION membership.normalize_email(email text) RETURNS text
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_normalize_email';

CREATE FUNCTION membership.is_valid_email(email text) RETURNS boolean
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_is_valid_email';

CREATE FUNCTION membership.email_hash(email text) RETURNS bytea
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_email_hash';
COMMENT ON FUNCTION membership.email_hash(text) IS
    'SHA-256 of the normalised address: how members are matched';

-- API keys (src/apikey.c).
CREATE FUNCTION membership.generate_api_key() RETURNS text
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_generate_api_key';

CREATE FUNCTION membership.api_key_hash(key text) RETURNS bytea
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_api_key_hash';

CREATE FUNCTION membership.locate_api_key(key text,
    OUT id bigint, OUT organisation_id uuid)
    LANGUAGE C STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_locate_api_key';
COMMENT ON FUNCTION membership.locate_api_key(text) IS
    'find a key by its whole text or its public prefix, across organisations (owner role only)';

-- Put a table under the extension's rules: owned by the owner role, row
-- level security enabled and forced, one policy on the tenant column
-- through a sub-select (evaluated once per statement), and its rows
-- included in pg_dump.  Every table of the extension goes through here.
CREATE FUNCTION membership.isolate_table(tbl regclass, tenant_column name DEFAULT 'organisation_id')
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    seq text;
BEGIN
    EXECUTE format('ALTER TABLE %s OWNER TO membership_owner', tbl);
    IF tenant_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (%I = (SELECT membership.current_org_id()))',
                       tbl, tenant_column);
    END IF;
    PERFORM pg_catalog.pg_extension_config_dump(tbl, '');
    FOR seq IN
        SELECT pg_catalog.pg_get_serial_sequence(tbl::text, a.attname)
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
          AND pg_catalog.pg_get_serial_sequence(tbl::text, a.attname) IS NOT NULL
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(seq::regclass, '');
    END LOOP;
END
$$;
COMMENT ON FUNCTION membership.isolate_table(regclass, name) IS
    'install-time helper: owner, forced row-level security and tenant policy, pg_dump registration';
