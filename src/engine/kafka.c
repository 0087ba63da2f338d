#include "engine/kafka.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/pipeline.h"

static int set(rd_kafka_conf_t *conf, const char *name, const char *value,
               const char *origin, char *errstr, size_t errstr_size)
{
        char err[256];

        if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "%s: %s", origin, err);
                return -1;
        }
        return 0;
}

static int load_file(rd_kafka_conf_t *conf, const char *path, char *errstr,
                     size_t errstr_size)
{
        FILE *f = fopen(path, "r");
        char line[4096], origin[512];
        int lineno = 0;

        if (!f) {
                snprintf(errstr, errstr_size, "KAFKA_CONFIG_FILE %s: %s", path,
                         strerror(errno));
                return -1;
        }
        while (fgets(line, sizeof(line), f)) {
                char *p = line, *eq, *end;
                lineno++;
                while (*p == ' ' || *p == '\t')
                        p++;
                end = p + strlen(p);
                while (end > p && (end[-1] == '\n' || end[-1] == '\r' ||
                                   end[-1] == ' ' || end[-1] == '\t'))
                        *--end = '\0';
                if (!*p || *p == '#')
                        continue;
                eq = strchr(p, '=');
                snprintf(origin, sizeof(origin), "KAFKA_CONFIG_FILE %s:%d",
                         path, lineno);
                if (!eq) {
                        snprintf(errstr, errstr_size, "%s: expected name=value",
                                 origin);
                        fclose(f);
                        return -1;
                }
                *eq = '\0';
                for (char *t = eq - 1; t >= p && (*t == ' ' || *t == '\t'); t--)
                        *t = '\0';
                if (set(conf, p, eq + 1 + strspn(eq + 1, " \t"), origin, errstr,
                        errstr_size) < 0) {
                        fclose(f);
                        return -1;
                }
        }
        fclose(f);
        return 0;
}

/* Name prefixes of properties for one client type only (librdkafka's
 * CONFIGURATION.md marks them C or P). */
static const char *const consumer_only[] = {"fetch.",
                                            "group.",
                                            "session.timeout.ms",
                                            "heartbeat.",
                                            "auto.offset.",
                                            "enable.auto.",
                                            "auto.commit.",
                                            "queued.",
                                            "max.poll.interval.ms",
                                            "partition.assignment.strategy",
                                            "isolation.level",
                                            "check.crcs",
                                            "enable.partition.eof",
                                            "consume.callback.max.messages",
                                            NULL};
static const char *const producer_only[] = {"acks",
                                            "request.required.acks",
                                            "linger.ms",
                                            "queue.buffering.",
                                            "batch.",
                                            "enable.idempotence",
                                            "message.timeout.ms",
                                            "delivery.timeout.ms",
                                            "compression.",
                                            "transactional.id",
                                            "transaction.timeout.ms",
                                            "sticky.partitioning",
                                            "partitioner",
                                            NULL};

static int for_other_type(const char *name, rd_kafka_type_t type)
{
        const char *const *list =
                type == RD_KAFKA_PRODUCER ? consumer_only : producer_only;

        for (; *list; list++)
                if (strncmp(name, *list, strlen(*list)) == 0)
                        return 1;
        return 0;
}

rd_kafka_conf_t *mls_kafka_conf(const struct mls_config *cfg,
                                rd_kafka_type_t type,
                                const char *const *defaults, char *errstr,
                                size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char origin[300];

        for (const char *const *d = defaults; d && d[0]; d += 2)
                if (set(conf, d[0], d[1], "default", errstr, errstr_size) < 0)
                        goto fail;
        if (cfg->kafka_config_file &&
            load_file(conf, cfg->kafka_config_file, errstr, errstr_size) < 0)
                goto fail;
        for (size_t i = 0; i < cfg->kafka_conf_count; i++) {
                char *kv = strdup(cfg->kafka_conf[i]), *eq;
                int rc;
                if (!kv)
                        goto fail;
                eq = strchr(kv, '=');
                *eq = '\0';
                if (for_other_type(kv, type)) {
                        free(kv);
                        continue;
                }
                snprintf(origin, sizeof(origin), "KAFKA_CONF_* (%s)", kv);
                rc = set(conf, kv, eq + 1, origin, errstr, errstr_size);
                free(kv);
                if (rc < 0)
                        goto fail;
        }
        if (set(conf, "bootstrap.servers", cfg->kafka_bootstrap_servers,
                "KAFKA_BOOTSTRAP_SERVERS", errstr, errstr_size) < 0)
                goto fail;
        return conf;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

struct kafka_sink {
        rd_kafka_t *rk;
        char *topic;
        int failed;
        char failure[256];
};

/* Runs on the thread that calls rd_kafka_poll/flush: the engine thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
        struct kafka_sink *s = m->_private;

        (void)rk;
        (void)opaque;
        if (m->err && s) {
                s->failed++;
                snprintf(s->failure, sizeof(s->failure), "%s: %s", s->topic,
                         rd_kafka_err2str(m->err));
        }
}

rd_kafka_t *mls_kafka_producer_new(const struct mls_config *cfg, char *errstr,
                                   size_t errstr_size)
{
        static const char *const defaults[] = {"acks",
                                               "all",
                                               "linger.ms",
                                               "5",
                                               "enable.idempotence",
                                               "true",
                                               "message.timeout.ms",
                                               "30000",
                                               NULL};
        rd_kafka_conf_t *conf = mls_kafka_conf(cfg, RD_KAFKA_PRODUCER, defaults,
                                               errstr, errstr_size);
        rd_kafka_t *rk;
        char err[512];

        if (!conf)
                return NULL;
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "kafka producer: %s", err);
                rd_kafka_conf_destroy(conf);
        }
        return rk;
}

void *mls_kafka_sink_new(rd_kafka_t *rk, const char *topic)
{
        struct kafka_sink *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->rk = rk;
        s->topic = strdup(topic);
        return s;
}

void mls_kafka_sink_free(void *ctx)
{
        struct kafka_sink *s = ctx;

        if (!s)
                return;
        free(s->topic);
        free(s);
}

static int kafka_send(void *ctx, const struct mls_record *rec,
                      const char *payload, size_t len, const char *reason,
                      const char *detail)
{
        struct kafka_sink *s = ctx;
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;
        char num[32];

        if (reason) {
                hdrs = rd_kafka_headers_new(6);
                rd_kafka_header_add(hdrs, "mls.error.reason", -1, reason, -1);
                rd_kafka_header_add(hdrs, "mls.error.message", -1, detail, -1);
                if (rec && rec->topic)
                        rd_kafka_header_add(hdrs, "mls.source.topic", -1,
                                            rec->topic, -1);
                if (rec) {
                        snprintf(num, sizeof(num), "%d", (int)rec->partition);
                        rd_kafka_header_add(hdrs, "mls.source.partition", -1,
                                            num, -1);
                        snprintf(num, sizeof(num), "%lld",
                                 (long long)rec->offset);
                        rd_kafka_header_add(hdrs, "mls.source.offset", -1, num,
                                            -1);
                }
        }
        for (;;) {
                err = rd_kafka_producev(
                        s->rk, RD_KAFKA_V_TOPIC(s->topic),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_VALUE((void *)payload, len),
                        RD_KAFKA_V_KEY(rec ? rec->key : NULL,
                                       rec ? rec->key_len : 0),
                        RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_HEADERS(hdrs),
                        RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                rd_kafka_poll(s->rk, 100);
        }
        if (err) {
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                s->failed++;
                snprintf(s->failure, sizeof(s->failure), "%s: %s", s->topic,
                         rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

static int kafka_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct kafka_sink *s = ctx;

        if (rd_kafka_flush(s->rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                snprintf(errstr, errstr_size,
                         "%s: delivery timed out with %d messages queued",
                         s->topic, rd_kafka_outq_len(s->rk));
                s->failed = 0;
                return -1;
        }
        if (s->failed) {
                snprintf(errstr, errstr_size, "%d deliveries failed, last %s",
                         s->failed, s->failure);
                s->failed = 0;
                return -1;
        }
        return 0;
}

const struct mls_sink_ops mls_kafka_sink_ops = {
        .name = "kafka",
        .send = kafka_send,
        .flush = kafka_flush,
};
