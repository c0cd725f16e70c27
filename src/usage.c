/*-------------------------------------------------------------------------
 *
 * usage.c
 *	  Per-key, per-minute verification counters in shared memory: the rate
 *	  limiter and the usage meter in one.
 *
 * Each API key gets one slot per calendar minute (UTC) it is used in,
 * holding four counters: calls allowed, calls refused, answers verified
 * true, answers verified false.  The plan limit is enforced on "allowed"
 * with a compare-and-swap loop, so however many backends call at once a key
 * gets exactly its limit of allowed calls in a minute and the next one is
 * refused at once.
 *
 * The usage flusher (usage_worker.c) copies the counters to
 * membership.usage_minutes every second or so.  Counters only grow, and
 * each flush writes their absolute values (keyed by the shared memory
 * "epoch", new at every server start), so a flush that is repeated after a
 * crash counts nothing twice.  A slot is freed once its minute is over and
 * the flusher has written its final values.
 *
 * When every slot is taken the limiter fails open: calls are let through
 * uncounted, a LOG line says so once a minute, and metering_status shows
 * how many.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_verification_counters);
PG_FUNCTION_INFO_V1(membership_metering_status);

typedef struct UsageShared
{
	int64		epoch;			/* identifies this server start */
	pg_atomic_uint64 fail_open_calls;
	pg_atomic_uint64 full_logged_minute;
	pg_atomic_uint64 last_flush_at;	/* TimestampTz of the last flush */
	pg_atomic_uint64 flushes;
	pg_atomic_uint64 discarded_calls;	/* counted in other databases */
	pg_atomic_uint32 flusher_pid;
} UsageShared;

int			usage_slots = 20000;
bool		verification_limits = true;

static UsageShared *usage_shared = NULL;
static HTAB *usage_htab = NULL;
static LWLockPadded *usage_locks = NULL;

/*
 * The slot this backend used last.  A slot outlives its minute by two
 * minutes, so while the minute is still the current one the pointer is
 * good without a lookup (and without the partition lock, which all the
 * callers of a busy key would otherwise contend for).
 */
static UsageTag last_tag;
static UsageSlot *last_slot = NULL;

Size
UsageShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(UsageShared)),
					hash_estimate_size(usage_slots, sizeof(UsageSlot)));
}

void
UsageShmemInit(LWLockPadded *locks)
{
	HASHCTL		info;
	bool		found;

	usage_locks = locks;
	usage_shared = ShmemInitStruct("membership usage", sizeof(UsageShared), &found);
	if (!found)
	{
		uint64		epoch;

		if (!pg_strong_random(&epoch, sizeof(epoch)))
			epoch = (uint64) GetCurrentTimestamp();
		usage_shared->epoch = (int64) (epoch & PG_INT64_MAX);
		pg_atomic_init_u64(&usage_shared->fail_open_calls, 0);
		pg_atomic_init_u64(&usage_shared->full_logged_minute, 0);
		pg_atomic_init_u64(&usage_shared->last_flush_at, 0);
		pg_atomic_init_u64(&usage_shared->flushes, 0);
		pg_atomic_init_u64(&usage_shared->discarded_calls, 0);
		pg_atomic_init_u32(&usage_shared->flusher_pid, 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(UsageTag);
	info.entrysize = sizeof(UsageSlot);
	info.num_partitions = USAGE_PARTITIONS;
	usage_htab = ShmemInitHash("membership usage slots", usage_slots, usage_slots, &info,
							   HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
}

void
UsageInit(void)
{
	/* sizes of shared memory: only known when preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("membership.rate_limit_slots",
								"Number of per-key, per-minute counters kept in shared memory.",
								"Each API key used in a minute takes one. When all are taken, "
								"verification fails open (calls are let through unmetered) and says so.",
								&usage_slots,
								20000, 64, 10000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomBoolVariable("membership.verification_limits",
							 "Enforces plan limits on verification calls and meters them.",
							 "Off lets every verification through, uncounted: for emergencies and benchmarks.",
							 &verification_limits,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}

int64
usage_minute(TimestampTz now)
{
	/* whole minutes since the PostgreSQL epoch; minute boundaries are UTC */
	return now / USECS_PER_MINUTE;
}

TimestampTz
usage_minute_start(int64 minute)
{
	return minute * USECS_PER_MINUTE;
}

int64
usage_epoch(void)
{
	return usage_shared ? usage_shared->epoch : 0;
}

static LWLock *
partition_lock(uint32 hashcode)
{
	return &usage_locks[hashcode % USAGE_PARTITIONS].lock;
}

static void
note_table_full(int64 minute)
{
	uint64		logged = pg_atomic_read_u64(&usage_shared->full_logged_minute);

	pg_atomic_fetch_add_u64(&usage_shared->fail_open_calls, 1);
	if ((int64) logged < minute &&
		pg_atomic_compare_exchange_u64(&usage_shared->full_logged_minute, &logged, (uint64) minute))
		ereport(LOG,
				(errmsg("verification counter table is full, letting calls through unmetered"),
				 errhint("Increase \"membership.rate_limit_slots\" (now %d).", usage_slots)));
}

/*
 * Admit one call of key "key_id" at "now" under a limit of "limit" calls
 * per minute (-1: unlimited).  On USAGE_ALLOWED and USAGE_REFUSED, *slot is
 * the counter slot, for usage_count_result(); *retry_seconds is set when
 * refused.
 */
UsageAdmission
usage_admit(int64 key_id, int32 limit, TimestampTz now, UsageSlot **slot, int *retry_seconds)
{
	UsageTag	tag;
	uint32		hashcode;
	UsageSlot  *s;
	bool		found;
	uint64		allowed;

	*slot = NULL;
	memset(&tag, 0, sizeof(tag));
	tag.dboid = MyDatabaseId;
	tag.key_id = key_id;
	tag.minute = usage_minute(now);

	if (last_slot != NULL && memcmp(&last_tag, &tag, sizeof(tag)) == 0)
		s = last_slot;
	else
	{
		hashcode = get_hash_value(usage_htab, &tag);
		LWLockAcquire(partition_lock(hashcode), LW_SHARED);
		s = hash_search_with_hash_value(usage_htab, &tag, hashcode, HASH_FIND, NULL);
		LWLockRelease(partition_lock(hashcode));
	}
	if (s == NULL)
	{
		LWLockAcquire(partition_lock(hashcode), LW_EXCLUSIVE);
		/* shared hash tables grow into spare shared memory: hold the line */
		if (hash_get_num_entries(usage_htab) >= usage_slots)
			s = hash_search_with_hash_value(usage_htab, &tag, hashcode, HASH_FIND, &found);
		else
			s = hash_search_with_hash_value(usage_htab, &tag, hashcode, HASH_ENTER_NULL, &found);
		if (s != NULL && !found)
		{
			for (int i = 0; i < USAGE_COUNTERS; i++)
			{
				pg_atomic_init_u64(&s->counts[i], 0);
				s->flushed[i] = 0;
			}
		}
		LWLockRelease(partition_lock(hashcode));
		if (s == NULL)
		{
			note_table_full(tag.minute);
			return USAGE_UNMETERED;
		}
	}

	/*
	 * Slots are freed only minutes after their minute ends, so "s" stays
	 * valid for this call without holding the lock.
	 */
	last_tag = tag;
	last_slot = s;
	*slot = s;
	if (limit < 0)
	{
		/* nothing to refuse: one atomic add, no read of the counter first */
		pg_atomic_fetch_add_u64(&s->counts[USAGE_ALLOWED_CALLS], 1);
		return USAGE_ALLOWED;
	}
	allowed = pg_atomic_read_u64(&s->counts[USAGE_ALLOWED_CALLS]);
	for (;;)
	{
		if (allowed >= (uint64) limit)
		{
			int64		usecs_left = USECS_PER_MINUTE - (now % USECS_PER_MINUTE);

			pg_atomic_fetch_add_u64(&s->counts[USAGE_REFUSED_CALLS], 1);
			*retry_seconds = (int) ((usecs_left + USECS_PER_SEC - 1) / USECS_PER_SEC);
			return USAGE_REFUSED;
		}
		if (pg_atomic_compare_exchange_u64(&s->counts[USAGE_ALLOWED_CALLS], &allowed, allowed + 1))
			break;
	}
	return USAGE_ALLOWED;
}

void
usage_count_result(UsageSlot *slot, bool verified)
{
	if (slot != NULL)
		pg_atomic_fetch_add_u64(&slot->counts[verified ? USAGE_VERIFIED_TRUE : USAGE_VERIFIED_FALSE], 1);
}

/*
 * Copy the counters of this database's slots that changed since their last
 * flush into a palloc'd array; *n is set to its length.
 */
UsageSnapshotEntry *
usage_collect(int *n)
{
	HASH_SEQ_STATUS status;
	UsageSlot  *s;
	UsageSnapshotEntry *entries;
	int			count = 0;
	int			capacity = 64;

	entries = palloc(capacity * sizeof(UsageSnapshotEntry));
	for (int i = 0; i < USAGE_PARTITIONS; i++)
		LWLockAcquire(&usage_locks[i].lock, LW_SHARED);
	hash_seq_init(&status, usage_htab);
	while ((s = hash_seq_search(&status)) != NULL)
	{
		bool		changed = false;
		UsageSnapshotEntry *e;

		if (s->tag.dboid != MyDatabaseId)
			continue;
		if (count == capacity)
		{
			capacity *= 2;
			entries = repalloc(entries, capacity * sizeof(UsageSnapshotEntry));
		}
		e = &entries[count];
		e->tag = s->tag;
		for (int i = 0; i < USAGE_COUNTERS; i++)
		{
			e->counts[i] = pg_atomic_read_u64(&s->counts[i]);
			if (e->counts[i] != s->flushed[i])
				changed = true;
		}
		if (changed)
			count++;
	}
	for (int i = USAGE_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&usage_locks[i].lock);
	*n = count;
	return entries;
}

/*
 * After the flusher committed "entries", remember them as flushed, and
 * free the slots whose minute ended more than two minutes ago and that
 * hold nothing unflushed (or belong to a database the flusher never sees).
 */
void
usage_flushed(UsageSnapshotEntry *entries, int n, TimestampTz now)
{
	HASH_SEQ_STATUS status;
	UsageSlot  *s;
	int64		old_minute = usage_minute(now) - 2;

	for (int i = 0; i < USAGE_PARTITIONS; i++)
		LWLockAcquire(&usage_locks[i].lock, LW_EXCLUSIVE);
	for (int j = 0; j < n; j++)
	{
		s = hash_search(usage_htab, &entries[j].tag, HASH_FIND, NULL);
		if (s != NULL)
			memcpy(s->flushed, entries[j].counts, sizeof(s->flushed));
	}
	hash_seq_init(&status, usage_htab);
	while ((s = hash_seq_search(&status)) != NULL)
	{
		bool		unflushed = false;

		if (s->tag.minute >= old_minute)
			continue;
		if (s->tag.dboid != MyDatabaseId)
		{
			/* no flusher writes other databases' counters: drop them */
			pg_atomic_fetch_add_u64(&usage_shared->discarded_calls,
									pg_atomic_read_u64(&s->counts[USAGE_ALLOWED_CALLS]));
			hash_search(usage_htab, &s->tag, HASH_REMOVE, NULL);
			continue;
		}
		for (int i = 0; i < USAGE_COUNTERS; i++)
		{
			if (pg_atomic_read_u64(&s->counts[i]) != s->flushed[i])
				unflushed = true;
		}
		if (!unflushed)
			hash_search(usage_htab, &s->tag, HASH_REMOVE, NULL);
	}
	for (int i = USAGE_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&usage_locks[i].lock);

	pg_atomic_write_u64(&usage_shared->last_flush_at, (uint64) now);
	pg_atomic_fetch_add_u64(&usage_shared->flushes, 1);
}

void
usage_set_flusher_pid(int pid)
{
	if (usage_shared != NULL)
		pg_atomic_write_u32(&usage_shared->flusher_pid, (uint32) pid);
}

/*
 * membership.verification_counters(): the live counters of this database,
 * one row per key and minute still in shared memory.
 */
Datum
membership_verification_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	UsageSlot  *s;

	membership_require_preload("verification counters");
	InitMaterializedSRF(fcinfo, 0);

	for (int i = 0; i < USAGE_PARTITIONS; i++)
		LWLockAcquire(&usage_locks[i].lock, LW_SHARED);
	hash_seq_init(&status, usage_htab);
	while ((s = hash_seq_search(&status)) != NULL)
	{
		Datum		values[7];
		bool		nulls[7] = {false};
		bool		flushed = true;

		if (s->tag.dboid != MyDatabaseId)
			continue;
		values[0] = Int64GetDatum(s->tag.key_id);
		values[1] = TimestampTzGetDatum(usage_minute_start(s->tag.minute));
		for (int i = 0; i < USAGE_COUNTERS; i++)
		{
			uint64		c = pg_atomic_read_u64(&s->counts[i]);

			values[2 + i] = Int64GetDatum((int64) c);
			if (c != s->flushed[i])
				flushed = false;
		}
		values[6] = BoolGetDatum(flushed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (int i = USAGE_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&usage_locks[i].lock);
	return (Datum) 0;
}

/*
 * membership.metering_status(): how full the shared tables are and how far
 * behind the flusher is, as one row.
 */
Datum
membership_metering_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[18];
	bool		nulls[18] = {false};
	int64		cache_used;
	int64		cache_capacity;
	int64		cache_fills;
	int64		cache_full;
	TimestampTz last_flush;
	uint32		pid;
	int64		audit_queued;
	int64		audit_dropped;
	int64		answers_used;
	int64		answers_capacity;
	int64		answers_fills;
	int64		answers_wipes;

	membership_require_preload("metering status");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	keycache_stats(&cache_used, &cache_capacity, &cache_fills, &cache_full);
	audit_stats(&audit_queued, &audit_dropped);
	answercache_stats(&answers_used, &answers_capacity, &answers_fills, &answers_wipes);
	last_flush = (TimestampTz) pg_atomic_read_u64(&usage_shared->last_flush_at);
	pid = pg_atomic_read_u32(&usage_shared->flusher_pid);

	values[0] = Int64GetDatum(hash_get_num_entries(usage_htab));
	values[1] = Int64GetDatum(usage_slots);
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&usage_shared->fail_open_calls));
	values[3] = Int64GetDatum(cache_used);
	values[4] = Int64GetDatum(cache_capacity);
	values[5] = Int64GetDatum(cache_fills);
	values[6] = Int64GetDatum(cache_full);
	if (last_flush != 0)
	{
		values[7] = TimestampTzGetDatum(last_flush);
		values[8] = DirectFunctionCall2(timestamp_mi,
										TimestampTzGetDatum(GetCurrentTimestamp()),
										TimestampTzGetDatum(last_flush));
	}
	else
		nulls[7] = nulls[8] = true;
	if (pid != 0)
		values[9] = Int32GetDatum((int32) pid);
	else
		nulls[9] = true;
	values[10] = Int64GetDatum(audit_queued);
	values[11] = Int64GetDatum(audit_dropped);
	values[12] = Int64GetDatum(usage_shared->epoch);
	values[13] = Int64GetDatum(answers_used);
	values[14] = Int64GetDatum(answers_capacity);
	values[15] = Int64GetDatum(answers_fills);
	values[16] = Int64GetDatum(answers_wipes);
	values[17] = Int64GetDatum((int64) pg_atomic_read_u64(&usage_shared->discarded_calls));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
