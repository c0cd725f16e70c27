-- Coverage of erasure, export and the purge (issue #7), by walking the
-- catalog: a table added later that holds a member's or an organisation's
-- data fails here until membership.personal_data says how erasure treats
-- it, and the purge reaches every tenant table by construction.
BEGIN;
SELECT plan(9);

CREATE TEMPORARY VIEW ext_tables AS
SELECT c.oid, c.relname,
       c.relname = 'organisations'
       OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'organisation_id' AND NOT a.attisdropped) AS tenant,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
               AND a.attname IN ('member_id', 'email', 'email_hash', 'subject_hash', 'external_id',
                                 'token')) AS personal_columns,
       EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f'
               AND k.confrelid = 'membership.members'::regclass) AS refers_to_members
FROM pg_class c
WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
  AND c.relkind IN ('r', 'p');

SELECT set_eq(
    'SELECT relname::text FROM ext_tables WHERE tenant',
    'SELECT table_name::text FROM membership.personal_data',
    'every tenant table, and nothing else, is in membership.personal_data');

SELECT is_empty(
    $$SELECT relname FROM ext_tables WHERE NOT tenant AND (personal_columns OR refers_to_members)$$,
    'no platform table holds member data (such a table would escape the purge)');

SELECT is_empty(
    $$SELECT t.relname FROM ext_tables t JOIN membership.personal_data p ON p.table_name = t.relname
      WHERE p.on_erase = 'none' AND (t.personal_columns OR t.refers_to_members)$$,
    'every table with member columns or a key to members says which rows are a member''s');

SELECT is_empty(
    $$SELECT t.relname FROM ext_tables t JOIN membership.personal_data p ON p.table_name = t.relname
      JOIN pg_constraint k ON k.contype = 'f' AND k.conrelid = t.oid
      JOIN membership.personal_data parent ON parent.table_name = (SELECT relname FROM pg_class WHERE oid = k.confrelid)
      WHERE p.on_erase = 'none' AND parent.on_erase <> 'none'$$,
    'no organisation-only table refers to a table of member data');

-- Each condition is valid SQL over its table, with the parameters erasure
-- and export pass.
CREATE FUNCTION pg_temp.broken_conditions() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    v_table record;
BEGIN
    FOR v_table IN SELECT * FROM membership.personal_data WHERE member_rows IS NOT NULL LOOP
        BEGIN
            EXECUTE format('SELECT count(*) FROM membership.%I WHERE %s', v_table.table_name, v_table.member_rows)
                USING gen_random_uuid(), '{}'::bytea[], '{}'::bytea[], gen_random_uuid();
        EXCEPTION WHEN OTHERS THEN
            RETURN NEXT v_table.table_name || ': ' || SQLERRM;
        END;
    END LOOP;
END
$$;
SELECT is_empty('SELECT pg_temp.broken_conditions()', 'every member_rows condition runs');

-- What erasure keeps under the pseudonym it moves table by table: each
-- such table is named in erase_member(), and none is left to chance.
SELECT is_empty(
    $$SELECT p.table_name FROM membership.personal_data p
      WHERE p.on_erase = 'pseudonymise' AND p.table_name <> 'loyalty_allocations'
        AND strpos((SELECT prosrc FROM pg_proc WHERE oid = 'membership.erase_member(uuid, uuid)'::regprocedure),
                   'membership.' || p.table_name || ' ') = 0$$,
    'erase_member() moves every table it keeps to the pseudonym');

-- Anonymising clears member_id: only tables where it may be NULL.
SELECT is_empty(
    $$SELECT p.table_name FROM membership.personal_data p
      WHERE p.on_erase = 'anonymise'
        AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = ('membership.' || p.table_name)::regclass
                        AND a.attname = 'member_id' AND NOT a.attnotnull)$$,
    'every anonymised table has a nullable member_id');

-- The purge deletes from every tenant table, each after the tables whose
-- rows refer to it.
SELECT set_eq(
    'SELECT table_name::text FROM membership.tenant_tables_in_delete_order()',
    'SELECT relname::text FROM ext_tables WHERE tenant',
    'the purge deletes from every tenant table');
SELECT is_empty(
    $$WITH o AS (SELECT table_name, row_number() OVER () AS pos FROM membership.tenant_tables_in_delete_order())
      SELECT child.table_name || ' after ' || parent.table_name
      FROM pg_constraint k
      JOIN o child ON child.table_name = (SELECT relname FROM pg_class WHERE oid = k.conrelid)
      JOIN o parent ON parent.table_name = (SELECT relname FROM pg_class WHERE oid = k.confrelid)
      WHERE k.contype = 'f' AND k.conrelid <> k.confrelid AND child.pos > parent.pos$$,
    'the purge deletes every table before the tables it refers to');

SELECT * FROM finish();
ROLLBACK;
