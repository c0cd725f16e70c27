-- Tenants, providers, keys and members as the data set loaded them.
\echo
\echo '== Organisations and their members (loaded by one full sync each) =='
SELECT o.slug AS organisation, o.app_config->>'app_name' AS app,
       count(m.*) FILTER (WHERE m.removed_at IS NULL) AS members,
       count(m.*) FILTER (WHERE m.status = 'active' AND m.removed_at IS NULL) AS active,
       (SELECT count(*) FROM membership.dependents d WHERE d.organisation_id = o.id AND d.removed_at IS NULL) AS dependents
FROM membership.organisations o LEFT JOIN membership.members m ON m.organisation_id = o.id
GROUP BY o.id ORDER BY members DESC;

\echo '== Membership tiers across the platform =='
SELECT membership_tier, count(*) AS members FROM membership.members GROUP BY 1 ORDER BY 2 DESC;

\echo '== API keys by plan (only the prefix and a SHA-256 hash are stored) =='
SELECT k.plan, p.requests_per_minute, count(*) FILTER (WHERE k.provider_id IS NOT NULL) AS provider_keys,
       count(*) FILTER (WHERE k.provider_id IS NULL) AS organisation_keys
FROM membership.api_keys k JOIN membership.plans p USING (plan)
GROUP BY 1, 2 ORDER BY 2;
