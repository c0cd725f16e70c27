/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  Running the extension's periodic jobs: one entry point for pg_cron, a
 *	  record of every run, and progress that other sessions can watch.
 *
 * Every subsystem registers its periodic jobs in membership.jobs from its
 * own SQL file, and membership.schedule_jobs() hands each one to pg_cron as
 * "CALL membership.run_job('name')".  run_job() is a procedure so that it
 * can commit: it records the run as 'running' and commits at once, so the
 * run is visible to everyone while it lasts; runs the job's command in a
 * subtransaction; and records how the run ended, with the error if it
 * failed.
 *
 * Progress lives in shared memory, one slot per running job.  A job's own
 * writes stay invisible to other sessions until it commits, and the
 * activity string of pg_stat_activity is free text that only some roles may
 * read, so the job publishes how far it has got (a phase, a count done, a
 * count to do) in its slot, which membership.job_progress() shows to any
 * session at once.  The slots also tell a run that is still going from one
 * whose backend died: a slot is freed when its backend exits and all slots
 * are empty after a crash restart, so a 'running' row without a slot is an
 * interrupted run, and the next run of any job records it as such.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "membership.h"

PG_FUNCTION_INFO_V1(membership_run_job);
PG_FUNCTION_INFO_V1(membership_report_job_progress);
PG_FUNCTION_INFO_V1(membership_job_progress);
PG_FUNCTION_INFO_V1(membership_all_organisations);
PG_FUNCTION_INFO_V1(membership_offboarded_organisations);

/* How many jobs may run at once, across all databases of the cluster. */
#define JOBS_MAX_RUNNING	32
#define JOB_NAME_LEN		64
#define JOB_PHASE_LEN		64

/*
 * One running job.  "in_use", "pid", "dboid", "job" and "claimed_at"
 * change only under the tranche's lock, held exclusively; the progress
 * fields change under the slot's spinlock, by the owning backend only.
 */
typedef struct JobSlot
{
	bool		in_use;
	int			pid;
	Oid			dboid;
	char		job[JOB_NAME_LEN];
	TimestampTz claimed_at;
	slock_t		mutex;
	int64		run_id;			/* 0 until the run is recorded */
	int64		done;
	int64		total;			/* -1 when unknown */
	char		phase[JOB_PHASE_LEN];
	TimestampTz updated_at;
} JobSlot;

typedef struct JobsShared
{
	LWLock	   *lock;
	JobSlot		slots[JOBS_MAX_RUNNING];
} JobsShared;

/* How a run went, kept outside the PG_TRY block of membership_run_job. */
typedef struct RunOutcome
{
	bool		ok;
	int64		run_id;
	ErrorData  *edata;
} RunOutcome;

static JobsShared *jobs_shared = NULL;
static JobSlot *my_slot = NULL;
static bool exit_callback_registered = false;

/* membership.job_history_days */
static int	job_history_days = 90;

Size
JobsShmemSize(void)
{
	return MAXALIGN(sizeof(JobsShared));
}

void
JobsShmemInit(LWLockPadded *lock)
{
	bool		found;

	jobs_shared = ShmemInitStruct("membership jobs", sizeof(JobsShared), &found);
	if (!found)
	{
		memset(jobs_shared, 0, sizeof(JobsShared));
		jobs_shared->lock = &lock->lock;
		for (int i = 0; i < JOBS_MAX_RUNNING; i++)
			SpinLockInit(&jobs_shared->slots[i].mutex);
	}
}

void
JobsInit(void)
{
	DefineCustomIntVariable("membership.job_history_days",
							"Days for which finished job runs are kept in membership.job_runs.",
							"Older runs of a job are deleted when the job next runs.",
							&job_history_days,
							90, 1, 36500,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}

/* Free this backend's slot, if it holds one. */
static void
jobs_release_slot(void)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(jobs_shared->lock, LW_EXCLUSIVE);
	my_slot->in_use = false;
	my_slot->pid = 0;
	LWLockRelease(jobs_shared->lock);
	my_slot = NULL;
}

/*
 * A backend that exits (FATAL, terminated, disconnected) in the middle of a
 * run frees its slot, so the run shows as interrupted at once.
 */
static void
jobs_exit_callback(int code, Datum arg)
{
	if (my_slot != NULL && jobs_shared != NULL)
		jobs_release_slot();
}

/*
 * Take a slot for "job" in this database, raising an error when the job is
 * already running here or every slot is taken.  The check and the claim
 * happen under one lock, so two backends cannot both start the same job.
 */
static void
jobs_claim_slot(const char *job)
{
	JobSlot    *free_slot = NULL;
	int			running_pid = 0;
	TimestampTz running_since = 0;

	if (!exit_callback_registered)
	{
		before_shmem_exit(jobs_exit_callback, (Datum) 0);
		exit_callback_registered = true;
	}

	LWLockAcquire(jobs_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < JOBS_MAX_RUNNING; i++)
	{
		JobSlot    *slot = &jobs_shared->slots[i];

		if (!slot->in_use)
		{
			if (free_slot == NULL)
				free_slot = slot;
			continue;
		}
		if (slot->dboid == MyDatabaseId && strcmp(slot->job, job) == 0)
		{
			running_pid = slot->pid;
			running_since = slot->claimed_at;
			break;
		}
	}
	if (running_pid == 0 && free_slot != NULL)
	{
		free_slot->in_use = true;
		free_slot->pid = MyProcPid;
		free_slot->dboid = MyDatabaseId;
		strlcpy(free_slot->job, job, JOB_NAME_LEN);
		free_slot->claimed_at = GetCurrentTimestamp();
		SpinLockAcquire(&free_slot->mutex);
		free_slot->run_id = 0;
		free_slot->done = 0;
		free_slot->total = -1;
		free_slot->phase[0] = '\0';
		free_slot->updated_at = free_slot->claimed_at;
		SpinLockRelease(&free_slot->mutex);
		my_slot = free_slot;
	}
	LWLockRelease(jobs_shared->lock);

	if (running_pid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("job \"%s\" is already running", job),
				 errdetail("Process %d started it at %s.", running_pid,
						   timestamptz_to_str(running_since))));
	if (my_slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many jobs are running"),
				 errdetail("At most %d jobs can run at once.", JOBS_MAX_RUNNING)));
}

/*
 * Publish how far the job running in this backend has got.  "total" is -1
 * when unknown; "phase" NULL keeps the current phase.  Does nothing outside
 * a job run, so code that runs both as a job and on demand can call it.
 */
void
jobs_report_progress(int64 done, int64 total, const char *phase)
{
	TimestampTz now;

	if (my_slot == NULL)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&my_slot->mutex);
	my_slot->done = done;
	my_slot->total = total;
	if (phase != NULL)
		strlcpy(my_slot->phase, phase, JOB_PHASE_LEN);
	my_slot->updated_at = now;
	SpinLockRelease(&my_slot->mutex);
}

static void
jobs_set_run_id(int64 run_id)
{
	SpinLockAcquire(&my_slot->mutex);
	my_slot->run_id = run_id;
	SpinLockRelease(&my_slot->mutex);
}

/*
 * What a job's command did, as a number: the value it returned when it
 * returned a single integer (job functions return how many rows they
 * processed), else the number of rows its last statement processed.
 */
static int64
command_rows(void)
{
	if (SPI_tuptable != NULL && SPI_processed == 1 &&
		SPI_tuptable->tupdesc->natts == 1)
	{
		Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (isnull)
			return 0;
		if (type == INT8OID)
			return DatumGetInt64(value);
		if (type == INT4OID)
			return DatumGetInt32(value);
		if (type == INT2OID)
			return DatumGetInt16(value);
	}
	return (int64) SPI_processed;
}

/*
 * Run a job's command in a subtransaction, so that a failure rolls back the
 * job's work but not the record of the run.  Returns true on success, with
 * the rows in *rows; on failure returns false with the error, copied into
 * "errcxt", in *edata.
 */
static bool
run_command(const char *command, int64 *rows, ErrorData **edata, MemoryContext errcxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		int			rc = SPI_execute(command, false, 0);

		if (rc < 0)
			elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
		*rows = command_rows();

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(errcxt);
		*edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ok = false;
	}
	PG_END_TRY();

	return ok;
}

/*
 * Record the start of a run of "job", run its command and record how it
 * ended, committing after the start and after the end.  Returns whether the
 * command succeeded; the run's id goes to *run_id and, on failure, the
 * error (copied into "cxt") to *edata.
 */
static bool
run_and_record(const char *job, MemoryContext cxt, int64 *run_id, ErrorData **edata)
{
	Oid			start_types[2] = {TEXTOID, INT4OID};
	Datum		start_args[2];
	Oid			finish_types[4] = {INT8OID, BOOLOID, INT8OID, TEXTOID};
	Datum		finish_args[4];
	char		finish_nulls[4] = {' ', ' ', ' ', ' '};
	char	   *command;
	int64		rows = 0;
	bool		isnull;
	bool		ok;

	SPI_connect_ext(SPI_OPT_NONATOMIC);

	start_args[0] = CStringGetTextDatum(job);
	start_args[1] = Int32GetDatum(MyProcPid);
	if (SPI_execute_with_args("SELECT run_id, command FROM membership.job_run_start($1, $2)",
							  2, start_types, start_args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "membership.job_run_start() returned no run");
	*run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	command = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	jobs_set_run_id(*run_id);
	SPI_commit();

	ok = run_command(command, &rows, edata, cxt);

	finish_args[0] = Int64GetDatum(*run_id);
	finish_args[1] = BoolGetDatum(ok);
	finish_args[2] = Int64GetDatum(rows);
	finish_args[3] = (Datum) 0;
	if (ok)
		finish_nulls[3] = 'n';
	else
	{
		finish_nulls[2] = 'n';
		finish_args[3] = CStringGetTextDatum((*edata)->message ? (*edata)->message : "unknown error");
	}
	if (SPI_execute_with_args("SELECT membership.job_run_finish($1, $2, $3, $4)",
							  4, finish_types, finish_args, finish_nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "membership.job_run_finish() failed");
	SPI_commit();
	SPI_finish();
	return ok;
}

/*
 * membership.run_job(job text): PROCEDURE
 *
 * Run one registered job now and record the run in membership.job_runs.
 * pg_cron calls it as "CALL membership.run_job('name')"; an administrator
 * may too.  It must be called outside a transaction block: it commits the
 * 'running' record before the job starts.  A failed job is recorded with
 * its error and then raises that error again, so pg_cron sees it too.
 */
Datum
membership_run_job(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	char	   *job;
	bool		nonatomic;
	RunOutcome *outcome = palloc0(sizeof(RunOutcome));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job must not be null")));
	job = text_to_cstring(PG_GETARG_TEXT_PP(0));

	nonatomic = fcinfo->context != NULL && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;
	if (!nonatomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("a job must be run by a CALL of its own, outside any transaction block"),
				 errdetail("The run is recorded and committed before the job starts."),
				 errhint("Run \"CALL membership.run_job('%s')\" on its own, as pg_cron does.", job)));
	membership_require_preload("running jobs");
	if (strlen(job) >= JOB_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job \"%s\" is not registered", job),
				 errhint("Registered jobs are listed by membership.job_status().")));

	jobs_claim_slot(job);
	PG_TRY();
	{
		outcome->ok = run_and_record(job, callcxt, &outcome->run_id, &outcome->edata);
	}
	PG_FINALLY();
	{
		jobs_release_slot();
	}
	PG_END_TRY();

	if (!outcome->ok)
		ereport(ERROR,
				(errcode(outcome->edata->sqlerrcode),
				 errmsg("job \"%s\" failed: %s", job, outcome->edata->message),
				 outcome->edata->detail ? errdetail("%s", outcome->edata->detail) : 0,
				 outcome->edata->hint ? errhint("%s", outcome->edata->hint) : 0,
				 errcontext("run " INT64_FORMAT " of job \"%s\", recorded in membership.job_runs",
							outcome->run_id, job)));
	PG_RETURN_VOID();
}

/*
 * membership.report_job_progress(done bigint, total bigint, phase text)
 *		RETURNS boolean
 *
 * The SQL face of jobs_report_progress(), for jobs written in SQL or
 * PL/pgSQL.  Returns whether a job run is in progress in this session.
 */
Datum
membership_report_job_progress(PG_FUNCTION_ARGS)
{
	int64		done;
	int64		total = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT64(1);
	char	   *phase = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("done must not be null")));
	done = PG_GETARG_INT64(0);
	if (done < 0 || (!PG_ARGISNULL(1) && total < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job progress counts must be zero or more")));
	if (!PG_ARGISNULL(1) && done > total)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job progress " INT64_FORMAT " is more than the total " INT64_FORMAT,
						done, total)));
	if (phase != NULL && strlen(phase) >= JOB_PHASE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job phase must be shorter than %d bytes", JOB_PHASE_LEN)));

	jobs_report_progress(done, total, phase);
	PG_RETURN_BOOL(my_slot != NULL);
}

/*
 * membership.job_progress() RETURNS TABLE (run_id, job, pid, phase, done,
 * total, started_at, updated_at)
 *
 * Every job running in this database now, as its backend last reported it.
 */
Datum
membership_job_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	membership_require_preload("job progress");
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(jobs_shared->lock, LW_SHARED);
	for (int i = 0; i < JOBS_MAX_RUNNING; i++)
	{
		JobSlot    *slot = &jobs_shared->slots[i];
		JobSlot		copy;
		Datum		values[8];
		bool		nulls[8] = {false, false, false, false, false, false, false, false};

		if (!slot->in_use || slot->dboid != MyDatabaseId)
			continue;
		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(JobSlot));
		SpinLockRelease(&slot->mutex);

		values[0] = Int64GetDatum(copy.run_id);
		nulls[0] = copy.run_id == 0;
		values[1] = CStringGetTextDatum(copy.job);
		values[2] = Int32GetDatum(copy.pid);
		values[3] = CStringGetTextDatum(copy.phase);
		nulls[3] = copy.phase[0] == '\0';
		values[4] = Int64GetDatum(copy.done);
		values[5] = Int64GetDatum(copy.total);
		nulls[5] = copy.total < 0;
		values[6] = TimestampTzGetDatum(copy.claimed_at);
		values[7] = TimestampTzGetDatum(copy.updated_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(jobs_shared->lock);

	return (Datum) 0;
}

static int
uuid_compare(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * The ids of every current organisation (or, with "offboarded", of every
 * offboarded one), in order.  Jobs act for one organisation at a time, so
 * they must first learn which organisations exist: a question row-level
 * security cannot answer (with no tenant chosen, no organisation is
 * visible), so this reads the table directly, with the active snapshot.
 * An offboarded organisation is out of every job but the purge.
 */
pg_uuid_t *
jobs_organisation_ids(int *count, bool offboarded)
{
	Relation	rel = table_open(membership_relid("organisations"), AccessShareLock);
	AttrNumber	attnum = membership_attnum(rel, "id");
	/* absent before release 0.3: then nothing is offboarded */
	AttrNumber	offboarded_attnum = get_attnum(RelationGetRelid(rel), "offboarded_at");
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	HeapTuple	tuple;
	int			n = 0;
	int			size = 16;
	pg_uuid_t  *ids = palloc(size * sizeof(pg_uuid_t));

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		bool		is_offboarded = false;
		Datum		id = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		if (offboarded_attnum != InvalidAttrNumber)
		{
			heap_getattr(tuple, offboarded_attnum, RelationGetDescr(rel), &isnull);
			is_offboarded = !isnull;
		}
		if (is_offboarded != offboarded)
			continue;
		if (n == size)
		{
			size *= 2;
			ids = repalloc(ids, size * sizeof(pg_uuid_t));
		}
		memcpy(&ids[n++], DatumGetUUIDP(id), sizeof(pg_uuid_t));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	qsort(ids, n, sizeof(pg_uuid_t), uuid_compare);
	*count = n;
	return ids;
}

/*
 * membership.all_organisations() RETURNS SETOF uuid
 * membership.offboarded_organisations() RETURNS SETOF uuid
 *
 * jobs_organisation_ids() for jobs written in SQL: they loop over it and
 * act for each organisation in turn.  Executable by the owner role only.
 */
static Datum
organisation_ids_srf(FunctionCallInfo fcinfo, bool offboarded)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;
	pg_uuid_t  *ids;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ids = jobs_organisation_ids(&n, offboarded);
	for (int i = 0; i < n; i++)
	{
		Datum		value = UUIDPGetDatum(&ids[i]);
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

Datum
membership_all_organisations(PG_FUNCTION_ARGS)
{
	return organisation_ids_srf(fcinfo, false);
}

Datum
membership_offboarded_organisations(PG_FUNCTION_ARGS)
{
	return organisation_ids_srf(fcinfo, true);
}
