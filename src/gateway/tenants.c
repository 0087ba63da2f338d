#include "gateway/tenants.h"

#include <stdlib.h>
#include <string.h>

int mls_tenant_name_ok(const char *name, size_t len)
{
        if (!name || len == 0 || len > MLS_TENANT_MAX_BYTES)
                return 0;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                        return 0;
        return 1;
}

struct name_ref {
        const char *s;
        size_t len;
};

static int cmp_name(const void *a, const void *b)
{
        const struct name_ref *x = a, *y = b;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->s, y->s, n);

        if (c)
                return c;
        return (x->len > y->len) - (x->len < y->len);
}

mls_tenants_t *mls_tenants_new(const char *const *names, const size_t *lens,
                               size_t n, const char **why)
{
        struct name_ref *v = NULL;
        mls_tenants_t *t = NULL;
        size_t keylen = 1, k = 0;
        char *p;

        if (n > MLS_TENANTS_MAX) {
                *why = "too many tenants";
                return NULL;
        }
        if (n && !(v = malloc(n * sizeof(*v))))
                goto oom;
        for (size_t i = 0; i < n; i++) {
                if (!mls_tenant_name_ok(names[i], lens[i])) {
                        *why = "a tenant is not a string of 1 to 256 "
                               "characters without control characters";
                        free(v);
                        return NULL;
                }
                v[i] = (struct name_ref){names[i], lens[i]};
        }
        if (n)
                qsort(v, n, sizeof(*v), cmp_name);
        /* de-duplicate */
        for (size_t i = 0; i < n; i++)
                if (k == 0 || cmp_name(&v[k - 1], &v[i]) != 0)
                        v[k++] = v[i];
        for (size_t i = 0; i < k; i++)
                keylen += v[i].len + (i ? 1 : 0);
        t = calloc(1, sizeof(*t));
        if (!t || !(t->key = malloc(keylen + 1)) ||
            (k && !(t->names = malloc(k * sizeof(*t->names)))))
                goto oom;
        t->refs = 1;
        t->n = k;
        t->keylen = keylen;
        p = t->key;
        *p++ = '=';
        for (size_t i = 0; i < k; i++) {
                if (i)
                        *p++ = '\0';
                memcpy(p, v[i].s, v[i].len);
                t->names[i] = p;
                p += v[i].len;
        }
        *p = '\0';
        free(v);
        return t;
oom:
        free(v);
        if (t) {
                free(t->key);
                free(t);
        }
        *why = "out of memory";
        return NULL;
}

mls_tenants_t *mls_tenants_from_json(json_t *array, const char **why)
{
        size_t n = json_array_size(array);
        const char **names;
        size_t *lens;
        mls_tenants_t *t;

        if (!json_is_array(array)) {
                *why = "the tenant claim is not an array of strings";
                return NULL;
        }
        if (n > MLS_TENANTS_MAX) {
                *why = "too many tenants";
                return NULL;
        }
        names = malloc((n ? n : 1) * sizeof(*names));
        lens = malloc((n ? n : 1) * sizeof(*lens));
        if (!names || !lens) {
                free(names);
                free(lens);
                *why = "out of memory";
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_array_get(array, i);
                if (!json_is_string(s)) {
                        free(names);
                        free(lens);
                        *why = "the tenant claim is not an array of strings";
                        return NULL;
                }
                names[i] = json_string_value(s);
                lens[i] = json_string_length(s);
        }
        t = mls_tenants_new(names, lens, n, why);
        free(names);
        free(lens);
        return t;
}

void mls_tenants_unref(mls_tenants_t *t)
{
        if (!t || --t->refs)
                return;
        free(t->names);
        free(t->key);
        free(t);
}

int mls_tenants_has(const mls_tenants_t *t, const char *name, size_t len)
{
        size_t lo = 0, hi = t ? t->n : 0;
        struct name_ref want = {name, len};

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                struct name_ref at = {t->names[mid], strlen(t->names[mid])};
                int c = cmp_name(&want, &at);
                if (c == 0)
                        return 1;
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return 0;
}
