/* sl_tbucket.c: a token bucket of bytes; see sl_tbucket.h. */
#include "sl_tbucket.h"

uint64_t sl_tbucket_burst(uint64_t rate) {
  return rate / 8 > 512 ? rate / 8 : 512;
}

void sl_tbucket_fill(sl_tbucket *b, uint64_t rate, sl_tstamp now) {
  if (rate) {
    b->tokens = sl_tbucket_burst(rate);
    b->t = now;
  }
}

void sl_tbucket_refill(sl_tbucket *b, uint64_t rate, sl_tstamp now) {
  if (!rate)
    return;
  uint64_t cap = sl_tbucket_burst(rate);
  if (now - b->t > 10 * SL_SEC)
    b->t = now - 10 * SL_SEC; /* the bucket is full long before */
  uint64_t add = rate * ((now - b->t) / SL_USEC) / 1000000u;
  if (!add)
    return;
  /* Only the time the new tokens stand for is used up, so fractions carry
     over to the next refill instead of being rounded away. */
  b->t += add * SL_SEC / rate;
  b->tokens += add;
  if (b->tokens >= cap) {
    b->tokens = cap;
    b->t = now;
  }
}

void sl_tbucket_take(sl_tbucket *b, uint64_t n) {
  b->tokens = b->tokens > n ? b->tokens - n : 0;
}

sl_tstamp sl_tbucket_next(const sl_tbucket *b, uint64_t rate) {
  return b->t + (SL_SEC + rate - 1) / rate;
}
