/*
 * A strict JSON scanner (RFC 8259) that validates text in place and reports
 * where the members of an object are, without building values. The gateway
 * reads each prediction payload with it: a few top-level fields are decoded,
 * and the rest (predictions, metadata) is forwarded to subscribers as the
 * bytes the engine wrote, so a payload is never parsed into a tree and
 * printed again.
 *
 * What it accepts is what jansson's json_loadb(text, len, 0) accepts, so
 * that the rest of the project can still use jansson for the same text:
 * well-formed UTF-8 only, no "\u0000", no lone surrogate escape, nesting up
 * to MLS_JSCAN_MAX_DEPTH, nothing but whitespace after the value. Unlike
 * jansson it does not look at the magnitude of numbers, and it refuses a
 * NUL byte wherever it is (jansson reads some inputs only up to one).
 *
 * Threads: any; no shared state. Nothing is allocated.
 */
#ifndef MLS_JSCAN_H
#define MLS_JSCAN_H

#include <stddef.h>

/* Deepest nesting of arrays and objects accepted (jansson's limit). */
#define MLS_JSCAN_MAX_DEPTH 2048

enum mls_jscan_type {
        MLS_JSCAN_NULL,
        MLS_JSCAN_FALSE,
        MLS_JSCAN_TRUE,
        MLS_JSCAN_NUMBER,
        MLS_JSCAN_STRING,
        MLS_JSCAN_ARRAY,
        MLS_JSCAN_OBJECT,
};

/* A value inside the scanned text. p/len span its JSON text; for strings,
 * the bytes between the quotes, escapes undecoded. */
struct mls_jscan_span {
        const char *p;
        size_t len;
        enum mls_jscan_type type;
        int escaped;  /* strings: holds a backslash escape */
        int integral; /* numbers: no fraction and no exponent */
};

/* Called for each member of an object, in order; a non-zero return stops
 * the scan and is returned by mls_jscan_object(). */
typedef int (*mls_jscan_member_fn)(void *opaque,
                                   const struct mls_jscan_span *key,
                                   const struct mls_jscan_span *value);

/* Validates text[0..len) as one JSON object (whitespace around it allowed)
 * and calls fn for each member; fn may be NULL to validate only. Returns 0,
 * -1 when the text is not valid JSON or not an object (with the byte offset
 * of the fault in *where when where is not NULL), or fn's non-zero return.
 * Members are reported as they are met, so fn may have been called before
 * a fault further on is found. */
int mls_jscan_object(const char *text, size_t len, mls_jscan_member_fn fn,
                     void *opaque, size_t *where);

/* Validates text[0..len) as one JSON value of any type and describes it in
 * *out (whitespace around it stripped). Returns 0 or -1 as above. */
int mls_jscan_value(const char *text, size_t len, struct mls_jscan_span *out,
                    size_t *where);

/* The JSON number (RFC 8259 grammar) at the start of text[0..len): 0 with
 * its length in *n (and in *integral, when not NULL, whether it has no
 * fraction and no exponent), or -1 with the offset of the fault in *n. What
 * follows the number is not looked at. */
int mls_jscan_number(const char *text, size_t len, size_t *n, int *integral);

/* Decodes a string span into out (UTF-8, NUL-terminated), at most cap - 1
 * bytes. Returns the decoded length, or -1 when it does not fit. The span
 * must come from this scanner (escapes already validated). */
long mls_jscan_string(const struct mls_jscan_span *s, char *out, size_t cap);

/* True when span is a string whose decoded text equals the NUL-terminated
 * name. */
int mls_jscan_string_is(const struct mls_jscan_span *s, const char *name);

#endif
