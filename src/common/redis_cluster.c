#include "common/redis_cluster.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/redis_replies.h"

#define NONE SIZE_MAX
/* A connection's pipeline goes to the socket in pieces of this size, so
 * hiredis' output buffer never holds more than one piece and a command. */
#define WRITE_CHUNK ((size_t)1 << 20)
#define MAX_NODES 4096
/* The most bytes a reply may leave unparsed in a reader. hiredis parses
 * an array's elements as they come and drops their bytes, so even a slot
 * map of 16,384 ranges (a few MB) leaves little unparsed at a time; what
 * its objects take is bounded by common/redis_replies.c. A line that
 * never ends is the case this bounds, and hiredis scans an unfinished
 * line from its start on each read: kept small, that costs milliseconds. */
#define REPLY_MAX_BYTES ((size_t)1 << 20)
/* A connection failure that took this long was a timeout (see conn_lost()):
 * a closed or refused connection fails at once. */
#define SLOW_FAILURE_MS 1000

/* ------------------------------------------------------------------ slots */

/* CRC16-CCITT as Redis Cluster uses it (XMODEM: polynomial 0x1021, initial
 * value 0, no reflection), a nibble at a time. */
static const uint16_t crc16_nibble[16] = {
        0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
        0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
};

static uint16_t crc16(const char *s, size_t len)
{
        uint16_t crc = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned b = (unsigned char)s[i];
                crc = (uint16_t)(crc << 4) ^
                      crc16_nibble[((crc >> 12) ^ (b >> 4)) & 0xf];
                crc = (uint16_t)(crc << 4) ^
                      crc16_nibble[((crc >> 12) ^ (b & 0xf)) & 0xf];
        }
        return crc;
}

unsigned mls_cluster_slot(const char *key, size_t len)
{
        const char *open = len ? memchr(key, '{', len) : NULL;

        if (open) {
                size_t rest = len - (size_t)(open - key) - 1;
                const char *close = rest ? memchr(open + 1, '}', rest) : NULL;
                if (close && close > open + 1) {
                        key = open + 1;
                        len = (size_t)(close - open - 1);
                }
        }
        return crc16(key, len) & (MLS_CLUSTER_SLOTS - 1);
}

/* --------------------------------------------------------------- slot map */

struct map_node {
        struct mls_cluster_node n;
        unsigned nslots; /* slots it owns: a master when > 0 */
};

struct mls_cluster_map {
        struct map_node *nodes;
        size_t nnodes, cap;
        unsigned covered;
        int16_t owner[MLS_CLUSTER_SLOTS]; /* index into nodes, or -1 */
};

static mls_cluster_map_t *map_new(void)
{
        mls_cluster_map_t *m = calloc(1, sizeof(*m));

        if (m)
                memset(m->owner, 0xff, sizeof(m->owner));
        return m;
}

void mls_cluster_map_free(mls_cluster_map_t *m)
{
        if (!m)
                return;
        free(m->nodes);
        free(m);
}

/* The index of host:port, added when new. Returns -1 when out of memory
 * or past MAX_NODES. */
static int map_node_add(mls_cluster_map_t *m, const struct mls_cluster_node *n)
{
        for (size_t i = 0; i < m->nnodes; i++) {
                struct mls_cluster_node *o = &m->nodes[i].n;
                if (o->port == n->port && strcmp(o->host, n->host) == 0) {
                        if (!o->id[0])
                                memcpy(o->id, n->id, sizeof(o->id));
                        return (int)i;
                }
        }
        if (m->nnodes >= MAX_NODES)
                return -1;
        if (m->nnodes == m->cap) {
                size_t ncap = m->cap ? m->cap * 2 : 8;
                struct map_node *p = realloc(m->nodes, ncap * sizeof(*p));
                if (!p)
                        return -1;
                m->nodes = p;
                m->cap = ncap;
        }
        m->nodes[m->nnodes].n = *n;
        m->nodes[m->nnodes].nslots = 0;
        return (int)m->nnodes++;
}

static void map_assign(mls_cluster_map_t *m, unsigned slot, int idx)
{
        int old = m->owner[slot];

        if (old == idx)
                return;
        if (old >= 0)
                m->nodes[old].nslots--;
        else
                m->covered++;
        m->owner[slot] = (int16_t)idx;
        m->nodes[idx].nslots++;
}

/* Reads one node entry [endpoint, port, id?, ...] into *out. Returns 0,
 * or -1 with what is wrong in why. */
static int parse_node(const redisReply *r, const char *asked_host,
                      struct mls_cluster_node *out, char *why, size_t why_size)
{
        const redisReply *h, *port, *id;

        memset(out, 0, sizeof(*out));
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
                snprintf(why, why_size, "a node is not [host, port, ...]");
                return -1;
        }
        h = r->element[0];
        port = r->element[1];
        if (h->type == REDIS_REPLY_NIL ||
            (h->type == REDIS_REPLY_STRING &&
             (h->len == 0 || (h->len == 1 && h->str[0] == '?')))) {
                if (!asked_host || !asked_host[0] ||
                    strlen(asked_host) >= sizeof(out->host)) {
                        snprintf(why, why_size,
                                 "a node's endpoint is unknown and no host "
                                 "to fall back on");
                        return -1;
                }
                strcpy(out->host, asked_host);
        } else if (h->type == REDIS_REPLY_STRING) {
                if (h->len >= sizeof(out->host) || memchr(h->str, 0, h->len)) {
                        snprintf(why, why_size, "a node's host is malformed");
                        return -1;
                }
                memcpy(out->host, h->str, h->len);
        } else {
                snprintf(why, why_size, "a node's host is not a string");
                return -1;
        }
        if (port->type != REDIS_REPLY_INTEGER || port->integer < 1 ||
            port->integer > 65535) {
                snprintf(why, why_size, "node %.64s: the port is not 1..65535",
                         out->host);
                return -1;
        }
        out->port = (int)port->integer;
        if (r->elements >= 3) {
                id = r->element[2];
                if (id->type == REDIS_REPLY_STRING &&
                    id->len < sizeof(out->id) && !memchr(id->str, 0, id->len))
                        memcpy(out->id, id->str, id->len);
        }
        return 0;
}

mls_cluster_map_t *mls_cluster_map_from_reply(const struct redisReply *r,
                                              const char *asked_host,
                                              char *errstr, size_t errstr_size)
{
        mls_cluster_map_t *m;
        char why[200];
        size_t i;

        if (!r) {
                snprintf(errstr, errstr_size, "CLUSTER SLOTS: no reply");
                return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "CLUSTER SLOTS: %.*s",
                         (int)(r->len < 200 ? r->len : 200), r->str);
                return NULL;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
                snprintf(errstr, errstr_size,
                         "CLUSTER SLOTS: the reply is not an array");
                return NULL;
        }
        m = map_new();
        if (!m) {
                snprintf(errstr, errstr_size, "CLUSTER SLOTS: out of memory");
                return NULL;
        }
        for (i = 0; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                struct mls_cluster_node n;
                long long lo, hi;
                int idx;

                if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
                        snprintf(why, sizeof(why),
                                 "not [start, end, master, replicas...]");
                        goto bad;
                }
                if (e->element[0]->type != REDIS_REPLY_INTEGER ||
                    e->element[1]->type != REDIS_REPLY_INTEGER) {
                        snprintf(why, sizeof(why),
                                 "the slot range is not two integers");
                        goto bad;
                }
                lo = e->element[0]->integer;
                hi = e->element[1]->integer;
                if (lo < 0 || hi >= MLS_CLUSTER_SLOTS || lo > hi) {
                        snprintf(why, sizeof(why),
                                 "slot range %lld-%lld is not within 0-16383",
                                 lo, hi);
                        goto bad;
                }
                if (parse_node(e->element[2], asked_host, &n, why,
                               sizeof(why)) < 0)
                        goto bad;
                idx = map_node_add(m, &n);
                if (idx < 0)
                        goto oom;
                for (long long s = lo; s <= hi; s++) {
                        if (m->owner[s] >= 0 && m->owner[s] != idx) {
                                snprintf(why, sizeof(why),
                                         "slot %lld has two masters", s);
                                goto bad;
                        }
                        map_assign(m, (unsigned)s, idx);
                }
                for (size_t j = 3; j < e->elements; j++) {
                        if (parse_node(e->element[j], asked_host, &n, why,
                                       sizeof(why)) < 0)
                                goto bad;
                        if (map_node_add(m, &n) < 0)
                                goto oom;
                }
        }
        return m;
bad:
        snprintf(errstr, errstr_size, "CLUSTER SLOTS: entry %zu: %s", i + 1,
                 why);
        mls_cluster_map_free(m);
        return NULL;
oom:
        snprintf(errstr, errstr_size,
                 "CLUSTER SLOTS: out of memory or more than %d nodes",
                 MAX_NODES);
        mls_cluster_map_free(m);
        return NULL;
}

const struct mls_cluster_node *mls_cluster_map_owner(const mls_cluster_map_t *m,
                                                     unsigned slot)
{
        if (slot >= MLS_CLUSTER_SLOTS || m->owner[slot] < 0)
                return NULL;
        return &m->nodes[m->owner[slot]].n;
}

unsigned mls_cluster_map_covered(const mls_cluster_map_t *m)
{
        return m->covered;
}

size_t mls_cluster_map_nmasters(const mls_cluster_map_t *m)
{
        size_t n = 0;

        for (size_t i = 0; i < m->nnodes; i++)
                n += m->nodes[i].nslots > 0;
        return n;
}

const struct mls_cluster_node *
mls_cluster_map_master(const mls_cluster_map_t *m, size_t i)
{
        for (size_t j = 0; j < m->nnodes; j++)
                if (m->nodes[j].nslots > 0 && i-- == 0)
                        return &m->nodes[j].n;
        return NULL;
}

size_t mls_cluster_map_nnodes(const mls_cluster_map_t *m)
{
        return m->nnodes;
}

const struct mls_cluster_node *mls_cluster_map_node(const mls_cluster_map_t *m,
                                                    size_t i)
{
        size_t nm = mls_cluster_map_nmasters(m);

        if (i < nm)
                return mls_cluster_map_master(m, i);
        i -= nm;
        for (size_t j = 0; j < m->nnodes; j++)
                if (m->nodes[j].nslots == 0 && i-- == 0)
                        return &m->nodes[j].n;
        return NULL;
}

int mls_cluster_map_set_owner(mls_cluster_map_t *m, unsigned slot,
                              const char *host, int port)
{
        struct mls_cluster_node n;
        int idx;

        if (slot >= MLS_CLUSTER_SLOTS || strlen(host) >= sizeof(n.host))
                return -1;
        memset(&n, 0, sizeof(n));
        strcpy(n.host, host);
        n.port = port;
        idx = map_node_add(m, &n);
        if (idx < 0)
                return -1;
        map_assign(m, slot, idx);
        return 0;
}

/* -------------------------------------------------------------- redirects */

/* Reads a decimal number of 1..10 digits at *p (advancing it). */
static int read_uint(const char **p, const char *end, unsigned long *out)
{
        unsigned long v = 0;
        const char *s = *p;

        while (*p < end && **p >= '0' && **p <= '9' && *p - s < 10)
                v = v * 10 + (unsigned long)(*(*p)++ - '0');
        if (*p == s)
                return -1;
        *out = v;
        return 0;
}

int mls_cluster_redirect_parse(const char *s, size_t len,
                               struct mls_cluster_redirect *out)
{
        const char *p, *end = s + len, *colon, *h;
        unsigned long slot, port;
        size_t hlen;

        memset(out, 0, sizeof(*out));
        if (len > 6 && memcmp(s, "MOVED ", 6) == 0) {
                out->kind = MLS_CLUSTER_MOVED;
                p = s + 6;
        } else if (len > 4 && memcmp(s, "ASK ", 4) == 0) {
                out->kind = MLS_CLUSTER_ASK;
                p = s + 4;
        } else {
                return -1;
        }
        if (read_uint(&p, end, &slot) < 0 || slot >= MLS_CLUSTER_SLOTS ||
            p >= end || *p != ' ')
                goto bad;
        p++;
        colon = NULL;
        for (const char *q = p; q < end; q++)
                if (*q == ':')
                        colon = q;
        if (!colon)
                goto bad;
        h = p;
        hlen = (size_t)(colon - p);
        if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
                h++;
                hlen -= 2;
        }
        if (hlen >= sizeof(out->host) || memchr(h, ' ', hlen) ||
            memchr(h, 0, hlen))
                goto bad;
        p = colon + 1;
        if (read_uint(&p, end, &port) < 0 || p != end || port < 1 ||
            port > 65535)
                goto bad;
        memcpy(out->host, h, hlen);
        out->host[hlen] = '\0';
        out->slot = (unsigned)slot;
        out->port = (int)port;
        return 0;
bad:
        memset(out, 0, sizeof(*out));
        return -1;
}

/* ------------------------------------------------------------------ seeds */

int mls_cluster_seeds_parse(const char *url, struct mls_redis_url **out,
                            size_t *n, char *errstr, size_t errstr_size)
{
        const char *p, *slash, *hend, *at, *hosts, *h;
        struct mls_redis_url *v = NULL;
        size_t count = 0, cred_len, tail_len;
        char *one = NULL;

        *out = NULL;
        *n = 0;
        if (strncmp(url, "redis://", 8) != 0) {
                snprintf(errstr, errstr_size,
                         "REDIS_URL must start with redis:// "
                         "(redis://[:password@]host:port[,host:port...]/0)");
                return -1;
        }
        p = url + 8;
        slash = strchr(p, '/');
        hend = slash ? slash : p + strlen(p);
        at = memchr(p, '@', (size_t)(hend - p));
        hosts = at ? at + 1 : p;
        cred_len = (size_t)(hosts - p);
        tail_len = strlen(hend);
        for (h = hosts; h <= hend; h++)
                count += h == hend || *h == ',';
        if (count > MLS_CLUSTER_MAX_SEEDS) {
                snprintf(errstr, errstr_size,
                         "REDIS_URL names %zu nodes; at most %d", count,
                         MLS_CLUSTER_MAX_SEEDS);
                return -1;
        }
        v = calloc(count, sizeof(*v));
        one = malloc(8 + (size_t)(hend - p) + tail_len + 1);
        if (!v || !one) {
                snprintf(errstr, errstr_size, "REDIS_URL: out of memory");
                goto fail;
        }
        h = hosts;
        for (size_t i = 0; i < count; i++) {
                const char *comma = memchr(h, ',', (size_t)(hend - h));
                const char *e = comma ? comma : hend;
                char why[200];

                if (e == h) {
                        snprintf(errstr, errstr_size,
                                 "REDIS_URL: node %zu of the list is empty "
                                 "(redis://host:port,host:port/0)",
                                 i + 1);
                        goto fail;
                }
                memcpy(one, "redis://", 8);
                memcpy(one + 8, p, cred_len);
                memcpy(one + 8 + cred_len, h, (size_t)(e - h));
                memcpy(one + 8 + cred_len + (size_t)(e - h), hend,
                       tail_len + 1);
                if (mls_redis_url_parse(one, &v[i], why, sizeof(why)) < 0) {
                        snprintf(errstr, errstr_size, "%s (node %zu: %.*s)",
                                 why, i + 1, (int)(e - h), h);
                        goto fail;
                }
                if (v[i].db != 0) {
                        snprintf(errstr, errstr_size,
                                 "REDIS_URL: a Redis Cluster has database 0 "
                                 "only, not %d",
                                 v[i].db);
                        goto fail;
                }
                h = e + 1;
        }
        /* one held the password */
        memset(one, 0, 8 + (size_t)(hend - p) + tail_len + 1);
        free(one);
        *out = v;
        *n = count;
        return 0;
fail:
        if (one) {
                memset(one, 0, 8 + (size_t)(hend - p) + tail_len + 1);
                free(one);
        }
        free(v);
        return -1;
}

/* -------------------------------------------------------------- publisher */

/* One queued SPUBLISH. */
struct entry {
        size_t off, len; /* its RESP bytes in p->cmds */
        size_t next;     /* next entry for the same connection this round */
        uint16_t slot;
        uint8_t done;   /* acknowledged */
        uint8_t asking; /* send ASKING first, to ask_conn */
        int ask_conn;   /* connection an ASK named, or -1: the slot's owner */
};

struct conn {
        char host[256];
        int port;
        redisContext *c;
        size_t head, tail, count; /* entries to send this round */
        int tried;                /* by the current map refresh */
        /* timed out in this connect or flush, and why (conn_lost()) */
        int failed;
        char why[160];
};

struct mls_cluster_pub {
        struct mls_redis_url *seeds;
        size_t nseeds;
        mls_cluster_map_t *map;
        int refresh_due; /* fetch the map before the next batch */
        int up; /* a connect or flush succeeded, and no flush failed since */
        struct conn *conns;
        size_t nconns, cap_conns;
        struct mls_buf cmds; /* the batch's commands in RESP */
        struct entry *ents;
        size_t nents, cap_ents;
        int failed; /* an add failed since the last flush */
        struct mls_cluster_pub_stats st;
        char err[256]; /* the first error of the current round */
        /* every connection's reader's (connections move when added) */
        struct mls_redis_replies_bound bound;
};

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Keeps the first error of a round. */
__attribute__((format(printf, 2, 3))) static void
set_err(struct mls_cluster_pub *p, const char *fmt, ...)
{
        va_list ap;

        if (p->err[0])
                return;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
}

mls_cluster_pub_t *mls_cluster_pub_new(const struct mls_redis_url *seeds,
                                       size_t nseeds, size_t batch_limit)
{
        struct mls_cluster_pub *p;

        if (!nseeds)
                return NULL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->seeds = calloc(nseeds, sizeof(*seeds));
        if (!p->seeds) {
                free(p);
                return NULL;
        }
        for (size_t i = 0; i < nseeds; i++) {
                p->seeds[i] = seeds[i];
                memcpy(p->seeds[i].user, seeds[0].user, sizeof(seeds->user));
                memcpy(p->seeds[i].password, seeds[0].password,
                       sizeof(seeds->password));
        }
        p->nseeds = nseeds;
        p->bound.max_unparsed = REPLY_MAX_BYTES;
        mls_buf_init(&p->cmds, batch_limit ? batch_limit : (size_t)1 << 30);
        return p;
}

static void conn_drop(struct mls_cluster_pub *p, size_t i)
{
        if (p->conns[i].c)
                redisFree(p->conns[i].c);
        p->conns[i].c = NULL;
}

/* Records that conns[i] failed, for why, and drops it. A failure that
 * took SLOW_FAILURE_MS or more since t0 (a node that gave no reply, a
 * connect that timed out) marks the node: it is not opened again until
 * the next connect or flush (clear_failed()), as trying it would cost the
 * timeout again. A connection closed or refused is tried again. */
static void conn_lost(struct mls_cluster_pub *p, size_t i, const char *why,
                      int64_t t0)
{
        struct conn *cn = &p->conns[i];

        p->st.conn_errors++;
        set_err(p, "redis %s:%d: %s", cn->host, cn->port, why);
        if (mls_clock_mono_ns() - t0 >= (int64_t)SLOW_FAILURE_MS * 1000000) {
                snprintf(cn->why, sizeof(cn->why), "%s", why);
                cn->failed = 1;
        }
        conn_drop(p, i);
}

static void clear_failed(struct mls_cluster_pub *p)
{
        for (size_t i = 0; i < p->nconns; i++)
                p->conns[i].failed = 0;
}

/* The index of the connection to host:port, added (unconnected) when new;
 * -1 when out of memory. */
static int conn_find(struct mls_cluster_pub *p, const char *host, int port)
{
        struct conn *c;

        for (size_t i = 0; i < p->nconns; i++)
                if (p->conns[i].port == port &&
                    strcmp(p->conns[i].host, host) == 0)
                        return (int)i;
        if (strlen(host) >= sizeof(c->host) || p->nconns >= MAX_NODES)
                return -1;
        if (p->nconns == p->cap_conns) {
                size_t ncap = p->cap_conns ? p->cap_conns * 2 : 8;
                c = realloc(p->conns, ncap * sizeof(*c));
                if (!c)
                        return -1;
                p->conns = c;
                p->cap_conns = ncap;
        }
        c = &p->conns[p->nconns];
        memset(c, 0, sizeof(*c));
        strcpy(c->host, host);
        c->port = port;
        c->head = c->tail = NONE;
        return (int)p->nconns++;
}

static int write_out(redisContext *c)
{
        int done = 0;

        while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                        return -1;
        return 0;
}

/* The next reply on c, bounded (mls_redis_get_reply); freed with
 * mls_redis_replies_free(). */
static int get_reply(struct mls_cluster_pub *p, redisContext *c,
                     redisReply **out)
{
        void *reply;

        if (mls_redis_get_reply(c, REPLY_MAX_BYTES, MLS_CLUSTER_IO_TIMEOUT_MS,
                                &p->bound.refused, &reply) < 0)
                return -1;
        *out = reply;
        return 0;
}

/* A command and its reply (NULL on failure, c->errstr saying why). */
static redisReply *command(struct mls_cluster_pub *p, redisContext *c, int argc,
                           const char **argv)
{
        redisReply *r;

        if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK ||
            get_reply(p, c, &r) < 0)
                return NULL;
        return r;
}

/* A command whose reply must not be an error: 0, or -1 with why it
 * failed in why. */
static int accepted(struct mls_cluster_pub *p, redisContext *c, int argc,
                    const char **argv, char *why, size_t why_size)
{
        redisReply *r = command(p, c, argc, argv);
        int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;

        if (!r)
                snprintf(why, why_size, "%s", c->errstr);
        else if (rc < 0)
                snprintf(why, why_size, "%s: %s", argv[0], r->str);
        if (r)
                mls_redis_replies_free(r);
        return rc;
}

/* Connects conns[i] unless it is connected, with AUTH when the URL has a
 * password, and has it answer a PING. Returns 0, or -1 with the error
 * recorded, at once when it failed already in this connect or flush: a
 * node that gave no reply would cost the timeout again. */
static int conn_open(struct mls_cluster_pub *p, size_t i)
{
        struct conn *cn = &p->conns[i];
        const struct mls_redis_url *u = &p->seeds[0];
        struct timeval tv = {
                .tv_sec = MLS_CLUSTER_CONNECT_TIMEOUT_MS / 1000,
                .tv_usec = MLS_CLUSTER_CONNECT_TIMEOUT_MS % 1000 * 1000,
        };
        static const char *ping[] = {"PING"};
        const char *auth[3];
        char why[sizeof(cn->why)];
        int64_t t0;
        int nauth;

        if (cn->c)
                return 0;
        if (cn->failed) {
                set_err(p, "redis %s:%d: %s", cn->host, cn->port, cn->why);
                return -1;
        }
        t0 = mls_clock_mono_ns();
        cn->c = redisConnectWithTimeout(cn->host, cn->port, tv);
        if (!cn->c || cn->c->err) {
                snprintf(why, sizeof(why), "%s",
                         cn->c ? cn->c->errstr : "out of memory");
                goto fail;
        }
        tv.tv_sec = MLS_CLUSTER_IO_TIMEOUT_MS / 1000;
        tv.tv_usec = MLS_CLUSTER_IO_TIMEOUT_MS % 1000 * 1000;
        redisSetTimeout(cn->c, tv);
        redisEnableKeepAlive(cn->c);
        mls_redis_replies_use(cn->c->reader, &p->bound);
        if ((nauth = mls_redis_url_auth(u, auth)) &&
            accepted(p, cn->c, nauth, auth, why, sizeof(why)) < 0)
                goto fail;
        /* the kernel completes the handshake for a node that is stopped or
         * wedged: open means it answered */
        if (accepted(p, cn->c, 1, ping, why, sizeof(why)) < 0)
                goto fail;
        return 0;
fail:
        conn_lost(p, i, why, t0);
        return -1;
}

/* Asks conns[i] for the slot map and takes it when it is usable. */
static int try_refresh(struct mls_cluster_pub *p, size_t i)
{
        struct conn *cn = &p->conns[i];
        mls_cluster_map_t *m;
        redisReply *r;
        char why[256];
        int64_t t0;

        cn->tried = 1;
        if (conn_open(p, i) < 0)
                return -1;
        t0 = mls_clock_mono_ns();
        r = command(p, cn->c, 2, (const char *[]){"CLUSTER", "SLOTS"});
        if (!r) {
                snprintf(why, sizeof(why), "%s", cn->c->errstr);
                conn_lost(p, i, why, t0);
                return -1;
        }
        m = mls_cluster_map_from_reply(r, cn->host, why, sizeof(why));
        mls_redis_replies_free(r);
        if (!m) {
                set_err(p, "redis %s:%d: %s", cn->host, cn->port, why);
                return -1;
        }
        if (mls_cluster_map_covered(m) == 0) {
                set_err(p,
                        "redis %s:%d: no slot is assigned (is the cluster "
                        "created?)",
                        cn->host, cn->port);
                mls_cluster_map_free(m);
                return -1;
        }
        mls_cluster_map_free(p->map);
        p->map = m;
        p->refresh_due = 0;
        p->st.refreshes++;
        return 0;
}

/* Fetches the map: from connected nodes, then the map's other nodes, then
 * the seeds. Returns 0, or -1 with the error recorded (the old map
 * stays). */
static int refresh(struct mls_cluster_pub *p)
{
        int i;

        for (size_t j = 0; j < p->nconns; j++)
                p->conns[j].tried = 0;
        for (size_t j = 0; j < p->nconns; j++)
                if (p->conns[j].c && try_refresh(p, j) == 0)
                        return 0;
        for (size_t j = 0; p->map && j < mls_cluster_map_nnodes(p->map); j++) {
                const struct mls_cluster_node *n =
                        mls_cluster_map_node(p->map, j);
                i = conn_find(p, n->host, n->port);
                if (i >= 0 && !p->conns[i].tried && try_refresh(p, i) == 0)
                        return 0;
        }
        for (size_t j = 0; j < p->nseeds; j++) {
                i = conn_find(p, p->seeds[j].host, p->seeds[j].port);
                if (i >= 0 && !p->conns[i].tried && try_refresh(p, i) == 0)
                        return 0;
        }
        {
                char first[sizeof(p->err)];

                memcpy(first, p->err, sizeof(first));
                snprintf(p->err, sizeof(p->err),
                         "redis cluster: no node gave a slot map (%.200s)",
                         first[0] ? first : "no node to ask");
        }
        return -1;
}

/* Closes and forgets connections to nodes that serve no slot. Only between
 * batches: entries refer to connections by index. */
static void prune(struct mls_cluster_pub *p)
{
        size_t o = 0;

        if (!p->map)
                return;
        for (size_t i = 0; i < p->nconns; i++) {
                int keep = 0;
                for (size_t j = 0; j < mls_cluster_map_nmasters(p->map); j++) {
                        const struct mls_cluster_node *n =
                                mls_cluster_map_master(p->map, j);
                        if (n->port == p->conns[i].port &&
                            strcmp(n->host, p->conns[i].host) == 0) {
                                keep = 1;
                                break;
                        }
                }
                if (!keep) {
                        conn_drop(p, i);
                        continue;
                }
                if (o != i)
                        p->conns[o] = p->conns[i];
                o++;
        }
        p->nconns = o;
}

/* Opens a connection to every master of the map (conn_open() has each
 * answer a PING): until the cluster fails a stopped or unreachable master
 * over, the maps of the other nodes still give it its slots. */
static int open_masters(struct mls_cluster_pub *p)
{
        for (size_t j = 0; j < mls_cluster_map_nmasters(p->map); j++) {
                const struct mls_cluster_node *n =
                        mls_cluster_map_master(p->map, j);
                int i = conn_find(p, n->host, n->port);

                if (i < 0) {
                        set_err(p, "redis %s:%d: out of memory", n->host,
                                n->port);
                        return -1;
                }
                if (conn_open(p, (size_t)i) < 0)
                        return -1;
        }
        return 0;
}

int mls_cluster_pub_connect(mls_cluster_pub_t *p, char *errstr,
                            size_t errstr_size)
{
        p->err[0] = '\0';
        clear_failed(p);
        if (refresh(p) < 0) {
                snprintf(errstr, errstr_size, "%s", p->err);
                return -1;
        }
        prune(p);
        if (open_masters(p) < 0) {
                snprintf(errstr, errstr_size, "%s", p->err);
                p->up = 0;
                return -1;
        }
        p->up = 1;
        return 0;
}

int mls_cluster_pub_connected(const mls_cluster_pub_t *p)
{
        return p->map != NULL && p->up;
}

int mls_cluster_pub_add(mls_cluster_pub_t *p, const char *channel, size_t clen,
                        const char *payload, size_t len)
{
        struct mls_buf *b = &p->cmds;
        struct entry *e;
        size_t off = b->len;

        if (p->failed)
                return -1;
        if (p->nents == p->cap_ents) {
                size_t ncap = p->cap_ents ? p->cap_ents * 2 : 1024;
                e = realloc(p->ents, ncap * sizeof(*e));
                if (!e)
                        goto fail;
                p->ents = e;
                p->cap_ents = ncap;
        }
        MLS_BUF_LIT(b, "*3\r\n$8\r\nSPUBLISH\r\n$");
        mls_buf_u64(b, clen);
        MLS_BUF_LIT(b, "\r\n");
        mls_buf_append(b, channel, clen);
        MLS_BUF_LIT(b, "\r\n$");
        mls_buf_u64(b, len);
        MLS_BUF_LIT(b, "\r\n");
        mls_buf_append(b, payload, len);
        if (MLS_BUF_LIT(b, "\r\n") < 0 || b->overflow)
                goto fail;
        e = &p->ents[p->nents++];
        e->off = off;
        e->len = b->len - off;
        e->next = NONE;
        e->slot = (uint16_t)mls_cluster_slot(channel, clen);
        e->done = 0;
        e->asking = 0;
        e->ask_conn = -1;
        return 0;
fail:
        p->failed = 1;
        return -1;
}

/* Lists each pending entry on the connection it goes to this round. */
static void route(struct mls_cluster_pub *p)
{
        for (size_t i = 0; i < p->nconns; i++) {
                p->conns[i].head = p->conns[i].tail = NONE;
                p->conns[i].count = 0;
        }
        for (size_t k = 0; k < p->nents; k++) {
                struct entry *e = &p->ents[k];
                const struct mls_cluster_node *n;
                struct conn *cn;
                int i = e->ask_conn;

                if (e->done)
                        continue;
                if (i < 0) {
                        n = p->map ? mls_cluster_map_owner(p->map, e->slot)
                                   : NULL;
                        if (!n) {
                                set_err(p,
                                        "redis cluster: no node serves slot "
                                        "%u",
                                        e->slot);
                                continue;
                        }
                        i = conn_find(p, n->host, n->port);
                        if (i < 0) {
                                set_err(p, "redis cluster: out of memory");
                                continue;
                        }
                }
                cn = &p->conns[i];
                e->next = NONE;
                if (cn->tail == NONE)
                        cn->head = k;
                else
                        p->ents[cn->tail].next = k;
                cn->tail = k;
                cn->count++;
        }
}

/* Gives up on what conns[i] has left this round, its connection lost (if
 * conn_open() has not recorded that already) in what it did since t0: the
 * entries from k on stay pending and go to their slot's owner next
 * round. */
static void conn_fail(struct mls_cluster_pub *p, size_t i, size_t k, int64_t t0)
{
        struct conn *cn = &p->conns[i];
        char why[sizeof(cn->why)];

        if (cn->c) {
                snprintf(why, sizeof(why), "%s",
                         cn->c->errstr[0] ? cn->c->errstr : "I/O error");
                conn_lost(p, i, why, t0);
        }
        for (; k != NONE; k = p->ents[k].next) {
                p->ents[k].ask_conn = -1;
                p->ents[k].asking = 0;
        }
        cn->head = cn->tail = NONE;
        cn->count = 0;
}

/* Sends each connection's list. Returns 1 when a connection failed. */
static int send_round(struct mls_cluster_pub *p)
{
        int failed = 0;

        for (size_t i = 0; i < p->nconns; i++) {
                struct conn *cn = &p->conns[i];
                size_t chunk = 0;
                int64_t t0;

                if (!cn->count)
                        continue;
                t0 = mls_clock_mono_ns();
                if (conn_open(p, i) < 0) {
                        conn_fail(p, i, cn->head, t0);
                        failed = 1;
                        continue;
                }
                for (size_t k = cn->head; k != NONE; k = p->ents[k].next) {
                        const struct entry *e = &p->ents[k];
                        if (e->asking &&
                            redisAppendFormattedCommand(cn->c, asking_cmd,
                                                        sizeof(asking_cmd) -
                                                                1) != REDIS_OK)
                                goto fail;
                        if (redisAppendFormattedCommand(cn->c,
                                                        p->cmds.data + e->off,
                                                        e->len) != REDIS_OK)
                                goto fail;
                        chunk += e->len;
                        if (chunk >= WRITE_CHUNK) {
                                if (write_out(cn->c) < 0)
                                        goto fail;
                                chunk = 0;
                        }
                }
                if (write_out(cn->c) == 0)
                        continue;
        fail:
                conn_fail(p, i, cn->head, t0);
                failed = 1;
        }
        return failed;
}

/* Handles one reply to entry e, sent over conns[i]. Returns 1 when it
 * acknowledges e. Sets *retry when the map should be fetched again. */
static int on_reply(struct mls_cluster_pub *p, size_t i, struct entry *e,
                    const redisReply *r, int *retry)
{
        struct mls_cluster_redirect rd;
        const char *host;
        int t;

        e->asking = 0;
        e->ask_conn = -1;
        if (r->type != REDIS_REPLY_ERROR) {
                e->done = 1;
                p->st.acked++;
                return 1;
        }
        if (mls_cluster_redirect_parse(r->str, r->len, &rd) < 0) {
                /* CLUSTERDOWN, TRYAGAIN, LOADING...: ask again where the
                 * slot lives before the next round */
                set_err(p, "redis %s:%d: %s", p->conns[i].host,
                        p->conns[i].port, r->str);
                *retry = 1;
                return 0;
        }
        host = rd.host[0] ? rd.host : p->conns[i].host;
        if (rd.kind == MLS_CLUSTER_MOVED) {
                p->st.moved++;
                p->refresh_due = 1;
                if (mls_cluster_map_set_owner(p->map, rd.slot, host, rd.port) <
                    0)
                        set_err(p, "redis cluster: out of memory");
                return 0;
        }
        p->st.ask++;
        t = conn_find(p, host, rd.port);
        if (t < 0) {
                set_err(p, "redis cluster: out of memory");
                return 0;
        }
        e->asking = 1;
        e->ask_conn = t;
        return 0;
}

/* Reads every reply of the round. Returns how many entries were
 * acknowledged; sets *retry when the map should be fetched again. */
static size_t receive_round(struct mls_cluster_pub *p, int *retry)
{
        size_t acked = 0;

        /* by index: an ASK may add a connection and move the array */
        for (size_t i = 0; i < p->nconns; i++) {
                /* one clock read per connection, not per reply: a failure
                 * a second into reading its replies counts as a timeout */
                int64_t t0;

                if (!p->conns[i].count)
                        continue;
                t0 = mls_clock_mono_ns();
                for (size_t k = p->conns[i].head; k != NONE;) {
                        struct entry *e = &p->ents[k];
                        size_t next = e->next;
                        redisReply *reply;

                        if (e->asking) {
                                if (get_reply(p, p->conns[i].c, &reply) < 0)
                                        goto fail;
                                mls_redis_replies_free(reply);
                        }
                        if (get_reply(p, p->conns[i].c, &reply) < 0)
                                goto fail;
                        acked += (size_t)on_reply(p, i, e, reply, retry);
                        mls_redis_replies_free(reply);
                        k = next;
                        continue;
                fail:
                        conn_fail(p, i, k, t0);
                        *retry = 1;
                        break;
                }
                p->conns[i].head = p->conns[i].tail = NONE;
                p->conns[i].count = 0;
        }
        return acked;
}

static void reset_batch(struct mls_cluster_pub *p)
{
        p->nents = 0;
        mls_buf_reset(&p->cmds);
        p->failed = 0;
}

int mls_cluster_pub_flush(mls_cluster_pub_t *p, char *errstr,
                          size_t errstr_size)
{
        size_t pending = p->nents;
        int round, lost = 0;

        p->err[0] = '\0';
        clear_failed(p);
        if (p->failed) {
                snprintf(errstr, errstr_size,
                         "redis cluster: a payload could not be queued (the "
                         "batch passed its limit or memory ran out)");
                goto fail;
        }
        if (!p->map || p->refresh_due) {
                if (refresh(p) < 0 && !p->map) {
                        snprintf(errstr, errstr_size, "%s", p->err);
                        goto fail;
                }
                p->err[0] = '\0';
        }
        prune(p);
        for (round = 0; round < MLS_CLUSTER_FLUSH_ROUNDS && pending; round++) {
                int retry = 0;

                if (round > 0)
                        p->err[0] = '\0';
                route(p);
                retry |= send_round(p);
                pending -= receive_round(p, &retry);
                if (pending && retry && round + 1 < MLS_CLUSTER_FLUSH_ROUNDS) {
                        char keep[sizeof(p->err)];
                        memcpy(keep, p->err, sizeof(keep));
                        p->err[0] = '\0';
                        lost = refresh(p) < 0;
                        memcpy(p->err, keep, sizeof(keep));
                }
        }
        if (pending) {
                snprintf(errstr, errstr_size,
                         "%s (%zu of %zu payloads not acknowledged after %d "
                         "rounds)",
                         p->err[0] ? p->err : "redis cluster: no reply",
                         pending, p->nents, round);
                if (lost) {
                        /* no node answered: connect() again first */
                        mls_cluster_map_free(p->map);
                        p->map = NULL;
                }
                goto fail;
        }
        reset_batch(p);
        p->up = 1;
        return 0;
fail:
        p->up = 0;
        p->refresh_due = 1;
        p->st.failed_flush++;
        reset_batch(p);
        return -1;
}

size_t mls_cluster_pub_queued(const mls_cluster_pub_t *p)
{
        return p->nents;
}

void mls_cluster_pub_stats(const mls_cluster_pub_t *p,
                           struct mls_cluster_pub_stats *out)
{
        *out = p->st;
}

void mls_cluster_pub_free(mls_cluster_pub_t *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->nconns; i++)
                conn_drop(p, i);
        free(p->conns);
        mls_cluster_map_free(p->map);
        memset(p->seeds, 0, p->nseeds * sizeof(*p->seeds));
        free(p->seeds);
        mls_buf_free(&p->cmds);
        free(p->ents);
        free(p);
}
