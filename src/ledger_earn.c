/*-------------------------------------------------------------------------
 *
 * ledger_earn.c
 *	  membership.earn_points(): a single earn, in C; and the events of a
 *	  batch (membership.loyalty_earn_events()).
 *
 * A single earn used to be a PL/pgSQL function running half a dozen
 * statements, each with its executor start-up, and reading the program,
 * the tiers and the earn rules at every call.  Here it is:
 *
 *	1. the organisation's rules, from this backend's cache of loyalty
 *	   programs (below), applied in C to the event, both ways the
 *	   member's account may make of it (first purchase or not);
 *	2. the rows written without a statement (src/ledger_write.c), or,
 *	   when that path declines, one statement (a saved plan,
 *	   earn_statement) that locks the account, picks the points for its
 *	   tier and purchases, and writes the ledger entry, the bucket and the
 *	   account: INSERT ... ON CONFLICT DO NOTHING on the idempotency key
 *	   is the replay check, and when it writes nothing neither does the
 *	   rest;
 *	3. only then, and rarely: an account is opened (and 2 run again), a
 *	   replay checked against the original entry
 *	   (membership.loyalty_earn_replay()), a tier upgrade applied
 *	   (membership.loyalty_apply_upgrades()).
 *
 * The rules are evaluated as release 0.2's membership.loyalty_earn_calc()
 * did (src/sql/0.2/220_ledger_earn.sql; dropped in 0.3): of each kind the
 * highest-priority rule that applies (ties: the lowest id), base points =
 * floor(amount_cents * points_per_unit / unit_cents), times the category
 * multiplier, times the tier multiplier, floored, plus the bonuses, all in
 * numeric arithmetic.
 *
 * The program cache: each backend keeps the program settings, tiers and
 * active earn rules of the last organisations it earned for, tagged with
 * a generation counter in shared memory.  Statement triggers on
 * loyalty_programs, loyalty_tiers and loyalty_earn_rules bump the counter
 * when the changing transaction commits (as src/keycache.c does for API
 * keys), so a rule change applies to the next earn everywhere.  The cache
 * is bypassed by a transaction that changed those tables itself (it must
 * see its own changes), under REPEATABLE READ or SERIALIZABLE (the rules
 * must be those of the transaction's snapshot), and when the library was
 * not preloaded (no shared counter).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_earn_points);
PG_FUNCTION_INFO_V1(membership_loyalty_program_changed);
PG_FUNCTION_INFO_V1(membership_loyalty_earn_events);

/* the earn rule kinds that need more than a name comparison */
typedef enum EarnRuleKind
{
	RULE_CATEGORY_MULTIPLIER,
	RULE_FIXED_BONUS,
	RULE_ORDER_THRESHOLD,
	RULE_FIRST_PURCHASE,
	RULE_ACTION					/* signup, review, referral: kind = source_type */
} EarnRuleKind;

typedef struct EarnRule
{
	int64		id;
	EarnRuleKind kind;
	char	   *kind_name;
	char	   *category;		/* NULL: any */
	Numeric		multiplier;		/* category_multiplier only */
	int64		bonus_points;	/* the other kinds */
	int64		min_amount_cents;	/* order_threshold only */
	bool		has_from;
	TimestampTz valid_from;
	bool		has_until;
	TimestampTz valid_until;
} EarnRule;

typedef struct EarnTier
{
	char	   *tier;
	int64		threshold;
	Numeric		multiplier;
} EarnTier;

/* one organisation's program, tiers (by threshold) and active rules */
typedef struct EarnProgram
{
	bool		valid;
	Oid			dboid;
	pg_uuid_t	org;
	uint64		generation;		/* 0: never reused */
	MemoryContext cxt;
	Numeric		points_per_unit;
	int32		unit_cents;
	int32		expiry_months;
	int			ntiers;
	EarnTier   *tiers;
	int			nrules;
	EarnRule   *rules;			/* by kind, priority descending, id */
} EarnProgram;

typedef struct LedgerShared
{
	pg_atomic_uint64 generation;
} LedgerShared;

#define EARN_PROGRAMS 32

static LedgerShared *ledger_shared = NULL;
static EarnProgram programs[EARN_PROGRAMS];
static int	programs_next = 0;
static bool program_changed_in_xact = false;
static bool ledger_callback_registered = false;

/* saved plans, prepared on first use */
static SPIPlanPtr plan_open_account = NULL;
static SPIPlanPtr plan_partner = NULL;
static SPIPlanPtr plan_write = NULL;
static SPIPlanPtr plan_replay = NULL;
static SPIPlanPtr plan_upgrade = NULL;
static SPIPlanPtr plan_single = NULL;
static SPIPlanPtr plan_program = NULL;
static SPIPlanPtr plan_tiers = NULL;
static SPIPlanPtr plan_rules = NULL;

Size
LedgerShmemSize(void)
{
	return MAXALIGN(sizeof(LedgerShared));
}

void
LedgerShmemInit(void)
{
	bool		found;

	ledger_shared = ShmemInitStruct("membership loyalty program cache", sizeof(LedgerShared), &found);
	if (!found)
		pg_atomic_init_u64(&ledger_shared->generation, 1);
}

static void
ledger_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (program_changed_in_xact && ledger_shared != NULL)
			{
				pg_write_barrier();
				pg_atomic_fetch_add_u64(&ledger_shared->generation, 1);
			}
			program_changed_in_xact = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			/* the commit would happen in another backend, unseen here */
			if (program_changed_in_xact)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed loyalty programs, tiers or earn rules")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			program_changed_in_xact = false;
			break;
		default:
			break;
	}
}

/*
 * Statement trigger on loyalty_programs, loyalty_tiers and
 * loyalty_earn_rules: every backend's cached programs are stale once this
 * transaction commits; until then this transaction reads them afresh.
 */
Datum
membership_loyalty_program_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "loyalty_program_changed() must be called as a trigger");

	if (!ledger_callback_registered)
	{
		RegisterXactCallback(ledger_xact_callback, NULL);
		ledger_callback_registered = true;
	}
	program_changed_in_xact = true;
	return PointerGetDatum(NULL);
}

static SPIPlanPtr
prepare(SPIPlanPtr *plan, const char *query, int nargs, Oid *types)
{
	if (*plan == NULL)
		*plan = membership_prepare_kept(query, nargs, types);
	return *plan;
}

static void
execute(SPIPlanPtr plan, Datum *values, const char *nulls, long count)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/* Connect to SPI unless "connected" says it was done. */
static void
spi_connect_once(bool *connected)
{
	if (*connected)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	*connected = true;
}

static Datum
column(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static char *
column_text(int row, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = column(row, col, &isnull);

	return isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

static Numeric
column_numeric(int row, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = column(row, col, &isnull);
	MemoryContext old;
	Numeric		n;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	n = DatumGetNumericCopy(d);
	MemoryContextSwitchTo(old);
	return n;
}

static int64
column_int64(int row, int col, bool *isnull)
{
	Datum		d = column(row, col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/*
 * Read an organisation's program, tiers and active rules into "p"
 * (inside a connected SPI).  False if the organisation has no program.
 */
static bool
program_fill(EarnProgram *p, const pg_uuid_t *org, uint64 generation)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {UUIDPGetDatum(org)};
	bool		isnull;

	p->valid = false;
	if (p->cxt == NULL)
		p->cxt = AllocSetContextCreate(CacheMemoryContext, "membership loyalty program",
									   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(p->cxt);

	execute(prepare(&plan_program,
					"SELECT p.points_per_unit, p.unit_cents, p.expiry_months FROM membership.loyalty_programs p "
					"WHERE p.organisation_id = $1", 1, types),
			values, NULL, 1);
	if (SPI_processed != 1)
		return false;
	p->points_per_unit = column_numeric(0, 1, p->cxt);
	p->unit_cents = DatumGetInt32(column(0, 2, &isnull));
	p->expiry_months = DatumGetInt32(column(0, 3, &isnull));

	execute(prepare(&plan_tiers,
					"SELECT t.tier, t.threshold, t.multiplier FROM membership.loyalty_tiers t "
					"WHERE t.organisation_id = $1 ORDER BY t.threshold", 1, types),
			values, NULL, 0);
	p->ntiers = (int) SPI_processed;
	p->tiers = MemoryContextAllocZero(p->cxt, sizeof(EarnTier) * Max(p->ntiers, 1));
	for (int i = 0; i < p->ntiers; i++)
	{
		p->tiers[i].tier = column_text(i, 1, p->cxt);
		p->tiers[i].threshold = column_int64(i, 2, &isnull);
		p->tiers[i].multiplier = column_numeric(i, 3, p->cxt);
	}

	execute(prepare(&plan_rules,
					"SELECT r.id, r.kind, r.category, r.multiplier, r.bonus_points, r.min_amount_cents, "
					"r.valid_from, r.valid_until FROM membership.loyalty_earn_rules r "
					"WHERE r.organisation_id = $1 AND r.active ORDER BY r.kind, r.priority DESC, r.id",
					1, types),
			values, NULL, 0);
	p->nrules = (int) SPI_processed;
	p->rules = MemoryContextAllocZero(p->cxt, sizeof(EarnRule) * Max(p->nrules, 1));
	for (int i = 0; i < p->nrules; i++)
	{
		EarnRule   *r = &p->rules[i];
		Datum		d;

		r->id = column_int64(i, 1, &isnull);
		r->kind_name = column_text(i, 2, p->cxt);
		if (strcmp(r->kind_name, "category_multiplier") == 0)
			r->kind = RULE_CATEGORY_MULTIPLIER;
		else if (strcmp(r->kind_name, "fixed_bonus") == 0)
			r->kind = RULE_FIXED_BONUS;
		else if (strcmp(r->kind_name, "order_threshold") == 0)
			r->kind = RULE_ORDER_THRESHOLD;
		else if (strcmp(r->kind_name, "first_purchase") == 0)
			r->kind = RULE_FIRST_PURCHASE;
		else
			r->kind = RULE_ACTION;
		r->category = column_text(i, 3, p->cxt);
		r->multiplier = column_numeric(i, 4, p->cxt);
		r->bonus_points = column_int64(i, 5, &isnull);
		r->min_amount_cents = column_int64(i, 6, &isnull);
		d = column(i, 7, &isnull);
		r->has_from = !isnull;
		r->valid_from = isnull ? 0 : DatumGetTimestampTz(d);
		d = column(i, 8, &isnull);
		r->has_until = !isnull;
		r->valid_until = isnull ? 0 : DatumGetTimestampTz(d);
	}

	p->dboid = MyDatabaseId;
	memcpy(&p->org, org, sizeof(pg_uuid_t));
	p->generation = generation;
	p->valid = true;
	return true;
}

/*
 * The organisation's program: from the cache when it is current, else
 * read (and cached).  NULL if the organisation has no program yet.
 */
static EarnProgram *
program_cached_at(const pg_uuid_t *org, uint64 *generation)
{
	*generation = 0;
	if (ledger_shared != NULL && !program_changed_in_xact && !IsolationUsesXactSnapshot())
	{
		*generation = pg_atomic_read_u64(&ledger_shared->generation);
		pg_read_barrier();
		for (int i = 0; i < EARN_PROGRAMS; i++)
		{
			EarnProgram *p = &programs[i];

			if (p->valid && p->generation == *generation && p->dboid == MyDatabaseId &&
				memcmp(&p->org, org, sizeof(pg_uuid_t)) == 0)
				return p;
		}
	}
	return NULL;
}

/* The organisation's program when the cache has it current, else NULL. */
static EarnProgram *
program_cached(const pg_uuid_t *org)
{
	uint64		generation;

	return program_cached_at(org, &generation);
}

static EarnProgram *
program_get(const pg_uuid_t *org)
{
	uint64		generation;
	EarnProgram *p = program_cached_at(org, &generation);

	if (p != NULL)
		return p;
	/* a slot of this organisation is refilled, else the next one in turn */
	for (int i = 0; i < EARN_PROGRAMS && p == NULL; i++)
		if (programs[i].valid && programs[i].dboid == MyDatabaseId &&
			memcmp(&programs[i].org, org, sizeof(pg_uuid_t)) == 0)
			p = &programs[i];
	if (p == NULL)
	{
		p = &programs[programs_next];
		programs_next = (programs_next + 1) % EARN_PROGRAMS;
	}
	return program_fill(p, org, generation) ? p : NULL;
}

static Numeric
num_mul(Numeric a, Numeric b)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(a), NumericGetDatum(b)));
}

static Numeric
num_floor(Numeric a)
{
	return DatumGetNumeric(DirectFunctionCall1(numeric_floor, NumericGetDatum(a)));
}

static bool
text_equals(text *t, const char *s)
{
	size_t		len = VARSIZE_ANY_EXHDR(t);

	return strlen(s) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/*
 * What the rules make of an event, but for the account's tier: the base
 * points (floor(amount_cents * points_per_unit / unit_cents)) times the
 * category multiplier, the bonus points, and the ids of the rules applied
 * (in id order, into rule_ids, at most p->nrules).  The earn is then
 * floor(base * tier multiplier) + bonus.
 */
static Numeric
earn_calc(EarnProgram *p, text *source_type, int64 amount, text *category, TimestampTz at,
		  bool first_purchase, Numeric points_per_unit, int32 unit_cents,
		  int64 *bonus, int64 *rule_ids, int *nrule_ids)
{
	Numeric		multiplier = NULL;
	Numeric		points;
	const char *done_kind = NULL;

	*bonus = 0;
	*nrule_ids = 0;
	for (int i = 0; i < p->nrules; i++)
	{
		EarnRule   *r = &p->rules[i];
		bool		applies;

		/* rules come by kind, best first: only the first that applies counts */
		if (done_kind != NULL && strcmp(done_kind, r->kind_name) == 0)
			continue;
		if ((r->has_from && r->valid_from > at) || (r->has_until && r->valid_until <= at))
			continue;
		switch (r->kind)
		{
			case RULE_CATEGORY_MULTIPLIER:
				applies = amount > 0 && category != NULL && r->category != NULL &&
					text_equals(category, r->category);
				break;
			case RULE_FIXED_BONUS:
				applies = amount > 0 && (r->category == NULL ||
										 (category != NULL && text_equals(category, r->category)));
				break;
			case RULE_ORDER_THRESHOLD:
				applies = amount >= r->min_amount_cents &&
					(r->category == NULL || (category != NULL && text_equals(category, r->category)));
				break;
			case RULE_FIRST_PURCHASE:
				applies = amount > 0 && first_purchase;
				break;
			default:
				applies = text_equals(source_type, r->kind_name);
				break;
		}
		if (!applies)
			continue;
		done_kind = r->kind_name;
		if (r->kind == RULE_CATEGORY_MULTIPLIER)
			multiplier = r->multiplier;
		else
			*bonus += r->bonus_points;
		/* keep the ids in order */
		{
			int			j = *nrule_ids;

			while (j > 0 && rule_ids[j - 1] > r->id)
			{
				rule_ids[j] = rule_ids[j - 1];
				j--;
			}
			rule_ids[j] = r->id;
			(*nrule_ids)++;
		}
	}

	points = num_mul(int64_to_numeric(amount), points_per_unit);
	points = DatumGetNumeric(DirectFunctionCall2(numeric_div, NumericGetDatum(points),
												 NumericGetDatum(int64_to_numeric(unit_cents))));
	points = num_floor(points);
	if (multiplier != NULL)
		points = num_mul(points, multiplier);
	return points;
}

static EarnTier *
tier_named(EarnProgram *p, const char *tier)
{
	for (int i = 0; i < p->ntiers; i++)
		if (strcmp(p->tiers[i].tier, tier) == 0)
			return &p->tiers[i];
	return NULL;
}

/* {"rules": [id, ...]}: what the ledger entry's details say */
Datum
ledger_rules_details(const int64 *ids, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"rules\": [");
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s" INT64_FORMAT, i > 0 ? ", " : "", ids[i]);
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* "earn:<source_type>:<source_ref>": an earn's idempotency key */
text *
ledger_earn_key(text *source_type, text *source_ref)
{
	return cstring_to_text(psprintf("earn:%.*s:%.*s",
									(int) VARSIZE_ANY_EXHDR(source_type), VARDATA_ANY(source_type),
									(int) VARSIZE_ANY_EXHDR(source_ref), VARDATA_ANY(source_ref)));
}

/*
 * The one statement of an earn.  The account is locked and read first
 * (CTE "a"), and the points computed from it: the tier multiplier comes
 * from the program's tiers passed as two arrays ($14, $15); the bonus and
 * the entry's details (the rules applied) depend on whether this is the
 * member's first purchase ($16..$19).  Returns one row if the account
 * exists: its tier, and the entry's id, points and the account's new
 * qualifying points, all NULL when the idempotency key was already used (a
 * replay: nothing written); and whether the account's tier was missing
 * from the tiers passed (a tier added since the cached program was read:
 * nothing written either).
 */
static const char *const earn_statement =
"WITH a AS ("
" SELECT a.balance, a.tier,"
"  (pg_catalog.floor($12 * $15[pg_catalog.array_position($14, a.tier)])"
"   + CASE WHEN a.purchases = 0 THEN $17 ELSE $16 END)::bigint AS points,"
"  CASE WHEN a.purchases = 0 THEN $19 ELSE $18 END AS details"
" FROM membership.loyalty_accounts a"
" WHERE a.member_id = $2 AND a.organisation_id = $1"
" FOR UPDATE"
"), entry AS ("
" INSERT INTO membership.loyalty_ledger AS l"
"  (organisation_id, member_id, kind, points, balance_after, idempotency_key, source_type,"
"   source_ref, amount_cents, category, provider_id, details, occurred_at)"
" SELECT $1, $2, $3, a.points, a.balance + a.points, $4, $5, $6, $7, $8, $9,"
"  a.details, $10"
" FROM a WHERE a.points IS NOT NULL"
" ON CONFLICT (organisation_id, idempotency_key) DO NOTHING"
" RETURNING l.id, l.points"
"), bucket AS ("
" INSERT INTO membership.loyalty_buckets (organisation_id, member_id, ledger_id, points,"
"  remaining, earned_at, expires_at)"
" SELECT $1, $2, e.id, e.points, e.points, $10,"
"  ($10 AT TIME ZONE 'UTC')::date + pg_catalog.make_interval(months => $11)"
" FROM entry e WHERE e.points > 0"
"), account AS ("
" UPDATE membership.loyalty_accounts a SET"
"  balance = a.balance + e.points,"
"  lifetime_points = a.lifetime_points + e.points,"
"  purchases = a.purchases + $20,"
"  qualifying_year = greatest(a.qualifying_year, $13),"
"  qualifying_points = CASE WHEN $13 > a.qualifying_year THEN e.points"
"                           WHEN $13 = a.qualifying_year THEN a.qualifying_points + e.points"
"                           ELSE a.qualifying_points END,"
"  last_activity_at = greatest(a.last_activity_at, $10)"
" FROM entry e"
" WHERE a.member_id = $2 AND a.organisation_id = $1"
" RETURNING a.qualifying_points"
")"
" SELECT a.tier, e.id, e.points, ac.qualifying_points, a.points IS NULL"
" FROM a LEFT JOIN entry e ON true LEFT JOIN account ac ON true";

static Oid	earn_statement_types[20] = {
	UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, UUIDOID, TIMESTAMPTZOID,
	INT4OID, NUMERICOID, INT4OID, TEXTARRAYOID, NUMERICARRAYOID, INT8OID, INT8OID, JSONBOID,
	JSONBOID, INT4OID
};

/*
 * Fill in what earning the event needs from the program, but for the
 * account ("w" for ledger_writer_earn(), whose parameters these are): the
 * rules applied both ways (first purchase or not), the idempotency key,
 * the tiers.
 */
static void
earn_prepare(EarnProgram *program, EarnWrite *w, Numeric points_per_unit, int32 unit_cents,
			 Datum organisation, Datum member, text *source_type, text *source_ref, int64 amount,
			 text *category, TimestampTz at, int32 year)
{
	w->organisation = organisation;
	w->member = member;
	w->idempotency_key = ledger_earn_key(source_type, source_ref);
	w->source_type = source_type;
	w->source_ref = source_ref;
	w->category = category;
	w->amount_cents = amount;
	w->occurred_at = at;
	w->year = year;
	w->expiry_months = program->expiry_months;
	w->rule_ids = palloc(sizeof(int64) * Max(program->nrules, 1));
	w->rule_ids_first = palloc(sizeof(int64) * Max(program->nrules, 1));
	w->base = earn_calc(program, source_type, amount, category, at, false, points_per_unit, unit_cents,
						&w->bonus, w->rule_ids, &w->nrule_ids);
	(void) earn_calc(program, source_type, amount, category, at, true, points_per_unit, unit_cents,
					 &w->bonus_first, w->rule_ids_first, &w->nrule_ids_first);
	w->ntiers = program->ntiers;
	w->tier_names = palloc(sizeof(char *) * Max(program->ntiers, 1));
	w->tier_multipliers = palloc(sizeof(Numeric) * Max(program->ntiers, 1));
	for (int i = 0; i < program->ntiers; i++)
	{
		w->tier_names[i] = program->tiers[i].tier;
		w->tier_multipliers[i] = program->tiers[i].multiplier;
	}
}

/*
 * A tier upgrade when the year's points reach a tier above the account's
 * (membership.loyalty_apply_upgrades(), through SPI: spi_connect_once()).
 */
static void
earn_upgrade(EarnProgram *program, Datum organisation, Datum member, const char *account_tier,
			 int64 qualifying, bool *connected)
{
	EarnTier   *tier = tier_named(program, account_tier);
	int64		best = -1;

	if (tier == NULL)
		elog(ERROR, "the loyalty program of the organisation has no tier \"%s\"", account_tier);
	for (int i = 0; i < program->ntiers; i++)
		if (program->tiers[i].threshold <= qualifying)
			best = Max(best, program->tiers[i].threshold);
	if (best > tier->threshold)
	{
		Oid			types[2] = {UUIDOID, UUIDOID};
		Datum		values[2] = {organisation, member};

		spi_connect_once(connected);
		execute(prepare(&plan_upgrade, "SELECT membership.loyalty_apply_upgrades($1, ARRAY[$2])", 2, types),
				values, NULL, 1);
	}
}

/*
 * membership.earn_points(organisation uuid, member uuid, amount_cents
 *     bigint, source_type text, source_ref text, category text,
 *     occurred_at timestamptz, partner uuid) RETURNS bigint
 *
 * Earn points for an event; see docs/ledger.md.  Runs as the owner
 * (SECURITY DEFINER).
 */
Datum
membership_earn_points(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *org;
	Datum		member;
	int64		amount = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	text	   *source_type = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	text	   *source_ref = PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4);
	text	   *category = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	TimestampTz at = PG_ARGISNULL(6) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(6);
	char	   *problem;
	Caller		caller;
	EarnProgram *program = NULL;
	Numeric		points_per_unit;
	int32		unit_cents;
	Datum	   *tier_names;
	Datum	   *tier_multipliers;
	bool		isnull;
	struct pg_tm tm;
	fsec_t		fsec;
	Datum		values[20];
	char		nulls[20];
	int64		points = 0;
	bool		result_null = false;
	bool		opened = false;
	bool		refreshed = false;
	bool		replayed = false;
	char	   *account_tier = NULL;
	int64		qualifying = 0;
	EarnWrite	w;
	bool		connected = false;

	problem = ledger_event_problem(PG_ARGISNULL(2) ? NULL : &amount, source_type, source_ref,
								   category, true, at);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("organisation must not be null")));
	org = PG_GETARG_UUID_P(0);

	/* act for the organisation until the end of the transaction */
	if (!tenant_may_set_context())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the tenant context")));
	memset(&caller, 0, sizeof(caller));
	caller.kind = CALLER_SYSTEM;
	caller.has_org = true;
	memcpy(&caller.org_id, org, sizeof(pg_uuid_t));
	tenant_set(&caller);

	if (problem != NULL)
	{
		size_t		len = strlen(problem);
		const char *tail = "must not be null";

		ereport(ERROR,
				(errcode(len >= strlen(tail) && strcmp(problem + len - strlen(tail), tail) == 0
						 ? ERRCODE_NULL_VALUE_NOT_ALLOWED : ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", problem)));
	}
	member = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);

	if (timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));

	for (;;)
	{
		/*
		 * The program (none yet: the account's opening creates it).  SPI
		 * only when something has to be read: a cached program written
		 * without a statement needs none.
		 */
		program = program_cached(org);
		if (program == NULL || !PG_ARGISNULL(7))
		{
			spi_connect_once(&connected);
			program = program_get(org);
		}
		if (program != NULL)
		{
			points_per_unit = program->points_per_unit;
			unit_cents = program->unit_cents;
			if (!PG_ARGISNULL(7))
			{
				Oid			types[2] = {UUIDOID, UUIDOID};
				Datum		pvalues[2] = {UUIDPGetDatum(org), PG_GETARG_DATUM(7)};

				execute(prepare(&plan_partner,
								"SELECT lp.points_per_unit, lp.unit_cents FROM membership.loyalty_partners lp "
								"WHERE lp.organisation_id = $1 AND lp.provider_id = $2 AND lp.active",
								2, types),
						pvalues, NULL, 1);
				if (SPI_processed == 1)
				{
					points_per_unit = column_numeric(0, 1, CurrentMemoryContext);
					unit_cents = DatumGetInt32(column(0, 2, &isnull));
				}
			}
			earn_prepare(program, &w, points_per_unit, unit_cents, UUIDPGetDatum(org), member, source_type,
						 source_ref, amount, category, at, tm.tm_year);

			/* the common case, without a statement (src/ledger_write.c) */
			if (!opened && !refreshed && PG_ARGISNULL(7) && !PG_ARGISNULL(1) && ledger_earn_write(&w))
			{
				account_tier = w.tier;
				points = w.points;
				qualifying = w.qualifying_points;
				break;
			}
			spi_connect_once(&connected);

			tier_names = palloc(sizeof(Datum) * Max(program->ntiers, 1));
			tier_multipliers = palloc(sizeof(Datum) * Max(program->ntiers, 1));
			for (int i = 0; i < program->ntiers; i++)
			{
				tier_names[i] = CStringGetTextDatum(program->tiers[i].tier);
				tier_multipliers[i] = NumericGetDatum(program->tiers[i].multiplier);
			}

			memset(nulls, ' ', sizeof(nulls));
			values[0] = UUIDPGetDatum(org);
			values[1] = member;
			nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
			values[2] = CStringGetTextDatum(amount > 0 ? "EARN" : "BONUS");
			values[3] = PointerGetDatum(w.idempotency_key);
			values[4] = PointerGetDatum(source_type);
			values[5] = PointerGetDatum(source_ref);
			values[6] = Int64GetDatum(amount);
			values[7] = PointerGetDatum(category);
			nulls[7] = category ? ' ' : 'n';
			values[8] = PG_ARGISNULL(7) ? (Datum) 0 : PG_GETARG_DATUM(7);
			nulls[8] = PG_ARGISNULL(7) ? 'n' : ' ';
			values[9] = TimestampTzGetDatum(at);
			values[10] = Int32GetDatum(program->expiry_months);
			values[11] = NumericGetDatum(w.base);
			values[12] = Int32GetDatum(tm.tm_year);
			values[13] = PointerGetDatum(construct_array(tier_names, program->ntiers, TEXTOID, -1, false,
														 TYPALIGN_INT));
			values[14] = PointerGetDatum(construct_array(tier_multipliers, program->ntiers, NUMERICOID, -1,
														 false, TYPALIGN_INT));
			values[15] = Int64GetDatum(w.bonus);
			values[16] = Int64GetDatum(w.bonus_first);
			values[17] = ledger_rules_details(w.rule_ids, w.nrule_ids);
			values[18] = ledger_rules_details(w.rule_ids_first, w.nrule_ids_first);
			values[19] = Int32GetDatum(amount > 0 ? 1 : 0);
			execute(prepare(&plan_write, earn_statement, 20, earn_statement_types), values, nulls, 0);
			if (SPI_processed == 1)
			{
				bool		stale = DatumGetBool(column(0, 5, &isnull));

				if (!stale)
				{
					(void) column(0, 2, &replayed);
					account_tier = column_text(0, 1, CurrentMemoryContext);
					points = column_int64(0, 3, &isnull);
					qualifying = column_int64(0, 4, &isnull);
					break;
				}
				/* a tier the cached program lacks: read it again, and retry */
				if (refreshed)
					elog(ERROR, "the loyalty program of the organisation has no tier \"%s\"",
						 column_text(0, 1, CurrentMemoryContext));
				program->valid = false;
				refreshed = true;
				continue;
			}
		}
		if (opened)
			elog(ERROR, "the loyalty account of the member could not be opened");
		opened = true;
		spi_connect_once(&connected);
		/* no account (or no program): open it, then again */
		{
			Oid			types[2] = {UUIDOID, UUIDOID};
			Datum		ovalues[2] = {UUIDPGetDatum(org), member};
			char		onulls[2] = {' ', PG_ARGISNULL(1) ? 'n' : ' '};

			execute(prepare(&plan_open_account,
							"SELECT membership.loyalty_open_account($1, $2)", 2, types),
					ovalues, onulls, 1);
		}
	}

	if (replayed)
	{
		/* nothing written: a replay (found by the statement, so connected) */
		Oid			types[7] = {UUIDOID, UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
		Datum		rvalues[7];
		char		rnulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Datum		result;

		rvalues[0] = UUIDPGetDatum(org);
		rvalues[1] = member;
		rvalues[2] = Int64GetDatum(amount);
		rvalues[3] = PointerGetDatum(source_type);
		rvalues[4] = PointerGetDatum(source_ref);
		rvalues[5] = PointerGetDatum(category);
		rnulls[5] = category ? ' ' : 'n';
		rvalues[6] = PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6);
		rnulls[6] = PG_ARGISNULL(6) ? 'n' : ' ';
		execute(prepare(&plan_replay,
						"SELECT membership.loyalty_earn_replay($1, $2, $3, $4, $5, $6, $7)", 7, types),
				rvalues, rnulls, 1);
		result = column(0, 1, &result_null);
		points = result_null ? 0 : DatumGetInt64(result);
	}
	else
		earn_upgrade(program, UUIDPGetDatum(org), member, account_tier, qualifying, &connected);

	if (connected)
		SPI_finish();
	if (result_null)
		PG_RETURN_NULL();
	PG_RETURN_INT64(points);
}

/* the fields of membership.loyalty_batch_event */
enum
{
	EV_IDX, EV_MEMBER, EV_AMOUNT, EV_SOURCE_TYPE, EV_SOURCE_REF, EV_CATEGORY, EV_OCCURRED_AT, EV_PROBLEM,
	EV_COLUMNS
};

/*
 * membership.loyalty_earn_events(organisation uuid, events
 *     membership.loyalty_batch_event[]) RETURNS TABLE (idx integer,
 *     points bigint)
 *
 * Earn each event of a batch, in array order, as a single earn would,
 * with the tables opened once (src/ledger_write.c): the events
 * earn_points_batch() found well formed and new, whose accounts it has
 * opened and locked in one order.  A tier reached by one event applies to
 * the member's next.  When the tables cannot be written that way, each
 * event goes through earn_points().  Internal: only the owner calls it.
 */
Datum
membership_loyalty_earn_events(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *org = PG_GETARG_UUID_P(0);
	ArrayType  *events = PG_GETARG_ARRAYTYPE_P(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	desc = lookup_rowtype_tupdesc(ARR_ELEMTYPE(events), -1);
	Datum	   *elements;
	bool	   *element_nulls;
	int			count;
	LedgerWriter writer;
	bool		direct;
	bool		connected = false;
	EarnProgram *program = NULL;
	MemoryContext event_cxt;
	MemoryContext old;

	InitMaterializedSRF(fcinfo, 0);
	if (desc->natts != EV_COLUMNS)
		elog(ERROR, "loyalty_batch_event has %d columns, not %d", desc->natts, EV_COLUMNS);
	deconstruct_array(events, ARR_ELEMTYPE(events), -1, false, TYPALIGN_DOUBLE,
					  &elements, &element_nulls, &count);
	spi_connect_once(&connected);
	direct = ledger_writer_open(&writer);
	event_cxt = AllocSetContextCreate(CurrentMemoryContext, "loyalty batch event", ALLOCSET_DEFAULT_SIZES);

	for (int i = 0; i < count; i++)
	{
		HeapTupleData tuple;
		Datum		ev[EV_COLUMNS];
		bool		evnull[EV_COLUMNS];
		Datum		result[2];
		bool		result_null[2] = {false, false};
		struct pg_tm tm;
		fsec_t		fsec;
		EarnWrite	w;
		bool		written = false;

		if (element_nulls[i])
			elog(ERROR, "batch event %d is null", i + 1);
		old = MemoryContextSwitchTo(event_cxt);
		tuple.t_data = DatumGetHeapTupleHeader(elements[i]);
		tuple.t_len = HeapTupleHeaderGetDatumLength(tuple.t_data);
		heap_deform_tuple(&tuple, desc, ev, evnull);
		if (timestamp2tm(DatumGetTimestampTz(ev[EV_OCCURRED_AT]), NULL, &tm, &fsec, NULL, NULL) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp out of range")));

		for (int attempt = 0; direct && attempt < 2 && !written; attempt++)
		{
			/* a tier the program read lacks: read it again, once */
			if (program == NULL || !program->valid)
				program = program_get(org);
			if (program == NULL)
				elog(ERROR, "the organisation has no loyalty program");
			earn_prepare(program, &w, program->points_per_unit, program->unit_cents, UUIDPGetDatum(org),
						 ev[EV_MEMBER], DatumGetTextPP(ev[EV_SOURCE_TYPE]), DatumGetTextPP(ev[EV_SOURCE_REF]),
						 DatumGetInt64(ev[EV_AMOUNT]),
						 evnull[EV_CATEGORY] ? NULL : DatumGetTextPP(ev[EV_CATEGORY]),
						 DatumGetTimestampTz(ev[EV_OCCURRED_AT]), tm.tm_year);
			written = ledger_writer_earn(&writer, &w, false);
			if (!written)
				program->valid = false;
		}
		if (written)
		{
			result[1] = Int64GetDatum(w.points);
			earn_upgrade(program, UUIDPGetDatum(org), ev[EV_MEMBER], w.tier, w.qualifying_points,
						 &connected);
		}
		else
		{
			/* the account missing, or the tables unusual: earn_points() sorts it out */
			Oid			types[7] = {UUIDOID, UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
			Datum		values[7] = {UUIDPGetDatum(org), ev[EV_MEMBER], ev[EV_AMOUNT], ev[EV_SOURCE_TYPE],
			ev[EV_SOURCE_REF], ev[EV_CATEGORY], ev[EV_OCCURRED_AT]};
			char		nulls[7] = {' ', ' ', ' ', ' ', ' ', evnull[EV_CATEGORY] ? 'n' : ' ', ' '};

			execute(prepare(&plan_single,
							"SELECT membership.earn_points($1, $2, $3, $4, $5, $6, $7)", 7, types),
					values, nulls, 1);
			result[1] = column(0, 1, &result_null[1]);
		}
		result[0] = ev[EV_IDX];
		MemoryContextSwitchTo(old);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, result_null);
		MemoryContextReset(event_cxt);
	}

	if (direct)
		ledger_writer_close(&writer);
	SPI_finish();
	ReleaseTupleDesc(desc);
	return (Datum) 0;
}
