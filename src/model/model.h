/*
 * Model adapters. Each framework is a const struct mls_model_type of
 * function pointers; a loaded model is an mls_model_t that owns the
 * adapter's context.
 *
 * Threads: a loaded model is used by one thread at a time (the engine's
 * scoring thread); load and unload may run on any thread.
 */
#ifndef MLS_MODEL_H
#define MLS_MODEL_H

#include <stddef.h>

/* A dense row-major float32 matrix. */
struct mls_tensor {
        float *data;
        size_t rows, cols;
};

struct mls_model_conf {
        const char *path; /* artifact; NULL for identity */
        int threads;      /* 0: framework default */
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
         */
        int (*infer)(void *ctx, const struct mls_tensor *in,
                     struct mls_tensor *out, char *errstr, size_t errstr_size);
        void (*unload)(void *ctx);
        /* Optional: the input width the model needs, or 0 for any. */
        size_t (*input_width)(void *ctx);
};

extern const struct mls_model_type mls_model_identity;

typedef struct mls_model mls_model_t;

/*
 * Finds the adapter called name among those built in. Returns NULL with an
 * errstr that lists the built-in ones.
 */
const struct mls_model_type *mls_model_type_find(const char *name, char *errstr,
                                                 size_t errstr_size);

/* Loads a model. Returns NULL with the reason (naming the path) in errstr. */
mls_model_t *mls_model_load(const struct mls_model_type *type,
                            const struct mls_model_conf *conf, char *errstr,
                            size_t errstr_size);
void mls_model_free(mls_model_t *m);
const char *mls_model_framework(const mls_model_t *m);
/* 0 when any width is accepted. */
size_t mls_model_input_width(const mls_model_t *m);
/* Checks the width, then calls the adapter; see mls_model_type.infer. */
int mls_model_infer(mls_model_t *m, const struct mls_tensor *in,
                    struct mls_tensor *out, char *errstr, size_t errstr_size);

#endif
