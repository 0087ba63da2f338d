/*
 * A bounded LRU cache of valid documents keyed by their exact text, so the
 * documents clients send again and again are parsed and validated once.
 * Entries hold a document reference; eviction drops it, so a subscription
 * still using an evicted document keeps it alive.
 *
 * The text -> entry index is a common/strmap.h table (which keeps the copy
 * of the text); the entries themselves form the LRU list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

struct entry {
        struct mls_strmap_entry *key; /* the text, in c->index */
        mls_gql_doc_t *doc;
        struct entry *prev, *next; /* LRU list, most recent first */
};

struct mls_gql_cache {
        const mls_gql_schema_t *schema;
        struct mls_gql_limits limits;
        size_t max_entries;
        struct mls_strmap index; /* document text -> struct entry */
        struct entry *head, *tail;
        struct mls_gql_cache_stats stats;
};

mls_gql_cache_t *mls_gql_cache_new(const mls_gql_schema_t *schema,
                                   const struct mls_gql_limits *limits,
                                   size_t max_entries, char *errstr,
                                   size_t errstr_size)
{
        mls_gql_cache_t *c = calloc(1, sizeof(*c));

        if (!c) {
                snprintf(errstr, errstr_size,
                         "out of memory creating the GraphQL document cache");
                return NULL;
        }
        c->schema = schema;
        mls__gql_limits_fill(&c->limits, limits);
        c->max_entries = max_entries ? max_entries : 256;
        mls_strmap_init(&c->index);
        return c;
}

static void unlink_lru(mls_gql_cache_t *c, struct entry *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                c->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->tail = e->prev;
        e->prev = e->next = NULL;
}

static void push_front(mls_gql_cache_t *c, struct entry *e)
{
        e->prev = NULL;
        e->next = c->head;
        if (c->head)
                c->head->prev = e;
        c->head = e;
        if (!c->tail)
                c->tail = e;
}

/* Forgets e: out of the index and the list, its document reference
 * dropped. */
static void drop(mls_gql_cache_t *c, struct entry *e)
{
        mls_strmap_remove(&c->index, e->key->key, e->key->klen);
        unlink_lru(c, e);
        mls_gql_doc_unref(e->doc);
        free(e);
        c->stats.entries--;
}

mls_gql_doc_t *mls_gql_cache_get(mls_gql_cache_t *c, const char *text,
                                 size_t len, json_t **errors)
{
        struct entry *e = mls_strmap_get(&c->index, text, len);
        mls_gql_doc_t *doc;

        *errors = NULL;
        if (e) {
                c->stats.hits++;
                unlink_lru(c, e);
                push_front(c, e);
                return mls_gql_doc_ref(e->doc);
        }
        c->stats.misses++;
        doc = mls_gql_doc_new(c->schema, text, len, &c->limits, errors);
        if (!doc)
                return NULL;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->key = mls_strmap_put(&c->index, text, len, e))) {
                /* still usable, just not cached */
                free(e);
                return doc;
        }
        e->doc = mls_gql_doc_ref(doc);
        push_front(c, e);
        c->stats.entries++;
        while (c->stats.entries > c->max_entries) {
                drop(c, c->tail);
                c->stats.evictions++;
        }
        return doc;
}

void mls_gql_cache_stats(const mls_gql_cache_t *c,
                         struct mls_gql_cache_stats *stats)
{
        *stats = c->stats;
}

void mls_gql_cache_free(mls_gql_cache_t *c)
{
        if (!c)
                return;
        while (c->head)
                drop(c, c->head);
        mls_strmap_free(&c->index, NULL);
        free(c);
}
