-- Reference for the single-earn benchmark: the plain way to earn points in
-- PL/pgSQL: insert a ledger row, then add the points to the balance.  No
-- rules, no tiers, no buckets, no idempotency check beyond the unique
-- index, and it runs as a superuser, so row-level security costs it
-- nothing.  Its tables hold one account per member, like the ledger's.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.ref_accounts (
    member_id uuid PRIMARY KEY,
    balance   bigint NOT NULL DEFAULT 0 CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS bench.ref_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id   uuid NOT NULL REFERENCES bench.ref_accounts (member_id),
    points      bigint NOT NULL,
    source_type text NOT NULL,
    source_ref  text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_type, source_ref)
);
CREATE INDEX IF NOT EXISTS ref_ledger_member_idx ON bench.ref_ledger (member_id);
CREATE OR REPLACE FUNCTION bench.earn_points_plpgsql(organisation uuid, member uuid, amount_cents bigint,
                                                     source_type text, source_ref text)
    RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    v_points bigint := amount_cents / 100;
BEGIN
    INSERT INTO bench.ref_ledger (member_id, points, source_type, source_ref)
    VALUES (member, v_points, source_type, source_ref);
    UPDATE bench.ref_accounts a SET balance = a.balance + v_points WHERE a.member_id = member;
    RETURN v_points;
END
$$;
