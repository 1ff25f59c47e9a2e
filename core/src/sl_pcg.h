/*
 * sl_pcg.h: PCG32 (M. E. O'Neill, pcg-random.org), the core's private PRNG.
 *
 * The core draws its randomness (tarpit jitter, for one) from a generator
 * seeded by the driver so that a replay with the same seed produces the same
 * bytes at the same times.  This is the reference pcg32: 64-bit LCG state,
 * an odd increment that selects the stream, XSH RR output.
 */
#ifndef SL_PCG_H
#define SL_PCG_H

#include <stdint.h>

typedef struct sl_pcg32 {
  uint64_t state, inc;
} sl_pcg32;

/* Same as pcg32_srandom_r(g, seed, seq): seq selects one of 2^63 streams. */
void sl_pcg32_seed(sl_pcg32 *g, uint64_t seed, uint64_t seq);

/* The next 32-bit output (pcg32_random_r). */
uint32_t sl_pcg32_next(sl_pcg32 *g);

/* Uniform in [0, bound) without modulo bias; 0 if bound == 0.  Draws one
   output per attempt when bound <= 2^32, else two (high word first). */
uint64_t sl_pcg32_bounded64(sl_pcg32 *g, uint64_t bound);

#endif
