#include "common/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#define READ_TIMEOUT_MS 2000
#define WRITE_TIMEOUT_MS 10000
#define MAX_CONNS 32
#define BODY_MAX (64 << 20)

/* One client: reading its request, then writing the answer. */
struct conn {
        int fd;
        int writing;
        int64_t opened, deadline; /* monotonic ns */
        size_t rlen, sent;
        struct mls_buf out; /* head and body */
        char req[REQ_MAX];
};

struct mls_httpd {
        int fd;
        int wake[2];
        int port;
        pthread_t thread;
        mls_httpd_handler handler;
        void *opaque;
        struct conn *conns[MAX_CONNS];
        int nconns;
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

static int is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int mls_httpd_request_line(const char *req, char *path, size_t path_size,
                           int *head_only)
{
        const char *m = req, *u;
        size_t mlen, ulen;

        while (*req && !is_space(*req))
                req++;
        mlen = (size_t)(req - m);
        while (*req == ' ' || *req == '\t')
                req++;
        u = req;
        while (*req && !is_space(*req) && *req != '?')
                req++;
        ulen = (size_t)(req - u);
        if (!mlen || !ulen || ulen >= path_size)
                return 400;
        *head_only = mlen == 4 && memcmp(m, "HEAD", 4) == 0;
        if (!*head_only && !(mlen == 3 && memcmp(m, "GET", 3) == 0))
                return 405;
        memcpy(path, u, ulen);
        path[ulen] = '\0';
        return 0;
}

/* Builds the whole answer to the request in c->req into c->out. */
static void answer(struct mls_httpd *h, struct conn *c, int complete)
{
        struct mls_buf body;
        const char *ctype = "text/plain; charset=utf-8";
        char path[1024];
        int status = 400, head_only = 0;

        mls_buf_init(&body, BODY_MAX);
        if (complete)
                status = mls_httpd_request_line(c->req, path, sizeof(path),
                                                &head_only);
        if (status == 400)
                mls_buf_puts(&body, "bad request\n");
        else if (status == 405)
                mls_buf_puts(&body, "only GET and HEAD\n");
        else
                status = h->handler(h->opaque, path, &body, &ctype);
        mls_buf_printf(&c->out,
                       "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                       status, reason(status), ctype, body.len);
        if (!head_only && body.len)
                mls_buf_append(&c->out, body.data, body.len);
        mls_buf_free(&body);
        c->writing = 1;
        c->deadline = mls_clock_mono_ns() + WRITE_TIMEOUT_MS * 1000000LL;
}

int mls_httpd_head_complete(const char *req, size_t from, size_t len)
{
        /* a blank line ends the head. Its last line feed is among the
         * bytes the last read added (an earlier one would have ended the
         * head then); the bytes before it may be older. */
        for (size_t i = from; i < len; i++) {
                if (req[i] != '\n' || i == 0)
                        continue;
                if (req[i - 1] == '\n')
                        return 1;
                if (i >= 3 && req[i - 1] == '\r' && req[i - 2] == '\n' &&
                    req[i - 3] == '\r')
                        return 1;
        }
        return 0;
}

static void conn_close(struct mls_httpd *h, int i)
{
        struct conn *c = h->conns[i];

        close(c->fd);
        mls_buf_free(&c->out);
        free(c);
        h->conns[i] = h->conns[--h->nconns];
}

/* Reads what the client sent; answers once the headers are complete (or
 * the request is too large). Returns -1 when the connection is done. */
static int conn_read(struct mls_httpd *h, struct conn *c)
{
        ssize_t r = recv(c->fd, c->req + c->rlen, REQ_MAX - 1 - c->rlen,
                         MSG_DONTWAIT);

        if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (r <= 0)
                return -1;
        c->rlen += (size_t)r;
        c->req[c->rlen] = '\0';
        if (mls_httpd_head_complete(c->req, c->rlen - (size_t)r, c->rlen))
                answer(h, c, 1);
        else if (c->rlen == REQ_MAX - 1)
                answer(h, c, 0);
        return 0;
}

/* Writes as much of the answer as the socket takes, without blocking.
 * Returns -1 when the connection is done. */
static int conn_write(struct conn *c)
{
        while (c->sent < c->out.len) {
                ssize_t w =
                        send(c->fd, c->out.data + c->sent, c->out.len - c->sent,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN)
                        return 0;
                if (w <= 0)
                        return -1;
                c->sent += (size_t)w;
        }
        return -1;
}

static void accept_one(struct mls_httpd *h)
{
        struct conn *c;
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
                return;
        if (h->nconns == MAX_CONNS) {
                /* full: the oldest client makes room, so a prober is
                 * always answered however many clients stall */
                int oldest = 0;
                for (int i = 1; i < h->nconns; i++)
                        if (h->conns[i]->opened < h->conns[oldest]->opened)
                                oldest = i;
                conn_close(h, oldest);
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return;
        }
        c->fd = fd;
        c->opened = mls_clock_mono_ns();
        c->deadline = c->opened + READ_TIMEOUT_MS * 1000000LL;
        mls_buf_init(&c->out, BODY_MAX + 512);
        h->conns[h->nconns++] = c;
}

/*
 * Serves any number of clients at once without blocking on any of them:
 * one that never sends its request, or never reads the answer, is closed
 * at its deadline and delays nobody else meanwhile.
 */
static void *run(void *arg)
{
        struct mls_httpd *h = arg;
        struct pollfd p[MAX_CONNS + 2];

        for (;;) {
                int64_t now = mls_clock_mono_ns(), next = now + 1000000000LL;
                int n = h->nconns, timeout = -1; /* no client: no clock */
                p[0] = (struct pollfd){.fd = h->fd, .events = POLLIN};
                p[1] = (struct pollfd){.fd = h->wake[0], .events = POLLIN};
                for (int i = 0; i < n; i++) {
                        struct conn *c = h->conns[i];
                        p[i + 2] = (struct pollfd){
                                .fd = c->fd,
                                .events = c->writing ? POLLOUT : POLLIN};
                        if (c->deadline < next)
                                next = c->deadline;
                }
                if (n)
                        timeout = next > now ? (int)((next - now) / 1000000) + 1
                                             : 0;
                if (poll(p, (nfds_t)n + 2, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents)
                        break;
                now = mls_clock_mono_ns();
                /* backwards: conn_close moves the last one into slot i */
                for (int i = n - 1; i >= 0; i--) {
                        struct conn *c = h->conns[i];
                        int done = 0;
                        if (p[i + 2].revents & (POLLERR | POLLNVAL))
                                done = 1;
                        else if (p[i + 2].revents && !c->writing)
                                done = conn_read(h, c) < 0;
                        if (!done && c->writing &&
                            (p[i + 2].revents & (POLLOUT | POLLHUP)))
                                done = conn_write(c) < 0;
                        if (done || now >= c->deadline)
                                conn_close(h, i);
                }
                if (p[0].revents & POLLIN)
                        accept_one(h);
        }
        while (h->nconns)
                conn_close(h, h->nconns - 1);
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
            listen(h->fd, 64) < 0 || fcntl(h->fd, F_SETFL, O_NONBLOCK) < 0)
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
        pthread_setname_np(h->thread, "mls:metrics"); /* top -H, /proc */
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
