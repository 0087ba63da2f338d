#include "common/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/edits.h"
#include "common/log.h"

#define OFF(field) offsetof(struct mls_config, field)
#define E MLS_SCOPE_ENGINE
#define G MLS_SCOPE_GATEWAY
#define U MLS_SCOPE_UP

const struct mls_conf_def mls_conf_defs[] = {
        {.env = "KAFKA_BOOTSTRAP_SERVERS",
         .flag = "kafka-bootstrap-servers",
         .type = MLS_CONF_STR,
         .defval = "localhost:9092",
         .scope = E | U,
         .up_shown = "the embedded broker",
         .section = "Kafka",
         .offset = OFF(kafka_bootstrap_servers),
         .help = "Kafka brokers, host:port[,host:port...]. Under `mlstream "
                 "up`, setting it replaces the embedded broker."},
        {.env = "KAFKA_INFERENCE_TOPIC",
         .flag = "kafka-inference-topic",
         .type = MLS_CONF_STR,
         .defval = "ml.inference",
         .scope = E | U,
         .section = "Kafka",
         .offset = OFF(kafka_inference_topic),
         .help = "Topic the engine consumes input messages from."},
        {.env = "KAFKA_CONSUMER_GROUP",
         .flag = "kafka-consumer-group",
         .type = MLS_CONF_STR,
         .defval = "ml-streaming",
         .scope = E | U,
         .section = "Kafka",
         .offset = OFF(kafka_consumer_group),
         .help = "Consumer group id; engines in one group share the "
                 "partitions."},
        {.env = "KAFKA_OUTPUT_TOPIC",
         .flag = "kafka-output-topic",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Kafka",
         .offset = OFF(kafka_output_topic),
         .help = "Optional topic that also receives every prediction payload "
                 "(durable, for automations). Unset: predictions go to Redis "
                 "only."},
        {.env = "KAFKA_DLQ_TOPIC",
         .flag = "kafka-dlq-topic",
         .type = MLS_CONF_STR,
         .defval = "ml.inference.dlq",
         .scope = E | U,
         .section = "Kafka",
         .offset = OFF(kafka_dlq_topic),
         .help = "Dead-letter topic: receives the original bytes of every "
                 "message that fails to decode, validate or score, with its "
                 "reason in the `mls.error.reason` header (docs/reference.md). "
                 "Empty: bad messages are only "
                 "counted and logged."},
        {.env = "KAFKA_CONFIG_FILE",
         .flag = "kafka-config-file",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Kafka",
         .offset = OFF(kafka_config_file),
         .help = "librdkafka properties file (name=value lines, # comments) "
                 "applied to every Kafka client, e.g. SASL/SSL settings. "
                 "`KAFKA_CONF_*` variables override it. The brokers and the "
                 "group come from KAFKA_BOOTSTRAP_SERVERS and "
                 "KAFKA_CONSUMER_GROUP: a file that names others is an error "
                 "at start-up."},
        {.env = "REDIS_URL",
         .flag = "redis-url",
         .type = MLS_CONF_STR,
         .defval = "redis://localhost:6379/0",
         .scope = E | G | U,
         .up_shown = "the in-process bus",
         .section = "Redis",
         .offset = OFF(redis_url),
         .help = "Redis server, `redis://[:password@]host:port/db`. Under "
                 "`mlstream up`, setting it replaces the in-process bus."},
        {.env = "ML_STREAM_REDIS_CHANNEL",
         .flag = "redis-channel",
         .type = MLS_CONF_STR,
         .defval = "ml:stream:inference",
         .scope = E | G | U,
         .section = "Redis",
         .offset = OFF(redis_channel),
         .help = "Redis Pub/Sub channel for predictions and heartbeats."},
        {.env = "ML_STREAM_SHADOW_CHANNEL",
         .flag = "shadow-channel",
         .type = MLS_CONF_STR,
         .defval = "ml:stream:shadow",
         .scope = E | U,
         .section = "Redis",
         .offset = OFF(shadow_channel),
         .help = "Redis Pub/Sub channel for the predictions of shadow model "
                 "versions (docs/models.md), never seen by live subscribers; "
                 "per-model mode: the prefix of one channel per model, as "
                 "for `ML_STREAM_REDIS_CHANNEL`."},
        {.env = "ML_STREAM_REDIS_CHANNEL_MODE",
         .flag = "redis-channel-mode",
         .type = MLS_CONF_ENUM,
         .defval = "single",
         .choices = "single|per-model",
         .scope = E | G | U,
         .section = "Redis",
         .offset = OFF(redis_channel_mode),
         .help = "`single`: every prediction and heartbeat goes to "
                 "`ML_STREAM_REDIS_CHANNEL`. `per-model`: each model's "
                 "predictions go to `<channel>:{<model id>}` and heartbeats "
                 "to `<channel>:control`, and a gateway subscribes only to "
                 "the models its clients watch, so it receives nothing else. "
                 "Engines and gateways must use the same mode."},
        {.env = "REDIS_CLUSTER",
         .flag = "redis-cluster",
         .type = MLS_CONF_ENUM,
         .defval = "false",
         .choices = "false|true",
         .scope = E | G,
         .section = "Redis",
         .offset = OFF(redis_cluster),
         .help = "`true`: `REDIS_URL` names a Redis Cluster (7.0 or later) "
                 "by one or more seed nodes, "
                 "`redis://[:password@]host:port[,host:port...]`. Engines "
                 "send each model's predictions with SPUBLISH to the shard "
                 "that owns its channel, and gateways SSUBSCRIBE there to "
                 "the models their clients watch, following slot moves and "
                 "failovers. Needs `ML_STREAM_REDIS_CHANNEL_MODE=per-model`."},
        {.env = "REDIS_RETRY_MAX_MS",
         .flag = "redis-retry-max-ms",
         .type = MLS_CONF_INT,
         .defval = "2000",
         .min = 10,
         .max = 60000,
         .scope = E | G | U,
         .section = "Redis",
         .offset = OFF(redis_retry_max_ms),
         .help = "Longest wait between Redis reconnect attempts (backoff "
                 "doubles from 50 ms up to this)."},
        {.env = "GATEWAY_REDIS_PING_MS",
         .flag = "gateway-redis-ping-ms",
         .type = MLS_CONF_INT,
         .defval = "5000",
         .min = 100,
         .max = 600000,
         .scope = G | U,
         .section = "Redis",
         .offset = OFF(gateway_redis_ping_ms),
         .help = "How long a gateway's Redis connection may stay silent "
                 "before the gateway sends it a PING. Silent for twice this "
                 "(a Redis host gone without closing the connection, a "
                 "firewall or NAT that forgot it, a Redis that stopped "
                 "answering), the connection is given up and made again, "
                 "and clients hear of the gap as after any reconnect. At "
                 "full speed no PING is sent."},
        {.env = "ML_MODEL_FRAMEWORK",
         .flag = "model-framework",
         .type = MLS_CONF_ENUM,
         .defval = "torch",
         .choices = "torch|tensorflow|identity",
         .scope = E | U,
         .up_shown = "identity; torch once ML_MODEL_PATH is set",
         .section = "Model",
         .offset = OFF(model_framework),
         .help = "Framework of the model at `ML_MODEL_PATH`. A framework this "
                 "build does not include is an error at start-up that lists "
                 "the ones it does."},
        {.env = "ML_MODEL_PATH",
         .flag = "model-path",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_path),
         .help = "Model artifact (TorchScript file or SavedModel directory), "
                 "served for every model id. Unset: the identity model, which "
                 "returns the features as predictions. See docs/models.md."},
        {.env = "ML_MODEL_REPOSITORY",
         .flag = "model-repository",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_repository),
         .help = "Directory with one sub-directory per model id, each holding "
                 "a `model.conf` and the artifact (many models in one engine; "
                 "docs/models.md). Messages for an id without a loaded model "
                 "are dead-lettered. Excludes `ML_MODEL_PATH`."},
        {.env = "ML_MODEL_INPUT_WIDTH",
         .flag = "model-input-width",
         .type = MLS_CONF_INT,
         .defval = "0",
         .min = 0,
         .max = 16777216,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_input_width),
         .help = "Features per row the `ML_MODEL_PATH` model takes; rows of "
                 "another width are dead-lettered (`width_mismatch`). 0: read "
                 "it from the model where the framework tells, else pass any "
                 "width."},
        {.env = "ML_MODEL_OUTPUT",
         .flag = "model-output",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_output),
         .help = "Which output of the `ML_MODEL_PATH` model to publish when it "
                 "has several: a dict key or tuple index (torch), a "
                 "`serving_default` output name (tensorflow). Unset: the only "
                 "one, or a tuple's first."},
        {.env = "ML_MODEL_POLL_INTERVAL_MS",
         .flag = "model-poll-interval-ms",
         .type = MLS_CONF_INT,
         .defval = "2000",
         .min = 0,
         .max = 3600000,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_poll_interval_ms),
         .help = "How often model files are checked for changes; a changed "
                 "model is reloaded once its files stayed the same for one "
                 "more interval. 0: only on SIGHUP."},
        {.env = "ML_DEFAULT_MODEL_ID",
         .flag = "default-model-id",
         .type = MLS_CONF_STR,
         .defval = "default",
         .scope = E | U,
         .section = "Model",
         .offset = OFF(default_model_id),
         .help = "Model id used for messages that carry no `model_id`."},
        {.env = "ML_MODEL_THREADS",
         .flag = "model-threads",
         .type = MLS_CONF_INT,
         .defval = "1",
         .min = 0,
         .max = 256,
         .scope = E | U,
         .section = "Model",
         .offset = OFF(model_threads),
         .help = "Threads a model may use for one batch (intra-op "
                 "parallelism). 1 suits small models: the engine's other "
                 "threads, Kafka and Redis need the remaining cores "
                 "(bench/REPORT.md). 0 picks the framework's default, one per "
                 "core."},
        {.env = "ML_BATCH_MAX_ROWS",
         .flag = "batch-max-rows",
         .type = MLS_CONF_INT,
         .defval = "256",
         .min = 1,
         .max = 65536,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(batch_max_rows),
         .help = "Most rows scored together in one model call (a message "
                 "with more rows, up to `ML_MAX_ROWS_PER_MESSAGE`, is scored "
                 "in a call of its own)."},
        {.env = "ML_BATCH_MAX_WAIT_US",
         .flag = "batch-max-wait-us",
         .type = MLS_CONF_INT,
         .defval = "0",
         .min = 0,
         .max = 1000000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(batch_max_wait_us),
         .help = "Longest time, in microseconds, a message waits for more to "
                 "arrive and fill its batch. What has already arrived joins "
                 "the batch in any case (up to its size limits), so batches "
                 "grow with the rate also at 0: no message waits for a "
                 "timer. Raise it for fewer, fuller batches at moderate "
                 "rates, at that much latency."},
        {.env = "ML_BATCH_MAX_MESSAGES",
         .flag = "batch-max-messages",
         .type = MLS_CONF_INT,
         .defval = "4096",
         .min = 1,
         .max = 1000000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(batch_max_messages),
         .help = "Most messages in one batch, rejected ones included: a "
                 "backlog of bad messages (which add no rows) still closes "
                 "batches, so offsets advance and memory stays bounded."},
        {.env = "ML_BATCH_MAX_BYTES",
         .flag = "batch-max-bytes",
         .type = MLS_CONF_INT,
         .defval = "16777216",
         .min = 1024,
         .max = 1073741824,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(batch_max_bytes),
         .help = "Input bytes at which a batch closes: the message that "
                 "reaches this many closes it, so a batch holds at most this "
                 "much plus one message."},
        {.env = "ML_BATCH_MAX_OUTPUT_BYTES",
         .flag = "batch-max-output-bytes",
         .type = MLS_CONF_INT,
         .defval = "67108864",
         .min = 65536,
         .max = 1073741824,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(batch_max_output_bytes),
         .help = "Most bytes of prediction payloads one batch may build; a "
                 "message whose prediction does not fit is dead-lettered "
                 "(`output_too_large`) rather than wedging the batch."},
        {.env = "ML_PREFETCH_MAX_BYTES",
         .flag = "prefetch-max-bytes",
         .type = MLS_CONF_INT,
         .defval = "4194304",
         .min = 1048576,
         .max = 2147482624LL,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(prefetch_max_bytes),
         .help = "Most bytes of input the Kafka consumer prefetches, over all "
                 "partitions together. Bounds the engine's memory on any "
                 "backlog: librdkafka keeps several times the payload per "
                 "queued message, so a backlog of small messages takes about "
                 "5x this plus ~15 MB (45 MB at the default). The engine "
                 "wakes the fetcher as the queue drains, so a small prefetch "
                 "does not slow a drain; larger helps only over a slow link "
                 "to the brokers. `KAFKA_CONF_QUEUED_MAX_MESSAGES_KBYTES` "
                 "overrides it."},
        {.env = "ML_DEAD_LETTER_MAX_BYTES",
         .flag = "dead-letter-max-bytes",
         .type = MLS_CONF_INT,
         .defval = "65536",
         .min = 0,
         .max = 104857600,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(dead_letter_max_bytes),
         .help = "When a Kafka topic refuses a message for good (too large, "
                 "invalid record), the engine writes a dead letter with the "
                 "first this-many bytes of it and `mls.truncated` headers "
                 "instead (docs/operations.md); if even that is refused it is "
                 "counted, logged and skipped."},
        {.env = "ML_METRICS_MAX_MODELS",
         .flag = "metrics-max-models",
         .type = MLS_CONF_INT,
         .defval = "100",
         .min = 1,
         .max = 200,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(metrics_max_models),
         .help = "Distinct model ids with their own metric series; further ids "
                 "are counted under `model_id=\"__other__\"` so producers "
                 "cannot grow /metrics without bound."},
        {.env = "ML_COMMIT_INTERVAL_MS",
         .flag = "commit-interval-ms",
         .type = MLS_CONF_INT,
         .defval = "1000",
         .min = 0,
         .max = 3600000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(commit_interval_ms),
         .help = "Longest time the offsets of delivered messages wait to be "
                 "committed: they are committed (asynchronously, one commit "
                 "in flight at a time) this long after the last commit, or "
                 "as soon as `ML_COMMIT_MAX_MESSAGES` messages were "
                 "delivered since it, whichever comes first. A crash "
                 "re-scores what was delivered but not committed, so it is "
                 "bounded by both. 0: commit as each batch is delivered. At "
                 "a low rate each commit costs the engine and the broker "
                 "more than scoring a message: the interval is what keeps "
                 "their cost per message down. Kafka's own clients commit "
                 "every 5 s by default."},
        {.env = "ML_COMMIT_MAX_MESSAGES",
         .flag = "commit-max-messages",
         .type = MLS_CONF_INT,
         .defval = "1024",
         .min = 1,
         .max = 100000000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(commit_max_messages),
         .help = "Most messages delivered before their offsets are "
                 "committed, `ML_COMMIT_INTERVAL_MS` notwithstanding: at "
                 "speed the engine commits about every four batches of 256 "
                 "rows, so a crash re-scores a few batches, not an "
                 "interval's worth of traffic. Each commit costs CPU: 256 "
                 "took ~10 % more per message on a backlog, and four "
                 "commits a second at 1,000 msg/s instead of one."},
        {.env = "ML_EXACTLY_ONCE",
         .flag = "exactly-once",
         .type = MLS_CONF_ENUM,
         .defval = "false",
         .choices = "false|true",
         .scope = E,
         .section = "Engine",
         .offset = OFF(exactly_once),
         .help = "`true`: exactly-once to the Kafka output and dead-letter "
                 "topics. The predictions and dead letters of each batch and "
                 "the batch's input offsets are written in one Kafka "
                 "transaction, so that consumers of `KAFKA_OUTPUT_TOPIC` "
                 "reading with `isolation.level=read_committed` see one "
                 "outcome per input across crashes and rebalances; a failed "
                 "transaction is aborted and its inputs are consumed and "
                 "scored again. Offsets are then "
                 "committed only by the transactions (`ML_COMMIT_INTERVAL_MS` "
                 "does not apply). The producer's `transactional.id` is "
                 "`mlstream.<KAFKA_CONSUMER_GROUP>.<ML_ENGINE_ID>` unless "
                 "`KAFKA_CONF_TRANSACTIONAL_ID` sets one: give each engine an "
                 "`ML_ENGINE_ID` of its own that it keeps across restarts, so "
                 "that a restarted engine fences its predecessor and aborts "
                 "its open transaction at once; without one, a crashed "
                 "engine's partitions wait until its transaction times out "
                 "(`transaction.timeout.ms`, 10 s unless set). An engine "
                 "fenced by another with its `transactional.id` exits with "
                 "status 1. Redis publishing does not change (at least once; "
                 "the gateway drops repeats). Needs `KAFKA_OUTPUT_TOPIC` or "
                 "`KAFKA_DLQ_TOPIC`, and Kafka 2.5 or later."},
        {.env = "ML_TRANSACTION_INTERVAL_MS",
         .flag = "transaction-interval-ms",
         .type = MLS_CONF_INT,
         .defval = "100",
         .min = 0,
         .max = 60000,
         .scope = E,
         .section = "Engine",
         .offset = OFF(transaction_interval_ms),
         .help = "With `ML_EXACTLY_ONCE`: how long a transaction collects "
                 "batches before it is committed. Read-committed consumers "
                 "of the output topic see a prediction only once its "
                 "transaction commits, so this adds up to this much latency "
                 "there, plus the commit (a few milliseconds); Redis is not "
                 "delayed. Longer intervals commit less often, and re-score "
                 "more after an abort. 0: commit after every batch. At most "
                 "half of the producer's `transaction.timeout.ms`."},
        {.env = "ML_SHUTDOWN_TIMEOUT_MS",
         .flag = "shutdown-timeout-ms",
         .type = MLS_CONF_INT,
         .defval = "10000",
         .min = 0,
         .max = 600000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(shutdown_timeout_ms),
         .help = "On SIGTERM, the longest the engine spends delivering what it "
                 "holds, committing offsets and leaving the group before it "
                 "exits; undelivered messages are redelivered by Kafka."},
        {.env = "ML_MAX_MESSAGE_BYTES",
         .flag = "max-message-bytes",
         .type = MLS_CONF_INT,
         .defval = "1048576",
         .min = 64,
         .max = 104857600,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(max_message_bytes),
         .help = "Input messages larger than this are dead-lettered unread."},
        {.env = "ML_MAX_ROWS_PER_MESSAGE",
         .flag = "max-rows-per-message",
         .type = MLS_CONF_INT,
         .defval = "4096",
         .min = 1,
         .max = 1048576,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(max_rows_per_message),
         .help = "Most feature rows one message may carry."},
        {.env = "ML_MAX_ROW_WIDTH",
         .flag = "max-row-width",
         .type = MLS_CONF_INT,
         .defval = "65536",
         .min = 1,
         .max = 16777216,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(max_row_width),
         .help = "Most numbers in one feature row."},
        {.env = "ML_HEARTBEAT_INTERVAL_MS",
         .flag = "heartbeat-interval-ms",
         .type = MLS_CONF_INT,
         .defval = "5000",
         .min = 100,
         .max = 3600000,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(heartbeat_interval_ms),
         .help = "How often the engine publishes a heartbeat on the channel; "
                 "when idle, also how soon it finds Redis gone."},
        {.env = "ML_ENGINE_ID",
         .flag = "engine-id",
         .type = MLS_CONF_STR,
         .scope = E | U,
         .section = "Engine",
         .offset = OFF(engine_id),
         .help = "Name of this engine in heartbeats and logs. Unset: "
                 "`<hostname>-<pid>`."},
        {.env = "ML_PROMETHEUS_PORT",
         .flag = "prometheus-port",
         .type = MLS_CONF_INT,
         .min = 0,
         .max = 65535,
         .scope = E,
         .section = "Engine",
         .offset = OFF(prometheus_port),
         .help = "Port of the engine's `/metrics`, `/healthz` and `/readyz`. "
                 "Unset: disabled. 0 picks a free port (logged)."},
        {.env = "ML_PROMETHEUS_HOST",
         .flag = "prometheus-host",
         .type = MLS_CONF_STR,
         .defval = "0.0.0.0",
         .scope = E,
         .section = "Engine",
         .offset = OFF(prometheus_host),
         .help = "Address the engine's metrics listener binds to."},
        {.env = "GATEWAY_HOST",
         .flag = "gateway-host",
         .type = MLS_CONF_STR,
         .defval = "0.0.0.0",
         .scope = G | U,
         .up_defval = "127.0.0.1",
         .section = "Gateway",
         .offset = OFF(gateway_host),
         .help = "Address of the gateway's HTTP and WebSocket listener. "
                 "`mlstream up` binds 127.0.0.1 unless this is set (a "
                 "development mode has no authentication and no origin "
                 "check)."},
        {.env = "GATEWAY_PORT",
         .flag = "gateway-port",
         .type = MLS_CONF_INT,
         .defval = "4000",
         .min = 0,
         .max = 65535,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_port),
         .help = "Port of the gateway's listener: `/graphql`, `/`, `/metrics`, "
                 "`/healthz`, `/readyz`."},
        /* gateway settings */
        {.env = "GATEWAY_MAX_CONNECTIONS",
         .flag = "gateway-max-connections",
         .type = MLS_CONF_INT,
         .defval = "16384",
         .min = 1,
         .max = 1000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_connections),
         .help = "Most WebSocket connections at once; further upgrades are "
                 "refused. The process's open-file limit is raised to fit when "
                 "it can."},
        {.env = "GATEWAY_MAX_MESSAGE_BYTES",
         .flag = "gateway-max-message-bytes",
         .type = MLS_CONF_INT,
         .defval = "262144",
         .min = 1024,
         .max = 67108864,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_message_bytes),
         .help = "Largest WebSocket message or HTTP request body a client may "
                 "send; a larger message closes the connection (1009), a "
                 "larger body gets 413."},
        {.env = "GATEWAY_MAX_PAYLOAD_BYTES",
         .flag = "gateway-max-payload-bytes",
         .type = MLS_CONF_INT,
         .defval = "4194304",
         .min = 1024,
         .max = 268435456,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_payload_bytes),
         .help = "Largest prediction payload read from the channel; larger "
                 "ones are skipped and counted. Also caps one message sent to "
                 "a client: an event whose response would be larger reaches "
                 "its subscribers as an EVENT_TOO_LARGE error."},
        {.env = "GATEWAY_MAX_DOCUMENT_BYTES",
         .flag = "gateway-max-document-bytes",
         .type = MLS_CONF_INT,
         .defval = "65536",
         .min = 256,
         .max = 16777216,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_document_bytes),
         .help = "Largest GraphQL document accepted."},
        {.env = "GATEWAY_MAX_QUERY_DEPTH",
         .flag = "gateway-max-query-depth",
         .type = MLS_CONF_INT,
         .defval = "32",
         .min = 2,
         .max = 128,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_query_depth),
         .help = "Deepest field nesting a GraphQL document may have, fragments "
                 "expanded (the introspection query needs about 15)."},
        {.env = "GATEWAY_MAX_OPERATIONS",
         .flag = "gateway-max-operations",
         .type = MLS_CONF_INT,
         .defval = "100",
         .min = 1,
         .max = 100000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_operations),
         .help = "Most live subscriptions on one WebSocket connection."},
        {.env = "GATEWAY_MAX_WATCHED_MODELS",
         .flag = "gateway-max-watched-models",
         .type = MLS_CONF_INT,
         .defval = "10000",
         .min = 1,
         .max = 10000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_watched_models),
         .help = "Most distinct models that this gateway's subscriptions "
                 "may watch at once, all clients together. Each watched "
                 "model costs a Redis channel subscription in the per-model "
                 "mode; a subscription to one more model is refused with an "
                 "error that names this setting."},
        {.env = "GATEWAY_SEND_QUEUE",
         .flag = "gateway-send-queue",
         .type = MLS_CONF_INT,
         .defval = "1024",
         .min = 1,
         .max = 1000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_send_queue),
         .help = "Messages queued for one slow client before further events "
                 "for it are dropped (and counted in "
                 "`ml_stream_gateway_messages_dropped_total`)."},
        {.env = "GATEWAY_SEND_QUEUE_BYTES",
         .flag = "gateway-send-queue-bytes",
         .type = MLS_CONF_INT,
         .defval = "4194304",
         .min = 65536,
         .max = 1073741824,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_send_queue_bytes),
         .help = "Bytes of messages queued for one WebSocket client (query "
                 "results, events, control messages) that it is not reading. A "
                 "message that would take a non-empty queue past this closes "
                 "the connection with 1008 `Send queue over "
                 "GATEWAY_SEND_QUEUE_BYTES`, counted in "
                 "`ml_stream_gateway_connections_closed_total{reason=\"send_"
                 "queue_bytes\"}`. One message is always accepted into an "
                 "empty queue (up to `GATEWAY_MAX_PAYLOAD_BYTES`)."},
        {.env = "GATEWAY_INIT_TIMEOUT_MS",
         .flag = "gateway-init-timeout-ms",
         .type = MLS_CONF_INT,
         .defval = "3000",
         .min = 0,
         .max = 600000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_init_timeout_ms),
         .help = "WebSocket clients (graphql-transport-ws and legacy "
                 "graphql-ws) must send `connection_init` within this time or "
                 "are closed with 4408 (legacy clients get a "
                 "`connection_error` first; a legacy `start` accepted without "
                 "`connection_init`, possible only with authentication off, "
                 "also stops the clock). 0: no limit."},
        {.env = "GATEWAY_KEEPALIVE_MS",
         .flag = "gateway-keepalive-ms",
         .type = MLS_CONF_INT,
         .defval = "10000",
         .min = 0,
         .max = 25000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_keepalive_ms),
         .help = "Period of the `ka` keep-alive sent to legacy `graphql-ws` "
                 "clients (subscriptions-transport-ws closes after 30 s "
                 "without one). 0: none."},
        {.env = "GATEWAY_IDLE_PING_MS",
         .flag = "gateway-idle-ping-ms",
         .type = MLS_CONF_INT,
         .defval = "30000",
         .min = 100,
         .max = 3600000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_idle_ping_ms),
         .help = "A WebSocket client that has sent nothing for this long "
                 "gets a WebSocket ping; browsers and client libraries "
                 "answer it by themselves."},
        {.env = "GATEWAY_IDLE_HANGUP_MS",
         .flag = "gateway-idle-hangup-ms",
         .type = MLS_CONF_INT,
         .defval = "60000",
         .min = 200,
         .max = 7200000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_idle_hangup_ms),
         .help = "A WebSocket client that has sent nothing, not even the "
                 "answer to a ping, for this long is hung up on, so that "
                 "peers that vanished without closing (a pulled cable, a "
                 "laptop asleep) do not hold connections. Must exceed "
                 "GATEWAY_IDLE_PING_MS."},
        {.env = "GATEWAY_MAX_MODELS",
         .flag = "gateway-max-models",
         .type = MLS_CONF_INT,
         .defval = "10000",
         .min = 1,
         .max = 1000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_models),
         .help = "Most model ids whose status the gateway tracks; predictions "
                 "for further models still reach their subscribers."},
        {.env = "ML_LATENCY_WINDOW",
         .flag = "latency-window",
         .type = MLS_CONF_INT,
         .defval = "1000",
         .min = 1,
         .max = 1000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(latency_window),
         .help = "Predictions per model in the sliding window behind "
                 "`averageLatencyMs` and `p95LatencyMs`."},
        {.env = "GATEWAY_MAX_QUERY_COST",
         .flag = "gateway-max-query-cost",
         .type = MLS_CONF_INT,
         .defval = "50000",
         .min = 100,
         .max = 100000000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_max_query_cost),
         .help = "Most field resolutions one GraphQL operation may cause: "
                 "every field counts 1, aliases and fragment spreads each "
                 "time, and a list field its items times their sub-selection "
                 "(`mlStreamingModels`: `GATEWAY_MAX_MODELS` items; "
                 "introspection lists: the schema's sizes). A costlier "
                 "document is refused at validation with an error naming its "
                 "cost and the limit. Must be above `GATEWAY_MAX_MODELS`."},
        {.env = "GATEWAY_MODEL_IDLE_SECONDS",
         .flag = "gateway-model-idle-seconds",
         .type = MLS_CONF_INT,
         .defval = "3600",
         .min = 0,
         .max = 31536000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_model_idle_seconds),
         .help = "Seconds without a prediction or heartbeat after which the "
                 "gateway forgets a model (its status and its place in "
                 "`mlStreamingModels`), unless it has live subscribers. 0: "
                 "never."},
        {.env = "GATEWAY_DEDUPE_WINDOW",
         .flag = "gateway-dedupe-window",
         .type = MLS_CONF_INT,
         .defval = "262144",
         .min = 0,
         .max = 67108864,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_dedupe_window),
         .help = "Inference ids the gateway remembers so that a prediction "
                 "published twice (an engine scoring a message again after "
                 "a crash or a rebalance gives it the same id) reaches "
                 "subscribers once: each id is remembered for at least half "
                 "this many later predictions. 16 bytes per id; 0: off."},
        {.env = "GATEWAY_HISTORY_BYTES",
         .flag = "gateway-history-bytes",
         .type = MLS_CONF_INT,
         .defval = "67108864",
         .min = 0,
         .max = 68719476736LL,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_history_bytes),
         .help = "Memory for recent predictions of every model, replayed to "
                 "subscribers that resume with `mlInferenceStream(after:)` "
                 "after a reconnect; the oldest go first. About the "
                 "payload's size plus 150 bytes per prediction. 0: no "
                 "history; a subscription with `after` is refused with an "
                 "error saying so."},
        {.env = "GATEWAY_HISTORY_MAX_AGE_MS",
         .flag = "gateway-history-max-age-ms",
         .type = MLS_CONF_INT,
         .defval = "300000",
         .min = 0,
         .max = 86400000,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_history_max_age_ms),
         .help = "Predictions older than this leave the history even when "
                 "`GATEWAY_HISTORY_BYTES` has room. 0: no age limit."},
        {.env = "GATEWAY_METRICS_MAX_MODELS",
         .flag = "gateway-metrics-max-models",
         .type = MLS_CONF_INT,
         .defval = "100",
         .min = 1,
         .max = 400,
         .scope = G | U,
         .section = "Gateway",
         .offset = OFF(gateway_metrics_max_models),
         .help = "Models with their own per-model series on the gateway's "
                 "`/metrics` (the most recently active); the rest are summed "
                 "into `model_id=\"__other__\"`."},
        {.env = "GATEWAY_ALLOWED_ORIGINS",
         .flag = "gateway-allowed-origins",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_allowed_origins),
         .help = "Comma-separated browser origins (`https://app.example.com`, "
                 "compared without regard to case) allowed to open WebSockets "
                 "on and query `/graphql`; a request or upgrade with another "
                 "`Origin` (`null` included) gets 403, allowed ones get CORS "
                 "headers. Requests without `Origin` (programs, not browsers) "
                 "are not affected. `*` allows any. Unset: no check, no CORS "
                 "headers (docs/security.md)."},
        /* access control (docs/security.md) */
        {.env = "GATEWAY_AUTH_TOKENS",
         .flag = "gateway-auth-tokens",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_auth_tokens),
         .help = "Comma-separated static bearer tokens, any of which lets a "
                 "client in, seeing every tenant: `Authorization: Bearer "
                 "<token>` on HTTP `/graphql` or the WebSocket upgrade, or "
                 "`Authorization` (also `headers.Authorization`, `token`) in "
                 "`connection_init`. Any auth setting turns authentication on; "
                 "unset (with the other auth settings): no authentication. "
                 "Prefer `GATEWAY_AUTH_TOKENS_FILE`: flags show in process "
                 "listings."},
        {.env = "GATEWAY_AUTH_TOKENS_FILE",
         .flag = "gateway-auth-tokens-file",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_auth_tokens_file),
         .help = "File of static bearer tokens, one per line (blank lines and "
                 "`#` comments skipped), added to `GATEWAY_AUTH_TOKENS`. Read "
                 "at start-up; a file other users may read is warned about."},
        {.env = "GATEWAY_AUTH_TOKEN",
         .flag = "gateway-auth-token",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_auth_token),
         .help = "One static bearer token (kept for compatibility): the same "
                 "as a one-item `GATEWAY_AUTH_TOKENS`, and added to it."},
        {.env = "GATEWAY_JWT_SECRET",
         .flag = "gateway-jwt-secret",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_secret),
         .help = "HMAC key (at least 32 bytes) of HS256 JSON Web Tokens "
                 "accepted as bearer tokens. A JWT must carry `exp`; `nbf` is "
                 "checked when present; any `alg` but `HS256` is refused. "
                 "Prefer `GATEWAY_JWT_SECRET_FILE`."},
        {.env = "GATEWAY_JWT_SECRET_FILE",
         .flag = "gateway-jwt-secret-file",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_secret_file),
         .help = "File holding the JWT HMAC key (a final newline is ignored). "
                 "Excludes `GATEWAY_JWT_SECRET`."},
        {.env = "GATEWAY_JWT_LEEWAY_SECONDS",
         .flag = "gateway-jwt-leeway-seconds",
         .type = MLS_CONF_INT,
         .defval = "30",
         .min = 0,
         .max = 3600,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_leeway_seconds),
         .help = "Clock skew allowed when checking a JWT's `exp` and `nbf`. A "
                 "WebSocket authenticated with a JWT is closed (4403) once "
                 "`exp` plus this has passed."},
        {.env = "GATEWAY_JWT_AUDIENCE",
         .flag = "gateway-jwt-audience",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_audience),
         .help = "When set, a JWT's `aud` (a string or an array) must name "
                 "this value."},
        {.env = "GATEWAY_JWT_ISSUER",
         .flag = "gateway-jwt-issuer",
         .type = MLS_CONF_STR,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_issuer),
         .help = "When set, a JWT's `iss` must be this value."},
        {.env = "GATEWAY_JWT_TENANT_CLAIM",
         .flag = "gateway-jwt-tenant-claim",
         .type = MLS_CONF_STR,
         .defval = "tenants",
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_tenant_claim),
         .help = "JWT claim listing the tenants (an array of strings) whose "
                 "predictions, by `metadata.tenant`, its holder receives and "
                 "whose latencies `mlStreamingStatus` reports. A JWT without "
                 "it sees every tenant (see `GATEWAY_JWT_REQUIRE_TENANTS`); a "
                 "static token always does."},
        {.env = "GATEWAY_JWT_REQUIRE_TENANTS",
         .flag = "gateway-jwt-require-tenants",
         .type = MLS_CONF_INT,
         .defval = "0",
         .min = 0,
         .max = 1,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_jwt_require_tenants),
         .help = "1: refuse JWTs without the tenant claim (403 / 4403), so "
                 "that every JWT is tenant-scoped."},
        {.env = "GATEWAY_METRICS_AUTH",
         .flag = "gateway-metrics-auth",
         .type = MLS_CONF_INT,
         .defval = "0",
         .min = 0,
         .max = 1,
         .scope = G | U,
         .section = "Gateway access",
         .offset = OFF(gateway_metrics_auth),
         .help = "1: the gateway's `/metrics` needs a bearer token that sees "
                 "every tenant (a static token or a JWT without the tenant "
                 "claim). 0: open, like `/healthz` and `/readyz`; it shows "
                 "per-model latencies of all tenants, so keep it off networks "
                 "tenants reach."},
        {.env = "ML_EMBEDDED_KAFKA_PORT",
         .flag = "embedded-kafka-port",
         .type = MLS_CONF_INT,
         .defval = "9092",
         .min = 1,
         .max = 65535,
         .scope = U,
         .section = "mlstream up",
         .offset = OFF(embedded_kafka_port),
         .help = "Port on 127.0.0.1 where `mlstream up` offers its embedded "
                 "broker (in memory, not durable). Ignored when "
                 "KAFKA_BOOTSTRAP_SERVERS is set."},
        {.env = "ML_DEMO_RATE",
         .flag = "demo-rate",
         .type = MLS_CONF_INT,
         .defval = "20",
         .min = 1,
         .max = 1000000,
         .scope = U,
         .section = "mlstream up",
         .offset = OFF(demo_rate),
         .help = "Synthetic events per second that `mlstream up --demo` "
                 "produces."},
        {.env = "ML_LOG_LEVEL",
         .flag = "log-level",
         .type = MLS_CONF_ENUM,
         .defval = "info",
         .choices = "debug|info|warn|error",
         .scope = MLS_SCOPE_ALL,
         .section = "Logging",
         .offset = OFF(log_level),
         .help = "Least severe log level printed."},
        {.env = "ML_LOG_FORMAT",
         .flag = "log-format",
         .type = MLS_CONF_ENUM,
         .defval = "text",
         .choices = "text|json",
         .scope = MLS_SCOPE_ALL,
         .section = "Logging",
         .offset = OFF(log_format),
         .help = "Log lines as text or as one JSON object per line."},
        {.env = NULL},
};

_Static_assert(sizeof(mls_conf_defs) / sizeof(mls_conf_defs[0]) <=
                       MLS_CONF_MAX_SETTINGS + 1,
               "raise MLS_CONF_MAX_SETTINGS");

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

/* The default a command uses: `mlstream up` has some of its own. */
static const char *default_for(const struct mls_conf_def *d, unsigned scope)
{
        return scope == MLS_SCOPE_UP && d->up_defval ? d->up_defval : d->defval;
}

enum mls_conf_origin mls_config_origin(const struct mls_config *cfg,
                                       const char *env)
{
        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++)
                if (strcmp(d->env, env) == 0)
                        return (enum mls_conf_origin)
                                cfg->origin[d - mls_conf_defs];
        return MLS_CONF_DEFAULT;
}

/* The setting in scope whose variable (or, with flag, flag) is the fewest
 * edits from name (n bytes), two at most; NULL when none is that close. */
static const struct mls_conf_def *closest(const char *name, size_t n, int flag,
                                          unsigned scope)
{
        const struct mls_conf_def *best = NULL;
        size_t best_edits = 3;

        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++) {
                const char *known = flag ? d->flag : d->env;
                size_t k;
                if (!(d->scope & scope))
                        continue;
                k = mls_edits(name, n, known, strlen(known), 0, 2);
                if (k < best_edits) {
                        best = d;
                        best_edits = k;
                }
        }
        return best;
}

static int has_prefix(const char *s, size_t n, const char *prefix)
{
        size_t pl = strlen(prefix);

        return n > pl && strncmp(s, prefix, pl) == 0;
}

/* Names that other Kafka and Redis clients give to what one of ours sets,
 * too far from it for closest(). */
static const struct {
        const char *name, *ours;
} elsewhere[] = {
        {"KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS"},
        {"KAFKA_BROKER_LIST", "KAFKA_BOOTSTRAP_SERVERS"},
        {"KAFKA_GROUP_ID", "KAFKA_CONSUMER_GROUP"},
        {"KAFKA_GROUP", "KAFKA_CONSUMER_GROUP"},
        {"KAFKA_TOPIC", "KAFKA_INFERENCE_TOPIC"},
        {"KAFKA_INPUT_TOPIC", "KAFKA_INFERENCE_TOPIC"},
        {"KAFKA_DEAD_LETTER_TOPIC", "KAFKA_DLQ_TOPIC"},
        {"REDIS_HOST", "REDIS_URL"},
        {"REDIS_PASSWORD", "REDIS_URL"},
};

static const char *elsewhere_ours(const char *name, size_t n)
{
        for (size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++)
                if (strlen(elsewhere[i].name) == n &&
                    strncmp(name, elsewhere[i].name, n) == 0)
                        return elsewhere[i].ours;
        return NULL;
}

/*
 * Whether an environment variable (name n bytes) that names no setting
 * looks meant for mlstream: ML_ and GATEWAY_ are ours; KAFKA_ and REDIS_
 * are shared with other programs' settings (KAFKA_HEAP_OPTS, REDIS_HOST),
 * so only a near miss of one of ours, or another client's name for one of
 * ours, counts there (the latter only when ours is unset: warned about in
 * mls_config_warn_unknown()).
 */
static int meant_for_us(const char *name, size_t n)
{
        if (has_prefix(name, n, "ML_") || has_prefix(name, n, "GATEWAY_"))
                return 1;
        return (has_prefix(name, n, "KAFKA_") ||
                has_prefix(name, n, "REDIS_")) &&
               (elsewhere_ours(name, n) ||
                closest(name, n, 0, MLS_SCOPE_ALL) != NULL);
}

static int add_unknown(struct mls_config *cfg, const char *name, size_t n)
{
        char **list = realloc(cfg->unknown_env,
                              (cfg->unknown_env_count + 1) * sizeof(*list));

        if (!list)
                return -1;
        cfg->unknown_env = list;
        if (!(list[cfg->unknown_env_count] = strndup(name, n)))
                return -1;
        cfg->unknown_env_count++;
        return 0;
}

int mls_config_exactly_once(const struct mls_config *cfg)
{
        return cfg->exactly_once && strcmp(cfg->exactly_once, "true") == 0;
}

void mls_config_warn_unknown(const struct mls_config *cfg)
{
        for (size_t i = 0; i < cfg->unknown_env_count; i++) {
                const char *name = cfg->unknown_env[i];
                const char *ours = elsewhere_ours(name, strlen(name));
                const struct mls_conf_def *d;

                if (ours) {
                        /* set beside ours, it is another program's */
                        if (mls_config_origin(cfg, ours) == MLS_CONF_DEFAULT)
                                mls_warn("%s is set but is no mlstream "
                                         "setting: ignored (mlstream reads "
                                         "%s, which is unset)",
                                         name, ours);
                } else if ((d = closest(name, strlen(name), 0, MLS_SCOPE_ALL)))
                        mls_warn("%s is set but is no mlstream setting: "
                                 "ignored (did you mean %s?)",
                                 name, d->env);
                else
                        mls_warn("%s is set but is no mlstream setting: "
                                 "ignored (--help lists the settings)",
                                 name);
        }
}

int mls_config_load(struct mls_config *cfg, unsigned scope, char **envp,
                    int argc, char **argv, char *errstr, size_t errstr_size)
{
        const struct mls_conf_def *d;

        memset(cfg, 0, sizeof(*cfg));
        for (d = mls_conf_defs; d->env; d++) {
                const char *v = default_for(d, scope);
                if (d->type == MLS_CONF_INT)
                        *int_field(cfg, d) = -1;
                if (v && set_def(cfg, d, v, errstr, errstr_size) < 0)
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
                                cfg->origin[d - mls_conf_defs] =
                                        MLS_CONF_FROM_ENV;
                                break;
                        }
                }
                if (!d->env && meant_for_us(*e, (size_t)(eq - *e)) &&
                    add_unknown(cfg, *e, (size_t)(eq - *e)) < 0)
                        goto oom;
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
                        const struct mls_conf_def *near =
                                closest(name, nlen, 1, scope);
                        if (near)
                                snprintf(errstr, errstr_size,
                                         "unknown option \"%.*s\" (did you "
                                         "mean --%s?)",
                                         (int)(nlen + 2), arg, near->flag);
                        else
                                snprintf(errstr, errstr_size,
                                         "unknown option \"%.*s\" (see "
                                         "--help)",
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
                cfg->origin[d - mls_conf_defs] = MLS_CONF_FROM_FLAG;
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
        for (size_t i = 0; i < cfg->unknown_env_count; i++)
                free(cfg->unknown_env[i]);
        free(cfg->unknown_env);
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

/* Prints text in lines of at most width columns (longer words stay
 * whole), each indented by indent spaces. */
static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
        const char *p = text;

        while (*p) {
                const char *end = p, *cut = NULL;
                int room = width - indent;

                while (*end && end - p <= room) {
                        if (*end == ' ')
                                cut = end;
                        end++;
                }
                if (!*end && end - p <= room)
                        cut = end;
                else if (!cut) /* one long word: up to the next space */
                        for (cut = end; *cut && *cut != ' '; cut++)
                                ;
                fprintf(out, "%*s%.*s\n", indent, "", (int)(cut - p), p);
                p = cut;
                while (*p == ' ')
                        p++;
        }
}

/* What --help and the docs print as the default. */
static const char *shown_default(const struct mls_conf_def *d, unsigned scope)
{
        const char *v = default_for(d, scope);

        if (scope == MLS_SCOPE_UP && d->up_shown)
                return d->up_shown;
        return v ? v : "(unset)";
}

void mls_config_print_help(FILE *out, unsigned scope)
{
        const char *section = NULL;

        for (const struct mls_conf_def *d = mls_conf_defs; d->env; d++) {
                if (!(d->scope & scope))
                        continue;
                if (!section || strcmp(section, d->section) != 0) {
                        section = d->section;
                        fprintf(out, "\n%s:\n", section);
                }
                fprintf(out, "  --%s=%s\n", d->flag, type_word(d));
                print_wrapped(out, d->help, 6, 79);
                fprintf(out, "      env %s, default %s\n", d->env,
                        shown_default(d, scope));
        }
        fprintf(out, "\nAny librdkafka property:\n"
                     "  KAFKA_CONF_<NAME>=VALUE (environment only)\n"
                     "      Upper-cased with '.' as '_', e.g. "
                     "KAFKA_CONF_FETCH_WAIT_MAX_MS.\n");
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
                "process at start-up with a message naming the variable, "
                "and so does an unknown flag (naming the closest option). "
                "A variable that looks meant for mlstream but names no "
                "setting (`ML_*` and `GATEWAY_*`; `KAFKA_*` and `REDIS_*` "
                "within two typos of a setting) is logged as a warning at "
                "start-up, with the setting it is closest to, and "
                "ignored. So are other clients' names for one of ours "
                "(`KAFKA_BROKERS`, `KAFKA_GROUP_ID`, `KAFKA_TOPIC`, "
                "`REDIS_HOST`...) while ours is unset.\n\n"
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
                fprintf(out, " | %s%s%s", d->defval ? "`" : "",
                        d->defval ? d->defval : "unset", d->defval ? "`" : "");
                if (d->up_defval)
                        fprintf(out, "; under `up`: `%s`", d->up_defval);
                else if (d->up_shown)
                        fprintf(out, "; under `up`: %s", d->up_shown);
                fprintf(out, " | ");
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
                "producers) understand are given only to those.\n\n"
                "Some properties come from mlstream's own settings, and the "
                "file and `KAFKA_CONF_*` may give them only the same value; "
                "another is an error at start-up that names the setting to "
                "use: `bootstrap.servers` (`KAFKA_BOOTSTRAP_SERVERS`), "
                "`group.id` (`KAFKA_CONSUMER_GROUP`), "
                "`enable.auto.offset.store` (always `false`: the engine "
                "stores each offset once its message is delivered) and, with "
                "`ML_EXACTLY_ONCE=true`, `enable.auto.commit` (`false`) and "
                "`isolation.level` (`read_committed`). `transactional.id` "
                "may be set only with `ML_EXACTLY_ONCE=true`.\n");
}
