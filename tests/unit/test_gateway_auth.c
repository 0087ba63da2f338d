/*
 * Access control (src/gateway/jwt.c, auth.c, tenants.c) and what it feeds:
 * strict base64url, HS256 JWT verification against malformed, forged,
 * expired and wrongly-signed tokens, static token lists and files,
 * credentials in headers and connection_init payloads, tenant sets, the
 * hub's tenant slices (one render, the right receivers), the monitor's
 * per-tenant status, and the WebSocket sessions' upgrade credentials and
 * expiry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gateway/auth.h"
#include "gateway/hub.h"
#include "gateway/jwt.h"
#include "gateway/monitor.h"
#include "gateway/payload.h"
#include "gateway/tenants.h"
#include "gateway/wsproto.h"
#include "test.h"

#define KEY "0123456789abcdef0123456789abcdef" /* 32 bytes */
#define NOW 1800000000

static int64_t fake_now = NOW;

static int64_t now_fn(void)
{
        return fake_now;
}

/* A token from raw header and claims text (so that tests can write what a
 * real signer would not), signed with key; "" for sig_override keeps the
 * real signature. Returns a malloc'd string. */
static char *raw_jwt(const char *header, const char *claims, const char *key,
                     const char *sig_override)
{
        size_t cap = 4 * (strlen(header) + strlen(claims)) + 256;
        char *out = malloc(cap);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        long n, k;

        n = mls_b64url_encode((const unsigned char *)header, strlen(header),
                              out, cap);
        out[n++] = '.';
        k = mls_b64url_encode((const unsigned char *)claims, strlen(claims),
                              out + n, cap - (size_t)n);
        n += k;
        HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)out,
             (size_t)n, mac, &maclen);
        out[n++] = '.';
        if (sig_override && sig_override[0])
                snprintf(out + n, cap - (size_t)n, "%s", sig_override);
        else
                mls_b64url_encode(mac, maclen, out + n, cap - (size_t)n);
        return out;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static char *jwt(const char *claims)
{
        return raw_jwt(HS256, claims, KEY, NULL);
}

static mls_auth_t *jwt_auth(int require_tenants)
{
        char err[256];

        return mls_auth_new(
                &(struct mls_auth_conf){
                        .jwt_secret = KEY,
                        .leeway_s = 30,
                        .require_tenants = require_tenants,
                        .now = now_fn,
                },
                err, sizeof(err));
}

static enum mls_auth_result check(const mls_auth_t *a, const char *tok)
{
        struct mls_principal p;
        const char *why = NULL;
        enum mls_auth_result r =
                mls_auth_check_token(a, tok, strlen(tok), &p, &why);

        if (!why || (r == MLS_AUTH_OK) != (p.authenticated == 1))
                return (enum mls_auth_result)99;
        mls_principal_clear(&p);
        return r;
}

/* --- base64url ----------------------------------------------------------- */

static long dec(const char *s, unsigned char *out, size_t cap)
{
        return mls_b64url_decode(s, strlen(s), out, cap);
}

MLS_TEST(gateway_auth_b64url_vectors)
{
        /* RFC 4648 section 10, without padding */
        static const char *const plain[] = {"",     "f",     "fo",    "foo",
                                            "foob", "fooba", "foobar"};
        static const char *const enc[] = {
                "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
        unsigned char out[64];
        char txt[64];

        for (int i = 0; i < 7; i++) {
                long n = dec(enc[i], out, sizeof(out));
                CHECK_INT_EQ(n, strlen(plain[i]));
                CHECK(memcmp(out, plain[i], (size_t)n) == 0);
                CHECK_INT_EQ(mls_b64url_encode((const unsigned char *)plain[i],
                                               strlen(plain[i]), txt,
                                               sizeof(txt)),
                             strlen(enc[i]));
                CHECK_STR_EQ(txt, enc[i]);
        }
        /* the URL-safe alphabet: 0xfb 0xff is "-_8" */
        CHECK_INT_EQ(dec("-_8", out, sizeof(out)), 2);
        CHECK_INT_EQ(out[0], 0xfb);
        CHECK_INT_EQ(out[1], 0xff);
}

MLS_TEST(gateway_auth_b64url_strict)
{
        static const char *const bad[] = {
                "Zg==",         /* padding */
                "Zm9v=",        /* padding */
                "+/8",          /* base64, not base64url */
                "Zm 9v",        /* space */
                "Zm9v\n",  "Z", /* 6 bits make no byte */
                "Zm9vY",        /* 4n+1 */
                "Zh",           /* trailing bits set: not canonical */
                "Zm9",          /* trailing bits set */
                "Zm\x80v", "Zm.v",
        };
        unsigned char out[16];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK_INT_EQ(dec(bad[i], out, sizeof(out)), -1);
        /* an embedded NUL is not an alphabet character */
        CHECK_INT_EQ(mls_b64url_decode("Zm\0v", 4, out, sizeof(out)), -1);
        /* the output cap is respected */
        CHECK_INT_EQ(dec("Zm9vYmFy", out, 5), -1);
        CHECK_INT_EQ(dec("Zm9vYmFy", out, 6), 6);
        {
                char small[4];
                CHECK_INT_EQ(mls_b64url_encode((const unsigned char *)"foo", 3,
                                               small, sizeof(small)),
                             -1);
        }
}

MLS_TEST(gateway_auth_b64url_roundtrip)
{
        unsigned char in[97], out[97];
        char txt[160];

        for (size_t len = 0; len <= sizeof(in); len++) {
                long n;
                for (size_t i = 0; i < len; i++)
                        in[i] = (unsigned char)(i * 37 + len * 11);
                n = mls_b64url_encode(in, len, txt, sizeof(txt));
                CHECK(n >= 0);
                CHECK_INT_EQ(
                        mls_b64url_decode(txt, (size_t)n, out, sizeof(out)),
                        len);
                CHECK(memcmp(in, out, len) == 0);
        }
}

/* --- JWT ----------------------------------------------------------------- */

static enum mls_jwt_err verify(const char *tok, const char *aud,
                               const char *iss)
{
        struct mls_jwt_opts o = {
                .key = (const unsigned char *)KEY,
                .keylen = strlen(KEY),
                .now_s = fake_now,
                .leeway_s = 30,
                .audience = aud,
                .issuer = iss,
        };
        json_t *claims = (json_t *)1;
        const char *why = NULL;
        enum mls_jwt_err e =
                mls_jwt_verify(tok, strlen(tok), &o, &claims, &why);

        if (!why || (*tok && strstr(why, tok)) ||
            (e == MLS_JWT_OK) != (claims != NULL))
                return (enum mls_jwt_err)99;
        json_decref(claims);
        return e;
}

static enum mls_jwt_err verify_raw(const char *header, const char *claims,
                                   const char *key, const char *sig)
{
        char *t = raw_jwt(header, claims, key, sig);
        enum mls_jwt_err e = verify(t, NULL, NULL);

        free(t);
        return e;
}

#define EXP_OK "{\"exp\":1800000100}"

MLS_TEST(gateway_auth_jwt_good)
{
        json_t *c = json_pack("{s:I,s:s}", "exp", (json_int_t)NOW + 60, "sub",
                              "alice");
        char *t = mls_jwt_sign(c, (const unsigned char *)KEY, strlen(KEY));

        CHECK(t);
        CHECK_INT_EQ(verify(t, NULL, NULL), MLS_JWT_OK);
        free(t);
        json_decref(c);
        CHECK_INT_EQ(verify_raw(HS256, EXP_OK, KEY, NULL), MLS_JWT_OK);
        /* typ is not required; a fractional exp is a NumericDate too */
        CHECK_INT_EQ(verify_raw("{\"alg\":\"HS256\"}", "{\"exp\":1800000000.5}",
                                KEY, NULL),
                     MLS_JWT_OK);
}

MLS_TEST(gateway_auth_jwt_algorithms)
{
        static const char *const headers[] = {
                "{\"alg\":\"none\"}",
                "{\"alg\":\"None\",\"typ\":\"JWT\"}",
                "{\"alg\":\"hs256\"}",
                "{\"alg\":\"HS384\"}",
                "{\"alg\":\"HS512\"}",
                "{\"alg\":\"RS256\"}",
                "{\"alg\":\"ES256\"}",
                "{\"alg\":\"HS256 \"}",
                "{\"alg\":[\"HS256\"]}",
                "{\"alg\":null}",
                "{\"typ\":\"JWT\"}",
                "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}",
        };

        for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
                CHECK_INT_EQ(verify_raw(headers[i], EXP_OK, KEY, NULL),
                             MLS_JWT_BAD_ALG);
        /* alg "none" with an empty signature: not even three parts */
        {
                char *t = raw_jwt("{\"alg\":\"none\"}", EXP_OK, KEY, NULL);
                *strrchr(t, '.') = '\0';
                strcat(t, ".");
                CHECK_INT_EQ(verify(t, NULL, NULL), MLS_JWT_MALFORMED);
                free(t);
        }
        /* a duplicate alg cannot smuggle "none" past a lenient reader */
        CHECK_INT_EQ(verify_raw("{\"alg\":\"none\",\"alg\":\"HS256\"}", EXP_OK,
                                KEY, NULL),
                     MLS_JWT_MALFORMED);
}

MLS_TEST(gateway_auth_jwt_signatures)
{
        char *t = jwt(EXP_OK), *dot;
        size_t n = strlen(t);

        /* the wrong key */
        CHECK_INT_EQ(verify_raw(HS256, EXP_OK,
                                "another key, 32 bytes long......", NULL),
                     MLS_JWT_BAD_SIGNATURE);
        /* a flipped character in the signature, the claims, the header */
        for (size_t i = 0; i < n; i++) {
                char *u = strdup(t);
                if (u[i] == '.') {
                        free(u);
                        continue;
                }
                u[i] = u[i] == 'A' ? 'B' : 'A';
                CHECK(verify(u, NULL, NULL) != MLS_JWT_OK);
                free(u);
        }
        /* a truncated signature (30 bytes), a longer one (34) */
        dot = strrchr(t, '.');
        {
                char *u = strdup(t);
                u[dot - t + 1 + 40] = '\0';
                CHECK_INT_EQ(verify(u, NULL, NULL), MLS_JWT_BAD_SIGNATURE);
                free(u);
        }
        CHECK_INT_EQ(
                verify_raw(HS256, EXP_OK, KEY,
                           "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                MLS_JWT_BAD_SIGNATURE);
        /* padding on the signature */
        {
                char *u = malloc(n + 3);
                memcpy(u, t, n);
                memcpy(u + n, "=", 2);
                CHECK_INT_EQ(verify(u, NULL, NULL), MLS_JWT_BAD_SIGNATURE);
                free(u);
        }
        free(t);
}

MLS_TEST(gateway_auth_jwt_malformed)
{
        static const char *const bad[] = {
                "",
                "abc",
                "a.b",
                "a.b.c.d",
                "..",
                ".eyJleHAiOjF9.sig",
                "eyJhbGciOiJIUzI1NiJ9..sig",
                "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.",
                "eyJhbGciOiJIUzI1NiJ9 .eyJleHAiOjF9.c2ln",
                "e30.e30.e30",
                "W10.e30.e30",    /* header [] */
                "bnVsbA.e30.e30", /* header null */
                "!!!.e30.e30",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                enum mls_jwt_err e = verify(bad[i], NULL, NULL);
                CHECK(e == MLS_JWT_MALFORMED || e == MLS_JWT_BAD_ALG);
        }
        /* claims that are not one JSON object, with a good signature */
        CHECK_INT_EQ(verify_raw(HS256, "[1]", KEY, NULL), MLS_JWT_MALFORMED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1", KEY, NULL),
                     MLS_JWT_MALFORMED);
        CHECK_INT_EQ(
                verify_raw(HS256, "{\"exp\":1800000100,\"exp\":1}", KEY, NULL),
                MLS_JWT_MALFORMED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1e999}", KEY, NULL),
                     MLS_JWT_MALFORMED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1800000100} x", KEY, NULL),
                     MLS_JWT_MALFORMED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1800000100,\"s\":\"\\u0000\"}",
                                KEY, NULL),
                     MLS_JWT_MALFORMED);
        /* too long */
        {
                char *big = malloc(MLS_JWT_MAX_BYTES + 2);
                memset(big, 'A', MLS_JWT_MAX_BYTES + 1);
                big[10] = '.';
                big[20] = '.';
                big[MLS_JWT_MAX_BYTES + 1] = '\0';
                CHECK_INT_EQ(verify(big, NULL, NULL), MLS_JWT_MALFORMED);
                free(big);
        }
}

MLS_TEST(gateway_auth_jwt_times)
{
        /* exp is required and must be a number */
        CHECK_INT_EQ(verify_raw(HS256, "{}", KEY, NULL), MLS_JWT_BAD_CLAIMS);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":\"1800000100\"}", KEY, NULL),
                     MLS_JWT_BAD_CLAIMS);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":null}", KEY, NULL),
                     MLS_JWT_BAD_CLAIMS);
        /* now = 1800000000, leeway 30 */
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1799999971}", KEY, NULL),
                     MLS_JWT_OK);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1799999970}", KEY, NULL),
                     MLS_JWT_EXPIRED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1}", KEY, NULL),
                     MLS_JWT_EXPIRED);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":-1e300}", KEY, NULL),
                     MLS_JWT_EXPIRED);
        CHECK_INT_EQ(verify_raw(HS256,
                                "{\"exp\":1800000100,\"nbf\":1800000030}", KEY,
                                NULL),
                     MLS_JWT_OK);
        CHECK_INT_EQ(verify_raw(HS256,
                                "{\"exp\":1800000100,\"nbf\":1800000031}", KEY,
                                NULL),
                     MLS_JWT_NOT_YET_VALID);
        CHECK_INT_EQ(verify_raw(HS256, "{\"exp\":1800000100,\"nbf\":\"x\"}",
                                KEY, NULL),
                     MLS_JWT_BAD_CLAIMS);
}

MLS_TEST(gateway_auth_jwt_iss_aud)
{
        char *t = jwt("{\"exp\":1800000100,\"iss\":\"idp\",\"aud\":[\"a\","
                      "\"mlstream\"]}");
        char *u = jwt("{\"exp\":1800000100,\"aud\":\"mlstream\"}");

        CHECK_INT_EQ(verify(t, "mlstream", "idp"), MLS_JWT_OK);
        CHECK_INT_EQ(verify(t, "other", NULL), MLS_JWT_BAD_CLAIMS);
        CHECK_INT_EQ(verify(t, NULL, "other-idp"), MLS_JWT_BAD_CLAIMS);
        CHECK_INT_EQ(verify(u, "mlstream", NULL), MLS_JWT_OK);
        CHECK_INT_EQ(verify(u, NULL, "idp"), MLS_JWT_BAD_CLAIMS);
        free(t);
        free(u);
}

/* --- policy: static tokens, secrets, settings ---------------------------- */

static char *write_tmp(const char *content)
{
        char *path = strdup("/tmp/mls-auth-test-XXXXXX");
        int fd = mkstemp(path);

        if (fd < 0 || write(fd, content, strlen(content)) < 0) {
                free(path);
                return NULL;
        }
        fchmod(fd, 0600);
        close(fd);
        return path;
}

MLS_TEST(gateway_auth_static_tokens)
{
        char err[256];
        char *file = write_tmp("# ops tokens\n\n  tok-from-file-0001  \r\n"
                               "tok-from-file-0002\n");
        mls_auth_t *a;

        CHECK(file);
        a = mls_auth_new(
                &(struct mls_auth_conf){
                        .token = "single,with-comma-0001",
                        .tokens = " tok-a-0000000001 , tok-b-0000000002,,",
                        .tokens_file = file,
                },
                err, sizeof(err));
        unlink(file);
        free(file);
        CHECK(a);
        CHECK(mls_auth_enabled(a));
        CHECK(!mls_auth_jwt_enabled(a));
        CHECK_INT_EQ(mls_auth_static_tokens(a), 5);
        CHECK_INT_EQ(check(a, "tok-a-0000000001"), MLS_AUTH_OK);
        CHECK_INT_EQ(check(a, "tok-b-0000000002"), MLS_AUTH_OK);
        CHECK_INT_EQ(check(a, "tok-from-file-0001"), MLS_AUTH_OK);
        CHECK_INT_EQ(check(a, "tok-from-file-0002"), MLS_AUTH_OK);
        /* GATEWAY_AUTH_TOKEN is one token, commas and all */
        CHECK_INT_EQ(check(a, "single,with-comma-0001"), MLS_AUTH_OK);
        CHECK_INT_EQ(check(a, "single"), MLS_AUTH_INVALID);
        CHECK_INT_EQ(check(a, "tok-a-000000000"), MLS_AUTH_INVALID);
        CHECK_INT_EQ(check(a, "tok-a-00000000011"), MLS_AUTH_INVALID);
        CHECK_INT_EQ(check(a, "# ops tokens"), MLS_AUTH_INVALID);
        CHECK_INT_EQ(check(a, ""), MLS_AUTH_INVALID);
        /* a JWT is not accepted without a secret */
        {
                char *t = jwt(EXP_OK);
                CHECK_INT_EQ(check(a, t), MLS_AUTH_INVALID);
                free(t);
        }
        /* a static token sees every tenant */
        {
                struct mls_principal p;
                CHECK_INT_EQ(mls_auth_check_token(a, "tok-a-0000000001", 16, &p,
                                                  NULL),
                             MLS_AUTH_OK);
                CHECK(p.tenants == NULL);
                CHECK_INT_EQ(p.expires_s, 0);
                CHECK(mls_principal_sees(&p, "any", 3));
                CHECK(mls_principal_sees(&p, NULL, 0));
                mls_principal_clear(&p);
        }
        mls_auth_free(a);
}

MLS_TEST(gateway_auth_off)
{
        char err[256];
        mls_auth_t *a = mls_auth_new(&(struct mls_auth_conf){.tokens = ""}, err,
                                     sizeof(err));
        struct mls_principal p;

        CHECK(a);
        CHECK(!mls_auth_enabled(a));
        CHECK(!mls_auth_enabled(NULL));
        CHECK_INT_EQ(mls_auth_check_header(a, NULL, &p, NULL), MLS_AUTH_OK);
        CHECK(!p.authenticated && !p.tenants);
        CHECK_INT_EQ(mls_auth_check_init(a, NULL, &p, NULL), MLS_AUTH_OK);
        CHECK_INT_EQ(mls_auth_check_token(a, "x", 1, &p, NULL), MLS_AUTH_OK);
        mls_auth_free(a);
}

/* Set-up errors name the setting and never quote the secret. */
static int setup_fails(const struct mls_auth_conf *c, const char *want,
                       const char *secret)
{
        char err[512] = "";
        mls_auth_t *a = mls_auth_new(c, err, sizeof(err));

        if (a) {
                mls_auth_free(a);
                return 0;
        }
        return strstr(err, want) && (!secret || !strstr(err, secret));
}

MLS_TEST(gateway_auth_setup_errors)
{
        char *file;

        CHECK(setup_fails(&(struct mls_auth_conf){.tokens = "good-token-0001,"
                                                            "bad token 0002"},
                          "GATEWAY_AUTH_TOKENS item 2", "bad token"));
        CHECK(setup_fails(&(struct mls_auth_conf){.tokens = " , ,"},
                          "GATEWAY_AUTH_TOKENS: no token", NULL));
        CHECK(setup_fails(&(struct mls_auth_conf){.token = "t\xc3\xa9-secret"},
                          "GATEWAY_AUTH_TOKEN", "-secret"));
        CHECK(setup_fails(
                &(struct mls_auth_conf){.tokens_file = "/nonexistent/x"},
                "GATEWAY_AUTH_TOKENS_FILE: cannot open "
                "/nonexistent/x",
                NULL));
        file = write_tmp("# nothing here\n\n");
        CHECK(setup_fails(&(struct mls_auth_conf){.tokens_file = file},
                          "GATEWAY_AUTH_TOKENS_FILE: no token", NULL));
        unlink(file);
        free(file);
        file = write_tmp("ok-token-000001\nbad\ttoken-secret\n");
        CHECK(setup_fails(&(struct mls_auth_conf){.tokens_file = file},
                          "line 2", "token-secret"));
        unlink(file);
        free(file);
        CHECK(setup_fails(&(struct mls_auth_conf){.jwt_secret = "short-secret"},
                          "GATEWAY_JWT_SECRET: an HS256 secret must have at "
                          "least 32 bytes",
                          "short-secret"));
        CHECK(setup_fails(&(struct mls_auth_conf){.jwt_secret = KEY,
                                                  .jwt_secret_file = "/x"},
                          "both set", KEY));
        CHECK(setup_fails(
                &(struct mls_auth_conf){.jwt_secret_file = "/nonexistent/s"},
                "GATEWAY_JWT_SECRET_FILE: cannot open", NULL));
        CHECK(setup_fails(&(struct mls_auth_conf){.jwt_secret_file = "/tmp"},
                          "not a regular file", NULL));
}

MLS_TEST(gateway_auth_secret_file)
{
        char err[256];
        char *file = write_tmp(KEY "\n");
        mls_auth_t *a = mls_auth_new(
                &(struct mls_auth_conf){.jwt_secret_file = file, .now = now_fn},
                err, sizeof(err));
        char *t = jwt(EXP_OK);

        unlink(file);
        free(file);
        CHECK(a);
        CHECK(mls_auth_jwt_enabled(a));
        /* the final newline is not part of the key */
        CHECK_INT_EQ(check(a, t), MLS_AUTH_OK);
        free(t);
        mls_auth_free(a);
}

/* --- credentials in headers and connection_init -------------------------- */

MLS_TEST(gateway_auth_bearer_parsing)
{
        size_t n = 0;
        const char *t;

        t = mls_auth_bearer("Bearer abc", &n);
        CHECK(t && n == 3 && memcmp(t, "abc", 3) == 0);
        t = mls_auth_bearer("  bEaReR \t abc.def  ", &n);
        CHECK(t && n == 7 && memcmp(t, "abc.def", 7) == 0);
        CHECK(!mls_auth_bearer("Bearer", &n));
        CHECK(!mls_auth_bearer("Bearer ", &n));
        CHECK(!mls_auth_bearer("Bearerabc", &n));
        CHECK(!mls_auth_bearer("Basic dXNlcjpwYXNz", &n));
        CHECK(!mls_auth_bearer("Bearer a b", &n));
        CHECK(!mls_auth_bearer("abc", &n));
        CHECK(!mls_auth_bearer("", &n));
        CHECK(!mls_auth_bearer(NULL, &n));
}

static enum mls_auth_result init_result(const mls_auth_t *a, const char *json)
{
        json_error_t e;
        json_t *p = json ? json_loads(json, 0, &e) : NULL;
        struct mls_principal who;
        enum mls_auth_result r = mls_auth_check_init(a, p, &who, NULL);

        mls_principal_clear(&who);
        json_decref(p);
        return r;
}

MLS_TEST(gateway_auth_credentials)
{
        char err[256];
        mls_auth_t *a = mls_auth_new(
                &(struct mls_auth_conf){.tokens = "s3cret-token-0001"}, err,
                sizeof(err));
        struct mls_principal p;

        CHECK(a);
        CHECK_INT_EQ(
                mls_auth_check_header(a, "Bearer s3cret-token-0001", &p, NULL),
                MLS_AUTH_OK);
        mls_principal_clear(&p);
        CHECK_INT_EQ(mls_auth_check_header(a, NULL, &p, NULL),
                     MLS_AUTH_MISSING);
        CHECK_INT_EQ(mls_auth_check_header(a, "", &p, NULL), MLS_AUTH_MISSING);
        /* no scheme, or another scheme: no bearer credential at all */
        CHECK_INT_EQ(mls_auth_check_header(a, "s3cret-token-0001", &p, NULL),
                     MLS_AUTH_MISSING);
        CHECK_INT_EQ(
                mls_auth_check_header(a, "Basic s3cret-token-0001", &p, NULL),
                MLS_AUTH_MISSING);
        CHECK_INT_EQ(mls_auth_check_header(a, "Bearer wrong", &p, NULL),
                     MLS_AUTH_INVALID);

        CHECK_INT_EQ(init_result(a, "{\"Authorization\":\"Bearer "
                                    "s3cret-token-0001\"}"),
                     MLS_AUTH_OK);
        CHECK_INT_EQ(init_result(a, "{\"authorization\":\"bearer "
                                    "s3cret-token-0001\"}"),
                     MLS_AUTH_OK);
        CHECK_INT_EQ(init_result(a, "{\"headers\":{\"Authorization\":\"Bearer "
                                    "s3cret-token-0001\"}}"),
                     MLS_AUTH_OK);
        CHECK_INT_EQ(init_result(a, "{\"headers\":{\"authorization\":\"Bearer "
                                    "s3cret-token-0001\"}}"),
                     MLS_AUTH_OK);
        CHECK_INT_EQ(init_result(a, "{\"token\":\"s3cret-token-0001\"}"),
                     MLS_AUTH_OK);
        /* a bare token is fine in a payload */
        CHECK_INT_EQ(
                init_result(a, "{\"Authorization\":\"s3cret-token-0001\"}"),
                MLS_AUTH_OK);
        CHECK_INT_EQ(init_result(a, NULL), MLS_AUTH_MISSING);
        CHECK_INT_EQ(init_result(a, "{}"), MLS_AUTH_MISSING);
        CHECK_INT_EQ(init_result(a, "{\"headers\":\"Bearer x\"}"),
                     MLS_AUTH_MISSING);
        CHECK_INT_EQ(init_result(a, "{\"Authorization\":42}"),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(init_result(a, "{\"Authorization\":null}"),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(init_result(a, "{\"Authorization\":\"Bearer nope\"}"),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(init_result(a, "{\"Authorization\":\"\"}"),
                     MLS_AUTH_INVALID);
        /* the first key present wins; a wrong one is not skipped */
        CHECK_INT_EQ(init_result(a, "{\"Authorization\":\"Bearer nope\","
                                    "\"token\":\"s3cret-token-0001\"}"),
                     MLS_AUTH_INVALID);
        mls_auth_free(a);
}

/* --- JWT principals and tenants ------------------------------------------ */

static enum mls_auth_result principal(const mls_auth_t *a, const char *claims,
                                      struct mls_principal *p)
{
        char *t = jwt(claims);
        enum mls_auth_result r = mls_auth_check_token(a, t, strlen(t), p, NULL);

        free(t);
        return r;
}

MLS_TEST(gateway_auth_jwt_tenants)
{
        mls_auth_t *a = jwt_auth(0);
        struct mls_principal p;

        CHECK(a);
        CHECK_INT_EQ(principal(a,
                               "{\"exp\":1800000100,\"tenants\":[\"red\","
                               "\"blue-team\",\"red\"]}",
                               &p),
                     MLS_AUTH_OK);
        CHECK(p.authenticated);
        CHECK_INT_EQ(p.expires_s, 1800000130);
        CHECK(p.tenants);
        CHECK_INT_EQ(p.tenants->n, 2);
        CHECK_STR_EQ(p.tenants->names[0], "blue-team");
        CHECK_STR_EQ(p.tenants->names[1], "red");
        CHECK(mls_principal_sees(&p, "red", 3));
        CHECK(mls_principal_sees(&p, "blue-team", 9));
        CHECK(!mls_principal_sees(&p, "blue", 4));
        CHECK(!mls_principal_sees(&p, "green", 5));
        CHECK(!mls_principal_sees(&p, NULL, 0));
        mls_principal_clear(&p);
        CHECK(!p.tenants);

        /* an empty list sees nothing; no claim sees everything */
        CHECK_INT_EQ(principal(a, "{\"exp\":1800000100,\"tenants\":[]}", &p),
                     MLS_AUTH_OK);
        CHECK(p.tenants && p.tenants->n == 0);
        CHECK(!mls_principal_sees(&p, "red", 3));
        mls_principal_clear(&p);
        CHECK_INT_EQ(principal(a, "{\"exp\":1800000100}", &p), MLS_AUTH_OK);
        CHECK(!p.tenants);
        mls_principal_clear(&p);

        /* a malformed claim refuses the token rather than widening it */
        CHECK_INT_EQ(
                principal(a, "{\"exp\":1800000100,\"tenants\":\"red\"}", &p),
                MLS_AUTH_INVALID);
        CHECK(!p.authenticated && !p.tenants);
        CHECK_INT_EQ(principal(a, "{\"exp\":1800000100,\"tenants\":null}", &p),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(principal(a, "{\"exp\":1800000100,\"tenants\":[1]}", &p),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(
                principal(a, "{\"exp\":1800000100,\"tenants\":[\"\"]}", &p),
                MLS_AUTH_INVALID);
        CHECK_INT_EQ(principal(a,
                               "{\"exp\":1800000100,\"tenants\":[\"a\\nb\"]}",
                               &p),
                     MLS_AUTH_INVALID);
        CHECK_INT_EQ(
                principal(a, "{\"exp\":1799999000,\"tenants\":[\"a\"]}", &p),
                MLS_AUTH_EXPIRED);
        mls_auth_free(a);

        /* GATEWAY_JWT_REQUIRE_TENANTS */
        a = jwt_auth(1);
        CHECK_INT_EQ(principal(a, "{\"exp\":1800000100}", &p),
                     MLS_AUTH_NO_TENANT_CLAIM);
        CHECK_INT_EQ(
                principal(a, "{\"exp\":1800000100,\"tenants\":[\"a\"]}", &p),
                MLS_AUTH_OK);
        mls_principal_clear(&p);
        mls_auth_free(a);

        /* another claim name */
        {
                char err[256];
                a = mls_auth_new(
                        &(struct mls_auth_conf){
                                .jwt_secret = KEY,
                                .tenant_claim = "https://example.com/orgs",
                                .now = now_fn,
                        },
                        err, sizeof(err));
                CHECK(a);
                CHECK_INT_EQ(principal(a,
                                       "{\"exp\":1800000100,\"https://"
                                       "example.com/orgs\":[\"o1\"],"
                                       "\"tenants\":[\"o2\"]}",
                                       &p),
                             MLS_AUTH_OK);
                CHECK(mls_principal_sees(&p, "o1", 2));
                CHECK(!mls_principal_sees(&p, "o2", 2));
                mls_principal_clear(&p);
                mls_auth_free(a);
        }
}

MLS_TEST(gateway_auth_result_names)
{
        CHECK_STR_EQ(mls_auth_result_name(MLS_AUTH_MISSING), "missing");
        CHECK_STR_EQ(mls_auth_result_name(MLS_AUTH_INVALID), "invalid");
        CHECK_STR_EQ(mls_auth_result_name(MLS_AUTH_EXPIRED), "expired");
        CHECK_STR_EQ(mls_auth_result_name(MLS_AUTH_NOT_YET_VALID),
                     "not_yet_valid");
        CHECK_STR_EQ(mls_auth_result_name(MLS_AUTH_NO_TENANT_CLAIM),
                     "no_tenant_claim");
        CHECK_STR_EQ(mls_auth_result_name((enum mls_auth_result)77), "invalid");
}

MLS_TEST(gateway_auth_tenant_sets)
{
        static const char *const a[] = {"b", "a", "b", "c"};
        static const size_t al[] = {1, 1, 1, 1};
        static const char *const b[] = {"c", "a", "b"};
        static const size_t bl[] = {1, 1, 1};
        const char *why = NULL;
        mls_tenants_t *x = mls_tenants_new(a, al, 4, &why);
        mls_tenants_t *y = mls_tenants_new(b, bl, 3, &why);

        CHECK(x && y);
        /* the same set in any order and with repeats has the same key */
        CHECK_INT_EQ(x->keylen, y->keylen);
        CHECK(memcmp(x->key, y->key, x->keylen) == 0);
        CHECK(mls_tenants_has(x, "c", 1));
        CHECK(!mls_tenants_has(x, "d", 1));
        CHECK(!mls_tenants_has(x, "", 0));
        CHECK(!mls_tenants_has(NULL, "a", 1));
        mls_tenants_unref(x);
        mls_tenants_unref(y);
        CHECK(!mls_tenant_name_ok("", 0));
        CHECK(!mls_tenant_name_ok("a\0b", 3));
        CHECK(!mls_tenant_name_ok("a\x7f", 2));
        CHECK(mls_tenant_name_ok("blue-team \xc3\xa9", 12));
        {
                char big[MLS_TENANT_MAX_BYTES + 1];
                memset(big, 'x', sizeof(big));
                CHECK(mls_tenant_name_ok(big, MLS_TENANT_MAX_BYTES));
                CHECK(!mls_tenant_name_ok(big, MLS_TENANT_MAX_BYTES + 1));
        }
}

/* --- the hub's tenant slices --------------------------------------------- */

#define MAX_GOT 16

struct rec {
        struct mls_hub_member m;
        int got;
        struct mls_frame *last;
};

static void rec_deliver(void *opaque, struct mls_hub_member *m,
                        struct mls_frame *payload)
{
        struct rec *r = (struct rec *)m;

        (void)opaque;
        r->got++;
        r->last = payload;
}

static mls_tenants_t *set_of(const char *csv)
{
        const char *names[8];
        size_t lens[8], n = 0;
        const char *why;

        while (*csv && n < 8) {
                const char *e = strchr(csv, ',');
                names[n] = csv;
                lens[n] = e ? (size_t)(e - csv) : strlen(csv);
                n++;
                csv = e ? e + 1 : csv + strlen(csv);
        }
        return mls_tenants_new(names, lens, n, &why);
}

static size_t pub(mls_hub_t *h, const char *tenant)
{
        const char *ev =
                "{\"inference_id\":\"i\",\"model_id\":\"m\",\"predictions\":[1]"
                ","
                "\"latency_ms\":1,\"received_at\":\"2026-01-01T00:00:00Z\","
                "\"metadata\":%s}";
        char buf[512], meta[128];
        struct mls_payload p;
        size_t n, tlen = 0;
        const char *t;

        if (tenant)
                snprintf(meta, sizeof(meta), "{\"tenant\":\"%s\"}", tenant);
        else
                snprintf(meta, sizeof(meta), "{\"tenant\":7}");
        snprintf(buf, sizeof(buf), ev, meta);
        if (mls_payload_normalize(buf, strlen(buf), 1 << 20, &p) !=
            MLS_PAYLOAD_PREDICTION)
                return 999;
        t = mls_payload_tenant(&p, &tlen);
        n = mls_hub_publish(h, p.model_id, t, tlen, &p);
        mls_payload_clear(&p);
        return n;
}

MLS_TEST(gateway_auth_hub_tenant_slices)
{
        static const char q[] =
                "subscription { mlInferenceStream(modelId: \"m\") { "
                "inferenceId metadata } }";
        char err[256];
        mls_gql_schema_t *schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_cache_t *cache =
                mls_gql_cache_new(schema, NULL, 8, err, sizeof(err));
        mls_hub_t *h = mls_hub_new(1 << 20, rec_deliver, NULL);
        json_t *errors = NULL;
        mls_gql_doc_t *doc =
                mls_gql_cache_get(cache, q, sizeof(q) - 1, &errors);
        struct rec all = {0}, blue = {0}, blue_red = {0}, red_blue = {0},
                   none = {0};
        mls_tenants_t *sb = set_of("blue"), *sbr = set_of("blue,red"),
                      *srb = set_of("red,blue,red"), *s0 = set_of("");
        struct mls_hub_stats st;

        CHECK(doc && sb && sbr && srb && s0);
        CHECK(mls_hub_join(h, &all.m, doc, q, sizeof(q) - 1, NULL, NULL, NULL,
                           &errors) == 0);
        CHECK(mls_hub_join(h, &blue.m, doc, q, sizeof(q) - 1, NULL, NULL, sb,
                           &errors) == 0);
        CHECK(mls_hub_join(h, &blue_red.m, doc, q, sizeof(q) - 1, NULL, NULL,
                           sbr, &errors) == 0);
        CHECK(mls_hub_join(h, &red_blue.m, doc, q, sizeof(q) - 1, NULL, NULL,
                           srb, &errors) == 0);
        CHECK(mls_hub_join(h, &none.m, doc, q, sizeof(q) - 1, NULL, NULL, s0,
                           &errors) == 0);
        /* the hub holds its own references */
        mls_tenants_unref(sb);
        mls_tenants_unref(sbr);
        mls_tenants_unref(srb);
        mls_tenants_unref(s0);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.members, 5);
        CHECK_INT_EQ(st.groups, 1);
        CHECK_INT_EQ(st.slices, 4); /* all, {blue}, {blue,red}, {} */

        CHECK_INT_EQ(pub(h, "blue"), 4);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.renders, 1); /* one render for all four */
        CHECK(all.last == blue.last && blue.last == blue_red.last &&
              blue_red.last == red_blue.last);
        CHECK_INT_EQ(pub(h, "red"), 3);
        CHECK_INT_EQ(pub(h, "green"), 1);
        CHECK_INT_EQ(pub(h, "Blue"), 1); /* exact bytes, case and all */
        CHECK_INT_EQ(pub(h, NULL), 1);   /* no string tenant */
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.renders, 5);
        CHECK_INT_EQ(all.got, 5);
        CHECK_INT_EQ(blue.got, 1);
        CHECK_INT_EQ(blue_red.got, 2);
        CHECK_INT_EQ(red_blue.got, 2);
        CHECK_INT_EQ(none.got, 0);

        /* nobody may see it: nothing is rendered */
        mls_hub_leave(h, &all.m);
        CHECK_INT_EQ(pub(h, "green"), 0);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.renders, 5);
        CHECK_INT_EQ(st.slices, 3);
        mls_hub_leave(h, &blue.m);
        mls_hub_leave(h, &blue_red.m);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.slices, 2);
        mls_hub_leave(h, &red_blue.m);
        mls_hub_leave(h, &none.m);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.members, 0);
        CHECK_INT_EQ(st.groups, 0);
        CHECK_INT_EQ(st.slices, 0);
        mls_gql_doc_unref(doc);
        mls_hub_free(h);
        mls_gql_cache_free(cache);
        mls_gql_schema_free(schema);
}

/* Keeps a copy of the last frame delivered. */
struct keep {
        struct mls_hub_member m;
        int got;
        char text[512];
};

static void keep_deliver(void *opaque, struct mls_hub_member *m,
                         struct mls_frame *payload)
{
        struct keep *k = (struct keep *)m;

        (void)opaque;
        k->got++;
        snprintf(k->text, sizeof(k->text), "%.*s", (int)payload->len,
                 payload->data);
}

static size_t pub_text(mls_hub_t *h, const char *id, size_t preds_len,
                       json_t *gap)
{
        static char buf[16384], preds[8192];
        struct mls_payload p;
        size_t n;

        memset(preds, '7', preds_len);
        preds[preds_len] = '\0';
        snprintf(buf, sizeof(buf),
                 "{\"inference_id\":\"%s\",\"model_id\":\"m\",\"predictions\":"
                 "[%s],\"latency_ms\":1,\"received_at\":0}",
                 id, preds);
        if (mls_payload_normalize(buf, strlen(buf), sizeof(buf), &p) !=
            MLS_PAYLOAD_PREDICTION)
                return 999;
        if (gap && mls_payload_set_gap(&p, gap) < 0)
                return 998;
        n = mls_hub_publish(h, p.model_id, NULL, 0, &p);
        mls_payload_clear(&p);
        return n;
}

/* An event whose response would pass the render cap reaches its
 * subscribers as an error naming it (its id when short, and its gap), is
 * counted, and the next event renders as usual. */
MLS_TEST(gateway_hub_event_too_large_is_an_error)
{
        static const char q[] = "subscription { mlInferenceStream(modelId: "
                                "\"m\") { inferenceId predictions } }";
        char err[256], longid[1100];
        mls_gql_schema_t *schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_cache_t *cache =
                mls_gql_cache_new(schema, NULL, 8, err, sizeof(err));
        mls_hub_t *h = mls_hub_new(4096, keep_deliver, NULL);
        json_t *errors = NULL;
        mls_gql_doc_t *doc =
                mls_gql_cache_get(cache, q, sizeof(q) - 1, &errors);
        struct keep k = {0};
        struct mls_hub_stats st;

        CHECK(doc);
        CHECK(mls_hub_join(h, &k.m, doc, q, sizeof(q) - 1, NULL, NULL, NULL,
                           &errors) == 0);
        CHECK_INT_EQ(pub_text(h, "small", 4000, NULL), 1);
        CHECK(strncmp(k.text, "{\"data\":{\"mlInferenceStream\":", 29) == 0);
        CHECK_INT_EQ(pub_text(h, "big", 4100, NULL), 1);
        CHECK_STR_EQ(k.text,
                     "{\"errors\":[{\"message\":\"The event is larger than "
                     "the gateway's outgoing message limit "
                     "(GATEWAY_MAX_PAYLOAD_BYTES).\",\"extensions\":{\"code\":"
                     "\"EVENT_TOO_LARGE\",\"inferenceId\":\"big\"}}],"
                     "\"data\":null}");
        /* an id too long to repeat is left out */
        memset(longid, 'x', 1030);
        longid[1030] = '\0';
        CHECK_INT_EQ(pub_text(h, longid, 4000, NULL), 1);
        CHECK(strstr(k.text, "\"EVENT_TOO_LARGE\"}}]") != NULL);
        /* the gap it carried is not lost with it */
        CHECK_INT_EQ(pub_text(h, "gap", 4100,
                              json_pack("{s:s,s:n,s:n}", "reason",
                                        "UPSTREAM_LOST", "missed", "since")),
                     1);
        CHECK(strstr(k.text, "\"inferenceId\":\"gap\",\"gap\":{\"reason\":"
                             "\"UPSTREAM_LOST\",\"missed\":null,\"since\":"
                             "null}}}]") != NULL);
        CHECK_INT_EQ(pub_text(h, "after", 10, NULL), 1);
        CHECK(strstr(k.text, "\"inferenceId\":\"after\",\"predictions\":[7"
                             "777777777]") != NULL);
        CHECK_INT_EQ(k.got, 5);
        mls_hub_stats(h, &st);
        CHECK_INT_EQ(st.render_errors, 3);
        mls_hub_leave(h, &k.m);
        mls_gql_doc_unref(doc);
        mls_hub_free(h);
        mls_gql_cache_free(cache);
        mls_gql_schema_free(schema);
}

/* --- per-tenant status --------------------------------------------------- */

MLS_TEST(gateway_auth_monitor_tenants)
{
        mls_monitor_t *m = mls_monitor_new(8, 16);
        mls_tenants_t *blue = set_of("blue"), *both = set_of("blue,red"),
                      *green = set_of("green");
        json_t *s;

        CHECK(m && blue && both && green);
        mls_monitor_track_tenants(m, 1);
        mls_monitor_prediction(m, "a", "blue", 4, 10.0, 1000);
        mls_monitor_prediction(m, "a", "blue", 4, 20.0, 2000);
        mls_monitor_prediction(m, "a", "red", 3, 300.0, 5000);
        mls_monitor_prediction(m, "a", NULL, 0, 900.0, 6000);

        /* everyone's view */
        s = mls_monitor_status(m, "a", NULL);
        CHECK_INT_EQ(json_integer_value(json_object_get(s, "windowSize")), 4);
        json_decref(s);
        /* blue's: its own two, and nothing of red's timing */
        s = mls_monitor_status(m, "a", blue);
        CHECK_INT_EQ(json_integer_value(json_object_get(s, "windowSize")), 2);
        CHECK(json_real_value(json_object_get(s, "averageLatencyMs")) == 15.0);
        CHECK(json_real_value(json_object_get(s, "p95LatencyMs")) == 20.0);
        CHECK_STR_EQ(json_string_value(json_object_get(s, "lastHeartbeatAt")),
                     "1970-01-01T00:00:02.000Z");
        json_decref(s);
        s = mls_monitor_status(m, "a", both);
        CHECK_INT_EQ(json_integer_value(json_object_get(s, "windowSize")), 3);
        CHECK(json_real_value(json_object_get(s, "p95LatencyMs")) == 300.0);
        json_decref(s);
        /* green: nothing, not even that the model exists ... */
        s = mls_monitor_status(m, "a", green);
        CHECK_INT_EQ(json_integer_value(json_object_get(s, "windowSize")), 0);
        CHECK(json_is_null(json_object_get(s, "averageLatencyMs")));
        CHECK(json_is_null(json_object_get(s, "lastHeartbeatAt")));
        json_decref(s);
        CHECK(!mls_monitor_visible(m, "a", green));
        CHECK(mls_monitor_visible(m, "a", blue));
        CHECK(mls_monitor_visible(m, "a", NULL));
        /* ... until an engine's heartbeat names it (engine-level) */
        mls_monitor_heartbeat(m, "a", 7000);
        CHECK(mls_monitor_visible(m, "a", green));
        s = mls_monitor_status(m, "a", green);
        CHECK_STR_EQ(json_string_value(json_object_get(s, "lastHeartbeatAt")),
                     "1970-01-01T00:00:07.000Z");
        json_decref(s);
        mls_tenants_unref(blue);
        mls_tenants_unref(both);
        mls_tenants_unref(green);
        mls_monitor_free(m);
}

/* --- WebSocket sessions -------------------------------------------------- */

struct conn {
        char *sent[MAX_GOT];
        int nsent, close_code, failures;
        enum mls_auth_result last_failure;
};

static int c_send(void *conn, struct mls_frame *msg)
{
        struct conn *c = conn;

        if (c->nsent < MAX_GOT)
                c->sent[c->nsent++] = strndup(msg->data, msg->len);
        return 0;
}

static int c_send_event(void *conn, struct mls_frame *head,
                        struct mls_frame *body)
{
        struct conn *c = conn;
        size_t n = head->len + body->len + 1;
        char *m = malloc(n + 1);

        memcpy(m, head->data, head->len);
        memcpy(m + head->len, body->data, body->len);
        m[n - 1] = '}';
        m[n] = '\0';
        if (c->nsent < MAX_GOT)
                c->sent[c->nsent++] = m;
        else
                free(m);
        return 0;
}

static void c_close(void *conn, int code, const char *reason)
{
        (void)reason;
        ((struct conn *)conn)->close_code = code;
}

static void c_auth_failed(void *conn, enum mls_auth_result r, const char *why)
{
        struct conn *c = conn;

        (void)why;
        c->failures++;
        c->last_failure = r;
}

static const struct mls_wsproto_ops c_ops = {
        .send = c_send,
        .send_event = c_send_event,
        .close = c_close,
        .auth_failed = c_auth_failed,
};

struct ws_rig {
        mls_gql_schema_t *schema;
        mls_gql_cache_t *cache;
        mls_hub_t *hub;
        mls_auth_t *auth;
        struct mls_wsproto_env env;
};

static void ws_rig_init(struct ws_rig *r)
{
        char err[256];

        memset(r, 0, sizeof(*r));
        r->schema = mls_gql_schema_new(err, sizeof(err));
        r->cache = mls_gql_cache_new(r->schema, NULL, 8, err, sizeof(err));
        r->hub = mls_hub_new(1 << 20, mls_wsproto_deliver, NULL);
        r->auth = mls_auth_new(
                &(struct mls_auth_conf){
                        .tokens = "static-token-0001",
                        .jwt_secret = KEY,
                        .now = now_fn,
                },
                err, sizeof(err));
        r->env = (struct mls_wsproto_env){
                .cache = r->cache,
                .hub = r->hub,
                .auth = r->auth,
                .max_operations = 4,
                .init_timeout_ms = 3000,
                .keepalive_ms = 10000,
                .max_out_bytes = 1 << 20,
        };
}

static void ws_rig_free(struct ws_rig *r)
{
        mls_hub_free(r->hub);
        mls_auth_free(r->auth);
        mls_gql_cache_free(r->cache);
        mls_gql_schema_free(r->schema);
}

static void conn_free(struct conn *c)
{
        for (int i = 0; i < c->nsent; i++)
                free(c->sent[i]);
}

static void say(mls_wsproto_t *s, const char *msg, int64_t now)
{
        mls_wsproto_input(s, msg, strlen(msg), now);
}

/* connection_init with an Authorization payload of "Bearer <tok>" */
static void init_with(mls_wsproto_t *s, const char *tok)
{
        char *m = malloc(strlen(tok) + 96);

        sprintf(m,
                "{\"type\":\"connection_init\",\"payload\":{"
                "\"Authorization\":\"Bearer %s\"}}",
                tok);
        say(s, m, 0);
        free(m);
}

static const char *last_of(const struct conn *c)
{
        return c->nsent ? c->sent[c->nsent - 1] : "";
}

#define WSUB(id)                                                            \
        "{\"id\":\"" id "\",\"type\":\"subscribe\",\"payload\":{\"query\":" \
        "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "         \
        "inputId } }\"}}"

MLS_TEST(gateway_auth_ws_tenant_isolation)
{
        struct ws_rig r;
        struct conn cb = {0}, cr = {0}, cs = {0};
        mls_wsproto_t *sb, *sr, *ss;
        char *tb = jwt("{\"exp\":1800003600,\"tenants\":[\"blue\"]}");
        char *tr = jwt("{\"exp\":1800003600,\"tenants\":[\"red\"]}");
        struct mls_hub_stats st;

        ws_rig_init(&r);
        sb = mls_wsproto_new(&r.env, &c_ops, &cb, MLS_WSPROTO_TRANSPORT, 0);
        sr = mls_wsproto_new(&r.env, &c_ops, &cr, MLS_WSPROTO_LEGACY, 0);
        ss = mls_wsproto_new(&r.env, &c_ops, &cs, MLS_WSPROTO_TRANSPORT, 0);
        init_with(sb, tb);
        init_with(sr, tr);
        init_with(ss, "static-token-0001");
        CHECK_STR_EQ(last_of(&cb), "{\"type\":\"connection_ack\"}");
        CHECK_STR_EQ(cr.sent[0], "{\"type\":\"connection_ack\"}");
        CHECK_STR_EQ(last_of(&cs), "{\"type\":\"connection_ack\"}");
        CHECK(mls_wsproto_principal(sb)->tenants);
        CHECK(!mls_wsproto_principal(ss)->tenants);
        say(sb, WSUB("1"), 0);
        say(sr,
            "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
            "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "
            "inputId } }\"}}",
            0);
        say(ss, WSUB("1"), 0);
        mls_hub_stats(r.hub, &st);
        CHECK_INT_EQ(st.groups, 1);
        CHECK_INT_EQ(st.slices, 3);
        conn_free(&cb);
        conn_free(&cr);
        conn_free(&cs);
        cb.nsent = cr.nsent = cs.nsent = 0;
        CHECK_INT_EQ(pub(r.hub, "blue"), 2);
        CHECK_INT_EQ(pub(r.hub, "red"), 2);
        CHECK_INT_EQ(pub(r.hub, "green"), 1);
        CHECK_INT_EQ(cb.nsent, 1);
        CHECK_INT_EQ(cr.nsent, 1);
        CHECK_INT_EQ(cs.nsent, 3);
        CHECK_CONTAINS(cb.sent[0], "\"type\":\"next\"");
        CHECK_CONTAINS(cr.sent[0], "\"type\":\"data\"");
        mls_wsproto_free(sb);
        mls_wsproto_free(sr);
        mls_wsproto_free(ss);
        mls_hub_stats(r.hub, &st);
        CHECK_INT_EQ(st.members, 0);
        conn_free(&cb);
        conn_free(&cr);
        conn_free(&cs);
        free(tb);
        free(tr);
        ws_rig_free(&r);
}

MLS_TEST(gateway_auth_ws_refusals)
{
        struct ws_rig r;
        struct conn c = {0};
        mls_wsproto_t *s;
        char *expired = jwt("{\"exp\":1799990000}");
        char *none = raw_jwt("{\"alg\":\"none\"}", EXP_OK, KEY, NULL);

        ws_rig_init(&r);
        /* no credential at all */
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        say(s, "{\"type\":\"connection_init\"}", 0);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_MISSING);
        CHECK_INT_EQ(c.nsent, 0);
        mls_wsproto_free(s);
        /* an expired JWT, a forged alg */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        init_with(s, expired);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_EXPIRED);
        mls_wsproto_free(s);
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_LEGACY, 0);
        init_with(s, none);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_INVALID);
        CHECK_CONTAINS(last_of(&c), "connection_error");
        mls_wsproto_free(s);
        conn_free(&c);
        /* legacy: start before connection_init is refused with auth on */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_LEGACY, 0);
        say(s,
            "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
            "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "
            "inputId } }\"}}",
            0);
        CHECK_CONTAINS(last_of(&c), "Unauthorized");
        CHECK_INT_EQ(mls_wsproto_operations(s), 0);
        mls_wsproto_free(s);
        conn_free(&c);
        free(expired);
        free(none);
        ws_rig_free(&r);
}

MLS_TEST(gateway_auth_ws_upgrade_header)
{
        struct ws_rig r;
        struct conn c = {0};
        mls_wsproto_t *s;
        char *tb = jwt("{\"exp\":1800003600,\"tenants\":[\"blue\"]}");
        char hdr[512];

        ws_rig_init(&r);
        snprintf(hdr, sizeof(hdr), "Bearer %s", tb);
        /* the header alone is enough */
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        mls_wsproto_upgrade_auth(s, hdr);
        say(s, "{\"type\":\"connection_init\"}", 0);
        CHECK_STR_EQ(last_of(&c), "{\"type\":\"connection_ack\"}");
        CHECK(mls_wsproto_principal(s)->tenants);
        mls_wsproto_free(s);
        conn_free(&c);
        /* a payload credential wins over a good header */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        mls_wsproto_upgrade_auth(s, hdr);
        init_with(s, "static-token-0001");
        CHECK_STR_EQ(last_of(&c), "{\"type\":\"connection_ack\"}");
        CHECK(!mls_wsproto_principal(s)->tenants);
        mls_wsproto_free(s);
        conn_free(&c);
        /* ... but a bad payload credential is not rescued by it */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        mls_wsproto_upgrade_auth(s, hdr);
        init_with(s, "wrong");
        CHECK_INT_EQ(c.close_code, 4403);
        mls_wsproto_free(s);
        /* a refused header fails even with a good payload */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        mls_wsproto_upgrade_auth(s, "Bearer wrong");
        init_with(s, "static-token-0001");
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_INVALID);
        mls_wsproto_free(s);
        /* a header with another scheme counts as none */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 0);
        mls_wsproto_upgrade_auth(s, "Basic dXNlcjpwYXNz");
        say(s, "{\"type\":\"connection_init\"}", 0);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_MISSING);
        mls_wsproto_free(s);
        free(tb);
        ws_rig_free(&r);
}

MLS_TEST(gateway_auth_ws_expiry)
{
        struct ws_rig r;
        struct conn c = {0};
        mls_wsproto_t *s;
        /* valid for 100 s more (no leeway in this rig) */
        char *t = jwt("{\"exp\":1800000100}");

        ws_rig_init(&r);
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 5000);
        {
                const char *m = "{\"type\":\"connection_init\","
                                "\"payload\":{}}";
                mls_wsproto_input(s, m, strlen(m), 5000);
        }
        CHECK_INT_EQ(c.close_code, 4403);
        mls_wsproto_free(s);
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_TRANSPORT, 5000);
        {
                char m[512];
                snprintf(m, sizeof(m),
                         "{\"type\":\"connection_init\",\"payload\":{"
                         "\"Authorization\":\"Bearer %s\"}}",
                         t);
                mls_wsproto_input(s, m, strlen(m), 5000);
        }
        CHECK_STR_EQ(last_of(&c), "{\"type\":\"connection_ack\"}");
        CHECK_INT_EQ(mls_wsproto_next_timer(s), 5000 + 100000);
        mls_wsproto_timer(s, 5000 + 99999);
        CHECK_INT_EQ(c.close_code, 0);
        mls_wsproto_timer(s, 5000 + 100000);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_INT_EQ(c.last_failure, MLS_AUTH_EXPIRED);
        mls_wsproto_free(s);
        conn_free(&c);
        /* legacy: keep-alives and the expiry share the timer */
        memset(&c, 0, sizeof(c));
        s = mls_wsproto_new(&r.env, &c_ops, &c, MLS_WSPROTO_LEGACY, 0);
        init_with(s, t);
        CHECK_INT_EQ(mls_wsproto_next_timer(s), 10000);
        mls_wsproto_timer(s, 10000);
        CHECK_INT_EQ(c.close_code, 0);
        CHECK_STR_EQ(last_of(&c), "{\"type\":\"ka\"}");
        mls_wsproto_timer(s, 100000);
        CHECK_INT_EQ(c.close_code, 4403);
        CHECK_CONTAINS(last_of(&c), "Token expired");
        mls_wsproto_free(s);
        conn_free(&c);
        free(t);
        ws_rig_free(&r);
}
