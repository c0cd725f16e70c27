/*-------------------------------------------------------------------------
 *
 * push_http.c
 *	  HTTP/2 transport of the push worker, on the libcurl multi interface.
 *
 * Each endpoint (FCM, APNs, APNs sandbox) has one multi handle for the
 * worker's life, so its connections stay open from batch to batch; the
 * transfers of all endpoints advance together.
 * Transfers ask for HTTP/2 over TLS (h2 by ALPN) and wait for an existing
 * connection to multiplex on (CURLOPT_PIPEWAIT) rather than open another:
 * membership.push_concurrency streams are in flight on at most
 * PUSH_HOST_CONNECTIONS connections per host.  The OAuth2 token exchange is
 * one synchronous request, once an hour per organisation.
 *
 * Also here: the little JSON reading the services' answers need, and the
 * retry delay (exponential backoff with jitter, Retry-After honoured).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/select.h>

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/memutils.h"

#include "push.h"

#define PUSH_HOST_CONNECTIONS 2
#define PUSH_MAX_BACKOFF_MS (3600 * 1000)

struct PushEndpoint
{
	const char *name;
	CURLM	   *multi;
};

/* Once per worker, before any other libcurl call. */
void
push_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "could not initialise libcurl");
}

PushEndpoint *
push_endpoint_create(const char *name)
{
	PushEndpoint *endpoint = MemoryContextAlloc(TopMemoryContext, sizeof(PushEndpoint));

	endpoint->name = name;
	endpoint->multi = curl_multi_init();
	if (endpoint->multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	curl_multi_setopt(endpoint->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	curl_multi_setopt(endpoint->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) PUSH_HOST_CONNECTIONS);
	curl_multi_setopt(endpoint->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long) push_concurrency);
	return endpoint;
}

static size_t
collect_body(char *data, size_t size, size_t nmemb, void *arg)
{
	PushRequest *request = arg;

	/* answers are small; keep the first 16 kB of any */
	if (request->response.len < 16384)
		appendBinaryStringInfo(&request->response, data, (int) Min(size * nmemb, 16384));
	return size * nmemb;
}

/* Forget what a previous sending of "request" received. */
void
push_request_reset(PushRequest *request)
{
	if (request->response.data == NULL)
		initStringInfo(&request->response);
	else
		resetStringInfo(&request->response);
	request->status = 0;
	request->retry_after = -1;
	request->error[0] = '\0';
}

static CURL *
request_easy(PushRequest *request)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		elog(ERROR, "could not create a libcurl handle");
	push_request_reset(request);
	curl_easy_setopt(easy, CURLOPT_URL, request->url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) request->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, request->headers);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) push_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) push_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "membership-push/0.2");
	if (push_ca_file != NULL && push_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, push_ca_file);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, request);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, request->error);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, request);
	return easy;
}

/* Note the outcome of a finished transfer in its request. */
static void
request_done(PushRequest *request, CURL *easy, CURLcode result)
{
	struct curl_header *header;

	if (result != CURLE_OK)
	{
		request->status = 0;
		if (request->error[0] == '\0')
			strlcpy(request->error, curl_easy_strerror(result), sizeof(request->error));
		return;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &request->status);
	if (curl_easy_header(easy, "retry-after", 0, CURLH_HEADER, -1, &header) == CURLHE_OK)
	{
		char	   *end;
		long		seconds = strtol(header->value, &end, 10);

		/* seconds only; an HTTP date is ignored (the backoff still applies) */
		if (end != header->value && seconds >= 0 && seconds < 86400)
			request->retry_after = (int) seconds;
	}
}

/*
 * Send "n" requests, each through its endpoint, push_concurrency at a
 * time over all endpoints, and return when every one has an answer or has
 * failed.  The endpoints' transfers advance together: one select() waits
 * on the sockets of all of them.  A worker whose postmaster died leaves at
 * once: what it claimed is re-sent after the lease.
 */
void
push_http_run(PushEndpoint **endpoints, int nendpoints, PushRequest **requests, int n)
{
	int			next = 0;
	int			in_flight = 0;
	int			done = 0;

	/* membership.push_concurrency may have changed since the last batch */
	for (int e = 0; e < nendpoints; e++)
		curl_multi_setopt(endpoints[e]->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long) push_concurrency);

	while (done < n)
	{
		fd_set		readfds;
		fd_set		writefds;
		fd_set		errfds;
		int			maxfd = -1;
		long		timeout_ms = 100;
		struct timeval tv;

		while (in_flight < push_concurrency && next < n)
		{
			PushRequest *request = requests[next++];

			request->easy = request_easy(request);
			curl_multi_add_handle(request->endpoint->multi, request->easy);
			in_flight++;
		}

		FD_ZERO(&readfds);
		FD_ZERO(&writefds);
		FD_ZERO(&errfds);
		for (int e = 0; e < nendpoints; e++)
		{
			CURLM	   *multi = endpoints[e]->multi;
			int			running;
			int			left;
			int			fd = -1;
			long		t = -1;
			CURLMsg    *msg;

			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
			{
				PushRequest *request;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &request);
				request_done(request, msg->easy_handle, msg->data.result);
				curl_multi_remove_handle(multi, msg->easy_handle);
				curl_easy_cleanup(msg->easy_handle);
				request->easy = NULL;
				in_flight--;
				done++;
			}
			if (running == 0)
				continue;
			curl_multi_fdset(multi, &readfds, &writefds, &errfds, &fd);
			maxfd = Max(maxfd, fd);
			curl_multi_timeout(multi, &t);
			if (t >= 0)
				timeout_ms = Min(timeout_ms, t);
		}

		if (!PostmasterIsAlive())
			proc_exit(1);
		if (done >= n || (next < n && in_flight < push_concurrency))
			continue;
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		if (maxfd >= 0 && maxfd < FD_SETSIZE)
			(void) select(maxfd + 1, &readfds, &writefds, &errfds, &tv);
		else if (timeout_ms > 0)
			pg_usleep(Min(timeout_ms, 10) * 1000L);
	}
}

/* Send one request and wait for its answer (the OAuth2 token exchange). */
void
push_http_post(PushRequest *request)
{
	CURL	   *easy = request_easy(request);

	request_done(request, easy, curl_easy_perform(easy));
	curl_easy_cleanup(easy);
}

/*
 * The position just after "key": in "json" (a flat answer of FCM, OAuth2 or
 * APNs), or NULL.  These answers are small objects written by the
 * services; this is no general JSON parser.
 */
static const char *
json_value_of(const char *json, const char *key)
{
	size_t		key_len = strlen(key);
	const char *p = json;

	while (json != NULL && (p = strchr(p, '"')) != NULL)
	{
		if (strncmp(p + 1, key, key_len) == 0 && p[key_len + 1] == '"')
		{
			const char *q = p + key_len + 2;

			while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
				q++;
			if (*q == ':')
			{
				q++;
				while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
					q++;
				return q;
			}
		}
		p++;
	}
	return NULL;
}

/* The string value of the first "key" in "json", palloc'd, or NULL. */
char *
push_json_string(const char *json, const char *key)
{
	const char *p = json_value_of(json, key);
	StringInfoData buf;

	if (p == NULL || *p != '"')
		return NULL;
	initStringInfo(&buf);
	for (p++; *p != '\0' && *p != '"'; p++)
	{
		if (*p == '\\' && p[1] != '\0')
			p++;
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/* The number value of the first "key" in "json". */
bool
push_json_number(const char *json, const char *key, double *value)
{
	const char *p = json_value_of(json, key);
	char	   *end;

	if (p == NULL)
		return false;
	*value = strtod(p, &end);
	return end != p;
}

/*
 * How long to wait before attempt "attempts" + 1: push_retry_base times
 * 2^(attempts - 1), at most an hour, with full jitter over its upper half;
 * never less than the server's Retry-After nor than "floor_ms".
 */
int
push_backoff_ms(int attempts, int retry_after, int floor_ms)
{
	double		base = push_retry_base_ms;
	double		delay;

	for (int i = 1; i < attempts && base < PUSH_MAX_BACKOFF_MS; i++)
		base *= 2;
	base = Min(base, PUSH_MAX_BACKOFF_MS);
	delay = base / 2 + pg_prng_double(&pg_global_prng_state) * base / 2;
	if (retry_after >= 0)
		delay = Max(delay, retry_after * 1000.0);
	delay = Max(delay, floor_ms);
	return (int) Min(delay, PUSH_MAX_BACKOFF_MS);
}

/*
 * Set the outcome of "m" and its error message; for a retry, its delay
 * (at least "floor_ms", and the server's Retry-After).
 */
void
push_message_outcome(PushMessage *m, PushOutcome outcome, int floor_ms, const char *fmt,...)
{
	va_list		args;

	m->outcome = outcome;
	m->error[0] = '\0';
	if (fmt != NULL)
	{
		va_start(args, fmt);
		vsnprintf(m->error, sizeof(m->error), fmt, args);
		va_end(args);
	}
	m->retry_ms = outcome == PUSH_RETRY ? push_backoff_ms(m->attempts, m->req.retry_after, floor_ms) : 0;
}
