-- After enqueueing: organisations approve or reject providers' promotions,
-- in-app notifications reach the inbox, members read it, and the platform
-- cancels what is not yet sent.
--
-- Channels: the push worker (src/push_*.c, docs/push.md) claims 'push'
-- rows only.  'in_app' rows are delivered by the database itself: at
-- enqueue when due now, else by the deliver_in_app job when they fall due.
-- 'email' and 'sms' rows stay queued for an external sender, which claims
-- them the way the push worker does (docs/notifications.md).

-- Promotions waiting for the organisation's decision.
CREATE FUNCTION membership_api.pending_promotions(api_key text DEFAULT NULL)
    RETURNS TABLE (promotion bigint, provider text, channel text, category text, title text, body text,
                   data jsonb, audience jsonb, recipients integer, not_after timestamptz, created_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN QUERY
        SELECT b.id, p.name, b.channel, b.category, b.title, b.body, b.data, b.audience, b.recipients,
               b.not_after, b.created_at
        FROM membership.notification_batches b
        LEFT JOIN membership.providers p ON p.id = b.provider_id
        WHERE b.organisation_id = v_caller.organisation_id AND b.approval = 'pending'
        ORDER BY b.created_at, b.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.pending_promotions(text) TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.pending_promotions(text) IS
    'organisations: providers'' promotions waiting for approval';

-- Lock a pending promotion of the caller's organisation, or raise.
CREATE FUNCTION membership.pending_promotion(organisation uuid, promotion bigint)
    RETURNS membership.notification_batches
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_batch membership.notification_batches;
BEGIN
    IF promotion IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'promotion must not be null';
    END IF;
    SELECT * INTO v_batch FROM membership.notification_batches b
    WHERE b.id = promotion AND b.organisation_id = organisation AND b.sender = 'provider'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('promotion %s does not exist', promotion);
    END IF;
    IF v_batch.approval <> 'pending' THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('promotion %s is already %s', promotion, v_batch.approval);
    END IF;
    RETURN v_batch;
END
$$;

-- Approve a provider's promotion (the id send_promotion returned).  The
-- rules run now, for every recipient, as if it were enqueued at this
-- moment: preferences, consent, budget, quiet hours and not_after as they
-- are now.  Returns the outcome counts.
CREATE FUNCTION membership.approve_promotion(organisation uuid, promotion bigint, at timestamptz DEFAULT now())
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_batch membership.notification_batches;
    v_members uuid[];
    v_outcome jsonb;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    v_batch := membership.pending_promotion(organisation, promotion);
    v_members := ARRAY(SELECT n.member_id FROM membership.notifications n
                       WHERE n.batch_id = v_batch.id AND n.status = 'deferred' AND n.reason = 'awaiting_approval'
                       ORDER BY n.member_id);
    PERFORM FROM membership.members m WHERE m.id = ANY (v_members) ORDER BY m.id FOR NO KEY UPDATE;
    WITH decided AS (
        UPDATE membership.notifications n
        SET status = CASE WHEN n.channel = 'in_app' AND p.status = 'queued' THEN 'sent' ELSE p.status END,
            reason = p.reason, budgeted = p.budgeted, slot_at = p.slot_at, due_at = p.due_at,
            sent_at = CASE WHEN n.channel = 'in_app' AND p.status = 'queued' THEN at END
        FROM membership.plan_notifications(organisation, v_members, v_batch.channel, v_batch.priority,
                                           v_batch.category, v_batch.not_after, at) AS p
        WHERE n.batch_id = v_batch.id AND n.member_id = p.member_id
          AND n.status = 'deferred' AND n.reason = 'awaiting_approval'
        RETURNING n.status, n.reason
    )
    SELECT membership.batch_outcome(v_batch.id, array_agg(d.status), array_agg(d.reason)) INTO v_outcome
    FROM decided d;
    UPDATE membership.notification_batches b SET approval = 'approved', decided_at = at, outcome = v_outcome
    WHERE b.id = v_batch.id;
    RETURN v_outcome;
END
$$;
GRANT EXECUTE ON FUNCTION membership.approve_promotion(uuid, bigint, timestamptz) TO membership_platform_admin;

CREATE FUNCTION membership.reject_promotion(organisation uuid, promotion bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_batch membership.notification_batches;
    v_outcome jsonb;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    v_batch := membership.pending_promotion(organisation, promotion);
    WITH decided AS (
        UPDATE membership.notifications n SET status = 'dropped', reason = 'rejected'
        WHERE n.batch_id = v_batch.id AND n.status = 'deferred' AND n.reason = 'awaiting_approval'
        RETURNING n.status, n.reason
    )
    SELECT membership.batch_outcome(v_batch.id, array_agg(d.status), array_agg(d.reason)) INTO v_outcome
    FROM decided d;
    UPDATE membership.notification_batches b SET approval = 'rejected', decided_at = now(), outcome = v_outcome
    WHERE b.id = v_batch.id;
    RETURN v_outcome;
END
$$;
GRANT EXECUTE ON FUNCTION membership.reject_promotion(uuid, bigint) TO membership_platform_admin;

CREATE FUNCTION membership_api.approve_notification(promotion bigint, api_key text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN membership.approve_promotion(v_caller.organisation_id, promotion);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.approve_notification(bigint, text) TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.approve_notification(bigint, text) IS
    'organisations: approve a provider''s promotion; the budget and preference rules apply now';

CREATE FUNCTION membership_api.reject_notification(promotion bigint, api_key text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN membership.reject_promotion(v_caller.organisation_id, promotion);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.reject_notification(bigint, text) TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.reject_notification(bigint, text) IS
    'organisations: reject a provider''s promotion; none of it is sent';

-- Deliver the in-app notifications that have fallen due (deferred by a
-- budget; not_after was applied when their time was decided).  Returns how
-- many rows it changed.  A job, every minute; the inbox shows due in-app rows before it
-- runs.
CREATE FUNCTION membership.deliver_in_app(at timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_org uuid;
    v_n bigint;
    v_total bigint := 0;
BEGIN
    FOR v_org IN SELECT membership.all_organisations() LOOP
        PERFORM membership.set_tenant(v_org);
        UPDATE membership.notifications n
        SET status = 'sent', sent_at = at
        WHERE n.organisation_id = v_org AND n.channel = 'in_app'
          AND n.status IN ('queued', 'deferred') AND n.due_at <= at;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_total := v_total + v_n;
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.deliver_in_app(timestamptz) TO membership_worker, membership_platform_admin;
COMMENT ON FUNCTION membership.deliver_in_app(timestamptz) IS
    'job: deliver in-app notifications that have fallen due (the inbox shows them before it runs)';
SELECT membership.register_job('deliver_in_app', '* * * * *', 'SELECT membership.deliver_in_app()',
    'deliver in-app notifications that have fallen due');

-- Cancel everything not yet sent to an organisation's members (or one
-- member): queued and deferred rows become 'dropped' (reason 'cancelled')
-- and give their slots back.  Rows a push worker holds ('sending') finish.
-- Returns how many were cancelled.  Offboarding and erasure use it.
CREATE FUNCTION membership.cancel_notifications(organisation uuid, member uuid DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    UPDATE membership.notifications n
    SET status = 'dropped', reason = 'cancelled', budgeted = false, slot_at = NULL
    WHERE n.organisation_id = organisation AND (member IS NULL OR n.member_id = member)
      AND n.status IN ('queued', 'deferred');
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE membership.notification_batches b SET approval = 'rejected', decided_at = now()
    WHERE b.organisation_id = organisation AND b.approval = 'pending' AND member IS NULL;
    RETURN v_n;
END
$$;
GRANT EXECUTE ON FUNCTION membership.cancel_notifications(uuid, uuid) TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.cancel_notifications(uuid, uuid) IS
    'platform: cancel every notification not yet sent to an organisation''s members, or to one member';

-- The calling member's inbox: what was delivered to them on any channel,
-- newest first; "before" pages back from a notification id.
CREATE FUNCTION membership_api.notifications(max_results integer DEFAULT 50, before bigint DEFAULT NULL)
    RETURNS TABLE (id bigint, channel text, category text, title text, body text, data jsonb,
                   sender text, sent_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    IF max_results IS NULL OR max_results NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'max_results must be between 1 and 200';
    END IF;
    RETURN QUERY
        SELECT n.id, n.channel, n.category, n.title, n.body, n.data, n.sender, coalesce(n.sent_at, n.due_at)
        FROM membership.notifications n
        WHERE n.member_id = v_caller.member_id AND n.organisation_id = v_caller.organisation_id
          AND (n.status = 'sent'
               OR (n.channel = 'in_app' AND n.status IN ('queued', 'deferred') AND n.due_at <= now()))
          AND (before IS NULL OR n.id < before)
        ORDER BY n.id DESC
        LIMIT max_results;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.notifications(integer, bigint) TO membership_member;
COMMENT ON FUNCTION membership_api.notifications(integer, bigint) IS
    'members: notifications delivered to them, newest first';

-- A member's later decision applies to what is still waiting for them: a
-- channel opted out of or a category muted suppresses their queued and
-- deferred rows of it, and withdrawing marketing consent drops their
-- waiting priority 3 rows.  Either way the slots are given back.  Rows a
-- push worker holds ('sending') finish; promotions awaiting approval are
-- judged when approved.
CREATE FUNCTION membership.apply_preferences_to_waiting() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    UPDATE membership.notifications n
    SET status = 'suppressed',
        reason = CASE WHEN n.channel = ANY (NEW.opted_out_channels) THEN 'channel_opted_out' ELSE 'category_muted' END,
        budgeted = false, slot_at = NULL, due_at = NULL
    WHERE n.member_id = NEW.member_id AND n.status IN ('queued', 'deferred') AND n.reason <> 'awaiting_approval'
      AND (n.channel = ANY (NEW.opted_out_channels) OR n.category = ANY (NEW.muted_categories));
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_preferences_apply
    AFTER INSERT OR UPDATE OF opted_out_channels, muted_categories ON membership.notification_preferences
    FOR EACH ROW EXECUTE FUNCTION membership.apply_preferences_to_waiting();

CREATE FUNCTION membership.apply_consent_to_waiting() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    UPDATE membership.notifications n
    SET status = 'dropped', reason = 'no_marketing_consent', budgeted = false, slot_at = NULL, due_at = NULL
    WHERE n.member_id = NEW.member_id AND n.priority = 3 AND n.status IN ('queued', 'deferred')
      AND n.reason <> 'awaiting_approval';
    RETURN NULL;
END
$$;
CREATE TRIGGER consents_apply_to_notifications
    AFTER INSERT OR UPDATE OF granted ON membership.consents
    FOR EACH ROW WHEN (NEW.consent = 'marketing' AND NOT NEW.granted)
    EXECUTE FUNCTION membership.apply_consent_to_waiting();
