/* sl_spf_test.c: the SPF evaluator against a table of DNS answers: each
   mechanism, qualifiers, include and redirect results, macros, the lookup
   and void-lookup limits, and DNS failures. */
#include <string.h>

#include "sl_test.h"
#include "sluice/spf.h"

typedef struct rr {
  const char *name;
  sl_spf_qtype type;
  const char *val; /* TXT text, an address, or an MX name */
} rr;

static const rr zone[] = {
    {"ex.test", SL_SPF_Q_TXT, "v=spf1 ip4:192.0.2.0/24 -all"},
    {"ex.test", SL_SPF_Q_TXT, "some other text"},
    {"inc.test", SL_SPF_Q_TXT, "v=spf1 include:ex.test ~all"},
    {"incfail.test", SL_SPF_Q_TXT, "v=spf1 include:fail.test ?all"},
    {"fail.test", SL_SPF_Q_TXT, "v=spf1 -all"},
    {"a.test", SL_SPF_Q_TXT, "v=spf1 a a:host.a.test/24 -all"},
    {"a.test", SL_SPF_Q_A, "198.51.100.1"},
    {"host.a.test", SL_SPF_Q_A, "203.0.113.77"},
    {"mx.test", SL_SPF_Q_TXT, "v=spf1 mx//64 -all"},
    {"mx.test", SL_SPF_Q_MX, "mx1.mx.test"},
    {"mx.test", SL_SPF_Q_MX, "mx2.mx.test"},
    {"mx1.mx.test", SL_SPF_Q_AAAA, "2001:db8::1"},
    {"mx2.mx.test", SL_SPF_Q_AAAA, "2001:db8:5:6::9"},
    {"red.test", SL_SPF_Q_TXT, "v=spf1 ?ip4:10.0.0.1 redirect=ex.test"},
    {"redall.test", SL_SPF_Q_TXT, "v=spf1 redirect=ex.test +all"},
    {"rednone.test", SL_SPF_Q_TXT, "v=spf1 redirect=nothing.test"},
    {"incnone.test", SL_SPF_Q_TXT, "v=spf1 include:nothing.test -all"},
    {"exists.test", SL_SPF_Q_TXT,
     "v=spf1 exists:%{ir}.%{l1r-}.%{v}._spf.%{d2} -all"},
    {"1.2.0.192.a.in-addr._spf.exists.test", SL_SPF_Q_A, "127.0.0.2"},
    {"two.test", SL_SPF_Q_TXT, "v=spf1 -all"},
    {"two.test", SL_SPF_Q_TXT, "v=spf1 +all"},
    {"loop.test", SL_SPF_Q_TXT, "v=spf1 include:loop.test"},
    {"many.test", SL_SPF_Q_TXT,
     "v=spf1 a:1.t a:2.t a:3.t a:4.t a:5.t a:6.t a:7.t a:8.t a:9.t a:10.t "
     "a:11.t +all"},
    {"voids.test", SL_SPF_Q_TXT, "v=spf1 a:v1.t a:v2.t a:v3.t +all"},
    {"bad.test", SL_SPF_Q_TXT, "v=spf1 frobnicate -all"},
    {"badip.test", SL_SPF_Q_TXT, "v=spf1 ip4:192.0.2.300 -all"},
    {"soft.test", SL_SPF_Q_TXT, "V=SPF1 ~all"},
    {"mod.test", SL_SPF_Q_TXT,
     "v=spf1 exp=explain.%{d} foo=bar ip4:192.0.2.1 -all"},
    {"tmp.test", SL_SPF_Q_TXT, "v=spf1 a:servfail.test -all"},
};

static int answered;

static sl_spf_result check(const char *ip, const char *sender) {
  sl_spf s;
  sl_addr a;
  if (sl_addr_parse(&a, ip, strlen(ip)))
    return (sl_spf_result)99;
  sl_spf_init(&s, &a, sender, "helo.test");
  sl_spf_qtype t;
  const char *name;
  answered = 0;
  while (sl_spf_step(&s, &t, &name)) {
    if (++answered > 100)
      return (sl_spf_result)98;
    if (!strcmp(name, "servfail.test")) {
      sl_spf_answer(&s, SL_SPF_DNS_ERROR, NULL, NULL, 0);
      continue;
    }
    const char *strs[16];
    sl_addr addrs[16];
    size_t n = 0;
    int known = 0;
    for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
      if (strcmp(zone[i].name, name))
        continue;
      known = 1;
      if (zone[i].type != t || n == 16)
        continue;
      strs[n] = zone[i].val;
      if (t == SL_SPF_Q_A || t == SL_SPF_Q_AAAA)
        sl_addr_parse(&addrs[n], zone[i].val, strlen(zone[i].val));
      n++;
    }
    sl_spf_answer(&s, known ? SL_SPF_DNS_OK : SL_SPF_DNS_NXDOMAIN, strs, addrs,
                  n);
  }
  return sl_spf_get_result(&s);
}

static void test_mechanisms(void) {
  CHECK_INT(check("192.0.2.7", "u@ex.test"), SL_SPF_PASS);
  CHECK_INT(check("192.0.3.7", "u@ex.test"), SL_SPF_FAIL);
  CHECK_INT(check("192.0.2.7", "u@inc.test"), SL_SPF_PASS);
  CHECK_INT(check("192.0.3.7", "u@inc.test"), SL_SPF_SOFTFAIL);
  CHECK_INT(check("192.0.3.7", "u@incfail.test"), SL_SPF_NEUTRAL);
  CHECK_INT(check("198.51.100.1", "u@a.test"), SL_SPF_PASS);
  CHECK_INT(check("198.51.100.2", "u@a.test"), SL_SPF_FAIL);
  CHECK_INT(check("203.0.113.1", "u@a.test"), SL_SPF_PASS); /* a:/24 */
  CHECK_INT(check("2001:db8:5:6::1", "u@mx.test"), SL_SPF_PASS);
  CHECK_INT(check("2001:db8:5:7::1", "u@mx.test"), SL_SPF_FAIL);
  CHECK_INT(check("192.0.2.9", "u@mx.test"), SL_SPF_FAIL); /* no A for MX */
  CHECK_INT(check("192.0.2.1", "u@mod.test"), SL_SPF_PASS);
  CHECK_INT(check("192.0.2.1", "u@soft.test"), SL_SPF_SOFTFAIL);
}

static void test_redirect_and_include_results(void) {
  CHECK_INT(check("192.0.2.7", "u@red.test"), SL_SPF_PASS);
  CHECK_INT(check("10.0.0.1", "u@red.test"), SL_SPF_NEUTRAL);
  CHECK_INT(check("10.9.9.9", "u@red.test"), SL_SPF_FAIL);
  CHECK_INT(check("10.9.9.9", "u@redall.test"), SL_SPF_PASS); /* all wins */
  CHECK_INT(check("10.9.9.9", "u@rednone.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("10.9.9.9", "u@incnone.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("10.9.9.9", "u@nothing.test"), SL_SPF_NONE);
  CHECK_INT(check("10.9.9.9", "u@two.test"), SL_SPF_PERMERROR);
}

static void test_macros(void) {
  /* %{ir}.%{l1r-}.%{v}._spf.%{d2}: 1.2.0.192 . a (RFC 7208 7.4: "strong"
     of strong-bad) . in-addr . _spf . exists.test */
  CHECK_INT(check("192.0.2.1", "a-b@exists.test"), SL_SPF_PASS);
  CHECK_INT(check("192.0.2.1", "c-b@exists.test"), SL_SPF_FAIL);
  CHECK_INT(check("192.0.2.2", "a-b@exists.test"), SL_SPF_FAIL);
}

static void test_limits_and_errors(void) {
  CHECK_INT(check("192.0.2.1", "u@loop.test"), SL_SPF_PERMERROR);
  CHECK(answered <= 11);
  CHECK_INT(check("192.0.2.1", "u@many.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("192.0.2.1", "u@voids.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("192.0.2.1", "u@bad.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("192.0.2.1", "u@badip.test"), SL_SPF_PERMERROR);
  CHECK_INT(check("192.0.2.1", "u@tmp.test"), SL_SPF_TEMPERROR);
}

static void test_null_sender(void) {
  sl_spf s;
  sl_addr a;
  sl_addr_parse(&a, "192.0.2.1", 9);
  CHECK_INT(sl_spf_init(&s, &a, "", "Mail.Ex.test"), 0);
  CHECK_STR(sl_spf_domain(&s), "Mail.Ex.test");
  CHECK_INT(sl_spf_init(&s, &a, "", ""), -1);
  sl_spf_qtype t;
  const char *name;
  CHECK_INT(sl_spf_step(&s, &t, &name), 0);
  CHECK_INT(sl_spf_get_result(&s), SL_SPF_NONE);
  CHECK_STR(sl_spf_result_name(SL_SPF_SOFTFAIL), "softfail");
}

int main(void) {
  SL_RUN(test_mechanisms);
  SL_RUN(test_redirect_and_include_results);
  SL_RUN(test_macros);
  SL_RUN(test_limits_and_errors);
  SL_RUN(test_null_sender);
  return sl_test_summary();
}
