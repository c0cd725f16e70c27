/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  membership_api.verify_member: is this person an active member?
 *
 * Providers call this at checkout, synchronously, so it does no more than
 * it must: the API key comes from this backend's memory or the shared key
 * cache (keycache.c), the plan limit is one compare-and-swap on a shared
 * counter (usage.c), a repeated question is answered from the shared
 * answer cache (answercache.c), a new one costs a probe of a hash index on
 * the address's SHA-256, and the answer is built as jsonb directly.  It runs
 * no SQL, which is why it needs neither SECURITY DEFINER nor a search_path:
 * it reads the two tables it needs through their indexes, the way the
 * identity code does, and the key decides the organisation.
 *
 * The answer says only {"verified": true, "member_since", "tier"} or
 * {"verified": false}: a removed, lapsed or suspended member, an unknown
 * address and a dependent of an inactive member all look the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_verify_member);

/*
 * Relations and columns used on every call, looked up once per backend and
 * forgotten on any relcache invalidation of them.  Column numbers are
 * 0-based positions in the deformed tuple.
 */
typedef struct VerifyRelations
{
	bool		valid;
	Oid			members;
	Oid			members_by_email;
	Oid			members_by_external_id;
	Oid			members_pkey;
	Oid			dependents;
	Oid			dependents_by_email;
	int			m_id;
	int			m_org;
	int			m_status;
	int			m_tier;
	int			m_since;
	int			m_removed_at;
	int			d_org;
	int			d_member_id;
	int			d_created_at;
} VerifyRelations;

static VerifyRelations rels;

static void
verify_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == rels.members || relid == rels.dependents ||
		relid == rels.members_by_email || relid == rels.members_by_external_id ||
		relid == rels.members_pkey || relid == rels.dependents_by_email)
		rels.valid = false;
}

void
VerifyInit(void)
{
	CacheRegisterRelcacheCallback(verify_relcache_callback, (Datum) 0);
}

static int
column_of(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of relation %u does not exist", column, relid);
	return attnum - 1;
}

static void
load_relations(void)
{
	rels.members = membership_relid("members");
	rels.members_by_email = membership_relid("members_email_lookup_idx");
	rels.members_by_external_id = membership_relid("members_organisation_id_external_id_key");
	rels.members_pkey = membership_relid("members_pkey");
	rels.dependents = membership_relid("dependents");
	rels.dependents_by_email = membership_relid("dependents_email_lookup_idx");
	rels.m_id = column_of(rels.members, "id");
	rels.m_org = column_of(rels.members, "organisation_id");
	rels.m_status = column_of(rels.members, "status");
	rels.m_tier = column_of(rels.members, "membership_tier");
	rels.m_since = column_of(rels.members, "member_since");
	rels.m_removed_at = column_of(rels.members, "removed_at");
	rels.d_org = column_of(rels.dependents, "organisation_id");
	rels.d_member_id = column_of(rels.dependents, "member_id");
	rels.d_created_at = column_of(rels.dependents, "created_at");
	rels.valid = true;
}

/*
 * An index probe: the rows of "heap" that index "indexid" holds for its
 * leading columns equal to "values" (compared with "eqprocs"), read with
 * "snapshot".  Locks are kept to the end of the transaction, as the
 * executor does.  (Strategy 1 is equality for btree and hash alike.)
 */
typedef struct Probe
{
	Relation	index;
	IndexScanDesc scan;
} Probe;

static void
probe_begin(Probe *probe, Relation heap, Oid indexid, int nkeys, const RegProcedure *eqprocs,
			const Datum *values, Snapshot snapshot)
{
	ScanKeyData keys[2];

	probe->index = index_open(indexid, AccessShareLock);
	for (int i = 0; i < nkeys; i++)
	{
		ScanKeyInit(&keys[i], i + 1, BTEqualStrategyNumber, eqprocs[i], values[i]);
		keys[i].sk_collation = probe->index->rd_indcollation[i];
	}
	probe->scan = index_beginscan(heap, probe->index, snapshot, nkeys, 0);
	index_rescan(probe->scan, keys, nkeys, NULL, 0);
}

/*
 * The next row, deformed into "slot"; when "org_column" is not negative,
 * only rows of organisation "org".
 */
static bool
probe_next(Probe *probe, TupleTableSlot *slot, int org_column, const pg_uuid_t *org)
{
	while (index_getnext_slot(probe->scan, ForwardScanDirection, slot))
	{
		slot_getallattrs(slot);
		if (org_column < 0 ||
			memcmp(DatumGetUUIDP(slot->tts_values[org_column]), org, sizeof(pg_uuid_t)) == 0)
			return true;
	}
	return false;
}

static void
probe_end(Probe *probe)
{
	index_endscan(probe->scan);
	index_close(probe->index, NoLock);
}

/* The first row a probe finds, or false. */
static bool
probe_one(Relation heap, Oid indexid, int nkeys, const RegProcedure *eqprocs,
		  const Datum *values, int org_column, const pg_uuid_t *org, Snapshot snapshot,
		  TupleTableSlot *slot)
{
	Probe		probe;
	bool		found;

	probe_begin(&probe, heap, indexid, nkeys, eqprocs, values, snapshot);
	found = probe_next(&probe, slot, org_column, org);
	probe_end(&probe);
	return found;
}

/* Is the member in "slot" current and active?  Fills in the verdict if so. */
static bool
member_verdict(TupleTableSlot *slot, VerifyAnswer *verdict)
{
	text	   *status;
	text	   *tier;

	if (!slot->tts_isnull[rels.m_removed_at])
		return false;
	status = DatumGetTextPP(slot->tts_values[rels.m_status]);
	if (VARSIZE_ANY_EXHDR(status) != 6 || memcmp(VARDATA_ANY(status), "active", 6) != 0)
		return false;
	verdict->member_since = DatumGetDateADT(slot->tts_values[rels.m_since]);
	verdict->verified = true;
	tier = DatumGetTextPP(slot->tts_values[rels.m_tier]);
	text_to_cstring_buffer(tier, verdict->tier, sizeof(verdict->tier));
	return true;
}

static void
lookup_by_email(const pg_uuid_t *org, bytea *email_hash, Snapshot snapshot, VerifyAnswer *verdict)
{
	static const RegProcedure by_email[1] = {F_BYTEAEQ};
	static const RegProcedure by_id[1] = {F_UUID_EQ};
	Relation	members = table_open(rels.members, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(members, NULL);
	Datum		value = PointerGetDatum(email_hash);

	if (!(probe_one(members, rels.members_by_email, 1, by_email, &value, rels.m_org, org,
					snapshot, slot) &&
		  member_verdict(slot, verdict)))
	{
		/*
		 * Not an active member: perhaps the dependent of an active member
		 * (of any of the members who list this person).
		 */
		Relation	dependents = table_open(rels.dependents, AccessShareLock);
		TupleTableSlot *dslot = table_slot_create(dependents, NULL);
		Probe		probe;

		probe_begin(&probe, dependents, rels.dependents_by_email, 1, by_email, &value, snapshot);
		while (!verdict->verified && probe_next(&probe, dslot, rels.d_org, org))
		{
			Datum		member_id = dslot->tts_values[rels.d_member_id];

			if (probe_one(members, rels.members_pkey, 1, by_id, &member_id, -1, NULL,
						  snapshot, slot) &&
				member_verdict(slot, verdict))
			{
				TimestampTz since = DatumGetTimestampTz(dslot->tts_values[rels.d_created_at]);

				/* the date in UTC, whatever the session's time zone: answers are shared */
				verdict->member_since = (DateADT) (since / USECS_PER_DAY);
				strlcpy(verdict->tier, "dependent", sizeof(verdict->tier));
			}
		}
		probe_end(&probe);
		ExecDropSingleTupleTableSlot(dslot);
		table_close(dependents, NoLock);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(members, NoLock);
}

static void
lookup_by_user_id(const pg_uuid_t *org, text *user_id, Snapshot snapshot, VerifyAnswer *verdict)
{
	static const RegProcedure by_external_id[2] = {F_UUID_EQ, F_TEXTEQ};
	Relation	members = table_open(rels.members, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(members, NULL);
	Datum		values[2];

	values[0] = UUIDPGetDatum(unconstify(pg_uuid_t *, org));
	values[1] = PointerGetDatum(user_id);
	if (probe_one(members, rels.members_by_external_id, 2, by_external_id, values, -1, NULL,
				  snapshot, slot))
		member_verdict(slot, verdict);
	ExecDropSingleTupleTableSlot(slot);
	table_close(members, NoLock);
}

/*
 * {"tier": ..., "verified": true, "member_since": "YYYY-MM-DD"} or
 * {"verified": false}, written straight in jsonb's binary form (see
 * utils/jsonb.h) rather than through JsonbValueToJsonb(), which builds it
 * in a growing buffer of its own: the shape never changes, so the size is
 * known and one palloc holds it.  The layout is what convertToJsonb()
 * makes of the same object: the object's header, one JEntry per key, then
 * one per value, then the keys' bytes and the values' bytes in that order.
 * Keys are in jsonb's order (shorter first); the first JEntry of an object
 * holds the end offset of its data rather than its length (every
 * JB_OFFSET_STRIDE'th does, and there are never more than six); true and
 * false are in their JEntries and take no data.
 */
static Jsonb *
verdict_jsonb(const VerifyAnswer *verdict)
{
	static const char keys[] = "tierverifiedmember_since";
	int			npairs = verdict->verified ? 3 : 1;
	int			tierlen = verdict->verified ? strlen(verdict->tier) : 0;
	int			size = VARHDRSZ + sizeof(uint32) + 2 * npairs * sizeof(JEntry) +
		(verdict->verified ? 4 + 8 + 12 + tierlen + 10 : 8);
	Jsonb	   *jb = palloc(size);
	uint32	   *header = (uint32 *) VARDATA(jb);
	JEntry	   *entries = (JEntry *) (header + 1);
	char	   *data = (char *) (entries + 2 * npairs);

	SET_VARSIZE(jb, size);
	*header = npairs | JB_FOBJECT;
	if (!verdict->verified)
	{
		entries[0] = JENTRY_HAS_OFF | 8;
		entries[1] = JENTRY_ISBOOL_FALSE;
		memcpy(data, keys + 4, 8);
		return jb;
	}

	entries[0] = JENTRY_HAS_OFF | 4;	/* "tier" */
	entries[1] = 8;				/* "verified" */
	entries[2] = 12;			/* "member_since" */
	entries[3] = tierlen;
	entries[4] = JENTRY_ISBOOL_TRUE;
	entries[5] = 10;
	memcpy(data, keys, 24);
	data += 24;
	memcpy(data, verdict->tier, tierlen);
	data += tierlen;
	{
		int			year;
		int			month;
		int			day;

		j2date(verdict->member_since + POSTGRES_EPOCH_JDATE, &year, &month, &day);
		data[0] = '0' + year / 1000 % 10;
		data[1] = '0' + year / 100 % 10;
		data[2] = '0' + year / 10 % 10;
		data[3] = '0' + year % 10;
		data[4] = '-';
		data[5] = '0' + month / 10;
		data[6] = '0' + month % 10;
		data[7] = '-';
		data[8] = '0' + day / 10;
		data[9] = '0' + day % 10;
	}
	return jb;
}

/* The provider's key, from the argument or the x-api-key header. */
static void
resolve_provider_key(text *api_key, ApiKeyInfo *info)
{
	if (api_key != NULL)
		apikey_resolve(VARDATA_ANY(api_key), VARSIZE_ANY_EXHDR(api_key),
					   "the \"api_key\" argument", info);
	else
	{
		static const char *const names[] = {"x-api-key"};
		const char *headers = GetConfigOption("request.headers", true, false);
		char	   *values[1] = {NULL};

		if (headers == NULL || headers[0] == '\0' ||
			!json_top_level_strings(headers, 1, names, values) || values[0] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("no API key supplied"),
					 errdetail("Pass the provider's API key in the \"api_key\" argument or the \"x-api-key\" header.")));
		apikey_resolve(values[0], strlen(values[0]), "the \"x-api-key\" header", info);
	}

	if (!info->has_provider)
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_FORBIDDEN),
				 errmsg("organisation API keys cannot verify members"),
				 errdetail("Verification answers providers; use a key issued to a provider.")));
}

/*
 * membership_api.verify_member(email text, user_id text, api_key text)
 *		RETURNS jsonb
 */
Datum
membership_verify_member(PG_FUNCTION_ARGS)
{
	text	   *email = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	text	   *user_id = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	text	   *api_key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	ApiKeyInfo	key;
	uint8		subject[MEMBERSHIP_SHA256_LEN];
	UsageSlot  *slot = NULL;
	VerifyAnswer verdict;
	AnswerTag	tag;
	uint64		generation;
	TimestampTz now;

	membership_require_preload("verify_member");
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("verification is not available on a standby server"),
				 errdetail("Verification calls are limited and metered, and only the primary can do both."),
				 errhint("Send verification calls to the primary.")));
	resolve_provider_key(api_key, &key);

	/* the question must make sense before it is counted */
	if ((email == NULL) == (user_id == NULL))
		ereport(ERROR,
				(errcode(email == NULL ? ERRCODE_NULL_VALUE_NOT_ALLOWED : ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(email == NULL ? "either email or user_id is required" :
						"pass either email or user_id, not both")));
	if (email != NULL)
	{
		size_t		len;
		char	   *normalized = email_normalize(VARDATA_ANY(email), VARSIZE_ANY_EXHDR(email), &len);

		if (!email_is_valid(normalized, len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid email address \"%s\"", text_to_cstring(email))));
		membership_sha256(normalized, len, subject);
	}
	else
	{
		if (VARSIZE_ANY_EXHDR(user_id) == 0 ||
			pg_mbstrlen_with_len(VARDATA_ANY(user_id), VARSIZE_ANY_EXHDR(user_id)) > 200)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("user_id must be 1 to 200 characters")));
		membership_sha256(VARDATA_ANY(user_id), VARSIZE_ANY_EXHDR(user_id), subject);
	}

	now = GetCurrentTimestamp();
	if (verification_limits)
	{
		int			retry_seconds = 0;

		if (usage_admit(key.key_id, key.requests_per_minute, now, &slot, &retry_seconds) == USAGE_REFUSED)
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_TOO_MANY_REQUESTS),
					 errmsg_plural("rate limit of %d call per minute exceeded",
								   "rate limit of %d calls per minute exceeded",
								   key.requests_per_minute, key.requests_per_minute),
					 errdetail("Key \"%s\" has made all the calls its plan allows in this minute.", key.prefix),
					 errhint_plural("Retry after %d second.", "Retry after %d seconds.",
									retry_seconds, retry_seconds)));
	}

	if (!answercache_fetch(&key.org_id, email != NULL, subject, &tag, &generation, &verdict))
	{
		/* a cacheable answer must be read after the generation was */
		Snapshot	snapshot = generation != 0 ? RegisterSnapshot(GetLatestSnapshot()) : GetActiveSnapshot();

		memset(&verdict, 0, sizeof(verdict));
		if (!rels.valid)
			load_relations();
		if (email != NULL)
			lookup_by_email(&key.org_id, membership_digest_bytea(subject), snapshot, &verdict);
		else
			lookup_by_user_id(&key.org_id, user_id, snapshot, &verdict);
		if (generation != 0)
		{
			UnregisterSnapshot(snapshot);
			answercache_store(&tag, generation, &verdict);
		}
	}

	usage_count_result(slot, verdict.verified);
	if (audit_mode == AUDIT_ALL || (audit_mode == AUDIT_MISSES && !verdict.verified))
	{
		AuditRecord record;

		memset(&record, 0, sizeof(record));
		record.dboid = MyDatabaseId;
		record.at = now;
		record.key_id = key.key_id;
		record.org_id = key.org_id;
		record.by_email = email != NULL;
		record.verified = verdict.verified;
		memcpy(record.subject_hash, subject, MEMBERSHIP_SHA256_LEN);
		audit_enqueue(&record);
	}

	PG_RETURN_JSONB_P(verdict_jsonb(&verdict));
}
