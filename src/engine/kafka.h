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

#include "common/config.h"
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
 * the caller owns rk, which must have been made with
 * mls_kafka_producer_new()). */
void *mls_kafka_sink_new(rd_kafka_t *rk, const char *topic);
void mls_kafka_sink_free(void *ctx);

/* A producer whose delivery reports feed the kafka sinks. */
rd_kafka_t *mls_kafka_producer_new(const struct mls_config *cfg, char *errstr,
                                   size_t errstr_size);

#endif
