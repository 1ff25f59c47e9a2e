/* sl_pcg.c: PCG32, see sl_pcg.h. */
#include "sl_pcg.h"

#define SL_PCG_MULT 6364136223846793005ULL

uint32_t sl_pcg32_next(sl_pcg32 *g) {
  uint64_t old = g->state;
  g->state = old * SL_PCG_MULT + g->inc;
  uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = (uint32_t)(old >> 59u);
  /* (32 - rot) & 31 keeps the shift defined when rot == 0. */
  return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

void sl_pcg32_seed(sl_pcg32 *g, uint64_t seed, uint64_t seq) {
  g->state = 0;
  g->inc = (seq << 1u) | 1u;
  (void)sl_pcg32_next(g);
  g->state += seed;
  (void)sl_pcg32_next(g);
}

uint64_t sl_pcg32_bounded64(sl_pcg32 *g, uint64_t bound) {
  if (bound == 0)
    return 0;
  /* Rejection sampling: drawing r uniform over [0, 2^k) and refusing
     r < (2^k mod bound) leaves a range that is an exact multiple of bound,
     so r % bound is unbiased.  The expected number of draws is below 2. */
  if (bound <= (uint64_t)UINT32_MAX + 1u) {
    uint64_t threshold = ((uint64_t)1 << 32) % bound;
    for (;;) {
      uint64_t r = sl_pcg32_next(g);
      if (r >= threshold)
        return r % bound;
    }
  }
  uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
  for (;;) {
    uint64_t r = (uint64_t)sl_pcg32_next(g) << 32;
    r |= sl_pcg32_next(g);
    if (r >= threshold)
      return r % bound;
  }
}
