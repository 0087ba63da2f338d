/*
 * Documents: parsed and validated once, then shared (by reference count)
 * between the cache, running requests and live subscriptions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

static json_t *one_error(const char *msg, const struct mls__gql_loc *loc)
{
        json_t *arr = NULL;

        mls__gql_errors_push(&arr, mls__gql_error(msg, loc, loc ? 1 : 0, NULL));
        return arr;
}

mls_gql_doc_t *mls_gql_doc_new(const mls_gql_schema_t *schema, const char *text,
                               size_t len, const struct mls_gql_limits *limits,
                               json_t **errors)
{
        struct mls__gql_loc loc;
        char err[512];
        mls_gql_doc_t *doc;
        unsigned i = 0;

        *errors = NULL;
        doc = calloc(1, sizeof(*doc));
        if (!doc)
                return NULL;
        doc->refs = 1;
        doc->schema = schema;
        mls__gql_arena_init(&doc->arena);
        mls__gql_limits_fill(&doc->limits, limits);
        doc->ast = mls__gql_parse(&doc->arena, text, len, &doc->limits, err,
                                  sizeof(err), &loc);
        if (!doc->ast) {
                *errors = one_error(err, loc.line ? &loc : NULL);
                goto fail;
        }
        *errors = mls__gql_validate(schema, doc->ast, &doc->limits);
        if (*errors)
                goto fail;
        doc->frags = mls__gql_arena_alloc(
                &doc->arena, (doc->ast->nfrags + 1) * sizeof(*doc->frags));
        if (!doc->frags) {
                *errors = one_error("Out of memory.", NULL);
                goto fail;
        }
        mls__gql_map_init(&doc->fragmap, &doc->arena);
        for (const struct mls__gql_definition *d = doc->ast->defs; d;
             d = d->next) {
                if (!d->is_fragment)
                        continue;
                doc->frags[i] = d;
                if (mls__gql_map_put(&doc->fragmap, d->name, i) < 0) {
                        *errors = one_error("Out of memory.", NULL);
                        goto fail;
                }
                i++;
        }
        doc->bytes = sizeof(*doc) + doc->arena.bytes;
        return doc;
fail:
        mls__gql_arena_free(&doc->arena);
        free(doc);
        return NULL;
}

mls_gql_doc_t *mls_gql_doc_ref(mls_gql_doc_t *doc)
{
        doc->refs++;
        return doc;
}

void mls_gql_doc_unref(mls_gql_doc_t *doc)
{
        if (!doc || --doc->refs > 0)
                return;
        mls__gql_arena_free(&doc->arena);
        free(doc);
}

const struct mls__gql_definition *
mls__gql_doc_find_op(const struct mls_gql_doc *doc, const char *name, char *err,
                     size_t err_size)
{
        const struct mls__gql_definition *found = NULL;

        for (const struct mls__gql_definition *d = doc->ast->defs; d;
             d = d->next) {
                if (d->is_fragment)
                        continue;
                if (name && *name) {
                        if (d->name && strcmp(d->name, name) == 0)
                                return d;
                } else if (found) {
                        snprintf(err, err_size,
                                 "Must provide operation name if query "
                                 "contains multiple operations.");
                        return NULL;
                } else {
                        found = d;
                }
        }
        if (found)
                return found;
        if (name && *name)
                snprintf(err, err_size, "Unknown operation named \"%s\".",
                         name);
        else
                snprintf(err, err_size, "Must provide an operation.");
        return NULL;
}

int mls_gql_doc_operation(const mls_gql_doc_t *doc, const char *operation_name,
                          enum mls_gql_op_kind *kind, char *errstr,
                          size_t errstr_size)
{
        const struct mls__gql_definition *op =
                mls__gql_doc_find_op(doc, operation_name, errstr, errstr_size);

        if (!op)
                return -1;
        *kind = op->op;
        return 0;
}
