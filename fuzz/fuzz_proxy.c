/*
 * fuzz_proxy.c: the PROXY protocol (sluice/proxy.h), as round trips.
 *
 * Byte 0 even: the rest is parsed as a header; when it is one, the header
 * is rewritten with sl_proxy_write_v1/v2 (same version) and parsed back to
 * the same addresses, every proper prefix of the accepted header must be
 * INCOMPLETE, and trailing bytes must not change the length.
 * Byte 0 odd: the rest builds two addresses; both writers' output must
 * parse back to them (when the writer accepts them), and every proper prefix
 * of a written header is INCOMPLETE.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/errors.h"
#include "sluice/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_proxy: %s\n", what);
  abort();
}

static int same(const sl_addr *a, const sl_addr *b) {
  return a->family == b->family && a->port == b->port && sl_addr_equal_ip(a, b);
}

static void prefixes(const uint8_t *h, long n) {
  sl_proxy_header x;
  for (long k = 0; k < n; k++)
    if (sl_proxy_parse(h, (size_t)k, &x) != SL_ERR_INCOMPLETE)
      fail("a proper prefix of a valid header is not INCOMPLETE");
}

static void roundtrip(int version, const sl_addr *src, const sl_addr *dst,
                      int local) {
  uint8_t out[256];
  long n = version == 1 ? sl_proxy_write_v1(out, sizeof(out), src, dst)
                        : sl_proxy_write_v2(out, sizeof(out), src, dst);
  if (n < 0)
    return;
  sl_proxy_header h;
  memset(&h, 0, sizeof(h));
  long m = sl_proxy_parse(out, (size_t)n, &h);
  if (m != n) {
    fprintf(stderr, "fuzz_proxy: v%d header of %ld bytes parses as %ld\n",
            version, n, m);
    abort();
  }
  if (h.version != version)
    fail("written version differs from parsed version");
  if (local || src->family == SL_AF_UNSPEC) {
    if (!h.local)
      fail("an UNSPEC header parses as not local");
  } else if (h.local || !same(&h.src, src) || !same(&h.dst, dst)) {
    fail("round trip changed the addresses");
  }
  prefixes(out, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *b = data + 1;
  size_t n = size - 1;
  if (!(data[0] & 1)) {
    sl_proxy_header h;
    long rc = sl_proxy_parse(b, n, &h);
    if (rc == SL_ERR_INCOMPLETE || rc == SL_ERR_MALFORMED)
      return 0;
    if (rc <= 0 || (size_t)rc > n)
      fail("parse returned an impossible value");
    if (h.version != 1 && h.version != 2)
      fail("parsed version not 1 or 2");
    if (h.version == 1 && rc > SL_PROXY_V1_MAX)
      fail("v1 header longer than 107 bytes accepted");
    if (rc <= 4096)
      prefixes(b, rc);
    roundtrip(h.version, &h.src, &h.dst, h.local);
    return 0;
  }
  sl_addr s, d;
  memset(&s, 0, sizeof(s));
  memset(&d, 0, sizeof(d));
  uint8_t buf[40];
  memset(buf, 0, sizeof(buf));
  memcpy(buf, b, n < sizeof(buf) ? n : sizeof(buf));
  static const uint8_t fam[3] = {SL_AF_INET, SL_AF_INET6, SL_AF_UNSPEC};
  s.family = d.family = fam[(data[0] >> 1) % 3];
  s.port = (uint16_t)(buf[0] | buf[1] << 8);
  d.port = (uint16_t)(buf[2] | buf[3] << 8);
  memcpy(s.bytes, buf + 4, 16);
  memcpy(d.bytes, buf + 20, 16);
  if (s.family == SL_AF_INET) {
    memset(s.bytes + 4, 0, 12);
    memset(d.bytes + 4, 0, 12);
  }
  if (s.family == SL_AF_UNSPEC) {
    memset(s.bytes, 0, 16);
    memset(d.bytes, 0, 16);
    s.port = d.port = 0;
  }
  roundtrip(1, &s, &d, 0);
  roundtrip(2, &s, &d, 0);
  return 0;
}
