/* Buffers, JSON output helpers, metrics rendering, Redis URLs, the string
 * map, the JSON writer, UTF-8 and the metrics HTTP server. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/edits.h"
#include "common/httpd.h"
#include "common/json.h"
#include "common/metrics.h"
#include "common/redis_url.h"
#include "common/strmap.h"
#include "common/utf8.h"
#include "test.h"

static size_t edits(const char *a, const char *b, int fold, size_t cap)
{
        return mls_edits(a, strlen(a), b, strlen(b), fold, cap);
}

MLS_TEST(common_edits_count_typos_up_to_a_cap)
{
        CHECK_INT_EQ(edits("ROWS", "ROWS", 0, 2), 0);
        CHECK_INT_EQ(edits("ROW", "ROWS", 0, 2), 1);  /* one short */
        CHECK_INT_EQ(edits("PROT", "PORT", 0, 2), 1); /* a swap is one */
        CHECK_INT_EQ(edits("PORT", "PART", 0, 2), 1); /* a replacement */
        CHECK_INT_EQ(edits("", "abc", 0, 5), 3);
        CHECK_INT_EQ(edits("kitten", "sitting", 0, 5), 3);
        CHECK_INT_EQ(edits("kitten", "sitting", 0, 2), 3); /* cap + 1 */
        CHECK_INT_EQ(edits("a", "abcdef", 0, 2), 3);       /* by length alone */
        CHECK_INT_EQ(edits("Name", "nAME", 1, 2), 0);      /* folded */
        CHECK_INT_EQ(edits("Name", "nAME", 0, 9), 4);
}

MLS_TEST(common_buf_limit)
{
        struct mls_buf b;

        mls_buf_init(&b, 8);
        CHECK_INT_EQ(mls_buf_puts(&b, "12345678"), 0);
        CHECK_INT_EQ(mls_buf_putc(&b, '9'), -1);
        CHECK(b.overflow);
        CHECK_STR_EQ(mls_buf_cstr(&b), "12345678");
        mls_buf_free(&b);
}

MLS_TEST(common_json_str_escapes_and_repairs)
{
        struct mls_buf b;

        mls_buf_init(&b, 1024);
        mls_buf_json_str(&b, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
        CHECK_STR_EQ(mls_buf_cstr(&b),
                     "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\xef\xbf\xbd\"");
        mls_buf_free(&b);
}

MLS_TEST(common_json_float_shortest_roundtrip)
{
        const float vals[] = {0.12f, 0.93f,       1e-7f,      3.4028235e38f,
                              -2.5f, 16777216.0f, 0.1f + 0.2f};
        struct mls_buf b;

        mls_buf_init(&b, 1024);
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
                mls_buf_reset(&b);
                mls_buf_json_float(&b, vals[i]);
                CHECK(strtof(mls_buf_cstr(&b), NULL) == vals[i]);
        }
        mls_buf_reset(&b);
        mls_buf_json_float(&b, 0.12f);
        CHECK_STR_EQ(mls_buf_cstr(&b), "0.12");
        mls_buf_reset(&b);
        mls_buf_json_float(&b, NAN);
        CHECK_STR_EQ(mls_buf_cstr(&b), "null");
        mls_buf_free(&b);
}

MLS_TEST(common_metrics_render)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_metric_t *c = mls_metric_new(r, MLS_COUNTER, "x_total", "Things.",
                                         "model_id", NULL, NULL, 0);
        mls_metric_t *h = mls_metric_new(
                r, MLS_HISTOGRAM, "lat_seconds", "Latency.", "model_id", NULL,
                mls_latency_buckets, mls_latency_nbuckets);
        struct mls_buf b;

        mls_series_add(mls_series(c, "a\"b", NULL), 2);
        mls_series_observe(mls_series(h, "m", NULL), 0.0003);
        mls_series_observe(mls_series(h, "m", NULL), 20);
        mls_buf_init(&b, 1 << 20);
        mls_metrics_render(r, &b);
        CHECK_CONTAINS(mls_buf_cstr(&b), "# TYPE x_total counter\n");
        CHECK_CONTAINS(mls_buf_cstr(&b), "x_total{model_id=\"a\\\"b\"} 2\n");
        CHECK_CONTAINS(mls_buf_cstr(&b),
                       "lat_seconds_bucket{model_id=\"m\",le=\"0.00025\"} 0\n");
        CHECK_CONTAINS(mls_buf_cstr(&b),
                       "lat_seconds_bucket{model_id=\"m\",le=\"0.0005\"} 1\n");
        CHECK_CONTAINS(mls_buf_cstr(&b),
                       "lat_seconds_bucket{model_id=\"m\",le=\"+Inf\"} 2\n");
        CHECK_CONTAINS(mls_buf_cstr(&b),
                       "lat_seconds_count{model_id=\"m\"} 2\n");
        mls_buf_free(&b);
        mls_metrics_free(r);
}

/* Many observations at once render as the same observations one by one. */
MLS_TEST(common_metrics_observe_counts)
{
        static const double bounds[] = {0.5, 1, 2};
        static const double values[] = {0.1, 0.5, 0.7, 3, 9, 1.5, 0.2};
        mls_metrics_t *r[2] = {mls_metrics_new(), mls_metrics_new()};
        uint64_t counts[4] = {0};
        struct mls_buf b[2];
        double sum = 0;

        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
                size_t k = 0;
                while (k < 3 && values[v] > bounds[k])
                        k++;
                counts[k]++;
                sum += values[v];
        }
        for (int i = 0; i < 2; i++) {
                mls_metric_t *h = mls_metric_new(r[i], MLS_HISTOGRAM, "d", "D.",
                                                 "x", NULL, bounds, 3);
                mls_series_t *s = mls_series(h, "a", NULL);
                if (i == 0)
                        for (size_t v = 0; v < 7; v++)
                                mls_series_observe(s, values[v]);
                else
                        mls_series_observe_counts(s, counts, sum);
                mls_buf_init(&b[i], 1 << 16);
                mls_metrics_render(r[i], &b[i]);
        }
        CHECK_STR_EQ(mls_buf_cstr(&b[1]), mls_buf_cstr(&b[0]));
        CHECK_CONTAINS(mls_buf_cstr(&b[1]), "d_bucket{x=\"a\",le=\"1\"} 4\n");
        CHECK_CONTAINS(mls_buf_cstr(&b[1]), "d_count{x=\"a\"} 7\n");
        for (int i = 0; i < 2; i++) {
                mls_buf_free(&b[i]);
                mls_metrics_free(r[i]);
        }
}

MLS_TEST(common_redis_url)
{
        struct mls_redis_url u;
        char err[200];

        CHECK_INT_EQ(mls_redis_url_parse("redis://localhost:6379/0", &u, err,
                                         sizeof(err)),
                     0);
        CHECK_STR_EQ(u.host, "localhost");
        CHECK_INT_EQ(u.port, 6379);
        CHECK_INT_EQ(mls_redis_url_parse("redis://:s3cret@10.0.0.1:7000/2", &u,
                                         err, sizeof(err)),
                     0);
        CHECK_STR_EQ(u.password, "s3cret");
        CHECK_STR_EQ(u.host, "10.0.0.1");
        CHECK_INT_EQ(u.port, 7000);
        CHECK_INT_EQ(u.db, 2);
        CHECK_INT_EQ(
                mls_redis_url_parse("redis://bob:pw@h", &u, err, sizeof(err)),
                0);
        CHECK_STR_EQ(u.user, "bob");
        CHECK_INT_EQ(u.port, 6379);
        CHECK_INT_EQ(mls_redis_url_parse("http://h:1", &u, err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "must start with redis://");
        /* TLS is refused by name, not as an unknown scheme */
        CHECK_INT_EQ(mls_redis_url_parse("rediss://:pw@h:6380/0", &u, err,
                                         sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "rediss:// (TLS) is not supported");
        CHECK(strstr(err, "pw") == NULL);
        CHECK_INT_EQ(mls_redis_url_parse("redis://h:1/0?ssl=true", &u, err,
                                         sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "[[user]:password@]host[:port][/db]");
        CHECK_INT_EQ(mls_redis_url_parse("redis://:pw@h:99999", &u, err,
                                         sizeof(err)),
                     -1);
        CHECK(strstr(err, "pw") == NULL); /* never echo the password */
        /* percent-encoded user and password (RFC 3986) */
        CHECK_INT_EQ(
                mls_redis_url_parse("redis://a%3Ab:p%40ss%2Fw%3Ard%25 x@h:1/3",
                                    &u, err, sizeof(err)),
                0);
        CHECK_STR_EQ(u.user, "a:b");
        CHECK_STR_EQ(u.password, "p@ss/w:rd% x");
        CHECK_STR_EQ(u.host, "h");
        CHECK_INT_EQ(u.db, 3);
        CHECK_INT_EQ(mls_redis_url_parse("redis://:se%2cret%zz@h", &u, err,
                                         sizeof(err)),
                     -1);
        CHECK(strstr(err, "se%2cret") == NULL && strstr(err, "%-escape"));
        CHECK_INT_EQ(
                mls_redis_url_parse("redis://:pw%00x@h", &u, err, sizeof(err)),
                -1);
        CHECK_INT_EQ(
                mls_redis_url_parse("redis://:pw%4@h", &u, err, sizeof(err)),
                -1);
}

MLS_TEST(common_redis_url_auth)
{
        static const struct {
                const char *url;
                int argc;
                const char *argv[3];
        } cases[] = {
                {"redis://h:1/0", 0, {NULL}},
                {"redis://:s3cret@h", 2, {"AUTH", "s3cret"}},
                {"redis://bob:s3cret@h", 3, {"AUTH", "bob", "s3cret"}},
                /* a user without a password: nothing to send */
                {"redis://bob:@h", 0, {NULL}},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct mls_redis_url u;
                const char *argv[3];
                char err[200];
                int argc;

                CHECK_INT_EQ(
                        mls_redis_url_parse(cases[i].url, &u, err, sizeof(err)),
                        0);
                argc = mls_redis_url_auth(&u, argv);
                CHECK_INT_EQ(argc, cases[i].argc);
                for (int k = 0; k < argc && k < 3; k++)
                        CHECK_STR_EQ(argv[k], cases[i].argv[k]);
        }
}

MLS_TEST(common_json_float_random_roundtrip)
{
        struct mls_buf b;
        uint32_t x = 12345;

        mls_buf_init(&b, 1024);
        for (int i = 0; i < 200000; i++) {
                float v;
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                memcpy(&v, &x, sizeof(v));
                if (i % 2)
                        v = (float)(x % 100000) / 1000.0f; /* short decimals */
                if (!isfinite(v))
                        continue;
                mls_buf_reset(&b);
                mls_buf_json_float(&b, v);
                if (strtof(mls_buf_cstr(&b), NULL) != v)
                        fprintf(stderr, "    %.9g -> %s\n", (double)v,
                                mls_buf_cstr(&b));
                CHECK(strtof(mls_buf_cstr(&b), NULL) == v);
        }
        mls_buf_reset(&b);
        mls_buf_json_float(&b, -0.125f);
        CHECK_STR_EQ(mls_buf_cstr(&b), "-0.125");
        mls_buf_reset(&b);
        mls_buf_json_float(&b, 100.0f);
        CHECK_STR_EQ(mls_buf_cstr(&b), "100");
        mls_buf_free(&b);
}

/* --- common/strmap.h ------------------------------------------------------ */

static int strmap_values_freed;

static void strmap_free_value(void *v)
{
        (void)v;
        strmap_values_freed++;
}

static void strmap_count_entry(void *opaque, struct mls_strmap_entry *e)
{
        (void)e;
        (*(size_t *)opaque)++;
}

MLS_TEST(common_strmap_put_get_remove)
{
        struct mls_strmap m;
        struct mls_strmap_entry *e;
        int a = 1, b = 2, c = 3;
        size_t seen = 0;

        mls_strmap_init(&m);
        CHECK(mls_strmap_get(&m, "x", 1) == NULL);
        CHECK(mls_strmap_remove(&m, "x", 1) == NULL);
        e = mls_strmap_put(&m, "alpha", 5, &a);
        CHECK(e != NULL);
        CHECK_STR_EQ(e->key, "alpha");
        CHECK_INT_EQ(e->klen, 5);
        CHECK(mls_strmap_get(&m, "alpha", 5) == &a);
        /* keys are byte strings: a prefix or a longer key is another key */
        CHECK(mls_strmap_get(&m, "alph", 4) == NULL);
        CHECK(mls_strmap_get(&m, "alphab", 6) == NULL);
        /* replacing keeps the entry */
        CHECK(mls_strmap_put(&m, "alpha", 5, &b) == e);
        CHECK(mls_strmap_get(&m, "alpha", 5) == &b);
        CHECK_INT_EQ(m.count, 1);
        /* NULs inside keys, and the empty key */
        CHECK(mls_strmap_put(&m, "a\0b", 3, &c) != NULL);
        CHECK(mls_strmap_put(&m, "", 0, &a) != NULL);
        CHECK(mls_strmap_get(&m, "a\0b", 3) == &c);
        CHECK(mls_strmap_get(&m, "a\0c", 3) == NULL);
        CHECK(mls_strmap_get(&m, "a", 1) == NULL);
        CHECK(mls_strmap_get(&m, "", 0) == &a);
        CHECK(mls_strmap_find(&m, "", 0) != NULL);
        CHECK_INT_EQ(m.count, 3);
        mls_strmap_foreach(&m, strmap_count_entry, &seen);
        CHECK_INT_EQ(seen, 3);
        CHECK(mls_strmap_remove(&m, "alpha", 5) == &b);
        CHECK(mls_strmap_get(&m, "alpha", 5) == NULL);
        CHECK(mls_strmap_remove(&m, "alpha", 5) == NULL);
        CHECK_INT_EQ(m.count, 2);
        strmap_values_freed = 0;
        mls_strmap_free(&m, strmap_free_value);
        CHECK_INT_EQ(strmap_values_freed, 2);
        CHECK_INT_EQ(m.count, 0);
        CHECK(mls_strmap_get(&m, "", 0) == NULL);
        /* usable again after free */
        CHECK(mls_strmap_put(&m, "again", 5, &c) != NULL);
        CHECK(mls_strmap_get(&m, "again", 5) == &c);
        mls_strmap_free(&m, NULL);
}

MLS_TEST(common_strmap_grows)
{
        struct mls_strmap m;
        char key[32];
        size_t seen = 0;

        mls_strmap_init(&m);
        for (uintptr_t i = 1; i <= 5000; i++) {
                int n = snprintf(key, sizeof(key), "model-%lu",
                                 (unsigned long)i);
                CHECK(mls_strmap_put(&m, key, (size_t)n, (void *)i) != NULL);
        }
        CHECK_INT_EQ(m.count, 5000);
        CHECK(m.nbuckets >= 5000 && (m.nbuckets & (m.nbuckets - 1)) == 0);
        for (uintptr_t i = 1; i <= 5000; i++) {
                int n = snprintf(key, sizeof(key), "model-%lu",
                                 (unsigned long)i);
                CHECK(mls_strmap_get(&m, key, (size_t)n) == (void *)i);
        }
        /* remove every other one; the rest stay found */
        for (uintptr_t i = 2; i <= 5000; i += 2) {
                int n = snprintf(key, sizeof(key), "model-%lu",
                                 (unsigned long)i);
                CHECK(mls_strmap_remove(&m, key, (size_t)n) == (void *)i);
        }
        for (uintptr_t i = 1; i <= 5000; i++) {
                int n = snprintf(key, sizeof(key), "model-%lu",
                                 (unsigned long)i);
                CHECK(mls_strmap_get(&m, key, (size_t)n) ==
                      (i % 2 ? (void *)i : NULL));
        }
        mls_strmap_foreach(&m, strmap_count_entry, &seen);
        CHECK_INT_EQ(seen, 2500);
        mls_strmap_free(&m, NULL);
}

/* A counting allocator standing in for an arena. */
struct strmap_pool {
        size_t allocs, frees, fail_after;
};

static void *strmap_pool_alloc(void *ctx, size_t size)
{
        struct strmap_pool *p = ctx;

        if (p->fail_after && p->allocs >= p->fail_after)
                return NULL;
        p->allocs++;
        return malloc(size);
}

static void strmap_pool_free(void *ctx, void *ptr)
{
        struct strmap_pool *p = ctx;

        p->frees++;
        free(ptr);
}

MLS_TEST(common_strmap_allocator)
{
        struct strmap_pool pool = {0};
        const struct mls_strmap_alloc mem = {
                .alloc = strmap_pool_alloc,
                .free = strmap_pool_free,
                .ctx = &pool,
        };
        struct mls_strmap m;
        int v = 7;

        mls_strmap_init_alloc(&m, &mem);
        CHECK(mls_strmap_put(&m, "a", 1, &v) != NULL);
        CHECK(mls_strmap_put(&m, "b", 1, &v) != NULL);
        CHECK_INT_EQ(pool.allocs, 3); /* the buckets and two entries */
        CHECK(mls_strmap_remove(&m, "a", 1) == &v);
        CHECK_INT_EQ(pool.frees, 1);
        mls_strmap_free(&m, NULL);
        CHECK_INT_EQ(pool.frees, 3);
        /* the allocator survives free(); memory running out leaves the
         * map as it was */
        pool.fail_after = pool.allocs + 1; /* the buckets, no entry */
        CHECK(mls_strmap_put(&m, "c", 1, &v) == NULL);
        CHECK_INT_EQ(m.count, 0);
        CHECK(mls_strmap_get(&m, "c", 1) == NULL);
        pool.fail_after = 0;
        CHECK(mls_strmap_put(&m, "c", 1, &v) != NULL);
        CHECK(mls_strmap_get(&m, "c", 1) == &v);
        mls_strmap_free(&m, NULL);
        CHECK_INT_EQ(pool.allocs, pool.frees);
}

/* --- common/json.h -------------------------------------------------------- */

/* v written by mls_json_write() into a fresh buffer of the given cap. */
static int json_written(const json_t *v, size_t cap, char *out, size_t size)
{
        struct mls_buf b;
        int rc;

        mls_buf_init(&b, cap);
        rc = mls_json_write(&b, v);
        snprintf(out, size, "%s", mls_buf_cstr(&b));
        mls_buf_free(&b);
        return rc;
}

MLS_TEST(common_json_write_shortest_reals)
{
        static const double vals[] = {1.84,  0.1,    0.1 + 0.2,     -2.5,
                                      1e300, 5e-324, 123456789.125, 0.0};
        char out[128];
        json_t *v;

        v = json_real(1.84);
        CHECK_INT_EQ(json_written(v, 1024, out, sizeof(out)), 0);
        CHECK_STR_EQ(out, "1.84"); /* json_dumps() gives 1.8400000000000001 */
        json_decref(v);
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
                v = json_real(vals[i]);
                CHECK_INT_EQ(json_written(v, 1024, out, sizeof(out)), 0);
                CHECK(strtod(out, NULL) == vals[i]);
                json_decref(v);
        }
}

MLS_TEST(common_json_write_nested)
{
        char out[512];
        json_t *v =
                json_pack("{s:[i,I,{s:n,s:b}],s:{s:s,s:f},s:[],s:{}}", "a", 1,
                          (json_int_t)-9223372036854775807LL - 1, "b", "t", 1,
                          "o", "s", "q\"\\\n\x01\xc3\xa9", "r", 0.25, "e", "z");

        CHECK(v != NULL);
        CHECK_INT_EQ(json_written(v, 1024, out, sizeof(out)), 0);
        /* jansson keeps insertion order; no spaces */
        CHECK_STR_EQ(out, "{\"a\":[1,-9223372036854775808,{\"b\":null,\"t\":"
                          "true}],\"o\":{\"s\":\"q\\\"\\\\\\u000a\\u0001"
                          "\xc3\xa9\",\"r\":0.25},\"e\":[],\"z\":{}}");
        /* it reads back as the same value */
        {
                json_t *back = json_loads(out, 0, NULL);
                CHECK(back != NULL && json_equal(back, v));
                json_decref(back);
        }
        json_decref(v);
        v = json_pack("[b,n,s]", 0, "");
        CHECK_INT_EQ(json_written(v, 64, out, sizeof(out)), 0);
        CHECK_STR_EQ(out, "[false,null,\"\"]");
        json_decref(v);
}

MLS_TEST(common_json_write_cap_and_depth)
{
        char out[64];
        json_t *v = json_pack("{s:[i,i,i]}", "key", 100, 200, 300);
        json_t *deep, *inner;
        struct mls_buf b;

        /* {"key":[100,200,300]} is 21 bytes */
        CHECK_INT_EQ(json_written(v, 21, out, sizeof(out)), 0);
        CHECK_INT_EQ(json_written(v, 20, out, sizeof(out)), -1);
        CHECK_INT_EQ(json_written(v, 5, out, sizeof(out)), -1);
        mls_buf_init(&b, 10);
        CHECK_INT_EQ(mls_json_write(&b, v), -1);
        CHECK(b.overflow);
        CHECK(b.len <= 10);
        mls_buf_free(&b);
        json_decref(v);

        /* nesting past MLS_JSON_WRITE_MAX_DEPTH is refused, not recursed */
        deep = json_array();
        inner = deep;
        for (int i = 0; i < MLS_JSON_WRITE_MAX_DEPTH + 10; i++) {
                json_t *a = json_array();
                json_array_append_new(inner, a);
                inner = a;
        }
        mls_buf_init(&b, (size_t)1 << 20);
        CHECK_INT_EQ(mls_json_write(&b, deep), -1);
        mls_buf_free(&b);
        json_decref(deep);
}

/* --- common/utf8.h -------------------------------------------------------- */

MLS_TEST(common_utf8_encode_decode)
{
        static const unsigned cps[] = {
                0,      0x41,   0x7f,   0x80,   0x7ff,   0x800,   0xe9,
                0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff};
        static const size_t lens[] = {1, 1, 1, 2, 2, 3, 2, 3, 3, 3, 3, 4, 4, 4};
        char o[MLS_UTF8_MAX];
        size_t n, l;

        for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
                n = mls_utf8_encode(cps[i], o);
                CHECK_INT_EQ(n, lens[i]);
                CHECK_INT_EQ(mls_utf8_len((const unsigned char *)o, n), n);
                CHECK_INT_EQ(mls_utf8_decode((const unsigned char *)o, n, &l),
                             cps[i]);
                CHECK_INT_EQ(l, n);
                /* one byte short is not valid */
                if (n > 1)
                        CHECK_INT_EQ(
                                mls_utf8_len((const unsigned char *)o, n - 1),
                                0);
        }
        n = mls_utf8_encode(0xe9, o);
        CHECK(n == 2 && memcmp(o, "\xc3\xa9", 2) == 0);
        n = mls_utf8_encode(0x1f600, o);
        CHECK(n == 4 && memcmp(o, "\xf0\x9f\x98\x80", 4) == 0);
}

MLS_TEST(common_utf8_refuses_invalid)
{
        static const char *const bad[] = {
                "\x80",             /* a lone continuation byte */
                "\xc0\x80",         /* overlong NUL */
                "\xc1\xbf",         /* overlong */
                "\xe0\x80\x80",     /* overlong */
                "\xed\xa0\x80",     /* U+D800, a surrogate */
                "\xed\xbf\xbf",     /* U+DFFF */
                "\xf0\x80\x80\x80", /* overlong */
                "\xf4\x90\x80\x80", /* past U+10FFFF */
                "\xf5\x80\x80\x80", /* no such lead byte */
                "\xc3\x41",         /* continuation missing */
                "\xff",
        };
        size_t l = 9;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const unsigned char *s = (const unsigned char *)bad[i];
                CHECK_INT_EQ(mls_utf8_len(s, strlen(bad[i])), 0);
                CHECK_INT_EQ(mls_utf8_decode(s, strlen(bad[i]), &l), 0);
                CHECK_INT_EQ(l, 0);
        }
}

MLS_TEST(common_httpd_finds_the_head_end_in_what_was_added)
{
        static const char *const heads[] = {
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /metrics HTTP/1.1\nHost: x\n\n",
        };
        for (size_t h = 0; h < 2; h++) {
                size_t n = strlen(heads[h]);
                /* a byte per read: complete with the last byte, not before */
                for (size_t i = 1; i <= n; i++)
                        CHECK_INT_EQ(
                                mls_httpd_head_complete(heads[h], i - 1, i),
                                i == n);
                /* all at once, or the blank line split across two reads */
                CHECK(mls_httpd_head_complete(heads[h], 0, n));
                CHECK(mls_httpd_head_complete(heads[h], n - 1, n));
                CHECK(!mls_httpd_head_complete(heads[h], 0, n - 1));
        }
        /* a NUL byte does not hide the end */
        CHECK(mls_httpd_head_complete("GET /\0 HTTP/1.1\r\n\r\n", 0, 20));
}

MLS_TEST(common_httpd_reads_the_request_line)
{
        char path[16], longer[64];
        int head = -1;

        CHECK_INT_EQ(mls_httpd_request_line("GET /metrics HTTP/1.1\r\n", path,
                                            sizeof(path), &head),
                     0);
        CHECK_STR_EQ(path, "/metrics");
        CHECK_INT_EQ(head, 0);
        CHECK_INT_EQ(mls_httpd_request_line("HEAD /healthz?x=1 HTTP/1.1", path,
                                            sizeof(path), &head),
                     0);
        CHECK_STR_EQ(path, "/healthz");
        CHECK_INT_EQ(head, 1);
        CHECK_INT_EQ(
                mls_httpd_request_line("GET /x\n\n", path, sizeof(path), &head),
                0);
        CHECK_STR_EQ(path, "/x");
        /* other methods and look-alikes; no method, no path, an empty
         * path */
        static const struct {
                const char *req;
                int status;
        } refused[] = {
                {"POST /metrics HTTP/1.1", 405},
                {"GETS / HTTP/1.1", 405},
                {"get / HTTP/1.1", 405},
                {"", 400},
                {" / HTTP/1.1", 400},
                {"GET\r\n\r\n", 400},
                {"GET ?a=1 HTTP/1.1", 400},
        };
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                CHECK_INT_EQ(mls_httpd_request_line(refused[i].req, path,
                                                    sizeof(path), &head),
                             refused[i].status);
        /* a path one byte too long for the buffer, then one that fits */
        snprintf(longer, sizeof(longer), "GET /%0*d HTTP/1.1", 15, 0);
        CHECK_INT_EQ(mls_httpd_request_line(longer, path, sizeof(path), &head),
                     400);
        snprintf(longer, sizeof(longer), "GET /%0*d HTTP/1.1", 14, 0);
        CHECK_INT_EQ(mls_httpd_request_line(longer, path, sizeof(path), &head),
                     0);
        CHECK_INT_EQ(strlen(path), 15);
}

static int answer_ok(void *opaque, const char *path, struct mls_buf *body,
                     const char **content_type)
{
        (void)opaque;
        (void)content_type;
        mls_buf_printf(body, "path %s\n", path);
        return 200;
}

/* Sends req in pieces of step bytes; returns the whole answer. */
static void http_exchange(int port, const char *req, size_t len, size_t step,
                          char *out, size_t out_size)
{
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        size_t got = 0;
        ssize_t r;

        out[0] = '\0';
        if (fd < 0)
                return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                for (size_t i = 0; i < len; i += step)
                        if (send(fd, req + i, len - i < step ? len - i : step,
                                 MSG_NOSIGNAL) < 0)
                                break;
                while (got + 1 < out_size &&
                       (r = recv(fd, out + got, out_size - 1 - got, 0)) > 0)
                        got += (size_t)r;
                out[got] = '\0';
        }
        close(fd);
}

MLS_TEST(common_httpd_answers_a_trickled_request_and_refuses_a_huge_one)
{
        char err[256], out[1024];
        static char big[8191]; /* the cap, less the NUL */
        mls_httpd_t *h = mls_httpd_start("127.0.0.1", 0, answer_ok, NULL, err,
                                         sizeof(err));
        const char *req = "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";

        CHECK(h != NULL);
        http_exchange(mls_httpd_port(h), req, strlen(req), 1, out, sizeof(out));
        CHECK_CONTAINS(out, "HTTP/1.1 200 OK\r\n");
        CHECK_CONTAINS(out, "\r\n\r\npath /metrics\n");
        /* a head that fills the 8 KiB cap gets 400 there, not a wait */
        memcpy(big, "GET /", 5);
        memset(big + 5, 'a', sizeof(big) - 5);
        http_exchange(mls_httpd_port(h), big, sizeof(big), 512, out,
                      sizeof(out));
        mls_httpd_stop(h);
        CHECK_CONTAINS(out, "HTTP/1.1 400 Bad Request\r\n");
}
