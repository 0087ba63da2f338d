/*
 * The origin policy of /graphql (GATEWAY_ALLOWED_ORIGINS): which browser
 * origins may open WebSockets and make GraphQL requests over HTTP, and so
 * get CORS headers. Parsed once at start-up; checked by ws.c and http.c on
 * the loop thread. Owns the lower-cased copies of the listed origins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/gateway_int.h"

/*
 * One allowed origin as browsers send it (RFC 6454: scheme "://" host
 * [":" port], nothing after): lower-cased, a trailing "/" dropped. Returns
 * a new string, or NULL (errstr filled) when it is not an origin.
 */
static char *origin_entry(const char *p, size_t n, char *errstr,
                          size_t errstr_size)
{
        const char *sep;
        char *o;
        int ok;

        if (n && p[n - 1] == '/')
                n--;
        sep = memmem(p, n, "://", 3);
        /* "null" (opaque origins: sandboxed frames, file:) only by name */
        ok = (n == 4 && strncasecmp(p, "null", 4) == 0) ||
             (sep && sep > p && (size_t)(sep - p) + 3 < n &&
              !memchr(sep + 3, '/', n - (size_t)(sep - p) - 3));
        for (size_t i = 0; ok && i < n; i++)
                if (p[i] <= ' ' || p[i] > '~')
                        ok = 0;
        if (!ok) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_ALLOWED_ORIGINS (--gateway-allowed-origins): "
                         "\"%.*s\" is not an origin (scheme://host[:port], "
                         "no path)",
                         (int)(n > 200 ? 200 : n), p);
                return NULL;
        }
        o = strndup(p, n);
        if (!o) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        for (char *c = o; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c - 'A' + 'a');
        return o;
}

int mls__gw_origin_parse(struct mls__gw_origin_policy *pol, const char *list,
                         char *errstr, size_t errstr_size)
{
        const char *p = list;

        if (!list || !*list)
                return 0;
        while (*p) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                char **o;

                while (n && (*p == ' ' || *p == '\t')) {
                        p++;
                        n--;
                }
                while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if (n == 1 && *p == '*') {
                        pol->any = 1;
                } else if (n) {
                        o = realloc(pol->list, (pol->n + 1) * sizeof(*o));
                        if (!o) {
                                snprintf(errstr, errstr_size, "out of memory");
                                return -1;
                        }
                        pol->list = o;
                        if (!(o[pol->n] =
                                      origin_entry(p, n, errstr, errstr_size)))
                                return -1;
                        pol->n++;
                }
                p = end ? end + 1 : p + strlen(p);
        }
        if (!pol->list && !pol->any) {
                snprintf(errstr, errstr_size,
                         "GATEWAY_ALLOWED_ORIGINS (--gateway-allowed-origins): "
                         "invalid value \"%s\": expected origins separated "
                         "by commas, or *",
                         list);
                return -1;
        }
        if (!pol->list) {
                /* "*" alone: CORS for everyone; list stays non-NULL so
                 * that the CORS headers are sent */
                pol->list = calloc(1, sizeof(*pol->list));
                if (!pol->list) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
        }
        return 0;
}

void mls__gw_origin_free(struct mls__gw_origin_policy *pol)
{
        for (size_t i = 0; i < pol->n; i++)
                free(pol->list[i]);
        free(pol->list);
        memset(pol, 0, sizeof(*pol));
}

int mls__gw_origin_ok(const struct mls__gw_origin_policy *pol,
                      const char *origin)
{
        size_t n;

        if (!pol->list || pol->any || !origin)
                return 1;
        /* browsers send the ASCII serialisation without a trailing "/";
         * compare as the entries were stored: lower case */
        n = strlen(origin);
        for (size_t i = 0; i < pol->n; i++)
                if (strlen(pol->list[i]) == n &&
                    strncasecmp(pol->list[i], origin, n) == 0)
                        return 1;
        return 0;
}
