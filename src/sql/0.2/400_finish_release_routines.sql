-- finish_release() of 0.1 handles functions only, with ALTER FUNCTION and
-- REVOKE ... ON FUNCTION, which fail on a procedure.  The job runner
-- (membership.run_job, 405_jobs.sql) is the extension's first procedure,
-- so from 0.2 on every routine goes through ALTER ROUTINE: the same rules,
-- functions and procedures alike.
CREATE OR REPLACE FUNCTION membership.finish_release() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                        AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'membership'
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO membership_owner', f);
        EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$$;
