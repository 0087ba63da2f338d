/*
 * Validation rules, with graphql-js 16's messages and locations (the
 * expected texts were checked against graphql-js itself).
 */
#include <stdlib.h>
#include <time.h>

#include "graphql/graphql_int.h"
#include "test.h"

/* A schema with an enum and an input object, beside the mlstream one. */
static const struct mls__gql_enumdef color_values[] = {
        {"RED", NULL, NULL},
        {"GREEN", NULL, NULL},
        {"BLUE", NULL, "Use RED."},
        {NULL, NULL, NULL},
};

static const struct mls__gql_argdef point_fields[] = {
        {"x", "Int!", NULL, NULL, NULL},
        {"y", "Int!", NULL, NULL, NULL},
        {"label", "String", NULL, "\"origin\"", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static const struct mls__gql_argdef paint_args[] = {
        {"color", "Color!", NULL, NULL, NULL},
        {"at", "Point", NULL, NULL, NULL},
        {"colors", "[Color!]", NULL, NULL, NULL},
        {"size", "Float", NULL, "1.5", NULL},
        {NULL, NULL, NULL, NULL, NULL},
};

static const struct mls__gql_fielddef test_query_fields[] = {
        {"paint", "String", NULL, paint_args, NULL, MLS__GQL_R_ROOT},
        {"n", "Int", NULL, NULL, NULL, 0},
        {NULL, NULL, NULL, NULL, NULL, 0},
};

static const struct mls__gql_typedef test_types[] = {
        {MLS__GQL_OBJECT, "Query", NULL, NULL, 0, test_query_fields, NULL,
         NULL},
        {MLS__GQL_ENUM, "Color", NULL, NULL, 0, NULL, NULL, color_values},
        {MLS__GQL_INPUT_OBJECT, "Point", NULL, NULL, 0, NULL, point_fields,
         NULL},
        {0, NULL, NULL, NULL, 0, NULL, NULL, NULL},
};

static const struct mls__gql_typedef *const test_tables[] = {
        test_types,
        mls__gql_builtin_types,
        NULL,
};

static const struct mls__gql_schemadef test_schema_def = {
        .type_tables = test_tables,
        .directives = mls__gql_builtin_directives,
        .query = "Query",
};

static json_t *check_doc(mls_gql_schema_t *s, const char *text)
{
        json_t *errors = NULL;
        mls_gql_doc_t *doc =
                mls_gql_doc_new(s, text, strlen(text), NULL, &errors);

        mls_gql_doc_unref(doc);
        return errors;
}

/* The errors of text against the mlstream schema, as one string:
 * "message @line:col,line:col | message ..." (NULL-safe, static). */
static const char *errs_of(mls_gql_schema_t *s, const char *text)
{
        static char out[8192];
        json_t *errors = check_doc(s, text), *e, *l;
        size_t o = 0, i, j;

        out[0] = '\0';
        json_array_foreach(errors, i, e)
        {
                o += (size_t)snprintf(
                        out + o, sizeof(out) - o, "%s%s", i ? " | " : "",
                        json_string_value(json_object_get(e, "message")));
                json_array_foreach(json_object_get(e, "locations"), j, l)
                {
                        o += (size_t)snprintf(
                                out + o, sizeof(out) - o, "%s%lld:%lld",
                                j ? "," : " @",
                                (long long)json_integer_value(
                                        json_object_get(l, "line")),
                                (long long)json_integer_value(
                                        json_object_get(l, "column")));
                }
                if (o >= sizeof(out))
                        break;
        }
        json_decref(errors);
        return out;
}

static mls_gql_schema_t *schema(void)
{
        static mls_gql_schema_t *s;
        char err[128];

        if (!s)
                s = mls_gql_schema_new(err, sizeof(err));
        return s;
}

static mls_gql_schema_t *test_schema(void)
{
        static mls_gql_schema_t *s;
        char err[128];

        if (!s)
                s = mls__gql_schema_build(&test_schema_def, err, sizeof(err));
        return s;
}

#define ERRS(text) errs_of(schema(), (text))
#define TERRS(text) errs_of(test_schema(), (text))

MLS_TEST(graphql_validate_valid_documents)
{
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"m\") { modelId "
                          "connected lastHeartbeatAt averageLatencyMs "
                          "p95LatencyMs windowSize __typename } }"),
                     "");
        CHECK_STR_EQ(ERRS("query Q($m: String!, $b: Boolean = false) { "
                          "s: mlStreamingStatus(modelId: $m) { ...F "
                          "@skip(if: $b) ... on MLStreamingStatus { "
                          "windowSize } } } fragment F on MLStreamingStatus "
                          "{ modelId }"),
                     "");
        CHECK_STR_EQ(ERRS("subscription S($m: String!) { mlInferenceStream("
                          "modelId: $m) { inferenceId modelId inputId "
                          "predictions latencyMs receivedAt publishedAt "
                          "metadata } }"),
                     "");
        CHECK_STR_EQ(ERRS("query A { __typename } query B { __typename }"), "");
}

MLS_TEST(graphql_validate_fields_on_correct_type)
{
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"x\") { modelld } "
                          "}"),
                     "Cannot query field \"modelld\" on type "
                     "\"MLStreamingStatus\". Did you mean \"modelId\"? "
                     "@1:37");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"x\") { zzzzzzz } "
                          "}"),
                     "Cannot query field \"zzzzzzz\" on type "
                     "\"MLStreamingStatus\". @1:37");
        CHECK_STR_EQ(ERRS("{ __schema { types { nam } } }"),
                     "Cannot query field \"nam\" on type \"__Type\". Did you "
                     "mean \"name\"? @1:22");
        /* __schema and __type exist only on the query type */
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"x\") { __schema { "
                          "description } } }"),
                     "Cannot query field \"__schema\" on type "
                     "\"MLStreamingStatus\". @1:37");
}

MLS_TEST(graphql_validate_arguments)
{
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus { modelId } }"),
                     "Field \"mlStreamingStatus\" argument \"modelId\" of "
                     "type \"String!\" is required, but it was not "
                     "provided. @1:3");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: 1) { modelId } }"),
                     "String cannot represent a non string value: 1 @1:30");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: null) { modelId } "
                          "}"),
                     "Expected value of type \"String!\", found null. @1:30");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"a\", modelId: "
                          "\"b\") { modelId } }"),
                     "There can be only one argument named \"modelId\". "
                     "@1:21,1:35");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"a\", modelid: 1) "
                          "{ modelId } }"),
                     "Unknown argument \"modelid\" on field "
                     "\"Query.mlStreamingStatus\". Did you mean "
                     "\"modelId\"? @1:35");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: [\"a\"]) { modelId "
                          "} }"),
                     "String cannot represent a non string value: [\"a\"] "
                     "@1:30");
        CHECK_STR_EQ(ERRS("{ __type(name: \"Query\") { fields("
                          "includeDeprecated: 1) { name } } }"),
                     "Boolean cannot represent a non boolean value: 1 "
                     "@1:53");
}

MLS_TEST(graphql_validate_leaf_and_composite_selections)
{
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"a\") }"),
                     "Field \"mlStreamingStatus\" of type "
                     "\"MLStreamingStatus!\" must have a selection of "
                     "subfields. Did you mean \"mlStreamingStatus { ... "
                     "}\"? @1:3");
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"a\") { modelId { "
                          "x } } }"),
                     "Field \"modelId\" must not have a selection since "
                     "type \"String!\" has no subfields. @1:45");
        CHECK_STR_EQ(ERRS("{ __typename { a } }"),
                     "Field \"__typename\" must not have a selection since "
                     "type \"String!\" has no subfields. @1:14");
}

MLS_TEST(graphql_validate_operations)
{
        CHECK_STR_EQ(ERRS("query Q { a: __typename } query Q { b: "
                          "__typename }"),
                     "There can be only one operation named \"Q\". "
                     "@1:7,1:33");
        CHECK_STR_EQ(ERRS("{ a: __typename } { b: __typename }"),
                     "This anonymous operation must be the only defined "
                     "operation. @1:1 | This anonymous operation must be "
                     "the only defined operation. @1:19");
        CHECK_STR_EQ(ERRS("mutation { x }"),
                     "Schema is not configured to execute mutation "
                     "operation. @1:1");
}

MLS_TEST(graphql_validate_subscription_single_root_field)
{
        CHECK_STR_EQ(ERRS("subscription S { mlInferenceStream(modelId: "
                          "\"x\") { modelId } a: mlInferenceStream(modelId: "
                          "\"y\") { modelId } }"),
                     "Subscription \"S\" must select only one top level field. "
                     "@1:62");
        CHECK_STR_EQ(ERRS("subscription { __typename }"),
                     "Anonymous Subscription must not select an "
                     "introspection top level field. @1:16");
        CHECK_STR_EQ(ERRS("subscription { ...S } fragment S on Subscription "
                          "{ mlInferenceStream(modelId: \"x\") { modelId } "
                          "__typename }"),
                     "Anonymous Subscription must select only one top level "
                     "field. @1:96 | Anonymous Subscription must not select an "
                     "introspection top level field. @1:96");
        /* a literal @skip removes a field before counting */
        CHECK_STR_EQ(ERRS("subscription { mlInferenceStream(modelId: \"x\") "
                          "{ modelId } b: mlInferenceStream(modelId: \"x\") "
                          "@skip(if: true) { modelId } }"),
                     "");
}

MLS_TEST(graphql_validate_variables)
{
        CHECK_STR_EQ(ERRS("query Q($m: String) { mlStreamingStatus(modelId: "
                          "$m) { modelId } }"),
                     "Variable \"$m\" of type \"String\" used in position "
                     "expecting type \"String!\". @1:9,1:50");
        CHECK_STR_EQ(ERRS("query Q($m: String = \"x\") { mlStreamingStatus("
                          "modelId: $m) { modelId } }"),
                     "");
        CHECK_STR_EQ(ERRS("query Q($m: Int!) { mlStreamingStatus(modelId: "
                          "$m) { modelId } }"),
                     "Variable \"$m\" of type \"Int!\" used in position "
                     "expecting type \"String!\". @1:9,1:48");
        CHECK_STR_EQ(ERRS("query Q($m: String!) { mlStreamingStatus("
                          "modelId: $n) { modelId } }"),
                     "Variable \"$n\" is not defined by operation \"Q\". "
                     "@1:51,1:1 | Variable \"$m\" is never used in operation "
                     "\"Q\". @1:9");
        CHECK_STR_EQ(ERRS("query ($u: Int) { __typename }"),
                     "Variable \"$u\" is never used. @1:8");
        CHECK_STR_EQ(ERRS("{ __typename @skip(if: $v) }"),
                     "Variable \"$v\" is not defined. @1:24,1:1");
        CHECK_STR_EQ(ERRS("query Q($m: String!, $m: String!) { "
                          "mlStreamingStatus(modelId: $m) { modelId } }"),
                     "There can be only one variable named \"$m\". "
                     "@1:10,1:23");
        CHECK_STR_EQ(ERRS("query Q($m: Strin) { __typename }"),
                     "Unknown type \"Strin\". Did you mean \"String\"? @1:13 | "
                     "Variable \"$m\" is never used in operation \"Q\". @1:9");
        CHECK_STR_EQ(ERRS("query Q($m: MLStreamingStatus) { __typename "
                          "@skip(if: false) }"),
                     "Variable \"$m\" cannot be non-input type "
                     "\"MLStreamingStatus\". @1:13 | Variable \"$m\" is never "
                     "used in operation \"Q\". @1:9");
        CHECK_STR_EQ(ERRS("query ($x: String = 5) { mlStreamingStatus("
                          "modelId: $x) { modelId } }"),
                     "String cannot represent a non string value: 5 @1:21");
        /* usages inside fragments count for every operation using them */
        CHECK_STR_EQ(ERRS("query A($v: Boolean!) { ...F } query B { ...F } "
                          "fragment F on Query { __typename @include(if: "
                          "$v) }"),
                     "Variable \"$v\" is not defined by operation \"B\". "
                     "@1:95,1:32");
        CHECK_STR_EQ(ERRS("query ($x: [String]) { mlStreamingStatus("
                          "modelId: $x) { modelId } }"),
                     "Variable \"$x\" of type \"[String]\" used in position "
                     "expecting type \"String!\". @1:8,1:51");
}

MLS_TEST(graphql_validate_fragments)
{
        CHECK_STR_EQ(ERRS("{ ...F }"), "Unknown fragment \"F\". @1:6");
        CHECK_STR_EQ(ERRS("{ ...F } fragment F on Query { __typename } "
                          "fragment F on Query { __typename }"),
                     "There can be only one fragment named \"F\". "
                     "@1:19,1:54");
        CHECK_STR_EQ(ERRS("fragment F on Query { __typename } { "
                          "__typename }"),
                     "Fragment \"F\" is never used. @1:1");
        CHECK_STR_EQ(ERRS("{ ...F } fragment F on MLStreamingStatus { "
                          "modelId }"),
                     "Fragment \"F\" cannot be spread here as objects of "
                     "type \"Query\" can never be of type "
                     "\"MLStreamingStatus\". @1:3");
        CHECK_STR_EQ(ERRS("{ ... on MLStreamingStatus { modelId } }"),
                     "Fragment cannot be spread here as objects of type "
                     "\"Query\" can never be of type \"MLStreamingStatus\". "
                     "@1:3");
        CHECK_STR_EQ(ERRS("{ ... on String { a } }"),
                     "Fragment cannot condition on non composite type "
                     "\"String\". @1:10");
        CHECK_STR_EQ(ERRS("{ ...F } fragment F on String { x }"),
                     "Fragment \"F\" cannot condition on non composite type "
                     "\"String\". @1:24");
        CHECK_STR_EQ(ERRS("{ ... on Qery { a } }"),
                     "Unknown type \"Qery\". Did you mean \"Query\"? @1:10");
}

MLS_TEST(graphql_validate_fragment_cycles)
{
        CHECK_STR_EQ(ERRS("{ ...A } fragment A on Query { ...A }"),
                     "Cannot spread fragment \"A\" within itself. @1:32");
        CHECK_STR_EQ(ERRS("{ ...A } fragment A on Query { ...B } fragment B "
                          "on Query { ...A }"),
                     "Cannot spread fragment \"A\" within itself via "
                     "\"B\". @1:32,1:61");
        CHECK_STR_EQ(ERRS("{ ...A } fragment A on Query { ...B } fragment B "
                          "on Query { ...C } fragment C on Query { ...A ...B "
                          "}"),
                     "Cannot spread fragment \"A\" within itself via \"B\", "
                     "\"C\". @1:32,1:61,1:90 | Cannot spread fragment \"B\" "
                     "within itself via \"C\". @1:61,1:95");
}

MLS_TEST(graphql_validate_long_fragment_chain_without_recursion)
{
        /* 5000 fragments in a chain and a cycle back: iterative checks */
        size_t n = 5000, cap = n * 64 + 64, len = 0;
        char *text = malloc(cap);
        struct mls_gql_limits lim = {0};
        json_t *errors = NULL;
        mls_gql_doc_t *doc;

        CHECK(text);
        len += (size_t)snprintf(text, cap, "{ ...F0 }");
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " fragment F%zu on Query { "
                                        "__typename ...F%zu }",
                                        i, (i + 1) % n);
        lim.max_tokens = 100000;
        doc = mls_gql_doc_new(schema(), text, len, &lim, &errors);
        free(text);
        CHECK(doc == NULL);
        CHECK_INT_EQ(json_array_size(errors), 1);
        CHECK_CONTAINS(json_string_value(json_object_get(
                               json_array_get(errors, 0), "message")),
                       "Cannot spread fragment \"F0\" within itself via "
                       "\"F1\", \"F2\"");
        json_decref(errors);
}

MLS_TEST(graphql_validate_field_depth_through_fragments)
{
        /* each fragment adds a level: the depth limit sees through them */
        size_t n = 100, cap = n * 96 + 64, len = 0;
        char *text = malloc(cap);
        const char *e;

        CHECK(text);
        len += (size_t)snprintf(text, cap, "{ __schema { types { ...T0 } } }");
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " fragment T%zu on __Type { ofType "
                                        "{ name ...T%zu } }",
                                        i, i + 1);
        len += (size_t)snprintf(text + len, cap - len,
                                " fragment T%zu on __Type { name }", n);
        e = ERRS(text);
        free(text);
        CHECK_STR_EQ(e, "Operation is nested 103 fields deep, deeper than "
                        "the limit of 64. @1:1");
}

MLS_TEST(graphql_validate_directives)
{
        CHECK_STR_EQ(ERRS("{ __typename @foo }"),
                     "Unknown directive \"@foo\". @1:14");
        CHECK_STR_EQ(ERRS("{ __typename @skip(if: true) @skip(if: false) }"),
                     "The directive \"@skip\" can only be used once at this "
                     "location. @1:14,1:30");
        CHECK_STR_EQ(ERRS("{ __typename @skip }"),
                     "Directive \"@skip\" argument \"if\" of type "
                     "\"Boolean!\" is required, but it was not provided. "
                     "@1:14");
        CHECK_STR_EQ(ERRS("{ __typename @skip(if: true, x: 1) }"),
                     "Unknown argument \"x\" on directive \"@skip\". @1:30");
        CHECK_STR_EQ(ERRS("query @skip(if: true) { __typename }"),
                     "Directive \"@skip\" may not be used on QUERY. @1:7");
        CHECK_STR_EQ(ERRS("{ __typename @deprecated }"),
                     "Directive \"@deprecated\" may not be used on FIELD. "
                     "@1:14");
}

MLS_TEST(graphql_validate_overlapping_fields)
{
        CHECK_STR_EQ(ERRS("{ a: mlStreamingStatus(modelId: \"x\") { modelId "
                          "} a: mlStreamingStatus(modelId: \"y\") { modelId "
                          "} }"),
                     "Fields \"a\" conflict because they have differing "
                     "arguments. Use different aliases on the fields to fetch "
                     "both if this was intentional. @1:3,1:50");
        CHECK_STR_EQ(ERRS("{ a: __typename a: mlStreamingStatus(modelId: "
                          "\"y\") { modelId } }"),
                     "Fields \"a\" conflict because \"__typename\" and "
                     "\"mlStreamingStatus\" are different fields. Use "
                     "different aliases on the fields to fetch both if "
                     "this was intentional. @1:3,1:17");
        CHECK_STR_EQ(
                ERRS("{ m: mlStreamingStatus(modelId: \"x\") { a: "
                     "modelId b: connected } m: mlStreamingStatus("
                     "modelId: \"x\") { a: windowSize b: windowSize} }"),
                "Fields \"m\" conflict because subfields \"a\" conflict "
                "because \"modelId\" and \"windowSize\" are different "
                "fields and subfields \"b\" conflict because \"connected\" "
                "and \"windowSize\" are different fields. Use different "
                "aliases on the fields to fetch both if this was "
                "intentional. @1:3,1:40,1:51,1:66,1:103,1:117");
        /* identical fields merge, also through fragments */
        CHECK_STR_EQ(ERRS("{ mlStreamingStatus(modelId: \"x\") { modelId } "
                          "...F } fragment F on Query { mlStreamingStatus("
                          "modelId: \"x\") { windowSize } }"),
                     "");
        CHECK_STR_EQ(ERRS("{ m: mlStreamingStatus(modelId: \"x\") { modelId "
                          "} ...F } fragment F on Query { m: "
                          "mlStreamingStatus(modelId: \"z\") { modelId } }"),
                     "Fields \"m\" conflict because they have differing "
                     "arguments. Use different aliases on the fields to fetch "
                     "both if this was intentional. @1:3,1:79");
}

MLS_TEST(graphql_validate_huge_alias_count_is_fast)
{
        /* 8000 aliases of one name and 8000 distinct: no quadratic
         * pair-wise comparison */
        size_t n = 8000, cap = n * 48 + 16, len = 0;
        char *text = malloc(cap);
        clock_t t0 = clock();
        const char *e;

        CHECK(text);
        text[len++] = '{';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " a: __typename b%zu: __typename", i);
        text[len++] = '}';
        text[len] = '\0';
        e = ERRS(text);
        free(text);
        CHECK_STR_EQ(e, "");
        CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
}

MLS_TEST(graphql_validate_exponential_fragments_are_bounded)
{
        /* F0 spreads F1 twice in two fields, and so on: the expansion is
         * 2^40, the checks stay bounded */
        size_t n = 40, cap = n * 128 + 64, len = 0;
        char *text = malloc(cap);
        json_t *errors;
        clock_t t0 = clock();

        CHECK(text);
        len += (size_t)snprintf(text, cap,
                                "{ __type(name: \"Query\") { "
                                "...F0 } }");
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " fragment F%zu on __Type { a: "
                                        "ofType { ...F%zu } b: ofType { "
                                        "...F%zu } }",
                                        i, i + 1, i + 1);
        len += (size_t)snprintf(text + len, cap - len,
                                " fragment F%zu on __Type { name }", n);
        errors = check_doc(schema(), text);
        free(text);
        /* valid as written; the field budget applies at execution */
        CHECK(errors == NULL);
        CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
}

MLS_TEST(graphql_validate_error_limit)
{
        size_t n = 300, cap = n * 16 + 16, len = 0;
        char *text = malloc(cap);
        json_t *errors;

        CHECK(text);
        text[len++] = '{';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len, " x%zu", i);
        text[len++] = '}';
        text[len] = '\0';
        errors = check_doc(schema(), text);
        free(text);
        CHECK_INT_EQ(json_array_size(errors), 101);
        CHECK_STR_EQ(json_string_value(json_object_get(
                             json_array_get(errors, 100), "message")),
                     "Too many validation errors, error limit reached. "
                     "Validation aborted.");
        json_decref(errors);
}

MLS_TEST(graphql_validate_enums_and_input_objects)
{
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: {x: 1, y: 2}, colors: "
                           "[GREEN, BLUE]) }"),
                     "");
        CHECK_STR_EQ(TERRS("{ paint(color: \"RED\") }"),
                     "Enum \"Color\" cannot represent non-enum value: "
                     "\"RED\". Did you mean the enum value \"RED\" or "
                     "\"GREEN\"? @1:16");
        CHECK_STR_EQ(TERRS("{ paint(color: REDD) }"),
                     "Value \"REDD\" does not exist in \"Color\" enum. Did "
                     "you mean the enum value \"RED\"? @1:16");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: {x: 1}) }"),
                     "Field \"Point.y\" of required type \"Int!\" was not "
                     "provided. @1:25");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: {x: 1, y: 2, z: 3}) }"),
                     "Field \"z\" is not defined by type \"Point\". Did "
                     "you mean \"x\" or \"y\"? @1:38");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: {x: 1, y: 2, x: 3}) }"),
                     "There can be only one input field named \"x\". "
                     "@1:26,1:38");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: 5) }"),
                     "Expected value of type \"Point\", found 5. @1:25");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, at: {x: 1.5, y: "
                           "99999999999}) }"),
                     "Int cannot represent non-integer value: 1.5 @1:29 | "
                     "Int cannot represent non 32-bit signed integer value: "
                     "99999999999 @1:37");
        CHECK_STR_EQ(TERRS("{ paint(color: RED, colors: [RED, null]) }"),
                     "Expected value of type \"Color!\", found null. @1:35");
        CHECK_STR_EQ(TERRS("query ($c: [Color]) { paint(color: RED, colors: "
                           "$c) }"),
                     "Variable \"$c\" of type \"[Color]\" used in position "
                     "expecting type \"[Color!]\". @1:8,1:49");
        CHECK_STR_EQ(TERRS("query ($x: Int!) { paint(color: RED, at: {x: $x, "
                           "y: 1}) }"),
                     "");
}

/* The first error message of text with a cost limit of max_cost ("" when
 * valid); static. */
static const char *cost_error(mls_gql_schema_t *s, const char *text,
                              unsigned long max_cost)
{
        static char out[512];
        struct mls_gql_limits lim;
        json_t *errors = NULL;
        mls_gql_doc_t *doc;

        mls_gql_limits_default(&lim);
        lim.max_cost = max_cost;
        lim.max_document_bytes = 1 << 20;
        lim.max_tokens = 1000000;
        doc = mls_gql_doc_new(s, text, strlen(text), &lim, &errors);
        snprintf(out, sizeof(out), "%s",
                 doc ? ""
                     : json_string_value(json_object_get(
                               json_array_get(errors, 0), "message")));
        mls_gql_doc_unref(doc);
        json_decref(errors);
        return out;
}

static char *aliases(const char *field, size_t n)
{
        size_t cap = n * (strlen(field) + 16) + 16, len = 0;
        char *text = malloc(cap);

        if (!text)
                return NULL;
        text[len++] = '{';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len, " a%zu: %s", i,
                                        field);
        text[len++] = '}';
        text[len] = '\0';
        return text;
}

MLS_TEST(graphql_validate_query_cost_limit)
{
        char err[128];
        mls_gql_schema_t *s = mls_gql_schema_new(err, sizeof(err));
        char *text;
        clock_t t0 = clock();

        CHECK(s);
        CHECK(mls_gql_schema_set_list_size(s, "Query", "mlStreamingModels",
                                           1000, err, sizeof(err)) == 0);
        CHECK(mls_gql_schema_set_list_size(s, "Query", "mlStreamingStatus", 10,
                                           err, sizeof(err)) < 0);
        CHECK_STR_EQ(err, "GraphQL field Query.mlStreamingStatus does not "
                          "exist or is not a list");
        /* a list of 1000 leaves costs 1 + 1000 */
        CHECK_STR_EQ(cost_error(s, "{ mlStreamingModels }", 1001), "");
        CHECK_STR_EQ(cost_error(s, "{ mlStreamingModels }", 1000),
                     "Operation costs 1001 field resolutions, more than the "
                     "limit of 1000.");
        /* 2000 aliases: 2002000 */
        text = aliases("mlStreamingModels", 2000);
        CHECK_STR_EQ(cost_error(s, text, 50000),
                     "Operation costs 2002000 field resolutions, more than "
                     "the limit of 50000.");
        free(text);
        /* aliases through fragments count every time */
        CHECK_STR_EQ(cost_error(s,
                                "{ ...F ...F a: __typename } fragment F on "
                                "Query { x: mlStreamingStatus(modelId: "
                                "\"m\") { windowSize connected } }",
                                6),
                     "Operation costs 7 field resolutions, more than the "
                     "limit of 6.");
        /* objects: 1 + fields */
        text = aliases("mlStreamingStatus(modelId: \"m\") { windowSize }",
                       2000);
        CHECK_STR_EQ(cost_error(s, text, 4000), "");
        CHECK_STR_EQ(cost_error(s, text, 3999),
                     "Operation costs 4000 field resolutions, more than the "
                     "limit of 3999.");
        free(text);
        /* introspection lists count with the schema's sizes: the whole
         * schema's types and fields fit the default limit */
        CHECK_STR_EQ(cost_error(s,
                                "{ __schema { types { name fields { name "
                                "args { name type { name ofType { name } } "
                                "} type { name ofType { name } } } } } }",
                                50000),
                     "");
        CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
        mls_gql_schema_free(s);
}
