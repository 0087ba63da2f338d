#include "gateway/redis_uv.h"

#include <stdlib.h>

struct redis_uv {
        redisAsyncContext *ac; /* NULL once hiredis has let go */
        uv_poll_t poll;
        int events; /* what the poll handle watches now */
};

static void on_poll(uv_poll_t *h, int status, int events)
{
        struct redis_uv *r = h->data;

        /* on an error, a read finds it and hiredis disconnects */
        if (status < 0)
                events = UV_READABLE;
        if (r->ac && (events & UV_READABLE))
                redisAsyncHandleRead(r->ac);
        if (r->ac && (events & UV_WRITABLE))
                redisAsyncHandleWrite(r->ac);
}

/* Watches for want; restarts the poll handle only when that changes. */
static void watch(struct redis_uv *r, int want)
{
        if (want == r->events)
                return;
        r->events = want;
        if (want)
                uv_poll_start(&r->poll, want, on_poll);
        else
                uv_poll_stop(&r->poll);
}

static void add_read(void *p)
{
        struct redis_uv *r = p;

        watch(r, r->events | UV_READABLE);
}

static void del_read(void *p)
{
        struct redis_uv *r = p;

        watch(r, r->events & ~UV_READABLE);
}

static void add_write(void *p)
{
        struct redis_uv *r = p;

        watch(r, r->events | UV_WRITABLE);
}

static void del_write(void *p)
{
        struct redis_uv *r = p;

        watch(r, r->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
        free(h->data);
}

static void cleanup(void *p)
{
        struct redis_uv *r = p;

        r->ac = NULL;
        uv_close((uv_handle_t *)&r->poll, on_closed);
}

int mls_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
        struct redis_uv *r;

        if (ac->ev.data)
                return -1;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -1;
        if (uv_poll_init(loop, &r->poll, ac->c.fd) != 0) {
                free(r);
                return -1;
        }
        r->ac = ac;
        r->poll.data = r;
        ac->ev.data = r;
        ac->ev.addRead = add_read;
        ac->ev.delRead = del_read;
        ac->ev.addWrite = add_write;
        ac->ev.delWrite = del_write;
        ac->ev.cleanup = cleanup;
        return 0;
}
