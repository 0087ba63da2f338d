/*
 * Compact JSON from jansson values (common/json.h).
 */
#include "common/json.h"

#include <string.h>

static int put_integer(struct mls_buf *out, json_int_t i)
{
        uint64_t mag = (uint64_t)i;

        if (i < 0) {
                if (mls_buf_putc(out, '-') < 0)
                        return -1;
                /* two's complement: also right for the most negative */
                mag = (uint64_t)0 - mag;
        }
        return mls_buf_u64(out, mag);
}

static int put_value(struct mls_buf *out, const json_t *v, unsigned depth);

/* The key of a raw value's one member: a NUL byte first. */
static const char raw_key[] = "\0mls-raw-json";
#define RAW_KEY_LEN (sizeof(raw_key) - 1)

json_t *mls_json_raw(const char *text, size_t len)
{
        json_t *o = json_object(), *s = json_stringn_nocheck(text, len);

        if (!o || !s ||
            json_object_setn_new_nocheck(o, raw_key, RAW_KEY_LEN, s) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

const char *mls_json_raw_text(const json_t *v, size_t *len)
{
        json_t *s;

        if (!json_is_object(v) || json_object_size(v) != 1 ||
            !(s = json_object_getn(v, raw_key, RAW_KEY_LEN)))
                return NULL;
        *len = json_string_length(s);
        return json_string_value(s);
}

static int put_object(struct mls_buf *out, const json_t *obj, unsigned depth)
{
        const char *key, *raw;
        json_t *member;
        size_t n;
        int sep = 0;

        if ((raw = mls_json_raw_text(obj, &n)))
                return mls_buf_append(out, raw, n);
        if (mls_buf_putc(out, '{') < 0)
                return -1;
        json_object_foreach((json_t *)obj, key, member)
        {
                if (sep && mls_buf_putc(out, ',') < 0)
                        return -1;
                sep = 1;
                if (mls_buf_json_str(out, key, strlen(key)) < 0 ||
                    mls_buf_putc(out, ':') < 0 ||
                    put_value(out, member, depth + 1) < 0)
                        return -1;
        }
        return mls_buf_putc(out, '}');
}

static int put_array(struct mls_buf *out, const json_t *arr, unsigned depth)
{
        size_t n = json_array_size(arr);

        if (mls_buf_putc(out, '[') < 0)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (i && mls_buf_putc(out, ',') < 0)
                        return -1;
                if (put_value(out, json_array_get(arr, i), depth + 1) < 0)
                        return -1;
        }
        return mls_buf_putc(out, ']');
}

static int put_value(struct mls_buf *out, const json_t *v, unsigned depth)
{
        if (depth > MLS_JSON_WRITE_MAX_DEPTH)
                return -1;
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return put_object(out, v, depth);
        case JSON_ARRAY:
                return put_array(out, v, depth);
        case JSON_STRING:
                return mls_buf_json_str(out, json_string_value(v),
                                        json_string_length(v));
        case JSON_INTEGER:
                return put_integer(out, json_integer_value(v));
        case JSON_REAL:
                return mls_buf_json_double(out, json_real_value(v));
        case JSON_TRUE:
                return MLS_BUF_LIT(out, "true");
        case JSON_FALSE:
                return MLS_BUF_LIT(out, "false");
        case JSON_NULL:
                return MLS_BUF_LIT(out, "null");
        }
        return -1;
}

int mls_json_write(struct mls_buf *out, const json_t *v)
{
        return put_value(out, v, 0);
}
