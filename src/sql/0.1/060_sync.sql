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

-- The first thing wrong with a sync payload, or NULL: one set-based pass
-- over every element, every key and every dependent, reporting the problem
-- of the lowest position as "members[i] ...".
CREATE FUNCTION membership.sync_problem(members jsonb) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    WITH element AS (
        SELECT t.ord, t.e, jsonb_typeof(t.e) = 'object' AS is_object
        FROM jsonb_array_elements(members) WITH ORDINALITY AS t(e, ord)
    ), dependent AS (
        SELECT e.ord, d.dord, d.d
        FROM element e,
             jsonb_array_elements(CASE WHEN jsonb_typeof(e.e->'dependents') = 'array'
                                       THEN e.e->'dependents' ELSE '[]' END) WITH ORDINALITY AS d(d, dord)
    ), problem AS (
        SELECT ord, 0 AS pos, '' AS key, 'is not a JSON object' AS problem
        FROM element WHERE NOT is_object
        UNION ALL
        SELECT ord, 1, '', 'lacks "external_id"'
        FROM element WHERE is_object AND coalesce(jsonb_typeof(e->'external_id'), 'null') = 'null'
        UNION ALL
        SELECT e.ord, 2, f.key,
               CASE f.key
               WHEN 'external_id' THEN CASE
                   WHEN jsonb_typeof(f.value) = 'null' THEN NULL
                   WHEN jsonb_typeof(f.value) NOT IN ('string', 'number') THEN '"external_id" must be a string'
                   WHEN btrim(f.value #>> '{}') = '' THEN 'has an empty "external_id"'
                   WHEN length(btrim(f.value #>> '{}')) > 200 THEN '"external_id" is longer than 200 characters'
                   END
               WHEN 'email' THEN CASE
                   WHEN jsonb_typeof(f.value) = 'null' THEN NULL
                   WHEN jsonb_typeof(f.value) <> 'string' THEN '"email" must be a string'
                   WHEN NOT membership.is_valid_email(f.value #>> '{}')
                       THEN format('has an invalid email address "%s"', f.value #>> '{}')
                   END
               WHEN 'status' THEN CASE
                   WHEN jsonb_typeof(f.value) <> 'string'
                        OR f.value #>> '{}' NOT IN ('active', 'inactive', 'suspended', 'lapsed', 'removed')
                       THEN format('has unknown status %s', f.value)
                   END
               WHEN 'membership_tier' THEN CASE
                   WHEN jsonb_typeof(f.value) <> 'string' OR f.value #>> '{}' !~ '^[a-z][a-z0-9_]{0,31}$'
                        OR f.value #>> '{}' = 'dependent'
                       THEN format('has invalid membership_tier %s', f.value)
                   END
               WHEN 'member_since' THEN CASE
                   WHEN jsonb_typeof(f.value) <> 'string' OR NOT membership.is_iso_date(f.value #>> '{}')
                       THEN format('has invalid member_since %s (expected YYYY-MM-DD)', f.value)
                   WHEN (f.value #>> '{}')::date > current_date THEN 'has a member_since in the future'
                   END
               WHEN 'profession' THEN CASE
                   WHEN jsonb_typeof(f.value) = 'null' THEN NULL
                   WHEN jsonb_typeof(f.value) <> 'string' THEN '"profession" must be a string'
                   WHEN length(btrim(f.value #>> '{}')) > 200 THEN '"profession" is longer than 200 characters'
                   END
               WHEN 'dependents' THEN CASE
                   WHEN jsonb_typeof(f.value) NOT IN ('array', 'null') THEN '"dependents" must be an array'
                   END
               ELSE format('has unknown key "%s"', f.key)
               END
        FROM element e, jsonb_each(CASE WHEN e.is_object THEN e.e ELSE '{}' END) AS f
        UNION ALL
        SELECT d.ord, 3 + d.dord, '', 'dependents[' || d.dord - 1 || '] ' || CASE
               WHEN jsonb_typeof(d.d) <> 'object' THEN 'is not a JSON object'
               WHEN EXISTS (SELECT FROM jsonb_object_keys(d.d) AS k WHERE k NOT IN ('email', 'name', 'relationship'))
                   THEN format('has unknown key "%s"',
                               (SELECT k FROM jsonb_object_keys(d.d) AS k
                                WHERE k NOT IN ('email', 'name', 'relationship') ORDER BY k LIMIT 1))
               WHEN jsonb_typeof(d.d->'email') IS DISTINCT FROM 'string' THEN 'lacks "email"'
               WHEN NOT membership.is_valid_email(d.d->>'email')
                   THEN format('has an invalid email address "%s"', d.d->>'email')
               WHEN d.d ? 'name' AND jsonb_typeof(d.d->'name') NOT IN ('string', 'null')
                   THEN '"name" must be a string'
               WHEN length(btrim(d.d->>'name')) > 200 THEN '"name" is longer than 200 characters'
               WHEN d.d ? 'relationship' AND (jsonb_typeof(d.d->'relationship') <> 'string'
                    OR d.d->>'relationship' NOT IN ('spouse', 'partner', 'child', 'parent', 'other'))
                   THEN format('has unknown relationship %s', d.d->'relationship')
               END
        FROM dependent d
    )
    SELECT format('members[%s] %s', ord - 1, problem)
    FROM problem
    WHERE problem IS NOT NULL
    ORDER BY ord, pos, key
    LIMIT 1
$$;

-- A valid sync payload as rows: which keys each element carries, and their
-- normalised values.
CREATE FUNCTION membership.sync_input(members jsonb)
    RETURNS TABLE (ord bigint, external_id text, removing boolean,
                   has_email boolean, email text, status text,
                   has_tier boolean, membership_tier text, has_since boolean, member_since date,
                   has_profession boolean, profession text, has_dependents boolean, dependents jsonb)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT t.ord,
           btrim(t.e->>'external_id'),
           coalesce(t.e->>'status' = 'removed', false),
           t.e ? 'email', membership.normalize_email(t.e->>'email'),
           nullif(t.e->>'status', 'removed'),
           t.e ? 'membership_tier', t.e->>'membership_tier',
           t.e ? 'member_since', (t.e->>'member_since')::date,
           t.e ? 'profession', nullif(btrim(t.e->>'profession'), ''),
           t.e ? 'dependents',
           CASE WHEN jsonb_typeof(t.e->'dependents') = 'array' THEN t.e->'dependents' ELSE '[]' END
    FROM jsonb_array_elements(members) WITH ORDINALITY AS t(e, ord)
$$;

-- Apply a sync payload to one organisation.  The payload is checked first
-- (nothing changes unless all of it is valid), then parsed once into two
-- indexed temporary tables with fresh statistics, and applied in a few
-- set-based statements: removals, updates, inserts, dependents.  The
-- indexes keep every join linear even when the members table's statistics
-- are stale, as they are right after an organisation's first sync.
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
            MESSAGE = format('unknown sync mode %s', coalesce('"' || p_mode || '"', 'NULL')),
            HINT = 'Use "delta" or "full".';
    END IF;
    IF jsonb_typeof(p_members) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'members must be a JSON array';
    END IF;
    v_total := jsonb_array_length(p_members);
    IF v_total > coalesce(current_setting('membership.sync_max_members', true), '1000000')::int THEN
        RAISE EXCEPTION USING ERRCODE = 'PT413',
            MESSAGE = format('members holds %s elements, more than one sync accepts (%s)', v_total,
                             current_setting('membership.sync_max_members', true)),
            HINT = 'Send the list as several delta syncs, or raise membership.sync_max_members.';
    END IF;
    IF p_mode = 'full' AND v_total = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a full sync needs at least one member',
            DETAIL = 'An empty full sync would remove every member of the organisation.';
    END IF;
    v_problem := membership.sync_problem(p_members);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'invalid member list: ' || v_problem,
            DETAIL = 'Nothing was changed.';
    END IF;

    -- a second sync in the same transaction replaces the first one's tables
    IF to_regclass('pg_temp.membership_sync_members') IS NOT NULL THEN
        DROP TABLE pg_temp.membership_sync_members;
    END IF;
    IF to_regclass('pg_temp.membership_sync_dependents') IS NOT NULL THEN
        DROP TABLE pg_temp.membership_sync_dependents;
    END IF;
    CREATE TEMPORARY TABLE membership_sync_members ON COMMIT DROP AS
        SELECT * FROM membership.sync_input(p_members);
    CREATE INDEX ON pg_temp.membership_sync_members (external_id);
    ANALYZE pg_temp.membership_sync_members;

    SELECT format('external_id "%s" appears more than once', i.external_id) INTO v_problem
    FROM pg_temp.membership_sync_members i
    GROUP BY i.external_id HAVING count(*) > 1
    ORDER BY min(i.ord) LIMIT 1;
    IF v_problem IS NULL THEN
        SELECT format('email address "%s" appears more than once', i.email) INTO v_problem
        FROM pg_temp.membership_sync_members i
        WHERE i.email IS NOT NULL AND NOT i.removing
        GROUP BY i.email HAVING count(*) > 1
        ORDER BY min(i.ord) LIMIT 1;
    END IF;
    IF v_problem IS NULL THEN
        SELECT format('members[%s] lists dependent email address "%s" more than once', i.ord - 1, e)
        INTO v_problem
        FROM pg_temp.membership_sync_members i,
             jsonb_array_elements(i.dependents) AS d,
             membership.normalize_email(d->>'email') AS e
        GROUP BY i.ord, e HAVING count(*) > 1
        ORDER BY i.ord LIMIT 1;
    END IF;
    IF v_problem IS NULL THEN
        SELECT format('members[%s] lists %s dependents; a member can have at most 10',
                      i.ord - 1, jsonb_array_length(i.dependents))
        INTO v_problem
        FROM pg_temp.membership_sync_members i
        WHERE jsonb_array_length(i.dependents) > 10
        ORDER BY i.ord LIMIT 1;
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
                  AND NOT EXISTS (SELECT FROM pg_temp.membership_sync_members i
                                  WHERE i.external_id = m.external_id)
                RETURNING 1)
            SELECT count(*) INTO v_absent FROM gone;
        END IF;

        WITH changed AS (
            UPDATE membership.members m
            SET email = CASE WHEN i.has_email THEN i.email ELSE m.email END,
                status = coalesce(i.status, m.status),
                membership_tier = CASE WHEN i.has_tier THEN i.membership_tier ELSE m.membership_tier END,
                member_since = CASE WHEN i.has_since THEN i.member_since ELSE m.member_since END,
                profession = CASE WHEN i.has_profession THEN i.profession ELSE m.profession END,
                removed_at = CASE WHEN i.removing THEN coalesce(m.removed_at, now()) END,
                updated_at = now()
            FROM pg_temp.membership_sync_members i
            WHERE m.organisation_id = p_org AND m.external_id = i.external_id
              AND ((i.has_email AND i.email IS DISTINCT FROM m.email)
                   OR i.status <> m.status
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
            FROM pg_temp.membership_sync_members i
            WHERE NOT i.removing
              AND NOT EXISTS (SELECT FROM membership.members m
                              WHERE m.organisation_id = p_org AND m.external_id = i.external_id)
            RETURNING 1)
        SELECT count(*) INTO v_inserted FROM added;

        -- Dependents: for every element that lists them, the list is the
        -- complete set of that member's synced dependents.
        CREATE TEMPORARY TABLE membership_sync_dependents ON COMMIT DROP AS
            SELECT m.id AS member_id, membership.normalize_email(d->>'email') AS email,
                   nullif(btrim(d->>'name'), '') AS name, coalesce(d->>'relationship', 'other') AS relationship
            FROM pg_temp.membership_sync_members i
            JOIN membership.members m ON m.organisation_id = p_org AND m.external_id = i.external_id
            CROSS JOIN LATERAL jsonb_array_elements(i.dependents) AS d
            WHERE i.has_dependents;
        CREATE INDEX ON pg_temp.membership_sync_dependents (member_id, email);
        ANALYZE pg_temp.membership_sync_dependents;

        WITH dropped AS (
            UPDATE membership.dependents x SET removed_at = now()
            FROM pg_temp.membership_sync_members i
            JOIN membership.members m ON m.organisation_id = p_org AND m.external_id = i.external_id
            WHERE i.has_dependents AND x.member_id = m.id
              AND x.source = 'sync' AND x.removed_at IS NULL
              AND NOT EXISTS (SELECT FROM pg_temp.membership_sync_dependents w
                              WHERE w.member_id = x.member_id AND w.email = x.email)
            RETURNING 1)
        SELECT count(*) INTO v_dep_removed FROM dropped;

        UPDATE membership.dependents x
        SET name = w.name, relationship = w.relationship
        FROM pg_temp.membership_sync_dependents w
        WHERE x.member_id = w.member_id AND x.email = w.email AND x.removed_at IS NULL
          AND (x.name IS DISTINCT FROM w.name OR x.relationship <> w.relationship);

        WITH added AS (
            INSERT INTO membership.dependents (organisation_id, member_id, email, name, relationship, source)
            SELECT p_org, w.member_id, w.email, w.name, w.relationship, 'sync'
            FROM pg_temp.membership_sync_dependents w
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
