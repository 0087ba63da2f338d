#include "gateway/dedupe.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/hash.h"

/* An open-addressing set of nonzero 64-bit values, at most half full. */
struct gen {
        uint64_t *slots;
        size_t count;
};

struct mls_dedupe {
        struct gen gens[2]; /* [cur]: being filled; the other: the previous */
        int cur;
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
        for (int i = 0; i < 2; i++) {
                d->gens[i].slots = calloc(slots, sizeof(uint64_t));
                if (!d->gens[i].slots) {
                        mls_dedupe_free(d);
                        return NULL;
                }
        }
        return d;
}

void mls_dedupe_free(mls_dedupe_t *d)
{
        if (!d)
                return;
        free(d->gens[0].slots);
        free(d->gens[1].slots);
        free(d);
}

/* The slot holding h in g, or the empty one where it would go. */
static uint64_t *slot_of(const mls_dedupe_t *d, const struct gen *g, uint64_t h)
{
        size_t i = (size_t)h & d->mask;

        while (g->slots[i] && g->slots[i] != h)
                i = (i + 1) & d->mask;
        return &g->slots[i];
}

int mls_dedupe_seen(mls_dedupe_t *d, const char *key, size_t len)
{
        uint64_t h = mls_hash(key, len);
        struct gen *cur;
        uint64_t *s;

        h = h ? h : 1; /* 0 marks an empty slot */
        if (*slot_of(d, &d->gens[!d->cur], h))
                return 1;
        cur = &d->gens[d->cur];
        s = slot_of(d, cur, h);
        if (*s)
                return 1;
        if (cur->count == d->per_gen) {
                /* the previous generation is forgotten; this one becomes it */
                struct gen *old = &d->gens[!d->cur];
                for (size_t i = 0; i <= d->mask; i++)
                        old->slots[i] = 0;
                old->count = 0;
                d->cur = !d->cur;
                cur = old;
                s = slot_of(d, cur, h);
        }
        *s = h;
        cur->count++;
        return 0;
}
