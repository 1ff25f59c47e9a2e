/* sl_utf8.c: RFC 3629 validation; see sluice/utf8.h. */
#include "sluice/utf8.h"

size_t sl_utf8_check(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    /* RFC 3629 section 4: the lead byte fixes the length and the range of
       the second byte; the others are plain 80..BF.  Narrowing the second
       byte is what refuses overlongs, surrogates and > U+10FFFF. */
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0)
        lo = 0xa0; /* below: overlong (< U+0800) */
      else if (c == 0xed)
        hi = 0x9f; /* above: surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0)
        lo = 0x90; /* below: overlong (< U+10000) */
      else if (c == 0xf4)
        hi = 0x8f; /* above: > U+10FFFF */
    } else {
      return i; /* 80..BF stray continuation, C0/C1 overlong, F5..FF */
    }
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
      return i;
    for (size_t k = 2; k < len; k++)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf)
        return i;
    i += len;
  }
  return n;
}

int sl_utf8_is_ascii(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] >= 0x80)
      return 0;
  return 1;
}
