/*
 * sl_resp.c: RESP2 encoder and parser (see sluice/resp.h).
 *
 * The parser walks the reply once with an explicit stack of remaining
 * element counts instead of recursion, so nesting costs no C stack and
 * its bound is a constant.
 */
#include "sluice/resp.h"

#include <limits.h>
#include <string.h>

#include "sluice/errors.h"

static size_t put_dec(uint8_t *o, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    o[i] = (uint8_t)tmp[n - 1 - i];
  return n;
}

static size_t dec_len(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    n++;
  }
  return n;
}

long sl_resp_encode(uint8_t *out, size_t cap, const sl_resp_arg *args,
                    size_t n) {
  if (args == NULL || n == 0 || n > SL_RESP_ARRAY_MAX ||
      (out == NULL && cap > 0))
    return SL_ERR_INVALID_ARGUMENT;
  size_t need = 1 + dec_len(n) + 2;
  for (size_t i = 0; i < n; i++) {
    if (args[i].p == NULL && args[i].len > 0)
      return SL_ERR_INVALID_ARGUMENT;
    if (args[i].len > SIZE_MAX / 2)
      return SL_ERR_NOBUF;
    need += 1 + dec_len(args[i].len) + 2 + args[i].len + 2;
    if (need > cap)
      return SL_ERR_NOBUF;
  }
  if (need > cap || need > (size_t)LONG_MAX)
    return SL_ERR_NOBUF;
  size_t o = 0;
  out[o++] = '*';
  o += put_dec(out + o, n);
  out[o++] = '\r';
  out[o++] = '\n';
  for (size_t i = 0; i < n; i++) {
    out[o++] = '$';
    o += put_dec(out + o, args[i].len);
    out[o++] = '\r';
    out[o++] = '\n';
    if (args[i].len)
      memcpy(out + o, args[i].p, args[i].len);
    o += args[i].len;
    out[o++] = '\r';
    out[o++] = '\n';
  }
  return (long)o;
}

/* The header line at buf[*pos]: its type byte, and the bytes up to CRLF.
   0, SL_ERR_INCOMPLETE or SL_ERR_MALFORMED. */
static int line(const uint8_t *buf, size_t len, size_t *pos, uint8_t *type,
                const uint8_t **text, size_t *tlen) {
  size_t p = *pos;
  if (p >= len)
    return SL_ERR_INCOMPLETE;
  *type = buf[p];
  size_t end = p + 1 + SL_RESP_LINE_MAX;
  for (size_t i = p + 1; i < len && i < end; i++) {
    if (buf[i] == '\n')
      return SL_ERR_MALFORMED; /* a bare LF */
    if (buf[i] != '\r')
      continue;
    if (i + 1 >= len)
      return SL_ERR_INCOMPLETE;
    if (buf[i + 1] != '\n')
      return SL_ERR_MALFORMED;
    *text = buf + p + 1;
    *tlen = i - (p + 1);
    *pos = i + 2;
    return 0;
  }
  return len < end ? SL_ERR_INCOMPLETE : SL_ERR_MALFORMED;
}

static int parse_int(const uint8_t *t, size_t n, int64_t *out) {
  int neg = 0;
  if (n && t[0] == '-') {
    neg = 1;
    t++;
    n--;
  }
  if (n == 0 || n > 19)
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (t[i] < '0' || t[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(t[i] - '0');
  }
  if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
    return -1;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

long sl_resp_parse(const uint8_t *buf, size_t len, sl_resp_reply *r) {
  if (r == NULL || (buf == NULL && len > 0))
    return SL_ERR_INVALID_ARGUMENT;
  sl_resp_reply out;
  memset(&out, 0, sizeof out);
  /* left[d]: elements still to read of the array open at depth d */
  int64_t left[SL_RESP_DEPTH_MAX + 1];
  int depth = 0;
  size_t pos = 0;
  int first = 1;
  for (;;) {
    uint8_t type;
    const uint8_t *t = NULL;
    size_t tn = 0;
    int rc = line(buf, len, &pos, &type, &t, &tn);
    if (rc)
      return rc;
    sl_resp_val v;
    memset(&v, 0, sizeof v);
    v.type = type;
    int opens = 0;
    switch (type) {
    case SL_RESP_SIMPLE:
    case SL_RESP_ERROR:
      v.s = t;
      v.len = (uint32_t)tn;
      break;
    case SL_RESP_INT:
      if (parse_int(t, tn, &v.i))
        return SL_ERR_MALFORMED;
      break;
    case SL_RESP_BULK: {
      int64_t n;
      if (parse_int(t, tn, &n) || n < -1 || n > SL_RESP_BULK_MAX)
        return SL_ERR_MALFORMED;
      if (n == -1) {
        v.type = SL_RESP_NIL;
        break;
      }
      if (len - pos < (size_t)n + 2)
        return SL_ERR_INCOMPLETE;
      if (buf[pos + (size_t)n] != '\r' || buf[pos + (size_t)n + 1] != '\n')
        return SL_ERR_MALFORMED;
      v.s = buf + pos;
      v.len = (uint32_t)n;
      pos += (size_t)n + 2;
      break;
    }
    case SL_RESP_ARRAY: {
      int64_t n;
      if (parse_int(t, tn, &n) || n < -1 || n > SL_RESP_ARRAY_MAX)
        return SL_ERR_MALFORMED;
      if (n == -1) {
        v.type = SL_RESP_NIL;
        break;
      }
      v.i = n;
      if (n > 0) {
        if (depth == SL_RESP_DEPTH_MAX)
          return SL_ERR_MALFORMED;
        opens = 1;
      }
      break;
    }
    default:
      return SL_ERR_MALFORMED;
    }
    if (first) {
      out.top = v;
      first = 0;
    } else if (depth == 1 && out.nelem < SL_RESP_ELEMS_MAX) {
      out.elem[out.nelem++] = v;
    }
    if (depth > 0)
      left[depth]--;
    if (opens)
      left[++depth] = v.i;
    while (depth > 0 && left[depth] == 0)
      depth--;
    if (depth == 0)
      break;
  }
  *r = out;
  return (long)pos;
}
