/*
 * Redis Cluster on top of hiredis 0.14, which knows nothing of clusters:
 * key hash slots, the slot map (from CLUSTER SLOTS), MOVED/ASK redirects,
 * seed lists, and a synchronous, pipelined publisher of sharded Pub/Sub
 * messages (SPUBLISH) that follows slot moves and failovers.
 *
 * The slot, map, redirect and seed functions are pure (no I/O, no global
 * state) and may run on any thread. A publisher belongs to one thread (the
 * engine thread) and does blocking I/O with timeouts: a connect waits at
 * most MLS_CLUSTER_CONNECT_TIMEOUT_MS, a read or write at most
 * MLS_CLUSTER_IO_TIMEOUT_MS. The process must ignore SIGPIPE (common/
 * signals.c does), or a write to a node that died kills it.
 */
#ifndef MLS_REDIS_CLUSTER_H
#define MLS_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/redis_url.h"

struct redisReply;

#define MLS_CLUSTER_SLOTS 16384
#define MLS_CLUSTER_CONNECT_TIMEOUT_MS 2000
#define MLS_CLUSTER_IO_TIMEOUT_MS 5000
/* Rounds of a flush: the first send and then re-sends of what got a
 * redirect or no reply, with a map refresh before each re-send when a
 * connection failed. */
#define MLS_CLUSTER_FLUSH_ROUNDS 3
/* At most this many comma-separated seeds in a URL. */
#define MLS_CLUSTER_MAX_SEEDS 64

/* The hash slot (0..16383) of a key or shard channel: CRC16-XMODEM of the
 * key mod 16384, or of its hash tag: the bytes between the first '{' and
 * the first '}' after it, when there are any. */
unsigned mls_cluster_slot(const char *key, size_t len);

/* A node's address; id (40 hex digits) is empty where unknown. */
struct mls_cluster_node {
        char host[256];
        int port;
        char id[41];
};

/* --------------------------------------------------------------- slot map */

typedef struct mls_cluster_map mls_cluster_map_t;

/* Builds a map from a CLUSTER SLOTS reply. A node whose endpoint is NULL,
 * empty or "?" (unknown) gets asked_host, the host the command was sent
 * to. Elements after a node's port and id (Redis 7's metadata) are
 * ignored. Returns the map (free it with mls_cluster_map_free), or NULL
 * with the reason in errstr: a malformed reply (naming the entry and what
 * is wrong with it), an error reply (e.g. a Redis not in cluster mode) or
 * out of memory. An empty map (no slot assigned) is not an error. */
mls_cluster_map_t *mls_cluster_map_from_reply(const struct redisReply *r,
                                              const char *asked_host,
                                              char *errstr, size_t errstr_size);
void mls_cluster_map_free(mls_cluster_map_t *m);

/* The master serving slot, or NULL when no node does. The pointer stays
 * valid until the map is changed or freed. */
const struct mls_cluster_node *mls_cluster_map_owner(const mls_cluster_map_t *m,
                                                     unsigned slot);
/* How many slots have an owner (16384 when the cluster is fully covered). */
unsigned mls_cluster_map_covered(const mls_cluster_map_t *m);
/* The masters (nodes owning at least one slot), i < nmasters; NULL past
 * the end. Each node is listed once, in the order the reply named them. */
size_t mls_cluster_map_nmasters(const mls_cluster_map_t *m);
const struct mls_cluster_node *
mls_cluster_map_master(const mls_cluster_map_t *m, size_t i);
/* All nodes the reply named, masters first, then replicas; NULL past the
 * end. */
size_t mls_cluster_map_nnodes(const mls_cluster_map_t *m);
const struct mls_cluster_node *mls_cluster_map_node(const mls_cluster_map_t *m,
                                                    size_t i);
/* Records that host:port serves slot (what a MOVED says), adding the node
 * when it is new. Returns 0, or -1 when out of memory or slot is out of
 * range (the map is unchanged). */
int mls_cluster_map_set_owner(mls_cluster_map_t *m, unsigned slot,
                              const char *host, int port);

/* -------------------------------------------------------------- redirects */

enum mls_cluster_redirect_kind {
        MLS_CLUSTER_MOVED = 1, /* the slot lives elsewhere now */
        MLS_CLUSTER_ASK = 2,   /* this one command: ASKING, then retry there */
};

struct mls_cluster_redirect {
        enum mls_cluster_redirect_kind kind;
        unsigned slot;
        /* Empty when the error names only ":port" (the node's endpoint is
         * unknown): then the host is the one the command went to. */
        char host[256];
        int port;
};

/* Parses an error reply's text, e.g. "MOVED 3999 127.0.0.1:6381" or "ASK
 * 3999 127.0.0.1:6381" (hiredis drops the leading '-'). An IPv6 address
 * may come bare ("::1:6381") or bracketed. Returns 0, or -1 when s is
 * another error or a malformed redirect (*out is then zeroed). */
int mls_cluster_redirect_parse(const char *s, size_t len,
                               struct mls_cluster_redirect *out);

/* ------------------------------------------------------------------ seeds */

/* Parses redis://[[user]:password@]host[:port][,host[:port]...][/db] into
 * one struct mls_redis_url per host, each with the same user, password
 * and db (parsed as mls_redis_url_parse does). A cluster has database 0
 * only, so a db other than 0 is an error. Returns 0 with *out (free() it)
 * and *n set, or -1 with the reason in errstr (never the password), *out
 * NULL and *n 0. */
int mls_cluster_seeds_parse(const char *url, struct mls_redis_url **out,
                            size_t *n, char *errstr, size_t errstr_size);

/* -------------------------------------------------------------- publisher */

typedef struct mls_cluster_pub mls_cluster_pub_t;

/* Counters since the publisher was made, for metrics and tests. */
struct mls_cluster_pub_stats {
        uint64_t acked;        /* SPUBLISH replies that were not errors */
        uint64_t moved;        /* MOVED redirects followed */
        uint64_t ask;          /* ASK redirects followed */
        uint64_t refreshes;    /* slot maps fetched */
        uint64_t conn_errors;  /* failed connects, reads and writes */
        uint64_t failed_flush; /* flushes that returned -1 */
};

/* Makes a publisher that learns the cluster from the seeds (copied; the
 * user and password of seeds[0] are used for every node). Connects
 * nothing yet: mls_cluster_pub_connect() or the first flush does. batch_limit
 * caps the bytes one batch may queue (commands in RESP); 0 means 1 GiB.
 * Returns NULL when out of memory or nseeds is 0. Free it with
 * mls_cluster_pub_free(). */
mls_cluster_pub_t *mls_cluster_pub_new(const struct mls_redis_url *seeds,
                                       size_t nseeds, size_t batch_limit);

/* Fetches the slot map from any reachable node (known nodes first, then
 * the seeds), then connects to every master in it. Each node must answer a
 * PING when connected: a stopped master, whose kernel still accepts
 * connections and which the other nodes' maps name until the cluster
 * fails it over, is a failure, not a connection. Returns 0 when a map with
 * at least one assigned slot was fetched and every master answered, or -1
 * with the reason in errstr (the first error). */
int mls_cluster_pub_connect(mls_cluster_pub_t *p, char *errstr,
                            size_t errstr_size);

/* 1 from a connect or flush that succeeded until a flush fails, else 0:
 * after a failed flush, connect again (the engine's down state does) to
 * learn whether every master answers. */
int mls_cluster_pub_connected(const mls_cluster_pub_t *p);

/* Queues SPUBLISH channel payload for the node that owns the channel's
 * slot; nothing is sent before the flush. Both are copied. Returns 0, or
 * -1 when the batch would pass its limit or memory runs out: then the
 * next flush fails and drops the whole batch. */
int mls_cluster_pub_add(mls_cluster_pub_t *p, const char *channel, size_t clen,
                        const char *payload, size_t len);

/* Sends what was queued, pipelined per node, and reads every reply.
 * MOVED: the map learns the new owner and the command goes there (the
 * whole map is fetched again before the next batch). ASK: ASKING and the
 * command go to the node named. A failed connection is dropped, the map
 * fetched again from any reachable node, and the commands that got no
 * reply are sent again; at most MLS_CLUSTER_FLUSH_ROUNDS rounds.
 * Returns 0 when every queued payload was acknowledged, or -1 with errstr
 * when any was not: then the caller must queue the whole batch again
 * (payloads acknowledged in this flush may so be delivered twice). Either
 * way the batch is emptied; a flush holds no more than the batch. */
int mls_cluster_pub_flush(mls_cluster_pub_t *p, char *errstr,
                          size_t errstr_size);

/* Payloads queued since the last flush. */
size_t mls_cluster_pub_queued(const mls_cluster_pub_t *p);
void mls_cluster_pub_stats(const mls_cluster_pub_t *p,
                           struct mls_cluster_pub_stats *out);

/* Closes every connection and frees p; NULL is a no-op. */
void mls_cluster_pub_free(mls_cluster_pub_t *p);

#endif
