/*
 * How far apart two names are, for "did you mean" suggestions (settings,
 * GraphQL fields, types and enum values).
 */
#ifndef MLS_EDITS_H
#define MLS_EDITS_H

#include <stddef.h>

/*
 * The fewest edits (insert, delete or replace a character, or swap two
 * neighbours) that turn a (an bytes) into b (bn bytes), letters compared
 * without case when fold is set. Counted up to cap: any greater distance
 * (and running out of memory) gives cap + 1, as soon as it is certain.
 */
size_t mls_edits(const char *a, size_t an, const char *b, size_t bn, int fold,
                 size_t cap);

#endif
