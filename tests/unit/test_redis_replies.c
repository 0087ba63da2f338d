/*
 * Reply objects in one block per reply (src/common/redis_replies.c):
 * hiredis' reader builds with them what it builds with its own functions,
 * across partial reads and nesting, and freeing a reply (whole or cut off
 * by an error or the reader's end) frees everything (the ASan run checks
 * the memory).
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/redis_replies.h"
#include "test.h"

/* The cap on unparsed bytes the gateway's subscriber uses by default
 * (GATEWAY_MAX_PAYLOAD_BYTES + 64 KiB). */
static const size_t max_unparsed = (4u << 20) + 65536;
static struct mls_redis_replies_bound bound;

static redisReader *reader(void)
{
        redisReader *r = redisReaderCreate();

        bound = (struct mls_redis_replies_bound){.max_unparsed = max_unparsed};
        if (r)
                mls_redis_replies_use(r, &bound);
        return r;
}

/* A pub/sub message fed a byte at a time, then one whose payload is far
 * larger than a first block. */
MLS_TEST(redis_replies_message_in_pieces)
{
        static const char msg[] = "*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n"
                                  "$11\r\n{\"a\":[1,2]}\r\n";
        redisReader *r = reader();
        static char big[100000 + 64];
        redisReply *rep = NULL;
        void *out = NULL;
        int n;

        CHECK(r != NULL);
        for (size_t i = 0; i < sizeof(msg) - 1; i++) {
                CHECK_INT_EQ(redisReaderFeed(r, msg + i, 1), REDIS_OK);
                CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
                if (i + 2 < sizeof(msg) - 1)
                        CHECK(out == NULL);
        }
        rep = out;
        CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
        CHECK_STR_EQ(rep->element[0]->str, "message");
        CHECK_STR_EQ(rep->element[1]->str, "chan");
        CHECK(rep->element[2]->len == 11 &&
              memcmp(rep->element[2]->str, "{\"a\":[1,2]}", 11) == 0);
        r->fn->freeObject(rep);

        n = snprintf(big, sizeof(big),
                     "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$%d\r\n", 100000);
        memset(big + n, 'x', 100000);
        memcpy(big + n + 100000, "\r\n", 2);
        CHECK_INT_EQ(redisReaderFeed(r, big, (size_t)n + 100002), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
        rep = out;
        CHECK(rep && rep->elements == 3 && rep->element[2]->len == 100000);
        CHECK(rep->element[2]->str[99999] == 'x' &&
              rep->element[2]->str[100000] == '\0');
        r->fn->freeObject(rep);
        redisReaderFree(r);
}

/* Every kind of reply, nested, with more objects than one block holds;
 * then a reply cut off by a protocol error, and one left unfinished when
 * the reader goes. */
MLS_TEST(redis_replies_kinds_nesting_and_cut_offs)
{
        redisReader *r = reader();
        char text[8192];
        redisReply *rep;
        void *out = NULL;
        size_t n = 0;

        CHECK(r != NULL);
        n += (size_t)snprintf(
                text + n, sizeof(text) - n,
                "*5\r\n+OK\r\n-ERR no\r\n:-42\r\n$-1\r\n*200\r\n");
        for (int i = 0; i < 200; i++)
                n += (size_t)snprintf(text + n, sizeof(text) - n,
                                      "*2\r\n:%d\r\n$3\r\nv%02d\r\n", i,
                                      i % 100);
        CHECK_INT_EQ(redisReaderFeed(r, text, n), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
        rep = out;
        CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5);
        CHECK(rep->element[0]->type == REDIS_REPLY_STATUS);
        CHECK_STR_EQ(rep->element[0]->str, "OK");
        CHECK(rep->element[1]->type == REDIS_REPLY_ERROR);
        CHECK_STR_EQ(rep->element[1]->str, "ERR no");
        CHECK(rep->element[2]->type == REDIS_REPLY_INTEGER &&
              rep->element[2]->integer == -42);
        CHECK(rep->element[3]->type == REDIS_REPLY_NIL);
        CHECK(rep->element[4]->elements == 200);
        for (int i = 0; i < 200; i++) {
                redisReply *pair = rep->element[4]->element[i];
                char want[8];
                snprintf(want, sizeof(want), "v%02d", i % 100);
                CHECK(pair->elements == 2 && pair->element[0]->integer == i);
                CHECK_STR_EQ(pair->element[1]->str, want);
        }
        r->fn->freeObject(rep);

        /* cut off: the reader frees the partial reply itself */
        CHECK_INT_EQ(redisReaderFeed(r, "*3\r\n$1\r\na\r\n?bad\r\n", 17),
                     REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_ERR);
        redisReaderFree(r);

        r = reader();
        CHECK(r != NULL);
        CHECK_INT_EQ(redisReaderFeed(r, "*2\r\n$1\r\na\r\n", 11), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
        CHECK(out == NULL);
        redisReaderFree(r); /* frees the unfinished reply */
}

/* An array header past the cap fails the reader at once, before any
 * element table is made, and the bound says why; one at the cap is still
 * read. */
MLS_TEST(redis_replies_array_cap)
{
        redisReader *r = reader();
        void *out = NULL;

        CHECK(r != NULL);
        CHECK_INT_EQ(redisReaderFeed(r, "*1000000000\r\n", 13), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_ERR);
        CHECK(out == NULL);
        CHECK_STR_EQ(bound.refused, "a reply announced an array of more than "
                                    "65,536 elements");
        redisReaderFree(r);

        r = reader();
        CHECK(r != NULL);
        CHECK_INT_EQ(redisReaderFeed(r, "*65536\r\n", 8), REDIS_OK);
        for (int i = 0; i < 65536; i++)
                CHECK_INT_EQ(redisReaderFeed(r, ":7\r\n", 4), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
        CHECK(out && ((redisReply *)out)->elements == 65536 &&
              ((redisReply *)out)->element[65535]->integer == 7);
        CHECK(bound.refused == NULL);
        r->fn->freeObject(out);
        redisReaderFree(r);
}

/* A server that never finishes a reply cannot grow it without end: with
 * a cap of 1 KiB on unparsed bytes, one reply's objects stop at 16 MiB
 * and a little, though each piece fed is small and parsed at once. */
MLS_TEST(redis_replies_objects_cap)
{
        struct mls_redis_replies_bound small = {.max_unparsed = 1024};
        static char ints[4096 * 4];
        redisReader *r = redisReaderCreate();
        void *out = NULL;
        int rc = REDIS_OK;
        long fed = 0;

        CHECK(r != NULL);
        mls_redis_replies_use(r, &small);
        for (size_t i = 0; i < sizeof(ints); i += 4)
                memcpy(ints + i, ":1\r\n", 4);
        CHECK_INT_EQ(redisReaderFeed(r, "*65536\r\n", 8), REDIS_OK);
        /* children of 65,536 integers: ~4.7 MB of objects for 256 KB */
        for (int child = 0; child < 8 && rc == REDIS_OK; child++) {
                rc = redisReaderFeed(r, "*65536\r\n", 8);
                for (int k = 0; k < 16 && rc == REDIS_OK; k++) {
                        rc = redisReaderFeed(r, ints, sizeof(ints));
                        if (rc == REDIS_OK)
                                rc = redisReaderGetReply(r, &out);
                        fed += (long)sizeof(ints);
                        CHECK(out == NULL);
                }
        }
        CHECK_INT_EQ(rc, REDIS_ERR);
        /* refused in the fourth child: past 16 MiB, before 20 */
        CHECK(fed > 3 * 65536 * 4 && fed < 4 * 65536 * 4);
        CHECK(small.refused && strstr(small.refused, "more memory than"));
        redisReaderFree(r);
}

/* Feeds a reader the message's first elements, then `head` and fill bytes
 * of filler, as a hostile server would, and says whether the reader then
 * reports an unended line (-1: the reader failed or made a reply). */
static int unended_after(const char *head, char filler, size_t fill)
{
        static const char first[] = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n";
        static char chunk[4096];
        redisReader *r = reader();
        void *out = NULL;
        int ok, unended = -1;

        if (!r)
                return -1;
        memset(chunk, filler, sizeof(chunk));
        ok = redisReaderFeed(r, first, sizeof(first) - 1) == REDIS_OK &&
             redisReaderFeed(r, head, strlen(head)) == REDIS_OK;
        for (size_t done = 0; ok && done < fill; done += sizeof(chunk)) {
                size_t n = fill - done < sizeof(chunk) ? fill - done
                                                       : sizeof(chunk);
                ok = redisReaderFeed(r, chunk, n) == REDIS_OK;
        }
        if (ok && redisReaderGetReply(r, &out) == REDIS_OK && !out)
                unended = mls_redis_line_unended(r);
        if (out)
                r->fn->freeObject(out);
        redisReaderFree(r);
        return unended;
}

/* A line that has not ended after 64 KiB is reported (hiredis would scan
 * it again on every read), wherever it sits in a reply and whatever its
 * bytes (a lone "\r" or "\n" is not a line's end); a line shorter than
 * that, and a bulk string's data however long, are not. */
MLS_TEST(redis_replies_line_unended)
{
        const size_t over = MLS_REDIS_MAX_LINE + 1;

        CHECK_INT_EQ(unended_after("+", 'x', over), 1);
        CHECK_INT_EQ(unended_after("-ERR ", 'x', over), 1);
        CHECK_INT_EQ(unended_after(":", '1', over), 1);
        CHECK_INT_EQ(unended_after("$", '9', over), 1);
        CHECK_INT_EQ(unended_after("*", '9', over), 1);
        CHECK_INT_EQ(unended_after("+", '\r', over), 1);
        CHECK_INT_EQ(unended_after("+", '\n', over), 1);
        /* not yet past the bound */
        CHECK_INT_EQ(unended_after("+", 'x', MLS_REDIS_MAX_LINE - 8), 0);
        /* a big payload on its way: its header line ended long ago */
        CHECK_INT_EQ(unended_after("$4194304\r\n", 'x', 3u << 20), 0);
        CHECK_INT_EQ(unended_after("$4194304\r\n", '\r', 3u << 20), 0);
}

/* Objects that each need a block of their own, of sizes that are not a
 * multiple of the alignment, followed by more objects: each must land
 * inside a block (the ASan run checks; before 5 December a block was made
 * a few bytes short of what was carved from it, and the next object was
 * carved past its end). Found by tests/fuzz/fuzz_redis_replies.c. */
MLS_TEST(redis_replies_odd_sizes_then_more)
{
        static char msg[8192];
        redisReader *r = reader();
        redisReply *rep;
        void *out = NULL;
        int n = 0;

        CHECK(r != NULL);
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, "*5\r\n$601\r\n");
        memset(msg + n, 'a', 601);
        n += 601;
        n += snprintf(msg + n, sizeof(msg) - (size_t)n,
                      "\r\n$3\r\nbcd\r\n*57\r\n");
        for (int i = 0; i < 57; i++)
                n += snprintf(msg + n, sizeof(msg) - (size_t)n, ":%d\r\n", i);
        n += snprintf(msg + n, sizeof(msg) - (size_t)n,
                      "$5\r\nhello\r\n:7\r\n");
        CHECK_INT_EQ(redisReaderFeed(r, msg, (size_t)n), REDIS_OK);
        CHECK_INT_EQ(redisReaderGetReply(r, &out), REDIS_OK);
        rep = out;
        CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5);
        CHECK(rep->element[0]->len == 601 && rep->element[0]->str[600] == 'a' &&
              rep->element[0]->str[601] == '\0');
        CHECK_STR_EQ(rep->element[1]->str, "bcd");
        CHECK(rep->element[2]->elements == 57 &&
              rep->element[2]->element[56]->integer == 56);
        CHECK_STR_EQ(rep->element[3]->str, "hello");
        CHECK(rep->element[4]->integer == 7);
        r->fn->freeObject(rep);
        redisReaderFree(r);
}
