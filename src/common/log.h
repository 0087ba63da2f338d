/*
 * Logging to stderr, as text or one JSON object per line.
 * Thread-safe: any thread may log; each line is written with one write(2).
 */
#ifndef MLS_LOG_H
#define MLS_LOG_H

enum mls_log_level {
        MLS_LOG_DEBUG,
        MLS_LOG_INFO,
        MLS_LOG_WARN,
        MLS_LOG_ERROR,
};

/* Sets the threshold and format. Returns -1 for an unknown name. */
int mls_log_set_level(const char *name);
int mls_log_set_format(const char *name);
void mls_log_set_component(const char *name);

void mls_log(enum mls_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

#define mls_debug(...) mls_log(MLS_LOG_DEBUG, __VA_ARGS__)
#define mls_info(...) mls_log(MLS_LOG_INFO, __VA_ARGS__)
#define mls_warn(...) mls_log(MLS_LOG_WARN, __VA_ARGS__)
#define mls_error(...) mls_log(MLS_LOG_ERROR, __VA_ARGS__)

#endif
