/*
 * The embedded Kafka-protocol broker of `mlstream up`: librdkafka's mock
 * cluster (in memory, not durable, for development) with a relay that
 * offers it on a fixed address such as 127.0.0.1:9092.
 */
#ifndef MLS_EMBEDDED_KAFKA_H
#define MLS_EMBEDDED_KAFKA_H

#include <stddef.h>

typedef struct mls_embedded_kafka mls_embedded_kafka_t;

/* Starts one mock broker, creates topic with partitions, and relays
 * host:port to it. Returns NULL with errstr (naming a port in use). */
mls_embedded_kafka_t *mls_embedded_kafka_start(const char *host, int port,
                                               const char *topic,
                                               int partitions, char *errstr,
                                               size_t errstr_size);
/* "host:port" that clients bootstrap from. */
const char *mls_embedded_kafka_bootstrap(const mls_embedded_kafka_t *k);
void mls_embedded_kafka_stop(mls_embedded_kafka_t *k);

#endif
