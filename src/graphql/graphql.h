/*
 * mlstream's GraphQL engine: parser, validator, executor and introspection
 * for the schema of DESIGN.md section 5, over jansson values.
 *
 * Threads: none of this is thread-safe. Everything here is meant to run on
 * the gateway's event-loop thread; reference counts are plain integers.
 *
 * Errors that a GraphQL client should see (syntax, validation, variable
 * coercion) come back as a jansson array of GraphQL error objects
 * ({"message", "locations"?, "path"?}), ready to send as the "errors" of a
 * response or the payload of a graphql-transport-ws "error" message. Set-up
 * errors meant for the operator use the errstr/errstr_size convention.
 *
 * Typical use from the gateway:
 *
 *   schema = mls_gql_schema_new(errstr, sizeof(errstr));
 *   mls_gql_schema_set_resolver(schema, "Query", "mlStreamingStatus",
 *                               status_cb, monitor, errstr, sizeof(errstr));
 *   cache = mls_gql_cache_new(schema, NULL, 512, errstr, sizeof(errstr));
 *
 *   query:   resp = mls_gql_request(cache, text, len, opname, vars, conn);
 *   subscribe:
 *            doc = mls_gql_cache_get(cache, text, len, &errors);
 *            sub = mls_gql_sub_prepare(doc, opname, vars, &errors);
 *            mls_gql_doc_unref(doc);
 *            model = json_string_value(json_object_get(
 *                            mls_gql_sub_args(sub), "modelId"));
 *   event:   mls_gql_sub_render(sub, prediction, &frame);
 *   end:     mls_gql_sub_free(sub);
 */
#ifndef MLS_GRAPHQL_H
#define MLS_GRAPHQL_H

#include <stddef.h>

#include <jansson.h>

struct mls_buf;

typedef struct mls_gql_schema mls_gql_schema_t;
typedef struct mls_gql_doc mls_gql_doc_t;
typedef struct mls_gql_cache mls_gql_cache_t;
typedef struct mls_gql_sub mls_gql_sub_t;

/* Caps applied to every document, so that hostile input costs bounded time
 * and stack. A zero field means "use the default". */
struct mls_gql_limits {
        size_t max_document_bytes;     /* default 256 KiB */
        unsigned max_tokens;           /* default 50000 */
        unsigned max_parse_depth;      /* nested braces/brackets; default 128 */
        unsigned max_field_depth;      /* fields deep, fragments expanded; 64 */
        unsigned max_errors;           /* validation errors kept; default 100 */
        unsigned max_plan_fields;      /* fields after fragment expansion in
                                          one operation; default 20000 */
        unsigned long max_completions; /* values completed in one execution
                                          (list items count); 1000000 */
        unsigned long max_cost;        /* field resolutions an operation may
                                          cause, lists multiplied by their
                                          size (see validate.c); 50000 */
};

/* Fills *limits with the defaults. */
void mls_gql_limits_default(struct mls_gql_limits *limits);

enum mls_gql_op_kind {
        MLS_GQL_QUERY,
        MLS_GQL_MUTATION,
        MLS_GQL_SUBSCRIPTION,
};

/*
 * A root-field resolver. Called on the gateway loop thread during
 * mls_gql_execute()/mls_gql_request() with the field's coerced arguments as
 * a JSON object (borrowed: do not keep it past the call). "opaque" is what
 * was given to mls_gql_schema_set_resolver(), "request_ctx" what was given
 * to the execute call.
 *
 * Returns a new reference that the executor takes over (json_null() for a
 * null result; objects use the schema's camelCase field names as keys), or
 * NULL after writing a message to errstr: that becomes a field error and the
 * field is null.
 */
typedef json_t *(*mls_gql_resolve_fn)(void *opaque, void *request_ctx,
                                      const char *field_name, json_t *args,
                                      char *errstr, size_t errstr_size);

/* --- schema ------------------------------------------------------------ */

/* Builds the mlstream schema (DESIGN.md section 5, plus built-in scalars,
 * introspection types and directives). Returns NULL and fills errstr when
 * memory runs out. Free with mls_gql_schema_free() after every document,
 * cache and subscription made from it is gone. */
mls_gql_schema_t *mls_gql_schema_new(char *errstr, size_t errstr_size);
void mls_gql_schema_free(mls_gql_schema_t *schema);

/* Sets the resolver of a root field ("Query" or "Mutation" type). Returns 0,
 * or -1 with errstr filled when the type or field does not exist or is not a
 * root field. Subscription root fields have no resolver: the gateway feeds
 * events to mls_gql_sub_event()/mls_gql_sub_render(). */
int mls_gql_schema_set_resolver(mls_gql_schema_t *schema, const char *type_name,
                                const char *field_name, mls_gql_resolve_fn fn,
                                void *opaque, char *errstr, size_t errstr_size);

/* Declares that the list field type_name.field_name returns at most n
 * items, so that the cost limit counts it as n resolutions (its
 * sub-selection n times) instead of assuming 100. Returns 0, or -1 with
 * errstr filled when the field does not exist or is not a list. */
int mls_gql_schema_set_list_size(mls_gql_schema_t *schema,
                                 const char *type_name, const char *field_name,
                                 unsigned n, char *errstr, size_t errstr_size);

/* The schema in GraphQL SDL (user types and directives only, as
 * graphql-js printSchema() leaves out built-ins). Returns a malloc'd string
 * the caller frees, or NULL when memory runs out. */
char *mls_gql_schema_sdl(const mls_gql_schema_t *schema);

/* --- documents ----------------------------------------------------------- */

/* Parses and validates text[0..len) against schema. limits may be NULL for
 * the defaults. On success returns a document with one reference (release
 * with mls_gql_doc_unref()). On failure returns NULL and sets *errors to a new
 * array of GraphQL errors that the caller must json_decref(); *errors is
 * NULL only when memory ran out. The text is copied; the schema must outlive
 * the document. */
mls_gql_doc_t *mls_gql_doc_new(const mls_gql_schema_t *schema, const char *text,
                               size_t len, const struct mls_gql_limits *limits,
                               json_t **errors);
/* Adds a reference and returns doc. */
mls_gql_doc_t *mls_gql_doc_ref(mls_gql_doc_t *doc);
/* Drops a reference; the last one frees the document. NULL is ignored. */
void mls_gql_doc_unref(mls_gql_doc_t *doc);

/* Finds the operation that operation_name (NULL or "" for "the only one")
 * selects and stores its kind in *kind. Returns 0, or -1 and fills errstr
 * with the GraphQL message ("Unknown operation named \"X\".", "Must provide
 * operation name if query contains multiple operations."). */
int mls_gql_doc_operation(const mls_gql_doc_t *doc, const char *operation_name,
                          enum mls_gql_op_kind *kind, char *errstr,
                          size_t errstr_size);

/* --- execution ----------------------------------------------------------- */

/*
 * Executes a query or mutation of doc. variables is a JSON object or NULL
 * (borrowed); request_ctx is passed to the resolvers. Returns a new
 * reference to the response object: {"data": ...} and "errors" when there
 * are any, or just {"errors": [...]} for request errors (bad variables,
 * unknown operation, a subscription operation). NULL only when memory runs
 * out.
 */
json_t *mls_gql_execute(const mls_gql_doc_t *doc, const char *operation_name,
                        json_t *variables, void *request_ctx);

/* Looks up (or parses, validates and caches) text, then executes it as
 * mls_gql_execute() does. Syntax and validation errors come back as
 * {"errors": [...]}. Returns a new reference; NULL only when memory runs
 * out. */
json_t *mls_gql_request(mls_gql_cache_t *cache, const char *text, size_t len,
                        const char *operation_name, json_t *variables,
                        void *request_ctx);

/* --- document cache ------------------------------------------------------ */

/* A bounded LRU cache of parsed and validated documents keyed by their
 * text. max_entries 0 means 256. limits may be NULL (defaults); they are
 * copied. Returns NULL and fills errstr when memory runs out. */
mls_gql_cache_t *mls_gql_cache_new(const mls_gql_schema_t *schema,
                                   const struct mls_gql_limits *limits,
                                   size_t max_entries, char *errstr,
                                   size_t errstr_size);
/* Returns a new reference to the document for text (release with
 * mls_gql_doc_unref()), from the cache or freshly parsed and validated.
 * Only valid documents are cached. On failure NULL and *errors as for
 * mls_gql_doc_new(). */
mls_gql_doc_t *mls_gql_cache_get(mls_gql_cache_t *cache, const char *text,
                                 size_t len, json_t **errors);

struct mls_gql_cache_stats {
        size_t entries;
        unsigned long long hits;
        unsigned long long misses;
        unsigned long long evictions;
};
void mls_gql_cache_stats(const mls_gql_cache_t *cache,
                         struct mls_gql_cache_stats *stats);
/* Frees the cache and drops its references; documents still referenced
 * elsewhere live on. */
void mls_gql_cache_free(mls_gql_cache_t *cache);

/* --- subscriptions ------------------------------------------------------- */

/*
 * Prepares a subscription operation of doc for delivering events: picks the
 * operation, coerces variables (borrowed; may be NULL), coerces the root
 * field's arguments and compiles its selection set once. Keeps a reference
 * to doc. Returns NULL with *errors set (a new array the caller decrefs;
 * NULL only when memory ran out) when the operation is not a subscription,
 * does not exist, or the variables or arguments are invalid.
 */
mls_gql_sub_t *mls_gql_sub_prepare(mls_gql_doc_t *doc,
                                   const char *operation_name,
                                   json_t *variables, json_t **errors);
/* The root field's name ("mlInferenceStream"); valid while sub lives. NULL
 * when @skip/@include removed the root field (events then give
 * {"data": {}}). */
const char *mls_gql_sub_field(const mls_gql_sub_t *sub);
/* The root field's coerced arguments, e.g. {"modelId": "m1"}. Borrowed:
 * valid while sub lives. NULL as for mls_gql_sub_field(). */
json_t *mls_gql_sub_args(const mls_gql_sub_t *sub);
/* The name of the variable that gives the root field's argument arg
 * ("after" for `after: $a` gives "a"), or NULL when the argument is
 * absent, written as a literal, or the root field was removed. Valid
 * while sub lives. */
const char *mls_gql_sub_arg_variable(const mls_gql_sub_t *sub, const char *arg);
/* Runs the subscription's selection set against one event (a prediction
 * object with camelCase keys, borrowed). Returns a new reference to
 * {"data": {...}} (plus "errors" when fields failed), NULL only when memory
 * runs out. */
json_t *mls_gql_sub_event(mls_gql_sub_t *sub, json_t *event);
/* Same result as mls_gql_sub_event() but appended to out as compact JSON,
 * without building the response tree. Returns 0, or -1 when out's cap or
 * memory is exhausted (out->len is then restored). */
int mls_gql_sub_render(mls_gql_sub_t *sub, json_t *event, struct mls_buf *out);

/* One value given as its JSON text; len 0 means null. */
struct mls_gql_text {
        const char *p;
        size_t len;
};

/* An event given as the JSON text of each of its fields, already in the
 * form the response needs: names[i]'s value is values[i]. names must be
 * one fixed array (its address identifies the shape). */
struct mls_gql_text_event {
        const char *const *names;
        const struct mls_gql_text *values;
        unsigned n;
};

/* Same result as mls_gql_sub_render() for an event given as text, written
 * by copying texts between pieces of the response compiled once per
 * subscription: the gateway's fast path. The caller promises that each
 * leaf field's text is what mls_gql_sub_render() would write for it (a
 * JSON string for String, ID and DateTime, mls_buf_json_double() for
 * Float, the value itself for JSON). Returns 1 when rendered, 0 when this
 * selection or this event needs mls_gql_sub_render() (a field with
 * arguments or a list, a non-null field without a value, a composite
 * field with one, the execution limit), -1 as mls_gql_sub_render(). */
int mls_gql_sub_render_text(mls_gql_sub_t *sub,
                            const struct mls_gql_text_event *ev,
                            struct mls_buf *out);
/* Frees sub and drops its document reference. NULL is ignored. */
void mls_gql_sub_free(mls_gql_sub_t *sub);

#endif
