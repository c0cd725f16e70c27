/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  JSON Web Tokens for the push services, signed with OpenSSL 3 EVP.
 *
 * RS256 (RSA PKCS#1 v1.5 with SHA-256) signs the FCM service account's
 * OAuth2 assertion; ES256 (ECDSA P-256 with SHA-256) signs the APNs
 * provider token.  OpenSSL returns an ECDSA signature DER-encoded; a JWT
 * carries it as the raw 64 bytes R || S, each left-padded to 32 bytes.
 * Everything is base64url without padding (RFC 7515).
 *
 * Signing never raises an error: a malformed key is one organisation's
 * problem, so the caller gets NULL and a message to record against that
 * organisation's notifications.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "push.h"

/* base64url of "data", without padding, palloc'd. */
char *
jwt_base64url(const unsigned char *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];

		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = alphabet[(v >> 6) & 63];
		*p++ = alphabet[v & 63];
	}
	if (i < len)
	{
		uint32		v = data[i] << 16;

		if (i + 1 < len)
			v |= data[i + 1] << 8;
		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		if (i + 1 < len)
			*p++ = alphabet[(v >> 6) & 63];
	}
	*p = '\0';
	return out;
}

/* "s" as a JSON string literal, palloc'd. */
char *
json_quote(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

/* The last OpenSSL error (or "what") into "error". */
static void
openssl_error(const char *what, char *error, size_t error_len)
{
	unsigned long code = ERR_get_error();
	char		reason[200];

	if (code != 0)
	{
		ERR_error_string_n(code, reason, sizeof(reason));
		snprintf(error, error_len, "%s: %s", what, reason);
	}
	else
		strlcpy(error, what, error_len);
	ERR_clear_error();
}

/*
 * Convert a DER ECDSA signature to the 64-byte R || S form of JWS ES256.
 * Returns false if it is not a P-256 signature.
 */
static bool
ecdsa_der_to_raw(const unsigned char *der, size_t der_len, unsigned char *raw)
{
	const unsigned char *p = der;
	ECDSA_SIG  *sig = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
	const BIGNUM *r;
	const BIGNUM *s;
	bool		ok;

	if (sig == NULL)
		return false;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok;
}

/*
 * A compact JWT of "header_json" and "claims_json" signed with the PEM
 * private key "pem_key" by "alg" ("RS256" or "ES256"), palloc'd; NULL with
 * a message in "error" if the key is unusable for that algorithm.
 */
char *
jwt_sign(const char *alg, const char *pem_key, const char *header_json, const char *claims_json,
		 char *error, size_t error_len)
{
	bool		es256 = strcmp(alg, "ES256") == 0;
	BIO		   *bio;
	EVP_PKEY   *key;
	EVP_MD_CTX *ctx = NULL;
	StringInfoData input;
	unsigned char *sig = NULL;
	size_t		sig_len = 0;
	unsigned char raw[64];
	char	   *result = NULL;

	Assert(es256 || strcmp(alg, "RS256") == 0);
	bio = BIO_new_mem_buf(pem_key, -1);
	if (bio == NULL)
	{
		openssl_error("could not read the private key", error, error_len);
		return NULL;
	}
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL)
	{
		openssl_error("could not read the private key (PEM)", error, error_len);
		return NULL;
	}
	if (es256 ? !(EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) == 256)
		: !EVP_PKEY_is_a(key, "RSA"))
	{
		snprintf(error, error_len, "the private key is not %s", es256 ? "an EC P-256 key" : "an RSA key");
		EVP_PKEY_free(key);
		return NULL;
	}

	initStringInfo(&input);
	appendStringInfo(&input, "%s.%s",
					 jwt_base64url((const unsigned char *) header_json, strlen(header_json)),
					 jwt_base64url((const unsigned char *) claims_json, strlen(claims_json)));

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL
		|| EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1
		|| EVP_DigestSign(ctx, NULL, &sig_len, (unsigned char *) input.data, input.len) != 1)
	{
		openssl_error("could not sign the token", error, error_len);
		goto done;
	}
	sig = palloc(sig_len);
	if (EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *) input.data, input.len) != 1)
	{
		openssl_error("could not sign the token", error, error_len);
		goto done;
	}
	if (es256)
	{
		if (!ecdsa_der_to_raw(sig, sig_len, raw))
		{
			strlcpy(error, "could not convert the ECDSA signature", error_len);
			goto done;
		}
		appendStringInfo(&input, ".%s", jwt_base64url(raw, sizeof(raw)));
	}
	else
		appendStringInfo(&input, ".%s", jwt_base64url(sig, sig_len));
	result = input.data;

done:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return result;
}
