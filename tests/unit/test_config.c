/* Configuration: defaults, precedence, validation, KAFKA_CONF_*. */
#include <stdlib.h>

#include "common/config.h"
#include "test.h"

MLS_TEST(config_seed_defaults)
{
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, NULL, 0, NULL, err,
                                     sizeof(err)),
                     0);
        CHECK_STR_EQ(c.kafka_bootstrap_servers, "localhost:9092");
        CHECK_STR_EQ(c.kafka_inference_topic, "ml.inference");
        CHECK_STR_EQ(c.kafka_consumer_group, "ml-streaming");
        CHECK_STR_EQ(c.redis_url, "redis://localhost:6379/0");
        CHECK_STR_EQ(c.redis_channel, "ml:stream:inference");
        CHECK_STR_EQ(c.model_framework, "torch");
        CHECK(c.model_path == NULL);
        CHECK_INT_EQ(c.prometheus_port, -1);
        CHECK_STR_EQ(c.gateway_host, "0.0.0.0");
        CHECK_INT_EQ(c.gateway_port, 4000);
        mls_config_free(&c);
}

MLS_TEST(config_env_then_flags)
{
        char *env[] = {"KAFKA_INFERENCE_TOPIC=from-env", "ML_BATCH_MAX_ROWS=32",
                       "UNRELATED=1", NULL};
        char *argv[] = {"--batch-max-rows=64", "--kafka-consumer-group", "g2"};
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, env, 3, argv, err,
                                     sizeof(err)),
                     0);
        CHECK_STR_EQ(c.kafka_inference_topic, "from-env");
        CHECK_INT_EQ(c.batch_max_rows, 64);
        CHECK_STR_EQ(c.kafka_consumer_group, "g2");
        mls_config_free(&c);
}

MLS_TEST(config_bad_values_name_the_variable)
{
        char *env1[] = {"ML_PROMETHEUS_PORT=99999", NULL};
        char *env2[] = {"ML_MODEL_FRAMEWORK=onnx", NULL};
        char *env3[] = {"ML_BATCH_MAX_ROWS=12abc", NULL};
        char *argv[] = {"--no-such-flag=1"};
        char *argv2[] = {"--batch-max-rows"};
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, env1, 0, NULL, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "ML_PROMETHEUS_PORT");
        CHECK_CONTAINS(err, "99999");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, env2, 0, NULL, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "ML_MODEL_FRAMEWORK");
        CHECK_CONTAINS(err, "torch|tensorflow|identity");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, env3, 0, NULL, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "ML_BATCH_MAX_ROWS");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, NULL, 1, argv, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "--no-such-flag");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ALL, NULL, 1, argv2, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "needs a value");
}

MLS_TEST(config_flag_out_of_scope_is_unknown)
{
        char *argv[] = {"--gateway-port=5000"};
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, NULL, 1, argv, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "unknown option");
}

MLS_TEST(config_misspelt_variables_are_kept_to_be_reported)
{
        char *env[] = {"ML_BATCH_MAX_ROW=1",         /* a letter short */
                       "GATEWAY_PROT=4001",          /* two swapped */
                       "ML_NOTHING_LIKE_IT=1",       /* ours, no match */
                       "REDIS_ULR=redis://x:1",      /* a near miss */
                       "KAFKA_BOOTSTRAP_SERVER=x:1", /* a near miss */
                       "REDIS_HOST=elsewhere",       /* REDIS_URL elsewhere */
                       "KAFKA_HEAP_OPTS=-Xmx1G",     /* another program's */
                       "KAFKA_CONF_ACKS=all",        /* pass-through */
                       "GATEWAY_PORT=4000",          /* the gateway's */
                       "MLSTREAM_SERVICES_DIR=/tmp", /* scripts' own */
                       "ML_=1",
                       "UNRELATED=1",
                       NULL}; /* no name after */
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, env, 0, NULL, err,
                                     sizeof(err)),
                     0);
        CHECK_INT_EQ(c.unknown_env_count, 6);
        CHECK_STR_EQ(c.unknown_env[0], "ML_BATCH_MAX_ROW");
        CHECK_STR_EQ(c.unknown_env[1], "GATEWAY_PROT");
        CHECK_STR_EQ(c.unknown_env[2], "ML_NOTHING_LIKE_IT");
        CHECK_STR_EQ(c.unknown_env[3], "REDIS_ULR");
        CHECK_STR_EQ(c.unknown_env[4], "KAFKA_BOOTSTRAP_SERVER");
        /* reported only while REDIS_URL is unset (as it is here) */
        CHECK_STR_EQ(c.unknown_env[5], "REDIS_HOST");
        /* ignored: the defaults stand */
        CHECK_INT_EQ(c.batch_max_rows, 256);
        CHECK_STR_EQ(c.redis_url, "redis://localhost:6379/0");
        mls_config_free(&c);
}

MLS_TEST(config_unknown_flag_names_the_closest_in_scope)
{
        char *typo[] = {"--batch-max-row=1"};
        char *swap[] = {"--batch-max-rosw", "1"};
        char *far[] = {"--batch=1"};
        char *other[] = {"--gateway-prot=1"}; /* near a gateway flag */
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, NULL, 1, typo, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "\"--batch-max-row\" (did you mean "
                            "--batch-max-rows?)");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, NULL, 2, swap, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "did you mean --batch-max-rows?");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, NULL, 1, far, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "\"--batch\" (see --help)");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, NULL, 1, other, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "(see --help)");
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_GATEWAY, NULL, 1, other, err,
                                     sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "did you mean --gateway-port?");
}

MLS_TEST(config_kafka_conf_passthrough)
{
        char *env[] = {"KAFKA_CONF_FETCH_WAIT_MAX_MS=1",
                       "KAFKA_CONF_SASL_MECHANISM=PLAIN",
                       "KAFKA_CONF_SOME__ODD___NAME=x=y", NULL};
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, env, 0, NULL, err,
                                     sizeof(err)),
                     0);
        CHECK_INT_EQ(c.kafka_conf_count, 3);
        CHECK_STR_EQ(c.kafka_conf[0], "fetch.wait.max.ms=1");
        CHECK_STR_EQ(c.kafka_conf[1], "sasl.mechanism=PLAIN");
        CHECK_STR_EQ(c.kafka_conf[2], "some_odd-name=x=y");
        mls_config_free(&c);
}

/* The config records where each value came from, so a command can tell
 * "left at its default" from "set to the default's value". */
MLS_TEST(config_records_the_origin_of_each_value)
{
        char *env[] = {"REDIS_URL=redis://localhost:6379/0", NULL};
        char *argv[] = {"--kafka-consumer-group=g"};
        struct mls_config c;
        char err[256];

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_ENGINE, env, 1, argv, err,
                                     sizeof(err)),
                     0);
        CHECK_INT_EQ(mls_config_origin(&c, "REDIS_URL"), MLS_CONF_FROM_ENV);
        CHECK_INT_EQ(mls_config_origin(&c, "KAFKA_CONSUMER_GROUP"),
                     MLS_CONF_FROM_FLAG);
        CHECK_INT_EQ(mls_config_origin(&c, "KAFKA_BOOTSTRAP_SERVERS"),
                     MLS_CONF_DEFAULT);
        mls_config_free(&c);
}

/* `mlstream up` has defaults of its own, used and shown in its --help. */
MLS_TEST(config_up_has_its_own_defaults)
{
        struct mls_config c;
        char err[256], *help = NULL;
        size_t len = 0;
        FILE *f;

        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_UP, NULL, 0, NULL, err,
                                     sizeof(err)),
                     0);
        CHECK_STR_EQ(c.gateway_host, "127.0.0.1");
        CHECK_INT_EQ(mls_config_origin(&c, "GATEWAY_HOST"), MLS_CONF_DEFAULT);
        mls_config_free(&c);
        CHECK_INT_EQ(mls_config_load(&c, MLS_SCOPE_GATEWAY, NULL, 0, NULL, err,
                                     sizeof(err)),
                     0);
        CHECK_STR_EQ(c.gateway_host, "0.0.0.0");
        mls_config_free(&c);

        f = open_memstream(&help, &len);
        mls_config_print_help(f, MLS_SCOPE_UP);
        fclose(f);
        CHECK_CONTAINS(help, "\nKafka:\n");
        CHECK_CONTAINS(help, "\nGateway access:\n");
        CHECK_CONTAINS(help, "env KAFKA_BOOTSTRAP_SERVERS, default the "
                             "embedded broker\n");
        CHECK_CONTAINS(help, "env REDIS_URL, default the in-process bus\n");
        CHECK_CONTAINS(help, "env GATEWAY_HOST, default 127.0.0.1\n");
        CHECK(strstr(help, "localhost:9092") == NULL);
        free(help);
}
