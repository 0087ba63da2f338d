/*
 * Where the engine's output goes: a sink takes payloads and acknowledges
 * them in bulk. Redis Pub/Sub, a Kafka topic and the in-process bus are
 * sinks; unit tests use fakes.
 *
 * Threads: a sink is driven by the engine thread only.
 */
#ifndef MLS_SINK_H
#define MLS_SINK_H

#include <stddef.h>

struct mls_record;

struct mls_sink_ops {
        const char *name;
        /* Queues one payload. rec is the input it came from (for keys and
         * headers); reason/detail are set for dead letters, else NULL.
         * Returns -1 if it cannot even be queued. */
        int (*send)(void *ctx, const struct mls_record *rec,
                    const char *payload, size_t len, const char *reason,
                    const char *detail);
        /* Waits until everything queued is acknowledged. Returns 0, or -1
         * with errstr when anything was not: then all payloads queued since
         * the last successful flush must be sent again. */
        int (*flush)(void *ctx, char *errstr, size_t errstr_size);
        /* Optional: tries to (re)connect; 0 when connected. */
        int (*reconnect)(void *ctx, char *errstr, size_t errstr_size);
};

struct mls_sink {
        const struct mls_sink_ops *ops;
        void *ctx;
};

#endif
