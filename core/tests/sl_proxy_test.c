/*
 * sl_proxy_test.c: PROXY v1/v2 parser and writers against hostile input.
 *
 * Every parse runs on a copy placed flush against a PROT_NONE guard page
 * (picohttpparser's test.c does the same), so reading one byte past len
 * crashes the test instead of passing silently.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sl_guard.h"
#include "sl_test.h"
#include "sluice/errors.h"
#include "sluice/proxy.h"

static uint8_t *guard_end;

static long parse_guarded(const void *data, size_t len, sl_proxy_header *h) {
  return sl_proxy_parse(sl_guard_copy(guard_end, data, len), len, h);
}

static long parse_str(const char *s, sl_proxy_header *h) {
  return parse_guarded(s, strlen(s), h);
}

/* Every proper prefix of a valid header must ask for more, never fail. */
static void check_prefixes(const uint8_t *buf, size_t len, const char *what) {
  for (size_t n = 0; n < len; n++) {
    sl_proxy_header h;
    long rc = parse_guarded(buf, n, &h);
    if (rc != SL_ERR_INCOMPLETE) {
      fprintf(stderr, "  %s: prefix of %zu/%zu bytes gave %ld\n", what, n, len,
              rc);
      CHECK_INT(rc, SL_ERR_INCOMPLETE);
      return;
    }
  }
}

static void addr_text(const sl_addr *a, char *out) {
  if (sl_addr_format(a, out, SL_ADDR_STRLEN) < 0)
    strcpy(out, "?");
}

/* ---- v1 ---------------------------------------------------------------- */

static const struct {
  const char *in;
  int local;
  const char *src, *dst;
  unsigned sport, dport;
} v1_good[] = {
    {"PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\n", 0, "192.0.2.1",
     "198.51.100.7", 56324, 25},
    {"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 0, "0.0.0.0",
     "255.255.255.255", 0, 65535},
    {"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 1 2\r\n", 0, "2001:db8::1",
     "2001:db8::2", 1, 2},
    {"PROXY TCP6 ::ffff:192.0.2.1 :: 10 20\r\n", 0, "::ffff:192.0.2.1",
     "::", 10, 20},
    {"PROXY TCP6 1:2:3:4:5:6:7:8 1:2:3:4:5:6:1.2.3.4 65535 0\r\n", 0,
     "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:102:304", 65535, 0},
    {"PROXY UNKNOWN\r\n", 1, "unknown", "unknown", 0, 0},
    {"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", 1, "unknown", "unknown", 0,
     0},
    /* The longest canonical TCP6 line: 104 bytes. */
    {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
     0, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535},
};

static void test_v1_good(void) {
  for (size_t i = 0; i < sizeof v1_good / sizeof v1_good[0]; i++) {
    const char *in = v1_good[i].in;
    size_t len = strlen(in);
    sl_proxy_header h;
    char s[SL_ADDR_STRLEN], d[SL_ADDR_STRLEN];
    memset(&h, 0x55, sizeof h);
    long rc = parse_str(in, &h);
    CHECK_INT(rc, (long long)len);
    if (rc != (long)len) {
      fprintf(stderr, "  case %s", in);
      continue;
    }
    CHECK_INT(h.version, 1);
    CHECK_INT(h.local, v1_good[i].local);
    addr_text(&h.src, s);
    addr_text(&h.dst, d);
    CHECK_STR(s, v1_good[i].src);
    CHECK_STR(d, v1_good[i].dst);
    CHECK_INT(h.src.port, v1_good[i].sport);
    CHECK_INT(h.dst.port, v1_good[i].dport);
    check_prefixes((const uint8_t *)in, len, in);
    /* SMTP after the header is not part of it. */
    char more[256];
    snprintf(more, sizeof more, "%sEHLO x\r\n", in);
    CHECK_INT(parse_str(more, &h), (long long)len);
  }
}

static void test_v1_length_limit(void) {
  char line[200];
  sl_proxy_header h;
  /* "PROXY UNKNOWN " is 14 bytes: pad to exactly 107 with the CRLF. */
  memcpy(line, "PROXY UNKNOWN ", 14);
  memset(line + 14, 'a', 91);
  memcpy(line + 105, "\r\n", 3);
  CHECK_INT(parse_str(line, &h), 107);
  check_prefixes((const uint8_t *)line, 107, "107-byte UNKNOWN");
  /* One more byte and the CRLF ends past the limit. */
  memset(line + 14, 'a', 92);
  memcpy(line + 106, "\r\n", 3);
  CHECK_INT(parse_str(line, &h), SL_ERR_MALFORMED);
  /* 106 bytes of a valid prefix wait; at 107 without CRLF it is over. */
  CHECK_INT(parse_guarded(line, 106, &h), SL_ERR_INCOMPLETE);
  CHECK_INT(parse_guarded(line, 107, &h), SL_ERR_MALFORMED);
  CHECK_INT(parse_guarded(line, 108, &h), SL_ERR_MALFORMED);
  /* The CR as byte 107 with the LF beyond the limit. */
  memset(line + 14, 'a', 92);
  line[106] = '\r';
  CHECK_INT(parse_guarded(line, 107, &h), SL_ERR_MALFORMED);
}

static const char *const v1_bad[] = {
    /* Wrong words and case. */
    "PROXZ",
    "X",
    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY tcp4 ",
    "PROXY TCP5 ",
    "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4\r\n",
    "PROXY\r\n",
    "PROXY UNKNOWNX\r\n",
    "PROXY UNKNOWN\n",
    "PROXY UNKNOWN\rX",
    "PROXY UNKNOWN \x01\r\n",
    "PROXY UNKNOWN x\ny\r\n",
    "PROXY UNKNOWN x\rn",
    "PROXY UNKNOWN\r\r\n",
    /* Single spaces only, no tabs, no trailing or leading blanks. */
    "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
    " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    /* Missing fields. */
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
    "PROXY TCP4 1.2.3.4\r\n",
    "PROXY TCP4 \r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    /* A lone CR or LF never ends the line. */
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r",
    "PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\n",
    /* Leading zeros, ranges and signs. */
    "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n",
    "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
    /* Families must match the protocol word. */
    "PROXY TCP4 ::1 ::1 1 2\r\n",
    "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
    "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
    "PROXY TCP6 ::1 ::2%eth0 1 2\r\n",
    "PROXY TCP6 [::1] ::2 1 2\r\n",
    /* Valid tokens, but the line passes 107 bytes (116 here). */
    ("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
     "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n"),
    /* Already-wrong prefixes fail at once, before the line ends. */
    "PROXY TCP4 256",
    "PROXY TCP4 01",
    "PROXY TCP4 1.2.3.04",
    "PROXY TCP4 1..",
    "PROXY TCP4 1.2.3.4.",
    "PROXY TCP4 1234",
    "PROXY TCP4 :",
    "PROXY TCP4 1.2.3.4 5.6.7.8 655360",
    "PROXY TCP4 1.2.3.4 5.6.7.8 00",
    "PROXY TCP4 1.2.3.4 5.6.7.8 123456",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 x",
    "PROXY TCP6 1.2",
    "PROXY TCP6 12345",
    "PROXY TCP6 :1",
    "PROXY TCP6 :::",
    "PROXY TCP6 1::2::",
    "PROXY TCP6 1:2:3:4:5:6:7:8:",
    "PROXY TCP6 1:2:3:4:5:6:7:8:9",
    "PROXY TCP6 1:2:3:4:5:6:7:1.",
    "PROXY TCP6 1:2:3:4:5:6:7::1",
    "PROXY TCP6 ::g",
    "PROXY TCP6 ::ffff:1.2.3.4.",
    "PROXY TCP6 ::ffff:01.",
    "PROXY TCP6 ::12345",
    "PROXY TCP6 1:2:3:4:5:1.2",
    "PROXY TCP6 1:2:3:4:5:6:7:abcd.",
    "PROXY TCP6 ::1.2.3.4:",
    "PROXY TCP6 ::abcd1",
};

static void test_v1_bad(void) {
  for (size_t i = 0; i < sizeof v1_bad / sizeof v1_bad[0]; i++) {
    sl_proxy_header h;
    memset(&h, 0x55, sizeof h);
    long rc = parse_str(v1_bad[i], &h);
    CHECK_INT(rc, SL_ERR_MALFORMED);
    if (rc != SL_ERR_MALFORMED)
      fprintf(stderr, "  case %zu: \"%s\"\n", i, v1_bad[i]);
    CHECK_INT(h.version, 0x55); /* untouched on failure */
  }
}

static const char *const v1_partial[] = {
    "P",
    "PROXY",
    "PROXY ",
    "PROXY T",
    "PROXY TCP",
    "PROXY U",
    "PROXY UNKNOWN",
    "PROXY UNKNOWN ",
    "PROXY UNKNOWN junk",
    "PROXY UNKNOWN\r",
    "PROXY TCP4 ",
    "PROXY TCP4 1.2",
    "PROXY TCP4 0",
    "PROXY TCP4 25",
    "PROXY TCP4 1.2.3.",
    "PROXY TCP4 1.2.3.4",
    "PROXY TCP4 1.2.3.4 5",
    "PROXY TCP4 1.2.3.4 5.6.7.8 0",
    "PROXY TCP4 1.2.3.4 5.6.7.8 6553",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
    "PROXY TCP6 :",
    "PROXY TCP6 ::",
    "PROXY TCP6 ::f",
    "PROXY TCP6 1:",
    "PROXY TCP6 1:2:3:4:5:6:7:",
    "PROXY TCP6 1:2:3:4:5:6:7:8",
    "PROXY TCP6 1:2:3:4:5:6:1.2",
    "PROXY TCP6 1:2:3:4:5:6:255",
    "PROXY TCP6 ::ffff:1.2.",
    "PROXY TCP6 1::1.2.3.4",
    "PROXY TCP6 1:2:3:4:5::1.",
    "PROXY TCP6 1:2:3:4:5:6:7::",
    "PROXY TCP6 ABCD:",
    "PROXY TCP6 :: ::1 0 6",
};

static void test_v1_partial(void) {
  for (size_t i = 0; i < sizeof v1_partial / sizeof v1_partial[0]; i++) {
    sl_proxy_header h;
    long rc = parse_str(v1_partial[i], &h);
    CHECK_INT(rc, SL_ERR_INCOMPLETE);
    if (rc != SL_ERR_INCOMPLETE)
      fprintf(stderr, "  case %zu: \"%s\"\n", i, v1_partial[i]);
  }
  sl_proxy_header h;
  CHECK_INT(sl_proxy_parse(NULL, 0, &h), SL_ERR_INCOMPLETE);
  CHECK_INT(sl_proxy_parse(NULL, 5, &h), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_proxy_parse((const uint8_t *)"P", 1, NULL),
            SL_ERR_INVALID_ARGUMENT);
}

/* Every IPv6 text form sl_addr_parse() accepts, cut anywhere inside a TCP6
   line, must wait for more: generated from random addresses in their
   canonical, full and mapped forms. */
static void test_v1_v6_prefix_sweep(void) {
  uint32_t x = 12345;
  for (int round = 0; round < 300; round++) {
    sl_addr a;
    memset(&a, 0, sizeof a);
    a.family = SL_AF_INET6;
    for (int k = 0; k < 16; k++) {
      x = x * 1103515245u + 12345u;
      /* Many zero bytes so that "::" runs of every length appear. */
      a.bytes[k] = (x >> 16) % 3 ? 0 : (uint8_t)(x >> 8);
    }
    char text[3][64];
    if (sl_addr_format(&a, text[0], sizeof text[0]) < 0)
      continue;
    int m = 0;
    for (int g = 0; g < 8; g++)
      m += snprintf(text[1] + m, sizeof text[1] - (size_t)m, "%s%x",
                    g ? ":" : "", a.bytes[2 * g] << 8 | a.bytes[2 * g + 1]);
    snprintf(text[2], sizeof text[2], "::ffff:%u.%u.%u.%u", a.bytes[12],
             a.bytes[13], a.bytes[14], a.bytes[15]);
    for (int t = 0; t < 3; t++) {
      char line[200];
      int n = snprintf(line, sizeof line, "PROXY TCP6 %s %s 25 587\r\n",
                       text[t], text[(t + 1) % 3]);
      sl_proxy_header h;
      CHECK_INT(parse_str(line, &h), n);
      check_prefixes((const uint8_t *)line, (size_t)n, line);
    }
  }
}

/* An exhaustive oracle for "valid prefix": every address text of up to 9
   characters over a small alphabet is tried with sl_addr_parse(), marking
   which short strings begin a valid address.  Each short string, cut off
   inside a TCP4 or TCP6 line, must then be INCOMPLETE exactly when the
   oracle says it can still become an address (9 characters suffice to
   complete any 4-character prefix over this alphabet, e.g. "::1." ->
   "::1.0.0.0"). */
#define OR_ALPHA "01f:."
#define OR_A 5
#define OR_LONG 9
#define OR_SHORT 4
static uint8_t or_ok4[OR_SHORT + 1][625], or_ok6[OR_SHORT + 1][625];

static void test_v1_prefix_oracle(void) {
  char s[OR_LONG + 1];
  for (int len = 1; len <= OR_LONG; len++) {
    size_t total = 1;
    for (int i = 0; i < len; i++)
      total *= OR_A;
    for (size_t x = 0; x < total; x++) {
      size_t y = x;
      for (int i = len - 1; i >= 0; i--, y /= OR_A)
        s[i] = OR_ALPHA[y % OR_A];
      sl_addr a;
      if (sl_addr_parse(&a, s, (size_t)len) != 0)
        continue;
      size_t code = 0;
      for (int m = 0; m <= OR_SHORT && m <= len; m++) {
        (a.family == SL_AF_INET ? or_ok4 : or_ok6)[m][code] = 1;
        if (m < len)
          code = code * OR_A + (size_t)(strchr(OR_ALPHA, s[m]) - OR_ALPHA);
      }
    }
  }
  for (int m = 0; m <= OR_SHORT; m++) {
    size_t total = 1;
    for (int i = 0; i < m; i++)
      total *= OR_A;
    for (size_t x = 0; x < total; x++) {
      size_t y = x;
      for (int i = m - 1; i >= 0; i--, y /= OR_A)
        s[i] = OR_ALPHA[y % OR_A];
      for (int fam = 4; fam <= 6; fam += 2) {
        char line[64];
        sl_proxy_header h;
        snprintf(line, sizeof line, "PROXY TCP%d %.*s", fam, m, s);
        long want = (fam == 4 ? or_ok4 : or_ok6)[m][x] ? SL_ERR_INCOMPLETE
                                                       : SL_ERR_MALFORMED;
        long rc = parse_str(line, &h);
        CHECK_INT(rc, want);
        if (rc != want)
          fprintf(stderr, "  case \"%s\"\n", line);
      }
    }
  }
}

/* ---- v2 ---------------------------------------------------------------- */

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Builds a v2 header with cmd/fam, an address block and raw TLV bytes. */
static size_t v2(uint8_t *out, uint8_t cmd, uint8_t fam, const uint8_t *body,
                 size_t blen) {
  memcpy(out, sig, 12);
  out[12] = cmd;
  out[13] = fam;
  out[14] = (uint8_t)(blen >> 8);
  out[15] = (uint8_t)blen;
  if (blen)
    memcpy(out + 16, body, blen);
  return 16 + blen;
}

static void test_v2_good(void) {
  uint8_t buf[512], body[300];
  sl_proxy_header h;
  char s[SL_ADDR_STRLEN], d[SL_ADDR_STRLEN];

  /* TCP4, no TLVs. */
  static const uint8_t b4[12] = {192, 0, 2,    1,    198,  51,
                                 100, 7, 0xdc, 0x04, 0x00, 0x19};
  size_t n = v2(buf, 0x21, 0x11, b4, sizeof b4);
  CHECK_INT(parse_guarded(buf, n, &h), 28);
  CHECK_INT(h.version, 2);
  CHECK_INT(h.local, 0);
  addr_text(&h.src, s);
  addr_text(&h.dst, d);
  CHECK_STR(s, "192.0.2.1");
  CHECK_STR(d, "198.51.100.7");
  CHECK_INT(h.src.port, 56324);
  CHECK_INT(h.dst.port, 25);
  check_prefixes(buf, n, "v2 tcp4");
  memcpy(buf + n, "EHLO", 4);
  CHECK_INT(parse_guarded(buf, n + 4, &h), 28);

  /* TCP4 with TLVs: AUTHORITY, a zero-length NOOP, an unknown type. */
  memcpy(body, b4, 12);
  static const uint8_t tlvs[] = {0x02, 0x00, 0x0b, 'e',  'x',  'a', 'm',  'p',
                                 'l',  'e',  '.',  'c',  'o',  'm', 0x04, 0x00,
                                 0x00, 0xee, 0x00, 0x02, 0xab, 0xcd};
  memcpy(body + 12, tlvs, sizeof tlvs);
  n = v2(buf, 0x21, 0x11, body, 12 + sizeof tlvs);
  CHECK_INT(parse_guarded(buf, n, &h), (long long)n);
  CHECK_INT(h.src.port, 56324);
  check_prefixes(buf, n, "v2 tcp4 tlvs");

  /* TCP6. */
  uint8_t b6[36];
  for (int k = 0; k < 32; k++)
    b6[k] = (uint8_t)(k < 16 ? (k == 0   ? 0x20
                                : k == 1 ? 0x01
                                         : 0)
                             : (k == 16   ? 0xfe
                                : k == 17 ? 0x80
                                          : k & 1));
  b6[32] = 0xff;
  b6[33] = 0xff;
  b6[34] = 0x00;
  b6[35] = 0x00;
  n = v2(buf, 0x21, 0x21, b6, sizeof b6);
  CHECK_INT(parse_guarded(buf, n, &h), 52);
  CHECK_INT(h.src.family, SL_AF_INET6);
  CHECK_INT(h.dst.family, SL_AF_INET6);
  CHECK_MEM(h.src.bytes, 16, b6, 16);
  CHECK_MEM(h.dst.bytes, 16, b6 + 16, 16);
  CHECK_INT(h.src.port, 65535);
  CHECK_INT(h.dst.port, 0);
  check_prefixes(buf, n, "v2 tcp6");

  /* LOCAL: the family and the block are ignored, whatever they hold. */
  n = v2(buf, 0x20, 0x00, NULL, 0);
  CHECK_INT(parse_guarded(buf, n, &h), 16);
  CHECK_INT(h.local, 1);
  CHECK_INT(h.src.family, SL_AF_UNSPEC);
  check_prefixes(buf, n, "v2 local");
  n = v2(buf, 0x20, 0x31, (const uint8_t *)"junk!", 5);
  CHECK_INT(parse_guarded(buf, n, &h), 21);
  CHECK_INT(h.local, 1);
  n = v2(buf, 0x20, 0x11, b4, 3);
  CHECK_INT(parse_guarded(buf, n, &h), 19);
  CHECK_INT(h.local, 1);

  /* PROXY over UNSPEC, with a TLV: the real endpoints stand. */
  n = v2(buf, 0x21, 0x00, (const uint8_t *)"\x04\x00\x01z", 4);
  CHECK_INT(parse_guarded(buf, n, &h), 20);
  CHECK_INT(h.local, 1);
  CHECK_INT(h.src.family, SL_AF_UNSPEC);
  check_prefixes(buf, n, "v2 unspec");
}

static void test_v2_bad(void) {
  uint8_t buf[512];
  sl_proxy_header h;
  static const uint8_t b4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

  /* A wrong signature byte is fatal as soon as it arrives. */
  for (size_t k = 0; k < 12; k++) {
    size_t n = v2(buf, 0x21, 0x11, b4, 12);
    buf[k] ^= 0x20;
    long rc = parse_guarded(buf, k + 1, &h);
    if (k == 0)
      CHECK_INT(rc, SL_ERR_MALFORMED); /* '-' is neither 'P' nor CR */
    else
      CHECK_INT(rc, SL_ERR_MALFORMED);
    CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  }
  /* Versions other than 2 and commands other than LOCAL/PROXY. */
  static const uint8_t bad_vc[] = {0x00, 0x10, 0x11, 0x22, 0x2f,
                                   0x31, 0x12, 0xff, 0x01, 0x02};
  for (size_t k = 0; k < sizeof bad_vc; k++) {
    size_t n = v2(buf, bad_vc[k], 0x11, b4, 12);
    CHECK_INT(parse_guarded(buf, 13, &h), SL_ERR_MALFORMED);
    CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  }
  /* Families and transports a PROXY command may not use. */
  static const uint8_t bad_fam[] = {0x01, 0x02, 0x10, 0x12, 0x20, 0x22,
                                    0x31, 0x32, 0x41, 0xff, 0x13};
  for (size_t k = 0; k < sizeof bad_fam; k++) {
    uint8_t body[216] = {0};
    size_t n = v2(buf, 0x21, bad_fam[k], body, sizeof body);
    CHECK_INT(parse_guarded(buf, 14, &h), SL_ERR_MALFORMED);
    CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  }
  /* Announced lengths below the address block. */
  for (size_t l = 0; l < 12; l++) {
    size_t n = v2(buf, 0x21, 0x11, b4, l);
    CHECK_INT(parse_guarded(buf, 16, &h), SL_ERR_MALFORMED);
    CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  }
  uint8_t b6[36] = {0};
  for (size_t l = 0; l < 36; l += 5) {
    v2(buf, 0x21, 0x21, b6, l);
    CHECK_INT(parse_guarded(buf, 16, &h), SL_ERR_MALFORMED);
  }
  /* TLVs that do not tile the block: leftovers of 1 or 2 bytes, a length
     running past the end (caught before the block completes). */
  uint8_t body[64];
  memcpy(body, b4, 12);
  memcpy(body + 12, "\x04", 1);
  size_t n = v2(buf, 0x21, 0x11, body, 13);
  CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  memcpy(body + 12, "\x04\x00", 2);
  n = v2(buf, 0x21, 0x11, body, 14);
  CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  memcpy(body + 12,
         "\x02\x00\x05"
         "abcd",
         7);
  n = v2(buf, 0x21, 0x11, body, 19);
  CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  memcpy(body + 12, "\x02\xff\xff", 3);
  n = v2(buf, 0x21, 0x11, body, 40); /* 25 more bytes announced */
  CHECK_INT(parse_guarded(buf, 31, &h), SL_ERR_MALFORMED);
  CHECK_INT(parse_guarded(buf, 30, &h), SL_ERR_INCOMPLETE);
  memcpy(body + 12, "\x04\x00\x00\x02\x00\x03xy", 8);
  n = v2(buf, 0x21, 0x11, body, 20); /* second TLV one byte too long */
  CHECK_INT(parse_guarded(buf, n, &h), SL_ERR_MALFORMED);
  /* The same garbage after a v1 start or a v2 start. */
  CHECK_INT(parse_guarded("\r\n\r\n\0\r\nQUIX", 12, &h), SL_ERR_MALFORMED);
  CHECK_INT(parse_guarded("\r\r", 2, &h), SL_ERR_MALFORMED);
  CHECK_INT(parse_guarded("\r\n\r\n\0", 5, &h), SL_ERR_INCOMPLETE);
}

/* A 65535-byte block: the largest header there is, parsed whole, and every
   interesting cut of it still waiting for more. */
static void test_v2_huge(void) {
  static uint8_t buf[SL_PROXY_V2_MAX + 16];
  static uint8_t body[65535];
  sl_proxy_header h;
  static const uint8_t b4[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2};
  memcpy(body, b4, 12);
  size_t tl = sizeof body - 12 - 3;
  body[12] = 0xe0;
  body[13] = (uint8_t)(tl >> 8);
  body[14] = (uint8_t)tl;
  memset(body + 15, 0xa5, tl);
  size_t n = v2(buf, 0x21, 0x11, body, sizeof body);
  CHECK_INT(n, SL_PROXY_V2_MAX);
  CHECK_INT(parse_guarded(buf, n, &h), SL_PROXY_V2_MAX);
  CHECK_INT(h.dst.port, 2);
  static const size_t cuts[] = {16, 27, 28, 29, 30, 31, 1000, 65550};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++)
    CHECK_INT(parse_guarded(buf, cuts[k], &h), SL_ERR_INCOMPLETE);
  /* A huge announced length with nothing behind it just waits... */
  n = v2(buf, 0x21, 0x00, NULL, 0);
  buf[14] = buf[15] = 0xff;
  CHECK_INT(parse_guarded(buf, 16, &h), SL_ERR_INCOMPLETE);
  /* ...until the garbage that follows fails to be TLVs. */
  buf[16] = 0x01;
  buf[17] = 0xff;
  buf[18] = 0xff;
  CHECK_INT(parse_guarded(buf, 19, &h), SL_ERR_MALFORMED);
  /* Every possible length on a TCP4 header built from zeros (zero-length
     TLVs of type 0) parses or waits, never more. */
  memset(body, 0, sizeof body);
  for (size_t l = 12; l < 12 + 64; l++) {
    n = v2(buf, 0x21, 0x11, body, l);
    long rc = parse_guarded(buf, n, &h);
    if ((l - 12) % 3 == 0)
      CHECK_INT(rc, (long long)n);
    else
      CHECK_INT(rc, SL_ERR_MALFORMED);
  }
}

/* ---- writers and round trips -------------------------------------------- */

static void roundtrip(const char *stext, const char *dtext, uint16_t sp,
                      uint16_t dp) {
  sl_addr s, d;
  memset(&s, 0, sizeof s);
  memset(&d, 0, sizeof d);
  if (stext) {
    CHECK_INT(sl_addr_parse(&s, stext, strlen(stext)), 0);
    CHECK_INT(sl_addr_parse(&d, dtext, strlen(dtext)), 0);
  }
  s.port = sp;
  d.port = dp;
  for (int ver = 1; ver <= 2; ver++) {
    uint8_t out[SL_PROXY_V1_MAX + 64];
    long n = ver == 1 ? sl_proxy_write_v1(out, sizeof out, &s, &d)
                      : sl_proxy_write_v2(out, sizeof out, &s, &d);
    CHECK(n > 0);
    if (n <= 0)
      continue;
    if (ver == 1)
      CHECK(n <= SL_PROXY_V1_MAX);
    sl_proxy_header h;
    CHECK_INT(parse_guarded(out, (size_t)n, &h), n);
    CHECK_INT(h.version, ver);
    if (!stext) {
      CHECK_INT(h.local, 1);
      CHECK_INT(h.src.family, SL_AF_UNSPEC);
    } else {
      CHECK_INT(h.local, 0);
      CHECK(sl_addr_equal_ip(&h.src, &s));
      CHECK(sl_addr_equal_ip(&h.dst, &d));
      CHECK_INT(h.src.port, sp);
      CHECK_INT(h.dst.port, dp);
    }
    check_prefixes(out, (size_t)n, "round trip");
    /* Every buffer one byte too short is refused and left alone. */
    for (size_t len = 0; len < (size_t)n; len++) {
      uint8_t small[SL_PROXY_V1_MAX + 64];
      memset(small, 0xee, sizeof small);
      long r = ver == 1 ? sl_proxy_write_v1(small, len, &s, &d)
                        : sl_proxy_write_v2(small, len, &s, &d);
      CHECK_INT(r, SL_ERR_NOBUF);
      CHECK_INT(small[0], 0xee);
    }
  }
}

static void test_roundtrip(void) {
  roundtrip("192.0.2.1", "198.51.100.7", 56324, 25);
  roundtrip("0.0.0.0", "255.255.255.255", 0, 65535);
  roundtrip("2001:db8::1", "fe80::2", 1, 2);
  roundtrip("::", "::1", 0, 0);
  roundtrip("::ffff:1.2.3.4", "::ffff:255.255.255.255", 65535, 65535);
  roundtrip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "1:2:3:4:5:6:7:8", 12345,
            54321);
  roundtrip(NULL, NULL, 0, 0);

  uint8_t out[128];
  sl_addr a, b;
  CHECK_INT(sl_addr_parse(&a, "1.2.3.4", 7), 0);
  CHECK_INT(sl_addr_parse(&b, "::1", 3), 0);
  CHECK_INT(sl_proxy_write_v1(out, sizeof out, &a, &b),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_proxy_write_v2(out, sizeof out, &a, &b),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_proxy_write_v1(out, sizeof out, NULL, &b),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_proxy_write_v2(NULL, 100, &a, &a), SL_ERR_INVALID_ARGUMENT);
  a.family = b.family = 9;
  CHECK_INT(sl_proxy_write_v1(out, sizeof out, &a, &b),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_proxy_write_v2(out, sizeof out, &a, &b),
            SL_ERR_INVALID_ARGUMENT);
  /* Exact bytes of the v2 LOCAL and TCP4 forms. */
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  CHECK_INT(sl_proxy_write_v2(out, sizeof out, &a, &b), 16);
  CHECK_MEM(out, 16, "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16);
  CHECK_INT(sl_addr_parse(&a, "1.2.3.4", 7), 0);
  CHECK_INT(sl_addr_parse(&b, "5.6.7.8", 7), 0);
  a.port = 0x1234;
  b.port = 25;
  CHECK_INT(sl_proxy_write_v2(out, sizeof out, &a, &b), 28);
  CHECK_MEM(out + 12, 16,
            "\x21\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x12\x34\x00\x19",
            16);
  CHECK_INT(sl_proxy_write_v1(out, sizeof out, &a, &b), 36);
  CHECK_MEM(out, 36, "PROXY TCP4 1.2.3.4 5.6.7.8 4660 25\r\n", 36);
}

/* Random mutations of valid headers: the verdict over growing prefixes of
   one buffer is INCOMPLETE*, then one fixed outcome for good, and a
   success never claims more bytes than it was given. */
static void test_mutation_monotonic(void) {
  static const char *const seeds[] = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 25\r\nEHLO",
      "PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\n",
      "PROXY UNKNOWN x\r\n",
  };
  uint8_t v2buf[64];
  static const uint8_t b4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
  size_t v2len = v2(v2buf, 0x21, 0x11, b4, 12);
  uint32_t x = 99;
  for (int round = 0; round < 3000; round++) {
    uint8_t buf[128];
    size_t len;
    int which = round % 4;
    if (which < 3) {
      len = strlen(seeds[which]);
      memcpy(buf, seeds[which], len);
    } else {
      len = v2len;
      memcpy(buf, v2buf, len);
    }
    static const uint8_t alphabet[] = " \r\n.:0123456789aAfF\x00\xff\x11\x21";
    for (int m = 0; m < 1 + round % 3; m++) {
      x = x * 1664525u + 1013904223u;
      buf[(x >> 8) % len] = alphabet[(x >> 20) % (sizeof alphabet - 1)];
    }
    long final = 0;
    int settled = 0;
    for (size_t n = 0; n <= len; n++) {
      sl_proxy_header h;
      long rc = parse_guarded(buf, n, &h);
      CHECK(rc == SL_ERR_INCOMPLETE || rc == SL_ERR_MALFORMED ||
            (rc > 0 && (size_t)rc <= n));
      if (settled) {
        CHECK_INT(rc, final);
      } else if (rc != SL_ERR_INCOMPLETE) {
        settled = 1;
        final = rc;
      }
    }
  }
}

int main(void) {
  guard_end = sl_guard_area(SL_PROXY_V2_MAX + 64);
  SL_RUN(test_v1_good);
  SL_RUN(test_v1_length_limit);
  SL_RUN(test_v1_bad);
  SL_RUN(test_v1_partial);
  SL_RUN(test_v1_v6_prefix_sweep);
  SL_RUN(test_v1_prefix_oracle);
  SL_RUN(test_v2_good);
  SL_RUN(test_v2_bad);
  SL_RUN(test_v2_huge);
  SL_RUN(test_roundtrip);
  SL_RUN(test_mutation_monotonic);
  return sl_test_summary();
}
