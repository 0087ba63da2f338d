/*
 * Execution (spec section 6). An operation is first compiled into a plan:
 * fields collected and merged per response key (fragments, @skip/@include
 * applied with the request's variables), arguments coerced, one sub-plan
 * per composite field. The plan then runs against JSON values, either
 * building a jansson response or writing compact JSON straight into an
 * mls_buf. Subscriptions compile once in mls_gql_sub_prepare() and run the
 * plan per event, which is the hot path of the gateway.
 *
 * Values: root query fields come from the gateway's callbacks, every other
 * field is its parent object's member of the same name (introspection is
 * data built by introspection.c). Non-null errors propagate to the nearest
 * nullable parent; errors carry path and locations as in graphql-js.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

struct plan;

struct pfield {
        const char *key;
        const struct mls__gql_field *def;
        const struct mls__gql_type *parent;
        const struct mls__gql_selection **nodes;
        unsigned nnodes;
        json_t *args;          /* coerced arguments, NULL without */
        const char *arg_error; /* why arguments could not be coerced */
        struct mls__gql_loc arg_error_loc;
        struct plan *sub; /* composite types */
};

struct plan {
        const struct mls__gql_type *type;
        struct pfield *f;
        unsigned n;
};

/* Everything a compiled operation owns. */
struct compiled {
        struct mls__gql_arena arena;
        json_t **owned; /* argument objects to release */
        size_t nowned, capowned;
        struct plan *root;
};

struct compiler {
        const struct mls_gql_doc *doc;
        struct compiled *out;
        const json_t *vars;
        unsigned nfields;
        unsigned *visit;
        unsigned visit_gen;
        bool too_big;
        bool oom;
};

/* --- compiling ---------------------------------------------------------------
 */

static bool truthy_if(const struct mls__gql_directive *d, const json_t *vars,
                      bool *value)
{
        for (const struct mls__gql_arg *a = d->args; a; a = a->next) {
                if (strcmp(a->name, "if") != 0)
                        continue;
                if (a->value->kind == MLS__GQL_V_BOOLEAN) {
                        *value = a->value->boolean;
                        return true;
                }
                if (a->value->kind == MLS__GQL_V_VARIABLE) {
                        json_t *v = vars ? json_object_get(vars, a->value->str)
                                         : NULL;
                        if (json_is_boolean(v)) {
                                *value = json_is_true(v);
                                return true;
                        }
                }
        }
        return false;
}

static bool skipped(const struct mls__gql_directive *dirs, const json_t *vars)
{
        bool v;

        for (const struct mls__gql_directive *d = dirs; d; d = d->next) {
                if (strcmp(d->name, "skip") == 0 && truthy_if(d, vars, &v) && v)
                        return true;
                if (strcmp(d->name, "include") == 0 && truthy_if(d, vars, &v) &&
                    !v)
                        return true;
        }
        return false;
}

struct group {
        const char *key;
        const struct mls__gql_selection **nodes;
        unsigned n, cap;
};

struct groups {
        struct group *g;
        unsigned n, cap;
        struct mls__gql_map map;
};

static int group_add(struct groups *gs, const struct mls__gql_selection *s)
{
        const char *key = s->alias ? s->alias : s->name;
        unsigned *i = mls__gql_map_get(&gs->map, key);
        struct group *g;

        if (!i) {
                if (gs->n == gs->cap) {
                        unsigned ncap = gs->cap ? gs->cap * 2 : 8;
                        struct group *ng = realloc(gs->g, ncap * sizeof(*ng));
                        if (!ng)
                                return -1;
                        gs->g = ng;
                        gs->cap = ncap;
                }
                if (mls__gql_map_put(&gs->map, key, gs->n) < 0)
                        return -1;
                g = &gs->g[gs->n++];
                memset(g, 0, sizeof(*g));
                g->key = key;
        } else {
                g = &gs->g[*i];
        }
        if (g->n == g->cap) {
                unsigned ncap = g->cap ? g->cap * 2 : 2;
                const struct mls__gql_selection **nn =
                        realloc(g->nodes, ncap * sizeof(*nn));
                if (!nn)
                        return -1;
                g->nodes = nn;
                g->cap = ncap;
        }
        g->nodes[g->n++] = s;
        return 0;
}

static bool applies(const struct mls_gql_schema *s, const char *cond,
                    const struct mls__gql_type *t)
{
        return !cond || mls__gql_schema_type(s, cond) == t;
}

/* CollectFields over several selection sets (the fields merged under one
 * response key), with an explicit stack instead of recursion per fragment.
 * Each fragment is expanded once per collection. */
static int collect(struct compiler *cc, const struct mls__gql_type *t,
                   const struct mls__gql_selset **sets, unsigned nsets,
                   struct groups *gs)
{
        const struct mls__gql_selection **stack;
        size_t n = 0, cap = 16;
        const struct mls_gql_schema *s = cc->doc->schema;
        int rc = 0;

        cc->visit_gen++;
        stack = malloc(cap * sizeof(*stack));
        if (!stack)
                return -1;
        for (unsigned i = 0; i < nsets && rc == 0; i++) {
                stack[n++] = sets[i]->first;
                while (n > 0 && rc == 0) {
                        const struct mls__gql_selection *sel = stack[n - 1];
                        const struct mls__gql_selection *push = NULL;
                        unsigned *fi;
                        if (!sel) {
                                n--;
                                continue;
                        }
                        stack[n - 1] = sel->next;
                        if (skipped(sel->directives, cc->vars))
                                continue;
                        switch (sel->kind) {
                        case MLS__GQL_S_FIELD:
                                rc = group_add(gs, sel);
                                break;
                        case MLS__GQL_S_SPREAD:
                                fi = mls__gql_map_get(&cc->doc->fragmap,
                                                      sel->name);
                                if (!fi || cc->visit[*fi] == cc->visit_gen)
                                        break;
                                cc->visit[*fi] = cc->visit_gen;
                                if (applies(s, cc->doc->frags[*fi]->type_cond,
                                            t))
                                        push = cc->doc->frags[*fi]->set->first;
                                break;
                        case MLS__GQL_S_INLINE:
                                if (applies(s, sel->type_cond, t))
                                        push = sel->set->first;
                                break;
                        }
                        if (!push)
                                continue;
                        if (n == cap) {
                                const struct mls__gql_selection **ns =
                                        realloc(stack, 2 * cap * sizeof(*ns));
                                if (!ns) {
                                        rc = -1;
                                        break;
                                }
                                stack = ns;
                                cap *= 2;
                        }
                        stack[n++] = push;
                }
        }
        free(stack);
        return rc;
}

static void *calloc_arena(struct compiler *cc, size_t n)
{
        void *p = mls__gql_arena_alloc(&cc->out->arena, n);

        if (!p)
                cc->oom = true;
        return p;
}

static void own(struct compiler *cc, json_t *v)
{
        struct compiled *o = cc->out;

        if (o->nowned == o->capowned) {
                size_t ncap = o->capowned ? o->capowned * 2 : 8;
                json_t **nv = realloc(o->owned, ncap * sizeof(*nv));
                if (!nv) {
                        json_decref(v);
                        cc->oom = true;
                        return;
                }
                o->owned = nv;
                o->capowned = ncap;
        }
        o->owned[o->nowned++] = v;
}

static struct plan *compile(struct compiler *cc, const struct mls__gql_type *t,
                            const struct mls__gql_selset **sets, unsigned nsets)
{
        const struct mls_gql_schema *s = cc->doc->schema;
        struct mls__gql_arena tmp;
        struct groups gs;
        struct plan *p;

        p = calloc_arena(cc, sizeof(*p));
        if (!p)
                return NULL;
        p->type = t;
        memset(&gs, 0, sizeof(gs));
        mls__gql_arena_init(&tmp);
        mls__gql_map_init(&gs.map, &tmp);
        if (collect(cc, t, sets, nsets, &gs) < 0) {
                cc->oom = true;
                goto out;
        }
        p->f = calloc_arena(cc, (gs.n ? gs.n : 1) * sizeof(*p->f));
        if (!p->f)
                goto out;
        for (unsigned i = 0; i < gs.n && !cc->oom && !cc->too_big; i++) {
                struct group *g = &gs.g[i];
                const struct mls__gql_selection *first = g->nodes[0];
                const struct mls__gql_field *def =
                        mls__gql_schema_field(s, t, first->name);
                struct pfield *f;
                const struct mls__gql_type *named;

                if (!def)
                        continue; /* validation rules this out */
                if (++cc->nfields > cc->doc->limits.max_plan_fields) {
                        cc->too_big = true;
                        break;
                }
                f = &p->f[p->n++];
                f->key = g->key;
                f->def = def;
                f->parent = t;
                f->nnodes = g->n;
                f->nodes = calloc_arena(cc, g->n * sizeof(*f->nodes));
                if (!f->nodes)
                        break;
                memcpy(f->nodes, g->nodes, g->n * sizeof(*f->nodes));
                if (def->nargs) {
                        struct mls_buf msg;
                        mls_buf_init(&msg, MLS__GQL_BUF_LIMIT);
                        f->args = mls__gql_coerce_args(def->args, def->nargs,
                                                       first->args, cc->vars,
                                                       &msg, &f->arg_error_loc);
                        if (f->args) {
                                own(cc, f->args);
                        } else {
                                f->arg_error = mls__gql_arena_strndup(
                                        &cc->out->arena, mls_buf_cstr(&msg),
                                        msg.len);
                                if (!f->arg_error || msg.len == 0)
                                        cc->oom = true;
                        }
                        mls_buf_free(&msg);
                }
                named = mls__gql_named(def->type);
                if (mls__gql_is_composite(named)) {
                        const struct mls__gql_selset **subs;
                        unsigned ns = 0;
                        subs = calloc_arena(cc, g->n * sizeof(*subs));
                        if (!subs)
                                break;
                        for (unsigned k = 0; k < g->n; k++)
                                if (g->nodes[k]->set)
                                        subs[ns++] = g->nodes[k]->set;
                        f->sub = compile(cc, named, subs, ns);
                }
        }
out:
        for (unsigned i = 0; i < gs.n; i++)
                free(gs.g[i].nodes);
        free(gs.g);
        mls__gql_arena_free(&tmp);
        return p;
}

static void compiled_free(struct compiled *c)
{
        for (size_t i = 0; i < c->nowned; i++)
                json_decref(c->owned[i]);
        free(c->owned);
        mls__gql_arena_free(&c->arena);
}

/* Compiles op's selection set against its root type. Returns 0, or -1 with
 * a request error pushed to *errors. */
static int compile_op(const struct mls_gql_doc *doc,
                      const struct mls__gql_definition *op,
                      const struct mls__gql_type *root, const json_t *vars,
                      struct compiled *out, json_t **errors)
{
        struct compiler cc;
        const struct mls__gql_selset *set = op->set;
        char msg[160];

        memset(out, 0, sizeof(*out));
        mls__gql_arena_init(&out->arena);
        memset(&cc, 0, sizeof(cc));
        cc.doc = doc;
        cc.out = out;
        cc.vars = vars;
        cc.visit = calloc(doc->ast->nfrags + 1, sizeof(*cc.visit));
        if (!cc.visit)
                cc.oom = true;
        else
                out->root = compile(&cc, root, &set, 1);
        free(cc.visit);
        if (cc.too_big) {
                snprintf(msg, sizeof(msg),
                         "Operation selects more than %u fields once "
                         "fragments are expanded.",
                         doc->limits.max_plan_fields);
                mls__gql_errors_push(errors,
                                     mls__gql_error(msg, &op->loc, 1, NULL));
        } else if (cc.oom || !out->root) {
                mls__gql_errors_push(errors, mls__gql_error("Out of memory.",
                                                            NULL, 0, NULL));
        } else {
                return 0;
        }
        compiled_free(out);
        return -1;
}

/* --- running -----------------------------------------------------------------
 */

struct path {
        const struct path *prev;
        const char *key; /* NULL for list indexes */
        size_t index;
};

struct run {
        const struct mls_gql_schema *s;
        void *request_ctx;
        json_t *errors;
        unsigned long completions;
        unsigned long max_completions;
        bool budget_hit;
        struct mls_buf *out; /* render mode */
};

static json_t *path_json(const struct path *p)
{
        size_t n = 0;
        const struct path *q;
        json_t *arr = json_array();

        for (q = p; q; q = q->prev)
                n++;
        for (size_t i = 0; i < n && arr; i++)
                json_array_append_new(arr, json_null());
        for (q = p; q && arr; q = q->prev)
                json_array_set_new(arr, --n,
                                   q->key ? json_string(q->key)
                                          : json_integer((json_int_t)q->index));
        return arr;
}

static void field_error(struct run *r, const struct pfield *f,
                        const struct path *p, const char *msg)
{
        struct mls__gql_loc locs[8];
        unsigned n = f->nnodes < 8 ? f->nnodes : 8;

        for (unsigned i = 0; i < n; i++)
                locs[i] = f->nodes[i]->loc;
        mls__gql_errors_push(&r->errors,
                             mls__gql_error(msg, locs, n, path_json(p)));
}

static bool over_budget(struct run *r, const struct pfield *f,
                        const struct path *p)
{
        char msg[128];

        if (++r->completions <= r->max_completions)
                return false;
        if (!r->budget_hit) {
                r->budget_hit = true;
                snprintf(msg, sizeof(msg),
                         "Execution stopped after %lu values: the limit of "
                         "this server.",
                         r->max_completions);
                field_error(r, f, p, msg);
        }
        return true;
}

/* The field's value before completion: a new reference, or NULL after
 * reporting a field error. */
static json_t *resolve(struct run *r, const struct pfield *f, json_t *src,
                       const struct path *p)
{
        const struct mls__gql_field *d = f->def;
        char err[512];
        json_t *v, *out;

        if (f->arg_error) {
                struct mls__gql_loc loc = f->arg_error_loc.line
                                                  ? f->arg_error_loc
                                                  : f->nodes[0]->loc;
                mls__gql_errors_push(
                        &r->errors,
                        mls__gql_error(f->arg_error, &loc, 1, path_json(p)));
                return NULL;
        }
        if (d == &r->s->meta_typename)
                return json_string(f->parent->name);
        switch (d->resolve) {
        case MLS__GQL_R_ROOT:
                if (!d->fn) {
                        snprintf(err, sizeof(err),
                                 "No resolver is set for %s.%s.",
                                 f->parent->name, d->name);
                        field_error(r, f, p, err);
                        return NULL;
                }
                err[0] = '\0';
                v = d->fn(d->opaque, r->request_ctx, d->name, f->args, err,
                          sizeof(err));
                if (!v) {
                        field_error(r, f, p,
                                    err[0] ? err : "The resolver failed.");
                        return NULL;
                }
                return v;
        case MLS__GQL_R_SCHEMA:
                return json_incref(r->s->intro);
        case MLS__GQL_R_TYPE: {
                const char *name =
                        json_string_value(json_object_get(f->args, "name"));
                json_t *jn = json_object_get(f->args, "name");
                const struct mls__gql_type *t =
                        name && strlen(name) == json_string_length(jn)
                                ? mls__gql_schema_type(r->s, name)
                                : NULL;
                return t ? json_incref(t->intro) : json_null();
        }
        case MLS__GQL_R_DEPRECATED:
                v = json_is_object(src) ? json_object_get(src, d->name) : NULL;
                if (!json_is_array(v) ||
                    json_is_true(json_object_get(f->args, "includeDeprecated")))
                        return v ? json_incref(v) : json_null();
                out = json_array();
                for (size_t i = 0; i < json_array_size(v) && out; i++) {
                        json_t *item = json_array_get(v, i);
                        if (!json_is_true(
                                    json_object_get(item, "isDeprecated")))
                                json_array_append(out, item);
                }
                return out;
        case MLS__GQL_R_DEFAULT:
        default:
                v = json_is_object(src) ? json_object_get(src, d->name) : NULL;
                return v ? json_incref(v) : json_null();
        }
}

/* --- leaf values -------------------------------------------------------------
 */

enum leaf_kind {
        L_INT,
        L_REAL,
        L_STR,
        L_BOOL,
        L_JSON,
};

struct leaf {
        enum leaf_kind kind;
        json_int_t i;
        double d;
        const char *s;
        size_t len;
        bool b;
        const json_t *same; /* the source value, usable as it is */
        char tmp[40];
};

/* JavaScript's Number(string) for the strings a resolver might send. */
static bool numeric_string(const json_t *v, double *out)
{
        const char *s = json_string_value(v);
        char *end;

        if (!s || !*s)
                return false;
        errno = 0;
        *out = strtod(s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n')
                end++;
        return end != s && !*end && isfinite(*out);
}

static void shortest(char *out, size_t size, double d)
{
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(out, size, "%.*g", prec, d);
                if (strtod(out, NULL) == d)
                        return;
        }
}

static int leaf_value(const struct mls__gql_type *t, const json_t *v,
                      struct leaf *l, struct mls_buf *msg)
{
        double d;

        memset(l, 0, sizeof(*l));
        if (t->kind == MLS__GQL_ENUM) {
                if (json_is_string(v))
                        for (unsigned i = 0; i < t->nenum_values; i++)
                                if (strcmp(t->enum_values[i].name,
                                           json_string_value(v)) == 0) {
                                        l->kind = L_STR;
                                        l->s = json_string_value(v);
                                        l->len = json_string_length(v);
                                        l->same = v;
                                        return 0;
                                }
                mls_buf_printf(msg,
                               "Enum \"%s\" cannot represent value: ", t->name);
                mls__gql_inspect(msg, v);
                return -1;
        }
        switch (t->scalar) {
        case MLS__GQL_SC_INT:
                if (json_is_integer(v)) {
                        l->i = json_integer_value(v);
                        if (l->i < INT32_MIN || l->i > INT32_MAX)
                                goto int_range;
                        l->kind = L_INT;
                        l->same = v;
                        return 0;
                }
                if (json_is_boolean(v)) {
                        l->kind = L_INT;
                        l->i = json_is_true(v);
                        return 0;
                }
                if (json_is_real(v))
                        d = json_real_value(v);
                else if (!numeric_string(v, &d))
                        goto int_type;
                if (d != floor(d))
                        goto int_type;
                if (d < INT32_MIN || d > INT32_MAX)
                        goto int_range;
                l->kind = L_INT;
                l->i = (json_int_t)d;
                return 0;
        int_type:
                mls_buf_puts(msg, "Int cannot represent non-integer value: ");
                mls__gql_inspect(msg, v);
                return -1;
        int_range:
                mls_buf_puts(msg, "Int cannot represent non 32-bit signed "
                                  "integer value: ");
                mls__gql_inspect(msg, v);
                return -1;
        case MLS__GQL_SC_FLOAT:
                if (json_is_number(v)) {
                        l->kind = L_REAL;
                        l->d = json_number_value(v);
                        l->same = json_is_real(v) ? v : NULL;
                        return 0;
                }
                if (json_is_boolean(v)) {
                        l->kind = L_REAL;
                        l->d = json_is_true(v);
                        return 0;
                }
                if (numeric_string(v, &l->d)) {
                        l->kind = L_REAL;
                        return 0;
                }
                mls_buf_puts(msg, "Float cannot represent non numeric value: ");
                mls__gql_inspect(msg, v);
                return -1;
        case MLS__GQL_SC_STRING:
        case MLS__GQL_SC_ID:
                l->kind = L_STR;
                if (json_is_string(v)) {
                        l->s = json_string_value(v);
                        l->len = json_string_length(v);
                        l->same = v;
                        return 0;
                }
                if (json_is_integer(v)) {
                        l->len = (size_t)snprintf(l->tmp, sizeof(l->tmp),
                                                  "%" JSON_INTEGER_FORMAT,
                                                  json_integer_value(v));
                        l->s = l->tmp;
                        return 0;
                }
                if (t->scalar == MLS__GQL_SC_STRING && json_is_boolean(v)) {
                        l->s = json_is_true(v) ? "true" : "false";
                        l->len = strlen(l->s);
                        return 0;
                }
                if (json_is_real(v) &&
                    (t->scalar == MLS__GQL_SC_STRING ||
                     json_real_value(v) == floor(json_real_value(v)))) {
                        if (t->scalar == MLS__GQL_SC_ID &&
                            fabs(json_real_value(v)) < 1e15)
                                snprintf(l->tmp, sizeof(l->tmp), "%.0f",
                                         json_real_value(v));
                        else
                                shortest(l->tmp, sizeof(l->tmp),
                                         json_real_value(v));
                        l->s = l->tmp;
                        l->len = strlen(l->tmp);
                        return 0;
                }
                mls_buf_printf(msg, "%s cannot represent value: ",
                               t->scalar == MLS__GQL_SC_ID ? "ID" : "String");
                mls__gql_inspect(msg, v);
                return -1;
        case MLS__GQL_SC_BOOLEAN:
                if (json_is_boolean(v)) {
                        l->kind = L_BOOL;
                        l->b = json_is_true(v);
                        l->same = v;
                        return 0;
                }
                if (json_is_number(v)) {
                        l->kind = L_BOOL;
                        l->b = json_number_value(v) != 0;
                        return 0;
                }
                mls_buf_puts(msg, "Boolean cannot represent a non boolean "
                                  "value: ");
                mls__gql_inspect(msg, v);
                return -1;
        case MLS__GQL_SC_DATETIME:
                if (json_is_string(v)) {
                        l->kind = L_STR;
                        l->s = json_string_value(v);
                        l->len = json_string_length(v);
                        l->same = v;
                        return 0;
                }
                mls_buf_puts(msg, "DateTime cannot represent a non string "
                                  "value: ");
                mls__gql_inspect(msg, v);
                return -1;
        case MLS__GQL_SC_JSON:
        default:
                l->kind = L_JSON;
                l->same = v;
                return 0;
        }
}

static json_t *leaf_json(const struct leaf *l)
{
        if (l->same)
                return json_incref((json_t *)l->same);
        switch (l->kind) {
        case L_INT:
                return json_integer(l->i);
        case L_REAL:
                return json_real(l->d);
        case L_STR:
                return json_stringn(l->s, l->len);
        case L_BOOL:
                return json_boolean(l->b);
        case L_JSON:
        default:
                return json_null();
        }
}

static int leaf_write(struct mls_buf *b, const struct leaf *l)
{
        switch (l->kind) {
        case L_INT:
                if (l->i < 0 && mls_buf_putc(b, '-') < 0)
                        return -1;
                return mls_buf_u64(b, l->i < 0 ? (uint64_t)0 - (uint64_t)l->i
                                               : (uint64_t)l->i);
        case L_REAL:
                return mls_buf_json_double(b, l->d);
        case L_STR:
                return mls_buf_json_str(b, l->s, l->len);
        case L_BOOL:
                return l->b ? mls_buf_append(b, "true", 4)
                            : mls_buf_append(b, "false", 5);
        case L_JSON:
        default:
                return mls_json_write(b, l->same);
        }
}

static int leaf_error(struct run *r, const struct pfield *f,
                      const struct path *p, const struct mls__gql_type *t,
                      const json_t *v, struct leaf *l)
{
        struct mls_buf msg;
        int rc;

        if (t->kind == MLS__GQL_SCALAR && t->scalar == MLS__GQL_SC_JSON) {
                memset(l, 0, sizeof(*l));
                l->kind = L_JSON;
                l->same = v;
                return 0; /* the common case, without a buffer */
        }
        mls_buf_init(&msg, MLS__GQL_BUF_LIMIT);
        rc = leaf_value(t, v, l, &msg);
        if (rc < 0)
                field_error(r, f, p, mls_buf_cstr(&msg));
        mls_buf_free(&msg);
        return rc;
}

static void null_error(struct run *r, const struct pfield *f,
                       const struct path *p)
{
        char msg[300];

        snprintf(msg, sizeof(msg),
                 "Cannot return null for non-nullable field %s.%s.",
                 f->parent->name, f->def->name);
        field_error(r, f, p, msg);
}

static void list_error(struct run *r, const struct pfield *f,
                       const struct path *p)
{
        char msg[300];

        snprintf(msg, sizeof(msg),
                 "Expected Iterable, but did not find one for field "
                 "\"%s.%s\".",
                 f->parent->name, f->def->name);
        field_error(r, f, p, msg);
}

/* --- building jansson values
 * ---------------------------------------------------- */

static json_t *run_plan(struct run *r, const struct plan *plan, json_t *src,
                        const struct path *p);

/* Completes v (borrowed) as type t. Returns a new reference, or NULL when
 * the value is null because of an error already reported. */
static json_t *complete(struct run *r, const struct pfield *f,
                        const struct mls__gql_type *t, json_t *v,
                        const struct path *p)
{
        json_t *out, *item;
        struct leaf l;

        if (over_budget(r, f, p))
                return NULL;
        if (t->kind == MLS__GQL_NON_NULL) {
                if (json_is_null(v)) {
                        null_error(r, f, p);
                        return NULL;
                }
                return complete(r, f, t->of, v, p);
        }
        if (json_is_null(v))
                return json_null();
        switch (t->kind) {
        case MLS__GQL_LIST:
                if (!json_is_array(v)) {
                        list_error(r, f, p);
                        return NULL;
                }
                out = json_array();
                for (size_t i = 0; i < json_array_size(v) && out; i++) {
                        struct path ip = {p, NULL, i};
                        item = complete(r, f, t->of, json_array_get(v, i), &ip);
                        if (!item) {
                                if (t->of->kind == MLS__GQL_NON_NULL) {
                                        json_decref(out);
                                        return NULL;
                                }
                                item = json_null();
                        }
                        json_array_append_new(out, item);
                }
                return out;
        case MLS__GQL_OBJECT:
                return run_plan(r, f->sub, v, p);
        default:
                if (leaf_error(r, f, p, t, v, &l) < 0)
                        return NULL;
                return leaf_json(&l);
        }
}

static json_t *run_plan(struct run *r, const struct plan *plan, json_t *src,
                        const struct path *p)
{
        json_t *obj = json_object();

        for (unsigned i = 0; i < plan->n && obj; i++) {
                const struct pfield *f = &plan->f[i];
                struct path fp = {p, f->key, 0};
                json_t *v = resolve(r, f, src, &fp), *c = NULL;
                if (v) {
                        c = complete(r, f, f->def->type, v, &fp);
                        json_decref(v);
                }
                if (!c) {
                        if (f->def->type->kind == MLS__GQL_NON_NULL) {
                                json_decref(obj);
                                return NULL;
                        }
                        c = json_null();
                }
                json_object_set_new(obj, f->key, c);
        }
        return obj;
}

/* --- writing JSON text
 * ------------------------------------------------------------ */

enum {
        W_OK = 0,
        W_NULL = 1,
        W_FAIL = -1
};

static int wplan(struct run *r, const struct plan *plan, json_t *src,
                 const struct path *p);

static int wcomplete(struct run *r, const struct pfield *f,
                     const struct mls__gql_type *t, json_t *v,
                     const struct path *p)
{
        struct mls_buf *b = r->out;
        struct leaf l;
        int rc;

        if (over_budget(r, f, p))
                return W_NULL;
        if (t->kind == MLS__GQL_NON_NULL) {
                if (json_is_null(v)) {
                        null_error(r, f, p);
                        return W_NULL;
                }
                return wcomplete(r, f, t->of, v, p);
        }
        if (json_is_null(v))
                return mls_buf_append(b, "null", 4) < 0 ? W_FAIL : W_OK;
        switch (t->kind) {
        case MLS__GQL_LIST:
                if (!json_is_array(v)) {
                        list_error(r, f, p);
                        return W_NULL;
                }
                if (mls_buf_putc(b, '[') < 0)
                        return W_FAIL;
                for (size_t i = 0; i < json_array_size(v); i++) {
                        struct path ip = {p, NULL, i};
                        size_t mark;
                        if (i && mls_buf_putc(b, ',') < 0)
                                return W_FAIL;
                        mark = b->len;
                        rc = wcomplete(r, f, t->of, json_array_get(v, i), &ip);
                        if (rc == W_FAIL)
                                return W_FAIL;
                        if (rc == W_NULL) {
                                if (t->of->kind == MLS__GQL_NON_NULL)
                                        return W_NULL;
                                b->len = mark;
                                if (mls_buf_append(b, "null", 4) < 0)
                                        return W_FAIL;
                        }
                }
                return mls_buf_putc(b, ']') < 0 ? W_FAIL : W_OK;
        case MLS__GQL_OBJECT:
                return wplan(r, f->sub, v, p);
        default:
                if (leaf_error(r, f, p, t, v, &l) < 0)
                        return W_NULL;
                return leaf_write(b, &l) < 0 ? W_FAIL : W_OK;
        }
}

static int wplan(struct run *r, const struct plan *plan, json_t *src,
                 const struct path *p)
{
        struct mls_buf *b = r->out;

        if (mls_buf_putc(b, '{') < 0)
                return W_FAIL;
        for (unsigned i = 0; i < plan->n; i++) {
                const struct pfield *f = &plan->f[i];
                struct path fp = {p, f->key, 0};
                size_t mark;
                json_t *v;
                int rc = W_NULL;

                if ((i && mls_buf_putc(b, ',') < 0) ||
                    mls_buf_json_str(b, f->key, strlen(f->key)) < 0 ||
                    mls_buf_putc(b, ':') < 0)
                        return W_FAIL;
                mark = b->len;
                v = resolve(r, f, src, &fp);
                if (v) {
                        rc = wcomplete(r, f, f->def->type, v, &fp);
                        json_decref(v);
                }
                if (rc == W_FAIL)
                        return W_FAIL;
                if (rc == W_NULL) {
                        if (f->def->type->kind == MLS__GQL_NON_NULL)
                                return W_NULL;
                        b->len = mark;
                        if (mls_buf_append(b, "null", 4) < 0)
                                return W_FAIL;
                }
        }
        return mls_buf_putc(b, '}') < 0 ? W_FAIL : W_OK;
}

/* --- responses
 * ---------------------------------------------------------------------- */

static json_t *errors_response(json_t *errors)
{
        json_t *resp = json_object();

        if (!errors)
                errors = json_array();
        if (json_object_set_new(resp, "errors", errors) < 0) {
                json_decref(resp);
                return NULL;
        }
        return resp;
}

static json_t *error_response(const char *msg)
{
        json_t *errors = NULL;

        mls__gql_errors_push(&errors, mls__gql_error(msg, NULL, 0, NULL));
        return errors_response(errors);
}

static json_t *data_response(json_t *data, json_t *errors)
{
        json_t *resp = json_object();

        if (!resp) {
                json_decref(data);
                json_decref(errors);
                return NULL;
        }
        json_object_set_new(resp, "data", data ? data : json_null());
        if (errors)
                json_object_set_new(resp, "errors", errors);
        return resp;
}

json_t *mls_gql_execute(const mls_gql_doc_t *doc, const char *operation_name,
                        json_t *variables, void *request_ctx)
{
        const struct mls__gql_definition *op;
        struct compiled plan;
        json_t *errors = NULL, *vars, *data;
        struct run r;
        char err[512];

        op = mls__gql_doc_find_op(doc, operation_name, err, sizeof(err));
        if (!op)
                return error_response(err);
        if (op->op == MLS_GQL_SUBSCRIPTION)
                return error_response("Subscription operations are delivered "
                                      "over WebSocket (graphql-transport-ws "
                                      "or graphql-ws), not executed once.");
        vars = mls__gql_coerce_variables(doc->schema, op, variables, &errors);
        if (!vars)
                return errors_response(errors);
        if (compile_op(doc, op,
                       op->op == MLS_GQL_QUERY ? doc->schema->query
                                               : doc->schema->mutation,
                       vars, &plan, &errors) < 0) {
                json_decref(vars);
                return errors_response(errors);
        }
        memset(&r, 0, sizeof(r));
        r.s = doc->schema;
        r.request_ctx = request_ctx;
        r.max_completions = doc->limits.max_completions;
        data = run_plan(&r, plan.root, NULL, NULL);
        compiled_free(&plan);
        json_decref(vars);
        return data_response(data, r.errors);
}

json_t *mls_gql_request(mls_gql_cache_t *cache, const char *text, size_t len,
                        const char *operation_name, json_t *variables,
                        void *request_ctx)
{
        json_t *errors = NULL, *resp;
        mls_gql_doc_t *doc = mls_gql_cache_get(cache, text, len, &errors);

        if (!doc)
                return errors ? errors_response(errors) : NULL;
        resp = mls_gql_execute(doc, operation_name, variables, request_ctx);
        mls_gql_doc_unref(doc);
        return resp;
}

/* --- subscriptions
 * -------------------------------------------------------------------- */

/* A subscription's response as fixed pieces of text with a field's value
 * after each (mls_gql_sub_render_text()). */
struct text_piece {
        size_t off, len; /* in text_plan.lit */
        int field;       /* index into the event's names; -1: none */
        bool non_null, composite;
};

struct text_plan {
        const char *const *names; /* the event shape it was made for */
        bool usable;
        struct mls_buf lit;
        struct text_piece *pieces;
        unsigned n;
};

struct mls_gql_sub {
        mls_gql_doc_t *doc;
        json_t *vars;
        struct compiled plan;
        const struct pfield *root; /* NULL when @skip removed it */
        struct text_plan text;
};

mls_gql_sub_t *mls_gql_sub_prepare(mls_gql_doc_t *doc,
                                   const char *operation_name,
                                   json_t *variables, json_t **errors)
{
        const struct mls__gql_definition *op;
        mls_gql_sub_t *sub;
        char err[512];

        *errors = NULL;
        op = mls__gql_doc_find_op(doc, operation_name, err, sizeof(err));
        if (!op) {
                mls__gql_errors_push(errors,
                                     mls__gql_error(err, NULL, 0, NULL));
                return NULL;
        }
        if (op->op != MLS_GQL_SUBSCRIPTION || !doc->schema->subscription) {
                mls__gql_errors_push(
                        errors,
                        mls__gql_error("The operation is not a "
                                       "subscription; execute it instead.",
                                       &op->loc, 1, NULL));
                return NULL;
        }
        sub = calloc(1, sizeof(*sub));
        if (!sub)
                return NULL;
        mls_buf_init(&sub->text.lit, MLS__GQL_BUF_LIMIT);
        sub->vars =
                mls__gql_coerce_variables(doc->schema, op, variables, errors);
        if (!sub->vars) {
                free(sub);
                return NULL;
        }
        if (compile_op(doc, op, doc->schema->subscription, sub->vars,
                       &sub->plan, errors) < 0) {
                json_decref(sub->vars);
                free(sub);
                return NULL;
        }
        if (sub->plan.root->n > 0) {
                const struct pfield *f = &sub->plan.root->f[0];
                if (f->arg_error) {
                        struct mls__gql_loc loc = f->arg_error_loc.line
                                                          ? f->arg_error_loc
                                                          : f->nodes[0]->loc;
                        mls__gql_errors_push(
                                errors,
                                mls__gql_error(f->arg_error, &loc, 1, NULL));
                        compiled_free(&sub->plan);
                        json_decref(sub->vars);
                        free(sub);
                        return NULL;
                }
                sub->root = f;
        }
        sub->doc = mls_gql_doc_ref(doc);
        return sub;
}

const char *mls_gql_sub_field(const mls_gql_sub_t *sub)
{
        return sub->root ? sub->root->def->name : NULL;
}

json_t *mls_gql_sub_args(const mls_gql_sub_t *sub)
{
        return sub->root ? sub->root->args : NULL;
}

const char *mls_gql_sub_arg_variable(const mls_gql_sub_t *sub, const char *arg)
{
        const struct pfield *f = sub->root;

        if (!f || !f->nnodes)
                return NULL;
        for (const struct mls__gql_arg *a = f->nodes[0]->args; a; a = a->next)
                if (strcmp(a->name, arg) == 0)
                        return a->value && a->value->kind == MLS__GQL_V_VARIABLE
                                       ? a->value->str
                                       : NULL;
        return NULL;
}

static void sub_run_init(struct run *r, const mls_gql_sub_t *sub)
{
        memset(r, 0, sizeof(*r));
        r->s = sub->doc->schema;
        r->max_completions = sub->doc->limits.max_completions;
}

json_t *mls_gql_sub_event(mls_gql_sub_t *sub, json_t *event)
{
        const struct pfield *f = sub->root;
        json_t *data = json_object(), *v;
        struct path p;
        struct run r;

        sub_run_init(&r, sub);
        if (f && data) {
                p = (struct path){NULL, f->key, 0};
                v = complete(&r, f, f->def->type, event ? event : json_null(),
                             &p);
                if (!v) {
                        /* the root field is non-null: data becomes null */
                        json_decref(data);
                        data = NULL;
                } else {
                        json_object_set_new(data, f->key, v);
                }
        }
        return data_response(data, r.errors);
}

int mls_gql_sub_render(mls_gql_sub_t *sub, json_t *event, struct mls_buf *out)
{
        const struct pfield *f = sub->root;
        size_t start = out->len, mark;
        struct path p;
        struct run r;
        int rc = W_OK;

        sub_run_init(&r, sub);
        r.out = out;
        if (mls_buf_append(out, "{\"data\":", 8) < 0)
                goto fail;
        mark = out->len;
        if (mls_buf_putc(out, '{') < 0)
                goto fail;
        if (f) {
                p = (struct path){NULL, f->key, 0};
                if (mls_buf_json_str(out, f->key, strlen(f->key)) < 0 ||
                    mls_buf_putc(out, ':') < 0)
                        goto fail;
                rc = wcomplete(&r, f, f->def->type, event ? event : json_null(),
                               &p);
        }
        if (rc == W_FAIL)
                goto fail;
        if (rc == W_NULL) {
                out->len = mark;
                if (mls_buf_append(out, "null", 4) < 0)
                        goto fail;
        } else if (mls_buf_putc(out, '}') < 0) {
                goto fail;
        }
        if (r.errors && (mls_buf_append(out, ",\"errors\":", 10) < 0 ||
                         mls_json_write(out, r.errors) < 0))
                goto fail;
        if (mls_buf_putc(out, '}') < 0)
                goto fail;
        json_decref(r.errors);
        return 0;
fail:
        json_decref(r.errors);
        out->len = start;
        return -1;
}

/* --- rendering from text ----------------------------------------------------
 */

static int text_piece(struct text_plan *tp, size_t *from, int field,
                      bool non_null, bool composite)
{
        struct text_piece *pc = &tp->pieces[tp->n++];

        pc->off = *from;
        pc->len = tp->lit.len - *from;
        pc->field = field;
        pc->non_null = non_null;
        pc->composite = composite;
        *from = tp->lit.len;
        return tp->lit.overflow ? -1 : 0;
}

static int text_field(const struct mls_gql_text_event *ev, const char *name)
{
        for (unsigned i = 0; i < ev->n; i++)
                if (strcmp(ev->names[i], name) == 0)
                        return (int)i;
        return -1;
}

/* Compiles sub's response for events shaped as ev: usable stays false when
 * the selection needs the executor. -1 when memory runs out. */
static int text_compile(mls_gql_sub_t *sub, const struct mls_gql_text_event *ev)
{
        struct text_plan *tp = &sub->text;
        const struct mls_gql_schema *s = sub->doc->schema;
        const struct pfield *root = sub->root;
        const struct mls__gql_type *t;
        const struct plan *pl;
        unsigned long values = 1;
        size_t from = 0;

        free(tp->pieces);
        tp->pieces = NULL;
        tp->n = 0;
        mls_buf_reset(&tp->lit);
        tp->names = ev->names;
        tp->usable = false;
        if (!root)
                return 0;
        t = root->def->type;
        if (t->kind == MLS__GQL_NON_NULL) {
                t = t->of;
                values++;
        }
        pl = root->sub;
        if (t->kind != MLS__GQL_OBJECT || !pl)
                return 0;
        tp->pieces = calloc(pl->n + 1, sizeof(*tp->pieces));
        if (!tp->pieces)
                return -1;
        MLS_BUF_LIT(&tp->lit, "{\"data\":{");
        mls_buf_json_str(&tp->lit, root->key, strlen(root->key));
        MLS_BUF_LIT(&tp->lit, ":{");
        for (unsigned i = 0; i < pl->n; i++) {
                const struct pfield *f = &pl->f[i];
                const struct mls__gql_type *ft = f->def->type;
                bool non_null = ft->kind == MLS__GQL_NON_NULL;
                int field;

                if (non_null)
                        ft = ft->of;
                values += 1 + non_null;
                if (i)
                        mls_buf_putc(&tp->lit, ',');
                mls_buf_json_str(&tp->lit, f->key, strlen(f->key));
                mls_buf_putc(&tp->lit, ':');
                if (f->def == &s->meta_typename) {
                        mls_buf_json_str(&tp->lit, f->parent->name,
                                         strlen(f->parent->name));
                        continue;
                }
                if (f->arg_error || f->args || ft->kind == MLS__GQL_LIST ||
                    f->def->resolve != MLS__GQL_R_DEFAULT)
                        return 0;
                field = text_field(ev, f->def->name);
                if (field < 0) {
                        /* the executor resolves it to null */
                        if (non_null)
                                return 0;
                        MLS_BUF_LIT(&tp->lit, "null");
                        continue;
                }
                if (text_piece(tp, &from, field, non_null,
                               ft->kind != MLS__GQL_SCALAR &&
                                       ft->kind != MLS__GQL_ENUM) < 0)
                        return -1;
        }
        MLS_BUF_LIT(&tp->lit, "}}}");
        if (text_piece(tp, &from, -1, false, false) < 0)
                return -1;
        /* what the executor would count, so that its limit holds alike */
        tp->usable = values <= sub->doc->limits.max_completions;
        return 0;
}

int mls_gql_sub_render_text(mls_gql_sub_t *sub,
                            const struct mls_gql_text_event *ev,
                            struct mls_buf *out)
{
        struct text_plan *tp = &sub->text;
        size_t start = out->len;

        if (tp->names != ev->names && text_compile(sub, ev) < 0)
                return -1;
        if (!tp->usable)
                return 0;
        for (unsigned i = 0; i < tp->n; i++) {
                const struct text_piece *pc = &tp->pieces[i];
                const struct mls_gql_text *v;

                if (mls_buf_append(out, tp->lit.data + pc->off, pc->len) < 0)
                        goto fail;
                if (pc->field < 0)
                        continue;
                v = &ev->values[pc->field];
                if (!v->len) {
                        if (pc->non_null)
                                goto executor;
                        if (mls_buf_append(out, "null", 4) < 0)
                                goto fail;
                } else if (pc->composite) {
                        goto executor;
                } else if (mls_buf_append(out, v->p, v->len) < 0) {
                        goto fail;
                }
        }
        return 1;
executor:
        out->len = start;
        return 0;
fail:
        out->len = start;
        return -1;
}

void mls_gql_sub_free(mls_gql_sub_t *sub)
{
        if (!sub)
                return;
        free(sub->text.pieces);
        mls_buf_free(&sub->text.lit);
        compiled_free(&sub->plan);
        json_decref(sub->vars);
        mls_gql_doc_unref(sub->doc);
        free(sub);
}
