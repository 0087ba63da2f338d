/*
 * Model adapters. Each framework is a const struct mls_model_type of
 * function pointers; a loaded model is an mls_model_t that owns the
 * adapter's context.
 *
 * identity is linked into every binary. torch and tensorflow are built only
 * when CMake finds their framework, as plugins (mlstream-torch.so,
 * mlstream-tensorflow.so) that mls_model_type_find() opens on first use, so
 * that processes which never score with a framework do not pay for loading
 * it (libtorch alone pulls in ~280 shared libraries).
 *
 * Threads: a loaded model is used by one thread at a time (the engine's
 * scoring thread); load and unload may run on any thread, also while
 * another model scores.
 */
#ifndef MLS_MODEL_H
#define MLS_MODEL_H

#include <stddef.h>

#include "common/metrics.h"

/* A dense row-major float32 matrix. */
struct mls_tensor {
        float *data;
        size_t rows, cols;
};

struct mls_model_conf {
        const char *path; /* artifact; NULL for identity */
        int threads;      /* 0: framework default */
        /* Numbers per input row the model takes; 0: what the artifact says
         * (discovered by the adapter), or any width if it says nothing.
         * A value the artifact contradicts fails the load. */
        size_t input_width;
        /* Where input_width was set, for errors that blame it, e.g.
         * "ML_MODEL_INPUT_WIDTH"; NULL: "input width". */
        const char *input_width_origin;
        /* Most rows per adapter call; larger inputs are split and their
         * outputs joined. 0: no limit. */
        size_t max_batch_rows;
        /* Which output to score with when the model has several: a name
         * (dict key, signature output) or an index. NULL: the adapter's
         * documented default. */
        const char *output;
};

struct mls_model_type {
        const char *name;
        /* Loads the artifact. Returns 0 and sets *ctxp, or -1 with errstr. */
        int (*load)(const struct mls_model_conf *conf, void **ctxp,
                    char *errstr, size_t errstr_size);
        /*
         * Scores in (rows x cols). On success sets *out to a matrix with
         * in->rows rows; out->data is owned by the adapter and valid until
         * the next infer or unload. Returns -1 with errstr on failure.
         * in->data stays the caller's and is not modified.
         */
        int (*infer)(void *ctx, const struct mls_tensor *in,
                     struct mls_tensor *out, char *errstr, size_t errstr_size);
        void (*unload)(void *ctx);
        /* Optional: the input width the model needs, or 0 for any. */
        size_t (*input_width)(void *ctx);
        /* Optional: the version of the framework library the adapter was
         * built with (e.g. "2.21.0"), for `mlstream --version`. */
        const char *(*framework_version)(void);
};

extern const struct mls_model_type mls_model_identity;

/*
 * What a framework plugin exports under the symbol "mls_model_plugin".
 * abi must be MLS_MODEL_PLUGIN_ABI and version this build's MLS_VERSION, so
 * that a plugin from another build is refused rather than misused.
 */
#define MLS_MODEL_PLUGIN_ABI 2
struct mls_model_plugin {
        int abi;
        const char *version;
        const struct mls_model_type *type;
};

typedef struct mls_model mls_model_t;

/*
 * Finds the adapter called name among those built in, opening its plugin on
 * first use. Returns NULL with an errstr that lists the built-in ones, or
 * says why a built-in plugin could not be opened. Any thread.
 */
const struct mls_model_type *mls_model_type_find(const char *name, char *errstr,
                                                 size_t errstr_size);
/* Writes the built-in framework names, comma separated ("identity, torch"). */
void mls_model_types_list(char *out, size_t out_size);

/* Loads a model. Returns NULL with the reason (naming the path) in errstr.
 * The conf's strings need not outlive the call. */
mls_model_t *mls_model_load(const struct mls_model_type *type,
                            const struct mls_model_conf *conf, char *errstr,
                            size_t errstr_size);
/* Unloads the model; NULL is ignored. */
void mls_model_free(mls_model_t *m);
const char *mls_model_framework(const mls_model_t *m);
/* 0 when any width is accepted. */
size_t mls_model_input_width(const mls_model_t *m);
/* The version of the model's artifact, set by whoever loaded it (the
 * registry: 16 hex digits hashing the names and bytes of its files, "" for
 * a model without files, such as identity). Part of every inference id. */
void mls_model_set_version(mls_model_t *m, const char *version);
const char *mls_model_version(const mls_model_t *m);
/* The version name users see (the payload's model_version): the version's
 * sub-directory for a model with versions, else the content version above;
 * "" for a model without files. At most MLS_MODEL_VERSION_MAX bytes. */
#define MLS_MODEL_VERSION_MAX 64
void mls_model_set_version_name(mls_model_t *m, const char *name);
const char *mls_model_version_name(const mls_model_t *m);

/*
 * What serves one model id: the serving version and, during a rollout, a
 * canary that takes a sticky share of the inputs and a shadow that scores
 * the serving version's inputs again for comparison only. The registry
 * owns routes; the engine thread uses one until the next
 * mls_registry_apply().
 */
struct mls_model_route {
        mls_model_t *serving;
        mls_model_t *canary; /* NULL: none */
        double canary_share; /* of inputs, [0, 1] */
        /* The input's field that picks canary or serving: "" the input_id,
         * else the name of a top-level metadata field. */
        char canary_key[128];
        mls_model_t *shadow; /* NULL: none */
        /* A one-output shadow agrees when within this of the serving
         * value; a several-output one when its arg-max is the same. */
        double shadow_tolerance;
};

/* Observes the duration of every adapter call (seconds) into the histogram
 * series s; NULL stops observing. */
void mls_model_observe(mls_model_t *m, mls_series_t *s);
/* Buckets for per-call durations, from 10 us to 10 s. */
extern const double mls_model_call_buckets[];
extern const size_t mls_model_call_nbuckets;
/*
 * Checks the width, then calls the adapter, in pieces of at most
 * max_batch_rows rows; see mls_model_type.infer. out->data is valid until
 * the next call or mls_model_free().
 */
int mls_model_infer(mls_model_t *m, const struct mls_tensor *in,
                    struct mls_tensor *out, char *errstr, size_t errstr_size);

#endif
