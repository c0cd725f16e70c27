/*-------------------------------------------------------------------------
 *
 * jsonfield.c
 *	  Read a few top-level string fields out of a JSON object.
 *
 * The identity code reads "x-api-key" out of request.headers and "role",
 * "org_id" and "member_id" out of request.jwt.claims on every call that
 * carries no explicit key.  Building a jsonb value for that would be wasted
 * work, and a malformed document must be reported as missing credentials
 * rather than as a JSON syntax error, so this uses the JSON parser's
 * non-throwing entry point with a tiny semantic action set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "membership.h"

typedef struct FieldState
{
	int			depth;
	int			nfields;
	const char *const *names;
	char	  **values;
	int			current;		/* index of the field being read, or -1 */
} FieldState;

static void
field_object_start(void *arg)
{
	((FieldState *) arg)->depth++;
}

static void
field_object_end(void *arg)
{
	((FieldState *) arg)->depth--;
}

static void
field_array_start(void *arg)
{
	((FieldState *) arg)->depth++;
}

static void
field_array_end(void *arg)
{
	((FieldState *) arg)->depth--;
}

static void
field_start(void *arg, char *fname, bool isnull)
{
	FieldState *state = (FieldState *) arg;

	state->current = -1;
	if (state->depth != 1)
		return;
	for (int i = 0; i < state->nfields; i++)
	{
		if (strcmp(fname, state->names[i]) == 0)
		{
			state->current = i;
			break;
		}
	}
}

static void
field_scalar(void *arg, char *token, JsonTokenType tokentype)
{
	FieldState *state = (FieldState *) arg;

	if (state->depth == 1 && state->current >= 0 &&
		(tokentype == JSON_TOKEN_STRING || tokentype == JSON_TOKEN_NUMBER))
		state->values[state->current] = pstrdup(token);
	state->current = -1;
}

/*
 * Fill values[i] with the string (or number, as text) that the top-level
 * object of "json" holds under names[i], or NULL when it holds none.  Returns
 * false, with every value NULL, when "json" is not a well-formed object.
 */
bool
json_top_level_strings(const char *json, int nfields,
					   const char *const *names, char **values)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	FieldState	state;
	size_t		len = strlen(json);

	for (int i = 0; i < nfields; i++)
		values[i] = NULL;

	/* skip leading white space to check for an object cheaply */
	while (*json == ' ' || *json == '\t' || *json == '\n' || *json == '\r')
	{
		json++;
		len--;
	}
	if (*json != '{')
		return false;

	memset(&state, 0, sizeof(state));
	state.nfields = nfields;
	state.names = names;
	state.values = values;
	state.current = -1;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.object_start = field_object_start;
	sem.object_end = field_object_end;
	sem.array_start = field_array_start;
	sem.array_end = field_array_end;
	sem.object_field_start = field_start;
	sem.scalar = field_scalar;

	lex = makeJsonLexContextCstringLen(unconstify(char *, json), len,
									   GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
	{
		for (int i = 0; i < nfields; i++)
			values[i] = NULL;
		return false;
	}
	return true;
}
