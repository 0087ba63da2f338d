/* What the Kafka sinks remember, under ML_EXACTLY_ONCE, about messages a
 * topic refused in an aborted transaction (src/engine/txn.c): each refusal
 * moves the input one stage on, never back, until a commit or a revocation
 * forgets it. No broker: these parts of the controller never touch it. */
#include <stdlib.h>

#include "common/metrics.h"
#include "engine/txn.h"
#include "test.h"

static rd_kafka_topic_partition_list_t *
offsets(const char *topic, int32_t partition, int64_t offset)
{
        rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(1);

        rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
        return l;
}

MLS_TEST(txn_refusals_move_on_never_back)
{
        mls_metrics_t *m = mls_metrics_new();
        mls_txn_t *t = mls_txn_new(NULL, "mlstream.g.e1", m);

        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 5), MLS_TXN_SEND);
        CHECK_INT_EQ(mls_txn_retry(t, NULL, 0, 5), MLS_TXN_SEND);
        mls_txn_refused(t, "in", 0, 5, MLS_TXN_ALONE);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 5), MLS_TXN_ALONE);
        /* another input, partition or topic is not affected */
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 6), MLS_TXN_SEND);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 1, 5), MLS_TXN_SEND);
        CHECK_INT_EQ(mls_txn_retry(t, "other", 0, 5), MLS_TXN_SEND);
        mls_txn_refused(t, "in", 0, 5, MLS_TXN_TRUNCATE);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 5), MLS_TXN_TRUNCATE);
        /* a late report of an earlier stage does not move it back */
        mls_txn_refused(t, "in", 0, 5, MLS_TXN_ALONE);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 5), MLS_TXN_TRUNCATE);
        mls_txn_refused(t, "in", 0, 5, MLS_TXN_SKIP);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 5), MLS_TXN_SKIP);
        mls_txn_free(t);
        mls_metrics_free(m);
}

MLS_TEST(txn_refusals_forgotten_once_committed_or_revoked)
{
        mls_metrics_t *m = mls_metrics_new();
        mls_txn_t *t = mls_txn_new(NULL, "mlstream.g.e1", m);
        rd_kafka_topic_partition_list_t *l;

        for (int64_t o = 10; o < 20; o++)
                mls_txn_refused(t, "in", 0, o, MLS_TXN_ALONE);
        mls_txn_refused(t, "in", 1, 3, MLS_TXN_TRUNCATE);
        /* committed up to 15 (the next to consume): 10..14 are done */
        l = offsets("in", 0, 15);
        mls_txn_forget(t, l, 0);
        rd_kafka_topic_partition_list_destroy(l);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 14), MLS_TXN_SEND);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 15), MLS_TXN_ALONE);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 19), MLS_TXN_ALONE);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 1, 3), MLS_TXN_TRUNCATE);
        /* partition 0 revoked: all of it forgotten, partition 1 kept */
        l = offsets("in", 0, -1001);
        mls_txn_forget(t, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 0, 19), MLS_TXN_SEND);
        CHECK_INT_EQ(mls_txn_retry(t, "in", 1, 3), MLS_TXN_TRUNCATE);
        mls_txn_free(t);
        mls_metrics_free(m);
}

MLS_TEST(txn_abort_without_transaction_moves_epoch)
{
        mls_metrics_t *m = mls_metrics_new();
        mls_txn_t *t = mls_txn_new(NULL, "mlstream.g.e1", m);
        char err[100];
        unsigned e0 = mls_txn_epoch(t);

        CHECK_INT_EQ(mls_txn_open(t), 0);
        CHECK_INT_EQ(mls_txn_abort(t, err, sizeof(err)), MLS_TXN_OK);
        CHECK(mls_txn_epoch(t) == e0 + 1);
        /* nothing open: nothing to commit, nothing counted */
        CHECK_INT_EQ(mls_txn_commit(t, NULL, NULL, err, sizeof(err)),
                     MLS_TXN_OK);
        mls_txn_free(t);
        mls_metrics_free(m);
}
