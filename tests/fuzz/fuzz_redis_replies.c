/*
 * libFuzzer target for how mlstream reads Redis replies from the network
 * (src/common/redis_replies.c: hiredis' parser building our one-block
 * objects, as the gateway's subscribers and the engine's cluster publisher
 * do). The input's first byte sets the size of the pieces the rest is fed
 * in. The same pieces go to a reader with hiredis' own objects; the two
 * must agree reply for reply, except where ours refuses a reply for a
 * bound, and then it must say which. mls_redis_line_unended() may report
 * a line only when more than its bound is unparsed and the reader is
 * waiting for more. Every reply is also read as a cluster's slot map
 * (CLUSTER SLOTS) and every error as a redirect (MOVED, ASK), as the
 * engine and the gateway read them: a map's every slot owner is one of its
 * masters, a redirect's slot in range and its port a port.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/redis_cluster.h"
#include "common/redis_replies.h"

static void same(const redisReply *a, const redisReply *b)
{
        if (a->type != b->type)
                abort();
        switch (a->type) {
        case REDIS_REPLY_INTEGER:
                if (a->integer != b->integer)
                        abort();
                break;
        case REDIS_REPLY_ARRAY:
                if (a->elements != b->elements)
                        abort();
                for (size_t i = 0; i < a->elements; i++)
                        same(a->element[i], b->element[i]);
                break;
        case REDIS_REPLY_NIL:
                break;
        default: /* strings, statuses, errors */
                if (a->len != b->len || memcmp(a->str, b->str, a->len) != 0 ||
                    a->str[a->len] != '\0')
                        abort();
        }
}

static void as_cluster_input(const redisReply *r)
{
        struct mls_cluster_redirect rd;
        mls_cluster_map_t *m;
        char why[256];

        m = mls_cluster_map_from_reply(r, "127.0.0.1", why, sizeof(why));
        if (m) {
                size_t nm = mls_cluster_map_nmasters(m);
                unsigned covered = 0;

                for (unsigned slot = 0; slot < MLS_CLUSTER_SLOTS; slot++) {
                        const struct mls_cluster_node *o =
                                mls_cluster_map_owner(m, slot);
                        size_t i;

                        if (!o)
                                continue;
                        covered++;
                        for (i = 0; i < nm; i++)
                                if (mls_cluster_map_master(m, i) == o)
                                        break;
                        if (i == nm || o->port < 0 || o->port > 65535 ||
                            !memchr(o->host, '\0', sizeof(o->host)))
                                abort();
                }
                if (covered != mls_cluster_map_covered(m) ||
                    nm > mls_cluster_map_nnodes(m))
                        abort();
                mls_cluster_map_free(m);
        } else if (!memchr(why, '\0', sizeof(why))) {
                abort();
        }
        if (r->type == REDIS_REPLY_ERROR &&
            mls_cluster_redirect_parse(r->str, r->len, &rd) == 0 &&
            (rd.slot >= MLS_CLUSTER_SLOTS || rd.port <= 0 || rd.port > 65535))
                abort();
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
                if (r->element[i]->type == REDIS_REPLY_ERROR)
                        as_cluster_input(r->element[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mls_redis_replies_bound bound = {.max_unparsed = 4096};
        redisReader *ours, *theirs;
        size_t piece, at;
        int failed = 0;

        if (size < 1)
                return 0;
        piece = (size_t)data[0] % 64 + 1;
        data++;
        size--;
        ours = redisReaderCreate();
        theirs = redisReaderCreate();
        if (!ours || !theirs)
                abort();
        mls_redis_replies_use(ours, &bound);
        for (at = 0; at < size && !failed; at += piece) {
                size_t n = size - at < piece ? size - at : piece;

                if (redisReaderFeed(ours, (const char *)data + at, n) !=
                            REDIS_OK ||
                    redisReaderFeed(theirs, (const char *)data + at, n) !=
                            REDIS_OK)
                        abort();
                for (;;) {
                        void *a = NULL, *b = NULL;
                        int ra = redisReaderGetReply(ours, &a), rb;

                        /* refused for a bound, and said so: hiredis' own
                         * reader would try the allocation refused */
                        if (ra != REDIS_OK && bound.refused) {
                                failed = 1;
                                break;
                        }
                        rb = redisReaderGetReply(theirs, &b);
                        if (ra != REDIS_OK) {
                                /* the same protocol error as hiredis' */
                                if (rb == REDIS_OK)
                                        abort();
                                failed = 1;
                                break;
                        }
                        if (rb != REDIS_OK || !a != !b)
                                abort();
                        if (!a)
                                break;
                        same(a, b);
                        as_cluster_input(a);
                        mls_redis_replies_free(a);
                        freeReplyObject(b);
                }
                if (!failed && mls_redis_line_unended(ours) &&
                    ours->len - ours->pos <= MLS_REDIS_MAX_LINE)
                        abort();
        }
        redisReaderFree(ours);
        redisReaderFree(theirs);
        return 0;
}
