/*
 * The GraphQL lexer (spec October 2021, section 2.1) over UTF-8 bytes.
 * Messages follow graphql-js 16 so that clients see familiar text; columns
 * count UTF-16 units as graphql-js does. Invalid UTF-8 is a syntax error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "graphql/graphql_int.h"

static const char *const kind_desc[] = {
        [MLS__GQL_TOK_EOF] = "<EOF>",
        [MLS__GQL_TOK_BANG] = "\"!\"",
        [MLS__GQL_TOK_DOLLAR] = "\"$\"",
        [MLS__GQL_TOK_AMP] = "\"&\"",
        [MLS__GQL_TOK_PAREN_L] = "\"(\"",
        [MLS__GQL_TOK_PAREN_R] = "\")\"",
        [MLS__GQL_TOK_SPREAD] = "\"...\"",
        [MLS__GQL_TOK_COLON] = "\":\"",
        [MLS__GQL_TOK_EQUALS] = "\"=\"",
        [MLS__GQL_TOK_AT] = "\"@\"",
        [MLS__GQL_TOK_BRACKET_L] = "\"[\"",
        [MLS__GQL_TOK_BRACKET_R] = "\"]\"",
        [MLS__GQL_TOK_BRACE_L] = "\"{\"",
        [MLS__GQL_TOK_PIPE] = "\"|\"",
        [MLS__GQL_TOK_BRACE_R] = "\"}\"",
        [MLS__GQL_TOK_NAME] = "Name",
        [MLS__GQL_TOK_INT] = "Int",
        [MLS__GQL_TOK_FLOAT] = "Float",
        [MLS__GQL_TOK_STRING] = "String",
        [MLS__GQL_TOK_BLOCK_STRING] = "BlockString",
};

const char *mls__gql_lex_kind_desc(enum mls__gql_tok kind)
{
        return kind_desc[kind];
}

void mls__gql_lex_init(struct mls__gql_lexer *lx, const char *src, size_t len,
                       struct mls__gql_arena *arena, char *err, size_t err_size)
{
        memset(lx, 0, sizeof(*lx));
        lx->src = src;
        lx->len = len;
        lx->line = 1;
        lx->arena = arena;
        lx->err = err;
        lx->err_size = err_size;
        mls_buf_init(&lx->scratch, MLS__GQL_BUF_LIMIT);
}

void mls__gql_lex_fini(struct mls__gql_lexer *lx)
{
        mls_buf_free(&lx->scratch);
}

static struct mls__gql_loc loc_at(const struct mls__gql_lexer *lx, size_t p)
{
        struct mls__gql_loc l;

        l.line = lx->line;
        l.column = (uint32_t)(p - lx->line_start - lx->line_adj + 1);
        return l;
}

static void newline(struct mls__gql_lexer *lx, size_t next_line_start)
{
        lx->line++;
        lx->line_start = next_line_start;
        lx->line_adj = 0;
}

/* Accounts for a UTF-8 sequence of n bytes in the column arithmetic. */
static void wide_char(struct mls__gql_lexer *lx, size_t n)
{
        lx->line_adj += n - (n == 4 ? 2 : 1);
}

__attribute__((format(printf, 3, 4))) static int
lex_error(struct mls__gql_lexer *lx, size_t p, const char *fmt, ...)
{
        va_list ap;
        int n;

        lx->err_loc = loc_at(lx, p);
        n = snprintf(lx->err, lx->err_size, "Syntax Error: ");
        if (n < 0 || (size_t)n >= lx->err_size)
                return -1;
        va_start(ap, fmt);
        vsnprintf(lx->err + n, lx->err_size - (size_t)n, fmt, ap);
        va_end(ap);
        return -1;
}

/* graphql-js printCodePointAt(): "\"x\"" for printable ASCII, U+XXXX else,
 * <EOF> at the end. */
static void describe_char(const struct mls__gql_lexer *lx, size_t p, char *out,
                          size_t out_size)
{
        const unsigned char *s = (const unsigned char *)lx->src;
        size_t l;
        unsigned cp;

        if (p >= lx->len) {
                snprintf(out, out_size, "<EOF>");
                return;
        }
        cp = mls_utf8_decode(s + p, lx->len - p, &l);
        if (l == 0)
                snprintf(out, out_size, "byte 0x%02X (invalid UTF-8)", s[p]);
        else if (cp == '"')
                snprintf(out, out_size, "'\"'");
        else if (cp >= 0x20 && cp <= 0x7e)
                snprintf(out, out_size, "\"%c\"", (char)cp);
        else
                snprintf(out, out_size, "U+%04X", cp);
}

static int bad_utf8(struct mls__gql_lexer *lx, size_t p)
{
        return lex_error(lx, p,
                         "Invalid UTF-8 sequence starting with byte "
                         "0x%02X.",
                         (unsigned char)lx->src[p]);
}

static bool is_name_start(int c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_cont(int c)
{
        return is_name_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(int c)
{
        return c >= '0' && c <= '9';
}

static int peek(const struct mls__gql_lexer *lx, size_t p)
{
        return p < lx->len ? (unsigned char)lx->src[p] : -1;
}

static int read_digits(struct mls__gql_lexer *lx, size_t *pp)
{
        char what[40];

        if (!is_digit(peek(lx, *pp))) {
                describe_char(lx, *pp, what, sizeof(what));
                return lex_error(lx, *pp,
                                 "Invalid number, expected digit but got: "
                                 "%s.",
                                 what);
        }
        while (is_digit(peek(lx, *pp)))
                (*pp)++;
        return 0;
}

static int read_number(struct mls__gql_lexer *lx, struct mls__gql_token *tok)
{
        size_t start = lx->pos, p = lx->pos;
        bool is_float = false;
        char what[40];
        int c;

        if (peek(lx, p) == '-')
                p++;
        if (peek(lx, p) == '0') {
                p++;
                if (is_digit(peek(lx, p))) {
                        describe_char(lx, p, what, sizeof(what));
                        return lex_error(lx, p,
                                         "Invalid number, unexpected digit "
                                         "after 0: %s.",
                                         what);
                }
        } else if (read_digits(lx, &p) < 0) {
                return -1;
        }
        if (peek(lx, p) == '.') {
                is_float = true;
                p++;
                if (read_digits(lx, &p) < 0)
                        return -1;
        }
        c = peek(lx, p);
        if (c == 'e' || c == 'E') {
                is_float = true;
                p++;
                c = peek(lx, p);
                if (c == '+' || c == '-')
                        p++;
                if (read_digits(lx, &p) < 0)
                        return -1;
        }
        c = peek(lx, p);
        if (c == '.' || is_name_start(c)) {
                describe_char(lx, p, what, sizeof(what));
                return lex_error(lx, p,
                                 "Invalid number, expected digit but got: "
                                 "%s.",
                                 what);
        }
        tok->kind = is_float ? MLS__GQL_TOK_FLOAT : MLS__GQL_TOK_INT;
        tok->value = lx->src + start;
        tok->value_len = p - start;
        lx->pos = p;
        return 0;
}

/* Four hex digits at p, or -1. */
static long hex4(const struct mls__gql_lexer *lx, size_t p)
{
        long v = 0;

        for (int i = 0; i < 4; i++) {
                int h = mls_hexval(peek(lx, p + (size_t)i));
                if (h < 0)
                        return -1;
                v = (v << 4) | h;
        }
        return v;
}

/* Appends code point cp to b as UTF-8. */
static int put_utf8(struct mls_buf *b, unsigned cp)
{
        char o[MLS_UTF8_MAX];

        return mls_buf_append(b, o, mls_utf8_encode(cp, o));
}

/* Quotes up to n bytes of source from p for a message, stopping early at a
 * line end or a byte that would make the message invalid UTF-8. */
static void source_slice(const struct mls__gql_lexer *lx, size_t p, size_t n,
                         char *out, size_t out_size)
{
        size_t o = 0;

        while (n > 0 && p < lx->len && o + 5 < out_size) {
                const unsigned char *s = (const unsigned char *)lx->src + p;
                size_t l = mls_utf8_len(s, lx->len - p);
                if (l == 0 || l > n || s[0] == '\n' || s[0] == '\r' ||
                    s[0] < 0x20)
                        break;
                memcpy(out + o, s, l);
                o += l;
                p += l;
                n -= l;
        }
        out[o] = '\0';
}

/* Reads the escape sequence at lx->pos (the backslash) into the scratch
 * buffer. */
static int read_escape(struct mls__gql_lexer *lx)
{
        size_t p = lx->pos;
        int c = peek(lx, p + 1);
        char what[64];
        char ch;

        switch (c) {
        case '"':
        case '\\':
        case '/':
                ch = (char)c;
                break;
        case 'b':
                ch = '\b';
                break;
        case 'f':
                ch = '\f';
                break;
        case 'n':
                ch = '\n';
                break;
        case 'r':
                ch = '\r';
                break;
        case 't':
                ch = '\t';
                break;
        case 'u':
                if (peek(lx, p + 2) == '{') {
                        unsigned long point = 0;
                        size_t size = 3;
                        while (size < 12) {
                                int d = peek(lx, p + size++);
                                if (d == '}') {
                                        if (size < 5 || point > 0x10ffff ||
                                            (point >= 0xd800 &&
                                             point <= 0xdfff))
                                                break;
                                        lx->pos = p + size;
                                        return put_utf8(&lx->scratch,
                                                        (unsigned)point);
                                }
                                if (mls_hexval(d) < 0)
                                        break;
                                point = ((point << 4) |
                                         (unsigned)mls_hexval(d)) &
                                        0xffffffffu;
                                /* graphql-js computes in 32-bit ints */
                                if (point & 0x80000000u)
                                        break;
                        }
                        source_slice(lx, p, size, what, sizeof(what));
                        return lex_error(lx, p,
                                         "Invalid Unicode escape sequence: "
                                         "\"%s\".",
                                         what);
                } else {
                        long code = hex4(lx, p + 2);
                        if (code >= 0 && (code < 0xd800 || code > 0xdfff)) {
                                lx->pos = p + 6;
                                return put_utf8(&lx->scratch, (unsigned)code);
                        }
                        if (code >= 0xd800 && code <= 0xdbff &&
                            peek(lx, p + 6) == '\\' && peek(lx, p + 7) == 'u') {
                                long low = hex4(lx, p + 8);
                                if (low >= 0xdc00 && low <= 0xdfff) {
                                        unsigned cp = 0x10000 +
                                                      (((unsigned)code - 0xd800)
                                                       << 10) +
                                                      ((unsigned)low - 0xdc00);
                                        lx->pos = p + 12;
                                        return put_utf8(&lx->scratch, cp);
                                }
                        }
                        source_slice(lx, p, 6, what, sizeof(what));
                        return lex_error(lx, p,
                                         "Invalid Unicode escape sequence: "
                                         "\"%s\".",
                                         what);
                }
        default:
                source_slice(lx, p, 2, what, sizeof(what));
                return lex_error(lx, p,
                                 "Invalid character escape sequence: "
                                 "\"%s\".",
                                 what);
        }
        lx->pos = p + 2;
        return mls_buf_putc(&lx->scratch, ch);
}

static int finish_string(struct mls__gql_lexer *lx, struct mls__gql_token *tok,
                         enum mls__gql_tok kind, const char *s, size_t n)
{
        char *v = mls__gql_arena_strndup(lx->arena, s, n);

        if (!v) {
                snprintf(lx->err, lx->err_size, "Out of memory.");
                lx->err_loc.line = 0;
                return -1;
        }
        tok->kind = kind;
        tok->value = v;
        tok->value_len = n;
        return 0;
}

static int oom(struct mls__gql_lexer *lx)
{
        snprintf(lx->err, lx->err_size, "Out of memory.");
        lx->err_loc.line = 0;
        return -1;
}

static int read_string(struct mls__gql_lexer *lx, struct mls__gql_token *tok)
{
        const unsigned char *s = (const unsigned char *)lx->src;
        size_t chunk;

        mls_buf_reset(&lx->scratch);
        lx->pos++;
        chunk = lx->pos;
        while (lx->pos < lx->len) {
                unsigned char c = s[lx->pos];
                if (c == '"') {
                        if (mls_buf_append(&lx->scratch, s + chunk,
                                           lx->pos - chunk) < 0)
                                return oom(lx);
                        lx->pos++;
                        return finish_string(lx, tok, MLS__GQL_TOK_STRING,
                                             lx->scratch.data ? lx->scratch.data
                                                              : "",
                                             lx->scratch.len);
                }
                if (c == '\n' || c == '\r')
                        break;
                if (c == '\\') {
                        if (mls_buf_append(&lx->scratch, s + chunk,
                                           lx->pos - chunk) < 0)
                                return oom(lx);
                        if (read_escape(lx) < 0)
                                return lx->err_loc.line ? -1 : oom(lx);
                        chunk = lx->pos;
                        continue;
                }
                if (c < 0x80) {
                        lx->pos++;
                } else {
                        size_t l = mls_utf8_len(s + lx->pos, lx->len - lx->pos);
                        if (l == 0)
                                return bad_utf8(lx, lx->pos);
                        wide_char(lx, l);
                        lx->pos += l;
                }
        }
        return lex_error(lx, lx->pos, "Unterminated string.");
}

static size_t leading_ws(const char *s, size_t n)
{
        size_t i = 0;

        while (i < n && (s[i] == ' ' || s[i] == '\t'))
                i++;
        return i;
}

/* Splits raw at line ends; calls the visitor style loop twice. */
static size_t next_line(const char *raw, size_t n, size_t start,
                        size_t *line_len)
{
        size_t i = start;

        while (i < n && raw[i] != '\n' && raw[i] != '\r')
                i++;
        *line_len = i - start;
        if (i < n && raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n')
                return i + 2;
        return i < n ? i + 1 : n + 1;
}

/* The spec's BlockStringValue(): drops the common indentation of all lines
 * but the first, then leading and trailing blank lines. Writes into out. */
static int dedent(const char *raw, size_t n, struct mls_buf *out)
{
        size_t common = SIZE_MAX, first = SIZE_MAX, last = 0, idx, start, len,
               next;
        bool any = false, wrote = false;

        for (idx = 0, start = 0; start <= n; idx++, start = next) {
                size_t ind;
                next = next_line(raw, n, start, &len);
                ind = leading_ws(raw + start, len);
                if (ind == len)
                        continue;
                if (!any)
                        first = idx;
                any = true;
                last = idx;
                if (idx != 0 && ind < common)
                        common = ind;
        }
        if (!any)
                return 0;
        for (idx = 0, start = 0; start <= n && idx <= last;
             idx++, start = next) {
                const char *l;
                next = next_line(raw, n, start, &len);
                if (idx < first)
                        continue;
                l = raw + start;
                if (idx != 0) {
                        size_t cut = common < len ? common : len;
                        l += cut;
                        len -= cut;
                }
                if (wrote && mls_buf_putc(out, '\n') < 0)
                        return -1;
                if (mls_buf_append(out, l, len) < 0)
                        return -1;
                wrote = true;
        }
        return 0;
}

static int read_block_string(struct mls__gql_lexer *lx,
                             struct mls__gql_token *tok)
{
        const unsigned char *s = (const unsigned char *)lx->src;
        struct mls_buf raw;
        size_t chunk;
        int rc;

        mls_buf_init(&raw, MLS__GQL_BUF_LIMIT);
        lx->pos += 3;
        chunk = lx->pos;
        while (lx->pos < lx->len) {
                unsigned char c = s[lx->pos];
                if (c == '"' && peek(lx, lx->pos + 1) == '"' &&
                    peek(lx, lx->pos + 2) == '"') {
                        if (mls_buf_append(&raw, s + chunk, lx->pos - chunk) <
                            0)
                                goto nomem;
                        lx->pos += 3;
                        mls_buf_reset(&lx->scratch);
                        if (dedent(raw.data ? raw.data : "", raw.len,
                                   &lx->scratch) < 0)
                                goto nomem;
                        rc = finish_string(lx, tok, MLS__GQL_TOK_BLOCK_STRING,
                                           lx->scratch.data ? lx->scratch.data
                                                            : "",
                                           lx->scratch.len);
                        mls_buf_free(&raw);
                        return rc;
                }
                if (c == '\\' && peek(lx, lx->pos + 1) == '"' &&
                    peek(lx, lx->pos + 2) == '"' &&
                    peek(lx, lx->pos + 3) == '"') {
                        if (mls_buf_append(&raw, s + chunk, lx->pos - chunk) <
                                    0 ||
                            mls_buf_append(&raw, "\"\"\"", 3) < 0)
                                goto nomem;
                        lx->pos += 4;
                        chunk = lx->pos;
                        continue;
                }
                if (c == '\n' || c == '\r') {
                        lx->pos++;
                        if (c == '\r' && peek(lx, lx->pos) == '\n')
                                lx->pos++;
                        newline(lx, lx->pos);
                        continue;
                }
                if (c < 0x80) {
                        lx->pos++;
                } else {
                        size_t l = mls_utf8_len(s + lx->pos, lx->len - lx->pos);
                        if (l == 0) {
                                mls_buf_free(&raw);
                                return bad_utf8(lx, lx->pos);
                        }
                        wide_char(lx, l);
                        lx->pos += l;
                }
        }
        mls_buf_free(&raw);
        return lex_error(lx, lx->pos, "Unterminated string.");
nomem:
        mls_buf_free(&raw);
        return oom(lx);
}

static int unexpected_char(struct mls__gql_lexer *lx)
{
        const unsigned char *s = (const unsigned char *)lx->src;
        char what[40];

        if (mls_utf8_len(s + lx->pos, lx->len - lx->pos) == 0)
                return bad_utf8(lx, lx->pos);
        if (s[lx->pos] == '\'')
                return lex_error(lx, lx->pos,
                                 "Unexpected single quote character ('), "
                                 "did you mean to use a double quote "
                                 "(\")?");
        describe_char(lx, lx->pos, what, sizeof(what));
        return lex_error(lx, lx->pos, "Unexpected character: %s.", what);
}

int mls__gql_lex_next(struct mls__gql_lexer *lx, struct mls__gql_token *tok)
{
        const unsigned char *s = (const unsigned char *)lx->src;
        enum mls__gql_tok punct;

        memset(tok, 0, sizeof(*tok));
        for (;;) {
                size_t p = lx->pos;
                if (p >= lx->len) {
                        tok->kind = MLS__GQL_TOK_EOF;
                        tok->loc = loc_at(lx, p);
                        return 0;
                }
                tok->loc = loc_at(lx, p);
                switch (s[p]) {
                case 0xef: /* U+FEFF, the byte order mark, is ignored */
                        if (peek(lx, p + 1) == 0xbb &&
                            peek(lx, p + 2) == 0xbf) {
                                wide_char(lx, 3);
                                lx->pos += 3;
                                continue;
                        }
                        return unexpected_char(lx);
                case ' ':
                case '\t':
                case ',':
                        lx->pos++;
                        continue;
                case '\n':
                        lx->pos++;
                        newline(lx, lx->pos);
                        continue;
                case '\r':
                        lx->pos++;
                        if (peek(lx, lx->pos) == '\n')
                                lx->pos++;
                        newline(lx, lx->pos);
                        continue;
                case '#':
                        lx->pos++;
                        while (lx->pos < lx->len && s[lx->pos] != '\n' &&
                               s[lx->pos] != '\r') {
                                size_t l;
                                if (s[lx->pos] < 0x80) {
                                        lx->pos++;
                                        continue;
                                }
                                l = mls_utf8_len(s + lx->pos,
                                                 lx->len - lx->pos);
                                if (l == 0)
                                        return bad_utf8(lx, lx->pos);
                                wide_char(lx, l);
                                lx->pos += l;
                        }
                        continue;
                case '!':
                        punct = MLS__GQL_TOK_BANG;
                        goto single;
                case '$':
                        punct = MLS__GQL_TOK_DOLLAR;
                        goto single;
                case '&':
                        punct = MLS__GQL_TOK_AMP;
                        goto single;
                case '(':
                        punct = MLS__GQL_TOK_PAREN_L;
                        goto single;
                case ')':
                        punct = MLS__GQL_TOK_PAREN_R;
                        goto single;
                case ':':
                        punct = MLS__GQL_TOK_COLON;
                        goto single;
                case '=':
                        punct = MLS__GQL_TOK_EQUALS;
                        goto single;
                case '@':
                        punct = MLS__GQL_TOK_AT;
                        goto single;
                case '[':
                        punct = MLS__GQL_TOK_BRACKET_L;
                        goto single;
                case ']':
                        punct = MLS__GQL_TOK_BRACKET_R;
                        goto single;
                case '{':
                        punct = MLS__GQL_TOK_BRACE_L;
                        goto single;
                case '|':
                        punct = MLS__GQL_TOK_PIPE;
                        goto single;
                case '}':
                        punct = MLS__GQL_TOK_BRACE_R;
                        goto single;
                case '.':
                        if (peek(lx, p + 1) == '.' && peek(lx, p + 2) == '.') {
                                tok->kind = MLS__GQL_TOK_SPREAD;
                                lx->pos += 3;
                                return 0;
                        }
                        return unexpected_char(lx);
                case '"':
                        if (peek(lx, p + 1) == '"' && peek(lx, p + 2) == '"')
                                return read_block_string(lx, tok);
                        return read_string(lx, tok);
                default:
                        break;
                }
                if (s[p] == '-' || is_digit(s[p]))
                        return read_number(lx, tok);
                if (is_name_start(s[p])) {
                        size_t e = p + 1;
                        while (e < lx->len && is_name_cont(s[e]))
                                e++;
                        tok->kind = MLS__GQL_TOK_NAME;
                        tok->value = lx->src + p;
                        tok->value_len = e - p;
                        lx->pos = e;
                        return 0;
                }
                return unexpected_char(lx);
        single:
                tok->kind = punct;
                lx->pos++;
                return 0;
        }
}
