/*
 * sl_reply_test.c: upstream reply scanning and re-framing (sl_reply.h).
 *
 * A table of replies with the expected verdict, every prefix of every valid
 * one (incomplete, never invalid), line and total limits at exactly and one
 * over, line iteration, and sl_reply_put_line's sanitising, whose output must
 * scan as a valid reply.  Inputs end right before a PROT_NONE page.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_guard.h"
#include "sl_reply.h"
#include "sl_test.h"

#define U(s) ((const uint8_t *)(s))
#define S(x) (x), sizeof(x) - 1
#define AREA (1024 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

static int scan(const void *p, size_t n, uint32_t line_max, uint32_t total_max,
                sl_reply *r) {
  return sl_reply_scan(guarded(p, n), n, line_max, total_max, r);
}

typedef struct rcase {
  const char *in;
  size_t len;
  int rc;
  unsigned code, nlines;
  size_t replylen; /* 0: the whole input */
} rcase;

static const rcase cases[] = {
    {S("250 OK\r\n"), 1, 250, 1, 0},
    {S("250\r\n"), 1, 250, 1, 0},
    {S("250 \r\n"), 1, 250, 1, 0},
    {S("220 mx.example ESMTP\r\n"), 1, 220, 1, 0},
    {S("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), 1, 250, 3, 0},
    {S("250-\r\n250\r\n"), 1, 250, 2, 0},
    {S("250-a\r\n250 b\r\n354 go\r\n"), 1, 250, 2, 14}, /* the next reply */
    {S("599 x\r\n"), 1, 599, 1, 0},
    {S("200 x\r\n"), 1, 200, 1, 0},
    {S("421 4.4.2 bye\r\n"), 1, 421, 1, 0},
    {S("250 tab\there \xff\r\n"), 1, 250, 1, 0},
    /* incomplete */
    {S(""), 0, 0, 0, 0},
    {S("25"), 0, 0, 0, 0},
    {S("250"), 0, 0, 0, 0},
    {S("250 OK"), 0, 0, 0, 0},
    {S("250 OK\r"), 0, 0, 0, 0},
    {S("250-a\r\n"), 0, 0, 0, 0},
    {S("250-a\r\n250"), 0, 0, 0, 0},
    /* invalid */
    {S("150 x\r\n"), -1, 0, 0, 0},
    {S("650 x\r\n"), -1, 0, 0, 0},
    {S("050 x\r\n"), -1, 0, 0, 0},
    {S("2x0 x\r\n"), -1, 0, 0, 0},
    {S("25x x\r\n"), -1, 0, 0, 0},
    {S("a50 x\r\n"), -1, 0, 0, 0},
    {S(" 250 x\r\n"), -1, 0, 0, 0},
    {S("250x\r\n"), -1, 0, 0, 0},
    {S("250_x\r\n"), -1, 0, 0, 0},
    {S("250\n"), -1, 0, 0, 0},
    {S("250 OK\n"), -1, 0, 0, 0},
    {S("250 O\rK\r\n"), -1, 0, 0, 0},
    {S("250 OK\r\r\n"), -1, 0, 0, 0},
    {S("250 O\0K\r\n"), -1, 0, 0, 0},
    {S("250 O\nK\r\n"), -1, 0, 0, 0},
    {S("250-a\r\n251 b\r\n"), -1, 0, 0, 0},
    {S("250-a\r\n350 b\r\n"), -1, 0, 0, 0},
    {S("250-a\r\n251"), -1, 0, 0, 0},
    {S("250-a\r\n\r\n"), -1, 0, 0, 0},
    {S("250-a\n250 b\r\n"), -1, 0, 0, 0},
    {S("2500 x\r\n"), -1, 0, 0, 0},
    {S("25 x\r\n"), -1, 0, 0, 0},
};

static void test_table(void) {
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const rcase *k = &cases[t];
    sl_reply r = {0, 0, 0};
    int rc = scan(k->in, k->len, 512, 4096, &r);
    if (rc != k->rc)
      fprintf(stderr, "case %zu \"%.*s\": rc %d, want %d\n", t, (int)k->len,
              k->in, rc, k->rc);
    CHECK_INT(rc, k->rc);
    if (rc == 1 && k->rc == 1) {
      CHECK_INT(r.code, k->code);
      CHECK_INT(r.nlines, k->nlines);
      CHECK_INT(r.len, k->replylen ? k->replylen : k->len);
    }
    /* every prefix of a valid (or incomplete) input is incomplete */
    if (k->rc >= 0) {
      size_t end = k->rc == 1 ? (k->replylen ? k->replylen : k->len) : k->len;
      for (size_t n = 0; n < end; n++) {
        int prc = scan(k->in, n, 512, 4096, &r);
        if (prc != 0)
          fprintf(stderr, "case %zu: prefix %zu gives %d\n", t, n, prc);
        CHECK_INT(prc, 0);
      }
    }
    /* an invalid input stays invalid whatever follows */
    if (k->rc == -1) {
      char buf[64];
      memcpy(buf, k->in, k->len);
      memcpy(buf + k->len, "250 ok\r\n", 8);
      CHECK_INT(scan(buf, k->len + 8, 512, 4096, &r), -1);
    }
  }
}

/* line_max counts the CRLF; total_max the whole reply. */
static void test_limits(void) {
  sl_reply r;
  static char buf[4096];
  /* a 64-byte line: "250 " + 58 + CRLF */
  memcpy(buf, "250 ", 4);
  memset(buf + 4, 'x', 58);
  memcpy(buf + 62, "\r\n", 2);
  CHECK_INT(scan(buf, 64, 64, 4096, &r), 1);
  CHECK_INT(r.len, 64);
  CHECK_INT(scan(buf, 64, 63, 4096, &r), -1);
  for (size_t n = 0; n < 64; n++)
    CHECK_INT(scan(buf, n, 64, 4096, &r), 0);
  /* one over is refused as soon as it cannot fit, even incomplete */
  memset(buf + 4, 'x', 59);
  memcpy(buf + 63, "\r\n", 2);
  CHECK_INT(scan(buf, 65, 64, 4096, &r), -1);
  CHECK_INT(scan(buf, 63, 64, 4096, &r), -1);
  CHECK_INT(scan(buf, 62, 64, 4096, &r), 0);
  /* a bare "250" line at the limit */
  CHECK_INT(scan("250\r\n", 5, 5, 5, &r), 1);
  CHECK_INT(scan("250\r\n", 5, 4, 5, &r), -1);
  CHECK_INT(scan("250\r\n", 5, 5, 4, &r), -1);

  /* total: three 10-byte lines = 30 */
  static const char three[] = "250-aaaa\r\n250-bbbb\r\n250 cccc\r\n";
  CHECK_INT(scan(three, 30, 10, 30, &r), 1);
  CHECK_INT(r.nlines, 3);
  CHECK_INT(scan(three, 30, 10, 29, &r), -1);
  CHECK_INT(scan(three, 30, 9, 30, &r), -1);
  for (size_t n = 0; n < 30; n++)
    CHECK_INT(scan(three, n, 10, 30, &r), 0);
  /* the total check does not wait for the final line */
  CHECK_INT(scan(three, 24, 10, 20, &r), -1);

  /* the RFC default line limit, 512 with CRLF */
  static char big[600];
  memcpy(big, "250 ", 4);
  memset(big + 4, 'y', 506);
  memcpy(big + 510, "\r\n", 2);
  CHECK_INT(scan(big, 512, 512, 13312, &r), 1);
  memset(big + 4, 'y', 507);
  memcpy(big + 511, "\r\n", 2);
  CHECK_INT(scan(big, 513, 512, 13312, &r), -1);
}

/* A reply longer than 65535 lines must not wrap the line counter into
   skipping the code-change check. */
static void test_many_lines(void) {
  const size_t lines = 65536;
  size_t n = lines * 6 + 7;
  uint8_t *buf = malloc(n);
  CHECK(buf != NULL);
  if (!buf)
    return;
  for (size_t k = 0; k < lines; k++)
    memcpy(buf + 6 * k, "250-\r\n", 6);
  memcpy(buf + 6 * lines, "250 x\r\n", 7);
  sl_reply r;
  /* with the default total limit this never gets that far */
  CHECK_INT(sl_reply_scan(buf, n, 512, 13312, &r), -1);
  /* Regression (bug 4, fixed): sl_reply.c counts lines in a uint16_t; with a
     total_max that allows more than 65535 lines (reply_max is only bounded by
           buffer_size - 512, up to 1 GiB) the counter wraps to 0 and the
           "same code on every line" check (`nlines && this_code != code`) is
           skipped: 65536 x "250-\r\n" then "251 x\r\n" scans as a valid 251
           reply with nlines 1. */
  memcpy(buf + 6 * lines, "251 x\r\n", 7);
  CHECK_INT(sl_reply_scan(buf, n, 512, (uint32_t)n, &r), -1);
  memcpy(buf + 6 * lines, "250 x\r\n", 7);
  if (sl_reply_scan(buf, n, 512, (uint32_t)n, &r) == 1)
    CHECK_INT(r.nlines, lines + 1); /* or refused as too many lines */
  free(buf);
}

static void test_next_line(void) {
  static const char ehlo[] =
      "250-mx.example says hi\r\n250-PIPELINING\r\n250-\r\n250 SIZE 10\r\n";
  const uint8_t *g = guarded(ehlo, sizeof ehlo - 1);
  sl_reply r;
  CHECK_INT(sl_reply_scan(g, sizeof ehlo - 1, 512, 4096, &r), 1);
  CHECK_INT(r.nlines, 4);
  static const char *want[] = {"mx.example says hi", "PIPELINING", "",
                               "SIZE 10"};
  size_t pos = 0, k = 0;
  const uint8_t *text;
  size_t tl;
  while (sl_reply_next_line(g, &r, &pos, &text, &tl)) {
    CHECK(k < 4);
    if (k < 4)
      CHECK_MEM(text, tl, want[k], strlen(want[k]));
    CHECK(text >= g && text + tl <= g + r.len);
    k++;
  }
  CHECK_INT(k, 4);
  CHECK_INT(pos, r.len);
  CHECK_INT(sl_reply_next_line(g, &r, &pos, &text, &tl), 0);

  /* "250\r\n": one empty line; "250 \r\n": one empty line too */
  g = guarded("250\r\n", 5);
  CHECK_INT(sl_reply_scan(g, 5, 512, 4096, &r), 1);
  pos = 0;
  CHECK_INT(sl_reply_next_line(g, &r, &pos, &text, &tl), 1);
  CHECK_INT(tl, 0);
  CHECK_INT(sl_reply_next_line(g, &r, &pos, &text, &tl), 0);
  g = guarded("250 \r\n", 6);
  CHECK_INT(sl_reply_scan(g, 6, 512, 4096, &r), 1);
  pos = 0;
  CHECK_INT(sl_reply_next_line(g, &r, &pos, &text, &tl), 1);
  CHECK_INT(tl, 0);
  CHECK_INT(sl_reply_next_line(g, &r, &pos, &text, &tl), 0);

  /* a following reply in the buffer is not iterated */
  static const char two[] = "250 a\r\n354 b\r\n";
  CHECK_INT(sl_reply_scan(U(two), sizeof two - 1, 512, 4096, &r), 1);
  pos = 0;
  k = 0;
  while (sl_reply_next_line(U(two), &r, &pos, &text, &tl))
    k++;
  CHECK_INT(k, 1);
}

static void test_put_line(void) {
  uint8_t out[128];
  CHECK_INT(sl_reply_put_line(out, 250, 1, U("OK"), 2), 8);
  CHECK_MEM(out, 8, "250 OK\r\n", 8);
  CHECK_INT(sl_reply_put_line(out, 421, 0, U(""), 0), 6);
  CHECK_MEM(out, 6, "421-\r\n", 6);
  /* control bytes other than TAB become '?'; high bytes stay */
  static const char dirty[] = "a\r\nb\0c\x1b[31m\x7f\td\xc3\xa9\n";
  size_t dl = sizeof dirty - 1;
  size_t n = sl_reply_put_line(out, 550, 1, U(dirty), dl);
  CHECK_INT(n, dl + 6);
  CHECK_MEM(out, n, "550 a??b?c?[31m?\td\xc3\xa9?\r\n", dl + 6);
  sl_reply r;
  CHECK_INT(sl_reply_scan(guarded(out, n), n, 512, 4096, &r), 1);
  CHECK_INT(r.code, 550);
  CHECK_INT(r.len, n);

  /* every single byte value, in a multi-line reply, re-scans valid and the
     lines come back with the same length */
  uint8_t buf[256 * 8];
  size_t o = 0;
  for (unsigned b = 0; b < 256; b++) {
    uint8_t c = (uint8_t)b;
    o += sl_reply_put_line(buf + o, 451, b == 255, &c, 1);
  }
  CHECK_INT(sl_reply_scan(guarded(buf, o), o, 512, (uint32_t)o, &r), 1);
  CHECK_INT(r.nlines, 256);
  CHECK_INT(r.code, 451);
  const uint8_t *g = guarded(buf, o);
  size_t pos = 0, k = 0;
  const uint8_t *text;
  size_t tl;
  while (sl_reply_next_line(g, &r, &pos, &text, &tl)) {
    CHECK_INT(tl, 1);
    uint8_t want = (k < 0x20 && k != '\t') || k == 0x7f ? '?' : (uint8_t)k;
    CHECK_INT(text[0], want);
    k++;
  }
  CHECK_INT(k, 256);
  /* every code 200..599 */
  for (unsigned code = 200; code < 600; code++) {
    n = sl_reply_put_line(out, code, 1, U("x"), 1);
    CHECK_INT(sl_reply_scan(guarded(out, n), n, 512, 4096, &r), 1);
    CHECK_INT(r.code, code);
  }
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_table);
  SL_RUN(test_limits);
  SL_RUN(test_many_lines);
  SL_RUN(test_next_line);
  SL_RUN(test_put_line);
  return sl_test_summary();
}
