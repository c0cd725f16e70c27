-- Retention of notification history, and consent enforced on the usage
-- table itself.
--
-- Verification usage and audit records have their retention job since
-- 0.2 (expire_usage, membership.usage_retention and audit_retention);
-- benefit usage becomes anonymous after the scoring window
-- (anonymise_benefit_usage).  This adds the outbox: notifications that are
-- over (sent, failed, dropped, suppressed) are deleted, with their
-- per-device delivery records, once older than
-- membership.notification_retention, except rows still holding a slot of
-- a member's rolling 7-day budget.

CREATE FUNCTION membership.notification_retention() RETURNS interval
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT coalesce(current_setting('membership.notification_retention', true), '90d')::interval
$$;

CREATE FUNCTION membership.expire_notifications(as_of timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations());
    v_cutoff timestamptz := as_of - membership.notification_retention();
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite time';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        PERFORM membership.set_tenant(v_orgs[i]);
        DELETE FROM membership.notifications n
        WHERE n.organisation_id = v_orgs[i] AND n.created_at < v_cutoff
          AND n.status IN ('sent', 'failed', 'dropped', 'suppressed')
          AND NOT (n.budgeted AND n.slot_at > as_of - interval '7 days');
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_total := v_total + v_n;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.expire_notifications(timestamptz) TO membership_worker, membership_platform_admin;
COMMENT ON FUNCTION membership.expire_notifications(timestamptz) IS
    'job: delete finished notifications older than membership.notification_retention';

SELECT membership.register_job('expire_notifications', '45 3 * * *', 'SELECT membership.expire_notifications()',
    'delete finished notifications older than membership.notification_retention');

-- A use is recorded against a member only with their usage_tracking
-- consent, whoever writes it: without it the row is kept anonymous.
CREATE FUNCTION membership.benefit_usage_needs_consent() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF NOT membership.has_consent(NEW.member_id, 'usage_tracking') THEN
        NEW.member_id := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER benefit_usage_needs_consent
    BEFORE INSERT OR UPDATE OF member_id ON membership.benefit_usage
    FOR EACH ROW WHEN (NEW.member_id IS NOT NULL)
    EXECUTE FUNCTION membership.benefit_usage_needs_consent();
