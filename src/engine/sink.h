/*
 * Where the engine's output goes: a sink takes payloads and acknowledges
 * them in bulk. Redis Pub/Sub, a Kafka topic and the in-process bus are
 * sinks; unit tests use fakes. The engine knows sinks only through this
 * interface.
 *
 * Back-pressure: the engine sends one batch, then flushes, and consumes
 * nothing more until the flush returns; so a slow sink slows consumption
 * and nothing queues up in between. (With a submit op, one batch more may
 * be on its way, unacknowledged, while the next is scored.) A failed flush is
 * transient by contract: the engine pauses its partitions, keeps the batch, and
 * calls reconnect (when the sink is not connected) and flush again with
 * exponential backoff (REDIS_RETRY_MAX_MS). Payloads a sink refuses for
 * good are the sink's to dead-letter or count; they never fail a flush.
 *
 * Threads: a sink is driven by the engine thread only.
 */
#ifndef MLS_SINK_H
#define MLS_SINK_H

#include <stddef.h>

struct mls_record;

struct mls_sink_ops {
        const char *name;
        /* Queues one payload. rec is the input it came from (for keys and
         * headers; NULL for a heartbeat); model_id the model of a
         * prediction (NULL for dead letters and heartbeats); reason/detail
         * are set for dead letters, else NULL. Returns -1 if it cannot
         * even be queued. */
        int (*send)(void *ctx, const struct mls_record *rec,
                    const char *model_id, const char *payload, size_t len,
                    const char *reason, const char *detail);
        /* Waits until everything queued is acknowledged. Returns 0, or -1
         * with errstr when anything was not: then all payloads queued since
         * the last successful flush must be sent again. */
        int (*flush)(void *ctx, char *errstr, size_t errstr_size);
        /* Optional: like flush, but returns once what is queued is on its
         * way, without waiting for its acknowledgment; 0 says that what
         * the submit before handed over is acknowledged. The next flush
         * or submit that returns 0 acknowledges this one. When either
         * fails, the sink keeps what was submitted and not acknowledged
         * and sends it again, ahead of anything queued later; the caller
         * sends again what it queued since the last submit. */
        int (*submit)(void *ctx, char *errstr, size_t errstr_size);
        /* Optional: 1 when the last flush or submit, although it failed,
         * read the acknowledgment of the batch submitted before it: that
         * batch is done, and the sink does not send it again (only what
         * was queued after it is to be sent again). */
        int (*acked_ahead)(void *ctx);
        /* Optional: tries to (re)connect; 0 when connected. */
        int (*reconnect)(void *ctx, char *errstr, size_t errstr_size);
        /* Optional: 1 while connected (without: always). */
        int (*connected)(void *ctx);
        /* Optional: how many subscribers the payloads of the last batch
         * acknowledged (by flush or submit) reached in all (Pub/Sub's
         * PUBLISH replies), or -1 when unknown. */
        long long (*receivers)(void *ctx);
        /* Optional: frees ctx and everything the sink owns. */
        void (*destroy)(void *ctx);
};

/* ops NULL: no sink. */
struct mls_sink {
        const struct mls_sink_ops *ops;
        void *ctx;
};

static inline int mls_sink_connected(const struct mls_sink *s)
{
        return !s->ops->connected || s->ops->connected(s->ctx);
}

/* Connects s unless it is connected already (or cannot be). */
static inline int mls_sink_connect(const struct mls_sink *s, char *errstr,
                                   size_t errstr_size)
{
        if (!s->ops->reconnect || mls_sink_connected(s))
                return 0;
        return s->ops->reconnect(s->ctx, errstr, errstr_size);
}

/* Frees s (if it has a destroy op) and leaves it empty. */
static inline void mls_sink_destroy(struct mls_sink *s)
{
        if (s->ops && s->ops->destroy)
                s->ops->destroy(s->ctx);
        s->ops = NULL;
        s->ctx = NULL;
}

#endif
