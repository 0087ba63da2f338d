#include "engine/decoder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/jscan.h"
#include "common/utf8.h"

#define NUMBER_TEXT_MAX 512

static const char *const err_names[] = {
        [MLS_DECODE_OK] = "ok",
        [MLS_DECODE_OVERSIZE] = "oversize",
        [MLS_DECODE_INVALID_JSON] = "invalid_json",
        [MLS_DECODE_NOT_OBJECT] = "not_object",
        [MLS_DECODE_BAD_FIELD] = "bad_field",
        [MLS_DECODE_MISSING_FEATURES] = "missing_features",
        [MLS_DECODE_BAD_FEATURES] = "bad_features",
        [MLS_DECODE_NON_FINITE] = "non_finite",
        [MLS_DECODE_RAGGED] = "ragged_rows",
        [MLS_DECODE_TOO_MANY_ROWS] = "too_many_rows",
        [MLS_DECODE_TOO_WIDE] = "too_wide",
        [MLS_DECODE_OUT_OF_MEMORY] = "out_of_memory",
};

const char *mls_decode_err_name(enum mls_decode_err e)
{
        if ((size_t)e < sizeof(err_names) / sizeof(err_names[0]))
                return err_names[e];
        return "unknown";
}

void mls_floats_free(struct mls_floats *f)
{
        free(f->v);
        memset(f, 0, sizeof(*f));
}

static int floats_push(struct mls_floats *f, float v)
{
        if (f->len == f->cap) {
                size_t ncap = f->cap ? f->cap * 2 : 1024;
                float *nv = realloc(f->v, ncap * sizeof(float));
                if (!nv)
                        return -1;
                f->v = nv;
                f->cap = ncap;
        }
        f->v[f->len++] = v;
        return 0;
}

struct parser {
        const char *start, *p, *end;
        enum mls_decode_err err;
        char *errstr;
        size_t errstr_size;
        int nul; /* the last string parsed held a \u0000 */
};

static int fail(struct parser *ps, enum mls_decode_err err, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, enum mls_decode_err err, const char *fmt,
                ...)
{
        va_list ap;

        if (ps->err != MLS_DECODE_OK)
                return -1;
        ps->err = err;
        va_start(ap, fmt);
        vsnprintf(ps->errstr, ps->errstr_size, fmt, ap);
        va_end(ap);
        return -1;
}

static int syntax(struct parser *ps, const char *what)
{
        if (ps->p >= ps->end)
                return fail(ps, MLS_DECODE_INVALID_JSON,
                            "invalid JSON: %s, found end of input at byte %zu",
                            what, (size_t)(ps->p - ps->start));
        return fail(ps, MLS_DECODE_INVALID_JSON, "invalid JSON: %s at byte %zu",
                    what, (size_t)(ps->p - ps->start));
}

static void skip_ws(struct parser *ps)
{
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' ||
                                   *ps->p == '\r' || *ps->p == '\t'))
                ps->p++;
}

static int peek(struct parser *ps)
{
        skip_ws(ps);
        return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

static int hex4(const char *p, unsigned *out)
{
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                int d = mls_hexval((unsigned char)p[i]);
                if (d < 0)
                        return -1;
                v = (v << 4) | (unsigned)d;
        }
        *out = v;
        return 0;
}

/* Writes code point cp as UTF-8 into out if it fits in cap; returns its
 * length (also when it does not fit). */
static size_t put_utf8(char *out, size_t cap, size_t at, unsigned cp)
{
        char tmp[MLS_UTF8_MAX];
        size_t n = mls_utf8_encode(cp, tmp);

        if (out && at + n <= cap)
                memcpy(out + at, tmp, n);
        return n;
}
/*
 * Parses a string at ps->p (which is at the opening quote). With out, the
 * unescaped text is stored NUL-terminated if it fits in cap-1 bytes;
 * *outlen gets the full unescaped length either way.
 */
static int parse_string(struct parser *ps, char *out, size_t cap,
                        size_t *outlen)
{
        size_t n = 0;

        ps->nul = 0;
        ps->p++; /* opening quote */
        for (;;) {
                const char *run = ps->p;
                unsigned char c;
                /* Plain ASCII runs, the common case, in bulk. */
                while (ps->p < ps->end) {
                        c = (unsigned char)*ps->p;
                        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                                break;
                        ps->p++;
                }
                if (ps->p > run) {
                        size_t rl = (size_t)(ps->p - run);
                        if (out && n + rl < cap)
                                memcpy(out + n, run, rl);
                        else if (out && n < cap)
                                memcpy(out + n, run, cap - 1 - n);
                        n += rl;
                }
                if (ps->p >= ps->end)
                        return syntax(ps, "unterminated string");
                c = (unsigned char)*ps->p;
                if (c == '"') {
                        ps->p++;
                        break;
                }
                if (c < 0x20)
                        return syntax(ps, "control character in string");
                if (c == '\\') {
                        unsigned cp;
                        if (ps->end - ps->p < 2)
                                return syntax(ps, "unterminated escape");
                        switch (ps->p[1]) {
                        case '"':
                        case '\\':
                        case '/':
                                cp = (unsigned char)ps->p[1];
                                break;
                        case 'b':
                                cp = '\b';
                                break;
                        case 'f':
                                cp = '\f';
                                break;
                        case 'n':
                                cp = '\n';
                                break;
                        case 'r':
                                cp = '\r';
                                break;
                        case 't':
                                cp = '\t';
                                break;
                        case 'u':
                                if (ps->end - ps->p < 6 ||
                                    hex4(ps->p + 2, &cp) < 0)
                                        return syntax(ps, "bad \\u escape");
                                if (cp >= 0xd800 && cp <= 0xdbff) {
                                        unsigned lo;
                                        if (ps->end - ps->p < 12 ||
                                            ps->p[6] != '\\' ||
                                            ps->p[7] != 'u' ||
                                            hex4(ps->p + 8, &lo) < 0 ||
                                            lo < 0xdc00 || lo > 0xdfff)
                                                return syntax(ps,
                                                              "lone surrogate "
                                                              "escape");
                                        cp = 0x10000 + ((cp - 0xd800) << 10) +
                                             (lo - 0xdc00);
                                        ps->p += 6;
                                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                                        return syntax(ps,
                                                      "lone surrogate escape");
                                }
                                ps->p += 4;
                                break;
                        default:
                                return syntax(ps, "bad escape");
                        }
                        ps->p += 2;
                        ps->nul |= cp == 0;
                        n += put_utf8(out, cap ? cap - 1 : 0, n, cp);
                        continue;
                }
                if (c < 0x80) {
                        if (out && n + 1 < cap)
                                out[n] = (char)c;
                        n++;
                        ps->p++;
                } else {
                        size_t l = mls_utf8_len((const unsigned char *)ps->p,
                                                (size_t)(ps->end - ps->p));
                        if (l == 0)
                                return fail(ps, MLS_DECODE_INVALID_JSON,
                                            "invalid UTF-8 at byte %zu",
                                            (size_t)(ps->p - ps->start));
                        if (out && n + l < cap)
                                memcpy(out + n, ps->p, l);
                        n += l;
                        ps->p += l;
                }
        }
        if (out && cap)
                out[n < cap ? n : cap - 1] = '\0';
        if (outlen)
                *outlen = n;
        return 0;
}

/* Checks the JSON number grammar at ps->p and advances past it; a fault
 * in the integer part is reported at the number's start, one in its
 * fraction or exponent where it is. */
static int scan_number(struct parser *ps)
{
        size_t n;

        if (mls_jscan_number(ps->p, (size_t)(ps->end - ps->p), &n, NULL) < 0) {
                if (n > (size_t)(ps->p[0] == '-'))
                        ps->p += n;
                return syntax(ps, "bad number");
        }
        ps->p += n;
        return 0;
}

static const double pow10_exact[] = {
        1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * Converts the number token [s, e) to a double. Short decimals take an
 * exact fast path (mantissa below 2^53, power of ten up to 22); the rest go
 * through strtod.
 */
static int number_value(const char *s, const char *e, double *out)
{
        const char *p = s;
        uint64_t mant = 0;
        int neg = 0, digits = 0, exp10 = 0, eneg = 0, ev = 0;
        char tmp[NUMBER_TEXT_MAX + 1];

        if (*p == '-') {
                neg = 1;
                p++;
        }
        for (; p < e && *p >= '0' && *p <= '9'; p++, digits++)
                mant = mant * 10 + (uint64_t)(*p - '0');
        if (p < e && *p == '.') {
                for (p++; p < e && *p >= '0' && *p <= '9'; p++, digits++) {
                        mant = mant * 10 + (uint64_t)(*p - '0');
                        exp10--;
                }
        }
        if (p < e && (*p == 'e' || *p == 'E')) {
                p++;
                if (*p == '-' || *p == '+')
                        eneg = *p++ == '-';
                for (; p < e && *p >= '0' && *p <= '9' && ev < 100000; p++)
                        ev = ev * 10 + (*p - '0');
                exp10 += eneg ? -ev : ev;
        }
        if (digits <= 15 && mant < (1ULL << 53) && exp10 >= -22 &&
            exp10 <= 22) {
                double d = (double)mant;
                d = exp10 < 0 ? d / pow10_exact[-exp10]
                              : d * pow10_exact[exp10];
                *out = neg ? -d : d;
                return 0;
        }
        if ((size_t)(e - s) > NUMBER_TEXT_MAX)
                return -1;
        memcpy(tmp, s, (size_t)(e - s));
        tmp[e - s] = '\0';
        *out = strtod(tmp, NULL);
        return 0;
}

static int skip_value(struct parser *ps, int depth);

static int expect_literal(struct parser *ps, const char *lit)
{
        size_t n = strlen(lit);

        if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
                return syntax(ps, "unexpected character");
        ps->p += n;
        return 0;
}

/* Validates one JSON value of any kind, at most depth levels deep. */
static int skip_value(struct parser *ps, int depth)
{
        int c = peek(ps);

        if (depth <= 0)
                return fail(ps, MLS_DECODE_INVALID_JSON,
                            "JSON nested deeper than %d levels at byte %zu",
                            MLS_JSON_DEPTH_MAX, (size_t)(ps->p - ps->start));
        switch (c) {
        case '"':
                return parse_string(ps, NULL, 0, NULL);
        case 't':
                return expect_literal(ps, "true");
        case 'f':
                return expect_literal(ps, "false");
        case 'n':
                return expect_literal(ps, "null");
        case '[':
                ps->p++;
                if (peek(ps) == ']') {
                        ps->p++;
                        return 0;
                }
                for (;;) {
                        if (skip_value(ps, depth - 1) < 0)
                                return -1;
                        c = peek(ps);
                        ps->p++;
                        if (c == ']')
                                return 0;
                        if (c != ',') {
                                ps->p--;
                                return syntax(ps, "expected ',' or ']'");
                        }
                }
        case '{':
                ps->p++;
                if (peek(ps) == '}') {
                        ps->p++;
                        return 0;
                }
                for (;;) {
                        if (peek(ps) != '"')
                                return syntax(ps, "expected a key");
                        if (parse_string(ps, NULL, 0, NULL) < 0)
                                return -1;
                        if (peek(ps) != ':')
                                return syntax(ps, "expected ':'");
                        ps->p++;
                        if (skip_value(ps, depth - 1) < 0)
                                return -1;
                        c = peek(ps);
                        ps->p++;
                        if (c == '}')
                                return 0;
                        if (c != ',') {
                                ps->p--;
                                return syntax(ps, "expected ',' or '}'");
                        }
                }
        default:
                if (c == '-' || (c >= '0' && c <= '9'))
                        return scan_number(ps);
                return syntax(ps, "unexpected character");
        }
}

/* Parses one feature number and appends it. */
static int feature_number(struct parser *ps, struct mls_floats *feats)
{
        const char *s;
        double d;
        float f;
        int c = peek(ps);

        if (c == 'N' || c == 'I' ||
            (c == '-' && ps->end - ps->p > 1 && ps->p[1] == 'I'))
                return fail(ps, MLS_DECODE_NON_FINITE,
                            "features: NaN and Infinity are not finite "
                            "numbers (byte %zu)",
                            (size_t)(ps->p - ps->start));
        if (c != '-' && (c < '0' || c > '9')) {
                if (c == '"' || c == '{' || c == '[' || c == 't' || c == 'f' ||
                    c == 'n') {
                        if (skip_value(ps, MLS_JSON_DEPTH_MAX) < 0)
                                return -1;
                        return fail(ps, MLS_DECODE_BAD_FEATURES,
                                    "features: expected a number or a row "
                                    "of numbers (byte %zu)",
                                    (size_t)(ps->p - ps->start));
                }
                return syntax(ps, "expected a number");
        }
        s = ps->p;
        if (scan_number(ps) < 0)
                return -1;
        if (number_value(s, ps->p, &d) < 0)
                return fail(ps, MLS_DECODE_BAD_FEATURES,
                            "features: number longer than %d characters",
                            NUMBER_TEXT_MAX);
        f = (float)d;
        if (!isfinite(d) || !isfinite(f))
                return fail(ps, MLS_DECODE_NON_FINITE,
                            "features: %.*s is outside the float32 range",
                            (int)(ps->p - s > 40 ? 40 : ps->p - s), s);
        if (floats_push(feats, f) < 0)
                return fail(ps, MLS_DECODE_OUT_OF_MEMORY, "out of memory");
        return 0;
}

/* Parses numbers up to the closing ']' of a row; returns the count. */
static long parse_row(struct parser *ps, struct mls_floats *feats,
                      size_t max_width)
{
        long n = 0;
        int c;

        ps->p++; /* '[' */
        if (peek(ps) == ']') {
                ps->p++;
                return 0;
        }
        for (;;) {
                if (peek(ps) == '[')
                        return fail(ps, MLS_DECODE_BAD_FEATURES,
                                    "features: rows must hold numbers, not "
                                    "arrays (byte %zu)",
                                    (size_t)(ps->p - ps->start));
                if (feature_number(ps, feats) < 0)
                        return -1;
                if ((size_t)++n > max_width)
                        return fail(ps, MLS_DECODE_TOO_WIDE,
                                    "features: a row has more than %zu "
                                    "numbers",
                                    max_width);
                c = peek(ps);
                if (c == ']') {
                        ps->p++;
                        return n;
                }
                if (c != ',')
                        return syntax(ps, "expected ',' or ']' in features");
                ps->p++;
        }
}

static int parse_features(struct parser *ps,
                          const struct mls_decode_limits *lim,
                          struct mls_floats *feats, struct mls_input *in)
{
        int c = peek(ps);
        long w;

        if (c != '[') {
                if (skip_value(ps, MLS_JSON_DEPTH_MAX) < 0)
                        return -1;
                return fail(ps, MLS_DECODE_BAD_FEATURES,
                            "features must be an array of numbers or of "
                            "rows of numbers");
        }
        in->features_off = feats->len;
        /* Look past '[' to tell a flat row from a list of rows. */
        ps->p++;
        c = peek(ps);
        ps->p--;
        if (c != '[') {
                w = parse_row(ps, feats, lim->max_width);
                if (w < 0)
                        return -1;
                if (w == 0)
                        return fail(ps, MLS_DECODE_BAD_FEATURES,
                                    "features is empty");
                in->rows = 1;
                in->cols = (size_t)w;
                return 0;
        }
        ps->p++;
        in->rows = 0;
        for (;;) {
                if (peek(ps) != '[')
                        return fail(ps, MLS_DECODE_BAD_FEATURES,
                                    "features: every row must be an array "
                                    "(byte %zu)",
                                    (size_t)(ps->p - ps->start));
                w = parse_row(ps, feats, lim->max_width);
                if (w < 0)
                        return -1;
                if (w == 0)
                        return fail(ps, MLS_DECODE_BAD_FEATURES,
                                    "features: row %zu is empty", in->rows);
                if (in->rows == 0)
                        in->cols = (size_t)w;
                else if ((size_t)w != in->cols)
                        return fail(ps, MLS_DECODE_RAGGED,
                                    "features: row %zu has %ld numbers, row "
                                    "0 has %zu",
                                    in->rows, w, in->cols);
                if (++in->rows > lim->max_rows)
                        return fail(ps, MLS_DECODE_TOO_MANY_ROWS,
                                    "features: more than %zu rows",
                                    lim->max_rows);
                c = peek(ps);
                ps->p++;
                if (c == ']')
                        return 0;
                if (c != ',') {
                        ps->p--;
                        return syntax(ps, "expected ',' or ']' in features");
                }
        }
}

static int key_is(const char *key, size_t klen, const char *name)
{
        return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

static int parse_id(struct parser *ps, const char *key, char *out, size_t cap,
                    int *has)
{
        size_t len;
        int c = peek(ps);

        if (c == 'n') {
                if (expect_literal(ps, "null") < 0)
                        return -1;
                *has = 0;
                return 0;
        }
        if (c != '"') {
                if (skip_value(ps, MLS_JSON_DEPTH_MAX) < 0)
                        return -1;
                return fail(ps, MLS_DECODE_BAD_FIELD, "%s must be a string",
                            key);
        }
        if (parse_string(ps, out, cap, &len) < 0)
                return -1;
        if (len >= cap)
                return fail(ps, MLS_DECODE_BAD_FIELD,
                            "%s is longer than %zu bytes", key, cap - 1);
        if (len == 0)
                return fail(ps, MLS_DECODE_BAD_FIELD, "%s is empty", key);
        if (ps->nul)
                return fail(ps, MLS_DECODE_BAD_FIELD, "%s contains NUL", key);
        *has = 1;
        return 0;
}

enum mls_decode_err mls_decode(const char *payload, size_t len,
                               const struct mls_decode_limits *lim,
                               struct mls_floats *feats, struct mls_input *in,
                               char *errstr, size_t errstr_size)
{
        struct parser ps = {.start = payload,
                            .p = payload,
                            .end = payload + len,
                            .errstr = errstr,
                            .errstr_size = errstr_size};
        size_t saved = feats->len;
        int seen_features = 0, seen_model = 0, seen_input = 0, seen_meta = 0;
        char key[16];
        size_t klen;
        int c;

        in->has_model_id = in->has_input_id = 0;
        in->model_id[0] = in->input_id[0] = '\0';
        in->metadata = NULL;
        in->metadata_len = in->rows = in->cols = in->features_off = 0;
        if (len > lim->max_bytes) {
                fail(&ps, MLS_DECODE_OVERSIZE,
                     "message is %zu bytes, more than the %zu allowed", len,
                     lim->max_bytes);
                return ps.err;
        }
        if (peek(&ps) != '{') {
                if (skip_value(&ps, MLS_JSON_DEPTH_MAX) == 0 && peek(&ps) == -1)
                        fail(&ps, MLS_DECODE_NOT_OBJECT,
                             "message is JSON but not an object");
                else if (ps.err == MLS_DECODE_OK)
                        syntax(&ps, "trailing data");
                goto out;
        }
        ps.p++;
        if (peek(&ps) == '}') {
                ps.p++;
                goto end;
        }
        for (;;) {
                int *seen = NULL;
                if (peek(&ps) != '"') {
                        syntax(&ps, "expected a key");
                        goto out;
                }
                if (parse_string(&ps, key, sizeof(key), &klen) < 0)
                        goto out;
                if (peek(&ps) != ':') {
                        syntax(&ps, "expected ':'");
                        goto out;
                }
                ps.p++;
                /* Compare by length too: an escaped NUL ("model_id\u0000x")
                 * stops strcmp early but is a different key. */
                if (klen >= sizeof(key))
                        key[0] = '\0', klen = 0;
                if (key_is(key, klen, "features"))
                        seen = &seen_features;
                else if (key_is(key, klen, "model_id"))
                        seen = &seen_model;
                else if (key_is(key, klen, "input_id"))
                        seen = &seen_input;
                else if (key_is(key, klen, "metadata"))
                        seen = &seen_meta;
                if (seen && (*seen)++) {
                        fail(&ps, MLS_DECODE_BAD_FIELD, "duplicate key \"%s\"",
                             key);
                        goto out;
                }
                if (seen == &seen_features) {
                        if (parse_features(&ps, lim, feats, in) < 0)
                                goto out;
                } else if (seen == &seen_model) {
                        if (parse_id(&ps, "model_id", in->model_id,
                                     sizeof(in->model_id),
                                     &in->has_model_id) < 0)
                                goto out;
                } else if (seen == &seen_input) {
                        if (parse_id(&ps, "input_id", in->input_id,
                                     sizeof(in->input_id),
                                     &in->has_input_id) < 0)
                                goto out;
                } else if (seen == &seen_meta) {
                        const char *s;
                        c = peek(&ps);
                        s = ps.p;
                        if (skip_value(&ps, MLS_JSON_DEPTH_MAX) < 0)
                                goto out;
                        if (c == '{') {
                                in->metadata = s;
                                in->metadata_len = (size_t)(ps.p - s);
                        } else if (c != 'n') {
                                fail(&ps, MLS_DECODE_BAD_FIELD,
                                     "metadata must be an object");
                                goto out;
                        }
                } else if (skip_value(&ps, MLS_JSON_DEPTH_MAX - 1) < 0) {
                        goto out;
                }
                c = peek(&ps);
                if (c == '}') {
                        ps.p++;
                        break;
                }
                if (c != ',') {
                        syntax(&ps, "expected ',' or '}'");
                        goto out;
                }
                ps.p++;
        }
end:
        if (peek(&ps) != -1) {
                syntax(&ps, "trailing data after the object");
                goto out;
        }
        if (!seen_features)
                fail(&ps, MLS_DECODE_MISSING_FEATURES,
                     "message has no \"features\"");
out:
        if (ps.err != MLS_DECODE_OK)
                feats->len = saved;
        return ps.err;
}
