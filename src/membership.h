/*-------------------------------------------------------------------------
 *
 * membership.h
 *	  Declarations shared by the subsystems of the membership extension.
 *
 * Each subsystem lives in its own file with its own prefix and exports an
 * initialisation function (TenantInit(), KeyCacheInit(), ...) that
 * _PG_init() calls once.  This header holds what more than
 * one subsystem needs: error codes, the tenant context and the caller
 * identity.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEMBERSHIP_H
#define MEMBERSHIP_H

#include "postgres.h"

#include "access/htup.h"
#include "access/skey.h"
#include "executor/spi.h"
#include "storage/lwlock.h"
#include "utils/relcache.h"
#include "utils/numeric.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * SQLSTATEs for API-facing errors.  PostgREST answers a PTxyz error with
 * HTTP status xyz.
 */
#define ERRCODE_MEMBERSHIP_UNAUTHORIZED		MAKE_SQLSTATE('P','T','4','0','1')
#define ERRCODE_MEMBERSHIP_FORBIDDEN		MAKE_SQLSTATE('P','T','4','0','3')
#define ERRCODE_MEMBERSHIP_TOO_MANY_REQUESTS MAKE_SQLSTATE('P','T','4','2','9')

#define MEMBERSHIP_SHA256_LEN 32

#define MEMBERSHIP_SCHEMA		"membership"
#define MEMBERSHIP_OWNER_ROLE	"membership_owner"

/* true when the library was loaded through shared_preload_libraries */
extern bool membership_preloaded;

/* membership.database: where the background workers connect */
extern char *membership_database;

/* Subsystem initialisation, called once from _PG_init(). */
extern void TenantInit(void);
extern void IdentityInit(void);
extern void KeyCacheInit(void);
extern void UsageInit(void);
extern void AuditInit(void);
extern void VerifyInit(void);
extern void UsageWorkerInit(void);
extern void AnswerCacheInit(void);
extern void JobsInit(void);
extern void PrivacyInit(void);

extern void membership_require_preload(const char *feature);

/* shmem.c: shared memory, requested and initialised in one place */
#define KEYCACHE_PARTITIONS 16
#define USAGE_PARTITIONS	16
extern void MembershipShmemInit(void);
extern Size KeyCacheShmemSize(void);
extern void KeyCacheShmemInit(LWLockPadded *locks);
extern Size UsageShmemSize(void);
extern void UsageShmemInit(LWLockPadded *locks);
extern Size AuditShmemSize(void);
extern void AuditShmemInit(void);
extern Size AnswerCacheShmemSize(void);
extern void AnswerCacheShmemInit(void);
extern Size JobsShmemSize(void);
extern void JobsShmemInit(LWLockPadded *lock);

/*
 * Who is calling.  Resolved once per API call by identity.c from an API key
 * or from gateway-trusted JWT claims; kept in tenant.c until the end of the
 * transaction.
 */
typedef enum CallerKind
{
	CALLER_NONE = 0,
	CALLER_PROVIDER,			/* a provider's API key */
	CALLER_ORGANISATION,		/* an organisation's own API key */
	CALLER_MEMBER,				/* a member's JWT */
	CALLER_ORG_ADMIN,			/* an organisation administrator's JWT */
	CALLER_PLATFORM_ADMIN,		/* a platform administrator's JWT */
	CALLER_SYSTEM				/* extension code acting for one organisation */
} CallerKind;

#define CALLER_KIND_COUNT (CALLER_SYSTEM + 1)

typedef struct Caller
{
	CallerKind	kind;
	bool		has_org;
	pg_uuid_t	org_id;
	bool		has_member;
	pg_uuid_t	member_id;
	bool		has_provider;
	pg_uuid_t	provider_id;
	int64		api_key_id;		/* 0 unless identified by an API key */
} Caller;

/* tenant.c */
extern const Caller *tenant_current(void);
extern void tenant_set(const Caller *caller);
extern void tenant_clear(void);
extern bool tenant_may_set_context(void);

/* identity.c */
extern const char *caller_kind_name(CallerKind kind);
extern void identity_resolve(text *api_key, Caller *caller);
extern bool membership_parse_uuid(const char *s, pg_uuid_t *uuid);

/* spiplan.c */
extern SPIPlanPtr membership_prepare_kept(const char *query, int nargs, Oid *types);

/* digest.c */
extern void membership_sha256(const void *data, size_t len, uint8 *digest);
extern bytea *membership_sha256_bytea(const void *data, size_t len);
extern bytea *membership_digest_bytea(const uint8 *digest);

/* What the tables say about an API key (apikey.c, keycache.c). */
typedef struct ApiKeyInfo
{
	int64		key_id;
	pg_uuid_t	org_id;
	bool		has_provider;
	pg_uuid_t	provider_id;
	int32		requests_per_minute;	/* -1: unlimited */
	bool		revoked;
	bool		offboarded;		/* its organisation was offboarded */
	bool		has_expiry;
	TimestampTz expires_at;
	char		prefix[16];
} ApiKeyInfo;

/* apikey.c */
extern bool apikey_parse(const char *key, size_t len);
extern bool apikey_fetch(const uint8 *hash, ApiKeyInfo *info);
extern bool organisation_offboarded(const pg_uuid_t *org_id, Snapshot snapshot, bool *exists);
extern void apikey_resolve(const char *key, size_t len, const char *source,
						   ApiKeyInfo *info);

/* usage.c: per-key, per-minute counters (the rate limiter and meter) */
typedef enum UsageCounter
{
	USAGE_ALLOWED_CALLS = 0,
	USAGE_REFUSED_CALLS,
	USAGE_VERIFIED_TRUE,
	USAGE_VERIFIED_FALSE,
	USAGE_COUNTERS
} UsageCounter;

typedef struct UsageTag
{
	Oid			dboid;
	int64		key_id;
	int64		minute;			/* minutes since the PostgreSQL epoch, UTC */
} UsageTag;

typedef struct UsageSlot
{
	UsageTag	tag;			/* hash key: must be first */
	pg_atomic_uint64 counts[USAGE_COUNTERS];
	uint64		flushed[USAGE_COUNTERS];	/* written by the flusher only */
} UsageSlot;

typedef struct UsageSnapshotEntry
{
	UsageTag	tag;
	uint64		counts[USAGE_COUNTERS];
} UsageSnapshotEntry;

typedef enum UsageAdmission
{
	USAGE_ALLOWED,
	USAGE_REFUSED,
	USAGE_UNMETERED				/* the counter table is full: fail open */
} UsageAdmission;

extern bool verification_limits;
extern int64 usage_minute(TimestampTz now);
extern TimestampTz usage_minute_start(int64 minute);
extern int64 usage_epoch(void);
extern UsageAdmission usage_admit(int64 key_id, int32 limit, TimestampTz now,
								  UsageSlot **slot, int *retry_seconds);
extern void usage_count_result(UsageSlot *slot, bool verified);
extern UsageSnapshotEntry *usage_collect(int *n);
extern void usage_flushed(UsageSnapshotEntry *entries, int n, TimestampTz now);
extern void usage_set_flusher_pid(int pid);

/* audit.c: verification audit records, queued for the flusher */
typedef enum AuditMode
{
	AUDIT_OFF,
	AUDIT_MISSES,
	AUDIT_ALL
} AuditMode;

typedef struct AuditRecord
{
	Oid			dboid;
	TimestampTz at;
	int64		key_id;
	pg_uuid_t	org_id;
	bool		by_email;		/* else by user_id */
	bool		verified;
	uint8		subject_hash[MEMBERSHIP_SHA256_LEN];
} AuditRecord;

extern int	audit_mode;
extern void audit_enqueue(const AuditRecord *record);
extern int	audit_peek(AuditRecord *records, int max, uint64 *next);
extern void audit_advance(uint64 next);
extern void audit_stats(int64 *queued, int64 *dropped);

/* answercache.c: verification answers, exact at commit */
typedef struct VerifyAnswer
{
	bool		verified;
	int32		member_since;	/* a DateADT */
	char		tier[33];
} VerifyAnswer;

typedef struct AnswerTag
{
	Oid			dboid;
	pg_uuid_t	org_id;
	bool		by_email;
	uint8		subject[MEMBERSHIP_SHA256_LEN];
} AnswerTag;

extern bool answercache_fetch(const pg_uuid_t *org, bool by_email, const uint8 *subject,
							  AnswerTag *tag, uint64 *generation, VerifyAnswer *answer);
extern void answercache_store(const AnswerTag *tag, uint64 generation,
							  const VerifyAnswer *answer);
extern void answercache_stats(int64 *used, int64 *capacity, int64 *fills, int64 *wipes);

/* keycache.c */
extern bool keycache_lookup(const uint8 *hash, ApiKeyInfo *info);
typedef enum KeyLookup
{
	KEY_FOUND,
	KEY_UNKNOWN,
	KEY_MALFORMED
} KeyLookup;
extern KeyLookup keycache_resolve(const char *key, size_t len, ApiKeyInfo *info);
extern void keycache_stats(int64 *used, int64 *capacity, int64 *fills, int64 *full);

/* email.c */
extern char *email_normalize(const char *raw, size_t len, size_t *outlen);
extern bool email_is_valid(const char *email, size_t len);

/* jsonfield.c */
extern bool json_top_level_strings(const char *json, int nfields,
								   const char *const *names, char **values);

/* relscan.c */
extern Oid	membership_relid(const char *relname);
extern AttrNumber membership_attnum(Relation rel, const char *colname);
extern HeapTuple membership_fetch_unique(Relation rel, Oid indexid, int nkeys,
										 ScanKey keys, Snapshot snapshot);

/* jobs.c: periodic jobs, their runs and their progress */
extern void jobs_report_progress(int64 done, int64 total, const char *phase);
extern pg_uuid_t *jobs_organisation_ids(int *count, bool offboarded);

/* push_worker.c, push_wake.c: the push worker and its wake-up at commit */
extern int	push_workers;
extern void PushWorkerInit(void);
extern Size PushShmemSize(void);
extern void PushShmemInit(void);
extern void push_wake_register(int n);
extern void push_wake_plan(int n, TimestampTz when);

/* ledger.c, ledger_earn.c: the loyalty ledger's C paths (issue #4) */
extern char *ledger_event_problem(const int64 *amount_cents, text *source_type, text *source_ref,
								  text *category, bool has_at, TimestampTz occurred_at);
extern Size LedgerShmemSize(void);
extern void LedgerShmemInit(void);

/* ledger_write.c: a single earn's rows, written without a statement */
typedef struct EarnWrite
{
	/* the event */
	Datum		organisation;	/* uuid */
	Datum		member;			/* uuid */
	text	   *idempotency_key;
	text	   *source_type;
	text	   *source_ref;
	text	   *category;		/* NULL: none */
	int64		amount_cents;
	TimestampTz occurred_at;
	int32		year;			/* of occurred_at, UTC */
	int32		expiry_months;
	/* what the rules made of it, but for the account's tier and purchases */
	Numeric		base;			/* times the tier's multiplier, floored */
	int64		bonus;
	int64		bonus_first;	/* on a first purchase */
	int64	   *rule_ids;		/* the rules applied, for the entry's details */
	int			nrule_ids;
	int64	   *rule_ids_first;
	int			nrule_ids_first;
	int			ntiers;
	char	  **tier_names;
	Numeric    *tier_multipliers;
	/* what was written */
	char	   *tier;			/* the account's */
	int64		entry_id;
	int64		points;
	int64		qualifying_points;
} EarnWrite;

/* the loyalty tables open for writing, as a statement would have them */
typedef struct LedgerWriter
{
	Relation	accounts;
	Relation	ledger;
	Relation	buckets;
	struct EState *estate;
	struct ResultRelInfo *account_rri;
	struct ResultRelInfo *ledger_rri;
	struct ResultRelInfo *bucket_rri;
	struct TupleTableSlot *account_slot;
	struct TupleTableSlot *entry_slot;
	struct TupleTableSlot *bucket_slot;
	bool		ledger_proven;	/* only foreign key checks it proves */
	bool		bucket_proven;
	bool		nested;			/* opened while another writer was open */
} LedgerWriter;

extern bool ledger_earn_write(EarnWrite *e);
extern bool ledger_writer_open(LedgerWriter *w);
extern bool ledger_writer_earn(LedgerWriter *w, EarnWrite *e, bool check_key);
extern void ledger_writer_close(LedgerWriter *w);
extern Datum ledger_rules_details(const int64 *ids, int n);
extern text *ledger_earn_key(text *source_type, text *source_ref);

#endif							/* MEMBERSHIP_H */
