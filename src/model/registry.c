#include "model/registry.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/strmap.h"

#define SINGLE_ID "*"             /* the model_id label of a single model */
#define SPEC_MAX_BYTES (64 << 10) /* model.conf */
#define WALK_MAX_DEPTH 6
#define WALK_MAX_ENTRIES 20000

/* Engine thread: which model serves an id. Slots are never removed; an id
 * whose model went away keeps its slot with model NULL. */
/* Loader thread: what it knows of one model id. */
struct watch {
        char id[MLS_MODEL_ID_MAX + 1];
        char dir[PATH_MAX];  /* the model's directory; "" for a single model */
        uint64_t sig_loaded; /* files the serving model came from */
        uint64_t sig_seen;   /* files at the previous poll */
        uint64_t sig_failed; /* files that failed to load */
        int loaded, present;
        char framework[32]; /* of the serving model */
        mls_series_t *s_loads, *s_failures, *s_time, *s_call;
};

/* A model handed from the loader to the engine thread (NULL: remove). */
struct change {
        struct change *next;
        struct mls_model_route *route;
        char id[MLS_MODEL_ID_MAX + 1];
};

struct mls_registry {
        char *repository, *framework, *path, *output;
        size_t input_width;
        int threads, poll_ms;
        mls_metrics_t *metrics;
        void (*on_change)(void *opaque);
        void *on_change_opaque;
        mls_metric_t *m_loads, *m_failures, *m_time, *m_info, *m_call;
        mls_metric_t *m_version;

        /* Engine thread. */
        struct mls_model_route *only; /* single mode */
        struct mls_strmap served;     /* model id -> route, repository */
        size_t nserving;

        /* Loader thread (and mls_registry_new before it starts). */
        struct watch *watches;
        size_t nwatches, watch_cap;

        pthread_t thread;
        int started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int stop, kick;         /* under lock */
        struct change *changes; /* under lock: loader -> engine */
        struct change *retired; /* under lock: engine -> loader */
        atomic_int pending;     /* changes is not empty */
};

/* snprintf for error messages, where cutting a long path short is fine. */
__attribute__((format(printf, 3, 4))) static void
seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* ---- model.conf ---- */

static char *trim(char *s, char *end)
{
        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        while (end > s &&
               (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                end--;
        *end = '\0';
        return s;
}

static int parse_size(const char *v, long long max, size_t *out)
{
        char *end;
        long long n;

        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0 || n > max)
                return -1;
        *out = (size_t)n;
        return 0;
}

/* A version name: a directory name of [A-Za-z0-9._-], not starting
 * with '.', at most MLS_MODEL_VERSION_MAX bytes. */
static int version_name_ok(const char *v)
{
        size_t n = strlen(v);

        if (n == 0 || n > MLS_MODEL_VERSION_MAX || v[0] == '.')
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
                        return 0;
        return 1;
}

static int parse_fraction(const char *v, double *out)
{
        char *end;
        double d;

        errno = 0;
        d = strtod(v, &end);
        if (end == v || *end || errno || !(d >= 0 && d <= 1))
                return -1;
        *out = d;
        return 0;
}

enum spec_key {
        K_FRAMEWORK,
        K_ARTIFACT,
        K_INPUT_WIDTH,
        K_MAX_BATCH_ROWS,
        K_THREADS,
        K_OUTPUT,
        K_SERVING, /* the first rollout key */
        K_CANARY,
        K_CANARY_SHARE,
        K_CANARY_KEY,
        K_SHADOW,
        K_SHADOW_TOLERANCE,
        NKEYS
};

static const char *const spec_keys[NKEYS] = {
        "framework",    "artifact",   "input_width", "max_batch_rows",
        "threads",      "output",     "serving",     "canary",
        "canary_share", "canary_key", "shadow",      "shadow_tolerance"};

/* Checks a parsed spec as a whole. Returns 0, or -1 with errstr. */
static int check_spec(const struct mls_model_spec *spec, const int *seen,
                      const char *file, char *errstr, size_t errstr_size)
{
        int model_keys = 0, rollout_keys = 0;

        for (int k = 0; k < NKEYS; k++)
                if (seen[k])
                        *(k < K_SERVING ? &model_keys : &rollout_keys) += 1;
        if (rollout_keys && !seen[K_SERVING]) {
                seterr(errstr, errstr_size,
                       "%s: \"serving\" is missing: a model with versions "
                       "names the version that serves",
                       file);
                return -1;
        }
        if (seen[K_SERVING] && model_keys) {
                seterr(errstr, errstr_size,
                       "%s: \"serving\" names versions, so the framework and "
                       "artifact keys belong in each version's own "
                       "model.conf (%s/model.conf)",
                       file, spec->serving);
                return -1;
        }
        if (!seen[K_SERVING] && !seen[K_FRAMEWORK]) {
                seterr(errstr, errstr_size,
                       "%s: \"framework\" is missing (torch, tensorflow or "
                       "identity), or \"serving\" for a model with "
                       "versions",
                       file);
                return -1;
        }
        if (seen[K_CANARY] != seen[K_CANARY_SHARE]) {
                seterr(errstr, errstr_size,
                       "%s: \"canary\" and \"canary_share\" go together", file);
                return -1;
        }
        if (seen[K_CANARY_KEY] && !seen[K_CANARY]) {
                seterr(errstr, errstr_size,
                       "%s: \"canary_key\" without \"canary\"", file);
                return -1;
        }
        if (seen[K_SHADOW_TOLERANCE] && !seen[K_SHADOW]) {
                seterr(errstr, errstr_size,
                       "%s: \"shadow_tolerance\" without \"shadow\"", file);
                return -1;
        }
        if ((spec->canary[0] && strcmp(spec->canary, spec->serving) == 0) ||
            (spec->shadow[0] && strcmp(spec->shadow, spec->serving) == 0) ||
            (spec->shadow[0] && strcmp(spec->shadow, spec->canary) == 0)) {
                seterr(errstr, errstr_size,
                       "%s: serving, canary and shadow must be different "
                       "versions",
                       file);
                return -1;
        }
        return 0;
}

int mls_registry_parse_spec(const char *text, size_t len, const char *file,
                            struct mls_model_spec *spec, char *errstr,
                            size_t errstr_size)
{
        int seen[NKEYS] = {0};
        char *buf = malloc(len + 1), *p, *bufend;
        int lineno = 0, rc = -1;

        if (!buf) {
                seterr(errstr, errstr_size, "%s: out of memory", file);
                return -1;
        }
        memcpy(buf, text, len);
        buf[len] = '\0';
        bufend = buf + len;
        memset(spec, 0, sizeof(*spec));
        spec->threads = -1;
        spec->shadow_tolerance = MLS_SHADOW_TOLERANCE_DEFAULT;
        if (memchr(buf, '\0', len)) {
                seterr(errstr, errstr_size, "%s: not a text file", file);
                goto out;
        }
        for (p = buf; p < bufend;) {
                char *nl = memchr(p, '\n', (size_t)(bufend - p));
                char *end = nl ? nl : bufend, *eq, *key, *val, *hash;
                const char *range = "";
                size_t n;
                int k;
                lineno++;
                eq = memchr(p, '=', (size_t)(end - p));
                key = trim(p, eq ? eq : end);
                p = nl ? nl + 1 : bufend;
                if (*key == '\0' || *key == '#') {
                        if (*key && eq) /* "# a = b" */
                                continue;
                        if (!*key && eq) {
                                seterr(errstr, errstr_size,
                                       "%s:%d: a value without a key", file,
                                       lineno);
                                goto out;
                        }
                        continue;
                }
                if (!eq) {
                        seterr(errstr, errstr_size,
                               "%s:%d: expected key = value, got \"%s\"", file,
                               lineno, key);
                        goto out;
                }
                val = trim(eq + 1, end);
                /* A comment after the value: whitespace, then '#'. */
                for (hash = val; (hash = strchr(hash, '#')) != NULL; hash++)
                        if (hash > val &&
                            (hash[-1] == ' ' || hash[-1] == '\t')) {
                                val = trim(val, hash);
                                break;
                        }
                for (k = 0; k < NKEYS; k++)
                        if (strcmp(key, spec_keys[k]) == 0)
                                break;
                if (k == NKEYS) {
                        seterr(errstr, errstr_size,
                               "%s:%d: unknown key \"%s\" (known: "
                               "framework, artifact, input_width, "
                               "max_batch_rows, threads, output; with "
                               "versions: serving, canary, canary_share, "
                               "canary_key, shadow, shadow_tolerance)",
                               file, lineno, key);
                        goto out;
                }
                if (seen[k]++) {
                        seterr(errstr, errstr_size,
                               "%s:%d: \"%s\" is set twice", file, lineno, key);
                        goto out;
                }
                n = strlen(val);
                switch (k) {
                case K_FRAMEWORK:
                        if (n == 0 || n >= sizeof(spec->framework))
                                goto bad_value;
                        memcpy(spec->framework, val, n + 1);
                        break;
                case K_ARTIFACT:
                        if (n == 0 || n >= sizeof(spec->artifact))
                                goto bad_value;
                        memcpy(spec->artifact, val, n + 1);
                        break;
                case K_INPUT_WIDTH:
                        range = "0..16777216";
                        if (parse_size(val, 16777216, &spec->input_width) < 0)
                                goto bad_number;
                        break;
                case K_MAX_BATCH_ROWS:
                        range = "0..1048576";
                        if (parse_size(val, 1048576, &spec->max_batch_rows) < 0)
                                goto bad_number;
                        break;
                case K_THREADS: {
                        size_t t;
                        range = "0..256";
                        if (parse_size(val, 256, &t) < 0)
                                goto bad_number;
                        spec->threads = (int)t;
                        break;
                }
                case K_OUTPUT:
                        if (n == 0 || n >= sizeof(spec->output))
                                goto bad_value;
                        memcpy(spec->output, val, n + 1);
                        break;
                case K_SERVING:
                case K_CANARY:
                case K_SHADOW:
                        if (!version_name_ok(val)) {
                                seterr(errstr, errstr_size,
                                       "%s:%d: %s: \"%s\" is not a version "
                                       "name (a sub-directory: letters, "
                                       "digits, '.', '_', '-', not starting "
                                       "with '.', at most %d bytes)",
                                       file, lineno, key, val,
                                       MLS_MODEL_VERSION_MAX);
                                goto out;
                        }
                        memcpy(k == K_SERVING  ? spec->serving
                               : k == K_CANARY ? spec->canary
                                               : spec->shadow,
                               val, n + 1);
                        break;
                case K_CANARY_SHARE:
                        range = "0..1, e.g. 0.2 for 20 %";
                        if (parse_fraction(val, &spec->canary_share) < 0)
                                goto bad_number;
                        break;
                case K_CANARY_KEY:
                        if (strcmp(val, "input_id") == 0)
                                break;
                        if (strncmp(val, "metadata.", 9) != 0 || n == 9 ||
                            n - 9 >= sizeof(spec->canary_key)) {
                                seterr(errstr, errstr_size,
                                       "%s:%d: canary_key: \"%s\" is neither "
                                       "input_id nor metadata.NAME",
                                       file, lineno, val);
                                goto out;
                        }
                        memcpy(spec->canary_key, val + 9, n - 9 + 1);
                        break;
                case K_SHADOW_TOLERANCE: {
                        char *e;
                        errno = 0;
                        spec->shadow_tolerance = strtod(val, &e);
                        range = "0 or more";
                        if (e == val || *e || errno ||
                            !(spec->shadow_tolerance >= 0))
                                goto bad_number;
                        break;
                }
                }
                continue;
        bad_number:
                seterr(errstr, errstr_size,
                       "%s:%d: %s: \"%s\" is not a number in range (%s)", file,
                       lineno, key, val, range);
                goto out;
        bad_value:
                seterr(errstr, errstr_size,
                       "%s:%d: %s: the value is empty or too long", file,
                       lineno, key);
                goto out;
        }
        rc = check_spec(spec, seen, file, errstr, errstr_size);
out:
        free(buf);
        return rc;
}

int mls_registry_artifact_path(const char *dir,
                               const struct mls_model_spec *spec, char *out,
                               size_t out_size)
{
        const char *a = spec->artifact;
        int n;

        if (!*a) {
                if (strcmp(spec->framework, "identity") == 0) {
                        if (out_size)
                                out[0] = '\0';
                        return 0;
                }
                a = strcmp(spec->framework, "tensorflow") == 0 ? "saved_model"
                                                               : "model.pt";
        }
        if (a[0] == '/')
                n = snprintf(out, out_size, "%s", a);
        else
                n = snprintf(out, out_size, "%s/%s", dir, a);
        return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

/* ---- change detection ---- */

/* Called for path and everything under it (rel: its name below the
 * root); st NULL when stat failed (errno set). */
typedef void (*walk_visit)(const char *path, const char *rel,
                           const struct stat *st, void *opaque);

/* Visits path and what is under it, following symbolic links, at most
 * WALK_MAX_ENTRIES entries and WALK_MAX_DEPTH levels. */
static void walk(const char *path, const char *rel, int depth, size_t *entries,
                 walk_visit visit, void *opaque)
{
        struct stat st;
        DIR *d;
        struct dirent *de;

        if (++*entries > WALK_MAX_ENTRIES)
                return;
        if (stat(path, &st) < 0) {
                visit(path, rel, NULL, opaque);
                return;
        }
        visit(path, rel, &st, opaque);
        if (!S_ISDIR(st.st_mode) || depth >= WALK_MAX_DEPTH)
                return;
        d = opendir(path);
        if (!d)
                return;
        while ((de = readdir(d)) != NULL) {
                char sub[PATH_MAX], subrel[PATH_MAX];
                if (strcmp(de->d_name, ".") == 0 ||
                    strcmp(de->d_name, "..") == 0)
                        continue;
                if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >=
                            (int)sizeof(sub) ||
                    snprintf(subrel, sizeof(subrel), "%s/%s", rel,
                             de->d_name) >= (int)sizeof(subrel))
                        continue;
                walk(sub, subrel, depth + 1, entries, visit, opaque);
        }
        closedir(d);
}

/* Change detection: adds to *(uint64_t *)opaque a hash of the entry's name,
 * size, modification time, inode and mode; order independent (summed), so
 * readdir order does not matter. Cheap: no file is read. */
static void sig_visit(const char *path, const char *rel, const struct stat *st,
                      void *opaque)
{
        uint64_t h = mls_fnv1a64(MLS_FNV1A64_INIT, rel, strlen(rel) + 1);

        (void)path;
        if (!st) {
                int e = errno;
                h = mls_fnv1a64(h, &e, sizeof(e));
        } else {
                h = mls_fnv1a64(h, &st->st_size, sizeof(st->st_size));
                h = mls_fnv1a64(h, &st->st_mtim.tv_sec,
                                sizeof(st->st_mtim.tv_sec));
                h = mls_fnv1a64(h, &st->st_mtim.tv_nsec,
                                sizeof(st->st_mtim.tv_nsec));
                h = mls_fnv1a64(h, &st->st_ino, sizeof(st->st_ino));
                h = mls_fnv1a64(h, &st->st_mode, sizeof(st->st_mode));
        }
        *(uint64_t *)opaque += h;
}

static void signature(const char *path, uint64_t *sig, size_t *entries)
{
        walk(path, "", 0, entries, sig_visit, sig);
}

/* The model's version: a hash of the names and bytes of its files, the
 * same on every host that has the same files (unlike the signature, which
 * also covers times and inodes). Summed per file, so order independent. */
static void content_visit(const char *path, const char *rel,
                          const struct stat *st, void *opaque)
{
        uint64_t h = mls_fnv1a64(MLS_FNV1A64_INIT, rel, strlen(rel) + 1);
        char buf[65536];
        ssize_t n;
        int fd;

        if (st && S_ISREG(st->st_mode) &&
            (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
                while ((n = read(fd, buf, sizeof(buf))) > 0)
                        h = mls_fnv1a64(h, buf, (size_t)n);
                close(fd);
        }
        *(uint64_t *)opaque += h;
}

static uint64_t content_version(const char *artifact)
{
        uint64_t v = 0;
        size_t entries = 0;

        if (*artifact)
                walk(artifact, "", 0, &entries, content_visit, &v);
        return v;
}

/* ---- metrics ---- */

static void register_metrics(mls_registry_t *r)
{
        if (!r->metrics)
                return;
        r->m_loads = mls_metric_new(r->metrics, MLS_COUNTER,
                                    "ml_stream_model_loads_total",
                                    "Successful model loads, the first and "
                                    "every reload.",
                                    "model_id", NULL, NULL, 0);
        r->m_failures = mls_metric_new(
                r->metrics, MLS_COUNTER, "ml_stream_model_load_failures_total",
                "Model loads that failed; the previous version, if any, "
                "keeps serving.",
                "model_id", NULL, NULL, 0);
        r->m_time = mls_metric_new(
                r->metrics, MLS_GAUGE,
                "ml_stream_model_last_load_timestamp_seconds",
                "Unix time of the last successful load of the model.",
                "model_id", NULL, NULL, 0);
        r->m_info =
                mls_metric_new(r->metrics, MLS_GAUGE, "ml_stream_model_info",
                               "1 for each model being served, with "
                               "its framework.",
                               "model_id", "framework", NULL, 0);
        r->m_version = mls_metric_new3(
                r->metrics, MLS_GAUGE, "ml_stream_model_version_info",
                "1 for each version of a model in use, by role (serving, "
                "canary, shadow); 0 once it no longer is.",
                "model_id", "version", "role", NULL, 0);
        r->m_call = mls_metric_new(
                r->metrics, MLS_HISTOGRAM, "ml_stream_model_call_seconds",
                "Duration of one model call (one batch of rows).", "model_id",
                NULL, mls_model_call_buckets, mls_model_call_nbuckets);
}

static void set_info(mls_registry_t *r, struct watch *w, const char *fw)
{
        if (!r->m_info)
                return;
        if (w->framework[0] && (!fw || strcmp(w->framework, fw) != 0))
                mls_series_set(mls_series(r->m_info, w->id, w->framework), 0);
        if (fw) {
                mls_series_set(mls_series(r->m_info, w->id, fw), 1);
                snprintf(w->framework, sizeof(w->framework), "%s", fw);
        } else {
                w->framework[0] = '\0';
        }
}

/* ---- loader side ---- */

static struct watch *watch_find(mls_registry_t *r, const char *id, int add)
{
        struct watch *w;

        for (size_t i = 0; i < r->nwatches; i++)
                if (strcmp(r->watches[i].id, id) == 0)
                        return &r->watches[i];
        if (!add)
                return NULL;
        if (r->nwatches == r->watch_cap) {
                size_t ncap = r->watch_cap ? r->watch_cap * 2 : 16;
                struct watch *n = realloc(r->watches, ncap * sizeof(*n));
                if (!n)
                        return NULL;
                r->watches = n;
                r->watch_cap = ncap;
        }
        w = &r->watches[r->nwatches++];
        memset(w, 0, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "%s", id);
        if (r->metrics) {
                w->s_loads = mls_series(r->m_loads, id, NULL);
                w->s_failures = mls_series(r->m_failures, id, NULL);
                w->s_time = mls_series(r->m_time, id, NULL);
                w->s_call = mls_series(r->m_call, id, NULL);
        }
        return w;
}

/* Reads dir/model.conf into spec. Returns -1 with errstr. */
static int read_spec(const char *dir, struct mls_model_spec *spec, char *errstr,
                     size_t errstr_size)
{
        char file[PATH_MAX + 32], *buf;
        ssize_t n = 0;
        size_t len = 0;
        int fd, rc, e;

        snprintf(file, sizeof(file), "%s/" MLS_REGISTRY_CONF_FILE, dir);
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                seterr(errstr, errstr_size, "%s: %s", file, strerror(errno));
                return -1;
        }
        buf = malloc(SPEC_MAX_BYTES);
        if (!buf) {
                close(fd);
                seterr(errstr, errstr_size, "out of memory");
                return -1;
        }
        while (len < SPEC_MAX_BYTES) {
                n = read(fd, buf + len, SPEC_MAX_BYTES - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        e = errno;
        close(fd);
        if (n < 0) {
                seterr(errstr, errstr_size, "%s: %s", file, strerror(e));
                free(buf);
                return -1;
        }
        if (len == SPEC_MAX_BYTES) {
                seterr(errstr, errstr_size, "%s: larger than %d bytes", file,
                       SPEC_MAX_BYTES);
                free(buf);
                return -1;
        }
        rc = mls_registry_parse_spec(buf, len, file, spec, errstr, errstr_size);
        free(buf);
        return rc;
}

/* What a watch would load now: its spec, artifact and files' signature.
 * Returns -1 with errstr if the spec cannot be read (sig is still set). */
static int inspect(mls_registry_t *r, struct watch *w,
                   struct mls_model_spec *spec, char *artifact,
                   size_t artifact_size, uint64_t *sig, char *errstr,
                   size_t errstr_size)
{
        size_t entries = 0;
        int rc = 0;

        *sig = 0;
        if (!w->dir[0]) { /* single model */
                memset(spec, 0, sizeof(*spec));
                snprintf(spec->framework, sizeof(spec->framework), "%s",
                         r->path ? r->framework : "identity");
                spec->input_width = r->input_width;
                spec->threads = -1;
                snprintf(spec->output, sizeof(spec->output), "%s",
                         r->output ? r->output : "");
                snprintf(artifact, artifact_size, "%s", r->path ? r->path : "");
                if (*artifact)
                        signature(artifact, sig, &entries);
                return 0;
        }
        signature(w->dir, sig, &entries);
        if (read_spec(w->dir, spec, errstr, errstr_size) < 0)
                return -1;
        if (mls_registry_artifact_path(w->dir, spec, artifact, artifact_size) <
            0) {
                seterr(errstr, errstr_size, "%s: artifact path too long",
                       w->dir);
                rc = -1;
        } else if (*artifact &&
                   (spec->artifact[0] == '/' || strstr(spec->artifact, ".."))) {
                signature(artifact, sig, &entries); /* outside the dir */
        }
        return rc;
}

/* Hands a model (or a removal) to the engine thread. */
static int post(mls_registry_t *r, const char *id, struct mls_model_route *rt)
{
        struct change *c = calloc(1, sizeof(*c));

        if (!c)
                return -1;
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->route = rt;
        pthread_mutex_lock(&r->lock);
        c->next = r->changes;
        r->changes = c;
        atomic_store_explicit(&r->pending, 1, memory_order_release);
        pthread_mutex_unlock(&r->lock);
        if (r->on_change)
                r->on_change(r->on_change_opaque);
        return 0;
}

static void install(mls_registry_t *r, const char *id,
                    struct mls_model_route *rt);

static void route_free(struct mls_model_route *rt)
{
        if (!rt)
                return;
        mls_model_free(rt->serving);
        mls_model_free(rt->canary);
        mls_model_free(rt->shadow);
        free(rt);
}

/*
 * Loads one model of spec from artifact (resolved already) for w. name is
 * its version name ("": the content version). Sets *fw_err when the
 * framework itself is missing. Returns NULL with err.
 */
static mls_model_t *load_model(mls_registry_t *r, struct watch *w,
                               const struct mls_model_spec *spec,
                               const char *artifact, const char *name,
                               int *fw_err, char *err, size_t err_size)
{
        struct mls_model_conf mc = {0};
        const struct mls_model_type *type;
        char version[24];
        mls_model_t *m;

        type = mls_model_type_find(spec->framework, err, err_size);
        if (!type) {
                *fw_err = 1;
                return NULL;
        }
        mc.path = *artifact ? artifact : NULL;
        mc.threads = spec->threads >= 0 ? spec->threads : r->threads;
        mc.input_width = spec->input_width;
        mc.input_width_origin = w->dir[0] ? "input_width in model.conf"
                                          : "ML_MODEL_INPUT_WIDTH";
        mc.max_batch_rows = spec->max_batch_rows;
        mc.output = spec->output[0] ? spec->output : NULL;
        m = mls_model_load(type, &mc, err, err_size);
        if (!m)
                return NULL;
        if (*artifact && strcmp(spec->framework, "identity") != 0) {
                snprintf(version, sizeof(version), "%016llx",
                         (unsigned long long)content_version(artifact));
                mls_model_set_version(m, version);
        }
        mls_model_set_version_name(m, *name ? name : mls_model_version(m));
        return m;
}

/* Loads version name of w's model (the sub-directory of that name, with
 * a model.conf of one model). Returns NULL with err. */
static mls_model_t *load_version(mls_registry_t *r, struct watch *w,
                                 const char *name, char *err, size_t err_size)
{
        struct mls_model_spec spec;
        char dir[PATH_MAX], artifact[PATH_MAX + 1100], why[600];
        int fw_err = 0;
        mls_model_t *m;

        if (snprintf(dir, sizeof(dir), "%s/%s", w->dir, name) >=
            (int)sizeof(dir)) {
                seterr(err, err_size, "version %s: path too long", name);
                return NULL;
        }
        if (read_spec(dir, &spec, why, sizeof(why)) < 0)
                goto fail;
        if (spec.serving[0]) {
                seterr(why, sizeof(why),
                       "%s/model.conf: a version is one model; versions do "
                       "not nest",
                       dir);
                goto fail;
        }
        if (mls_registry_artifact_path(dir, &spec, artifact, sizeof(artifact)) <
            0) {
                seterr(why, sizeof(why), "%s: artifact path too long", dir);
                goto fail;
        }
        m = load_model(r, w, &spec, artifact, name, &fw_err, why, sizeof(why));
        if (m)
                return m;
fail:
        seterr(err, err_size, "version %s: %s", name, why);
        return NULL;
}

/* " (version NAME, input width N|any)" for logs. */
static void describe(const char *role, const mls_model_t *m, char *out,
                     size_t out_size)
{
        size_t width = mls_model_input_width(m);
        char wbuf[24] = "any";

        if (width)
                snprintf(wbuf, sizeof(wbuf), "%zu", width);
        snprintf(out, out_size, "%s %s %s (input width %s)", role,
                 *mls_model_version_name(m) ? mls_model_version_name(m) : "-",
                 mls_model_framework(m), wbuf);
}

/*
 * Loads w's model: one model, or the versions its model.conf names, all or
 * nothing. direct: install it on this thread (start-up, before the loader
 * thread runs); otherwise post it for mls_registry_apply(). Returns 0, or
 * -1 with errstr (also logged when not direct).
 */
static int load(mls_registry_t *r, struct watch *w, int direct, char *errstr,
                size_t errstr_size)
{
        struct mls_model_spec spec;
        struct mls_model_route *rt = calloc(1, sizeof(*rt));
        char artifact[PATH_MAX + 1100], err[700], d1[200], d2[400], d3[200];
        const char *where = w->dir[0] ? w->dir : "ML_MODEL_PATH";
        uint64_t sig = 0;
        int fw_err = 0;
        int64_t t0 = mls_clock_mono_ns();

        if (!rt) {
                seterr(err, sizeof(err), "out of memory");
                goto fail;
        }
        if (inspect(r, w, &spec, artifact, sizeof(artifact), &sig, err,
                    sizeof(err)) < 0)
                goto fail;
        if (!spec.serving[0]) {
                rt->serving = load_model(r, w, &spec, artifact, "", &fw_err,
                                         err, sizeof(err));
                if (!rt->serving && fw_err && !w->dir[0]) {
                        seterr(errstr, errstr_size, "ML_MODEL_FRAMEWORK: %s",
                               err);
                        goto fail_reported;
                }
        } else {
                rt->serving =
                        load_version(r, w, spec.serving, err, sizeof(err));
                if (rt->serving && spec.canary[0])
                        rt->canary = load_version(r, w, spec.canary, err,
                                                  sizeof(err));
                if (rt->serving && spec.shadow[0])
                        rt->shadow = load_version(r, w, spec.shadow, err,
                                                  sizeof(err));
                if ((spec.canary[0] && !rt->canary) ||
                    (spec.shadow[0] && !rt->shadow)) {
                        mls_model_free(rt->serving);
                        rt->serving = NULL;
                }
                rt->canary_share = spec.canary_share;
                snprintf(rt->canary_key, sizeof(rt->canary_key), "%s",
                         spec.canary_key);
        }
        if (!rt->serving)
                goto fail;
        rt->shadow_tolerance = spec.shadow_tolerance;
        if (w->s_call) {
                mls_model_observe(rt->serving, w->s_call);
                if (rt->canary)
                        mls_model_observe(rt->canary, w->s_call);
        }
        describe("serving", rt->serving, d1, sizeof(d1));
        d2[0] = d3[0] = '\0';
        if (rt->canary) {
                char dc[160];
                describe("canary", rt->canary, dc, sizeof(dc));
                snprintf(d2, sizeof(d2), ", %s for %g %% by %s%s", dc,
                         rt->canary_share * 100,
                         rt->canary_key[0] ? "metadata." : "input_id",
                         rt->canary_key);
        }
        if (rt->shadow) {
                char ds[160];
                describe("shadow", rt->shadow, ds, sizeof(ds));
                snprintf(d3, sizeof(d3), ", %s", ds);
        }
        if (direct) {
                install(r, w->id, rt);
        } else if (post(r, w->id, rt) < 0) {
                route_free(rt);
                rt = NULL;
                seterr(err, sizeof(err), "out of memory");
                goto fail;
        }
        if (spec.serving[0])
                artifact[0] = '\0'; /* each version has its own */
        mls_info("model %s: %s %s%s%s%s%s (%lld ms)", w->id,
                 w->loaded ? "reloaded" : "loaded", d1, d2, d3,
                 *artifact ? ", " : "", artifact,
                 (long long)((mls_clock_mono_ns() - t0) / 1000000));
        w->loaded = 1;
        w->sig_loaded = w->sig_seen = sig;
        w->sig_failed = 0;
        mls_series_add(w->s_loads, 1);
        mls_series_set(w->s_time, (double)mls_clock_wall_ms() / 1000);
        set_info(r, w,
                 spec.serving[0] ? mls_model_framework(rt->serving)
                                 : spec.framework);
        return 0;
fail:
        seterr(errstr, errstr_size, "%s%s: %s",
               w->dir[0] ? "ML_MODEL_REPOSITORY " : "", where, err);
fail_reported:
        route_free(rt);
        w->sig_failed = w->sig_seen = sig;
        mls_series_add(w->s_failures, 1);
        if (!direct || w->dir[0])
                mls_error("model %s: load failed, %s: %s", w->id,
                          w->loaded ? "the previous version keeps serving"
                                    : "its messages are dead-lettered",
                          errstr);
        return -1;
}

/* Unloads a model whose directory went away. */
static void unwatch(mls_registry_t *r, struct watch *w)
{
        if (w->loaded) {
                mls_warn("model %s: its directory is gone; unloading it",
                         w->id);
                post(r, w->id, NULL);
                set_info(r, w, NULL);
        }
        w->loaded = 0;
        w->sig_loaded = w->sig_seen = w->sig_failed = 0;
}

/* Whether w's files call for a load now: changed since it was loaded (or
 * failed), and the same as at the previous poll. */
static int due(mls_registry_t *r, struct watch *w)
{
        struct mls_model_spec spec;
        char artifact[PATH_MAX + 1100], err[600];
        uint64_t sig;
        int stable;

        inspect(r, w, &spec, artifact, sizeof(artifact), &sig, err,
                sizeof(err));
        stable = sig == w->sig_seen;
        w->sig_seen = sig;
        if (sig == w->sig_failed || (w->loaded && sig == w->sig_loaded))
                return 0;
        return stable;
}

/* Lists the repository and loads what is new, changed (force: everything)
 * or gone. direct: at start-up, on the calling thread. Returns -1 if the
 * repository cannot be listed. */
static int scan_repository(mls_registry_t *r, int force, int direct,
                           char *errstr, size_t errstr_size)
{
        DIR *d = opendir(r->repository);
        struct dirent *de;
        char err[1024];

        if (!d) {
                seterr(errstr, errstr_size, "ML_MODEL_REPOSITORY %s: %s",
                       r->repository, strerror(errno));
                return -1;
        }
        for (size_t i = 0; i < r->nwatches; i++)
                r->watches[i].present = 0;
        while ((de = readdir(d)) != NULL) {
                char dir[PATH_MAX];
                struct stat st;
                struct watch *w;
                if (de->d_name[0] == '.')
                        continue;
                if (snprintf(dir, sizeof(dir), "%s/%s", r->repository,
                             de->d_name) >= (int)sizeof(dir) ||
                    stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (strlen(de->d_name) > MLS_MODEL_ID_MAX) {
                        mls_warn("%s: a model id is at most %d bytes; "
                                 "ignored",
                                 dir, MLS_MODEL_ID_MAX);
                        continue;
                }
                w = watch_find(r, de->d_name, 1);
                if (!w)
                        continue;
                w->present = 1;
                snprintf(w->dir, sizeof(w->dir), "%s", dir);
                if (force || direct || due(r, w))
                        load(r, w, direct, err, sizeof(err));
        }
        closedir(d);
        for (size_t i = 0; i < r->nwatches; i++)
                if (!r->watches[i].present)
                        unwatch(r, &r->watches[i]);
        return 0;
}

static void poll_once(mls_registry_t *r, int force)
{
        char err[1024];

        if (r->repository) {
                if (scan_repository(r, force, 0, err, sizeof(err)) < 0)
                        mls_warn("%s; the models loaded keep serving", err);
                return;
        }
        if (force || due(r, &r->watches[0]))
                load(r, &r->watches[0], 0, err, sizeof(err));
}

static void free_changes(struct change *c)
{
        while (c) {
                struct change *next = c->next;
                route_free(c->route);
                free(c);
                c = next;
        }
}

static int64_t deadline_after(int ms)
{
        return mls_clock_mono_ns() + ms * 1000000LL;
}

/* The loader thread: polls, reloads on request, unloads retired models. */
static void *loader_main(void *arg)
{
        mls_registry_t *r = arg;
        int64_t next = deadline_after(r->poll_ms);

        pthread_mutex_lock(&r->lock);
        while (!r->stop) {
                struct change *retired;
                int force, timed_out;

                if (!r->kick && !r->retired) {
                        struct timespec until = mls_clock_mono_timespec(next);
                        if (r->poll_ms > 0)
                                pthread_cond_timedwait(&r->cond, &r->lock,
                                                       &until);
                        else
                                pthread_cond_wait(&r->cond, &r->lock);
                }
                if (r->stop)
                        break;
                retired = r->retired;
                r->retired = NULL;
                force = r->kick;
                r->kick = 0;
                pthread_mutex_unlock(&r->lock);

                free_changes(retired);
                timed_out = r->poll_ms > 0 && mls_clock_mono_ns() >= next;
                if (force || timed_out) {
                        poll_once(r, force);
                        next = deadline_after(r->poll_ms);
                }
                pthread_mutex_lock(&r->lock);
        }
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

/* ---- engine side ---- */

static void free_route(void *rt)
{
        route_free(rt);
}

static const char *name_of(const mls_model_t *m)
{
        return m ? mls_model_version_name(m) : "";
}

/* ml_stream_model_version_info{model_id, version, role}: 1 for the
 * versions rt serves (0 for those of old), and a log line when a version
 * changed: the switch point. Engine thread. */
static void report_switch(mls_registry_t *r, const char *id,
                          const struct mls_model_route *old,
                          const struct mls_model_route *rt)
{
        static const char *const roles[] = {"serving", "canary", "shadow"};
        const mls_model_t *was[3] = {old ? old->serving : NULL,
                                     old ? old->canary : NULL,
                                     old ? old->shadow : NULL};
        const mls_model_t *now[3] = {rt ? rt->serving : NULL,
                                     rt ? rt->canary : NULL,
                                     rt ? rt->shadow : NULL};
        int changed = 0;

        for (int i = 0; i < 3; i++) {
                if (strcmp(name_of(was[i]), name_of(now[i])) != 0)
                        changed = 1;
                if (!r->m_version)
                        continue;
                if (was[i] && *name_of(was[i]))
                        mls_series_set(mls_series3(r->m_version, id,
                                                   name_of(was[i]), roles[i]),
                                       0);
        }
        for (int i = 0; i < 3 && r->m_version; i++)
                if (now[i] && *name_of(now[i]))
                        mls_series_set(mls_series3(r->m_version, id,
                                                   name_of(now[i]), roles[i]),
                                       1);
        if (changed && old && rt)
                mls_info("model %s: switched: serving %s (was %s), canary "
                         "%s (was %s), shadow %s (was %s)",
                         id, *name_of(now[0]) ? name_of(now[0]) : "-",
                         *name_of(was[0]) ? name_of(was[0]) : "-",
                         now[1] ? name_of(now[1]) : "none",
                         was[1] ? name_of(was[1]) : "none",
                         now[2] ? name_of(now[2]) : "none",
                         was[2] ? name_of(was[2]) : "none");
}

/* Serves rt for id; returns the route it replaces (or NULL). Engine
 * thread, or the creating thread before the loader starts. */
static struct mls_model_route *swap(mls_registry_t *r, const char *id,
                                    struct mls_model_route *rt)
{
        size_t n = strlen(id);
        struct mls_model_route *old;

        if (!r->repository) {
                old = r->only;
                r->only = rt;
                r->nserving = rt ? 1 : 0;
                report_switch(r, id, old, rt);
                return old;
        }
        if (!rt) {
                old = mls_strmap_remove(&r->served, id, n);
        } else {
                old = mls_strmap_get(&r->served, id, n);
                if (!mls_strmap_put(&r->served, id, n, rt)) {
                        mls_error("model %s: out of memory; not served", id);
                        return rt;
                }
        }
        r->nserving += (rt ? 1 : 0) - (old ? 1 : 0);
        report_switch(r, id, old, rt);
        return old;
}

static void install(mls_registry_t *r, const char *id,
                    struct mls_model_route *rt)
{
        route_free(swap(r, id, rt));
}

const struct mls_model_route *mls_registry_get(mls_registry_t *r,
                                               const char *model_id)
{
        if (!r->repository)
                return r->only;
        return mls_strmap_get(&r->served, model_id, strlen(model_id));
}

struct foreach_ctx {
        mls_registry_visit visit;
        void *opaque;
};

static void visit_served(void *opaque, struct mls_strmap_entry *e)
{
        struct foreach_ctx *c = opaque;

        c->visit(c->opaque, e->key, e->value);
}

void mls_registry_foreach(mls_registry_t *r, mls_registry_visit visit,
                          void *opaque)
{
        struct foreach_ctx c = {visit, opaque};

        if (!r->repository) {
                if (r->only)
                        visit(opaque, SINGLE_ID, r->only);
                return;
        }
        mls_strmap_foreach(&r->served, visit_served, &c);
}

int mls_registry_apply(mls_registry_t *r)
{
        struct change *list, *rev = NULL, *old = NULL;
        int n = 0;

        if (!atomic_load_explicit(&r->pending, memory_order_acquire))
                return 0;
        pthread_mutex_lock(&r->lock);
        list = r->changes;
        r->changes = NULL;
        atomic_store_explicit(&r->pending, 0, memory_order_relaxed);
        pthread_mutex_unlock(&r->lock);
        while (list) { /* oldest first */
                struct change *next = list->next;
                list->next = rev;
                rev = list;
                list = next;
        }
        while (rev) {
                struct change *next = rev->next;
                /* The change record carries the replaced route back. */
                rev->route = swap(r, rev->id, rev->route);
                rev->next = old;
                old = rev;
                rev = next;
                n++;
        }
        pthread_mutex_lock(&r->lock);
        while (old) {
                struct change *next = old->next;
                old->next = r->retired;
                r->retired = old;
                old = next;
        }
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
        return n;
}

void mls_registry_reload(mls_registry_t *r)
{
        if (!r->started) {
                mls_info("reload: the identity model has nothing to reload");
                return;
        }
        mls_info("reload: loading every model again");
        pthread_mutex_lock(&r->lock);
        r->kick = 1;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
}

size_t mls_registry_count(const mls_registry_t *r)
{
        return r->nserving;
}

/* ---- life cycle ---- */

mls_registry_t *mls_registry_new(const struct mls_registry_conf *conf,
                                 char *errstr, size_t errstr_size)
{
        mls_registry_t *r = calloc(1, sizeof(*r));
        pthread_condattr_t ca;
        sigset_t all, old;
        struct watch *w;
        int rc;

        if (!r) {
                seterr(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&r->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&r->cond, &ca);
        pthread_condattr_destroy(&ca);
        r->input_width = conf->input_width;
        r->threads = conf->threads;
        r->poll_ms = conf->poll_ms;
        r->metrics = conf->metrics;
        r->on_change = conf->on_change;
        r->on_change_opaque = conf->on_change_opaque;
        if ((conf->repository && !(r->repository = strdup(conf->repository))) ||
            !(r->framework =
                      strdup(conf->framework ? conf->framework : "identity")) ||
            (conf->path && !(r->path = strdup(conf->path))) ||
            (conf->output && !(r->output = strdup(conf->output)))) {
                seterr(errstr, errstr_size, "out of memory");
                goto fail;
        }
        if (r->repository && r->path) {
                seterr(errstr, errstr_size,
                       "ML_MODEL_REPOSITORY and ML_MODEL_PATH are both set; "
                       "use one: a repository serves many models, a path "
                       "one model for every model id");
                goto fail;
        }
        register_metrics(r);
        if (r->repository) {
                struct stat st;
                if (stat(r->repository, &st) < 0) {
                        seterr(errstr, errstr_size,
                               "ML_MODEL_REPOSITORY %s: %s", r->repository,
                               strerror(errno));
                        goto fail;
                }
                if (!S_ISDIR(st.st_mode)) {
                        seterr(errstr, errstr_size,
                               "ML_MODEL_REPOSITORY %s: not a directory",
                               r->repository);
                        goto fail;
                }
                if (scan_repository(r, 1, 1, errstr, errstr_size) < 0)
                        goto fail;
                mls_info("model repository %s: %zu model(s) loaded",
                         r->repository, r->nserving);
                if (r->nserving == 0)
                        mls_warn("model repository %s has no loadable model "
                                 "yet; every message is dead-lettered "
                                 "until one appears",
                                 r->repository);
        } else {
                w = watch_find(r, SINGLE_ID, 1);
                if (!w) {
                        seterr(errstr, errstr_size, "out of memory");
                        goto fail;
                }
                if (r->path && strcmp(r->framework, "identity") == 0)
                        mls_warn("ML_MODEL_PATH %s is ignored: "
                                 "ML_MODEL_FRAMEWORK=identity takes no "
                                 "artifact",
                                 r->path);
                if (load(r, w, 1, errstr, errstr_size) < 0)
                        goto fail;
                if (!r->path) {
                        mls_info("ML_MODEL_PATH unset: serving the identity "
                                 "model");
                        return r; /* nothing to watch */
                }
        }
        /* Signals (SIGHUP, SIGTERM) are for the engine thread: the loader
         * starts with all of them blocked, so none interrupts its reads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&r->thread, NULL, loader_main, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
                seterr(errstr, errstr_size,
                       "cannot start the model loader thread");
                goto fail;
        }
        pthread_setname_np(r->thread, "mls:models"); /* top -H, /proc */
        r->started = 1;
        return r;
fail:
        mls_registry_free(r);
        return NULL;
}

void mls_registry_free(mls_registry_t *r)
{
        if (!r)
                return;
        if (r->started) {
                pthread_mutex_lock(&r->lock);
                r->stop = 1;
                pthread_cond_signal(&r->cond);
                pthread_mutex_unlock(&r->lock);
                pthread_join(r->thread, NULL);
        }
        free_changes(r->changes);
        free_changes(r->retired);
        route_free(r->only);
        mls_strmap_free(&r->served, free_route);
        free(r->watches);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r->repository);
        free(r->framework);
        free(r->path);
        free(r->output);
        free(r);
}
