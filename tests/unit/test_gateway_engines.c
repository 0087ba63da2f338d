/*
 * The engines' model state (src/gateway/engines.c): versions, rates from
 * two heartbeats, comparisons summed over engines, p95 interpolation,
 * expiry and caps.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/engines.h"
#include "gateway/payload.h"
#include "test.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

/* Feeds the heartbeat text s to e at now_ms; returns the entries skipped
 * or dropped. */
static unsigned feed(mls_engines_t *e, const char *s, int64_t now_ms)
{
        struct mls_payload p;
        unsigned n;

        if (mls_payload_normalize(s, strlen(s), 1 << 20, &p) !=
            MLS_PAYLOAD_HEARTBEAT) {
                mls_payload_clear(&p);
                return 9999;
        }
        n = p.skipped + mls_engines_heartbeat(e, &p, now_ms);
        mls_payload_clear(&p);
        return n;
}

/* A heartbeat of engine id for model "m": serving sv, canary cv (share),
 * shadow hv (NULL: null), counters, and one comparison (sv, hv) when hv. */
static const char *hb(const char *id, const char *sv, const char *cv,
                      double share, const char *hv, double preds, double errs,
                      double rows, double agree, double sum, const char *counts)
{
        static char buf[2048];
        char c[64] = "null", h[64] = "null", sh[32] = "null", cmp[1024] = "";

        if (cv) {
                snprintf(c, sizeof(c), "\"%s\"", cv);
                snprintf(sh, sizeof(sh), "%g", share);
        }
        if (hv) {
                snprintf(h, sizeof(h), "\"%s\"", hv);
                snprintf(cmp, sizeof(cmp),
                         "{\"model_id\":\"m\",\"serving\":\"%s\",\"shadow\":"
                         "\"%s\",\"rows\":%g,\"agreements\":%g,"
                         "\"abs_diff_sum\":%g,\"abs_diff_le\":[0.1,1,10],"
                         "\"abs_diff_counts\":%s,\"serving_seconds\":%g,"
                         "\"serving_calls\":%g,\"shadow_seconds\":%g,"
                         "\"shadow_calls\":%g}",
                         sv, hv, rows, agree, sum, counts, rows / 1000,
                         rows / 10, rows / 500, rows / 10);
        }
        snprintf(buf, sizeof(buf),
                 "{\"type\":\"heartbeat\",\"engine_id\":\"%s\",\"models\":"
                 "[\"m\"],\"loaded\":[{\"model_id\":\"m\",\"framework\":"
                 "\"torch\",\"serving\":\"%s\",\"canary\":%s,"
                 "\"canary_share\":%s,\"shadow\":%s,\"predictions\":%g,"
                 "\"errors\":%g}],\"comparisons\":[%s]}",
                 id, sv, c, sh, h, preds, errs, cmp);
        return buf;
}

static json_t *status(mls_engines_t *e, const char *model)
{
        json_t *o = json_object();

        if (o && mls_engines_status(e, model, o) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static double num(json_t *o, const char *k)
{
        json_t *v = json_object_get(o, k);

        return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *str(json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));

        return s ? s : "(null)";
}

MLS_TEST(gateway_engines_quantile)
{
        static const double le[] = {1, 2, 4};
        static const double a[] = {0, 10, 10, 0}, b[] = {0, 0, 0, 5},
                            c[] = {100, 0, 0, 0}, z[] = {0, 0, 0, 0};

        /* 95 % of 20 = 19: the 9th of 10 in (2, 4] -> 2 + 2 * 9/10 */
        CHECK(NEAR(mls_engines_quantile(le, a, 3, 0.95), 3.8));
        /* the median: 10 of 20, the last of (1, 2] */
        CHECK(NEAR(mls_engines_quantile(le, a, 3, 0.5), 2));
        /* in the overflow bucket: the last bound */
        CHECK(NEAR(mls_engines_quantile(le, b, 3, 0.95), 4));
        /* the first bucket's lower edge is 0 */
        CHECK(NEAR(mls_engines_quantile(le, c, 3, 0.95), 0.95));
        CHECK(isnan(mls_engines_quantile(le, z, 3, 0.95)));
        CHECK(isnan(mls_engines_quantile(le, a, 0, 0.95)));
}

MLS_TEST(gateway_engines_versions_and_rates)
{
        mls_engines_t *e = mls_engines_new(0);
        json_t *st;

        CHECK(e);
        CHECK_INT_EQ(feed(e,
                          hb("e1", "v1", "v2", 0.2, "v3", 1000, 10, 0, 0, 0,
                             "[0,0,0,0]"),
                          1000000),
                     0);
        CHECK_INT_EQ(feed(e,
                          hb("e2", "v1", "v2", 0.4, NULL, 50, 0, 0, 0, 0, ""),
                          1000000),
                     0);
        st = status(e, "m");
        CHECK(st);
        CHECK_STR_EQ(str(st, "servingVersion"), "v1");
        CHECK_STR_EQ(str(st, "canaryVersion"), "v2");
        CHECK(NEAR(num(st, "canaryShare"), 0.3));
        CHECK_STR_EQ(str(st, "framework"), "torch");
        CHECK_INT_EQ(num(st, "engines"), 2);
        /* one heartbeat each: rates unknown */
        CHECK(json_is_null(json_object_get(st, "predictionsPerSecond")));
        CHECK(json_is_null(json_object_get(st, "errorsPerSecond")));
        json_decref(st);
        /* 2 s later: e1 +400 predictions, +2 errors; e2 +100 */
        feed(e, hb("e1", "v1", "v2", 0.2, "v3", 1400, 12, 0, 0, 0, "[0,0,0,0]"),
             1002000);
        feed(e, hb("e2", "v1", "v2", 0.4, NULL, 150, 0, 0, 0, 0, ""), 1002000);
        st = status(e, "m");
        CHECK(NEAR(num(st, "predictionsPerSecond"), 250));
        CHECK(NEAR(num(st, "errorsPerSecond"), 1));
        json_decref(st);
        /* a restart (counters go down): that engine's rate is unknown */
        feed(e, hb("e1", "v1", "v2", 0.2, "v3", 5, 0, 0, 0, 0, "[0,0,0,0]"),
             1003000);
        st = status(e, "m");
        CHECK(NEAR(num(st, "predictionsPerSecond"), 50));
        json_decref(st);
        /* mid-rollout: most engines win */
        feed(e, hb("e3", "v2", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 1003000);
        feed(e, hb("e4", "v2", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 1003000);
        feed(e, hb("e5", "v2", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 1003000);
        st = status(e, "m");
        CHECK_STR_EQ(str(st, "servingVersion"), "v2");
        CHECK(json_is_null(json_object_get(st, "canaryVersion")));
        CHECK(json_is_null(json_object_get(st, "canaryShare")));
        CHECK_INT_EQ(num(st, "engines"), 5);
        json_decref(st);
        /* an unknown model */
        st = status(e, "other");
        CHECK_INT_EQ(num(st, "engines"), 0);
        CHECK(json_is_null(json_object_get(st, "servingVersion")));
        json_decref(st);
        mls_engines_free(e);
}

MLS_TEST(gateway_engines_comparisons_sum_engines)
{
        mls_engines_t *e = mls_engines_new(0);
        json_t *a, *c;

        CHECK(e);
        feed(e,
             hb("e1", "v1", NULL, 0, "v3", 0, 0, 1000, 950, 12.5,
                "[500,375,100,25]"),
             1000000);
        feed(e,
             hb("e2", "v1", NULL, 0, "v3", 0, 0, 3000, 2850, 37.5,
                "[1500,1125,300,75]"),
             1000000);
        a = mls_engines_comparisons(e, "m");
        CHECK(a);
        CHECK_INT_EQ(json_array_size(a), 1);
        c = json_array_get(a, 0);
        CHECK_STR_EQ(str(c, "modelId"), "m");
        CHECK_STR_EQ(str(c, "servingVersion"), "v1");
        CHECK_STR_EQ(str(c, "shadowVersion"), "v3");
        CHECK(NEAR(num(c, "rows"), 4000));
        CHECK(NEAR(num(c, "agreementRate"), 0.95));
        CHECK(NEAR(num(c, "meanAbsDiff"), 0.0125));
        /* 95 % of 4000 = 3800: 300 into the 400 of (1, 10] -> 1 + 9 * 3/4 */
        CHECK(NEAR(num(c, "p95AbsDiff"), 7.75));
        CHECK(NEAR(num(c, "servingLatencyMs"), 10));
        CHECK(NEAR(num(c, "shadowLatencyMs"), 20));
        CHECK_INT_EQ(num(c, "engines"), 2);
        json_decref(a);
        /* a new shadow on e2: the pair compared last comes first */
        feed(e, hb("e2", "v1", NULL, 0, "v4", 0, 0, 10, 5, 1, "[1,1,1,7]"),
             1001000);
        a = mls_engines_comparisons(e, "m");
        CHECK_INT_EQ(json_array_size(a), 2);
        CHECK_STR_EQ(str(json_array_get(a, 0), "shadowVersion"), "v4");
        CHECK_STR_EQ(str(json_array_get(a, 1), "shadowVersion"), "v3");
        CHECK(NEAR(num(json_array_get(a, 1), "rows"), 1000));
        json_decref(a);
        /* no rows: rates null */
        feed(e, hb("e9", "w", NULL, 0, "x", 0, 0, 0, 0, 0, "[0,0,0,0]"),
             1001000);
        a = mls_engines_comparisons(e, "m");
        for (size_t i = 0; i < json_array_size(a); i++) {
                c = json_array_get(a, i);
                if (strcmp(str(c, "servingVersion"), "w") != 0)
                        continue;
                CHECK(json_is_null(json_object_get(c, "agreementRate")));
                CHECK(json_is_null(json_object_get(c, "meanAbsDiff")));
                CHECK(json_is_null(json_object_get(c, "p95AbsDiff")));
        }
        json_decref(a);
        a = mls_engines_comparisons(e, "nothing");
        CHECK_INT_EQ(json_array_size(a), 0);
        json_decref(a);
        mls_engines_free(e);
}

MLS_TEST(gateway_engines_expire)
{
        mls_engines_t *e = mls_engines_new(0);
        json_t *st;

        CHECK(e);
        feed(e, hb("e1", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 0 + 1000);
        feed(e, hb("e2", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 1000);
        /* e2 beats every 10 s: it lives 30 s after its last heartbeat */
        feed(e, hb("e2", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 11000);
        mls_engines_expire(e, 1000 + MLS_ENGINES_MIN_TTL_MS);
        CHECK_INT_EQ(mls_engines_count(e), 2);
        mls_engines_expire(e, 1001 + MLS_ENGINES_MIN_TTL_MS);
        CHECK_INT_EQ(mls_engines_count(e), 1);
        st = status(e, "m");
        CHECK_INT_EQ(num(st, "engines"), 1);
        json_decref(st);
        mls_engines_expire(e, 11000 + 30000);
        CHECK_INT_EQ(mls_engines_count(e), 1);
        mls_engines_expire(e, 11001 + 30000);
        CHECK_INT_EQ(mls_engines_count(e), 0);
        st = status(e, "m");
        CHECK_INT_EQ(num(st, "engines"), 0);
        json_decref(st);
        mls_engines_free(e);
}

MLS_TEST(gateway_engines_caps)
{
        mls_engines_t *e = mls_engines_new(0);
        char id[32];
        json_t *a;

        CHECK(e);
        for (int i = 0; i < 2000; i++) {
                snprintf(id, sizeof(id), "engine-%d", i);
                feed(e, hb(id, "v1", NULL, 0, "v2", 0, 0, 1, 1, 0, "[1,0,0,0]"),
                     1000 + i);
        }
        CHECK_INT_EQ(mls_engines_count(e), MLS_ENGINES_MAX);
        a = mls_engines_comparisons(e, "m");
        CHECK_INT_EQ(json_array_size(a), 1);
        /* the oldest were evicted: the newest 1024 remain */
        CHECK_INT_EQ(json_integer_value(
                             json_object_get(json_array_get(a, 0), "engines")),
                     MLS_ENGINES_MAX);
        json_decref(a);
        mls_engines_free(e);
        /* at most MLS_ENGINES_MAX_PAIRS pairs per (engine, model) */
        e = mls_engines_new(4);
        {
                char buf[8192];
                size_t n = (size_t)snprintf(
                        buf, sizeof(buf),
                        "{\"type\":\"heartbeat\",\"engine_id\":\"e\","
                        "\"comparisons\":[");
                for (int i = 0; i < 20; i++)
                        n += (size_t)snprintf(
                                buf + n, sizeof(buf) - n,
                                "%s{\"model_id\":\"m\",\"serving\":\"v1\","
                                "\"shadow\":\"s%d\",\"rows\":1,"
                                "\"agreements\":1,\"abs_diff_sum\":0}",
                                i ? "," : "", i);
                snprintf(buf + n, sizeof(buf) - n, "]}");
                CHECK_INT_EQ(feed(e, buf, 1000), 20 - MLS_ENGINES_MAX_PAIRS);
        }
        a = mls_engines_comparisons(e, "m");
        CHECK_INT_EQ(json_array_size(a), MLS_ENGINES_MAX_PAIRS);
        json_decref(a);
        /* a small engine table evicts the least recently heard from */
        feed(e, hb("a", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 2000);
        feed(e, hb("b", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 2001);
        feed(e, hb("c", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 2002);
        feed(e, hb("d", "v1", NULL, 0, NULL, 0, 0, 0, 0, 0, ""), 2003);
        CHECK_INT_EQ(mls_engines_count(e), 4);
        a = mls_engines_comparisons(e, "m");
        CHECK_INT_EQ(json_array_size(a), 0); /* "e" was evicted */
        json_decref(a);
        mls_engines_free(e);
}
