/*-------------------------------------------------------------------------
 *
 * ledger_write.c
 *	  An earn's writes, without planning or starting a query.
 *
 * An earn changes three rows: the account (balance, lifetime and
 * qualifying points, purchases, last activity), a new ledger entry and its
 * expiry bucket.  Through SQL that is one statement of four parts whose
 * executor start-up alone cost more than the whole of the plain "insert a
 * ledger row, update the balance" it is measured against.  Here the rows
 * are written the way logical replication applies a change
 * (execReplication.c): the account is found by its primary key and
 * updated in place, the entry and the bucket inserted beside it.  What
 * makes the ledger trustworthy still applies to every row: NOT NULL and
 * CHECK constraints (ExecConstraints; their expressions planned and set
 * up once per backend instead of once per call), unique indexes, and
 * every row trigger, fired at the end as a statement's would be, with one
 * exception.  The foreign keys of the entry and the bucket hold by
 * construction: the entry's account is the row just updated (and so
 * locked until commit, against deletion too), the bucket's entry the row
 * just inserted, the entry's partner NULL.  Their checks, a query each,
 * are skipped when they are all the inserts would fire; any other row
 * trigger on those tables and every check fires as usual
 * (ExecSimpleRelationInsert()).
 *
 * ledger_writer_open() opens the tables, ledger_writer_earn() writes one
 * earn and sees what the ones before it wrote, ledger_writer_close() fires
 * the AFTER triggers: a single earn opens the tables for itself
 * (ledger_earn_write()), a batch once for all its events (ledger_earn.c).
 *
 * Only the common case is taken here; ledger_earn_write() returns false,
 * having written nothing, whenever the statement in ledger_earn.c should
 * do it instead: no account yet, the idempotency key already used (a
 * replay, or one being written by another session), the account's tier
 * unknown to the cached program, REPEATABLE READ or SERIALIZABLE (whose
 * snapshot rules the statement's executor applies), a read-only
 * transaction, or a table given statement triggers, rules, stored
 * generated columns or BEFORE UPDATE triggers since.
 *
 * Row-level security: the rows written are the organisation's own (the
 * account is read by member and checked against the organisation, the
 * entry and the bucket carry it), and the caller has set the tenant
 * context to that organisation before coming here, so the policies would
 * pass them all.
 *
 * Concurrency: the account is read with a fresh snapshot and updated
 * without a prior lock; when another session changed it in between, the
 * update waits for that session, reports the change, and everything is
 * read again (a few times, then the statement takes over).  Two earns
 * with the same key for the same member thus meet at the account: the
 * second finds the first's entry when it reads again, and is a replay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_trigger.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "membership.h"

/* how often the account is read again after a concurrent change */
#define EARN_WRITE_ATTEMPTS 5

/* the columns written, in the tables' order */
static const char *const ledger_columns[] = {
	"id", "organisation_id", "member_id", "kind", "points", "balance_after", "idempotency_key",
	"source_type", "source_ref", "amount_cents", "category", "provider_id", "shortfall", "details",
	"occurred_at", "recorded_at"
};
enum
{
	L_ID, L_ORG, L_MEMBER, L_KIND, L_POINTS, L_BALANCE_AFTER, L_KEY, L_SOURCE_TYPE, L_SOURCE_REF,
	L_AMOUNT, L_CATEGORY, L_PROVIDER, L_SHORTFALL, L_DETAILS, L_OCCURRED_AT, L_RECORDED_AT,
	L_COLUMNS
};

static const char *const bucket_columns[] = {
	"ledger_id", "organisation_id", "member_id", "points", "remaining", "expired", "earned_at",
	"expires_at", "expired_at"
};
enum
{
	B_LEDGER_ID, B_ORG, B_MEMBER, B_POINTS, B_REMAINING, B_EXPIRED, B_EARNED_AT, B_EXPIRES_AT,
	B_EXPIRED_AT, B_COLUMNS
};

static const char *const account_columns[] = {
	"organisation_id", "member_id", "balance", "lifetime_points", "qualifying_year",
	"qualifying_points", "purchases", "tier", "last_activity_at"
};
enum
{
	A_ORG, A_MEMBER, A_BALANCE, A_LIFETIME, A_QUALIFYING_YEAR, A_QUALIFYING_POINTS, A_PURCHASES,
	A_TIER, A_LAST_ACTIVITY, A_COLUMNS
};

/*
 * What the executor would plan and set up at every call, done once: a
 * table's CHECK constraints (in the order ExecRelCheck() takes them) and
 * the predicates of its partial indexes, planned and ready to evaluate.
 * An evaluation must not overlap another of the same state, so a writer
 * opened inside another (through a trigger or a constraint's function)
 * sets up its own from the planned expressions.
 */
typedef struct TablePlans
{
	int			nchecks;
	Expr	  **check_exprs;
	ExprState **checks;
	int			npredicates;
	Oid		   *predicate_index;
	List	  **predicate_quals;
	ExprState **predicates;
} TablePlans;

/*
 * The tables, indexes and sequence, where the columns are (0-based) and
 * the tables' CHECK constraints, looked up once per backend and again
 * after any change to them.  "usable" is false when a table has columns
 * this file does not know (it would leave them NULL instead of applying
 * their defaults).
 */
typedef struct LedgerRelations
{
	bool		valid;
	bool		usable;
	Oid			accounts;
	Oid			accounts_pkey;
	Oid			ledger;
	Oid			ledger_key_index;
	Oid			ledger_id_sequence;
	Oid			buckets;
	Oid			providers;
	int			account_att[A_COLUMNS];
	int			ledger_att[L_COLUMNS];
	int			bucket_att[B_COLUMNS];
	TablePlans	account_plans;
	TablePlans	ledger_plans;
	TablePlans	bucket_plans;
	bool		proven_known;	/* only_proven_checks() of ledger and buckets */
	bool		ledger_proven;
	bool		bucket_proven;
} LedgerRelations;

static LedgerRelations rels;
static MemoryContext rels_cxt = NULL;
static bool callback_registered = false;

/* writers open now (one can open inside another, through a trigger) */
static int	writers_open = 0;

static void
ledger_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == rels.accounts || relid == rels.ledger || relid == rels.buckets ||
		relid == rels.accounts_pkey || relid == rels.ledger_key_index ||
		relid == rels.ledger_id_sequence)
		rels.valid = false;
}

/*
 * Where each of "names" is in "rel" (0-based, into "atts"); false if
 * "every" and the table has a column that is not among them.
 */
static bool
map_columns(Relation rel, const char *const *names, int n, int *atts, bool every)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			live = 0;

	for (int i = 0; i < n; i++)
		atts[i] = membership_attnum(rel, names[i]) - 1;
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			live++;
	return !every || live == n;
}

static void
load_plans(Relation rel, TablePlans *plans)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old = MemoryContextSwitchTo(rels_cxt);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	plans->nchecks = constr != NULL ? constr->num_check : 0;
	plans->check_exprs = palloc(sizeof(Expr *) * Max(plans->nchecks, 1));
	plans->checks = palloc(sizeof(ExprState *) * Max(plans->nchecks, 1));
	for (int i = 0; i < plans->nchecks; i++)
	{
		plans->check_exprs[i] = expression_planner(stringToNode(constr->check[i].ccbin));
		plans->checks[i] = ExecInitExpr(plans->check_exprs[i], NULL);
	}

	plans->npredicates = 0;
	plans->predicate_index = palloc(sizeof(Oid) * Max(list_length(indexes), 1));
	plans->predicate_quals = palloc(sizeof(List *) * Max(list_length(indexes), 1));
	plans->predicates = palloc(sizeof(ExprState *) * Max(list_length(indexes), 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		List	   *predicate = RelationGetIndexPredicate(index);

		if (predicate != NIL)
		{
			plans->predicate_index[plans->npredicates] = lfirst_oid(lc);
			plans->predicate_quals[plans->npredicates] = (List *) expression_planner((Expr *) predicate);
			plans->predicates[plans->npredicates] =
				ExecInitQual(plans->predicate_quals[plans->npredicates], NULL);
			plans->npredicates++;
		}
		index_close(index, AccessShareLock);
	}
	MemoryContextSwitchTo(old);
}

/* An error closes no writer: none is open once the transaction is over. */
static void
ledger_write_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		writers_open = 0;
}

static void
load_relations(void)
{
	Relation	rel;
	bool		usable = true;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(ledger_relcache_callback, (Datum) 0);
		RegisterXactCallback(ledger_write_xact_callback, NULL);
		callback_registered = true;
	}
	if (rels_cxt == NULL)
		rels_cxt = AllocSetContextCreate(CacheMemoryContext, "membership ledger relations",
										 ALLOCSET_SMALL_SIZES);
	else if (writers_open > 0)
	{
		/* an open writer still uses the plans: freed at the next reload */
		MemoryContext in_use = rels_cxt;

		rels_cxt = AllocSetContextCreate(CacheMemoryContext, "membership ledger relations",
										 ALLOCSET_SMALL_SIZES);
		MemoryContextSetParent(in_use, rels_cxt);
	}
	else
		MemoryContextReset(rels_cxt);
	rels.accounts = membership_relid("loyalty_accounts");
	rels.accounts_pkey = membership_relid("loyalty_accounts_pkey");
	rels.ledger = membership_relid("loyalty_ledger");
	rels.ledger_key_index = membership_relid("loyalty_ledger_idempotency_idx");
	rels.buckets = membership_relid("loyalty_buckets");
	rels.providers = membership_relid("providers");

	rel = table_open(rels.accounts, AccessShareLock);
	usable &= map_columns(rel, account_columns, A_COLUMNS, rels.account_att, false);
	load_plans(rel, &rels.account_plans);
	table_close(rel, AccessShareLock);
	rel = table_open(rels.ledger, AccessShareLock);
	usable &= map_columns(rel, ledger_columns, L_COLUMNS, rels.ledger_att, true);
	rels.ledger_id_sequence = getIdentitySequence(rels.ledger, rels.ledger_att[L_ID] + 1, false);
	load_plans(rel, &rels.ledger_plans);
	table_close(rel, AccessShareLock);
	rel = table_open(rels.buckets, AccessShareLock);
	usable &= map_columns(rel, bucket_columns, B_COLUMNS, rels.bucket_att, true);
	load_plans(rel, &rels.bucket_plans);
	table_close(rel, AccessShareLock);

	rels.usable = usable;
	rels.proven_known = false;
	rels.valid = true;
}

/*
 * Can rows be written to "rel" here with the effects a statement would
 * have?  Row triggers fire here (BEFORE INSERT and AFTER ones); statement
 * triggers, rules, stored generated columns and BEFORE UPDATE triggers
 * are left to the statement.
 */
static bool
simply_writable(Relation rel, CmdType cmd)
{
	TriggerDesc *t = rel->trigdesc;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rules != NULL ||
		(rel->rd_att->constr != NULL && rel->rd_att->constr->has_generated_stored))
		return false;
	if (t == NULL)
		return true;
	if (cmd == CMD_INSERT)
		return !t->trig_insert_before_statement && !t->trig_insert_after_statement &&
			!t->trig_insert_instead_row && !t->trig_insert_new_table;
	return !t->trig_update_before_row && !t->trig_update_before_statement &&
		!t->trig_update_after_statement && !t->trig_update_instead_row &&
		!t->trig_update_old_table && !t->trig_update_new_table;
}

/*
 * Are the AFTER INSERT row triggers of "rel" only the checks of foreign
 * keys an earn's rows satisfy by construction (see the file header):
 * references to "parent" or "null_parent" (whose key is written NULL)?
 */
static bool
only_proven_checks(Relation rel, Oid parent, Oid null_parent)
{
	TriggerDesc *t = rel->trigdesc;

	if (t == NULL)
		return true;
	if (t->trig_insert_before_row)
		return false;
	for (int i = 0; i < t->numtriggers; i++)
	{
		Trigger    *trigger = &t->triggers[i];
		HeapTuple	tuple;
		Oid			referenced;

		if (!TRIGGER_FOR_ROW(trigger->tgtype) || !TRIGGER_FOR_AFTER(trigger->tgtype) ||
			!TRIGGER_FOR_INSERT(trigger->tgtype))
			continue;
		if (trigger->tgfoid != F_RI_FKEY_CHECK_INS)
			return false;
		tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(trigger->tgconstraint));
		if (!HeapTupleIsValid(tuple))
			return false;
		referenced = ((Form_pg_constraint) GETSTRUCT(tuple))->confrelid;
		ReleaseSysCache(tuple);
		if (referenced != parent && referenced != null_parent)
			return false;
	}
	return true;
}

/*
 * Insert the row in "slot": constraints, heap, indexes, and the row
 * triggers, unless "proven" (only_proven_checks()).
 */
static void
insert_row(ResultRelInfo *rri, EState *estate, TupleTableSlot *slot, bool proven)
{
	if (!proven)
	{
		ExecSimpleRelationInsert(rri, estate, slot);
		return;
	}
	if (RelationGetDescr(rri->ri_RelationDesc)->constr != NULL)
		ExecConstraints(rri, slot, estate);
	table_tuple_insert(rri->ri_RelationDesc, slot, estate->es_output_cid, 0, NULL);
	if (rri->ri_NumIndices > 0)
		(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
}

/*
 * Open the indexes of "rri", their predicates planned already (and set up
 * unless "own": see TablePlans).
 */
static void
open_indexes(ResultRelInfo *rri, const TablePlans *plans, bool own)
{
	ExecOpenIndices(rri, false);
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *info = rri->ri_IndexRelationInfo[i];

		for (int j = 0; j < plans->npredicates && info->ii_Predicate != NIL; j++)
			if (plans->predicate_index[j] == RelationGetRelid(rri->ri_IndexRelationDescs[i]))
				info->ii_PredicateState = own ? ExecInitQual(plans->predicate_quals[j], NULL)
					: plans->predicates[j];
	}
}

/*
 * The ResultRelInfo of "rel", with its CHECK constraints planned already
 * and, when "with_indexes", its indexes open.
 */
static ResultRelInfo *
result_relation(EState *estate, Relation rel, const TablePlans *plans, bool with_indexes, bool own)
{
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	InitResultRelInfo(rri, rel, 0, NULL, 0);
	if (constr != NULL && constr->num_check == plans->nchecks && plans->nchecks > 0)
	{
		rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * plans->nchecks);
		for (int i = 0; i < plans->nchecks; i++)
			rri->ri_ConstraintExprs[i] = own ? ExecInitExpr(plans->check_exprs[i], NULL) : plans->checks[i];
	}
	if (with_indexes)
		open_indexes(rri, plans, own);
	/* where the AFTER triggers look for it */
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	return rri;
}

/*
 * Are all the AFTER UPDATE row triggers of "rel" foreign key triggers?  An
 * earn changes no key of the account (organisation, member, tier), so
 * they would have nothing to do.
 */
static bool
only_key_triggers(Relation rel)
{
	TriggerDesc *t = rel->trigdesc;

	for (int i = 0; t != NULL && i < t->numtriggers; i++)
	{
		Trigger    *trigger = &t->triggers[i];

		if (TRIGGER_FOR_ROW(trigger->tgtype) && TRIGGER_FOR_AFTER(trigger->tgtype) &&
			TRIGGER_FOR_UPDATE(trigger->tgtype) && RI_FKey_trigger_type(trigger->tgfoid) == RI_TRIGGER_NONE)
			return false;
	}
	return true;
}

static int64
add_int64(int64 a, int64 b)
{
	int64		sum;

	if (pg_add_s64_overflow(a, b, &sum))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	return sum;
}

/* The date "months" after the UTC date of "at", as date + interval does. */
static Datum
expiry_date(TimestampTz at, int32 months)
{
	Interval	span;
	Datum		day = DirectFunctionCall1(timestamp_date, TimestampGetDatum((Timestamp) at));

	memset(&span, 0, sizeof(span));
	span.month = months;
	return DirectFunctionCall1(timestamp_date,
							   DirectFunctionCall2(date_pl_interval, day, IntervalPGetDatum(&span)));
}

/* An entry to write, with its bucket when its points are positive. */
typedef struct LedgerEntry
{
	Datum		organisation;
	Datum		member;
	int64		points;
	int64		balance_after;
	text	   *idempotency_key;
	text	   *source_type;
	text	   *source_ref;
	int64		amount_cents;
	text	   *category;
	Datum		details;
	TimestampTz occurred_at;
	int32		expiry_months;
} LedgerEntry;

static void
close_tables(LedgerWriter *w)
{
	table_close(w->buckets, NoLock);
	table_close(w->ledger, NoLock);
	table_close(w->accounts, NoLock);
}

/*
 * Open the tables for writing: false, with nothing open, when they are
 * not simply_writable().  AFTER triggers are collected from here to
 * ledger_writer_close().
 */
bool
ledger_writer_open(LedgerWriter *w)
{
	MemoryContext old;

	/* locking the tables takes in invalidations: until none came */
	for (;;)
	{
		if (!rels.valid)
			load_relations();
		w->accounts = table_open(rels.accounts, RowExclusiveLock);
		w->ledger = table_open(rels.ledger, RowExclusiveLock);
		w->buckets = table_open(rels.buckets, RowExclusiveLock);
		if (rels.valid)
			break;
		close_tables(w);
	}
	if (!rels.usable || !simply_writable(w->accounts, CMD_UPDATE) ||
		!simply_writable(w->ledger, CMD_INSERT) || !simply_writable(w->buckets, CMD_INSERT))
	{
		close_tables(w);
		return false;
	}
	CheckCmdReplicaIdentity(w->accounts, CMD_UPDATE);
	/* the triggers change only with the relcache entries, and rels with them */
	if (!rels.proven_known)
	{
		rels.ledger_proven = only_proven_checks(w->ledger, rels.accounts, rels.providers);
		rels.bucket_proven = only_proven_checks(w->buckets, rels.ledger, InvalidOid);
		rels.proven_known = true;
	}
	w->ledger_proven = rels.ledger_proven;
	w->bucket_proven = rels.bucket_proven;

	w->estate = CreateExecutorState();
	old = MemoryContextSwitchTo(w->estate->es_query_cxt);
	/* the account's indexes only when an update of it is not a HOT one */
	w->nested = writers_open > 0;
	w->account_rri = result_relation(w->estate, w->accounts, &rels.account_plans, false, w->nested);
	w->ledger_rri = result_relation(w->estate, w->ledger, &rels.ledger_plans, true, w->nested);
	w->bucket_rri = result_relation(w->estate, w->buckets, &rels.bucket_plans, true, w->nested);
	w->entry_slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->ledger), &TTSOpsVirtual);
	w->bucket_slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->buckets), &TTSOpsVirtual);
	w->account_slot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->accounts), &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	AfterTriggerBeginQuery();
	writers_open++;
	return true;
}

/* Fire the AFTER triggers collected, and close everything. */
void
ledger_writer_close(LedgerWriter *w)
{
	writers_open--;
	AfterTriggerEndQuery(w->estate);
	CommandCounterIncrement();
	ExecCloseResultRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
	close_tables(w);
}

/* Insert entry "e" and, for positive points, its bucket; its id. */
static int64
write_entry(LedgerWriter *w, const LedgerEntry *e)
{
	int64		id = nextval_internal(rels.ledger_id_sequence, false);
	const int  *la = rels.ledger_att;
	const int  *ba = rels.bucket_att;
	Datum	   *v = w->entry_slot->tts_values;
	bool	   *n = w->entry_slot->tts_isnull;

	ExecClearTuple(w->entry_slot);
	memset(n, false, sizeof(bool) * L_COLUMNS);
	v[la[L_ID]] = Int64GetDatum(id);
	v[la[L_ORG]] = e->organisation;
	v[la[L_MEMBER]] = e->member;
	v[la[L_KIND]] = CStringGetTextDatum(e->amount_cents > 0 ? "EARN" : "BONUS");
	v[la[L_POINTS]] = Int64GetDatum(e->points);
	v[la[L_BALANCE_AFTER]] = Int64GetDatum(e->balance_after);
	v[la[L_KEY]] = PointerGetDatum(e->idempotency_key);
	v[la[L_SOURCE_TYPE]] = PointerGetDatum(e->source_type);
	v[la[L_SOURCE_REF]] = PointerGetDatum(e->source_ref);
	v[la[L_AMOUNT]] = Int64GetDatum(e->amount_cents);
	v[la[L_CATEGORY]] = PointerGetDatum(e->category);
	n[la[L_CATEGORY]] = e->category == NULL;
	n[la[L_PROVIDER]] = true;
	v[la[L_SHORTFALL]] = Int64GetDatum(0);
	v[la[L_DETAILS]] = e->details;
	v[la[L_OCCURRED_AT]] = TimestampTzGetDatum(e->occurred_at);
	v[la[L_RECORDED_AT]] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecStoreVirtualTuple(w->entry_slot);
	insert_row(w->ledger_rri, w->estate, w->entry_slot, w->ledger_proven);

	if (e->points > 0)
	{
		v = w->bucket_slot->tts_values;
		n = w->bucket_slot->tts_isnull;
		ExecClearTuple(w->bucket_slot);
		memset(n, false, sizeof(bool) * B_COLUMNS);
		v[ba[B_LEDGER_ID]] = Int64GetDatum(id);
		v[ba[B_ORG]] = e->organisation;
		v[ba[B_MEMBER]] = e->member;
		v[ba[B_POINTS]] = Int64GetDatum(e->points);
		v[ba[B_REMAINING]] = Int64GetDatum(e->points);
		v[ba[B_EXPIRED]] = Int64GetDatum(0);
		v[ba[B_EARNED_AT]] = TimestampTzGetDatum(e->occurred_at);
		v[ba[B_EXPIRES_AT]] = expiry_date(e->occurred_at, e->expiry_months);
		n[ba[B_EXPIRED_AT]] = true;
		ExecStoreVirtualTuple(w->bucket_slot);
		insert_row(w->bucket_rri, w->estate, w->bucket_slot, w->bucket_proven);
	}
	return id;
}

/*
 * Write the earn "e" describes with the tables open in "w": update the
 * account, insert the entry and (for positive points) the bucket.  True
 * when written, with e->tier, e->entry_id, e->points and
 * e->qualifying_points filled in; false, having written nothing, when the
 * account is missing or its tier unknown to e->tier_names, or (when
 * "check_key") the idempotency key is taken, even by a session still
 * writing it.  Each call sees what the calls before it wrote.
 */
bool
ledger_writer_earn(LedgerWriter *w, EarnWrite *e, bool check_key)
{
	TupleDesc	account_desc = RelationGetDescr(w->accounts);
	TupleTableSlot *account_slot = w->account_slot;
	HeapTuple	old = NULL;
	LedgerEntry entry;
	int64		balance = 0;
	int64		qualifying = 0;
	bool		written = false;
	const int  *aa = rels.account_att;

	/* what the calls before wrote is seen, and kept apart from this one */
	CommandCounterIncrement();
	w->estate->es_output_cid = GetCurrentCommandId(true);

	for (int attempt = 0; attempt < EARN_WRITE_ATTEMPTS && !written; attempt++)
	{
		Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
		SnapshotData dirty;
		ScanKeyData keys[2];
		Datum	   *values = account_slot->tts_values;
		bool	   *nulls = account_slot->tts_isnull;
		Numeric		multiplier = NULL;
		char	   *tier;
		bool		first;
		int32		year;
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		bool		update_indexes;
		TM_Result	result;

		/* the account, as committed now */
		ScanKeyInit(&keys[0], aa[A_MEMBER] + 1, BTEqualStrategyNumber, F_UUID_EQ, e->member);
		old = membership_fetch_unique(w->accounts, rels.accounts_pkey, 1, keys, snapshot);
		UnregisterSnapshot(snapshot);
		if (old == NULL)
			break;
		ExecClearTuple(account_slot);
		heap_deform_tuple(old, account_desc, values, nulls);
		if (memcmp(DatumGetUUIDP(values[aa[A_ORG]]), DatumGetUUIDP(e->organisation),
				   sizeof(pg_uuid_t)) != 0)
			break;

		/* the key unused, even by a session still writing it */
		InitDirtySnapshot(dirty);
		ScanKeyInit(&keys[0], rels.ledger_att[L_ORG] + 1, BTEqualStrategyNumber, F_UUID_EQ,
					e->organisation);
		ScanKeyInit(&keys[1], rels.ledger_att[L_KEY] + 1, BTEqualStrategyNumber, F_TEXTEQ,
					PointerGetDatum(e->idempotency_key));
		if (check_key &&
			membership_fetch_unique(w->ledger, rels.ledger_key_index, 2, keys, &dirty) != NULL)
			break;

		/* the points, for the account's tier and purchases */
		tier = TextDatumGetCString(values[aa[A_TIER]]);
		for (int i = 0; i < e->ntiers && multiplier == NULL; i++)
			if (strcmp(e->tier_names[i], tier) == 0)
				multiplier = e->tier_multipliers[i];
		if (multiplier == NULL)
			break;
		first = DatumGetInt64(values[aa[A_PURCHASES]]) == 0;
		entry.points = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(
			numeric_add_opt_error(
				DatumGetNumeric(DirectFunctionCall1(numeric_floor,
					DirectFunctionCall2(numeric_mul, NumericGetDatum(e->base),
										NumericGetDatum(multiplier)))),
				int64_to_numeric(first ? e->bonus_first : e->bonus), NULL))));
		entry.details = first ? ledger_rules_details(e->rule_ids_first, e->nrule_ids_first)
			: ledger_rules_details(e->rule_ids, e->nrule_ids);

		/* the account's new values */
		balance = add_int64(DatumGetInt64(values[aa[A_BALANCE]]), entry.points);
		values[aa[A_BALANCE]] = Int64GetDatum(balance);
		values[aa[A_LIFETIME]] = Int64GetDatum(add_int64(DatumGetInt64(values[aa[A_LIFETIME]]),
														 entry.points));
		values[aa[A_PURCHASES]] = Int64GetDatum(add_int64(DatumGetInt64(values[aa[A_PURCHASES]]),
														  e->amount_cents > 0 ? 1 : 0));
		year = DatumGetInt32(values[aa[A_QUALIFYING_YEAR]]);
		qualifying = DatumGetInt64(values[aa[A_QUALIFYING_POINTS]]);
		if (e->year > year)
			qualifying = entry.points;
		else if (e->year == year)
			qualifying = add_int64(qualifying, entry.points);
		values[aa[A_QUALIFYING_YEAR]] = Int32GetDatum(Max(year, e->year));
		values[aa[A_QUALIFYING_POINTS]] = Int64GetDatum(qualifying);
		if (DatumGetTimestampTz(values[aa[A_LAST_ACTIVITY]]) < e->occurred_at)
			values[aa[A_LAST_ACTIVITY]] = TimestampTzGetDatum(e->occurred_at);
		ExecStoreVirtualTuple(account_slot);

		ExecConstraints(w->account_rri, account_slot, w->estate);
		result = table_tuple_update(w->accounts, &old->t_self, account_slot, w->estate->es_output_cid,
									InvalidSnapshot, InvalidSnapshot, true, &tmfd, &lockmode,
									&update_indexes);
		switch (result)
		{
			case TM_Ok:
				written = true;
				e->tier = tier;
				break;
			case TM_Updated:
			case TM_Deleted:
				/* changed meanwhile by a session now ended: read it again */
				ExecClearTuple(account_slot);
				continue;
			default:
				elog(ERROR, "unexpected result %d updating a loyalty account", (int) result);
		}
		{
			List	   *recheck = NIL;

			if (update_indexes)
			{
				/* once per writer, for as long as it lives */
				if (w->account_rri->ri_IndexRelationDescs == NULL)
				{
					MemoryContext old_cxt = MemoryContextSwitchTo(w->estate->es_query_cxt);

					open_indexes(w->account_rri, &rels.account_plans, w->nested);
					MemoryContextSwitchTo(old_cxt);
				}
				recheck = ExecInsertIndexTuples(w->account_rri, account_slot, w->estate, true, false,
												NULL, NIL);
			}
			if (!only_key_triggers(w->accounts))
				ExecARUpdateTriggers(w->estate, w->account_rri, NULL, NULL, &old->t_self, NULL,
									 account_slot, recheck, NULL, false);
		}
	}

	if (written)
	{
		entry.organisation = e->organisation;
		entry.member = e->member;
		entry.balance_after = balance;
		entry.idempotency_key = e->idempotency_key;
		entry.source_type = e->source_type;
		entry.source_ref = e->source_ref;
		entry.amount_cents = e->amount_cents;
		entry.category = e->category;
		entry.occurred_at = e->occurred_at;
		entry.expiry_months = e->expiry_months;
		e->entry_id = write_entry(w, &entry);
		e->points = entry.points;
		e->qualifying_points = qualifying;
	}
	return written;
}

/*
 * A single earn: ledger_writer_earn() with the tables opened for it.
 * False, having written nothing, when the statement should do it (see the
 * file header).
 */
bool
ledger_earn_write(EarnWrite *e)
{
	LedgerWriter w;
	bool		written;

	if (IsolationUsesXactSnapshot() || XactReadOnly || IsInParallelMode())
		return false;
	if (!ledger_writer_open(&w))
		return false;
	written = ledger_writer_earn(&w, e, true);
	ledger_writer_close(&w);
	return written;
}


