/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The tenant context that row-level security policies read.
 *
 * Every tenant table's policy compares organisation_id with
 * membership.current_org_id().  That function reads a backend-private value
 * that only this file sets: from identity.c once a caller is resolved, or
 * from membership.set_tenant() when extension code (owned by the owner role)
 * acts for one organisation.  It is not a GUC, so no client can SET it, and
 * it is cleared at the end of every transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_current_org_id);
PG_FUNCTION_INFO_V1(membership_current_member_id);
PG_FUNCTION_INFO_V1(membership_current_provider_id);
PG_FUNCTION_INFO_V1(membership_current_caller_kind);
PG_FUNCTION_INFO_V1(membership_set_tenant);
PG_FUNCTION_INFO_V1(membership_list_organisations);

static Caller current_caller;

static void
tenant_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			tenant_clear();
			break;
		default:
			break;
	}
}

void
TenantInit(void)
{
	RegisterXactCallback(tenant_xact_callback, NULL);
}

const Caller *
tenant_current(void)
{
	return &current_caller;
}

void
tenant_set(const Caller *caller)
{
	current_caller = *caller;
}

void
tenant_clear(void)
{
	memset(&current_caller, 0, sizeof(current_caller));
}

/*
 * Only the extension's own code may choose a tenant: functions owned by the
 * owner role run as that role, and a superuser may do anything anyway.
 */
bool
tenant_may_set_context(void)
{
	Oid			owner = get_role_oid(MEMBERSHIP_OWNER_ROLE, true);

	return superuser() || (OidIsValid(owner) && GetUserId() == owner);
}

static Datum
uuid_datum(const pg_uuid_t *uuid)
{
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	memcpy(copy, uuid, sizeof(pg_uuid_t));
	return UUIDPGetDatum(copy);
}

/*
 * membership.current_org_id() returns the organisation of the current
 * caller, or NULL when none has been resolved in this transaction.
 */
Datum
membership_current_org_id(PG_FUNCTION_ARGS)
{
	if (!current_caller.has_org)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(uuid_datum(&current_caller.org_id));
}

Datum
membership_current_member_id(PG_FUNCTION_ARGS)
{
	if (!current_caller.has_member)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(uuid_datum(&current_caller.member_id));
}

Datum
membership_current_provider_id(PG_FUNCTION_ARGS)
{
	if (!current_caller.has_provider)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(uuid_datum(&current_caller.provider_id));
}

Datum
membership_current_caller_kind(PG_FUNCTION_ARGS)
{
	if (current_caller.kind == CALLER_NONE)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(caller_kind_name(current_caller.kind)));
}

/*
 * membership.set_tenant(organisation uuid) makes extension code act for one
 * organisation: background jobs call it per organisation they process, and
 * platform functions call it for the organisation they were asked about.
 * NULL clears the context.
 */
Datum
membership_set_tenant(PG_FUNCTION_ARGS)
{
	Caller		caller;

	if (!tenant_may_set_context())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the tenant context"),
				 errdetail("Only functions owned by the \"%s\" role may choose a tenant.",
						   MEMBERSHIP_OWNER_ROLE)));

	memset(&caller, 0, sizeof(caller));
	if (!PG_ARGISNULL(0))
	{
		caller.kind = CALLER_SYSTEM;
		caller.has_org = true;
		memcpy(&caller.org_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	}
	tenant_set(&caller);
	PG_RETURN_VOID();
}

/*
 * membership.list_organisations(): every organisation, for platform
 * administrators.  Each tenant sees only its own row through row-level
 * security, so this reads the table directly, the way the identity code
 * does; it returns nothing but the directory columns.
 */
Datum
membership_list_organisations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	AttrNumber	atts[4];
	static const char *const columns[4] = {"id", "slug", "name", "created_at"};

	InitMaterializedSRF(fcinfo, 0);
	rel = table_open(membership_relid("organisations"), AccessShareLock);
	for (int i = 0; i < 4; i++)
		atts[i] = membership_attnum(rel, columns[i]);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Datum		values[4];
		bool		nulls[4];

		for (int i = 0; i < 4; i++)
			values[i] = heap_getattr(tuple, atts[i], RelationGetDescr(rel), &nulls[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}
