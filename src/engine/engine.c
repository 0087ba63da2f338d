#include "engine/engine.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/channel.h"
#include "common/clock.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/redis_cluster.h"
#include "common/redis_url.h"
#include "common/signals.h"
#include "engine/cluster_sink.h"
#include "engine/kafka.h"
#include "engine/lag.h"
#include "engine/pipeline.h"
#include "engine/redis_sink.h"
#include "engine/txn.h"
#include "model/registry.h"

#define BACKOFF_START_MS 50
#define NUDGE_TIMEOUT_MS 100
/* How long a submitted batch's acknowledgment waits to be read with the
 * next batch's before it is read alone (mls_pipeline_conf.ack_wait_ns):
 * a message's offset is stored at most this much later than it could be,
 * and a publish that failed is noticed at most this much later. */
#define ACK_WAIT_MS 100

struct mls_engine {
        const struct mls_config *cfg;
        mls_metrics_t *metrics;
        rd_kafka_t *consumer;
        /* rk[0] transactional (ML_EXACTLY_ONCE), or each made when needed */
        struct mls_kafka_producers producers;
        struct mls_sink publisher, output, deadletter, shadow;
        mls_metrics_t *shadow_metrics; /* the shadow sink's own, not shown */
        mls_pipeline_t *pipeline;
        mls_registry_t *models;
        mls_httpd_t *httpd;
        char engine_id[256];
        rd_kafka_topic_partition_list_t *done_offsets;
        rd_kafka_message_t **held; /* consumed while a sink was down */
        size_t nheld, held_cap;
        atomic_int stop, reload, ready, joined, sink_down;
        int paused;
        int committing;         /* an asynchronous offset commit is in flight */
        int uncommitted;        /* offsets stored since the last commit began */
        long long done_msgs;    /* records done, offsets not yet stored */
        long long stored_msgs;  /* records whose offsets wait for a commit */
        int64_t next_commit_ns; /* not before (ML_COMMIT_INTERVAL_MS) */
        int64_t now_ns;         /* the run loop's last clock reading */
        int closing;        /* leaving the group: final_commit() committed */
        int coordinator_ok; /* the last commit (or join) was answered */
        int64_t backoff_ms, next_retry_ns;
        int64_t stop_by; /* monotonic ns: the drain deadline after a stop */
        mls_series_t *s_consumed, *s_ready, *s_assigned;
        mls_lag_t *lag; /* per-partition consumer lag gauges */
        /* the prefetch (prefetch_check()): the consumer queue, its bound
         * in bytes, the input seen (for the mean message size), and
         * whether the queue was half full since the last nudge */
        rd_kafka_queue_t *queue;
        int64_t prefetch_bytes;
        int64_t seen_bytes, seen_msgs;
        int64_t wall_ms, wall_read_ns; /* see wall_ms() */
        int prefetch_armed;
        size_t queued_known; /* see more_queued() */
        /* ML_EXACTLY_ONCE (else txn is NULL): done_offsets are the open
         * transaction's; rewind has, per partition consumed since its
         * assignment, where an abort consumes it again from: the offset
         * the last commit left, or the first one consumed. */
        mls_txn_t *txn;
        rd_kafka_topic_partition_list_t *rewind;
        int64_t txn_due_ns;  /* monotonic ns: commit the open one then */
        int txn_after_abort; /* commit after each batch until one commits */
        int fatal;           /* a fatal error: stop, exit status 1 */
        /* wake_loop(): posted for the waker thread (mls:wake) */
        sem_t wake;
        pthread_t waker;
        int waker_started;
        atomic_int waker_quit;
};

/* The model serving model_id, or NULL (dead letter).
 * Engine thread, from the pipeline's flush. */
static const struct mls_model_route *resolve_model(void *opaque,
                                                   const char *model_id)
{
        return mls_registry_get(((mls_engine_t *)opaque)->models, model_id);
}

static void list_routes(void *opaque, mls_route_visit visit, void *arg)
{
        mls_registry_foreach(((mls_engine_t *)opaque)->models, visit, arg);
}

/* Called by the pipeline for each delivered record, in order. */
static void record_done(void *opaque, const struct mls_record *rec)
{
        mls_engine_t *e = opaque;
        rd_kafka_topic_partition_t *tp;

        tp = rd_kafka_topic_partition_list_find(e->done_offsets, rec->topic,
                                                rec->partition);
        if (!tp)
                tp = rd_kafka_topic_partition_list_add(
                        e->done_offsets, rec->topic, rec->partition);
        tp->offset = rec->offset + 1;
        e->done_msgs++;
        rd_kafka_message_destroy(rec->opaque);
}

static void record_release(void *opaque, const struct mls_record *rec)
{
        (void)opaque;
        rd_kafka_message_destroy(rec->opaque);
}

/* Commits the stored offsets asynchronously unless a commit is in flight
 * or (unless force) ML_COMMIT_INTERVAL_MS has not passed since the last
 * and fewer than ML_COMMIT_MAX_MESSAGES wait; on_commit() and the run loop
 * call it again for what was stored meanwhile. */
static void commit_stored(mls_engine_t *e, int force)
{
        int64_t now;

        if (e->committing || !e->uncommitted)
                return;
        /* the run loop's time, at most a batch old, is close enough to
         * hold a commit back: one held too long goes at the loop's next
         * turn */
        if (!force && e->now_ns < e->next_commit_ns &&
            e->stored_msgs < e->cfg->commit_max_messages)
                return;
        now = mls_clock_mono_ns();
        e->uncommitted = 0;
        e->stored_msgs = 0;
        e->next_commit_ns = now + e->cfg->commit_interval_ms * 1000000LL;
        if (rd_kafka_commit(e->consumer, NULL, 1) == RD_KAFKA_RESP_ERR_NO_ERROR)
                e->committing = 1;
}

/* Stores the offsets of everything delivered since the last call and
 * commits them, asynchronously, unless a commit is still in flight (then
 * the next batch's commit carries them): after a crash, what Kafka
 * redelivers is what was in flight, not a whole auto-commit interval. */
static void store_offsets(mls_engine_t *e)
{
        rd_kafka_resp_err_t err;

        if (e->done_offsets->cnt == 0)
                return;
        err = rd_kafka_offsets_store(e->consumer, e->done_offsets);
        if (err)
                mls_debug("offsets store: %s (partition no longer assigned)",
                          rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(e->done_offsets);
        e->done_offsets = rd_kafka_topic_partition_list_new(8);
        e->uncommitted = 1;
        e->stored_msgs += e->done_msgs;
        e->done_msgs = 0;
        commit_stored(e, 0);
}

/* Runs on the engine thread, inside rd_kafka_consumer_poll(). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
        mls_engine_t *e = opaque;

        (void)rk;
        (void)offsets;
        e->committing = 0;
        e->coordinator_ok = !err || err == RD_KAFKA_RESP_ERR__NO_OFFSET;
        if (!e->coordinator_ok)
                mls_debug("offset commit: %s", rd_kafka_err2str(err));
        commit_stored(e, 0); /* what was stored while this one flew */
}

/*
 * ML_EXACTLY_ONCE. A transaction begins before the first batch that
 * produces and collects batches for ML_TRANSACTION_INTERVAL_MS; the
 * offsets of what they delivered are sent with it and committed with it.
 * Any failure of the transaction aborts it and drops everything consumed
 * since the last commit, delivered, pending or held; the consumer is sought
 * back to where that commit left each partition, so that all of it is
 * consumed, scored and produced again (with the same inference ids).
 * Fatal errors (fenced by a newer engine with the same transactional.id)
 * stop the engine with exit status 1: a supervisor restarts it, and the
 * restarted engine fences whatever is left of this one.
 */

/* Releases everything pending or held, uncommitted: Kafka redelivers it,
 * or rewind_consumer() seeks back to it. */
static void drop_all(mls_engine_t *e)
{
        mls_pipeline_discard(e->pipeline, NULL, record_release, e);
        for (size_t i = 0; i < e->nheld; i++)
                rd_kafka_message_destroy(e->held[i]);
        e->nheld = 0;
        rd_kafka_topic_partition_list_destroy(e->done_offsets);
        e->done_offsets = rd_kafka_topic_partition_list_new(8);
        e->done_msgs = 0;
}

static void fatal(mls_engine_t *e, const char *errstr)
{
        if (!e->fatal)
                mls_error("%s; stopping: the next engine consumes again from "
                          "the last committed transaction",
                          errstr);
        e->fatal = 1;
        drop_all(e);
}

/* Remembers the offset of the first message consumed from a partition
 * since its assignment (until a commit moves it). */
static void note_position(mls_engine_t *e, const rd_kafka_message_t *m)
{
        const char *topic = rd_kafka_topic_name(m->rkt);

        if (!rd_kafka_topic_partition_list_find(e->rewind, topic, m->partition))
                rd_kafka_topic_partition_list_add(e->rewind, topic,
                                                  m->partition)
                        ->offset = m->offset;
}

/* Stores, for the consumer-lag gauge only (under exactly-once the
 * consumer commits nothing), the position the transactions committed of
 * every partition consumed since its assignment: a seek may make
 * librdkafka forget a stored offset, and a partition with nothing left to
 * consume after it is in no later commit to store it again. A copy is
 * stored, so that the per-partition errors stay off e->rewind. */
static void store_committed(mls_engine_t *e)
{
        rd_kafka_topic_partition_list_t *all =
                rd_kafka_topic_partition_list_copy(e->rewind);

        rd_kafka_offsets_store(e->consumer, all);
        rd_kafka_topic_partition_list_destroy(all);
}

/* Seeks every partition consumed since its assignment back to where the
 * last commit left it; the messages it had fetched beyond are discarded
 * by librdkafka. Failing that is fatal: what was dropped would be lost. */
static void rewind_consumer(mls_engine_t *e)
{
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_error_t *error;
        char why[400] = "", msg[512];

        if (e->rewind->cnt == 0)
                return;
        parts = rd_kafka_topic_partition_list_copy(e->rewind);
        error = mls_kafka_seek(e->consumer, parts, 10000);
        if (error) {
                snprintf(why, sizeof(why), "%s", rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
        for (int i = 0; !*why && i < parts->cnt; i++)
                if (parts->elems[i].err)
                        snprintf(why, sizeof(why), "%s[%d]: %s",
                                 parts->elems[i].topic,
                                 (int)parts->elems[i].partition,
                                 rd_kafka_err2str(parts->elems[i].err));
        rd_kafka_topic_partition_list_destroy(parts);
        if (!*why) {
                store_committed(e);
        } else {
                snprintf(msg, sizeof(msg),
                         "cannot rewind the consumer after an aborted "
                         "transaction: %s",
                         why);
                fatal(e, msg);
        }
}

/* Aborts the open transaction and makes everything consumed since the last
 * commit be consumed again. The next transaction commits after its first
 * batch, so that the batches beside a message that costs aborts (until
 * the topics take it: engine/txn.h) are not scored again each time. */
static void txn_abort(mls_engine_t *e)
{
        char errstr[512];

        drop_all(e);
        if (mls_txn_abort(e->txn, errstr, sizeof(errstr)) != MLS_TXN_OK) {
                fatal(e, errstr);
                return;
        }
        rewind_consumer(e);
        e->txn_after_abort = 1;
}

/* Commits the open transaction with the offsets delivered in it; aborts
 * it (and rewinds) when it failed. */
static void txn_commit(mls_engine_t *e)
{
        rd_kafka_consumer_group_metadata_t *cgmd;
        enum mls_txn_status st;
        char errstr[512];

        if (e->fatal || !mls_txn_open(e->txn))
                return;
        cgmd = rd_kafka_consumer_group_metadata(e->consumer);
        st = mls_txn_commit(e->txn, e->done_offsets, cgmd, errstr,
                            sizeof(errstr));
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        if (st == MLS_TXN_FATAL) {
                fatal(e, errstr);
                return;
        }
        if (st != MLS_TXN_OK) {
                mls_warn("%s; aborting the transaction and consuming again "
                         "from the last commit",
                         errstr);
                txn_abort(e);
                return;
        }
        for (int i = 0; i < e->done_offsets->cnt; i++) {
                const rd_kafka_topic_partition_t *d =
                        &e->done_offsets->elems[i];
                rd_kafka_topic_partition_t *r =
                        rd_kafka_topic_partition_list_find(e->rewind, d->topic,
                                                           d->partition);
                if (!r)
                        r = rd_kafka_topic_partition_list_add(
                                e->rewind, d->topic, d->partition);
                r->offset = d->offset;
        }
        mls_txn_forget(e->txn, e->done_offsets, 0);
        if (e->done_offsets->cnt)
                store_committed(e);
        rd_kafka_topic_partition_list_destroy(e->done_offsets);
        e->done_offsets = rd_kafka_topic_partition_list_new(8);
        e->done_msgs = 0;
        e->txn_after_abort = 0;
        e->coordinator_ok = 1;
}

/* 1 when the open transaction should be committed at now. */
static int txn_due(const mls_engine_t *e, int64_t now)
{
        return !e->fatal && mls_txn_open(e->txn) &&
               (e->txn_after_abort || now >= e->txn_due_ns);
}

/* Fences older producers with our transactional.id, retrying while the
 * coordinator cannot be reached. Returns 0, 1 when stopped meanwhile, -1
 * on a fatal error (logged). */
static int txn_init(mls_engine_t *e)
{
        char errstr[512];

        for (;;) {
                switch (mls_txn_init(e->txn, 5000, errstr, sizeof(errstr))) {
                case MLS_TXN_OK:
                        return 0;
                case MLS_TXN_RETRY:
                        if (atomic_load(&e->stop))
                                return 1;
                        mls_warn("%s; retrying", errstr);
                        break;
                default:
                        mls_error("%s", errstr);
                        return -1;
                }
        }
}

static void set_paused(mls_engine_t *e, int pause)
{
        rd_kafka_topic_partition_list_t *parts = NULL;

        if (rd_kafka_assignment(e->consumer, &parts) || !parts)
                return;
        if (pause)
                rd_kafka_pause_partitions(e->consumer, parts);
        else
                rd_kafka_resume_partitions(e->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        e->paused = pause;
}

static void update_ready(mls_engine_t *e)
{
        int r = atomic_load(&e->joined) && !atomic_load(&e->sink_down) &&
                mls_sink_connected(&e->publisher);
        atomic_store(&e->ready, r);
        mls_series_set(e->s_ready, r);
}

/* Milliseconds left before the drain deadline (the whole shutdown timeout
 * if no stop was asked). */
static int drain_left_ms(const mls_engine_t *e)
{
        int64_t now = mls_clock_mono_ns();

        if (!e->stop_by)
                return (int)e->cfg->shutdown_timeout_ms;
        return e->stop_by > now ? (int)((e->stop_by - now) / 1000000) : 0;
}

enum delivery {
        DELIVERED,
        DOWN,    /* the publisher failed: the batch stays */
        ABORTED, /* a transaction failed: all since the last commit is to
                    be consumed again (or a fatal error) */
};

/* Scores the pending batch, publishes and produces it (in the open
 * transaction, begun if need be) and stores its offsets or, when the
 * transaction is due, commits them. With ahead, the publisher may take the
 * batch without waiting for Redis to acknowledge it: its offsets are stored
 * after the next batch's publication (see mls_pipeline_flush_ahead()). */
static enum delivery deliver_batch(mls_engine_t *e, int ahead, char *errstr,
                                   size_t errstr_size)
{
        if (e->fatal)
                return ABORTED;
        if (mls_pipeline_pending(e->pipeline) == 0)
                return DELIVERED;
        if (e->txn && !mls_txn_open(e->txn)) {
                if (mls_txn_begin(e->txn, errstr, errstr_size) != MLS_TXN_OK) {
                        fatal(e, errstr);
                        return ABORTED;
                }
                e->txn_due_ns = mls_clock_mono_ns() +
                                e->cfg->transaction_interval_ms * 1000000LL;
        }
        if ((ahead && !e->txn ? mls_pipeline_flush_ahead(e->pipeline, errstr,
                                                         errstr_size)
                              : mls_pipeline_flush(e->pipeline, errstr,
                                                   errstr_size)) == 0) {
                if (!e->txn)
                        store_offsets(e);
                else if (txn_due(e, mls_clock_mono_ns()))
                        txn_commit(e);
                return DELIVERED;
        }
        if (e->txn && mls_pipeline_published(e->pipeline)) {
                mls_warn("%s; aborting the transaction and consuming again "
                         "from the last commit",
                         errstr);
                txn_abort(e);
                return ABORTED;
        }
        return DOWN;
}

static enum delivery deliver(mls_engine_t *e, char *errstr, size_t errstr_size)
{
        return deliver_batch(e, 0, errstr, errstr_size);
}

/* Enters the down state (unless in it): consumption pauses, /readyz says
 * 503, and run() reconnects and retries with backoff. */
static void go_down(mls_engine_t *e, const char *what, const char *errstr)
{
        if (atomic_load(&e->sink_down))
                return;
        mls_warn("%s, pausing consumption: %s", what, errstr);
        atomic_store(&e->sink_down, 1);
        e->backoff_ms = BACKOFF_START_MS;
        e->next_retry_ns = mls_clock_mono_ns() + e->backoff_ms * 1000000LL;
        set_paused(e, 1);
        update_ready(e);
}

/* Tries to deliver the pending batch (ahead: see deliver_batch()); when the
 * publisher fails, enters the down state: consumption pauses and run()
 * retries with backoff. */
static int flush_batch(mls_engine_t *e, int ahead)
{
        char errstr[512];

        if (mls_pipeline_pending(e->pipeline) == 0)
                return 0;
        switch (deliver_batch(e, ahead, errstr, sizeof(errstr))) {
        case DELIVERED:
                return 0;
        case ABORTED:
                return -1;
        case DOWN:
                break;
        }
        go_down(e, "delivery failed", errstr);
        return -1;
}

static int flush(mls_engine_t *e)
{
        return flush_batch(e, 0);
}

/* The wall clock, in ms, at monotonic time now: read at most once a
 * millisecond, as received_at has no finer resolution. */
static int64_t wall_ms(mls_engine_t *e, int64_t now)
{
        if (!e->wall_read_ns || now - e->wall_read_ns >= 1000000) {
                e->wall_ms = mls_clock_wall_ms();
                e->wall_read_ns = now;
        }
        return e->wall_ms;
}

/* Adds m to the batch; returns the time it was stamped with. */
static int64_t add_message(mls_engine_t *e, rd_kafka_message_t *m)
{
        int64_t now = mls_clock_mono_ns();
        struct mls_record rec = {
                .payload = m->payload,
                .len = m->len,
                .key = m->key,
                .key_len = m->key_len,
                .topic = rd_kafka_topic_name(m->rkt),
                .partition = m->partition,
                .offset = m->offset,
                .recv_ns = now,
                .recv_wall_ms = wall_ms(e, now),
                .opaque = m,
        };

        mls_series_add(e->s_consumed, 1);
        if (e->txn)
                note_position(e, m);
        /* a mean that follows the recent sizes: halved now and then */
        e->seen_bytes += (int64_t)m->len;
        if (++e->seen_msgs == 65536) {
                e->seen_msgs /= 2;
                e->seen_bytes /= 2;
        }
        mls_pipeline_add(e->pipeline, &rec);
        return now;
}

/* Makes every broker thread that leads an assigned partition serve its
 * partitions again: asks each leader for their latest offsets, a small
 * request (answer unused). Engine thread; blocks for that round trip, at
 * most NUDGE_TIMEOUT_MS; failures are ignored (the fetcher then resumes
 * on its own within a second). */
static void prefetch_nudge(mls_engine_t *e)
{
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_resp_err_t err;

        if (rd_kafka_assignment(e->consumer, &parts) || !parts)
                return;
        for (int i = 0; i < parts->cnt; i++)
                parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* latest */
        if (parts->cnt) {
                err = rd_kafka_offsets_for_times(e->consumer, parts,
                                                 NUDGE_TIMEOUT_MS);
                if (err)
                        mls_debug("prefetch nudge: %s", rd_kafka_err2str(err));
        }
        rd_kafka_topic_partition_list_destroy(parts);
}

/*
 * librdkafka 2.0 stops fetching once its queue holds
 * queued.max.messages.kbytes (ML_PREFETCH_MAX_BYTES) and decides again
 * only when something else wakes its broker threads: a response, a
 * request to send, or their one-second timeout. Draining a backlog the
 * queue fills while nothing else is in flight, so each fill would cost up
 * to a second of idling (librdkafka >= 2.4 has fetch.queue.backoff.ms for
 * this; Debian 12 has 2.0). The engine estimates the queue's bytes (its
 * length times the mean input size); once the queue was half full and
 * has drained to a quarter, prefetch_nudge() wakes the broker threads,
 * which fetch again while a quarter is still queued. An estimate off by
 * up to 2x either way still nudges in time. At a steady rate the queue
 * stays near empty and nothing is sent. Engine thread.
 */
static void prefetch_check(mls_engine_t *e)
{
        int64_t queued;

        if (!e->queue || !e->seen_msgs)
                return;
        queued = (int64_t)rd_kafka_queue_length(e->queue) *
                 (e->seen_bytes / e->seen_msgs);
        if (queued >= e->prefetch_bytes / 2) {
                e->prefetch_armed = 1;
        } else if (e->prefetch_armed && queued < e->prefetch_bytes / 4) {
                e->prefetch_armed = 0;
                prefetch_nudge(e);
        }
}

/* Whether the consumer's queue holds more messages for the batch. Asking
 * librdkafka takes its queue's lock, so the length it gave is counted down
 * as messages are polled and asked again only once they all were: in a
 * backlog, that is once per queue-full instead of once per message. */
static int more_queued(mls_engine_t *e)
{
        if (!e->queued_known && e->queue)
                e->queued_known = rd_kafka_queue_length(e->queue);
        return e->queued_known > 0;
}

static void hold_message(mls_engine_t *e, rd_kafka_message_t *m)
{
        if (e->txn)
                note_position(e, m);
        if (e->nheld == e->held_cap) {
                size_t ncap = e->held_cap ? e->held_cap * 2 : 64;
                rd_kafka_message_t **n = realloc(e->held, ncap * sizeof(*n));
                if (!n) {
                        mls_error("out of memory holding a message");
                        abort();
                }
                e->held = n;
                e->held_cap = ncap;
        }
        e->held[e->nheld++] = m;
}

static int still_assigned(void *opaque, const struct mls_record *rec)
{
        rd_kafka_topic_partition_list_t *revoked = opaque;

        return !rd_kafka_topic_partition_list_find(revoked, rec->topic,
                                                   rec->partition);
}

/* Drops, uncommitted, what is pending or held for the revoked partitions
 * (Kafka redelivers it to their new owner) and nothing else: an
 * incremental (cooperative) revocation keeps the other partitions, whose
 * messages must still be delivered before their offsets are committed. */
static void drop_revoked(mls_engine_t *e,
                         rd_kafka_topic_partition_list_t *revoked)
{
        size_t n = 0;

        mls_pipeline_discard(e->pipeline, still_assigned, record_release,
                             revoked);
        for (size_t i = 0; i < e->nheld; i++) {
                rd_kafka_message_t *m = e->held[i];
                if (rd_kafka_topic_partition_list_find(
                            revoked, rd_kafka_topic_name(m->rkt), m->partition))
                        rd_kafka_message_destroy(m);
                else
                        e->held[n++] = m;
        }
        e->nheld = n;
}

/* Revocation under ML_EXACTLY_ONCE: what is pending is delivered (unless
 * the publisher is down) and the open transaction committed before another
 * engine takes the partitions over. If the assignment was lost (another
 * engine may own the partitions already) the transaction is aborted. */
static void revoke_txn(mls_engine_t *e, rd_kafka_t *rk,
                       rd_kafka_topic_partition_list_t *revoked)
{
        int lost = rd_kafka_assignment_lost(rk);

        if (!e->fatal && !lost && !atomic_load(&e->sink_down))
                flush(e);
        drop_revoked(e, revoked);
        if (!lost)
                txn_commit(e);
        mls_txn_forget(e->txn, revoked, 1);
        for (int i = 0; i < revoked->cnt; i++)
                rd_kafka_topic_partition_list_del(e->rewind,
                                                  revoked->elems[i].topic,
                                                  revoked->elems[i].partition);
        if (lost && !e->fatal && mls_txn_open(e->txn)) {
                mls_warn("partition assignment lost: aborting the open "
                         "transaction");
                txn_abort(e);
        }
}

/* Runs on the engine thread, inside rd_kafka_consumer_poll(). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        mls_engine_t *e = opaque;
        int cooperative =
                strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                mls_info("assigned %d partition(s)", parts->cnt);
                if (cooperative)
                        rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                atomic_store(&e->joined, 1);
                e->coordinator_ok = 1;
                if (atomic_load(&e->sink_down))
                        rd_kafka_pause_partitions(rk, parts);
        } else {
                mls_info("revoked %d partition(s)", parts->cnt);
                /* Deliver what is in flight so its offsets are committed
                 * before another engine takes over; if a sink is down,
                 * drop it uncommitted and let Kafka redeliver it. */
                if (e->txn) {
                        revoke_txn(e, rk, parts);
                } else if (atomic_load(&e->sink_down) || flush(e) < 0) {
                        drop_revoked(e, parts);
                } else if (!e->closing) {
                        store_offsets(e);
                        rd_kafka_commit(rk, NULL, 0);
                }
                if (cooperative)
                        rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
        }
        /* Count the whole assignment (a cooperative
         * rebalance hands over only the change) and drop revoked
         * partitions' lag series at once. */
        mls_series_set(e->s_assigned, mls_lag_on_rebalance(e->lag, rk));
        update_ready(e);
}

static int http_handler(void *opaque, const char *path, struct mls_buf *body,
                        const char **content_type)
{
        mls_engine_t *e = opaque;

        if (strcmp(path, "/metrics") == 0) {
                *content_type = "text/plain; version=0.0.4; charset=utf-8";
                mls_metrics_render(e->metrics, body);
                return 200;
        }
        if (strcmp(path, "/healthz") == 0) {
                mls_buf_puts(body, "ok\n");
                return 200;
        }
        if (strcmp(path, "/readyz") == 0) {
                int r = mls_engine_ready(e);
                mls_buf_puts(body, r ? "ready\n" : "not ready\n");
                return r ? 200 : 503;
        }
        mls_buf_puts(body, "not found; try /metrics, /healthz, /readyz\n");
        return 404;
}

/* Consumer lag from librdkafka's statistics. Runs on the engine thread, inside
 * rd_kafka_consumer_poll(). Returns 0: librdkafka frees json. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
        mls_lag_on_stats(((mls_engine_t *)opaque)->lag, rk, json, json_len);
        return 0;
}

/* queued.max.messages.kbytes for ML_PREFETCH_MAX_BYTES. librdkafka 2.0's
 * high-level consumer forwards every partition's fetch queue to the one
 * consumer queue, and a partition's bound is checked against the size of
 * that queue (rd_kafka_q_size() follows the forward): so the setting
 * bounds all partitions together, not each. 2,097,151 KiB is its maximum. */
static long long prefetch_kbytes(const struct mls_config *cfg)
{
        long long kb = cfg->prefetch_max_bytes / 1024;

        return kb > 2097151 ? 2097151 : kb;
}

static rd_kafka_t *consumer_new(mls_engine_t *e, char *errstr,
                                size_t errstr_size)
{
        /* librdkafka 2.0 stops fetching a partition for a fixed second
         * once its queue passes either threshold (bench/REPORT.md), so the
         * message-count one is set out of the way and memory is bounded by
         * bytes alone. statistics.interval.ms feeds the consumer-lag
         * gauge (src/engine/lag.c). */
        char kbytes[32];
        const char *const defaults[] = {"queued.max.messages.kbytes",
                                        kbytes,
                                        "enable.auto.commit",
                                        "false",
                                        "auto.offset.reset",
                                        "earliest",
                                        "queued.min.messages",
                                        "10000000",
                                        "enable.partition.eof",
                                        "false",
                                        "statistics.interval.ms",
                                        "5000",
                                        NULL};
        const struct mls_config *cfg = e->cfg;
        rd_kafka_conf_t *conf;
        rd_kafka_topic_partition_list_t *topics;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk;
        char kerr[512];
        size_t ksize;

        snprintf(kbytes, sizeof(kbytes), "%lld", prefetch_kbytes(cfg));
        conf = mls_kafka_conf(cfg, RD_KAFKA_CONSUMER, defaults, errstr,
                              errstr_size);
        if (!conf)
                return NULL;
        /* the bound in force (KAFKA_CONF_* may have set it), for
         * prefetch_check() */
        ksize = sizeof(kbytes);
        if (rd_kafka_conf_get(conf, "queued.max.messages.kbytes", kbytes,
                              &ksize) == RD_KAFKA_CONF_OK)
                e->prefetch_bytes = strtoll(kbytes, NULL, 10) * 1024;

        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
        e->lag = mls_lag_new(e->metrics);
        if (!e->lag) {
                snprintf(errstr, errstr_size, "out of memory");
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        if (e->txn)
                mls_lag_use_stored(e->lag);
        rd_kafka_conf_set_stats_cb(conf, on_stats);
        rd_kafka_conf_set_opaque(conf, e);
        rk = mls_kafka_consumer_new(conf, kerr, sizeof(kerr));
        if (!rk) {
                snprintf(errstr, errstr_size, "kafka consumer: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        e->queue = rd_kafka_queue_get_consumer(rk);
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, cfg->kafka_inference_topic,
                                          RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err) {
                snprintf(errstr, errstr_size,
                         "KAFKA_INFERENCE_TOPIC %s: cannot subscribe: %s",
                         cfg->kafka_inference_topic, rd_kafka_err2str(err));
                rd_kafka_queue_destroy(e->queue);
                e->queue = NULL;
                rd_kafka_destroy(rk);
                return NULL;
        }
        return rk;
}

/*
 * The run loop sleeps in rd_kafka_consumer_poll() until a message, a
 * librdkafka callback or its next deadline (heartbeat, commit, batch),
 * not on a clock. What happens on other threads wakes it through here: a
 * stop or reload (from a signal handler, so only sem_post(), which is
 * async-signal-safe) and a model the loader finished. The waker thread
 * turns each post into rd_kafka_queue_yield(), which makes the poll
 * return at once (or the next one, if the loop is not polling).
 */
static void wake_loop(void *opaque)
{
        sem_post(&((mls_engine_t *)opaque)->wake);
}

static void *waker_main(void *arg)
{
        mls_engine_t *e = arg;

        for (;;) {
                if (sem_wait(&e->wake) < 0) {
                        if (errno == EINTR)
                                continue;
                        return NULL;
                }
                if (atomic_load(&e->waker_quit))
                        return NULL;
                rd_kafka_queue_yield(e->queue);
        }
}

static int waker_start(mls_engine_t *e, char *errstr, size_t errstr_size)
{
        sigset_t all, old;
        int rc;

        /* signals are for the other threads */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&e->waker, NULL, waker_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc) {
                snprintf(errstr, errstr_size, "starting a thread: %s",
                         strerror(rc));
                return -1;
        }
        pthread_setname_np(e->waker, "mls:wake");
        e->waker_started = 1;
        return 0;
}

static void waker_stop(mls_engine_t *e)
{
        if (!e->waker_started)
                return;
        atomic_store(&e->waker_quit, 1);
        sem_post(&e->wake);
        pthread_join(e->waker, NULL);
        e->waker_started = 0;
}

/* The single model (ML_MODEL_FRAMEWORK + ML_MODEL_PATH)
 * or the repository (ML_MODEL_REPOSITORY), and the loader thread that
 * reloads them; see src/model/registry.h. */
static int load_model(mls_engine_t *e, char *errstr, size_t errstr_size)
{
        const struct mls_config *cfg = e->cfg;
        struct mls_registry_conf rc = {
                .repository = cfg->model_repository,
                .framework = cfg->model_framework,
                .path = cfg->model_path,
                .output = cfg->model_output,
                .input_width = (size_t)cfg->model_input_width,
                .threads = (int)cfg->model_threads,
                .poll_ms = (int)cfg->model_poll_interval_ms,
                .metrics = e->metrics,
                .on_change = wake_loop,
                .on_change_opaque = e,
        };

        e->models = mls_registry_new(&rc, errstr, errstr_size);
        return e->models ? 0 : -1;
}

static int has_topic(const char *t)
{
        return t && *t;
}

/* The transactional producer of ML_EXACTLY_ONCE and its controller; the
 * topics' max.message.bytes go to *out_max and *dlq_max (0: unknown). */
static int txn_producer_new(mls_engine_t *e, size_t *out_max, size_t *dlq_max,
                            char *errstr, size_t errstr_size)
{
        const struct mls_config *cfg = e->cfg;
        const char *topics[2];
        size_t limits[2], n = 0, batch_max = 0;
        char id[512], used[512], why[256];

        if (has_topic(cfg->kafka_output_topic))
                topics[n++] = cfg->kafka_output_topic;
        if (has_topic(cfg->kafka_dlq_topic))
                topics[n++] = cfg->kafka_dlq_topic;
        if (n == 0) {
                snprintf(errstr, errstr_size,
                         "ML_EXACTLY_ONCE (--exactly-once) true: needs "
                         "KAFKA_OUTPUT_TOPIC or KAFKA_DLQ_TOPIC for its "
                         "transactions to write to");
                return -1;
        }
        mls_kafka_topic_max_bytes(cfg, topics, n, limits, 5000, why,
                                  sizeof(why));
        for (size_t i = 0; i < n; i++) {
                if (!limits[i])
                        mls_warn("max.message.bytes of %s not read (%s): a "
                                 "message larger than it takes will cost an "
                                 "aborted transaction",
                                 topics[i], why);
                if (limits[i] && (!batch_max || limits[i] < batch_max))
                        batch_max = limits[i];
                if (topics[i] == cfg->kafka_output_topic)
                        *out_max = limits[i];
                else
                        *dlq_max = limits[i];
        }
        snprintf(id, sizeof(id), "mlstream.%s.%s", cfg->kafka_consumer_group,
                 e->engine_id);
        e->producers.rk[0] = mls_kafka_txn_producer_new(
                cfg, id, batch_max, used, sizeof(used), errstr, errstr_size);
        if (!e->producers.rk[0])
                return -1;
        e->txn = mls_txn_new(e->producers.rk[0], used, e->metrics);
        if (!e->txn) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        e->rewind = rd_kafka_topic_partition_list_new(8);
        if (!cfg->engine_id && strcmp(id, used) == 0)
                mls_warn("ML_EXACTLY_ONCE without ML_ENGINE_ID: "
                         "transactional.id %s is new at every start, so "
                         "after a crash this engine's partitions wait until "
                         "its open transaction times out; set ML_ENGINE_ID "
                         "to a name unique to this engine that it keeps "
                         "across restarts",
                         used);
        mls_info("exactly-once: transactional.id %s, committed every %lld ms",
                 used, cfg->transaction_interval_ms);
        return 0;
}

/* 1 when REDIS_CLUSTER=true. */
static int redis_cluster(const struct mls_config *cfg)
{
        return cfg->redis_cluster && strcmp(cfg->redis_cluster, "true") == 0;
}

/* Makes e->publisher the Redis Cluster sink for the seeds in REDIS_URL and
 * logs them (host:port only). Returns 0, or -1 with errstr (naming
 * REDIS_URL when it is at fault; never the password). */
static int cluster_publisher_new(mls_engine_t *e, char *errstr,
                                 size_t errstr_size)
{
        const struct mls_config *cfg = e->cfg;
        struct mls_redis_url *seeds = NULL;
        struct mls_buf names;
        size_t nseeds = 0;
        char why[512];
        int rc = -1;

        if (mls_cluster_seeds_parse(cfg->redis_url, &seeds, &nseeds, why,
                                    sizeof(why)) < 0) {
                snprintf(errstr, errstr_size, "%s (with REDIS_CLUSTER=true)",
                         why);
                return -1;
        }
        if (mls_cluster_sink_new(
                    &e->publisher, seeds, nseeds, cfg->redis_channel,
                    (size_t)cfg->batch_max_output_bytes,
                    (size_t)cfg->batch_max_messages, e->metrics) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
        }
        mls_buf_init(&names, 65536);
        for (size_t i = 0; i < nseeds; i++)
                mls_buf_printf(&names,
                               strchr(seeds[i].host, ':') ? "%s[%s]:%d"
                                                          : "%s%s:%d",
                               i ? ", " : "", seeds[i].host, seeds[i].port);
        mls_info("redis cluster: %zu seed node(s) from REDIS_URL: %.*s", nseeds,
                 (int)names.len, names.len ? names.data : "");
        mls_buf_free(&names);
        rc = 0;
out:
        memset(seeds, 0, nseeds * sizeof(*seeds)); /* the password */
        free(seeds);
        return rc;
}

/* Makes e->shadow the publisher of shadow versions' predictions: the same
 * kind as e->publisher, to ML_STREAM_SHADOW_CHANNEL, connected on first
 * use (only a model with a shadow uses it). Its connection metrics are its
 * own, so that they do not mix with the publisher's. With an in-process
 * publisher (mlstream up without REDIS_URL) shadows are compared only. */
static int shadow_sink_new(mls_engine_t *e, int in_process, char *errstr,
                           size_t errstr_size)
{
        const struct mls_config *cfg = e->cfg;
        struct mls_redis_url *seeds = NULL, url;
        size_t nseeds = 0;
        int rc = -1;

        if (in_process)
                return 0;
        e->shadow_metrics = mls_metrics_new();
        if (!e->shadow_metrics) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        if (redis_cluster(cfg)) {
                if (mls_cluster_seeds_parse(cfg->redis_url, &seeds, &nseeds,
                                            errstr, errstr_size) < 0)
                        return -1;
                rc = mls_cluster_sink_new(
                        &e->shadow, seeds, nseeds, cfg->shadow_channel,
                        (size_t)cfg->batch_max_output_bytes,
                        (size_t)cfg->batch_max_messages, e->shadow_metrics);
                memset(seeds, 0, nseeds * sizeof(*seeds)); /* the password */
                free(seeds);
        } else {
                if (mls_redis_url_parse(cfg->redis_url, &url, errstr,
                                        errstr_size) < 0)
                        return -1;
                rc = mls_redis_sink_new(&e->shadow, &url, cfg->shadow_channel,
                                        MLS_REDIS_AT_MOST_ONCE |
                                                (mls_channel_per_model(cfg)
                                                         ? MLS_REDIS_PER_MODEL
                                                         : 0),
                                        e->shadow_metrics);
                memset(&url, 0, sizeof(url));
        }
        if (rc < 0)
                snprintf(errstr, errstr_size, "out of memory");
        return rc;
}

mls_engine_t *mls_engine_new(const struct mls_config *cfg,
                             mls_metrics_t *metrics, struct mls_sink publisher,
                             char *errstr, size_t errstr_size)
{
        mls_engine_t *e = calloc(1, sizeof(*e));
        struct mls_pipeline_conf pc = {0};
        struct mls_kafka_sink_conf kc = {0};
        struct mls_redis_url url;
        size_t out_max = 0, dlq_max = 0;
        char host[200];

        if (!e) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        sem_init(&e->wake, 0, 0);
        e->cfg = cfg;
        e->metrics = metrics;
        e->done_offsets = rd_kafka_topic_partition_list_new(8);
        if (cfg->engine_id) {
                snprintf(e->engine_id, sizeof(e->engine_id), "%s",
                         cfg->engine_id);
        } else {
                if (gethostname(host, sizeof(host)) < 0)
                        snprintf(host, sizeof(host), "engine");
                host[sizeof(host) - 1] = '\0';
                snprintf(e->engine_id, sizeof(e->engine_id), "%s-%d", host,
                         (int)getpid());
        }
        e->s_consumed =
                mls_series(mls_metric_new(metrics, MLS_COUNTER,
                                          "ml_stream_messages_consumed_total",
                                          "Messages received from Kafka.", NULL,
                                          NULL, NULL, 0),
                           NULL, NULL);
        e->s_ready = mls_series(
                mls_metric_new(metrics, MLS_GAUGE, "ml_stream_engine_ready",
                               "1 while the engine is ready (joined the "
                               "group, publisher up).",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        e->s_assigned =
                mls_series(mls_metric_new(metrics, MLS_GAUGE,
                                          "ml_stream_kafka_assigned_partitions",
                                          "Partitions assigned to this engine.",
                                          NULL, NULL, NULL, 0),
                           NULL, NULL);
        mls_series_set(
                mls_series(mls_metric_new(metrics, MLS_GAUGE,
                                          "ml_stream_build_info",
                                          "Build information.", "version",
                                          "component", NULL, 0),
                           MLS_VERSION, "engine"),
                1);
        if (!publisher.ops && redis_cluster(cfg) &&
            !mls_channel_per_model(cfg)) {
                snprintf(errstr, errstr_size,
                         "REDIS_CLUSTER=true (--redis-cluster) needs "
                         "ML_STREAM_REDIS_CHANNEL_MODE=per-model "
                         "(--redis-channel-mode), not %s: a Redis Cluster "
                         "shards Pub/Sub by channel, so predictions must go "
                         "to one channel per model",
                         cfg->redis_channel_mode);
                goto fail;
        }
        if (load_model(e, errstr, errstr_size) < 0)
                goto fail;
        if (publisher.ops) {
                e->publisher = publisher;
        } else if (redis_cluster(cfg)) {
                if (cluster_publisher_new(e, errstr, errstr_size) < 0)
                        goto fail;
        } else {
                if (mls_redis_url_parse(cfg->redis_url, &url, errstr,
                                        errstr_size) < 0)
                        goto fail;
                if (mls_redis_sink_new(&e->publisher, &url, cfg->redis_channel,
                                       mls_channel_per_model(cfg)
                                               ? MLS_REDIS_PER_MODEL
                                               : 0,
                                       metrics) < 0)
                        goto oom;
        }
        if (shadow_sink_new(e, publisher.ops != NULL, errstr, errstr_size) < 0)
                goto fail;
        if (mls_config_exactly_once(cfg)) {
                if (txn_producer_new(e, &out_max, &dlq_max, errstr,
                                     errstr_size) < 0)
                        goto fail;
        } else if ((cfg->kafka_output_topic && *cfg->kafka_output_topic) ||
                   (cfg->kafka_dlq_topic && *cfg->kafka_dlq_topic)) {
                if (mls_kafka_producers_init(&e->producers, cfg, errstr,
                                             errstr_size) < 0)
                        goto fail;
        }
        pc.default_model_id = cfg->default_model_id;
        pc.engine_id = e->engine_id;
        pc.limits.max_bytes = (size_t)cfg->max_message_bytes;
        pc.limits.max_rows = (size_t)cfg->max_rows_per_message;
        pc.limits.max_width = (size_t)cfg->max_row_width;
        pc.batch_max_rows = (size_t)cfg->batch_max_rows;
        pc.batch_max_messages = (size_t)cfg->batch_max_messages;
        pc.batch_max_bytes = (size_t)cfg->batch_max_bytes;
        pc.batch_max_wait_ns = cfg->batch_max_wait_us * 1000;
        pc.ack_wait_ns = ACK_WAIT_MS * 1000000LL;
        pc.max_model_series = (size_t)cfg->metrics_max_models;
        pc.payload_limit = (size_t)cfg->batch_max_output_bytes;
        pc.resolve = resolve_model;
        pc.list_routes = list_routes;
        pc.resolve_opaque = e;
        pc.publisher = e->publisher;
        kc.producers = &e->producers;
        kc.fallback = cfg->kafka_dlq_topic;
        kc.dead_letter_max = (size_t)cfg->dead_letter_max_bytes;
        kc.stop = &e->stop;
        kc.stop_by = &e->stop_by;
        kc.drain_ms = cfg->shutdown_timeout_ms;
        kc.txn = e->txn;
        kc.fallback_max_bytes = dlq_max;
        if (cfg->kafka_output_topic && *cfg->kafka_output_topic) {
                kc.topic = cfg->kafka_output_topic;
                kc.max_bytes = out_max;
                if (mls_kafka_sink_new(&e->output, &kc, metrics) < 0)
                        goto oom;
        }
        if (cfg->kafka_dlq_topic && *cfg->kafka_dlq_topic) {
                kc.topic = cfg->kafka_dlq_topic;
                kc.max_bytes = dlq_max;
                if (mls_kafka_sink_new(&e->deadletter, &kc, metrics) < 0)
                        goto oom;
        }
        pc.output = e->output;
        pc.deadletter = e->deadletter;
        pc.shadow = e->shadow;
        pc.done = record_done;
        pc.done_opaque = e;
        pc.metrics = metrics;
        e->pipeline = mls_pipeline_new(&pc);
        if (!e->pipeline)
                goto oom;
        if (cfg->prometheus_port >= 0) {
                e->httpd = mls_httpd_start(
                        cfg->prometheus_host, (int)cfg->prometheus_port,
                        http_handler, e, errstr, errstr_size);
                if (!e->httpd) {
                        char tmp[512];
                        snprintf(tmp, sizeof(tmp),
                                 "ML_PROMETHEUS_PORT (--prometheus-port): %s",
                                 errstr);
                        snprintf(errstr, errstr_size, "%s", tmp);
                        goto fail;
                }
                mls_info("metrics on http://%s:%d/metrics",
                         cfg->prometheus_host, mls_httpd_port(e->httpd));
        }
        e->consumer = consumer_new(e, errstr, errstr_size);
        if (!e->consumer || waker_start(e, errstr, errstr_size) < 0)
                goto fail;
        return e;
oom:
        snprintf(errstr, errstr_size, "out of memory");
fail:
        mls_engine_free(e);
        return NULL;
}

int mls_engine_ready(mls_engine_t *e)
{
        return atomic_load(&e->ready);
}

void mls_engine_stop(mls_engine_t *e)
{
        atomic_store(&e->stop, 1);
        wake_loop(e);
}

void mls_engine_reload(mls_engine_t *e)
{
        atomic_store(&e->reload, 1);
        wake_loop(e);
}

/* With nothing to score, heartbeats are the engine's only traffic to the
 * publisher, so they are what finds it gone (or silent, by its reply
 * deadline): that is the down state as for a batch, reconnected with
 * backoff and not ready meanwhile. */
static void heartbeat(mls_engine_t *e)
{
        struct mls_buf b;
        char errstr[256];

        /* The batch Redis may be working on is settled first: flushing the
         * heartbeat reads its replies too, and a heartbeat Redis never
         * answers must not leave a batch it did answer unacknowledged (to
         * be sent twice, or to hold up a stop until the drain time ends). */
        if (mls_pipeline_settle(e->pipeline, errstr, sizeof(errstr)) < 0) {
                go_down(e, "delivery failed", errstr);
                return;
        }
        if (!e->txn)
                store_offsets(e);
        mls_buf_init(&b, 1 << 20);
        mls_pipeline_heartbeat(e->pipeline, &b);
        if (e->publisher.ops->send(e->publisher.ctx, NULL, NULL, b.data, b.len,
                                   NULL, NULL) < 0) {
                snprintf(errstr, sizeof(errstr), "%s not connected",
                         e->publisher.ops->name);
                go_down(e, "heartbeat not delivered", errstr);
        } else if (e->publisher.ops->flush(e->publisher.ctx, errstr,
                                           sizeof(errstr)) < 0) {
                go_down(e, "heartbeat not delivered", errstr);
        }
        mls_buf_free(&b);
}

/* While a sink is down: keep the group membership alive, hold anything the
 * consumer still hands out, and retry with exponential backoff. */
static void run_down(mls_engine_t *e)
{
        rd_kafka_message_t *m;
        char errstr[512];
        int64_t now = mls_clock_mono_ns();
        int64_t until = e->next_retry_ns;
        int wait_ms;

        if (e->txn && mls_txn_open(e->txn) && e->txn_due_ns < until)
                until = e->txn_due_ns;
        wait_ms = (int)((until - now) / 1000000);
        m = rd_kafka_consumer_poll(e->consumer, wait_ms > 0 ? wait_ms : 0);
        if (m) {
                if (m->err)
                        rd_kafka_message_destroy(m);
                else
                        hold_message(e, m);
        }
        /* what the open transaction holds is delivered: the pending batch
         * produces nothing before it is published */
        if (e->txn && txn_due(e, mls_clock_mono_ns()))
                txn_commit(e);
        if (mls_clock_mono_ns() < e->next_retry_ns)
                return;
        if (mls_sink_connect(&e->publisher, errstr, sizeof(errstr)) < 0) {
                mls_warn("still down: %s", errstr);
        } else if (deliver(e, errstr, sizeof(errstr)) != DOWN) {
                mls_info("delivery resumed");
                atomic_store(&e->sink_down, 0);
                set_paused(e, 0);
                for (size_t i = 0; i < e->nheld; i++)
                        add_message(e, e->held[i]);
                e->nheld = 0;
                update_ready(e);
                return;
        } else {
                mls_warn("still down: %s", errstr);
        }
        e->backoff_ms *= 2;
        if (e->backoff_ms > e->cfg->redis_retry_max_ms)
                e->backoff_ms = e->cfg->redis_retry_max_ms;
        e->next_retry_ns = mls_clock_mono_ns() + e->backoff_ms * 1000000LL;
}

/* Polls the consumer until the commit in flight is answered or the drain
 * deadline passes; messages it hands out now are left for Kafka to
 * redeliver. */
static void wait_commit(mls_engine_t *e)
{
        int left;

        while (e->committing && (left = drain_left_ms(e)) > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(
                        e->consumer, left < 100 ? left : 100);
                if (m)
                        rd_kafka_message_destroy(m);
        }
}

/* Commits everything delivered, within the drain deadline. */
static void final_commit(mls_engine_t *e)
{
        if (e->txn) {
                txn_commit(e);
                return;
        }
        store_offsets(e);
        wait_commit(e);
        commit_stored(e, 1);
        wait_commit(e); /* on_commit() chains what was stored meanwhile */
        if (e->committing || e->uncommitted) {
                mls_warn("final offset commit not answered in time; Kafka "
                         "may redeliver the last batches");
                e->coordinator_ok = 0;
        }
}

/* wait_ms, or less if the deadline (monotonic ns) comes first: rounded up
 * to whole ms, so that the loop wakes at or after it. No division when
 * the loop is not going to wait (a backlog's every turn). */
static int wait_until(int wait_ms, int64_t deadline, int64_t now)
{
        int64_t left;

        if (wait_ms <= 0)
                return wait_ms;
        left = (deadline - now + 999999) / 1000000;
        return left < wait_ms ? (int)(left > 0 ? left : 0) : wait_ms;
}

/* Messages taken from Kafka and not yet delivered: the batch, one
 * submitted ahead and not acknowledged, and those held while down. */
static size_t undelivered(const mls_engine_t *e)
{
        return mls_pipeline_pending(e->pipeline) + e->nheld;
}

int mls_engine_run(mls_engine_t *e)
{
        const int hb_ms = (int)e->cfg->heartbeat_interval_ms;
        const int64_t hb_ns = hb_ms * 1000000LL;
        int64_t next_hb = 0, now = 0;
        int now_fresh = 0;
        char errstr[512];
        int status = 0;

        if (e->txn) {
                int r = txn_init(e);
                if (r)
                        return r < 0;
        }
        if (mls_sink_connect(&e->publisher, errstr, sizeof(errstr)) < 0) {
                mls_warn("%s not reachable yet, will retry: %s",
                         e->publisher.ops->name, errstr);
                atomic_store(&e->sink_down, 1);
                e->backoff_ms = BACKOFF_START_MS;
                e->next_retry_ns = mls_clock_mono_ns();
        }
        e->next_commit_ns =
                mls_clock_mono_ns() + e->cfg->commit_interval_ms * 1000000LL;
        mls_info("engine %s consuming %s as group %s", e->engine_id,
                 e->cfg->kafka_inference_topic, e->cfg->kafka_consumer_group);
        for (;;) {
                rd_kafka_message_t *m;
                int wait_ms;

                /* a message just added without a flush came moments ago:
                 * its time serves this turn (one clock read a message) */
                if (!now_fresh)
                        now = mls_clock_mono_ns();
                now_fresh = 0;
                e->now_ns = now;

                if (e->fatal) {
                        status = 1;
                        break;
                }
                if (atomic_load(&e->stop)) {
                        if (!e->stop_by)
                                e->stop_by = now + e->cfg->shutdown_timeout_ms *
                                                           1000000LL;
                        /* a publisher that is down holds up nothing
                         * when nothing waits for it (an idle engine) */
                        if (atomic_load(&e->sink_down) ? undelivered(e) == 0
                                                       : flush(e) == 0)
                                break;
                        if (now > e->stop_by) {
                                mls_error("stopping with %zu message(s) "
                                          "undelivered; Kafka will redeliver "
                                          "them",
                                          undelivered(e));
                                status = 1;
                                break;
                        }
                }
                /* SIGHUP asks the loader thread to load
                 * every model again; models it finished (after SIGHUP or a
                 * changed file) are swapped in here, between batches, so
                 * each message is scored exactly once, by one version. */
                if (atomic_exchange(&e->reload, 0))
                        mls_registry_reload(e->models);
                mls_registry_apply(e->models);
                if (atomic_load(&e->sink_down)) {
                        run_down(e);
                        continue;
                }
                commit_stored(e, 0); /* held back by ML_COMMIT_INTERVAL_MS */
                if (now >= next_hb) {
                        heartbeat(e);
                        next_hb = now + hb_ns;
                }
                /* idle, the next heartbeat is the only deadline */
                wait_ms = mls_pipeline_wait_ms(e->pipeline, now, hb_ms);
                wait_ms = wait_until(wait_ms, next_hb, now);
                /* offsets held back by ML_COMMIT_INTERVAL_MS are committed
                 * when it ends, also if nothing else arrives */
                if (e->uncommitted && !e->committing)
                        wait_ms = wait_until(wait_ms, e->next_commit_ns, now);
                if (e->txn && mls_txn_open(e->txn)) {
                        if (txn_due(e, now)) {
                                txn_commit(e);
                                continue;
                        }
                        wait_ms = wait_until(wait_ms, e->txn_due_ns, now);
                }
                m = rd_kafka_consumer_poll(e->consumer, wait_ms);
                if (m && m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                mls_warn("kafka: %s",
                                         rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        if (rd_kafka_fatal_error(e->consumer, errstr,
                                                 sizeof(errstr))) {
                                mls_error("kafka fatal error: %s", errstr);
                                status = 1;
                                break;
                        }
                        continue;
                }
                if (m && e->queued_known)
                        e->queued_known--;
                else if (!m)
                        e->queued_known = 0;
                now = m ? add_message(e, m) : mls_clock_mono_ns();
                /* Age closes a batch, but only once the messages already
                 * in the consumer's queue have joined it (up to its size
                 * limits, which bound it also when the queue never runs
                 * dry). A batch is then at least what arrived while the
                 * last one was delivered, so with ML_BATCH_MAX_WAIT_US=0
                 * nothing waits for the batch timer and batches still grow
                 * with the rate. */
                if (mls_pipeline_due(e->pipeline, now) &&
                    !(m && !mls_pipeline_full(e->pipeline) && more_queued(e))) {
                        /* Redis works on this batch while the engine
                         * scores the next; at a low rate, its reply is
                         * read when the next batch is sent instead of
                         * waking the engine on its own */
                        flush_batch(e, 1);
                        prefetch_check(e);
                } else if (!m) {
                        prefetch_check(e);
                } else {
                        now_fresh = 1;
                }
        }
        if (!e->fatal) {
                mls_shutdown_step("committing the last offsets");
                final_commit(e);
        }
        mls_info("engine stopped");
        return status;
}

/* Leaves the group (revoking the assignment through on_rebalance) within
 * the drain deadline; past it, the consumer is destroyed without leaving
 * and the group coordinator notices after the session timeout. */
static void close_consumer(mls_engine_t *e)
{
        rd_kafka_queue_t *q;
        rd_kafka_error_t *err;
        int left, flags = 0;

        e->closing = 1;
        if (!e->coordinator_ok || drain_left_ms(e) == 0) {
                /* leaving needs the coordinator, and librdkafka 2.0 cannot
                 * be destroyed while a leave waits for one that is gone */
                if (atomic_load(&e->joined))
                        mls_warn("not leaving the consumer group: its "
                                 "coordinator did not answer; the group "
                                 "notices after session.timeout.ms");
                else
                        mls_warn("stopped before joining the consumer "
                                 "group; a join in flight expires after "
                                 "session.timeout.ms");
                rd_kafka_destroy_flags(e->consumer,
                                       RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
                return;
        }
        mls_shutdown_step("leaving the Kafka consumer group");
        q = rd_kafka_queue_new(e->consumer);
        err = rd_kafka_consumer_close_queue(e->consumer, q);
        if (err) {
                mls_warn("leaving the consumer group: %s",
                         rd_kafka_error_string(err));
                rd_kafka_error_destroy(err);
                flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
        }
        while (!flags && !rd_kafka_consumer_closed(e->consumer)) {
                rd_kafka_event_t *ev;
                if ((left = drain_left_ms(e)) == 0) {
                        mls_warn("left the consumer group uncleanly: the "
                                 "shutdown timeout passed");
                        flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
                        break;
                }
                ev = rd_kafka_queue_poll(q, left < 100 ? left : 100);
                if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                        on_rebalance(e->consumer, rd_kafka_event_error(ev),
                                     rd_kafka_event_topic_partition_list(ev),
                                     e);
                if (ev)
                        rd_kafka_event_destroy(ev);
        }
        rd_kafka_queue_destroy(q);
        mls_shutdown_step("destroying the Kafka consumer");
        rd_kafka_destroy_flags(e->consumer, flags);
}

/* Delivers what the producer still holds within the drain deadline, then
 * gives up on the rest (Kafka redelivers their inputs: their offsets were
 * not committed); the purged messages' reports free what the sinks keep
 * for each message. */
static void close_producer(mls_engine_t *e, rd_kafka_t **rkp)
{
        rd_kafka_t *rk = *rkp;

        if (!rk)
                return;
        mls_shutdown_step("flushing a Kafka producer");
        if (rd_kafka_flush(rk, drain_left_ms(e)) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE |
                                           RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_flush(rk, 500);
        }
        mls_shutdown_step("destroying a Kafka producer");
        rd_kafka_destroy(rk);
        *rkp = NULL;
}

void mls_engine_free(mls_engine_t *e)
{
        if (!e)
                return;
        waker_stop(e);
        if (e->consumer) {
                if (e->pipeline)
                        mls_pipeline_discard(e->pipeline, NULL, record_release,
                                             e);
                for (size_t i = 0; i < e->nheld; i++)
                        rd_kafka_message_destroy(e->held[i]);
                e->nheld = 0;
                if (e->queue)
                        rd_kafka_queue_destroy(e->queue);
                e->queue = NULL;
                close_consumer(e);
        }
        mls_lag_free(e->lag);
        mls_httpd_stop(e->httpd);
        mls_pipeline_free(e->pipeline);
        /* the first one's reports may still make the second */
        close_producer(e, &e->producers.rk[0]);
        close_producer(e, &e->producers.rk[1]);
        mls_kafka_producers_fini(&e->producers);
        mls_shutdown_step("closing the sinks");
        mls_txn_free(e->txn);
        if (e->rewind)
                rd_kafka_topic_partition_list_destroy(e->rewind);
        mls_sink_destroy(&e->output);
        mls_sink_destroy(&e->deadletter);
        mls_sink_destroy(&e->publisher);
        mls_sink_destroy(&e->shadow);
        mls_metrics_free(e->shadow_metrics);
        mls_registry_free(e->models);
        rd_kafka_topic_partition_list_destroy(e->done_offsets);
        free(e->held);
        sem_destroy(&e->wake);
        free(e);
}
