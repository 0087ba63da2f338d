/*
 * mls-loadgen: load and measurement client for the gateway benchmark.
 *
 *   mls-loadgen pub  --redis H:P --channel C --rate N --seconds S --model M
 *                    [--count N] [--auth PASSWORD] [--every-ms T]
 *       PUBLISHes prediction payloads (DESIGN §4) at N/s (--count: exactly
 *       N payloads, as fast as --rate allows); each carries the send time
 *       in metadata.sent_ns and its sequence number in input_id "in-<n>".
 *       --every-ms: what is due is sent together every T ms, as an engine
 *       publishes a batch (one write of pipelined PUBLISHes).
 *       Prints the count, the rate and the first and last send times.
 *   mls-loadgen sub  --redis H:P --channel C --seconds S [--conns N]
 *       A bare Redis subscriber (N of them): the reference for deliveries
 *       and latency.
 *   mls-loadgen ws   --gateway H:P --conns N --model M --seconds S [--idle]
 *                    [--source-addresses LIST] [--max-pending P]
 *                    [--setup-timeout-ms T] [--linger-ms L]
 *       N graphql-transport-ws clients subscribed to model M (or, with
 *       --idle, initialised and left idle until SIGUSR1, which subscribes
 *       them all); counts deliveries, measures latency from sent_ns, and
 *       reports resident memory of --pid.
 *   mls-loadgen kafka --bootstrap H:P --topic T --seconds S [--prefix P]
 *       A plain librdkafka consumer of every partition of T, from the
 *       beginning, in a group of its own: the Kafka-only reference for
 *       end-to-end latency, measured with the same code as sub's. It reads
 *       what the topic held when it started before it says ready; with
 *       --prefix, only messages whose input_id starts with P are counted.
 *
 * ws opens its connections P at a time (default 256; 0: all at once): a
 * new one starts when one in set-up becomes ready or dies, so none waits
 * behind thousands of others and the gateway's listen backlog does not
 * overflow. Each must be ready within T ms (default 30000) of its
 * connect(). --source-addresses binds the sockets, in turn, to the given
 * local addresses before connecting ("127.0.0.2-127.0.0.11,127.0.0.20":
 * addresses and inclusive ranges), so that more connections than one
 * address has ephemeral ports can reach one gateway address; the kernel
 * still picks the port (IP_BIND_ADDRESS_NO_PORT). Failed connections are
 * counted by why ("dead_by": connect, refused, handshake, closed, eof,
 * timeout, lost_after_ready) with the first failure's text, and ws gives
 * up as soon as every connection is either ready or dead. --linger-ms
 * keeps the connections open L ms after the result is printed.
 *
 * sub, kafka and ws also take --expect N (stop once N messages were received in
 * total), --quiet-ms T (stop T ms after the last message, once one came),
 * --sample-every K (latency of every K-th message per connection; sub 1,
 * ws 64) and --dump FILE ("seq sent_ns received_ns" per sample). They print
 * {"ready":N} once every connection is set up, then one JSON object; rate
 * fields count from the first to the last message received. Both raise
 * their open-file limit to what N connections need, and exit with status 2
 * and a message when the hard limit is too low for that.
 *
 * cpu_s in the result is the tool's own CPU time (user + system).
 * Only for loopback load tests.
 * Threads: one, with epoll (and librdkafka's own, in kafka).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
        for (int i = 0; i + 1 < argc; i++)
                if (strcmp(argv[i], name) == 0)
                        return argv[i + 1];
        return def;
}

static int flag(int argc, char **argv, const char *name)
{
        for (int i = 0; i < argc; i++)
                if (strcmp(argv[i], name) == 0)
                        return 1;
        return 0;
}

static void split_addr(const char *addr, char *host, size_t cap, int *port)
{
        const char *c = strrchr(addr, ':');

        snprintf(host, cap, "%.*s", (int)(c ? c - addr : (long)strlen(addr)),
                 addr);
        *port = c ? atoi(c + 1) : 0;
}

/* Raises the soft open-file limit to want; exits with status 2 and a
 * message when the hard limit is lower (N connections need N descriptors). */
static void raise_nofile(rlim_t want)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
                return;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
                fprintf(stderr,
                        "mls-loadgen: the open-file hard limit (%llu) is "
                        "below the %llu descriptors needed; raise it "
                        "(ulimit -Hn, as root) or open fewer connections\n",
                        (unsigned long long)rl.rlim_max,
                        (unsigned long long)want);
                exit(2);
        }
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                fprintf(stderr,
                        "mls-loadgen: cannot raise the open-file limit to "
                        "%llu: %s\n",
                        (unsigned long long)want, strerror(errno));
                exit(2);
        }
}

/* --- what the receiving modes share ----------------------------------- */

/* Latency samples in microseconds, for percentiles. */
static int64_t *lat;
static size_t nlat, caplat;
/* Messages received in total, the first and last receipt (ns). */
static int64_t total, first_at, last_at;
static int64_t expect, quiet_ns, sample_every = 1;
static FILE *dump;

static void recv_options(int argc, char **argv, int64_t every)
{
        const char *path = opt(argc, argv, "--dump", NULL);

        expect = atoll(opt(argc, argv, "--expect", "0"));
        quiet_ns = atoll(opt(argc, argv, "--quiet-ms", "0")) * 1000000;
        sample_every = atoll(opt(argc, argv, "--sample-every", "0"));
        if (sample_every <= 0)
                sample_every = every;
        if (path && !(dump = fopen(path, "w")))
                fprintf(stderr, "mls-loadgen: cannot write %s\n", path);
}

static void sample(int64_t us)
{
        if (nlat == caplat) {
                caplat = caplat ? caplat * 2 : 65536;
                lat = realloc(lat, caplat * sizeof(*lat));
        }
        lat[nlat++] = us;
}

static int cmp64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return x < y ? -1 : x > y;
}

static double pct(double p)
{
        if (!nlat)
                return -1;
        qsort(lat, nlat, sizeof(*lat), cmp64);
        return (double)lat[(size_t)(p / 100 * (double)(nlat - 1))] / 1000.0;
}

/* Finds "sent_ns":<digits> (and the sequence number "in-<digits>") in a
 * message and samples now - sent_ns. */
static void sample_from(const char *p, size_t n, int64_t now)
{
        const char *k = memmem(p, n, "\"sent_ns\":", 10);
        const char *s = memmem(p, n, "\"in-", 4);

        if (k) {
                int64_t v = strtoll(k + 10, NULL, 10);
                if (v > 0) {
                        sample((now - v) / 1000);
                        if (dump)
                                fprintf(dump, "%lld %lld %lld\n",
                                        s ? strtoll(s + 4, NULL, 10) : -1LL,
                                        (long long)v, (long long)now);
                }
        }
}

/* One message received: count it, sample every sample_every-th of a
 * connection (nth counts from 0). */
static void received(int64_t nth, const char *p, size_t n, int64_t now)
{
        if (!total++)
                first_at = now;
        last_at = now;
        if (nth % sample_every == 0)
                sample_from(p, n, now);
}

static int finished(int64_t now)
{
        return (expect && total >= expect) ||
               (quiet_ns && total && now - last_at > quiet_ns);
}

static double window_s(void)
{
        return (double)(last_at - first_at) / 1e9;
}

static double rate(void)
{
        return last_at > first_at ? (double)(total - 1) / window_s() : 0.0;
}

static void print_receipts(void)
{
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        printf("\"cpu_s\":%.3f,",
               (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
                               1e6);
        printf("\"received\":%lld,\"window_s\":%.6f,\"rate\":%.1f,"
               "\"first_ns\":%lld,\"last_ns\":%lld,\"samples\":%zu,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f",
               (long long)total, window_s(), rate(), (long long)first_at,
               (long long)last_at, nlat, pct(50), pct(99), pct(100));
        if (dump)
                fclose(dump);
}

/* When payload n of a run at rate/s that began at start is due; with
 * every_ns, the start of the period of every_ns it falls in. */
static int64_t due_ns(int64_t start, int64_t n, int64_t rate, int64_t every_ns)
{
        int64_t at = (int64_t)((double)n * 1e9 / (double)rate);

        return start + (every_ns > 0 ? at - at % every_ns : at);
}

static int cmd_pub(int argc, char **argv)
{
        char host[256], payload[1024];
        int port;
        int64_t rate = atoll(opt(argc, argv, "--rate", "10000"));
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        int64_t count = atoll(opt(argc, argv, "--count", "0"));
        const char *chan = opt(argc, argv, "--channel", "ml:stream:inference");
        const char *model = opt(argc, argv, "--model", "bench-model");
        const char *auth = opt(argc, argv, "--auth", NULL);
        int64_t every_ns = atoll(opt(argc, argv, "--every-ms", "0")) * 1000000;
        redisContext *c;
        int64_t start, sent = 0, total_pub, first_ns = 0, last_ns = 0;

        split_addr(opt(argc, argv, "--redis", "127.0.0.1:6379"), host,
                   sizeof(host), &port);
        c = redisConnect(host, port);
        if (!c || c->err) {
                fprintf(stderr, "pub: cannot connect to redis\n");
                return 1;
        }
        if (auth) {
                redisReply *r = redisCommand(c, "AUTH %s", auth);
                if (!r || r->type == REDIS_REPLY_ERROR) {
                        fprintf(stderr, "pub: AUTH failed\n");
                        return 1;
                }
                freeReplyObject(r);
        }
        if (rate <= 0)
                rate = 1;
        total_pub = count > 0 ? count : (int64_t)((double)rate * secs);
        start = now_ns();
        while (sent < total_pub) {
                int64_t due = due_ns(start, sent, rate, every_ns);
                int batch = 0;
                while (now_ns() < due) {
                        struct timespec ts = {0, 50000};
                        nanosleep(&ts, NULL);
                }
                /* Pipeline what is due now (keeps up at high rates). */
                while (sent < total_pub &&
                       due_ns(start, sent, rate, every_ns) <= now_ns() &&
                       batch < 256) {
                        int64_t t = now_ns();
                        int n;

                        if (!first_ns)
                                first_ns = t;
                        last_ns = t;
                        /* inference ids unique across runs too: the gateway
                         * drops an id it delivered already */
                        n = snprintf(
                                payload, sizeof(payload),
                                "{\"type\":\"prediction\",\"inference_id\":"
                                "\"b-%lld-%lld\",\"model_id\":\"%s\","
                                "\"input_id\":"
                                "\"in-%lld\",\"predictions\":[[0.93,0.07]],"
                                "\"latency_ms\":1.25,\"received_at\":"
                                "\"2026-11-27T00:00:00.000Z\",\"published_at\":"
                                "\"2026-11-27T00:00:00.001Z\",\"metadata\":{"
                                "\"tenant\":\"bench\",\"sent_ns\":%lld},"
                                "\"kafka\":{\"topic\":\"b\",\"partition\":0,"
                                "\"offset\":%lld}}",
                                (long long)start, (long long)sent, model,
                                (long long)sent, (long long)t, (long long)sent);
                        redisAppendCommand(c, "PUBLISH %s %b", chan, payload,
                                           (size_t)n);
                        sent++;
                        batch++;
                }
                for (int i = 0; i < batch; i++) {
                        void *r;
                        if (redisGetReply(c, &r) != REDIS_OK) {
                                fprintf(stderr, "pub: redis error\n");
                                return 1;
                        }
                        freeReplyObject(r);
                }
        }
        secs = (double)(now_ns() - start) / 1e9;
        printf("{\"published\":%lld,\"seconds\":%.3f,\"rate\":%.1f,"
               "\"first_ns\":%lld,\"last_ns\":%lld}\n",
               (long long)sent, secs, secs > 0 ? (double)sent / secs : 0.0,
               (long long)first_ns, (long long)last_ns);
        redisFree(c);
        return 0;
}

/* --- bare Redis subscribers -------------------------------------------- */

struct rconn {
        int fd;
        int subscribed;
        int64_t msgs;
        redisReader *rd;
};

static int send_command(int fd, const char *fmt, const char *arg)
{
        char *cmd;
        int n = redisFormatCommand(&cmd, fmt, arg);
        int rc;

        if (n < 0)
                return -1;
        rc = send(fd, cmd, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
        free(cmd);
        return rc;
}

static int connect_sub(const char *host, int port, const char *chan,
                       const char *auth)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0)
                return -1;
        inet_pton(AF_INET, host, &sa.sin_addr);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            (auth && send_command(fd, "AUTH %s", auth) < 0) ||
            send_command(fd, "SUBSCRIBE %s", chan) < 0) {
                close(fd);
                return -1;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        return fd;
}

static int cmd_sub(int argc, char **argv)
{
        static char buf[1 << 18];
        char host[256];
        int port, n = atoi(opt(argc, argv, "--conns", "1"));
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        const char *chan = opt(argc, argv, "--channel", "ml:stream:inference");
        const char *auth = opt(argc, argv, "--auth", NULL);
        struct rconn *rs;
        struct epoll_event ev, evs[256];
        int ep = epoll_create1(0), ready = 0, dead = 0;
        int64_t end;

        if (n < 1)
                n = 1;
        recv_options(argc, argv, 1);
        raise_nofile((rlim_t)n + 64);
        split_addr(opt(argc, argv, "--redis", "127.0.0.1:6379"), host,
                   sizeof(host), &port);
        rs = calloc((size_t)n, sizeof(*rs));
        for (int i = 0; i < n; i++) {
                rs[i].fd = connect_sub(host, port, chan, auth);
                if (rs[i].fd < 0) {
                        fprintf(stderr, "sub: cannot connect to redis\n");
                        return 1;
                }
                rs[i].rd = redisReaderCreate();
                ev.events = EPOLLIN;
                ev.data.u32 = (uint32_t)i;
                epoll_ctl(ep, EPOLL_CTL_ADD, rs[i].fd, &ev);
        }
        end = now_ns() + (int64_t)(secs * 1e9) + 30000000000LL; /* + set-up */
        while (now_ns() < end && !finished(now_ns())) {
                int k = epoll_wait(ep, evs, 256, 50);
                for (int j = 0; j < k; j++) {
                        struct rconn *c = &rs[evs[j].data.u32];
                        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
                        int64_t t = now_ns();
                        void *reply;

                        if (r < 0 && errno == EAGAIN)
                                continue;
                        if (r <= 0 ||
                            redisReaderFeed(c->rd, buf, (size_t)r) != REDIS_OK)
                                goto dead;
                        for (;;) {
                                redisReply *rp;
                                if (redisReaderGetReply(c->rd, &reply) !=
                                    REDIS_OK)
                                        goto dead;
                                if (!reply)
                                        break;
                                rp = reply;
                                if (rp->type == REDIS_REPLY_ARRAY &&
                                    rp->elements == 3 &&
                                    rp->element[0]->type ==
                                            REDIS_REPLY_STRING) {
                                        const char *kind = rp->element[0]->str;
                                        redisReply *m = rp->element[2];
                                        if (strcmp(kind, "message") == 0 &&
                                            m->type == REDIS_REPLY_STRING) {
                                                received(c->msgs++, m->str,
                                                         m->len, t);
                                        } else if (strcmp(kind, "subscribe") ==
                                                           0 &&
                                                   !c->subscribed) {
                                                c->subscribed = 1;
                                                if (++ready == n) {
                                                        printf("{\"ready\":%"
                                                               "d}\n",
                                                               ready);
                                                        fflush(stdout);
                                                        end = t +
                                                              (int64_t)(secs *
                                                                        1e9);
                                                }
                                        }
                                } else if (rp->type == REDIS_REPLY_ERROR) {
                                        fprintf(stderr, "sub: %s\n", rp->str);
                                }
                                freeReplyObject(reply);
                        }
                        continue;
                dead:
                        dead++;
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                        close(c->fd);
                        c->fd = -1;
                }
        }
        printf("{\"conns\":%d,\"ready\":%d,\"dead\":%d,", n, ready, dead);
        print_receipts();
        printf("}\n");
        for (int i = 0; i < n; i++) {
                if (rs[i].fd >= 0)
                        close(rs[i].fd);
                redisReaderFree(rs[i].rd);
        }
        free(rs);
        return ready == n ? 0 : 1;
}

/* --- Kafka: the reference consumer ----------------------------------- */

static int kafka_fail(rd_kafka_t *rk, const char *what, const char *why)
{
        fprintf(stderr, "mls-loadgen kafka: %s: %s\n", what, why);
        if (rk)
                rd_kafka_destroy(rk);
        return 1;
}

static int cmd_kafka(int argc, char **argv)
{
        const char *topic = opt(argc, argv, "--topic", NULL);
        const char *prefix = opt(argc, argv, "--prefix", NULL);
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_topic_t *rkt;
        rd_kafka_t *rk;
        char err[512], group[64], marker[160];
        int64_t *high, *next, nth = 0, end;
        size_t marker_len = 0;
        int np, ready = 0;

        if (!topic) {
                fprintf(stderr, "usage: mls-loadgen kafka --bootstrap H:P "
                                "--topic T --seconds S [--prefix P]\n");
                return 2;
        }
        recv_options(argc, argv, 1);
        if (prefix)
                marker_len = (size_t)snprintf(marker, sizeof(marker),
                                              "\"input_id\":\"%s", prefix);
        snprintf(group, sizeof(group), "mls-loadgen-%d", (int)getpid());
        if (rd_kafka_conf_set(conf, "bootstrap.servers",
                              opt(argc, argv, "--bootstrap", "127.0.0.1:9092"),
                              err, sizeof(err)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) !=
                    RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                              sizeof(err)) != RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                return kafka_fail(NULL, "configuration", err);
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk)
                return kafka_fail(NULL, "consumer", err);
        rd_kafka_poll_set_consumer(rk);
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != 0)
                return kafka_fail(rk, topic, "no metadata");
        if (md->topic_cnt != 1 || md->topics[0].err) {
                rd_kafka_metadata_destroy(md);
                return kafka_fail(rk, topic, "no such topic");
        }
        np = md->topics[0].partition_cnt;
        parts = rd_kafka_topic_partition_list_new(np);
        /* where each partition ends now, and the next offset read */
        high = calloc((size_t)np, sizeof(*high));
        next = calloc((size_t)np, sizeof(*next));
        for (int i = 0; i < np; i++) {
                int32_t id = md->topics[0].partitions[i].id;
                if (id < 0 || id >= np ||
                    rd_kafka_query_watermark_offsets(rk, topic, id, &next[id],
                                                     &high[id], 10000)) {
                        rd_kafka_metadata_destroy(md);
                        return kafka_fail(rk, topic, "no watermarks");
                }
                rd_kafka_topic_partition_list_add(parts, topic, id)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (rd_kafka_assign(rk, parts))
                return kafka_fail(rk, topic, "cannot assign its partitions");
        rd_kafka_topic_partition_list_destroy(parts);
        end = now_ns() + (int64_t)(secs * 1e9) + 30000000000LL; /* + set-up */
        while (now_ns() < end && !finished(now_ns())) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
                int64_t t = now_ns();

                if (m && !m->err) {
                        if (!prefix ||
                            memmem(m->payload, m->len, marker, marker_len))
                                received(nth++, m->payload, m->len, t);
                        if (m->partition >= 0 && m->partition < np)
                                next[m->partition] = m->offset + 1;
                }
                if (m)
                        rd_kafka_message_destroy(m);
                if (!ready) {
                        int behind = 0;
                        for (int i = 0; i < np; i++)
                                behind |= next[i] < high[i];
                        if (!behind) {
                                ready = 1;
                                printf("{\"ready\":1}\n");
                                fflush(stdout);
                                end = t + (int64_t)(secs * 1e9);
                        }
                }
        }
        printf("{\"partitions\":%d,\"ready\":%d,", np, ready);
        print_receipts();
        printf("}\n");
        free(high);
        free(next);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return ready ? 0 : 1;
}

/* --- WebSocket client side ------------------------------------------- */

enum ws_state {
        WS_UNOPENED,
        WS_CONNECTING,
        WS_HANDSHAKE,
        WS_INIT,
        WS_READY,
        WS_DEAD,
};

struct conn {
        int fd;
        enum ws_state state;
        int subscribed;
        char *in;
        size_t len, cap;
        int64_t frames;
        int64_t opened_ns;
};

/* Why connections died; the first failure's text is kept as well. */
enum death {
        DEATH_CONNECT,   /* socket(), bind() or connect() failed */
        DEATH_REFUSED,   /* the TCP connection failed (SO_ERROR) */
        DEATH_HANDSHAKE, /* no "101 Switching Protocols" */
        DEATH_CLOSED,    /* the gateway sent a close frame before ready */
        DEATH_EOF,       /* EOF or reset before ready */
        DEATH_TIMEOUT,   /* not ready within --setup-timeout-ms */
        DEATH_LOST,      /* closed or reset after it was ready */
        DEATHS
};
static const char *const death_names[DEATHS] = {
        "connect", "refused", "handshake",       "closed",
        "eof",     "timeout", "lost_after_ready"};
static int64_t deaths[DEATHS];
static char first_error[200];

static void note_error(const char *fmt, ...)
{
        va_list ap;

        if (first_error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof(first_error), fmt, ap);
        va_end(ap);
        /* it goes into a JSON string */
        for (char *p = first_error; *p; p++)
                if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
                        *p = ' ';
}

/* Local addresses to bind, in turn (--source-addresses). */
static struct in_addr *sources;
static size_t nsources;

static int add_source(uint32_t host_order)
{
        static size_t cap;

        if (nsources == cap) {
                cap = cap ? cap * 2 : 16;
                sources = realloc(sources, cap * sizeof(*sources));
        }
        sources[nsources++].s_addr = htonl(host_order);
        return 0;
}

/* "A", "A-B" (inclusive), comma-separated; -1 on a malformed list. */
static int parse_sources(const char *spec)
{
        char *copy = strdup(spec), *save = NULL;

        for (char *tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                char *dash = strchr(tok, '-');
                struct in_addr a, b;

                if (dash)
                        *dash = '\0';
                if (inet_pton(AF_INET, tok, &a) != 1 ||
                    (dash && inet_pton(AF_INET, dash + 1, &b) != 1)) {
                        free(copy);
                        return -1;
                }
                if (!dash)
                        b = a;
                if (ntohl(b.s_addr) < ntohl(a.s_addr) ||
                    ntohl(b.s_addr) - ntohl(a.s_addr) > 65535) {
                        free(copy);
                        return -1;
                }
                for (uint32_t h = ntohl(a.s_addr); h <= ntohl(b.s_addr); h++)
                        add_source(h);
        }
        free(copy);
        return nsources ? 0 : -1;
}

/* A non-blocking connect() to dst, from src when given (any port). */
static int connect_nb(const struct sockaddr_in *dst, const struct in_addr *src)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
        char from[INET_ADDRSTRLEN] = "127.0.0.1";

        if (fd < 0) {
                note_error("socket: %s", strerror(errno));
                return -1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (src) {
                struct sockaddr_in sa = {.sin_family = AF_INET,
                                         .sin_addr = *src};

                inet_ntop(AF_INET, src, from, sizeof(from));
                /* the port is chosen at connect(), per destination, so an
                 * address's whole port range is available to each one */
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                           sizeof(one));
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        note_error("bind to %s: %s", from, strerror(errno));
                        close(fd);
                        return -1;
                }
        }
        if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 &&
            errno != EINPROGRESS) {
                note_error("connect from %s: %s", from, strerror(errno));
                close(fd);
                return -1;
        }
        return fd;
}

/* Sends one masked frame (clients must mask): opcode 1 text, 0xA pong. */
static void send_frame(int fd, int opcode, const char *s, size_t n)
{
        size_t h = 0;
        unsigned char frame[4096];
        const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};

        if (n > sizeof(frame) - 16)
                return;
        frame[h++] = (unsigned char)(0x80 | opcode);
        if (n < 126) {
                frame[h++] = (unsigned char)(0x80 | n);
        } else {
                frame[h++] = 0x80 | 126;
                frame[h++] = (unsigned char)(n >> 8);
                frame[h++] = (unsigned char)n;
        }
        memcpy(frame + h, mask, 4);
        h += 4;
        for (size_t i = 0; i < n; i++)
                frame[h + i] = (unsigned char)s[i] ^ mask[i % 4];
        if (send(fd, frame, h + n, MSG_NOSIGNAL) < 0)
                return;
}

static void send_text(int fd, const char *s)
{
        send_frame(fd, 0x1, s, strlen(s));
}

static void subscribe(struct conn *c, const char *model)
{
        char sub[512];

        snprintf(sub, sizeof(sub),
                 "{\"id\":\"1\",\"type\":\"subscribe\","
                 "\"payload\":{\"query\":\"subscription"
                 "{mlInferenceStream(modelId:\\\"%s\\\")"
                 "{inferenceId modelId inputId "
                 "predictions latencyMs receivedAt "
                 "metadata}}\"}}",
                 model);
        send_text(c->fd, sub);
        c->subscribed = 1;
}

/* Consumes complete frames from c->in; returns -1 when the connection is
 * over (dead-reason and text noted). */
static int take_frames(struct conn *c, const char *model, int idle)
{
        size_t off = 0;
        int64_t t = now_ns();

        if (c->state == WS_HANDSHAKE) {
                char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
                if (!end)
                        return 0;
                if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) {
                        char *eol = memchr(c->in, '\r', c->len);
                        note_error("handshake answered \"%.*s\"",
                                   (int)(eol ? eol - c->in : 40), c->in);
                        deaths[DEATH_HANDSHAKE]++;
                        return -1;
                }
                off = (size_t)(end - c->in) + 4;
                send_text(c->fd, "{\"type\":\"connection_init\"}");
                c->state = WS_INIT;
        }
        while (c->len - off >= 2) {
                unsigned char *f = (unsigned char *)c->in + off;
                uint64_t n = f[1] & 0x7f;
                size_t h = 2;
                if (n == 126) {
                        if (c->len - off < 4)
                                break;
                        n = ((uint64_t)f[2] << 8) | f[3];
                        h = 4;
                } else if (n == 127) {
                        if (c->len - off < 10)
                                break;
                        n = 0;
                        for (int i = 0; i < 8; i++)
                                n = (n << 8) | f[2 + i];
                        h = 10;
                }
                if (c->len - off < h + n)
                        break;
                if ((f[0] & 0x0f) == 0x8) {
                        int code = n >= 2 ? (f[h] << 8) | f[h + 1] : 0;
                        note_error("the gateway closed a connection: %d "
                                   "%.*s",
                                   code, n > 2 ? (int)(n - 2) : 0,
                                   (char *)f + h + 2);
                        deaths[c->state == WS_READY ? DEATH_LOST
                                                    : DEATH_CLOSED]++;
                        return -1;
                }
                if ((f[0] & 0x0f) == 0x9) {
                        /* lws pings idle connections and hangs up on
                         * those that do not answer */
                        send_frame(c->fd, 0xA, (char *)f + h, (size_t)n);
                } else if (c->state == WS_INIT &&
                           memmem(f + h, n, "connection_ack", 14)) {
                        if (!idle)
                                subscribe(c, model);
                        c->state = WS_READY;
                } else if (c->state == WS_READY && (f[0] & 0x0f) == 0x1) {
                        received(c->frames++, (char *)f + h, (size_t)n, t);
                }
                off += h + n;
        }
        memmove(c->in, c->in + off, c->len - off);
        c->len -= off;
        return 0;
}

static long rss_kb(int pid)
{
        char path[64], line[256];
        long kb = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        f = fopen(path, "r");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "VmRSS:", 6) == 0)
                        kb = atol(line + 6);
        fclose(f);
        return kb;
}

static volatile sig_atomic_t subscribe_requested;

static void on_usr1(int sig)
{
        (void)sig;
        subscribe_requested = 1;
}

/* The state shared by cmd_ws and the helpers below. */
static struct conn *cs;
static int ws_n, ws_ep, ws_ready, ws_dead, ws_lost, ws_pending;

/* Ends connection c; reason < 0 when take_frames counted it already. */
static void kill_conn(struct conn *c, int reason)
{
        if (reason >= 0)
                deaths[c->state == WS_READY ? DEATH_LOST : reason]++;
        if (c->state == WS_READY) {
                ws_lost++;
                ws_ready--;
        } else {
                ws_dead++;
                if (c->state != WS_UNOPENED)
                        ws_pending--;
        }
        if (c->fd >= 0) {
                epoll_ctl(ws_ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
        }
        c->fd = -1;
        c->state = WS_DEAD;
}

static int cmd_ws(int argc, char **argv)
{
        char host[256], req[512];
        int port, n = atoi(opt(argc, argv, "--conns", "100"));
        int pid = atoi(opt(argc, argv, "--pid", "0")), idle;
        int max_pending = atoi(opt(argc, argv, "--max-pending", "256"));
        int64_t setup_timeout =
                atoll(opt(argc, argv, "--setup-timeout-ms", "30000")) * 1000000;
        long linger_ms = atol(opt(argc, argv, "--linger-ms", "0"));
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        const char *model = opt(argc, argv, "--model", "bench-model");
        const char *srcspec = opt(argc, argv, "--source-addresses", NULL);
        struct sockaddr_in dst = {.sin_family = AF_INET};
        struct epoll_event ev, evs[1024];
        long rss_before, rss_ready;
        int64_t t0, end, first_ready = 0, next_sweep = 0;
        int opened = 0, sweep_from = 0, reached = 0, nsubscribed = 0;

        if (n < 1)
                n = 1;
        idle = flag(argc, argv, "--idle");
        if (srcspec && parse_sources(srcspec) < 0) {
                fprintf(stderr, "mls-loadgen: bad --source-addresses %s\n",
                        srcspec);
                return 2;
        }
        recv_options(argc, argv, 64);
        raise_nofile((rlim_t)n + 64);
        split_addr(opt(argc, argv, "--gateway", "127.0.0.1:4000"), host,
                   sizeof(host), &port);
        dst.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
                fprintf(stderr, "mls-loadgen: --gateway needs an IPv4 "
                                "address:port\n");
                return 2;
        }
        signal(SIGUSR1, on_usr1);
        cs = calloc((size_t)n, sizeof(*cs));
        ws_n = n;
        ws_ep = epoll_create1(0);
        rss_before = pid ? rss_kb(pid) : -1;
        snprintf(req, sizeof(req),
                 "GET /graphql HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: "
                 "websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                 "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
                 host, port);
        for (int i = 0; i < n; i++) {
                cs[i].fd = -1;
                cs[i].state = WS_UNOPENED;
        }
        t0 = now_ns();
        /* set-up is bounded by the per-connection timeout, not by secs */
        end = INT64_MAX;
        while (now_ns() < end && !finished(now_ns())) {
                int64_t now = now_ns();
                int k;

                /* open more while fewer than max_pending are in set-up */
                while (opened < n &&
                       (max_pending <= 0 || ws_pending < max_pending)) {
                        struct conn *c = &cs[opened];

                        c->cap = idle || n > 2000 ? 1 << 12 : 1 << 16;
                        c->in = malloc(c->cap);
                        c->opened_ns = now_ns();
                        c->fd = connect_nb(
                                &dst,
                                nsources ? &sources[(size_t)opened % nsources]
                                         : NULL);
                        opened++;
                        if (c->fd < 0) {
                                kill_conn(c, DEATH_CONNECT);
                                continue;
                        }
                        c->state = WS_CONNECTING;
                        ws_pending++;
                        ev.events = EPOLLIN | EPOLLOUT;
                        ev.data.u32 = (uint32_t)(c - cs);
                        epoll_ctl(ws_ep, EPOLL_CTL_ADD, c->fd, &ev);
                }
                if (subscribe_requested) {
                        /* SIGUSR1: the idle connections subscribe now, and
                         * those that become ready later right away */
                        subscribe_requested = 0;
                        if (idle) {
                                idle = 0;
                                for (int i = 0; i < opened; i++)
                                        if (cs[i].state == WS_READY &&
                                            !cs[i].subscribed) {
                                                subscribe(&cs[i], model);
                                                nsubscribed++;
                                        }
                                printf("{\"subscribed\":%d}\n", nsubscribed);
                                fflush(stdout);
                        }
                }
                if (now >= next_sweep) {
                        /* connections stuck in set-up */
                        while (sweep_from < opened &&
                               cs[sweep_from].state >= WS_READY)
                                sweep_from++;
                        for (int i = sweep_from; i < opened; i++)
                                if (cs[i].state != WS_READY &&
                                    cs[i].state != WS_DEAD &&
                                    now - cs[i].opened_ns > setup_timeout) {
                                        note_error("not ready %lld ms after "
                                                   "connect()",
                                                   (long long)(setup_timeout /
                                                               1000000));
                                        kill_conn(&cs[i], DEATH_TIMEOUT);
                                }
                        next_sweep = now + 100000000;
                }
                if (!reached && ws_ready + ws_dead + ws_lost == n &&
                    (ws_dead || ws_lost))
                        break; /* some failed: the rest can't become ready */
                k = epoll_wait(ws_ep, evs, 1024, 50);
                for (int j = 0; j < k; j++) {
                        struct conn *c = &cs[evs[j].data.u32];
                        if (c->state == WS_DEAD)
                                continue;
                        if (c->state == WS_CONNECTING &&
                            (evs[j].events & (EPOLLERR | EPOLLHUP))) {
                                int err = 0;
                                socklen_t len = sizeof(err);
                                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
                                           &len);
                                note_error("connect: %s",
                                           strerror(err ? err : ECONNRESET));
                                kill_conn(c, DEATH_REFUSED);
                                continue;
                        }
                        if (c->state == WS_CONNECTING &&
                            (evs[j].events & EPOLLOUT)) {
                                if (send(c->fd, req, strlen(req),
                                         MSG_NOSIGNAL) < 0) {
                                        note_error("send: %s", strerror(errno));
                                        kill_conn(c, DEATH_EOF);
                                        continue;
                                }
                                c->state = WS_HANDSHAKE;
                                ev.events = EPOLLIN;
                                ev.data.u32 = evs[j].data.u32;
                                epoll_ctl(ws_ep, EPOLL_CTL_MOD, c->fd, &ev);
                        }
                        if (evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                                enum ws_state before = c->state;
                                ssize_t r;
                                if (c->len == c->cap) {
                                        c->cap *= 2;
                                        c->in = realloc(c->in, c->cap);
                                }
                                r = recv(c->fd, c->in + c->len, c->cap - c->len,
                                         0);
                                if (r < 0 && errno == EAGAIN)
                                        continue;
                                if (r <= 0) {
                                        note_error("%s from the gateway",
                                                   r == 0 ? "EOF"
                                                          : strerror(errno));
                                        kill_conn(c, DEATH_EOF);
                                        continue;
                                }
                                c->len += (size_t)r;
                                if (take_frames(c, model, idle) < 0) {
                                        kill_conn(c, -1);
                                        continue;
                                }
                                if (before != WS_READY &&
                                    c->state == WS_READY) {
                                        ws_pending--;
                                        if (++ws_ready == n && !reached) {
                                                reached = 1;
                                                first_ready = now_ns();
                                                printf("{\"ready\":%d,"
                                                       "\"setup_s\":%.3f}\n",
                                                       ws_ready,
                                                       (double)(first_ready -
                                                                t0) /
                                                               1e9);
                                                fflush(stdout);
                                                end = first_ready +
                                                      (int64_t)(secs * 1e9);
                                        }
                                }
                        }
                }
        }
        rss_ready = pid ? rss_kb(pid) : -1;
        printf("{\"conns\":%d,\"ready\":%d,\"dead\":%d,\"lost\":%d,"
               "\"opened\":%d,\"all_ready\":%s,\"setup_s\":%.3f,"
               "\"dead_by\":{",
               n, ws_ready, ws_dead + ws_lost, ws_lost, opened,
               reached ? "true" : "false",
               (double)((reached ? first_ready : now_ns()) - t0) / 1e9);
        for (int d = 0; d < DEATHS; d++)
                printf("%s\"%s\":%lld", d ? "," : "", death_names[d],
                       (long long)deaths[d]);
        printf("},\"first_error\":\"%s\",\"source_addresses\":%zu,"
               "\"deliveries\":%lld,"
               "\"deliveries_per_s\":%.1f,\"gateway_rss_kb_before\":%ld,"
               "\"gateway_rss_kb_connected\":%ld,",
               first_error, nsources, (long long)total, rate(), rss_before,
               rss_ready);
        print_receipts();
        printf("}\n");
        fflush(stdout);
        /* --linger-ms: the connections stay open a while after the result
         * (the caller reads the gateway's counters before they close) */
        if (linger_ms > 0) {
                struct timespec ts = {linger_ms / 1000,
                                      (linger_ms % 1000) * 1000000};
                nanosleep(&ts, NULL);
        }
        for (int i = 0; i < n; i++) {
                if (cs[i].fd >= 0)
                        close(cs[i].fd);
                free(cs[i].in);
        }
        free(cs);
        return reached && !ws_lost ? 0 : 1;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr,
                        "usage: mls-loadgen pub|sub|kafka|ws [options]\n");
                return 2;
        }
        if (strcmp(argv[1], "pub") == 0)
                return cmd_pub(argc - 2, argv + 2);
        if (strcmp(argv[1], "sub") == 0)
                return cmd_sub(argc - 2, argv + 2);
        if (strcmp(argv[1], "kafka") == 0)
                return cmd_kafka(argc - 2, argv + 2);
        if (strcmp(argv[1], "ws") == 0)
                return cmd_ws(argc - 2, argv + 2);
        fprintf(stderr, "mls-loadgen: unknown mode %s\n", argv[1]);
        return 2;
}
