/*
 * The Redis sink's overlap of one batch with the next (submit): what
 * happens to a batch written ahead and not yet acknowledged when a
 * heartbeat is flushed behind it, or when the connection dies before its
 * replies come, or after them. Redis is played by a scripted server on
 * loopback, so that replies come exactly when the test needs them; the
 * integration tests (tests/integration/test_engine.py) run the same paths
 * against a real redis-server, where that timing cannot be chosen.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/metrics.h"
#include "common/redis_url.h"
#include "engine/redis_sink.h"
#include "test.h"

#define MAX_SEEN 32

/* The server's script, per connection (the first, then the others):
 * replies are held until the connection has received hold_until commands
 * (0: each is answered at once), and the first connection is closed,
 * unanswered, once it has received close_at commands (0: never). */
struct fake {
        int lfd, port;
        int hold_until, close_at;
        int answer_max;      /* the first connection answers no more (0: all) */
        atomic_int answered; /* replies the first connection sent */
        pthread_t thread;
        /* the payloads of the PUBLISH commands received, per connection */
        char seen[2][MAX_SEEN][32];
        int nseen[2];
        int conns;
        /* when set, the first connection answers its first command with
         * these bytes and then, with endless, with filler until the peer
         * goes (at most FILLER_MAX bytes); filler_sent counts it */
        const char *bad;
        int endless;
        int drip_ms; /* with endless: a byte of filler each drip_ms */
        size_t filler_sent;
};

#define FILLER_MAX ((size_t)64 << 20)

/* Answers with f->bad (and filler), then closes. */
static void misbehave(struct fake *f, int fd)
{
        char filler[4096];

        if (send(fd, f->bad, strlen(f->bad), MSG_NOSIGNAL) < 0 || !f->endless)
                return;
        memset(filler, 'x', sizeof(filler));
        while (f->filler_sent < FILLER_MAX) {
                ssize_t n;

                if (f->drip_ms) {
                        struct pollfd pfd = {.fd = fd, .events = POLLIN};
                        /* until the sink hangs up (readable: EOF) */
                        if (poll(&pfd, 1, f->drip_ms) != 0)
                                return;
                }
                n = send(fd, filler, f->drip_ms ? 1 : sizeof(filler),
                         MSG_NOSIGNAL);
                if (n <= 0)
                        return;
                f->filler_sent += (size_t)n;
        }
}

/* Reads one RESP command (an array of bulk strings) from buf[0..len);
 * returns the bytes it took, 0 when it is incomplete. argv gets up to 3
 * arguments, NUL-terminated into their own buffers. */
static size_t parse_command(const char *buf, size_t len, char argv[3][32])
{
        const char *p = buf, *end = buf + len;
        long n;

        if (len < 4 || *p != '*')
                return 0;
        n = strtol(p + 1, NULL, 10);
        if (!(p = memchr(p, '\n', (size_t)(end - p))))
                return 0;
        p++;
        for (long i = 0; i < n; i++) {
                long blen;
                if (p >= end || *p != '$')
                        return 0;
                blen = strtol(p + 1, NULL, 10);
                if (!(p = memchr(p, '\n', (size_t)(end - p))))
                        return 0;
                p++;
                if (end - p < blen + 2)
                        return 0;
                if (i < 3)
                        snprintf(argv[i], 32, "%.*s", (int)blen, p);
                p += blen + 2;
        }
        return (size_t)(p - buf);
}

static void answer(int fd, int n)
{
        for (int i = 0; i < n; i++)
                if (write(fd, ":1\r\n", 4) != 4)
                        return;
}

static void *serve(void *arg)
{
        struct fake *f = arg;

        for (int c = 0; c < 2; c++) {
                char buf[65536];
                size_t len = 0;
                int got = 0, owed = 0, answered = 0;
                int fd = accept(f->lfd, NULL, NULL);

                if (fd < 0)
                        return NULL;
                f->conns++;
                for (;;) {
                        char argv[3][32];
                        size_t used;
                        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
                        if (n <= 0)
                                break;
                        len += (size_t)n;
                        while ((used = parse_command(buf, len, argv)) > 0) {
                                memmove(buf, buf + used, len - used);
                                len -= used;
                                /* the sink's check that a connection
                                 * answers: not part of the script */
                                if (strcmp(argv[0], "PING") == 0) {
                                        if (write(fd, "+PONG\r\n", 7) != 7)
                                                break;
                                        continue;
                                }
                                got++;
                                owed++;
                                if (strcmp(argv[0], "PUBLISH") == 0 &&
                                    f->nseen[c] < MAX_SEEN)
                                        snprintf(f->seen[c][f->nseen[c]++], 32,
                                                 "%s", argv[2]);
                        }
                        if (c == 0 && f->close_at && got >= f->close_at)
                                break;
                        if (c == 0 && f->bad && got > 0) {
                                misbehave(f, fd);
                                break;
                        }
                        if (got >= f->hold_until) {
                                if (c == 0 && f->answer_max &&
                                    answered + owed > f->answer_max)
                                        owed = f->answer_max - answered;
                                answer(fd, owed);
                                answered += owed;
                                if (c == 0)
                                        atomic_store(&f->answered, answered);
                                owed = 0;
                        }
                }
                close(fd);
        }
        return NULL;
}

static int fake_start(struct fake *f, int hold_until, int close_at)
{
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);

        memset(f, 0, sizeof(*f));
        f->hold_until = hold_until;
        f->close_at = close_at;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
            listen(f->lfd, 4) ||
            getsockname(f->lfd, (struct sockaddr *)&sa, &sl))
                return -1;
        f->port = ntohs(sa.sin_port);
        return pthread_create(&f->thread, NULL, serve, f) == 0 ? 0 : -1;
}

/* Ends the server (a connection it still waits for is never made). */
static void fake_stop(struct fake *f)
{
        shutdown(f->lfd, SHUT_RDWR);
        close(f->lfd);
        pthread_join(f->thread, NULL);
}

static int sink_for(struct mls_sink *s, mls_metrics_t *m, int port)
{
        struct mls_redis_url url;

        memset(&url, 0, sizeof(url));
        snprintf(url.host, sizeof(url.host), "127.0.0.1");
        url.port = port;
        return mls_redis_sink_new(s, &url, "ch", 0, m);
}

static int queue(struct mls_sink *s, const char *payload)
{
        return s->ops->send(s->ctx, NULL, NULL, payload, strlen(payload), NULL,
                            NULL);
}

/* Connects s, submits the batch a1 a2 (written, its replies not awaited)
 * and queues the heartbeat hb behind it: 0 when every step succeeded. */
static int submit_then_heartbeat(struct mls_sink *s, char *err, size_t n)
{
        if (mls_sink_connect(s, err, n) < 0 || queue(s, "a1") < 0 ||
            queue(s, "a2") < 0)
                return -1;
        /* returns without the batch's replies: none comes before hb */
        if (s->ops->submit(s->ctx, err, n) < 0)
                return -1;
        return queue(s, "hb");
}

/* A heartbeat flushed while a submitted batch awaits its replies: the
 * flush waits for both, and the batch is not sent twice. */
MLS_TEST(redis_sink_heartbeat_behind_an_unacknowledged_batch)
{
        mls_metrics_t *m = mls_metrics_new();
        struct mls_sink s;
        struct fake f;
        char err[256] = "";

        /* nothing is answered before the heartbeat arrives */
        CHECK(fake_start(&f, 3, 0) == 0);
        CHECK(sink_for(&s, m, f.port) == 0);
        CHECK_INT_EQ(submit_then_heartbeat(&s, err, sizeof(err)), 0);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), 0);
        /* the three replies were read: the batch's and the heartbeat's */
        CHECK_INT_EQ(s.ops->receivers(s.ctx), 3);
        CHECK_INT_EQ(queue(&s, "b1"), 0);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), 0);
        CHECK_INT_EQ(s.ops->receivers(s.ctx), 1);
        mls_sink_destroy(&s);
        fake_stop(&f);
        CHECK_INT_EQ(f.conns, 1);
        CHECK_INT_EQ(f.nseen[0], 4);
        CHECK_STR_EQ(f.seen[0][0], "a1");
        CHECK_STR_EQ(f.seen[0][1], "a2");
        CHECK_STR_EQ(f.seen[0][2], "hb");
        CHECK_STR_EQ(f.seen[0][3], "b1");
        mls_metrics_free(m);
}

/* The connection dies after a submitted batch and a heartbeat were
 * written and before any reply: the heartbeat's flush fails, and on the
 * next connection the batch goes out again, ahead of what follows. */
MLS_TEST(redis_sink_lost_before_the_replies_sends_the_batch_again_first)
{
        mls_metrics_t *m = mls_metrics_new();
        struct mls_sink s;
        struct fake f;
        char err[256] = "";

        CHECK(fake_start(&f, 3, 3) == 0);
        CHECK(sink_for(&s, m, f.port) == 0);
        CHECK_INT_EQ(submit_then_heartbeat(&s, err, sizeof(err)), 0);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "redis 127.0.0.1:");
        CHECK_INT_EQ(s.ops->acked_ahead(s.ctx), 0);
        CHECK_INT_EQ(mls_sink_connected(&s), 0);
        /* the engine reconnects and flushes what it queued since */
        CHECK_INT_EQ(mls_sink_connect(&s, err, sizeof(err)), 0);
        CHECK_INT_EQ(queue(&s, "b1"), 0);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), 0);
        CHECK_INT_EQ(s.ops->receivers(s.ctx), 3);
        mls_sink_destroy(&s);
        fake_stop(&f);
        CHECK_INT_EQ(f.conns, 2);
        CHECK_INT_EQ(f.nseen[0], 3);
        CHECK_INT_EQ(f.nseen[1], 3);
        CHECK_STR_EQ(f.seen[1][0], "a1");
        CHECK_STR_EQ(f.seen[1][1], "a2");
        CHECK_STR_EQ(f.seen[1][2], "b1");
        mls_metrics_free(m);
}

/* The connection dies after Redis answered a submitted batch and before
 * it answered the heartbeat behind it: the heartbeat's flush fails, but
 * the batch is acknowledged (acked_ahead) and only the heartbeat is to be
 * sent again; the next connection never sees the batch. */
MLS_TEST(redis_sink_lost_after_the_batch_replies_keeps_it_acknowledged)
{
        mls_metrics_t *m = mls_metrics_new();
        struct mls_sink s;
        struct fake f;
        char err[256] = "";

        CHECK(fake_start(&f, 0, 3) == 0);
        f.answer_max = 2;
        CHECK(sink_for(&s, m, f.port) == 0);
        CHECK_INT_EQ(submit_then_heartbeat(&s, err, sizeof(err)), 0);
        /* the batch is answered before the heartbeat goes out (else the
         * server could read all three at once and answer none) */
        for (int i = 0; i < 5000 && atomic_load(&f.answered) < 2; i++)
                usleep(1000);
        CHECK_INT_EQ(atomic_load(&f.answered), 2);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "redis 127.0.0.1:");
        CHECK_INT_EQ(s.ops->acked_ahead(s.ctx), 1);
        CHECK_INT_EQ(mls_sink_connected(&s), 0);
        CHECK_INT_EQ(mls_sink_connect(&s, err, sizeof(err)), 0);
        CHECK_INT_EQ(queue(&s, "hb"), 0);
        CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), 0);
        CHECK_INT_EQ(s.ops->receivers(s.ctx), 1);
        mls_sink_destroy(&s);
        fake_stop(&f);
        CHECK_INT_EQ(f.conns, 2);
        CHECK_INT_EQ(f.nseen[0], 3);
        CHECK_INT_EQ(f.nseen[1], 1);
        CHECK_STR_EQ(f.seen[1][0], "hb");
        mls_metrics_free(m);
}

/* The replies PUBLISH never gets, and ones that never end: each drops the
 * connection with a reason that names it, within a bound on what the
 * sink reads, and the batch goes out again on the next connection. The
 * last is sent a byte each 250 ms, each read well within the socket's
 * timeout, so that it would reach the line bound only after hours: it is
 * given up once the reply has taken the I/O timeout (5 s) in all. */
MLS_TEST(redis_sink_refuses_replies_publish_never_gets)
{
        static const struct {
                const char *bad, *why;
                int endless, drip_ms;
                size_t filler_max; /* the most filler sent before hang-up */
        } cases[] = {
                {"*1000000000\r\n", "an array reply", 0, 0, 0},
                {"$3\r\nabc\r\n", "a bulk string reply", 0, 0, 0},
                {"$-1\r\n", "a nil reply", 0, 0, 0},
                /* within what the kernel buffers beyond the bound */
                {"+", "passed 64 KiB without ending", 1, 0, FILLER_MAX / 4},
                {"$2000000000\r\n", "passed 64 KiB without ending", 1, 0,
                 FILLER_MAX / 4},
                /* 5 s of a byte each 250 ms: about 20 */
                {"+", "no whole reply within 5000 ms", 1, 250, 64},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                mls_metrics_t *m = mls_metrics_new();
                struct mls_sink s;
                struct fake f;
                char err[256] = "";

                CHECK(fake_start(&f, 0, 0) == 0);
                f.bad = cases[i].bad;
                f.endless = cases[i].endless;
                f.drip_ms = cases[i].drip_ms;
                CHECK(sink_for(&s, m, f.port) == 0);
                CHECK_INT_EQ(mls_sink_connect(&s, err, sizeof(err)), 0);
                CHECK_INT_EQ(queue(&s, "p1"), 0);
                CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), -1);
                CHECK_CONTAINS(err, cases[i].why);
                CHECK_INT_EQ(mls_sink_connected(&s), 0);
                /* the filler stops when the sink hangs up */
                CHECK(f.filler_sent <= cases[i].filler_max);
                CHECK_INT_EQ(mls_sink_connect(&s, err, sizeof(err)), 0);
                CHECK_INT_EQ(queue(&s, "p2"), 0);
                CHECK_INT_EQ(s.ops->flush(s.ctx, err, sizeof(err)), 0);
                CHECK_INT_EQ(s.ops->receivers(s.ctx), 1);
                mls_sink_destroy(&s);
                fake_stop(&f);
                CHECK_INT_EQ(f.conns, 2);
                CHECK_INT_EQ(f.nseen[1], 1);
                CHECK_STR_EQ(f.seen[1][0], "p2");
                mls_metrics_free(m);
        }
}
