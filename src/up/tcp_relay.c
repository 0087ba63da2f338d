#include "up/tcp_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#define MAX_PAIRS 256
#define CHUNK 65536

/* One relayed connection: bytes read from one side are written to the
 * other before more are read (backpressure through the kernel buffers). */
struct pair {
        int fd[2];    /* client, upstream */
        char *buf[2]; /* data read from fd[i], to write to fd[!i] */
        size_t len[2], off[2];
};

struct mls_tcp_relay {
        int lfd, port;
        int wake[2];
        char uhost[256], uport[16];
        pthread_t thread;
        struct pair pairs[MAX_PAIRS];
        int npairs;
};

static void pair_close(struct pair *p)
{
        for (int i = 0; i < 2; i++) {
                close(p->fd[i]);
                free(p->buf[i]);
        }
}

static int connect_upstream(mls_tcp_relay_t *r)
{
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM};
        struct addrinfo *ai;
        int fd = -1, one = 1;

        if (getaddrinfo(r->uhost, r->uport, &hints, &ai) != 0)
                return -1;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                close(fd);
                fd = -1;
        }
        freeaddrinfo(ai);
        if (fd >= 0)
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}

static void accept_one(mls_tcp_relay_t *r)
{
        int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC), u, one = 1;
        struct pair *p;

        if (c < 0)
                return;
        if (r->npairs == MAX_PAIRS || (u = connect_upstream(r)) < 0) {
                mls_warn("relay: cannot take a connection to %s:%s", r->uhost,
                         r->uport);
                close(c);
                return;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        p = &r->pairs[r->npairs++];
        memset(p, 0, sizeof(*p));
        p->fd[0] = c;
        p->fd[1] = u;
        p->buf[0] = malloc(CHUNK);
        p->buf[1] = malloc(CHUNK);
        if (!p->buf[0] || !p->buf[1]) {
                pair_close(p);
                r->npairs--;
        }
}

/* Moves data for one pair; returns -1 when either side is finished. */
static int pump(struct pair *p, const struct pollfd *pf)
{
        for (int i = 0; i < 2; i++) {
                int o = !i;
                if (p->len[i] == 0 && (pf[i].revents & (POLLIN | POLLHUP))) {
                        ssize_t n = recv(p->fd[i], p->buf[i], CHUNK, 0);
                        if (n <= 0)
                                return -1;
                        p->len[i] = (size_t)n;
                        p->off[i] = 0;
                }
                if (p->len[i] > 0) {
                        ssize_t n = send(p->fd[o], p->buf[i] + p->off[i],
                                         p->len[i] - p->off[i],
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n < 0 && errno != EAGAIN && errno != EINTR)
                                return -1;
                        if (n > 0) {
                                p->off[i] += (size_t)n;
                                if (p->off[i] == p->len[i])
                                        p->len[i] = 0;
                        }
                }
                if (pf[i].revents & (POLLERR | POLLNVAL))
                        return -1;
        }
        return 0;
}

static void *run(void *arg)
{
        mls_tcp_relay_t *r = arg;
        struct pollfd pf[2 + 2 * MAX_PAIRS];

        for (;;) {
                int n = 0;
                pf[n++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
                pf[n++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
                for (int i = 0; i < r->npairs; i++) {
                        struct pair *p = &r->pairs[i];
                        for (int s = 0; s < 2; s++) {
                                short ev = 0;
                                if (p->len[s] == 0)
                                        ev |= POLLIN;
                                if (p->len[!s] > 0)
                                        ev |= POLLOUT;
                                pf[n++] = (struct pollfd){.fd = p->fd[s],
                                                          .events = ev};
                        }
                }
                if (poll(pf, (nfds_t)n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pf[0].revents)
                        break;
                for (int i = r->npairs - 1; i >= 0; i--) {
                        if (pump(&r->pairs[i], &pf[2 + 2 * i]) < 0) {
                                pair_close(&r->pairs[i]);
                                r->pairs[i] = r->pairs[--r->npairs];
                        }
                }
                if (pf[1].revents & POLLIN)
                        accept_one(r);
        }
        return NULL;
}

mls_tcp_relay_t *mls_tcp_relay_start(const char *host, int port,
                                     const char *upstream, char *errstr,
                                     size_t errstr_size)
{
        mls_tcp_relay_t *r = calloc(1, sizeof(*r));
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port)};
        const char *colon = strrchr(upstream, ':');
        int one = 1;

        if (!r || !colon || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
                snprintf(errstr, errstr_size, "relay: bad address %s or %s",
                         host, upstream);
                free(r);
                return NULL;
        }
        snprintf(r->uhost, sizeof(r->uhost), "%.*s", (int)(colon - upstream),
                 upstream);
        snprintf(r->uport, sizeof(r->uport), "%s", colon + 1);
        r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (r->lfd < 0 ||
            bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(r->lfd, 64) < 0 || pipe(r->wake) < 0) {
                snprintf(errstr, errstr_size, "cannot listen on %s:%d: %s",
                         host, port, strerror(errno));
                if (r->lfd >= 0)
                        close(r->lfd);
                free(r);
                return NULL;
        }
        {
                struct sockaddr_in bound;
                socklen_t bl = sizeof(bound);
                getsockname(r->lfd, (struct sockaddr *)&bound, &bl);
                r->port = ntohs(bound.sin_port);
        }
        if (pthread_create(&r->thread, NULL, run, r) != 0) {
                snprintf(errstr, errstr_size, "relay: cannot start a thread");
                close(r->lfd);
                close(r->wake[0]);
                close(r->wake[1]);
                free(r);
                return NULL;
        }
        return r;
}

int mls_tcp_relay_port(const mls_tcp_relay_t *r)
{
        return r->port;
}

void mls_tcp_relay_stop(mls_tcp_relay_t *r)
{
        if (!r)
                return;
        if (write(r->wake[1], "x", 1) < 0)
                mls_warn("relay: cannot wake its thread");
        pthread_join(r->thread, NULL);
        for (int i = 0; i < r->npairs; i++)
                pair_close(&r->pairs[i]);
        close(r->lfd);
        close(r->wake[0]);
        close(r->wake[1]);
        free(r);
}
