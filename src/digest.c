/*-------------------------------------------------------------------------
 *
 * digest.c
 *	  SHA-256, as used for API keys and e-mail addresses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"

#include "membership.h"

void
membership_sha256(const void *data, size_t len, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, MEMBERSHIP_SHA256_LEN) < 0)
		elog(ERROR, "could not compute SHA-256 hash: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/* A palloc'd bytea holding the SHA-256 digest of "data". */
bytea *
membership_sha256_bytea(const void *data, size_t len)
{
	bytea	   *result = palloc(VARHDRSZ + MEMBERSHIP_SHA256_LEN);

	SET_VARSIZE(result, VARHDRSZ + MEMBERSHIP_SHA256_LEN);
	membership_sha256(data, len, (uint8 *) VARDATA(result));
	return result;
}
