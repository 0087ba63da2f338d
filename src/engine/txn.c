#include "engine/txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* Retriable errors of send_offsets/commit are retried this many times
 * before the transaction is given up (aborted). */
#define RETRIES 3
/* Refused inputs remembered at most; past it the oldest is forgotten (and
 * may then be refused, and aborted, again). */
#define REFUSALS_MAX 65536

struct refusal {
        char *topic;
        int32_t partition;
        int64_t offset;
        enum mls_txn_retry next;
};

struct mls_txn {
        rd_kafka_t *rk;
        char *id;
        int open;
        unsigned epoch;
        struct refusal *refusals;
        size_t nrefusals, cap;
        mls_series_t *s_committed, *s_aborted;
};

mls_txn_t *mls_txn_new(rd_kafka_t *rk, const char *id, mls_metrics_t *metrics)
{
        mls_txn_t *t = calloc(1, sizeof(*t));
        mls_metric_t *m;

        if (!t)
                return NULL;
        t->rk = rk;
        t->id = strdup(id);
        if (!t->id) {
                free(t);
                return NULL;
        }
        m = mls_metric_new(metrics, MLS_COUNTER,
                           "ml_stream_kafka_transactions_total",
                           "Kafka transactions of the output and dead-letter "
                           "topics (ML_EXACTLY_ONCE), by result: committed, "
                           "or aborted (their inputs are consumed and scored "
                           "again).",
                           "result", NULL, NULL, 0);
        t->s_committed = mls_series(m, "committed", NULL);
        t->s_aborted = mls_series(m, "aborted", NULL);
        return t;
}

void mls_txn_free(mls_txn_t *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->nrefusals; i++)
                free(t->refusals[i].topic);
        free(t->refusals);
        free(t->id);
        free(t);
}

/* Classifies error as librdkafka's transactional API documents it;
 * errors that are neither retriable nor abortable count as fatal. Writes
 * what happened to errstr and destroys error. */
static enum mls_txn_status classify(mls_txn_t *t, rd_kafka_error_t *error,
                                    const char *what, char *errstr,
                                    size_t errstr_size)
{
        const char *msg = rd_kafka_error_string(error);
        enum mls_txn_status st;
        char fatal[256] = "";

        if (rd_kafka_error_is_fatal(error))
                st = MLS_TXN_FATAL;
        else if (rd_kafka_error_txn_requires_abort(error))
                st = MLS_TXN_ABORT;
        else if (rd_kafka_error_is_retriable(error))
                st = MLS_TXN_RETRY;
        else
                st = MLS_TXN_FATAL;
        /* the error that made the producer unusable, unless said already */
        if (st != MLS_TXN_FATAL ||
            !rd_kafka_fatal_error(t->rk, fatal, sizeof(fatal)) ||
            strcmp(fatal, msg) == 0)
                fatal[0] = '\0';
        snprintf(errstr, errstr_size, "%s: %s%s%s (transactional.id %s)%s",
                 what, msg, *fatal ? "; fatal error: " : "", fatal, t->id,
                 rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED
                         ? ": another engine uses this transactional.id; "
                           "ML_ENGINE_ID must be unique to each running engine"
                         : "");
        rd_kafka_error_destroy(error);
        return st;
}

enum mls_txn_status mls_txn_init(mls_txn_t *t, int timeout_ms, char *errstr,
                                 size_t errstr_size)
{
        rd_kafka_error_t *error = rd_kafka_init_transactions(t->rk, timeout_ms);

        if (!error)
                return MLS_TXN_OK;
        return classify(t, error, "initialising transactions", errstr,
                        errstr_size) == MLS_TXN_RETRY
                       ? MLS_TXN_RETRY
                       : MLS_TXN_FATAL;
}

enum mls_txn_status mls_txn_begin(mls_txn_t *t, char *errstr,
                                  size_t errstr_size)
{
        rd_kafka_error_t *error = rd_kafka_begin_transaction(t->rk);

        if (!error) {
                t->open = 1;
                return MLS_TXN_OK;
        }
        classify(t, error, "beginning a transaction", errstr, errstr_size);
        return MLS_TXN_FATAL;
}

int mls_txn_open(const mls_txn_t *t)
{
        return t->open;
}

enum mls_txn_status
mls_txn_commit(mls_txn_t *t, const rd_kafka_topic_partition_list_t *offsets,
               const rd_kafka_consumer_group_metadata_t *cgmd, char *errstr,
               size_t errstr_size)
{
        enum mls_txn_status st = MLS_TXN_RETRY;
        rd_kafka_error_t *error;

        if (!t->open)
                return MLS_TXN_OK;
        /* Retried with the same offsets and metadata, as librdkafka asks. */
        for (int i = 0; offsets && offsets->cnt && i <= RETRIES; i++) {
                error = rd_kafka_send_offsets_to_transaction(t->rk, offsets,
                                                             cgmd, -1);
                if (!error)
                        break;
                st = classify(t, error, "sending offsets to the transaction",
                              errstr, errstr_size);
                if (st != MLS_TXN_RETRY)
                        return st;
                if (i == RETRIES)
                        return MLS_TXN_ABORT;
                usleep(100000);
        }
        for (int i = 0; i <= RETRIES; i++) {
                /* -1: the transaction's remaining time; resumable */
                error = rd_kafka_commit_transaction(t->rk, -1);
                if (!error) {
                        t->open = 0;
                        mls_series_add(t->s_committed, 1);
                        return MLS_TXN_OK;
                }
                st = classify(t, error, "committing the transaction", errstr,
                              errstr_size);
                if (st != MLS_TXN_RETRY)
                        return st;
                usleep(100000);
        }
        return MLS_TXN_ABORT;
}

enum mls_txn_status mls_txn_abort(mls_txn_t *t, char *errstr,
                                  size_t errstr_size)
{
        rd_kafka_error_t *error;
        enum mls_txn_status st;

        /* before the purge's delivery reports can be served */
        t->epoch++;
        if (!t->open)
                return MLS_TXN_OK;
        for (int i = 0; i <= RETRIES; i++) {
                error = rd_kafka_abort_transaction(t->rk, -1);
                if (!error) {
                        t->open = 0;
                        mls_series_add(t->s_aborted, 1);
                        /* frees the purged messages' notes now */
                        rd_kafka_poll(t->rk, 0);
                        return MLS_TXN_OK;
                }
                st = classify(t, error, "aborting the transaction", errstr,
                              errstr_size);
                if (st != MLS_TXN_RETRY)
                        return MLS_TXN_FATAL;
                usleep(100000);
        }
        /* an open transaction that cannot be ended blocks every later one;
         * a restart with the same transactional.id aborts it */
        return MLS_TXN_FATAL;
}

unsigned mls_txn_epoch(const mls_txn_t *t)
{
        return t->epoch;
}

static struct refusal *find(const mls_txn_t *t, const char *topic,
                            int32_t partition, int64_t offset)
{
        for (size_t i = 0; i < t->nrefusals; i++) {
                struct refusal *r = &t->refusals[i];
                if (r->offset == offset && r->partition == partition &&
                    strcmp(r->topic, topic) == 0)
                        return r;
        }
        return NULL;
}

enum mls_txn_retry mls_txn_retry(const mls_txn_t *t, const char *topic,
                                 int32_t partition, int64_t offset)
{
        const struct refusal *r;

        if (t->nrefusals == 0 || !topic)
                return MLS_TXN_SEND;
        r = find(t, topic, partition, offset);
        return r ? r->next : MLS_TXN_SEND;
}

static void forget_at(mls_txn_t *t, size_t i)
{
        free(t->refusals[i].topic);
        memmove(&t->refusals[i], &t->refusals[i + 1],
                (t->nrefusals - i - 1) * sizeof(t->refusals[0]));
        t->nrefusals--;
}

void mls_txn_refused(mls_txn_t *t, const char *topic, int32_t partition,
                     int64_t offset, enum mls_txn_retry next)
{
        struct refusal *r;

        if (!topic)
                return;
        r = find(t, topic, partition, offset);
        if (r) {
                if (next > r->next)
                        r->next = next;
                return;
        }
        if (t->nrefusals == REFUSALS_MAX) {
                mls_error("more than %d refused messages waiting for a "
                          "commit; forgetting the oldest",
                          REFUSALS_MAX);
                forget_at(t, 0);
        }
        if (t->nrefusals == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 16;
                struct refusal *n = realloc(t->refusals, ncap * sizeof(*n));
                if (!n) {
                        mls_error("out of memory remembering a refused "
                                  "message");
                        abort();
                }
                t->refusals = n;
                t->cap = ncap;
        }
        r = &t->refusals[t->nrefusals];
        r->topic = strdup(topic);
        if (!r->topic) {
                mls_error("out of memory remembering a refused message");
                abort();
        }
        r->partition = partition;
        r->offset = offset;
        r->next = next;
        t->nrefusals++;
}

void mls_txn_forget(mls_txn_t *t,
                    const rd_kafka_topic_partition_list_t *offsets,
                    int whole_partitions)
{
        size_t i = 0;

        while (i < t->nrefusals) {
                struct refusal *r = &t->refusals[i];
                const rd_kafka_topic_partition_t *tp =
                        rd_kafka_topic_partition_list_find(offsets, r->topic,
                                                           r->partition);
                if (tp && (whole_partitions || r->offset < tp->offset))
                        forget_at(t, i);
                else
                        i++;
        }
}
