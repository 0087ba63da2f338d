/*
 * The monitor's payload normaliser (src/gateway/payload.c), the sliding
 * latency window (monitor.c) and the fan-out hub's grouping (hub.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/json.h"
#include "gateway/monitor.h"
#include "gateway/payload.h"
#include "test.h"

static enum mls_payload_kind norm(const char *s, struct mls_payload *p)
{
        return mls_payload_normalize(s, strlen(s), 1 << 20, p);
}

/* The event as compact JSON (shortest floats), in a static buffer. */
static const char *event_json(struct mls_payload *p)
{
        static char out[2048];
        struct mls_buf b;

        mls_buf_init(&b, sizeof(out) - 1);
        if (mls_json_write(&b, mls_payload_event(p)) < 0) {
                mls_buf_free(&b);
                return "(overflow)";
        }
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
        mls_buf_free(&b);
        return out;
}

MLS_TEST(gateway_payload_snake_case)
{
        struct mls_payload p;

        CHECK_INT_EQ(norm("{\"type\":\"prediction\",\"inference_id\":\"i1\","
                          "\"model_id\":\"threat-detector-v1\",\"input_id\":"
                          "\"event-42\",\"predictions\":[[0.93,0.07]],"
                          "\"latency_ms\":1.84,\"received_at\":"
                          "\"2026-11-26T23:59:59.123Z\",\"published_at\":"
                          "\"2026-11-26T23:59:59.125Z\",\"metadata\":{"
                          "\"tenant\":\"blue-team\",\"ns\":"
                          "1764201599123456789},\"kafka\":{\"topic\":\"t\","
                          "\"partition\":3,\"offset\":1234}}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK_STR_EQ(p.model_id, "threat-detector-v1");
        CHECK(fabs(p.latency_ms - 1.84) < 1e-12);
        CHECK_STR_EQ(event_json(&p),
                     "{\"inferenceId\":\"i1\",\"modelId\":"
                     "\"threat-detector-v1\",\"inputId\":\"event-42\","
                     "\"predictions\":[[0.93,0.07]],\"latencyMs\":1.84,"
                     "\"receivedAt\":\"2026-11-26T23:59:59.123Z\","
                     "\"publishedAt\":\"2026-11-26T23:59:59.125Z\","
                     "\"metadata\":{\"tenant\":\"blue-team\",\"ns\":"
                     "1764201599123456789},\"modelVersion\":null}");
        mls_payload_clear(&p);
}

MLS_TEST(gateway_payload_camel_case_and_optional)
{
        struct mls_payload p;

        CHECK_INT_EQ(norm("{\"inferenceId\":42,\"modelId\":\"m\","
                          "\"predictions\":{\"label\":\"x\"},\"latencyMs\":3,"
                          "\"receivedAt\":0}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK_STR_EQ(event_json(&p),
                     "{\"inferenceId\":\"42\",\"modelId\":\"m\",\"inputId\":"
                     "null,\"predictions\":{\"label\":\"x\"},\"latencyMs\":3,"
                     "\"receivedAt\":\"1970-01-01T00:00:00.000Z\","
                     "\"publishedAt\":null,\"metadata\":null,"
                     "\"modelVersion\":null}");
        mls_payload_clear(&p);
        /* snake_case wins; an invalid optional date becomes null */
        CHECK_INT_EQ(norm("{\"model_id\":\"a\",\"modelId\":\"b\","
                          "\"inference_id\":\"i\",\"predictions\":[1],"
                          "\"latency_ms\":0,\"received_at\":"
                          "\"2026-01-01T00:00:00+01:00\",\"published_at\":"
                          "\"yesterday\",\"input_id\":7}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK_STR_EQ(p.model_id, "a");
        CHECK_CONTAINS(event_json(&p), "\"inputId\":\"7\"");
        CHECK_CONTAINS(event_json(&p), "\"publishedAt\":null");
        mls_payload_clear(&p);
}

MLS_TEST(gateway_payload_garbage)
{
        static const struct {
                const char *in, *why;
        } cases[] = {
                {"", "not JSON"},
                {"{", "not JSON"},
                {"[1]", "not a JSON object"},
                {"{\"type\":\"other\"}", "unknown type"},
                {"{\"type\":7}", "unknown type"},
                {"{\"inference_id\":\"i\",\"predictions\":[1],"
                 "\"latency_ms\":1,\"received_at\":0}",
                 "no model_id"},
                {"{\"model_id\":\"\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":1,\"received_at\":0}",
                 "bad model_id"},
                {"{\"model_id\":\"m\",\"predictions\":[1],\"latency_ms\":1,"
                 "\"received_at\":0}",
                 "no inference_id"},
                {"{\"model_id\":\"m\",\"inference_id\":[],\"predictions\":[1],"
                 "\"latency_ms\":1,\"received_at\":0}",
                 "bad inference_id"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"latency_ms\":1,"
                 "\"received_at\":0}",
                 "no predictions"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "null,\"latency_ms\":1,\"received_at\":0}",
                 "no predictions"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"received_at\":0}",
                 "no latency_ms"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":\"1\",\"received_at\":0}",
                 "bad latency_ms"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":-1,\"received_at\":0}",
                 "bad latency_ms"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":1}",
                 "no received_at"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":1,\"received_at\":\"2026-13-01T00:00:"
                 "00Z\"}",
                 "bad received_at"},
                {"{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                 "[1],\"latency_ms\":1,\"received_at\":0,\"input_id\":{}}",
                 "bad input_id"},
                {"{\"type\":\"heartbeat\",\"models\":\"m\"}",
                 "heartbeat \"models\" is not an array"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct mls_payload p;
                CHECK_INT_EQ(norm(cases[i].in, &p), MLS_PAYLOAD_GARBAGE);
                CHECK_STR_EQ(p.reason, cases[i].why);
                CHECK(p.event == NULL && p.models == NULL);
                mls_payload_clear(&p);
        }
}

MLS_TEST(gateway_payload_size_cap)
{
        struct mls_payload p;
        const char *s = "{\"type\":\"heartbeat\",\"models\":[]}";

        CHECK_INT_EQ(mls_payload_normalize(s, strlen(s), 10, &p),
                     MLS_PAYLOAD_GARBAGE);
        CHECK_STR_EQ(p.reason, "payload too large");
        mls_payload_clear(&p);
}

MLS_TEST(gateway_payload_heartbeat)
{
        struct mls_payload p;

        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\",\"engine_id\":\"e1\","
                          "\"at\":\"2026-11-26T23:59:59.123Z\",\"models\":"
                          "[\"a\",1,\"\",\"b\"]}",
                          &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK_INT_EQ(json_array_size(p.models), 2);
        CHECK_STR_EQ(json_string_value(json_array_get(p.models, 1)), "b");
        mls_payload_clear(&p);
        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\"}", &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK_INT_EQ(json_array_size(p.models), 0);
        mls_payload_clear(&p);
}

MLS_TEST(gateway_payload_datetime)
{
        CHECK(mls_payload_is_datetime("2026-11-26T23:59:59Z", 20));
        CHECK(mls_payload_is_datetime("2026-11-26t23:59:59.1z", 22));
        CHECK(mls_payload_is_datetime("2026-11-26T23:59:59.123456+05:30", 32));
        CHECK(!mls_payload_is_datetime("2026-11-26T23:59:59", 19));
        CHECK(!mls_payload_is_datetime("2026-11-26 23:59:59Z", 20));
        CHECK(!mls_payload_is_datetime("2026-02-30T00:00:00Z", 20));
        CHECK(!mls_payload_is_datetime("2026-11-26T24:00:00Z", 20));
        CHECK(!mls_payload_is_datetime("2026-11-26T23:59:59.Z", 21));
        CHECK(!mls_payload_is_datetime("2026-11-26T23:59:59+0530", 24));
}

MLS_TEST(gateway_payload_monitor_window)
{
        mls_monitor_t *m = mls_monitor_new(4, 2);
        struct mls_monitor_stats st;
        json_t *s;

        CHECK(m);
        mls_monitor_set_connected(m, 1);
        for (int i = 1; i <= 6; i++)
                mls_monitor_prediction(m, "a", NULL, 0, i * 10.0, 1000 + i);
        mls_monitor_stats(m, "a", &st);
        /* the window holds 30, 40, 50, 60 */
        CHECK_INT_EQ(st.window_size, 4);
        CHECK(fabs(st.mean_ms - 45.0) < 1e-9);
        CHECK(fabs(st.p95_ms - 60.0) < 1e-9);
        CHECK_INT_EQ(st.last_seen_ms, 1006);
        CHECK_INT_EQ(st.predictions, 6);
        mls_monitor_heartbeat(m, "a", 2000);
        mls_monitor_heartbeat(m, "b", 3000);
        /* over max_models: the least recently active model among those
         * seen only once ("b"; nothing subscribes to it) makes room */
        mls_monitor_heartbeat(m, "c", 3000);
        CHECK_INT_EQ(mls_monitor_models(m), 2);
        CHECK_INT_EQ(mls_monitor_untracked(m), 0);
        CHECK_INT_EQ(mls_monitor_evicted(m), 1);
        mls_monitor_stats(m, "b", &st);
        CHECK_INT_EQ(st.last_seen_ms, 0);
        mls_monitor_stats(m, "a", &st);
        CHECK_INT_EQ(st.window_size, 4);
        s = mls_monitor_status(m, "c", NULL);
        CHECK(json_is_true(json_object_get(s, "connected")));
        CHECK(json_is_null(json_object_get(s, "averageLatencyMs")));
        CHECK_INT_EQ(json_integer_value(json_object_get(s, "windowSize")), 0);
        CHECK_STR_EQ(json_string_value(json_object_get(s, "lastHeartbeatAt")),
                     "1970-01-01T00:00:03.000Z");
        json_decref(s);
        s = mls_monitor_status(m, "unknown", NULL);
        CHECK(json_is_null(json_object_get(s, "lastHeartbeatAt")));
        json_decref(s);
        mls_monitor_free(m);
}

MLS_TEST(gateway_payload_percentile)
{
        double v[20];

        for (int i = 0; i < 20; i++)
                v[i] = 20 - i; /* 20 .. 1 */
        /* nearest rank: ceil(0.95 * 20) = 19th smallest */
        CHECK(mls_monitor_percentile(v, 20, 0.95) == 19);
        v[0] = 5;
        CHECK(mls_monitor_percentile(v, 1, 0.95) == 5);
}

/* In-use check for the tests below: models whose id starts with "live". */
static int live_models(void *opaque, const char *model_id)
{
        (void)opaque;
        return strncmp(model_id, "live", 4) == 0;
}

MLS_TEST(gateway_payload_monitor_junk_is_evicted_first)
{
        mls_monitor_t *m = mls_monitor_new(16, 100);
        struct mls_monitor_stats st;
        char id[32];
        json_t *ids;

        CHECK(m);
        mls_monitor_set_idle(m, 0, live_models, NULL);
        /* a real model seen twice, one with subscribers, then junk ids
         * each seen once fill the table many times over */
        mls_monitor_prediction(m, "real", NULL, 0, 5.0, 1000);
        mls_monitor_prediction(m, "real", NULL, 0, 7.0, 1001);
        mls_monitor_heartbeat(m, "live-1", 1000);
        for (int i = 0; i < 1000; i++) {
                snprintf(id, sizeof(id), "junk-%d", i);
                mls_monitor_prediction(m, id, NULL, 0, 1.0, 2000 + i);
        }
        CHECK_INT_EQ(mls_monitor_models(m), 100);
        CHECK_INT_EQ(mls_monitor_untracked(m), 0);
        mls_monitor_stats(m, "real", &st);
        CHECK_INT_EQ(st.window_size, 2);
        CHECK(fabs(st.mean_ms - 6.0) < 1e-9);
        CHECK(fabs(st.p95_ms - 7.0) < 1e-9);
        mls_monitor_stats(m, "live-1", &st);
        CHECK_INT_EQ(st.last_seen_ms, 1000);
        /* a new real model after the flood is tracked at once */
        mls_monitor_prediction(m, "new", NULL, 0, 3.0, 5000);
        mls_monitor_stats(m, "new", &st);
        CHECK_INT_EQ(st.window_size, 1);
        /* the sorted id list is cached until the set changes */
        ids = mls_monitor_model_ids(m);
        CHECK_INT_EQ(json_array_size(ids), 100);
        {
                json_t *again = mls_monitor_model_ids(m);
                CHECK(again == ids);
                json_decref(again);
        }
        for (size_t i = 1; i < json_array_size(ids); i++)
                CHECK(strcmp(json_string_value(json_array_get(ids, i - 1)),
                             json_string_value(json_array_get(ids, i))) < 0);
        json_decref(ids);
        mls_monitor_free(m);
}

MLS_TEST(gateway_payload_monitor_idle_models_expire)
{
        mls_monitor_t *m = mls_monitor_new(8, 100);
        struct mls_monitor_stats st;
        json_t *ids;

        CHECK(m);
        mls_monitor_set_idle(m, 10000, live_models, NULL);
        mls_monitor_prediction(m, "old", NULL, 0, 1.0, 1000);
        mls_monitor_prediction(m, "live-x", NULL, 0, 1.0, 1000);
        mls_monitor_heartbeat(m, "recent", 9000);
        mls_monitor_expire(m, 10999);
        CHECK_INT_EQ(mls_monitor_models(m), 3);
        mls_monitor_expire(m, 11000);
        /* "old" went; "live-x" has subscribers; "recent" is not idle */
        CHECK_INT_EQ(mls_monitor_models(m), 2);
        CHECK_INT_EQ(mls_monitor_expired(m), 1);
        mls_monitor_stats(m, "old", &st);
        CHECK_INT_EQ(st.predictions, 0);
        ids = mls_monitor_model_ids(m);
        CHECK_INT_EQ(json_array_size(ids), 2);
        CHECK_STR_EQ(json_string_value(json_array_get(ids, 0)), "live-x");
        json_decref(ids);
        mls_monitor_expire(m, 19000);
        CHECK_INT_EQ(mls_monitor_models(m), 1);
        mls_monitor_free(m);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

/* Percentiles picked by selection equal those of a sort, for every size
 * up to 300, ties and all, and every q tried. */
MLS_TEST(gateway_payload_percentile_matches_a_sort)
{
        static const double qs[] = {0.01, 0.5, 0.95, 0.999, 1};
        double v[300], sorted[300];
        unsigned seed = 99;

        for (size_t n = 1; n <= 300; n++)
                for (size_t q = 0; q < sizeof(qs) / sizeof(qs[0]); q++) {
                        size_t rank;
                        for (size_t i = 0; i < n; i++) {
                                seed = seed * 1103515245u + 12345u;
                                v[i] = (double)((seed >> 16) % (n / 3 + 1));
                        }
                        memcpy(sorted, v, n * sizeof(double));
                        qsort(sorted, n, sizeof(double), cmp_double);
                        rank = (size_t)ceil(qs[q] * (double)n);
                        CHECK(mls_monitor_percentile(v, n, qs[q]) ==
                              sorted[(rank ? rank : 1) - 1]);
                }
}

MLS_TEST(gateway_payload_monitor_incremental_stats_match_a_sort)
{
        /* windows of 1, 7 and 100 against a sorted copy of the last n */
        unsigned windows[] = {1, 7, 100};
        unsigned seed = 12345;

        for (size_t w = 0; w < 3; w++) {
                mls_monitor_t *m = mls_monitor_new(windows[w], 4);
                double hist[1000], tmp[1000];
                struct mls_monitor_stats st;

                CHECK(m);
                for (int i = 0; i < 1000; i++) {
                        unsigned n = (unsigned)i + 1 < windows[w]
                                             ? (unsigned)i + 1
                                             : windows[w];
                        double sum = 0;
                        seed = seed * 1103515245u + 12345u;
                        /* repeated values on purpose */
                        hist[i] = (double)((seed >> 16) % 50) / 4.0;
                        mls_monitor_prediction(m, "a", NULL, 0, hist[i], i);
                        memcpy(tmp, hist + i + 1 - n, n * sizeof(double));
                        for (unsigned k = 0; k < n; k++)
                                sum += tmp[k];
                        mls_monitor_stats(m, "a", &st);
                        CHECK_INT_EQ(st.window_size, n);
                        CHECK(fabs(st.mean_ms - sum / n) < 1e-9);
                        /* the nearest rank, ceil(0.95 n), of a sort */
                        qsort(tmp, n, sizeof(double), cmp_double);
                        CHECK(st.p95_ms == tmp[(n * 95 + 99) / 100 - 1]);
                }
                mls_monitor_free(m);
        }
}

MLS_TEST(gateway_payload_model_version)
{
        struct mls_payload p;
        static const char base[] = "\"inference_id\":\"i\",\"model_id\":\"m\","
                                   "\"predictions\":[1],\"latency_ms\":1,"
                                   "\"received_at\":0";
        char buf[512];

        snprintf(buf, sizeof(buf), "{%s,\"model_version\":\"v2\"}", base);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_CONTAINS(event_json(&p), "\"modelVersion\":\"v2\"");
        mls_payload_clear(&p);
        snprintf(buf, sizeof(buf), "{%s,\"modelVersion\":\"v3\"}", base);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_CONTAINS(event_json(&p), "\"modelVersion\":\"v3\"");
        mls_payload_clear(&p);
        /* snake_case wins, even when null */
        snprintf(buf, sizeof(buf),
                 "{%s,\"model_version\":null,\"modelVersion\":\"v3\"}", base);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_CONTAINS(event_json(&p), "\"modelVersion\":null");
        mls_payload_clear(&p);
        /* odd values do not lose the prediction: null */
        snprintf(buf, sizeof(buf), "{%s,\"model_version\":7}", base);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_CONTAINS(event_json(&p), "\"modelVersion\":null");
        mls_payload_clear(&p);
        snprintf(buf, sizeof(buf), "{%s,\"model_version\":\"%070d\"}", base, 0);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_CONTAINS(event_json(&p), "\"modelVersion\":null");
        mls_payload_clear(&p);
}

/* The example heartbeat. */
static const char rollout_hb[] =
        "{\"type\":\"heartbeat\",\"engine_id\":\"e1\",\"at\":"
        "\"2026-12-03T12:00:00.000Z\",\"models\":[\"fraud\",\"threat\"],"
        "\"loaded\":[{\"model_id\":\"threat\",\"framework\":\"torch\","
        "\"serving\":\"v1\",\"canary\":\"v2\",\"canary_share\":0.2,"
        "\"shadow\":\"v3\",\"predictions\":12345,\"errors\":3},"
        "{\"model_id\":\"fraud\",\"framework\":\"identity\",\"serving\":null,"
        "\"canary\":null,\"canary_share\":null,\"shadow\":null,"
        "\"predictions\":0,\"errors\":0}],"
        "\"comparisons\":[{\"model_id\":\"threat\",\"serving\":\"v1\","
        "\"shadow\":\"v3\",\"rows\":1000,\"agreements\":950,"
        "\"abs_diff_sum\":12.5,\"abs_diff_le\":[1e-06,1e-05,0.0001,0.001,"
        "0.01,0.05,0.1,0.25,0.5,1,2.5,5,10],\"abs_diff_counts\":[0,0,1,2,3,"
        "4,5,6,7,8,9,10,11,12],\"serving_seconds\":0.5,\"serving_calls\":100,"
        "\"shadow_seconds\":0.6,\"shadow_calls\":100}]}";

MLS_TEST(gateway_payload_heartbeat_loaded_and_comparisons)
{
        struct mls_payload p;
        const struct mls_payload_loaded *l;
        const struct mls_payload_comparison *c;

        CHECK_INT_EQ(norm(rollout_hb, &p), MLS_PAYLOAD_HEARTBEAT);
        CHECK_STR_EQ(p.engine_id, "e1");
        CHECK_INT_EQ(json_array_size(p.models), 2);
        CHECK_INT_EQ(p.skipped, 0);
        CHECK_INT_EQ(p.nloaded, 2);
        l = &p.loaded[0];
        CHECK_STR_EQ(l->model_id, "threat");
        CHECK_STR_EQ(l->framework, "torch");
        CHECK_STR_EQ(l->serving, "v1");
        CHECK_STR_EQ(l->canary, "v2");
        CHECK_STR_EQ(l->shadow, "v3");
        CHECK(l->canary_share == 0.2);
        CHECK(l->predictions == 12345 && l->errors == 3);
        l = &p.loaded[1];
        CHECK_STR_EQ(l->model_id, "fraud");
        CHECK(!l->serving[0] && !l->canary[0] && !l->shadow[0]);
        CHECK(isnan(l->canary_share));
        CHECK_INT_EQ(p.ncomparisons, 1);
        c = &p.comparisons[0];
        CHECK_STR_EQ(c->model_id, "threat");
        CHECK_STR_EQ(c->serving, "v1");
        CHECK_STR_EQ(c->shadow, "v3");
        CHECK(c->rows == 1000 && c->agreements == 950 &&
              c->abs_diff_sum == 12.5);
        CHECK_INT_EQ(c->nbuckets, 13);
        CHECK(c->le[0] == 1e-06 && c->le[12] == 10);
        CHECK(c->counts[2] == 1 && c->counts[13] == 12);
        CHECK(c->serving_seconds == 0.5 && c->shadow_calls == 100);
        mls_payload_clear(&p);
        /* an old heartbeat: no entries, nothing skipped */
        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\",\"engine_id\":\"e1\","
                          "\"models\":[\"a\"]}",
                          &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK(!p.has_loaded && !p.has_comparisons && p.nloaded == 0 &&
              p.skipped == 0);
        mls_payload_clear(&p);
}

MLS_TEST(gateway_payload_heartbeat_garbage_entries)
{
        struct mls_payload p;
        char *big;
        size_t n = 0, cap = 8 << 20;

        /* each bad entry is skipped and counted; good ones are kept */
        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\",\"engine_id\":\"e\","
                          "\"models\":[],\"loaded\":[7,null,{},"
                          "{\"model_id\":\"a\",\"serving\":5},"
                          "{\"model_id\":\"a\",\"canary\":\"c\","
                          "\"canary_share\":1.5},"
                          "{\"model_id\":\"a\",\"predictions\":-1},"
                          "{\"model_id\":\"a\",\"errors\":\"3\"},"
                          "{\"model_id\":\"a\",\"framework\":\"\"},"
                          "{\"model_id\":\"ok\",\"serving\":\"v1\"},"
                          "{\"model_id\":\"ok\",\"serving\":\"v2\"}],"
                          "\"comparisons\":[{\"model_id\":\"a\",\"serving\":"
                          "\"v1\",\"shadow\":null,\"rows\":1,\"agreements\":1,"
                          "\"abs_diff_sum\":0},"
                          "{\"model_id\":\"a\",\"serving\":\"v1\",\"shadow\":"
                          "\"v2\",\"rows\":1,\"agreements\":2,"
                          "\"abs_diff_sum\":0},"
                          "{\"model_id\":\"a\",\"serving\":\"v1\",\"shadow\":"
                          "\"v2\",\"rows\":1,\"agreements\":1,"
                          "\"abs_diff_sum\":0,\"abs_diff_le\":[1,1],"
                          "\"abs_diff_counts\":[0,0,1]},"
                          "{\"model_id\":\"a\",\"serving\":\"v1\",\"shadow\":"
                          "\"v2\",\"rows\":1,\"agreements\":1,"
                          "\"abs_diff_sum\":0,\"abs_diff_le\":[1,2],"
                          "\"abs_diff_counts\":[0,1]},"
                          "{\"model_id\":\"a\",\"serving\":\"v1\",\"shadow\":"
                          "\"v2\",\"rows\":1,\"agreements\":1,"
                          "\"abs_diff_sum\":0,\"abs_diff_le\":[1,2],"
                          "\"abs_diff_counts\":[0,1,0]}]}",
                          &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK_INT_EQ(p.nloaded, 1);
        CHECK_STR_EQ(p.loaded[0].serving, "v1");
        CHECK_INT_EQ(p.ncomparisons, 1);
        CHECK_INT_EQ(p.comparisons[0].nbuckets, 2);
        CHECK_INT_EQ(p.skipped, 9 + 4);
        mls_payload_clear(&p);
        /* not arrays: one each; without an engine id nothing is kept */
        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\",\"engine_id\":\"e\","
                          "\"loaded\":{},\"comparisons\":\"x\"}",
                          &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK_INT_EQ(p.skipped, 2);
        CHECK(!p.has_loaded && !p.has_comparisons);
        mls_payload_clear(&p);
        CHECK_INT_EQ(norm("{\"type\":\"heartbeat\",\"engine_id\":5,"
                          "\"loaded\":[{\"model_id\":\"a\"}]}",
                          &p),
                     MLS_PAYLOAD_HEARTBEAT);
        CHECK_INT_EQ(p.nloaded, 0);
        CHECK(p.skipped > 0);
        mls_payload_clear(&p);
        /* 100,000 entries: at most the cap kept, the rest counted */
        big = malloc(cap);
        CHECK(big);
        n += (size_t)snprintf(big, cap,
                              "{\"type\":\"heartbeat\",\"engine_id\":\"e\","
                              "\"loaded\":[");
        for (int i = 0; i < 100000; i++)
                n += (size_t)snprintf(big + n, cap - n,
                                      "%s{\"model_id\":\"m%d\"}", i ? "," : "",
                                      i);
        n += (size_t)snprintf(big + n, cap - n, "]}");
        CHECK_INT_EQ(mls_payload_normalize(big, n, cap, &p),
                     MLS_PAYLOAD_HEARTBEAT);
        free(big);
        CHECK_INT_EQ(p.nloaded, MLS_PAYLOAD_MAX_LOADED);
        CHECK_INT_EQ(p.skipped, 100000 - MLS_PAYLOAD_MAX_LOADED);
        mls_payload_clear(&p);
}

/* predictions and metadata reach subscribers as the engine wrote them: no
 * tree is built, so number spellings and key order survive; the tenant is
 * found inside metadata even behind escapes. */
MLS_TEST(gateway_payload_passes_predictions_through)
{
        struct mls_payload p;
        const char *t;
        size_t n = 0;

        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":12,"
                          "\"predictions\":{\"z\":1.50,\"a\":[2E3,-0]},"
                          "\"latency_ms\":1,\"received_at\":1764201599123,"
                          "\"metadata\":{\"ten\\u0061nt\":\"blue\\u00e9\","
                          "\"tenant\":1,\"x\":[]}}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK_STR_EQ(event_json(&p),
                     "{\"inferenceId\":\"12\",\"modelId\":\"m\",\"inputId\":"
                     "null,\"predictions\":{\"z\":1.50,\"a\":[2E3,-0]},"
                     "\"latencyMs\":1,\"receivedAt\":"
                     "\"2025-11-26T23:59:59.123Z\",\"publishedAt\":null,"
                     "\"metadata\":{\"ten\\u0061nt\":\"blue\\u00e9\","
                     "\"tenant\":1,\"x\":[]},\"modelVersion\":null}");
        /* the last "tenant" is a number: no tenant */
        CHECK(mls_payload_tenant(&p, &n) == NULL);
        mls_payload_clear(&p);

        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":\"i\","
                          "\"predictions\":0.5,\"latency_ms\":1,"
                          "\"received_at\":1764201599123,\"metadata\":{"
                          "\"ten\\u0061nt\":\"blue\\u00e9\"}}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        t = mls_payload_tenant(&p, &n);
        CHECK(t && n == 6 && memcmp(t, "blue\xc3\xa9", 6) == 0);
        mls_payload_clear(&p);

        /* metadata that is not an object: passed through, no tenant */
        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":\"i\","
                          "\"predictions\":[1],\"latency_ms\":1,"
                          "\"received_at\":1764201599123,\"metadata\":"
                          "\"tenant\"}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK(mls_payload_tenant(&p, &n) == NULL);
        mls_payload_clear(&p);

        /* invalid JSON deep inside predictions is still refused */
        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":\"i\","
                          "\"predictions\":[[1,2],[3,]],\"latency_ms\":1,"
                          "\"received_at\":1764201599123}",
                          &p),
                     MLS_PAYLOAD_GARBAGE);
        CHECK_STR_EQ(p.reason, "not JSON");
        mls_payload_clear(&p);
        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":\"i\","
                          "\"predictions\":[\"\xc0\x80\"],\"latency_ms\":1,"
                          "\"received_at\":1764201599123}",
                          &p),
                     MLS_PAYLOAD_GARBAGE);
        mls_payload_clear(&p);
        CHECK_INT_EQ(norm("[1,2]", &p), MLS_PAYLOAD_GARBAGE);
        CHECK_STR_EQ(p.reason, "not a JSON object");
        mls_payload_clear(&p);
        /* an inference id past int64 is refused, not wrapped */
        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":"
                          "99999999999999999999,\"predictions\":[1],"
                          "\"latency_ms\":1,\"received_at\":1764201599123}",
                          &p),
                     MLS_PAYLOAD_GARBAGE);
        CHECK_STR_EQ(p.reason, "bad inference_id");
        mls_payload_clear(&p);
}

/* A subscription to model "m" made from q (with vars, borrowed). */
static mls_gql_sub_t *subscribe(mls_gql_cache_t *c, const char *q, json_t *vars)
{
        json_t *errors = NULL;
        mls_gql_doc_t *doc = mls_gql_cache_get(c, q, strlen(q), &errors);
        mls_gql_sub_t *sub;

        if (!doc) {
                json_decref(errors);
                return NULL;
        }
        sub = mls_gql_sub_prepare(doc, NULL, vars, &errors);
        mls_gql_doc_unref(doc);
        json_decref(errors);
        return sub;
}

/* Renders p for sub from its texts (into text) and through the executor
 * (into tree); returns what mls_gql_sub_render_text() returned. */
static int both(mls_gql_sub_t *sub, struct mls_payload *p, struct mls_buf *text,
                struct mls_buf *tree)
{
        const struct mls_gql_text_event ev = {mls_payload_field_names, p->text,
                                              MLS_PF_COUNT};
        int rc;

        mls_buf_reset(text);
        mls_buf_reset(tree);
        rc = mls_gql_sub_render_text(sub, &ev, text);
        if (mls_gql_sub_render(sub, mls_payload_event(p), tree) < 0)
                return -2;
        return rc;
}

/* The fast path (texts copied between pieces compiled once) writes the
 * executor's bytes for every selection it serves, and leaves to the
 * executor what it cannot: a gap's sub-selection, a removed root field, an
 * execution limit below the selection's size. */
MLS_TEST(gateway_payload_text_render_matches_executor)
{
        static const char *const payloads[] = {
                "{\"model_id\":\"m\",\"inference_id\":\"i\\\"1\\u00e9\","
                "\"input_id\":7,\"predictions\":[[0.93,0.07]],"
                "\"latency_ms\":1.84,\"received_at\":\"2026-11-26T23:59:"
                "59.123Z\",\"published_at\":1764201599125,\"metadata\":{"
                "\"tenant\":\"t\",\"n\":1E3},\"model_version\":\"v2\"}",
                "{\"modelId\":\"m\",\"inferenceId\":-42,\"predictions\":"
                "\"x\\ty\",\"latencyMs\":0,\"receivedAt\":0,\"metadata\":"
                "null,\"modelVersion\":\"\"}",
                "{\"model_id\":\"m\",\"inference_id\":\"i\",\"predictions\":"
                "-0.0,\"latency_ms\":1e-7,\"received_at\":\"2026-01-01T00:00:"
                "00+01:00\",\"published_at\":\"never\",\"metadata\":5e400}",
                "{\"model_id\":\"m\",\"inference_id\":\"\",\"predictions\":"
                "true,\"latency_ms\":123456789012345678901234567890,"
                "\"received_at\":253402300799999,\"input_id\":\"\\ud83d\\ude00"
                "\"}",
        };
        static const struct {
                const char *q;
                int text; /* 1: served from texts, 0: by the executor */
        } subs[] = {
                {"subscription { mlInferenceStream(modelId: \"m\") { "
                 "inferenceId modelId inputId predictions latencyMs "
                 "receivedAt publishedAt metadata modelVersion } }",
                 1},
                {"subscription { s: mlInferenceStream(modelId: \"m\") { "
                 "__typename id: inferenceId ...F latencyMs id2: inferenceId "
                 "} } fragment F on MLStreamingPrediction { metadata "
                 "receivedAt }",
                 1},
                {"subscription ($x: Boolean!) { mlInferenceStream(modelId: "
                 "\"m\") { inferenceId @include(if: $x) latencyMs "
                 "modelVersion @skip(if: $x) } }",
                 1},
                {"subscription { mlInferenceStream(modelId: \"m\") { "
                 "predictions gap { reason missed since } } }",
                 1},
                {"subscription { mlInferenceStream(modelId: \"m\") "
                 "@skip(if: true) { inferenceId } }",
                 0},
        };
        char err[128];
        mls_gql_schema_t *schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_cache_t *cache =
                mls_gql_cache_new(schema, NULL, 16, err, sizeof(err));
        mls_gql_cache_t *tight = mls_gql_cache_new(
                schema, &(struct mls_gql_limits){.max_completions = 5}, 16, err,
                sizeof(err));
        json_t *vars = json_pack("{s:b}", "x", 1);
        struct mls_buf text, tree;
        mls_gql_sub_t *sub;

        CHECK(schema && cache && tight && vars);
        mls_buf_init(&text, 1 << 20);
        mls_buf_init(&tree, 1 << 20);
        for (size_t s = 0; s < sizeof(subs) / sizeof(subs[0]); s++) {
                sub = subscribe(cache, subs[s].q, vars);
                CHECK(sub != NULL);
                for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]);
                     i++) {
                        struct mls_payload p;
                        int rc, gap;

                        norm(payloads[i], &p);
                        CHECK_STR_EQ(p.reason, "");
                        CHECK_INT_EQ(p.kind, MLS_PAYLOAD_PREDICTION);
                        for (gap = 0; gap < 2; gap++) {
                                if (gap)
                                        CHECK(mls_payload_set_gap(
                                                      &p,
                                                      json_pack("{s:s,s:i,"
                                                                "s:s}",
                                                                "reason",
                                                                "UPSTREAM_LOST",
                                                                "missed", 3,
                                                                "since",
                                                                "2026-01-01T"
                                                                "00:00:00Z")) ==
                                              0);
                                rc = both(sub, &p, &text, &tree);
                                /* a gap selected needs the executor */
                                CHECK_INT_EQ(rc,
                                             gap && s == 3 ? 0 : subs[s].text);
                                if (rc == 1)
                                        CHECK(text.len == tree.len &&
                                              memcmp(text.data, tree.data,
                                                     text.len) == 0);
                        }
                        mls_payload_clear(&p);
                }
                mls_gql_sub_free(sub);
        }
        /* past the execution limit, the executor reports it */
        sub = subscribe(tight, subs[0].q, NULL);
        {
                struct mls_payload p;
                CHECK(sub != NULL);
                CHECK_INT_EQ(norm(payloads[0], &p), MLS_PAYLOAD_PREDICTION);
                CHECK_INT_EQ(both(sub, &p, &text, &tree), 0);
                CHECK(strstr(mls_buf_cstr(&tree), "Execution stopped") != NULL);
                mls_payload_clear(&p);
        }
        mls_gql_sub_free(sub);
        mls_buf_free(&text);
        mls_buf_free(&tree);
        json_decref(vars);
        mls_gql_cache_free(tight);
        mls_gql_cache_free(cache);
        mls_gql_schema_free(schema);
}

/* latency_ms is read to the same double as strtod gives, bit for bit, for
 * short decimals (read without strtod) and everything else alike. */
MLS_TEST(gateway_payload_latency_reads_as_strtod)
{
        static const char *const fixed[] = {
                "0",
                "-0",
                "-0.0",
                "1.25",
                "0.1",
                "0.3",
                "123456789012345",
                "1234567890123456",
                "0.000000000000001",
                "0.0000000000000001",
                "9007199254740993",
                "1e3",
                "2.5E-3",
                "17976931348623157e292",
        };
        unsigned seed = 7;
        char num[64], buf[256];

        for (int i = 0; i < 20000; i++) {
                struct mls_payload p;
                double want;
                int n = 0;

                if (i < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
                        n = snprintf(num, sizeof(num), "%s", fixed[i]);
                } else {
                        int ints, fracs;
                        seed = seed * 1103515245u + 12345u;
                        ints = (int)((seed >> 16) % 12);
                        fracs = (int)((seed >> 8) % 19);
                        n += snprintf(num, sizeof(num), "%u", (seed >> 4) % 10);
                        for (int k = 1; k <= ints; k++) {
                                seed = seed * 1103515245u + 12345u;
                                num[n++] = (char)('0' + (seed >> 16) % 10);
                        }
                        if (num[0] == '0')
                                n = 1; /* JSON: no leading zero */
                        if (fracs) {
                                num[n++] = '.';
                                for (int k = 0; k < fracs; k++) {
                                        seed = seed * 1103515245u + 12345u;
                                        num[n++] =
                                                (char)('0' + (seed >> 16) % 10);
                                }
                        }
                        num[n] = '\0';
                }
                want = strtod(num, NULL);
                snprintf(buf, sizeof(buf),
                         "{\"model_id\":\"m\",\"inference_id\":\"i\","
                         "\"predictions\":[1],\"latency_ms\":%s,"
                         "\"received_at\":0}",
                         num);
                CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
                if (memcmp(&p.latency_ms, &want, sizeof(want)) != 0)
                        CHECK_STR_EQ(num, "read as strtod reads it");
                mls_payload_clear(&p);
        }
}

/* A gap that could not be made (NULL) is refused and leaves no gap. */
MLS_TEST(gateway_payload_null_gap_refused)
{
        struct mls_payload p;

        CHECK_INT_EQ(norm("{\"model_id\":\"m\",\"inference_id\":\"i\","
                          "\"predictions\":[1],\"latency_ms\":1,"
                          "\"received_at\":0}",
                          &p),
                     MLS_PAYLOAD_PREDICTION);
        CHECK_INT_EQ(mls_payload_set_gap(&p, NULL), -1);
        CHECK(p.gap == NULL && p.text[MLS_PF_GAP].len == 0);
        CHECK(strstr(event_json(&p), "gap") == NULL);
        mls_payload_clear(&p);
}

/* The worst growth the store is reserved for: ids and a date made of
 * escapes that each become six bytes again, and still the exact text. */
MLS_TEST(gateway_payload_store_room_worst_case)
{
        static char buf[70000], id[20000];
        struct mls_payload p;
        size_t n = 0;

        for (int i = 0; i < 5000; i++)
                n += (size_t)snprintf(id + n, sizeof(id) - n, "\\n");
        snprintf(buf, sizeof(buf),
                 "{\"model_id\":\"m\",\"inference_id\":\"%s\",\"input_id\":"
                 "\"%s\",\"model_version\":\"\\u0001\",\"predictions\":[1],"
                 "\"latency_ms\":1,\"received_at\":0}",
                 id, id);
        CHECK_INT_EQ(norm(buf, &p), MLS_PAYLOAD_PREDICTION);
        CHECK_INT_EQ(p.inference_id_len, 5000);
        CHECK_INT_EQ(p.text[MLS_PF_INFERENCE_ID].len, 5000 * 6 + 2);
        CHECK(memcmp(p.text[MLS_PF_INPUT_ID].p, "\"\\u000a\\u000a", 13) == 0);
        CHECK(p.text[MLS_PF_MODEL_VERSION].len == 8);
        mls_payload_clear(&p);
}
