-- Consents: what a member allows the platform to do with their data.
--
--   usage_tracking   keep benefit usage per member (otherwise counted anonymously)
--   personalisation  let usage, profession and bookmarks shape the benefit feed
--   marketing        receive marketing pushes (priority 3)
--
-- None is granted until the member grants it.  consent_events is the full
-- history of grants and revokes; consents holds the current answer, one
-- row per member and consent, and is what the capabilities read.

CREATE TABLE membership.consent_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    consent         text NOT NULL
                    CHECK (consent IN ('usage_tracking', 'personalisation', 'marketing')),
    granted         boolean NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX consent_events_organisation_idx ON membership.consent_events (organisation_id);
CREATE INDEX consent_events_member_idx ON membership.consent_events (member_id, recorded_at);
COMMENT ON TABLE membership.consent_events IS
    'tenant: every grant and revoke of a consent, in order';
SELECT membership.isolate_table('membership.consent_events');

CREATE TABLE membership.consents (
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    consent         text NOT NULL
                    CHECK (consent IN ('usage_tracking', 'personalisation', 'marketing')),
    granted         boolean NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (member_id, consent),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX consents_organisation_idx ON membership.consents (organisation_id);
COMMENT ON TABLE membership.consents IS
    'tenant: the current answer of each member to each consent (absent means not granted)';
SELECT membership.isolate_table('membership.consents');

-- Has the member granted this consent?  What gates usage recording,
-- personalised scoring and marketing pushes.
CREATE FUNCTION membership.has_consent(member uuid, consent text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT coalesce((SELECT c.granted FROM membership.consents c
                     WHERE c.member_id = has_consent.member AND c.consent = has_consent.consent), false)
$$;

-- The member's current consents as {"usage_tracking": bool, ...}.
CREATE FUNCTION membership.consent_state(member uuid) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT jsonb_object_agg(k.consent, coalesce(c.granted, false) ORDER BY k.consent)
    FROM unnest(ARRAY['marketing', 'personalisation', 'usage_tracking']) AS k(consent)
    LEFT JOIN membership.consents c ON c.member_id = consent_state.member AND c.consent = k.consent
$$;

CREATE FUNCTION membership_api.set_consent(consent text, granted boolean) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    IF consent IS NULL OR granted IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'consent and granted must not be null';
    END IF;
    IF consent NOT IN ('usage_tracking', 'personalisation', 'marketing') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown consent "%s"', consent),
            HINT = 'Consents are usage_tracking, personalisation and marketing.';
    END IF;
    -- record only real changes, so the history is a list of decisions
    IF membership.has_consent(v_caller.member_id, consent) IS DISTINCT FROM granted THEN
        INSERT INTO membership.consent_events (organisation_id, member_id, consent, granted)
        VALUES (v_caller.organisation_id, v_caller.member_id, set_consent.consent, set_consent.granted);
        INSERT INTO membership.consents AS c (organisation_id, member_id, consent, granted)
        VALUES (v_caller.organisation_id, v_caller.member_id, set_consent.consent, set_consent.granted)
        ON CONFLICT ON CONSTRAINT consents_pkey
        DO UPDATE SET granted = EXCLUDED.granted, updated_at = pg_catalog.now();
    END IF;
    RETURN membership.consent_state(v_caller.member_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.set_consent(text, boolean) TO membership_member;
COMMENT ON FUNCTION membership_api.set_consent(text, boolean) IS
    'grant or revoke a consent for the calling member; returns all current consents';

CREATE FUNCTION membership_api.consents()
    RETURNS TABLE (consent text, granted boolean, recorded_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN QUERY
        SELECT e.consent, e.granted, e.recorded_at
        FROM membership.consent_events e
        WHERE e.member_id = v_caller.member_id
        ORDER BY e.recorded_at, e.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.consents() TO membership_member;
COMMENT ON FUNCTION membership_api.consents() IS
    'the calling member''s history of consent decisions, oldest first';
