/*
 * libFuzzer target for the Kafka message decoder: whatever the bytes, the
 * decoder must not crash, must leave the float array as it was on failure,
 * and on success must describe exactly what it appended and a metadata span
 * inside the input that starts with '{' and ends with '}'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const struct mls_decode_limits lim = {
                .max_bytes = 1 << 16, .max_rows = 64, .max_width = 64};
        struct mls_floats f = {0};
        struct mls_input in;
        char err[256];
        enum mls_decode_err e;

        /* a copy of exactly size bytes, so ASan sees any overread */
        char *buf = malloc(size ? size : 1);
        memcpy(buf, data, size);
        e = mls_decode(buf, size, &lim, &f, &in, err, sizeof(err));
        if (e == MLS_DECODE_OK) {
                if (f.len != in.rows * in.cols || in.rows == 0 ||
                    in.cols == 0 || in.rows > lim.max_rows ||
                    in.cols > lim.max_width)
                        abort();
                if (in.metadata &&
                    (in.metadata < buf ||
                     in.metadata + in.metadata_len > buf + size ||
                     in.metadata[0] != '{' ||
                     in.metadata[in.metadata_len - 1] != '}'))
                        abort();
        } else if (f.len != 0 || err[0] == '\0') {
                abort();
        }
        mls_floats_free(&f);
        free(buf);
        return 0;
}
