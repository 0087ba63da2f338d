/*
 * The gateway's metrics: every family it registers (connections, refusals,
 * subscriptions, payloads, HTTP requests, the monitor's windows, ...), the
 * values copied in at scrape time, the rendering of /metrics, and the
 * counting of refused credentials.
 *
 * Threads: the loop thread, except mls__gw_metrics_register() (start-up,
 * before the loop runs).
 */
#include <stdio.h>

#include "gateway/gateway_int.h"

static mls_series_t *series(mls_metrics_t *reg, enum mls_metric_type type,
                            const char *name, const char *help,
                            const char *label, const char *value)
{
        return mls_series(
                mls_metric_new(reg, type, name, help, label, NULL, NULL, 0),
                value, NULL);
}

void mls__gw_metrics_register(mls_gateway_t *g)
{
        mls_metrics_t *r = g->metrics;
        mls_metric_t *conns, *rejected, *payloads, *closed;

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
                       "Distinct (document, operation, variables but "
                       "`after`) "
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
        g->m_channels =
                series(r, MLS_GAUGE, "ml_stream_gateway_redis_channels",
                       "Redis channels the gateway is subscribed to (with "
                       "ML_STREAM_REDIS_CHANNEL_MODE=per-model: the control "
                       "channel and one per model its clients watch).",
                       NULL, NULL);
        g->m_resubscribes = series(
                r, MLS_COUNTER, "ml_stream_gateway_redis_resubscribes_total",
                "Channels subscribed again on another Redis Cluster node (or "
                "the same one, reconnected) after a slot move, a failover or "
                "a lost node connection (REDIS_CLUSTER=true; else 0).",
                NULL, NULL);
        g->m_redis_errors = series(
                r, MLS_COUNTER,
                "ml_stream_gateway_redis_connection_errors_total",
                "Redis connections that failed or were lost: refused or "
                "timed-out connects, connections closed, silent past twice "
                "GATEWAY_REDIS_PING_MS, or dropped for a reply past a bound. "
                "Each is made again after a backoff; the log says why.",
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
        g->m_dup = series(r, MLS_COUNTER,
                          "ml_stream_gateway_duplicates_dropped_total",
                          "Predictions not delivered because their "
                          "inference id was delivered already "
                          "(GATEWAY_DEDUPE_WINDOW).",
                          NULL, NULL);
        g->m_hist_bytes =
                series(r, MLS_GAUGE, "ml_stream_gateway_history_bytes",
                       "Memory held by the history of recent predictions "
                       "(GATEWAY_HISTORY_BYTES).",
                       NULL, NULL);
        g->m_hist_entries =
                series(r, MLS_GAUGE, "ml_stream_gateway_history_predictions",
                       "Predictions held in the history.", NULL, NULL);
        g->m_hist_evicted = series(
                r, MLS_COUNTER, "ml_stream_gateway_history_evicted_total",
                "Predictions that left the history for its size or age "
                "limit.",
                NULL, NULL);
        g->m_hist_refused = series(
                r, MLS_COUNTER, "ml_stream_gateway_history_refused_total",
                "Predictions the history could not keep (larger than half "
                "of it, out of memory); a subscriber "
                "resuming across them is told of the gap.",
                NULL, NULL);
        g->m_resumes =
                series(r, MLS_COUNTER, "ml_stream_gateway_resumes_total",
                       "Subscriptions that resumed with after:.", NULL, NULL);
        g->m_gaps =
                series(r, MLS_COUNTER, "ml_stream_gateway_resume_gaps_total",
                       "Gaps reported to resumed subscriptions: "
                       "predictions they may have missed.",
                       NULL, NULL);
        g->m_replayed =
                series(r, MLS_COUNTER, "ml_stream_gateway_replayed_total",
                       "Events sent to resumed subscriptions from "
                       "the history.",
                       NULL, NULL);
        g->m_refused_models = series(
                r, MLS_COUNTER, "ml_stream_gateway_models_refused_total",
                "Subscriptions refused because they would watch one model "
                "more than GATEWAY_MAX_WATCHED_MODELS.",
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
        g->m_engines = series(r, MLS_GAUGE, "ml_stream_gateway_engines",
                              "Live engines whose heartbeats list their "
                              "models' versions (loaded, comparisons).",
                              NULL, NULL);
        g->m_hb_invalid = series(
                r, MLS_COUNTER,
                "ml_stream_gateway_heartbeat_entries_invalid_total",
                "Heartbeat \"loaded\" and \"comparisons\" entries skipped: "
                "wrong types, past a cap, or without an engine_id (a field "
                "that is not an array counts once).",
                NULL, NULL);
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
                       "GATEWAY_MAX_WATCHED_MODELS).",
                       "reason", NULL, NULL, 0);
        mls_metric_new(r, MLS_COUNTER,
                       "ml_stream_gateway_models_untracked_total",
                       "Predictions and heartbeats for models the monitor "
                       "could not track (table full of models with live "
                       "subscribers).",
                       NULL, NULL, NULL, 0);
        /* closed for a limit (ws.c) */
        closed = mls_metric_new(
                r, MLS_COUNTER, "ml_stream_gateway_connections_closed_total",
                "WebSocket connections the gateway closed for a limit, by "
                "reason: send_queue_bytes (more than GATEWAY_SEND_QUEUE_BYTES "
                "unread, 1008), send_queue (more than GATEWAY_SEND_QUEUE + 64 "
                "messages unread, 1008), init_timeout (no connection_init "
                "within GATEWAY_INIT_TIMEOUT_MS, 4408).",
                "reason", NULL, NULL, 0);
        g->m_closed_queue_bytes = mls_series(closed, "send_queue_bytes", NULL);
        g->m_closed_queue = mls_series(closed, "send_queue", NULL);
        g->m_closed_init = mls_series(closed, "init_timeout", NULL);
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

int mls__gw_metrics_render(mls_gateway_t *g, struct mls_buf *out)
{
        struct mls_hub_stats hs;
        uint64_t dropped = atomic_load(&g->bus_dropped);

        mls_hub_stats(g->hub, &hs);
        mls_series_set(g->m_subs, (double)hs.members);
        mls_series_set(g->m_groups, (double)hs.groups);
        mls_series_add(g->m_render_err,
                       (double)(hs.render_errors - g->render_err_seen));
        g->render_err_seen = hs.render_errors;
        mls_series_add(g->m_refused_models,
                       (double)(hs.refused_models - g->refused_models_seen));
        g->refused_models_seen = hs.refused_models;
        mls_series_add(g->m_bus_dropped,
                       (double)(dropped - g->bus_dropped_seen));
        g->bus_dropped_seen = dropped;
        mls_series_set(g->m_models, (double)mls_monitor_models(g->monitor));
        mls_series_set(g->m_ready, mls__gw_ready(g));
        if (g->redis) {
                uint64_t resubs = mls__gw_feed_resubscribes(g);
                uint64_t errs = mls__gw_feed_errors(g);

                mls_series_set(g->m_channels, (double)mls__gw_feed_channels(g));
                mls_series_add(g->m_resubscribes,
                               (double)(resubs - g->resubscribes_seen));
                g->resubscribes_seen = resubs;
                mls_series_add(g->m_redis_errors,
                               (double)(errs - g->redis_errors_seen));
                g->redis_errors_seen = errs;
        }
        if (g->history) {
                struct mls_history_stats st;

                mls_history_expire(g->history, mls_clock_wall_ms());
                mls_history_stats(g->history, &st);
                mls_series_set(g->m_hist_bytes, (double)st.bytes);
                mls_series_set(g->m_hist_entries, (double)st.entries);
                mls_series_set(g->m_hist_evicted, (double)st.evicted);
                mls_series_set(g->m_hist_refused, (double)st.refused);
        }
        mls_series_set(g->m_resumes, (double)g->resume_stats.resumes);
        mls_series_set(g->m_gaps, (double)g->resume_stats.gaps);
        mls_series_set(g->m_replayed, (double)g->resume_stats.replayed);
        /* O(GATEWAY_METRICS_MAX_MODELS), whatever the number of models */
        mls_monitor_expire(g->monitor, mls_clock_wall_ms());
        mls_series_set(g->m_models, (double)mls_monitor_models(g->monitor));
        mls_engines_expire(g->engines, mls_clock_wall_ms());
        mls_series_set(g->m_engines, (double)mls_engines_count(g->engines));
        mls_monitor_export(g->monitor);
        copy_counter(g->metrics, "ml_stream_gateway_models_forgotten_total",
                     "idle", mls_monitor_expired(g->monitor));
        copy_counter(g->metrics, "ml_stream_gateway_models_forgotten_total",
                     "evicted", mls_monitor_evicted(g->monitor));
        copy_counter(g->metrics, "ml_stream_gateway_models_untracked_total",
                     NULL, mls_monitor_untracked(g->monitor));
        return mls_metrics_render(g->metrics, out);
}

void mls__gw_metrics_auth_failed(mls_gateway_t *g, const char *transport,
                                 enum mls_auth_result r, const char *why)
{
        if ((unsigned)r < MLS_AUTH_RESULTS && g->m_auth_fail[r])
                mls_series_add(g->m_auth_fail[r], 1);
        mls_debug("%s: credential refused (%s): %s", transport,
                  mls_auth_result_name(r), why ? why : "");
}
