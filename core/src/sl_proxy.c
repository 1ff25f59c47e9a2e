/*
 * sl_proxy.c: PROXY protocol v1 and v2 (haproxy proxy-protocol.txt).
 *
 * The parser decides on every byte whether what it has seen can still
 * become a valid header: SL_ERR_INCOMPLETE promises that more bytes could
 * complete it, so a balancer that sends garbage is cut off at once instead
 * of being waited for until the header deadline.
 */
#include <string.h>

#include "sl_bytes.h"
#include "sluice/errors.h"
#include "sluice/proxy.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V2_LOCAL 0x20
#define V2_PROXY 0x21
#define V2_UNSPEC 0x00
#define V2_TCP4 0x11
#define V2_TCP6 0x21

/* ---- v1 ---------------------------------------------------------------- */

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Whether s[0..n) can be extended to a valid dotted quad.  A part that is
   wrong now (leading zero, > 255, four digits) stays wrong whatever follows,
   so padding the missing parts with zeros is a complete test. */
static int v4_prefix_ok(const uint8_t *s, size_t n) {
  char tmp[SL_ADDR_STRLEN + 8];
  int dots = 0;
  sl_addr a;
  if (n > 15)
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '.')
      dots++;
    else if (!is_digit(s[i]))
      return 0;
  }
  if (dots > 3)
    return 0;
  memcpy(tmp, s, n);
  size_t m = n;
  if (n == 0 || s[n - 1] == '.')
    tmp[m++] = '0';
  for (; dots < 3; dots++) {
    memcpy(tmp + m, ".0", 2);
    m += 2;
  }
  return sl_addr_parse(&a, tmp, m) == 0;
}

/* Whether s[0..n) can be extended to valid IPv6 text as sl_addr_parse()
   reads it: the groups seen so far fit, "::" appears at most once, and the
   unfinished last token can still become a group or a trailing dotted quad
   with room left for it. */
static int v6_prefix_ok(const uint8_t *s, size_t n) {
  int groups = 0, gap = 0;
  size_t i = 0;
  if (n >= SL_ADDR_STRLEN)
    return 0;
  if (n >= 1 && s[0] == ':') {
    if (n == 1)
      return 1;
    if (s[1] != ':')
      return 0;
    gap = 1;
    i = 2;
  }
  for (;;) {
    size_t j = i;
    while (j < n && s[j] != ':')
      j++;
    if (j == n)
      break; /* s[i..n) is the unfinished last token */
    /* A finished group, then one or two colons. */
    if (j == i || j - i > 4 || groups >= 8)
      return 0;
    for (size_t k = i; k < j; k++)
      if (!is_hex(s[k]))
        return 0;
    groups++;
    if (j + 1 < n && s[j + 1] == ':') {
      if (gap)
        return 0;
      gap = 1;
      i = j + 2;
    } else {
      i = j + 1;
    }
  }
  /* The most groups a complete address can have besides the gap's one. */
  int room = gap ? 7 : 8;
  size_t t = n - i;
  int dotted = memchr(s + i, '.', t) != NULL;
  if (!dotted) {
    int all_hex = 1, all_dec = 1;
    for (size_t k = i; k < n; k++) {
      all_hex &= is_hex(s[k]);
      all_dec &= is_digit(s[k]);
    }
    if (!all_hex || t > 4)
      return 0;
    /* Right after "::" the address may already be complete. */
    if (t == 0 && gap && i >= 2 && s[i - 1] == ':' && s[i - 2] == ':')
      return 1;
    /* As a group (an empty token becomes one too)... */
    if (groups + 1 <= room)
      return 1;
    /* ...or as the start of a dotted quad. */
    return all_dec && t <= 3 && groups + 2 <= room && (gap || groups == 6) &&
           v4_prefix_ok(s + i, t);
  }
  return groups + 2 <= room && (gap || groups == 6) && v4_prefix_ok(s + i, t);
}

typedef struct v1_scan {
  const uint8_t *buf;
  size_t lim; /* min(len, SL_PROXY_V1_MAX) */
  int capped; /* lim is the line limit, not the end of the input */
} v1_scan;

/* Running out of bytes: a short read if the input ended, an overlong line
   if the 107-byte limit did. */
static int v1_end(const v1_scan *sc) {
  return sc->capped ? SL_ERR_MALFORMED : SL_ERR_INCOMPLETE;
}

/* Matches lit at *i; 1 on a full match, else an error. */
static int v1_lit(const v1_scan *sc, size_t *i, const char *lit) {
  size_t n = strlen(lit);
  for (size_t k = 0; k < n; k++) {
    if (*i + k >= sc->lim)
      return v1_end(sc);
    if (sc->buf[*i + k] != (uint8_t)lit[k])
      return SL_ERR_MALFORMED;
  }
  *i += n;
  return 1;
}

/* The token at *i up to (not including) the byte end; a space, CR or LF
   inside it is an error (single spaces, and no lone CR or LF ends a line).
   On success tok and tlen describe it and *i points past end.  partial()
   judges a token cut short by the end of the input. */
static int v1_token(const v1_scan *sc, size_t *i, uint8_t end,
                    const uint8_t **tok, size_t *tlen,
                    int (*partial)(const uint8_t *, size_t)) {
  size_t j = *i;
  while (j < sc->lim && sc->buf[j] != end) {
    uint8_t c = sc->buf[j];
    if (c == ' ' || c == '\r' || c == '\n')
      return SL_ERR_MALFORMED;
    j++;
  }
  if (j == sc->lim) {
    if (sc->capped)
      return SL_ERR_MALFORMED;
    return partial(sc->buf + *i, j - *i) ? SL_ERR_INCOMPLETE : SL_ERR_MALFORMED;
  }
  *tok = sc->buf + *i;
  *tlen = j - *i;
  *i = j + 1;
  return 1;
}

static int port_prefix_ok(const uint8_t *s, size_t n) {
  unsigned v = 0;
  if (n > 5 || (n > 1 && s[0] == '0'))
    return 0;
  for (size_t k = 0; k < n; k++) {
    if (!is_digit(s[k]))
      return 0;
    v = v * 10 + (unsigned)(s[k] - '0');
  }
  return v <= 65535;
}

static int parse_port(const uint8_t *s, size_t n, uint16_t *port) {
  unsigned v = 0;
  if (n == 0 || !port_prefix_ok(s, n))
    return -1;
  for (size_t k = 0; k < n; k++)
    v = v * 10 + (unsigned)(s[k] - '0');
  *port = (uint16_t)v;
  return 0;
}

static int v1_addr(const v1_scan *sc, size_t *i, int family, sl_addr *a) {
  const uint8_t *tok = NULL;
  size_t tlen = 0;
  int rc = v1_token(sc, i, ' ', &tok, &tlen,
                    family == SL_AF_INET ? v4_prefix_ok : v6_prefix_ok);
  if (rc != 1)
    return rc;
  if (sl_addr_parse(a, (const char *)tok, tlen) != 0 || a->family != family)
    return SL_ERR_MALFORMED;
  return 1;
}

/* "PROXY UNKNOWN": the rest of the line, if any, is ignored but must still
   be printable and end in CRLF within the limit. */
static long v1_unknown(const v1_scan *sc, size_t i) {
  if (i >= sc->lim)
    return v1_end(sc);
  if (sc->buf[i] == ' ') {
    i++;
    while (i < sc->lim && sc->buf[i] >= 0x20 && sc->buf[i] < 0x7f)
      i++;
    if (i >= sc->lim)
      return v1_end(sc);
  }
  size_t j = i;
  int rc = v1_lit(sc, &j, "\r\n");
  return rc == 1 ? (long)j : rc;
}

static long v1_parse(const uint8_t *buf, size_t len, sl_proxy_header *out) {
  v1_scan sc = {buf, len < SL_PROXY_V1_MAX ? len : SL_PROXY_V1_MAX,
                len >= SL_PROXY_V1_MAX};
  sl_proxy_header h;
  size_t i = 0;
  int family, rc;
  memset(&h, 0, sizeof h);
  h.version = 1;
  if ((rc = v1_lit(&sc, &i, "PROXY ")) != 1)
    return rc;
  /* The three protocol words differ in their fourth byte or earlier, so
     the first one that still matches decides. */
  static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
  int which = -1, partial = 0;
  for (int p = 0; p < 3; p++) {
    size_t j = i;
    rc = v1_lit(&sc, &j, protos[p]);
    if (rc == 1) {
      which = p;
      i = j;
      break;
    }
    if (rc == SL_ERR_INCOMPLETE)
      partial = 1;
  }
  if (which < 0)
    return partial ? SL_ERR_INCOMPLETE : SL_ERR_MALFORMED;
  if (which == 2) {
    long end = v1_unknown(&sc, i);
    if (end > 0) {
      h.local = 1;
      *out = h;
    }
    return end;
  }
  family = which == 0 ? SL_AF_INET : SL_AF_INET6;
  const uint8_t *tok = NULL;
  size_t tlen = 0;
  if ((rc = v1_addr(&sc, &i, family, &h.src)) != 1 ||
      (rc = v1_addr(&sc, &i, family, &h.dst)) != 1)
    return rc;
  if ((rc = v1_token(&sc, &i, ' ', &tok, &tlen, port_prefix_ok)) != 1)
    return rc;
  if (parse_port(tok, tlen, &h.src.port) != 0)
    return SL_ERR_MALFORMED;
  if ((rc = v1_token(&sc, &i, '\r', &tok, &tlen, port_prefix_ok)) != 1)
    return rc;
  if (parse_port(tok, tlen, &h.dst.port) != 0)
    return SL_ERR_MALFORMED;
  if ((rc = v1_lit(&sc, &i, "\n")) != 1)
    return rc;
  *out = h;
  return (long)i;
}

/* ---- v2 ---------------------------------------------------------------- */

static uint16_t be16(const uint8_t *p) {
  return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static long v2_parse(const uint8_t *buf, size_t len, sl_proxy_header *out) {
  sl_proxy_header h;
  size_t addrlen = 0;
  size_t n = len < sizeof v2_sig ? len : sizeof v2_sig;
  if (!sl_same_bytes(buf, v2_sig, n))
    return SL_ERR_MALFORMED;
  if (len < 13)
    return SL_ERR_INCOMPLETE;
  uint8_t cmd = buf[12];
  if (cmd != V2_LOCAL && cmd != V2_PROXY)
    return SL_ERR_MALFORMED;
  if (len < 14)
    return SL_ERR_INCOMPLETE;
  uint8_t fam = buf[13];
  /* LOCAL ignores the family and the address block (section 2.2), so
     only PROXY constrains them; UNIX and DGRAM make no sense for SMTP. */
  if (cmd == V2_PROXY) {
    if (fam == V2_TCP4)
      addrlen = 12;
    else if (fam == V2_TCP6)
      addrlen = 36;
    else if (fam != V2_UNSPEC)
      return SL_ERR_MALFORMED;
  }
  if (len < 16)
    return SL_ERR_INCOMPLETE;
  size_t plen = be16(buf + 14);
  if (plen < addrlen)
    return SL_ERR_MALFORMED;
  size_t end = 16 + plen;
  size_t avail = len < end ? len : end;
  if (cmd == V2_PROXY) {
    /* TLVs must tile the rest of the block exactly; a TLV running past the
       announced length is caught as soon as its header has arrived. */
    size_t off = 16 + addrlen;
    while (off < end) {
      if (end - off < 3)
        return SL_ERR_MALFORMED;
      if (off + 3 > avail)
        break;
      size_t tl = be16(buf + off + 1);
      if (tl > end - off - 3)
        return SL_ERR_MALFORMED;
      off += 3 + tl;
    }
  }
  if (len < end)
    return SL_ERR_INCOMPLETE;

  memset(&h, 0, sizeof h);
  h.version = 2;
  const uint8_t *p = buf + 16;
  if (cmd == V2_LOCAL || fam == V2_UNSPEC) {
    /* PROXY over UNSPEC: the balancer could not name the client, so the
       connection's own endpoints stand, as for LOCAL. */
    h.local = 1;
  } else if (fam == V2_TCP4) {
    h.src.family = h.dst.family = SL_AF_INET;
    memcpy(h.src.bytes, p, 4);
    memcpy(h.dst.bytes, p + 4, 4);
    h.src.port = be16(p + 8);
    h.dst.port = be16(p + 10);
  } else {
    h.src.family = h.dst.family = SL_AF_INET6;
    memcpy(h.src.bytes, p, 16);
    memcpy(h.dst.bytes, p + 16, 16);
    h.src.port = be16(p + 32);
    h.dst.port = be16(p + 34);
  }
  *out = h;
  return (long)end;
}

long sl_proxy_parse(const uint8_t *buf, size_t len, sl_proxy_header *h) {
  if (!h || (!buf && len))
    return SL_ERR_INVALID_ARGUMENT;
  if (len == 0)
    return SL_ERR_INCOMPLETE;
  if (buf[0] == 'P')
    return v1_parse(buf, len, h);
  if (buf[0] == v2_sig[0])
    return v2_parse(buf, len, h);
  return SL_ERR_MALFORMED;
}

/* ---- writers ----------------------------------------------------------- */

/* 0 if src and dst can go into one header, and their family. */
static int check_pair(const sl_addr *src, const sl_addr *dst, int *family) {
  if (!src || !dst || src->family != dst->family)
    return SL_ERR_INVALID_ARGUMENT;
  if (src->family != SL_AF_UNSPEC && src->family != SL_AF_INET &&
      src->family != SL_AF_INET6)
    return SL_ERR_INVALID_ARGUMENT;
  *family = src->family;
  return 0;
}

static size_t put_u16_dec(char *p, unsigned v) {
  char tmp[5];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t k = 0; k < n; k++)
    p[k] = tmp[n - 1 - k];
  return n;
}

long sl_proxy_write_v1(uint8_t *out, size_t len, const sl_addr *src,
                       const sl_addr *dst) {
  char tmp[SL_PROXY_V1_MAX + 1];
  size_t n = 0;
  int family, rc;
  if (!out || (rc = check_pair(src, dst, &family)) != 0)
    return SL_ERR_INVALID_ARGUMENT;
  if (family == SL_AF_UNSPEC) {
    memcpy(tmp, "PROXY UNKNOWN\r\n", 15);
    n = 15;
  } else {
    memcpy(tmp, family == SL_AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ", 11);
    n = 11;
    /* sl_addr_format() writes at most 39 bytes ("::ffff:" forms are
       shorter), so the longest line is 104 bytes and fits tmp and the
       v1 limit. */
    rc = sl_addr_format(src, tmp + n, SL_ADDR_STRLEN);
    if (rc < 0)
      return SL_ERR_INVALID_ARGUMENT;
    n += (size_t)rc;
    tmp[n++] = ' ';
    rc = sl_addr_format(dst, tmp + n, SL_ADDR_STRLEN);
    if (rc < 0)
      return SL_ERR_INVALID_ARGUMENT;
    n += (size_t)rc;
    tmp[n++] = ' ';
    n += put_u16_dec(tmp + n, src->port);
    tmp[n++] = ' ';
    n += put_u16_dec(tmp + n, dst->port);
    tmp[n++] = '\r';
    tmp[n++] = '\n';
  }
  if (n > len)
    return SL_ERR_NOBUF;
  memcpy(out, tmp, n);
  return (long)n;
}

static void put_be16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

long sl_proxy_write_v2(uint8_t *out, size_t len, const sl_addr *src,
                       const sl_addr *dst) {
  int family, rc;
  size_t alen;
  if (!out || (rc = check_pair(src, dst, &family)) != 0)
    return SL_ERR_INVALID_ARGUMENT;
  alen = family == SL_AF_INET ? 4 : family == SL_AF_INET6 ? 16 : 0;
  size_t plen = alen ? 2 * alen + 4 : 0;
  if (16 + plen > len)
    return SL_ERR_NOBUF;
  memcpy(out, v2_sig, sizeof v2_sig);
  out[12] = family == SL_AF_UNSPEC ? V2_LOCAL : V2_PROXY;
  out[13] = family == SL_AF_INET    ? V2_TCP4
            : family == SL_AF_INET6 ? V2_TCP6
                                    : V2_UNSPEC;
  put_be16(out + 14, (unsigned)plen);
  if (alen) {
    uint8_t *p = out + 16;
    memcpy(p, src->bytes, alen);
    memcpy(p + alen, dst->bytes, alen);
    put_be16(p + 2 * alen, src->port);
    put_be16(p + 2 * alen + 2, dst->port);
  }
  return (long)(16 + plen);
}
