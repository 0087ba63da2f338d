#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mls_model {
        const struct mls_model_type *type;
        void *ctx;
        size_t width;
};

/* Adapters compiled into this binary. Optional ones are added by the build
 * when their framework is found. */
static const struct mls_model_type *const builtin[] = {
        &mls_model_identity,
};

const struct mls_model_type *mls_model_type_find(const char *name, char *errstr,
                                                 size_t errstr_size)
{
        size_t n = sizeof(builtin) / sizeof(builtin[0]), off;

        for (size_t i = 0; i < n; i++)
                if (strcmp(builtin[i]->name, name) == 0)
                        return builtin[i];
        off = (size_t)snprintf(errstr, errstr_size,
                               "model framework \"%s\" is not built into "
                               "this mlstream; built in:",
                               name);
        for (size_t i = 0; i < n && off < errstr_size; i++)
                off += (size_t)snprintf(errstr + off, errstr_size - off,
                                        "%s %s", i ? "," : "",
                                        builtin[i]->name);
        return NULL;
}

mls_model_t *mls_model_load(const struct mls_model_type *type,
                            const struct mls_model_conf *conf, char *errstr,
                            size_t errstr_size)
{
        mls_model_t *m = calloc(1, sizeof(*m));

        if (!m) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        m->type = type;
        if (type->load(conf, &m->ctx, errstr, errstr_size) < 0) {
                free(m);
                return NULL;
        }
        m->width = type->input_width ? type->input_width(m->ctx) : 0;
        return m;
}

void mls_model_free(mls_model_t *m)
{
        if (!m)
                return;
        m->type->unload(m->ctx);
        free(m);
}

const char *mls_model_framework(const mls_model_t *m)
{
        return m->type->name;
}

size_t mls_model_input_width(const mls_model_t *m)
{
        return m->width;
}

int mls_model_infer(mls_model_t *m, const struct mls_tensor *in,
                    struct mls_tensor *out, char *errstr, size_t errstr_size)
{
        if (m->width && in->cols != m->width) {
                snprintf(errstr, errstr_size,
                         "input has %zu features per row, the model takes %zu",
                         in->cols, m->width);
                return -1;
        }
        if (m->type->infer(m->ctx, in, out, errstr, errstr_size) < 0)
                return -1;
        if (out->rows != in->rows) {
                snprintf(errstr, errstr_size,
                         "model returned %zu rows for %zu input rows",
                         out->rows, in->rows);
                return -1;
        }
        return 0;
}
