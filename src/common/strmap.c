/*
 * A chained hash table keyed by byte strings (common/strmap.h).
 */
#include "common/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

#define FIRST_BUCKETS 16

static void *mem_get(const struct mls_strmap *m, size_t size)
{
        return m->mem.alloc ? m->mem.alloc(m->mem.ctx, size) : malloc(size);
}

static void mem_put(const struct mls_strmap *m, void *p)
{
        if (!m->mem.alloc)
                free(p);
        else if (m->mem.free)
                m->mem.free(m->mem.ctx, p);
}

void mls_strmap_init(struct mls_strmap *m)
{
        memset(m, 0, sizeof(*m));
}

void mls_strmap_init_alloc(struct mls_strmap *m,
                           const struct mls_strmap_alloc *a)
{
        mls_strmap_init(m);
        if (a)
                m->mem = *a;
}

void mls_strmap_free(struct mls_strmap *m, void (*free_value)(void *))
{
        struct mls_strmap_alloc mem = m->mem;

        for (size_t b = 0; b < m->nbuckets; b++) {
                struct mls_strmap_entry *e = m->buckets[b], *next;

                for (; e; e = next) {
                        next = e->next;
                        if (free_value)
                                free_value(e->value);
                        mem_put(m, e);
                }
        }
        if (m->buckets)
                mem_put(m, m->buckets);
        mls_strmap_init_alloc(m, &mem);
}

/* The entry for key, whose hash is h. */
static struct mls_strmap_entry *lookup(const struct mls_strmap *m, uint64_t h,
                                       const char *key, size_t klen)
{
        struct mls_strmap_entry *e;

        for (e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
                if (e->hash == h && e->klen == klen &&
                    (klen == 0 || memcmp(e->key, key, klen) == 0))
                        return e;
        return NULL;
}

struct mls_strmap_entry *mls_strmap_find(const struct mls_strmap *m,
                                         const char *key, size_t klen)
{
        if (m->count == 0)
                return NULL;
        return lookup(m, mls_hash(key, klen), key, klen);
}

void *mls_strmap_get(const struct mls_strmap *m, const char *key, size_t klen)
{
        struct mls_strmap_entry *e = mls_strmap_find(m, key, klen);

        return e ? e->value : NULL;
}

/* Doubles the bucket array (or makes the first one) and rehashes into it.
 * Returns -1, the map untouched, when memory runs out. */
static int grow(struct mls_strmap *m)
{
        size_t n = m->nbuckets ? 2 * m->nbuckets : FIRST_BUCKETS;
        struct mls_strmap_entry **nb;

        if (n > SIZE_MAX / sizeof(*nb))
                return -1;
        nb = mem_get(m, n * sizeof(*nb));
        if (!nb)
                return -1;
        memset(nb, 0, n * sizeof(*nb));
        for (size_t b = 0; b < m->nbuckets; b++) {
                struct mls_strmap_entry *e = m->buckets[b], *next;

                for (; e; e = next) {
                        next = e->next;
                        e->next = nb[e->hash & (n - 1)];
                        nb[e->hash & (n - 1)] = e;
                }
        }
        if (m->buckets)
                mem_put(m, m->buckets);
        m->buckets = nb;
        m->nbuckets = n;
        return 0;
}

struct mls_strmap_entry *mls_strmap_put(struct mls_strmap *m, const char *key,
                                        size_t klen, void *value)
{
        uint64_t h = mls_hash(key, klen);
        struct mls_strmap_entry *e = m->count ? lookup(m, h, key, klen) : NULL;
        size_t b;

        if (e) {
                e->value = value;
                return e;
        }
        if (klen > SIZE_MAX - sizeof(*e) - 1)
                return NULL;
        if (m->count >= m->nbuckets && grow(m) < 0)
                return NULL;
        e = mem_get(m, sizeof(*e) + klen + 1);
        if (!e)
                return NULL;
        e->hash = h;
        e->value = value;
        e->klen = klen;
        if (klen)
                memcpy(e->key, key, klen);
        e->key[klen] = '\0';
        b = h & (m->nbuckets - 1);
        e->next = m->buckets[b];
        m->buckets[b] = e;
        m->count++;
        return e;
}

void *mls_strmap_remove(struct mls_strmap *m, const char *key, size_t klen)
{
        struct mls_strmap_entry **pp, *e;
        uint64_t h;
        void *value;

        if (m->count == 0)
                return NULL;
        h = mls_hash(key, klen);
        for (pp = &m->buckets[h & (m->nbuckets - 1)]; (e = *pp) != NULL;
             pp = &e->next) {
                if (e->hash != h || e->klen != klen ||
                    (klen && memcmp(e->key, key, klen) != 0))
                        continue;
                *pp = e->next;
                value = e->value;
                mem_put(m, e);
                m->count--;
                return value;
        }
        return NULL;
}

void mls_strmap_remove_entry(struct mls_strmap *m, struct mls_strmap_entry *e)
{
        struct mls_strmap_entry **pp = &m->buckets[e->hash & (m->nbuckets - 1)];

        while (*pp != e)
                pp = &(*pp)->next;
        *pp = e->next;
        mem_put(m, e);
        m->count--;
}

void mls_strmap_foreach(const struct mls_strmap *m,
                        void (*fn)(void *opaque, struct mls_strmap_entry *e),
                        void *opaque)
{
        for (size_t b = 0; b < m->nbuckets; b++)
                for (struct mls_strmap_entry *e = m->buckets[b]; e; e = e->next)
                        fn(opaque, e);
}
