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
                const char *tenant = mls_hub_event_tenant(p.event, &tlen);
                json_t *id = json_object_get(p.event, "inferenceId");

                mls_series_add(g->m_pred, 1);
                if (g->dedupe && json_is_string(id) &&
                    mls_dedupe_seen(g->dedupe, json_string_value(id),
                                    json_string_length(id))) {
                        mls_series_add(g->m_dup, 1);
                        break;
                }
                mls_monitor_prediction(g->monitor, p.model_id, tenant, tlen,
                                       p.latency_ms, now);
                /* kept for resuming subscribers before it goes live, so
                 * that a replay reaches it in order */
                g->env.history_kept = g->history && json_is_string(id) &&
                                      mls_history_add(g->history, p.model_id,
                                                      strlen(p.model_id),
                                                      json_string_value(id),
                                                      json_string_length(id),
                                                      data, len, now) == 0;
                mls_hub_publish(g->hub, p.model_id, tenant, tlen, p.event);
                break;
        }
        case MLS_PAYLOAD_HEARTBEAT:
                mls_series_add(g->m_hb, 1);
                json_array_foreach(p.models, i, m)
                {
                        mls_monitor_heartbeat(g->monitor, json_string_value(m),
                                              now);
                }
                break;
        default:
                mls_series_add(g->m_garbage, 1);
                mls_debug("skipped a payload (%zu bytes): %s", len, p.reason);
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

/* Per-model channels follow the models that clients watch. */
static void on_model(void *opaque, const char *model, size_t len, int watched)
{
        mls_gateway_t *g = opaque;

        if (watched)
                mls_redis_sub_watch(g->redis, model, len);
        else
                mls_redis_sub_unwatch(g->redis, model, len);
}

int mls__gw_feed_start(mls_gateway_t *g, const struct mls_redis_url *url,
                       char *errstr, size_t errstr_size)
{
        struct mls_redis_sub_conf rc;

        if (g->bus) {
                mls_monitor_set_connected(g->monitor, 1);
                mls_series_set(g->m_redis, 1);
                mls_series_set(g->m_ready, 1);
                return 0;
        }
        rc = (struct mls_redis_sub_conf){
                .url = *url,
                .channel = g->cfg->redis_channel,
                .per_model = mls_channel_per_model(g->cfg),
                .retry_max_ms = g->cfg->redis_retry_max_ms,
                .max_reply_bytes = g->max_payload + 65536,
                .on_message = redis_message,
                .on_state = redis_state,
                .opaque = g,
        };
        mls_series_set(g->m_redis, 0);
        mls_series_set(g->m_ready, 0);
        g->redis = mls_redis_sub_new(&g->loop, &rc, errstr, errstr_size);
        if (!g->redis)
                return -1;
        if (rc.per_model)
                mls_hub_on_models(g->hub, on_model, g);
        return 0;
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
