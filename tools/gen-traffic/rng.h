/*
 * rng.h: PCG32 (O'Neill's pcg32_random_r, XSH RR 64/32).
 *
 * Written out here rather than taken from libc so that a seed gives the same
 * capture on every platform and libc: the corpus in pcap-replay/generated is
 * checked by regenerating it byte for byte.
 */
#ifndef GEN_RNG_H
#define GEN_RNG_H

#include <math.h>
#include <stdint.h>

struct rng {
  uint64_t state;
  uint64_t inc;
};

static inline uint32_t rng_u32(struct rng *r) {
  uint64_t old = r->state;
  r->state = old * 6364136223846793005ULL + r->inc;
  uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = (uint32_t)(old >> 59u);
  return (xs >> rot) | (xs << ((-rot) & 31u));
}

static inline void rng_seed(struct rng *r, uint64_t initstate,
                            uint64_t initseq) {
  r->state = 0;
  r->inc = (initseq << 1u) | 1u;
  (void)rng_u32(r);
  r->state += initstate;
  (void)rng_u32(r);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_unit(struct rng *r) {
  uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;
  return (double)(hi * 67108864ULL + lo) / 9007199254740992.0;
}

/* Uniform in [lo, hi). */
static inline double rng_uniform(struct rng *r, double lo, double hi) {
  return lo + (hi - lo) * rng_unit(r);
}

/* Uniform integer in [0, n), without modulo bias. */
static inline uint32_t rng_below(struct rng *r, uint32_t n) {
  if (n <= 1)
    return 0;
  uint32_t threshold = (uint32_t)(-n) % n;
  for (;;) {
    uint32_t x = rng_u32(r);
    if (x >= threshold)
      return x % n;
  }
}

static inline double rng_exp(struct rng *r, double mean) {
  return -mean * log1p(-rng_unit(r));
}

/* Log-uniform in [lo, hi): delays spread over orders of magnitude (RTTs). */
static inline double rng_loguniform(struct rng *r, double lo, double hi) {
  return lo * exp(log(hi / lo) * rng_unit(r));
}

static inline int rng_chance(struct rng *r, double p) {
  return rng_unit(r) < p;
}

#endif
