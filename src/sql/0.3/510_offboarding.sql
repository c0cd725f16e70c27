-- Offboarding and purging an organisation (DESIGN.md 4.6).
--
-- offboard_organisation() is immediate and keeps the data:
--   every member is marked removed, so verification answers false for
--     each of them and their dependents, and no job, audience or feed
--     includes them again;
--   every key is revoked: the organisation's own keys and its members'
--     sessions are refused (PT401), while its providers' keys still get
--     {"verified": false} until the purge, so a checkout sees a member who
--     is not verified rather than a broken integration;
--   queued and deferred notifications are cancelled and pending
--     promotions rejected; feeds are deleted;
--   every platform function taking the organisation refuses it
--     (enter_organisation) and every job leaves it out
--     (all_organisations).
-- purge_offboarded() deletes every row of each organisation offboarded
-- longer than membership.offboard_retention ago, in every tenant table,
-- and leaves one record in membership.purged_organisations.

-- Act for an organisation, raising an error unless it exists and has not
-- been offboarded.  Every platform function that takes an organisation
-- starts here; erasure and the purge, which must reach offboarded
-- organisations, use find_organisation() instead.
CREATE OR REPLACE FUNCTION membership.enter_organisation(organisation uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_offboarded_at timestamptz := membership.find_organisation(organisation);
BEGIN
    IF v_offboarded_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('organisation %s has been offboarded', organisation),
            DETAIL = format('It was offboarded at %s; its data is kept only until the purge.', v_offboarded_at);
    END IF;
END
$$;

-- Act for an organisation, offboarded or not, raising an error unless it
-- exists.  Returns when it was offboarded (NULL if it was not).
CREATE FUNCTION membership.find_organisation(organisation uuid) RETURNS timestamptz
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_offboarded_at timestamptz;
BEGIN
    IF organisation IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'organisation must not be null';
    END IF;
    PERFORM membership.set_tenant(organisation);
    SELECT o.offboarded_at INTO v_offboarded_at FROM membership.organisations o WHERE o.id = organisation;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('organisation %s does not exist', organisation);
    END IF;
    RETURN v_offboarded_at;
END
$$;

CREATE FUNCTION membership.offboard_organisation(organisation uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_at timestamptz;
    v_members bigint;
    v_keys bigint;
    v_cancelled bigint;
    v_feeds bigint;
BEGIN
    PERFORM membership.find_organisation(organisation);
    SELECT o.offboarded_at INTO v_at FROM membership.organisations o
    WHERE o.id = organisation FOR UPDATE;
    IF v_at IS NOT NULL THEN
        -- done already: say so, and change nothing
        RETURN jsonb_build_object('organisation', organisation, 'offboarded_at', v_at,
                                  'purge_after', v_at + membership.offboard_retention(),
                                  'already_offboarded', true);
    END IF;

    v_cancelled := membership.cancel_notifications(organisation);
    DELETE FROM membership.feeds f WHERE f.organisation_id = organisation;
    GET DIAGNOSTICS v_feeds = ROW_COUNT;
    UPDATE membership.members m SET removed_at = now(), updated_at = now()
    WHERE m.organisation_id = organisation AND m.removed_at IS NULL;
    GET DIAGNOSTICS v_members = ROW_COUNT;
    UPDATE membership.api_keys k SET revoked_at = now()
    WHERE k.organisation_id = organisation AND k.revoked_at IS NULL;
    GET DIAGNOSTICS v_keys = ROW_COUNT;
    UPDATE membership.organisations o SET offboarded_at = now() WHERE o.id = organisation;

    RETURN jsonb_build_object('organisation', organisation, 'offboarded_at', now(),
                              'purge_after', now() + membership.offboard_retention(),
                              'already_offboarded', false,
                              'members_removed', v_members, 'keys_revoked', v_keys,
                              'notifications_cancelled', v_cancelled, 'feeds_deleted', v_feeds);
END
$$;
GRANT EXECUTE ON FUNCTION membership.offboard_organisation(uuid) TO membership_platform_admin;
COMMENT ON FUNCTION membership.offboard_organisation(uuid) IS
    'platform: offboard an organisation at once (members answer false, keys revoked, pushes cancelled, feeds cleared); purged after membership.offboard_retention';

CREATE FUNCTION membership.offboard_retention() RETURNS interval
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT coalesce(current_setting('membership.offboard_retention', true), '30d')::interval
$$;

-- The extension's tenant tables in an order in which deleting an
-- organisation's rows from each in turn breaks no foreign key: every table
-- after all the tables whose rows refer to it.  organisations comes last.
CREATE FUNCTION membership.tenant_tables_in_delete_order()
    RETURNS TABLE (table_name name, tenant_column name)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    WITH RECURSIVE tenant AS (
        SELECT c.oid, c.relname,
               CASE WHEN c.relname = 'organisations' THEN 'id' ELSE 'organisation_id' END::name AS col
        FROM pg_class c
        WHERE c.relnamespace = 'membership'::regnamespace AND c.relkind IN ('r', 'p')
          AND (c.relname = 'organisations'
               OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                          AND a.attname = 'organisation_id' AND NOT a.attisdropped))
    ),
    refers AS (
        SELECT DISTINCT k.conrelid AS child, k.confrelid AS parent
        FROM pg_constraint k
        WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
          AND k.conrelid IN (SELECT oid FROM tenant) AND k.confrelid IN (SELECT oid FROM tenant)
    ),
    -- how far below each table its referring tables reach
    depth (oid, depth) AS (
        SELECT t.oid, 0 FROM tenant t
        UNION ALL
        SELECT r.parent, d.depth + 1 FROM depth d JOIN refers r ON r.child = d.oid
    )
    SELECT t.relname, t.col
    FROM tenant t JOIN depth d USING (oid)
    GROUP BY t.relname, t.col
    ORDER BY max(d.depth), t.relname
$$;

-- Delete every row of each organisation offboarded at least
-- membership.offboard_retention before "as_of", leaving one record in
-- purged_organisations.  Returns how many organisations were purged.
CREATE FUNCTION membership.purge_offboarded(as_of timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.offboarded_organisations());
    v_org membership.organisations;
    v_table record;
    v_rows jsonb;
    v_n bigint;
    v_purged bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite time';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        PERFORM membership.set_tenant(v_orgs[i]);
        SELECT * INTO v_org FROM membership.organisations o WHERE o.id = v_orgs[i] FOR UPDATE;
        CONTINUE WHEN v_org.offboarded_at IS NULL
                   OR v_org.offboarded_at > as_of - membership.offboard_retention();

        v_rows := '{}';
        FOR v_table IN SELECT * FROM membership.tenant_tables_in_delete_order() LOOP
            EXECUTE format('DELETE FROM membership.%I WHERE %I = $1', v_table.table_name, v_table.tenant_column)
                USING v_org.id;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            IF v_n > 0 THEN
                v_rows := v_rows || jsonb_build_object(v_table.table_name, v_n);
            END IF;
        END LOOP;
        INSERT INTO membership.purged_organisations (id, slug, name, created_at, offboarded_at, rows_deleted)
        VALUES (v_org.id, v_org.slug, v_org.name, v_org.created_at, v_org.offboarded_at, v_rows);
        v_purged := v_purged + 1;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_purged;
END
$$;
GRANT EXECUTE ON FUNCTION membership.purge_offboarded(timestamptz) TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.purge_offboarded(timestamptz) IS
    'job: delete every row of organisations offboarded longer than membership.offboard_retention ago';

SELECT membership.register_job('purge_offboarded', '15 4 * * *', 'SELECT membership.purge_offboarded()',
    'delete the data of organisations offboarded longer than membership.offboard_retention ago');

-- The ledger stays append-only with two exceptions, both decided by the
-- data rather than by who asks: the rows of an offboarded organisation may
-- be deleted (the purge), and erasure may move a row to the erased
-- member's pseudonym and clear its references to the person, changing no
-- amount, kind or time.
CREATE OR REPLACE FUNCTION membership.loyalty_ledger_is_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND EXISTS (SELECT FROM membership.organisations o
                   WHERE o.id = OLD.organisation_id AND o.offboarded_at IS NOT NULL) THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE'
       AND to_jsonb(NEW) - '{member_id,idempotency_key,source_ref,details}'::text[]
           = to_jsonb(OLD) - '{member_id,idempotency_key,source_ref,details}'::text[]
       AND NEW.source_ref IS NULL AND NEW.details = '{}'
       AND NEW.idempotency_key IS NOT DISTINCT FROM
           (CASE WHEN OLD.idempotency_key IS NOT NULL THEN 'erased:' || OLD.id END)
       AND EXISTS (SELECT FROM membership.members m
                   WHERE m.id = NEW.member_id AND m.organisation_id = OLD.organisation_id
                     AND m.status = 'erased') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('the loyalty ledger is append-only: %s is not allowed', lower(TG_OP)),
        HINT = 'Correct a transaction with a new ADJUST or REVERSAL entry.';
END
$$;

-- Invoices for the last months of an offboarded organisation are still
-- due: its usage report stays available until the purge.
CREATE OR REPLACE FUNCTION membership.usage_report(organisation uuid, from_date date, to_date date)
    RETURNS TABLE (month date, provider text, allowed bigint, refused bigint,
                   verified_true bigint, verified_false bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.find_organisation(organisation);
    RETURN QUERY SELECT * FROM membership.usage_totals(organisation, from_date, to_date);
END
$$;
