-- Every routine (function or procedure) of the extension is owned by the owner role (so security
-- definer functions run subject to row-level security, and the owner may
-- call the internal ones) and executable by PUBLIC never: each function
-- grants EXECUTE to exactly the roles that may call it.  Each release ends
-- by calling this.  ALTER ROUTINE, not ALTER FUNCTION, so that procedures
-- (such as membership.run_job) follow the same rules.
CREATE FUNCTION membership.finish_release() RETURNS void
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

SELECT membership.finish_release();
