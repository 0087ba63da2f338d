/*
 * The monitor: per-model status behind mlStreamingStatus (DESIGN.md
 * section 5). For each model it keeps a sliding window of the last N
 * prediction latencies (mean and p95) and when a prediction or heartbeat
 * for it was last seen, plus whether the gateway's feed (the Redis
 * subscription, or the in-process bus) is live.
 *
 * At most max_models models are tracked, so that garbage model ids cannot
 * exhaust memory. Models are kept in two activity lists (segmented LRU):
 * seen once, and seen again or subscribed to. When the table is full, a new
 * model takes the place of the least recently active model of the first
 * list (else of the second) that has no live subscribers, so that a flood
 * of made-up ids, each seen once, evicts itself rather than refusing a real
 * model. With an idle time set, models without activity (predictions,
 * heartbeats) for that long and without live subscribers are forgotten.
 * Only when every tracked model has subscribers are further models
 * refused; their predictions still fan out but are only counted here.
 *
 * Each window is a ring in arrival order (grown on demand up to the
 * window) with its running sum, so a prediction costs O(1) whatever the
 * window, and the mean O(1). The p95 is picked when asked for (status,
 * metrics export): a copy of the window, or of a tenant-scoped caller's
 * windows together, and a selection, O(window) on average.
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
/* Forgets models idle for idle_ms (0: never) unless in_use (may be NULL)
 * says that model_id has live subscribers; in_use also protects models
 * from eviction when the table is full. */
void mls_monitor_set_idle(mls_monitor_t *m, int64_t idle_ms,
                          int (*in_use)(void *opaque, const char *model_id),
                          void *opaque);
/* Forgets the models idle at now_ms (wall clock). Costs O(1) plus the
 * models it forgets (and those it finds in use, which count as active).
 * Predictions and heartbeats call it too. */
void mls_monitor_expire(mls_monitor_t *m, int64_t now_ms);

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

/* The tracked models' ids, sorted, as a new reference to an array the
 * caller must not change (NULL when memory runs out). Kept between calls
 * and rebuilt only after the set of models changed. */
json_t *mls_monitor_model_ids(mls_monitor_t *m);

/* Per-model Prometheus series: at most max_series models (the most
 * recently active) get series of their own in the families below (label
 * model_id; latency also stat="mean"|"p95"); the rest are summed into
 * model_id="__other__" (window size and mean latency). Families may be
 * NULL. */
struct mls_monitor_metrics {
        struct mls_metric *win_latency, *win_size, *last_seen;
        unsigned max_series;
};
void mls_monitor_set_metrics(mls_monitor_t *m,
                             const struct mls_monitor_metrics *mm);
/* Updates those series (O(max_series)); call before rendering. */
void mls_monitor_export(mls_monitor_t *m);

/* Calls fn for every tracked model. */
void mls_monitor_foreach(const mls_monitor_t *m,
                         void (*fn)(void *opaque, const char *model_id,
                                    const struct mls_monitor_stats *st),
                         void *opaque);
/* Models tracked, predictions/heartbeats for models that were not tracked
 * because max_models was reached with every model in use, and models
 * evicted (table full) or expired (idle) so far. */
size_t mls_monitor_models(const mls_monitor_t *m);
uint64_t mls_monitor_untracked(const mls_monitor_t *m);
uint64_t mls_monitor_evicted(const mls_monitor_t *m);
uint64_t mls_monitor_expired(const mls_monitor_t *m);

/* Nearest-rank percentile (0 < q <= 1) of v[0..n), n > 0. Reorders v. */
double mls_monitor_percentile(double *v, size_t n, double q);

#endif
