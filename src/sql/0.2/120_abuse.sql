-- Abuse detection on verification traffic, run by the usage flusher once
-- a minute is over (membership.detect_abuse), written to
-- membership.abuse_alerts: one row per episode, however many minutes it
-- lasts.
--
--   velocity_spike  a minute with at least membership.abuse_spike_min_calls
--                   calls and more than membership.abuse_spike_factor times
--                   the key's average per minute over the hour before it;
--   enumeration     over the last ten minutes, at least
--                   membership.abuse_enumeration_min_lookups answers of which
--                   at least membership.abuse_enumeration_share said
--                   verified = false: someone guessing addresses.
--
-- An episode stays open while its condition keeps holding and ends after
-- membership.abuse_episode_gap quiet minutes.

CREATE TABLE membership.abuse_alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    api_key_id      bigint NOT NULL REFERENCES membership.api_keys (id) ON DELETE CASCADE,
    provider_id     uuid,
    kind            text NOT NULL CHECK (kind IN ('velocity_spike', 'enumeration')),
    started_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    ended_at        timestamptz,
    minutes         integer NOT NULL DEFAULT 1 CHECK (minutes > 0),
    peak_calls      bigint NOT NULL,        -- calls in the worst minute
    baseline        numeric,                -- spikes: average calls per minute in the hour before
    miss_share      numeric,                -- enumeration: share of verified = false over ten minutes
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
-- at most one open episode of each kind per key
CREATE UNIQUE INDEX abuse_alerts_open_idx ON membership.abuse_alerts (api_key_id, kind)
    WHERE ended_at IS NULL;
CREATE INDEX abuse_alerts_organisation_idx ON membership.abuse_alerts (organisation_id, started_at);
COMMENT ON TABLE membership.abuse_alerts IS
    'tenant: velocity spikes and membership enumeration seen on a provider''s key, one row per episode';
SELECT membership.isolate_table('membership.abuse_alerts');

-- Judge the minute starting at "minute" (UTC, whole minute): open, extend
-- and close episodes.  Returns how many new alerts were raised.  Running it
-- twice for the same minute changes nothing the second time.
CREATE FUNCTION membership.detect_abuse(minute timestamptz) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_factor numeric := coalesce(current_setting('membership.abuse_spike_factor', true), '10')::numeric;
    v_min_calls bigint := coalesce(current_setting('membership.abuse_spike_min_calls', true), '300')::bigint;
    v_share numeric := coalesce(current_setting('membership.abuse_enumeration_share', true), '0.5')::numeric;
    v_min_lookups bigint := coalesce(current_setting('membership.abuse_enumeration_min_lookups', true), '100')::bigint;
    v_gap interval := coalesce(current_setting('membership.abuse_episode_gap', true), '10min')::interval;
    v_opened integer;
BEGIN
    IF minute IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'minute must not be null';
    END IF;

    IF to_regclass('pg_temp.membership_abuse_findings') IS NULL THEN
        CREATE TEMPORARY TABLE membership_abuse_findings (
            api_key_id bigint, kind text, calls bigint, baseline numeric, miss_share numeric
        ) ON COMMIT DROP;
    END IF;
    TRUNCATE membership_abuse_findings;

    INSERT INTO membership_abuse_findings
    WITH per_minute AS (
        SELECT u.api_key_id, u.minute, sum(u.allowed + u.refused) AS calls,
               sum(u.verified_true) AS found, sum(u.verified_false) AS missed
        FROM membership.usage_minutes u
        WHERE u.minute > detect_abuse.minute - interval '61 minutes'
          AND u.minute <= detect_abuse.minute
        GROUP BY u.api_key_id, u.minute
    ), spikes AS (
        SELECT c.api_key_id, 'velocity_spike' AS kind, c.calls,
               coalesce((SELECT sum(h.calls) FROM per_minute h
                         WHERE h.api_key_id = c.api_key_id
                           AND h.minute >= detect_abuse.minute - interval '60 minutes'
                           AND h.minute < detect_abuse.minute), 0) / 60.0 AS baseline,
               NULL::numeric AS miss_share
        FROM per_minute c
        WHERE c.minute = detect_abuse.minute AND c.calls >= v_min_calls
    ), lookups AS (
        SELECT w.api_key_id, sum(w.found) AS found, sum(w.missed) AS missed,
               max(w.calls) FILTER (WHERE w.minute = detect_abuse.minute) AS calls
        FROM per_minute w
        WHERE w.minute > detect_abuse.minute - interval '10 minutes'
        GROUP BY w.api_key_id
    )
    SELECT s.api_key_id, s.kind, s.calls, s.baseline, s.miss_share
    FROM spikes s WHERE s.calls > v_factor * greatest(s.baseline, 1)
    UNION ALL
    SELECT l.api_key_id, 'enumeration', coalesce(l.calls, 0), NULL,
           round(l.missed::numeric / (l.found + l.missed), 3)
    FROM lookups l
    WHERE l.found + l.missed >= v_min_lookups
      AND l.missed::numeric / (l.found + l.missed) >= v_share;

    -- episodes that go on
    UPDATE membership.abuse_alerts a
    SET last_seen_at = detect_abuse.minute,
        minutes = a.minutes + 1,
        peak_calls = greatest(a.peak_calls, f.calls),
        miss_share = coalesce(greatest(a.miss_share, f.miss_share), a.miss_share)
    FROM membership_abuse_findings f
    WHERE a.api_key_id = f.api_key_id AND a.kind = f.kind AND a.ended_at IS NULL
      AND a.last_seen_at < detect_abuse.minute;

    -- episodes that are over
    UPDATE membership.abuse_alerts a
    SET ended_at = a.last_seen_at + interval '1 minute'
    WHERE a.ended_at IS NULL AND a.last_seen_at < detect_abuse.minute - v_gap;

    -- new episodes
    WITH opened AS (
        INSERT INTO membership.abuse_alerts
            (organisation_id, api_key_id, provider_id, kind, started_at, last_seen_at,
             peak_calls, baseline, miss_share)
        SELECT k.organisation_id, k.id, k.provider_id, f.kind, detect_abuse.minute, detect_abuse.minute,
               f.calls, round(f.baseline, 2), f.miss_share
        FROM membership_abuse_findings f
        JOIN membership.api_keys k ON k.id = f.api_key_id
        WHERE NOT EXISTS (SELECT FROM membership.abuse_alerts a
                          WHERE a.api_key_id = f.api_key_id AND a.kind = f.kind
                            AND (a.ended_at IS NULL OR a.last_seen_at >= detect_abuse.minute))
        RETURNING 1)
    SELECT count(*) INTO v_opened FROM opened;
    RETURN v_opened;
END
$$;

CREATE FUNCTION membership.abuse_alerts_of(organisation uuid)
    RETURNS SETOF membership.abuse_alerts
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    RETURN QUERY SELECT * FROM membership.abuse_alerts a ORDER BY a.started_at DESC, a.id DESC;
END
$$;
GRANT EXECUTE ON FUNCTION membership.abuse_alerts_of(uuid) TO membership_platform_admin;

CREATE FUNCTION membership_api.abuse_alerts()
    RETURNS TABLE (kind text, provider text, api_key text, started_at timestamptz,
                   last_seen_at timestamptz, ended_at timestamptz, minutes integer,
                   peak_calls bigint, baseline numeric, miss_share numeric)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'org_admin');
BEGIN
    RETURN QUERY
        SELECT a.kind, p.slug, k.prefix, a.started_at, a.last_seen_at, a.ended_at, a.minutes,
               a.peak_calls, a.baseline, a.miss_share
        FROM membership.abuse_alerts a
        JOIN membership.api_keys k ON k.id = a.api_key_id
        LEFT JOIN membership.providers p ON p.id = a.provider_id
        WHERE a.organisation_id = v_caller.organisation_id
        ORDER BY a.started_at DESC, a.id DESC;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.abuse_alerts() TO membership_org_admin;
COMMENT ON FUNCTION membership_api.abuse_alerts() IS
    'abuse episodes seen on the keys of the calling administrator''s organisation, newest first';
