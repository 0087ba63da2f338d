/*
 * The Redis Pub/Sub publisher: PUBLISH pipelined per batch over one hiredis
 * connection. A lost connection fails the flush; reconnect() makes a new
 * one (the engine calls it with backoff).
 *
 * Per-model mode (ML_STREAM_REDIS_CHANNEL_MODE=per-model): a prediction
 * goes to its model's channel and a heartbeat to the control channel
 * (common/channel.h).
 *
 * Threads: the engine thread only.
 */
#ifndef MLS_REDIS_SINK_H
#define MLS_REDIS_SINK_H

#include "common/metrics.h"
#include "engine/sink.h"

struct mls_redis_url;

/* mls_redis_sink_new()'s flags */
enum {
        MLS_REDIS_PER_MODEL = 1, /* channel is the per-model channels' prefix */
        /* a submitted batch is never sent again: after a lost connection
         * it may or may not have been published (shadow predictions) */
        MLS_REDIS_AT_MOST_ONCE = 2,
};

/* Makes *sink a publisher to channel on the Redis at url, not yet
 * connected (the first flush or mls_sink_connect() connects). Returns 0,
 * or -1 when out of memory. */
int mls_redis_sink_new(struct mls_sink *sink, const struct mls_redis_url *url,
                       const char *channel, unsigned flags,
                       mls_metrics_t *metrics);

#endif
