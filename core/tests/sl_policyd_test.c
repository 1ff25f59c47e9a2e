/* sl_policyd_test.c: the policy delegation codec: requests cannot be
   extended by their values, responses are read only when whole, and
   actions map as Postfix's access(5) does, with texts that cannot inject a
   reply line. */
#include <string.h>

#include "sl_guard.h"
#include "sl_test.h"
#include "sluice/errors.h"
#include "sluice/policyd.h"

static uint8_t *guard_end;

static long parse(const char *s, const uint8_t **act, size_t *alen) {
  size_t n = strlen(s);
  return sl_policyd_parse(sl_guard_copy(guard_end, s, n), n, act, alen);
}

static void test_encode(void) {
  sl_policyd_attr a[] = {{"request", "smtpd_access_policy"},
                         {"sender", "a@b\r\naction=OK\n"},
                         {"helo_name", NULL}};
  char out[256];
  long n = sl_policyd_encode(a, 3, out, sizeof(out));
  const char want[] = "request=smtpd_access_policy\n"
                      "sender=a@b??action=OK?\n"
                      "helo_name=\n\n";
  CHECK_MEM(out, (size_t)(n > 0 ? n : 0), want, sizeof(want) - 1);
  CHECK_INT(sl_policyd_encode(a, 3, out, (size_t)n - 1), -1);
  CHECK_INT(sl_policyd_encode(a, 3, out, (size_t)n), n);
  CHECK_INT(sl_policyd_encode(NULL, 0, out, 1), 1);
}

static void test_parse(void) {
  const uint8_t *act;
  size_t alen;
  const char *ok = "action=DEFER_IF_PERMIT Greylisted\nfoo=bar\n\n";
  size_t n = strlen(ok);
  for (size_t i = 0; i < n; i++) {
    long rc = sl_policyd_parse(sl_guard_copy(guard_end, ok, i), i, &act, &alen);
    if (rc != SL_ERR_INCOMPLETE) {
      CHECK_INT(rc, SL_ERR_INCOMPLETE);
      break;
    }
  }
  CHECK_INT(parse(ok, &act, &alen), (long)n);
  CHECK_MEM(act, alen, "DEFER_IF_PERMIT Greylisted", 26);
  CHECK_INT(parse("action=dunno\r\n\r\nnext", &act, &alen), 16);
  CHECK_MEM(act, alen, "dunno", 5);
  CHECK_INT(parse("\n", &act, &alen), SL_ERR_MALFORMED);
  CHECK_INT(parse("noequals\n\n", &act, &alen), SL_ERR_MALFORMED);
  CHECK_INT(parse("action=OK\naction=REJECT\n\n", &act, &alen),
            SL_ERR_MALFORMED);
  CHECK_INT(parse("foo=bar\n\n", &act, &alen), SL_ERR_MALFORMED);
  char big[SL_POLICYD_LINE_MAX + 16];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  CHECK_INT(parse(big, &act, &alen), SL_ERR_MALFORMED);
  CHECK_INT(parse("action=OK", &act, &alen), SL_ERR_INCOMPLETE);
}

static sl_policyd_verdict v;
static const sl_policyd_verdict *act(const char *s) {
  sl_policyd_action((const uint8_t *)s, strlen(s), &v);
  return &v;
}

static void test_actions(void) {
  CHECK_INT(act("OK")->kind, SL_PD_OK);
  CHECK_INT(act("ok")->kind, SL_PD_OK);
  CHECK_INT(act("DUNNO")->kind, SL_PD_DUNNO);
  CHECK_INT(act("DEFER_IF_REJECT text")->kind, SL_PD_DUNNO);
  CHECK_INT(act("PREPEND X-Greylist: delayed")->kind, SL_PD_DUNNO);
  CHECK_INT(act("")->kind, SL_PD_ERROR);
  CHECK_INT(act("OKAY")->kind, SL_PD_ERROR);
  CHECK_INT(act("200 fine")->kind, SL_PD_ERROR);
  CHECK_INT(act("REJECTED")->kind, SL_PD_ERROR);

  CHECK_INT(act("REJECT")->kind, SL_PD_REFUSE);
  CHECK_INT(v.code, 554);
  CHECK_STR(v.text, "5.7.1 Access denied");
  act("reject Go away");
  CHECK_INT(v.code, 554);
  CHECK_STR(v.text, "5.7.1 Go away");
  act("DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/");
  CHECK_INT(v.code, 450);
  CHECK_STR(v.text, "4.7.1 Greylisted, see http://postgrey.schweikert.ch/");
  act("DEFER");
  CHECK_INT(v.code, 450);
  CHECK_STR(v.text, "4.7.1 Try again later");
  act("451 4.7.1 Service unavailable - try again later");
  CHECK_INT(v.code, 451);
  CHECK_STR(v.text, "4.7.1 Service unavailable - try again later");
  /* an enhanced code of the wrong class is replaced, not trusted */
  act("550 4.7.1 mixed");
  CHECK_INT(v.code, 550);
  CHECK_STR(v.text, "5.7.1 4.7.1 mixed");
  act("550 5.1.1 <x@y>: unknown\r\n250 ok");
  CHECK_STR(v.text, "5.1.1 <x@y>: unknown??250 ok");
  act("421");
  CHECK_INT(v.code, 421);
  CHECK_STR(v.text, "4.7.1 Try again later");
  CHECK_INT(act("4500 x")->kind, SL_PD_ERROR);
  CHECK_INT(act("600 x")->kind, SL_PD_ERROR);
  char big[600];
  memset(big, 'a', sizeof(big) - 1);
  memcpy(big, "REJECT ", 7);
  big[sizeof(big) - 1] = 0;
  act(big);
  CHECK_INT((long)strlen(v.text), SL_POLICYD_TEXT_MAX - 1);
}

int main(void) {
  guard_end = sl_guard_area(1 << 16);
  SL_RUN(test_encode);
  SL_RUN(test_parse);
  SL_RUN(test_actions);
  return sl_test_summary();
}
