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

/*
 * Unseeded hashes, the same in every process and on every host, for values
 * that must agree between engines (a model's version, a canary's split);
 * not for tables keyed by what the network sends.
 *
 * mls_fnv1a64: FNV-1a (64 bits) of n bytes at p, continuing from h
 * (MLS_FNV1A64_INIT to start). mls_hash_mix: MurmurHash3's 64-bit
 * finalizer (fmix64), which spreads every input bit over the output.
 */
#define MLS_FNV1A64_INIT 14695981039346656037ULL
uint64_t mls_fnv1a64(uint64_t h, const void *p, size_t n);
uint64_t mls_hash_mix(uint64_t h);

#endif
