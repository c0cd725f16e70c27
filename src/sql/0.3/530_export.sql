-- Export (right of access, DESIGN.md 4.6): everything held about the
-- calling member, as one JSON document.  It is read from every table
-- membership.personal_data lists with the same conditions erasure uses,
-- so what is exported and what is erased cannot drift apart.

CREATE FUNCTION membership.member_data(member uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_member membership.members;
    v_hashes bytea[];
    v_table membership.personal_data;
    v_rows jsonb;
    v_data jsonb := '{}';
BEGIN
    SELECT * INTO v_member FROM membership.members m WHERE m.id = member;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no member %s', member);
    END IF;
    v_hashes := membership.subject_hashes(v_member.email, v_member.external_id);
    FOR v_table IN SELECT * FROM membership.personal_data p WHERE p.member_rows IS NOT NULL
                   ORDER BY p.table_name LOOP
        -- $3 (dependents' hashes) stays empty: lookups of a dependent are about that person
        EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY to_jsonb(r)::text), ''[]'')'
                       ' FROM membership.%I r WHERE %s', v_table.table_name, v_table.member_rows)
            INTO v_rows USING member, v_hashes, '{}'::bytea[], v_member.organisation_id;
        v_data := v_data || jsonb_build_object(v_table.table_name, v_rows);
    END LOOP;
    RETURN jsonb_build_object(
        'exported_at', now(),
        'member_id', member,
        'organisation', (SELECT jsonb_build_object('id', o.id, 'slug', o.slug, 'name', o.name)
                         FROM membership.organisations o WHERE o.id = v_member.organisation_id),
        'consents', membership.consent_state(member),
        'data', v_data);
END
$$;

CREATE FUNCTION membership_api.export_my_data() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN membership.member_data(v_caller.member_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.export_my_data() TO membership_member;
COMMENT ON FUNCTION membership_api.export_my_data() IS
    'members: everything held about you, as one JSON document (right of access)';
