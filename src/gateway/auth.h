/*
 * The gateway's access control: who may use /graphql (and, when
 * configured, /metrics), and which tenants' events each caller receives.
 *
 * Credentials are bearer tokens: either one of a static list
 * (GATEWAY_AUTH_TOKEN, GATEWAY_AUTH_TOKENS, GATEWAY_AUTH_TOKENS_FILE) or a
 * JWT signed with HS256 under GATEWAY_JWT_SECRET(_FILE) (see jwt.h for what
 * verification refuses). A static token sees every tenant; a JWT's tenant
 * claim (GATEWAY_JWT_TENANT_CLAIM, default "tenants": an array of strings)
 * limits its holder to predictions whose metadata.tenant is one of them. A
 * JWT without the claim sees every tenant unless
 * GATEWAY_JWT_REQUIRE_TENANTS is set, in which case it is refused.
 *
 * Static tokens are kept only as SHA-256 digests and compared with
 * CRYPTO_memcmp, every one of them on every check, so neither timing nor a
 * memory dump of the table gives them away. Nothing here logs a credential
 * or the secret; errors name the setting, never its value.
 *
 * Threads: mls_auth_new()/free() at start-up and shutdown; checks on the
 * gateway loop thread (the object is read-only after creation).
 */
#ifndef MLS_GATEWAY_AUTH_H
#define MLS_GATEWAY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gateway/tenants.h"

typedef struct mls_auth mls_auth_t;

struct mls_auth_conf {
        const char *token;           /* GATEWAY_AUTH_TOKEN: one token */
        const char *tokens;          /* GATEWAY_AUTH_TOKENS: comma list */
        const char *tokens_file;     /* GATEWAY_AUTH_TOKENS_FILE */
        const char *jwt_secret;      /* GATEWAY_JWT_SECRET */
        const char *jwt_secret_file; /* GATEWAY_JWT_SECRET_FILE */
        int64_t leeway_s;            /* GATEWAY_JWT_LEEWAY_SECONDS */
        const char *audience;        /* GATEWAY_JWT_AUDIENCE; NULL: any */
        const char *issuer;          /* GATEWAY_JWT_ISSUER; NULL: any */
        const char *tenant_claim;    /* NULL: "tenants" */
        int require_tenants;         /* GATEWAY_JWT_REQUIRE_TENANTS */
        int64_t (*now)(void);        /* wall clock in seconds; NULL: time() */
};

/*
 * Builds the access policy, reading the token and secret files. Returns
 * NULL with a reason in errstr that names the setting at fault (a file that
 * cannot be read, an empty or malformed token, a JWT secret shorter than
 * 32 bytes, both a secret and a secret file) and never quotes a secret.
 * With no credential configured the policy lets everyone in
 * (mls_auth_enabled() is 0). Free with mls_auth_free().
 */
mls_auth_t *mls_auth_new(const struct mls_auth_conf *conf, char *errstr,
                         size_t errstr_size);
void mls_auth_free(mls_auth_t *a);

/* 1 when a credential is required (NULL: 0). */
int mls_auth_enabled(const mls_auth_t *a);
/* 1 when JWTs are accepted (and so tenant claims exist). */
int mls_auth_jwt_enabled(const mls_auth_t *a);
/* Number of static tokens. */
size_t mls_auth_static_tokens(const mls_auth_t *a);

enum mls_auth_result {
        MLS_AUTH_OK,
        MLS_AUTH_MISSING,         /* no credential was presented */
        MLS_AUTH_INVALID,         /* unknown token, bad JWT, wrong alg */
        MLS_AUTH_EXPIRED,         /* a JWT past exp (+ leeway) */
        MLS_AUTH_NOT_YET_VALID,   /* a JWT before nbf (- leeway) */
        MLS_AUTH_NO_TENANT_CLAIM, /* GATEWAY_JWT_REQUIRE_TENANTS */
};
#define MLS_AUTH_RESULTS 6

/* A short name for metrics labels and logs ("missing", "invalid", ...). */
const char *mls_auth_result_name(enum mls_auth_result r);
/* The WebSocket close reason of a refusal ("Forbidden: missing
 * credential", "Forbidden: token expired", ...): static, at most 123 bytes,
 * never quoting the credential. */
const char *mls_auth_result_close_reason(enum mls_auth_result r);

/* Who a caller is, once checked. */
struct mls_principal {
        int authenticated;      /* 0 when auth is off */
        mls_tenants_t *tenants; /* NULL: every tenant; owned reference */
        int64_t expires_s;      /* JWT: exp + leeway (wall clock); 0: none */
};

/* Releases what a principal holds and zeroes it. */
void mls_principal_clear(struct mls_principal *p);
/* 1 if the principal may see an event of tenant[0..len) (tenant NULL: an
 * event without a string metadata.tenant, which only unrestricted
 * principals see). */
int mls_principal_sees(const struct mls_principal *p, const char *tenant,
                       size_t len);

/*
 * Checks a bare token (no "Bearer "). On MLS_AUTH_OK fills *out (clear it
 * with mls_principal_clear()); otherwise *out is zeroed. *why (may be NULL)
 * gets a static reason that never quotes the token. With auth off every
 * call succeeds with an unrestricted principal.
 */
enum mls_auth_result mls_auth_check_token(const mls_auth_t *a,
                                          const char *token, size_t len,
                                          struct mls_principal *out,
                                          const char **why);
/* Checks an HTTP Authorization header value (NULL or "" when absent):
 * "Bearer <token>", the scheme in any case. Anything else is
 * MLS_AUTH_MISSING (no bearer credential). */
enum mls_auth_result mls_auth_check_header(const mls_auth_t *a,
                                           const char *value,
                                           struct mls_principal *out,
                                           const char **why);
/* Checks a connection_init payload (NULL when absent): its
 * "Authorization"/"authorization" string, else "headers"."Authorization"/
 * "authorization", else "token", each "Bearer <token>" or the bare token.
 * A credential key with a non-string value is MLS_AUTH_INVALID. */
enum mls_auth_result mls_auth_check_init(const mls_auth_t *a, json_t *payload,
                                         struct mls_principal *out,
                                         const char **why);
/* 1 if payload carries any credential key (as mls_auth_check_init reads). */
int mls_auth_init_has_credential(json_t *payload);

/* The token of "Bearer <token>" (scheme in any case, spaces around
 * allowed), or NULL. *len gets its length. */
const char *mls_auth_bearer(const char *value, size_t *len);

/* Wall clock seconds as the policy sees it. */
int64_t mls_auth_now(const mls_auth_t *a);

#endif
