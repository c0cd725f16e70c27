-- Loyalty ledger: the physicians' program, a batch of order events, tier
-- upgrades, a member's points and redemption through the API, a partner
-- bank, a refund, expiry a year on, tier evaluation, and reconciliation.
\echo
\echo '== Loyalty ledger =='
SELECT id AS physicians FROM membership.organisations WHERE slug = 'physicians' \gset

\echo 'The program (defaults) with two earn rules of its own:'
SELECT membership.add_earn_rule(:'physicians', 'Books count double', 'category_multiplier', 'books',
                                multiplier => 2) \g /dev/null
SELECT membership.add_earn_rule(:'physicians', 'Welcome', 'first_purchase', bonus_points => 250) \g /dev/null
SELECT t->>'tier' AS tier, t->>'threshold' AS threshold, t->>'multiplier' AS multiplier
FROM jsonb_array_elements(membership.loyalty_program(:'physicians') -> 'tiers') t;

\echo 'A day of orders: one batch, an order per member (13,500 events), set-based:'
\timing on
SELECT status, count(*) AS events, sum(points) AS points
FROM membership.earn_points_batch(:'physicians',
    (SELECT jsonb_agg(jsonb_build_object('external_id', m.external_id,
                                         'amount_cents', 2000 + (abs(hashtext(m.external_id)) % 600000),
                                         'source_type', 'order', 'source_ref', 'demo-' || m.external_id,
                                         'category', CASE WHEN abs(hashtext(m.external_id)) % 4 = 0 THEN 'books' END))
     FROM membership.members m WHERE m.organisation_id = :'physicians' AND m.removed_at IS NULL))
GROUP BY status;
\timing off
SELECT tier, count(*) AS members, sum(balance) AS points
FROM membership.loyalty_accounts WHERE organisation_id = :'physicians' GROUP BY tier ORDER BY min(qualifying_points);

\echo 'The same batch again is a replay: nothing is written twice:'
SELECT status, count(*) AS events
FROM membership.earn_points_batch(:'physicians',
    (SELECT jsonb_agg(jsonb_build_object('external_id', m.external_id,
                                         'amount_cents', 2000 + (abs(hashtext(m.external_id)) % 600000),
                                         'source_type', 'order', 'source_ref', 'demo-' || m.external_id,
                                         'category', CASE WHEN abs(hashtext(m.external_id)) % 4 = 0 THEN 'books' END))
     FROM membership.members m WHERE m.organisation_id = :'physicians' AND m.removed_at IS NULL))
GROUP BY status;

-- a Silver member, seen through the app
SELECT a.member_id AS member, m.external_id,
       json_build_object('role', 'membership_member', 'org_id', a.organisation_id, 'member_id', a.member_id)::text AS claims
FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
WHERE a.organisation_id = :'physicians' AND a.tier = 'silver' ORDER BY m.external_id LIMIT 1 \gset
\echo 'A Silver member opens the app: their points, then a redemption of 20% of a 100.00 order:'
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims', false) \g /dev/null
SELECT jsonb_pretty(membership_api.points() - 'downgrade_at' - 'downgrade_to');
SELECT membership_api.redeem(2000, 'demo-redeem-1', 10000) AS redemption;
SELECT kind, points, balance_after, source_type, category FROM membership_api.points_history(max_rows => 3);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) \g /dev/null

\echo 'Northbank becomes a partner (2 points per 1.00, a point worth 0.8 cents) and earns for a sale with its key:'
SELECT membership.set_loyalty_partner(:'physicians', 'northbank', 2, 0.8) \g /dev/null
SELECT membership.issue_api_key(:'physicians', 'northbank', 'pro', 'loyalty demo') AS bank_key \gset
SELECT membership_api.partner_earn(15000, 'nb-tx-1', user_id => :'external_id', api_key => :'bank_key') AS partner_earn;
SELECT membership_api.partner_balance(user_id => :'external_id', api_key => :'bank_key') AS partner_balance;
SELECT partner, earn_transactions, earned_points, sales_cents FROM membership.partner_report(:'physicians', current_date);

\echo 'A refund of the member''s order after the redemption: what remains is clawed back, the rest is a shortfall:'
SELECT membership.reverse_earn(:'physicians', 'order', 'demo-' || :'external_id') - 'member_id' AS refund;

\echo 'A year and a month later: reminders were recorded a month ahead, then the points expire (set-based):'
SELECT membership.expire_points(current_date + 335) AS buckets_expired_a_month_early;
SELECT kind, count(*) AS notices, min(title) AS example
FROM membership.loyalty_notices WHERE organisation_id = :'physicians' GROUP BY kind ORDER BY kind;
\timing on
SELECT membership.expire_points(current_date + 400) AS buckets_expired;
\timing off
\echo 'Tier evaluation for this year and next: Silver and above keep their tier a year, then go down after 30 days:'
SELECT membership.evaluate_tiers(make_date(extract(year FROM current_date)::int, 12, 31)) AS downgrades_this_year,
       membership.evaluate_tiers(make_date(extract(year FROM current_date)::int + 1, 12, 31)) AS downgrades_next_year;
\echo 'Reconciliation (always empty):'
SELECT count(*) AS broken_accounts FROM membership.reconcile_ledger();
