/*
 * The monitor (monitor.h): two tables of windows, models and (model,
 * tenant) pairs, each a hash map plus two activity lists, and the
 * statistics kept incrementally. Gateway loop thread only.
 */
#include "gateway/monitor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/strmap.h"

#define PAIR_KEY_MAX 1024 /* model id NUL tenant */
#define MIN_CAP 4         /* first allocation of a window */
#define OTHER "__other__" /* the metrics' overflow series */

struct model {
        struct mls_strmap_entry *entry; /* its key: model id [NUL tenant] */
        struct model *prev, *next;      /* in its activity list */
        int seg;                        /* 0: seen once, 1: seen again */
        double *win;                    /* ring in arrival order */
        unsigned len, pos, cap, since_sum;
        double sum;           /* of the window */
        int64_t active_ms;    /* last activity (or found in use) */
        int64_t last_seen_ms; /* last prediction or heartbeat */
        int64_t heartbeat_ms; /* models only: last heartbeat listing it */
        uint64_t predictions;
        /* metrics (models only) */
        mls_series_t *s_size, *s_seen, *s_mean, *s_p95;
        unsigned export_gen;
        struct model *xprev, *xnext; /* models that have series */
};

struct table {
        struct mls_strmap map;
        struct model *head[2], *tail[2]; /* most recently active first */
};

struct mls_monitor {
        struct table models;  /* model id -> struct model */
        struct table tenants; /* model id NUL tenant -> struct model */
        unsigned window, max_models;
        int connected, track_tenants;
        uint64_t untracked, evicted, expired;
        int64_t idle_ms;
        int (*in_use)(void *opaque, const char *model_id);
        void *in_use_opaque;
        json_t *ids; /* sorted ids, NULL after the set changed */
        /* totals over the models table, for the overflow series */
        uint64_t total_len;
        double total_sum;
        struct mls_monitor_metrics mm;
        struct model *exported; /* models that have series */
        unsigned export_gen;
        mls_series_t *o_size, *o_mean;
};

mls_monitor_t *mls_monitor_new(unsigned window, unsigned max_models)
{
        mls_monitor_t *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        mls_strmap_init(&m->models.map);
        mls_strmap_init(&m->tenants.map);
        m->window = window ? window : 1;
        m->max_models = max_models;
        return m;
}

static void free_model(void *p)
{
        struct model *md = p;

        free(md->win);
        free(md);
}

void mls_monitor_free(mls_monitor_t *m)
{
        if (!m)
                return;
        mls_strmap_free(&m->models.map, free_model);
        mls_strmap_free(&m->tenants.map, free_model);
        json_decref(m->ids);
        free(m);
}

void mls_monitor_track_tenants(mls_monitor_t *m, int on)
{
        m->track_tenants = on != 0;
}

void mls_monitor_set_idle(mls_monitor_t *m, int64_t idle_ms,
                          int (*in_use)(void *opaque, const char *model_id),
                          void *opaque)
{
        m->idle_ms = idle_ms > 0 ? idle_ms : 0;
        m->in_use = in_use;
        m->in_use_opaque = opaque;
}

void mls_monitor_set_connected(mls_monitor_t *m, int connected)
{
        m->connected = connected != 0;
}

int mls_monitor_connected(const mls_monitor_t *m)
{
        return m->connected;
}

/* --- activity lists ------------------------------------------------------ */

static void unlink_model(struct table *t, struct model *md)
{
        if (md->prev)
                md->prev->next = md->next;
        else
                t->head[md->seg] = md->next;
        if (md->next)
                md->next->prev = md->prev;
        else
                t->tail[md->seg] = md->prev;
        md->prev = md->next = NULL;
}

static void push_front(struct table *t, struct model *md, int seg)
{
        md->seg = seg;
        md->prev = NULL;
        md->next = t->head[seg];
        if (md->next)
                md->next->prev = md;
        else
                t->tail[seg] = md;
        t->head[seg] = md;
}

/* Marks md active at now_ms; a second sign of life promotes it. */
static void touch(struct table *t, struct model *md, int64_t now_ms)
{
        unlink_model(t, md);
        push_front(t, md, 1);
        if (now_ms > md->active_ms)
                md->active_ms = now_ms;
}

static void unexport(struct model *md)
{
        mls_series_remove(md->s_size);
        mls_series_remove(md->s_seen);
        mls_series_remove(md->s_mean);
        mls_series_remove(md->s_p95);
        md->s_size = md->s_seen = md->s_mean = md->s_p95 = NULL;
}

/* Forgets md: its series, list place, map entry and memory. */
static void drop(mls_monitor_t *m, struct table *t, struct model *md)
{
        struct mls_strmap_entry *e = md->entry;

        unlink_model(t, md);
        if (t == &m->models) {
                m->total_len -= md->len;
                m->total_sum -= md->sum;
                if (m->total_len == 0)
                        m->total_sum = 0;
                if (md->export_gen) {
                        unexport(md);
                        if (md->xprev)
                                md->xprev->xnext = md->xnext;
                        else if (m->exported == md)
                                m->exported = md->xnext;
                        if (md->xnext)
                                md->xnext->xprev = md->xprev;
                }
                json_decref(m->ids);
                m->ids = NULL;
        }
        mls_strmap_remove(&t->map, e->key, e->klen);
        free_model(md);
}

/* e->key is "model" or "model NUL tenant": the model id either way. */
static int in_use(const mls_monitor_t *m, const struct model *md)
{
        return m->in_use && m->in_use(m->in_use_opaque, md->entry->key);
}

static void expire_table(mls_monitor_t *m, struct table *t, int64_t now_ms)
{
        for (int seg = 0; seg < 2; seg++) {
                /* each model is looked at once per call at most: one found
                 * in use moves to the front of the second list */
                size_t budget = t->map.count;
                struct model *md;

                while ((md = t->tail[seg]) && budget-- &&
                       now_ms - md->active_ms >= m->idle_ms) {
                        if (in_use(m, md)) {
                                touch(t, md, now_ms);
                                continue;
                        }
                        drop(m, t, md);
                        m->expired++;
                }
        }
}

void mls_monitor_expire(mls_monitor_t *m, int64_t now_ms)
{
        if (!m->idle_ms)
                return;
        expire_table(m, &m->models, now_ms);
        expire_table(m, &m->tenants, now_ms);
}

/* Makes room in a full table: drops the least recently active model not in
 * use, first among those seen once. Returns 0, or -1 when every model is in
 * use. */
static int evict(mls_monitor_t *m, struct table *t, int64_t now_ms)
{
        for (int seg = 0; seg < 2; seg++) {
                size_t budget = t->map.count;
                struct model *md;

                while ((md = t->tail[seg]) && budget--) {
                        if (in_use(m, md)) {
                                touch(t, md, now_ms);
                                continue;
                        }
                        drop(m, t, md);
                        m->evicted++;
                        return 0;
                }
        }
        return -1;
}

/* The entry for key, created when absent (evicting when the table is
 * full), and marked active. NULL when it cannot be tracked. */
static struct model *entry(mls_monitor_t *m, struct table *t, const char *key,
                           size_t n, int64_t now_ms)
{
        struct mls_strmap_entry *e = mls_strmap_find(&t->map, key, n);
        struct model *md;

        if (e) {
                touch(t, e->value, now_ms);
                return e->value;
        }
        mls_monitor_expire(m, now_ms);
        if (t->map.count >= m->max_models && evict(m, t, now_ms) < 0) {
                if (t == &m->models)
                        m->untracked++;
                return NULL;
        }
        md = calloc(1, sizeof(*md));
        if (!md)
                return NULL;
        md->entry = mls_strmap_put(&t->map, key, n, md);
        if (!md->entry) {
                free(md);
                return NULL;
        }
        md->active_ms = now_ms;
        push_front(t, md, 0);
        if (t == &m->models) {
                json_decref(m->ids);
                m->ids = NULL;
        }
        return md;
}

/* "model NUL tenant" into buf (cap bytes). Returns its length, or 0 when it
 * does not fit. */
static size_t pair_key(char *buf, size_t cap, const char *model_id,
                       const char *tenant, size_t tlen)
{
        size_t n = strlen(model_id);

        if (n + 1 + tlen > cap)
                return 0;
        memcpy(buf, model_id, n);
        buf[n] = '\0';
        memcpy(buf + n + 1, tenant, tlen);
        return n + 1 + tlen;
}

/* --- windows ------------------------------------------------------------- */

/* Adds latency_ms to md's window; returns the change in its length (0 or
 * 1) and the evicted value's negation plus the new one in *dsum. Keeps
 * the window unchanged when memory runs out. */
static unsigned record(mls_monitor_t *m, struct model *md, double latency_ms,
                       int64_t now_ms, double *dsum)
{
        unsigned grew = 0;

        *dsum = 0;
        md->last_seen_ms = now_ms;
        md->predictions++;
        if (md->len == m->window) {
                /* full: the ring's oldest value leaves */
                double old = md->win[md->pos];
                md->len--;
                md->sum -= old;
                *dsum -= old;
        } else {
                if (md->len == md->cap) {
                        unsigned cap = md->cap ? md->cap * 2 : MIN_CAP;
                        double *w;
                        if (cap > m->window)
                                cap = m->window;
                        w = realloc(md->win, cap * sizeof(*w));
                        if (!w)
                                return 0;
                        md->win = w;
                        md->cap = cap;
                }
                grew = 1;
        }
        /* until full, the ring is linear: pos == len */
        md->win[md->pos] = latency_ms;
        md->pos = (md->pos + 1) % m->window;
        md->len++;
        md->sum += latency_ms;
        *dsum += latency_ms;
        /* add-and-subtract drifts: recompute the sum now and then
         * (amortised O(1)) */
        if (++md->since_sum >= m->window) {
                double s = 0;
                for (unsigned k = 0; k < md->len; k++)
                        s += md->win[k];
                md->sum = s;
                md->since_sum = 0;
        }
        return grew;
}

void mls_monitor_prediction(mls_monitor_t *m, const char *model_id,
                            const char *tenant, size_t tenant_len,
                            double latency_ms, int64_t now_ms)
{
        struct model *md =
                entry(m, &m->models, model_id, strlen(model_id), now_ms);
        char key[PAIR_KEY_MAX];
        double dsum;
        size_t n;

        if (m->track_tenants && tenant &&
            (n = pair_key(key, sizeof(key), model_id, tenant, tenant_len))) {
                struct model *td = entry(m, &m->tenants, key, n, now_ms);
                if (td)
                        record(m, td, latency_ms, now_ms, &dsum);
        }
        if (md) {
                m->total_len += record(m, md, latency_ms, now_ms, &dsum);
                m->total_sum += dsum;
        }
}

void mls_monitor_heartbeat(mls_monitor_t *m, const char *model_id,
                           int64_t now_ms)
{
        struct model *md =
                entry(m, &m->models, model_id, strlen(model_id), now_ms);

        if (md) {
                md->last_seen_ms = now_ms;
                md->heartbeat_ms = now_ms;
        }
}

/* Nearest rank of q among n values (1-based). */
static size_t rank_of(size_t n, double q)
{
        size_t rank = (size_t)ceil(q * (double)n);

        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return rank;
}

/* The k-th smallest of v[0..n) (0-based), k < n, reordering v: Hoare's
 * selection, partitioning only the side that holds k, around a pivot at a
 * pseudo-random place. Latencies come from payloads; a fixed pivot place
 * would let chosen values make every round remove one value (O(n^2)),
 * while a place they cannot know keeps it O(n) expected for any values. */
static double select_kth(double *v, size_t n, size_t k)
{
        static uint64_t state = 0x9e3779b97f4a7c15u;
        size_t lo = 0, hi = n - 1;

        while (lo < hi) {
                double pivot;
                size_t i = lo, j = hi;
                /* xorshift64 */
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                pivot = v[lo + state % (hi - lo + 1)];
                while (i <= j) {
                        while (v[i] < pivot)
                                i++;
                        while (v[j] > pivot)
                                j--;
                        if (i <= j) {
                                double t = v[i];
                                v[i++] = v[j];
                                v[j] = t;
                                if (j == 0)
                                        break;
                                j--;
                        }
                }
                /* v[lo..j] <= pivot <= v[i..hi], and between them pivots */
                if (k <= j)
                        hi = j;
                else if (k >= i)
                        lo = i;
                else
                        break;
        }
        return v[k];
}

double mls_monitor_percentile(double *v, size_t n, double q)
{
        return select_kth(v, n, rank_of(n, q) - 1);
}

/* The nearest-rank q-quantile of the windows parts[0..n), total values in
 * all, picked from a copy when asked for: the windows are kept in arrival
 * order only, so that a prediction costs O(1) however long they are. When
 * memory runs out, their largest value (a bound the quantile cannot pass). */
static double quantile(const struct model *const *parts, size_t n, size_t total,
                       double q)
{
        double *all = malloc(total * sizeof(*all)), max = -INFINITY, v;
        size_t at = 0;

        for (size_t i = 0; i < n; i++) {
                if (all)
                        memcpy(all + at, parts[i]->win,
                               parts[i]->len * sizeof(*all));
                else
                        for (unsigned k = 0; k < parts[i]->len; k++)
                                max = fmax(max, parts[i]->win[k]);
                at += parts[i]->len;
        }
        if (!all)
                return max;
        v = mls_monitor_percentile(all, total, q);
        free(all);
        return v;
}

static void fill_stats(const struct model *md, struct mls_monitor_stats *st)
{
        memset(st, 0, sizeof(*st));
        st->last_seen_ms = md->last_seen_ms;
        st->predictions = md->predictions;
        st->window_size = md->len;
        if (!md->len)
                return;
        st->mean_ms = md->sum / md->len;
        st->p95_ms = quantile(&md, 1, md->len, 0.95);
}

void mls_monitor_stats(const mls_monitor_t *m, const char *model_id,
                       struct mls_monitor_stats *st)
{
        const struct model *md =
                mls_strmap_get(&m->models.map, model_id, strlen(model_id));

        memset(st, 0, sizeof(*st));
        if (md)
                fill_stats(md, st);
}

/* Stats of the tenants in only for model_id: their windows merged. */
static void tenant_stats(const mls_monitor_t *m, const char *model_id,
                         const mls_tenants_t *only,
                         struct mls_monitor_stats *st)
{
        const struct model *md =
                mls_strmap_get(&m->models.map, model_id, strlen(model_id));
        const struct model **parts;
        size_t nparts = 0, total = 0;
        double sum = 0;
        char key[PAIR_KEY_MAX];

        memset(st, 0, sizeof(*st));
        if (md)
                st->last_seen_ms = md->heartbeat_ms;
        if (!only->n)
                return;
        parts = malloc(only->n * sizeof(*parts));
        if (!parts)
                return;
        for (size_t i = 0; i < only->n; i++) {
                size_t n = pair_key(key, sizeof(key), model_id, only->names[i],
                                    strlen(only->names[i]));
                const struct model *td =
                        n ? mls_strmap_get(&m->tenants.map, key, n) : NULL;
                if (!td)
                        continue;
                st->predictions += td->predictions;
                if (td->last_seen_ms > st->last_seen_ms)
                        st->last_seen_ms = td->last_seen_ms;
                if (!td->len)
                        continue;
                parts[nparts++] = td;
                total += td->len;
                sum += td->sum;
        }
        if (total) {
                st->window_size = (unsigned)total;
                st->mean_ms = sum / (double)total;
                st->p95_ms = quantile(parts, nparts, total, 0.95);
        }
        free(parts);
}

json_t *mls_monitor_status(const mls_monitor_t *m, const char *model_id,
                           const mls_tenants_t *only)
{
        struct mls_monitor_stats st;
        char ts[32];
        json_t *o = json_object();

        if (!o)
                return NULL;
        if (only)
                tenant_stats(m, model_id, only, &st);
        else
                mls_monitor_stats(m, model_id, &st);
        json_object_set_new(o, "modelId", json_string(model_id));
        json_object_set_new(o, "connected", json_boolean(m->connected));
        if (st.last_seen_ms &&
            mls_clock_iso8601(st.last_seen_ms, ts, sizeof(ts)))
                json_object_set_new(o, "lastHeartbeatAt", json_string(ts));
        else
                json_object_set_new(o, "lastHeartbeatAt", json_null());
        if (st.window_size) {
                json_object_set_new(o, "averageLatencyMs",
                                    json_real(st.mean_ms));
                json_object_set_new(o, "p95LatencyMs",
                                    isnan(st.p95_ms) ? json_null()
                                                     : json_real(st.p95_ms));
        } else {
                json_object_set_new(o, "averageLatencyMs", json_null());
                json_object_set_new(o, "p95LatencyMs", json_null());
        }
        json_object_set_new(o, "windowSize", json_integer(st.window_size));
        return o;
}

int mls_monitor_visible(const mls_monitor_t *m, const char *model_id,
                        const mls_tenants_t *only)
{
        const struct model *md =
                mls_strmap_get(&m->models.map, model_id, strlen(model_id));
        char key[PAIR_KEY_MAX];

        if (!only)
                return md != NULL;
        if (md && md->heartbeat_ms)
                return 1;
        for (size_t i = 0; i < only->n; i++) {
                size_t n = pair_key(key, sizeof(key), model_id, only->names[i],
                                    strlen(only->names[i]));
                if (n && mls_strmap_get(&m->tenants.map, key, n))
                        return 1;
        }
        return 0;
}

/* --- listings ------------------------------------------------------------ */

static void collect_id(void *opaque, struct mls_strmap_entry *e)
{
        json_array_append_new(opaque, json_stringn(e->key, e->klen));
}

static int cmp_json_str(const void *a, const void *b)
{
        return strcmp(json_string_value(*(json_t *const *)a),
                      json_string_value(*(json_t *const *)b));
}

json_t *mls_monitor_model_ids(mls_monitor_t *m)
{
        json_t *ids, **v, *sorted;
        size_t n;

        if (m->ids)
                return json_incref(m->ids);
        ids = json_array();
        if (!ids)
                return NULL;
        mls_strmap_foreach(&m->models.map, collect_id, ids);
        n = json_array_size(ids);
        v = malloc((n ? n : 1) * sizeof(*v));
        sorted = json_array();
        if (!v || !sorted || n != m->models.map.count) {
                free(v);
                json_decref(sorted);
                json_decref(ids);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                v[i] = json_array_get(ids, i);
        qsort(v, n, sizeof(*v), cmp_json_str);
        for (size_t i = 0; i < n; i++)
                json_array_append(sorted, v[i]);
        free(v);
        json_decref(ids);
        m->ids = sorted;
        return json_incref(sorted);
}

struct foreach_ctx {
        void (*fn)(void *, const char *, const struct mls_monitor_stats *);
        void *opaque;
};

static void foreach_model(void *opaque, struct mls_strmap_entry *e)
{
        struct foreach_ctx *c = opaque;
        struct mls_monitor_stats st;

        fill_stats(e->value, &st);
        c->fn(c->opaque, e->key, &st);
}

void mls_monitor_foreach(const mls_monitor_t *m,
                         void (*fn)(void *opaque, const char *model_id,
                                    const struct mls_monitor_stats *st),
                         void *opaque)
{
        struct foreach_ctx c = {fn, opaque};

        mls_strmap_foreach(&m->models.map, foreach_model, &c);
}

/* --- metrics ------------------------------------------------------------- */

void mls_monitor_set_metrics(mls_monitor_t *m,
                             const struct mls_monitor_metrics *mm)
{
        m->mm = *mm;
}

static void set_series(mls_series_t **s, struct mls_metric *f, const char *id,
                       const char *stat, double v)
{
        if (!*s && f)
                *s = mls_series(f, id, stat);
        if (*s)
                mls_series_set(*s, v);
}

void mls_monitor_export(mls_monitor_t *m)
{
        unsigned gen = ++m->export_gen, left = m->mm.max_series;
        uint64_t len = 0;
        double sum = 0;
        struct model *md, *next;

        for (int seg = 1; seg >= 0; seg--)
                for (md = m->models.head[seg]; md && left; md = md->next) {
                        const char *id = md->entry->key;
                        struct mls_monitor_stats st;
                        left--;
                        fill_stats(md, &st);
                        if (md->export_gen == 0) {
                                md->xnext = m->exported;
                                if (m->exported)
                                        m->exported->xprev = md;
                                m->exported = md;
                        }
                        md->export_gen = gen;
                        len += md->len;
                        sum += md->sum;
                        set_series(&md->s_size, m->mm.win_size, id, NULL,
                                   st.window_size);
                        set_series(&md->s_seen, m->mm.last_seen, id, NULL,
                                   (double)st.last_seen_ms / 1000.0);
                        if (st.window_size) {
                                set_series(&md->s_mean, m->mm.win_latency, id,
                                           "mean", st.mean_ms / 1000.0);
                                set_series(&md->s_p95, m->mm.win_latency, id,
                                           "p95", st.p95_ms / 1000.0);
                        }
                }
        /* models that fell out of the top lose their series */
        for (md = m->exported; md; md = next) {
                next = md->xnext;
                if (md->export_gen == gen)
                        continue;
                unexport(md);
                md->export_gen = 0;
                if (md->xprev)
                        md->xprev->xnext = md->xnext;
                else
                        m->exported = md->xnext;
                if (md->xnext)
                        md->xnext->xprev = md->xprev;
                md->xprev = md->xnext = NULL;
        }
        if (m->models.map.count > m->mm.max_series || m->o_size) {
                uint64_t olen = m->total_len - len;
                double osum = m->total_sum - sum;
                set_series(&m->o_size, m->mm.win_size, OTHER, NULL,
                           (double)olen);
                if (olen) {
                        set_series(&m->o_mean, m->mm.win_latency, OTHER, "mean",
                                   (osum > 0 ? osum : 0) / (double)olen /
                                           1000.0);
                } else {
                        mls_series_remove(m->o_mean);
                        m->o_mean = NULL;
                }
        }
}

size_t mls_monitor_models(const mls_monitor_t *m)
{
        return m->models.map.count;
}

uint64_t mls_monitor_untracked(const mls_monitor_t *m)
{
        return m->untracked;
}

uint64_t mls_monitor_evicted(const mls_monitor_t *m)
{
        return m->evicted;
}

uint64_t mls_monitor_expired(const mls_monitor_t *m)
{
        return m->expired;
}
