#include "gateway/wsproto.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/json.h"
#include "gateway/payload.h"

#define MAX_ID_BYTES 256 /* a subscription id, as JSON text */

/* One live subscription. */
struct op {
        struct mls_hub_member member; /* first: container of the member */
        mls_wsproto_t *s;
        struct op *next;
        struct mls_frame *head; /* {"id":...,"type":"next","payload": */
        /* resuming (after:): live events wait in the history until the
         * replay reaches them; gap goes with the first event sent */
        int replaying;
        struct mls_history_cursor cur;
        json_t *gap;
        size_t idlen;
        char id[]; /* the id as JSON text ("\"abc\"" or "3"), NUL */
};

struct mls_wsproto {
        const struct mls_wsproto_env *env;
        const struct mls_wsproto_ops *ops;
        void *conn;
        enum mls_wsproto_kind kind;
        int init_received, acked, closed;
        int64_t init_deadline; /* until connection_init; -1: none */
        int64_t next_ka;       /* legacy, after connection_ack; -1: none */
        int64_t auth_deadline; /* when the credential expires; -1: never */
        struct op *ops_list;
        unsigned nops;
        struct mls_principal who; /* after connection_ack */
        /* the upgrade request's Authorization header, checked */
        enum mls_auth_result upgrade_result;
        const char *upgrade_why;
        struct mls_principal upgrade_who;
};

/* --- output helpers ---------------------------------------------------- */

static void free_op(mls_wsproto_t *s, struct op *o)
{
        mls_hub_leave(s->env->hub, &o->member);
        mls_frame_unref(o->head);
        json_decref(o->gap);
        free(o);
}

static void close_with(mls_wsproto_t *s, int code, const char *reason)
{
        struct op *o, *n;

        if (s->closed)
                return;
        s->closed = 1;
        /* Nothing more is delivered to a closing connection. */
        for (o = s->ops_list; o; o = n) {
                n = o->next;
                free_op(s, o);
        }
        s->ops_list = NULL;
        s->nops = 0;
        s->ops->close(s->conn, code, reason);
}

static void send_buf(mls_wsproto_t *s, const struct mls_buf *b)
{
        struct mls_frame *f;

        if (s->closed)
                return;
        f = mls_frame_new(b->data, b->len);
        if (!f) {
                close_with(s, 4500, "Internal server error");
                return;
        }
        s->ops->send(s->conn, f);
        mls_frame_unref(f);
}

static void send_str(mls_wsproto_t *s, const char *msg)
{
        struct mls_buf b = {.data = (char *)msg, .len = strlen(msg)};

        send_buf(s, &b);
}

/*
 * Sends {"id":<id>,"type":<type>,"payload":<payload>} (id and payload
 * optional; id is JSON text). A message over the outgoing cap closes the
 * connection with 4500.
 */
static void send_msg(mls_wsproto_t *s, const char *id, const char *type,
                     const json_t *payload)
{
        struct mls_buf b;

        mls_buf_init(&b, s->env->max_out_bytes);
        mls_buf_putc(&b, '{');
        if (id) {
                mls_buf_puts(&b, "\"id\":");
                mls_buf_puts(&b, id);
                mls_buf_putc(&b, ',');
        }
        mls_buf_puts(&b, "\"type\":");
        mls_buf_json_str(&b, type, strlen(type));
        if (payload) {
                mls_buf_puts(&b, ",\"payload\":");
                mls_json_write(&b, payload);
        }
        mls_buf_putc(&b, '}');
        if (b.overflow) {
                /* only an error list could be this large (results go
                 * through send_result()), or memory ran out */
                mls_buf_free(&b);
                close_with(s, 4500, "Internal server error");
                return;
        }
        send_buf(s, &b);
        mls_buf_free(&b);
}

static json_t *error_list(const char *message)
{
        return json_pack("[{s:s}]", "message", message);
}

/* A response too large for one message becomes a GraphQL error. */
static void send_result(mls_wsproto_t *s, const char *id, const char *type,
                        json_t *result)
{
        struct mls_buf probe;
        json_t *err;

        mls_buf_init(&probe, s->env->max_out_bytes);
        if (mls_json_write(&probe, result) == 0 &&
            probe.len + MAX_ID_BYTES + 64 <= s->env->max_out_bytes) {
                mls_buf_free(&probe);
                send_msg(s, id, type, result);
                return;
        }
        mls_buf_free(&probe);
        err = json_pack("{s:o}", "errors",
                        error_list("The response is larger than the "
                                   "gateway's outgoing message limit."));
        if (!err) {
                close_with(s, 4500, "Internal server error");
                return;
        }
        send_msg(s, id, type, err);
        json_decref(err);
}

/* --- subscriptions ------------------------------------------------------- */

static struct op *find_op(mls_wsproto_t *s, const char *id, size_t idlen)
{
        for (struct op *o = s->ops_list; o; o = o->next)
                if (o->idlen == idlen && memcmp(o->id, id, idlen) == 0)
                        return o;
        return NULL;
}

static void drop_op(mls_wsproto_t *s, struct op *o)
{
        struct op **pp;

        for (pp = &s->ops_list; *pp; pp = &(*pp)->next) {
                if (*pp == o) {
                        *pp = o->next;
                        break;
                }
        }
        free_op(s, o);
        s->nops--;
}

/* --- resuming (after:) ---------------------------------------------------- */

/* Sets o's pending gap: reason, how many are missing (0: unknown) and the
 * oldest time held for the model, unless one is pending already (then only
 * the count grows, while it is known). */
static void set_gap(struct op *o, const char *reason, uint64_t missed,
                    int64_t since_ms)
{
        char since[32];
        json_t *n;

        if (o->gap) {
                n = json_object_get(o->gap, "missed");
                if (json_is_integer(n) && missed)
                        json_integer_set(n, json_integer_value(n) +
                                                    (json_int_t)missed);
                else if (!missed)
                        json_object_set_new(o->gap, "missed", json_null());
                return;
        }
        if (since_ms >= 0)
                mls_clock_iso8601(since_ms, since, sizeof(since));
        o->gap = json_pack(
                "{s:s,s:o,s:o}", "reason", reason, "missed",
                missed ? json_integer((json_int_t)missed) : json_null(),
                "since", since_ms >= 0 ? json_string(since) : json_null());
        if (o->s->env->stats)
                o->s->env->stats->gaps++;
}

static void note_missed(struct op *o, uint64_t n)
{
        const char *model = mls_hub_member_model(&o->member);

        set_gap(o, "EVICTED", n,
                mls_history_oldest_ms(o->s->env->history, model,
                                      strlen(model)));
}

/* Places o after the prediction `after`; when the history does not hold
 * it, the first event will say so. Returns -1 when there is no history. */
static int start_resume(mls_wsproto_t *s, struct op *o, json_t *after)
{
        const char *model = mls_hub_member_model(&o->member);
        size_t mlen = strlen(model);

        if (!s->env->history)
                return -1;
        if (s->env->stats)
                s->env->stats->resumes++;
        if (mls_history_seek(s->env->history, model, mlen,
                             json_string_value(after),
                             json_string_length(after), &o->cur) < 0)
                set_gap(o, "CURSOR_UNKNOWN", 0,
                        mls_history_oldest_ms(s->env->history, model, mlen));
        o->replaying = 1;
        s->ops->wake(s->conn);
        return 0;
}

/* Sends o the next prediction of the history, if o may see it. */
static void replay_one(mls_wsproto_t *s, struct op *o,
                       const struct mls_history_item *it)
{
        struct mls_payload p;
        struct mls_buf out;
        struct mls_frame *f;
        const char *tenant;
        size_t tlen = 0;

        if (mls_payload_normalize(it->data, it->len, s->env->max_out_bytes,
                                  &p) != MLS_PAYLOAD_PREDICTION) {
                mls_payload_clear(&p);
                return;
        }
        tenant = mls_payload_tenant(&p, &tlen);
        if (o->gap)
                mls_payload_set_gap(&p, json_incref(o->gap));
        mls_buf_init(&out, s->env->max_out_bytes);
        if (mls_hub_render_member(s->env->hub, &o->member, tenant, tlen, &p,
                                  &out) == 1 &&
            (f = mls_frame_new(out.data, out.len))) {
                if (s->ops->send_event(s->conn, o->head, f) == 0) {
                        json_decref(o->gap);
                        o->gap = NULL;
                        if (s->env->stats)
                                s->env->stats->replayed++;
                }
                mls_frame_unref(f);
        }
        mls_buf_free(&out);
        mls_payload_clear(&p);
}

/* Most events one pump replays, so that one resume cannot hold the loop. */
#define PUMP_BUDGET 256

int mls_wsproto_pump(mls_wsproto_t *s)
{
        mls_history_t *h = s->env->history;
        struct op *r;
        int more = 0;

        if (s->closed || !h)
                return 0;
        /* called for every connection written at the end of a loop turn:
         * without a replay in progress there is nothing to do */
        for (r = s->ops_list; r && !r->replaying; r = r->next)
                ;
        if (!r)
                return 0;
        mls_history_expire(h, mls_clock_wall_ms());
        for (struct op *o = s->ops_list; o; o = o->next) {
                const char *model = mls_hub_member_model(&o->member);
                size_t mlen = model ? strlen(model) : 0;
                struct mls_history_item it;
                uint64_t missed;
                int n = 0;

                while (o->replaying && model && !s->closed) {
                        if (n++ == PUMP_BUDGET || !s->ops->room(s->conn)) {
                                more = 1;
                                break;
                        }
                        switch (mls_history_read(h, model, mlen, &o->cur, &it,
                                                 &missed)) {
                        case MLS_HISTORY_ITEM:
                                replay_one(s, o, &it);
                                break;
                        case MLS_HISTORY_MISSED:
                                note_missed(o, missed);
                                break;
                        case MLS_HISTORY_END:
                                /* caught up: live from here, unless a gap
                                 * still waits for an event to go with */
                                if (!o->gap)
                                        o->replaying = 0;
                                n = -1;
                                break;
                        }
                        if (n < 0)
                                break;
                }
        }
        return more;
}

void mls_wsproto_deliver(void *opaque, struct mls_hub_member *m,
                         struct mls_frame *payload)
{
        struct op *o = (struct op *)((char *)m - offsetof(struct op, member));

        (void)opaque;
        if (o->s->closed)
                return;
        if (o->replaying) {
                /* the replay sends it from the history, in order; one the
                 * history could not keep is counted into the gap */
                if (!o->s->env->history_kept)
                        note_missed(o, 1);
                o->s->ops->wake(o->s->conn);
                return;
        }
        o->s->ops->send_event(o->s->conn, o->head, payload);
}

static int is_syntax_error(json_t *errors)
{
        const char *msg = json_string_value(
                json_object_get(json_array_get(errors, 0), "message"));

        return msg && strncmp(msg, "Syntax Error", 12) == 0;
}

/* Errors before execution: transport sends "error" with the list; legacy
 * sends "error" {message} for syntax errors (the document did not parse)
 * and "data" {errors} + "complete" otherwise, as subscriptions-transport-ws
 * does. */
static void fail_operation(mls_wsproto_t *s, const char *id, json_t *errors)
{
        json_t *p;

        if (!errors) {
                close_with(s, 4500, "Internal server error");
                return;
        }
        if (s->kind == MLS_WSPROTO_TRANSPORT) {
                send_msg(s, id, "error", errors);
                return;
        }
        if (is_syntax_error(errors)) {
                p = json_pack(
                        "{s:O}", "message",
                        json_object_get(json_array_get(errors, 0), "message"));
                if (p)
                        send_msg(s, id, "error", p);
                json_decref(p);
                return;
        }
        p = json_pack("{s:O}", "errors", errors);
        if (p) {
                send_msg(s, id, "data", p);
                send_msg(s, id, "complete", NULL);
        }
        json_decref(p);
}

/* A result that is the whole answer: next/data + complete. */
static void finish_operation(mls_wsproto_t *s, const char *id, json_t *result)
{
        if (!result) {
                close_with(s, 4500, "Internal server error");
                return;
        }
        send_result(s, id, s->kind == MLS_WSPROTO_TRANSPORT ? "next" : "data",
                    result);
        send_msg(s, id, "complete", NULL);
}

static int subscribe(mls_wsproto_t *s, const char *id, size_t idlen,
                     mls_gql_doc_t *doc, const char *text, size_t len,
                     const char *opname, json_t *vars)
{
        struct mls_buf head;
        json_t *errors = NULL;
        struct op *o;

        if (s->nops >= s->env->max_operations) {
                char msg[128];
                snprintf(msg, sizeof(msg),
                         "Too many operations on this connection (limit "
                         "%u).",
                         s->env->max_operations);
                errors = error_list(msg);
                fail_operation(s, id, errors);
                json_decref(errors);
                return 0;
        }
        o = calloc(1, sizeof(*o) + idlen + 1);
        if (!o)
                return -1;
        memcpy(o->id, id, idlen);
        o->idlen = idlen;
        o->s = s;
        mls_buf_init(&head, MAX_ID_BYTES + 64);
        mls_buf_puts(&head, "{\"id\":");
        mls_buf_append(&head, id, idlen);
        mls_buf_puts(&head, s->kind == MLS_WSPROTO_TRANSPORT
                                    ? ",\"type\":\"next\",\"payload\":"
                                    : ",\"type\":\"data\",\"payload\":");
        o->head = head.overflow ? NULL : mls_frame_new(head.data, head.len);
        mls_buf_free(&head);
        if (!o->head) {
                free(o);
                return -1;
        }
        if (mls_hub_join(s->env->hub, &o->member, doc, text, len, opname, vars,
                         s->who.tenants, &errors) < 0) {
                mls_frame_unref(o->head);
                free(o);
                if (!errors)
                        return -1;
                /* Coercion failures are an execution result, as
                 * graphql-js subscribe() returns them. */
                {
                        json_t *r = json_pack("{s:O}", "errors", errors);
                        finish_operation(s, id, r);
                        json_decref(r);
                }
                json_decref(errors);
                return 0;
        }
        o->next = s->ops_list;
        s->ops_list = o;
        s->nops++;
        {
                json_t *after = json_object_get(mls_hub_member_args(&o->member),
                                                "after");

                if (json_is_string(after) && start_resume(s, o, after) < 0) {
                        drop_op(s, o);
                        errors = error_list("This gateway keeps no history "
                                            "to resume from "
                                            "(GATEWAY_HISTORY_BYTES=0).");
                        fail_operation(s, id, errors);
                        json_decref(errors);
                }
        }
        return 0;
}

/* Runs one operation: a query/mutation answers at once; a subscription
 * joins the hub. */
static void start_operation(mls_wsproto_t *s, const char *id, size_t idlen,
                            json_t *payload)
{
        json_t *query = json_object_get(payload, "query");
        json_t *vars = json_object_get(payload, "variables");
        json_t *opn = json_object_get(payload, "operationName");
        const char *text = json_string_value(query);
        size_t len = json_string_length(query);
        const char *opname =
                json_is_string(opn) ? json_string_value(opn) : NULL;
        json_t *errors = NULL, *result;
        enum mls_gql_op_kind kind;
        mls_gql_doc_t *doc;
        char errstr[256];

        if (!json_is_object(vars))
                vars = NULL;
        doc = mls_gql_cache_get(s->env->cache, text, len, &errors);
        if (!doc) {
                fail_operation(s, id, errors);
                json_decref(errors);
                return;
        }
        if (mls_gql_doc_operation(doc, opname, &kind, errstr, sizeof(errstr)) <
            0) {
                errors = error_list(errstr);
                if (s->kind == MLS_WSPROTO_TRANSPORT) {
                        fail_operation(s, id, errors);
                } else {
                        result = json_pack("{s:O}", "errors", errors);
                        finish_operation(s, id, result);
                        json_decref(result);
                }
                json_decref(errors);
                mls_gql_doc_unref(doc);
                return;
        }
        if (kind == MLS_GQL_SUBSCRIPTION) {
                if (subscribe(s, id, idlen, doc, text, len, opname, vars) < 0)
                        close_with(s, 4500, "Internal server error");
        } else {
                /* the resolvers see who asks (mlStreamingStatus keeps
                 * to the caller's tenants) */
                result = mls_gql_execute(doc, opname, vars, &s->who);
                finish_operation(s, id, result);
                json_decref(result);
        }
        mls_gql_doc_unref(doc);
}

/* --- message validation ------------------------------------------------ */

static int nullish_or_object(json_t *v)
{
        return !v || json_is_null(v) || json_is_object(v);
}

/* The id as JSON text into out (cap MAX_ID_BYTES). Transport ids are
 * non-empty strings; legacy ids may also be numbers. Returns the length or
 * 0 when invalid. */
static size_t id_text(json_t *id, int allow_number, char *out)
{
        struct mls_buf b;
        size_t n = 0;

        if (json_is_string(id) && json_string_length(id) > 0) {
                mls_buf_init(&b, MAX_ID_BYTES);
                if (mls_buf_json_str(&b, json_string_value(id),
                                     json_string_length(id)) == 0) {
                        memcpy(out, b.data, b.len);
                        n = b.len;
                }
                mls_buf_free(&b);
        } else if (allow_number && json_is_integer(id)) {
                n = (size_t)snprintf(out, MAX_ID_BYTES, "%" JSON_INTEGER_FORMAT,
                                     json_integer_value(id));
        }
        if (n >= MAX_ID_BYTES)
                n = 0;
        out[n] = '\0';
        return n;
}

static int valid_subscribe_payload(json_t *p)
{
        json_t *opn = json_object_get(p, "operationName");

        return json_is_object(p) &&
               json_is_string(json_object_get(p, "query")) &&
               nullish_or_object(json_object_get(p, "variables")) &&
               nullish_or_object(json_object_get(p, "extensions")) &&
               (!opn || json_is_null(opn) || json_is_string(opn));
}

/* graphql-ws' rule for an "error" payload: a non-empty array of objects
 * with a string "message". */
static int graphql_errors(json_t *v)
{
        size_t i;
        json_t *e;

        if (!json_is_array(v) || json_array_size(v) == 0)
                return 0;
        json_array_foreach(v, i, e)
        {
                if (!json_is_string(json_object_get(e, "message")))
                        return 0;
        }
        return 1;
}

/* --- authentication ---------------------------------------------------- */

/*
 * Authenticates connection_init: the payload's credential if it has one,
 * else the upgrade request's. A refused upgrade credential fails it either
 * way. On success (MLS_AUTH_OK) sets s->who and the expiry deadline; on
 * failure reports it through ops->auth_failed and returns why.
 */
static enum mls_auth_result authenticate(mls_wsproto_t *s, json_t *payload,
                                         int64_t now_ms)
{
        const mls_auth_t *a = s->env->auth;
        enum mls_auth_result r;
        const char *why = "";

        if (!mls_auth_enabled(a))
                return MLS_AUTH_OK;
        if (s->upgrade_result != MLS_AUTH_OK &&
            s->upgrade_result != MLS_AUTH_MISSING) {
                r = s->upgrade_result;
                why = s->upgrade_why;
        } else if (mls_auth_init_has_credential(payload)) {
                r = mls_auth_check_init(a, payload, &s->who, &why);
        } else if (s->upgrade_result == MLS_AUTH_OK) {
                s->who = s->upgrade_who;
                memset(&s->upgrade_who, 0, sizeof(s->upgrade_who));
                r = MLS_AUTH_OK;
        } else {
                r = MLS_AUTH_MISSING;
                why = "no credential in connection_init or the upgrade "
                      "request";
        }
        mls_principal_clear(&s->upgrade_who);
        if (r != MLS_AUTH_OK) {
                if (s->ops->auth_failed)
                        s->ops->auth_failed(s->conn, r, why);
                return r;
        }
        if (s->who.expires_s) {
                int64_t left = s->who.expires_s - mls_auth_now(a);
                if (left < 0)
                        left = 0;
                if (left > (int64_t)1 << 40)
                        left = (int64_t)1 << 40;
                s->auth_deadline = now_ms + left * 1000;
        }
        return MLS_AUTH_OK;
}

void mls_wsproto_upgrade_auth(mls_wsproto_t *s, const char *authorization)
{
        mls_principal_clear(&s->upgrade_who);
        s->upgrade_why = "";
        if (!authorization || !authorization[0] ||
            !mls_auth_enabled(s->env->auth)) {
                s->upgrade_result = MLS_AUTH_MISSING;
                return;
        }
        s->upgrade_result = mls_auth_check_header(
                s->env->auth, authorization, &s->upgrade_who, &s->upgrade_why);
}

const struct mls_principal *mls_wsproto_principal(const mls_wsproto_t *s)
{
        return &s->who;
}

/* --- graphql-transport-ws ----------------------------------------------- */

static void transport_input(mls_wsproto_t *s, json_t *m, int64_t now_ms)
{
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *payload = json_object_get(m, "payload");
        char id[MAX_ID_BYTES + 1];
        enum mls_auth_result r;
        size_t idlen;

        if (!type)
                goto bad;
        if (strcmp(type, "connection_init") == 0) {
                if (!nullish_or_object(payload))
                        goto bad;
                if (s->init_received) {
                        close_with(s, 4429, "Too many initialisation requests");
                        return;
                }
                s->init_received = 1;
                r = authenticate(s, payload, now_ms);
                if (r != MLS_AUTH_OK) {
                        /* the reason says why, never what was presented */
                        close_with(s, 4403, mls_auth_result_close_reason(r));
                        return;
                }
                s->acked = 1;
                send_str(s, "{\"type\":\"connection_ack\"}");
                return;
        }
        if (strcmp(type, "ping") == 0 || strcmp(type, "pong") == 0) {
                if (!nullish_or_object(payload))
                        goto bad;
                if (type[1] == 'i')
                        send_msg(s, NULL, "pong",
                                 json_is_object(payload) ? payload : NULL);
                return;
        }
        if (strcmp(type, "subscribe") == 0) {
                idlen = id_text(json_object_get(m, "id"), 0, id);
                if (!idlen || !valid_subscribe_payload(payload))
                        goto bad;
                if (!s->acked) {
                        close_with(s, 4401, "Unauthorized");
                        return;
                }
                if (find_op(s, id, idlen)) {
                        char reason[MAX_ID_BYTES + 40];
                        /* the reason carries the id as the client sent
                         * it, without JSON quotes; WebSocket close
                         * reasons are limited to 123 bytes */
                        snprintf(reason, sizeof(reason),
                                 "Subscriber for %s already exists",
                                 json_string_value(json_object_get(m, "id")));
                        if (strlen(reason) > 123)
                                reason[123] = '\0';
                        close_with(s, 4409, reason);
                        return;
                }
                start_operation(s, id, idlen, payload);
                return;
        }
        if (strcmp(type, "complete") == 0) {
                struct op *o;
                idlen = id_text(json_object_get(m, "id"), 0, id);
                if (!idlen)
                        goto bad;
                o = find_op(s, id, idlen);
                if (o)
                        drop_op(s, o);
                return;
        }
        /* Well-formed messages that only a server may send. */
        if ((strcmp(type, "connection_ack") == 0 &&
             nullish_or_object(payload)) ||
            (strcmp(type, "next") == 0 &&
             id_text(json_object_get(m, "id"), 0, id) &&
             json_is_object(payload)) ||
            (strcmp(type, "error") == 0 &&
             id_text(json_object_get(m, "id"), 0, id) &&
             graphql_errors(payload))) {
                char reason[64];
                snprintf(reason, sizeof(reason),
                         "Unexpected message of type %s received", type);
                close_with(s, 4500, reason);
                return;
        }
bad:
        close_with(s, 4400, "Invalid message received");
}

/* --- graphql-ws (subscriptions-transport-ws) ---------------------------- */

static void legacy_error(mls_wsproto_t *s, const char *id, const char *type,
                         const char *message)
{
        json_t *p = json_pack("{s:s}", "message", message);

        if (!p) {
                close_with(s, 4500, "Internal server error");
                return;
        }
        send_msg(s, id, type, p);
        json_decref(p);
}

static void legacy_input(mls_wsproto_t *s, json_t *m, int64_t now_ms)
{
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *payload = json_object_get(m, "payload");
        json_t *jid = json_object_get(m, "id");
        char id[MAX_ID_BYTES + 1];
        size_t idlen = id_text(jid, 1, id);
        const char *idp = idlen ? id : NULL;
        enum mls_auth_result r;
        struct op *o;

        if (!type) {
                legacy_error(s, idp, "error", "Invalid message type!");
                return;
        }
        if (strcmp(type, "connection_init") == 0) {
                if (s->init_received && mls_auth_enabled(s->env->auth)) {
                        /* one principal per connection */
                        legacy_error(s, NULL, "connection_error",
                                     "Already initialised");
                        return;
                }
                r = authenticate(s, json_is_object(payload) ? payload : NULL,
                                 now_ms);
                if (r != MLS_AUTH_OK) {
                        /* subscriptions-transport-ws closes with 1011; the
                         * code graphql-transport-ws uses says more */
                        legacy_error(s, NULL, "connection_error",
                                     "Prohibited connection!");
                        close_with(s, 4403, mls_auth_result_close_reason(r));
                        return;
                }
                s->init_received = 1;
                s->acked = 1;
                send_str(s, "{\"type\":\"connection_ack\"}");
                if (s->env->keepalive_ms > 0) {
                        send_str(s, "{\"type\":\"ka\"}");
                        s->next_ka = now_ms + s->env->keepalive_ms;
                }
                return;
        }
        if (strcmp(type, "connection_terminate") == 0) {
                close_with(s, 1000, "");
                return;
        }
        if (strcmp(type, "start") == 0) {
                if (!idlen) {
                        legacy_error(s, NULL, "error",
                                     "\"start\" needs an \"id\"");
                        return;
                }
                if (!valid_subscribe_payload(payload)) {
                        legacy_error(s, idp, "error",
                                     "\"start\" needs a payload with a "
                                     "\"query\" string");
                        return;
                }
                if (mls_auth_enabled(s->env->auth) && !s->acked) {
                        legacy_error(s, idp, "error", "Unauthorized");
                        return;
                }
                /* A session served without connection_init (allowed with
                 * authentication off, as the reference server does) is in
                 * use: the init timeout no longer applies. */
                s->init_deadline = -1;
                /* A start for a live id replaces it, as the reference
                 * server does. */
                o = find_op(s, id, idlen);
                if (o)
                        drop_op(s, o);
                start_operation(s, id, idlen, payload);
                return;
        }
        if (strcmp(type, "stop") == 0) {
                o = idlen ? find_op(s, id, idlen) : NULL;
                if (o) {
                        drop_op(s, o);
                        send_msg(s, id, "complete", NULL);
                }
                return;
        }
        legacy_error(s, idp, "error", "Invalid message type!");
}

/* --- session ------------------------------------------------------------- */

mls_wsproto_t *mls_wsproto_new(const struct mls_wsproto_env *env,
                               const struct mls_wsproto_ops *ops, void *conn,
                               enum mls_wsproto_kind kind, int64_t now_ms)
{
        mls_wsproto_t *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->env = env;
        s->ops = ops;
        s->conn = conn;
        s->kind = kind;
        s->next_ka = -1;
        s->auth_deadline = -1;
        s->upgrade_result = MLS_AUTH_MISSING;
        s->upgrade_why = "";
        /* both protocols: a connection that never initialises must not
         * hold a GATEWAY_MAX_CONNECTIONS slot */
        s->init_deadline = kind != MLS_WSPROTO_NONE && env->init_timeout_ms > 0
                                   ? now_ms + env->init_timeout_ms
                                   : -1;
        if (kind == MLS_WSPROTO_NONE)
                close_with(s, 4406, "Subprotocol not acceptable");
        return s;
}

void mls_wsproto_free(mls_wsproto_t *s)
{
        struct op *o, *n;

        if (!s)
                return;
        for (o = s->ops_list; o; o = n) {
                n = o->next;
                free_op(s, o);
        }
        mls_principal_clear(&s->who);
        mls_principal_clear(&s->upgrade_who);
        free(s);
}

void mls_wsproto_input(mls_wsproto_t *s, const char *msg, size_t len,
                       int64_t now_ms)
{
        json_error_t jerr;
        json_t *m;

        if (s->closed)
                return;
        m = json_loadb(msg, len, 0, &jerr);
        if (!m || !json_is_object(m)) {
                json_decref(m);
                if (s->kind == MLS_WSPROTO_TRANSPORT)
                        close_with(s, 4400, "Invalid message received");
                else
                        legacy_error(s, NULL, "connection_error",
                                     m ? "Message must be a JSON object"
                                       : jerr.text);
                return;
        }
        if (s->kind == MLS_WSPROTO_TRANSPORT)
                transport_input(s, m, now_ms);
        else
                legacy_input(s, m, now_ms);
        json_decref(m);
}

static int64_t earlier(int64_t a, int64_t b)
{
        if (a < 0)
                return b;
        if (b < 0)
                return a;
        return a < b ? a : b;
}

int64_t mls_wsproto_next_timer(const mls_wsproto_t *s)
{
        int64_t t;

        if (s->closed)
                return -1;
        t = s->auth_deadline;
        if (!s->init_received)
                t = earlier(t, s->init_deadline);
        if (s->kind == MLS_WSPROTO_LEGACY)
                t = earlier(t, s->next_ka);
        return t;
}

void mls_wsproto_timer(mls_wsproto_t *s, int64_t now_ms)
{
        if (s->closed)
                return;
        if (!s->init_received && s->init_deadline >= 0 &&
            now_ms >= s->init_deadline) {
                if (s->kind == MLS_WSPROTO_LEGACY)
                        legacy_error(s, NULL, "connection_error",
                                     "Connection initialisation timeout");
                close_with(s, 4408, "Connection initialisation timeout");
                return;
        }
        if (s->auth_deadline >= 0 && now_ms >= s->auth_deadline) {
                /* graphql-ws clients retry after 4403 and can bring a
                 * fresh token (connectionParams as a function) */
                if (s->ops->auth_failed)
                        s->ops->auth_failed(s->conn, MLS_AUTH_EXPIRED,
                                            "the JWT expired on a live "
                                            "connection");
                if (s->kind == MLS_WSPROTO_LEGACY)
                        legacy_error(s, NULL, "connection_error",
                                     "Token expired");
                close_with(s, 4403, "Forbidden: token expired");
                return;
        }
        if (s->kind == MLS_WSPROTO_LEGACY && s->next_ka >= 0 &&
            now_ms >= s->next_ka) {
                send_str(s, "{\"type\":\"ka\"}");
                s->next_ka = now_ms + s->env->keepalive_ms;
        }
}

enum mls_wsproto_kind mls_wsproto_kind(const mls_wsproto_t *s)
{
        return s->kind;
}

unsigned mls_wsproto_operations(const mls_wsproto_t *s)
{
        return s->nops;
}

int mls_wsproto_closed(const mls_wsproto_t *s)
{
        return s->closed;
}

/* --- subprotocol selection ---------------------------------------------- */

/* Calls fn for each trimmed token of a comma list; stops when fn returns
 * non-zero and returns that. */
static int each_token(const char *s, size_t len,
                      int (*fn)(void *, const char *, size_t), void *opaque)
{
        size_t i = 0;

        while (i < len) {
                size_t start, end;
                int rc;
                while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
                        i++;
                start = i;
                while (i < len && s[i] != ',')
                        i++;
                end = i;
                while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
                        end--;
                if (end > start && (rc = fn(opaque, s + start, end - start)))
                        return rc;
        }
        return 0;
}

static int match_kind(void *opaque, const char *tok, size_t n)
{
        int want = *(int *)opaque;
        const char *name = want == MLS_WSPROTO_TRANSPORT
                                   ? MLS_WSPROTO_TRANSPORT_NAME
                                   : MLS_WSPROTO_LEGACY_NAME;

        return n == strlen(name) && memcmp(tok, name, n) == 0;
}

enum mls_wsproto_kind mls_wsproto_select(const char *offered, size_t len)
{
        int want = MLS_WSPROTO_TRANSPORT;

        if (!offered)
                return MLS_WSPROTO_NONE;
        if (each_token(offered, len, match_kind, &want))
                return MLS_WSPROTO_TRANSPORT;
        want = MLS_WSPROTO_LEGACY;
        if (each_token(offered, len, match_kind, &want))
                return MLS_WSPROTO_LEGACY;
        return MLS_WSPROTO_NONE;
}
