/*
 * sl_clamd.c: clamd INSTREAM framing and reply parsing (sluice/clamd.h).
 */
#include "sluice/clamd.h"

#include <string.h>

size_t sl_clamd_put_command(uint8_t *out) {
  memcpy(out, SL_CLAMD_COMMAND, SL_CLAMD_COMMAND_LEN); /* with its NUL */
  return SL_CLAMD_COMMAND_LEN;
}

size_t sl_clamd_put_chunk_header(uint8_t *out, uint32_t len) {
  out[0] = (uint8_t)(len >> 24);
  out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);
  out[3] = (uint8_t)len;
  return SL_CLAMD_CHUNK_HEADER_LEN;
}

size_t sl_clamd_put_end(uint8_t *out) {
  return sl_clamd_put_chunk_header(out, 0);
}

static int ends_with(const uint8_t *b, size_t n, const char *s) {
  size_t l = strlen(s);
  return n >= l && memcmp(b + n - l, s, l) == 0;
}

static int starts_with(const uint8_t *b, size_t n, const char *s) {
  size_t l = strlen(s);
  return n >= l && memcmp(b, s, l) == 0;
}

long sl_clamd_parse_reply(const uint8_t *buf, size_t len, sl_clamd_reply *r) {
  if (!r || (!buf && len > 0))
    return SL_ERR_INVALID_ARGUMENT;
  size_t scan = len < SL_CLAMD_REPLY_MAX ? len : SL_CLAMD_REPLY_MAX;
  size_t end = 0;
  while (end < scan && buf[end] != 0 && buf[end] != '\n')
    end++;
  if (end == scan)
    return len < SL_CLAMD_REPLY_MAX ? SL_ERR_INCOMPLETE : SL_ERR_MALFORMED;
  size_t used = end + 1;
  size_t n = end;
  if (n > 0 && buf[n - 1] == '\r')
    n--;
  sl_clamd_status st;
  const uint8_t *name = NULL;
  size_t name_len = 0;
  /* "stream: " is the name clamd gives an INSTREAM scan; "ERROR" lines
     may or may not carry it */
  if (ends_with(buf, n, " ERROR")) {
    st = starts_with(buf, n, "INSTREAM size limit exceeded")
             ? SL_CLAMD_SIZE_LIMIT
             : SL_CLAMD_ERROR;
  } else if (starts_with(buf, n, "stream: ")) {
    const uint8_t *rest = buf + 8;
    size_t rl = n - 8;
    if (rl == 2 && memcmp(rest, "OK", 2) == 0) {
      st = SL_CLAMD_OK;
    } else if (ends_with(rest, rl, " FOUND") && rl > 6) {
      st = SL_CLAMD_FOUND;
      name = rest;
      name_len = rl - 6;
      while (name_len > 0 && name[name_len - 1] == ' ')
        name_len--;
      if (name_len == 0)
        return SL_ERR_MALFORMED;
    } else {
      return SL_ERR_MALFORMED;
    }
  } else {
    return SL_ERR_MALFORMED;
  }
  memset(r, 0, sizeof(*r));
  r->status = st;
  r->verdict = st == SL_CLAMD_OK      ? SL_VERDICT_ACCEPT
               : st == SL_CLAMD_FOUND ? SL_VERDICT_REJECT
                                      : SL_VERDICT_TEMPFAIL;
  size_t keep = name_len;
  if (keep > SL_CLAMD_NAME_MAX) {
    keep = SL_CLAMD_NAME_MAX;
    r->name_truncated = 1;
  }
  for (size_t i = 0; i < keep; i++) {
    uint8_t c = name[i];
    r->name[i] = (char)(c < 0x20 || c >= 0x7f ? '?' : c);
  }
  r->name[keep] = 0;
  r->name_len = keep;
  return (long)used;
}
