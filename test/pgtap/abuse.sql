-- Abuse detection over per-minute usage: quiet on normal traffic, one
-- alert per episode for velocity spikes and membership enumeration,
-- episodes that end, thresholds that are settings.
BEGIN;
SELECT plan(12);
\ir ../fixtures.sql

SELECT fixture.new_org('abu-a') IS NOT NULL AS a \gset
SELECT membership.create_provider('abu-shop-' || i, 'Shop ' || i) IS NOT NULL FROM generate_series(1, 5) AS i;
SELECT count(membership.issue_api_key(fixture.org('abu-a'), 'abu-shop-' || i, 'pro')) FROM generate_series(1, 5) AS i;
CREATE TEMPORARY TABLE abuse_keys AS
SELECT array_agg(k.id ORDER BY k.id) AS ids FROM membership.api_keys k
WHERE k.organisation_id = fixture.org('abu-a') AND k.provider_id IS NOT NULL;
SELECT ids[1] AS spiky, ids[2] AS prober FROM abuse_keys \gset

-- Write usage as the flusher would, for a span of minutes.
CREATE FUNCTION pg_temp.traffic(key_ids bigint[], first_minute timestamptz, minutes integer,
                                extra_key bigint DEFAULT NULL, extra_calls bigint DEFAULT 0,
                                extra_misses bigint DEFAULT 0) RETURNS void LANGUAGE sql AS $$
    SELECT membership.flush_usage(1, array_agg(t.api_key_id), array_agg(t.minute),
                                  array_agg(t.calls + CASE WHEN t.api_key_id = extra_key THEN extra_calls ELSE 0 END),
                                  array_agg(0::bigint),
                                  array_agg(t.calls - t.misses + CASE WHEN t.api_key_id = extra_key THEN extra_calls - extra_misses ELSE 0 END),
                                  array_agg(t.misses + CASE WHEN t.api_key_id = extra_key THEN extra_misses ELSE 0 END))
    FROM fixture.normal_traffic(key_ids, first_minute, minutes) AS t;
$$;
-- Judge a span of minutes one by one, as the flusher does; alerts opened.
CREATE FUNCTION pg_temp.judge(first_minute timestamptz, minutes integer) RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(membership.detect_abuse(date_trunc('minute', first_minute) + make_interval(mins => m)))
    FROM generate_series(0, minutes - 1) AS m;
$$;

SELECT date_trunc('minute', now()) - interval '4 hours' AS t0 \gset

-- Three hours of normal traffic on five keys raise nothing.
SELECT pg_temp.traffic(ids, :'t0', 180) FROM abuse_keys;
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '60 minutes', 120), 0::bigint,
          'three hours of normal traffic raise no alert');

-- A velocity spike: one key makes 1,500 calls in a minute.
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '180 minutes', 1, :spiky, 1500, 50) FROM abuse_keys;
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '180 minutes', 1), 1::bigint, 'a spike raises one alert');
SELECT results_eq(format($$SELECT kind, api_key_id, peak_calls > 1500, baseline < 60 FROM membership.abuse_alerts
                          WHERE organisation_id = %L$$, fixture.org('abu-a')),
                  format($$VALUES ('velocity_spike'::text, %s::bigint, true, true)$$, :spiky),
                  '... a velocity spike on that key, with its peak and its baseline');

-- It goes on for three more minutes, while another key starts guessing
-- addresses: 200 lookups a minute, 95% of them misses.
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '181 minutes', 1, :spiky, 1500, 50) FROM abuse_keys;
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '182 minutes', 1, :prober, 200, 190) FROM abuse_keys;
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '183 minutes', 1, :prober, 200, 190) FROM abuse_keys;
UPDATE membership.usage_minutes SET allowed = allowed + 1500, verified_true = verified_true + 1450, verified_false = verified_false + 50
WHERE api_key_id = :spiky AND minute IN (:'t0'::timestamptz + interval '182 minutes', :'t0'::timestamptz + interval '183 minutes');
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '181 minutes', 3), 1::bigint,
          'three more minutes of spike and a start of guessing raise one new alert');
SELECT results_eq(format($$SELECT kind, minutes, ended_at IS NULL FROM membership.abuse_alerts
                          WHERE organisation_id = %L ORDER BY started_at, kind$$, fixture.org('abu-a')),
                  $$VALUES ('velocity_spike'::text, 4, true), ('enumeration'::text, 1, true)$$,
                  '... the spike is one episode of four minutes; the guessing is an enumeration alert');
SELECT is((SELECT miss_share >= 0.5 FROM membership.abuse_alerts WHERE kind = 'enumeration' AND api_key_id = :prober),
          true, '... which records the share of misses');

-- Judging a minute twice changes nothing.
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '183 minutes', 1), 0::bigint, 'judging a minute again raises nothing');
SELECT is((SELECT minutes FROM membership.abuse_alerts WHERE kind = 'velocity_spike'), 4,
          '... and does not count the minute twice');

-- Twenty quiet minutes end both episodes.
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '184 minutes', 20) FROM abuse_keys;
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '184 minutes', 20), 0::bigint, 'quiet minutes raise nothing');
SELECT is((SELECT count(*) FROM membership.abuse_alerts WHERE ended_at IS NOT NULL), 2::bigint,
          '... and end both episodes');

-- A new spike is a new episode, unless the threshold says it is not one.
-- The trailing hour now holds the first episode's 6,000 calls, so the
-- baseline is over 100 calls a minute: this burst is well above ten times it.
SELECT pg_temp.traffic(ids, :'t0'::timestamptz + interval '204 minutes', 1, :spiky, 4000, 50) FROM abuse_keys;
SET LOCAL membership.abuse_spike_factor = 200;
SELECT is(pg_temp.judge(:'t0'::timestamptz + interval '204 minutes', 1), 0::bigint,
          'with membership.abuse_spike_factor = 200 the same burst is no spike');
RESET membership.abuse_spike_factor;
DELETE FROM membership.abuse_alerts WHERE last_seen_at = :'t0'::timestamptz + interval '204 minutes';
SELECT is(membership.detect_abuse(:'t0'::timestamptz + interval '204 minutes'), 1,
          'with the default it is a new episode and a new alert');

SELECT * FROM finish();
ROLLBACK;
