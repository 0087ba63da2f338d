/*
 * A TCP relay on its own thread: accepts on a local address and splices
 * each connection to a fixed upstream host:port. `mlstream up` uses it to
 * offer the embedded broker on the well-known 127.0.0.1:9092 (librdkafka's
 * mock brokers bind random ports; clients bootstrap through the relay and
 * then follow the addresses the metadata advertises).
 */
#ifndef MLS_TCP_RELAY_H
#define MLS_TCP_RELAY_H

#include <stddef.h>

typedef struct mls_tcp_relay mls_tcp_relay_t;

/* Binds host:port (0: any free port) and starts relaying to upstream
 * ("host:port"). Returns NULL with errstr naming the address (e.g. the port is
 * in use). */
mls_tcp_relay_t *mls_tcp_relay_start(const char *host, int port,
                                     const char *upstream, char *errstr,
                                     size_t errstr_size);
/* The bound port (useful when 0 was asked for). */
int mls_tcp_relay_port(const mls_tcp_relay_t *r);
/* Stops the thread, closes every connection and frees r. */
void mls_tcp_relay_stop(mls_tcp_relay_t *r);

#endif
