/*
 * Recursive-descent parser for GraphQL executable documents (spec October
 * 2021, section 2). The AST lives in the caller's arena. Recursion depth is
 * capped by limits->max_parse_depth and the token count by max_tokens, so
 * hostile documents cost bounded stack and linear time. Messages follow
 * graphql-js 16 ("Syntax Error: Expected Name, found \"}\".").
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graphql/graphql_int.h"

struct parser {
        struct mls__gql_lexer lx;
        struct mls__gql_token tok;
        struct mls__gql_arena *arena;
        const struct mls_gql_limits *limits;
        unsigned tokens;
        unsigned depth;
        char *err;
        size_t err_size;
        struct mls__gql_loc *err_loc;
        bool failed;
};

__attribute__((format(printf, 3, 4))) static void
perr(struct parser *p, struct mls__gql_loc loc, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (p->failed)
                return;
        p->failed = true;
        *p->err_loc = loc;
        n = snprintf(p->err, p->err_size, "Syntax Error: ");
        if (n < 0 || (size_t)n >= p->err_size)
                return;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
        va_end(ap);
}

static void oom(struct parser *p)
{
        if (p->failed)
                return;
        p->failed = true;
        p->err_loc->line = 0;
        snprintf(p->err, p->err_size, "Out of memory.");
}

static void *alloc(struct parser *p, size_t n)
{
        void *v = mls__gql_arena_alloc(p->arena, n);

        if (!v)
                oom(p);
        return v;
}

static int advance(struct parser *p)
{
        if (p->failed)
                return -1;
        if (mls__gql_lex_next(&p->lx, &p->tok) < 0) {
                p->failed = true;
                *p->err_loc = p->lx.err_loc;
                return -1;
        }
        if (p->tok.kind != MLS__GQL_TOK_EOF &&
            ++p->tokens > p->limits->max_tokens) {
                perr(p, p->tok.loc,
                     "Document contains more than %u tokens. Parsing "
                     "aborted.",
                     p->limits->max_tokens);
                return -1;
        }
        return 0;
}

/* graphql-js getTokenDesc(): kind, and the value for valued tokens. */
static void token_desc(const struct mls__gql_token *t, char *out,
                       size_t out_size)
{
        const char *kind = mls__gql_lex_kind_desc(t->kind);
        size_t n, o;

        if (t->kind < MLS__GQL_TOK_NAME) {
                snprintf(out, out_size, "%s", kind);
                return;
        }
        /* Values are capped so a message stays readable; control bytes
         * are shown escaped and UTF-8 sequences are never cut. */
        o = (size_t)snprintf(out, out_size, "%s \"", kind);
        n = t->value_len;
        for (size_t i = 0; i < n;) {
                const unsigned char *c = (const unsigned char *)t->value + i;
                size_t l = mls_utf8_len(c, n - i);
                if (o + 12 + (l ? l : 1) >= out_size)
                        break;
                if (l == 0) {
                        out[o++] = '?';
                        i++;
                } else if (*c < 0x20) {
                        o += (size_t)snprintf(out + o, out_size - o, "\\u%04X",
                                              *c);
                        i++;
                } else {
                        memcpy(out + o, c, l);
                        o += l;
                        i += l;
                }
        }
        out[o++] = '"';
        out[o] = '\0';
}

static void unexpected(struct parser *p)
{
        char d[160];

        token_desc(&p->tok, d, sizeof(d));
        perr(p, p->tok.loc, "Unexpected %s.", d);
}

static bool peek(struct parser *p, enum mls__gql_tok kind)
{
        return !p->failed && p->tok.kind == kind;
}

static bool peek_keyword(struct parser *p, const char *kw)
{
        size_t n = strlen(kw);

        return peek(p, MLS__GQL_TOK_NAME) && p->tok.value_len == n &&
               memcmp(p->tok.value, kw, n) == 0;
}

static int expect(struct parser *p, enum mls__gql_tok kind)
{
        char d[160];

        if (p->failed)
                return -1;
        if (p->tok.kind == kind)
                return advance(p);
        token_desc(&p->tok, d, sizeof(d));
        perr(p, p->tok.loc, "Expected %s, found %s.",
             mls__gql_lex_kind_desc(kind), d);
        return -1;
}

static bool optional(struct parser *p, enum mls__gql_tok kind)
{
        if (!peek(p, kind))
                return false;
        advance(p);
        return true;
}

static int expect_keyword(struct parser *p, const char *kw)
{
        char d[160];

        if (p->failed)
                return -1;
        if (peek_keyword(p, kw))
                return advance(p);
        token_desc(&p->tok, d, sizeof(d));
        perr(p, p->tok.loc, "Expected \"%s\", found %s.", kw, d);
        return -1;
}

static const char *parse_name(struct parser *p, struct mls__gql_loc *loc)
{
        char *s;

        if (p->failed)
                return NULL;
        if (p->tok.kind != MLS__GQL_TOK_NAME) {
                expect(p, MLS__GQL_TOK_NAME);
                return NULL;
        }
        if (loc)
                *loc = p->tok.loc;
        s = mls__gql_arena_strndup(p->arena, p->tok.value, p->tok.value_len);
        if (!s) {
                oom(p);
                return NULL;
        }
        if (advance(p) < 0)
                return NULL;
        return s;
}

static int enter(struct parser *p)
{
        if (++p->depth > p->limits->max_parse_depth) {
                perr(p, p->tok.loc,
                     "Document is nested deeper than %u levels. Parsing "
                     "aborted.",
                     p->limits->max_parse_depth);
                return -1;
        }
        return 0;
}

static void leave(struct parser *p)
{
        p->depth--;
}

static struct mls__gql_value *parse_value(struct parser *p, bool is_const);

static struct mls__gql_value *parse_list(struct parser *p, bool is_const,
                                         struct mls__gql_value *v)
{
        struct mls__gql_value **tail = &v->items;

        v->kind = MLS__GQL_V_LIST;
        if (enter(p) < 0 || advance(p) < 0)
                return NULL;
        while (!optional(p, MLS__GQL_TOK_BRACKET_R)) {
                struct mls__gql_value *item = parse_value(p, is_const);
                if (!item)
                        return NULL;
                *tail = item;
                tail = &item->next;
                v->count++;
        }
        leave(p);
        return p->failed ? NULL : v;
}

static struct mls__gql_value *parse_object(struct parser *p, bool is_const,
                                           struct mls__gql_value *v)
{
        struct mls__gql_objfield **tail = &v->fields;

        v->kind = MLS__GQL_V_OBJECT;
        if (enter(p) < 0 || advance(p) < 0)
                return NULL;
        while (!optional(p, MLS__GQL_TOK_BRACE_R)) {
                struct mls__gql_objfield *f = alloc(p, sizeof(*f));
                if (!f || !(f->name = parse_name(p, &f->loc)) ||
                    expect(p, MLS__GQL_TOK_COLON) < 0 ||
                    !(f->value = parse_value(p, is_const)))
                        return NULL;
                *tail = f;
                tail = &f->next;
                v->count++;
        }
        leave(p);
        return p->failed ? NULL : v;
}

static struct mls__gql_value *parse_value(struct parser *p, bool is_const)
{
        struct mls__gql_value *v;

        if (p->failed || !(v = alloc(p, sizeof(*v))))
                return NULL;
        v->loc = p->tok.loc;
        switch (p->tok.kind) {
        case MLS__GQL_TOK_BRACKET_L:
                return parse_list(p, is_const, v);
        case MLS__GQL_TOK_BRACE_L:
                return parse_object(p, is_const, v);
        case MLS__GQL_TOK_INT:
        case MLS__GQL_TOK_FLOAT:
                v->kind = p->tok.kind == MLS__GQL_TOK_INT ? MLS__GQL_V_INT
                                                          : MLS__GQL_V_FLOAT;
                v->str = mls__gql_arena_strndup(p->arena, p->tok.value,
                                                p->tok.value_len);
                v->len = p->tok.value_len;
                if (!v->str) {
                        oom(p);
                        return NULL;
                }
                return advance(p) < 0 ? NULL : v;
        case MLS__GQL_TOK_STRING:
        case MLS__GQL_TOK_BLOCK_STRING:
                v->kind = MLS__GQL_V_STRING;
                v->block = p->tok.kind == MLS__GQL_TOK_BLOCK_STRING;
                v->str = p->tok.value; /* already in the arena */
                v->len = p->tok.value_len;
                return advance(p) < 0 ? NULL : v;
        case MLS__GQL_TOK_NAME:
                if (peek_keyword(p, "true") || peek_keyword(p, "false")) {
                        v->kind = MLS__GQL_V_BOOLEAN;
                        v->boolean = p->tok.value[0] == 't';
                        return advance(p) < 0 ? NULL : v;
                }
                if (peek_keyword(p, "null")) {
                        v->kind = MLS__GQL_V_NULL;
                        return advance(p) < 0 ? NULL : v;
                }
                v->kind = MLS__GQL_V_ENUM;
                v->str = parse_name(p, NULL);
                return v->str ? v : NULL;
        case MLS__GQL_TOK_DOLLAR:
                if (is_const) {
                        if (advance(p) < 0)
                                return NULL;
                        if (p->tok.kind == MLS__GQL_TOK_NAME)
                                perr(p, v->loc,
                                     "Unexpected variable \"$%.*s\" in "
                                     "constant value.",
                                     (int)(p->tok.value_len > 100
                                                   ? 100
                                                   : p->tok.value_len),
                                     p->tok.value);
                        else
                                unexpected(p);
                        return NULL;
                }
                v->kind = MLS__GQL_V_VARIABLE;
                if (advance(p) < 0)
                        return NULL;
                v->str = parse_name(p, NULL);
                return v->str ? v : NULL;
        default:
                unexpected(p);
                return NULL;
        }
}

static struct mls__gql_arg *parse_arguments(struct parser *p, bool is_const)
{
        struct mls__gql_arg *first = NULL, **tail = &first;

        if (!peek(p, MLS__GQL_TOK_PAREN_L))
                return NULL;
        advance(p);
        do {
                struct mls__gql_arg *a = alloc(p, sizeof(*a));
                if (!a || !(a->name = parse_name(p, &a->loc)) ||
                    expect(p, MLS__GQL_TOK_COLON) < 0 ||
                    !(a->value = parse_value(p, is_const)))
                        return NULL;
                *tail = a;
                tail = &a->next;
        } while (!optional(p, MLS__GQL_TOK_PAREN_R) && !p->failed);
        return first;
}

static struct mls__gql_directive *parse_directives(struct parser *p,
                                                   bool is_const)
{
        struct mls__gql_directive *first = NULL, **tail = &first;

        while (peek(p, MLS__GQL_TOK_AT)) {
                struct mls__gql_directive *d = alloc(p, sizeof(*d));
                if (!d)
                        return NULL;
                d->loc = p->tok.loc;
                if (advance(p) < 0 || !(d->name = parse_name(p, NULL)))
                        return NULL;
                d->args = parse_arguments(p, is_const);
                if (p->failed)
                        return NULL;
                *tail = d;
                tail = &d->next;
        }
        return first;
}

static struct mls__gql_typeref *parse_type(struct parser *p)
{
        struct mls__gql_typeref *t = alloc(p, sizeof(*t));

        if (!t)
                return NULL;
        t->loc = p->tok.loc;
        if (optional(p, MLS__GQL_TOK_BRACKET_L)) {
                if (enter(p) < 0)
                        return NULL;
                t->kind = MLS__GQL_T_LIST;
                if (!(t->of = parse_type(p)) ||
                    expect(p, MLS__GQL_TOK_BRACKET_R) < 0)
                        return NULL;
                leave(p);
        } else {
                t->kind = MLS__GQL_T_NAMED;
                if (!(t->name = parse_name(p, NULL)))
                        return NULL;
        }
        if (peek(p, MLS__GQL_TOK_BANG)) {
                struct mls__gql_typeref *nn = alloc(p, sizeof(*nn));
                if (!nn)
                        return NULL;
                nn->kind = MLS__GQL_T_NON_NULL;
                nn->loc = t->loc;
                nn->of = t;
                advance(p);
                return p->failed ? NULL : nn;
        }
        return t;
}

static struct mls__gql_selset *parse_selset(struct parser *p);

static struct mls__gql_selection *parse_selection(struct parser *p)
{
        struct mls__gql_selection *s = alloc(p, sizeof(*s));

        if (!s)
                return NULL;
        s->loc = p->tok.loc;
        if (optional(p, MLS__GQL_TOK_SPREAD)) {
                if (peek(p, MLS__GQL_TOK_NAME) && !peek_keyword(p, "on")) {
                        s->kind = MLS__GQL_S_SPREAD;
                        if (!(s->name = parse_name(p, &s->name_loc)))
                                return NULL;
                        s->directives = parse_directives(p, false);
                        return p->failed ? NULL : s;
                }
                s->kind = MLS__GQL_S_INLINE;
                if (peek_keyword(p, "on")) {
                        advance(p);
                        if (!(s->type_cond = parse_name(p, &s->type_cond_loc)))
                                return NULL;
                }
                s->directives = parse_directives(p, false);
                if (p->failed || !(s->set = parse_selset(p)))
                        return NULL;
                return s;
        }
        s->kind = MLS__GQL_S_FIELD;
        if (!(s->name = parse_name(p, &s->name_loc)))
                return NULL;
        if (optional(p, MLS__GQL_TOK_COLON)) {
                s->alias = s->name;
                if (!(s->name = parse_name(p, &s->name_loc)))
                        return NULL;
        }
        s->args = parse_arguments(p, false);
        if (!p->failed)
                s->directives = parse_directives(p, false);
        if (!p->failed && peek(p, MLS__GQL_TOK_BRACE_L))
                s->set = parse_selset(p);
        return p->failed ? NULL : s;
}

static struct mls__gql_selset *parse_selset(struct parser *p)
{
        struct mls__gql_selset *set = alloc(p, sizeof(*set));
        struct mls__gql_selection **tail;

        if (!set)
                return NULL;
        set->loc = p->tok.loc;
        tail = &set->first;
        if (enter(p) < 0 || expect(p, MLS__GQL_TOK_BRACE_L) < 0)
                return NULL;
        do {
                struct mls__gql_selection *s = parse_selection(p);
                if (!s)
                        return NULL;
                *tail = s;
                tail = &s->next;
                set->count++;
        } while (!optional(p, MLS__GQL_TOK_BRACE_R) && !p->failed);
        leave(p);
        return p->failed ? NULL : set;
}

static struct mls__gql_vardef *parse_vardefs(struct parser *p, unsigned *n)
{
        struct mls__gql_vardef *first = NULL, **tail = &first;

        if (!peek(p, MLS__GQL_TOK_PAREN_L))
                return NULL;
        advance(p);
        do {
                struct mls__gql_vardef *v = alloc(p, sizeof(*v));
                if (!v)
                        return NULL;
                v->loc = p->tok.loc;
                if (expect(p, MLS__GQL_TOK_DOLLAR) < 0 ||
                    !(v->name = parse_name(p, &v->name_loc)) ||
                    expect(p, MLS__GQL_TOK_COLON) < 0 ||
                    !(v->type = parse_type(p)))
                        return NULL;
                if (optional(p, MLS__GQL_TOK_EQUALS) &&
                    !(v->default_value = parse_value(p, true)))
                        return NULL;
                v->directives = parse_directives(p, true);
                if (p->failed)
                        return NULL;
                *tail = v;
                tail = &v->next;
                (*n)++;
        } while (!optional(p, MLS__GQL_TOK_PAREN_R) && !p->failed);
        return first;
}

static struct mls__gql_definition *parse_operation(struct parser *p)
{
        struct mls__gql_definition *d = alloc(p, sizeof(*d));

        if (!d)
                return NULL;
        d->loc = p->tok.loc;
        d->op = MLS_GQL_QUERY;
        if (peek(p, MLS__GQL_TOK_BRACE_L)) {
                d->set = parse_selset(p);
                return d->set ? d : NULL;
        }
        if (peek_keyword(p, "query"))
                d->op = MLS_GQL_QUERY;
        else if (peek_keyword(p, "mutation"))
                d->op = MLS_GQL_MUTATION;
        else if (peek_keyword(p, "subscription"))
                d->op = MLS_GQL_SUBSCRIPTION;
        else {
                unexpected(p);
                return NULL;
        }
        advance(p);
        if (peek(p, MLS__GQL_TOK_NAME) &&
            !(d->name = parse_name(p, &d->name_loc)))
                return NULL;
        d->vardefs = parse_vardefs(p, &d->nvardefs);
        if (!p->failed)
                d->directives = parse_directives(p, false);
        if (!p->failed)
                d->set = parse_selset(p);
        return p->failed ? NULL : d;
}

static struct mls__gql_definition *parse_fragment(struct parser *p)
{
        struct mls__gql_definition *d = alloc(p, sizeof(*d));

        if (!d)
                return NULL;
        d->is_fragment = true;
        d->loc = p->tok.loc;
        advance(p);
        if (peek_keyword(p, "on")) {
                unexpected(p);
                return NULL;
        }
        if (!(d->name = parse_name(p, &d->name_loc)) ||
            expect_keyword(p, "on") < 0 ||
            !(d->type_cond = parse_name(p, &d->type_cond_loc)))
                return NULL;
        d->directives = parse_directives(p, false);
        if (!p->failed)
                d->set = parse_selset(p);
        return p->failed ? NULL : d;
}

static struct mls__gql_definition *parse_definition(struct parser *p)
{
        if (peek(p, MLS__GQL_TOK_BRACE_L))
                return parse_operation(p);
        if (peek(p, MLS__GQL_TOK_STRING) ||
            peek(p, MLS__GQL_TOK_BLOCK_STRING)) {
                perr(p, p->tok.loc,
                     "Unexpected description, descriptions are supported "
                     "only on type definitions.");
                return NULL;
        }
        if (peek_keyword(p, "query") || peek_keyword(p, "mutation") ||
            peek_keyword(p, "subscription"))
                return parse_operation(p);
        if (peek_keyword(p, "fragment"))
                return parse_fragment(p);
        unexpected(p);
        return NULL;
}

struct mls__gql_document *mls__gql_parse(struct mls__gql_arena *arena,
                                         const char *text, size_t len,
                                         const struct mls_gql_limits *limits,
                                         char *err, size_t err_size,
                                         struct mls__gql_loc *err_loc)
{
        struct mls_gql_limits lim;
        struct parser p;
        struct mls__gql_document *doc = NULL;
        struct mls__gql_definition **tail;

        mls__gql_limits_fill(&lim, limits);
        err_loc->line = 0;
        err_loc->column = 0;
        if (len > lim.max_document_bytes) {
                snprintf(err, err_size,
                         "Document is larger than the limit of %zu bytes.",
                         lim.max_document_bytes);
                return NULL;
        }
        memset(&p, 0, sizeof(p));
        p.arena = arena;
        p.limits = &lim;
        p.err = err;
        p.err_size = err_size;
        p.err_loc = err_loc;
        mls__gql_lex_init(&p.lx, text ? text : "", text ? len : 0, arena, err,
                          err_size);
        if (advance(&p) < 0 || !(doc = alloc(&p, sizeof(*doc))))
                goto out;
        tail = &doc->defs;
        do {
                struct mls__gql_definition *d = parse_definition(&p);
                if (!d)
                        break;
                if (d->is_fragment)
                        d->index = doc->nfrags++;
                else
                        d->index = doc->nops++;
                *tail = d;
                tail = &d->next;
        } while (!peek(&p, MLS__GQL_TOK_EOF) && !p.failed);
out:
        mls__gql_lex_fini(&p.lx);
        return p.failed ? NULL : doc;
}
