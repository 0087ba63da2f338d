/*
 * hiredis reply objects made in one block per reply instead of one
 * allocation per object. With hiredis' own functions a pub/sub message
 * (an array of three strings) costs nine mallocs and nine frees; here it
 * costs one, or two when the payload does not fit the first block.
 *
 * The objects are plain redisReply structs that hiredis and our callbacks
 * read as usual. Only a whole reply is freed, with the reader's
 * fn->freeObject, which is what hiredis' async loop and reader do: never
 * free a part of one, and never with freeReplyObject().
 *
 * What a server can make a reply cost is bounded: an array of more than
 * 65,536 elements, or a reply whose objects pass twice the connection's
 * cap on unparsed bytes plus 16 MiB, is refused as if memory ran out: the
 * reader fails and its connection is dropped.
 *
 * Threads: any; no shared state.
 */
#ifndef MLS_GATEWAY_REDIS_REPLIES_H
#define MLS_GATEWAY_REDIS_REPLIES_H

#include <hiredis/read.h>

/* Makes r build its replies this way, bounded by *max_unparsed (the cap
 * the connection puts on unparsed reply bytes; read at each object, so it
 * must outlive r; NULL: no bound but the array's). Takes r's privdata. */
void mls_redis_replies_use(redisReader *r, const size_t *max_unparsed);

#endif
