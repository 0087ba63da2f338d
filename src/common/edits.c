#include "common/edits.h"

#include <ctype.h>
#include <stdlib.h>

static int same(int fold, char x, char y)
{
        return fold ? tolower((unsigned char)x) == tolower((unsigned char)y)
                    : x == y;
}

size_t mls_edits(const char *a, size_t an, const char *b, size_t bn, int fold,
                 size_t cap)
{
        size_t *rows, d;

        if ((an > bn ? an - bn : bn - an) > cap)
                return cap + 1;
        if (bn > an) { /* the rows span the shorter name */
                const char *t = a;
                size_t tn = an;
                a = b;
                an = bn;
                b = t;
                bn = tn;
        }
        /* three rows of the table: the one before last is for swaps */
        rows = malloc(3 * (bn + 1) * sizeof(*rows));
        if (!rows)
                return cap + 1;
        for (size_t j = 0; j <= bn; j++)
                rows[j] = j;
        for (size_t i = 1; i <= an; i++) {
                size_t *up = rows + ((i - 1) % 3) * (bn + 1);
                size_t *cur = rows + (i % 3) * (bn + 1);
                size_t smallest = cur[0] = i;

                for (size_t j = 1; j <= bn; j++) {
                        size_t cell =
                                up[j - 1] + !same(fold, a[i - 1], b[j - 1]);
                        if (up[j] + 1 < cell)
                                cell = up[j] + 1;
                        if (cur[j - 1] + 1 < cell)
                                cell = cur[j - 1] + 1;
                        if (i > 1 && j > 1 && same(fold, a[i - 1], b[j - 2]) &&
                            same(fold, a[i - 2], b[j - 1])) {
                                size_t swap =
                                        rows[((i - 2) % 3) * (bn + 1) + j - 2];
                                if (swap + 1 < cell)
                                        cell = swap + 1;
                        }
                        if (cell < smallest)
                                smallest = cell;
                        cur[j] = cell;
                }
                if (smallest > cap) { /* no later row gets below it */
                        free(rows);
                        return cap + 1;
                }
        }
        d = rows[(an % 3) * (bn + 1) + bn];
        free(rows);
        return d > cap ? cap + 1 : d;
}
