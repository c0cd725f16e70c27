/*-------------------------------------------------------------------------
 *
 * membership.c
 *	  Module entry point of the membership extension.
 *
 * _PG_init() only records how the library was loaded and calls each
 * subsystem's initialiser; the subsystems own their GUCs, hooks and shared
 * memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "membership.h"

PG_MODULE_MAGIC;

bool		membership_preloaded = false;

void		_PG_init(void);

void
_PG_init(void)
{
	membership_preloaded = process_shared_preload_libraries_in_progress;

	TenantInit();
	IdentityInit();
	JobsInit();

	MarkGUCPrefixReserved("membership");
}

/*
 * Raise an error unless the library was preloaded.  Features that live in
 * shared memory or in background workers call this before touching either.
 */
void
membership_require_preload(const char *feature)
{
	if (!membership_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires the membership library to be preloaded", feature),
				 errhint("Add \"membership\" to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}
