/*
 * The engine's limits (struct mls_gql_limits): the defaults, and filling in
 * the ones a caller left at zero. Used by the parser, documents and the
 * cache alike, so it depends on none of them.
 */
#include "graphql/graphql_int.h"

void mls_gql_limits_default(struct mls_gql_limits *l)
{
        l->max_document_bytes = 256 * 1024;
        l->max_tokens = 50000;
        l->max_parse_depth = 128;
        l->max_field_depth = 64;
        l->max_errors = 100;
        l->max_plan_fields = 20000;
        l->max_completions = 1000000;
        l->max_cost = 50000;
}

void mls__gql_limits_fill(struct mls_gql_limits *out,
                          const struct mls_gql_limits *in)
{
        struct mls_gql_limits d;

        mls_gql_limits_default(&d);
        if (!in) {
                *out = d;
                return;
        }
        *out = *in;
        if (!out->max_document_bytes)
                out->max_document_bytes = d.max_document_bytes;
        if (!out->max_tokens)
                out->max_tokens = d.max_tokens;
        if (!out->max_parse_depth)
                out->max_parse_depth = d.max_parse_depth;
        if (!out->max_field_depth)
                out->max_field_depth = d.max_field_depth;
        if (!out->max_errors)
                out->max_errors = d.max_errors;
        if (!out->max_plan_fields)
                out->max_plan_fields = d.max_plan_fields;
        if (!out->max_completions)
                out->max_completions = d.max_completions;
        if (!out->max_cost)
                out->max_cost = d.max_cost;
}
