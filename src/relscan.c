/*-------------------------------------------------------------------------
 *
 * relscan.c
 *	  Direct index lookups in the extension's own tables.
 *
 * Resolving who a caller is must happen before there is a tenant to filter
 * by, so the identity code cannot go through row-level security: it reads
 * the rows it needs with a plain index scan, the way the catalog code does.
 * Everything else goes through SQL and the policies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "membership.h"

/*
 * The OID of a relation (table or index) of the membership schema.  A
 * missing one means the extension is not installed in this database.
 */
Oid
membership_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid(MEMBERSHIP_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.%s\" does not exist", MEMBERSHIP_SCHEMA, relname),
				 errhint("Run CREATE EXTENSION membership in this database.")));
	return relid;
}

/* The attribute number of a column that must exist. */
AttrNumber
membership_attnum(Relation rel, const char *colname)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), colname);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of relation \"%s\" does not exist",
			 colname, RelationGetRelationName(rel));
	return attnum;
}

/*
 * Return a copy of the row of "rel" that the unique index "indexid" finds
 * for "keys" (heap attribute numbers), or NULL, as "snapshot" sees it
 * (usually the active snapshot: what the calling statement sees).
 */
HeapTuple
membership_fetch_unique(Relation rel, Oid indexid, int nkeys, ScanKey keys,
						Snapshot snapshot)
{
	SysScanDesc scan;
	HeapTuple	tuple;
	HeapTuple	result = NULL;

	/* compare text the way the index does: with the column's collation */
	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = TupleDescAttr(RelationGetDescr(rel),
											 keys[i].sk_attno - 1)->attcollation;

	scan = systable_beginscan(rel, indexid, true, snapshot, nkeys, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		result = heap_copytuple(tuple);
	systable_endscan(scan);
	return result;
}
