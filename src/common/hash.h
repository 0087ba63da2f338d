/*
 * A seeded 64-bit hash for the project's hash tables. Keys there (model
 * ids, GraphQL document text, field names, subscription groups) come from
 * the network, so the seed is drawn at start-up from getrandom(): crafted
 * collisions cannot be computed from outside. Thread-safe; the same key
 * hashes the same within one process, differently across processes.
 */
#ifndef MLS_HASH_H
#define MLS_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t mls_hash(const void *p, size_t n);

#endif
