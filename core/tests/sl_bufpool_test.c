/* sl_bufpool_test.c: size classes, exhaustion, return, and bad arguments. */
#include <stdint.h>
#include <string.h>

#include "sl_test.h"
#include "sluice/bufpool.h"
#include "sluice/errors.h"

static uint64_t region[(4 * 32 + 2 * 128) / 8];

static void test_need_and_init_errors(void) {
  sl_bufpool bp;
  CHECK_INT(sl_bufpool_need(32, 4, 128, 2), 4 * 32 + 2 * 128);
  CHECK_INT(sl_bufpool_need(32, 0, 128, 0), 0);
  CHECK(sl_bufpool_need(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX) ==
        SIZE_MAX);
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region - 1, 32, 4, 128, 2),
            SL_ERR_NOBUF);
  CHECK_INT(sl_bufpool_init(&bp, NULL, 0, 32, 4, 128, 2), SL_ERR_NOBUF);
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 8, 4, 128, 2),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 36, 4, 128, 2),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 128, 1, 32, 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 32, 4, 128, 2), 0);
  CHECK_INT(bp.small_free, 4);
  CHECK_INT(bp.large_free, 2);
  CHECK_INT(sl_bufpool_init(&bp, NULL, 0, 32, 0, 128, 0), 0);
}

static void test_classes(void) {
  sl_bufpool bp;
  sl_pool pool;
  uint32_t cap = 1;
  uint8_t *s[5], *l[3];
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 32, 4, 128, 2), 0);
  sl_bufpool_as_pool(&bp, &pool);
  CHECK(pool.ctx == &bp);
  uint8_t *lo = (uint8_t *)region, *hi = lo + sizeof region;

  for (int i = 0; i < 4; i++) {
    s[i] = pool.get(pool.ctx, (uint32_t)(i == 0 ? 0 : 32 - i), &cap);
    CHECK(s[i] != NULL);
    CHECK_INT(cap, 32);
    CHECK(s[i] >= lo && s[i] + 32 <= lo + 4 * 32);
    if (s[i])
      memset(s[i], 0xa0 + i, 32); /* the whole capacity is usable */
  }
  s[4] = pool.get(pool.ctx, 1, &cap);
  CHECK(s[4] == NULL); /* no fallback to a large buffer */
  CHECK_INT(bp.large_free, 2);

  l[0] = pool.get(pool.ctx, 33, &cap);
  CHECK_INT(cap, 128);
  l[1] = pool.get(pool.ctx, 128, &cap);
  CHECK_INT(cap, 128);
  CHECK(l[0] && l[1] && l[0] != l[1]);
  CHECK(l[0] >= lo + 4 * 32 && l[0] + 128 <= hi);
  CHECK(l[1] >= lo + 4 * 32 && l[1] + 128 <= hi);
  if (l[0] && l[1]) {
    memset(l[0], 0x11, 128);
    memset(l[1], 0x22, 128);
  }
  l[2] = pool.get(pool.ctx, 100, &cap);
  CHECK(l[2] == NULL);
  CHECK(pool.get(pool.ctx, 129, &cap) == NULL);
  CHECK(pool.get(pool.ctx, UINT32_MAX, &cap) == NULL);
  /* Buffers never overlap: each kept its fill. */
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 32; k++)
      CHECK(s[i][k] == (uint8_t)(0xa0 + i));
  CHECK_INT(bp.gets, 10);
  CHECK_INT(bp.misses, 4);

  pool.put(pool.ctx, s[2], 32);
  pool.put(pool.ctx, l[1], 128);
  CHECK_INT(bp.small_free, 1);
  CHECK_INT(bp.large_free, 1);
  CHECK(pool.get(pool.ctx, 10, &cap) == s[2]);
  CHECK(pool.get(pool.ctx, 1000 / 10, &cap) == l[1]);

  /* Foreign capacities, NULL, and returns beyond the total are ignored. */
  pool.put(pool.ctx, s[0], 64);
  pool.put(pool.ctx, NULL, 32);
  CHECK_INT(bp.small_free, 0);
  for (int i = 0; i < 4; i++)
    pool.put(pool.ctx, s[i], 32);
  pool.put(pool.ctx, s[0], 32);
  CHECK_INT(bp.small_free, 4);
  pool.put(pool.ctx, l[0], 128);
  pool.put(pool.ctx, l[1], 128);
  pool.put(pool.ctx, l[1], 128);
  CHECK_INT(bp.large_free, 2);
  /* All four smalls come back out, each once. */
  uint8_t *seen[4];
  for (int i = 0; i < 4; i++) {
    seen[i] = pool.get(pool.ctx, 32, &cap);
    CHECK(seen[i] != NULL);
    for (int j = 0; j < i; j++)
      CHECK(seen[i] != seen[j]);
  }
  CHECK(pool.get(pool.ctx, 32, &cap) == NULL);
}

static void test_equal_sizes(void) {
  sl_bufpool bp;
  sl_pool pool;
  uint32_t cap;
  CHECK_INT(sl_bufpool_init(&bp, region, sizeof region, 64, 2, 64, 2), 0);
  sl_bufpool_as_pool(&bp, &pool);
  uint8_t *a = pool.get(pool.ctx, 64, &cap);
  uint8_t *b = pool.get(pool.ctx, 64, &cap);
  CHECK(a && b);
  CHECK(pool.get(pool.ctx, 64, &cap) == NULL); /* 64 is a small request */
  pool.put(pool.ctx, a, 64);
  pool.put(pool.ctx, b, 64);
  CHECK_INT(bp.small_free, 2);
  CHECK_INT(bp.large_free, 2);
}

int main(void) {
  SL_RUN(test_need_and_init_errors);
  SL_RUN(test_classes);
  SL_RUN(test_equal_sizes);
  return sl_test_summary();
}
