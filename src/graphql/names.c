/*
 * How the type system's enums are spelled: __TypeKind and
 * __DirectiveLocation as introspection returns them, SDL prints them and
 * validation messages quote them. Data only, so the schema, introspection
 * and validation can all use it without depending on each other.
 */
#include "graphql/graphql_int.h"

/* by enum mls__gql_kind */
const char *const mls__gql_kind_names[8] = {
        "SCALAR", "OBJECT",       "INTERFACE", "UNION",
        "ENUM",   "INPUT_OBJECT", "LIST",      "NON_NULL",
};

/* by enum mls__gql_dir_loc */
const char *const mls__gql_dir_loc_names[MLS__GQL_DL_COUNT] = {
        [MLS__GQL_DL_QUERY] = "QUERY",
        [MLS__GQL_DL_MUTATION] = "MUTATION",
        [MLS__GQL_DL_SUBSCRIPTION] = "SUBSCRIPTION",
        [MLS__GQL_DL_FIELD] = "FIELD",
        [MLS__GQL_DL_FRAGMENT_DEFINITION] = "FRAGMENT_DEFINITION",
        [MLS__GQL_DL_FRAGMENT_SPREAD] = "FRAGMENT_SPREAD",
        [MLS__GQL_DL_INLINE_FRAGMENT] = "INLINE_FRAGMENT",
        [MLS__GQL_DL_VARIABLE_DEFINITION] = "VARIABLE_DEFINITION",
        [MLS__GQL_DL_SCHEMA] = "SCHEMA",
        [MLS__GQL_DL_SCALAR] = "SCALAR",
        [MLS__GQL_DL_OBJECT] = "OBJECT",
        [MLS__GQL_DL_FIELD_DEFINITION] = "FIELD_DEFINITION",
        [MLS__GQL_DL_ARGUMENT_DEFINITION] = "ARGUMENT_DEFINITION",
        [MLS__GQL_DL_INTERFACE] = "INTERFACE",
        [MLS__GQL_DL_UNION] = "UNION",
        [MLS__GQL_DL_ENUM] = "ENUM",
        [MLS__GQL_DL_ENUM_VALUE] = "ENUM_VALUE",
        [MLS__GQL_DL_INPUT_OBJECT] = "INPUT_OBJECT",
        [MLS__GQL_DL_INPUT_FIELD_DEFINITION] = "INPUT_FIELD_DEFINITION",
        [MLS__GQL_DL_DIRECTIVE_DEFINITION] = "DIRECTIVE_DEFINITION",
};
