#include "gateway/redis_sub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/channel.h"
#include "common/log.h"
#include "common/strmap.h"
#include "gateway/shard_conn.h"

#define BACKOFF_START_MS 50
#define CONNECT_TIMEOUT_MS 3000

struct mls_redis_sub {
        uv_loop_t *loop;
        struct mls_redis_sub_conf conf;
        char *channel; /* the main one: per-model mode's control channel */
        char *prefix;  /* per-model mode: of the model channels */
        mls_shard_conn_t *conn;
        uv_timer_t retry;
        int subscribed, closing, warned;
        int main_once; /* the main channel was confirmed before */
        int64_t backoff_ms;
        uint64_t errors; /* connections failed or lost */
        /* per-model mode: channel name -> struct watch */
        struct mls_strmap watches;
        size_t nsubscribed; /* channels confirmed, the main one included */
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
        s->errors++;
}

static int send_sub(mls_redis_sub_t *s, int on, const char *ch, size_t len)
{
        const char *argv[2] = {on ? "SUBSCRIBE" : "UNSUBSCRIBE", ch};
        size_t argvlen[2] = {strlen(argv[0]), len};

        return mls_shard_conn_command(s->conn, 2, argv, argvlen);
}

/* Sends what a watched channel needs to match its wanted state, unless a
 * command for it is in flight; forgets it once unwanted and unsubscribed. */
static void reconcile(mls_redis_sub_t *s, struct watch *w)
{
        if (w->inflight)
                return;
        if (!w->wanted && !w->subscribed) {
                mls_strmap_remove(&s->watches, w->key->key, w->key->klen);
                free(w);
                return;
        }
        if (!s->conn || !mls_shard_conn_ready(s->conn) ||
            w->wanted == w->subscribed)
                return;
        if (send_sub(s, w->wanted, w->key->key, w->key->klen) == 0)
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

/* A reply or push on the connection: shard_conn made sure it is an error
 * or an array of three or more whose kind and channel are strings. */
static void on_reply(void *opaque, mls_shard_conn_t *c, const redisReply *r)
{
        mls_redis_sub_t *s = opaque;
        const redisReply *kind, *ch, *payload;

        (void)c;
        if (r->type == REDIS_REPLY_ERROR) {
                mls_warn("redis %s:%d: SUBSCRIBE: %s", s->conf.url.host,
                         s->conf.url.port, r->str);
                return;
        }
        kind = r->element[0];
        ch = r->element[1];
        payload = r->element[2];
        if (strcmp(kind->str, "message") == 0) {
                if (payload->type == REDIS_REPLY_STRING)
                        s->conf.on_message(s->conf.opaque, payload->str,
                                           payload->len);
        } else if (strcmp(kind->str, "subscribe") == 0 ||
                   strcmp(kind->str, "unsubscribe") == 0) {
                confirmed(s, ch->str, ch->len, kind->str[0] == 's');
        }
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

static void on_closed(void *opaque, mls_shard_conn_t *c, const char *why,
                      int oversize)
{
        mls_redis_sub_t *s = opaque;

        if (oversize) {
                mls_warn("redis %s:%d: a message on %s is larger than %zu "
                         "bytes (GATEWAY_MAX_PAYLOAD_BYTES); reconnecting",
                         s->conf.url.host, s->conf.url.port, s->channel,
                         s->conf.max_reply_bytes);
        }
        mls_shard_conn_close(c);
        s->conn = NULL;
        /* every subscription went with the connection */
        mls_strmap_foreach(&s->watches, reset_watch, NULL);
        s->nsubscribed = 0;
        reconcile_all(s); /* forgets the unwanted ones */
        set_state(s, 0);
        schedule_retry(s, oversize ? "message over the size limit" : why);
}

static void on_ready(void *opaque, mls_shard_conn_t *c)
{
        mls_redis_sub_t *s = opaque;

        if (send_sub(s, 1, s->channel, strlen(s->channel)) < 0) {
                on_closed(s, c, "cannot send SUBSCRIBE", 0);
                return;
        }
        reconcile_all(s);
}

static void connect_now(mls_redis_sub_t *s)
{
        struct mls_shard_conn_conf cc = {
                .host = s->conf.url.host,
                .port = s->conf.url.port,
                .user = s->conf.url.user,
                .password = s->conf.url.password,
                .max_reply_bytes = s->conf.max_reply_bytes,
                .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                .ping_ms = s->conf.ping_ms,
                .pubsub = 1,
                .on_ready = on_ready,
                .on_reply = on_reply,
                .on_closed = on_closed,
                .opaque = s,
        };
        char errstr[160];

        if (s->closing || s->conn)
                return;
        s->conn = mls_shard_conn_new(s->loop, &cc, errstr, sizeof(errstr));
        if (!s->conn)
                schedule_retry(s, errstr);
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

uint64_t mls_redis_sub_errors(const mls_redis_sub_t *s)
{
        return s->errors;
}

void mls_redis_sub_close(mls_redis_sub_t *s)
{
        if (!s || s->closing)
                return;
        s->closing = 1;
        s->subscribed = 0;
        mls_shard_conn_close(s->conn); /* no callback after it */
        s->conn = NULL;
        uv_timer_stop(&s->retry);
        uv_close((uv_handle_t *)&s->retry, NULL);
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
