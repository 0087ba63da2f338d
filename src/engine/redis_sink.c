#include "engine/redis_sink.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/redis_replies.h"
#include "common/redis_url.h"

#define CHUNK_BYTES ((size_t)8 << 20)

/*
 * Redis answers what the engine sends (AUTH, PUBLISH) with an integer, a
 * status or an error. The sink's reader makes only those, into the one
 * reply the sink keeps, so reading a batch's acknowledgments allocates
 * nothing; anything else (an array, a bulk string, a nil) fails the
 * reader, and so does a reply still unfinished after REPLY_MAX_BYTES: the
 * connection is dropped and what it had not acknowledged is sent again on
 * the next. What a server sends cannot grow the engine.
 */
#define REPLY_MAX_BYTES ((size_t)64 << 10)
/* Longest one read waits, and one reply (a server could send it a byte at
 * a time, each read in time). */
#define IO_TIMEOUT_MS 5000

struct sink_reply {
        redisReply r;
        char text[512];      /* a status or an error, cut short */
        const char *refused; /* why the reader failed, when it refused */
};

struct redis_sink {
        struct mls_redis_url url;
        char *channel;
        int per_model;
        int at_most_once;    /* MLS_REDIS_AT_MOST_ONCE */
        struct mls_buf chan; /* the channel of the payload being sent */
        redisContext *c;
        struct mls_buf out; /* RESP commands of the batch, sent at flush */
        size_t queued;
        /* the batch submit() handed over, unacknowledged: its commands,
         * kept until their replies are read, and to send again (ahead of
         * anything else) if the connection fails first */
        struct mls_buf ahead;
        size_t nahead;
        int ahead_unsent;        /* not written on this connection */
        int ahead_acked;         /* by the last flush, whatever followed */
        int chunked;             /* this batch went to hiredis in pieces */
        long long receivers;     /* of the last batch acknowledged; -1: none */
        struct sink_reply reply; /* the reader's one reply */
        int failed;              /* an append failed since the last flush */
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
        mls_buf_free(&s->ahead);
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
        s->chunked = 0;
        mls_buf_reset(&s->out);
        if (s->nahead && s->at_most_once) {
                /* it may have been published: never again */
                s->nahead = 0;
                mls_buf_reset(&s->ahead);
        } else if (s->nahead) {
                s->ahead_unsent = 1;
        }
        mls_series_set(s->connected, 0);
}

/* Says why the connection is gone (why may be s->c->errstr) and drops it:
 * what was not acknowledged is sent again on the next one (unless at most
 * once). Returns -1. */
static int lost(struct redis_sink *s, const char *why, char *errstr,
                size_t errstr_size)
{
        snprintf(errstr, errstr_size, "redis %s:%d: %s", s->url.host,
                 s->url.port, why);
        drop(s);
        return -1;
}

/* Hands hiredis the submitted batch again if this connection has not sent
 * it yet: it goes before anything queued after it. */
static int send_ahead(struct redis_sink *s)
{
        if (!s->ahead_unsent)
                return 0;
        if (redisAppendFormattedCommand(s->c, s->ahead.data, s->ahead.len) !=
            REDIS_OK)
                return -1;
        s->ahead_unsent = 0;
        return 0;
}

/* Hands hiredis what is queued (after the submitted batch, if it is to be
 * sent again); keep leaves it in s->out as well. */
static int send_queued(struct redis_sink *s, int keep, char *errstr,
                       size_t errstr_size)
{
        if (send_ahead(s) < 0 ||
            (s->out.len > 0 &&
             redisAppendFormattedCommand(s->c, s->out.data, s->out.len) !=
                     REDIS_OK))
                return lost(s, "out of memory", errstr, errstr_size);
        if (!keep)
                mls_buf_reset(&s->out);
        return 0;
}

static void *refuse(const redisReadTask *task, const char *why)
{
        ((struct sink_reply *)task->privdata)->refused = why;
        return NULL; /* fails the reader */
}

static void *reply_string(const redisReadTask *task, char *str, size_t len)
{
        struct sink_reply *sr = task->privdata;

        if (task->type != REDIS_REPLY_STATUS && task->type != REDIS_REPLY_ERROR)
                return refuse(task, "a bulk string reply, which nothing the "
                                    "engine sends is answered with");
        if (len >= sizeof(sr->text))
                len = sizeof(sr->text) - 1;
        memcpy(sr->text, str, len);
        sr->text[len] = '\0';
        sr->r = (redisReply){.type = task->type, .str = sr->text, .len = len};
        return &sr->r;
}

static void *reply_array(const redisReadTask *task, int elements)
{
        (void)elements;
        return refuse(task, "an array reply, which nothing the engine sends "
                            "is answered with");
}

static void *reply_integer(const redisReadTask *task, long long v)
{
        struct sink_reply *sr = task->privdata;

        sr->r = (redisReply){.type = REDIS_REPLY_INTEGER, .integer = v};
        return &sr->r;
}

static void *reply_nil(const redisReadTask *task)
{
        return refuse(task, "a nil reply, which nothing the engine sends is "
                            "answered with");
}

static void reply_free(void *reply)
{
        (void)reply; /* it lives in the sink */
}

/* not const: hiredis 0.14 takes it so (and never writes it) */
static redisReplyObjectFunctions reply_fns = {
        .createString = reply_string,
        .createArray = reply_array,
        .createInteger = reply_integer,
        .createNil = reply_nil,
        .freeObject = reply_free,
};

/* The next reply, bounded (mls_redis_get_reply): s->reply.r, valid until
 * the next. */
static int get_reply(struct redis_sink *s, redisReply **out, char *errstr,
                     size_t errstr_size)
{
        void *reply;

        if (mls_redis_get_reply(s->c, REPLY_MAX_BYTES, IO_TIMEOUT_MS,
                                &s->reply.refused, &reply) < 0)
                return lost(s, s->c->errstr, errstr, errstr_size);
        *out = reply;
        return 0;
}

/* Reads n replies and adds the receivers of those to PUBLISH to
 * s->receivers. Any failure, an error reply included, drops the
 * connection: what was not acknowledged is then sent again in full on the
 * next one (unless at most once). */
static int read_replies(struct redis_sink *s, size_t n, char *errstr,
                        size_t errstr_size)
{
        int rc = 0;

        for (; n > 0; n--) {
                redisReply *r;
                if (get_reply(s, &r, errstr, errstr_size) < 0)
                        return -1;
                if (r->type == REDIS_REPLY_INTEGER)
                        s->receivers += r->integer;
                if (r->type == REDIS_REPLY_ERROR && rc == 0) {
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 s->url.host, s->url.port, r->str);
                        rc = -1;
                }
        }
        if (rc < 0)
                drop(s);
        return rc;
}

static int command(struct redis_sink *s, char *errstr, size_t errstr_size,
                   int argc, const char **argv)
{
        redisReply *r;

        if (redisAppendCommandArgv(s->c, argc, argv, NULL) != REDIS_OK)
                return lost(s, s->c->errstr, errstr, errstr_size);
        if (get_reply(s, &r, errstr, errstr_size) < 0)
                return -1;
        if (r->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s: %s",
                         s->url.host, s->url.port, argv[0], r->str);
                return -1;
        }
        return 0;
}

static int redis_reconnect(void *ctx, char *errstr, size_t errstr_size)
{
        static const char *ping[] = {"PING"};
        struct redis_sink *s = ctx;
        struct timeval tv = {.tv_sec = 2};
        const char *auth[3];
        int nauth;

        drop(s);
        s->c = redisConnectWithTimeout(s->url.host, s->url.port, tv);
        if (!s->c || s->c->err)
                return lost(s, s->c ? s->c->errstr : "out of memory", errstr,
                            errstr_size);
        tv.tv_sec = IO_TIMEOUT_MS / 1000;
        redisSetTimeout(s->c, tv);
        redisEnableKeepAlive(s->c);
        s->reply.refused = NULL;
        s->c->reader->fn = &reply_fns;
        s->c->reader->privdata = &s->reply;
        if ((nauth = mls_redis_url_auth(&s->url, auth)) &&
            command(s, errstr, errstr_size, nauth, auth) < 0) {
                drop(s);
                return -1;
        }
        /* the kernel completes the handshake for a Redis that is stopped
         * or wedged: connected means it answered */
        if (command(s, errstr, errstr_size, 1, ping) < 0) {
                drop(s);
                return -1;
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
                s->chunked = 1;
                if (send_ahead(s) < 0 ||
                    redisAppendFormattedCommand(s->c, s->out.data,
                                                s->out.len) != REDIS_OK) {
                        drop(s);
                        s->failed = 1;
                        return -1;
                }
                mls_buf_reset(&s->out);
        }
        return 0;
}

/* Reads the submitted batch's replies, then those of what was queued
 * since: a failure in the second part leaves the first acknowledged (not
 * sent again; acked_ahead says so). */
static int redis_flush(void *ctx, char *errstr, size_t errstr_size)
{
        struct redis_sink *s = ctx;

        s->ahead_acked = 0;
        if (!s->c || s->failed)
                return lost(s, "not connected", errstr, errstr_size);
        if (s->nahead + s->queued > 0)
                s->receivers = 0;
        if (send_queued(s, 0, errstr, errstr_size) < 0 ||
            read_replies(s, s->nahead, errstr, errstr_size) < 0)
                return -1;
        if (s->nahead) {
                s->nahead = 0;
                mls_buf_reset(&s->ahead);
                s->ahead_acked = 1;
        }
        if (read_replies(s, s->queued, errstr, errstr_size) < 0)
                return -1;
        s->queued = 0;
        s->chunked = 0;
        return 0;
}

static int redis_acked_ahead(void *ctx)
{
        return ((struct redis_sink *)ctx)->ahead_acked;
}

/* 1 if Redis has closed a connection on which nothing is outstanding.
 * Without this check, a batch written after Redis went away would count
 * as submitted (its failure read only with the next batch's replies): the
 * engine would score one more batch into an outage instead of pausing. */
static int closed_by_peer(struct redis_sink *s)
{
        char byte;
        ssize_t n = recv(s->c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);

        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                          errno != EINTR);
}

/* Writes the batch out and returns once the one submitted before it is
 * acknowledged: while Redis works on this batch, the engine scores the
 * next. A batch too big to keep a copy of (sent in pieces) is flushed. */
static int redis_submit(void *ctx, char *errstr, size_t errstr_size)
{
        struct redis_sink *s = ctx;
        struct mls_buf t;
        int done = 0;

        s->ahead_acked = 0;
        if (!s->c || s->failed)
                return lost(s, "not connected", errstr, errstr_size);
        if (s->chunked)
                return redis_flush(ctx, errstr, errstr_size);
        if (!s->nahead && closed_by_peer(s))
                return lost(s, "connection closed by the server", errstr,
                            errstr_size);
        if (send_queued(s, 1, errstr, errstr_size) < 0)
                return -1;
        while (!done) {
                if (redisBufferWrite(s->c, &done) != REDIS_OK)
                        return lost(s, s->c->errstr, errstr, errstr_size);
        }
        if (s->nahead)
                s->receivers = 0;
        if (read_replies(s, s->nahead, errstr, errstr_size) < 0)
                return -1;
        t = s->ahead;
        s->ahead = s->out;
        s->out = t;
        mls_buf_reset(&s->out);
        s->nahead = s->queued;
        s->queued = 0;
        return 0;
}

static long long redis_receivers(void *ctx)
{
        return ((struct redis_sink *)ctx)->receivers;
}

static const struct mls_sink_ops redis_ops = {
        .name = "redis",
        .send = redis_send,
        .flush = redis_flush,
        .submit = redis_submit,
        .acked_ahead = redis_acked_ahead,
        .receivers = redis_receivers,
        .reconnect = redis_reconnect,
        .connected = redis_connected,
        .destroy = redis_destroy,
};

int mls_redis_sink_new(struct mls_sink *sink, const struct mls_redis_url *url,
                       const char *channel, unsigned flags,
                       mls_metrics_t *metrics)
{
        struct redis_sink *s = calloc(1, sizeof(*s));

        sink->ops = NULL;
        sink->ctx = NULL;
        if (!s)
                return -1;
        s->url = *url;
        s->per_model = (flags & MLS_REDIS_PER_MODEL) != 0;
        s->at_most_once = (flags & MLS_REDIS_AT_MOST_ONCE) != 0;
        s->receivers = -1;
        mls_buf_init(&s->chan, 65536);
        s->channel = strdup(channel);
        if (!s->channel) {
                free(s);
                return -1;
        }
        /* one piece plus the largest payload (ML_BATCH_MAX_OUTPUT_BYTES) */
        mls_buf_init(&s->out, ((size_t)1 << 30) + CHUNK_BYTES + 4096);
        mls_buf_init(&s->ahead, ((size_t)1 << 30) + CHUNK_BYTES + 4096);
        s->connected = mls_series(
                mls_metric_new(metrics, MLS_GAUGE, "ml_stream_redis_connected",
                               "1 while the engine's Redis connection is up.",
                               NULL, NULL, NULL, 0),
                NULL, NULL);
        sink->ops = &redis_ops;
        sink->ctx = s;
        return 0;
}
