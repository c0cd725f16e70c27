-- Loyalty ledger, release 0.3 (issue #4 benchmarks): earn_points() in C
-- (src/ledger_earn.c).  Same signature, semantics and errors as the
-- PL/pgSQL version of 0.2; it locks the account, applies the rules from a
-- per-backend cache of the organisation's program, tiers and active earn
-- rules, and writes the ledger entry, the bucket and the account in one
-- saved statement.

-- The cache is stale for every backend once a change to a program, its
-- tiers or its rules commits.
CREATE FUNCTION membership.loyalty_program_changed() RETURNS trigger
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'membership_loyalty_program_changed';
CREATE TRIGGER loyalty_programs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON membership.loyalty_programs
    FOR EACH STATEMENT EXECUTE FUNCTION membership.loyalty_program_changed();
CREATE TRIGGER loyalty_tiers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON membership.loyalty_tiers
    FOR EACH STATEMENT EXECUTE FUNCTION membership.loyalty_program_changed();
CREATE TRIGGER loyalty_earn_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON membership.loyalty_earn_rules
    FOR EACH STATEMENT EXECUTE FUNCTION membership.loyalty_program_changed();

CREATE OR REPLACE FUNCTION membership.earn_points(organisation uuid, member uuid, amount_cents bigint,
                                                  source_type text, source_ref text, category text DEFAULT NULL,
                                                  occurred_at timestamptz DEFAULT NULL, partner uuid DEFAULT NULL)
    RETURNS bigint
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS 'MODULE_PATHNAME', 'membership_earn_points';
