/* sl_ratelim_test.c: concurrency, sliding rate windows, prefixes, eviction. */
#include <stdint.h>
#include <string.h>

#include "sl_test.h"
#include "sluice/errors.h"
#include "sluice/ratelim.h"

static uint64_t mem[(4u << 20) / 8]; /* enough for the default table */

static sl_addr A(const char *text) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  if (sl_addr_parse(&a, text, strlen(text)) != 0)
    fprintf(stderr, "bad test address %s\n", text);
  return a;
}

static sl_addr v4n(uint32_t n) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET;
  a.bytes[0] = (uint8_t)(n >> 24);
  a.bytes[1] = (uint8_t)(n >> 16);
  a.bytes[2] = (uint8_t)(n >> 8);
  a.bytes[3] = (uint8_t)n;
  return a;
}

static sl_ratelim *make(const sl_ratelim_config *c) {
  sl_ratelim *rl = NULL;
  CHECK(sl_ratelim_size(c) <= sizeof mem);
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, c), 0);
  return rl;
}

static void test_defaults_and_init(void) {
  sl_ratelim_config c;
  sl_ratelim *rl = NULL;
  memset(&c, 0xff, sizeof c);
  sl_ratelim_config_default(&c);
  CHECK_INT(c.entries, 65536);
  CHECK_INT(c.concurrency_max, 50);
  CHECK_INT(c.rate_max, 0);
  CHECK(c.rate_window == 60 * SL_SEC);
  CHECK_INT(c.ipv4_prefix, 32);
  CHECK_INT(c.ipv6_prefix, 64);
  CHECK_INT(c.over_concurrency, SL_ADMIT_TEMPFAIL);
  CHECK_INT(c.over_rate, SL_ADMIT_TEMPFAIL);

  size_t need = sl_ratelim_size(&c);
  CHECK(need > 65536 * 16 && need <= sizeof mem);
  CHECK_INT(sl_ratelim_init(&rl, mem, need - 1, &c), SL_ERR_NOBUF);
  CHECK_INT(sl_ratelim_init(&rl, (uint8_t *)mem + 4, need, &c),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_ratelim_init(&rl, NULL, need, &c), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_ratelim_init(NULL, mem, need, &c), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_ratelim_init(&rl, mem, need, NULL), SL_ERR_INVALID_ARGUMENT);
  sl_ratelim_config bad = c;
  bad.entries = 0;
  CHECK_INT(sl_ratelim_size(&bad), 0);
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &bad),
            SL_ERR_INVALID_ARGUMENT);
  bad = c;
  bad.ipv4_prefix = 33;
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &bad),
            SL_ERR_INVALID_ARGUMENT);
  bad = c;
  bad.ipv6_prefix = 129;
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &bad),
            SL_ERR_INVALID_ARGUMENT);
  bad = c;
  bad.rate_max = 5;
  bad.rate_window = 0;
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &bad),
            SL_ERR_INVALID_ARGUMENT);
  bad = c;
  bad.over_rate = (sl_admission)7;
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &bad),
            SL_ERR_INVALID_ARGUMENT);
  /* The table does not depend on the caller's config after init. */
  CHECK_INT(sl_ratelim_init(&rl, mem, sizeof mem, &c), 0);
  sl_addr a = A("192.0.2.1");
  c.concurrency_max = 1;
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
}

static void test_concurrency(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.concurrency_max = 3;
  sl_ratelim *rl = make(&c);
  sl_addr a = A("192.0.2.1"), b = A("192.0.2.2");
  for (int i = 0; i < 3; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, (sl_tstamp)i), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &a), 3);
  /* Refused connections are not live: no release is owed for them. */
  for (int i = 0; i < 5; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, 10), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_live(rl, &a), 3);
  /* Another host is not affected. */
  CHECK_INT(sl_ratelim_admit(rl, &b, 11), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &b), 1);
  sl_ratelim_release(rl, &a);
  CHECK_INT(sl_ratelim_live(rl, &a), 2);
  CHECK_INT(sl_ratelim_admit(rl, &a, 12), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 13), SL_ADMIT_TEMPFAIL);
  for (int i = 0; i < 3; i++)
    sl_ratelim_release(rl, &a);
  CHECK_INT(sl_ratelim_live(rl, &a), 0);
  /* Unmatched releases never wrap the count. */
  sl_ratelim_release(rl, &a);
  sl_ratelim_release(rl, &a);
  CHECK_INT(sl_ratelim_live(rl, &a), 0);
  sl_addr never = A("203.0.113.9");
  sl_ratelim_release(rl, &never);
  CHECK_INT(sl_ratelim_live(rl, &never), 0);

  /* A TARPIT verdict admits, so it is live and owes a release. */
  c.over_concurrency = SL_ADMIT_TARPIT;
  rl = make(&c);
  for (int i = 0; i < 3; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TARPIT);
  CHECK_INT(sl_ratelim_live(rl, &a), 4);

  /* concurrency_max 0 means no limit. */
  c.concurrency_max = 0;
  rl = make(&c);
  for (int i = 0; i < 1000; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &a), 1000);
}

static void test_rate_windows(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.concurrency_max = 0;
  c.rate_max = 3;
  c.rate_window = 60 * SL_SEC;
  sl_ratelim *rl = make(&c);
  sl_addr a = A("198.51.100.5");
  const sl_duration S = SL_SEC;

  for (int i = 0; i < 3; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, (sl_tstamp)i * S), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 3 * S), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_live(rl, &a), 3);
  for (int i = 0; i < 3; i++)
    sl_ratelim_release(rl, &a);
  /* Still inside the window: concurrency is free, the rate is not. */
  CHECK_INT(sl_ratelim_admit(rl, &a, 59 * S), SL_ADMIT_TEMPFAIL);
  /* Two windows later everything is forgotten. */
  CHECK_INT(sl_ratelim_admit(rl, &a, 120 * S), SL_ADMIT_ACCEPT);
  sl_ratelim_release(rl, &a);

  /* Sliding: 3 attempts in [0, 60 s); at 90 s half of that window is
     still covered, so 3 * 30/60 = 1.5 counts (rounded down to 1). */
  rl = make(&c);
  for (int i = 0; i < 3; i++)
    CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 90 * S), SL_ADMIT_ACCEPT);   /* 1 + 0 */
  CHECK_INT(sl_ratelim_admit(rl, &a, 90 * S), SL_ADMIT_ACCEPT);   /* 1 + 1 */
  CHECK_INT(sl_ratelim_admit(rl, &a, 90 * S), SL_ADMIT_TEMPFAIL); /* 1 + 2 */
  /* At 180 s the window [60 s, 120 s) is the previous one and only it. */
  CHECK_INT(sl_ratelim_admit(rl, &a, 179 * S), SL_ADMIT_ACCEPT);
  /* 0 + 3*1/60: one more attempt fits before the limit. */
  CHECK_INT(sl_ratelim_admit(rl, &a, 179 * S), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 179 * S), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 179 * S), SL_ADMIT_TEMPFAIL);

  /* The fixed window's blind spot: windows start with a host's first
     attempt (0 s); 1 + 2 attempts before 60 s and 3 just after would all
     pass a fixed window; the sliding count lets only one more through. */
  rl = make(&c);
  int accepted = sl_ratelim_admit(rl, &a, 0) == SL_ADMIT_ACCEPT;
  for (int i = 0; i < 2; i++)
    accepted += sl_ratelim_admit(rl, &a, 59 * S) == SL_ADMIT_ACCEPT;
  for (int i = 0; i < 3; i++)
    accepted += sl_ratelim_admit(rl, &a, 61 * S) == SL_ADMIT_ACCEPT;
  CHECK_INT(accepted, 4);

  /* Rate and concurrency together; TARPIT for the rate admits (live). */
  c.concurrency_max = 2;
  c.over_rate = SL_ADMIT_TARPIT;
  c.rate_max = 1;
  rl = make(&c);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TARPIT);
  CHECK_INT(sl_ratelim_live(rl, &a), 2);
  /* Over both: the harsher verdict wins. */
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_live(rl, &a), 2);

  /* A clock stepping back neither crashes nor resets the window. */
  c.concurrency_max = 0;
  c.over_rate = SL_ADMIT_TEMPFAIL;
  c.rate_max = 2;
  rl = make(&c);
  CHECK_INT(sl_ratelim_admit(rl, &a, 100 * S), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 50 * S), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TEMPFAIL);
  /* Very long windows and timestamps near the end of time. */
  c.rate_window = UINT64_MAX / 2;
  rl = make(&c);
  CHECK_INT(sl_ratelim_admit(rl, &a, UINT64_MAX - 10), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, UINT64_MAX - 5), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, UINT64_MAX - 1), SL_ADMIT_TEMPFAIL);
}

static void test_prefixes(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.concurrency_max = 2;
  sl_ratelim *rl = make(&c);
  /* Two addresses in one /64 share a limit; the next /64 does not. */
  sl_addr x = A("2001:db8:1:2::1"), y = A("2001:db8:1:2:ffff:ffff:ffff:ffff"),
          z = A("2001:db8:1:3::1");
  CHECK_INT(sl_ratelim_admit(rl, &x, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &y, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &x), 2);
  CHECK_INT(sl_ratelim_admit(rl, &x, 0), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_admit(rl, &z, 0), SL_ADMIT_ACCEPT);
  sl_ratelim_release(rl, &y); /* a release by any member of the prefix */
  CHECK_INT(sl_ratelim_live(rl, &x), 1);

  /* IPv4 at /32 by default: neighbours are separate. */
  sl_addr p = A("192.0.2.1"), q = A("192.0.2.2");
  CHECK_INT(sl_ratelim_admit(rl, &p, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &p, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &q, 0), SL_ADMIT_ACCEPT);
  /* An IPv4-mapped address is the IPv4 host, not the /64 ::ffff:0:0. */
  sl_addr pm = A("::ffff:192.0.2.1"), qm = A("::ffff:192.0.2.99");
  CHECK_INT(sl_ratelim_live(rl, &pm), 2);
  CHECK_INT(sl_ratelim_admit(rl, &pm, 0), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_admit(rl, &qm, 0), SL_ADMIT_ACCEPT);
  /* Same bytes, other family: an IPv6 host 0:0:0:0:: is not 0.0.0.0. */
  sl_addr v4zero = A("0.0.0.0"), v6zero = A("::");
  CHECK_INT(sl_ratelim_admit(rl, &v4zero, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &v6zero), 0);

  /* Prefixes that cut inside a byte: /24 and /60. */
  c.ipv4_prefix = 24;
  c.ipv6_prefix = 60;
  rl = make(&c);
  sl_addr r1 = A("10.1.2.3"), r2 = A("10.1.2.250"), r3 = A("10.1.3.3");
  CHECK_INT(sl_ratelim_admit(rl, &r1, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &r2, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &r3, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &r1), 2);
  sl_addr s1 = A("2001:db8:1:20::1"), s2 = A("2001:db8:1:2f:1::"),
          s3 = A("2001:db8:1:30::1");
  CHECK_INT(sl_ratelim_admit(rl, &s1, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &s2, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &s3, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &s1), 2);
  CHECK_INT(sl_ratelim_live(rl, &s3), 1);

  /* Prefix 0: the whole family is one client. */
  c.ipv4_prefix = 0;
  rl = make(&c);
  CHECK_INT(sl_ratelim_admit(rl, &r1, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &p, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &q, 0), SL_ADMIT_TEMPFAIL);

  /* No address, nothing to count. */
  sl_addr none;
  memset(&none, 0, sizeof none);
  for (int i = 0; i < 5; i++)
    CHECK_INT(sl_ratelim_admit(rl, &none, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &none), 0);
  sl_ratelim_release(rl, &none);
  CHECK_INT(sl_ratelim_admit(NULL, &none, 0), SL_ADMIT_TEMPFAIL);
}

static void test_eviction(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 8;
  c.concurrency_max = 5;
  c.rate_max = 1;
  c.rate_window = 1000 * SL_SEC;
  sl_ratelim *rl = make(&c);
  /* Fill the table with idle entries, each remembering one attempt. */
  for (uint32_t i = 1; i <= 8; i++) {
    sl_addr a = v4n(i);
    CHECK_INT(sl_ratelim_admit(rl, &a, i), SL_ADMIT_ACCEPT);
    sl_ratelim_release(rl, &a);
  }
  sl_addr a1 = v4n(1), a2 = v4n(2), a9 = v4n(9);
  /* A ninth host recycles the least recently seen: host 1. */
  CHECK_INT(sl_ratelim_admit(rl, &a9, 9), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a2, 10), SL_ADMIT_TEMPFAIL); /* kept */
  CHECK_INT(sl_ratelim_admit(rl, &a1, 11), SL_ADMIT_ACCEPT);   /* forgotten */
  /* Host 2's attempt at 10 made it recent; host 3 (seen at 3) went. */
  sl_addr a3 = v4n(3);
  CHECK_INT(sl_ratelim_admit(rl, &a3, 12), SL_ADMIT_ACCEPT);
}

static void test_live_never_evicted(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 8;
  c.concurrency_max = 3;
  sl_ratelim *rl = make(&c);
  for (uint32_t i = 1; i <= 8; i++) {
    sl_addr a = v4n(i);
    CHECK_INT(sl_ratelim_admit(rl, &a, i), SL_ADMIT_ACCEPT);
  }
  sl_addr a9 = v4n(9), a5 = v4n(5);
  /* Full of live entries: refused with the concurrency verdict. */
  CHECK_INT(sl_ratelim_admit(rl, &a9, 100), SL_ADMIT_TEMPFAIL);
  CHECK_INT(sl_ratelim_live(rl, &a9), 0);
  for (uint32_t i = 1; i <= 8; i++) {
    sl_addr a = v4n(i);
    CHECK_INT(sl_ratelim_live(rl, &a), 1);
  }
  /* One idle entry is the only one that can go. */
  sl_ratelim_release(rl, &a5);
  CHECK_INT(sl_ratelim_admit(rl, &a9, 101), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &a9), 1);
  for (uint32_t i = 1; i <= 8; i++) {
    sl_addr a = v4n(i);
    CHECK_INT(sl_ratelim_live(rl, &a), i == 5 ? 0 : 1);
  }
  CHECK_INT(sl_ratelim_admit(rl, &a5, 102), SL_ADMIT_TEMPFAIL);
  /* Existing live hosts still get their own slots. */
  sl_addr a1 = v4n(1);
  CHECK_INT(sl_ratelim_admit(rl, &a1, 103), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_live(rl, &a1), 2);
}

/* Tens of thousands of hosts in the default table: every count exact,
   also for a size that is not a power of two. */
static void test_load(void) {
  static const uint32_t sizes[] = {65536, 50021};
  for (size_t s = 0; s < 2; s++) {
    sl_ratelim_config c;
    sl_ratelim_config_default(&c);
    c.entries = sizes[s];
    sl_ratelim *rl = make(&c);
    uint32_t n = sizes[s] * 3 / 4, refused = 0;
    for (uint32_t i = 0; i < n; i++) {
      sl_addr a = v4n(0x0a000000u + i * 7919u);
      refused += sl_ratelim_admit(rl, &a, i) != SL_ADMIT_ACCEPT;
    }
    CHECK_INT(refused, 0);
    uint32_t wrong = 0;
    for (uint32_t i = 0; i < n; i++) {
      sl_addr a = v4n(0x0a000000u + i * 7919u);
      wrong += sl_ratelim_live(rl, &a) != 1;
      sl_ratelim_release(rl, &a);
      wrong += sl_ratelim_live(rl, &a) != 0;
    }
    CHECK_INT(wrong, 0);
    /* IPv6 hosts, each its own /64, recycle the idle IPv4 entries. */
    for (uint32_t i = 0; i < n; i++) {
      sl_addr a;
      memset(&a, 0, sizeof a);
      a.family = SL_AF_INET6;
      a.bytes[0] = 0x20;
      a.bytes[1] = 0x01;
      memcpy(a.bytes + 4, &i, 4);
      a.bytes[15] = 1;
      refused += sl_ratelim_admit(rl, &a, n + i) != SL_ADMIT_ACCEPT;
    }
    CHECK_INT(refused, 0);
  }
}

/* A reload keeps live counts and applies new limits; other prefix lengths
   empty the table; another size is refused. */
static void test_reconfigure(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 64;
  c.concurrency_max = 2;
  sl_ratelim *rl = make(&c);
  sl_addr a = A("192.0.2.1");
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TEMPFAIL);
  c.concurrency_max = 3;
  CHECK_INT(sl_ratelim_reconfigure(rl, &c), 0);
  CHECK_INT(sl_ratelim_live(rl, &a), 2);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TEMPFAIL);
  c.over_concurrency = SL_ADMIT_TARPIT;
  CHECK_INT(sl_ratelim_reconfigure(rl, &c), 0);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TARPIT);
  c.ipv4_prefix = 24;
  CHECK_INT(sl_ratelim_reconfigure(rl, &c), 1);
  CHECK_INT(sl_ratelim_live(rl, &a), 0);
  sl_ratelim_release(rl, &a); /* an earlier session ends: ignored */
  CHECK_INT(sl_ratelim_live(rl, &a), 0);
  c.entries = 128;
  CHECK_INT(sl_ratelim_reconfigure(rl, &c), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_ratelim_reconfigure(NULL, &c), SL_ERR_INVALID_ARGUMENT);
}

/* Rebuilding live counts: clear, then hold each surviving session. */
static void test_clear_and_hold(void) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 64;
  c.concurrency_max = 2;
  c.rate_max = 3;
  sl_ratelim *rl = make(&c);
  sl_addr a = A("192.0.2.1");
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT);
  sl_ratelim_clear_live(rl);
  CHECK_INT(sl_ratelim_live(rl, &a), 0);
  sl_ratelim_hold(rl, &a, 0); /* one session survived */
  CHECK_INT(sl_ratelim_live(rl, &a), 1);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_ACCEPT); /* 3rd attempt */
  /* hold counted no attempt: the 4th is over the rate, not the 3rd */
  sl_ratelim_release(rl, &a);
  CHECK_INT(sl_ratelim_admit(rl, &a, 0), SL_ADMIT_TEMPFAIL);
  sl_ratelim_clear_live(NULL);
  sl_ratelim_hold(NULL, &a, 0);
}

int main(void) {
  SL_RUN(test_clear_and_hold);
  SL_RUN(test_reconfigure);
  SL_RUN(test_defaults_and_init);
  SL_RUN(test_concurrency);
  SL_RUN(test_rate_windows);
  SL_RUN(test_prefixes);
  SL_RUN(test_eviction);
  SL_RUN(test_live_never_evicted);
  SL_RUN(test_load);
  return sl_test_summary();
}
