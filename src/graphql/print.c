/*
 * Printing: GraphQL values and types as graphql-js print() does (for
 * messages and argument comparison). JSON output is common/json.h's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphql/graphql_int.h"

static void print_string(struct mls_buf *b, const char *s, size_t n)
{
        static const char hex[] = "0123456789ABCDEF";

        mls_buf_putc(b, '"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                switch (c) {
                case '"':
                        mls_buf_puts(b, "\\\"");
                        break;
                case '\\':
                        mls_buf_puts(b, "\\\\");
                        break;
                case '\b':
                        mls_buf_puts(b, "\\b");
                        break;
                case '\t':
                        mls_buf_puts(b, "\\t");
                        break;
                case '\n':
                        mls_buf_puts(b, "\\n");
                        break;
                case '\f':
                        mls_buf_puts(b, "\\f");
                        break;
                case '\r':
                        mls_buf_puts(b, "\\r");
                        break;
                default:
                        if (c < 0x20 || c == 0x7f) {
                                char e[6] = {'\\', 'u',         '0',
                                             '0',  hex[c >> 4], hex[c & 15]};
                                mls_buf_append(b, e, 6);
                        } else if (c == 0xc2 && i + 1 < n &&
                                   (unsigned char)s[i + 1] >= 0x80 &&
                                   (unsigned char)s[i + 1] <= 0x9f) {
                                /* C1 controls U+0080..U+009F */
                                unsigned char c2 = (unsigned char)s[++i];
                                char e[6] = {'\\', 'u',          '0',
                                             '0',  hex[c2 >> 4], hex[c2 & 15]};
                                mls_buf_append(b, e, 6);
                        } else {
                                mls_buf_putc(b, (char)c);
                        }
                }
        }
        mls_buf_putc(b, '"');
}

static void print_block_string(struct mls_buf *b, const char *s, size_t n)
{
        mls_buf_puts(b, "\"\"\"");
        for (size_t i = 0; i < n; i++) {
                if (i + 2 < n && s[i] == '"' && s[i + 1] == '"' &&
                    s[i + 2] == '"') {
                        mls_buf_puts(b, "\\\"\"\"");
                        i += 2;
                } else {
                        mls_buf_putc(b, s[i]);
                }
        }
        mls_buf_puts(b, "\"\"\"");
}

static int cmp_fields(const void *a, const void *b)
{
        const struct mls__gql_objfield *const *x = a, *const *y = b;

        return strcmp((*x)->name, (*y)->name);
}

void mls__gql_print_value(struct mls_buf *b, const struct mls__gql_value *v,
                          bool sorted)
{
        const struct mls__gql_objfield *f;
        const struct mls__gql_value *it;

        switch (v->kind) {
        case MLS__GQL_V_VARIABLE:
                mls_buf_printf(b, "$%s", v->str);
                break;
        case MLS__GQL_V_INT:
        case MLS__GQL_V_FLOAT:
        case MLS__GQL_V_ENUM:
                mls_buf_puts(b, v->str);
                break;
        case MLS__GQL_V_STRING:
                if (v->block && !sorted)
                        print_block_string(b, v->str, v->len);
                else
                        print_string(b, v->str, v->len);
                break;
        case MLS__GQL_V_BOOLEAN:
                mls_buf_puts(b, v->boolean ? "true" : "false");
                break;
        case MLS__GQL_V_NULL:
                mls_buf_puts(b, "null");
                break;
        case MLS__GQL_V_LIST:
                mls_buf_putc(b, '[');
                for (it = v->items; it; it = it->next) {
                        mls__gql_print_value(b, it, sorted);
                        if (it->next)
                                mls_buf_puts(b, ", ");
                }
                mls_buf_putc(b, ']');
                break;
        case MLS__GQL_V_OBJECT:
                mls_buf_putc(b, '{');
                if (sorted && v->count > 1) {
                        const struct mls__gql_objfield **arr;
                        unsigned n = 0;
                        arr = malloc(v->count * sizeof(*arr));
                        if (!arr) {
                                b->overflow = 1;
                                break;
                        }
                        for (f = v->fields; f; f = f->next)
                                arr[n++] = f;
                        qsort(arr, n, sizeof(*arr), cmp_fields);
                        for (unsigned i = 0; i < n; i++) {
                                mls_buf_printf(b, "%s%s: ", i ? ", " : "",
                                               arr[i]->name);
                                mls__gql_print_value(b, arr[i]->value, true);
                        }
                        free(arr);
                } else {
                        for (f = v->fields; f; f = f->next) {
                                mls_buf_printf(b, "%s: ", f->name);
                                mls__gql_print_value(b, f->value, sorted);
                                if (f->next)
                                        mls_buf_puts(b, ", ");
                        }
                }
                mls_buf_putc(b, '}');
                break;
        }
}

void mls__gql_print_typeref(struct mls_buf *b, const struct mls__gql_typeref *t)
{
        switch (t->kind) {
        case MLS__GQL_T_NAMED:
                mls_buf_puts(b, t->name);
                break;
        case MLS__GQL_T_LIST:
                mls_buf_putc(b, '[');
                mls__gql_print_typeref(b, t->of);
                mls_buf_putc(b, ']');
                break;
        case MLS__GQL_T_NON_NULL:
                mls__gql_print_typeref(b, t->of);
                mls_buf_putc(b, '!');
                break;
        }
}
