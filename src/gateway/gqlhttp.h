/*
 * GraphQL over HTTP (the GraphQL-over-HTTP specification): request
 * parsing, media type negotiation, status codes and error format for
 * /graphql, independent of the HTTP server.
 *
 *  - POST with Content-Type application/json (else 415), body
 *    {"query", "operationName"?, "variables"?, "extensions"?};
 *  - GET with query parameters of the same names (variables and
 *    extensions JSON-encoded); only query operations (else 405);
 *  - any other method: 405 with Allow: GET, POST;
 *  - responses in application/graphql-response+json when the client
 *    accepts it (requests that fail before execution are then 400), else
 *    application/json (200 for every well-formed request); 406 when the
 *    client accepts neither; 400 for malformed requests.
 *
 * Threads: the gateway loop thread (the cache is not thread-safe).
 */
#ifndef MLS_GATEWAY_GQLHTTP_H
#define MLS_GATEWAY_GQLHTTP_H

#include <stddef.h>

#include "common/buf.h"
#include "graphql/graphql.h"

#define MLS_GQLHTTP_TYPE_GQL "application/graphql-response+json"
#define MLS_GQLHTTP_TYPE_JSON "application/json"

enum mls_http_method {
        MLS_HTTP_GET,
        MLS_HTTP_POST,
        MLS_HTTP_OTHER,
};

struct mls_gqlhttp_req {
        enum mls_http_method method;
        const char *content_type; /* NULL when absent */
        const char *accept;       /* NULL when absent */
        /* GET: the decoded query parameters, NULL when absent */
        const char *query, *operation_name, *variables, *extensions;
        /* POST */
        const char *body;
        size_t body_len;
};

struct mls_gqlhttp_resp {
        int status;
        const char *content_type; /* static string */
        const char *allow;        /* for 405: the Allow header, else NULL */
};

/* Handles one request, appending the response body to body (capped by the
 * caller; a response over the cap becomes a 500 with an error body).
 * request_ctx goes to the resolvers. */
void mls_gqlhttp_handle(mls_gql_cache_t *cache,
                        const struct mls_gqlhttp_req *req, void *request_ctx,
                        struct mls_buf *body, struct mls_gqlhttp_resp *resp);

/* Which media type to answer in for an Accept header value (NULL when
 * absent): MLS_GQLHTTP_TYPE_GQL, MLS_GQLHTTP_TYPE_JSON, or NULL when
 * neither is acceptable. */
const char *mls_gqlhttp_negotiate(const char *accept);

#endif
