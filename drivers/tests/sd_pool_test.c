/*
 * sd_pool_test.c: the growing buffer pool: size classes, the memory cap,
 * the bounded free lists.
 */
#include "sd_pool.h"
#include "sl_test.h"

static void test_classes_and_reuse(void) {
  sd_pool p;
  sd_pool_init(&p, 512, 16384, 0, 4);
  uint32_t cap = 0;
  uint8_t *a = sd_pool_get(&p, 100, &cap);
  CHECK(a != NULL);
  CHECK_INT(cap, 512);
  uint8_t *b = sd_pool_get(&p, 513, &cap);
  CHECK(b != NULL);
  CHECK_INT(cap, 16384);
  CHECK(sd_pool_get(&p, 16385, &cap) == NULL); /* larger than any class */
  CHECK_INT(p.lent, 512 + 16384);
  sd_pool_put(&p, a, 512);
  uint8_t *c = sd_pool_get(&p, 1, &cap);
  CHECK(c == a); /* reused from the free list */
  sd_pool_put(&p, c, 512);
  sd_pool_put(&p, b, 16384);
  CHECK_INT(p.lent, 0);
  CHECK_INT(p.allocated, 512 + 16384);
  sd_pool_destroy(&p);
  CHECK_INT(p.allocated, 0);
}

static void test_cap(void) {
  sd_pool p;
  sd_pool_init(&p, 512, 4096, 3 * 4096, 8);
  uint32_t cap;
  uint8_t *l[4];
  for (int i = 0; i < 3; i++)
    CHECK((l[i] = sd_pool_get(&p, 1000, &cap)) != NULL);
  CHECK(sd_pool_get(&p, 1000, &cap) == NULL); /* at the cap */
  CHECK(sd_pool_get(&p, 10, &cap) == NULL);
  CHECK(p.misses == 2);
  sd_pool_put(&p, l[0], 4096);
  /* A free large buffer is given up to make room for a small one. */
  uint8_t *s = sd_pool_get(&p, 10, &cap);
  CHECK(s != NULL);
  CHECK_INT(cap, 512);
  CHECK(p.allocated <= 3 * 4096);
  sd_pool_put(&p, s, 512);
  sd_pool_put(&p, l[1], 4096);
  sd_pool_put(&p, l[2], 4096);
  sd_pool_destroy(&p);
}

static void test_keep_free_bound(void) {
  sd_pool p;
  sd_pool_init(&p, 64, 128, 0, 2);
  uint32_t cap;
  uint8_t *b[10];
  for (int i = 0; i < 10; i++)
    b[i] = sd_pool_get(&p, 10, &cap);
  CHECK_INT(p.allocated, 640);
  for (int i = 0; i < 10; i++)
    sd_pool_put(&p, b[i], 64);
  /* Only keep_free buffers stay cached after a burst. */
  CHECK_INT(p.nfree_small, 2);
  CHECK_INT(p.allocated, 128);
  sd_pool_destroy(&p);
}

/* Two pools (two config generations of one worker) under one budget:
   together they stay under its cap, and a buffer freed by either makes
   room for the other. */
static void test_budget(void) {
  sd_pool_budget b = {2 * 4096, 0};
  sd_pool old, cur;
  sd_pool_init(&old, 512, 4096, 2 * 4096, 0);
  sd_pool_init(&cur, 512, 4096, 2 * 4096, 0);
  sd_pool_set_budget(&old, &b);
  sd_pool_set_budget(&cur, &b);
  uint32_t cap;
  uint8_t *a = sd_pool_get(&old, 1000, &cap);
  uint8_t *c = sd_pool_get(&cur, 1000, &cap);
  CHECK(a != NULL && c != NULL);
  CHECK_INT(b.allocated, 2 * 4096);
  CHECK(sd_pool_get(&cur, 1000, &cap) ==
        NULL);                /* each pool alone is under 2 * 4096 */
  sd_pool_put(&old, a, 4096); /* keep_free 0: freed */
  CHECK_INT(b.allocated, 4096);
  uint8_t *d = sd_pool_get(&cur, 1000, &cap);
  CHECK(d != NULL);
  sd_pool_put(&cur, c, 4096);
  sd_pool_put(&cur, d, 4096);
  sd_pool_destroy(&old);
  sd_pool_destroy(&cur);
  CHECK_INT(b.allocated, 0);
}

int main(void) {
  SL_RUN(test_budget);
  SL_RUN(test_classes_and_reuse);
  SL_RUN(test_cap);
  SL_RUN(test_keep_free_bound);
  return sl_test_summary();
}
