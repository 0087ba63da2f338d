/*
 * hiredis' asynchronous API on the gateway's libuv loop: our replacement
 * for hiredis' adapters/libuv.h. hiredis asks to watch for reads again
 * after every read ("always re-schedule reads"), and that adapter restarts
 * the poll handle each time, which libuv turns into an epoll DEL and ADD:
 * two system calls per message received. Here a request that changes
 * nothing costs nothing.
 *
 * Threads: the gateway loop thread.
 */
#ifndef MLS_GATEWAY_REDIS_UV_H
#define MLS_GATEWAY_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac (connecting or connected) to loop. Returns 0, or -1 when ac
 * is attached already or memory or the loop fails; ac is then unchanged
 * and the caller frees it. hiredis calls the cleanup when ac is freed. */
int mls_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
