/*
 * The synthetic event source of `mlstream up --demo`: a thread that produces
 * input messages (DESIGN §3) for a few models at a steady rate.
 */
#ifndef MLS_DEMO_H
#define MLS_DEMO_H

#include <stddef.h>

typedef struct mls_demo mls_demo_t;

/* Starts producing rate messages per second to topic on bootstrap.
 * Returns NULL with errstr. */
mls_demo_t *mls_demo_start(const char *bootstrap, const char *topic, int rate,
                           char *errstr, size_t errstr_size);
/* Stops the thread, flushes and frees d. */
void mls_demo_stop(mls_demo_t *d);

#endif
