-- Provider verification: answers, keys, bad input, plan limits, and
-- answers following member changes at once.
SET timezone = 'UTC';
SELECT fixture.new_org('ver-a') IS NOT NULL;
SELECT membership_api.sync_members($$[
    {"external_id": "v1", "email": "Active.Member@Ver.example", "membership_tier": "full", "member_since": "2021-03-15",
     "dependents": [{"email": "kid@ver.example", "relationship": "child"}]},
    {"external_id": "v2", "email": "student@ver.example", "membership_tier": "student", "member_since": "2024-09-01"},
    {"external_id": "v3", "email": "lapsed@ver.example", "status": "lapsed",
     "dependents": [{"email": "kid-of-lapsed@ver.example"}]},
    {"external_id": "v4", "email": "suspended@ver.example", "status": "suspended"},
    {"external_id": "v5", "email": "removed@ver.example"}
]$$, 'delta', fixture.key('ver-a:org'))->>'inserted' AS inserted;
SELECT membership_api.sync_members('[{"external_id": "v5", "status": "removed"}]', 'delta', fixture.key('ver-a:org'))->>'removed' AS removed;

-- By e-mail (normalised like sync) and by the organisation's user id.
-- (A dependent is a member since it was registered: today.)
SELECT lookup, answer - 'member_since' AS answer,
       CASE WHEN answer->>'member_since' = to_char(current_date, 'YYYY-MM-DD') THEN 'today' ELSE answer->>'member_since' END AS since
FROM (SELECT lookup, membership_api.verify_member(email, user_id, fixture.key('ver-a:provider')) AS answer
FROM (VALUES ('member by email', ' ACTIVE.member@ver.example ', NULL),
             ('member by user_id', NULL, 'v1'),
             ('student', 'student@ver.example', NULL),
             ('dependent of an active member', 'kid@ver.example', NULL),
             ('dependent of a lapsed member', 'kid-of-lapsed@ver.example', NULL),
             ('lapsed member', 'lapsed@ver.example', NULL),
             ('suspended member by user_id', NULL, 'v4'),
             ('removed member by email', 'removed@ver.example', NULL),
             ('removed member by user_id', NULL, 'v5'),
             ('unknown address', 'nobody@ver.example', NULL),
             ('unknown user_id', NULL, 'v999')) AS t(lookup, email, user_id)) AS answers;

-- A lapsed member who is also the dependent of an active member verifies
-- as that dependent; a user id is measured in characters, not bytes.
SELECT membership_api.sync_members(($$[
    {"external_id": "v1", "dependents": [{"email": "kid@ver.example", "relationship": "child"},
                                         {"email": "lapsed@ver.example", "relationship": "spouse"}]},
    {"external_id": "$$ || repeat('é', 150) || $$", "email": "accents@ver.example"}
]$$)::jsonb, 'delta', fixture.key('ver-a:org'))->>'dependents_added' AS added;
SELECT membership_api.verify_member('lapsed@ver.example', NULL, fixture.key('ver-a:provider'))->>'tier' AS lapsed_member_as_dependent;
SELECT membership_api.verify_member(NULL, repeat('é', 150), fixture.key('ver-a:provider'))->>'verified' AS long_user_id;

-- The key may come from the x-api-key header instead of the argument.
SELECT set_config('request.headers', json_build_object('x-api-key', fixture.key('ver-a:provider'))::text, false) IS NOT NULL;
SELECT membership_api.verify_member('student@ver.example') AS via_header;
SELECT set_config('request.headers', '', false) IS NOT NULL;

-- Keys: missing, malformed, unknown, revoked, an organisation's own.
SELECT fixture.try($$SELECT membership_api.verify_member('student@ver.example')$$);
SELECT fixture.try($$SELECT membership_api.verify_member('student@ver.example', NULL, 'nonsense')$$);
SELECT fixture.try($$SELECT membership_api.verify_member('student@ver.example', NULL,
    'mk_aaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')$$);
SELECT fixture.try($$SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:org'))$$);
INSERT INTO fixture.keys VALUES ('ver-a:spare', membership.issue_api_key(fixture.org('ver-a'), 'ver-a-bank', 'pro'));
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:spare'))->>'verified' AS before_revoke;
SELECT membership.revoke_api_key(fixture.key('ver-a:spare'));
SELECT fixture.try($$SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:spare'))$$);

-- Bad questions.
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, NULL, fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member('a@ver.example', 'v1', fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member('', NULL, fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member('not-an-address', NULL, fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member('a@@ver.example', NULL, fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, '', fixture.key('ver-a:provider'))$$);
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, repeat('x', 201), fixture.key('ver-a:provider'))$$);

-- A change committed by sync shows in the very next answer.
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:provider'))->>'tier' AS tier_before;
SELECT membership_api.sync_members('[{"external_id": "v2", "membership_tier": "full"}]', 'delta', fixture.key('ver-a:org'))->>'updated' AS updated;
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:provider'))->>'tier' AS tier_after;
SELECT membership_api.sync_members('[{"external_id": "v2", "status": "lapsed"}]', 'delta', fixture.key('ver-a:org'))->>'updated' AS lapsed;
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:provider')) AS after_lapse;
-- ...and within the transaction that makes it, before the commit.
BEGIN;
SELECT membership_api.sync_members('[{"external_id": "v2", "status": "active"}]', 'delta', fixture.key('ver-a:org'))->>'updated' AS reactivated;
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:provider'))->>'verified' AS seen_inside;
ROLLBACK;
SELECT membership_api.verify_member('student@ver.example', NULL, fixture.key('ver-a:provider'))->>'verified' AS after_rollback;

-- Plan limits: a plan of 3 calls a minute allows 3, then refuses with
-- PT429 and says when to retry.  (Start well inside a minute.)
SELECT pg_sleep(CASE WHEN extract(second FROM clock_timestamp()) > 50
                     THEN 61 - extract(second FROM clock_timestamp()) ELSE 0 END);
SELECT membership.set_plan('tiny', 3);
INSERT INTO fixture.keys VALUES ('ver-a:tiny', membership.issue_api_key(fixture.org('ver-a'), 'ver-a-bank', 'tiny'));
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, 'v1', fixture.key('ver-a:tiny'))$$) AS call
FROM generate_series(1, 5);
DO $$
DECLARE
    v_hint text;
    v_detail text;
BEGIN
    PERFORM membership_api.verify_member(NULL, 'v1', fixture.key('ver-a:tiny'));
EXCEPTION WHEN SQLSTATE 'PT429' THEN
    GET STACKED DIAGNOSTICS v_hint = PG_EXCEPTION_HINT, v_detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'hint matches: %, detail: %', v_hint ~ '^Retry after ([1-9]|[1-5][0-9]|60) seconds\.$',
        regexp_replace(v_detail, 'mk_[a-z2-7]{8}', 'mk_<prefix>');
END
$$;
-- A plan change applies to the next call.
SELECT membership.set_plan('tiny', 10);
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, 'v1', fixture.key('ver-a:tiny'))$$) AS after_raise;
-- Refused calls are counted too; bad questions are not counted at all.
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, NULL, fixture.key('ver-a:tiny'))$$);
SELECT c.allowed, c.refused, c.verified_true, c.verified_false
FROM membership.verification_counters c WHERE c.api_key = left(fixture.key('ver-a:tiny'), 11);

-- Turning limits off lets calls through uncounted.
SET membership.verification_limits = off;
SELECT membership.set_plan('tiny', 1);
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, 'v1', fixture.key('ver-a:tiny'))$$) AS unlimited;
RESET membership.verification_limits;
SELECT fixture.try($$SELECT membership_api.verify_member(NULL, 'v1', fixture.key('ver-a:tiny'))$$) AS limited_again;
