/*
 * hiredis reply objects made in one block per reply instead of one
 * allocation per object. With hiredis' own functions a pub/sub message
 * (an array of three strings) costs nine mallocs and nine frees; here it
 * costs one, or two when the payload does not fit the first block.
 *
 * The objects are plain redisReply structs that hiredis and our callbacks
 * read as usual. Only a whole reply is freed, with the reader's
 * fn->freeObject, which is what hiredis' reader does: never
 * free a part of one, and never with freeReplyObject().
 *
 * What a server can make a reply cost is bounded: an array of more than
 * 65,536 elements, or a reply whose objects pass twice the connection's
 * cap on unparsed bytes plus 16 MiB, is refused as if memory ran out: the
 * reader fails ("Out of memory") and its connection is dropped; the bound
 * says which limit it was, for the log.
 *
 * mls_redis_get_reply() is the bounded blocking read that the engine's
 * Redis connections (its sink and the cluster publisher) use with their
 * reply functions.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_COMMON_REDIS_REPLIES_H
#define MLS_COMMON_REDIS_REPLIES_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

/* What bounds one connection's replies. It must outlive the reader. */
struct mls_redis_replies_bound {
        /* the cap the connection puts on unparsed reply bytes (0: no bound
         * but the array's) */
        size_t max_unparsed;
        /* set when a reply was refused: which limit it passed (a constant
         * string); nothing clears it, so give each reader a fresh bound */
        const char *refused;
};

/* Makes r build its replies this way, within *bound. Takes r's privdata. */
void mls_redis_replies_use(redisReader *r,
                           struct mls_redis_replies_bound *bound);

/* Frees a whole reply that r built (r->fn->freeObject; no reader needed). */
void mls_redis_replies_free(void *reply);

/* No line of a reply from a Redis server is long: statuses, errors,
 * integers and the headers of arrays and bulk strings take a few bytes (a
 * bulk string's data is counted, not scanned for its end). */
#define MLS_REDIS_MAX_LINE (64 * 1024)

/* Whether the reply r is in the middle of starts with a line that has
 * passed MLS_REDIS_MAX_LINE bytes without its "\r\n". hiredis looks for a
 * line's end from the line's start again on every read, so a line that
 * never ends costs time in the square of its length, whatever the cap on
 * a whole reply: refuse it early. A reader that holds a complete reply
 * waiting to be taken is never in that state. */
int mls_redis_line_unended(const redisReader *r);

/* The reason mls_redis_get_reply() and the gateway give for it. */
#define MLS_REDIS_LINE_UNENDED "a reply line passed 64 KiB without ending"

/* redisGetReply() for a blocking context, bounded: writes out what c
 * holds, then reads no more than max_unparsed bytes ahead of a reply that
 * has not ended (hiredis alone would read on without end), nor past a line
 * that is too long (mls_redis_line_unended()), nor for longer than
 * timeout_ms once it has to wait for more (c's socket timeout bounds one
 * read, not a reply a server sends a byte at a time). *refused is where
 * c's reply functions say why they refused a reply (cleared here); on
 * failure c->errstr says why, that reason when there is one. Returns 0
 * with the reply in *reply, or -1. */
int mls_redis_get_reply(redisContext *c, size_t max_unparsed, int timeout_ms,
                        const char **refused, void **reply);

#endif
