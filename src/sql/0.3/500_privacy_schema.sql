-- Privacy and data ownership (DESIGN.md 4.6): what offboarding, purging,
-- erasure and export need in the schema.
--
--   organisations.offboarded_at   set by offboard_organisation(); the
--                                 organisation is out of every API and job
--                                 and purge_offboarded() deletes it later
--   members.status 'erased'       the pseudonym an erased member's kept
--                                 records (ledger, consent proof) move to
--   membership.personal_data      for every tenant table: which rows are a
--                                 member's, and what erasure does with them
--   membership.purged_organisations
--                                 the one record a purge leaves

ALTER TABLE membership.organisations ADD COLUMN offboarded_at timestamptz;
COMMENT ON COLUMN membership.organisations.offboarded_at IS
    'when the organisation was offboarded; its data is purged membership.offboard_retention later';

ALTER TABLE membership.members DROP CONSTRAINT members_status_check;
ALTER TABLE membership.members ADD CONSTRAINT members_status_check
    CHECK (status IN ('active', 'inactive', 'suspended', 'lapsed', 'erased'));
-- A pseudonym holds nothing personal and is never current.
ALTER TABLE membership.members ADD CONSTRAINT members_erased_check
    CHECK (status <> 'erased' OR (email IS NULL AND profession IS NULL AND removed_at IS NOT NULL
                                  AND external_id = 'erased:' || id::text));

-- The inventory of personal data, one row per tenant table.  Erasure,
-- export and the coverage test (test/pgtap/privacy_coverage.sql) all read
-- it, so a table holding member data cannot be added without saying here
-- how erasure treats it.
--
--   member_rows  an SQL condition on the table's rows selecting those of a
--                member: $1 is the member's id, $2 the SHA-256 hashes of
--                what identifies them to providers (e-mail address and
--                external id), $3 those of their dependents' addresses, $4
--                their organisation; NULL when the table holds no member's
--                data.  Each is answered from an index.
--   on_erase     delete        the rows are deleted
--                anonymise     member_id is cleared, the rest kept
--                pseudonymise  kept, moved to the erased member's pseudonym
--                              with every reference to the person cleared
--                              (erase_member does this table by table)
--                none          organisation data only
--   erase_order  order of the deletes (children before their parents)
CREATE TABLE membership.personal_data (
    table_name  name PRIMARY KEY,
    member_rows text,
    on_erase    text NOT NULL CHECK (on_erase IN ('delete', 'anonymise', 'pseudonymise', 'none')),
    erase_order integer NOT NULL DEFAULT 0,
    why         text NOT NULL CHECK (pg_catalog.btrim(why) <> ''),
    CHECK ((member_rows IS NULL) = (on_erase = 'none'))
);
COMMENT ON TABLE membership.personal_data IS
    'platform: every tenant table, which of its rows are a member''s and what erasure does with them';
SELECT membership.isolate_table('membership.personal_data', NULL);
-- Written by the install script, like membership.jobs: not dumped.
SELECT pg_catalog.pg_extension_config_dump('membership.personal_data', 'WHERE false');

INSERT INTO membership.personal_data (table_name, member_rows, on_erase, erase_order, why) VALUES
    ('organisations', NULL, 'none', 0, 'the organisation itself: name, slug, white-label settings'),
    ('api_keys', NULL, 'none', 0, 'hashed keys of the organisation and its providers'),
    ('usage_minutes', NULL, 'none', 0, 'verification counts per key and minute'),
    ('usage_months', NULL, 'none', 0, 'verification counts per key and month'),
    ('abuse_alerts', NULL, 'none', 0, 'attack episodes per key: counts and shares'),
    ('loyalty_programs', NULL, 'none', 0, 'program settings'),
    ('loyalty_tiers', NULL, 'none', 0, 'tier table'),
    ('loyalty_earn_rules', NULL, 'none', 0, 'earn rules'),
    ('loyalty_options', NULL, 'none', 0, 'redemption options'),
    ('loyalty_partners', NULL, 'none', 0, 'partner rates'),
    ('push_credentials', NULL, 'none', 0, 'the organisation''s FCM and APNs credentials'),
    ('notification_budgets', NULL, 'none', 0, 'budget settings'),
    ('notification_batches', NULL, 'none', 0, 'audience sends: filters (tier, profession, category), never members'),
    ('benefit_offers', NULL, 'none', 0, 'the benefits the organisation offers'),
    ('articles', NULL, 'none', 0, 'articles the organisation writes'),
    ('members', 'id = $1', 'delete', 100,
     'the member: e-mail address, external id, profession, status'),
    ('dependents', 'member_id = $1 OR (organisation_id = $4 AND email_hash = ANY ($2))', 'delete', 10,
     'the member''s dependents, and the member wherever someone lists them as a dependent'),
    ('consents', 'member_id = $1', 'delete', 10, 'the member''s current consents'),
    ('consent_events', 'member_id = $1', 'pseudonymise', 0,
     'kept under the pseudonym as the minimal proof of what was consented to, and when'),
    ('verification_audit', 'organisation_id = $4 AND (subject_hash = ANY ($2) OR subject_hash = ANY ($3))', 'delete', 10,
     'verification calls about the member or their dependents (hashes of what was looked up)'),
    ('loyalty_accounts', 'member_id = $1', 'pseudonymise', 0,
     'kept under the pseudonym: the points still owed are the organisation''s liability'),
    ('loyalty_ledger', 'member_id = $1', 'pseudonymise', 0,
     'kept under the pseudonym, order and partner references and details cleared: amounts stay for accounting'),
    ('loyalty_buckets', 'ledger_id IN (SELECT l.id FROM membership.loyalty_ledger l WHERE l.member_id = $1)',
     'pseudonymise', 0, 'follow the ledger: what remains of each earn'),
    ('loyalty_allocations', 'ledger_id IN (SELECT l.id FROM membership.loyalty_ledger l WHERE l.member_id = $1)',
     'pseudonymise', 0, 'follow the ledger: which buckets each redemption used'),
    ('loyalty_rewards', 'member_id = $1', 'pseudonymise', 0,
     'kept under the pseudonym: an issued reward code is value the organisation still owes its bearer'),
    ('loyalty_notices', 'member_id = $1', 'delete', 10, 'messages about the member''s points and tier'),
    ('devices', 'member_id = $1', 'delete', 20, 'push tokens of the member''s devices'),
    ('notifications', 'member_id = $1', 'delete', 20, 'everything sent or queued to the member'),
    ('push_deliveries',
     'notification_id IN (SELECT n.id FROM membership.notifications n WHERE n.member_id = $1)'
     ' OR device_id IN (SELECT d.id FROM membership.devices d WHERE d.member_id = $1)',
     'delete', 10, 'per-device delivery records of the member''s notifications'),
    ('notification_preferences', 'member_id = $1', 'delete', 10, 'opt-outs, muted categories, quiet hours'),
    ('benefit_usage', 'organisation_id = $4 AND member_id = $1', 'anonymise', 10,
     'uses of benefits: kept as anonymous counts for the organisation''s reports'),
    ('category_preferences', 'member_id = $1', 'delete', 10, 'bookmarked and hidden categories'),
    ('feeds', 'organisation_id = $4 AND member_id = $1', 'delete', 10, 'the member''s personal benefit feed');

-- Erasure and export find a member's rows through these: every
-- notification of a member (the outbox's other indexes hold only budgeted
-- or sent ones; a hash index costs an audience send a few per cent, a
-- b-tree more than half again), every device (the index it replaces held
-- only active ones), and the audited calls about an address or id.
CREATE INDEX notifications_member_idx ON membership.notifications USING hash (member_id);
DROP INDEX membership.devices_member_idx;
CREATE INDEX devices_member_idx ON membership.devices (member_id);
CREATE INDEX verification_audit_subject_idx ON membership.verification_audit (organisation_id, subject_hash);

-- The one record a purge leaves of an organisation: who it was (an
-- organisation, not a person), when it left and how much was deleted.
CREATE TABLE membership.purged_organisations (
    id            uuid PRIMARY KEY,
    slug          text NOT NULL,
    name          text NOT NULL,
    created_at    timestamptz NOT NULL,
    offboarded_at timestamptz NOT NULL,
    purged_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rows_deleted  jsonb NOT NULL
);
COMMENT ON TABLE membership.purged_organisations IS
    'platform: one record per purged organisation (no personal data): when it left and how many rows went';
SELECT membership.isolate_table('membership.purged_organisations', NULL);

-- The organisations offboarded and not yet purged, past row-level security
-- (see membership.all_organisations(), which leaves them out).
CREATE FUNCTION membership.offboarded_organisations() RETURNS SETOF uuid
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_offboarded_organisations';
COMMENT ON FUNCTION membership.offboarded_organisations() IS
    'every offboarded organisation id, past row-level security, for the purge (owner role only)';

-- The hashes a provider identifies a member by: of the e-mail address and
-- of the external id (verify_member's user_id), as the audit stores them.
CREATE FUNCTION membership.subject_hashes(email text, external_id text) RETURNS bytea[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT array_remove(ARRAY[membership.email_hash(email),
                              sha256(convert_to(external_id, 'UTF8'))], NULL)
$$;
