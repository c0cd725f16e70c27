/*-------------------------------------------------------------------------
 *
 * push_fcm.c
 *	  Firebase Cloud Messaging, HTTP v1 API.
 *
 * A message is POST {push_fcm_url}/v1/projects/{project}/messages:send
 * with an OAuth2 access token of the organisation's service account.  The
 * token comes from the service-account flow: an RS256 JWT (iss = client
 * email, scope firebase.messaging, aud = token URI, iat, exp = iat + 1 h)
 * exchanged at the token URI with grant type jwt-bearer.  It is cached per
 * organisation until five minutes before expires_in runs out (or until the
 * credentials change, or FCM answers 401).
 *
 * Answers: 404 UNREGISTERED and 400 INVALID_ARGUMENT about the token
 * deactivate the device; 429 QUOTA_EXCEEDED retries after a minute at
 * least; 5xx (UNAVAILABLE, INTERNAL) and no answer retry with backoff; 401
 * renews the token and resends once; anything else fails the row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "push.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_TOKEN_LIFETIME 3600
#define FCM_QUOTA_BACKOFF_MS (60 * 1000)
/* after a failed exchange, other messages of the pass reuse the failure */
#define FCM_FAILURE_MEMORY_MS (5 * 1000)

typedef struct FcmToken
{
	pg_uuid_t	org;			/* hash key */
	TimestampTz creds_updated;	/* the credentials it was made with */
	char	   *access_token;	/* in TopMemoryContext; NULL: none */
	TimestampTz renew_at;
	TimestampTz failed_at;		/* last failed exchange */
	bool		failure_permanent;
	char		failure[256];
} FcmToken;

static HTAB *fcm_tokens = NULL;

static FcmToken *
fcm_token_entry(const PushCredentials *creds)
{
	FcmToken   *entry;
	bool		found;

	if (fcm_tokens == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(pg_uuid_t);
		info.entrysize = sizeof(FcmToken);
		fcm_tokens = hash_create("membership FCM access tokens", 64, &info, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(fcm_tokens, &creds->org, HASH_ENTER, &found);
	if (!found || entry->creds_updated != creds->updated_at)
	{
		if (found && entry->access_token != NULL)
			pfree(entry->access_token);
		entry->creds_updated = creds->updated_at;
		entry->access_token = NULL;
		entry->renew_at = 0;
		entry->failed_at = 0;
		entry->failure[0] = '\0';
	}
	return entry;
}

/*
 * Exchange a signed service-account assertion for an access token, into
 * "entry"; on failure, note why.
 */
static void
fcm_exchange(const PushCredentials *creds, FcmToken *entry)
{
	TimestampTz now = GetCurrentTimestamp();
	long		iat = (long) (now / USECS_PER_SEC + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	char	   *claims;
	char	   *jwt;
	char	   *token;
	double		expires_in = FCM_TOKEN_LIFETIME;
	PushRequest request;

	memset(&request, 0, sizeof(request));
	entry->failed_at = now;
	entry->failure_permanent = false;
	claims = psprintf("{\"iss\":%s,\"scope\":\"%s\",\"aud\":%s,\"iat\":%ld,\"exp\":%ld}",
					  json_quote(creds->fcm_email), FCM_SCOPE, json_quote(creds->fcm_token_uri),
					  iat, iat + FCM_TOKEN_LIFETIME);
	jwt = jwt_sign("RS256", creds->fcm_key, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims,
				   entry->failure, sizeof(entry->failure));
	if (jwt == NULL)
	{
		entry->failure_permanent = true;
		return;
	}

	request.url = creds->fcm_token_uri;
	request.body = psprintf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s", jwt);
	request.body_len = strlen(request.body);
	request.headers = curl_slist_append(NULL, "content-type: application/x-www-form-urlencoded");
	push_http_post(&request);
	curl_slist_free_all(request.headers);

	if (request.status != 200)
	{
		if (request.status == 0)
			snprintf(entry->failure, sizeof(entry->failure),
					 "could not obtain an FCM access token: %s", request.error);
		else
			snprintf(entry->failure, sizeof(entry->failure),
					 "could not obtain an FCM access token: HTTP %ld: %.120s",
					 request.status, request.response.data);
		return;
	}
	token = push_json_string(request.response.data, "access_token");
	if (token == NULL || token[0] == '\0')
	{
		snprintf(entry->failure, sizeof(entry->failure),
				 "could not obtain an FCM access token: the answer holds none");
		return;
	}
	(void) push_json_number(request.response.data, "expires_in", &expires_in);
	entry->access_token = MemoryContextStrdup(TopMemoryContext, token);
	/* renew five minutes before it expires (half-way for short ones) */
	entry->renew_at = now + (int64) (expires_in > 600 ? expires_in - 300 : expires_in / 2) * USECS_PER_SEC;
	entry->failed_at = 0;
	entry->failure[0] = '\0';
}

/*
 * Make m's request ready to send, with a cached access token (a new one if
 * "renew"); false, with m's outcome set, if it cannot be sent now.
 */
bool
push_fcm_prepare(PushMessage *m, bool renew)
{
	const PushCredentials *creds = m->creds;
	FcmToken   *entry;
	TimestampTz now = GetCurrentTimestamp();

	if (creds == NULL || creds->fcm_project == NULL)
	{
		push_message_outcome(m, PUSH_FAILED, 0, "the organisation has no FCM credentials");
		return false;
	}
	entry = fcm_token_entry(creds);
	if (renew && entry->access_token != NULL)
	{
		pfree(entry->access_token);
		entry->access_token = NULL;
	}
	if (entry->access_token != NULL && now >= entry->renew_at)
	{
		pfree(entry->access_token);
		entry->access_token = NULL;
	}
	if (entry->access_token == NULL
		&& (entry->failed_at == 0 || renew
			|| TimestampDifferenceExceeds(entry->failed_at, now, FCM_FAILURE_MEMORY_MS)))
		fcm_exchange(creds, entry);
	if (entry->access_token == NULL)
	{
		push_message_outcome(m, entry->failure_permanent ? PUSH_FAILED : PUSH_RETRY, 0,
							 "%s", entry->failure);
		return false;
	}

	m->req.url = psprintf("%s/v1/projects/%s/messages:send", push_fcm_url, creds->fcm_project);
	m->req.body = m->payload;
	m->req.body_len = strlen(m->payload);
	if (m->req.headers != NULL)
		curl_slist_free_all(m->req.headers);
	m->req.headers = curl_slist_append(NULL, "content-type: application/json; charset=UTF-8");
	m->req.headers = curl_slist_append(m->req.headers,
									   psprintf("authorization: Bearer %s", entry->access_token));
	return true;
}

/* What FCM's answer to m means. */
void
push_fcm_classify(PushMessage *m)
{
	long		status = m->req.status;
	const char *body = m->req.response.data;
	char	   *code = push_json_string(body, "errorCode");
	char	   *message = push_json_string(body, "message");

	if (code == NULL)
		code = push_json_string(body, "status");
	if (message == NULL)
		message = "";
	if (status == 200)
		push_message_outcome(m, PUSH_SENT, 0, NULL);
	else if (status == 0)
		push_message_outcome(m, PUSH_RETRY, 0, "FCM: no answer: %s", m->req.error);
	else if (status == 404 && (code == NULL || strcmp(code, "UNREGISTERED") == 0))
		push_message_outcome(m, PUSH_DEAD, 0, "FCM: UNREGISTERED");
	else if (status == 400 && code != NULL && strcmp(code, "INVALID_ARGUMENT") == 0
			 && strcasestr(message, "token") != NULL)
		push_message_outcome(m, PUSH_DEAD, 0, "FCM: INVALID_ARGUMENT: %s", message);
	else if (status == 401)
		push_message_outcome(m, PUSH_REAUTH, 0, "FCM: HTTP 401: %s", message);
	else if (status == 429)
		push_message_outcome(m, PUSH_RETRY, FCM_QUOTA_BACKOFF_MS, "FCM: HTTP 429 %s",
							 code ? code : "QUOTA_EXCEEDED");
	else if (status >= 500)
		push_message_outcome(m, PUSH_RETRY, 0, "FCM: HTTP %ld %s", status, code ? code : "");
	else
		push_message_outcome(m, PUSH_FAILED, 0, "FCM: HTTP %ld %s: %s", status, code ? code : "", message);
}
