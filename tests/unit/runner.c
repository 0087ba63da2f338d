/*
 * Runs the registered unit tests. Usage: mls_unit [--list] [PREFIX...]
 * With prefixes, runs only the tests whose names start with one of them.
 * Prints one line per test and a closing "N passed, N failed" line.
 */
#include <stdarg.h>
#include <stdlib.h>

#include "test.h"

#define MAX_TESTS 2048

static struct {
        const char *name;
        mls_test_fn fn;
} tests[MAX_TESTS];
static int ntests;
static int current_failed;

void mls_test_register(const char *name, mls_test_fn fn)
{
        if (ntests == MAX_TESTS) {
                fprintf(stderr, "too many tests\n");
                abort();
        }
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
}

void mls_test_fail(const char *file, int line, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "    %s:%d: check failed: ", file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        current_failed = 1;
}

static int selected(const char *name, int argc, char **argv)
{
        if (argc == 0)
                return 1;
        for (int i = 0; i < argc; i++)
                if (strncmp(name, argv[i], strlen(argv[i])) == 0)
                        return 1;
        return 0;
}

int main(int argc, char **argv)
{
        int passed = 0, failed = 0;

        if (argc > 1 && strcmp(argv[1], "--list") == 0) {
                for (int i = 0; i < ntests; i++)
                        printf("%s\n", tests[i].name);
                return 0;
        }
        for (int i = 0; i < ntests; i++) {
                if (!selected(tests[i].name, argc - 1, argv + 1))
                        continue;
                current_failed = 0;
                tests[i].fn();
                printf("%s %s\n", current_failed ? "FAIL" : "ok  ",
                       tests[i].name);
                fflush(stdout);
                if (current_failed)
                        failed++;
                else
                        passed++;
        }
        printf("%d passed, %d failed\n", passed, failed);
        if (passed + failed == 0) {
                fprintf(stderr, "no test matched\n");
                return 1;
        }
        return failed ? 1 : 0;
}
