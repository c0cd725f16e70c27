-- Privacy and data ownership: erasure, export, offboarding, the purge,
-- notification retention and consent enforced on the usage table.
--
-- Which tables hold some text, searched in every row of every table of the
-- extension (this session is a superuser: row-level security does not hide
-- anything from it), optionally only in the rows of one organisation.
CREATE FUNCTION pg_temp.holders(needle text, org uuid DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v_rel record;
    v_n bigint;
    v_found text[] := '{}';
BEGIN
    FOR v_rel IN
        SELECT c.relname,
               CASE WHEN c.relname = 'organisations' THEN 'id'
                    WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                                 AND a.attname = 'organisation_id' AND NOT a.attisdropped)
                        THEN 'organisation_id' END AS org_column
        FROM pg_class c
        WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
          AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM membership.%I t WHERE strpos(to_jsonb(t)::text, $1) > 0 %s',
                       v_rel.relname,
                       CASE WHEN org IS NOT NULL AND v_rel.org_column IS NOT NULL
                            THEN format('AND t.%I = $2', v_rel.org_column) ELSE '' END)
            INTO v_n USING needle, org;
        IF v_n > 0 THEN
            v_found := v_found || format('%s (%s)', v_rel.relname, v_n);
        END IF;
    END LOOP;
    RETURN coalesce(nullif(array_to_string(v_found, ', '), ''), 'nowhere');
END
$$;

-- Rows per table, as "table n, ..." (or "none"), counted with the
-- conditions a query returns as (table_name, condition), each over the
-- parameters erasure passes: $1 member, $2 and $3 hashes, $4 organisation.
CREATE FUNCTION pg_temp.row_counts(checks text, member uuid, hashes bytea[], org uuid) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v_check record;
    v_n bigint;
    v_found text[] := '{}';
BEGIN
    FOR v_check IN EXECUTE checks LOOP
        EXECUTE format('SELECT count(*) FROM membership.%I WHERE %s', v_check.table_name, v_check.condition)
            INTO v_n USING member, hashes, hashes, org;
        IF v_n > 0 THEN
            v_found := v_found || format('%s %s', v_check.table_name, v_n);
        END IF;
    END LOOP;
    RETURN coalesce(nullif(array_to_string(v_found, ', '), ''), 'none');
END
$$;
-- an organisation's rows in every tenant table
CREATE FUNCTION pg_temp.org_rows(org uuid) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.row_counts($q$SELECT table_name, format('%I = $4', tenant_column) AS condition
                                 FROM membership.tenant_tables_in_delete_order() ORDER BY 1$q$, NULL, NULL, org)
$$;
-- a member's rows, by membership.personal_data's conditions
CREATE FUNCTION pg_temp.member_rows(member uuid, hashes bytea[], org uuid) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.row_counts($q$SELECT table_name, member_rows AS condition FROM membership.personal_data
                                 WHERE member_rows IS NOT NULL ORDER BY 1$q$, member, hashes, org)
$$;

-------------------------------------------------------------------------
-- A member with data in every table that can hold a member's data.
-------------------------------------------------------------------------
SELECT fixture.new_org('pv-a') IS NOT NULL, fixture.new_org('pv-b') IS NOT NULL;
SELECT membership_api.sync_members($$[
    {"external_id": "pv-alice", "email": "alice@pv-a.example", "profession": "Dentist",
     "dependents": [{"email": "bob.dep@pv-a.example", "name": "Bob Dependent"}]},
    {"external_id": "pv-carol", "email": "carol@pv-a.example",
     "dependents": [{"email": "alice@pv-a.example"}, {"email": "kid@pv-a.example"}]}]$$,
    'delta', fixture.key('pv-a:org')) ->> 'inserted' AS inserted;
-- organisation B has a member with the same address: nothing of it may go
SELECT membership_api.sync_members('[{"external_id": "pv-alice", "email": "alice@pv-a.example"}]',
                                   'delta', fixture.key('pv-b:org')) ->> 'inserted' AS inserted_b;
SELECT membership.find_member(fixture.org('pv-a'), 'pv-alice') AS alice,
       membership.find_member(fixture.org('pv-a'), 'pv-carol') AS carol,
       fixture.claims('member', 'pv-a', 'pv-alice') AS alice_claims \gset

SELECT count(*) AS category FROM (SELECT membership.set_benefit_category('pv_travel', 'Travel')) AS c;
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'alice_claims', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL,
       membership_api.set_consent('personalisation', true) IS NOT NULL,
       membership_api.set_consent('marketing', true) IS NOT NULL;
SELECT membership_api.register_device('apns', 'alice-device-token-0001') > 0 AS device;
SELECT membership_api.set_notification_preferences(muted_categories => ARRAY['news']) IS NOT NULL AS preferences;
SELECT membership_api.set_category_preference('pv_travel', 'bookmarked') IS NOT NULL AS bookmarked;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

SELECT membership.create_benefit('pv-a-bank', 'pv_travel', 'Lounge', 0.5) AS lounge \gset
SELECT count(*) AS offered FROM (SELECT membership.offer_benefit(fixture.org('pv-a'), :lounge)) AS o;
SELECT membership_api.record_benefit_usage(:lounge, 'alice@pv-a.example', reference => 'pv-use-1',
                                           api_key => fixture.key('pv-a:provider')) ->> 'recorded' AS used;
SELECT membership.refresh_feed(:'alice') > 0 AS feed;
SELECT membership.earn_points(fixture.org('pv-a'), :'alice', 12000, 'order', 'pv-order-1') AS earned,
       membership.earn_points(fixture.org('pv-a'), :'alice', 5000, 'order', 'pv-order-2') AS earned_too;
SELECT membership.add_redemption_option(fixture.org('pv-a'), 'free_item', 'Free coffee', 30, 350) AS coffee \gset
SELECT (membership.redeem_points(fixture.org('pv-a'), :'alice', 30, 'pv-request-1', option_id => :'coffee'))
       ->> 'reward_code' AS reward_code \gset
SELECT membership.loyalty_notice(fixture.org('pv-a'), :'alice', 'tier_upgrade', 'Welcome to silver, Alice',
                                 'Well done', '{"subject": "silver"}') AS noticed;
SELECT (membership.enqueue_notification(fixture.org('pv-a'), :'alice', 'push', 2, 'offers',
                                        'Hello Alice', 'A message for alice@pv-a.example')).status;
-- a delivery record, and audited verification calls about Alice and her dependent
INSERT INTO membership.push_deliveries (organisation_id, notification_id, device_id, status)
SELECT n.organisation_id, n.id, d.id, 'retry'
FROM membership.notifications n JOIN membership.devices d ON d.member_id = n.member_id
WHERE n.member_id = :'alice';
INSERT INTO membership.verification_audit (organisation_id, api_key_id, at, lookup, subject_hash, verified)
SELECT k.organisation_id, k.id, now(), h.lookup, h.hash, true
FROM membership.api_keys k,
     (VALUES ('email', membership.email_hash('alice@pv-a.example')),
             ('user_id', sha256('pv-alice'::bytea)),
             ('email', membership.email_hash('bob.dep@pv-a.example'))) AS h(lookup, hash)
WHERE k.organisation_id IN (fixture.org('pv-a'), fixture.org('pv-b')) AND k.provider_id IS NOT NULL;

-- Every table membership.personal_data says can hold a member's rows holds some of Alice's.
SELECT p.table_name
FROM membership.personal_data p
WHERE p.member_rows IS NOT NULL
  AND NOT (membership.member_data(:'alice') -> 'data' -> p.table_name) @> '[{}]'
ORDER BY 1;

-------------------------------------------------------------------------
-- Export: everything held about the calling member, as one document.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'alice_claims', false) IS NOT NULL;
SELECT membership_api.export_my_data() AS export \gset
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
SELECT (:'export'::jsonb) ->> 'member_id' = :'alice' AS about_alice,
       (:'export'::jsonb) -> 'organisation' ->> 'slug' AS organisation,
       (:'export'::jsonb) -> 'consents' AS consents;
-- one section per table, with how many rows each holds
SELECT key AS section, jsonb_array_length(value) AS rows
FROM jsonb_each((:'export'::jsonb) -> 'data') ORDER BY 1;
-- it carries what identifies her, her dependent, device, orders and reward
SELECT strpos(:'export', n.needle) > 0 AS present, n.what
FROM (VALUES ('alice@pv-a.example', 'address'), ('pv-alice', 'external id'), ('Dentist', 'profession'),
             ('bob.dep@pv-a.example', 'dependent'), ('alice-device-token-0001', 'device token'),
             ('pv-order-1', 'order reference'), ('pv-request-1', 'redemption request'),
             (:'reward_code', 'reward code'), ('Welcome to silver, Alice', 'loyalty notice'),
             ('pv-use-1', 'benefit use')) AS n(needle, what);
-- and nothing of carol's or of organisation B's (B's keys' audit rows are B's)
SELECT strpos(:'export', 'carol@pv-a.example') = 0 AS no_carol,
       (:'export'::jsonb) -> 'data' -> 'verification_audit' @> '[{}]'
       AND NOT EXISTS (SELECT FROM jsonb_array_elements((:'export'::jsonb) -> 'data' -> 'verification_audit') a
                       WHERE a ->> 'organisation_id' <> fixture.org('pv-a')::text) AS audit_of_a_only;
-- members only; keys are refused
SELECT fixture.try($$SELECT membership_api.export_my_data()$$);
SELECT set_config('request.headers', json_build_object('x-api-key', fixture.key('pv-a:org'))::text, false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.export_my_data()$$);
SELECT set_config('request.headers', '', false) IS NOT NULL;

-------------------------------------------------------------------------
-- Erasure.
-------------------------------------------------------------------------
SELECT balance AS balance_before FROM membership.loyalty_accounts WHERE member_id = :'alice' \gset
SELECT count(*) AS consent_events_before FROM membership.consent_events WHERE member_id = :'alice' \gset
-- bad input changes nothing
SELECT fixture.try($$SELECT membership.erase_member(fixture.org('pv-a'), NULL)$$);
SELECT fixture.try($$SELECT membership.erase_member(NULL, gen_random_uuid())$$);
SELECT fixture.try($$SELECT membership.erase_member(gen_random_uuid(), gen_random_uuid())$$);
SELECT fixture.try(format('SELECT membership.erase_member(%L, %L)', fixture.org('pv-b'), :'alice'));
SELECT fixture.try($$SELECT membership_api.erase_member('nobody', fixture.key('pv-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.erase_member(NULL, fixture.key('pv-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.erase_member('pv-alice', fixture.key('pv-b:provider'))$$);
SELECT pg_temp.holders('alice@pv-a.example', fixture.org('pv-a')) AS alice_still_held;

-- the organisation erases Alice by its own id
SELECT membership_api.erase_member('pv-alice', fixture.key('pv-a:org')) - 'at' AS erased;

-- Nothing that identifies her is anywhere in organisation A, in any table
SELECT n.what, pg_temp.holders(n.needle, fixture.org('pv-a')) AS held_in
FROM (VALUES ('alice@pv-a.example', 'address'), ('pv-alice', 'external id'), ('Dentist', 'profession'),
             ('bob.dep@pv-a.example', 'dependent''s address'), ('Bob Dependent', 'dependent''s name'),
             ('alice-device-token-0001', 'device token'), ('pv-order-1', 'order reference'),
             ('pv-order-2', 'other order reference'), ('pv-request-1', 'redemption request'),
             ('Welcome to silver, Alice', 'loyalty notice'), ('Hello Alice', 'notification'),
             (:'alice', 'member id'),
             (encode(membership.email_hash('alice@pv-a.example'), 'hex'), 'hash of the address'),
             (encode(sha256('pv-alice'::bytea), 'hex'), 'hash of the external id'),
             (encode(membership.email_hash('bob.dep@pv-a.example'), 'hex'), 'hash of the dependent''s address'))
     AS n(needle, what);
-- no table has a row of hers any more, by the inventory's own conditions
SELECT pg_temp.member_rows(:'alice', membership.subject_hashes('alice@pv-a.example', 'pv-alice'), fixture.org('pv-a'))
       AS rows_of_alice;
-- organisation B's member with the same address is untouched
SELECT pg_temp.holders('alice@pv-a.example', fixture.org('pv-b')) AS held_in_b;
SELECT membership_api.verify_member('alice@pv-a.example', NULL, fixture.key('pv-b:provider')) ->> 'verified' AS b_verifies;
-- A no longer verifies her, by address or by id
SELECT membership_api.verify_member('alice@pv-a.example', NULL, fixture.key('pv-a:provider')) AS a_by_email,
       membership_api.verify_member(NULL, 'pv-alice', fixture.key('pv-a:provider')) AS a_by_id;
-- Carol keeps her other dependent; only the listing of Alice went
SELECT d.email FROM membership.dependents d WHERE d.member_id = :'carol' ORDER BY 1;

-- What is kept moved to a pseudonym: an erased member row with nothing personal
SELECT m.status, m.email IS NULL AS no_email, m.profession IS NULL AS no_profession,
       m.external_id = 'erased:' || m.id AS pseudonymous_id, m.removed_at IS NOT NULL AS removed
FROM membership.members m WHERE m.organisation_id = fixture.org('pv-a') AND m.status = 'erased';
SELECT m.id AS pseudonym FROM membership.members m
WHERE m.organisation_id = fixture.org('pv-a') AND m.status = 'erased' \gset
-- the points: same balance, same entries and amounts, references cleared
SELECT a.balance = :balance_before AS same_balance FROM membership.loyalty_accounts a WHERE a.member_id = :'pseudonym';
SELECT l.kind, l.points, l.amount_cents, l.balance_after, l.idempotency_key = 'erased:' || l.id AS key_cleared,
       l.source_ref, l.details
FROM membership.loyalty_ledger l WHERE l.member_id = :'pseudonym' ORDER BY l.id;
SELECT count(*) AS buckets, sum(remaining) AS remaining FROM membership.loyalty_buckets WHERE member_id = :'pseudonym';
SELECT r.code = :'reward_code' AS reward_still_redeemable FROM membership.loyalty_rewards r WHERE r.member_id = :'pseudonym';
SELECT count(*) AS invariant_breaks FROM membership.reconcile_ledger();
-- the minimal proof of consent: the decisions, under the pseudonym
SELECT count(*) = :consent_events_before AS consent_history_kept, bool_and(granted) AS all_grants
FROM membership.consent_events WHERE member_id = :'pseudonym';
SELECT count(*) AS current_consents FROM membership.consents WHERE member_id = :'pseudonym';
-- the use of the benefit is kept, anonymous
SELECT u.member_id IS NULL AS anonymous, u.reference FROM membership.benefit_usage u
WHERE u.organisation_id = fixture.org('pv-a');
-- erasing again: she is gone; her old session is refused
SELECT fixture.try(format('SELECT membership.erase_member(%L, %L)', fixture.org('pv-a'), :'alice'));
SELECT fixture.try(format('SELECT membership.erase_member(%L, %L)', fixture.org('pv-a'), :'pseudonym'));
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'alice_claims', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.export_my_data()$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- The ledger stays append-only: only erasure's unlinking passes
SELECT fixture.try(format('UPDATE membership.loyalty_ledger SET points = points + 1 WHERE member_id = %L', :'pseudonym'));
SELECT fixture.try(format('UPDATE membership.loyalty_ledger SET member_id = %L WHERE member_id = %L', :'carol', :'pseudonym'));
SELECT fixture.try(format('UPDATE membership.loyalty_ledger SET source_ref = ''x'' WHERE member_id = %L', :'pseudonym'));
SELECT fixture.try(format('DELETE FROM membership.loyalty_ledger WHERE member_id = %L', :'pseudonym'));
SELECT fixture.try('TRUNCATE membership.loyalty_ledger CASCADE');

-------------------------------------------------------------------------
-- Offboarding.
-------------------------------------------------------------------------
SELECT fixture.new_org('pv-c') IS NOT NULL;
SELECT membership_api.sync_members($$[
    {"external_id": "pv-c1", "email": "c1@pv-c.example", "dependents": [{"email": "c1-kid@pv-c.example"}]},
    {"external_id": "pv-c2", "email": "c2@pv-c.example"}]$$, 'delta', fixture.key('pv-c:org')) ->> 'inserted' AS inserted;
SELECT membership.find_member(fixture.org('pv-c'), 'pv-c1') AS c1, fixture.claims('member', 'pv-c', 'pv-c1') AS c1_claims,
       fixture.claims('org_admin', 'pv-c') AS c_admin \gset
SELECT membership.earn_points(fixture.org('pv-c'), :'c1', 10000, 'order', 'c-order') AS earned;
SELECT (membership.enqueue_notification(fixture.org('pv-c'), :'c1', 'push', 2, 'offers', 'Hi', 'Queued')).status;
SELECT membership.create_benefit('pv-c-bank', 'pv_travel', 'Train', 0.4) AS train \gset
SELECT count(*) AS offered FROM (SELECT membership.offer_benefit(fixture.org('pv-c'), :train)) AS o;
SELECT membership.refresh_feed(:'c1') > 0 AS feed;
SELECT membership_api.verify_member('c1@pv-c.example', NULL, fixture.key('pv-c:provider')) ->> 'verified' AS verified_before,
       membership_api.verify_member('c1-kid@pv-c.example', NULL, fixture.key('pv-c:provider')) ->> 'tier' AS dependent_before;

SELECT fixture.try('SELECT membership.offboard_organisation(NULL)');
SELECT fixture.try('SELECT membership.offboard_organisation(gen_random_uuid())');
SELECT membership.offboard_organisation(fixture.org('pv-c')) - 'organisation' - 'offboarded_at' - 'purge_after' AS offboarded;
-- a second call changes nothing and says so
SELECT (membership.offboard_organisation(fixture.org('pv-c'))) ->> 'already_offboarded' AS again;

-- at once: every member and dependent answers false to the providers' keys
SELECT membership_api.verify_member('c1@pv-c.example', NULL, fixture.key('pv-c:provider')) AS c1,
       membership_api.verify_member('c1-kid@pv-c.example', NULL, fixture.key('pv-c:provider')) AS kid,
       membership_api.verify_member(NULL, 'pv-c2', fixture.key('pv-c:provider')) AS c2;
-- the organisation's key, its administrators and its members are refused
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('pv-c:org'))$$);
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c1_claims', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.export_my_data()$$);
RESET ROLE;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'c_admin', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.erase_member('pv-c2')$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
-- platform functions refuse it; no job acts for it; nothing is queued for it
SELECT fixture.try(format($$SELECT membership.enqueue_notification(%L, %L, 'push', 1, 'news', 'x', 'y')$$,
                          fixture.org('pv-c'), :'c1'));
SELECT fixture.try(format($$SELECT membership.issue_api_key(%L, NULL, 'free')$$, fixture.org('pv-c')));
-- its usage report stays available for the last invoices
INSERT INTO membership.usage_months (organisation_id, api_key_id, provider_id, month, allowed, refused,
                                     verified_true, verified_false)
SELECT k.organisation_id, k.id, k.provider_id, '2026-10-01', 40, 2, 30, 10
FROM membership.api_keys k WHERE k.organisation_id = fixture.org('pv-c') AND k.provider_id IS NOT NULL;
SELECT * FROM membership.usage_report(fixture.org('pv-c'), '2026-10-01', '2026-11-01');
SELECT fixture.org('pv-c') IN (SELECT membership.all_organisations()) AS in_jobs,
       fixture.org('pv-c') IN (SELECT membership.offboarded_organisations()) AS awaiting_purge;
SELECT status, reason FROM membership.notifications WHERE organisation_id = fixture.org('pv-c');
SELECT count(*) AS feeds FROM membership.feeds WHERE organisation_id = fixture.org('pv-c');
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS live_keys FROM membership.api_keys
WHERE organisation_id = fixture.org('pv-c');
-- a member of an offboarded organisation can still be erased before the purge
SELECT (membership.erase_member(fixture.org('pv-c'), m.id)) ->> 'erased' AS erased
FROM membership.members m WHERE m.organisation_id = fixture.org('pv-c') AND m.external_id = 'pv-c2';

-------------------------------------------------------------------------
-- The purge.
-------------------------------------------------------------------------
SELECT fixture.try('SELECT membership.purge_offboarded(NULL)');
SELECT fixture.try($$SELECT membership.purge_offboarded('infinity')$$);
-- within the retention period nothing goes
SELECT membership.purge_offboarded() AS purged_now;
SELECT pg_temp.org_rows(fixture.org('pv-c')) AS rows_kept;
-- the retention period is a setting
SET membership.offboard_retention = '40d';
SELECT membership.purge_offboarded(now() + interval '31 days') AS purged_after_31_days;
RESET membership.offboard_retention;
SELECT fixture.org('pv-c') AS org_c \gset
SELECT membership.purge_offboarded(now() + interval '31 days') AS purged_after_31_days;
-- every row of the organisation is gone, in every tenant table
SELECT pg_temp.org_rows(:'org_c') AS rows_left;
SELECT n.what, pg_temp.holders(n.needle) AS held_in
FROM (VALUES ('c1@pv-c.example', 'address'), ('c1-kid@pv-c.example', 'dependent''s address'),
             ('pv-c1', 'external id'), ('c-order', 'order reference'), (:'org_c', 'organisation id'))
     AS n(needle, what);
-- one record is left, with nothing personal in it
SELECT slug, name, purged_at > offboarded_at AS purged_later, rows_deleted
FROM membership.purged_organisations WHERE id = :'org_c';
-- its provider's key is gone with it
SELECT fixture.try($$SELECT membership_api.verify_member('c1@pv-c.example', NULL, fixture.key('pv-c:provider'))$$);
-- the other organisations are untouched
SELECT pg_temp.org_rows(fixture.org('pv-b')) AS rows_of_b;
SELECT membership.purge_offboarded(now() + interval '31 days') AS purged_again;

-------------------------------------------------------------------------
-- Retention of notification history.
-------------------------------------------------------------------------
SELECT membership_api.sync_members('[{"external_id": "pv-dan"}]', 'delta', fixture.key('pv-b:org')) ->> 'inserted' AS dan;
SELECT membership.find_member(fixture.org('pv-b'), 'pv-dan') AS dan \gset
SELECT (membership.enqueue_notification(fixture.org('pv-b'), :'dan', 'in_app', 1, 'news', 'Old', 'old')).status,
       (membership.enqueue_notification(fixture.org('pv-b'), :'dan', 'in_app', 2, 'news', 'Budgeted', 'budgeted')).status,
       (membership.enqueue_notification(fixture.org('pv-b'), :'dan', 'push', 2, 'news', 'Waiting', 'waiting')).status;
SELECT membership.deliver_in_app() AS delivered;
-- 100 days later, with the default 90 days: the delivered in-app messages go,
-- the queued push stays (not over yet)
SELECT membership.expire_notifications(now() + interval '100 days') >= 2 AS expired_some;
SELECT title, status FROM membership.notifications WHERE member_id = :'dan' ORDER BY id;
-- a row still holding a slot of the rolling 7-day budget stays whatever the setting
SELECT (membership.enqueue_notification(fixture.org('pv-b'), :'dan', 'in_app', 2, 'news', 'Recent', 'recent')).status;
SELECT membership.deliver_in_app() AS delivered;
SET membership.notification_retention = '1h';
SELECT membership.expire_notifications(now() + interval '2 hours') IS NOT NULL AS ran;
RESET membership.notification_retention;
SELECT title, status, budgeted FROM membership.notifications WHERE member_id = :'dan' ORDER BY id;
SELECT fixture.try('SELECT membership.expire_notifications(NULL)');
SELECT fixture.try($$SET membership.notification_retention = '10s'$$);
SELECT name FROM membership.jobs WHERE name IN ('purge_offboarded', 'expire_notifications') ORDER BY 1;

-------------------------------------------------------------------------
-- Consent is enforced on the usage table itself.
-------------------------------------------------------------------------
-- Dan has not allowed usage tracking: a use written straight into the
-- table with his id is kept anonymous; once he allows it, it is his.
INSERT INTO membership.benefit_usage (organisation_id, benefit_id, member_id, provider_id, reference, used_at)
SELECT fixture.org('pv-b'), :lounge, :'dan', p.id, 'pv-direct-1', now() FROM membership.providers p WHERE p.slug = 'pv-a-bank';
SELECT fixture.claims('member', 'pv-b', 'pv-dan') AS dan_claims \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'dan_claims', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', true) ->> 'usage_tracking' AS tracking;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
INSERT INTO membership.benefit_usage (organisation_id, benefit_id, member_id, provider_id, reference, used_at)
SELECT fixture.org('pv-b'), :lounge, :'dan', p.id, 'pv-direct-2', now() FROM membership.providers p WHERE p.slug = 'pv-a-bank';
SELECT reference, member_id = :'dan' AS his FROM membership.benefit_usage
WHERE reference LIKE 'pv-direct-%' ORDER BY 1;
-- Marketing pushes need the marketing consent (each enqueue path goes
-- through plan_notifications); personalisation is covered by sql/scoring.sql.
SELECT (membership.enqueue_notification(fixture.org('pv-b'), :'dan', 'push', 3, 'offers', 'Sale', 'sale')).reason
       AS without_marketing_consent;
