#include "gateway/history.h"

#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/strmap.h"

/* One prediction held. Entries form one list, oldest first, across all
 * models; each model also holds its own in a ring, indexed by ordinal. */
struct entry {
        struct entry *newer;
        struct hmodel *model;
        uint64_t id_hash; /* of the inference id, which follows data */
        size_t idlen;
        int indexed; /* in h->ids; 0 when a newer entry took the id */
        uint64_t ord;
        int64_t at_ms;
        size_t cost; /* what it counts against max_bytes */
        size_t len;
        char data[]; /* the payload (len bytes), then the id */
};

/* A slot of the id index: open addressing with linear probing, at most
 * half full, so that adding and evicting a prediction touch one or two
 * cache lines rather than a chain of separately allocated keys. */
struct slot {
        uint64_t hash;
        struct entry *e; /* NULL: empty */
};

struct hmodel {
        struct mls_strmap_entry *key; /* in h->models */
        struct entry **ring;          /* held entries, oldest at head */
        size_t head, count, cap;
        uint64_t first; /* the ordinal of the model's first prediction */
        uint64_t base;  /* the ordinal of ring[head] (of the next one when
                           count is 0) */
        uint64_t epoch; /* this incarnation of the model in the history */
};

struct mls_history {
        size_t max_bytes, bytes, entries;
        int64_t max_age_ms;
        struct entry *oldest, *newest;
        struct mls_strmap models; /* model id -> hmodel */
        struct slot *ids;         /* inference id -> entry */
        size_t ids_mask, ids_count;
        uint64_t epochs, evicted, refused;
};

mls_history_t *mls_history_new(size_t max_bytes, int64_t max_age_ms)
{
        mls_history_t *h;

        if (!max_bytes)
                return NULL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        h->max_bytes = max_bytes;
        h->max_age_ms = max_age_ms;
        mls_strmap_init(&h->models);
        return h;
}

static void free_model(void *p)
{
        struct hmodel *m = p;

        free(m->ring);
        free(m);
}

void mls_history_free(mls_history_t *h)
{
        struct entry *e, *next;

        if (!h)
                return;
        for (e = h->oldest; e; e = next) {
                next = e->newer;
                free(e);
        }
        free(h->ids);
        mls_strmap_free(&h->models, free_model);
        free(h);
}

static const char *entry_id(const struct entry *e)
{
        return e->data + e->len;
}

/* The slot holding id, or the empty one where it would go. The index must
 * exist. */
static struct slot *id_slot(const mls_history_t *h, uint64_t hash,
                            const char *id, size_t len)
{
        for (size_t i = hash & h->ids_mask;; i = (i + 1) & h->ids_mask) {
                struct slot *s = &h->ids[i];
                if (!s->e || (s->hash == hash && s->e->idlen == len &&
                              memcmp(entry_id(s->e), id, len) == 0))
                        return s;
        }
}

static struct entry *find_id(const mls_history_t *h, const char *id, size_t len)
{
        return h->ids_count ? id_slot(h, mls_hash(id, len), id, len)->e : NULL;
}

/* Doubles the index (or makes the first one). -1 when memory runs out,
 * the index unchanged. */
static int grow_ids(mls_history_t *h)
{
        size_t n = h->ids ? 2 * (h->ids_mask + 1) : 64;
        struct slot *ns = calloc(n, sizeof(*ns));

        if (!ns)
                return -1;
        for (size_t i = 0; h->ids && i <= h->ids_mask; i++) {
                size_t j = h->ids[i].hash & (n - 1);
                if (!h->ids[i].e)
                        continue;
                while (ns[j].e)
                        j = (j + 1) & (n - 1);
                ns[j] = h->ids[i];
        }
        free(h->ids);
        h->ids = ns;
        h->ids_mask = n - 1;
        return 0;
}

/* Takes e out of the index, moving later slots of its probe run back so
 * that no lookup stops early (no tombstones). */
static void unindex(mls_history_t *h, struct entry *e)
{
        size_t i = e->id_hash & h->ids_mask, j, home;

        while (h->ids[i].e != e)
                i = (i + 1) & h->ids_mask;
        for (j = i;;) {
                j = (j + 1) & h->ids_mask;
                if (!h->ids[j].e)
                        break;
                home = h->ids[j].hash & h->ids_mask;
                /* slot j may fill the hole at i unless its home lies
                 * cyclically in (i, j] */
                if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
                        continue;
                h->ids[i] = h->ids[j];
                i = j;
        }
        h->ids[i].e = NULL;
        h->ids_count--;
}

/* Resizes m's ring to ncap slots (>= count), counting the change. */
static int resize_ring(mls_history_t *h, struct hmodel *m, size_t ncap)
{
        struct entry **r = malloc(ncap * sizeof(*r));

        if (!r)
                return -1;
        for (size_t i = 0; i < m->count; i++)
                r[i] = m->ring[(m->head + i) % m->cap];
        free(m->ring);
        h->bytes = h->bytes - m->cap * sizeof(*r) + ncap * sizeof(*r);
        m->ring = r;
        m->cap = ncap;
        m->head = 0;
        return 0;
}

/* Evicts the oldest prediction; returns its model when that leaves the
 * model with nothing held, else NULL. */
static struct hmodel *evict_oldest(mls_history_t *h)
{
        struct entry *e = h->oldest;
        struct hmodel *m = e->model;

        h->oldest = e->newer;
        if (h->oldest)
                __builtin_prefetch(h->oldest, 1); /* likely the next evicted */
        else
                h->newest = NULL;
        /* the oldest of all is the oldest of its model */
        m->head = (m->head + 1) % m->cap;
        m->count--;
        m->base++;
        if (e->indexed)
                unindex(h, e);
        h->bytes -= e->cost;
        h->entries--;
        h->evicted++;
        free(e);
        if (m->cap > 64 && m->count < m->cap / 4)
                resize_ring(h, m, m->cap / 2); /* kept as is if it fails */
        return m->count ? NULL : m;
}

void mls_history_expire(mls_history_t *h, int64_t now_ms)
{
        if (!h->max_age_ms)
                return;
        while (h->oldest && h->oldest->at_ms < now_ms - h->max_age_ms)
                evict_oldest(h);
}

struct find_empty {
        struct hmodel *found;
};

static void find_empty_fn(void *opaque, struct mls_strmap_entry *e)
{
        struct find_empty *f = opaque;
        struct hmodel *m = e->value;

        if (!f->found && m->count == 0)
                f->found = m;
}

static void forget_model(mls_history_t *h, struct hmodel *m)
{
        h->bytes -= m->cap * sizeof(*m->ring);
        mls_strmap_remove(&h->models, m->key->key, m->key->klen);
        free_model(m);
}

/* Makes room for a new model: forgets one with nothing held, or else
 * evicts the oldest predictions until one model has nothing left (so a
 * flood of model ids ages out like any other flood, and never locks new
 * models out). -1 only when nothing is held at all. */
static int make_model_room(mls_history_t *h)
{
        struct find_empty f = {NULL};
        struct hmodel *m = NULL;

        mls_strmap_foreach(&h->models, find_empty_fn, &f);
        if (f.found) {
                forget_model(h, f.found);
                return 0;
        }
        while (h->oldest && !(m = evict_oldest(h)))
                ;
        if (!m)
                return -1;
        forget_model(h, m);
        return 0;
}

static struct hmodel *get_model(mls_history_t *h, const char *id, size_t len,
                                int create)
{
        struct hmodel *m = mls_strmap_get(&h->models, id, len);

        if (m || !create)
                return m;
        if (h->models.count >= MLS_HISTORY_MAX_MODELS && make_model_room(h) < 0)
                return NULL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->key = mls_strmap_put(&h->models, id, len, m);
        if (!m->key) {
                free(m);
                return NULL;
        }
        m->first = m->base = 1;
        m->epoch = ++h->epochs;
        return m;
}

void mls_history_prefetch(const mls_history_t *h, uint64_t id_hash)
{
        if (!h->ids)
                return;
        __builtin_prefetch(&h->ids[id_hash & h->ids_mask], 1);
        /* the slot the next eviction empties: evict_oldest() brought its
         * entry in when it made it the oldest */
        if (h->oldest)
                __builtin_prefetch(&h->ids[h->oldest->id_hash & h->ids_mask],
                                   1);
}

int mls_history_add(mls_history_t *h, const char *model_id, size_t mlen,
                    const char *id, size_t idlen, uint64_t id_hash,
                    const char *payload, size_t len, int64_t now_ms)
{
        /* the entry, and two index slots (the index is at most half full) */
        size_t cost =
                sizeof(struct entry) + len + idlen + 2 * sizeof(struct slot);
        struct entry *e;
        struct hmodel *m;
        struct slot *s;

        mls_history_expire(h, now_ms);
        if (cost > h->max_bytes / 2 || !(m = get_model(h, model_id, mlen, 1))) {
                h->refused++;
                return -1;
        }
        if (m->count == m->cap &&
            resize_ring(h, m, m->cap ? m->cap * 2 : 8) < 0) {
                h->refused++;
                return -1;
        }
        if ((!h->ids || 2 * (h->ids_count + 1) > h->ids_mask + 1) &&
            grow_ids(h) < 0) {
                h->refused++;
                return -1;
        }
        e = malloc(sizeof(*e) + len + idlen);
        if (!e) {
                h->refused++;
                return -1;
        }
        s = id_slot(h, id_hash, id, idlen);
        if (s->e)
                s->e->indexed = 0; /* the id was seen before: newest wins */
        else
                h->ids_count++;
        s->hash = id_hash;
        s->e = e;
        e->newer = NULL;
        e->model = m;
        e->id_hash = id_hash;
        e->idlen = idlen;
        e->indexed = 1;
        e->ord = m->base + m->count;
        e->at_ms = now_ms;
        e->cost = cost;
        e->len = len;
        memcpy(e->data, payload, len);
        memcpy(e->data + len, id, idlen);
        m->ring[(m->head + m->count) % m->cap] = e;
        m->count++;
        if (h->newest)
                h->newest->newer = e;
        else
                h->oldest = e;
        h->newest = e;
        h->bytes += cost;
        h->entries++;
        /* the new entry itself always stays: it is at most half the
         * budget, and the rings' slack at most the other half */
        while (h->bytes > h->max_bytes && h->oldest != e)
                evict_oldest(h);
        return 0;
}

int mls_history_seek(mls_history_t *h, const char *model_id, size_t mlen,
                     const char *id, size_t idlen, struct mls_history_cursor *c)
{
        struct hmodel *m = get_model(h, model_id, mlen, 0);
        struct entry *e = find_id(h, id, idlen);

        if (!m) {
                /* from the model's first prediction, whenever it comes */
                c->next = 0;
                c->epoch = 0;
                return -1;
        }
        c->epoch = m->epoch;
        if (e && e->model == m) {
                c->next = e->ord + 1;
                return 0;
        }
        c->next = m->base;
        return -1;
}

enum mls_history_read mls_history_read(mls_history_t *h, const char *model_id,
                                       size_t mlen,
                                       struct mls_history_cursor *c,
                                       struct mls_history_item *item,
                                       uint64_t *missed)
{
        struct hmodel *m = get_model(h, model_id, mlen, 0);
        struct entry *e;

        *missed = 0;
        if (!m)
                return MLS_HISTORY_END;
        if (c->epoch == 0) {
                c->epoch = m->epoch;
                c->next = m->first;
        } else if (c->epoch != m->epoch) {
                /* the model was forgotten and came back: how many went by
                 * meanwhile is unknown */
                c->epoch = m->epoch;
                c->next = m->base;
                return MLS_HISTORY_MISSED;
        }
        if (c->next < m->base) {
                *missed = m->base - c->next;
                c->next = m->base;
                return MLS_HISTORY_MISSED;
        }
        if (c->next >= m->base + m->count)
                return MLS_HISTORY_END;
        e = m->ring[(m->head + (c->next - m->base)) % m->cap];
        item->data = e->data;
        item->len = e->len;
        item->at_ms = e->at_ms;
        c->next++;
        return MLS_HISTORY_ITEM;
}

int64_t mls_history_oldest_ms(const mls_history_t *h, const char *model_id,
                              size_t mlen)
{
        struct hmodel *m = mls_strmap_get(&h->models, model_id, mlen);

        return m && m->count ? m->ring[m->head]->at_ms : -1;
}

void mls_history_stats(const mls_history_t *h, struct mls_history_stats *st)
{
        st->bytes = h->bytes;
        st->entries = h->entries;
        st->models = h->models.count;
        st->evicted = h->evicted;
        st->refused = h->refused;
}
