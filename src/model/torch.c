/*
 * The torch adapter: TorchScript files through libtorch (torch_shim.cpp).
 * Built as the plugin mlstream-torch.so when CMake finds libtorch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "model/torch_shim.h"

struct torch_ctx {
        mls_torch_t *t;
        size_t width;
};

static int torch_load(const struct mls_model_conf *conf, void **ctxp,
                      char *errstr, size_t errstr_size)
{
        struct torch_ctx *c;
        char err[400];

        if (!conf->path) {
                snprintf(errstr, errstr_size,
                         "the torch framework needs a TorchScript file");
                return -1;
        }
        /* libtorch's own message leaves strerror out. */
        if (access(conf->path, R_OK) != 0) {
                snprintf(errstr, errstr_size, "cannot load TorchScript %s: %s",
                         conf->path, strerror(errno));
                return -1;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        c->t = mls_torch_load(conf->path, conf->threads, conf->output,
                              conf->input_width, &c->width, err, sizeof(err));
        if (!c->t) {
                snprintf(errstr, errstr_size, "cannot load TorchScript %s: %s",
                         conf->path, err);
                free(c);
                return -1;
        }
        *ctxp = c;
        return 0;
}

static int torch_infer(void *ctx, const struct mls_tensor *in,
                       struct mls_tensor *out, char *errstr, size_t errstr_size)
{
        struct torch_ctx *c = ctx;
        const float *o;
        size_t cols;

        if (mls_torch_forward(c->t, in->data, in->rows, in->cols, &o, &cols,
                              errstr, errstr_size) < 0)
                return -1;
        /* The shim's result is read-only to us; mls_tensor is not const
         * because identity hands its input back. */
        out->data = (float *)o;
        out->rows = in->rows;
        out->cols = cols;
        return 0;
}

static void torch_unload(void *ctx)
{
        struct torch_ctx *c = ctx;

        mls_torch_free(c->t);
        free(c);
}

static size_t torch_input_width(void *ctx)
{
        return ((struct torch_ctx *)ctx)->width;
}

static const struct mls_model_type torch_type = {
        .name = "torch",
        .load = torch_load,
        .infer = torch_infer,
        .unload = torch_unload,
        .input_width = torch_input_width,
        .framework_version = mls_torch_version,
};

const struct mls_model_plugin mls_model_plugin = {
        .abi = MLS_MODEL_PLUGIN_ABI,
        .version = MLS_VERSION,
        .type = &torch_type,
};
