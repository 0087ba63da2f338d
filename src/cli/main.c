/*
 * mlstream: one executable, one subcommand per process role.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "engine/engine.h"
#include "up/up.h"
#ifdef MLS_HAVE_GATEWAY
#include "gateway/gateway.h"
#include "graphql/graphql.h"
#endif

extern char **environ;

static mls_engine_t *running_engine;
/* SIGTERM gives the engine ML_SHUTDOWN_TIMEOUT_MS to drain, and this much
 * more to close its clients, before the process ends regardless. */
#define EXIT_GRACE_MS 2000
static unsigned engine_deadline_ms;
static volatile sig_atomic_t stopping;
#ifdef MLS_HAVE_GATEWAY
static mls_gateway_t *running_gateway;
#endif

static void on_signal(int sig)
{
#ifdef MLS_HAVE_GATEWAY
        /* gateway: SIGTERM/SIGINT stop it; SIGHUP has nothing to reload */
        if (running_gateway) {
                if (sig != SIGHUP)
                        mls_gateway_stop(running_gateway);
                return;
        }
#endif
        if (!running_engine)
                return;
        if (sig == SIGHUP) {
                mls_engine_reload(running_engine);
                return;
        }
        if (stopping)
                mls_signals_exit_now(); /* a second SIGTERM/SIGINT */
        stopping = 1;
        mls_signals_deadline(engine_deadline_ms);
        mls_signals_stage("draining the engine");
        mls_engine_stop(running_engine);
}

static void usage(FILE *out)
{
        fprintf(out, "usage: mlstream COMMAND [OPTIONS]\n\n"
                     "Scores a Kafka stream of events with a model and pushes "
                     "every prediction to\nRedis and GraphQL subscribers.\n\n"
                     "commands:\n"
                     "  up        everything in one process: embedded broker, "
                     "engine, gateway\n"
                     "  engine    Kafka -> model -> Redis (+ output and "
                     "dead-letter topics)\n"
#ifdef MLS_HAVE_GATEWAY
                     "  gateway   Redis -> GraphQL subscriptions (WebSocket) "
                     "and queries (HTTP),\n"
                     "            status page, metrics\n"
#endif
#ifdef MLS_HAVE_GATEWAY
                     "  schema    print the GraphQL schema the gateway serves "
                     "(SDL)\n"
#endif
                     "  config    print the configuration reference "
                     "(--markdown for docs,\n"
                     "            --man for mlstream(1))\n"
                     "  version   print the versions of mlstream and its "
                     "libraries\n\n"
                     "`mlstream COMMAND --help` lists the command's options; "
                     "every option is also an\nenvironment variable "
                     "(docs/configuration.md).\n");
}

static int has_help(int argc, char **argv)
{
        for (int i = 0; i < argc; i++)
                if (strcmp(argv[i], "--help") == 0 ||
                    strcmp(argv[i], "-h") == 0)
                        return 1;
        return 0;
}

static int load_config(struct mls_config *cfg, unsigned scope, int argc,
                       char **argv)
{
        char errstr[1024];

        if (mls_config_load(cfg, scope, environ, argc, argv, errstr,
                            sizeof(errstr)) < 0) {
                fprintf(stderr, "mlstream: %s\n", errstr);
                return -1;
        }
        mls_log_set_level(cfg->log_level);
        mls_log_set_format(cfg->log_format);
        return 0;
}

static int cmd_engine(int argc, char **argv)
{
        struct mls_config cfg;
        struct mls_sink none = {0};
        mls_metrics_t *metrics;
        mls_engine_t *e;
        char errstr[1024];
        int status;

        if (has_help(argc, argv)) {
                printf("usage: mlstream engine [OPTIONS]\n\n"
                       "Consumes input messages from Kafka, scores them and "
                       "publishes predictions to\nRedis. SIGTERM/SIGINT "
                       "finish the batch in flight, commit and exit 0;\n"
                       "a second one exits at once. SIGHUP reloads "
                       "models.\n\noptions:\n");
                mls_config_print_help(stdout, MLS_SCOPE_ENGINE);
                return 0;
        }
        if (load_config(&cfg, MLS_SCOPE_ENGINE, argc, argv) < 0)
                return 2;
        mls_log_set_component("engine");
        mls_config_warn_unknown(&cfg);
        metrics = mls_metrics_new();
        e = mls_engine_new(&cfg, metrics, none, errstr, sizeof(errstr));
        if (!e) {
                mls_error("%s", errstr);
                mls_metrics_free(metrics);
                mls_config_free(&cfg);
                return 2;
        }
        running_engine = e;
        engine_deadline_ms = (unsigned)cfg.shutdown_timeout_ms + EXIT_GRACE_MS;
        mls_signals_install(on_signal);
        status = mls_engine_run(e);
        running_engine = NULL;
        mls_engine_free(e);
        mls_metrics_free(metrics);
        mls_config_free(&cfg);
        return status;
}

#ifdef MLS_HAVE_GATEWAY
static int cmd_gateway(int argc, char **argv)
{
        struct mls_config cfg;
        mls_metrics_t *metrics;
        mls_gateway_t *g;
        char errstr[1024];
        int status;

        if (has_help(argc, argv)) {
                printf("usage: mlstream gateway [OPTIONS]\n\n"
                       "Subscribes to the Redis prediction channel and serves "
                       "it over GraphQL on one\nlistener: subscriptions over "
                       "WebSocket (graphql-transport-ws and the legacy\n"
                       "graphql-ws) and queries over HTTP on /graphql, a "
                       "page on /, and /metrics,\n/healthz, /readyz. "
                       "SIGTERM/SIGINT close every connection and exit 0.\n"
                       "\noptions:\n");
                mls_config_print_help(stdout, MLS_SCOPE_GATEWAY);
                return 0;
        }
        if (load_config(&cfg, MLS_SCOPE_GATEWAY, argc, argv) < 0)
                return 2;
        mls_log_set_component("gateway");
        mls_config_warn_unknown(&cfg);
        metrics = mls_metrics_new();
        g = metrics ? mls_gateway_new(&cfg, metrics, 0, errstr, sizeof(errstr))
                    : NULL;
        if (!g) {
                mls_error("%s", metrics ? errstr : "out of memory");
                mls_metrics_free(metrics);
                mls_config_free(&cfg);
                return 2;
        }
        running_gateway = g;
        mls_signals_install(on_signal);
        status = mls_gateway_run(g);
        running_gateway = NULL;
        mls_gateway_free(g);
        mls_metrics_free(metrics);
        mls_config_free(&cfg);
        return status;
}
#endif

#ifdef MLS_HAVE_GATEWAY
/* Prints the schema that `mlstream gateway` serves, in GraphQL SDL: the
 * same builder the gateway uses, so the two cannot drift apart. */
static int cmd_schema(int argc, char **argv)
{
        mls_gql_schema_t *schema;
        char errstr[256];
        char *sdl;

        if (has_help(argc, argv)) {
                printf("usage: mlstream schema\n\n"
                       "Prints the GraphQL schema that the gateway serves "
                       "on /graphql, in SDL\n(schema.graphql in the "
                       "repository is this output).\n");
                return 0;
        }
        if (argc > 0) {
                fprintf(stderr, "mlstream: schema: takes no argument: %s\n",
                        argv[0]);
                return 2;
        }
        schema = mls_gql_schema_new(errstr, sizeof(errstr));
        sdl = schema ? mls_gql_schema_sdl(schema) : NULL;
        if (!sdl) {
                fprintf(stderr, "mlstream: schema: %s\n",
                        schema ? "out of memory" : errstr);
                mls_gql_schema_free(schema);
                return 1;
        }
        fputs(sdl, stdout);
        free(sdl);
        mls_gql_schema_free(schema);
        return 0;
}
#endif

static int cmd_config(int argc, char **argv)
{
        if (argc > 0 && strcmp(argv[0], "--markdown") == 0) {
                mls_config_print_markdown(stdout);
                return 0;
        }
        if (argc > 0 && strcmp(argv[0], "--man") == 0)
                return mls_cli_manpage(stdout);
        printf("options of all commands:\n");
        mls_config_print_help(stdout, MLS_SCOPE_ALL);
        return 0;
}

int main(int argc, char **argv)
{
        const char *cmd = argc > 1 ? argv[1] : NULL;

        if (!cmd || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
            strcmp(cmd, "help") == 0) {
                usage(cmd ? stdout : stderr);
                return cmd ? 0 : 2;
        }
        if (strcmp(cmd, "engine") == 0)
                return cmd_engine(argc - 2, argv + 2);
        if (strcmp(cmd, "up") == 0)
                return mls_up_main(argc - 2, argv + 2);
#ifdef MLS_HAVE_GATEWAY
        if (strcmp(cmd, "gateway") == 0)
                return cmd_gateway(argc - 2, argv + 2);
        if (strcmp(cmd, "schema") == 0)
                return cmd_schema(argc - 2, argv + 2);
#endif
        if (strcmp(cmd, "config") == 0)
                return cmd_config(argc - 2, argv + 2);
        if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
                return mls_cli_version(stdout);
        fprintf(stderr, "mlstream: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        return 2;
}
