-- Members and their dependents.
--
-- Members are kept in the organisation's terms: its own external_id, its
-- statuses and tiers.  E-mail addresses are stored normalised and matched
-- by their SHA-256 hash (a generated column, so it can never disagree).
-- Removal is soft (removed_at): a removed member no longer verifies, and a
-- later sync may bring it back.

CREATE TABLE membership.members (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES membership.organisations (id),
    external_id     text NOT NULL
                    CHECK (external_id <> '' AND length(external_id) <= 200),
    email           text CHECK (membership.is_valid_email(email)
                                AND email = membership.normalize_email(email)),
    email_hash      bytea GENERATED ALWAYS AS (membership.email_hash(email)) STORED,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'inactive', 'suspended', 'lapsed')),
    membership_tier text NOT NULL DEFAULT 'full'
                    CHECK (membership_tier ~ '^[a-z][a-z0-9_]{0,31}$' AND membership_tier <> 'dependent'),
    profession      text CHECK (length(profession) BETWEEN 1 AND 200),
    member_since    date NOT NULL DEFAULT CURRENT_DATE,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    removed_at      timestamptz,
    UNIQUE (organisation_id, external_id),
    UNIQUE (id, organisation_id)
);
-- One current member per address and organisation.
CREATE UNIQUE INDEX members_email_idx ON membership.members (organisation_id, email_hash)
    WHERE removed_at IS NULL;
COMMENT ON TABLE membership.members IS
    'tenant: members as each organisation syncs them';
SELECT membership.isolate_table('membership.members');

CREATE TABLE membership.dependents (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    email           text NOT NULL CHECK (membership.is_valid_email(email)
                                         AND email = membership.normalize_email(email)),
    email_hash      bytea GENERATED ALWAYS AS (membership.email_hash(email)) STORED,
    name            text CHECK (length(name) BETWEEN 1 AND 200),
    relationship    text NOT NULL DEFAULT 'other'
                    CHECK (relationship IN ('spouse', 'partner', 'child', 'parent', 'other')),
    source          text NOT NULL CHECK (source IN ('sync', 'member')),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    removed_at      timestamptz,
    -- a dependent always belongs to a member of its own organisation
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
-- A member lists a person once; the same person may be the dependent of
-- several members (a child of two members, say).
CREATE UNIQUE INDEX dependents_email_idx ON membership.dependents (organisation_id, member_id, email_hash)
    WHERE removed_at IS NULL;
CREATE INDEX dependents_member_idx ON membership.dependents (member_id);
COMMENT ON TABLE membership.dependents IS
    'tenant: people who verify through a member (tier "dependent") while that member is active';
SELECT membership.isolate_table('membership.dependents');

-- The member's id from the organisation's own id, NULL when there is none.
-- Removed members are found too: they still exist in the records.
CREATE FUNCTION membership.find_member(organisation uuid, external_id text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF external_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'external_id must not be null';
    END IF;
    SELECT m.id INTO v_id FROM membership.members m
    WHERE m.organisation_id = organisation AND m.external_id = find_member.external_id;
    RETURN v_id;
END
$$;
GRANT EXECUTE ON FUNCTION membership.find_member(uuid, text) TO membership_platform_admin;
