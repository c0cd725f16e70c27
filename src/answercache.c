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
 * The cache is read on every call by every backend, so it takes no lock.
 * It is an array of four-slot sets indexed by the question's hash (already
 * a SHA-256, so no further hashing is needed), each slot two cache lines.
 * A slot carries a change count that is odd while a writer fills it, the
 * protocol of PgBackendStatus.st_changecount: a reader that finds it odd,
 * or changed across its copy, does not use the slot and reads the tables
 * instead.  A writer claims a slot by moving its count from even to odd
 * with a compare-and-swap, and leaves the slot alone if another writer has
 * it.  A new answer goes to the slot already holding its question, else an
 * empty one, else one whose answer is stale, else the older of the two
 * (which is then counted as evicted): room is made one slot at a time,
 * without a pass over the table.
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
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_note_member_change);

#define ANSWER_GENERATIONS 4096
#define ANSWER_WAYS 4
#define ANSWER_SLOT_SIZE 128

typedef struct AnswerSlot
{
	pg_atomic_uint32 changecount;	/* odd while a writer fills the slot */
	AnswerTag	tag;			/* dboid InvalidOid: never filled */
	uint64		generation;
	uint64		stamp;			/* when it was filled, in fills */
	VerifyAnswer answer;
} AnswerSlot;

StaticAssertDecl(sizeof(AnswerSlot) <= ANSWER_SLOT_SIZE, "an answer slot must fit in its two cache lines");

typedef union AnswerSlotPadded
{
	AnswerSlot	slot;
	char		pad[ANSWER_SLOT_SIZE];
} AnswerSlotPadded;

typedef struct AnswerShared
{
	pg_atomic_uint64 generations[ANSWER_GENERATIONS];
	pg_atomic_uint64 used;		/* slots ever filled */
	pg_atomic_uint64 hits;
	pg_atomic_uint64 fills;
	pg_atomic_uint64 wipes;		/* current answers replaced to make room */
} AnswerShared;

int			answer_cache_size = 262144;
static bool answer_cache_enabled = true;

static AnswerShared *answer_shared = NULL;
static AnswerSlotPadded *answer_slots = NULL;
static uint64 answer_sets = 0;

/* generations this transaction changed, bumped at commit */
static bool changed_any = false;
static bool changed_all = false;
static uint64 changed_bits[ANSWER_GENERATIONS / 64];
static bool callback_registered = false;

static uint64
answer_set_count(void)
{
	return Max(answer_cache_size / ANSWER_WAYS, 1);
}

Size
AnswerCacheShmemSize(void)
{
	/* the slots start on a cache line: one more slot's worth for the alignment */
	return add_size(MAXALIGN(sizeof(AnswerShared)),
					mul_size(answer_set_count() * ANSWER_WAYS + 1, sizeof(AnswerSlotPadded)));
}

/* The cache is read and written without locks (see the file's header). */
void
AnswerCacheShmemInit(void)
{
	bool		found;
	char	   *slots;
	uint64		nslots;

	answer_sets = answer_set_count();
	nslots = answer_sets * ANSWER_WAYS;
	answer_shared = ShmemInitStruct("membership answer cache", sizeof(AnswerShared), &found);
	slots = ShmemInitStruct("membership answer cache entries",
							(nslots + 1) * sizeof(AnswerSlotPadded), &found);
	answer_slots = (AnswerSlotPadded *) TYPEALIGN(ANSWER_SLOT_SIZE, slots);
	if (!found)
	{
		for (int i = 0; i < ANSWER_GENERATIONS; i++)
			pg_atomic_init_u64(&answer_shared->generations[i], 1);
		pg_atomic_init_u64(&answer_shared->used, 0);
		pg_atomic_init_u64(&answer_shared->hits, 0);
		pg_atomic_init_u64(&answer_shared->fills, 0);
		pg_atomic_init_u64(&answer_shared->wipes, 0);
		memset(answer_slots, 0, nslots * sizeof(AnswerSlotPadded));
		for (uint64 i = 0; i < nslots; i++)
			pg_atomic_init_u32(&answer_slots[i].slot.changecount, 0);
	}
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
								"Each entry takes 128 bytes. Answers beyond this many are "
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
 * The first slot of the set a question belongs to.  The subject is a
 * SHA-256, as good a hash as any; the organisation is mixed in so that one
 * person asked about in several organisations spreads over several sets.
 */
static AnswerSlotPadded *
answer_set(const AnswerTag *tag)
{
	uint64		h;
	uint64		o;

	memcpy(&h, tag->subject, sizeof(h));
	memcpy(&o, tag->org_id.data, sizeof(o));
	h ^= o ^ tag->by_email;
	return &answer_slots[(h % answer_sets) * ANSWER_WAYS];
}

/*
 * Copy the answer in "slot" if it is the one for "tag" under "generation",
 * checking that no writer changed the slot meanwhile.
 */
static bool
answer_slot_read(AnswerSlot *slot, const AnswerTag *tag, uint64 generation, VerifyAnswer *answer)
{
	uint32		before = pg_atomic_read_u32(&slot->changecount);
	bool		match;

	if (before & 1)
		return false;
	pg_read_barrier();
	match = slot->generation == generation &&
		memcmp(&slot->tag, tag, sizeof(AnswerTag)) == 0;
	if (match)
		*answer = slot->answer;
	pg_read_barrier();
	return match && pg_atomic_read_u32(&slot->changecount) == before;
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
	AnswerSlotPadded *set;

	*generation = 0;
	if (answer_slots == NULL || changed_any || !answer_cache_enabled)
		return false;

	memset(tag, 0, sizeof(*tag));
	tag->dboid = MyDatabaseId;
	tag->org_id = *org;
	tag->by_email = by_email;
	memcpy(tag->subject, subject, MEMBERSHIP_SHA256_LEN);

	*generation = pg_atomic_read_u64(&answer_shared->generations[generation_of(org)]);
	pg_read_barrier();

	set = answer_set(tag);
	for (int way = 0; way < ANSWER_WAYS; way++)
	{
		if (answer_slot_read(&set[way].slot, tag, *generation, answer))
			return true;
	}
	return false;
}

/* Is the answer in "slot" still current?  (Read without the change count: a guess.) */
static bool
answer_slot_current(AnswerSlot *slot)
{
	return slot->generation ==
		pg_atomic_read_u64(&answer_shared->generations[generation_of(&slot->tag.org_id)]);
}

/* Remember an answer read under "generation" (see answercache_fetch). */
void
answercache_store(const AnswerTag *tag, uint64 generation, const VerifyAnswer *answer)
{
	AnswerSlotPadded *set;
	AnswerSlot *slot = NULL;
	uint32		count;
	bool		was_empty;
	bool		was_current;

	if (answer_slots == NULL || generation == 0)
		return;

	/*
	 * Choose a slot of the set: the one holding this question, else an
	 * empty one, else one whose answer is stale, else the older one.  The
	 * slots are looked at without their change counts, so the choice may be
	 * made on a torn read; it only decides which answer to replace.
	 */
	set = answer_set(tag);
	for (int way = 0; way < ANSWER_WAYS && slot == NULL; way++)
	{
		if (memcmp(&set[way].slot.tag, tag, sizeof(AnswerTag)) == 0)
			slot = &set[way].slot;
	}
	for (int way = 0; way < ANSWER_WAYS && slot == NULL; way++)
	{
		if (!OidIsValid(set[way].slot.tag.dboid) || !answer_slot_current(&set[way].slot))
			slot = &set[way].slot;
	}
	if (slot == NULL)
	{
		slot = &set[0].slot;
		for (int way = 1; way < ANSWER_WAYS; way++)
		{
			if (set[way].slot.stamp < slot->stamp)
				slot = &set[way].slot;
		}
	}

	/* claim it, unless another backend is writing it: then leave it be */
	count = pg_atomic_read_u32(&slot->changecount);
	if ((count & 1) || !pg_atomic_compare_exchange_u32(&slot->changecount, &count, count + 1))
		return;

	was_empty = !OidIsValid(slot->tag.dboid);
	was_current = !was_empty && memcmp(&slot->tag, tag, sizeof(AnswerTag)) != 0 &&
		answer_slot_current(slot);
	memcpy(&slot->tag, tag, sizeof(AnswerTag));
	slot->generation = generation;
	slot->stamp = pg_atomic_fetch_add_u64(&answer_shared->fills, 1);
	slot->answer = *answer;
	pg_write_barrier();
	pg_atomic_write_u32(&slot->changecount, count + 2);

	if (was_empty)
		pg_atomic_fetch_add_u64(&answer_shared->used, 1);
	if (was_current)
		pg_atomic_fetch_add_u64(&answer_shared->wipes, 1);
}

void
answercache_stats(int64 *used, int64 *capacity, int64 *fills, int64 *wipes)
{
	*used = answer_shared ? pg_atomic_read_u64(&answer_shared->used) : 0;
	*capacity = answer_slots ? answer_sets * ANSWER_WAYS : 0;
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
