/* Unit tests of the generator's PRNG and checksums. */
#include <pcap/pcap.h>
#include <string.h>

#include "../pkt.h"
#include "../rng.h"
#include "sl_test.h"

/* The reference output of pcg32-demo (pcg32_srandom_r(&rng, 42, 54)). */
static void test_pcg32_reference(void) {
  static const uint32_t want[6] = {0xa15c02b7, 0x7b47f409, 0xba1d3330,
                                   0x83d2f293, 0xbfa4784b, 0xcbed606e};
  struct rng r;
  rng_seed(&r, 42, 54);
  for (int i = 0; i < 6; i++)
    CHECK_INT(rng_u32(&r), want[i]);
}

static void test_rng_ranges(void) {
  struct rng r;
  rng_seed(&r, 7, 1);
  int seen[5] = {0};
  for (int i = 0; i < 10000; i++) {
    double u = rng_unit(&r);
    CHECK(u >= 0 && u < 1);
    uint32_t k = rng_below(&r, 5);
    CHECK(k < 5);
    if (k < 5)
      seen[k]++;
    double e = rng_exp(&r, 3);
    CHECK(e >= 0);
  }
  for (int i = 0; i < 5; i++)
    CHECK(seen[i] > 1700 && seen[i] < 2300);
}

/* RFC 1071 section 3 example: the sum of these words is 0xddf2. */
static void test_checksum_rfc1071(void) {
  static const uint8_t b[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  CHECK_INT(pkt_fold(pkt_sum(0, b, 8)), 0xddf2);
  CHECK_INT(pkt_fold(pkt_sum(0, b, 7)),
            pkt_fold(0x0001u + 0xf203u + 0xf4f5u + 0xf600u));
}

/* A built frame verifies: its IP and TCP sums, taken again, come to 0xffff. */
static void test_frame_sums_verify(void) {
  struct addr a = {4, {198, 51, 100, 7}}, b = {4, {192, 0, 2, 25}};
  const char *data = "EHLO x\r\n";
  struct tcpseg s;
  memset(&s, 0, sizeof s);
  s.src = &a;
  s.dst = &b;
  s.sport = 40000;
  s.dport = 25;
  s.seq = 1000;
  s.ack = 2000;
  s.flags = TCPF_ACK | TCPF_PSH;
  s.win = 64240;
  s.ttl = 60;
  s.payload = (const uint8_t *)data;
  s.plen = strlen(data); /* odd length exercises the padding byte */
  s.plen--;
  uint8_t buf[200];
  size_t n = pkt_build(buf, DLT_EN10MB, &s);
  CHECK_INT(n, 14 + 20 + 20 + s.plen);
  CHECK_INT(pkt_fold(pkt_sum(0, buf + 14, 20)), 0xffff);
  uint32_t ps = pkt_sum(0, buf + 14 + 12, 8) + 6 + (uint32_t)(20 + s.plen);
  CHECK_INT(pkt_fold(pkt_sum(ps, buf + 34, 20 + s.plen)), 0xffff);

  struct addr a6 = {
      6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}};
  struct addr b6 = {
      6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25}};
  s.src = &a6;
  s.dst = &b6;
  n = pkt_build(buf, DLT_RAW, &s);
  CHECK_INT(n, 40 + 20 + s.plen);
  CHECK_INT(buf[0] >> 4, 6);
  ps = pkt_sum(0, buf + 8, 32) + 6 + (uint32_t)(20 + s.plen);
  CHECK_INT(pkt_fold(pkt_sum(ps, buf + 40, 20 + s.plen)), 0xffff);
}

int main(void) {
  SL_RUN(test_pcg32_reference);
  SL_RUN(test_rng_ranges);
  SL_RUN(test_checksum_rfc1071);
  SL_RUN(test_frame_sums_verify);
  return sl_test_summary();
}
