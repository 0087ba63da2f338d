/*
 * UTF-8 validation, decoding and encoding (common/utf8.h).
 */
#include "common/utf8.h"

size_t mls_utf8_len(const unsigned char *s, size_t n)
{
        unsigned lead = s[0], cp;
        size_t len;

        if (lead < 0x80)
                return 1;
        if (lead >= 0xc2 && lead <= 0xdf) {
                len = 2;
                cp = lead & 0x1f;
        } else if (lead >= 0xe0 && lead <= 0xef) {
                len = 3;
                cp = lead & 0x0f;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
                len = 4;
                cp = lead & 0x07;
        } else {
                return 0; /* a continuation byte, 0xc0/0xc1, or past 0xf4 */
        }
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
                return 0; /* overlong, or a surrogate */
        if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
                return 0; /* overlong, or past U+10FFFF */
        return len;
}

unsigned mls_utf8_decode(const unsigned char *s, size_t n, size_t *lenp)
{
        size_t len = mls_utf8_len(s, n);
        unsigned cp;

        *lenp = len;
        if (len <= 1)
                return len ? s[0] : 0;
        /* the lead byte keeps 7 - len payload bits */
        cp = s[0] & (0x7fu >> len);
        for (size_t i = 1; i < len; i++)
                cp = (cp << 6) | (s[i] & 0x3f);
        return cp;
}

size_t mls_utf8_encode(unsigned cp, char out[MLS_UTF8_MAX])
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}
