/*
 * UTF-8, once for the project: the validator the JSON string writer, the
 * GraphQL lexer and the decoders use, and the encoder for \u escapes.
 * "Valid" is RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF.
 *
 * Threads: any; no state.
 */
#ifndef MLS_UTF8_H
#define MLS_UTF8_H

#include <stddef.h>

/* The most bytes one code point takes. */
#define MLS_UTF8_MAX 4

/* Length (1-4) of the valid UTF-8 sequence at s, which has n > 0 bytes
 * left, or 0 if it is not valid UTF-8 (overlongs and surrogates refused). */
size_t mls_utf8_len(const unsigned char *s, size_t n);
/* Decodes the sequence at s (n > 0 bytes left): returns its code point and
 * sets *lenp to its length, or returns 0 with *lenp 0 when it is not valid
 * UTF-8. */
unsigned mls_utf8_decode(const unsigned char *s, size_t n, size_t *lenp);
/* Writes code point cp (at most U+10FFFF; callers refuse surrogates) as
 * UTF-8 into out and returns its length, 1-4. */
size_t mls_utf8_encode(unsigned cp, char out[MLS_UTF8_MAX]);

#endif
