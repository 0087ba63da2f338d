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

/*
 * A value that mls_json_write() writes as the JSON text it was made from,
 * byte for byte: how the gateway forwards a prediction's "predictions" and
 * "metadata" without parsing them into a tree. It is a jansson object with
 * one member under a key that holds a NUL byte, which no parsed document
 * and no GraphQL input can produce; other code sees an object.
 *
 * mls_json_raw() returns a new reference, or NULL when memory runs out. The
 * caller guarantees that text[0..len) is one valid JSON value in UTF-8
 * (mls_jscan_value()). mls_json_raw_text() returns the text, or NULL when v
 * is not such a value.
 */
json_t *mls_json_raw(const char *text, size_t len);
const char *mls_json_raw_text(const json_t *v, size_t *len);

#endif
