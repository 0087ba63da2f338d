/*
 * A bump allocator: ASTs, schema tables and execution plans are made of many
 * small pieces that all die together.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "graphql/graphql_int.h"

#define ARENA_ALIGN 16
#define ARENA_CHUNK 8192

struct mls__gql_chunk {
        struct mls__gql_chunk *next;
        size_t size;
        /* followed by the memory handed out, aligned */
};

#define CHUNK_HDR                                            \
        ((sizeof(struct mls__gql_chunk) + ARENA_ALIGN - 1) & \
         ~(size_t)(ARENA_ALIGN - 1))

void mls__gql_arena_init(struct mls__gql_arena *a)
{
        memset(a, 0, sizeof(*a));
}

void *mls__gql_arena_alloc(struct mls__gql_arena *a, size_t size)
{
        struct mls__gql_chunk *c;
        size_t want, csize;
        void *p;

        if (size == 0)
                size = 1;
        if (size > SIZE_MAX / 2)
                return NULL;
        want = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        if (want > a->left) {
                /* Big requests get a chunk of their own so that the
                 * current chunk keeps serving small ones. */
                csize = want > ARENA_CHUNK / 4 ? want : ARENA_CHUNK;
                c = malloc(CHUNK_HDR + csize);
                if (!c)
                        return NULL;
                c->size = csize;
                a->bytes += CHUNK_HDR + csize;
                if (csize == want && a->chunks) {
                        c->next = a->chunks->next;
                        a->chunks->next = c;
                        p = (char *)c + CHUNK_HDR;
                        memset(p, 0, want);
                        return p;
                }
                c->next = a->chunks;
                a->chunks = c;
                a->cur = (char *)c + CHUNK_HDR;
                a->left = csize;
        }
        p = a->cur;
        a->cur += want;
        a->left -= want;
        memset(p, 0, want);
        return p;
}

char *mls__gql_arena_strndup(struct mls__gql_arena *a, const char *s, size_t n)
{
        char *p = mls__gql_arena_alloc(a, n + 1);

        if (!p)
                return NULL;
        if (n)
                memcpy(p, s, n);
        p[n] = '\0';
        return p;
}

void mls__gql_arena_free(struct mls__gql_arena *a)
{
        struct mls__gql_chunk *c = a->chunks, *next;

        while (c) {
                next = c->next;
                free(c);
                c = next;
        }
        memset(a, 0, sizeof(*a));
}

/* --- string map ------------------------------------------------------------
 */

static uint64_t hash_str(const char *s)
{
        return mls_hash(s, strlen(s));
}

void mls__gql_map_init(struct mls__gql_map *m, struct mls__gql_arena *a)
{
        memset(m, 0, sizeof(*m));
        m->arena = a;
}

unsigned *mls__gql_map_get(const struct mls__gql_map *m, const char *key)
{
        size_t i;

        if (m->cap == 0)
                return NULL;
        for (i = hash_str(key) & (m->cap - 1); m->keys[i];
             i = (i + 1) & (m->cap - 1))
                if (strcmp(m->keys[i], key) == 0)
                        return &m->vals[i];
        return NULL;
}

static int map_grow(struct mls__gql_map *m)
{
        size_t ncap = m->cap ? m->cap * 2 : 16, i, j;
        const char **keys;
        unsigned *vals;

        keys = mls__gql_arena_alloc(m->arena, ncap * sizeof(*keys));
        vals = mls__gql_arena_alloc(m->arena, ncap * sizeof(*vals));
        if (!keys || !vals)
                return -1;
        for (i = 0; i < m->cap; i++) {
                if (!m->keys[i])
                        continue;
                for (j = hash_str(m->keys[i]) & (ncap - 1); keys[j];
                     j = (j + 1) & (ncap - 1))
                        ;
                keys[j] = m->keys[i];
                vals[j] = m->vals[i];
        }
        /* the old arrays stay in the arena until it is freed */
        m->keys = keys;
        m->vals = vals;
        m->cap = ncap;
        return 0;
}

int mls__gql_map_put(struct mls__gql_map *m, const char *key, unsigned val)
{
        size_t i;

        if (mls__gql_map_get(m, key))
                return 1;
        if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
                return -1;
        for (i = hash_str(key) & (m->cap - 1); m->keys[i];
             i = (i + 1) & (m->cap - 1))
                ;
        m->keys[i] = key;
        m->vals[i] = val;
        m->n++;
        return 0;
}
