#include "gateway/cluster_sub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/redis_cluster.h"
#include "common/strmap.h"
#include "gateway/shard_conn.h"

#define BACKOFF_START_MS 50
#define CONNECT_TIMEOUT_MS 3000
#define MOVES_LOG_DELAY_MS 200 /* re-placements gathered into one line */
#define MAX_MOVES 8
/* After a topology event the map is fetched again a few times, a second
 * apart, for the nodes that had not heard of it yet (gossip lag); and
 * every MAP_PERIOD_MS anyway. */
#define MAP_SETTLE_MS 1000
#define MAP_SETTLE_ROUNDS 3
#define MAP_PERIOD_MS 30000

#define ADDR_MAX 300

enum chan_state {
        IDLE,
        SUBSCRIBING,
        SUBSCRIBED,
        UNSUBSCRIBING
};

struct node;

/* A channel: the control channel or a watched model's. */
struct chan {
        int wanted, control;
        enum chan_state state;
        struct node *node; /* where it is (being) subscribed; NULL at IDLE */
        unsigned slot;
        char moved_from[ADDR_MAX];    /* the node it was lost on, or "" */
        struct mls_strmap_entry *key; /* the channel name */
};

/* A command sent to a node, awaiting its reply (replies come in order;
 * pushes are told apart by their kind). */
struct pending {
        struct pending *next;
        int sub; /* SSUBSCRIBE, else SUNSUBSCRIBE */
        size_t len;
        char ch[];
};

/* A master we hold a connection to. */
struct node {
        struct node *next;
        mls_cluster_sub_t *s;
        char host[256];
        int port;
        char addr[ADDR_MAX];
        mls_shard_conn_t *conn; /* NULL once lost (freed at the next prune) */
        struct pending *head, *tail;
        size_t nchans; /* channels whose node this is */
};

struct move {
        char from[ADDR_MAX], to[ADDR_MAX];
        size_t n;
};

struct mls_cluster_sub {
        uv_loop_t *loop;
        struct mls_cluster_sub_conf conf;
        struct mls_redis_url *seeds;
        char *prefix, *name;
        struct chan *control;
        mls_cluster_map_t *map;
        int map_stale; /* a node was lost: place nothing before a new map */
        struct node *nodes;
        /* the map fetch */
        mls_shard_conn_t *mapconn;
        char map_host[256];
        int map_port;
        size_t map_first, map_tries, map_idx;
        int refresh_again;
        int urgent; /* the refresh timer is armed for an event, not a
                       periodic or settling fetch */
        int settle; /* settling fetches left */
        uv_timer_t refresh, movelog;
        int64_t backoff_ms;
        int up, closing, warned;
        struct mls_strmap chans;
        size_t nsubscribed;
        uint64_t errors; /* connections failed or lost */
        uint64_t resubscribes;
        struct move moves[MAX_MOVES];
        size_t nmoves;
};

static void reconcile(mls_cluster_sub_t *s, struct chan *c);
static void start_fetch(mls_cluster_sub_t *s);

/* --- state ---------------------------------------------------------------- */

static void update_state(mls_cluster_sub_t *s)
{
        int up = s->map && s->control->state == SUBSCRIBED;

        if (s->up == up)
                return;
        s->up = up;
        if (!s->closing && s->conf.on_state)
                s->conf.on_state(s->conf.opaque, up);
}

static void attach(struct chan *c, struct node *n, enum chan_state st)
{
        c->node = n;
        c->state = st;
        n->nchans++;
}

/* Back to IDLE; was_lost: the subscription went away against our will, so
 * the channel is re-placed (and counted) once subscribed again. */
static void detach(mls_cluster_sub_t *s, struct chan *c, int was_lost)
{
        if (!c->node)
                return;
        if (c->state == SUBSCRIBED)
                s->nsubscribed--;
        if (was_lost && c->wanted && !c->moved_from[0])
                snprintf(c->moved_from, sizeof(c->moved_from), "%s",
                         c->node->addr);
        c->node->nchans--;
        c->node = NULL;
        c->state = IDLE;
}

/* --- re-placement log --------------------------------------------------- */

static void flush_moves(mls_cluster_sub_t *s)
{
        for (size_t i = 0; i < s->nmoves; i++)
                mls_info("redis cluster: re-placed %zu channel(s) from %s to "
                         "%s",
                         s->moves[i].n, s->moves[i].from, s->moves[i].to);
        s->nmoves = 0;
}

static void on_movelog(uv_timer_t *t)
{
        flush_moves(t->data);
}

static void record_move(mls_cluster_sub_t *s, struct chan *c)
{
        const char *to = c->node->addr;
        size_t i;

        s->resubscribes++;
        for (i = 0; i < s->nmoves; i++)
                if (strcmp(s->moves[i].from, c->moved_from) == 0 &&
                    strcmp(s->moves[i].to, to) == 0)
                        break;
        if (i == s->nmoves) {
                if (s->nmoves == MAX_MOVES)
                        flush_moves(s);
                i = s->nmoves++;
                snprintf(s->moves[i].from, ADDR_MAX, "%s", c->moved_from);
                snprintf(s->moves[i].to, ADDR_MAX, "%s", to);
                s->moves[i].n = 0;
        }
        s->moves[i].n++;
        c->moved_from[0] = '\0';
        if (!uv_is_active((uv_handle_t *)&s->movelog))
                uv_timer_start(&s->movelog, on_movelog, MOVES_LOG_DELAY_MS, 0);
}

/* --- the map fetch -------------------------------------------------------- */

static void on_refresh(uv_timer_t *t);

/* Asks for a new map: at once (failure 0: a slot moved), or after the
 * backoff (failure 1: a node or every fetch failed). */
static void want_refresh(mls_cluster_sub_t *s, int failure)
{
        if (s->closing)
                return;
        s->settle = MAP_SETTLE_ROUNDS;
        if (s->mapconn) {
                s->refresh_again = 1;
                return;
        }
        if (s->urgent && uv_is_active((uv_handle_t *)&s->refresh))
                return;
        s->urgent = 1;
        if (!failure) {
                uv_timer_start(&s->refresh, on_refresh, 0, 0);
                return;
        }
        uv_timer_start(&s->refresh, on_refresh, (uint64_t)s->backoff_ms, 0);
        s->backoff_ms *= 2;
        if (s->backoff_ms > s->conf.retry_max_ms)
                s->backoff_ms = s->conf.retry_max_ms;
}

/* A warning for the first failure after a success, debug lines after. */
static void report(mls_cluster_sub_t *s, const char *what, const char *why)
{
        if (!s->warned)
                mls_warn("redis cluster: %s: %s; retrying (backoff up to %lld "
                         "ms)",
                         what, why, (long long)s->conf.retry_max_ms);
        else
                mls_debug("redis cluster: %s: %s", what, why);
        s->warned = 1;
}

static size_t ncandidates(const mls_cluster_sub_t *s)
{
        return s->conf.nseeds + (s->map ? mls_cluster_map_nnodes(s->map) : 0);
}

static void candidate(const mls_cluster_sub_t *s, size_t i, const char **host,
                      int *port)
{
        if (i < s->conf.nseeds) {
                *host = s->seeds[i].host;
                *port = s->seeds[i].port;
        } else {
                const struct mls_cluster_node *n =
                        mls_cluster_map_node(s->map, i - s->conf.nseeds);
                *host = n->host;
                *port = n->port;
        }
}

static void free_node(struct node *n)
{
        struct pending *p, *next;

        for (p = n->head; p; p = next) {
                next = p->next;
                free(p);
        }
        mls_shard_conn_close(n->conn);
        free(n);
}

static int is_master(const mls_cluster_sub_t *s, const struct node *n)
{
        size_t nm = s->map ? mls_cluster_map_nmasters(s->map) : 0;

        for (size_t i = 0; i < nm; i++) {
                const struct mls_cluster_node *m =
                        mls_cluster_map_master(s->map, i);
                if (m->port == n->port && strcmp(m->host, n->host) == 0)
                        return 1;
        }
        return 0;
}

/* Frees lost nodes, and closes connections no channel uses to nodes that
 * are no longer masters. Never runs inside a node's callbacks. */
static void prune(mls_cluster_sub_t *s)
{
        struct node **pp = &s->nodes, *n;

        while ((n = *pp)) {
                if (!n->conn || (!n->nchans && !is_master(s, n))) {
                        *pp = n->next;
                        free_node(n);
                } else {
                        pp = &n->next;
                }
        }
}

struct collect {
        struct chan **list;
        size_t n;
};

static void collect(void *opaque, struct mls_strmap_entry *e)
{
        struct collect *a = opaque;

        a->list[a->n++] = e->value;
}

/* Every channel: after a new map, a node ready, or a node lost. */
static void reconcile_all(mls_cluster_sub_t *s)
{
        struct collect a = {NULL, 0};

        a.list = malloc(s->chans.count * sizeof(*a.list));
        if (!a.list)
                return; /* again at the next map */
        mls_strmap_foreach(&s->chans, collect, &a);
        for (size_t i = 0; i < a.n; i++)
                reconcile(s, a.list[i]);
        free(a.list);
}

static void install_map(mls_cluster_sub_t *s, mls_cluster_map_t *m)
{
        mls_cluster_map_free(s->map);
        s->map = m;
        s->map_stale = 0;
        mls_debug("redis cluster: slot map from %s: %zu master(s), %u slots "
                  "covered",
                  s->map_host, mls_cluster_map_nmasters(m),
                  mls_cluster_map_covered(m));
        prune(s);
        reconcile_all(s);
        update_state(s);
        if (!s->urgent || !uv_is_active((uv_handle_t *)&s->refresh)) {
                s->urgent = 0;
                uv_timer_start(&s->refresh, on_refresh,
                               s->settle > 0 ? MAP_SETTLE_MS : MAP_PERIOD_MS,
                               0);
                if (s->settle > 0)
                        s->settle--;
        }
}

static void fetch_done(mls_cluster_sub_t *s)
{
        mls_shard_conn_close(s->mapconn);
        s->mapconn = NULL;
        if (s->refresh_again) {
                s->refresh_again = 0;
                want_refresh(s, 0);
        }
}

static void on_map_ready(void *opaque, mls_shard_conn_t *c)
{
        const char *argv[] = {"CLUSTER", "SLOTS"};

        (void)opaque;
        /* a failed send is seen as a lost connection */
        mls_shard_conn_command(c, 2, argv, NULL);
}

static void try_next(mls_cluster_sub_t *s, const char *why)
{
        char what[300];
        const char *host;
        int port;

        candidate(s, s->map_idx, &host, &port);
        snprintf(what, sizeof(what), "slot map from %s:%d", host, port);
        mls_debug("redis cluster: %s: %s", what, why);
        mls_shard_conn_close(s->mapconn);
        s->mapconn = NULL;
        s->map_tries++;
        if (s->map_tries >= ncandidates(s)) {
                report(s, "no node answered CLUSTER SLOTS", why);
                s->refresh_again = 0;
                want_refresh(s, 1);
                return;
        }
        start_fetch(s);
}

static void on_map_reply(void *opaque, mls_shard_conn_t *c, const redisReply *r)
{
        mls_cluster_sub_t *s = opaque;
        char err[300];
        mls_cluster_map_t *m;

        (void)c;
        m = mls_cluster_map_from_reply(r, s->map_host, err, sizeof(err));
        if (m && !mls_cluster_map_covered(m)) {
                snprintf(err, sizeof(err), "no slot is assigned");
                mls_cluster_map_free(m);
                m = NULL;
        }
        if (!m) {
                if (r->type == REDIS_REPLY_ERROR && !s->warned)
                        mls_error("redis cluster: CLUSTER SLOTS on %s:%d: %s "
                                  "(REDIS_CLUSTER=true: is REDIS_URL a Redis "
                                  "Cluster?)",
                                  s->map_host, s->map_port, r->str);
                try_next(s, err);
                return;
        }
        s->map_first = s->map_idx;
        install_map(s, m);
        fetch_done(s);
}

static void on_map_closed(void *opaque, mls_shard_conn_t *c, const char *why,
                          int oversize)
{
        mls_cluster_sub_t *s = opaque;

        (void)c;
        (void)oversize; /* the map's cap is not a message's */
        s->errors++;
        try_next(s, why);
}

/* Asks the next candidate for CLUSTER SLOTS: the one that answered last
 * first, then the others in order. */
static void start_fetch(mls_cluster_sub_t *s)
{
        struct mls_shard_conn_conf cc;
        char errstr[160];
        const char *host;
        int port;

        if (s->closing)
                return;
        s->map_idx = (s->map_first + s->map_tries) % ncandidates(s);
        candidate(s, s->map_idx, &host, &port);
        snprintf(s->map_host, sizeof(s->map_host), "%s", host);
        s->map_port = port;
        cc = (struct mls_shard_conn_conf){
                .host = host,
                .port = port,
                .user = s->seeds[0].user,
                .password = s->seeds[0].password,
                .name = s->name,
                /* a map of many nodes, not a message */
                .max_reply_bytes = s->conf.max_reply_bytes + (1 << 20),
                .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                .ping_ms = s->conf.ping_ms,
                .on_ready = on_map_ready,
                .on_reply = on_map_reply,
                .on_closed = on_map_closed,
                .opaque = s,
        };
        s->mapconn = mls_shard_conn_new(s->loop, &cc, errstr, sizeof(errstr));
        if (!s->mapconn) {
                report(s, "slot map", errstr);
                want_refresh(s, 1);
        }
}

static void on_refresh(uv_timer_t *t)
{
        mls_cluster_sub_t *s = t->data;

        s->urgent = 0;
        if (s->closing || s->mapconn)
                return;
        prune(s);
        s->map_tries = 0;
        start_fetch(s);
}

/* --- node connections ----------------------------------------------------- */

static void node_ready(void *opaque, mls_shard_conn_t *c)
{
        struct node *n = opaque;

        (void)c;
        mls_debug("redis cluster: connected to %s", n->addr);
        reconcile_all(n->s);
}

static struct chan *find_chan(mls_cluster_sub_t *s, const redisReply *ch)
{
        return mls_strmap_get(&s->chans, ch->str, ch->len);
}

static struct pending *pop(struct node *n)
{
        struct pending *p = n->head;

        if (p) {
                n->head = p->next;
                if (!n->head)
                        n->tail = NULL;
        }
        return p;
}

/* 1 when the next reply awaited is the one for (un)subscribing ch. */
static int head_is(const struct node *n, int sub, const redisReply *ch)
{
        const struct pending *p = n->head;

        return p && p->sub == sub && p->len == ch->len &&
               memcmp(p->ch, ch->str, ch->len) == 0;
}

/* c, a model channel, is subscribed again after it was lost. */
static void report_gap(mls_cluster_sub_t *s, const struct chan *c)
{
        size_t mlen;
        const char *model = mls_channel_model_of(s->conf.prefix, c->key->key,
                                                 c->key->klen, &mlen);

        if (model && s->conf.on_gap)
                s->conf.on_gap(s->conf.opaque, model, mlen);
}

/* The node confirmed our SSUBSCRIBE. */
static void subscribed(mls_cluster_sub_t *s, struct node *n, struct chan *c)
{
        if (!c || c->node != n || c->state != SUBSCRIBING)
                return;
        c->state = SUBSCRIBED;
        s->nsubscribed++;
        s->backoff_ms = BACKOFF_START_MS;
        if (s->warned)
                mls_info("redis cluster: subscribed again (%s on %s)",
                         c->key->key, n->addr);
        s->warned = 0;
        if (c->moved_from[0]) {
                record_move(s, c);
                if (!c->control)
                        report_gap(s, c);
        } else if (c->control)
                mls_info("redis cluster: subscribed to %s on %s", c->key->key,
                         n->addr);
        else
                mls_debug("redis cluster: subscribed to %s on %s", c->key->key,
                          n->addr);
        update_state(s);
        reconcile(s, c);
}

/* The node confirmed our SUNSUBSCRIBE, or refused it (it does not hold
 * the slot any more): either way the channel is not there. */
static void unsubscribed(mls_cluster_sub_t *s, struct node *n, struct chan *c)
{
        if (!c || c->node != n || c->state != UNSUBSCRIBING)
                return;
        detach(s, c, 0);
        reconcile(s, c);
}

/* The node unsubscribed us on its own: the channel's slot left it. */
static void dropped(mls_cluster_sub_t *s, struct node *n, struct chan *c)
{
        if (!c || c->node != n || c->state != SUBSCRIBED)
                return;
        mls_debug("redis cluster: %s dropped %s (slot %u moved)", n->addr,
                  c->key->key, c->slot);
        detach(s, c, 1);
        update_state(s);
        /* the map still names n: place it after the next one (a replica
         * would accept it, but the owner is where it belongs) */
        s->map_stale = 1;
        want_refresh(s, 0);
}

/* An error reply to the command p. */
static void refused(mls_cluster_sub_t *s, struct node *n, struct pending *p,
                    const char *err, size_t len)
{
        struct chan *c = mls_strmap_get(&s->chans, p->ch, p->len);
        struct mls_cluster_redirect rd;

        if (!c || c->node != n)
                return;
        if (!p->sub) {
                unsubscribed(s, n, c);
                return;
        }
        if (c->state != SUBSCRIBING)
                return;
        if (mls_cluster_redirect_parse(err, len, &rd) == 0 &&
            rd.kind == MLS_CLUSTER_MOVED) {
                /* the slot lives elsewhere: go there now, and learn the
                 * rest of the map */
                detach(s, c, 1);
                if (s->map)
                        mls_cluster_map_set_owner(
                                s->map, rd.slot, rd.host[0] ? rd.host : n->host,
                                rd.port);
                want_refresh(s, 0);
                reconcile(s, c);
                return;
        }
        /* ASK (a slot being migrated), CLUSTERDOWN, TRYAGAIN, ...: again
         * after the next map */
        detach(s, c, 1);
        report(s, "SSUBSCRIBE refused", err);
        want_refresh(s, 1);
}

static void node_reply(void *opaque, mls_shard_conn_t *conn,
                       const redisReply *r)
{
        struct node *n = opaque;
        mls_cluster_sub_t *s = n->s;
        const redisReply *kind, *ch;

        (void)conn;
        if (r->type == REDIS_REPLY_ERROR) {
                struct pending *p = pop(n);
                if (!p) {
                        mls_warn("redis cluster: %s: %s", n->addr, r->str);
                        return;
                }
                refused(s, n, p, r->str, r->len);
                free(p);
                return;
        }
        /* shard_conn made sure of the pub/sub shape: three elements or
         * more, kind and channel strings */
        kind = r->element[0];
        ch = r->element[1];
        if (strcmp(kind->str, "smessage") == 0) {
                if (r->element[2]->type == REDIS_REPLY_STRING)
                        s->conf.on_message(s->conf.opaque, r->element[2]->str,
                                           r->element[2]->len);
        } else if (strcmp(kind->str, "ssubscribe") == 0) {
                if (head_is(n, 1, ch)) {
                        free(pop(n));
                        subscribed(s, n, find_chan(s, ch));
                }
        } else if (strcmp(kind->str, "sunsubscribe") == 0) {
                if (head_is(n, 0, ch)) {
                        free(pop(n));
                        unsubscribed(s, n, find_chan(s, ch));
                } else {
                        dropped(s, n, find_chan(s, ch));
                }
        }
}

struct lost {
        mls_cluster_sub_t *s;
        struct node *n;
        size_t subscribed;
};

static void detach_lost(void *opaque, struct mls_strmap_entry *e)
{
        struct lost *l = opaque;
        struct chan *c = e->value;

        if (c->node != l->n)
                return;
        if (c->state == SUBSCRIBED)
                l->subscribed++;
        detach(l->s, c, 1);
}

static void node_closed(void *opaque, mls_shard_conn_t *conn, const char *why,
                        int oversize)
{
        struct node *n = opaque;
        mls_cluster_sub_t *s = n->s;
        struct lost l = {s, n, 0};
        struct pending *p, *next;

        (void)conn;
        s->errors++;
        if (oversize) {
                mls_warn("redis cluster: a message from %s is larger than %zu "
                         "bytes (GATEWAY_MAX_PAYLOAD_BYTES); reconnecting",
                         n->addr, s->conf.max_reply_bytes);
        }
        mls_strmap_foreach(&s->chans, detach_lost, &l);
        for (p = n->head; p; p = next) {
                next = p->next;
                free(p);
        }
        n->head = n->tail = NULL;
        /* freed by the next prune, outside this connection's callbacks */
        mls_shard_conn_close(n->conn);
        n->conn = NULL;
        if (l.subscribed)
                mls_warn("redis cluster: lost %s (%s); re-placing %zu "
                         "channel(s)",
                         n->addr, why, l.subscribed);
        else
                report(s, n->addr, why);
        s->map_stale = 1;
        update_state(s);
        want_refresh(s, 1);
        reconcile_all(s); /* forgets the unwanted channels */
}

/* The connection to host:port, made when there is none. */
static struct node *get_node(mls_cluster_sub_t *s, const char *host, int port)
{
        struct mls_shard_conn_conf cc;
        char errstr[160];
        struct node *n;

        for (n = s->nodes; n; n = n->next)
                if (n->conn && n->port == port && strcmp(n->host, host) == 0)
                        return n;
        n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->s = s;
        snprintf(n->host, sizeof(n->host), "%s", host);
        n->port = port;
        snprintf(n->addr, sizeof(n->addr), "%s:%d", host, port);
        cc = (struct mls_shard_conn_conf){
                .host = host,
                .port = port,
                .user = s->seeds[0].user,
                .password = s->seeds[0].password,
                .name = s->name,
                .max_reply_bytes = s->conf.max_reply_bytes,
                .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                .ping_ms = s->conf.ping_ms,
                .pubsub = 1,
                .on_ready = node_ready,
                .on_reply = node_reply,
                .on_closed = node_closed,
                .opaque = n,
        };
        n->conn = mls_shard_conn_new(s->loop, &cc, errstr, sizeof(errstr));
        if (!n->conn) {
                mls_error("redis cluster: %s: %s", n->addr, errstr);
                free(n);
                return NULL;
        }
        n->next = s->nodes;
        s->nodes = n;
        return n;
}

/* Sends SSUBSCRIBE (sub) or SUNSUBSCRIBE for c on n and queues the reply
 * awaited. Returns 0 or -1. */
static int send_cmd(struct node *n, struct chan *c, int sub)
{
        const char *argv[2] = {sub ? "SSUBSCRIBE" : "SUNSUBSCRIBE",
                               c->key->key};
        size_t argvlen[2] = {strlen(argv[0]), c->key->klen};
        struct pending *p = malloc(sizeof(*p) + c->key->klen);

        if (!p)
                return -1;
        if (mls_shard_conn_command(n->conn, 2, argv, argvlen) < 0) {
                free(p);
                return -1;
        }
        p->next = NULL;
        p->sub = sub;
        p->len = c->key->klen;
        memcpy(p->ch, c->key->key, c->key->klen);
        if (n->tail)
                n->tail->next = p;
        else
                n->head = p;
        n->tail = p;
        return 0;
}

/* --- channels ------------------------------------------------------------- */

/* Sends what c needs to be where it should (subscribed at its slot's
 * owner, or nowhere), unless a command for it is in flight; forgets it
 * once unwanted and unsubscribed. */
static void reconcile(mls_cluster_sub_t *s, struct chan *c)
{
        const struct mls_cluster_node *owner;
        struct node *n;

        if (s->closing)
                return;
        switch (c->state) {
        case SUBSCRIBING:
        case UNSUBSCRIBING:
                return;
        case SUBSCRIBED:
                owner = s->map && !s->map_stale
                                ? mls_cluster_map_owner(s->map, c->slot)
                                : NULL;
                if (c->wanted &&
                    (!owner || (owner->port == c->node->port &&
                                strcmp(owner->host, c->node->host) == 0)))
                        return;
                /* unwanted, or the map puts its slot elsewhere now */
                if (c->wanted && !c->moved_from[0])
                        snprintf(c->moved_from, sizeof(c->moved_from), "%s",
                                 c->node->addr);
                if (send_cmd(c->node, c, 0) == 0) {
                        c->state = UNSUBSCRIBING;
                        s->nsubscribed--;
                        update_state(s);
                }
                return;
        case IDLE:
                break;
        }
        if (!c->wanted) {
                if (!c->control) {
                        mls_strmap_remove(&s->chans, c->key->key, c->key->klen);
                        free(c);
                }
                return;
        }
        if (!s->map || s->map_stale)
                return;
        owner = mls_cluster_map_owner(s->map, c->slot);
        if (!owner)
                return; /* not covered: a refresh will tell */
        n = get_node(s, owner->host, owner->port);
        if (!n || !mls_shard_conn_ready(n->conn))
                return; /* node_ready() comes back */
        if (send_cmd(n, c, 1) == 0)
                attach(c, n, SUBSCRIBING);
}

static struct chan *chan_new(mls_cluster_sub_t *s, const char *ch, size_t len)
{
        struct chan *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->key = mls_strmap_put(&s->chans, ch, len, c);
        if (!c->key) {
                free(c);
                return NULL;
        }
        c->slot = mls_cluster_slot(ch, len);
        return c;
}

static void set_wanted(mls_cluster_sub_t *s, const char *model, size_t len,
                       int wanted)
{
        struct mls_buf ch;
        struct chan *c;

        if (s->closing)
                return;
        mls_buf_init(&ch, 4096);
        if (mls_channel_model(&ch, s->prefix, model, len) < 0) {
                mls_buf_free(&ch);
                return;
        }
        c = mls_strmap_get(&s->chans, ch.data, ch.len);
        if (!c && wanted && !(c = chan_new(s, ch.data, ch.len)))
                mls_error("redis cluster: out of memory watching %.*s",
                          (int)len, model);
        mls_buf_free(&ch);
        if (!c || c->control)
                return;
        c->wanted = wanted;
        if (!wanted)
                c->moved_from[0] = '\0';
        reconcile(s, c);
}

void mls_cluster_sub_watch(mls_cluster_sub_t *s, const char *model, size_t len)
{
        set_wanted(s, model, len, 1);
}

void mls_cluster_sub_unwatch(mls_cluster_sub_t *s, const char *model,
                             size_t len)
{
        set_wanted(s, model, len, 0);
}

/* --- life cycle ----------------------------------------------------------- */

mls_cluster_sub_t *mls_cluster_sub_new(uv_loop_t *loop,
                                       const struct mls_cluster_sub_conf *conf,
                                       char *errstr, size_t errstr_size)
{
        mls_cluster_sub_t *s;
        struct mls_buf ch;

        if (!conf->nseeds) {
                snprintf(errstr, errstr_size, "no seed node");
                return NULL;
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                goto oom;
        mls_strmap_init(&s->chans);
        s->seeds = malloc(conf->nseeds * sizeof(*s->seeds));
        s->prefix = strdup(conf->prefix);
        s->name = strdup(conf->client_name ? conf->client_name : "");
        if (!s->seeds || !s->prefix || !s->name)
                goto oom;
        memcpy(s->seeds, conf->seeds, conf->nseeds * sizeof(*s->seeds));
        s->conf = *conf;
        s->conf.seeds = s->seeds;
        s->conf.prefix = s->prefix;
        s->conf.client_name = s->name;
        mls_buf_init(&ch, 4096);
        if (mls_channel_control(&ch, s->prefix) == 0)
                s->control = chan_new(s, ch.data, ch.len);
        mls_buf_free(&ch);
        if (!s->control)
                goto oom;
        s->control->control = 1;
        s->control->wanted = 1;
        s->loop = loop;
        s->backoff_ms = BACKOFF_START_MS;
        uv_timer_init(loop, &s->refresh);
        s->refresh.data = s;
        uv_timer_init(loop, &s->movelog);
        s->movelog.data = s;
        uv_timer_start(&s->refresh, on_refresh, 0, 0);
        return s;
oom:
        if (s) {
                mls_strmap_free(&s->chans, free);
                free(s->seeds);
                free(s->prefix);
                free(s->name);
                free(s);
        }
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
}

size_t mls_cluster_sub_channels(const mls_cluster_sub_t *s)
{
        return s->nsubscribed;
}

int mls_cluster_sub_connected(const mls_cluster_sub_t *s)
{
        return s->up;
}

uint64_t mls_cluster_sub_errors(const mls_cluster_sub_t *s)
{
        return s->errors;
}

uint64_t mls_cluster_sub_resubscribes(const mls_cluster_sub_t *s)
{
        return s->resubscribes;
}

void mls_cluster_sub_close(mls_cluster_sub_t *s)
{
        struct node *n;

        if (!s || s->closing)
                return;
        s->closing = 1;
        s->up = 0;
        flush_moves(s);
        for (n = s->nodes; n; n = n->next) {
                mls_shard_conn_close(n->conn);
                n->conn = NULL;
        }
        mls_shard_conn_close(s->mapconn);
        s->mapconn = NULL;
        uv_timer_stop(&s->refresh);
        uv_close((uv_handle_t *)&s->refresh, NULL);
        uv_timer_stop(&s->movelog);
        uv_close((uv_handle_t *)&s->movelog, NULL);
}

void mls_cluster_sub_free(mls_cluster_sub_t *s)
{
        struct node *n, *next;

        if (!s)
                return;
        for (n = s->nodes; n; n = next) {
                next = n->next;
                free_node(n);
        }
        mls_strmap_free(&s->chans, free);
        mls_cluster_map_free(s->map);
        free(s->seeds);
        free(s->prefix);
        free(s->name);
        free(s);
}
