-- Loyalty ledger (DESIGN.md 4.3, issue #4): the tables and the invariants
-- the database itself enforces.
--
--   loyalty_programs     one row per organisation: earn rate, expiry model,
--                        point value, redemption cap, downgrade grace
--   loyalty_tiers        the tier table of each program
--   loyalty_earn_rules   DB-driven earn rules (multipliers, bonuses, ...)
--   loyalty_accounts     per member: cached balance, lifetime and qualifying
--                        points, tier; balance >= 0 is a CHECK
--   loyalty_ledger       append-only point transactions; one entry per
--                        idempotency key, forever
--   loyalty_buckets      what is left of each earn, and when it expires
--   loyalty_allocations  which buckets each redemption or reversal consumed
--   loyalty_options      what members can redeem points for
--   loyalty_rewards      reward codes issued for redeemed options
--   loyalty_partners     partner (provider) earn and exchange rates
--   loyalty_notices      expiry reminders and tier notices, once each
--
-- Every change of an account's balance or buckets happens with the
-- account row locked (the functions take it first), so concurrent
-- redemptions of one account serialise; the CHECK constraints below make
-- an overdraft impossible even for code that forgets.

CREATE TABLE membership.loyalty_programs (
    organisation_id      uuid PRIMARY KEY REFERENCES membership.organisations (id) ON DELETE CASCADE,
    points_per_unit      numeric NOT NULL DEFAULT 1 CHECK (points_per_unit >= 0 AND points_per_unit <= 1000),
    unit_cents           integer NOT NULL DEFAULT 100 CHECK (unit_cents > 0),
    expiry_model         text NOT NULL DEFAULT 'rolling' CHECK (expiry_model IN ('rolling', 'inactivity')),
    expiry_months        integer NOT NULL DEFAULT 12 CHECK (expiry_months BETWEEN 1 AND 120),
    point_value_cents    numeric NOT NULL DEFAULT 1 CHECK (point_value_cents > 0),
    redemption_cap_pct   numeric NOT NULL DEFAULT 50 CHECK (redemption_cap_pct > 0 AND redemption_cap_pct <= 100),
    downgrade_grace_days integer NOT NULL DEFAULT 30 CHECK (downgrade_grace_days BETWEEN 0 AND 365),
    updated_at           timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE membership.loyalty_programs IS
    'tenant: each organisation''s loyalty program settings (created with the defaults on first use)';
SELECT membership.isolate_table('membership.loyalty_programs');

CREATE TABLE membership.loyalty_tiers (
    organisation_id uuid NOT NULL REFERENCES membership.loyalty_programs (organisation_id) ON DELETE CASCADE,
    tier            text NOT NULL CHECK (tier ~ '^[a-z][a-z0-9_]{0,31}$'),
    threshold       bigint NOT NULL CHECK (threshold >= 0),
    multiplier      numeric NOT NULL CHECK (multiplier > 0 AND multiplier <= 100),
    perks           jsonb NOT NULL DEFAULT '[]' CHECK (pg_catalog.jsonb_typeof(perks) = 'array'),
    PRIMARY KEY (organisation_id, tier),
    UNIQUE (organisation_id, threshold)
);
COMMENT ON TABLE membership.loyalty_tiers IS
    'tenant: each program''s tiers: qualifying points needed in a calendar year, earn multiplier, perks';
SELECT membership.isolate_table('membership.loyalty_tiers');

-- Rule kinds.  Purchases (amount_cents > 0): category_multiplier (the
-- highest-priority match multiplies the base points), fixed_bonus (points
-- added to every purchase, optionally of one category), order_threshold
-- (points added when the order reaches min_amount_cents), first_purchase
-- (points added to the member's first purchase).  Actions (source_type
-- equal to the kind, no amount): signup, review, referral.  Of each kind
-- only the highest-priority rule that applies counts; kinds add up.
CREATE TABLE membership.loyalty_earn_rules (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id  uuid NOT NULL REFERENCES membership.loyalty_programs (organisation_id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (pg_catalog.btrim(name) <> '' AND pg_catalog.length(name) <= 200),
    kind             text NOT NULL CHECK (kind IN ('category_multiplier', 'fixed_bonus', 'order_threshold',
                                                   'first_purchase', 'signup', 'review', 'referral')),
    category         text CHECK (pg_catalog.length(category) BETWEEN 1 AND 100),
    multiplier       numeric CHECK (multiplier > 0 AND multiplier <= 100),
    bonus_points     bigint CHECK (bonus_points > 0 AND bonus_points <= 10000000),
    min_amount_cents bigint CHECK (min_amount_cents > 0),
    priority         integer NOT NULL DEFAULT 0,
    valid_from       timestamptz,
    valid_until      timestamptz,
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (valid_until > valid_from),
    CHECK ((kind = 'category_multiplier') = (multiplier IS NOT NULL)),
    CHECK ((kind = 'category_multiplier') = (bonus_points IS NULL)),
    CHECK ((kind = 'category_multiplier') <= (category IS NOT NULL)),
    CHECK ((kind = 'order_threshold') = (min_amount_cents IS NOT NULL))
);
CREATE INDEX loyalty_earn_rules_organisation_idx ON membership.loyalty_earn_rules (organisation_id, kind, priority DESC);
COMMENT ON TABLE membership.loyalty_earn_rules IS
    'tenant: each program''s earn rules, read at every earn (a change applies to the next earn)';
SELECT membership.isolate_table('membership.loyalty_earn_rules');

CREATE TABLE membership.loyalty_accounts (
    organisation_id   uuid NOT NULL,
    member_id         uuid PRIMARY KEY,
    balance           bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    lifetime_points   bigint NOT NULL DEFAULT 0 CHECK (lifetime_points >= 0),
    qualifying_year   integer NOT NULL DEFAULT pg_catalog.date_part('year', pg_catalog.now())::integer,
    qualifying_points bigint NOT NULL DEFAULT 0 CHECK (qualifying_points >= 0),
    purchases         bigint NOT NULL DEFAULT 0 CHECK (purchases >= 0),
    tier              text NOT NULL,
    tier_expires_at   date,
    downgrade_to      text,
    downgrade_at      date,
    last_activity_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((downgrade_to IS NULL) = (downgrade_at IS NULL)),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE,
    FOREIGN KEY (organisation_id, tier) REFERENCES membership.loyalty_tiers (organisation_id, tier),
    UNIQUE (member_id, organisation_id)
)
-- Every earn, redemption and expiry rewrites the account row; none of
-- them changes an indexed column, so with room left on each page the new
-- version stays on it (a HOT update: no new entries in the four indexes).
-- A batch rewrites many rows of a page in one transaction, before any old
-- version can be pruned, hence the generous room.
WITH (fillfactor = 60);
CREATE INDEX loyalty_accounts_organisation_idx ON membership.loyalty_accounts (organisation_id);
CREATE INDEX loyalty_accounts_downgrade_idx ON membership.loyalty_accounts (organisation_id, downgrade_at)
    WHERE downgrade_at IS NOT NULL;
COMMENT ON TABLE membership.loyalty_accounts IS
    'tenant: each member''s points account; balance is a cache of the ledger and never negative';
SELECT membership.isolate_table('membership.loyalty_accounts');

-- Point transactions.  points is signed: EARN, BONUS and partner earns add,
-- REDEEM, EXPIRE and REVERSAL take away, ADJUST either.  idempotency_key
-- ("earn:<source_type>:<source_ref>", "redeem:<request_id>",
-- "reverse:<source_type>:<source_ref>", "partner:<provider>:<txn>") is
-- unique per organisation for ever; EXPIRE rows have none (their buckets
-- make expiry idempotent).
CREATE TABLE membership.loyalty_ledger (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id  uuid NOT NULL,
    member_id        uuid NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('EARN', 'BONUS', 'REDEEM', 'EXPIRE', 'ADJUST', 'REVERSAL')),
    points           bigint NOT NULL,
    balance_after    bigint NOT NULL CHECK (balance_after >= 0),
    idempotency_key  text CHECK (pg_catalog.length(idempotency_key) <= 500),
    source_type      text,
    source_ref       text,
    amount_cents     bigint,
    category         text,
    provider_id      uuid REFERENCES membership.providers (id),
    shortfall        bigint NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
    details          jsonb NOT NULL DEFAULT '{}',
    occurred_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (CASE WHEN kind IN ('EARN', 'BONUS') THEN points >= 0
                WHEN kind IN ('REDEEM', 'EXPIRE', 'REVERSAL') THEN points <= 0
                ELSE true END),
    CHECK ((kind = 'EXPIRE') = (idempotency_key IS NULL)),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.loyalty_accounts (member_id, organisation_id)
);
CREATE UNIQUE INDEX loyalty_ledger_idempotency_idx ON membership.loyalty_ledger (organisation_id, idempotency_key);
CREATE INDEX loyalty_ledger_member_idx ON membership.loyalty_ledger (member_id, id);
CREATE INDEX loyalty_ledger_partner_idx ON membership.loyalty_ledger (provider_id, recorded_at)
    WHERE provider_id IS NOT NULL;
COMMENT ON TABLE membership.loyalty_ledger IS
    'tenant: append-only point transactions, the source of truth of every balance';
SELECT membership.isolate_table('membership.loyalty_ledger');

-- Nobody may change or remove a ledger row, not even the owner: the
-- error is insufficient_privilege, like any other refused write.
CREATE FUNCTION membership.loyalty_ledger_is_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('the loyalty ledger is append-only: %s is not allowed', lower(TG_OP)),
        HINT = 'Correct a transaction with a new ADJUST or REVERSAL entry.';
END
$$;
CREATE TRIGGER loyalty_ledger_no_update BEFORE UPDATE OR DELETE ON membership.loyalty_ledger
    FOR EACH ROW EXECUTE FUNCTION membership.loyalty_ledger_is_append_only();
CREATE TRIGGER loyalty_ledger_no_truncate BEFORE TRUNCATE ON membership.loyalty_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION membership.loyalty_ledger_is_append_only();

-- What is left of each earn, keyed by the earn's ledger entry.  points -
-- remaining = what allocations took + what expired.
CREATE TABLE membership.loyalty_buckets (
    ledger_id       bigint PRIMARY KEY REFERENCES membership.loyalty_ledger (id),
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    points          bigint NOT NULL CHECK (points > 0),
    remaining       bigint NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    expired         bigint NOT NULL DEFAULT 0 CHECK (expired >= 0 AND expired <= points),
    earned_at       timestamptz NOT NULL,
    expires_at      date NOT NULL,
    expired_at      timestamptz,
    CHECK (remaining + expired <= points)
);
CREATE INDEX loyalty_buckets_organisation_idx ON membership.loyalty_buckets (organisation_id, expires_at)
    WHERE remaining > 0;
CREATE INDEX loyalty_buckets_member_idx ON membership.loyalty_buckets (member_id, expires_at, ledger_id)
    WHERE remaining > 0;
COMMENT ON TABLE membership.loyalty_buckets IS
    'tenant: expiry buckets: what remains of each earn and when it expires';
SELECT membership.isolate_table('membership.loyalty_buckets');

CREATE TABLE membership.loyalty_allocations (
    organisation_id uuid NOT NULL,
    ledger_id       bigint NOT NULL REFERENCES membership.loyalty_ledger (id),
    bucket_id       bigint NOT NULL REFERENCES membership.loyalty_buckets (ledger_id),
    points          bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (ledger_id, bucket_id)
);
CREATE INDEX loyalty_allocations_organisation_idx ON membership.loyalty_allocations (organisation_id);
CREATE INDEX loyalty_allocations_bucket_idx ON membership.loyalty_allocations (bucket_id);
COMMENT ON TABLE membership.loyalty_allocations IS
    'tenant: the buckets each redemption or reversal consumed, and how much of each';
SELECT membership.isolate_table('membership.loyalty_allocations');

CREATE TABLE membership.loyalty_options (
    id              uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    organisation_id uuid NOT NULL REFERENCES membership.loyalty_programs (organisation_id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('discount', 'free_item', 'gift_card', 'partner_reward')),
    name            text NOT NULL CHECK (pg_catalog.btrim(name) <> '' AND pg_catalog.length(name) <= 200),
    points_cost     bigint NOT NULL CHECK (points_cost > 0 AND points_cost <= 100000000),
    value_cents     bigint NOT NULL CHECK (value_cents >= 0),
    provider_id     uuid REFERENCES membership.providers (id),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((kind = 'partner_reward') = (provider_id IS NOT NULL)),
    UNIQUE (id, organisation_id)
);
CREATE INDEX loyalty_options_organisation_idx ON membership.loyalty_options (organisation_id);
COMMENT ON TABLE membership.loyalty_options IS
    'tenant: redemption options (discount, free item, gift card, partner reward) and their cost in points';
SELECT membership.isolate_table('membership.loyalty_options');

CREATE TABLE membership.loyalty_rewards (
    code            text PRIMARY KEY,
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    ledger_id       bigint NOT NULL UNIQUE REFERENCES membership.loyalty_ledger (id),
    option_id       uuid NOT NULL,
    value_cents     bigint NOT NULL,
    issued_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    FOREIGN KEY (option_id, organisation_id) REFERENCES membership.loyalty_options (id, organisation_id),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.loyalty_accounts (member_id, organisation_id)
);
CREATE INDEX loyalty_rewards_organisation_idx ON membership.loyalty_rewards (organisation_id);
CREATE INDEX loyalty_rewards_member_idx ON membership.loyalty_rewards (member_id);
COMMENT ON TABLE membership.loyalty_rewards IS
    'tenant: reward codes issued for redeemed options';
SELECT membership.isolate_table('membership.loyalty_rewards');

-- A provider acting as a partner of an organisation's program: points it
-- awards per currency unit of its sales, and what a point is worth when
-- redeemed with it (exchange_cents per point).
CREATE TABLE membership.loyalty_partners (
    organisation_id uuid NOT NULL REFERENCES membership.loyalty_programs (organisation_id) ON DELETE CASCADE,
    provider_id     uuid NOT NULL REFERENCES membership.providers (id),
    points_per_unit numeric NOT NULL CHECK (points_per_unit > 0 AND points_per_unit <= 1000),
    unit_cents      integer NOT NULL DEFAULT 100 CHECK (unit_cents > 0),
    exchange_cents  numeric NOT NULL CHECK (exchange_cents > 0),
    active          boolean NOT NULL DEFAULT true,
    PRIMARY KEY (organisation_id, provider_id)
);
COMMENT ON TABLE membership.loyalty_partners IS
    'tenant: providers that earn and redeem points with an organisation''s program, and their rates';
SELECT membership.isolate_table('membership.loyalty_partners');

-- Notices for members (expiry reminders, tier upgrades, downgrade
-- notices), recorded once per member, kind and subject.  The job
-- send_loyalty_notices hands each to the notification outbox
-- (390_loyalty_notices.sql) and notes the notification it became.
CREATE TABLE membership.loyalty_notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('points_expiring', 'tier_upgrade', 'tier_downgrade_notice',
                                                  'tier_downgrade')),
    subject         text NOT NULL CHECK (subject <> '' AND pg_catalog.length(subject) <= 200),
    title           text NOT NULL,
    body            text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    notification_id bigint,         -- its row in the outbox; NULL until it is handed over
    UNIQUE (member_id, kind, subject),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX loyalty_notices_organisation_idx ON membership.loyalty_notices (organisation_id, recorded_at);
CREATE INDEX loyalty_notices_pending_idx ON membership.loyalty_notices (organisation_id, member_id)
    WHERE notification_id IS NULL;
COMMENT ON TABLE membership.loyalty_notices IS
    'tenant: loyalty notices to members, once per member, kind and subject';
SELECT membership.isolate_table('membership.loyalty_notices');
