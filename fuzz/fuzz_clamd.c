/*
 * fuzz_clamd.c: clamd INSTREAM reply parsing and framing (sluice/clamd.h).
 *
 * Byte 0 picks a chunk size for the framing round trip; the rest is both
 * a clamd reply and a message body.  The parser is compared with the
 * contract: a complete reply ends at the first NUL or LF within
 * SL_CLAMD_REPLY_MAX bytes, every shorter prefix is incomplete, the status
 * and verdict agree with the text, and the virus name is printable, NUL-
 * terminated and at most SL_CLAMD_NAME_MAX bytes.  The body framed with
 * the chunk functions must read back (by an independent reader) as the
 * same bytes, with the end marker last.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/clamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why) {
  fprintf(stderr, "fuzz_clamd: %s\n", why);
  abort();
}

static void check_reply(const uint8_t *b, size_t n) {
  sl_clamd_reply r;
  long rc = sl_clamd_parse_reply(b, n, &r);
  size_t lim = n < SL_CLAMD_REPLY_MAX ? n : SL_CLAMD_REPLY_MAX;
  size_t end = 0;
  while (end < lim && b[end] != 0 && b[end] != '\n')
    end++;
  if (end == lim) {
    long want = n < SL_CLAMD_REPLY_MAX ? SL_ERR_INCOMPLETE : SL_ERR_MALFORMED;
    if (rc != want)
      fail("no terminator: wrong result");
    return;
  }
  if (rc == SL_ERR_INCOMPLETE)
    fail("terminator seen but incomplete");
  if (rc < 0) {
    if (rc != SL_ERR_MALFORMED)
      fail("unexpected error");
    return;
  }
  if ((size_t)rc != end + 1)
    fail("length is not up to the terminator");
  size_t l = end;
  if (l && b[l - 1] == '\r')
    l--;
  int err = l >= 6 && memcmp(b + l - 6, " ERROR", 6) == 0;
  switch (r.status) {
  case SL_CLAMD_OK:
    if (l != 10 || memcmp(b, "stream: OK", 10) != 0 ||
        r.verdict != SL_VERDICT_ACCEPT)
      fail("OK for something else");
    break;
  case SL_CLAMD_FOUND:
    if (err || l < 15 || memcmp(b, "stream: ", 8) != 0 ||
        memcmp(b + l - 6, " FOUND", 6) != 0 || r.verdict != SL_VERDICT_REJECT)
      fail("FOUND for something else");
    if (r.name_len == 0)
      fail("FOUND without a name");
    break;
  case SL_CLAMD_SIZE_LIMIT:
  case SL_CLAMD_ERROR:
    if (!err || r.verdict != SL_VERDICT_TEMPFAIL)
      fail("ERROR for something else");
    break;
  default:
    fail("unknown status");
  }
  if (r.status != SL_CLAMD_FOUND && r.name_len != 0)
    fail("name without FOUND");
  if (r.name_len > SL_CLAMD_NAME_MAX || strlen(r.name) != r.name_len)
    fail("name length");
  for (size_t i = 0; i < r.name_len; i++)
    if (r.name[i] < 0x20 || r.name[i] > 0x7e)
      fail("control byte in the name");
  for (size_t k = 0; k <= end; k++) {
    sl_clamd_reply p;
    if (sl_clamd_parse_reply(b, k, &p) != SL_ERR_INCOMPLETE)
      fail("prefix not incomplete");
  }
}

static void check_framing(const uint8_t *b, size_t n, size_t chunk) {
  size_t nchunks = (n + chunk - 1) / chunk;
  size_t cap = SL_CLAMD_COMMAND_LEN + n + 4 * nchunks + 4;
  uint8_t *out = malloc(cap);
  if (!out)
    abort();
  size_t o = sl_clamd_put_command(out);
  for (size_t i = 0; i < n; i += chunk) {
    size_t l = n - i < chunk ? n - i : chunk;
    o += sl_clamd_put_chunk_header(out + o, (uint32_t)l);
    memcpy(out + o, b + i, l);
    o += l;
  }
  o += sl_clamd_put_end(out + o);
  if (o != cap || memcmp(out, "zINSTREAM\0", 10) != 0)
    fail("framing length or command");
  size_t p = 10, got = 0;
  for (;;) {
    if (p + 4 > o)
      fail("framing cut");
    uint32_t l = (uint32_t)out[p] << 24 | (uint32_t)out[p + 1] << 16 |
                 (uint32_t)out[p + 2] << 8 | out[p + 3];
    p += 4;
    if (l == 0)
      break;
    if (l > chunk || p + l > o || memcmp(out + p, b + got, l) != 0)
      fail("framing payload");
    p += l;
    got += l;
  }
  if (p != o || got != n)
    fail("framing end");
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = 1 + (size_t)data[0] * 16;
  check_reply(data + 1, size - 1);
  check_framing(data + 1, size - 1, chunk);
  return 0;
}
