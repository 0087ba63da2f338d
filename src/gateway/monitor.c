#include "gateway/monitor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "gateway/strmap.h"

#define PAIR_KEY_MAX 1024 /* model id NUL tenant */

struct model {
        double *win; /* ring of latencies, allocated on first use */
        unsigned len, pos;
        int64_t last_seen_ms;
        int64_t heartbeat_ms; /* models only: last heartbeat listing it */
        uint64_t predictions;
};

struct mls_monitor {
        struct mls_strmap models;  /* model id -> struct model */
        struct mls_strmap tenants; /* model id NUL tenant -> struct model */
        unsigned window, max_models;
        int connected, track_tenants;
        uint64_t untracked;
};

mls_monitor_t *mls_monitor_new(unsigned window, unsigned max_models)
{
        mls_monitor_t *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        mls_strmap_init(&m->models);
        mls_strmap_init(&m->tenants);
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
        mls_strmap_free(&m->models, free_model);
        mls_strmap_free(&m->tenants, free_model);
        free(m);
}

void mls_monitor_track_tenants(mls_monitor_t *m, int on)
{
        m->track_tenants = on != 0;
}

void mls_monitor_set_connected(mls_monitor_t *m, int connected)
{
        m->connected = connected != 0;
}

int mls_monitor_connected(const mls_monitor_t *m)
{
        return m->connected;
}

static struct model *entry(mls_monitor_t *m, struct mls_strmap *map,
                           const char *key, size_t n)
{
        struct model *md = mls_strmap_get(map, key, n);

        if (md)
                return md;
        if (map->count >= m->max_models) {
                if (map == &m->models)
                        m->untracked++;
                return NULL;
        }
        md = calloc(1, sizeof(*md));
        if (!md)
                return NULL;
        if (!mls_strmap_put(map, key, n, md)) {
                free(md);
                return NULL;
        }
        return md;
}

static struct model *model(mls_monitor_t *m, const char *id)
{
        return entry(m, &m->models, id, strlen(id));
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

static void record(mls_monitor_t *m, struct model *md, double latency_ms,
                   int64_t now_ms)
{
        md->last_seen_ms = now_ms;
        md->predictions++;
        if (!md->win) {
                md->win = malloc(m->window * sizeof(*md->win));
                if (!md->win)
                        return;
        }
        md->win[md->pos] = latency_ms;
        md->pos = (md->pos + 1) % m->window;
        if (md->len < m->window)
                md->len++;
}

void mls_monitor_prediction(mls_monitor_t *m, const char *model_id,
                            const char *tenant, size_t tenant_len,
                            double latency_ms, int64_t now_ms)
{
        struct model *md = model(m, model_id);
        char key[PAIR_KEY_MAX];
        size_t n;

        if (m->track_tenants && tenant &&
            (n = pair_key(key, sizeof(key), model_id, tenant, tenant_len))) {
                struct model *td = entry(m, &m->tenants, key, n);
                if (td)
                        record(m, td, latency_ms, now_ms);
        }
        if (md)
                record(m, md, latency_ms, now_ms);
}

void mls_monitor_heartbeat(mls_monitor_t *m, const char *model_id,
                           int64_t now_ms)
{
        struct model *md = model(m, model_id);

        if (md) {
                md->last_seen_ms = now_ms;
                md->heartbeat_ms = now_ms;
        }
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

double mls_monitor_percentile(double *v, size_t n, double q)
{
        size_t rank = (size_t)ceil(q * (double)n);

        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        /* Called for status queries and metrics scrapes only, on windows
         * of at most a few thousand values: sorting is simple and fast
         * enough. */
        qsort(v, n, sizeof(*v), cmp_double);
        return v[rank - 1];
}

static void fill_stats(const struct model *md, struct mls_monitor_stats *st)
{
        double sum = 0, *tmp;

        memset(st, 0, sizeof(*st));
        st->last_seen_ms = md->last_seen_ms;
        st->predictions = md->predictions;
        st->window_size = md->len;
        if (!md->len)
                return;
        for (unsigned i = 0; i < md->len; i++)
                sum += md->win[i];
        st->mean_ms = sum / md->len;
        tmp = malloc(md->len * sizeof(*tmp));
        if (!tmp) {
                st->p95_ms = NAN;
                return;
        }
        memcpy(tmp, md->win, md->len * sizeof(*tmp));
        st->p95_ms = mls_monitor_percentile(tmp, md->len, 0.95);
        free(tmp);
}

void mls_monitor_stats(const mls_monitor_t *m, const char *model_id,
                       struct mls_monitor_stats *st)
{
        const struct model *md =
                mls_strmap_get(&m->models, model_id, strlen(model_id));

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
                mls_strmap_get(&m->models, model_id, strlen(model_id));
        const struct model **parts;
        size_t nparts = 0, total = 0, k = 0;
        double sum = 0, *tmp;
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
                        n ? mls_strmap_get(&m->tenants, key, n) : NULL;
                if (!td)
                        continue;
                parts[nparts++] = td;
                total += td->len;
                st->predictions += td->predictions;
                if (td->last_seen_ms > st->last_seen_ms)
                        st->last_seen_ms = td->last_seen_ms;
        }
        if (total && (tmp = malloc(total * sizeof(*tmp)))) {
                for (size_t i = 0; i < nparts; i++)
                        for (unsigned j = 0; j < parts[i]->len; j++) {
                                tmp[k++] = parts[i]->win[j];
                                sum += parts[i]->win[j];
                        }
                st->window_size = (unsigned)total;
                st->mean_ms = sum / (double)total;
                st->p95_ms = mls_monitor_percentile(tmp, total, 0.95);
                free(tmp);
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
                mls_strmap_get(&m->models, model_id, strlen(model_id));
        char key[PAIR_KEY_MAX];

        if (!only)
                return md != NULL;
        if (md && md->heartbeat_ms)
                return 1;
        for (size_t i = 0; i < only->n; i++) {
                size_t n = pair_key(key, sizeof(key), model_id, only->names[i],
                                    strlen(only->names[i]));
                if (n && mls_strmap_get(&m->tenants, key, n))
                        return 1;
        }
        return 0;
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

        mls_strmap_foreach(&m->models, foreach_model, &c);
}

size_t mls_monitor_models(const mls_monitor_t *m)
{
        return m->models.count;
}

uint64_t mls_monitor_untracked(const mls_monitor_t *m)
{
        return m->untracked;
}
