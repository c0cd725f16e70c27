/*-------------------------------------------------------------------------
 *
 * answercache.c
 *	  A shared-memory cache of verification answers, exact at commit.
 *
 * Most of a verification's cost is reaching the members table: locking two
 * relations, starting an index scan, fetching the row.  So the answer
 * itself ({verified, member_since, tier}) is cached in shared memory, keyed
 * by database, organisation and the SHA-256 of what was looked up, and a
 * repeated question is answered without touching a table.
 *
 * Exactness comes from generations.  Each organisation maps to one of
 * ANSWER_GENERATIONS counters; a row trigger on members, dependents and
 * organisations notes the organisations a transaction changes, and an
 * XactCallback bumps their counters after the commit is visible.  An entry
 * remembers the counter it was filled under and is ignored once it moved.
 * A filler reads the counter before taking the snapshot it reads the
 * tables with, so a change committed after that read makes the entry stale
 * at once and one committed before it is in the snapshot.  (Two
 * organisations sharing a counter only cost each other some refills.)
 * A transaction that changed members itself bypasses the cache, so it sees
 * its own changes.
 *
 * When the table is full, stale entries go first, then a sixteenth of the
 * table: crude, bounded, and hot answers come back at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_note_member_change);

#define ANSWER_GENERATIONS 4096

typedef struct AnswerEntry
{
	AnswerTag	tag;			/* hash key: must be first */
	uint64		generation;
	VerifyAnswer answer;
} AnswerEntry;

typedef struct AnswerShared
{
	pg_atomic_uint64 generations[ANSWER_GENERATIONS];
	pg_atomic_uint64 hits;
	pg_atomic_uint64 fills;
	pg_atomic_uint64 wipes;		/* entries evicted to make room */
} AnswerShared;

int			answer_cache_size = 262144;
static bool answer_cache_enabled = true;

static AnswerShared *answer_shared = NULL;
static HTAB *answer_htab = NULL;
static LWLockPadded *answer_locks = NULL;

/* generations this transaction changed, bumped at commit */
static bool changed_any = false;
static bool changed_all = false;
static uint64 changed_bits[ANSWER_GENERATIONS / 64];
static bool callback_registered = false;

Size
AnswerCacheShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(AnswerShared)),
					hash_estimate_size(answer_cache_size, sizeof(AnswerEntry)));
}

void
AnswerCacheShmemInit(LWLockPadded *locks)
{
	HASHCTL		info;
	bool		found;

	answer_locks = locks;
	answer_shared = ShmemInitStruct("membership answer cache", sizeof(AnswerShared), &found);
	if (!found)
	{
		for (int i = 0; i < ANSWER_GENERATIONS; i++)
			pg_atomic_init_u64(&answer_shared->generations[i], 1);
		pg_atomic_init_u64(&answer_shared->hits, 0);
		pg_atomic_init_u64(&answer_shared->fills, 0);
		pg_atomic_init_u64(&answer_shared->wipes, 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(AnswerTag);
	info.entrysize = sizeof(AnswerEntry);
	info.num_partitions = ANSWER_PARTITIONS;
	answer_htab = ShmemInitHash("membership answer cache entries",
								answer_cache_size, answer_cache_size, &info,
								HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
}

void
AnswerCacheInit(void)
{
	DefineCustomBoolVariable("membership.verify_answer_cache",
							 "Answers repeated verification questions from shared memory.",
							 "Off makes every verification read the tables (for comparisons and troubleshooting).",
							 &answer_cache_enabled,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	/* sizes of shared memory: only known when preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("membership.verify_cache_size",
								"Number of verification answers kept in shared memory.",
								"Each entry is about 130 bytes. Answers beyond this many are "
								"looked up in the tables.",
								&answer_cache_size,
								262144, 1024, 100000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
}

static int
generation_of(const pg_uuid_t *org)
{
	return hash_bytes((const unsigned char *) org->data, UUID_LEN) % ANSWER_GENERATIONS;
}

/*
 * Begin answering (org, subject): fills *tag, and returns true with
 * *answer set on a hit.  On a miss, *generation is the counter value to
 * pass to answercache_store(); the caller must read the tables with a
 * snapshot taken after this call.  Also a miss when the cache is not
 * available or this transaction changed members itself (*generation is
 * then 0, and nothing will be stored).
 */
bool
answercache_fetch(const pg_uuid_t *org, bool by_email, const uint8 *subject,
				  AnswerTag *tag, uint64 *generation, VerifyAnswer *answer)
{
	uint32		hashcode;
	AnswerEntry *entry;
	bool		hit = false;
	LWLock	   *lock;

	*generation = 0;
	if (answer_htab == NULL || changed_any || !answer_cache_enabled)
		return false;

	memset(tag, 0, sizeof(*tag));
	tag->dboid = MyDatabaseId;
	tag->org_id = *org;
	tag->by_email = by_email;
	memcpy(tag->subject, subject, MEMBERSHIP_SHA256_LEN);

	*generation = pg_atomic_read_u64(&answer_shared->generations[generation_of(org)]);
	pg_read_barrier();

	hashcode = get_hash_value(answer_htab, tag);
	lock = &answer_locks[hashcode % ANSWER_PARTITIONS].lock;
	LWLockAcquire(lock, LW_SHARED);
	entry = hash_search_with_hash_value(answer_htab, tag, hashcode, HASH_FIND, NULL);
	if (entry != NULL && entry->generation == *generation)
	{
		*answer = entry->answer;
		hit = true;
	}
	LWLockRelease(lock);
	return hit;
}

/*
 * Make room when the table is full: with every partition locked, drop the
 * entries whose organisation moved on, and if that frees too little, the
 * whole partition "victims".
 */
static void
answercache_evict(uint32 victims)
{
	HASH_SEQ_STATUS status;
	AnswerEntry *entry;
	long		full;
	long		left;

	for (int i = 0; i < ANSWER_PARTITIONS; i++)
		LWLockAcquire(&answer_locks[i].lock, LW_EXCLUSIVE);

	full = hash_get_num_entries(answer_htab);
	hash_seq_init(&status, answer_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		uint64		current = pg_atomic_read_u64(&answer_shared->generations[generation_of(&entry->tag.org_id)]);

		if (entry->generation != current)
			hash_search(answer_htab, &entry->tag, HASH_REMOVE, NULL);
	}
	if (hash_get_num_entries(answer_htab) > full - answer_cache_size / ANSWER_PARTITIONS)
	{
		hash_seq_init(&status, answer_htab);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			if (get_hash_value(answer_htab, &entry->tag) % ANSWER_PARTITIONS == victims)
				hash_search(answer_htab, &entry->tag, HASH_REMOVE, NULL);
		}
	}
	left = hash_get_num_entries(answer_htab);
	pg_atomic_fetch_add_u64(&answer_shared->wipes, (uint64) (full - left));

	for (int i = ANSWER_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&answer_locks[i].lock);
}

/* Remember an answer read under "generation" (see answercache_fetch). */
void
answercache_store(const AnswerTag *tag, uint64 generation, const VerifyAnswer *answer)
{
	uint32		hashcode;
	AnswerEntry *entry;
	bool		found;
	LWLock	   *lock;

	if (answer_htab == NULL || generation == 0)
		return;

	hashcode = get_hash_value(answer_htab, tag);
	lock = &answer_locks[hashcode % ANSWER_PARTITIONS].lock;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		LWLockAcquire(lock, LW_EXCLUSIVE);
		/* shared hash tables grow into spare shared memory: hold the line */
		if (hash_get_num_entries(answer_htab) >= answer_cache_size)
			entry = hash_search_with_hash_value(answer_htab, tag, hashcode, HASH_FIND, &found);
		else
			entry = hash_search_with_hash_value(answer_htab, tag, hashcode, HASH_ENTER_NULL, &found);
		if (entry != NULL)
		{
			entry->generation = generation;
			entry->answer = *answer;
			pg_atomic_fetch_add_u64(&answer_shared->fills, 1);
		}
		LWLockRelease(lock);
		if (entry != NULL || attempt == 1)
			break;
		answercache_evict(hashcode % ANSWER_PARTITIONS);
	}
}

void
answercache_stats(int64 *used, int64 *capacity, int64 *fills, int64 *wipes)
{
	*used = answer_htab ? hash_get_num_entries(answer_htab) : 0;
	*capacity = answer_htab ? answer_cache_size : 0;
	*fills = answer_shared ? pg_atomic_read_u64(&answer_shared->fills) : 0;
	*wipes = answer_shared ? pg_atomic_read_u64(&answer_shared->wipes) : 0;
}

static void
answercache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (changed_any && answer_shared != NULL)
			{
				pg_write_barrier();
				for (int i = 0; i < ANSWER_GENERATIONS; i++)
				{
					if (changed_all || (changed_bits[i / 64] & (UINT64CONST(1) << (i % 64))))
						pg_atomic_fetch_add_u64(&answer_shared->generations[i], 1);
				}
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (changed_any)
			{
				memset(changed_bits, 0, sizeof(changed_bits));
				changed_any = false;
				changed_all = false;
			}
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (changed_any)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed members")));
			break;
		default:
			break;
	}
}

static void
note_org(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	if (!isnull)
	{
		int			g = generation_of(DatumGetUUIDP(d));

		changed_bits[g / 64] |= UINT64CONST(1) << (g % 64);
	}
	else
		changed_all = true;
}

/*
 * Trigger on membership.members, membership.dependents and
 * membership.organisations: note whose verification answers this
 * transaction changes.  Row-level BEFORE INSERT, UPDATE or DELETE (the
 * row is returned unchanged), or statement-level for TRUNCATE (all).
 * The organisation column is the trigger's argument.
 */
Datum
membership_note_member_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	AttrNumber	attnum;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "note_member_change() must be called as a trigger");

	if (!callback_registered)
	{
		RegisterXactCallback(answercache_xact_callback, NULL);
		callback_registered = true;
	}
	changed_any = true;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		changed_all = true;
		return PointerGetDatum(NULL);
	}

	desc = RelationGetDescr(trigdata->tg_relation);
	if (trigdata->tg_trigger->tgnargs != 1 ||
		(attnum = get_attnum(RelationGetRelid(trigdata->tg_relation),
							 trigdata->tg_trigger->tgargs[0])) == InvalidAttrNumber)
		elog(ERROR, "note_member_change() needs the organisation column as its argument");

	note_org(trigdata->tg_trigtuple, desc, attnum);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		note_org(trigdata->tg_newtuple, desc, attnum);
		return PointerGetDatum(trigdata->tg_newtuple);
	}
	return PointerGetDatum(trigdata->tg_trigtuple);
}
