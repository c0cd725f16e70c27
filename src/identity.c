/*-------------------------------------------------------------------------
 *
 * identity.c
 *	  Resolve who is calling an API function, once per call.
 *
 * Sources, in order:
 *	 1. the function's "api_key" argument;
 *	 2. the "x-api-key" header that PostgREST puts in request.headers;
 *	 3. JWT claims in request.jwt.claims ("role", "org_id", "member_id"),
 *		trusted only when the session user is the gateway role
 *		(membership.gateway_role) or a superuser: PostgREST has verified the
 *		token's signature before it sets them, and nobody else may.
 * An API key is a secret, so it counts wherever it comes from; claims are
 * plain text that any session could set, so they count only from the
 * gateway.  Anything else is refused with PT401.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/guc.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_authenticate);

static char *gateway_role = NULL;

static const char *const caller_kind_names[CALLER_KIND_COUNT] = {
	[CALLER_NONE] = "none",
	[CALLER_PROVIDER] = "provider",
	[CALLER_ORGANISATION] = "organisation",
	[CALLER_MEMBER] = "member",
	[CALLER_ORG_ADMIN] = "org_admin",
	[CALLER_PLATFORM_ADMIN] = "platform_admin",
	[CALLER_SYSTEM] = "system",
};

static const char *const caller_kind_descriptions[CALLER_KIND_COUNT] = {
	[CALLER_NONE] = "anonymous callers",
	[CALLER_PROVIDER] = "provider API keys",
	[CALLER_ORGANISATION] = "organisation API keys",
	[CALLER_MEMBER] = "members",
	[CALLER_ORG_ADMIN] = "organisation administrators",
	[CALLER_PLATFORM_ADMIN] = "platform administrators",
	[CALLER_SYSTEM] = "extension jobs",
};

void
IdentityInit(void)
{
	DefineCustomStringVariable("membership.gateway_role",
							   "Role whose sessions may pass JWT claims in request.jwt.claims.",
							   "PostgREST logs in as this role and sets the claims only after verifying "
							   "the token. Claims set by sessions of any other non-superuser role are refused.",
							   &gateway_role,
							   "authenticator",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

const char *
caller_kind_name(CallerKind kind)
{
	return caller_kind_names[kind];
}

/*
 * Parse the canonical text form of a UUID (hex digits, hyphens anywhere
 * uuid_in accepts them is not needed here) without raising an error.
 */
bool
membership_parse_uuid(const char *s, pg_uuid_t *uuid)
{
	int			n = 0;

	for (const char *p = s; *p; p++)
	{
		int			hi;
		int			lo;

		if (*p == '-' && n > 0 && n < UUID_LEN)
			continue;
		if (n >= UUID_LEN || !isxdigit((unsigned char) p[0]) ||
			!isxdigit((unsigned char) p[1]))
			return false;
		hi = isdigit((unsigned char) p[0]) ? p[0] - '0' : pg_ascii_tolower(p[0]) - 'a' + 10;
		lo = isdigit((unsigned char) p[1]) ? p[1] - '0' : pg_ascii_tolower(p[1]) - 'a' + 10;
		uuid->data[n++] = (unsigned char) ((hi << 4) | lo);
		p++;
	}
	return n == UUID_LEN;
}

static void
resolve_api_key(const char *key, size_t len, const char *source, Caller *caller)
{
	ApiKeyInfo	info;

	apikey_resolve(key, len, source, &info);
	if (info.offboarded)
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("API key \"%s\" has been revoked", info.prefix),
				 errdetail("Its organisation has been offboarded.")));
	memset(caller, 0, sizeof(*caller));
	caller->kind = info.has_provider ? CALLER_PROVIDER : CALLER_ORGANISATION;
	caller->has_org = true;
	caller->org_id = info.org_id;
	caller->has_provider = info.has_provider;
	caller->provider_id = info.provider_id;
	caller->api_key_id = info.key_id;
}

/*
 * Does the row with primary key "id" exist in table "relname" and, when
 * "org" is given, belong to that organisation?
 */
static bool
row_exists(const char *relname, const pg_uuid_t *id, const pg_uuid_t *org)
{
	char		indexname[NAMEDATALEN];
	Relation	rel;
	ScanKeyData skey;
	HeapTuple	tuple;
	bool		found = false;

	snprintf(indexname, sizeof(indexname), "%s_pkey", relname);
	rel = table_open(membership_relid(relname), AccessShareLock);
	ScanKeyInit(&skey, membership_attnum(rel, "id"), BTEqualStrategyNumber,
				F_UUID_EQ, UUIDPGetDatum(unconstify(pg_uuid_t *, id)));
	tuple = membership_fetch_unique(rel, membership_relid(indexname), 1, &skey, GetActiveSnapshot());
	if (tuple != NULL)
	{
		found = true;
		if (org != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tuple, membership_attnum(rel, "organisation_id"),
										 RelationGetDescr(rel), &isnull);

			found = !isnull && memcmp(DatumGetUUIDP(d), org, sizeof(pg_uuid_t)) == 0;
		}
	}
	table_close(rel, AccessShareLock);
	return found;
}

static void
claim_uuid(const char *name, const char *value, pg_uuid_t *uuid)
{
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("JWT claims lack \"%s\"", name),
				 errdetail("Tokens for this role must carry the \"%s\" claim.", name)));
	if (!membership_parse_uuid(value, uuid))
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("JWT claim \"%s\" is not a valid UUID", name)));
}

/*
 * Fill "caller" from gateway-trusted JWT claims.  Returns false when the
 * claims name no membership role (PostgREST's anonymous role, say), so the
 * caller has no JWT identity at all.
 */
static bool
resolve_claims(const char *claims, Caller *caller)
{
	static const char *const names[] = {"role", "org_id", "member_id"};
	char	   *values[3];
	Oid			session_user = GetSessionUserId();
	Oid			role;
	CallerKind	kind;

	if (!json_top_level_strings(claims, 3, names, values) || values[0] == NULL)
		return false;

	if (strcmp(values[0], "membership_member") == 0)
		kind = CALLER_MEMBER;
	else if (strcmp(values[0], "membership_org_admin") == 0)
		kind = CALLER_ORG_ADMIN;
	else if (strcmp(values[0], "membership_platform_admin") == 0)
		kind = CALLER_PLATFORM_ADMIN;
	else
		return false;

	if (!superuser_arg(session_user))
	{
		char	   *session_name = GetUserNameFromId(session_user, false);

		if (gateway_role == NULL || strcmp(session_name, gateway_role) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("JWT claims are not trusted in this session"),
					 errdetail("Claims in \"request.jwt.claims\" count only when the session user is the gateway role \"%s\" or a superuser; the session user is \"%s\".",
							   gateway_role ? gateway_role : "", session_name),
					 errhint("Call through the gateway, or pass an API key.")));
	}

	/* PostgREST switches to the token's role; refuse claims that disagree. */
	role = get_role_oid(values[0], true);
	if (!OidIsValid(role) || !has_privs_of_role(GetOuterUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
				 errmsg("JWT role \"%s\" is not the current role", values[0]),
				 errdetail("The gateway must switch to the token's role before calling.")));

	memset(caller, 0, sizeof(*caller));
	caller->kind = kind;
	if (kind != CALLER_PLATFORM_ADMIN || values[1] != NULL)
	{
		bool		exists;
		bool		offboarded;

		claim_uuid("org_id", values[1], &caller->org_id);
		caller->has_org = true;
		offboarded = organisation_offboarded(&caller->org_id, GetActiveSnapshot(), &exists);
		if (!exists)
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("unknown organisation in JWT claims")));
		if (offboarded)
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("the organisation in the JWT claims has been offboarded")));
	}
	if (kind == CALLER_MEMBER)
	{
		claim_uuid("member_id", values[2], &caller->member_id);
		caller->has_member = true;
		if (!row_exists("members", &caller->member_id, &caller->org_id))
			ereport(ERROR,
					(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
					 errmsg("unknown member in JWT claims"),
					 errdetail("The organisation in the claims has no such member.")));
	}
	return true;
}

/*
 * Resolve the caller of the current API call from the sources listed at
 * the top of this file, raising PT401 when there is none or it is invalid.
 */
void
identity_resolve(text *api_key, Caller *caller)
{
	const char *headers;
	const char *claims;

	memset(caller, 0, sizeof(*caller));

	if (api_key != NULL)
	{
		resolve_api_key(VARDATA_ANY(api_key), VARSIZE_ANY_EXHDR(api_key),
						"the \"api_key\" argument", caller);
		return;
	}

	headers = GetConfigOption("request.headers", true, false);
	if (headers != NULL && headers[0] != '\0')
	{
		static const char *const names[] = {"x-api-key"};
		char	   *values[1];

		if (json_top_level_strings(headers, 1, names, values) && values[0] != NULL)
		{
			resolve_api_key(values[0], strlen(values[0]),
							"the \"x-api-key\" header", caller);
			return;
		}
	}

	claims = GetConfigOption("request.jwt.claims", true, false);
	if (claims != NULL && claims[0] != '\0' && resolve_claims(claims, caller))
		return;

	ereport(ERROR,
			(errcode(ERRCODE_MEMBERSHIP_UNAUTHORIZED),
			 errmsg("no credentials supplied"),
			 errdetail("Pass an API key in the \"api_key\" argument or the \"x-api-key\" header, or call through the gateway with a JWT.")));
}

/*
 * Is "kind" among the kinds named in "allowed"?  Also describes the allowed
 * kinds in "accepted", for the error message.
 */
static bool
kind_allowed(CallerKind kind, ArrayType *allowed, StringInfo accepted)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			named = 0;
	bool		found = false;

	deconstruct_array(allowed, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			continue;
		name = TextDatumGetCString(elems[i]);
		if (strcmp(name, caller_kind_names[kind]) == 0)
			found = true;
		for (int k = CALLER_PROVIDER; k < CALLER_KIND_COUNT; k++)
		{
			if (strcmp(name, caller_kind_names[k]) != 0)
				continue;
			named++;
			appendStringInfo(accepted, "%s%s",
							 named == 1 ? "" : (i == n - 1 ? " and " : ", "),
							 caller_kind_descriptions[k]);
		}
	}
	return found;
}

/*
 * membership.authenticate(api_key text, VARIADIC allowed text[])
 *		RETURNS membership.caller
 *
 * The first thing every API function does: resolve the caller, check that
 * its kind is one the function accepts (PT403 otherwise) and make it the
 * tenant context for the rest of the transaction.
 */
Datum
membership_authenticate(PG_FUNCTION_ARGS)
{
	text	   *api_key = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	Caller		caller;
	StringInfoData accepted;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (!tenant_may_set_context())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to resolve a caller"),
				 errdetail("Only functions owned by the \"%s\" role may authenticate callers.",
						   MEMBERSHIP_OWNER_ROLE)));
	if (PG_ARGISNULL(1))
		elog(ERROR, "authenticate() needs the kinds of caller it accepts");

	tenant_clear();
	identity_resolve(api_key, &caller);

	initStringInfo(&accepted);
	if (!kind_allowed(caller.kind, PG_GETARG_ARRAYTYPE_P(1), &accepted))
		ereport(ERROR,
				(errcode(ERRCODE_MEMBERSHIP_FORBIDDEN),
				 errmsg("%s cannot call this function", caller_kind_descriptions[caller.kind]),
				 errdetail("It accepts %s.", accepted.data)));

	tenant_set(&caller);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = CStringGetTextDatum(caller_kind_names[caller.kind]);
	if (caller.has_org)
		values[1] = UUIDPGetDatum(&caller.org_id);
	else
		nulls[1] = true;
	if (caller.has_member)
		values[2] = UUIDPGetDatum(&caller.member_id);
	else
		nulls[2] = true;
	if (caller.has_provider)
		values[3] = UUIDPGetDatum(&caller.provider_id);
	else
		nulls[3] = true;
	if (caller.api_key_id != 0)
		values[4] = Int64GetDatum(caller.api_key_id);
	else
		nulls[4] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
