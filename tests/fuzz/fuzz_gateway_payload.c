/*
 * libFuzzer target for the monitor's payload normaliser
 * (src/gateway/payload.c) and the monitor itself: any bytes from the
 * prediction channel are a prediction with every required field of the
 * schema, a heartbeat with a list of model ids, or garbage with a reason,
 * and nothing crashes or leaks.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/hub.h"
#include "gateway/monitor.h"
#include "gateway/payload.h"

static mls_monitor_t *monitor;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mls_payload p;
        json_t *ev, *v, *m;
        size_t i;
        char *buf;

        if (!monitor) {
                monitor = mls_monitor_new(8, 64);
                mls_monitor_track_tenants(monitor, 1);
        }
        buf = malloc(size ? size : 1);
        memcpy(buf, data, size);
        switch (mls_payload_normalize(buf, size, 1 << 16, &p)) {
        case MLS_PAYLOAD_PREDICTION:
                ev = p.event;
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
