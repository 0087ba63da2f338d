/*
 * The gateway's memory of recent predictions, so that a subscriber that
 * reconnects can resume where it left off: mlInferenceStream(modelId,
 * after: <inferenceId>) replays what is still held after that prediction,
 * then goes live.
 *
 * One history for all models, bounded by bytes (GATEWAY_HISTORY_BYTES:
 * payloads plus bookkeeping, counted per entry) and by age
 * (GATEWAY_HISTORY_MAX_AGE_MS); the oldest prediction goes first. Each
 * model's predictions are numbered in arrival order (ordinals), so that a
 * resuming reader finds its next prediction in O(1) and knows exactly how
 * many were evicted before it could read them. Inference ids are indexed
 * to find where a reader resumes.
 *
 * Models are bounded too (MLS_HISTORY_MAX_MODELS): a new model past that
 * many takes the place of one with nothing held or, failing that, the
 * oldest predictions are evicted until a model has none left, so a flood
 * of model ids is forgotten oldest first like any other flood.
 *
 * Threads: none; the gateway's loop thread owns it. I/O-free.
 */
#ifndef MLS_GATEWAY_HISTORY_H
#define MLS_GATEWAY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define MLS_HISTORY_MAX_MODELS 4096

typedef struct mls_history mls_history_t;

/* max_bytes > 0; max_age_ms 0: no age limit. NULL when out of memory. */
mls_history_t *mls_history_new(size_t max_bytes, int64_t max_age_ms);
void mls_history_free(mls_history_t *h);

/* Keeps a copy of payload (len bytes: the prediction as published) as the
 * newest prediction of model_id, with inference id id (id_hash: its
 * mls_hash()), received at now_ms; evicts the oldest to stay within the
 * bounds. Returns 0, or -1 when it is not kept (larger than the whole
 * budget, too many models, out of memory). */
int mls_history_add(mls_history_t *h, const char *model_id, size_t mlen,
                    const char *id, size_t idlen, uint64_t id_hash,
                    const char *payload, size_t len, int64_t now_ms);

/* Starts bringing what adding an id of hash id_hash will touch into the
 * cache (its index slot, the oldest entry): called a little ahead of
 * mls_history_add(), those misses overlap the work in between. */
void mls_history_prefetch(const mls_history_t *h, uint64_t id_hash);

/* Evicts what is older than the age limit at now_ms. */
void mls_history_expire(mls_history_t *h, int64_t now_ms);

/* A reader's place in one model's predictions: the ordinal of the next one
 * to read. */
struct mls_history_cursor {
        uint64_t next;
        uint64_t epoch; /* the model's incarnation it refers to */
};

/* Places *c right after the prediction with inference id id, when it is
 * still held and belongs to model_id: returns 0. Otherwise places *c at
 * the oldest prediction held for model_id and returns -1 (where id was is
 * unknown). */
int mls_history_seek(mls_history_t *h, const char *model_id, size_t mlen,
                     const char *id, size_t idlen,
                     struct mls_history_cursor *c);

struct mls_history_item {
        const char *data; /* the payload; valid until the next add/expire */
        size_t len;
        int64_t at_ms; /* when it was kept */
};

enum mls_history_read {
        MLS_HISTORY_ITEM,   /* *item is the next prediction; c advanced */
        MLS_HISTORY_END,    /* nothing newer held yet */
        MLS_HISTORY_MISSED, /* predictions after c were evicted unread:
                               *missed of them (0: unknown how many);
                               c moved to the oldest held */
};

/* Reads the prediction of model_id at c. */
enum mls_history_read mls_history_read(mls_history_t *h, const char *model_id,
                                       size_t mlen,
                                       struct mls_history_cursor *c,
                                       struct mls_history_item *item,
                                       uint64_t *missed);

/* When the oldest prediction held for model_id was kept (wall ms), or -1
 * when none is held. */
int64_t mls_history_oldest_ms(const mls_history_t *h, const char *model_id,
                              size_t mlen);

struct mls_history_stats {
        size_t bytes, entries, models;
        uint64_t evicted, refused;
};
void mls_history_stats(const mls_history_t *h, struct mls_history_stats *st);

#endif
