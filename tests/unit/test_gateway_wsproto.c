/*
 * The WebSocket protocol state machines (src/gateway/wsproto.c) against a
 * fake connection that records what the session sends and how it closes,
 * with the real GraphQL engine and fan-out hub behind them.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/hub.h"
#include "gateway/payload.h"
#include "gateway/wsproto.h"
#include "test.h"

#define MAX_SENT 64

struct fake {
        char *sent[MAX_SENT];
        int nsent;
        int close_code; /* 0: open */
        char close_reason[128];
        int full; /* send_event refuses (slow client) */
        int dropped;
};

struct rig {
        mls_gql_schema_t *schema;
        mls_gql_cache_t *cache;
        mls_hub_t *hub;
        mls_auth_t *auth;
        struct mls_wsproto_env env;
        struct fake conn;
        mls_wsproto_t *s;
};

static int f_send(void *conn, struct mls_frame *msg)
{
        struct fake *f = conn;

        if (f->nsent < MAX_SENT)
                f->sent[f->nsent++] = strndup(msg->data, msg->len);
        return 0;
}

static int f_send_event(void *conn, struct mls_frame *head,
                        struct mls_frame *body)
{
        struct fake *f = conn;
        char *m;

        if (f->full) {
                f->dropped++;
                return -1;
        }
        m = malloc(head->len + body->len + 2);
        memcpy(m, head->data, head->len);
        memcpy(m + head->len, body->data, body->len);
        m[head->len + body->len] = '}';
        m[head->len + body->len + 1] = '\0';
        if (f->nsent < MAX_SENT)
                f->sent[f->nsent++] = m;
        else
                free(m);
        return 0;
}

static void f_close(void *conn, int code, const char *reason)
{
        struct fake *f = conn;

        f->close_code = code;
        snprintf(f->close_reason, sizeof(f->close_reason), "%s", reason);
}

static const struct mls_wsproto_ops fake_ops = {
        .send = f_send,
        .send_event = f_send_event,
        .close = f_close,
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
                         json_object_get(args, "modelId"), "connected", 1,
                         "lastHeartbeatAt", "averageLatencyMs", "p95LatencyMs",
                         "windowSize", 0);
}

static void rig_init(struct rig *r, enum mls_wsproto_kind kind,
                     const char *token)
{
        char err[256];

        memset(r, 0, sizeof(*r));
        r->schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_schema_set_resolver(r->schema, "Query", "mlStreamingStatus",
                                    status_cb, NULL, err, sizeof(err));
        r->cache = mls_gql_cache_new(r->schema, NULL, 16, err, sizeof(err));
        r->hub = mls_hub_new(1 << 20, mls_wsproto_deliver, NULL);
        r->auth = mls_auth_new(&(struct mls_auth_conf){.token = token}, err,
                               sizeof(err));
        r->env = (struct mls_wsproto_env){
                .cache = r->cache,
                .hub = r->hub,
                .auth = r->auth,
                .max_operations = 3,
                .init_timeout_ms = 3000,
                .keepalive_ms = 10000,
                .max_out_bytes = 1 << 20,
        };
        r->s = mls_wsproto_new(&r->env, &fake_ops, &r->conn, kind, 1000);
}

static void rig_free(struct rig *r)
{
        mls_wsproto_free(r->s);
        mls_hub_free(r->hub);
        mls_auth_free(r->auth);
        mls_gql_cache_free(r->cache);
        mls_gql_schema_free(r->schema);
        for (int i = 0; i < r->conn.nsent; i++)
                free(r->conn.sent[i]);
}

static void in(struct rig *r, const char *msg)
{
        mls_wsproto_input(r->s, msg, strlen(msg), 1000);
}

static const char *last(struct rig *r)
{
        return r->conn.nsent ? r->conn.sent[r->conn.nsent - 1] : "";
}

/* Publishes a normalised prediction for model through the hub. */
static size_t publish(struct rig *r, const char *model, const char *iid)
{
        char buf[512];
        struct mls_payload p;
        size_t n;

        snprintf(buf, sizeof(buf),
                 "{\"inference_id\":\"%s\",\"model_id\":\"%s\","
                 "\"predictions\":[[1]],\"latency_ms\":1.5,"
                 "\"received_at\":\"2026-01-01T00:00:00Z\"}",
                 iid, model);
        if (mls_payload_normalize(buf, strlen(buf), 1 << 20, &p) !=
            MLS_PAYLOAD_PREDICTION)
                return (size_t)-1;
        n = mls_hub_publish(r->hub, p.model_id, NULL, 0, &p);
        mls_payload_clear(&p);
        return n;
}

#define SUB(id, model)                                                      \
        "{\"id\":\"" id "\",\"type\":\"subscribe\",\"payload\":{\"query\":" \
        "\"subscription { mlInferenceStream(modelId: \\\"" model            \
        "\\\") { inferenceId latencyMs } }\"}}"

/* --- graphql-transport-ws ------------------------------------------------ */

MLS_TEST(gateway_wsproto_ack_ping_pong)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"ping\",\"payload\":{\"x\":1}}");
        CHECK_STR_EQ(last(&r), "{\"type\":\"pong\",\"payload\":{\"x\":1}}");
        in(&r, "{\"type\":\"connection_init\",\"payload\":{}}");
        CHECK_STR_EQ(last(&r), "{\"type\":\"connection_ack\"}");
        in(&r, "{\"type\":\"ping\"}");
        CHECK_STR_EQ(last(&r), "{\"type\":\"pong\"}");
        in(&r, "{\"type\":\"pong\"}");
        CHECK_INT_EQ(r.conn.nsent, 3);
        CHECK_INT_EQ(r.conn.close_code, 0);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), -1);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_init_timeout)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 4000);
        mls_wsproto_timer(r.s, 3999);
        CHECK_INT_EQ(r.conn.close_code, 0);
        mls_wsproto_timer(r.s, 4000);
        CHECK_INT_EQ(r.conn.close_code, 4408);
        CHECK_STR_EQ(r.conn.close_reason, "Connection initialisation timeout");
        CHECK(mls_wsproto_closed(r.s));
        rig_free(&r);
}

/* Refusals say why in the close reason (and never quote the credential). */
MLS_TEST(gateway_wsproto_refusal_reasons)
{
        static const struct {
                const char *init;
                const char *reason;
        } cases[] = {
                {"{\"type\":\"connection_init\"}",
                 "Forbidden: missing credential"},
                {"{\"type\":\"connection_init\",\"payload\":{}}",
                 "Forbidden: missing credential"},
                {"{\"type\":\"connection_init\",\"payload\":{"
                 "\"Authorization\":\"Bearer wrong-token\"}}",
                 "Forbidden: invalid credential"},
                {"{\"type\":\"connection_init\",\"payload\":{"
                 "\"token\":42}}",
                 "Forbidden: invalid credential"},
        };
        struct rig r;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                for (int legacy = 0; legacy < 2; legacy++) {
                        rig_init(&r,
                                 legacy ? MLS_WSPROTO_LEGACY
                                        : MLS_WSPROTO_TRANSPORT,
                                 "s3cret-s3cret-s3cret");
                        in(&r, cases[i].init);
                        CHECK_INT_EQ(r.conn.close_code, 4403);
                        CHECK_STR_EQ(r.conn.close_reason, cases[i].reason);
                        CHECK(strstr(r.conn.close_reason, "wrong") == NULL);
                        rig_free(&r);
                }
        }
        /* a refused upgrade header, good payload: still refused, and why */
        rig_init(&r, MLS_WSPROTO_TRANSPORT, "s3cret-s3cret-s3cret");
        mls_wsproto_upgrade_auth(r.s, "Bearer nope");
        in(&r, "{\"type\":\"connection_init\",\"payload\":{"
               "\"Authorization\":\"Bearer s3cret-s3cret-s3cret\"}}");
        CHECK_INT_EQ(r.conn.close_code, 4403);
        CHECK_STR_EQ(r.conn.close_reason, "Forbidden: invalid credential");
        rig_free(&r);
        CHECK_STR_EQ(mls_auth_result_close_reason(MLS_AUTH_EXPIRED),
                     "Forbidden: token expired");
        CHECK_STR_EQ(mls_auth_result_close_reason(MLS_AUTH_NOT_YET_VALID),
                     "Forbidden: token not yet valid");
        CHECK_STR_EQ(mls_auth_result_close_reason(MLS_AUTH_NO_TENANT_CLAIM),
                     "Forbidden: token has no tenant claim");
}

MLS_TEST(gateway_wsproto_too_many_init)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, "{\"type\":\"connection_init\"}");
        CHECK_INT_EQ(r.conn.close_code, 4429);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_subscribe_before_ack)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, SUB("1", "m"));
        CHECK_INT_EQ(r.conn.close_code, 4401);
        CHECK_STR_EQ(r.conn.close_reason, "Unauthorized");
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_bad_messages)
{
        static const char *const bad[] = {
                "not json",
                "[]",
                "{}",
                "{\"type\":1}",
                "{\"type\":\"nope\"}",
                "{\"type\":\"connection_init\",\"payload\":\"x\"}",
                "{\"type\":\"subscribe\",\"id\":\"\",\"payload\":{"
                "\"query\":\"{a}\"}}",
                "{\"type\":\"subscribe\",\"id\":1,\"payload\":{\"query\":"
                "\"{a}\"}}",
                "{\"type\":\"subscribe\",\"id\":\"1\",\"payload\":{}}",
                "{\"type\":\"subscribe\",\"id\":\"1\",\"payload\":{\"query\":"
                "\"{a}\",\"variables\":[]}}",
                "{\"type\":\"subscribe\",\"id\":\"1\",\"payload\":{\"query\":"
                "\"{a}\",\"operationName\":3}}",
                "{\"type\":\"complete\"}",
                "{\"type\":\"next\",\"id\":\"1\"}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct rig r;
                rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
                in(&r, "{\"type\":\"connection_init\"}");
                in(&r, bad[i]);
                if (r.conn.close_code != 4400)
                        fprintf(stderr, "    message %zu: %s\n", i, bad[i]);
                CHECK_INT_EQ(r.conn.close_code, 4400);
                CHECK_STR_EQ(r.conn.close_reason, "Invalid message received");
                rig_free(&r);
        }
}

MLS_TEST(gateway_wsproto_unexpected_server_message)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, "{\"type\":\"next\",\"id\":\"1\",\"payload\":{}}");
        CHECK_INT_EQ(r.conn.close_code, 4500);
        CHECK_STR_EQ(r.conn.close_reason,
                     "Unexpected message of type next received");
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_subscribe_deliver_complete)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, SUB("a", "m1"));
        CHECK_INT_EQ(r.conn.close_code, 0);
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 1);
        CHECK_INT_EQ(publish(&r, "m2", "x"), 0);
        CHECK_INT_EQ(publish(&r, "m1", "i1"), 1);
        CHECK_STR_EQ(last(&r),
                     "{\"id\":\"a\",\"type\":\"next\",\"payload\":{\"data\":{"
                     "\"mlInferenceStream\":{\"inferenceId\":\"i1\","
                     "\"latencyMs\":1.5}}}}");
        in(&r, "{\"type\":\"complete\",\"id\":\"a\"}");
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 0);
        CHECK_INT_EQ(publish(&r, "m1", "i2"), 0);
        /* completing an unknown id is fine */
        in(&r, "{\"type\":\"complete\",\"id\":\"zz\"}");
        CHECK_INT_EQ(r.conn.close_code, 0);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_duplicate_id)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, SUB("dup", "m1"));
        in(&r, SUB("dup", "m1"));
        CHECK_INT_EQ(r.conn.close_code, 4409);
        CHECK_STR_EQ(r.conn.close_reason, "Subscriber for dup already exists");
        /* closing left the hub */
        CHECK_INT_EQ(publish(&r, "m1", "i"), 0);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_errors_before_execution)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, "{\"id\":\"s\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"subscription {\"}}");
        CHECK_CONTAINS(last(&r), "{\"id\":\"s\",\"type\":\"error\","
                                 "\"payload\":[{\"message\":\"Syntax Error");
        in(&r, "{\"id\":\"v\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"{ nope }\"}}");
        CHECK_CONTAINS(last(&r), "\"type\":\"error\"");
        CHECK_CONTAINS(last(&r), "Cannot query field");
        /* missing variable: an execution result, then complete */
        in(&r, "{\"id\":\"w\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"subscription($m: String!) { mlInferenceStream(modelId: $m) "
               "{ inferenceId } }\"}}");
        CHECK_STR_EQ(last(&r), "{\"id\":\"w\",\"type\":\"complete\"}");
        CHECK_CONTAINS(r.conn.sent[r.conn.nsent - 2],
                       "{\"id\":\"w\",\"type\":\"next\",\"payload\":{"
                       "\"errors\":");
        CHECK_CONTAINS(r.conn.sent[r.conn.nsent - 2], "$m");
        in(&r, "{\"id\":\"o\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"query A { __typename } query B { __typename }\","
               "\"operationName\":\"C\"}}");
        CHECK_CONTAINS(last(&r), "{\"id\":\"o\",\"type\":\"error\"");
        CHECK_CONTAINS(last(&r), "Unknown operation named");
        CHECK_INT_EQ(r.conn.close_code, 0);
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 0);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_query_over_ws)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, "{\"id\":\"q\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"query($m: String!) { mlStreamingStatus(modelId: $m) { "
               "modelId connected } }\",\"variables\":{\"m\":\"x\"}}}");
        CHECK_STR_EQ(r.conn.sent[r.conn.nsent - 2],
                     "{\"id\":\"q\",\"type\":\"next\",\"payload\":{\"data\":{"
                     "\"mlStreamingStatus\":{\"modelId\":\"x\",\"connected\":"
                     "true}}}}");
        CHECK_STR_EQ(last(&r), "{\"id\":\"q\",\"type\":\"complete\"}");
        /* the id is free again at once */
        in(&r, "{\"id\":\"q\",\"type\":\"subscribe\",\"payload\":{\"query\":"
               "\"{ __typename }\"}}");
        CHECK_INT_EQ(r.conn.close_code, 0);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_operation_limit)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, NULL);
        in(&r, "{\"type\":\"connection_init\"}");
        in(&r, SUB("1", "m"));
        in(&r, SUB("2", "m"));
        in(&r, SUB("3", "m"));
        in(&r, SUB("4", "m"));
        CHECK_CONTAINS(last(&r), "{\"id\":\"4\",\"type\":\"error\"");
        CHECK_CONTAINS(last(&r), "Too many operations");
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 3);
        CHECK_INT_EQ(publish(&r, "m", "i"), 3);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_shared_groups)
{
        struct rig a;
        struct mls_hub_stats st;
        struct mls_wsproto_env env2;
        mls_wsproto_t *s2;
        struct fake conn2;

        /* two sessions on one hub: the same document shares a group */
        rig_init(&a, MLS_WSPROTO_TRANSPORT, NULL);
        memset(&conn2, 0, sizeof(conn2));
        env2 = a.env;
        s2 = mls_wsproto_new(&env2, &fake_ops, &conn2, MLS_WSPROTO_LEGACY, 0);
        in(&a, "{\"type\":\"connection_init\"}");
        in(&a, SUB("x", "m"));
        mls_wsproto_input(s2, "{\"type\":\"connection_init\"}", 26, 0);
        {
                const char *start =
                        "{\"id\":7,\"type\":\"start\",\"payload\":{\"query\":"
                        "\"subscription { mlInferenceStream(modelId: "
                        "\\\"m\\\") { inferenceId latencyMs } }\"}}";
                mls_wsproto_input(s2, start, strlen(start), 0);
        }
        mls_hub_stats(a.hub, &st);
        CHECK_INT_EQ(st.members, 2);
        CHECK_INT_EQ(st.groups, 1);
        CHECK_INT_EQ(publish(&a, "m", "i9"), 2);
        CHECK_CONTAINS(last(&a), "{\"id\":\"x\",\"type\":\"next\"");
        CHECK_STR_EQ(conn2.sent[conn2.nsent - 1],
                     "{\"id\":7,\"type\":\"data\",\"payload\":{\"data\":{"
                     "\"mlInferenceStream\":{\"inferenceId\":\"i9\","
                     "\"latencyMs\":1.5}}}}");
        /* a slow client loses events, the other does not */
        conn2.full = 1;
        CHECK_INT_EQ(publish(&a, "m", "i10"), 2);
        CHECK_INT_EQ(conn2.dropped, 1);
        CHECK_CONTAINS(last(&a), "i10");
        mls_wsproto_free(s2);
        for (int i = 0; i < conn2.nsent; i++)
                free(conn2.sent[i]);
        mls_hub_stats(a.hub, &st);
        CHECK_INT_EQ(st.members, 1);
        rig_free(&a);
}

MLS_TEST(gateway_wsproto_auth)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_TRANSPORT, "s3cret");
        in(&r, "{\"type\":\"connection_init\",\"payload\":{\"authorization\":"
               "\"Bearer nope\"}}");
        CHECK_INT_EQ(r.conn.close_code, 4403);
        rig_free(&r);
        rig_init(&r, MLS_WSPROTO_TRANSPORT, "s3cret");
        in(&r, "{\"type\":\"connection_init\",\"payload\":{\"authorization\":"
               "\"Bearer s3cret\"}}");
        CHECK_STR_EQ(last(&r), "{\"type\":\"connection_ack\"}");
        rig_free(&r);
        rig_init(&r, MLS_WSPROTO_LEGACY, "s3cret");
        in(&r, "{\"type\":\"connection_init\",\"payload\":{\"token\":"
               "\"wrong\"}}");
        CHECK_CONTAINS(last(&r), "\"type\":\"connection_error\"");
        CHECK_INT_EQ(r.conn.close_code, 4403);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_no_subprotocol)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_NONE, NULL);
        CHECK_INT_EQ(r.conn.close_code, 4406);
        in(&r, "{\"type\":\"connection_init\"}");
        CHECK_INT_EQ(r.conn.nsent, 0);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_select)
{
        const char *a = "graphql-ws, graphql-transport-ws";
        const char *b = "graphql-ws";
        const char *c = "foo,bar";

        CHECK_INT_EQ(mls_wsproto_select(a, strlen(a)), MLS_WSPROTO_TRANSPORT);
        CHECK_INT_EQ(mls_wsproto_select(b, strlen(b)), MLS_WSPROTO_LEGACY);
        CHECK_INT_EQ(mls_wsproto_select(c, strlen(c)), MLS_WSPROTO_NONE);
        CHECK_INT_EQ(mls_wsproto_select("graphql-wsx", 11), MLS_WSPROTO_NONE);
        CHECK_INT_EQ(mls_wsproto_select(NULL, 0), MLS_WSPROTO_NONE);
}

/* --- legacy graphql-ws ---------------------------------------------------- */

MLS_TEST(gateway_wsproto_legacy_flow)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        /* the init timeout, until connection_init */
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 4000);
        in(&r, "{\"type\":\"connection_init\",\"payload\":{}}");
        CHECK_STR_EQ(r.conn.sent[0], "{\"type\":\"connection_ack\"}");
        CHECK_STR_EQ(r.conn.sent[1], "{\"type\":\"ka\"}");
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 11000);
        mls_wsproto_timer(r.s, 11000);
        CHECK_STR_EQ(last(&r), "{\"type\":\"ka\"}");
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 21000);
        in(&r, "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "
               "inferenceId } }\"}}");
        CHECK_INT_EQ(publish(&r, "m", "e1"), 1);
        CHECK_STR_EQ(last(&r), "{\"id\":\"1\",\"type\":\"data\",\"payload\":{"
                               "\"data\":{\"mlInferenceStream\":{"
                               "\"inferenceId\":\"e1\"}}}}");
        /* a start for a live id replaces it */
        in(&r, "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "
               "inferenceId } }\"}}");
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 1);
        in(&r, "{\"id\":\"1\",\"type\":\"stop\"}");
        CHECK_STR_EQ(last(&r), "{\"id\":\"1\",\"type\":\"complete\"}");
        CHECK_INT_EQ(publish(&r, "m", "e2"), 0);
        in(&r, "{\"type\":\"connection_terminate\"}");
        CHECK_INT_EQ(r.conn.close_code, 1000);
        rig_free(&r);
}

/* Legacy sessions get the init timeout too: connection_error, then 4408;
 * connection_init (or, with auth off, an accepted start) stops it. */
MLS_TEST(gateway_wsproto_legacy_init_timeout)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 4000);
        mls_wsproto_timer(r.s, 3999);
        CHECK_INT_EQ(r.conn.close_code, 0);
        mls_wsproto_timer(r.s, 4000);
        CHECK_INT_EQ(r.conn.close_code, 4408);
        CHECK_STR_EQ(r.conn.close_reason, "Connection initialisation timeout");
        CHECK_STR_EQ(last(&r), "{\"type\":\"connection_error\",\"payload\":{"
                               "\"message\":\"Connection initialisation "
                               "timeout\"}}");
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), -1);
        rig_free(&r);

        /* with auth on, a refused start does not stop the clock */
        rig_init(&r, MLS_WSPROTO_LEGACY, "s3cret-s3cret-s3cret");
        in(&r, "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"{ __typename }\"}}");
        CHECK_CONTAINS(last(&r), "Unauthorized");
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 4000);
        mls_wsproto_timer(r.s, 4000);
        CHECK_INT_EQ(r.conn.close_code, 4408);
        rig_free(&r);

        /* connection_init in time: only keep-alives remain */
        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        mls_wsproto_input(r.s, "{\"type\":\"connection_init\"}", 26, 3500);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), 13500);
        mls_wsproto_timer(r.s, 4000);
        CHECK_INT_EQ(r.conn.close_code, 0);
        rig_free(&r);

        /* auth off: a start without connection_init is served, as by the
         * reference server, and the session is in use */
        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        in(&r, "{\"id\":\"1\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"subscription { mlInferenceStream(modelId: \\\"m\\\") { "
               "inferenceId } }\"}}");
        CHECK_INT_EQ(mls_wsproto_operations(r.s), 1);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), -1);
        mls_wsproto_timer(r.s, 5000);
        CHECK_INT_EQ(r.conn.close_code, 0);
        rig_free(&r);

        /* GATEWAY_INIT_TIMEOUT_MS=0: no limit */
        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        mls_wsproto_free(r.s);
        r.env.init_timeout_ms = 0;
        r.s = mls_wsproto_new(&r.env, &fake_ops, &r.conn, MLS_WSPROTO_LEGACY,
                              1000);
        CHECK_INT_EQ(mls_wsproto_next_timer(r.s), -1);
        rig_free(&r);
}

MLS_TEST(gateway_wsproto_legacy_errors)
{
        struct rig r;

        rig_init(&r, MLS_WSPROTO_LEGACY, NULL);
        in(&r, "nope");
        CHECK_CONTAINS(last(&r), "{\"type\":\"connection_error\","
                                 "\"payload\":{\"message\":");
        in(&r, "{\"id\":\"2\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"{\"}}");
        CHECK_CONTAINS(last(&r), "{\"id\":\"2\",\"type\":\"error\","
                                 "\"payload\":{\"message\":\"Syntax Error");
        in(&r, "{\"id\":\"3\",\"type\":\"start\",\"payload\":{\"query\":"
               "\"{ nope }\"}}");
        CHECK_STR_EQ(last(&r), "{\"id\":\"3\",\"type\":\"complete\"}");
        CHECK_CONTAINS(r.conn.sent[r.conn.nsent - 2],
                       "{\"id\":\"3\",\"type\":\"data\",\"payload\":{"
                       "\"errors\":[{\"message\":\"Cannot query field");
        in(&r, "{\"id\":\"4\",\"type\":\"bogus\"}");
        CHECK_STR_EQ(last(&r), "{\"id\":\"4\",\"type\":\"error\",\"payload\":"
                               "{\"message\":\"Invalid message type!\"}}");
        /* a query answers with data + complete */
        in(&r, "{\"id\":5,\"type\":\"start\",\"payload\":{\"query\":"
               "\"{ mlStreamingStatus(modelId: \\\"q\\\") { modelId } }\"}}");
        CHECK_STR_EQ(r.conn.sent[r.conn.nsent - 2],
                     "{\"id\":5,\"type\":\"data\",\"payload\":{\"data\":{"
                     "\"mlStreamingStatus\":{\"modelId\":\"q\"}}}}");
        CHECK_STR_EQ(last(&r), "{\"id\":5,\"type\":\"complete\"}");
        CHECK_INT_EQ(r.conn.close_code, 0);
        rig_free(&r);
}
