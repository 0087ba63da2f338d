/*
 * Internals of the gateway shared by its files. Not for use outside
 * src/gateway/. The files call one another in one direction only:
 *
 *   gateway.c     life cycle, the loop, libwebsockets set-up (the top)
 *   ws.c, http.c  the WebSocket and HTTP protocol callbacks
 *   feed.c        Redis subscriber or in-process bus -> monitor + hub
 *   resolvers.c   the GraphQL resolvers over the monitor
 *   gw_metrics.c  the gateway's metric families, /metrics, auth failures
 *   origin.c      GATEWAY_ALLOWED_ORIGINS
 *   limits.c      the open-file limit
 *
 * gateway.c calls the others; ws.c and http.c call only the files below
 * them (gw_metrics.c, origin.c) and the small inline helpers here, never
 * back into gateway.c.
 *
 * Threads: everything here runs on the gateway loop thread, except the bus
 * queue (bus_lock) and stop_requested, which other threads touch through
 * mls_gateway_publish() and mls_gateway_stop().
 */
#ifndef MLS_GATEWAY_INT_H
#define MLS_GATEWAY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/redis_url.h"
#include "common/strmap.h"
#include "gateway/auth.h"
#include "gateway/dedupe.h"
#include "gateway/engines.h"
#include "gateway/gateway.h"
#include "gateway/hub.h"
#include "gateway/monitor.h"
#include "gateway/cluster_sub.h"
#include "gateway/redis_sub.h"
#include "gateway/wsproto.h"
#include "graphql/graphql.h"

/* Control messages (acks, pongs, errors) may go this far past
 * GATEWAY_SEND_QUEUE before the connection is closed as not reading. */
#define MLS_GW_CONTROL_RESERVE 64

struct mls__gw_qent {
        struct mls_frame *head; /* NULL: body is a whole message */
        struct mls_frame *body;
};

/* One WebSocket connection; created at ESTABLISHED, freed at CLOSED. */
struct mls__gw_conn {
        struct mls_gateway *g;
        struct lws *wsi;
        mls_wsproto_t *proto;
        struct mls__gw_conn *prev, *next;
        struct mls__gw_qent *q; /* ring, grown on demand, freed when empty */
        unsigned qcap, qhead, qlen;
        struct mls_buf rx; /* a message arriving in fragments */
        int closing, close_sent, close_code;
        int peer_closed;  /* the client's close frame came: write nothing */
        int64_t timer_at; /* the next deadline in the heap (ms), or -1 */
        /* liveness (ws.c): when the client last sent anything, when to
         * look again, and whether a ping awaits its answer */
        int64_t last_rx_ms, check_at;
        int ping_out;
        int heap_at;  /* its index in g->timer_heap, or -1 */
        int flush_at; /* its index in g->flush_list, or -1 */
        char close_reason[124];
        size_t qbytes; /* bytes of the queued messages (framing excluded) */
};

struct mls__gw_bus_msg; /* feed.c */
struct mls__gw_sub_ops; /* feed.c */

/* GATEWAY_ALLOWED_ORIGINS, parsed (origin.c). */
struct mls__gw_origin_policy {
        char **list; /* NULL: no origin check; lower case */
        size_t n;
        int any; /* "*" was listed: CORS for every origin */
};

/* Why ws.c refused or closed a WebSocket, for its rate-limited warnings:
 * the auth results first (indexed by enum mls_auth_result), then these. */
enum mls__gw_refusal {
        MLS__GW_REFUSE_ORIGIN = MLS_AUTH_RESULTS,
        MLS__GW_REFUSE_MAX_CONNECTIONS,
        MLS__GW_REFUSE_SEND_QUEUE_BYTES,
        MLS__GW_REFUSALS,
};

struct mls_gateway {
        const struct mls_config *cfg;
        mls_metrics_t *metrics;
        int bus;
        uv_loop_t loop;
        int loop_ready;
        struct lws_context *lws;
        struct lws_vhost *vhost;
        int port;
        uv_async_t wake;   /* stop requests and bus payloads */
        uv_timer_t linger; /* lets close frames go out before teardown */
        int handles_ready;
        atomic_int stop_requested;
        int stopping, torn_down, exit_status;

        /* bus mode */
        pthread_mutex_t bus_lock;
        struct mls__gw_bus_msg *bus_head, *bus_tail;
        size_t bus_count, bus_bytes;
        _Atomic uint64_t bus_dropped;

        /* GraphQL, fan-out and status */
        mls_gql_schema_t *schema;
        mls_gql_cache_t *cache;
        mls_hub_t *hub;
        mls_monitor_t *monitor;
        mls_engines_t *engines; /* versions and comparisons (heartbeats) */
        mls_dedupe_t *dedupe;   /* NULL: GATEWAY_DEDUPE_WINDOW=0 */
        mls_history_t *history; /* NULL: GATEWAY_HISTORY_BYTES=0 */
        struct mls_wsproto_stats resume_stats;
        /* the Redis subscriber (redis_sub.c, or cluster_sub.c with
         * REDIS_CLUSTER=true) and feed.c's table of its functions; NULL in
         * bus mode */
        void *redis;
        const struct mls__gw_sub_ops *redis_ops;
        /* model -> int64_t *, the wall time (ms) a lost Redis subscription
         * to it was made again: the model's next prediction carries a gap
         * (UPSTREAM_LOST). At most one entry per watched model. */
        struct mls_strmap gaps;
        int per_model; /* channels follow the watched models */
        struct mls_wsproto_env env;

        /* connections */
        struct mls__gw_conn *conns;
        unsigned nconns;
        struct mls_buf wbuf; /* framed messages of one write (ws.c) */
        /* the connections' deadlines (ws.c): a binary min-heap by
         * timer_at, and one libuv timer armed for the earliest */
        uv_timer_t timers;
        struct mls__gw_conn **timer_heap;
        unsigned nheap, heap_cap;
        /* connections whose queue filled this loop turn: written at the
         * end of the turn (ws.c, mls__gw_ws_flush) */
        uv_check_t flush;
        struct mls__gw_conn **flush_list;
        unsigned nflush, flush_cap;

        /* settings */
        size_t max_message, max_payload;
        unsigned send_queue, max_conns;
        struct mls__gw_origin_policy origins;
        mls_auth_t *auth; /* access policy (off when nothing is set) */
        int metrics_auth; /* GATEWAY_METRICS_AUTH */

        /* metrics (gw_metrics.c registers them all) */
        mls_series_t *m_conns_transport, *m_conns_legacy, *m_conns_total,
                *m_rejected_limit, *m_rejected_origin, *m_rejected_path,
                *m_subs, *m_groups, *m_sent, *m_dropped, *m_redis, *m_ready,
                *m_pred, *m_hb, *m_garbage, *m_dup, *m_render_err,
                *m_refused_models, *m_bus_dropped, *m_models, *m_hist_bytes,
                *m_hist_entries, *m_hist_evicted, *m_hist_refused, *m_resumes,
                *m_gaps, *m_replayed, *m_channels, *m_resubscribes,
                *m_redis_errors, *m_hb_invalid, *m_engines;
        mls_series_t *m_auth_fail[MLS_AUTH_RESULTS];
        mls_metric_t *m_ws_closed, *m_http, *m_win_latency, *m_win_size,
                *m_last_seen;
        uint64_t render_err_seen, bus_dropped_seen, resubscribes_seen,
                redis_errors_seen;
        uint64_t refused_models_seen;

        /* connections closed for a limit (ws.c): reason="send_queue_bytes",
         * "send_queue", "init_timeout" */
        mls_series_t *m_closed_queue_bytes, *m_closed_queue, *m_closed_init;
        /* rate limits of the WebSocket refusal warnings, by
         * enum mls__gw_refusal */
        struct mls_log_limit ws_log_limits[MLS__GW_REFUSALS];
        struct mls_log_limit payload_log_limit; /* skipped payloads */
};

/* --- helpers for every file ------------------------------------------ */

/* ws.c: writes what this loop turn queued for each connection, one write
 * per connection (a uv_check callback: it runs after the turn's I/O). */
void mls__gw_ws_flush(uv_check_t *h);
/* ws.c: runs the sessions whose deadline has come (the uv timer g->timers). */
void mls__gw_ws_timers(uv_timer_t *t);

/* Monotonic milliseconds. Any thread. */
static inline int64_t mls__gw_now_ms(void)
{
        return mls_clock_mono_ns() / 1000000;
}

/* 1 when the feed is live (Redis subscribed, or bus mode) and the gateway
 * is not stopping: /readyz and ml_stream_gateway_ready. */
static inline int mls__gw_ready(const mls_gateway_t *g)
{
        return !g->stopping && mls_monitor_connected(g->monitor);
}

/* --- ws.c ------------------------------------------------------------- */

int mls__gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len);
/* Asks a connection to close (after its queued control messages). */
void mls__gw_conn_close(struct mls__gw_conn *c, int code, const char *reason);

/* --- http.c ----------------------------------------------------------- */

/* The route of a request (for the requests metric). */
enum mls__gw_route {
        MLS__GW_R_NONE,
        MLS__GW_R_GRAPHQL,
        MLS__GW_R_METRICS,
        MLS__GW_R_HEALTHZ,
        MLS__GW_R_READYZ,
        MLS__GW_R_PAGE,
        MLS__GW_R_NOT_FOUND,
};

/* Per-connection data of the "http" protocol, allocated (zeroed) and freed
 * by libwebsockets; its buffers are reset at every request and freed at
 * CLOSED_HTTP. */
struct mls__gw_http_pss {
        int method; /* LWSHUMETH_* or -1 */
        enum mls__gw_route route;
        struct mls_buf body; /* POST body, capped at the message limit */
        struct mls_buf out;  /* LWS_PRE bytes, then the response body */
        int status;
        const char *ctype;
        const char *allow;
        int close_after, www_auth, cors, preflight;
        char origin[256];
        struct mls_principal who; /* the request's caller, once checked */
};

int mls__gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                          void *user, void *in, size_t len);

/* --- feed.c ----------------------------------------------------------- */

/* Starts the feed: in bus mode marks it live; otherwise creates the Redis
 * subscriber on g's loop (urls: REDIS_URL, one URL or, with REDIS_CLUSTER=
 * true, the cluster's seeds), live once it has subscribed. Returns 0, or
 * -1 with errstr filled. Loop thread, at start-up. */
int mls__gw_feed_start(mls_gateway_t *g, const struct mls_redis_url *urls,
                       size_t nurls, char *errstr, size_t errstr_size);
/* The subscriber's Redis channels subscribed now, and channels re-placed
 * on another cluster node so far (0 without REDIS_CLUSTER); 0 in bus
 * mode. Loop thread. */
size_t mls__gw_feed_channels(const mls_gateway_t *g);
uint64_t mls__gw_feed_resubscribes(const mls_gateway_t *g);
/* Redis connections that failed or were lost so far. */
uint64_t mls__gw_feed_errors(const mls_gateway_t *g);
/* Closes the subscriber (the loop must run afterwards), then frees it.
 * Both ignore bus mode and repeated calls. Loop thread. */
void mls__gw_feed_close(mls_gateway_t *g);
void mls__gw_feed_free(mls_gateway_t *g);
int mls__gw_feed_push(mls_gateway_t *g, const char *payload, size_t len);
/* Bus mode: hands every queued payload to the monitor and the hub (or, once
 * stopping, just frees it). Loop thread. */
void mls__gw_feed_drain(mls_gateway_t *g);
/* Frees whatever is still queued. After the loop has ended. */
void mls__gw_feed_clear(mls_gateway_t *g);

/* --- resolvers.c ------------------------------------------------------ */

/* The most models Query.mlStreamingOverview lists (its declared list size
 * for the query cost is the smaller of this and GATEWAY_MAX_MODELS). */
#define MLS__GW_OVERVIEW_MAX 1000

/* Sets the resolvers of Query.mlStreamingStatus, mlStreamingModels,
 * mlStreamingOverview and mlModelComparison on schema, reading g's
 * monitor and engines. Returns 0, or -1
 * with errstr filled. */
int mls__gw_resolvers_install(mls_gateway_t *g, mls_gql_schema_t *schema,
                              char *errstr, size_t errstr_size);

/* --- gw_metrics.c ----------------------------------------------------- */

/* Registers every gateway metric family in g->metrics and keeps the series
 * in g. Once, at start-up; memory running out leaves series NULL, which
 * the metrics module ignores. */
void mls__gw_metrics_register(mls_gateway_t *g);
/* Refreshes the gauges and counters copied at scrape time and renders
 * /metrics into out. Returns -1 past out's cap. Loop thread. */
int mls__gw_metrics_render(mls_gateway_t *g, struct mls_buf *out);
/* Counts a refused credential (by reason) and logs it at debug level,
 * with transport ("http", "graphql-transport-ws", ...) and why, never the
 * credential. */
void mls__gw_metrics_auth_failed(mls_gateway_t *g, const char *transport,
                                 enum mls_auth_result r, const char *why);

/* --- origin.c --------------------------------------------------------- */

/* Parses GATEWAY_ALLOWED_ORIGINS (origins separated by commas, or "*")
 * into p, which must be zeroed; NULL or "" leaves the check off. Returns 0,
 * or -1 with errstr naming the setting and the bad entry (p then holds
 * what was parsed so far: free it). */
int mls__gw_origin_parse(struct mls__gw_origin_policy *p, const char *list,
                         char *errstr, size_t errstr_size);
/* Frees what parse() stored; p is then zeroed. */
void mls__gw_origin_free(struct mls__gw_origin_policy *p);
/* 1 if origin (NULL when the request has none) may use /graphql. */
int mls__gw_origin_ok(const struct mls__gw_origin_policy *p,
                      const char *origin);
/* 1 when only listed origins may use /graphql; an Origin header too long
 * to read is then refused rather than taken for none. */
static inline int mls__gw_origin_enforced(const struct mls__gw_origin_policy *p)
{
        return p->list && !p->any;
}

/* --- limits.c --------------------------------------------------------- */

/* Raises RLIMIT_NOFILE towards what max_conns connections need; warns when
 * it cannot get there. At start-up. */
void mls__gw_limits_raise_nofile(unsigned max_conns);
/* The descriptors libwebsockets should track: all the process may open
 * (see limits.c). */
unsigned mls__gw_limits_lws_fds(unsigned max_conns);

#endif
