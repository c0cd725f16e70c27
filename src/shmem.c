/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The extension's shared memory: one request, one initialisation.
 *
 * The API-key cache, the usage counters (which are also the rate limiter),
 * the verification answer cache, the audit queue, the progress slots of
 * running jobs, the push workers' wake-up slots and the loyalty programs'
 * cache generation live in shared memory, and share one named LWLock tranche.  This file owns the hooks and asks each subsystem
 * for its size and its initialisation, so that the subsystems do not each
 * chain the hooks themselves.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "membership.h"

#define MEMBERSHIP_TRANCHE "membership"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
membership_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(KeyCacheShmemSize());
	RequestAddinShmemSpace(UsageShmemSize());
	RequestAddinShmemSpace(AuditShmemSize());
	RequestAddinShmemSpace(AnswerCacheShmemSize());
	RequestAddinShmemSpace(JobsShmemSize());
	RequestAddinShmemSpace(PushShmemSize());
	RequestAddinShmemSpace(LedgerShmemSize());
	RequestNamedLWLockTranche(MEMBERSHIP_TRANCHE,
							  KEYCACHE_PARTITIONS + USAGE_PARTITIONS + 1);
}

static void
membership_shmem_startup(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche(MEMBERSHIP_TRANCHE);
	KeyCacheShmemInit(locks);
	UsageShmemInit(locks + KEYCACHE_PARTITIONS);
	AnswerCacheShmemInit();
	JobsShmemInit(locks + KEYCACHE_PARTITIONS + USAGE_PARTITIONS);
	AuditShmemInit();
	PushShmemInit();
	LedgerShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

/* Install the hooks; only when the library is being preloaded. */
void
MembershipShmemInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = membership_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = membership_shmem_startup;
}
