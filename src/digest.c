/*-------------------------------------------------------------------------
 *
 * digest.c
 *	  SHA-256, as used for API keys and e-mail addresses.
 *
 * Verification hashes the presented question on every call, so this uses
 * OpenSSL's low-level interface with its context on the stack: EVP frees
 * and allocates the digest's context and asks the provider for it again
 * on every initialisation, which cost a third of a verification call.
 * (pg_config.h sets OPENSSL_API_COMPAT, so these are declared without
 * deprecation warnings.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "membership.h"

void
membership_sha256(const void *data, size_t len, uint8 *digest)
{
	SHA256_CTX	ctx;

	if (SHA256_Init(&ctx) != 1 || SHA256_Update(&ctx, data, len) != 1 ||
		SHA256_Final(digest, &ctx) != 1)
		elog(ERROR, "could not compute SHA-256 hash");
}

/* A palloc'd bytea holding a copy of a SHA-256 digest. */
bytea *
membership_digest_bytea(const uint8 *digest)
{
	bytea	   *result = palloc(VARHDRSZ + MEMBERSHIP_SHA256_LEN);

	SET_VARSIZE(result, VARHDRSZ + MEMBERSHIP_SHA256_LEN);
	memcpy(VARDATA(result), digest, MEMBERSHIP_SHA256_LEN);
	return result;
}

/* A palloc'd bytea holding the SHA-256 digest of "data". */
bytea *
membership_sha256_bytea(const void *data, size_t len)
{
	uint8		digest[MEMBERSHIP_SHA256_LEN];

	membership_sha256(data, len, digest);
	return membership_digest_bytea(digest);
}
