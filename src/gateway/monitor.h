/*
 * The monitor: per-model status behind mlStreamingStatus (DESIGN.md
 * section 5). For each model it keeps a sliding window of the last N
 * prediction latencies (mean and p95) and when a prediction or heartbeat
 * for it was last seen, plus whether the gateway's feed (the Redis
 * subscription, or the in-process bus) is live.
 *
 * At most max_models models are tracked, so that garbage model ids cannot
 * exhaust memory; predictions for further models still fan out to their
 * subscribers but are only counted here.
 *
 * Threads: the gateway loop thread only.
 */
#ifndef MLS_GATEWAY_MONITOR_H
#define MLS_GATEWAY_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct mls_monitor mls_monitor_t;

struct mls_monitor_stats {
        unsigned window_size;   /* latencies in the window */
        double mean_ms, p95_ms; /* valid when window_size > 0 */
        int64_t last_seen_ms;   /* wall clock; 0: never */
        uint64_t predictions;   /* since start */
};

/* window: latencies kept per model (>= 1). Returns NULL when memory runs
 * out. */
mls_monitor_t *mls_monitor_new(unsigned window, unsigned max_models);
void mls_monitor_free(mls_monitor_t *m);

void mls_monitor_set_connected(mls_monitor_t *m, int connected);
int mls_monitor_connected(const mls_monitor_t *m);

/* Records a prediction seen at now_ms (wall clock). */
void mls_monitor_prediction(mls_monitor_t *m, const char *model_id,
                            double latency_ms, int64_t now_ms);
/* Records a heartbeat that lists model_id, seen at now_ms. */
void mls_monitor_heartbeat(mls_monitor_t *m, const char *model_id,
                           int64_t now_ms);

/* Fills *st for model_id (zeros for an unknown model). p95 is the
 * nearest-rank 95th percentile of the window. */
void mls_monitor_stats(const mls_monitor_t *m, const char *model_id,
                       struct mls_monitor_stats *st);
/* The MLStreamingStatus object for model_id, camelCase keys, as a new
 * reference (NULL when memory runs out). */
json_t *mls_monitor_status(const mls_monitor_t *m, const char *model_id);

/* Calls fn for every tracked model. */
void mls_monitor_foreach(const mls_monitor_t *m,
                         void (*fn)(void *opaque, const char *model_id,
                                    const struct mls_monitor_stats *st),
                         void *opaque);
/* Models tracked, and predictions/heartbeats for models that were not
 * tracked because max_models was reached. */
size_t mls_monitor_models(const mls_monitor_t *m);
uint64_t mls_monitor_untracked(const mls_monitor_t *m);

/* Nearest-rank percentile (0 < q <= 1) of v[0..n), n > 0. Reorders v. */
double mls_monitor_percentile(double *v, size_t n, double q);

#endif
