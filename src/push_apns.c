/*-------------------------------------------------------------------------
 *
 * push_apns.c
 *	  Apple Push Notification service, HTTP/2 provider API.
 *
 * A notification is POST {push_apns_url}/3/device/{token} (or
 * push_apns_sandbox_url for an organisation whose credentials say
 * sandbox), with "authorization: bearer <provider token>": an ES256 JWT
 * (header kid = key id; claims iss = team id, iat) signed with the
 * organisation's .p8 key.  One provider token per organisation serves
 * every request; APNs refuses tokens older than an hour and refreshes more
 * often than every 20 minutes, so it is renewed after 50 minutes, or when
 * the credentials change, or when APNs calls it expired.
 *
 * Headers: apns-topic (the app's bundle id), apns-push-type alert,
 * apns-priority (10 for priority 1, else 5), apns-expiration (not_after,
 * 0 for none), apns-collapse-id (one per notification, so that a re-sent
 * notification replaces itself on the device).
 *
 * Answers: 410 Unregistered and 400 BadDeviceToken deactivate the device;
 * 429 and 5xx and no answer retry with backoff; 403 ExpiredProviderToken
 * renews the token and resends once; anything else fails the row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "push.h"

#define APNS_TOKEN_RENEW_SECS (50 * 60)

typedef struct ApnsToken
{
	pg_uuid_t	org;			/* hash key */
	TimestampTz creds_updated;
	char	   *jwt;			/* in TopMemoryContext; NULL: none */
	TimestampTz issued_at;
	char		failure[256];
} ApnsToken;

static HTAB *apns_tokens = NULL;

/* The organisation's provider token, new if needed or "renew"; NULL if the key is unusable. */
static ApnsToken *
apns_token(const PushCredentials *creds, bool renew)
{
	ApnsToken  *entry;
	bool		found;
	TimestampTz now = GetCurrentTimestamp();

	if (apns_tokens == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(pg_uuid_t);
		info.entrysize = sizeof(ApnsToken);
		apns_tokens = hash_create("membership APNs provider tokens", 64, &info, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(apns_tokens, &creds->org, HASH_ENTER, &found);
	if (found && entry->jwt != NULL
		&& (renew || entry->creds_updated != creds->updated_at
			|| TimestampDifferenceExceeds(entry->issued_at, now, APNS_TOKEN_RENEW_SECS * 1000)))
	{
		pfree(entry->jwt);
		entry->jwt = NULL;
	}
	if (!found || entry->jwt == NULL)
	{
		long		iat = (long) (now / USECS_PER_SEC
								  + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
		char	   *jwt;

		entry->jwt = NULL;
		entry->creds_updated = creds->updated_at;
		jwt = jwt_sign("ES256", creds->apns_key,
					   psprintf("{\"alg\":\"ES256\",\"kid\":%s}", json_quote(creds->apns_key_id)),
					   psprintf("{\"iss\":%s,\"iat\":%ld}", json_quote(creds->apns_team), iat),
					   entry->failure, sizeof(entry->failure));
		if (jwt != NULL)
		{
			entry->jwt = MemoryContextStrdup(TopMemoryContext, jwt);
			entry->issued_at = now;
		}
	}
	return entry;
}

/*
 * Make m's request ready to send; false, with m's outcome set, if it
 * cannot be sent.
 */
bool
push_apns_prepare(PushMessage *m, bool renew)
{
	const PushCredentials *creds = m->creds;
	ApnsToken  *token;
	char	   *escaped;
	struct curl_slist *h = NULL;

	if (creds == NULL || creds->apns_key_id == NULL)
	{
		push_message_outcome(m, PUSH_FAILED, 0, "the organisation has no APNs credentials");
		return false;
	}
	token = apns_token(creds, renew);
	if (token->jwt == NULL)
	{
		push_message_outcome(m, PUSH_FAILED, 0, "APNs provider token: %s", token->failure);
		return false;
	}

	escaped = curl_easy_escape(NULL, m->token, 0);
	m->req.url = psprintf("%s/3/device/%s",
						  creds->apns_sandbox ? push_apns_sandbox_url : push_apns_url, escaped);
	curl_free(escaped);
	m->req.body = m->payload;
	m->req.body_len = strlen(m->payload);
	h = curl_slist_append(h, psprintf("authorization: bearer %s", token->jwt));
	h = curl_slist_append(h, psprintf("apns-topic: %s", creds->apns_topic));
	h = curl_slist_append(h, "apns-push-type: alert");
	h = curl_slist_append(h, m->priority == 1 ? "apns-priority: 10" : "apns-priority: 5");
	h = curl_slist_append(h, psprintf("apns-expiration: " INT64_FORMAT, m->expiration));
	h = curl_slist_append(h, psprintf("apns-collapse-id: %s", m->collapse_id));
	h = curl_slist_append(h, "content-type: application/json");
	if (m->req.headers != NULL)
		curl_slist_free_all(m->req.headers);
	m->req.headers = h;
	return true;
}

/* What APNs's answer to m means. */
void
push_apns_classify(PushMessage *m)
{
	long		status = m->req.status;
	char	   *reason = push_json_string(m->req.response.data, "reason");

	if (reason == NULL)
		reason = "";
	if (status == 200)
		push_message_outcome(m, PUSH_SENT, 0, NULL);
	else if (status == 0)
		push_message_outcome(m, PUSH_RETRY, 0, "APNs: no answer: %s", m->req.error);
	else if (status == 410 || (status == 400 && strcmp(reason, "BadDeviceToken") == 0))
		push_message_outcome(m, PUSH_DEAD, 0, "APNs: HTTP %ld %s", status, reason);
	else if (status == 403 && strcmp(reason, "ExpiredProviderToken") == 0)
		push_message_outcome(m, PUSH_REAUTH, 0, "APNs: HTTP 403 %s", reason);
	else if (status == 429 || status >= 500)
		push_message_outcome(m, PUSH_RETRY, 0, "APNs: HTTP %ld %s", status, reason);
	else
		push_message_outcome(m, PUSH_FAILED, 0, "APNs: HTTP %ld %s", status, reason);
}
