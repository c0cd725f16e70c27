-- The members table's own guarantees, and find_member.
SELECT fixture.new_org('mem-a') IS NOT NULL, fixture.new_org('mem-b') IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@mem.example", "profession": "doctor"},
                                     {"external_id": "m2"}]', 'delta', fixture.key('mem-a:org'));
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@mem.example"}]',
                                   'delta', fixture.key('mem-b:org'));

-- External ids are per organisation: "m1" exists in both, as two members.
SELECT count(DISTINCT id) AS members_named_m1 FROM membership.members WHERE external_id = 'm1';
SELECT membership.find_member(fixture.org('mem-a'), 'm1') <> membership.find_member(fixture.org('mem-b'), 'm1') AS distinct_ids;
SELECT membership.find_member(fixture.org('mem-a'), 'nobody') IS NULL AS absent_is_null;
SELECT fixture.try($$SELECT membership.find_member('00000000-0000-0000-0000-000000000000', 'm1')$$);
SELECT fixture.try($$SELECT membership.find_member(NULL, 'm1')$$);
SELECT fixture.try($$SELECT membership.find_member(fixture.org('mem-a'), NULL)$$);

-- Removed members are still found (they exist in the records).
SELECT membership_api.sync_members('[{"external_id": "m2", "status": "removed"}]', 'delta', fixture.key('mem-a:org'));
SELECT membership.find_member(fixture.org('mem-a'), 'm2') IS NOT NULL AS removed_found;

-- Constraints hold for any writer, not only for sync.
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, email) VALUES (%L, 'x', 'Upper@Case.example')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, email) VALUES (%L, 'x', 'not an email')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, status) VALUES (%L, 'x', 'zombie')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, membership_tier) VALUES (%L, 'x', 'dependent')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id) VALUES (%L, '')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, email) VALUES (%L, 'x', 'm1@mem.example')$$, fixture.org('mem-a')));
SELECT fixture.try(format($$INSERT INTO membership.members (organisation_id, external_id, email, email_hash) VALUES (%L, 'x', 'x@mem.example', '\x00')$$, fixture.org('mem-a')));

-- The hash always matches the stored address.
SELECT bool_and(email_hash = sha256(convert_to(email, 'UTF8'))) AS hashes_match,
       bool_and((email IS NULL) = (email_hash IS NULL)) AS null_together
FROM membership.members;

-- A dependent always belongs to a member of its own organisation.
SELECT fixture.try(format($$INSERT INTO membership.dependents (organisation_id, member_id, email, source) VALUES (%L, %L, 'dep@mem.example', 'member')$$,
                          fixture.org('mem-b'), membership.find_member(fixture.org('mem-a'), 'm1')));
