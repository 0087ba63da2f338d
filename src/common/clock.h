/* Clocks. All functions are thread-safe. */
#ifndef MLS_CLOCK_H
#define MLS_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds, for durations. */
int64_t mls_clock_mono_ns(void);
/* A monotonic time in ns as a timespec, for waits that take one
 * (pthread_cond_timedwait on a CLOCK_MONOTONIC condition). */
struct timespec mls_clock_mono_timespec(int64_t mono_ns);
/* Wall-clock milliseconds since the epoch, for timestamps. */
int64_t mls_clock_wall_ms(void);
/* Writes "2026-11-26T23:59:59.123Z" (24 bytes + NUL) into out; returns the
 * length, or 0 if cap is too small. */
size_t mls_clock_iso8601(int64_t wall_ms, char *out, size_t cap);

#endif
