/* sl_xclient.c: XCLIENT and XFORWARD lines; see sl_xclient.h. */
#include "sl_xclient.h"

#include <string.h>

#include "sl_caps.h"
#include "sl_reply.h"

/* Longest xtext of the name or HELO (see SL_XCLIENT_LINE_MAX). */
#define VALUE_MAX 160

size_t sl_xtext(uint8_t *out, size_t max, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c > 0x20 && c < 0x7f && c != '+' && c != '=') {
      if (o + 1 > max)
        return 0;
      out[o++] = c;
    } else {
      if (o + 3 > max)
        return 0;
      out[o++] = '+';
      out[o++] = (uint8_t)hex[c >> 4];
      out[o++] = (uint8_t)hex[c & 15];
    }
  }
  return o;
}

static size_t put_str(uint8_t *out, const char *s) {
  size_t n = strlen(s);
  memcpy(out, s, n);
  return n;
}

/* The address as XCLIENT and XFORWARD write it ("IPV6:" before a v6 one). */
static size_t put_addr(uint8_t *out, const sl_addr *a) {
  size_t o = 0;
  char ip[SL_ADDR_STRLEN];
  if (a->family == SL_AF_INET6)
    o += put_str(out, "IPV6:");
  int n = sl_addr_format(a, ip, sizeof(ip));
  if (n > 0) {
    memcpy(out + o, ip, (size_t)n);
    o += (size_t)n;
  }
  return o;
}

/* The xtext'd name, or [UNAVAILABLE] when unknown or too long. */
static size_t put_name(uint8_t *out, const char *name) {
  size_t n = 0;
  if (name)
    n = sl_xtext(out, VALUE_MAX, (const uint8_t *)name, strlen(name));
  return n ? n : put_str(out, "[UNAVAILABLE]");
}

size_t sl_xclient_line(uint8_t *line, const sl_ident *id) {
  size_t o = put_str(line, "XCLIENT ADDR=");
  const sl_addr *a = id->addr;
  if (a->family == SL_AF_UNSPEC) {
    o += put_str(line + o, "[UNAVAILABLE]");
  } else {
    o += put_addr(line + o, a);
    o += put_str(line + o, " PORT=");
    o += sl_put_decimal(line + o, a->port);
  }
  o += put_str(line + o, " NAME=");
  o += put_name(line + o, id->name);
  if (id->helo && id->helo_len) {
    /* a HELO name too long for xtext is left out, PROTO is not */
    size_t k = put_str(line + o, " HELO=");
    size_t m = sl_xtext(line + o + k, VALUE_MAX, id->helo, id->helo_len);
    if (m)
      o += k + m;
    o += put_str(line + o, id->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP");
  }
  return o;
}

size_t sl_xforward_line(uint8_t *line, const sl_ident *id, uint32_t up_caps) {
  size_t o = put_str(line, "XFORWARD NAME=");
  o += put_name(line + o, id->name);
  o += put_str(line + o, " ADDR=");
  const sl_addr *a = id->addr;
  if (a->family == SL_AF_UNSPEC) {
    o += put_str(line + o, "[UNAVAILABLE]");
  } else {
    o += put_addr(line + o, a);
    if (up_caps & SL_CAP_XFWD_PORT) {
      o += put_str(line + o, " PORT=");
      o += sl_put_decimal(line + o, a->port);
    }
  }
  o += put_str(line + o, id->helo_seen
                             ? (id->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP")
                             : " PROTO=[UNAVAILABLE]");
  o += put_str(line + o, " HELO=");
  size_t n = id->helo && id->helo_len
                 ? sl_xtext(line + o, VALUE_MAX, id->helo, id->helo_len)
                 : 0;
  o += n ? n : put_str(line + o, "[UNAVAILABLE]");
  if (up_caps & SL_CAP_XFWD_SOURCE)
    o += put_str(line + o, " SOURCE=REMOTE");
  return o;
}
