/* Parses redis://[[user]:password@]host[:port][/db] URLs. The user and
 * password are percent-decoded (RFC 3986): %40 for '@', %2F for '/'. */
#ifndef MLS_REDIS_URL_H
#define MLS_REDIS_URL_H

#include <stddef.h>

struct mls_redis_url {
        char host[256];
        int port;
        char user[128];
        char password[256];
        int db;
};

/* Returns 0, or -1 with the reason in errstr (the password is never
 * copied into errstr). */
int mls_redis_url_parse(const char *url, struct mls_redis_url *out,
                        char *errstr, size_t errstr_size);

/* The AUTH command for u's credentials in argv, with the user (Redis 6
 * ACLs) when u names one: its argument count, 0 when u has no password. */
int mls_redis_url_auth(const struct mls_redis_url *u, const char *argv[3]);

#endif
