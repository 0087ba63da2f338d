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
 * A prediction is scanned in place, not parsed into a tree: "predictions"
 * and "metadata", when arrays or objects, go into the event as raw JSON
 * text (mls_json_raw()), validated but byte for byte as the engine wrote
 * them, so rendering them costs a copy. Code that needs a value inside
 * them scans the text (mls_payload_tenant()).
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

#include "common/model_id.h"

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

struct mls_payload {
        enum mls_payload_kind kind;
        /* prediction: {"inferenceId","modelId","inputId","predictions",
         * "latencyMs","receivedAt","publishedAt","metadata",
         * "modelVersion"}; owned */
        json_t *event;
        const char *model_id; /* prediction: borrowed from event */
        json_t *tenant;       /* prediction: metadata.tenant when a string;
                                 owned */
        double latency_ms;    /* prediction */
        json_t *models;       /* heartbeat: array of strings; owned */
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
 * release it with mls_payload_clear(). Returns out->kind. */
enum mls_payload_kind mls_payload_normalize(const char *data, size_t len,
                                            size_t max_len,
                                            struct mls_payload *out);
void mls_payload_clear(struct mls_payload *p);

/* A prediction's metadata.tenant (borrowed from p, *len set), or NULL when
 * metadata is not an object with a string "tenant". */
const char *mls_payload_tenant(const struct mls_payload *p, size_t *len);

/* 1 if s[0..len) is an RFC 3339 date-time ("2026-11-26T23:59:59.123Z",
 * offsets and any number of fraction digits allowed). */
int mls_payload_is_datetime(const char *s, size_t len);

#endif
