/*
 * The gateway's subscriber for Redis Cluster (REDIS_CLUSTER=true, with
 * per-model channels): sharded Pub/Sub, SSUBSCRIBE on the master that owns
 * each channel's slot, over one shard_conn.c connection per master.
 *
 * It holds "<prefix>:control" (heartbeats) always and the channel of each
 * watched model (mls_cluster_sub_watch), SSUBSCRIBing on the first
 * watcher and SUNSUBSCRIBing after the last, with at most one command in
 * flight per channel. The slot map comes from CLUSTER SLOTS, asked on a
 * separate short-lived connection (a subscribed connection may not run
 * it): the node that answered last first, then the seeds, then every node
 * of the last map.
 *
 * Following the cluster: a -MOVED reply to SSUBSCRIBE (the map learns the
 * new owner at once), a "sunsubscribe" the server sends on its own (the
 * slot left that node) or a lost node connection: the channels concerned
 * are re-placed at their current owners, after a fresh map where a node
 * was lost. Clients notice nothing but the messages published while a
 * channel had no subscription (a failover's gap). Each re-placement is
 * logged once per (from, to) pair and counted (mls_cluster_sub_resubscribes).
 * After failures the map is fetched again with a backoff that doubles from
 * 50 ms up to retry_max_ms, reset by the next confirmed subscription.
 *
 * Live (on_state 1) while a slot map is held and the control channel is
 * subscribed.
 *
 * Threads: the gateway loop thread only; callbacks run on it.
 */
#ifndef MLS_GATEWAY_CLUSTER_SUB_H
#define MLS_GATEWAY_CLUSTER_SUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/redis_url.h"

typedef struct mls_cluster_sub mls_cluster_sub_t;

struct mls_cluster_sub_conf {
        /* Seed nodes (copied); the user and password of seeds[0] are used
         * for every node. */
        const struct mls_redis_url *seeds;
        size_t nseeds;
        const char *prefix;      /* ML_STREAM_REDIS_CHANNEL; copied */
        const char *client_name; /* CLIENT SETNAME; copied */
        int64_t retry_max_ms;
        size_t max_reply_bytes;
        int64_t ping_ms; /* each connection's silence bound (shard_conn.h) */
        /* A message published on a channel; data is valid during the call
         * only. */
        void (*on_message)(void *opaque, const char *data, size_t len);
        /* Went live (1) or down (0). */
        void (*on_state)(void *opaque, int connected);
        /* A watched model's channel that a lost node, a failover or a slot
         * move had taken was subscribed again: what was published on it
         * meanwhile is missing. model is len bytes, not NUL-terminated.
         * May be NULL. */
        void (*on_gap)(void *opaque, const char *model, size_t len);
        void *opaque;
};

/* Creates the subscriber and starts fetching the slot map. Returns NULL
 * when memory runs out or nseeds is 0 (reason in errstr). */
mls_cluster_sub_t *mls_cluster_sub_new(uv_loop_t *loop,
                                       const struct mls_cluster_sub_conf *conf,
                                       char *errstr, size_t errstr_size);
/* Start (watch) or stop (unwatch) receiving the predictions of model (len
 * bytes). Call each once per change, as for mls_redis_sub_watch(). */
void mls_cluster_sub_watch(mls_cluster_sub_t *s, const char *model, size_t len);
void mls_cluster_sub_unwatch(mls_cluster_sub_t *s, const char *model,
                             size_t len);
/* Channels subscribed now (confirmed by their nodes), control included. */
size_t mls_cluster_sub_channels(const mls_cluster_sub_t *s);
/* 1 while live (see above). */
int mls_cluster_sub_connected(const mls_cluster_sub_t *s);
/* Connections (to nodes, or for the map) that failed or were lost;
 * channels re-placed on another node (or the same one, reconnected) after
 * they were lost. */
uint64_t mls_cluster_sub_errors(const mls_cluster_sub_t *s);
uint64_t mls_cluster_sub_resubscribes(const mls_cluster_sub_t *s);
/* Closes every connection and handle; the loop must run afterwards until
 * they are closed. No callback is called after this. */
void mls_cluster_sub_close(mls_cluster_sub_t *s);
/* Frees s after mls_cluster_sub_close() and the loop has run. NULL is
 * ignored. */
void mls_cluster_sub_free(mls_cluster_sub_t *s);

#endif
