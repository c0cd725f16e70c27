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
char	   *membership_database = NULL;
static int	sync_max_members = 1000000;

void		_PG_init(void);

void
_PG_init(void)
{
	membership_preloaded = process_shared_preload_libraries_in_progress;

	if (membership_preloaded)
		DefineCustomStringVariable("membership.database",
								   "Database the extension's background workers connect to.",
								   "The database where the extension is installed and used; workers "
								   "record usage and deliver notifications for it alone.",
								   &membership_database,
								   "membership",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	DefineCustomIntVariable("membership.sync_max_members",
							"Largest member list one sync_members call accepts.",
							"Larger lists are refused (PT413); send them as several delta syncs.",
							&sync_max_members,
							1000000, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	TenantInit();
	IdentityInit();
	KeyCacheInit();
	UsageInit();
	AuditInit();
	VerifyInit();
	AnswerCacheInit();
	UsageWorkerInit();
	PushWorkerInit();
	MembershipShmemInit();
	JobsInit();
	PrivacyInit();

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
