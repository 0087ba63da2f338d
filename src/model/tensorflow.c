/*
 * The tensorflow adapter: SavedModel directories through the TensorFlow C
 * API (libtensorflow_cc.so.2 from the tensorflow-cpu wheel). Built as the
 * plugin mlstream-tensorflow.so when CMake finds the wheel's files.
 *
 * The model is loaded with the tag "serve"; its "serving_default" signature
 * names the tensors: exactly one float32 input of shape [-1, width] (or an
 * unknown shape), and a float32 output of shape [-1, outputs] or [-1] --
 * the only one, or the one named by the `output` setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorflow/c/c_api.h>

#include "model/model.h"
#include "model/tf_signature.h"

#define SIGNATURE "serving_default"
#define TAG "serve"

struct tf_ctx {
        TF_Graph *graph;
        TF_Session *session;
        TF_Status *status;
        TF_Output in, out;
        size_t width;
        TF_Tensor *last; /* the latest result, kept for the caller */
};

/* TF_Status messages can span lines (stack of contexts); keep the first. */
static void status_err(TF_Status *st, const char *what, char *errstr,
                       size_t errstr_size)
{
        const char *msg = TF_Message(st);
        size_t n = strcspn(msg, "\n");

        snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, msg);
}

static void tf_unload(void *ctx)
{
        struct tf_ctx *c = ctx;

        if (!c)
                return;
        if (c->last)
                TF_DeleteTensor(c->last);
        if (c->session) {
                TF_CloseSession(c->session, c->status);
                TF_DeleteSession(c->session, c->status);
        }
        if (c->graph)
                TF_DeleteGraph(c->graph);
        TF_DeleteStatus(c->status);
        free(c);
}

/* Appends a varint-encoded field to a ConfigProto being built. */
static size_t put_varint_field(unsigned char *p, unsigned field, unsigned v)
{
        size_t n = 0;

        p[n++] = (unsigned char)(field << 3); /* wire type 0 */
        do {
                p[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                v >>= 7;
        } while (v);
        return n;
}

static const char *dtype_name(int dtype)
{
        switch (dtype) {
        case TF_FLOAT:
                return "float32";
        case TF_DOUBLE:
                return "float64";
        case TF_INT32:
                return "int32";
        case TF_INT64:
                return "int64";
        case TF_STRING:
                return "string";
        default:
                return "a type other than float32";
        }
}

static int find_tensor(struct tf_ctx *c, const struct mls_tf_tensor_info *ti,
                       TF_Output *o, char *errstr, size_t errstr_size)
{
        char op[256];
        int index;

        if (mls_tf_tensor_name_split(ti->name, op, sizeof(op), &index) < 0 ||
            !(o->oper = TF_GraphOperationByName(c->graph, op))) {
                snprintf(errstr, errstr_size,
                         "the signature names tensor \"%s\", which is not in "
                         "the graph",
                         ti->name);
                return -1;
        }
        o->index = index;
        return 0;
}

/* Chooses the input and output tensors from the signature. */
static int bind_signature(struct tf_ctx *c, const struct mls_model_conf *conf,
                          const struct mls_tf_signature *sig, char *errstr,
                          size_t errstr_size)
{
        const struct mls_tf_tensor_info *in, *out = NULL;
        char keys[300] = "";
        size_t off = 0;

        if (sig->ninputs != 1) {
                snprintf(errstr, errstr_size,
                         "signature " SIGNATURE " has %zu inputs; mlstream "
                         "feeds exactly one [rows, width] float32 tensor",
                         sig->ninputs);
                return -1;
        }
        in = &sig->inputs[0];
        if (in->dtype != TF_FLOAT) {
                snprintf(errstr, errstr_size,
                         "input \"%s\" is %s; mlstream feeds float32", in->key,
                         dtype_name(in->dtype));
                return -1;
        }
        if (in->rank != -1 && in->rank != 2) {
                snprintf(errstr, errstr_size,
                         "input \"%s\" has rank %d; mlstream feeds [rows, "
                         "width]",
                         in->key, in->rank);
                return -1;
        }
        if (in->rank == 2 && in->dims[0] > 0) {
                snprintf(errstr, errstr_size,
                         "input \"%s\" has a fixed batch size of %lld; "
                         "export it with a batch dimension of None",
                         in->key, (long long)in->dims[0]);
                return -1;
        }
        c->width = in->rank == 2 && in->dims[1] > 0 ? (size_t)in->dims[1] : 0;
        for (size_t i = 0; i < sig->noutputs; i++) {
                const struct mls_tf_tensor_info *o = &sig->outputs[i];
                if (conf->output ? strcmp(o->key, conf->output) == 0
                                 : sig->noutputs == 1)
                        out = o;
                if (off < sizeof(keys))
                        off += (size_t)snprintf(keys + off, sizeof(keys) - off,
                                                "%s%s", i ? ", " : "", o->key);
        }
        if (!out) {
                if (conf->output)
                        snprintf(errstr, errstr_size,
                                 "signature " SIGNATURE " has no output "
                                 "\"%s\"; it has: %s",
                                 conf->output, keys);
                else
                        snprintf(errstr, errstr_size,
                                 "signature " SIGNATURE " has outputs %s; "
                                 "choose one: output = NAME in its "
                                 "model.conf, or ML_MODEL_OUTPUT with "
                                 "ML_MODEL_PATH",
                                 sig->noutputs ? keys : "(none)");
                return -1;
        }
        if (out->dtype != TF_FLOAT) {
                snprintf(errstr, errstr_size,
                         "output \"%s\" is %s; mlstream reads float32",
                         out->key, dtype_name(out->dtype));
                return -1;
        }
        if (find_tensor(c, in, &c->in, errstr, errstr_size) < 0 ||
            find_tensor(c, out, &c->out, errstr, errstr_size) < 0)
                return -1;
        return 0;
}

static int tf_load(const struct mls_model_conf *conf, void **ctxp, char *errstr,
                   size_t errstr_size)
{
        const char *tags[] = {TAG};
        struct tf_ctx *c;
        TF_SessionOptions *opts;
        TF_Buffer *meta;
        struct mls_tf_signature *sig;
        unsigned char cfg[16];
        char err[400];
        int rc = -1;

        if (!conf->path) {
                snprintf(errstr, errstr_size,
                         "the tensorflow framework needs a SavedModel "
                         "directory");
                return -1;
        }
        c = calloc(1, sizeof(*c));
        sig = calloc(1, sizeof(*sig));
        if (!c || !sig) {
                free(c);
                free(sig);
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        c->status = TF_NewStatus();
        c->graph = TF_NewGraph();
        opts = TF_NewSessionOptions();
        meta = TF_NewBuffer();
        if (conf->threads > 0) {
                /* ConfigProto: intra_op_parallelism_threads = 2,
                 * inter_op_parallelism_threads = 5. */
                size_t n = put_varint_field(cfg, 2, (unsigned)conf->threads);
                n += put_varint_field(cfg + n, 5, (unsigned)conf->threads);
                TF_SetConfig(opts, cfg, n, c->status);
                if (TF_GetCode(c->status) != TF_OK) {
                        status_err(c->status, "session options", errstr,
                                   errstr_size);
                        goto out;
                }
        }
        c->session = TF_LoadSessionFromSavedModel(opts, NULL, conf->path, tags,
                                                  1, c->graph, meta, c->status);
        if (TF_GetCode(c->status) != TF_OK) {
                char what[300];
                snprintf(what, sizeof(what), "cannot load SavedModel %s",
                         conf->path);
                status_err(c->status, what, errstr, errstr_size);
                c->session = NULL;
                goto out;
        }
        if (mls_tf_signature_parse(meta->data, meta->length, SIGNATURE, sig,
                                   err, sizeof(err)) < 0 ||
            bind_signature(c, conf, sig, err, sizeof(err)) < 0) {
                snprintf(errstr, errstr_size, "SavedModel %s: %s", conf->path,
                         err);
                goto out;
        }
        rc = 0;
out:
        TF_DeleteBuffer(meta);
        TF_DeleteSessionOptions(opts);
        free(sig);
        if (rc < 0)
                tf_unload(c);
        else
                *ctxp = c;
        return rc;
}

/* The input tensor borrows the caller's rows; nothing to free. */
static void borrowed(void *data, size_t len, void *arg)
{
        (void)data;
        (void)len;
        (void)arg;
}

static int tf_infer(void *ctx, const struct mls_tensor *in,
                    struct mls_tensor *out, char *errstr, size_t errstr_size)
{
        struct tf_ctx *c = ctx;
        int64_t dims[2] = {(int64_t)in->rows, (int64_t)in->cols};
        TF_Tensor *t, *res = NULL;
        int nd;

        t = TF_NewTensor(TF_FLOAT, dims, 2, in->data,
                         in->rows * in->cols * sizeof(float), borrowed, NULL);
        if (!t) {
                snprintf(errstr, errstr_size, "cannot make the input tensor");
                return -1;
        }
        TF_SessionRun(c->session, NULL, &c->in, &t, 1, &c->out, &res, 1, NULL,
                      0, NULL, c->status);
        TF_DeleteTensor(t);
        if (TF_GetCode(c->status) != TF_OK) {
                status_err(c->status, "TensorFlow", errstr, errstr_size);
                if (res)
                        TF_DeleteTensor(res);
                return -1;
        }
        nd = TF_NumDims(res);
        if (TF_TensorType(res) != TF_FLOAT || nd < 1 || nd > 2 ||
            TF_Dim(res, 0) != (int64_t)in->rows) {
                snprintf(errstr, errstr_size,
                         "the model returned a %d-D %s tensor with %lld "
                         "rows for %zu input rows",
                         nd, dtype_name(TF_TensorType(res)),
                         nd ? (long long)TF_Dim(res, 0) : 0LL, in->rows);
                TF_DeleteTensor(res);
                return -1;
        }
        if (c->last)
                TF_DeleteTensor(c->last);
        c->last = res;
        out->data = TF_TensorData(res);
        out->rows = in->rows;
        out->cols = nd == 2 ? (size_t)TF_Dim(res, 1) : 1;
        return 0;
}

static size_t tf_input_width(void *ctx)
{
        return ((struct tf_ctx *)ctx)->width;
}

static const struct mls_model_type tf_type = {
        .name = "tensorflow",
        .load = tf_load,
        .infer = tf_infer,
        .unload = tf_unload,
        .input_width = tf_input_width,
        .framework_version = TF_Version,
};

const struct mls_model_plugin mls_model_plugin = {
        .abi = MLS_MODEL_PLUGIN_ABI,
        .version = MLS_VERSION,
        .type = &tf_type,
};
