/*
 * fuzz_reply.c: upstream reply parsing and re-framing (sl_reply.h).
 *
 * sl_reply_scan is compared with a reference scanner written from RFC 5321
 * 4.2 and the contract (code 2xx..5xx, one code, '-' / ' ' / CRLF, CRLF
 * only, no NUL, line and total bounds): same verdict, and for a complete
 * reply the same code, line count and length.  Every proper prefix of a
 * complete reply is "need more".  The reply is then re-framed line by line
 * with sl_reply_next_line + sl_reply_put_line, and that output must itself
 * scan as one valid reply with the same code and number of lines and no
 * control bytes but TAB in its text (guarantee 5).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 complete (code, nlines, len set), 0 need more, -1 invalid.  *len_why
   is set when -1 is only because the line or reply cannot fit any more (a
   scanner may also report that later, as 0, until the line ends). */
static int ref_scan(const uint8_t *b, size_t n, uint32_t line_max,
                    uint32_t total_max, unsigned *code, unsigned *nlines,
                    size_t *len, int *len_why) {
  size_t col = 0;
  unsigned lines = 0, first = 0, cur = 0;
  int last = 0;
  *len_why = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = b[i];
    if (col < 3) {
      if (c < '0' || c > '9' || (col == 0 && (c < '2' || c > '5')))
        return -1;
      cur = cur * 10 + (unsigned)(c - '0');
      col++;
      if (col == 3 && lines && cur != first)
        return -1;
      continue;
    }
    if (col == 3 && c != '\r') {
      if (c != '-' && c != ' ')
        return -1;
      last = c == ' ';
      col++;
    } else if (c == '\r') {
      if (col == 3)
        last = 1;
      if (col + 2 > line_max || i + 2 > total_max) {
        *len_why = 1;
        return -1;
      }
      if (i + 1 == n)
        return 0;
      if (b[i + 1] != '\n')
        return -1;
      lines++;
      if (!first)
        first = cur;
      i++;
      if (last) {
        *code = first;
        *nlines = lines;
        *len = i + 1;
        return 1;
      }
      col = 0;
      cur = 0;
      continue;
    } else if (c == '\n' || c == 0) {
      return -1;
    } else {
      col++;
    }
    if (col + 2 > line_max || i + 1 + 2 > total_max) {
      *len_why = 1;
      return -1;
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint32_t line_max = 8u + data[0] * 4u;
  uint32_t total_max = line_max + data[1] * 16u;
  const uint8_t *b = data + 2;
  size_t n = size - 2;

  sl_reply r;
  memset(&r, 0, sizeof(r));
  int rc = sl_reply_scan(b, n, line_max, total_max, &r);
  unsigned code = 0, nlines = 0;
  size_t len = 0;
  int len_why;
  int want =
      ref_scan(b, n, line_max, total_max, &code, &nlines, &len, &len_why);
  int agree = rc == want || (rc == 0 && want == -1 && len_why);
  if (!agree ||
      (rc == 1 && (r.code != code || r.nlines != nlines || r.len != len))) {
    fprintf(stderr,
            "fuzz_reply: scan %d (code %u lines %u len %u), reference %d "
            "(code %u lines %u len %zu), line_max %u total_max %u\n",
            rc, r.code, r.nlines, r.len, want, code, nlines, len, line_max,
            total_max);
    abort();
  }
  if (rc != 1)
    return 0;
  if (r.len <= 2048) {
    for (size_t k = 0; k < r.len; k++) {
      sl_reply p;
      if (sl_reply_scan(b, k, line_max, total_max, &p) != 0) {
        fprintf(stderr, "fuzz_reply: prefix of %zu bytes not incomplete\n", k);
        abort();
      }
    }
  }
  /* re-frame and scan again */
  uint8_t *out = malloc(r.len + 6u * r.nlines + 8);
  if (!out)
    abort();
  size_t pos = 0, o = 0;
  const uint8_t *text;
  size_t tl;
  unsigned lines = 0;
  while (sl_reply_next_line(b, &r, &pos, &text, &tl)) {
    if (text < b || text + tl > b + r.len)
      abort();
    lines++;
    o += sl_reply_put_line(out + o, r.code, lines == r.nlines, text, tl);
  }
  if (lines != r.nlines)
    abort();
  for (size_t k = 0; k < o; k++) {
    uint8_t c = out[k];
    if (c < 0x20 && c != '\t' &&
        !((c == '\r' && k + 1 < o && out[k + 1] == '\n') ||
          (c == '\n' && k && out[k - 1] == '\r'))) {
      fprintf(stderr, "fuzz_reply: control byte 0x%02x in re-framed output\n",
              c);
      abort();
    }
  }
  sl_reply r2;
  if (sl_reply_scan(out, o, UINT32_MAX, UINT32_MAX, &r2) != 1 ||
      r2.code != r.code || r2.nlines != r.nlines || r2.len != o) {
    fprintf(stderr, "fuzz_reply: re-framed reply does not scan as itself\n");
    abort();
  }
  free(out);
  return 0;
}
