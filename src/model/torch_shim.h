/*
 * A C interface to libtorch's TorchScript runtime, for torch.c. The
 * implementation (torch_shim.cpp) is the only C++ in mlstream: it catches
 * every exception and returns it as errstr.
 *
 * Threads: as for mls_model_type: one thread at a time per handle.
 */
#ifndef MLS_TORCH_SHIM_H
#define MLS_TORCH_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mls_torch mls_torch_t;

/*
 * Loads the TorchScript file at path for inference on the CPU. threads > 0
 * sets libtorch's intra-op thread count. output selects an element of a
 * tuple/list result (an index) or of a dict result (a key); NULL takes the
 * first element of a tuple/list, the only entry of a dict, or the tensor.
 * width > 0 is the configured input width (the caller tries it, so that
 * its error can name the setting); 0 lets the shim discover it (see
 * torch_shim.cpp) and try it. On success stores the width found (0:
 * unknown) in *found_width. Returns NULL with the reason in errstr.
 */
mls_torch_t *mls_torch_load(const char *path, int threads, const char *output,
                            size_t width, size_t *found_width, char *errstr,
                            size_t errstr_size);

/*
 * Runs forward() on the rows x cols float32 matrix at data (not copied, not
 * modified) and points *out at the rows x *out_cols float32 result, valid
 * until the next call or mls_torch_free(). Returns -1 with errstr if the
 * model throws or returns something that is not one row per input row.
 */
int mls_torch_forward(mls_torch_t *t, float *data, size_t rows, size_t cols,
                      const float **out, size_t *out_cols, char *errstr,
                      size_t errstr_size);

void mls_torch_free(mls_torch_t *t);

/* The libtorch version the shim was compiled against, e.g. "1.13.0". */
const char *mls_torch_version(void);

#ifdef __cplusplus
}
#endif

#endif
