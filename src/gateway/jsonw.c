#include "gateway/jsonw.h"

#include <string.h>

int mls_jsonw_value(struct mls_buf *out, const json_t *v)
{
        const char *key;
        json_t *item;
        size_t i;
        int first = 1;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                if (mls_buf_putc(out, '{') < 0)
                        return -1;
                json_object_foreach((json_t *)v, key, item)
                {
                        if (!first && mls_buf_putc(out, ',') < 0)
                                return -1;
                        first = 0;
                        if (mls_buf_json_str(out, key, strlen(key)) < 0 ||
                            mls_buf_putc(out, ':') < 0 ||
                            mls_jsonw_value(out, item) < 0)
                                return -1;
                }
                return mls_buf_putc(out, '}');
        case JSON_ARRAY:
                if (mls_buf_putc(out, '[') < 0)
                        return -1;
                json_array_foreach(v, i, item)
                {
                        if (i && mls_buf_putc(out, ',') < 0)
                                return -1;
                        if (mls_jsonw_value(out, item) < 0)
                                return -1;
                }
                return mls_buf_putc(out, ']');
        case JSON_STRING:
                return mls_buf_json_str(out, json_string_value(v),
                                        json_string_length(v));
        case JSON_INTEGER:
                return mls_buf_printf(out, "%" JSON_INTEGER_FORMAT,
                                      json_integer_value(v));
        case JSON_REAL:
                return mls_buf_json_double(out, json_real_value(v));
        case JSON_TRUE:
                return mls_buf_append(out, "true", 4);
        case JSON_FALSE:
                return mls_buf_append(out, "false", 5);
        case JSON_NULL:
        default:
                return mls_buf_append(out, "null", 4);
        }
}
