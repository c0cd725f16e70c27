-- Benefit usage, reported by providers when a member uses a benefit.
--
-- Every use is counted, for the organisation's reports.  Who used it is
-- kept only for members who granted "usage_tracking" (it then shapes their
-- feed, if they also granted "personalisation"); every other use is kept
-- anonymously, with member_id NULL.  A member who revokes usage_tracking
-- has their past uses made anonymous at once (membership.consents trigger,
-- 440_feeds.sql), and uses older than the 365 days that scoring looks at
-- are made anonymous nightly (job "anonymise_benefit_usage").

CREATE TABLE membership.benefit_usage (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id),
    benefit_id      integer NOT NULL REFERENCES membership.benefits (id),
    member_id       uuid,
    provider_id     uuid NOT NULL REFERENCES membership.providers (id),
    reference       text CHECK (pg_catalog.length(reference) BETWEEN 1 AND 200),
    used_at         timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE SET NULL (member_id),
    -- a provider's own reference for a use makes reporting it idempotent
    CONSTRAINT benefit_usage_reference_key UNIQUE (organisation_id, provider_id, reference)
);
CREATE INDEX benefit_usage_organisation_idx ON membership.benefit_usage (organisation_id, used_at);
-- what scoring reads: each member's uses in the window, by an index-only scan
CREATE INDEX benefit_usage_member_idx ON membership.benefit_usage (organisation_id, member_id, used_at)
    INCLUDE (benefit_id) WHERE member_id IS NOT NULL;
COMMENT ON TABLE membership.benefit_usage IS
    'tenant: uses of benefits reported by providers; member_id only with the member''s usage_tracking consent';
SELECT membership.isolate_table('membership.benefit_usage');

CREATE FUNCTION membership_api.record_benefit_usage(benefit integer, email text DEFAULT NULL,
                                                    user_id text DEFAULT NULL,
                                                    used_at timestamptz DEFAULT NULL,
                                                    reference text DEFAULT NULL,
                                                    api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'provider');
    v_used_at timestamptz := coalesce(used_at, now());
    v_member uuid;
    v_id bigint;
    v_previous integer;
BEGIN
    IF benefit IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'benefit must not be null';
    END IF;
    IF record_benefit_usage.email IS NOT NULL AND user_id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'give the member''s email or user_id, not both';
    END IF;
    IF email IS NOT NULL AND NOT membership.is_valid_email(email) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid email address "%s"', left(email, 200));
    END IF;
    IF user_id IS NOT NULL AND (btrim(user_id) = '' OR length(user_id) > 200) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'user_id must be 1 to 200 characters';
    END IF;
    IF NOT isfinite(v_used_at) OR v_used_at > now() + interval '5 minutes' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'used_at is in the future',
            DETAIL = format('used_at is %s.', v_used_at);
    END IF;
    IF v_used_at < now() - interval '365 days' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'used_at is more than 365 days ago',
            DETAIL = format('used_at is %s.', v_used_at);
    END IF;
    IF reference IS NOT NULL AND (reference = '' OR length(reference) > 200) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'reference must be 1 to 200 characters';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.benefits b
                   JOIN membership.benefit_offers o ON o.benefit_id = b.id
                   WHERE b.id = benefit AND b.active AND b.provider_id = v_caller.provider_id
                     AND o.organisation_id = v_caller.organisation_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404',
            MESSAGE = format('benefit %s is not one of yours offered to this organisation', benefit),
            HINT = 'A provider reports usage of its own active benefits that the key''s organisation offers.';
    END IF;

    -- Whom to record the use for: a current member who allows tracking.
    -- Whether there is one stays with us: the answer is the same anyway.
    IF email IS NOT NULL THEN
        SELECT m.id INTO v_member FROM membership.members m
        WHERE m.organisation_id = v_caller.organisation_id
          AND m.email_hash = membership.email_hash(membership.normalize_email(record_benefit_usage.email))
          AND m.removed_at IS NULL;
    ELSIF user_id IS NOT NULL THEN
        SELECT m.id INTO v_member FROM membership.members m
        WHERE m.organisation_id = v_caller.organisation_id AND m.external_id = btrim(user_id)
          AND m.removed_at IS NULL;
    END IF;
    IF v_member IS NOT NULL AND NOT membership.has_consent(v_member, 'usage_tracking') THEN
        v_member := NULL;
    END IF;

    INSERT INTO membership.benefit_usage (organisation_id, benefit_id, member_id, provider_id, reference, used_at)
    VALUES (v_caller.organisation_id, benefit, v_member, v_caller.provider_id, record_benefit_usage.reference,
            v_used_at)
    ON CONFLICT ON CONSTRAINT benefit_usage_reference_key DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN jsonb_build_object('recorded', true, 'duplicate', false);
    END IF;

    SELECT u.benefit_id INTO v_previous FROM membership.benefit_usage u
    WHERE u.organisation_id = v_caller.organisation_id AND u.provider_id = v_caller.provider_id
      AND u.reference = record_benefit_usage.reference;
    IF v_previous <> benefit THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('reference "%s" was already reported for another benefit', reference);
    END IF;
    RETURN jsonb_build_object('recorded', false, 'duplicate', true);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.record_benefit_usage(integer, text, text, timestamptz, text, text)
    TO membership_provider;
COMMENT ON FUNCTION membership_api.record_benefit_usage(integer, text, text, timestamptz, text, text) IS
    'providers: report that a member used one of your benefits; idempotent on reference';

-- Make per-member usage older than the scoring window anonymous: scoring
-- no longer needs to know whose it was.  Returns how many uses.
CREATE FUNCTION membership.anonymise_benefit_usage(as_of timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_org uuid;
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations());
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite time';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        UPDATE membership.benefit_usage u SET member_id = NULL
        WHERE u.organisation_id = v_org AND u.member_id IS NOT NULL
          AND u.used_at < as_of - interval '365 days';
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_total := v_total + v_n;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.anonymise_benefit_usage(timestamptz) TO membership_worker, membership_platform_admin;

SELECT membership.register_job('anonymise_benefit_usage', '30 3 * * *',
    'SELECT membership.anonymise_benefit_usage()',
    'make per-member benefit usage older than 365 days anonymous');
