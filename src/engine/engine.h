/*
 * `mlstream engine`: Kafka -> model -> Redis (+ output and dead-letter
 * topics), with metrics. Runs on the calling thread until SIGTERM/SIGINT.
 */
#ifndef MLS_ENGINE_H
#define MLS_ENGINE_H

#include "common/config.h"
#include "common/metrics.h"
#include "engine/sink.h"

typedef struct mls_engine mls_engine_t;

/*
 * Creates the engine: loads the model, creates the Kafka clients, the
 * publisher (Redis from cfg, or the given sink when publisher.ops is set,
 * as `mlstream up` does with its in-process bus) and the metrics listener.
 * Returns NULL with a reason that names the setting at fault.
 */
mls_engine_t *mls_engine_new(const struct mls_config *cfg,
                             mls_metrics_t *metrics, struct mls_sink publisher,
                             char *errstr, size_t errstr_size);
/* Consumes until mls_engine_stop() or a signal; returns the exit status. */
int mls_engine_run(mls_engine_t *e);
/* Asks run() to finish its batch, commit and return. Async-signal-safe. */
void mls_engine_stop(mls_engine_t *e);
/* Asks run() to reload models at the next batch boundary. Signal-safe. */
void mls_engine_reload(mls_engine_t *e);
/* 1 while the engine is connected to its publisher and has joined the
 * consumer group. Any thread. */
int mls_engine_ready(mls_engine_t *e);
void mls_engine_free(mls_engine_t *e);

#endif
