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

/*
 * Builds a librdkafka configuration for a client of the given type:
 * defaults (NULL-terminated name/value pairs), then KAFKA_CONFIG_FILE, then
 * KAFKA_CONF_* settings, then bootstrap.servers. KAFKA_CONF_* properties
 * that only the other type of client understands are left out, so that one
 * environment can tune consumers and producers without warnings. Returns
 * NULL with errstr naming the file, line or property that failed.
 */
rd_kafka_conf_t *mls_kafka_conf(const struct mls_config *cfg,
                                rd_kafka_type_t type,
                                const char *const *defaults, char *errstr,
                                size_t errstr_size);

extern const struct mls_sink_ops mls_kafka_sink_ops;

/* A sink producing to topic over producer rk (shared by several sinks;
 * the caller owns rk and single, made with mls_kafka_producer_new(), single
 * with one message per batch). A message the topic refuses for good (too
 * large, invalid) is sent again alone over single, since the broker refuses
 * whole batches; refused alone, it is replaced by a dead letter on fallback
 * (the dead-letter topic; NULL or "": counted and skipped) holding its first
 * dead_letter_max bytes and headers mls.original.size, mls.truncated,
 * mls.source.*, mls.error.*; if that is refused too, it is counted in
 * ml_stream_kafka_refused_total{action="dropped"} and skipped. Returns NULL
 * when out of memory. */
void *mls_kafka_sink_new(rd_kafka_t *rk, rd_kafka_t *single, const char *topic,
                         const char *fallback, size_t dead_letter_max,
                         mls_metrics_t *metrics);
void mls_kafka_sink_free(void *ctx);
/* Flushes wait up to 30 s for the broker, or only until *stop_by once
 * *stop is set (the engine's stop request, noticed even in the middle of a
 * flush): *stop_by is the engine's drain deadline, set here to now +
 * drain_ms if the engine has not set it yet. Engine thread only. NULL ctx
 * is ignored. */
void mls_kafka_sink_watch_stop(void *ctx, const atomic_int *stop,
                               int64_t *stop_by, int64_t drain_ms);

/* A producer whose delivery reports feed the kafka sinks; single: one
 * message per batch (for messages refused in a batch). */
rd_kafka_t *mls_kafka_producer_new(const struct mls_config *cfg, int single,
                                   char *errstr, size_t errstr_size);

#endif
