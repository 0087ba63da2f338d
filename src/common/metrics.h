/*
 * A Prometheus metrics registry: counters, gauges and histograms with up to
 * three labels, rendered in the text exposition format (0.0.4).
 *
 * Threads: registering metrics and series takes a mutex and may run on any
 * thread; updating a series is lock-free (relaxed atomics) and meant for hot
 * paths, which should look a series up once and keep the pointer. Rendering
 * may run on any thread at the same time as updates.
 */
#ifndef MLS_METRICS_H
#define MLS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct mls_metrics mls_metrics_t;
typedef struct mls_metric mls_metric_t;
typedef struct mls_series mls_series_t;

enum mls_metric_type {
        MLS_COUNTER,
        MLS_GAUGE,
        MLS_HISTOGRAM,
};

/* Returns NULL when out of memory. */
mls_metrics_t *mls_metrics_new(void);
/* Frees the registry and everything in it; no updates may be in flight. */
void mls_metrics_free(mls_metrics_t *reg);

/*
 * Registers a family. label1/label2 are label names or NULL. buckets (for
 * histograms, ascending upper bounds, +Inf implied) is copied. Registering a
 * name twice returns the first family.
 */
mls_metric_t *mls_metric_new(mls_metrics_t *reg, enum mls_metric_type type,
                             const char *name, const char *help,
                             const char *label1, const char *label2,
                             const double *buckets, size_t nbuckets);

/* The same with a third label. */
mls_metric_t *mls_metric_new3(mls_metrics_t *reg, enum mls_metric_type type,
                              const char *name, const char *help,
                              const char *label1, const char *label2,
                              const char *label3, const double *buckets,
                              size_t nbuckets);

/* Finds or creates the series for these label values (NULL for absent
 * labels). Returns NULL when out of memory or over the per-family cap of
 * series (1000), which protects against label explosions. */
mls_series_t *mls_series(mls_metric_t *m, const char *v1, const char *v2);
mls_series_t *mls_series3(mls_metric_t *m, const char *v1, const char *v2,
                          const char *v3);

/* Unlinks the series from its family and frees it, so it no longer
 * renders (a gauge for something that went away, e.g. a revoked Kafka
 * partition). NULL is ignored. The caller must be the only holder of s: no
 * thread may update it, or use another pointer mls_series() returned for the
 * same labels, during or after the call. A later mls_series() with the same
 * labels creates a fresh series. */
void mls_series_remove(mls_series_t *s);

void mls_series_add(mls_series_t *s, double v);     /* counter/gauge */
void mls_series_set(mls_series_t *s, double v);     /* gauge */
void mls_series_observe(mls_series_t *s, double v); /* histogram */
double mls_series_value(const mls_series_t *s);     /* counter/gauge */
uint64_t mls_series_count(const mls_series_t *s);   /* histogram */
/* Observes many values at once (histogram): counts[i] of them in the
 * family's bucket i, counts[nbuckets] above the last bound, sum their sum.
 * For a caller that already sorted its values into the same buckets. */
void mls_series_observe_counts(mls_series_t *s, const uint64_t *counts,
                               double sum);

/* Appends the whole registry in the text format. Returns -1 if out must
 * grow past its limit. */
int mls_metrics_render(mls_metrics_t *reg, struct mls_buf *out);

/* Latency buckets in seconds, from 100 us to 10 s. */
extern const double mls_latency_buckets[];
extern const size_t mls_latency_nbuckets;

#endif
