/*
 * Reads a TensorFlow SavedModel's signature (which tensors to feed and to
 * fetch) out of the serialized protocol buffers, with a protobuf reader of
 * its own: the TensorFlow C API hands out the MetaGraphDef only as bytes.
 *
 * Pure functions; any thread. Input bytes are untrusted: every length is
 * checked and nesting is bounded by the schema.
 */
#ifndef MLS_TF_SIGNATURE_H
#define MLS_TF_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#define MLS_TF_MAX_TENSORS 16
#define MLS_TF_MAX_RANK 8

struct mls_tf_tensor_info {
        char key[128];  /* the signature's name for it, e.g. "features" */
        char name[256]; /* the graph tensor, e.g. "serving_default_x:0" */
        int dtype;      /* a TF_DataType value; 0 if absent */
        int rank;       /* -1: unknown */
        int64_t dims[MLS_TF_MAX_RANK]; /* -1: any size */
};

struct mls_tf_signature {
        struct mls_tf_tensor_info inputs[MLS_TF_MAX_TENSORS];
        struct mls_tf_tensor_info outputs[MLS_TF_MAX_TENSORS];
        size_t ninputs, noutputs;
};

/*
 * Finds the SignatureDef called key in a serialized MetaGraphDef and fills
 * sig, inputs and outputs each sorted by key. Returns 0, or -1 with the
 * reason in errstr (malformed bytes, no such signature, which ones exist,
 * too many tensors).
 */
int mls_tf_signature_parse(const void *meta_graph_def, size_t len,
                           const char *key, struct mls_tf_signature *sig,
                           char *errstr, size_t errstr_size);

/*
 * Finds, in a serialized SavedModel (the bytes of saved_model.pb), the first
 * MetaGraphDef whose tags include tag, and points *mg at its bytes inside
 * saved_model. Returns 0, or -1 with the reason in errstr.
 */
int mls_tf_saved_model_meta_graph(const void *saved_model, size_t len,
                                  const char *tag, const void **mg,
                                  size_t *mg_len, char *errstr,
                                  size_t errstr_size);

/*
 * Splits a tensor name "op:index" (":index" optional, 0 by default) into
 * the operation name (copied into op) and the index. Returns -1 if op is
 * too small or the index is not a number.
 */
int mls_tf_tensor_name_split(const char *name, char *op, size_t op_size,
                             int *index);

#endif
