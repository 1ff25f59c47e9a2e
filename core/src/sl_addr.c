/*
 * sl_addr.c: address text (RFC 5952 output, strict input) and DNSBL names.
 *
 * Everything is built in a local buffer first and copied out only when it
 * fits, so a short output buffer never holds a truncated address that could
 * be mistaken for a real one.
 */
#include <string.h>

#include "sl_bytes.h"
#include "sluice/addr.h"
#include "sluice/errors.h"

static const char sl_hex_digits[] = "0123456789abcdef";

/* Writes the decimal of v (< 1000) at p; returns the digits written. */
static size_t put_dec(char *p, unsigned v) {
  size_t n = 0;
  if (v >= 100)
    p[n++] = (char)('0' + v / 100);
  if (v >= 10)
    p[n++] = (char)('0' + (v / 10) % 10);
  p[n++] = (char)('0' + v % 10);
  return n;
}

static size_t put_quad(char *p, const uint8_t *b) {
  size_t n = 0;
  for (int i = 0; i < 4; i++) {
    if (i)
      p[n++] = '.';
    n += put_dec(p + n, b[i]);
  }
  return n;
}

/* One group in lower case without leading zeros (RFC 5952 4.1, 4.3). */
static size_t put_group(char *p, unsigned g) {
  size_t n = 0;
  int started = 0;
  for (int shift = 12; shift >= 0; shift -= 4) {
    unsigned nib = (g >> shift) & 0xfu;
    if (nib || started || shift == 0) {
      p[n++] = sl_hex_digits[nib];
      started = 1;
    }
  }
  return n;
}

static size_t put_ipv6(char *p, const uint8_t *b) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  size_t n = 0;
  /* RFC 5952 5: an IPv4-mapped address keeps its dotted quad. */
  if (sl_same_bytes(b, mapped, sizeof mapped)) {
    memcpy(p, "::ffff:", 7);
    return 7 + put_quad(p + 7, b + 12);
  }
  unsigned g[8];
  for (int i = 0; i < 8; i++)
    g[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
  /* The longest run of two or more zero groups, the first on ties
     (RFC 5952 4.2.2, 4.2.3); a single zero group is never compressed. */
  int best = -1, bestlen = 1;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && g[j] == 0)
      j++;
    if (j - i > bestlen) {
      best = i;
      bestlen = j - i;
    }
    i = j;
  }
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      p[n++] = ':';
      p[n++] = ':';
      i += bestlen - 1;
      continue;
    }
    if (i > 0 && i != best + bestlen)
      p[n++] = ':';
    n += put_group(p + n, g[i]);
  }
  return n;
}

int sl_addr_format(const sl_addr *a, char *out, size_t len) {
  char tmp[SL_ADDR_STRLEN];
  size_t n;
  if (out && len > 0)
    out[0] = '\0';
  if (!a || !out)
    return SL_ERR_INVALID_ARGUMENT;
  switch (a->family) {
  case SL_AF_INET:
    n = put_quad(tmp, a->bytes);
    break;
  case SL_AF_INET6:
    n = put_ipv6(tmp, a->bytes);
    break;
  case SL_AF_UNSPEC:
    n = 7;
    memcpy(tmp, "unknown", n);
    break;
  default:
    return SL_ERR_INVALID_ARGUMENT;
  }
  if (n + 1 > len)
    return SL_ERR_NOBUF;
  memcpy(out, tmp, n);
  out[n] = '\0';
  return (int)n;
}

/* A dotted quad of exactly len bytes: four decimal parts 0..255 without
   leading zeros (so "010" can never be read as octal by anyone). */
static int parse_quad(uint8_t *b, const char *s, size_t len) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part) {
      if (i >= len || s[i] != '.')
        return -1;
      i++;
    }
    size_t start = i;
    unsigned v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
      v = v * 10 + (unsigned)(s[i] - '0');
      i++;
    }
    size_t digits = i - start;
    if (digits == 0 || v > 255 || (digits > 1 && s[start] == '0'))
      return -1;
    b[part] = (uint8_t)v;
  }
  return i == len ? 0 : -1;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int parse_ipv6(uint8_t *b, const char *s, size_t len) {
  uint16_t g[8];
  int n = 0, gap = -1; /* gap: index of the group "::" stands before */
  size_t i = 0;
  if (len >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    i = 2;
  } else if (len >= 1 && s[0] == ':') {
    return -1;
  }
  while (i < len) {
    size_t j = i;
    int dotted = 0;
    while (j < len && s[j] != ':') {
      if (s[j] == '.')
        dotted = 1;
      j++;
    }
    if (dotted) {
      /* A trailing dotted quad fills the last two groups. */
      uint8_t q[4];
      if (j != len || n > 6 || parse_quad(q, s + i, j - i) != 0)
        return -1;
      g[n++] = (uint16_t)(q[0] << 8 | q[1]);
      g[n++] = (uint16_t)(q[2] << 8 | q[3]);
      i = len;
      break;
    }
    if (j == i || j - i > 4 || n >= 8)
      return -1;
    unsigned v = 0;
    for (size_t k = i; k < j; k++) {
      int h = hexval(s[k]);
      if (h < 0)
        return -1;
      v = v << 4 | (unsigned)h;
    }
    g[n++] = (uint16_t)v;
    if (j == len) {
      i = len;
      break;
    }
    if (j + 1 < len && s[j + 1] == ':') {
      if (gap >= 0)
        return -1;
      gap = n;
      i = j + 2;
    } else {
      i = j + 1;
      if (i == len) /* a single trailing colon */
        return -1;
    }
  }
  if (gap < 0 ? n != 8 : n > 7)
    return -1;
  memset(b, 0, 16);
  int tail = gap < 0 ? 0 : n - gap;
  int head = n - tail;
  for (int k = 0; k < head; k++) {
    b[2 * k] = (uint8_t)(g[k] >> 8);
    b[2 * k + 1] = (uint8_t)g[k];
  }
  for (int k = 0; k < tail; k++) {
    int dst = 8 - tail + k;
    b[2 * dst] = (uint8_t)(g[head + k] >> 8);
    b[2 * dst + 1] = (uint8_t)g[head + k];
  }
  return 0;
}

int sl_addr_parse(sl_addr *a, const char *text, size_t len) {
  sl_addr r;
  if (!a || (!text && len))
    return SL_ERR_MALFORMED;
  memset(&r, 0, sizeof r);
  if (len == 0 || len >= SL_ADDR_STRLEN)
    return SL_ERR_MALFORMED;
  if (memchr(text, ':', len)) {
    if (parse_ipv6(r.bytes, text, len) != 0)
      return SL_ERR_MALFORMED;
    r.family = SL_AF_INET6;
  } else {
    if (parse_quad(r.bytes, text, len) != 0)
      return SL_ERR_MALFORMED;
    r.family = SL_AF_INET;
  }
  *a = r;
  return 0;
}

int sl_addr_equal_ip(const sl_addr *a, const sl_addr *b) {
  if (!a || !b || a->family != b->family)
    return 0;
  switch (a->family) {
  case SL_AF_INET:
    return sl_same_bytes(a->bytes, b->bytes, 4);
  case SL_AF_INET6:
    return sl_same_bytes(a->bytes, b->bytes, 16);
  case SL_AF_UNSPEC:
    return 1;
  default:
    return 0;
  }
}

int sl_addr_dnsbl_name(const sl_addr *a, const char *zone, char *out,
                       size_t len) {
  char tmp[64 + 1]; /* 32 nibbles each with its dot */
  size_t n = 0;
  if (out && len > 0)
    out[0] = '\0';
  if (!a || !zone || !out || zone[0] == '\0')
    return SL_ERR_INVALID_ARGUMENT;
  if (a->family == SL_AF_INET) {
    for (int i = 3; i >= 0; i--) {
      n += put_dec(tmp + n, a->bytes[i]);
      tmp[n++] = '.';
    }
  } else if (a->family == SL_AF_INET6) {
    for (int i = 15; i >= 0; i--) {
      tmp[n++] = sl_hex_digits[a->bytes[i] & 0xfu];
      tmp[n++] = '.';
      tmp[n++] = sl_hex_digits[a->bytes[i] >> 4];
      tmp[n++] = '.';
    }
  } else {
    return SL_ERR_INVALID_ARGUMENT;
  }
  size_t zl = strlen(zone);
  /* A DNS name is at most 253 characters of text; anything longer cannot
     be queried and must not reach the resolver. */
  if (zl > 253 || n + zl > 253)
    return SL_ERR_INVALID_ARGUMENT;
  if (n + zl + 1 > len)
    return SL_ERR_NOBUF;
  memcpy(out, tmp, n);
  memcpy(out + n, zone, zl);
  out[n + zl] = '\0';
  return (int)(n + zl);
}
