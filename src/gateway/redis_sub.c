#include "gateway/redis_sub.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/channel.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/redis_replies.h"
#include "gateway/redis_uv.h"

#define BACKOFF_START_MS 50
#define CONNECT_TIMEOUT_MS 3000

struct mls_redis_sub {
        uv_loop_t *loop;
        struct mls_redis_sub_conf conf;
        char *channel; /* the main one: per-model mode's control channel */
        char *prefix;  /* per-model mode: of the model channels */
        redisAsyncContext *ac;
        uv_getaddrinfo_t resolve;
        uv_timer_t retry;
        uv_check_t check;
        int resolving, connecting, subscribed, closing, warned;
        int main_once; /* the main channel was confirmed before */
        int64_t backoff_ms;
        uint64_t oversize, reconnects;
        /* per-model mode: channel name -> struct watch */
        struct mls_strmap watches;
        size_t nsubscribed; /* channels confirmed, the main one included */
        /* the bound on the current connection's replies (its reader's) */
        struct mls_redis_replies_bound bound;
};

/* A model channel of the per-model mode. */
struct watch {
        int wanted;     /* a client watches the model */
        int subscribed; /* Redis confirmed the SUBSCRIBE */
        int lost;       /* was subscribed when the connection went */
        int inflight;   /* a SUBSCRIBE or UNSUBSCRIBE awaits its reply */
        struct mls_strmap_entry *key; /* the channel */
};

static void connect_now(mls_redis_sub_t *s);
static void lost_subscriptions(mls_redis_sub_t *s);

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

static void on_sub(redisAsyncContext *ac, void *r, void *privdata);

/* Sends what a watched channel needs to match its wanted state, unless a
 * command for it is in flight; forgets it once unwanted and unsubscribed. */
static void reconcile(mls_redis_sub_t *s, struct watch *w)
{
        const char *ch = w->key->key;
        size_t len = w->key->klen;

        if (w->inflight)
                return;
        if (!w->wanted && !w->subscribed) {
                mls_strmap_remove(&s->watches, ch, len);
                free(w);
                return;
        }
        if (!s->ac || w->wanted == w->subscribed)
                return;
        if (redisAsyncCommand(s->ac, on_sub, s,
                              w->wanted ? "SUBSCRIBE %b" : "UNSUBSCRIBE %b", ch,
                              len) == REDIS_OK)
                w->inflight = 1;
}

struct reconcile_all {
        mls_redis_sub_t *s;
        struct watch **list;
        size_t n;
};

static void collect(void *opaque, struct mls_strmap_entry *e)
{
        struct reconcile_all *a = opaque;

        a->list[a->n++] = e->value;
}

/* Every watched channel, after a (re)connect or a disconnect. */
static void reconcile_all(mls_redis_sub_t *s)
{
        struct reconcile_all a = {s, NULL, 0};

        if (!s->watches.count)
                return;
        a.list = malloc(s->watches.count * sizeof(*a.list));
        if (!a.list)
                return; /* retried at the next reconnect */
        mls_strmap_foreach(&s->watches, collect, &a);
        for (size_t i = 0; i < a.n; i++)
                reconcile(s, a.list[i]);
        free(a.list);
}

/* Redis confirmed a SUBSCRIBE (on 1) or UNSUBSCRIBE of ch. */
static void confirmed(mls_redis_sub_t *s, const char *ch, size_t len, int on)
{
        struct watch *w;

        if (len == strlen(s->channel) && memcmp(ch, s->channel, len) == 0) {
                if (!on)
                        return;
                mls_info("redis %s:%d: subscribed to %s", s->conf.url.host,
                         s->conf.url.port, s->channel);
                s->nsubscribed++;
                s->backoff_ms = BACKOFF_START_MS;
                s->warned = 0;
                /* the single channel again: every model may have missed
                 * predictions meanwhile */
                if (s->main_once && !s->conf.per_model && s->conf.on_gap)
                        s->conf.on_gap(s->conf.opaque, NULL, 0);
                s->main_once = 1;
                set_state(s, 1);
                return;
        }
        w = mls_strmap_get(&s->watches, ch, len);
        if (!w)
                return;
        if (on && !w->subscribed)
                s->nsubscribed++;
        else if (!on && w->subscribed)
                s->nsubscribed--;
        mls_debug("redis: %s %.*s", on ? "subscribed to" : "unsubscribed from",
                  (int)len, ch);
        w->subscribed = on;
        w->inflight = 0;
        if (on && w->lost) {
                size_t mlen;
                const char *model = mls_channel_model_of(s->prefix, w->key->key,
                                                         w->key->klen, &mlen);
                w->lost = 0;
                if (model && s->conf.on_gap)
                        s->conf.on_gap(s->conf.opaque, model, mlen);
        }
        reconcile(s, w);
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
                return;
        }
        if (reply->element[1]->type != REDIS_REPLY_STRING)
                return;
        if (strcmp(kind->str, "subscribe") == 0 ||
            strcmp(kind->str, "unsubscribe") == 0)
                confirmed(s, reply->element[1]->str, reply->element[1]->len,
                          kind->str[0] == 's');
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

        if (mine) {
                s->ac = NULL;
                lost_subscriptions(s);
        }
        set_state(s, 0);
        /* a reply refused for its size fails the reader as out of
         * memory: the bound says which limit it passed */
        if (!s->closing && mine)
                schedule_retry(s, s->bound.refused ? s->bound.refused
                                  : status == REDIS_OK || !ac->errstr
                                          ? "connection closed"
                                          : ac->errstr);
}

static void reset_watch(void *opaque, struct mls_strmap_entry *e)
{
        struct watch *w = e->value;

        (void)opaque;
        if (w->subscribed && w->wanted)
                w->lost = 1;
        w->subscribed = 0;
        w->inflight = 0;
}

/* The connection is gone, and every subscription with it. */
static void lost_subscriptions(mls_redis_sub_t *s)
{
        mls_strmap_foreach(&s->watches, reset_watch, NULL);
        s->nsubscribed = 0;
        reconcile_all(s); /* forgets the unwanted ones */
}

/* Gives up on a connection attempt from outside hiredis' callbacks. */
static void fail_connect(mls_redis_sub_t *s, const char *why)
{
        redisAsyncContext *ac = s->ac;

        s->ac = NULL;
        s->connecting = 0;
        redisAsyncFree(ac); /* not connected: no disconnect callback */
        lost_subscriptions(s);
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
        /* hiredis frees each reply after its callback, with fn */
        s->bound = (struct mls_redis_replies_bound){
                .max_unparsed = s->conf.max_reply_bytes, .pubsub = 1};
        mls_redis_replies_use(ac->c.reader, &s->bound);
        if (mls_redis_uv_attach(ac, s->loop) < 0) {
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
        reconcile_all(s);
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

/* Gives up the connection in the middle of a reply that passed a bound. */
static void drop_reply(mls_redis_sub_t *s, const char *why)
{
        redisAsyncContext *ac = s->ac;

        /* not inside a hiredis callback, so freeing is safe */
        s->ac = NULL;
        set_state(s, 0);
        redisAsyncFree(ac);
        lost_subscriptions(s);
        schedule_retry(s, why);
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
        if (r && mls_redis_line_unended(r)) {
                /* a server's doing, not a message's: warned once */
                drop_reply(s, MLS_REDIS_LINE_UNENDED);
        } else if (r && r->len - r->pos > s->conf.max_reply_bytes) {
                s->oversize++;
                mls_warn("redis %s:%d: a message on %s is larger than %zu "
                         "bytes (GATEWAY_MAX_PAYLOAD_BYTES); reconnecting",
                         s->conf.url.host, s->conf.url.port, s->channel,
                         s->conf.max_reply_bytes);
                drop_reply(s, "message over the size limit");
        }
}

mls_redis_sub_t *mls_redis_sub_new(uv_loop_t *loop,
                                   const struct mls_redis_sub_conf *conf,
                                   char *errstr, size_t errstr_size)
{
        mls_redis_sub_t *s = calloc(1, sizeof(*s));

        if (s) {
                struct mls_buf ch;
                mls_buf_init(&ch, 4096);
                if (conf->per_model
                            ? mls_channel_control(&ch, conf->channel) == 0
                            : mls_buf_puts(&ch, conf->channel) == 0)
                        s->channel = strndup(ch.data, ch.len);
                mls_buf_free(&ch);
        }
        if (s)
                s->prefix = strdup(conf->channel);
        if (!s || !s->channel || !s->prefix) {
                if (s) {
                        free(s->channel);
                        free(s->prefix);
                }
                free(s);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        mls_strmap_init(&s->watches);
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

static void set_wanted(mls_redis_sub_t *s, const char *model, size_t len,
                       int wanted)
{
        struct mls_buf ch;
        struct watch *w;

        if (!s->conf.per_model || s->closing)
                return;
        mls_buf_init(&ch, 4096);
        if (mls_channel_model(&ch, s->prefix, model, len) < 0) {
                mls_buf_free(&ch);
                return;
        }
        w = mls_strmap_get(&s->watches, ch.data, ch.len);
        if (!w && wanted) {
                w = calloc(1, sizeof(*w));
                if (w && !(w->key = mls_strmap_put(&s->watches, ch.data, ch.len,
                                                   w))) {
                        free(w);
                        w = NULL;
                }
                if (!w)
                        mls_error("redis: out of memory watching %.*s",
                                  (int)len, model);
        }
        mls_buf_free(&ch);
        if (!w)
                return;
        w->wanted = wanted;
        reconcile(s, w);
}

void mls_redis_sub_watch(mls_redis_sub_t *s, const char *model, size_t len)
{
        set_wanted(s, model, len, 1);
}

void mls_redis_sub_unwatch(mls_redis_sub_t *s, const char *model, size_t len)
{
        set_wanted(s, model, len, 0);
}

size_t mls_redis_sub_channels(const mls_redis_sub_t *s)
{
        return s->nsubscribed;
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
        mls_strmap_free(&s->watches, free);
        free(s->prefix);
        free(s->channel);
        free(s);
}
