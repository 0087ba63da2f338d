#include "engine/pipeline.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/strmap.h"
#include "common/log.h"
#include "engine/inference_id.h"
#include "engine/rollout.h"

#define MODEL_SERIES_DEFAULT 100
#define MODEL_SERIES_MAX 200 /* x4 error stages < the registry's 1000 */
#define PAYLOAD_LIMIT_DEFAULT ((size_t)64 << 20)
#define OVERFLOW_ID "__other__"
#define SHADOW_QUIET_NS 1000000000LL

/* Rate limits for warnings about rejected messages: one per decode error,
 * then these. */
enum {
        LOG_UNKNOWN_MODEL = MLS_DECODE_OUT_OF_MEMORY + 1,
        LOG_WIDTH,
        LOG_INFERENCE,
        LOG_OUTPUT,
        LOG_SHADOW,
        LOG_SLOTS,
};

enum item_state {
        ITEM_PENDING,
        ITEM_OK,
        ITEM_BAD,
};

/* An item's shadow scoring (struct mls_model_route.shadow). */
enum shadow_state {
        SHADOW_NONE, /* not to be scored, or not yet */
        SHADOW_OK,   /* outputs kept, payload built */
        SHADOW_FAILED,
};

struct model_entry {
        char id[MLS_MODEL_ID_MAX + 1];
        mls_series_t *predictions, *latency, *rows, *batch_rows;
        mls_series_t *err_decode, *err_route, *err_validate, *err_inference;
};

struct item {
        struct mls_record rec;
        struct mls_input in;
        enum item_state state;
        const char *reason;
        char detail[200];
        struct model_entry *entry;
        const struct mls_model_route *route; /* until the batch is scored */
        mls_model_t *model;                  /* the version that scores it */
        int canary;                          /* model is route->canary */
        enum shadow_state shadow;
        size_t out_off, out_cols;  /* into p->outputs */
        size_t pay_off, pay_len;   /* into p->payloads */
        size_t sh_off, sh_cols;    /* into p->shadow_outputs */
        size_t sh_pay_off, sh_len; /* into p->shadow_payloads */
};

enum phase {
        PHASE_COLLECT,
        PHASE_PUBLISH,
        PHASE_SECONDARY,
};

struct mls_pipeline {
        struct mls_pipeline_conf conf;
        char *default_model_id, *engine_id;
        struct item *items;
        size_t nitems, cap, rows, bytes;
        enum phase phase;
        struct mls_floats feats, outputs, scratch, shadow_outputs;
        struct mls_buf payloads, shadow_payloads;
        mls_rollout_t *rollout;
        /* Shadow predictions are built and published only while someone
         * subscribes to them: after a flush that reached nobody, batches
         * until this time only compare (then one publishes again). */
        int64_t shadow_quiet_until_ns;
        mls_series_t *s_shadow_receivers, *s_shadow_lost;
        size_t *order;            /* indices being scored together */
        struct mls_strmap models; /* model id -> struct model_entry * */
        struct model_entry other, unknown;
        struct mls_log_limit log_reason[LOG_SLOTS];
        mls_inference_ids_t *ids;
        mls_metric_t *m_pred, *m_lat, *m_err, *m_rows, *m_batch, *m_dlq;
        mls_metric_t *m_pubfail;
        mls_series_t *s_pubfail;
        /* mls_pipeline_flush_ahead(): the records of the batch the
         * publisher has not acknowledged yet, in order (done is called for
         * them once it has), and whether the pending batch was submitted */
        struct mls_record *unacked;
        size_t nunacked, unacked_cap;
        int64_t ack_due_ns; /* when the unacknowledged are settled alone */
        int submitted;
};

static void entry_init(mls_pipeline_t *p, struct model_entry *e, const char *id)
{
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->predictions = mls_series(p->m_pred, id, NULL);
        e->latency = mls_series(p->m_lat, id, NULL);
        e->rows = mls_series(p->m_rows, id, NULL);
        e->batch_rows = mls_series(p->m_batch, id, NULL);
        e->err_decode = mls_series(p->m_err, id, "decode");
        e->err_route = mls_series(p->m_err, id, "route");
        e->err_validate = mls_series(p->m_err, id, "validate");
        e->err_inference = mls_series(p->m_err, id, "inference");
}

mls_pipeline_t *mls_pipeline_new(const struct mls_pipeline_conf *conf)
{
        static const double batch_buckets[] = {1,  2,   4,   8,   16,   32,
                                               64, 128, 256, 512, 1024, 4096};
        mls_pipeline_t *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->conf = *conf;
        p->default_model_id = strdup(conf->default_model_id);
        p->engine_id = strdup(conf->engine_id ? conf->engine_id : "engine");
        p->conf.default_model_id = p->default_model_id;
        p->conf.engine_id = p->engine_id;
        if (!p->conf.payload_limit)
                p->conf.payload_limit = PAYLOAD_LIMIT_DEFAULT;
        if (!p->conf.max_model_series)
                p->conf.max_model_series = MODEL_SERIES_DEFAULT;
        if (p->conf.max_model_series > MODEL_SERIES_MAX)
                p->conf.max_model_series = MODEL_SERIES_MAX;
        mls_buf_init(&p->payloads, p->conf.payload_limit);
        mls_buf_init(&p->shadow_payloads, p->conf.payload_limit);
        p->ids = mls_inference_ids_new();
        p->rollout = mls_rollout_new(conf->metrics);
        if (!p->ids || !p->rollout) {
                mls_inference_ids_free(p->ids);
                mls_rollout_free(p->rollout);
                mls_buf_free(&p->payloads);
                mls_buf_free(&p->shadow_payloads);
                free(p->default_model_id);
                free(p->engine_id);
                free(p);
                return NULL;
        }
        p->m_pred = mls_metric_new(conf->metrics, MLS_COUNTER,
                                   "ml_stream_inference_predictions_total",
                                   "Predictions published (one per input "
                                   "message).",
                                   "model_id", NULL, NULL, 0);
        p->m_lat = mls_metric_new(
                conf->metrics, MLS_HISTOGRAM,
                "ml_stream_inference_latency_seconds",
                "Engine time from receiving a message to handing its "
                "prediction to the publisher.",
                "model_id", NULL, mls_latency_buckets, mls_latency_nbuckets);
        p->m_err = mls_metric_new(conf->metrics, MLS_COUNTER,
                                  "ml_stream_inference_errors_total",
                                  "Messages that failed, by stage (decode, "
                                  "route, validate, inference); failed "
                                  "deliveries are "
                                  "ml_stream_publish_failures_total.",
                                  "model_id", "stage", NULL, 0);
        p->m_rows = mls_metric_new(
                conf->metrics, MLS_COUNTER, "ml_stream_inference_rows_total",
                "Feature rows scored.", "model_id", NULL, NULL, 0);
        p->m_batch = mls_metric_new(
                conf->metrics, MLS_HISTOGRAM, "ml_stream_batch_rows",
                "Rows per model call.", "model_id", NULL, batch_buckets,
                sizeof(batch_buckets) / sizeof(batch_buckets[0]));
        p->m_dlq = mls_metric_new(conf->metrics, MLS_COUNTER,
                                  "ml_stream_dead_letters_total",
                                  "Messages sent to the dead-letter topic, "
                                  "by reason.",
                                  "reason", NULL, NULL, 0);
        p->m_pubfail = mls_metric_new(conf->metrics, MLS_COUNTER,
                                      "ml_stream_publish_failures_total",
                                      "Failed attempts to deliver a batch, by "
                                      "sink.",
                                      "sink", NULL, NULL, 0);
        p->s_shadow_receivers = mls_series(
                mls_metric_new(conf->metrics, MLS_GAUGE,
                               "ml_stream_shadow_receivers",
                               "Subscribers the last shadow predictions "
                               "reached; with none, they are compared but "
                               "published only once a second, to find out.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        p->s_shadow_lost = mls_series(
                mls_metric_new(conf->metrics, MLS_COUNTER,
                               "ml_stream_shadow_unpublished_total",
                               "Shadow predictions the shadow channel refused "
                               "or could not take; they are not retried "
                               "and the live stream is not held up.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        entry_init(p, &p->other, OVERFLOW_ID);
        entry_init(p, &p->unknown, "unknown");
        return p;
}

void mls_pipeline_free(mls_pipeline_t *p)
{
        if (!p)
                return;
        mls_strmap_free(&p->models, free);
        mls_inference_ids_free(p->ids);
        mls_rollout_free(p->rollout);
        free(p->items);
        free(p->unacked);
        free(p->order);
        mls_floats_free(&p->feats);
        mls_floats_free(&p->outputs);
        mls_floats_free(&p->scratch);
        mls_floats_free(&p->shadow_outputs);
        mls_buf_free(&p->payloads);
        mls_buf_free(&p->shadow_payloads);
        free(p->default_model_id);
        free(p->engine_id);
        free(p);
}

/* The metrics entry for a model id; ids past max_model_series share
 * "__other__", so producers cannot grow /metrics without bound. */
static struct model_entry *entry_for(mls_pipeline_t *p, const char *id)
{
        size_t n = strlen(id);
        struct model_entry *e = mls_strmap_get(&p->models, id, n);

        if (e)
                return e;
        if (p->models.count >= p->conf.max_model_series)
                return &p->other;
        e = calloc(1, sizeof(*e));
        if (!e)
                return &p->other;
        if (!mls_strmap_put(&p->models, id, n, e)) {
                free(e);
                return &p->other;
        }
        entry_init(p, e, id);
        return e;
}

static void mark_bad(struct item *it, const char *reason, mls_series_t *err,
                     const char *detail)
{
        it->state = ITEM_BAD;
        it->reason = reason;
        snprintf(it->detail, sizeof(it->detail), "%s", detail);
        mls_series_add(err, 1);
}

/* Rejected messages are logged at warn level, at most a few lines per
 * reason and interval (the dead-letter topic has every one). */
static void warn_rejected(mls_pipeline_t *p, unsigned slot,
                          const struct item *it)
{
        mls_log_limited(&p->log_reason[slot], MLS_LOG_WARN,
                        "rejected %s[%d]@%lld: %s: %s", it->rec.topic,
                        (int)it->rec.partition, (long long)it->rec.offset,
                        it->reason, it->detail);
}

size_t mls_pipeline_add(mls_pipeline_t *p, const struct mls_record *rec)
{
        struct item *it;
        enum mls_decode_err err;
        char errstr[200];

        if (p->nitems == p->cap) {
                size_t ncap = p->cap ? p->cap * 2 : 256;
                struct item *n = realloc(p->items, ncap * sizeof(*n));
                size_t *o = realloc(p->order, ncap * sizeof(*o));
                if (n)
                        p->items = n;
                if (o)
                        p->order = o;
                if (!n || !o) {
                        mls_error("pipeline: out of memory");
                        abort();
                }
                p->cap = ncap;
        }
        it = &p->items[p->nitems++];
        it->rec = *rec;
        it->state = ITEM_PENDING;
        it->route = NULL;
        it->model = NULL;
        it->canary = 0;
        it->shadow = SHADOW_NONE;
        p->bytes += rec->len;
        err = mls_decode(rec->payload, rec->len, &p->conf.limits, &p->feats,
                         &it->in, errstr, sizeof(errstr));
        if (err != MLS_DECODE_OK) {
                /* counted under its model when it named a served one */
                it->entry =
                        it->in.has_model_id &&
                                        p->conf.resolve(p->conf.resolve_opaque,
                                                        it->in.model_id)
                                ? entry_for(p, it->in.model_id)
                                : &p->unknown;
                mark_bad(it, mls_decode_err_name(err), it->entry->err_decode,
                         errstr);
                warn_rejected(p, (unsigned)err, it);
                return p->rows;
        }
        if (!it->in.has_model_id)
                snprintf(it->in.model_id, sizeof(it->in.model_id), "%s",
                         p->default_model_id);
        it->entry = &p->unknown; /* until the model id resolves */
        p->rows += it->in.rows;
        return p->rows;
}

size_t mls_pipeline_pending(const mls_pipeline_t *p)
{
        return p->nitems + p->nunacked;
}

size_t mls_pipeline_pending_rows(const mls_pipeline_t *p)
{
        return p->rows;
}

static int batch_full(const mls_pipeline_t *p)
{
        const struct mls_pipeline_conf *c = &p->conf;

        return (c->batch_max_rows && p->rows >= c->batch_max_rows) ||
               (c->batch_max_messages && p->nitems >= c->batch_max_messages) ||
               (c->batch_max_bytes && p->bytes >= c->batch_max_bytes);
}

/* When the pending batch closes by age: its oldest message's receipt plus
 * the longest wait. */
static int64_t batch_close_ns(const mls_pipeline_t *p)
{
        return p->items[0].rec.recv_ns + p->conf.batch_max_wait_ns;
}

int mls_pipeline_due(const mls_pipeline_t *p, int64_t now_ns)
{
        if (!p->nitems) /* to be acknowledged */
                return p->nunacked > 0 && now_ns >= p->ack_due_ns;
        return batch_full(p) || now_ns >= batch_close_ns(p);
}

int mls_pipeline_full(const mls_pipeline_t *p)
{
        return p->nitems && batch_full(p);
}

int mls_pipeline_wait_ms(const mls_pipeline_t *p, int64_t now_ns, int idle_ms)
{
        int64_t left;

        if (!p->nitems && !p->nunacked)
                return idle_ms;
        if (mls_pipeline_due(p, now_ns))
                return 0;
        left = (p->nitems ? batch_close_ns(p) : p->ack_due_ns) - now_ns;
        return left < idle_ms * 1000000LL ? (int)((left + 999999) / 1000000)
                                          : idle_ms;
}

static int floats_reserve(struct mls_floats *f, size_t n)
{
        if (f->len + n > f->cap) {
                size_t ncap = f->cap ? f->cap : 1024;
                float *v;
                while (ncap < f->len + n)
                        ncap *= 2;
                v = realloc(f->v, ncap * sizeof(float));
                if (!v)
                        return -1;
                f->v = v;
                f->cap = ncap;
        }
        return 0;
}

/* Keeps the model's output rows for each item of a scored chunk. */
static int keep_outputs(mls_pipeline_t *p, size_t *idx, size_t n,
                        const struct mls_tensor *out)
{
        size_t row = 0;

        if (floats_reserve(&p->outputs, out->rows * out->cols) < 0)
                return -1;
        for (size_t k = 0; k < n; k++) {
                struct item *it = &p->items[idx[k]];
                size_t cnt = it->in.rows * out->cols;
                it->out_off = p->outputs.len;
                it->out_cols = out->cols;
                memcpy(p->outputs.v + p->outputs.len,
                       out->data + row * out->cols, cnt * sizeof(float));
                p->outputs.len += cnt;
                row += it->in.rows;
                it->state = ITEM_OK;
        }
        return 0;
}

/* The rows of items idx[0..n) (all of width cols) as one tensor: in place
 * when they lie one after another in p->feats, else copied to scratch.
 * Returns -1 when out of memory. */
static int gather(mls_pipeline_t *p, size_t *idx, size_t n, size_t cols,
                  struct mls_tensor *in)
{
        struct item *first = &p->items[idx[0]];
        int contiguous = 1;

        in->cols = cols;
        in->rows = 0;
        for (size_t k = 0; k < n; k++) {
                struct item *it = &p->items[idx[k]];
                if (k && it->in.features_off !=
                                 p->items[idx[k - 1]].in.features_off +
                                         p->items[idx[k - 1]].in.rows * cols)
                        contiguous = 0;
                in->rows += it->in.rows;
        }
        if (contiguous) {
                in->data = p->feats.v + first->in.features_off;
                return 0;
        }
        p->scratch.len = 0;
        if (floats_reserve(&p->scratch, in->rows * cols) < 0)
                return -1;
        for (size_t k = 0; k < n; k++) {
                struct item *it = &p->items[idx[k]];
                size_t cnt = it->in.rows * cols;
                memcpy(p->scratch.v + p->scratch.len,
                       p->feats.v + it->in.features_off, cnt * sizeof(float));
                p->scratch.len += cnt;
        }
        in->data = p->scratch.v;
        return 0;
}

/* Scores items idx[0..n) (same model, same width) in one call; on failure
 * with several items, scores them one by one so that only the items the
 * model refuses are dead-lettered. */
static void score_chunk(mls_pipeline_t *p, size_t *idx, size_t n)
{
        struct item *first = &p->items[idx[0]];
        struct mls_tensor in, out;
        char errstr[200];
        /* calls on inputs a shadow also scores are timed for comparison */
        struct mls_comparison *cmp =
                first->route->shadow && !first->canary
                        ? mls_rollout_comparison(p->rollout, first->in.model_id,
                                                 first->route)
                        : NULL;
        int64_t t0;
        int rc;

        if (gather(p, idx, n, first->in.cols, &in) < 0)
                goto fail_oom;
        t0 = cmp ? mls_clock_mono_ns() : 0;
        rc = mls_model_infer(first->model, &in, &out, errstr, sizeof(errstr));
        if (cmp && rc == 0)
                mls_comparison_call(cmp, 0,
                                    (double)(mls_clock_mono_ns() - t0) / 1e9);
        if (rc == 0) {
                mls_series_observe(first->entry->batch_rows, (double)in.rows);
                for (size_t k = 0; k < n; k++)
                        mls_series_add(p->items[idx[k]].entry->rows,
                                       (double)p->items[idx[k]].in.rows);
                if (keep_outputs(p, idx, n, &out) < 0)
                        goto fail_oom;
                return;
        }
        if (n > 1) {
                for (size_t k = 0; k < n; k++)
                        score_chunk(p, &idx[k], 1);
                return;
        }
        mark_bad(first, "inference_failed", first->entry->err_inference,
                 errstr);
        warn_rejected(p, LOG_INFERENCE, first);
        return;
fail_oom:
        for (size_t k = 0; k < n; k++)
                mark_bad(&p->items[idx[k]], "out_of_memory",
                         p->items[idx[k]].entry->err_inference,
                         "out of memory");
}

/*
 * Calls score for groups of the items that wanted() accepts, each group
 * the items that are same() as its first, in arrival order, in chunks of
 * at most batch_max_rows rows. score must leave the items it is given no
 * longer wanted.
 */
static void in_chunks(mls_pipeline_t *p, int (*wanted)(const struct item *),
                      int (*same)(const struct item *, const struct item *),
                      void (*score)(mls_pipeline_t *, size_t *, size_t))
{
        for (size_t i = 0; i < p->nitems; i++) {
                struct item *lead = &p->items[i];
                size_t n = 0, rows = 0;
                if (!wanted(lead))
                        continue;
                for (size_t j = i; j < p->nitems; j++) {
                        struct item *it = &p->items[j];
                        if (!wanted(it) || !same(lead, it))
                                continue;
                        if (n && rows + it->in.rows > p->conf.batch_max_rows) {
                                score(p, p->order, n);
                                n = rows = 0;
                        }
                        p->order[n++] = j;
                        rows += it->in.rows;
                }
                score(p, p->order, n);
        }
}

static int pending(const struct item *it)
{
        return it->state == ITEM_PENDING;
}

static int same_model(const struct item *a, const struct item *b)
{
        return a->model == b->model && a->in.cols == b->in.cols;
}

/* Groups the pending items by model and width and scores each group in
 * chunks of at most batch_max_rows rows. */
static void score_all(mls_pipeline_t *p)
{
        char errstr[200];

        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                size_t width;
                if (it->state != ITEM_PENDING)
                        continue;
                it->route = p->conf.resolve(p->conf.resolve_opaque,
                                            it->in.model_id);
                if (!it->route) {
                        snprintf(errstr, sizeof(errstr), "unknown model \"%s\"",
                                 it->in.model_id);
                        mark_bad(it, "unknown_model", p->unknown.err_route,
                                 errstr);
                        warn_rejected(p, LOG_UNKNOWN_MODEL, it);
                        continue;
                }
                it->entry = entry_for(p, it->in.model_id);
                it->canary = mls_rollout_is_canary(it->route, it->in.model_id,
                                                   &it->in);
                it->model = it->canary ? it->route->canary : it->route->serving;
                if (it->route->canary)
                        mls_rollout_count(p->rollout, it->in.model_id,
                                          it->route, it->canary);
                width = mls_model_input_width(it->model);
                if (width && width != it->in.cols) {
                        snprintf(errstr, sizeof(errstr),
                                 "input has %zu features per row, model "
                                 "\"%s\" takes %zu",
                                 it->in.cols, it->in.model_id, width);
                        mark_bad(it, "width_mismatch", it->entry->err_validate,
                                 errstr);
                        warn_rejected(p, LOG_WIDTH, it);
                }
        }
        in_chunks(p, pending, same_model, score_chunk);
}

/* Whether the item's route has a shadow that should score it too. */
static int wants_shadow(const struct item *it)
{
        return it->state == ITEM_OK && !it->canary && it->route->shadow &&
               it->shadow == SHADOW_NONE;
}

/* Scores items idx[0..n) (same route, same width, scored by the serving
 * version) with the route's shadow version and compares the outputs; on
 * failure with several items, one by one. The live stream is untouched
 * whatever happens here. */
static void shadow_chunk(mls_pipeline_t *p, size_t *idx, size_t n)
{
        struct item *first = &p->items[idx[0]];
        mls_model_t *shadow = first->route->shadow;
        struct mls_comparison *cmp = mls_rollout_comparison(
                p->rollout, first->in.model_id, first->route);
        struct mls_tensor in, out;
        size_t width = mls_model_input_width(shadow), row = 0;
        char errstr[200];
        int64_t t0;

        if (!cmp)
                goto fail;
        if ((width && width != first->in.cols) ||
            gather(p, idx, n, first->in.cols, &in) < 0)
                goto fail;
        t0 = mls_clock_mono_ns();
        if (mls_model_infer(shadow, &in, &out, errstr, sizeof(errstr)) < 0) {
                if (n > 1) {
                        for (size_t k = 0; k < n; k++)
                                shadow_chunk(p, &idx[k], 1);
                        return;
                }
                goto fail;
        }
        mls_comparison_call(cmp, 1, (double)(mls_clock_mono_ns() - t0) / 1e9);
        if (floats_reserve(&p->shadow_outputs, out.rows * out.cols) < 0)
                goto fail;
        for (size_t k = 0; k < n; k++) {
                struct item *it = &p->items[idx[k]];
                size_t cnt = it->in.rows * out.cols;
                it->sh_off = p->shadow_outputs.len;
                it->sh_cols = out.cols;
                memcpy(p->shadow_outputs.v + it->sh_off,
                       out.data + row * out.cols, cnt * sizeof(float));
                p->shadow_outputs.len += cnt;
                row += it->in.rows;
                it->shadow = SHADOW_OK;
                mls_comparison_rows(cmp, p->outputs.v + it->out_off,
                                    it->out_cols,
                                    p->shadow_outputs.v + it->sh_off,
                                    it->sh_cols, it->in.rows);
        }
        mls_comparison_report(cmp);
        return;
fail:
        for (size_t k = 0; k < n; k++) {
                p->items[idx[k]].shadow = SHADOW_FAILED;
                if (cmp)
                        mls_comparison_failed(cmp, p->items[idx[k]].in.rows);
        }
}

/* Scores what the serving versions scored again with their routes'
 * shadows, grouped like score_all. */
static int same_route(const struct item *a, const struct item *b)
{
        return a->route == b->route && a->in.cols == b->in.cols;
}

static void score_shadows(mls_pipeline_t *p)
{
        in_chunks(p, wants_shadow, same_route, shadow_chunk);
}

/* The inference id (engine/inference_id.h) of the item scored by m,
 * quoted. */
static void put_inference_id(mls_pipeline_t *p, struct mls_buf *b,
                             const struct item *it, const mls_model_t *m)
{
        char id[MLS_INFERENCE_ID_LEN + 1];

        mls_inference_id(p->ids, it->rec.topic ? it->rec.topic : "",
                         it->rec.partition, it->rec.offset,
                         mls_model_version(m), it->in.model_id, id);
        mls_buf_putc(b, '"');
        mls_buf_append(b, id, MLS_INFERENCE_ID_LEN);
        mls_buf_putc(b, '"');
}

/* Latency in ms with microsecond precision, e.g. 1.840. */
static void put_ms(struct mls_buf *b, int64_t ns)
{
        int64_t us = ns > 0 ? ns / 1000 : 0;
        char frac[4] = {(char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
                        (char)('0' + us % 10), '\0'};

        mls_buf_u64(b, (uint64_t)(us / 1000));
        mls_buf_putc(b, '.');
        mls_buf_append(b, frac, 3);
}

/* Appends the payload of the item scored by m, with outputs o (cols per
 * row), to b; type is "prediction" or "shadow"; now and wall_ms are the
 * batch's publication time on the monotonic and the wall clock. */
static void write_payload(mls_pipeline_t *p, struct mls_buf *b,
                          const struct item *it, const char *type,
                          const mls_model_t *m, const float *o, size_t cols,
                          int64_t now, int64_t wall_ms)
{
        const char *version = mls_model_version_name(m);
        char ts[32];

        MLS_BUF_LIT(b, "{\"type\":\"");
        mls_buf_puts(b, type);
        MLS_BUF_LIT(b, "\",\"inference_id\":");
        put_inference_id(p, b, it, m);
        MLS_BUF_LIT(b, ",\"model_id\":");
        mls_buf_json_str(b, it->in.model_id, strlen(it->in.model_id));
        MLS_BUF_LIT(b, ",\"model_version\":");
        if (*version)
                mls_buf_json_str(b, version, strlen(version));
        else
                MLS_BUF_LIT(b, "null");
        MLS_BUF_LIT(b, ",\"input_id\":");
        if (it->in.has_input_id)
                mls_buf_json_str(b, it->in.input_id, strlen(it->in.input_id));
        else
                MLS_BUF_LIT(b, "null");
        MLS_BUF_LIT(b, ",\"predictions\":[");
        for (size_t r = 0; r < it->in.rows; r++) {
                mls_buf_puts(b, r ? ",[" : "[");
                for (size_t c = 0; c < cols; c++) {
                        if (c)
                                mls_buf_putc(b, ',');
                        mls_buf_json_float(b, o[r * cols + c]);
                }
                mls_buf_putc(b, ']');
        }
        MLS_BUF_LIT(b, "],\"latency_ms\":");
        put_ms(b, now - it->rec.recv_ns);
        MLS_BUF_LIT(b, ",\"received_at\":\"");
        mls_buf_append(b, ts,
                       mls_clock_iso8601(it->rec.recv_wall_ms, ts, sizeof(ts)));
        MLS_BUF_LIT(b, "\",\"published_at\":\"");
        mls_buf_append(b, ts, mls_clock_iso8601(wall_ms, ts, sizeof(ts)));
        MLS_BUF_LIT(b, "\",\"metadata\":");
        if (it->in.metadata)
                mls_buf_append(b, it->in.metadata, it->in.metadata_len);
        else
                MLS_BUF_LIT(b, "null");
        MLS_BUF_LIT(b, ",\"kafka\":{\"topic\":");
        mls_buf_json_str(b, it->rec.topic ? it->rec.topic : "",
                         it->rec.topic ? strlen(it->rec.topic) : 0);
        MLS_BUF_LIT(b, ",\"partition\":");
        mls_buf_u64(b,
                    (uint64_t)(it->rec.partition > 0 ? it->rec.partition : 0));
        MLS_BUF_LIT(b, ",\"offset\":");
        mls_buf_u64(b, (uint64_t)(it->rec.offset > 0 ? it->rec.offset : 0));
        MLS_BUF_LIT(b, "}}");
}

static void build_payload(mls_pipeline_t *p, struct item *it, int64_t now,
                          int64_t wall_ms)
{
        struct mls_buf *b = &p->payloads;

        it->pay_off = b->len;
        write_payload(p, b, it, "prediction", it->model,
                      p->outputs.v + it->out_off, it->out_cols, now, wall_ms);
        if (b->overflow) {
                /* The batch's payload buffer is full: this prediction is
                 * dead-lettered rather than wedging the batch. */
                char detail[200];
                b->len = it->pay_off;
                b->overflow = 0;
                snprintf(detail, sizeof(detail),
                         "predictions of this batch passed %zu bytes",
                         b->limit);
                mark_bad(it, "output_too_large", it->entry->err_inference,
                         detail);
                warn_rejected(p, LOG_OUTPUT, it);
                return;
        }
        it->pay_len = b->len - it->pay_off;
        mls_series_observe(it->entry->latency,
                           (double)(now - it->rec.recv_ns) / 1e9);
        it->sh_len = 0;
        if (it->shadow != SHADOW_OK || !p->conf.shadow.ops ||
            now < p->shadow_quiet_until_ns)
                return;
        b = &p->shadow_payloads;
        it->sh_pay_off = b->len;
        write_payload(p, b, it, "shadow", it->route->shadow,
                      p->shadow_outputs.v + it->sh_off, it->sh_cols, now,
                      wall_ms);
        if (b->overflow) { /* compared, but not published */
                b->len = it->sh_pay_off;
                b->overflow = 0;
                it->shadow = SHADOW_FAILED;
                return;
        }
        it->sh_len = b->len - it->sh_pay_off;
}

static int sink_fail(mls_pipeline_t *p, const struct mls_sink *s, char *errstr,
                     size_t errstr_size)
{
        mls_series_add(mls_series(p->m_pubfail, s->ops->name, NULL), 1);
        (void)errstr;
        (void)errstr_size;
        return -1;
}

static int unacked_reserve(mls_pipeline_t *p, size_t n)
{
        struct mls_record *r;

        if (n <= p->unacked_cap)
                return 0;
        r = realloc(p->unacked, n * sizeof(*r));
        if (!r)
                return -1;
        p->unacked = r;
        p->unacked_cap = n;
        return 0;
}

/* Calls done for the records of the batch the publisher has just
 * acknowledged (after mls_pipeline_flush_ahead()). */
static void acked(mls_pipeline_t *p)
{
        for (size_t i = 0; i < p->nunacked; i++)
                p->conf.done(p->conf.done_opaque, &p->unacked[i]);
        p->nunacked = 0;
}

/* A flush or submit of the publisher failed: the batch that went ahead
 * is still done if the publisher read its acknowledgment first. */
static int publisher_fail(mls_pipeline_t *p, char *errstr, size_t errstr_size)
{
        const struct mls_sink *s = &p->conf.publisher;

        if (p->nunacked && s->ops->acked_ahead && s->ops->acked_ahead(s->ctx))
                acked(p);
        return sink_fail(p, s, errstr, errstr_size);
}

static int deliver_publish(mls_pipeline_t *p, int ahead, char *errstr,
                           size_t errstr_size)
{
        const struct mls_sink *s = &p->conf.publisher;
        int rc;

        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                if (it->state != ITEM_OK)
                        continue;
                if (s->ops->send(s->ctx, &it->rec, it->in.model_id,
                                 p->payloads.data + it->pay_off, it->pay_len,
                                 NULL, NULL) < 0) {
                        snprintf(errstr, errstr_size, "%s: cannot queue",
                                 s->ops->name);
                        return sink_fail(p, s, errstr, errstr_size);
                }
        }
        /* the batch's records wait for the next acknowledgment (the
         * previous batch's are released before it takes their place) */
        ahead = ahead && s->ops->submit && p->conf.done &&
                unacked_reserve(p, p->nunacked + p->nitems) == 0;
        rc = ahead ? s->ops->submit(s->ctx, errstr, errstr_size)
                   : s->ops->flush(s->ctx, errstr, errstr_size);
        if (rc < 0)
                return publisher_fail(p, errstr, errstr_size);
        acked(p);
        p->submitted = ahead;
        return 0;
}

/* Publishes the batch's shadow predictions, at most once: a shadow
 * channel that refuses them (or a Redis that cannot be reached for them)
 * never holds up the live stream. What is lost is counted and logged, and
 * the next second only compares. A sink that can submit is not waited for:
 * its replies are read with the next batch's, and what they report (a
 * refusal, the receivers) acts one batch later. */
static void deliver_shadows(mls_pipeline_t *p)
{
        const struct mls_sink *sh = &p->conf.shadow;
        char errstr[300];
        size_t n = 0;

        if (!sh->ops)
                return;
        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                if (it->state != ITEM_OK || !it->sh_len)
                        continue;
                /* the shadow sink connects on first use: most engines
                 * never serve a shadow */
                if (!n && mls_sink_connect(sh, errstr, sizeof(errstr)) < 0)
                        goto lost;
                sh->ops->send(sh->ctx, &it->rec, it->in.model_id,
                              p->shadow_payloads.data + it->sh_pay_off,
                              it->sh_len, NULL, NULL);
                n++;
        }
        if (!n)
                return;
        if ((sh->ops->submit ? sh->ops->submit : sh->ops->flush)(
                    sh->ctx, errstr, sizeof(errstr)) < 0)
                goto lost;
        if (sh->ops->receivers) {
                long long r = sh->ops->receivers(sh->ctx);
                if (r >= 0)
                        mls_series_set(p->s_shadow_receivers, (double)r);
                if (r == 0)
                        p->shadow_quiet_until_ns =
                                mls_clock_mono_ns() + SHADOW_QUIET_NS;
        }
        return;
lost:
        for (size_t i = 0; i < p->nitems; i++)
                if (p->items[i].state == ITEM_OK && p->items[i].sh_len)
                        mls_series_add(p->s_shadow_lost, 1);
        mls_log_limited(&p->log_reason[LOG_SHADOW], MLS_LOG_WARN,
                        "shadow predictions not published (the live stream "
                        "goes on): %s",
                        errstr);
        p->shadow_quiet_until_ns = mls_clock_mono_ns() + SHADOW_QUIET_NS;
}

static int deliver_secondary(mls_pipeline_t *p, char *errstr,
                             size_t errstr_size)
{
        const struct mls_sink *out = &p->conf.output,
                              *dlq = &p->conf.deadletter;
        int any_out = 0, any_dlq = 0;

        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                if (it->state == ITEM_OK && out->ops) {
                        out->ops->send(out->ctx, &it->rec, it->in.model_id,
                                       p->payloads.data + it->pay_off,
                                       it->pay_len, NULL, NULL);
                        any_out = 1;
                } else if (it->state == ITEM_BAD && dlq->ops) {
                        dlq->ops->send(dlq->ctx, &it->rec, NULL,
                                       it->rec.payload, it->rec.len, it->reason,
                                       it->detail);
                        any_dlq = 1;
                }
        }
        if (any_out && out->ops->flush(out->ctx, errstr, errstr_size) < 0)
                return sink_fail(p, out, errstr, errstr_size);
        if (any_dlq && dlq->ops->flush(dlq->ctx, errstr, errstr_size) < 0)
                return sink_fail(p, dlq, errstr, errstr_size);
        deliver_shadows(p); /* last: so once, whatever fails before */
        return 0;
}

static void reset(mls_pipeline_t *p)
{
        p->nitems = 0;
        p->rows = 0;
        p->bytes = 0;
        p->submitted = 0;
        p->phase = PHASE_COLLECT;
        p->feats.len = 0;
        p->outputs.len = 0;
        p->shadow_outputs.len = 0;
        mls_buf_reset(&p->payloads);
        mls_buf_reset(&p->shadow_payloads);
}

/* Waits for the publisher to acknowledge what was submitted. */
static int settle(mls_pipeline_t *p, char *errstr, size_t errstr_size)
{
        const struct mls_sink *s = &p->conf.publisher;

        if (s->ops->flush(s->ctx, errstr, errstr_size) < 0)
                return publisher_fail(p, errstr, errstr_size);
        acked(p);
        return 0;
}

int mls_pipeline_settle(mls_pipeline_t *p, char *errstr, size_t errstr_size)
{
        return p->nunacked ? settle(p, errstr, errstr_size) : 0;
}

static int flush_batch(mls_pipeline_t *p, int ahead, char *errstr,
                       size_t errstr_size)
{
        if (p->nitems == 0)
                return mls_pipeline_settle(p, errstr, errstr_size);
        if (p->phase == PHASE_COLLECT) {
                int64_t now, wall;
                score_all(p);
                /* right after the serving calls: scored later (while
                 * Redis works, say), a shadow's call took half as long
                 * again, its code and weights out of the caches */
                score_shadows(p);
                /* one publication time for the whole batch: its
                 * predictions go out together */
                now = mls_clock_mono_ns();
                wall = mls_clock_wall_ms();
                for (size_t i = 0; i < p->nitems; i++)
                        if (p->items[i].state == ITEM_OK)
                                build_payload(p, &p->items[i], now, wall);
                p->phase = PHASE_PUBLISH;
        }
        if (p->phase == PHASE_PUBLISH) {
                if (deliver_publish(p, ahead, errstr, errstr_size) < 0)
                        return -1;
                for (size_t i = 0; i < p->nitems; i++)
                        if (p->items[i].state == ITEM_OK)
                                mls_series_add(p->items[i].entry->predictions,
                                               1);
                p->phase = PHASE_SECONDARY;
        }
        if (deliver_secondary(p, errstr, errstr_size) < 0)
                return -1;
        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                if (it->state == ITEM_BAD && p->conf.deadletter.ops)
                        mls_series_add(mls_series(p->m_dlq, it->reason, NULL),
                                       1);
                if (p->submitted) /* room made by deliver_publish() */
                        p->unacked[p->nunacked++] = it->rec;
                else if (p->conf.done)
                        p->conf.done(p->conf.done_opaque, &it->rec);
        }
        /* counted from the newest message's arrival: no clock read */
        if (p->submitted)
                p->ack_due_ns = p->items[p->nitems - 1].rec.recv_ns +
                                p->conf.ack_wait_ns;
        reset(p);
        return 0;
}

int mls_pipeline_flush(mls_pipeline_t *p, char *errstr, size_t errstr_size)
{
        return flush_batch(p, 0, errstr, errstr_size);
}

int mls_pipeline_flush_ahead(mls_pipeline_t *p, char *errstr,
                             size_t errstr_size)
{
        return flush_batch(p, 1, errstr, errstr_size);
}

int mls_pipeline_published(const mls_pipeline_t *p)
{
        return p->nitems && p->phase == PHASE_SECONDARY;
}

void mls_pipeline_discard(mls_pipeline_t *p, mls_record_keep keep,
                          mls_record_done release, void *opaque)
{
        size_t n = 0;

        /* Kept items move down in order; their offsets into the feature,
         * output and payload buffers stay valid, and the phase with them. */
        p->rows = p->bytes = 0;
        for (size_t i = 0; i < p->nitems; i++) {
                struct item *it = &p->items[i];
                if (keep && keep(opaque, &it->rec)) {
                        if (it->state == ITEM_PENDING)
                                p->rows += it->in.rows;
                        p->bytes += it->rec.len;
                        p->items[n++] = *it;
                } else if (release) {
                        release(opaque, &it->rec);
                }
        }
        p->nitems = n;
        if (n == 0)
                reset(p);
        n = 0;
        for (size_t i = 0; i < p->nunacked; i++) {
                if (keep && keep(opaque, &p->unacked[i]))
                        p->unacked[n++] = p->unacked[i];
                else if (release)
                        release(opaque, &p->unacked[i]);
        }
        p->nunacked = n;
}

/* At most this many models are listed in a heartbeat, so that it stays
 * far below what the sinks take. */
#define HEARTBEAT_MAX_MODELS 2000

struct heartbeat_list {
        mls_pipeline_t *p;
        struct mls_strmap listed; /* model id -> its route (or NULL) */
};

static void add_listed(struct heartbeat_list *hl, const char *id,
                       const struct mls_model_route *route)
{
        size_t n = strlen(id);

        if (hl->listed.count >= HEARTBEAT_MAX_MODELS ||
            mls_strmap_get(&hl->listed, id, n) || strcmp(id, "*") == 0)
                return;
        /* the route itself is the value; an unserved id maps to itself */
        mls_strmap_put(&hl->listed, id, n,
                       route ? (void *)(uintptr_t)route : (void *)hl);
}

static void list_served(void *arg, const char *model_id,
                        const struct mls_model_route *route)
{
        add_listed(arg, model_id, route);
}

static void list_seen(void *opaque, struct mls_strmap_entry *e)
{
        struct heartbeat_list *hl = opaque;

        add_listed(hl, e->key,
                   hl->p->conf.resolve(hl->p->conf.resolve_opaque, e->key));
}

struct heartbeat_out {
        struct heartbeat_list *hl;
        struct mls_buf *out;
        int first;
};

static void put_id(void *opaque, struct mls_strmap_entry *e)
{
        struct heartbeat_out *ho = opaque;

        if (!ho->first)
                mls_buf_putc(ho->out, ',');
        mls_buf_json_str(ho->out, e->key, e->klen);
        ho->first = 0;
}

static void put_version(struct mls_buf *out, const char *key,
                        const mls_model_t *m)
{
        const char *v = m ? mls_model_version_name(m) : "";

        mls_buf_printf(out, ",\"%s\":", key);
        if (*v)
                mls_buf_json_str(out, v, strlen(v));
        else
                MLS_BUF_LIT(out, "null");
}

static void put_loaded(void *opaque, struct mls_strmap_entry *e)
{
        struct heartbeat_out *ho = opaque;
        const struct mls_model_route *rt = e->value;
        struct model_entry *me;
        const char *fw;
        double errors = 0;

        if (e->value == (void *)ho->hl)
                return; /* seen, not served */
        me = mls_strmap_get(&ho->hl->p->models, e->key, e->klen);
        fw = mls_model_framework(rt->serving);
        mls_buf_puts(ho->out, ho->first ? "{\"model_id\":" : ",{\"model_id\":");
        ho->first = 0;
        mls_buf_json_str(ho->out, e->key, e->klen);
        mls_buf_puts(ho->out, ",\"framework\":");
        mls_buf_json_str(ho->out, fw, strlen(fw));
        put_version(ho->out, "serving", rt->serving);
        put_version(ho->out, "canary", rt->canary);
        mls_buf_puts(ho->out, ",\"canary_share\":");
        if (rt->canary)
                mls_buf_printf(ho->out, "%.6g", rt->canary_share);
        else
                MLS_BUF_LIT(ho->out, "null");
        put_version(ho->out, "shadow", rt->shadow);
        if (me)
                errors = mls_series_value(me->err_decode) +
                         mls_series_value(me->err_route) +
                         mls_series_value(me->err_validate) +
                         mls_series_value(me->err_inference);
        mls_buf_printf(ho->out, ",\"predictions\":%.0f,\"errors\":%.0f}",
                       me ? mls_series_value(me->predictions) : 0.0, errors);
}

size_t mls_pipeline_heartbeat(mls_pipeline_t *p, struct mls_buf *out)
{
        char ts[32];
        struct heartbeat_list hl = {.p = p};
        struct heartbeat_out ho = {&hl, out, 1};

        if (p->conf.list_routes)
                p->conf.list_routes(p->conf.resolve_opaque, list_served, &hl);
        mls_strmap_foreach(&p->models, list_seen, &hl);
        mls_clock_iso8601(mls_clock_wall_ms(), ts, sizeof(ts));
        mls_buf_puts(out, "{\"type\":\"heartbeat\",\"engine_id\":");
        mls_buf_json_str(out, p->engine_id, strlen(p->engine_id));
        mls_buf_printf(out, ",\"at\":\"%s\",\"models\":[", ts);
        mls_strmap_foreach(&hl.listed, put_id, &ho);
        mls_buf_puts(out, "],\"loaded\":[");
        ho.first = 1;
        mls_strmap_foreach(&hl.listed, put_loaded, &ho);
        mls_buf_putc(out, ']');
        mls_rollout_heartbeat(p->rollout, out);
        mls_buf_putc(out, '}');
        mls_strmap_free(&hl.listed, NULL);
        return out->len;
}
