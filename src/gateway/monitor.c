#include "gateway/monitor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "gateway/strmap.h"

struct model {
        double *win; /* ring of latencies, allocated on first use */
        unsigned len, pos;
        int64_t last_seen_ms;
        uint64_t predictions;
};

struct mls_monitor {
        struct mls_strmap models; /* model id -> struct model */
        unsigned window, max_models;
        int connected;
        uint64_t untracked;
};

mls_monitor_t *mls_monitor_new(unsigned window, unsigned max_models)
{
        mls_monitor_t *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        mls_strmap_init(&m->models);
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
        free(m);
}

void mls_monitor_set_connected(mls_monitor_t *m, int connected)
{
        m->connected = connected != 0;
}

int mls_monitor_connected(const mls_monitor_t *m)
{
        return m->connected;
}

static struct model *model(mls_monitor_t *m, const char *id)
{
        size_t n = strlen(id);
        struct model *md = mls_strmap_get(&m->models, id, n);

        if (md)
                return md;
        if (m->models.count >= m->max_models) {
                m->untracked++;
                return NULL;
        }
        md = calloc(1, sizeof(*md));
        if (!md)
                return NULL;
        if (!mls_strmap_put(&m->models, id, n, md)) {
                free(md);
                return NULL;
        }
        return md;
}

void mls_monitor_prediction(mls_monitor_t *m, const char *model_id,
                            double latency_ms, int64_t now_ms)
{
        struct model *md = model(m, model_id);

        if (!md)
                return;
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

void mls_monitor_heartbeat(mls_monitor_t *m, const char *model_id,
                           int64_t now_ms)
{
        struct model *md = model(m, model_id);

        if (md)
                md->last_seen_ms = now_ms;
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

json_t *mls_monitor_status(const mls_monitor_t *m, const char *model_id)
{
        struct mls_monitor_stats st;
        char ts[32];
        json_t *o = json_object();

        if (!o)
                return NULL;
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
