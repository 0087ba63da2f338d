#include "up/demo.h"

#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/kafka.h"

struct mls_demo {
        rd_kafka_t *rk;
        char *topic;
        int rate;
        atomic_int stop;
        pthread_t thread;
};

static const char *const models[] = {"threat-detector-v1", "fraud-scorer-v2",
                                     "telemetry-anomaly-v1"};
static const char *const tenants[] = {"blue-team", "red-team", "soc",
                                      "fraud-ops"};

static void *run(void *arg)
{
        mls_demo_t *d = arg;
        unsigned seed = (unsigned)mls_clock_mono_ns();
        int64_t start = mls_clock_mono_ns();
        uint64_t sent = 0;
        char msg[512];

        while (!atomic_load(&d->stop)) {
                int64_t due = start + (int64_t)(sent * 1e9 / d->rate);
                int64_t now = mls_clock_mono_ns();
                int m, n;
                double t;
                if (now < due) {
                        struct timespec ts = {
                                0, due - now > 50000000 ? 50000000 : due - now};
                        nanosleep(&ts, NULL);
                        rd_kafka_poll(d->rk, 0);
                        continue;
                }
                m = (int)(rand_r(&seed) % 3);
                t = (double)now / 1e9;
                n = snprintf(msg, sizeof(msg),
                             "{\"model_id\":\"%s\",\"input_id\":\"demo-%llu\","
                             "\"features\":[[%.4f,%.4f,%.4f]],\"metadata\":"
                             "{\"tenant\":\"%s\",\"source\":\"demo\"}}",
                             models[m], (unsigned long long)sent,
                             0.5 + 0.4 * sin(t / 7 + m),
                             (double)(rand_r(&seed) % 1000) / 1000,
                             0.5 + 0.3 * cos(t / 3),
                             tenants[rand_r(&seed) % 4]);
                if (rd_kafka_producev(d->rk, RD_KAFKA_V_TOPIC(d->topic),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_VALUE(msg, (size_t)n),
                                      RD_KAFKA_V_END) != 0)
                        rd_kafka_poll(d->rk, 10);
                sent++;
        }
        return NULL;
}

mls_demo_t *mls_demo_start(const char *bootstrap, const char *topic, int rate,
                           char *errstr, size_t errstr_size)
{
        mls_demo_t *d = calloc(1, sizeof(*d));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];

        mls_kafka_conf_log(conf);
        if (errstr_size)
                errstr[0] = '\0';
        if (!d || rate <= 0)
                goto fail;
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                              sizeof(err)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "linger.ms", "1", err, sizeof(err)) !=
                    RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "demo producer: %s", err);
                goto fail;
        }
        d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!d->rk) {
                snprintf(errstr, errstr_size, "demo producer: %s", err);
                goto fail;
        }
        conf = NULL;
        d->topic = strdup(topic);
        d->rate = rate;
        if (pthread_create(&d->thread, NULL, run, d) != 0) {
                snprintf(errstr, errstr_size, "demo: cannot start a thread");
                rd_kafka_destroy(d->rk);
                free(d->topic);
                goto fail;
        }
        mls_info("demo: producing %d events/s for %zu models to %s", rate,
                 sizeof(models) / sizeof(models[0]), topic);
        return d;
fail:
        if (conf)
                rd_kafka_conf_destroy(conf);
        if (errstr[0] == '\0')
                snprintf(errstr, errstr_size, "demo: bad rate %d", rate);
        free(d);
        return NULL;
}

void mls_demo_stop(mls_demo_t *d)
{
        if (!d)
                return;
        atomic_store(&d->stop, 1);
        pthread_join(d->thread, NULL);
        rd_kafka_flush(d->rk, 2000);
        rd_kafka_destroy(d->rk);
        free(d->topic);
        free(d);
}
