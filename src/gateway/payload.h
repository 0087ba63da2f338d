/*
 * The monitor's payload normaliser: turns one message from the prediction
 * channel (DESIGN.md section 4) into a prediction event with the GraphQL
 * schema's camelCase field names, a heartbeat, or garbage with a reason.
 *
 * Accepted: snake_case and camelCase keys (snake_case wins when both are
 * present); "type" absent or "prediction" for predictions, "heartbeat" for
 * heartbeats. Required for a prediction: model id (non-empty string, at
 * most MLS_MODEL_ID_MAX bytes), inference id (string or integer),
 * predictions (any JSON but null), latency_ms (finite number >= 0) and
 * received_at (RFC 3339 string or epoch milliseconds). Optional, null when
 * missing: input_id (string or integer), published_at (as received_at;
 * an invalid value becomes null), metadata (any JSON, passed through).
 * model_version (string or null; an empty or over-long string becomes
 * null). Everything else is ignored. A heartbeat's "models" is an array of
 * model ids; items that are not valid model ids are skipped.
 *
 * A prediction is scanned in place, not parsed into a tree, and becomes
 * the JSON text of each field of the event, as a response carries it:
 * strings escaped once, numbers and dates formatted once, "predictions"
 * and "metadata" (arrays or objects) byte for byte as the engine wrote
 * them. A subscription then renders an event by copying texts
 * (mls_gql_sub_render_text()); only a selection that needs the GraphQL
 * executor gets the event as a tree (mls_payload_event()).
 *
 * A heartbeat may also carry "loaded" (one entry per model the engine
 * serves: its versions and counters) and "comparisons" (cumulative
 * serving-vs-shadow statistics); both optional. They need an "engine_id".
 * Entries with a wrong type anywhere are skipped and counted in
 * mls_payload.skipped, and so is each entry past MLS_PAYLOAD_MAX_LOADED or
 * MLS_PAYLOAD_MAX_COMPARISONS; a "loaded" or "comparisons" that is not an
 * array counts once. The rest of the heartbeat stays valid.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_GATEWAY_PAYLOAD_H
#define MLS_GATEWAY_PAYLOAD_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/model_id.h"
#include "graphql/graphql.h"

/* Longest version, framework and engine id kept (bytes); longer ones make
 * their entry invalid. */
#define MLS_PAYLOAD_NAME_MAX 64
#define MLS_PAYLOAD_ENGINE_ID_MAX 256
/* Entries kept from one heartbeat; the rest are skipped. */
#define MLS_PAYLOAD_MAX_LOADED 256
#define MLS_PAYLOAD_MAX_COMPARISONS 64
/* Most bucket bounds in a comparison (counts: one more). */
#define MLS_PAYLOAD_MAX_BUCKETS 64

/* An optional name: name[0] == '\0' when null (empty names are invalid). */
typedef char mls_payload_name_t[MLS_PAYLOAD_NAME_MAX + 1];

/* One item of a heartbeat's "loaded". Numbers are finite and >= 0. */
struct mls_payload_loaded {
        char model_id[MLS_MODEL_ID_MAX + 1];
        mls_payload_name_t framework, serving, canary, shadow;
        double canary_share;        /* NAN: null (no canary) */
        double predictions, errors; /* NAN: absent */
};

/* One item of a heartbeat's "comparisons". Numbers are finite and >= 0;
 * nbuckets 0 when the histogram was absent; bounds ascend. */
struct mls_payload_comparison {
        char model_id[MLS_MODEL_ID_MAX + 1];
        mls_payload_name_t serving, shadow;
        double rows, agreements, abs_diff_sum;
        double serving_seconds, serving_calls, shadow_seconds, shadow_calls;
        unsigned nbuckets; /* bounds; counts has nbuckets + 1 */
        double le[MLS_PAYLOAD_MAX_BUCKETS];
        double counts[MLS_PAYLOAD_MAX_BUCKETS + 1];
};

enum mls_payload_kind {
        MLS_PAYLOAD_GARBAGE,
        MLS_PAYLOAD_PREDICTION,
        MLS_PAYLOAD_HEARTBEAT,
};

/* The fields of a prediction event, as MLStreamingPrediction names them
 * (mls_payload_field_names). */
enum mls_payload_field {
        MLS_PF_INFERENCE_ID,
        MLS_PF_MODEL_ID,
        MLS_PF_INPUT_ID,
        MLS_PF_PREDICTIONS,
        MLS_PF_LATENCY_MS,
        MLS_PF_RECEIVED_AT,
        MLS_PF_PUBLISHED_AT,
        MLS_PF_METADATA,
        MLS_PF_MODEL_VERSION,
        MLS_PF_GAP,
        MLS_PF_COUNT
};

extern const char *const mls_payload_field_names[MLS_PF_COUNT];

struct mls_payload {
        enum mls_payload_kind kind;
        /* prediction: each field's value as the JSON text a response
         * carries (len 0: null), pointing into the payload or into store;
         * event describes them for mls_gql_sub_render_text() */
        struct mls_gql_text text[MLS_PF_COUNT];
        struct mls_gql_text_event fields;
        const char *model_id; /* prediction: NUL-terminated */
        size_t model_id_len;
        const char *inference_id; /* prediction: decoded, not terminated */
        size_t inference_id_len;
        const char *tenant; /* prediction: metadata.tenant, decoded; NULL
                               when absent */
        size_t tenant_len;
        double latency_ms; /* prediction */
        /* prediction: the event as a tree, {"inferenceId", ...}, built by
         * mls_payload_event(); and the gap set by mls_payload_set_gap() */
        json_t *event, *gap;
        struct mls_buf store, gap_text;
        json_t *models; /* heartbeat: array of strings; owned */
        /* heartbeat: engine_id ("" when absent), and the valid entries of
         * "loaded" and "comparisons" (owned arrays; NULL when none) */
        char engine_id[MLS_PAYLOAD_ENGINE_ID_MAX + 1];
        int has_loaded, has_comparisons; /* the fields were arrays */
        struct mls_payload_loaded *loaded;
        size_t nloaded;
        struct mls_payload_comparison *comparisons;
        size_t ncomparisons;
        unsigned skipped; /* heartbeat entries skipped as invalid */
        char reason[160]; /* garbage: why */
};

/* Normalises data[0..len). Payloads over max_len bytes are garbage without
 * being parsed. Always fills *out (kind GARBAGE with a reason on failure);
 * release it with mls_payload_clear(). A prediction borrows data: use it
 * while data lives. Returns out->kind. */
enum mls_payload_kind mls_payload_normalize(const char *data, size_t len,
                                            size_t max_len,
                                            struct mls_payload *out);
void mls_payload_clear(struct mls_payload *p);

/* A prediction's event as a tree, with camelCase keys (and "gap" when
 * set), for the GraphQL executor when mls_gql_sub_render_text() cannot
 * serve a selection: built once, owned by p. NULL when memory runs out. */
json_t *mls_payload_event(struct mls_payload *p);

/* Sets a prediction's "gap" ({"reason","missed","since"}); takes the
 * reference. Returns -1 when memory runs out or gap is NULL (a failed
 * json_pack(), say); gap is released and p has none. */
int mls_payload_set_gap(struct mls_payload *p, json_t *gap);

/* A prediction's metadata.tenant (borrowed from p, *len set), or NULL when
 * metadata is not an object with a string "tenant". */
const char *mls_payload_tenant(const struct mls_payload *p, size_t *len);

/* 1 if s[0..len) is an RFC 3339 date-time ("2026-11-26T23:59:59.123Z",
 * offsets and any number of fraction digits allowed). */
int mls_payload_is_datetime(const char *s, size_t len);

#endif
