/* Shared by the archive unit tests: a deterministic PRNG, CSV-like test
 * data, writing a file, and a monotonic clock for the timing printouts. */
#ifndef HCX_TEST_DATA_H
#define HCX_TEST_DATA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Deterministic CSV-like text of exactly len bytes (compresses ~4-6:1). */
static inline unsigned char *gen_csv(uint64_t seed, size_t len)
{
    static const char *attacks[] = {"sqli", "xss", "cmdi", "lfi", "rfi", "webshell",
                                    "crawler", "cc", "robot", "scanner"};
    unsigned char *buf = malloc(len + 256);
    uint64_t s = seed * 2654435761u + 88172645463325252ull;
    size_t at = 0;
    while (at < len) {
        uint64_t r = rng_next(&s);
        at += (size_t)sprintf((char *)buf + at,
                              "%llu,2024-%02u-%02uT%02u:%02u:%02uZ,10.%u.%u.%u,%s,/api/v1/item?id=%u,%u\n",
                              (unsigned long long)(r % 100000000), (unsigned)(r >> 8) % 12 + 1,
                              (unsigned)(r >> 12) % 28 + 1, (unsigned)(r >> 17) % 24,
                              (unsigned)(r >> 22) % 60, (unsigned)(r >> 28) % 60,
                              (unsigned)(r >> 34) % 256, (unsigned)(r >> 42) % 256,
                              (unsigned)(r >> 50) % 256, attacks[(r >> 58) % 10],
                              (unsigned)(r >> 20) % 5000, (unsigned)(r >> 40) % 1000);
    }
    return buf;
}

/* Writes len bytes of buf to path: 0, or -1. */
static inline int spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = len ? fwrite(buf, 1, len, f) : 0;
    fclose(f);
    return w == len ? 0 : -1;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
