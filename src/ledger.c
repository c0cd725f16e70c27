/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The loyalty ledger's per-event check, in C.
 *
 * earn_points() checks its one event and earn_points_batch() every event
 * of a batch with the same function, membership.loyalty_event_problem():
 * it returns what is wrong with an event, or NULL.  It runs once per event
 * of every batch, so it is C: a PL/pgSQL or SQL version costs a function
 * call with its own search_path per event, more than the check itself.
 * The rest of the ledger is SQL (src/sql/0.2/2xx_ledger_*.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

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
 * membership.loyalty_event_problem(amount_cents bigint, source_type text,
 *     source_ref text, category text, occurred_at timestamptz) RETURNS text
 *
 * What is wrong with an event to earn points for, as an error message in
 * PostgreSQL's style, or NULL when nothing is.  The checks, in order: the
 * required values are there; the amount is 0 to 100,000,000,000 cents and
 * positive for a purchase; the source type is an identifier; the source
 * reference is 1 to 200 characters; a category is 1 to 100; occurred_at is
 * not in the future (5 minutes' clock skew allowed) nor more than 10 years
 * ago.
 */
Datum
membership_loyalty_event_problem(PG_FUNCTION_ARGS)
{
	int64		amount;
	text	   *source_type;
	text	   *source_ref;
	const char *type;
	int			type_len;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_TEXT_P(cstring_to_text("amount_cents, source_type and source_ref must not be null"));
	amount = PG_GETARG_INT64(0);
	source_type = PG_GETARG_TEXT_PP(1);
	source_ref = PG_GETARG_TEXT_PP(2);
	type = VARDATA_ANY(source_type);
	type_len = VARSIZE_ANY_EXHDR(source_type);

	if (amount < 0)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("amount_cents must not be negative, not " INT64_FORMAT,
												  amount)));
	if (amount > LEDGER_MAX_AMOUNT_CENTS)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("amount_cents " INT64_FORMAT " is too large", amount)));
	if (amount == 0 && !is_action(type, type_len))
		PG_RETURN_TEXT_P(cstring_to_text("amount_cents must be positive for a purchase"));
	if (!is_source_type(type, type_len))
	{
		int			clip = pg_mbcharcliplen(type, type_len, 100);

		PG_RETURN_TEXT_P(cstring_to_text(psprintf("invalid source_type \"%.*s\"", clip, type)));
	}
	if (VARSIZE_ANY_EXHDR(source_ref) == 0 || text_chars(source_ref) > 200)
		PG_RETURN_TEXT_P(cstring_to_text("source_ref must be 1 to 200 characters"));
	if (!PG_ARGISNULL(3))
	{
		text	   *category = PG_GETARG_TEXT_PP(3);

		if (VARSIZE_ANY_EXHDR(category) == 0 || text_chars(category) > 100)
			PG_RETURN_TEXT_P(cstring_to_text("category must be 1 to 100 characters"));
	}
	if (!PG_ARGISNULL(4))
	{
		TimestampTz occurred_at = PG_GETARG_TIMESTAMPTZ(4);

		if (TIMESTAMP_NOT_FINITE(occurred_at) || occurred_at > now_plus(0, 5 * USECS_PER_MINUTE))
			PG_RETURN_TEXT_P(cstring_to_text("occurred_at is in the future"));
		if (occurred_at < now_plus(-120, 0))
			PG_RETURN_TEXT_P(cstring_to_text("occurred_at is more than 10 years ago"));
	}
	PG_RETURN_NULL();
}
