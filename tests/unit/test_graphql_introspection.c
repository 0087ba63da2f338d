/*
 * Introspection: graphql-js 16's getIntrospectionQuery() with every option
 * on must return a result that buildClientSchema() accepts: every type that
 * is referenced exists, kinds and wrapper chains are right, and the
 * contract types of DESIGN.md section 5 come out exactly.
 */
#include <stdlib.h>

#include "graphql/graphql_int.h"
#include "test.h"

/* getIntrospectionQuery({ descriptions: true, specifiedByUrl: true,
 * directiveIsRepeatable: true, schemaDescription: true,
 * inputValueDeprecation: true, oneOf: true }) of graphql-js 16. */
static const char introspection_query[] =
        "\n"
        "    query IntrospectionQuery {\n"
        "      __schema {\n"
        "        description\n"
        "        queryType { name kind }\n"
        "        mutationType { name kind }\n"
        "        subscriptionType { name kind }\n"
        "        types {\n"
        "          ...FullType\n"
        "        }\n"
        "        directives {\n"
        "          name\n"
        "          description\n"
        "          isRepeatable\n"
        "          locations\n"
        "          args(includeDeprecated: true) {\n"
        "            ...InputValue\n"
        "          }\n"
        "        }\n"
        "      }\n"
        "    }\n"
        "\n"
        "    fragment FullType on __Type {\n"
        "      kind\n"
        "      name\n"
        "      description\n"
        "      specifiedByURL\n"
        "      isOneOf\n"
        "      fields(includeDeprecated: true) {\n"
        "        name\n"
        "        description\n"
        "        args(includeDeprecated: true) {\n"
        "          ...InputValue\n"
        "        }\n"
        "        type {\n"
        "          ...TypeRef\n"
        "        }\n"
        "        isDeprecated\n"
        "        deprecationReason\n"
        "      }\n"
        "      inputFields(includeDeprecated: true) {\n"
        "        ...InputValue\n"
        "      }\n"
        "      interfaces {\n"
        "        ...TypeRef\n"
        "      }\n"
        "      enumValues(includeDeprecated: true) {\n"
        "        name\n"
        "        description\n"
        "        isDeprecated\n"
        "        deprecationReason\n"
        "      }\n"
        "      possibleTypes {\n"
        "        ...TypeRef\n"
        "      }\n"
        "    }\n"
        "\n"
        "    fragment InputValue on __InputValue {\n"
        "      name\n"
        "      description\n"
        "      type { ...TypeRef }\n"
        "      defaultValue\n"
        "      isDeprecated\n"
        "      deprecationReason\n"
        "    }\n"
        "\n"
        "    fragment TypeRef on __Type {\n"
        "      kind\n"
        "      name\n"
        "      ofType {\n"
        "        kind\n"
        "        name\n"
        "        ofType {\n"
        "          kind\n"
        "          name\n"
        "          ofType {\n"
        "            kind\n"
        "            name\n"
        "            ofType {\n"
        "              kind\n"
        "              name\n"
        "              ofType {\n"
        "                kind\n"
        "                name\n"
        "                ofType {\n"
        "                  kind\n"
        "                  name\n"
        "                  ofType {\n"
        "                    kind\n"
        "                    name\n"
        "                    ofType {\n"
        "                      kind\n"
        "                      name\n"
        "                      ofType {\n"
        "                        kind\n"
        "                        name\n"
        "                      }\n"
        "                    }\n"
        "                  }\n"
        "                }\n"
        "              }\n"
        "            }\n"
        "          }\n"
        "        }\n"
        "      }\n"
        "    }\n"
        "  ";

static mls_gql_schema_t *schema(void)
{
        static mls_gql_schema_t *s;
        char err[128];

        if (!s)
                s = mls_gql_schema_new(err, sizeof(err));
        return s;
}

static json_t *query(const char *text)
{
        json_t *errors = NULL, *r;
        mls_gql_doc_t *doc =
                mls_gql_doc_new(schema(), text, strlen(text), NULL, &errors);

        if (!doc)
                return json_pack("{s:o}", "errors", errors);
        r = mls_gql_execute(doc, "", NULL, NULL);
        mls_gql_doc_unref(doc);
        return r;
}

static const char *str(json_t *o, const char *key)
{
        return json_string_value(json_object_get(o, key));
}

/* "[String!]!" for an introspection type reference; "?" when broken. */
static void typeref(json_t *t, char *out, size_t size)
{
        const char *kind = str(t, "kind");

        if (!kind) {
                snprintf(out, size, "?");
        } else if (strcmp(kind, "NON_NULL") == 0) {
                char inner[100];
                typeref(json_object_get(t, "ofType"), inner, sizeof(inner));
                snprintf(out, size, "%s!", inner);
        } else if (strcmp(kind, "LIST") == 0) {
                char inner[100];
                typeref(json_object_get(t, "ofType"), inner, sizeof(inner));
                snprintf(out, size, "[%s]", inner);
        } else {
                snprintf(out, size, "%s",
                         str(t, "name") ? str(t, "name") : "?");
        }
}

static json_t *find_named(json_t *arr, const char *name)
{
        size_t i;
        json_t *v;

        json_array_foreach(arr, i,
                           v) if (str(v, "name") &&
                                  strcmp(str(v, "name"), name) == 0) return v;
        return NULL;
}

/* Checks a type reference the way buildClientSchema() resolves it.
 * Returns NULL or what is wrong. */
static const char *check_ref(json_t *types, json_t *t, int wrapped)
{
        const char *kind = str(t, "kind");
        json_t *named;

        if (!kind)
                return "type reference without kind";
        if (strcmp(kind, "LIST") == 0 || strcmp(kind, "NON_NULL") == 0) {
                json_t *of = json_object_get(t, "ofType");
                if (!json_is_null(json_object_get(t, "name")))
                        return "wrapper with a name";
                if (!json_is_object(of))
                        return "wrapper without ofType";
                if (strcmp(kind, "NON_NULL") == 0 && wrapped == 2)
                        return "non-null of non-null";
                return check_ref(types, of,
                                 strcmp(kind, "NON_NULL") == 0 ? 2 : 1);
        }
        if (!str(t, "name"))
                return "named type reference without name";
        named = find_named(types, str(t, "name"));
        if (!named)
                return "reference to a type missing from types";
        if (strcmp(str(named, "kind"), kind) != 0)
                return "reference kind differs from the type's kind";
        if (json_object_get(t, "ofType") &&
            !json_is_null(json_object_get(t, "ofType")))
                return "named type with ofType";
        return NULL;
}

static const char *check_input_values(json_t *types, json_t *arr)
{
        size_t i;
        json_t *v;
        const char *e;

        if (!json_is_array(arr))
                return "args/inputFields not a list";
        json_array_foreach(arr, i, v)
        {
                if (!str(v, "name"))
                        return "input value without name";
                if ((e = check_ref(types, json_object_get(v, "type"), 0)))
                        return e;
                if (!json_is_boolean(json_object_get(v, "isDeprecated")))
                        return "input value without isDeprecated";
                if (!json_object_get(v, "defaultValue"))
                        return "input value without defaultValue";
        }
        return NULL;
}

static const char *check_type(json_t *types, json_t *t)
{
        const char *kind = str(t, "kind");
        json_t *fields = json_object_get(t, "fields");
        size_t i;
        json_t *f;
        const char *e;

        if (!str(t, "name"))
                return "type without name";
        if (strcmp(kind, "OBJECT") == 0) {
                if (!json_is_array(fields) || json_array_size(fields) == 0)
                        return "object without fields";
                if (!json_is_array(json_object_get(t, "interfaces")))
                        return "object without interfaces list";
                json_array_foreach(fields, i, f)
                {
                        if (!str(f, "name"))
                                return "field without name";
                        if ((e = check_ref(types, json_object_get(f, "type"),
                                           0)))
                                return e;
                        if ((e = check_input_values(
                                     types, json_object_get(f, "args"))))
                                return e;
                        if (!json_is_boolean(
                                    json_object_get(f, "isDeprecated")))
                                return "field without isDeprecated";
                }
                if (!json_is_null(json_object_get(t, "enumValues")) ||
                    !json_is_null(json_object_get(t, "inputFields")) ||
                    !json_is_null(json_object_get(t, "possibleTypes")))
                        return "object with enum/input/possible types";
        } else if (strcmp(kind, "SCALAR") == 0) {
                if (!json_is_null(fields) ||
                    !json_is_null(json_object_get(t, "enumValues")) ||
                    !json_is_null(json_object_get(t, "inputFields")) ||
                    !json_is_null(json_object_get(t, "interfaces")))
                        return "scalar with fields";
        } else if (strcmp(kind, "ENUM") == 0) {
                json_t *vals = json_object_get(t, "enumValues");
                if (!json_is_array(vals) || json_array_size(vals) == 0)
                        return "enum without values";
                json_array_foreach(vals, i, f) if (
                        !str(f, "name") ||
                        !json_is_boolean(json_object_get(
                                f, "isDeprecated"))) return "bad enum value";
        } else if (strcmp(kind, "INPUT_OBJECT") == 0) {
                return check_input_values(types,
                                          json_object_get(t, "inputFields"));
        } else {
                return "unexpected kind";
        }
        return NULL;
}

MLS_TEST(graphql_introspection_full_query_is_complete)
{
        json_t *r = query(introspection_query), *s, *types, *t, *d;
        size_t i, j;
        const char *e = NULL;

        CHECK(r);
        CHECK(json_object_get(r, "errors") == NULL);
        s = json_object_get(json_object_get(r, "data"), "__schema");
        CHECK(json_is_object(s));
        CHECK(json_is_null(json_object_get(s, "description")));
        CHECK_STR_EQ(str(json_object_get(s, "queryType"), "name"), "Query");
        CHECK_STR_EQ(str(json_object_get(s, "queryType"), "kind"), "OBJECT");
        CHECK(json_is_null(json_object_get(s, "mutationType")));
        CHECK_STR_EQ(str(json_object_get(s, "subscriptionType"), "name"),
                     "Subscription");
        types = json_object_get(s, "types");
        CHECK(json_array_size(types) >= 19);
        json_array_foreach(types, i, t)
        {
                /* names are unique */
                for (j = 0; j < i; j++)
                        CHECK(strcmp(str(json_array_get(types, j), "name"),
                                     str(t, "name")) != 0);
                e = check_type(types, t);
                if (e) {
                        mls_test_fail(__FILE__, __LINE__, "type %s: %s",
                                      str(t, "name"), e);
                        json_decref(r);
                        return;
                }
        }
        {
                static const char *const needed[] = {"Query",
                                                     "Subscription",
                                                     "JSON",
                                                     "DateTime",
                                                     "String",
                                                     "Boolean",
                                                     "Int",
                                                     "Float",
                                                     "ID",
                                                     "MLStreamingPrediction",
                                                     "MLStreamingStatus",
                                                     "__Schema",
                                                     "__Type",
                                                     "__Field",
                                                     "__InputValue",
                                                     "__EnumValue",
                                                     "__Directive",
                                                     "__TypeKind",
                                                     "__DirectiveLocation"};
                for (i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
                        CHECK(find_named(types, needed[i]));
        }
        CHECK_STR_EQ(str(find_named(types, "DateTime"), "specifiedByURL"),
                     "https://scalars.graphql.org/andimarek/date-time");
        CHECK(json_is_null(
                json_object_get(find_named(types, "JSON"), "specifiedByURL")));
        json_array_foreach(json_object_get(s, "directives"), i, d)
        {
                CHECK(json_is_false(json_object_get(d, "isRepeatable")));
                CHECK(json_array_size(json_object_get(d, "locations")) > 0);
                CHECK(!check_input_values(types, json_object_get(d, "args")));
        }
        d = find_named(json_object_get(s, "directives"), "deprecated");
        CHECK(d);
        CHECK_STR_EQ(str(json_array_get(json_object_get(d, "args"), 0),
                         "defaultValue"),
                     "\"No longer supported\"");
        CHECK(find_named(json_object_get(s, "directives"), "skip"));
        CHECK(find_named(json_object_get(s, "directives"), "include"));
        CHECK(find_named(json_object_get(s, "directives"), "specifiedBy"));
        /* graphql-js 16.15's specified directives: @deprecated may also
         * mark directive definitions, and @oneOf exists */
        {
                const char *want[] = {"FIELD_DEFINITION", "ARGUMENT_DEFINITION",
                                      "ENUM_VALUE", "INPUT_FIELD_DEFINITION",
                                      "DIRECTIVE_DEFINITION"};
                json_t *locs = json_object_get(d, "locations");
                CHECK_INT_EQ(json_array_size(locs), 5);
                for (size_t k = 0; k < 5; k++)
                        CHECK_STR_EQ(json_string_value(json_array_get(locs, k)),
                                     want[k]);
        }
        d = find_named(json_object_get(s, "directives"), "oneOf");
        CHECK(d);
        CHECK_STR_EQ(json_string_value(json_array_get(
                             json_object_get(d, "locations"), 0)),
                     "INPUT_OBJECT");
        CHECK_INT_EQ(json_array_size(json_object_get(d, "args")), 0);
        json_decref(r);
}

/* The contract of DESIGN.md section 5, read back through introspection. */
MLS_TEST(graphql_introspection_contract_types)
{
        static const char *const expect[][3] = {
                {"Query", "mlStreamingStatus", "MLStreamingStatus!"},
                {"Subscription", "mlInferenceStream", "MLStreamingPrediction!"},
                {"MLStreamingPrediction", "inferenceId", "ID!"},
                {"MLStreamingPrediction", "modelId", "String!"},
                {"MLStreamingPrediction", "inputId", "String"},
                {"MLStreamingPrediction", "predictions", "JSON!"},
                {"MLStreamingPrediction", "latencyMs", "Float!"},
                {"MLStreamingPrediction", "receivedAt", "DateTime!"},
                {"MLStreamingPrediction", "publishedAt", "DateTime"},
                {"MLStreamingPrediction", "metadata", "JSON"},
                {"MLStreamingStatus", "modelId", "String!"},
                {"MLStreamingStatus", "connected", "Boolean!"},
                {"MLStreamingStatus", "lastHeartbeatAt", "DateTime"},
                {"MLStreamingStatus", "averageLatencyMs", "Float"},
                {"MLStreamingStatus", "p95LatencyMs", "Float"},
                {"MLStreamingStatus", "windowSize", "Int!"},
                {"MLStreamingPrediction", "modelVersion", "String"},
                {"MLStreamingStatus", "framework", "String"},
                {"MLStreamingStatus", "servingVersion", "String"},
                {"MLStreamingStatus", "canaryVersion", "String"},
                {"MLStreamingStatus", "canaryShare", "Float"},
                {"MLStreamingStatus", "shadowVersion", "String"},
                {"MLStreamingStatus", "engines", "Int!"},
                {"MLStreamingStatus", "predictionsPerSecond", "Float"},
                {"MLStreamingStatus", "errorsPerSecond", "Float"},
                {"Query", "mlStreamingOverview", "[MLStreamingStatus!]!"},
                {"Query", "mlModelComparison", "[MLModelComparison!]!"},
                {"MLModelComparison", "modelId", "String!"},
                {"MLModelComparison", "servingVersion", "String!"},
                {"MLModelComparison", "shadowVersion", "String!"},
                {"MLModelComparison", "rows", "Float!"},
                {"MLModelComparison", "agreementRate", "Float"},
                {"MLModelComparison", "meanAbsDiff", "Float"},
                {"MLModelComparison", "p95AbsDiff", "Float"},
                {"MLModelComparison", "servingLatencyMs", "Float"},
                {"MLModelComparison", "shadowLatencyMs", "Float"},
                {"MLModelComparison", "engines", "Int!"},
        };
        json_t *r = query(introspection_query), *types;
        char ref[128];

        types = json_object_get(
                json_object_get(json_object_get(r, "data"), "__schema"),
                "types");
        CHECK(types);
        for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
                json_t *t = find_named(types, expect[i][0]);
                json_t *f =
                        find_named(json_object_get(t, "fields"), expect[i][1]);
                CHECK(f);
                CHECK(str(f, "description"));
                typeref(json_object_get(f, "type"), ref, sizeof(ref));
                CHECK_STR_EQ(ref, expect[i][2]);
        }
        for (int k = 0; k < 2; k++) {
                json_t *t = find_named(types, k ? "Subscription" : "Query");
                json_t *f = json_array_get(json_object_get(t, "fields"), 0);
                json_t *a = json_object_get(f, "args");
                /* the subscription may also resume after a prediction */
                CHECK_INT_EQ(json_array_size(a), k ? 2 : 1);
                CHECK_STR_EQ(str(json_array_get(a, 0), "name"), "modelId");
                typeref(json_object_get(json_array_get(a, 0), "type"), ref,
                        sizeof(ref));
                CHECK_STR_EQ(ref, "String!");
                if (k) {
                        CHECK_STR_EQ(str(json_array_get(a, 1), "name"),
                                     "after");
                        typeref(json_object_get(json_array_get(a, 1), "type"),
                                ref, sizeof(ref));
                        CHECK_STR_EQ(ref, "ID");
                }
        }
        CHECK_INT_EQ(
                json_array_size(json_object_get(
                        find_named(types, "MLStreamingPrediction"), "fields")),
                10);
        CHECK_INT_EQ(json_array_size(json_object_get(
                             find_named(types, "MLStreamingStatus"), "fields")),
                     14);
        CHECK_INT_EQ(json_array_size(json_object_get(
                             find_named(types, "MLModelComparison"), "fields")),
                     10);
        json_decref(r);
}

MLS_TEST(graphql_introspection_type_lookup_and_typename)
{
        json_t *r = query("{ t: __type(name: \"MLStreamingStatus\") { "
                          "__typename kind name fields { name type { kind "
                          "ofType { name } } } } n: __type(name: \"Nope\") { "
                          "name } k: __type(name: \"__TypeKind\") { "
                          "enumValues { name } } }");
        json_t *data = json_object_get(r, "data");
        json_t *t = json_object_get(data, "t");
        char *s;

        CHECK(t);
        CHECK_STR_EQ(str(t, "__typename"), "__Type");
        CHECK_STR_EQ(str(t, "kind"), "OBJECT");
        CHECK(json_is_null(json_object_get(data, "n")));
        s = json_dumps(
                json_object_get(json_object_get(data, "k"), "enumValues"),
                JSON_COMPACT);
        json_decref(r);
        CHECK_STR_EQ(s, "[{\"name\":\"SCALAR\"},{\"name\":\"OBJECT\"},"
                        "{\"name\":\"INTERFACE\"},{\"name\":\"UNION\"},"
                        "{\"name\":\"ENUM\"},{\"name\":\"INPUT_OBJECT\"},"
                        "{\"name\":\"LIST\"},{\"name\":\"NON_NULL\"}]");
        free(s);
}

MLS_TEST(graphql_introspection_include_deprecated)
{
        json_t *r = query("{ a: __type(name: \"__Type\") { fields { name } } "
                          "b: __type(name: \"__Type\") { fields("
                          "includeDeprecated: true) { name isDeprecated "
                          "deprecationReason } } }");
        json_t *data = json_object_get(r, "data");
        json_t *a = json_object_get(json_object_get(data, "a"), "fields");
        json_t *b = json_object_get(json_object_get(data, "b"), "fields");
        json_t *old;

        CHECK(a && b);
        CHECK(find_named(a, "specifiedByURL"));
        CHECK(!find_named(a, "specifiedByUrl"));
        old = find_named(b, "specifiedByUrl");
        CHECK(old);
        CHECK(json_is_true(json_object_get(old, "isDeprecated")));
        CHECK_STR_EQ(str(old, "deprecationReason"), "Use `specifiedByURL`.");
        CHECK_INT_EQ(json_array_size(b), json_array_size(a) + 1);
        json_decref(r);
}

MLS_TEST(graphql_introspection_schema_sdl)
{
        char *sdl = mls_gql_schema_sdl(schema());
        static const char *const lines[] = {
                "scalar JSON\n",
                ("scalar DateTime @specifiedBy(url: "
                 "\"https://scalars.graphql.org/andimarek/date-time\")\n"),
                "type Query {\n",
                "  mlStreamingStatus(\n",
                "    modelId: String!\n  ): MLStreamingStatus!\n",
                "type Subscription {\n",
                "    after: ID\n  ): MLStreamingPrediction!\n",
                "type MLStreamingPrediction {\n",
                "  inferenceId: ID!\n",
                "  modelId: String!\n",
                "  inputId: String\n",
                "  predictions: JSON!\n",
                "  latencyMs: Float!\n",
                "  receivedAt: DateTime!\n",
                "  publishedAt: DateTime\n",
                "  metadata: JSON\n",
                "  gap: MLStreamGap\n",
                "type MLStreamGap {\n",
                "  reason: String!\n",
                "  missed: Int\n",
                "  since: DateTime\n",
                "type MLStreamingStatus {\n",
                "  connected: Boolean!\n",
                "  lastHeartbeatAt: DateTime\n",
                "  averageLatencyMs: Float\n",
                "  p95LatencyMs: Float\n",
                "  windowSize: Int!\n",
        };

        CHECK(sdl);
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
                if (!strstr(sdl, lines[i])) {
                        mls_test_fail(__FILE__, __LINE__, "SDL lacks %s",
                                      lines[i]);
                        free(sdl);
                        return;
                }
        }
        /* built-ins and introspection types are left out, as graphql-js
         * printSchema() does */
        CHECK(!strstr(sdl, "__Type"));
        CHECK(!strstr(sdl, "scalar String"));
        free(sdl);
}

MLS_TEST(graphql_introspection_shared_values_survive_free)
{
        /* the introspection graph has cycles; freeing a schema breaks them
         * (LeakSanitizer checks this test) */
        char err[128];

        for (int i = 0; i < 3; i++) {
                mls_gql_schema_t *s = mls_gql_schema_new(err, sizeof(err));
                CHECK(s);
                mls_gql_schema_free(s);
        }
}
