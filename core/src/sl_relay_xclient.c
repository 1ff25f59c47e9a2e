/*
 * sl_relay_xclient.c: the client's identity for the upstream: XCLIENT
 * (Postfix XCLIENT_README) and XFORWARD (XFORWARD_README) lines, with their
 * values in xtext (RFC 3461 4).
 */
#include <string.h>

#include "sl_caps.h"
#include "sl_cmd.h"
#include "sl_envelope.h"
#include "sl_relay_int.h"
#include "sl_reply.h"
#include "sluice/proxy.h"

/* xtext (RFC 3461 4) of p into out; returns the length or 0 if over max. */
static size_t xtext(uint8_t *out, size_t max, const uint8_t *p, size_t n) {
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

/* The EHLO/HELO argument stored in r->ehlo, or NULL. */
static const uint8_t *helo_name(const sl_relay *r, size_t *n) {
  if (!r->ehlo.len)
    return NULL;
  const uint8_t *l = r->ehlo.p + r->ehlo.off;
  sl_cmd c;
  sl_cmd_parse(l, r->ehlo.len, &c);
  *n = sl_cmd_helo_arg(l + c.arg, r->ehlo.len - c.arg, r->lim->domain_max);
  return l + c.arg;
}

/* XCLIENT ADDR PORT NAME HELO PROTO (Postfix XCLIENT_README): the upstream
   logs and judges the real client, not sluice. */
void sl__up_send_xclient(sl_relay *r) {
  uint8_t line[512];
  size_t o = sl__put_str(line, "XCLIENT ADDR=");
  const sl_addr *a = &r->info.client;
  char ip[SL_ADDR_STRLEN];
  if (a->family == SL_AF_UNSPEC) {
    o += sl__put_str(line + o, "[UNAVAILABLE]");
  } else {
    if (a->family == SL_AF_INET6)
      o += sl__put_str(line + o, "IPV6:");
    int n = sl_addr_format(a, ip, sizeof(ip));
    if (n > 0) {
      memcpy(line + o, ip, (size_t)n);
      o += (size_t)n;
    }
    o += sl__put_str(line + o, " PORT=");
    o += sl_put_decimal(line + o, a->port);
  }
  o += sl__put_str(line + o, " NAME=");
  size_t n = 0;
  if (r->info.client_name)
    n = xtext(line + o, 160, (const uint8_t *)r->info.client_name,
              strlen(r->info.client_name));
  o += n ? n : sl__put_str(line + o, "[UNAVAILABLE]");
  size_t hn;
  const uint8_t *h = helo_name(r, &hn);
  if (h && hn) {
    size_t k = sl__put_str(line + o, " HELO=");
    size_t m = xtext(line + o + k, 160, h, hn);
    if (m)
      o += k + m;
    o += sl__put_str(line + o, r->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP");
  }
  if (sl__up_room(r, o))
    sl__up_write_line(r, line, o);
  r->t_up = sl__tadd(r->now, r->lim->upstream_command_timeout);
  r->up = UP_XCLIENT;
}

/* XFORWARD NAME ADDR [PORT] PROTO HELO [SOURCE] (Postfix XFORWARD_README)
   into line; returns its length.  The 160-byte caps on the xtext'd name and
   HELO keep it under the 512-byte command line, so one command suffices. */
size_t sl__xforward_line(const sl_relay *r, uint8_t *line) {
  size_t o = sl__put_str(line, "XFORWARD NAME=");
  size_t n = 0;
  if (r->info.client_name)
    n = xtext(line + o, 160, (const uint8_t *)r->info.client_name,
              strlen(r->info.client_name));
  o += n ? n : sl__put_str(line + o, "[UNAVAILABLE]");
  o += sl__put_str(line + o, " ADDR=");
  const sl_addr *a = &r->info.client;
  if (a->family == SL_AF_UNSPEC) {
    o += sl__put_str(line + o, "[UNAVAILABLE]");
  } else {
    char ip[SL_ADDR_STRLEN];
    if (a->family == SL_AF_INET6)
      o += sl__put_str(line + o, "IPV6:");
    int k = sl_addr_format(a, ip, sizeof(ip));
    if (k > 0) {
      memcpy(line + o, ip, (size_t)k);
      o += (size_t)k;
    }
    if (r->up_caps & SL_CAP_XFWD_PORT) {
      o += sl__put_str(line + o, " PORT=");
      o += sl_put_decimal(line + o, a->port);
    }
  }
  size_t hn = 0;
  const uint8_t *h = helo_name(r, &hn);
  o += sl__put_str(line + o, r->helo
                                 ? (r->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP")
                                 : " PROTO=[UNAVAILABLE]");
  o += sl__put_str(line + o, " HELO=");
  n = h && hn ? xtext(line + o, 160, h, hn) : 0;
  o += n ? n : sl__put_str(line + o, "[UNAVAILABLE]");
  if (r->up_caps & SL_CAP_XFWD_SOURCE)
    o += sl__put_str(line + o, " SOURCE=REMOTE");
  return o;
}
