/*-------------------------------------------------------------------------
 *
 * keycache.c
 *	  A shared-memory cache of API keys, invalidated at commit.
 *
 * Every verification resolves its API key, so the key, its organisation,
 * provider and plan limit are kept in a shared hash table keyed by the
 * database and the key's SHA-256 hash.  Entries carry the cache generation
 * they were filled under.  Any committed change to membership.api_keys or
 * membership.plans (issue, revoke, rotate, plan change, direct edits) bumps
 * the generation from an XactCallback, so every backend refetches the key
 * on its next call: revocation and plan changes apply at once everywhere.
 *
 * A filler reads the generation before it takes the snapshot it reads the
 * key with; a change committed after that read makes the entry stale at
 * once, and one committed before it is visible to the snapshot.  Misses
 * (unknown keys) are not cached.
 *
 * Each backend also remembers the last few keys it resolved by their text,
 * so a connection that keeps presenting the same key (a provider's pooled
 * connection) skips even the hash while the generation has not moved.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_invalidate_api_key_cache);

typedef struct KeyCacheTag
{
	Oid			dboid;
	uint8		hash[MEMBERSHIP_SHA256_LEN];
} KeyCacheTag;

typedef struct KeyCacheEntry
{
	KeyCacheTag tag;			/* hash key: must be first */
	uint64		generation;
	ApiKeyInfo	info;
} KeyCacheEntry;

typedef struct KeyCacheShared
{
	pg_atomic_uint64 generation;
	pg_atomic_uint64 fills;
	pg_atomic_uint64 full;
} KeyCacheShared;

/* a backend's memory of the last keys it resolved */
#define LOCAL_KEYS 8
#define LOCAL_KEY_MAXLEN 64

typedef struct LocalKey
{
	bool		used;
	Oid			dboid;
	uint64		generation;
	size_t		len;
	char		key[LOCAL_KEY_MAXLEN];
	ApiKeyInfo	info;
} LocalKey;

static LocalKey local_keys[LOCAL_KEYS];
static int	local_next = 0;

int			keycache_size = 10000;

static KeyCacheShared *keycache_shared = NULL;
static HTAB *keycache_htab = NULL;
static LWLockPadded *keycache_locks = NULL;
static bool keycache_bump_at_commit = false;
static bool keycache_callback_registered = false;

Size
KeyCacheShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(KeyCacheShared)),
					hash_estimate_size(keycache_size, sizeof(KeyCacheEntry)));
}

void
KeyCacheShmemInit(LWLockPadded *locks)
{
	HASHCTL		info;
	bool		found;

	keycache_locks = locks;
	keycache_shared = ShmemInitStruct("membership api key cache", sizeof(KeyCacheShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&keycache_shared->generation, 1);
		pg_atomic_init_u64(&keycache_shared->fills, 0);
		pg_atomic_init_u64(&keycache_shared->full, 0);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(KeyCacheTag);
	info.entrysize = sizeof(KeyCacheEntry);
	info.num_partitions = KEYCACHE_PARTITIONS;
	keycache_htab = ShmemInitHash("membership api key cache entries",
								  keycache_size, keycache_size, &info,
								  HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
}

void
KeyCacheInit(void)
{
	/* sizes of shared memory: only known when preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("membership.api_key_cache_size",
								"Number of API keys kept in the shared-memory key cache.",
								"Keys beyond this many are looked up in the table on every call.",
								&keycache_size,
								10000, 16, 10000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
}

static LWLock *
partition_lock(uint32 hashcode)
{
	return &keycache_locks[hashcode % KEYCACHE_PARTITIONS].lock;
}

/* Drop every entry of an older generation; called when the table is full. */
static void
keycache_evict_stale(uint64 generation)
{
	HASH_SEQ_STATUS status;
	KeyCacheEntry *entry;

	for (int i = 0; i < KEYCACHE_PARTITIONS; i++)
		LWLockAcquire(&keycache_locks[i].lock, LW_EXCLUSIVE);
	hash_seq_init(&status, keycache_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->generation != generation)
			hash_search(keycache_htab, &entry->tag, HASH_REMOVE, NULL);
	}
	for (int i = KEYCACHE_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&keycache_locks[i].lock);
}

/*
 * Look an API key up by the SHA-256 hash of its text: from the cache when
 * the library is preloaded and the entry is current, otherwise from the
 * table (and then cached).  Returns false for an unknown key.
 */
bool
keycache_lookup(const uint8 *hash, ApiKeyInfo *info)
{
	KeyCacheTag tag;
	uint32		hashcode;
	uint64		generation;
	KeyCacheEntry *entry;
	bool		found;

	if (keycache_htab == NULL)
		return apikey_fetch(hash, info);

	memset(&tag, 0, sizeof(tag));
	tag.dboid = MyDatabaseId;
	memcpy(tag.hash, hash, MEMBERSHIP_SHA256_LEN);
	hashcode = get_hash_value(keycache_htab, &tag);

	generation = pg_atomic_read_u64(&keycache_shared->generation);
	pg_read_barrier();

	LWLockAcquire(partition_lock(hashcode), LW_SHARED);
	entry = hash_search_with_hash_value(keycache_htab, &tag, hashcode, HASH_FIND, NULL);
	if (entry != NULL && entry->generation == generation)
	{
		*info = entry->info;
		LWLockRelease(partition_lock(hashcode));
		return true;
	}
	LWLockRelease(partition_lock(hashcode));

	if (!apikey_fetch(hash, info))
		return false;

	pg_atomic_fetch_add_u64(&keycache_shared->fills, 1);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		LWLockAcquire(partition_lock(hashcode), LW_EXCLUSIVE);
		/* shared hash tables grow into spare shared memory: hold the line */
		if (hash_get_num_entries(keycache_htab) >= keycache_size)
			entry = hash_search_with_hash_value(keycache_htab, &tag, hashcode, HASH_FIND, &found);
		else
			entry = hash_search_with_hash_value(keycache_htab, &tag, hashcode, HASH_ENTER_NULL, &found);
		if (entry != NULL)
		{
			entry->info = *info;
			entry->generation = generation;
		}
		LWLockRelease(partition_lock(hashcode));
		if (entry != NULL)
			break;
		if (attempt == 0)
			keycache_evict_stale(pg_atomic_read_u64(&keycache_shared->generation));
		else
			pg_atomic_fetch_add_u64(&keycache_shared->full, 1);
	}
	return true;
}

/*
 * Resolve a key by its text: from this backend's memory of recent keys
 * while the cache generation is unchanged, else (if it is well formed) by
 * its hash through keycache_lookup().
 */
KeyLookup
keycache_resolve(const char *key, size_t len, ApiKeyInfo *info)
{
	uint8		hash[MEMBERSHIP_SHA256_LEN];
	uint64		generation;
	LocalKey   *slot;

	/*
	 * A standby replays changes without firing the triggers that invalidate
	 * the cache, so there every key is read from the table.
	 */
	if (keycache_shared == NULL || len > LOCAL_KEY_MAXLEN || RecoveryInProgress())
	{
		if (!apikey_parse(key, len))
			return KEY_MALFORMED;
		membership_sha256(key, len, hash);
		return apikey_fetch(hash, info) ? KEY_FOUND : KEY_UNKNOWN;
	}

	generation = pg_atomic_read_u64(&keycache_shared->generation);
	pg_read_barrier();
	for (int i = 0; i < LOCAL_KEYS; i++)
	{
		LocalKey   *k = &local_keys[i];

		if (k->used && k->generation == generation && k->dboid == MyDatabaseId &&
			k->len == len && memcmp(k->key, key, len) == 0)
		{
			*info = k->info;
			return KEY_FOUND;
		}
	}

	if (!apikey_parse(key, len))
		return KEY_MALFORMED;
	membership_sha256(key, len, hash);
	if (!keycache_lookup(hash, info))
		return KEY_UNKNOWN;

	slot = &local_keys[local_next];
	local_next = (local_next + 1) % LOCAL_KEYS;
	slot->used = true;
	slot->dboid = MyDatabaseId;
	slot->generation = generation;
	slot->len = len;
	memcpy(slot->key, key, len);
	slot->info = *info;
	return KEY_FOUND;
}

/* Entries in use and capacity, for membership.metering_status. */
void
keycache_stats(int64 *used, int64 *capacity, int64 *fills, int64 *full)
{
	*used = keycache_htab ? hash_get_num_entries(keycache_htab) : 0;
	*capacity = keycache_htab ? keycache_size : 0;
	*fills = keycache_shared ? pg_atomic_read_u64(&keycache_shared->fills) : 0;
	*full = keycache_shared ? pg_atomic_read_u64(&keycache_shared->full) : 0;
}

static void
keycache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (keycache_bump_at_commit && keycache_shared != NULL)
			{
				pg_write_barrier();
				pg_atomic_fetch_add_u64(&keycache_shared->generation, 1);
			}
			keycache_bump_at_commit = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			/* the commit would happen in another backend, unseen here */
			if (keycache_bump_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed API keys or plans")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			keycache_bump_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Statement trigger on membership.api_keys and membership.plans: make every
 * cached key stale when this transaction commits.
 */
Datum
membership_invalidate_api_key_cache(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "invalidate_api_key_cache() must be called as a trigger");

	if (!keycache_callback_registered)
	{
		RegisterXactCallback(keycache_xact_callback, NULL);
		keycache_callback_registered = true;
	}
	keycache_bump_at_commit = true;
	return PointerGetDatum(NULL);
}
