/*
 * libFuzzer target for the monitor's payload normaliser
 * (src/gateway/payload.c) and the monitor itself: any bytes from the
 * prediction channel are a prediction with every required field of the
 * schema, a heartbeat with a list of model ids, or garbage with a reason,
 * and nothing crashes or leaks. A prediction rendered from its texts
 * (mls_gql_sub_render_text()) is byte for byte what the GraphQL executor
 * writes for its tree.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/hub.h"
#include "gateway/monitor.h"
#include "gateway/payload.h"
#include "graphql/graphql.h"

static mls_monitor_t *monitor;
static mls_gql_sub_t *sub;

/* Every field of a prediction, one of them twice under an alias. */
static void subscribe(void)
{
        static const char q[] =
                "subscription { mlInferenceStream(modelId: \"m\") { "
                "__typename inferenceId modelId inputId predictions "
                "latencyMs receivedAt publishedAt metadata modelVersion "
                "gap { reason } again: inferenceId } }";
        char err[128];
        mls_gql_schema_t *schema = mls_gql_schema_new(err, sizeof(err));
        mls_gql_cache_t *cache =
                mls_gql_cache_new(schema, NULL, 4, err, sizeof(err));
        json_t *errors = NULL;
        mls_gql_doc_t *doc =
                mls_gql_cache_get(cache, q, sizeof(q) - 1, &errors);

        sub = mls_gql_sub_prepare(doc, NULL, NULL, &errors);
        if (!sub)
                abort();
        /* the schema outlives the fuzzer's run, as the subscription needs */
        mls_gql_doc_unref(doc);
        mls_gql_cache_free(cache);
}

static void same_render(struct mls_payload *p)
{
        const struct mls_gql_text_event ev = {mls_payload_field_names, p->text,
                                              MLS_PF_COUNT};
        struct mls_buf text, tree;

        mls_buf_init(&text, 1 << 20);
        mls_buf_init(&tree, 1 << 20);
        if (mls_gql_sub_render_text(sub, &ev, &text) != 1 ||
            mls_gql_sub_render(sub, mls_payload_event(p), &tree) < 0 ||
            text.len != tree.len || memcmp(text.data, tree.data, text.len))
                abort();
        mls_buf_free(&text);
        mls_buf_free(&tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mls_payload p;
        json_t *ev, *v, *m;
        size_t i;
        char *buf;

        if (!monitor) {
                monitor = mls_monitor_new(8, 64);
                mls_monitor_track_tenants(monitor, 1);
                subscribe();
        }
        buf = malloc(size ? size : 1);
        memcpy(buf, data, size);
        switch (mls_payload_normalize(buf, size, 1 << 16, &p)) {
        case MLS_PAYLOAD_PREDICTION:
                ev = mls_payload_event(&p);
                if (!json_is_object(ev) || !p.model_id || !*p.model_id ||
                    strlen(p.model_id) > MLS_MODEL_ID_MAX ||
                    !json_is_string(json_object_get(ev, "inferenceId")) ||
                    !json_is_string(json_object_get(ev, "modelId")) ||
                    json_is_null(json_object_get(ev, "predictions")) ||
                    !json_object_get(ev, "predictions") ||
                    !(p.latency_ms >= 0) || !isfinite(p.latency_ms))
                        abort();
                v = json_object_get(ev, "receivedAt");
                if (!json_is_string(v) ||
                    !mls_payload_is_datetime(json_string_value(v),
                                             json_string_length(v)))
                        abort();
                v = json_object_get(ev, "publishedAt");
                if (!json_is_null(v) &&
                    !(json_is_string(v) &&
                      mls_payload_is_datetime(json_string_value(v),
                                              json_string_length(v))))
                        abort();
                v = json_object_get(ev, "inputId");
                if (!json_is_null(v) && !json_is_string(v))
                        abort();
                same_render(&p);
                {
                        size_t tlen = 0;
                        const char *t = mls_payload_tenant(&p, &tlen);
                        mls_monitor_prediction(monitor, p.model_id, t, tlen,
                                               p.latency_ms, 1);
                }
                break;
        case MLS_PAYLOAD_HEARTBEAT:
                json_array_foreach(p.models, i, m)
                {
                        if (!json_is_string(m) || !json_string_length(m))
                                abort();
                        mls_monitor_heartbeat(monitor, json_string_value(m), 2);
                }
                break;
        default:
                if (!p.reason[0] || p.event || p.models)
                        abort();
        }
        mls_payload_clear(&p);
        v = mls_monitor_status(monitor, "m", NULL);
        json_decref(v);
        {
                static const char *const names[2] = {"blue-team", "red"};
                static const size_t lens[2] = {9, 3};
                const char *why;
                mls_tenants_t *t = mls_tenants_new(names, lens, 2, &why);
                v = mls_monitor_status(monitor, "m", t);
                json_decref(v);
                mls_tenants_unref(t);
        }
        free(buf);
        return 0;
}
