/*
 * mls-kafkapub: produces input messages (DESIGN §3) to a Kafka topic at a
 * steady rate, each carrying its send time in metadata.sent_ns, for
 * end-to-end latency measurements (bench/up_latency.py).
 *
 *   mls-kafkapub --bootstrap H:P --topic T --model M --rate N --count C
 *                [--linger-ms L]
 *
 * linger.ms is L (default 0: each message leaves at once). Between
 * messages it sleeps, so that it takes little of a core from what it
 * measures. Prints one JSON object.
 * Threads: one (librdkafka has its own).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
        for (int i = 1; i + 1 < argc; i++)
                if (strcmp(argv[i], name) == 0)
                        return argv[i + 1];
        return def;
}

int main(int argc, char **argv)
{
        const char *topic = opt(argc, argv, "--topic", "ml.inference");
        const char *model = opt(argc, argv, "--model", "lat");
        long rate = atol(opt(argc, argv, "--rate", "200"));
        long count = atol(opt(argc, argv, "--count", "1000"));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], msg[512];
        rd_kafka_t *rk;
        int64_t start;

        if (rate <= 0 || count <= 0 ||
            rd_kafka_conf_set(conf, "bootstrap.servers",
                              opt(argc, argv, "--bootstrap", "127.0.0.1:9092"),
                              err, sizeof(err)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "linger.ms",
                              opt(argc, argv, "--linger-ms", "0"), err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "usage: mls-kafkapub --bootstrap H:P --topic T "
                                "--model M --rate N --count C "
                                "[--linger-ms L]\n");
                return 2;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "mls-kafkapub: %s\n", err);
                return 1;
        }
        start = now_ns();
        for (long i = 0; i < count; i++) {
                int64_t due = start + i * 1000000000LL / rate, wait;
                int n;

                rd_kafka_poll(rk, 0); /* delivery reports */
                if ((wait = due - now_ns()) > 0) {
                        struct timespec ts = {.tv_sec = wait / 1000000000,
                                              .tv_nsec = wait % 1000000000};
                        nanosleep(&ts, NULL);
                }
                n = snprintf(msg, sizeof(msg),
                             "{\"model_id\":\"%s\",\"input_id\":\"l%ld\","
                             "\"features\":[[0.1,0.2,0.3]],\"metadata\":{"
                             "\"sent_ns\":%lld}}",
                             model, i, (long long)now_ns());
                while (rd_kafka_producev(
                               rk, RD_KAFKA_V_TOPIC(topic),
                               RD_KAFKA_V_VALUE(msg, (size_t)n),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_END) != 0)
                        rd_kafka_poll(rk, 1);
        }
        rd_kafka_flush(rk, 10000);
        printf("{\"produced\":%ld,\"seconds\":%.3f}\n", count,
               (double)(now_ns() - start) / 1e9);
        rd_kafka_destroy(rk);
        return 0;
}
