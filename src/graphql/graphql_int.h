/*
 * Internals of the GraphQL engine shared between its files: the arena, the
 * lexer, the AST, the schema model and the helpers that build GraphQL error
 * objects. Not for use outside src/graphql/ (and its unit tests).
 * Single-threaded, like the public API.
 */
#ifndef MLS_GRAPHQL_INT_H
#define MLS_GRAPHQL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/utf8.h"
#include "graphql/graphql.h"

/* Documents and messages are capped elsewhere; this bounds our own
 * scratch buffers so mls_buf never refuses by accident. */
#define MLS__GQL_BUF_LIMIT ((size_t)1 << 30)

/* --- arena: many small allocations, one free ----------------------------- */

struct mls__gql_chunk;

struct mls__gql_arena {
        struct mls__gql_chunk *chunks;
        char *cur;
        size_t left;
        size_t bytes; /* total allocated from malloc */
};

void mls__gql_arena_init(struct mls__gql_arena *a);
/* Returns size zeroed bytes aligned for any type, or NULL when memory runs
 * out. Freed all at once by mls__gql_arena_free(). */
void *mls__gql_arena_alloc(struct mls__gql_arena *a, size_t size);
/* Copies n bytes of s and a NUL; NULL when memory runs out. */
char *mls__gql_arena_strndup(struct mls__gql_arena *a, const char *s, size_t n);
void mls__gql_arena_free(struct mls__gql_arena *a);

/* A map from NUL-terminated names to unsigned values: a common/strmap.h
 * table whose entries, buckets and values live in an arena, so it needs no
 * freeing of its own and dies with the arena. */
struct mls__gql_map {
        struct mls_strmap map; /* values: unsigned cells in the arena */
};

void mls__gql_map_init(struct mls__gql_map *m, struct mls__gql_arena *a);
/* The value stored for key, or NULL. */
unsigned *mls__gql_map_get(const struct mls__gql_map *m, const char *key);
/* Stores val for key unless present. Returns 0 when stored, 1 when the key
 * was there (its value untouched), -1 when memory runs out. */
int mls__gql_map_put(struct mls__gql_map *m, const char *key, unsigned val);

/* --- locations and lexer ------------------------------------------------- */

/* 1-based line and column; column counts UTF-16 units as graphql-js does.
 * line 0 means "no location". */
struct mls__gql_loc {
        uint32_t line;
        uint32_t column;
};

enum mls__gql_tok {
        MLS__GQL_TOK_EOF,
        MLS__GQL_TOK_BANG,
        MLS__GQL_TOK_DOLLAR,
        MLS__GQL_TOK_AMP,
        MLS__GQL_TOK_PAREN_L,
        MLS__GQL_TOK_PAREN_R,
        MLS__GQL_TOK_SPREAD,
        MLS__GQL_TOK_COLON,
        MLS__GQL_TOK_EQUALS,
        MLS__GQL_TOK_AT,
        MLS__GQL_TOK_BRACKET_L,
        MLS__GQL_TOK_BRACKET_R,
        MLS__GQL_TOK_BRACE_L,
        MLS__GQL_TOK_PIPE,
        MLS__GQL_TOK_BRACE_R,
        MLS__GQL_TOK_NAME,
        MLS__GQL_TOK_INT,
        MLS__GQL_TOK_FLOAT,
        MLS__GQL_TOK_STRING,
        MLS__GQL_TOK_BLOCK_STRING,
};

struct mls__gql_token {
        enum mls__gql_tok kind;
        struct mls__gql_loc loc;
        /* Name, Int, Float: the source text. String, BlockString: the
         * decoded value in the arena (may contain NUL bytes), NUL-ended. */
        const char *value;
        size_t value_len;
};

struct mls__gql_lexer {
        const char *src;
        size_t len;
        size_t pos;
        uint32_t line;
        size_t line_start; /* byte offset where the current line starts */
        size_t line_adj;   /* bytes minus UTF-16 units seen on this line */
        struct mls__gql_arena *arena;
        struct mls_buf scratch; /* string decoding */
        char *err;              /* message of the first error */
        size_t err_size;
        struct mls__gql_loc err_loc;
};

/* Prepares to read src[0..len); decoded strings go to arena. Error messages
 * ("Syntax Error: ...") are written to err. */
void mls__gql_lex_init(struct mls__gql_lexer *lx, const char *src, size_t len,
                       struct mls__gql_arena *arena, char *err,
                       size_t err_size);
void mls__gql_lex_fini(struct mls__gql_lexer *lx);
/* Reads the next token into *tok. Returns 0, or -1 with lx->err and
 * lx->err_loc set. At the end it returns MLS__GQL_TOK_EOF tokens forever. */
int mls__gql_lex_next(struct mls__gql_lexer *lx, struct mls__gql_token *tok);
/* "Name", "<EOF>", "\"{\"" ... as graphql-js names token kinds. */
const char *mls__gql_lex_kind_desc(enum mls__gql_tok kind);

/* --- AST ------------------------------------------------------------------ */

enum mls__gql_value_kind {
        MLS__GQL_V_VARIABLE,
        MLS__GQL_V_INT,
        MLS__GQL_V_FLOAT,
        MLS__GQL_V_STRING,
        MLS__GQL_V_BOOLEAN,
        MLS__GQL_V_NULL,
        MLS__GQL_V_ENUM,
        MLS__GQL_V_LIST,
        MLS__GQL_V_OBJECT,
};

struct mls__gql_objfield;

struct mls__gql_value {
        enum mls__gql_value_kind kind;
        struct mls__gql_loc loc;
        /* Variable and enum: the name. Int, Float: the literal text.
         * String: the decoded value, len bytes, may hold NUL bytes. */
        const char *str;
        size_t len;
        bool boolean;
        bool block;                       /* a block string, for printing */
        struct mls__gql_value *items;     /* list items */
        struct mls__gql_objfield *fields; /* object fields */
        unsigned count;                   /* items or fields */
        struct mls__gql_value *next;      /* next list item */
};

struct mls__gql_objfield {
        const char *name;
        struct mls__gql_loc loc;
        struct mls__gql_value *value;
        struct mls__gql_objfield *next;
};

struct mls__gql_arg {
        const char *name;
        struct mls__gql_loc loc;
        struct mls__gql_value *value;
        struct mls__gql_arg *next;
};

struct mls__gql_directive {
        const char *name;
        struct mls__gql_loc loc;
        struct mls__gql_arg *args;
        struct mls__gql_directive *next;
};

enum mls__gql_typeref_kind {
        MLS__GQL_T_NAMED,
        MLS__GQL_T_LIST,
        MLS__GQL_T_NON_NULL,
};

struct mls__gql_typeref {
        enum mls__gql_typeref_kind kind;
        struct mls__gql_loc loc;
        const char *name;            /* named */
        struct mls__gql_typeref *of; /* list, non-null */
};

enum mls__gql_sel_kind {
        MLS__GQL_S_FIELD,
        MLS__GQL_S_SPREAD,
        MLS__GQL_S_INLINE,
};

struct mls__gql_selset;

struct mls__gql_selection {
        enum mls__gql_sel_kind kind;
        struct mls__gql_loc loc; /* start of the selection */
        const char *alias;       /* field; NULL without alias */
        const char *name;        /* field name or spread fragment name */
        struct mls__gql_loc name_loc;
        struct mls__gql_arg *args; /* field */
        struct mls__gql_directive *directives;
        const char *type_cond; /* inline fragment; NULL without one */
        struct mls__gql_loc type_cond_loc;
        struct mls__gql_selset *set; /* NULL for leaves and spreads */
        struct mls__gql_selection *next;
};

struct mls__gql_selset {
        struct mls__gql_loc loc;
        struct mls__gql_selection *first;
        unsigned count;
};

struct mls__gql_vardef {
        const char *name;
        struct mls__gql_loc loc; /* the '$' */
        struct mls__gql_loc name_loc;
        struct mls__gql_typeref *type;
        struct mls__gql_value *default_value; /* NULL without */
        struct mls__gql_directive *directives;
        struct mls__gql_vardef *next;
};

struct mls__gql_definition {
        bool is_fragment;
        enum mls_gql_op_kind op; /* operations */
        const char *name;        /* NULL for anonymous operations */
        struct mls__gql_loc loc;
        struct mls__gql_loc name_loc;
        struct mls__gql_vardef *vardefs;
        unsigned nvardefs;
        struct mls__gql_directive *directives;
        const char *type_cond; /* fragments */
        struct mls__gql_loc type_cond_loc;
        struct mls__gql_selset *set;
        unsigned index; /* among fragments, or among operations */
        struct mls__gql_definition *next;
};

struct mls__gql_document {
        struct mls__gql_definition *defs;
        unsigned nops;
        unsigned nfrags;
};

/* Parses an executable document into arena. Returns the document, or NULL
 * with err ("Syntax Error: ...") and *err_loc filled (line 0 when the error
 * has no location, as for the size cap or running out of memory). */
struct mls__gql_document *mls__gql_parse(struct mls__gql_arena *arena,
                                         const char *text, size_t len,
                                         const struct mls_gql_limits *limits,
                                         char *err, size_t err_size,
                                         struct mls__gql_loc *err_loc);

/* Appends the GraphQL text of v (graphql-js print()). With sorted, object
 * fields are printed in name order, to compare arguments. */
void mls__gql_print_value(struct mls_buf *b, const struct mls__gql_value *v,
                          bool sorted);
/* Appends "[String!]!" for an AST type. */
void mls__gql_print_typeref(struct mls_buf *b,
                            const struct mls__gql_typeref *t);

/* --- schema model -------------------------------------------------------- */

enum mls__gql_kind {
        MLS__GQL_SCALAR,
        MLS__GQL_OBJECT,
        MLS__GQL_INTERFACE,
        MLS__GQL_UNION,
        MLS__GQL_ENUM,
        MLS__GQL_INPUT_OBJECT,
        MLS__GQL_LIST,
        MLS__GQL_NON_NULL,
};

/* How a scalar is coerced. */
enum mls__gql_scalar {
        MLS__GQL_SC_NONE,
        MLS__GQL_SC_INT,
        MLS__GQL_SC_FLOAT,
        MLS__GQL_SC_STRING,
        MLS__GQL_SC_BOOLEAN,
        MLS__GQL_SC_ID,
        MLS__GQL_SC_JSON,
        MLS__GQL_SC_DATETIME,
};

/* How a field gets its value. */
enum mls__gql_resolve {
        MLS__GQL_R_DEFAULT,    /* parent[field name] */
        MLS__GQL_R_ROOT,       /* the gateway's callback */
        MLS__GQL_R_SCHEMA,     /* Query.__schema */
        MLS__GQL_R_TYPE,       /* Query.__type(name:) */
        MLS__GQL_R_DEPRECATED, /* parent[name] less deprecated entries
                                  unless includeDeprecated: true */
};

/* Directive locations, in __DirectiveLocation order. */
enum mls__gql_dir_loc {
        MLS__GQL_DL_QUERY,
        MLS__GQL_DL_MUTATION,
        MLS__GQL_DL_SUBSCRIPTION,
        MLS__GQL_DL_FIELD,
        MLS__GQL_DL_FRAGMENT_DEFINITION,
        MLS__GQL_DL_FRAGMENT_SPREAD,
        MLS__GQL_DL_INLINE_FRAGMENT,
        MLS__GQL_DL_VARIABLE_DEFINITION,
        MLS__GQL_DL_SCHEMA,
        MLS__GQL_DL_SCALAR,
        MLS__GQL_DL_OBJECT,
        MLS__GQL_DL_FIELD_DEFINITION,
        MLS__GQL_DL_ARGUMENT_DEFINITION,
        MLS__GQL_DL_INTERFACE,
        MLS__GQL_DL_UNION,
        MLS__GQL_DL_ENUM,
        MLS__GQL_DL_ENUM_VALUE,
        MLS__GQL_DL_INPUT_OBJECT,
        MLS__GQL_DL_INPUT_FIELD_DEFINITION,
        MLS__GQL_DL_DIRECTIVE_DEFINITION, /* graphql-js 16.11+ */
        MLS__GQL_DL_COUNT,
};

/* The names of the directive locations and type kinds as introspection,
 * SDL and messages spell them (names.c). */
extern const char *const mls__gql_dir_loc_names[MLS__GQL_DL_COUNT];
extern const char *const mls__gql_kind_names[8];

struct mls__gql_type;

struct mls__gql_input_value {
        const char *name;
        const char *description;
        struct mls__gql_type *type;
        const char *default_literal; /* GraphQL text, NULL without default */
        json_t *default_json;        /* the same, coerced; NULL without */
        const char *deprecation;     /* reason, NULL when not deprecated */
};

struct mls__gql_field {
        const char *name;
        const char *description;
        struct mls__gql_input_value *args;
        unsigned nargs;
        struct mls__gql_type *type;
        const char *deprecation;
        enum mls__gql_resolve resolve;
        mls_gql_resolve_fn fn; /* MLS__GQL_R_ROOT */
        void *opaque;
        struct mls__gql_type *parent;
        /* lists: the most items the field can return, for the cost limit
         * (introspection: from the schema; root fields: set by the
         * gateway); 0: unknown, MLS__GQL_LIST_SIZE_DEFAULT is assumed */
        unsigned list_size;
};

#define MLS__GQL_LIST_SIZE_DEFAULT 100

struct mls__gql_enum_value {
        const char *name;
        const char *description;
        const char *deprecation;
};

struct mls__gql_type {
        enum mls__gql_kind kind;
        const char *name; /* NULL for wrappers */
        const char *description;
        const char *specified_by;
        enum mls__gql_scalar scalar;
        struct mls__gql_field *fields; /* objects */
        unsigned nfields;
        struct mls__gql_input_value *input_fields; /* input objects */
        unsigned ninput_fields;
        struct mls__gql_enum_value *enum_values;
        unsigned nenum_values;
        struct mls__gql_type *of; /* wrappers */
        json_t *intro;            /* named types: the __Type value */
};

struct mls__gql_directive_def {
        const char *name;
        const char *description;
        unsigned locations; /* 1 << enum mls__gql_dir_loc */
        struct mls__gql_input_value *args;
        unsigned nargs;
        bool repeatable;
};

struct mls_gql_schema {
        struct mls__gql_arena arena;
        const char *description;
        struct mls__gql_type **types; /* named types, in definition order */
        unsigned ntypes;
        struct mls__gql_directive_def *directives;
        unsigned ndirectives;
        struct mls__gql_type *query;
        struct mls__gql_type *mutation;
        struct mls__gql_type *subscription;
        json_t *intro; /* the __Schema value */
        /* __schema and __type on the query type, __typename anywhere */
        struct mls__gql_field meta_schema;
        struct mls__gql_field meta_type;
        struct mls__gql_field meta_typename;
};

/* Table-driven schema definitions. The mlstream schema is one such table
 * (schema.c); unit tests build others. Type strings are GraphQL type
 * references ("[String!]!"); defaults are literals valid both as GraphQL
 * and as JSON (false, 3, "text", null). */
struct mls__gql_argdef {
        const char *name;
        const char *type;
        const char *description;
        const char *default_literal;
        const char *deprecation;
};

struct mls__gql_fielddef {
        const char *name;
        const char *type;
        const char *description;
        const struct mls__gql_argdef *args; /* ends with a NULL name */
        const char *deprecation;
        enum mls__gql_resolve resolve;
};

struct mls__gql_enumdef {
        const char *name;
        const char *description;
        const char *deprecation;
};

struct mls__gql_typedef {
        enum mls__gql_kind kind;
        const char *name;
        const char *description;
        const char *specified_by;
        enum mls__gql_scalar scalar;
        const struct mls__gql_fielddef *fields;     /* objects */
        const struct mls__gql_argdef *input_fields; /* input objects */
        const struct mls__gql_enumdef *values;      /* enums */
};

struct mls__gql_dirdef {
        const char *name;
        const char *description;
        unsigned locations;
        const struct mls__gql_argdef *args;
        bool repeatable;
};

struct mls__gql_schemadef {
        const char *description;
        const struct mls__gql_typedef *const *type_tables; /* NULL-ended */
        const struct mls__gql_dirdef *directives; /* ends with NULL name */
        const char *query;
        const char *mutation;
        const char *subscription;
};

/* The built-in scalars, introspection types and specified directives, to
 * include in a schemadef. */
extern const struct mls__gql_typedef mls__gql_builtin_types[];
extern const struct mls__gql_dirdef mls__gql_builtin_directives[];

/* Builds a schema from def. Returns NULL with errstr filled on an
 * inconsistent table or when memory runs out. */
mls_gql_schema_t *mls__gql_schema_build(const struct mls__gql_schemadef *def,
                                        char *errstr, size_t errstr_size);

const struct mls__gql_type *mls__gql_schema_type(const struct mls_gql_schema *s,
                                                 const char *name);
const struct mls__gql_field *mls__gql_type_field(const struct mls__gql_type *t,
                                                 const char *name);
/* The field name of type t, including the meta fields __typename (any
 * composite type) and __schema, __type (the query type); NULL if none. */
const struct mls__gql_field *
mls__gql_schema_field(const struct mls_gql_schema *s,
                      const struct mls__gql_type *t, const char *name);
const struct mls__gql_directive_def *
mls__gql_schema_directive(const struct mls_gql_schema *s, const char *name);
const struct mls__gql_type *mls__gql_named(const struct mls__gql_type *t);
/* Resolves an AST type against the schema; NULL when a name is unknown.
 * Wrappers are allocated in arena. */
struct mls__gql_type *mls__gql_schema_typeref(const struct mls_gql_schema *s,
                                              struct mls__gql_arena *arena,
                                              const struct mls__gql_typeref *t);
void mls__gql_print_type(struct mls_buf *b, const struct mls__gql_type *t);
bool mls__gql_type_equal(const struct mls__gql_type *a,
                         const struct mls__gql_type *b);
bool mls__gql_is_input_type(const struct mls__gql_type *t);
bool mls__gql_is_leaf(const struct mls__gql_type *t); /* named type */
bool mls__gql_is_composite(const struct mls__gql_type *t);

/* Builds schema->intro and each named type's intro (introspection.c).
 * Returns 0 or -1 when memory runs out. */
int mls__gql_intro_build(struct mls_gql_schema *s);
/* Breaks the cycles between the introspection values and frees them. */
void mls__gql_intro_free(struct mls_gql_schema *s);

/* --- validation ------------------------------------------------------------
 */

/* Validates doc against s. Returns NULL when it is valid, else a new array
 * of GraphQL errors (at most limits->max_errors plus one "too many"). */
json_t *mls__gql_validate(const struct mls_gql_schema *s,
                          const struct mls__gql_document *doc,
                          const struct mls_gql_limits *limits);

/* --- errors and messages ---------------------------------------------------
 */

/* A new {"message", "locations"?, "path"?} object. locs may be NULL; path
 * is stolen (may be NULL). Returns NULL when memory runs out. */
json_t *mls__gql_error(const char *message, const struct mls__gql_loc *locs,
                       size_t nlocs, json_t *path);
/* Appends error to the array *errors, creating it when NULL. Steals
 * error. */
void mls__gql_errors_push(json_t **errors, json_t *error);
/* Appends graphql-js's " Did you mean \"a\", \"b\", or \"c\"?" for the
 * options close to input, or nothing. sub, when not NULL, goes before the
 * names (" Did you mean the enum value \"RED\"?"). */
void mls__gql_did_you_mean(struct mls_buf *b, const char *sub,
                           const char *input, const char *const *options,
                           size_t noptions);
/* The same for an enum type's values. */
void mls__gql_did_you_mean_enum(struct mls_buf *b, const char *input,
                                const struct mls__gql_type *t);
/* Appends graphql-js's inspect() of a JSON value. */
void mls__gql_inspect(struct mls_buf *b, const json_t *v);
/* Checks an RFC 3339 date-time ("2026-11-26T23:59:59.123Z"). */
bool mls__gql_is_datetime(const char *s, size_t len);

/* --- coercion (coerce.c) ---------------------------------------------------
 */

/* A literal's JSON value for type t (already validated), with variables
 * from vars. Sets *absent and returns NULL when the literal is a variable
 * that vars lacks. Returns NULL with *absent false when the literal is not
 * valid for t. New reference. */
json_t *mls__gql_value_from_ast(const struct mls__gql_value *v,
                                const struct mls__gql_type *t,
                                const json_t *vars, bool *absent);
/* Coerces a JSON input value to t (variables). Returns a new reference, or
 * NULL with a message in b (graphql-js's wording) and the path of the bad
 * part in path_b (".a[0]"); *bad is the offending part (borrowed). */
json_t *mls__gql_coerce_input(const json_t *value,
                              const struct mls__gql_type *t, struct mls_buf *b,
                              struct mls_buf *path_b, const json_t **bad);
/* Checks a non-variable, non-null literal against the leaf (scalar or
 * enum) type t. Returns 0 and, when out is not NULL, the value in *out
 * (new reference); or -1 with graphql-js's message appended to msg.
 * Variables nested in JSON literals come from vars. */
int mls__gql_leaf_literal(const struct mls__gql_type *t,
                          const struct mls__gql_value *v, const json_t *vars,
                          json_t **out, struct mls_buf *msg);
/* Coerces the arguments args of a field or directive with definitions
 * defs[0..n) into a new object. Returns it, or NULL with the message in b
 * and the offending node's location in *loc. */
json_t *mls__gql_coerce_args(const struct mls__gql_input_value *defs,
                             unsigned n, const struct mls__gql_arg *args,
                             const json_t *vars, struct mls_buf *b,
                             struct mls__gql_loc *loc);
/* Coerces the operation's variables. Returns a new object, or NULL with
 * *errors appended. */
json_t *mls__gql_coerce_variables(const struct mls_gql_schema *s,
                                  const struct mls__gql_definition *op,
                                  const json_t *inputs, json_t **errors);

/* --- documents -------------------------------------------------------------
 */

struct mls_gql_doc {
        unsigned refs;
        struct mls__gql_arena arena;
        const struct mls_gql_schema *schema;
        struct mls__gql_document *ast;
        struct mls_gql_limits limits;
        const struct mls__gql_definition **frags; /* by fragment index */
        struct mls__gql_map fragmap;              /* name -> index */
        size_t bytes; /* memory held, for the cache's accounting */
};

/* Fills the zero fields of out from in (or all of it when in is NULL), with
 * the defaults of mls_gql_limits_default() (limits.c). */
void mls__gql_limits_fill(struct mls_gql_limits *out,
                          const struct mls_gql_limits *in);
/* Finds the operation named name (NULL/"" for the only one). Returns it, or
 * NULL with the GraphQL message in err. */
const struct mls__gql_definition *
mls__gql_doc_find_op(const struct mls_gql_doc *doc, const char *name, char *err,
                     size_t err_size);

#endif
