/*
 * The models an engine serves, by model id, and their reloading.
 *
 * Two modes:
 *  - single model (ML_MODEL_FRAMEWORK + ML_MODEL_PATH): one model serves
 *    every model id; no path means the identity model;
 *  - repository (ML_MODEL_REPOSITORY): one sub-directory per model id,
 *    each with a model.conf (see mls_registry_parse_spec) and its artifact.
 *    Ids without a loaded model resolve to NULL (the pipeline dead-letters
 *    their messages as unknown_model).
 *
 * Reloading: a loader thread owned by the registry polls the files of every
 * model (ML_MODEL_POLL_INTERVAL_MS) and loads a model again once its files
 * changed and then stayed the same for one more poll (so a file being
 * copied in is not read half-written), or at once for every model after
 * mls_registry_reload() (SIGHUP). New sub-directories are loaded, removed
 * ones unloaded. Loaded models wait until the engine thread calls
 * mls_registry_apply() between batches, which swaps them in; the replaced
 * models are unloaded on the loader thread. A model that fails to load
 * leaves the one before it serving, is logged, and is counted in
 * ml_stream_model_load_failures_total{model_id}; the same files are not
 * tried again until they change or the next reload.
 *
 * Threads: mls_registry_get() and mls_registry_apply() belong to the
 * engine thread (the one that scores); mls_registry_reload() may be called
 * from any thread but not from a signal handler.
 */
#ifndef MLS_REGISTRY_H
#define MLS_REGISTRY_H

#include <stddef.h>

#include "common/metrics.h"
#include "common/model_id.h"
#include "model/model.h"

#define MLS_REGISTRY_CONF_FILE "model.conf"

/*
 * One repository sub-directory's model.conf. It describes either one model
 * (framework and the keys after it) or, with "serving", a model with
 * versions: each version is a sub-directory of the model's directory with
 * a model.conf of the first kind, and the model's own model.conf says which
 * versions serve (the rollout keys). The two kinds do not mix.
 */
struct mls_model_spec {
        char framework[32];
        char artifact[1024];   /* "" : the framework's default */
        size_t input_width;    /* 0: discover */
        size_t max_batch_rows; /* 0: no limit of its own */
        int threads;           /* -1: ML_MODEL_THREADS */
        char output[128];      /* "" : the adapter's default */
        /* Rollout keys; serving "" : a model without versions. */
        char serving[MLS_MODEL_VERSION_MAX + 1];
        char canary[MLS_MODEL_VERSION_MAX + 1]; /* "" : none */
        double canary_share;                    /* of inputs, (0, 1] */
        char canary_key[128]; /* "" : input_id; else a metadata field */
        char shadow[MLS_MODEL_VERSION_MAX + 1]; /* "" : none */
        double shadow_tolerance; /* agreement of one-output models */
};

/* The agreement tolerance of a one-output model without shadow_tolerance. */
#define MLS_SHADOW_TOLERANCE_DEFAULT 0.01

/*
 * Parses model.conf text: "key = value" lines; blank lines and lines
 * starting with '#' are ignored, as is " # ..." after a value. Keys of one
 * model: framework (required), artifact, input_width, max_batch_rows,
 * threads, output. Keys of a model with versions: serving (required),
 * canary, canary_share (required with canary), canary_key (input_id or
 * metadata.NAME), shadow, shadow_tolerance. file names the file in errors.
 * Returns 0, or -1 with "file:line: reason" in errstr (unknown or repeated
 * key, bad number or name, keys of both kinds).
 */
int mls_registry_parse_spec(const char *text, size_t len, const char *file,
                            struct mls_model_spec *spec, char *errstr,
                            size_t errstr_size);

/* The artifact a spec names inside model directory dir ("" for identity),
 * written to out. Returns -1 if it does not fit. */
int mls_registry_artifact_path(const char *dir,
                               const struct mls_model_spec *spec, char *out,
                               size_t out_size);

struct mls_registry_conf {
        const char *repository; /* ML_MODEL_REPOSITORY; NULL: single model */
        const char *framework;  /* ML_MODEL_FRAMEWORK */
        const char *path;       /* ML_MODEL_PATH; NULL: identity */
        const char *output;     /* ML_MODEL_OUTPUT; NULL: adapter default */
        size_t input_width;     /* ML_MODEL_INPUT_WIDTH; 0: discover */
        int threads;            /* ML_MODEL_THREADS; 0: framework default */
        int poll_ms;            /* ML_MODEL_POLL_INTERVAL_MS; 0: no polling */
        mls_metrics_t *metrics; /* NULL: no metrics */
        /* Called (from the loader thread) when a change awaits
         * mls_registry_apply(), so that an idle engine thread wakes for
         * it; NULL: none. */
        void (*on_change)(void *opaque);
        void *on_change_opaque;
};

typedef struct mls_registry mls_registry_t;

/*
 * Loads the configured model(s) on the calling thread and starts the
 * loader thread. A single model that fails to load, or a repository that
 * cannot be read, fails: returns NULL with a reason naming the setting.
 * In a repository, a model that fails to load is logged and skipped.
 */
mls_registry_t *mls_registry_new(const struct mls_registry_conf *conf,
                                 char *errstr, size_t errstr_size);
/* Stops the loader thread and unloads every model; NULL is ignored. */
void mls_registry_free(mls_registry_t *r);

/* What serves model_id, or NULL. Engine thread; valid until the next
 * mls_registry_apply(). */
const struct mls_model_route *mls_registry_get(mls_registry_t *r,
                                               const char *model_id);
/* Calls visit for every model id served ("*" for a single model). Engine
 * thread. */
typedef void (*mls_registry_visit)(void *opaque, const char *model_id,
                                   const struct mls_model_route *route);
void mls_registry_foreach(mls_registry_t *r, mls_registry_visit visit,
                          void *opaque);
/* Swaps in the models the loader finished; returns how many changed.
 * Engine thread, between batches. Cheap when nothing changed. */
int mls_registry_apply(mls_registry_t *r);
/* Asks the loader thread to load every model again now (SIGHUP). */
void mls_registry_reload(mls_registry_t *r);
/* Models currently served (after the last apply). Engine thread. */
size_t mls_registry_count(const mls_registry_t *r);

#endif
