/*
 * The project's one hash table: keys are byte strings (copied into the
 * map), values are pointers (borrowed). Buckets are chained and the table
 * doubles when it holds as many entries as buckets. Keys are hashed with
 * mls_hash() (common/hash.h), whose per-process random seed keeps keys
 * chosen by the network (model ids, GraphQL documents) from forcing
 * collisions.
 *
 * Memory comes from malloc() unless the map is given an allocator (an
 * arena, say) with mls_strmap_init_alloc().
 *
 * Threads: none of its own; a map belongs to one thread at a time (or is
 * guarded by its owner's lock).
 */
#ifndef MLS_STRMAP_H
#define MLS_STRMAP_H

#include <stddef.h>
#include <stdint.h>

/* One key and its value. The entry, and so key, stays at the same address
 * until it is removed or the map freed, so an owner may keep a pointer to
 * it (e.g. to remove itself later without copying the key). */
struct mls_strmap_entry {
        struct mls_strmap_entry *next; /* in the bucket */
        uint64_t hash;
        void *value;
        size_t klen;
        char key[]; /* klen bytes and a NUL (keys may hold NULs too) */
};

/* Where a map's memory comes from. */
struct mls_strmap_alloc {
        /* size bytes (need not be zeroed), or NULL when memory runs out */
        void *(*alloc)(void *ctx, size_t size);
        /* gives back what alloc returned; NULL when the memory goes away
         * with ctx (an arena) */
        void (*free)(void *ctx, void *p);
        void *ctx;
};

struct mls_strmap {
        struct mls_strmap_entry **buckets;
        size_t nbuckets; /* a power of two, or 0 before the first put */
        size_t count;    /* entries */
        struct mls_strmap_alloc mem; /* alloc NULL: malloc and free */
};

/* Initialises an empty map on malloc(); allocates nothing until the first
 * put. */
void mls_strmap_init(struct mls_strmap *m);
/* The same, with memory from a (copied into the map). */
void mls_strmap_init_alloc(struct mls_strmap *m,
                           const struct mls_strmap_alloc *a);
/* Frees every entry and the buckets, first calling free_value (if not NULL)
 * on each value. The map is then empty and may be used again, with the
 * same allocator. */
void mls_strmap_free(struct mls_strmap *m, void (*free_value)(void *));
/* The entry for the klen bytes at key, or NULL. */
struct mls_strmap_entry *mls_strmap_find(const struct mls_strmap *m,
                                         const char *key, size_t klen);
/* The value stored for key, or NULL (also when NULL was stored). */
void *mls_strmap_get(const struct mls_strmap *m, const char *key, size_t klen);
/* Stores value under key: a new entry (with a copy of the key), or the
 * existing entry with its value replaced. Returns the entry, or NULL when
 * memory runs out (the map is then unchanged). */
struct mls_strmap_entry *mls_strmap_put(struct mls_strmap *m, const char *key,
                                        size_t klen, void *value);
/* Removes key's entry (freeing it) and returns its value; NULL when key is
 * absent. */
void *mls_strmap_remove(struct mls_strmap *m, const char *key, size_t klen);
/* Removes e, an entry of m that mls_strmap_put() or mls_strmap_find()
 * returned, without hashing its key again; frees it. */
void mls_strmap_remove_entry(struct mls_strmap *m, struct mls_strmap_entry *e);
/* Calls fn on every entry, in no particular order. fn must not put or
 * remove. */
void mls_strmap_foreach(const struct mls_strmap *m,
                        void (*fn)(void *opaque, struct mls_strmap_entry *e),
                        void *opaque);

#endif
