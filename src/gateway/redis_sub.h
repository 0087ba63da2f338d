/*
 * The gateway's Redis subscriber: one connection (shard_conn.c) on the
 * gateway's libuv loop, subscribed to one channel. When the connection
 * drops, cannot be made, or stays silent past its PING deadline it retries
 * with a backoff that doubles from 50 ms up to retry_max_ms, and
 * subscribes again.
 *
 * Per-model mode (per_model): channel is the prefix; the subscriber
 * always holds "<prefix>:control" (heartbeats) and, besides, the channels of
 * the models watched (mls_redis_sub_watch), subscribing and unsubscribing
 * as they come and go, with at most one SUBSCRIBE or UNSUBSCRIBE in flight
 * per channel. After a reconnect it subscribes to all of them again.
 *
 * Threads: the gateway loop thread only; callbacks run on it.
 */
#ifndef MLS_GATEWAY_REDIS_SUB_H
#define MLS_GATEWAY_REDIS_SUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/redis_url.h"

typedef struct mls_redis_sub mls_redis_sub_t;

struct mls_redis_sub_conf {
        struct mls_redis_url url;
        const char *channel; /* per_model: the prefix */
        int per_model;
        int64_t retry_max_ms;
        size_t max_reply_bytes;
        int64_t ping_ms; /* the connection's silence bound (shard_conn.h) */
        /* A message published on the channel; data is valid during the
         * call only. */
        void (*on_message)(void *opaque, const char *data, size_t len);
        /* The subscription went live (1: SUBSCRIBE confirmed) or down. */
        void (*on_state)(void *opaque, int connected);
        /* A subscription that the connection's loss had taken was made
         * again: what Redis published meanwhile is missing. model (len
         * bytes, not NUL-terminated) is the model whose channel it was, or
         * NULL for every model (the single channel). May be NULL. */
        void (*on_gap)(void *opaque, const char *model, size_t len);
        void *opaque;
};

/* Creates the subscriber and starts connecting. Returns NULL when memory
 * runs out or the loop refuses a handle (reason in errstr). */
mls_redis_sub_t *mls_redis_sub_new(uv_loop_t *loop,
                                   const struct mls_redis_sub_conf *conf,
                                   char *errstr, size_t errstr_size);
/* Per-model mode: start (watch) or stop (unwatch) receiving the
 * predictions of model (len bytes). Call each once per change: the hub
 * reports a model's first subscriber and the departure of its last. */
void mls_redis_sub_watch(mls_redis_sub_t *s, const char *model, size_t len);
void mls_redis_sub_unwatch(mls_redis_sub_t *s, const char *model, size_t len);
/* Channels subscribed now (confirmed by Redis). */
size_t mls_redis_sub_channels(const mls_redis_sub_t *s);

/* 1 while the subscription is confirmed. */
int mls_redis_sub_connected(const mls_redis_sub_t *s);
/* Connections that failed or were lost so far. */
uint64_t mls_redis_sub_errors(const mls_redis_sub_t *s);
/* Disconnects and closes every handle; the loop must run afterwards until
 * they are closed. No callback is called after this. */
void mls_redis_sub_close(mls_redis_sub_t *s);
/* Frees s after mls_redis_sub_close() and the loop has run. NULL is
 * ignored. */
void mls_redis_sub_free(mls_redis_sub_t *s);

#endif
