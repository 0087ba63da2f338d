#include "engine/redis_sink.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/redis_url.h"

#define CHUNK_BYTES ((size_t)8 << 20)

struct redis_sink {
        struct mls_redis_url url;
        char *channel;
        int per_model;
        struct mls_buf chan; /* the channel of the payload being sent */
        redisContext *c;
        struct mls_buf out; /* RESP commands of the batch, sent at flush */
        size_t queued;
        long long receivers; /* of the last flush */
        int failed;          /* an append failed since the last flush */
        mls_series_t *connected;
};

static void redis_destroy(void *ctx)
{
        struct redis_sink *s = ctx;

        if (!s)
                return;
        if (s->c)
                redisFree(s->c);
        free(s->channel);
        mls_buf_free(&s->chan);
        mls_buf_free(&s->out);
        free(s);
}

static int redis_connected(void *ctx)
{
        return ((struct redis_sink *)ctx)->c != NULL;
}

static void drop(struct redis_sink *s)
{
        if (s->c)
                redisFree(s->c);
        s->c = NULL;
        s->queued = 0;
        mls_buf_reset(&s->out);
        mls_series_set(s->connected, 0);
}

static int command(struct redis_sink *s, char *errstr, size_t errstr_size,
                   int argc, const char **argv)
{
        redisReply *r = redisCommandArgv(s->c, argc, argv, NULL);
        int rc = 0;

        if (!r) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s", s->url.host,
                         s->url.port, s->c->errstr);
                return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s: %s",
                         s->url.host, s->url.port, argv[0], r->str);
                rc = -1;
        }
        freeReplyObject(r);
        return rc;
}

static int redis_reconnect(void *ctx, char *errstr, size_t errstr_size)
{
        struct redis_sink *s = ctx;
        struct timeval tv = {.tv_sec = 2};

        drop(s);
        s->c = redisConnectWithTimeout(s->url.host, s->url.port, tv);
        if (!s->c || s->c->err) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s", s->url.host,
                         s->url.port, s->c ? s->c->errstr : "out of memory");
                drop(s);
                return -1;
        }
        tv.tv_sec = 5;
        redisSetTimeout(s->c, tv);
        redisEnableKeepAlive(s->c);
        if (s->url.password[0]) {
                const char *argv[3] = {"AUTH", s->url.user, s->url.password};
                int argc = 3;
                if (!s->url.user[0]) {
                        argv[1] = s->url.password;
                        argc = 2;
                }
                if (command(s, errstr, errstr_size, argc, argv) < 0) {
                        drop(s);
                        return -1;
                }
        }
        s->failed = 0;
        mls_series_set(s->connected, 1);
        return 0;
}

/* Appends "PUBLISH channel payload" in RESP to the batch buffer; flush
 * hands the whole batch to hiredis in one piece. */
static int redis_send(void *ctx, const struct mls_record *rec,
                      const char *model_id, const char *payload, size_t len,
                      const char *reason, const char *detail)
{
        struct redis_sink *s = ctx;
        const char *channel = s->channel;
        size_t clen = strlen(s->channel);

        (void)rec;
        (void)reason;
        (void)detail;
        if (!s->c) {
                s->failed = 1;
                return -1;
        }
        if (s->per_model) {
                mls_buf_reset(&s->chan);
                if ((model_id
                             ? mls_channel_model(&s->chan, s->channel, model_id,
                                                 strlen(model_id))
                             : mls_channel_control(&s->chan, s->channel)) < 0) {
                        drop(s);
                        s->failed = 1;
                        return -1;
                }
                channel = s->chan.data;
                clen = s->chan.len;
        }
        MLS_BUF_LIT(&s->out, "*3\r\n$7\r\nPUBLISH\r\n$");
        mls_buf_u64(&s->out, clen);
        MLS_BUF_LIT(&s->out, "\r\n");
        mls_buf_append(&s->out, channel, clen);
        MLS_BUF_LIT(&s->out, "\r\n$");
        mls_buf_u64(&s->out, len);
        MLS_BUF_LIT(&s->out, "\r\n");
        mls_buf_append(&s->out, payload, len);
        if (MLS_BUF_LIT(&s->out, "\r\n") < 0) {
                /* nothing of this batch may stay behind for the retry */
                drop(s);
                s->failed = 1;
                return -1;
        }
        s->queued++;
        /* Large batches go to hiredis in pieces, so this buffer never
         * holds more than one piece and a big payload. */
        if (s->out.len >= CHUNK_BYTES) {
                if (redisAppendFormattedCommand(s->c, s->out.data,
                                                s->out.len) != REDIS_OK) {
                        drop(s);
                        s->failed = 1;
                        return -1;
                }
                mls_buf_reset(&s->out);
        }
        return 0;
}

static int redis_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct redis_sink *s = ctx;
        int rc = 0;

        if (!s->c || s->failed) {
                snprintf(errstr, errstr_size, "redis %s:%d: not connected",
                         s->url.host, s->url.port);
                drop(s);
                return -1;
        }
        if (s->out.len > 0) {
                if (redisAppendFormattedCommand(s->c, s->out.data,
                                                s->out.len) != REDIS_OK) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        drop(s);
                        return -1;
                }
                mls_buf_reset(&s->out);
        }
        s->receivers = 0;
        while (s->queued > 0) {
                void *reply = NULL;
                redisReply *r;
                if (redisGetReply(s->c, &reply) != REDIS_OK) {
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 s->url.host, s->url.port, s->c->errstr);
                        drop(s);
                        return -1;
                }
                r = reply;
                if (r->type == REDIS_REPLY_INTEGER)
                        s->receivers += r->integer;
                if (r->type == REDIS_REPLY_ERROR && rc == 0) {
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 s->url.host, s->url.port, r->str);
                        rc = -1;
                }
                freeReplyObject(r);
                s->queued--;
        }
        return rc;
}

static long long redis_receivers(void *ctx)
{
        return ((struct redis_sink *)ctx)->receivers;
}

static const struct mls_sink_ops redis_ops = {
        .name = "redis",
        .send = redis_send,
        .flush = redis_flush,
        .receivers = redis_receivers,
        .reconnect = redis_reconnect,
        .connected = redis_connected,
        .destroy = redis_destroy,
};

int mls_redis_sink_new(struct mls_sink *sink, const struct mls_redis_url *url,
                       const char *channel, int per_model,
                       mls_metrics_t *metrics)
{
        struct redis_sink *s = calloc(1, sizeof(*s));

        sink->ops = NULL;
        sink->ctx = NULL;
        if (!s)
                return -1;
        s->url = *url;
        s->per_model = per_model;
        mls_buf_init(&s->chan, 65536);
        s->channel = strdup(channel);
        if (!s->channel) {
                free(s);
                return -1;
        }
        /* one piece plus the largest payload (ML_BATCH_MAX_OUTPUT_BYTES) */
        mls_buf_init(&s->out, ((size_t)1 << 30) + CHUNK_BYTES + 4096);
        s->connected = mls_series(
                mls_metric_new(metrics, MLS_GAUGE, "ml_stream_redis_connected",
                               "1 while the engine's Redis connection is up.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        sink->ops = &redis_ops;
        sink->ctx = s;
        return 0;
}
