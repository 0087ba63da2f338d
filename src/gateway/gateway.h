/*
 * `mlstream gateway`: Redis (or the in-process bus of `mlstream up`) ->
 * monitor + GraphQL subscriptions over WebSocket, GraphQL queries over
 * HTTP, a small page on `/`, and the gateway's `/metrics`, `/healthz` and
 * `/readyz`, all on one listener (GATEWAY_HOST:GATEWAY_PORT).
 *
 * One libuv loop, owned by the gateway and run by mls_gateway_run() on the
 * calling thread, carries libwebsockets (HTTP + WebSocket), the hiredis
 * subscriber and every timer; nothing on it blocks. See
 * docs/internals/gateway.md.
 */
#ifndef MLS_GATEWAY_H
#define MLS_GATEWAY_H

#include <stddef.h>

#include "common/config.h"
#include "common/metrics.h"

typedef struct mls_gateway mls_gateway_t;

/*
 * Creates the gateway and binds its listener. bus 0: subscribe to Redis
 * (REDIS_URL, ML_STREAM_REDIS_CHANNEL); bus 1: no Redis, payloads arrive
 * through mls_gateway_publish(). cfg and metrics are borrowed and must
 * outlive the gateway. Returns NULL with a reason in errstr that names the
 * setting at fault (a port in use names the port and GATEWAY_PORT /
 * --gateway-port). Call from the thread that will run it.
 */
mls_gateway_t *mls_gateway_new(const struct mls_config *cfg,
                               mls_metrics_t *metrics, int bus, char *errstr,
                               size_t errstr_size);
/* Runs the loop on the calling thread until mls_gateway_stop(); returns
 * the exit status (0 after a requested stop). Call at most once. */
int mls_gateway_run(mls_gateway_t *g);
/* Asks run() to close every connection and return. Any thread;
 * async-signal-safe (an atomic flag and uv_async_send()). */
void mls_gateway_stop(mls_gateway_t *g);
/* Bus mode: hands one payload (copied) to the loop. Any thread. Returns 0,
 * or -1 when the bounded queue is full (the payload is dropped and
 * counted) or the gateway is not in bus mode. */
int mls_gateway_publish(mls_gateway_t *g, const char *payload, size_t len);
/* The bound port (GATEWAY_PORT 0 picks a free one). */
int mls_gateway_port(const mls_gateway_t *g);
/* Frees the gateway; run() must have returned (or never been called). */
void mls_gateway_free(mls_gateway_t *g);

#endif
