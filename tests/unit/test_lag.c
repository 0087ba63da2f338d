/* Consumer lag from librdkafka statistics (src/engine/lag.c) and the
 * metrics registry's series removal it relies on. */
#include <stdlib.h>

#include "common/metrics.h"
#include "engine/lag.h"
#include "test.h"

/* Renders the registry into a NUL-terminated string the caller frees. */
static char *render(mls_metrics_t *r)
{
        struct mls_buf b;
        char *s;

        mls_buf_init(&b, 1 << 20);
        mls_metrics_render(r, &b);
        s = strndup(b.data ? b.data : "", b.len);
        mls_buf_free(&b);
        return s;
}

static rd_kafka_topic_partition_list_t *parts(const char *topic, int n,
                                              const int *ids)
{
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(n > 0 ? n : 1);

        for (int i = 0; i < n; i++)
                rd_kafka_topic_partition_list_add(l, topic, ids[i]);
        return l;
}

MLS_TEST(lag_series_remove)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_metric_t *m = mls_metric_new(r, MLS_GAUGE, "g", "A gauge.", "k",
                                         NULL, NULL, 0);
        mls_series_t *a = mls_series(m, "a", NULL);
        mls_series_t *b = mls_series(m, "b", NULL);
        mls_series_t *c = mls_series(m, "c", NULL);
        char *out;

        mls_series_set(a, 1);
        mls_series_set(b, 2);
        mls_series_set(c, 3);
        mls_series_remove(b); /* middle of the list */
        out = render(r);
        CHECK(strstr(out, "g{k=\"a\"} 1\n") != NULL);
        CHECK(strstr(out, "g{k=\"b\"}") == NULL);
        CHECK(strstr(out, "g{k=\"c\"} 3\n") != NULL);
        free(out);
        mls_series_remove(c); /* the head: newest first */
        mls_series_remove(a); /* the last one */
        mls_series_remove(NULL);
        out = render(r);
        CHECK_STR_EQ(out, "# HELP g A gauge.\n# TYPE g gauge\n");
        free(out);
        /* The same labels again: a fresh series starting at zero. */
        b = mls_series(m, "b", NULL);
        mls_series_add(b, 5);
        out = render(r);
        CHECK(strstr(out, "g{k=\"b\"} 5\n") != NULL);
        free(out);
        mls_metrics_free(r);
}

static const char STATS[] =
        "{\"name\":\"rdkafka#consumer-1\",\"type\":\"consumer\","
        "\"topics\":{\"in\":{\"topic\":\"in\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"consumer_lag\":7,\"consumer_lag_stored\":3},"
        "\"1\":{\"partition\":1,\"consumer_lag\":0},"
        "\"2\":{\"partition\":2,\"consumer_lag\":-1},"
        "\"3\":{\"partition\":3,\"consumer_lag\":42},"
        "\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
        "\"other\":{\"topic\":\"other\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"consumer_lag\":9}}}}}";

MLS_TEST(lag_only_assigned_partitions)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_lag_t *lag = mls_lag_new(r);
        static const int mine[] = {0, 1, 2};
        rd_kafka_topic_partition_list_t *l = parts("in", 3, mine);
        char err[256], *out;

        CHECK(lag != NULL);
        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        out = render(r);
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"0\"} 7\n");
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"1\"} 0\n");
        /* Unknown lag (-1): no series; not ours (3, other/0): no series. */
        CHECK(strstr(out, "partition=\"2\"") == NULL);
        CHECK(strstr(out, "partition=\"3\"") == NULL);
        CHECK(strstr(out, "topic=\"other\"") == NULL);
        CHECK(strstr(out, "partition=\"-1\"") == NULL);
        free(out);
        rd_kafka_topic_partition_list_destroy(l);
        mls_lag_free(lag);
        mls_metrics_free(r);
}

MLS_TEST(lag_revoked_partitions_drop_out)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_lag_t *lag = mls_lag_new(r);
        static const int all[] = {0, 1, 3}, half[] = {3};
        rd_kafka_topic_partition_list_t *l = parts("in", 3, all);
        char err[256], *out;

        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        rd_kafka_topic_partition_list_destroy(l);
        /* A rebalance takes 0 and 1 away: their series go at once. */
        l = parts("in", 1, half);
        mls_lag_retain(lag, l);
        out = render(r);
        CHECK(strstr(out, "partition=\"0\"") == NULL);
        CHECK(strstr(out, "partition=\"1\"") == NULL);
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"3\"} 42\n");
        free(out);
        /* A statistics document written before the rebalance but served
         * after it must not bring them back. */
        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        out = render(r);
        CHECK(strstr(out, "partition=\"0\"") == NULL);
        CHECK_CONTAINS(out, "partition=\"3\"} 42\n");
        free(out);
        /* Everything revoked. */
        mls_lag_retain(lag, NULL);
        out = render(r);
        CHECK(strstr(out, "ml_stream_kafka_consumer_lag{") == NULL);
        free(out);
        rd_kafka_topic_partition_list_destroy(l);
        mls_lag_free(lag);
        mls_metrics_free(r);
}

MLS_TEST(lag_update_drops_partitions_no_longer_assigned)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_lag_t *lag = mls_lag_new(r);
        static const int before[] = {0, 1}, after[] = {1};
        rd_kafka_topic_partition_list_t *l = parts("in", 2, before);
        char err[256], *out;

        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        rd_kafka_topic_partition_list_destroy(l);
        /* The next document after a rebalance the tracker was not told
         * about: the statistics alone bring the series in line. */
        l = parts("in", 1, after);
        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        out = render(r);
        CHECK(strstr(out, "partition=\"0\"") == NULL);
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"1\"} 0\n");
        free(out);
        rd_kafka_topic_partition_list_destroy(l);
        mls_lag_free(lag);
        mls_metrics_free(r);
}

MLS_TEST(lag_unknown_keeps_last_value_and_bad_json_changes_nothing)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_lag_t *lag = mls_lag_new(r);
        static const int one[] = {0};
        static const char later[] =
                "{\"topics\":{\"in\":{\"partitions\":{\"0\":"
                "{\"consumer_lag\":-1}}}}}";
        rd_kafka_topic_partition_list_t *l = parts("in", 1, one);
        char err[256], *out;

        CHECK_INT_EQ(mls_lag_update(lag, STATS, sizeof(STATS) - 1, l, err,
                                    sizeof(err)),
                     0);
        CHECK_INT_EQ(mls_lag_update(lag, later, sizeof(later) - 1, l, err,
                                    sizeof(err)),
                     0);
        CHECK_INT_EQ(
                mls_lag_update(lag, "{\"topics\":", 10, l, err, sizeof(err)),
                -1);
        CHECK_CONTAINS(err, "invalid JSON");
        CHECK_INT_EQ(mls_lag_update(lag, "[1]", 3, l, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "topics");
        out = render(r);
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"0\"} 7\n");
        free(out);
        /* No "topics" at all (nothing subscribed yet) is not an error. */
        CHECK_INT_EQ(mls_lag_update(lag, "{\"name\":\"c\"}", 12, l, err,
                                    sizeof(err)),
                     0);
        rd_kafka_topic_partition_list_destroy(l);
        mls_lag_free(lag);
        mls_metrics_free(r);
}

/* Under ML_EXACTLY_ONCE the stored offset's lag is read; where nothing is
 * stored (librdkafka forgets it at each assignment), the lag after the
 * committed offset it read then. */
MLS_TEST(lag_stored_falls_back_to_committed)
{
        mls_metrics_t *r = mls_metrics_new();
        mls_lag_t *lag = mls_lag_new(r);
        static const int two[] = {0, 1};
        static const char stats[] =
                "{\"topics\":{\"in\":{\"partitions\":{"
                "\"0\":{\"consumer_lag\":9,\"consumer_lag_stored\":2},"
                "\"1\":{\"consumer_lag\":0,\"consumer_lag_stored\":-1}}}}}";
        rd_kafka_topic_partition_list_t *l = parts("in", 2, two);
        char err[256], *out;

        mls_lag_use_stored(lag);
        CHECK_INT_EQ(mls_lag_update(lag, stats, sizeof(stats) - 1, l, err,
                                    sizeof(err)),
                     0);
        out = render(r);
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"0\"} 2\n");
        CHECK_CONTAINS(out, "ml_stream_kafka_consumer_lag{topic=\"in\","
                            "partition=\"1\"} 0\n");
        free(out);
        rd_kafka_topic_partition_list_destroy(l);
        mls_lag_free(lag);
        mls_metrics_free(r);
}
