/*
 * mls-loadgen: load and measurement client for the gateway benchmark.
 *
 *   mls-loadgen pub  --redis H:P --channel C --rate N --seconds S --model M
 *       PUBLISHes prediction payloads (DESIGN §4) at N/s; each carries the
 *       send time in metadata.sent_ns.
 *   mls-loadgen sub  --redis H:P --channel C --seconds S
 *       A bare Redis subscriber: the reference for deliveries and latency.
 *   mls-loadgen ws   --gateway H:P --conns N --model M --seconds S [--idle]
 *       N graphql-transport-ws clients subscribed to model M (or, with
 *       --idle, initialised and left idle); counts deliveries, measures
 *       latency from sent_ns, and reports resident memory of --pid.
 *
 * Each mode prints one JSON object. Only for loopback load tests.
 * Threads: one, with epoll.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

/* Latency samples in microseconds, for percentiles. */
static int64_t *lat;
static size_t nlat, caplat;

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

/* Finds "sent_ns":<digits> in a frame and samples now - it. */
static void sample_from(const char *p, size_t n, int64_t now)
{
        const char *k = memmem(p, n, "\"sent_ns\":", 10);

        if (k) {
                int64_t v = strtoll(k + 10, NULL, 10);
                if (v > 0)
                        sample((now - v) / 1000);
        }
}

static int cmd_pub(int argc, char **argv)
{
        char host[256], payload[1024];
        int port, rate = atoi(opt(argc, argv, "--rate", "10000"));
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        const char *chan = opt(argc, argv, "--channel", "ml:stream:inference");
        const char *model = opt(argc, argv, "--model", "bench-model");
        redisContext *c;
        int64_t start, sent = 0, total;

        split_addr(opt(argc, argv, "--redis", "127.0.0.1:6379"), host,
                   sizeof(host), &port);
        c = redisConnect(host, port);
        if (!c || c->err) {
                fprintf(stderr, "pub: cannot connect to redis\n");
                return 1;
        }
        total = (int64_t)(rate * secs);
        start = now_ns();
        while (sent < total) {
                int64_t due = start + sent * 1000000000LL / rate;
                int batch = 0;
                while (now_ns() < due) {
                        struct timespec ts = {0, 50000};
                        nanosleep(&ts, NULL);
                }
                /* Pipeline what is due now (keeps up at high rates). */
                while (sent < total &&
                       start + sent * 1000000000LL / rate <= now_ns() &&
                       batch < 256) {
                        int n = snprintf(
                                payload, sizeof(payload),
                                "{\"type\":\"prediction\",\"inference_id\":"
                                "\"b-%lld\",\"model_id\":\"%s\",\"input_id\":"
                                "\"in-%lld\",\"predictions\":[[0.93,0.07]],"
                                "\"latency_ms\":1.25,\"received_at\":"
                                "\"2026-11-27T00:00:00.000Z\",\"published_at\":"
                                "\"2026-11-27T00:00:00.001Z\",\"metadata\":{"
                                "\"tenant\":\"bench\",\"sent_ns\":%lld},"
                                "\"kafka\":{\"topic\":\"b\",\"partition\":0,"
                                "\"offset\":%lld}}",
                                (long long)sent, model, (long long)sent,
                                (long long)now_ns(), (long long)sent);
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
        printf("{\"published\":%lld,\"seconds\":%.3f}\n", (long long)sent,
               (double)(now_ns() - start) / 1e9);
        redisFree(c);
        return 0;
}

static int cmd_sub(int argc, char **argv)
{
        char host[256];
        int port;
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        const char *chan = opt(argc, argv, "--channel", "ml:stream:inference");
        redisContext *c;
        redisReply *r;
        int64_t first = 0, last = 0, count = 0, end;
        struct timeval tv = {0, 200000};

        split_addr(opt(argc, argv, "--redis", "127.0.0.1:6379"), host,
                   sizeof(host), &port);
        c = redisConnect(host, port);
        if (!c || c->err)
                return 1;
        r = redisCommand(c, "SUBSCRIBE %s", chan);
        freeReplyObject(r);
        redisSetTimeout(c, tv);
        printf("{\"ready\":true}\n");
        fflush(stdout);
        end = now_ns() + (int64_t)(secs * 1e9);
        while (now_ns() < end) {
                void *reply;
                if (redisGetReply(c, &reply) != REDIS_OK) {
                        if (c->err == REDIS_ERR_IO && errno == EAGAIN) {
                                c->err = 0;
                                continue;
                        }
                        break;
                }
                r = reply;
                if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
                        int64_t t = now_ns();
                        if (!first)
                                first = t;
                        last = t;
                        count++;
                        sample_from(r->element[2]->str, r->element[2]->len, t);
                }
                freeReplyObject(r);
        }
        printf("{\"received\":%lld,\"rate\":%.1f,\"p50_ms\":%.3f,"
               "\"p99_ms\":%.3f}\n",
               (long long)count,
               last > first ? (double)count * 1e9 / (double)(last - first)
                            : 0.0,
               pct(50), pct(99));
        return 0;
}

/* --- WebSocket client side ------------------------------------------- */

enum ws_state {
        WS_CONNECTING,
        WS_HANDSHAKE,
        WS_INIT,
        WS_READY,
        WS_DEAD,
};

struct conn {
        int fd;
        enum ws_state state;
        char *in;
        size_t len, cap;
        int64_t frames;
};

static int connect_nb(const char *host, int port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

        inet_pton(AF_INET, host, &sa.sin_addr);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
            errno != EINPROGRESS) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Sends one masked text frame (clients must mask). */
static void send_text(int fd, const char *s)
{
        size_t n = strlen(s), h = 0;
        unsigned char frame[4096];
        const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};

        if (n > sizeof(frame) - 16)
                return;
        frame[h++] = 0x81;
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

/* Consumes complete frames from c->in; returns -1 on close. */
static int take_frames(struct conn *c, const char *model, int idle)
{
        size_t off = 0;
        int64_t t = now_ns();

        if (c->state == WS_HANDSHAKE) {
                char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
                if (!end)
                        return 0;
                if (strncmp(c->in, "HTTP/1.1 101", 12) != 0)
                        return -1;
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
                if ((f[0] & 0x0f) == 0x8)
                        return -1;
                if (c->state == WS_INIT &&
                    memmem(f + h, n, "connection_ack", 14)) {
                        char sub[512];
                        if (!idle) {
                                snprintf(
                                        sub, sizeof(sub),
                                        "{\"id\":\"1\",\"type\":\"subscribe\","
                                        "\"payload\":{\"query\":\"subscription"
                                        "{mlInferenceStream(modelId:\\\"%s\\\")"
                                        "{inferenceId modelId inputId "
                                        "predictions latencyMs receivedAt "
                                        "metadata}}\"}}",
                                        model);
                                send_text(c->fd, sub);
                        }
                        c->state = WS_READY;
                } else if (c->state == WS_READY && (f[0] & 0x0f) == 0x1) {
                        c->frames++;
                        if (c->frames % 64 == 1)
                                sample_from((char *)f + h, n, t);
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

static int cmd_ws(int argc, char **argv)
{
        char host[256], req[512];
        int port, n = atoi(opt(argc, argv, "--conns", "100"));
        int pid = atoi(opt(argc, argv, "--pid", "0")), idle;
        double secs = atof(opt(argc, argv, "--seconds", "5"));
        const char *model = opt(argc, argv, "--model", "bench-model");
        struct conn *cs = calloc((size_t)n, sizeof(*cs));
        struct epoll_event ev, evs[256];
        struct rlimit rl = {65536, 65536};
        int ep = epoll_create1(0), ready = 0, dead = 0;
        long rss_before, rss_ready;
        int64_t t0, end, total = 0, first_ready = 0;

        idle = flag(argc, argv, "--idle");
        setrlimit(RLIMIT_NOFILE, &rl);
        split_addr(opt(argc, argv, "--gateway", "127.0.0.1:4000"), host,
                   sizeof(host), &port);
        rss_before = pid ? rss_kb(pid) : -1;
        snprintf(req, sizeof(req),
                 "GET /graphql HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: "
                 "websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                 "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
                 host, port);
        for (int i = 0; i < n; i++) {
                cs[i].fd = connect_nb(host, port);
                cs[i].cap = 1 << 16;
                cs[i].in = malloc(cs[i].cap);
                cs[i].state = cs[i].fd < 0 ? WS_DEAD : WS_CONNECTING;
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.u32 = (uint32_t)i;
                if (cs[i].fd >= 0)
                        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        }
        t0 = now_ns();
        end = t0 + (int64_t)(secs * 1e9) + 30000000000LL; /* + set-up */
        while (now_ns() < end) {
                int k = epoll_wait(ep, evs, 256, 100);
                for (int j = 0; j < k; j++) {
                        struct conn *c = &cs[evs[j].data.u32];
                        if (c->state == WS_CONNECTING &&
                            (evs[j].events & EPOLLOUT)) {
                                if (send(c->fd, req, strlen(req),
                                         MSG_NOSIGNAL) < 0) {
                                        c->state = WS_DEAD;
                                        continue;
                                }
                                c->state = WS_HANDSHAKE;
                                ev.events = EPOLLIN;
                                ev.data.u32 = evs[j].data.u32;
                                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        }
                        if (evs[j].events & (EPOLLIN | EPOLLHUP)) {
                                enum ws_state before = c->state;
                                ssize_t r = recv(c->fd, c->in + c->len,
                                                 c->cap - c->len, 0);
                                if (r > 0)
                                        c->len += (size_t)r;
                                if (r <= 0 || take_frames(c, model, idle) < 0) {
                                        if (c->state != WS_DEAD) {
                                                c->state = WS_DEAD;
                                                dead++;
                                                close(c->fd);
                                        }
                                        continue;
                                }
                                if (before != WS_READY &&
                                    c->state == WS_READY && ++ready == n) {
                                        first_ready = now_ns();
                                        printf("{\"ready\":%d}\n", ready);
                                        fflush(stdout);
                                        end = first_ready +
                                              (int64_t)(secs * 1e9);
                                }
                        }
                }
        }
        rss_ready = pid ? rss_kb(pid) : -1;
        for (int i = 0; i < n; i++) {
                total += cs[i].frames;
                if (cs[i].state != WS_DEAD)
                        close(cs[i].fd);
                free(cs[i].in);
        }
        printf("{\"conns\":%d,\"ready\":%d,\"dead\":%d,\"deliveries\":%lld,"
               "\"seconds\":%.3f,\"deliveries_per_s\":%.1f,\"p50_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"gateway_rss_kb_before\":%ld,"
               "\"gateway_rss_kb_connected\":%ld}\n",
               n, ready, dead, (long long)total, secs,
               first_ready ? (double)total / secs : 0.0, pct(50), pct(99),
               rss_before, rss_ready);
        free(cs);
        return ready == n ? 0 : 1;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: mls-loadgen pub|sub|ws [options]\n");
                return 2;
        }
        if (strcmp(argv[1], "pub") == 0)
                return cmd_pub(argc - 2, argv + 2);
        if (strcmp(argv[1], "sub") == 0)
                return cmd_sub(argc - 2, argv + 2);
        if (strcmp(argv[1], "ws") == 0)
                return cmd_ws(argc - 2, argv + 2);
        fprintf(stderr, "mls-loadgen: unknown mode %s\n", argv[1]);
        return 2;
}
