/* librdkafka configuration assembly: defaults, KAFKA_CONF_* and the
 * properties file, each client type getting only what it understands; the
 * seek timeout handed to each librdkafka version. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/kafka.h"
#include "test.h"

static void get(rd_kafka_conf_t *c, const char *name, char *out, size_t cap)
{
        size_t n = cap;

        if (rd_kafka_conf_get(c, name, out, &n) != RD_KAFKA_CONF_OK)
                snprintf(out, cap, "(unknown)");
}

/* mls_kafka_conf() for a client of type, with KAFKA_CONFIG_FILE naming a
 * file that holds text: the file's name in path (removed on return), the
 * error in err. */
static rd_kafka_conf_t *conf_from_file(const char *text, rd_kafka_type_t type,
                                       char path[32], char *err,
                                       size_t err_size)
{
        char *env[2], envbuf[64];
        struct mls_config cfg;
        rd_kafka_conf_t *c = NULL;
        FILE *f;
        int fd;

        snprintf(path, 32, "/tmp/mls-kafka-conf-XXXXXX");
        fd = mkstemp(path);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
                snprintf(err, err_size, "cannot make a file");
                return NULL;
        }
        fputs(text, f);
        fclose(f);
        snprintf(envbuf, sizeof(envbuf), "KAFKA_CONFIG_FILE=%s", path);
        env[0] = envbuf;
        env[1] = NULL;
        if (mls_config_load(&cfg, MLS_SCOPE_ENGINE, env, 0, NULL, err,
                            err_size) == 0) {
                c = mls_kafka_conf(&cfg, type, NULL, err, err_size);
                mls_config_free(&cfg);
        }
        unlink(path);
        return c;
}

MLS_TEST(kafka_conf_per_client_type)
{
        char *env[] = {"KAFKA_CONF_FETCH_WAIT_MAX_MS=3",
                       "KAFKA_CONF_LINGER_MS=7", "KAFKA_CONF_CLIENT_ID=shared",
                       NULL};
        const char *defaults[] = {"client.id", "default-id", NULL};
        struct mls_config cfg;
        rd_kafka_conf_t *p, *c;
        char err[256], v[64];

        CHECK_INT_EQ(mls_config_load(&cfg, MLS_SCOPE_ENGINE, env, 0, NULL, err,
                                     sizeof(err)),
                     0);
        p = mls_kafka_conf(&cfg, RD_KAFKA_PRODUCER, defaults, err, sizeof(err));
        c = mls_kafka_conf(&cfg, RD_KAFKA_CONSUMER, defaults, err, sizeof(err));
        CHECK(p && c);
        get(p, "linger.ms", v, sizeof(v));
        CHECK_STR_EQ(v, "7");
        get(p, "fetch.wait.max.ms", v, sizeof(v));
        CHECK(strcmp(v, "3") != 0); /* consumer-only: not given */
        get(c, "fetch.wait.max.ms", v, sizeof(v));
        CHECK_STR_EQ(v, "3");
        get(c, "client.id", v, sizeof(v));
        CHECK_STR_EQ(v, "shared"); /* KAFKA_CONF_* beat our defaults */
        get(c, "bootstrap.servers", v, sizeof(v));
        CHECK_STR_EQ(v, "localhost:9092");
        rd_kafka_conf_destroy(p);
        rd_kafka_conf_destroy(c);
        mls_config_free(&cfg);
}

MLS_TEST(kafka_conf_file_errors_name_the_line)
{
        char path[32], err[512];
        rd_kafka_conf_t *c = conf_from_file(
                "# SASL settings\nsecurity.protocol = plaintext\n\n"
                "no.such.property=1\n",
                RD_KAFKA_CONSUMER, path, err, sizeof(err));

        CHECK(c == NULL);
        CHECK_CONTAINS(err, path);
        CHECK_CONTAINS(err, ":4:");
        CHECK_CONTAINS(err, "no.such.property");
}

/* A line longer than the reader's buffer is refused, not cut in two: the
 * rest would be read as a line of its own. One just short of it, and a
 * last line without a line feed, are read whole. */
MLS_TEST(kafka_conf_file_long_lines)
{
        static const struct {
                size_t value_len;
                int newline, ok;
        } cases[] = {
                {4094 - (sizeof("client.id=") - 1), 1, 1},
                {4094 - (sizeof("client.id=") - 1) + 1, 1, 0},
                {4094 - (sizeof("client.id=") - 1), 0, 1},
                {10000, 1, 0},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char text[10100], path[32], err[512], v[8192];
                size_t n = (size_t)snprintf(text, sizeof(text), "client.id=");
                rd_kafka_conf_t *c;

                memset(text + n, 'x', cases[i].value_len);
                n += cases[i].value_len;
                if (cases[i].newline)
                        text[n++] = '\n';
                text[n] = '\0';
                c = conf_from_file(text, RD_KAFKA_CONSUMER, path, err,
                                   sizeof(err));
                if (!cases[i].ok) {
                        CHECK(c == NULL);
                        CHECK_CONTAINS(err, ":1: line longer than 4094 bytes");
                        continue;
                }
                CHECK(c != NULL);
                if (!c)
                        continue;
                get(c, "client.id", v, sizeof(v));
                CHECK_INT_EQ(strlen(v), cases[i].value_len);
                rd_kafka_conf_destroy(c);
        }
}

/* librdkafka before 2.1.0 waited for a seek's reply timeout_ms
 * microseconds (#4230): the engine's 10 s rewind after an aborted
 * transaction gave up after 10 ms on a loaded machine, and stopped. */
MLS_TEST(kafka_seek_timeout_in_the_unit_librdkafka_reads)
{
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020002ff, 10000), 10000000);
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020100ff, 10000), 10000);
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020300ff, 10000), 10000);
        /* 0: do not wait; -1: wait for ever, whatever the version */
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020002ff, 0), 0);
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020002ff, -1), -1);
        CHECK_INT_EQ(mls_kafka_seek_timeout(0x020002ff, 3000000), INT_MAX);
}

/* The properties the engine sets itself may be given in KAFKA_CONF_* or
 * the file only with the engine's value: another would be replaced without
 * a word, or break a guarantee. */
MLS_TEST(kafka_conf_engine_properties)
{
        static const struct {
                const char *env[3];
                rd_kafka_type_t type;
                const char *error; /* NULL: accepted */
        } cases[] = {
                {{"KAFKA_CONF_GROUP_ID=other"},
                 RD_KAFKA_CONSUMER,
                 "KAFKA_CONF_* (group.id): group.id=other, but mlstream sets "
                 "group.id from KAFKA_CONSUMER_GROUP (now \"ml-streaming\"): "
                 "set KAFKA_CONSUMER_GROUP instead"},
                {{"KAFKA_CONF_GROUP_ID=other"}, RD_KAFKA_PRODUCER, NULL},
                {{"KAFKA_CONF_GROUP_ID=mine", "KAFKA_CONSUMER_GROUP=mine"},
                 RD_KAFKA_CONSUMER,
                 NULL},
                {{"KAFKA_CONF_METADATA_BROKER_LIST=b:9092"},
                 RD_KAFKA_PRODUCER,
                 "metadata.broker.list=b:9092, but mlstream sets "
                 "bootstrap.servers from KAFKA_BOOTSTRAP_SERVERS (now "
                 "\"localhost:9092\")"},
                {{"KAFKA_CONF_BOOTSTRAP_SERVERS=localhost:9092"},
                 RD_KAFKA_CONSUMER,
                 NULL},
                {{"KAFKA_CONF_ENABLE_AUTO_OFFSET_STORE=true"},
                 RD_KAFKA_CONSUMER,
                 "enable.auto.offset.store=true, but mlstream keeps it "
                 "false: the engine stores each offset once its message is "
                 "delivered"},
                {{"KAFKA_CONF_ENABLE_AUTO_OFFSET_STORE=False"},
                 RD_KAFKA_CONSUMER,
                 NULL},
                {{"KAFKA_CONF_TRANSACTIONAL_ID=t1"},
                 RD_KAFKA_PRODUCER,
                 "KAFKA_CONF_* (transactional.id): transactional.id may not "
                 "be set: it is for ML_EXACTLY_ONCE=true"},
                {{"KAFKA_CONF_TRANSACTIONAL_ID=t1", "ML_EXACTLY_ONCE=true"},
                 RD_KAFKA_PRODUCER,
                 NULL},
                {{"KAFKA_CONF_ISOLATION_LEVEL=read_uncommitted",
                  "ML_EXACTLY_ONCE=true"},
                 RD_KAFKA_CONSUMER,
                 "isolation.level=read_uncommitted, but mlstream keeps it "
                 "read_committed"},
                {{"KAFKA_CONF_ISOLATION_LEVEL=read_uncommitted"},
                 RD_KAFKA_CONSUMER,
                 NULL},
                {{"KAFKA_CONF_ENABLE_AUTO_COMMIT=true", "ML_EXACTLY_ONCE=true"},
                 RD_KAFKA_CONSUMER,
                 "with ML_EXACTLY_ONCE=true the transactions commit the "
                 "offsets"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct mls_config cfg;
                rd_kafka_conf_t *c;
                char err[512], v[64];

                CHECK_INT_EQ(mls_config_load(&cfg, MLS_SCOPE_ENGINE,
                                             (char **)cases[i].env, 0, NULL,
                                             err, sizeof(err)),
                             0);
                err[0] = '\0';
                c = mls_kafka_conf(&cfg, cases[i].type, NULL, err, sizeof(err));
                if (cases[i].error) {
                        CHECK(c == NULL);
                        CHECK_CONTAINS(err, cases[i].error);
                } else if (!c) {
                        CHECK_STR_EQ(err, "(accepted)");
                }
                if (c && cases[i].type == RD_KAFKA_CONSUMER) {
                        get(c, "group.id", v, sizeof(v));
                        CHECK_STR_EQ(v, cfg.kafka_consumer_group);
                        get(c, "enable.auto.offset.store", v, sizeof(v));
                        CHECK_STR_EQ(v, "false");
                }
                if (c && strcmp(cfg.exactly_once, "true") == 0 &&
                    cases[i].type == RD_KAFKA_PRODUCER) {
                        get(c, "transactional.id", v, sizeof(v));
                        CHECK_STR_EQ(v, "t1");
                }
                if (c)
                        rd_kafka_conf_destroy(c);
                mls_config_free(&cfg);
        }
}

/* The same from the properties file, with its line: a client.properties
 * that names the brokers is refused, not silently replaced by
 * KAFKA_BOOTSTRAP_SERVERS. */
MLS_TEST(kafka_conf_file_engine_properties)
{
        char path[32], err[512];
        rd_kafka_conf_t *c =
                conf_from_file("security.protocol=plaintext\n"
                               "bootstrap.servers=pkc-1.example.com:9092\n",
                               RD_KAFKA_PRODUCER, path, err, sizeof(err));

        CHECK(c == NULL);
        CHECK_CONTAINS(err, path);
        CHECK_CONTAINS(err, ":2: bootstrap.servers=pkc-1.example.com:9092, "
                            "but mlstream sets bootstrap.servers from "
                            "KAFKA_BOOTSTRAP_SERVERS");
}
