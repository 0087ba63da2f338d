/*
 * Reference-counted, immutable byte strings: one rendered WebSocket message
 * (or the shared part of one) queued to many connections without copying.
 *
 * Threads: the gateway loop thread only; the count is a plain integer.
 */
#ifndef MLS_GATEWAY_FRAME_H
#define MLS_GATEWAY_FRAME_H

#include <stddef.h>

struct mls_frame {
        unsigned refs;
        size_t len;
        char data[]; /* len bytes and a NUL that len does not count */
};

/* Copies len bytes of data into a new frame holding one reference.
 * Returns NULL when memory runs out. */
struct mls_frame *mls_frame_new(const void *data, size_t len);
/* Adds a reference and returns f. */
static inline struct mls_frame *mls_frame_ref(struct mls_frame *f)
{
        f->refs++;
        return f;
}
/* Drops a reference; the last one frees the frame. NULL is ignored. */
void mls_frame_unref(struct mls_frame *f);

#endif
