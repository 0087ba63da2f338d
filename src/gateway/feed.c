/*
 * The gateway's feed: payloads from the Redis subscriber, or from the
 * in-process bus of `mlstream up`, normalised (payload.c) and handed to the
 * monitor and the fan-out hub.
 *
 * Threads: the loop thread, except mls__gw_feed_push() (any thread; the
 * queue is guarded by g->bus_lock).
 * Ownership: each queued payload is a copy, freed once handed over.
 */
#include <stdlib.h>
#include <string.h>

#include "common/channel.h"
#include "common/hash.h"
#include "gateway/gateway_int.h"
#include "gateway/payload.h"

/* the bus queue's bounds; past them payloads are dropped and counted */
#define BUS_MAX_MSGS 65536
#define BUS_MAX_BYTES ((size_t)256 << 20)

struct mls__gw_bus_msg {
        struct mls__gw_bus_msg *next;
        size_t len;
        char data[];
};

/* A lost Redis subscription was made again: the next prediction of the
 * model (of every watched model, for NULL) says that some before it may
 * be missing. */
static void mark_gap(void *opaque, const char *model, size_t len)
{
        mls_gateway_t *g = opaque;
        int64_t *since;

        if (!model) {
                mls_hub_foreach_model(g->hub, mark_gap, g);
                return;
        }
        since = mls_strmap_get(&g->gaps, model, len);
        if (!since) {
                since = malloc(sizeof(*since));
                if (!since)
                        return;
                if (!mls_strmap_put(&g->gaps, model, len, since)) {
                        free(since);
                        return;
                }
        }
        *since = mls_clock_wall_ms();
}

/* Adds the pending gap of p's model (if any) to p, once. */
static void take_gap(mls_gateway_t *g, struct mls_payload *p)
{
        int64_t *since;
        char iso[32];

        if (!g->gaps.count)
                return;
        since = mls_strmap_remove(&g->gaps, p->model_id, p->model_id_len);
        if (!since)
                return;
        mls_clock_iso8601(*since, iso, sizeof(iso));
        mls_payload_set_gap(p,
                            json_pack("{s:s,s:n,s:s}", "reason",
                                      "UPSTREAM_LOST", "missed", "since", iso));
        free(since);
}

/* One payload from Redis or the bus: normalised once, recorded in the
 * monitor, rendered once per subscription group. */
static void on_payload(mls_gateway_t *g, const char *data, size_t len)
{
        struct mls_payload p;
        int64_t now = mls_clock_wall_ms();
        size_t i;
        json_t *m;

        switch (mls_payload_normalize(data, len, g->max_payload, &p)) {
        case MLS_PAYLOAD_PREDICTION: {
                size_t tlen = 0;
                const char *tenant = mls_payload_tenant(&p, &tlen);

                /* one hash of the id for both tables; the history's miss
                 * starts now and overlaps the dedupe's and the monitor's */
                uint64_t idh = mls_hash(p.inference_id, p.inference_id_len);

                if (g->history)
                        mls_history_prefetch(g->history, idh);
                mls_series_add(g->m_pred, 1);
                if (g->dedupe && mls_dedupe_seen(g->dedupe, idh)) {
                        mls_series_add(g->m_dup, 1);
                        break;
                }
                mls_monitor_prediction(g->monitor, p.model_id, tenant, tlen,
                                       p.latency_ms, now);
                /* kept for resuming subscribers before it goes live, so
                 * that a replay reaches it in order */
                g->env.history_kept =
                        g->history &&
                        mls_history_add(g->history, p.model_id, p.model_id_len,
                                        p.inference_id, p.inference_id_len, idh,
                                        data, len, now) == 0;
                take_gap(g, &p);
                mls_hub_publish(g->hub, p.model_id, tenant, tlen, &p);
                break;
        }
        case MLS_PAYLOAD_HEARTBEAT:
                mls_series_add(g->m_hb, 1);
                json_array_foreach(p.models, i, m)
                {
                        mls_monitor_heartbeat(g->monitor, json_string_value(m),
                                              now);
                }
                /* entries skipped as invalid, or past a cap */
                mls_series_add(
                        g->m_hb_invalid,
                        p.skipped + mls_engines_heartbeat(g->engines, &p, now));
                if (p.skipped)
                        mls_debug("skipped %u heartbeat entries of engine "
                                  "\"%s\"",
                                  p.skipped, p.engine_id);
                break;
        default:
                mls_series_add(g->m_garbage, 1);
                /* whoever publishes on the channel can repeat it at any
                 * rate: warned, rate-limited */
                mls_log_limited(&g->payload_log_limit, MLS_LOG_WARN,
                                "skipped a payload of %zu bytes from the "
                                "channel (counted in ml_stream_gateway_"
                                "payloads_invalid_total): %s",
                                len, p.reason);
                break;
        }
        mls_payload_clear(&p);
}

static void redis_message(void *opaque, const char *data, size_t len)
{
        on_payload(opaque, data, len);
}

static void redis_state(void *opaque, int up)
{
        mls_gateway_t *g = opaque;

        mls_monitor_set_connected(g->monitor, up);
        mls_series_set(g->m_redis, up);
        mls_series_set(g->m_ready, up);
}

void mls__gw_feed_drain(mls_gateway_t *g)
{
        struct mls__gw_bus_msg *m, *next;

        pthread_mutex_lock(&g->bus_lock);
        m = g->bus_head;
        g->bus_head = g->bus_tail = NULL;
        g->bus_count = g->bus_bytes = 0;
        pthread_mutex_unlock(&g->bus_lock);
        for (; m; m = next) {
                next = m->next;
                if (!g->stopping)
                        on_payload(g, m->data, m->len);
                free(m);
        }
}

/* The subscriber behind g->redis: redis_sub.c (one Redis) or cluster_sub.c
 * (REDIS_CLUSTER=true); the rest of the gateway calls it through this
 * table. Optional hooks are NULL. */
struct mls__gw_sub_ops {
        void (*watch)(void *sub, const char *model, size_t len);
        void (*unwatch)(void *sub, const char *model, size_t len);
        size_t (*channels)(const void *sub);
        uint64_t (*resubscribes)(const void *sub); /* NULL: never */
        uint64_t (*errors)(const void *sub);
        void (*close)(void *sub);
        void (*free)(void *sub);
};

static void single_watch(void *sub, const char *model, size_t len)
{
        mls_redis_sub_watch(sub, model, len);
}

static void single_unwatch(void *sub, const char *model, size_t len)
{
        mls_redis_sub_unwatch(sub, model, len);
}

static size_t single_channels(const void *sub)
{
        return mls_redis_sub_channels(sub);
}

static uint64_t single_errors(const void *sub)
{
        return mls_redis_sub_errors(sub);
}

static void single_close(void *sub)
{
        mls_redis_sub_close(sub);
}

static void single_free(void *sub)
{
        mls_redis_sub_free(sub);
}

static const struct mls__gw_sub_ops single_ops = {
        .watch = single_watch,
        .unwatch = single_unwatch,
        .channels = single_channels,
        .errors = single_errors,
        .close = single_close,
        .free = single_free,
};

static void cluster_watch(void *sub, const char *model, size_t len)
{
        mls_cluster_sub_watch(sub, model, len);
}

static void cluster_unwatch(void *sub, const char *model, size_t len)
{
        mls_cluster_sub_unwatch(sub, model, len);
}

static size_t cluster_channels(const void *sub)
{
        return mls_cluster_sub_channels(sub);
}

static uint64_t cluster_resubscribes(const void *sub)
{
        return mls_cluster_sub_resubscribes(sub);
}

static uint64_t cluster_errors(const void *sub)
{
        return mls_cluster_sub_errors(sub);
}

static void cluster_close(void *sub)
{
        mls_cluster_sub_close(sub);
}

static void cluster_free(void *sub)
{
        mls_cluster_sub_free(sub);
}

static const struct mls__gw_sub_ops cluster_ops = {
        .watch = cluster_watch,
        .unwatch = cluster_unwatch,
        .channels = cluster_channels,
        .resubscribes = cluster_resubscribes,
        .errors = cluster_errors,
        .close = cluster_close,
        .free = cluster_free,
};

/* Per-model channels follow the models that clients watch. */
static void on_model(void *opaque, const char *model, size_t len, int watched)
{
        mls_gateway_t *g = opaque;

        if (!watched)
                free(mls_strmap_remove(&g->gaps, model, len));
        if (!g->per_model)
                return;
        if (watched)
                g->redis_ops->watch(g->redis, model, len);
        else
                g->redis_ops->unwatch(g->redis, model, len);
}

/* The subscriber for REDIS_CLUSTER=true (parse_redis() in gateway.c made
 * sure of the per-model mode). */
static int start_cluster(mls_gateway_t *g, const struct mls_redis_url *seeds,
                         size_t nseeds, char *errstr, size_t errstr_size)
{
        struct mls_cluster_sub_conf cc = {
                .seeds = seeds,
                .nseeds = nseeds,
                .prefix = g->cfg->redis_channel,
                .client_name = "mlstream-gateway",
                .retry_max_ms = g->cfg->redis_retry_max_ms,
                .max_reply_bytes = g->max_payload + 65536,
                .ping_ms = g->cfg->gateway_redis_ping_ms,
                .on_message = redis_message,
                .on_state = redis_state,
                .on_gap = mark_gap,
                .opaque = g,
        };

        g->redis = mls_cluster_sub_new(&g->loop, &cc, errstr, errstr_size);
        if (!g->redis)
                return -1;
        g->redis_ops = &cluster_ops;
        mls_info("redis: cluster mode, %zu seed(s); SSUBSCRIBE to the "
                 "watched models' channels on their shards",
                 nseeds);
        return 0;
}

int mls__gw_feed_start(mls_gateway_t *g, const struct mls_redis_url *urls,
                       size_t nurls, char *errstr, size_t errstr_size)
{
        struct mls_redis_sub_conf rc;
        int cluster;

        if (g->bus) {
                mls_monitor_set_connected(g->monitor, 1);
                mls_series_set(g->m_redis, 1);
                mls_series_set(g->m_ready, 1);
                return 0;
        }
        mls_series_set(g->m_redis, 0);
        mls_series_set(g->m_ready, 0);
        cluster = g->cfg->redis_cluster &&
                  strcmp(g->cfg->redis_cluster, "true") == 0;
        mls_strmap_init(&g->gaps);
        g->per_model = cluster || mls_channel_per_model(g->cfg);
        mls_hub_on_models(g->hub, on_model, g);
        if (cluster)
                return start_cluster(g, urls, nurls, errstr, errstr_size);
        rc = (struct mls_redis_sub_conf){
                .url = urls[0],
                .channel = g->cfg->redis_channel,
                .per_model = mls_channel_per_model(g->cfg),
                .retry_max_ms = g->cfg->redis_retry_max_ms,
                .max_reply_bytes = g->max_payload + 65536,
                .ping_ms = g->cfg->gateway_redis_ping_ms,
                .on_message = redis_message,
                .on_state = redis_state,
                .on_gap = mark_gap,
                .opaque = g,
        };
        g->redis = mls_redis_sub_new(&g->loop, &rc, errstr, errstr_size);
        if (!g->redis)
                return -1;
        g->redis_ops = &single_ops;
        return 0;
}

size_t mls__gw_feed_channels(const mls_gateway_t *g)
{
        return g->redis ? g->redis_ops->channels(g->redis) : 0;
}

uint64_t mls__gw_feed_resubscribes(const mls_gateway_t *g)
{
        return g->redis && g->redis_ops->resubscribes
                       ? g->redis_ops->resubscribes(g->redis)
                       : 0;
}

uint64_t mls__gw_feed_errors(const mls_gateway_t *g)
{
        return g->redis ? g->redis_ops->errors(g->redis) : 0;
}

void mls__gw_feed_close(mls_gateway_t *g)
{
        if (g->redis)
                g->redis_ops->close(g->redis);
}

void mls__gw_feed_free(mls_gateway_t *g)
{
        if (g->redis) {
                g->redis_ops->free(g->redis);
                mls_strmap_free(&g->gaps, free);
        }
        g->redis = NULL;
}

int mls__gw_feed_push(mls_gateway_t *g, const char *payload, size_t len)
{
        struct mls__gw_bus_msg *m;

        pthread_mutex_lock(&g->bus_lock);
        if (g->bus_count >= BUS_MAX_MSGS ||
            g->bus_bytes + len > BUS_MAX_BYTES ||
            !(m = malloc(sizeof(*m) + len))) {
                pthread_mutex_unlock(&g->bus_lock);
                atomic_fetch_add(&g->bus_dropped, 1);
                return -1;
        }
        m->next = NULL;
        m->len = len;
        memcpy(m->data, payload, len);
        if (g->bus_tail)
                g->bus_tail->next = m;
        else
                g->bus_head = m;
        g->bus_tail = m;
        g->bus_count++;
        g->bus_bytes += len;
        pthread_mutex_unlock(&g->bus_lock);
        return 0;
}

void mls__gw_feed_clear(mls_gateway_t *g)
{
        struct mls__gw_bus_msg *m, *next;

        for (m = g->bus_head; m; m = next) {
                next = m->next;
                free(m);
        }
        g->bus_head = g->bus_tail = NULL;
        g->bus_count = g->bus_bytes = 0;
}
