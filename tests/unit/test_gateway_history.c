/* The gateway's history of recent predictions, for resuming subscribers. */
#include <stdio.h>
#include <string.h>

#include "common/hash.h"
#include "gateway/history.h"
#include "test.h"

/* mls_history_add() with the id's hash made here, as the feed does. */
static int hadd(mls_history_t *h, const char *model, size_t mlen,
                const char *id, size_t idlen, const char *payload, size_t len,
                int64_t at)
{
        return mls_history_add(h, model, mlen, id, idlen, mls_hash(id, idlen),
                               payload, len, at);
}

static int add(mls_history_t *h, const char *model, int n, int64_t at)
{
        char id[64], payload[128];

        snprintf(id, sizeof(id), "id-%s-%d", model, n);
        snprintf(payload, sizeof(payload), "{\"n\":%d}", n);
        return hadd(h, model, strlen(model), id, strlen(id), payload,
                    strlen(payload), at);
}

static int seek(mls_history_t *h, const char *model, int n,
                struct mls_history_cursor *c)
{
        char id[64];

        snprintf(id, sizeof(id), "id-%s-%d", model, n);
        return mls_history_seek(h, model, strlen(model), id, strlen(id), c);
}

/* The n of the next item at c, -1 at the end, -2 - missed when missed. */
static long long next(mls_history_t *h, const char *model,
                      struct mls_history_cursor *c)
{
        struct mls_history_item it;
        uint64_t missed;
        int n = -100;

        switch (mls_history_read(h, model, strlen(model), c, &it, &missed)) {
        case MLS_HISTORY_ITEM:
                sscanf(it.data, "{\"n\":%d}", &n);
                return n;
        case MLS_HISTORY_END:
                return -1;
        case MLS_HISTORY_MISSED:
                return -2 - (long long)missed;
        }
        return -100;
}

MLS_TEST(gateway_history_replays_after_an_id_in_order)
{
        mls_history_t *h = mls_history_new(1 << 20, 0);
        struct mls_history_cursor c;

        CHECK(h != NULL);
        for (int i = 0; i < 10; i++) {
                CHECK(add(h, "a", i, 1000) == 0);
                CHECK(add(h, "b", i, 1000) == 0);
        }
        CHECK(seek(h, "a", 6, &c) == 0);
        CHECK_INT_EQ(next(h, "a", &c), 7);
        CHECK_INT_EQ(next(h, "a", &c), 8);
        CHECK_INT_EQ(next(h, "a", &c), 9);
        CHECK_INT_EQ(next(h, "a", &c), -1);
        /* what comes later is read from the same cursor */
        CHECK(add(h, "a", 10, 1000) == 0);
        CHECK_INT_EQ(next(h, "a", &c), 10);
        CHECK_INT_EQ(next(h, "a", &c), -1);
        /* another model's id is not a place in this model */
        CHECK(seek(h, "a", 3, &c) == 0);
        CHECK(seek(h, "b", 100, &c) == -1);
        CHECK_INT_EQ(next(h, "b", &c), 0); /* unknown: from the oldest */
        {
                struct mls_history_cursor d;
                CHECK(mls_history_seek(h, "b", 1, "id-a-3", 6, &d) == -1);
        }
        mls_history_free(h);
}

/* However many predictions go by, memory stays within the budget; a reader
 * overtaken by eviction learns exactly how many it missed. */
MLS_TEST(gateway_history_is_bounded_by_bytes)
{
        const size_t budget = 64 * 1024;
        mls_history_t *h = mls_history_new(budget, 0);
        struct mls_history_stats st;
        struct mls_history_cursor c;
        long long first;

        CHECK(h != NULL);
        CHECK(add(h, "m", 0, 1) == 0);
        CHECK(seek(h, "m", 0, &c) == 0);
        for (int i = 1; i < 100000; i++) {
                CHECK(add(h, i % 3 ? "m" : "other", i, 1) == 0);
                mls_history_stats(h, &st);
                CHECK(st.bytes <= budget);
        }
        CHECK(st.entries > 100 && st.entries < 2000);
        CHECK(st.evicted == 100000 - st.entries);
        /* the reader after 0 missed every "m" evicted since */
        first = next(h, "m", &c);
        CHECK(first <= -2);
        {
                long long missed = -2 - first, n = next(h, "m", &c);
                /* the first "m" still held is the one after the missed
                 * ones: ids 1, 2, 4, 5, 7, ... (i % 3 != 0) */
                long long seen = 0;
                for (long long i = 1; i < n; i++)
                        seen += i % 3 != 0;
                CHECK_INT_EQ(missed, seen);
        }
        /* an id that was evicted is no longer a place to resume */
        CHECK(seek(h, "m", 1, &c) == -1);
        /* a payload larger than half the budget is refused, not kept */
        {
                static char big[40000];
                memset(big, 'x', sizeof(big));
                CHECK(hadd(h, "m", 1, "big", 3, big, sizeof(big), 1) == -1);
                mls_history_stats(h, &st);
                CHECK_INT_EQ(st.refused, 1);
        }
        mls_history_free(h);
}

MLS_TEST(gateway_history_forgets_by_age)
{
        mls_history_t *h = mls_history_new(1 << 20, 1000);
        struct mls_history_stats st;
        struct mls_history_cursor c;

        CHECK(h != NULL);
        CHECK(add(h, "m", 0, 10000) == 0);
        CHECK(add(h, "m", 1, 10500) == 0);
        CHECK(mls_history_oldest_ms(h, "m", 1) == 10000);
        CHECK(add(h, "m", 2, 11200) == 0); /* 0 is now too old */
        mls_history_stats(h, &st);
        CHECK_INT_EQ(st.entries, 2);
        CHECK(mls_history_oldest_ms(h, "m", 1) == 10500);
        mls_history_expire(h, 20000);
        mls_history_stats(h, &st);
        CHECK_INT_EQ(st.entries, 0);
        CHECK(mls_history_oldest_ms(h, "m", 1) == -1);
        CHECK(seek(h, "m", 2, &c) == -1);
        CHECK_INT_EQ(next(h, "m", &c), -1);
        mls_history_free(h);
}

/* A model seen for the first time after the reader started: the reader
 * gets it from its first prediction on. */
MLS_TEST(gateway_history_reader_before_the_model_exists)
{
        mls_history_t *h = mls_history_new(1 << 20, 0);
        struct mls_history_cursor c;

        CHECK(h != NULL);
        CHECK(seek(h, "new", 5, &c) == -1);
        CHECK_INT_EQ(next(h, "new", &c), -1);
        CHECK(add(h, "new", 0, 1) == 0);
        CHECK(add(h, "new", 1, 1) == 0);
        CHECK_INT_EQ(next(h, "new", &c), 0);
        CHECK_INT_EQ(next(h, "new", &c), 1);
        mls_history_free(h);
}

/* Model ids come from the network: their number is bounded; a model with
 * nothing held makes room for a new one, and a flood of model ids is
 * forgotten oldest first, never locking new models out. */
MLS_TEST(gateway_history_bounds_models)
{
        mls_history_t *h = mls_history_new(64 << 20, 1000);
        struct mls_history_stats st;
        char model[32];

        CHECK(h != NULL);
        for (int i = 0; i < MLS_HISTORY_MAX_MODELS; i++) {
                snprintf(model, sizeof(model), "model-%d", i);
                CHECK(add(h, model, 0, 1) == 0);
        }
        /* one more: the oldest model's prediction goes, and it with it */
        CHECK(add(h, "one-too-many", 0, 1) == 0);
        mls_history_stats(h, &st);
        CHECK_INT_EQ(st.models, MLS_HISTORY_MAX_MODELS);
        CHECK_INT_EQ(st.entries, MLS_HISTORY_MAX_MODELS);
        CHECK_INT_EQ(st.refused, 0);
        CHECK_INT_EQ(st.evicted, 1);
        CHECK(mls_history_oldest_ms(h, "model-0", 7) == -1);
        CHECK(mls_history_oldest_ms(h, "model-1", 7) == 1);
        /* once their predictions age out, a new model takes a place */
        CHECK(add(h, "another", 0, 5000) == 0);
        mls_history_stats(h, &st);
        CHECK_INT_EQ(st.models, MLS_HISTORY_MAX_MODELS);
        CHECK_INT_EQ(st.entries, 1);
        mls_history_free(h);
}

/* The same id twice (dedupe off): resuming finds the newer one, and
 * evicting the older does not forget it. */
MLS_TEST(gateway_history_repeated_ids)
{
        mls_history_t *h = mls_history_new(1 << 20, 1000);
        struct mls_history_cursor c;

        CHECK(h != NULL);
        CHECK(hadd(h, "m", 1, "x", 1, "{\"n\":1}", 7, 100) == 0);
        CHECK(hadd(h, "m", 1, "x", 1, "{\"n\":2}", 7, 900) == 0);
        CHECK(hadd(h, "m", 1, "y", 1, "{\"n\":3}", 7, 1500) == 0);
        /* the first "x" is gone by age */
        CHECK(mls_history_seek(h, "m", 1, "x", 1, &c) == 0);
        CHECK_INT_EQ(next(h, "m", &c), 3);
        mls_history_free(h);
}

/* The id index under churn: ids repeat (the newest holder wins) and a
 * small budget evicts on almost every add. After each add, every id is
 * found exactly when a held prediction carries it, and a resume from it
 * starts right after its newest holder. */
MLS_TEST(gateway_history_id_index_under_churn)
{
        mls_history_t *h = mls_history_new(8192, 0);
        unsigned seed = 7;
        int held[64];

        CHECK(h);
        for (int round = 0; round < 5000; round++) {
                struct mls_history_cursor c = {0, 0};
                char id[16], payload[32];
                int k, n = 0;

                seed = seed * 1103515245u + 12345u;
                k = (int)((seed >> 8) % 64);
                snprintf(id, sizeof(id), "k%d", k);
                snprintf(payload, sizeof(payload), "{\"n\":%d}", k);
                CHECK_INT_EQ(hadd(h, "m", 1, id, strlen(id), payload,
                                  strlen(payload), round),
                             0);
                /* what is held, oldest first: the newest position of each
                 * id */
                for (int i = 0; i < 64; i++)
                        held[i] = -1;
                for (long long v; (v = next(h, "m", &c)) != -1;)
                        if (v >= 0)
                                held[v] = n++;
                for (int i = 0; i < 64; i++) {
                        struct mls_history_cursor s;
                        int rc;
                        snprintf(id, sizeof(id), "k%d", i);
                        rc = mls_history_seek(h, "m", 1, id, strlen(id), &s);
                        CHECK_INT_EQ(rc, held[i] >= 0 ? 0 : -1);
                        if (rc == 0) {
                                /* the next one read is the one after it */
                                int after = 0;
                                for (long long v; (v = next(h, "m", &s)) >= 0;)
                                        after++;
                                CHECK_INT_EQ(after, n - 1 - held[i]);
                        }
                }
        }
        mls_history_free(h);
}
