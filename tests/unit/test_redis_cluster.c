/* Redis Cluster: key slots (the spec's vectors), the slot map from CLUSTER
 * SLOTS replies built by hand, MOVED/ASK parsing and seed lists. The
 * publisher against fake nodes (MOVED, ASK, a node dying mid-pipeline,
 * bounded retries, AUTH); against a real cluster it is
 * tests/cluster/cluster_pub_check.c. */
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/redis_cluster.h"
#include "test.h"

/* ------------------------------------------------- hand-built replies */

static redisReply *rnew(int type)
{
        redisReply *r = calloc(1, sizeof(*r));

        if (!r)
                abort();
        r->type = type;
        return r;
}

static redisReply *rnum(long long v)
{
        redisReply *r = rnew(REDIS_REPLY_INTEGER);

        r->integer = v;
        return r;
}

static redisReply *rstr_type(int type, const char *s)
{
        redisReply *r = rnew(type);

        r->len = strlen(s);
        r->str = malloc(r->len + 1);
        if (!r->str)
                abort();
        memcpy(r->str, s, r->len + 1);
        return r;
}

static redisReply *rstr(const char *s)
{
        return rstr_type(REDIS_REPLY_STRING, s);
}

/* An array of n elements, given as redisReply pointers. */
static redisReply *rarr(size_t n, ...)
{
        redisReply *r = rnew(REDIS_REPLY_ARRAY);
        va_list ap;

        r->elements = n;
        r->element = calloc(n ? n : 1, sizeof(*r->element));
        if (!r->element)
                abort();
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                r->element[i] = va_arg(ap, redisReply *);
        va_end(ap);
        return r;
}

static void rfree(redisReply *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->elements; i++)
                rfree(r->element[i]);
        free(r->element);
        free(r->str);
        free(r);
}

/* A Redis 7 node entry: endpoint, port, id, metadata. */
static redisReply *rnode(const char *host, int port, const char *id)
{
        return rarr(4, host ? rstr(host) : rnew(REDIS_REPLY_NIL), rnum(port),
                    rstr(id), rarr(0));
}

/* The 3 masters / 3 replicas layout redis-cli --cluster create makes. */
static redisReply *three_masters(void)
{
        return rarr(3,
                    rarr(4, rnum(0), rnum(5460),
                         rnode("127.0.0.1", 7000, "aaaa"),
                         rnode("127.0.0.1", 7004, "eeee")),
                    rarr(4, rnum(5461), rnum(10922),
                         rnode("127.0.0.1", 7001, "bbbb"),
                         rnode("127.0.0.1", 7005, "ffff")),
                    rarr(4, rnum(10923), rnum(16383),
                         rnode("127.0.0.1", 7002, "cccc"),
                         rnode("127.0.0.1", 7003, "dddd")));
}

/* ------------------------------------------------------------ slots */

/* A plain bitwise CRC16-XMODEM of the whole key, to check against. */
static unsigned whole_key(const char *s)
{
        unsigned crc = 0;

        for (; *s; s++) {
                crc ^= (unsigned)(unsigned char)*s << 8;
                for (int i = 0; i < 8; i++)
                        crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
                crc &= 0xffff;
        }
        return crc % 16384;
}

MLS_TEST(redis_cluster_slot_crc16_vector)
{
        /* the spec: CRC16("123456789") = 0x31C3 */
        CHECK_INT_EQ(mls_cluster_slot("123456789", 9), 0x31C3 % 16384);
        CHECK_INT_EQ(mls_cluster_slot("123456789", 9), 12739);
        CHECK_INT_EQ(mls_cluster_slot("", 0), 0);
        /* values Redis' CLUSTER KEYSLOT gives */
        CHECK_INT_EQ(mls_cluster_slot("foo", 3), 12182);
        CHECK_INT_EQ(mls_cluster_slot("bar", 3), 5061);
        CHECK_INT_EQ(mls_cluster_slot("hello", 5), 866);
}

MLS_TEST(redis_cluster_slot_hash_tags)
{
        const char *a = "{user1000}.following", *b = "{user1000}.followers";

        CHECK_INT_EQ(mls_cluster_slot(a, strlen(a)),
                     mls_cluster_slot(b, strlen(b)));
        CHECK_INT_EQ(mls_cluster_slot(a, strlen(a)),
                     mls_cluster_slot("user1000", 8));
        /* empty tag: the whole key */
        CHECK_INT_EQ(mls_cluster_slot("foo{}{bar}", 10),
                     whole_key("foo{}{bar}"));
        /* the first '{' and the next '}': "{bar" */
        CHECK_INT_EQ(mls_cluster_slot("foo{{bar}}zap", 13),
                     mls_cluster_slot("{bar", 4));
        /* the first tag only */
        CHECK_INT_EQ(mls_cluster_slot("foo{bar}{zap}", 13),
                     mls_cluster_slot("bar", 3));
        /* no '}' after the '{': the whole key */
        CHECK(mls_cluster_slot("foo{bar", 7) != mls_cluster_slot("bar", 3));
        CHECK_INT_EQ(mls_cluster_slot("}{", 2), whole_key("}{"));
        /* the channels the engine uses per model */
        CHECK_INT_EQ(mls_cluster_slot("ml:stream:inference:{model-7}", 29),
                     mls_cluster_slot("model-7", 7));
}

MLS_TEST(redis_cluster_slot_matches_bitwise_crc)
{
        char key[64];

        for (int i = 0; i < 2000; i++) {
                int n = snprintf(key, sizeof(key), "k%d:%x:\xff%d", i, i * 7919,
                                 i % 13);
                CHECK_INT_EQ(mls_cluster_slot(key, (size_t)n), whole_key(key));
        }
}

/* --------------------------------------------------------- slot map */

MLS_TEST(redis_cluster_map_three_masters)
{
        redisReply *r = three_masters();
        char err[256] = "";
        mls_cluster_map_t *m =
                mls_cluster_map_from_reply(r, "h", err, sizeof(err));
        const struct mls_cluster_node *n;

        rfree(r);
        CHECK(m);
        CHECK_INT_EQ(mls_cluster_map_covered(m), 16384);
        CHECK_INT_EQ(mls_cluster_map_nmasters(m), 3);
        CHECK_INT_EQ(mls_cluster_map_nnodes(m), 6);
        n = mls_cluster_map_owner(m, 0);
        CHECK(n);
        CHECK_STR_EQ(n->host, "127.0.0.1");
        CHECK_INT_EQ(n->port, 7000);
        CHECK_STR_EQ(n->id, "aaaa");
        CHECK_INT_EQ(mls_cluster_map_owner(m, 5460)->port, 7000);
        CHECK_INT_EQ(mls_cluster_map_owner(m, 5461)->port, 7001);
        CHECK_INT_EQ(mls_cluster_map_owner(m, 12739)->port, 7002);
        CHECK_INT_EQ(mls_cluster_map_owner(m, 16383)->port, 7002);
        CHECK(mls_cluster_map_owner(m, 16384) == NULL);
        CHECK_INT_EQ(mls_cluster_map_master(m, 0)->port, 7000);
        CHECK_INT_EQ(mls_cluster_map_master(m, 2)->port, 7002);
        CHECK(mls_cluster_map_master(m, 3) == NULL);
        /* masters first, then replicas */
        CHECK_INT_EQ(mls_cluster_map_node(m, 2)->port, 7002);
        CHECK_INT_EQ(mls_cluster_map_node(m, 3)->port, 7004);
        CHECK_STR_EQ(mls_cluster_map_node(m, 5)->id, "dddd");
        CHECK(mls_cluster_map_node(m, 6) == NULL);
        mls_cluster_map_free(m);
}

MLS_TEST(redis_cluster_map_split_ranges_gaps_and_endpoints)
{
        /* 7000 owns two ranges; 100-199 and 301-16383 have no owner; old
         * replies have no id; a NULL endpoint means the asked host */
        redisReply *r = rarr(
                3, rarr(3, rnum(0), rnum(99), rnode("10.0.0.1", 7000, "a")),
                rarr(3, rnum(200), rnum(299),
                     rarr(2, rstr("10.0.0.2"), rnum(7001))),
                rarr(4, rnum(300), rnum(300), rnode("10.0.0.1", 7000, "a"),
                     rnode(NULL, 7009, "z")));
        char err[256] = "";
        mls_cluster_map_t *m =
                mls_cluster_map_from_reply(r, "seed.example", err, sizeof(err));

        rfree(r);
        CHECK(m);
        CHECK_INT_EQ(mls_cluster_map_covered(m), 201);
        CHECK_INT_EQ(mls_cluster_map_nmasters(m), 2);
        CHECK_INT_EQ(mls_cluster_map_owner(m, 300)->port, 7000);
        CHECK(mls_cluster_map_owner(m, 150) == NULL);
        CHECK(mls_cluster_map_owner(m, 301) == NULL);
        CHECK_STR_EQ(mls_cluster_map_owner(m, 250)->id, "");
        CHECK_STR_EQ(mls_cluster_map_node(m, 2)->host, "seed.example");
        CHECK_INT_EQ(mls_cluster_map_node(m, 2)->port, 7009);

        /* MOVED: the slot changes owner; a new node becomes a master and
         * one that loses its last slot stops being one */
        CHECK_INT_EQ(mls_cluster_map_set_owner(m, 150, "10.0.0.3", 7002), 0);
        CHECK_INT_EQ(mls_cluster_map_covered(m), 202);
        CHECK_INT_EQ(mls_cluster_map_owner(m, 150)->port, 7002);
        CHECK_INT_EQ(mls_cluster_map_nmasters(m), 3);
        for (unsigned s = 200; s <= 299; s++)
                CHECK_INT_EQ(mls_cluster_map_set_owner(m, s, "10.0.0.1", 7000),
                             0);
        CHECK_INT_EQ(mls_cluster_map_nmasters(m), 2);
        CHECK_INT_EQ(mls_cluster_map_covered(m), 202);
        CHECK_INT_EQ(mls_cluster_map_set_owner(m, 16384, "10.0.0.1", 7000), -1);
        mls_cluster_map_free(m);

        /* an empty cluster: a map with nothing covered */
        r = rarr(0);
        m = mls_cluster_map_from_reply(r, "h", err, sizeof(err));
        rfree(r);
        CHECK(m);
        CHECK_INT_EQ(mls_cluster_map_covered(m), 0);
        CHECK_INT_EQ(mls_cluster_map_nmasters(m), 0);
        mls_cluster_map_free(m);
}

/* Each malformed reply gives NULL and a message naming what is wrong. */
static int map_fails(redisReply *r, const char *want)
{
        char err[256] = "";
        mls_cluster_map_t *m =
                mls_cluster_map_from_reply(r, "h", err, sizeof(err));
        int ok = m == NULL && strstr(err, want) != NULL;

        if (!ok)
                fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, want);
        mls_cluster_map_free(m);
        rfree(r);
        return ok;
}

MLS_TEST(redis_cluster_map_malformed)
{
        char err[256] = "";

        CHECK(mls_cluster_map_from_reply(NULL, "h", err, sizeof(err)) == NULL);
        CHECK_CONTAINS(err, "no reply");
        CHECK(map_fails(rstr_type(REDIS_REPLY_ERROR,
                                  "ERR This instance has cluster support "
                                  "disabled"),
                        "cluster support disabled"));
        CHECK(map_fails(rnum(3), "not an array"));
        CHECK(map_fails(rarr(1, rnum(0)), "entry 1: not [start, end"));
        CHECK(map_fails(rarr(1, rarr(2, rnum(0), rnum(10))),
                        "entry 1: not [start, end"));
        CHECK(map_fails(
                rarr(1, rarr(3, rstr("0"), rnum(10), rnode("h", 1, "a"))),
                "not two integers"));
        CHECK(map_fails(rarr(2, rnew(REDIS_REPLY_NIL),
                             rarr(3, rnum(10), rnum(5), rnode("h", 1, "a"))),
                        "entry 1: not"));
        CHECK(map_fails(rarr(2, rarr(3, rnum(0), rnum(1), rnode("h", 1, "a")),
                             rarr(3, rnum(10), rnum(5), rnode("h", 1, "a"))),
                        "entry 2: slot range 10-5"));
        CHECK(map_fails(
                rarr(1, rarr(3, rnum(0), rnum(16384), rnode("h", 1, "a"))),
                "not within 0-16383"));
        CHECK(map_fails(
                rarr(1, rarr(3, rnum(0), rnum(1), rarr(2, rnum(1), rnum(1)))),
                "host is not a string"));
        CHECK(map_fails(rarr(1, rarr(3, rnum(0), rnum(1),
                                     rarr(2, rstr("h"), rnum(70000)))),
                        "port is not 1..65535"));
        CHECK(map_fails(rarr(1, rarr(3, rnum(0), rnum(1), rstr("h:1"))),
                        "not [host, port"));
        CHECK(map_fails(
                rarr(1, rarr(4, rnum(0), rnum(1), rnode("h", 1, "a"), rnum(5))),
                "not [host, port"));
        CHECK(map_fails(rarr(2, rarr(3, rnum(0), rnum(9), rnode("h", 1, "a")),
                             rarr(3, rnum(9), rnum(12), rnode("h", 2, "b"))),
                        "entry 2: slot 9 has two masters"));
        /* the unknown endpoint with nothing to fall back on */
        {
                redisReply *r = rarr(
                        1, rarr(3, rnum(0), rnum(1), rnode(NULL, 7000, "a")));
                mls_cluster_map_t *m =
                        mls_cluster_map_from_reply(r, NULL, err, sizeof(err));
                rfree(r);
                CHECK(m == NULL);
                CHECK_CONTAINS(err, "endpoint is unknown");
        }
}

/* -------------------------------------------------------- redirects */

MLS_TEST(redis_cluster_redirect_parse)
{
        struct mls_cluster_redirect rd;
        const char *s;

        s = "MOVED 3999 127.0.0.1:6381";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_INT_EQ(rd.kind, MLS_CLUSTER_MOVED);
        CHECK_INT_EQ(rd.slot, 3999);
        CHECK_STR_EQ(rd.host, "127.0.0.1");
        CHECK_INT_EQ(rd.port, 6381);

        s = "ASK 3999 127.0.0.1:6381";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_INT_EQ(rd.kind, MLS_CLUSTER_ASK);
        CHECK_INT_EQ(rd.slot, 3999);
        CHECK_STR_EQ(rd.host, "127.0.0.1");
        CHECK_INT_EQ(rd.port, 6381);

        s = "MOVED 16383 redis-2.example.com:7000";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_STR_EQ(rd.host, "redis-2.example.com");
        CHECK_INT_EQ(rd.slot, 16383);

        /* IPv6, bare and bracketed; an unknown endpoint */
        s = "MOVED 0 ::1:7000";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_STR_EQ(rd.host, "::1");
        CHECK_INT_EQ(rd.port, 7000);
        s = "ASK 1 [fe80::1]:7001";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_STR_EQ(rd.host, "fe80::1");
        s = "MOVED 12 :7002";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, strlen(s), &rd), 0);
        CHECK_STR_EQ(rd.host, "");
        CHECK_INT_EQ(rd.port, 7002);

        /* a length shorter than the string: only those bytes count */
        s = "MOVED 5 h:12345678";
        CHECK_INT_EQ(mls_cluster_redirect_parse(s, 13, &rd), 0);
        CHECK_INT_EQ(rd.port, 123);

        /* not redirects, or malformed ones */
        const char *bad[] = {
                "CLUSTERDOWN The cluster is down",
                "TRYAGAIN Multiple keys request during rehashing of slot",
                "ERR unknown command 'SPUBLISH'",
                "MOVED",
                "MOVED ",
                "MOVED 3999",
                "MOVED 3999 ",
                "MOVED 3999 127.0.0.1",
                "MOVED 3999 127.0.0.1:",
                "MOVED 3999 127.0.0.1:0",
                "MOVED 3999 127.0.0.1:65536",
                "MOVED 3999 127.0.0.1:63x",
                "MOVED 16384 127.0.0.1:6381",
                "MOVED -1 127.0.0.1:6381",
                "MOVED x 127.0.0.1:6381",
                "MOVED 3999  127.0.0.1:6381",
                "moved 3999 127.0.0.1:6381",
                "ASKX 3999 127.0.0.1:6381",
                "MOVED 99999999999999 127.0.0.1:6381",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                rd.port = 42;
                if (mls_cluster_redirect_parse(bad[i], strlen(bad[i]), &rd) !=
                    -1) {
                        mls_test_fail(__FILE__, __LINE__, "parsed \"%s\"",
                                      bad[i]);
                        return;
                }
                CHECK_INT_EQ(rd.port, 0);
                CHECK_INT_EQ(rd.kind, 0);
        }
}

/* ------------------------------------------------------------ seeds */

MLS_TEST(redis_cluster_seeds_parse)
{
        struct mls_redis_url *v;
        size_t n;
        char err[256] = "";

        CHECK_INT_EQ(
                mls_cluster_seeds_parse("redis://127.0.0.1:7000,127.0.0.1:7001,"
                                        "127.0.0.1:7002/0",
                                        &v, &n, err, sizeof(err)),
                0);
        CHECK_INT_EQ(n, 3);
        CHECK_STR_EQ(v[0].host, "127.0.0.1");
        CHECK_INT_EQ(v[0].port, 7000);
        CHECK_INT_EQ(v[2].port, 7002);
        CHECK_INT_EQ(v[1].db, 0);
        CHECK_STR_EQ(v[1].password, "");
        free(v);

        /* credentials (percent-decoded) shared by every node; default
         * port; IPv6; no db */
        CHECK_INT_EQ(mls_cluster_seeds_parse(
                             "redis://app:p%40ss%2C1@a.example,[::1]:7001,"
                             "b.example:7002",
                             &v, &n, err, sizeof(err)),
                     0);
        CHECK_INT_EQ(n, 3);
        for (size_t i = 0; i < n; i++) {
                CHECK_STR_EQ(v[i].user, "app");
                CHECK_STR_EQ(v[i].password, "p@ss,1");
        }
        CHECK_STR_EQ(v[0].host, "a.example");
        CHECK_INT_EQ(v[0].port, 6379);
        CHECK_STR_EQ(v[1].host, "::1");
        CHECK_INT_EQ(v[1].port, 7001);
        CHECK_STR_EQ(v[2].host, "b.example");
        free(v);

        /* one node is a list of one; a password without a user */
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:secret@h:1/", &v, &n,
                                             err, sizeof(err)),
                     0);
        CHECK_INT_EQ(n, 1);
        CHECK_STR_EQ(v[0].password, "secret");
        CHECK_STR_EQ(v[0].user, "");
        free(v);

        /* errors: say what, never the password */
        v = (struct mls_redis_url *)1;
        n = 7;
        CHECK_INT_EQ(
                mls_cluster_seeds_parse("http://h:1", &v, &n, err, sizeof(err)),
                -1);
        CHECK(v == NULL);
        CHECK_INT_EQ(n, 0);
        CHECK_CONTAINS(err, "redis://");
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:pw@h:1,,h:3/0", &v, &n,
                                             err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "node 2 of the list is empty");
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:pw@h:1,", &v, &n, err,
                                             sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "node 2");
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:pw@", &v, &n, err,
                                             sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "node 1");
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:pw@h:1,h:99999/0", &v,
                                             &n, err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "node 2: h:99999");
        CHECK(strstr(err, "pw") == NULL);
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://h:1,h:2/3", &v, &n, err,
                                             sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "database 0 only");
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://:p%zz@h:1,h:2", &v, &n,
                                             err, sizeof(err)),
                     -1);
        CHECK_CONTAINS(err, "escape");
        {
                char big[2048] = "redis://";
                for (int i = 0; i < 65; i++)
                        strcat(big, i ? ",h:1" : "h:1");
                CHECK_INT_EQ(
                        mls_cluster_seeds_parse(big, &v, &n, err, sizeof(err)),
                        -1);
                CHECK_CONTAINS(err, "at most 64");
        }
        CHECK(v == NULL);
        CHECK_INT_EQ(n, 0);
}

/* ------------------------------------------------------- publisher */

/* Without a reachable node: connect and flush fail with the node named,
 * the batch is dropped, and nothing is kept for the retry. */
MLS_TEST(redis_cluster_pub_unreachable)
{
        struct mls_redis_url *v;
        struct mls_cluster_pub_stats st;
        mls_cluster_pub_t *p;
        size_t n;
        char err[512] = "";

        /* port 1 on loopback: refused at once */
        CHECK_INT_EQ(mls_cluster_seeds_parse("redis://127.0.0.1:1/0", &v, &n,
                                             err, sizeof(err)),
                     0);
        p = mls_cluster_pub_new(v, n, 4096);
        free(v);
        CHECK(p);
        CHECK(!mls_cluster_pub_connected(p));
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "127.0.0.1:1");
        CHECK_INT_EQ(mls_cluster_pub_add(p, "ch", 2, "x", 1), 0);
        CHECK_INT_EQ(mls_cluster_pub_queued(p), 1);
        err[0] = '\0';
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "127.0.0.1:1");
        CHECK_INT_EQ(mls_cluster_pub_queued(p), 0);
        /* the batch limit: a payload that does not fit fails the add and
         * the next flush */
        {
                static char big[8192];
                CHECK_INT_EQ(mls_cluster_pub_add(p, "ch", 2, big, sizeof(big)),
                             -1);
                CHECK_INT_EQ(mls_cluster_pub_add(p, "ch", 2, "x", 1), -1);
                CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
                CHECK_CONTAINS(err, "could not be queued");
                CHECK_INT_EQ(mls_cluster_pub_add(p, "ch", 2, "x", 1), 0);
        }
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.acked, 0);
        CHECK_INT_EQ(st.failed_flush, 2);
        CHECK(st.conn_errors >= 2);
        mls_cluster_pub_free(p);
        mls_cluster_pub_free(NULL);
        CHECK(mls_cluster_pub_new(NULL, 0, 0) == NULL);
}

/* ------------------------------------------- publisher, fake nodes */

/* Up to 3 fake cluster nodes on loopback, served by one thread: each
 * answers AUTH, PING, CLUSTER SLOTS (every slot on node `owner`), ASKING
 * and SPUBLISH the way its mode says. */

enum fake_mode {
        FAKE_OWNER,       /* :1 */
        FAKE_MOVED,       /* -MOVED slot to `to` */
        FAKE_ASK,         /* -ASK slot to `to` */
        FAKE_ASKING_ONLY, /* :1 after ASKING, else -MOVED to `to` */
        FAKE_DROP,        /* close the connection after `left` replies */
        FAKE_DOWN,        /* -CLUSTERDOWN */
        FAKE_HOSTILE,     /* fk.hostile's bytes, then close */
        FAKE_SILENT,      /* no answer at all (a stopped process) */
};

struct fake_node {
        int lfd, port;
        enum fake_mode mode;
        int to;   /* node index for redirects */
        int left; /* FAKE_DROP: replies before the close */
        enum fake_mode after_drop;
        long published, auths, conns, drops;
};

struct fake_client {
        int fd, node, asking, authed;
        char buf[1 << 16];
        size_t len;
};

static struct fake {
        pthread_t th;
        pthread_mutex_t mu;
        int stop, owner;
        const char *password; /* required when set */
        struct fake_node n[3];
        struct fake_client c[16];
        const char *hostile; /* FAKE_HOSTILE's answer */
        size_t hostile_len;
} fk;

static void fake_reply(int fd, const char *s, size_t len)
{
        while (len > 0) {
                ssize_t w = write(fd, s, len);
                if (w <= 0)
                        return;
                s += w;
                len -= (size_t)w;
        }
}

static void fake_replyf(int fd, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void fake_replyf(int fd, const char *fmt, ...)
{
        char out[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(out, sizeof(out), fmt, ap);
        va_end(ap);
        fake_reply(fd, out, (size_t)n);
}

/* Parses one RESP command at b; returns its length (0: incomplete). */
static size_t fake_parse(char *b, size_t len, int *argc, char **argv,
                         size_t *argl)
{
        char *p = b, *end = b + len, *nl;
        long n;

        if (len < 4 || *p != '*' || !(nl = memchr(p, '\n', len)))
                return 0;
        n = strtol(p + 1, NULL, 10);
        p = nl + 1;
        *argc = 0;
        for (long i = 0; i < n; i++) {
                long l;
                if (p >= end || *p != '$' ||
                    !(nl = memchr(p, '\n', (size_t)(end - p))))
                        return 0;
                l = strtol(p + 1, NULL, 10);
                p = nl + 1;
                if (end - p < l + 2)
                        return 0;
                if (i < 4) {
                        argv[i] = p;
                        argl[i] = (size_t)l;
                        (*argc)++;
                }
                p += l + 2;
        }
        return (size_t)(p - b);
}

static void fake_close(struct fake_client *c)
{
        close(c->fd);
        c->fd = -1;
}

static void fake_command(struct fake_client *c, int argc, char **argv,
                         size_t *argl)
{
        struct fake_node *nd = &fk.n[c->node];
        int asking = c->asking;

        c->asking = 0;
        if (argc >= 2 && argl[0] == 4 && !strncasecmp(argv[0], "AUTH", 4)) {
                nd->auths++;
                c->authed =
                        fk.password && argl[argc - 1] == strlen(fk.password) &&
                        !memcmp(argv[argc - 1], fk.password, argl[argc - 1]);
                fake_replyf(c->fd,
                            c->authed ? "+OK\r\n" : "-WRONGPASS invalid\r\n");
                return;
        }
        if (fk.password && !c->authed) {
                fake_replyf(c->fd, "-NOAUTH Authentication required.\r\n");
                return;
        }
        if (argc == 1 && !strncasecmp(argv[0], "PING", 4)) {
                fake_replyf(c->fd, "+PONG\r\n");
                return;
        }
        if (argc == 1 && !strncasecmp(argv[0], "ASKING", 6)) {
                c->asking = 1;
                fake_replyf(c->fd, "+OK\r\n");
                return;
        }
        if (argc == 2 && !strncasecmp(argv[0], "CLUSTER", 7)) {
                fake_replyf(c->fd,
                            "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n"
                            "127.0.0.1\r\n:%d\r\n$4\r\nnode\r\n",
                            fk.n[fk.owner].port);
                return;
        }
        if (argc != 3 || strncasecmp(argv[0], "SPUBLISH", 8)) {
                fake_replyf(c->fd, "-ERR unknown command\r\n");
                return;
        }
        switch (nd->mode) {
        case FAKE_DROP:
                if (nd->left == 0) {
                        nd->drops++;
                        nd->mode = nd->after_drop;
                        fake_close(c);
                        return;
                }
                nd->left--;
                /* fall through */
        case FAKE_OWNER:
                nd->published++;
                fake_replyf(c->fd, ":1\r\n");
                return;
        case FAKE_ASKING_ONLY:
                if (asking) {
                        nd->published++;
                        fake_replyf(c->fd, ":1\r\n");
                        return;
                }
                /* fall through */
        case FAKE_MOVED:
                fake_replyf(c->fd, "-MOVED %u 127.0.0.1:%d\r\n",
                            mls_cluster_slot(argv[1], argl[1]),
                            fk.n[nd->to].port);
                return;
        case FAKE_ASK:
                fake_replyf(c->fd, "-ASK %u 127.0.0.1:%d\r\n",
                            mls_cluster_slot(argv[1], argl[1]),
                            fk.n[nd->to].port);
                return;
        case FAKE_DOWN:
                fake_replyf(c->fd, "-CLUSTERDOWN The cluster is down\r\n");
                return;
        case FAKE_SILENT:
                return;
        case FAKE_HOSTILE:
                /* returns once written or once the publisher hangs up */
                fake_reply(c->fd, fk.hostile, fk.hostile_len);
                fake_close(c);
                return;
        }
}

static void *fake_thread(void *arg)
{
        (void)arg;
        for (;;) {
                struct pollfd pfd[3 + 16];
                int map[3 + 16], n = 0;

                pthread_mutex_lock(&fk.mu);
                if (fk.stop) {
                        pthread_mutex_unlock(&fk.mu);
                        return NULL;
                }
                for (int i = 0; i < 3; i++) {
                        pfd[n] = (struct pollfd){.fd = fk.n[i].lfd,
                                                 .events = POLLIN};
                        map[n++] = -1 - i;
                }
                for (int i = 0; i < 16; i++)
                        if (fk.c[i].fd >= 0) {
                                pfd[n] = (struct pollfd){.fd = fk.c[i].fd,
                                                         .events = POLLIN};
                                map[n++] = i;
                        }
                pthread_mutex_unlock(&fk.mu);
                if (poll(pfd, (nfds_t)n, 20) <= 0)
                        continue;
                pthread_mutex_lock(&fk.mu);
                for (int k = 0; k < n; k++) {
                        if (!pfd[k].revents)
                                continue;
                        if (map[k] < 0) {
                                int node = -1 - map[k];
                                int fd = accept(pfd[k].fd, NULL, NULL);
                                for (int i = 0; fd >= 0 && i < 16; i++)
                                        if (fk.c[i].fd < 0) {
                                                memset(&fk.c[i], 0,
                                                       sizeof(fk.c[i]));
                                                fk.c[i].fd = fd;
                                                fk.c[i].node = node;
                                                fk.n[node].conns++;
                                                fd = -1;
                                        }
                                if (fd >= 0)
                                        close(fd);
                                continue;
                        }
                        struct fake_client *c = &fk.c[map[k]];
                        ssize_t r = read(c->fd, c->buf + c->len,
                                         sizeof(c->buf) - c->len);
                        if (r <= 0) {
                                fake_close(c);
                                continue;
                        }
                        c->len += (size_t)r;
                        for (;;) {
                                char *argv[4];
                                size_t argl[4], used;
                                int argc;
                                used = fake_parse(c->buf, c->len, &argc, argv,
                                                  argl);
                                if (!used)
                                        break;
                                fake_command(c, argc, argv, argl);
                                if (c->fd < 0)
                                        break;
                                memmove(c->buf, c->buf + used, c->len - used);
                                c->len -= used;
                        }
                }
                pthread_mutex_unlock(&fk.mu);
        }
}

static int fake_running;
static void fake_stop(void);

static int fake_start(const char *password)
{
        if (fake_running) /* a failed test returned early */
                fake_stop();
        memset(&fk, 0, sizeof(fk));
        pthread_mutex_init(&fk.mu, NULL);
        fk.password = password;
        for (int i = 0; i < 16; i++)
                fk.c[i].fd = -1;
        for (int i = 0; i < 3; i++) {
                struct sockaddr_in a = {.sin_family = AF_INET,
                                        .sin_addr.s_addr =
                                                htonl(INADDR_LOOPBACK)};
                socklen_t al = sizeof(a);
                fk.n[i].lfd = socket(AF_INET, SOCK_STREAM, 0);
                if (fk.n[i].lfd < 0 ||
                    bind(fk.n[i].lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
                    listen(fk.n[i].lfd, 16) < 0 ||
                    getsockname(fk.n[i].lfd, (struct sockaddr *)&a, &al) < 0)
                        return -1;
                fk.n[i].port = ntohs(a.sin_port);
        }
        if (pthread_create(&fk.th, NULL, fake_thread, NULL) != 0)
                return -1;
        fake_running = 1;
        return 0;
}

static void fake_stop(void)
{
        fake_running = 0;
        pthread_mutex_lock(&fk.mu);
        fk.stop = 1;
        pthread_mutex_unlock(&fk.mu);
        pthread_join(fk.th, NULL);
        for (int i = 0; i < 16; i++)
                if (fk.c[i].fd >= 0)
                        close(fk.c[i].fd);
        for (int i = 0; i < 3; i++)
                close(fk.n[i].lfd);
        pthread_mutex_destroy(&fk.mu);
}

static void fake_set(int node, enum fake_mode mode, int to)
{
        pthread_mutex_lock(&fk.mu);
        fk.n[node].mode = mode;
        fk.n[node].to = to;
        pthread_mutex_unlock(&fk.mu);
}

/* A counter of the fake's, read under its lock. */
static long fake_count(const long *counter)
{
        long v;

        pthread_mutex_lock(&fk.mu);
        v = *counter;
        pthread_mutex_unlock(&fk.mu);
        return v;
}

static long fake_published(int node)
{
        return fake_count(&fk.n[node].published);
}

static long fake_conns(int node)
{
        return fake_count(&fk.n[node].conns);
}

/* A publisher seeded with node 0 (and a password when given). */
static mls_cluster_pub_t *fake_pub(const char *password)
{
        struct mls_redis_url u;

        memset(&u, 0, sizeof(u));
        strcpy(u.host, "127.0.0.1");
        u.port = fk.n[0].port;
        if (password)
                strcpy(u.password, password);
        return mls_cluster_pub_new(&u, 1, 0);
}

static void add_n(mls_cluster_pub_t *p, int n)
{
        char ch[32], pl[32];

        for (int i = 0; i < n; i++) {
                int cl = snprintf(ch, sizeof(ch), "c:{m%d}", i % 7);
                int pn = snprintf(pl, sizeof(pl), "p%d", i);
                if (mls_cluster_pub_add(p, ch, (size_t)cl, pl, (size_t)pn))
                        abort();
        }
}

MLS_TEST(redis_cluster_pub_fake_moved)
{
        struct mls_cluster_pub_stats st;
        long auths[2], conns[2];
        mls_cluster_pub_t *p;
        char err[512] = "";

        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start("s3cret"), 0);
        p = fake_pub("s3cret");
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), 0);
        CHECK(mls_cluster_pub_connected(p));
        add_n(p, 100);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(0), 100);

        /* the slots move to node 1; node 0 answers MOVED */
        pthread_mutex_lock(&fk.mu);
        fk.owner = 1;
        pthread_mutex_unlock(&fk.mu);
        fake_set(0, FAKE_MOVED, 1);
        add_n(p, 100);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(1), 100);
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.moved, 100);
        /* the next batch fetches the map first: no MOVED */
        add_n(p, 100);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(1), 200);
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.moved, 100);
        CHECK_INT_EQ(st.acked, 300);
        CHECK_INT_EQ(st.failed_flush, 0);
        /* every new connection authenticated */
        pthread_mutex_lock(&fk.mu);
        auths[0] = fk.n[0].auths;
        auths[1] = fk.n[1].auths;
        conns[0] = fk.n[0].conns;
        conns[1] = fk.n[1].conns;
        pthread_mutex_unlock(&fk.mu);
        CHECK(auths[0] >= 1 && auths[1] >= 1);
        CHECK_INT_EQ(auths[0], conns[0]);
        CHECK_INT_EQ(auths[1], conns[1]);
        mls_cluster_pub_free(p);
        /* a wrong password: the error says AUTH, not the password */
        p = fake_pub("wrong");
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "AUTH: WRONGPASS");
        CHECK(strstr(err, "wrong ") == NULL);
        mls_cluster_pub_free(p);
        fake_stop();
}

MLS_TEST(redis_cluster_pub_fake_ask)
{
        struct mls_cluster_pub_stats st;
        mls_cluster_pub_t *p;
        char err[512] = "";

        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start(NULL), 0);
        p = fake_pub(NULL);
        /* node 0 owns the slots but asks for node 1, which takes the
         * command only after ASKING (else MOVED back to node 0) */
        fake_set(0, FAKE_ASK, 1);
        fake_set(1, FAKE_ASKING_ONLY, 0);
        add_n(p, 50);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(1), 50);
        CHECK_INT_EQ(fake_published(0), 0);
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.ask, 50);
        CHECK_INT_EQ(st.moved, 0);
        /* ASK leaves the map alone: node 0 is asked first again */
        add_n(p, 10);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.ask, 60);
        mls_cluster_pub_free(p);
        fake_stop();
}

MLS_TEST(redis_cluster_pub_fake_failover)
{
        struct mls_cluster_pub_stats st;
        mls_cluster_pub_t *p;
        char err[512] = "";

        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start(NULL), 0);
        p = fake_pub(NULL);
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), 0);
        /* node 0 dies after 30 replies; node 1 takes over its slots */
        pthread_mutex_lock(&fk.mu);
        fk.n[0].mode = FAKE_DROP;
        fk.n[0].left = 30;
        fk.n[0].after_drop = FAKE_MOVED;
        fk.n[0].to = 1;
        fk.owner = 1;
        pthread_mutex_unlock(&fk.mu);
        add_n(p, 100);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(0), 30);
        CHECK_INT_EQ(fake_published(1), 70);
        mls_cluster_pub_stats(p, &st);
        CHECK(st.conn_errors >= 1);
        CHECK_INT_EQ(st.acked, 100);
        mls_cluster_pub_free(p);
        fake_stop();
}

MLS_TEST(redis_cluster_pub_fake_bounded_retries)
{
        struct mls_cluster_pub_stats st;
        long drops;
        mls_cluster_pub_t *p;
        char err[512] = "";

        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start(NULL), 0);
        p = fake_pub(NULL);
        /* every SPUBLISH kills the connection, and the map never changes:
         * the flush gives up after its rounds and drops the batch */
        pthread_mutex_lock(&fk.mu);
        fk.n[0].mode = FAKE_DROP;
        fk.n[0].left = 0;
        fk.n[0].after_drop = FAKE_DROP;
        pthread_mutex_unlock(&fk.mu);
        add_n(p, 20);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "20 of 20 payloads not acknowledged after 3");
        CHECK_INT_EQ(mls_cluster_pub_queued(p), 0);
        /* not connected until a connect or a flush succeeds again */
        CHECK(!mls_cluster_pub_connected(p));
        pthread_mutex_lock(&fk.mu);
        drops = fk.n[0].drops;
        pthread_mutex_unlock(&fk.mu);
        CHECK_INT_EQ(drops, MLS_CLUSTER_FLUSH_ROUNDS);

        /* CLUSTERDOWN: an error reply fails the flush and says so */
        fake_set(0, FAKE_DOWN, 0);
        add_n(p, 5);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "CLUSTERDOWN");

        /* healthy again: the caller's retry of the whole batch passes */
        fake_set(0, FAKE_OWNER, 0);
        add_n(p, 20);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(0), 20);
        CHECK(mls_cluster_pub_connected(p));
        mls_cluster_pub_stats(p, &st);
        CHECK_INT_EQ(st.failed_flush, 2);
        mls_cluster_pub_free(p);
        fake_stop();
}

/* A master that takes commands and never answers them (a stopped process,
 * whose kernel still accepts connections): the flush fails after one reply
 * timeout, naming it, not after one per round, as the node is not
 * connected to again within that flush; the next connect tries it anew. */
MLS_TEST(redis_cluster_pub_fake_silent_node_once_per_flush)
{
        mls_cluster_pub_t *p;
        char err[512] = "";
        long conns;

        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start(NULL), 0);
        p = fake_pub(NULL);
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), 0);
        conns = fake_conns(0);
        fake_set(0, FAKE_SILENT, 0);
        add_n(p, 5);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "no reply within 5000 ms");
        CHECK_CONTAINS(err, "5 of 5 payloads not acknowledged after 3 rounds");
        CHECK_INT_EQ(fake_conns(0), conns);
        CHECK(!mls_cluster_pub_connected(p));

        fake_set(0, FAKE_OWNER, 0);
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_conns(0), conns + 1);
        add_n(p, 5);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(0), 5);
        mls_cluster_pub_free(p);
        fake_stop();
}

/* A node whose answers to SPUBLISH no node gives: an array header claiming
 * a billion elements (an 8 GB element table), a status line 2 MiB long,
 * and a bulk string announcing 2 GB followed by 2 MiB of it. Each is
 * refused with a reason naming its limit (the line after 64 KiB, the bulk
 * string after 1 MiB), before the publisher holds more than the limit; the
 * flush fails with that reason. */
MLS_TEST(redis_cluster_pub_fake_hostile_replies)
{
        static const char header[] = "*1000000000\r\n";
        const size_t long_len = (size_t)2 << 20;
        char *long_line = malloc(long_len);
        mls_cluster_pub_t *p;
        char err[512] = "";

        CHECK(long_line != NULL);
        long_line[0] = '+';
        memset(long_line + 1, 'x', long_len - 1);
        signal(SIGPIPE, SIG_IGN);
        CHECK_INT_EQ(fake_start(NULL), 0);
        p = fake_pub(NULL);
        CHECK_INT_EQ(mls_cluster_pub_connect(p, err, sizeof(err)), 0);

        pthread_mutex_lock(&fk.mu);
        fk.hostile = header;
        fk.hostile_len = sizeof(header) - 1;
        fk.n[0].mode = FAKE_HOSTILE;
        pthread_mutex_unlock(&fk.mu);
        add_n(p, 3);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "an array of more than 65,536 elements");

        pthread_mutex_lock(&fk.mu);
        fk.hostile = long_line;
        fk.hostile_len = long_len;
        pthread_mutex_unlock(&fk.mu);
        add_n(p, 3);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "a reply line passed 64 KiB without ending");

        memcpy(long_line, "$2000000000\r\n", 13);
        add_n(p, 3);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), -1);
        CHECK_CONTAINS(err, "a reply passed 1 MiB without ending");

        /* healthy again: the caller's retry passes */
        fake_set(0, FAKE_OWNER, 0);
        add_n(p, 3);
        CHECK_INT_EQ(mls_cluster_pub_flush(p, err, sizeof(err)), 0);
        CHECK_INT_EQ(fake_published(0), 3);
        mls_cluster_pub_free(p);
        fake_stop();
        free(long_line);
}
