/* sample/rng.c - Philox4x32-10 and the sampler's per-position uniform draw (see rng.h).
 *
 * Philox4x32: each of the 10 rounds multiplies two counter words by fixed 32-bit constants,
 * takes the high/low halves of the 64-bit products and mixes them with the other two words and
 * the round key; the key is bumped by the Weyl constants between rounds. Constants from
 * Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11).
 */
#include "sample/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* domain word: keeps sampler draws apart from any other future use of the same (seed, stream) */
#define RNG_DOMAIN_SAMPLE 0x73616d70u /* "samp" */

void eng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

double eng_rng_uniform(uint64_t seed, uint32_t stream, uint64_t pos)
{
    uint32_t ctr[4] = {(uint32_t)pos, (uint32_t)(pos >> 32), stream, RNG_DOMAIN_SAMPLE};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t w[4];
    eng_philox4x32_10(ctr, key, w);
    uint64_t bits = ((uint64_t)(w[0] >> 5) << 26) | (uint64_t)(w[1] >> 6); /* 27 + 26 = 53 bits */
    return (double)bits * (1.0 / 9007199254740992.0);                      /* 2^-53 */
}

/* SplitMix64 finalizer: spreads the weak fallback inputs over all 64 bits. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t eng_rng_entropy_seed(void)
{
    uint64_t s = 0;
    ssize_t n;
    do {
        n = getrandom(&s, sizeof s, 0);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof s) return s;

    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, &s, sizeof s);
        close(fd);
        if (n == (ssize_t)sizeof s) return s;
    }

    static atomic_uint_fast64_t counter = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t c = atomic_fetch_add(&counter, 1);
    return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48) ^ mix64(c));
}
