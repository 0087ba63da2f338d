/*
 * The gateway's life cycle: settings, the libuv loop it owns, the
 * libwebsockets context on it (LWS_SERVER_OPTION_LIBUV + foreign_loops),
 * the feed (Redis subscriber or in-process bus) into the monitor and the
 * hub, metrics, and an orderly shutdown.
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/redis_url.h"
#include "gateway/gateway_int.h"
#include "gateway/payload.h"

#define BUS_MAX_MSGS 65536
#define BUS_MAX_BYTES ((size_t)256 << 20)
#define LINGER_MS 200 /* for close frames, before the context goes */
#define WS_RX_BUFFER 4096

struct bus_msg {
        struct bus_msg *next;
        size_t len;
        char data[];
};

int64_t mls__gw_now_ms(void)
{
        return mls_clock_mono_ns() / 1000000;
}

/* --- the feed --------------------------------------------------------------
 */

/* One payload from Redis or the bus: normalised once, recorded in the
 * monitor, rendered once per subscription group. */
static void on_payload(mls_gateway_t *g, const char *data, size_t len)
{
        struct mls_payload p;
        int64_t now = mls_clock_wall_ms();
        size_t i;
        json_t *m;

        switch (mls_payload_normalize(data, len, g->max_payload, &p)) {
        case MLS_PAYLOAD_PREDICTION: {
                size_t tlen = 0;
                const char *tenant = mls_hub_event_tenant(p.event, &tlen);

                mls_series_add(g->m_pred, 1);
                mls_monitor_prediction(g->monitor, p.model_id, tenant, tlen,
                                       p.latency_ms, now);
                mls_hub_publish(g->hub, p.model_id, tenant, tlen, p.event);
                break;
        }
        case MLS_PAYLOAD_HEARTBEAT:
                mls_series_add(g->m_hb, 1);
                json_array_foreach(p.models, i, m)
                {
                        mls_monitor_heartbeat(g->monitor, json_string_value(m),
                                              now);
                }
                break;
        default:
                mls_series_add(g->m_garbage, 1);
                mls_debug("skipped a payload (%zu bytes): %s", len, p.reason);
                break;
        }
        mls_payload_clear(&p);
}

static void redis_message(void *opaque, const char *data, size_t len)
{
        on_payload(opaque, data, len);
}

static void redis_state(void *opaque, int up)
{
        mls_gateway_t *g = opaque;

        mls_monitor_set_connected(g->monitor, up);
        mls_series_set(g->m_redis, up);
        mls_series_set(g->m_ready, up);
}

static void drain_bus(mls_gateway_t *g)
{
        struct bus_msg *m, *next;

        pthread_mutex_lock(&g->bus_lock);
        m = g->bus_head;
        g->bus_head = g->bus_tail = NULL;
        g->bus_count = g->bus_bytes = 0;
        pthread_mutex_unlock(&g->bus_lock);
        for (; m; m = next) {
                next = m->next;
                if (!g->stopping)
                        on_payload(g, m->data, m->len);
                free(m);
        }
}

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
        mls_redis_sub_close(g->redis);
        if (g->handles_ready) {
                uv_close((uv_handle_t *)&g->wake, NULL);
                uv_close((uv_handle_t *)&g->linger, NULL);
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
        mls_redis_sub_close(g->redis);
        uv_timer_start(&g->linger, on_linger, g->nconns ? LINGER_MS : 0, 0);
}

static void on_wake(uv_async_t *a)
{
        mls_gateway_t *g = a->data;

        if (g->bus)
                drain_bus(g);
        if (atomic_load(&g->stop_requested))
                begin_shutdown(g);
}

/* --- settings ------------------------------------------------------------ */

/*
 * One allowed origin as browsers send it (RFC 6454: scheme "://" host
 * [":" port], nothing after): lower-cased, a trailing "/" dropped. Returns
 * a new string, or NULL (errstr filled) when it is not an origin.
 */
static char *origin_entry(const char *p, size_t n, char *errstr,
                          size_t errstr_size)
{
        const char *sep;
        char *o;
        int ok;

        if (n && p[n - 1] == '/')
                n--;
        sep = memmem(p, n, "://", 3);
        /* "null" (opaque origins: sandboxed frames, file:) only by name */
        ok = (n == 4 && strncasecmp(p, "null", 4) == 0) ||
             (sep && sep > p && (size_t)(sep - p) + 3 < n &&
              !memchr(sep + 3, '/', n - (size_t)(sep - p) - 3));
        for (size_t i = 0; ok && i < n; i++)
                if (p[i] <= ' ' || p[i] > '~')
                        ok = 0;
        if (!ok) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_ALLOWED_ORIGINS (--gateway-allowed-origins): "
                         "\"%.*s\" is not an origin (scheme://host[:port], "
                         "no path)",
                         (int)(n > 200 ? 200 : n), p);
                return NULL;
        }
        o = strndup(p, n);
        if (!o) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        for (char *c = o; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c - 'A' + 'a');
        return o;
}

static int parse_origins(mls_gateway_t *g, const char *list, char *errstr,
                         size_t errstr_size)
{
        const char *p = list;

        if (!list || !*list)
                return 0;
        while (*p) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                char **o;

                while (n && (*p == ' ' || *p == '\t')) {
                        p++;
                        n--;
                }
                while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if (n == 1 && *p == '*') {
                        g->any_origin = 1;
                } else if (n) {
                        o = realloc(g->origins, (g->norigins + 1) * sizeof(*o));
                        if (!o) {
                                snprintf(errstr, errstr_size, "out of memory");
                                return -1;
                        }
                        g->origins = o;
                        if (!(o[g->norigins] =
                                      origin_entry(p, n, errstr, errstr_size)))
                                return -1;
                        g->norigins++;
                }
                p = end ? end + 1 : p + strlen(p);
        }
        if (!g->origins && !g->any_origin) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_ALLOWED_ORIGINS (--gateway-allowed-origins): "
                         "invalid value \"%s\": expected origins separated "
                         "by commas, or *",
                         list);
                return -1;
        }
        if (!g->origins) {
                /* "*" alone: CORS for everyone; origins stays non-NULL so
                 * that the CORS headers are sent */
                g->origins = calloc(1, sizeof(*g->origins));
                if (!g->origins) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
        }
        return 0;
}

int mls__gw_origin_ok(const mls_gateway_t *g, const char *origin)
{
        size_t n;

        if (!g->origins || g->any_origin || !origin)
                return 1;
        /* browsers send the ASCII serialisation without a trailing "/";
         * compare as the entries were stored: lower case */
        n = strlen(origin);
        for (size_t i = 0; i < g->norigins; i++)
                if (strlen(g->origins[i]) == n &&
                    strncasecmp(g->origins[i], origin, n) == 0)
                        return 1;
        return 0;
}

void mls__gw_auth_failed(mls_gateway_t *g, const char *transport,
                         enum mls_auth_result r, const char *why)
{
        if ((unsigned)r < MLS_AUTH_RESULTS && g->m_auth_fail[r])
                mls_series_add(g->m_auth_fail[r], 1);
        mls_debug("%s: credential refused (%s): %s", transport,
                  mls_auth_result_name(r), why ? why : "");
}

int mls__gw_ready(const mls_gateway_t *g)
{
        return !g->stopping && mls_monitor_connected(g->monitor);
}

/* Raises RLIMIT_NOFILE towards what max_conns needs; warns when it cannot
 * reach it. */
static void raise_nofile(unsigned max_conns)
{
        struct rlimit rl;
        rlim_t want = (rlim_t)max_conns + 64;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
                return;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                              ? want
                              : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
                mls_warn("open-file limit %llu is below what "
                         "GATEWAY_MAX_CONNECTIONS=%u needs; connections past "
                         "it will fail",
                         (unsigned long long)rl.rlim_cur, max_conns);
}

/* Descriptors libwebsockets may track: the connections, its own few, and
 * no more than the process may open. */
static unsigned fd_limit(unsigned max_conns)
{
        struct rlimit rl;
        unsigned want = max_conns + 64;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
            rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
                want = (unsigned)rl.rlim_cur;
        return want;
}

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

/* --- metrics ------------------------------------------------------------- */

static mls_series_t *series(mls_metrics_t *reg, enum mls_metric_type type,
                            const char *name, const char *help,
                            const char *label, const char *value)
{
        return mls_series(
                mls_metric_new(reg, type, name, help, label, NULL, NULL, 0),
                value, NULL);
}

static void register_metrics(mls_gateway_t *g)
{
        mls_metrics_t *r = g->metrics;
        mls_metric_t *conns, *rejected, *payloads;

        mls_series_set(
                mls_series(mls_metric_new(r, MLS_GAUGE, "ml_stream_build_info",
                                          "Build information.", "version",
                                          "component", NULL, 0),
                           MLS_VERSION, "gateway"),
                1);
        conns = mls_metric_new(r, MLS_GAUGE, "ml_stream_gateway_connections",
                               "Open WebSocket connections.", "protocol", NULL,
                               NULL, 0);
        g->m_conns_transport =
                mls_series(conns, MLS_WSPROTO_TRANSPORT_NAME, NULL);
        g->m_conns_legacy = mls_series(conns, MLS_WSPROTO_LEGACY_NAME, NULL);
        g->m_conns_total =
                series(r, MLS_COUNTER, "ml_stream_gateway_connections_total",
                       "WebSocket connections accepted.", NULL, NULL);
        rejected = mls_metric_new(
                r, MLS_COUNTER, "ml_stream_gateway_connections_rejected_total",
                "WebSocket upgrades refused, by reason.", "reason", NULL, NULL,
                0);
        g->m_rejected_limit = mls_series(rejected, "max_connections", NULL);
        g->m_rejected_origin = mls_series(rejected, "origin", NULL);
        g->m_rejected_path = mls_series(rejected, "path", NULL);
        g->m_ws_closed = mls_metric_new(
                r, MLS_COUNTER, "ml_stream_gateway_ws_closed_total",
                "WebSocket connections the gateway closed, by close code "
                "(4400 bad message, 4403 refused credential, 1003 binary "
                "frame, 1009 message too big, 1001 shutdown...).",
                "code", NULL, NULL, 0);
        {
                mls_metric_t *af = mls_metric_new(
                        r, MLS_COUNTER, "ml_stream_gateway_auth_failures_total",
                        "Credentials refused on /graphql (HTTP and "
                        "WebSocket) and /metrics, by reason.",
                        "reason", NULL, NULL, 0);
                for (int i = 1; i < MLS_AUTH_RESULTS; i++)
                        g->m_auth_fail[i] =
                                mls_series(af, mls_auth_result_name(i), NULL);
        }
        g->m_subs = series(r, MLS_GAUGE, "ml_stream_gateway_subscriptions",
                           "Live GraphQL subscriptions.", NULL, NULL);
        g->m_groups =
                series(r, MLS_GAUGE, "ml_stream_gateway_subscription_groups",
                       "Distinct (document, operation, variables) "
                       "subscription groups; each event is rendered "
                       "once per group.",
                       NULL, NULL);
        g->m_sent =
                series(r, MLS_COUNTER, "ml_stream_gateway_messages_sent_total",
                       "WebSocket messages written to clients.", NULL, NULL);
        g->m_dropped = series(r, MLS_COUNTER,
                              "ml_stream_gateway_messages_dropped_total",
                              "Subscription events dropped because a "
                              "client's send queue was full (slow client).",
                              NULL, NULL);
        g->m_redis = series(r, MLS_GAUGE, "ml_stream_gateway_redis_connected",
                            "1 while the gateway's Redis subscription is "
                            "live (always 1 on the in-process bus).",
                            NULL, NULL);
        g->m_ready = series(r, MLS_GAUGE, "ml_stream_gateway_ready",
                            "1 while /readyz answers 200.", NULL, NULL);
        payloads = mls_metric_new(r, MLS_COUNTER,
                                  "ml_stream_gateway_payloads_total",
                                  "Payloads read from the channel, by type.",
                                  "type", NULL, NULL, 0);
        g->m_pred = mls_series(payloads, "prediction", NULL);
        g->m_hb = mls_series(payloads, "heartbeat", NULL);
        g->m_garbage = series(r, MLS_COUNTER,
                              "ml_stream_gateway_payloads_invalid_total",
                              "Payloads skipped by the monitor as garbage "
                              "(not JSON, wrong or missing fields, too "
                              "large).",
                              NULL, NULL);
        g->m_render_err =
                series(r, MLS_COUNTER, "ml_stream_gateway_render_errors_total",
                       "Events that could not be rendered for a "
                       "subscription group (over the size cap).",
                       NULL, NULL);
        g->m_bus_dropped =
                series(r, MLS_COUNTER, "ml_stream_gateway_bus_dropped_total",
                       "Payloads refused because the in-process "
                       "bus queue was full.",
                       NULL, NULL);
        g->m_models =
                series(r, MLS_GAUGE, "ml_stream_gateway_models",
                       "Models whose status the monitor tracks.", NULL, NULL);
        g->m_http = mls_metric_new(r, MLS_COUNTER,
                                   "ml_stream_gateway_http_requests_total",
                                   "HTTP requests answered, by route and "
                                   "status code.",
                                   "path", "code", NULL, 0);
        g->m_win_latency = mls_metric_new(
                r, MLS_GAUGE, "ml_stream_gateway_window_latency_seconds",
                "Engine latency over the monitor's sliding window "
                "(ML_LATENCY_WINDOW), by model: stat=\"mean\" or \"p95\".",
                "model_id", "stat", NULL, 0);
        g->m_win_size = mls_metric_new(
                r, MLS_GAUGE, "ml_stream_gateway_window_size",
                "Predictions in the monitor's sliding window, by model.",
                "model_id", NULL, NULL, 0);
        g->m_last_seen = mls_metric_new(
                r, MLS_GAUGE, "ml_stream_gateway_last_seen_timestamp_seconds",
                "When a prediction or heartbeat for the model was last seen "
                "(Unix time).",
                "model_id", NULL, NULL, 0);
        mls_metric_new(r, MLS_COUNTER,
                       "ml_stream_gateway_models_forgotten_total",
                       "Models the monitor forgot, by reason: idle "
                       "(GATEWAY_MODEL_IDLE_SECONDS) or evicted (table full, "
                       "GATEWAY_MAX_MODELS).",
                       "reason", NULL, NULL, 0);
        mls_metric_new(r, MLS_COUNTER,
                       "ml_stream_gateway_models_untracked_total",
                       "Predictions and heartbeats for models the monitor "
                       "could not track (table full of models with live "
                       "subscribers).",
                       NULL, NULL, NULL, 0);
        mls__gw_ws_register_metrics(g);
}

/* A counter the monitor keeps, copied at scrape time. */
static void copy_counter(mls_metrics_t *r, const char *name, const char *label,
                         uint64_t v)
{
        mls_series_set(mls_series(mls_metric_new(r, MLS_COUNTER, name, "",
                                                 label ? "reason" : NULL, NULL,
                                                 NULL, 0),
                                  label, NULL),
                       (double)v);
}

int mls__gw_metrics(mls_gateway_t *g, struct mls_buf *out)
{
        struct mls_hub_stats hs;
        uint64_t dropped = atomic_load(&g->bus_dropped);

        mls_hub_stats(g->hub, &hs);
        mls_series_set(g->m_subs, (double)hs.members);
        mls_series_set(g->m_groups, (double)hs.groups);
        mls_series_add(g->m_render_err,
                       (double)(hs.render_errors - g->render_err_seen));
        g->render_err_seen = hs.render_errors;
        mls_series_add(g->m_bus_dropped,
                       (double)(dropped - g->bus_dropped_seen));
        g->bus_dropped_seen = dropped;
        mls_series_set(g->m_models, (double)mls_monitor_models(g->monitor));
        mls_series_set(g->m_ready, mls__gw_ready(g));
        /* O(GATEWAY_METRICS_MAX_MODELS), whatever the number of models */
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        mls_series_set(g->m_models, (double)mls_monitor_models(g->monitor));
        mls_monitor_export(g->monitor);
        copy_counter(g->metrics, "ml_stream_gateway_models_forgotten_total",
                     "idle", mls_monitor_expired(g->monitor));
        copy_counter(g->metrics, "ml_stream_gateway_models_forgotten_total",
                     "evicted", mls_monitor_evicted(g->monitor));
        copy_counter(g->metrics, "ml_stream_gateway_models_untracked_total",
                     NULL, mls_monitor_untracked(g->monitor));
        return mls_metrics_render(g->metrics, out);
}

/* --- status resolver ----------------------------------------------------- */

static json_t *resolve_status(void *opaque, void *request_ctx,
                              const char *field, json_t *args, char *errstr,
                              size_t errstr_size)
{
        mls_gateway_t *g = opaque;
        const struct mls_principal *who = request_ctx;
        const char *model = json_string_value(json_object_get(args, "modelId"));
        json_t *v;

        (void)field;
        if (!model) {
                snprintf(errstr, errstr_size, "modelId is required");
                return NULL;
        }
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        /* a tenant-scoped caller sees its own tenants' latencies only */
        v = mls_monitor_status(g->monitor, model, who ? who->tenants : NULL);
        if (!v)
                snprintf(errstr, errstr_size, "out of memory");
        return v;
}

/* Query.mlStreamingModels: the models the monitor tracks, sorted. The
 * sorted list is kept by the monitor between changes, so aliases of this
 * field share one array; a tenant-scoped caller gets the visible subset
 * (O(models)). Loop thread. */
static json_t *resolve_models(void *opaque, void *request_ctx,
                              const char *field, json_t *args, char *errstr,
                              size_t errstr_size)
{
        mls_gateway_t *g = opaque;
        const struct mls_principal *who = request_ctx;
        const mls_tenants_t *only = who ? who->tenants : NULL;
        json_t *ids, *v, *out;
        size_t i;

        (void)field;
        (void)args;
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        ids = mls_monitor_model_ids(g->monitor);
        if (!ids || !only)
                goto done;
        out = json_array();
        json_array_foreach(ids, i, v)
        {
                if (out &&
                    mls_monitor_visible(g->monitor, json_string_value(v), only))
                        json_array_append(out, v);
        }
        json_decref(ids);
        ids = out;
done:
        if (!ids)
                snprintf(errstr, errstr_size, "out of memory");
        return ids;
}

/* hub: a model with live subscribers is never forgotten */
static int model_in_use(void *opaque, const char *model_id)
{
        mls_gateway_t *g = opaque;

        return g->hub && mls_hub_has_model(g->hub, model_id);
}

/* --- libwebsockets ------------------------------------------------------- */

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

/* Pings WebSocket clients idle for 30 s, hangs up after 60 s without an
 * answer. */
static const lws_retry_bo_t idle_policy = {
        .secs_since_valid_ping = 30,
        .secs_since_valid_hangup = 60,
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
        info.fd_limit_per_thread = fd_limit(g->max_conns);
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

/* --- public API ---------------------------------------------------------- */

mls_gateway_t *mls_gateway_new(const struct mls_config *cfg,
                               mls_metrics_t *metrics, int bus, char *errstr,
                               size_t errstr_size)
{
        mls_gateway_t *g = calloc(1, sizeof(*g));
        struct mls_gql_limits limits;
        struct mls_redis_url url;

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

        if (!bus && mls_redis_url_parse(cfg->redis_url, &url, errstr,
                                        errstr_size) < 0) {
                char why[512];
                snprintf(why, sizeof(why), "%s", errstr);
                snprintf(errstr, errstr_size, "REDIS_URL (--redis-url): %s",
                         why);
                goto fail;
        }
        if (parse_origins(g, cfg->gateway_allowed_origins, errstr,
                          errstr_size) < 0)
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
        register_metrics(g);

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
            mls_gql_schema_set_resolver(g->schema, "Query", "mlStreamingStatus",
                                        resolve_status, g, errstr,
                                        errstr_size) < 0 ||
            mls_gql_schema_set_resolver(g->schema, "Query", "mlStreamingModels",
                                        resolve_models, g, errstr,
                                        errstr_size) < 0)
                goto fail;
        g->cache =
                mls_gql_cache_new(g->schema, &limits, 512, errstr, errstr_size);
        g->monitor = mls_monitor_new((unsigned)cfg->latency_window,
                                     (unsigned)cfg->gateway_max_models);
        g->hub = mls_hub_new(g->max_payload, mls_wsproto_deliver, NULL);
        if (!g->cache || !g->monitor || !g->hub) {
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
        g->handles_ready = 1;

        raise_nofile(g->max_conns);
        if (start_lws(g, errstr, errstr_size) < 0)
                goto fail;

        if (bus) {
                mls_monitor_set_connected(g->monitor, 1);
                mls_series_set(g->m_redis, 1);
                mls_series_set(g->m_ready, 1);
        } else {
                struct mls_redis_sub_conf rc = {
                        .url = url,
                        .channel = cfg->redis_channel,
                        .retry_max_ms = cfg->redis_retry_max_ms,
                        .max_reply_bytes = g->max_payload + 65536,
                        .on_message = redis_message,
                        .on_state = redis_state,
                        .opaque = g,
                };
                mls_series_set(g->m_redis, 0);
                mls_series_set(g->m_ready, 0);
                g->redis =
                        mls_redis_sub_new(&g->loop, &rc, errstr, errstr_size);
                if (!g->redis)
                        goto fail;
        }
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
        struct bus_msg *m;

        if (!g->bus)
                return -1;
        pthread_mutex_lock(&g->bus_lock);
        if (g->bus_count >= BUS_MAX_MSGS ||
            g->bus_bytes + len > BUS_MAX_BYTES ||
            !(m = malloc(sizeof(*m) + len))) {
                pthread_mutex_unlock(&g->bus_lock);
                atomic_fetch_add(&g->bus_dropped, 1);
                return -1;
        }
        m->next = NULL;
        m->len = len;
        memcpy(m->data, payload, len);
        if (g->bus_tail)
                g->bus_tail->next = m;
        else
                g->bus_head = m;
        g->bus_tail = m;
        g->bus_count++;
        g->bus_bytes += len;
        pthread_mutex_unlock(&g->bus_lock);
        uv_async_send(&g->wake);
        return 0;
}

int mls_gateway_port(const mls_gateway_t *g)
{
        return g->port;
}

void mls_gateway_free(mls_gateway_t *g)
{
        struct bus_msg *m, *next;

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
        mls_redis_sub_free(g->redis);
        mls_hub_free(g->hub);
        mls_monitor_free(g->monitor);
        mls_gql_cache_free(g->cache);
        mls_gql_schema_free(g->schema);
        for (m = g->bus_head; m; m = next) {
                next = m->next;
                free(m);
        }
        for (size_t i = 0; i < g->norigins; i++)
                free(g->origins[i]);
        free(g->origins);
        mls_auth_free(g->auth);
        mls_buf_free(&g->wbuf);
        pthread_mutex_destroy(&g->bus_lock);
        free(g);
}
