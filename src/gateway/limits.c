/*
 * The open-file limit the gateway needs: one descriptor per WebSocket or
 * HTTP connection (GATEWAY_MAX_CONNECTIONS) plus a few of its own. Start-up
 * only, on the thread that creates the gateway.
 */
#include <sys/resource.h>

#include "gateway/gateway_int.h"

/* descriptors beyond the connections: listener, Redis, libuv, logs */
#define OWN_FDS 64

void mls__gw_limits_raise_nofile(unsigned max_conns)
{
        struct rlimit rl;
        rlim_t want = (rlim_t)max_conns + OWN_FDS;

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

/*
 * libwebsockets 4.1 finds a connection by its descriptor in a table indexed
 * by descriptor, but only when it tracks as many descriptors as the
 * open-file limit (sysconf(_SC_OPEN_MAX)): told to track fewer, it scans
 * the whole table on every lookup, which made each new connection cost
 * O(connections open). So it tracks the limit itself; its tables are
 * allocated zeroed and touched only where descriptors are in use. Only a
 * limit past what libwebsockets accepts (it falls back to 2,560 above 10
 * million) is replaced by what the connections need.
 */
unsigned mls__gw_limits_lws_fds(unsigned max_conns)
{
        struct rlimit rl;
        unsigned want = max_conns + OWN_FDS;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
            rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= 10000000)
                return (unsigned)rl.rlim_cur;
        return want;
}
