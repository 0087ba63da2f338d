#include "gateway/payload.h"

#include <errno.h>
#include <math.h>
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

/* A DateTime value: an RFC 3339 string as it is, or epoch milliseconds as a
 * new ISO 8601 string. Returns a new reference, or NULL when invalid. */
static json_t *datetime(json_t *v)
{
        char buf[32];
        double ms;

        if (json_is_string(v))
                return mls_payload_is_datetime(json_string_value(v),
                                               json_string_length(v))
                               ? json_incref(v)
                               : NULL;
        if (!json_is_number(v))
                return NULL;
        ms = json_number_value(v);
        /* years 1970 to 9999, so the string keeps its four-digit year */
        if (!(ms >= 0 && ms < 253402300800000.0))
                return NULL;
        if (!mls_clock_iso8601((int64_t)ms, buf, sizeof(buf)))
                return NULL;
        return json_string(buf);
}

/* An ID or String value: strings as they are, integers in decimal. */
static json_t *id_string(json_t *v)
{
        char buf[32];

        if (json_is_string(v))
                return json_incref(v);
        if (json_is_integer(v)) {
                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(v));
                return json_string(buf);
        }
        return NULL;
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

static enum mls_payload_kind garbage(struct mls_payload *out, const char *why)
{
        json_decref(out->event);
        json_decref(out->models);
        json_decref(out->tenant);
        free_entries(out);
        out->event = NULL;
        out->models = NULL;
        out->tenant = NULL;
        out->model_id = NULL;
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

/* modelVersion: a non-empty string of at most MLS_PAYLOAD_NAME_MAX bytes
 * as it is (new reference); NULL (null) for anything else, so that an old
 * or odd engine's predictions still go out. */
static json_t *model_version(json_t *v)
{
        mls_payload_name_t name;

        if (!json_is_string(v) || !opt_name(v, name))
                return NULL;
        return json_incref(v);
}

static int set(json_t *obj, const char *key, json_t *v)
{
        return json_object_set_new(obj, key, v ? v : json_null());
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

/* A jansson value for a scanned span (new reference; NULL when memory runs
 * out): scalars as values, arrays and objects as raw JSON text that is
 * written out as it came (mls_json_raw()). */
static json_t *span_value(const struct mls_jscan_span *s)
{
        char small[256], *big = NULL, *end;
        json_t *v = NULL;
        long n;

        switch (s->type) {
        case MLS_JSCAN_NULL:
                return json_null();
        case MLS_JSCAN_TRUE:
                return json_true();
        case MLS_JSCAN_FALSE:
                return json_false();
        case MLS_JSCAN_ARRAY:
        case MLS_JSCAN_OBJECT:
                return mls_json_raw(s->p, s->len);
        case MLS_JSCAN_STRING:
                if (!s->escaped)
                        return json_stringn_nocheck(s->p, s->len);
                if (s->len < sizeof(small)) {
                        n = mls_jscan_string(s, small, sizeof(small));
                        return json_stringn_nocheck(small, (size_t)n);
                }
                if (!(big = malloc(s->len + 1)))
                        return NULL;
                n = mls_jscan_string(s, big, s->len + 1);
                v = json_stringn_nocheck(big, (size_t)n);
                free(big);
                return v;
        case MLS_JSCAN_NUMBER:
                break;
        }
        /* numbers: strtod and strtoll want a terminated copy */
        if (s->len < sizeof(small)) {
                memcpy(small, s->p, s->len);
                small[s->len] = '\0';
        } else if ((big = malloc(s->len + 1))) {
                memcpy(big, s->p, s->len);
                big[s->len] = '\0';
        } else {
                return NULL;
        }
        if (s->integral) {
                long long i;
                errno = 0;
                i = strtoll(big ? big : small, &end, 10);
                if (errno == 0)
                        v = json_integer((json_int_t)i);
        }
        if (!v)
                v = json_real(strtod(big ? big : small, &end));
        free(big);
        return v;
}

/* The decoded metadata.tenant when metadata is an object holding a string
 * "tenant" (the last one, when repeated). */
static int on_metadata_member(void *opaque, const struct mls_jscan_span *key,
                              const struct mls_jscan_span *value)
{
        const struct mls_jscan_span **tenant = opaque;

        if (value->type == MLS_JSCAN_STRING &&
            mls_jscan_string_is(key, "tenant"))
                *tenant = value;
        return 0;
}

static int set_tenant(struct mls_payload *out, const struct mls_jscan_span *m)
{
        const struct mls_jscan_span *t = NULL;

        if (!m || m->type != MLS_JSCAN_OBJECT)
                return 0;
        mls_jscan_object(m->p, m->len, on_metadata_member, &t, NULL);
        if (t && !(out->tenant = span_value(t)))
                return -1;
        return 0;
}

/* The fields of a prediction, as jansson values (owned). */
struct prediction_values {
        json_t *model, *inference, *input, *preds, *latency, *received,
                *published, *metadata, *version;
};

static void values_free(struct prediction_values *pv)
{
        json_decref(pv->model);
        json_decref(pv->inference);
        json_decref(pv->input);
        json_decref(pv->preds);
        json_decref(pv->latency);
        json_decref(pv->received);
        json_decref(pv->published);
        json_decref(pv->metadata);
        json_decref(pv->version);
}

/* span_value() of an optional field: 0 and *dst NULL when absent. */
static int value_of(const struct mls_jscan_span *s, json_t **dst)
{
        *dst = NULL;
        return s && !(*dst = span_value(s)) ? -1 : 0;
}

static enum mls_payload_kind prediction(const struct prediction_values *pv,
                                        struct mls_payload *out)
{
        json_t *model = pv->model, *inference = pv->inference,
               *input = pv->input, *preds = pv->preds, *latency = pv->latency,
               *received = pv->received, *published = pv->published;
        json_t *ev, *id = NULL, *recv_at = NULL;
        enum mls_payload_kind k;
        double lat;

        if (!valid_model_id(model))
                return garbage(out, model ? "bad model_id" : "no model_id");
        if (!inference || !(id = id_string(inference)))
                return garbage(out, inference ? "bad inference_id"
                                              : "no inference_id");
        if (!preds || json_is_null(preds)) {
                k = garbage(out, "no predictions");
                goto done;
        }
        if (!json_is_number(latency)) {
                k = garbage(out, latency ? "bad latency_ms" : "no latency_ms");
                goto done;
        }
        lat = json_number_value(latency);
        if (!isfinite(lat) || lat < 0) {
                k = garbage(out, "bad latency_ms");
                goto done;
        }
        if (!received || !(recv_at = datetime(received))) {
                k = garbage(out,
                            received ? "bad received_at" : "no received_at");
                goto done;
        }
        if (input && !json_is_null(input) && !json_is_string(input) &&
            !json_is_integer(input)) {
                k = garbage(out, "bad input_id");
                goto done;
        }

        ev = out->event = json_object();
        /* set() takes the references it is given, also when it fails */
        if (!ev || set(ev, "inferenceId", json_incref(id)) < 0 ||
            set(ev, "modelId", json_incref(model)) < 0 ||
            set(ev, "inputId", input ? id_string(input) : NULL) < 0 ||
            set(ev, "predictions", json_incref(preds)) < 0 ||
            set(ev, "latencyMs", json_real(lat)) < 0 ||
            set(ev, "receivedAt", json_incref(recv_at)) < 0 ||
            set(ev, "publishedAt", published ? datetime(published) : NULL) <
                    0 ||
            set(ev, "metadata", json_incref(pv->metadata)) < 0 ||
            set(ev, "modelVersion", model_version(pv->version)) < 0) {
                k = garbage(out, "out of memory");
                goto done;
        }
        out->model_id = json_string_value(json_object_get(ev, "modelId"));
        out->latency_ms = lat;
        k = out->kind = MLS_PAYLOAD_PREDICTION;
done:
        json_decref(id);
        json_decref(recv_at);
        return k;
}

static enum mls_payload_kind scanned_prediction(const struct fields *f,
                                                struct mls_payload *out)
{
        struct prediction_values pv;
        enum mls_payload_kind k;

        memset(&pv, 0, sizeof(pv));
        if (value_of(pick(f, F_MODEL, F_MODEL_C), &pv.model) < 0 ||
            value_of(pick(f, F_INFERENCE, F_INFERENCE_C), &pv.inference) < 0 ||
            value_of(pick(f, F_INPUT, F_INPUT_C), &pv.input) < 0 ||
            value_of(pick(f, F_PREDICTIONS, -1), &pv.preds) < 0 ||
            value_of(pick(f, F_LATENCY, F_LATENCY_C), &pv.latency) < 0 ||
            value_of(pick(f, F_RECEIVED, F_RECEIVED_C), &pv.received) < 0 ||
            value_of(pick(f, F_PUBLISHED, F_PUBLISHED_C), &pv.published) < 0 ||
            value_of(pick(f, F_METADATA, -1), &pv.metadata) < 0 ||
            value_of(pick(f, F_VERSION, F_VERSION_C), &pv.version) < 0) {
                values_free(&pv);
                return garbage(out, "out of memory");
        }
        k = prediction(&pv, out);
        values_free(&pv);
        if (k == MLS_PAYLOAD_PREDICTION &&
            set_tenant(out, pick(f, F_METADATA, -1)) < 0)
                return garbage(out, "out of memory");
        return k;
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
        if (!json_is_string(p->tenant))
                return NULL;
        *len = json_string_length(p->tenant);
        return json_string_value(p->tenant);
}

void mls_payload_clear(struct mls_payload *p)
{
        json_decref(p->event);
        json_decref(p->models);
        json_decref(p->tenant);
        free_entries(p);
        memset(p, 0, sizeof(*p));
}
