/*
 * `mlstream up`: the embedded default. One process runs an embedded
 * Kafka-protocol broker (librdkafka's mock cluster, relayed to
 * 127.0.0.1:9092), the engine, the gateway and an in-process bus in place
 * of Redis. KAFKA_BOOTSTRAP_SERVERS / REDIS_URL swap in real services.
 * A development mode without authentication or an origin check, so the
 * gateway listens on 127.0.0.1 unless GATEWAY_HOST / --gateway-host says
 * otherwise (docs/security.md).
 *
 * Threads: the gateway's loop runs on the main thread, the engine on its
 * own; the broker, relay and demo producer have theirs.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/redis_url.h"
#include "common/signals.h"
#include "up/demo.h"
#include "up/up.h"
#include "up/embedded_kafka.h"
#include "engine/engine.h"
#ifdef MLS_HAVE_GATEWAY
#include "gateway/gateway.h"
#endif

extern char **environ;

static void print_help(void)
{
        printf("usage: mlstream up [--demo] [OPTIONS]\n\n"
               "Runs everything in one process: an embedded Kafka-protocol "
               "broker on\n127.0.0.1:9092 (librdkafka's mock cluster: in "
               "memory, NOT durable, for\ndevelopment), the engine, the "
               "gateway (GraphQL, dashboard, metrics) and an\nin-process bus "
               "in place of Redis. Setting KAFKA_BOOTSTRAP_SERVERS or "
               "REDIS_URL\nuses those services instead. The gateway listens "
               "on 127.0.0.1 unless\nGATEWAY_HOST (--gateway-host) is set. "
               "Ctrl-C stops it.\n\n"
               "options:\n"
               "  --demo\n      Also produce a steady stream of synthetic "
               "events (see --demo-rate).\n");
        mls_config_print_help(stdout, MLS_SCOPE_UP);
}

#ifdef MLS_HAVE_GATEWAY
static mls_engine_t *up_engine;
static mls_gateway_t *up_gateway;
/* after SIGTERM: the engine's drain, then closing the gateway and stopping
 * the embedded broker; past it the process ends regardless */
static unsigned up_deadline_ms;
static volatile sig_atomic_t up_stopping;

static void on_signal(int sig)
{
        if (sig == SIGHUP) {
                if (up_engine)
                        mls_engine_reload(up_engine);
                return;
        }
        if (up_stopping)
                mls_signals_exit_now(); /* a second Ctrl-C */
        up_stopping = 1;
        mls_signals_deadline(up_deadline_ms);
        mls_signals_stage("draining the engine and closing client connections");
        if (up_engine)
                mls_engine_stop(up_engine);
        if (up_gateway)
                mls_gateway_stop(up_gateway);
}

/* The in-process bus: the engine's publisher hands payloads to the
 * gateway's loop. */
static int bus_send(void *ctx, const struct mls_record *rec,
                    const char *model_id, const char *payload, size_t len,
                    const char *reason, const char *detail)
{
        (void)model_id;
        (void)rec;
        (void)reason;
        (void)detail;
        return mls_gateway_publish(ctx, payload, len);
}

static int bus_flush(void *ctx, char *errstr, size_t errstr_size)
{
        (void)ctx;
        (void)errstr;
        (void)errstr_size;
        return 0;
}

static const struct mls_sink_ops bus_ops = {
        .name = "bus", .send = bus_send, .flush = bus_flush};

static void *engine_thread(void *arg)
{
        int *status = malloc(sizeof(int));

        *status = mls_engine_run(arg);
        /* The engine ending (fatal error) ends the whole process. */
        if (up_gateway)
                mls_gateway_stop(up_gateway);
        return status;
}

static int add_kafka_conf(struct mls_config *cfg, const char *kv)
{
        char **list = realloc(cfg->kafka_conf,
                              (cfg->kafka_conf_count + 1) * sizeof(*list));

        if (!list)
                return -1;
        cfg->kafka_conf = list;
        cfg->kafka_conf[cfg->kafka_conf_count++] = strdup(kv);
        return 0;
}

static int has_kafka_conf(const struct mls_config *cfg, const char *name)
{
        size_t n = strlen(name);

        for (size_t i = 0; i < cfg->kafka_conf_count; i++)
                if (strncmp(cfg->kafka_conf[i], name, n) == 0 &&
                    cfg->kafka_conf[i][n] == '=')
                        return 1;
        return 0;
}

int mls_up_main(int argc, char **argv)
{
        struct mls_config cfg;
        struct mls_sink publisher = {0};
        mls_metrics_t *metrics = NULL;
        mls_embedded_kafka_t *kafka = NULL;
        mls_demo_t *demo = NULL;
        pthread_t tid;
        char errstr[1024], *args[256];
        int nargs = 0, demo_on = 0, embedded, bus, status = 2, *estatus;

        for (int i = 0; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 ||
                    strcmp(argv[i], "-h") == 0) {
                        print_help();
                        return 0;
                }
                if (strcmp(argv[i], "--demo") == 0)
                        demo_on = 1;
                else if (nargs < 255)
                        args[nargs++] = argv[i];
        }
        if (mls_config_load(&cfg, MLS_SCOPE_UP, environ, nargs, args, errstr,
                            sizeof(errstr)) < 0) {
                fprintf(stderr, "mlstream: %s\n", errstr);
                return 2;
        }
        mls_log_set_level(cfg.log_level);
        mls_log_set_format(cfg.log_format);
        mls_log_set_component("up");
        mls_config_warn_unknown(&cfg);
        /* No broker or Redis named: up brings its own. (Its gateway
         * listens on loopback unless told otherwise: up's default.) */
        embedded = mls_config_origin(&cfg, "KAFKA_BOOTSTRAP_SERVERS") ==
                   MLS_CONF_DEFAULT;
        bus = mls_config_origin(&cfg, "REDIS_URL") == MLS_CONF_DEFAULT;
        metrics = mls_metrics_new();
        if (embedded) {
                kafka = mls_embedded_kafka_start(
                        "127.0.0.1", (int)cfg.embedded_kafka_port,
                        cfg.kafka_inference_topic, 4, errstr, sizeof(errstr));
                if (!kafka) {
                        mls_error("embedded broker: %s (set "
                                  "ML_EMBEDDED_KAFKA_PORT / "
                                  "--embedded-kafka-port, or "
                                  "KAFKA_BOOTSTRAP_SERVERS for a real broker)",
                                  errstr);
                        goto out;
                }
                free(cfg.kafka_bootstrap_servers);
                cfg.kafka_bootstrap_servers =
                        strdup(mls_embedded_kafka_bootstrap(kafka));
                /* The mock broker answers an empty fetch only after
                 * fetch.wait.max.ms, even when data arrives meanwhile. */
                if (!has_kafka_conf(&cfg, "fetch.wait.max.ms"))
                        add_kafka_conf(&cfg, "fetch.wait.max.ms=2");
        }
        up_gateway =
                mls_gateway_new(&cfg, metrics, bus, errstr, sizeof(errstr));
        if (!up_gateway) {
                mls_error("%s", errstr);
                goto out;
        }
        if (bus) {
                publisher.ops = &bus_ops;
                publisher.ctx = up_gateway;
        }
        up_engine = mls_engine_new(&cfg, metrics, publisher, errstr,
                                   sizeof(errstr));
        if (!up_engine) {
                mls_error("%s", errstr);
                goto out;
        }
        if (demo_on) {
                demo = mls_demo_start(
                        cfg.kafka_bootstrap_servers, cfg.kafka_inference_topic,
                        (int)cfg.demo_rate, errstr, sizeof(errstr));
                if (!demo) {
                        mls_error("%s", errstr);
                        goto out;
                }
        }
        up_deadline_ms = (unsigned)cfg.shutdown_timeout_ms + 5000;
        mls_signals_install(on_signal);
        {
                struct mls_redis_url ru;
                char redis_shown[400] = "";
                int port = mls_gateway_port(up_gateway);
                /* Never print the password. */
                if (!bus && mls_redis_url_parse(cfg.redis_url, &ru, errstr,
                                                sizeof(errstr)) == 0)
                        snprintf(redis_shown, sizeof(redis_shown),
                                 "redis://%s%s:%d/%d",
                                 ru.password[0] ? "***@" : "", ru.host, ru.port,
                                 ru.db);
                /* the address bound, as a URL host */
                const char *bound = cfg.gateway_host;
                char host[300];
                if (!bound[0] || strcmp(bound, "*") == 0)
                        bound = "0.0.0.0";
                snprintf(host, sizeof(host), strchr(bound, ':') ? "[%s]" : "%s",
                         bound);
                fprintf(stderr,
                        "\nmlstream up\n"
                        "  Kafka bootstrap  %s%s\n"
                        "  input topic      %s\n"
                        "  predictions      %s\n"
                        "  GraphQL          http://%s:%d/graphql  (ws://%s:%d/"
                        "graphql)\n"
                        "  dashboard        http://%s:%d/\n"
                        "  metrics          http://%s:%d/metrics\n\n"
                        "  send an event:\n"
                        "  echo '{\"model_id\":\"threat-detector-v1\","
                        "\"input_id\":\"e1\",\"features\":[[0.1,0.2,0.3]],"
                        "\"metadata\":{\"tenant\":\"blue-team\"}}' | kcat -P "
                        "-b %s -t %s\n\n",
                        cfg.kafka_bootstrap_servers,
                        embedded ? "  (embedded: in memory, not durable)" : "",
                        cfg.kafka_inference_topic,
                        bus ? "in-process bus (no Redis)" : redis_shown, host,
                        port, host, port, host, port, host, port,
                        cfg.kafka_bootstrap_servers, cfg.kafka_inference_topic);
                if (strcmp(bound, "127.0.0.1") != 0 &&
                    strcmp(bound, "::1") != 0 &&
                    strcmp(bound, "localhost") != 0)
                        mls_warn("the gateway listens on %s, beyond this "
                                 "machine: set authentication and "
                                 "GATEWAY_ALLOWED_ORIGINS "
                                 "(docs/security.md)",
                                 bound);
        }
        if (pthread_create(&tid, NULL, engine_thread, up_engine) != 0) {
                mls_error("cannot start the engine thread");
                goto out;
        }
        status = mls_gateway_run(up_gateway);
        mls_engine_stop(up_engine);
        pthread_join(tid, (void **)&estatus);
        if (estatus && *estatus && !status)
                status = *estatus;
        free(estatus);
out:
        mls_shutdown_step("stopping the demo producer");
        mls_demo_stop(demo);
        if (up_engine)
                mls_engine_free(up_engine);
        mls_shutdown_step("closing the gateway");
        if (up_gateway)
                mls_gateway_free(up_gateway);
        up_engine = NULL;
        up_gateway = NULL;
        mls_shutdown_step("stopping the embedded Kafka broker");
        mls_embedded_kafka_stop(kafka);
        mls_metrics_free(metrics);
        mls_config_free(&cfg);
        return status;
}
#else
int mls_up_main(int argc, char **argv)
{
        for (int i = 0; i < argc; i++)
                if (strcmp(argv[i], "--help") == 0) {
                        print_help();
                        return 0;
                }
        fprintf(stderr, "mlstream: this build has no gateway, which `up` "
                        "needs\n");
        return 2;
}
#endif
