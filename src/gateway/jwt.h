/*
 * JSON Web Tokens signed with HMAC-SHA256 (JWS compact serialisation, RFC
 * 7515/7519, "HS256" of RFC 7518), and the strict base64url they are
 * written in.
 *
 * Verification refuses, in this order: tokens over MLS_JWT_MAX_BYTES or
 * not made of three base64url parts; a header that is not a JSON object,
 * has duplicate keys, an "alg" other than exactly "HS256" (so "none",
 * "hs256", "HS512", RS256 with our secret as a "public key"...) or any
 * "crit" parameter; a signature that is not the 32-byte HMAC-SHA256 of
 * "header.payload" under the key (compared with CRYPTO_memcmp); claims
 * that are not a JSON object or have duplicate keys; a missing or
 * non-numeric "exp"; now >= exp + leeway; now + leeway < nbf; and, when
 * configured, an "iss" or "aud" that does not match.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_GATEWAY_JWT_H
#define MLS_GATEWAY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Longest token accepted, in bytes. */
#define MLS_JWT_MAX_BYTES 8192

/*
 * Decodes base64url (RFC 4648 section 5) without padding: only
 * [A-Za-z0-9_-], no '=', no whitespace, a length that is not 1 more than a
 * multiple of 4, and zero bits after the last whole byte (so every byte
 * string has exactly one encoding). Returns the number of bytes written to
 * out, or -1 when the input is not such base64url or out (cap bytes) is too
 * small.
 */
long mls_b64url_decode(const char *in, size_t len, unsigned char *out,
                       size_t cap);
/* Encodes len bytes as base64url without padding into out (cap bytes, a
 * NUL is added). Returns the encoded length, or -1 when out is too small. */
long mls_b64url_encode(const unsigned char *in, size_t len, char *out,
                       size_t cap);

enum mls_jwt_err {
        MLS_JWT_OK,
        MLS_JWT_MALFORMED,     /* not a JWS of JSON objects */
        MLS_JWT_BAD_ALG,       /* alg is not HS256, or crit is present */
        MLS_JWT_BAD_SIGNATURE, /* not signed with our key */
        MLS_JWT_BAD_CLAIMS,    /* exp missing, iss/aud mismatch */
        MLS_JWT_EXPIRED,       /* now >= exp + leeway */
        MLS_JWT_NOT_YET_VALID, /* now + leeway < nbf */
};

struct mls_jwt_opts {
        const unsigned char *key; /* the HMAC key */
        size_t keylen;
        int64_t now_s;        /* wall clock, seconds since the epoch */
        int64_t leeway_s;     /* clock skew allowed on exp and nbf */
        const char *audience; /* NULL: "aud" is not checked */
        const char *issuer;   /* NULL: "iss" is not checked */
};

/*
 * Verifies token[0..len). Returns MLS_JWT_OK and a new reference to the
 * claims object in *claims (the caller decrefs it), or another value with
 * *claims NULL and *why a static one-line reason that never quotes the
 * token.
 */
enum mls_jwt_err mls_jwt_verify(const char *token, size_t len,
                                const struct mls_jwt_opts *opts,
                                json_t **claims, const char **why);

/* Signs claims (a JSON object) with HS256 into a new malloc'd token, or
 * NULL when memory runs out. For tests and tools; the gateway only
 * verifies. */
char *mls_jwt_sign(const json_t *claims, const unsigned char *key,
                   size_t keylen);

#endif
