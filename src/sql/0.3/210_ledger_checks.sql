-- Loyalty ledger, release 0.3 (issue #4 benchmarks): one CHECK constraint
-- per table that an earn writes, instead of fifteen.  PostgreSQL reads and
-- prepares every CHECK expression of a table again at each statement that
-- writes it; for a single earn that was a sixth of its time.  The
-- conditions are the same (a conjunction fails exactly when one of its
-- parts does):
--   - an account: balance, lifetime and qualifying points and purchases
--     not negative; a downgrade has both its tier and its date;
--   - a ledger entry: balance_after not negative, and the rest in
--     membership.loyalty_entry_is_valid() (src/ledger.c): the kind is one
--     of the six, EARN and BONUS add, REDEEM, EXPIRE and REVERSAL take
--     away, only EXPIRE entries have no idempotency key, keys are at most
--     500 characters, the shortfall is not negative;
--   - a bucket: points positive, remaining and expired not negative and
--     together at most points (which implies each is at most points).
CREATE FUNCTION membership.loyalty_entry_is_valid(kind text, points bigint, idempotency_key text,
                                                  shortfall bigint)
    RETURNS boolean
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_entry_is_valid';
COMMENT ON FUNCTION membership.loyalty_entry_is_valid(text, bigint, text, bigint) IS
    'the CHECK of a loyalty ledger entry besides its balance: kind, sign of the points, idempotency key, shortfall';

ALTER TABLE membership.loyalty_accounts
    DROP CONSTRAINT loyalty_accounts_balance_check,
    DROP CONSTRAINT loyalty_accounts_lifetime_points_check,
    DROP CONSTRAINT loyalty_accounts_qualifying_points_check,
    DROP CONSTRAINT loyalty_accounts_purchases_check,
    DROP CONSTRAINT loyalty_accounts_check,
    ADD CONSTRAINT loyalty_accounts_balance_check
        CHECK (balance >= 0 AND lifetime_points >= 0 AND qualifying_points >= 0 AND purchases >= 0
               AND (downgrade_to IS NULL) = (downgrade_at IS NULL));
ALTER TABLE membership.loyalty_ledger
    DROP CONSTRAINT loyalty_ledger_kind_check,
    DROP CONSTRAINT loyalty_ledger_balance_after_check,
    DROP CONSTRAINT loyalty_ledger_idempotency_key_check,
    DROP CONSTRAINT loyalty_ledger_shortfall_check,
    DROP CONSTRAINT loyalty_ledger_check,
    DROP CONSTRAINT loyalty_ledger_check1,
    ADD CONSTRAINT loyalty_ledger_check
        CHECK (balance_after >= 0 AND membership.loyalty_entry_is_valid(kind, points, idempotency_key, shortfall));
ALTER TABLE membership.loyalty_buckets
    DROP CONSTRAINT loyalty_buckets_points_check,
    DROP CONSTRAINT loyalty_buckets_check,
    DROP CONSTRAINT loyalty_buckets_check1,
    DROP CONSTRAINT loyalty_buckets_check2,
    ADD CONSTRAINT loyalty_buckets_check
        CHECK (points > 0 AND remaining >= 0 AND expired >= 0 AND remaining + expired <= points);
