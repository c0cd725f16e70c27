/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The verification audit queue.
 *
 * With membership.audit_verifications = misses or all, each verification
 * appends a record (key, organisation, time, whether found, and the SHA-256
 * of the e-mail address or user id looked up: never the address itself) to
 * a ring buffer in shared memory.  The usage flusher writes the records to
 * membership.verification_audit in its next pass, so auditing costs a call
 * a spinlock and a copy, not a write.  The flusher only advances the
 * buffer's tail after its transaction commits, so a flusher crash loses
 * nothing that was queued.  When the buffer is full, records are dropped and
 * counted (membership.metering_status shows how many).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "membership.h"

typedef struct AuditQueue
{
	slock_t		mutex;
	uint64		head;			/* next record to write */
	uint64		tail;			/* oldest record not yet written out */
	pg_atomic_uint64 dropped;
	AuditRecord records[FLEXIBLE_ARRAY_MEMBER];
} AuditQueue;

static const struct config_enum_entry audit_mode_options[] = {
	{"off", AUDIT_OFF, false},
	{"misses", AUDIT_MISSES, false},
	{"all", AUDIT_ALL, false},
	{NULL, 0, false}
};

int			audit_mode = AUDIT_OFF;
static int	audit_queue_size = 65536;
static AuditQueue *audit_queue = NULL;

Size
AuditShmemSize(void)
{
	return add_size(offsetof(AuditQueue, records),
					mul_size(audit_queue_size, sizeof(AuditRecord)));
}

void
AuditShmemInit(void)
{
	bool		found;

	audit_queue = ShmemInitStruct("membership audit queue", AuditShmemSize(), &found);
	if (!found)
	{
		SpinLockInit(&audit_queue->mutex);
		audit_queue->head = 0;
		audit_queue->tail = 0;
		pg_atomic_init_u64(&audit_queue->dropped, 0);
	}
}

void
AuditInit(void)
{
	DefineCustomEnumVariable("membership.audit_verifications",
							 "Which verification calls are written to membership.verification_audit.",
							 "\"misses\" records calls answered verified = false, \"all\" every call. "
							 "Records hold a hash of the e-mail address or user id, never the value.",
							 &audit_mode,
							 AUDIT_OFF,
							 audit_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/* sizes of shared memory: only known when preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("membership.audit_queue_size",
								"Number of audit records the shared-memory queue holds until the flusher writes them.",
								NULL,
								&audit_queue_size,
								65536, 64, 16777216,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
}

/* Queue a record, or count it dropped when the queue is full. */
void
audit_enqueue(const AuditRecord *record)
{
	if (audit_queue == NULL)
		return;
	SpinLockAcquire(&audit_queue->mutex);
	if (audit_queue->head - audit_queue->tail >= (uint64) audit_queue_size)
	{
		SpinLockRelease(&audit_queue->mutex);
		pg_atomic_fetch_add_u64(&audit_queue->dropped, 1);
		return;
	}
	audit_queue->records[audit_queue->head % audit_queue_size] = *record;
	audit_queue->head++;
	SpinLockRelease(&audit_queue->mutex);
}

/*
 * Copy up to "max" of the oldest queued records of this database into
 * "records" (records of other databases are skipped: no flusher writes
 * them), without removing them; *next is the tail to pass to
 * audit_advance() once they are safely written.
 */
int
audit_peek(AuditRecord *records, int max, uint64 *next)
{
	uint64		pos;
	int			n = 0;

	if (audit_queue == NULL)
	{
		*next = 0;
		return 0;
	}
	SpinLockAcquire(&audit_queue->mutex);
	for (pos = audit_queue->tail; pos < audit_queue->head && n < max; pos++)
	{
		const AuditRecord *r = &audit_queue->records[pos % audit_queue_size];

		if (r->dboid == MyDatabaseId)
			records[n++] = *r;
	}
	SpinLockRelease(&audit_queue->mutex);
	*next = pos;
	return n;
}

void
audit_advance(uint64 next)
{
	if (audit_queue == NULL)
		return;
	SpinLockAcquire(&audit_queue->mutex);
	if (next > audit_queue->tail && next <= audit_queue->head)
		audit_queue->tail = next;
	SpinLockRelease(&audit_queue->mutex);
}

void
audit_stats(int64 *queued, int64 *dropped)
{
	if (audit_queue == NULL)
	{
		*queued = *dropped = 0;
		return;
	}
	SpinLockAcquire(&audit_queue->mutex);
	*queued = (int64) (audit_queue->head - audit_queue->tail);
	SpinLockRelease(&audit_queue->mutex);
	*dropped = (int64) pg_atomic_read_u64(&audit_queue->dropped);
}
