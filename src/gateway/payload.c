#include "gateway/payload.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/jscan.h"
#include "common/json.h"

/* snake_case first, then camelCase. */
static json_t *field(json_t *obj, const char *snake, const char *camel)
{
        json_t *v = json_object_get(obj, snake);

        if (!v && camel)
                v = json_object_get(obj, camel);
        return v;
}

static int digits(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return 0;
        return 1;
}

static int num(const char *s, size_t n)
{
        int v = 0;

        for (size_t i = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
        return v;
}

int mls_payload_is_datetime(const char *s, size_t len)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30,
                                    31, 31, 30, 31, 30, 31};
        size_t i;
        int mon, day;

        /* YYYY-MM-DDTHH:MM:SS */
        if (len < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) ||
            s[7] != '-' || !digits(s + 8, 2) ||
            (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) ||
            s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
            !digits(s + 17, 2))
                return 0;
        mon = num(s + 5, 2);
        day = num(s + 8, 2);
        if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] ||
            num(s + 11, 2) > 23 || num(s + 14, 2) > 59 || num(s + 17, 2) > 60)
                return 0;
        i = 19;
        if (s[i] == '.') {
                size_t start = ++i;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                        i++;
                if (i == start)
                        return 0;
        }
        if (i < len && (s[i] == 'Z' || s[i] == 'z'))
                return i + 1 == len;
        if (i < len && (s[i] == '+' || s[i] == '-'))
                return len - i == 6 && digits(s + i + 1, 2) &&
                       s[i + 3] == ':' && digits(s + i + 4, 2) &&
                       num(s + i + 1, 2) <= 23 && num(s + i + 4, 2) <= 59;
        return 0;
}

static int valid_model_id(json_t *v)
{
        size_t n;

        if (!json_is_string(v))
                return 0;
        n = json_string_length(v);
        return n > 0 && n <= MLS_MODEL_ID_MAX &&
               strlen(json_string_value(v)) == n;
}

static void free_entries(struct mls_payload *p)
{
        free(p->loaded);
        free(p->comparisons);
        p->loaded = NULL;
        p->comparisons = NULL;
        p->nloaded = p->ncomparisons = 0;
}

static void release(struct mls_payload *p)
{
        json_decref(p->event);
        json_decref(p->gap);
        json_decref(p->models);
        mls_buf_free(&p->store);
        mls_buf_free(&p->gap_text);
        free_entries(p);
}

static enum mls_payload_kind garbage(struct mls_payload *out, const char *why)
{
        release(out);
        memset(out, 0, sizeof(*out));
        out->kind = MLS_PAYLOAD_GARBAGE;
        snprintf(out->reason, sizeof(out->reason), "%s", why);
        return out->kind;
}

/* An optional name into dst: 1 when v is absent, null, or a non-empty
 * string of at most MLS_PAYLOAD_NAME_MAX bytes without NUL; 0 otherwise. */
static int opt_name(json_t *v, mls_payload_name_t dst)
{
        size_t n;

        dst[0] = '\0';
        if (!v || json_is_null(v))
                return 1;
        if (!json_is_string(v))
                return 0;
        n = json_string_length(v);
        if (n == 0 || n > MLS_PAYLOAD_NAME_MAX ||
            strlen(json_string_value(v)) != n)
                return 0;
        memcpy(dst, json_string_value(v), n + 1);
        return 1;
}

/* A finite number >= 0 into *dst: 1 when it is one, or (optional) absent
 * or null (then *dst = dflt); 0 otherwise. */
static int count(json_t *v, int optional, double dflt, double *dst)
{
        double x;

        if (!v || json_is_null(v)) {
                *dst = dflt;
                return optional;
        }
        if (!json_is_number(v))
                return 0;
        x = json_number_value(v);
        if (!isfinite(x) || x < 0)
                return 0;
        *dst = x;
        return 1;
}

static int copy_model_id(json_t *v, char *dst)
{
        if (!valid_model_id(v))
                return 0;
        memcpy(dst, json_string_value(v), json_string_length(v) + 1);
        return 1;
}

static int parse_loaded(json_t *o, struct mls_payload_loaded *l)
{
        json_t *share = field(o, "canary_share", "canaryShare");

        if (!json_is_object(o) ||
            !copy_model_id(field(o, "model_id", "modelId"), l->model_id) ||
            !opt_name(json_object_get(o, "framework"), l->framework) ||
            !opt_name(json_object_get(o, "serving"), l->serving) ||
            !opt_name(json_object_get(o, "canary"), l->canary) ||
            !opt_name(json_object_get(o, "shadow"), l->shadow) ||
            !count(share, 1, NAN, &l->canary_share) || l->canary_share > 1 ||
            !count(json_object_get(o, "predictions"), 1, NAN,
                   &l->predictions) ||
            !count(json_object_get(o, "errors"), 1, NAN, &l->errors))
                return 0;
        /* a share without a canary says nothing */
        if (!l->canary[0])
                l->canary_share = NAN;
        return 1;
}

/* The histogram: le ascending, counts one longer. Absent: nbuckets 0. */
static int parse_buckets(json_t *le, json_t *counts,
                         struct mls_payload_comparison *c)
{
        size_t n = json_array_size(le);

        c->nbuckets = 0;
        if ((!le || json_is_null(le)) && (!counts || json_is_null(counts)))
                return 1;
        if (!json_is_array(le) || !json_is_array(counts) || n == 0 ||
            n > MLS_PAYLOAD_MAX_BUCKETS || json_array_size(counts) != n + 1)
                return 0;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && (!count(json_array_get(le, i), 0, 0, &c->le[i]) ||
                              (i > 0 && c->le[i] <= c->le[i - 1])))
                        return 0;
                if (!count(json_array_get(counts, i), 0, 0, &c->counts[i]))
                        return 0;
        }
        c->nbuckets = (unsigned)n;
        return 1;
}

static int parse_comparison(json_t *o, struct mls_payload_comparison *c)
{
        if (!json_is_object(o) ||
            !copy_model_id(field(o, "model_id", "modelId"), c->model_id) ||
            !opt_name(json_object_get(o, "serving"), c->serving) ||
            !c->serving[0] ||
            !opt_name(json_object_get(o, "shadow"), c->shadow) ||
            !c->shadow[0] ||
            !count(json_object_get(o, "rows"), 0, 0, &c->rows) ||
            !count(json_object_get(o, "agreements"), 0, 0, &c->agreements) ||
            c->agreements > c->rows ||
            !count(field(o, "abs_diff_sum", "absDiffSum"), 0, 0,
                   &c->abs_diff_sum) ||
            !count(field(o, "serving_seconds", "servingSeconds"), 1, 0,
                   &c->serving_seconds) ||
            !count(field(o, "serving_calls", "servingCalls"), 1, 0,
                   &c->serving_calls) ||
            !count(field(o, "shadow_seconds", "shadowSeconds"), 1, 0,
                   &c->shadow_seconds) ||
            !count(field(o, "shadow_calls", "shadowCalls"), 1, 0,
                   &c->shadow_calls))
                return 0;
        return parse_buckets(field(o, "abs_diff_le", "absDiffLe"),
                             field(o, "abs_diff_counts", "absDiffCounts"), c);
}

/* The valid entries of the heartbeat's "loaded" and "comparisons". An
 * entry repeating one kept before (same model, or same model and pair)
 * is skipped. */
static int engine_state(json_t *root, struct mls_payload *out)
{
        json_t *id = field(root, "engine_id", "engineId");
        json_t *loaded = json_object_get(root, "loaded");
        json_t *cmps = json_object_get(root, "comparisons");
        json_t *item;
        size_t i, n;

        if (loaded && json_is_null(loaded))
                loaded = NULL;
        if (cmps && json_is_null(cmps))
                cmps = NULL;
        if (!loaded && !cmps)
                return 0;
        n = json_is_string(id) ? json_string_length(id) : 0;
        if (n == 0 || n > MLS_PAYLOAD_ENGINE_ID_MAX ||
            strlen(json_string_value(id)) != n) {
                out->skipped +=
                        json_array_size(loaded) + json_array_size(cmps) + 1;
                return 0;
        }
        memcpy(out->engine_id, json_string_value(id), n + 1);
        if (loaded && !json_is_array(loaded)) {
                out->skipped++;
                loaded = NULL;
        }
        if (cmps && !json_is_array(cmps)) {
                out->skipped++;
                cmps = NULL;
        }
        out->has_loaded = loaded != NULL;
        out->has_comparisons = cmps != NULL;
        n = json_array_size(loaded);
        if (n > MLS_PAYLOAD_MAX_LOADED) {
                out->skipped += (unsigned)(n - MLS_PAYLOAD_MAX_LOADED);
                n = MLS_PAYLOAD_MAX_LOADED;
        }
        if (n && !(out->loaded = malloc(n * sizeof(*out->loaded))))
                return -1;
        for (i = 0; i < n; i++) {
                struct mls_payload_loaded *l = &out->loaded[out->nloaded];
                int dup = 0;
                item = json_array_get(loaded, i);
                if (!parse_loaded(item, l)) {
                        out->skipped++;
                        continue;
                }
                for (size_t k = 0; k < out->nloaded && !dup; k++)
                        dup = strcmp(out->loaded[k].model_id, l->model_id) == 0;
                if (dup)
                        out->skipped++;
                else
                        out->nloaded++;
        }
        n = json_array_size(cmps);
        if (n > MLS_PAYLOAD_MAX_COMPARISONS) {
                out->skipped += (unsigned)(n - MLS_PAYLOAD_MAX_COMPARISONS);
                n = MLS_PAYLOAD_MAX_COMPARISONS;
        }
        if (n && !(out->comparisons = malloc(n * sizeof(*out->comparisons))))
                return -1;
        for (i = 0; i < n; i++) {
                struct mls_payload_comparison *c =
                        &out->comparisons[out->ncomparisons];
                int dup = 0;
                item = json_array_get(cmps, i);
                if (!parse_comparison(item, c)) {
                        out->skipped++;
                        continue;
                }
                for (size_t k = 0; k < out->ncomparisons && !dup; k++) {
                        const struct mls_payload_comparison *o =
                                &out->comparisons[k];
                        dup = strcmp(o->model_id, c->model_id) == 0 &&
                              strcmp(o->serving, c->serving) == 0 &&
                              strcmp(o->shadow, c->shadow) == 0;
                }
                if (dup)
                        out->skipped++;
                else
                        out->ncomparisons++;
        }
        return 0;
}

static enum mls_payload_kind heartbeat(json_t *root, struct mls_payload *out)
{
        json_t *models = json_object_get(root, "models"), *item;
        size_t i;

        out->models = json_array();
        if (!out->models)
                return garbage(out, "out of memory");
        if (models && !json_is_array(models) && !json_is_null(models))
                return garbage(out, "heartbeat \"models\" is not an array");
        json_array_foreach(models, i, item)
        {
                if (valid_model_id(item) &&
                    json_array_append(out->models, item) < 0)
                        return garbage(out, "out of memory");
        }
        if (engine_state(root, out) < 0)
                return garbage(out, "out of memory");
        out->kind = MLS_PAYLOAD_HEARTBEAT;
        return out->kind;
}

/* The top-level fields a prediction may have, snake_case before camelCase
 * as field() prefers them. */
enum {
        F_TYPE,
        F_MODEL,
        F_MODEL_C,
        F_INFERENCE,
        F_INFERENCE_C,
        F_INPUT,
        F_INPUT_C,
        F_PREDICTIONS,
        F_LATENCY,
        F_LATENCY_C,
        F_RECEIVED,
        F_RECEIVED_C,
        F_PUBLISHED,
        F_PUBLISHED_C,
        F_METADATA,
        F_VERSION,
        F_VERSION_C,
        NFIELDS
};

#define NAME(s)                  \
        {                        \
                s, sizeof(s) - 1 \
        }
static const struct {
        const char *s;
        size_t len;
} field_names[NFIELDS] = {
        NAME("type"),          NAME("model_id"),     NAME("modelId"),
        NAME("inference_id"),  NAME("inferenceId"),  NAME("input_id"),
        NAME("inputId"),       NAME("predictions"),  NAME("latency_ms"),
        NAME("latencyMs"),     NAME("received_at"),  NAME("receivedAt"),
        NAME("published_at"),  NAME("publishedAt"),  NAME("metadata"),
        NAME("model_version"), NAME("modelVersion"),
};
#undef NAME

struct fields {
        struct mls_jscan_span v[NFIELDS];
        unsigned char have[NFIELDS];
};

/* Keeps the span of each known member; a repeated key keeps the last, as
 * jansson would. */
static int on_member(void *opaque, const struct mls_jscan_span *key,
                     const struct mls_jscan_span *value)
{
        struct fields *f = opaque;

        for (int i = 0; i < NFIELDS; i++)
                if (key->escaped ? mls_jscan_string_is(key, field_names[i].s)
                                 : key->len == field_names[i].len &&
                                           memcmp(key->p, field_names[i].s,
                                                  key->len) == 0) {
                        f->v[i] = *value;
                        f->have[i] = 1;
                        break;
                }
        return 0;
}

static const struct mls_jscan_span *pick(const struct fields *f, int snake,
                                         int camel)
{
        if (f->have[snake])
                return &f->v[snake];
        return camel >= 0 && f->have[camel] ? &f->v[camel] : NULL;
}

/* metadata's last "tenant" member, copied (the scanner's spans live only
 * during the call); a tenant only when that one is a string. */
static int on_metadata_member(void *opaque, const struct mls_jscan_span *key,
                              const struct mls_jscan_span *value)
{
        struct mls_jscan_span *tenant = opaque;

        if (mls_jscan_string_is(key, "tenant"))
                *tenant = *value;
        return 0;
}

const char *const mls_payload_field_names[MLS_PF_COUNT] = {
        "inferenceId", "modelId",     "inputId",  "predictions",  "latencyMs",
        "receivedAt",  "publishedAt", "metadata", "modelVersion", "gap",
};

/*
 * Writing a prediction's texts. p->store is reserved up front for the most
 * they can take (store_bound()), so that what is written stays where it
 * is: p->text[] and the decoded strings point into it.
 */

/* Room in the store for what a scalar span can become: decoded (len + 1)
 * and escaped again, or a number's text. Escaping again takes at most
 * three bytes a byte of the span: a control character, at least two
 * bytes there ("\n"), becomes six ("\u000a"); everything else keeps its
 * length or shrinks. Arrays and objects are never written there. */
static size_t scalar_room(const struct mls_jscan_span *s)
{
        return s && s->type != MLS_JSCAN_ARRAY && s->type != MLS_JSCAN_OBJECT
                       ? 4 * s->len + 80
                       : 0;
}

/* The decoded string of s: in the payload when it holds no escape and
 * need not be terminated, else NUL-terminated in the store. */
static const char *decode(struct mls_payload *p, const struct mls_jscan_span *s,
                          int terminated, size_t *n)
{
        struct mls_buf *b = &p->store;
        char *d = b->data + b->len;
        long k = (long)s->len;

        if (!s->escaped && !terminated) {
                *n = s->len;
                return s->p;
        }
        if (s->escaped)
                k = mls_jscan_string(s, d, s->len + 1);
        else
                memcpy(d, s->p, s->len);
        d[k] = '\0';
        b->len += (size_t)k + 1;
        *n = (size_t)k;
        return d;
}

/* Field i's text: the JSON string of str[0..n). */
static void put_str(struct mls_payload *p, int i, const char *str, size_t n)
{
        struct mls_buf *b = &p->store;
        size_t at = b->len;

        mls_buf_json_str(b, str, n);
        p->text[i] = (struct mls_gql_text){b->data + at, b->len - at};
}

/* A short decimal without exponent ("1.25", "-0.5", "7") as a double,
 * or -1 when s is not one: Clinger's fast path. Up to 15 digits make an
 * integer that a double holds exactly, ten to a power up to 22 is exact
 * too, and one division of the two rounds once, as strtod does. */
static int short_decimal(const struct mls_jscan_span *s, double *out)
{
        static const double pow10[] = {1e0,  1e1,  1e2,  1e3, 1e4,  1e5,
                                       1e6,  1e7,  1e8,  1e9, 1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15};
        const char *p = s->p, *end = s->p + s->len;
        uint64_t m = 0;
        int neg = 0, digits = 0, frac = -1;

        if (p < end && *p == '-') {
                neg = 1;
                p++;
        }
        for (; p < end; p++) {
                if (*p == '.' && frac < 0) {
                        frac = 0;
                        continue;
                }
                if (*p < '0' || *p > '9' || ++digits > 15)
                        return -1; /* an exponent, or too many digits */
                m = m * 10 + (uint64_t)(*p - '0');
                if (frac >= 0)
                        frac++;
        }
        *out = (double)m / pow10[frac > 0 ? frac : 0];
        if (neg)
                *out = -*out;
        return 0;
}

/* A number span as a double (strtod wants a terminated copy); NAN when
 * memory runs out. */
static double span_double(const struct mls_jscan_span *s)
{
        char small[64], *z = small;
        double d;

        if (short_decimal(s, &d) == 0)
                return d;
        if (s->len >= sizeof(small) && !(z = malloc(s->len + 1)))
                return NAN;
        memcpy(z, s->p, s->len);
        z[s->len] = '\0';
        d = strtod(z, NULL);
        if (z != small)
                free(z);
        return d;
}

/* An ID or String field (inferenceId, inputId): a string as it is, an
 * integer in decimal; its decoded value in *str and *n. -1 for anything else,
 * an integer out of range included. */
static int put_id(struct mls_payload *p, int i, const struct mls_jscan_span *s,
                  const char **str, size_t *n)
{
        char num[32];
        long long v;
        int k;

        if (s->type == MLS_JSCAN_STRING) {
                *str = decode(p, s, 0, n);
                put_str(p, i, *str, *n);
                return 0;
        }
        if (s->type != MLS_JSCAN_NUMBER || !s->integral ||
            s->len >= sizeof(num))
                return -1;
        memcpy(num, s->p, s->len);
        num[s->len] = '\0';
        errno = 0;
        v = strtoll(num, NULL, 10);
        if (errno)
                return -1;
        k = snprintf(num, sizeof(num), "%lld", v);
        put_str(p, i, num, (size_t)k);
        /* the decimal digits sit inside the quotes of the text */
        *str = p->text[i].p + 1;
        *n = (size_t)k;
        return 0;
}

/* A DateTime field: an RFC 3339 string as it is, epoch milliseconds (years
 * 1970 to 9999, so that the year keeps four digits) as ISO 8601. -1 when
 * invalid. */
static int put_datetime(struct mls_payload *p, int i,
                        const struct mls_jscan_span *s)
{
        const char *str;
        char iso[32];
        double ms;
        size_t n;

        if (s->type == MLS_JSCAN_STRING) {
                str = decode(p, s, 0, &n);
                if (!mls_payload_is_datetime(str, n))
                        return -1;
                put_str(p, i, str, n);
                return 0;
        }
        if (s->type != MLS_JSCAN_NUMBER)
                return -1;
        ms = span_double(s);
        if (!(ms >= 0 && ms < 253402300800000.0))
                return -1;
        n = mls_clock_iso8601((int64_t)ms, iso, sizeof(iso));
        if (!n)
                return -1;
        put_str(p, i, iso, n);
        return 0;
}

/* A JSON field (predictions, metadata): its text byte for byte as the
 * engine wrote it (a string's span leaves out its quotes). */
static void put_json(struct mls_payload *p, int i,
                     const struct mls_jscan_span *s)
{
        int q = s->type == MLS_JSCAN_STRING;

        p->text[i] = (struct mls_gql_text){s->p - q, s->len + 2 * q};
}

static enum mls_payload_kind scanned_prediction(const struct fields *f,
                                                struct mls_payload *out)
{
        const struct mls_jscan_span *model = pick(f, F_MODEL, F_MODEL_C),
                                    *id = pick(f, F_INFERENCE, F_INFERENCE_C),
                                    *input = pick(f, F_INPUT, F_INPUT_C),
                                    *preds = pick(f, F_PREDICTIONS, -1),
                                    *lat = pick(f, F_LATENCY, F_LATENCY_C),
                                    *recv = pick(f, F_RECEIVED, F_RECEIVED_C),
                                    *pub = pick(f, F_PUBLISHED, F_PUBLISHED_C),
                                    *meta = pick(f, F_METADATA, -1),
                                    *ver = pick(f, F_VERSION, F_VERSION_C);
        struct mls_jscan_span tenant = {.p = NULL};
        const char *str;
        size_t n, room;
        char *base;

        if (meta && meta->type == MLS_JSCAN_OBJECT)
                mls_jscan_object(meta->p, meta->len, on_metadata_member,
                                 &tenant, NULL);
        if (tenant.p && tenant.type != MLS_JSCAN_STRING)
                tenant.p = NULL;
        room = scalar_room(model) + scalar_room(id) + scalar_room(input) +
               scalar_room(lat) + scalar_room(recv) + scalar_room(pub) +
               scalar_room(ver) + (tenant.p ? tenant.len + 1 : 0);
        mls_buf_init(&out->store, room + 1);
        if (mls_buf_reserve(&out->store, room) < 0)
                return garbage(out, "out of memory");
        base = out->store.data;

        if (!model || model->type != MLS_JSCAN_STRING)
                return garbage(out, model ? "bad model_id" : "no model_id");
        str = decode(out, model, 1, &n);
        if (n == 0 || n > MLS_MODEL_ID_MAX || strlen(str) != n)
                return garbage(out, "bad model_id");
        out->model_id = str;
        out->model_id_len = n;
        put_str(out, MLS_PF_MODEL_ID, str, n);
        if (!id || put_id(out, MLS_PF_INFERENCE_ID, id, &out->inference_id,
                          &out->inference_id_len) < 0)
                return garbage(out,
                               id ? "bad inference_id" : "no inference_id");
        if (!preds || preds->type == MLS_JSCAN_NULL)
                return garbage(out, "no predictions");
        if (!lat || lat->type != MLS_JSCAN_NUMBER)
                return garbage(out, lat ? "bad latency_ms" : "no latency_ms");
        out->latency_ms = span_double(lat);
        if (!isfinite(out->latency_ms) || out->latency_ms < 0)
                return garbage(out, "bad latency_ms");
        if (!recv || put_datetime(out, MLS_PF_RECEIVED_AT, recv) < 0)
                return garbage(out,
                               recv ? "bad received_at" : "no received_at");
        if (input && input->type != MLS_JSCAN_NULL &&
            put_id(out, MLS_PF_INPUT_ID, input, &str, &n) < 0)
                return garbage(out, "bad input_id");

        put_json(out, MLS_PF_PREDICTIONS, preds);
        if (meta)
                put_json(out, MLS_PF_METADATA, meta);
        {
                struct mls_buf *b = &out->store;
                size_t at = b->len;
                mls_buf_json_double(b, out->latency_ms);
                out->text[MLS_PF_LATENCY_MS] =
                        (struct mls_gql_text){b->data + at, b->len - at};
        }
        /* optional, null when invalid */
        if (pub && put_datetime(out, MLS_PF_PUBLISHED_AT, pub) < 0)
                out->text[MLS_PF_PUBLISHED_AT].len = 0;
        if (ver && ver->type == MLS_JSCAN_STRING) {
                str = decode(out, ver, 0, &n);
                if (n > 0 && n <= MLS_PAYLOAD_NAME_MAX && !memchr(str, 0, n))
                        put_str(out, MLS_PF_MODEL_VERSION, str, n);
        }
        if (tenant.p)
                out->tenant = decode(out, &tenant, 0, &out->tenant_len);
        /* the reservation held: nothing written moved */
        if (out->store.data != base || out->store.overflow)
                return garbage(out, "out of memory");
        out->kind = MLS_PAYLOAD_PREDICTION;
        return out->kind;
}

static json_t *text_value(const struct mls_payload *p, int i)
{
        const struct mls_gql_text *t = &p->text[i];

        if (i == MLS_PF_GAP)
                return json_incref(p->gap);
        if (i == MLS_PF_LATENCY_MS)
                return json_real(p->latency_ms);
        if (!t->len)
                return json_null();
        /* the text a response carries, forwarded as it is */
        if (i == MLS_PF_PREDICTIONS || i == MLS_PF_METADATA)
                return mls_json_raw(t->p, t->len);
        return json_loadb(t->p, t->len, JSON_DECODE_ANY, NULL);
}

json_t *mls_payload_event(struct mls_payload *p)
{
        json_t *ev;

        if (p->event || p->kind != MLS_PAYLOAD_PREDICTION)
                return p->event;
        ev = json_object();
        for (int i = 0; ev && i < MLS_PF_COUNT; i++) {
                json_t *v;
                if (i == MLS_PF_GAP && !p->gap)
                        continue;
                v = text_value(p, i);
                if (!v || json_object_set_new(ev, mls_payload_field_names[i],
                                              v) < 0) {
                        json_decref(ev);
                        ev = NULL;
                }
        }
        return p->event = ev;
}

int mls_payload_set_gap(struct mls_payload *p, json_t *gap)
{
        json_decref(p->gap);
        p->gap = gap;
        mls_buf_free(&p->gap_text);
        mls_buf_init(&p->gap_text, (size_t)1 << 16);
        if (!gap || mls_json_write(&p->gap_text, gap) < 0 ||
            (p->event && json_object_set(p->event, "gap", gap) < 0)) {
                json_decref(p->gap);
                p->gap = NULL;
                p->text[MLS_PF_GAP].len = 0;
                return -1;
        }
        p->text[MLS_PF_GAP] =
                (struct mls_gql_text){p->gap_text.data, p->gap_text.len};
        return 0;
}

/*
 * Predictions, the hot path, are scanned in place (common/jscan.h): only
 * the top-level fields are decoded, and "predictions" and "metadata" stay
 * the JSON text the engine wrote. Heartbeats, a few a second, are parsed
 * with jansson.
 */
enum mls_payload_kind mls_payload_normalize(const char *data, size_t len,
                                            size_t max_len,
                                            struct mls_payload *out)
{
        const struct mls_jscan_span *type;
        struct fields f;
        json_t *root;
        int rc;

        memset(out, 0, sizeof(*out));
        if (len > max_len)
                return garbage(out, "payload too large");
        memset(f.have, 0, sizeof(f.have));
        rc = mls_jscan_object(data, len, on_member, &f, NULL);
        if (rc < 0) {
                struct mls_jscan_span any;
                return garbage(out, mls_jscan_value(data, len, &any, NULL) == 0
                                            ? "not a JSON object"
                                            : "not JSON");
        }
        type = pick(&f, F_TYPE, -1);
        if (!type || mls_jscan_string_is(type, "prediction"))
                return scanned_prediction(&f, out);
        if (!mls_jscan_string_is(type, "heartbeat"))
                return garbage(out, "unknown type");
        root = json_loadb(data, len, 0, NULL);
        if (!root) /* a number out of jansson's range, or no memory */
                return garbage(out, "not JSON");
        rc = heartbeat(root, out);
        json_decref(root);
        return (enum mls_payload_kind)rc;
}

const char *mls_payload_tenant(const struct mls_payload *p, size_t *len)
{
        *len = p->tenant_len;
        return p->tenant;
}

void mls_payload_clear(struct mls_payload *p)
{
        release(p);
        memset(p, 0, sizeof(*p));
}
