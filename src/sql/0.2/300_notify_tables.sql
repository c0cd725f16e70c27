-- Notifications (DESIGN.md 4.4): members' devices, each organisation's push
-- credentials and the outbox.  The budget, preferences and enqueueing live
-- in 31x_*.sql; the push worker (src/push_*.c) claims and records through
-- 34x_*.sql.

-- A member's phone: an FCM or APNs token.  A token the push service calls
-- dead (FCM UNREGISTERED, APNs 410 Unregistered, ...) is deactivated, not
-- deleted, so a later registration of the same token revives it.
CREATE TABLE membership.devices (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id     uuid NOT NULL,
    member_id           uuid NOT NULL,
    platform            text NOT NULL CHECK (platform IN ('fcm', 'apns')),
    token               text NOT NULL CHECK (token <> '' AND pg_catalog.length(token) <= 4096),
    active              boolean NOT NULL DEFAULT true,
    deactivated_at      timestamptz,
    deactivation_reason text,
    registered_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (organisation_id, platform, token),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX devices_member_idx ON membership.devices (member_id) WHERE active;
COMMENT ON TABLE membership.devices IS
    'tenant: members'' push tokens (FCM and APNs), active until the push service calls them dead';
SELECT membership.isolate_table('membership.devices');

-- Each organisation's white-label app has its own push credentials.  No
-- client role may read this table, not even through a function: only the
-- push worker (which connects as a superuser) and platform administrators
-- setting them (membership.set_push_credentials) touch it.
CREATE TABLE membership.push_credentials (
    organisation_id   uuid PRIMARY KEY REFERENCES membership.organisations (id) ON DELETE CASCADE,
    fcm_project_id    text,
    fcm_client_email  text,
    fcm_private_key   text,         -- PEM, RSA: signs the RS256 service-account JWT
    fcm_token_uri     text,         -- the service account's token_uri (OAuth2 audience)
    apns_key_id       text,
    apns_team_id      text,
    apns_private_key  text,         -- the .p8 key, PEM, P-256: signs the ES256 provider token
    apns_topic        text,         -- the app's bundle id
    apns_sandbox      boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((fcm_project_id IS NULL) = (fcm_client_email IS NULL)
       AND (fcm_project_id IS NULL) = (fcm_private_key IS NULL)),
    CHECK ((apns_key_id IS NULL) = (apns_team_id IS NULL)
       AND (apns_key_id IS NULL) = (apns_private_key IS NULL)
       AND (apns_key_id IS NULL) = (apns_topic IS NULL))
);
COMMENT ON TABLE membership.push_credentials IS
    'tenant: each organisation''s FCM service account and APNs key; read only by the push worker';
SELECT membership.isolate_table('membership.push_credentials');

-- The outbox.  Every notification ever enqueued is a row, and its status
-- says what became of it and why:
--
--   queued      due at due_at, waiting for the push worker
--   deferred    waiting: for a budget slot or the end of quiet hours (due_at
--               set), or for the organisation's approval (due_at NULL)
--   sending     claimed by a worker until lease_until; after that it is due
--               again (a crash between sending and recording re-sends)
--   sent        delivered to every active device (sent_at)
--   failed      gave up after the last attempt (last_error)
--   dropped     never sent: no consent, no slot, too late, ... (reason)
--   suppressed  never sent: the member opted out of the channel or category
--
-- A budgeted row holds a slot of the member's rolling 7-day budget at
-- slot_at from the moment it is queued or deferred to a slot, whatever
-- becomes of it later, unless it is dropped, suppressed or cancelled before
-- being sent.
--
-- The outbox has no foreign key to the members: every row is written by
-- the enqueue functions, which take the member (and its organisation) from
-- the members table after locking the row, and an audience send writes
-- thousands of rows at once, where checking a key per row cost a third of
-- the time.  A trigger on members deletes the notifications of deleted
-- members instead.
CREATE TABLE membership.notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('push', 'email', 'sms', 'in_app')),
    priority        smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    category        text NOT NULL CHECK (category <> ''),
    title           text NOT NULL,
    body            text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(data) = 'object'),
    sender          text NOT NULL CHECK (sender IN ('platform', 'organisation', 'provider')),
    provider_id     uuid REFERENCES membership.providers (id),
    idempotency_key text,
    status          text NOT NULL CHECK (status IN ('queued', 'deferred', 'sending', 'sent',
                                                    'failed', 'dropped', 'suppressed')),
    reason          text,
    budgeted        boolean NOT NULL DEFAULT false,
    slot_at         timestamptz,
    due_at          timestamptz,
    not_after       timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    sent_at         timestamptz,
    UNIQUE (organisation_id, idempotency_key),
    CHECK (NOT budgeted OR slot_at IS NOT NULL),
    CHECK (status <> 'sending' OR lease_until IS NOT NULL)
);
CREATE INDEX notifications_organisation_idx ON membership.notifications (organisation_id, created_at);
-- what the push worker claims: due rows, oldest first
CREATE INDEX notifications_due_idx ON membership.notifications (due_at)
    WHERE status IN ('queued', 'deferred', 'sending') AND due_at IS NOT NULL;
-- what the budget counts: a member's slots on a channel
CREATE INDEX notifications_budget_idx ON membership.notifications (member_id, channel, slot_at)
    WHERE budgeted;
COMMENT ON TABLE membership.notifications IS
    'tenant: the outbox: every notification enqueued, its status and why';
SELECT membership.isolate_table('membership.notifications');

CREATE FUNCTION membership.members_deleted_notifications() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    DELETE FROM membership.notifications n USING gone g WHERE n.member_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER members_deleted_notifications AFTER DELETE ON membership.members
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION membership.members_deleted_notifications();
