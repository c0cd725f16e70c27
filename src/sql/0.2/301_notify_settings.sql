-- Notifications, part 1 (DESIGN.md 4.4): what members and organisations
-- set before anything is sent.
--
--   membership.notification_preferences  tenant: a member's channel opt-outs,
--                                        muted categories, quiet hours and
--                                        time zone
--   membership.notification_budgets      tenant: an organisation's budget per
--                                        channel (budgeted deliveries per
--                                        member in any rolling 7 days)
--
-- Devices and push credentials live in 300_notify_tables.sql; this file
-- holds the functions that set them.

-- The channels and what a notification category may look like, in one
-- place: the tables, the setters and enqueueing all check through these.
CREATE FUNCTION membership.notification_channels() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$ SELECT ARRAY['push', 'email', 'sms', 'in_app'] $$;

CREATE FUNCTION membership.check_notification_channel(channel text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF channel IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'channel must not be null';
    END IF;
    IF NOT channel = ANY (membership.notification_channels()) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown notification channel "%s"', channel),
            HINT = 'Channels are push, email, sms and in_app.';
    END IF;
END
$$;

CREATE FUNCTION membership.check_notification_category(category text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF category IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'category must not be null';
    END IF;
    IF category !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid notification category "%s"', left(category, 100)),
            HINT = 'Categories are 1 to 32 lower-case letters, digits and underscores, starting with a letter.';
    END IF;
END
$$;

-- Is this an IANA time zone name the server knows ("Europe/Oslo", "UTC")?
-- Abbreviations and POSIX offsets ("CET", "UTC+3") are not: their meaning
-- does not follow daylight saving time the way a member's clock does.
CREATE FUNCTION membership.is_time_zone(name text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_timezone_names z WHERE z.name = is_time_zone.name)
       AND name !~ '^(posix/|right/)'
$$;

-------------------------------------------------------------------------
-- Preferences
-------------------------------------------------------------------------

-- One row per member who changed anything; a member without a row gets
-- everything, has no quiet hours, and lives in UTC.  Quiet hours run from
-- quiet_start to quiet_end in the member's local time and may cross
-- midnight (22:00 to 07:00).
CREATE TABLE membership.notification_preferences (
    organisation_id    uuid NOT NULL,
    member_id          uuid PRIMARY KEY,
    opted_out_channels text[] NOT NULL DEFAULT '{}'
                       CHECK (opted_out_channels <@ ARRAY['push', 'email', 'sms', 'in_app']),
    muted_categories   text[] NOT NULL DEFAULT '{}'
                       CHECK (pg_catalog.cardinality(muted_categories) <= 100),
    quiet_start        time,
    quiet_end          time,
    time_zone          text NOT NULL DEFAULT 'UTC' CHECK (time_zone <> ''),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    CHECK (quiet_start <> quiet_end),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX notification_preferences_organisation_idx
    ON membership.notification_preferences (organisation_id, member_id);
COMMENT ON TABLE membership.notification_preferences IS
    'tenant: members'' channel opt-outs, muted notification categories, quiet hours and time zone';
SELECT membership.isolate_table('membership.notification_preferences');

-- A member's preferences as the API shows them.
CREATE FUNCTION membership.notification_preferences_of(member uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT jsonb_build_object(
        'opted_out_channels', to_jsonb(coalesce(p.opted_out_channels, '{}')),
        'muted_categories', to_jsonb(coalesce(p.muted_categories, '{}')),
        'quiet_hours', CASE WHEN p.quiet_start IS NOT NULL
                            THEN jsonb_build_object('start', to_char(p.quiet_start, 'HH24:MI'),
                                                    'end', to_char(p.quiet_end, 'HH24:MI')) END,
        'time_zone', coalesce(p.time_zone, 'UTC'))
    FROM (SELECT) AS one
    LEFT JOIN membership.notification_preferences p ON p.member_id = notification_preferences_of.member
$$;

CREATE FUNCTION membership_api.notification_preferences() RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN membership.notification_preferences_of(v_caller.member_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.notification_preferences() TO membership_member;
COMMENT ON FUNCTION membership_api.notification_preferences() IS
    'members: channel opt-outs, muted categories, quiet hours and time zone';

-- Change the calling member's preferences.  NULL leaves a setting as it
-- is: pass an empty array to opt back in to every channel or unmute every
-- category, and no_quiet_hours => true to remove quiet hours.  Returns the
-- preferences as they now are.
CREATE FUNCTION membership_api.set_notification_preferences(
        opted_out_channels text[] DEFAULT NULL, muted_categories text[] DEFAULT NULL,
        quiet_start time DEFAULT NULL, quiet_end time DEFAULT NULL,
        time_zone text DEFAULT NULL, no_quiet_hours boolean DEFAULT false)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_old membership.notification_preferences;
    v_item text;
    v_start time;
    v_end time;
BEGIN
    IF array_position(opted_out_channels, NULL) IS NOT NULL OR array_position(muted_categories, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'channels and categories must not be null';
    END IF;
    FOREACH v_item IN ARRAY coalesce(opted_out_channels, '{}') LOOP
        PERFORM membership.check_notification_channel(v_item);
    END LOOP;
    FOREACH v_item IN ARRAY coalesce(muted_categories, '{}') LOOP
        PERFORM membership.check_notification_category(v_item);
    END LOOP;
    IF cardinality(muted_categories) > 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'at most 100 categories can be muted';
    END IF;
    IF time_zone IS NOT NULL AND NOT membership.is_time_zone(time_zone) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown time zone "%s"', left(time_zone, 100)),
            HINT = 'Use an IANA time zone name such as "Europe/Oslo"; pg_timezone_names lists them.';
    END IF;
    IF no_quiet_hours IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'no_quiet_hours must not be null';
    END IF;
    IF no_quiet_hours AND (quiet_start IS NOT NULL OR quiet_end IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'quiet hours cannot be set and removed at once';
    END IF;

    SELECT * INTO v_old FROM membership.notification_preferences p
    WHERE p.member_id = v_caller.member_id FOR UPDATE;
    IF no_quiet_hours THEN
        v_start := NULL;
        v_end := NULL;
    ELSE
        v_start := coalesce(quiet_start, v_old.quiet_start);
        v_end := coalesce(quiet_end, v_old.quiet_end);
        IF (v_start IS NULL) <> (v_end IS NULL) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'quiet hours need both a start and an end';
        END IF;
        IF v_start = v_end THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'quiet hours cannot start and end at the same time',
                HINT = 'Use no_quiet_hours => true for none.';
        END IF;
    END IF;

    INSERT INTO membership.notification_preferences AS p
        (organisation_id, member_id, opted_out_channels, muted_categories, quiet_start, quiet_end, time_zone)
    VALUES (v_caller.organisation_id, v_caller.member_id,
            CASE WHEN opted_out_channels IS NULL THEN coalesce(v_old.opted_out_channels, '{}')
                 ELSE ARRAY(SELECT DISTINCT c FROM unnest(opted_out_channels) AS c ORDER BY c) END,
            CASE WHEN muted_categories IS NULL THEN coalesce(v_old.muted_categories, '{}')
                 ELSE ARRAY(SELECT DISTINCT c FROM unnest(muted_categories) AS c ORDER BY c) END,
            v_start, v_end, coalesce(time_zone, v_old.time_zone, 'UTC'))
    ON CONFLICT ON CONSTRAINT notification_preferences_pkey
    DO UPDATE SET opted_out_channels = EXCLUDED.opted_out_channels, muted_categories = EXCLUDED.muted_categories,
                  quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
                  time_zone = EXCLUDED.time_zone, updated_at = now();
    RETURN membership.notification_preferences_of(v_caller.member_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.set_notification_preferences(text[], text[], time, time, text, boolean)
    TO membership_member;
COMMENT ON FUNCTION membership_api.set_notification_preferences(text[], text[], time, time, text, boolean) IS
    'members: opt out of channels, mute categories, set quiet hours and time zone (NULL keeps a setting)';

-------------------------------------------------------------------------
-- Budgets
-------------------------------------------------------------------------

-- An organisation's budget for a channel: at most per_week budgeted
-- deliveries to one member in any rolling 7 days; NULL means unlimited.
-- Without a row the default holds: 3 for push, unlimited elsewhere.
CREATE TABLE membership.notification_budgets (
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('push', 'email', 'sms', 'in_app')),
    per_week        integer CHECK (per_week BETWEEN 1 AND 1000),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (organisation_id, channel)
);
COMMENT ON TABLE membership.notification_budgets IS
    'tenant: budgeted deliveries per member and channel in any rolling 7 days (NULL: unlimited)';
SELECT membership.isolate_table('membership.notification_budgets');

-- The budget in force for an organisation's channel (NULL: unlimited).
CREATE FUNCTION membership.notification_budget(organisation uuid, channel text) RETURNS integer
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT CASE WHEN b.organisation_id IS NOT NULL THEN b.per_week
                WHEN notification_budget.channel = 'push' THEN 3 END
    FROM (SELECT) AS one
    LEFT JOIN membership.notification_budgets b
        ON b.organisation_id = notification_budget.organisation AND b.channel = notification_budget.channel
$$;

-- Set an organisation's budget for a channel; per_week NULL is unlimited.
-- Slots already taken stay taken; the new budget governs what comes next.
CREATE FUNCTION membership.set_notification_budget(organisation uuid, channel text, per_week integer)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    PERFORM membership.check_notification_channel(channel);
    IF per_week NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('a budget must be 1 to 1000 deliveries a week, not %s', per_week),
            HINT = 'NULL means unlimited.';
    END IF;
    INSERT INTO membership.notification_budgets AS b (organisation_id, channel, per_week)
    VALUES (organisation, set_notification_budget.channel, set_notification_budget.per_week)
    ON CONFLICT ON CONSTRAINT notification_budgets_pkey
    DO UPDATE SET per_week = EXCLUDED.per_week, updated_at = now();
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_notification_budget(uuid, text, integer) TO membership_platform_admin;
COMMENT ON FUNCTION membership.set_notification_budget(uuid, text, integer) IS
    'platform: budgeted deliveries per member in any 7 days for an organisation''s channel (NULL: unlimited)';

-- Every channel's budget in force for an organisation.
CREATE FUNCTION membership.notification_budgets_of(organisation uuid)
    RETURNS TABLE (channel text, per_week integer, is_default boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    RETURN QUERY
        SELECT c.channel, membership.notification_budget(organisation, c.channel),
               NOT EXISTS (SELECT FROM membership.notification_budgets b
                           WHERE b.organisation_id = organisation AND b.channel = c.channel)
        FROM unnest(membership.notification_channels()) WITH ORDINALITY AS c(channel, n)
        ORDER BY c.n;
END
$$;
GRANT EXECUTE ON FUNCTION membership.notification_budgets_of(uuid) TO membership_platform_admin;

-------------------------------------------------------------------------
-- Devices
-------------------------------------------------------------------------

-- Register the calling member's device, or take over and revive a token
-- registered before (a deactivated token, or a phone that changed hands
-- within the organisation).  Returns the device's id.
CREATE FUNCTION membership_api.register_device(platform text, token text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_member membership.members := membership.require_active_member();
    v_id bigint;
BEGIN
    IF platform IS NULL OR token IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'platform and token must not be null';
    END IF;
    IF platform NOT IN ('fcm', 'apns') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown push platform "%s"', left(platform, 100)),
            HINT = 'Platforms are fcm and apns.';
    END IF;
    IF length(token) > 4096 OR token !~ '^[A-Za-z0-9_:.-]+$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'invalid device token',
            DETAIL = 'A token is 1 to 4096 letters, digits, "_", ":", "." and "-".';
    END IF;
    INSERT INTO membership.devices AS d (organisation_id, member_id, platform, token)
    VALUES (v_caller.organisation_id, v_member.id, register_device.platform, register_device.token)
    ON CONFLICT ON CONSTRAINT devices_organisation_id_platform_token_key
    DO UPDATE SET member_id = EXCLUDED.member_id, active = true, deactivated_at = NULL,
                  deactivation_reason = NULL, registered_at = now()
    RETURNING d.id INTO v_id;
    RETURN v_id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.register_device(text, text) TO membership_member;
COMMENT ON FUNCTION membership_api.register_device(text, text) IS
    'members: register an FCM or APNs token for pushes (registering it again revives it); returns its id';

-- Stop pushes to one of the calling member's devices.  True if it was active.
CREATE FUNCTION membership_api.unregister_device(token text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'token must not be null';
    END IF;
    UPDATE membership.devices d
    SET active = false, deactivated_at = now(), deactivation_reason = 'unregistered'
    WHERE d.organisation_id = v_caller.organisation_id AND d.member_id = v_caller.member_id
      AND d.token = unregister_device.token AND d.active;
    RETURN FOUND;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.unregister_device(text) TO membership_member;
COMMENT ON FUNCTION membership_api.unregister_device(text) IS
    'members: stop pushes to one of their devices';

CREATE FUNCTION membership_api.devices()
    RETURNS TABLE (id bigint, platform text, token text, active boolean, registered_at timestamptz,
                   deactivated_at timestamptz, deactivation_reason text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN QUERY
        SELECT d.id, d.platform, d.token, d.active, d.registered_at, d.deactivated_at, d.deactivation_reason
        FROM membership.devices d
        WHERE d.organisation_id = v_caller.organisation_id AND d.member_id = v_caller.member_id
        ORDER BY d.registered_at DESC, d.id DESC;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.devices() TO membership_member;
COMMENT ON FUNCTION membership_api.devices() IS
    'members: their registered devices, newest first';

-------------------------------------------------------------------------
-- Push credentials
-------------------------------------------------------------------------

-- Does "key" look like an unencrypted PEM private key of one of "kinds"
-- ('PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY'), with a body that
-- is valid base64?
CREATE FUNCTION membership.is_pem_private_key(key text, kinds text[]) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_parts text[] := regexp_match(key,
        '^\s*-----BEGIN ([A-Z ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END ([A-Z ]+)-----\s*$');
BEGIN
    IF v_parts IS NULL OR v_parts[1] <> v_parts[3] OR NOT v_parts[1] = ANY (kinds) THEN
        RETURN false;
    END IF;
    RETURN length(decode(regexp_replace(v_parts[2], '\s', '', 'g'), 'base64')) >= 32;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- Set an organisation's push credentials.  The arguments of a platform
-- come together: FCM needs the project id, the service account's e-mail
-- and private key (token_uri defaults to Google's); APNs needs the key id,
-- team id, .p8 key and topic (the app's bundle id).  A platform whose
-- arguments are all NULL keeps what it had.  Nothing ever returns the
-- keys: the answer says only what is configured.
CREATE FUNCTION membership.set_push_credentials(organisation uuid,
        fcm_project_id text DEFAULT NULL, fcm_client_email text DEFAULT NULL,
        fcm_private_key text DEFAULT NULL, fcm_token_uri text DEFAULT NULL,
        apns_key_id text DEFAULT NULL, apns_team_id text DEFAULT NULL,
        apns_private_key text DEFAULT NULL, apns_topic text DEFAULT NULL,
        apns_sandbox boolean DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_fcm boolean := num_nonnulls(fcm_project_id, fcm_client_email, fcm_private_key, fcm_token_uri) > 0;
    v_apns boolean := num_nonnulls(apns_key_id, apns_team_id, apns_private_key, apns_topic) > 0;
    v_row membership.push_credentials;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF NOT v_fcm AND NOT v_apns AND apns_sandbox IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'no push credentials given',
            HINT = 'Pass the FCM arguments, the APNs arguments, or both.';
    END IF;
    IF v_fcm THEN
        IF num_nulls(fcm_project_id, fcm_client_email, fcm_private_key) > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
                MESSAGE = 'FCM credentials need fcm_project_id, fcm_client_email and fcm_private_key';
        END IF;
        IF fcm_project_id !~ '^[a-z][a-z0-9-]{4,61}[a-z0-9]$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid FCM project id "%s"', left(fcm_project_id, 100));
        END IF;
        IF NOT membership.is_valid_email(fcm_client_email) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid FCM client email "%s"', left(fcm_client_email, 100));
        END IF;
        IF NOT membership.is_pem_private_key(fcm_private_key, ARRAY['PRIVATE KEY', 'RSA PRIVATE KEY']) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'fcm_private_key is not a PEM private key',
                HINT = 'Pass the service account''s "private_key": "-----BEGIN PRIVATE KEY-----" ... "-----END PRIVATE KEY-----", unencrypted.';
        END IF;
        IF fcm_token_uri !~ '^https://[^\s]+$' OR length(fcm_token_uri) > 500 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'fcm_token_uri must be an https URL';
        END IF;
    END IF;
    IF v_apns THEN
        IF num_nulls(apns_key_id, apns_team_id, apns_private_key, apns_topic) > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
                MESSAGE = 'APNs credentials need apns_key_id, apns_team_id, apns_private_key and apns_topic';
        END IF;
        IF apns_key_id !~ '^[A-Z0-9]{10}$' OR apns_team_id !~ '^[A-Z0-9]{10}$' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'APNs key and team ids are 10 upper-case letters and digits';
        END IF;
        IF NOT membership.is_pem_private_key(apns_private_key, ARRAY['PRIVATE KEY', 'EC PRIVATE KEY']) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'apns_private_key is not a PEM private key',
                HINT = 'Pass the contents of the .p8 file: "-----BEGIN PRIVATE KEY-----" ... "-----END PRIVATE KEY-----".';
        END IF;
        IF apns_topic !~ '^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$' OR length(apns_topic) > 200 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('invalid APNs topic "%s"', left(apns_topic, 100)),
                HINT = 'The topic is the app''s bundle id, such as "org.example.members".';
        END IF;
    END IF;

    INSERT INTO membership.push_credentials AS c (organisation_id) VALUES (organisation)
    ON CONFLICT ON CONSTRAINT push_credentials_pkey DO NOTHING;
    UPDATE membership.push_credentials c
    SET fcm_project_id = CASE WHEN v_fcm THEN set_push_credentials.fcm_project_id ELSE c.fcm_project_id END,
        fcm_client_email = CASE WHEN v_fcm THEN set_push_credentials.fcm_client_email ELSE c.fcm_client_email END,
        fcm_private_key = CASE WHEN v_fcm THEN set_push_credentials.fcm_private_key ELSE c.fcm_private_key END,
        fcm_token_uri = CASE WHEN v_fcm THEN coalesce(set_push_credentials.fcm_token_uri,
                                                       'https://oauth2.googleapis.com/token')
                             ELSE c.fcm_token_uri END,
        apns_key_id = CASE WHEN v_apns THEN set_push_credentials.apns_key_id ELSE c.apns_key_id END,
        apns_team_id = CASE WHEN v_apns THEN set_push_credentials.apns_team_id ELSE c.apns_team_id END,
        apns_private_key = CASE WHEN v_apns THEN set_push_credentials.apns_private_key ELSE c.apns_private_key END,
        apns_topic = CASE WHEN v_apns THEN set_push_credentials.apns_topic ELSE c.apns_topic END,
        apns_sandbox = coalesce(set_push_credentials.apns_sandbox, c.apns_sandbox),
        updated_at = now()
    WHERE c.organisation_id = organisation
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('fcm', v_row.fcm_project_id IS NOT NULL, 'fcm_project_id', v_row.fcm_project_id,
                              'apns', v_row.apns_key_id IS NOT NULL, 'apns_topic', v_row.apns_topic,
                              'apns_sandbox', v_row.apns_sandbox, 'updated_at', v_row.updated_at);
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_push_credentials(uuid, text, text, text, text, text, text, text, text, boolean)
    TO membership_platform_admin;
COMMENT ON FUNCTION membership.set_push_credentials(uuid, text, text, text, text, text, text, text, text, boolean) IS
    'platform: an organisation''s FCM service account and/or APNs key; says what is configured, never returns keys';
