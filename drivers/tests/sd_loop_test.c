/*
 * sd_loop_test.c: the timer heap against a brute-force model, and the loop
 * firing timers in deadline order.
 */
#include <stdint.h>
#include <stdlib.h>

#include "sd_loop.h"
#include "sl_test.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void nop(sd_timer *t) { (void)t; }

#define N 500

static void test_heap_model(void) {
  static sd_timer t[N];
  sd_heap h = {0};
  for (int i = 0; i < N; i++)
    sd_timer_init(&t[i], nop);
  /* Random push / re-key / remove / pop, checking the minimum each step. */
  for (int step = 0; step < 20000; step++) {
    int i = (int)(rnd() % N);
    unsigned op = (unsigned)(rnd() % 4);
    if (op == 0 && t[i].slot == SD_TIMER_IDLE) {
      t[i].when = rnd() % 1000;
      CHECK_INT(sd_heap_push(&h, &t[i]), 0);
    } else if (op == 1 && t[i].slot != SD_TIMER_IDLE) {
      t[i].when = rnd() % 1000;
      sd_heap_fix(&h, &t[i]);
    } else if (op == 2 && t[i].slot != SD_TIMER_IDLE) {
      sd_heap_remove(&h, &t[i]);
      CHECK(t[i].slot == SD_TIMER_IDLE);
    } else if (op == 3 && h.n > 0) {
      sd_timer *m = sd_heap_min(&h);
      sd_heap_remove(&h, m);
    }
    uint64_t best = UINT64_MAX;
    uint32_t armed = 0;
    for (int j = 0; j < N; j++)
      if (t[j].slot != SD_TIMER_IDLE) {
        armed++;
        if (t[j].when < best)
          best = t[j].when;
        CHECK(h.v[t[j].slot] == &t[j]);
      }
    CHECK_INT(armed, h.n);
    if (h.n)
      CHECK_INT(sd_heap_min(&h)->when, best);
    else
      CHECK(sd_heap_min(&h) == NULL);
  }
  /* Draining pops in non-decreasing order. */
  uint64_t last = 0;
  while (h.n) {
    sd_timer *m = sd_heap_min(&h);
    CHECK(m->when >= last);
    last = m->when;
    sd_heap_remove(&h, m);
  }
  sd_heap_free(&h);
}

static int fired[8], nfired;
static sd_timer lt[8];
static void record(sd_timer *t) { fired[nfired++] = (int)(t - lt); }

static void test_loop_fires_in_order(void) {
  sd_loop *l = sd_loop_new();
  CHECK(l != NULL);
  uint64_t now = sd_loop_update_now(l);
  for (int i = 0; i < 4; i++)
    sd_timer_init(&lt[i], record);
  sd_timer_set(l, &lt[0], now + 30 * 1000000ull);
  sd_timer_set(l, &lt[1], now + 10 * 1000000ull);
  sd_timer_set(l, &lt[2], now + 20 * 1000000ull);
  sd_timer_set(l, &lt[3], now + 5 * 1000000ull);
  sd_timer_stop(l, &lt[3]);                  /* stopped: never fires */
  sd_timer_set(l, &lt[2], now + 1000000ull); /* re-armed earlier */
  CHECK_INT(sd_loop_timers(l), 3);
  for (int i = 0; i < 50 && nfired < 3; i++)
    sd_loop_once(l, 100);
  CHECK_INT(nfired, 3);
  CHECK_INT(fired[0], 2);
  CHECK_INT(fired[1], 1);
  CHECK_INT(fired[2], 0);
  /* The loop slept until the deadline, not busy-looping past it. */
  CHECK(sd_loop_now(l) >= now + 30 * 1000000ull);
  CHECK_INT(sd_loop_timers(l), 0);
  sd_loop_free(l);
}

int main(void) {
  SL_RUN(test_heap_model);
  SL_RUN(test_loop_fires_in_order);
  return sl_test_summary();
}
