/*
 * sl_resp_test.c: the RESP2 encoder and parser, on good replies, every
 * prefix of them, and hostile input.  Parses run on copies flush against a
 * PROT_NONE guard page, so a read past len crashes the test.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sl_guard.h"
#include "sl_test.h"
#include "sluice/errors.h"
#include "sluice/resp.h"

static uint8_t *guard_end;

static long parse_n(const void *data, size_t len, sl_resp_reply *r) {
  return sl_resp_parse(sl_guard_copy(guard_end, data, len), len, r);
}

static long parse(const char *s, sl_resp_reply *r) {
  return parse_n(s, strlen(s), r);
}

/* Every proper prefix asks for more; the whole parses to its length. */
static void check_whole(const char *s) {
  size_t len = strlen(s);
  sl_resp_reply r;
  for (size_t n = 0; n < len; n++) {
    long rc = parse_n(s, n, &r);
    if (rc != SL_ERR_INCOMPLETE) {
      fprintf(stderr, "  prefix %zu of %s gave %ld\n", n, s, rc);
      CHECK_INT(rc, SL_ERR_INCOMPLETE);
      return;
    }
  }
  CHECK_INT(parse_n(s, len, &r), (long)len);
}

static void test_encode(void) {
  uint8_t out[128];
  sl_resp_arg a[] = {{"GET", 3}, {"k\r\n", 3}, {"", 0}};
  const char *want = "*3\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n";
  long n = sl_resp_encode(out, sizeof out, a, 3);
  CHECK_INT(n, (long)strlen(want));
  CHECK_MEM(out, (size_t)n, want, strlen(want));
  /* every too-small buffer is refused, none overrun */
  for (size_t cap = 0; cap < strlen(want); cap++)
    CHECK_INT(sl_resp_encode(out, cap, a, 3), SL_ERR_NOBUF);
  CHECK_INT(sl_resp_encode(out, sizeof out, a, 0), SL_ERR_INVALID_ARGUMENT);
  sl_resp_arg bad = {NULL, 2};
  CHECK_INT(sl_resp_encode(out, sizeof out, &bad, 1), SL_ERR_INVALID_ARGUMENT);
  /* what is encoded parses back as the same array */
  sl_resp_reply r;
  CHECK_INT(parse_n(out, (size_t)n, &r), n);
  CHECK_INT(r.top.type, SL_RESP_ARRAY);
  CHECK_INT(r.top.i, 3);
  CHECK_INT(r.nelem, 3);
  CHECK_MEM(r.elem[1].s, r.elem[1].len, "k\r\n", 3);
  CHECK_INT(r.elem[2].len, 0);
}

static void test_scalars(void) {
  sl_resp_reply r;
  CHECK_INT(parse("+OK\r\n", &r), 5);
  CHECK_INT(r.top.type, SL_RESP_SIMPLE);
  CHECK_MEM(r.top.s, r.top.len, "OK", 2);
  CHECK_INT(parse("-ERR no script\r\n", &r), 16);
  CHECK_INT(r.top.type, SL_RESP_ERROR);
  CHECK_INT(parse(":-42\r\n", &r), 6);
  CHECK_INT(r.top.i, -42);
  CHECK_INT(parse(":9223372036854775807\r\n", &r), 22);
  CHECK(r.top.i == INT64_MAX);
  CHECK_INT(parse(":-9223372036854775808\r\n", &r), 23);
  CHECK(r.top.i == INT64_MIN);
  CHECK_INT(parse("$5\r\nhe\r\no\r\n", &r), 11);
  CHECK_MEM(r.top.s, r.top.len, "he\r\no", 5);
  CHECK_INT(parse("$-1\r\n", &r), 5);
  CHECK_INT(r.top.type, SL_RESP_NIL);
  CHECK_INT(parse("*-1\r\n", &r), 5);
  CHECK_INT(r.top.type, SL_RESP_NIL);
  CHECK_INT(parse("*0\r\n", &r), 4);
  CHECK_INT(r.top.type, SL_RESP_ARRAY);
  CHECK_INT(r.nelem, 0);
  /* a pipelined stream: one reply at a time */
  CHECK_INT(parse(":1\r\n:2\r\n", &r), 4);
}

static void test_arrays(void) {
  sl_resp_reply r;
  const char *s = "*3\r\n:1\r\n*2\r\n$1\r\na\r\n*1\r\n:5\r\n$-1\r\n";
  CHECK_INT(parse(s, &r), (long)strlen(s));
  CHECK_INT(r.top.i, 3);
  CHECK_INT(r.nelem, 3);
  CHECK_INT(r.elem[0].i, 1);
  CHECK_INT(r.elem[1].type, SL_RESP_ARRAY); /* nested: skipped */
  CHECK_INT(r.elem[2].type, SL_RESP_NIL);
  /* more elements than kept: all consumed, the first kept */
  char big[512];
  size_t o = (size_t)snprintf(big, sizeof big, "*20\r\n");
  for (int i = 0; i < 20; i++)
    o += (size_t)snprintf(big + o, sizeof big - o, ":%d\r\n", i);
  CHECK_INT(parse(big, &r), (long)o);
  CHECK_INT(r.nelem, SL_RESP_ELEMS_MAX);
  CHECK_INT(r.elem[7].i, 7);
  check_whole(s);
  check_whole(big);
  check_whole("$0\r\n\r\n");
  check_whole("*2\r\n*0\r\n+x\r\n");
}

static void test_bad(void) {
  sl_resp_reply r;
  const char *bad[] = {
      "?x\r\n",
      ":\r\n",
      ":+1\r\n",
      ": 1\r\n",
      ":1x\r\n",
      ":99999999999999999999\r\n",
      ":9223372036854775808\r\n",
      "$-2\r\n",
      "$2\r\nabc\r\n",
      "$1\r\nab\r\n",
      "*-2\r\n",
      "+a\nb\r\n",
      "+a\rb\r\n",
      "*1\r\n?\r\n",
      "$65537\r\n",
      "*1025\r\n",
      "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    long rc = parse(bad[i], &r);
    if (rc != SL_ERR_MALFORMED)
      fprintf(stderr, "  bad[%zu] gave %ld\n", i, rc);
    CHECK_INT(rc, SL_ERR_MALFORMED);
  }
  /* a header line longer than the bound never waits for its CRLF */
  char lng[SL_RESP_LINE_MAX + 8];
  memset(lng, 'a', sizeof lng);
  lng[0] = '+';
  CHECK_INT(parse_n(lng, sizeof lng, &r), SL_ERR_MALFORMED);
  CHECK_INT(parse_n(lng, SL_RESP_LINE_MAX, &r), SL_ERR_INCOMPLETE);
  /* depth at the bound is fine */
  CHECK_INT(parse("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", &r), 20);
  CHECK_INT(sl_resp_parse(NULL, 1, &r), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_resp_parse((const uint8_t *)"", 0, NULL),
            SL_ERR_INVALID_ARGUMENT);
}

int main(void) {
  guard_end = sl_guard_area(SL_RESP_BULK_MAX + 4096);
  SL_RUN(test_encode);
  SL_RUN(test_scalars);
  SL_RUN(test_arrays);
  SL_RUN(test_bad);
  return sl_test_summary();
}
