-- Every object of the extension described by name, one sorted line each:
-- two databases print the same text exactly when the extension is the
-- same in both, whichever way it got there (test/integration/upgrade.sh).
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'membership'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
rels AS (
    SELECT c.* FROM pg_class c
    WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('membership', 'membership_api'))
)
SELECT line FROM (
    SELECT 'extension ' || extversion || ' config ' ||
           coalesce((SELECT string_agg(x::regclass::text, ',' ORDER BY x::regclass::text) FROM unnest(extconfig) x), '') ||
           ' conditions ' || coalesce(array_to_string(extcondition, '|'), '') AS line
    FROM pg_extension WHERE extname = 'membership'
    UNION ALL
    SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
    UNION ALL
    SELECT format('function %s owner %s acl %s config %s secdef %s volatile %s parallel %s strict %s: %s',
                  p.oid::regprocedure, p.proowner::regrole, p.proacl, p.proconfig, p.prosecdef,
                  p.provolatile, p.proparallel, p.proisstrict,
                  CASE WHEN p.prokind = 'a' THEN '' ELSE pg_get_functiondef(p.oid) END)
    FROM pg_proc p
    WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('membership', 'membership_api'))
    UNION ALL
    SELECT format('relation %s kind %s owner %s acl %s rls %s force %s options %s',
                  c.oid::regclass, c.relkind, c.relowner::regrole, c.relacl, c.relrowsecurity,
                  c.relforcerowsecurity, c.reloptions)
    FROM rels c
    UNION ALL
    SELECT format('column %s.%s %s notnull %s default %s generated %s identity %s collation %s',
                  a.attrelid::regclass, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attgenerated, a.attidentity, a.attcollation)
    FROM pg_attribute a JOIN rels c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s.%s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
    FROM pg_constraint c JOIN rels r ON r.oid = c.conrelid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rels r ON r.oid = i.indrelid
    UNION ALL
    SELECT format('policy %s.%s %s %s using %s check %s', p.polrelid::regclass, p.polname, p.polcmd,
                  p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
    FROM pg_policy p JOIN rels r ON r.oid = p.polrelid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid) FROM rels c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('type %s owner %s', t.oid::regtype, t.typowner::regrole) FROM pg_type t
    WHERE t.typnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('membership', 'membership_api'))
      AND t.typtype IN ('c', 'e', 'd') AND t.typrelid = 0 OR (t.typtype = 'c' AND t.typrelid IN (SELECT oid FROM rels WHERE relkind = 'c'))
    UNION ALL
    SELECT format('comment %s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
    FROM pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
    UNION ALL
    SELECT format('schema %s owner %s acl %s', n.nspname, n.nspowner::regrole, n.nspacl)
    FROM pg_namespace n WHERE n.nspname IN ('membership', 'membership_api')
) AS all_lines
ORDER BY line;
