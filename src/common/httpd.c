#include "common/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define REQ_MAX 8192
#define REQ_TIMEOUT_MS 2000

struct mls_httpd {
        int fd;
        int wake[2];
        int port;
        pthread_t thread;
        mls_httpd_handler handler;
        void *opaque;
};

static const char *reason(int status)
{
        switch (status) {
        case 200:
                return "OK";
        case 400:
                return "Bad Request";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 503:
                return "Service Unavailable";
        default:
                return "Error";
        }
}

static void write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return;
                p += w;
                n -= (size_t)w;
        }
}

/* Reads until the end of the headers; returns the length or -1. */
static int read_request(int fd, char *req, size_t cap)
{
        size_t len = 0;
        int64_t deadline = mls_clock_mono_ns() + REQ_TIMEOUT_MS * 1000000LL;

        while (len < cap - 1) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int64_t left = (deadline - mls_clock_mono_ns()) / 1000000;
                ssize_t r;
                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return -1;
                r = recv(fd, req + len, cap - 1 - len, 0);
                if (r <= 0)
                        return -1;
                len += (size_t)r;
                req[len] = '\0';
                if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
                        return (int)len;
        }
        return -1;
}

static void serve(struct mls_httpd *h, int fd)
{
        char req[REQ_MAX], head[256], path[1024];
        struct mls_buf body;
        const char *ctype = "text/plain; charset=utf-8";
        int status, head_only = 0, n;

        mls_buf_init(&body, 64 << 20);
        if (read_request(fd, req, sizeof(req)) < 0) {
                status = 400;
                mls_buf_puts(&body, "bad request\n");
        } else if (sscanf(req, "%*s %1023s", path) != 1) {
                status = 400;
                mls_buf_puts(&body, "bad request\n");
        } else if (strncmp(req, "GET ", 4) != 0 &&
                   strncmp(req, "HEAD ", 5) != 0) {
                status = 405;
                mls_buf_puts(&body, "only GET and HEAD\n");
        } else {
                char *q = strchr(path, '?');
                if (q)
                        *q = '\0';
                head_only = req[0] == 'H';
                status = h->handler(h->opaque, path, &body, &ctype);
        }
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, reason(status), ctype, body.len);
        write_all(fd, head, (size_t)n);
        if (!head_only)
                write_all(fd, body.data ? body.data : "", body.len);
        mls_buf_free(&body);
}

static void *run(void *arg)
{
        struct mls_httpd *h = arg;

        for (;;) {
                struct pollfd p[2] = {{.fd = h->fd, .events = POLLIN},
                                      {.fd = h->wake[0], .events = POLLIN}};
                int c;
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents)
                        break;
                c = accept(h->fd, NULL, NULL);
                if (c < 0)
                        continue;
                serve(h, c);
                close(c);
        }
        return NULL;
}

mls_httpd_t *mls_httpd_start(const char *host, int port,
                             mls_httpd_handler handler, void *opaque,
                             char *errstr, size_t errstr_size)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct mls_httpd *h;
        char portstr[16];
        int one = 1, rc;

        h = calloc(1, sizeof(*h));
        if (!h) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        h->fd = -1;
        h->handler = handler;
        h->opaque = opaque;
        snprintf(portstr, sizeof(portstr), "%d", port);
        rc = getaddrinfo(host, portstr, &hints, &ai);
        if (rc != 0) {
                snprintf(errstr, errstr_size, "cannot resolve %s: %s", host,
                         gai_strerror(rc));
                goto fail;
        }
        h->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (h->fd < 0)
                goto fail_errno;
        setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(h->fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(h->fd, 64) < 0)
                goto fail_errno;
        getsockname(h->fd, (struct sockaddr *)&ss, &sl);
        h->port = ntohs(ss.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                : ((struct sockaddr_in *)&ss)->sin_port);
        if (pipe(h->wake) < 0)
                goto fail_errno;
        if (pthread_create(&h->thread, NULL, run, h) != 0) {
                close(h->wake[0]);
                close(h->wake[1]);
                goto fail_errno;
        }
        freeaddrinfo(ai);
        return h;
fail_errno:
        snprintf(errstr, errstr_size, "cannot listen on %s:%d: %s", host, port,
                 strerror(errno));
fail:
        if (ai)
                freeaddrinfo(ai);
        if (h->fd >= 0)
                close(h->fd);
        free(h);
        return NULL;
}

int mls_httpd_port(const mls_httpd_t *h)
{
        return h->port;
}

void mls_httpd_stop(mls_httpd_t *h)
{
        if (!h)
                return;
        if (write(h->wake[1], "x", 1) < 0)
                mls_warn("httpd: cannot wake the server thread");
        pthread_join(h->thread, NULL);
        close(h->wake[0]);
        close(h->wake[1]);
        close(h->fd);
        free(h);
}
