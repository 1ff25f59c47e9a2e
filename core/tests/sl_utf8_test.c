/* sl_utf8_test.c: RFC 3629 boundaries, and every short input against an
   independent decoder. */
#include <string.h>

#include "sl_test.h"
#include "sluice/utf8.h"

/* Reference: decode by the bit patterns, then apply RFC 3629's rules to
   the code point (shortest form, no surrogates, <= U+10FFFF).  Returns the
   sequence length at p, or 0 if it is not well-formed. */
static size_t ref_seq(const uint8_t *p, size_t n) {
  uint8_t c = p[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1fu;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0fu;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t k = 1; k < len; k++) {
    if ((p[k] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[k] & 0x3fu);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return len;
}

static size_t ref_check(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t l = ref_seq(p + i, n - i);
    if (!l)
      return i;
    i += l;
  }
  return n;
}

#define OK(s)                                                                  \
  CHECK_INT(sl_utf8_check((const uint8_t *)(s), sizeof(s) - 1), sizeof(s) - 1)
#define BAD_AT(s, at)                                                          \
  CHECK_INT(sl_utf8_check((const uint8_t *)(s), sizeof(s) - 1), (at))

static void test_boundaries(void) {
  OK("");
  OK("plain ascii \x01\x7f");
  /* U+007F / U+0080 */
  OK("\x7f");
  OK("\xc2\x80");
  BAD_AT("\xc1\xbf", 0); /* U+007F overlong */
  BAD_AT("\xc0\x80", 0); /* overlong NUL */
  BAD_AT("\xc0\xaf", 0); /* overlong '/', the example */
  BAD_AT("\xc1\x80", 0); /* overlong '@' region */
  /* U+07FF / U+0800 */
  OK("\xdf\xbf");
  OK("\xe0\xa0\x80");
  BAD_AT("\xe0\x9f\xbf", 0); /* U+07FF overlong in three bytes */
  BAD_AT("\xe0\x80\x80", 0);
  BAD_AT("\xe0\x80\xaf", 0); /* overlong '/' in three bytes */
  /* surrogates D800..DFFF, and their neighbours */
  OK("\xed\x9f\xbf");                    /* U+D7FF */
  BAD_AT("\xed\xa0\x80", 0);             /* U+D800 */
  BAD_AT("\xed\xad\xbf", 0);             /* U+DB7F */
  BAD_AT("\xed\xb0\x80", 0);             /* U+DC00 */
  BAD_AT("\xed\xbf\xbf", 0);             /* U+DFFF */
  OK("\xee\x80\x80");                    /* U+E000 */
  BAD_AT("\xed\xa0\xbd\xed\xb2\xa9", 0); /* CESU-8 pair for U+1F4A9 */
  /* U+FFFF / U+10000 */
  OK("\xef\xbf\xbf");
  OK("\xf0\x90\x80\x80");
  BAD_AT("\xf0\x8f\xbf\xbf", 0); /* U+FFFF overlong in four bytes */
  BAD_AT("\xf0\x80\x80\xaf", 0); /* overlong '/' in four bytes */
  /* U+10FFFF / U+110000 */
  OK("\xf4\x8f\xbf\xbf");
  BAD_AT("\xf4\x90\x80\x80", 0);
  BAD_AT("\xf5\x80\x80\x80", 0);
  BAD_AT("\xf7\xbf\xbf\xbf", 0);         /* U+1FFFFF, the old 4-byte maximum */
  BAD_AT("\xf8\x88\x80\x80\x80", 0);     /* 5-byte form (RFC 2279) */
  BAD_AT("\xfc\x84\x80\x80\x80\x80", 0); /* 6-byte form */
  BAD_AT("\xfe", 0);
  BAD_AT("\xff", 0);
  /* stray continuation bytes */
  BAD_AT("\x80", 0);
  BAD_AT("\xbf", 0);
  BAD_AT("a\x80", 1);
  BAD_AT("\xc3\xa9\xa9", 2); /* one continuation too many */
  /* a continuation byte replaced by ASCII or a lead byte */
  BAD_AT("\xc3"
         "a",
         0);
  BAD_AT("\xe2\x82"
         "a",
         0);
  BAD_AT("\xe2\xc2\xa9", 0);
  BAD_AT("\xf0\x9f\x92\xc2", 0);
  /* truncated at the end of the input */
  BAD_AT("\xc3", 0);
  BAD_AT("x\xe2\x82", 1);
  BAD_AT("xy\xf0\x9f\x92", 2);
  BAD_AT("\xf0", 0);
  /* the offset is that of the first bad sequence */
  OK("v\xc3\xa9rit\xc3\xa9@\xe4\xbe\x8b\xe3\x81\x88.test \xf0\x9f\x92\xa9");
  BAD_AT("\xc3\xa9\xc3\xa9\xc0\xaf\xc3\xa9", 4);
}

static void test_ascii(void) {
  CHECK(sl_utf8_is_ascii((const uint8_t *)"", 0));
  CHECK(sl_utf8_is_ascii((const uint8_t *)"a\x7f", 2));
  CHECK(!sl_utf8_is_ascii((const uint8_t *)"a\x80", 2));
  CHECK(!sl_utf8_is_ascii((const uint8_t *)"\xff", 1));
}

/* Every input of one to three bytes agrees with the reference. */
static void test_exhaustive_short(void) {
  uint8_t b[3];
  size_t bad = 0;
  for (uint32_t v = 0; v < (1u << 24) && bad < 5; v++) {
    b[0] = (uint8_t)(v >> 16);
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)v;
    for (size_t n = 1; n <= 3; n++) {
      if (n < 3 && (v & ((1u << (8 * (3 - n))) - 1)))
        continue; /* each shorter input once */
      size_t got = sl_utf8_check(b, n), want = ref_check(b, n);
      if (got != want) {
        fprintf(stderr, "%02x %02x %02x len %zu: got %zu want %zu\n", b[0],
                b[1], b[2], n, got, want);
        bad++;
      }
    }
  }
  CHECK_INT(bad, 0);
}

/* Four bytes: every lead and second byte, the edges of the ranges for the
   third and fourth. */
static void test_four_bytes(void) {
  static const uint8_t edge[] = {0x00, 0x7f, 0x80, 0x81, 0x8f, 0x90,
                                 0x9f, 0xa0, 0xbf, 0xc0, 0xf4, 0xff};
  size_t bad = 0;
  uint8_t b[4];
  for (unsigned x = 0; x < 256; x++)
    for (unsigned y = 0; y < 256; y++)
      for (size_t i = 0; i < sizeof(edge); i++)
        for (size_t j = 0; j < sizeof(edge); j++) {
          b[0] = (uint8_t)x;
          b[1] = (uint8_t)y;
          b[2] = edge[i];
          b[3] = edge[j];
          if (sl_utf8_check(b, 4) != ref_check(b, 4))
            bad++;
        }
  CHECK_INT(bad, 0);
}

int main(void) {
  SL_RUN(test_boundaries);
  SL_RUN(test_ascii);
  SL_RUN(test_exhaustive_short);
  SL_RUN(test_four_bytes);
  return sl_test_summary();
}
