/*
 * The Redis Cluster publisher (REDIS_CLUSTER=true): each prediction goes
 * with SPUBLISH to its model's channel ("<channel>:{<model id>}") on the
 * master that owns the channel's slot, each heartbeat to the control
 * channel ("<channel>:control"), through common/redis_cluster.h's
 * publisher, which follows MOVED/ASK, fetches the slot map again and
 * re-sends what a dead connection lost. Only per-model channels make
 * sense on a cluster: the engine refuses the single mode before it makes
 * this sink.
 *
 * A flush that leaves anything unacknowledged (a master died and its
 * replica is not promoted yet, the cluster is down) fails, and the engine
 * sends the whole batch again with backoff (engine/sink.h).
 *
 * Metrics: ml_stream_redis_connected (1 while the last connect or flush
 * succeeded), ml_stream_redis_cluster_redirects_total{kind="moved"|"ask"},
 * ml_stream_redis_cluster_map_refreshes_total and
 * ml_stream_redis_cluster_connection_errors_total, brought up to date
 * after each connect and flush.
 *
 * Threads: the engine thread only.
 */
#ifndef MLS_CLUSTER_SINK_H
#define MLS_CLUSTER_SINK_H

#include <stddef.h>

#include "common/metrics.h"
#include "engine/sink.h"

struct mls_redis_url;

/* Makes *sink a publisher to the cluster that seeds (nseeds > 0, copied;
 * the password of seeds[0] is used for every node) belong to, with
 * channel as the channels' prefix. A batch holds at most max_payloads
 * payloads of at most payload_bytes in all (ML_BATCH_MAX_MESSAGES and
 * ML_BATCH_MAX_OUTPUT_BYTES); its commands are capped to fit that, and a
 * heartbeat. Nothing is connected yet: the first flush or
 * mls_sink_connect() connects. Returns 0, or -1 when out of memory (*sink
 * is then empty). */
int mls_cluster_sink_new(struct mls_sink *sink,
                         const struct mls_redis_url *seeds, size_t nseeds,
                         const char *channel, size_t payload_bytes,
                         size_t max_payloads, mls_metrics_t *metrics);

#endif
