/*
 * Redis Pub/Sub channel names (ML_STREAM_REDIS_CHANNEL_MODE). In the
 * single mode everything goes to ML_STREAM_REDIS_CHANNEL; in the per-model
 * mode each model's predictions go to "<channel>:{<model id>}" and
 * heartbeats to "<channel>:control". The braces make the model id the
 * channel's Redis Cluster hash tag.
 *
 * Threads: any. I/O-free.
 */
#ifndef MLS_CHANNEL_H
#define MLS_CHANNEL_H

#include <stddef.h>

#include "common/buf.h"
#include "common/config.h"

/* 1 when cfg asks for per-model channels. */
int mls_channel_per_model(const struct mls_config *cfg);

/* Appends the channel of model's predictions to b (per-model mode).
 * Returns 0, or -1 when b is full. */
int mls_channel_model(struct mls_buf *b, const char *prefix, const char *model,
                      size_t mlen);

/* The model id inside ch (len bytes) when ch is a model channel of
 * prefix ("<prefix>:{<model>}"): returns a pointer into ch and sets *mlen;
 * NULL otherwise. */
const char *mls_channel_model_of(const char *prefix, const char *ch, size_t len,
                                 size_t *mlen);

/* Appends the per-model mode's heartbeat channel to b. */
int mls_channel_control(struct mls_buf *b, const char *prefix);

#endif
