/*-------------------------------------------------------------------------
 *
 * push_wake.c
 *	  Waking the push workers when a notification becomes due.
 *
 * Each push worker has a slot in shared memory: its latch, its database
 * and the time it plans to look at the outbox again (PUSH_AWAKE while it
 * is working).  The trigger membership.push_wake() notes, per
 * transaction, the earliest due_at of the push rows it queued or
 * deferred; at commit, when the rows are visible, every worker of this
 * database that would otherwise look later than that has its latch set.
 * Rows due later wake nobody: the worker sleeps until its planned time,
 * which it computes from the outbox (membership.push_next_wake()) after
 * publishing PUSH_AWAKE, so that a commit racing with that computation
 * sets its latch rather than being missed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "membership.h"

#define PUSH_AWAKE PG_INT64_MAX

typedef struct PushWorkerSlot
{
	Latch	   *latch;			/* NULL: no worker */
	Oid			database;
	pg_atomic_uint64 next_wake; /* TimestampTz; PUSH_AWAKE while working */
} PushWorkerSlot;

typedef struct PushShared
{
	int			nslots;
	PushWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PushShared;

static PushShared *push_shared = NULL;
static bool am_push_worker = false;

/* this transaction's earliest due push row, if any */
static bool wake_pending = false;
static TimestampTz wake_due = 0;
static bool callback_registered = false;

PG_FUNCTION_INFO_V1(membership_push_wake);

Size
PushShmemSize(void)
{
	return add_size(offsetof(PushShared, slots), mul_size(push_workers, sizeof(PushWorkerSlot)));
}

void
PushShmemInit(void)
{
	bool		found;

	push_shared = ShmemInitStruct("membership push workers", PushShmemSize(), &found);
	if (!found)
	{
		push_shared->nslots = push_workers;
		for (int i = 0; i < push_workers; i++)
		{
			push_shared->slots[i].latch = NULL;
			push_shared->slots[i].database = InvalidOid;
			pg_atomic_init_u64(&push_shared->slots[i].next_wake, (uint64) PUSH_AWAKE);
		}
	}
}

static void
push_slot_release(int code, Datum arg)
{
	PushWorkerSlot *slot = &push_shared->slots[DatumGetInt32(arg)];

	slot->latch = NULL;
	pg_memory_barrier();
	slot->database = InvalidOid;
}

/* Called by push worker "n" once connected: its latch may now be set. */
void
push_wake_register(int n)
{
	PushWorkerSlot *slot;

	Assert(push_shared != NULL && n < push_shared->nslots);
	am_push_worker = true;
	slot = &push_shared->slots[n];
	pg_atomic_write_u64(&slot->next_wake, (uint64) PUSH_AWAKE);
	slot->database = MyDatabaseId;
	pg_memory_barrier();
	slot->latch = MyLatch;
	before_shmem_exit(push_slot_release, Int32GetDatum(n));
}

/* Push worker "n" will look again at "when" (PUSH_AWAKE: it is working). */
void
push_wake_plan(int n, TimestampTz when)
{
	pg_atomic_write_u64(&push_shared->slots[n].next_wake, (uint64) when);
	pg_memory_barrier();
}

/* Set the latch of every worker of this database that would look after "due". */
static void
push_wake_workers(TimestampTz due)
{
	pg_memory_barrier();
	for (int i = 0; i < push_shared->nslots; i++)
	{
		PushWorkerSlot *slot = &push_shared->slots[i];
		Latch	   *latch = slot->latch;

		if (latch != NULL && slot->database == MyDatabaseId
			&& (int64) pg_atomic_read_u64(&slot->next_wake) >= due)
			SetLatch(latch);
	}
}

static void
push_xact_callback(XactEvent event, void *arg)
{
	if (!wake_pending)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			push_wake_workers(wake_due);
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/*
 * Trigger on membership.notifications, for push rows queued or deferred
 * with a due_at: remember the earliest, to wake the workers at commit.
 */
Datum
membership_push_wake(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	int			attnum;
	bool		isnull;
	Datum		due;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event)
		|| !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "membership_push_wake: not called as an AFTER ... FOR EACH ROW trigger");

	/* a worker's own retries: it looks again by itself */
	if (push_shared == NULL || am_push_worker)
		return PointerGetDatum(NULL);

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	tupdesc = trigdata->tg_relation->rd_att;
	attnum = SPI_fnumber(tupdesc, "due_at");
	if (attnum <= 0)
		elog(ERROR, "membership_push_wake: the table has no column \"due_at\"");
	due = heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (isnull)
		return PointerGetDatum(NULL);

	if (!callback_registered)
	{
		RegisterXactCallback(push_xact_callback, NULL);
		callback_registered = true;
	}
	if (!wake_pending || DatumGetTimestampTz(due) < wake_due)
		wake_due = DatumGetTimestampTz(due);
	wake_pending = true;
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(membership_push_worker_plans);

/*
 * membership.push_worker_plans(): each running push worker and when it
 * plans to look at the outbox again (NULL while it is working).
 */
Datum
membership_push_worker_plans(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	membership_require_preload("membership.push_worker_plans()");
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < push_shared->nslots; i++)
	{
		PushWorkerSlot *slot = &push_shared->slots[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int64		when;

		if (slot->latch == NULL)
			continue;
		when = (int64) pg_atomic_read_u64(&slot->next_wake);
		values[0] = Int32GetDatum(i);
		values[1] = ObjectIdGetDatum(slot->database);
		values[2] = TimestampTzGetDatum(when);
		nulls[2] = when == PUSH_AWAKE;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
