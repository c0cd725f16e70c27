-- The ledger's periodic jobs (functions in 240_ledger_expiry.sql).  This
-- piece sorts after 405_jobs.sql, which defines register_job(); the
-- ledger's own pieces (2xx) come before it.
SELECT membership.register_job('expire_points', '0 1 * * *', 'SELECT membership.expire_points()',
    'expire the unredeemed remainder of due loyalty buckets and record reminders 30 days ahead');
SELECT membership.register_job('apply_tier_downgrades', '30 1 * * *', 'SELECT membership.apply_tier_downgrades()',
    'apply the tier downgrades whose grace period has ended');
SELECT membership.register_job('evaluate_tiers', '15 0 1 1 *',
    $$SELECT membership.evaluate_tiers((date_trunc('year', current_date) - interval '1 day')::date)$$,
    'evaluate every member''s tier for the year just ended and schedule downgrades');
SELECT membership.register_job('reconcile_ledger', '30 3 * * *', 'SELECT membership.reconcile_ledger_job()',
    'check every loyalty account against its ledger and buckets; fails with the findings');
