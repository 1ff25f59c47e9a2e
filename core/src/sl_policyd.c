/* sl_policyd.c: the policy delegation codec (sluice/policyd.h). */
#include "sluice/policyd.h"

#include <string.h>

#include "sluice/errors.h"

static int printable(uint8_t c) { return c >= 0x20 && c < 0x7f; }

static uint8_t upper(uint8_t c) {
  return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
}

long sl_policyd_encode(const sl_policyd_attr *a, size_t n, char *out,
                       size_t cap) {
  if (!out || (!a && n))
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    const char *v = a[i].value ? a[i].value : "";
    size_t nl = strlen(a[i].name), vl = strlen(v);
    if (o + nl + vl + 2 >= cap)
      return -1;
    memcpy(out + o, a[i].name, nl);
    o += nl;
    out[o++] = '=';
    for (size_t j = 0; j < vl; j++)
      out[o++] = printable((uint8_t)v[j]) ? v[j] : '?';
    out[o++] = '\n';
  }
  if (o + 1 > cap)
    return -1;
  out[o++] = '\n';
  return (long)o;
}

long sl_policyd_parse(const uint8_t *b, size_t n, const uint8_t **act,
                      size_t *alen) {
  size_t off = 0;
  int nact = 0;
  if (!b && n)
    return SL_ERR_INVALID_ARGUMENT;
  while (off < n) {
    const uint8_t *lf = memchr(b + off, '\n', n - off);
    size_t end = lf ? (size_t)(lf - b) : n;
    if (end - off > SL_POLICYD_LINE_MAX)
      return SL_ERR_MALFORMED;
    if (!lf)
      return SL_ERR_INCOMPLETE;
    size_t len = end - off;
    if (len && b[end - 1] == '\r')
      len--;
    if (len == 0) {
      if (nact != 1)
        return SL_ERR_MALFORMED;
      return (long)(end + 1);
    }
    const uint8_t *eq = memchr(b + off, '=', len);
    if (!eq)
      return SL_ERR_MALFORMED;
    if ((size_t)(eq - (b + off)) == 6 && !memcmp(b + off, "action", 6)) {
      if (++nact > 1)
        return SL_ERR_MALFORMED;
      if (act)
        *act = eq + 1;
      if (alen)
        *alen = len - 7;
    }
    off = end + 1;
  }
  return SL_ERR_INCOMPLETE;
}

/* the keyword at the start of s, case-insensitive, ending at a blank or
   the end: returns the text's offset after it, or 0 */
static size_t keyword(const uint8_t *s, size_t n, const char *kw) {
  size_t k = strlen(kw);
  if (n < k)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (upper(s[i]) != (uint8_t)kw[i])
      return 0;
  if (n == k)
    return k;
  if (s[k] != ' ' && s[k] != '\t')
    return 0;
  while (k < n && (s[k] == ' ' || s[k] == '\t'))
    k++;
  return k;
}

/* "d.ddd.ddd " at s with class digit cls: its length with the blank, or 0 */
static size_t enhanced(const uint8_t *s, size_t n, uint8_t cls) {
  size_t i = 0;
  for (int part = 0; part < 3; part++) {
    size_t d = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && d < 3) {
      i++;
      d++;
    }
    if (d == 0 || (part == 0 && (d != 1 || s[0] != cls)))
      return 0;
    if (part < 2) {
      if (i >= n || s[i] != '.')
        return 0;
      i++;
    }
  }
  if (i < n && s[i] != ' ')
    return 0;
  return i;
}

static void refuse(sl_policyd_verdict *v, unsigned code, const uint8_t *t,
                   size_t n, const char *dflt) {
  uint8_t cls = (uint8_t)('0' + code / 100);
  v->kind = SL_PD_REFUSE;
  v->code = (uint16_t)code;
  size_t o = 0, e = enhanced(t, n, cls);
  if (e) {
    memcpy(v->text, t, e);
    o = e;
    t += e;
    n -= e;
    while (n && *t == ' ') {
      t++;
      n--;
    }
  } else {
    memcpy(v->text, code < 500 ? "4.7.1" : "5.7.1", 5);
    o = 5;
  }
  if (!n) {
    t = (const uint8_t *)dflt;
    n = strlen(dflt);
  }
  v->text[o++] = ' ';
  for (size_t i = 0; i < n && o + 1 < SL_POLICYD_TEXT_MAX; i++)
    v->text[o++] = printable(t[i]) ? (char)t[i] : '?';
  v->text[o] = 0;
}

void sl_policyd_action(const uint8_t *act, size_t n, sl_policyd_verdict *v) {
  size_t k;
  memset(v, 0, sizeof(*v));
  while (n && (act[0] == ' ' || act[0] == '\t')) {
    act++;
    n--;
  }
  while (n && (act[n - 1] == ' ' || act[n - 1] == '\t'))
    n--;
  if (n == 0) {
    v->kind = SL_PD_ERROR;
    return;
  }
  if (keyword(act, n, "OK") == n) {
    v->kind = SL_PD_OK;
    return;
  }
  if (keyword(act, n, "DUNNO") == n || keyword(act, n, "DEFER_IF_REJECT"))
    return;
  if ((k = keyword(act, n, "REJECT")) != 0) {
    refuse(v, 554, act + k, n - k, "Access denied");
    return;
  }
  if ((k = keyword(act, n, "DEFER")) != 0 ||
      (k = keyword(act, n, "DEFER_IF_PERMIT")) != 0) {
    refuse(v, 450, act + k, n - k, "Try again later");
    return;
  }
  if (n >= 3 && (act[0] == '4' || act[0] == '5') && act[1] >= '0' &&
      act[1] <= '9' && act[2] >= '0' && act[2] <= '9' &&
      (n == 3 || act[3] == ' ' || act[3] == '\t')) {
    unsigned code = (unsigned)(act[0] - '0') * 100 +
                    (unsigned)(act[1] - '0') * 10 + (unsigned)(act[2] - '0');
    k = 3;
    while (k < n && (act[k] == ' ' || act[k] == '\t'))
      k++;
    refuse(v, code, act + k, n - k,
           code < 500 ? "Try again later" : "Access denied");
    return;
  }
  static const char *const ignored[] = {"PREPEND",  "WARN",    "INFO",
                                        "HOLD",     "DISCARD", "FILTER",
                                        "REDIRECT", "BCC",     "DELAY"};
  for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
    if (keyword(act, n, ignored[i]))
      return;
  v->kind = SL_PD_ERROR;
}
