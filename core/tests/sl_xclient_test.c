/* sl_xclient_test.c: xtext and the XCLIENT and XFORWARD lines, byte for
   byte as Postfix's XCLIENT_README and XFORWARD_README spell them. */
#include <string.h>

#include "sl_caps.h"
#include "sl_test.h"
#include "sl_xclient.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define CHECK_LINE(p, n, lit) CHECK_MEM((p), (n), (lit), strlen(lit))

static sl_addr addr(const char *text, uint16_t port) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  CHECK_INT(sl_addr_parse(&a, text, strlen(text)), 0);
  a.port = port;
  return a;
}

static void test_xtext(void) {
  uint8_t out[64];
  /* RFC 3461 4: "!" to "~" but "+" and "=" as themselves, the rest +XX */
  size_t n = sl_xtext(out, sizeof out, S("mx.example.org"));
  CHECK_MEM(out, n, "mx.example.org", 14);
  n = sl_xtext(out, sizeof out, S("a+b=c d\x7f\x01\xc3\xa9"));
  CHECK_LINE(out, n, "a+2Bb+3Dc+20d+7F+01+C3+A9");
  /* exactly max fits; one byte over gives 0, never a truncated value */
  CHECK_INT(sl_xtext(out, 3, S("abc")), 3);
  CHECK_INT(sl_xtext(out, 2, S("abc")), 0);
  CHECK_INT(sl_xtext(out, 3, S("a b")), 0); /* "a+20b" needs 5 */
  CHECK_INT(sl_xtext(out, 5, S("a b")), 5);
  CHECK_INT(sl_xtext(out, 0, S("")), 0);
}

static void test_xclient(void) {
  uint8_t line[SL_XCLIENT_LINE_MAX];
  sl_addr a = addr("192.0.2.7", 40001);
  sl_ident id = {&a, "client.example", S("client.example"), 1, 1};
  size_t n = sl_xclient_line(line, &id);
  CHECK_LINE(line, n,
             "XCLIENT ADDR=192.0.2.7 PORT=40001 NAME=client.example "
             "HELO=client.example PROTO=ESMTP");

  sl_addr a6 = addr("2001:db8::1", 25);
  sl_ident id6 = {&a6, NULL, S("[2001:db8::1]"), 1, 0};
  n = sl_xclient_line(line, &id6);
  CHECK_LINE(line, n,
             "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25 NAME=[UNAVAILABLE] "
             "HELO=[2001:db8::1] PROTO=SMTP");

  /* no address (PROXY UNKNOWN) and no EHLO yet: neither PORT nor HELO */
  sl_addr none;
  memset(&none, 0, sizeof none);
  sl_ident anon = {&none, NULL, NULL, 0, 0, 0};
  n = sl_xclient_line(line, &anon);
  CHECK_LINE(line, n, "XCLIENT ADDR=[UNAVAILABLE] NAME=[UNAVAILABLE]");
}

/* Values whose xtext is longer than 160 bytes are never sent cut short. */
static void test_xclient_long_values(void) {
  uint8_t line[SL_XCLIENT_LINE_MAX];
  char name[200];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  uint8_t helo[60];
  memset(helo, '+', sizeof helo); /* 180 bytes of xtext */
  sl_addr a = addr("192.0.2.7", 25);
  sl_ident id = {&a, name, helo, sizeof helo, 1, 1};
  size_t n = sl_xclient_line(line, &id);
  CHECK_LINE(line, n,
             "XCLIENT ADDR=192.0.2.7 PORT=25 NAME=[UNAVAILABLE] "
             "PROTO=ESMTP");
  n = sl_xforward_line(line, &id, 0);
  CHECK_LINE(line, n,
             "XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=ESMTP "
             "HELO=[UNAVAILABLE]");
}

static void test_xforward(void) {
  uint8_t line[SL_XCLIENT_LINE_MAX];
  sl_addr a = addr("192.0.2.7", 40001);
  sl_ident id = {&a, "client.example", S("client.example"), 1, 1};
  /* PORT and SOURCE only when the upstream offered them */
  size_t n = sl_xforward_line(line, &id, 0);
  CHECK_LINE(line, n,
             "XFORWARD NAME=client.example ADDR=192.0.2.7 PROTO=ESMTP "
             "HELO=client.example");
  n = sl_xforward_line(line, &id, SL_CAP_XFWD_PORT | SL_CAP_XFWD_SOURCE);
  CHECK_LINE(line, n,
             "XFORWARD NAME=client.example ADDR=192.0.2.7 PORT=40001 "
             "PROTO=ESMTP HELO=client.example SOURCE=REMOTE");

  /* before any EHLO or HELO: both are unavailable, not missing */
  sl_addr none;
  memset(&none, 0, sizeof none);
  sl_ident anon = {&none, NULL, NULL, 0, 0, 0};
  n = sl_xforward_line(line, &anon, SL_CAP_XFWD_PORT);
  CHECK_LINE(line, n,
             "XFORWARD NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] "
             "PROTO=[UNAVAILABLE] HELO=[UNAVAILABLE]");

  sl_ident helo = {&a, NULL, S("old client"), 1, 0};
  n = sl_xforward_line(line, &helo, 0);
  CHECK_LINE(line, n,
             "XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7 PROTO=SMTP "
             "HELO=old+20client");
}

/* The longest values that still fit stay within one command line. */
static void test_line_bound(void) {
  uint8_t line[SL_XCLIENT_LINE_MAX + 64];
  char name[54];
  memset(name, '=', sizeof name - 1); /* 53 * 3 = 159 bytes of xtext */
  name[sizeof name - 1] = '\0';
  uint8_t helo[53];
  memset(helo, ' ', sizeof helo);
  sl_addr a = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
  sl_ident id = {&a, name, helo, sizeof helo, 1, 1};
  size_t x = sl_xclient_line(line, &id);
  size_t f = sl_xforward_line(line, &id, ~0u);
  CHECK(x > 159 * 2 && x <= SL_XCLIENT_LINE_MAX - 2);
  CHECK(f > 159 * 2 && f <= SL_XCLIENT_LINE_MAX - 2);
}

int main(void) {
  SL_RUN(test_xtext);
  SL_RUN(test_xclient);
  SL_RUN(test_xclient_long_values);
  SL_RUN(test_xforward);
  SL_RUN(test_line_bound);
  return sl_test_summary();
}
