/*-------------------------------------------------------------------------
 *
 * membership.h
 *	  Declarations shared by the subsystems of the membership extension.
 *
 * Each subsystem lives in its own file with its own prefix and exports an
 * XxxInit() that _PG_init() calls once.  This header holds what more than
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
#include "utils/relcache.h"
#include "utils/uuid.h"

/*
 * SQLSTATEs for API-facing errors.  PostgREST answers a PTxyz error with
 * HTTP status xyz.
 */
#define ERRCODE_MEMBERSHIP_UNAUTHORIZED		MAKE_SQLSTATE('P','T','4','0','1')
#define ERRCODE_MEMBERSHIP_FORBIDDEN		MAKE_SQLSTATE('P','T','4','0','3')
#define ERRCODE_MEMBERSHIP_TOO_MANY_REQUESTS MAKE_SQLSTATE('P','T','4','2','9')

#define MEMBERSHIP_SCHEMA		"membership"
#define MEMBERSHIP_OWNER_ROLE	"membership_owner"

/* true when the library was loaded through shared_preload_libraries */
extern bool membership_preloaded;

/* Subsystem initialisation, called once from _PG_init(). */
extern void TenantInit(void);
extern void IdentityInit(void);
extern void JobsInit(void);

extern void membership_require_preload(const char *feature);

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

/* digest.c */
#define MEMBERSHIP_SHA256_LEN 32
extern void membership_sha256(const void *data, size_t len, uint8 *digest);
extern bytea *membership_sha256_bytea(const void *data, size_t len);

/* apikey.c */
extern bool apikey_parse(const char *key, size_t len);
extern bool apikey_lookup(bytea *hash, Caller *caller, char *state,
						  size_t statelen);

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
										 ScanKey keys);

/* jobs.c: periodic jobs, their runs and their progress */
extern void jobs_report_progress(int64 done, int64 total, const char *phase);
extern pg_uuid_t *jobs_organisation_ids(int *count);

#endif							/* MEMBERSHIP_H */
