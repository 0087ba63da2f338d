#include "common/hash.h"

#include <string.h>
#include <sys/random.h>

static uint64_t seed = 0x9e3779b97f4a7c15ULL;

/* Runs before main(), so no thread can see the seed change. */
__attribute__((constructor)) static void seed_init(void)
{
        uint64_t s;

        if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == sizeof(s))
                seed ^= s;
        else
                seed ^= (uint64_t)(uintptr_t)&s; /* at least ASLR */
}

uint64_t mls_hash_mix(uint64_t h)
{
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

uint64_t mls_hash(const void *p, size_t n)
{
        const unsigned char *s = p;
        uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL), w;
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                memcpy(&w, s + i, 8);
                h = mls_hash_mix(h ^ w);
        }
        if (i < n) {
                w = 0;
                memcpy(&w, s + i, n - i);
                h = mls_hash_mix(h ^ w ^ 0xa5);
        }
        return mls_hash_mix(h);
}

uint64_t mls_fnv1a64(uint64_t h, const void *p, size_t n)
{
        const unsigned char *s = p;

        for (size_t i = 0; i < n; i++)
                h = (h ^ s[i]) * 1099511628211ULL;
        return h;
}
