/* sl_pcg_test.c: PCG32 against the reference pcg32-demo output. */
#include "sl_pcg.h"
#include "sl_test.h"

/* pcg32-global-demo / pcg32-demo: pcg32_srandom_r(&rng, 42u, 54u). */
static void test_reference_vector(void) {
  static const uint32_t want[] = {0xa15c02b7, 0x7b47f409, 0xba1d3330,
                                  0x83d2f293, 0xbfa4784b, 0xcbed606e};
  sl_pcg32 g;
  sl_pcg32_seed(&g, 42u, 54u);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    CHECK_INT(sl_pcg32_next(&g), want[i]);
}

static void test_streams_differ(void) {
  sl_pcg32 a, b, c;
  sl_pcg32_seed(&a, 42u, 54u);
  sl_pcg32_seed(&b, 42u, 55u);
  sl_pcg32_seed(&c, 43u, 54u);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 64; i++) {
    uint32_t x = sl_pcg32_next(&a), y = sl_pcg32_next(&b),
             z = sl_pcg32_next(&c);
    same_ab += x == y;
    same_ac += x == z;
  }
  CHECK(same_ab < 2);
  CHECK(same_ac < 2);
}

static void test_deterministic(void) {
  sl_pcg32 a, b;
  sl_pcg32_seed(&a, 0xdeadbeefcafef00dULL, 7);
  sl_pcg32_seed(&b, 0xdeadbeefcafef00dULL, 7);
  for (int i = 0; i < 1000; i++)
    CHECK_INT(sl_pcg32_next(&a), sl_pcg32_next(&b));
  for (int i = 0; i < 1000; i++)
    CHECK(sl_pcg32_bounded64(&a, 12345) == sl_pcg32_bounded64(&b, 12345));
}

static void test_bounded(void) {
  sl_pcg32 g;
  sl_pcg32_seed(&g, 1, 2);
  uint64_t before = g.state;
  CHECK(sl_pcg32_bounded64(&g, 0) == 0);
  CHECK(g.state == before); /* bound 0 draws nothing */
  for (int i = 0; i < 100; i++)
    CHECK(sl_pcg32_bounded64(&g, 1) == 0);

  /* Every value of a small range appears, with roughly equal counts. */
  unsigned counts[6] = {0};
  for (int i = 0; i < 60000; i++) {
    uint64_t v = sl_pcg32_bounded64(&g, 6);
    CHECK(v < 6);
    if (v < 6)
      counts[v]++;
  }
  for (int i = 0; i < 6; i++)
    CHECK(counts[i] > 9000 && counts[i] < 11000);

  /* Bounds at and past 2^32 stay in range and use the high bits. */
  uint64_t big = (uint64_t)1 << 40, maxseen = 0;
  for (int i = 0; i < 2000; i++) {
    uint64_t v = sl_pcg32_bounded64(&g, big);
    CHECK(v < big);
    if (v > maxseen)
      maxseen = v;
  }
  CHECK(maxseen > ((uint64_t)1 << 39));
  for (int i = 0; i < 2000; i++)
    CHECK(sl_pcg32_bounded64(&g, (uint64_t)UINT32_MAX + 1u) <= UINT32_MAX);
  uint64_t huge = UINT64_MAX - 5, hi = 0;
  for (int i = 0; i < 2000; i++) {
    uint64_t v = sl_pcg32_bounded64(&g, huge);
    CHECK(v < huge);
    if (v > hi)
      hi = v;
  }
  CHECK(hi > ((uint64_t)1 << 63));
  /* A bound just above 2^63 rejects about half of the draws: it must still
     terminate and stay in range. */
  uint64_t half = ((uint64_t)1 << 63) + 1;
  for (int i = 0; i < 200; i++)
    CHECK(sl_pcg32_bounded64(&g, half) < half);
}

int main(void) {
  SL_RUN(test_reference_vector);
  SL_RUN(test_streams_differ);
  SL_RUN(test_deterministic);
  SL_RUN(test_bounded);
  return sl_test_summary();
}
