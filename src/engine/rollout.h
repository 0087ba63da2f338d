/*
 * Rolling a model version out on the live stream: which inputs a canary
 * takes, and the live comparison of a shadow version with the serving one.
 *
 * Canary: an input goes to the canary version when the fraction of its key
 * (mls_rollout_key_fraction) is below the canary's share. The key is the
 * input_id, or a top-level metadata field (model.conf canary_key); an
 * input without one goes to the serving version. The same key always gets
 * the same version for as long as the share stays the same, and raising
 * the share only moves keys from serving to canary.
 *
 * Shadow: the pipeline scores the inputs the serving version scored again
 * with the shadow version and hands both outputs here, row by row. A row
 * agrees when its outputs have the same width and the same arg-max (for
 * several outputs) or lie within the tolerance (one output); its
 * difference is the largest absolute difference of its outputs. Totals are
 * kept per (model id, serving version, shadow version), exported as
 * metrics and in heartbeats (for the gateway's mlModelComparison).
 *
 * Threads: the engine thread.
 */
#ifndef MLS_ROLLOUT_H
#define MLS_ROLLOUT_H

#include <stddef.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "engine/decoder.h"
#include "model/model.h"

/* At most this many (model, serving, shadow) comparisons are kept; later
 * ones are not compared (and a warning says so). */
#define MLS_ROLLOUT_MAX_COMPARISONS 256

/* The bucket bounds of the per-row absolute difference. */
extern const double mls_rollout_diff_buckets[];
extern const size_t mls_rollout_diff_nbuckets;

/* Where key falls in [0, 1) for model_id: FNV-1a (64 bits) of model_id, a
 * NUL byte and key, then MurmurHash3's fmix64 finalizer, its top 53 bits
 * divided by 2^53. */
double mls_rollout_key_fraction(const char *model_id, const char *key,
                                size_t key_len);

/* Whether in (an input for model_id) goes to route's canary. */
int mls_rollout_is_canary(const struct mls_model_route *route,
                          const char *model_id, const struct mls_input *in);

typedef struct mls_rollout mls_rollout_t;
struct mls_comparison;

/* metrics may be NULL. Returns NULL when out of memory. */
mls_rollout_t *mls_rollout_new(mls_metrics_t *metrics);
void mls_rollout_free(mls_rollout_t *r);

/* Counts one input of model_id that route (which has a canary) sent to its
 * canary (canary 1) or serving version, for ml_stream_canary_inputs_total
 * and ml_stream_canary_realised_share. */
void mls_rollout_count(mls_rollout_t *r, const char *model_id,
                       const struct mls_model_route *route, int canary);

/* The comparison of route's serving and shadow versions for model_id, or
 * NULL when the table is full. */
struct mls_comparison *mls_rollout_comparison(mls_rollout_t *r,
                                              const char *model_id,
                                              const struct mls_model_route *rt);
/* Adds rows scored by both: a (acols per row, serving) and b (bcols per
 * row, shadow). They count (in the metrics and the heartbeat) from the
 * next mls_comparison_report(), which the caller makes once per model
 * call rather than once per input. */
void mls_comparison_rows(struct mls_comparison *c, const float *a, size_t acols,
                         const float *b, size_t bcols, size_t rows);
void mls_comparison_report(struct mls_comparison *c);
/* Adds one model call of the serving (shadow 0) or shadow version on the
 * inputs being compared. */
void mls_comparison_call(struct mls_comparison *c, int shadow, double seconds);
/* Counts rows the shadow version failed to score. */
void mls_comparison_failed(struct mls_comparison *c, size_t rows);

/* Appends ,"comparisons":[...] (the heartbeat's field; see
 * docs/models.md) when there is any. */
void mls_rollout_heartbeat(const mls_rollout_t *r, struct mls_buf *out);

#endif
