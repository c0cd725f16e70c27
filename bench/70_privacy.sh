# shellcheck shell=bash
# Privacy on the realistic data set: exporting and erasing members one at a
# time, then offboarding one organisation and purging it.  Issue #7 sets no
# target; the figures say what these cost at this size.  Runs last: it
# erases members and removes an organisation.  Sourced by script/bench.

psql -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA IF NOT EXISTS bench" -c "CREATE TABLE bench.privacy_subjects AS
    SELECT m.id FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
    WHERE o.slug = 'architects' AND m.removed_at IS NULL ORDER BY m.external_id LIMIT 1000" >/dev/null
export_ms=$(mb_sql_ms "SELECT sum(length(membership.member_data(id)::text)) FROM bench.privacy_subjects")
export_kb=$(psql -X -At -c "SELECT round(avg(length(membership.member_data(id)::text)) / 1024.0, 1) FROM bench.privacy_subjects")
erase_ms=$(mb_sql_ms "SELECT count(membership.erase_member(m.organisation_id, m.id))
               FROM bench.privacy_subjects s JOIN membership.members m USING (id)")
ledger_rows=$(psql -X -At -c "SELECT count(*) FROM membership.loyalty_ledger l JOIN membership.members m ON m.id = l.member_id
                              WHERE m.status = 'erased'")

read -r org members <<<"$(psql -X -At -F ' ' -c "SELECT o.id, count(m.*) FROM membership.organisations o
    JOIN membership.members m ON m.organisation_id = o.id WHERE o.slug = 'economists' GROUP BY o.id")"
offboard_ms=$(mb_sql_ms "SELECT membership.offboard_organisation('$org')")
purge_ms=$(mb_sql_ms "SELECT membership.purge_offboarded(now() + interval '31 days')")
rows=$(psql -X -At -c "SELECT sum(value::bigint) FROM membership.purged_organisations,
                       jsonb_each_text(rows_deleted) WHERE id = '$org'")

cat <<EOF_REPORT
## Privacy

Members of one organisation (Architects Association), one call each, then
the Economists Association ($members members) offboarded and purged. No
target (issue #7); the figures say what each costs here.

| what | time | per item |
|---|---|---|
| \`member_data\` (the export document), 1,000 members, ${export_kb} KB each on average | ${export_ms} ms | $(mb_ratio "$export_ms" 1000) ms |
| \`erase_member\`, 1,000 members ($ledger_rows ledger rows kept under pseudonyms) | ${erase_ms} ms | $(mb_ratio "$erase_ms" 1000) ms |
| \`offboard_organisation\`, $members members | ${offboard_ms} ms | |
| \`purge_offboarded\`, $rows rows in every tenant table | ${purge_ms} ms | |

EOF_REPORT
