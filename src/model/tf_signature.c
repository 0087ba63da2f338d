#include "model/tf_signature.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers, from tensorflow/core/protobuf/{saved_model,meta_graph}.proto
 * and tensorflow/core/framework/tensor_shape.proto. */
enum {
        SAVED_MODEL_META_GRAPHS = 2,
        META_GRAPH_META_INFO = 1,
        META_GRAPH_SIGNATURE_DEF = 5,
        META_INFO_TAGS = 4,
        MAP_KEY = 1,
        MAP_VALUE = 2,
        SIGNATURE_INPUTS = 1,
        SIGNATURE_OUTPUTS = 2,
        TENSOR_INFO_NAME = 1,
        TENSOR_INFO_DTYPE = 2,
        TENSOR_INFO_SHAPE = 3,
        SHAPE_DIM = 2,
        SHAPE_UNKNOWN_RANK = 3,
        DIM_SIZE = 1,
};

enum wire {
        WIRE_VARINT = 0,
        WIRE_FIXED64 = 1,
        WIRE_BYTES = 2,
        WIRE_FIXED32 = 5,
};

/* A cursor over one message's bytes. */
struct pb {
        const uint8_t *p, *end;
};

/* One field: its number, wire type and value (varint, or a byte span). */
struct pb_field {
        uint32_t num;
        enum wire type;
        uint64_t v;
        const uint8_t *data;
        size_t len;
};

static int pb_varint(struct pb *r, uint64_t *v)
{
        uint64_t x = 0;

        for (int shift = 0; shift < 64; shift += 7) {
                uint8_t b;
                if (r->p >= r->end)
                        return -1;
                b = *r->p++;
                x |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *v = x;
                        return 0;
                }
        }
        return -1;
}

/* Reads the next field. Returns 1, 0 at the end, -1 on malformed bytes. */
static int pb_next(struct pb *r, struct pb_field *f)
{
        uint64_t key, n;

        if (r->p == r->end)
                return 0;
        if (pb_varint(r, &key) < 0 || (key >> 3) == 0 ||
            (key >> 3) > 0x1fffffffu)
                return -1;
        f->num = (uint32_t)(key >> 3);
        f->type = (enum wire)(key & 7);
        f->v = 0;
        f->data = NULL;
        f->len = 0;
        switch (f->type) {
        case WIRE_VARINT:
                return pb_varint(r, &f->v) < 0 ? -1 : 1;
        case WIRE_FIXED64:
        case WIRE_FIXED32:
                n = f->type == WIRE_FIXED64 ? 8 : 4;
                if ((uint64_t)(r->end - r->p) < n)
                        return -1;
                f->data = r->p;
                f->len = (size_t)n;
                r->p += n;
                return 1;
        case WIRE_BYTES:
                if (pb_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p))
                        return -1;
                f->data = r->p;
                f->len = (size_t)n;
                r->p += n;
                return 1;
        default: /* groups (3, 4) and reserved types are not in the schema */
                return -1;
        }
}

static struct pb pb_sub(const struct pb_field *f)
{
        struct pb r = {f->data, f->data + f->len};
        return r;
}

static int copy_str(char *dst, size_t cap, const struct pb_field *f)
{
        if (f->type != WIRE_BYTES || f->len >= cap ||
            memchr(f->data, '\0', f->len))
                return -1;
        memcpy(dst, f->data, f->len);
        dst[f->len] = '\0';
        return 0;
}

static int str_eq(const struct pb_field *f, const char *s)
{
        size_t n = strlen(s);
        return f->type == WIRE_BYTES && f->len == n &&
               memcmp(f->data, s, n) == 0;
}

static int parse_shape(struct pb r, struct mls_tf_tensor_info *ti)
{
        struct pb_field f;
        int rc;

        ti->rank = 0;
        while ((rc = pb_next(&r, &f)) > 0) {
                if (f.num == SHAPE_UNKNOWN_RANK && f.type == WIRE_VARINT &&
                    f.v) {
                        ti->rank = -1;
                        return 0;
                }
                if (f.num == SHAPE_DIM && f.type == WIRE_BYTES) {
                        struct pb d = pb_sub(&f);
                        struct pb_field g;
                        int64_t size = 0;
                        int rc2;
                        if (ti->rank == MLS_TF_MAX_RANK)
                                return -1;
                        while ((rc2 = pb_next(&d, &g)) > 0)
                                if (g.num == DIM_SIZE && g.type == WIRE_VARINT)
                                        size = (int64_t)g.v;
                        if (rc2 < 0)
                                return -1;
                        ti->dims[ti->rank++] = size < 0 ? -1 : size;
                }
        }
        return rc;
}

static int parse_tensor_info(struct pb r, struct mls_tf_tensor_info *ti)
{
        struct pb_field f;
        int rc;

        ti->rank = -1;
        while ((rc = pb_next(&r, &f)) > 0) {
                if (f.num == TENSOR_INFO_NAME && f.type == WIRE_BYTES) {
                        if (copy_str(ti->name, sizeof(ti->name), &f) < 0)
                                return -1;
                } else if (f.num == TENSOR_INFO_DTYPE &&
                           f.type == WIRE_VARINT) {
                        ti->dtype = (int)f.v;
                } else if (f.num == TENSOR_INFO_SHAPE && f.type == WIRE_BYTES) {
                        if (parse_shape(pb_sub(&f), ti) < 0)
                                return -1;
                }
        }
        return rc;
}

/* One entry of map<string, TensorInfo>. */
static int parse_tensor_entry(struct pb r, struct mls_tf_tensor_info *ti)
{
        struct pb_field f;
        int rc;

        memset(ti, 0, sizeof(*ti));
        ti->rank = -1;
        while ((rc = pb_next(&r, &f)) > 0) {
                if (f.num == MAP_KEY) {
                        if (copy_str(ti->key, sizeof(ti->key), &f) < 0)
                                return -1;
                } else if (f.num == MAP_VALUE && f.type == WIRE_BYTES) {
                        if (parse_tensor_info(pb_sub(&f), ti) < 0)
                                return -1;
                }
        }
        return rc < 0 || !ti->name[0] ? -1 : 0;
}

static int cmp_key(const void *a, const void *b)
{
        return strcmp(((const struct mls_tf_tensor_info *)a)->key,
                      ((const struct mls_tf_tensor_info *)b)->key);
}

static int parse_signature(struct pb r, struct mls_tf_signature *sig,
                           char *errstr, size_t errstr_size)
{
        struct pb_field f;
        int rc;

        while ((rc = pb_next(&r, &f)) > 0) {
                struct mls_tf_tensor_info *list;
                size_t *n;
                if (f.type != WIRE_BYTES ||
                    (f.num != SIGNATURE_INPUTS && f.num != SIGNATURE_OUTPUTS))
                        continue;
                list = f.num == SIGNATURE_INPUTS ? sig->inputs : sig->outputs;
                n = f.num == SIGNATURE_INPUTS ? &sig->ninputs : &sig->noutputs;
                if (*n == MLS_TF_MAX_TENSORS) {
                        snprintf(errstr, errstr_size,
                                 "the signature has more than %d %s",
                                 MLS_TF_MAX_TENSORS,
                                 f.num == SIGNATURE_INPUTS ? "inputs"
                                                           : "outputs");
                        return -1;
                }
                if (parse_tensor_entry(pb_sub(&f), &list[*n]) < 0)
                        goto bad;
                (*n)++;
        }
        if (rc < 0)
                goto bad;
        qsort(sig->inputs, sig->ninputs, sizeof(sig->inputs[0]), cmp_key);
        qsort(sig->outputs, sig->noutputs, sizeof(sig->outputs[0]), cmp_key);
        return 0;
bad:
        snprintf(errstr, errstr_size, "malformed SignatureDef");
        return -1;
}

int mls_tf_signature_parse(const void *meta_graph_def, size_t len,
                           const char *key, struct mls_tf_signature *sig,
                           char *errstr, size_t errstr_size)
{
        struct pb r = {meta_graph_def, (const uint8_t *)meta_graph_def + len};
        struct pb_field f;
        char seen[256] = "";
        size_t seen_len = 0;
        int rc;

        memset(sig, 0, sizeof(*sig));
        while ((rc = pb_next(&r, &f)) > 0) {
                struct pb e;
                struct pb_field g, name = {0}, value = {0};
                int rc2;
                if (f.num != META_GRAPH_SIGNATURE_DEF || f.type != WIRE_BYTES)
                        continue;
                e = pb_sub(&f);
                while ((rc2 = pb_next(&e, &g)) > 0) {
                        if (g.num == MAP_KEY)
                                name = g;
                        else if (g.num == MAP_VALUE && g.type == WIRE_BYTES)
                                value = g;
                }
                if (rc2 < 0)
                        goto bad;
                if (str_eq(&name, key))
                        return parse_signature(pb_sub(&value), sig, errstr,
                                               errstr_size);
                if (name.type == WIRE_BYTES && seen_len < sizeof(seen))
                        seen_len += (size_t)snprintf(
                                seen + seen_len, sizeof(seen) - seen_len,
                                "%s%.*s", seen_len ? ", " : "",
                                (int)(name.len > 64 ? 64 : name.len),
                                (const char *)name.data);
        }
        if (rc < 0)
                goto bad;
        snprintf(errstr, errstr_size,
                 "the SavedModel has no signature \"%s\" (it has: %s)", key,
                 seen_len ? seen : "none");
        return -1;
bad:
        snprintf(errstr, errstr_size, "malformed MetaGraphDef");
        return -1;
}

static int has_tag(struct pb r, const char *tag)
{
        struct pb_field f;

        while (pb_next(&r, &f) > 0)
                if (f.num == META_GRAPH_META_INFO && f.type == WIRE_BYTES) {
                        struct pb m = pb_sub(&f);
                        struct pb_field g;
                        while (pb_next(&m, &g) > 0)
                                if (g.num == META_INFO_TAGS && str_eq(&g, tag))
                                        return 1;
                }
        return 0;
}

int mls_tf_saved_model_meta_graph(const void *saved_model, size_t len,
                                  const char *tag, const void **mg,
                                  size_t *mg_len, char *errstr,
                                  size_t errstr_size)
{
        struct pb r = {saved_model, (const uint8_t *)saved_model + len};
        struct pb_field f;
        int rc;

        while ((rc = pb_next(&r, &f)) > 0) {
                if (f.num != SAVED_MODEL_META_GRAPHS || f.type != WIRE_BYTES)
                        continue;
                if (has_tag(pb_sub(&f), tag)) {
                        *mg = f.data;
                        *mg_len = f.len;
                        return 0;
                }
        }
        if (rc < 0)
                snprintf(errstr, errstr_size, "malformed SavedModel");
        else
                snprintf(errstr, errstr_size,
                         "the SavedModel has no MetaGraph tagged \"%s\"", tag);
        return -1;
}

int mls_tf_tensor_name_split(const char *name, char *op, size_t op_size,
                             int *index)
{
        const char *colon = strrchr(name, ':');
        size_t n = colon ? (size_t)(colon - name) : strlen(name);
        char *end;
        long v = 0;

        if (n == 0 || n >= op_size)
                return -1;
        if (colon) {
                v = strtol(colon + 1, &end, 10);
                if (end == colon + 1 || *end || v < 0 || v > 1000000)
                        return -1;
        }
        memcpy(op, name, n);
        op[n] = '\0';
        *index = (int)v;
        return 0;
}
