/*
 * The embedded broker of `mlstream up`: librdkafka's mock cluster behind
 * the TCP relay. A producer and a consumer group that only know the relay's
 * address exchange messages, and the demo source produces valid input.
 */
#include <librdkafka/rdkafka.h>
#include <stdlib.h>

#include "common/clock.h"
#include "engine/decoder.h"
#include "up/demo.h"
#include "up/embedded_kafka.h"
#include "test.h"

static rd_kafka_t *consumer(const char *bootstrap, const char *topic)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *t;
        rd_kafka_t *rk;
        char err[256];

        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                          sizeof(err));
        rd_kafka_conf_set(conf, "group.id", "unit", err, sizeof(err));
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err,
                          sizeof(err));
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "5", err, sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        rd_kafka_poll_set_consumer(rk);
        t = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(rk, t);
        rd_kafka_topic_partition_list_destroy(t);
        return rk;
}

MLS_TEST(embedded_roundtrip_through_relay)
{
        char err[512];
        mls_embedded_kafka_t *k = mls_embedded_kafka_start(
                "127.0.0.1", 0, "unit.topic", 4, err, sizeof(err));
        rd_kafka_conf_t *pconf = rd_kafka_conf_new();
        rd_kafka_t *p, *c;
        int got = 0;
        int64_t deadline;

        CHECK(k != NULL);
        CHECK(strncmp(mls_embedded_kafka_bootstrap(k), "127.0.0.1:", 10) == 0);
        rd_kafka_conf_set(pconf, "bootstrap.servers",
                          mls_embedded_kafka_bootstrap(k), err, sizeof(err));
        p = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
        for (int i = 0; i < 100; i++)
                rd_kafka_producev(p, RD_KAFKA_V_TOPIC("unit.topic"),
                                  RD_KAFKA_V_VALUE("hello", 5),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END);
        CHECK_INT_EQ(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(p);
        c = consumer(mls_embedded_kafka_bootstrap(k), "unit.topic");
        deadline = mls_clock_mono_ns() + 20 * 1000000000LL;
        while (got < 100 && mls_clock_mono_ns() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (m && !m->err && m->len == 5 &&
                    memcmp(m->payload, "hello", 5) == 0)
                        got++;
                if (m)
                        rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        mls_embedded_kafka_stop(k);
        CHECK_INT_EQ(got, 100);
}

MLS_TEST(embedded_port_in_use_is_a_clear_error)
{
        char err[512] = "";
        mls_embedded_kafka_t *a = mls_embedded_kafka_start("127.0.0.1", 0, "t",
                                                           1, err, sizeof(err));
        char portstr[16];
        int port;
        mls_embedded_kafka_t *b;

        CHECK(a != NULL);
        port = atoi(strchr(mls_embedded_kafka_bootstrap(a), ':') + 1);
        snprintf(portstr, sizeof(portstr), "%d", port);
        b = mls_embedded_kafka_start("127.0.0.1", port, "t", 1, err,
                                     sizeof(err));
        mls_embedded_kafka_stop(a);
        CHECK(b == NULL);
        CHECK_CONTAINS(err, "in use");
        CHECK_CONTAINS(err, portstr);
}

MLS_TEST(embedded_demo_produces_valid_input)
{
        char err[512];
        mls_embedded_kafka_t *k = mls_embedded_kafka_start(
                "127.0.0.1", 0, "demo.topic", 2, err, sizeof(err));
        mls_demo_t *d;
        rd_kafka_t *c;
        struct mls_decode_limits lim = {1 << 16, 16, 16};
        int good = 0, bad = 0;
        int64_t deadline;

        CHECK(k != NULL);
        d = mls_demo_start(mls_embedded_kafka_bootstrap(k), "demo.topic", 200,
                           err, sizeof(err));
        CHECK(d != NULL);
        c = consumer(mls_embedded_kafka_bootstrap(k), "demo.topic");
        deadline = mls_clock_mono_ns() + 20 * 1000000000LL;
        while (good < 50 && mls_clock_mono_ns() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (m && !m->err) {
                        struct mls_floats f = {0};
                        struct mls_input in;
                        if (mls_decode(m->payload, m->len, &lim, &f, &in, err,
                                       sizeof(err)) == MLS_DECODE_OK &&
                            in.has_model_id && in.has_input_id && in.metadata &&
                            in.cols == 3)
                                good++;
                        else
                                bad++;
                        mls_floats_free(&f);
                }
                if (m)
                        rd_kafka_message_destroy(m);
        }
        mls_demo_stop(d);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
        mls_embedded_kafka_stop(k);
        CHECK_INT_EQ(bad, 0);
        CHECK(good >= 50);
}
