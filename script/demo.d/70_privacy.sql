-- Privacy: a member exports everything held about them, the organisation
-- erases them, and an organisation leaves the platform and is purged.
\echo
\echo '== Privacy: export, erasure, offboarding and the purge =='

-- How many rows of each table of the extension (of one organisation, where
-- the table has one) hold one of some values as a whole column or JSON
-- value.  The demo runs as a superuser, which row-level security does not
-- restrict.
CREATE FUNCTION pg_temp.rows_holding(needles text[], org uuid)
    RETURNS TABLE (table_name name, n bigint) LANGUAGE plpgsql AS $$
BEGIN
    FOR table_name IN SELECT c.relname FROM pg_class c
                      WHERE c.relnamespace = 'membership'::regnamespace AND c.relkind = 'r' ORDER BY 1 LOOP
        EXECUTE format('SELECT count(*) FROM membership.%I t
                        WHERE coalesce(to_jsonb(t) ->> %L, $2::text) = $2::text
                          AND EXISTS (SELECT FROM jsonb_path_query(to_jsonb(t), ''strict $.**'') AS v
                                      WHERE v #>> ''{}'' = ANY ($1))',
                       table_name, CASE WHEN table_name = 'organisations' THEN 'id' ELSE 'organisation_id' END)
            INTO n USING needles, org;
        RETURN NEXT;
    END LOOP;
END
$$;

-- A physician with points, a feed, consents and notifications.
SELECT m.id AS subject, m.external_id AS subject_external_id, m.email AS subject_email, o.id AS physicians,
       json_build_object('role', 'membership_member', 'org_id', o.id, 'member_id', m.id)::text AS subject_claims
FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
JOIN membership.loyalty_accounts a ON a.member_id = m.id
WHERE o.slug = 'physicians' AND m.email IS NOT NULL AND m.removed_at IS NULL
  AND EXISTS (SELECT FROM membership.feeds f WHERE f.member_id = m.id)
  AND EXISTS (SELECT FROM membership.consent_events e WHERE e.member_id = m.id)
  AND EXISTS (SELECT FROM membership.notifications n WHERE n.member_id = m.id)
ORDER BY m.external_id LIMIT 1 \gset

\echo 'The member asks for their data (membership_api.export_my_data(), through the gateway):'
SELECT set_config('request.jwt.claims', :'subject_claims', false) IS NOT NULL AS as_the_member \g /dev/null
SELECT membership_api.export_my_data() AS export \gset
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL \g /dev/null
SELECT key AS section, jsonb_array_length(value) AS rows
FROM jsonb_each((:'export'::jsonb) -> 'data') WHERE jsonb_array_length(value) > 0 ORDER BY 1;
SELECT length(:'export') AS export_bytes, (:'export'::jsonb) -> 'consents' AS consents;

\echo 'The organisation erases them (membership_api.erase_member with its key):'
SELECT balance AS balance_before FROM membership.loyalty_accounts WHERE member_id = :'subject' \gset
SELECT jsonb_pretty(membership_api.erase_member(:'subject_external_id', dataset.org_key('physicians')) - 'at') AS erased;
\echo 'Afterwards the address, the id and the member id are in no row of any table of the organisation:'
SELECT count(*) AS tables_searched, coalesce(string_agg(table_name || ' ' || n, ', ') FILTER (WHERE n > 0), 'none')
       AS tables_holding_them
FROM pg_temp.rows_holding(ARRAY[:'subject_email', :'subject_external_id', :'subject'], :'physicians');
\echo 'Verification answers false; the points still owed stay on the books under a pseudonym:'
SELECT membership_api.verify_member(:'subject_email', NULL,
           (SELECT key FROM dataset.keys WHERE organisation = 'physicians' AND provider IS NOT NULL ORDER BY provider LIMIT 1))
       AS verification,
       (SELECT a.balance FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
        WHERE m.organisation_id = :'physicians' AND m.status = 'erased' ORDER BY m.updated_at DESC LIMIT 1) = :balance_before
       AS same_points_kept,
       (SELECT count(*) FROM membership.reconcile_ledger()) AS ledger_invariant_breaks;

\echo
\echo 'The Psychological Association leaves the platform (membership.offboard_organisation):'
SELECT id AS psychologists FROM membership.organisations WHERE slug = 'psychologists' \gset
\timing on
SELECT jsonb_pretty(membership.offboard_organisation(:'psychologists') - 'organisation') AS offboarded;
\timing off
\echo 'At once: its members answer false to its providers, its own key is refused:'
SELECT membership_api.verify_member(m.email, NULL,
           (SELECT key FROM dataset.keys WHERE organisation = 'psychologists' AND provider IS NOT NULL ORDER BY provider LIMIT 1))
       AS verification
FROM membership.members m WHERE m.organisation_id = :'psychologists' AND m.email IS NOT NULL ORDER BY m.external_id LIMIT 1;
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', dataset.org_key('psychologists'))$$) AS sync_with_its_key;
\echo 'The purge keeps it for membership.offboard_retention (30 days); run as of 31 days from now:'
SELECT membership.purge_offboarded() AS purged_today;
\timing on
SELECT membership.purge_offboarded(now() + interval '31 days') AS purged_in_31_days;
\timing off
\echo 'What is left of it: one record, no member data:'
SELECT slug, name, offboarded_at::date, purged_at::date, jsonb_pretty(rows_deleted) AS rows_deleted
FROM membership.purged_organisations WHERE id = :'psychologists';
SELECT count(*) AS members_left FROM membership.members WHERE organisation_id = :'psychologists';
