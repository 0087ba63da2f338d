#include "model/model.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

struct mls_model {
        const struct mls_model_type *type;
        void *ctx;
        size_t width, max_rows;
        mls_series_t *s_call;
        float *joined; /* outputs of a split call */
        size_t joined_cap;
        char version[24];
        char version_name[MLS_MODEL_VERSION_MAX + 1];
};

/*
 * Adapters compiled into this binary: linked in, or a plugin the build put
 * next to the executable, or installed in the plugin directory (found
 * relative to the executable, then at its absolute installed path), or left
 * in the build directory it was compiled in. MLS_HAVE_TORCH and
 * MLS_HAVE_TENSORFLOW are defined by CMake when it built the plugin.
 */
#ifndef MLS_MODEL_PLUGIN_REL_DIR
#define MLS_MODEL_PLUGIN_REL_DIR "../lib/mlstream"
#endif

static struct builtin {
        const char *name;
        const struct mls_model_type *type; /* linked in, or once opened */
        const char *plugin;                /* file name of the plugin */
        /* An environment variable the plugin reads while it loads, set
         * when the user has not: TensorFlow logs every load at INFO. */
        const char *env_name, *env_value;
} builtins[] = {
        {"identity", &mls_model_identity, NULL, NULL, NULL},
#ifdef MLS_HAVE_TORCH
        {"torch", NULL, "mlstream-torch.so", NULL, NULL},
#endif
#ifdef MLS_HAVE_TENSORFLOW
        {"tensorflow", NULL, "mlstream-tensorflow.so", "TF_CPP_MIN_LOG_LEVEL",
         "1"},
#endif
};

#define NBUILTINS (sizeof(builtins) / sizeof(builtins[0]))

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

const double mls_model_call_buckets[] = {
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
        0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
        0.1,     0.25,     0.5,     1,      2.5,     10};
const size_t mls_model_call_nbuckets =
        sizeof(mls_model_call_buckets) / sizeof(mls_model_call_buckets[0]);

void mls_model_types_list(char *out, size_t out_size)
{
        size_t off = 0;

        if (out_size)
                out[0] = '\0';
        for (size_t i = 0; i < NBUILTINS && off < out_size; i++)
                off += (size_t)snprintf(out + off, out_size - off, "%s%s",
                                        i ? ", " : "", builtins[i].name);
}

/* Opens b's plugin from the first directory that has it. Called with
 * plugin_lock held. */
static int open_plugin(struct builtin *b, char *errstr, size_t errstr_size)
{
        char exe[PATH_MAX], dirs[4][PATH_MAX], path[PATH_MAX];
        char why[512] = "";
        const struct mls_model_plugin *pl;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        size_t ndirs = 0;
        void *h = NULL;

        if (n > 0) {
                char *slash;
                exe[n] = '\0';
                slash = strrchr(exe, '/');
                if (slash)
                        *slash = '\0';
                memcpy(dirs[ndirs++], exe, strlen(exe) + 1);
                if (snprintf(dirs[ndirs], sizeof(dirs[0]), "%s/%s", exe,
                             MLS_MODEL_PLUGIN_REL_DIR) < (int)sizeof(dirs[0]))
                        ndirs++;
        }
#ifdef MLS_MODEL_PLUGIN_INSTALL_DIR
        if (snprintf(dirs[ndirs], sizeof(dirs[0]), "%s",
                     MLS_MODEL_PLUGIN_INSTALL_DIR) < (int)sizeof(dirs[0]))
                ndirs++;
#endif
#ifdef MLS_MODEL_PLUGIN_BUILD_DIR
        /* Only for programs that run inside the build tree (the unit tests
         * in tests/): an installed mlstream must not pick up the plugins of
         * the build it was packaged from. */
        if (n > 0 && realpath(MLS_MODEL_PLUGIN_BUILD_DIR, dirs[ndirs]) &&
            strncmp(exe, dirs[ndirs], strlen(dirs[ndirs])) == 0 &&
            (exe[strlen(dirs[ndirs])] == '/' ||
             exe[strlen(dirs[ndirs])] == '\0'))
                ndirs++;
#endif
        if (b->env_name)
                setenv(b->env_name, b->env_value, 0);
        for (size_t i = 0; i < ndirs && !h; i++) {
                if (snprintf(path, sizeof(path), "%s/%s", dirs[i], b->plugin) >=
                            (int)sizeof(path) ||
                    access(path, F_OK) != 0)
                        continue;
                /* RTLD_LOCAL keeps each framework's symbols (both bundle
                 * protobuf, Eigen, ...) out of the others' way. */
                h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (!h)
                        snprintf(why, sizeof(why), "%s", dlerror());
        }
        if (!h) {
                snprintf(errstr, errstr_size,
                         "model framework \"%s\" is built in, but its "
                         "plugin %s %s%s",
                         b->name, b->plugin,
                         *why ? "failed to load: "
                              : "was not found next to "
                                "the executable",
                         why);
                return -1;
        }
        pl = dlsym(h, "mls_model_plugin");
        if (!pl || pl->abi != MLS_MODEL_PLUGIN_ABI ||
            strcmp(pl->version, MLS_VERSION) != 0 ||
            strcmp(pl->type->name, b->name) != 0) {
                snprintf(errstr, errstr_size,
                         "model framework \"%s\": %s is not a plugin of "
                         "this mlstream %s",
                         b->name, path, MLS_VERSION);
                dlclose(h);
                return -1;
        }
        /* Never closed: frameworks do not survive being unloaded. */
        b->type = pl->type;
        return 0;
}

const struct mls_model_type *mls_model_type_find(const char *name, char *errstr,
                                                 size_t errstr_size)
{
        const struct mls_model_type *t = NULL;
        char list[256];
        int rc = 0;

        for (size_t i = 0; i < NBUILTINS; i++) {
                struct builtin *b = &builtins[i];
                if (strcmp(b->name, name) != 0)
                        continue;
                pthread_mutex_lock(&plugin_lock);
                if (!b->type)
                        rc = open_plugin(b, errstr, errstr_size);
                t = b->type;
                pthread_mutex_unlock(&plugin_lock);
                return rc < 0 ? NULL : t;
        }
        mls_model_types_list(list, sizeof(list));
        snprintf(errstr, errstr_size,
                 "model framework \"%s\" is not built into this mlstream; "
                 "built in: %s",
                 name, list);
        return NULL;
}

/* Scores two rows of zeros of the given width. */
static int try_width(const struct mls_model_type *type, void *ctx, size_t width,
                     char *errstr, size_t errstr_size)
{
        struct mls_tensor in = {.rows = 2, .cols = width}, out = {0};
        int rc;

        if (width > ((size_t)1 << 24)) {
                snprintf(errstr, errstr_size, "too wide");
                return -1;
        }
        in.data = calloc(2 * width, sizeof(float));
        if (!in.data) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        rc = type->infer(ctx, &in, &out, errstr, errstr_size);
        free(in.data);
        return rc;
}

mls_model_t *mls_model_load(const struct mls_model_type *type,
                            const struct mls_model_conf *conf, char *errstr,
                            size_t errstr_size)
{
        mls_model_t *m = calloc(1, sizeof(*m));
        const char *origin = conf->input_width_origin ? conf->input_width_origin
                                                      : "input width";
        char err[400];
        size_t found;

        if (!m) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        m->type = type;
        if (type->load(conf, &m->ctx, errstr, errstr_size) < 0) {
                free(m);
                return NULL;
        }
        found = type->input_width ? type->input_width(m->ctx) : 0;
        if (conf->input_width && found && conf->input_width != found) {
                snprintf(errstr, errstr_size,
                         "%s %zu: the model takes rows of %zu numbers", origin,
                         conf->input_width, found);
                type->unload(m->ctx);
                free(m);
                return NULL;
        }
        /* A width the artifact does not declare is tried once now, so that
         * a wrong setting fails here, named, not on every message. */
        if (conf->input_width && !found &&
            try_width(type, m->ctx, conf->input_width, err, sizeof(err)) < 0) {
                snprintf(errstr, errstr_size,
                         "%s %zu: the model refuses rows of that width: %s",
                         origin, conf->input_width, err);
                type->unload(m->ctx);
                free(m);
                return NULL;
        }
        m->width = conf->input_width ? conf->input_width : found;
        m->max_rows = conf->max_batch_rows;
        return m;
}

void mls_model_free(mls_model_t *m)
{
        if (!m)
                return;
        m->type->unload(m->ctx);
        free(m->joined);
        free(m);
}

const char *mls_model_framework(const mls_model_t *m)
{
        return m->type->name;
}

void mls_model_set_version(mls_model_t *m, const char *version)
{
        snprintf(m->version, sizeof(m->version), "%s", version);
}

const char *mls_model_version(const mls_model_t *m)
{
        return m->version;
}

void mls_model_set_version_name(mls_model_t *m, const char *name)
{
        snprintf(m->version_name, sizeof(m->version_name), "%s", name);
}

const char *mls_model_version_name(const mls_model_t *m)
{
        return m->version_name;
}

size_t mls_model_input_width(const mls_model_t *m)
{
        return m->width;
}

void mls_model_observe(mls_model_t *m, mls_series_t *s)
{
        m->s_call = s;
}

/* One adapter call, timed, with its output checked against the input. */
static int call(mls_model_t *m, const struct mls_tensor *in,
                struct mls_tensor *out, char *errstr, size_t errstr_size)
{
        int64_t t0 = m->s_call ? mls_clock_mono_ns() : 0;

        if (m->type->infer(m->ctx, in, out, errstr, errstr_size) < 0)
                return -1;
        if (m->s_call)
                mls_series_observe(m->s_call,
                                   (double)(mls_clock_mono_ns() - t0) / 1e9);
        if (out->rows != in->rows) {
                snprintf(errstr, errstr_size,
                         "model returned %zu rows for %zu input rows",
                         out->rows, in->rows);
                return -1;
        }
        if (out->cols == 0) {
                snprintf(errstr, errstr_size, "model returned no outputs");
                return -1;
        }
        return 0;
}

int mls_model_infer(mls_model_t *m, const struct mls_tensor *in,
                    struct mls_tensor *out, char *errstr, size_t errstr_size)
{
        size_t cols = 0;

        if (m->width && in->cols != m->width) {
                snprintf(errstr, errstr_size,
                         "input has %zu features per row, the model takes %zu",
                         in->cols, m->width);
                return -1;
        }
        if (!m->max_rows || in->rows <= m->max_rows)
                return call(m, in, out, errstr, errstr_size);
        /* Split: score max_rows at a time and join the outputs. */
        for (size_t r = 0; r < in->rows; r += m->max_rows) {
                struct mls_tensor part = {
                        .data = in->data + r * in->cols,
                        .rows = in->rows - r < m->max_rows ? in->rows - r
                                                           : m->max_rows,
                        .cols = in->cols,
                };
                struct mls_tensor po;
                if (call(m, &part, &po, errstr, errstr_size) < 0)
                        return -1;
                if (r == 0) {
                        cols = po.cols;
                        if (in->rows * cols > m->joined_cap) {
                                float *j = realloc(m->joined,
                                                   in->rows * cols *
                                                           sizeof(float));
                                if (!j) {
                                        snprintf(errstr, errstr_size,
                                                 "out of memory");
                                        return -1;
                                }
                                m->joined = j;
                                m->joined_cap = in->rows * cols;
                        }
                } else if (po.cols != cols) {
                        snprintf(errstr, errstr_size,
                                 "model returned %zu outputs per row, then "
                                 "%zu",
                                 cols, po.cols);
                        return -1;
                }
                memcpy(m->joined + r * cols, po.data,
                       part.rows * cols * sizeof(float));
        }
        out->data = m->joined;
        out->rows = in->rows;
        out->cols = cols;
        return 0;
}
