/*
 * Decodes one input message (DESIGN §3) without allocating per number: the
 * features are appended to a caller-owned float array, ids are unescaped into
 * a small per-message buffer, and metadata is kept as a byte span of the
 * original payload so it passes through byte for byte.
 *
 * Thread: whichever thread owns the decoder; not shared.
 */
#ifndef MLS_DECODER_H
#define MLS_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "common/model_id.h"

#define MLS_INPUT_ID_MAX 512
#define MLS_JSON_DEPTH_MAX 64

/* Why a message was refused; the name goes into the dead-letter header. */
enum mls_decode_err {
        MLS_DECODE_OK = 0,
        MLS_DECODE_OVERSIZE,
        MLS_DECODE_INVALID_JSON,
        MLS_DECODE_NOT_OBJECT,
        MLS_DECODE_BAD_FIELD,
        MLS_DECODE_MISSING_FEATURES,
        MLS_DECODE_BAD_FEATURES,
        MLS_DECODE_NON_FINITE,
        MLS_DECODE_RAGGED,
        MLS_DECODE_TOO_MANY_ROWS,
        MLS_DECODE_TOO_WIDE,
        MLS_DECODE_OUT_OF_MEMORY,
};

const char *mls_decode_err_name(enum mls_decode_err e);

/* A growable float array, reused across messages and batches. */
struct mls_floats {
        float *v;
        size_t len, cap;
};

void mls_floats_free(struct mls_floats *f);

struct mls_decode_limits {
        size_t max_bytes;
        size_t max_rows;
        size_t max_width;
};

/* A decoded message. Strings are NUL-terminated copies owned by the struct
 * (no heap); metadata points into the payload passed to mls_decode(). */
struct mls_input {
        char model_id[MLS_MODEL_ID_MAX + 1];
        int has_model_id;
        char input_id[MLS_INPUT_ID_MAX + 1];
        int has_input_id;
        const char *metadata; /* raw JSON object text, or NULL */
        size_t metadata_len;
        size_t rows, cols;
        size_t features_off; /* index of the first float in the array */
};

/*
 * Decodes payload[0..len). On success appends rows*cols floats to feats and
 * fills *in. On failure leaves feats as it was, returns the reason and
 * writes a one-line explanation (with the byte offset for JSON errors) into
 * errstr.
 */
enum mls_decode_err mls_decode(const char *payload, size_t len,
                               const struct mls_decode_limits *lim,
                               struct mls_floats *feats, struct mls_input *in,
                               char *errstr, size_t errstr_size);

#endif
