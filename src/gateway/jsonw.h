/*
 * Writes jansson values as compact JSON into capped buffers, with floats in
 * their shortest round-trip form (jansson's own dump prints 17 digits, so
 * 1.84 would come out as 1.8400000000000001).
 * Threads: any; no shared state.
 */
#ifndef MLS_GATEWAY_JSONW_H
#define MLS_GATEWAY_JSONW_H

#include <jansson.h>

#include "common/buf.h"

/* Appends v. Returns 0, or -1 when out's cap or memory is exhausted (out
 * then holds a partial value; the caller discards it). */
int mls_jsonw_value(struct mls_buf *out, const json_t *v);

#endif
