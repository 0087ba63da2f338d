/*
 * libFuzzer target for the WebSocket protocol handlers
 * (src/gateway/wsproto.c), both subprotocols, with the real GraphQL engine
 * and hub behind them. The input is a script: its first byte picks the
 * protocol, then messages separated by a 0xff byte follow; between
 * messages a prediction is published to the hub and the clock moves on.
 * Whatever the messages, the session must not crash, must close at most
 * once, must send only valid JSON, and must leave the hub empty when freed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/hub.h"
#include "gateway/payload.h"
#include "gateway/wsproto.h"

struct fake {
        int closes;
        unsigned sent;
};

static void check_json(const char *p, size_t n)
{
        json_error_t e;
        json_t *v = json_loadb(p, n, 0, &e);

        if (!v || !json_is_object(v))
                abort();
        json_decref(v);
}

static int f_send(void *conn, struct mls_frame *msg)
{
        struct fake *f = conn;

        if (f->closes)
                abort(); /* nothing is sent after close */
        check_json(msg->data, msg->len);
        f->sent++;
        return 0;
}

static int f_send_event(void *conn, struct mls_frame *head,
                        struct mls_frame *body)
{
        struct fake *f = conn;
        char *m = malloc(head->len + body->len + 1);

        memcpy(m, head->data, head->len);
        memcpy(m + head->len, body->data, body->len);
        m[head->len + body->len] = '}';
        check_json(m, head->len + body->len + 1);
        free(m);
        f->sent++;
        return f->sent % 3 ? 0 : -1; /* a sometimes-slow client */
}

static void f_close(void *conn, int code, const char *reason)
{
        struct fake *f = conn;

        if ((code < 1000 || code > 4999) || strlen(reason) > 123)
                abort();
        f->closes++;
        if (f->closes > 1)
                abort();
}

static const struct mls_wsproto_ops ops = {
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

static mls_gql_schema_t *schema;
static mls_gql_cache_t *cache;
static mls_auth_t *auth; /* static token "tok", JWTs under a fixed key */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char event[] =
                "{\"inference_id\":\"i\",\"model_id\":\"m\",\"predictions\":"
                "[[1,2]],\"latency_ms\":1.5,\"received_at\":"
                "\"2026-01-01T00:00:00Z\",\"metadata\":{\"a\":1}}";
        struct mls_wsproto_env env;
        struct mls_payload p;
        struct mls_hub_stats st;
        struct fake f = {0};
        mls_wsproto_t *s;
        mls_hub_t *hub;
        int64_t now = 0;
        size_t i = 1;
        char err[256];

        if (!schema) {
                schema = mls_gql_schema_new(err, sizeof(err));
                mls_gql_schema_set_resolver(schema, "Query",
                                            "mlStreamingStatus", status_cb,
                                            NULL, err, sizeof(err));
                cache = mls_gql_cache_new(schema, NULL, 64, err, sizeof(err));
                auth = mls_auth_new(
                        &(struct mls_auth_conf){
                                .tokens = "tok",
                                .jwt_secret =
                                        "fuzz-secret-fuzz-secret-fuzz-sec",
                        },
                        err, sizeof(err));
                if (!auth)
                        abort();
        }
        if (size < 1)
                return 0;
        hub = mls_hub_new(1 << 16, mls_wsproto_deliver, NULL);
        env = (struct mls_wsproto_env){
                .cache = cache,
                .hub = hub,
                .auth = data[0] & 4 ? auth : NULL,
                .max_operations = 4,
                .init_timeout_ms = 1000,
                .keepalive_ms = 500,
                .max_out_bytes = 1 << 16,
        };
        s = mls_wsproto_new(&env, &ops, &f,
                            (enum mls_wsproto_kind)(data[0] % 3), now);
        mls_payload_normalize(event, sizeof(event) - 1, 1 << 16, &p);
        while (i <= size) {
                const uint8_t *end = memchr(data + i, 0xff, size - i);
                size_t n = end ? (size_t)(end - (data + i)) : size - i;
                /* an exact-size copy, so ASan sees any overread */
                char *msg = malloc(n ? n : 1);
                memcpy(msg, data + i, n);
                mls_wsproto_input(s, msg, n, now);
                free(msg);
                mls_hub_publish(hub, "m", i & 1 ? "blue" : NULL, 4, &p);
                now += 300;
                if (mls_wsproto_next_timer(s) >= 0 &&
                    mls_wsproto_next_timer(s) <= now)
                        mls_wsproto_timer(s, now);
                i += n + 1;
        }
        mls_payload_clear(&p);
        if (mls_wsproto_closed(s) != (f.closes == 1))
                abort();
        mls_wsproto_free(s);
        mls_hub_stats(hub, &st);
        if (st.members || st.groups || st.models)
                abort();
        mls_hub_free(hub);
        return 0;
}
