/*
 * GraphQL error objects and the helpers that word messages as graphql-js
 * does: "Did you mean" suggestions and inspect() of JSON values.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/edits.h"
#include "graphql/graphql_int.h"

json_t *mls__gql_error(const char *message, const struct mls__gql_loc *locs,
                       size_t nlocs, json_t *path)
{
        struct mls_buf clean;
        const unsigned char *m = (const unsigned char *)message;
        size_t n = strlen(message);
        json_t *e = json_object(), *arr;

        if (!e) {
                json_decref(path);
                return NULL;
        }
        /* Messages quote user input; keep them valid UTF-8 for jansson. */
        mls_buf_init(&clean, MLS__GQL_BUF_LIMIT);
        for (size_t i = 0; i < n;) {
                size_t l = mls_utf8_len(m + i, n - i);
                if (l == 0) {
                        mls_buf_append(&clean, "\xef\xbf\xbd", 3);
                        i++;
                } else {
                        mls_buf_append(&clean, m + i, l);
                        i += l;
                }
        }
        json_object_set_new(
                e, "message",
                json_stringn(clean.data ? clean.data : "", clean.len));
        mls_buf_free(&clean);
        if (nlocs > 0 && locs && locs[0].line > 0) {
                arr = json_array();
                for (size_t i = 0; i < nlocs; i++) {
                        json_t *l;
                        if (locs[i].line == 0)
                                continue;
                        l = json_object();
                        json_object_set_new(l, "line",
                                            json_integer(locs[i].line));
                        json_object_set_new(l, "column",
                                            json_integer(locs[i].column));
                        json_array_append_new(arr, l);
                }
                json_object_set_new(e, "locations", arr);
        }
        if (path)
                json_object_set_new(e, "path", path);
        if (!json_object_get(e, "message")) {
                json_decref(e);
                return NULL;
        }
        return e;
}

void mls__gql_errors_push(json_t **errors, json_t *error)
{
        if (!error)
                return;
        if (!*errors)
                *errors = json_array();
        if (json_array_append_new(*errors, error) < 0 && !*errors)
                json_decref(error);
}

/* --- suggestions (graphql-js suggestionList + didYouMean) --------------- */

/* graphql-js lexicalDistance(), ok when within threshold: a case-only
 * difference counts as one edit, otherwise case is ignored. */
static size_t lexical_distance(const char *input, const char *option,
                               size_t threshold, bool *ok)
{
        size_t d;

        if (strcmp(input, option) == 0) {
                *ok = true;
                return 0;
        }
        if (strcasecmp(input, option) == 0) {
                *ok = true;
                return 1;
        }
        d = mls_edits(option, strlen(option), input, strlen(input), 1,
                      threshold);
        *ok = d <= threshold;
        return d;
}

/* graphql-js naturalCompare(): digit runs compare as numbers. */
static int natural_compare(const char *a, const char *b)
{
        while (*a && *b) {
                if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
                        const char *ea = a, *eb = b;
                        while (*a == '0' && isdigit((unsigned char)a[1]))
                                a++;
                        while (*b == '0' && isdigit((unsigned char)b[1]))
                                b++;
                        ea = a;
                        eb = b;
                        while (isdigit((unsigned char)*ea))
                                ea++;
                        while (isdigit((unsigned char)*eb))
                                eb++;
                        if (ea - a != eb - b)
                                return ea - a < eb - b ? -1 : 1;
                        for (; a < ea; a++, b++)
                                if (*a != *b)
                                        return *a < *b ? -1 : 1;
                        continue;
                }
                if (*a != *b)
                        return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
                a++;
                b++;
        }
        return *a ? 1 : *b ? -1 : 0;
}

void mls__gql_did_you_mean(struct mls_buf *b, const char *sub,
                           const char *input, const char *const *options,
                           size_t noptions)
{
        struct cand {
                const char *name;
                size_t dist;
        } best[5], c;
        size_t nbest = 0, threshold = strlen(input) * 4 / 10 + 1;

        for (size_t i = 0; i < noptions; i++) {
                bool ok;
                size_t pos;
                c.name = options[i];
                c.dist = lexical_distance(input, options[i], threshold, &ok);
                if (!ok)
                        continue;
                /* insertion into the five best, ordered as graphql-js */
                for (pos = nbest; pos > 0; pos--) {
                        const struct cand *p = &best[pos - 1];
                        if (p->dist < c.dist ||
                            (p->dist == c.dist &&
                             natural_compare(p->name, c.name) <= 0))
                                break;
                }
                if (pos >= 5)
                        continue;
                if (nbest < 5)
                        nbest++;
                memmove(&best[pos + 1], &best[pos],
                        (nbest - 1 - pos) * sizeof(best[0]));
                best[pos] = c;
        }
        if (nbest == 0)
                return;
        mls_buf_puts(b, " Did you mean ");
        if (sub)
                mls_buf_printf(b, "%s ", sub);
        for (size_t i = 0; i < nbest; i++) {
                if (i > 0 && nbest == 2)
                        mls_buf_puts(b, " or ");
                else if (i > 0 && i == nbest - 1)
                        mls_buf_puts(b, ", or ");
                else if (i > 0)
                        mls_buf_puts(b, ", ");
                mls_buf_printf(b, "\"%s\"", best[i].name);
        }
        mls_buf_putc(b, '?');
}

void mls__gql_did_you_mean_enum(struct mls_buf *b, const char *input,
                                const struct mls__gql_type *t)
{
        const char *names[64];
        unsigned n = t->nenum_values < 64 ? t->nenum_values : 64;

        for (unsigned k = 0; k < n; k++)
                names[k] = t->enum_values[k].name;
        mls__gql_did_you_mean(b, "the enum value", input, names, n);
}

/* --- inspect -----------------------------------------------------------------
 */

static void inspect_at(struct mls_buf *b, const json_t *v, int depth)
{
        const char *key;
        json_t *item;
        size_t i, n;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                if (depth > 2) {
                        mls_buf_puts(b, "[Object]");
                        return;
                }
                if (json_object_size(v) == 0) {
                        mls_buf_puts(b, "{}");
                        return;
                }
                mls_buf_puts(b, "{ ");
                i = 0;
                json_object_foreach((json_t *)v, key, item)
                {
                        if (i++)
                                mls_buf_puts(b, ", ");
                        mls_buf_printf(b, "%s: ", key);
                        inspect_at(b, item, depth + 1);
                }
                mls_buf_puts(b, " }");
                return;
        case JSON_ARRAY:
                if (depth > 2) {
                        mls_buf_puts(b, "[Array]");
                        return;
                }
                n = json_array_size(v);
                if (n == 0) {
                        mls_buf_puts(b, "[]");
                        return;
                }
                mls_buf_putc(b, '[');
                for (i = 0; i < n && i < 10; i++) {
                        if (i)
                                mls_buf_puts(b, ", ");
                        inspect_at(b, json_array_get(v, i), depth + 1);
                }
                if (n > 10)
                        mls_buf_printf(b, ", ... %zu more item%s", n - 10,
                                       n - 10 == 1 ? "" : "s");
                mls_buf_putc(b, ']');
                return;
        case JSON_STRING:
                mls_buf_json_str(b, json_string_value(v),
                                 json_string_length(v));
                return;
        case JSON_INTEGER:
                mls_buf_printf(b, "%" JSON_INTEGER_FORMAT,
                               json_integer_value(v));
                return;
        case JSON_REAL:
                mls_buf_json_double(b, json_real_value(v));
                return;
        case JSON_TRUE:
                mls_buf_puts(b, "true");
                return;
        case JSON_FALSE:
                mls_buf_puts(b, "false");
                return;
        case JSON_NULL:
                mls_buf_puts(b, "null");
                return;
        }
}

void mls__gql_inspect(struct mls_buf *b, const json_t *v)
{
        if (!v) {
                mls_buf_puts(b, "undefined");
                return;
        }
        inspect_at(b, v, 1);
}

/* --- DateTime
 * ------------------------------------------------------------------ */

static bool digits(const char *s, size_t n, int *out)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return true;
}

bool mls__gql_is_datetime(const char *s, size_t len)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        int y, mo, d, h, mi, se, oh, om;
        size_t p = 19;

        if (len < 20 || !digits(s, 4, &y) || s[4] != '-' ||
            !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
            (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
            s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
            !digits(s + 17, 2, &se))
                return false;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
            mi > 59 || se > 60)
                return false;
        if (mo == 2 && d == 29 &&
            !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return false;
        if (p < len && s[p] == '.') {
                size_t start = ++p;
                while (p < len && isdigit((unsigned char)s[p]))
                        p++;
                if (p == start)
                        return false;
        }
        if (p < len && (s[p] == 'Z' || s[p] == 'z'))
                return p + 1 == len;
        if (p + 6 == len && (s[p] == '+' || s[p] == '-') &&
            digits(s + p + 1, 2, &oh) && s[p + 3] == ':' &&
            digits(s + p + 4, 2, &om))
                return oh <= 23 && om <= 59;
        return false;
}
