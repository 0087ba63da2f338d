#include "gateway/dedupe.h"

#include <stdint.h>
#include <stdlib.h>

/*
 * Two open-addressing sets of nonzero 64-bit values, each at most half
 * full, kept side by side: slot i of both generations shares one 16-byte
 * pair, so that looking a key up in both touches one cache line where
 * their probes start (the table is larger than the cache: that miss is
 * most of a lookup's cost).
 */
struct mls_dedupe {
        uint64_t (*slots)[2]; /* [i][gen] */
        size_t count[2];
        int cur;        /* the generation being filled; !cur the previous */
        size_t per_gen; /* keys per generation */
        size_t mask;    /* slots per generation - 1 */
};

mls_dedupe_t *mls_dedupe_new(size_t window)
{
        mls_dedupe_t *d = calloc(1, sizeof(*d));
        size_t slots = 4;

        if (!d || window < 2) {
                free(d);
                return NULL;
        }
        d->per_gen = window / 2;
        while (slots < 2 * d->per_gen)
                slots *= 2;
        d->mask = slots - 1;
        d->slots = calloc(slots, sizeof(*d->slots));
        if (!d->slots) {
                free(d);
                return NULL;
        }
        return d;
}

void mls_dedupe_free(mls_dedupe_t *d)
{
        if (!d)
                return;
        free(d->slots);
        free(d);
}

/* The slot holding h in generation gen, or the empty one where it would
 * go. */
static uint64_t *slot_of(const mls_dedupe_t *d, int gen, uint64_t h)
{
        size_t i = (size_t)h & d->mask;

        while (d->slots[i][gen] && d->slots[i][gen] != h)
                i = (i + 1) & d->mask;
        return &d->slots[i][gen];
}

int mls_dedupe_seen(mls_dedupe_t *d, uint64_t key_hash)
{
        uint64_t h = key_hash;
        uint64_t *s;

        h = h ? h : 1; /* 0 marks an empty slot */
        if (*slot_of(d, !d->cur, h))
                return 1;
        s = slot_of(d, d->cur, h);
        if (*s)
                return 1;
        if (d->count[d->cur] == d->per_gen) {
                /* the previous generation is forgotten; this one becomes it */
                d->cur = !d->cur;
                for (size_t i = 0; i <= d->mask; i++)
                        d->slots[i][d->cur] = 0;
                d->count[d->cur] = 0;
                s = slot_of(d, d->cur, h);
        }
        *s = h;
        d->count[d->cur]++;
        return 0;
}
