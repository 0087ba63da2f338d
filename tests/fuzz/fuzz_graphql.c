/*
 * libFuzzer target for the GraphQL engine: every input is a document that
 * goes through the cache (parse + validate), then is executed against fixed
 * resolvers, or, for subscriptions, prepared and run against fixed events
 * through both event paths, which must agree.
 *
 * Built and run by scripts/fuzz; alone, from the repository root, after it:
 *   build-fuzz/tests/fuzz_graphql -max_total_time=60 tests/fuzz/corpus/graphql
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "graphql/graphql.h"

static json_t *status_cb(void *opaque, void *request_ctx,
                         const char *field_name, json_t *args, char *errstr,
                         size_t errstr_size)
{
        const char *id = json_string_value(json_object_get(args, "modelId"));

        (void)opaque;
        (void)request_ctx;
        (void)field_name;
        if (!id)
                abort(); /* coercion guarantees a String! */
        if (strcmp(id, "bad") == 0) {
                snprintf(errstr, errstr_size, "unknown model %s", id);
                return NULL;
        }
        if (strcmp(id, "null") == 0)
                return json_null();
        if (strcmp(id, "weird") == 0)
                return json_pack("{s:i, s:s, s:f, s:[i], s:I}", "modelId", 5,
                                 "connected", "x", "averageLatencyMs", 1.5,
                                 "p95LatencyMs", 1, "windowSize",
                                 (json_int_t)1 << 40);
        return json_pack("{s:s, s:b, s:s, s:f, s:n, s:i}", "modelId", id,
                         "connected", 1, "lastHeartbeatAt",
                         "2026-11-26T23:59:59.123Z", "averageLatencyMs", 1.5,
                         "p95LatencyMs", "windowSize", 7);
}

static mls_gql_schema_t *schema;
static mls_gql_cache_t *cache;
static json_t *vars;
static json_t *events[3];

static void setup(void)
{
        char err[256];

        schema = mls_gql_schema_new(err, sizeof(err));
        if (!schema ||
            mls_gql_schema_set_resolver(schema, "Query", "mlStreamingStatus",
                                        status_cb, NULL, err, sizeof(err)) < 0)
                abort();
        cache = mls_gql_cache_new(schema, NULL, 64, err, sizeof(err));
        vars = json_loads("{\"m\":\"m1\",\"b\":true,\"s\":\"x\",\"n\":3,"
                          "\"l\":[\"a\",null],\"o\":{\"k\":1}}",
                          0, NULL);
        events[0] = json_loads(
                "{\"inferenceId\":\"i1\",\"modelId\":\"m1\",\"inputId\":null,"
                "\"predictions\":[[0.5,1e300,-0.0]],\"latencyMs\":1.84,"
                "\"receivedAt\":\"2026-11-26T23:59:59.123Z\",\"publishedAt\":"
                "\"2026-11-26T23:59:59.124Z\",\"metadata\":{\"t\":\"\\u00e9"
                "\\u0000\",\"n\":1732665599123456789}}",
                JSON_ALLOW_NUL, NULL);
        events[1] = json_loads("{\"modelId\":7,\"latencyMs\":\"x\","
                               "\"inferenceId\":[1]}",
                               0, NULL);
        events[2] = json_loads("[1,2]", 0, NULL);
        if (!cache || !vars || !events[0] || !events[1] || !events[2])
                abort();
}

/* json_equal(), except that JSON text does not keep 2.0 apart from 2 */
static int same(json_t *a, json_t *b)
{
        const char *k;
        json_t *v;

        if (json_is_number(a) && json_is_number(b)) {
                if (json_is_integer(a) && json_is_integer(b))
                        return json_integer_value(a) == json_integer_value(b);
                return json_number_value(a) == json_number_value(b);
        }
        if (json_typeof(a) != json_typeof(b))
                return 0;
        if (json_is_object(a)) {
                if (json_object_size(a) != json_object_size(b))
                        return 0;
                json_object_foreach(
                        a, k, v) if (!json_object_get(b, k) ||
                                     !same(v, json_object_get(b, k))) return 0;
                return 1;
        }
        if (json_is_array(a)) {
                if (json_array_size(a) != json_array_size(b))
                        return 0;
                for (size_t i = 0; i < json_array_size(a); i++)
                        if (!same(json_array_get(a, i), json_array_get(b, i)))
                                return 0;
                return 1;
        }
        return json_equal(a, b);
}

static void check_response(json_t *r)
{
        char *s;

        if (!r)
                abort();
        /* the response must serialize (valid UTF-8 everywhere) */
        s = json_dumps(r, JSON_COMPACT);
        if (!s)
                abort();
        free(s);
        json_decref(r);
}

static void run_subscription(mls_gql_doc_t *doc)
{
        json_t *errors = NULL;
        mls_gql_sub_t *sub = mls_gql_sub_prepare(doc, NULL, vars, &errors);
        struct mls_buf out;

        if (!sub) {
                if (!errors)
                        abort();
                json_decref(errors);
                return;
        }
        mls_buf_init(&out, 1 << 24);
        for (int i = 0; i < 3; i++) {
                json_t *a = mls_gql_sub_event(sub, events[i]), *b;
                mls_buf_reset(&out);
                if (!a || mls_gql_sub_render(sub, events[i], &out) < 0)
                        abort();
                b = json_loadb(out.data, out.len, JSON_ALLOW_NUL, NULL);
                /* both event paths produce the same response */
                if (!b || !same(a, b))
                        abort();
                json_decref(b);
                check_response(a);
        }
        mls_buf_free(&out);
        mls_gql_sub_free(sub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *errors = NULL;
        mls_gql_doc_t *doc, *again;
        enum mls_gql_op_kind kind;
        char err[256];

        if (!schema)
                setup();
        doc = mls_gql_cache_get(cache, (const char *)data, size, &errors);
        if (!doc) {
                if (!errors || json_array_size(errors) == 0)
                        abort();
                check_response(errors);
                return 0;
        }
        again = mls_gql_cache_get(cache, (const char *)data, size, &errors);
        if (again != doc)
                abort();
        mls_gql_doc_unref(again);
        if (mls_gql_doc_operation(doc, NULL, &kind, err, sizeof(err)) == 0 &&
            kind == MLS_GQL_SUBSCRIPTION)
                run_subscription(doc);
        else
                check_response(mls_gql_execute(doc, NULL, vars, NULL));
        mls_gql_doc_unref(doc);
        return 0;
}
