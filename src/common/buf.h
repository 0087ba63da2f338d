/*
 * A growable byte buffer with a hard cap set when it is created, for every
 * buffer that network input or output can grow.
 * Not thread-safe; a buffer belongs to one thread at a time.
 */
#ifndef MLS_BUF_H
#define MLS_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/utf8.h" /* for buf users that also scan UTF-8 */

struct mls_buf {
        char *data;
        size_t len;
        size_t cap;   /* allocated bytes */
        size_t limit; /* never grows past this */
        int overflow; /* set when an append was refused */
};

/* Initialises an empty buffer that may grow up to limit bytes. */
void mls_buf_init(struct mls_buf *b, size_t limit);
/* Frees the storage; the buffer may be initialised again. */
void mls_buf_free(struct mls_buf *b);
static inline void mls_buf_reset(struct mls_buf *b)
{
        b->len = 0;
        b->overflow = 0;
}
/* Makes room for n more bytes. Returns -1 (and sets overflow) past the limit
 * or when memory runs out. */
int mls_buf_reserve(struct mls_buf *b, size_t n);
int mls_buf__append_slow(struct mls_buf *b, const void *p, size_t n);
/* Appends n bytes. Returns -1 (and sets overflow) past the limit. Inline,
 * since payload formatting appends many short pieces. */
static inline int mls_buf_append(struct mls_buf *b, const void *p, size_t n)
{
        if (b->len + n + 1 <= b->cap) {
                __builtin_memcpy(b->data + b->len, p, n);
                b->len += n;
                return 0;
        }
        return mls_buf__append_slow(b, p, n);
}
static inline int mls_buf_putc(struct mls_buf *b, char c)
{
        return mls_buf_append(b, &c, 1);
}
int mls_buf_puts(struct mls_buf *b, const char *s);
/* Appends a string literal without measuring it at run time. */
#define MLS_BUF_LIT(b, lit) mls_buf_append((b), (lit), sizeof(lit) - 1)
int mls_buf_printf(struct mls_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. Invalid UTF-8 is
 * replaced by U+FFFD so the output is always valid JSON. */
int mls_buf_json_str(struct mls_buf *b, const char *s, size_t n);
/* Appends a float in the shortest form that reads back as the same float,
 * or null for NaN and infinities. */
int mls_buf_json_float(struct mls_buf *b, float v);
int mls_buf_json_double(struct mls_buf *b, double v);
int mls_buf_u64(struct mls_buf *b, uint64_t v);
/* The value of hexadecimal digit c, or -1. */
static inline int mls_hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}
/* NUL-terminates without counting the NUL in len. */
const char *mls_buf_cstr(struct mls_buf *b);

#endif
