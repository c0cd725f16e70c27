-- Member sync: a delta, a full sync that removes, bad input refused.
\echo
\echo '== Member sync =='
\echo 'A delta sync from the Dental Association: one new member with a dependent, one change of tier:'
SELECT membership_api.sync_members($$[
    {"external_id": "DEN-900001", "email": " New.Dentist@Dentists.Example ", "membership_tier": "student",
     "member_since": "2026-09-01", "profession": "dentist",
     "dependents": [{"email": "partner.900001@home.dentists.example", "relationship": "partner"}]},
    {"external_id": "DEN-000001", "membership_tier": "retired"}
]$$, 'delta', dataset.org_key('dentists')) AS result;
SELECT external_id, email, membership_tier, status FROM membership.members
WHERE external_id IN ('DEN-900001', 'DEN-000001') ORDER BY 1;

\echo 'A full sync of the Architects Association without its last 50 members soft-removes them:'
SELECT membership_api.sync_members(dataset.member_list('architects', 12800), 'full',
                                   dataset.org_key('architects')) AS result;

\echo 'Bad input is refused with a clear error and changes nothing:'
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "X-1", "email": "not-an-address"}]',
                                                        'delta', dataset.org_key('dentists'))$$) AS refused
UNION ALL
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "X-1"}, {"external_id": "X-1"}]',
                                                        'delta', dataset.org_key('dentists'))$$)
UNION ALL
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'everything', dataset.org_key('dentists'))$$);
