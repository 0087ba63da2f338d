/*
 * shard_conn.c's PING deadline against a fake Redis on a thread (blocking
 * sockets): answered PINGs keep the connection and are not handed over,
 * in either form; silence past twice ping_ms drops it and says why.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "gateway/shard_conn.h"
#include "test.h"

#define PING "*1\r\n$4\r\nPING\r\n"

struct fake {
        int lfd, port;
        int pings; /* PINGs received */
};

/* Answers the first PING as a plain connection does, the second as a
 * subscribed one does and sends a message right after; then reads
 * without a word until the client hangs up. */
static void *fake_redis(void *arg)
{
        static const char *const answers[] = {
                "+PONG\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
                             "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"};
        struct fake *f = arg;
        int fd = accept(f->lfd, NULL, NULL);
        char buf[4096];
        ssize_t n;

        while (fd >= 0 && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
                buf[n] = '\0';
                for (char *p = buf; (p = strstr(p, PING)); p += strlen(PING)) {
                        if (f->pings < 2) {
                                const char *a = answers[f->pings];
                                if (write(fd, a, strlen(a)) < 0)
                                        break;
                        }
                        f->pings++;
                }
        }
        if (fd >= 0)
                close(fd);
        return NULL;
}

struct seen {
        int replies, closed;
        char first[64], why[200];
};

static void on_ready(void *opaque, mls_shard_conn_t *c)
{
        (void)opaque;
        (void)c;
}

static void on_reply(void *opaque, mls_shard_conn_t *c, const redisReply *r)
{
        struct seen *s = opaque;

        (void)c;
        if (s->replies++ == 0 && r->type == REDIS_REPLY_ARRAY &&
            r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
                snprintf(s->first, sizeof(s->first), "%s:%s",
                         r->element[0]->str, r->element[2]->str);
}

static void on_closed(void *opaque, mls_shard_conn_t *c, const char *why,
                      int oversize)
{
        struct seen *s = opaque;

        (void)oversize;
        s->closed++;
        snprintf(s->why, sizeof(s->why), "%s", why);
        mls_shard_conn_close(c);
}

MLS_TEST(gateway_shard_conn_pings_a_silent_peer_then_gives_up)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t alen = sizeof(a);
        struct fake f = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
        struct seen seen = {0};
        struct mls_shard_conn_conf cc = {
                .host = "127.0.0.1",
                .max_reply_bytes = 65536,
                .connect_timeout_ms = 3000,
                .ping_ms = 50,
                .pubsub = 1,
                .on_ready = on_ready,
                .on_reply = on_reply,
                .on_closed = on_closed,
                .opaque = &seen,
        };
        char errstr[160];
        pthread_t th;
        uv_loop_t loop;
        mls_shard_conn_t *c;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(f.lfd >= 0);
        CHECK(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
        CHECK(listen(f.lfd, 1) == 0);
        CHECK(getsockname(f.lfd, (struct sockaddr *)&a, &alen) == 0);
        cc.port = ntohs(a.sin_port);
        CHECK(pthread_create(&th, NULL, fake_redis, &f) == 0);
        CHECK(uv_loop_init(&loop) == 0);
        c = mls_shard_conn_new(&loop, &cc, errstr, sizeof(errstr));
        CHECK(c != NULL);
        /* ends once the connection has given up and closed its handles */
        uv_run(&loop, UV_RUN_DEFAULT);
        pthread_join(th, NULL);
        close(f.lfd);
        uv_loop_close(&loop);
        /* both answers swallowed (a pong would fail the pub/sub check),
         * the message handed over */
        CHECK_INT_EQ(seen.replies, 1);
        CHECK_STR_EQ(seen.first, "message:hi");
        CHECK_INT_EQ(seen.closed, 1);
        CHECK_CONTAINS(seen.why, "a PING unanswered");
        CHECK_CONTAINS(seen.why, "nothing received in ");
        CHECK_INT_EQ(f.pings, 3);
}
