/* The SavedModel signature reader, on the committed fixtures (no
 * TensorFlow needed) and on malformed bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tf_signature.h"
#include "test.h"

static unsigned char *slurp(const char *rel, size_t *len)
{
        char path[512];
        unsigned char *buf;
        FILE *f;
        long n;

        snprintf(path, sizeof(path), "%s/%s", MLS_SOURCE_DIR, rel);
        f = fopen(path, "rb");
        if (!f)
                return NULL;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        *len = (size_t)n;
        return buf;
}

static int load_sig(const char *rel, struct mls_tf_signature *sig, char *err,
                    size_t err_size)
{
        size_t len, mg_len;
        const void *mg;
        unsigned char *pb = slurp(rel, &len);
        int rc;

        if (!pb) {
                snprintf(err, err_size, "cannot read %s", rel);
                return -1;
        }
        rc = mls_tf_saved_model_meta_graph(pb, len, "serve", &mg, &mg_len, err,
                                           err_size);
        if (rc == 0)
                rc = mls_tf_signature_parse(mg, mg_len, "serving_default", sig,
                                            err, err_size);
        free(pb);
        return rc;
}

MLS_TEST(model_tf_signature_fixture_mlp)
{
        struct mls_tf_signature *sig = calloc(1, sizeof(*sig));
        char err[256] = "";

        CHECK(sig != NULL);
        CHECK_INT_EQ(load_sig("tests/fixtures/tensorflow/mlp/saved_model.pb",
                              sig, err, sizeof(err)),
                     0);
        CHECK_INT_EQ(sig->ninputs, 1);
        CHECK_STR_EQ(sig->inputs[0].key, "features");
        CHECK_STR_EQ(sig->inputs[0].name, "serving_default_features:0");
        CHECK_INT_EQ(sig->inputs[0].dtype, 1); /* DT_FLOAT */
        CHECK_INT_EQ(sig->inputs[0].rank, 2);
        CHECK_INT_EQ(sig->inputs[0].dims[0], -1);
        CHECK_INT_EQ(sig->inputs[0].dims[1], 3);
        CHECK_INT_EQ(sig->noutputs, 1);
        CHECK_STR_EQ(sig->outputs[0].key, "scores");
        CHECK_CONTAINS(sig->outputs[0].name, "StatefulPartitionedCall");
        CHECK_INT_EQ(sig->outputs[0].dtype, 1);
        CHECK_INT_EQ(sig->outputs[0].rank, 2);
        CHECK_INT_EQ(sig->outputs[0].dims[1], 2);
        free(sig);
}

MLS_TEST(model_tf_signature_fixture_two_outputs_sorted)
{
        struct mls_tf_signature *sig = calloc(1, sizeof(*sig));
        char err[256] = "";

        CHECK(sig != NULL);
        CHECK_INT_EQ(load_sig("tests/fixtures/tensorflow/twoout/saved_model.pb",
                              sig, err, sizeof(err)),
                     0);
        CHECK_INT_EQ(sig->noutputs, 2);
        CHECK_STR_EQ(sig->outputs[0].key, "probs");
        CHECK_STR_EQ(sig->outputs[1].key, "scores");
        free(sig);
}

MLS_TEST(model_tf_signature_missing)
{
        struct mls_tf_signature *sig = calloc(1, sizeof(*sig));
        unsigned char *pb;
        const void *mg;
        size_t len, mg_len;
        char err[256];

        CHECK(sig != NULL);
        pb = slurp("tests/fixtures/tensorflow/mlp/saved_model.pb", &len);
        CHECK(pb != NULL);
        CHECK_INT_EQ(mls_tf_saved_model_meta_graph(pb, len, "train", &mg,
                                                   &mg_len, err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "no MetaGraph tagged \"train\"");
        CHECK_INT_EQ(mls_tf_saved_model_meta_graph(pb, len, "serve", &mg,
                                                   &mg_len, err, sizeof(err)),
                     0);
        CHECK_INT_EQ(mls_tf_signature_parse(mg, mg_len, "predict", sig, err,
                                            sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "no signature \"predict\" (it has: ");
        CHECK_CONTAINS(err, "serving_default");
        free(pb);
        free(sig);
}

/* Every truncation of a real file, and random bytes: errors, no crash
 * (ASan checks the reads). */
MLS_TEST(model_tf_signature_malformed)
{
        struct mls_tf_signature *sig = calloc(1, sizeof(*sig));
        unsigned char *pb, rnd[512];
        const void *mg;
        size_t len, mg_len;
        char err[256];
        unsigned seed = 7;

        CHECK(sig != NULL);
        pb = slurp("tests/fixtures/tensorflow/mlp/saved_model.pb", &len);
        CHECK(pb != NULL);
        CHECK_INT_EQ(mls_tf_saved_model_meta_graph(pb, len, "serve", &mg,
                                                   &mg_len, err, sizeof(err)),
                     0);
        for (size_t n = 0; n < mg_len; n += 7) {
                unsigned char *copy = malloc(n + 1); /* exact size for ASan */
                CHECK(copy != NULL);
                memcpy(copy, mg, n);
                mls_tf_signature_parse(copy, n, "serving_default", sig, err,
                                       sizeof(err));
                free(copy);
        }
        for (int i = 0; i < 3000; i++) {
                size_t n = (size_t)(rand_r(&seed) % (int)sizeof(rnd));
                for (size_t k = 0; k < n; k++)
                        rnd[k] = (unsigned char)rand_r(&seed);
                mls_tf_signature_parse(rnd, n, "serving_default", sig, err,
                                       sizeof(err));
                mls_tf_saved_model_meta_graph(rnd, n, "serve", &mg, &mg_len,
                                              err, sizeof(err));
        }
        /* A field with a length past the end. */
        CHECK_INT_EQ(mls_tf_signature_parse("\x2a\x7f\x01", 3,
                                            "serving_default", sig, err,
                                            sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "malformed");
        free(pb);
        free(sig);
}

MLS_TEST(model_tf_signature_tensor_names)
{
        char op[32];
        int index = -1;

        CHECK_INT_EQ(mls_tf_tensor_name_split("serving_default_x:0", op,
                                              sizeof(op), &index),
                     0);
        CHECK_STR_EQ(op, "serving_default_x");
        CHECK_INT_EQ(index, 0);
        CHECK_INT_EQ(mls_tf_tensor_name_split("StatefulPartitionedCall:12", op,
                                              sizeof(op), &index),
                     0);
        CHECK_STR_EQ(op, "StatefulPartitionedCall");
        CHECK_INT_EQ(index, 12);
        CHECK_INT_EQ(
                mls_tf_tensor_name_split("noindex", op, sizeof(op), &index), 0);
        CHECK_INT_EQ(index, 0);
        CHECK_INT_EQ(mls_tf_tensor_name_split(":3", op, sizeof(op), &index),
                     -1);
        CHECK_INT_EQ(mls_tf_tensor_name_split("x:y", op, sizeof(op), &index),
                     -1);
        CHECK_INT_EQ(mls_tf_tensor_name_split("a_very_long_operation_name_"
                                              "that_does_not_fit:0",
                                              op, sizeof(op), &index),
                     -1);
}
