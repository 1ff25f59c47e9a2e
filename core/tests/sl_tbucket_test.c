/* sl_tbucket_test.c: the data_rate token bucket: its size, refills that
   keep fractions of a token, the cap, and when the next token comes. */
#include "sl_tbucket.h"
#include "sl_test.h"

#define T0 ((sl_tstamp)1000 * SL_SEC)

static void test_burst(void) {
  CHECK_INT(sl_tbucket_burst(1), 512); /* a line always fits */
  CHECK_INT(sl_tbucket_burst(4096), 512);
  CHECK_INT(sl_tbucket_burst(4104), 513);
  CHECK_INT(sl_tbucket_burst(80000), 10000); /* an eighth of a second */
}

static void test_fill_and_take(void) {
  sl_tbucket b = {0, T0};
  sl_tbucket_fill(&b, 0, T0 + SL_SEC); /* no throttle: untouched */
  CHECK_INT(b.tokens, 0);
  CHECK(b.t == T0);
  sl_tbucket_fill(&b, 80000, T0 + SL_SEC);
  CHECK_INT(b.tokens, 10000);
  CHECK(b.t == T0 + SL_SEC);
  sl_tbucket_take(&b, 9999);
  CHECK_INT(b.tokens, 1);
  sl_tbucket_take(&b, 5); /* never below empty */
  CHECK_INT(b.tokens, 0);
}

static void test_refill(void) {
  sl_tbucket b = {0, T0};
  sl_tbucket_refill(&b, 0, T0 + SL_SEC);
  CHECK_INT(b.tokens, 0); /* no throttle: untouched */
  /* 1000 bytes/s: 1 ms earns one token */
  sl_tbucket_refill(&b, 1000, T0 + 10 * SL_MSEC);
  CHECK_INT(b.tokens, 10);
  CHECK(b.t == T0 + 10 * SL_MSEC);
  /* 1.5 ms earns one token; the half carries over */
  sl_tbucket_refill(&b, 1000, T0 + 11500 * SL_USEC);
  CHECK_INT(b.tokens, 11);
  CHECK(b.t == T0 + 11 * SL_MSEC);
  sl_tbucket_refill(&b, 1000, T0 + 12 * SL_MSEC);
  CHECK_INT(b.tokens, 12);
  /* less than a token's time: nothing, and the time is kept */
  sl_tbucket_refill(&b, 1000, T0 + 12900 * SL_USEC);
  CHECK_INT(b.tokens, 12);
  CHECK(b.t == T0 + 12 * SL_MSEC);
}

static void test_cap(void) {
  sl_tbucket b = {0, T0};
  /* a long pause fills the bucket to its burst, no more */
  sl_tbucket_refill(&b, 1000, T0 + 3600 * SL_SEC);
  CHECK_INT(b.tokens, 512);
  CHECK(b.t == T0 + 3600 * SL_SEC);
  /* a huge rate over the 10 s look-back cannot overflow */
  sl_tbucket e = {0, T0};
  sl_tbucket_refill(&e, UINT64_C(1) << 40, T0 + 3600 * SL_SEC);
  CHECK(e.tokens == sl_tbucket_burst(UINT64_C(1) << 40));
}

/* Reading at the pace the bucket allows moves data at the rate, over many
   small refills (the fractions are not lost). */
static void test_rate_over_time(void) {
  sl_tbucket b = {0, T0};
  uint64_t rate = 3000, got = 0;
  sl_tbucket_fill(&b, rate, T0);
  got += b.tokens;
  sl_tbucket_take(&b, b.tokens);
  for (int i = 1; i <= 10000; i++) { /* 10 s in 1 ms steps (1.3 ms apart) */
    sl_tbucket_refill(&b, rate, T0 + (sl_tstamp)i * 1300 * SL_USEC);
    got += b.tokens;
    sl_tbucket_take(&b, b.tokens);
  }
  /* 13 s at 3000/s plus the initial burst of 512 */
  CHECK_INT(got, 512 + 39000);
}

static void test_next(void) {
  sl_tbucket b = {0, T0};
  CHECK(sl_tbucket_next(&b, 1000) == T0 + SL_MSEC);
  CHECK(sl_tbucket_next(&b, 3) == T0 + 333333334); /* rounded up */
  /* at that time the token is there */
  sl_tbucket_refill(&b, 1000, sl_tbucket_next(&b, 1000));
  CHECK_INT(b.tokens, 1);
}

int main(void) {
  SL_RUN(test_burst);
  SL_RUN(test_fill_and_take);
  SL_RUN(test_refill);
  SL_RUN(test_cap);
  SL_RUN(test_rate_over_time);
  SL_RUN(test_next);
  return sl_test_summary();
}
