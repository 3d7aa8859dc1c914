/* sample/rng.h - counter-based random numbers for sampling (Philox4x32-10).
 *
 * Design note. A sampled token must depend only on (request seed, choice index, output position),
 * never on which other requests share the batch, on the batch order, or on how often a sequence
 * was preempted and recomputed. A stateful generator (xorshift, a torch.Generator per request)
 * gets this only if every draw happens in exactly the same order; a counter-based generator gets
 * it by construction: the random word for output position `pos` of choice `c` is
 * Philox4x32-10(counter = (pos lo, pos hi, c, domain), key = (seed lo, seed hi)). There is no
 * state to save, copy on fork, or restore after preemption. Philox is the generator PyTorch uses
 * on CUDA and the one cuRAND offers, so a device sampler can reproduce the same draws later.
 *
 * Requests without a seed get one from eng_rng_entropy_seed() once, at submission.
 */
#ifndef QN_SAMPLE_RNG_H
#define QN_SAMPLE_RNG_H

#include <stdint.h>

/* The raw Philox4x32-10 block function (Salmon et al., SC'11; Random123). `ctr` (4 words) and
 * `key` (2 words) in, 4 random words out. Pure; thread-safe. Checked against Random123's
 * known-answer vectors in tests/unit/engine/test_sampler.c. */
void eng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A uniform double in [0, 1) with 53 random bits for (seed, stream, pos). `stream` separates
 * independent uses of one seed (the sampler passes the choice index); `pos` is the output position
 * (0 for the first generated token). Pure; thread-safe. */
double eng_rng_uniform(uint64_t seed, uint32_t stream, uint64_t pos);

/* A fresh 64-bit seed from the OS entropy source (getrandom(2), then /dev/urandom, then a mix of
 * the clock, the pid and a process-wide counter as a last resort). Never fails; thread-safe. */
uint64_t eng_rng_entropy_seed(void);

#endif /* QN_SAMPLE_RNG_H */
