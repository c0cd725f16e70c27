/*-------------------------------------------------------------------------
 *
 * digest.c
 *	  SHA-256, as used for API keys and e-mail addresses.
 *
 * Verification hashes the presented e-mail address on every call, so this
 * calls OpenSSL directly with a digest fetched once per backend and a
 * reused context, which costs a fraction of a context created (and the
 * digest looked up again) per hash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "membership.h"

static EVP_MD *sha256_md = NULL;
static EVP_MD_CTX *sha256_ctx = NULL;

void
membership_sha256(const void *data, size_t len, uint8 *digest)
{
	unsigned int outlen;

	if (sha256_ctx == NULL)
	{
		sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
		sha256_ctx = EVP_MD_CTX_new();
		if (sha256_md == NULL || sha256_ctx == NULL)
			elog(ERROR, "could not initialise SHA-256");
	}
	if (EVP_DigestInit_ex(sha256_ctx, sha256_md, NULL) != 1 ||
		EVP_DigestUpdate(sha256_ctx, data, len) != 1 ||
		EVP_DigestFinal_ex(sha256_ctx, digest, &outlen) != 1 ||
		outlen != MEMBERSHIP_SHA256_LEN)
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
