/*
 * The Redis Pub/Sub publisher: PUBLISH pipelined per batch over one hiredis
 * connection. A lost connection fails the flush; reconnect() makes a new
 * one (the engine calls it with backoff).
 *
 * Threads: the engine thread only.
 */
#ifndef MLS_REDIS_SINK_H
#define MLS_REDIS_SINK_H

#include "common/metrics.h"
#include "engine/sink.h"

struct mls_redis_url;

extern const struct mls_sink_ops mls_redis_sink_ops;

/* Returns the sink's context (not yet connected), or NULL. */
void *mls_redis_sink_new(const struct mls_redis_url *url, const char *channel,
                         mls_metrics_t *metrics);
void mls_redis_sink_free(void *ctx);
int mls_redis_sink_connected(void *ctx);

#endif
