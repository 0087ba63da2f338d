/*
 * The GraphQL lexer: tokens, values, locations and graphql-js's error
 * wording.
 */
#include <stdlib.h>

#include "graphql/graphql_int.h"
#include "test.h"

struct lexed {
        char text[2048]; /* tokens as "Kind:value" separated by spaces */
        char err[256];
        struct mls__gql_loc err_loc;
        struct mls__gql_token last[16]; /* first tokens, for locations */
        char val[16][64];               /* their values (the arena is gone) */
        int ntok;
};

/* Lexes src[0..len) to the end or the first error. */
static void lex_all(const char *src, size_t len, struct lexed *out)
{
        struct mls__gql_arena arena;
        struct mls__gql_lexer lx;
        struct mls__gql_token t;
        size_t o = 0;

        memset(out, 0, sizeof(*out));
        mls__gql_arena_init(&arena);
        mls__gql_lex_init(&lx, src, len, &arena, out->err, sizeof(out->err));
        for (;;) {
                if (mls__gql_lex_next(&lx, &t) < 0) {
                        out->err_loc = lx.err_loc;
                        break;
                }
                if (out->ntok < 16) {
                        out->last[out->ntok] = t;
                        memcpy(out->val[out->ntok], t.value ? t.value : "",
                               t.value_len < 64 ? t.value_len : 64);
                        out->last[out->ntok].value = NULL;
                }
                out->ntok++;
                if (t.kind == MLS__GQL_TOK_EOF)
                        break;
                if (t.kind >= MLS__GQL_TOK_NAME)
                        o += (size_t)snprintf(out->text + o,
                                              sizeof(out->text) - o,
                                              "%s%s:%.*s", o ? " " : "",
                                              mls__gql_lex_kind_desc(t.kind),
                                              (int)t.value_len, t.value);
                else
                        o += (size_t)snprintf(
                                out->text + o, sizeof(out->text) - o, "%s%s",
                                o ? " " : "", mls__gql_lex_kind_desc(t.kind));
                if (o >= sizeof(out->text))
                        o = sizeof(out->text) - 1; /* keep lexing */
        }
        mls__gql_lex_fini(&lx);
        mls__gql_arena_free(&arena);
}

static void lex_str(const char *src, struct lexed *out)
{
        lex_all(src, strlen(src), out);
}

MLS_TEST(graphql_lexer_punctuators_and_names)
{
        struct lexed l;

        lex_str("! $ & ( ) ... : = @ [ ] { | } _a9 B", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_STR_EQ(l.text,
                     "\"!\" \"$\" \"&\" \"(\" \")\" \"...\" \":\" \"=\" "
                     "\"@\" \"[\" \"]\" \"{\" \"|\" \"}\" Name:_a9 "
                     "Name:B");
}

MLS_TEST(graphql_lexer_ignores_commas_comments_bom)
{
        struct lexed l;

        lex_str("\xef\xbb\xbf a,,b # comment , { }\n\tc", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_STR_EQ(l.text, "Name:a Name:b Name:c");
        CHECK_INT_EQ(l.last[2].loc.line, 2);
        CHECK_INT_EQ(l.last[2].loc.column, 2);
}

MLS_TEST(graphql_lexer_numbers)
{
        struct lexed l;

        lex_str("0 -0 12 -34 1.5 -1.5e10 2E-3 6e+2", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_STR_EQ(l.text, "Int:0 Int:-0 Int:12 Int:-34 Float:1.5 "
                             "Float:-1.5e10 Float:2E-3 Float:6e+2");
}

MLS_TEST(graphql_lexer_number_errors)
{
        struct lexed l;

        lex_str("01", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, unexpected digit "
                            "after 0: \"1\".");
        CHECK_INT_EQ(l.err_loc.column, 2);
        lex_str("1.", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, expected digit "
                            "but got: <EOF>.");
        lex_str("1a", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, expected digit "
                            "but got: \"a\".");
        lex_str("1.2.3", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, expected digit "
                            "but got: \".\".");
        lex_str("1e+", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, expected digit "
                            "but got: <EOF>.");
        lex_str("-x", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid number, expected digit "
                            "but got: \"x\".");
        lex_str(".5", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: \".\".");
}

MLS_TEST(graphql_lexer_string_escapes)
{
        struct lexed l;

        lex_str("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\"", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_INT_EQ(l.last[0].kind, MLS__GQL_TOK_STRING);
        CHECK_INT_EQ(l.last[0].value_len, 13);
        lex_str("\"\\u00e9\\u20AC\\uD83D\\uDE00\\u{1F600}\\u{41}\"", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_STR_EQ(l.text, "String:\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                             "\xf0\x9f\x98\x80"
                             "A");
}

MLS_TEST(graphql_lexer_string_escape_errors)
{
        struct lexed l;

        lex_str("\"\\q\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid character escape "
                            "sequence: \"\\q\".");
        CHECK_INT_EQ(l.err_loc.column, 2);
        lex_str("\"\\u12\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\u12\"\".");
        lex_str("\"\\uD800\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\uD800\".");
        lex_str("\"\\uD800\\u0041\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\uD800\".");
        lex_str("\"\\uDE00\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\uDE00\".");
        lex_str("\"\\u{110000}\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\u{110000}\".");
        lex_str("\"\\u{}\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\u{}\".");
        lex_str("\"\\u{D800}\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid Unicode escape sequence: "
                            "\"\\u{D800}\".");
}

MLS_TEST(graphql_lexer_unterminated_strings)
{
        struct lexed l;

        lex_str("\"abc", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unterminated string.");
        CHECK_INT_EQ(l.err_loc.line, 1);
        CHECK_INT_EQ(l.err_loc.column, 5);
        lex_str("\"abc\ndef\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unterminated string.");
        CHECK_INT_EQ(l.err_loc.column, 5);
        lex_str("\"\"\"abc\n\\\"\"\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unterminated string.");
        CHECK_INT_EQ(l.err_loc.line, 2);
        lex_str("\"\\", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid character escape "
                            "sequence: \"\\\".");
}

MLS_TEST(graphql_lexer_block_strings)
{
        struct lexed l;

        /* the spec's example: common indentation and blank edges go */
        lex_str("\"\"\"\n    Hello,\n      World!\n\n    Yours,\n      "
                "GraphQL.\n  \"\"\"",
                &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_STR_EQ(l.text, "BlockString:Hello,\n  World!\n\nYours,\n  "
                             "GraphQL.");
        lex_str("\"\"\"  first line keeps\n    its\n      indent\"\"\"", &l);
        CHECK_STR_EQ(l.text, "BlockString:  first line keeps\nits\n  indent");
        lex_str("\"\"\"a \\\"\"\" b \"\" \\n\"\"\"", &l);
        CHECK_STR_EQ(l.text, "BlockString:a \"\"\" b \"\" \\n");
        lex_str("\"\"\"\r\n  x\r\n  y\r  z\n\"\"\"", &l);
        CHECK_STR_EQ(l.text, "BlockString:x\ny\nz");
        lex_str("\"\"\"   \n\t\n\"\"\"", &l);
        CHECK_STR_EQ(l.text, "BlockString:");
        lex_str("\"\"\"\"\"\"", &l);
        CHECK_STR_EQ(l.text, "BlockString:");
}

MLS_TEST(graphql_lexer_locations_count_utf16_units)
{
        struct lexed l;

        /* é is one UTF-16 unit, the emoji two, as graphql-js counts */
        lex_str("\"\xc3\xa9\xf0\x9f\x98\x80\" a", &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_INT_EQ(l.last[1].loc.column, 7);
        lex_str("# \xf0\x9f\x98\x80\r\n\r\n  \"\"\"x\n\xc3\xa9\"\"\" b", &l);
        CHECK_INT_EQ(l.last[0].loc.line, 3);
        CHECK_INT_EQ(l.last[0].loc.column, 3);
        CHECK_INT_EQ(l.last[1].loc.line, 4);
        CHECK_INT_EQ(l.last[1].loc.column, 6);
        lex_str("a\rb\r\nc\nd", &l);
        CHECK_INT_EQ(l.last[3].loc.line, 4);
        CHECK_INT_EQ(l.last[3].loc.column, 1);
}

MLS_TEST(graphql_lexer_unexpected_characters)
{
        struct lexed l;

        lex_str("a ?", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: \"?\".");
        CHECK_INT_EQ(l.err_loc.column, 3);
        lex_str("'a'", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected single quote character "
                            "('), did you mean to use a double quote (\")?");
        lex_str("\xc3\xa9", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: U+00E9.");
        lex_str("a \x07", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: U+0007.");
        lex_str("..", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: \".\".");
}

MLS_TEST(graphql_lexer_nul_bytes)
{
        struct lexed l;
        static const char in_string[] = "\"a\0b\" c";
        static const char outside[] = "a \0 b";

        lex_all(in_string, sizeof(in_string) - 1, &l);
        CHECK_STR_EQ(l.err, "");
        CHECK_INT_EQ(l.last[0].kind, MLS__GQL_TOK_STRING);
        CHECK_INT_EQ(l.last[0].value_len, 3);
        CHECK(memcmp(l.val[0], "a\0b", 3) == 0);
        lex_all(outside, sizeof(outside) - 1, &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Unexpected character: U+0000.");
        CHECK_INT_EQ(l.err_loc.column, 3);
}

MLS_TEST(graphql_lexer_invalid_utf8)
{
        struct lexed l;

        lex_str("\"a\xff\"", &l);
        CHECK_STR_EQ(l.err, "Syntax Error: Invalid UTF-8 sequence starting "
                            "with byte 0xFF.");
        CHECK_INT_EQ(l.err_loc.column, 3);
        lex_str("# \xc3\x28\n", &l);
        CHECK_CONTAINS(l.err, "Invalid UTF-8 sequence starting with byte "
                              "0xC3");
        lex_str("a \xed\xa0\x80", &l); /* an encoded surrogate */
        CHECK_CONTAINS(l.err, "Invalid UTF-8 sequence starting with byte "
                              "0xED");
        lex_str("\"\xc0\xaf\"", &l); /* overlong '/' */
        CHECK_CONTAINS(l.err, "0xC0");
        lex_str("\"\"\"\xf0\x9f\x98\"\"\"", &l); /* truncated sequence */
        CHECK_CONTAINS(l.err, "0xF0");
}

MLS_TEST(graphql_lexer_long_string_columns)
{
        /* 100k two-byte characters in one string: one pass, and the next
         * token's column counts characters, not bytes */
        size_t n = 100000, len = 2 * n + 4;
        char *src = malloc(len + 1);
        struct lexed *l = malloc(sizeof(*l));

        CHECK(src && l);
        src[0] = '"';
        for (size_t i = 0; i < n; i++)
                memcpy(src + 1 + 2 * i, "\xc3\xa9", 2);
        memcpy(src + 1 + 2 * n, "\" x", 3);
        lex_all(src, len, l);
        free(src);
        if (strcmp(l->err, "") != 0 || l->last[1].loc.column != n + 4) {
                free(l);
                CHECK(!"long string lexed wrongly");
        }
        CHECK_INT_EQ(l->last[0].value_len, 2 * n);
        free(l);
}
