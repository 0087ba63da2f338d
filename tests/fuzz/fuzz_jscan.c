/*
 * libFuzzer target for the JSON scanner (src/common/jscan.c) that reads
 * every prediction payload the gateway receives: on any bytes it agrees
 * with jansson on whether they are valid JSON (but for numbers past
 * jansson's range, which the scanner does not judge), every member it
 * reports lies inside the input and names a member jansson found. A NUL
 * byte is never valid JSON: the scanner refuses it wherever it is (jansson
 * reads some inputs only up to one).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/jscan.h"

struct check {
        const char *start, *end;
        json_t *doc;
};

static int member(void *opaque, const struct mls_jscan_span *key,
                  const struct mls_jscan_span *value)
{
        struct check *c = opaque;
        char k[4096];
        long n;

        if (key->p < c->start || key->p + key->len > c->end ||
            value->p < c->start || value->p + value->len > c->end)
                abort();
        n = mls_jscan_string(key, k, sizeof(k));
        if (n >= 0 && c->doc && !json_object_getn(c->doc, k, (size_t)n))
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct check c = {(const char *)data, (const char *)data + size, NULL};
        struct mls_jscan_span any;
        json_error_t err;
        int ours;

        if (memchr(data, 0, size)) {
                if (mls_jscan_object((const char *)data, size, NULL, NULL,
                                     NULL) == 0 ||
                    mls_jscan_value((const char *)data, size, &any, NULL) == 0)
                        abort();
                return 0;
        }
        c.doc = json_loadb((const char *)data, size, 0, &err);
        ours = mls_jscan_object((const char *)data, size, member, &c, NULL);
        if (c.doc) {
                if (json_is_object(c.doc) != (ours == 0))
                        abort();
        } else if (!strstr(err.text, "too big") &&
                   !strstr(err.text, "overflow") && ours == 0) {
                abort();
        }
        json_decref(c.doc);
        c.doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, &err);
        ours = mls_jscan_value((const char *)data, size, &any, NULL);
        if ((c.doc != NULL) != (ours == 0) &&
            !(!c.doc &&
              (strstr(err.text, "too big") || strstr(err.text, "overflow"))))
                abort();
        json_decref(c.doc);
        return 0;
}
