#include <stdint.h>

#include "engine/inference_id.h"
#include "test.h"

/* The ids Python's uuid.uuid5(uuid.UUID(MLS_INFERENCE_ID_NAMESPACE),
 * name) gives for the same names, the extremes of partition and offset
 * included. */
MLS_TEST(inference_id_is_uuid5_of_the_name)
{
        mls_inference_ids_t *g = mls_inference_ids_new();
        char id[MLS_INFERENCE_ID_LEN + 1];

        CHECK(g != NULL);
        CHECK_INT_EQ(
                mls_inference_id(g, "ml.inference", 3, 12345, "v1", "mlp", id),
                0);
        CHECK_STR_EQ(id, "9a8b431e-e808-5711-b8f9-1a9d8cbf1dc8");
        mls_inference_id(g, "t", -1, -5, "", "m", id);
        CHECK_STR_EQ(id, "36e9d404-6faa-55f5-9699-226a6743270c");
        mls_inference_id(g, "t", INT32_MAX, INT64_MAX, "", "m", id);
        CHECK_STR_EQ(id, "4ab17d8e-f343-5e85-8cc0-3baefdfe870b");
        mls_inference_id(g, "t", INT32_MIN, INT64_MIN, "", "m", id);
        CHECK_STR_EQ(id, "5f35f543-a5ea-5ba1-85bb-04d4638416ea");
        /* the generator keeps no state from one id to the next */
        mls_inference_id(g, "ml.inference", 3, 12345, "v1", "mlp", id);
        CHECK_STR_EQ(id, "9a8b431e-e808-5711-b8f9-1a9d8cbf1dc8");
        mls_inference_ids_free(g);
}
