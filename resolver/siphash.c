/* siphash.c — SipHash-1-3 (Aumasson and Bernstein), the keyed hash of the tables whose keys
 * clients choose (the answer cache, the resolver's questions in flight): with a random key per
 * table, nobody can aim many names at one bucket. */
#include <sys/random.h>
#include <time.h>

#include "vpcdns/siphash.h"

static inline uint64_t rotl64(uint64_t x, int b)
{
        return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
        do {                                                                                       \
                v0 += v1;                                                                          \
                v1 = rotl64(v1, 13);                                                               \
                v1 ^= v0;                                                                          \
                v0 = rotl64(v0, 32);                                                               \
                v2 += v3;                                                                          \
                v3 = rotl64(v3, 16);                                                               \
                v3 ^= v2;                                                                          \
                v0 += v3;                                                                          \
                v3 = rotl64(v3, 21);                                                               \
                v3 ^= v0;                                                                          \
                v2 += v1;                                                                          \
                v1 = rotl64(v1, 17);                                                               \
                v1 ^= v2;                                                                          \
                v2 = rotl64(v2, 32);                                                               \
        } while (0)

uint64_t vd_siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t n)
{
        uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
        uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t m = 0;
                for (int k = 7; k >= 0; k--)
                        m = (m << 8) | in[i + (size_t)k];
                v3 ^= m;
                SIP_ROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        uint64_t b = (uint64_t)n << 56;
        for (size_t k = 0; i + k < n; k++)
                b |= (uint64_t)in[i + k] << (8 * k);
        v3 ^= b;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= b;
        v2 ^= 0xff;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

void vd_siphash_new_key(uint64_t key[2])
{
        if (getrandom(key, 2 * sizeof(key[0]), GRND_NONBLOCK) == (ssize_t)(2 * sizeof(key[0])))
                return;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)key;
        key[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
}
