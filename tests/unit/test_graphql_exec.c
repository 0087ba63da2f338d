/*
 * Execution: resolvers, coercion, non-null propagation, subscriptions and
 * their per-event paths, the document cache and the execution budgets.
 */
#include <stdlib.h>
#include <time.h>

#include "common/buf.h"
#include "graphql/graphql_int.h"
#include "test.h"

struct fake_monitor {
        int calls;
        json_t *next; /* what the resolver returns, stolen per call */
        const char *fail;
        void *last_ctx;
};

static json_t *status_cb(void *opaque, void *request_ctx,
                         const char *field_name, json_t *args, char *errstr,
                         size_t errstr_size)
{
        struct fake_monitor *m = opaque;
        const char *id = json_string_value(json_object_get(args, "modelId"));
        json_t *v;

        m->calls++;
        m->last_ctx = request_ctx;
        if (strcmp(field_name, "mlStreamingStatus") != 0 || !id) {
                snprintf(errstr, errstr_size, "bad call");
                return NULL;
        }
        if (m->fail) {
                snprintf(errstr, errstr_size, "%s", m->fail);
                return NULL;
        }
        if (m->next) {
                v = m->next;
                m->next = NULL;
                return v;
        }
        return json_pack("{s:s, s:b, s:s, s:f, s:n, s:i}", "modelId", id,
                         "connected", 1, "lastHeartbeatAt",
                         "2026-11-26T23:59:59.123Z", "averageLatencyMs", 1.5,
                         "p95LatencyMs", "windowSize", 7);
}

static struct fake_monitor monitor;

static mls_gql_schema_t *schema(void)
{
        static mls_gql_schema_t *s;
        char err[128];

        if (!s) {
                s = mls_gql_schema_new(err, sizeof(err));
                if (s && mls_gql_schema_set_resolver(
                                 s, "Query", "mlStreamingStatus", status_cb,
                                 &monitor, err, sizeof(err)) < 0) {
                        mls_gql_schema_free(s);
                        s = NULL;
                }
        }
        return s;
}

/* Runs text with variables (JSON text or NULL) and returns the response
 * as compact JSON with sorted keys (static buffer). */
static const char *run(const char *text, const char *vars_json,
                       const char *opname)
{
        static char out[16384];
        json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
        json_t *errors = NULL, *resp;
        mls_gql_doc_t *doc;
        char *s;

        doc = mls_gql_doc_new(schema(), text, strlen(text), NULL, &errors);
        if (doc) {
                resp = mls_gql_execute(doc, opname, vars, &monitor);
                mls_gql_doc_unref(doc);
        } else {
                resp = json_pack("{s:o}", "errors", errors);
        }
        s = json_dumps(resp, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(out, sizeof(out), "%s", s ? s : "(null)");
        free(s);
        json_decref(resp);
        json_decref(vars);
        return out;
}

MLS_TEST(graphql_exec_query_with_resolver)
{
        monitor = (struct fake_monitor){0};
        CHECK_STR_EQ(run("{ s: mlStreamingStatus(modelId: \"m1\") { "
                         "__typename modelId connected lastHeartbeatAt "
                         "averageLatencyMs p95LatencyMs n: windowSize } }",
                         NULL, NULL),
                     "{\"data\":{\"s\":{\"__typename\":\"MLStreamingStatus\","
                     "\"averageLatencyMs\":1.5,\"connected\":true,"
                     "\"lastHeartbeatAt\":\"2026-11-26T23:59:59.123Z\","
                     "\"modelId\":\"m1\",\"n\":7,\"p95LatencyMs\":null}}}");
        CHECK_INT_EQ(monitor.calls, 1);
        CHECK(monitor.last_ctx == &monitor);
}

MLS_TEST(graphql_exec_response_key_order_follows_the_query)
{
        static const char q[] =
                "{ mlStreamingStatus(modelId: \"m\") { windowSize modelId "
                "...F connected } } fragment F on MLStreamingStatus { "
                "windowSize p95LatencyMs }";
        json_t *errors = NULL, *resp, *s;
        const char *keys[4], *k;
        json_t *v;
        int i = 0;
        mls_gql_doc_t *doc =
                mls_gql_doc_new(schema(), q, strlen(q), NULL, &errors);

        CHECK(doc);
        monitor = (struct fake_monitor){0};
        resp = mls_gql_execute(doc, NULL, NULL, NULL);
        mls_gql_doc_unref(doc);
        s = json_object_get(json_object_get(resp, "data"), "mlStreamingStatus");
        json_object_foreach(s, k, v) if (i < 4) keys[i++] = k;
        CHECK_INT_EQ(i, 4);
        CHECK_STR_EQ(keys[0], "windowSize");
        CHECK_STR_EQ(keys[1], "modelId");
        CHECK_STR_EQ(keys[2], "p95LatencyMs");
        CHECK_STR_EQ(keys[3], "connected");
        json_decref(resp);
}

MLS_TEST(graphql_exec_resolver_error_has_path_and_locations)
{
        monitor = (struct fake_monitor){0};
        monitor.fail = "model m9 is unknown";
        CHECK_STR_EQ(run("{\n  __typename\n  s: mlStreamingStatus(modelId: "
                         "\"m9\") { modelId }\n}",
                         NULL, NULL),
                     "{\"data\":null,\"errors\":[{\"locations\":[{\"column\":"
                     "3,\"line\":3}],\"message\":\"model m9 is unknown\","
                     "\"path\":[\"s\"]}]}");
}

MLS_TEST(graphql_exec_non_null_propagation)
{
        /* windowSize (Int!) missing: the error names it, and its parent
         * (non-null root field) takes data to null */
        monitor = (struct fake_monitor){0};
        monitor.next = json_pack("{s:s, s:b}", "modelId", "m", "connected", 1);
        CHECK_STR_EQ(run("{ mlStreamingStatus(modelId: \"m\") { modelId "
                         "windowSize } }",
                         NULL, NULL),
                     "{\"data\":null,\"errors\":[{\"locations\":[{\"column\":"
                     "45,\"line\":1}],\"message\":\"Cannot return null for "
                     "non-nullable field MLStreamingStatus.windowSize.\","
                     "\"path\":[\"mlStreamingStatus\",\"windowSize\"]}]}");
        /* nullable fields just become null */
        monitor.next =
                json_pack("{s:s, s:b, s:i, s:s}", "modelId", "m", "connected",
                          0, "windowSize", 0, "averageLatencyMs", "fast");
        CHECK_STR_EQ(run("{ mlStreamingStatus(modelId: \"m\") { "
                         "averageLatencyMs windowSize } }",
                         NULL, NULL),
                     "{\"data\":{\"mlStreamingStatus\":{\"averageLatencyMs\":"
                     "null,\"windowSize\":0}},\"errors\":[{\"locations\":[{"
                     "\"column\":37,\"line\":1}],\"message\":\"Float cannot "
                     "represent non numeric value: \\\"fast\\\"\",\"path\":["
                     "\"mlStreamingStatus\",\"averageLatencyMs\"]}]}");
}

MLS_TEST(graphql_exec_scalar_result_coercion)
{
        monitor = (struct fake_monitor){0};
        monitor.next = json_pack("{s:i, s:b, s:s, s:f, s:b, s:I}", "modelId",
                                 42, "connected", 0, "lastHeartbeatAt", "x",
                                 "p95LatencyMs", 2.0, "averageLatencyMs", 1,
                                 "windowSize", (json_int_t)3000000000LL);
        CHECK_STR_EQ(run("{ mlStreamingStatus(modelId: \"m\") { modelId "
                         "connected lastHeartbeatAt p95LatencyMs "
                         "averageLatencyMs } }",
                         NULL, NULL),
                     "{\"data\":{\"mlStreamingStatus\":{\"averageLatencyMs\":"
                     "1.0,\"connected\":false,\"lastHeartbeatAt\":\"x\","
                     "\"modelId\":\"42\",\"p95LatencyMs\":2.0}}}");
        monitor.next = json_pack("{s:s, s:b, s:I}", "modelId", "m", "connected",
                                 1, "windowSize", (json_int_t)3000000000LL);
        CHECK_CONTAINS(run("{ mlStreamingStatus(modelId: \"m\") { windowSize "
                           "} }",
                           NULL, NULL),
                       "Int cannot represent non 32-bit signed integer "
                       "value: 3000000000");
        monitor.next = json_pack("{s:s, s:s, s:i}", "modelId", "m", "connected",
                                 "yes", "windowSize", 1);
        CHECK_CONTAINS(run("{ mlStreamingStatus(modelId: \"m\") { connected "
                           "} }",
                           NULL, NULL),
                       "Boolean cannot represent a non boolean value: "
                       "\\\"yes\\\"");
        monitor.next =
                json_pack("{s:s, s:b, s:f, s:i}", "modelId", "m", "connected",
                          1, "windowSize", 2.5, "lastHeartbeatAt", 5);
        CHECK_STR_EQ(run("{ mlStreamingStatus(modelId: \"m\") { "
                         "lastHeartbeatAt } }",
                         NULL, NULL),
                     "{\"data\":{\"mlStreamingStatus\":{\"lastHeartbeatAt\":"
                     "null}},\"errors\":[{\"locations\":[{\"column\":37,"
                     "\"line\":1}],\"message\":\"DateTime cannot represent a "
                     "non string value: 5\",\"path\":[\"mlStreamingStatus\","
                     "\"lastHeartbeatAt\"]}]}");
}

MLS_TEST(graphql_exec_variables)
{
        static const char q[] = "query Q($m: String!) { mlStreamingStatus("
                                "modelId: $m) { modelId } }";
        static const char qd[] = "query Q($m: String = \"dflt\") { "
                                 "mlStreamingStatus(modelId: $m) { modelId } "
                                 "}";

        monitor = (struct fake_monitor){0};
        CHECK_STR_EQ(
                run(q, "{\"m\":\"abc\"}", NULL),
                "{\"data\":{\"mlStreamingStatus\":{\"modelId\":\"abc\"}}}");
        CHECK_STR_EQ(run(q, "{\"m\":12}", NULL),
                     "{\"errors\":[{\"locations\":[{\"column\":9,\"line\":1}]"
                     ",\"message\":\"Variable \\\"$m\\\" got invalid value "
                     "12; String cannot represent a non string value: "
                     "12\"}]}");
        CHECK_STR_EQ(run(q, "{\"m\":null}", NULL),
                     "{\"errors\":[{\"locations\":[{\"column\":9,\"line\":1}]"
                     ",\"message\":\"Variable \\\"$m\\\" of non-null type "
                     "\\\"String!\\\" must not be null.\"}]}");
        CHECK_STR_EQ(run(q, "{}", NULL),
                     "{\"errors\":[{\"locations\":[{\"column\":9,\"line\":1}]"
                     ",\"message\":\"Variable \\\"$m\\\" of required type "
                     "\\\"String!\\\" was not provided.\"}]}");
        CHECK_STR_EQ(run(q, "[1]", NULL),
                     "{\"errors\":[{\"message\":\"Variables must be provided "
                     "as an Object where each property is a variable "
                     "value.\"}]}");
        CHECK_STR_EQ(run(qd, NULL, NULL),
                     "{\"data\":{\"mlStreamingStatus\":{\"modelId\":\"dflt\"}"
                     "}}");
        /* an explicit null reaches the non-null argument: an error there */
        CHECK_STR_EQ(run(qd, "{\"m\":null}", NULL),
                     "{\"data\":null,\"errors\":[{\"locations\":[{\"column\":"
                     "59,\"line\":1}],\"message\":\"Argument \\\"modelId\\\" "
                     "of non-null type \\\"String!\\\" must not be null.\","
                     "\"path\":[\"mlStreamingStatus\"]}]}");
        CHECK_CONTAINS(run(qd, "{\"m\":{\"a\":[1,{\"b\":[1,[2,[3]]]}]}}", NULL),
                       "got invalid value { a: [1, [Object]] }; String "
                       "cannot represent a non string value: { a: [1, "
                       "[Object]] }");
}

MLS_TEST(graphql_exec_skip_include_fragments_aliases)
{
        static const char q[] =
                "query ($b: Boolean!) { a: __typename @skip(if: $b) "
                "b: __typename @include(if: $b) ...F @include(if: $b) "
                "... @skip(if: true) { c: __typename } "
                "... on Query { d: __typename } } "
                "fragment F on Query { e: __typename }";

        CHECK_STR_EQ(run(q, "{\"b\":true}", NULL),
                     "{\"data\":{\"b\":\"Query\",\"d\":\"Query\",\"e\":"
                     "\"Query\"}}");
        CHECK_STR_EQ(run(q, "{\"b\":false}", NULL),
                     "{\"data\":{\"a\":\"Query\",\"d\":\"Query\"}}");
}

MLS_TEST(graphql_exec_operation_selection)
{
        static const char q[] = "query A { a: __typename } "
                                "query B { b: __typename }";

        CHECK_STR_EQ(run(q, NULL, "B"), "{\"data\":{\"b\":\"Query\"}}");
        CHECK_STR_EQ(run(q, NULL, "C"),
                     "{\"errors\":[{\"message\":\"Unknown operation named "
                     "\\\"C\\\".\"}]}");
        CHECK_STR_EQ(run(q, NULL, NULL),
                     "{\"errors\":[{\"message\":\"Must provide operation name "
                     "if query contains multiple operations.\"}]}");
        CHECK_CONTAINS(run("subscription { mlInferenceStream(modelId: \"m\") "
                           "{ modelId } }",
                           NULL, NULL),
                       "Subscription operations are delivered over "
                       "WebSocket");
}

MLS_TEST(graphql_exec_request_errors_have_no_data)
{
        CHECK_STR_EQ(run("{ mlStreamingStatus(modelId: \"m\") }", NULL, NULL),
                     "{\"errors\":[{\"locations\":[{\"column\":3,\"line\":1}]"
                     ",\"message\":\"Field \\\"mlStreamingStatus\\\" of type "
                     "\\\"MLStreamingStatus!\\\" must have a selection of "
                     "subfields. Did you mean \\\"mlStreamingStatus { ... "
                     "}\\\"?\"}]}");
        CHECK_STR_EQ(run("{", NULL, NULL),
                     "{\"errors\":[{\"locations\":[{\"column\":2,\"line\":1}]"
                     ",\"message\":\"Syntax Error: Expected Name, found "
                     "<EOF>.\"}]}");
}

MLS_TEST(graphql_exec_missing_resolver)
{
        char err[128];
        mls_gql_schema_t *s = mls_gql_schema_new(err, sizeof(err));
        json_t *errors = NULL, *resp;
        mls_gql_doc_t *doc;
        char *out;

        CHECK(s);
        CHECK_INT_EQ(mls_gql_schema_set_resolver(s, "Subscription",
                                                 "mlInferenceStream", NULL,
                                                 NULL, err, sizeof(err)),
                     -1);
        CHECK_STR_EQ(err, "GraphQL type \"Subscription\" is not a query or "
                          "mutation root type");
        CHECK_INT_EQ(mls_gql_schema_set_resolver(s, "Query", "nope", NULL, NULL,
                                                 err, sizeof(err)),
                     -1);
        CHECK_STR_EQ(err, "GraphQL type Query has no field \"nope\"");
        doc = mls_gql_doc_new(s,
                              "{ mlStreamingStatus(modelId: \"m\") { "
                              "modelId } }",
                              strlen("{ mlStreamingStatus(modelId: \"m\") { "
                                     "modelId } }"),
                              NULL, &errors);
        CHECK(doc);
        resp = mls_gql_execute(doc, NULL, NULL, NULL);
        out = json_dumps(resp, JSON_COMPACT | JSON_SORT_KEYS);
        mls_gql_doc_unref(doc);
        json_decref(resp);
        mls_gql_schema_free(s);
        CHECK_CONTAINS(out, "No resolver is set for "
                            "Query.mlStreamingStatus.");
        CHECK_CONTAINS(out, "\"data\":null");
        free(out);
}

/* --- subscriptions ------------------------------------------------------- */

static json_t *prediction(void)
{
        return json_loads(
                "{\"inferenceId\":\"inf-1\",\"modelId\":\"m1\",\"inputId\":"
                "null,\"predictions\":[[0.93,0.07]],\"latencyMs\":1.84,"
                "\"receivedAt\":\"2026-11-26T23:59:59.123Z\",\"publishedAt\":"
                "\"2026-11-26T23:59:59.125Z\",\"metadata\":{\"tenant\":"
                "\"blue\",\"ts\":1732665599123456789,\"s\":\"\\u00e9\\n\"},"
                "\"extra\":1}",
                0, NULL);
}

static mls_gql_sub_t *prepare(const char *text, const char *vars_json,
                              json_t **errors)
{
        json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
        mls_gql_doc_t *doc =
                mls_gql_doc_new(schema(), text, strlen(text), NULL, errors);
        mls_gql_sub_t *sub = NULL;

        if (doc)
                sub = mls_gql_sub_prepare(doc, NULL, vars, errors);
        mls_gql_doc_unref(doc);
        json_decref(vars);
        return sub;
}

MLS_TEST(graphql_exec_subscription_prepare)
{
        json_t *errors = NULL;
        mls_gql_sub_t *sub =
                prepare("subscription S($m: String!) { live: mlInferenceStream("
                        "modelId: $m) { modelId } }",
                        "{\"m\":\"threat-detector-v1\"}", &errors);
        char *args;

        CHECK(sub);
        CHECK(errors == NULL);
        CHECK_STR_EQ(mls_gql_sub_field(sub), "mlInferenceStream");
        args = json_dumps(mls_gql_sub_args(sub), JSON_COMPACT);
        mls_gql_sub_free(sub);
        CHECK_STR_EQ(args, "{\"modelId\":\"threat-detector-v1\"}");
        free(args);
}

MLS_TEST(graphql_exec_subscription_prepare_errors)
{
        json_t *errors = NULL;
        char *s;

        CHECK(!prepare("subscription S($m: String!) { mlInferenceStream("
                       "modelId: $m) { modelId } }",
                       "{}", &errors));
        s = json_dumps(errors, JSON_COMPACT);
        json_decref(errors);
        CHECK_CONTAINS(s, "Variable \\\"$m\\\" of required type "
                          "\\\"String!\\\" was not provided.");
        free(s);
        errors = NULL;
        CHECK(!prepare("{ __typename }", NULL, &errors));
        s = json_dumps(errors, JSON_COMPACT);
        json_decref(errors);
        CHECK_CONTAINS(s, "The operation is not a subscription");
        free(s);
        errors = NULL;
        CHECK(!prepare("subscription { mlInferenceStream { modelId } }", NULL,
                       &errors));
        s = json_dumps(errors, JSON_COMPACT);
        json_decref(errors);
        CHECK_CONTAINS(s, "argument \\\"modelId\\\" of type \\\"String!\\\" "
                          "is required");
        free(s);
}

MLS_TEST(graphql_exec_subscription_event_json_and_render_agree)
{
        static const char q[] =
                "subscription { p: mlInferenceStream(modelId: \"m1\") { "
                "__typename inferenceId modelId inputId predictions "
                "latencyMs receivedAt publishedAt metadata ...F } } "
                "fragment F on MLStreamingPrediction { id: inferenceId }";
        json_t *errors = NULL, *ev = prediction(), *a, *b;
        mls_gql_sub_t *sub = prepare(q, NULL, &errors);
        struct mls_buf out;
        char *s;

        CHECK(sub && ev);
        a = mls_gql_sub_event(sub, ev);
        mls_buf_init(&out, 1 << 20);
        CHECK_INT_EQ(mls_gql_sub_render(sub, ev, &out), 0);
        b = json_loadb(out.data, out.len, 0, NULL);
        s = json_dumps(a, JSON_COMPACT);
        CHECK(b != NULL);
        CHECK(json_equal(a, b));
        CHECK_STR_EQ(s,
                     "{\"data\":{\"p\":{\"__typename\":"
                     "\"MLStreamingPrediction\",\"inferenceId\":\"inf-1\","
                     "\"modelId\":\"m1\",\"inputId\":null,\"predictions\":"
                     "[[0.93000000000000005,0.070000000000000007]],"
                     "\"latencyMs\":1.8400000000000001,\"receivedAt\":"
                     "\"2026-11-26T23:59:59.123Z\",\"publishedAt\":"
                     "\"2026-11-26T23:59:59.125Z\",\"metadata\":{\"tenant\":"
                     "\"blue\",\"ts\":1732665599123456789,\"s\":\"\xc3\xa9\\n"
                     "\"},\"id\":\"inf-1\"}}}");
        /* the rendered text uses the shortest round-trip numbers and keeps
         * 19-digit integers */
        CHECK_CONTAINS(mls_buf_cstr(&out), "\"predictions\":[[0.93,0.07]],"
                                           "\"latencyMs\":1.84,");
        CHECK_CONTAINS(mls_buf_cstr(&out), "\"ts\":1732665599123456789");
        free(s);
        json_decref(a);
        json_decref(b);
        json_decref(ev);
        mls_buf_free(&out);
        mls_gql_sub_free(sub);
}

MLS_TEST(graphql_exec_subscription_event_bad_payload)
{
        /* a prediction without inferenceId: the non-null root makes data
         * null, in both paths, with the same error */
        json_t *errors = NULL,
               *ev = json_loads("{\"modelId\":\"m1\",\"latencyMs\":"
                                "\"slow\"}",
                                0, NULL),
               *a, *b;
        mls_gql_sub_t *sub = prepare("subscription { mlInferenceStream("
                                     "modelId: \"m1\") { latencyMs "
                                     "inferenceId } }",
                                     NULL, &errors);
        struct mls_buf out;
        char *s;

        CHECK(sub && ev);
        a = mls_gql_sub_event(sub, ev);
        mls_buf_init(&out, 1 << 20);
        mls_buf_puts(&out, "PREFIX");
        CHECK_INT_EQ(mls_gql_sub_render(sub, ev, &out), 0);
        CHECK(strncmp(out.data, "PREFIX", 6) == 0);
        b = json_loadb(out.data + 6, out.len - 6, 0, NULL);
        s = json_dumps(a, JSON_COMPACT);
        CHECK(json_equal(a, b));
        CHECK_STR_EQ(s,
                     "{\"data\":null,\"errors\":[{\"message\":\"Float cannot "
                     "represent non numeric value: \\\"slow\\\"\","
                     "\"locations\":[{\"line\":1,\"column\":51}],\"path\":"
                     "[\"mlInferenceStream\",\"latencyMs\"]}]}");
        free(s);
        json_decref(a);
        json_decref(b);
        json_decref(ev);
        mls_buf_free(&out);
        mls_gql_sub_free(sub);
}

MLS_TEST(graphql_exec_subscription_render_respects_cap)
{
        json_t *errors = NULL, *ev = prediction();
        mls_gql_sub_t *sub = prepare("subscription { mlInferenceStream("
                                     "modelId: \"m1\") { metadata "
                                     "predictions } }",
                                     NULL, &errors);
        struct mls_buf out;

        CHECK(sub && ev);
        mls_buf_init(&out, 40);
        mls_buf_puts(&out, "abc");
        CHECK_INT_EQ(mls_gql_sub_render(sub, ev, &out), -1);
        CHECK_INT_EQ(out.len, 3);
        mls_buf_free(&out);
        json_decref(ev);
        mls_gql_sub_free(sub);
}

MLS_TEST(graphql_exec_subscription_skipped_root)
{
        json_t *errors = NULL, *ev = prediction(), *a;
        mls_gql_sub_t *sub = prepare("subscription ($s: Boolean!) { "
                                     "mlInferenceStream(modelId: \"m\") "
                                     "@skip(if: $s) { modelId } }",
                                     "{\"s\":true}", &errors);
        struct mls_buf out;
        char *s;

        CHECK(sub && ev);
        CHECK(mls_gql_sub_field(sub) == NULL);
        a = mls_gql_sub_event(sub, ev);
        s = json_dumps(a, JSON_COMPACT);
        mls_buf_init(&out, 1 << 10);
        CHECK_INT_EQ(mls_gql_sub_render(sub, ev, &out), 0);
        CHECK_STR_EQ(mls_buf_cstr(&out), "{\"data\":{}}");
        CHECK_STR_EQ(s, "{\"data\":{}}");
        free(s);
        mls_buf_free(&out);
        json_decref(a);
        json_decref(ev);
        mls_gql_sub_free(sub);
}

MLS_TEST(graphql_exec_subscription_outlives_cache_eviction)
{
        char err[128];
        mls_gql_cache_t *c =
                mls_gql_cache_new(schema(), NULL, 1, err, sizeof(err));
        static const char q[] = "subscription { mlInferenceStream(modelId: "
                                "\"m\") { modelId } }";
        json_t *errors = NULL, *ev = prediction(), *r;
        mls_gql_doc_t *doc;
        mls_gql_sub_t *sub;
        mls_gql_doc_t *other;

        CHECK(c && ev);
        doc = mls_gql_cache_get(c, q, strlen(q), &errors);
        CHECK(doc);
        sub = mls_gql_sub_prepare(doc, NULL, NULL, &errors);
        mls_gql_doc_unref(doc);
        CHECK(sub);
        other = mls_gql_cache_get(c, "{ __typename }", 14, &errors);
        mls_gql_doc_unref(other);
        mls_gql_cache_free(c);
        r = mls_gql_sub_event(sub, ev);
        CHECK_STR_EQ(json_string_value(json_object_get(
                             json_object_get(json_object_get(r, "data"),
                                             "mlInferenceStream"),
                             "modelId")),
                     "m1");
        json_decref(r);
        json_decref(ev);
        mls_gql_sub_free(sub);
}

/* --- cache ------------------------------------------------------------------
 */

MLS_TEST(graphql_exec_cache_lru)
{
        char err[128];
        mls_gql_cache_t *c =
                mls_gql_cache_new(schema(), NULL, 2, err, sizeof(err));
        struct mls_gql_cache_stats st;
        json_t *errors = NULL;
        mls_gql_doc_t *a1, *a2, *b, *x;

        CHECK(c);
        a1 = mls_gql_cache_get(c, "{ a: __typename }", 17, &errors);
        a2 = mls_gql_cache_get(c, "{ a: __typename }", 17, &errors);
        CHECK(a1 && a1 == a2);
        b = mls_gql_cache_get(c, "{ b: __typename }", 17, &errors);
        mls_gql_doc_unref(a2);
        /* a is now the most recent; c evicts b */
        a2 = mls_gql_cache_get(c, "{ a: __typename }", 17, &errors);
        mls_gql_doc_unref(a2);
        mls_gql_doc_unref(
                mls_gql_cache_get(c, "{ c: __typename }", 17, &errors));
        mls_gql_cache_stats(c, &st);
        CHECK_INT_EQ(st.entries, 2);
        CHECK_INT_EQ(st.hits, 2);
        CHECK_INT_EQ(st.misses, 3);
        CHECK_INT_EQ(st.evictions, 1);
        x = mls_gql_cache_get(c, "{ b: __typename }", 17, &errors);
        CHECK(x && x != b); /* b was evicted: parsed anew */
        mls_gql_doc_unref(x);
        x = mls_gql_cache_get(c, "{ a: __typename }", 17, &errors);
        mls_gql_cache_stats(c, &st);
        CHECK_INT_EQ(st.misses, 5); /* b's return evicted a */
        CHECK(x != a1);
        mls_gql_doc_unref(x);
        /* invalid documents are reported and not cached */
        CHECK(!mls_gql_cache_get(c, "{ nope }", 8, &errors));
        CHECK_INT_EQ(json_array_size(errors), 1);
        json_decref(errors);
        mls_gql_cache_stats(c, &st);
        CHECK_INT_EQ(st.entries, 2);
        mls_gql_doc_unref(a1);
        mls_gql_doc_unref(b);
        mls_gql_cache_free(c);
}

MLS_TEST(graphql_exec_request_through_cache)
{
        char err[128];
        mls_gql_cache_t *c =
                mls_gql_cache_new(schema(), NULL, 0, err, sizeof(err));
        json_t *r;
        char *s;

        CHECK(c);
        monitor = (struct fake_monitor){0};
        for (int i = 0; i < 3; i++) {
                r = mls_gql_request(c, "{ __typename }", 14, NULL, NULL, NULL);
                s = json_dumps(r, JSON_COMPACT);
                json_decref(r);
                CHECK_STR_EQ(s, "{\"data\":{\"__typename\":\"Query\"}}");
                free(s);
        }
        r = mls_gql_request(c, "{ x }", 5, NULL, NULL, NULL);
        CHECK(json_object_get(r, "data") == NULL);
        CHECK_INT_EQ(json_array_size(json_object_get(r, "errors")), 1);
        json_decref(r);
        {
                struct mls_gql_cache_stats st;
                mls_gql_cache_stats(c, &st);
                CHECK_INT_EQ(st.hits, 2);
                CHECK_INT_EQ(st.entries, 1);
        }
        mls_gql_cache_free(c);
}

/* --- budgets ----------------------------------------------------------------
 */

MLS_TEST(graphql_exec_exponential_fragments_hit_plan_budget)
{
        size_t n = 30, cap = n * 128 + 64, len = 0;
        char *text = malloc(cap);
        json_t *errors = NULL, *r;
        mls_gql_doc_t *doc;
        clock_t t0 = clock();
        char *s;

        CHECK(text);
        len += (size_t)snprintf(text, cap,
                                "{ __type(name: \"Query\") { "
                                "...F0 } }");
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " fragment F%zu on __Type { a: "
                                        "ofType { ...F%zu } b: ofType { "
                                        "...F%zu } }",
                                        i, i + 1, i + 1);
        len += (size_t)snprintf(text + len, cap - len,
                                " fragment F%zu on __Type { name }", n);
        doc = mls_gql_doc_new(schema(), text, len, NULL, &errors);
        free(text);
        CHECK(doc);
        r = mls_gql_execute(doc, NULL, NULL, NULL);
        mls_gql_doc_unref(doc);
        s = json_dumps(r, JSON_COMPACT);
        json_decref(r);
        CHECK_STR_EQ(s, "{\"errors\":[{\"message\":\"Operation selects more "
                        "than 20000 fields once fragments are expanded.\","
                        "\"locations\":[{\"line\":1,\"column\":1}]}]}");
        free(s);
        CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
}

MLS_TEST(graphql_exec_completion_budget)
{
        struct mls_gql_limits lim = {0};
        static const char q[] = "{ __schema { types { fields { name } } } }";
        json_t *errors = NULL, *r;
        mls_gql_doc_t *doc;
        char *s;

        lim.max_completions = 50;
        doc = mls_gql_doc_new(schema(), q, strlen(q), &lim, &errors);
        CHECK(doc);
        r = mls_gql_execute(doc, NULL, NULL, NULL);
        mls_gql_doc_unref(doc);
        s = json_dumps(json_object_get(r, "errors"), JSON_COMPACT);
        json_decref(r);
        CHECK_CONTAINS(s, "Execution stopped after 50 values: the limit of "
                          "this server.");
        free(s);
}

MLS_TEST(graphql_exec_many_aliases)
{
        size_t n = 12000, cap = n * 24 + 8, len = 0;
        char *text = malloc(cap);
        json_t *errors = NULL, *r;
        mls_gql_doc_t *doc;

        CHECK(text);
        text[len++] = '{';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " a%zu: __typename", i);
        text[len++] = '}';
        doc = mls_gql_doc_new(schema(), text, len, NULL, &errors);
        free(text);
        CHECK(doc);
        r = mls_gql_execute(doc, NULL, NULL, NULL);
        mls_gql_doc_unref(doc);
        CHECK_INT_EQ(json_object_size(json_object_get(r, "data")), n);
        CHECK_STR_EQ(json_string_value(json_object_get(
                             json_object_get(r, "data"), "a11999")),
                     "Query");
        json_decref(r);
}

/* --- input objects and enums (a test schema) ------------------------------ */

static const struct mls__gql_enumdef color_values[] = {
        {"RED", NULL, NULL},
        {"GREEN", NULL, NULL},
        {"BLUE", NULL, NULL},
        {NULL, NULL, NULL},
};

static const struct mls__gql_argdef point_fields[] = {
        {"x", "Int!", NULL, NULL, NULL},
        {"y", "Int!", NULL, NULL, NULL},
        {"label", "String", NULL, "\"origin\"", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static const struct mls__gql_argdef paint_args[] = {
        {"color", "Color", NULL, NULL, NULL},
        {"at", "Point", NULL, NULL, NULL},
        {"colors", "[Color!]", NULL, NULL, NULL},
        {"id", "ID", NULL, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static const struct mls__gql_fielddef paint_fields[] = {
        {"paint", "JSON", NULL, paint_args, NULL, MLS__GQL_R_ROOT},
        {NULL, NULL, NULL, NULL, NULL, 0},
};

static const struct mls__gql_typedef paint_types[] = {
        {MLS__GQL_OBJECT, "Query", NULL, NULL, 0, paint_fields, NULL, NULL},
        {MLS__GQL_ENUM, "Color", NULL, NULL, 0, NULL, NULL, color_values},
        {MLS__GQL_INPUT_OBJECT, "Point", NULL, NULL, 0, NULL, point_fields,
         NULL},
        {MLS__GQL_SCALAR, "JSON", NULL, NULL, MLS__GQL_SC_JSON, NULL, NULL,
         NULL},
        {0, NULL, NULL, NULL, 0, NULL, NULL, NULL},
};

static const struct mls__gql_typedef *const paint_tables[] = {
        paint_types,
        mls__gql_builtin_types,
        NULL,
};

static const struct mls__gql_schemadef paint_schema_def = {
        .type_tables = paint_tables,
        .directives = mls__gql_builtin_directives,
        .query = "Query",
};

/* Echoes the coerced arguments. */
static json_t *paint_cb(void *opaque, void *request_ctx, const char *field_name,
                        json_t *args, char *errstr, size_t errstr_size)
{
        (void)opaque;
        (void)request_ctx;
        (void)field_name;
        (void)errstr;
        (void)errstr_size;
        return json_incref(args);
}

static const char *paint(const char *text, const char *vars_json)
{
        static mls_gql_schema_t *s;
        static char out[4096];
        char err[128];
        json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
        json_t *errors = NULL, *resp;
        mls_gql_doc_t *doc;
        char *d;

        if (!s) {
                s = mls__gql_schema_build(&paint_schema_def, err, sizeof(err));
                if (!s ||
                    mls_gql_schema_set_resolver(s, "Query", "paint", paint_cb,
                                                NULL, err, sizeof(err)) < 0)
                        return "(no schema)";
        }
        doc = mls_gql_doc_new(s, text, strlen(text), NULL, &errors);
        if (doc) {
                resp = mls_gql_execute(doc, NULL, vars, NULL);
                mls_gql_doc_unref(doc);
        } else {
                resp = json_pack("{s:o}", "errors", errors);
        }
        d = json_dumps(resp, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(out, sizeof(out), "%s", d ? d : "(null)");
        free(d);
        json_decref(resp);
        json_decref(vars);
        return out;
}

MLS_TEST(graphql_exec_input_objects_and_enums)
{
        static const char q[] = "query ($c: Color, $p: Point, $cs: [Color!], "
                                "$id: ID) { paint(color: $c, at: $p, "
                                "colors: $cs, id: $id) }";

        CHECK_STR_EQ(paint("{ paint(color: GREEN, at: {y: 2, x: 1}, colors: "
                           "RED, id: 7) }",
                           NULL),
                     "{\"data\":{\"paint\":{\"at\":{\"label\":\"origin\","
                     "\"x\":1,\"y\":2},\"color\":\"GREEN\",\"colors\":["
                     "\"RED\"],\"id\":\"7\"}}}");
        CHECK_STR_EQ(paint(q, "{\"c\":\"BLUE\",\"p\":{\"x\":1,\"y\":2,"
                              "\"label\":null},\"cs\":\"RED\",\"id\":3.0}"),
                     "{\"data\":{\"paint\":{\"at\":{\"label\":null,\"x\":1,"
                     "\"y\":2},\"color\":\"BLUE\",\"colors\":[\"RED\"],"
                     "\"id\":\"3\"}}}");
        CHECK_CONTAINS(paint(q, "{\"c\":\"REDD\"}"),
                       "Variable \\\"$c\\\" got invalid value \\\"REDD\\\"; "
                       "Value \\\"REDD\\\" does not exist in \\\"Color\\\" "
                       "enum. Did you mean the enum value \\\"RED\\\"?");
        CHECK_CONTAINS(paint(q, "{\"c\":1}"),
                       "Variable \\\"$c\\\" got invalid value 1; Enum "
                       "\\\"Color\\\" cannot represent non-string value: 1.");
        CHECK_CONTAINS(paint(q, "{\"p\":{\"x\":1}}"),
                       "Variable \\\"$p\\\" got invalid value { x: 1 }; Field "
                       "\\\"y\\\" of required type \\\"Int!\\\" was not "
                       "provided.");
        CHECK_CONTAINS(paint(q, "{\"p\":{\"x\":1,\"y\":2,\"z\":3}}"),
                       "Field \\\"z\\\" is not defined by type \\\"Point\\\". "
                       "Did you mean \\\"x\\\" or \\\"y\\\"?");
        CHECK_CONTAINS(paint(q, "{\"p\":{\"x\":\"a\",\"y\":2}}"),
                       "Variable \\\"$p\\\" got invalid value \\\"a\\\" at "
                       "\\\"p.x\\\"; Int cannot represent non-integer value: "
                       "\\\"a\\\"");
        CHECK_CONTAINS(paint(q, "{\"cs\":[\"RED\",null]}"),
                       "Variable \\\"$cs\\\" got invalid value null at "
                       "\\\"cs[1]\\\"; Expected non-nullable type "
                       "\\\"Color!\\\" not to be null.");
        CHECK_CONTAINS(paint(q, "{\"p\":[1]}"),
                       "Variable \\\"$p\\\" got invalid value [1]; Expected "
                       "type \\\"Point\\\" to be an object.");
        CHECK_CONTAINS(paint(q, "{\"id\":true}"),
                       "Variable \\\"$id\\\" got invalid value true; ID "
                       "cannot represent value: true");
}
