/*
 * Input coercion (spec section 5.6 and 6.1.2, 6.4.1): literals to JSON
 * values, variables from the request to their declared types, and field
 * arguments. Messages follow graphql-js 16.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

static const struct mls__gql_objfield *
find_objfield(const struct mls__gql_value *v, const char *name)
{
        for (const struct mls__gql_objfield *f = v->fields; f; f = f->next)
                if (strcmp(f->name, name) == 0)
                        return f;
        return NULL;
}

/* Parses an Int literal; false when it is not a 32-bit integer. */
static bool int32_literal(const char *s, json_int_t *out)
{
        long long v;
        char *end;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end || v < INT32_MIN || v > INT32_MAX)
                return false;
        *out = v;
        return true;
}

/* Converts any literal to JSON for the JSON scalar. Variables that vars
 * lacks become null. */
static json_t *literal_to_json(const struct mls__gql_value *v,
                               const json_t *vars)
{
        json_t *out, *item;
        long long ll;
        char *end;

        switch (v->kind) {
        case MLS__GQL_V_VARIABLE:
                item = vars ? json_object_get(vars, v->str) : NULL;
                return item ? json_incref(item) : json_null();
        case MLS__GQL_V_INT:
                errno = 0;
                ll = strtoll(v->str, &end, 10);
                if (!errno && !*end)
                        return json_integer(ll);
                return json_real(strtod(v->str, NULL));
        case MLS__GQL_V_FLOAT: {
                double d = strtod(v->str, NULL);
                return isfinite(d) ? json_real(d) : NULL;
        }
        case MLS__GQL_V_STRING:
                return json_stringn(v->str, v->len);
        case MLS__GQL_V_ENUM:
                return json_string(v->str);
        case MLS__GQL_V_BOOLEAN:
                return json_boolean(v->boolean);
        case MLS__GQL_V_NULL:
                return json_null();
        case MLS__GQL_V_LIST:
                out = json_array();
                for (const struct mls__gql_value *it = v->items; it && out;
                     it = it->next) {
                        item = literal_to_json(it, vars);
                        if (!item || json_array_append_new(out, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                }
                return out;
        case MLS__GQL_V_OBJECT:
                out = json_object();
                for (const struct mls__gql_objfield *f = v->fields; f && out;
                     f = f->next) {
                        item = literal_to_json(f->value, vars);
                        if (!item ||
                            json_object_set_new(out, f->name, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                }
                return out;
        }
        return NULL;
}

static const char *const scalar_names[] = {
        [MLS__GQL_SC_INT] = "Int",
        [MLS__GQL_SC_FLOAT] = "Float",
        [MLS__GQL_SC_STRING] = "String",
        [MLS__GQL_SC_BOOLEAN] = "Boolean",
        [MLS__GQL_SC_ID] = "ID",
        [MLS__GQL_SC_JSON] = "JSON",
        [MLS__GQL_SC_DATETIME] = "DateTime",
};

int mls__gql_leaf_literal(const struct mls__gql_type *t,
                          const struct mls__gql_value *v, const json_t *vars,
                          json_t **out, struct mls_buf *msg)
{
        json_t *r = NULL;
        json_int_t i;

        if (t->kind == MLS__GQL_ENUM) {
                if (v->kind != MLS__GQL_V_ENUM) {
                        mls_buf_printf(msg,
                                       "Enum \"%s\" cannot represent non-enum "
                                       "value: ",
                                       t->name);
                        size_t at = msg->len;
                        mls__gql_print_value(msg, v, false);
                        {
                                /* graphql-js suggests from the printed
                                 * value, quotes and all */
                                char *printed =
                                        strndup(msg->data + at, msg->len - at);
                                mls_buf_putc(msg, '.');
                                if (printed)
                                        mls__gql_did_you_mean_enum(msg, printed,
                                                                   t);
                                free(printed);
                        }
                        return -1;
                }
                for (unsigned k = 0; k < t->nenum_values; k++) {
                        if (strcmp(t->enum_values[k].name, v->str) == 0) {
                                if (out && !(*out = json_string(v->str)))
                                        return -1;
                                return 0;
                        }
                }
                mls_buf_printf(msg,
                               "Value \"%s\" does not exist in \"%s\" "
                               "enum.",
                               v->str, t->name);
                mls__gql_did_you_mean_enum(msg, v->str, t);
                return -1;
        }
        switch (t->scalar) {
        case MLS__GQL_SC_INT:
                if (v->kind != MLS__GQL_V_INT) {
                        mls_buf_puts(msg, "Int cannot represent non-integer "
                                          "value: ");
                        mls__gql_print_value(msg, v, false);
                        return -1;
                }
                if (!int32_literal(v->str, &i)) {
                        mls_buf_printf(msg,
                                       "Int cannot represent non 32-bit "
                                       "signed integer value: %s",
                                       v->str);
                        return -1;
                }
                if (out)
                        r = json_integer(i);
                break;
        case MLS__GQL_SC_FLOAT:
                if ((v->kind != MLS__GQL_V_INT &&
                     v->kind != MLS__GQL_V_FLOAT) ||
                    !isfinite(strtod(v->str, NULL))) {
                        mls_buf_puts(msg, "Float cannot represent non numeric "
                                          "value: ");
                        mls__gql_print_value(msg, v, false);
                        return -1;
                }
                if (out)
                        r = json_real(strtod(v->str, NULL));
                break;
        case MLS__GQL_SC_STRING:
        case MLS__GQL_SC_DATETIME:
                if (v->kind != MLS__GQL_V_STRING) {
                        mls_buf_printf(msg,
                                       "%s cannot represent a non string "
                                       "value: ",
                                       scalar_names[t->scalar]);
                        mls__gql_print_value(msg, v, false);
                        return -1;
                }
                if (t->scalar == MLS__GQL_SC_DATETIME &&
                    !mls__gql_is_datetime(v->str, v->len)) {
                        mls_buf_puts(msg, "DateTime cannot represent an "
                                          "invalid date-time string: ");
                        mls__gql_print_value(msg, v, false);
                        mls_buf_putc(msg, '.');
                        return -1;
                }
                if (out)
                        r = json_stringn(v->str, v->len);
                break;
        case MLS__GQL_SC_BOOLEAN:
                if (v->kind != MLS__GQL_V_BOOLEAN) {
                        mls_buf_puts(msg, "Boolean cannot represent a non "
                                          "boolean value: ");
                        mls__gql_print_value(msg, v, false);
                        return -1;
                }
                if (out)
                        r = json_boolean(v->boolean);
                break;
        case MLS__GQL_SC_ID:
                if (v->kind != MLS__GQL_V_STRING && v->kind != MLS__GQL_V_INT) {
                        mls_buf_puts(msg, "ID cannot represent a non-string "
                                          "and non-integer value: ");
                        mls__gql_print_value(msg, v, false);
                        return -1;
                }
                if (out)
                        r = json_stringn(v->str, v->len);
                break;
        case MLS__GQL_SC_JSON:
        default:
                if (v->kind == MLS__GQL_V_FLOAT &&
                    !isfinite(strtod(v->str, NULL))) {
                        mls_buf_puts(msg, "JSON cannot represent non-finite "
                                          "number: ");
                        mls_buf_puts(msg, v->str);
                        return -1;
                }
                if (out)
                        r = literal_to_json(v, vars);
                break;
        }
        if (out) {
                if (!r)
                        return -1;
                *out = r;
        }
        return 0;
}

json_t *mls__gql_value_from_ast(const struct mls__gql_value *v,
                                const struct mls__gql_type *t,
                                const json_t *vars, bool *absent)
{
        struct mls_buf scratch;
        json_t *out, *item;
        bool item_absent;

        *absent = false;
        if (v->kind == MLS__GQL_V_VARIABLE) {
                item = vars ? json_object_get(vars, v->str) : NULL;
                if (!item) {
                        *absent = true;
                        return NULL;
                }
                if (json_is_null(item) && t->kind == MLS__GQL_NON_NULL)
                        return NULL;
                return json_incref(item);
        }
        if (t->kind == MLS__GQL_NON_NULL) {
                if (v->kind == MLS__GQL_V_NULL)
                        return NULL;
                return mls__gql_value_from_ast(v, t->of, vars, absent);
        }
        if (v->kind == MLS__GQL_V_NULL)
                return json_null();
        if (t->kind == MLS__GQL_LIST) {
                if (v->kind != MLS__GQL_V_LIST) {
                        item = mls__gql_value_from_ast(v, t->of, vars,
                                                       &item_absent);
                        if (!item)
                                return NULL;
                        out = json_array();
                        if (json_array_append_new(out, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                        return out;
                }
                out = json_array();
                for (const struct mls__gql_value *it = v->items; it && out;
                     it = it->next) {
                        item = mls__gql_value_from_ast(it, t->of, vars,
                                                       &item_absent);
                        if (!item && item_absent &&
                            t->of->kind != MLS__GQL_NON_NULL)
                                item = json_null();
                        if (!item || json_array_append_new(out, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                }
                return out;
        }
        if (t->kind == MLS__GQL_INPUT_OBJECT) {
                if (v->kind != MLS__GQL_V_OBJECT)
                        return NULL;
                out = json_object();
                for (unsigned k = 0; k < t->ninput_fields && out; k++) {
                        const struct mls__gql_input_value *d =
                                &t->input_fields[k];
                        const struct mls__gql_objfield *f =
                                find_objfield(v, d->name);
                        item = NULL;
                        item_absent = !f;
                        if (f)
                                item = mls__gql_value_from_ast(
                                        f->value, d->type, vars, &item_absent);
                        if (!item && item_absent) {
                                if (d->default_json)
                                        item = json_incref(d->default_json);
                                else if (d->type->kind != MLS__GQL_NON_NULL)
                                        continue;
                        }
                        if (!item ||
                            json_object_set_new(out, d->name, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                }
                return out;
        }
        mls_buf_init(&scratch, MLS__GQL_BUF_LIMIT);
        out = NULL;
        if (mls__gql_leaf_literal(t, v, vars, &out, &scratch) < 0)
                out = NULL;
        mls_buf_free(&scratch);
        return out;
}

/* --- variables from JSON
 * ----------------------------------------------------------- */

static json_t *fail(struct mls_buf *msg, const json_t **bad, const json_t *v)
{
        (void)msg;
        *bad = v;
        return NULL;
}

static json_t *coerce_scalar(const json_t *v, const struct mls__gql_type *t,
                             struct mls_buf *msg, const json_t **bad)
{
        double d;

        switch (t->scalar) {
        case MLS__GQL_SC_INT:
                if (json_is_integer(v)) {
                        json_int_t i = json_integer_value(v);
                        if (i >= INT32_MIN && i <= INT32_MAX)
                                return json_incref((json_t *)v);
                        goto int_range;
                }
                if (json_is_real(v)) {
                        d = json_real_value(v);
                        if (d != floor(d))
                                goto int_type;
                        if (d >= INT32_MIN && d <= INT32_MAX)
                                return json_integer((json_int_t)d);
                        goto int_range;
                }
        int_type:
                mls_buf_puts(msg, "Int cannot represent non-integer value: ");
                mls__gql_inspect(msg, v);
                return fail(msg, bad, v);
        int_range:
                mls_buf_puts(msg, "Int cannot represent non 32-bit signed "
                                  "integer value: ");
                mls__gql_inspect(msg, v);
                return fail(msg, bad, v);
        case MLS__GQL_SC_FLOAT:
                if (json_is_number(v))
                        return json_real(json_number_value(v));
                mls_buf_puts(msg, "Float cannot represent non numeric value: ");
                mls__gql_inspect(msg, v);
                return fail(msg, bad, v);
        case MLS__GQL_SC_STRING:
        case MLS__GQL_SC_DATETIME:
                if (!json_is_string(v)) {
                        mls_buf_printf(msg,
                                       "%s cannot represent a non string "
                                       "value: ",
                                       scalar_names[t->scalar]);
                        mls__gql_inspect(msg, v);
                        return fail(msg, bad, v);
                }
                if (t->scalar == MLS__GQL_SC_DATETIME &&
                    !mls__gql_is_datetime(json_string_value(v),
                                          json_string_length(v))) {
                        mls_buf_puts(msg, "DateTime cannot represent an "
                                          "invalid date-time string: ");
                        mls__gql_inspect(msg, v);
                        mls_buf_putc(msg, '.');
                        return fail(msg, bad, v);
                }
                return json_incref((json_t *)v);
        case MLS__GQL_SC_BOOLEAN:
                if (json_is_boolean(v))
                        return json_incref((json_t *)v);
                mls_buf_puts(msg, "Boolean cannot represent a non boolean "
                                  "value: ");
                mls__gql_inspect(msg, v);
                return fail(msg, bad, v);
        case MLS__GQL_SC_ID:
                if (json_is_string(v))
                        return json_incref((json_t *)v);
                if (json_is_integer(v)) {
                        char tmp[32];
                        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT,
                                 json_integer_value(v));
                        return json_string(tmp);
                }
                d = json_real_value(v);
                if (json_is_real(v) && d == floor(d) && fabs(d) < 9e15) {
                        /* 1.0 from a JSON parser is the integer 1 */
                        char tmp[32];
                        snprintf(tmp, sizeof(tmp), "%.0f", d);
                        return json_string(tmp);
                }
                mls_buf_puts(msg, "ID cannot represent value: ");
                mls__gql_inspect(msg, v);
                return fail(msg, bad, v);
        case MLS__GQL_SC_JSON:
        default:
                return json_incref((json_t *)v);
        }
}

static json_t *coerce_in(const json_t *v, const struct mls__gql_type *t,
                         struct mls_buf *msg, struct mls_buf *path,
                         const json_t **bad)
{
        json_t *out, *item;
        const char *key;
        json_t *val;
        size_t mark;

        if (t->kind == MLS__GQL_NON_NULL) {
                if (json_is_null(v)) {
                        mls_buf_puts(msg, "Expected non-nullable type \"");
                        mls__gql_print_type(msg, t);
                        mls_buf_puts(msg, "\" not to be null.");
                        return fail(msg, bad, v);
                }
                return coerce_in(v, t->of, msg, path, bad);
        }
        if (json_is_null(v))
                return json_null();
        switch (t->kind) {
        case MLS__GQL_LIST:
                if (!json_is_array(v)) {
                        item = coerce_in(v, t->of, msg, path, bad);
                        if (!item)
                                return NULL;
                        out = json_array();
                        if (json_array_append_new(out, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                        return out;
                }
                out = json_array();
                for (size_t i = 0; i < json_array_size(v) && out; i++) {
                        mark = path->len;
                        mls_buf_printf(path, "[%zu]", i);
                        item = coerce_in(json_array_get(v, i), t->of, msg, path,
                                         bad);
                        if (!item || json_array_append_new(out, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                        path->len = mark;
                }
                return out;
        case MLS__GQL_INPUT_OBJECT:
                if (!json_is_object(v)) {
                        mls_buf_printf(msg,
                                       "Expected type \"%s\" to be an object.",
                                       t->name);
                        return fail(msg, bad, v);
                }
                out = json_object();
                for (unsigned k = 0; k < t->ninput_fields && out; k++) {
                        const struct mls__gql_input_value *d =
                                &t->input_fields[k];
                        json_t *fv = json_object_get(v, d->name);
                        if (!fv) {
                                if (d->default_json) {
                                        json_object_set(out, d->name,
                                                        d->default_json);
                                } else if (d->type->kind == MLS__GQL_NON_NULL) {
                                        mls_buf_printf(msg,
                                                       "Field \"%s\" of "
                                                       "required type \"",
                                                       d->name);
                                        mls__gql_print_type(msg, d->type);
                                        mls_buf_puts(msg,
                                                     "\" was not provided.");
                                        json_decref(out);
                                        return fail(msg, bad, v);
                                }
                                continue;
                        }
                        mark = path->len;
                        mls_buf_printf(path, ".%s", d->name);
                        item = coerce_in(fv, d->type, msg, path, bad);
                        if (!item ||
                            json_object_set_new(out, d->name, item) < 0) {
                                json_decref(out);
                                return NULL;
                        }
                        path->len = mark;
                }
                json_object_foreach((json_t *)v, key, val)
                {
                        bool known = false;
                        for (unsigned k = 0; k < t->ninput_fields; k++)
                                if (strcmp(t->input_fields[k].name, key) == 0)
                                        known = true;
                        if (!known) {
                                const char *names[64];
                                unsigned n = t->ninput_fields < 64
                                                     ? t->ninput_fields
                                                     : 64;
                                for (unsigned k = 0; k < n; k++)
                                        names[k] = t->input_fields[k].name;
                                mls_buf_printf(msg,
                                               "Field \"%s\" is not defined "
                                               "by type \"%s\".",
                                               key, t->name);
                                mls__gql_did_you_mean(msg, NULL, key, names, n);
                                json_decref(out);
                                return fail(msg, bad, v);
                        }
                }
                return out;
        case MLS__GQL_ENUM:
                if (!json_is_string(v)) {
                        mls_buf_printf(msg,
                                       "Enum \"%s\" cannot represent "
                                       "non-string value: ",
                                       t->name);
                        size_t at = msg->len;
                        char *shown;
                        mls__gql_inspect(msg, v);
                        shown = strndup(msg->data + at, msg->len - at);
                        mls_buf_putc(msg, '.');
                        if (shown)
                                mls__gql_did_you_mean_enum(msg, shown, t);
                        free(shown);
                        return fail(msg, bad, v);
                }
                for (unsigned k = 0; k < t->nenum_values; k++)
                        if (strcmp(t->enum_values[k].name,
                                   json_string_value(v)) == 0)
                                return json_incref((json_t *)v);
                mls_buf_printf(msg,
                               "Value \"%s\" does not exist in \"%s\" enum.",
                               json_string_value(v), t->name);
                mls__gql_did_you_mean_enum(msg, json_string_value(v), t);
                return fail(msg, bad, v);
        default:
                return coerce_scalar(v, t, msg, bad);
        }
}

json_t *mls__gql_coerce_input(const json_t *value,
                              const struct mls__gql_type *t, struct mls_buf *b,
                              struct mls_buf *path_b, const json_t **bad)
{
        *bad = NULL;
        return coerce_in(value, t, b, path_b, bad);
}

json_t *mls__gql_coerce_variables(const struct mls_gql_schema *s,
                                  const struct mls__gql_definition *op,
                                  const json_t *inputs, json_t **errors)
{
        struct mls__gql_arena arena;
        json_t *out = json_object();
        bool failed = false;

        mls__gql_arena_init(&arena);
        if (inputs && !json_is_object(inputs)) {
                mls__gql_errors_push(
                        errors,
                        mls__gql_error("Variables must be provided as an "
                                       "Object where each property is a "
                                       "variable value.",
                                       NULL, 0, NULL));
                failed = true;
                goto out;
        }
        for (const struct mls__gql_vardef *vd = op->vardefs; vd && out;
             vd = vd->next) {
                struct mls__gql_type *t =
                        mls__gql_schema_typeref(s, &arena, vd->type);
                json_t *in = inputs ? json_object_get(inputs, vd->name) : NULL;
                struct mls_buf msg, path;
                json_t *v;
                const json_t *bad;
                bool absent;

                if (!t)
                        continue; /* validation rejects this */
                mls_buf_init(&msg, MLS__GQL_BUF_LIMIT);
                mls_buf_init(&path, MLS__GQL_BUF_LIMIT);
                if (!in) {
                        if (vd->default_value) {
                                v = mls__gql_value_from_ast(vd->default_value,
                                                            t, NULL, &absent);
                                if (v)
                                        json_object_set_new(out, vd->name, v);
                        } else if (t->kind == MLS__GQL_NON_NULL) {
                                mls_buf_printf(&msg,
                                               "Variable \"$%s\" of required "
                                               "type \"",
                                               vd->name);
                                mls__gql_print_type(&msg, t);
                                mls_buf_puts(&msg, "\" was not provided.");
                                goto report;
                        }
                        goto next;
                }
                if (json_is_null(in) && t->kind == MLS__GQL_NON_NULL) {
                        mls_buf_printf(&msg,
                                       "Variable \"$%s\" of non-null type \"",
                                       vd->name);
                        mls__gql_print_type(&msg, t);
                        mls_buf_puts(&msg, "\" must not be null.");
                        goto report;
                }
                v = mls__gql_coerce_input(in, t, &msg, &path, &bad);
                if (v) {
                        json_object_set_new(out, vd->name, v);
                        goto next;
                } else {
                        struct mls_buf full;
                        mls_buf_init(&full, MLS__GQL_BUF_LIMIT);
                        mls_buf_printf(&full,
                                       "Variable \"$%s\" got invalid value ",
                                       vd->name);
                        mls__gql_inspect(&full, bad);
                        if (path.len)
                                mls_buf_printf(&full, " at \"%s%.*s\"",
                                               vd->name, (int)path.len,
                                               path.data);
                        mls_buf_printf(&full, "; %s", mls_buf_cstr(&msg));
                        mls__gql_errors_push(errors,
                                             mls__gql_error(mls_buf_cstr(&full),
                                                            &vd->loc, 1, NULL));
                        mls_buf_free(&full);
                        failed = true;
                        goto next;
                }
        report:
                mls__gql_errors_push(errors, mls__gql_error(mls_buf_cstr(&msg),
                                                            &vd->loc, 1, NULL));
                failed = true;
        next:
                mls_buf_free(&msg);
                mls_buf_free(&path);
        }
out:
        mls__gql_arena_free(&arena);
        if (failed || !out) {
                json_decref(out);
                return NULL;
        }
        return out;
}

/* --- arguments
 * ---------------------------------------------------------------------- */

json_t *mls__gql_coerce_args(const struct mls__gql_input_value *defs,
                             unsigned n, const struct mls__gql_arg *args,
                             const json_t *vars, struct mls_buf *b,
                             struct mls__gql_loc *loc)
{
        json_t *out = json_object();

        for (unsigned i = 0; i < n && out; i++) {
                const struct mls__gql_input_value *d = &defs[i];
                const struct mls__gql_arg *a = args;
                json_t *v;
                bool absent;

                while (a && strcmp(a->name, d->name) != 0)
                        a = a->next;
                if (!a) {
                        if (d->default_json) {
                                json_object_set(out, d->name, d->default_json);
                        } else if (d->type->kind == MLS__GQL_NON_NULL) {
                                mls_buf_printf(b,
                                               "Argument \"%s\" of required "
                                               "type \"",
                                               d->name);
                                mls__gql_print_type(b, d->type);
                                mls_buf_puts(b, "\" was not provided.");
                                loc->line = 0;
                                goto fail;
                        }
                        continue;
                }
                if (a->value->kind == MLS__GQL_V_VARIABLE) {
                        v = vars ? json_object_get(vars, a->value->str) : NULL;
                        if (!v) {
                                if (d->default_json) {
                                        json_object_set(out, d->name,
                                                        d->default_json);
                                } else if (d->type->kind == MLS__GQL_NON_NULL) {
                                        mls_buf_printf(b,
                                                       "Argument \"%s\" of "
                                                       "required type \"",
                                                       d->name);
                                        mls__gql_print_type(b, d->type);
                                        mls_buf_printf(
                                                b,
                                                "\" was provided the "
                                                "variable \"$%s\" which was "
                                                "not provided a runtime "
                                                "value.",
                                                a->value->str);
                                        *loc = a->value->loc;
                                        goto fail;
                                }
                                continue;
                        }
                        if (json_is_null(v) &&
                            d->type->kind == MLS__GQL_NON_NULL) {
                                mls_buf_printf(b,
                                               "Argument \"%s\" of non-null "
                                               "type \"",
                                               d->name);
                                mls__gql_print_type(b, d->type);
                                mls_buf_puts(b, "\" must not be null.");
                                *loc = a->value->loc;
                                goto fail;
                        }
                }
                v = mls__gql_value_from_ast(a->value, d->type, vars, &absent);
                if (!v) {
                        mls_buf_printf(b, "Argument \"%s\" has invalid value ",
                                       d->name);
                        mls__gql_print_value(b, a->value, false);
                        mls_buf_putc(b, '.');
                        *loc = a->value->loc;
                        goto fail;
                }
                if (json_object_set_new(out, d->name, v) < 0)
                        goto fail;
        }
        return out;
fail:
        json_decref(out);
        return NULL;
}
