/*-------------------------------------------------------------------------
 *
 * spiplan.c
 *	  Saved SPI plans for the extension's C code.
 *
 * The background workers and the nightly scoring run the same few
 * statements over and over; each is planned once per process and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "membership.h"

/* Prepare a statement and keep its plan for the life of the process. */
SPIPlanPtr
membership_prepare_kept(const char *query, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", query, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}
