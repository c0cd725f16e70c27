/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The loyalty ledger's per-event check, in C.
 *
 * earn_points() (src/ledger_earn.c) checks its one event and
 * earn_points_batch() every event of a batch with the same check,
 * ledger_event_problem(), which SQL calls as
 * membership.loyalty_event_problem(): it returns what is wrong with an
 * event, or NULL.  It runs once per event of every batch, so it is C: a
 * PL/pgSQL or SQL version costs a function call with its own search_path
 * per event, more than the check itself.  The rest of the ledger is SQL
 * (src/sql/0.2/2xx_ledger_*.sql, src/sql/0.3/2xx_*.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "membership.h"

/* amounts above this are refused: 1,000,000,000.00 in cents */
#define LEDGER_MAX_AMOUNT_CENTS	INT64CONST(100000000000)

PG_FUNCTION_INFO_V1(membership_loyalty_event_problem);

/* Characters in a text value. */
static int
text_chars(text *t)
{
	return pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * Is "s" a source type: a lower-case letter, then up to 31 lower-case
 * letters, digits and underscores?
 */
static bool
is_source_type(const char *s, int len)
{
	if (len < 1 || len > 32 || s[0] < 'a' || s[0] > 'z')
		return false;
	for (int i = 1; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* Actions earn without an amount; purchases need one. */
static bool
is_action(const char *s, int len)
{
	return (len == 6 && strncmp(s, "signup", 6) == 0) ||
		(len == 6 && strncmp(s, "review", 6) == 0) ||
		(len == 8 && strncmp(s, "referral", 8) == 0);
}

/* now() shifted by "months" and "usecs". */
static TimestampTz
now_plus(int32 months, int64 usecs)
{
	Interval   *shift = palloc0(sizeof(Interval));
	TimestampTz now;

	shift->month = months;
	shift->time = usecs;
	now = GetCurrentTransactionStartTimestamp();
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(now),
												   IntervalPGetDatum(shift)));
}

/*
 * What is wrong with an event to earn points for, as an error message in
 * PostgreSQL's style, or NULL when nothing is.  The checks, in order: the
 * required values are there; the amount is 0 to 100,000,000,000 cents and
 * positive for a purchase; the source type is an identifier; the source
 * reference is 1 to 200 characters; a category is 1 to 100; occurred_at is
 * not in the future (5 minutes' clock skew allowed) nor more than 10 years
 * ago.  A NULL pointer is a NULL argument; "has_at" says occurred_at is
 * given.
 */
char *
ledger_event_problem(const int64 *amount_cents, text *source_type, text *source_ref,
					 text *category, bool has_at, TimestampTz occurred_at)
{
	int64		amount;
	const char *type;
	int			type_len;

	if (amount_cents == NULL || source_type == NULL || source_ref == NULL)
		return "amount_cents, source_type and source_ref must not be null";
	amount = *amount_cents;
	type = VARDATA_ANY(source_type);
	type_len = VARSIZE_ANY_EXHDR(source_type);

	if (amount < 0)
		return psprintf("amount_cents must not be negative, not " INT64_FORMAT, amount);
	if (amount > LEDGER_MAX_AMOUNT_CENTS)
		return psprintf("amount_cents " INT64_FORMAT " is too large", amount);
	if (amount == 0 && !is_action(type, type_len))
		return "amount_cents must be positive for a purchase";
	if (!is_source_type(type, type_len))
	{
		int			clip = pg_mbcharcliplen(type, type_len, 100);

		return psprintf("invalid source_type \"%.*s\"", clip, type);
	}
	if (VARSIZE_ANY_EXHDR(source_ref) == 0 || text_chars(source_ref) > 200)
		return "source_ref must be 1 to 200 characters";
	if (category != NULL && (VARSIZE_ANY_EXHDR(category) == 0 || text_chars(category) > 100))
		return "category must be 1 to 100 characters";
	if (has_at)
	{
		if (TIMESTAMP_NOT_FINITE(occurred_at) || occurred_at > now_plus(0, 5 * USECS_PER_MINUTE))
			return "occurred_at is in the future";
		if (occurred_at < now_plus(-120, 0))
			return "occurred_at is more than 10 years ago";
	}
	return NULL;
}

/*
 * membership.loyalty_event_problem(amount_cents bigint, source_type text,
 *     source_ref text, category text, occurred_at timestamptz) RETURNS text
 *
 * ledger_event_problem() for SQL: earn_points_batch() checks every event
 * of a batch with it.
 */
Datum
membership_loyalty_event_problem(PG_FUNCTION_ARGS)
{
	int64		amount = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	char	   *problem;

	problem = ledger_event_problem(PG_ARGISNULL(0) ? NULL : &amount,
								   PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
								   PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2),
								   PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3),
								   !PG_ARGISNULL(4),
								   PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4));
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

PG_FUNCTION_INFO_V1(membership_loyalty_entry_is_valid);

/*
 * membership.loyalty_entry_is_valid(kind text, points bigint,
 *     idempotency_key text, shortfall bigint) RETURNS boolean
 *
 * The CHECK of a ledger entry (besides balance_after >= 0): the kind is
 * EARN, BONUS, REDEEM, EXPIRE, ADJUST or REVERSAL; EARN and BONUS add
 * points, REDEEM, EXPIRE and REVERSAL take them away (ADJUST either); an
 * EXPIRE entry has no idempotency key and every other one has one, of at
 * most 500 characters; the shortfall is not negative.  False when one of
 * them fails.  PostgreSQL reads and prepares a table's CHECK expressions
 * again at every statement that writes it, and as SQL these conditions
 * were most of that work for each earn; as one call they cost next to
 * nothing.
 */
Datum
membership_loyalty_entry_is_valid(PG_FUNCTION_ARGS)
{
	text	   *kind;
	const char *k;
	int			len;
	int64		points;
	bool		expire = false;

	/* NOT NULL columns; a NULL here is none of the checks' business */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3))
		PG_RETURN_NULL();
	kind = PG_GETARG_TEXT_PP(0);
	k = VARDATA_ANY(kind);
	len = VARSIZE_ANY_EXHDR(kind);
	points = PG_GETARG_INT64(1);

	if ((len == 4 && memcmp(k, "EARN", 4) == 0) || (len == 5 && memcmp(k, "BONUS", 5) == 0))
	{
		if (points < 0)
			PG_RETURN_BOOL(false);
	}
	else if ((len == 6 && memcmp(k, "REDEEM", 6) == 0) || (len == 8 && memcmp(k, "REVERSAL", 8) == 0))
	{
		if (points > 0)
			PG_RETURN_BOOL(false);
	}
	else if (len == 6 && memcmp(k, "EXPIRE", 6) == 0)
	{
		if (points > 0)
			PG_RETURN_BOOL(false);
		expire = true;
	}
	else if (!(len == 6 && memcmp(k, "ADJUST", 6) == 0))
		PG_RETURN_BOOL(false);

	if (expire != PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	if (!PG_ARGISNULL(2) && text_chars(PG_GETARG_TEXT_PP(2)) > 500)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(PG_GETARG_INT64(3) >= 0);
}

PG_FUNCTION_INFO_V1(membership_loyalty_account_is_valid);
PG_FUNCTION_INFO_V1(membership_loyalty_bucket_is_valid);

/*
 * membership.loyalty_account_is_valid(lifetime_points bigint,
 *     qualifying_points bigint, purchases bigint, downgrade_to text,
 *     downgrade_at date) RETURNS boolean
 *
 * The CHECK of an account besides balance >= 0: lifetime and qualifying
 * points and purchases are not negative; a scheduled downgrade has both
 * its tier and its date, or neither.
 */
Datum
membership_loyalty_account_is_valid(PG_FUNCTION_ARGS)
{
	/* NOT NULL columns */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(PG_GETARG_INT64(0) >= 0 && PG_GETARG_INT64(1) >= 0 && PG_GETARG_INT64(2) >= 0 &&
				   PG_ARGISNULL(3) == PG_ARGISNULL(4));
}

/*
 * membership.loyalty_bucket_is_valid(points bigint, remaining bigint,
 *     expired bigint) RETURNS boolean
 *
 * The CHECK of an expiry bucket: points positive; remaining and expired
 * not negative and together at most points.
 */
Datum
membership_loyalty_bucket_is_valid(PG_FUNCTION_ARGS)
{
	int64		points;
	int64		remaining;
	int64		expired;
	int64		sum;

	/* NOT NULL columns */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	points = PG_GETARG_INT64(0);
	remaining = PG_GETARG_INT64(1);
	expired = PG_GETARG_INT64(2);
	PG_RETURN_BOOL(points > 0 && remaining >= 0 && expired >= 0 &&
				   !pg_add_s64_overflow(remaining, expired, &sum) && sum <= points);
}

PG_FUNCTION_INFO_V1(membership_loyalty_int8_or_null);
PG_FUNCTION_INFO_V1(membership_loyalty_uuid_or_null);

/*
 * membership.loyalty_int8_or_null(text) RETURNS bigint
 *
 * The text as a bigint when it is an optional minus and 1 to 18 digits,
 * else NULL: how a batch reads amount_cents without failing the whole
 * batch on one bad event (a regular expression cost more than the rest of
 * reading the event).
 */
Datum
membership_loyalty_int8_or_null(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	bool		negative = len > 0 && s[0] == '-';
	int64		value = 0;

	if (negative)
	{
		s++;
		len--;
	}
	if (len < 1 || len > 18)
		PG_RETURN_NULL();
	for (int i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			PG_RETURN_NULL();
		value = value * 10 + (s[i] - '0');
	}
	PG_RETURN_INT64(negative ? -value : value);
}

/*
 * membership.loyalty_uuid_or_null(text) RETURNS uuid
 *
 * The text as a uuid when it is written 8-4-4-4-12 hexadecimal digits,
 * else NULL (as loyalty_int8_or_null(), for member_id).
 */
Datum
membership_loyalty_uuid_or_null(PG_FUNCTION_ARGS)
{
	char	   *s = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' ||
		!membership_parse_uuid(s, uuid))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(uuid);
}
