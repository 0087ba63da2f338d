#include "up/embedded_kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kafka.h"
#include "up/tcp_relay.h"

struct mls_embedded_kafka {
        rd_kafka_t *rk; /* owns the mock cluster's bookkeeping */
        rd_kafka_mock_cluster_t *mc;
        mls_tcp_relay_t *relay;
        char bootstrap[300];
};

mls_embedded_kafka_t *mls_embedded_kafka_start(const char *host, int port,
                                               const char *topic,
                                               int partitions, char *errstr,
                                               size_t errstr_size)
{
        mls_embedded_kafka_t *k = calloc(1, sizeof(*k));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];

        rd_kafka_resp_err_t rerr;

        if (!k) {
                snprintf(errstr, errstr_size, "out of memory");
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        mls_kafka_conf_log(conf);
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!k->rk) {
                snprintf(errstr, errstr_size, "embedded broker: %s", err);
                rd_kafka_conf_destroy(conf);
                free(k);
                return NULL;
        }
        k->mc = rd_kafka_mock_cluster_new(k->rk, 1);
        if (!k->mc) {
                snprintf(errstr, errstr_size,
                         "embedded broker: cannot start the mock cluster");
                goto fail;
        }
        rerr = rd_kafka_mock_topic_create(k->mc, topic, partitions, 1);
        if (rerr) {
                snprintf(errstr, errstr_size, "embedded broker: topic %s: %s",
                         topic, rd_kafka_err2str(rerr));
                goto fail;
        }
        k->relay = mls_tcp_relay_start(host, port,
                                       rd_kafka_mock_cluster_bootstraps(k->mc),
                                       errstr, errstr_size);
        if (!k->relay)
                goto fail;
        snprintf(k->bootstrap, sizeof(k->bootstrap), "%s:%d", host,
                 mls_tcp_relay_port(k->relay));
        return k;
fail:
        mls_embedded_kafka_stop(k);
        return NULL;
}

const char *mls_embedded_kafka_bootstrap(const mls_embedded_kafka_t *k)
{
        return k->bootstrap;
}

void mls_embedded_kafka_stop(mls_embedded_kafka_t *k)
{
        if (!k)
                return;
        mls_tcp_relay_stop(k->relay);
        if (k->mc)
                rd_kafka_mock_cluster_destroy(k->mc);
        rd_kafka_destroy(k->rk);
        free(k);
}
