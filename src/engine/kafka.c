#include "engine/kafka.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/pipeline.h"
#include "engine/txn.h"

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

/*
 * Properties the engine sets itself, after KAFKA_CONFIG_FILE and
 * KAFKA_CONF_*. Given there with another value they would be replaced
 * without a word (the brokers, the group), or break a guarantee (offsets
 * stored before delivery; a producer made transactional that never begins
 * a transaction, so that the first dead letter stalls the engine): that is
 * a start-up error saying what to set instead.
 */
struct owned {
        const char *name;
        const char *alias;   /* librdkafka's other name for it, or NULL */
        const char *value;   /* NULL: the user may not set it at all */
        const char *setting; /* the mlstream setting it comes from, or NULL */
        const char *why;     /* otherwise: why the engine keeps it */
};

#define MAX_OWNED 5

static size_t owned_by_engine(const struct mls_config *cfg,
                              rd_kafka_type_t type, struct owned *o)
{
        size_t n = 0;

        o[n++] = (struct owned){"bootstrap.servers", "metadata.broker.list",
                                cfg->kafka_bootstrap_servers,
                                "KAFKA_BOOTSTRAP_SERVERS", NULL};
        if (type == RD_KAFKA_CONSUMER) {
                o[n++] = (struct owned){"group.id", NULL,
                                        cfg->kafka_consumer_group,
                                        "KAFKA_CONSUMER_GROUP", NULL};
                o[n++] = (struct owned){
                        "enable.auto.offset.store", NULL, "false", NULL,
                        "the engine stores each offset once its message "
                        "is delivered"};
                /* exactly once: read_committed also makes the offsets a
                 * transaction still holds wait for its outcome when
                 * partitions are assigned */
                if (mls_config_exactly_once(cfg)) {
                        o[n++] = (struct owned){
                                "enable.auto.commit", NULL, "false", NULL,
                                "with ML_EXACTLY_ONCE=true the transactions "
                                "commit the offsets"};
                        o[n++] = (struct owned){
                                "isolation.level", NULL, "read_committed", NULL,
                                "with ML_EXACTLY_ONCE=true the engine reads "
                                "committed transactions only"};
                }
        } else if (!mls_config_exactly_once(cfg)) {
                o[n++] = (struct owned){
                        "transactional.id", NULL, NULL, NULL,
                        "it is for ML_EXACTLY_ONCE=true; without that the "
                        "engine never begins a transaction, and a "
                        "transactional producer would send nothing"};
        }
        return n;
}

/* set() for a property the user gave (origin names where), refusing one
 * of the n in owned with a value other than the engine's. */
static int set_user(rd_kafka_conf_t *conf, const struct owned *owned, size_t n,
                    const char *name, const char *value, const char *origin,
                    char *errstr, size_t errstr_size)
{
        if (set(conf, name, value, origin, errstr, errstr_size) < 0)
                return -1;
        for (const struct owned *o = owned; o < owned + n; o++) {
                char now[512];
                size_t len = sizeof(now);
                if (strcmp(name, o->name) != 0 &&
                    !(o->alias && strcmp(name, o->alias) == 0))
                        continue;
                /* librdkafka's own spelling of it: "False" is false */
                if (o->value &&
                    rd_kafka_conf_get(conf, o->name, now, &len) ==
                            RD_KAFKA_CONF_OK &&
                    strcmp(now, o->value) == 0)
                        return 0;
                if (!o->value)
                        snprintf(errstr, errstr_size,
                                 "%s: %s may not be set: %s", origin, name,
                                 o->why);
                else if (o->setting)
                        snprintf(errstr, errstr_size,
                                 "%s: %s=%s, but mlstream sets %s from %s "
                                 "(now \"%s\"): set %s instead, and leave "
                                 "%s out",
                                 origin, name, value, o->name, o->setting,
                                 o->value, o->setting, name);
                else
                        snprintf(errstr, errstr_size,
                                 "%s: %s=%s, but mlstream keeps it %s: %s",
                                 origin, name, value, o->value, o->why);
                return -1;
        }
        return 0;
}

static int load_file(rd_kafka_conf_t *conf, const char *path,
                     const struct owned *owned, size_t nowned, char *errstr,
                     size_t errstr_size)
{
        static atomic_int checked;
        FILE *f = fopen(path, "r");
        char line[4096], origin[512];
        int lineno = 0;

        if (!f) {
                snprintf(errstr, errstr_size, "KAFKA_CONFIG_FILE %s: %s", path,
                         strerror(errno));
                return -1;
        }
        /* it usually holds a password; each Kafka client loads it, the
         * first one checks */
        if (!atomic_exchange(&checked, 1))
                mls_warn_if_readable_by_all(fileno(f), "KAFKA_CONFIG_FILE",
                                            path);
        while (fgets(line, sizeof(line), f)) {
                char *p = line, *eq, *end;
                lineno++;
                /* a line fgets had to cut: its rest would be read as a
                 * line of its own, or a value silently shortened */
                if (!strchr(line, '\n') && !feof(f)) {
                        snprintf(errstr, errstr_size,
                                 "KAFKA_CONFIG_FILE %s:%d: line longer than "
                                 "%zu bytes",
                                 path, lineno, sizeof(line) - 2);
                        fclose(f);
                        return -1;
                }
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
                if (set_user(conf, owned, nowned, p,
                             eq + 1 + strspn(eq + 1, " \t"), origin, errstr,
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

/* librdkafka's own log lines (from its threads): through our logger, in
 * its format, with one rate limit per level shared under a lock, since a
 * broker that is down makes librdkafka repeat itself. */
static void on_kafka_log(const rd_kafka_t *rk, int syslog_level,
                         const char *fac, const char *buf)
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static struct mls_log_limit limits[4];
        enum mls_log_level level = syslog_level <= 3   ? MLS_LOG_ERROR
                                   : syslog_level == 4 ? MLS_LOG_WARN
                                   : syslog_level <= 6 ? MLS_LOG_INFO
                                                       : MLS_LOG_DEBUG;

        pthread_mutex_lock(&lock);
        mls_log_limited(&limits[level], level, "kafka %s: %s: %s",
                        rk ? rd_kafka_name(rk) : "-", fac, buf);
        pthread_mutex_unlock(&lock);
}

void mls_kafka_conf_log(rd_kafka_conf_t *conf)
{
        rd_kafka_conf_set_log_cb(conf, on_kafka_log);
}

/*
 * librdkafka before 2.3.1 (#4684) rounds its main thread's sleep down to
 * whole milliseconds, then polls without sleeping until the timer it slept
 * for is due: up to a millisecond of spinning for each of its timers (once
 * a second, the max.poll.interval check twice a second, statistics), 1.1
 * ms of CPU a second in an idle engine, 0.6 µs per message at 1,000 msg/s
 * (bench/AB-timer-slack*.md). Threads inherit the timer slack of the thread
 * that makes them, and with a millisecond of slack the kernel may end such a
 * sleep up to a millisecond late, at or after the timer, which it then
 * does on an idle core. A consumer's threads wake for messages on sockets
 * and queues, never on timers, so no message waits longer; only retries
 * and back-offs may start a millisecond late. Producers are left alone:
 * their linger is a timed wait.
 */
#define CONSUMER_SLACK_NS 1000000UL

rd_kafka_t *mls_kafka_consumer_new(rd_kafka_conf_t *conf, char *errstr,
                                   size_t errstr_size)
{
        int old = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
        rd_kafka_t *rk;

        prctl(PR_SET_TIMERSLACK, CONSUMER_SLACK_NS, 0, 0, 0);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
        if (old > 0) /* the engine thread's own waits keep their precision */
                prctl(PR_SET_TIMERSLACK, (unsigned long)old, 0, 0, 0);
        return rk;
}

/* The first release whose seek timeout is in milliseconds. */
#define SEEK_TIMEOUT_FIXED 0x02010000

int mls_kafka_seek_timeout(int version, int timeout_ms)
{
        if (version >= SEEK_TIMEOUT_FIXED || timeout_ms <= 0)
                return timeout_ms;
        /* it waits (timeout_ms * 1000) ms in all, but timeout_ms for
         * each reply: each partition's seek gets the time asked for */
        return timeout_ms > INT_MAX / 1000 ? INT_MAX : timeout_ms * 1000;
}

rd_kafka_error_t *mls_kafka_seek(rd_kafka_t *rk,
                                 rd_kafka_topic_partition_list_t *parts,
                                 int timeout_ms)
{
        return rd_kafka_seek_partitions(
                rk, parts,
                mls_kafka_seek_timeout(rd_kafka_version(), timeout_ms));
}

rd_kafka_conf_t *mls_kafka_conf(const struct mls_config *cfg,
                                rd_kafka_type_t type,
                                const char *const *defaults, char *errstr,
                                size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        struct owned owned[MAX_OWNED];
        size_t nowned = owned_by_engine(cfg, type, owned);
        char origin[300];

        mls_kafka_conf_log(conf);

        for (const char *const *d = defaults; d && d[0]; d += 2)
                if (set(conf, d[0], d[1], "default", errstr, errstr_size) < 0)
                        goto fail;
        if (cfg->kafka_config_file &&
            load_file(conf, cfg->kafka_config_file, owned, nowned, errstr,
                      errstr_size) < 0)
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
                rc = set_user(conf, owned, nowned, kv, eq + 1, origin, errstr,
                              errstr_size);
                free(kv);
                if (rc < 0)
                        goto fail;
        }
        for (const struct owned *o = owned; o < owned + nowned; o++)
                if (o->value && set(conf, o->name, o->value,
                                    o->setting ? o->setting : o->name, errstr,
                                    errstr_size) < 0)
                        goto fail;
        return conf;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/*
 * A producer sink. Errors in delivery reports come in two kinds:
 *  - transient (broker down, timed out, not leader...): the flush fails and
 *    the engine retries the whole batch later;
 *  - permanent (too large for the topic, invalid record): retrying the same
 *    way can never succeed. The broker judges a whole record batch, so an
 *    innocent message that travelled with a large one is refused too: each
 *    refused message is first sent again alone, over a second producer
 *    that puts one message in each batch (stage 1). Refused alone, it is
 *    replaced by a dead letter holding its first dead_letter_max bytes and
 *    headers that say what happened (refuse(), stage 2); if that is refused
 *    too, it is counted, logged and skipped. A poison message never stalls
 *    a partition.
 * On a transactional producer (ML_EXACTLY_ONCE, txn set) there is no
 * second producer: a message must be in the transaction or nowhere. A
 * message larger than its topic's max.message.bytes (read at start-up) is
 * replaced by its truncated dead letter before it is produced; one the
 * broker refuses all the same fails the transaction, and the stage its
 * next attempt takes is remembered in txn (engine/txn.h) until the engine
 * has aborted and consumed it again.
 */
enum stage {
        STAGE_BATCHED,
        STAGE_ALONE,
        STAGE_TRUNCATED,
};

struct kafka_sink {
        struct mls_kafka_producers *p;
        mls_txn_t *txn; /* transactional p->rk[0], and no p->rk[1] */
        size_t max_bytes, fallback_max_bytes; /* 0: not known */
        unsigned epoch; /* of txn, when failed was last reset */
        char *topic;
        char *fallback; /* where replacements go: the dead-letter topic */
        size_t dead_letter_max;
        const atomic_int *stop; /* the engine's stop request, or NULL */
        int64_t *stop_by;       /* the engine's drain deadline (0: unset) */
        int64_t drain_ns;       /* how long a flush may go on after it */
        int failed;
        char failure[256];
        mls_series_t *s_truncated, *s_dropped;
        struct mls_log_limit log_truncated, log_dropped, log_refused;
};

/* What a delivery report needs to know about its message: the sink and
 * the input it came from. One per produced message, freed in on_delivery. */
struct dr_note {
        struct kafka_sink *sink;
        enum stage stage;
        unsigned epoch; /* mls_txn_epoch() when it was produced */
        int32_t partition;
        int64_t offset;
        char topic[];
};

static int is_permanent(rd_kafka_resp_err_t err)
{
        switch (err) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
                return 1;
        default:
                return 0;
        }
}

static struct dr_note *note_new(struct kafka_sink *s, const char *topic,
                                int32_t partition, int64_t offset,
                                enum stage stage)
{
        size_t tlen = topic ? strlen(topic) : 0;
        struct dr_note *n = malloc(sizeof(*n) + tlen + 1);

        if (!n)
                return NULL;
        n->sink = s;
        n->stage = stage;
        n->epoch = s->txn ? mls_txn_epoch(s->txn) : 0;
        n->partition = partition;
        n->offset = offset;
        memcpy(n->topic, topic ? topic : "", tlen);
        n->topic[tlen] = '\0';
        return n;
}

static const char *header(const rd_kafka_message_t *m, const char *name)
{
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t n;

        if (!m || rd_kafka_message_headers(m, &h) || !h ||
            rd_kafka_header_get_last(h, name, &v, &n))
                return NULL;
        return v;
}

/* An upper bound of the size of a record batch holding only this
 * message: what a topic's max.message.bytes limits (Kafka's v2 format: a
 * 61-byte batch header, varint lengths; before any compression). */
static size_t record_size(size_t len, size_t key_len,
                          const rd_kafka_headers_t *h)
{
        size_t n = 61 + 21 + len + key_len;
        const char *name;
        const void *v;
        size_t vlen;

        for (size_t i = 0;
             h && rd_kafka_header_get_all(h, i, &name, &v, &vlen) == 0; i++)
                n += strlen(name) + vlen + 10;
        return n;
}

static int drain(struct kafka_sink *s, rd_kafka_t *rk, int64_t *end);

/* The sink's producer i (1: one message per batch), made on its first use;
 * NULL when it cannot be, with the sink failed: the batch is tried again
 * later, as after a broker error. A transactional sink's p->rk[0] is made
 * already, and is its only one. */
static rd_kafka_t *producer(struct kafka_sink *s, int i)
{
        rd_kafka_t *rk = mls_kafka_producers_get(s->p, i, s->failure,
                                                 sizeof(s->failure));

        if (!rk)
                s->failed++;
        return rk;
}

static void transient(struct kafka_sink *s, const char *topic,
                      rd_kafka_resp_err_t err)
{
        s->failed++;
        snprintf(s->failure, sizeof(s->failure), "%s: %s", topic,
                 rd_kafka_err2str(err));
}

/* Transactional: waits until everything the producer holds is delivered,
 * so that what is produced next travels in a record batch of its own.
 * Returns -1, with the sink failed, when anything was not. */
static int isolate(struct kafka_sink *s)
{
        int64_t end = mls_clock_mono_ns() + 30000 * 1000000LL;

        if (drain(s, s->p->rk[0], &end) == 0 && !s->failed)
                return 0;
        if (!s->failed)
                transient(s, s->topic, RD_KAFKA_RESP_ERR__TIMED_OUT);
        return -1;
}

static void dropped(struct kafka_sink *s, const struct dr_note *n,
                    const char *why)
{
        mls_series_add(s->s_dropped, 1);
        mls_log_limited(&s->log_dropped, MLS_LOG_ERROR,
                        "%s[%d]@%lld: skipped, nothing could be written to "
                        "%s: %s",
                        n->topic, (int)n->partition, (long long)n->offset,
                        s->fallback, why);
}

/*
 * Writes a truncated dead letter in place of a message that topic `to'
 * refused for good. m is the refused message when it came back in a
 * delivery report (its headers say why it was a dead letter), NULL when
 * produce refused it at once.
 */
static void refuse(struct kafka_sink *s, const struct dr_note *n,
                   const rd_kafka_message_t *m, const char *payload, size_t len,
                   const char *reason, const char *detail,
                   rd_kafka_resp_err_t err)
{
        rd_kafka_headers_t *h;
        struct dr_note *note;
        rd_kafka_t *rk;
        char num[32], msg[512];
        size_t keep = len < s->dead_letter_max ? len : s->dead_letter_max;

        if (!s->fallback) {
                dropped(s, n, "no dead-letter topic");
                return;
        }
        rk = producer(s, s->txn ? 0 : 1);
        if (!rk)
                return;
        if (!reason)
                reason = header(m, "mls.error.reason");
        if (!reason)
                reason = "output_refused";
        if (!detail)
                detail = header(m, "mls.error.message");
        snprintf(msg, sizeof(msg), "%s refused the %zu-byte message: %s%s%s",
                 s->topic, len, rd_kafka_err2str(err), detail ? "; " : "",
                 detail ? detail : "");
        h = rd_kafka_headers_new(8);
        rd_kafka_header_add(h, "mls.error.reason", -1, reason, -1);
        rd_kafka_header_add(h, "mls.error.message", -1, msg, -1);
        rd_kafka_header_add(h, "mls.source.topic", -1, n->topic, -1);
        snprintf(num, sizeof(num), "%d", (int)n->partition);
        rd_kafka_header_add(h, "mls.source.partition", -1, num, -1);
        snprintf(num, sizeof(num), "%lld", (long long)n->offset);
        rd_kafka_header_add(h, "mls.source.offset", -1, num, -1);
        snprintf(num, sizeof(num), "%zu", len);
        rd_kafka_header_add(h, "mls.original.size", -1, num, -1);
        rd_kafka_header_add(h, "mls.truncated", -1, "true", -1);
        if (s->txn && s->fallback_max_bytes &&
            record_size(keep, 0, h) > s->fallback_max_bytes) {
                rd_kafka_headers_destroy(h);
                dropped(s, n,
                        "even truncated, larger than its max.message.bytes");
                return;
        }
        if (s->txn && isolate(s) < 0) {
                rd_kafka_headers_destroy(h);
                return;
        }
        note = note_new(s, n->topic, n->partition, n->offset, STAGE_TRUNCATED);
        err = note ? rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(s->fallback),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_VALUE((void *)payload, keep),
                                       RD_KAFKA_V_OPAQUE(note),
                                       RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END)
                   : RD_KAFKA_RESP_ERR__FAIL;
        if (err) {
                rd_kafka_headers_destroy(h);
                free(note);
                if (is_permanent(err)) {
                        dropped(s, n, rd_kafka_err2str(err));
                } else {
                        s->failed++;
                        snprintf(s->failure, sizeof(s->failure), "%s: %s",
                                 s->fallback, rd_kafka_err2str(err));
                }
                return;
        }
        mls_series_add(s->s_truncated, 1);
        mls_log_limited(&s->log_truncated, MLS_LOG_WARN,
                        "%s[%d]@%lld: %s; wrote a %zu-byte truncated dead "
                        "letter to %s",
                        n->topic, (int)n->partition, (long long)n->offset, msg,
                        keep, s->fallback);
        if (s->txn)
                isolate(s); /* its refusal must not be blamed on others */
}

/* Sends a refused message again on its own (stage 1). */
static void send_alone(struct kafka_sink *s, const struct dr_note *n,
                       const rd_kafka_message_t *m)
{
        rd_kafka_t *rk = producer(s, 1);
        rd_kafka_headers_t *h = NULL;
        struct dr_note *note;
        rd_kafka_resp_err_t err;

        if (!rk)
                return;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                h = rd_kafka_headers_copy(h);
        else
                h = NULL;
        note = note_new(s, n->topic, n->partition, n->offset, STAGE_ALONE);
        err = note ? rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(s->topic),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_VALUE(m->payload, m->len),
                                       RD_KAFKA_V_KEY(m->key, m->key_len),
                                       RD_KAFKA_V_OPAQUE(note),
                                       RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END)
                   : RD_KAFKA_RESP_ERR__FAIL;
        if (!err)
                return;
        if (h)
                rd_kafka_headers_destroy(h);
        free(note);
        if (is_permanent(err))
                refuse(s, n, m, m->payload, m->len, NULL, NULL, err);
        else
                transient(s, s->topic, err);
}

/* Transactional: the broker refused m for good. Its transaction must
 * be aborted; the next attempt at its input goes one stage further. */
static void refused_in_txn(struct kafka_sink *s, const struct dr_note *n,
                           const rd_kafka_message_t *m)
{
        static const char *const then[] = {
                [MLS_TXN_ALONE] = "sent alone",
                [MLS_TXN_TRUNCATE] = "replaced by a truncated dead letter",
                [MLS_TXN_SKIP] = "skipped",
        };
        enum mls_txn_retry next = n->stage == STAGE_BATCHED ? MLS_TXN_ALONE
                                  : n->stage == STAGE_ALONE ? MLS_TXN_TRUNCATE
                                                            : MLS_TXN_SKIP;

        mls_txn_refused(s->txn, n->topic, n->partition, n->offset, next);
        mls_log_limited(&s->log_refused, MLS_LOG_WARN,
                        "%s[%d]@%lld: %s refused the %zu-byte message in a "
                        "transaction: %s; the transaction is aborted and the "
                        "input consumed again, its message then %s",
                        n->topic, (int)n->partition, (long long)n->offset,
                        rd_kafka_topic_name(m->rkt), m->len,
                        rd_kafka_err2str(m->err), then[next]);
}

/* Runs on the thread that calls rd_kafka_poll/flush: the engine thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
        struct dr_note *n = m->_private;
        struct kafka_sink *s = n ? n->sink : NULL;

        (void)rk;
        (void)opaque;
        if (s && s->txn) {
                /* A refusal is remembered even when its report comes
                 * during the abort it caused (batches do not wait for
                 * their reports): the input's next attempt must go one
                 * stage further. Other failures of an aborted
                 * transaction's messages (purged ones among them) concern
                 * nothing that is still to do. */
                if (m->err && is_permanent(m->err))
                        refused_in_txn(s, n, m);
                if (m->err && n->epoch == mls_txn_epoch(s->txn))
                        transient(s, rd_kafka_topic_name(m->rkt), m->err);
                free(n);
                return;
        }
        if (m->err && s) {
                if (!is_permanent(m->err))
                        transient(s, rd_kafka_topic_name(m->rkt), m->err);
                else if (n->stage == STAGE_BATCHED)
                        send_alone(s, n, m);
                else if (n->stage == STAGE_ALONE)
                        refuse(s, n, m, m->payload, m->len, NULL, NULL, m->err);
                else
                        dropped(s, n, rd_kafka_err2str(m->err));
        }
        free(n);
}

/* The configuration of producer i of mls_kafka_producers (1: one message
 * per batch), or NULL with errstr saying why. */
static rd_kafka_conf_t *producer_conf(const struct mls_config *cfg, int i,
                                      char *errstr, size_t errstr_size)
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
        char err[512];

        if (!conf)
                return NULL;
        if (i && (rd_kafka_conf_set(conf, "batch.num.messages", "1", err,
                                    sizeof(err)) != RD_KAFKA_CONF_OK ||
                  rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof(err)) !=
                          RD_KAFKA_CONF_OK)) {
                snprintf(errstr, errstr_size, "kafka producer: %s", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        return conf;
}

int mls_kafka_producers_init(struct mls_kafka_producers *p,
                             const struct mls_config *cfg, char *errstr,
                             size_t errstr_size)
{
        rd_kafka_conf_t *check;
        rd_kafka_t *rk;
        char err[512];

        memset(p, 0, sizeof(*p));
        for (int i = 0; i < 2; i++) {
                p->conf[i] = producer_conf(cfg, i, errstr, errstr_size);
                if (!p->conf[i])
                        goto fail;
        }
        /* Some settings are only judged together, when a client is made
         * (enable.idempotence with acks, TLS files...): a client made and
         * destroyed at once, before it has anything to send, judges them
         * now. The two configurations differ only in settings of ours. */
        check = rd_kafka_conf_dup(p->conf[0]);
        rk = check ? rd_kafka_new(RD_KAFKA_PRODUCER, check, err, sizeof(err))
                   : NULL;
        if (!rk) {
                snprintf(errstr, errstr_size, "kafka producer: %s",
                         check ? err : "out of memory");
                if (check)
                        rd_kafka_conf_destroy(check);
                goto fail;
        }
        rd_kafka_destroy(rk);
        return 0;
fail:
        mls_kafka_producers_fini(p);
        return -1;
}

rd_kafka_t *mls_kafka_producers_get(struct mls_kafka_producers *p, int i,
                                    char *errstr, size_t errstr_size)
{
        char err[512];

        if (p->rk[i] || !p->conf[i]) {
                if (!p->rk[i])
                        snprintf(errstr, errstr_size, "no producer");
                return p->rk[i];
        }
        p->rk[i] =
                rd_kafka_new(RD_KAFKA_PRODUCER, p->conf[i], err, sizeof(err));
        if (!p->rk[i]) {
                snprintf(errstr, errstr_size, "kafka producer: %s", err);
                return NULL; /* conf stays ours, for the next try */
        }
        p->conf[i] = NULL; /* librdkafka's now */
        return p->rk[i];
}

void mls_kafka_producers_fini(struct mls_kafka_producers *p)
{
        for (int i = 0; i < 2; i++) {
                if (p->conf[i])
                        rd_kafka_conf_destroy(p->conf[i]);
                p->conf[i] = NULL;
        }
}

/* The value of property name in conf as a number, or -1. */
static long long conf_number(const rd_kafka_conf_t *conf, const char *name)
{
        char v[64];
        size_t n = sizeof(v);

        if (rd_kafka_conf_get(conf, name, v, &n) != RD_KAFKA_CONF_OK || !*v)
                return -1;
        return strtoll(v, NULL, 10);
}

rd_kafka_t *mls_kafka_txn_producer_new(const struct mls_config *cfg,
                                       const char *id, size_t batch_max,
                                       char *id_used, size_t id_used_size,
                                       char *errstr, size_t errstr_size)
{
        /* transaction.timeout.ms: how long a crashed engine's open
         * transaction holds up its partitions' next owner when no engine
         * with its transactional.id starts again (librdkafka derives
         * message.timeout.ms from it) */
        static const char *const defaults[] = {"acks",
                                               "all",
                                               "linger.ms",
                                               "5",
                                               "enable.idempotence",
                                               "true",
                                               "transaction.timeout.ms",
                                               "10000",
                                               NULL};
        rd_kafka_conf_t *conf = mls_kafka_conf(cfg, RD_KAFKA_PRODUCER, defaults,
                                               errstr, errstr_size);
        long long txn_timeout;
        rd_kafka_t *rk;
        char err[512], num[32];
        size_t n = id_used_size;

        if (!conf)
                return NULL;
        /* KAFKA_CONF_TRANSACTIONAL_ID or the properties file may name it */
        if (rd_kafka_conf_get(conf, "transactional.id", id_used, &n) !=
                    RD_KAFKA_CONF_OK ||
            !*id_used) {
                snprintf(id_used, id_used_size, "%s", id);
                if (rd_kafka_conf_set(conf, "transactional.id", id, err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK)
                        goto fail;
        }
        /* record batches no larger than the smallest topic takes, so
         * that only a message too large on its own is ever refused */
        if (batch_max &&
            conf_number(conf, "batch.size") > (long long)batch_max) {
                snprintf(num, sizeof(num), "%zu", batch_max);
                if (rd_kafka_conf_set(conf, "batch.size", num, err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK)
                        goto fail;
        }
        txn_timeout = conf_number(conf, "transaction.timeout.ms");
        if (cfg->transaction_interval_ms * 2 > txn_timeout) {
                snprintf(errstr, errstr_size,
                         "ML_TRANSACTION_INTERVAL_MS (--transaction-interval-"
                         "ms) %lld: must be at most half of the producer's "
                         "transaction.timeout.ms (%lld)",
                         cfg->transaction_interval_ms, txn_timeout);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (rk)
                return rk;
fail:
        snprintf(errstr, errstr_size, "kafka transactional producer: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
}

size_t mls_kafka_topic_max_bytes(const struct mls_config *cfg,
                                 const char *const *topics, size_t n,
                                 size_t *limits, int timeout_ms, char *errstr,
                                 size_t errstr_size)
{
        rd_kafka_ConfigResource_t *res[2];
        const rd_kafka_ConfigResource_t **got;
        const rd_kafka_DescribeConfigs_result_t *result;
        rd_kafka_AdminOptions_t *opts = NULL;
        rd_kafka_queue_t *q = NULL;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk = NULL;
        size_t known = 0, ngot = 0;
        char err[512];

        snprintf(errstr, errstr_size, "not asked");
        for (size_t i = 0; i < n; i++)
                limits[i] = 0;
        if (n == 0 || n > 2)
                return 0;
        conf = mls_kafka_conf(cfg, RD_KAFKA_PRODUCER, NULL, errstr,
                              errstr_size);
        if (!conf)
                return 0;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "%s", err);
                rd_kafka_conf_destroy(conf);
                return 0;
        }
        q = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, err,
                                                  sizeof(err));
        for (size_t i = 0; i < n; i++)
                res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC,
                                                     topics[i]);
        rd_kafka_DescribeConfigs(rk, res, n, opts, q);
        for (size_t i = 0; i < n; i++)
                rd_kafka_ConfigResource_destroy(res[i]);
        ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        if (!ev) {
                snprintf(errstr, errstr_size, "timed out");
                goto out;
        }
        if (rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "%s",
                         rd_kafka_event_error_string(ev));
                goto out;
        }
        result = rd_kafka_event_DescribeConfigs_result(ev);
        got = result ? rd_kafka_DescribeConfigs_result_resources(result, &ngot)
                     : NULL;
        for (size_t i = 0; i < ngot; i++) {
                const rd_kafka_ConfigEntry_t **entries;
                size_t nentries = 0;
                const char *name = rd_kafka_ConfigResource_name(got[i]);
                size_t k = 0;

                while (k < n && strcmp(topics[k], name) != 0)
                        k++;
                if (k == n)
                        continue;
                if (rd_kafka_ConfigResource_error(got[i])) {
                        snprintf(errstr, errstr_size, "%s: %s", name,
                                 rd_kafka_ConfigResource_error_string(got[i]));
                        continue;
                }
                entries = rd_kafka_ConfigResource_configs(got[i], &nentries);
                for (size_t j = 0; j < nentries; j++) {
                        const char *v = rd_kafka_ConfigEntry_value(entries[j]);
                        if (strcmp(rd_kafka_ConfigEntry_name(entries[j]),
                                   "max.message.bytes") == 0 &&
                            v && strtoll(v, NULL, 10) > 0) {
                                limits[k] = (size_t)strtoll(v, NULL, 10);
                                known++;
                        }
                }
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return known;
}

static void kafka_destroy(void *ctx)
{
        struct kafka_sink *s = ctx;

        if (!s)
                return;
        free(s->topic);
        free(s->fallback);
        free(s);
}

/* Transactional: how to send this message of rec's, given what was
 * refused in aborted transactions and its topic's max.message.bytes. */
static enum mls_txn_retry txn_stage(const struct kafka_sink *s,
                                    const struct mls_record *rec, size_t len,
                                    const rd_kafka_headers_t *hdrs)
{
        enum mls_txn_retry r = rec ? mls_txn_retry(s->txn, rec->topic,
                                                   rec->partition, rec->offset)
                                   : MLS_TXN_SEND;

        if (r < MLS_TXN_TRUNCATE && s->max_bytes &&
            record_size(len, rec ? rec->key_len : 0, hdrs) > s->max_bytes)
                r = MLS_TXN_TRUNCATE;
        return r;
}

static int kafka_send(void *ctx, const struct mls_record *rec,
                      const char *model_id, const char *payload, size_t len,
                      const char *reason, const char *detail)
{
        (void)model_id;
        struct kafka_sink *s = ctx;
        rd_kafka_t *rk = producer(s, 0);
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;
        struct dr_note *note;
        char num[32];
        int alone;

        if (!rk)
                return -1;
        note = note_new(s, rec ? rec->topic : NULL, rec ? rec->partition : -1,
                        rec ? rec->offset : -1, STAGE_BATCHED);
        if (!note) {
                s->failed++;
                snprintf(s->failure, sizeof(s->failure), "out of memory");
                return -1;
        }
        if (reason) {
                hdrs = rd_kafka_headers_new(6);
                rd_kafka_header_add(hdrs, "mls.error.reason", -1, reason, -1);
                rd_kafka_header_add(hdrs, "mls.error.message", -1, detail, -1);
                rd_kafka_header_add(hdrs, "mls.source.topic", -1, note->topic,
                                    -1);
                snprintf(num, sizeof(num), "%d", (int)note->partition);
                rd_kafka_header_add(hdrs, "mls.source.partition", -1, num, -1);
                snprintf(num, sizeof(num), "%lld", (long long)note->offset);
                rd_kafka_header_add(hdrs, "mls.source.offset", -1, num, -1);
        }
        if (s->txn && s->epoch != mls_txn_epoch(s->txn)) {
                /* failures of an aborted transaction: nothing to retry */
                s->epoch = mls_txn_epoch(s->txn);
                s->failed = 0;
        }
        if (s->txn) {
                switch (txn_stage(s, rec, len, hdrs)) {
                case MLS_TXN_SEND:
                        break;
                case MLS_TXN_ALONE:
                        note->stage = STAGE_ALONE;
                        if (isolate(s) < 0) {
                                if (hdrs)
                                        rd_kafka_headers_destroy(hdrs);
                                free(note);
                                return -1;
                        }
                        break;
                case MLS_TXN_TRUNCATE:
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        refuse(s, note, NULL, payload, len, reason, detail,
                               RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
                        free(note);
                        return 0;
                case MLS_TXN_SKIP:
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        dropped(s, note,
                                "refused in an aborted transaction, even as a "
                                "truncated dead letter");
                        free(note);
                        return 0;
                }
        }
        alone = note->stage == STAGE_ALONE;
        for (;;) {
                err = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(s->topic),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_VALUE((void *)payload, len),
                        RD_KAFKA_V_KEY(rec ? rec->key : NULL,
                                       rec ? rec->key_len : 0),
                        RD_KAFKA_V_OPAQUE(note), RD_KAFKA_V_HEADERS(hdrs),
                        RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                rd_kafka_poll(rk, 100);
        }
        if (!err)
                return alone ? isolate(s) : 0;
        if (hdrs)
                rd_kafka_headers_destroy(hdrs);
        if (is_permanent(err)) {
                /* e.g. larger than the producer's message.max.bytes */
                refuse(s, note, NULL, payload, len, reason, detail, err);
                free(note);
                return 0;
        }
        free(note);
        s->failed++;
        snprintf(s->failure, sizeof(s->failure), "%s: %s", s->topic,
                 rd_kafka_err2str(err));
        return -1;
}

/* Waits for rk's queue to empty until end, in short slices so that a stop
 * request noticed meanwhile shortens the wait to the drain time. */
static int drain(struct kafka_sink *s, rd_kafka_t *rk, int64_t *end)
{
        for (;;) {
                int64_t now = mls_clock_mono_ns(), left;
                if (s->stop && atomic_load(s->stop)) {
                        if (!*s->stop_by)
                                *s->stop_by = now + s->drain_ns;
                        if (*end > *s->stop_by)
                                *end = *s->stop_by;
                }
                /* a failed transaction is aborted: no use waiting */
                if (s->txn && s->failed)
                        return -1;
                left = (*end - now) / 1000000;
                if (rd_kafka_flush(rk, left <= 0    ? 0
                                       : left < 100 ? (int)left
                                                    : 100) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR)
                        return 0;
                if (left <= 0)
                        return -1;
        }
}

/* Messages the producers of p hold. */
static int queued(const struct mls_kafka_producers *p)
{
        int n = 0;

        for (int i = 0; i < 2; i++)
                if (p->rk[i])
                        n += rd_kafka_outq_len(p->rk[i]);
        return n;
}

static int kafka_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct kafka_sink *s = ctx;
        int64_t end = mls_clock_mono_ns() + 30000 * 1000000LL;

        /* In a transaction the commit waits for every delivery (and fails
         * if one failed), so a batch need not: the next one is scored
         * while this one is on its way. The reports that came are served
         * now, so that a failure aborts early. */
        if (s->txn) {
                rd_kafka_poll(s->p->rk[0], 0);
                goto reported;
        }
        /* the first producer's reports may send messages on the second,
         * and make it */
        for (int i = 0; i < 2; i++) {
                if (!s->p->rk[i] || drain(s, s->p->rk[i], &end) == 0)
                        continue;
                snprintf(errstr, errstr_size,
                         "%s: delivery timed out with %d messages queued",
                         s->topic, queued(s->p));
                s->failed = 0;
                return -1;
        }
reported:
        if (s->failed) {
                snprintf(errstr, errstr_size, "%d deliveries failed, last %s",
                         s->failed, s->failure);
                s->failed = 0;
                return -1;
        }
        return 0;
}

static const struct mls_sink_ops kafka_ops = {
        .name = "kafka",
        .send = kafka_send,
        .flush = kafka_flush,
        .destroy = kafka_destroy,
};

int mls_kafka_sink_new(struct mls_sink *sink,
                       const struct mls_kafka_sink_conf *conf,
                       mls_metrics_t *metrics)
{
        struct kafka_sink *s = calloc(1, sizeof(*s));
        const char *fallback = conf->fallback;
        mls_metric_t *refused;

        sink->ops = NULL;
        sink->ctx = NULL;
        if (!s)
                return -1;
        s->p = conf->producers;
        s->txn = conf->txn;
        s->max_bytes = conf->max_bytes;
        s->fallback_max_bytes = conf->fallback_max_bytes;
        s->topic = strdup(conf->topic);
        s->fallback = fallback && *fallback ? strdup(fallback) : NULL;
        s->dead_letter_max = conf->dead_letter_max;
        s->stop = conf->stop;
        s->stop_by = conf->stop_by;
        s->drain_ns = conf->drain_ms * 1000000LL;
        if (!s->topic || (fallback && *fallback && !s->fallback)) {
                kafka_destroy(s);
                return -1;
        }
        refused = mls_metric_new(
                metrics, MLS_COUNTER, "ml_stream_kafka_refused_total",
                "Messages a Kafka topic refused for good (e.g. too large), by "
                "topic and what was done: a truncated dead letter was "
                "written, or nothing could be and the message was skipped.",
                "topic", "action", NULL, 0);
        s->s_truncated = mls_series(refused, conf->topic, "truncated");
        s->s_dropped = mls_series(refused, conf->topic, "dropped");
        sink->ops = &kafka_ops;
        sink->ctx = s;
        return 0;
}
