/* sl_cmd.c: command classification and argument checks; see sl_cmd.h. */
#include "sl_cmd.h"

#include <string.h>

static uint8_t up(uint8_t c) {
  return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
}

int sl_ieq(const uint8_t *p, const char *upper, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (up(p[i]) != (uint8_t)upper[i])
      return 0;
  return 1;
}

static const struct {
  const char *name;
  sl_verb verb;
} verbs[] = {
    {"EHLO", SL_V_EHLO},       {"HELO", SL_V_HELO},
    {"MAIL", SL_V_MAIL},       {"RCPT", SL_V_RCPT},
    {"DATA", SL_V_DATA},       {"BDAT", SL_V_BDAT},
    {"RSET", SL_V_RSET},       {"NOOP", SL_V_NOOP},
    {"QUIT", SL_V_QUIT},       {"VRFY", SL_V_VRFY},
    {"EXPN", SL_V_EXPN},       {"HELP", SL_V_HELP},
    {"AUTH", SL_V_AUTH},       {"STARTTLS", SL_V_STARTTLS},
    {"XCLIENT", SL_V_XCLIENT}, {"XFORWARD", SL_V_XFORWARD},
    {"ETRN", SL_V_ETRN},       {"CONNECT", SL_V_NONSMTP},
    {"GET", SL_V_NONSMTP},     {"POST", SL_V_NONSMTP},
    {"PUT", SL_V_NONSMTP},     {"HEAD", SL_V_NONSMTP},
    {"OPTIONS", SL_V_NONSMTP}, {"USER", SL_V_NONSMTP},
};

void sl_cmd_parse(const uint8_t *line, size_t len, sl_cmd *c) {
  size_t v = 0;
  while (v < len && line[v] != ' ')
    v++;
  size_t a = v;
  while (a < len && line[a] == ' ')
    a++;
  c->arg = (uint32_t)a;
  c->verb = SL_V_UNKNOWN;
  if (len == 0)
    return;
  uint8_t first = up(line[0]);
  if (first < 'A' || first > 'Z' || line[v - 1] == ':') {
    c->verb = SL_V_NONSMTP;
    return;
  }
  for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
    size_t n = strlen(verbs[i].name);
    if (n == v && sl_ieq(line, verbs[i].name, n)) {
      c->verb = verbs[i].verb;
      return;
    }
  }
}

/* Parses a decimal number of at most 19 digits. */
static int parse_u64(const uint8_t *p, size_t n, uint64_t *out) {
  if (n == 0 || n > 19)
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(p[i] - '0');
  }
  *out = v;
  return 0;
}

static int is_hex(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* xtext (RFC 3461 4): printable ASCII except '+' and '=' or "+XX" hex. */
static int is_xtext(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '+') {
      if (i + 2 >= n || !is_hex(p[i + 1]) || !is_hex(p[i + 2]))
        return 0;
      i += 2;
      continue;
    }
    if (p[i] < 0x21 || p[i] > 0x7e || p[i] == '=')
      return 0;
  }
  return 1;
}

static sl_path_err check_params(const uint8_t *p, size_t n, int is_mail,
                                const sl_path_limits *lim, uint64_t *size) {
  size_t i = 0;
  while (i < n) {
    while (i < n && p[i] == ' ')
      i++;
    size_t s = i;
    while (i < n && p[i] != ' ')
      i++;
    if (i == s)
      break;
    const uint8_t *kw = p + s;
    size_t kwlen = i - s, klen = 0;
    while (klen < kwlen && kw[klen] != '=')
      klen++;
    const uint8_t *val = kw + klen + (klen < kwlen);
    size_t vlen = klen < kwlen ? kwlen - klen - 1 : 0;
    int has_val = klen < kwlen;
    uint32_t need;
    if (is_mail && klen == 4 && sl_ieq(kw, "SIZE", 4)) {
      uint64_t v;
      if (!has_val || parse_u64(val, vlen, &v) < 0)
        return SL_PATH_SYNTAX;
      if (!(lim->allowed & SL_P_SIZE))
        return SL_PATH_PARAM;
      if (lim->size_max && v > lim->size_max)
        return SL_PATH_SIZE;
      if (size)
        *size = v;
      need = SL_P_SIZE;
    } else if (is_mail && klen == 4 && sl_ieq(kw, "BODY", 4)) {
      if (vlen == 8 && sl_ieq(val, "8BITMIME", 8))
        need = SL_P_BODY_8BIT;
      else if (vlen == 4 && sl_ieq(val, "7BIT", 4))
        need = 0;
      else if (vlen == 10 && sl_ieq(val, "BINARYMIME", 10))
        need = SL_P_BODY_BINARY;
      else
        return SL_PATH_SYNTAX;
    } else if (is_mail && klen == 8 && sl_ieq(kw, "SMTPUTF8", 8)) {
      if (has_val)
        return SL_PATH_SYNTAX; /* RFC 6531 3.4: takes no value */
      need = SL_P_SMTPUTF8;
    } else if (is_mail && ((klen == 3 && sl_ieq(kw, "RET", 3)) ||
                           (klen == 5 && sl_ieq(kw, "ENVID", 5)))) {
      if (!has_val || !is_xtext(val, vlen))
        return SL_PATH_SYNTAX;
      need = SL_P_DSN;
    } else if (is_mail && klen == 4 && sl_ieq(kw, "AUTH", 4)) {
      if (!has_val || !is_xtext(val, vlen))
        return SL_PATH_SYNTAX;
      need = SL_P_AUTH;
    } else if (!is_mail && ((klen == 6 && sl_ieq(kw, "NOTIFY", 6)) ||
                            (klen == 5 && sl_ieq(kw, "ORCPT", 5)))) {
      if (!has_val || !is_xtext(val, vlen))
        return SL_PATH_SYNTAX;
      need = SL_P_DSN;
    } else {
      return SL_PATH_PARAM;
    }
    if (need & ~lim->allowed)
      return SL_PATH_PARAM;
  }
  return SL_PATH_OK;
}

sl_path_err sl_cmd_check_path(const uint8_t *arg, size_t len, int is_mail,
                              const sl_path_limits *lim, uint64_t *size) {
  const char *kw = is_mail ? "FROM:" : "TO:";
  size_t kwlen = is_mail ? 5 : 3;
  if (len < kwlen || !sl_ieq(arg, kw, kwlen))
    return SL_PATH_SYNTAX;
  size_t i = kwlen;
  if (i < len && arg[i] == ' ')
    i++;
  if (i >= len || arg[i] != '<')
    return SL_PATH_SYNTAX;
  size_t start = ++i;
  int quoted = 0, nonascii = 0;
  size_t at = (size_t)-1;
  for (; i < len; i++) {
    uint8_t c = arg[i];
    if (c == '\\' && quoted) {
      /* quoted-pairSMTP (RFC 5321 4.1.2): a backslash and one printable
         ASCII byte; UTF-8 only with SMTPUTF8 (RFC 6531 3.3) */
      if (++i >= len)
        return SL_PATH_SYNTAX;
      if (arg[i] >= 0x80)
        nonascii = 1;
      else if (arg[i] < 0x20 || arg[i] == 0x7f)
        return SL_PATH_SYNTAX;
      continue;
    }
    if (c == '"')
      quoted = !quoted;
    else if (c == '>' && !quoted)
      break;
    else if (c == '@' && !quoted)
      at = i;
    else if ((c < 0x20 || c == 0x7f) || (c == ' ' && !quoted) ||
             (c == '<' && !quoted))
      return SL_PATH_SYNTAX;
    if (c >= 0x80)
      nonascii = 1;
  }
  if (i >= len || quoted)
    return SL_PATH_SYNTAX;
  size_t plen = i - start;
  if (plen == 0 && !is_mail)
    return SL_PATH_SYNTAX; /* RCPT TO:<> */
  if (plen + 2 > lim->path_max)
    return SL_PATH_TOO_LONG;
  if (plen) {
    if (at == (size_t)-1 || at == start || at + 1 == i) {
      /* "Postmaster" without a domain is the one RCPT that may lack '@'
         (RFC 5321 4.5.1). */
      if (!(is_mail == 0 && plen == 10 &&
            sl_ieq(arg + start, "POSTMASTER", 10)))
        return SL_PATH_SYNTAX;
    } else {
      /* Skip a source route "@a,@b:" before measuring the mailbox. */
      size_t mb = start;
      if (arg[start] == '@') {
        const uint8_t *colon = memchr(arg + start, ':', plen);
        if (!colon)
          return SL_PATH_SYNTAX;
        mb = (size_t)(colon - arg) + 1;
      }
      if (at < mb || at - mb > 64 || i - at - 1 > lim->domain_max)
        return SL_PATH_TOO_LONG;
    }
  }
  sl_path_err e = check_params(arg + i + 1, len - i - 1, is_mail, lim, size);
  if (e != SL_PATH_OK)
    return e;
  if (nonascii) {
    /* The SMTPUTF8 parameter was checked above; look for it again. */
    const uint8_t *p = arg + i + 1;
    size_t n = len - i - 1, k = 0;
    int found = 0;
    while (k + 8 <= n) {
      if (sl_ieq(p + k, "SMTPUTF8", 8) && (k == 0 || p[k - 1] == ' ') &&
          (k + 8 == n || p[k + 8] == ' '))
        found = 1;
      k++;
    }
    if (!found && is_mail)
      return SL_PATH_NEED_SMTPUTF8;
  }
  return SL_PATH_OK;
}

/* Where the parameters start: just after the path's closing '>' (quoted
   local parts may hold one). */
static size_t params_start(const uint8_t *a, size_t n) {
  size_t i = 0;
  while (i < n && a[i] != '<')
    i++;
  int quoted = 0;
  for (i++; i < n; i++) {
    if (a[i] == '\\' && quoted)
      i++;
    else if (a[i] == '"')
      quoted = !quoted;
    else if (a[i] == '>' && !quoted)
      return i + 1;
  }
  return n;
}

static uint32_t param_class(const uint8_t *kw, size_t n) {
  size_t k = 0;
  while (k < n && kw[k] != '=')
    k++;
  const uint8_t *val = kw + k + (k < n);
  size_t vlen = k < n ? n - k - 1 : 0;
  if (k == 4 && sl_ieq(kw, "SIZE", 4))
    return SL_P_SIZE;
  if (k == 4 && sl_ieq(kw, "BODY", 4))
    return vlen == 8 && sl_ieq(val, "8BITMIME", 8) ? SL_P_BODY_8BIT
           : vlen == 4 && sl_ieq(val, "7BIT", 4)   ? SL_P_BODY_7BIT
                                                   : SL_P_BODY_BINARY;
  if (k == 8 && sl_ieq(kw, "SMTPUTF8", 8))
    return SL_P_SMTPUTF8;
  if ((k == 3 && sl_ieq(kw, "RET", 3)) || (k == 5 && sl_ieq(kw, "ENVID", 5)) ||
      (k == 6 && sl_ieq(kw, "NOTIFY", 6)) || (k == 5 && sl_ieq(kw, "ORCPT", 5)))
    return SL_P_DSN;
  if (k == 4 && sl_ieq(kw, "AUTH", 4))
    return SL_P_AUTH;
  return 0;
}

uint32_t sl_cmd_param_classes(const uint8_t *arg, size_t len) {
  uint32_t present = 0;
  size_t i = params_start(arg, len);
  while (i < len) {
    while (i < len && arg[i] == ' ')
      i++;
    size_t s = i;
    while (i < len && arg[i] != ' ')
      i++;
    if (i > s)
      present |= param_class(arg + s, i - s);
  }
  return present;
}

size_t sl_cmd_drop_params(const uint8_t *line, size_t len, size_t arg,
                          uint32_t drop, uint8_t *out) {
  size_t i = arg + params_start(line + arg, len - arg);
  memcpy(out, line, i);
  size_t o = i;
  while (i < len) {
    while (i < len && line[i] == ' ')
      i++;
    size_t s = i;
    while (i < len && line[i] != ' ')
      i++;
    if (i > s && !(param_class(line + s, i - s) & drop)) {
      out[o++] = ' ';
      memcpy(out + o, line + s, i - s);
      o += i - s;
    }
  }
  return o;
}

int sl_cmd_bdat(const uint8_t *arg, size_t len, uint64_t *size, int *last) {
  size_t i = 0;
  while (i < len && arg[i] != ' ')
    i++;
  if (parse_u64(arg, i, size) < 0)
    return -1;
  while (i < len && arg[i] == ' ')
    i++;
  *last = 0;
  if (i == len)
    return 0;
  if (len - i == 4 && sl_ieq(arg + i, "LAST", 4)) {
    *last = 1;
    return 0;
  }
  return -1;
}

size_t sl_cmd_helo_arg(const uint8_t *arg, size_t len, uint32_t domain_max) {
  size_t n = 0;
  while (n < len && arg[n] != ' ') {
    if (arg[n] < 0x21 || arg[n] == 0x7f)
      return 0;
    n++;
  }
  if (n == 0 || n > domain_max)
    return 0;
  return n;
}
