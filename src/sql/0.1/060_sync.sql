-- Member sync: an organisation sends its member list, whole ("full") or the
-- members that changed ("delta"), and the database catches up in a few
-- set-based statements whatever the list's size.
--
-- Each element: {"external_id", "email", "status", "membership_tier",
-- "member_since", "profession", "dependents": [{"email", "name",
-- "relationship"}]}.  Only external_id is required.  A key that is absent
-- leaves the stored value alone (new members get the defaults); status
-- "removed" soft-removes.  In full mode members absent from the list are
-- soft-removed too.  When "dependents" is present it is the complete list of
-- the member's synced dependents (null meaning none).

-- Is this text a real calendar date written as YYYY-MM-DD?
CREATE FUNCTION membership.is_iso_date(value text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT CASE
        WHEN value !~ '^\d{4}-\d{2}-\d{2}$' THEN false
        WHEN substr(value, 1, 4)::int < 1800 THEN false
        WHEN substr(value, 6, 2)::int NOT BETWEEN 1 AND 12 THEN false
        ELSE substr(value, 9, 2)::int BETWEEN 1 AND
             extract(day FROM make_date(substr(value, 1, 4)::int, substr(value, 6, 2)::int, 1)
                              + interval '1 month - 1 day')::int
    END
$$;

-- What is wrong with one dependent of a sync element, or NULL.
CREATE FUNCTION membership.sync_dependent_problem(d jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT CASE
        WHEN jsonb_typeof(d) <> 'object' THEN 'is not a JSON object'
        WHEN EXISTS (SELECT FROM jsonb_object_keys(d) AS k
                     WHERE k NOT IN ('email', 'name', 'relationship'))
            THEN format('has unknown key "%s"',
                        (SELECT k FROM jsonb_object_keys(d) AS k
                         WHERE k NOT IN ('email', 'name', 'relationship') ORDER BY k LIMIT 1))
        WHEN jsonb_typeof(d->'email') IS DISTINCT FROM 'string' THEN 'lacks "email"'
        WHEN NOT membership.is_valid_email(d->>'email')
            THEN format('has an invalid email address "%s"', d->>'email')
        WHEN d ? 'name' AND jsonb_typeof(d->'name') NOT IN ('string', 'null')
            THEN '"name" must be a string'
        WHEN length(btrim(d->>'name')) > 200 THEN '"name" is longer than 200 characters'
        WHEN d ? 'relationship' AND (jsonb_typeof(d->'relationship') <> 'string'
             OR d->>'relationship' NOT IN ('spouse', 'partner', 'child', 'parent', 'other'))
            THEN format('has unknown relationship %s', d->'relationship')
    END
$$;

-- What is wrong with one sync element, or NULL.
CREATE FUNCTION membership.sync_member_problem(e jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT CASE
        WHEN jsonb_typeof(e) <> 'object' THEN 'is not a JSON object'
        WHEN EXISTS (SELECT FROM jsonb_object_keys(e) AS k
                     WHERE k NOT IN ('external_id', 'email', 'status', 'membership_tier',
                                     'member_since', 'profession', 'dependents'))
            THEN format('has unknown key "%s"',
                        (SELECT k FROM jsonb_object_keys(e) AS k
                         WHERE k NOT IN ('external_id', 'email', 'status', 'membership_tier',
                                         'member_since', 'profession', 'dependents')
                         ORDER BY k LIMIT 1))
        WHEN jsonb_typeof(e->'external_id') IS NULL OR jsonb_typeof(e->'external_id') = 'null'
            THEN 'lacks "external_id"'
        WHEN jsonb_typeof(e->'external_id') NOT IN ('string', 'number')
            THEN '"external_id" must be a string'
        WHEN btrim(e->>'external_id') = '' THEN 'has an empty "external_id"'
        WHEN length(btrim(e->>'external_id')) > 200 THEN '"external_id" is longer than 200 characters'
        WHEN e ? 'email' AND jsonb_typeof(e->'email') NOT IN ('string', 'null')
            THEN '"email" must be a string'
        WHEN jsonb_typeof(e->'email') = 'string' AND NOT membership.is_valid_email(e->>'email')
            THEN format('has an invalid email address "%s"', e->>'email')
        WHEN e ? 'status' AND (jsonb_typeof(e->'status') <> 'string'
             OR e->>'status' NOT IN ('active', 'inactive', 'suspended', 'lapsed', 'removed'))
            THEN format('has unknown status %s', e->'status')
        WHEN e ? 'membership_tier' AND (jsonb_typeof(e->'membership_tier') <> 'string'
             OR e->>'membership_tier' !~ '^[a-z][a-z0-9_]{0,31}$'
             OR e->>'membership_tier' = 'dependent')
            THEN format('has invalid membership_tier %s', e->'membership_tier')
        WHEN e ? 'member_since' AND (jsonb_typeof(e->'member_since') <> 'string'
             OR NOT membership.is_iso_date(e->>'member_since'))
            THEN format('has invalid member_since %s (expected YYYY-MM-DD)', e->'member_since')
        WHEN e ? 'profession' AND jsonb_typeof(e->'profession') NOT IN ('string', 'null')
            THEN '"profession" must be a string'
        WHEN length(btrim(e->>'profession')) > 200 THEN '"profession" is longer than 200 characters'
        WHEN e ? 'dependents' AND jsonb_typeof(e->'dependents') NOT IN ('array', 'null')
            THEN '"dependents" must be an array'
        WHEN jsonb_typeof(e->'dependents') = 'array' THEN (
            SELECT format('dependents[%s] %s', d.ord - 1, d.problem)
            FROM (SELECT x.ord, membership.sync_dependent_problem(x.d) AS problem
                  FROM jsonb_array_elements(e->'dependents') WITH ORDINALITY AS x(d, ord)) AS d
            WHERE d.problem IS NOT NULL
            ORDER BY d.ord LIMIT 1)
    END
$$;

-- A sync payload as rows: which keys each element carries, and their
-- normalised values.  Not a definer function, so the planner inlines it
-- into each statement that reads it.  (STABLE: dates are parsed.)
CREATE FUNCTION membership.sync_input(members jsonb)
    RETURNS TABLE (ord bigint, external_id text, removing boolean,
                   has_email boolean, email text, has_status boolean, status text,
                   has_tier boolean, membership_tier text, has_since boolean, member_since date,
                   has_profession boolean, profession text, has_dependents boolean, dependents jsonb)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT t.ord,
           pg_catalog.btrim(t.e OPERATOR(pg_catalog.->>) 'external_id'),
           coalesce(t.e OPERATOR(pg_catalog.->>) 'status' OPERATOR(pg_catalog.=) 'removed', false),
           t.e OPERATOR(pg_catalog.?) 'email',
           membership.normalize_email(t.e OPERATOR(pg_catalog.->>) 'email'),
           t.e OPERATOR(pg_catalog.?) 'status',
           nullif(t.e OPERATOR(pg_catalog.->>) 'status', 'removed'),
           t.e OPERATOR(pg_catalog.?) 'membership_tier',
           t.e OPERATOR(pg_catalog.->>) 'membership_tier',
           t.e OPERATOR(pg_catalog.?) 'member_since',
           (t.e OPERATOR(pg_catalog.->>) 'member_since')::pg_catalog.date,
           t.e OPERATOR(pg_catalog.?) 'profession',
           nullif(pg_catalog.btrim(t.e OPERATOR(pg_catalog.->>) 'profession'), ''),
           t.e OPERATOR(pg_catalog.?) 'dependents',
           CASE WHEN pg_catalog.jsonb_typeof(t.e OPERATOR(pg_catalog.->) 'dependents') = 'array'
                THEN t.e OPERATOR(pg_catalog.->) 'dependents' ELSE '[]' END
    FROM pg_catalog.jsonb_array_elements(members) WITH ORDINALITY AS t(e, ord)
$$;

-- The synced dependents a payload asks for, by member: for every element
-- that carries "dependents", that list is the member's complete set.
CREATE FUNCTION membership.sync_dependents_input(p_org uuid, members jsonb)
    RETURNS TABLE (member_id uuid, email text, name text, relationship text)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT m.id,
           membership.normalize_email(d OPERATOR(pg_catalog.->>) 'email'),
           nullif(pg_catalog.btrim(d OPERATOR(pg_catalog.->>) 'name'), ''),
           coalesce(d OPERATOR(pg_catalog.->>) 'relationship', 'other')
    FROM membership.sync_input(members) AS i
    JOIN membership.members m
      ON m.organisation_id OPERATOR(pg_catalog.=) p_org
     AND m.external_id OPERATOR(pg_catalog.=) i.external_id
    CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(i.dependents) AS d
    WHERE i.has_dependents
$$;

CREATE FUNCTION membership.apply_member_sync(p_org uuid, p_members jsonb, p_mode text)
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_problem text;
    v_total bigint;
    v_absent bigint := 0;
    v_inserted bigint;
    v_updated bigint;
    v_removed bigint;
    v_dep_added bigint;
    v_dep_removed bigint;
    v_constraint text;
BEGIN
    IF p_members IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'members must not be null';
    END IF;
    IF p_mode IS NULL OR p_mode NOT IN ('delta', 'full') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown sync mode %s', coalesce(quote_literal(p_mode), 'NULL')),
            HINT = 'Use "delta" or "full".';
    END IF;
    IF jsonb_typeof(p_members) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'members must be a JSON array';
    END IF;
    v_total := jsonb_array_length(p_members);
    IF p_mode = 'full' AND v_total = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a full sync needs at least one member',
            DETAIL = 'An empty full sync would remove every member of the organisation.';
    END IF;

    SELECT format('members[%s] %s', x.ord - 1, x.problem) INTO v_problem
    FROM (SELECT t.ord, membership.sync_member_problem(t.e) AS problem
          FROM jsonb_array_elements(p_members) WITH ORDINALITY AS t(e, ord)) AS x
    WHERE x.problem IS NOT NULL
    ORDER BY x.ord LIMIT 1;
    IF v_problem IS NULL THEN
        SELECT format('members[%s] has a member_since in the future', i.ord - 1) INTO v_problem
        FROM membership.sync_input(p_members) AS i
        WHERE i.member_since > current_date
        ORDER BY i.ord LIMIT 1;
    END IF;
    IF v_problem IS NULL THEN
        SELECT format('external_id "%s" appears more than once', i.external_id) INTO v_problem
        FROM membership.sync_input(p_members) AS i
        GROUP BY i.external_id HAVING count(*) > 1
        ORDER BY min(i.ord) LIMIT 1;
    END IF;
    IF v_problem IS NULL THEN
        SELECT format('email address "%s" appears more than once', i.email) INTO v_problem
        FROM membership.sync_input(p_members) AS i
        WHERE i.email IS NOT NULL AND NOT i.removing
        GROUP BY i.email HAVING count(*) > 1
        ORDER BY min(i.ord) LIMIT 1;
    END IF;
    IF v_problem IS NULL THEN
        SELECT format('dependent email address "%s" appears more than once', e) INTO v_problem
        FROM membership.sync_input(p_members) AS i,
             jsonb_array_elements(i.dependents) AS d,
             membership.normalize_email(d->>'email') AS e
        GROUP BY e HAVING count(*) > 1
        ORDER BY min(i.ord) LIMIT 1;
    END IF;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'invalid member list: ' || v_problem,
            DETAIL = 'Nothing was changed.';
    END IF;

    -- One sync at a time per organisation, so two syncs cannot both insert
    -- the same new member.
    PERFORM pg_advisory_xact_lock(hashtextextended('membership.sync_members ' || p_org::text, 0));

    BEGIN
        IF p_mode = 'full' THEN
            WITH gone AS (
                UPDATE membership.members m
                SET removed_at = now(), updated_at = now()
                WHERE m.organisation_id = p_org AND m.removed_at IS NULL
                  AND NOT EXISTS (SELECT FROM membership.sync_input(p_members) AS i
                                  WHERE i.external_id = m.external_id)
                RETURNING 1)
            SELECT count(*) INTO v_absent FROM gone;
        END IF;

        WITH changed AS (
            UPDATE membership.members m
            SET email = CASE WHEN i.has_email THEN i.email ELSE m.email END,
                status = CASE WHEN i.status IS NOT NULL THEN i.status ELSE m.status END,
                membership_tier = CASE WHEN i.has_tier THEN i.membership_tier ELSE m.membership_tier END,
                member_since = CASE WHEN i.has_since THEN i.member_since ELSE m.member_since END,
                profession = CASE WHEN i.has_profession THEN i.profession ELSE m.profession END,
                removed_at = CASE WHEN i.removing THEN coalesce(m.removed_at, now()) END,
                updated_at = now()
            FROM membership.sync_input(p_members) AS i
            WHERE m.organisation_id = p_org AND m.external_id = i.external_id
              AND ((i.has_email AND i.email IS DISTINCT FROM m.email)
                   OR (i.status IS NOT NULL AND i.status <> m.status)
                   OR (i.has_tier AND i.membership_tier <> m.membership_tier)
                   OR (i.has_since AND i.member_since <> m.member_since)
                   OR (i.has_profession AND i.profession IS DISTINCT FROM m.profession)
                   OR i.removing <> (m.removed_at IS NOT NULL))
            RETURNING i.removing AND m.removed_at IS NOT NULL AS removed_now)
        SELECT count(*) FILTER (WHERE NOT removed_now), count(*) FILTER (WHERE removed_now)
        INTO v_updated, v_removed
        FROM changed;

        WITH added AS (
            INSERT INTO membership.members
                (organisation_id, external_id, email, status, membership_tier, member_since, profession)
            SELECT p_org, i.external_id, i.email, coalesce(i.status, 'active'),
                   coalesce(i.membership_tier, 'full'), coalesce(i.member_since, current_date),
                   i.profession
            FROM membership.sync_input(p_members) AS i
            WHERE NOT i.removing
              AND NOT EXISTS (SELECT FROM membership.members m
                              WHERE m.organisation_id = p_org AND m.external_id = i.external_id)
            RETURNING 1)
        SELECT count(*) INTO v_inserted FROM added;

        -- Dependents: for every element that lists them, the list is the
        -- complete set of that member's synced dependents.
        WITH dropped AS (
            UPDATE membership.dependents x SET removed_at = now()
            FROM membership.sync_input(p_members) AS i
            JOIN membership.members m ON m.organisation_id = p_org AND m.external_id = i.external_id
            WHERE i.has_dependents AND x.member_id = m.id
              AND x.source = 'sync' AND x.removed_at IS NULL
              AND NOT EXISTS (SELECT FROM membership.sync_dependents_input(p_org, p_members) AS w
                              WHERE w.member_id = x.member_id AND w.email = x.email)
            RETURNING 1)
        SELECT count(*) INTO v_dep_removed FROM dropped;

        UPDATE membership.dependents x
        SET name = w.name, relationship = w.relationship
        FROM membership.sync_dependents_input(p_org, p_members) AS w
        WHERE x.member_id = w.member_id AND x.email = w.email AND x.removed_at IS NULL
          AND (x.name IS DISTINCT FROM w.name OR x.relationship <> w.relationship);

        WITH added AS (
            INSERT INTO membership.dependents (organisation_id, member_id, email, name, relationship, source)
            SELECT p_org, w.member_id, w.email, w.name, w.relationship, 'sync'
            FROM membership.sync_dependents_input(p_org, p_members) AS w
            WHERE NOT EXISTS (SELECT FROM membership.dependents x
                              WHERE x.member_id = w.member_id AND x.email = w.email
                                AND x.removed_at IS NULL)
            RETURNING 1)
        SELECT count(*) INTO v_dep_added FROM added;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'members_email_idx' THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = 'invalid member list: an email address already belongs to another member',
                DETAIL = 'Two current members of one organisation cannot share an address. Nothing was changed.';
        ELSIF v_constraint = 'dependents_email_idx' THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = 'invalid member list: a dependent''s email address is already registered as another dependent',
                DETAIL = 'Nothing was changed.';
        END IF;
        RAISE;
    END;

    RETURN jsonb_build_object(
        'inserted', v_inserted,
        'updated', v_updated,
        'removed', v_absent + v_removed,
        'unchanged', v_total - v_inserted - v_updated - v_removed,
        'dependents_added', v_dep_added,
        'dependents_removed', v_dep_removed);
END
$$;

CREATE FUNCTION membership_api.sync_members(members jsonb, mode text DEFAULT 'delta',
                                            api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'organisation', 'org_admin');
BEGIN
    RETURN membership.apply_member_sync(v_caller.organisation_id, members, mode);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.sync_members(jsonb, text, text)
    TO membership_provider, membership_org_admin;
COMMENT ON FUNCTION membership_api.sync_members(jsonb, text, text) IS
    'upsert the organisation''s members by external_id; mode "full" soft-removes the absent; returns counts';
