/*
 * Kafka clients for the engine: configuration assembly (our defaults, the
 * properties file, KAFKA_CONF_*), the consumer, and a producer sink for the
 * output and dead-letter topics.
 *
 * Threads: the engine thread, except where noted.
 */
#ifndef MLS_KAFKA_H
#define MLS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>

#include "common/config.h"
#include "common/metrics.h"
#include "engine/sink.h"
#include "engine/txn.h"

/*
 * Builds a librdkafka configuration for a client of the given type:
 * defaults (NULL-terminated name/value pairs), then KAFKA_CONFIG_FILE, then
 * KAFKA_CONF_* settings, then the properties the engine sets itself
 * (bootstrap.servers; a consumer's group.id and offset storage; what
 * ML_EXACTLY_ONCE needs), which the file and KAFKA_CONF_* may only give
 * the same values. KAFKA_CONF_* properties that only the other type of
 * client understands are left out, so that one environment can tune
 * consumers and producers without warnings. Returns NULL with errstr
 * naming the file, line or property that failed.
 */
rd_kafka_conf_t *mls_kafka_conf(const struct mls_config *cfg,
                                rd_kafka_type_t type,
                                const char *const *defaults, char *errstr,
                                size_t errstr_size);

/* Sends librdkafka's log lines for clients made from conf through our
 * logger (ML_LOG_FORMAT, rate-limited). mls_kafka_conf() does this. */
void mls_kafka_conf_log(rd_kafka_conf_t *conf);

/* rd_kafka_new() for the consumer, with librdkafka's threads given a
 * millisecond of timer slack (kafka.c says why); errstr as there. */
rd_kafka_t *mls_kafka_consumer_new(rd_kafka_conf_t *conf, char *errstr,
                                   size_t errstr_size);

/* rd_kafka_seek_partitions(), waiting up to timeout_ms for each
 * partition's seek. librdkafka before 2.1.0 (#4230) waited timeout_ms
 * microseconds instead: under load a seek then "timed out" although it
 * was going ahead. */
rd_kafka_error_t *mls_kafka_seek(rd_kafka_t *rk,
                                 rd_kafka_topic_partition_list_t *parts,
                                 int timeout_ms);

/* The timeout to hand librdkafka version (rd_kafka_version()) for a seek
 * that should wait timeout_ms: what mls_kafka_seek() passes. */
int mls_kafka_seek_timeout(int version, int timeout_ms);

/*
 * The producers that the kafka sinks share: rk[0] batches, rk[1] sends
 * each message alone (for messages a topic refused in a batch). Each is
 * made when a sink first needs it, so an engine whose only Kafka output is
 * its dead-letter topic runs no producer (nor its threads, timers and
 * connections) until a message is bad. Their delivery reports feed the
 * sinks.
 */
struct mls_kafka_producers {
        rd_kafka_t *rk[2];        /* NULL until made */
        rd_kafka_conf_t *conf[2]; /* what each is made from, until then */
};

/* Builds both producers' configurations and checks them, as librdkafka
 * does when it makes a client, so that a wrong setting stops the engine at
 * start-up and not at its first bad message. Returns 0, or -1 with errstr
 * naming the setting; p is then empty. */
int mls_kafka_producers_init(struct mls_kafka_producers *p,
                             const struct mls_config *cfg, char *errstr,
                             size_t errstr_size);

/* Producer i of p, made now if it was not yet; NULL, with errstr saying
 * why, if it cannot be. */
rd_kafka_t *mls_kafka_producers_get(struct mls_kafka_producers *p, int i,
                                    char *errstr, size_t errstr_size);

/* Frees the configurations of producers never made (the caller flushes
 * and destroys those that were). */
void mls_kafka_producers_fini(struct mls_kafka_producers *p);

/* A sink producing to a topic over a producer that several sinks share. */
struct mls_kafka_sink_conf {
        /* The producers, owned by the caller; rk[1] (one message per
         * batch) is not used when txn is set. */
        struct mls_kafka_producers *producers;
        const char *topic;
        /* Where replacements for refused messages go: the dead-letter
         * topic (NULL or "": none). */
        const char *fallback;
        size_t dead_letter_max;
        /* Flushes wait up to 30 s for the broker, or only until *stop_by
         * once *stop is set (the engine's stop request, noticed even in the
         * middle of a flush); *stop_by is the engine's drain deadline, set
         * by the sink to now + drain_ms if the engine has not set it yet.
         * stop NULL: no stop to watch. */
        const atomic_int *stop;
        int64_t *stop_by;
        int64_t drain_ms;
        /* ML_EXACTLY_ONCE: producers->rk[0] is transactional and
         * txn remembers what the topics refused; max_bytes and
         * fallback_max_bytes are the max.message.bytes of topic and
         * fallback (0: not known). Messages larger are replaced by their
         * truncated dead letter, or skipped, before they are produced. */
        mls_txn_t *txn;
        size_t max_bytes, fallback_max_bytes;
};

/* Makes *sink a producer to conf->topic. A message the topic refuses for
 * good (too large, invalid) is sent again alone over producers->rk[1], since
 * the broker refuses whole batches; refused alone, it is replaced by a dead
 * letter on the fallback topic holding its first dead_letter_max bytes and
 * headers mls.original.size, mls.truncated, mls.source.*, mls.error.*; if
 * that is refused too (or there is no fallback), it is counted in
 * ml_stream_kafka_refused_total{action="dropped"} and skipped. Returns 0,
 * or -1 when out of memory. */
int mls_kafka_sink_new(struct mls_sink *sink,
                       const struct mls_kafka_sink_conf *conf,
                       mls_metrics_t *metrics);

/*
 * The transactional producer of ML_EXACTLY_ONCE, feeding the kafka sinks:
 * transactional.id id unless KAFKA_CONF_TRANSACTIONAL_ID (or the
 * properties file) names one (id_used gets the one in use),
 * transaction.timeout.ms 10000 unless set, batch.size at most batch_max
 * (0: librdkafka's). Fails, naming the settings, when
 * ML_TRANSACTION_INTERVAL_MS is over half the transaction timeout. The
 * caller calls mls_txn_init() before producing.
 */
rd_kafka_t *mls_kafka_txn_producer_new(const struct mls_config *cfg,
                                       const char *id, size_t batch_max,
                                       char *id_used, size_t id_used_size,
                                       char *errstr, size_t errstr_size);

/* Asks the broker for max.message.bytes of topics[0..n) (n <= 2) within
 * timeout_ms: limits[i] gets it, or 0 when it could not be read (errstr
 * says why). Returns how many were read. Blocks; for start-up. */
size_t mls_kafka_topic_max_bytes(const struct mls_config *cfg,
                                 const char *const *topics, size_t n,
                                 size_t *limits, int timeout_ms, char *errstr,
                                 size_t errstr_size);

#endif
