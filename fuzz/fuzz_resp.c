/*
 * fuzz_resp.c: the RESP2 codec (sluice/resp.h) that sluiced's Redis client
 * speaks.  Replies come from the network, so the parser must take anything.
 *
 * Byte 0 even: the rest is a stream of replies, parsed one after another
 * as the pipelined client does; each accepted reply must be within the
 * input, every proper prefix of it INCOMPLETE, its strings inside it, and
 * re-parsing it alone must give the same length.
 * Byte 0 odd: the rest is split at NUL bytes into command arguments; the
 * encoded command must parse back as an array with those arguments.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/errors.h"
#include "sluice/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_resp: %s\n", what);
  abort();
}

static void inside(const sl_resp_val *v, const uint8_t *b, long n) {
  if ((v->type == SL_RESP_SIMPLE || v->type == SL_RESP_ERROR ||
       v->type == SL_RESP_BULK) &&
      (v->s < b || v->s + v->len > b + n))
    fail("a string points outside its reply");
}

static void stream(const uint8_t *b, size_t n) {
  size_t off = 0;
  while (off < n) {
    sl_resp_reply r;
    long rc = sl_resp_parse(b + off, n - off, &r);
    if (rc == SL_ERR_INCOMPLETE || rc == SL_ERR_MALFORMED)
      return;
    if (rc <= 0 || (size_t)rc > n - off)
      fail("parse returned an impossible value");
    if (r.nelem > SL_RESP_ELEMS_MAX)
      fail("more elements than kept");
    if (r.top.type == SL_RESP_ARRAY && (int64_t)r.nelem > r.top.i)
      fail("more elements than the array has");
    inside(&r.top, b + off, rc);
    for (uint32_t i = 0; i < r.nelem; i++)
      inside(&r.elem[i], b + off, rc);
    if (rc <= 4096)
      for (long k = 0; k < rc; k++) {
        sl_resp_reply x;
        if (sl_resp_parse(b + off, (size_t)k, &x) != SL_ERR_INCOMPLETE)
          fail("a proper prefix of a reply is not INCOMPLETE");
      }
    off += (size_t)rc;
  }
}

static void command(const uint8_t *b, size_t n) {
  sl_resp_arg args[SL_RESP_ELEMS_MAX];
  size_t na = 0, start = 0;
  for (size_t i = 0; i <= n && na < SL_RESP_ELEMS_MAX; i++)
    if (i == n || b[i] == 0) {
      args[na].p = b + start;
      args[na].len = i - start;
      na++;
      start = i + 1;
    }
  static uint8_t out[65536];
  long len = sl_resp_encode(out, sizeof out, args, na);
  if (len == SL_ERR_NOBUF)
    return;
  if (len <= 0)
    fail("encode refused valid arguments");
  sl_resp_reply r;
  if (sl_resp_parse(out, (size_t)len, &r) != len)
    fail("an encoded command does not parse back whole");
  if (r.top.type != SL_RESP_ARRAY || r.top.i != (int64_t)na || r.nelem != na)
    fail("an encoded command parses as another shape");
  for (size_t i = 0; i < na; i++)
    if (r.elem[i].type != SL_RESP_BULK || r.elem[i].len != args[i].len ||
        (args[i].len && memcmp(r.elem[i].s, args[i].p, args[i].len)))
      fail("an argument changed in the round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  if (data[0] & 1)
    command(data + 1, size - 1);
  else
    stream(data + 1, size - 1);
  return 0;
}
