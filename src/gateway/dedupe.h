/*
 * A bounded memory of recently seen keys (inference ids), to drop repeats:
 * an engine that scores a message again after a crash or a rebalance
 * publishes the same inference id again (engine/inference_id.h).
 *
 * Two generations of at most window/2 keys each: a key is remembered for at
 * least window/2 and at most window later keys. Keys are kept as 64-bit
 * seeded hashes (common/hash.h), 16 bytes of memory per key of window; a
 * false repeat needs a 64-bit collision within the window.
 *
 * Threads: none; the gateway's loop thread owns it. I/O-free.
 */
#ifndef MLS_GATEWAY_DEDUPE_H
#define MLS_GATEWAY_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct mls_dedupe mls_dedupe_t;

/* window >= 2. Returns NULL when out of memory. */
mls_dedupe_t *mls_dedupe_new(size_t window);
void mls_dedupe_free(mls_dedupe_t *d);

/* 1 if the key whose mls_hash() is key_hash was seen within the window (a
 * repeat), else remembers it and returns 0. The caller hashes the key, so
 * that one hash serves every table the key goes to. */
int mls_dedupe_seen(mls_dedupe_t *d, uint64_t key_hash);

#endif
