/* sl_spf.c: the SPF evaluator (sluice/spf.h, RFC 7208 4 and 5). */
#include "sluice/spf.h"

#include <string.h>

enum { M_NONE = 0, M_INCLUDE, M_A, M_MX_NAMES, M_MX_ADDRS, M_EXISTS };

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* The core links no strchr/strrchr (tools/check-core-symbols.sh). */
static const char *find(const char *s, char c) {
  size_t n = strlen(s);
  const void *p = c ? memchr(s, c, n) : NULL;
  return p ? (const char *)p : NULL;
}

static const char *find_last(const char *s, char c) {
  const char *last = NULL;
  for (; *s; s++)
    if (*s == c)
      last = s;
  return last;
}

static int ieq(const char *a, size_t n, const char *lit) {
  size_t l = strlen(lit);
  if (n != l)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lit[i])
      return 0;
  return 1;
}

static void copy(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

static sl_spf_frame *top(sl_spf *s) { return &s->f[s->depth - 1]; }

static void finish(sl_spf *s, sl_spf_result r) {
  s->done = 1;
  s->result = (uint8_t)r;
}

static void frame_start(sl_spf_frame *f, const char *domain) {
  memset(f, 0, offsetof(sl_spf_frame, mx));
  copy(f->domain, sizeof f->domain, domain, strlen(domain));
}

int sl_spf_init(sl_spf *s, const sl_addr *ip, const char *sender,
                const char *helo) {
  memset(s, 0, offsetof(sl_spf, f));
  s->ip = *ip;
  static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
  if (s->ip.family == SL_AF_INET6 && !memcmp(s->ip.bytes, v4mapped, 12)) {
    memmove(s->ip.bytes, s->ip.bytes + 12, 4);
    s->ip.family = SL_AF_INET;
  }
  copy(s->helo, sizeof s->helo, helo ? helo : "", helo ? strlen(helo) : 0);
  const char *at = sender ? find_last(sender, '@') : NULL;
  if (sender && at && at > sender)
    copy(s->sender, sizeof s->sender, sender, strlen(sender));
  else if (at) /* "@domain": RFC 7208 4.3, local part "postmaster" */
    copy(s->sender + 10, sizeof s->sender - 10, at, strlen(at)),
        memcpy(s->sender, "postmaster", 10);
  else if (s->helo[0]) {
    memcpy(s->sender, "postmaster@", 11);
    copy(s->sender + 11, sizeof s->sender - 11, s->helo, strlen(s->helo));
  }
  const char *dom = find_last(s->sender, '@');
  s->depth = 1;
  if (!dom || !dom[1] || strlen(dom + 1) >= SL_SPF_NAME_MAX ||
      (s->ip.family != SL_AF_INET && s->ip.family != SL_AF_INET6)) {
    finish(s, SL_SPF_NONE);
    return -1;
  }
  frame_start(&s->f[0], dom + 1);
  return 0;
}

/* ---- macros (RFC 7208 7) --------------------------------------------------
 */

static size_t ip_text(const sl_spf *s, char *out, int dotted6) {
  if (s->ip.family == SL_AF_INET)
    return (size_t)sl_addr_format(&s->ip, out, SL_ADDR_STRLEN);
  if (!dotted6)
    return (size_t)sl_addr_format(&s->ip, out, SL_ADDR_STRLEN);
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    out[o++] = hex[s->ip.bytes[i] >> 4];
    out[o++] = '.';
    out[o++] = hex[s->ip.bytes[i] & 15];
    out[o++] = i < 15 ? '.' : 0;
  }
  return o - 1;
}

/* Appends the macro letter's value, transformed; returns the new length or
   -1 (bad letter). */
static long macro(const sl_spf *s, const sl_spf_frame *f, char letter,
                  unsigned digits, int rev, const char *delims, char *out,
                  size_t o, size_t cap) {
  char v[SL_SPF_NAME_MAX * 2];
  const char *at = find_last(s->sender, '@');
  switch (lower((unsigned char)letter)) {
  case 's':
    copy(v, sizeof v, s->sender, strlen(s->sender));
    break;
  case 'l':
    copy(v, sizeof v, s->sender, at ? (size_t)(at - s->sender) : 0);
    break;
  case 'o':
    copy(v, sizeof v, at ? at + 1 : "", at ? strlen(at + 1) : 0);
    break;
  case 'd':
    copy(v, sizeof v, f->domain, strlen(f->domain));
    break;
  case 'i':
    ip_text(s, v, 1);
    break;
  case 'c':
    ip_text(s, v, 0);
    break;
  case 'h':
    copy(v, sizeof v, s->helo, strlen(s->helo));
    break;
  case 'v':
    copy(v, sizeof v, s->ip.family == SL_AF_INET ? "in-addr" : "ip6",
         s->ip.family == SL_AF_INET ? 7 : 3);
    break;
  case 'p':
    copy(v, sizeof v, "unknown", 7);
    break;
  default:
    return -1;
  }
  /* split at the delimiters, keep the rightmost `digits` parts (after an
     optional reversal), join with '.' */
  const char *parts[128];
  size_t lens[128], n = 0, start = 0, vl = strlen(v);
  for (size_t i = 0; i <= vl && n < 128; i++)
    if (i == vl || find(delims, v[i])) {
      parts[n] = v + start;
      lens[n++] = i - start;
      start = i + 1;
    }
  if (rev)
    for (size_t i = 0; i < n / 2; i++) {
      const char *tp = parts[i];
      size_t tl = lens[i];
      parts[i] = parts[n - 1 - i];
      lens[i] = lens[n - 1 - i];
      parts[n - 1 - i] = tp;
      lens[n - 1 - i] = tl;
    }
  size_t first = digits && digits < n ? n - digits : 0;
  for (size_t i = first; i < n; i++) {
    if (i > first && o + 1 < cap)
      out[o++] = '.';
    for (size_t j = 0; j < lens[i] && o + 1 < cap; j++)
      out[o++] = parts[i][j];
  }
  return (long)o;
}

/* Expands a domain-spec of n bytes into out (SL_SPF_NAME_MAX); 0 or -1
   (a syntax error: permerror). */
static int expand(const sl_spf *s, const sl_spf_frame *f, const char *in,
                  size_t n, char *out) {
  char buf[SL_SPF_NAME_MAX * 4];
  size_t o = 0, cap = sizeof buf;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c != '%') {
      if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e)
        return -1;
      if (o + 1 < cap)
        buf[o++] = c;
      continue;
    }
    if (++i >= n)
      return -1;
    if (in[i] == '%' || in[i] == '_' || in[i] == '-') {
      const char *rep = in[i] == '%' ? "%" : in[i] == '_' ? " " : "%20";
      for (; *rep && o + 1 < cap; rep++)
        buf[o++] = *rep;
      continue;
    }
    if (in[i] != '{' || ++i >= n)
      return -1;
    char letter = in[i++];
    unsigned digits = 0;
    while (i < n && in[i] >= '0' && in[i] <= '9' && digits < 1000)
      digits = digits * 10 + (unsigned)(in[i++] - '0');
    int rev = 0;
    if (i < n && lower((unsigned char)in[i]) == 'r') {
      rev = 1;
      i++;
    }
    char delims[8];
    size_t nd = 0;
    while (i < n && find(".-+,/_=", in[i]) && in[i] && nd < 7)
      delims[nd++] = in[i++];
    if (nd == 0)
      delims[nd++] = '.';
    delims[nd] = 0;
    if (i >= n || in[i] != '}')
      return -1;
    long r = macro(s, f, letter, digits, rev, delims, buf, o, cap);
    if (r < 0)
      return -1;
    o = (size_t)r;
  }
  buf[o] = 0;
  /* RFC 7208 7.3: drop labels from the left until 253 octets are left */
  const char *p = buf;
  while (strlen(p) > 253) {
    const char *dot = find(p, '.');
    if (!dot)
      return -1;
    p = dot + 1;
  }
  if (!*p)
    return -1;
  copy(out, SL_SPF_NAME_MAX, p, strlen(p));
  return 0;
}

/* ---- matching --------------------------------------------------------------
 */

static int in_cidr(const sl_addr *ip, const sl_addr *net, unsigned bits) {
  if (ip->family != net->family)
    return 0;
  unsigned max = ip->family == SL_AF_INET ? 32 : 128;
  if (bits > max)
    return 0;
  for (unsigned i = 0; i < bits / 8; i++)
    if (ip->bytes[i] != net->bytes[i])
      return 0;
  if (bits % 8) {
    uint8_t m = (uint8_t)(0xff << (8 - bits % 8));
    if ((ip->bytes[bits / 8] & m) != (net->bytes[bits / 8] & m))
      return 0;
  }
  return 1;
}

static sl_spf_result qual_result(char q) {
  switch (q) {
  case '-':
    return SL_SPF_FAIL;
  case '~':
    return SL_SPF_SOFTFAIL;
  case '?':
    return SL_SPF_NEUTRAL;
  default:
    return SL_SPF_PASS;
  }
}

static void pop(sl_spf *s, sl_spf_result r);

static void match(sl_spf *s) { pop(s, qual_result((char)top(s)->qual)); }

static void pop(sl_spf *s, sl_spf_result r) {
  if (s->depth <= 1) {
    finish(s, r);
    return;
  }
  s->depth--;
  sl_spf_frame *p = top(s);
  p->mech = M_NONE;
  /* RFC 7208 5.2: how an include's result matches */
  switch (r) {
  case SL_SPF_PASS:
    match(s);
    break;
  case SL_SPF_FAIL:
  case SL_SPF_SOFTFAIL:
  case SL_SPF_NEUTRAL:
    break;
  case SL_SPF_TEMPERROR:
    finish(s, SL_SPF_TEMPERROR);
    break;
  default:
    finish(s, SL_SPF_PERMERROR);
  }
}

static int lookup(sl_spf *s) {
  if (++s->lookups > 10) {
    finish(s, SL_SPF_PERMERROR);
    return -1;
  }
  return 0;
}

static int void_lookup(sl_spf *s) {
  if (++s->voids > 2) {
    finish(s, SL_SPF_PERMERROR);
    return -1;
  }
  return 0;
}

static void ask(sl_spf *s, sl_spf_qtype t, const char *name) {
  s->waiting = 1;
  s->qtype = (uint8_t)t;
  copy(s->qname, sizeof s->qname, name, strlen(name));
}

/* "[:domain][/c4][//c6]" of a or mx: the domain (or the current one) and
   the CIDR lengths; 0 or -1. */
static int target_cidr(sl_spf *s, sl_spf_frame *f, const char *arg, size_t n,
                       char *name) {
  unsigned c4 = 32, c6 = 128;
  size_t end = n;
  /* the CIDR part: digits after the last '/' (and "//" for IPv6) */
  for (int k = 0; k < 2; k++) {
    size_t i = end;
    while (i > 0 && arg[i - 1] >= '0' && arg[i - 1] <= '9')
      i--;
    if (i == end || i == 0 || arg[i - 1] != '/')
      break;
    unsigned v = 0;
    for (size_t j = i; j < end; j++)
      v = v * 10 + (unsigned)(arg[j] - '0');
    if (i >= 2 && arg[i - 2] == '/') {
      if (v > 128)
        return -1;
      c6 = v;
      end = i - 2;
    } else {
      if (v > 32)
        return -1;
      c4 = v;
      end = i - 1;
      break;
    }
  }
  f->cidr4 = (uint8_t)c4;
  f->cidr6 = (uint8_t)c6;
  if (end == 0) {
    copy(name, SL_SPF_NAME_MAX, f->domain, strlen(f->domain));
    return 0;
  }
  if (arg[0] != ':' || end < 2)
    return -1;
  return expand(s, f, arg + 1, end - 1, name);
}

/* Evaluates the next term of the top frame; 1 to go on, 0 to stop. */
static int term(sl_spf *s) {
  sl_spf_frame *f = top(s);
  const char *r = f->record;
  size_t len = strlen(r), i = f->pos;
  while (i < len && r[i] == ' ')
    i++;
  if (i >= len) {
    if (f->redirect[0]) {
      /* RFC 7208 6.1: the result is that of the redirect's domain, and
         a domain without a record there is a permerror */
      char d[SL_SPF_NAME_MAX];
      memcpy(d, f->redirect, sizeof d);
      frame_start(f, d);
      f->qual = 1; /* marks a redirect target for the TXT answer */
      return 1;
    }
    pop(s, SL_SPF_NEUTRAL);
    return 1;
  }
  size_t e = i;
  while (e < len && r[e] != ' ')
    e++;
  f->pos = (uint16_t)e;
  const char *t = r + i;
  size_t tn = e - i;
  char q = '+';
  if (find("+-~?", t[0])) {
    q = t[0];
    t++;
    tn--;
  }
  size_t nl = 0;
  while (nl < tn && t[nl] != ':' && t[nl] != '/' && t[nl] != '=')
    nl++;
  const char *arg = t + nl;
  size_t an = tn - nl;
  char name[SL_SPF_NAME_MAX];
  if (nl < tn && t[nl] == '=') {
    if (t != r + i) /* a qualifier on a modifier */
      return finish(s, SL_SPF_PERMERROR), 0;
    if (ieq(t, nl, "redirect")) {
      if (f->redirect[0] || expand(s, f, arg + 1, an - 1, name))
        return finish(s, SL_SPF_PERMERROR), 0;
      memcpy(f->redirect, name, sizeof name);
      if (lookup(s))
        return 0;
    }
    return 1; /* exp= and unknown modifiers are ignored */
  }
  f->qual = (uint8_t)q;
  if (ieq(t, nl, "all") && an == 0) {
    /* RFC 7208 6.1: redirect is ignored when all is present */
    match(s);
    return 1;
  }
  if (ieq(t, nl, "include")) {
    if (an < 2 || arg[0] != ':' || expand(s, f, arg + 1, an - 1, name))
      return finish(s, SL_SPF_PERMERROR), 0;
    if (lookup(s))
      return 0;
    if (s->depth >= SL_SPF_DEPTH)
      return finish(s, SL_SPF_PERMERROR), 0;
    f->mech = M_INCLUDE;
    s->depth++;
    frame_start(top(s), name);
    return 1;
  }
  if (ieq(t, nl, "a") || ieq(t, nl, "mx")) {
    int mx = nl == 2;
    if (target_cidr(s, f, arg, an, name))
      return finish(s, SL_SPF_PERMERROR), 0;
    if (lookup(s))
      return 0;
    f->mech = mx ? M_MX_NAMES : M_A;
    if (mx)
      ask(s, SL_SPF_Q_MX, name);
    else
      ask(s, s->ip.family == SL_AF_INET ? SL_SPF_Q_A : SL_SPF_Q_AAAA, name);
    return 0;
  }
  if (ieq(t, nl, "exists")) {
    if (an < 2 || arg[0] != ':' || expand(s, f, arg + 1, an - 1, name))
      return finish(s, SL_SPF_PERMERROR), 0;
    if (lookup(s))
      return 0;
    f->mech = M_EXISTS;
    ask(s, SL_SPF_Q_A, name);
    return 0;
  }
  if (ieq(t, nl, "ptr")) {
    if (an && (arg[0] != ':' || expand(s, f, arg + 1, an - 1, name)))
      return finish(s, SL_SPF_PERMERROR), 0;
    return lookup(s) == 0; /* counted, never matches */
  }
  if (ieq(t, nl, "ip4") || ieq(t, nl, "ip6")) {
    int v6 = t[2] == '6';
    if (an < 2 || arg[0] != ':')
      return finish(s, SL_SPF_PERMERROR), 0;
    const char *a = arg + 1;
    size_t n = an - 1, alen = n;
    const char *slash = memchr(a, '/', n);
    unsigned bits = v6 ? 128 : 32;
    if (slash) {
      alen = (size_t)(slash - a);
      bits = 0;
      if (slash + 1 == a + n)
        return finish(s, SL_SPF_PERMERROR), 0;
      for (const char *p = slash + 1; p < a + n; p++) {
        if (*p < '0' || *p > '9' || bits > 128)
          return finish(s, SL_SPF_PERMERROR), 0;
        bits = bits * 10 + (unsigned)(*p - '0');
      }
    }
    sl_addr net;
    if (sl_addr_parse(&net, a, alen) ||
        net.family != (v6 ? SL_AF_INET6 : SL_AF_INET) ||
        bits > (v6 ? 128u : 32u))
      return finish(s, SL_SPF_PERMERROR), 0;
    if (in_cidr(&s->ip, &net, bits))
      match(s);
    return 1;
  }
  finish(s, SL_SPF_PERMERROR); /* an unknown mechanism */
  return 0;
}

int sl_spf_step(sl_spf *s, sl_spf_qtype *type, const char **name) {
  for (int guard = 0; guard < 4096 && !s->done; guard++) {
    if (s->waiting) {
      *type = (sl_spf_qtype)s->qtype;
      *name = s->qname;
      return 1;
    }
    sl_spf_frame *f = top(s);
    if (!f->have_record) {
      ask(s, SL_SPF_Q_TXT, f->domain);
      continue;
    }
    if (f->mech == M_MX_ADDRS) {
      if (f->mx_i < f->mx_n) {
        ask(s, s->ip.family == SL_AF_INET ? SL_SPF_Q_A : SL_SPF_Q_AAAA,
            f->mx[f->mx_i]);
        continue;
      }
      f->mech = M_NONE; /* no MX host matched */
    }
    term(s);
  }
  if (!s->done)
    finish(s, SL_SPF_PERMERROR);
  return 0;
}

static int addrs_match(const sl_spf *s, const sl_spf_frame *f, const sl_addr *a,
                       size_t n) {
  for (size_t i = 0; i < n; i++)
    if (in_cidr(&s->ip, &a[i],
                s->ip.family == SL_AF_INET ? f->cidr4 : f->cidr6))
      return 1;
  return 0;
}

void sl_spf_answer(sl_spf *s, sl_spf_rcode rc, const char *const *strs,
                   const sl_addr *addrs, size_t n) {
  if (s->done || !s->waiting)
    return;
  s->waiting = 0;
  sl_spf_frame *f = top(s);
  if (rc == SL_SPF_DNS_ERROR) {
    finish(s, SL_SPF_TEMPERROR);
    return;
  }
  if (rc == SL_SPF_DNS_NXDOMAIN)
    n = 0;
  if (!f->have_record) {
    const char *rec = NULL;
    for (size_t i = 0; i < n; i++) {
      const char *t = strs[i];
      /* ABNF literals are case-insensitive (RFC 5234 2.3) */
      if (t && strlen(t) >= 6 && ieq(t, 6, "v=spf1") &&
          (t[6] == ' ' || t[6] == 0)) {
        if (rec) {
          finish(s, SL_SPF_PERMERROR); /* RFC 7208 4.5: two records */
          return;
        }
        rec = t;
      }
    }
    if (!rec) {
      int redirected = f->qual == 1;
      if (s->depth == 1 && !redirected) {
        finish(s, SL_SPF_NONE);
        return;
      }
      if (n == 0 && void_lookup(s))
        return;
      pop(s, redirected ? SL_SPF_PERMERROR : SL_SPF_NONE);
      return;
    }
    copy(f->record, sizeof f->record, rec, strlen(rec));
    f->pos = 6;
    f->have_record = 1;
    f->qual = 0;
    return;
  }
  switch (f->mech) {
  case M_EXISTS:
    f->mech = M_NONE;
    if (n == 0)
      void_lookup(s);
    else
      match(s); /* any A answer */
    return;
  case M_A:
    f->mech = M_NONE;
    if (n == 0)
      void_lookup(s);
    else if (addrs && addrs_match(s, f, addrs, n))
      match(s);
    return;
  case M_MX_NAMES:
    if (n == 0) {
      f->mech = M_NONE;
      void_lookup(s);
      return;
    }
    if (n > SL_SPF_MX_MAX || !strs) {
      finish(s, SL_SPF_PERMERROR); /* RFC 7208 4.6.4 */
      return;
    }
    f->mx_n = 0;
    for (size_t i = 0; i < n; i++)
      if (strs[i] && strs[i][0])
        copy(f->mx[f->mx_n++], SL_SPF_NAME_MAX, strs[i], strlen(strs[i]));
    f->mx_i = 0;
    f->mech = M_MX_ADDRS;
    return;
  case M_MX_ADDRS:
    if (n && addrs && addrs_match(s, f, addrs, n)) {
      f->mech = M_NONE;
      match(s);
      return;
    }
    f->mx_i++;
    return;
  default:
    return;
  }
}

sl_spf_result sl_spf_get_result(const sl_spf *s) {
  return s->done ? (sl_spf_result)s->result : SL_SPF_NONE;
}

const char *sl_spf_domain(const sl_spf *s) {
  const char *at = find_last(s->sender, '@');
  return at ? at + 1 : "";
}

const char *sl_spf_result_name(sl_spf_result r) {
  static const char *const names[] = {
      "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"};
  return (unsigned)r < 7 ? names[r] : "?";
}
