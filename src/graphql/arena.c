/*
 * A bump allocator: ASTs, schema tables and execution plans are made of many
 * small pieces that all die together. Also the name maps (mls__gql_map):
 * common/strmap.h tables that take their memory from an arena.
 */
#include <stdlib.h>
#include <string.h>

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

/* --- name map ----------------------------------------------------------- */

static void *map_alloc(void *arena, size_t size)
{
        return mls__gql_arena_alloc(arena, size);
}

void mls__gql_map_init(struct mls__gql_map *m, struct mls__gql_arena *a)
{
        /* nothing to give back: it all goes with the arena */
        const struct mls_strmap_alloc mem = {
                .alloc = map_alloc,
                .free = NULL,
                .ctx = a,
        };

        mls_strmap_init_alloc(&m->map, &mem);
}

unsigned *mls__gql_map_get(const struct mls__gql_map *m, const char *key)
{
        return mls_strmap_get(&m->map, key, strlen(key));
}

int mls__gql_map_put(struct mls__gql_map *m, const char *key, unsigned val)
{
        size_t klen = strlen(key);
        unsigned *cell;

        if (mls_strmap_find(&m->map, key, klen))
                return 1;
        cell = mls__gql_arena_alloc(m->map.mem.ctx, sizeof(*cell));
        if (!cell || !mls_strmap_put(&m->map, key, klen, cell))
                return -1;
        *cell = val;
        return 0;
}
