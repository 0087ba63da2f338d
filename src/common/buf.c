#include "common/buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mls_buf_init(struct mls_buf *b, size_t limit)
{
        memset(b, 0, sizeof(*b));
        b->limit = limit;
}

void mls_buf_free(struct mls_buf *b)
{
        free(b->data);
        mls_buf_init(b, b->limit);
}

int mls_buf_reserve(struct mls_buf *b, size_t n)
{
        size_t want, ncap;
        char *p;

        if (b->len + n + 1 <= b->cap)
                return 0;
        if (n > b->limit || b->len + n > b->limit) {
                b->overflow = 1;
                return -1;
        }
        want = b->len + n + 1;
        ncap = b->cap ? b->cap : 256;
        while (ncap < want)
                ncap *= 2;
        if (ncap > b->limit + 1)
                ncap = b->limit + 1;
        p = realloc(b->data, ncap);
        if (!p) {
                b->overflow = 1;
                return -1;
        }
        b->data = p;
        b->cap = ncap;
        return 0;
}

int mls_buf__append_slow(struct mls_buf *b, const void *p, size_t n)
{
        if (mls_buf_reserve(b, n) < 0)
                return -1;
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
}

int mls_buf_puts(struct mls_buf *b, const char *s)
{
        return mls_buf_append(b, s, strlen(s));
}

int mls_buf_printf(struct mls_buf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || mls_buf_reserve(b, (size_t)n) < 0)
                return -1;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

int mls_buf_json_str(struct mls_buf *b, const char *s, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0, run = 0;

        if (mls_buf_putc(b, '"') < 0)
                return -1;
        while (i < n) {
                unsigned char c = p[i];
                size_t l;
                if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
                        i++;
                        run++;
                        continue;
                }
                if (run && mls_buf_append(b, p + i - run, run) < 0)
                        return -1;
                run = 0;
                if (c == '"' || c == '\\') {
                        char esc[2] = {'\\', (char)c};
                        if (mls_buf_append(b, esc, 2) < 0)
                                return -1;
                        i++;
                } else if (c < 0x20) {
                        char esc[6] = {'\\', 'u',         '0',
                                       '0',  hex[c >> 4], hex[c & 15]};
                        if (mls_buf_append(b, esc, 6) < 0)
                                return -1;
                        i++;
                } else if ((l = mls_utf8_len(p + i, n - i)) != 0) {
                        if (mls_buf_append(b, p + i, l) < 0)
                                return -1;
                        i += l;
                } else {
                        if (mls_buf_append(b, "\xef\xbf\xbd", 3) < 0)
                                return -1;
                        i++;
                }
        }
        if (run && mls_buf_append(b, p + i - run, run) < 0)
                return -1;
        return mls_buf_putc(b, '"');
}

/* Writes m / 10^d as decimal text ("-0.125"). */
static int put_scaled(struct mls_buf *b, int neg, uint64_t m, int d)
{
        char tmp[48];
        int i = (int)sizeof(tmp);

        for (int k = 0; k < d; k++) {
                tmp[--i] = (char)('0' + m % 10);
                m /= 10;
        }
        if (d)
                tmp[--i] = '.';
        do {
                tmp[--i] = (char)('0' + m % 10);
                m /= 10;
        } while (m);
        if (neg)
                tmp[--i] = '-';
        return mls_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

int mls_buf_json_float(struct mls_buf *b, float v)
{
        static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                     1e5, 1e6, 1e7, 1e8, 1e9};
        double a = fabs((double)v);
        char tmp[32];
        int n = 0;

        if (!isfinite(v))
                return mls_buf_append(b, "null", 4);
        /*
         * Fast path: the fewest decimals d (up to 9) whose rounding of v
         * converts back to v. m and 10^d are exact doubles and the division
         * is correctly rounded, so the text reads back as v.
         */
        if (a < 1e9 && (a >= 1e-4 || a == 0)) {
                for (int d = 0; d <= 9; d++) {
                        double m = nearbyint(a * p10[d]);
                        if (m >= 9007199254740992.0)
                                break;
                        if ((float)(m / p10[d]) == (float)a)
                                return put_scaled(b, signbit(v) && m != 0,
                                                  (uint64_t)m, d);
                }
        }
        /* Shortest precision that reads back exactly. */
        for (int prec = 6; prec <= 9; prec++) {
                n = snprintf(tmp, sizeof(tmp), "%.*g", prec, (double)v);
                if (strtof(tmp, NULL) == v)
                        break;
        }
        return mls_buf_append(b, tmp, (size_t)n);
}

/* The common case of mls_buf_json_double() without printf: a value that is
 * the nearest double to a decimal with at most 6 fractional digits, between
 * 1e-4 and 1e9 in magnitude (so that "%.15g" would print that decimal, not
 * an exponent). Returns 1 when written, 0 when v is not such a value, -1
 * when the buffer is full. */
static int short_decimal(struct mls_buf *b, double v)
{
        double a = v < 0 ? -v : v, scaled = a * 1e6;
        uint64_t k, ip, frac;
        char tmp[24];
        int i = (int)sizeof(tmp), digits = 6;

        if (!(a >= 1e-4 && a < 1e9))
                return 0;
        k = (uint64_t)(scaled + 0.5);
        if ((double)k / 1e6 != a)
                return 0;
        ip = k / 1000000;
        frac = k % 1000000;
        while (frac && frac % 10 == 0) {
                frac /= 10;
                digits--;
        }
        if (frac) {
                for (int d = 0; d < digits; d++) {
                        tmp[--i] = (char)('0' + frac % 10);
                        frac /= 10;
                }
                tmp[--i] = '.';
        }
        do {
                tmp[--i] = (char)('0' + ip % 10);
                ip /= 10;
        } while (ip);
        if (v < 0)
                tmp[--i] = '-';
        return mls_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i) < 0 ? -1 : 1;
}

int mls_buf_json_double(struct mls_buf *b, double v)
{
        char tmp[40];
        int n = 0;

        if (!isfinite(v))
                return mls_buf_append(b, "null", 4);
        if ((n = short_decimal(b, v)) != 0)
                return n < 0 ? -1 : 0;
        for (int prec = 15; prec <= 17; prec++) {
                n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (strtod(tmp, NULL) == v)
                        break;
        }
        return mls_buf_append(b, tmp, (size_t)n);
}

int mls_buf_u64(struct mls_buf *b, uint64_t v)
{
        char tmp[24];
        int i = (int)sizeof(tmp);

        do {
                tmp[--i] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        return mls_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

const char *mls_buf_cstr(struct mls_buf *b)
{
        if (mls_buf_reserve(b, 0) < 0 && !b->data)
                return "";
        if (!b->data)
                return "";
        b->data[b->len] = '\0';
        return b->data;
}
