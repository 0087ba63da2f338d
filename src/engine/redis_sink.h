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

/* Makes *sink a publisher to channel (per_model: the channels' prefix) on
 * the Redis at url, not yet connected (the first flush or
 * mls_sink_connect() connects). Returns 0, or -1 when out of memory. */
int mls_redis_sink_new(struct mls_sink *sink, const struct mls_redis_url *url,
                       const char *channel, int per_model,
                       mls_metrics_t *metrics);

#endif
