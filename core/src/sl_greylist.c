/* sl_greylist.c: greylisting keys (sluice/greylist.h). */
#include "sluice/greylist.h"

#include <string.h>

static uint8_t lower(uint8_t c) {
  return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* The last '@' separates local part and domain: a quoted local part may
   hold an '@' of its own, a domain never does. */
static size_t at_index(const uint8_t *p, size_t n) {
  for (size_t i = n; i > 0; i--)
    if (p[i - 1] == '@')
      return i - 1;
  return n;
}

static int put_path(const uint8_t *local, size_t ln, const uint8_t *dom,
                    size_t dn, int has_at, char *out, size_t cap) {
  size_t need = ln + (has_at ? 1 + dn : 0);
  if (!out || need >= cap)
    return -1;
  memcpy(out, local, ln);
  size_t o = ln;
  if (has_at) {
    out[o++] = '@';
    for (size_t i = 0; i < dn; i++)
      out[o++] = (char)lower(dom[i]);
  }
  out[o] = 0;
  return (int)o;
}

/* BATV (draft-levine-smtp-batv): "prvs=" tag-val "=" loc-core. */
static size_t batv_skip(const uint8_t *p, size_t n) {
  static const char tag[] = "prvs=";
  if (n <= 5)
    return 0;
  for (size_t i = 0; i < 5; i++)
    if (lower(p[i]) != (uint8_t)tag[i])
      return 0;
  for (size_t i = 5; i < n; i++)
    if (p[i] == '=')
      return i + 1 < n ? i + 1 : 0;
  return 0;
}

int sl_grey_sender(const uint8_t *path, size_t n, char *out, size_t cap) {
  if (!path && n)
    return -1;
  size_t at = at_index(path, n);
  size_t skip = batv_skip(path, at);
  const uint8_t *local = path + skip;
  size_t ln = at - skip;
  const uint8_t *plus = ln ? memchr(local, '+', ln) : NULL;
  if (plus && plus > local)
    ln = (size_t)(plus - local);
  return put_path(local, ln, path + at + (at < n), at < n ? n - at - 1 : 0,
                  at < n, out, cap);
}

int sl_grey_rcpt(const uint8_t *path, size_t n, char *out, size_t cap) {
  if (!path && n)
    return -1;
  size_t at = at_index(path, n);
  return put_path(path, at, path + at + (at < n), at < n ? n - at - 1 : 0,
                  at < n, out, cap);
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int sl_grey_client(const sl_addr *a, const char *spf_domain, char *out,
                   size_t cap) {
  if (!out || !cap || !a)
    return -1;
  char text[SL_ADDR_STRLEN];
  const char *pre = "net:", *suf = "";
  if (spf_domain && spf_domain[0]) {
    size_t dn = strlen(spf_domain);
    if (4 + dn >= cap)
      return -1;
    memcpy(out, "spf:", 4);
    for (size_t i = 0; i < dn; i++)
      out[4 + i] = (char)lower((uint8_t)spf_domain[i]);
    out[4 + dn] = 0;
    return (int)(4 + dn);
  }
  sl_addr m = *a;
  if (m.family == SL_AF_INET6 && !memcmp(m.bytes, v4mapped, 12)) {
    memmove(m.bytes, m.bytes + 12, 4);
    m.family = SL_AF_INET;
  }
  if (m.family == SL_AF_INET) {
    m.bytes[3] = 0;
    suf = "/24";
  } else if (m.family == SL_AF_INET6) {
    memset(m.bytes + 8, 0, 8);
    suf = "/64";
  } else {
    m.family = SL_AF_UNSPEC;
  }
  int tn = sl_addr_format(&m, text, sizeof(text));
  if (tn < 0)
    return -1;
  size_t need = strlen(pre) + (size_t)tn + strlen(suf);
  if (need >= cap)
    return -1;
  memcpy(out, pre, 4);
  memcpy(out + 4, text, (size_t)tn);
  memcpy(out + 4 + tn, suf, strlen(suf) + 1);
  return (int)need;
}

int sl_grey_triplet(const char *client, const char *sender, const char *rcpt,
                    char *out, size_t cap) {
  if (!client || !sender || !rcpt || !out)
    return -1;
  size_t a = strlen(client), b = strlen(sender), c = strlen(rcpt);
  if (a + b + c + 2 >= cap)
    return -1;
  memcpy(out, client, a);
  out[a] = ' ';
  memcpy(out + a + 1, sender, b);
  out[a + 1 + b] = ' ';
  memcpy(out + a + b + 2, rcpt, c + 1);
  return (int)(a + b + c + 2);
}

int sl_grey_asn(const char *txt, char *out, size_t cap) {
  if (!txt || !out)
    return -1;
  while (*txt == ' ' || *txt == '"')
    txt++;
  size_t n = 0;
  while (txt[n] >= '0' && txt[n] <= '9')
    n++;
  /* a number of at most 10 digits (32-bit ASNs), then the end, a blank or
     the field separator */
  if (n == 0 || n > 10 ||
      (txt[n] && txt[n] != ' ' && txt[n] != '|' && txt[n] != '"'))
    return -1;
  if (4 + n >= cap)
    return -1;
  memcpy(out, "asn:", 4);
  memcpy(out + 4, txt, n);
  out[4 + n] = 0;
  return (int)(4 + n);
}
