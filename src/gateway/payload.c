#include "gateway/payload.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"

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

static enum mls_payload_kind garbage(struct mls_payload *out, const char *why)
{
        json_decref(out->event);
        json_decref(out->models);
        out->event = NULL;
        out->models = NULL;
        out->model_id = NULL;
        out->kind = MLS_PAYLOAD_GARBAGE;
        snprintf(out->reason, sizeof(out->reason), "%s", why);
        return out->kind;
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
        out->kind = MLS_PAYLOAD_HEARTBEAT;
        return out->kind;
}

static int set(json_t *obj, const char *key, json_t *v)
{
        return json_object_set_new(obj, key, v ? v : json_null());
}

static enum mls_payload_kind prediction(json_t *root, struct mls_payload *out)
{
        json_t *model = field(root, "model_id", "modelId");
        json_t *inference = field(root, "inference_id", "inferenceId");
        json_t *input = field(root, "input_id", "inputId");
        json_t *preds = json_object_get(root, "predictions");
        json_t *latency = field(root, "latency_ms", "latencyMs");
        json_t *received = field(root, "received_at", "receivedAt");
        json_t *published = field(root, "published_at", "publishedAt");
        json_t *metadata = json_object_get(root, "metadata");
        json_t *ev, *v;
        double lat;

        if (!valid_model_id(model))
                return garbage(out, model ? "bad model_id" : "no model_id");
        if (!inference || !(v = id_string(inference)))
                return garbage(out, inference ? "bad inference_id"
                                              : "no inference_id");
        json_decref(v);
        if (!preds || json_is_null(preds))
                return garbage(out, "no predictions");
        if (!json_is_number(latency))
                return garbage(out,
                               latency ? "bad latency_ms" : "no latency_ms");
        lat = json_number_value(latency);
        if (!isfinite(lat) || lat < 0)
                return garbage(out, "bad latency_ms");
        if (!received || !(v = datetime(received)))
                return garbage(out,
                               received ? "bad received_at" : "no received_at");
        json_decref(v);
        if (input && !json_is_null(input) && !json_is_string(input) &&
            !json_is_integer(input))
                return garbage(out, "bad input_id");

        ev = out->event = json_object();
        if (!ev || set(ev, "inferenceId", id_string(inference)) < 0 ||
            set(ev, "modelId", json_incref(model)) < 0 ||
            set(ev, "inputId", input ? id_string(input) : NULL) < 0 ||
            set(ev, "predictions", json_incref(preds)) < 0 ||
            set(ev, "latencyMs", json_real(lat)) < 0 ||
            set(ev, "receivedAt", datetime(received)) < 0 ||
            set(ev, "publishedAt", published ? datetime(published) : NULL) <
                    0 ||
            set(ev, "metadata", metadata ? json_incref(metadata) : NULL) < 0)
                return garbage(out, "out of memory");
        out->model_id = json_string_value(json_object_get(ev, "modelId"));
        out->latency_ms = lat;
        out->kind = MLS_PAYLOAD_PREDICTION;
        return out->kind;
}

enum mls_payload_kind mls_payload_normalize(const char *data, size_t len,
                                            size_t max_len,
                                            struct mls_payload *out)
{
        json_error_t jerr;
        json_t *root, *type;
        enum mls_payload_kind k;

        memset(out, 0, sizeof(*out));
        if (len > max_len)
                return garbage(out, "payload too large");
        root = json_loadb(data, len, 0, &jerr);
        if (!root)
                return garbage(out, "not JSON");
        if (!json_is_object(root)) {
                json_decref(root);
                return garbage(out, "not a JSON object");
        }
        type = json_object_get(root, "type");
        if (!type || (json_is_string(type) &&
                      strcmp(json_string_value(type), "prediction") == 0))
                k = prediction(root, out);
        else if (json_is_string(type) &&
                 strcmp(json_string_value(type), "heartbeat") == 0)
                k = heartbeat(root, out);
        else
                k = garbage(out, "unknown type");
        json_decref(root);
        return k;
}

void mls_payload_clear(struct mls_payload *p)
{
        json_decref(p->event);
        json_decref(p->models);
        memset(p, 0, sizeof(*p));
}
