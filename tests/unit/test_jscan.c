/*
 * common/jscan.c: the scanner accepts exactly what jansson accepts (the
 * rest of the project parses the same text with jansson), reports members
 * and decodes strings; common/json.c's raw values; buf.c's printf-free
 * doubles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/jscan.h"
#include "common/json.h"
#include "test.h"

/* jansson's verdict on text as an object document: 1 valid, 0 invalid,
 * -1 invalid only for the magnitude of a number (not our concern). */
static int jansson_valid(const char *text, size_t len, int any)
{
        json_error_t err;
        json_t *v = json_loadb(text, len, any ? JSON_DECODE_ANY : 0, &err);

        if (v) {
                int obj = json_is_object(v);
                json_decref(v);
                return any || obj;
        }
        if (strstr(err.text, "too big") || strstr(err.text, "overflow"))
                return -1;
        return 0;
}

static int scan_valid(const char *text, size_t len, int any)
{
        struct mls_jscan_span v;

        if (any)
                return mls_jscan_value(text, len, &v, NULL) == 0;
        return mls_jscan_object(text, len, NULL, NULL, NULL) == 0;
}

static const char *const corpus[] = {
        "{}",
        " {\"a\" : [1, -2.5e+3, 0, -0, 1E2, true, false, null, \"x\"]} \n",
        "{\"a\":{\"b\":{\"c\":[[],{}]}}}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{\"a\"}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":[1,]}",
        "{\"a\":[1 2]}",
        "{\"a\":1} x",
        "{\"a\":1}}",
        "[1]",
        "\"str\"",
        "{\"a\":\"\\u00e9\\n\\t\\\"\\\\\\/\\b\\f\\r\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud83d\\ude00\"}",
        "{\"a\":\"\\ud83d\"}",
        "{\"a\":\"\\ude00\"}",
        "{\"a\":\"\\ud83dx\"}",
        "{\"a\":\"\\ud83d\\u0041\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"caf\xc3\xa9\"}",
        "{\"a\":\"\xc0\x80\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xed\x9f\xbf\"}",
        "{\"a\":\"\xe0\x9f\xbf\"}",
        "{\"a\":\"\xf0\x8f\xbf\xbf\"}",
        "{\"a\":\"\xf0\x9f\x98\x80\"}",
        "{\"a\":\"\xf4\x8f\xbf\xbf\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"unterminated}",
        "{\"a\":1",
        "",
        "   ",
        "{\"\xe2\x82\xac\":1}",
        "{\"a\":[1,{\"b\":[true,{\"c\":null}]}],\"d\":\"e\"}",
};

MLS_TEST(jscan_agrees_with_jansson)
{
        for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
                const char *t = corpus[i];
                size_t n = strlen(t);
                for (int any = 0; any <= 1; any++) {
                        int j = jansson_valid(t, n, any);
                        if (j < 0)
                                continue;
                        if (scan_valid(t, n, any) != j) {
                                mls_test_fail(__FILE__, __LINE__,
                                              "corpus %zu (any=%d): jansson "
                                              "says %d: %s",
                                              i, any, j, t);
                                return;
                        }
                }
        }
}

/* A NUL byte is never valid JSON, wherever it is (jansson reads some
 * inputs only up to one, so it is not the judge here). */
/* One byte or escape of each kind that needs a look (quote, backslash,
 * control, DEL, UTF-8 good and bad) at each place in strings of 0 to 24
 * bytes gives what jansson says, and a plain string of each length its
 * span. */
MLS_TEST(jscan_string_bytes_at_every_place)
{
        static const char *const odd[] = {
                "\"",   "\\",   "\\n",          "\\u00e9",
                "\x01", "\x1f", "\x7f",         "\xc3\xa9",
                "\xc3", "\xff", "\xed\xa0\x80", "\xf0\x9f\x98\x80",
        };
        char text[64];
        struct mls_jscan_span v;

        for (size_t len = 0; len <= 24; len++) {
                int n = snprintf(text, sizeof(text), "\"%.*s\"", (int)len,
                                 "abcdefghijklmnopqrstuvwxyz");
                CHECK(mls_jscan_value(text, (size_t)n, &v, NULL) == 0);
                CHECK(v.len == len && !v.escaped);
                for (size_t at = 0; at <= len; at++)
                        for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]);
                             k++) {
                                n = snprintf(text, sizeof(text),
                                             "\"%.*s%s%.*s\"", (int)at,
                                             "abcdefghijklmnopqrstuvwxyz",
                                             odd[k], (int)(len - at),
                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
                                CHECK_INT_EQ(
                                        scan_valid(text, (size_t)n, 1),
                                        jansson_valid(text, (size_t)n, 1) == 1);
                        }
        }
}

MLS_TEST(jscan_refuses_nul_bytes)
{
        static const char *const texts[] = {"{\"a\":1\0}", "{\"a\":1}\0",
                                            "{\"a\":\"x\0y\"}", "[1\0,2]"};
        static const size_t lens[] = {8, 8, 11, 6};
        struct mls_jscan_span v;

        for (int i = 0; i < 4; i++) {
                CHECK(mls_jscan_value(texts[i], lens[i], &v, NULL) < 0);
                CHECK(mls_jscan_object(texts[i], lens[i], NULL, NULL, NULL) <
                      0);
        }
}

/* Random byte edits of a realistic payload: the scanner and jansson agree
 * on every one. */
MLS_TEST(jscan_agrees_with_jansson_on_mutations)
{
        static const char base[] =
                "{\"type\":\"prediction\",\"inference_id\":\"b-1-2\","
                "\"model_id\":\"m\",\"input_id\":7,\"predictions\":[[0.93,"
                "-7e-3],{\"k\":\"\\u00e9\\ud83d\\ude00\"}],\"latency_ms\":1.25,"
                "\"metadata\":{\"tenant\":\"caf\xc3\xa9\",\"n\":null,\"t\":"
                "true,\"f\":false}}";
        static const char alphabet[] = "{}[]\",:\\/ -+.eE0123456789tfnul"
                                       "\x80\xc3\xed\xf0\xf4\xffxu";
        char buf[sizeof(base) + 8];
        unsigned seed = 12345;

        for (int round = 0; round < 20000; round++) {
                size_t n = sizeof(base) - 1;
                memcpy(buf, base, n);
                for (int k = 0; k < 1 + round % 3; k++) {
                        seed = seed * 1103515245u + 12345u;
                        size_t at = (seed >> 8) % n;
                        seed = seed * 1103515245u + 12345u;
                        char c = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
                        switch ((seed >> 20) % 3) {
                        case 0: /* replace */
                                buf[at] = c;
                                break;
                        case 1: /* delete */
                                memmove(buf + at, buf + at + 1, n - at - 1);
                                n--;
                                break;
                        default: /* insert */
                                memmove(buf + at + 1, buf + at, n - at);
                                buf[at] = c;
                                n++;
                                break;
                        }
                }
                int j = jansson_valid(buf, n, 0);
                if (j >= 0 && scan_valid(buf, n, 0) != j) {
                        mls_test_fail(__FILE__, __LINE__,
                                      "round %d: jansson says %d: %.*s", round,
                                      j, (int)n, buf);
                        return;
                }
        }
}

/* Nesting: as deep as jansson allows, and one level more is refused. */
MLS_TEST(jscan_depth_limit)
{
        size_t depth = MLS_JSCAN_MAX_DEPTH + 1;
        char *t = malloc(2 * depth + 16);
        size_t n;

        CHECK(t);
        for (size_t d = depth - 1; d <= depth; d++) {
                n = 0;
                t[n++] = '{';
                memcpy(t + n, "\"a\":", 4);
                n += 4;
                for (size_t i = 1; i < d; i++)
                        t[n++] = '[';
                for (size_t i = 1; i < d; i++)
                        t[n++] = ']';
                t[n++] = '}';
                int j = jansson_valid(t, n, 0);
                if (scan_valid(t, n, 0) != j) {
                        free(t);
                        mls_test_fail(__FILE__, __LINE__,
                                      "depth %zu: jansson says %d", d, j);
                        return;
                }
        }
        free(t);
}

struct seen {
        char keys[8][32];
        struct mls_jscan_span vals[8];
        int n;
};

static int collect(void *opaque, const struct mls_jscan_span *key,
                   const struct mls_jscan_span *value)
{
        struct seen *s = opaque;

        if (s->n == 8)
                return 7;
        mls_jscan_string(key, s->keys[s->n], sizeof(s->keys[0]));
        s->vals[s->n++] = *value;
        return 0;
}

MLS_TEST(jscan_members_and_strings)
{
        const char *t = "{ \"a\\u0062\" : [1, {\"x\":2}] , \"n\":-0.5e3,"
                        "\"s\":\"\\ud83d\\ude00\\n\",\"o\":{} }";
        struct seen s = {0};
        char out[16];

        CHECK_INT_EQ(mls_jscan_object(t, strlen(t), collect, &s, NULL), 0);
        CHECK_INT_EQ(s.n, 4);
        CHECK_STR_EQ(s.keys[0], "ab");
        CHECK(s.vals[0].type == MLS_JSCAN_ARRAY);
        CHECK(s.vals[0].len == strlen("[1, {\"x\":2}]") &&
              memcmp(s.vals[0].p, "[1, {\"x\":2}]", s.vals[0].len) == 0);
        CHECK(s.vals[1].type == MLS_JSCAN_NUMBER && !s.vals[1].integral);
        CHECK(s.vals[1].len == 6 && memcmp(s.vals[1].p, "-0.5e3", 6) == 0);
        CHECK(s.vals[2].type == MLS_JSCAN_STRING && s.vals[2].escaped);
        CHECK_INT_EQ(mls_jscan_string(&s.vals[2], out, sizeof(out)), 5);
        CHECK_STR_EQ(out, "\xf0\x9f\x98\x80\n");
        /* too small a buffer is refused, not cut */
        CHECK_INT_EQ(mls_jscan_string(&s.vals[2], out, 5), -1);
        CHECK(s.vals[3].type == MLS_JSCAN_OBJECT && s.vals[3].len == 2);
        CHECK(mls_jscan_string_is(&s.vals[2], "\xf0\x9f\x98\x80\n"));
        CHECK(!mls_jscan_string_is(&s.vals[1], "-0.5e3"));

        /* the callback's verdict stops the scan */
        memset(&s, 0, sizeof(s));
        s.n = 8;
        CHECK_INT_EQ(mls_jscan_object(t, strlen(t), collect, &s, NULL), 7);

        /* where the fault is */
        size_t where = 0;
        CHECK_INT_EQ(mls_jscan_object("{\"a\":[1,,2]}", 12, NULL, NULL, &where),
                     -1);
        CHECK_INT_EQ(where, 8);
}

MLS_TEST(jscan_raw_values_written_verbatim)
{
        const char *text = "[1.0000,{\"b\":\"\\u00e9\"},2e3]";
        json_t *raw = mls_json_raw(text, strlen(text)), *obj, *plain;
        struct mls_buf b;
        size_t n = 0;

        CHECK(raw);
        obj = json_pack("{s:O,s:i}", "p", raw, "q", 2);
        mls_buf_init(&b, 1024);
        CHECK_INT_EQ(mls_json_write(&b, obj), 0);
        CHECK_STR_EQ(mls_buf_cstr(&b),
                     "{\"p\":[1.0000,{\"b\":\"\\u00e9\"},2e3],\"q\":2}");
        CHECK(mls_json_raw_text(raw, &n) && n == strlen(text));
        /* an ordinary one-member object is not raw, even with an empty key */
        plain = json_pack("{s:s}", "", text);
        CHECK(mls_json_raw_text(plain, &n) == NULL);
        CHECK(mls_json_raw_text(obj, &n) == NULL);
        mls_buf_reset(&b);
        CHECK_INT_EQ(mls_json_write(&b, plain), 0);
        CHECK(b.data[0] == '{' && b.data[1] == '"');
        json_decref(plain);
        json_decref(obj);
        json_decref(raw);
        mls_buf_free(&b);
}

/* The printf-free path of mls_buf_json_double() gives the same text as the
 * shortest "%.15g".."%.17g" that reads back. */
MLS_TEST(jscan_json_double_matches_printf)
{
        struct mls_buf b;
        unsigned seed = 99;
        char ref[40];

        mls_buf_init(&b, 256);
        for (int i = 0; i < 200000; i++) {
                double v;
                seed = seed * 1103515245u + 12345u;
                switch (i % 4) {
                case 0: /* few decimals */
                        v = (double)(seed % 100000000) /
                            (double)(i % 8 == 0 ? 1000 : 100);
                        break;
                case 1:
                        v = (double)seed / 4294967296.0 * 1e-3;
                        break;
                case 2:
                        v = ldexp((double)seed, (int)(seed % 64) - 40);
                        break;
                default:
                        v = -(double)(seed % 1000000) / 1e6;
                        break;
                }
                int n = 0;
                for (int prec = 15; prec <= 17; prec++) {
                        n = snprintf(ref, sizeof(ref), "%.*g", prec, v);
                        if (strtod(ref, NULL) == v)
                                break;
                }
                ref[n] = '\0';
                mls_buf_reset(&b);
                CHECK_INT_EQ(mls_buf_json_double(&b, v), 0);
                if (strcmp(mls_buf_cstr(&b), ref) != 0) {
                        mls_test_fail(__FILE__, __LINE__,
                                      "%.17g: \"%s\" != \"%s\"", v,
                                      mls_buf_cstr(&b), ref);
                        mls_buf_free(&b);
                        return;
                }
        }
        mls_buf_free(&b);
}
