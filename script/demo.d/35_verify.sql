-- Provider verification: answers, limits, metering, abuse alerts.
\echo
\echo '== Provider verification =='
SELECT key AS shop_key FROM dataset.keys WHERE organisation = 'physicians' AND plan = 'enterprise'
ORDER BY provider LIMIT 1 \gset
SELECT key AS bank_key FROM dataset.keys WHERE organisation = 'physicians' AND plan = 'pro'
ORDER BY provider LIMIT 1 \gset
SELECT m.email AS member_email FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
WHERE o.slug = 'physicians' AND m.status = 'active' AND m.removed_at IS NULL ORDER BY m.external_id LIMIT 1 \gset
SELECT d.email AS dependent_email FROM membership.dependents d JOIN membership.members m ON m.id = d.member_id
JOIN membership.organisations o ON o.id = d.organisation_id
WHERE o.slug = 'physicians' AND m.status = 'active' AND m.removed_at IS NULL ORDER BY d.email LIMIT 1 \gset
\echo 'A retailer''s key asks about a member, a dependent, a stranger, and a member of another organisation:'
SELECT q.question, membership_api.verify_member(q.email, NULL, :'shop_key') AS answer
FROM (VALUES ('member', :'member_email'), ('dependent', :'dependent_email'), ('stranger', 'who.ever@example.org'),
             ('dentist', (SELECT m.email FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
                          WHERE o.slug = 'dentists' LIMIT 1))) AS q(question, email);

\echo 'Two hours of normal checkout traffic on the physicians'' keys (written as the flusher would),'
\echo 'then a minute of live traffic at the same pace: 300 questions, nine in ten about members:'
SELECT membership.flush_usage(0, array_agg(t.api_key_id), array_agg(t.minute), array_agg(t.calls), array_agg(0::bigint),
                              array_agg(t.calls - t.misses), array_agg(t.misses)) AS history_minutes
FROM fixture.normal_traffic((SELECT array_agg(k.id) FROM membership.api_keys k JOIN membership.organisations o
                             ON o.id = k.organisation_id WHERE o.slug = 'physicians' AND k.provider_id IS NOT NULL),
                            date_trunc('minute', now()) - interval '2 hours', 120) AS t;
CREATE TEMPORARY TABLE physician_keys AS
SELECT row_number() OVER (ORDER BY key) AS n, key FROM dataset.keys
WHERE organisation = 'physicians' AND provider IS NOT NULL AND plan <> 'free';
SELECT count(*) FILTER (WHERE membership_api.verify_member(
           CASE WHEN i % 10 = 0 THEN 'guess' || i || '@example.org' ELSE m.email END, NULL, k.key)->>'verified' = 'true') AS verified,
       count(*) AS asked
FROM generate_series(1, 300) AS i
JOIN physician_keys k ON k.n = 1 + i % (SELECT count(*) FROM physician_keys)
JOIN membership.members m ON m.external_id = 'PHY-' || lpad((1 + (i * 37) % 13500)::text, 6, '0')
JOIN membership.organisations o ON o.id = m.organisation_id AND o.slug = 'physicians';

\echo 'A key on the free plan (60 calls a minute) asking 80 times in a row:'
SELECT key AS free_key FROM dataset.keys WHERE organisation = 'nurses' AND plan = 'free' LIMIT 1 \gset
SELECT answer, count(*) FROM (
    SELECT fixture.try(format('SELECT membership_api.verify_member(%L, NULL, %L)', 'someone@nurses.example', :'free_key')) AS answer
    FROM generate_series(1, 80)) AS calls
GROUP BY answer ORDER BY answer;

\echo 'Someone with a stolen key guesses addresses, and another key bursts:'
SELECT count(membership_api.verify_member('guess.' || i || '@physicians.example', NULL, :'bank_key')) AS guesses
FROM generate_series(1, 250) AS i;
SELECT count(membership_api.verify_member(:'member_email', NULL, :'shop_key')) AS burst FROM generate_series(1, 1500);
\echo 'The usage flusher writes the counters within a second or so; once the minute is over it judges it.'
\echo 'Here we ask for the judgement of the current minute right away:'
SELECT pg_sleep(2.5);
SELECT membership.detect_abuse(date_trunc('minute', now())) AS alerts_raised;
SELECT a.kind, p.slug AS provider, a.peak_calls, a.baseline, a.miss_share
FROM membership.abuse_alerts a JOIN membership.providers p ON p.id = a.provider_id ORDER BY a.kind;

\echo 'Usage for invoices (physicians, this month):'
SELECT provider, allowed, refused, verified_true, verified_false
FROM membership.usage_report((SELECT id FROM membership.organisations WHERE slug = 'physicians'),
                             date_trunc('month', now())::date, (date_trunc('month', now()) + interval '1 month')::date)
ORDER BY allowed DESC LIMIT 5;
\echo 'The metering state:'
SELECT limiter_slots_used, limiter_slots, fail_open_calls, key_cache_used, verify_cache_used, flush_lag, audit_queued
FROM membership.metering_status;
