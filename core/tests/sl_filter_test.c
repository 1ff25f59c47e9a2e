/*
 * sl_filter_test.c: verdict combination, the filter-reply sanitiser and
 * filter header checks (sluice/filter.h).
 *
 * The sanitiser gets a table of hostile and ordinary filter replies with
 * the exact line expected, and every output must scan (sl_reply_scan) as
 * exactly one single-line 4xx/5xx reply of the verdict's class with no
 * control byte in its text.  Inputs end right before a PROT_NONE page.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_guard.h"
#include "sl_reply.h"
#include "sl_test.h"
#include "sluice/filter.h"

#define U(s) ((const uint8_t *)(s))
#define S(x) (x), sizeof(x) - 1
#define AREA (64 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

static sl_bytes B(const char *s) {
  return (sl_bytes){(const uint8_t *)s, strlen(s)};
}

static void test_names(void) {
  CHECK_STR(sl_verdict_name(SL_VERDICT_ACCEPT), "accept");
  CHECK_STR(sl_verdict_name(SL_VERDICT_CHANGE), "change");
  CHECK_STR(sl_verdict_name(SL_VERDICT_DISCARD), "discard");
  CHECK_STR(sl_verdict_name(SL_VERDICT_TEMPFAIL), "tempfail");
  CHECK_STR(sl_verdict_name(SL_VERDICT_REJECT), "reject");
  CHECK_STR(sl_verdict_name((sl_verdict)99), "unknown");
}

static void test_combine(void) {
  sl_verdict_sum s;
  CHECK_INT(sl_verdict_combine(NULL, 0, SL_DISCARD_AS_REJECT, &s), SL_OK);
  CHECK_INT(s.verdict, SL_VERDICT_ACCEPT);
  CHECK(s.decider == SIZE_MAX);
  CHECK_INT(sl_verdict_combine(NULL, 1, SL_DISCARD_AS_REJECT, &s),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_verdict_combine(NULL, 0, SL_DISCARD_AS_REJECT, NULL),
            SL_ERR_INVALID_ARGUMENT);

  struct {
    sl_verdict v[4];
    size_t n;
    sl_discard_as as;
    sl_verdict want;
    size_t decider;
    int tagged;
  } t[] = {
      {{SL_VERDICT_ACCEPT}, 1, 0, SL_VERDICT_ACCEPT, SIZE_MAX, 0},
      {{SL_VERDICT_ACCEPT, SL_VERDICT_CHANGE},
       2,
       0,
       SL_VERDICT_CHANGE,
       SIZE_MAX,
       0},
      /* any reject wins, wherever it is */
      {{SL_VERDICT_TEMPFAIL, SL_VERDICT_CHANGE, SL_VERDICT_REJECT},
       3,
       0,
       SL_VERDICT_REJECT,
       2,
       0},
      {{SL_VERDICT_REJECT, SL_VERDICT_REJECT}, 2, 0, SL_VERDICT_REJECT, 0, 0},
      /* then any tempfail */
      {{SL_VERDICT_CHANGE, SL_VERDICT_ACCEPT, SL_VERDICT_TEMPFAIL},
       3,
       0,
       SL_VERDICT_TEMPFAIL,
       2,
       0},
      /* discard is never a success the upstream did not give */
      {{SL_VERDICT_ACCEPT, SL_VERDICT_DISCARD},
       2,
       SL_DISCARD_AS_REJECT,
       SL_VERDICT_REJECT,
       1,
       0},
      {{SL_VERDICT_ACCEPT, SL_VERDICT_DISCARD},
       2,
       SL_DISCARD_AS_TAG,
       SL_VERDICT_CHANGE,
       SIZE_MAX,
       1},
      /* a tagged discard still loses to a tempfail */
      {{SL_VERDICT_DISCARD, SL_VERDICT_TEMPFAIL},
       2,
       SL_DISCARD_AS_TAG,
       SL_VERDICT_TEMPFAIL,
       1,
       0},
      /* an unknown verdict is a failed filter: tempfail */
      {{SL_VERDICT_ACCEPT, (sl_verdict)42}, 2, 0, SL_VERDICT_TEMPFAIL, 1, 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    memset(&s, 0x55, sizeof(s));
    CHECK_INT(sl_verdict_combine(t[i].v, t[i].n, t[i].as, &s), SL_OK);
    if (s.verdict != t[i].want || s.decider != t[i].decider ||
        s.discard_tagged != t[i].tagged)
      fprintf(stderr, "combine case %zu\n", i);
    CHECK_INT(s.verdict, t[i].want);
    CHECK(s.decider == t[i].decider);
    CHECK_INT(s.discard_tagged, t[i].tagged);
  }
}

/* The output is one valid reply line of the right class, nothing else. */
static void check_one_line(const uint8_t *out, int n, sl_verdict v) {
  CHECK(n > 0 && n <= SL_FILTER_REPLY_MAX);
  if (n <= 0)
    return;
  sl_reply r;
  CHECK_INT(sl_reply_scan(out, (size_t)n, SL_FILTER_REPLY_MAX,
                          SL_FILTER_REPLY_MAX, &r),
            1);
  CHECK_INT(r.nlines, 1);
  CHECK_INT(r.len, n);
  CHECK_INT(r.code / 100, v == SL_VERDICT_REJECT ? 5 : 4);
  CHECK(r.code != 421);
  for (int i = 0; i < n - 2; i++)
    CHECK(out[i] >= 0x20 && out[i] < 0x7f);
  /* the enhanced code has the reply's class */
  CHECK(out[4] == out[0] && out[5] == '.');
}

static void test_reply_table(void) {
  struct {
    sl_verdict v;
    const char *in;
    size_t len;
    const char *want;
  } t[] = {
      /* nothing from the filter: the defaults */
      {SL_VERDICT_REJECT, S(""),
       "550 5.7.1 Message rejected by content filter\r\n"},
      {SL_VERDICT_TEMPFAIL, S(""),
       "451 4.7.1 Message deferred by content filter, try again later\r\n"},
      /* a bare message (rspamd smtp_message, a virus name) */
      {SL_VERDICT_REJECT, S("Spam message rejected"),
       "550 5.7.1 Spam message rejected\r\n"},
      /* a full reply of the right class is kept */
      {SL_VERDICT_REJECT, S("554 5.7.0 Rejected by the test milter"),
       "554 5.7.0 Rejected by the test milter\r\n"},
      {SL_VERDICT_TEMPFAIL, S("450 4.2.0 Greylisted, see later\r\n"),
       "450 4.2.0 Greylisted, see later\r\n"},
      /* a code without an enhanced code gets the default one */
      {SL_VERDICT_REJECT, S("553 no such user"), "553 5.7.1 no such user\r\n"},
      {SL_VERDICT_REJECT, S("550"),
       "550 5.7.1 Message rejected by content "
       "filter\r\n"},
      /* multi-line replies are flattened, repeated codes dropped */
      {SL_VERDICT_REJECT,
       S("554-5.7.0 Rejected by the test milter\r\n554 5.7.0 second line: "
         "see the sluice tests"),
       "554 5.7.0 Rejected by the test milter second line: see the sluice "
       "tests\r\n"},
      /* wrong class: the verdict decides, the filter's code goes */
      {SL_VERDICT_REJECT, S("250 2.0.0 Ok: queued as FAKE"),
       "550 5.7.1 Ok: queued as FAKE\r\n"},
      {SL_VERDICT_TEMPFAIL, S("550 5.7.1 no"), "451 4.7.1 no\r\n"},
      /* an enhanced code of another class is replaced */
      {SL_VERDICT_REJECT, S("550 4.7.1 mixed"), "550 5.7.1 mixed\r\n"},
      /* 421 would announce a close that does not happen */
      {SL_VERDICT_TEMPFAIL, S("421 4.3.2 shutting down"),
       "451 4.3.2 shutting down\r\n"},
      /* second digit above 5 is not a reply code class */
      {SL_VERDICT_REJECT, S("590 5.7.1 odd"), "550 5.7.1 odd\r\n"},
      /* reply injection: CR LF and a second reply inside the text */
      {SL_VERDICT_REJECT, S("bad\r\n250 2.0.0 Ok\r\n"),
       "550 5.7.1 bad 250 2.0.0 Ok\r\n"},
      {SL_VERDICT_REJECT, S("550 5.7.1 bad\r\n250 2.0.0 Ok\r\n"),
       "550 5.7.1 bad Ok\r\n"},
      {SL_VERDICT_REJECT,
       S("a\rb\nc\x00"
         "d\x1b[31m\x7f\xc3\xa9"),
       "550 5.7.1 a b c?d?[31m???\r\n"},
      /* blanks collapse, ends are trimmed */
      {SL_VERDICT_REJECT, S("  \t spaced \t\t out  \r\n"),
       "550 5.7.1 spaced out\r\n"},
      /* enhanced code must be followed by a blank */
      {SL_VERDICT_REJECT, S("550 5.7.1x text"), "550 5.7.1 5.7.1x text\r\n"},
  };
  uint8_t out[SL_FILTER_REPLY_MAX];
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    memset(out, 0xee, sizeof(out));
    int n = sl_filter_reply(out, t[i].v, guarded(t[i].in, t[i].len), t[i].len);
    if (n < 0 || (size_t)n != strlen(t[i].want) ||
        memcmp(out, t[i].want, (size_t)n) != 0)
      fprintf(stderr, "reply case %zu: got %.*s", i, n > 0 ? n : 0, out);
    CHECK_MEM(out, n > 0 ? n : 0, t[i].want, strlen(t[i].want));
    check_one_line(out, n, t[i].v);
  }
  CHECK_INT(sl_filter_reply(out, SL_VERDICT_ACCEPT, U("x"), 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_filter_reply(out, SL_VERDICT_DISCARD, U("x"), 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_filter_reply(NULL, SL_VERDICT_REJECT, U("x"), 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_filter_reply(out, SL_VERDICT_REJECT, NULL, 1),
            SL_ERR_INVALID_ARGUMENT);
}

static void test_reply_bounds(void) {
  static uint8_t big[4096];
  uint8_t out[SL_FILTER_REPLY_MAX];
  /* a long text is cut to exactly the line limit */
  memset(big, 'a', sizeof(big));
  int n = sl_filter_reply(out, SL_VERDICT_REJECT, guarded(big, sizeof(big)),
                          sizeof(big));
  CHECK_INT(n, SL_FILTER_REPLY_MAX);
  check_one_line(out, n, SL_VERDICT_REJECT);
  /* words cut at the limit leave no trailing blank */
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = i % 2 ? ' ' : 'b';
  n = sl_filter_reply(out, SL_VERDICT_TEMPFAIL, guarded(big, sizeof(big)),
                      sizeof(big));
  check_one_line(out, n, SL_VERDICT_TEMPFAIL);
  CHECK(n > 3 && out[n - 3] != ' ');
  /* many lines of CR LF only: the default text */
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = i % 2 ? '\n' : '\r';
  n = sl_filter_reply(out, SL_VERDICT_REJECT, guarded(big, sizeof(big)),
                      sizeof(big));
  check_one_line(out, n, SL_VERDICT_REJECT);
  CHECK_MEM(out, n, "550 5.7.1 Message rejected by content filter\r\n", 46);
  /* every byte value, in every position of a short reply */
  for (unsigned c = 0; c < 256; c++) {
    uint8_t in[8] = {'5', '5', '0', ' ', (uint8_t)c, 'x', (uint8_t)c, '\n'};
    for (size_t len = 0; len <= sizeof(in); len++) {
      n = sl_filter_reply(out, SL_VERDICT_REJECT, guarded(in, len), len);
      check_one_line(out, n, SL_VERDICT_REJECT);
    }
  }
}

static void test_header_check(void) {
  CHECK_INT(sl_filter_header_check(B("X-Spam"), B("Yes")), SL_OK);
  CHECK_INT(sl_filter_header_check(B("X-Spamd-Result"),
                                   B("default: False [1.2 / 15.0];\n\tA(1)")),
            SL_OK);
  CHECK_INT(sl_filter_header_check(B("X-A"), B("a\r\n b")), SL_OK);
  CHECK_INT(sl_filter_header_check(B("X-A"), B("")), SL_OK);
  /* a new header or the end of the headers smuggled in a value */
  CHECK_INT(sl_filter_header_check(B("X-A"), B("a\r\nBcc: x@example.org")),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X-A"), B("a\n\nbody")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X-A"), B("a\r b")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X-A"), B("a\n")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X-A"), (sl_bytes){U("a\0b"), 3}),
            SL_ERR_MALFORMED);
  /* names */
  CHECK_INT(sl_filter_header_check(B(""), B("v")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X A"), B("v")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X:A"), B("v")), SL_ERR_MALFORMED);
  CHECK_INT(sl_filter_header_check(B("X\xc3\xa9"), B("v")), SL_ERR_MALFORMED);
  char longname[SL_FILTER_HEADER_NAME_MAX + 2];
  memset(longname, 'N', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = 0;
  CHECK_INT(sl_filter_header_check(B(longname), B("v")), SL_ERR_MALFORMED);
  longname[SL_FILTER_HEADER_NAME_MAX] = 0;
  CHECK_INT(sl_filter_header_check(B(longname), B("v")), SL_OK);
  CHECK_INT(sl_filter_header_check((sl_bytes){NULL, 1}, B("v")),
            SL_ERR_INVALID_ARGUMENT);
}

static void test_header_put(void) {
  uint8_t out[256];
  long n = sl_filter_header_put(out, sizeof(out), B("X-Spam"), B("Yes"));
  CHECK_MEM(out, n, "X-Spam: Yes\r\n", 13);
  n = sl_filter_header_put(out, sizeof(out), B("X-R"), B("a;\n\tb;\r\n c"));
  CHECK_MEM(out, n, "X-R: a;\r\n\tb;\r\n c\r\n", 18);
  /* a value with its own leading space gets no second one */
  n = sl_filter_header_put(out, sizeof(out), B("X-L"), B(" lead"));
  CHECK_MEM(out, n, "X-L: lead\r\n", 11);
  n = sl_filter_header_put(out, sizeof(out), B("X-E"), B(""));
  CHECK_MEM(out, n, "X-E: \r\n", 7);
  CHECK_INT(sl_filter_header_put(out, sizeof(out), B("X-A"), B("a\nB: c")),
            SL_ERR_MALFORMED);
  /* exactly fitting, one byte short */
  CHECK_INT(sl_filter_header_put(out, 13, B("X-Spam"), B("Yes")), 13);
  CHECK_INT(sl_filter_header_put(out, 12, B("X-Spam"), B("Yes")), SL_ERR_NOBUF);
  CHECK_INT(sl_filter_header_put(out, 3, B("X-Spam"), B("Yes")), SL_ERR_NOBUF);
  CHECK_INT(sl_filter_header_put(NULL, 10, B("X"), B("v")),
            SL_ERR_INVALID_ARGUMENT);
  /* the overall bound holds even with room to spare */
  static uint8_t big[SL_FILTER_HEADER_MAX + 64], val[SL_FILTER_HEADER_MAX];
  memset(val, 'v', sizeof(val));
  CHECK_INT(sl_filter_header_put(big, sizeof(big), B("X"),
                                 (sl_bytes){val, sizeof(val)}),
            SL_ERR_NOBUF);
  n = sl_filter_header_put(big, sizeof(big), B("X"),
                           (sl_bytes){val, SL_FILTER_HEADER_MAX - 5});
  CHECK_INT(n, SL_FILTER_HEADER_MAX);
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_names);
  SL_RUN(test_combine);
  SL_RUN(test_reply_table);
  SL_RUN(test_reply_bounds);
  SL_RUN(test_header_check);
  SL_RUN(test_header_put);
  return sl_test_summary();
}
