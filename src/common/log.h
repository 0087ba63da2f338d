/*
 * Logging to stderr, as text or one JSON object per line.
 * Thread-safe: any thread may log; each line is written with one write(2).
 */
#ifndef MLS_LOG_H
#define MLS_LOG_H

#include <stdint.h>

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

/*
 * A rate limit for one kind of log line: at most max lines per interval.
 * Zero-initialise it; it is not locked, so keep one per thread (or under
 * the caller's lock).
 */
struct mls_log_limit {
        int64_t window_ms;        /* start of the current interval */
        unsigned lines;           /* lines allowed in it so far */
        unsigned long suppressed; /* lines refused since the last allowed */
};

/* 1 if a line may be logged at now_ms (monotonic ms), else 0 (and the line
 * is counted as suppressed). When it returns 1, *suppressed (may be NULL)
 * gets how many lines were refused since the previous allowed one, and the
 * count restarts. */
int mls_log_limit_allow(struct mls_log_limit *l, unsigned max,
                        int64_t interval_ms, int64_t now_ms,
                        unsigned long *suppressed);

/* Logs like mls_log(), at most MLS_LOG_LIMIT_LINES lines per
 * MLS_LOG_LIMIT_INTERVAL_MS for limit l (one per kind of line, owned by one
 * thread); the next line let through says how many were suppressed. For
 * lines that input from outside (bad messages, refused clients) can
 * repeat at any rate. */
#define MLS_LOG_LIMIT_LINES 10
#define MLS_LOG_LIMIT_INTERVAL_MS 10000
void mls_log_limited(struct mls_log_limit *l, enum mls_log_level level,
                     const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Warns when the file open on fd, named by setting, may be read by every
 * user: for files that hold secrets. */
void mls_warn_if_readable_by_all(int fd, const char *setting, const char *path);

#define mls_debug(...) mls_log(MLS_LOG_DEBUG, __VA_ARGS__)
#define mls_info(...) mls_log(MLS_LOG_INFO, __VA_ARGS__)
#define mls_warn(...) mls_log(MLS_LOG_WARN, __VA_ARGS__)
#define mls_error(...) mls_log(MLS_LOG_ERROR, __VA_ARGS__)

#endif
