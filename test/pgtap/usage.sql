-- Usage for invoices: per-minute usage rolls up into months once older
-- than its retention, and the monthly report is the same before and after.
BEGIN;
SELECT plan(6);
\ir ../fixtures.sql

SELECT fixture.new_org('use-a') IS NOT NULL AS a \gset
SELECT id AS key_id FROM membership.api_keys WHERE prefix = left(fixture.key('use-a:provider'), 11) \gset
-- three days at the end of one month and two at the start of the next,
-- 24 minutes a day, over two server starts (epochs)
SELECT membership.flush_usage(e, array_agg(:key_id::bigint), array_agg(t), array_agg(10::bigint), array_agg(1::bigint),
                              array_agg(9::bigint), array_agg(1::bigint))
FROM generate_series(1, 2) AS e,
     generate_series(timestamptz '2026-01-29 00:00+00', timestamptz '2026-02-02 23:00+00', interval '1 hour') AS t
GROUP BY e;

CREATE TEMPORARY TABLE before_rollup AS
SELECT * FROM membership.usage_report(fixture.org('use-a'), '2026-01-01', '2026-03-01');
SELECT results_eq('SELECT month::text, provider, allowed, refused FROM before_rollup',
                  $$VALUES ('2026-01-01', 'use-a-bank', 1440::bigint, 144::bigint),
                           ('2026-02-01', 'use-a-bank', 960::bigint, 96::bigint)$$,
                  'the report sums minutes by month and provider, over epochs');

SET LOCAL membership.usage_retention = '30d';
SELECT cmp_ok(membership.expire_usage(timestamptz '2026-03-05 00:00+00'), '>=', 240::bigint,
              'expire_usage rolls the old minutes up');
SELECT is((SELECT count(*) FROM membership.usage_minutes WHERE api_key_id = :key_id), 0::bigint,
          '... deletes them');
SELECT results_eq('SELECT month::text, allowed, verified_true FROM membership.usage_months WHERE api_key_id = ' || :key_id || ' ORDER BY month',
                  $$VALUES ('2026-01-01', 1440::bigint, 1296::bigint), ('2026-02-01', 960::bigint, 864::bigint)$$,
                  '... into one row per month');
SELECT set_eq('SELECT * FROM membership.usage_report(fixture.org(''use-a''), ''2026-01-01'', ''2026-03-01'')',
              'SELECT * FROM before_rollup', 'and the report is the same as before');
SELECT is(membership.expire_usage(timestamptz '2026-03-05 00:00+00'), 0::bigint, 'a second run has nothing to do');

SELECT * FROM finish();
ROLLBACK;
