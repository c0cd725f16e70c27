/*-------------------------------------------------------------------------
 *
 * apikey.c
 *	  API keys: their format, generation, lookup and resolution.
 *
 * A key looks like "mk_" + 8 public characters + "_" + 52 secret
 * characters, all from the RFC 4648 base32 alphabet in lower case: 40 bits
 * of public id and 260 bits of secret.  The first 11 characters are the
 * public prefix shown in listings; the database keeps only the prefix and
 * the SHA-256 hash of the whole key, so the secret is seen once, at issue.
 *
 * apikey_resolve() is the one way a presented key becomes an ApiKeyInfo,
 * for the PL/pgSQL API functions (through identity.c) and for
 * verify_member alike: format check, hash, cache (keycache.c) or table,
 * then revoked and expired keys refused with PT401.  The keys of an
 * offboarded organisation are revoked but still resolve, flagged, until
 * the organisation is purged: verification answers them {"verified":
 * false}, as it does for a removed member, and every other caller refuses
 * them (identity.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "membership.h"

#define API_KEY_TAG			"mk_"
#define API_KEY_TAG_LEN		3
#define API_KEY_ID_CHARS	8
#define API_KEY_SECRET_CHARS 52
#define API_KEY_PUBLIC_LEN	(API_KEY_TAG_LEN + API_KEY_ID_CHARS)
#define API_KEY_LEN			(API_KEY_PUBLIC_LEN + 1 + API_KEY_SECRET_CHARS)

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

PG_FUNCTION_INFO_V1(membership_generate_api_key);
PG_FUNCTION_INFO_V1(membership_api_key_hash);
PG_FUNCTION_INFO_V1(membership_locate_api_key);

static bool
is_base32(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

/* Does this look like a key we could have issued? */
bool
apikey_parse(const char *key, size_t len)
{
	if (len != API_KEY_LEN || strncmp(key, API_KEY_TAG, API_KEY_TAG_LEN) != 0 ||
		key[API_KEY_PUBLIC_LEN] != '_')
		return false;
	for (size_t i = API_KEY_TAG_LEN; i < len; i++)
	{
		if (i != API_KEY_PUBLIC_LEN && !is_base32(key[i]))
			return false;
	}
	return true;
}

/*
 * The api_keys row whose "column" equals "value", through the unique index
 * "index", read with "snapshot", or NULL.  "rel" must be open.
 */
static HeapTuple
fetch_key(Relation rel, const char *column, const char *index, Oid eqproc,
		  Datum value, Snapshot snapshot)
{
	ScanKeyData skey;

	ScanKeyInit(&skey, membership_attnum(rel, column), BTEqualStrategyNumber, eqproc, value);
	return membership_fetch_unique(rel, membership_relid(index), 1, &skey, snapshot);
}

/* The plan's limit per minute, -1 when unlimited (or the plan is gone). */
static int32
plan_limit(Datum plan, Snapshot snapshot)
{
	Relation	rel = table_open(membership_relid("plans"), AccessShareLock);
	ScanKeyData skey;
	HeapTuple	tuple;
	int32		limit = -1;

	ScanKeyInit(&skey, membership_attnum(rel, "plan"), BTEqualStrategyNumber, F_TEXTEQ, plan);
	tuple = membership_fetch_unique(rel, membership_relid("plans_pkey"), 1, &skey, snapshot);
	if (tuple != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, membership_attnum(rel, "requests_per_minute"),
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			limit = DatumGetInt32(d);
	}
	table_close(rel, AccessShareLock);
	return limit;
}

/*
 * Has this organisation been offboarded?  Sets "*exists" (when given) to
 * whether there is such an organisation at all.  Offboarding revokes the
 * organisation's keys in the same transaction, which invalidates every
 * cached key, so the answer is read whenever a key is.  (Before release
 * 0.3 there is no such column, and no organisation is offboarded.)
 */
bool
organisation_offboarded(const pg_uuid_t *org_id, Snapshot snapshot, bool *exists)
{
	Relation	rel = table_open(membership_relid("organisations"), AccessShareLock);
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), "offboarded_at");
	ScanKeyData skey;
	HeapTuple	tuple;
	bool		offboarded = false;

	ScanKeyInit(&skey, membership_attnum(rel, "id"), BTEqualStrategyNumber,
				F_UUID_EQ, UUIDPGetDatum(unconstify(pg_uuid_t *, org_id)));
	tuple = membership_fetch_unique(rel, membership_relid("organisations_pkey"), 1, &skey, snapshot);
	if (tuple != NULL && attnum != InvalidAttrNumber)
	{
		bool		isnull;

		heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);
		offboarded = !isnull;
	}
	if (exists != NULL)
		*exists = tuple != NULL;
	table_close(rel, AccessShareLock);
	return offboarded;
}

/*
 * Read the key with this hash, and its plan's limit, from the tables with
 * a snapshot taken now (see keycache.c for why now).  False when unknown.
 */
bool
apikey_fetch(const uint8 *hash, ApiKeyInfo *info)
{
	Relation	rel;
	HeapTuple	tuple;
	TupleDesc	desc;
	Snapshot	snapshot;
	Datum		d;
	bool		isnull;

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	rel = table_open(membership_relid("api_keys"), AccessShareLock);
	desc = RelationGetDescr(rel);
	tuple = fetch_key(rel, "key_hash", "api_keys_key_hash_idx", F_BYTEAEQ,
					  PointerGetDatum(membership_digest_bytea(hash)), snapshot);
	if (tuple == NULL)
	{
		table_close(rel, AccessShareLock);
		UnregisterSnapshot(snapshot);
		return false;
	}

	memset(info, 0, sizeof(*info));
	info->key_id = DatumGetInt64(heap_getattr(tuple, membership_attnum(rel, "id"), desc, &isnull));
	memcpy(&info->org_id,
		   DatumGetUUIDP(heap_getattr(tuple, membership_attnum(rel, "organisation_id"), desc, &isnull)),
		   sizeof(pg_uuid_t));
	d = heap_getattr(tuple, membership_attnum(rel, "provider_id"), desc, &isnull);
	if (!isnull)
	{
		info->has_provider = true;
		memcpy(&info->provider_id, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	}
	heap_getattr(tuple, membership_attnum(rel, "revoked_at"), desc, &isnull);
	info->revoked = !isnull;
	d = heap_getattr(tuple, membership_attnum(rel, "expires_at"), desc, &isnull);
	if (!isnull)
	{
		info->has_expiry = true;
		info->expires_at = DatumGetTimestampTz(d);
	}
	d = heap_getattr(tuple, membership_attnum(rel, "prefix"), desc, &isnull);
	text_to_cstring_buffer(DatumGetTextPP(d), info->prefix, sizeof(info->prefix));
	d = heap_getattr(tuple, membership_attnum(rel, "plan"), desc, &isnull);
	info->requests_per_minute = plan_limit(d, snapshot);
	info->offboarded = organisation_offboarded(&info->org_id, snapshot, NULL);

	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snapshot);
	return true;
}

/*
 * Resolve a presented key ("source" says where it came from, for the
 * error message), refusing malformed, unknown, revoked and expired keys
 * with PT401.
 */
void
apikey_resolve(const char *key, size_t len, const char *source, ApiKeyInfo *info)
{
	switch (keycache_resolve(key, len, info))
	{
		case KEY_FOUND:
			break;
		case KEY_MALFORMED:
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("invalid API key"),
					 errdetail("The key in %s is not a membership API key.", source)));
			break;
		case KEY_UNKNOWN:
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("invalid API key"),
					 errdetail("No API key matches the key in %s.", source)));
			break;
	}

	if (info->revoked && !info->offboarded)
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("API key \"%s\" has been revoked", info->prefix)));
	if (info->has_expiry && info->expires_at <= GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("API key \"%s\" has expired", info->prefix),
				 errdetail("The key was rotated and its overlap period has ended.")));
}

/*
 * membership.locate_api_key(key text, OUT id bigint, OUT organisation_id uuid)
 *
 * Find a key by its whole text or by its public prefix, in any
 * organisation.  Platform functions (revoke, rotate, plan changes) use it to
 * learn which tenant to act for; they are given only the key.
 */
Datum
membership_locate_api_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	const char *str = VARDATA_ANY(key);
	size_t		len = VARSIZE_ANY_EXHDR(key);
	Relation	rel;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		isnull;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	rel = table_open(membership_relid("api_keys"), AccessShareLock);
	if (apikey_parse(str, len))
		tuple = fetch_key(rel, "key_hash", "api_keys_key_hash_idx", F_BYTEAEQ,
						  PointerGetDatum(membership_sha256_bytea(str, len)), GetActiveSnapshot());
	else if (len == API_KEY_PUBLIC_LEN)
		tuple = fetch_key(rel, "prefix", "api_keys_prefix_key", F_TEXTEQ,
						  PointerGetDatum(key), GetActiveSnapshot());
	else
		tuple = NULL;

	if (tuple == NULL)
	{
		table_close(rel, AccessShareLock);
		PG_RETURN_NULL();
	}
	values[0] = heap_getattr(tuple, membership_attnum(rel, "id"), RelationGetDescr(rel), &isnull);
	values[1] = heap_getattr(tuple, membership_attnum(rel, "organisation_id"),
							 RelationGetDescr(rel), &isnull);
	table_close(rel, AccessShareLock);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * membership.generate_api_key() returns a fresh random key.  Used by
 * issue_api_key() and rotate_api_key(), which store only its hash.
 */
Datum
membership_generate_api_key(PG_FUNCTION_ARGS)
{
	uint8		random[API_KEY_LEN];
	char		key[API_KEY_LEN + 1];

	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));

	memcpy(key, API_KEY_TAG, API_KEY_TAG_LEN);
	for (int i = API_KEY_TAG_LEN; i < API_KEY_LEN; i++)
		key[i] = base32_alphabet[random[i] & 31];
	key[API_KEY_PUBLIC_LEN] = '_';
	key[API_KEY_LEN] = '\0';

	PG_RETURN_TEXT_P(cstring_to_text(key));
}

/* membership.api_key_hash(key text) returns the SHA-256 hash stored for it. */
Datum
membership_api_key_hash(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BYTEA_P(membership_sha256_bytea(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
}
