/* The gateway's memory of recent inference ids. */
#include <stdio.h>
#include <string.h>

#include "common/hash.h"
#include "gateway/dedupe.h"
#include "test.h"

static int seen(mls_dedupe_t *d, int n)
{
        char key[32];

        snprintf(key, sizeof(key), "id-%d", n);
        return mls_dedupe_seen(d, mls_hash(key, strlen(key)));
}

MLS_TEST(gateway_dedupe_drops_repeats_within_the_window)
{
        mls_dedupe_t *d = mls_dedupe_new(1000);
        int repeats = 0;

        CHECK(d != NULL);
        for (int i = 0; i < 500; i++)
                CHECK(!seen(d, i));
        /* every one of them again: all repeats */
        for (int i = 0; i < 500; i++)
                repeats += seen(d, i);
        CHECK_INT_EQ(repeats, 500);
        /* keys that differ only after a NUL are different keys */
        CHECK(!mls_dedupe_seen(d, mls_hash("a\0b", 3)));
        CHECK(!mls_dedupe_seen(d, mls_hash("a\0c", 3)));
        CHECK(mls_dedupe_seen(d, mls_hash("a\0b", 3)));
        mls_dedupe_free(d);
}

/* A key is remembered for at least window/2 later keys and forgotten after
 * at most window: memory stays bounded however many ids go by. */
MLS_TEST(gateway_dedupe_window_is_bounded)
{
        mls_dedupe_t *d = mls_dedupe_new(1000);

        CHECK(!seen(d, 0));
        for (int i = 1; i <= 500; i++)
                CHECK(!seen(d, i));
        CHECK(seen(d, 0)); /* 500 later: still remembered */
        for (int i = 501; i <= 1001; i++)
                CHECK(!seen(d, i));
        CHECK(!seen(d, 0)); /* over 1000 later: forgotten, counted new */
        CHECK(seen(d, 0));
        mls_dedupe_free(d);
        CHECK(mls_dedupe_new(1) == NULL);
}
