-- Providers and API keys: issue, format, hashing, revoke, rotate, plans.
SELECT fixture.new_org('keys-a') IS NOT NULL AS created;

-- Keys look like mk_<8 public>_<52 secret>; only the prefix and the
-- SHA-256 hash are stored.
SELECT k.name, k.key ~ '^mk_[a-z2-7]{8}_[a-z2-7]{52}$' AS well_formed
FROM fixture.keys k WHERE k.name LIKE 'keys-a:%' ORDER BY k.name;
SELECT a.prefix = left(k.key, 11) AS prefix_matches,
       a.key_hash = sha256(convert_to(k.key, 'UTF8')) AS hash_matches,
       position(substr(k.key, 13) IN a::text) = 0 AS secret_not_stored,
       a.provider_id IS NULL AS org_key, a.plan
FROM fixture.keys k JOIN membership.api_keys a ON a.prefix = left(k.key, 11)
WHERE k.name LIKE 'keys-a:%' ORDER BY k.name;

-- Two keys are never alike.
SELECT count(DISTINCT membership.generate_api_key()) AS distinct_keys FROM generate_series(1, 1000);

-- Listing shows prefixes, never hashes.
SELECT provider, plan, label, revoked_at IS NULL AS active
FROM membership.api_keys_of(fixture.org('keys-a')) ORDER BY provider NULLS FIRST;

-- Bad input.
SELECT fixture.try($$SELECT membership.create_provider('keys-a-bank', 'Duplicate')$$);
SELECT fixture.try($$SELECT membership.create_provider('Bad Slug', 'x')$$);
SELECT fixture.try($$SELECT membership.create_provider(NULL, 'x')$$);
SELECT fixture.try($$SELECT membership.create_provider('ok-slug', '')$$);
SELECT fixture.try($$SELECT membership.issue_api_key(fixture.org('keys-a'), 'no-such-bank')$$);
SELECT fixture.try($$SELECT membership.issue_api_key(fixture.org('keys-a'), 'keys-a-bank', 'platinum')$$);
SELECT fixture.try($$SELECT membership.issue_api_key(fixture.org('keys-a'), 'keys-a-bank', NULL)$$);
SELECT fixture.try($$SELECT membership.issue_api_key('00000000-0000-0000-0000-000000000000', NULL)$$);
SELECT fixture.try($$SELECT membership.issue_api_key(NULL, NULL)$$);
SELECT fixture.try($$SELECT membership.revoke_api_key('mk_nothing')$$);
SELECT fixture.try($$SELECT membership.revoke_api_key(NULL)$$);
SELECT fixture.try($$SELECT membership.set_plan('Gold', 10)$$);
SELECT fixture.try($$SELECT membership.set_plan('gold', 0)$$);
SELECT fixture.try($$SELECT membership.set_plan(NULL, 10)$$);
SELECT fixture.try($$SELECT membership.issue_api_key(fixture.org('keys-a'), 'keys-a-bank', 'free', repeat('l', 201))$$);
SELECT fixture.try($$SELECT membership.rotate_api_key(fixture.key('keys-a:provider'), NULL)$$);

-- Plans: seeded, editable, NULL is unlimited.
SELECT plan, requests_per_minute FROM membership.plans ORDER BY requests_per_minute NULLS LAST;
SELECT membership.set_plan('unlimited', NULL);
SELECT membership.set_plan('free', 90);
SELECT plan, requests_per_minute FROM membership.plans WHERE plan IN ('free', 'unlimited') ORDER BY plan;
-- Inserting a plan that exists updates it (what lets a restore keep changed limits).
INSERT INTO membership.plans VALUES ('free', 75);
SELECT plan, requests_per_minute FROM membership.list_plans() WHERE plan IN ('free', 'unlimited');
SELECT membership.set_plan('free', 60);

-- A key can move to another plan.
SELECT membership.set_api_key_plan(fixture.key('keys-a:provider'), 'pro');
SELECT plan FROM membership.api_keys_of(fixture.org('keys-a')) WHERE provider = 'keys-a-bank';
SELECT fixture.try($$SELECT membership.set_api_key_plan(fixture.key('keys-a:provider'), 'nope')$$);

-- Revoking by the whole key or by its public prefix; revoking twice is
-- harmless and says so.
INSERT INTO fixture.keys VALUES
    ('keys-a:spare', membership.issue_api_key(fixture.org('keys-a'), 'keys-a-bank', 'starter', 'spare'));
SELECT membership.revoke_api_key(left(fixture.key('keys-a:spare'), 11)) AS revoked;
SELECT membership.revoke_api_key(fixture.key('keys-a:spare')) AS revoked_again;
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('keys-a:spare'))$$);

-- Rotation: the old key keeps working during the overlap, then expires.
INSERT INTO fixture.keys VALUES
    ('keys-a:rotated', membership.rotate_api_key(fixture.key('keys-a:org'), '1 hour'));
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('keys-a:org'))$$) AS old_key,
       fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('keys-a:rotated'))$$) AS new_key;
SELECT (SELECT plan FROM membership.api_keys a WHERE a.prefix = left(fixture.key('keys-a:rotated'), 11)) AS new_plan,
       (SELECT replaced_by IS NOT NULL AND expires_at > now() FROM membership.api_keys a
        WHERE a.prefix = left(fixture.key('keys-a:org'), 11)) AS old_overlaps;
UPDATE membership.api_keys SET expires_at = now() - interval '1 second'
WHERE prefix = left(fixture.key('keys-a:org'), 11);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('keys-a:org'))$$) AS old_key;
SELECT fixture.try($$SELECT membership.rotate_api_key(fixture.key('keys-a:org'))$$);
SELECT fixture.try($$SELECT membership.rotate_api_key(fixture.key('keys-a:rotated'), '-1 hour')$$);

-- Platform administrators list providers and organisations.
SET ROLE membership_platform_admin;
SELECT slug, name FROM membership.list_providers() WHERE slug LIKE 'keys-a%';
SELECT slug, name FROM membership.list_organisations() WHERE slug LIKE 'keys-%';
RESET ROLE;

-- Only platform administrators manage keys.
SELECT fixture.org('keys-a') AS keys_a \gset
SET ROLE membership_org_admin;
SELECT fixture.try('SELECT membership.issue_api_key(' || quote_literal(:'keys_a') || ', NULL)');
RESET ROLE;
SET ROLE membership_platform_admin;
SELECT fixture.try($$SELECT membership.revoke_api_key(fixture.key('keys-a:rotated'))$$);
RESET ROLE;
