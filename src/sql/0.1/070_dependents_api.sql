-- Members manage their own dependents through the gateway.  Dependents that
-- the organisation syncs stay under the organisation's control.

-- A member has at most 10 current dependents, however they were added
-- (synced by the organisation or registered by the member).  The trigger
-- locks the member's row, so concurrent additions count one another.
CREATE FUNCTION membership.check_dependent_limit() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF NEW.removed_at IS NULL THEN
        PERFORM FROM membership.members m WHERE m.id = NEW.member_id FOR NO KEY UPDATE;
        IF (SELECT count(*) FROM membership.dependents d
            WHERE d.member_id = NEW.member_id AND d.removed_at IS NULL AND d.id <> NEW.id) >= 10 THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409',
                MESSAGE = 'a member can have at most 10 dependents';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER dependents_limit
    BEFORE INSERT OR UPDATE OF removed_at, member_id ON membership.dependents
    FOR EACH ROW EXECUTE FUNCTION membership.check_dependent_limit();

-- The calling member, refusing (PT403) anyone who is not a current, active
-- member.  Member-facing functions that change things start here.
CREATE FUNCTION membership.require_active_member() RETURNS membership.members
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_member membership.members;
BEGIN
    SELECT * INTO v_member FROM membership.members m
    WHERE m.id = membership.current_member_id();
    IF NOT FOUND OR v_member.removed_at IS NOT NULL OR v_member.status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT403',
            MESSAGE = 'only active members can do this',
            DETAIL = 'Your membership is not active in your organisation.';
    END IF;
    RETURN v_member;
END
$$;

CREATE FUNCTION membership_api.register_dependent(email text, name text DEFAULT NULL,
                                                  relationship text DEFAULT 'other')
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_member membership.members := membership.require_active_member();
    v_email text := membership.normalize_email(email);
    v_existing membership.dependents;
    v_id uuid;
BEGIN
    IF email IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'email must not be null';
    END IF;
    IF NOT membership.is_valid_email(email) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid email address "%s"', email);
    END IF;
    IF relationship IS NULL OR relationship NOT IN ('spouse', 'partner', 'child', 'parent', 'other') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown relationship %s', coalesce('"' || relationship || '"', 'NULL')),
            HINT = 'Use spouse, partner, child, parent or other.';
    END IF;
    IF length(btrim(name)) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'name must be at most 200 characters';
    END IF;

    -- serialise registrations by the same member, so the cap holds
    PERFORM FROM membership.members m WHERE m.id = v_member.id FOR NO KEY UPDATE;

    -- registering the same person again is not an error
    SELECT * INTO v_existing FROM membership.dependents d
    WHERE d.organisation_id = v_caller.organisation_id AND d.member_id = v_member.id
      AND d.email_hash = membership.email_hash(v_email) AND d.removed_at IS NULL;
    IF FOUND THEN
        RETURN v_existing.id;
    END IF;
    INSERT INTO membership.dependents (organisation_id, member_id, email, name, relationship, source)
    VALUES (v_caller.organisation_id, v_member.id, v_email, nullif(btrim(name), ''),
            register_dependent.relationship, 'member')
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.register_dependent(text, text, text) TO membership_member;

CREATE FUNCTION membership_api.remove_dependent(dependent uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_dep membership.dependents;
BEGIN
    IF dependent IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'dependent must not be null';
    END IF;
    SELECT * INTO v_dep FROM membership.dependents d
    WHERE d.id = dependent AND d.member_id = v_caller.member_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404',
            MESSAGE = format('dependent %s does not exist', dependent);
    END IF;
    IF v_dep.source <> 'member' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT403',
            MESSAGE = 'this dependent is managed by your organisation',
            HINT = 'Ask your organisation to change it.';
    END IF;
    UPDATE membership.dependents d SET removed_at = now()
    WHERE d.id = dependent AND d.removed_at IS NULL;
    RETURN FOUND;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.remove_dependent(uuid) TO membership_member;

CREATE FUNCTION membership_api.dependents()
    RETURNS TABLE (id uuid, email text, name text, relationship text, source text,
                   created_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN QUERY
        SELECT d.id, d.email, d.name, d.relationship, d.source, d.created_at
        FROM membership.dependents d
        WHERE d.member_id = v_caller.member_id AND d.removed_at IS NULL
        ORDER BY d.created_at, d.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.dependents() TO membership_member;
