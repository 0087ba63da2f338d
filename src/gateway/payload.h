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
 * Everything else is ignored. A heartbeat's "models" is an array of model
 * ids; items that are not valid model ids are skipped.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_GATEWAY_PAYLOAD_H
#define MLS_GATEWAY_PAYLOAD_H

#include <stddef.h>

#include <jansson.h>

#include "common/model_id.h"

enum mls_payload_kind {
        MLS_PAYLOAD_GARBAGE,
        MLS_PAYLOAD_PREDICTION,
        MLS_PAYLOAD_HEARTBEAT,
};

struct mls_payload {
        enum mls_payload_kind kind;
        /* prediction: {"inferenceId","modelId","inputId","predictions",
         * "latencyMs","receivedAt","publishedAt","metadata"}; owned */
        json_t *event;
        const char *model_id; /* prediction: borrowed from event */
        double latency_ms;    /* prediction */
        json_t *models;       /* heartbeat: array of strings; owned */
        char reason[160];     /* garbage: why */
};

/* Normalises data[0..len). Payloads over max_len bytes are garbage without
 * being parsed. Always fills *out (kind GARBAGE with a reason on failure);
 * release it with mls_payload_clear(). Returns out->kind. */
enum mls_payload_kind mls_payload_normalize(const char *data, size_t len,
                                            size_t max_len,
                                            struct mls_payload *out);
void mls_payload_clear(struct mls_payload *p);

/* 1 if s[0..len) is an RFC 3339 date-time ("2026-11-26T23:59:59.123Z",
 * offsets and any number of fraction digits allowed). */
int mls_payload_is_datetime(const char *s, size_t len);

#endif
