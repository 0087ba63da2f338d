#include "gateway/shard_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/ioctl.h>

#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/redis_replies.h"

/* One read a loop turn, at most: what it brings is delivered and flushed
 * to the clients before more is read (libuv would read again and again
 * while reads fill the buffer, and clients' queues would overflow before
 * the end of the turn). */
#define READ_CHUNK 16384

struct mls_shard_conn {
        uv_loop_t *loop;
        struct mls_shard_conn_conf conf;
        char *host, *user, *password, *name;
        char addr[300];
        uv_getaddrinfo_t resolve;
        uv_connect_t connect;
        uv_tcp_t tcp;
        uv_timer_t timer;  /* the connect timeout, then the silence one */
        uv_check_t resume; /* reads again after a full read's turn */
        redisReader *reader;
        struct mls_redis_replies_bound bound; /* the reader's */
        int refs;      /* open handles and the pending resolve */
        int resolving; /* uv_getaddrinfo() has not called back */
        int connected; /* the TCP connection is up */
        int handshake; /* replies the handshake still awaits */
        int ready, dead, closing;
        uint64_t last_read;  /* loop time of the last bytes read */
        uint64_t pinged_at;  /* last_read when the last PING went out */
        unsigned pongs;      /* PING answers to swallow */
        char early_err[160]; /* a failure reported from the timer */
        char rbuf[READ_CHUNK];
};

/* One command being written. */
struct wreq {
        uv_write_t req;
        char *cmd;
};

static void unref(mls_shard_conn_t *c)
{
        if (--c->refs > 0)
                return;
        if (c->reader)
                redisReaderFree(c->reader);
        free(c->host);
        free(c->user);
        free(c->password);
        free(c->name);
        free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
        unref(h->data);
}

/* The connection failed or was lost: tells the owner, once. */
static void fail(mls_shard_conn_t *c, const char *why, int oversize)
{
        if (c->dead || c->closing)
                return;
        c->dead = 1;
        c->ready = 0;
        uv_timer_stop(&c->timer);
        if (c->connected)
                uv_read_stop((uv_stream_t *)&c->tcp);
        c->conf.on_closed(c->conf.opaque, c, why, oversize);
}

static void on_write(uv_write_t *req, int status)
{
        struct wreq *w = (struct wreq *)req;
        mls_shard_conn_t *c = req->handle->data;

        redisFreeCommand(w->cmd);
        free(w);
        if (status < 0 && status != UV_ECANCELED) {
                char why[160];
                snprintf(why, sizeof(why), "write: %s", uv_strerror(status));
                fail(c, why, 0);
        }
}

/* Writes one command; used by the handshake before the connection is
 * ready. */
static int send_argv(mls_shard_conn_t *c, int argc, const char **argv,
                     const size_t *argvlen)
{
        struct wreq *w;
        uv_buf_t b;
        int len;

        if (!c->connected || c->dead || c->closing)
                return -1;
        w = malloc(sizeof(*w));
        if (!w)
                return -1;
        len = redisFormatCommandArgv(&w->cmd, argc, argv, argvlen);
        if (len < 0) {
                free(w);
                return -1;
        }
        b = uv_buf_init(w->cmd, (unsigned)len);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
                redisFreeCommand(w->cmd);
                free(w);
                return -1;
        }
        return 0;
}

static void set_ready(mls_shard_conn_t *c)
{
        c->ready = 1;
        c->conf.on_ready(c->conf.opaque, c);
}

/* A reply to AUTH or CLIENT SETNAME. */
static void handshake_reply(mls_shard_conn_t *c, const redisReply *r,
                            int is_auth)
{
        if (r->type == REDIS_REPLY_ERROR) {
                if (is_auth) {
                        char why[300];
                        snprintf(why, sizeof(why),
                                 "AUTH failed: %s (check REDIS_URL)", r->str);
                        fail(c, why, 0);
                        return;
                }
                mls_warn("redis %s: CLIENT SETNAME: %s", c->addr, r->str);
        }
        if (--c->handshake == 0)
                set_ready(c);
}

/* The answer to a PING, in subscribed mode or not. */
static int is_pong(const redisReply *r)
{
        if (r->type == REDIS_REPLY_STATUS)
                return r->len == 4 && strcmp(r->str, "PONG") == 0;
        return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               strcmp(r->element[0]->str, "pong") == 0 &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               r->element[1]->len == 0;
}

/* Why r cannot be a reply on a subscribed connection, or NULL. */
static const char *not_pubsub(const redisReply *r)
{
        if (r->type == REDIS_REPLY_ERROR)
                return NULL;
        if (r->type != REDIS_REPLY_ARRAY)
                return "a pub/sub reply that is not an array";
        if (r->elements < 3)
                return "a pub/sub reply of fewer than three elements";
        if (r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_STRING)
                return "a pub/sub reply whose kind or channel is not a bulk "
                       "string";
        return NULL;
}

static int bytes_waiting(mls_shard_conn_t *c)
{
        uv_os_fd_t fd;
        int n = 0;

        return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
               ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Runs ping_ms after the last read, and ping_ms after a PING. */
static void on_quiet(uv_timer_t *t)
{
        mls_shard_conn_t *c = t->data;
        uint64_t ms = (uint64_t)c->conf.ping_ms;
        uint64_t quiet = uv_now(c->loop) - c->last_read;
        const char *argv[1] = {"PING"};

        if (quiet >= 2 * ms && bytes_waiting(c)) {
                /* the loop was held up: what came is read after timers */
                c->last_read = uv_now(c->loop);
                quiet = 0;
        } else if (quiet >= 2 * ms) {
                char why[160];
                snprintf(why, sizeof(why),
                         "nothing received in %llu ms, a PING unanswered",
                         (unsigned long long)quiet);
                fail(c, why, 0);
                return;
        }
        if (quiet >= ms && c->pinged_at != c->last_read) {
                if (send_argv(c, 1, argv, NULL) < 0) {
                        fail(c, "cannot send PING", 0);
                        return;
                }
                c->pinged_at = c->last_read;
                c->pongs++;
        }
        uv_timer_start(t, on_quiet, (quiet < ms ? ms : 2 * ms) - quiet, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
        mls_shard_conn_t *c = h->data;

        (void)hint;
        *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_resume(uv_check_t *h)
{
        mls_shard_conn_t *c = h->data;

        uv_check_stop(h);
        if (!c->dead && !c->closing &&
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
                fail(c, "cannot read", 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
        mls_shard_conn_t *c = s->data;
        const char *bad;
        void *reply;

        if (c->dead || c->closing)
                return;
        if (n < 0) {
                fail(c,
                     n == UV_EOF ? "connection closed by the node"
                                 : uv_strerror((int)n),
                     0);
                return;
        }
        if (n == 0)
                return;
        c->last_read = uv_now(c->loop);
        if (redisReaderFeed(c->reader, b->base, (size_t)n) != REDIS_OK) {
                fail(c, "out of memory", 0);
                return;
        }
        for (;;) {
                reply = NULL;
                if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
                        char why[200];
                        /* a reply refused for its size fails the reader
                         * as out of memory: the bound says which limit */
                        if (c->bound.refused)
                                snprintf(why, sizeof(why), "%s",
                                         c->bound.refused);
                        else
                                snprintf(why, sizeof(why), "protocol error: %s",
                                         c->reader->errstr);
                        fail(c, why, 0);
                        return;
                }
                if (!reply)
                        break;
                if (c->pongs && is_pong(reply)) {
                        c->pongs--;
                } else if (c->handshake > 0)
                        /* AUTH, when sent, comes first */
                        handshake_reply(c, reply,
                                        c->password &&
                                                c->handshake ==
                                                        1 + (c->name != NULL));
                else if (c->conf.pubsub && (bad = not_pubsub(reply)))
                        fail(c, bad, 0);
                else
                        c->conf.on_reply(c->conf.opaque, c, reply);
                c->reader->fn->freeObject(reply);
                if (c->dead || c->closing)
                        return;
        }
        if (mls_redis_line_unended(c->reader))
                fail(c, MLS_REDIS_LINE_UNENDED, 0);
        else if (c->reader->len - c->reader->pos > c->conf.max_reply_bytes)
                fail(c, "a reply is over the size limit", 1);
        else if ((size_t)n == sizeof(c->rbuf)) {
                /* more is likely waiting: after this turn's flush */
                uv_read_stop(s);
                uv_check_start(&c->resume, on_resume);
        }
}

static void on_connect(uv_connect_t *req, int status)
{
        mls_shard_conn_t *c = req->data;
        const char *argv[4];
        int rc;

        if (status == UV_ECANCELED || c->dead || c->closing)
                return;
        if (status < 0) {
                char why[160];
                snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
                fail(c, why, 0);
                return;
        }
        c->connected = 1;
        uv_timer_stop(&c->timer);
        c->last_read = uv_now(c->loop);
        c->pinged_at = c->last_read - 1;
        if (c->conf.ping_ms > 0)
                uv_timer_start(&c->timer, on_quiet, (uint64_t)c->conf.ping_ms,
                               0);
        uv_tcp_nodelay(&c->tcp, 1);
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rc < 0) {
                fail(c, uv_strerror(rc), 0);
                return;
        }
        c->handshake = (c->password != NULL) + (c->name != NULL);
        if (c->password) {
                int n = 0;
                argv[n++] = "AUTH";
                if (c->user)
                        argv[n++] = c->user;
                argv[n++] = c->password;
                rc = send_argv(c, n, argv, NULL);
                if (rc < 0) {
                        fail(c, "cannot send AUTH", 0);
                        return;
                }
        }
        if (c->name) {
                argv[0] = "CLIENT";
                argv[1] = "SETNAME";
                argv[2] = c->name;
                if (send_argv(c, 3, argv, NULL) < 0) {
                        fail(c, "cannot send CLIENT SETNAME", 0);
                        return;
                }
        }
        if (c->handshake == 0)
                set_ready(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
        mls_shard_conn_t *c = req->data;
        int rc;

        c->resolving = 0;
        if (status == UV_ECANCELED || c->dead || c->closing || status < 0 ||
            !res) {
                if (!(status == UV_ECANCELED || c->dead || c->closing)) {
                        char why[400];
                        snprintf(why, sizeof(why), "cannot resolve %s: %s",
                                 c->host, uv_strerror(status));
                        fail(c, why, 0);
                }
                uv_freeaddrinfo(res);
                unref(c);
                return;
        }
        c->connect.data = c;
        rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, on_connect);
        uv_freeaddrinfo(res);
        if (rc < 0) {
                char why[160];
                snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
                fail(c, why, 0);
        }
        unref(c);
}

static void on_timeout(uv_timer_t *t)
{
        mls_shard_conn_t *c = t->data;

        fail(c, c->early_err[0] ? c->early_err : "connect timed out", 0);
}

static char *dup_opt(const char *s, int *oom)
{
        char *d;

        if (!s || !s[0])
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = 1;
        return d;
}

mls_shard_conn_t *mls_shard_conn_new(uv_loop_t *loop,
                                     const struct mls_shard_conn_conf *conf,
                                     char *errstr, size_t errstr_size)
{
        mls_shard_conn_t *c = calloc(1, sizeof(*c));
        struct addrinfo hints;
        char port[16];
        int oom = 0, rc;

        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->loop = loop;
        c->conf = *conf;
        c->host = strdup(conf->host);
        c->user = dup_opt(conf->user, &oom);
        c->password = dup_opt(conf->password, &oom);
        c->name = dup_opt(conf->name, &oom);
        c->reader = redisReaderCreate();
        c->bound.max_unparsed = c->conf.max_reply_bytes;
        if (c->reader)
                mls_redis_replies_use(c->reader, &c->bound);
        if (!c->host || oom || !c->reader) {
                c->refs = 1;
                unref(c);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (c->password == NULL) {
                free(c->user);
                c->user = NULL;
        }
        snprintf(c->addr, sizeof(c->addr), "%s:%d", c->host, conf->port);
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        uv_check_init(loop, &c->resume);
        c->resume.data = c;
        c->refs = 3;
        uv_timer_start(&c->timer, on_timeout,
                       (uint64_t)conf->connect_timeout_ms, 0);
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", conf->port);
        c->resolve.data = c;
        rc = uv_getaddrinfo(loop, &c->resolve, on_resolved, c->host, port,
                            &hints);
        if (rc < 0) {
                /* reported from the loop, as every other failure */
                snprintf(c->early_err, sizeof(c->early_err),
                         "cannot resolve %s: %s", c->host, uv_strerror(rc));
                uv_timer_start(&c->timer, on_timeout, 0, 0);
        } else {
                c->resolving = 1;
                c->refs++;
        }
        return c;
}

int mls_shard_conn_command(mls_shard_conn_t *c, int argc, const char **argv,
                           const size_t *argvlen)
{
        if (!c->ready)
                return -1;
        return send_argv(c, argc, argv, argvlen);
}

int mls_shard_conn_ready(const mls_shard_conn_t *c)
{
        return c->ready;
}

const char *mls_shard_conn_addr(const mls_shard_conn_t *c)
{
        return c->addr;
}

void mls_shard_conn_close(mls_shard_conn_t *c)
{
        if (!c || c->closing)
                return;
        c->closing = 1;
        c->ready = 0;
        if (c->resolving)
                uv_cancel((uv_req_t *)&c->resolve);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->resume, on_handle_closed);
}
