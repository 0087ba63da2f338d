/*
 * One non-blocking RESP connection to one Redis node, on the gateway's
 * libuv loop: for the commands hiredis 0.14's async API does not know,
 * such as SSUBSCRIBE, whose "smessage" and server-sent "sunsubscribe"
 * pushes it would mismatch with its callbacks.
 *
 * The connection resolves the host (uv_getaddrinfo), connects (uv_tcp_t)
 * with a timeout, sends AUTH when a password is set and CLIENT SETNAME,
 * and is ready once both are answered. Commands are formatted with
 * redisFormatCommandArgv and written as they come; replies are parsed with
 * hiredis' redisReader and handed over one by one, in order, pushes
 * included: matching them with commands is the caller's business.
 *
 * Unparsed input is capped at max_reply_bytes: past it the connection is
 * dropped. A connection silent for ping_ms is sent a PING (its answer is
 * not handed over); silent for twice that, it is dropped: a peer gone
 * without closing (host down, NAT entry dropped) or not answering is found
 * within a bound, the handshake included. With pubsub set, every reply
 * after the handshake must be an error or a pub/sub array (three elements
 * or more, kind and channel bulk strings); anything else drops the
 * connection. A connection lives once: when it fails or is lost it calls
 * on_closed and does nothing more; reconnecting (with backoff) is the
 * owner's job (cluster_sub.c), which knows where to go after a failover.
 *
 * Threads: the gateway loop thread only; callbacks run on it.
 */
#ifndef MLS_GATEWAY_SHARD_CONN_H
#define MLS_GATEWAY_SHARD_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct redisReply;

typedef struct mls_shard_conn mls_shard_conn_t;

struct mls_shard_conn_conf {
        const char *host; /* copied */
        int port;
        const char *user;     /* "" or NULL: none; copied */
        const char *password; /* "" or NULL: no AUTH; copied */
        const char *name;     /* CLIENT SETNAME; NULL: none; copied */
        size_t max_reply_bytes;
        int64_t connect_timeout_ms;
        int64_t ping_ms; /* see above; 0: never (tests) */
        int pubsub;      /* see above */
        /* The handshake is answered: commands may be sent. */
        void (*on_ready)(void *opaque, mls_shard_conn_t *c);
        /* One reply or push after the handshake; r is freed after the
         * call. */
        void (*on_reply)(void *opaque, mls_shard_conn_t *c,
                         const struct redisReply *r);
        /* The connection failed or was lost (why says how; oversize is 1
         * when unparsed input passed max_reply_bytes). Nothing is called
         * after it; the owner still calls mls_shard_conn_close(). */
        void (*on_closed)(void *opaque, mls_shard_conn_t *c, const char *why,
                          int oversize);
        void *opaque;
};

/* Starts connecting. Returns NULL when memory runs out (reason in
 * errstr); a host that cannot be reached is reported by on_closed. */
mls_shard_conn_t *mls_shard_conn_new(uv_loop_t *loop,
                                     const struct mls_shard_conn_conf *conf,
                                     char *errstr, size_t errstr_size);

/* Sends one command (argc arguments, binary-safe). Returns 0, or -1 when
 * the connection is not ready or lost, or memory runs out. */
int mls_shard_conn_command(mls_shard_conn_t *c, int argc, const char **argv,
                           const size_t *argvlen);

/* 1 once the handshake is answered, until the connection is lost. */
int mls_shard_conn_ready(const mls_shard_conn_t *c);
/* The node's "host:port", as configured. */
const char *mls_shard_conn_addr(const mls_shard_conn_t *c);

/* Closes the connection: no callback is called after this, and c is freed
 * once the loop has closed its handles. NULL is ignored. */
void mls_shard_conn_close(mls_shard_conn_t *c);

#endif
