/* The model repository: model.conf parsing, artifact paths, scanning,
 * change detection and the swap at a batch boundary. Uses the identity
 * framework only, so it runs in every build. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "model/registry.h"
#include "test.h"

static int parse(const char *text, struct mls_model_spec *spec, char *err,
                 size_t err_size)
{
        return mls_registry_parse_spec(text, strlen(text), "m/model.conf", spec,
                                       err, err_size);
}

MLS_TEST(model_registry_parse_full)
{
        struct mls_model_spec s;
        char err[256];

        CHECK_INT_EQ(parse("# a model\n"
                           "framework = torch\n"
                           "\n"
                           "  artifact=net v2.pt   # the file\n"
                           "input_width = 3\r\n"
                           "max_batch_rows=64\n"
                           "threads = 2\n"
                           "output = logits\n",
                           &s, err, sizeof(err)),
                     0);
        CHECK_STR_EQ(s.framework, "torch");
        CHECK_STR_EQ(s.artifact, "net v2.pt");
        CHECK_INT_EQ(s.input_width, 3);
        CHECK_INT_EQ(s.max_batch_rows, 64);
        CHECK_INT_EQ(s.threads, 2);
        CHECK_STR_EQ(s.output, "logits");
}

MLS_TEST(model_registry_parse_defaults)
{
        struct mls_model_spec s;
        char err[256];

        CHECK_INT_EQ(parse("framework=tensorflow", &s, err, sizeof(err)), 0);
        CHECK_STR_EQ(s.framework, "tensorflow");
        CHECK_STR_EQ(s.artifact, "");
        CHECK_INT_EQ(s.input_width, 0);
        CHECK_INT_EQ(s.max_batch_rows, 0);
        CHECK_INT_EQ(s.threads, -1);
        CHECK_STR_EQ(s.output, "");
}

MLS_TEST(model_registry_parse_errors)
{
        static const struct {
                const char *text, *want;
        } cases[] = {
                {"artifact = x.pt\n", "\"framework\" is missing"},
                {"framework = torch\nframwork = x\n",
                 "m/model.conf:2: unknown key \"framwork\""},
                {"framework = torch\nframework = torch\n", ":2: \"framework\" "
                                                           "is set twice"},
                {"framework = torch\ninput_width = three\n",
                 ":2: input_width: \"three\" is not a number"},
                {"framework = torch\ninput_width = -1\n", "not a number"},
                {"framework = torch\nmax_batch_rows = 99999999\n",
                 "0..1048576"},
                {"framework = torch\nthreads = 1000\n", "0..256"},
                {"framework = torch\njust words\n", ":2: expected key = value"},
                {"framework =\n", ":1: framework: the value is empty"},
                {"= torch\n", ":1: a value without a key"},
        };
        struct mls_model_spec s;
        char err[256];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                err[0] = '\0';
                CHECK_INT_EQ(parse(cases[i].text, &s, err, sizeof(err)), -1);
                CHECK_CONTAINS(err, cases[i].want);
        }
        CHECK_INT_EQ(mls_registry_parse_spec("framework=torch\0x", 17, "f", &s,
                                             err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "not a text file");
}

MLS_TEST(model_registry_parse_versions)
{
        static const struct {
                const char *text, *want;
        } bad[] = {
                {"canary = b\ncanary_share = 0.1\n", "\"serving\" is missing"},
                {"serving = a\nframework = torch\n",
                 "belong in each version's own model.conf (a/model.conf)"},
                {"serving = a\ncanary = b\n", "go together"},
                {"serving = a\ncanary_share = 0.5\n", "go together"},
                {"serving = a\ncanary = b\ncanary_share = 1.5\n",
                 "canary_share: \"1.5\" is not a number in range (0..1"},
                {"serving = a\ncanary = a\ncanary_share = 0.5\n",
                 "must be different versions"},
                {"serving = a\nshadow = a\n", "must be different versions"},
                {"serving = ../etc\n", "is not a version name"},
                {"serving = .hidden\n", "is not a version name"},
                {"serving = a\ncanary_key = metadata.tenant\n",
                 "\"canary_key\" without \"canary\""},
                {"serving = a\ncanary = b\ncanary_share = 0.5\ncanary_key = "
                 "tenant\n",
                 "neither input_id nor metadata.NAME"},
                {"serving = a\nshadow_tolerance = 0.1\n", "without \"shadow\""},
                {"serving = a\nshadow = b\nshadow_tolerance = -1\n",
                 "0 or more"},
        };
        struct mls_model_spec s;
        char err[300];

        CHECK_INT_EQ(parse("serving = v1\ncanary = v2.1\ncanary_share = 0.2\n"
                           "canary_key = metadata.tenant\nshadow = v3_rc-1\n"
                           "shadow_tolerance = 0.5\n",
                           &s, err, sizeof(err)),
                     0);
        CHECK_STR_EQ(s.serving, "v1");
        CHECK_STR_EQ(s.canary, "v2.1");
        CHECK(s.canary_share == 0.2);
        CHECK_STR_EQ(s.canary_key, "tenant");
        CHECK_STR_EQ(s.shadow, "v3_rc-1");
        CHECK(s.shadow_tolerance == 0.5);
        CHECK_STR_EQ(s.framework, "");
        CHECK_INT_EQ(parse("serving = v1\n", &s, err, sizeof(err)), 0);
        CHECK_STR_EQ(s.canary, "");
        CHECK(s.shadow_tolerance == MLS_SHADOW_TOLERANCE_DEFAULT);
        CHECK_INT_EQ(parse("serving=a\ncanary=b\ncanary_share=0.3\n"
                           "canary_key = input_id\n",
                           &s, err, sizeof(err)),
                     0);
        CHECK_STR_EQ(s.canary_key, "");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK_INT_EQ(parse(bad[i].text, &s, err, sizeof(err)), -1);
                CHECK_CONTAINS(err, bad[i].want);
        }
}

MLS_TEST(model_registry_artifact_paths)
{
        struct mls_model_spec s = {.threads = -1};
        char out[64];

        strcpy(s.framework, "torch");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, sizeof(out)),
                     0);
        CHECK_STR_EQ(out, "/r/a/model.pt");
        strcpy(s.framework, "tensorflow");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, sizeof(out)),
                     0);
        CHECK_STR_EQ(out, "/r/a/saved_model");
        strcpy(s.framework, "identity");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, sizeof(out)),
                     0);
        CHECK_STR_EQ(out, "");
        strcpy(s.framework, "torch");
        strcpy(s.artifact, "/models/shared.pt");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, sizeof(out)),
                     0);
        CHECK_STR_EQ(out, "/models/shared.pt");
        strcpy(s.artifact, "v1/net.pt");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, sizeof(out)),
                     0);
        CHECK_STR_EQ(out, "/r/a/v1/net.pt");
        CHECK_INT_EQ(mls_registry_artifact_path("/r/a", &s, out, 8), -1);
}

/* ---- repository on disk ---- */

static char repo[256];

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        if (!f) {
                perror(path);
                abort();
        }
        fputs(text, f);
        fclose(f);
}

static void add_model(const char *id, const char *conf)
{
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", repo, id);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/model.conf", repo, id);
        write_file(path, conf);
}

static void make_repo(void)
{
        snprintf(repo, sizeof(repo), "/tmp/mls-unit-repo-XXXXXX");
        if (!mkdtemp(repo)) {
                perror("mkdtemp");
                abort();
        }
}

static void remove_repo(void)
{
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", repo);
        if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", repo);
}

/* Calls apply until n changes arrived (the loader runs on its own thread)
 * or 5 s passed. Returns the changes seen. */
static int apply_until(mls_registry_t *r, int n)
{
        int got = 0;

        for (int i = 0; i < 500 && got < n; i++) {
                got += mls_registry_apply(r);
                if (got < n)
                        usleep(10000);
        }
        return got;
}

/* Renders metrics into b until they contain needle, for up to 5 s. */
static int wait_metric(mls_metrics_t *metrics, struct mls_buf *b,
                       const char *needle)
{
        mls_buf_init(b, 1 << 20);
        for (int i = 0; i < 500; i++) {
                mls_buf_reset(b);
                mls_metrics_render(metrics, b);
                mls_buf_putc(b, '\0');
                if (strstr(b->data, needle))
                        return 1;
                usleep(10000);
        }
        return 0;
}

MLS_TEST(model_registry_repository)
{
        struct mls_registry_conf rc = {.poll_ms = 20};
        mls_metrics_t *metrics = mls_metrics_new();
        mls_registry_t *r;
        mls_model_t *a, *a2;
        struct mls_buf b;
        char err[512], path[512];

        mls_log_set_level("error");
        make_repo();
        add_model("alpha", "framework = identity\n");
        add_model("beta", "framework = identity\ninput_width = 4\n");
        add_model("broken", "framework = nosuch\n");
        add_model("typo", "framwork = identity\n");
        snprintf(path, sizeof(path), "%s/.hidden", repo);
        mkdir(path, 0755);
        rc.repository = repo;
        rc.metrics = metrics;
        r = mls_registry_new(&rc, err, sizeof(err));
        CHECK(r != NULL);
        CHECK_INT_EQ(mls_registry_count(r), 2);
        a = mls_registry_get(r, "alpha")->serving;
        CHECK(a != NULL);
        CHECK_STR_EQ(mls_model_framework(a), "identity");
        CHECK_INT_EQ(mls_model_input_width(a), 0);
        CHECK_INT_EQ(
                mls_model_input_width(mls_registry_get(r, "beta")->serving), 4);
        CHECK(mls_registry_get(r, "broken") == NULL);
        CHECK(mls_registry_get(r, "typo") == NULL);
        CHECK(mls_registry_get(r, "nope") == NULL);
        CHECK(mls_registry_get(r, ".hidden") == NULL);

        /* A changed model.conf is loaded after it settles; the old model
         * serves until the engine thread applies the change. */
        add_model("alpha", "framework = identity\ninput_width = 2\n");
        CHECK_INT_EQ(apply_until(r, 1), 1);
        a2 = mls_registry_get(r, "alpha")->serving;
        CHECK(a2 != NULL);
        CHECK_INT_EQ(mls_model_input_width(a2), 2);

        /* A new directory appears, one goes away. */
        add_model("gamma", "framework = identity\n");
        snprintf(path, sizeof(path), "rm -rf '%s/beta'", repo);
        CHECK_INT_EQ(system(path), 0);
        CHECK_INT_EQ(apply_until(r, 2), 2);
        CHECK(mls_registry_get(r, "gamma") != NULL);
        CHECK(mls_registry_get(r, "beta") == NULL);
        CHECK_INT_EQ(mls_registry_count(r), 2);

        /* A broken change keeps the old model serving and is counted. */
        add_model("gamma", "framework = torch\nartifact = /nonexistent.pt\n");
        usleep(300000);
        CHECK_INT_EQ(mls_registry_apply(r), 0);
        CHECK(mls_registry_get(r, "gamma") != NULL);
        CHECK_STR_EQ(mls_model_framework(mls_registry_get(r, "gamma")->serving),
                     "identity");

        /* SIGHUP reloads everything that loads. */
        mls_registry_reload(r);
        CHECK_INT_EQ(apply_until(r, 1), 1);

        /* The loader goes on with the other models after alpha's. */
        CHECK(wait_metric(metrics, &b,
                          "ml_stream_model_load_failures_total{model_id="
                          "\"typo\"} 2"));
        CHECK_CONTAINS(b.data, "ml_stream_model_load_failures_total{model_id="
                               "\"gamma\"} 2");
        CHECK_CONTAINS(b.data,
                       "ml_stream_model_load_failures_total{model_id=\"broken"
                       "\"} 2");
        CHECK_CONTAINS(b.data, "ml_stream_model_info{model_id=\"beta\","
                               "framework=\"identity\"} 0");
        CHECK_CONTAINS(b.data, "ml_stream_model_info{model_id=\"alpha\","
                               "framework=\"identity\"} 1");
        CHECK_CONTAINS(b.data,
                       "ml_stream_model_loads_total{model_id=\"alpha\"} 3");
        mls_buf_free(&b);
        mls_registry_free(r);
        mls_metrics_free(metrics);
        remove_repo();
}

MLS_TEST(model_registry_start_up_errors)
{
        struct mls_registry_conf rc = {0};
        mls_registry_t *r;
        char err[512];

        mls_log_set_level("error");
        rc.repository = "/nonexistent/models";
        CHECK(mls_registry_new(&rc, err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "ML_MODEL_REPOSITORY /nonexistent/models: No "
                            "such file");

        rc.repository = "/etc/hostname";
        CHECK(mls_registry_new(&rc, err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "not a directory");

        rc.repository = "/tmp";
        rc.path = "/x.pt";
        CHECK(mls_registry_new(&rc, err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "ML_MODEL_REPOSITORY and ML_MODEL_PATH");

        memset(&rc, 0, sizeof(rc));
        rc.framework = "onnx";
        rc.path = "/x.onnx";
        CHECK(mls_registry_new(&rc, err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "ML_MODEL_FRAMEWORK: model framework \"onnx\" is "
                            "not built into this mlstream; built in: "
                            "identity");

        /* No path: identity serves every id. */
        rc.path = NULL;
        r = mls_registry_new(&rc, err, sizeof(err));
        CHECK(r != NULL);
        CHECK(mls_registry_get(r, "anything") != NULL);
        CHECK(mls_registry_get(r, "anything")->serving ==
              mls_registry_get(r, "else")->serving);
        CHECK_STR_EQ(mls_model_framework(mls_registry_get(r, "x")->serving),
                     "identity");
        mls_registry_reload(r); /* nothing to do, must not block */
        CHECK_INT_EQ(mls_registry_apply(r), 0);
        mls_registry_free(r);
}

MLS_TEST(model_registry_max_batch_rows_split)
{
        struct mls_model_conf mc = {.max_batch_rows = 3};
        float data[7 * 2];
        struct mls_tensor in = {.data = data, .rows = 7, .cols = 2}, out;
        mls_model_t *m;
        char err[256];

        for (int i = 0; i < 14; i++)
                data[i] = (float)i;
        m = mls_model_load(&mls_model_identity, &mc, err, sizeof(err));
        CHECK(m != NULL);
        CHECK_INT_EQ(mls_model_infer(m, &in, &out, err, sizeof(err)), 0);
        CHECK_INT_EQ(out.rows, 7);
        CHECK_INT_EQ(out.cols, 2);
        CHECK(out.data != data); /* joined from three calls */
        for (int i = 0; i < 14; i++)
                CHECK(out.data[i] == (float)i);
        mls_model_free(m);
}

/* A model with versions: the route has each named version, all or nothing,
 * and a change of model.conf swaps the whole route at once. */
MLS_TEST(model_registry_versions)
{
        mls_metrics_t *metrics = mls_metrics_new();
        struct mls_registry_conf rc = {.poll_ms = 20};
        const struct mls_model_route *rt;
        mls_registry_t *r;
        char err[512];

        mls_log_set_level("error");
        make_repo();
        add_model("m", "serving = a\ncanary = b\ncanary_share = 0.25\n"
                       "canary_key = metadata.tenant\nshadow = c\n");
        add_model("m/a", "framework = identity\n");
        add_model("m/b", "framework = identity\ninput_width = 2\n");
        add_model("m/c", "framework = identity\ninput_width = 3\n");
        rc.repository = repo;
        rc.metrics = metrics;
        r = mls_registry_new(&rc, err, sizeof(err));
        CHECK(r != NULL);
        rt = mls_registry_get(r, "m");
        CHECK(rt != NULL && rt->serving && rt->canary && rt->shadow);
        CHECK_STR_EQ(mls_model_version_name(rt->serving), "a");
        CHECK_STR_EQ(mls_model_version_name(rt->canary), "b");
        CHECK_INT_EQ(mls_model_input_width(rt->canary), 2);
        CHECK_STR_EQ(mls_model_version_name(rt->shadow), "c");
        CHECK(rt->canary_share == 0.25);
        CHECK_STR_EQ(rt->canary_key, "tenant");
        CHECK(mls_registry_get(r, "m/a") == NULL);

        /* a missing version fails the whole load; the route before stays */
        add_model("m", "serving = a\nshadow = nosuch\n");
        CHECK(mls_registry_apply(r) == 0);
        usleep(300 * 1000);
        CHECK_INT_EQ(mls_registry_apply(r), 0);
        CHECK(mls_registry_get(r, "m") == rt);

        /* promote: b serves alone */
        add_model("m", "serving = b\n");
        CHECK_INT_EQ(apply_until(r, 1), 1);
        rt = mls_registry_get(r, "m");
        CHECK_STR_EQ(mls_model_version_name(rt->serving), "b");
        CHECK(rt->canary == NULL && rt->shadow == NULL);
        mls_registry_free(r);
        mls_metrics_free(metrics);
        remove_repo();
}
