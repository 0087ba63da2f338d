/*
 * A minimal HTTP/1.1 server on its own thread, for the engine's /metrics,
 * /healthz and /readyz. One request per connection (Connection: close);
 * requests are capped at 8 KiB and 2 s, answers at 10 s. Sockets never
 * block: a client that stalls delays no other, and past 32 open clients
 * the oldest is closed to make room.
 */
#ifndef MLS_HTTPD_H
#define MLS_HTTPD_H

#include <stddef.h>

#include "common/buf.h"

typedef struct mls_httpd mls_httpd_t;

/*
 * Answers one GET/HEAD request for path (query string removed). Fills body
 * and sets *content_type (a static string); returns the HTTP status.
 * Runs on the server thread.
 */
typedef int (*mls_httpd_handler)(void *opaque, const char *path,
                                 struct mls_buf *body,
                                 const char **content_type);

/*
 * Binds host:port (port 0 picks a free one) and starts the thread. Returns
 * NULL with the reason (naming the address) in errstr.
 */
mls_httpd_t *mls_httpd_start(const char *host, int port,
                             mls_httpd_handler handler, void *opaque,
                             char *errstr, size_t errstr_size);
/* The bound port. */
int mls_httpd_port(const mls_httpd_t *h);
/*
 * Whether the request head in req[0..len) is complete (ends in a blank
 * line, CRLF or bare LF), given that req[0..from) was not: only the new
 * bytes are scanned, so a client that sends its request a byte at a time
 * costs linear work, not quadratic.
 */
int mls_httpd_head_complete(const char *req, size_t from, size_t len);
/*
 * Reads the request line at the start of req (NUL-terminated): a GET or
 * HEAD of a path (its query string dropped) returns 0 with the path in
 * path[0..path_size) and *head_only set; returns 400 when there is no
 * method or path, or the path does not fit, and 405 for other methods.
 */
int mls_httpd_request_line(const char *req, char *path, size_t path_size,
                           int *head_only);
/* Stops the thread, closes the socket and frees h. */
void mls_httpd_stop(mls_httpd_t *h);

#endif
