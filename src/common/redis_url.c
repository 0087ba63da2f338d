#include "common/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

static int copy(char *dst, size_t cap, const char *s, size_t n)
{
        if (n >= cap)
                return -1;
        memcpy(dst, s, n);
        dst[n] = '\0';
        return 0;
}

/* Copies the user or password part, decoding %XX (RFC 3986), so that a
 * password may hold '@', ':', '/' or '%'. Returns 0, -1 when it does not
 * fit, -2 for a bad escape or an encoded NUL. */
static int copy_decoded(char *dst, size_t cap, const char *s, size_t n)
{
        size_t o = 0;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= n)
                                return -2;
                        hi = mls_hexval(s[i + 1]);
                        lo = mls_hexval(s[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                                return -2;
                        c = (char)(hi << 4 | lo);
                        i += 2;
                }
                if (o + 1 >= cap)
                        return -1;
                dst[o++] = c;
        }
        dst[o] = '\0';
        return 0;
}

#define URL_FORM "redis://[[user]:password@]host[:port][/db]"

int mls_redis_url_parse(const char *url, struct mls_redis_url *out,
                        char *errstr, size_t errstr_size)
{
        const char *p, *at, *slash, *colon, *hend;
        char *end;

        memset(out, 0, sizeof(*out));
        out->port = 6379;
        if (strncmp(url, "rediss://", 9) == 0) {
                snprintf(errstr, errstr_size,
                         "REDIS_URL: rediss:// (TLS) is not supported: the "
                         "hiredis this build uses has no TLS; reach Redis "
                         "over a private network with redis:// "
                         "(docs/security.md)");
                return -1;
        }
        if (strncmp(url, "redis://", 8) != 0) {
                snprintf(errstr, errstr_size,
                         "REDIS_URL must start with redis:// (" URL_FORM ")");
                return -1;
        }
        p = url + 8;
        slash = strchr(p, '/');
        hend = slash ? slash : p + strlen(p);
        at = memchr(p, '@', (size_t)(hend - p));
        if (at) {
                int rc;
                colon = memchr(p, ':', (size_t)(at - p));
                if (colon) {
                        rc = copy_decoded(out->user, sizeof(out->user), p,
                                          (size_t)(colon - p));
                        if (!rc)
                                rc = copy_decoded(
                                        out->password, sizeof(out->password),
                                        colon + 1, (size_t)(at - colon - 1));
                } else {
                        rc = copy_decoded(out->password, sizeof(out->password),
                                          p, (size_t)(at - p));
                }
                if (rc == -1)
                        goto too_long;
                if (rc < 0) {
                        snprintf(errstr, errstr_size,
                                 "REDIS_URL: a bad %%-escape in the user or "
                                 "password (write %%40 for @, %%2F for /, "
                                 "%%25 for %%)");
                        memset(out, 0, sizeof(*out));
                        return -1;
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
        snprintf(errstr, errstr_size, "REDIS_URL is not of the form " URL_FORM);
        return -1;
}

int mls_redis_url_auth(const struct mls_redis_url *u, const char *argv[3])
{
        int n = 0;

        if (!u->password[0])
                return 0;
        argv[n++] = "AUTH";
        if (u->user[0])
                argv[n++] = u->user;
        argv[n++] = u->password;
        return n;
}
