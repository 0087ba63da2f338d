/*
 * The monitor's payload normaliser (src/gateway/payload.c), the sliding
 * latency window (monitor.c) and the fan-out hub's grouping (hub.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "gateway/jsonw.h"
#include "gateway/monitor.h"
#include "gateway/payload.h"
#include "test.h"

static enum mls_payload_kind norm(const char *s, struct mls_payload *p)
{
        return mls_payload_normalize(s, strlen(s), 1 << 20, p);
}

/* The event as compact JSON (shortest floats), in a static buffer. */
static const char *event_json(const struct mls_payload *p)
{
        static char out[2048];
        struct mls_buf b;

        mls_buf_init(&b, sizeof(out) - 1);
        if (mls_jsonw_value(&b, p->event) < 0) {
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
                     "1764201599123456789}}");
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
                     "\"publishedAt\":null,\"metadata\":null}");
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
        /* over max_models: not tracked */
        mls_monitor_heartbeat(m, "c", 3000);
        CHECK_INT_EQ(mls_monitor_models(m), 2);
        CHECK_INT_EQ(mls_monitor_untracked(m), 1);
        s = mls_monitor_status(m, "b", NULL);
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
