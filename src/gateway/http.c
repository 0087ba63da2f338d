/*
 * HTTP on the gateway's listener: GraphQL over HTTP on /graphql
 * (gqlhttp.c), /metrics, /healthz, /readyz and a small page on /.
 *
 * Threads: the gateway loop thread (libwebsockets callbacks).
 * Ownership: each HTTP connection's struct mls__gw_http_pss (allocated by
 * libwebsockets) owns its request body and response buffers, reset at
 * every request and freed at CLOSED_HTTP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "gateway/gateway_int.h"
#include "gateway/gqlhttp.h"

/* one response (/metrics, the page); GraphQL results are capped at
 * GATEWAY_MAX_PAYLOAD_BYTES */
#define OUT_LIMIT ((size_t)64 << 20)

static const char *const route_label[] = {
        "none", "/graphql", "/metrics", "/healthz", "/readyz", "/", "other",
};

/* The dashboard (web/index.html), built into the binary by
 * cmake/embed.cmake. */
extern const unsigned char mls_web_index_html[];
extern const size_t mls_web_index_html_len;

static void reset(struct mls__gw_http_pss *r, size_t body_limit)
{
        mls_buf_free(&r->body);
        mls_buf_free(&r->out);
        mls_principal_clear(&r->who);
        memset(r, 0, sizeof(*r));
        mls_buf_init(&r->body, body_limit);
        mls_buf_init(&r->out, LWS_PRE + OUT_LIMIT);
        r->method = -1;
}

static enum mls__gw_route route_of(const char *path)
{
        if (strcmp(path, "/graphql") == 0)
                return MLS__GW_R_GRAPHQL;
        if (strcmp(path, "/metrics") == 0)
                return MLS__GW_R_METRICS;
        if (strcmp(path, "/healthz") == 0)
                return MLS__GW_R_HEALTHZ;
        if (strcmp(path, "/readyz") == 0)
                return MLS__GW_R_READYZ;
        if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
                return MLS__GW_R_PAGE;
        return MLS__GW_R_NOT_FOUND;
}

/* Starts the response body after the LWS_PRE headroom. */
static void out_begin(struct mls__gw_http_pss *r)
{
        mls_buf_reset(&r->out);
        mls_buf_reserve(&r->out, LWS_PRE + 256);
        r->out.len = LWS_PRE;
}

static int respond(struct lws *wsi, struct mls__gw_http_pss *r, int status,
                   const char *ctype)
{
        r->status = status;
        r->ctype = ctype;
        if (r->out.len < LWS_PRE)
                out_begin(r);
        lws_callback_on_writable(wsi);
        return 0;
}

static int respond_text(struct lws *wsi, struct mls__gw_http_pss *r, int status,
                        const char *text)
{
        out_begin(r);
        mls_buf_puts(&r->out, text);
        return respond(wsi, r, status, "text/plain; charset=utf-8");
}

static int respond_error(struct lws *wsi, struct mls__gw_http_pss *r,
                         int status, const char *message)
{
        out_begin(r);
        mls_buf_puts(&r->out, "{\"errors\":[{\"message\":");
        mls_buf_json_str(&r->out, message, strlen(message));
        mls_buf_puts(&r->out, "}]}");
        return respond(wsi, r, status, MLS_GQLHTTP_TYPE_JSON);
}

static int add_header(struct lws *wsi, const char *name, const char *value,
                      unsigned char **p, unsigned char *end)
{
        return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                           (const unsigned char *)value,
                                           (int)strlen(value), p, end);
}

/* Writes the prepared response. Returns -1 to close the connection. */
static int write_response(mls_gateway_t *g, struct lws *wsi,
                          struct mls__gw_http_pss *r)
{
        unsigned char hbuf[LWS_PRE + 2048], *start = hbuf + LWS_PRE, *p = start;
        unsigned char *end = hbuf + sizeof(hbuf) - 1;
        size_t blen = r->out.len > LWS_PRE ? r->out.len - LWS_PRE : 0;
        char status[8];

        snprintf(status, sizeof(status), "%d", r->status);
        mls_series_add(mls_series(g->m_http, route_label[r->route], status), 1);
        if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->ctype,
                                        blen, &p, end) ||
            add_header(wsi, "cache-control:", "no-store", &p, end) ||
            (r->allow && add_header(wsi, "allow:", r->allow, &p, end)) ||
            (r->www_auth &&
             add_header(wsi, "www-authenticate:", "Bearer", &p, end)) ||
            (r->cors && (add_header(wsi, "access-control-allow-origin:",
                                    r->origin, &p, end) ||
                         add_header(wsi, "vary:", "Origin", &p, end))) ||
            (r->preflight &&
             (add_header(wsi, "access-control-allow-methods:",
                         "GET, POST, OPTIONS", &p, end) ||
              add_header(wsi, "access-control-allow-headers:",
                         "content-type, authorization, accept", &p, end) ||
              add_header(wsi, "access-control-max-age:", "600", &p, end))) ||
            (r->close_after &&
             add_header(wsi, "connection:", "close", &p, end)) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
        if (blen && lws_write(wsi, (unsigned char *)r->out.data + LWS_PRE, blen,
                              LWS_WRITE_HTTP_FINAL) < (int)blen)
                return -1;
        /* lws copied whatever the socket did not take; the transaction
         * may now free this per-connection data */
        r->status = 0;
        mls_buf_free(&r->body);
        mls_buf_free(&r->out);
        mls_principal_clear(&r->who);
        if (r->close_after)
                return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Copies a header into buf; "" when absent. */
static const char *header(struct lws *wsi, enum lws_token_indexes h, char *buf,
                          int size)
{
        if (lws_hdr_copy(wsi, buf, size, h) < 0)
                buf[0] = '\0';
        return buf;
}

static void serve_graphql(mls_gateway_t *g, struct lws *wsi,
                          struct mls__gw_http_pss *r)
{
        struct mls_gqlhttp_req req;
        struct mls_gqlhttp_resp resp;
        char accept[512], ctype[256];
        char *args[4] = {NULL, NULL, NULL, NULL};
        static const char *const names[4] = {"query", "operationName",
                                             "variables", "extensions"};
        char *frag = NULL;

        memset(&req, 0, sizeof(req));
        req.method = r->method == LWSHUMETH_GET    ? MLS_HTTP_GET
                     : r->method == LWSHUMETH_POST ? MLS_HTTP_POST
                                                   : MLS_HTTP_OTHER;
        header(wsi, WSI_TOKEN_HTTP_ACCEPT, accept, sizeof(accept));
        req.accept = accept[0] ? accept : NULL;
        header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, ctype, sizeof(ctype));
        req.content_type = ctype[0] ? ctype : NULL;
        if (req.method == MLS_HTTP_GET) {
                /* lws splits the query string at '&' and url-decodes each
                 * "name=value" fragment */
                int size =
                        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) + 1;
                frag = malloc((size_t)size);
                for (int i = 0; frag; i++) {
                        int n = lws_hdr_copy_fragment(
                                wsi, frag, size, WSI_TOKEN_HTTP_URI_ARGS, i);
                        char *eq;
                        if (n < 0)
                                break;
                        eq = strchr(frag, '=');
                        if (!eq)
                                continue;
                        *eq = '\0';
                        for (int k = 0; k < 4; k++)
                                if (!args[k] && strcmp(frag, names[k]) == 0)
                                        args[k] = strdup(eq + 1);
                }
                req.query = args[0];
                req.operation_name = args[1];
                req.variables = args[2];
                req.extensions = args[3];
        } else if (req.method == MLS_HTTP_POST) {
                req.body = r->body.data;
                req.body_len = r->body.len;
        }
        out_begin(r);
        mls_gqlhttp_handle(g->cache, &req, &r->who, &r->out, &resp);
        r->allow = resp.allow;
        free(frag);
        for (int k = 0; k < 4; k++)
                free(args[k]);
        respond(wsi, r, resp.status, resp.content_type);
}

/*
 * Checks the request's bearer token into r->who. Returns 0, or responds
 * (401 without one, 403 for a refused one or, with need_all, one limited
 * to some tenants) and returns 1.
 */
static int authorize(mls_gateway_t *g, struct lws *wsi,
                     struct mls__gw_http_pss *r, int need_all)
{
        int n;
        char *h;
        enum mls_auth_result res;
        const char *why = "";

        if (!mls_auth_enabled(g->auth))
                return 0;
        n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
        h = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (h && lws_hdr_copy(wsi, h, n + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
                h[0] = '\0';
        if (n > 0 && !h)
                res = MLS_AUTH_INVALID; /* out of memory: refuse */
        else
                res = mls_auth_check_header(g->auth, h, &r->who, &why);
        if (h) {
                OPENSSL_cleanse(h, (size_t)n + 1);
                free(h);
        }
        if (res == MLS_AUTH_OK && need_all && r->who.tenants) {
                res = MLS_AUTH_INVALID;
                why = "a tenant-scoped token may not read /metrics";
                mls_principal_clear(&r->who);
        }
        if (res == MLS_AUTH_OK)
                return 0;
        mls__gw_metrics_auth_failed(g, "http", res, why);
        /* the body that may follow is not read: close after the answer,
         * or the body callbacks would run the request anyway */
        r->close_after = 1;
        if (res == MLS_AUTH_MISSING) {
                r->www_auth = 1;
                respond_error(wsi, r, 401,
                              "Authentication required: send "
                              "Authorization: Bearer <token>.");
        } else {
                respond_error(wsi, r, 403,
                              res == MLS_AUTH_EXPIRED
                                      ? "The bearer token has expired."
                                      : "The bearer token is not accepted "
                                        "here.");
        }
        return 1;
}

static int on_request(mls_gateway_t *g, struct lws *wsi,
                      struct mls__gw_http_pss *r, const char *path)
{
        char *uri = NULL, origin[256], clen[32];
        int ulen = 0;

        reset(r, g->max_message);
        r->method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
        r->route = route_of(path);
        switch (r->route) {
        case MLS__GW_R_GRAPHQL:
                /* a result is one message to a client: the same cap as on
                 * WebSockets (larger: 500 with an error body), rather than
                 * 64 MiB a client could ask for on every connection */
                mls_buf_free(&r->out);
                mls_buf_init(&r->out, LWS_PRE + g->max_payload);
                header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin));
                /* an Origin too long to copy is not "no Origin" */
                if ((!origin[0] &&
                     lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0 &&
                     mls__gw_origin_enforced(&g->origins)) ||
                    !mls__gw_origin_ok(&g->origins,
                                       origin[0] ? origin : NULL)) {
                        r->close_after = 1; /* as in authorize() */
                        return respond_error(wsi, r, 403,
                                             "This origin is not allowed "
                                             "(GATEWAY_ALLOWED_ORIGINS).");
                }
                if (origin[0] && g->origins.list) {
                        r->cors = 1;
                        snprintf(r->origin, sizeof(r->origin), "%s", origin);
                }
                if (r->method == LWSHUMETH_OPTIONS) {
                        r->preflight = 1;
                        out_begin(r);
                        return respond(wsi, r, 204, "text/plain");
                }
                if (authorize(g, wsi, r, 0))
                        return 0;
                if (r->method == LWSHUMETH_POST) {
                        header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen,
                               sizeof(clen));
                        if (clen[0] &&
                            strtoull(clen, NULL, 10) > g->max_message) {
                                r->close_after = 1;
                                return respond_error(
                                        wsi, r, 413,
                                        "The request body is larger than "
                                        "GATEWAY_MAX_MESSAGE_BYTES.");
                        }
                        return 0; /* the body follows */
                }
                serve_graphql(g, wsi, r);
                return 0;
        case MLS__GW_R_METRICS:
                if (g->metrics_auth && authorize(g, wsi, r, 1))
                        return 0;
                out_begin(r);
                if (mls__gw_metrics_render(g, &r->out) < 0)
                        return respond_text(wsi, r, 500, "metrics too large\n");
                return respond(wsi, r, 200,
                               "text/plain; version=0.0.4; charset=utf-8");
        case MLS__GW_R_HEALTHZ:
                return respond_text(wsi, r, 200, "ok\n");
        case MLS__GW_R_READYZ:
                if (mls__gw_ready(g))
                        return respond_text(wsi, r, 200, "ready\n");
                return respond_text(wsi, r, 503,
                                    "not ready: the Redis subscription is "
                                    "down\n");
        case MLS__GW_R_PAGE:
                out_begin(r);
                mls_buf_append(&r->out, mls_web_index_html,
                               mls_web_index_html_len);
                return respond(wsi, r, 200, "text/html; charset=utf-8");
        default:
                return respond_text(wsi, r, 404, "not found\n");
        }
}

int mls__gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                          void *user, void *in, size_t len)
{
        struct mls__gw_http_pss *r = user;
        mls_gateway_t *g = lws_context_user(lws_get_context(wsi));

        switch (reason) {
        case LWS_CALLBACK_HTTP:
                return on_request(g, wsi, r, in ? in : "/");
        case LWS_CALLBACK_HTTP_BODY:
                if (r->route == MLS__GW_R_GRAPHQL &&
                    r->method == LWSHUMETH_POST && !r->close_after)
                        mls_buf_append(&r->body, in, len);
                return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                if (r->route != MLS__GW_R_GRAPHQL ||
                    r->method != LWSHUMETH_POST || r->close_after)
                        return 0;
                if (r->body.overflow) {
                        r->close_after = 1;
                        return respond_error(wsi, r, 413,
                                             "The request body is larger "
                                             "than GATEWAY_MAX_MESSAGE_BYTES.");
                }
                /* One POST per connection: with libwebsockets 4.1 on
                 * libuv, a client pipelining POSTs without reading the
                 * answers sent the event loop spinning for good
                 * (tests/e2e/abuse_connections.test.mjs). Answering with
                 * "connection: close" ends it after each answer. */
                r->close_after = 1;
                serve_graphql(g, wsi, r);
                return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
                if (!r || !r->status)
                        return 0;
                return write_response(g, wsi, r);
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                /* lws frees the per-connection data after this */
                if (r) {
                        mls_buf_free(&r->body);
                        mls_buf_free(&r->out);
                        mls_principal_clear(&r->who);
                }
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        case LWS_CALLBACK_CLOSED_HTTP:
                if (r) {
                        mls_buf_free(&r->body);
                        mls_buf_free(&r->out);
                        mls_principal_clear(&r->who);
                }
                return 0;
        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}
