#include "gateway/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/clock.h"
#include "common/log.h"
#include "gateway/jwt.h"

#define DIGEST_BYTES 32
#define MAX_FILE_BYTES ((size_t)1 << 20)
#define MIN_SECRET_BYTES 32 /* RFC 7518 section 3.2: a key of 256 bits */
#define SHORT_TOKEN 16

struct mls_auth {
        unsigned char (*digests)[DIGEST_BYTES]; /* SHA-256 of each token */
        size_t ndigests;
        unsigned char *secret; /* JWT HMAC key, or NULL */
        size_t secretlen;
        int64_t leeway_s;
        char *audience, *issuer, *tenant_claim;
        int require_tenants;
        int64_t (*now)(void);
};

static const char *const result_names[MLS_AUTH_RESULTS] = {
        "ok",      "missing",       "invalid",
        "expired", "not_yet_valid", "no_tenant_claim",
};

const char *mls_auth_result_name(enum mls_auth_result r)
{
        return (unsigned)r < MLS_AUTH_RESULTS ? result_names[r] : "invalid";
}

static const char *const result_close_reasons[MLS_AUTH_RESULTS] = {
        "OK",
        "Forbidden: missing credential",
        "Forbidden: invalid credential",
        "Forbidden: token expired",
        "Forbidden: token not yet valid",
        "Forbidden: token has no tenant claim",
};

const char *mls_auth_result_close_reason(enum mls_auth_result r)
{
        return (unsigned)r < MLS_AUTH_RESULTS ? result_close_reasons[r]
                                              : "Forbidden";
}

static int64_t wall_now(void)
{
        return mls_clock_wall_ms() / 1000;
}

int64_t mls_auth_now(const mls_auth_t *a)
{
        return a && a->now ? a->now() : wall_now();
}

/* --- set-up ---------------------------------------------------------- */

static int set(const char *s)
{
        return s && *s;
}

/*
 * Reads a whole file of at most MAX_FILE_BYTES into a new NUL-terminated
 * buffer (*out, *len). Warns when other users may read it. Returns 0, or -1
 * with errstr naming the setting and the file.
 */
static int read_file(const char *setting, const char *path, char **out,
                     size_t *len, char *errstr, size_t errstr_size)
{
        struct stat st;
        char *buf = NULL;
        size_t n = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                snprintf(errstr, errstr_size, "%s: cannot open %s: %s", setting,
                         path, strerror(errno));
                return -1;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            (size_t)st.st_size > MAX_FILE_BYTES) {
                snprintf(errstr, errstr_size,
                         "%s: %s is not a regular file of at most 1 MiB",
                         setting, path);
                goto fail;
        }
        mls_warn_if_readable_by_all(fd, setting, path);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        while (n < (size_t)st.st_size) {
                ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        snprintf(errstr, errstr_size, "%s: cannot read %s: %s",
                                 setting, path,
                                 r < 0 ? strerror(errno) : "file shrank");
                        goto fail;
                }
                n += (size_t)r;
        }
        close(fd);
        buf[n] = '\0';
        *out = buf;
        *len = n;
        return 0;
fail:
        if (buf) {
                OPENSSL_cleanse(buf, (size_t)st.st_size);
                free(buf);
        }
        close(fd);
        return -1;
}

/* Adds one static token. where names it in errors ("GATEWAY_AUTH_TOKENS
 * item 2", "GATEWAY_AUTH_TOKENS_FILE f line 3"); the token is never
 * quoted. */
static int add_token(mls_auth_t *a, const char *tok, size_t len,
                     const char *where, char *errstr, size_t errstr_size)
{
        unsigned char(*d)[DIGEST_BYTES];
        unsigned mdlen = 0;

        if (len > MLS_JWT_MAX_BYTES) {
                snprintf(errstr, errstr_size,
                         "%s: the token is longer than %d bytes", where,
                         MLS_JWT_MAX_BYTES);
                return -1;
        }
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)tok[i];
                if (c < 0x21 || c > 0x7e) {
                        snprintf(errstr, errstr_size,
                                 "%s: a token may only hold printable ASCII "
                                 "characters without spaces",
                                 where);
                        return -1;
                }
        }
        if (len < SHORT_TOKEN)
                mls_warn("%s: the token is shorter than %d characters; "
                         "random tokens of 32 or more are recommended",
                         where, SHORT_TOKEN);
        d = realloc(a->digests, (a->ndigests + 1) * sizeof(*d));
        if (!d) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        a->digests = d;
        if (!EVP_Digest(tok, len, a->digests[a->ndigests], &mdlen, EVP_sha256(),
                        NULL) ||
            mdlen != DIGEST_BYTES) {
                snprintf(errstr, errstr_size, "%s: SHA-256 failed", where);
                return -1;
        }
        a->ndigests++;
        return 0;
}

static int is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits s at sep, trims each item and adds the non-empty ones. Returns
 * the number added, or -1. */
static int add_tokens(mls_auth_t *a, const char *s, char sep,
                      const char *setting, const char *path, char *errstr,
                      size_t errstr_size)
{
        int added = 0, item = 0;
        char where[512];

        while (*s) {
                const char *end = strchr(s, sep);
                size_t n = end ? (size_t)(end - s) : strlen(s);
                const char *p = s;

                item++;
                while (n && is_space(*p)) {
                        p++;
                        n--;
                }
                while (n && is_space(p[n - 1]))
                        n--;
                if (n && !(sep == '\n' && *p == '#')) {
                        if (path)
                                snprintf(where, sizeof(where), "%s %s line %d",
                                         setting, path, item);
                        else
                                snprintf(where, sizeof(where), "%s item %d",
                                         setting, item);
                        if (add_token(a, p, n, where, errstr, errstr_size) < 0)
                                return -1;
                        added++;
                }
                s = end ? end + 1 : s + strlen(s);
        }
        return added;
}

static int load_secret(mls_auth_t *a, const struct mls_auth_conf *c,
                       char *errstr, size_t errstr_size)
{
        const char *setting = "GATEWAY_JWT_SECRET";
        char *buf = NULL;
        size_t n;

        if (set(c->jwt_secret) && set(c->jwt_secret_file)) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_JWT_SECRET and GATEWAY_JWT_SECRET_FILE are "
                         "both set; set one");
                return -1;
        }
        if (set(c->jwt_secret)) {
                n = strlen(c->jwt_secret);
                buf = malloc(n + 1);
                if (!buf) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                memcpy(buf, c->jwt_secret, n + 1);
        } else if (set(c->jwt_secret_file)) {
                setting = "GATEWAY_JWT_SECRET_FILE";
                if (read_file(setting, c->jwt_secret_file, &buf, &n, errstr,
                              errstr_size) < 0)
                        return -1;
                /* editors add a final newline; the secret is the rest */
                while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                        buf[--n] = '\0';
        } else {
                return 0;
        }
        if (n < MIN_SECRET_BYTES) {
                snprintf(errstr, errstr_size,
                         "%s: an HS256 secret must have at least %d bytes "
                         "(RFC 7518 section 3.2)",
                         setting, MIN_SECRET_BYTES);
                OPENSSL_cleanse(buf, n);
                free(buf);
                return -1;
        }
        a->secret = (unsigned char *)buf;
        a->secretlen = n;
        return 0;
}

mls_auth_t *mls_auth_new(const struct mls_auth_conf *c, char *errstr,
                         size_t errstr_size)
{
        mls_auth_t *a = calloc(1, sizeof(*a));
        char *buf = NULL;
        size_t n = 0;
        int k;

        if (!a) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        a->now = c->now ? c->now : wall_now;
        a->leeway_s = c->leeway_s > 0 ? c->leeway_s : 0;
        a->require_tenants = c->require_tenants;
        /* one token, as it always was: not split at commas */
        if (set(c->token) &&
            add_token(a, c->token, strlen(c->token), "GATEWAY_AUTH_TOKEN",
                      errstr, errstr_size) < 0)
                goto fail;
        if (set(c->tokens)) {
                k = add_tokens(a, c->tokens, ',', "GATEWAY_AUTH_TOKENS", NULL,
                               errstr, errstr_size);
                if (k < 0)
                        goto fail;
                if (k == 0) {
                        snprintf(errstr, errstr_size,
                                 "GATEWAY_AUTH_TOKENS: no token in the list");
                        goto fail;
                }
        }
        if (set(c->tokens_file)) {
                if (read_file("GATEWAY_AUTH_TOKENS_FILE", c->tokens_file, &buf,
                              &n, errstr, errstr_size) < 0)
                        goto fail;
                if (memchr(buf, '\0', n)) {
                        snprintf(errstr, errstr_size,
                                 "GATEWAY_AUTH_TOKENS_FILE: %s holds a NUL "
                                 "byte",
                                 c->tokens_file);
                        k = -1;
                } else {
                        k = add_tokens(a, buf, '\n', "GATEWAY_AUTH_TOKENS_FILE",
                                       c->tokens_file, errstr, errstr_size);
                }
                OPENSSL_cleanse(buf, n);
                free(buf);
                if (k < 0)
                        goto fail;
                if (k == 0) {
                        snprintf(errstr, errstr_size,
                                 "GATEWAY_AUTH_TOKENS_FILE: no token in %s",
                                 c->tokens_file);
                        goto fail;
                }
        }
        if (load_secret(a, c, errstr, errstr_size) < 0)
                goto fail;
        if ((set(c->audience) && !(a->audience = strdup(c->audience))) ||
            (set(c->issuer) && !(a->issuer = strdup(c->issuer))) ||
            !(a->tenant_claim = strdup(set(c->tenant_claim) ? c->tenant_claim
                                                            : "tenants"))) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        return a;
fail:
        mls_auth_free(a);
        return NULL;
}

void mls_auth_free(mls_auth_t *a)
{
        if (!a)
                return;
        if (a->digests)
                OPENSSL_cleanse(a->digests, a->ndigests * DIGEST_BYTES);
        free(a->digests);
        if (a->secret)
                OPENSSL_cleanse(a->secret, a->secretlen);
        free(a->secret);
        free(a->audience);
        free(a->issuer);
        free(a->tenant_claim);
        free(a);
}

int mls_auth_enabled(const mls_auth_t *a)
{
        return a && (a->ndigests || a->secret);
}

int mls_auth_jwt_enabled(const mls_auth_t *a)
{
        return a && a->secret;
}

size_t mls_auth_static_tokens(const mls_auth_t *a)
{
        return a ? a->ndigests : 0;
}

/* --- principals ---------------------------------------------------------- */

void mls_principal_clear(struct mls_principal *p)
{
        mls_tenants_unref(p->tenants);
        memset(p, 0, sizeof(*p));
}

int mls_principal_sees(const struct mls_principal *p, const char *tenant,
                       size_t len)
{
        if (!p || !p->tenants)
                return 1;
        return tenant && mls_tenants_has(p->tenants, tenant, len);
}

/* --- checks -------------------------------------------------------------- */

static enum mls_auth_result result(enum mls_auth_result r, const char **why,
                                   const char *reason)
{
        if (why)
                *why = reason;
        return r;
}

/* 1 if the token is one of the static ones; looks at all of them. */
static int static_match(const mls_auth_t *a, const char *tok, size_t len)
{
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        int found = 0;

        if (!a->ndigests ||
            !EVP_Digest(tok, len, d, &mdlen, EVP_sha256(), NULL) ||
            mdlen != DIGEST_BYTES)
                return 0;
        for (size_t i = 0; i < a->ndigests; i++)
                found |= CRYPTO_memcmp(d, a->digests[i], DIGEST_BYTES) == 0;
        return found;
}

static enum mls_auth_result jwt_check(const mls_auth_t *a, const char *tok,
                                      size_t len, struct mls_principal *out,
                                      const char **why)
{
        struct mls_jwt_opts o = {
                .key = a->secret,
                .keylen = a->secretlen,
                .now_s = mls_auth_now(a),
                .leeway_s = a->leeway_s,
                .audience = a->audience,
                .issuer = a->issuer,
        };
        json_t *claims = NULL, *tc, *exp;
        const char *reason = NULL;
        double e;

        switch (mls_jwt_verify(tok, len, &o, &claims, &reason)) {
        case MLS_JWT_OK:
                break;
        case MLS_JWT_EXPIRED:
                return result(MLS_AUTH_EXPIRED, why, reason);
        case MLS_JWT_NOT_YET_VALID:
                return result(MLS_AUTH_NOT_YET_VALID, why, reason);
        default:
                return result(MLS_AUTH_INVALID, why, reason);
        }
        tc = json_object_get(claims, a->tenant_claim);
        if (tc) {
                out->tenants = mls_tenants_from_json(tc, &reason);
                if (!out->tenants) {
                        json_decref(claims);
                        return result(MLS_AUTH_INVALID, why, reason);
                }
        } else if (a->require_tenants) {
                json_decref(claims);
                return result(MLS_AUTH_NO_TENANT_CLAIM, why,
                              "the JWT has no tenant claim "
                              "(GATEWAY_JWT_REQUIRE_TENANTS)");
        }
        exp = json_object_get(claims, "exp");
        e = json_number_value(exp) + (double)a->leeway_s;
        /* verified finite; clamp far futures */
        out->expires_s = e > 4e18 ? (int64_t)4e18 : e < 1 ? 1 : (int64_t)e;
        out->authenticated = 1;
        json_decref(claims);
        return result(MLS_AUTH_OK, why, "ok");
}

enum mls_auth_result mls_auth_check_token(const mls_auth_t *a,
                                          const char *token, size_t len,
                                          struct mls_principal *out,
                                          const char **why)
{
        memset(out, 0, sizeof(*out));
        if (!mls_auth_enabled(a))
                return result(MLS_AUTH_OK, why, "authentication is off");
        if (!token || len == 0)
                return result(MLS_AUTH_INVALID, why, "empty token");
        if (len > MLS_JWT_MAX_BYTES)
                return result(MLS_AUTH_INVALID, why, "token too long");
        if (static_match(a, token, len)) {
                out->authenticated = 1;
                return result(MLS_AUTH_OK, why, "ok");
        }
        if (!a->secret)
                return result(MLS_AUTH_INVALID, why, "unknown token");
        return jwt_check(a, token, len, out, why);
}

const char *mls_auth_bearer(const char *v, size_t *len)
{
        const char *t;
        size_t n;

        if (!v)
                return NULL;
        while (*v == ' ' || *v == '\t')
                v++;
        if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
                return NULL;
        t = v + 6;
        while (*t == ' ' || *t == '\t')
                t++;
        n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
                n--;
        if (!n)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (t[i] == ' ' || t[i] == '\t')
                        return NULL;
        *len = n;
        return t;
}

enum mls_auth_result mls_auth_check_header(const mls_auth_t *a,
                                           const char *value,
                                           struct mls_principal *out,
                                           const char **why)
{
        const char *tok;
        size_t n = 0;

        memset(out, 0, sizeof(*out));
        if (!mls_auth_enabled(a))
                return result(MLS_AUTH_OK, why, "authentication is off");
        tok = mls_auth_bearer(value, &n);
        if (!tok)
                return result(MLS_AUTH_MISSING, why, "no bearer token");
        return mls_auth_check_token(a, tok, n, out, why);
}

static json_t *credential(json_t *payload)
{
        json_t *v, *h;

        if (!json_is_object(payload))
                return NULL;
        if ((v = json_object_get(payload, "Authorization")) ||
            (v = json_object_get(payload, "authorization")))
                return v;
        h = json_object_get(payload, "headers");
        if (json_is_object(h) && ((v = json_object_get(h, "Authorization")) ||
                                  (v = json_object_get(h, "authorization"))))
                return v;
        return json_object_get(payload, "token");
}

int mls_auth_init_has_credential(json_t *payload)
{
        return credential(payload) != NULL;
}

enum mls_auth_result mls_auth_check_init(const mls_auth_t *a, json_t *payload,
                                         struct mls_principal *out,
                                         const char **why)
{
        json_t *v;
        const char *s, *tok;
        size_t n;

        memset(out, 0, sizeof(*out));
        if (!mls_auth_enabled(a))
                return result(MLS_AUTH_OK, why, "authentication is off");
        v = credential(payload);
        if (!v)
                return result(MLS_AUTH_MISSING, why,
                              "no credential in connection_init");
        if (!json_is_string(v))
                return result(MLS_AUTH_INVALID, why,
                              "the credential is not a string");
        s = json_string_value(v);
        n = json_string_length(v);
        if (strlen(s) != n)
                return result(MLS_AUTH_INVALID, why,
                              "the credential holds a NUL");
        tok = mls_auth_bearer(s, &n);
        if (!tok) {
                tok = s;
                n = json_string_length(v);
        }
        return mls_auth_check_token(a, tok, n, out, why);
}
