/*
 * Introspection as data: the schema's __Schema value and one __Type object
 * per named type, built once as jansson values. Type references share the
 * named types' objects, so the graph has cycles (__Type.fields[].type ->
 * __Type); mls__gql_intro_free() breaks them before dropping references.
 * The executor then resolves every introspection field by key, except the
 * includeDeprecated filters (MLS__GQL_R_DEPRECATED).
 */
#include <string.h>

#include "graphql/graphql_int.h"

struct ib {
        bool failed;
};

static void set(struct ib *b, json_t *obj, const char *key, json_t *v)
{
        if (!v || !obj || json_object_set_new(obj, key, v) < 0)
                b->failed = true;
}

static json_t *str_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

static void push(struct ib *b, json_t *arr, json_t *v)
{
        if (!v || !arr || json_array_append_new(arr, v) < 0)
                b->failed = true;
}

static json_t *skeleton(struct ib *b, enum mls__gql_kind kind, const char *name,
                        const char *description, const char *specified_by)
{
        json_t *o = json_object();

        set(b, o, "kind", json_string(mls__gql_kind_names[kind]));
        set(b, o, "name", str_or_null(name));
        set(b, o, "description", str_or_null(description));
        set(b, o, "specifiedByURL", str_or_null(specified_by));
        set(b, o, "specifiedByUrl", str_or_null(specified_by));
        set(b, o, "fields", json_null());
        set(b, o, "interfaces", json_null());
        set(b, o, "possibleTypes", json_null());
        set(b, o, "enumValues", json_null());
        set(b, o, "inputFields", json_null());
        set(b, o, "ofType", json_null());
        set(b, o, "isOneOf", json_null());
        return o;
}

static json_t *type_ref(struct ib *b, const struct mls__gql_type *t)
{
        json_t *o;

        if (t->kind != MLS__GQL_LIST && t->kind != MLS__GQL_NON_NULL)
                return json_incref(t->intro);
        o = skeleton(b, t->kind, NULL, NULL, NULL);
        set(b, o, "ofType", type_ref(b, t->of));
        return o;
}

static void deprecation(struct ib *b, json_t *o, const char *reason)
{
        set(b, o, "isDeprecated", json_boolean(reason != NULL));
        set(b, o, "deprecationReason", str_or_null(reason));
}

static json_t *input_values(struct ib *b, const struct mls__gql_input_value *v,
                            unsigned n)
{
        json_t *arr = json_array();

        for (unsigned i = 0; i < n; i++) {
                json_t *o = json_object();
                set(b, o, "name", json_string(v[i].name));
                set(b, o, "description", str_or_null(v[i].description));
                set(b, o, "type", type_ref(b, v[i].type));
                set(b, o, "defaultValue", str_or_null(v[i].default_literal));
                deprecation(b, o, v[i].deprecation);
                push(b, arr, o);
        }
        return arr;
}

static void fill_type(struct ib *b, const struct mls__gql_type *t)
{
        json_t *o = t->intro, *arr;

        switch (t->kind) {
        case MLS__GQL_OBJECT:
                arr = json_array();
                for (unsigned i = 0; i < t->nfields; i++) {
                        const struct mls__gql_field *f = &t->fields[i];
                        json_t *fo = json_object();
                        set(b, fo, "name", json_string(f->name));
                        set(b, fo, "description", str_or_null(f->description));
                        set(b, fo, "args", input_values(b, f->args, f->nargs));
                        set(b, fo, "type", type_ref(b, f->type));
                        deprecation(b, fo, f->deprecation);
                        push(b, arr, fo);
                }
                set(b, o, "fields", arr);
                set(b, o, "interfaces", json_array());
                break;
        case MLS__GQL_ENUM:
                arr = json_array();
                for (unsigned i = 0; i < t->nenum_values; i++) {
                        const struct mls__gql_enum_value *v =
                                &t->enum_values[i];
                        json_t *vo = json_object();
                        set(b, vo, "name", json_string(v->name));
                        set(b, vo, "description", str_or_null(v->description));
                        deprecation(b, vo, v->deprecation);
                        push(b, arr, vo);
                }
                set(b, o, "enumValues", arr);
                break;
        case MLS__GQL_INPUT_OBJECT:
                set(b, o, "inputFields",
                    input_values(b, t->input_fields, t->ninput_fields));
                set(b, o, "isOneOf", json_false());
                break;
        default:
                break;
        }
}

int mls__gql_intro_build(struct mls_gql_schema *s)
{
        struct ib b = {false};
        json_t *types, *dirs;

        for (unsigned i = 0; i < s->ntypes; i++) {
                struct mls__gql_type *t = s->types[i];
                t->intro = skeleton(&b, t->kind, t->name, t->description,
                                    t->specified_by);
                if (!t->intro)
                        return -1;
        }
        for (unsigned i = 0; i < s->ntypes && !b.failed; i++)
                fill_type(&b, s->types[i]);
        s->intro = json_object();
        types = json_array();
        for (unsigned i = 0; i < s->ntypes; i++)
                push(&b, types, json_incref(s->types[i]->intro));
        dirs = json_array();
        for (unsigned i = 0; i < s->ndirectives; i++) {
                const struct mls__gql_directive_def *d = &s->directives[i];
                json_t *o = json_object(), *locs = json_array();
                set(&b, o, "name", json_string(d->name));
                set(&b, o, "description", str_or_null(d->description));
                set(&b, o, "isRepeatable", json_boolean(d->repeatable));
                for (int l = 0; l < MLS__GQL_DL_COUNT; l++)
                        if (d->locations & (1u << l))
                                push(&b, locs,
                                     json_string(mls__gql_dir_loc_names[l]));
                set(&b, o, "locations", locs);
                set(&b, o, "args", input_values(&b, d->args, d->nargs));
                /* no directive is deprecated; the fields exist for
                 * getIntrospectionQuery({experimentalDirectiveDeprecation}) */
                set(&b, o, "isDeprecated", json_false());
                set(&b, o, "deprecationReason", json_null());
                push(&b, dirs, o);
        }
        set(&b, s->intro, "description", str_or_null(s->description));
        set(&b, s->intro, "types", types);
        set(&b, s->intro, "queryType", json_incref(s->query->intro));
        set(&b, s->intro, "mutationType",
            s->mutation ? json_incref(s->mutation->intro) : json_null());
        set(&b, s->intro, "subscriptionType",
            s->subscription ? json_incref(s->subscription->intro)
                            : json_null());
        set(&b, s->intro, "directives", dirs);
        return b.failed ? -1 : 0;
}

void mls__gql_intro_free(struct mls_gql_schema *s)
{
        for (unsigned i = 0; i < s->ntypes; i++)
                if (s->types[i]->intro)
                        json_object_clear(s->types[i]->intro);
        json_decref(s->intro);
        s->intro = NULL;
        for (unsigned i = 0; i < s->ntypes; i++) {
                json_decref(s->types[i]->intro);
                s->types[i]->intro = NULL;
        }
}
