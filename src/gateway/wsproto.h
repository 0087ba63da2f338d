/*
 * The two GraphQL-over-WebSocket protocols on /graphql, as state machines
 * that know nothing about sockets:
 *
 *  - "graphql-transport-ws" (the graphql-ws npm package, Apollo
 *    GraphQLWsLink): connection_init/connection_ack with an init timeout,
 *    ping/pong, subscribe/next/error/complete, and its close codes 4400
 *    (bad message), 4401 (subscribe before ack), 4403 (rejected
 *    connection_init), 4406 (no acceptable subprotocol), 4408 (init
 *    timeout), 4409 (duplicate id), 4429 (second connection_init) and 4500
 *    (unexpected message or internal error);
 *  - the legacy "graphql-ws" of subscriptions-transport-ws:
 *    connection_init/connection_ack/connection_error, "ka" keep-alives,
 *    start/data/error/complete/stop, connection_terminate; a refused
 *    connection_init closes with 4403 after its connection_error, and no
 *    connection_init within the init timeout closes with 4408 after a
 *    connection_error (a start accepted without connection_init, possible
 *    only with access control off, stops that clock).
 *
 * With access control on (env->auth), connection_init must carry a
 * credential (or the upgrade request must have); the session's principal
 * limits its subscriptions to its tenants, and a JWT's expiry closes the
 * connection with 4403. Every 4403 says why in its reason:
 * "Forbidden: missing credential", "Forbidden: invalid credential",
 * "Forbidden: token expired", "Forbidden: token not yet valid",
 * "Forbidden: token has no tenant claim" (mls_auth_result_close_reason()).
 *
 * Close codes of the connection itself (ws.c), for both protocols: 1003
 * (binary frame), 1009 (message over GATEWAY_MAX_MESSAGE_BYTES), 1008
 * "Send queue over GATEWAY_SEND_QUEUE_BYTES" (the client left more than
 * that many bytes unread) or "Send queue overflow" (more than
 * GATEWAY_SEND_QUEUE + 64 messages unread), 1001 (shutdown).
 *
 * A session is fed whole messages (mls_wsproto_input) and clock ticks
 * (mls_wsproto_timer); it answers through the mls_wsproto_ops of its
 * connection, and joins subscriptions to the hub, whose events it frames
 * with a per-subscription prefix ({"id":...,"type":"next","payload":) so
 * that every subscriber of a group shares the rendered payload.
 *
 * Threads: the gateway loop thread only.
 */
#ifndef MLS_GATEWAY_WSPROTO_H
#define MLS_GATEWAY_WSPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/auth.h"
#include "gateway/frame.h"
#include "gateway/history.h"
#include "gateway/hub.h"
#include "graphql/graphql.h"

#define MLS_WSPROTO_TRANSPORT_NAME "graphql-transport-ws"
#define MLS_WSPROTO_LEGACY_NAME "graphql-ws"

enum mls_wsproto_kind {
        MLS_WSPROTO_NONE,      /* no acceptable subprotocol: closes 4406 */
        MLS_WSPROTO_TRANSPORT, /* graphql-transport-ws */
        MLS_WSPROTO_LEGACY,    /* graphql-ws (subscriptions-transport-ws) */
};

/* Counted by the sessions, for the gateway's metrics. */
struct mls_wsproto_stats {
        uint64_t resumes;  /* subscriptions with after: */
        uint64_t gaps;     /* gaps reported to them */
        uint64_t replayed; /* events sent from the history */
};

/* Shared by every session; owned by the gateway, outlives the sessions. */
struct mls_wsproto_env {
        mls_gql_cache_t *cache;
        mls_hub_t *hub;
        const mls_auth_t *auth;  /* NULL or off: connection_init not checked */
        unsigned max_operations; /* live subscriptions per connection */
        int64_t init_timeout_ms; /* both protocols: 0 disables */
        int64_t keepalive_ms;    /* legacy "ka" period; 0 disables */
        size_t max_out_bytes;    /* one outgoing message (query results) */
        /* recent predictions, for after: (NULL: resuming is refused) */
        mls_history_t *history;
        /* set by the feed before each mls_hub_publish(): whether the
         * history kept that prediction */
        int history_kept;
        struct mls_wsproto_stats *stats; /* NULL: not counted */
};

/* What a session asks of its connection. */
struct mls_wsproto_ops {
        /* Queues one whole message; the callee takes its own reference.
         * Returns 0, or -1 when it could not (the connection then closes
         * itself). */
        int (*send)(void *conn, struct mls_frame *msg);
        /* Queues head + body + "}" as one message (a subscription event).
         * Returns 0, or -1 when the event was dropped (slow client). */
        int (*send_event)(void *conn, struct mls_frame *head,
                          struct mls_frame *body);
        /* Closes the connection with a WebSocket close code and reason
         * once what is queued is sent. Called at most once. */
        void (*close)(void *conn, int code, const char *reason);
        /* 1 while the connection's send queue has room for more replayed
         * events (a resume fills it only this far). */
        int (*room)(void *conn);
        /* Asks for mls_wsproto_pump() soon (from the connection's next
         * writable callback). */
        void (*wake)(void *conn);
        /* Optional: a credential was refused (for metrics and a debug
         * line; why never quotes the credential). */
        void (*auth_failed)(void *conn, enum mls_auth_result r,
                            const char *why);
};

typedef struct mls_wsproto mls_wsproto_t;

/* Starts a session at now_ms (monotonic ms). A MLS_WSPROTO_NONE session
 * closes at once with 4406. Returns NULL when memory runs out. */
mls_wsproto_t *mls_wsproto_new(const struct mls_wsproto_env *env,
                               const struct mls_wsproto_ops *ops, void *conn,
                               enum mls_wsproto_kind kind, int64_t now_ms);
/* Leaves every subscription and frees the session. NULL is ignored. */
void mls_wsproto_free(mls_wsproto_t *s);
/*
 * Hands the session the upgrade request's Authorization header (NULL when
 * absent); call right after mls_wsproto_new(). It is checked at once and
 * used at connection_init when the payload carries no credential of its
 * own. A header that is present but refused fails connection_init even if
 * the payload's credential is good.
 */
void mls_wsproto_upgrade_auth(mls_wsproto_t *s, const char *authorization);
/* Who the session authenticated as (zeroed before connection_ack). */
const struct mls_principal *mls_wsproto_principal(const mls_wsproto_t *s);

/* Handles one complete message (text or binary). */
void mls_wsproto_input(mls_wsproto_t *s, const char *msg, size_t len,
                       int64_t now_ms);
/* When the session next wants mls_wsproto_timer(): a monotonic ms
 * deadline, or -1 for never. */
int64_t mls_wsproto_next_timer(const mls_wsproto_t *s);
/* Runs what is due at now_ms: the init timeout (both protocols, 4408),
 * legacy keep-alives, the end of a JWT's validity (closes with 4403). */
void mls_wsproto_timer(mls_wsproto_t *s, int64_t now_ms);

enum mls_wsproto_kind mls_wsproto_kind(const mls_wsproto_t *s);
unsigned mls_wsproto_operations(const mls_wsproto_t *s);
int mls_wsproto_closed(const mls_wsproto_t *s);

/*
 * Resumed subscriptions (mlInferenceStream(after: id)): each replays the
 * history of its model after id, in order, while ops->room() says the send
 * queue has room, then takes live events again; live events meanwhile wait
 * in the history. When the history does not hold id, or evicts what the
 * replay has not reached, the next event sent carries a "gap" (reason
 * CURSOR_UNKNOWN or EVICTED, missed, since). Call it when the connection is
 * writable; returns 1 when more is ready to replay (call again once there
 * is room), 0 when every subscription has caught up.
 */
int mls_wsproto_pump(mls_wsproto_t *s);

/* The hub's deliver callback for sessions: frames the shared payload for
 * the member's subscription and queues it. Pass it to mls_hub_new(). */
void mls_wsproto_deliver(void *opaque, struct mls_hub_member *m,
                         struct mls_frame *payload);

/* Picks the protocol from a Sec-WebSocket-Protocol header value (a comma
 * list) as the graphql-ws reference server does: graphql-transport-ws if
 * offered anywhere in the list, else graphql-ws, else NONE. */
enum mls_wsproto_kind mls_wsproto_select(const char *offered, size_t len);

#endif
