/*
 * The engine pipeline with fakes behind the sink and model interfaces:
 * what the seed's own suite covered (a published prediction counts and
 * times itself; a failure counts an error and the loop goes on; a missing
 * model_id gets the default), plus dead letters, ordering and retries.
 */
#include <jansson.h>
#include <stdlib.h>

#include "common/clock.h"
#include "engine/pipeline.h"
#include "engine/rollout.h"
#include "test.h"

struct fake_sink {
        int fail_flush;      /* flushes left to fail */
        int acked_ahead;     /* what the acked_ahead op says */
        long long receivers; /* what the receivers op says */
        int nsent, nflushed;
        char *sent[2048];
        char *reason[2048];
};

static int fake_send(void *ctx, const struct mls_record *rec,
                     const char *model_id, const char *payload, size_t len,
                     const char *reason, const char *detail)
{
        (void)model_id;
        struct fake_sink *s = ctx;

        (void)rec;
        (void)detail;
        if (s->nsent == 2048)
                return -1;
        s->sent[s->nsent] = strndup(payload, len);
        s->reason[s->nsent] = reason ? strdup(reason) : NULL;
        s->nsent++;
        return 0;
}

static int fake_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct fake_sink *s = ctx;

        if (s->fail_flush > 0) {
                s->fail_flush--;
                for (int i = s->nflushed; i < s->nsent; i++) {
                        free(s->sent[i]);
                        free(s->reason[i]);
                }
                s->nsent = s->nflushed;
                snprintf(errstr, errstr_size, "fake: down");
                return -1;
        }
        s->nflushed = s->nsent;
        return 0;
}

static const struct mls_sink_ops fake_ops = {
        .name = "fake", .send = fake_send, .flush = fake_flush};

/* A sink that can take a batch without acknowledging it: for the fake,
 * submitting is flushing; what is tested is when the pipeline calls done. */
static int fake_submit(void *ctx, char *errstr, size_t errstr_size)
{
        return fake_flush(ctx, errstr, errstr_size);
}

static const struct mls_sink_ops fake_submit_ops = {.name = "fake",
                                                    .send = fake_send,
                                                    .flush = fake_flush,
                                                    .submit = fake_submit};

static int fake_acked_ahead(void *ctx)
{
        return ((struct fake_sink *)ctx)->acked_ahead;
}

/* ...that may read the acknowledgment of the batch that went ahead before
 * failing on what follows it. */
static const struct mls_sink_ops fake_partial_ops = {.name = "fake",
                                                     .send = fake_send,
                                                     .flush = fake_flush,
                                                     .submit = fake_submit,
                                                     .acked_ahead =
                                                             fake_acked_ahead};

static long long fake_receivers(void *ctx)
{
        return ((struct fake_sink *)ctx)->receivers;
}

/* A Pub/Sub-like sink that says how many subscribers a flush reached. */
static const struct mls_sink_ops fake_pubsub_ops = {.name = "fake",
                                                    .send = fake_send,
                                                    .flush = fake_flush,
                                                    .receivers =
                                                            fake_receivers};

static void fake_free(struct fake_sink *s)
{
        for (int i = 0; i < s->nsent; i++) {
                free(s->sent[i]);
                free(s->reason[i]);
        }
}

/* A model that doubles its input and refuses rows whose first value is
 * negative; takes width 2. */
static int dbl_load(const struct mls_model_conf *c, void **ctx, char *e,
                    size_t n)
{
        (void)c;
        (void)e;
        (void)n;
        *ctx = calloc(1, sizeof(struct mls_tensor));
        return 0;
}

static int dbl_infer(void *ctx, const struct mls_tensor *in,
                     struct mls_tensor *out, char *e, size_t n)
{
        struct mls_tensor *o = ctx;

        for (size_t r = 0; r < in->rows; r++)
                if (in->data[r * in->cols] < 0) {
                        snprintf(e, n, "negative input");
                        return -1;
                }
        free(o->data);
        o->data = malloc(in->rows * in->cols * sizeof(float));
        for (size_t i = 0; i < in->rows * in->cols; i++)
                o->data[i] = in->data[i] * 2;
        o->rows = in->rows;
        o->cols = in->cols;
        *out = *o;
        return 0;
}

static void dbl_unload(void *ctx)
{
        free(((struct mls_tensor *)ctx)->data);
        free(ctx);
}

static size_t dbl_width(void *ctx)
{
        (void)ctx;
        return 2;
}

static const struct mls_model_type dbl_type = {.name = "double",
                                               .load = dbl_load,
                                               .infer = dbl_infer,
                                               .unload = dbl_unload,
                                               .input_width = dbl_width};

struct harness {
        mls_metrics_t *metrics;
        mls_model_t *model;
        struct mls_model_route route; /* serves every id but "nope" */
        struct fake_sink pub, dlq;
        mls_pipeline_t *p;
        int64_t done[2048];
        int32_t done_partition[2048];
        int ndone, nreleased;
        int64_t now; /* the records' receipt time: an injected clock */
};

static const struct mls_model_route *resolve(void *opaque, const char *id)
{
        struct harness *h = opaque;

        return strcmp(id, "nope") == 0 ? NULL : &h->route;
}

static void on_done(void *opaque, const struct mls_record *rec)
{
        struct harness *h = opaque;

        h->done_partition[h->ndone] = rec->partition;
        h->done[h->ndone++] = rec->offset;
}

/* Limits a test can set before setup() (0: the pipeline's defaults). */
static struct mls_pipeline_conf limits;
/* The publisher's ops, if a test sets them before setup() (else fake_ops). */
static const struct mls_sink_ops *publisher_ops;

static void setup(struct harness *h)
{
        struct mls_pipeline_conf pc = {0};
        struct mls_model_conf mc = {0};
        char err[100];

        memset(h, 0, sizeof(*h));
        h->metrics = mls_metrics_new();
        h->model = mls_model_load(&dbl_type, &mc, err, sizeof(err));
        h->route.serving = h->model;
        pc.default_model_id = "fallback-model";
        pc.engine_id = "test-engine";
        pc.limits = (struct mls_decode_limits){1024, 16, 16};
        pc.batch_max_rows = 4;
        pc.batch_max_messages = limits.batch_max_messages;
        pc.batch_max_bytes = limits.batch_max_bytes;
        pc.payload_limit = limits.payload_limit;
        pc.max_model_series = limits.max_model_series;
        pc.batch_max_wait_ns = limits.batch_max_wait_ns
                                       ? limits.batch_max_wait_ns
                                       : 3600 * 1000000000LL;
        pc.ack_wait_ns = limits.ack_wait_ns;
        pc.shadow = limits.shadow;
        memset(&limits, 0, sizeof(limits));
        pc.resolve = resolve;
        pc.resolve_opaque = h;
        pc.publisher = (struct mls_sink){
                publisher_ops ? publisher_ops : &fake_ops, &h->pub};
        publisher_ops = NULL;
        pc.deadletter = (struct mls_sink){&fake_ops, &h->dlq};
        pc.done = on_done;
        pc.done_opaque = h;
        pc.metrics = h->metrics;
        h->p = mls_pipeline_new(&pc);
}

static void teardown(struct harness *h)
{
        mls_pipeline_free(h->p);
        mls_model_free(h->model);
        mls_metrics_free(h->metrics);
        fake_free(&h->pub);
        fake_free(&h->dlq);
}

static void add_to(struct harness *h, int32_t partition, const char *payload,
                   int64_t offset)
{
        struct mls_record r = {.payload = payload,
                               .len = strlen(payload),
                               .topic = "ml.inference",
                               .partition = partition,
                               .offset = offset,
                               .recv_ns = h->now,
                               .recv_wall_ms = mls_clock_wall_ms()};
        mls_pipeline_add(h->p, &r);
}

static void add(struct harness *h, const char *payload, int64_t offset)
{
        add_to(h, 3, payload, offset);
}

static double metric(struct harness *h, const char *line)
{
        struct mls_buf b;
        const char *at;
        double v = -1;

        mls_buf_init(&b, 1 << 20);
        mls_metrics_render(h->metrics, &b);
        at = strstr(mls_buf_cstr(&b), line);
        if (at)
                v = strtod(at + strlen(line), NULL);
        mls_buf_free(&b);
        return v;
}

MLS_TEST(pipeline_publish_counts_and_times)
{
        struct harness h;
        json_t *j;
        char err[100];

        setup(&h);
        add(&h,
            "{\"model_id\":\"m\",\"input_id\":\"e1\",\"features\":[1,2],"
            "\"metadata\":{\"tenant\":\"blue\",\"ts\":"
            "1732665599123456789}}",
            7);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 1);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(h.done[0], 7);
        CHECK_CONTAINS(h.pub.sent[0],
                       "\"metadata\":{\"tenant\":\"blue\",\"ts\":"
                       "1732665599123456789}");
        j = json_loads(h.pub.sent[0], 0, NULL);
        CHECK(j != NULL);
        CHECK_STR_EQ(json_string_value(json_object_get(j, "type")),
                     "prediction");
        CHECK_STR_EQ(json_string_value(json_object_get(j, "model_id")), "m");
        CHECK_STR_EQ(json_string_value(json_object_get(j, "input_id")), "e1");
        CHECK_INT_EQ(json_string_length(json_object_get(j, "inference_id")),
                     36);
        CHECK(json_real_value(json_array_get(
                      json_array_get(json_object_get(j, "predictions"), 0),
                      1)) == 4.0 ||
              json_integer_value(json_array_get(
                      json_array_get(json_object_get(j, "predictions"), 0),
                      1)) == 4);
        CHECK(json_is_number(json_object_get(j, "latency_ms")));
        CHECK_INT_EQ(json_string_length(json_object_get(j, "received_at")), 24);
        CHECK_INT_EQ(json_integer_value(json_object_get(
                             json_object_get(j, "kafka"), "offset")),
                     7);
        CHECK_INT_EQ(json_integer_value(json_object_get(
                             json_object_get(j, "kafka"), "partition")),
                     3);
        json_decref(j);
        CHECK(metric(&h, "ml_stream_inference_predictions_total{model_id=\"m\"}"
                         " ") == 1);
        CHECK(metric(&h, "ml_stream_inference_latency_seconds_count{model_id="
                         "\"m\"} ") == 1);
        teardown(&h);
}

MLS_TEST(pipeline_default_model_id)
{
        struct harness h;
        char err[100];

        setup(&h);
        add(&h, "{\"features\":[[1,2]]}", 1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 1);
        CHECK_CONTAINS(h.pub.sent[0], "\"model_id\":\"fallback-model\"");
        CHECK_CONTAINS(h.pub.sent[0], "\"input_id\":null");
        CHECK(metric(&h, "ml_stream_inference_predictions_total{model_id="
                         "\"fallback-model\"} ") == 1);
        teardown(&h);
}

MLS_TEST(pipeline_failures_counted_loop_goes_on)
{
        struct harness h;
        char err[100];

        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[-1,2]}", 1);   /* throws */
        add(&h, "oops", 2);                                       /* decode */
        add(&h, "{\"model_id\":\"nope\",\"features\":[1,2]}", 3); /* route */
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2,3]}", 4);  /* width */
        add(&h, "{\"model_id\":\"m\",\"features\":[5,6]}", 5);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        /* the good ones around the bad ones are all published, in order */
        CHECK_INT_EQ(h.pub.nsent, 2);
        CHECK_CONTAINS(h.pub.sent[0], "[[2,4]]");
        CHECK_CONTAINS(h.pub.sent[1], "[[10,12]]");
        CHECK_INT_EQ(h.dlq.nsent, 4);
        CHECK_STR_EQ(h.dlq.reason[0], "inference_failed");
        CHECK_STR_EQ(h.dlq.reason[1], "invalid_json");
        CHECK_STR_EQ(h.dlq.reason[2], "unknown_model");
        CHECK_STR_EQ(h.dlq.reason[3], "width_mismatch");
        CHECK_STR_EQ(h.dlq.sent[1], "oops"); /* original bytes */
        CHECK_INT_EQ(h.ndone, 6);
        for (int i = 0; i < 6; i++)
                CHECK_INT_EQ(h.done[i], i);
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id=\"m\","
                         "stage=\"inference\"} ") == 1);
        /* no model ran on a row of the wrong width */
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id=\"m\","
                         "stage=\"validate\"} ") == 1);
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id="
                         "\"unknown\",stage=\"decode\"} ") == 1);
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id="
                         "\"unknown\",stage=\"route\"} ") == 1);
        CHECK(metric(&h, "ml_stream_inference_predictions_total{model_id="
                         "\"m\"} ") == 2);
        /* the loop goes on: the next batch is scored normally */
        add(&h, "{\"model_id\":\"m\",\"features\":[7,8]}", 6);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 3);
        teardown(&h);
}

MLS_TEST(pipeline_publish_failure_keeps_batch)
{
        struct harness h;
        char err[100];

        setup(&h);
        h.pub.fail_flush = 2;
        add(&h, "{\"features\":[1,2]}", 10);
        add(&h, "{\"features\":[3,4]}", 11);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "down");
        CHECK_INT_EQ(h.ndone, 0); /* nothing acknowledged, nothing done */
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 2);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK(metric(&h, "ml_stream_publish_failures_total{sink=\"fake\"} ") ==
              2);
        CHECK(metric(&h, "ml_stream_inference_predictions_total{model_id="
                         "\"fallback-model\"} ") == 2);
        teardown(&h);
}

MLS_TEST(pipeline_published_tells_which_sink_failed)
{
        struct harness h;
        char err[100];

        setup(&h);
        h.pub.fail_flush = 1;
        h.dlq.fail_flush = 1;
        add(&h, "{\"features\":[1,2]}", 10);
        add(&h, "not json", 11);
        CHECK_INT_EQ(mls_pipeline_published(h.p), 0);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(mls_pipeline_published(h.p), 0); /* the publisher */
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(mls_pipeline_published(h.p), 1); /* the dead letters */
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(mls_pipeline_published(h.p), 0); /* nothing pending */
        CHECK_INT_EQ(h.ndone, 2);
        teardown(&h);
}

MLS_TEST(pipeline_batches_split_back)
{
        struct harness h;
        char err[100];

        setup(&h);
        add(&h, "{\"features\":[[1,1],[2,2]]}", 0);
        add(&h, "{\"features\":[[3,3]]}", 1);
        add(&h, "{\"features\":[[4,4],[5,5],[6,6]]}", 2);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 3);
        CHECK_CONTAINS(h.pub.sent[0], "\"predictions\":[[2,2],[4,4]]");
        CHECK_CONTAINS(h.pub.sent[1], "\"predictions\":[[6,6]]");
        CHECK_CONTAINS(h.pub.sent[2],
                       "\"predictions\":[[8,8],[10,10],[12,12]]");
        /* 6 rows with a 4-row limit: two model calls */
        CHECK(metric(&h, "ml_stream_batch_rows_count{model_id="
                         "\"fallback-model\"} ") == 2);
        teardown(&h);
}

MLS_TEST(pipeline_heartbeat)
{
        struct harness h;
        struct mls_buf b;
        json_t *j;
        char err[100];

        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", 0);
        mls_pipeline_flush(h.p, err, sizeof(err));
        mls_buf_init(&b, 4096);
        mls_pipeline_heartbeat(h.p, &b);
        j = json_loads(mls_buf_cstr(&b), 0, NULL);
        CHECK(j != NULL);
        CHECK_STR_EQ(json_string_value(json_object_get(j, "type")),
                     "heartbeat");
        CHECK_STR_EQ(json_string_value(json_object_get(j, "engine_id")),
                     "test-engine");
        CHECK_STR_EQ(json_string_value(
                             json_array_get(json_object_get(j, "models"), 0)),
                     "m");
        json_decref(j);
        mls_buf_free(&b);
        teardown(&h);
}

/* Inference ids are a function of what was scored (topic, partition,
 * offset, model version, model id): scored again, a message gets the same
 * id; the values match Python's uuid.uuid5 under our namespace. */
MLS_TEST(pipeline_inference_ids_are_deterministic)
{
        struct harness h;
        char err[100];
        const char *want[] = {"94dd3cf5-fa36-5864-bbca-d7157f276017",
                              "81b454c5-f7b1-52e0-b4da-2367711a140d",
                              "94dd3cf5-fa36-5864-bbca-d7157f276017"};

        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", 42);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", 43);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[5,6]}", 42); /* again */
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 3);
        for (int i = 0; i < 3; i++) {
                json_t *j = json_loads(h.pub.sent[i], 0, NULL);
                CHECK(j != NULL);
                CHECK_STR_EQ(
                        json_string_value(json_object_get(j, "inference_id")),
                        want[i]);
                json_decref(j);
        }
        teardown(&h);
}

/* Rejected messages add no rows, yet a batch of them closes on messages or
 * bytes: a backlog of bad input cannot grow one batch without bound. */
MLS_TEST(pipeline_batch_closes_on_messages_and_bytes)
{
        struct harness h;
        char err[100];

        limits.batch_max_messages = 3;
        setup(&h);
        add(&h, "{\"features\":\"x\"}", 0);
        add(&h, "{\"features\":\"x\"}", 1);
        CHECK(!mls_pipeline_due(h.p, h.now));
        add(&h, "{\"features\":\"x\"}", 2);
        CHECK(mls_pipeline_due(h.p, h.now));
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 100), 0);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.dlq.nsent, 3);
        CHECK_INT_EQ(h.ndone, 3);
        CHECK(!mls_pipeline_due(h.p, h.now));
        teardown(&h);

        limits.batch_max_bytes = 40;
        setup(&h);
        add(&h, "{\"features\":\"xxxxxxxxxx\"}", 0); /* 27 bytes */
        CHECK(!mls_pipeline_due(h.p, h.now));
        add(&h, "{\"features\":\"xxxxxxxxxx\"}", 1);
        CHECK(mls_pipeline_due(h.p, h.now));
        teardown(&h);
}

/* A batch also closes by age: when its oldest message has waited the
 * longest wait, however few it holds; until then the caller may wait for
 * more for exactly the time left. */
MLS_TEST(pipeline_batch_closes_by_age_of_its_oldest_message)
{
        struct harness h;
        char err[100];

        limits.batch_max_wait_ns = 5 * 1000000; /* 5 ms */
        setup(&h);
        h.now = 1000000000;
        CHECK(!mls_pipeline_due(h.p, h.now));
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 100), 100);
        add(&h, "{\"features\":[1]}", 0);
        h.now += 2 * 1000000; /* the second arrives 2 ms later */
        add(&h, "{\"features\":[2]}", 1);
        CHECK(!mls_pipeline_due(h.p, h.now));
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 100), 3);
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now + 2500000, 100), 1);
        CHECK(!mls_pipeline_due(h.p, h.now + 2999999));
        CHECK(mls_pipeline_due(h.p,
                               h.now + 3000000)); /* 5 ms after the first */
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now + 3000000, 100), 0);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK(!mls_pipeline_due(h.p, h.now + 3000000));
        teardown(&h);
}

/* Predictions that overflow the batch's payload buffer are dead-lettered
 * one by one; the rest of the batch, and the next batch, go out. */
MLS_TEST(pipeline_output_too_large_is_dead_lettered)
{
        struct harness h;
        char err[100];

        limits.payload_limit = 700;
        setup(&h);
        for (int i = 0; i < 4; i++)
                add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", i);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK(h.pub.nsent >= 1 && h.pub.nsent < 4);
        CHECK_INT_EQ(h.pub.nsent + h.dlq.nsent, 4);
        CHECK_STR_EQ(h.dlq.reason[0], "output_too_large");
        CHECK_INT_EQ(h.ndone, 4);
        add(&h, "{\"model_id\":\"m\",\"features\":[3,4]}", 4);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_CONTAINS(h.pub.sent[h.pub.nsent - 1], "[[6,8]]");
        teardown(&h);
}

static int keep_partition_1(void *opaque, const struct mls_record *rec)
{
        (void)opaque;
        return rec->partition == 1;
}

static void count_release(void *opaque, const struct mls_record *rec)
{
        (void)rec;
        ((struct harness *)opaque)->nreleased++;
}

/* A batch flushed ahead is done only once the publisher acknowledged it:
 * by the next flush of either kind, in order, dead letters included; a
 * failed flush leaves both batches pending, and a discard drops those of
 * revoked partitions. */
MLS_TEST(pipeline_flush_ahead_done_after_acknowledgment)
{
        struct harness h;
        char err[100];

        publisher_ops = &fake_submit_ops;
        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        add(&h, "{\"model_id\":\"m\",\"features\":\"x\"}", 11);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 1);
        CHECK_INT_EQ(h.dlq.nsent, 1);
        CHECK_INT_EQ(h.ndone, 0);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        CHECK_INT_EQ(mls_pipeline_due(h.p, h.now), 1);
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 100), 0);

        add(&h, "{\"model_id\":\"m\",\"features\":[2,2]}", 12);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(h.done[0], 10);
        CHECK_INT_EQ(h.done[1], 11);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 1);

        h.pub.fail_flush = 1;
        add(&h, "{\"model_id\":\"m\",\"features\":[3,3]}", 13);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 4);
        CHECK_INT_EQ(h.done[2], 12);
        CHECK_INT_EQ(h.done[3], 13);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 0);
        CHECK_INT_EQ(mls_pipeline_due(h.p, h.now), 0);

        add_to(&h, 1, "{\"model_id\":\"m\",\"features\":[4,4]}", 20);
        add_to(&h, 2, "{\"model_id\":\"m\",\"features\":[5,5]}", 30);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        mls_pipeline_discard(h.p, keep_partition_1, count_release, &h);
        CHECK_INT_EQ(h.nreleased, 1);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 5);
        CHECK_INT_EQ(h.done[4], 20);
        teardown(&h);
}

/* With an acknowledgment wait, a batch flushed ahead is settled on its
 * own only once that long has passed since its newest message arrived, and
 * the caller may sleep exactly until then: a steady trickle reads each
 * batch's reply with the next batch's instead of waking for it. */
MLS_TEST(pipeline_acknowledgment_waits_for_the_next_batch)
{
        struct harness h;
        char err[100];

        publisher_ops = &fake_submit_ops;
        limits.ack_wait_ns = 100 * 1000000LL; /* 100 ms */
        setup(&h);
        h.now = 1000000000;
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 0);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 1);
        CHECK(!mls_pipeline_due(h.p, h.now));
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 1000), 100);
        /* the wait never exceeds what the caller would idle */
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 50), 50);
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now + 99500000, 1000), 1);

        /* the next message comes first: its flush acknowledges the first */
        h.now += 1000000;
        add(&h, "{\"model_id\":\"m\",\"features\":[2,2]}", 11);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(h.done[0], 10);

        /* none comes: due 100 ms after the second arrived, settled alone */
        CHECK(!mls_pipeline_due(h.p, h.now + 99999999));
        CHECK(mls_pipeline_due(h.p, h.now + 100000000));
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now + 100000000, 1000), 0);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(h.done[1], 11);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 0);
        CHECK_INT_EQ(mls_pipeline_wait_ms(h.p, h.now, 1000), 1000);
        teardown(&h);
}

/* Settling acknowledges what was flushed ahead and leaves the batch being
 * collected alone; with nothing outstanding it asks the publisher nothing,
 * and a failure leaves both pending. */
MLS_TEST(pipeline_settle_acknowledges_only_what_went_ahead)
{
        struct harness h;
        char err[100];

        publisher_ops = &fake_submit_ops;
        setup(&h);
        CHECK_INT_EQ(mls_pipeline_settle(h.p, err, sizeof(err)), 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[2,2]}", 11);
        h.pub.fail_flush = 1;
        CHECK_INT_EQ(mls_pipeline_settle(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(h.ndone, 0);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        h.pub.fail_flush = 0;
        CHECK_INT_EQ(mls_pipeline_settle(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(h.done[0], 10);
        CHECK_INT_EQ(h.pub.nsent, 1); /* the second is not scored yet */
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 1);
        CHECK_INT_EQ(mls_pipeline_settle(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(h.done[1], 11);
        teardown(&h);
}

/* A flush or settle that fails after the publisher read the
 * acknowledgment of the batch that went ahead: that batch is done (its
 * offsets may be stored), what failed stays pending; a publisher that
 * says nothing of the kind leaves both pending. */
MLS_TEST(pipeline_failed_flush_still_acknowledges_what_went_ahead)
{
        struct harness h;
        char err[100];

        publisher_ops = &fake_partial_ops;
        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[2,2]}", 11);
        h.pub.fail_flush = 1;
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(h.ndone, 0);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        h.pub.fail_flush = 1;
        h.pub.acked_ahead = 1;
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(h.done[0], 10);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 1);
        h.pub.acked_ahead = 0;
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 1);
        /* the same through a settle */
        h.pub.fail_flush = 1;
        h.pub.acked_ahead = 1;
        CHECK_INT_EQ(mls_pipeline_settle(h.p, err, sizeof(err)), -1);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(h.done[1], 11);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 0);
        teardown(&h);
}

/* Without a submit op, flushing ahead is flushing. */
MLS_TEST(pipeline_flush_ahead_without_submit_waits)
{
        struct harness h;
        char err[100];

        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        CHECK_INT_EQ(mls_pipeline_flush_ahead(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.ndone, 1);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 0);
        teardown(&h);
}

/* A cooperative rebalance revokes some partitions: only their records go;
 * the kept partition's records are delivered later, in order. */
MLS_TEST(pipeline_discard_keeps_other_partitions)
{
        struct harness h;
        char err[100];

        setup(&h);
        h.pub.fail_flush = 1;
        add_to(&h, 1, "{\"model_id\":\"m\",\"features\":[1,1]}", 10);
        add_to(&h, 2, "{\"model_id\":\"m\",\"features\":[2,2]}", 20);
        add_to(&h, 1, "{\"model_id\":\"m\",\"features\":[3,3]}", 11);
        add_to(&h, 2, "{\"model_id\":\"m\",\"features\":[4,4]}", 21);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), -1);
        mls_pipeline_discard(h.p, keep_partition_1, count_release, &h);
        CHECK_INT_EQ(h.nreleased, 2);
        CHECK_INT_EQ(mls_pipeline_pending(h.p), 2);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 2);
        CHECK_CONTAINS(h.pub.sent[0], "[[2,2]]");
        CHECK_CONTAINS(h.pub.sent[1], "[[6,6]]");
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(h.done[0], 10);
        CHECK_INT_EQ(h.done[1], 11);
        teardown(&h);
}

/* Producer-chosen model ids cannot grow /metrics: past the cap they share
 * the "__other__" series, and no prediction goes uncounted. */
MLS_TEST(pipeline_model_series_capped_nothing_uncounted)
{
        struct harness h;
        char err[100], msg[100];
        double sum = 0;

        limits.max_model_series = 5;
        setup(&h);
        for (int i = 0; i < 40; i++) {
                snprintf(msg, sizeof(msg),
                         "{\"model_id\":\"id%d\",\"features\":[1,2]}", i);
                add(&h, msg, i);
                CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        }
        for (int i = 0; i < 5; i++) {
                snprintf(msg, sizeof(msg),
                         "ml_stream_inference_predictions_total{model_id="
                         "\"id%d\"} ",
                         i);
                CHECK(metric(&h, msg) == 1);
                sum += 1;
        }
        CHECK(metric(&h, "ml_stream_inference_predictions_total{model_id="
                         "\"id5\"} ") < 0);
        sum += metric(&h, "ml_stream_inference_predictions_total{model_id="
                          "\"__other__\"} ");
        CHECK(sum == 40);
        teardown(&h);
}

/* A message for a served model with bad features counts under that model,
 * not "unknown". */
MLS_TEST(pipeline_bad_features_count_under_their_model)
{
        struct harness h;
        char err[100];

        setup(&h);
        add(&h, "{\"model_id\":\"m\",\"features\":\"x\"}", 0);
        add(&h, "{\"model_id\":\"nope\",\"features\":\"x\"}", 1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id=\"m\","
                         "stage=\"decode\"} ") == 1);
        CHECK(metric(&h, "ml_stream_inference_errors_total{model_id="
                         "\"unknown\",stage=\"decode\"} ") == 1);
        teardown(&h);
}

/* A shadow scores the serving version's inputs again: its predictions go
 * to the shadow sink only, typed "shadow", and are compared; a canary takes
 * the inputs whose key falls below its share, by the documented hash. */
MLS_TEST(pipeline_shadow_and_canary)
{
        struct harness h;
        struct fake_sink sh = {0};
        struct mls_model_conf mc = {0};
        char err[100], msg[200];
        mls_model_t *v2;
        int want = 0, got = 0;

        sh.receivers = 1;
        limits.shadow = (struct mls_sink){&fake_pubsub_ops, &sh};
        setup(&h);
        v2 = mls_model_load(&dbl_type, &mc, err, sizeof(err));
        mls_model_set_version_name(h.model, "v1");
        mls_model_set_version_name(v2, "v2");
        h.route.shadow = v2;
        h.route.shadow_tolerance = 0.01;
        for (int i = 0; i < 6; i++) {
                snprintf(msg, sizeof(msg),
                         "{\"model_id\":\"m\",\"input_id\":\"s%d\","
                         "\"features\":[%d,1]}",
                         i, i);
                add(&h, msg, i);
        }
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 6);
        CHECK_INT_EQ(sh.nsent, 6);
        for (int i = 0; i < 6; i++) {
                CHECK_CONTAINS(h.pub.sent[i], "\"type\":\"prediction\"");
                CHECK_CONTAINS(h.pub.sent[i], "\"model_version\":\"v1\"");
                CHECK_CONTAINS(sh.sent[i], "\"type\":\"shadow\"");
                CHECK_CONTAINS(sh.sent[i], "\"model_version\":\"v2\"");
        }
        CHECK(metric(&h, "ml_stream_shadow_rows_total{model_id=\"m\",serving="
                         "\"v1\",shadow=\"v2\"} ") == 6);
        /* the same function: every row agrees, with no difference */
        CHECK(metric(&h, "ml_stream_shadow_agreements_total{model_id=\"m\","
                         "serving=\"v1\",shadow=\"v2\"} ") == 6);
        CHECK(metric(&h, "ml_stream_shadow_abs_diff_sum{model_id=\"m\","
                         "serving=\"v1\",shadow=\"v2\"} ") == 0);

        /* nobody listens: the next batches are compared, not published */
        sh.receivers = 0;
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 6);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(sh.nsent, 7); /* the flush that found nobody */
        add(&h, "{\"model_id\":\"m\",\"features\":[1,1]}", 7);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(sh.nsent, 7);
        CHECK_INT_EQ(h.pub.nsent, 8);
        CHECK(metric(&h, "ml_stream_shadow_rows_total{model_id=\"m\",serving="
                         "\"v1\",shadow=\"v2\"} ") == 8);
        CHECK(metric(&h, "\nml_stream_shadow_receivers ") == 0);

        h.route.shadow = NULL;
        h.route.canary = v2;
        h.route.canary_share = 0.3;
        for (int i = 0; i < 200; i++) {
                snprintf(msg, sizeof(msg),
                         "{\"model_id\":\"m\",\"input_id\":\"k%d\","
                         "\"features\":[1,2]}",
                         i);
                add(&h, msg, 100 + i);
                snprintf(msg, sizeof(msg), "k%d", i);
                want += mls_rollout_key_fraction("m", msg, strlen(msg)) < 0.3;
        }
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 208);
        CHECK_INT_EQ(sh.nsent, 7); /* no shadow now */
        for (int i = 8; i < 208; i++)
                got += strstr(h.pub.sent[i], "\"model_version\":\"v2\"") != 0;
        CHECK_INT_EQ(got, want);
        CHECK(want > 30 && want < 90);
        CHECK(metric(&h, "ml_stream_canary_inputs_total{model_id=\"m\","
                         "version=\"v2\",role=\"canary\"} ") == want);
        teardown(&h);
        mls_model_free(v2);
        fake_free(&sh);
}

/* The canary key: the input_id, or a metadata field's string or JSON text;
 * an input without it stays on the serving version. */
MLS_TEST(pipeline_canary_key)
{
        static mls_model_t *const serving = (mls_model_t *)1,
                                  *const canary = (mls_model_t *)2;
        struct mls_model_route rt = {
                .serving = serving, .canary = canary, .canary_share = 0.5};
        struct mls_input in = {0};
        const char *md = "{\"tenant\":\"blue\",\"n\":42,\"o\":{}}";

        strcpy(in.input_id, "e7");
        in.has_input_id = 1;
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in),
                     mls_rollout_key_fraction("m", "e7", 2) < 0.5);
        in.has_input_id = 0;
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in), 0);
        rt.canary_share = 1.0; /* everything that has a key */
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in), 0);
        strcpy(rt.canary_key, "tenant");
        in.metadata = md;
        in.metadata_len = strlen(md);
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in), 1);
        rt.canary_share = 0.5;
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in),
                     mls_rollout_key_fraction("m", "blue", 4) < 0.5);
        strcpy(rt.canary_key, "n"); /* a number: its JSON text */
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in),
                     mls_rollout_key_fraction("m", "42", 2) < 0.5);
        rt.canary_share = 1.0;
        strcpy(rt.canary_key, "o"); /* an object is no key */
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in), 0);
        strcpy(rt.canary_key, "missing");
        CHECK_INT_EQ(mls_rollout_is_canary(&rt, "m", &in), 0);
        /* the fraction is spread: 10,000 keys, 30 % +- 2 % below 0.3 */
        {
                char key[16];
                int below = 0;
                for (int i = 0; i < 10000; i++) {
                        int n = snprintf(key, sizeof(key), "k%d", i);
                        below += mls_rollout_key_fraction("m", key, (size_t)n) <
                                 0.3;
                }
                CHECK(below > 2800 && below < 3200);
        }
}

/* A shadow channel that refuses its predictions never holds up the live
 * stream: the batch is delivered and done, the shadow ones are counted as
 * unpublished and not sent again. */
MLS_TEST(pipeline_shadow_refused_is_not_retried)
{
        struct harness h;
        struct fake_sink sh = {.fail_flush = 1, .receivers = 1};
        struct mls_model_conf mc = {0};
        char err[100];
        mls_model_t *v2;

        limits.shadow = (struct mls_sink){&fake_pubsub_ops, &sh};
        setup(&h);
        v2 = mls_model_load(&dbl_type, &mc, err, sizeof(err));
        h.route.shadow = v2;
        add(&h, "{\"model_id\":\"m\",\"features\":[1,2]}", 0);
        add(&h, "{\"model_id\":\"m\",\"features\":[3,4]}", 1);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(h.pub.nsent, 2);
        CHECK_INT_EQ(h.ndone, 2);
        CHECK_INT_EQ(sh.nsent, 0); /* the refused flush took them back */
        CHECK(metric(&h, "\nml_stream_shadow_unpublished_total ") == 2);
        CHECK(metric(&h, "ml_stream_shadow_rows_total{model_id=\"m\",serving="
                         "\"\",shadow=\"\"} ") == 2);
        /* the next second only compares: nothing is sent, nothing retried */
        add(&h, "{\"model_id\":\"m\",\"features\":[5,6]}", 2);
        CHECK_INT_EQ(mls_pipeline_flush(h.p, err, sizeof(err)), 0);
        CHECK_INT_EQ(sh.nsent, 0);
        CHECK_INT_EQ(h.ndone, 3);
        teardown(&h);
        mls_model_free(v2);
        fake_free(&sh);
}
