/*
 * Exactly-once to the output topic (ML_EXACTLY_ONCE): the transactional
 * producer's transactions, and what the Kafka sinks on it remember about
 * messages a topic refused.
 *
 * The engine begins a transaction before a batch produces, sends the
 * batches' input offsets with it and commits it every
 * ML_TRANSACTION_INTERVAL_MS; the predictions and dead letters of those
 * batches and their offsets become visible together or not at all. An
 * abortable error aborts it: the engine then consumes again from the last
 * commit (engine.c).
 *
 * A message a topic refuses for good puts the transaction in an abortable
 * state: nothing can be sent alone beside it, as the at-least-once sink
 * does. Its input is remembered here with what to do on the next attempt,
 * one step further each time it is refused, as the at-least-once sink's
 * stages: send it alone, then a truncated dead letter in its place, then
 * skip it. A poison message costs at most three aborted transactions, and
 * the sinks check sizes before producing, so that it usually costs none.
 *
 * Threads: the engine thread (the sinks' delivery reports run there too).
 */
#ifndef MLS_TXN_H
#define MLS_TXN_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/metrics.h"

typedef struct mls_txn mls_txn_t;

enum mls_txn_status {
        MLS_TXN_OK,
        MLS_TXN_RETRY, /* retriable, nothing lost: call again later */
        MLS_TXN_ABORT, /* the transaction failed: abort it (mls_txn_abort) */
        MLS_TXN_FATAL, /* the producer is unusable (e.g. fenced): exit */
};

/* What a sink does with the message of an input at its next attempt. */
enum mls_txn_retry {
        MLS_TXN_SEND,     /* as usual */
        MLS_TXN_ALONE,    /* in a record batch of its own */
        MLS_TXN_TRUNCATE, /* a truncated dead letter in its place */
        MLS_TXN_SKIP,     /* nothing: count and log it */
};

/* A controller for rk, made with mls_kafka_txn_producer_new() (and owned
 * by the caller) with transactional.id id. Registers
 * ml_stream_kafka_transactions_total. Returns NULL when out of memory. */
mls_txn_t *mls_txn_new(rd_kafka_t *rk, const char *id, mls_metrics_t *metrics);
void mls_txn_free(mls_txn_t *t);

/* rd_kafka_init_transactions(): fences an older producer with the same
 * transactional.id and aborts its open transaction. Blocks up to
 * timeout_ms. Returns MLS_TXN_OK, MLS_TXN_RETRY or MLS_TXN_FATAL (errstr
 * says why). */
enum mls_txn_status mls_txn_init(mls_txn_t *t, int timeout_ms, char *errstr,
                                 size_t errstr_size);

/* Begins a transaction. MLS_TXN_OK or MLS_TXN_FATAL. */
enum mls_txn_status mls_txn_begin(mls_txn_t *t, char *errstr,
                                  size_t errstr_size);
/* 1 between mls_txn_begin() and the commit or abort that ends it. */
int mls_txn_open(const mls_txn_t *t);

/* Sends offsets (the next offset to consume per input partition; may be
 * empty) with the consumer group metadata cgmd and commits the open
 * transaction, retrying retriable errors a few times. Blocks up to the
 * transaction's remaining time (transaction.timeout.ms). Returns
 * MLS_TXN_OK, MLS_TXN_ABORT (the transaction is still open: abort it) or
 * MLS_TXN_FATAL. */
enum mls_txn_status
mls_txn_commit(mls_txn_t *t, const rd_kafka_topic_partition_list_t *offsets,
               const rd_kafka_consumer_group_metadata_t *cgmd, char *errstr,
               size_t errstr_size);

/* Aborts the open transaction (if any): what it produced is never seen
 * by read_committed consumers and its offsets are not committed. Delivery
 * failures of messages produced before the abort are then ignored by the
 * sinks (mls_txn_epoch()). MLS_TXN_OK or MLS_TXN_FATAL. */
enum mls_txn_status mls_txn_abort(mls_txn_t *t, char *errstr,
                                  size_t errstr_size);

/* Counts aborts: a delivery report for a message produced in an earlier
 * epoch belongs to an aborted transaction. */
unsigned mls_txn_epoch(const mls_txn_t *t);

/* What to do with the message of input topic/partition/offset. */
enum mls_txn_retry mls_txn_retry(const mls_txn_t *t, const char *topic,
                                 int32_t partition, int64_t offset);
/* Records that a topic refused the message of that input for good, so
 * that the next attempt does next (never a step back). The transaction
 * must be aborted. */
void mls_txn_refused(mls_txn_t *t, const char *topic, int32_t partition,
                     int64_t offset, enum mls_txn_retry next);
/* Forgets the inputs before offsets (committed), or, with
 * whole_partitions, every input of those partitions (revoked). */
void mls_txn_forget(mls_txn_t *t,
                    const rd_kafka_topic_partition_list_t *offsets,
                    int whole_partitions);

#endif
