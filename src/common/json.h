/*
 * The project's one writer of jansson values as JSON text: compact, into a
 * capped struct mls_buf, with reals in their shortest round-trip form
 * (jansson's json_dumps() prints 17 significant digits, so 1.84 would come
 * out as 1.8400000000000001). Strings go through mls_buf_json_str(), so the
 * output is valid UTF-8 whatever the input holds.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_JSON_H
#define MLS_JSON_H

#include <jansson.h>

#include "common/buf.h"

/* Values nested deeper than this are refused (jansson's parser stops at
 * 2048, so only values built in code can get there). */
#define MLS_JSON_WRITE_MAX_DEPTH 4096

/* Appends v to out. Returns 0, or -1 when out's cap or memory runs out or v
 * is nested too deep; out then ends in a partial value that the caller
 * discards. */
int mls_json_write(struct mls_buf *out, const json_t *v);

#endif
