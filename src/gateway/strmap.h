/*
 * A string-keyed hash map of pointers with a per-process random seed, so
 * that keys chosen by the network (model ids, documents) cannot force
 * collisions. Keys are copied; values are borrowed.
 *
 * Threads: not thread-safe; each map belongs to the gateway loop thread.
 */
#ifndef MLS_GATEWAY_STRMAP_H
#define MLS_GATEWAY_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct mls_strmap_entry {
        struct mls_strmap_entry *next;
        uint64_t hash;
        void *value;
        size_t klen;
        char key[]; /* klen bytes and a NUL */
};

struct mls_strmap {
        struct mls_strmap_entry **buckets;
        size_t nbuckets; /* power of two, or 0 before the first put */
        size_t count;
};

static inline void mls_strmap_init(struct mls_strmap *m)
{
        m->buckets = NULL;
        m->nbuckets = 0;
        m->count = 0;
}
/* Frees the map's storage, calling free_value (if not NULL) on each value.
 * The map may be used again after mls_strmap_init(). */
void mls_strmap_free(struct mls_strmap *m, void (*free_value)(void *));
/* The value stored for key, or NULL. */
void *mls_strmap_get(const struct mls_strmap *m, const char *key, size_t klen);
/* The entry for key (its key copy lives as long as the entry), or NULL. */
struct mls_strmap_entry *mls_strmap_find(const struct mls_strmap *m,
                                         const char *key, size_t klen);
/* Stores value under key, replacing any previous value. Returns the entry,
 * or NULL when memory runs out (the map is unchanged). */
struct mls_strmap_entry *mls_strmap_put(struct mls_strmap *m, const char *key,
                                        size_t klen, void *value);
/* Removes key and returns its value, or NULL if absent. */
void *mls_strmap_remove(struct mls_strmap *m, const char *key, size_t klen);
/* Calls fn on each entry, in no particular order. fn must not change the
 * map. */
void mls_strmap_foreach(const struct mls_strmap *m,
                        void (*fn)(void *opaque, struct mls_strmap_entry *e),
                        void *opaque);

#endif
