#include "common/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OFF(field) offsetof(struct mls_config, field)
#define E MLS_SCOPE_ENGINE
#define G MLS_SCOPE_GATEWAY
#define U MLS_SCOPE_UP

const struct mls_conf_def mls_conf_defs[] = {
        {"KAFKA_BOOTSTRAP_SERVERS", "kafka-bootstrap-servers", MLS_CONF_STR,
         "localhost:9092", 0, 0, NULL, E | U, OFF(kafka_bootstrap_servers),
         "Kafka brokers, host:port[,host:port...]. Under `mlstream up`, "
         "setting it replaces the embedded broker."},
        {"KAFKA_INFERENCE_TOPIC", "kafka-inference-topic", MLS_CONF_STR,
         "ml.inference", 0, 0, NULL, E | U, OFF(kafka_inference_topic),
         "Topic the engine consumes input messages from."},
        {"KAFKA_CONSUMER_GROUP", "kafka-consumer-group", MLS_CONF_STR,
         "ml-streaming", 0, 0, NULL, E | U, OFF(kafka_consumer_group),
         "Consumer group id; engines in one group share the partitions."},
        {"KAFKA_OUTPUT_TOPIC", "kafka-output-topic", MLS_CONF_STR, NULL, 0, 0,
         NULL, E | U, OFF(kafka_output_topic),
         "Optional topic that also receives every prediction payload "
         "(durable, for automations). Unset: predictions go to Redis only."},
        {"KAFKA_DLQ_TOPIC", "kafka-dlq-topic", MLS_CONF_STR, "ml.inference.dlq",
         0, 0, NULL, E | U, OFF(kafka_dlq_topic),
         "Dead-letter topic: receives the original bytes of every message "
         "that fails to decode, validate or score, with an `mls.error` "
         "reason header. Empty: bad messages are only counted and logged."},
        {"KAFKA_CONFIG_FILE", "kafka-config-file", MLS_CONF_STR, NULL, 0, 0,
         NULL, E | U, OFF(kafka_config_file),
         "librdkafka properties file (name=value lines, # comments) applied "
         "to every Kafka client, e.g. SASL/SSL settings. `KAFKA_CONF_*` "
         "variables override it."},
        {"REDIS_URL", "redis-url", MLS_CONF_STR, "redis://localhost:6379/0", 0,
         0, NULL, E | G | U, OFF(redis_url),
         "Redis server, `redis://[:password@]host:port/db`. Under `mlstream "
         "up`, setting it replaces the in-process bus."},
        {"ML_STREAM_REDIS_CHANNEL", "redis-channel", MLS_CONF_STR,
         "ml:stream:inference", 0, 0, NULL, E | G | U, OFF(redis_channel),
         "Redis Pub/Sub channel for predictions and heartbeats."},
        {"REDIS_RETRY_MAX_MS", "redis-retry-max-ms", MLS_CONF_INT, "2000", 10,
         60000, NULL, E | G | U, OFF(redis_retry_max_ms),
         "Longest wait between Redis reconnect attempts (backoff doubles "
         "from 50 ms up to this)."},
        {"ML_MODEL_FRAMEWORK", "model-framework", MLS_CONF_ENUM, "torch", 0, 0,
         "torch|tensorflow|identity", E | U, OFF(model_framework),
         "Framework of the model at `ML_MODEL_PATH`. A framework this build "
         "does not include is an error at start-up that lists the ones it "
         "does."},
        {"ML_MODEL_PATH", "model-path", MLS_CONF_STR, NULL, 0, 0, NULL, E | U,
         OFF(model_path),
         "Model artifact (TorchScript file or SavedModel directory), served "
         "for every model id. Unset: the identity model, which returns the "
         "features as predictions. See docs/models.md."},
        {"ML_MODEL_REPOSITORY", "model-repository", MLS_CONF_STR, NULL, 0, 0,
         NULL, E | U, OFF(model_repository),
         "Directory with one sub-directory per model id, each holding a "
         "`model.conf` and the artifact (many models in one engine; "
         "docs/models.md). Messages for an id without a loaded model are "
         "dead-lettered. Excludes `ML_MODEL_PATH`."},
        {"ML_MODEL_INPUT_WIDTH", "model-input-width", MLS_CONF_INT, "0", 0,
         16777216, NULL, E | U, OFF(model_input_width),
         "Features per row the `ML_MODEL_PATH` model takes; rows of another "
         "width are dead-lettered (`width_mismatch`). 0: read it from the "
         "model where the framework tells, else pass any width."},
        {"ML_MODEL_OUTPUT", "model-output", MLS_CONF_STR, NULL, 0, 0, NULL,
         E | U, OFF(model_output),
         "Which output of the `ML_MODEL_PATH` model to publish when it has "
         "several: a dict key or tuple index (torch), a `serving_default` "
         "output name (tensorflow). Unset: the only one, or a tuple's "
         "first."},
        {"ML_MODEL_POLL_INTERVAL_MS", "model-poll-interval-ms", MLS_CONF_INT,
         "2000", 0, 3600000, NULL, E | U, OFF(model_poll_interval_ms),
         "How often model files are checked for changes; a changed model is "
         "reloaded once its files stayed the same for one more interval. "
         "0: only on SIGHUP."},
        {"ML_DEFAULT_MODEL_ID", "default-model-id", MLS_CONF_STR, "default", 0,
         0, NULL, E | U, OFF(default_model_id),
         "Model id used for messages that carry no `model_id`."},
        {"ML_MODEL_THREADS", "model-threads", MLS_CONF_INT, "1", 0, 256, NULL,
         E | U, OFF(model_threads),
         "Threads a model may use for one batch (intra-op parallelism). 1 "
         "suits small models: the engine's other threads, Kafka and Redis "
         "need the remaining cores (bench/REPORT.md). 0 picks the "
         "framework's default, one per core."},
        {"ML_BATCH_MAX_ROWS", "batch-max-rows", MLS_CONF_INT, "256", 1, 65536,
         NULL, E | U, OFF(batch_max_rows),
         "Most rows scored together in one model call."},
        {"ML_BATCH_MAX_WAIT_US", "batch-max-wait-us", MLS_CONF_INT, "1000", 0,
         1000000, NULL, E | U, OFF(batch_max_wait_us),
         "Longest time, in microseconds, a message waits for others to fill "
         "its batch. 0: score whatever has arrived at once."},
        {"ML_BATCH_MAX_MESSAGES", "batch-max-messages", MLS_CONF_INT, "4096", 1,
         1000000, NULL, E | U, OFF(batch_max_messages),
         "Most messages in one batch, rejected ones included: a backlog of "
         "bad messages (which add no rows) still closes batches, so offsets "
         "advance and memory stays bounded."},
        {"ML_BATCH_MAX_BYTES", "batch-max-bytes", MLS_CONF_INT, "16777216",
         1024, 1073741824, NULL, E | U, OFF(batch_max_bytes),
         "Most input bytes held in one batch; a batch closes when the next "
         "message would pass it (a single larger message is a batch of "
         "its own)."},
        {"ML_BATCH_MAX_OUTPUT_BYTES", "batch-max-output-bytes", MLS_CONF_INT,
         "67108864", 65536, 1073741824, NULL, E | U,
         OFF(batch_max_output_bytes),
         "Most bytes of prediction payloads one batch may build; a message "
         "whose prediction does not fit is dead-lettered "
         "(`output_too_large`) rather than wedging the batch."},
        {"ML_PREFETCH_MAX_BYTES", "prefetch-max-bytes", MLS_CONF_INT,
         "100663296", 1048576, 17179869184LL, NULL, E | U,
         OFF(prefetch_max_bytes),
         "Most bytes of input the Kafka consumer prefetches, over all "
         "partitions of the input topic: librdkafka bounds its queue per "
         "partition, so the engine gives each partition this divided by "
         "the topic's partition count at start-up (at most 32 MiB). Bounds "
         "the engine's memory on any backlog; smaller drains a backlog "
         "more slowly. `KAFKA_CONF_QUEUED_MAX_MESSAGES_KBYTES` overrides "
         "it."},
        {"ML_DEAD_LETTER_MAX_BYTES", "dead-letter-max-bytes", MLS_CONF_INT,
         "65536", 0, 104857600, NULL, E | U, OFF(dead_letter_max_bytes),
         "When a Kafka topic refuses a message for good (too large, invalid "
         "record), the engine writes a dead letter with the first this-many "
         "bytes of it and `mls.truncated` headers instead "
         "(docs/operations.md); "
         "if even that is refused it is counted, logged and skipped."},
        {"ML_METRICS_MAX_MODELS", "metrics-max-models", MLS_CONF_INT, "100", 1,
         200, NULL, E | U, OFF(metrics_max_models),
         "Distinct model ids with their own metric series; further ids are "
         "counted under `model_id=\"__other__\"` so producers cannot grow "
         "/metrics without bound."},
        {"ML_COMMIT_INTERVAL_MS", "commit-interval-ms", MLS_CONF_INT, "0", 0,
         3600000, NULL, E | U, OFF(commit_interval_ms),
         "Least time between two offset commits. 0: commit as each batch "
         "is delivered (one commit in flight at a time), so a crash "
         "re-scores only what was in flight; larger values send fewer "
         "commits and re-score up to this much traffic after a crash."},
        {"ML_SHUTDOWN_TIMEOUT_MS", "shutdown-timeout-ms", MLS_CONF_INT, "10000",
         0, 600000, NULL, E | U, OFF(shutdown_timeout_ms),
         "On SIGTERM, the longest the engine spends delivering what it holds, "
         "committing offsets and leaving the group before it exits; "
         "undelivered messages are redelivered by Kafka."},
        {"ML_MAX_MESSAGE_BYTES", "max-message-bytes", MLS_CONF_INT, "1048576",
         64, 104857600, NULL, E | U, OFF(max_message_bytes),
         "Input messages larger than this are dead-lettered unread."},
        {"ML_MAX_ROWS_PER_MESSAGE", "max-rows-per-message", MLS_CONF_INT,
         "4096", 1, 1048576, NULL, E | U, OFF(max_rows_per_message),
         "Most feature rows one message may carry."},
        {"ML_MAX_ROW_WIDTH", "max-row-width", MLS_CONF_INT, "65536", 1,
         16777216, NULL, E | U, OFF(max_row_width),
         "Most numbers in one feature row."},
        {"ML_HEARTBEAT_INTERVAL_MS", "heartbeat-interval-ms", MLS_CONF_INT,
         "5000", 100, 3600000, NULL, E | U, OFF(heartbeat_interval_ms),
         "How often the engine publishes a heartbeat on the channel."},
        {"ML_ENGINE_ID", "engine-id", MLS_CONF_STR, NULL, 0, 0, NULL, E | U,
         OFF(engine_id),
         "Name of this engine in heartbeats and logs. Unset: "
         "`<hostname>-<pid>`."},
        {"ML_PROMETHEUS_PORT", "prometheus-port", MLS_CONF_INT, NULL, 0, 65535,
         NULL, E, OFF(prometheus_port),
         "Port of the engine's `/metrics`, `/healthz` and `/readyz`. Unset: "
         "disabled. 0 picks a free port (logged)."},
        {"ML_PROMETHEUS_HOST", "prometheus-host", MLS_CONF_STR, "0.0.0.0", 0, 0,
         NULL, E, OFF(prometheus_host),
         "Address the engine's metrics listener binds to."},
        {"GATEWAY_HOST", "gateway-host", MLS_CONF_STR, "0.0.0.0", 0, 0, NULL,
         G | U, OFF(gateway_host),
         "Address of the gateway's HTTP and WebSocket listener. `mlstream "
         "up` binds 127.0.0.1 unless this is set (a development mode has "
         "no authentication and no origin check)."},
        {"GATEWAY_PORT", "gateway-port", MLS_CONF_INT, "4000", 0, 65535, NULL,
         G | U, OFF(gateway_port),
         "Port of the gateway's listener: `/graphql`, `/`, `/metrics`, "
         "`/healthz`, `/readyz`."},
        /* gateway settings */
        {"GATEWAY_MAX_CONNECTIONS", "gateway-max-connections", MLS_CONF_INT,
         "16384", 1, 1000000, NULL, G | U, OFF(gateway_max_connections),
         "Most WebSocket connections at once; further upgrades are refused. "
         "The process's open-file limit is raised to fit when it can."},
        {"GATEWAY_MAX_MESSAGE_BYTES", "gateway-max-message-bytes", MLS_CONF_INT,
         "262144", 1024, 67108864, NULL, G | U, OFF(gateway_max_message_bytes),
         "Largest WebSocket message or HTTP request body a client may send; "
         "a larger message closes the connection (1009), a larger body gets "
         "413."},
        {"GATEWAY_MAX_PAYLOAD_BYTES", "gateway-max-payload-bytes", MLS_CONF_INT,
         "4194304", 1024, 268435456, NULL, G | U,
         OFF(gateway_max_payload_bytes),
         "Largest prediction payload read from the channel; larger ones are "
         "skipped and counted. Also caps one message sent to a client."},
        {"GATEWAY_MAX_DOCUMENT_BYTES", "gateway-max-document-bytes",
         MLS_CONF_INT, "65536", 256, 16777216, NULL, G | U,
         OFF(gateway_max_document_bytes), "Largest GraphQL document accepted."},
        {"GATEWAY_MAX_QUERY_DEPTH", "gateway-max-query-depth", MLS_CONF_INT,
         "32", 2, 128, NULL, G | U, OFF(gateway_max_query_depth),
         "Deepest field nesting a GraphQL document may have, fragments "
         "expanded (the introspection query needs about 15)."},
        {"GATEWAY_MAX_OPERATIONS", "gateway-max-operations", MLS_CONF_INT,
         "100", 1, 100000, NULL, G | U, OFF(gateway_max_operations),
         "Most live subscriptions on one WebSocket connection."},
        {"GATEWAY_SEND_QUEUE", "gateway-send-queue", MLS_CONF_INT, "1024", 1,
         1000000, NULL, G | U, OFF(gateway_send_queue),
         "Messages queued for one slow client before further events for it "
         "are dropped (and counted in "
         "`ml_stream_gateway_messages_dropped_total`)."},
        {"GATEWAY_SEND_QUEUE_BYTES", "gateway-send-queue-bytes", MLS_CONF_INT,
         "4194304", 65536, 1073741824, NULL, G | U,
         OFF(gateway_send_queue_bytes),
         "Bytes of messages queued for one WebSocket client (query results, "
         "events, control messages) that it is not reading. A message that "
         "would take a non-empty queue past this closes the connection with "
         "1008 `Send queue over GATEWAY_SEND_QUEUE_BYTES`, counted in "
         "`ml_stream_gateway_connections_closed_total{reason=\"send_queue_"
         "bytes\"}`. One message is always accepted into an empty queue "
         "(up to `GATEWAY_MAX_PAYLOAD_BYTES`)."},
        {"GATEWAY_INIT_TIMEOUT_MS", "gateway-init-timeout-ms", MLS_CONF_INT,
         "3000", 0, 600000, NULL, G | U, OFF(gateway_init_timeout_ms),
         "WebSocket clients (graphql-transport-ws and legacy graphql-ws) "
         "must send `connection_init` within this time or are closed with "
         "4408 (legacy clients get a `connection_error` first; a legacy "
         "`start` accepted without `connection_init`, possible only with "
         "authentication off, also stops the clock). 0: no limit."},
        {"GATEWAY_KEEPALIVE_MS", "gateway-keepalive-ms", MLS_CONF_INT, "10000",
         0, 25000, NULL, G | U, OFF(gateway_keepalive_ms),
         "Period of the `ka` keep-alive sent to legacy `graphql-ws` clients "
         "(subscriptions-transport-ws closes after 30 s without one). 0: "
         "none."},
        {"GATEWAY_MAX_MODELS", "gateway-max-models", MLS_CONF_INT, "10000", 1,
         1000000, NULL, G | U, OFF(gateway_max_models),
         "Most model ids whose status the gateway tracks; predictions for "
         "further models still reach their subscribers."},
        {"ML_LATENCY_WINDOW", "latency-window", MLS_CONF_INT, "1000", 1,
         1000000, NULL, G | U, OFF(latency_window),
         "Predictions per model in the sliding window behind "
         "`averageLatencyMs` and `p95LatencyMs`."},
        {"GATEWAY_MAX_QUERY_COST", "gateway-max-query-cost", MLS_CONF_INT,
         "50000", 100, 100000000, NULL, G | U, OFF(gateway_max_query_cost),
         "Most field resolutions one GraphQL operation may cause: every "
         "field counts 1, aliases and fragment spreads each time, and a "
         "list field its items times their sub-selection "
         "(`mlStreamingModels`: `GATEWAY_MAX_MODELS` items; introspection "
         "lists: the schema's sizes). A costlier document is refused at "
         "validation with an error naming its cost and the limit. Must be "
         "above `GATEWAY_MAX_MODELS`."},
        {"GATEWAY_MODEL_IDLE_SECONDS", "gateway-model-idle-seconds",
         MLS_CONF_INT, "3600", 0, 31536000, NULL, G | U,
         OFF(gateway_model_idle_seconds),
         "Seconds without a prediction or heartbeat after which the gateway "
         "forgets a model (its status and its place in "
         "`mlStreamingModels`), unless it has live subscribers. 0: never."},
        {"GATEWAY_METRICS_MAX_MODELS", "gateway-metrics-max-models",
         MLS_CONF_INT, "100", 1, 400, NULL, G | U,
         OFF(gateway_metrics_max_models),
         "Models with their own per-model series on the gateway's "
         "`/metrics` (the most recently active); the rest are summed "
         "into `model_id=\"__other__\"`."},
        {"GATEWAY_ALLOWED_ORIGINS", "gateway-allowed-origins", MLS_CONF_STR,
         NULL, 0, 0, NULL, G | U, OFF(gateway_allowed_origins),
         "Comma-separated browser origins (`https://app.example.com`, "
         "compared without regard to case) allowed to open WebSockets on "
         "and query `/graphql`; a request or upgrade with another `Origin` "
         "(`null` included) gets 403, allowed ones get CORS headers. "
         "Requests without `Origin` (programs, not browsers) are not "
         "affected. `*` allows any. Unset: no check, no CORS headers "
         "(docs/security.md)."},
        /* access control (docs/security.md) */
        {"GATEWAY_AUTH_TOKENS", "gateway-auth-tokens", MLS_CONF_STR, NULL, 0, 0,
         NULL, G | U, OFF(gateway_auth_tokens),
         "Comma-separated static bearer tokens, any of which lets a client "
         "in, seeing every tenant: `Authorization: Bearer <token>` on HTTP "
         "`/graphql` or the WebSocket upgrade, or `Authorization` (also "
         "`headers.Authorization`, `token`) in `connection_init`. Any auth "
         "setting turns authentication on; unset (with the other auth "
         "settings): no authentication. Prefer "
         "`GATEWAY_AUTH_TOKENS_FILE`: flags show in process listings."},
        {"GATEWAY_AUTH_TOKENS_FILE", "gateway-auth-tokens-file", MLS_CONF_STR,
         NULL, 0, 0, NULL, G | U, OFF(gateway_auth_tokens_file),
         "File of static bearer tokens, one per line (blank lines and `#` "
         "comments skipped), added to `GATEWAY_AUTH_TOKENS`. Read at "
         "start-up; a file other users may read is warned about."},
        {"GATEWAY_AUTH_TOKEN", "gateway-auth-token", MLS_CONF_STR, NULL, 0, 0,
         NULL, G | U, OFF(gateway_auth_token),
         "One static bearer token (kept for compatibility): the same as a "
         "one-item `GATEWAY_AUTH_TOKENS`, and added to it."},
        {"GATEWAY_JWT_SECRET", "gateway-jwt-secret", MLS_CONF_STR, NULL, 0, 0,
         NULL, G | U, OFF(gateway_jwt_secret),
         "HMAC key (at least 32 bytes) of HS256 JSON Web Tokens accepted as "
         "bearer tokens. A JWT must carry `exp`; `nbf` is checked when "
         "present; any `alg` but `HS256` is refused. Prefer "
         "`GATEWAY_JWT_SECRET_FILE`."},
        {"GATEWAY_JWT_SECRET_FILE", "gateway-jwt-secret-file", MLS_CONF_STR,
         NULL, 0, 0, NULL, G | U, OFF(gateway_jwt_secret_file),
         "File holding the JWT HMAC key (a final newline is ignored). "
         "Excludes `GATEWAY_JWT_SECRET`."},
        {"GATEWAY_JWT_LEEWAY_SECONDS", "gateway-jwt-leeway-seconds",
         MLS_CONF_INT, "30", 0, 3600, NULL, G | U,
         OFF(gateway_jwt_leeway_seconds),
         "Clock skew allowed when checking a JWT's `exp` and `nbf`. A "
         "WebSocket authenticated with a JWT is closed (4403) once `exp` "
         "plus this has passed."},
        {"GATEWAY_JWT_AUDIENCE", "gateway-jwt-audience", MLS_CONF_STR, NULL, 0,
         0, NULL, G | U, OFF(gateway_jwt_audience),
         "When set, a JWT's `aud` (a string or an array) must name this "
         "value."},
        {"GATEWAY_JWT_ISSUER", "gateway-jwt-issuer", MLS_CONF_STR, NULL, 0, 0,
         NULL, G | U, OFF(gateway_jwt_issuer),
         "When set, a JWT's `iss` must be this value."},
        {"GATEWAY_JWT_TENANT_CLAIM", "gateway-jwt-tenant-claim", MLS_CONF_STR,
         "tenants", 0, 0, NULL, G | U, OFF(gateway_jwt_tenant_claim),
         "JWT claim listing the tenants (an array of strings) whose "
         "predictions, by `metadata.tenant`, its holder receives and whose "
         "latencies `mlStreamingStatus` reports. A JWT without it sees "
         "every tenant (see `GATEWAY_JWT_REQUIRE_TENANTS`); a static token "
         "always does."},
        {"GATEWAY_JWT_REQUIRE_TENANTS", "gateway-jwt-require-tenants",
         MLS_CONF_INT, "0", 0, 1, NULL, G | U, OFF(gateway_jwt_require_tenants),
         "1: refuse JWTs without the tenant claim (403 / 4403), so that "
         "every JWT is tenant-scoped."},
        {"GATEWAY_METRICS_AUTH", "gateway-metrics-auth", MLS_CONF_INT, "0", 0,
         1, NULL, G | U, OFF(gateway_metrics_auth),
         "1: the gateway's `/metrics` needs a bearer token that sees every "
         "tenant (a static token or a JWT without the tenant claim). 0: "
         "open, like `/healthz` and `/readyz`; it shows per-model latencies "
         "of all tenants, so keep it off networks tenants reach."},
        {"ML_EMBEDDED_KAFKA_PORT", "embedded-kafka-port", MLS_CONF_INT, "9092",
         1, 65535, NULL, U, OFF(embedded_kafka_port),
         "Port on 127.0.0.1 where `mlstream up` offers its embedded broker "
         "(in memory, not durable). Ignored when KAFKA_BOOTSTRAP_SERVERS is "
         "set."},
        {"ML_DEMO_RATE", "demo-rate", MLS_CONF_INT, "20", 1, 1000000, NULL, U,
         OFF(demo_rate),
         "Synthetic events per second that `mlstream up --demo` produces."},
        {"ML_LOG_LEVEL", "log-level", MLS_CONF_ENUM, "info", 0, 0,
         "debug|info|warn|error", MLS_SCOPE_ALL, OFF(log_level),
         "Least severe log level printed."},
        {"ML_LOG_FORMAT", "log-format", MLS_CONF_ENUM, "text", 0, 0,
         "text|json", MLS_SCOPE_ALL, OFF(log_format),
         "Log lines as text or as one JSON object per line."},
        {NULL, NULL, 0, NULL, 0, 0, NULL, 0, 0, NULL},
};

#define KAFKA_CONF_PREFIX "KAFKA_CONF_"

static char **str_field(struct mls_config *cfg, const struct mls_conf_def *d)
{
        return (char **)((char *)cfg + d->offset);
}

static long long *int_field(struct mls_config *cfg,
                            const struct mls_conf_def *d)
{
        return (long long *)((char *)cfg + d->offset);
}

static int choice_ok(const char *choices, const char *v)
{
        size_t n = strlen(v);
        const char *p = choices;

        while (*p) {
                const char *end = strchr(p, '|');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                if (len == n && strncmp(p, v, n) == 0)
                        return 1;
                p += len + (end ? 1 : 0);
        }
        return 0;
}

static int set_def(struct mls_config *cfg, const struct mls_conf_def *d,
                   const char *value, char *errstr, size_t errstr_size)
{
        char *end;
        long long v;

        switch (d->type) {
        case MLS_CONF_STR:
        case MLS_CONF_ENUM:
                if (d->type == MLS_CONF_ENUM && !choice_ok(d->choices, value)) {
                        snprintf(errstr, errstr_size,
                                 "%s (--%s): invalid value \"%s\": expected "
                                 "one of %s",
                                 d->env, d->flag, value, d->choices);
                        return -1;
                }
                free(*str_field(cfg, d));
                *str_field(cfg, d) = strdup(value);
                return 0;
        case MLS_CONF_INT:
                errno = 0;
                v = strtoll(value, &end, 10);
                if (errno || end == value || *end || v < d->min || v > d->max) {
                        snprintf(errstr, errstr_size,
                                 "%s (--%s): invalid value \"%s\": expected "
                                 "an integer from %lld to %lld",
                                 d->env, d->flag, value, d->min, d->max);
                        return -1;
                }
                *int_field(cfg, d) = v;
                return 0;
        }
        return -1;
}

int mls_config_set(struct mls_config *cfg, const char *env, const char *value,
                   char *errstr, size_t errstr_size)
{
        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++)
                if (strcmp(d->env, env) == 0)
                        return set_def(cfg, d, value, errstr, errstr_size);
        snprintf(errstr, errstr_size, "unknown setting %s", env);
        return -1;
}

/*
 * KAFKA_CONF_FETCH_WAIT_MAX_MS=1 -> "fetch.wait.max.ms=1", with Confluent's
 * image rules: lower case, "_" -> ".", "__" -> "_", "___" -> "-".
 */
static int add_kafka_conf(struct mls_config *cfg, const char *entry)
{
        const char *name = entry + strlen(KAFKA_CONF_PREFIX);
        const char *eq = strchr(name, '='), *p;
        char *s, *o, **list;

        if (!eq || eq == name)
                return 0;
        s = malloc(strlen(name) + 1);
        if (!s)
                return -1;
        for (p = name, o = s; p < eq;) {
                size_t run = 0;
                while (p[run] == '_')
                        run++;
                if (run == 0) {
                        *o++ = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a'
                                                             : *p);
                        p++;
                        continue;
                }
                *o++ = run == 1 ? '.' : run == 2 ? '_' : '-';
                p += run > 3 ? 3 : run;
        }
        strcpy(o, eq);
        list = realloc(cfg->kafka_conf,
                       (cfg->kafka_conf_count + 1) * sizeof(*list));
        if (!list) {
                free(s);
                return -1;
        }
        cfg->kafka_conf = list;
        cfg->kafka_conf[cfg->kafka_conf_count++] = s;
        return 0;
}

int mls_config_load(struct mls_config *cfg, unsigned scope, char **envp,
                    int argc, char **argv, char *errstr, size_t errstr_size)
{
        const struct mls_conf_def *d;

        memset(cfg, 0, sizeof(*cfg));
        for (d = mls_conf_defs; d->env; d++) {
                if (d->type == MLS_CONF_INT)
                        *int_field(cfg, d) = -1;
                if (d->defval &&
                    set_def(cfg, d, d->defval, errstr, errstr_size) < 0)
                        goto fail;
        }
        for (char **e = envp; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq)
                        continue;
                if (strncmp(*e, KAFKA_CONF_PREFIX, strlen(KAFKA_CONF_PREFIX)) ==
                    0) {
                        if (add_kafka_conf(cfg, *e) < 0)
                                goto oom;
                        continue;
                }
                for (d = mls_conf_defs; d->env; d++) {
                        size_t n = strlen(d->env);
                        if ((size_t)(eq - *e) == n &&
                            strncmp(*e, d->env, n) == 0) {
                                if (set_def(cfg, d, eq + 1, errstr,
                                            errstr_size) < 0)
                                        goto fail;
                                break;
                        }
                }
        }
        for (int i = 0; i < argc; i++) {
                const char *arg = argv[i], *name, *value, *eq;
                size_t nlen;

                if (strncmp(arg, "--", 2) != 0) {
                        snprintf(errstr, errstr_size,
                                 "unexpected argument \"%s\" (see --help)",
                                 arg);
                        goto fail;
                }
                name = arg + 2;
                eq = strchr(name, '=');
                nlen = eq ? (size_t)(eq - name) : strlen(name);
                for (d = mls_conf_defs; d->env; d++)
                        if ((d->scope & scope) && strlen(d->flag) == nlen &&
                            strncmp(d->flag, name, nlen) == 0)
                                break;
                if (!d->env) {
                        snprintf(errstr, errstr_size,
                                 "unknown option \"%.*s\" (see --help)",
                                 (int)(nlen + 2), arg);
                        goto fail;
                }
                if (eq) {
                        value = eq + 1;
                } else if (i + 1 < argc) {
                        value = argv[++i];
                } else {
                        snprintf(errstr, errstr_size,
                                 "option --%s needs a value", d->flag);
                        goto fail;
                }
                if (set_def(cfg, d, value, errstr, errstr_size) < 0)
                        goto fail;
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "out of memory");
fail:
        mls_config_free(cfg);
        return -1;
}

void mls_config_free(struct mls_config *cfg)
{
        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++) {
                if (d->type != MLS_CONF_INT) {
                        free(*str_field(cfg, d));
                        *str_field(cfg, d) = NULL;
                }
        }
        for (size_t i = 0; i < cfg->kafka_conf_count; i++)
                free(cfg->kafka_conf[i]);
        free(cfg->kafka_conf);
        cfg->kafka_conf = NULL;
        cfg->kafka_conf_count = 0;
}

static const char *type_word(const struct mls_conf_def *d)
{
        switch (d->type) {
        case MLS_CONF_INT:
                return "N";
        case MLS_CONF_ENUM:
                return d->choices;
        default:
                return "VALUE";
        }
}

void mls_config_print_help(FILE *out, unsigned scope)
{
        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++) {
                if (!(d->scope & scope))
                        continue;
                fprintf(out, "  --%s=%s\n", d->flag, type_word(d));
                fprintf(out, "      %s\n      env %s, default %s\n", d->help,
                        d->env, d->defval ? d->defval : "(unset)");
        }
        fprintf(out, "  KAFKA_CONF_<NAME>=VALUE (environment only)\n"
                     "      Any librdkafka property, upper-cased with '.' "
                     "as '_'.\n");
}

static void scope_words(FILE *out, unsigned scope)
{
        const char *sep = "";

        if (scope & MLS_SCOPE_ENGINE) {
                fprintf(out, "engine");
                sep = ", ";
        }
        if (scope & MLS_SCOPE_GATEWAY) {
                fprintf(out, "%sgateway", sep);
                sep = ", ";
        }
        if (scope & MLS_SCOPE_UP)
                fprintf(out, "%sup", sep);
}

void mls_config_print_markdown(FILE *out)
{
        fprintf(out,
                "# Configuration\n\n"
                "<!-- Generated by `mlstream config --markdown` from the "
                "table in src/common/config.c; do not edit. -->\n\n"
                "Every setting is an environment variable and a "
                "command-line flag; flags win. A bad value stops the "
                "process at start-up with a message naming the variable.\n\n"
                "| variable | flag | type | default | commands | meaning |\n"
                "|---|---|---|---|---|---|\n");
        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++) {
                fprintf(out, "| `%s` | `--%s` | ", d->env, d->flag);
                if (d->type == MLS_CONF_INT)
                        fprintf(out, "integer %lld..%lld", d->min, d->max);
                else if (d->type == MLS_CONF_ENUM)
                        fprintf(out, "one of `%s`", d->choices);
                else
                        fprintf(out, "string");
                fprintf(out, " | %s%s%s | ", d->defval ? "`" : "",
                        d->defval ? d->defval : "unset", d->defval ? "`" : "");
                scope_words(out, d->scope);
                fprintf(out, " | %s |\n", d->help);
        }
        fprintf(out,
                "\n## librdkafka properties\n\n"
                "`KAFKA_CONF_<NAME>=VALUE` sets any librdkafka property on "
                "every Kafka client: the name is upper-cased with `.` "
                "written as `_`, so `KAFKA_CONF_FETCH_WAIT_MAX_MS=1` sets "
                "`fetch.wait.max.ms=1`. They are applied after "
                "`KAFKA_CONFIG_FILE`. Properties that only consumers (or only "
                "producers) understand are given only to those.\n");
}
