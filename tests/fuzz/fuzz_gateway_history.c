/*
 * libFuzzer target for the gateway's history of recent predictions
 * (src/gateway/history.c), whose model ids, inference ids and payload
 * sizes whoever publishes predictions chooses. The input is a script of
 * operations (keep a prediction, resume a reader after an id and read to
 * the end, expire, let time pass) against a small budget, so eviction,
 * expiry and index reuse happen all the time. Every prediction kept is
 * numbered and its bytes say so; checked: what a reader gets is exactly
 * what was kept, its own model's, in order without a gap unless it is told
 * how many it missed, and a reader placed after an id that is still held
 * continues right after it; the byte count stays within the budget.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "gateway/history.h"

#define MAX_BYTES 16384
#define MAX_AGE_MS 500
#define NMODELS 6
#define MAX_KEPT 4096

struct kept {
        unsigned model;
        size_t len;
        int64_t at_ms;
        uint64_t model_seq; /* its place among its model's (1, 2, ...) */
};

static struct kept kept[MAX_KEPT];

static void model_id(unsigned m, char *out, size_t cap)
{
        /* one long id: ids are copied, hashed and compared in full */
        if (m == NMODELS - 1)
                snprintf(out, cap, "%0200u", m);
        else
                snprintf(out, cap, "model-%u", m);
}

static size_t payload_of(uint32_t n, size_t len, char *out)
{
        int w = snprintf(out, len + 1, "#%u#", n);

        if ((size_t)w < len)
                memset(out + w, 'a' + (char)(n % 26), len - (size_t)w);
        return len;
}

/* The number a payload starts with ("#<n>#"); payloads are not
 * NUL-terminated. */
static int number(const char *p, size_t len, unsigned *n)
{
        size_t i = 1;

        *n = 0;
        if (len < 3 || p[0] != '#')
                return 0;
        for (; i < len && i < 8 && p[i] >= '0' && p[i] <= '9'; i++)
                *n = *n * 10 + (unsigned)(p[i] - '0');
        return i > 1 && i < len && p[i] == '#';
}

/* Reads model m from c to the end; every item is one kept for m, later
 * than the one before, the next of its model unless a miss came between. */
static void read_to_end(mls_history_t *h, unsigned m,
                        struct mls_history_cursor *c, int64_t after_seq)
{
        static char want[40000];
        char id[256];
        struct mls_history_item it;
        uint64_t missed;
        int64_t last = after_seq;

        model_id(m, id, sizeof(id));
        for (int guard = 0; guard < MAX_KEPT + 8; guard++) {
                enum mls_history_read r =
                        mls_history_read(h, id, strlen(id), c, &it, &missed);
                unsigned n;

                if (r == MLS_HISTORY_END)
                        return;
                if (r == MLS_HISTORY_MISSED) {
                        last = -1;
                        continue;
                }
                if (!number(it.data, it.len, &n) || n >= MAX_KEPT ||
                    kept[n].model != m || kept[n].len != it.len ||
                    kept[n].at_ms != it.at_ms ||
                    memcmp(it.data, want, payload_of(n, it.len, want)) != 0)
                        abort();
                if (last >= 0 && kept[n].model_seq != (uint64_t)last + 1)
                        abort();
                if (last < 0 && after_seq >= 0 &&
                    kept[n].model_seq <= (uint64_t)after_seq)
                        abort();
                last = (int64_t)kept[n].model_seq;
        }
        abort(); /* never ends */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char payload[40000]; /* 16 + 255 * 255 / 2 at most */
        mls_history_t *h = mls_history_new(MAX_BYTES, MAX_AGE_MS);
        uint64_t seqs[NMODELS] = {0};
        struct mls_history_stats st;
        uint32_t nkept = 0;
        int64_t now = 1000;
        size_t i = 0;

        if (!h)
                abort();
        while (i + 3 <= size) {
                unsigned op = data[i] % 4, m = data[i + 1] % NMODELS;
                unsigned arg = data[i + 2];
                char mid[256], id[32];

                i += 3;
                model_id(m, mid, sizeof(mid));
                switch (op) {
                case 0: { /* keep a prediction of 16..MAX_BYTES+ bytes */
                        size_t len = 16 + (size_t)arg * arg / 2;
                        int idlen;

                        if (nkept == MAX_KEPT)
                                break;
                        idlen = snprintf(id, sizeof(id), "id-%u", nkept);
                        payload_of(nkept, len, payload);
                        if (mls_history_add(h, mid, strlen(mid), id,
                                            (size_t)idlen,
                                            mls_hash(id, (size_t)idlen),
                                            payload, len, now) == 0) {
                                kept[nkept] =
                                        (struct kept){m, len, now, ++seqs[m]};
                        } else if (len <= MAX_BYTES / 2) {
                                abort(); /* fits, and few models */
                        } else {
                                kept[nkept] = (struct kept){m, len, now, 0};
                        }
                        nkept++;
                        break;
                }
                case 1: { /* a reader resumes after a kept id */
                        struct mls_history_cursor c;
                        unsigned n = nkept ? (arg * 31u) % nkept : 0;
                        int idlen = snprintf(id, sizeof(id), "id-%u", n);
                        int found = mls_history_seek(h, mid, strlen(mid), id,
                                                     (size_t)idlen, &c);

                        if (found == 0 && (n >= nkept || kept[n].model != m ||
                                           !kept[n].model_seq))
                                abort();
                        read_to_end(h, m, &c,
                                    found == 0 ? (int64_t)kept[n].model_seq
                                               : -1);
                        break;
                }
                case 2:
                        mls_history_expire(h, now);
                        break;
                default:
                        now += arg * 4;
                }
                mls_history_stats(h, &st);
                if (st.bytes > MAX_BYTES || st.entries > nkept)
                        abort();
        }
        mls_history_free(h);
        return 0;
}
