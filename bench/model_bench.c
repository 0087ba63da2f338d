/*
 * The limit for bench/model_bench.py: one model called directly from C in
 * a loop, through the same calls the engine makes (mls_model_type_find,
 * mls_model_load, mls_model_infer), with nothing else around it.
 *
 *   mls_model_bench FRAMEWORK PATH [SECONDS [THREADS [BATCH...]]]
 *
 * For each batch size (default 1 16 64 256) it scores random rows for
 * SECONDS (default 2) and prints one JSON object per line: rows/s and the
 * per-call latency (mean, p50, p99, max) in microseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"

#define MAX_CALLS (1 << 22)

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
        static const size_t default_batches[] = {1, 16, 64, 256};
        const struct mls_model_type *type;
        struct mls_model_conf mc = {0};
        mls_model_t *m;
        double seconds = argc > 3 ? atof(argv[3]) : 2.0;
        double *lat = malloc(MAX_CALLS * sizeof(double));
        size_t nb = argc > 5 ? (size_t)(argc - 5) : 4, width;
        char err[512];

        if (argc < 3 || !lat) {
                fprintf(stderr,
                        "usage: %s FRAMEWORK PATH [SECONDS [THREADS "
                        "[BATCH...]]]\n",
                        argv[0]);
                return 2;
        }
        mc.path = argv[2];
        mc.threads = argc > 4 ? atoi(argv[4]) : 1;
        type = mls_model_type_find(argv[1], err, sizeof(err));
        if (!type || !(m = mls_model_load(type, &mc, err, sizeof(err)))) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        width = mls_model_input_width(m) ? mls_model_input_width(m) : 3;
        for (size_t b = 0; b < nb; b++) {
                size_t batch = argc > 5 ? (size_t)atol(argv[5 + b])
                                        : default_batches[b];
                float *in = malloc(batch * width * sizeof(float));
                struct mls_tensor t = {.data = in,
                                       .rows = batch,
                                       .cols = width},
                                  out;
                size_t calls = 0;
                double t0, t1, sum = 0;

                for (size_t i = 0; i < batch * width; i++)
                        in[i] = (float)rand() / (float)RAND_MAX * 2 - 1;
                for (int w = 0; w < 50; w++) /* warm up */
                        mls_model_infer(m, &t, &out, err, sizeof(err));
                t0 = now_s();
                t1 = t0;
                while (t1 - t0 < seconds && calls < MAX_CALLS) {
                        double s = t1;
                        if (mls_model_infer(m, &t, &out, err, sizeof(err)) <
                            0) {
                                fprintf(stderr, "infer: %s\n", err);
                                return 1;
                        }
                        t1 = now_s();
                        lat[calls++] = (t1 - s) * 1e6;
                        sum += (t1 - s) * 1e6;
                }
                qsort(lat, calls, sizeof(double), cmp_double);
                printf("{\"framework\":\"%s\",\"batch\":%zu,\"calls\":%zu,"
                       "\"rows_per_s\":%.0f,\"call_us_mean\":%.2f,"
                       "\"call_us_p50\":%.2f,\"call_us_p99\":%.2f,"
                       "\"call_us_max\":%.2f}\n",
                       argv[1], batch, calls,
                       (double)(calls * batch) / (t1 - t0), sum / (double)calls,
                       lat[calls / 2], lat[(size_t)((double)calls * 0.99)],
                       lat[calls - 1]);
                fflush(stdout);
                free(in);
        }
        mls_model_free(m);
        free(lat);
        return 0;
}
