/* sl_addr_test.c: address text both ways and DNSBL names. */
#include <string.h>

#include "sl_test.h"
#include "sluice/addr.h"
#include "sluice/errors.h"

static sl_addr mk6(const uint8_t b[16]) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET6;
  memcpy(a.bytes, b, 16);
  return a;
}

/* RFC 5952 canonical forms; each must also parse back to the same bytes. */
static const struct {
  uint8_t b[16];
  const char *text;
} v6_cases[] = {
    {{0}, "::"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "::1"},
    {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
     "2001:db8::1"},
    /* 4.2.2: a single zero group is not compressed. */
    {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
     "2001:db8:0:1:1:1:1:1"},
    /* 4.2.3: the longest run wins... */
    {{0x20, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, "2001:0:0:1::1"},
    /* ...and the first one on ties. */
    {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1},
     "2001:db8::1:0:0:1"},
    /* 4.3: lower case, leading zeros dropped. */
    {{0x20, 0x01, 0x0d, 0xb8, 0xab, 0xcd, 0x00, 0x0e, 0x0f, 0x00, 0x01, 0x23,
      0x45, 0x67, 0x89, 0xab},
     "2001:db8:abcd:e:f00:123:4567:89ab"},
    {{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "fe80::"},
    {{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "1::1"},
    {{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0}, "1:2:3:4:5:6:7:0"},
    {{0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}, "0:2:3:4:5:6:7:8"},
    {{0, 1, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8}, "1:0:0:4::8"},
    /* 5: IPv4-mapped keeps its dotted quad. */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1},
     "::ffff:192.0.2.1"},
    {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff},
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
};

static void test_format_parse_v6(void) {
  for (size_t i = 0; i < sizeof v6_cases / sizeof v6_cases[0]; i++) {
    sl_addr a = mk6(v6_cases[i].b), p;
    char out[SL_ADDR_STRLEN];
    int n = sl_addr_format(&a, out, sizeof out);
    CHECK_INT(n, (long long)strlen(v6_cases[i].text));
    CHECK_STR(out, v6_cases[i].text);
    memset(&p, 0xaa, sizeof p);
    CHECK_INT(sl_addr_parse(&p, v6_cases[i].text, strlen(v6_cases[i].text)), 0);
    CHECK_INT(p.family, SL_AF_INET6);
    CHECK_INT(p.port, 0);
    CHECK_MEM(p.bytes, 16, v6_cases[i].b, 16);
  }
}

static void test_format_v4_unspec(void) {
  sl_addr a;
  char out[SL_ADDR_STRLEN];
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET;
  memcpy(a.bytes, (const uint8_t[]){255, 0, 10, 199}, 4);
  CHECK_INT(sl_addr_format(&a, out, sizeof out), 12);
  CHECK_STR(out, "255.0.10.199");
  a.family = SL_AF_UNSPEC;
  CHECK_INT(sl_addr_format(&a, out, sizeof out), 7);
  CHECK_STR(out, "unknown");
  a.family = 5;
  CHECK_INT(sl_addr_format(&a, out, sizeof out), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_addr_format(NULL, out, sizeof out), SL_ERR_INVALID_ARGUMENT);
}

static void test_format_nobuf(void) {
  sl_addr a;
  char out[SL_ADDR_STRLEN];
  CHECK_INT(sl_addr_parse(&a, "1.2.3.4", 7), 0);
  for (size_t len = 0; len <= 7; len++) {
    memset(out, 'x', sizeof out);
    CHECK_INT(sl_addr_format(&a, out, len), SL_ERR_NOBUF);
    if (len > 0)
      CHECK_INT(out[0], '\0');
    CHECK_INT(out[len], 'x'); /* nothing written past len */
  }
  CHECK_INT(sl_addr_format(&a, out, 8), 7);
  /* The longest text fits in SL_ADDR_STRLEN exactly. */
  static const char longest[] = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  CHECK_INT(sl_addr_parse(&a, longest, sizeof longest - 1), 0);
  CHECK_INT(sl_addr_format(&a, out, sizeof longest), 39);
  CHECK_INT(sl_addr_format(&a, out, sizeof longest - 1), SL_ERR_NOBUF);
  CHECK_INT(sl_addr_parse(&a, "::ffff:255.255.255.255", 22), 0);
  CHECK_INT(sl_addr_format(&a, out, sizeof out), 22);
}

static void test_parse_good(void) {
  static const struct {
    const char *text;
    int family;
    uint8_t b[16];
  } cases[] = {
      {"0.0.0.0", 4, {0, 0, 0, 0}},
      {"1.2.3.4", 4, {1, 2, 3, 4}},
      {"255.255.255.255", 4, {255, 255, 255, 255}},
      {"10.0.100.9", 4, {10, 0, 100, 9}},
      {"2001:DB8::1",
       6,
       {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
      {"2001:0db8:0000:0000:0000:0000:0000:0001",
       6,
       {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
      {"::1.2.3.4", 6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}},
      {"1:2:3:4:5:6:1.2.3.4",
       6,
       {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4}},
      {"1::", 6, {0, 1}},
      {"1:2:3:4:5:6:7::", 6, {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0}},
      {"::2:3:4:5:6:7:8", 6, {0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_addr a;
    int rc = sl_addr_parse(&a, cases[i].text, strlen(cases[i].text));
    CHECK_INT(rc, 0);
    if (rc != 0) {
      fprintf(stderr, "  case %s\n", cases[i].text);
      continue;
    }
    CHECK_INT(a.family, cases[i].family);
    CHECK_MEM(a.bytes, cases[i].family == 4 ? 4 : 16, cases[i].b,
              cases[i].family == 4 ? 4 : 16);
  }
}

static void test_parse_bad(void) {
  static const char *const bad[] = {
      "",
      "1",
      "1.2.3",
      "1.2.3.4.",
      ".1.2.3.4",
      "1.2.3.4.5",
      "1..2.3",
      "01.2.3.4",
      "1.2.3.04",
      "00.1.1.1",
      "256.1.1.1",
      "1.2.3.999",
      "1.2.3.1000",
      "1.2.3.-1",
      "1.2.3.+1",
      " 1.2.3.4",
      "1.2.3.4 ",
      "1.2.3.4\n",
      "1.2.3.a",
      "0x1.2.3.4",
      "1.2.3.4/32",
      ":",
      ":::",
      "1:",
      ":1",
      "1:2",
      "1::2::3",
      "1:::2",
      "::1:",
      ":1::",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:8::",
      "::1:2:3:4:5:6:7:8",
      "12345::",
      "g::",
      "::1.2.3",
      "::1.2.3.4:5",
      "1:2:3:4:5:6:7:1.2.3.4",
      "::01.2.3.4",
      "::256.0.0.0",
      "fe80::1%eth0",
      "[::1]",
      "::1 ",
      "1.2.3.4::",
      "::ffff:1.2.3.4.5",
      "1:2:3:4:5:6:7:8:1.2.3.4",
      "0000:0000:0000:0000:0000:ffff:255.255.255.2555",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sl_addr a;
    memset(&a, 0x5a, sizeof a);
    int rc = sl_addr_parse(&a, bad[i], strlen(bad[i]));
    CHECK_INT(rc, SL_ERR_MALFORMED);
    if (rc != SL_ERR_MALFORMED)
      fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
    CHECK_INT(a.family, 0x5a); /* untouched on failure */
  }
  /* Only len bytes are read: a valid address followed by junk. */
  sl_addr a;
  CHECK_INT(sl_addr_parse(&a, "1.2.3.4XYZ", 7), 0);
  CHECK_INT(sl_addr_parse(&a, "::1\0", 4), SL_ERR_MALFORMED);
  CHECK_INT(sl_addr_parse(&a, NULL, 0), SL_ERR_MALFORMED);
}

static void test_equal(void) {
  sl_addr a, b;
  CHECK_INT(sl_addr_parse(&a, "1.2.3.4", 7), 0);
  CHECK_INT(sl_addr_parse(&b, "1.2.3.4", 7), 0);
  a.port = 25;
  b.port = 587;
  b.bytes[10] = 0x77; /* bytes past an IPv4 address do not matter */
  CHECK(sl_addr_equal_ip(&a, &b));
  b.bytes[3] = 5;
  CHECK(!sl_addr_equal_ip(&a, &b));
  CHECK_INT(sl_addr_parse(&b, "::ffff:1.2.3.4", 14), 0);
  CHECK(!sl_addr_equal_ip(&a, &b)); /* families differ */
  CHECK_INT(sl_addr_parse(&a, "::FFFF:1.2.3.4", 14), 0);
  CHECK(sl_addr_equal_ip(&a, &b));
  a.bytes[15] ^= 1;
  CHECK(!sl_addr_equal_ip(&a, &b));
  CHECK(!sl_addr_equal_ip(NULL, &b));
}

static void test_dnsbl(void) {
  sl_addr a;
  char out[300];
  CHECK_INT(sl_addr_parse(&a, "192.0.2.99", 10), 0);
  CHECK_INT(sl_addr_dnsbl_name(&a, "zen.spamhaus.org", out, sizeof out), 27);
  CHECK_STR(out, "99.2.0.192.zen.spamhaus.org");
  CHECK_INT(sl_addr_parse(&a, "2001:db8:1:2::abc", 17), 0);
  int n = sl_addr_dnsbl_name(&a, "bl.example", out, sizeof out);
  static const char want6[] = "c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0."
                              "2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example";
  CHECK_INT(n, (long long)sizeof want6 - 1);
  CHECK_STR(out, want6);
  /* Exactly fitting, one short, and nothing past len is touched. */
  CHECK_INT(sl_addr_dnsbl_name(&a, "bl.example", out, sizeof want6),
            (long long)sizeof want6 - 1);
  memset(out, 'x', sizeof out);
  CHECK_INT(sl_addr_dnsbl_name(&a, "bl.example", out, sizeof want6 - 1),
            SL_ERR_NOBUF);
  CHECK_INT(out[0], '\0');
  CHECK_INT(out[sizeof want6 - 1], 'x');
  CHECK_INT(sl_addr_dnsbl_name(&a, "", out, sizeof out),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_addr_dnsbl_name(&a, NULL, out, sizeof out),
            SL_ERR_INVALID_ARGUMENT);
  char longzone[200];
  memset(longzone, 'a', sizeof longzone - 1);
  longzone[sizeof longzone - 1] = '\0';
  CHECK_INT(sl_addr_dnsbl_name(&a, longzone, out, sizeof out),
            SL_ERR_INVALID_ARGUMENT);
  a.family = SL_AF_UNSPEC;
  CHECK_INT(sl_addr_dnsbl_name(&a, "bl.example", out, sizeof out),
            SL_ERR_INVALID_ARGUMENT);
}

int main(void) {
  SL_RUN(test_format_parse_v6);
  SL_RUN(test_format_v4_unspec);
  SL_RUN(test_format_nobuf);
  SL_RUN(test_parse_good);
  SL_RUN(test_parse_bad);
  SL_RUN(test_equal);
  SL_RUN(test_dnsbl);
  return sl_test_summary();
}
