/*-------------------------------------------------------------------------
 *
 * push.h
 *	  Declarations shared by the push worker's files: the worker loop
 *	  (push_worker.c), the wake-up at commit (push_wake.c), the HTTP/2
 *	  transport (push_http.c), the two services (push_fcm.c, push_apns.c)
 *	  and JWT signing (jwt.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEMBERSHIP_PUSH_H
#define MEMBERSHIP_PUSH_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* GUCs (push_worker.c) */
extern char *push_fcm_url;
extern char *push_apns_url;
extern char *push_apns_sandbox_url;
extern char *push_ca_file;
extern int	push_concurrency;
extern int	push_timeout_ms;
extern int	push_retry_base_ms;

/* What became of one message to one device. */
typedef enum PushOutcome
{
	PUSH_SENT,					/* delivered */
	PUSH_DEAD,					/* the service calls the token dead: deactivate */
	PUSH_RETRY,					/* try again later (retry_ms) */
	PUSH_FAILED,				/* will never work: the row fails */
	PUSH_REAUTH					/* our credential was refused: renew it, resend once */
} PushOutcome;

/* One organisation's push credentials, as membership.push_credentials holds them. */
typedef struct PushCredentials
{
	pg_uuid_t	org;
	TimestampTz updated_at;
	char	   *fcm_project;	/* NULL: no FCM credentials */
	char	   *fcm_email;
	char	   *fcm_key;
	char	   *fcm_token_uri;
	char	   *apns_key_id;	/* NULL: no APNs credentials */
	char	   *apns_team;
	char	   *apns_key;
	char	   *apns_topic;
	bool		apns_sandbox;
} PushCredentials;

/* One HTTP/2 request: what to send, and what came back. */
typedef struct PushRequest
{
	char	   *url;
	struct curl_slist *headers;
	const char *body;
	size_t		body_len;
	long		status;			/* HTTP status; 0 if no answer */
	int			retry_after;	/* seconds of Retry-After; -1 if none */
	StringInfoData response;
	char		error[256];		/* transport error, if status is 0 */
	struct PushEndpoint *endpoint;	/* where it goes */
	void	   *easy;			/* CURL *, while in flight */
} PushRequest;

/* One notification to one device. */
typedef struct PushMessage
{
	int64		notification_id;
	int64		device_id;
	pg_uuid_t	org;
	bool		apns;			/* else FCM */
	char	   *token;
	char	   *payload;
	int			priority;
	int64		expiration;		/* Unix time; 0: none */
	char	   *collapse_id;
	int			attempts;		/* of the row, this one included */
	PushCredentials *creds;		/* NULL: the organisation has none */
	PushRequest req;
	PushOutcome outcome;
	char		error[256];
	int			retry_ms;
} PushMessage;

/* push_http.c */
typedef struct PushEndpoint PushEndpoint;
extern void push_http_init(void);
extern PushEndpoint *push_endpoint_create(const char *name);
extern void push_http_run(PushEndpoint **endpoints, int nendpoints, PushRequest **requests, int n);
extern void push_http_post(PushRequest *request);
extern void push_request_reset(PushRequest *request);
extern char *push_json_string(const char *json, const char *key);
extern bool push_json_number(const char *json, const char *key, double *value);
extern int	push_backoff_ms(int attempts, int retry_after, int floor_ms);
extern void push_message_outcome(PushMessage *m, PushOutcome outcome, int floor_ms,
								 const char *fmt,...) pg_attribute_printf(4, 5);

/* push_fcm.c */
extern bool push_fcm_prepare(PushMessage *m, bool renew);
extern void push_fcm_classify(PushMessage *m);

/* push_apns.c */
extern bool push_apns_prepare(PushMessage *m, bool renew);
extern void push_apns_classify(PushMessage *m);

/* jwt.c */
extern char *jwt_base64url(const unsigned char *data, size_t len);
extern char *jwt_sign(const char *alg, const char *pem_key, const char *header_json,
					  const char *claims_json, char *error, size_t error_len);
extern char *json_quote(const char *s);

#endif							/* MEMBERSHIP_PUSH_H */
