/* The torch and tensorflow adapters on the committed fixtures, through the
 * same calls the engine makes. Tests of a framework this build lacks pass
 * without checking anything. Numbers are compared with the frameworks' own
 * Python output by tests/integration/test_models.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "test.h"

#define FIXTURES MLS_SOURCE_DIR "/tests/fixtures"

/* (unused in a build without torch and tensorflow) */
__attribute__((unused)) static mls_model_t *load(const char *fw,
                                                 const char *path, size_t width,
                                                 const char *output, char *err,
                                                 size_t err_size)
{
        struct mls_model_conf mc = {.path = path,
                                    .threads = 1,
                                    .input_width = width,
                                    .output = output};
        const struct mls_model_type *t = mls_model_type_find(fw, err, err_size);

        return t ? mls_model_load(t, &mc, err, err_size) : NULL;
}

__attribute__((unused)) static void fill(float *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                v[i] = (float)((int)(i * 37 % 23) - 11) / 7.0f;
}

/* A batch scores each row as it would alone, within float rounding. */
__attribute__((unused)) static int batch_matches_rows(mls_model_t *m,
                                                      size_t rows, size_t cols)
{
        float *in = malloc(rows * cols * sizeof(float)), *all;
        struct mls_tensor t = {.data = in, .rows = rows, .cols = cols}, out;
        char err[256];
        size_t oc;
        int ok = 1;

        fill(in, rows * cols);
        if (mls_model_infer(m, &t, &out, err, sizeof(err)) < 0) {
                fprintf(stderr, "    infer: %s\n", err);
                free(in);
                return 0;
        }
        oc = out.cols;
        all = malloc(rows * oc * sizeof(float));
        memcpy(all, out.data, rows * oc * sizeof(float));
        for (size_t r = 0; r < rows && ok; r++) {
                struct mls_tensor one = {
                        .data = in + r * cols, .rows = 1, .cols = cols};
                if (mls_model_infer(m, &one, &out, err, sizeof(err)) < 0 ||
                    out.cols != oc)
                        ok = 0;
                for (size_t c = 0; ok && c < oc; c++)
                        if (fabsf(out.data[c] - all[r * oc + c]) > 1e-5f)
                                ok = 0;
        }
        free(all);
        free(in);
        return ok;
}

MLS_TEST(model_adapters_builtin_list)
{
        char err[256], list[128];

        CHECK(mls_model_type_find("onnx", err, sizeof(err)) == NULL);
        mls_model_types_list(list, sizeof(list));
        CHECK_CONTAINS(err, list);
        CHECK_CONTAINS(list, "identity");
#ifdef MLS_HAVE_TORCH
        CHECK_CONTAINS(list, "torch");
#endif
#ifdef MLS_HAVE_TENSORFLOW
        CHECK_CONTAINS(list, "tensorflow");
#endif
}

#ifdef MLS_HAVE_TORCH
MLS_TEST(model_adapters_torch_mlp)
{
        char err[512];
        mls_model_t *m = load("torch", FIXTURES "/torch/mlp.pt", 0, NULL, err,
                              sizeof(err));
        float bad[4] = {1, 2, 3, 4};
        struct mls_tensor t = {.data = bad, .rows = 1, .cols = 4}, out;

        CHECK(m != NULL);
        CHECK_STR_EQ(mls_model_framework(m), "torch");
        CHECK_INT_EQ(mls_model_input_width(m), 3); /* discovered */
        CHECK(batch_matches_rows(m, 300, 3));
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "input has 4 features per row, the model takes 3");
        mls_model_free(m);
}

MLS_TEST(model_adapters_torch_split_equals_whole)
{
        struct mls_model_conf mc = {.path = FIXTURES "/torch/mlp.pt",
                                    .max_batch_rows = 16};
        const struct mls_model_type *t;
        mls_model_t *whole, *split;
        float in[100 * 3];
        struct mls_tensor x = {.data = in, .rows = 100, .cols = 3}, a, b;
        float *keep;
        char err[512];

        t = mls_model_type_find("torch", err, sizeof(err));
        CHECK(t != NULL);
        split = mls_model_load(t, &mc, err, sizeof(err));
        mc.max_batch_rows = 0;
        whole = mls_model_load(t, &mc, err, sizeof(err));
        CHECK(split && whole);
        fill(in, 300);
        CHECK_INT_EQ(mls_model_infer(whole, &x, &a, err, sizeof(err)), 0);
        keep = malloc(200 * sizeof(float));
        memcpy(keep, a.data, 200 * sizeof(float));
        CHECK_INT_EQ(mls_model_infer(split, &x, &b, err, sizeof(err)), 0);
        CHECK_INT_EQ(b.rows, 100);
        CHECK_INT_EQ(b.cols, 2);
        for (int i = 0; i < 200; i++)
                CHECK(fabsf(keep[i] - b.data[i]) < 1e-5f);
        free(keep);
        mls_model_free(split);
        mls_model_free(whole);
}

MLS_TEST(model_adapters_torch_throws)
{
        char err[512];
        mls_model_t *m = load("torch", FIXTURES "/torch/throws.pt", 0, NULL,
                              err, sizeof(err));
        float rows[6] = {1, 2, 3, 4, 666, 6};
        struct mls_tensor t = {.data = rows, .rows = 2, .cols = 3}, out;

        CHECK(m != NULL);
        CHECK_INT_EQ(mls_model_input_width(m), 3);
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "poison value 666");
        CHECK(strchr(err, '\n') == NULL); /* one line, no traceback */
        t.rows = 1;
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), 0);
        CHECK_INT_EQ(out.cols, 2);
        mls_model_free(m);
}

MLS_TEST(model_adapters_torch_tuple_and_dict)
{
        char err[512];
        mls_model_t *mlp, *tup, *tup1, *dict;
        float in[3] = {0.5f, -1, 2}, a[2];
        struct mls_tensor t = {.data = in, .rows = 1, .cols = 3}, out;

        mlp = load("torch", FIXTURES "/torch/mlp.pt", 0, NULL, err,
                   sizeof(err));
        tup = load("torch", FIXTURES "/torch/tuple.pt", 0, NULL, err,
                   sizeof(err));
        tup1 = load("torch", FIXTURES "/torch/tuple.pt", 0, "1", err,
                    sizeof(err));
        CHECK(mlp && tup && tup1);
        CHECK_INT_EQ(mls_model_infer(mlp, &t, &out, err, sizeof(err)), 0);
        memcpy(a, out.data, sizeof(a));
        /* A tuple: its first element by default. */
        CHECK_INT_EQ(mls_model_infer(tup, &t, &out, err, sizeof(err)), 0);
        CHECK(fabsf(out.data[0] - a[0]) < 1e-6f);
        CHECK(fabsf(out.data[1] - a[1]) < 1e-6f);
        /* output = 1: the probabilities. */
        CHECK_INT_EQ(mls_model_infer(tup1, &t, &out, err, sizeof(err)), 0);
        CHECK(fabsf(out.data[0] + out.data[1] - 1) < 1e-5f);

        /* A dict needs output = KEY: refused at load, naming the keys. */
        dict = load("torch", FIXTURES "/torch/dict.pt", 0, NULL, err,
                    sizeof(err));
        CHECK(dict == NULL);
        CHECK_CONTAINS(err, "returns a dict (keys: logits, probs)");
        CHECK_CONTAINS(err, "choose one: output = KEY in its model.conf, or "
                            "ML_MODEL_OUTPUT");
        dict = load("torch", FIXTURES "/torch/dict.pt", 0, "nope", err,
                    sizeof(err));
        CHECK(dict == NULL);
        CHECK_CONTAINS(err, "no tensor \"nope\"");
        dict = load("torch", FIXTURES "/torch/dict.pt", 0, "logits", err,
                    sizeof(err));
        CHECK(dict != NULL);
        CHECK_INT_EQ(mls_model_infer(dict, &t, &out, err, sizeof(err)), 0);
        CHECK(fabsf(out.data[0] - a[0]) < 1e-6f);
        mls_model_free(dict);
        mls_model_free(tup1);
        mls_model_free(tup);
        mls_model_free(mlp);
}

MLS_TEST(model_adapters_torch_any_width_and_errors)
{
        char err[512];
        mls_model_t *m = load("torch", FIXTURES "/torch/anywidth.pt", 0, NULL,
                              err, sizeof(err));
        float in[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        struct mls_tensor t = {.data = in, .rows = 2, .cols = 5}, out;

        CHECK(m != NULL);
        CHECK_INT_EQ(mls_model_input_width(m), 0);
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), 0);
        CHECK_INT_EQ(out.cols, 1); /* [rows] becomes [rows, 1] */
        CHECK(out.data[0] == 15 && out.data[1] == 40);
        mls_model_free(m);

        CHECK(load("torch", "/nonexistent/model.pt", 0, NULL, err,
                   sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "cannot load TorchScript /nonexistent/model.pt");
        CHECK(load("torch", FIXTURES "/tensorflow/mlp/saved_model.pb", 0, NULL,
                   err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "cannot load TorchScript");
        /* A configured width the model refuses fails the load, and the
         * error blames the width, not the file. */
        CHECK(load("torch", FIXTURES "/torch/mlp.pt", 4, NULL, err,
                   sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "input width 4: the model refuses rows of that "
                            "width");
        CHECK(strstr(err, "cannot load") == NULL);
}
#endif

#ifdef MLS_HAVE_TENSORFLOW
MLS_TEST(model_adapters_tensorflow_mlp)
{
        char err[512];
        mls_model_t *m = load("tensorflow", FIXTURES "/tensorflow/mlp", 0, NULL,
                              err, sizeof(err));
        float bad[2] = {1, 2};
        struct mls_tensor t = {.data = bad, .rows = 1, .cols = 2}, out;

        if (!m)
                fprintf(stderr, "    %s\n", err);
        CHECK(m != NULL);
        CHECK_STR_EQ(mls_model_framework(m), "tensorflow");
        CHECK_INT_EQ(mls_model_input_width(m), 3); /* from the signature */
        CHECK(batch_matches_rows(m, 300, 3));
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "input has 2 features per row, the model takes 3");
        mls_model_free(m);
}

MLS_TEST(model_adapters_tensorflow_outputs_and_errors)
{
        char err[512];
        mls_model_t *m;
        float in[3] = {0.5f, -1, 2};
        struct mls_tensor t = {.data = in, .rows = 1, .cols = 3}, out;

        m = load("tensorflow", FIXTURES "/tensorflow/twoout", 0, NULL, err,
                 sizeof(err));
        CHECK(m == NULL);
        CHECK_CONTAINS(err,
                       "has outputs probs, scores; choose one: output = NAME");
        m = load("tensorflow", FIXTURES "/tensorflow/twoout", 0, "logits", err,
                 sizeof(err));
        CHECK(m == NULL);
        CHECK_CONTAINS(err, "no output \"logits\"; it has: probs, scores");
        m = load("tensorflow", FIXTURES "/tensorflow/twoout", 0, "probs", err,
                 sizeof(err));
        CHECK(m != NULL);
        CHECK_INT_EQ(mls_model_infer(m, &t, &out, err, sizeof(err)), 0);
        CHECK_INT_EQ(out.cols, 2);
        CHECK(fabsf(out.data[0] + out.data[1] - 1) < 1e-5f);
        mls_model_free(m);

        CHECK(load("tensorflow", "/nonexistent/saved", 0, NULL, err,
                   sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "cannot load SavedModel /nonexistent/saved");
        CHECK(load("tensorflow", FIXTURES "/tensorflow/mlp", 4, NULL, err,
                   sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "input width 4: the model takes rows of 3 "
                            "numbers");
}
#endif
