/*
 * Tenant sets: the tenants a subscriber may see events of (from a JWT's
 * tenant claim), matched against a prediction's `metadata.tenant`.
 *
 * A set is immutable once built and reference-counted, so a session's
 * principal and the hub's subscriber slices share one copy. Names are
 * sorted and de-duplicated; the set's key (its names joined by NUL) is the
 * same for every token that lists the same tenants, in any order, which is
 * what lets the hub share one rendered event among them.
 *
 * Threads: the gateway loop thread only (plain reference count).
 */
#ifndef MLS_GATEWAY_TENANTS_H
#define MLS_GATEWAY_TENANTS_H

#include <stddef.h>

#include <jansson.h>

/* A tenant name: 1 to 256 bytes, no control characters (so that NUL can
 * join them into a key). */
#define MLS_TENANT_MAX_BYTES 256
/* Most tenants one token may list. */
#define MLS_TENANTS_MAX 1024

typedef struct mls_tenants {
        unsigned refs;
        size_t n;
        const char **names; /* n pointers into key, sorted */
        size_t keylen;
        char *key; /* "=" then the names joined by NUL, NUL-terminated */
} mls_tenants_t;

/* Builds a set from n names (copied). Returns NULL with *why set (a
 * static string) when a name is not valid, there are too many, or memory
 * runs out. The new set holds one reference. */
mls_tenants_t *mls_tenants_new(const char *const *names, const size_t *lens,
                               size_t n, const char **why);
/* Builds a set from a JSON array of strings; as mls_tenants_new(). */
mls_tenants_t *mls_tenants_from_json(json_t *array, const char **why);
static inline mls_tenants_t *mls_tenants_ref(mls_tenants_t *t)
{
        if (t)
                t->refs++;
        return t;
}
/* Drops a reference; the last one frees the set. NULL is ignored. */
void mls_tenants_unref(mls_tenants_t *t);
/* 1 if name[0..len) is in the set. */
int mls_tenants_has(const mls_tenants_t *t, const char *name, size_t len);
/* 1 if name[0..len) is a valid tenant name. */
int mls_tenant_name_ok(const char *name, size_t len);

#endif
