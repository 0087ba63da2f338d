/* Decoder: every malformed-input class of DESIGN §3, and the good shapes. */
#include <math.h>
#include <stdlib.h>

#include "engine/decoder.h"
#include "test.h"

static const struct mls_decode_limits lim = {
        .max_bytes = 4096, .max_rows = 8, .max_width = 16};

static enum mls_decode_err decode(const char *s, struct mls_floats *f,
                                  struct mls_input *in, char *err)
{
        return mls_decode(s, strlen(s), &lim, f, in, err, 200);
}

/* Asserts that s is refused for reason want, leaving no floats behind. */
#define CHECK_REFUSED(s, want)                                       \
        do {                                                         \
                struct mls_floats f_ = {0};                          \
                struct mls_input in_;                                \
                char err_[200] = "";                                 \
                enum mls_decode_err e_ = decode(s, &f_, &in_, err_); \
                if (e_ != (want))                                    \
                        fprintf(stderr, "    %s -> %s (%s)\n", s,    \
                                mls_decode_err_name(e_), err_);      \
                CHECK_STR_EQ(mls_decode_err_name(e_),                \
                             mls_decode_err_name(want));             \
                CHECK(err_[0] != '\0');                              \
                CHECK_INT_EQ(f_.len, 0);                             \
                mls_floats_free(&f_);                                \
        } while (0)

MLS_TEST(decoder_full_message)
{
        const char *s = "{\"model_id\": \"threat-detector-v1\", \"input_id\": "
                        "\"event-42\", \"features\": [[0.12, 0.04, 0.98]], "
                        "\"metadata\": {\"tenant\": \"blue-team\", \"ns\": "
                        "1732665599123456789}}";
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_INT_EQ(decode(s, &f, &in, err), MLS_DECODE_OK);
        CHECK_STR_EQ(in.model_id, "threat-detector-v1");
        CHECK(in.has_model_id);
        CHECK_STR_EQ(in.input_id, "event-42");
        CHECK_INT_EQ(in.rows, 1);
        CHECK_INT_EQ(in.cols, 3);
        CHECK_INT_EQ(f.len, 3);
        CHECK(f.v[0] == 0.12f && f.v[1] == 0.04f && f.v[2] == 0.98f);
        /* metadata is the exact original bytes, 19-digit integer intact */
        CHECK_INT_EQ(in.metadata_len,
                     strlen("{\"tenant\": \"blue-team\", \"ns\": "
                            "1732665599123456789}"));
        CHECK(strncmp(in.metadata,
                      "{\"tenant\": \"blue-team\", \"ns\": "
                      "1732665599123456789}",
                      in.metadata_len) == 0);
        mls_floats_free(&f);
}

MLS_TEST(decoder_flat_array_is_one_row)
{
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_INT_EQ(decode("{\"features\":[1,-2.5,3e2]}", &f, &in, err),
                     MLS_DECODE_OK);
        CHECK_INT_EQ(in.rows, 1);
        CHECK_INT_EQ(in.cols, 3);
        CHECK(f.v[0] == 1.0f && f.v[1] == -2.5f && f.v[2] == 300.0f);
        CHECK(!in.has_model_id);
        CHECK(!in.has_input_id);
        CHECK(in.metadata == NULL);
        mls_floats_free(&f);
}

MLS_TEST(decoder_many_rows_append)
{
        struct mls_floats f = {0};
        struct mls_input a, b;
        char err[200];

        CHECK_INT_EQ(decode("{\"features\":[[1,2],[3,4],[5,6]]}", &f, &a, err),
                     MLS_DECODE_OK);
        CHECK_INT_EQ(decode("{\"features\":[7,8]}", &f, &b, err),
                     MLS_DECODE_OK);
        CHECK_INT_EQ(a.rows, 3);
        CHECK_INT_EQ(a.cols, 2);
        CHECK_INT_EQ(b.features_off, 6);
        CHECK_INT_EQ(f.len, 8);
        CHECK(f.v[5] == 6.0f && f.v[7] == 8.0f);
        mls_floats_free(&f);
}

MLS_TEST(decoder_numbers_exact)
{
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_INT_EQ(decode("{\"features\":[0.1,1e-7,-0,123456789012345678901,"
                            "1.7976931348623157e-300,0.333333333333333333]}",
                            &f, &in, err),
                     MLS_DECODE_OK);
        CHECK(f.v[0] == 0.1f);
        CHECK(f.v[1] == 1e-7f);
        CHECK(f.v[2] == 0.0f);
        CHECK(f.v[3] == 123456789012345678901.0f);
        CHECK(f.v[4] == 0.0f);
        CHECK(f.v[5] == (float)0.333333333333333333);
        mls_floats_free(&f);
}

MLS_TEST(decoder_escaped_ids)
{
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_INT_EQ(decode("{\"model_id\":\"m\\u00e9\\ud83d\\ude00\\n\","
                            "\"input_id\":null,\"features\":[1]}",
                            &f, &in, err),
                     MLS_DECODE_OK);
        CHECK_STR_EQ(in.model_id, "m\xc3\xa9\xf0\x9f\x98\x80\n");
        CHECK(!in.has_input_id);
        mls_floats_free(&f);
}

MLS_TEST(decoder_unknown_keys_ignored)
{
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_INT_EQ(decode("{\"extra\":{\"a\":[1,{\"b\":null}]},\"features\":"
                            "[1],\"more\":true}",
                            &f, &in, err),
                     MLS_DECODE_OK);
        mls_floats_free(&f);
}

MLS_TEST(decoder_invalid_json)
{
        CHECK_REFUSED("", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("not json", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"features\":[1,2]", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"features\":[1,2,]}", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"features\":[1] }x", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"features\":[01]}", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"features\":[1.]}", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{'features':[1]}", MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"input_id\":\"a\\x\",\"features\":[1]}",
                      MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"input_id\":\"\\ud800\",\"features\":[1]}",
                      MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"input_id\":\"\xff\xfe\",\"features\":[1]}",
                      MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED("{\"input_id\":\"\xc0\xaf\",\"features\":[1]}",
                      MLS_DECODE_INVALID_JSON);
        CHECK_REFUSED(
                "{\"metadata\":{\"a\":\"\xed\xa0\x80\"},\"features\":[1]}",
                MLS_DECODE_INVALID_JSON);
}

MLS_TEST(decoder_truncated_everywhere)
{
        const char *s = "{\"model_id\":\"m\",\"input_id\":\"i\",\"features\":"
                        "[[1.5,2],[3,4e1]],\"metadata\":{\"a\":[true,null]}}";
        size_t n = strlen(s);

        for (size_t i = 0; i < n; i++) {
                struct mls_floats f = {0};
                struct mls_input in;
                char err[200] = "";
                enum mls_decode_err e =
                        mls_decode(s, i, &lim, &f, &in, err, sizeof(err));
                CHECK(e != MLS_DECODE_OK);
                CHECK(err[0] != '\0');
                CHECK_INT_EQ(f.len, 0);
                mls_floats_free(&f);
        }
}

MLS_TEST(decoder_not_object)
{
        CHECK_REFUSED("[1,2,3]", MLS_DECODE_NOT_OBJECT);
        CHECK_REFUSED("42", MLS_DECODE_NOT_OBJECT);
        CHECK_REFUSED("\"features\"", MLS_DECODE_NOT_OBJECT);
}

MLS_TEST(decoder_missing_features)
{
        CHECK_REFUSED("{}", MLS_DECODE_MISSING_FEATURES);
        CHECK_REFUSED("{\"model_id\":\"m\"}", MLS_DECODE_MISSING_FEATURES);
}

MLS_TEST(decoder_wrong_types)
{
        CHECK_REFUSED("{\"model_id\":5,\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"input_id\":[],\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"metadata\":[1],\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"metadata\":\"x\",\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"model_id\":\"\",\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"features\":[1],\"features\":[2]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"features\":\"1,2\"}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":{\"a\":1}}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[\"1\"]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[[1],2]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[[[1]]]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[true]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[null]}", MLS_DECODE_BAD_FEATURES);
}

/* An id is a C string downstream (channel names, log lines): one holding
 * an escaped NUL is refused, and a NUL elsewhere does not taint it. */
MLS_TEST(decoder_ids_with_nul)
{
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200];

        CHECK_REFUSED("{\"input_id\":\"a\\u0000b\",\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_REFUSED("{\"model_id\":\"m\\u0000\",\"features\":[1]}",
                      MLS_DECODE_BAD_FIELD);
        CHECK_INT_EQ(decode("{\"x\\u0000\":\"\\u0000\",\"input_id\":\"ok\","
                            "\"features\":[1]}",
                            &f, &in, err),
                     MLS_DECODE_OK);
        CHECK_STR_EQ(in.input_id, "ok");
        mls_floats_free(&f);
}

MLS_TEST(decoder_long_ids)
{
        char s[2048], id[600];

        memset(id, 'a', 513);
        id[513] = '\0';
        snprintf(s, sizeof(s), "{\"input_id\":\"%s\",\"features\":[1]}", id);
        CHECK_REFUSED(s, MLS_DECODE_BAD_FIELD);
        id[129] = '\0';
        snprintf(s, sizeof(s), "{\"model_id\":\"%s\",\"features\":[1]}", id);
        CHECK_REFUSED(s, MLS_DECODE_BAD_FIELD);
}

MLS_TEST(decoder_empty_features)
{
        CHECK_REFUSED("{\"features\":[]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[[]]}", MLS_DECODE_BAD_FEATURES);
        CHECK_REFUSED("{\"features\":[[1],[]]}", MLS_DECODE_BAD_FEATURES);
}

MLS_TEST(decoder_non_finite)
{
        CHECK_REFUSED("{\"features\":[NaN]}", MLS_DECODE_NON_FINITE);
        CHECK_REFUSED("{\"features\":[1,Infinity]}", MLS_DECODE_NON_FINITE);
        CHECK_REFUSED("{\"features\":[[-Infinity]]}", MLS_DECODE_NON_FINITE);
        CHECK_REFUSED("{\"features\":[1e400]}", MLS_DECODE_NON_FINITE);
        CHECK_REFUSED("{\"features\":[1e39]}", MLS_DECODE_NON_FINITE);
        CHECK_REFUSED("{\"features\":[-3.5e38]}", MLS_DECODE_NON_FINITE);
}

MLS_TEST(decoder_ragged)
{
        CHECK_REFUSED("{\"features\":[[1,2],[3]]}", MLS_DECODE_RAGGED);
        CHECK_REFUSED("{\"features\":[[1],[2,3]]}", MLS_DECODE_RAGGED);
}

MLS_TEST(decoder_limits)
{
        char big[5000];

        CHECK_REFUSED("{\"features\":[[1],[2],[3],[4],[5],[6],[7],[8],[9]]}",
                      MLS_DECODE_TOO_MANY_ROWS);
        CHECK_REFUSED("{\"features\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,"
                      "17]}",
                      MLS_DECODE_TOO_WIDE);
        memset(big, ' ', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big, "{\"features\":[1]}", 16);
        CHECK_REFUSED(big, MLS_DECODE_OVERSIZE);
}

MLS_TEST(decoder_deep_nesting)
{
        char s[4096];
        size_t n = 0;

        n += (size_t)snprintf(s, sizeof(s), "{\"features\":[1],\"x\":");
        for (int i = 0; i < 1000; i++)
                s[n++] = '[';
        s[n] = '\0';
        CHECK_REFUSED(s, MLS_DECODE_INVALID_JSON);
}

/* A key with an escaped NUL is another key, not the one before the NUL:
 * "model_id\u0000x" must neither set model_id nor count as a duplicate. */
MLS_TEST(decoder_key_with_escaped_nul_is_another_key)
{
        const char *s = "{\"model_id\\u0000x\": \"evil\", \"model_id\": "
                        "\"good\", \"features\\u0000\": 7, \"features\": [1]}";
        struct mls_floats f = {0};
        struct mls_input in;
        char err[200] = "";

        CHECK_INT_EQ(decode(s, &f, &in, err), MLS_DECODE_OK);
        CHECK_STR_EQ(in.model_id, "good");
        CHECK_INT_EQ(in.rows, 1);
        mls_floats_free(&f);
        CHECK_REFUSED("{\"model_id\\u0000x\": \"evil\", \"x\": [1]}",
                      MLS_DECODE_MISSING_FEATURES);
}
