/*-------------------------------------------------------------------------
 *
 * email.c
 *	  Normalising, validating and hashing e-mail addresses.
 *
 * Members are matched by the SHA-256 hash of their normalised address, so
 * member sync (SQL) and verification (C) must normalise identically: both
 * call the code in this file.  Normalising trims white space at both ends
 * and lower-cases ASCII letters only, which keeps the result independent of
 * collation and locale and so truly immutable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "membership.h"

#define EMAIL_MAX_LEN		254
#define EMAIL_LOCAL_MAX_LEN	64

PG_FUNCTION_INFO_V1(membership_normalize_email);

PG_FUNCTION_INFO_V1(membership_is_valid_email);
PG_FUNCTION_INFO_V1(membership_email_hash);

/* characters that never appear in an address we accept, besides "@" */
static bool
is_forbidden(unsigned char c)
{
	switch (c)
	{
		case '<':
		case '>':
		case '(':
		case ')':
		case '[':
		case ']':
		case '\\':
		case ',':
		case ';':
		case ':':
		case '"':
		case 0x7f:
			return true;
		default:
			return c <= ' ';
	}
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A palloc'd, NUL-terminated normalised copy of "raw". */
char *
email_normalize(const char *raw, size_t len, size_t *outlen)
{
	size_t		start = 0;
	size_t		end = len;
	char	   *result;

	while (start < end && is_space(raw[start]))
		start++;
	while (end > start && is_space(raw[end - 1]))
		end--;

	result = palloc(end - start + 1);
	for (size_t i = start; i < end; i++)
		result[i - start] = pg_ascii_tolower((unsigned char) raw[i]);
	result[end - start] = '\0';
	*outlen = end - start;
	return result;
}

/*
 * A deliberately plain check of a normalised address: one "@", a local part
 * of 1 to 64 characters, a domain with at least one dot that neither starts
 * nor ends with a dot or a hyphen and has no empty label, nothing that needs
 * quoting, at most 254 characters in all.
 */
bool
email_is_valid(const char *email, size_t len)
{
	const char *at = NULL;
	const char *domain;
	size_t		domainlen;
	bool		dot = false;

	if (len < 3 || len > EMAIL_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) email[i];

		if (is_forbidden(c))
			return false;
		if (c == '@')
		{
			if (at != NULL)
				return false;
			at = email + i;
		}
	}
	if (at == NULL || at == email || at - email > EMAIL_LOCAL_MAX_LEN)
		return false;

	domain = at + 1;
	domainlen = len - (domain - email);
	if (domainlen < 3 || domain[0] == '.' || domain[0] == '-' ||
		domain[domainlen - 1] == '.' || domain[domainlen - 1] == '-')
		return false;
	for (size_t i = 0; i < domainlen; i++)
	{
		if (domain[i] == '.')
		{
			if (domain[i + 1] == '.')
				return false;
			dot = true;
		}
	}
	return dot;
}

/* membership.normalize_email(text): trimmed, ASCII lower-cased. */
Datum
membership_normalize_email(PG_FUNCTION_ARGS)
{
	text	   *raw = PG_GETARG_TEXT_PP(0);
	size_t		len;
	char	   *email = email_normalize(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &len);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(email, len));
}

/* membership.is_valid_email(text): is the normalised address acceptable? */
Datum
membership_is_valid_email(PG_FUNCTION_ARGS)
{
	text	   *raw = PG_GETARG_TEXT_PP(0);
	size_t		len;
	char	   *email = email_normalize(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &len);

	PG_RETURN_BOOL(email_is_valid(email, len));
}

/* membership.email_hash(text): SHA-256 of the normalised address. */
Datum
membership_email_hash(PG_FUNCTION_ARGS)
{
	text	   *raw = PG_GETARG_TEXT_PP(0);
	size_t		len;
	char	   *email = email_normalize(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &len);

	PG_RETURN_BYTEA_P(membership_sha256_bytea(email, len));
}
