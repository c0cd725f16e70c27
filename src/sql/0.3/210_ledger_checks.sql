-- Loyalty ledger, release 0.3 (issue #4 benchmarks): one small CHECK
-- constraint per table that an earn writes, instead of fifteen.
-- PostgreSQL reads and prepares every CHECK expression of a table again at
-- each statement that writes it (from its stored node tree, whose size is
-- what costs); for a single earn the fifteen were a sixth of its time.
-- Each table keeps its balance rule in plain SQL and has the rest checked
-- by one immutable C function (src/ledger.c), with the same conditions as
-- before (a conjunction fails exactly when one of its parts does):
--   - an account: balance >= 0; lifetime and qualifying points and
--     purchases not negative; a downgrade has both its tier and its date;
--   - a ledger entry: balance_after >= 0; the kind is one of the six, EARN
--     and BONUS add, REDEEM, EXPIRE and REVERSAL take away (ADJUST either),
--     only EXPIRE entries have no idempotency key, a key is at most 500
--     characters, the shortfall is not negative;
--   - a bucket: points positive, remaining and expired not negative and
--     together at most points (which implies each is at most points).
CREATE FUNCTION membership.loyalty_account_is_valid(lifetime_points bigint, qualifying_points bigint,
                                                    purchases bigint, downgrade_to text, downgrade_at date)
    RETURNS boolean
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_account_is_valid';
COMMENT ON FUNCTION membership.loyalty_account_is_valid(bigint, bigint, bigint, text, date) IS
    'the CHECK of a loyalty account besides its balance: counters not negative, a downgrade has tier and date';

CREATE FUNCTION membership.loyalty_entry_is_valid(kind text, points bigint, idempotency_key text,
                                                  shortfall bigint)
    RETURNS boolean
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_entry_is_valid';
COMMENT ON FUNCTION membership.loyalty_entry_is_valid(text, bigint, text, bigint) IS
    'the CHECK of a loyalty ledger entry besides its balance: kind, sign of the points, idempotency key, shortfall';

CREATE FUNCTION membership.loyalty_bucket_is_valid(points bigint, remaining bigint, expired bigint)
    RETURNS boolean
    LANGUAGE C IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_bucket_is_valid';
COMMENT ON FUNCTION membership.loyalty_bucket_is_valid(bigint, bigint, bigint) IS
    'the CHECK of an expiry bucket: points positive, remaining and expired not negative and within points';

ALTER TABLE membership.loyalty_accounts
    DROP CONSTRAINT loyalty_accounts_balance_check,
    DROP CONSTRAINT loyalty_accounts_lifetime_points_check,
    DROP CONSTRAINT loyalty_accounts_qualifying_points_check,
    DROP CONSTRAINT loyalty_accounts_purchases_check,
    DROP CONSTRAINT loyalty_accounts_check,
    ADD CONSTRAINT loyalty_accounts_balance_check
        CHECK (balance >= 0 AND membership.loyalty_account_is_valid(lifetime_points, qualifying_points, purchases,
                                                                    downgrade_to, downgrade_at));
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
    ADD CONSTRAINT loyalty_buckets_check CHECK (membership.loyalty_bucket_is_valid(points, remaining, expired));
