/*
 * sl_clamd_test.c: clamd INSTREAM framing and reply parsing
 * (sluice/clamd.h).
 *
 * Vectors in vectors/clamd/ were captured from Debian's clamd 1.x on
 * loopback by vectors/capture_clamd.py (a one-line .ndb signature written
 * by the script): the INSTREAM request of a clean message, and the replies
 * to it, to an EICAR message and to a message over StreamMaxLength.  The
 * request must be byte for byte what sluice's framing writes; every reply
 * must parse, in every split.  Inputs end right before a PROT_NONE page.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_guard.h"
#include "sl_test.h"
#include "sluice/clamd.h"

#define U(s) ((const uint8_t *)(s))
#define S(x) (x), sizeof(x) - 1
#define AREA (64 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

static void test_framing(void) {
  uint8_t b[16];
  CHECK_INT(sl_clamd_put_command(b), SL_CLAMD_COMMAND_LEN);
  CHECK_MEM(b, SL_CLAMD_COMMAND_LEN, "zINSTREAM\0", 10);
  CHECK_INT(sl_clamd_put_chunk_header(b, 0x01020304u), 4);
  CHECK_MEM(b, 4, "\x01\x02\x03\x04", 4);
  CHECK_INT(sl_clamd_put_chunk_header(b, 4096), 4);
  CHECK_MEM(b, 4, "\x00\x00\x10\x00", 4);
  CHECK_INT(sl_clamd_put_end(b), 4);
  CHECK_MEM(b, 4, "\0\0\0\0", 4);
}

/* The captured request: the command, 4096-byte chunks, the end marker;
   re-framed from its payload with sluice's functions it is identical. */
static void test_captured_request(void) {
  static uint8_t cap[8192], mine[8192], payload[8192];
  size_t n = sl_test_read_file("vectors/clamd/clean.request", cap, sizeof(cap));
  CHECK(n > SL_CLAMD_COMMAND_LEN + 8);
  /* take the payload out with an independent reading of the framing */
  size_t p = SL_CLAMD_COMMAND_LEN, plen = 0;
  for (;;) {
    CHECK(p + 4 <= n);
    if (p + 4 > n)
      return;
    uint32_t l = (uint32_t)cap[p] << 24 | (uint32_t)cap[p + 1] << 16 |
                 (uint32_t)cap[p + 2] << 8 | cap[p + 3];
    p += 4;
    if (l == 0)
      break;
    CHECK(p + l <= n);
    memcpy(payload + plen, cap + p, l);
    plen += l;
    p += l;
  }
  CHECK_INT(p, n);
  size_t o = sl_clamd_put_command(mine);
  for (size_t i = 0; i < plen; i += 4096) {
    size_t l = plen - i < 4096 ? plen - i : 4096;
    o += sl_clamd_put_chunk_header(mine + o, (uint32_t)l);
    memcpy(mine + o, payload + i, l);
    o += l;
  }
  o += sl_clamd_put_end(mine + o);
  CHECK_MEM(mine, o, cap, n);
}

static void check_reply_all_splits(const uint8_t *b, size_t n,
                                   sl_clamd_status st, sl_verdict v,
                                   const char *name) {
  sl_clamd_reply r;
  for (size_t k = 0; k < n; k++) {
    CHECK_INT(sl_clamd_parse_reply(guarded(b, k), k, &r), SL_ERR_INCOMPLETE);
  }
  memset(&r, 0x5a, sizeof(r));
  CHECK_INT(sl_clamd_parse_reply(guarded(b, n), n, &r), (long)n);
  CHECK_INT(r.status, st);
  CHECK_INT(r.verdict, v);
  CHECK_STR(r.name, name);
  CHECK_INT(r.name_len, strlen(name));
  CHECK_INT(r.name_truncated, 0);
}

static void test_captured_replies(void) {
  uint8_t b[256];
  size_t n = sl_test_read_file("vectors/clamd/clean.reply", b, sizeof(b));
  CHECK_MEM(b, n, "stream: OK\0", 11);
  check_reply_all_splits(b, n, SL_CLAMD_OK, SL_VERDICT_ACCEPT, "");
  n = sl_test_read_file("vectors/clamd/eicar.reply", b, sizeof(b));
  check_reply_all_splits(b, n, SL_CLAMD_FOUND, SL_VERDICT_REJECT,
                         "Sluice-Test-EICAR.UNOFFICIAL");
  n = sl_test_read_file("vectors/clamd/too_big.reply", b, sizeof(b));
  check_reply_all_splits(b, n, SL_CLAMD_SIZE_LIMIT, SL_VERDICT_TEMPFAIL, "");
}

static void test_reply_table(void) {
  struct {
    const char *in;
    size_t len;
    long rc;
    sl_clamd_status st;
    const char *name;
  } t[] = {
      {S("stream: OK\n"), 11, SL_CLAMD_OK, ""},
      {S("stream: OK\r\n"), 12, SL_CLAMD_OK, ""},
      {S("stream: OK\0trailing"), 11, SL_CLAMD_OK, ""},
      {S("stream: Win.Test.EICAR_HDB-1 FOUND\0"), 35, SL_CLAMD_FOUND,
       "Win.Test.EICAR_HDB-1"},
      {S("stream: Heuristics.Phishing.Email.SpoofedDomain FOUND\0"), 54,
       SL_CLAMD_FOUND, "Heuristics.Phishing.Email.SpoofedDomain"},
      /* control bytes in a name never reach the caller */
      {S("stream: Bad\x1bName\x7f\xff FOUND\0"), 25, SL_CLAMD_FOUND,
       "Bad?Name??"},
      {S("stream: two words FOUND\0"), 24, SL_CLAMD_FOUND, "two words"},
      {S("INSTREAM size limit exceeded. ERROR\0"), 36, SL_CLAMD_SIZE_LIMIT, ""},
      {S("stream: Can't allocate memory ERROR\0"), 36, SL_CLAMD_ERROR, ""},
      {S("UNKNOWN COMMAND ERROR\n"), 22, SL_CLAMD_ERROR, ""},
      /* not clamd */
      {S("stream: FOUND\0"), SL_ERR_MALFORMED, 0, ""},
      {S("stream:  FOUND\0"), SL_ERR_MALFORMED, 0, ""},
      {S("stream: OKAY\0"), SL_ERR_MALFORMED, 0, ""},
      {S("stream: \0"), SL_ERR_MALFORMED, 0, ""},
      {S("\0"), SL_ERR_MALFORMED, 0, ""},
      {S("HTTP/1.1 200 OK\r\n"), SL_ERR_MALFORMED, 0, ""},
      {S("PONG\0"), SL_ERR_MALFORMED, 0, ""},
      {S("ERROR\0"), SL_ERR_MALFORMED, 0, ""},
      /* incomplete */
      {S(""), SL_ERR_INCOMPLETE, 0, ""},
      {S("stream: OK"), SL_ERR_INCOMPLETE, 0, ""},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    sl_clamd_reply r;
    memset(&r, 0, sizeof(r));
    long rc = sl_clamd_parse_reply(guarded(t[i].in, t[i].len), t[i].len, &r);
    if (rc != t[i].rc)
      fprintf(stderr, "clamd case %zu: %ld\n", i, rc);
    CHECK_INT(rc, t[i].rc);
    if (rc > 0) {
      CHECK_INT(r.status, t[i].st);
      CHECK_STR(r.name, t[i].name);
    }
  }
  CHECK_INT(sl_clamd_parse_reply(U("x"), 1, NULL), SL_ERR_INVALID_ARGUMENT);
  sl_clamd_reply r;
  CHECK_INT(sl_clamd_parse_reply(NULL, 1, &r), SL_ERR_INVALID_ARGUMENT);
}

static void test_reply_bounds(void) {
  static uint8_t b[SL_CLAMD_REPLY_MAX + 16];
  sl_clamd_reply r;
  /* no terminator within the bound: malformed, not "read more" forever */
  memset(b, 'A', sizeof(b));
  CHECK_INT(sl_clamd_parse_reply(guarded(b, SL_CLAMD_REPLY_MAX - 1),
                                 SL_CLAMD_REPLY_MAX - 1, &r),
            SL_ERR_INCOMPLETE);
  CHECK_INT(sl_clamd_parse_reply(guarded(b, SL_CLAMD_REPLY_MAX),
                                 SL_CLAMD_REPLY_MAX, &r),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_clamd_parse_reply(guarded(b, sizeof(b)), sizeof(b), &r),
            SL_ERR_MALFORMED);
  /* the longest reply accepted, with a name cut to SL_CLAMD_NAME_MAX */
  memcpy(b, "stream: ", 8);
  memset(b + 8, 'N', SL_CLAMD_REPLY_MAX - 8 - 7);
  memcpy(b + SL_CLAMD_REPLY_MAX - 7, " FOUND\0", 7);
  CHECK_INT(sl_clamd_parse_reply(guarded(b, SL_CLAMD_REPLY_MAX),
                                 SL_CLAMD_REPLY_MAX, &r),
            SL_CLAMD_REPLY_MAX);
  CHECK_INT(r.status, SL_CLAMD_FOUND);
  CHECK_INT(r.name_len, SL_CLAMD_NAME_MAX);
  CHECK_INT(r.name_truncated, 1);
  CHECK_INT(strlen(r.name), SL_CLAMD_NAME_MAX);
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_framing);
  SL_RUN(test_captured_request);
  SL_RUN(test_captured_replies);
  SL_RUN(test_reply_table);
  SL_RUN(test_reply_bounds);
  return sl_test_summary();
}
