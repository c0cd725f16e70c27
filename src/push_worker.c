/*-------------------------------------------------------------------------
 *
 * push_worker.c
 *	  The push worker: background workers that deliver the outbox's push
 *	  notifications to FCM and APNs.
 *
 * membership.push_workers workers connect to membership.database.  Each
 * pass claims up to membership.push_batch_size due rows under a lease
 * (membership.push_claim: FOR UPDATE SKIP LOCKED, status 'sending', one
 * attempt more) and commits; sends one HTTP/2 request per device
 * (push_fcm.c, push_apns.c over push_http.c); and records every answer in
 * one transaction (membership.push_record).  A worker that dies between
 * sending and recording leaves its rows 'sending': once their lease runs
 * out, a worker claims them again, so a notification is delivered at
 * least once and never lost.
 *
 * Between passes the worker sleeps until the earliest due_at or lease
 * expiry in the outbox (membership.push_next_wake), or until a commit that
 * makes a push row due sooner sets its latch (push_wake.c); it does not
 * poll, except once a minute as a safety net.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

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
#include "push.h"

#define PUSH_MAX_WORKERS 16
#define PUSH_MAX_SLEEP_MS (60 * 1000)

PGDLLEXPORT void membership_push_worker_main(Datum main_arg);

int			push_workers = 1;
char	   *push_fcm_url = NULL;
char	   *push_apns_url = NULL;
char	   *push_apns_sandbox_url = NULL;
char	   *push_ca_file = NULL;
int			push_concurrency = 200;
int			push_timeout_ms = 10000;
int			push_retry_base_ms = 1000;
static int	push_batch_size = 1000;
static int	push_lease = 60;
static int	push_max_attempts = 5;

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr creds_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr next_wake_plan = NULL;

static PushEndpoint *fcm_endpoint = NULL;
static PushEndpoint *apns_endpoint = NULL;
static PushEndpoint *apns_sandbox_endpoint = NULL;

void
PushWorkerInit(void)
{
	/* a postmaster setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("membership.push_workers",
								"Number of push workers delivering notifications to FCM and APNs.",
								"0 disables push delivery.",
								&push_workers,
								1, 0, PUSH_MAX_WORKERS,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomStringVariable("membership.push_fcm_url",
							   "Base URL of the FCM HTTP v1 API.",
							   "Messages are posted to this URL followed by /v1/projects/<project>/messages:send.",
							   &push_fcm_url,
							   "https://fcm.googleapis.com",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("membership.push_apns_url",
							   "Base URL of the APNs provider API.",
							   "Notifications are posted to this URL followed by /3/device/<token>.",
							   &push_apns_url,
							   "https://api.push.apple.com",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("membership.push_apns_sandbox_url",
							   "Base URL of the APNs provider API for organisations whose credentials say sandbox.",
							   NULL,
							   &push_apns_sandbox_url,
							   "https://api.sandbox.push.apple.com",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("membership.push_ca_file",
							   "File of CA certificates the push services' TLS certificates are checked against.",
							   "Empty: the system's CA store.",
							   &push_ca_file,
							   "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_concurrency",
							"Requests a push worker keeps in flight at once, as HTTP/2 streams.",
							NULL,
							&push_concurrency,
							200, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_batch_size",
							"Notifications a push worker claims per pass.",
							NULL,
							&push_batch_size,
							1000, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_timeout_ms",
							"How long a push worker waits for a push service to answer one request.",
							"A request without an answer by then is retried later.",
							&push_timeout_ms,
							10000, 100, 300000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_lease",
							"How long a claimed notification stays with its worker before another may claim it.",
							"Must exceed the time a pass takes; a worker that dies leaves its notifications for this long.",
							&push_lease,
							60, 5, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_max_attempts",
							"Attempts after which a notification that still cannot be delivered is failed.",
							NULL,
							&push_max_attempts,
							5, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("membership.push_retry_base",
							"Delay before the first retry of a notification; it doubles with each attempt, with jitter.",
							"A server's Retry-After is honoured when longer; FCM quota errors wait a minute at least.",
							&push_retry_base_ms,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	for (int i = 0; i < push_workers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		worker.bgw_main_arg = Int32GetDatum(i);
		strlcpy(worker.bgw_library_name, "membership", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "membership_push_worker_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "membership push worker %d", i);
		strlcpy(worker.bgw_type, "membership push worker", BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
}

static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Is the extension (at a version with the worker's functions) installed here? */
static bool
extension_ready(void)
{
	bool		isnull;

	if (SPI_execute("SELECT pg_catalog.to_regproc('membership.push_claim') IS NOT NULL", true, 1) != SPI_OK_SELECT
		|| SPI_processed != 1)
		return false;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Column "col" of row "row" of the last SPI result as a string in "cxt", or NULL. */
static char *
spi_string(int row, int col, MemoryContext cxt)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return value == NULL ? NULL : MemoryContextStrdup(cxt, value);
}

static Datum
spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * The credentials of the organisations of "messages", into "cxt", and
 * point each message at its organisation's.
 */
static void
load_credentials(PushMessage *messages, int n, MemoryContext cxt)
{
	Datum	   *orgs = palloc(n * sizeof(Datum));
	Oid			types[1] = {UUIDARRAYOID};
	Datum		values[1];
	int			norgs = 0;
	PushCredentials *creds;
	int			ncreds;

	for (int i = 0; i < n; i++)
		if (i == 0 || memcmp(&messages[i].org, &messages[i - 1].org, sizeof(pg_uuid_t)) != 0)
			orgs[norgs++] = UUIDPGetDatum(&messages[i].org);
	if (creds_plan == NULL)
		creds_plan = membership_prepare_kept("SELECT organisation_id, updated_at, fcm_project_id, fcm_client_email, fcm_private_key,"
								  " coalesce(fcm_token_uri, 'https://oauth2.googleapis.com/token'),"
								  " apns_key_id, apns_team_id, apns_private_key, apns_topic, apns_sandbox"
								  " FROM membership.push_credentials WHERE organisation_id = ANY ($1)",
								  1, types);
	values[0] = PointerGetDatum(construct_array(orgs, norgs, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	if (SPI_execute_plan(creds_plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read push credentials");

	ncreds = (int) SPI_processed;
	creds = MemoryContextAllocZero(cxt, Max(ncreds, 1) * sizeof(PushCredentials));
	for (int c = 0; c < ncreds; c++)
	{
		bool		isnull;

		memcpy(&creds[c].org, DatumGetUUIDP(spi_datum(c, 1, &isnull)), sizeof(pg_uuid_t));
		creds[c].updated_at = DatumGetTimestampTz(spi_datum(c, 2, &isnull));
		creds[c].fcm_project = spi_string(c, 3, cxt);
		creds[c].fcm_email = spi_string(c, 4, cxt);
		creds[c].fcm_key = spi_string(c, 5, cxt);
		creds[c].fcm_token_uri = spi_string(c, 6, cxt);
		creds[c].apns_key_id = spi_string(c, 7, cxt);
		creds[c].apns_team = spi_string(c, 8, cxt);
		creds[c].apns_key = spi_string(c, 9, cxt);
		creds[c].apns_topic = spi_string(c, 10, cxt);
		creds[c].apns_sandbox = DatumGetBool(spi_datum(c, 11, &isnull));
	}
	for (int i = 0; i < n; i++)
		for (int c = 0; c < ncreds; c++)
			if (memcmp(&messages[i].org, &creds[c].org, sizeof(pg_uuid_t)) == 0)
				messages[i].creds = &creds[c];
}

/* Claim due rows; returns the messages to send (one per device), in "cxt". */
static PushMessage *
claim(int *n, MemoryContext cxt)
{
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		values[3];
	PushMessage *messages;

	if (claim_plan == NULL)
		claim_plan = membership_prepare_kept("SELECT * FROM membership.push_claim($1, $2, $3)", 3, types);
	values[0] = Int32GetDatum(push_batch_size);
	values[1] = Int32GetDatum(push_lease);
	values[2] = Int32GetDatum(push_max_attempts);
	if (SPI_execute_plan(claim_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim push notifications");

	*n = (int) SPI_processed;
	messages = MemoryContextAllocZero(cxt, Max(*n, 1) * sizeof(PushMessage));
	for (int i = 0; i < *n; i++)
	{
		PushMessage *m = &messages[i];
		bool		isnull;

		m->notification_id = DatumGetInt64(spi_datum(i, 1, &isnull));
		memcpy(&m->org, DatumGetUUIDP(spi_datum(i, 2, &isnull)), sizeof(pg_uuid_t));
		m->device_id = DatumGetInt64(spi_datum(i, 3, &isnull));
		m->apns = strcmp(spi_string(i, 4, cxt), "apns") == 0;
		m->token = spi_string(i, 5, cxt);
		m->payload = spi_string(i, 6, cxt);
		m->priority = DatumGetInt16(spi_datum(i, 7, &isnull));
		m->expiration = DatumGetInt64(spi_datum(i, 8, &isnull));
		m->collapse_id = spi_string(i, 9, cxt);
		m->attempts = DatumGetInt32(spi_datum(i, 10, &isnull));
		m->req.retry_after = -1;
	}
	return messages;
}

/*
 * Send every message whose request is ready (renew: after the service
 * refused our credential once), all endpoints at once, and classify the
 * answers.
 */
static void
send_round(PushMessage *messages, int n, bool *ready, bool renew)
{
	PushEndpoint *endpoints[3] = {fcm_endpoint, apns_endpoint, apns_sandbox_endpoint};
	PushRequest **requests = palloc(Max(n, 1) * sizeof(PushRequest *));
	int			nrequests = 0;

	for (int i = 0; i < n; i++)
	{
		PushMessage *m = &messages[i];

		if (!ready[i])
			continue;
		m->req.endpoint = !m->apns ? fcm_endpoint
			: (m->creds && m->creds->apns_sandbox) ? apns_sandbox_endpoint : apns_endpoint;
		requests[nrequests++] = &m->req;
	}
	if (nrequests > 0)
		push_http_run(endpoints, 3, requests, nrequests);
	for (int i = 0; i < n; i++)
	{
		PushMessage *m = &messages[i];

		if (!ready[i])
			continue;
		if (m->apns)
			push_apns_classify(m);
		else
			push_fcm_classify(m);
		if (m->outcome == PUSH_REAUTH && renew)
			push_message_outcome(m, PUSH_RETRY, 0, "%s (after renewing the credential)", m->error);
	}
}

/* Send the claimed messages: a first round, then once more those whose credential was refused. */
static void
deliver(PushMessage *messages, int n)
{
	bool	   *ready = palloc(Max(n, 1) * sizeof(bool));
	bool		again = false;

	pgstat_report_activity(STATE_RUNNING, "membership: sending push notifications");
	for (int i = 0; i < n; i++)
		ready[i] = messages[i].apns ? push_apns_prepare(&messages[i], false)
			: push_fcm_prepare(&messages[i], false);
	send_round(messages, n, ready, false);

	for (int i = 0; i < n; i++)
	{
		PushMessage *m = &messages[i];
		bool		renewed_org = false;

		ready[i] = false;
		if (m->outcome != PUSH_REAUTH)
			continue;
		/* renew each organisation's credential once, not once per message */
		for (int j = 0; j < i; j++)
			if (ready[j] && memcmp(&messages[j].org, &m->org, sizeof(pg_uuid_t)) == 0
				&& messages[j].apns == m->apns)
				renewed_org = true;
		ready[i] = m->apns ? push_apns_prepare(m, !renewed_org) : push_fcm_prepare(m, !renewed_org);
		again |= ready[i];
	}
	if (again)
		send_round(messages, n, ready, true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Record every message's outcome. */
static void
record(PushMessage *messages, int n)
{
	static const char *const outcome_names[] = {"sent", "dead", "retry", "failed", "retry"};
	Oid			types[6] = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, INT4OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *ids = palloc(n * sizeof(Datum));
	Datum	   *devices = palloc(n * sizeof(Datum));
	Datum	   *outcomes = palloc(n * sizeof(Datum));
	Datum	   *errors = palloc(n * sizeof(Datum));
	bool	   *error_nulls = palloc(n * sizeof(bool));
	Datum	   *delays = palloc(n * sizeof(Datum));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (record_plan == NULL)
		record_plan = membership_prepare_kept("SELECT membership.push_record($1, $2, $3, $4, $5, $6)", 6, types);
	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(messages[i].notification_id);
		devices[i] = Int64GetDatum(messages[i].device_id);
		outcomes[i] = CStringGetTextDatum(outcome_names[messages[i].outcome]);
		error_nulls[i] = messages[i].error[0] == '\0';
		errors[i] = error_nulls[i] ? (Datum) 0 : CStringGetTextDatum(messages[i].error);
		delays[i] = Int32GetDatum(messages[i].retry_ms);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(devices, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(outcomes, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(errors, error_nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_array(delays, n, INT4OID, 4, true, TYPALIGN_INT));
	values[5] = Int32GetDatum(push_max_attempts);
	if (SPI_execute_plan(record_plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record push results");
}

/* The time the worker must look again by itself (0: now; -1: nothing waits). */
static TimestampTz
next_wake(void)
{
	TimestampTz when = -1;
	bool		isnull;

	begin_work("membership: planning the next push pass");
	if (extension_ready())
	{
		if (next_wake_plan == NULL)
			next_wake_plan = membership_prepare_kept("SELECT membership.push_next_wake()", 0, NULL);
		if (SPI_execute_plan(next_wake_plan, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not plan the next push pass");
		when = DatumGetTimestampTz(spi_datum(0, 1, &isnull));
		if (isnull)
			when = -1;
	}
	end_work();
	return when;
}

/* One pass: claim, send, record.  Returns the number of messages sent. */
static int
push_pass(MemoryContext cxt)
{
	PushMessage *messages = NULL;
	int			n = 0;
	TimestampTz t0 = GetCurrentTimestamp();
	TimestampTz t1;
	TimestampTz t2;

	begin_work("membership: claiming push notifications");
	if (extension_ready())
	{
		messages = claim(&n, cxt);
		if (n > 0)
			load_credentials(messages, n, cxt);
	}
	end_work();
	if (n == 0)
		return 0;

	t1 = GetCurrentTimestamp();
	deliver(messages, n);
	t2 = GetCurrentTimestamp();

	begin_work("membership: recording push results");
	record(messages, n);
	end_work();
	elog(DEBUG1, "push pass: %d messages, claim %ld ms, send %ld ms, record %ld ms", n,
		 (long) ((t1 - t0) / 1000), (long) ((t2 - t1) / 1000), (long) ((GetCurrentTimestamp() - t2) / 1000));

	for (int i = 0; i < n; i++)
		if (messages[i].req.headers != NULL)
			curl_slist_free_all(messages[i].req.headers);
	return n;
}

void
membership_push_worker_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	MemoryContext pass_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(membership_database, NULL, 0);
	pgstat_report_appname("membership push worker");
	push_wake_register(slot);

	push_http_init();
	fcm_endpoint = push_endpoint_create("fcm");
	apns_endpoint = push_endpoint_create("apns");
	apns_sandbox_endpoint = push_endpoint_create("apns sandbox");
	pass_context = AllocSetContextCreate(TopMemoryContext, "membership push worker pass",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext old;
		int			sent;
		TimestampTz when;
		TimestampTz now;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(pass_context);
		sent = push_pass(pass_context);
		/* after a full batch more is probably due: no need to ask */
		when = sent >= push_batch_size ? 0 : next_wake();
		MemoryContextSwitchTo(old);
		MemoryContextReset(pass_context);

		now = GetCurrentTimestamp();
		if (when >= 0 && when <= now)
			continue;
		timeout = PUSH_MAX_SLEEP_MS;
		if (when >= 0)
			timeout = Min(timeout, (long) ((when - now + 999) / 1000));
		push_wake_plan(slot, when >= 0 ? when : now + (int64) PUSH_MAX_SLEEP_MS * 1000);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		push_wake_plan(slot, PG_INT64_MAX);
	}
}
