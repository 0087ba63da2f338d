#include "common/redis_replies.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/clock.h"

/* Room the first block of a reply has beside what it is made for: a
 * pub/sub message's array, its two short strings and their objects. */
#define FIRST_ROOM 512
/* Most elements of one array: the largest mlstream asks for is a
 * cluster's slot map, at most one entry per slot (16,384). A header
 * claiming more would otherwise have its element table allocated and
 * zeroed before any element came. */
#define MAX_ELEMENTS 65536
/* Room for one reply's objects beyond twice the reader's cap on unparsed
 * bytes: a cluster's slot map of 16,384 ranges takes a few MB. */
#define OBJECTS_SLACK ((size_t)16 << 20)

/* A piece of memory that objects of one reply are carved from. The first
 * block of a reply (its root) keeps the last one, where room is looked
 * for. */
struct block {
        struct block *next, *last;
        size_t used, cap;
        size_t total; /* in a root: bytes of objects carved for the reply */
        max_align_t data[];
};

/* A reply object and the root block of the reply it belongs to. */
struct node {
        struct block *root;
        redisReply r;
};

static struct node *node_of(void *reply)
{
        return (struct node *)((char *)reply - offsetof(struct node, r));
}

static size_t aligned(size_t n)
{
        return (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) *
               sizeof(max_align_t);
}

/* A block with room for cap bytes, rounded up as carve() rounds: room
 * checks subtract what was carved from the room, which must not pass it. */
static struct block *block_new(size_t cap)
{
        struct block *b;

        cap = aligned(cap);
        b = malloc(sizeof(*b) + cap);

        if (!b)
                return NULL;
        b->next = b->last = NULL;
        b->used = b->total = 0;
        b->cap = cap;
        return b;
}

static void *carve(struct block *b, size_t n)
{
        void *p = (char *)b->data + b->used;

        b->used += aligned(n);
        return p;
}

/*
 * The most bytes of objects one reply may take. The reader's cap on
 * unparsed bytes does not bound them: an unfinished array's elements are
 * parsed, and their bytes released, as they come, so a server could grow
 * one reply without end (each 4-byte ":1\r\n" is a 64-byte object).
 */
static size_t objects_max(const redisReadTask *task)
{
        const struct mls_redis_replies_bound *b = task->privdata;

        return b && b->max_unparsed ? 2 * b->max_unparsed + OBJECTS_SLACK
                                    : (size_t)-1;
}

/* Records which limit a reply passed; returns NULL, which fails the reader
 * as out of memory. */
static void *refuse(const redisReadTask *task, const char *why)
{
        struct mls_redis_replies_bound *b = task->privdata;

        if (b)
                b->refused = why;
        return NULL;
}

#define TOO_MANY_OBJECTS                                                    \
        "a reply took more memory than mlstream allows one (twice the cap " \
        "on unparsed reply bytes plus 16 MiB)"

/* A zeroed node of type type with extra bytes after it, in the reply of
 * task: a new root block for a top-level object, else room in the
 * parent's reply. NULL when refused (past objects_max()) or when memory
 * runs out. */
static struct node *node_new(const redisReadTask *task, int type, size_t extra)
{
        size_t n = aligned(sizeof(struct node)) + extra;
        struct block *root, *b;
        struct node *nd;

        if (n > objects_max(task))
                return refuse(task, TOO_MANY_OBJECTS);
        if (!task->parent) {
                root = block_new(n + FIRST_ROOM);
                if (!root)
                        return NULL;
                root->last = root;
        } else {
                root = node_of(task->parent->obj)->root;
                if (root->total + n > objects_max(task))
                        return refuse(task, TOO_MANY_OBJECTS);
                b = root->last;
                if (b->cap - b->used < aligned(n)) {
                        b = block_new(n < FIRST_ROOM ? FIRST_ROOM : n);
                        if (!b)
                                return NULL;
                        root->last->next = b;
                        root->last = b;
                }
        }
        root->total += n;
        nd = carve(root->last, n);
        memset(nd, 0, sizeof(*nd));
        nd->root = root;
        nd->r.type = type;
        if (task->parent)
                ((redisReply *)task->parent->obj)->element[task->idx] = &nd->r;
        return nd;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
        struct node *nd = node_new(task, task->type, len + 1);
        char *s;

        if (!nd)
                return NULL;
        s = (char *)nd + aligned(sizeof(*nd));
        memcpy(s, str, len);
        s[len] = '\0';
        nd->r.str = s;
        nd->r.len = len;
        return &nd->r;
}

static void *create_array(const redisReadTask *task, int elements)
{
        size_t n = elements > 0 ? (size_t)elements : 0;
        struct node *nd;

        if (n > MAX_ELEMENTS)
                return refuse(task, "a reply announced an array of more "
                                    "than 65,536 elements");
        nd = node_new(task, REDIS_REPLY_ARRAY, n * sizeof(redisReply *));
        if (!nd)
                return NULL;
        nd->r.elements = n;
        if (n) {
                nd->r.element =
                        (redisReply **)((char *)nd + aligned(sizeof(*nd)));
                memset(nd->r.element, 0, n * sizeof(redisReply *));
        }
        return &nd->r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
        struct node *nd = node_new(task, REDIS_REPLY_INTEGER, 0);

        if (!nd)
                return NULL;
        nd->r.integer = value;
        return &nd->r;
}

/* The task says what was nil ("$-1", "*-1"); the object is nil. */
static void *create_nil(const redisReadTask *task)
{
        struct node *nd = node_new(task, REDIS_REPLY_NIL, 0);

        return nd ? &nd->r : NULL;
}

void mls_redis_replies_free(void *reply)
{
        struct block *b, *next;

        if (!reply)
                return;
        b = node_of(reply)->root;
        for (; b; b = next) {
                next = b->next;
                free(b);
        }
}

static redisReplyObjectFunctions functions = {
        create_string, create_array,           create_integer,
        create_nil,    mls_redis_replies_free,
};

void mls_redis_replies_use(redisReader *r,
                           struct mls_redis_replies_bound *bound)
{
        r->fn = &functions;
        r->privdata = bound;
}

int mls_redis_line_unended(const redisReader *r)
{
        const char *p = r->buf + r->pos, *end, *cr;

        if (r->len - r->pos <= MLS_REDIS_MAX_LINE)
                return 0;
        end = p + MLS_REDIS_MAX_LINE;
        while ((cr = memchr(p, '\r', (size_t)(end - p))) && cr + 1 < end) {
                if (cr[1] == '\n')
                        return 0;
                p = cr + 1;
        }
        return 1;
}

int mls_redis_get_reply(redisContext *c, size_t max_unparsed, int timeout_ms,
                        const char **refused, void **reply)
{
        int64_t deadline = 0; /* read once a reply has to be waited for */
        int done = 0;

        *reply = NULL;
        while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                        return -1;
        for (;;) {
                *refused = NULL;
                if (redisGetReplyFromReader(c, reply) != REDIS_OK) {
                        if (*refused)
                                snprintf(c->errstr, sizeof(c->errstr), "%s",
                                         *refused);
                        return -1;
                }
                if (*reply)
                        return 0;
                if (mls_redis_line_unended(c->reader)) {
                        c->err = REDIS_ERR_PROTOCOL;
                        snprintf(c->errstr, sizeof(c->errstr), "%s",
                                 MLS_REDIS_LINE_UNENDED);
                        return -1;
                }
                if (c->reader->len - c->reader->pos > max_unparsed) {
                        c->err = REDIS_ERR_PROTOCOL;
                        if (max_unparsed % (1 << 20) == 0)
                                snprintf(c->errstr, sizeof(c->errstr),
                                         "a reply passed %zu MiB without "
                                         "ending",
                                         max_unparsed >> 20);
                        else
                                snprintf(c->errstr, sizeof(c->errstr),
                                         "a reply passed %zu KiB without "
                                         "ending",
                                         max_unparsed >> 10);
                        return -1;
                }
                if (!deadline) {
                        deadline = mls_clock_mono_ns() +
                                   (int64_t)timeout_ms * 1000000;
                } else if (mls_clock_mono_ns() > deadline) {
                        c->err = REDIS_ERR_IO;
                        snprintf(c->errstr, sizeof(c->errstr),
                                 "no whole reply within %d ms", timeout_ms);
                        return -1;
                }
                if (redisBufferRead(c) != REDIS_OK) {
                        /* the socket's read timeout, as the caller set it */
                        if (c->err == REDIS_ERR_IO &&
                            (errno == EAGAIN || errno == EWOULDBLOCK))
                                snprintf(c->errstr, sizeof(c->errstr),
                                         "no reply within %d ms", timeout_ms);
                        return -1;
                }
        }
}
