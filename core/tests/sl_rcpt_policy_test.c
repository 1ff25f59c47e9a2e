/* sl_rcpt_policy_test.c: relay domains, routing tricks, trusted clients,
   and the 8-bit rules of command lines (sl_envelope). */
#include <string.h>

#include "sl_envelope.h"
#include "sl_test.h"
#include "sluice/errors.h"
#include "sluice/rcpt_policy.h"

static const char *const domains[] = {"local.test",         ".local.test",
                                      "xn--bcher-kva.test", "bücher.test",
                                      "[192.0.2.1]",        "Upper.TEST."};

static sl_rcpt_policy pol(uint32_t flags) {
  sl_rcpt_policy p;
  sl_rcpt_policy_default(&p);
  p.domains = domains;
  p.ndomains = sizeof(domains) / sizeof(domains[0]);
  p.flags = flags;
  return p;
}

static sl_rcpt_verdict chk(const sl_rcpt_policy *p, const char *path,
                           int trusted) {
  return sl_rcpt_check(p, (const uint8_t *)path, strlen(path), trusted);
}

static void test_domains(void) {
  sl_rcpt_policy p = pol(0);
  CHECK_INT(chk(&p, "u@local.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "u@LOCAL.Test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "u@local.test.", 0), SL_RCPT_OK);   /* trailing dot */
  CHECK_INT(chk(&p, "u@mx.local.test", 0), SL_RCPT_OK); /* .local.test */
  CHECK_INT(chk(&p, "u@a.b.local.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "u@evillocal.test", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&p, "u@local.test.evil", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&p, "u@foreign.test", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&p, "u@test", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&p, "u@upper.test", 0), SL_RCPT_OK); /* entry's dot, case */
  /* IDN: A-label and U-label entries each match their own form only */
  CHECK_INT(chk(&p, "u@XN--BCHER-KVA.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p,
                "u@b\xc3\xbc"
                "cher.test",
                0),
            SL_RCPT_OK);
  CHECK_INT(chk(&p,
                "u@b\xc3\x9c"
                "cher.test",
                0),
            SL_RCPT_DENIED);
  /* address literals: only as listed */
  CHECK_INT(chk(&p, "u@[192.0.2.1]", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "u@[192.0.2.2]", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&p, "u@[IPv6:2001:db8::1]", 0), SL_RCPT_DENIED);
  /* postmaster without a domain always passes */
  CHECK_INT(chk(&p, "Postmaster", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "nobody", 0), SL_RCPT_DENIED);
  /* quoted local parts with an '@' are split at the last unquoted one */
  CHECK_INT(chk(&p, "\"a b\"@local.test", 0), SL_RCPT_OK);
  /* any domain */
  sl_rcpt_policy any = pol(SL_RCPT_ANY_DOMAIN);
  CHECK_INT(chk(&any, "u@foreign.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&any, "u@[198.51.100.1]", 0), SL_RCPT_OK);
}

static void test_routing(void) {
  sl_rcpt_policy p = pol(0);
  CHECK_INT(chk(&p, "@local.test:v@foreign.test", 0), SL_RCPT_SOURCE_ROUTE);
  CHECK_INT(chk(&p, "@a.test,@local.test:v@local.test", 0),
            SL_RCPT_SOURCE_ROUTE);
  CHECK_INT(chk(&p, "v%foreign.test@local.test", 0), SL_RCPT_PERCENT_HACK);
  CHECK_INT(chk(&p, "\"v%foreign.test\"@local.test", 0), SL_RCPT_PERCENT_HACK);
  CHECK_INT(chk(&p, "\"v@foreign.test\"@local.test", 0), SL_RCPT_PERCENT_HACK);
  CHECK_INT(chk(&p, "\"v\\@foreign.test\"@local.test", 0),
            SL_RCPT_PERCENT_HACK);
  CHECK_INT(chk(&p, "foreign.test!v@local.test", 0), SL_RCPT_BANG_PATH);
  CHECK_INT(chk(&p, "\"foreign.test!v\"@local.test", 0), SL_RCPT_BANG_PATH);
  /* allowed: then every hop and the final domain must be relay domains */
  sl_rcpt_policy a = pol(SL_RCPT_ALLOW_SOURCE_ROUTE |
                         SL_RCPT_ALLOW_PERCENT_HACK | SL_RCPT_ALLOW_BANG_PATH);
  CHECK_INT(chk(&a, "@local.test:v@foreign.test", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&a, "@foreign.test:v@local.test", 0), SL_RCPT_DENIED);
  CHECK_INT(chk(&a, "@mx.local.test,@local.test:v@local.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&a, "v%foreign.test@local.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&a, "foreign.test!v@local.test", 0), SL_RCPT_OK);
  CHECK_INT(chk(&a, "v%local.test@foreign.test", 0), SL_RCPT_DENIED);
  /* each flag allows its own trick only */
  sl_rcpt_policy b = pol(SL_RCPT_ALLOW_BANG_PATH);
  CHECK_INT(chk(&b, "v%foreign.test@local.test", 0), SL_RCPT_PERCENT_HACK);
  CHECK_INT(chk(&b, "@local.test:v@local.test", 0), SL_RCPT_SOURCE_ROUTE);
}

static void test_unconfigured_and_trusted(void) {
  sl_rcpt_policy p;
  sl_rcpt_policy_default(&p);
  CHECK_INT(sl_rcpt_policy_check(&p), SL_OK);
  CHECK_INT(chk(&p, "u@local.test", 0), SL_RCPT_UNCONFIGURED);
  CHECK_INT(chk(&p, "Postmaster", 0), SL_RCPT_OK);
  CHECK_INT(chk(&p, "v%x@local.test", 0), SL_RCPT_PERCENT_HACK);
  /* trusted clients (AUTH, mynetworks) pass everything */
  CHECK_INT(chk(&p, "u@foreign.test", 1), SL_RCPT_OK);
  CHECK_INT(chk(&p, "@a.test:v@b.test", 1), SL_RCPT_OK);

  sl_prefix nets[2];
  memset(nets, 0, sizeof(nets));
  nets[0].addr.family = SL_AF_INET;
  nets[0].addr.bytes[0] = 10;
  nets[0].addr.bytes[1] = 1;
  nets[0].bits = 16;
  CHECK_INT(sl_addr_parse(&nets[1].addr, "2001:db8::", 10), 0);
  nets[1].bits = 33;
  p.mynetworks = nets;
  p.nmynetworks = 2;
  CHECK_INT(sl_rcpt_policy_check(&p), SL_OK);
  sl_addr c;
  CHECK_INT(sl_addr_parse(&c, "10.1.200.3", 10), 0);
  CHECK(sl_rcpt_client_trusted(&p, &c));
  CHECK_INT(sl_addr_parse(&c, "10.2.0.1", 8), 0);
  CHECK(!sl_rcpt_client_trusted(&p, &c));
  CHECK_INT(sl_addr_parse(&c, "::ffff:10.1.0.1", 15), 0);
  CHECK(sl_rcpt_client_trusted(&p, &c)); /* IPv4-mapped */
  CHECK_INT(sl_addr_parse(&c, "2001:db8:7fff::1", 16), 0);
  CHECK(sl_rcpt_client_trusted(&p, &c));
  CHECK_INT(sl_addr_parse(&c, "2001:db8:8000::1", 16), 0);
  CHECK(!sl_rcpt_client_trusted(&p, &c)); /* bit 33 differs */
  c.family = SL_AF_UNSPEC;
  CHECK(!sl_rcpt_client_trusted(&p, &c));
  nets[0].bits = 33;
  CHECK_INT(sl_rcpt_policy_check(&p), SL_ERR_INVALID_ARGUMENT);
  nets[0].bits = 0; /* 0.0.0.0/0: every IPv4 client */
  CHECK_INT(sl_addr_parse(&c, "203.0.113.9", 11), 0);
  CHECK(sl_rcpt_client_trusted(&p, &c));
}

static void test_policy_check(void) {
  sl_rcpt_policy p = pol(0);
  CHECK_INT(sl_rcpt_policy_check(&p), SL_OK);
  static const char *const bad1[] = {"a b.test"};
  static const char *const bad2[] = {"."};
  static const char *const bad3[] = {"u@a.test"};
  static const char *const bad4[] = {""};
  static const char *const bad5[] = {"b\xc0\xbc"
                                     "cher.test"};
  const char *const *bads[] = {bad1, bad2, bad3, bad4, bad5};
  for (size_t i = 0; i < 5; i++) {
    p.domains = bads[i];
    p.ndomains = 1;
    CHECK_INT(sl_rcpt_policy_check(&p), SL_ERR_INVALID_ARGUMENT);
  }
  p.domains = NULL;
  CHECK_INT(sl_rcpt_policy_check(&p), SL_ERR_INVALID_ARGUMENT);
  p.ndomains = 0;
  p.flags = 1u << 20;
  CHECK_INT(sl_rcpt_policy_check(&p), SL_ERR_INVALID_ARGUMENT);
  CHECK_STR(sl_rcpt_verdict_name(SL_RCPT_PERCENT_HACK), "percent_hack");
}

static sl_env_verdict env_o(sl_verb v, const char *line, int txn, int offered) {
  sl_cmd c;
  size_t n = strlen(line);
  sl_cmd_parse((const uint8_t *)line, n, &c);
  CHECK_INT(c.verb, v);
  return sl_env_8bit(v, (const uint8_t *)line, n, c.arg, txn, offered);
}

static sl_env_verdict env(sl_verb v, const char *line, int txn) {
  return env_o(v, line, txn, 1);
}

static void test_envelope_8bit(void) {
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<a@b.test>", 0), SL_ENV_OK);
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<\xc3\xa9@b.test> SMTPUTF8", 0),
            SL_ENV_OK);
  CHECK_INT(
      env(SL_V_MAIL, "MAIL FROM:<\xc3\xa9@b.test> BODY=8BITMIME smtputf8", 0),
      SL_ENV_OK);
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<\xc0\xaf@b.test> SMTPUTF8", 0),
            SL_ENV_BAD_UTF8);
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<\xed\xa0\x80@b.test> SMTPUTF8", 0),
            SL_ENV_BAD_UTF8);
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<\xc3\xa9@b.test>", 0),
            SL_ENV_NEED_SMTPUTF8);
  /* the word inside a quoted local part does not count */
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<\"\xc3\xa9 SMTPUTF8 x\"@b.test>", 0),
            SL_ENV_NEED_SMTPUTF8);
  CHECK_INT(env(SL_V_MAIL, "MAIL FROM:<a@b.test> SMTPUTF8X \xc3\xa9", 0),
            SL_ENV_NEED_SMTPUTF8);
  CHECK_INT(env(SL_V_RCPT, "RCPT TO:<\xc3\xa9@b.test>", 1), SL_ENV_OK);
  CHECK_INT(env(SL_V_RCPT, "RCPT TO:<\xc3\xa9@b.test>", 0),
            SL_ENV_NEED_SMTPUTF8);
  CHECK_INT(env(SL_V_RCPT, "RCPT TO:<\xc3@b.test>", 1), SL_ENV_BAD_UTF8);
  CHECK_INT(env(SL_V_RCPT, "RCPT TO:<a@b.test\xf4\x90\x80\x80>", 1),
            SL_ENV_BAD_UTF8);
  CHECK_INT(env(SL_V_EHLO,
                "EHLO b\xc3\xbc"
                "cher.test",
                1),
            SL_ENV_HELO_8BIT);
  CHECK_INT(env(SL_V_HELO, "HELO \xff", 0), SL_ENV_BAD_UTF8);
  CHECK_INT(env(SL_V_EHLO, "EHLO xn--bcher-kva.test", 0), SL_ENV_OK);
  CHECK_INT(env(SL_V_VRFY, "VRFY \xc3\xa9 SMTPUTF8", 0), SL_ENV_OK);
  CHECK_INT(env(SL_V_VRFY, "VRFY \xc3\xa9", 0), SL_ENV_NEED_SMTPUTF8);
  CHECK_INT(env_o(SL_V_VRFY, "VRFY \xc3\xa9 SMTPUTF8", 0, 0),
            SL_ENV_NEED_SMTPUTF8); /* not offered: never relayed */
  CHECK_INT(env_o(SL_V_EXPN, "EXPN \xc3\xa9 SMTPUTF8", 0, 1), SL_ENV_OK);
  CHECK_INT(env(SL_V_NOOP, "NOOP \xc3\xa9", 0), SL_ENV_8BIT);
  CHECK_INT(env(SL_V_NOOP, "NOOP \xc3\xa9", 1), SL_ENV_OK);
  CHECK_INT(env(SL_V_AUTH, "AUTH PLAIN \xc3\xa9", 1), SL_ENV_8BIT);
  CHECK_INT(env(SL_V_RSET, "RSET \xc3\xa9", 1), SL_ENV_8BIT);
}

static void test_envelope_path(void) {
  const char *a = "TO:<\"a>b\"@c.test> NOTIFY=NEVER";
  size_t off = 0, n = 0;
  CHECK_INT(sl_env_path((const uint8_t *)a, strlen(a), &off, &n), 0);
  CHECK_MEM(a + off, n, "\"a>b\"@c.test", 12);
  a = "TO: <@x.test:u@y.test>";
  CHECK_INT(sl_env_path((const uint8_t *)a, strlen(a), &off, &n), 0);
  CHECK_MEM(a + off, n, "@x.test:u@y.test", 16);
  CHECK_INT(sl_env_path((const uint8_t *)"TO:u@y", 6, &off, &n), -1);
  CHECK_INT(sl_env_path((const uint8_t *)"TO:<u@y", 7, &off, &n), -1);
  CHECK(sl_env_mail_smtputf8((const uint8_t *)"FROM:<a@b> SMTPUTF8", 19));
  CHECK(!sl_env_mail_smtputf8((const uint8_t *)"FROM:<a@b>", 10));
}

int main(void) {
  SL_RUN(test_domains);
  SL_RUN(test_routing);
  SL_RUN(test_unconfigured_and_trusted);
  SL_RUN(test_policy_check);
  SL_RUN(test_envelope_8bit);
  SL_RUN(test_envelope_path);
  return sl_test_summary();
}
