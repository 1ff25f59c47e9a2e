/*
 * sl_filter.c: verdicts of content filters, their combination, and the
 * sanitising of what filters say (sluice/filter.h).
 */
#include "sluice/filter.h"

#include <string.h>

const char *sl_verdict_name(sl_verdict v) {
  switch (v) {
  case SL_VERDICT_ACCEPT:
    return "accept";
  case SL_VERDICT_CHANGE:
    return "change";
  case SL_VERDICT_DISCARD:
    return "discard";
  case SL_VERDICT_TEMPFAIL:
    return "tempfail";
  case SL_VERDICT_REJECT:
    return "reject";
  }
  return "unknown";
}

int sl_verdict_combine(const sl_verdict *v, size_t n, sl_discard_as as,
                       sl_verdict_sum *sum) {
  if (!sum)
    return SL_ERR_INVALID_ARGUMENT;
  sum->verdict = SL_VERDICT_ACCEPT;
  sum->decider = SIZE_MAX;
  sum->discard_tagged = 0;
  if (!v && n > 0)
    return SL_ERR_INVALID_ARGUMENT;
  size_t first_reject = SIZE_MAX, first_tempfail = SIZE_MAX;
  int change = 0, tagged = 0;
  for (size_t i = 0; i < n; i++) {
    sl_verdict x = v[i];
    if (x == SL_VERDICT_DISCARD) {
      if (as == SL_DISCARD_AS_TAG) {
        x = SL_VERDICT_CHANGE;
        tagged = 1;
      } else {
        x = SL_VERDICT_REJECT;
      }
    }
    switch (x) {
    case SL_VERDICT_ACCEPT:
      break;
    case SL_VERDICT_CHANGE:
      change = 1;
      break;
    case SL_VERDICT_REJECT:
      if (first_reject == SIZE_MAX)
        first_reject = i;
      break;
    case SL_VERDICT_TEMPFAIL:
    case SL_VERDICT_DISCARD:
    default:
      if (first_tempfail == SIZE_MAX)
        first_tempfail = i;
      break;
    }
  }
  if (first_reject != SIZE_MAX) {
    sum->verdict = SL_VERDICT_REJECT;
    sum->decider = first_reject;
  } else if (first_tempfail != SIZE_MAX) {
    sum->verdict = SL_VERDICT_TEMPFAIL;
    sum->decider = first_tempfail;
  } else if (change) {
    sum->verdict = SL_VERDICT_CHANGE;
    sum->discard_tagged = tagged;
  }
  return SL_OK;
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_blank(uint8_t c) { return c == ' ' || c == '\t'; }

/* Length of an RFC 3463 enhanced code "c.sss.ddd" with class `cls` at
   b[0..n), followed by a blank or the end; 0 if there is none. */
static size_t enhanced_len(const uint8_t *b, size_t n, uint8_t cls) {
  if (n < 5 || b[0] != cls || b[1] != '.')
    return 0;
  size_t i = 2, d = 0;
  while (i < n && is_digit(b[i]) && d < 3) {
    i++;
    d++;
  }
  if (d == 0 || i >= n || b[i] != '.')
    return 0;
  i++;
  d = 0;
  while (i < n && is_digit(b[i]) && d < 3) {
    i++;
    d++;
  }
  if (d == 0 || (i < n && !is_blank(b[i]) && b[i] != '\r' && b[i] != '\n'))
    return 0;
  return i;
}

/* Nonzero if b[0..n) starts with "DDD" followed by ' ', '-', a line break
   or the end. */
static int starts_with_code(const uint8_t *b, size_t n) {
  return n >= 3 && is_digit(b[0]) && is_digit(b[1]) && is_digit(b[2]) &&
         (n == 3 || b[3] == ' ' || b[3] == '-' || b[3] == '\r' || b[3] == '\n');
}

int sl_filter_reply(uint8_t *out, sl_verdict v, const uint8_t *text,
                    size_t len) {
  if (!out || (!text && len > 0) ||
      (v != SL_VERDICT_TEMPFAIL && v != SL_VERDICT_REJECT))
    return SL_ERR_INVALID_ARGUMENT;
  uint8_t cls = v == SL_VERDICT_REJECT ? '5' : '4';
  uint8_t code[3];
  memcpy(code, cls == '5' ? "550" : "451", 3);
  const uint8_t *enh = NULL;
  size_t enh_len = 0;
  int filter_code = starts_with_code(text, len);
  if (filter_code && text[0] == cls) {
    /* the filter's code, unless 421 (sluice does not close) or a second
       digit beyond 5; its enhanced code either way */
    if (text[1] <= '5' && !(text[0] == '4' && text[1] == '2' && text[2] == '1'))
      memcpy(code, text, 3);
    size_t at = len > 3 ? 4 : 3;
    size_t e = enhanced_len(text + at, len - at, cls);
    if (e) {
      enh = text + at;
      enh_len = e;
    }
  }
  size_t o = 0;
  memcpy(out + o, code, 3);
  o += 3;
  out[o++] = ' ';
  if (enh) {
    memcpy(out + o, enh, enh_len);
    o += enh_len;
  } else {
    out[o++] = cls;
    memcpy(out + o, ".7.1", 4);
    o += 4;
  }
  out[o++] = ' ';
  size_t text_start = o;
  /* the text ends 2 bytes before the limit, for CRLF */
  const size_t text_end = SL_FILTER_REPLY_MAX - 2;
  int pending_space = 0;
  size_t i = 0;
  while (i < len && o < text_end) {
    int line_start = i == 0 || text[i - 1] == '\n';
    if (line_start && filter_code && starts_with_code(text + i, len - i)) {
      /* drop "DDD-" / "DDD " and a repeated enhanced code on each line of
         a multi-line reply */
      size_t j = i + 3;
      if (j < len && (text[j] == ' ' || text[j] == '-'))
        j++;
      size_t e = enhanced_len(text + j, len - j, '2');
      if (!e)
        e = enhanced_len(text + j, len - j, '4');
      if (!e)
        e = enhanced_len(text + j, len - j, '5');
      if (e) {
        j += e;
        while (j < len && is_blank(text[j]))
          j++;
      }
      i = j;
      continue;
    }
    uint8_t c = text[i++];
    if (c == '\r' || c == '\n') {
      while (i < len && (text[i] == '\r' || text[i] == '\n'))
        i++;
      pending_space = 1;
      continue;
    }
    if (is_blank(c)) {
      pending_space = 1;
      continue;
    }
    if (pending_space && o > text_start) {
      out[o++] = ' ';
      if (o >= text_end)
        break;
    }
    pending_space = 0;
    out[o++] = c < 0x20 || c >= 0x7f ? '?' : c;
  }
  while (o > text_start && out[o - 1] == ' ')
    o--;
  if (o == text_start) {
    const char *d = v == SL_VERDICT_REJECT
                        ? "Message rejected by content filter"
                        : "Message deferred by content filter, try again "
                          "later";
    size_t dl = strlen(d);
    memcpy(out + o, d, dl);
    o += dl;
  }
  out[o++] = '\r';
  out[o++] = '\n';
  return (int)o;
}

/* RFC 5322 2.2: a field name is printable US-ASCII other than ':'. */
static int name_ok(sl_bytes name) {
  if (name.len == 0 || name.len > SL_FILTER_HEADER_NAME_MAX)
    return 0;
  for (size_t i = 0; i < name.len; i++)
    if (name.p[i] < 33 || name.p[i] > 126 || name.p[i] == ':')
      return 0;
  return 1;
}

int sl_filter_header_check(sl_bytes name, sl_bytes value) {
  if ((!name.p && name.len) || (!value.p && value.len))
    return SL_ERR_INVALID_ARGUMENT;
  if (!name_ok(name))
    return SL_ERR_MALFORMED;
  const uint8_t *b = value.p;
  for (size_t i = 0; i < value.len; i++) {
    uint8_t c = b[i];
    if (c == 0)
      return SL_ERR_MALFORMED;
    if (c == '\r') {
      if (i + 1 >= value.len || b[i + 1] != '\n')
        return SL_ERR_MALFORMED;
      continue;
    }
    if (c == '\n' && (i + 1 >= value.len || !is_blank(b[i + 1])))
      return SL_ERR_MALFORMED;
  }
  return SL_OK;
}

long sl_filter_header_put(uint8_t *out, size_t cap, sl_bytes name,
                          sl_bytes value) {
  if (!out)
    return SL_ERR_INVALID_ARGUMENT;
  int rc = sl_filter_header_check(name, value);
  if (rc < 0)
    return rc;
  size_t lim = cap < SL_FILTER_HEADER_MAX ? cap : SL_FILTER_HEADER_MAX;
  size_t o = 0;
  if (name.len + 4 > lim)
    return SL_ERR_NOBUF;
  memcpy(out, name.p, name.len);
  o = name.len;
  out[o++] = ':';
  if (value.len == 0 || !is_blank(value.p[0]))
    out[o++] = ' ';
  for (size_t i = 0; i < value.len; i++) {
    uint8_t c = value.p[i];
    if (c == '\r')
      continue; /* the check guarantees an LF follows */
    if (c == '\n') {
      if (o + 2 > lim)
        return SL_ERR_NOBUF;
      out[o++] = '\r';
      out[o++] = '\n';
      continue;
    }
    if (o + 1 > lim)
      return SL_ERR_NOBUF;
    out[o++] = c;
  }
  if (o + 2 > lim)
    return SL_ERR_NOBUF;
  out[o++] = '\r';
  out[o++] = '\n';
  return (long)o;
}
