/*
 * The engine's core, free of Kafka: records go in, are decoded at once,
 * wait in a micro-batch, are scored per model, and come out as prediction
 * payloads on the publisher (and the optional output sink) or as dead
 * letters, in arrival order. The caller (engine.c) feeds it from Kafka and
 * commits offsets from the done callback.
 *
 * Threads: one pipeline belongs to the engine thread.
 */
#ifndef MLS_PIPELINE_H
#define MLS_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "engine/decoder.h"
#include "engine/sink.h"
#include "model/model.h"

/* One input message. payload, key and topic must stay valid until the done
 * callback for it returns. */
struct mls_record {
        const char *payload;
        size_t len;
        const char *key;
        size_t key_len;
        const char *topic;
        int32_t partition;
        int64_t offset;
        int64_t recv_ns;      /* monotonic, when the engine received it */
        int64_t recv_wall_ms; /* wall clock, for received_at */
        void *opaque;         /* the caller's handle */
};

typedef struct mls_pipeline mls_pipeline_t;

/* Returns what serves model_id, or NULL if nothing does. The route must
 * stay valid until the batch that asked is scored (mls_pipeline_flush). */
typedef const struct mls_model_route *(*mls_model_resolver)(
        void *opaque, const char *model_id);
/* Calls visit for every model id served (for heartbeats). */
typedef void (*mls_route_visit)(void *arg, const char *model_id,
                                const struct mls_model_route *route);
typedef void (*mls_route_lister)(void *opaque, mls_route_visit visit,
                                 void *arg);
/* Called for every record once its outcome is delivered, in arrival order. */
typedef void (*mls_record_done)(void *opaque, const struct mls_record *rec);

struct mls_pipeline_conf {
        const char *default_model_id;
        const char *engine_id;
        struct mls_decode_limits limits;
        /* The batching rule, all of it: a batch closes when it holds this
         * many rows, messages (rejected ones included) or input bytes, or
         * when its oldest message has waited batch_max_wait_ns since it was
         * received (rec->recv_ns), whichever comes first; 0: no limit of
         * that kind (a wait of 0 closes every batch at once). A closed
         * batch is scored in chunks of at most batch_max_rows rows per
         * model. */
        size_t batch_max_rows;
        size_t batch_max_messages;
        size_t batch_max_bytes;
        int64_t batch_max_wait_ns;
        /* After mls_pipeline_flush_ahead(), how long (from the arrival of
         * the batch's newest message) its acknowledgment may wait to be
         * read with the next batch's, before mls_pipeline_due() asks for
         * it alone (0: at once). */
        int64_t ack_wait_ns;
        /* Most bytes of prediction payloads one batch may build (0: 64
         * MiB); a message whose prediction does not fit is dead-lettered
         * with reason output_too_large. */
        size_t payload_limit;
        /* Distinct model ids with their own metric series (0: 100); the
         * rest share model_id="__other__". */
        size_t max_model_series;
        mls_model_resolver resolve;
        void *resolve_opaque;
        struct mls_sink publisher;  /* required */
        struct mls_sink output;     /* optional: ops NULL */
        struct mls_sink deadletter; /* optional: ops NULL */
        /* Optional: where shadow versions' predictions go (without it they
         * are compared only). */
        struct mls_sink shadow;
        mls_route_lister list_routes; /* optional */
        mls_record_done done;
        void *done_opaque;
        mls_metrics_t *metrics;
};

/* Returns NULL when out of memory. The conf is copied (strings too). */
mls_pipeline_t *mls_pipeline_new(const struct mls_pipeline_conf *conf);
void mls_pipeline_free(mls_pipeline_t *p);

/* Decodes rec into the pending batch. Returns the rows pending. */
size_t mls_pipeline_add(mls_pipeline_t *p, const struct mls_record *rec);
size_t mls_pipeline_pending(const mls_pipeline_t *p);
size_t mls_pipeline_pending_rows(const mls_pipeline_t *p);
/* 1 when the pending batch is closed by the batching rule (see
 * mls_pipeline_conf) at monotonic time now_ns and should be flushed before
 * anything more is added. */
int mls_pipeline_due(const mls_pipeline_t *p, int64_t now_ns);
/* 1 when the pending batch has reached one of its size limits. */
int mls_pipeline_full(const mls_pipeline_t *p);
/* How long the caller may wait for more input at now_ns before the pending
 * batch is due: idle_ms when nothing is pending, 0 when it is due already,
 * else the milliseconds left, rounded up. */
int mls_pipeline_wait_ms(const mls_pipeline_t *p, int64_t now_ns, int idle_ms);

/*
 * Scores the pending batch and delivers every outcome. Returns 0 when all
 * are delivered (done was called for each and the batch is empty), or -1
 * with errstr when a sink failed: the batch stays, already scored, and the
 * next call delivers it again from the failed sink on.
 */
int mls_pipeline_flush(mls_pipeline_t *p, char *errstr, size_t errstr_size);

/*
 * The same, for a caller with the next batch already waiting: a publisher
 * that can (a submit op) takes the batch without waiting for its
 * acknowledgment, so that it works on it while the next one is scored, and
 * done is called for its records only once it is acknowledged, by the next
 * flush (of either kind) that returns 0. Until then they count as pending
 * and mls_pipeline_due() is 1 even with nothing else to score. Returns as
 * mls_pipeline_flush.
 */
int mls_pipeline_flush_ahead(mls_pipeline_t *p, char *errstr,
                             size_t errstr_size);

/*
 * Waits for the acknowledgment of what mls_pipeline_flush_ahead() handed
 * over, if anything is outstanding, and calls done for its records; the
 * pending batch is left as it is. For a caller about to use the publisher
 * for something else (a heartbeat), so that a failure of that fails only
 * itself. Returns as mls_pipeline_flush.
 */
int mls_pipeline_settle(mls_pipeline_t *p, char *errstr, size_t errstr_size);

/* 1 when the pending batch was published (the publisher acknowledged it)
 * and what failed since was the output or dead-letter sink. */
int mls_pipeline_published(const mls_pipeline_t *p);

/* Drops the pending records (those awaiting acknowledgment too) for which
 * keep (NULL: none) returns 0 without
 * delivering them, calling release (if not NULL) for each instead of done;
 * the others stay, in order, as they were. For partitions taken away in a
 * rebalance while a sink is down: Kafka redelivers them to their new
 * owner, and the partitions this engine keeps lose nothing. */
typedef int (*mls_record_keep)(void *opaque, const struct mls_record *rec);
void mls_pipeline_discard(mls_pipeline_t *p, mls_record_keep keep,
                          mls_record_done release, void *opaque);

/* Appends a heartbeat payload (DESIGN §4) naming the models seen so far. */
size_t mls_pipeline_heartbeat(mls_pipeline_t *p, struct mls_buf *out);

#endif
