-- Consents: none granted by default; grants and revokes kept in order.
SELECT fixture.new_org('con-a') IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "c1"}, {"external_id": "c2"}]', 'delta', fixture.key('con-a:org'));
SELECT fixture.claims('member', 'con-a', 'c1') AS c1 \gset
SELECT membership.has_consent(membership.find_member(fixture.org('con-a'), 'c1'), 'marketing') AS before_any;

SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c1', false) IS NOT NULL;
SELECT membership_api.set_consent('marketing', true);
SELECT membership_api.set_consent('personalisation', true);
-- granting again is not a new decision
SELECT membership_api.set_consent('marketing', true);
SELECT membership_api.set_consent('marketing', false);
SELECT consent, granted FROM membership_api.consents();
SELECT fixture.try($$SELECT membership_api.set_consent('newsletter', true)$$);
SELECT fixture.try($$SELECT membership_api.set_consent(NULL, true)$$);
SELECT fixture.try($$SELECT membership_api.set_consent('marketing', NULL)$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;

SELECT m.external_id, membership.has_consent(m.id, 'personalisation') AS personalisation,
       membership.has_consent(m.id, 'marketing') AS marketing, membership.has_consent(m.id, 'usage_tracking') AS usage
FROM membership.members m WHERE m.organisation_id = fixture.org('con-a') ORDER BY 1;

-- Keys cannot set a member's consent.
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL,
       set_config('request.headers', json_build_object('x-api-key', fixture.key('con-a:provider'))::text, false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.set_consent('marketing', true)$$);
SELECT set_config('request.headers', '', false) IS NOT NULL;
