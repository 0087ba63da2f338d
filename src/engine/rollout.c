#include "engine/rollout.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strmap.h"

const double mls_rollout_diff_buckets[] = {
        1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t mls_rollout_diff_nbuckets =
        sizeof(mls_rollout_diff_buckets) / sizeof(mls_rollout_diff_buckets[0]);

#define NBUCKETS (sizeof(mls_rollout_diff_buckets) / sizeof(double))

struct mls_comparison {
        char model_id[MLS_MODEL_ID_MAX + 1];
        char serving[MLS_MODEL_VERSION_MAX + 1];
        char shadow[MLS_MODEL_VERSION_MAX + 1];
        double tolerance;
        uint64_t rows, agreements, failed;
        double diff_sum;
        uint64_t diff_counts[NBUCKETS + 1]; /* the last: above the bounds */
        /* what mls_comparison_report() has not put in the series yet */
        uint64_t new_rows, new_agreements, new_counts[NBUCKETS + 1];
        double new_sum; /* of the differences, infinite ones included */
        double serving_s, shadow_s;
        uint64_t serving_calls, shadow_calls;
        mls_series_t *s_rows, *s_agree, *s_diff, *s_failed;
        mls_series_t *s_serving_call, *s_shadow_call;
};

/* The canary split of one model, since its canary or share last changed. */
struct canary {
        char version[MLS_MODEL_VERSION_MAX + 1];
        double share;
        uint64_t inputs, canaried;
        mls_series_t *s_serving, *s_canary, *s_share;
};

struct mls_rollout {
        struct mls_comparison *cmp[MLS_ROLLOUT_MAX_COMPARISONS];
        size_t ncmp;
        int warned_full;
        struct mls_strmap canaries; /* model id -> struct canary * */
        mls_metric_t *m_rows, *m_agree, *m_diff, *m_failed, *m_call;
        mls_metric_t *m_canary_inputs, *m_canary_share;
};

double mls_rollout_key_fraction(const char *model_id, const char *key,
                                size_t key_len)
{
        uint64_t h =
                mls_fnv1a64(MLS_FNV1A64_INIT, model_id, strlen(model_id) + 1);

        /* FNV's top bits hardly move with a key's last bytes ("k1",
         * "k2", ...): the finalizer spreads them */
        h = mls_hash_mix(mls_fnv1a64(h, key, key_len));
        return (double)(h >> 11) / 9007199254740992.0; /* 2^53 */
}

/* The canary key of in: a metadata field's string, or a number's or
 * boolean's JSON text, written to buf. Returns its length, or -1 when in
 * has none. */
static int metadata_key(const struct mls_input *in, const char *field,
                        char *buf, size_t size)
{
        json_t *root, *v;
        int n = -1;

        if (!in->metadata)
                return -1;
        root = json_loadb(in->metadata, in->metadata_len, 0, NULL);
        v = json_object_get(root, field);
        if (json_is_string(v) && json_string_length(v) < size) {
                n = (int)json_string_length(v);
                memcpy(buf, json_string_value(v), (size_t)n);
        } else if (json_is_number(v) || json_is_boolean(v)) {
                struct mls_buf b;
                mls_buf_init(&b, size);
                if (mls_json_write(&b, v) == 0 && b.len < size) {
                        n = (int)b.len;
                        memcpy(buf, b.data, b.len);
                }
                mls_buf_free(&b);
        }
        json_decref(root);
        return n;
}

int mls_rollout_is_canary(const struct mls_model_route *route,
                          const char *model_id, const struct mls_input *in)
{
        char buf[512];
        int n;

        if (!route->canary || route->canary_share <= 0)
                return 0;
        if (!route->canary_key[0]) {
                if (!in->has_input_id)
                        return 0;
                return mls_rollout_key_fraction(model_id, in->input_id,
                                                strlen(in->input_id)) <
                       route->canary_share;
        }
        n = metadata_key(in, route->canary_key, buf, sizeof(buf));
        if (n < 0)
                return 0;
        return mls_rollout_key_fraction(model_id, buf, (size_t)n) <
               route->canary_share;
}

mls_rollout_t *mls_rollout_new(mls_metrics_t *metrics)
{
        mls_rollout_t *r = calloc(1, sizeof(*r));

        if (!r || !metrics)
                return r;
        r->m_rows = mls_metric_new3(
                metrics, MLS_COUNTER, "ml_stream_shadow_rows_total",
                "Rows scored by both the serving and the shadow version.",
                "model_id", "serving", "shadow", NULL, 0);
        r->m_agree = mls_metric_new3(
                metrics, MLS_COUNTER, "ml_stream_shadow_agreements_total",
                "Rows on which the shadow version agreed with the serving "
                "one (same arg-max; one output: within shadow_tolerance).",
                "model_id", "serving", "shadow", NULL, 0);
        r->m_diff = mls_metric_new3(
                metrics, MLS_HISTOGRAM, "ml_stream_shadow_abs_diff",
                "Per row, the largest absolute difference between the "
                "serving and the shadow version's outputs.",
                "model_id", "serving", "shadow", mls_rollout_diff_buckets,
                NBUCKETS);
        r->m_failed = mls_metric_new(
                metrics, MLS_COUNTER, "ml_stream_shadow_failures_total",
                "Rows the shadow version failed to score (the live stream "
                "is not affected).",
                "model_id", "shadow", NULL, 0);
        r->m_call = mls_metric_new3(
                metrics, MLS_HISTOGRAM, "ml_stream_shadow_call_seconds",
                "Model calls on the inputs being compared, by role "
                "(serving, shadow).",
                "model_id", "version", "role", mls_model_call_buckets,
                mls_model_call_nbuckets);
        r->m_canary_inputs = mls_metric_new3(
                metrics, MLS_COUNTER, "ml_stream_canary_inputs_total",
                "Inputs of a model with a canary, by the version and role "
                "(serving, canary) that scored them.",
                "model_id", "version", "role", NULL, 0);
        r->m_canary_share = mls_metric_new(
                metrics, MLS_GAUGE, "ml_stream_canary_realised_share",
                "Share of the inputs the canary version scored since its "
                "split began (0 to 1).",
                "model_id", "version", NULL, 0);
        return r;
}

void mls_rollout_free(mls_rollout_t *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->ncmp; i++)
                free(r->cmp[i]);
        mls_strmap_free(&r->canaries, free);
        free(r);
}

void mls_rollout_count(mls_rollout_t *r, const char *model_id,
                       const struct mls_model_route *route, int canary)
{
        size_t n = strlen(model_id);
        struct canary *c = mls_strmap_get(&r->canaries, model_id, n);
        const char *version = mls_model_version_name(route->canary);
        const char *serving = mls_model_version_name(route->serving);

        if (c && (strcmp(c->version, version) != 0 ||
                  c->share != route->canary_share)) {
                /* a new split: its share starts again */
                mls_series_set(c->s_share, 0);
                mls_strmap_remove(&r->canaries, model_id, n);
                free(c);
                c = NULL;
        }
        if (!c) {
                c = calloc(1, sizeof(*c));
                if (!c || !mls_strmap_put(&r->canaries, model_id, n, c)) {
                        free(c);
                        return;
                }
                snprintf(c->version, sizeof(c->version), "%s", version);
                c->share = route->canary_share;
                c->s_canary = mls_series3(r->m_canary_inputs, model_id, version,
                                          "canary");
                c->s_share = mls_series(r->m_canary_share, model_id, version);
        }
        if (!canary && !c->s_serving)
                c->s_serving = mls_series3(r->m_canary_inputs, model_id,
                                           serving, "serving");
        c->inputs++;
        c->canaried += canary ? 1 : 0;
        mls_series_add(canary ? c->s_canary : c->s_serving, 1);
        mls_series_set(c->s_share, (double)c->canaried / (double)c->inputs);
}

struct mls_comparison *mls_rollout_comparison(mls_rollout_t *r,
                                              const char *model_id,
                                              const struct mls_model_route *rt)
{
        const char *serving = mls_model_version_name(rt->serving);
        const char *shadow = mls_model_version_name(rt->shadow);
        struct mls_comparison *c;

        for (size_t i = r->ncmp; i-- > 0;) {
                c = r->cmp[i];
                if (strcmp(c->model_id, model_id) == 0 &&
                    strcmp(c->serving, serving) == 0 &&
                    strcmp(c->shadow, shadow) == 0) {
                        c->tolerance = rt->shadow_tolerance;
                        return c;
                }
        }
        if (r->ncmp == MLS_ROLLOUT_MAX_COMPARISONS) {
                if (!r->warned_full)
                        mls_warn("shadow comparisons: %d kept already; "
                                 "model %s's shadow %s is not compared "
                                 "until the engine restarts",
                                 MLS_ROLLOUT_MAX_COMPARISONS, model_id, shadow);
                r->warned_full = 1;
                return NULL;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        snprintf(c->model_id, sizeof(c->model_id), "%s", model_id);
        snprintf(c->serving, sizeof(c->serving), "%s", serving);
        snprintf(c->shadow, sizeof(c->shadow), "%s", shadow);
        c->tolerance = rt->shadow_tolerance;
        c->s_rows = mls_series3(r->m_rows, model_id, serving, shadow);
        c->s_agree = mls_series3(r->m_agree, model_id, serving, shadow);
        c->s_diff = mls_series3(r->m_diff, model_id, serving, shadow);
        c->s_failed = mls_series(r->m_failed, model_id, shadow);
        c->s_serving_call =
                mls_series3(r->m_call, model_id, serving, "serving");
        c->s_shadow_call = mls_series3(r->m_call, model_id, shadow, "shadow");
        r->cmp[r->ncmp++] = c;
        return c;
}

static size_t argmax(const float *v, size_t n)
{
        size_t best = 0;

        for (size_t i = 1; i < n; i++)
                if (v[i] > v[best])
                        best = i;
        return best;
}

void mls_comparison_rows(struct mls_comparison *c, const float *a, size_t acols,
                         const float *b, size_t bcols, size_t rows)
{
        for (size_t r = 0; r < rows; r++) {
                const float *x = a + r * acols, *y = b + r * bcols;
                double d = 0;
                size_t k = 0;
                if (acols != bcols)
                        continue; /* disagrees; no difference to measure */
                for (size_t j = 0; j < acols; j++) {
                        double dj = fabs((double)x[j] - (double)y[j]);
                        if (!(dj <= d)) /* NaN counts as the largest */
                                d = isnan(dj) ? INFINITY : dj;
                }
                if (acols == 1 ? d <= c->tolerance
                               : argmax(x, acols) == argmax(y, bcols))
                        c->new_agreements++;
                while (k < NBUCKETS && !(d <= mls_rollout_diff_buckets[k]))
                        k++;
                c->new_counts[k]++;
                c->new_sum += d;
                if (isfinite(d))
                        c->diff_sum += d;
        }
        c->new_rows += rows;
}

void mls_comparison_report(struct mls_comparison *c)
{
        if (!c->new_rows)
                return;
        for (size_t k = 0; k <= NBUCKETS; k++)
                c->diff_counts[k] += c->new_counts[k];
        mls_series_observe_counts(c->s_diff, c->new_counts, c->new_sum);
        c->rows += c->new_rows;
        c->agreements += c->new_agreements;
        mls_series_add(c->s_rows, (double)c->new_rows);
        mls_series_add(c->s_agree, (double)c->new_agreements);
        memset(c->new_counts, 0, sizeof(c->new_counts));
        c->new_rows = c->new_agreements = 0;
        c->new_sum = 0;
}

void mls_comparison_call(struct mls_comparison *c, int shadow, double seconds)
{
        if (shadow) {
                c->shadow_s += seconds;
                c->shadow_calls++;
                mls_series_observe(c->s_shadow_call, seconds);
        } else {
                c->serving_s += seconds;
                c->serving_calls++;
                mls_series_observe(c->s_serving_call, seconds);
        }
}

void mls_comparison_failed(struct mls_comparison *c, size_t rows)
{
        c->failed += rows;
        mls_series_add(c->s_failed, (double)rows);
}

static void put_double(struct mls_buf *out, double v)
{
        mls_buf_printf(out, "%.9g", isfinite(v) ? v : 0.0);
}

void mls_rollout_heartbeat(const mls_rollout_t *r, struct mls_buf *out)
{
        if (!r->ncmp)
                return;
        mls_buf_puts(out, ",\"comparisons\":[");
        for (size_t i = 0; i < r->ncmp; i++) {
                const struct mls_comparison *c = r->cmp[i];
                mls_buf_puts(out, i ? ",{\"model_id\":" : "{\"model_id\":");
                mls_buf_json_str(out, c->model_id, strlen(c->model_id));
                mls_buf_puts(out, ",\"serving\":");
                mls_buf_json_str(out, c->serving, strlen(c->serving));
                mls_buf_puts(out, ",\"shadow\":");
                mls_buf_json_str(out, c->shadow, strlen(c->shadow));
                mls_buf_printf(out,
                               ",\"rows\":%llu,\"agreements\":%llu,"
                               "\"failed\":%llu,\"abs_diff_sum\":",
                               (unsigned long long)c->rows,
                               (unsigned long long)c->agreements,
                               (unsigned long long)c->failed);
                put_double(out, c->diff_sum);
                mls_buf_puts(out, ",\"abs_diff_le\":[");
                for (size_t k = 0; k < NBUCKETS; k++) {
                        if (k)
                                mls_buf_putc(out, ',');
                        put_double(out, mls_rollout_diff_buckets[k]);
                }
                mls_buf_puts(out, "],\"abs_diff_counts\":[");
                for (size_t k = 0; k <= NBUCKETS; k++)
                        mls_buf_printf(out, "%s%llu", k ? "," : "",
                                       (unsigned long long)c->diff_counts[k]);
                mls_buf_puts(out, "],\"serving_seconds\":");
                put_double(out, c->serving_s);
                mls_buf_printf(out, ",\"serving_calls\":%llu",
                               (unsigned long long)c->serving_calls);
                mls_buf_puts(out, ",\"shadow_seconds\":");
                put_double(out, c->shadow_s);
                mls_buf_printf(out, ",\"shadow_calls\":%llu}",
                               (unsigned long long)c->shadow_calls);
        }
        mls_buf_putc(out, ']');
}
