/*
 * Configuration: one table (config.c) is the single source of truth for
 * every setting's environment variable, command-line flag, type, default,
 * range and help. It drives parsing, validation, --help and
 * docs/configuration.md.
 *
 * Precedence: defaults < environment < command-line flags.
 * Called from the main thread at start-up only.
 */
#ifndef MLS_CONFIG_H
#define MLS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

/* Which commands a setting applies to. */
#define MLS_SCOPE_ENGINE 0x1
#define MLS_SCOPE_GATEWAY 0x2
#define MLS_SCOPE_UP 0x4
#define MLS_SCOPE_ALL 0x7

/* Where a setting's value came from. */
enum mls_conf_origin {
        MLS_CONF_DEFAULT,
        MLS_CONF_FROM_ENV,
        MLS_CONF_FROM_FLAG,
};

/* More settings than this in the table is a build error (config.c). */
#define MLS_CONF_MAX_SETTINGS 128

struct mls_config {
        /* Kafka */
        char *kafka_bootstrap_servers;
        char *kafka_inference_topic;
        char *kafka_consumer_group;
        char *kafka_output_topic;
        char *kafka_dlq_topic;
        char *kafka_config_file;
        /* Redis */
        char *redis_url;
        char *redis_channel;
        char *redis_channel_mode; /* "single" or "per-model" */
        char *shadow_channel;
        char *redis_cluster; /* "true" or "false" */
        long long redis_retry_max_ms;
        long long gateway_redis_ping_ms;
        /* Model */
        char *model_framework;
        char *model_path;
        char *model_repository;
        char *default_model_id;
        long long model_threads;
        char *model_output;
        long long model_input_width;
        long long model_poll_interval_ms;
        /* Engine */
        long long batch_max_rows;
        long long batch_max_wait_us;
        long long batch_max_messages;
        long long batch_max_bytes;
        long long dead_letter_max_bytes;
        long long prefetch_max_bytes;
        long long batch_max_output_bytes;
        long long metrics_max_models;
        long long shutdown_timeout_ms;
        long long commit_interval_ms;
        long long commit_max_messages;
        char *exactly_once; /* "true" or "false" */
        long long transaction_interval_ms;
        long long max_message_bytes;
        long long max_rows_per_message;
        long long max_row_width;
        long long heartbeat_interval_ms;
        char *engine_id;
        long long prometheus_port; /* -1: disabled */
        char *prometheus_host;
        /* Gateway */
        char *gateway_host;
        long long gateway_port;
        /* gateway: limits, protocol timers, monitor, access */
        long long gateway_max_connections;
        long long gateway_max_message_bytes;
        long long gateway_max_payload_bytes;
        long long gateway_max_document_bytes;
        long long gateway_max_query_depth;
        long long gateway_max_operations;
        long long gateway_max_watched_models;
        long long gateway_send_queue;
        long long gateway_init_timeout_ms;
        long long gateway_keepalive_ms;
        long long gateway_idle_ping_ms, gateway_idle_hangup_ms;
        long long gateway_max_models;
        long long latency_window;
        /* gateway: query cost and the model table under hostile input */
        long long gateway_max_query_cost;
        long long gateway_model_idle_seconds;
        long long gateway_dedupe_window;
        long long gateway_history_bytes;
        long long gateway_history_max_age_ms;
        long long gateway_metrics_max_models;
        char *gateway_auth_token;
        char *gateway_allowed_origins;
        /* gateway access control */
        char *gateway_auth_tokens;
        char *gateway_auth_tokens_file;
        char *gateway_jwt_secret;
        char *gateway_jwt_secret_file;
        long long gateway_jwt_leeway_seconds;
        char *gateway_jwt_audience;
        char *gateway_jwt_issuer;
        char *gateway_jwt_tenant_claim;
        long long gateway_jwt_require_tenants;
        long long gateway_metrics_auth;
        /* gateway: per-connection byte budget */
        long long gateway_send_queue_bytes;
        /* mlstream up */
        long long embedded_kafka_port;
        long long demo_rate;
        /* Logging */
        char *log_level;
        char *log_format;

        /* KAFKA_CONF_<NAME> pass-through, as "name=value" strings. */
        char **kafka_conf;
        size_t kafka_conf_count;
        /* Variables in the environment that look meant for mlstream but
         * name no setting (typos, mostly): ML_* and GATEWAY_*, and KAFKA_*
         * and REDIS_* within two edits of a setting. Names only. */
        char **unknown_env;
        size_t unknown_env_count;

        /* enum mls_conf_origin of each setting, by its index in the table;
         * read it with mls_config_origin(). */
        unsigned char origin[MLS_CONF_MAX_SETTINGS];
};

enum mls_conf_type {
        MLS_CONF_STR,
        MLS_CONF_INT,
        MLS_CONF_ENUM,
};

struct mls_conf_def {
        const char *env;  /* environment variable */
        const char *flag; /* command-line flag without "--" */
        enum mls_conf_type type;
        const char *defval;  /* NULL: unset */
        long long min, max;  /* MLS_CONF_INT range */
        const char *choices; /* MLS_CONF_ENUM: "a|b|c" */
        unsigned scope;
        /* `mlstream up`'s own default, when it differs: a value it uses
         * (up_defval), or what it does instead, in words, when the setting
         * is unset (up_shown, for --help and the docs only). */
        const char *up_defval;
        const char *up_shown;
        const char *section; /* heading in --help, the docs and the man page */
        size_t offset;       /* into struct mls_config */
        const char *help;
};

/* The table, terminated by an entry whose env is NULL. */
extern const struct mls_conf_def mls_conf_defs[];

/*
 * Fills cfg from defaults, then the environment (envp, NULL-terminated, may
 * be NULL), then argv flags (--flag=value or --flag value) for the settings
 * in scope. Unknown flags and bad values fail.
 * Returns 0, or -1 with the reason in errstr (naming the variable and flag).
 * On success the caller frees cfg with mls_config_free(). Positional
 * arguments are not accepted. "--help" is not handled here.
 */
int mls_config_load(struct mls_config *cfg, unsigned scope, char **envp,
                    int argc, char **argv, char *errstr, size_t errstr_size);
void mls_config_free(struct mls_config *cfg);

/* Logs a warning for each of cfg->unknown_env, naming the setting it is
 * closest to when one is within two edits. The commands call it once their
 * log is set up: an unknown variable is ignored, not an error (other
 * programs' variables may share a prefix). */
void mls_config_warn_unknown(const struct mls_config *cfg);

/* Where the value of the setting named env came from: its default (the
 * command's own), the environment or a flag. */
enum mls_conf_origin mls_config_origin(const struct mls_config *cfg,
                                       const char *env);
/* Whether ML_EXACTLY_ONCE is on. */
int mls_config_exactly_once(const struct mls_config *cfg);

/* Sets one setting by environment name, validating it. */
int mls_config_set(struct mls_config *cfg, const char *env, const char *value,
                   char *errstr, size_t errstr_size);

/* Prints the options in scope, for --help, grouped by section, with the
 * defaults of that command (scope MLS_SCOPE_UP: up's own). */
void mls_config_print_help(FILE *out, unsigned scope);
/* Prints docs/configuration.md. */
void mls_config_print_markdown(FILE *out);

#endif
