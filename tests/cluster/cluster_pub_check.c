/*
 * integration.redis_cluster: mls_cluster_pub against a real Redis Cluster
 * (scripts/services start cluster), with one SSUBSCRIBE connection per
 * channel on the node that owns it counting what arrives.
 *
 *   1. steady: every payload published arrives once, on its channel;
 *   2. a slot moves to another master mid-stream (SETSLOT IMPORTING /
 *      MIGRATING / NODE): the publisher follows the MOVED, subscribers
 *      (unsubscribed by Redis) subscribe again on the new owner, and every
 *      payload published after that arrives once;
 *   3. a master is SIGKILLed (scripts/services cluster-kill): flushes fail
 *      until its replica is promoted, then succeed again; every payload a
 *      flush acknowledged while its channel had a subscriber arrives (a
 *      batch that failed is sent again whole, so duplicates are allowed
 *      there only). The gap is printed and bounded. The node is started
 *      again at the end (it comes back as a replica).
 *
 * Usage: mls_cluster_pub_check SERVICES_SCRIPT
 * Needs REDIS_CLUSTER_URL (else exits 77: skipped); phase 3 needs
 * MLSTREAM_SERVICES_DIR too (a cluster that scripts/services runs).
 */
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/redis_cluster.h"

#define NCHAN 50
#define PER_CHAN 10 /* payloads per channel and batch */
#define BATCH (NCHAN * PER_CHAN)
#define FAILOVER_LIMIT_S 30.0
#define GAP_BOUND_S 20.0

struct sub {
        char channel[64];
        size_t clen;
        unsigned slot;
        redisContext *c;
        char host[256];
        int port;
        int active; /* SSUBSCRIBE confirmed by the node that owns the slot */
};

static const char *services;
static struct mls_redis_url *seeds;
static size_t nseeds;
static struct sub subs[NCHAN];
static unsigned char *received; /* per payload sequence number */
static size_t nreceived;
static unsigned long wrong_channel, unsubscribed;

static void fail(const char *fmt, ...)
        __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "FAIL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
        struct timespec ts = {.tv_sec = ms / 1000,
                              .tv_nsec = (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
}

static redisContext *connect_node(const char *host, int port)
{
        struct timeval tv = {.tv_sec = 2};
        redisContext *c = redisConnectWithTimeout(host, port, tv);

        if (!c || c->err) {
                if (c)
                        redisFree(c);
                return NULL;
        }
        tv.tv_sec = 5;
        redisSetTimeout(c, tv);
        if (seeds[0].password[0]) {
                redisReply *r =
                        seeds[0].user[0]
                                ? redisCommand(c, "AUTH %s %s", seeds[0].user,
                                               seeds[0].password)
                                : redisCommand(c, "AUTH %s", seeds[0].password);
                int ok = r && r->type != REDIS_REPLY_ERROR;
                if (r)
                        freeReplyObject(r);
                if (!ok) {
                        redisFree(c);
                        return NULL;
                }
        }
        return c;
}

/* A command on a node; fails the test on an error unless may_fail. */
static redisReply *node_cmd(redisContext *c, int may_fail, const char *fmt, ...)
{
        va_list ap;
        redisReply *r;

        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (!may_fail && (!r || r->type == REDIS_REPLY_ERROR))
                fail("%s:%d: %s: %s", c->tcp.host, c->tcp.port, fmt,
                     r ? r->str : c->errstr);
        return r;
}

/* The slot map as the first node that answers sees it: the seeds, then
 * the nodes of the previous map. */
static mls_cluster_map_t *fetch_map(const mls_cluster_map_t *prev)
{
        size_t n = nseeds + (prev ? mls_cluster_map_nnodes(prev) : 0);

        for (size_t i = 0; i < n; i++) {
                const char *host;
                int port;
                redisContext *c;
                redisReply *r;
                mls_cluster_map_t *m;
                char err[256];

                if (i < nseeds) {
                        host = seeds[i].host;
                        port = seeds[i].port;
                } else {
                        const struct mls_cluster_node *nd =
                                mls_cluster_map_node(prev, i - nseeds);
                        host = nd->host;
                        port = nd->port;
                }
                c = connect_node(host, port);
                if (!c)
                        continue;
                r = redisCommand(c, "CLUSTER SLOTS");
                m = r ? mls_cluster_map_from_reply(r, host, err, sizeof(err))
                      : NULL;
                if (r)
                        freeReplyObject(r);
                redisFree(c);
                if (m && mls_cluster_map_covered(m) > 0)
                        return m;
                mls_cluster_map_free(m);
        }
        return NULL;
}

static void sub_close(struct sub *s)
{
        if (s->c)
                redisFree(s->c);
        s->c = NULL;
        s->active = 0;
}

static void count_message(struct sub *s, const redisReply *r)
{
        unsigned long seq;
        int ch;

        if (sscanf(r->element[2]->str, "seq=%lu ch=%d", &seq, &ch) != 2 ||
            seq >= nreceived)
                fail("%s: unexpected payload \"%s\"", s->channel,
                     r->element[2]->str);
        if (ch != (int)(s - subs) ||
            strcmp(r->element[1]->str, s->channel) != 0) {
                wrong_channel++;
                return;
        }
        if (received[seq] < 255)
                received[seq]++;
}

/* Handles one push message on s. */
static void on_push(struct sub *s, const redisReply *r)
{
        const char *kind;

        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_STRING)
                fail("%s: unexpected reply type %d", s->channel, r->type);
        kind = r->element[0]->str;
        if (strcmp(kind, "smessage") == 0)
                count_message(s, r);
        else if (strcmp(kind, "sunsubscribe") == 0) {
                /* the slot moved away: subscribe again where it lives */
                unsubscribed++;
                s->active = 0;
        }
}

/* Reads what s has received without blocking; a dead connection is
 * closed. */
static void sub_drain(struct sub *s)
{
        while (s->c) {
                void *reply = NULL;
                struct pollfd pfd = {.fd = s->c->fd, .events = POLLIN};

                if (redisReaderGetReply(s->c->reader, &reply) != REDIS_OK) {
                        sub_close(s);
                        return;
                }
                if (reply) {
                        on_push(s, reply);
                        freeReplyObject(reply);
                        continue;
                }
                if (poll(&pfd, 1, 0) <= 0)
                        return;
                if (redisBufferRead(s->c) != REDIS_OK) {
                        sub_close(s);
                        return;
                }
        }
}

static void drain_all(void)
{
        for (int i = 0; i < NCHAN; i++)
                sub_drain(&subs[i]);
}

/* Subscribes s on the node that owns its slot in m, unless it is
 * subscribed there already. Returns 0 when active. */
static int sub_ensure(struct sub *s, const mls_cluster_map_t *m)
{
        const struct mls_cluster_node *n = mls_cluster_map_owner(m, s->slot);
        redisReply *r = NULL;

        if (!n)
                return -1;
        if (s->c && s->active && s->port == n->port &&
            strcmp(s->host, n->host) == 0)
                return 0;
        sub_close(s);
        s->c = connect_node(n->host, n->port);
        if (!s->c)
                return -1;
        snprintf(s->host, sizeof(s->host), "%s", n->host);
        s->port = n->port;
        r = redisCommand(s->c, "SSUBSCRIBE %b", s->channel, s->clen);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            strcmp(r->element[0]->str, "ssubscribe") != 0) {
                /* MOVED: the map was stale; the caller tries again */
                if (r)
                        freeReplyObject(r);
                sub_close(s);
                return -1;
        }
        freeReplyObject(r);
        s->active = 1;
        return 0;
}

/* Drains every subscriber and subscribes those that are not active, with
 * a fresh map when any is not. Returns how many are active. */
static int subs_maintain(mls_cluster_map_t **m)
{
        int active = 0, stale = 0;

        drain_all();
        for (int i = 0; i < NCHAN; i++)
                stale |= !subs[i].active;
        if (stale) {
                mls_cluster_map_t *fresh = fetch_map(*m);
                if (fresh) {
                        mls_cluster_map_free(*m);
                        *m = fresh;
                }
        }
        for (int i = 0; i < NCHAN; i++)
                active += sub_ensure(&subs[i], *m) == 0;
        return active;
}

static void grow_received(size_t upto)
{
        if (upto <= nreceived)
                return;
        received = realloc(received, upto);
        if (!received)
                fail("out of memory");
        memset(received + nreceived, 0, upto - nreceived);
        nreceived = upto;
}

/* Queues payloads first .. first+n-1, each padded to at least size
 * bytes: payload seq goes to channel seq % NCHAN. */
static void queue_batch(mls_cluster_pub_t *p, size_t first, size_t n,
                        size_t size)
{
        static char payload[4096];

        if (size >= sizeof(payload))
                fail("payload size %zu", size);
        grow_received(first + n);
        for (size_t seq = first; seq < first + n; seq++) {
                struct sub *s = &subs[seq % NCHAN];
                size_t len = (size_t)snprintf(payload, sizeof(payload),
                                              "seq=%zu ch=%d ", seq,
                                              (int)(seq % NCHAN));
                if (len < size) {
                        memset(payload + len, 'x', size - len);
                        len = size;
                }
                if (mls_cluster_pub_add(p, s->channel, s->clen, payload, len) <
                    0)
                        fail("mls_cluster_pub_add");
        }
}

/* Waits until every payload of the batch whose channel was active (when
 * it was published) has arrived, for at most 5 s. Returns how many did
 * not arrive. */
static size_t await_batch(size_t first, size_t n, const int *active)
{
        double deadline = now() + 5;
        size_t missing;

        for (;;) {
                missing = 0;
                drain_all();
                for (size_t seq = first; seq < first + n; seq++)
                        missing += active[seq % NCHAN] && !received[seq];
                if (!missing || now() > deadline)
                        return missing;
                sleep_ms(missing > 1000 ? 1 : 5);
        }
}

/* Publishes one batch of n payloads of at least size bytes that must be
 * acknowledged at once and received exactly once on every channel. */
static void batch_n(mls_cluster_pub_t *p, size_t *next, const char *phase,
                    size_t n, size_t size)
{
        int active[NCHAN];
        char err[512];
        size_t first = *next, missing;

        for (int i = 0; i < NCHAN; i++) {
                active[i] = subs[i].active;
                if (!active[i])
                        fail("%s: %s has no subscription", phase,
                             subs[i].channel);
        }
        queue_batch(p, first, n, size);
        if (mls_cluster_pub_flush(p, err, sizeof(err)) < 0)
                fail("%s: flush: %s", phase, err);
        missing = await_batch(first, n, active);
        if (missing)
                fail("%s: %zu of %zu payloads did not arrive", phase, missing,
                     n);
        for (size_t seq = first; seq < first + n; seq++)
                if (received[seq] != 1)
                        fail("%s: payload %zu arrived %d times", phase, seq,
                             received[seq]);
        if (wrong_channel)
                fail("%s: %lu payloads on the wrong channel", phase,
                     wrong_channel);
        *next += n;
}

static void batch_exactly_once(mls_cluster_pub_t *p, size_t *next,
                               const char *phase)
{
        batch_n(p, next, phase, BATCH, 0);
}

static int run_services(const char *cmd, int port)
{
        char line[1024];

        snprintf(line, sizeof(line), "'%s' %s %d", services, cmd, port);
        return system(line);
}

/* The node id of host:port in m. */
static const char *node_id(const mls_cluster_map_t *m, int port)
{
        for (size_t i = 0; i < mls_cluster_map_nnodes(m); i++)
                if (mls_cluster_map_node(m, i)->port == port)
                        return mls_cluster_map_node(m, i)->id;
        fail("no node with port %d in the map", port);
}

static void phase_slot_move(mls_cluster_pub_t *p, mls_cluster_map_t **m,
                            size_t *next)
{
        struct sub *s = &subs[0];
        const struct mls_cluster_node *src_n =
                mls_cluster_map_owner(*m, s->slot);
        const struct mls_cluster_node *dst_n = NULL;
        struct mls_cluster_pub_stats before, after;
        struct mls_cluster_node src_c, dst_c;
        char src_id[41], dst_id[41];
        redisContext *src, *dst;
        redisReply *r;
        double deadline;
        int moved_subs = 0;

        for (size_t i = 0; i < mls_cluster_map_nmasters(*m); i++)
                if (mls_cluster_map_master(*m, i)->port != src_n->port)
                        dst_n = mls_cluster_map_master(*m, i);
        if (!dst_n)
                fail("slot move: the cluster has one master");
        /* copies: the map is fetched again below */
        src_c = *src_n;
        dst_c = *dst_n;
        snprintf(src_id, sizeof(src_id), "%s", node_id(*m, src_c.port));
        snprintf(dst_id, sizeof(dst_id), "%s", node_id(*m, dst_c.port));
        src = connect_node(src_c.host, src_c.port);
        dst = connect_node(dst_c.host, dst_c.port);
        if (!src || !dst)
                fail("slot move: cannot connect to %d or %d", src_c.port,
                     dst_c.port);
        printf("slot move: slot %u (%s) from :%d to :%d\n", s->slot, s->channel,
               src_c.port, dst_c.port);

        freeReplyObject(node_cmd(dst, 0, "CLUSTER SETSLOT %u IMPORTING %s",
                                 s->slot, src_id));
        freeReplyObject(node_cmd(src, 0, "CLUSTER SETSLOT %u MIGRATING %s",
                                 s->slot, dst_id));
        /* Migrating: shard channels stay on the source until the end. */
        mls_cluster_pub_stats(p, &before);
        batch_exactly_once(p, next, "slot migrating");
        mls_cluster_pub_stats(p, &after);
        printf("slot migrating: %d payloads once each (ASK %llu)\n", BATCH,
               (unsigned long long)(after.ask - before.ask));
        /* keys, if anything stored any in this slot */
        for (;;) {
                r = node_cmd(src, 0, "CLUSTER GETKEYSINSLOT %u 100", s->slot);
                if (r->elements == 0) {
                        freeReplyObject(r);
                        break;
                }
                for (size_t i = 0; i < r->elements; i++)
                        freeReplyObject(node_cmd(
                                src, 0, "MIGRATE %s %d %b 0 5000", dst_c.host,
                                dst_c.port, r->element[i]->str,
                                r->element[i]->len));
                freeReplyObject(r);
        }
        freeReplyObject(node_cmd(dst, 0, "CLUSTER SETSLOT %u NODE %s", s->slot,
                                 dst_id));
        freeReplyObject(node_cmd(src, 0, "CLUSTER SETSLOT %u NODE %s", s->slot,
                                 dst_id));
        for (size_t i = 0; i < mls_cluster_map_nmasters(*m); i++) {
                const struct mls_cluster_node *n =
                        mls_cluster_map_master(*m, i);
                redisContext *c;
                if (n->port == src_c.port || n->port == dst_c.port)
                        continue;
                c = connect_node(n->host, n->port);
                if (c) {
                        r = node_cmd(c, 1, "CLUSTER SETSLOT %u NODE %s",
                                     s->slot, dst_id);
                        if (r)
                                freeReplyObject(r);
                        redisFree(c);
                }
        }
        redisFree(src);
        redisFree(dst);

        /* Redis unsubscribes the slot's subscribers on the old owner. */
        deadline = now() + 5;
        while (s->active && now() < deadline) {
                drain_all();
                sleep_ms(5);
        }
        if (s->active)
                fail("slot move: %s got no sunsubscribe", s->channel);
        for (int i = 0; i < NCHAN; i++)
                moved_subs += !subs[i].active;
        deadline = now() + 10;
        while (subs_maintain(m) < NCHAN) {
                if (now() > deadline)
                        fail("slot move: cannot subscribe again");
                sleep_ms(50);
        }
        if (mls_cluster_map_owner(*m, s->slot)->port != dst_c.port)
                fail("slot move: the map does not show the new owner");

        /* The publisher still sends to the old owner: MOVED. */
        mls_cluster_pub_stats(p, &before);
        batch_exactly_once(p, next, "slot moved");
        mls_cluster_pub_stats(p, &after);
        if (after.moved == before.moved)
                fail("slot moved: the publisher saw no MOVED");
        printf("slot moved: %d subscriber(s) unsubscribed by Redis and "
               "subscribed again; %llu MOVED followed; %d payloads once "
               "each\n",
               moved_subs, (unsigned long long)(after.moved - before.moved),
               BATCH);
        /* ... and then knows the new map. */
        mls_cluster_pub_stats(p, &before);
        batch_exactly_once(p, next, "after the move");
        mls_cluster_pub_stats(p, &after);
        if (after.moved != before.moved)
                fail("after the move: still MOVED (%llu)",
                     (unsigned long long)(after.moved - before.moved));
}

/* A master with a replica, preferring the owner of subs[1]. (CLUSTER
 * SLOTS lists a replica only once it has replicated something, so ask
 * CLUSTER REPLICAS.) */
static int pick_victim(const mls_cluster_map_t *m)
{
        const struct mls_cluster_node *pref =
                mls_cluster_map_owner(m, subs[1].slot);
        size_t n = mls_cluster_map_nmasters(m);

        for (size_t k = 0; k <= n; k++) {
                const struct mls_cluster_node *c =
                        k == 0 ? pref : mls_cluster_map_master(m, k - 1);
                redisContext *ctx;
                redisReply *r;
                size_t replicas = 0;

                if (!c || !c->id[0])
                        continue;
                ctx = connect_node(c->host, c->port);
                if (!ctx)
                        continue;
                r = node_cmd(ctx, 1, "CLUSTER REPLICAS %s", c->id);
                if (r && r->type == REDIS_REPLY_ARRAY)
                        for (size_t i = 0; i < r->elements; i++)
                                replicas += !strstr(r->element[i]->str, "fail");
                if (r)
                        freeReplyObject(r);
                redisFree(ctx);
                if (replicas)
                        return c->port;
        }
        fail("failover: no master has a live replica");
}

static int map_has_master(const mls_cluster_map_t *m, int port)
{
        for (size_t i = 0; i < mls_cluster_map_nmasters(m); i++)
                if (mls_cluster_map_master(m, i)->port == port)
                        return 1;
        return 0;
}

static void phase_failover(mls_cluster_pub_t *p, mls_cluster_map_t **m,
                           size_t *next)
{
        int victim = pick_victim(*m), victim_chans = 0;
        double t_kill, t_first_fail = 0, t_recovered = 0, gap = 0;
        unsigned long failed_flushes = 0, batches = 0, excused = 0;
        unsigned long acked = 0, dups = 0, after_recovery = 0;
        char err[512], last_err[512] = "";

        for (int i = 0; i < NCHAN; i++)
                victim_chans += subs[i].port == victim;
        printf("failover: SIGKILL master :%d (%d of %d channels)\n", victim,
               victim_chans, NCHAN);
        if (run_services("cluster-kill", victim) != 0)
                fail("scripts/services cluster-kill %d failed", victim);
        t_kill = now();

        while (after_recovery < 3) {
                size_t first = *next, missing;
                int active[NCHAN], attempts = 0;

                for (;;) {
                        subs_maintain(m);
                        for (int i = 0; i < NCHAN; i++)
                                active[i] = subs[i].active;
                        queue_batch(p, first, BATCH, 0);
                        attempts++;
                        if (mls_cluster_pub_flush(p, err, sizeof(err)) == 0)
                                break;
                        failed_flushes++;
                        snprintf(last_err, sizeof(last_err), "%s", err);
                        if (!t_first_fail)
                                t_first_fail = now();
                        if (now() - t_kill > FAILOVER_LIMIT_S)
                                fail("failover: flush still fails %.0f s "
                                     "after the kill: %s",
                                     FAILOVER_LIMIT_S, err);
                        sleep_ms(100);
                }
                batches++;
                acked += BATCH;
                if (t_first_fail && !t_recovered) {
                        t_recovered = now();
                        gap = t_recovered - t_first_fail;
                }
                missing = await_batch(first, BATCH, active);
                if (missing)
                        fail("failover: %zu acknowledged payloads of batch "
                             "%lu did not arrive on subscribed channels",
                             missing, batches);
                for (size_t seq = first; seq < first + BATCH; seq++) {
                        int ch = (int)(seq % NCHAN);
                        if (!active[ch]) {
                                excused++;
                                continue;
                        }
                        if (received[seq] > 1) {
                                if (attempts == 1)
                                        fail("failover: payload %zu arrived "
                                             "%d times from a batch sent "
                                             "once",
                                             seq, received[seq]);
                                dups += received[seq] - 1u;
                        }
                }
                *next += BATCH;
                if (t_recovered && !map_has_master(*m, victim) &&
                    subs_maintain(m) == NCHAN)
                        after_recovery++;
                sleep_ms(20);
        }
        if (wrong_channel)
                fail("failover: %lu payloads on the wrong channel",
                     wrong_channel);
        printf("failover: %lu failed flushes (last: %s)\n", failed_flushes,
               last_err[0] ? last_err : "none");
        printf("failover: publishing gap %.0f ms (first failed flush to the "
               "first acknowledged one), %.1f s from the kill to recovery\n",
               gap * 1000, t_recovered ? t_recovered - t_kill : 0.0);
        printf("failover: %lu batches, %lu payloads acknowledged, all "
               "received; %lu duplicates from re-sent batches; %lu "
               "published while their channel had no subscriber\n",
               batches, acked, dups, excused);
        if (!failed_flushes)
                fail("failover: no flush failed: was the master killed?");
        if (gap > GAP_BOUND_S)
                fail("failover: gap %.1f s > %.0f s", gap, GAP_BOUND_S);
        if (excused > BATCH)
                fail("failover: %lu payloads without a subscriber", excused);

        if (run_services("cluster-start-node", victim) != 0)
                fail("scripts/services cluster-start-node %d failed", victim);
        {
                double deadline = now() + 10;
                while (subs_maintain(m) < NCHAN) {
                        if (now() > deadline)
                                fail("after restart: cannot subscribe");
                        sleep_ms(50);
                }
        }
        batch_exactly_once(p, next, "after the node came back");
        printf("failover: node :%d back (as a replica); %d payloads once "
               "each\n",
               victim, BATCH);
}

int main(int argc, char **argv)
{
        const char *url = getenv("REDIS_CLUSTER_URL");
        mls_cluster_pub_t *p;
        mls_cluster_map_t *m;
        struct mls_cluster_pub_stats st;
        char err[512];
        size_t next = 0;
        double t0 = now(), deadline;

        if (!url || !*url) {
                printf("REDIS_CLUSTER_URL is not set (eval \"$(scripts/"
                       "services start cluster)\"): skipped\n");
                return 77;
        }
        if (argc < 2)
                fail("usage: %s SERVICES_SCRIPT", argv[0]);
        services = argv[1];
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (mls_cluster_seeds_parse(url, &seeds, &nseeds, err, sizeof(err)) < 0)
                fail("REDIS_CLUSTER_URL: %s", err);

        /* the cluster may still settle from an earlier run */
        deadline = now() + 15;
        while (!(m = fetch_map(NULL)) ||
               mls_cluster_map_covered(m) < MLS_CLUSTER_SLOTS) {
                mls_cluster_map_free(m);
                if (now() > deadline)
                        fail("no node of %s serves all 16384 slots", url);
                sleep_ms(100);
        }
        printf("cluster: %zu masters, %zu nodes\n", mls_cluster_map_nmasters(m),
               mls_cluster_map_nnodes(m));

        /* our slots are Redis' slots */
        {
                const struct mls_cluster_node *n = mls_cluster_map_master(m, 0);
                redisContext *c = connect_node(n->host, n->port);
                if (!c)
                        fail("cannot connect to %s:%d", n->host, n->port);
                for (int i = 0; i < NCHAN; i++) {
                        struct sub *s = &subs[i];
                        redisReply *r;
                        s->clen = (size_t)snprintf(
                                s->channel, sizeof(s->channel),
                                "ml:stream:inference:{model-%d}", i);
                        s->slot = mls_cluster_slot(s->channel, s->clen);
                        r = node_cmd(c, 0, "CLUSTER KEYSLOT %b", s->channel,
                                     s->clen);
                        if (r->integer != (long long)s->slot)
                                fail("%s: slot %u, Redis says %lld", s->channel,
                                     s->slot, r->integer);
                        freeReplyObject(r);
                }
                redisFree(c);
        }

        p = mls_cluster_pub_new(seeds, nseeds, 0);
        if (!p)
                fail("mls_cluster_pub_new");
        if (mls_cluster_pub_connect(p, err, sizeof(err)) < 0)
                fail("connect: %s", err);
        deadline = now() + 10;
        while (subs_maintain(&m) < NCHAN) {
                if (now() > deadline)
                        fail("cannot subscribe to every channel");
                sleep_ms(50);
        }

        for (int i = 0; i < 5; i++)
                batch_exactly_once(p, &next, "steady");
        printf("steady: 5 batches of %d payloads on %d channels, each "
               "received once\n",
               BATCH, NCHAN);
        /* past the publisher's 1 MiB write pieces on every node */
        {
                double t = now();
                batch_n(p, &next, "big batch", 30000, 300);
                printf("big batch: 30000 payloads of 300 bytes (9 MB) "
                       "flushed and received once each in %.0f ms\n",
                       (now() - t) * 1000);
        }

        phase_slot_move(p, &m, &next);

        if (getenv("MLSTREAM_SERVICES_DIR"))
                phase_failover(p, &m, &next);
        else
                printf("failover: skipped (MLSTREAM_SERVICES_DIR is not set: "
                       "the cluster is not scripts/services')\n");

        mls_cluster_pub_stats(p, &st);
        printf("publisher: %llu acknowledged, %llu MOVED, %llu ASK, %llu map "
               "fetches, %llu connection errors, %llu failed flushes\n",
               (unsigned long long)st.acked, (unsigned long long)st.moved,
               (unsigned long long)st.ask, (unsigned long long)st.refreshes,
               (unsigned long long)st.conn_errors,
               (unsigned long long)st.failed_flush);
        printf("ok (%.1f s)\n", now() - t0);
        mls_cluster_pub_free(p);
        for (int i = 0; i < NCHAN; i++)
                sub_close(&subs[i]);
        mls_cluster_map_free(m);
        free(seeds);
        free(received);
        return 0;
}
