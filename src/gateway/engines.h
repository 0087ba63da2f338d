/*
 * What the engines say about their models (docs/models.md): from each engine's
 * latest heartbeat, the versions it serves per model id (serving, canary
 * with its share, shadow), its cumulative prediction and error counters
 * and its cumulative serving-vs-shadow comparisons; and from its last two
 * heartbeats, the counters' rates. Behind MLStreamingStatus's version
 * fields, Query.mlModelComparison and Query.mlStreamingOverview.
 *
 * An engine is live until three of its own heartbeat intervals (at least
 * MLS_ENGINES_MIN_TTL_MS) pass without a heartbeat; then it is forgotten.
 * Each heartbeat replaces the engine's state. Everything is bounded: at
 * most max_engines engines (a new one evicts the engine heard from least
 * recently), the payload's per-heartbeat caps (payload.h), at most
 * MLS_ENGINES_MAX_PAIRS comparisons per (engine, model), and in all at most
 * MLS_ENGINES_MAX_ENTRIES loaded entries and MLS_ENGINES_MAX_COMPARISONS
 * comparisons over every engine (what does not fit is skipped, counted).
 *
 * Threads: the gateway loop thread only.
 */
#ifndef MLS_GATEWAY_ENGINES_H
#define MLS_GATEWAY_ENGINES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gateway/payload.h"

#define MLS_ENGINES_MAX 1024
#define MLS_ENGINES_MIN_TTL_MS 15000
#define MLS_ENGINES_MAX_PAIRS 16
#define MLS_ENGINES_MAX_ENTRIES 65536
#define MLS_ENGINES_MAX_COMPARISONS 16384

typedef struct mls_engines mls_engines_t;

/* max_engines 0: MLS_ENGINES_MAX. NULL when memory runs out. */
mls_engines_t *mls_engines_new(unsigned max_engines);
void mls_engines_free(mls_engines_t *e);

/* Records hb (a MLS_PAYLOAD_HEARTBEAT with an engine id; others are
 * ignored) seen at now_ms (gateway wall clock). Returns the entries it
 * could not keep (global caps, memory); the caller counts them with
 * hb->skipped. */
unsigned mls_engines_heartbeat(mls_engines_t *e, const struct mls_payload *hb,
                               int64_t now_ms);
/* Forgets the engines not live at now_ms. O(engines). */
void mls_engines_expire(mls_engines_t *e, int64_t now_ms);

/* Adds the engines' fields of model_id's MLStreamingStatus to status:
 * framework, servingVersion, canaryVersion, canaryShare, shadowVersion
 * (each the value most live engines report; ties: the greater in byte
 * order; null when no engine), engines, predictionsPerSecond and
 * errorsPerSecond (summed over the engines whose rate is known; null when
 * none). Returns 0, or -1 when memory runs out. O(engines). */
int mls_engines_status(const mls_engines_t *e, const char *model_id,
                       json_t *status);

/* The MLModelComparison objects of model_id: one per (serving, shadow)
 * pair, summed over live engines, the pair most recently reported (its
 * rows last grew) first, at most MLS_ENGINES_MAX_PAIRS. New reference;
 * NULL when memory runs out. */
json_t *mls_engines_comparisons(const mls_engines_t *e, const char *model_id);

/* Engines tracked. */
size_t mls_engines_count(const mls_engines_t *e);

/* The q-quantile (0 < q <= 1) of a histogram: counts[0..n] of the buckets
 * (0, le[0]], (le[0], le[1]], ..., (le[n-1], inf), interpolated linearly
 * inside its bucket; le[n-1] when it falls in the last. NAN when the
 * counts sum to 0 or n is 0. */
double mls_engines_quantile(const double *le, const double *counts, unsigned n,
                            double q);

#endif
