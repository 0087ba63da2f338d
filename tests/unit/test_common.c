/* Buffers, JSON output helpers, metrics rendering, Redis URLs. */
#include <math.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "common/redis_url.h"
#include "test.h"

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
