/*
 * Validation (spec section 5) with graphql-js 16's messages and locations.
 *
 * Pass A walks every definition once, in document order, with the type of
 * each selection set: fields, arguments, directives, values, fragment
 * spreads, leaf/composite selections. It records for each definition the
 * fragment spreads and variable usages it contains.
 * Pass B uses those records: fragment cycles (iteratively, no recursion per
 * fragment), variables defined/used/allowed per operation, subscription
 * root fields; then, when no fragment cycle exists, field merging for every
 * selection set seen in pass A and field depth with fragments expanded
 * (memoised per fragment).
 * Pass C reports fragments no operation reaches.
 *
 * An operation's cost is the number of field resolutions it can cause:
 * each field counts 1, and a list field's items (its sub-selection's cost,
 * or 1 per item for a list of leaves) count once per item the list can
 * hold (mls__gql_field.list_size: exact for introspection, set by the
 * gateway for its root fields, 100 otherwise). Aliases and fragment spreads
 * count every time they select a field. Fragment costs are memoised like
 * fragment depths, so computing the cost is linear in the document.
 *
 * Costs are linear in the document except field merging, which is bounded
 * by a work budget; recursion follows the document's nesting, which the
 * parser caps.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

#define OVERLAP_BUDGET 400000UL

struct usage {
        const char *name;
        struct mls__gql_loc loc;
        const struct mls__gql_type *type; /* NULL when unknown */
        bool location_default;
        struct usage *next;
};

struct spread {
        const struct mls__gql_selection *node;
        int frag; /* index in ctx->frags, -1 when unknown */
        struct spread *next;
};

struct definfo {
        const struct mls__gql_definition *def;
        struct spread *spreads, **spreads_tail;
        struct usage *usages, **usages_tail;
        /* fragments */
        bool visited;   /* cycle search */
        int path_index; /* position on the cycle search path, or -1 */
        unsigned depth; /* field depth with fragments expanded */
        bool depth_known;
        uint64_t cost, nfields; /* see selset_cost() */
        unsigned mark;          /* per-operation reachability */
        bool used;              /* reached from some operation */
};

struct cfield {
        const char *key;
        const struct mls__gql_type *parent;
        const struct mls__gql_selection *node;
        const struct mls__gql_field *def;
        int origin; /* fragment it came through at the top level, or -1 */
};

struct cvec {
        struct cfield *v;
        size_t n, cap;
};

struct pending {
        const struct mls__gql_selset *set;
        const struct mls__gql_type *parent;
        struct pending *next;
};

struct vctx {
        const struct mls_gql_schema *s;
        const struct mls__gql_document *doc;
        const struct mls_gql_limits *lim;
        struct mls__gql_arena arena;
        json_t *errors;
        unsigned nerrors;
        bool stop;
        bool oom;
        struct definfo *frags;
        unsigned nfrags;
        struct mls__gql_map fragmap;
        struct definfo *ops;
        unsigned nops;
        struct definfo *cur;
        unsigned long overlap_work;
        bool overlap_gave_up;
        bool has_cycles;
        unsigned op_mark;
        const char **type_names;
        unsigned ntype_names;
        unsigned *visit; /* per fragment: last collection that expanded it */
        unsigned visit_gen;
        struct pending *pending, **pending_tail; /* sets to check merging */
};

/* --- errors
 * ------------------------------------------------------------------- */

static void report_locs(struct vctx *c, const struct mls__gql_loc *locs,
                        size_t n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void report_buf(struct vctx *c, const struct mls__gql_loc *locs,
                       size_t n, const char *msg)
{
        json_t *e;

        if (c->stop)
                return;
        e = mls__gql_error(msg, locs, n, NULL);
        if (!e) {
                c->oom = c->stop = true;
                return;
        }
        mls__gql_errors_push(&c->errors, e);
        if (++c->nerrors >= c->lim->max_errors) {
                mls__gql_errors_push(
                        &c->errors,
                        mls__gql_error("Too many validation errors, error "
                                       "limit reached. Validation aborted.",
                                       NULL, 0, NULL));
                c->stop = true;
        }
}

static void report_locs(struct vctx *c, const struct mls__gql_loc *locs,
                        size_t n, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (c->stop)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        report_buf(c, locs, n, msg);
}

#define report(c, loc, ...) report_locs((c), &(loc), 1, __VA_ARGS__)

static void *v_alloc(struct vctx *c, size_t n)
{
        void *p = mls__gql_arena_alloc(&c->arena, n);

        if (!p)
                c->oom = c->stop = true;
        return p;
}

/* Type names print short; keep messages bounded. */
static const char *type_str(struct mls_buf *b, const struct mls__gql_type *t)
{
        mls_buf_reset(b);
        mls__gql_print_type(b, t);
        return mls_buf_cstr(b);
}

static void add_usage(struct vctx *c, const struct mls__gql_value *v,
                      const struct mls__gql_type *t, bool location_default)
{
        struct usage *u = v_alloc(c, sizeof(*u));

        if (!u || !c->cur)
                return;
        u->name = v->str;
        u->loc = v->loc;
        u->type = t;
        u->location_default = location_default;
        *c->cur->usages_tail = u;
        c->cur->usages_tail = &u->next;
}

static void suggest(struct mls_buf *b, const char *input, const char **names,
                    unsigned n)
{
        mls__gql_did_you_mean(b, NULL, input, names, n);
}

static void suggest_fields(struct mls_buf *b, const char *input,
                           const struct mls__gql_type *t)
{
        const char *names[64];
        unsigned n = 0;

        for (unsigned i = 0; i < t->nfields && n < 64; i++)
                names[n++] = t->fields[i].name;
        suggest(b, input, names, n);
}

static void suggest_args(struct mls_buf *b, const char *input,
                         const struct mls__gql_input_value *a, unsigned na)
{
        const char *names[64];
        unsigned n = 0;

        for (unsigned i = 0; i < na && n < 64; i++)
                names[n++] = a[i].name;
        suggest(b, input, names, n);
}

static void unknown_type(struct vctx *c, const char *name,
                         struct mls__gql_loc loc)
{
        struct mls_buf b;

        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        mls_buf_printf(&b, "Unknown type \"%s\".", name);
        suggest(&b, name, c->type_names, c->ntype_names);
        report_buf(c, &loc, 1, mls_buf_cstr(&b));
        mls_buf_free(&b);
}

/* --- values (ValuesOfCorrectType, UniqueInputFieldNames, usages)
 * -------------- */

static void check_value(struct vctx *c, const struct mls__gql_value *v,
                        const struct mls__gql_type *t, bool location_default);

static void check_value_children(struct vctx *c, const struct mls__gql_value *v,
                                 const struct mls__gql_type *item_type)
{
        if (v->kind == MLS__GQL_V_LIST)
                for (const struct mls__gql_value *it = v->items; it;
                     it = it->next)
                        check_value(c, it, item_type, false);
        else if (v->kind == MLS__GQL_V_OBJECT)
                for (const struct mls__gql_objfield *f = v->fields; f;
                     f = f->next)
                        check_value(c, f->value, NULL, false);
}

static void check_unique_fields(struct vctx *c, const struct mls__gql_value *v)
{
        struct mls__gql_map m;
        unsigned i = 0;
        const struct mls__gql_objfield *f, *first;

        if (v->count < 2)
                return;
        mls__gql_map_init(&m, &c->arena);
        for (f = v->fields; f && !c->stop; f = f->next, i++) {
                int r = mls__gql_map_put(&m, f->name, i);
                if (r < 0) {
                        c->oom = c->stop = true;
                        return;
                }
                if (r == 1) {
                        struct mls__gql_loc locs[2];
                        unsigned at = *mls__gql_map_get(&m, f->name);
                        first = v->fields;
                        while (at--)
                                first = first->next;
                        locs[0] = first->loc;
                        locs[1] = f->loc;
                        report_locs(c, locs, 2,
                                    "There can be only one input field named "
                                    "\"%s\".",
                                    f->name);
                }
        }
}

static void expected_found(struct vctx *c, const struct mls__gql_value *v,
                           const struct mls__gql_type *t)
{
        struct mls_buf b;

        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        mls_buf_puts(&b, "Expected value of type \"");
        mls__gql_print_type(&b, t);
        mls_buf_puts(&b, "\", found ");
        mls__gql_print_value(&b, v, false);
        mls_buf_putc(&b, '.');
        report_buf(c, &v->loc, 1, mls_buf_cstr(&b));
        mls_buf_free(&b);
}

static void check_value(struct vctx *c, const struct mls__gql_value *v,
                        const struct mls__gql_type *t, bool location_default)
{
        const struct mls__gql_type *named;
        struct mls_buf b;

        if (c->stop)
                return;
        if (v->kind == MLS__GQL_V_VARIABLE) {
                add_usage(c, v, t, location_default);
                return;
        }
        if (v->kind == MLS__GQL_V_OBJECT)
                check_unique_fields(c, v);
        if (!t) {
                check_value_children(c, v, NULL);
                return;
        }
        if (t->kind == MLS__GQL_NON_NULL) {
                if (v->kind == MLS__GQL_V_NULL) {
                        expected_found(c, v, t);
                        return;
                }
                check_value(c, v, t->of, false);
                return;
        }
        if (v->kind == MLS__GQL_V_NULL)
                return;
        if (t->kind == MLS__GQL_LIST) {
                if (v->kind == MLS__GQL_V_LIST)
                        check_value_children(c, v, t->of);
                else
                        check_value(c, v, t->of, false);
                return;
        }
        if (t->kind == MLS__GQL_INPUT_OBJECT) {
                if (v->kind != MLS__GQL_V_OBJECT) {
                        expected_found(c, v, t);
                        check_value_children(c, v, t);
                        return;
                }
                for (unsigned i = 0; i < t->ninput_fields; i++) {
                        const struct mls__gql_input_value *d =
                                &t->input_fields[i];
                        const struct mls__gql_objfield *f = v->fields;
                        while (f && strcmp(f->name, d->name) != 0)
                                f = f->next;
                        if (!f && d->type->kind == MLS__GQL_NON_NULL &&
                            !d->default_json) {
                                mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
                                mls_buf_printf(&b,
                                               "Field \"%s.%s\" of required "
                                               "type \"",
                                               t->name, d->name);
                                mls__gql_print_type(&b, d->type);
                                mls_buf_puts(&b, "\" was not provided.");
                                report_buf(c, &v->loc, 1, mls_buf_cstr(&b));
                                mls_buf_free(&b);
                        }
                }
                for (const struct mls__gql_objfield *f = v->fields; f;
                     f = f->next) {
                        const struct mls__gql_input_value *d = NULL;
                        for (unsigned i = 0; i < t->ninput_fields; i++)
                                if (strcmp(t->input_fields[i].name, f->name) ==
                                    0)
                                        d = &t->input_fields[i];
                        if (!d) {
                                mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
                                mls_buf_printf(&b,
                                               "Field \"%s\" is not defined "
                                               "by type \"%s\".",
                                               f->name, t->name);
                                suggest_args(&b, f->name, t->input_fields,
                                             t->ninput_fields);
                                report_buf(c, &f->loc, 1, mls_buf_cstr(&b));
                                mls_buf_free(&b);
                                check_value(c, f->value, NULL, false);
                        } else {
                                check_value(c, f->value, d->type,
                                            d->default_json != NULL);
                        }
                }
                return;
        }
        named = t;
        if (!mls__gql_is_leaf(named)) {
                expected_found(c, v, t);
                return;
        }
        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        if (mls__gql_leaf_literal(named, v, NULL, NULL, &b) < 0)
                report_buf(c, &v->loc, 1, mls_buf_cstr(&b));
        mls_buf_free(&b);
        /* graphql-js visits the items of a list given to a scalar with the
         * scalar's type, and object fields without a type */
        check_value_children(c, v, named);
}

/* --- arguments and directives
 * --------------------------------------------------- */

struct arg_owner {
        bool directive;
        const char *name;   /* field or directive name */
        const char *parent; /* field's parent type name */
        struct mls__gql_loc loc;
};

static void check_args(struct vctx *c, const struct mls__gql_arg *args,
                       const struct mls__gql_input_value *defs, unsigned ndefs,
                       bool known_owner, const struct arg_owner *o)
{
        unsigned nargs = 0;
        struct mls_buf b;

        for (const struct mls__gql_arg *a = args; a; a = a->next)
                nargs++;
        /* UniqueArgumentNames: all nodes of a repeated name */
        if (nargs > 1) {
                struct mls__gql_map m;
                unsigned i = 0;
                mls__gql_map_init(&m, &c->arena);
                for (const struct mls__gql_arg *a = args; a && !c->stop;
                     a = a->next, i++) {
                        int r = mls__gql_map_put(&m, a->name, i);
                        if (r < 0) {
                                c->oom = c->stop = true;
                                return;
                        }
                        if (r == 1 &&
                            *mls__gql_map_get(&m, a->name) != UINT32_MAX) {
                                struct mls__gql_loc locs[16];
                                size_t nl = 0;
                                for (const struct mls__gql_arg *x = args; x;
                                     x = x->next)
                                        if (strcmp(x->name, a->name) == 0 &&
                                            nl < 16)
                                                locs[nl++] = x->loc;
                                report_locs(c, locs, nl,
                                            "There can be only one argument "
                                            "named \"%s\".",
                                            a->name);
                                *mls__gql_map_get(&m, a->name) = UINT32_MAX;
                        }
                }
        }
        if (!known_owner) {
                /* values still hold variable usages */
                for (const struct mls__gql_arg *a = args; a && !c->stop;
                     a = a->next)
                        check_value(c, a->value, NULL, false);
                return;
        }
        for (const struct mls__gql_arg *a = args; a && !c->stop; a = a->next) {
                const struct mls__gql_input_value *d = NULL;
                for (unsigned i = 0; i < ndefs; i++)
                        if (strcmp(defs[i].name, a->name) == 0)
                                d = &defs[i];
                if (d) {
                        check_value(c, a->value, d->type,
                                    d->default_json != NULL);
                        continue;
                }
                mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
                if (o->directive)
                        mls_buf_printf(&b,
                                       "Unknown argument \"%s\" on directive "
                                       "\"@%s\".",
                                       a->name, o->name);
                else
                        mls_buf_printf(&b,
                                       "Unknown argument \"%s\" on field "
                                       "\"%s.%s\".",
                                       a->name, o->parent, o->name);
                suggest_args(&b, a->name, defs, ndefs);
                report_buf(c, &a->loc, 1, mls_buf_cstr(&b));
                mls_buf_free(&b);
                check_value(c, a->value, NULL, false);
        }
        for (unsigned i = 0; i < ndefs && !c->stop; i++) {
                const struct mls__gql_arg *a = args;
                if (defs[i].type->kind != MLS__GQL_NON_NULL ||
                    defs[i].default_json)
                        continue;
                while (a && strcmp(a->name, defs[i].name) != 0)
                        a = a->next;
                if (a)
                        continue;
                mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
                if (o->directive)
                        mls_buf_printf(&b,
                                       "Directive \"@%s\" argument \"%s\" "
                                       "of type \"",
                                       o->name, defs[i].name);
                else
                        mls_buf_printf(&b,
                                       "Field \"%s\" argument \"%s\" of "
                                       "type \"",
                                       o->name, defs[i].name);
                mls__gql_print_type(&b, defs[i].type);
                mls_buf_puts(&b, "\" is required, but it was not provided.");
                report_buf(c, &o->loc, 1, mls_buf_cstr(&b));
                mls_buf_free(&b);
        }
}

static void check_directives(struct vctx *c,
                             const struct mls__gql_directive *dirs,
                             enum mls__gql_dir_loc where)
{
        /* first use of each schema directive, for uniqueness */
        const struct mls__gql_directive *seen[32] = {NULL};

        for (const struct mls__gql_directive *d = dirs; d && !c->stop;
             d = d->next) {
                const struct mls__gql_directive_def *def =
                        mls__gql_schema_directive(c->s, d->name);
                struct arg_owner o = {true, d->name, NULL, d->loc};
                if (!def) {
                        report(c, d->loc, "Unknown directive \"@%s\".",
                               d->name);
                        check_args(c, d->args, NULL, 0, false, &o);
                        continue;
                }
                if (!(def->locations & (1u << where)))
                        report(c, d->loc,
                               "Directive \"@%s\" may not be used on %s.",
                               d->name, mls__gql_dir_loc_names[where]);
                if (!def->repeatable) {
                        size_t k = (size_t)(def - c->s->directives);
                        if (k < 32 && seen[k]) {
                                struct mls__gql_loc locs[2] = {seen[k]->loc,
                                                               d->loc};
                                report_locs(c, locs, 2,
                                            "The directive \"@%s\" can only "
                                            "be used once at this location.",
                                            d->name);
                        } else if (k < 32) {
                                seen[k] = d;
                        }
                }
                check_args(c, d->args, def->args, def->nargs, true, &o);
        }
}

/* --- field collection for merging
 * ------------------------------------------------ */

static int cvec_push(struct vctx *c, struct cvec *v, const struct cfield *f)
{
        if (v->n == v->cap) {
                size_t ncap = v->cap ? v->cap * 2 : 16;
                struct cfield *nv = realloc(v->v, ncap * sizeof(*nv));
                if (!nv) {
                        c->oom = c->stop = true;
                        return -1;
                }
                v->v = nv;
                v->cap = ncap;
        }
        v->v[v->n++] = *f;
        return 0;
}

static const struct mls__gql_definition *frag_def(struct vctx *c,
                                                  const char *name, int *idx)
{
        unsigned *i = mls__gql_map_get(&c->fragmap, name);

        if (idx)
                *idx = i ? (int)*i : -1;
        return i ? c->frags[*i].def : NULL;
}

/*
 * Collects the fields of set, expanding fragments (each named fragment once),
 * in document order, without recursion per fragment: an explicit stack of
 * selection cursors.
 */
static void collect(struct vctx *c, const struct mls__gql_selset *set,
                    const struct mls__gql_type *parent, struct cvec *out)
{
        struct frame {
                const struct mls__gql_selection *sel;
                const struct mls__gql_type *parent;
                int origin;
        } *stack = NULL;
        size_t n = 0, cap = 8;

        /* fragments already expanded in this collection carry this stamp */
        c->visit_gen++;
        stack = malloc(cap * sizeof(*stack));
        if (!stack) {
                c->oom = c->stop = true;
                return;
        }
        stack[n++] = (struct frame){set->first, parent, -1};
        while (n > 0 && !c->stop) {
                struct frame *top = &stack[n - 1];
                const struct mls__gql_selection *s = top->sel;
                const struct mls__gql_definition *fd;
                const struct mls__gql_type *t;
                struct cfield f;
                int fi, origin;

                if (!s) {
                        n--;
                        continue;
                }
                top->sel = s->next;
                if (++c->overlap_work > OVERLAP_BUDGET)
                        break;
                switch (s->kind) {
                case MLS__GQL_S_FIELD:
                        f.key = s->alias ? s->alias : s->name;
                        f.parent = top->parent;
                        f.node = s;
                        f.def = mls__gql_schema_field(c->s, top->parent,
                                                      s->name);
                        f.origin = top->origin;
                        cvec_push(c, out, &f);
                        continue;
                case MLS__GQL_S_SPREAD:
                        fd = frag_def(c, s->name, &fi);
                        if (!fd || c->visit[fi] == c->visit_gen)
                                continue;
                        c->visit[fi] = c->visit_gen;
                        t = mls__gql_schema_type(c->s, fd->type_cond);
                        s = fd->set->first;
                        break;
                case MLS__GQL_S_INLINE:
                        t = s->type_cond
                                    ? mls__gql_schema_type(c->s, s->type_cond)
                                    : top->parent;
                        fi = top->origin;
                        s = s->set->first;
                        break;
                default:
                        continue;
                }
                if (n == cap) {
                        struct frame *ns =
                                realloc(stack, 2 * cap * sizeof(*ns));
                        if (!ns) {
                                c->oom = c->stop = true;
                                break;
                        }
                        stack = ns;
                        cap *= 2;
                }
                origin = stack[n - 1].origin >= 0 ? stack[n - 1].origin : fi;
                stack[n] = (struct frame){
                        s, t && mls__gql_is_composite(t) ? t : NULL, origin};
                n++;
        }
        free(stack);
}

/* --- OverlappingFieldsCanBeMerged
 * --------------------------------------------------- */

struct lvec {
        struct mls__gql_loc *v;
        size_t n, cap;
};

static void lvec_push(struct lvec *l, struct mls__gql_loc loc)
{
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 8;
                struct mls__gql_loc *nv = realloc(l->v, ncap * sizeof(*nv));
                if (!nv)
                        return;
                l->v = nv;
                l->cap = ncap;
        }
        l->v[l->n++] = loc;
}

static bool types_conflict(const struct mls__gql_type *a,
                           const struct mls__gql_type *b)
{
        if (a->kind == MLS__GQL_LIST)
                return b->kind == MLS__GQL_LIST ? types_conflict(a->of, b->of)
                                                : true;
        if (b->kind == MLS__GQL_LIST)
                return true;
        if (a->kind == MLS__GQL_NON_NULL)
                return b->kind == MLS__GQL_NON_NULL
                               ? types_conflict(a->of, b->of)
                               : true;
        if (b->kind == MLS__GQL_NON_NULL)
                return true;
        if (mls__gql_is_leaf(a) || mls__gql_is_leaf(b))
                return a != b;
        return false;
}

static void print_args_sorted(struct mls_buf *b, const struct mls__gql_arg *a)
{
        struct mls__gql_value obj;
        struct mls__gql_objfield *fields = NULL, **tail = &fields, *f;
        unsigned n = 0;

        /* print as an object so fields sort like graphql-js's
         * stringifyArguments() */
        for (; a; a = a->next) {
                f = calloc(1, sizeof(*f));
                if (!f)
                        break;
                f->name = a->name;
                f->value = a->value;
                *tail = f;
                tail = &f->next;
                n++;
        }
        memset(&obj, 0, sizeof(obj));
        obj.kind = MLS__GQL_V_OBJECT;
        obj.fields = fields;
        obj.count = n;
        mls__gql_print_value(b, &obj, true);
        while (fields) {
                f = fields->next;
                free(fields);
                fields = f;
        }
}

static bool same_args(const struct mls__gql_selection *x,
                      const struct mls__gql_selection *y)
{
        struct mls_buf a, b;
        bool same;

        if (!x->args && !y->args)
                return true;
        mls_buf_init(&a, MLS__GQL_BUF_LIMIT);
        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        print_args_sorted(&a, x->args);
        print_args_sorted(&b, y->args);
        same = a.len == b.len && !a.overflow && !b.overflow &&
               memcmp(a.data, b.data, a.len) == 0;
        mls_buf_free(&a);
        mls_buf_free(&b);
        return same;
}

static bool find_conflict(struct vctx *c, const struct cfield *a,
                          const struct cfield *b, bool parents_exclusive,
                          struct mls_buf *reason, struct lvec *l1,
                          struct lvec *l2, unsigned depth);

/* Conflicts between the fields of two selection sets merged under one
 * response name; appends "subfields ..." reasons. */
static bool conflicts_between(struct vctx *c, const struct mls__gql_selset *s1,
                              const struct mls__gql_type *t1,
                              const struct mls__gql_selset *s2,
                              const struct mls__gql_type *t2, bool exclusive,
                              struct mls_buf *reason, struct lvec *l1,
                              struct lvec *l2, unsigned depth)
{
        struct cvec f1 = {0}, f2 = {0};
        struct mls__gql_arena tmp;
        struct mls__gql_map m1, m2;
        unsigned found = 0;

        if (s1 == s2 || depth > c->lim->max_field_depth)
                return false;
        collect(c, s1, t1, &f1);
        collect(c, s2, t2, &f2);
        mls__gql_arena_init(&tmp);
        mls__gql_map_init(&m1, &tmp);
        mls__gql_map_init(&m2, &tmp);
        for (size_t j = 0; j < f2.n; j++)
                mls__gql_map_put(&m2, f2.v[j].key, (unsigned)j);
        for (size_t i = 0; i < f1.n && !c->stop; i++) {
                unsigned *j;
                size_t mark = reason->len, m1n = l1->n, m2n = l2->n;
                if (mls__gql_map_put(&m1, f1.v[i].key, (unsigned)i) != 0)
                        continue; /* compare each response name once */
                j = mls__gql_map_get(&m2, f1.v[i].key);
                if (!j)
                        continue;
                mls_buf_printf(reason, "%ssubfields \"%s\" conflict because ",
                               found ? " and " : "", f1.v[i].key);
                lvec_push(l1, f1.v[i].node->loc);
                lvec_push(l2, f2.v[*j].node->loc);
                if (find_conflict(c, &f1.v[i], &f2.v[*j], exclusive, reason, l1,
                                  l2, depth + 1)) {
                        found++;
                } else {
                        reason->len = mark;
                        l1->n = m1n;
                        l2->n = m2n;
                }
        }
        mls__gql_arena_free(&tmp);
        free(f1.v);
        free(f2.v);
        return found > 0;
}

static bool find_conflict(struct vctx *c, const struct cfield *a,
                          const struct cfield *b, bool parents_exclusive,
                          struct mls_buf *reason, struct lvec *l1,
                          struct lvec *l2, unsigned depth)
{
        const struct mls__gql_type *ta = a->def ? a->def->type : NULL;
        const struct mls__gql_type *tb = b->def ? b->def->type : NULL;
        bool exclusive = parents_exclusive;
        struct mls_buf t1, t2;

        if (a->node == b->node)
                return false;
        if (!exclusive && a->parent && b->parent && a->parent != b->parent &&
            a->parent->kind == MLS__GQL_OBJECT &&
            b->parent->kind == MLS__GQL_OBJECT)
                exclusive = true;
        if (!exclusive) {
                if (strcmp(a->node->name, b->node->name) != 0) {
                        mls_buf_printf(reason,
                                       "\"%s\" and \"%s\" are different "
                                       "fields",
                                       a->node->name, b->node->name);
                        return true;
                }
                if (!same_args(a->node, b->node)) {
                        mls_buf_puts(reason, "they have differing arguments");
                        return true;
                }
        }
        if (ta && tb && types_conflict(ta, tb)) {
                mls_buf_init(&t1, MLS__GQL_BUF_LIMIT);
                mls_buf_init(&t2, MLS__GQL_BUF_LIMIT);
                mls_buf_printf(reason,
                               "they return conflicting types \"%s\" and "
                               "\"%s\"",
                               type_str(&t1, ta), type_str(&t2, tb));
                mls_buf_free(&t1);
                mls_buf_free(&t2);
                return true;
        }
        if (a->node->set && b->node->set)
                return conflicts_between(c, a->node->set, mls__gql_named(ta),
                                         b->node->set, mls__gql_named(tb),
                                         exclusive, reason, l1, l2, depth);
        return false;
}

static void check_overlap(struct vctx *c, const struct mls__gql_selset *set,
                          const struct mls__gql_type *parent)
{
        struct cvec f = {0};
        struct mls__gql_arena tmp;
        struct mls__gql_map m;

        if (c->overlap_gave_up || c->stop)
                return;
        collect(c, set, parent, &f);
        mls__gql_arena_init(&tmp);
        mls__gql_map_init(&m, &tmp);
        for (size_t i = 0; i < f.n && !c->stop; i++) {
                const struct cfield *first;
                struct mls_buf reason;
                struct lvec l1 = {0}, l2 = {0};
                unsigned *j;
                if (mls__gql_map_put(&m, f.v[i].key, (unsigned)i) < 1)
                        continue;
                j = mls__gql_map_get(&m, f.v[i].key);
                first = &f.v[*j];
                /* fields that came through the same fragment were compared
                 * when that fragment was checked */
                if (first->origin >= 0 && first->origin == f.v[i].origin)
                        continue;
                mls_buf_init(&reason, MLS__GQL_BUF_LIMIT);
                lvec_push(&l1, first->node->loc);
                lvec_push(&l2, f.v[i].node->loc);
                if (find_conflict(c, first, &f.v[i], false, &reason, &l1, &l2,
                                  0)) {
                        struct mls_buf msg;
                        mls_buf_init(&msg, MLS__GQL_BUF_LIMIT);
                        mls_buf_printf(&msg,
                                       "Fields \"%s\" conflict because %s. "
                                       "Use different aliases on the fields "
                                       "to fetch both if this was "
                                       "intentional.",
                                       f.v[i].key, mls_buf_cstr(&reason));
                        for (size_t k = 0; k < l2.n; k++)
                                lvec_push(&l1, l2.v[k]);
                        report_buf(c, l1.v, l1.n, mls_buf_cstr(&msg));
                        mls_buf_free(&msg);
                }
                free(l1.v);
                free(l2.v);
                mls_buf_free(&reason);
        }
        mls__gql_arena_free(&tmp);
        free(f.v);
        if (c->overlap_work > OVERLAP_BUDGET && !c->overlap_gave_up) {
                c->overlap_gave_up = true;
                report(c, set->loc,
                       "Document is too complex to check that its fields "
                       "can be merged; use fewer fragment spreads and "
                       "repeated fields.");
        }
}

/* --- selections
 * ----------------------------------------------------------------------- */

static bool spread_possible(const struct mls__gql_type *parent,
                            const struct mls__gql_type *frag)
{
        /* Only object types exist in our schemas; an object overlaps only
         * itself. */
        if (parent->kind == MLS__GQL_OBJECT && frag->kind == MLS__GQL_OBJECT)
                return parent == frag;
        return true;
}

static void add_spread(struct vctx *c, const struct mls__gql_selection *s,
                       int frag)
{
        struct spread *sp = v_alloc(c, sizeof(*sp));

        if (!sp || !c->cur)
                return;
        sp->node = s;
        sp->frag = frag;
        *c->cur->spreads_tail = sp;
        c->cur->spreads_tail = &sp->next;
}

static void walk_selset(struct vctx *c, const struct mls__gql_selset *set,
                        const struct mls__gql_type *parent)
{
        struct mls_buf b, tb;

        if (parent) {
                /* field merging is checked once cycles are ruled out */
                struct pending *pd = v_alloc(c, sizeof(*pd));
                if (pd) {
                        pd->set = set;
                        pd->parent = parent;
                        *c->pending_tail = pd;
                        c->pending_tail = &pd->next;
                }
        }
        mls_buf_init(&tb, MLS__GQL_BUF_LIMIT);
        for (const struct mls__gql_selection *s = set->first; s && !c->stop;
             s = s->next) {
                const struct mls__gql_field *fd = NULL;
                const struct mls__gql_type *t = NULL, *named;
                const struct mls__gql_definition *frag;
                int fi;

                switch (s->kind) {
                case MLS__GQL_S_FIELD: {
                        struct arg_owner o = {false, s->name,
                                              parent ? parent->name : NULL,
                                              s->loc};
                        if (parent) {
                                fd = mls__gql_schema_field(c->s, parent,
                                                           s->name);
                                if (!fd) {
                                        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
                                        mls_buf_printf(&b,
                                                       "Cannot query field "
                                                       "\"%s\" on type "
                                                       "\"%s\".",
                                                       s->name, parent->name);
                                        suggest_fields(&b, s->name, parent);
                                        report_buf(c, &s->loc, 1,
                                                   mls_buf_cstr(&b));
                                        mls_buf_free(&b);
                                }
                        }
                        check_args(c, s->args, fd ? fd->args : NULL,
                                   fd ? fd->nargs : 0, fd != NULL, &o);
                        check_directives(c, s->directives, MLS__GQL_DL_FIELD);
                        t = fd ? fd->type : NULL;
                        named = mls__gql_named(t);
                        if (named && mls__gql_is_leaf(named) && s->set) {
                                report(c, s->set->loc,
                                       "Field \"%s\" must not have a "
                                       "selection since type \"%s\" has no "
                                       "subfields.",
                                       s->name, type_str(&tb, t));
                        } else if (named && !mls__gql_is_leaf(named) &&
                                   !s->set) {
                                report(c, s->loc,
                                       "Field \"%s\" of type \"%s\" must "
                                       "have a selection of subfields. Did "
                                       "you mean \"%s { ... }\"?",
                                       s->name, type_str(&tb, t), s->name);
                        }
                        if (s->set)
                                walk_selset(
                                        c, s->set,
                                        named && mls__gql_is_composite(named)
                                                ? named
                                                : NULL);
                        break;
                }
                case MLS__GQL_S_SPREAD:
                        check_directives(c, s->directives,
                                         MLS__GQL_DL_FRAGMENT_SPREAD);
                        frag = frag_def(c, s->name, &fi);
                        add_spread(c, s, fi);
                        if (!frag) {
                                report(c, s->name_loc,
                                       "Unknown fragment \"%s\".", s->name);
                                break;
                        }
                        t = mls__gql_schema_type(c->s, frag->type_cond);
                        if (parent && t && mls__gql_is_composite(t) &&
                            !spread_possible(parent, t))
                                report(c, s->loc,
                                       "Fragment \"%s\" cannot be spread "
                                       "here as objects of type \"%s\" can "
                                       "never be of type \"%s\".",
                                       s->name, parent->name, t->name);
                        break;
                case MLS__GQL_S_INLINE:
                        check_directives(c, s->directives,
                                         MLS__GQL_DL_INLINE_FRAGMENT);
                        t = parent;
                        if (s->type_cond) {
                                t = mls__gql_schema_type(c->s, s->type_cond);
                                if (!t) {
                                        unknown_type(c, s->type_cond,
                                                     s->type_cond_loc);
                                } else if (!mls__gql_is_composite(t)) {
                                        report(c, s->type_cond_loc,
                                               "Fragment cannot condition on "
                                               "non composite type \"%s\".",
                                               t->name);
                                        t = NULL;
                                } else if (parent &&
                                           !spread_possible(parent, t)) {
                                        report(c, s->loc,
                                               "Fragment cannot be spread "
                                               "here as objects of type "
                                               "\"%s\" can never be of type "
                                               "\"%s\".",
                                               parent->name, t->name);
                                }
                        }
                        walk_selset(c, s->set, t);
                        break;
                }
        }
        mls_buf_free(&tb);
}

/* --- definitions
 * ------------------------------------------------------------------------ */

static const struct mls__gql_type *root_type(const struct mls_gql_schema *s,
                                             enum mls_gql_op_kind k)
{
        switch (k) {
        case MLS_GQL_QUERY:
                return s->query;
        case MLS_GQL_MUTATION:
                return s->mutation;
        case MLS_GQL_SUBSCRIPTION:
                return s->subscription;
        }
        return NULL;
}

static const char *const op_names[] = {"query", "mutation", "subscription"};

static void init_info(struct definfo *d, const struct mls__gql_definition *def)
{
        d->def = def;
        d->spreads_tail = &d->spreads;
        d->usages_tail = &d->usages;
        d->path_index = -1;
}

static void walk_vardefs(struct vctx *c, struct definfo *info)
{
        const struct mls__gql_definition *op = info->def;
        struct mls__gql_map m;
        struct mls_buf tb;

        mls__gql_map_init(&m, &c->arena);
        mls_buf_init(&tb, MLS__GQL_BUF_LIMIT);
        for (const struct mls__gql_vardef *v = op->vardefs; v && !c->stop;
             v = v->next) {
                const struct mls__gql_typeref *r = v->type;
                const struct mls__gql_type *t;
                int put = mls__gql_map_put(&m, v->name, 0);
                if (put < 0) {
                        c->oom = c->stop = true;
                        break;
                }
                if (put == 1 && *mls__gql_map_get(&m, v->name) == 0) {
                        struct mls__gql_loc locs[16];
                        size_t n = 0;
                        for (const struct mls__gql_vardef *x = op->vardefs; x;
                             x = x->next)
                                if (strcmp(x->name, v->name) == 0 && n < 16)
                                        locs[n++] = x->name_loc;
                        report_locs(c, locs, n,
                                    "There can be only one variable named "
                                    "\"$%s\".",
                                    v->name);
                        *mls__gql_map_get(&m, v->name) = 1;
                }
                while (r->kind != MLS__GQL_T_NAMED)
                        r = r->of;
                if (!mls__gql_schema_type(c->s, r->name)) {
                        unknown_type(c, r->name, r->loc);
                        continue;
                }
                t = mls__gql_schema_typeref(c->s, &c->arena, v->type);
                if (!t) {
                        c->oom = c->stop = true;
                        break;
                }
                if (!mls__gql_is_input_type(t)) {
                        report(c, v->type->loc,
                               "Variable \"$%s\" cannot be non-input type "
                               "\"%s\".",
                               v->name, type_str(&tb, t));
                        continue;
                }
                if (v->default_value)
                        check_value(c, v->default_value, t, false);
                check_directives(c, v->directives,
                                 MLS__GQL_DL_VARIABLE_DEFINITION);
        }
        mls_buf_free(&tb);
}

static void walk_definition(struct vctx *c, struct definfo *info)
{
        const struct mls__gql_definition *d = info->def;
        const struct mls__gql_type *t;

        c->cur = info;
        if (d->is_fragment) {
                t = mls__gql_schema_type(c->s, d->type_cond);
                if (!t) {
                        unknown_type(c, d->type_cond, d->type_cond_loc);
                } else if (!mls__gql_is_composite(t)) {
                        report(c, d->type_cond_loc,
                               "Fragment \"%s\" cannot condition on non "
                               "composite type \"%s\".",
                               d->name, t->name);
                        t = NULL;
                }
                check_directives(c, d->directives,
                                 MLS__GQL_DL_FRAGMENT_DEFINITION);
                walk_selset(c, d->set, t);
        } else {
                t = root_type(c->s, d->op);
                if (!t)
                        report(c, d->loc,
                               "Schema is not configured to execute %s "
                               "operation.",
                               op_names[d->op]);
                walk_vardefs(c, info);
                check_directives(c, d->directives,
                                 d->op == MLS_GQL_QUERY ? MLS__GQL_DL_QUERY
                                 : d->op == MLS_GQL_MUTATION
                                         ? MLS__GQL_DL_MUTATION
                                         : MLS__GQL_DL_SUBSCRIPTION);
                walk_selset(c, d->set, t);
        }
        c->cur = NULL;
}

/* --- NoFragmentCycles and fragment depth
 * ------------------------------------------------ */

static unsigned selset_depth(struct vctx *c, const struct mls__gql_selset *set)
{
        unsigned best = 0, d;
        int fi;

        for (const struct mls__gql_selection *s = set->first; s; s = s->next) {
                switch (s->kind) {
                case MLS__GQL_S_FIELD:
                        d = 1 + (s->set ? selset_depth(c, s->set) : 0);
                        break;
                case MLS__GQL_S_SPREAD:
                        frag_def(c, s->name, &fi);
                        d = fi >= 0 && c->frags[fi].depth_known
                                    ? c->frags[fi].depth
                                    : 0;
                        break;
                default:
                        d = selset_depth(c, s->set);
                        break;
                }
                if (d > best)
                        best = d;
        }
        return best;
}

/* Saturating arithmetic for costs: documents may claim astronomic ones. */
#define COST_CAP ((uint64_t)1 << 62)

static uint64_t cost_add(uint64_t a, uint64_t b)
{
        return a + b > COST_CAP ? COST_CAP : a + b;
}

static uint64_t cost_mul(uint64_t a, uint64_t b)
{
        if (a && b > COST_CAP / a)
                return COST_CAP;
        return a * b;
}

struct cost {
        uint64_t cost;   /* field resolutions */
        uint64_t fields; /* fields once fragments are expanded */
};

/* The cost of set selected on parent (NULL when unknown: every field then
 * counts 1). Fragments count with their memoised cost; recursion follows
 * the document's nesting, which the parser caps. */
static struct cost selset_cost(struct vctx *c,
                               const struct mls__gql_selset *set,
                               const struct mls__gql_type *parent)
{
        struct cost sum = {0, 0}, sub;
        int fi;

        for (const struct mls__gql_selection *s = set->first; s; s = s->next) {
                switch (s->kind) {
                case MLS__GQL_S_FIELD: {
                        const struct mls__gql_field *f =
                                parent ? mls__gql_schema_field(c->s, parent,
                                                               s->name)
                                       : NULL;
                        const struct mls__gql_type *t = f ? f->type : NULL;
                        uint64_t mult = 1, item;
                        bool list = false;

                        for (; t && (t->kind == MLS__GQL_NON_NULL ||
                                     t->kind == MLS__GQL_LIST);
                             t = t->of) {
                                if (t->kind != MLS__GQL_LIST)
                                        continue;
                                /* the declared size is the outer list's */
                                mult = cost_mul(
                                        mult,
                                        !list && f->list_size
                                                ? f->list_size
                                                : MLS__GQL_LIST_SIZE_DEFAULT);
                                list = true;
                        }
                        sub = s->set ? selset_cost(c, s->set, t)
                                     : (struct cost){list ? 1 : 0, 0};
                        item = cost_mul(mult, sub.cost);
                        sum.cost = cost_add(sum.cost, cost_add(1, item));
                        sum.fields =
                                cost_add(sum.fields, cost_add(1, sub.fields));
                        break;
                }
                case MLS__GQL_S_SPREAD:
                        frag_def(c, s->name, &fi);
                        if (fi >= 0 && c->frags[fi].depth_known) {
                                sum.cost =
                                        cost_add(sum.cost, c->frags[fi].cost);
                                sum.fields = cost_add(sum.fields,
                                                      c->frags[fi].nfields);
                        }
                        break;
                default:
                        sub = selset_cost(c, s->set,
                                          s->type_cond
                                                  ? mls__gql_schema_type(
                                                            c->s, s->type_cond)
                                                  : parent);
                        sum.cost = cost_add(sum.cost, sub.cost);
                        sum.fields = cost_add(sum.fields, sub.fields);
                        break;
                }
        }
        return sum;
}

static void report_cycle(struct vctx *c, const struct spread **path,
                         size_t from, size_t to, const char *name)
{
        struct mls_buf b;
        struct mls__gql_loc *locs;

        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        mls_buf_printf(&b, "Cannot spread fragment \"%s\" within itself", name);
        for (size_t i = from; i + 1 < to; i++)
                mls_buf_printf(&b, "%s\"%s\"", i == from ? " via " : ", ",
                               path[i]->node->name);
        mls_buf_putc(&b, '.');
        locs = malloc((to - from) * sizeof(*locs));
        if (locs) {
                for (size_t i = from; i < to; i++)
                        locs[i - from] = path[i]->node->loc;
                report_buf(c, locs, to - from, mls_buf_cstr(&b));
                free(locs);
        }
        mls_buf_free(&b);
}

/* graphql-js's detectCycleRecursive(), with an explicit stack. */
static void cycles_from(struct vctx *c, unsigned start)
{
        struct frame {
                unsigned frag;
                const struct spread *next;
        } * stack;
        const struct spread **path;
        size_t n = 0;

        if (c->frags[start].visited)
                return;
        stack = malloc((c->nfrags + 1) * sizeof(*stack));
        path = malloc((c->nfrags + 1) * sizeof(*path));
        if (!stack || !path) {
                free(stack);
                free(path);
                c->oom = c->stop = true;
                return;
        }
        c->frags[start].visited = true;
        c->frags[start].path_index = 0;
        stack[n++] = (struct frame){start, c->frags[start].spreads};
        while (n > 0) {
                struct frame *top = &stack[n - 1];
                struct definfo *f = &c->frags[top->frag];
                const struct spread *sp = top->next;
                struct definfo *g;

                if (!sp) {
                        /* post-order: every fragment it spreads is done */
                        f->path_index = -1;
                        f->depth = selset_depth(c, f->def->set);
                        {
                                struct cost fc = selset_cost(
                                        c, f->def->set,
                                        mls__gql_schema_type(
                                                c->s, f->def->type_cond));
                                f->cost = fc.cost;
                                f->nfields = fc.fields;
                        }
                        f->depth_known = true;
                        n--;
                        continue;
                }
                top->next = sp->next;
                if (sp->frag < 0)
                        continue;
                g = &c->frags[sp->frag];
                path[n - 1] = sp;
                if (g->path_index >= 0) {
                        c->has_cycles = true;
                        report_cycle(c, path, (size_t)g->path_index, n,
                                     g->def->name);
                        continue;
                }
                if (g->visited)
                        continue;
                g->visited = true;
                g->path_index = (int)n;
                stack[n++] = (struct frame){(unsigned)sp->frag, g->spreads};
        }
        free(stack);
        free(path);
}

/* --- operations: variables, subscriptions, depth
 * ------------------------------------------ */

static bool subtype(const struct mls__gql_type *sub,
                    const struct mls__gql_type *super)
{
        if (mls__gql_type_equal(sub, super))
                return true;
        if (super->kind == MLS__GQL_NON_NULL)
                return sub->kind == MLS__GQL_NON_NULL &&
                       subtype(sub->of, super->of);
        if (sub->kind == MLS__GQL_NON_NULL)
                return subtype(sub->of, super);
        if (super->kind == MLS__GQL_LIST)
                return sub->kind == MLS__GQL_LIST &&
                       subtype(sub->of, super->of);
        return false;
}

static bool allowed_usage(const struct mls__gql_type *var_type,
                          const struct mls__gql_value *var_default,
                          const struct usage *u)
{
        const struct mls__gql_type *loc = u->type;

        if (loc->kind == MLS__GQL_NON_NULL &&
            var_type->kind != MLS__GQL_NON_NULL) {
                bool has_default =
                        var_default && var_default->kind != MLS__GQL_V_NULL;
                if (!has_default && !u->location_default)
                        return false;
                return subtype(var_type, loc->of);
        }
        return subtype(var_type, loc);
}

static void check_usage(struct vctx *c, struct definfo *op,
                        const struct usage *u, struct mls__gql_map *vars,
                        const struct mls__gql_type **vtypes,
                        const struct mls__gql_vardef **vdefs, bool *used)
{
        const struct mls__gql_definition *d = op->def;
        unsigned *i = mls__gql_map_get(vars, u->name);
        struct mls_buf a, b;

        if (!i) {
                struct mls__gql_loc locs[2] = {u->loc, d->loc};
                if (d->name)
                        report_locs(c, locs, 2,
                                    "Variable \"$%s\" is not defined by "
                                    "operation \"%s\".",
                                    u->name, d->name);
                else
                        report_locs(c, locs, 2,
                                    "Variable \"$%s\" is not defined.",
                                    u->name);
                return;
        }
        used[*i] = true;
        if (!u->type || !vtypes[*i])
                return;
        if (allowed_usage(vtypes[*i], vdefs[*i]->default_value, u))
                return;
        mls_buf_init(&a, MLS__GQL_BUF_LIMIT);
        mls_buf_init(&b, MLS__GQL_BUF_LIMIT);
        {
                struct mls__gql_loc locs[2] = {vdefs[*i]->loc, u->loc};
                report_locs(c, locs, 2,
                            "Variable \"$%s\" of type \"%s\" used in position "
                            "expecting type \"%s\".",
                            u->name, type_str(&a, vtypes[*i]),
                            type_str(&b, u->type));
        }
        mls_buf_free(&a);
        mls_buf_free(&b);
}

static void check_op_variables(struct vctx *c, struct definfo *op)
{
        const struct mls__gql_definition *d = op->def;
        unsigned nv = d->nvardefs, i = 0;
        const struct mls__gql_type **vtypes;
        const struct mls__gql_vardef **vdefs;
        struct mls__gql_map vars;
        unsigned *queue;
        size_t qh = 0, qt = 0;
        bool *used;

        vtypes = v_alloc(c, (nv + 1) * sizeof(*vtypes));
        vdefs = v_alloc(c, (nv + 1) * sizeof(*vdefs));
        used = v_alloc(c, (nv + 1) * sizeof(*used));
        queue = malloc((c->nfrags + 1) * sizeof(*queue));
        if (!vtypes || !vdefs || !used || !queue) {
                free(queue);
                c->oom = c->stop = true;
                return;
        }
        mls__gql_map_init(&vars, &c->arena);
        for (const struct mls__gql_vardef *v = d->vardefs; v; v = v->next) {
                vdefs[i] = v;
                vtypes[i] = mls__gql_schema_typeref(c->s, &c->arena, v->type);
                if (vtypes[i] && !mls__gql_is_input_type(vtypes[i]))
                        vtypes[i] = NULL;
                mls__gql_map_put(&vars, v->name, i);
                i++;
        }
        /* this operation's usages, then those of every fragment it reaches
         * (breadth first, each fragment once) */
        c->op_mark++;
        for (const struct usage *u = op->usages; u && !c->stop; u = u->next)
                check_usage(c, op, u, &vars, vtypes, vdefs, used);
        for (const struct spread *sp = op->spreads; sp; sp = sp->next)
                if (sp->frag >= 0 && c->frags[sp->frag].mark != c->op_mark) {
                        c->frags[sp->frag].mark = c->op_mark;
                        queue[qt++] = (unsigned)sp->frag;
                }
        while (qh < qt) {
                struct definfo *f = &c->frags[queue[qh++]];
                f->used = true;
                for (const struct usage *u = f->usages; u && !c->stop;
                     u = u->next)
                        check_usage(c, op, u, &vars, vtypes, vdefs, used);
                for (const struct spread *sp = f->spreads; sp; sp = sp->next)
                        if (sp->frag >= 0 &&
                            c->frags[sp->frag].mark != c->op_mark) {
                                c->frags[sp->frag].mark = c->op_mark;
                                queue[qt++] = (unsigned)sp->frag;
                        }
        }
        free(queue);
        i = 0;
        for (const struct mls__gql_vardef *v = d->vardefs; v && !c->stop;
             v = v->next, i++) {
                unsigned *first = mls__gql_map_get(&vars, v->name);
                if (used[i] || (first && used[*first]))
                        continue;
                if (d->name)
                        report(c, v->loc,
                               "Variable \"$%s\" is never used in operation "
                               "\"%s\".",
                               v->name, d->name);
                else
                        report(c, v->loc, "Variable \"$%s\" is never used.",
                               v->name);
        }
}

static bool literal_skips(const struct mls__gql_directive *dirs)
{
        for (const struct mls__gql_directive *d = dirs; d; d = d->next) {
                bool skip = strcmp(d->name, "skip") == 0;
                if (!skip && strcmp(d->name, "include") != 0)
                        continue;
                for (const struct mls__gql_arg *a = d->args; a; a = a->next)
                        if (strcmp(a->name, "if") == 0 &&
                            a->value->kind == MLS__GQL_V_BOOLEAN &&
                            a->value->boolean == skip)
                                return true;
        }
        return false;
}

static void check_subscription(struct vctx *c, struct definfo *op)
{
        const struct mls__gql_definition *d = op->def;
        struct cvec f = {0};
        struct mls__gql_arena tmp;
        struct mls__gql_map m;
        struct lvec extra = {0};
        unsigned keys = 0;

        /* graphql-js collects the root fields without variables; literal
         * @skip/@include still apply */
        collect(c, d->set, c->s->subscription, &f);
        mls__gql_arena_init(&tmp);
        mls__gql_map_init(&m, &tmp);
        for (size_t i = 0; i < f.n; i++) {
                if (literal_skips(f.v[i].node->directives))
                        continue;
                if (mls__gql_map_put(&m, f.v[i].key, keys) == 0)
                        keys++;
                if (*mls__gql_map_get(&m, f.v[i].key) > 0)
                        lvec_push(&extra, f.v[i].node->loc);
        }
        if (keys > 1) {
                if (d->name)
                        report_locs(c, extra.v, extra.n,
                                    "Subscription \"%s\" must select only "
                                    "one top level field.",
                                    d->name);
                else
                        report_locs(c, extra.v, extra.n,
                                    "Anonymous Subscription must select only "
                                    "one top level field.");
        }
        mls__gql_map_init(&m, &tmp);
        for (size_t i = 0; i < f.n && !c->stop; i++) {
                struct lvec nodes = {0};
                if (literal_skips(f.v[i].node->directives) ||
                    strncmp(f.v[i].node->name, "__", 2) != 0 ||
                    mls__gql_map_put(&m, f.v[i].key, 0) != 0)
                        continue;
                for (size_t j = i; j < f.n; j++)
                        if (strcmp(f.v[j].key, f.v[i].key) == 0)
                                lvec_push(&nodes, f.v[j].node->loc);
                if (d->name)
                        report_locs(c, nodes.v, nodes.n,
                                    "Subscription \"%s\" must not select an "
                                    "introspection top level field.",
                                    d->name);
                else
                        report_locs(c, nodes.v, nodes.n,
                                    "Anonymous Subscription must not select "
                                    "an introspection top level field.");
                free(nodes.v);
        }
        free(extra.v);
        free(f.v);
        mls__gql_arena_free(&tmp);
}

/* The cost limit. An operation with more fields than a plan may hold is
 * left to the executor's error for that ("Operation selects more than N
 * fields..."), which it reports before doing any work. */
static void check_cost(struct vctx *c, const struct mls__gql_definition *d)
{
        const struct mls__gql_type *root = d->op == MLS_GQL_QUERY ? c->s->query
                                           : d->op == MLS_GQL_MUTATION
                                                   ? c->s->mutation
                                                   : c->s->subscription;
        struct cost oc;

        if (!root || c->errors)
                return;
        oc = selset_cost(c, d->set, root);
        if (oc.fields <= c->lim->max_plan_fields && oc.cost > c->lim->max_cost)
                report(c, d->loc,
                       "Operation costs %llu field resolutions, more than the "
                       "limit of %lu.",
                       (unsigned long long)oc.cost, c->lim->max_cost);
}

/* --- entry point
 * ----------------------------------------------------------------------------
 */

json_t *mls__gql_validate(const struct mls_gql_schema *s,
                          const struct mls__gql_document *doc,
                          const struct mls_gql_limits *lim)
{
        struct vctx c;
        struct mls__gql_map opnames;
        const struct mls__gql_definition *d;
        unsigned oi = 0, fi = 0;

        memset(&c, 0, sizeof(c));
        c.s = s;
        c.doc = doc;
        c.lim = lim;
        mls__gql_arena_init(&c.arena);
        mls__gql_map_init(&c.fragmap, &c.arena);
        mls__gql_map_init(&opnames, &c.arena);
        c.pending_tail = &c.pending;
        c.frags = v_alloc(&c, (doc->nfrags + 1) * sizeof(*c.frags));
        c.ops = v_alloc(&c, (doc->nops + 1) * sizeof(*c.ops));
        c.type_names = v_alloc(&c, (s->ntypes + 1) * sizeof(*c.type_names));
        c.visit = v_alloc(&c, (doc->nfrags + 1) * sizeof(*c.visit));
        if (c.stop)
                goto out;
        for (unsigned i = 0; i < s->ntypes; i++)
                c.type_names[c.ntype_names++] = s->types[i]->name;
        c.nfrags = doc->nfrags;
        c.nops = doc->nops;

        /* names: UniqueOperationNames, LoneAnonymousOperation,
         * UniqueFragmentNames */
        for (d = doc->defs; d && !c.stop; d = d->next) {
                struct mls__gql_map *m = d->is_fragment ? &c.fragmap : &opnames;
                unsigned idx = d->is_fragment ? fi : oi;
                int r = 0;
                if (d->is_fragment)
                        init_info(&c.frags[fi++], d);
                else
                        init_info(&c.ops[oi++], d);
                if (!d->name) {
                        if (doc->nops > 1)
                                report(&c, d->loc,
                                       "This anonymous operation must be the "
                                       "only defined operation.");
                        continue;
                }
                r = mls__gql_map_put(m, d->name, idx);
                if (r < 0) {
                        c.oom = c.stop = true;
                } else if (r == 1) {
                        unsigned first = *mls__gql_map_get(m, d->name);
                        struct mls__gql_loc locs[2] = {
                                d->is_fragment ? c.frags[first].def->name_loc
                                               : c.ops[first].def->name_loc,
                                d->name_loc};
                        report_locs(&c, locs, 2,
                                    "There can be only one %s named \"%s\".",
                                    d->is_fragment ? "fragment" : "operation",
                                    d->name);
                }
        }

        /* pass A */
        oi = fi = 0;
        for (d = doc->defs; d && !c.stop; d = d->next)
                walk_definition(&c,
                                d->is_fragment ? &c.frags[fi++] : &c.ops[oi++]);

        /* pass B */
        oi = fi = 0;
        for (d = doc->defs; d && !c.stop; d = d->next) {
                if (d->is_fragment) {
                        cycles_from(&c, fi++);
                        continue;
                }
                struct definfo *op = &c.ops[oi++];
                check_op_variables(&c, op);
                if (d->op == MLS_GQL_SUBSCRIPTION && s->subscription)
                        check_subscription(&c, op);
        }
        if (!c.has_cycles)
                for (struct pending *pd = c.pending; pd && !c.stop;
                     pd = pd->next)
                        check_overlap(&c, pd->set, pd->parent);
        if (!c.has_cycles && !c.stop) {
                oi = 0;
                for (d = doc->defs; d && !c.stop; d = d->next) {
                        unsigned depth;
                        if (d->is_fragment)
                                continue;
                        depth = selset_depth(&c, d->set);
                        oi++;
                        if (depth > lim->max_field_depth)
                                report(&c, d->loc,
                                       "Operation is nested %u fields deep, "
                                       "deeper than the limit of %u.",
                                       depth, lim->max_field_depth);
                        check_cost(&c, d);
                }
        }

        /* pass C: NoUnusedFragments */
        for (unsigned i = 0; i < c.nfrags && !c.stop; i++)
                if (!c.frags[i].used &&
                    !c.frags[*mls__gql_map_get(&c.fragmap,
                                               c.frags[i].def->name)]
                             .used)
                        report(&c, c.frags[i].def->loc,
                               "Fragment \"%s\" is never used.",
                               c.frags[i].def->name);
out:
        if (c.oom) {
                json_decref(c.errors);
                c.errors = NULL;
                mls__gql_errors_push(&c.errors, mls__gql_error("Out of memory.",
                                                               NULL, 0, NULL));
        }
        mls__gql_arena_free(&c.arena);
        return c.errors;
}
