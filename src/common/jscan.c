/*
 * Strict JSON scanning without a tree (common/jscan.h).
 *
 * One pass over the bytes with an explicit stack of one bit per open
 * container (object or array), so hostile nesting costs no C stack.
 */
#include "common/jscan.h"

#include <stdint.h>
#include <string.h>

struct scan {
        const unsigned char *p, *start, *end;
};

static void skip_ws(struct scan *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
                                 *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                unsigned c = p[i], d;
                if (c >= '0' && c <= '9')
                        d = c - '0';
                else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                        d = (c | 0x20) - 'a' + 10;
                else
                        return -1;
                v = v << 4 | d;
        }
        *out = v;
        return 0;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) that starts with a
 * byte >= 0x80 at p, or 0: no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
        unsigned c = p[0], lo = 0x80, hi = 0xbf;
        size_t n;

        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4;
        else
                return 0;
        if ((size_t)(end - p) < n)
                return 0;
        if (c == 0xe0)
                lo = 0xa0;
        else if (c == 0xed)
                hi = 0x9f;
        else if (c == 0xf0)
                lo = 0x90;
        else if (c == 0xf4)
                hi = 0x8f;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (p[i] < 0x80 || p[i] > 0xbf)
                        return 0;
        return n;
}

/* A string at s->p (the opening quote). Fills out with the bytes between
 * the quotes. */
static int scan_string(struct scan *s, struct mls_jscan_span *out)
{
        const unsigned char *p = s->p + 1;
        unsigned u, lo;
        size_t n;

        out->type = MLS_JSCAN_STRING;
        out->escaped = 0;
        out->integral = 0;
        for (;;) {
                if (p >= s->end)
                        goto bad;
                if (*p == '"')
                        break;
                if (*p < 0x20)
                        goto bad;
                if (*p < 0x80 && *p != '\\') {
                        p++;
                        continue;
                }
                if (*p >= 0x80) {
                        if (!(n = utf8_len(p, s->end)))
                                goto bad;
                        p += n;
                        continue;
                }
                out->escaped = 1;
                if (s->end - p < 2)
                        goto bad;
                switch (p[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                        p += 2;
                        continue;
                case 'u':
                        break;
                default:
                        goto bad;
                }
                if (s->end - p < 6 || hex4(p + 2, &u) < 0 || u == 0)
                        goto bad;
                p += 6;
                if (u >= 0xdc00 && u <= 0xdfff)
                        goto bad; /* a low surrogate first */
                if (u >= 0xd800 && u <= 0xdbff) {
                        if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                            hex4(p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                                goto bad;
                        p += 6;
                }
        }
        out->p = (const char *)s->p + 1;
        out->len = (size_t)(p - s->p - 1);
        s->p = p + 1;
        return 0;
bad:
        s->p = p < s->end ? p : s->end;
        return -1;
}

int mls_jscan_number(const char *text, size_t len, size_t *n, int *integral)
{
        const unsigned char *p = (const unsigned char *)text, *e = p + len;
        int whole = 1;

        if (p < e && *p == '-')
                p++;
        if (p < e && *p == '0') {
                p++;
        } else if (p < e && *p >= '1' && *p <= '9') {
                while (p < e && *p >= '0' && *p <= '9')
                        p++;
        } else {
                goto bad;
        }
        if (p < e && *p == '.') {
                whole = 0;
                if (++p >= e || *p < '0' || *p > '9')
                        goto bad;
                while (p < e && *p >= '0' && *p <= '9')
                        p++;
        }
        if (p < e && (*p == 'e' || *p == 'E')) {
                whole = 0;
                p++;
                if (p < e && (*p == '+' || *p == '-'))
                        p++;
                if (p >= e || *p < '0' || *p > '9')
                        goto bad;
                while (p < e && *p >= '0' && *p <= '9')
                        p++;
        }
        *n = (size_t)(p - (const unsigned char *)text);
        if (integral)
                *integral = whole;
        return 0;
bad:
        *n = (size_t)(p - (const unsigned char *)text);
        return -1;
}

static int scan_number(struct scan *s, struct mls_jscan_span *out)
{
        size_t n;

        out->type = MLS_JSCAN_NUMBER;
        out->escaped = 0;
        if (mls_jscan_number((const char *)s->p, (size_t)(s->end - s->p), &n,
                             &out->integral) < 0) {
                s->p += n;
                return -1;
        }
        out->p = (const char *)s->p;
        out->len = n;
        s->p += n;
        return 0;
}

static int scan_literal(struct scan *s, const char *word, size_t n,
                        enum mls_jscan_type type, struct mls_jscan_span *out)
{
        if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
                return -1;
        out->p = (const char *)s->p;
        out->len = n;
        out->type = type;
        out->escaped = out->integral = 0;
        s->p += n;
        return 0;
}

/* A string, number or literal at s->p. */
static int scan_scalar(struct scan *s, struct mls_jscan_span *out)
{
        switch (*s->p) {
        case '"':
                return scan_string(s, out);
        case 't':
                return scan_literal(s, "true", 4, MLS_JSCAN_TRUE, out);
        case 'f':
                return scan_literal(s, "false", 5, MLS_JSCAN_FALSE, out);
        case 'n':
                return scan_literal(s, "null", 4, MLS_JSCAN_NULL, out);
        default:
                return scan_number(s, out);
        }
}

/* A member key and its colon, s->p at the key's quote (after whitespace). */
static int scan_key(struct scan *s, struct mls_jscan_span *key)
{
        if (s->p >= s->end || *s->p != '"' || scan_string(s, key) < 0)
                return -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
                return -1;
        s->p++;
        return 0;
}

/* One whole value of any type starting at s->p (after whitespace), with at
 * most max_depth containers open at once. */
static int scan_value(struct scan *s, unsigned max_depth,
                      struct mls_jscan_span *out)
{
        unsigned char objects[MLS_JSCAN_MAX_DEPTH / 8];
        const unsigned char *first = s->p;
        struct mls_jscan_span tmp;
        unsigned depth = 0;
        int is_obj;

        if (s->p >= s->end)
                return -1;
        if (*s->p != '{' && *s->p != '[')
                return scan_scalar(s, out);
        for (;;) {
                /* a value is expected at s->p */
                skip_ws(s);
                if (s->p >= s->end)
                        return -1;
                if (*s->p == '{' || *s->p == '[') {
                        is_obj = *s->p == '{';
                        if (depth == max_depth)
                                return -1;
                        if (is_obj)
                                objects[depth / 8] |= 1u << (depth % 8);
                        else
                                objects[depth / 8] &= ~(1u << (depth % 8));
                        depth++;
                        s->p++;
                        skip_ws(s);
                        if (s->p < s->end && *s->p == (is_obj ? '}' : ']')) {
                                s->p++;
                                depth--;
                        } else {
                                if (is_obj && scan_key(s, &tmp) < 0)
                                        return -1;
                                continue;
                        }
                } else if (scan_scalar(s, &tmp) < 0) {
                        return -1;
                }
                /* after a value: close containers, or go to the next one */
                for (;;) {
                        if (depth == 0) {
                                out->p = (const char *)first;
                                out->len = (size_t)(s->p - first);
                                out->type = *first == '{' ? MLS_JSCAN_OBJECT
                                                          : MLS_JSCAN_ARRAY;
                                out->escaped = out->integral = 0;
                                return 0;
                        }
                        is_obj = objects[(depth - 1) / 8] >> ((depth - 1) % 8) &
                                 1;
                        skip_ws(s);
                        if (s->p >= s->end)
                                return -1;
                        if (*s->p == ',') {
                                s->p++;
                                if (is_obj) {
                                        skip_ws(s);
                                        if (scan_key(s, &tmp) < 0)
                                                return -1;
                                }
                                break;
                        }
                        if (*s->p != (is_obj ? '}' : ']'))
                                return -1;
                        s->p++;
                        depth--;
                }
        }
}

static int fault(const struct scan *s, size_t *where)
{
        if (where)
                *where = (size_t)(s->p - s->start);
        return -1;
}

int mls_jscan_value(const char *text, size_t len, struct mls_jscan_span *out,
                    size_t *where)
{
        struct scan s = {(const unsigned char *)text,
                         (const unsigned char *)text,
                         (const unsigned char *)text + len};

        skip_ws(&s);
        if (scan_value(&s, MLS_JSCAN_MAX_DEPTH, out) < 0)
                return fault(&s, where);
        skip_ws(&s);
        if (s.p != s.end)
                return fault(&s, where);
        return 0;
}

int mls_jscan_object(const char *text, size_t len, mls_jscan_member_fn fn,
                     void *opaque, size_t *where)
{
        struct scan s = {(const unsigned char *)text,
                         (const unsigned char *)text,
                         (const unsigned char *)text + len};
        struct mls_jscan_span key, value;
        int rc;

        skip_ws(&s);
        if (s.p >= s.end || *s.p != '{')
                return fault(&s, where);
        s.p++;
        skip_ws(&s);
        if (s.p < s.end && *s.p == '}') {
                s.p++;
        } else {
                for (;;) {
                        skip_ws(&s);
                        if (scan_key(&s, &key) < 0)
                                return fault(&s, where);
                        skip_ws(&s);
                        /* the object itself is one level */
                        if (scan_value(&s, MLS_JSCAN_MAX_DEPTH - 1, &value) < 0)
                                return fault(&s, where);
                        if (fn && (rc = fn(opaque, &key, &value)) != 0)
                                return rc;
                        skip_ws(&s);
                        if (s.p < s.end && *s.p == ',') {
                                s.p++;
                                continue;
                        }
                        if (s.p < s.end && *s.p == '}') {
                                s.p++;
                                break;
                        }
                        return fault(&s, where);
                }
        }
        skip_ws(&s);
        if (s.p != s.end)
                return fault(&s, where);
        return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | cp >> 6);
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | cp >> 12);
                out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | cp >> 18);
        out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

long mls_jscan_string(const struct mls_jscan_span *s, char *out, size_t cap)
{
        const unsigned char *p = (const unsigned char *)s->p, *e = p + s->len;
        size_t n = 0;
        unsigned cp = 0, lo = 0;
        char tmp[4];
        size_t k;

        if (cap == 0)
                return -1;
        if (!s->escaped) {
                if (s->len >= cap)
                        return -1;
                memcpy(out, s->p, s->len);
                out[s->len] = '\0';
                return (long)s->len;
        }
        while (p < e) {
                if (*p != '\\') {
                        tmp[0] = (char)*p++;
                        k = 1;
                } else {
                        switch (p[1]) {
                        case 'b':
                                tmp[0] = '\b';
                                break;
                        case 'f':
                                tmp[0] = '\f';
                                break;
                        case 'n':
                                tmp[0] = '\n';
                                break;
                        case 'r':
                                tmp[0] = '\r';
                                break;
                        case 't':
                                tmp[0] = '\t';
                                break;
                        case 'u':
                                break;
                        default: /* " \ / */
                                tmp[0] = (char)p[1];
                                break;
                        }
                        if (p[1] != 'u') {
                                p += 2;
                                k = 1;
                        } else {
                                hex4(p + 2, &cp);
                                p += 6;
                                if (cp >= 0xd800 && cp <= 0xdbff) {
                                        hex4(p + 2, &lo);
                                        p += 6;
                                        cp = 0x10000 + ((cp - 0xd800) << 10) +
                                             (lo - 0xdc00);
                                }
                                k = put_utf8(tmp, cp);
                        }
                }
                if (n + k >= cap)
                        return -1;
                memcpy(out + n, tmp, k);
                n += k;
        }
        out[n] = '\0';
        return (long)n;
}

int mls_jscan_string_is(const struct mls_jscan_span *s, const char *name)
{
        char buf[64];
        size_t n = strlen(name);

        if (s->type != MLS_JSCAN_STRING)
                return 0;
        if (!s->escaped)
                return s->len == n && memcmp(s->p, name, n) == 0;
        if (n >= sizeof(buf) || s->len > 6 * n)
                return 0;
        return mls_jscan_string(s, buf, sizeof(buf)) == (long)n &&
               memcmp(buf, name, n) == 0;
}
