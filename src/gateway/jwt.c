#include "gateway/jwt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIG_BYTES 32 /* HMAC-SHA256 */

static const char b64url_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of a base64url character, or -1. */
static int b64url_val(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

long mls_b64url_decode(const char *in, size_t len, unsigned char *out,
                       size_t cap)
{
        size_t full = len / 4, rest = len % 4, n = 0;
        size_t need = full * 3 + (rest ? rest - 1 : 0);
        int v[4];

        if (rest == 1 || need > cap)
                return -1;
        for (size_t i = 0; i < full; i++) {
                for (int k = 0; k < 4; k++)
                        if ((v[k] = b64url_val((unsigned char)in[4 * i + k])) <
                            0)
                                return -1;
                out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
                out[n++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
                out[n++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
        }
        if (rest) {
                const char *p = in + 4 * full;
                for (size_t k = 0; k < rest; k++)
                        if ((v[k] = b64url_val((unsigned char)p[k])) < 0)
                                return -1;
                out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
                if (rest == 2) {
                        /* 12 bits for one byte: the last 4 must be 0 */
                        if (v[1] & 15)
                                return -1;
                } else {
                        out[n++] =
                                (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
                        /* 18 bits for two bytes: the last 2 must be 0 */
                        if (v[2] & 3)
                                return -1;
                }
        }
        return (long)n;
}

long mls_b64url_encode(const unsigned char *in, size_t len, char *out,
                       size_t cap)
{
        size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0), n = 0, i;

        if (need + 1 > cap)
                return -1;
        for (i = 0; i + 3 <= len; i += 3) {
                unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
                             in[i + 2];
                out[n++] = b64url_chars[v >> 18];
                out[n++] = b64url_chars[v >> 12 & 63];
                out[n++] = b64url_chars[v >> 6 & 63];
                out[n++] = b64url_chars[v & 63];
        }
        if (len - i == 1) {
                out[n++] = b64url_chars[in[i] >> 2];
                out[n++] = b64url_chars[(in[i] & 3) << 4];
        } else if (len - i == 2) {
                unsigned v = (unsigned)in[i] << 8 | in[i + 1];
                out[n++] = b64url_chars[v >> 10];
                out[n++] = b64url_chars[v >> 4 & 63];
                out[n++] = b64url_chars[(v & 15) << 2];
        }
        out[n] = '\0';
        return (long)n;
}

/* Decodes one base64url part holding a JSON object. Returns a new
 * reference or NULL. */
static json_t *decode_object(const char *p, size_t len)
{
        unsigned char buf[MLS_JWT_MAX_BYTES];
        long n = mls_b64url_decode(p, len, buf, sizeof(buf));
        json_error_t jerr;
        json_t *o;

        if (n <= 0)
                return NULL;
        /* duplicate keys would let two readers of one token disagree on
         * its alg or exp */
        o = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES,
                       &jerr);
        if (o && !json_is_object(o)) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* A NumericDate claim: absent (0), a finite number (1, value in *v), or
 * anything else (-1). */
static int numeric_date(json_t *claims, const char *name, double *v)
{
        json_t *j = json_object_get(claims, name);

        if (!j)
                return 0;
        if (!json_is_number(j))
                return -1;
        *v = json_number_value(j);
        return isfinite(*v) ? 1 : -1;
}

static int audience_ok(json_t *aud, const char *want)
{
        size_t i;
        json_t *a;

        if (json_is_string(aud))
                return strcmp(json_string_value(aud), want) == 0;
        if (!json_is_array(aud))
                return 0;
        json_array_foreach(aud, i, a)
        {
                if (json_is_string(a) &&
                    strcmp(json_string_value(a), want) == 0)
                        return 1;
        }
        return 0;
}

enum mls_jwt_err mls_jwt_verify(const char *token, size_t len,
                                const struct mls_jwt_opts *o, json_t **claims,
                                const char **why)
{
        const char *dot1, *dot2, *alg;
        unsigned char sig[SIG_BYTES + 3], mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        json_t *header, *c;
        double exp, nbf, now = (double)o->now_s, leeway = (double)o->leeway_s;
        int rc;

        *claims = NULL;
        if (!token || len == 0 || len > MLS_JWT_MAX_BYTES) {
                *why = "not a JWT (empty or too long)";
                return MLS_JWT_MALFORMED;
        }
        dot1 = memchr(token, '.', len);
        dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token))
                    : NULL;
        if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) ||
            dot1 == token || dot2 == dot1 + 1 || dot2 + 1 == token + len) {
                *why = "not a JWT (expected three non-empty parts)";
                return MLS_JWT_MALFORMED;
        }
        header = decode_object(token, (size_t)(dot1 - token));
        if (!header) {
                *why = "the JWT header is not base64url of a JSON object";
                return MLS_JWT_MALFORMED;
        }
        alg = json_string_value(json_object_get(header, "alg"));
        rc = alg && strcmp(alg, "HS256") == 0 &&
             !json_object_get(header, "crit");
        json_decref(header);
        if (!rc) {
                *why = "the JWT is not signed with alg HS256 (or has crit)";
                return MLS_JWT_BAD_ALG;
        }
        if (mls_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig,
                              sizeof(sig)) != SIG_BYTES ||
            !HMAC(EVP_sha256(), o->key, (int)o->keylen,
                  (const unsigned char *)token, (size_t)(dot2 - token), mac,
                  &maclen) ||
            maclen != SIG_BYTES || CRYPTO_memcmp(sig, mac, SIG_BYTES) != 0) {
                *why = "the JWT signature does not verify";
                return MLS_JWT_BAD_SIGNATURE;
        }
        c = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
        if (!c) {
                *why = "the JWT claims are not base64url of a JSON object";
                return MLS_JWT_MALFORMED;
        }
        if (numeric_date(c, "exp", &exp) != 1) {
                *why = "the JWT has no numeric exp claim";
                rc = MLS_JWT_BAD_CLAIMS;
                goto fail;
        }
        if (now >= exp + leeway) {
                *why = "the JWT has expired";
                rc = MLS_JWT_EXPIRED;
                goto fail;
        }
        switch (numeric_date(c, "nbf", &nbf)) {
        case -1:
                *why = "the JWT's nbf claim is not a number";
                rc = MLS_JWT_BAD_CLAIMS;
                goto fail;
        case 1:
                if (now + leeway < nbf) {
                        *why = "the JWT is not valid yet (nbf)";
                        rc = MLS_JWT_NOT_YET_VALID;
                        goto fail;
                }
                break;
        default:
                break;
        }
        if (o->issuer &&
            (!json_is_string(json_object_get(c, "iss")) ||
             strcmp(json_string_value(json_object_get(c, "iss")), o->issuer))) {
                *why = "the JWT's iss claim is not the configured issuer";
                rc = MLS_JWT_BAD_CLAIMS;
                goto fail;
        }
        if (o->audience &&
            !audience_ok(json_object_get(c, "aud"), o->audience)) {
                *why = "the JWT's aud claim does not name the configured "
                       "audience";
                rc = MLS_JWT_BAD_CLAIMS;
                goto fail;
        }
        *claims = c;
        *why = "ok";
        return MLS_JWT_OK;
fail:
        json_decref(c);
        return (enum mls_jwt_err)rc;
}

char *mls_jwt_sign(const json_t *claims, const unsigned char *key,
                   size_t keylen)
{
        static const char head[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
        char *body = json_dumps(claims, JSON_COMPACT), *out = NULL;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        size_t blen, cap, n;
        long k;

        if (!body)
                return NULL;
        blen = strlen(body);
        cap = sizeof(head) + 1 + blen / 3 * 4 + 8 + 1 + 48;
        out = malloc(cap);
        if (!out)
                goto done;
        n = sizeof(head) - 1;
        memcpy(out, head, n);
        out[n++] = '.';
        k = mls_b64url_encode((const unsigned char *)body, blen, out + n,
                              cap - n);
        if (k < 0)
                goto fail;
        n += (size_t)k;
        if (!HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)out, n, mac,
                  &maclen))
                goto fail;
        out[n++] = '.';
        if (mls_b64url_encode(mac, maclen, out + n, cap - n) < 0)
                goto fail;
        goto done;
fail:
        free(out);
        out = NULL;
done:
        free(body);
        return out;
}
