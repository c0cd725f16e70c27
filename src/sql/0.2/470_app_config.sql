-- White label: each organisation's app reads its own settings (name,
-- theme, logo, push identifiers, support address) through the API.

CREATE FUNCTION membership_api.app_config() RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member', 'org_admin');
BEGIN
    RETURN (SELECT o.app_config || jsonb_build_object('organisation', o.slug, 'organisation_name', o.name)
            FROM membership.organisations o WHERE o.id = v_caller.organisation_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.app_config() TO membership_member, membership_org_admin;
COMMENT ON FUNCTION membership_api.app_config() IS
    'members and organisation administrators: your organisation''s app settings (white label)';
