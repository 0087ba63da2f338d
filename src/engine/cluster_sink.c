#include "engine/cluster_sink.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/model_id.h"
#include "common/redis_cluster.h"

/* RESP framing of one SPUBLISH, beyond its channel and payload:
 * "*3\r\n$8\r\nSPUBLISH\r\n$<n>\r\n...\r\n$<n>\r\n...\r\n". */
#define RESP_OVERHEAD 64
/* The engine builds a heartbeat in a buffer of this size (engine.c). */
#define HEARTBEAT_MAX ((size_t)1 << 20)

struct cluster_sink {
        mls_cluster_pub_t *pub;
        char *channel;
        struct mls_buf chan; /* the channel of the payload being sent */
        struct mls_cluster_pub_stats seen; /* what the counters hold */
        mls_series_t *connected, *moved, *ask, *refreshes, *conn_errors;
};

static void cluster_destroy(void *ctx)
{
        struct cluster_sink *s = ctx;

        if (!s)
                return;
        mls_cluster_pub_free(s->pub);
        free(s->channel);
        mls_buf_free(&s->chan);
        free(s);
}

/* Adds what the publisher counted since the last call to the counters. */
static void update_metrics(struct cluster_sink *s)
{
        struct mls_cluster_pub_stats st;

        mls_cluster_pub_stats(s->pub, &st);
        mls_series_add(s->moved, (double)(st.moved - s->seen.moved));
        mls_series_add(s->ask, (double)(st.ask - s->seen.ask));
        mls_series_add(s->refreshes,
                       (double)(st.refreshes - s->seen.refreshes));
        mls_series_add(s->conn_errors,
                       (double)(st.conn_errors - s->seen.conn_errors));
        s->seen = st;
}

static int cluster_connected(void *ctx)
{
        return mls_cluster_pub_connected(((struct cluster_sink *)ctx)->pub);
}

static int cluster_reconnect(void *ctx, char *errstr, size_t errstr_size)
{
        struct cluster_sink *s = ctx;
        int rc = mls_cluster_pub_connect(s->pub, errstr, errstr_size);

        mls_series_set(s->connected, rc == 0);
        update_metrics(s);
        return rc;
}

/* Queues SPUBLISH of the payload to its model's channel, or to the control
 * channel for a heartbeat (model_id NULL). When it cannot be queued, the
 * batch is emptied at once (the engine sends all of it again), so that
 * nothing of it lingers into the retry: after a failed add the flush sends
 * nothing; after a failed channel name (out of memory: model ids are at
 * most MLS_MODEL_ID_MAX bytes) it sends what was queued, which the retry
 * sends again (at least once). */
static int cluster_send(void *ctx, const struct mls_record *rec,
                        const char *model_id, const char *payload, size_t len,
                        const char *reason, const char *detail)
{
        struct cluster_sink *s = ctx;
        char ignored[256];

        (void)rec;
        (void)reason;
        (void)detail;
        mls_buf_reset(&s->chan);
        if ((model_id ? mls_channel_model(&s->chan, s->channel, model_id,
                                          strlen(model_id))
                      : mls_channel_control(&s->chan, s->channel)) < 0 ||
            mls_cluster_pub_add(s->pub, s->chan.data, s->chan.len, payload,
                                len) < 0) {
                mls_cluster_pub_flush(s->pub, ignored, sizeof(ignored));
                update_metrics(s);
                return -1;
        }
        return 0;
}

static int cluster_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct cluster_sink *s = ctx;
        int rc = mls_cluster_pub_flush(s->pub, errstr, errstr_size);

        mls_series_set(s->connected, rc == 0);
        update_metrics(s);
        return rc;
}

static const struct mls_sink_ops cluster_ops = {
        .name = "redis-cluster",
        .send = cluster_send,
        .flush = cluster_flush,
        .reconnect = cluster_reconnect,
        .connected = cluster_connected,
        .destroy = cluster_destroy,
};

int mls_cluster_sink_new(struct mls_sink *sink,
                         const struct mls_redis_url *seeds, size_t nseeds,
                         const char *channel, size_t payload_bytes,
                         size_t max_payloads, mls_metrics_t *metrics)
{
        struct cluster_sink *s = calloc(1, sizeof(*s));
        mls_metric_t *redirects;
        size_t per_payload, limit;

        sink->ops = NULL;
        sink->ctx = NULL;
        if (!s)
                return -1;
        /* every command of a full batch fits, and then a heartbeat (sent
         * and flushed on its own, but after a batch whose flush failed) */
        per_payload = strlen(channel) + MLS_MODEL_ID_MAX + RESP_OVERHEAD;
        limit = payload_bytes + max_payloads * per_payload + HEARTBEAT_MAX +
                per_payload;
        s->pub = mls_cluster_pub_new(seeds, nseeds, limit);
        s->channel = strdup(channel);
        mls_buf_init(&s->chan, per_payload);
        if (!s->pub || !s->channel) {
                cluster_destroy(s);
                return -1;
        }
        s->connected = mls_series(
                mls_metric_new(metrics, MLS_GAUGE, "ml_stream_redis_connected",
                               "1 while the engine's Redis connection is up.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        redirects = mls_metric_new(
                metrics, MLS_COUNTER, "ml_stream_redis_cluster_redirects_total",
                "Redis Cluster redirects the publisher followed, by kind "
                "(moved: the slot lives elsewhere now; ask: during a slot "
                "migration).",
                "kind", NULL, NULL, 0);
        s->moved = mls_series(redirects, "moved", NULL);
        s->ask = mls_series(redirects, "ask", NULL);
        s->refreshes = mls_series(
                mls_metric_new(metrics, MLS_COUNTER,
                               "ml_stream_redis_cluster_map_refreshes_total",
                               "Redis Cluster slot maps the publisher "
                               "fetched (CLUSTER SLOTS).",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        s->conn_errors = mls_series(
                mls_metric_new(metrics, MLS_COUNTER,
                               "ml_stream_redis_cluster_connection_errors_"
                               "total",
                               "Failed connects, reads and writes to Redis "
                               "Cluster nodes.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        sink->ops = &cluster_ops;
        sink->ctx = s;
        return 0;
}
