#include "gateway/redis_sub.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/log.h"

#define BACKOFF_START_MS 50
#define CONNECT_TIMEOUT_MS 3000

struct mls_redis_sub {
        uv_loop_t *loop;
        struct mls_redis_sub_conf conf;
        char *channel;
        redisAsyncContext *ac;
        uv_getaddrinfo_t resolve;
        uv_timer_t retry;
        uv_check_t check;
        int resolving, connecting, subscribed, closing, warned;
        int64_t backoff_ms;
        uint64_t oversize, reconnects;
};

static void connect_now(mls_redis_sub_t *s);

static void set_state(mls_redis_sub_t *s, int up)
{
        if (s->subscribed == up)
                return;
        s->subscribed = up;
        if (!s->closing && s->conf.on_state)
                s->conf.on_state(s->conf.opaque, up);
}

static void on_retry(uv_timer_t *t)
{
        connect_now(t->data);
}

/* Schedules the next attempt; the first failure after a success is a
 * warning, the ones after it are debug lines. */
static void schedule_retry(mls_redis_sub_t *s, const char *why)
{
        if (s->closing)
                return;
        if (!s->warned)
                mls_warn("redis %s:%d: %s; retrying (backoff up to %lld ms)",
                         s->conf.url.host, s->conf.url.port, why,
                         (long long)s->conf.retry_max_ms);
        else
                mls_debug("redis %s:%d: %s; retrying in %lld ms",
                          s->conf.url.host, s->conf.url.port, why,
                          (long long)s->backoff_ms);
        s->warned = 1;
        uv_timer_start(&s->retry, on_retry, (uint64_t)s->backoff_ms, 0);
        s->backoff_ms *= 2;
        if (s->backoff_ms > s->conf.retry_max_ms)
                s->backoff_ms = s->conf.retry_max_ms;
        s->reconnects++;
}

/* Runs on every reply of the SUBSCRIBE (confirmation and messages), and
 * with reply NULL when the context goes away. */
static void on_sub(redisAsyncContext *ac, void *r, void *privdata)
{
        mls_redis_sub_t *s = privdata;
        redisReply *reply = r, *kind, *payload;

        (void)ac;
        if (!reply || s->closing)
                return;
        if (reply->type == REDIS_REPLY_ERROR) {
                mls_warn("redis SUBSCRIBE %s: %s", s->channel, reply->str);
                return;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
                return;
        kind = reply->element[0];
        payload = reply->element[2];
        if (kind->type != REDIS_REPLY_STRING)
                return;
        if (strcmp(kind->str, "message") == 0 &&
            payload->type == REDIS_REPLY_STRING) {
                s->conf.on_message(s->conf.opaque, payload->str, payload->len);
        } else if (strcmp(kind->str, "subscribe") == 0) {
                mls_info("redis %s:%d: subscribed to %s", s->conf.url.host,
                         s->conf.url.port, s->channel);
                s->backoff_ms = BACKOFF_START_MS;
                s->warned = 0;
                set_state(s, 1);
        }
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
        mls_redis_sub_t *s = privdata;
        redisReply *reply = r;

        if (reply && reply->type == REDIS_REPLY_ERROR && !s->closing) {
                mls_error("redis %s:%d: AUTH failed: %s (check REDIS_URL)",
                          s->conf.url.host, s->conf.url.port, reply->str);
                /* the disconnect callback schedules the retry */
                redisAsyncDisconnect(ac);
        }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
        mls_redis_sub_t *s = ac->data;

        s->connecting = 0;
        uv_timer_stop(&s->retry); /* the connect watchdog */
        if (status == REDIS_OK)
                return;
        /* hiredis frees the context after this callback */
        s->ac = NULL;
        schedule_retry(s, ac->errstr ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
        mls_redis_sub_t *s = ac->data;
        int mine = s->ac == ac; /* else on_check() dropped it and retries */

        if (mine)
                s->ac = NULL;
        set_state(s, 0);
        if (!s->closing && mine)
                schedule_retry(s, status == REDIS_OK || !ac->errstr
                                          ? "connection closed"
                                          : ac->errstr);
}

/* Gives up on a connection attempt from outside hiredis' callbacks. */
static void fail_connect(mls_redis_sub_t *s, const char *why)
{
        redisAsyncContext *ac = s->ac;

        s->ac = NULL;
        s->connecting = 0;
        redisAsyncFree(ac); /* not connected: no disconnect callback */
        schedule_retry(s, why);
}

static void on_watchdog(uv_timer_t *t)
{
        mls_redis_sub_t *s = t->data;

        if (s->ac && s->connecting)
                fail_connect(s, "connect timed out");
}

static void start_redis(mls_redis_sub_t *s, const char *ip)
{
        redisAsyncContext *ac = redisAsyncConnect(ip, s->conf.url.port);

        if (!ac) {
                schedule_retry(s, "out of memory");
                return;
        }
        if (ac->err) {
                char why[160];
                snprintf(why, sizeof(why), "%s", ac->errstr);
                redisAsyncFree(ac);
                schedule_retry(s, why);
                return;
        }
        ac->data = s;
        if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
                redisAsyncFree(ac);
                schedule_retry(s, "cannot attach to the event loop");
                return;
        }
        s->ac = ac;
        s->connecting = 1;
        uv_timer_start(&s->retry, on_watchdog, CONNECT_TIMEOUT_MS, 0);
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        if (s->conf.url.password[0]) {
                if (s->conf.url.user[0])
                        redisAsyncCommand(ac, on_auth, s, "AUTH %s %s",
                                          s->conf.url.user,
                                          s->conf.url.password);
                else
                        redisAsyncCommand(ac, on_auth, s, "AUTH %s",
                                          s->conf.url.password);
        }
        redisAsyncCommand(ac, on_sub, s, "SUBSCRIBE %b", s->channel,
                          strlen(s->channel));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
        mls_redis_sub_t *s = req->data;
        char ip[INET6_ADDRSTRLEN] = "";

        s->resolving = 0;
        if (status == UV_ECANCELED || s->closing) {
                uv_freeaddrinfo(res);
                return;
        }
        if (status < 0 || !res) {
                char why[320];
                snprintf(why, sizeof(why), "cannot resolve %s: %s",
                         s->conf.url.host, uv_strerror(status));
                uv_freeaddrinfo(res);
                schedule_retry(s, why);
                return;
        }
        if (res->ai_family == AF_INET6)
                uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip,
                            sizeof(ip));
        else
                uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
        uv_freeaddrinfo(res);
        start_redis(s, ip);
}

static void connect_now(mls_redis_sub_t *s)
{
        struct addrinfo hints;
        int rc;

        if (s->closing || s->ac || s->resolving)
                return;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        s->resolve.data = s;
        rc = uv_getaddrinfo(s->loop, &s->resolve, on_resolved, s->conf.url.host,
                            NULL, &hints);
        if (rc < 0) {
                schedule_retry(s, uv_strerror(rc));
                return;
        }
        s->resolving = 1;
}

/* After every loop iteration: hiredis buffers a whole reply before handing
 * it over, so a huge PUBLISH would grow its buffer without bound. */
static void on_check(uv_check_t *c)
{
        mls_redis_sub_t *s = c->data;
        redisReader *r;

        if (!s->ac || s->closing)
                return;
        if (s->connecting) {
                /* hiredis 0.14's libuv adapter drops poll errors, so a
                 * refused connect would never complete: look at the
                 * socket's pending error ourselves */
                int err = 0;
                socklen_t n = sizeof(err);
                if (getsockopt(s->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &n) ==
                            0 &&
                    err) {
                        char why[160];
                        snprintf(why, sizeof(why), "connect: %s",
                                 strerror(err));
                        fail_connect(s, why);
                }
                return;
        }
        r = s->ac->c.reader;
        if (r && r->len - r->pos > s->conf.max_reply_bytes) {
                redisAsyncContext *ac = s->ac;
                s->oversize++;
                mls_warn("redis %s:%d: a message on %s is larger than %zu "
                         "bytes (GATEWAY_MAX_PAYLOAD_BYTES); reconnecting",
                         s->conf.url.host, s->conf.url.port, s->channel,
                         s->conf.max_reply_bytes);
                /* not inside a hiredis callback, so freeing is safe */
                s->ac = NULL;
                set_state(s, 0);
                redisAsyncFree(ac);
                schedule_retry(s, "message over the size limit");
        }
}

mls_redis_sub_t *mls_redis_sub_new(uv_loop_t *loop,
                                   const struct mls_redis_sub_conf *conf,
                                   char *errstr, size_t errstr_size)
{
        mls_redis_sub_t *s = calloc(1, sizeof(*s));

        if (!s || !(s->channel = strdup(conf->channel))) {
                free(s);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        s->loop = loop;
        s->conf = *conf;
        s->conf.channel = s->channel;
        s->backoff_ms = BACKOFF_START_MS;
        uv_timer_init(loop, &s->retry);
        s->retry.data = s;
        uv_check_init(loop, &s->check);
        s->check.data = s;
        uv_check_start(&s->check, on_check);
        uv_unref((uv_handle_t *)&s->check);
        connect_now(s);
        return s;
}

int mls_redis_sub_connected(const mls_redis_sub_t *s)
{
        return s->subscribed;
}

uint64_t mls_redis_sub_oversize(const mls_redis_sub_t *s)
{
        return s->oversize;
}

uint64_t mls_redis_sub_reconnects(const mls_redis_sub_t *s)
{
        return s->reconnects;
}

void mls_redis_sub_close(mls_redis_sub_t *s)
{
        if (!s || s->closing)
                return;
        s->closing = 1;
        s->subscribed = 0;
        if (s->resolving)
                uv_cancel((uv_req_t *)&s->resolve);
        if (s->ac) {
                redisAsyncContext *ac = s->ac;
                s->ac = NULL;
                redisAsyncFree(ac); /* may call on_disconnect: no retry */
        }
        uv_timer_stop(&s->retry);
        uv_close((uv_handle_t *)&s->retry, NULL);
        uv_check_stop(&s->check);
        uv_close((uv_handle_t *)&s->check, NULL);
}

void mls_redis_sub_free(mls_redis_sub_t *s)
{
        if (!s)
                return;
        free(s->channel);
        free(s);
}
