#include "engine/lag.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"

/* One exported series: an assigned partition whose lag is known. */
struct entry {
        char *topic;
        int32_t partition;
        mls_series_t *series;
};

struct mls_lag {
        mls_metric_t *family;
        const char *field;    /* consumer_lag or consumer_lag_stored */
        const char *fallback; /* when field is unknown: NULL or consumer_lag */
        struct entry *v;
        size_t len, cap;
};

mls_lag_t *mls_lag_new(mls_metrics_t *metrics)
{
        mls_lag_t *lag = calloc(1, sizeof(*lag));

        if (!lag)
                return NULL;
        lag->family = mls_metric_new(
                metrics, MLS_GAUGE, "ml_stream_kafka_consumer_lag",
                "Messages in an assigned partition after the group's "
                "committed offset (librdkafka consumer_lag, refreshed every "
                "statistics.interval.ms).",
                "topic", "partition", NULL, 0);
        if (!lag->family) {
                free(lag);
                return NULL;
        }
        lag->field = "consumer_lag";
        return lag;
}

void mls_lag_use_stored(mls_lag_t *lag)
{
        lag->field = "consumer_lag_stored";
        lag->fallback = "consumer_lag";
}

void mls_lag_free(mls_lag_t *lag)
{
        if (!lag)
                return;
        for (size_t i = 0; i < lag->len; i++)
                free(lag->v[i].topic);
        free(lag->v);
        free(lag);
}

static int is_assigned(const rd_kafka_topic_partition_list_t *assigned,
                       const char *topic, int32_t partition)
{
        if (!assigned)
                return 0;
        for (int i = 0; i < assigned->cnt; i++)
                if (assigned->elems[i].partition == partition &&
                    strcmp(assigned->elems[i].topic, topic) == 0)
                        return 1;
        return 0;
}

void mls_lag_retain(mls_lag_t *lag,
                    const rd_kafka_topic_partition_list_t *assigned)
{
        size_t kept = 0;

        if (!lag)
                return;
        for (size_t i = 0; i < lag->len; i++) {
                struct entry *en = &lag->v[i];
                if (is_assigned(assigned, en->topic, en->partition)) {
                        lag->v[kept++] = *en;
                        continue;
                }
                mls_series_remove(en->series);
                free(en->topic);
        }
        lag->len = kept;
}

/* Sets the lag of one partition, creating its series on first use. An
 * allocation failure or the registry's series cap skips the partition. */
static void set_lag(mls_lag_t *lag, const char *topic, int32_t partition,
                    double value)
{
        struct entry *en = NULL;
        char pbuf[16];

        for (size_t i = 0; i < lag->len && !en; i++)
                if (lag->v[i].partition == partition &&
                    strcmp(lag->v[i].topic, topic) == 0)
                        en = &lag->v[i];
        if (!en) {
                if (lag->len == lag->cap) {
                        size_t ncap = lag->cap ? lag->cap * 2 : 16;
                        struct entry *n = realloc(lag->v, ncap * sizeof(*n));
                        if (!n)
                                return;
                        lag->v = n;
                        lag->cap = ncap;
                }
                snprintf(pbuf, sizeof(pbuf), "%" PRId32, partition);
                en = &lag->v[lag->len];
                en->topic = strdup(topic);
                en->partition = partition;
                en->series = mls_series(lag->family, topic, pbuf);
                if (!en->topic || !en->series) {
                        free(en->topic);
                        return;
                }
                lag->len++;
        }
        mls_series_set(en->series, value);
}

int mls_lag_update(mls_lag_t *lag, const char *json, size_t json_len,
                   const rd_kafka_topic_partition_list_t *assigned,
                   char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *root, *topics;
        char pbuf[16];

        root = json_loadb(json, json_len, 0, &jerr);
        if (!root) {
                snprintf(errstr, errstr_size,
                         "statistics: invalid JSON at byte %d: %s",
                         jerr.position, jerr.text);
                return -1;
        }
        topics = json_object_get(root, "topics");
        if (!json_is_object(root) || (topics && !json_is_object(topics))) {
                snprintf(errstr, errstr_size,
                         "statistics: expected an object with a \"topics\" "
                         "object");
                json_decref(root);
                return -1;
        }
        for (int i = 0; assigned && topics && i < assigned->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &assigned->elems[i];
                json_t *parts, *p, *v;

                parts = json_object_get(json_object_get(topics, tp->topic),
                                        "partitions");
                snprintf(pbuf, sizeof(pbuf), "%" PRId32, tp->partition);
                p = json_object_get(parts, pbuf);
                v = json_object_get(p, lag->field);
                if (lag->fallback &&
                    !(json_is_integer(v) && json_integer_value(v) >= 0))
                        v = json_object_get(p, lag->fallback);
                if (json_is_integer(v) && json_integer_value(v) >= 0)
                        set_lag(lag, tp->topic, tp->partition,
                                (double)json_integer_value(v));
        }
        json_decref(root);
        mls_lag_retain(lag, assigned);
        return 0;
}

void mls_lag_on_stats(mls_lag_t *lag, rd_kafka_t *rk, const char *json,
                      size_t json_len)
{
        rd_kafka_topic_partition_list_t *parts = NULL;
        char errstr[256];

        if (!lag || rd_kafka_assignment(rk, &parts) || !parts)
                return;
        if (mls_lag_update(lag, json, json_len, parts, errstr, sizeof(errstr)) <
            0)
                mls_debug("%s", errstr);
        rd_kafka_topic_partition_list_destroy(parts);
}

int mls_lag_on_rebalance(mls_lag_t *lag, rd_kafka_t *rk)
{
        rd_kafka_topic_partition_list_t *parts = NULL;
        int n;

        if (rd_kafka_assignment(rk, &parts) || !parts)
                return 0;
        mls_lag_retain(lag, parts);
        n = parts->cnt;
        rd_kafka_topic_partition_list_destroy(parts);
        return n;
}
