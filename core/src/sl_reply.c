/* sl_reply.c: upstream reply parsing and re-framing; see sl_reply.h. */
#include "sl_reply.h"

#include <string.h>

int sl_reply_scan(const uint8_t *buf, size_t len, uint32_t line_max,
                  uint32_t total_max, sl_reply *r) {
  size_t pos = 0;
  unsigned code = 0;
  uint32_t nlines = 0;
  for (;;) {
    size_t start = pos;
    /* The code: three digits, the first 2..5 (4.3.2), the same on every line
       of a multi-line reply (4.2.1). */
    for (size_t k = 0; k < 3; k++) {
      if (pos + k >= len)
        return 0;
      uint8_t c = buf[pos + k];
      if (c < '0' || c > '9' || (k == 0 && (c < '2' || c > '5')))
        return -1;
    }
    unsigned this_code = (unsigned)(buf[pos] - '0') * 100u +
                         (unsigned)(buf[pos + 1] - '0') * 10u +
                         (unsigned)(buf[pos + 2] - '0');
    if (nlines && this_code != code)
      return -1;
    code = this_code;
    pos += 3;
    if (pos >= len)
      return 0;
    uint8_t sep = buf[pos];
    int last;
    if (sep == '-')
      last = 0;
    else if (sep == ' ' || sep == '\r')
      last = 1;
    else
      return -1;
    if (sep != '\r')
      pos++;
    /* The rest of the line up to CRLF; no bare CR, LF or NUL. */
    for (;;) {
      if (pos - start + 2 > line_max || pos + 2 > total_max)
        return -1;
      if (pos >= len)
        return 0;
      uint8_t c = buf[pos];
      if (c == '\r') {
        if (pos + 1 >= len)
          return 0;
        if (buf[pos + 1] != '\n')
          return -1;
        pos += 2;
        break;
      }
      if (c == '\n' || c == 0)
        return -1;
      pos++;
    }
    nlines++;
    if (pos > total_max)
      return -1;
    if (last) {
      r->code = code;
      r->nlines = nlines;
      r->len = (uint32_t)pos;
      return 1;
    }
  }
}

int sl_reply_next_line(const uint8_t *buf, const sl_reply *r, size_t *pos,
                       const uint8_t **text, size_t *textlen) {
  size_t p = *pos;
  if (p >= r->len)
    return 0;
  size_t t = p + 3;
  if (buf[t] == '-' || buf[t] == ' ')
    t++;
  const uint8_t *cr = memchr(buf + t, '\r', r->len - t);
  size_t end = cr ? (size_t)(cr - buf) : r->len;
  *text = buf + t;
  *textlen = end - t;
  *pos = end + 2;
  return 1;
}

size_t sl_reply_put_line(uint8_t *out, unsigned code, int last,
                         const uint8_t *text, size_t textlen) {
  out[0] = (uint8_t)('0' + code / 100);
  out[1] = (uint8_t)('0' + code / 10 % 10);
  out[2] = (uint8_t)('0' + code % 10);
  out[3] = last ? ' ' : '-';
  for (size_t i = 0; i < textlen; i++) {
    uint8_t c = text[i];
    out[4 + i] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : c;
  }
  out[4 + textlen] = '\r';
  out[5 + textlen] = '\n';
  return textlen + 6;
}

size_t sl_put_decimal(uint8_t *out, uint64_t v) {
  uint8_t tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (uint8_t)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  return n;
}
