#include "common/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy(char *dst, size_t cap, const char *s, size_t n)
{
        if (n >= cap)
                return -1;
        memcpy(dst, s, n);
        dst[n] = '\0';
        return 0;
}

int mls_redis_url_parse(const char *url, struct mls_redis_url *out,
                        char *errstr, size_t errstr_size)
{
        const char *p, *at, *slash, *colon, *hend;
        char *end;

        memset(out, 0, sizeof(*out));
        out->port = 6379;
        if (strncmp(url, "redis://", 8) != 0) {
                snprintf(errstr, errstr_size,
                         "REDIS_URL must start with redis:// "
                         "(redis://[:password@]host:port/db)");
                return -1;
        }
        p = url + 8;
        slash = strchr(p, '/');
        hend = slash ? slash : p + strlen(p);
        at = memchr(p, '@', (size_t)(hend - p));
        if (at) {
                colon = memchr(p, ':', (size_t)(at - p));
                if (colon) {
                        if (copy(out->user, sizeof(out->user), p,
                                 (size_t)(colon - p)) < 0 ||
                            copy(out->password, sizeof(out->password),
                                 colon + 1, (size_t)(at - colon - 1)) < 0)
                                goto too_long;
                } else if (copy(out->password, sizeof(out->password), p,
                                (size_t)(at - p)) < 0) {
                        goto too_long;
                }
                p = at + 1;
        }
        if (*p == '[') { /* [ipv6]:port */
                const char *rb = memchr(p, ']', (size_t)(hend - p));
                if (!rb)
                        goto bad;
                if (copy(out->host, sizeof(out->host), p + 1,
                         (size_t)(rb - p - 1)) < 0)
                        goto too_long;
                colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        } else {
                colon = memchr(p, ':', (size_t)(hend - p));
                if (copy(out->host, sizeof(out->host), p,
                         (size_t)((colon ? colon : hend) - p)) < 0)
                        goto too_long;
        }
        if (!out->host[0])
                goto bad;
        if (colon) {
                long v = strtol(colon + 1, &end, 10);
                if (end != hend || v < 1 || v > 65535)
                        goto bad;
                out->port = (int)v;
        }
        if (slash && slash[1]) {
                long v = strtol(slash + 1, &end, 10);
                if (*end || v < 0 || v > 1000000)
                        goto bad;
                out->db = (int)v;
        }
        return 0;
too_long:
        snprintf(errstr, errstr_size, "REDIS_URL: a part is too long");
        return -1;
bad:
        snprintf(errstr, errstr_size,
                 "REDIS_URL is not of the form "
                 "redis://[:password@]host[:port][/db]");
        return -1;
}
