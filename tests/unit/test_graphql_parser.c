/*
 * The GraphQL parser: the executable grammar, graphql-js's messages, and
 * the caps that keep hostile documents cheap.
 */
#include <stdlib.h>

#include "graphql/graphql_int.h"
#include "test.h"

struct parsed {
        struct mls__gql_arena arena;
        struct mls__gql_document *doc;
        char err[512];
        struct mls__gql_loc loc;
};

static struct mls__gql_document *parse_with(struct parsed *p, const char *text,
                                            size_t len,
                                            const struct mls_gql_limits *lim)
{
        memset(p, 0, sizeof(*p));
        mls__gql_arena_init(&p->arena);
        p->doc = mls__gql_parse(&p->arena, text, len, lim, p->err,
                                sizeof(p->err), &p->loc);
        return p->doc;
}

static struct mls__gql_document *parse(struct parsed *p, const char *text)
{
        return parse_with(p, text, strlen(text), NULL);
}

static void done(struct parsed *p)
{
        mls__gql_arena_free(&p->arena);
}

/* Parses text, expecting an error; returns the message (static). */
static const char *parse_error(const char *text, unsigned *line,
                               unsigned *column)
{
        static char msg[512];
        struct parsed p;

        if (parse(&p, text))
                snprintf(msg, sizeof(msg), "(parsed)");
        else
                snprintf(msg, sizeof(msg), "%s", p.err);
        if (line)
                *line = p.loc.line;
        if (column)
                *column = p.loc.column;
        done(&p);
        return msg;
}

static const char *printed(const struct mls__gql_value *v)
{
        static char out[512];
        struct mls_buf b;

        mls_buf_init(&b, 1 << 20);
        mls__gql_print_value(&b, v, false);
        snprintf(out, sizeof(out), "%s", mls_buf_cstr(&b));
        mls_buf_free(&b);
        return out;
}

MLS_TEST(graphql_parser_full_document)
{
        static const char text[] =
                "query Q($a: Int = 3, $b: [String!]! @dir, $c: In = {x: "
                "[1, 2.5, \"s\", true, null, ENUM]}) @q(x: 1) {\n"
                "  alias: field(arg: $a, o: {k: $b}) @skip(if: false) {\n"
                "    ...Frag @include(if: true)\n"
                "    ... on T @i { x }\n"
                "    ... @d { y }\n"
                "  }\n"
                "}\n"
                "mutation M { m }\n"
                "subscription S { s }\n"
                "fragment Frag on T @f { z }\n";
        struct parsed p;
        const struct mls__gql_definition *op, *frag;
        const struct mls__gql_vardef *v;
        const struct mls__gql_selection *f, *s;

        CHECK(parse(&p, text));
        CHECK_INT_EQ(p.doc->nops, 3);
        CHECK_INT_EQ(p.doc->nfrags, 1);
        op = p.doc->defs;
        CHECK_STR_EQ(op->name, "Q");
        CHECK_INT_EQ(op->op, MLS_GQL_QUERY);
        CHECK_INT_EQ(op->nvardefs, 3);
        v = op->vardefs;
        CHECK_STR_EQ(v->name, "a");
        CHECK_INT_EQ(v->type->kind, MLS__GQL_T_NAMED);
        CHECK_STR_EQ(printed(v->default_value), "3");
        v = v->next;
        CHECK_INT_EQ(v->type->kind, MLS__GQL_T_NON_NULL);
        CHECK_INT_EQ(v->type->of->kind, MLS__GQL_T_LIST);
        CHECK_INT_EQ(v->type->of->of->kind, MLS__GQL_T_NON_NULL);
        CHECK_STR_EQ(v->type->of->of->of->name, "String");
        CHECK_STR_EQ(v->directives->name, "dir");
        v = v->next;
        CHECK_STR_EQ(printed(v->default_value),
                     "{x: [1, 2.5, \"s\", true, null, ENUM]}");
        CHECK_STR_EQ(op->directives->name, "q");
        f = op->set->first;
        CHECK_INT_EQ(f->kind, MLS__GQL_S_FIELD);
        CHECK_STR_EQ(f->alias, "alias");
        CHECK_STR_EQ(f->name, "field");
        CHECK_INT_EQ(f->loc.line, 2);
        CHECK_INT_EQ(f->loc.column, 3);
        CHECK_INT_EQ(f->name_loc.column, 10);
        CHECK_STR_EQ(f->args->name, "arg");
        CHECK_STR_EQ(printed(f->args->value), "$a");
        CHECK_STR_EQ(printed(f->args->next->value), "{k: $b}");
        CHECK_STR_EQ(f->directives->name, "skip");
        s = f->set->first;
        CHECK_INT_EQ(s->kind, MLS__GQL_S_SPREAD);
        CHECK_STR_EQ(s->name, "Frag");
        CHECK_STR_EQ(s->directives->name, "include");
        s = s->next;
        CHECK_INT_EQ(s->kind, MLS__GQL_S_INLINE);
        CHECK_STR_EQ(s->type_cond, "T");
        CHECK_STR_EQ(s->directives->name, "i");
        CHECK_STR_EQ(s->set->first->name, "x");
        s = s->next;
        CHECK_INT_EQ(s->kind, MLS__GQL_S_INLINE);
        CHECK(s->type_cond == NULL);
        CHECK_STR_EQ(s->directives->name, "d");
        CHECK_INT_EQ(op->next->op, MLS_GQL_MUTATION);
        CHECK_STR_EQ(op->next->name, "M");
        CHECK_INT_EQ(op->next->next->op, MLS_GQL_SUBSCRIPTION);
        frag = op->next->next->next;
        CHECK(frag->is_fragment);
        CHECK_STR_EQ(frag->name, "Frag");
        CHECK_STR_EQ(frag->type_cond, "T");
        CHECK_STR_EQ(frag->directives->name, "f");
        CHECK_INT_EQ(frag->loc.line, 10);
        done(&p);
}

MLS_TEST(graphql_parser_shorthand_and_values)
{
        struct parsed p;
        const struct mls__gql_arg *a;

        CHECK(parse(&p, "{ f(i: -12, fl: 1.5e3, s: \"a\\u00e9\", b: \"\"\"\n"
                        "  x\n  y\"\"\", t: true, f: false, n: null, e: RED, "
                        "l: [], o: {}, nested: [[1], {a: [$v]}]) }"));
        CHECK_INT_EQ(p.doc->defs->op, MLS_GQL_QUERY);
        CHECK(p.doc->defs->name == NULL);
        a = p.doc->defs->set->first->args;
        CHECK_INT_EQ(a->value->kind, MLS__GQL_V_INT);
        CHECK_STR_EQ(a->value->str, "-12");
        a = a->next;
        CHECK_INT_EQ(a->value->kind, MLS__GQL_V_FLOAT);
        a = a->next;
        CHECK_INT_EQ(a->value->kind, MLS__GQL_V_STRING);
        CHECK_STR_EQ(a->value->str, "a\xc3\xa9");
        a = a->next;
        CHECK(a->value->block);
        CHECK_STR_EQ(a->value->str, "x\ny");
        CHECK_STR_EQ(printed(a->value), "\"\"\"x\ny\"\"\"");
        a = a->next;
        CHECK(a->value->kind == MLS__GQL_V_BOOLEAN && a->value->boolean);
        a = a->next;
        CHECK(a->value->kind == MLS__GQL_V_BOOLEAN && !a->value->boolean);
        a = a->next;
        CHECK_INT_EQ(a->value->kind, MLS__GQL_V_NULL);
        a = a->next;
        CHECK_INT_EQ(a->value->kind, MLS__GQL_V_ENUM);
        CHECK_STR_EQ(a->value->str, "RED");
        a = a->next;
        CHECK(a->value->kind == MLS__GQL_V_LIST && a->value->count == 0);
        a = a->next;
        CHECK(a->value->kind == MLS__GQL_V_OBJECT && a->value->count == 0);
        a = a->next;
        CHECK_STR_EQ(printed(a->value), "[[1], {a: [$v]}]");
        done(&p);
}

MLS_TEST(graphql_parser_keywords_are_names)
{
        struct parsed p;

        /* keywords are only special where the grammar says so */
        CHECK(parse(&p, "query query { query: fragment(on: on, true: null) "
                        "... on on { subscription } } "
                        "fragment on_ on mutation { type }"));
        CHECK_STR_EQ(p.doc->defs->name, "query");
        CHECK_STR_EQ(p.doc->defs->set->first->alias, "query");
        CHECK_STR_EQ(p.doc->defs->set->first->name, "fragment");
        CHECK_STR_EQ(p.doc->defs->set->first->args->next->name, "true");
        CHECK_STR_EQ(p.doc->defs->set->first->next->type_cond, "on");
        done(&p);
}

MLS_TEST(graphql_parser_error_messages)
{
        unsigned line, col;

        CHECK_STR_EQ(parse_error("{}", &line, &col),
                     "Syntax Error: Expected Name, found \"}\".");
        CHECK_INT_EQ(line, 1);
        CHECK_INT_EQ(col, 2);
        CHECK_STR_EQ(parse_error("", &line, &col),
                     "Syntax Error: Unexpected <EOF>.");
        CHECK_STR_EQ(parse_error("{ a", NULL, NULL),
                     "Syntax Error: Expected Name, found <EOF>.");
        CHECK_STR_EQ(parse_error("query", NULL, NULL),
                     "Syntax Error: Expected \"{\", found <EOF>.");
        CHECK_STR_EQ(parse_error("{ a(x: ) }", NULL, NULL),
                     "Syntax Error: Unexpected \")\".");
        CHECK_STR_EQ(parse_error("{ a(x: [1 }", NULL, NULL),
                     "Syntax Error: Unexpected \"}\".");
        CHECK_STR_EQ(parse_error("{ a } b", NULL, NULL),
                     "Syntax Error: Unexpected Name \"b\".");
        CHECK_STR_EQ(parse_error("query ($v: Int = $w) { a }", &line, &col),
                     "Syntax Error: Unexpected variable \"$w\" in constant "
                     "value.");
        CHECK_INT_EQ(col, 18);
        CHECK_STR_EQ(parse_error("fragment on on T { a }", NULL, NULL),
                     "Syntax Error: Unexpected Name \"on\".");
        CHECK_STR_EQ(parse_error("fragment F T { a }", NULL, NULL),
                     "Syntax Error: Expected \"on\", found Name \"T\".");
        CHECK_STR_EQ(parse_error("\"d\" query { a }", NULL, NULL),
                     "Syntax Error: Unexpected description, descriptions are "
                     "supported only on type definitions.");
        CHECK_STR_EQ(parse_error("type T { a: Int }", NULL, NULL),
                     "Syntax Error: Unexpected Name \"type\".");
        CHECK_STR_EQ(parse_error("query ($a: Int!!) { a }", NULL, NULL),
                     "Syntax Error: Expected \"$\", found \"!\".");
        CHECK_STR_EQ(parse_error("{ a(x: \"s\" 1) }", NULL, NULL),
                     "Syntax Error: Expected Name, found Int \"1\".");
        CHECK_STR_EQ(
                parse_error("{ a(x: 1, y: \"\"\"q\"\"\" \"z\") }", NULL, NULL),
                "Syntax Error: Expected Name, found String \"z\".");
        CHECK_STR_EQ(parse_error("{\n  a\n  ?\n}", &line, &col),
                     "Syntax Error: Unexpected character: \"?\".");
        CHECK_INT_EQ(line, 3);
        CHECK_INT_EQ(col, 3);
}

MLS_TEST(graphql_parser_deep_nesting_is_refused)
{
        /* 10000 levels of each kind of nesting: an error, not a crash */
        static const char *const open[] = {"{a", "{a(x:", "query($v:"};
        static const char *const step[] = {"{a", "[", "["};
        size_t levels = 10000;

        for (int k = 0; k < 3; k++) {
                size_t sl = strlen(step[k]), len;
                char *text = malloc(strlen(open[k]) + levels * sl + 1);
                struct parsed p;
                CHECK(text);
                strcpy(text, open[k]);
                len = strlen(text);
                for (size_t i = 0; i < levels; i++, len += sl)
                        memcpy(text + len, step[k], sl);
                CHECK(parse_with(&p, text, len, NULL) == NULL);
                free(text);
                CHECK_STR_EQ(p.err, "Syntax Error: Document is nested deeper "
                                    "than 128 levels. Parsing aborted.");
                CHECK_INT_EQ(p.loc.line, 1);
                done(&p);
        }
}

MLS_TEST(graphql_parser_depth_limit_is_exact)
{
        struct mls_gql_limits lim = {0};
        struct parsed p;

        lim.max_parse_depth = 3;
        CHECK(parse_with(&p, "{a{b{c}}}", 9, &lim));
        done(&p);
        CHECK(!parse_with(&p, "{a{b{c{d}}}}", 12, &lim));
        CHECK_INT_EQ(p.loc.column, 7);
        done(&p);
}

MLS_TEST(graphql_parser_token_and_size_caps)
{
        struct mls_gql_limits lim = {0};
        struct parsed p;

        lim.max_tokens = 5;
        CHECK(parse_with(&p, "{ a b c }", 9, &lim));
        done(&p);
        CHECK(!parse_with(&p, "{ a b c d }", 11, &lim));
        CHECK_STR_EQ(p.err, "Syntax Error: Document contains more than 5 "
                            "tokens. Parsing aborted.");
        CHECK_INT_EQ(p.loc.column, 11);
        done(&p);
        lim.max_tokens = 0;
        lim.max_document_bytes = 8;
        CHECK(!parse_with(&p, "{ abcdef }", 10, &lim));
        CHECK_STR_EQ(p.err, "Document is larger than the limit of 8 bytes.");
        CHECK_INT_EQ(p.loc.line, 0);
        done(&p);
}

MLS_TEST(graphql_parser_huge_alias_count)
{
        /* 12000 aliased fields: parsed in one linear pass */
        size_t n = 12000, cap = n * 24 + 8, len = 0;
        char *text = malloc(cap);
        struct parsed p;
        unsigned count = 0;

        CHECK(text);
        text[len++] = '{';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(text + len, cap - len,
                                        " a%zu: __typename", i);
        text[len++] = '}';
        CHECK(parse_with(&p, text, len, NULL));
        free(text);
        for (const struct mls__gql_selection *s = p.doc->defs->set->first; s;
             s = s->next)
                count++;
        CHECK_INT_EQ(count, n);
        CHECK_INT_EQ(p.doc->defs->set->count, n);
        done(&p);
}

MLS_TEST(graphql_parser_nul_and_invalid_utf8)
{
        static const char nul[] = "{ a(x: \"\0\") \0 }";
        struct parsed p;

        CHECK(!parse_with(&p, nul, sizeof(nul) - 1, NULL));
        CHECK_STR_EQ(p.err, "Syntax Error: Unexpected character: U+0000.");
        CHECK_INT_EQ(p.loc.column, 13);
        done(&p);
        CHECK(!parse(&p, "{ a(x: \"\xfe\") }"));
        CHECK_CONTAINS(p.err, "Invalid UTF-8 sequence starting with byte "
                              "0xFE");
        done(&p);
        CHECK(!parse_with(&p, NULL, 0, NULL));
        CHECK_STR_EQ(p.err, "Syntax Error: Unexpected <EOF>.");
        done(&p);
}

MLS_TEST(graphql_parser_print_sorted_values)
{
        struct parsed p;

        CHECK(parse(&p, "{ f(a: {z: 1, b: {y: \"\\n\\u0001\", a: [2]}}) }"));
        {
                struct mls_buf b;
                mls_buf_init(&b, 1 << 20);
                mls__gql_print_value(&b, p.doc->defs->set->first->args->value,
                                     true);
                CHECK_STR_EQ(mls_buf_cstr(&b),
                             "{b: {a: [2], y: \"\\n\\u0001\"}, z: 1}");
                mls_buf_free(&b);
        }
        done(&p);
}
