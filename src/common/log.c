#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

static enum mls_log_level threshold = MLS_LOG_INFO;
static int json_format;
static const char *component = "mlstream";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int mls_log_set_level(const char *name)
{
        for (int i = 0; i < 4; i++) {
                if (strcmp(name, level_names[i]) == 0) {
                        threshold = (enum mls_log_level)i;
                        return 0;
                }
        }
        return -1;
}

int mls_log_set_format(const char *name)
{
        if (strcmp(name, "text") == 0)
                json_format = 0;
        else if (strcmp(name, "json") == 0)
                json_format = 1;
        else
                return -1;
        return 0;
}

void mls_log_set_component(const char *name)
{
        component = name;
}

/* Appends msg to out as the body of a JSON string (without quotes). */
static size_t json_escape(char *out, size_t cap, const char *msg)
{
        size_t n = 0;

        for (; *msg && n + 7 < cap; msg++) {
                unsigned char c = (unsigned char)*msg;
                if (c == '"' || c == '\\') {
                        out[n++] = '\\';
                        out[n++] = (char)c;
                } else if (c < 0x20) {
                        n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
                } else {
                        out[n++] = (char)c;
                }
        }
        return n;
}

void mls_log(enum mls_log_level level, const char *fmt, ...)
{
        char msg[2048], line[4608], ts[32];
        va_list ap;
        int n;

        if (level < threshold)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        mls_clock_iso8601(mls_clock_wall_ms(), ts, sizeof(ts));
        if (json_format) {
                n = snprintf(line, sizeof(line),
                             "{\"ts\":\"%s\",\"level\":\"%s\","
                             "\"component\":\"%s\",\"msg\":\"",
                             ts, level_names[level], component);
                n += (int)json_escape(line + n, sizeof(line) - (size_t)n - 3,
                                      msg);
                n += snprintf(line + n, sizeof(line) - (size_t)n, "\"}\n");
        } else {
                n = snprintf(line, sizeof(line), "%s %-5s %s: %s\n", ts,
                             level_names[level], component, msg);
        }
        if (n > (int)sizeof(line) - 1)
                n = (int)sizeof(line) - 1;
        if (write(STDERR_FILENO, line, (size_t)n) < 0)
                return;
}

int mls_log_limit_allow(struct mls_log_limit *l, unsigned max,
                        int64_t interval_ms, int64_t now_ms,
                        unsigned long *suppressed)
{
        if (l->lines == 0 || now_ms - l->window_ms >= interval_ms ||
            now_ms < l->window_ms) {
                l->window_ms = now_ms;
                l->lines = 0;
        }
        if (l->lines >= max) {
                l->suppressed++;
                return 0;
        }
        l->lines++;
        if (suppressed)
                *suppressed = l->suppressed;
        l->suppressed = 0;
        return 1;
}

void mls_log_limited(struct mls_log_limit *l, enum mls_log_level level,
                     const char *fmt, ...)
{
        char msg[2048];
        unsigned long suppressed = 0;
        va_list ap;

        if (level < threshold ||
            !mls_log_limit_allow(l, MLS_LOG_LIMIT_LINES,
                                 MLS_LOG_LIMIT_INTERVAL_MS,
                                 mls_clock_mono_ns() / 1000000, &suppressed))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (suppressed)
                mls_log(level, "%s (%lu similar lines suppressed)", msg,
                        suppressed);
        else
                mls_log(level, "%s", msg);
}

void mls_warn_if_readable_by_all(int fd, const char *setting, const char *path)
{
        struct stat st;

        if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
                mls_warn("%s: %s is readable by every user (chmod 600 it)",
                         setting, path);
}
