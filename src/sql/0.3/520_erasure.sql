-- Erasure (right to erasure, DESIGN.md 4.6): a member's personal data is
-- removed at once from every table, as membership.personal_data says for
-- each.  What must outlive the person moves to a pseudonym: a member row
-- with status 'erased', a fresh id nobody has seen and nothing personal.
-- It carries the loyalty account, ledger, buckets and reward codes (the
-- organisation's liability and accounts; order, partner and request
-- references cleared) and the consent history (the minimal proof of what
-- was consented to).  The pseudonym's id is never returned: the caller
-- cannot link it back to the person.

CREATE FUNCTION membership.erase_member(organisation uuid, member uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_member membership.members;
    v_pseudonym uuid := gen_random_uuid();
    v_hashes bytea[];
    v_dependent_hashes bytea[];
    v_table membership.personal_data;
    v_n bigint;
    v_done jsonb := '{"delete": {}, "anonymise": {}, "pseudonymise": {}}';  -- rows per table, by action
BEGIN
    PERFORM membership.find_organisation(organisation);
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member must not be null';
    END IF;
    SELECT * INTO v_member FROM membership.members m
    WHERE m.id = member AND m.organisation_id = organisation AND m.status <> 'erased'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = format('organisation %s has no member %s', organisation, member);
    END IF;
    -- an earn or redemption in flight finishes first; later ones find no account
    PERFORM FROM membership.loyalty_accounts a WHERE a.member_id = member FOR UPDATE;
    v_hashes := membership.subject_hashes(v_member.email, v_member.external_id);
    v_dependent_hashes := ARRAY(SELECT d.email_hash FROM membership.dependents d WHERE d.member_id = member);

    -- what is kept moves to the pseudonym
    INSERT INTO membership.members (id, organisation_id, external_id, status, member_since, removed_at)
    VALUES (v_pseudonym, organisation, 'erased:' || v_pseudonym, 'erased', current_date, now());
    INSERT INTO membership.loyalty_accounts
    SELECT (jsonb_populate_record(a, jsonb_build_object('member_id', v_pseudonym))).*
    FROM membership.loyalty_accounts a WHERE a.member_id = member;
    -- buckets through their entries: the member index holds open buckets only
    UPDATE membership.loyalty_buckets b SET member_id = v_pseudonym
    WHERE b.ledger_id IN (SELECT l.id FROM membership.loyalty_ledger l WHERE l.member_id = member);
    UPDATE membership.loyalty_ledger l
    SET member_id = v_pseudonym, source_ref = NULL, details = '{}',
        idempotency_key = CASE WHEN l.idempotency_key IS NOT NULL THEN 'erased:' || l.id END
    WHERE l.member_id = member;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_done := jsonb_set(v_done, '{pseudonymise, loyalty_ledger}', to_jsonb(v_n));
    UPDATE membership.loyalty_rewards r SET member_id = v_pseudonym WHERE r.member_id = member;
    DELETE FROM membership.loyalty_accounts a WHERE a.member_id = member;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_done := jsonb_set(v_done, '{pseudonymise, loyalty_accounts}', to_jsonb(v_n));
    UPDATE membership.consent_events e SET member_id = v_pseudonym WHERE e.member_id = member;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_done := jsonb_set(v_done, '{pseudonymise, consent_events}', to_jsonb(v_n));

    -- the rest goes, children before parents, the member last
    FOR v_table IN SELECT * FROM membership.personal_data p
                   WHERE p.on_erase IN ('delete', 'anonymise') ORDER BY p.erase_order, p.table_name LOOP
        EXECUTE format(CASE v_table.on_erase
                       WHEN 'delete' THEN 'DELETE FROM membership.%I WHERE %s'
                       ELSE 'UPDATE membership.%I SET member_id = NULL WHERE %s' END,
                       v_table.table_name, v_table.member_rows)
            USING member, v_hashes, v_dependent_hashes, organisation;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_done := jsonb_set(v_done, ARRAY[v_table.on_erase, v_table.table_name], to_jsonb(v_n));
    END LOOP;
    v_done := (SELECT jsonb_object_agg(action, (SELECT coalesce(jsonb_object_agg(t, n), '{}')
                                                FROM jsonb_each(tables) AS c(t, n) WHERE n::bigint > 0))
               FROM jsonb_each(v_done) AS a(action, tables));

    RETURN jsonb_build_object('erased', true, 'at', now(), 'deleted', v_done -> 'delete',
                              'anonymised', v_done -> 'anonymise', 'pseudonymised', v_done -> 'pseudonymise');
END
$$;
GRANT EXECUTE ON FUNCTION membership.erase_member(uuid, uuid) TO membership_platform_admin;
COMMENT ON FUNCTION membership.erase_member(uuid, uuid) IS
    'platform: erase a member''s personal data from every table at once; loyalty records and consent proof kept under a pseudonym';

-- The organisation erases one of its members, by its own external id.
CREATE FUNCTION membership_api.erase_member(external_id text, api_key text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'organisation', 'org_admin');
    v_member uuid;
BEGIN
    IF external_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'external_id must not be null';
    END IF;
    SELECT m.id INTO v_member FROM membership.members m
    WHERE m.organisation_id = v_caller.organisation_id AND m.external_id = btrim(erase_member.external_id)
      AND m.status <> 'erased';
    IF v_member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = format('no member with external id "%s"', external_id);
    END IF;
    RETURN membership.erase_member(v_caller.organisation_id, v_member);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.erase_member(text, text) TO membership_provider, membership_org_admin;
COMMENT ON FUNCTION membership_api.erase_member(text, text) IS
    'organisations: erase one of your members (by external id) from every table at once';
