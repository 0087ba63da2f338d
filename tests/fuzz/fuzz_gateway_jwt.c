/*
 * libFuzzer target for the gateway's credential checks (src/gateway/jwt.c,
 * auth.c, tenants.c). The first byte picks what the rest is:
 *
 *   0: a token as a client would send it: checked bare, as an HTTP
 *      "Bearer" header and by the JWT verifier directly; also decoded as
 *      base64url, which must re-encode to exactly the same text (one
 *      encoding per byte string);
 *   1: a JWT header and claims (JSON text, split at the first 0xff byte)
 *      that the target signs with the gateway's key, so that the claim
 *      checks (exp, nbf, iss, aud, tenants) see inputs past the signature;
 *   2: a connection_init payload (JSON).
 *
 * Whatever the input: no crash, no leak, and a token is accepted only when
 * it is the static one or its header says exactly HS256, its signature is
 * ours and its exp is in the future (with leeway); a tenant-scoped
 * principal's tenants come from the claim, sorted and unique.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gateway/auth.h"
#include "gateway/jwt.h"

#define KEY "fuzz-key-fuzz-key-fuzz-key-fuzz-key!"
#define STATIC "fuzz-static-token-0001"
#define NOW 1800000000
#define LEEWAY 30

static mls_auth_t *plain, *strict;

static int64_t now_fn(void)
{
        return NOW;
}

static void setup(void)
{
        char err[256];

        plain = mls_auth_new(
                &(struct mls_auth_conf){
                        .tokens = STATIC,
                        .jwt_secret = KEY,
                        .leeway_s = LEEWAY,
                        .now = now_fn,
                },
                err, sizeof(err));
        strict = mls_auth_new(
                &(struct mls_auth_conf){
                        .jwt_secret = KEY,
                        .leeway_s = LEEWAY,
                        .audience = "mlstream",
                        .issuer = "idp",
                        .tenant_claim = "orgs",
                        .require_tenants = 1,
                        .now = now_fn,
                },
                err, sizeof(err));
        if (!plain || !strict)
                abort();
}

/* Checks what an accepted principal may look like. */
static void check_principal(const struct mls_principal *p,
                            enum mls_auth_result r)
{
        if (r != MLS_AUTH_OK) {
                if (p->authenticated || p->tenants || p->expires_s)
                        abort();
                return;
        }
        if (!p->authenticated)
                abort();
        if (p->tenants) {
                for (size_t i = 0; i < p->tenants->n; i++) {
                        const char *t = p->tenants->names[i];
                        if (!mls_tenant_name_ok(t, strlen(t)))
                                abort();
                        if (i && strcmp(p->tenants->names[i - 1], t) >= 0)
                                abort(); /* sorted, unique */
                        if (!mls_principal_sees(p, t, strlen(t)))
                                abort();
                }
                if (mls_principal_sees(p, NULL, 0))
                        abort();
        }
}

/* A JWT the verifier accepted must really be one: three parts, a header
 * of exactly HS256, our signature, an exp still valid. */
static void check_accepted_jwt(const char *tok, size_t len)
{
        const char *d1 = memchr(tok, '.', len), *d2;
        unsigned char buf[MLS_JWT_MAX_BYTES], mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        long n;
        json_t *h, *c, *exp;
        json_error_t e;

        if (!d1 || !(d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok))))
                abort();
        n = mls_b64url_decode(tok, (size_t)(d1 - tok), buf, sizeof(buf));
        h = n > 0 ? json_loadb((char *)buf, (size_t)n, 0, &e) : NULL;
        if (!json_is_string(json_object_get(h, "alg")) ||
            strcmp(json_string_value(json_object_get(h, "alg")), "HS256") != 0)
                abort();
        json_decref(h);
        HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)tok,
             (size_t)(d2 - tok), mac, &maclen);
        n = mls_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), buf,
                              sizeof(buf));
        if (n != 32 || memcmp(buf, mac, 32) != 0)
                abort();
        n = mls_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
        c = n > 0 ? json_loadb((char *)buf, (size_t)n, 0, &e) : NULL;
        exp = json_object_get(c, "exp");
        if (!json_is_number(exp) || json_number_value(exp) + LEEWAY <= NOW)
                abort();
        json_decref(c);
}

static void check_token(const char *tok, size_t len)
{
        struct mls_principal p;
        struct mls_jwt_opts o = {
                .key = (const unsigned char *)KEY,
                .keylen = strlen(KEY),
                .now_s = NOW,
                .leeway_s = LEEWAY,
        };
        const char *why = NULL;
        json_t *claims = NULL;
        enum mls_auth_result r;

        r = mls_auth_check_token(plain, tok, len, &p, &why);
        check_principal(&p, r);
        if (!why)
                abort();
        if (r == MLS_AUTH_OK &&
            !(len == strlen(STATIC) && memcmp(tok, STATIC, len) == 0))
                check_accepted_jwt(tok, len);
        mls_principal_clear(&p);
        r = mls_auth_check_token(strict, tok, len, &p, NULL);
        check_principal(&p, r);
        if (r == MLS_AUTH_OK) {
                if (!p.tenants)
                        abort(); /* require_tenants */
                check_accepted_jwt(tok, len);
        }
        mls_principal_clear(&p);
        if (mls_jwt_verify(tok, len, &o, &claims, &why) == MLS_JWT_OK) {
                if (!json_is_object(claims))
                        abort();
                check_accepted_jwt(tok, len);
        } else if (claims) {
                abort();
        }
        json_decref(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s;

        if (!plain)
                setup();
        if (size < 1 || size > 3 * MLS_JWT_MAX_BYTES)
                return 0;
        /* an exact-size, NUL-terminated copy, so ASan sees any overread */
        s = malloc(size);
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        switch (data[0] % 3) {
        case 0: {
                unsigned char out[3 * MLS_JWT_MAX_BYTES];
                char back[4 * MLS_JWT_MAX_BYTES + 8];
                struct mls_principal p;
                char *hdr = malloc(size + 7);
                long n;

                check_token(s, size - 1);
                memcpy(hdr, "Bearer ", 7);
                memcpy(hdr + 7, s, size);
                check_principal(&p,
                                mls_auth_check_header(plain, hdr, &p, NULL));
                mls_principal_clear(&p);
                free(hdr);
                n = mls_b64url_decode(s, size - 1, out, sizeof(out));
                if (n >= 0 &&
                    (mls_b64url_encode(out, (size_t)n, back, sizeof(back)) !=
                             (long)(size - 1) ||
                     memcmp(back, s, size - 1) != 0))
                        abort();
                break;
        }
        case 1: {
                char *sep = memchr(s, 0xff, size - 1), *tok;
                size_t hl, cl, cap;
                unsigned char mac[EVP_MAX_MD_SIZE];
                unsigned maclen = 0;
                long k;

                if (!sep)
                        break;
                hl = (size_t)(sep - s);
                cl = size - 1 - hl - 1;
                cap = (hl + cl) / 3 * 4 + 64;
                tok = malloc(cap);
                k = mls_b64url_encode((unsigned char *)s, hl, tok, cap);
                tok[k++] = '.';
                k += mls_b64url_encode((unsigned char *)sep + 1, cl, tok + k,
                                       cap - (size_t)k);
                HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (unsigned char *)tok,
                     (size_t)k, mac, &maclen);
                tok[k++] = '.';
                k += mls_b64url_encode(mac, maclen, tok + k, cap - (size_t)k);
                check_token(tok, (size_t)k);
                free(tok);
                break;
        }
        default: {
                json_error_t e;
                json_t *payload = json_loadb(s, size - 1, 0, &e);
                struct mls_principal p;

                check_principal(&p,
                                mls_auth_check_init(plain, payload, &p, NULL));
                mls_principal_clear(&p);
                json_decref(payload);
                break;
        }
        }
        free(s);
        return 0;
}
