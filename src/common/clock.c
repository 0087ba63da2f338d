#include "common/clock.h"

#include <stdio.h>
#include <time.h>

int64_t mls_clock_mono_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec mls_clock_mono_timespec(int64_t mono_ns)
{
        struct timespec ts = {.tv_sec = (time_t)(mono_ns / 1000000000),
                              .tv_nsec = (long)(mono_ns % 1000000000)};

        return ts;
}

int64_t mls_clock_wall_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Cached per thread: converting seconds to a calendar date is the expensive
 * part, and timestamps within one second share it. */
static _Thread_local int64_t cached_sec = -1;
static _Thread_local char cached_prefix[64];

size_t mls_clock_iso8601(int64_t wall_ms, char *out, size_t cap)
{
        int64_t sec = wall_ms / 1000;
        int ms = (int)(wall_ms % 1000);

        if (cap < 25)
                return 0;
        if (sec != cached_sec) {
                struct tm tm;
                time_t t = (time_t)sec;
                gmtime_r(&t, &tm);
                snprintf(cached_prefix, sizeof(cached_prefix),
                         "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
                cached_sec = sec;
        }
        for (int i = 0; i < 19; i++)
                out[i] = cached_prefix[i];
        out[19] = '.';
        out[20] = (char)('0' + ms / 100);
        out[21] = (char)('0' + ms / 10 % 10);
        out[22] = (char)('0' + ms % 10);
        out[23] = 'Z';
        out[24] = '\0';
        return 24;
}
