#include "gateway/gqlhttp.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/json.h"

/* Compares the media type at s (up to ';', ',' or the end, trimmed) with
 * type, case-insensitively. */
static int media_is(const char *s, size_t n, const char *type)
{
        size_t tl = strlen(type);

        while (n && (*s == ' ' || *s == '\t')) {
                s++;
                n--;
        }
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        return n == tl && strncasecmp(s, type, n) == 0;
}

/* q of a media range's parameters ("; q=0.5"); 1 when absent. */
static double quality(const char *params, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (params[i] != ';')
                        continue;
                i++;
                while (i < n && (params[i] == ' ' || params[i] == '\t'))
                        i++;
                if (i + 1 < n && (params[i] == 'q' || params[i] == 'Q') &&
                    params[i + 1] == '=')
                        return strtod(params + i + 2, NULL);
        }
        return 1;
}

const char *mls_gqlhttp_negotiate(const char *accept)
{
        double best_gql = 0, best_json = 0;
        const char *p = accept;

        if (!accept || !*accept)
                return MLS_GQLHTTP_TYPE_JSON;
        while (*p) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                const char *semi = memchr(p, ';', n);
                size_t tn = semi ? (size_t)(semi - p) : n;
                double q = quality(p, n);

                if (media_is(p, tn, MLS_GQLHTTP_TYPE_GQL)) {
                        if (q > best_gql)
                                best_gql = q;
                } else if (media_is(p, tn, MLS_GQLHTTP_TYPE_JSON) ||
                           media_is(p, tn, "application/*") ||
                           media_is(p, tn, "*/*")) {
                        if (q > best_json)
                                best_json = q;
                }
                p += n + (end ? 1 : 0);
        }
        if (best_gql > 0 && best_gql >= best_json)
                return MLS_GQLHTTP_TYPE_GQL;
        if (best_json > 0)
                return MLS_GQLHTTP_TYPE_JSON;
        if (best_gql > 0)
                return MLS_GQLHTTP_TYPE_GQL;
        return NULL;
}

static void write_json(struct mls_buf *body, struct mls_gqlhttp_resp *resp,
                       json_t *v)
{
        size_t start = body->len;

        if (!v || mls_json_write(body, v) < 0) {
                body->len = start;
                body->overflow = 0;
                resp->status = 500;
                mls_buf_puts(body, "{\"errors\":[{\"message\":\"The response "
                                   "is too large.\"}]}");
        }
}

static void request_error(struct mls_buf *body, struct mls_gqlhttp_resp *resp,
                          int status, const char *message)
{
        json_t *v = json_pack("{s:[{s:s}]}", "errors", "message", message);

        resp->status = status;
        write_json(body, resp, v);
        json_decref(v);
}

static int nullish_or_object(json_t *v)
{
        return !v || json_is_null(v) || json_is_object(v);
}

/* Decodes a GET parameter that holds JSON. Returns 0 with *out a new
 * reference (NULL when absent or empty), -1 when it is not a JSON
 * object. */
static int json_param(const char *s, json_t **out)
{
        json_error_t jerr;

        *out = NULL;
        if (!s || !*s)
                return 0;
        *out = json_loads(s, 0, &jerr);
        if (*out && json_is_null(*out)) {
                json_decref(*out);
                *out = NULL;
                return 0;
        }
        if (!json_is_object(*out)) {
                json_decref(*out);
                *out = NULL;
                return -1;
        }
        return 0;
}

void mls_gqlhttp_handle(mls_gql_cache_t *cache,
                        const struct mls_gqlhttp_req *req, void *request_ctx,
                        struct mls_buf *body, struct mls_gqlhttp_resp *resp)
{
        json_t *root = NULL, *vars = NULL, *ext = NULL, *errors = NULL;
        json_t *result = NULL, *jq, *jop, *bvars, *bext;
        const char *query = NULL, *opname = NULL;
        size_t qlen = 0;
        enum mls_gql_op_kind kind;
        mls_gql_doc_t *doc = NULL;
        json_error_t jerr;
        char errstr[256];
        int gql;

        memset(resp, 0, sizeof(*resp));
        resp->content_type = mls_gqlhttp_negotiate(req->accept);
        if (!resp->content_type) {
                resp->content_type = MLS_GQLHTTP_TYPE_JSON;
                request_error(body, resp, 406,
                              "Accept application/graphql-response+json or "
                              "application/json.");
                return;
        }
        gql = strcmp(resp->content_type, MLS_GQLHTTP_TYPE_GQL) == 0;

        if (req->method == MLS_HTTP_POST) {
                const char *ct = req->content_type;
                size_t n = ct ? strcspn(ct, ";") : 0;
                if (!ct || !media_is(ct, n, "application/json")) {
                        request_error(body, resp, 415,
                                      "POST requests need Content-Type: "
                                      "application/json.");
                        return;
                }
                root = json_loadb(req->body ? req->body : "", req->body_len, 0,
                                  &jerr);
                if (!json_is_object(root)) {
                        request_error(body, resp, 400,
                                      root ? "The request body must be a "
                                             "JSON object."
                                           : "The request body is not "
                                             "valid JSON.");
                        goto out;
                }
                jq = json_object_get(root, "query");
                jop = json_object_get(root, "operationName");
                bvars = json_object_get(root, "variables");
                bext = json_object_get(root, "extensions");
                if (!json_is_string(jq)) {
                        request_error(body, resp, 400,
                                      "\"query\" must be a string.");
                        goto out;
                }
                if (jop && !json_is_null(jop) && !json_is_string(jop)) {
                        request_error(body, resp, 400,
                                      "\"operationName\" must be a string "
                                      "or null.");
                        goto out;
                }
                if (!nullish_or_object(bvars) || !nullish_or_object(bext)) {
                        request_error(body, resp, 400,
                                      "\"variables\" and \"extensions\" "
                                      "must be objects or null.");
                        goto out;
                }
                query = json_string_value(jq);
                qlen = json_string_length(jq);
                opname = json_string_value(jop);
                vars = json_is_object(bvars) ? json_incref(bvars) : NULL;
        } else if (req->method == MLS_HTTP_GET) {
                if (!req->query) {
                        request_error(body, resp, 400,
                                      "Missing \"query\" parameter.");
                        return;
                }
                if (json_param(req->variables, &vars) < 0) {
                        request_error(body, resp, 400,
                                      "\"variables\" must be a JSON "
                                      "object.");
                        goto out;
                }
                if (json_param(req->extensions, &ext) < 0) {
                        request_error(body, resp, 400,
                                      "\"extensions\" must be a JSON "
                                      "object.");
                        goto out;
                }
                json_decref(ext);
                ext = NULL;
                query = req->query;
                qlen = strlen(query);
                opname = req->operation_name && *req->operation_name
                                 ? req->operation_name
                                 : NULL;
        } else {
                resp->allow = "GET, POST";
                request_error(body, resp, 405,
                              "GraphQL requests are GET or POST.");
                return;
        }

        doc = mls_gql_cache_get(cache, query, qlen, &errors);
        if (!doc) {
                resp->status = gql ? 400 : 200;
                result = json_pack("{s:o}", "errors",
                                   errors ? errors
                                          : json_pack("[{s:s}]", "message",
                                                      "out of memory"));
                write_json(body, resp, result);
                goto out;
        }
        if (mls_gql_doc_operation(doc, opname, &kind, errstr, sizeof(errstr)) <
            0) {
                request_error(body, resp, gql ? 400 : 200, errstr);
                goto out;
        }
        if (req->method == MLS_HTTP_GET && kind != MLS_GQL_QUERY) {
                resp->allow = "POST";
                request_error(body, resp, 405,
                              kind == MLS_GQL_MUTATION
                                      ? "Mutations need POST."
                                      : "Subscriptions need a WebSocket "
                                        "(graphql-transport-ws or graphql-ws "
                                        "on /graphql).");
                goto out;
        }
        if (kind == MLS_GQL_SUBSCRIPTION) {
                request_error(body, resp, gql ? 400 : 200,
                              "Subscriptions need a WebSocket "
                              "(graphql-transport-ws or graphql-ws on "
                              "/graphql).");
                goto out;
        }
        result = mls_gql_execute(doc, opname, vars, request_ctx);
        resp->status = !gql || json_object_get(result, "data") ? 200 : 400;
        write_json(body, resp, result);
out:
        mls_gql_doc_unref(doc);
        json_decref(result);
        json_decref(vars);
        json_decref(ext);
        json_decref(root);
}
