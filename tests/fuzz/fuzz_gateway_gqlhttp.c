/*
 * libFuzzer target for GraphQL over HTTP (src/gateway/gqlhttp.c): what a
 * client controls in a /graphql request (method, Content-Type, Accept, the
 * GET parameters or the POST body) against the gateway's schema.
 *
 * Input: the first byte picks the method (bits 0-1: GET, POST, another, or
 * POST with a 256-byte response cap) and which of the headers and
 * parameters are absent (bits 2-7, one each for Content-Type, Accept,
 * query, operationName, variables, extensions). The rest is split at
 * 0x1e bytes into Content-Type, Accept, query, operationName, variables and
 * extensions; what follows the sixth 0x1e is the POST body (NUL bytes and
 * all).
 *
 * Whatever the input: no crash, no leak; the status is one the
 * GraphQL-over-HTTP specification allows (200, 400, 405, 406, 415, or 500
 * for a response over the cap), Allow comes with 405 and only then, the
 * media type is what the Accept header negotiates (JSON when it negotiates
 * none), and the body is one JSON object with "data" or a non-empty
 * "errors" list.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway/gqlhttp.h"

#define FIELDS 6

static mls_gql_schema_t *schema;
static mls_gql_cache_t *cache;

static json_t *status_cb(void *opaque, void *request_ctx,
                         const char *field_name, json_t *args, char *errstr,
                         size_t errstr_size)
{
        (void)opaque;
        (void)request_ctx;
        (void)field_name;
        (void)errstr;
        (void)errstr_size;
        return json_pack("{s:O,s:b,s:n,s:f,s:n,s:i}", "modelId",
                         json_object_get(args, "modelId"), "connected", 1,
                         "lastHeartbeatAt", "averageLatencyMs", 1.5,
                         "p95LatencyMs", "windowSize", 3);
}

static void setup(void)
{
        char err[256];

        schema = mls_gql_schema_new(err, sizeof(err));
        if (!schema ||
            mls_gql_schema_set_resolver(schema, "Query", "mlStreamingStatus",
                                        status_cb, NULL, err, sizeof(err)) < 0)
                abort();
        cache = mls_gql_cache_new(schema, NULL, 32, err, sizeof(err));
        if (!cache)
                abort();
}

static void check(const struct mls_gqlhttp_req *req,
                  const struct mls_gqlhttp_resp *resp, const struct mls_buf *b)
{
        const char *want = mls_gqlhttp_negotiate(req->accept);
        json_t *v, *errors;

        switch (resp->status) {
        case 200:
        case 400:
        case 405:
        case 406:
        case 415:
        case 500:
                break;
        default:
                abort();
        }
        if ((resp->status == 405) != (resp->allow != NULL))
                abort();
        if (!resp->content_type ||
            strcmp(resp->content_type, want ? want : MLS_GQLHTTP_TYPE_JSON) ||
            (!want && resp->status != 406))
                abort();
        v = json_loadb(b->data ? b->data : "", b->len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(v))
                abort();
        errors = json_object_get(v, "errors");
        if (!json_object_get(v, "data") &&
            !(json_is_array(errors) && json_array_size(errors) > 0))
                abort();
        json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *copy, *field[FIELDS] = {NULL}, *p, *end;
        const char **slot[FIELDS];
        struct mls_gqlhttp_req req;
        struct mls_gqlhttp_resp resp;
        struct mls_buf body;
        uint8_t flags;

        if (!schema)
                setup();
        if (size < 1)
                return 0;
        flags = data[0];
        copy = malloc(size); /* the rest and a NUL */
        if (!copy)
                return 0;
        memcpy(copy, data + 1, size - 1);
        copy[size - 1] = '\0';
        memset(&req, 0, sizeof(req));
        req.method = (flags & 3) == 0   ? MLS_HTTP_GET
                     : (flags & 3) == 2 ? MLS_HTTP_OTHER
                                        : MLS_HTTP_POST;
        slot[0] = &req.content_type;
        slot[1] = &req.accept;
        slot[2] = &req.query;
        slot[3] = &req.operation_name;
        slot[4] = &req.variables;
        slot[5] = &req.extensions;
        p = copy;
        end = copy + size - 1;
        for (int i = 0; i < FIELDS && p; i++) {
                char *sep = memchr(p, 0x1e, (size_t)(end - p));
                field[i] = p;
                if (sep)
                        *sep = '\0';
                p = sep ? sep + 1 : NULL;
        }
        for (int i = 0; i < FIELDS; i++)
                if (field[i] && !(flags & (4u << i)))
                        *slot[i] = field[i];
        if (p) {
                req.body = p;
                req.body_len = (size_t)(end - p);
        }
        /* an empty header is an absent one (http.c passes NULL for both) */
        if (req.accept && !*req.accept)
                req.accept = NULL;
        if (req.content_type && !*req.content_type)
                req.content_type = NULL;
        mls_buf_init(&body, (flags & 3) == 3 ? 256 : 1 << 20);
        mls_gqlhttp_handle(cache, &req, NULL, &body, &resp);
        check(&req, &resp, &body);
        mls_buf_free(&body);
        free(copy);
        return 0;
}
