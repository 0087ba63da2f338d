/*
 * A tiny test registry. Each MLS_TEST() registers itself at start-up; the
 * runner (tests/unit/runner.c) runs those whose name starts with the filter
 * given on the command line. ctest runs one process per test file prefix.
 */
#ifndef MLS_TEST_H
#define MLS_TEST_H

#include <stdio.h>
#include <string.h>

typedef void (*mls_test_fn)(void);

void mls_test_register(const char *name, mls_test_fn fn);
void mls_test_fail(const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define MLS_TEST(name)                                                 \
        static void test_##name(void);                                 \
        __attribute__((constructor)) static void register_##name(void) \
        {                                                              \
                mls_test_register(#name, test_##name);                 \
        }                                                              \
        static void test_##name(void)

/* Assertions return from the test on failure; the runner reports the test
 * failed and goes on with the next one. */
#define CHECK(cond)                                                     \
        do {                                                            \
                if (!(cond)) {                                          \
                        mls_test_fail(__FILE__, __LINE__, "%s", #cond); \
                        return;                                         \
                }                                                       \
        } while (0)

#define CHECK_INT_EQ(a, b)                                                   \
        do {                                                                 \
                long long a_ = (long long)(a), b_ = (long long)(b);          \
                if (a_ != b_) {                                              \
                        mls_test_fail(__FILE__, __LINE__,                    \
                                      "%s == %s (%lld != %lld)", #a, #b, a_, \
                                      b_);                                   \
                        return;                                              \
                }                                                            \
        } while (0)

#define CHECK_STR_EQ(a, b)                                                     \
        do {                                                                   \
                const char *a_ = (a), *b_ = (b);                               \
                if (!a_ || !b_ || strcmp(a_, b_) != 0) {                       \
                        mls_test_fail(__FILE__, __LINE__,                      \
                                      "%s == %s (\"%s\" != \"%s\")", #a, #b,   \
                                      a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
                        return;                                                \
                }                                                              \
        } while (0)

#define CHECK_CONTAINS(hay, needle)                             \
        do {                                                    \
                const char *h_ = (hay), *n_ = (needle);         \
                if (!h_ || !strstr(h_, n_)) {                   \
                        mls_test_fail(__FILE__, __LINE__,       \
                                      "\"%s\" contains \"%s\"", \
                                      h_ ? h_ : "(null)", n_);  \
                        return;                                 \
                }                                               \
        } while (0)

#endif
