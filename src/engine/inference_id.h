/*
 * Inference ids that are a function of what was scored: a name-based UUID
 * (RFC 4122 version 5, SHA-1) in the namespace MLS_INFERENCE_ID_NAMESPACE
 * of the name
 *
 *     <topic>/<partition>/<offset>/<model version>/<model id>
 *
 * (partition and offset in decimal; the version is "" for a model without
 * files). A message scored twice by the same model version (redelivered
 * after a crash or a rebalance, by this engine or another) gets the same
 * id, so consumers can drop the repeat; Python's
 * uuid.uuid5(uuid.UUID(MLS_INFERENCE_ID_NAMESPACE), name) gives the same.
 *
 * Threads: one generator per thread.
 */
#ifndef MLS_INFERENCE_ID_H
#define MLS_INFERENCE_ID_H

#include <stdint.h>

#define MLS_INFERENCE_ID_NAMESPACE "f46be9bf-7623-585b-9ca0-435ffcedda0f"
#define MLS_INFERENCE_ID_LEN 36 /* 8-4-4-4-12 hex digits and dashes */

typedef struct mls_inference_ids mls_inference_ids_t;

/* NULL when out of memory. */
mls_inference_ids_t *mls_inference_ids_new(void);
void mls_inference_ids_free(mls_inference_ids_t *g);

/* Writes the id (MLS_INFERENCE_ID_LEN characters and a NUL) into out.
 * Returns 0, or -1 if the digest failed: out is then a random (version 4)
 * id, unique but not the same when the message is scored again. */
int mls_inference_id(mls_inference_ids_t *g, const char *topic,
                     int32_t partition, int64_t offset, const char *version,
                     const char *model_id, char out[MLS_INFERENCE_ID_LEN + 1]);

#endif
