/*-------------------------------------------------------------------------
 *
 * usage_worker.c
 *	  The usage flusher: a background worker that writes the verification
 *	  counters and the audit queue to tables, and watches for abuse.
 *
 * Every membership.usage_flush_interval it copies the counters that
 * changed (usage.c) and the queued audit records (audit.c) of the database
 * named by membership.database into membership.usage_minutes and
 * membership.verification_audit, in one transaction.  Counters are written
 * as absolute values and only marked flushed after the commit, so a worker
 * killed at any point loses nothing that shared memory still holds and
 * counts nothing twice.  Once a minute is over it runs
 * membership.detect_abuse() for it.  It flushes once more when asked to
 * stop, and the postmaster restarts it if it dies.  The retention of usage
 * and audit rows is a scheduled job (membership.expire_usage, run by
 * pg_cron), not the flusher's: it is the same work whichever process does
 * it, and a job's runs are recorded in membership.job_runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "membership.h"

#define AUDIT_BATCH 1000

PGDLLEXPORT void membership_usage_worker_main(Datum main_arg);

static int	usage_flush_interval = 1000;
static int	usage_retention = 30 * 24 * 60;
static int	audit_retention = 30 * 24 * 60;
static double abuse_spike_factor = 10.0;
static int	abuse_spike_min_calls = 300;
static double abuse_enumeration_share = 0.5;
static int	abuse_enumeration_min_lookups = 100;
static int	abuse_episode_gap = 10;
static volatile sig_atomic_t shutdown_requested = false;

static SPIPlanPtr flush_usage_plan = NULL;
static SPIPlanPtr flush_audit_plan = NULL;
static SPIPlanPtr detect_plan = NULL;

void
UsageWorkerInit(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("membership.usage_flush_interval",
							"Time between two flushes of the verification counters to membership.usage_minutes.",
							NULL,
							&usage_flush_interval,
							1000, 100, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("membership.usage_retention",
							"How long per-minute verification usage is kept.",
							NULL,
							&usage_retention,
							30 * 24 * 60, 60, 3650 * 24 * 60,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomIntVariable("membership.audit_retention",
							"How long verification audit records are kept.",
							NULL,
							&audit_retention,
							30 * 24 * 60, 60, 3650 * 24 * 60,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomRealVariable("membership.abuse_spike_factor",
							 "A minute with this many times a key's average of the hour before is a velocity spike.",
							 NULL,
							 &abuse_spike_factor,
							 10.0, 1.0, 1000.0,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("membership.abuse_spike_min_calls",
							"Calls a key must make in a minute before the minute can count as a spike.",
							NULL,
							&abuse_spike_min_calls,
							300, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomRealVariable("membership.abuse_enumeration_share",
							 "Share of verified = false answers over ten minutes that counts as membership enumeration.",
							 NULL,
							 &abuse_enumeration_share,
							 0.5, 0.0, 1.0,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("membership.abuse_enumeration_min_lookups",
							"Lookups a key must make in ten minutes before its share of misses is judged.",
							NULL,
							&abuse_enumeration_min_lookups,
							100, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("membership.abuse_episode_gap",
							"Quiet minutes after which an abuse episode is over; a new one then raises a new alert.",
							NULL,
							&abuse_episode_gap,
							10, 1, 1440,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "membership", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "membership_usage_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "membership usage flusher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "membership usage flusher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
usage_worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* An array of an 8-byte pass-by-value type (int8 or timestamptz). */
static Datum
int8_array(int64 *values, int n, Oid elemtype)
{
	Datum	   *datums = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		datums[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(datums, n, elemtype, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Write the counters of "entries" to membership.usage_minutes. */
static void
flush_counters(UsageSnapshotEntry *entries, int n)
{
	Oid			types[7] = {INT8OID, INT8ARRAYOID, TIMESTAMPTZARRAYOID,
	INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[7];
	int64	   *keys = palloc(n * sizeof(int64));
	int64	   *minutes = palloc(n * sizeof(int64));
	int64	   *counts[USAGE_COUNTERS];

	if (flush_usage_plan == NULL)
		flush_usage_plan = membership_prepare_kept("SELECT membership.flush_usage($1, $2, $3, $4, $5, $6, $7)",
										7, types);
	for (int c = 0; c < USAGE_COUNTERS; c++)
		counts[c] = palloc(n * sizeof(int64));
	for (int i = 0; i < n; i++)
	{
		keys[i] = entries[i].tag.key_id;
		minutes[i] = usage_minute_start(entries[i].tag.minute);
		for (int c = 0; c < USAGE_COUNTERS; c++)
			counts[c][i] = (int64) entries[i].counts[c];
	}
	values[0] = Int64GetDatum(usage_epoch());
	values[1] = int8_array(keys, n, INT8OID);
	values[2] = int8_array(minutes, n, TIMESTAMPTZOID);
	for (int c = 0; c < USAGE_COUNTERS; c++)
		values[3 + c] = int8_array(counts[c], n, INT8OID);
	if (SPI_execute_plan(flush_usage_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not flush verification usage");
}

/* Write queued audit records to membership.verification_audit. */
static void
flush_audit(AuditRecord *records, int n)
{
	Oid			types[6] = {INT8ARRAYOID, UUIDARRAYOID, TIMESTAMPTZARRAYOID,
	BOOLARRAYOID, BOOLARRAYOID, BYTEAARRAYOID};
	Datum		values[6];
	int64	   *keys = palloc(n * sizeof(int64));
	int64	   *ats = palloc(n * sizeof(int64));
	Datum	   *orgs = palloc(n * sizeof(Datum));
	Datum	   *by_email = palloc(n * sizeof(Datum));
	Datum	   *verified = palloc(n * sizeof(Datum));
	Datum	   *hashes = palloc(n * sizeof(Datum));

	if (flush_audit_plan == NULL)
		flush_audit_plan = membership_prepare_kept("SELECT membership.flush_audit($1, $2, $3, $4, $5, $6)", 6, types);
	for (int i = 0; i < n; i++)
	{
		pg_uuid_t  *org = palloc(sizeof(pg_uuid_t));

		*org = records[i].org_id;
		keys[i] = records[i].key_id;
		ats[i] = records[i].at;
		orgs[i] = UUIDPGetDatum(org);
		by_email[i] = BoolGetDatum(records[i].by_email);
		verified[i] = BoolGetDatum(records[i].verified);
		hashes[i] = PointerGetDatum(membership_digest_bytea(records[i].subject_hash));
	}
	values[0] = int8_array(keys, n, INT8OID);
	values[1] = PointerGetDatum(construct_array(orgs, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[2] = int8_array(ats, n, TIMESTAMPTZOID);
	values[3] = PointerGetDatum(construct_array(by_email, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[4] = PointerGetDatum(construct_array(verified, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[5] = PointerGetDatum(construct_array(hashes, n, BYTEAOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_plan(flush_audit_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not flush verification audit records");
}

static void
run_detection(int64 minute)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	if (detect_plan == NULL)
		detect_plan = membership_prepare_kept("SELECT membership.detect_abuse($1)", 1, types);
	values[0] = TimestampTzGetDatum(usage_minute_start(minute));
	if (SPI_execute_plan(detect_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run abuse detection");
}

/* Is the extension (at a version with the flusher's functions) installed here? */
static bool
extension_ready(void)
{
	int			ret = SPI_execute("SELECT pg_catalog.to_regproc('membership.flush_usage') IS NOT NULL",
								  true, 1);
	bool		isnull;

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		return false;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * One pass: flush and detect, as needed, in one transaction; then
 * mark what was written as flushed.
 */
static void
usage_worker_pass(int64 *last_detected)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		minute = usage_minute(now);
	int			n;
	UsageSnapshotEntry *entries = usage_collect(&n);
	AuditRecord *audit = palloc(AUDIT_BATCH * sizeof(AuditRecord));
	uint64		audit_next;
	int			naudit = audit_peek(audit, AUDIT_BATCH, &audit_next);
	bool		detect = minute - 1 > *last_detected;
	bool		written = false;

	if (n > 0 || naudit > 0 || detect)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "membership: flushing verification usage");

		if (extension_ready())
		{
			written = true;
			if (n > 0)
				flush_counters(entries, n);
			if (naudit > 0)
				flush_audit(audit, naudit);
			if (detect)
			{
				/* the minutes that ended since the last pass, ten at most */
				for (int64 m = Max(*last_detected + 1, minute - 10); m < minute; m++)
					run_detection(m);
			}
		}

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	usage_flushed(entries, written ? n : 0, now);
	if (written)
		audit_advance(audit_next);
	*last_detected = minute - 1;
}

void
membership_usage_worker_main(Datum main_arg)
{
	MemoryContext pass_context;
	int64		last_detected;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, usage_worker_sigterm);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(membership_database, NULL, 0);
	usage_set_flusher_pid(MyProcPid);
	pgstat_report_appname("membership usage flusher");

	pass_context = AllocSetContextCreate(TopMemoryContext, "membership usage flusher",
										 ALLOCSET_DEFAULT_SIZES);
	last_detected = usage_minute(GetCurrentTimestamp()) - 1;

	while (!shutdown_requested)
	{
		MemoryContext old;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 usage_flush_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(pass_context);
		usage_worker_pass(&last_detected);
		MemoryContextSwitchTo(old);
		MemoryContextReset(pass_context);
	}

	/* one last flush was made by the pass that saw the request */
	usage_set_flusher_pid(0);
	proc_exit(1);
}
