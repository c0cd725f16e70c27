-- Member sync: delta and full modes, counts, normalisation, dependents,
-- and every kind of bad payload (which changes nothing).
SELECT fixture.new_org('sync-a') IS NOT NULL;

-- A first delta sync inserts; addresses are normalised; absent fields get
-- defaults.
SELECT membership_api.sync_members($$[
    {"external_id": "1001", "email": "  Ola.Nordmann@Example.NO ", "status": "active",
     "membership_tier": "full", "member_since": "2021-03-15", "profession": "Physician"},
    {"external_id": "1002", "email": "kari@example.no", "membership_tier": "student"},
    {"external_id": 1003, "email": "per@example.no", "status": "suspended", "membership_tier": "retired",
     "member_since": "1990-01-31", "profession": null},
    {"external_id": "1004"}
]$$, 'delta', fixture.key('sync-a:org'));
SELECT external_id, email, status, membership_tier,
       CASE WHEN member_since = CURRENT_DATE THEN 'today' ELSE member_since::text END AS member_since,
       profession, removed_at IS NULL AS current
FROM membership.members WHERE organisation_id = fixture.org('sync-a') ORDER BY external_id;

-- The same payload again changes nothing.
SELECT membership_api.sync_members($$[
    {"external_id": "1001", "email": "ola.nordmann@example.no", "membership_tier": "full"},
    {"external_id": "1002"}
]$$, 'delta', fixture.key('sync-a:org'));

-- Absent keys keep their values; present ones (null included) change them.
SELECT membership_api.sync_members($$[
    {"external_id": "1001", "profession": null},
    {"external_id": "1002", "email": null, "status": "lapsed"},
    {"external_id": "1004", "member_since": "2000-02-29", "profession": " Dentist "}
]$$, 'delta', fixture.key('sync-a:org'));
SELECT external_id, email, status, membership_tier,
       CASE WHEN member_since = CURRENT_DATE THEN 'today' ELSE member_since::text END AS member_since, profession
FROM membership.members WHERE organisation_id = fixture.org('sync-a') ORDER BY external_id;

-- status "removed" soft-removes; a later sync brings the member back.
SELECT membership_api.sync_members('[{"external_id": "1004", "status": "removed"}, {"external_id": "9999", "status": "removed"}]',
                                   'delta', fixture.key('sync-a:org'));
SELECT external_id, removed_at IS NOT NULL AS removed FROM membership.members
WHERE organisation_id = fixture.org('sync-a') AND external_id IN ('1004', '9999');
SELECT membership_api.sync_members('[{"external_id": "1004"}]', 'delta', fixture.key('sync-a:org'));
SELECT removed_at IS NULL AS back FROM membership.members
WHERE organisation_id = fixture.org('sync-a') AND external_id = '1004';

-- A removed member's address is free for someone else.
SELECT membership_api.sync_members('[{"external_id": "1003", "status": "removed"}, {"external_id": "1005", "email": "per@example.no"}]',
                                   'delta', fixture.key('sync-a:org'));

-- Full mode soft-removes everyone absent from the list.
SELECT membership_api.sync_members('[{"external_id": "1001"}, {"external_id": "1002"}, {"external_id": "1006"}]',
                                   'full', fixture.key('sync-a:org'));
SELECT external_id, removed_at IS NOT NULL AS removed FROM membership.members
WHERE organisation_id = fixture.org('sync-a') ORDER BY external_id;

-- Dependents listed with a member are that member's complete synced set.
SELECT membership_api.sync_members($$[
    {"external_id": "1001", "dependents": [
        {"email": "Spouse@Example.no", "name": "Anne", "relationship": "spouse"},
        {"email": "child@example.no", "relationship": "child"}]}
]$$, 'delta', fixture.key('sync-a:org'));
SELECT email, name, relationship, source FROM membership.dependents
WHERE organisation_id = fixture.org('sync-a') AND removed_at IS NULL ORDER BY email;
SELECT membership_api.sync_members($$[
    {"external_id": "1001", "dependents": [{"email": "spouse@example.no", "name": "Anne B.", "relationship": "spouse"}]},
    {"external_id": "1002"}
]$$, 'delta', fixture.key('sync-a:org'));
SELECT email, name, removed_at IS NOT NULL AS removed FROM membership.dependents
WHERE organisation_id = fixture.org('sync-a') ORDER BY email;
-- Without a "dependents" key they are left alone; an empty list clears them.
SELECT membership_api.sync_members('[{"external_id": "1001"}]', 'delta', fixture.key('sync-a:org'))->'dependents_removed' AS kept;
SELECT membership_api.sync_members('[{"external_id": "1001", "dependents": []}]', 'delta', fixture.key('sync-a:org'))->'dependents_removed' AS cleared;
SELECT membership_api.sync_members('[{"external_id": "1001", "dependents": [{"email": "x@example.no"}]}]', 'delta', fixture.key('sync-a:org'))->'dependents_added' AS added;
SELECT membership_api.sync_members('[{"external_id": "1001", "dependents": null}]', 'delta', fixture.key('sync-a:org'))->'dependents_removed' AS null_clears;

-- Bad input: each refused with a clear error, and nothing changes.
SELECT membership_api.sync_members('[{"external_id": "1001", "dependents": [{"email": "spouse@example.no"}]}]',
                                   'delta', fixture.key('sync-a:org'))->'dependents_added' AS spouse_back;
SELECT count(*) AS members_before, max(updated_at) AS last_change FROM membership.members
WHERE organisation_id = fixture.org('sync-a') \gset
SELECT fixture.try($$SELECT membership_api.sync_members(NULL, 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', NULL, fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'partial', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('{"external_id": "1"}', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'full', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "1", "email": "x@example.no"', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001"}, 7]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"email": "x@example.no"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": null}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "  "}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": ["1"]}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "emial": "x@example.no"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "email": ""}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "email": "x@@example.no"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "email": 42}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "status": "zombie"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "membership_tier": "Gold Plus"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "membership_tier": "dependent"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "member_since": "2021-02-30"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "member_since": "15.03.2021"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "member_since": "2999-01-01"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "profession": 3}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "dependents": {}}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "dependents": [{"name": "x"}]}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "dependents": [{"email": "d@example.no", "relationship": "cousin"}]}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001"}, {"external_id": "2001"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001"}, {"external_id": 2001}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "email": "same@example.no"}, {"external_id": "2002", "email": "SAME@example.no"}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001", "dependents": [{"email": "d@example.no"}, {"email": "D@example.no "}]}]', 'delta', fixture.key('sync-a:org'))$$);
SELECT fixture.try(format('SELECT membership_api.sync_members(%L, %L, %L)',
    jsonb_build_array(jsonb_build_object('external_id', '2001', 'dependents',
        (SELECT jsonb_agg(jsonb_build_object('email', 'kid' || i || '@example.no')) FROM generate_series(1, 11) i))),
    'delta', fixture.key('sync-a:org')));
-- an address already held by another current member
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001"}, {"external_id": "2002", "email": "kari@example.no"}, {"external_id": "1006", "email": "ola.nordmann@example.no"}]', 'delta', fixture.key('sync-a:org'))$$);
SET membership.sync_max_members = 2;
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "2001"}, {"external_id": "2002"}, {"external_id": "2003"}]', 'delta', fixture.key('sync-a:org'))$$);
RESET membership.sync_max_members;
SELECT count(*) = :members_before AS same_count, max(updated_at) = :'last_change' AS untouched
FROM membership.members WHERE organisation_id = fixture.org('sync-a');

-- The same person may be the dependent of two members (a child of two
-- members, say).
SELECT membership_api.sync_members('[{"external_id": "1002", "dependents": [{"email": "spouse@example.no"}]}]',
                                   'delta', fixture.key('sync-a:org'))->'dependents_added' AS shared_dependent;
SELECT count(*) AS listed_by FROM membership.dependents
WHERE email = 'spouse@example.no' AND removed_at IS NULL AND organisation_id = fixture.org('sync-a');

-- Bulk: 13,000 members in one call, then a full sync that changes a few.
SELECT fixture.new_org('sync-bulk') IS NOT NULL;
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 'B' || i, 'email', 'member' || i || '@bulk.example',
                                         'membership_tier', (ARRAY['full', 'student', 'retired'])[1 + i % 3],
                                         'member_since', '2020-01-01'))
     FROM generate_series(1, 13000) AS i),
    'full', fixture.key('sync-bulk:org'));
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 'B' || i, 'email', 'member' || i || '@bulk.example',
                                         'membership_tier', CASE WHEN i <= 10 THEN 'retired'
                                                            ELSE (ARRAY['full', 'student', 'retired'])[1 + i % 3] END,
                                         'member_since', '2020-01-01'))
     FROM generate_series(1, 12995) AS i),
    'full', fixture.key('sync-bulk:org'));
SELECT count(*) FILTER (WHERE removed_at IS NULL) AS current, count(*) FILTER (WHERE removed_at IS NOT NULL) AS removed
FROM membership.members WHERE organisation_id = fixture.org('sync-bulk');
