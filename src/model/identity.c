/*
 * The identity model: predictions are the features themselves. It is the
 * fallback when no model path is configured, and the reference for
 * measuring the pipeline without a framework's cost.
 */
#include <stdlib.h>

#include "model/model.h"

static int identity_load(const struct mls_model_conf *conf, void **ctxp,
                         char *errstr, size_t errstr_size)
{
        (void)conf;
        (void)errstr;
        (void)errstr_size;
        *ctxp = NULL;
        return 0;
}

static int identity_infer(void *ctx, const struct mls_tensor *in,
                          struct mls_tensor *out, char *errstr,
                          size_t errstr_size)
{
        (void)ctx;
        (void)errstr;
        (void)errstr_size;
        *out = *in;
        return 0;
}

static void identity_unload(void *ctx)
{
        (void)ctx;
}

const struct mls_model_type mls_model_identity = {
        .name = "identity",
        .load = identity_load,
        .infer = identity_infer,
        .unload = identity_unload,
};
