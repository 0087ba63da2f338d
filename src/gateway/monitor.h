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
 * With tenant tracking on (the gateway turns it on when JWTs, and so
 * tenant-scoped callers, exist), each prediction with a metadata.tenant is
 * also recorded in a window of its (model, tenant) pair (at most
 * max_models pairs), and a tenant-scoped caller's status is computed from
 * its own tenants' windows only: it never sees another tenant's latencies
 * or when another tenant's last prediction went by. Heartbeats are
 * engine-level and seen by everyone.
 *
 * Threads: the gateway loop thread only.
 */
#ifndef MLS_GATEWAY_MONITOR_H
#define MLS_GATEWAY_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gateway/tenants.h"

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
/* Turns per-tenant windows on (before the first prediction). */
void mls_monitor_track_tenants(mls_monitor_t *m, int on);

void mls_monitor_set_connected(mls_monitor_t *m, int connected);
int mls_monitor_connected(const mls_monitor_t *m);

/* Records a prediction of tenant[0..tenant_len) (NULL: none) seen at
 * now_ms (wall clock). */
void mls_monitor_prediction(mls_monitor_t *m, const char *model_id,
                            const char *tenant, size_t tenant_len,
                            double latency_ms, int64_t now_ms);
/* Records a heartbeat that lists model_id, seen at now_ms. */
void mls_monitor_heartbeat(mls_monitor_t *m, const char *model_id,
                           int64_t now_ms);

/* Fills *st for model_id (zeros for an unknown model). p95 is the
 * nearest-rank 95th percentile of the window. */
void mls_monitor_stats(const mls_monitor_t *m, const char *model_id,
                       struct mls_monitor_stats *st);
/* The MLStreamingStatus object for model_id, camelCase keys, as a new
 * reference (NULL when memory runs out). only NULL: every tenant's
 * predictions; else only those of the tenants in the set (their windows
 * merged; lastHeartbeatAt the latest of their predictions and the model's
 * heartbeats). */
json_t *mls_monitor_status(const mls_monitor_t *m, const char *model_id,
                           const mls_tenants_t *only);
/* 1 if a caller restricted to only (NULL: everything) may learn that
 * model_id exists: a heartbeat listed it, or one of only's tenants had a
 * prediction for it. */
int mls_monitor_visible(const mls_monitor_t *m, const char *model_id,
                        const mls_tenants_t *only);

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
