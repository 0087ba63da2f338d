/*
 * The schema model: a builder from static tables, the mlstream schema of
 * DESIGN.md section 5 (the contract: add fields freely, never remove or
 * rename), the built-in scalars, introspection types and directives, and
 * an SDL printer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

#define DL(x) (1u << MLS__GQL_DL_##x)
/* table terminators: a NULL name */
#define END_ARG                              \
        {                                    \
                NULL, NULL, NULL, NULL, NULL \
        }
#define END_FIELD                               \
        {                                       \
                NULL, NULL, NULL, NULL, NULL, 0 \
        }
#define END_ENUM                 \
        {                        \
                NULL, NULL, NULL \
        }
#define END_TYPE                                         \
        {                                                \
                0, NULL, NULL, NULL, 0, NULL, NULL, NULL \
        }
#define END_DIR                            \
        {                                  \
                NULL, NULL, 0, NULL, false \
        }

/* --- the mlstream schema (contract) --------------------------------------- */

static const struct mls__gql_argdef model_id_arg[] = {
        {"modelId", "String!", "The model's id, as in the input messages.",
         NULL, NULL},
        END_ARG,
};

static const struct mls__gql_argdef stream_args[] = {
        {"modelId", "String!", "The model's id, as in the input messages.",
         NULL, NULL},
        {"after", "ID",
         "Resume after this prediction (the inferenceId of the last one "
         "received): first what the gateway still holds after it, then "
         "live. When the gateway cannot replay everything after it, the "
         "first prediction sent carries a gap.",
         NULL, NULL},
        END_ARG,
};

static const struct mls__gql_fielddef query_fields[] = {
        {"mlStreamingStatus", "MLStreamingStatus!",
         "Live state of one model's prediction stream as this gateway sees "
         "it.",
         model_id_arg, NULL, MLS__GQL_R_ROOT},
        {"mlStreamingModels", "[String!]!",
         "Ids of the models this gateway has seen predictions or heartbeats "
         "for, sorted: what a dashboard or client can subscribe to.",
         NULL, NULL, MLS__GQL_R_ROOT},
        {"mlStreamingOverview", "[MLStreamingStatus!]!",
         "The status of every model in mlStreamingModels, sorted by "
         "modelId (at most 1000 models, the first in that order).",
         NULL, NULL, MLS__GQL_R_ROOT},
        {"mlModelComparison", "[MLModelComparison!]!",
         "How a model's shadow version compares with its serving version, "
         "summed over the live engines that run both: one element per "
         "(servingVersion, shadowVersion) pair, the pair most recently "
         "compared first (at most 16). Empty when no engine shadows the "
         "model.",
         model_id_arg, NULL, MLS__GQL_R_ROOT},
        END_FIELD,
};

static const struct mls__gql_fielddef subscription_fields[] = {
        {"mlInferenceStream", "MLStreamingPrediction!",
         "Every prediction for the model, as soon as it is published.",
         stream_args, NULL, MLS__GQL_R_ROOT},
        END_FIELD,
};

static const struct mls__gql_fielddef prediction_fields[] = {
        {"inferenceId", "ID!", "Unique id the engine gave this inference.",
         NULL, NULL, 0},
        {"modelId", "String!", "The model that produced the prediction.", NULL,
         NULL, 0},
        {"inputId", "String", "The input's input_id, echoed; null if absent.",
         NULL, NULL, 0},
        {"predictions", "JSON!", "The model's output, one row per input row.",
         NULL, NULL, 0},
        {"latencyMs", "Float!",
         "Engine time from receiving the message to publishing, in ms.", NULL,
         NULL, 0},
        {"receivedAt", "DateTime!", "When the engine received the input.", NULL,
         NULL, 0},
        {"publishedAt", "DateTime", "When the engine published the result.",
         NULL, NULL, 0},
        {"metadata", "JSON", "The input's metadata, passed through.", NULL,
         NULL, 0},
        {"modelVersion", "String",
         "The version of the model that produced the prediction (the "
         "serving or the canary version); null for engines that do not "
         "say.",
         NULL, NULL, 0},
        {"gap", "MLStreamGap",
         "Set when predictions before this one may be missing: on the "
         "first prediction of a resumed subscription (after:), and on the "
         "first prediction of a model after the gateway lost its Redis "
         "subscription to it and made it again; null otherwise.",
         NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef gap_fields[] = {
        {"reason", "String!",
         "CURSOR_UNKNOWN: the gateway does not hold the `after` prediction "
         "(older than its history, or never seen by this gateway), so what "
         "came between it and `since` is unknown. EVICTED: predictions "
         "after it left the history before they could be sent. "
         "UPSTREAM_LOST: the gateway's Redis subscription to the model "
         "was lost (Redis restarted, or a Redis Cluster failover or slot "
         "move) and made again at `since`; what Redis published meanwhile "
         "did not reach the gateway.",
         NULL, NULL, 0},
        {"missed", "Int",
         "How many predictions of the model are missing, when known.", NULL,
         NULL, 0},
        {"since", "DateTime",
         "Nothing is missing after it: when the gateway received the "
         "oldest prediction of the model it still held at the resume, or "
         "(UPSTREAM_LOST) when it subscribed again.",
         NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef status_fields[] = {
        {"modelId", "String!", "The model this status is about.", NULL, NULL,
         0},
        {"connected", "Boolean!",
         "Whether this gateway's Redis subscription is live.", NULL, NULL, 0},
        {"lastHeartbeatAt", "DateTime",
         "Last prediction or heartbeat seen for the model.", NULL, NULL, 0},
        {"averageLatencyMs", "Float",
         "Mean latencyMs over the sliding window; null if it is empty.", NULL,
         NULL, 0},
        {"p95LatencyMs", "Float",
         "95th percentile of latencyMs over the window; null if empty.", NULL,
         NULL, 0},
        {"windowSize", "Int!", "Predictions currently in the window.", NULL,
         NULL, 0},
        {"framework", "String",
         "The framework the engines load the model with (torch, tensorflow, "
         "identity...); null when no live engine lists the model.",
         NULL, NULL, 0},
        {"servingVersion", "String",
         "The version serving most inputs (for a model without versions, a "
         "16-hex content hash). When live engines disagree (mid-rollout), "
         "the one most of them report; null when none does.",
         NULL, NULL, 0},
        {"canaryVersion", "String",
         "The canary version taking a sticky share of inputs, as most live "
         "engines report it; null when none.",
         NULL, NULL, 0},
        {"canaryShare", "Float",
         "The share of inputs (0 to 1) the canary takes, averaged over the "
         "engines that run that canary; null without a canary.",
         NULL, NULL, 0},
        {"shadowVersion", "String",
         "The shadow version scoring the same inputs (its predictions are "
         "not streamed), as most live engines report it; null when none.",
         NULL, NULL, 0},
        {"engines", "Int!",
         "Live engines whose heartbeats list the model as loaded.", NULL, NULL,
         0},
        {"predictionsPerSecond", "Float",
         "Predictions per second, summed over the live engines, from the "
         "change of their counters between their last two heartbeats; null "
         "until known.",
         NULL, NULL, 0},
        {"errorsPerSecond", "Float",
         "Errors per second, as predictionsPerSecond; null until known.", NULL,
         NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef comparison_fields[] = {
        {"modelId", "String!", "The model compared.", NULL, NULL, 0},
        {"servingVersion", "String!", "The version whose predictions go out.",
         NULL, NULL, 0},
        {"shadowVersion", "String!",
         "The version scoring the same inputs in the shadow.", NULL, NULL, 0},
        {"rows", "Float!",
         "Rows scored by both, summed over live engines since they started.",
         NULL, NULL, 0},
        {"agreementRate", "Float",
         "Share of the rows on which both agreed; null when rows is 0.", NULL,
         NULL, 0},
        {"meanAbsDiff", "Float",
         "Mean over rows of the largest absolute difference between the two "
         "versions' outputs; null when rows is 0.",
         NULL, NULL, 0},
        {"p95AbsDiff", "Float",
         "95th percentile of that difference, interpolated in the engines' "
         "histogram buckets (the last bound when it lies above it); null "
         "without a histogram.",
         NULL, NULL, 0},
        {"servingLatencyMs", "Float",
         "Mean time of one serving-version call, in ms; null when unknown.",
         NULL, NULL, 0},
        {"shadowLatencyMs", "Float",
         "Mean time of one shadow-version call, in ms; null when unknown.",
         NULL, NULL, 0},
        {"engines", "Int!", "Live engines comparing this pair.", NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_typedef mlstream_types[] = {
        {MLS__GQL_SCALAR, "JSON", "Any JSON value, passed through unchanged.",
         NULL, MLS__GQL_SC_JSON, NULL, NULL, NULL},
        {MLS__GQL_SCALAR, "DateTime",
         "An RFC 3339 date-time in UTC, e.g. 2026-11-26T23:59:59.123Z.",
         "https://scalars.graphql.org/andimarek/date-time",
         MLS__GQL_SC_DATETIME, NULL, NULL, NULL},
        {MLS__GQL_OBJECT, "Query", "Point-in-time reads.", NULL, 0,
         query_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "Subscription", "Live streams.", NULL, 0,
         subscription_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "MLStreamingPrediction",
         "One prediction published by an engine.", NULL, 0, prediction_fields,
         NULL, NULL},
        {MLS__GQL_OBJECT, "MLStreamGap",
         "Predictions a resumed subscription may have missed.", NULL, 0,
         gap_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "MLStreamingStatus",
         "A model's stream health over the gateway's sliding window.", NULL, 0,
         status_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "MLModelComparison",
         "Serving and shadow versions of one model compared on the same "
         "inputs.",
         NULL, 0, comparison_fields, NULL, NULL},
        END_TYPE,
};

/* --- built-ins
 * ---------------------------------------------------------------- */

static const struct mls__gql_argdef include_deprecated_arg[] = {
        {"includeDeprecated", "Boolean", NULL, "false", NULL},
        END_ARG,
};

static const struct mls__gql_fielddef schema_fields[] = {
        {"description", "String", NULL, NULL, NULL, 0},
        {"types", "[__Type!]!", "Every type the schema knows.", NULL, NULL, 0},
        {"queryType", "__Type!", "The root type of query operations.", NULL,
         NULL, 0},
        {"mutationType", "__Type",
         "The root type of mutations, if they are supported.", NULL, NULL, 0},
        {"subscriptionType", "__Type",
         "The root type of subscriptions, if they are supported.", NULL, NULL,
         0},
        {"directives", "[__Directive!]!", "The directives the schema knows.",
         include_deprecated_arg, NULL, MLS__GQL_R_DEPRECATED},
        END_FIELD,
};

static const struct mls__gql_fielddef type_fields[] = {
        {"kind", "__TypeKind!", NULL, NULL, NULL, 0},
        {"name", "String", NULL, NULL, NULL, 0},
        {"description", "String", NULL, NULL, NULL, 0},
        {"specifiedByURL", "String", NULL, NULL, NULL, 0},
        {"fields", "[__Field!]", NULL, include_deprecated_arg, NULL,
         MLS__GQL_R_DEPRECATED},
        {"interfaces", "[__Type!]", NULL, NULL, NULL, 0},
        {"possibleTypes", "[__Type!]", NULL, NULL, NULL, 0},
        {"enumValues", "[__EnumValue!]", NULL, include_deprecated_arg, NULL,
         MLS__GQL_R_DEPRECATED},
        {"inputFields", "[__InputValue!]", NULL, include_deprecated_arg, NULL,
         MLS__GQL_R_DEPRECATED},
        {"ofType", "__Type", NULL, NULL, NULL, 0},
        {"isOneOf", "Boolean", NULL, NULL, NULL, 0},
        {"specifiedByUrl", "String", "Older spelling of specifiedByURL.", NULL,
         "Use `specifiedByURL`.", 0},
        END_FIELD,
};

static const struct mls__gql_fielddef field_fields[] = {
        {"name", "String!", NULL, NULL, NULL, 0},
        {"description", "String", NULL, NULL, NULL, 0},
        {"args", "[__InputValue!]!", NULL, include_deprecated_arg, NULL,
         MLS__GQL_R_DEPRECATED},
        {"type", "__Type!", NULL, NULL, NULL, 0},
        {"isDeprecated", "Boolean!", NULL, NULL, NULL, 0},
        {"deprecationReason", "String", NULL, NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef input_value_fields[] = {
        {"name", "String!", NULL, NULL, NULL, 0},
        {"description", "String", NULL, NULL, NULL, 0},
        {"type", "__Type!", NULL, NULL, NULL, 0},
        {"defaultValue", "String",
         "The default value as GraphQL text, or null.", NULL, NULL, 0},
        {"isDeprecated", "Boolean!", NULL, NULL, NULL, 0},
        {"deprecationReason", "String", NULL, NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef enum_value_fields[] = {
        {"name", "String!", NULL, NULL, NULL, 0},
        {"description", "String", NULL, NULL, NULL, 0},
        {"isDeprecated", "Boolean!", NULL, NULL, NULL, 0},
        {"deprecationReason", "String", NULL, NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_fielddef directive_fields[] = {
        {"name", "String!", NULL, NULL, NULL, 0},
        {"description", "String", NULL, NULL, NULL, 0},
        {"isRepeatable", "Boolean!", NULL, NULL, NULL, 0},
        {"locations", "[__DirectiveLocation!]!", NULL, NULL, NULL, 0},
        {"args", "[__InputValue!]!", NULL, include_deprecated_arg, NULL,
         MLS__GQL_R_DEPRECATED},
        {"isDeprecated", "Boolean!", NULL, NULL, NULL, 0},
        {"deprecationReason", "String", NULL, NULL, NULL, 0},
        END_FIELD,
};

static const struct mls__gql_enumdef type_kind_values[] = {
        {"SCALAR", "A leaf value: Int, String, a custom scalar.", NULL},
        {"OBJECT", "A set of named fields.", NULL},
        {"INTERFACE", "Fields that several objects share.", NULL},
        {"UNION", "One of several object types.", NULL},
        {"ENUM", "One of a fixed set of names.", NULL},
        {"INPUT_OBJECT", "A set of named input fields.", NULL},
        {"LIST", "A list; ofType is the item type.", NULL},
        {"NON_NULL", "Never null; ofType is the wrapped type.", NULL},
        END_ENUM,
};

static const struct mls__gql_enumdef dir_loc_values[] = {
        {"QUERY", NULL, NULL},
        {"MUTATION", NULL, NULL},
        {"SUBSCRIPTION", NULL, NULL},
        {"FIELD", NULL, NULL},
        {"FRAGMENT_DEFINITION", NULL, NULL},
        {"FRAGMENT_SPREAD", NULL, NULL},
        {"INLINE_FRAGMENT", NULL, NULL},
        {"VARIABLE_DEFINITION", NULL, NULL},
        {"SCHEMA", NULL, NULL},
        {"SCALAR", NULL, NULL},
        {"OBJECT", NULL, NULL},
        {"FIELD_DEFINITION", NULL, NULL},
        {"ARGUMENT_DEFINITION", NULL, NULL},
        {"INTERFACE", NULL, NULL},
        {"UNION", NULL, NULL},
        {"ENUM", NULL, NULL},
        {"ENUM_VALUE", NULL, NULL},
        {"INPUT_OBJECT", NULL, NULL},
        {"INPUT_FIELD_DEFINITION", NULL, NULL},
        {"DIRECTIVE_DEFINITION", NULL, NULL},
        END_ENUM,
};

const struct mls__gql_typedef mls__gql_builtin_types[] = {
        {MLS__GQL_SCALAR, "Int", "A signed 32-bit integer.", NULL,
         MLS__GQL_SC_INT, NULL, NULL, NULL},
        {MLS__GQL_SCALAR, "Float", "A double-precision (IEEE 754) number.",
         NULL, MLS__GQL_SC_FLOAT, NULL, NULL, NULL},
        {MLS__GQL_SCALAR, "String", "UTF-8 text.", NULL, MLS__GQL_SC_STRING,
         NULL, NULL, NULL},
        {MLS__GQL_SCALAR, "Boolean", "true or false.", NULL,
         MLS__GQL_SC_BOOLEAN, NULL, NULL, NULL},
        {MLS__GQL_SCALAR, "ID",
         "An opaque identifier, sent as a string; input accepts strings and "
         "integers.",
         NULL, MLS__GQL_SC_ID, NULL, NULL, NULL},
        {MLS__GQL_OBJECT, "__Schema",
         "What a GraphQL server supports: its types, root types and "
         "directives.",
         NULL, 0, schema_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "__Type",
         "Any type of the schema, or a list or non-null wrapper of one.", NULL,
         0, type_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "__Field", "A field of an object or interface.", NULL,
         0, field_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "__InputValue",
         "An argument or an input object's field.", NULL, 0, input_value_fields,
         NULL, NULL},
        {MLS__GQL_OBJECT, "__EnumValue", "One value of an enum.", NULL, 0,
         enum_value_fields, NULL, NULL},
        {MLS__GQL_OBJECT, "__Directive",
         "A directive: where it may appear and what arguments it takes.", NULL,
         0, directive_fields, NULL, NULL},
        {MLS__GQL_ENUM, "__TypeKind", "What kind of type a __Type is.", NULL, 0,
         NULL, NULL, type_kind_values},
        {MLS__GQL_ENUM, "__DirectiveLocation",
         "Where in a document or schema a directive may appear.", NULL, 0, NULL,
         NULL, dir_loc_values},
        END_TYPE,
};

static const struct mls__gql_argdef if_arg_include[] = {
        {"if", "Boolean!", "Include when true.", NULL, NULL},
        END_ARG,
};

static const struct mls__gql_argdef if_arg_skip[] = {
        {"if", "Boolean!", "Skip when true.", NULL, NULL},
        END_ARG,
};

static const struct mls__gql_argdef reason_arg[] = {
        {"reason", "String", "Why, and what to use instead (Markdown).",
         "\"No longer supported\"", NULL},
        END_ARG,
};

static const struct mls__gql_argdef url_arg[] = {
        {"url", "String!", "Where the scalar's behaviour is specified.", NULL,
         NULL},
        END_ARG,
};

const struct mls__gql_dirdef mls__gql_builtin_directives[] = {
        {"include", "Includes this field or fragment only when `if` is true.",
         DL(FIELD) | DL(FRAGMENT_SPREAD) | DL(INLINE_FRAGMENT), if_arg_include,
         false},
        {"skip", "Leaves this field or fragment out when `if` is true.",
         DL(FIELD) | DL(FRAGMENT_SPREAD) | DL(INLINE_FRAGMENT), if_arg_skip,
         false},
        {"deprecated", "Marks an element of the schema as no longer to use.",
         DL(FIELD_DEFINITION) | DL(ARGUMENT_DEFINITION) |
                 DL(INPUT_FIELD_DEFINITION) | DL(ENUM_VALUE) |
                 DL(DIRECTIVE_DEFINITION),
         reason_arg, false},
        {"specifiedBy", "Links a custom scalar to its specification.",
         DL(SCALAR), url_arg, false},
        {"oneOf",
         "Marks an input object of which exactly one field must be given, "
         "and not null.",
         DL(INPUT_OBJECT), NULL, false},
        END_DIR,
};

static const struct mls__gql_typedef *const mlstream_tables[] = {
        mlstream_types,
        mls__gql_builtin_types,
        NULL,
};

static const struct mls__gql_schemadef mlstream_schema = {
        .description = NULL,
        .type_tables = mlstream_tables,
        .directives = mls__gql_builtin_directives,
        .query = "Query",
        .mutation = NULL,
        .subscription = "Subscription",
};

/* --- builder
 * ------------------------------------------------------------------ */

struct build {
        struct mls_gql_schema *s;
        char *errstr;
        size_t errstr_size;
        bool failed;
};

__attribute__((format(printf, 2, 3))) static void berr(struct build *b,
                                                       const char *fmt, ...)
{
        va_list ap;

        if (b->failed)
                return;
        b->failed = true;
        va_start(ap, fmt);
        vsnprintf(b->errstr, b->errstr_size, fmt, ap);
        va_end(ap);
}

static void *balloc(struct build *b, size_t n)
{
        void *p = mls__gql_arena_alloc(&b->s->arena, n);

        if (!p)
                berr(b, "out of memory building the GraphQL schema");
        return p;
}

const struct mls__gql_type *mls__gql_schema_type(const struct mls_gql_schema *s,
                                                 const char *name)
{
        for (unsigned i = 0; i < s->ntypes; i++)
                if (strcmp(s->types[i]->name, name) == 0)
                        return s->types[i];
        return NULL;
}

/* Parses a type string ("[String!]!") at *pp. */
static struct mls__gql_type *type_from_string(struct build *b, const char **pp,
                                              const char *whole)
{
        const char *p = *pp;
        struct mls__gql_type *t, *w;

        if (*p == '[') {
                p++;
                w = balloc(b, sizeof(*w));
                if (!w || !(w->of = type_from_string(b, &p, whole)))
                        return NULL;
                if (*p != ']') {
                        berr(b, "bad type \"%s\" in schema table", whole);
                        return NULL;
                }
                p++;
                w->kind = MLS__GQL_LIST;
                t = w;
        } else {
                char name[128];
                size_t n = 0;
                while (p[n] && p[n] != '!' && p[n] != ']' &&
                       n + 1 < sizeof(name)) {
                        name[n] = p[n];
                        n++;
                }
                name[n] = '\0';
                p += n;
                t = (struct mls__gql_type *)mls__gql_schema_type(b->s, name);
                if (!t) {
                        berr(b, "unknown type \"%s\" in schema table", name);
                        return NULL;
                }
        }
        if (*p == '!') {
                p++;
                w = balloc(b, sizeof(*w));
                if (!w)
                        return NULL;
                w->kind = MLS__GQL_NON_NULL;
                w->of = t;
                t = w;
        }
        *pp = p;
        return t;
}

static struct mls__gql_type *resolve_type(struct build *b, const char *str)
{
        const char *p = str;
        struct mls__gql_type *t = type_from_string(b, &p, str);

        if (t && *p) {
                berr(b, "bad type \"%s\" in schema table", str);
                return NULL;
        }
        return t;
}

static unsigned count_args(const struct mls__gql_argdef *a)
{
        unsigned n = 0;

        while (a && a[n].name)
                n++;
        return n;
}

static struct mls__gql_input_value *
build_args(struct build *b, const struct mls__gql_argdef *defs, unsigned n)
{
        struct mls__gql_input_value *v;

        if (n == 0)
                return NULL;
        v = balloc(b, n * sizeof(*v));
        if (!v)
                return NULL;
        for (unsigned i = 0; i < n; i++) {
                v[i].name = defs[i].name;
                v[i].description = defs[i].description;
                v[i].deprecation = defs[i].deprecation;
                v[i].default_literal = defs[i].default_literal;
                if (!(v[i].type = resolve_type(b, defs[i].type)))
                        return NULL;
                if (!mls__gql_is_input_type(v[i].type)) {
                        berr(b, "argument %s has non-input type %s",
                             defs[i].name, defs[i].type);
                        return NULL;
                }
                if (defs[i].default_literal) {
                        json_error_t jerr;
                        v[i].default_json = json_loads(defs[i].default_literal,
                                                       JSON_DECODE_ANY, &jerr);
                        if (!v[i].default_json) {
                                berr(b, "bad default %s for argument %s",
                                     defs[i].default_literal, defs[i].name);
                                return NULL;
                        }
                }
        }
        return v;
}

static void free_defaults(struct mls__gql_input_value *v, unsigned n)
{
        for (unsigned i = 0; v && i < n; i++)
                json_decref(v[i].default_json);
}

static void build_type_body(struct build *b, struct mls__gql_type *t,
                            const struct mls__gql_typedef *d)
{
        unsigned n = 0;

        if (d->kind == MLS__GQL_OBJECT) {
                while (d->fields && d->fields[n].name)
                        n++;
                t->fields = balloc(b, (n ? n : 1) * sizeof(*t->fields));
                if (!t->fields)
                        return;
                t->nfields = n;
                for (unsigned i = 0; i < n && !b->failed; i++) {
                        const struct mls__gql_fielddef *fd = &d->fields[i];
                        struct mls__gql_field *f = &t->fields[i];
                        f->name = fd->name;
                        f->description = fd->description;
                        f->deprecation = fd->deprecation;
                        f->resolve = fd->resolve;
                        f->parent = t;
                        f->type = resolve_type(b, fd->type);
                        f->nargs = count_args(fd->args);
                        f->args = build_args(b, fd->args, f->nargs);
                }
        } else if (d->kind == MLS__GQL_INPUT_OBJECT) {
                t->ninput_fields = count_args(d->input_fields);
                t->input_fields =
                        build_args(b, d->input_fields, t->ninput_fields);
        } else if (d->kind == MLS__GQL_ENUM) {
                while (d->values && d->values[n].name)
                        n++;
                t->enum_values =
                        balloc(b, (n ? n : 1) * sizeof(*t->enum_values));
                if (!t->enum_values)
                        return;
                t->nenum_values = n;
                for (unsigned i = 0; i < n; i++) {
                        t->enum_values[i].name = d->values[i].name;
                        t->enum_values[i].description =
                                d->values[i].description;
                        t->enum_values[i].deprecation =
                                d->values[i].deprecation;
                }
        }
}

static void set_meta(struct build *b)
{
        struct mls_gql_schema *s = b->s;
        static const struct mls__gql_argdef name_arg[] = {
                {"name", "String!", NULL, NULL, NULL},
                END_ARG,
        };

        s->meta_schema.name = "__schema";
        s->meta_schema.description = "Access the current type schema of "
                                     "this server.";
        s->meta_schema.type = resolve_type(b, "__Schema!");
        s->meta_schema.resolve = MLS__GQL_R_SCHEMA;
        s->meta_schema.parent = s->query;
        s->meta_type.name = "__type";
        s->meta_type.description = "Request the type information of a "
                                   "single type.";
        s->meta_type.type = resolve_type(b, "__Type");
        s->meta_type.nargs = 1;
        s->meta_type.args = build_args(b, name_arg, 1);
        s->meta_type.resolve = MLS__GQL_R_TYPE;
        s->meta_type.parent = s->query;
        s->meta_typename.name = "__typename";
        s->meta_typename.description = "The name of the current Object type "
                                       "at runtime.";
        s->meta_typename.type = resolve_type(b, "String!");
}

static void set_size(struct mls_gql_schema *s, const char *type,
                     const char *field, unsigned n)
{
        struct mls__gql_field *f = (struct mls__gql_field *)mls__gql_type_field(
                mls__gql_schema_type(s, type), field);

        if (f)
                f->list_size = n ? n : 1;
}

/* The introspection lists' sizes are known once the schema is: the cost
 * limit counts them exactly rather than with the default. */
static void intro_list_sizes(struct mls_gql_schema *s)
{
        unsigned fields = 0, args = 0, dargs = 0, values = 0, inputs = 0;

        for (unsigned i = 0; i < s->ntypes; i++) {
                const struct mls__gql_type *t = s->types[i];
                if (t->nfields > fields)
                        fields = t->nfields;
                if (t->nenum_values > values)
                        values = t->nenum_values;
                if (t->ninput_fields > inputs)
                        inputs = t->ninput_fields;
                for (unsigned j = 0; t->fields && j < t->nfields; j++)
                        if (t->fields[j].nargs > args)
                                args = t->fields[j].nargs;
        }
        for (unsigned i = 0; i < s->ndirectives; i++)
                if (s->directives[i].nargs > dargs)
                        dargs = s->directives[i].nargs;
        set_size(s, "__Schema", "types", s->ntypes);
        set_size(s, "__Schema", "directives", s->ndirectives);
        set_size(s, "__Type", "fields", fields);
        set_size(s, "__Type", "enumValues", values);
        set_size(s, "__Type", "inputFields", inputs);
        /* no interfaces or unions in this schema model */
        set_size(s, "__Type", "interfaces", 1);
        set_size(s, "__Type", "possibleTypes", 1);
        set_size(s, "__Field", "args", args);
        set_size(s, "__Directive", "args", dargs);
        set_size(s, "__Directive", "locations", MLS__GQL_DL_COUNT);
}

mls_gql_schema_t *mls__gql_schema_build(const struct mls__gql_schemadef *def,
                                        char *errstr, size_t errstr_size)
{
        struct build b = {NULL, errstr, errstr_size, false};
        unsigned ntypes = 0, k = 0, ndirs = 0;

        b.s = calloc(1, sizeof(*b.s));
        if (!b.s) {
                snprintf(errstr, errstr_size,
                         "out of memory building the GraphQL schema");
                return NULL;
        }
        mls__gql_arena_init(&b.s->arena);
        b.s->description = def->description;
        for (const struct mls__gql_typedef *const *tt = def->type_tables; *tt;
             tt++)
                for (const struct mls__gql_typedef *d = *tt; d->name; d++)
                        ntypes++;
        b.s->types = balloc(&b, (ntypes ? ntypes : 1) * sizeof(*b.s->types));
        if (!b.s->types)
                goto fail;
        /* Names first, so that bodies can refer to any type. */
        for (const struct mls__gql_typedef *const *tt = def->type_tables;
             *tt && !b.failed; tt++) {
                for (const struct mls__gql_typedef *d = *tt; d->name; d++) {
                        struct mls__gql_type *t;
                        if (mls__gql_schema_type(b.s, d->name)) {
                                berr(&b, "type %s defined twice", d->name);
                                break;
                        }
                        if (!(t = balloc(&b, sizeof(*t))))
                                break;
                        t->kind = d->kind;
                        t->name = d->name;
                        t->description = d->description;
                        t->specified_by = d->specified_by;
                        t->scalar = d->scalar;
                        b.s->types[k++] = t;
                        b.s->ntypes = k;
                }
        }
        k = 0;
        for (const struct mls__gql_typedef *const *tt = def->type_tables;
             *tt && !b.failed; tt++)
                for (const struct mls__gql_typedef *d = *tt;
                     d->name && !b.failed; d++)
                        build_type_body(&b, b.s->types[k++], d);
        while (def->directives && def->directives[ndirs].name)
                ndirs++;
        b.s->directives =
                balloc(&b, (ndirs ? ndirs : 1) * sizeof(*b.s->directives));
        for (unsigned i = 0; i < ndirs && !b.failed; i++) {
                const struct mls__gql_dirdef *dd = &def->directives[i];
                struct mls__gql_directive_def *d = &b.s->directives[i];
                d->name = dd->name;
                d->description = dd->description;
                d->locations = dd->locations;
                d->repeatable = dd->repeatable;
                d->nargs = count_args(dd->args);
                d->args = build_args(&b, dd->args, d->nargs);
                b.s->ndirectives = i + 1;
        }
        if (b.failed)
                goto fail;
        b.s->query = (struct mls__gql_type *)mls__gql_schema_type(
                b.s, def->query ? def->query : "");
        if (!b.s->query || b.s->query->kind != MLS__GQL_OBJECT) {
                berr(&b, "the query root type is missing");
                goto fail;
        }
        if (def->mutation &&
            !(b.s->mutation = (struct mls__gql_type *)mls__gql_schema_type(
                      b.s, def->mutation))) {
                berr(&b, "the mutation root type is missing");
                goto fail;
        }
        if (def->subscription &&
            !(b.s->subscription = (struct mls__gql_type *)mls__gql_schema_type(
                      b.s, def->subscription))) {
                berr(&b, "the subscription root type is missing");
                goto fail;
        }
        set_meta(&b);
        if (b.failed)
                goto fail;
        intro_list_sizes(b.s);
        if (mls__gql_intro_build(b.s) < 0) {
                berr(&b, "out of memory building the GraphQL schema");
                goto fail;
        }
        return b.s;
fail:
        mls_gql_schema_free(b.s);
        return NULL;
}

mls_gql_schema_t *mls_gql_schema_new(char *errstr, size_t errstr_size)
{
        return mls__gql_schema_build(&mlstream_schema, errstr, errstr_size);
}

void mls_gql_schema_free(mls_gql_schema_t *s)
{
        if (!s)
                return;
        mls__gql_intro_free(s);
        for (unsigned i = 0; i < s->ntypes; i++) {
                struct mls__gql_type *t = s->types[i];
                for (unsigned j = 0; t->fields && j < t->nfields; j++)
                        free_defaults(t->fields[j].args, t->fields[j].nargs);
                free_defaults(t->input_fields, t->ninput_fields);
        }
        for (unsigned i = 0; i < s->ndirectives; i++)
                free_defaults(s->directives[i].args, s->directives[i].nargs);
        free_defaults(s->meta_type.args, s->meta_type.nargs);
        mls__gql_arena_free(&s->arena);
        free(s);
}

int mls_gql_schema_set_resolver(mls_gql_schema_t *s, const char *type_name,
                                const char *field_name, mls_gql_resolve_fn fn,
                                void *opaque, char *errstr, size_t errstr_size)
{
        struct mls__gql_type *t =
                (struct mls__gql_type *)mls__gql_schema_type(s, type_name);

        if (!t || (t != s->query && t != s->mutation)) {
                snprintf(errstr, errstr_size,
                         "GraphQL type \"%s\" is not a query or mutation root "
                         "type",
                         type_name);
                return -1;
        }
        for (unsigned i = 0; i < t->nfields; i++) {
                if (strcmp(t->fields[i].name, field_name) == 0) {
                        t->fields[i].resolve = MLS__GQL_R_ROOT;
                        t->fields[i].fn = fn;
                        t->fields[i].opaque = opaque;
                        return 0;
                }
        }
        snprintf(errstr, errstr_size, "GraphQL type %s has no field \"%s\"",
                 type_name, field_name);
        return -1;
}

int mls_gql_schema_set_list_size(mls_gql_schema_t *s, const char *type_name,
                                 const char *field_name, unsigned n,
                                 char *errstr, size_t errstr_size)
{
        struct mls__gql_field *f = (struct mls__gql_field *)mls__gql_type_field(
                mls__gql_schema_type(s, type_name), field_name);
        const struct mls__gql_type *t = f ? f->type : NULL;

        if (t && t->kind == MLS__GQL_NON_NULL)
                t = t->of;
        if (!t || t->kind != MLS__GQL_LIST) {
                snprintf(errstr, errstr_size,
                         "GraphQL field %s.%s does not exist or is not a list",
                         type_name, field_name);
                return -1;
        }
        f->list_size = n ? n : 1;
        return 0;
}

/* --- lookups and type helpers
 * -------------------------------------------------- */

const struct mls__gql_field *mls__gql_type_field(const struct mls__gql_type *t,
                                                 const char *name)
{
        if (!t || t->kind != MLS__GQL_OBJECT)
                return NULL;
        for (unsigned i = 0; i < t->nfields; i++)
                if (strcmp(t->fields[i].name, name) == 0)
                        return &t->fields[i];
        return NULL;
}

const struct mls__gql_field *
mls__gql_schema_field(const struct mls_gql_schema *s,
                      const struct mls__gql_type *t, const char *name)
{
        if (!t || !mls__gql_is_composite(t))
                return NULL;
        if (name[0] == '_' && name[1] == '_') {
                if (strcmp(name, "__typename") == 0)
                        return &s->meta_typename;
                if (t == s->query && strcmp(name, "__schema") == 0)
                        return &s->meta_schema;
                if (t == s->query && strcmp(name, "__type") == 0)
                        return &s->meta_type;
        }
        return mls__gql_type_field(t, name);
}

const struct mls__gql_directive_def *
mls__gql_schema_directive(const struct mls_gql_schema *s, const char *name)
{
        for (unsigned i = 0; i < s->ndirectives; i++)
                if (strcmp(s->directives[i].name, name) == 0)
                        return &s->directives[i];
        return NULL;
}

const struct mls__gql_type *mls__gql_named(const struct mls__gql_type *t)
{
        while (t && (t->kind == MLS__GQL_LIST || t->kind == MLS__GQL_NON_NULL))
                t = t->of;
        return t;
}

struct mls__gql_type *mls__gql_schema_typeref(const struct mls_gql_schema *s,
                                              struct mls__gql_arena *arena,
                                              const struct mls__gql_typeref *r)
{
        struct mls__gql_type *w, *of;

        if (r->kind == MLS__GQL_T_NAMED)
                return (struct mls__gql_type *)mls__gql_schema_type(s, r->name);
        if (!(of = mls__gql_schema_typeref(s, arena, r->of)))
                return NULL;
        if (!(w = mls__gql_arena_alloc(arena, sizeof(*w))))
                return NULL;
        w->kind =
                r->kind == MLS__GQL_T_LIST ? MLS__GQL_LIST : MLS__GQL_NON_NULL;
        w->of = of;
        return w;
}

void mls__gql_print_type(struct mls_buf *b, const struct mls__gql_type *t)
{
        if (t->kind == MLS__GQL_LIST) {
                mls_buf_putc(b, '[');
                mls__gql_print_type(b, t->of);
                mls_buf_putc(b, ']');
        } else if (t->kind == MLS__GQL_NON_NULL) {
                mls__gql_print_type(b, t->of);
                mls_buf_putc(b, '!');
        } else {
                mls_buf_puts(b, t->name);
        }
}

bool mls__gql_type_equal(const struct mls__gql_type *a,
                         const struct mls__gql_type *b)
{
        while (a && b) {
                if (a->kind != b->kind)
                        return false;
                if (a->kind != MLS__GQL_LIST && a->kind != MLS__GQL_NON_NULL)
                        return a == b;
                a = a->of;
                b = b->of;
        }
        return a == b;
}

bool mls__gql_is_input_type(const struct mls__gql_type *t)
{
        t = mls__gql_named(t);
        return t && (t->kind == MLS__GQL_SCALAR || t->kind == MLS__GQL_ENUM ||
                     t->kind == MLS__GQL_INPUT_OBJECT);
}

bool mls__gql_is_leaf(const struct mls__gql_type *t)
{
        t = mls__gql_named(t);
        return t && (t->kind == MLS__GQL_SCALAR || t->kind == MLS__GQL_ENUM);
}

bool mls__gql_is_composite(const struct mls__gql_type *t)
{
        return t &&
               (t->kind == MLS__GQL_OBJECT || t->kind == MLS__GQL_INTERFACE ||
                t->kind == MLS__GQL_UNION);
}

/* --- SDL
 * -------------------------------------------------------------------------- */

static bool is_builtin(const struct mls__gql_type *t)
{
        static const char *const std[] = {"Int", "Float", "String", "Boolean",
                                          "ID"};

        if (t->name[0] == '_' && t->name[1] == '_')
                return true;
        for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++)
                if (strcmp(t->name, std[i]) == 0)
                        return true;
        return false;
}

static void sdl_description(struct mls_buf *b, const char *d,
                            const char *indent)
{
        if (!d)
                return;
        mls_buf_printf(b, "%s\"\"\"", indent);
        if (strchr(d, '\n'))
                mls_buf_printf(b, "\n%s", indent);
        for (const char *p = d; *p; p++) {
                if (p[0] == '"' && p[1] == '"' && p[2] == '"') {
                        mls_buf_puts(b, "\\\"\"\"");
                        p += 2;
                } else if (*p == '\n') {
                        mls_buf_printf(b, "\n%s", indent);
                } else {
                        mls_buf_putc(b, *p);
                }
        }
        if (strchr(d, '\n'))
                mls_buf_printf(b, "\n%s", indent);
        mls_buf_puts(b, "\"\"\"\n");
}

static void sdl_deprecated(struct mls_buf *b, const char *reason)
{
        if (!reason)
                return;
        if (strcmp(reason, "No longer supported") == 0) {
                mls_buf_puts(b, " @deprecated");
                return;
        }
        mls_buf_puts(b, " @deprecated(reason: ");
        mls_buf_json_str(b, reason, strlen(reason));
        mls_buf_putc(b, ')');
}

static void sdl_args(struct mls_buf *b, const struct mls__gql_input_value *a,
                     unsigned n, const char *indent)
{
        bool multiline = false;
        char inner[16];

        if (n == 0)
                return;
        for (unsigned i = 0; i < n; i++)
                if (a[i].description)
                        multiline = true;
        snprintf(inner, sizeof(inner), "%s  ", indent);
        mls_buf_putc(b, '(');
        for (unsigned i = 0; i < n; i++) {
                if (multiline) {
                        mls_buf_putc(b, '\n');
                        if (i && a[i].description)
                                mls_buf_putc(b, '\n');
                        sdl_description(b, a[i].description, inner);
                        mls_buf_puts(b, inner);
                } else if (i) {
                        mls_buf_puts(b, ", ");
                }
                mls_buf_printf(b, "%s: ", a[i].name);
                mls__gql_print_type(b, a[i].type);
                if (a[i].default_literal)
                        mls_buf_printf(b, " = %s", a[i].default_literal);
                sdl_deprecated(b, a[i].deprecation);
        }
        if (multiline)
                mls_buf_printf(b, "\n%s", indent);
        mls_buf_putc(b, ')');
}

char *mls_gql_schema_sdl(const mls_gql_schema_t *s)
{
        struct mls_buf b;
        bool first = true;
        char *out;

        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        if (s->description ||
            (s->query && strcmp(s->query->name, "Query") != 0) ||
            (s->mutation && strcmp(s->mutation->name, "Mutation") != 0) ||
            (s->subscription &&
             strcmp(s->subscription->name, "Subscription") != 0)) {
                sdl_description(&b, s->description, "");
                mls_buf_printf(&b, "schema {\n  query: %s\n", s->query->name);
                if (s->mutation)
                        mls_buf_printf(&b, "  mutation: %s\n",
                                       s->mutation->name);
                if (s->subscription)
                        mls_buf_printf(&b, "  subscription: %s\n",
                                       s->subscription->name);
                mls_buf_puts(&b, "}\n");
                first = false;
        }
        for (unsigned i = 0; i < s->ndirectives; i++) {
                const struct mls__gql_directive_def *d = &s->directives[i];
                bool sep = false;
                if (strcmp(d->name, "include") == 0 ||
                    strcmp(d->name, "skip") == 0 ||
                    strcmp(d->name, "deprecated") == 0 ||
                    strcmp(d->name, "specifiedBy") == 0 ||
                    strcmp(d->name, "oneOf") == 0)
                        continue;
                mls_buf_puts(&b, first ? "" : "\n");
                first = false;
                sdl_description(&b, d->description, "");
                mls_buf_printf(&b, "directive @%s", d->name);
                sdl_args(&b, d->args, d->nargs, "");
                mls_buf_puts(&b, d->repeatable ? " repeatable on " : " on ");
                for (int l = 0; l < MLS__GQL_DL_COUNT; l++) {
                        if (!(d->locations & (1u << l)))
                                continue;
                        mls_buf_printf(&b, "%s%s", sep ? " | " : "",
                                       mls__gql_dir_loc_names[l]);
                        sep = true;
                }
                mls_buf_putc(&b, '\n');
        }
        for (unsigned i = 0; i < s->ntypes; i++) {
                const struct mls__gql_type *t = s->types[i];
                if (is_builtin(t))
                        continue;
                mls_buf_puts(&b, first ? "" : "\n");
                first = false;
                sdl_description(&b, t->description, "");
                switch (t->kind) {
                case MLS__GQL_SCALAR:
                        mls_buf_printf(&b, "scalar %s", t->name);
                        if (t->specified_by) {
                                mls_buf_puts(&b, " @specifiedBy(url: ");
                                mls_buf_json_str(&b, t->specified_by,
                                                 strlen(t->specified_by));
                                mls_buf_putc(&b, ')');
                        }
                        mls_buf_putc(&b, '\n');
                        break;
                case MLS__GQL_OBJECT:
                        mls_buf_printf(&b, "type %s {\n", t->name);
                        for (unsigned j = 0; j < t->nfields; j++) {
                                const struct mls__gql_field *f = &t->fields[j];
                                if (j && f->description)
                                        mls_buf_putc(&b, '\n');
                                sdl_description(&b, f->description, "  ");
                                mls_buf_printf(&b, "  %s", f->name);
                                sdl_args(&b, f->args, f->nargs, "  ");
                                mls_buf_puts(&b, ": ");
                                mls__gql_print_type(&b, f->type);
                                sdl_deprecated(&b, f->deprecation);
                                mls_buf_putc(&b, '\n');
                        }
                        mls_buf_puts(&b, "}\n");
                        break;
                case MLS__GQL_ENUM:
                        mls_buf_printf(&b, "enum %s {\n", t->name);
                        for (unsigned j = 0; j < t->nenum_values; j++) {
                                const struct mls__gql_enum_value *v =
                                        &t->enum_values[j];
                                if (j && v->description)
                                        mls_buf_putc(&b, '\n');
                                sdl_description(&b, v->description, "  ");
                                mls_buf_printf(&b, "  %s", v->name);
                                sdl_deprecated(&b, v->deprecation);
                                mls_buf_putc(&b, '\n');
                        }
                        mls_buf_puts(&b, "}\n");
                        break;
                case MLS__GQL_INPUT_OBJECT:
                        mls_buf_printf(&b, "input %s {\n", t->name);
                        for (unsigned j = 0; j < t->ninput_fields; j++) {
                                const struct mls__gql_input_value *v =
                                        &t->input_fields[j];
                                if (j && v->description)
                                        mls_buf_putc(&b, '\n');
                                sdl_description(&b, v->description, "  ");
                                mls_buf_printf(&b, "  %s: ", v->name);
                                mls__gql_print_type(&b, v->type);
                                if (v->default_literal)
                                        mls_buf_printf(&b, " = %s",
                                                       v->default_literal);
                                sdl_deprecated(&b, v->deprecation);
                                mls_buf_putc(&b, '\n');
                        }
                        mls_buf_puts(&b, "}\n");
                        break;
                default:
                        break;
                }
        }
        if (b.overflow) {
                mls_buf_free(&b);
                return NULL;
        }
        out = strdup(mls_buf_cstr(&b));
        mls_buf_free(&b);
        return out;
}
