-- Loyalty ledger (issue #4): earn rules and their windows, tiers, FIFO
-- redemption, refunds, expiry under both models, tier evaluation,
-- partners, the member API, idempotency, bad input, and the invariants.
SELECT fixture.new_org('led-a') IS NOT NULL AS a, fixture.new_org('led-b') IS NOT NULL AS b;
SELECT fixture.org('led-a') AS org, fixture.org('led-b') AS org_b \gset
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@led.example"},
    {"external_id": "m2", "email": "m2@led.example"}, {"external_id": "m3"}, {"external_id": "m4"},
    {"external_id": "m5"}]', 'delta', fixture.key('led-a:org')) IS NOT NULL AS synced;
SELECT membership_api.sync_members('[{"external_id": "b1"}]', 'delta', fixture.key('led-b:org')) IS NOT NULL AS synced;
SELECT membership.find_member(:'org', 'm1') AS m1, membership.find_member(:'org', 'm2') AS m2,
       membership.find_member(:'org', 'm3') AS m3, membership.find_member(:'org', 'm4') AS m4,
       membership.find_member(:'org', 'm5') AS m5, membership.find_member(:'org_b', 'b1') AS b1 \gset
CREATE FUNCTION pg_temp.balances(org uuid) RETURNS TABLE (member text, balance bigint, lifetime bigint, tier text,
                                                         qualifying bigint)
    LANGUAGE sql AS $$
    SELECT m.external_id, a.balance, a.lifetime_points, a.tier, a.qualifying_points
    FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
    WHERE a.organisation_id = org ORDER BY 1
$$;

-- The program's defaults.
SELECT jsonb_pretty(membership.loyalty_program(:'org'));

-- Earn rules: each kind, a validity window, priorities.
SELECT membership.add_earn_rule(:'org', 'Books double', 'category_multiplier', 'books', multiplier => 2,
                                priority => 10) AS r_books \gset
SELECT membership.add_earn_rule(:'org', 'Books triple, lower priority', 'category_multiplier', 'books',
                                multiplier => 3, priority => 1) AS r_books3 \gset
SELECT membership.add_earn_rule(:'org', 'March coffee', 'fixed_bonus', 'coffee', bonus_points => 40,
                                valid_from => '2026-03-01', valid_until => '2026-04-01') AS r_coffee \gset
SELECT membership.add_earn_rule(:'org', 'Big basket', 'order_threshold', bonus_points => 100,
                                min_amount_cents => 10000) AS r_threshold \gset
SELECT membership.add_earn_rule(:'org', 'Bigger basket', 'order_threshold', bonus_points => 250,
                                min_amount_cents => 50000, priority => 5) AS r_threshold2 \gset
SELECT membership.add_earn_rule(:'org', 'Welcome', 'first_purchase', bonus_points => 500) AS r_first \gset
SELECT membership.add_earn_rule(:'org', 'Sign-up', 'signup', bonus_points => 200) AS r_signup \gset
SELECT membership.add_earn_rule(:'org', 'Review', 'review', bonus_points => 20) AS r_review \gset
SELECT membership.add_earn_rule(:'org', 'Referral', 'referral', bonus_points => 300) AS r_referral \gset

-- First purchase: 1 point per 100 cents + the welcome bonus.
SELECT membership.earn_points(:'org', :'m1', 2050, 'order', 'o-1', NULL, '2026-02-10 10:00Z') AS first_purchase;
-- Books: doubled (the higher-priority multiplier), no welcome bonus twice.
SELECT membership.earn_points(:'org', :'m1', 3000, 'order', 'o-2', 'books', '2026-02-11 10:00Z') AS books;
-- Coffee in March gets its bonus; in April (outside the window) it does not.
SELECT membership.earn_points(:'org', :'m1', 500, 'order', 'o-3', 'coffee', '2026-03-15 10:00Z') AS coffee_march,
       membership.earn_points(:'org', :'m1', 500, 'order', 'o-4', 'coffee', '2026-04-15 10:00Z') AS coffee_april;
-- Order thresholds: only the best applicable threshold rule counts.
SELECT membership.earn_points(:'org', :'m1', 12000, 'order', 'o-5', NULL, '2026-04-16 10:00Z') AS over_100,
       membership.earn_points(:'org', :'m1', 60000, 'order', 'o-6', NULL, '2026-04-17 10:00Z') AS over_500;
-- Actions.
SELECT membership.earn_points(:'org', :'m2', 0, 'signup', 'm2', NULL, '2026-01-05 10:00Z') AS signup,
       membership.earn_points(:'org', :'m2', 0, 'review', 'rev-1', NULL, '2026-01-06 10:00Z') AS review,
       membership.earn_points(:'org', :'m2', 0, 'referral', 'ref-1', NULL, '2026-01-07 10:00Z') AS referral;
-- A rule change applies to the next earn: the review rule switched off.
SELECT membership.set_earn_rule_active(:'org', :r_review, false) AS switched_off;
SELECT membership.earn_points(:'org', :'m2', 0, 'review', 'rev-2', NULL, '2026-01-08 10:00Z') AS review_after;
SELECT kind, points, balance_after, source_type, source_ref, amount_cents, category,
       (SELECT array_agg(r.name ORDER BY r.id) FROM membership.loyalty_earn_rules r
        WHERE r.id IN (SELECT jsonb_array_elements_text(l.details -> 'rules')::bigint)) AS rules
FROM membership.loyalty_ledger l WHERE l.organisation_id = :'org' ORDER BY l.id;

-- Idempotency: a replay returns the same points and writes nothing; a
-- replay with other parameters is an error.
SELECT count(*) AS entries_before FROM membership.loyalty_ledger WHERE organisation_id = :'org';
SELECT membership.earn_points(:'org', :'m1', 3000, 'order', 'o-2', 'books') AS replay,
       membership.earn_points(:'org', :'m1', 3000, 'order', 'o-2', 'books', '2026-02-11 10:00Z') AS replay_with_time;
SELECT count(*) AS entries_after FROM membership.loyalty_ledger WHERE organisation_id = :'org';
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 3100, 'order', 'o-2', 'books')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 3000, 'order', 'o-2', 'books')$$, :'org', :'m2'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 3000, 'order', 'o-2', 'books', '2026-02-12')$$, :'org', :'m1'));

-- Bad input changes nothing.
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, -5, 'order', 'bad-1')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 0, 'order', 'bad-2')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100000000001, 'order', 'bad-3')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, NULL, 'order', 'bad-4')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100, 'Order!', 'bad-5')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100, 'order', '')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100, 'order', 'bad-6', NULL, now() + interval '1 day')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100, 'order', 'bad-7')$$, :'org', gen_random_uuid()));
SELECT fixture.try(format($$SELECT membership.earn_points(%L, %L, 100, 'order', 'bad-8')$$, :'org', :'b1'));
SELECT fixture.try(format($$SELECT membership.earn_points(NULL, %L, 100, 'order', 'bad-9')$$, :'m1'));
SELECT fixture.try(format($$SELECT membership.add_earn_rule(%L, 'x', 'lottery', bonus_points => 1)$$, :'org'));
SELECT fixture.try(format($$SELECT membership.add_earn_rule(%L, 'x', 'category_multiplier', 'books', multiplier => -1)$$, :'org'));
SELECT fixture.try(format($$SELECT membership.add_earn_rule(%L, 'x', 'fixed_bonus', bonus_points => 5, valid_from => '2026-02-01', valid_until => '2026-01-01')$$, :'org'));
SELECT fixture.try(format($$SELECT membership.set_loyalty_program(%L, '{"expiry_model": "never"}')$$, :'org'));
SELECT fixture.try(format($$SELECT membership.set_loyalty_program(%L, '{"colour": "red"}')$$, :'org'));
SELECT count(*) AS entries_unchanged FROM membership.loyalty_ledger WHERE organisation_id = :'org';

-- Tiers: crossing Silver's 5,000 qualifying points upgrades at once, with
-- a notice; the next earn gets the Silver multiplier (1.5).
SELECT membership.earn_points(:'org', :'m3', 420000, 'order', 'big-1', NULL, '2026-05-01 10:00Z') AS to_4950;
SELECT * FROM pg_temp.balances(:'org') WHERE member = 'm3';
SELECT membership.earn_points(:'org', :'m3', 100, 'order', 'big-2', NULL, '2026-05-02 10:00Z') AS still_bronze,
       membership.earn_points(:'org', :'m3', 20000, 'order', 'big-3', NULL, '2026-05-03 10:00Z') AS crosses,
       membership.earn_points(:'org', :'m3', 1000, 'order', 'big-4', NULL, '2026-05-04 10:00Z') AS at_silver;
SELECT tier, tier_expires_at FROM membership.loyalty_accounts WHERE member_id = :'m3';
SELECT kind, subject, title, body FROM membership.loyalty_notices WHERE member_id = :'m3';

-- Batch: in order per member, a tier upgrade mid-batch raises the
-- multiplier of the member's later events; replays (of the past and of
-- earlier events in the batch) and bad events are reported per event.
SELECT idx, source_ref, points, status, error FROM membership.earn_points_batch(:'org', jsonb_build_array(
    jsonb_build_object('member_id', :'m4', 'amount_cents', 480000, 'source_type', 'order', 'source_ref', 'b-1',
                       'occurred_at', '2026-06-01T10:00:00Z'),
    jsonb_build_object('external_id', 'm4', 'amount_cents', 1000, 'source_type', 'order', 'source_ref', 'b-2',
                       'occurred_at', '2026-06-01T11:00:00Z'),
    jsonb_build_object('external_id', 'm5', 'amount_cents', 3000, 'source_type', 'order', 'source_ref', 'b-3',
                       'category', 'books', 'occurred_at', '2026-06-01T11:30:00Z'),
    jsonb_build_object('external_id', 'm4', 'amount_cents', 10000, 'source_type', 'order', 'source_ref', 'b-4',
                       'occurred_at', '2026-06-01T12:00:00Z'),
    jsonb_build_object('external_id', 'm4', 'amount_cents', 1000, 'source_type', 'order', 'source_ref', 'b-5',
                       'occurred_at', '2026-06-01T13:00:00Z'),
    jsonb_build_object('external_id', 'm4', 'amount_cents', 10000, 'source_type', 'order', 'source_ref', 'b-4',
                       'occurred_at', '2026-06-01T12:00:00Z'),
    jsonb_build_object('external_id', 'm4', 'amount_cents', 99, 'source_type', 'order', 'source_ref', 'b-5'),
    jsonb_build_object('member_id', :'m1', 'amount_cents', 3000, 'source_type', 'order', 'source_ref', 'o-2',
                       'category', 'books'),
    jsonb_build_object('external_id', 'nobody', 'amount_cents', 100, 'source_type', 'order', 'source_ref', 'b-6'),
    jsonb_build_object('external_id', 'm5', 'amount_cents', -1, 'source_type', 'order', 'source_ref', 'b-7'),
    jsonb_build_object('external_id', 'm5', 'amount_cents', 'lots', 'source_type', 'order', 'source_ref', 'b-8'),
    jsonb_build_object('member_id', :'b1', 'amount_cents', 100, 'source_type', 'order', 'source_ref', 'b-9'),
    '"not an object"'::jsonb));
SELECT * FROM pg_temp.balances(:'org') WHERE member IN ('m4', 'm5');
SELECT fixture.try(format($$SELECT membership.earn_points_batch(%L, '{"events": []}')$$, :'org'));
SELECT count(*) AS empty_batch FROM membership.earn_points_batch(:'org', '[]');
-- a member_id in upper case is the same member (a replay of o-2)
SELECT idx, points, status, error FROM membership.earn_points_batch(:'org', jsonb_build_array(
    jsonb_build_object('member_id', upper(:'m1'), 'amount_cents', 3000, 'source_type', 'order',
                       'source_ref', 'o-2', 'category', 'books')));
-- How a batch reads amount_cents and member_id (a value it cannot read
-- rejects the event): an optional minus and 1 to 18 digits; 8-4-4-4-12
-- hexadecimal digits.
SELECT x AS amount_cents, membership.loyalty_int8_or_null(x) AS read
FROM unnest(ARRAY['12', '-0', '-', '', '123456789012345678', '1234567890123456789', '1a', ' 1', '+1']) AS x;
SELECT x AS member_id, membership.loyalty_uuid_or_null(x) AS read
FROM unnest(ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
                  'a0eebc999c0b4ef8bb6d6bb9bd380a11', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
                  'a0eebc99-9c0b4-ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g', '']) AS x;

-- Redemption: buckets consumed oldest expiry first, partially, with
-- allocations.  m1's buckets expire 12 months after each earn.
SELECT ledger_id, points, remaining, expires_at FROM membership.loyalty_buckets WHERE member_id = :'m1' ORDER BY 1;
SELECT membership.redeem_points(:'org', :'m1', 550, 'r-1', order_value_cents => 5000) AS redeemed;
SELECT b.points, b.remaining, a.points AS allocated
FROM membership.loyalty_buckets b
LEFT JOIN membership.loyalty_allocations a ON a.bucket_id = b.ledger_id
WHERE b.member_id = :'m1' ORDER BY b.ledger_id;
-- A replay returns the first result and writes nothing; other parameters raise.
SELECT membership.redeem_points(:'org', :'m1', 550, 'r-1', order_value_cents => 5000) AS replayed;
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 551, 'r-1', order_value_cents => 5000)$$, :'org', :'m1'));
-- The cap: at most 50% of the order's value.
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 600, 'r-2', order_value_cents => 1000)$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 100000, 'r-3', order_value_cents => 100000000)$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 0, 'r-4', order_value_cents => 1000)$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, -10, 'r-5', order_value_cents => 1000)$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 10000000000, 'r-6', order_value_cents => 1000)$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 10, 'r-7')$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 10, 'r-8', option_id => gen_random_uuid())$$, :'org', :'m1'));
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 10, 'r-9', 1000)$$, :'org', gen_random_uuid()));

-- Refund after partial redemption: m2 has 520 from actions; a first
-- purchase earns 1750 (1000 + 250 threshold + 500 welcome), 1400 are
-- redeemed, then the purchase is refunded: 870 left to claw back, 880
-- shortfall, and the balance stays at zero.
SELECT membership.earn_points(:'org', :'m2', 100000, 'order', 'refund-me', NULL, '2026-07-01 10:00Z') AS earned;
SELECT membership.redeem_points(:'org', :'m2', 1400, 'r-m2', order_value_cents => 1000000) ->> 'balance' AS balance;
SELECT membership.reverse_earn(:'org', 'order', 'refund-me') - 'member_id' AS reversed;
SELECT membership.reverse_earn(:'org', 'order', 'refund-me') - 'member_id' AS reversed_again;
SELECT fixture.try(format($$SELECT membership.reverse_earn(%L, 'order', 'never-was')$$, :'org'));
SELECT kind, points, balance_after, shortfall FROM membership.loyalty_ledger WHERE member_id = :'m2' ORDER BY id;
SELECT * FROM pg_temp.balances(:'org') WHERE member = 'm2';

-- Expiry, rolling model, time passed explicitly.  m1's February buckets
-- expire on 2027-02-10 (redeemed) and -11 (30 of 60 left): the reminder
-- 30 days ahead, once; then only the remainder expires, once.
SELECT membership.expire_points('2027-01-15') AS expired_jan;
SELECT kind, subject, title FROM membership.loyalty_notices WHERE member_id = :'m1' ORDER BY id;
SELECT membership.expire_points('2027-01-16') AS rerun, count(*) AS reminders
FROM membership.loyalty_notices WHERE member_id = :'m1';
SELECT membership.expire_points('2027-02-11') AS expired_feb;
SELECT membership.expire_points('2027-02-11') AS rerun_feb;
SELECT points, remaining, expired, expires_at FROM membership.loyalty_buckets WHERE member_id = :'m1' ORDER BY ledger_id;
SELECT kind, points, balance_after, details FROM membership.loyalty_ledger
WHERE member_id = :'m1' AND kind = 'EXPIRE' ORDER BY id;
SELECT membership.loyalty_summary(:'org', :'m1', '2027-02-11') - 'tier_expires_at' AS summary;

-- Options: a reward code is issued.
SELECT membership.add_redemption_option(:'org', 'free_item', 'Free coffee', 300, 350) AS coffee_option \gset
SELECT fixture.try(format($$SELECT membership.add_redemption_option(%L, 'voucher', 'x', 1, 1)$$, :'org'));
SELECT fixture.try(format($$SELECT membership.add_redemption_option(%L, 'discount', 'x', 0, 1)$$, :'org'));
SELECT r - 'reward_code' - 'option_id' AS redeemed, r ->> 'reward_code' ~ '^LR-[0-9A-F]{16}$' AS has_code
FROM membership.redeem_points(:'org', :'m1', NULL, 'r-10', option_id => :'coffee_option') r;
SELECT fixture.try(format($$SELECT membership.redeem_points(%L, %L, 299, 'r-11', option_id => %L)$$, :'org', :'m1', :'coffee_option'));
SELECT * FROM pg_temp.balances(:'org') WHERE member = 'm1';

-- Expiry, inactivity model (organisation B): nothing expires while the
-- member is active; everything after 12 months without activity.
SELECT membership.set_loyalty_program(:'org_b', '{"expiry_model": "inactivity"}') ->> 'expiry_model' AS model;
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'b-o1', NULL, '2026-01-10 10:00Z') AS e1,
       membership.earn_points(:'org_b', :'b1', 2000, 'order', 'b-o2', NULL, '2026-03-10 10:00Z') AS e2;
SELECT membership.redeem_points(:'org_b', :'b1', 5, 'b-r1', 1000) ->> 'balance' AS balance;
UPDATE membership.loyalty_accounts SET last_activity_at = '2026-03-10 10:00Z' WHERE member_id = :'b1';
SELECT membership.expire_points('2027-02-15') AS too_early;
SELECT kind, subject FROM membership.loyalty_notices WHERE member_id = :'b1';
SELECT membership.expire_points('2027-03-10') AS inactive;
SELECT * FROM pg_temp.balances(:'org_b');

-- Tier evaluation for 2026: m3 reached Silver in 2026 and keeps it until
-- the end of 2027; a member with no points in 2027 is scheduled down
-- after the 30 days' grace, with a notice, and goes down on the day.
SELECT membership.evaluate_tiers('2026-12-31') AS downgrades_2026;
SELECT m.external_id, a.tier, a.tier_expires_at, a.downgrade_to, a.downgrade_at
FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
WHERE a.organisation_id = :'org' ORDER BY 1;
SELECT membership.evaluate_tiers('2027-12-31') AS downgrades_2027;
SELECT membership.evaluate_tiers('2027-12-31') AS again;
SELECT m.external_id, a.tier, a.downgrade_to, a.downgrade_at
FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
WHERE a.organisation_id = :'org' AND a.downgrade_to IS NOT NULL ORDER BY 1;
SELECT kind, subject, body FROM membership.loyalty_notices WHERE member_id = :'m3' ORDER BY id;
SELECT membership.apply_tier_downgrades('2028-01-30') AS before_grace_ends,
       membership.apply_tier_downgrades('2028-01-31') AS applied;
SELECT m.external_id, a.tier, a.tier_expires_at, a.downgrade_to
FROM membership.loyalty_accounts a JOIN membership.members m ON m.id = a.member_id
WHERE a.organisation_id = :'org' ORDER BY 1;

-- Partners: A's bank earns 2 points per 100 cents and takes a point for
-- 0.5 cents; through its key, idempotent on its transaction id.
SELECT membership.set_loyalty_partner(:'org', 'led-a-bank', 2, 0.5);
SELECT membership_api.partner_earn(1000, 'tx-1', email => 'm1@led.example', api_key => fixture.key('led-a:provider'));
SELECT membership_api.partner_earn(1000, 'tx-1', email => 'm1@led.example', api_key => fixture.key('led-a:provider'));
SELECT fixture.try(format($$SELECT membership_api.partner_earn(2000, 'tx-1', email => 'm1@led.example', api_key => %L)$$, fixture.key('led-a:provider')));
SELECT fixture.try(format($$SELECT membership_api.partner_earn(1000, 'tx-2', email => 'nobody@led.example', api_key => %L)$$, fixture.key('led-a:provider')));
SELECT fixture.try(format($$SELECT membership_api.partner_earn(-1, 'tx-3', user_id => 'm1', api_key => %L)$$, fixture.key('led-a:provider')));
SELECT fixture.try(format($$SELECT membership_api.partner_earn(100, 'tx-4', user_id => 'm1', api_key => %L)$$, fixture.key('led-b:provider')));
SELECT membership_api.partner_balance(user_id => 'm1', api_key => fixture.key('led-a:provider'));
SELECT membership_api.partner_redeem(100, 'tx-5', user_id => 'm1', api_key => fixture.key('led-a:provider'));
SELECT membership_api.partner_redeem(100, 'tx-5', user_id => 'm1', api_key => fixture.key('led-a:provider'));
SELECT fixture.try(format($$SELECT membership_api.partner_redeem(100000, 'tx-6', user_id => 'm1', api_key => %L)$$, fixture.key('led-a:provider')));
SELECT partner, earn_transactions, earned_points, sales_cents, redeem_transactions, redeemed_points,
       redeemed_value_cents, reversed_points
FROM membership.partner_report(:'org', current_date);
SELECT membership_api.partner_statement(current_date, fixture.key('led-a:provider')) - 'period' AS statement;

-- The member API, through the gateway.
SELECT fixture.claims('member', 'led-a', 'm1') AS claims_m1 \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims_m1', false) IS NOT NULL AS claims;
SELECT membership_api.points() - 'tier_expires_at' - 'expiring_30_days' - 'expiring_60_days' - 'expiring_90_days'
    AS points;
SELECT kind, points, balance_after, source_type, category, partner, reward_code IS NOT NULL AS reward
FROM membership_api.points_history(max_rows => 5);
SELECT name, points_cost FROM membership_api.redemption_options();
SELECT membership_api.redeem(50, 'app-1', 1000) AS redeemed;
SELECT membership_api.redeem(50, 'app-1', 1000) AS replayed;
SELECT fixture.try($$SELECT membership_api.redeem(100000, 'app-2', 100000000)$$);
SELECT fixture.try($$SELECT * FROM membership_api.points_history(max_rows => 0)$$);
SELECT fixture.try($$SELECT membership_api.redeem(1, '', 1000)$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;

-- Every account reconciles.
SELECT * FROM membership.reconcile_ledger();

-- The ledger is append-only and balances cannot go negative, whoever
-- tries (even the owner of the tables).
BEGIN;
SET LOCAL ROLE membership_owner;
SELECT membership.set_tenant(:'org') IS NOT NULL AS tenant;
SELECT fixture.try('UPDATE membership.loyalty_ledger SET points = points + 1');
SELECT fixture.try('DELETE FROM membership.loyalty_ledger');
SET LOCAL client_min_messages = warning;
SELECT fixture.try('TRUNCATE membership.loyalty_ledger CASCADE');
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET balance = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET remaining = points + 1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format($$INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points,
    balance_after, idempotency_key) VALUES (%L, %L, 'ADJUST', 1, 1, 'earn:order:o-1')$$, :'org', :'m1'));
-- Each condition of the tables' CHECK constraints (one constraint per
-- table since 0.3): each refused row breaks exactly one; the two accepted
-- ledger rows are at the limits.
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET lifetime_points = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET qualifying_points = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET purchases = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET downgrade_to = %L WHERE member_id = %L', 'bronze', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_accounts SET downgrade_at = current_date WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET expired = points + 1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET remaining = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET expired = -1 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET remaining = 9223372036854775807, expired = 9223372036854775807 WHERE member_id = %L', :'m1'));
SELECT fixture.try(format('UPDATE membership.loyalty_buckets SET points = 0, remaining = 0, expired = 0 WHERE member_id = %L', :'m1'));
SELECT kind, points, key_length, shortfall, balance_after,
       fixture.try(format($$INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points,
           balance_after, idempotency_key, shortfall) VALUES (%L, %L, %L, %s, %s, %L, %s)$$, :'org', :'m1', kind,
           points, balance_after, CASE WHEN key_length IS NOT NULL THEN 'k-' || repeat('x', key_length - 2) END,
           shortfall)) AS result
FROM (VALUES ('GIFT', 1, 10, 0, 0), ('EARN', -1, 10, 0, 0), ('BONUS', -1, 10, 0, 0), ('REDEEM', 1, 10, 0, 0),
             ('REVERSAL', 1, 10, 0, 0), ('EXPIRE', 1, NULL, 0, 0), ('EXPIRE', -1, 10, 0, 0), ('ADJUST', 1, NULL, 0, 0),
             ('ADJUST', 1, 501, 0, 0), ('ADJUST', 1, 10, -1, 0), ('ADJUST', 1, 10, 0, -1),
             ('ADJUST', -1, 500, 0, 0), ('EXPIRE', -1, NULL, 0, 0)) AS t(kind, points, key_length, shortfall, balance_after)
ORDER BY kind, points, key_length;
ROLLBACK;

-- A broken account shows in the reconciliation, and the job fails on it.
UPDATE membership.loyalty_accounts SET balance = balance + 1 WHERE member_id = :'m5';
SELECT problem, detail FROM membership.reconcile_ledger() ORDER BY 1;
SELECT fixture.try('SELECT membership.reconcile_ledger_job()');
\set VERBOSITY sqlstate
CALL membership.run_job('reconcile_ledger');
\set VERBOSITY default
SELECT status, rows, regexp_replace(error, '[0-9a-f]{8}-[0-9a-f-]{27}', '<uuid>', 'g') AS error
FROM membership.job_runs WHERE job = 'reconcile_ledger' ORDER BY id DESC LIMIT 1;
UPDATE membership.loyalty_accounts SET balance = balance - 1 WHERE member_id = :'m5';
SELECT membership.reconcile_ledger_job() AS accounts_checked;
CALL membership.run_job('reconcile_ledger');
CALL membership.run_job('expire_points');
CALL membership.run_job('apply_tier_downgrades');
SELECT job, status, rows, error FROM membership.job_runs
WHERE job IN ('reconcile_ledger', 'expire_points', 'apply_tier_downgrades') ORDER BY id DESC LIMIT 3;

-- The jobs are registered.
SELECT job, schedule, command FROM membership.job_definitions()
WHERE job IN ('expire_points', 'apply_tier_downgrades', 'evaluate_tiers', 'reconcile_ledger') ORDER BY 1;

-- earn_points() keeps each program's settings, tiers and active rules in a
-- per-backend cache (src/ledger_earn.c): a change applies to the next
-- earn, in the changing transaction too, and a rolled-back one never does.
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-1') AS cached;
BEGIN;
SELECT membership.add_earn_rule(:'org_b', 'Gift', 'fixed_bonus', bonus_points => 7) IS NOT NULL AS added;
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-2') AS same_transaction;
ROLLBACK;
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-3') AS after_rollback;
SELECT membership.set_loyalty_program(:'org_b', '{"points_per_unit": 3}') ->> 'points_per_unit' AS rate;
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-4') AS new_rate;
SELECT tier FROM membership.loyalty_accounts WHERE member_id = :'b1';
SELECT membership.set_loyalty_tier(:'org_b', 'bronze', 0, 1.5);
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-5') AS new_multiplier;
SELECT membership.add_earn_rule(:'org_b', 'Late gift', 'fixed_bonus', bonus_points => 7) AS r_gift \gset
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-6') AS new_rule;
SELECT membership.set_earn_rule_active(:'org_b', :r_gift, false) AS switched_off;
SELECT membership.earn_points(:'org_b', :'b1', 1000, 'order', 'cache-7') AS rule_off;
SELECT count(*) AS problems FROM membership.reconcile_ledger();
-- ... and in every other session at its next earn: a second session
-- (dblink) earns with the program cached, this one changes a rule, the
-- other session's next earn applies the change.
CREATE SCHEMA ledger_dblink;
CREATE EXTENSION dblink SCHEMA ledger_dblink;
SELECT ledger_dblink.dblink_connect('other', format('host=%s port=%s dbname=%s',
    split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_database()));
SELECT points AS other_before FROM ledger_dblink.dblink('other', format(
    $$SELECT membership.earn_points(%L, %L, 1000, 'order', 'cache-8')$$, :'org_b', :'b1')) AS t(points bigint);
SELECT membership.add_earn_rule(:'org_b', 'Gift for all', 'fixed_bonus', bonus_points => 9) IS NOT NULL AS added;
SELECT points AS other_after FROM ledger_dblink.dblink('other', format(
    $$SELECT membership.earn_points(%L, %L, 1000, 'order', 'cache-9')$$, :'org_b', :'b1')) AS t(points bigint);
-- A change that bumps nothing (triggers off in replica mode): the other
-- session's cache lacks the account's new tier; its earn notices, reads
-- the program again and applies the tier's multiplier.
SET session_replication_role = replica;
INSERT INTO membership.loyalty_tiers (organisation_id, tier, threshold, multiplier) VALUES (:'org_b', 'diamond', 900000, 4);
UPDATE membership.loyalty_accounts SET tier = 'diamond' WHERE member_id = :'b1';
RESET session_replication_role;
SELECT points AS other_new_tier FROM ledger_dblink.dblink('other', format(
    $$SELECT membership.earn_points(%L, %L, 1000, 'order', 'cache-10')$$, :'org_b', :'b1')) AS t(points bigint);
SELECT ledger_dblink.dblink_disconnect('other');
DROP SCHEMA ledger_dblink CASCADE;

-- A single earn writes its rows without a statement (src/ledger_write.c):
-- whatever a statement would do still happens.  Several earns of one
-- member in one statement each see the one before; an earn of an old
-- year leaves the year's qualifying points alone; a leap day's bucket
-- expires on the last day of February.
SELECT membership_api.sync_members('[{"external_id": "b2"}]', 'delta', fixture.key('led-b:org')) IS NOT NULL AS synced;
SELECT membership.find_member(:'org_b', 'b2') AS b2, date_trunc('year', now()) + interval '1 hour' AS jan1 \gset
SELECT membership.earn_points(:'org_b', :'b2', 1000, 'order', 'ws-0', NULL, :'jan1') AS opened;
SELECT g, membership.earn_points(:'org_b', :'b2', 1000 * g, 'order', 'ws-' || g, NULL, :'jan1') AS points
FROM generate_series(1, 3) g;
SELECT membership.earn_points(:'org_b', :'b2', 2000, 'order', 'ws-leap', NULL, '2024-02-29 23:30Z') AS leap_day;
SELECT l.kind, l.source_ref, l.points, l.balance_after, b.remaining,
       CASE WHEN l.occurred_at = :'jan1' THEN b.expires_at = (date_trunc('year', now()) + interval '1 year')::date
            ELSE b.expires_at = '2025-02-28' END AS expires_as_due
FROM membership.loyalty_ledger l LEFT JOIN membership.loyalty_buckets b ON b.ledger_id = l.id
WHERE l.member_id = :'b2' ORDER BY l.id;
SELECT balance, lifetime_points, purchases, qualifying_year = extract(year FROM now()) AS this_year,
       qualifying_points
FROM membership.loyalty_accounts WHERE member_id = :'b2';
-- A key used twice in one statement: the second is a replay; used again
-- with other parameters: an error, and nothing written.
SELECT membership.earn_points(:'org_b', :'b2', 5000, 'order', 'ws-twice') AS first_time,
       membership.earn_points(:'org_b', :'b2', 5000, 'order', 'ws-twice') AS replayed;
\set VERBOSITY terse
SELECT membership.earn_points(:'org_b', :'b2', 7000, 'order', 'ws-twice') AS mismatched;
\set VERBOSITY default
SELECT count(*) AS entries, sum(points) AS points FROM membership.loyalty_ledger WHERE source_ref = 'ws-twice';
-- Row triggers someone adds fire: AFTER and BEFORE INSERT on the
-- ledger and the buckets (written beside the statement), BEFORE UPDATE on
-- the accounts (left to the statement).
CREATE FUNCTION public.ledger_note_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE '% % on %: %', TG_WHEN, TG_OP, TG_TABLE_NAME,
        to_jsonb(NEW) ->> CASE TG_TABLE_NAME WHEN 'loyalty_accounts' THEN 'balance'
                                             WHEN 'loyalty_buckets' THEN 'remaining' ELSE 'source_ref' END;
    RETURN NEW;
END
$$;
CREATE TRIGGER note_after AFTER INSERT ON membership.loyalty_ledger
    FOR EACH ROW EXECUTE FUNCTION public.ledger_note_row();
CREATE TRIGGER note_before BEFORE INSERT ON membership.loyalty_buckets
    FOR EACH ROW EXECUTE FUNCTION public.ledger_note_row();
SELECT membership.earn_points(:'org_b', :'b2', 1000, 'order', 'ws-triggers') AS with_insert_triggers;
DROP TRIGGER note_after ON membership.loyalty_ledger;
DROP TRIGGER note_before ON membership.loyalty_buckets;
CREATE TRIGGER note_update BEFORE UPDATE ON membership.loyalty_accounts
    FOR EACH ROW EXECUTE FUNCTION public.ledger_note_row();
SELECT membership.earn_points(:'org_b', :'b2', 1000, 'order', 'ws-update-trigger') AS with_update_trigger;
DROP TRIGGER note_update ON membership.loyalty_accounts;
-- A statement trigger on the ledger: single earns and batches go through
-- statements, and it fires for each.
CREATE FUNCTION public.ledger_note_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE '% % on % (statement)', TG_WHEN, TG_OP, TG_TABLE_NAME;
    RETURN NULL;
END
$$;
CREATE TRIGGER note_statement AFTER INSERT ON membership.loyalty_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_note_statement();
SELECT membership.earn_points(:'org_b', :'b2', 1000, 'order', 'ws-statement') AS with_statement_trigger;
SELECT idx, points, status FROM membership.earn_points_batch(:'org_b', format(
    '[{"member_id": "%s", "amount_cents": 1000, "source_type": "order", "source_ref": "ws-batch-1"},
      {"member_id": "%s", "amount_cents": 2000, "source_type": "order", "source_ref": "ws-batch-2"}]', :'b2', :'b2')::jsonb);
DROP TRIGGER note_statement ON membership.loyalty_ledger;
DROP FUNCTION public.ledger_note_statement();
-- And without it, the same batch again: replays; a new one: earned.
SELECT idx, points, status FROM membership.earn_points_batch(:'org_b', format(
    '[{"member_id": "%s", "amount_cents": 1000, "source_type": "order", "source_ref": "ws-batch-1"},
      {"member_id": "%s", "amount_cents": 3000, "source_type": "order", "source_ref": "ws-batch-3"}]', :'b2', :'b2')::jsonb);
DROP FUNCTION public.ledger_note_row();
-- REPEATABLE READ: the statement writes, with the transaction's snapshot.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT membership.earn_points(:'org_b', :'b2', 1000, 'order', 'ws-rr') AS repeatable_read;
COMMIT;
-- The foreign keys the earn proves by construction still stop others.
\set VERBOSITY terse
INSERT INTO membership.loyalty_buckets (organisation_id, member_id, ledger_id, points, remaining, earned_at, expires_at)
VALUES (:'org_b', :'b2', -1, 5, 5, now(), current_date);
INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points, balance_after, idempotency_key)
VALUES (:'org_b', :'m1', 'ADJUST', 5, 5, 'no such account');
\set VERBOSITY default
SELECT balance, (SELECT sum(points) FROM membership.loyalty_ledger l WHERE l.member_id = a.member_id) AS ledger_sum
FROM membership.loyalty_accounts a WHERE member_id = :'b2';
SELECT count(*) AS problems FROM membership.reconcile_ledger();
