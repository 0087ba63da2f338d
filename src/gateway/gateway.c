/*
 * The gateway's life cycle: settings, the libuv loop it owns, the
 * libwebsockets context on it (LWS_SERVER_OPTION_LIBUV + foreign_loops),
 * wiring the other parts together (gateway_int.h lists them), and an
 * orderly shutdown. The top of the gateway: it calls into the other files,
 * and none of them calls back.
 *
 * Threads: mls_gateway_new(), run() and free() on one thread (the loop
 * thread); mls_gateway_stop() and mls_gateway_publish() on any thread.
 * Ownership: the gateway owns everything it creates; cfg and metrics are
 * borrowed.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/channel.h"
#include "common/log.h"
#include "common/redis_cluster.h"
#include "common/redis_url.h"
#include "gateway/gateway_int.h"

#define LINGER_MS 200 /* for close frames, before the context goes */
#define WS_RX_BUFFER 1024

/* --- shutdown ------------------------------------------------------------ */

static void teardown(mls_gateway_t *g)
{
        if (g->torn_down)
                return;
        g->torn_down = 1;
        /* With a foreign loop this is the first of two stages: the loop
         * closes lws' handles, then mls_gateway_free() calls it again;
         * info.pcontext clears g->lws when it is all done. */
        if (g->lws)
                lws_context_destroy(g->lws);
        mls__gw_feed_close(g);
        if (g->handles_ready) {
                uv_close((uv_handle_t *)&g->wake, NULL);
                uv_close((uv_handle_t *)&g->linger, NULL);
                uv_close((uv_handle_t *)&g->flush, NULL);
                uv_close((uv_handle_t *)&g->timers, NULL);
        }
}

static void on_linger(uv_timer_t *t)
{
        teardown(t->data);
}

/* Closes every WebSocket with 1001 and, after a short linger for the close
 * frames, tears the context down; the loop then ends by itself. */
static void begin_shutdown(mls_gateway_t *g)
{
        if (g->stopping)
                return;
        g->stopping = 1;
        mls_info("gateway stopping: closing %u connection(s)", g->nconns);
        for (struct mls__gw_conn *c = g->conns; c; c = c->next)
                mls__gw_conn_close(c, 1001, "Server shutting down");
        mls__gw_feed_close(g);
        uv_timer_start(&g->linger, on_linger, g->nconns ? LINGER_MS : 0, 0);
}

static void on_wake(uv_async_t *a)
{
        mls_gateway_t *g = a->data;

        if (g->bus)
                mls__gw_feed_drain(g);
        if (atomic_load(&g->stop_requested))
                begin_shutdown(g);
}

/* The monitor's idle hook: a model with live subscribers in the hub is
 * never forgotten. */
static int model_in_use(void *opaque, const char *model_id)
{
        mls_gateway_t *g = opaque;

        return g->hub && mls_hub_has_model(g->hub, model_id);
}

/* --- libwebsockets ------------------------------------------------------- */

/* Binds host:port once ourselves, so that a port in use is reported
 * clearly (libwebsockets only logs it). */
static int probe_listen(const char *host, int port, char *numeric,
                        size_t numeric_size, char *errstr, size_t errstr_size)
{
        struct addrinfo hints, *res = NULL, *ai;
        char svc[16];
        int rc, err = 0;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        snprintf(svc, sizeof(svc), "%d", port);
        rc = getaddrinfo(host && *host ? host : NULL, svc, &hints, &res);
        if (rc != 0) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_HOST (--gateway-host): cannot resolve "
                         "\"%s\": %s",
                         host, gai_strerror(rc));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                int one = 1, fd;
                getnameinfo(ai->ai_addr, ai->ai_addrlen, numeric,
                            (socklen_t)numeric_size, NULL, 0, NI_NUMERICHOST);
                if (port == 0)
                        break; /* nothing to probe */
                fd = socket(ai->ai_family, ai->ai_socktype, 0);
                if (fd < 0)
                        continue;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
                        err = errno;
                else
                        err = 0;
                close(fd);
                if (!err)
                        break;
        }
        freeaddrinfo(res);
        if (err) {
                snprintf(errstr, errstr_size,
                         "cannot listen on %s:%d: %s (set GATEWAY_PORT or "
                         "--gateway-port to a free port, or 0 to pick one)",
                         host ? host : "0.0.0.0", port,
                         err == EADDRINUSE ? "port already in use"
                                           : strerror(err));
                return -1;
        }
        return 0;
}

static const struct lws_protocols protocols[] = {
        {"http", mls__gw_http_callback, sizeof(struct mls__gw_http_pss), 0, 0,
         NULL, 0},
        {MLS_WSPROTO_TRANSPORT_NAME, mls__gw_ws_callback,
         sizeof(struct mls__gw_conn *), WS_RX_BUFFER, 1, NULL, 1 << 20},
        {MLS_WSPROTO_LEGACY_NAME, mls__gw_ws_callback,
         sizeof(struct mls__gw_conn *), WS_RX_BUFFER, 2, NULL, 1 << 20},
        /* clients that offer no subprotocol land here and get 4406 */
        {"mlstream-no-subprotocol", mls__gw_ws_callback,
         sizeof(struct mls__gw_conn *), WS_RX_BUFFER, 0, NULL, 1 << 20},
        {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* per-vhost options: the no-subprotocol entry is the default protocol */
static const struct lws_protocol_vhost_options pvo_default = {NULL, NULL,
                                                              "default", "1"};
static const struct lws_protocol_vhost_options pvo = {
        NULL, &pvo_default, "mlstream-no-subprotocol", ""};

/* No libwebsockets validity timers: each connection's would be kept in
 * one sorted list that every (re)arm walks, O(n) per connection. ws.c
 * pings idle clients itself (30 s, hang-up at 60 s) from its timer heap. */
static const lws_retry_bo_t idle_policy = {
        .secs_since_valid_ping = 0,
        .secs_since_valid_hangup = 0,
};

static void lws_log(int level, const char *line)
{
        size_t n = strlen(line);

        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        if (level & LLL_ERR)
                mls_warn("libwebsockets: %.*s", (int)n, line);
        else
                mls_debug("libwebsockets: %.*s", (int)n, line);
}

static int start_lws(mls_gateway_t *g, char *errstr, size_t errstr_size)
{
        struct lws_context_creation_info info;
        void *loops[1] = {&g->loop};
        char numeric[NI_MAXHOST] = "";
        const char *host = g->cfg->gateway_host;
        int any = !host || !*host || strcmp(host, "0.0.0.0") == 0 ||
                  strcmp(host, "::") == 0 || strcmp(host, "*") == 0;
        int debug =
                g->cfg->log_level && strcmp(g->cfg->log_level, "debug") == 0;

        /* libwebsockets' notices only with ML_LOG_LEVEL=debug */
        lws_set_log_level(LLL_ERR | LLL_WARN | (debug ? LLL_NOTICE : 0),
                          lws_log);
        if (probe_listen(any ? NULL : host, (int)g->cfg->gateway_port, numeric,
                         sizeof(numeric), errstr, errstr_size) < 0)
                return -1;

        memset(&info, 0, sizeof(info));
        info.options = LWS_SERVER_OPTION_LIBUV |
                       LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                       LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
        info.foreign_loops = loops;
        info.user = g;
        info.fd_limit_per_thread = mls__gw_limits_lws_fds(g->max_conns);
        info.max_http_header_data = 32768;
        info.max_http_header_pool = 128;
        info.pt_serv_buf_size = 16384;
        info.server_string = "mlstream";
        info.pcontext = &g->lws;
        g->lws = lws_create_context(&info);
        if (!g->lws) {
                snprintf(errstr, errstr_size,
                         "cannot start the HTTP/WebSocket server "
                         "(libwebsockets with libuv)");
                return -1;
        }

        memset(&info, 0, sizeof(info));
        info.port = (int)g->cfg->gateway_port;
        /* lws takes an interface name or a numeric address */
        info.iface = any ? NULL : numeric;
        info.protocols = protocols;
        info.pvo = &pvo;
        info.vhost_name = "mlstream";
        info.retry_and_idle_policy = &idle_policy;
        info.keepalive_timeout = 30;
        info.timeout_secs = 20;
        info.options = LWS_SERVER_OPTION_LIBUV;
        if (any ? strcmp(host ? host : "", "::") != 0 : !strchr(numeric, ':'))
                /* an IPv4 address (or 0.0.0.0): bind exactly that */
                info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        info.user = g;
        g->vhost = lws_create_vhost(g->lws, &info);
        if (!g->vhost) {
                snprintf(errstr, errstr_size,
                         "cannot listen on %s:%lld (set GATEWAY_HOST / "
                         "--gateway-host and GATEWAY_PORT / --gateway-port)",
                         any ? "0.0.0.0" : host, g->cfg->gateway_port);
                return -1;
        }
        g->port = lws_get_vhost_listen_port(g->vhost);
        return 0;
}

/* REDIS_URL: one URL, or with REDIS_CLUSTER=true the cluster's seeds
 * (which needs the per-model channels). Returns 0 with *urls (free() it)
 * and *n set, or -1 with errstr naming the settings. */
static int parse_redis(const struct mls_config *cfg,
                       struct mls_redis_url **urls, size_t *n, char *errstr,
                       size_t errstr_size)
{
        char why[512];

        if (cfg->redis_cluster && strcmp(cfg->redis_cluster, "true") == 0) {
                if (!mls_channel_per_model(cfg)) {
                        snprintf(errstr, errstr_size,
                                 "REDIS_CLUSTER=true (--redis-cluster) needs "
                                 "ML_STREAM_REDIS_CHANNEL_MODE=per-model "
                                 "(--redis-channel-mode), not %s: sharded "
                                 "Pub/Sub spreads the models' channels over "
                                 "the cluster",
                                 cfg->redis_channel_mode);
                        return -1;
                }
                if (mls_cluster_seeds_parse(cfg->redis_url, urls, n, why,
                                            sizeof(why)) == 0)
                        return 0;
        } else {
                *urls = calloc(1, sizeof(**urls));
                *n = 1;
                if (!*urls) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                if (mls_redis_url_parse(cfg->redis_url, *urls, why,
                                        sizeof(why)) == 0)
                        return 0;
                free(*urls);
                *urls = NULL;
                *n = 0;
        }
        snprintf(errstr, errstr_size, "REDIS_URL (--redis-url): %s", why);
        return -1;
}

/* --- public API ---------------------------------------------------------- */

mls_gateway_t *mls_gateway_new(const struct mls_config *cfg,
                               mls_metrics_t *metrics, int bus, char *errstr,
                               size_t errstr_size)
{
        mls_gateway_t *g = calloc(1, sizeof(*g));
        struct mls_gql_limits limits;
        struct mls_redis_url *urls = NULL;
        size_t nurls = 0;

        if (!g) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        g->cfg = cfg;
        g->metrics = metrics;
        g->bus = bus;
        g->max_message = (size_t)cfg->gateway_max_message_bytes;
        g->max_payload = (size_t)cfg->gateway_max_payload_bytes;
        g->send_queue = (unsigned)cfg->gateway_send_queue;
        g->max_conns = (unsigned)cfg->gateway_max_connections;
        g->metrics_auth = cfg->gateway_metrics_auth > 0;
        pthread_mutex_init(&g->bus_lock, NULL);
        atomic_init(&g->stop_requested, 0);
        /* one batch of frames, or one message of the largest size */
        mls_buf_init(&g->wbuf, 2 * g->max_payload + 65536 + 4096);

        if (cfg->gateway_idle_hangup_ms <= cfg->gateway_idle_ping_ms) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_IDLE_HANGUP_MS (%lld) must exceed "
                         "GATEWAY_IDLE_PING_MS (%lld): a client needs time "
                         "to answer the ping",
                         cfg->gateway_idle_hangup_ms,
                         cfg->gateway_idle_ping_ms);
                goto fail;
        }
        if (!bus && parse_redis(cfg, &urls, &nurls, errstr, errstr_size) < 0)
                goto fail;
        if (mls__gw_origin_parse(&g->origins, cfg->gateway_allowed_origins,
                                 errstr, errstr_size) < 0)
                goto fail;
        {
                struct mls_auth_conf ac = {
                        .token = cfg->gateway_auth_token,
                        .tokens = cfg->gateway_auth_tokens,
                        .tokens_file = cfg->gateway_auth_tokens_file,
                        .jwt_secret = cfg->gateway_jwt_secret,
                        .jwt_secret_file = cfg->gateway_jwt_secret_file,
                        .leeway_s = cfg->gateway_jwt_leeway_seconds,
                        .audience = cfg->gateway_jwt_audience,
                        .issuer = cfg->gateway_jwt_issuer,
                        .tenant_claim = cfg->gateway_jwt_tenant_claim,
                        .require_tenants = cfg->gateway_jwt_require_tenants > 0,
                };
                g->auth = mls_auth_new(&ac, errstr, errstr_size);
                if (!g->auth)
                        goto fail;
                /* security settings that would silently do nothing */
                if (g->metrics_auth && !mls_auth_enabled(g->auth)) {
                        snprintf(errstr, errstr_size,
                                 "GATEWAY_METRICS_AUTH=1 needs credentials: "
                                 "set GATEWAY_AUTH_TOKENS(_FILE) or "
                                 "GATEWAY_JWT_SECRET(_FILE)");
                        goto fail;
                }
                if (!mls_auth_jwt_enabled(g->auth) &&
                    (ac.require_tenants || (ac.audience && *ac.audience) ||
                     (ac.issuer && *ac.issuer))) {
                        snprintf(errstr, errstr_size,
                                 "GATEWAY_JWT_REQUIRE_TENANTS, "
                                 "GATEWAY_JWT_AUDIENCE and GATEWAY_JWT_ISSUER "
                                 "need GATEWAY_JWT_SECRET(_FILE)");
                        goto fail;
                }
        }
        mls__gw_metrics_register(g);

        mls_gql_limits_default(&limits);
        limits.max_document_bytes = (size_t)cfg->gateway_max_document_bytes;
        limits.max_field_depth = (unsigned)cfg->gateway_max_query_depth;
        limits.max_cost = (unsigned long)cfg->gateway_max_query_cost;
        if (cfg->gateway_max_query_cost <= cfg->gateway_max_models) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_MAX_QUERY_COST (%lld) must be above "
                         "GATEWAY_MAX_MODELS (%lld): { mlStreamingModels } "
                         "costs 1 + GATEWAY_MAX_MODELS",
                         cfg->gateway_max_query_cost, cfg->gateway_max_models);
                goto fail;
        }
        g->schema = mls_gql_schema_new(errstr, errstr_size);
        if (!g->schema ||
            mls_gql_schema_set_list_size(g->schema, "Query",
                                         "mlStreamingModels",
                                         (unsigned)cfg->gateway_max_models,
                                         errstr, errstr_size) < 0 ||
            mls_gql_schema_set_list_size(
                    g->schema, "Query", "mlStreamingOverview",
                    (unsigned)(cfg->gateway_max_models < MLS__GW_OVERVIEW_MAX
                                       ? cfg->gateway_max_models
                                       : MLS__GW_OVERVIEW_MAX),
                    errstr, errstr_size) < 0 ||
            mls_gql_schema_set_list_size(
                    g->schema, "Query", "mlModelComparison",
                    MLS_ENGINES_MAX_PAIRS, errstr, errstr_size) < 0 ||
            mls__gw_resolvers_install(g, g->schema, errstr, errstr_size) < 0)
                goto fail;
        g->cache =
                mls_gql_cache_new(g->schema, &limits, 512, errstr, errstr_size);
        g->monitor = mls_monitor_new((unsigned)cfg->latency_window,
                                     (unsigned)cfg->gateway_max_models);
        g->engines = mls_engines_new(MLS_ENGINES_MAX);
        g->hub = mls_hub_new(g->max_payload, mls_wsproto_deliver, NULL);
        if (g->hub)
                mls_hub_set_max_models(g->hub,
                                       (size_t)cfg->gateway_max_watched_models);
        g->dedupe = cfg->gateway_dedupe_window
                            ? mls_dedupe_new((size_t)cfg->gateway_dedupe_window)
                            : NULL;
        g->history =
                cfg->gateway_history_bytes
                        ? mls_history_new((size_t)cfg->gateway_history_bytes,
                                          cfg->gateway_history_max_age_ms)
                        : NULL;
        if (!g->cache || !g->monitor || !g->engines || !g->hub ||
            (cfg->gateway_dedupe_window && !g->dedupe) ||
            (cfg->gateway_history_bytes && !g->history)) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        /* tenant-scoped callers exist only with JWTs */
        mls_monitor_track_tenants(g->monitor, mls_auth_jwt_enabled(g->auth));
        mls_monitor_set_idle(g->monitor, cfg->gateway_model_idle_seconds * 1000,
                             model_in_use, g);
        {
                struct mls_monitor_metrics mm = {
                        .win_latency = g->m_win_latency,
                        .win_size = g->m_win_size,
                        .last_seen = g->m_last_seen,
                        .max_series = (unsigned)cfg->gateway_metrics_max_models,
                };
                mls_monitor_set_metrics(g->monitor, &mm);
        }
        g->env = (struct mls_wsproto_env){
                .cache = g->cache,
                .hub = g->hub,
                .auth = g->auth,
                .max_operations = (unsigned)cfg->gateway_max_operations,
                .init_timeout_ms = cfg->gateway_init_timeout_ms,
                .keepalive_ms = cfg->gateway_keepalive_ms,
                .max_out_bytes = g->max_payload,
                .history = g->history,
                .stats = &g->resume_stats,
        };

        if (uv_loop_init(&g->loop) < 0) {
                snprintf(errstr, errstr_size, "cannot create the event loop");
                goto fail;
        }
        g->loop_ready = 1;
        uv_async_init(&g->loop, &g->wake, on_wake);
        g->wake.data = g;
        uv_timer_init(&g->loop, &g->linger);
        g->linger.data = g;
        uv_check_init(&g->loop, &g->flush);
        g->flush.data = g;
        uv_check_start(&g->flush, mls__gw_ws_flush);
        uv_timer_init(&g->loop, &g->timers);
        g->timers.data = g;
        g->handles_ready = 1;

        mls__gw_limits_raise_nofile(g->max_conns);
        if (start_lws(g, errstr, errstr_size) < 0)
                goto fail;

        if (mls__gw_feed_start(g, urls, nurls, errstr, errstr_size) < 0)
                goto fail;
        free(urls);
        urls = NULL;
        mls_info("gateway listening on %s:%d (%s)",
                 cfg->gateway_host ? cfg->gateway_host : "0.0.0.0", g->port,
                 bus ? "in-process bus" : "Redis");
        /* what is on, never a credential */
        if (mls_auth_enabled(g->auth))
                mls_info("bearer tokens required on /graphql%s "
                         "(%zu static token(s), JWT HS256 %s)",
                         g->metrics_auth ? " and /metrics" : "",
                         mls_auth_static_tokens(g->auth),
                         mls_auth_jwt_enabled(g->auth) ? "on" : "off");
        else
                mls_info("no authentication on /graphql (set "
                         "GATEWAY_AUTH_TOKENS_FILE or GATEWAY_JWT_SECRET_FILE; "
                         "docs/security.md)");
        return g;
fail:
        free(urls);
        mls_gateway_free(g);
        return NULL;
}

int mls_gateway_run(mls_gateway_t *g)
{
        uv_run(&g->loop, UV_RUN_DEFAULT);
        return g->exit_status;
}

void mls_gateway_stop(mls_gateway_t *g)
{
        atomic_store(&g->stop_requested, 1);
        uv_async_send(&g->wake);
}

int mls_gateway_publish(mls_gateway_t *g, const char *payload, size_t len)
{
        if (!g->bus || mls__gw_feed_push(g, payload, len) < 0)
                return -1;
        uv_async_send(&g->wake);
        return 0;
}

int mls_gateway_port(const mls_gateway_t *g)
{
        return g->port;
}

void mls_gateway_free(mls_gateway_t *g)
{
        if (!g)
                return;
        if (g->loop_ready) {
                /* never ran, or ran and returned: either way close what
                 * is left and let the loop finish the closes */
                g->stopping = 1;
                teardown(g);
                uv_run(&g->loop, UV_RUN_DEFAULT);
                for (int i = 0; g->lws && i < 3; i++) {
                        lws_context_destroy(g->lws);
                        uv_run(&g->loop, UV_RUN_DEFAULT);
                }
                if (uv_loop_close(&g->loop) != 0)
                        mls_warn("gateway: event loop closed with handles "
                                 "still open");
        }
        if (g->hub)
                mls_hub_on_models(g->hub, NULL, NULL);
        mls__gw_feed_free(g);
        mls_hub_free(g->hub);
        mls_dedupe_free(g->dedupe);
        mls_history_free(g->history);
        mls_monitor_free(g->monitor);
        mls_engines_free(g->engines);
        mls_gql_cache_free(g->cache);
        mls_gql_schema_free(g->schema);
        mls__gw_feed_clear(g);
        mls__gw_origin_free(&g->origins);
        mls_auth_free(g->auth);
        mls_buf_free(&g->wbuf);
        free(g->flush_list);
        free(g->timer_heap);
        pthread_mutex_destroy(&g->bus_lock);
        free(g);
}
