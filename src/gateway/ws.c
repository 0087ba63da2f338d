/*
 * WebSocket connections on /graphql: the libwebsockets protocol callback
 * for "graphql-transport-ws", "graphql-ws" and the no-subprotocol default,
 * each connection's bounded send queue, message reassembly and timers. The
 * protocol logic itself is in wsproto.c.
 *
 * Threads: the gateway loop thread (libwebsockets callbacks).
 * Ownership: a struct mls__gw_conn is allocated at ESTABLISHED and freed at
 * CLOSED; its queue holds one reference to each queued frame.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "gateway/gateway_int.h"

static void request_write(struct mls__gw_conn *c)
{
        lws_callback_on_writable(c->wsi);
}

/*
 * Queued messages are written at the end of the loop turn that queued
 * them (mls__gw_ws_flush), straight from the gateway rather than from a
 * writable callback: asking libwebsockets for one, and it clearing the
 * request after, each restart the connection's libuv poll handle, an
 * epoll DEL and ADD, four system calls per event at a low rate. The
 * writable callback remains for what a direct write leaves: a socket that
 * did not take everything (libwebsockets keeps the rest and asks itself),
 * more than one batch, history replays and closing.
 */
static void schedule_flush(struct mls__gw_conn *c)
{
        mls_gateway_t *g = c->g;

        if (c->flush_at >= 0)
                return;
        if (g->nflush == g->flush_cap) {
                unsigned ncap = g->flush_cap ? g->flush_cap * 2 : 64;
                struct mls__gw_conn **nl =
                        realloc(g->flush_list, ncap * sizeof(*nl));
                if (!nl) {
                        request_write(c);
                        return;
                }
                g->flush_list = nl;
                g->flush_cap = ncap;
        }
        c->flush_at = (int)g->nflush;
        g->flush_list[g->nflush++] = c;
}

/* Logs a warning about a refused or closed connection, rate-limited per
 * reason (mls_log_limited). */
#define warn_limited(g, why, ...) \
        mls_log_limited(&(g)->ws_log_limits[why], MLS_LOG_WARN, __VA_ARGS__)

/* Copies a client-supplied string for a log line: printable ASCII only,
 * at most cap - 1 bytes. */
static const char *printable(const char *in, char *out, size_t cap)
{
        size_t n = 0;

        for (; *in && n + 1 < cap; in++)
                out[n++] = *in >= 0x20 && *in < 0x7f ? *in : '?';
        out[n] = '\0';
        return out;
}

static size_t ent_bytes(const struct mls__gw_qent *e)
{
        return (e->head ? e->head->len + 1 : 0) + e->body->len;
}

static void ent_free(struct mls__gw_qent *e)
{
        mls_frame_unref(e->head);
        mls_frame_unref(e->body);
}

/* Closes a connection whose client left more than GATEWAY_SEND_QUEUE_BYTES
 * unread: everything queued is freed at once (a client that does not read
 * would not take it), and the close frame follows what libwebsockets still
 * holds of the last write, if the client ever reads it. */
static void close_queue_bytes(struct mls__gw_conn *c, size_t incoming)
{
        mls_gateway_t *g = c->g;
        size_t queued = c->qbytes;

        while (c->qlen) {
                ent_free(&c->q[c->qhead]);
                c->qhead = (c->qhead + 1) % c->qcap;
                c->qlen--;
        }
        free(c->q);
        c->q = NULL;
        c->qcap = c->qhead = 0;
        c->qbytes = 0;
        mls_series_add(g->m_closed_queue_bytes, 1);
        warn_limited(g, MLS__GW_REFUSE_SEND_QUEUE_BYTES,
                     "websocket: closing a connection that leaves %zu bytes "
                     "unread (+%zu more) over GATEWAY_SEND_QUEUE_BYTES "
                     "(%lld): 1008",
                     queued, incoming,
                     (long long)g->cfg->gateway_send_queue_bytes);
        mls__gw_conn_close(c, 1008, "Send queue over GATEWAY_SEND_QUEUE_BYTES");
}

/* Grows the ring to hold at least one more entry, up to limit. */
static int q_grow(struct mls__gw_conn *c, unsigned limit)
{
        unsigned ncap = c->qcap ? c->qcap * 2 : 4;
        struct mls__gw_qent *nq;

        if (ncap > limit)
                ncap = limit;
        if (ncap <= c->qcap)
                return -1;
        nq = malloc(ncap * sizeof(*nq));
        if (!nq)
                return -1;
        for (unsigned i = 0; i < c->qlen; i++)
                nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
        return 0;
}

/* Queues head + body (or body alone); events are dropped past
 * GATEWAY_SEND_QUEUE, control messages close the connection past the
 * reserve, and any message that would take a non-empty queue past
 * GATEWAY_SEND_QUEUE_BYTES closes it (1008). Returns 0 or -1. */
static int q_push(struct mls__gw_conn *c, struct mls_frame *head,
                  struct mls_frame *body, int event)
{
        mls_gateway_t *g = c->g;
        unsigned limit = g->send_queue + MLS_GW_CONTROL_RESERVE;
        size_t len = (head ? head->len + 1 : 0) + body->len;

        if (c->closing)
                return -1;
        if (event && c->qlen >= g->send_queue) {
                mls_series_add(g->m_dropped, 1);
                return -1;
        }
        /* one message always fits an empty queue (messages are capped at
         * GATEWAY_MAX_PAYLOAD_BYTES where they are made) */
        if (c->qlen &&
            c->qbytes + len > (size_t)g->cfg->gateway_send_queue_bytes) {
                close_queue_bytes(c, len);
                return -1;
        }
        if (c->qlen == c->qcap && q_grow(c, limit) < 0) {
                if (event) {
                        mls_series_add(g->m_dropped, 1);
                        return -1;
                }
                mls_series_add(g->m_closed_queue, 1);
                mls__gw_conn_close(c, 1008, "Send queue overflow");
                return -1;
        }
        c->q[(c->qhead + c->qlen) % c->qcap] = (struct mls__gw_qent){
                head ? mls_frame_ref(head) : NULL, mls_frame_ref(body)};
        c->qbytes += len;
        if (c->qlen++ == 0)
                schedule_flush(c);
        return 0;
}

static int op_send(void *conn, struct mls_frame *msg)
{
        return q_push(conn, NULL, msg, 0);
}

static int op_send_event(void *conn, struct mls_frame *head,
                         struct mls_frame *body)
{
        return q_push(conn, head, body, 1);
}

/* A resume fills at most half the queue (by messages and bytes), so that
 * live control messages and the client's reads keep their room. */
static int op_room(void *conn)
{
        struct mls__gw_conn *c = conn;

        return !c->closing && c->qlen < c->g->send_queue / 2 &&
               c->qbytes < (size_t)c->g->cfg->gateway_send_queue_bytes / 2;
}

static void op_wake(void *conn)
{
        request_write(conn);
}

static void op_close(void *conn, int code, const char *reason)
{
        struct mls__gw_conn *c = conn;

        if (code == 4408 && !c->closing)
                mls_series_add(c->g->m_closed_init, 1);
        mls__gw_conn_close(conn, code, reason);
}

static void op_auth_failed(void *conn, enum mls_auth_result r, const char *why)
{
        struct mls__gw_conn *c = conn;
        const char *proto = mls_wsproto_kind(c->proto) == MLS_WSPROTO_LEGACY
                                    ? MLS_WSPROTO_LEGACY_NAME
                                    : MLS_WSPROTO_TRANSPORT_NAME;

        /* counted, and the details at debug level */
        mls__gw_metrics_auth_failed(c->g, proto, r, why);
        if ((unsigned)r < MLS_AUTH_RESULTS)
                warn_limited(c->g, (enum mls__gw_refusal)r,
                             "websocket (%s): refused connection_init: 4403 "
                             "%s: %s",
                             proto, mls_auth_result_close_reason(r), why);
}

static const struct mls_wsproto_ops ws_ops = {
        .send = op_send,
        .send_event = op_send_event,
        .close = op_close,
        .room = op_room,
        .wake = op_wake,
        .auth_failed = op_auth_failed,
};

void mls__gw_conn_close(struct mls__gw_conn *c, int code, const char *reason)
{
        unsigned kept = 0;

        if (c->closing)
                return;
        c->closing = 1;
        c->close_code = code;
        {
                char label[16];
                snprintf(label, sizeof(label), "%d", code);
                mls_series_add(mls_series(c->g->m_ws_closed, label, NULL), 1);
        }
        snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
        /* Queued events are moot; control messages (an error, a
         * connection_error) still go out before the close frame. */
        for (unsigned i = 0; i < c->qlen; i++) {
                struct mls__gw_qent *e = &c->q[(c->qhead + i) % c->qcap];
                if (e->head) {
                        c->qbytes -= ent_bytes(e);
                        ent_free(e);
                } else {
                        c->q[(c->qhead + kept++) % c->qcap] = *e;
                }
        }
        c->qlen = kept;
        /* A client that stops reading must not keep us waiting. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE, 5);
        request_write(c);
}

/*
 * Deadlines of the sessions (init timeout, keep-alives): a binary min-heap
 * of connections by timer_at and one libuv timer for the earliest, so that
 * arming one costs O(log n). (libwebsockets' own timers keep one sorted
 * list and insert by walking it: with every connection's init timeout on
 * it, opening n connections cost O(n^2).)
 */
static int heap_less(mls_gateway_t *g, unsigned a, unsigned b)
{
        return g->timer_heap[a]->timer_at < g->timer_heap[b]->timer_at;
}

static void heap_set(mls_gateway_t *g, unsigned i, struct mls__gw_conn *c)
{
        g->timer_heap[i] = c;
        c->heap_at = (int)i;
}

static void heap_swap(mls_gateway_t *g, unsigned a, unsigned b)
{
        struct mls__gw_conn *t = g->timer_heap[a];

        heap_set(g, a, g->timer_heap[b]);
        heap_set(g, b, t);
}

static void sift_up(mls_gateway_t *g, unsigned i)
{
        while (i > 0 && heap_less(g, i, (i - 1) / 2)) {
                heap_swap(g, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static void sift_down(mls_gateway_t *g, unsigned i)
{
        for (;;) {
                unsigned l = 2 * i + 1, r = l + 1, m = i;
                if (l < g->nheap && heap_less(g, l, m))
                        m = l;
                if (r < g->nheap && heap_less(g, r, m))
                        m = r;
                if (m == i)
                        return;
                heap_swap(g, i, m);
                i = m;
        }
}

static void heap_remove(mls_gateway_t *g, struct mls__gw_conn *c)
{
        unsigned i = (unsigned)c->heap_at, last = --g->nheap;

        c->heap_at = -1;
        if (i == last)
                return;
        heap_set(g, i, g->timer_heap[last]);
        sift_down(g, i);
        sift_up(g, i);
}

static int heap_insert(mls_gateway_t *g, struct mls__gw_conn *c)
{
        if (g->nheap == g->heap_cap) {
                unsigned ncap = g->heap_cap ? 2 * g->heap_cap : 64;
                struct mls__gw_conn **nh =
                        realloc(g->timer_heap, ncap * sizeof(*nh));
                if (!nh)
                        return -1;
                g->timer_heap = nh;
                g->heap_cap = ncap;
        }
        heap_set(g, g->nheap++, c);
        sift_up(g, (unsigned)c->heap_at);
        return 0;
}

/* Arms g->timers for the earliest deadline (stops it when none). */
static void arm_timers(mls_gateway_t *g)
{
        int64_t now, t;

        if (g->torn_down || !g->handles_ready)
                return; /* the timer is closed, or was never made */
        if (!g->nheap) {
                uv_timer_stop(&g->timers);
                return;
        }
        t = g->timer_heap[0]->timer_at;
        now = mls__gw_now_ms();
        uv_timer_start(&g->timers, mls__gw_ws_timers,
                       (uint64_t)(t > now ? t - now : 0), 0);
}

/* A client silent for GATEWAY_IDLE_PING_MS is pinged (a WebSocket ping
 * frame), and one silent for GATEWAY_IDLE_HANGUP_MS is hung up on: a peer
 * that vanished without closing (a cable pulled, a laptop asleep) frees
 * its connection. */
#define LIVE_PING_MS(c) ((c)->g->cfg->gateway_idle_ping_ms)
#define LIVE_HANGUP_MS(c) ((c)->g->cfg->gateway_idle_hangup_ms)

/* Has libwebsockets close the connection soon, without a close frame.
 * Outside its callbacks, a timeout set waits for libwebsockets' next
 * wake-up (it re-arms its timer only after servicing a descriptor), so
 * lws_cancel_service() wakes it now through its event pipe. */
static void kill_async(struct mls__gw_conn *c)
{
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE,
                        LWS_TO_KILL_ASYNC);
        lws_cancel_service(lws_get_context(c->wsi));
}

/* Liveness, when c->check_at has come: a client heard from recently is
 * looked at again later; a silent one is pinged once, then hung up on. */
static void check_alive(struct mls__gw_conn *c, int64_t now)
{
        /* FIN + ping with 2 bytes of data: libwebsockets 4.1 passes on
         * only a pong that carries data (the client echoes ours) */
        static unsigned char ping[4] = {0x89, 0x02, 'm', 'l'};

        if (c->closing || now < c->check_at)
                return;
        if (now - c->last_rx_ms < LIVE_PING_MS(c)) {
                c->check_at = c->last_rx_ms + LIVE_PING_MS(c);
                return;
        }
        if (now - c->last_rx_ms >= LIVE_HANGUP_MS(c)) {
                mls_debug("websocket: no answer for %lld ms: hanging up",
                          (long long)(now - c->last_rx_ms));
                c->check_at = INT64_MAX;
                kill_async(c);
                return;
        }
        if (!c->ping_out) {
                /* whole frames only go out, so this never splits one */
                lws_write(c->wsi, ping, sizeof(ping), LWS_WRITE_RAW);
                c->ping_out = 1;
        }
        c->check_at = c->last_rx_ms + LIVE_HANGUP_MS(c);
}

/* The earlier of the session's deadline and the liveness check. */
static int64_t next_deadline(const struct mls__gw_conn *c)
{
        int64_t t = mls_wsproto_next_timer(c->proto);

        if (!c->closing && c->check_at != INT64_MAX &&
            (t < 0 || c->check_at < t))
                t = c->check_at;
        return t;
}

/* Puts the connection's next deadline in the heap. Returns -1 when memory
 * runs out: the caller closes the connection (its init timeout would
 * otherwise never come). */
static int update_timer(struct mls__gw_conn *c)
{
        mls_gateway_t *g = c->g;
        int64_t t = next_deadline(c);
        int was_first = c->heap_at == 0;

        if (t == c->timer_at && (t < 0 || c->heap_at >= 0))
                return 0;
        if (c->heap_at >= 0)
                heap_remove(g, c);
        c->timer_at = t;
        if (t >= 0 && heap_insert(g, c) < 0) {
                c->timer_at = -1;
                return -1;
        }
        if (was_first || c->heap_at == 0)
                arm_timers(g);
        return 0;
}

void mls__gw_ws_timers(uv_timer_t *h)
{
        mls_gateway_t *g = h->data;
        int64_t now = mls__gw_now_ms();

        while (g->nheap && g->timer_heap[0]->timer_at <= now) {
                struct mls__gw_conn *c = g->timer_heap[0];
                heap_remove(g, c);
                c->timer_at = -1;
                check_alive(c, now);
                mls_wsproto_timer(c->proto, now);
                if (update_timer(c) < 0)
                        mls__gw_conn_close(c, 1011, "Out of memory");
        }
        arm_timers(g);
}

/* Most bytes of queued messages coalesced into one write. */
#define WRITE_BATCH 65536

/* Appends one unmasked text frame header (FIN + opcode 1) for len
 * payload bytes. */
static void frame_header(struct mls_buf *b, size_t len)
{
        unsigned char h[10];
        size_t n = 2;

        h[0] = 0x81;
        if (len < 126) {
                h[1] = (unsigned char)len;
        } else if (len < 65536) {
                h[1] = 126;
                h[2] = (unsigned char)(len >> 8);
                h[3] = (unsigned char)len;
                n = 4;
        } else {
                h[1] = 127;
                for (int i = 0; i < 8; i++)
                        h[2 + i] =
                                (unsigned char)((uint64_t)len >> (56 - 8 * i));
                n = 10;
        }
        mls_buf_append(b, h, n);
}

/*
 * Writes queued messages: as many whole WebSocket frames as fit in
 * WRITE_BATCH bytes (at least one), framed here and handed to lws as raw
 * bytes in one write, so that a burst costs one send() rather than one per
 * message. lws keeps what the socket does not take and calls back only
 * once it is gone. Returns -1 to close the connection.
 */
static int write_batch(struct mls__gw_conn *c)
{
        mls_gateway_t *g = c->g;
        unsigned n = 0;
        int rc = 0;

        mls_buf_reset(&g->wbuf);
        while (c->qlen) {
                struct mls__gw_qent e = c->q[c->qhead];
                size_t len = ent_bytes(&e);

                if (n && g->wbuf.len + len + 10 > WRITE_BATCH)
                        break;
                c->qhead = (c->qhead + 1) % c->qcap;
                c->qlen--;
                c->qbytes -= len;
                if (mls_buf_reserve(&g->wbuf, len + 10) < 0) {
                        mls_warn("websocket: a %zu-byte message exceeds the "
                                 "write buffer; dropped",
                                 len);
                        mls_series_add(g->m_dropped, 1);
                        ent_free(&e);
                        continue;
                }
                frame_header(&g->wbuf, len);
                if (e.head)
                        mls_buf_append(&g->wbuf, e.head->data, e.head->len);
                mls_buf_append(&g->wbuf, e.body->data, e.body->len);
                if (e.head)
                        mls_buf_putc(&g->wbuf, '}');
                ent_free(&e);
                n++;
        }
        if (n) {
                if (lws_write(c->wsi, (unsigned char *)g->wbuf.data,
                              g->wbuf.len, LWS_WRITE_RAW) < 0)
                        rc = -1;
                else
                        mls_series_add(g->m_sent, n);
        }
        if (c->qlen == 0 && c->qcap > 16) {
                /* idle connections keep no queue memory */
                free(c->q);
                c->q = NULL;
                c->qcap = c->qhead = 0;
        }
        return rc;
}

/*
 * Writes the close frame (code and reason) ourselves, as raw bytes. The
 * documented way, lws_close_reason() and returning -1, loses the frame with
 * Debian's libwebsockets 4.1 on libuv: its debug build closes the
 * connection a second time ("uv repeat test") before the deferred frame
 * goes out, and clients see 1006. A server frame is unmasked: FIN + opcode
 * 8, the length (at most 125 here), the code, the reason.
 */
static void send_close(struct mls__gw_conn *c)
{
        unsigned char buf[LWS_PRE + 4 + sizeof(c->close_reason)];
        unsigned char *f = buf + LWS_PRE;
        size_t n = strnlen(c->close_reason, 123);

        f[0] = 0x88;
        f[1] = (unsigned char)(2 + n);
        f[2] = (unsigned char)(c->close_code >> 8);
        f[3] = (unsigned char)(c->close_code & 0xff);
        memcpy(f + 4, c->close_reason, n);
        lws_write(c->wsi, f, 4 + n, LWS_WRITE_RAW);
}

static void conn_free(struct mls__gw_conn *c)
{
        mls_gateway_t *g = c->g;

        if (c->prev)
                c->prev->next = c->next;
        else
                g->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        g->nconns--;
        if (c->flush_at >= 0)
                g->flush_list[c->flush_at] = NULL;
        if (c->heap_at >= 0) {
                int first = c->heap_at == 0;
                heap_remove(g, c);
                if (first)
                        arm_timers(g);
        }
        mls_series_add(mls_wsproto_kind(c->proto) == MLS_WSPROTO_LEGACY
                               ? g->m_conns_legacy
                               : g->m_conns_transport,
                       -1);
        mls_wsproto_free(c->proto);
        while (c->qlen) {
                ent_free(&c->q[c->qhead]);
                c->qhead = (c->qhead + 1) % c->qcap;
                c->qlen--;
        }
        free(c->q);
        mls_buf_free(&c->rx);
        free(c);
}

/* The request path without its query string must be /graphql. */
static int path_ok(struct lws *wsi)
{
        char uri[64];
        int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);

        return n > 0 && strcmp(uri, "/graphql") == 0;
}

static enum mls_wsproto_kind kind_of(struct lws *wsi);

static int filter(mls_gateway_t *g, struct lws *wsi)
{
        char origin[256], offer[256];
        int n;

        if (g->stopping)
                return 1;
        if (!path_ok(wsi)) {
                mls_series_add(g->m_rejected_path, 1);
                return 1;
        }
        n = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN);
        /* an Origin too long to copy is not "no Origin" */
        if ((n < 0 && lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0 &&
             mls__gw_origin_enforced(&g->origins)) ||
            !mls__gw_origin_ok(&g->origins, n > 0 ? origin : NULL)) {
                char shown[80];
                mls_series_add(g->m_rejected_origin, 1);
                warn_limited(g, MLS__GW_REFUSE_ORIGIN,
                             "websocket: refusing an upgrade: 403 origin "
                             "\"%s\" not allowed (GATEWAY_ALLOWED_ORIGINS)",
                             n > 0 ? printable(origin, shown, sizeof(shown))
                                   : "(too long)");
                /* a 403 tells the browser's developer why */
                lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN,
                                       "Origin not allowed "
                                       "(GATEWAY_ALLOWED_ORIGINS)");
                return 1;
        }
        /* libwebsockets 4.1 binds the first subprotocol of the client's
         * list that it knows and has no public hook to choose otherwise;
         * the graphql-ws reference server would prefer
         * graphql-transport-ws wherever it is in the list. Clients offer
         * one, so this only notes the difference. */
        n = lws_hdr_copy(wsi, offer, sizeof(offer), WSI_TOKEN_PROTOCOL);
        if (n > 0 && mls_wsproto_select(offer, (size_t)n) != kind_of(wsi))
                mls_debug("websocket: client offered \"%s\"; using the "
                          "first known one",
                          offer);
        if (g->nconns >= g->max_conns) {
                mls_series_add(g->m_rejected_limit, 1);
                warn_limited(g, MLS__GW_REFUSE_MAX_CONNECTIONS,
                             "websocket: refusing a connection: "
                             "GATEWAY_MAX_CONNECTIONS (%u) reached",
                             g->max_conns);
                return 1;
        }
        return 0;
}

static enum mls_wsproto_kind kind_of(struct lws *wsi)
{
        const struct lws_protocols *p = lws_get_protocol(wsi);

        if (p && strcmp(p->name, MLS_WSPROTO_TRANSPORT_NAME) == 0)
                return MLS_WSPROTO_TRANSPORT;
        if (p && strcmp(p->name, MLS_WSPROTO_LEGACY_NAME) == 0)
                return MLS_WSPROTO_LEGACY;
        return MLS_WSPROTO_NONE;
}

static int established(mls_gateway_t *g, struct lws *wsi,
                       struct mls__gw_conn **slot)
{
        struct mls__gw_conn *c = calloc(1, sizeof(*c));
        enum mls_wsproto_kind kind = kind_of(wsi);

        if (!c)
                return -1;
        c->g = g;
        c->wsi = wsi;
        c->timer_at = -1;
        c->heap_at = -1;
        c->last_rx_ms = mls__gw_now_ms();
        c->check_at = c->last_rx_ms + LIVE_PING_MS(c);
        c->flush_at = -1;
        mls_buf_init(&c->rx, g->max_message);
        c->proto = mls_wsproto_new(&g->env, &ws_ops, c, kind, mls__gw_now_ms());
        if (!c->proto) {
                free(c);
                return -1;
        }
        if (mls_auth_enabled(g->auth)) {
                /* programs may authenticate the upgrade itself (browsers
                 * cannot set the header; they use connection_init) */
                int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
                char *h = n > 0 ? malloc((size_t)n + 1) : NULL;

                if (h && lws_hdr_copy(wsi, h, n + 1,
                                      WSI_TOKEN_HTTP_AUTHORIZATION) >= 0)
                        mls_wsproto_upgrade_auth(c->proto, h);
                else if (n > 0)
                        /* there but unreadable: refused, not ignored */
                        mls_wsproto_upgrade_auth(c->proto, "Bearer ?");
                if (h) {
                        OPENSSL_cleanse(h, (size_t)n + 1);
                        free(h);
                }
        }
        c->next = g->conns;
        if (g->conns)
                g->conns->prev = c;
        g->conns = c;
        g->nconns++;
        *slot = c;
        mls_series_add(g->m_conns_total, 1);
        mls_series_add(kind == MLS_WSPROTO_LEGACY ? g->m_conns_legacy
                                                  : g->m_conns_transport,
                       1);
        if (update_timer(c) < 0)
                mls__gw_conn_close(c, 1011, "Out of memory");
        return 0;
}

static void receive(struct mls__gw_conn *c, const char *in, size_t len)
{
        int final = lws_is_final_fragment(c->wsi) &&
                    lws_remaining_packet_payload(c->wsi) == 0;

        if (c->closing)
                return;
        if (lws_frame_is_binary(c->wsi)) {
                /* both protocols are JSON text; RFC 6455's code for a
                 * data type the endpoint does not accept */
                mls_buf_free(&c->rx);
                mls__gw_conn_close(c, 1003, "Binary frames are not supported");
                return;
        }
        if (final && c->rx.len == 0) {
                mls_wsproto_input(c->proto, in, len, mls__gw_now_ms());
        } else {
                if (mls_buf_append(&c->rx, in, len) < 0) {
                        mls_buf_free(&c->rx);
                        mls__gw_conn_close(c, 1009, "Message too big");
                        return;
                }
                if (!final)
                        return;
                mls_wsproto_input(c->proto, c->rx.data, c->rx.len,
                                  mls__gw_now_ms());
                mls_buf_free(&c->rx);
        }
        if (update_timer(c) < 0)
                mls__gw_conn_close(c, 1011, "Out of memory");
}

/* One connection's direct write: what the writable callback would do,
 * except closing, which stays there. */
static void flush_one(struct mls__gw_conn *c)
{
        int more;

        if (c->peer_closed)
                return;
        if (c->closing || lws_partial_buffered(c->wsi)) {
                request_write(c);
                return;
        }
        more = mls_wsproto_pump(c->proto);
        if (c->qlen && write_batch(c) < 0) {
                /* the socket is gone: libwebsockets closes it */
                kill_async(c);
                return;
        }
        if (c->qlen || more)
                request_write(c);
}

void mls__gw_ws_flush(uv_check_t *h)
{
        mls_gateway_t *g = h->data;

        /* flush_one() adds no connection to the list: what it queues
         * (a replay) is for c, which stays listed until it is done */
        for (unsigned i = 0; i < g->nflush; i++) {
                struct mls__gw_conn *c = g->flush_list[i];
                if (!c)
                        continue; /* closed meanwhile */
                flush_one(c);
                c->flush_at = -1;
        }
        g->nflush = 0;
}

int mls__gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len)
{
        struct mls__gw_conn **slot = user, *c = slot ? *slot : NULL;
        mls_gateway_t *g = lws_context_user(lws_get_context(wsi));
        int more;

        switch (reason) {
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                return filter(g, wsi);
        case LWS_CALLBACK_ESTABLISHED:
                return established(g, wsi, slot);
        case LWS_CALLBACK_RECEIVE:
                if (c) {
                        c->last_rx_ms = mls__gw_now_ms();
                        c->ping_out = 0;
                        receive(c, in, len);
                }
                return 0;
        case LWS_CALLBACK_RECEIVE_PONG:
                if (c) {
                        c->last_rx_ms = mls__gw_now_ms();
                        c->ping_out = 0;
                }
                return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
                if (!c)
                        return 0;
                /* resumed subscriptions refill the queue from the
                 * history as it drains */
                more = !c->closing && mls_wsproto_pump(c->proto);
                if (c->qlen) {
                        if (write_batch(c) < 0)
                                return -1;
                        if (c->qlen || c->closing || more)
                                request_write(c);
                        return 0;
                }
                if (more)
                        request_write(c);
                if (c->closing && !c->close_sent) {
                        /* then wait (briefly) for the client's close, so
                         * that the socket ends with FIN, not RST */
                        send_close(c);
                        c->close_sent = 1;
                        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE,
                                        2);
                }
                return 0;
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                /* libwebsockets answers it; nothing of ours may follow */
                if (c)
                        c->peer_closed = 1;
                /* our close frame went out already: just hang up */
                return c && c->close_sent ? 1 : 0;
        case LWS_CALLBACK_CLOSED:
                if (c) {
                        conn_free(c);
                        *slot = NULL;
                }
                return 0;
        default:
                return 0;
        }
}
