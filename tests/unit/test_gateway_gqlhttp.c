/*
 * GraphQL over HTTP (src/gateway/gqlhttp.c): media types, status codes and
 * error format of the GraphQL-over-HTTP specification.
 */
#include <string.h>

#include "gateway/gqlhttp.h"
#include "test.h"

struct rig {
        mls_gql_schema_t *schema;
        mls_gql_cache_t *cache;
        struct mls_buf body;
        struct mls_gqlhttp_resp resp;
};

static json_t *status_cb(void *opaque, void *ctx, const char *field,
                         json_t *args, char *errstr, size_t errstr_size)
{
        (void)opaque;
        (void)ctx;
        (void)field;
        (void)errstr;
        (void)errstr_size;
        return json_pack("{s:O,s:b,s:n,s:n,s:n,s:i}", "modelId",
                         json_object_get(args, "modelId"), "connected", 0,
                         "lastHeartbeatAt", "averageLatencyMs", "p95LatencyMs",
                         "windowSize", 0);
}

static void run(struct rig *r, const struct mls_gqlhttp_req *req)
{
        char err[256];

        r->schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_schema_set_resolver(r->schema, "Query", "mlStreamingStatus",
                                    status_cb, NULL, err, sizeof(err));
        r->cache = mls_gql_cache_new(r->schema, NULL, 8, err, sizeof(err));
        mls_buf_init(&r->body, 1 << 20);
        mls_gqlhttp_handle(r->cache, req, NULL, &r->body, &r->resp);
}

static const char *text(struct rig *r)
{
        return mls_buf_cstr(&r->body);
}

static void done(struct rig *r)
{
        mls_buf_free(&r->body);
        mls_gql_cache_free(r->cache);
        mls_gql_schema_free(r->schema);
}

static struct mls_gqlhttp_req post(const char *body, const char *accept)
{
        struct mls_gqlhttp_req q;

        memset(&q, 0, sizeof(q));
        q.method = MLS_HTTP_POST;
        q.content_type = "application/json; charset=utf-8";
        q.accept = accept;
        q.body = body;
        q.body_len = strlen(body);
        return q;
}

#define STATUS_Q \
        "{ mlStreamingStatus(modelId: \\\"m\\\") { modelId connected } }"

MLS_TEST(gateway_gqlhttp_post_ok)
{
        struct rig r;
        struct mls_gqlhttp_req q = post("{\"query\":\"" STATUS_Q "\"}", NULL);

        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 200);
        CHECK_STR_EQ(r.resp.content_type, "application/json");
        CHECK_STR_EQ(text(&r), "{\"data\":{\"mlStreamingStatus\":{"
                               "\"modelId\":\"m\",\"connected\":false}}}");
        done(&r);
}

MLS_TEST(gateway_gqlhttp_media_types)
{
        CHECK_STR_EQ(mls_gqlhttp_negotiate(NULL), MLS_GQLHTTP_TYPE_JSON);
        CHECK_STR_EQ(mls_gqlhttp_negotiate("*/*"), MLS_GQLHTTP_TYPE_JSON);
        CHECK_STR_EQ(mls_gqlhttp_negotiate("application/graphql-response+json, "
                                           "application/json;q=0.9"),
                     MLS_GQLHTTP_TYPE_GQL);
        CHECK_STR_EQ(mls_gqlhttp_negotiate("application/json, "
                                           "application/graphql-response+json"
                                           ";q=0.5"),
                     MLS_GQLHTTP_TYPE_JSON);
        CHECK_STR_EQ(mls_gqlhttp_negotiate("text/html,*/*;q=0.8"),
                     MLS_GQLHTTP_TYPE_JSON);
        CHECK(mls_gqlhttp_negotiate("text/html") == NULL);
        CHECK(mls_gqlhttp_negotiate("application/json;q=0") == NULL);
}

MLS_TEST(gateway_gqlhttp_validation_status)
{
        struct rig r;
        struct mls_gqlhttp_req q = post("{\"query\":\"{ nope }\"}",
                                        "application/graphql-response+json");

        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 400);
        CHECK_STR_EQ(r.resp.content_type, MLS_GQLHTTP_TYPE_GQL);
        CHECK_CONTAINS(text(&r), "{\"errors\":[{\"message\":\"Cannot query "
                                 "field \\\"nope\\\" on type \\\"Query\\\".");
        done(&r);
        /* legacy application/json: 200 with the errors */
        q.accept = "application/json";
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 200);
        CHECK_CONTAINS(text(&r), "Cannot query field");
        done(&r);
        /* a syntax error too */
        q = post("{\"query\":\"{\"}", "application/graphql-response+json");
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 400);
        CHECK_CONTAINS(text(&r), "Syntax Error");
        done(&r);
}

MLS_TEST(gateway_gqlhttp_variables)
{
        struct rig r;
        struct mls_gqlhttp_req q = post(
                "{\"query\":\"query($m: String!) { mlStreamingStatus(modelId: "
                "$m) { modelId } }\"}",
                "application/graphql-response+json");

        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 400);
        CHECK_CONTAINS(text(&r), "$m");
        done(&r);
        q = post("{\"query\":\"query($m: String!) { mlStreamingStatus(modelId: "
                 "$m) { modelId } }\",\"variables\":{\"m\":\"v\"},"
                 "\"operationName\":null,\"extensions\":{}}",
                 "application/graphql-response+json");
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 200);
        CHECK_STR_EQ(text(&r),
                     "{\"data\":{\"mlStreamingStatus\":{\"modelId\":\"v\"}}}");
        done(&r);
}

MLS_TEST(gateway_gqlhttp_malformed)
{
        static const char *const bodies[] = {
                "",
                "nope",
                "[]",
                "{}",
                "{\"query\":1}",
                "{\"query\":\"{ __typename }\",\"variables\":[]}",
                "{\"query\":\"{ __typename }\",\"operationName\":1}",
                "{\"query\":\"{ __typename }\",\"extensions\":\"x\"}",
        };

        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
                struct rig r;
                struct mls_gqlhttp_req q = post(bodies[i], NULL);
                run(&r, &q);
                CHECK_INT_EQ(r.resp.status, 400);
                CHECK_CONTAINS(text(&r), "{\"errors\":[{\"message\":");
                done(&r);
        }
}

MLS_TEST(gateway_gqlhttp_methods_and_types)
{
        struct rig r;
        struct mls_gqlhttp_req q = post("{\"query\":\"{ __typename }\"}", NULL);

        q.content_type = "text/plain";
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 415);
        done(&r);
        q.content_type = NULL;
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 415);
        done(&r);
        q = post("{\"query\":\"{ __typename }\"}", "text/html");
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 406);
        done(&r);
        memset(&q, 0, sizeof(q));
        q.method = MLS_HTTP_OTHER;
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 405);
        CHECK_STR_EQ(r.resp.allow, "GET, POST");
        done(&r);
}

MLS_TEST(gateway_gqlhttp_get)
{
        struct rig r;
        struct mls_gqlhttp_req q;

        memset(&q, 0, sizeof(q));
        q.method = MLS_HTTP_GET;
        q.query = "query Q($m: String!) { mlStreamingStatus(modelId: $m) { "
                  "modelId } }";
        q.variables = "{\"m\":\"g\"}";
        q.operation_name = "Q";
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 200);
        CHECK_STR_EQ(text(&r),
                     "{\"data\":{\"mlStreamingStatus\":{\"modelId\":\"g\"}}}");
        done(&r);
        q.variables = "[1]";
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 400);
        done(&r);
        memset(&q, 0, sizeof(q));
        q.method = MLS_HTTP_GET;
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 400);
        done(&r);
        /* subscriptions are not for GET */
        q.query = "subscription { mlInferenceStream(modelId: \"m\") { "
                  "inferenceId } }";
        run(&r, &q);
        CHECK_INT_EQ(r.resp.status, 405);
        CHECK_STR_EQ(r.resp.allow, "POST");
        done(&r);
}
