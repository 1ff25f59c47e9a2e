/* sl_rcpt_policy.c: relay control; see sluice/rcpt_policy.h. */
#include "sluice/rcpt_policy.h"

#include <string.h>

#include "sluice/errors.h"
#include "sluice/utf8.h"

void sl_rcpt_policy_default(sl_rcpt_policy *p) { memset(p, 0, sizeof(*p)); }

static uint8_t lower(uint8_t c) {
  return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static int ieq(const uint8_t *a, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i]))
      return 0;
  return 1;
}

int sl_rcpt_policy_check(const sl_rcpt_policy *p) {
  if (!p || (p->flags & ~(uint32_t)SL_RCPT_FLAGS_ALL) ||
      (p->ndomains && !p->domains) || (p->nmynetworks && !p->mynetworks))
    return SL_ERR_INVALID_ARGUMENT;
  for (uint32_t i = 0; i < p->ndomains; i++) {
    const char *d = p->domains[i];
    if (!d || !d[0] || (d[0] == '.' && !d[1]) ||
        sl_utf8_check((const uint8_t *)d, strlen(d)) != strlen(d))
      return SL_ERR_INVALID_ARGUMENT; /* a U-label entry must be UTF-8 */
    for (const char *c = d; *c; c++)
      if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '@')
        return SL_ERR_INVALID_ARGUMENT;
  }
  for (uint32_t i = 0; i < p->nmynetworks; i++) {
    const sl_prefix *n = &p->mynetworks[i];
    if (!((n->addr.family == SL_AF_INET && n->bits <= 32) ||
          (n->addr.family == SL_AF_INET6 && n->bits <= 128)))
      return SL_ERR_INVALID_ARGUMENT;
  }
  return SL_OK;
}

static int prefix_match(const uint8_t *net, const uint8_t *a, unsigned bits) {
  unsigned whole = bits / 8, rest = bits % 8;
  if (memcmp(net, a, whole) != 0)
    return 0;
  if (!rest)
    return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (net[whole] & mask) == (a[whole] & mask);
}

int sl_rcpt_client_trusted(const sl_rcpt_policy *p, const sl_addr *client) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *v4 = NULL;
  if (client->family == SL_AF_INET)
    v4 = client->bytes;
  else if (client->family == SL_AF_INET6 &&
           memcmp(client->bytes, mapped, 12) == 0)
    v4 = client->bytes + 12; /* a dual-stack listener's IPv4 client */
  for (uint32_t i = 0; i < p->nmynetworks; i++) {
    const sl_prefix *n = &p->mynetworks[i];
    if (n->addr.family == SL_AF_INET && v4 &&
        prefix_match(n->addr.bytes, v4, n->bits))
      return 1;
    if (n->addr.family == SL_AF_INET6 && client->family == SL_AF_INET6 &&
        prefix_match(n->addr.bytes, client->bytes, n->bits))
      return 1;
  }
  return 0;
}

/* Drops one trailing dot (a fully qualified "example.com."). */
static size_t undot(const uint8_t *s, size_t n) {
  return n > 1 && s[n - 1] == '.' ? n - 1 : n;
}

int sl_rcpt_domain_allowed(const sl_rcpt_policy *p, const uint8_t *dom,
                           size_t n) {
  if (p->flags & SL_RCPT_ANY_DOMAIN)
    return 1;
  n = undot(dom, n);
  if (n == 0)
    return 0;
  /* A linear scan: lists are short in practice, and a file of thousands
     of domains still costs microseconds per RCPT. */
  for (uint32_t i = 0; i < p->ndomains; i++) {
    const uint8_t *e = (const uint8_t *)p->domains[i];
    size_t el = undot(e, strlen(p->domains[i]));
    if (e[0] == '.') {
      /* ".example.com": a subdomain, so at least one label before it */
      if (n > el && ieq(dom + n - el, e, el))
        return 1;
    } else if (n == el && ieq(dom, e, el)) {
      return 1;
    }
  }
  return 0;
}

/* The last '@' outside a quoted string, or n. */
static size_t last_at(const uint8_t *s, size_t n) {
  size_t at = n;
  int quoted = 0;
  for (size_t i = 0; i < n; i++) {
    if (quoted && s[i] == '\\') {
      i++;
      continue;
    }
    if (s[i] == '"')
      quoted = !quoted;
    else if (s[i] == '@' && !quoted)
      at = i;
  }
  return at;
}

sl_rcpt_verdict sl_rcpt_check(const sl_rcpt_policy *p, const uint8_t *path,
                              size_t n, int trusted) {
  if (trusted)
    return SL_RCPT_OK;
  int configured = p->ndomains || (p->flags & SL_RCPT_ANY_DOMAIN);
  const uint8_t *route = NULL, *mb = path;
  size_t rlen = 0, mlen = n;
  if (n && path[0] == '@') {
    const uint8_t *colon = memchr(path, ':', n);
    if (!colon)
      return SL_RCPT_DENIED; /* not a path the syntax check lets through */
    route = path;
    rlen = (size_t)(colon - path);
    mb = colon + 1;
    mlen = n - rlen - 1;
    if (!(p->flags & SL_RCPT_ALLOW_SOURCE_ROUTE))
      return SL_RCPT_SOURCE_ROUTE;
  }
  size_t at = last_at(mb, mlen);
  if (at == mlen) {
    /* RFC 5321 4.5.1: the bare "Postmaster" must be accepted; the upstream
       resolves it to itself. */
    if (!route && mlen == 10 && ieq(mb, (const uint8_t *)"postmaster", 10))
      return SL_RCPT_OK;
    return configured ? SL_RCPT_DENIED : SL_RCPT_UNCONFIGURED;
  }
  /* The local part as the upstream will read it, quotes and backslashes
     removed: '%', '@' or '!' in it route the mail further. */
  int percent = 0, bang = 0;
  for (size_t i = 0; i < at; i++) {
    uint8_t c = mb[i];
    if (c == '\\' && i + 1 < at)
      c = mb[++i];
    else if (c == '"')
      continue;
    if (c == '%' || c == '@')
      percent = 1;
    else if (c == '!')
      bang = 1;
  }
  if (percent && !(p->flags & SL_RCPT_ALLOW_PERCENT_HACK))
    return SL_RCPT_PERCENT_HACK;
  if (bang && !(p->flags & SL_RCPT_ALLOW_BANG_PATH))
    return SL_RCPT_BANG_PATH;
  if (!configured)
    return SL_RCPT_UNCONFIGURED;
  /* An allowed source route: the mail passes every hop, so each must be a
     relay domain as well as the final one. */
  for (size_t i = 0; i < rlen;) {
    size_t s = i + 1; /* after '@' */
    size_t e = s;
    while (e < rlen && route[e] != ',')
      e++;
    if (!sl_rcpt_domain_allowed(p, route + s, e - s))
      return SL_RCPT_DENIED;
    i = e + 1;
  }
  if (!sl_rcpt_domain_allowed(p, mb + at + 1, mlen - at - 1))
    return SL_RCPT_DENIED;
  return SL_RCPT_OK;
}

const char *sl_rcpt_verdict_name(sl_rcpt_verdict v) {
  switch (v) {
  case SL_RCPT_OK:
    return "ok";
  case SL_RCPT_DENIED:
    return "denied";
  case SL_RCPT_UNCONFIGURED:
    return "unconfigured";
  case SL_RCPT_SOURCE_ROUTE:
    return "source_route";
  case SL_RCPT_PERCENT_HACK:
    return "percent_hack";
  case SL_RCPT_BANG_PATH:
    return "bang_path";
  }
  return "unknown";
}
