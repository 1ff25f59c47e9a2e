/* sl_dnsbl_test.c: DNSBL matching (return codes, the 127.255.255.x error
   codes) and the greeting verdict under a policy's scores and actions. */
#include <string.h>

#include "sl_dnsbl.h"
#include "sl_test.h"

#define IP(a, b, c, d)                                                         \
  ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 |            \
   (uint32_t)(d))

static void test_listed_any_code(void) {
  sl_dnsbl_zone z = {"zen.example.org", 5, {0}, 0};
  uint32_t a[] = {IP(127, 0, 0, 2)};
  CHECK(sl_dnsbl_listed(&z, a, 1));
  uint32_t b[] = {IP(127, 0, 0, 10), IP(10, 0, 0, 1)};
  CHECK(sl_dnsbl_listed(&z, b, 2));
  /* outside 127/8: a wildcarding resolver, never a listing */
  uint32_t c[] = {IP(10, 0, 0, 2), IP(128, 0, 0, 2)};
  CHECK(!sl_dnsbl_listed(&z, c, 2));
  /* Spamhaus' "query refused" and error codes never list a client */
  uint32_t d[] = {IP(127, 255, 255, 254), IP(127, 255, 255, 252)};
  CHECK(!sl_dnsbl_listed(&z, d, 2));
  CHECK(sl_dnsbl_listed(&z, (uint32_t[]){IP(127, 255, 254, 1)}, 1));
  CHECK(!sl_dnsbl_listed(&z, a, 0)); /* no answer: not listed */
}

static void test_listed_codes(void) {
  sl_dnsbl_zone z = {
      "zen.example.org", 5, {IP(127, 0, 0, 2), IP(127, 0, 0, 4)}, 2};
  CHECK(sl_dnsbl_listed(&z, (uint32_t[]){IP(127, 0, 0, 4)}, 1));
  CHECK(!sl_dnsbl_listed(&z, (uint32_t[]){IP(127, 0, 0, 3)}, 1));
  CHECK(
      sl_dnsbl_listed(&z, (uint32_t[]){IP(127, 0, 0, 3), IP(127, 0, 0, 2)}, 2));
  /* codes past ncodes are not looked at */
  z.ncodes = 1;
  CHECK(!sl_dnsbl_listed(&z, (uint32_t[]){IP(127, 0, 0, 4)}, 1));
}

static sl_policy policy(void) {
  static const sl_dnsbl_zone zone = {"zen.example.org", 5, {0}, 0};
  sl_policy p;
  memset(&p, 0, sizeof p);
  p.dnsbl = &zone;
  p.ndnsbl = 1;
  p.tarpit_score = 3;
  p.reject_score = 5;
  p.allow_score = -5;
  p.dnsbl_action = SL_ACT_REJECT;
  p.pregreet_score = 2;
  p.pregreet_action = SL_ACT_CONTINUE;
  return p;
}

static void test_verdict_score(void) {
  sl_policy p = policy();
  int32_t s = 0;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 0, &s), SL_ACT_CONTINUE);
  s = 5;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 0, &s), SL_ACT_REJECT);
  CHECK_INT(s, 5);
  /* a score not yet final decides nothing */
  CHECK_INT(sl_dnsbl_verdict(&p, 0, 0, &s), SL_ACT_CONTINUE);
  /* without zones the score is never a DNSBL verdict */
  p.ndnsbl = 0;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 0, &s), SL_ACT_CONTINUE);
}

static void test_verdict_pregreet(void) {
  sl_policy p = policy();
  /* a pregreet adds its score; at tarpit_score it tarpits */
  int32_t s = 1;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 1, &s), SL_ACT_TARPIT);
  CHECK_INT(s, 3);
  /* ... and at reject_score the DNSBL action applies */
  s = 3;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 1, &s), SL_ACT_REJECT);
  CHECK_INT(s, 5);
  /* the pregreet action when it is the strongest */
  p.pregreet_action = SL_ACT_DROP;
  s = 0;
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 1, &s), SL_ACT_DROP);
  /* a pregreet is judged even before the DNSBL answers are in */
  p.pregreet_action = SL_ACT_CONTINUE;
  s = 0;
  CHECK_INT(sl_dnsbl_verdict(&p, 0, 1, &s), SL_ACT_CONTINUE);
  CHECK_INT(s, 2);
}

static void test_allowlist(void) {
  sl_policy p = policy();
  p.pregreet_action = SL_ACT_DROP;
  /* a DNSWL score at allow_score skips the pregreet judgement entirely */
  int32_t s = -5;
  CHECK(sl_dnsbl_allowlisted(&p, 1, s));
  CHECK_INT(sl_dnsbl_verdict(&p, 1, 1, &s), SL_ACT_CONTINUE);
  CHECK_INT(s, -5);
  CHECK(!sl_dnsbl_allowlisted(&p, 1, -4));
  CHECK(!sl_dnsbl_allowlisted(&p, 0, -5)); /* only a final score */
}

int main(void) {
  SL_RUN(test_listed_any_code);
  SL_RUN(test_listed_codes);
  SL_RUN(test_verdict_score);
  SL_RUN(test_verdict_pregreet);
  SL_RUN(test_allowlist);
  return sl_test_summary();
}
