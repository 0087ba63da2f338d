/*
 * Consumer lag per assigned partition, read from librdkafka's statistics
 * (`statistics.interval.ms`) and exported as the gauge
 * ml_stream_kafka_consumer_lag{topic,partition}: the messages in the
 * partition after this group's committed offset (librdkafka's
 * `consumer_lag`).
 *
 * Only partitions currently assigned to this consumer have a series, so the
 * engines of one group never export the same partition twice and
 * `sum by (topic)` over them is the group's lag. A partition whose lag
 * librdkafka does not know yet (no committed offset, or no fetch response
 * since the assignment) has no series until it does.
 *
 * Thread: the thread that polls the consumer (the engine thread); librdkafka
 * calls the statistics and rebalance callbacks there. Not shared.
 */
#ifndef MLS_LAG_H
#define MLS_LAG_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "common/metrics.h"

typedef struct mls_lag mls_lag_t;

/* Registers the gauge family in metrics. Returns NULL when out of memory. */
mls_lag_t *mls_lag_new(mls_metrics_t *metrics);

/* Reads librdkafka's consumer_lag_stored (after the offset last stored)
 * instead of consumer_lag (after the committed offset the consumer knows):
 * under ML_EXACTLY_ONCE the transactions commit the offsets, which the
 * consumer never sees, and the engine stores each committed offset. Where
 * nothing is stored, consumer_lag still serves: librdkafka forgets stored
 * offsets at each assignment and reads the committed ones, so a partition
 * handed over with nothing left to consume has its lag from them. */
void mls_lag_use_stored(mls_lag_t *lag);

/* Frees the tracker. Its series stay in the registry (which may already be
 * gone); call mls_lag_retain() with an empty list first to drop them. */
void mls_lag_free(mls_lag_t *lag);

/*
 * Updates the gauges from one statistics document json[0..json_len) (not
 * necessarily NUL-terminated) for the partitions in assigned, then drops
 * the series of partitions not in assigned. Partitions with an unknown lag
 * (-1 or missing) keep whatever series they had.
 * Returns 0, or -1 with the reason in errstr when the document is not the
 * JSON librdkafka writes; the gauges are then left as they were.
 */
int mls_lag_update(mls_lag_t *lag, const char *json, size_t json_len,
                   const rd_kafka_topic_partition_list_t *assigned,
                   char *errstr, size_t errstr_size);

/* Drops the series of partitions not in assigned (NULL: none assigned). */
void mls_lag_retain(mls_lag_t *lag,
                    const rd_kafka_topic_partition_list_t *assigned);

/*
 * The consumer's side, for librdkafka callbacks on the polling thread:
 * mls_lag_on_stats() reads rk's current assignment and calls
 * mls_lag_update() (a malformed document is logged at debug level);
 * mls_lag_on_rebalance(), called after an assign or unassign, drops the
 * series of revoked partitions at once and returns the number of partitions
 * now assigned (0 when the assignment cannot be read). lag may be NULL:
 * then only the count is returned.
 */
void mls_lag_on_stats(mls_lag_t *lag, rd_kafka_t *rk, const char *json,
                      size_t json_len);
int mls_lag_on_rebalance(mls_lag_t *lag, rd_kafka_t *rk);

#endif
