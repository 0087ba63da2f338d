#include "gateway/strmap.h"

#include "common/hash.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *key, size_t len)
{
        return mls_hash(key, len);
}

void mls_strmap_free(struct mls_strmap *m, void (*free_value)(void *))
{
        for (size_t b = 0; b < m->nbuckets; b++) {
                struct mls_strmap_entry *e = m->buckets[b], *n;
                for (; e; e = n) {
                        n = e->next;
                        if (free_value)
                                free_value(e->value);
                        free(e);
                }
        }
        free(m->buckets);
        mls_strmap_init(m);
}

struct mls_strmap_entry *mls_strmap_find(const struct mls_strmap *m,
                                         const char *key, size_t klen)
{
        uint64_t h;

        if (!m->nbuckets)
                return NULL;
        h = hash(key, klen);
        for (struct mls_strmap_entry *e = m->buckets[h & (m->nbuckets - 1)]; e;
             e = e->next)
                if (e->hash == h && e->klen == klen &&
                    memcmp(e->key, key, klen) == 0)
                        return e;
        return NULL;
}

void *mls_strmap_get(const struct mls_strmap *m, const char *key, size_t klen)
{
        struct mls_strmap_entry *e = mls_strmap_find(m, key, klen);

        return e ? e->value : NULL;
}

static int grow(struct mls_strmap *m)
{
        size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
        struct mls_strmap_entry **b = calloc(n, sizeof(*b));

        if (!b)
                return -1;
        for (size_t i = 0; i < m->nbuckets; i++) {
                struct mls_strmap_entry *e = m->buckets[i], *next;
                for (; e; e = next) {
                        next = e->next;
                        e->next = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        }
        free(m->buckets);
        m->buckets = b;
        m->nbuckets = n;
        return 0;
}

struct mls_strmap_entry *mls_strmap_put(struct mls_strmap *m, const char *key,
                                        size_t klen, void *value)
{
        struct mls_strmap_entry *e = mls_strmap_find(m, key, klen);
        size_t b;

        if (e) {
                e->value = value;
                return e;
        }
        if (m->count >= m->nbuckets && grow(m) < 0)
                return NULL;
        e = malloc(sizeof(*e) + klen + 1);
        if (!e)
                return NULL;
        e->hash = hash(key, klen);
        e->value = value;
        e->klen = klen;
        memcpy(e->key, key, klen);
        e->key[klen] = '\0';
        b = e->hash & (m->nbuckets - 1);
        e->next = m->buckets[b];
        m->buckets[b] = e;
        m->count++;
        return e;
}

void *mls_strmap_remove(struct mls_strmap *m, const char *key, size_t klen)
{
        struct mls_strmap_entry **pp, *e;
        uint64_t h;
        void *v;

        if (!m->nbuckets)
                return NULL;
        h = hash(key, klen);
        for (pp = &m->buckets[h & (m->nbuckets - 1)]; (e = *pp);
             pp = &e->next) {
                if (e->hash == h && e->klen == klen &&
                    memcmp(e->key, key, klen) == 0) {
                        *pp = e->next;
                        v = e->value;
                        free(e);
                        m->count--;
                        return v;
                }
        }
        return NULL;
}

void mls_strmap_foreach(const struct mls_strmap *m,
                        void (*fn)(void *opaque, struct mls_strmap_entry *e),
                        void *opaque)
{
        for (size_t b = 0; b < m->nbuckets; b++)
                for (struct mls_strmap_entry *e = m->buckets[b]; e; e = e->next)
                        fn(opaque, e);
}
