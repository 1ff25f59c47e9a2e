/*
 * sl_cmd_test.c: command classification and argument checks (sl_cmd.h).
 *
 * Verb tables (case, unknown verbs, cross-protocol lines), MAIL/RCPT paths
 * and parameters against the RFC 5321 / 6531 / 3461 / 1870 rules, BDAT
 * arguments and EHLO/HELO arguments.  Every input ends right before a
 * PROT_NONE page, so a read past the line crashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sl_cmd.h"
#include "sl_guard.h"
#include "sl_test.h"

#define U(s) ((const uint8_t *)(s))
#define AREA (64 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

/* ---- verbs ----------------------------------------------------------------
 */

static const struct {
  const char *line;
  sl_verb verb;
  uint32_t arg; /* UINT32_MAX: the line's length */
} verbs[] = {
    {"EHLO mx.example", SL_V_EHLO, 5},
    {"ehlo mx.example", SL_V_EHLO, 5},
    {"eHlO mx", SL_V_EHLO, 5},
    {"HELO x", SL_V_HELO, 5},
    {"MAIL FROM:<a@b>", SL_V_MAIL, 5},
    {"mail from:<a@b>", SL_V_MAIL, 5},
    {"MAIL   FROM:<a@b>", SL_V_MAIL, 7},
    {"RCPT TO:<a@b>", SL_V_RCPT, 5},
    {"DATA", SL_V_DATA, UINT32_MAX},
    {"data", SL_V_DATA, UINT32_MAX},
    {"DATA ", SL_V_DATA, UINT32_MAX},
    {"BDAT 10 LAST", SL_V_BDAT, 5},
    {"RSET", SL_V_RSET, UINT32_MAX},
    {"NOOP x", SL_V_NOOP, 5},
    {"QUIT", SL_V_QUIT, UINT32_MAX},
    {"VRFY u", SL_V_VRFY, 5},
    {"EXPN l", SL_V_EXPN, 5},
    {"HELP", SL_V_HELP, UINT32_MAX},
    {"AUTH PLAIN", SL_V_AUTH, 5},
    {"StartTLS", SL_V_STARTTLS, UINT32_MAX},
    {"XCLIENT ADDR=1.2.3.4", SL_V_XCLIENT, 8},
    {"XFORWARD NAME=x", SL_V_XFORWARD, 9},
    {"ETRN x", SL_V_ETRN, 5},
    /* unknown */
    {"", SL_V_UNKNOWN, 0},
    {"FOO", SL_V_UNKNOWN, UINT32_MAX},
    {"MAILX FROM:<>", SL_V_UNKNOWN, 6},
    {"MAI", SL_V_UNKNOWN, UINT32_MAX},
    {"DATA\tx", SL_V_UNKNOWN, UINT32_MAX},
    {"STARTTLSX", SL_V_UNKNOWN, UINT32_MAX},
    {"Z", SL_V_UNKNOWN, UINT32_MAX},
    /* cross-protocol */
    {"GET / HTTP/1.1", SL_V_NONSMTP, 4},
    {"get /", SL_V_NONSMTP, 4},
    {"POST /x HTTP/1.0", SL_V_NONSMTP, 5},
    {"CONNECT mx:25 HTTP/1.1", SL_V_NONSMTP, 8},
    {"HEAD /", SL_V_NONSMTP, 5},
    {"PUT /", SL_V_NONSMTP, 4},
    {"OPTIONS *", SL_V_NONSMTP, 8},
    {"USER root", SL_V_NONSMTP, 5},
    {"Subject: x", SL_V_NONSMTP, 9},
    {"From: a@b", SL_V_NONSMTP, 6},
    {"X-Mailer: y", SL_V_NONSMTP, 10},
    {"Subject:", SL_V_NONSMTP, UINT32_MAX},
    {"250 OK", SL_V_NONSMTP, 4},
    {"1", SL_V_NONSMTP, UINT32_MAX},
    {" MAIL FROM:<>", SL_V_NONSMTP, 1},
    {" ", SL_V_NONSMTP, 1},
    {"\tQUIT", SL_V_NONSMTP, UINT32_MAX},
    {"<a@b>", SL_V_NONSMTP, UINT32_MAX},
    {"\xc3\xa9HLO x", SL_V_NONSMTP, 6},
    {"[QUIT]", SL_V_NONSMTP, UINT32_MAX},
};

static void test_verbs(void) {
  for (size_t t = 0; t < sizeof verbs / sizeof verbs[0]; t++) {
    size_t n = strlen(verbs[t].line);
    sl_cmd c = {SL_V_EHLO, 12345};
    sl_cmd_parse(guarded(verbs[t].line, n), n, &c);
    uint32_t want = verbs[t].arg == UINT32_MAX ? (uint32_t)n : verbs[t].arg;
    if (c.verb != verbs[t].verb || c.arg != want)
      fprintf(stderr, "verb \"%s\": %d arg %u, want %d arg %u\n", verbs[t].line,
              (int)c.verb, c.arg, (int)verbs[t].verb, want);
    CHECK_INT(c.verb, verbs[t].verb);
    CHECK_INT(c.arg, want);
  }
  CHECK_INT(sl_ieq(U("mAiL"), "MAIL", 4), 1);
  CHECK_INT(sl_ieq(U("MAIK"), "MAIL", 4), 0);
  CHECK_INT(sl_ieq(U("m"), "MAIL", 0), 1);
  CHECK_INT(sl_ieq(U("{"), "[", 1), 0); /* no case folding outside a-z */
}

/* ---- MAIL / RCPT ----------------------------------------------------------
 */

#define ALLP                                                                   \
  (SL_P_SIZE | SL_P_BODY_8BIT | SL_P_BODY_7BIT | SL_P_SMTPUTF8 | SL_P_DSN |    \
   SL_P_AUTH | SL_P_BODY_BINARY)

typedef struct pcase {
  const char *arg;
  int is_mail;
  uint32_t allowed;
  sl_path_err want;
} pcase;

#define MAIL 1
#define RCPT 0

static const pcase paths[] = {
    {"FROM:<a@b.example>", MAIL, 0, SL_PATH_OK},
    {"from:<a@b.example>", MAIL, 0, SL_PATH_OK},
    {"FROM: <a@b.example>", MAIL, 0, SL_PATH_OK},
    {"FROM:  <a@b.example>", MAIL, 0, SL_PATH_SYNTAX},
    {"FROM:a@b.example", MAIL, 0, SL_PATH_SYNTAX},
    {"FROM:<a@b.example", MAIL, 0, SL_PATH_SYNTAX},
    {"FROM:", MAIL, 0, SL_PATH_SYNTAX},
    {"FROM", MAIL, 0, SL_PATH_SYNTAX},
    {"", MAIL, 0, SL_PATH_SYNTAX},
    {"TO:<a@b>", MAIL, 0, SL_PATH_SYNTAX},
    {"FROM:<>", MAIL, 0, SL_PATH_OK},
    {"FROM:<> ", MAIL, 0, SL_PATH_OK},
    {"TO:<a@b.example>", RCPT, 0, SL_PATH_OK},
    {"to: <a@b.example>", RCPT, 0, SL_PATH_OK},
    {"TO:<>", RCPT, 0, SL_PATH_SYNTAX},
    {"FROM:<a@b>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<Postmaster>", RCPT, 0, SL_PATH_OK},
    {"TO:<postmaster>", RCPT, 0, SL_PATH_OK},
    {"FROM:<Postmaster>", MAIL, 0, SL_PATH_SYNTAX},
    {"TO:<postmastr>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<user>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<@b>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a@>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a@b", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a b@c>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a<b@c>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a\tb@c>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a\x7f@c>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<a\x01@c>", RCPT, 0, SL_PATH_SYNTAX},
    /* source routes (RFC 5321 3.6.1, C.) */
    {"TO:<@relay.a,@relay.b:user@c.example>", RCPT, 0, SL_PATH_OK},
    {"FROM:<@relay.a:user@c.example>", MAIL, 0, SL_PATH_OK},
    {"TO:<@relay.a,@relay.b>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<@relay.a user@c>", RCPT, 0, SL_PATH_SYNTAX},
    /* quoted local parts */
    {"TO:<\"a b\"@c.example>", RCPT, 0, SL_PATH_OK},
    {"TO:<\"a\\\"b\"@c.example>", RCPT, 0, SL_PATH_OK},
    {"TO:<\"a@b\"@c.example>", RCPT, 0, SL_PATH_OK},
    {"TO:<\"a>b\"@c.example>", RCPT, 0, SL_PATH_OK},
    {"TO:<\"a b@c.example>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<\"a\\\"@c.example>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<\"a\\", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<\"a\x01\"@c>", RCPT, 0, SL_PATH_SYNTAX},
    {"TO:<\"a b\">", RCPT, 0, SL_PATH_SYNTAX},
    /* non-ASCII (RFC 6531) */
    {"FROM:<j\xc3\xb6rg@b.example>", MAIL, ALLP, SL_PATH_NEED_SMTPUTF8},
    {"FROM:<jorg@b\xc3\xa9.example>", MAIL, ALLP, SL_PATH_NEED_SMTPUTF8},
    {"FROM:<j\xc3\xb6rg@b.example> SMTPUTF8", MAIL, ALLP, SL_PATH_OK},
    {"FROM:<j\xc3\xb6rg@b.example> smtputf8", MAIL, ALLP, SL_PATH_OK},
    {"FROM:<j\xc3\xb6rg@b.example> BODY=8BITMIME SMTPUTF8", MAIL, ALLP,
     SL_PATH_OK},
    {"FROM:<j\xc3\xb6rg@b.example> SMTPUTF8", MAIL, ALLP & ~SL_P_SMTPUTF8,
     SL_PATH_PARAM},
    {"FROM:<j\xc3\xb6rg@b.example> SMTPUTF8=yes", MAIL, ALLP, SL_PATH_SYNTAX},
    {"FROM:<j\xc3\xb6rg@b.example> ENVID=SMTPUTF8", MAIL, ALLP,
     SL_PATH_NEED_SMTPUTF8},
    {"FROM:<\"j\xc3\xb6 rg\"@b.example>", MAIL, ALLP, SL_PATH_NEED_SMTPUTF8},
    {"FROM:<a@b.example> SMTPUTF8", MAIL, ALLP, SL_PATH_OK},
    {"TO:<a@b.example> SMTPUTF8", RCPT, ALLP, SL_PATH_PARAM},
    /* parameters, each allowed only with its bit */
    {"FROM:<a@b> SIZE=1000", MAIL, SL_P_SIZE, SL_PATH_OK},
    {"FROM:<a@b> size=1000", MAIL, SL_P_SIZE, SL_PATH_OK},
    {"FROM:<a@b> SIZE=1000", MAIL, ALLP & ~SL_P_SIZE, SL_PATH_PARAM},
    {"FROM:<a@b> SIZE", MAIL, SL_P_SIZE, SL_PATH_SYNTAX},
    {"FROM:<a@b> SIZE=", MAIL, SL_P_SIZE, SL_PATH_SYNTAX},
    {"FROM:<a@b> SIZE=1k", MAIL, SL_P_SIZE, SL_PATH_SYNTAX},
    {"FROM:<a@b> SIZE=-1", MAIL, SL_P_SIZE, SL_PATH_SYNTAX},
    {"FROM:<a@b> SIZE=9999999999999999999", MAIL, SL_P_SIZE, SL_PATH_OK},
    {"FROM:<a@b> SIZE=18446744073709551616", MAIL, SL_P_SIZE, SL_PATH_SYNTAX},
    {"FROM:<a@b>  SIZE=1  ", MAIL, SL_P_SIZE, SL_PATH_OK},
    {"FROM:<a@b> BODY=8BITMIME", MAIL, SL_P_BODY_8BIT, SL_PATH_OK},
    {"FROM:<a@b> BODY=8bitmime", MAIL, SL_P_BODY_8BIT, SL_PATH_OK},
    {"FROM:<a@b> BODY=8BITMIME", MAIL, ALLP & ~SL_P_BODY_8BIT, SL_PATH_PARAM},
    {"FROM:<a@b> BODY=7BIT", MAIL, 0, SL_PATH_OK},
    {"FROM:<a@b> BODY=BINARYMIME", MAIL, SL_P_BODY_BINARY, SL_PATH_OK},
    {"FROM:<a@b> BODY=BINARYMIME", MAIL, ALLP & ~SL_P_BODY_BINARY,
     SL_PATH_PARAM},
    {"FROM:<a@b> BODY=9BIT", MAIL, ALLP, SL_PATH_SYNTAX},
    {"FROM:<a@b> BODY", MAIL, ALLP, SL_PATH_SYNTAX},
    {"FROM:<a@b> RET=HDRS", MAIL, SL_P_DSN, SL_PATH_OK},
    {"FROM:<a@b> RET=HDRS", MAIL, ALLP & ~SL_P_DSN, SL_PATH_PARAM},
    {"FROM:<a@b> RET", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=abc+2B+3Dx", MAIL, SL_P_DSN, SL_PATH_OK},
    {"FROM:<a@b> ENVID=a=b", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a+", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a+2", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a+2b", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a+G0", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a\xc3\xa9", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> ENVID=a\x01", MAIL, SL_P_DSN, SL_PATH_SYNTAX},
    {"FROM:<a@b> AUTH=<>", MAIL, SL_P_AUTH, SL_PATH_OK},
    {"FROM:<a@b> AUTH=u+40x", MAIL, SL_P_AUTH, SL_PATH_OK},
    {"FROM:<a@b> AUTH=<>", MAIL, ALLP & ~SL_P_AUTH, SL_PATH_PARAM},
    {"FROM:<a@b> AUTH", MAIL, SL_P_AUTH, SL_PATH_SYNTAX},
    {"TO:<a@b> NOTIFY=SUCCESS,FAILURE", RCPT, SL_P_DSN, SL_PATH_OK},
    {"TO:<a@b> NOTIFY=NEVER", RCPT, ALLP & ~SL_P_DSN, SL_PATH_PARAM},
    {"TO:<a@b> ORCPT=rfc822;a+40b", RCPT, SL_P_DSN, SL_PATH_OK},
    {"TO:<a@b> ORCPT=rfc822;a=b", RCPT, SL_P_DSN, SL_PATH_SYNTAX},
    {"TO:<a@b> NOTIFY", RCPT, SL_P_DSN, SL_PATH_SYNTAX},
    /* MAIL-only and RCPT-only parameters on the wrong command */
    {"TO:<a@b> SIZE=10", RCPT, ALLP, SL_PATH_PARAM},
    {"TO:<a@b> BODY=8BITMIME", RCPT, ALLP, SL_PATH_PARAM},
    {"TO:<a@b> RET=FULL", RCPT, ALLP, SL_PATH_PARAM},
    {"FROM:<a@b> NOTIFY=NEVER", MAIL, ALLP, SL_PATH_PARAM},
    {"FROM:<a@b> ORCPT=rfc822;x", MAIL, ALLP, SL_PATH_PARAM},
    /* unknown parameters */
    {"FROM:<a@b> XFOO=1", MAIL, ALLP, SL_PATH_PARAM},
    {"FROM:<a@b> =1", MAIL, ALLP, SL_PATH_PARAM},
    {"FROM:<a@b> SIZEX=1", MAIL, ALLP, SL_PATH_PARAM},
    {"FROM:<a@b> X", MAIL, ALLP, SL_PATH_PARAM},
    {"TO:<a@b> XRCPTFORWARD=1", RCPT, ALLP, SL_PATH_PARAM},
};

static void test_paths(void) {
  sl_path_limits lim = {256, 255, 0, 0};
  for (size_t t = 0; t < sizeof paths / sizeof paths[0]; t++) {
    size_t n = strlen(paths[t].arg);
    lim.allowed = paths[t].allowed;
    uint64_t size = 7;
    sl_path_err e = sl_cmd_check_path(guarded(paths[t].arg, n), n,
                                      paths[t].is_mail, &lim, &size);
    if (e != paths[t].want)
      fprintf(stderr, "path %zu \"%s\" (%s): %d, want %d\n", t, paths[t].arg,
              paths[t].is_mail ? "MAIL" : "RCPT", (int)e, (int)paths[t].want);
    CHECK_INT(e, paths[t].want);
  }
}

/* A NULL size pointer is fine; SIZE fills it; the limit is inclusive. */
static void test_size(void) {
  sl_path_limits lim = {256, 255, 1000, SL_P_SIZE};
  uint64_t size = 0;
  CHECK_INT(sl_cmd_check_path(U("FROM:<a@b> SIZE=1000"), 20, 1, &lim, &size),
            SL_PATH_OK);
  CHECK_INT(size, 1000);
  CHECK_INT(sl_cmd_check_path(U("FROM:<a@b> SIZE=1001"), 20, 1, &lim, &size),
            SL_PATH_SIZE);
  CHECK_INT(sl_cmd_check_path(U("FROM:<a@b> SIZE=0"), 17, 1, &lim, NULL),
            SL_PATH_OK);
  CHECK_INT(
      sl_cmd_check_path(U("FROM:<a@b> SIZE=99999999999999"), 30, 1, &lim, NULL),
      SL_PATH_SIZE);
  lim.size_max = 0; /* none */
  CHECK_INT(sl_cmd_check_path(U("FROM:<a@b> SIZE=99999999999999"), 30, 1, &lim,
                              &size),
            SL_PATH_OK);
  CHECK(size == 99999999999999ull);
  /* a SIZE over the limit the client was not offered is a PARAM error */
  lim.size_max = 10;
  lim.allowed = 0;
  CHECK_INT(sl_cmd_check_path(U("FROM:<a@b> SIZE=11"), 18, 1, &lim, &size),
            SL_PATH_PARAM);
}

/* Local part 64/65, domain 255/256, the whole path against path_max. */
static void test_path_lengths(void) {
  char buf[1200];
  sl_path_limits lim = {1024, 255, 0, 0};
  size_t n;
  for (int is_mail = 0; is_mail < 2; is_mail++) {
    const char *kw = is_mail ? "FROM:<" : "TO:<";
    for (size_t local = 63; local <= 66; local++) {
      n = (size_t)sprintf(buf, "%s", kw);
      memset(buf + n, 'l', local);
      n += local;
      n += (size_t)sprintf(buf + n, "@b.example>");
      CHECK_INT(sl_cmd_check_path(guarded(buf, n), n, is_mail, &lim, NULL),
                local <= 64 ? SL_PATH_OK : SL_PATH_TOO_LONG);
    }
    /* a source route does not count towards the local part */
    n = (size_t)sprintf(buf, "%s@r.example:", kw);
    memset(buf + n, 'l', 64);
    n += 64;
    n += (size_t)sprintf(buf + n, "@b.example>");
    CHECK_INT(sl_cmd_check_path(guarded(buf, n), n, is_mail, &lim, NULL),
              SL_PATH_OK);
    for (size_t dom = 254; dom <= 257; dom++) {
      n = (size_t)sprintf(buf, "%sa@", kw);
      memset(buf + n, 'd', dom);
      n += dom;
      buf[n++] = '>';
      CHECK_INT(sl_cmd_check_path(guarded(buf, n), n, is_mail, &lim, NULL),
                dom <= 255 ? SL_PATH_OK : SL_PATH_TOO_LONG);
    }
    /* the path, brackets included, against path_max 256 */
    sl_path_limits rfc = {256, 255, 0, 0};
    for (size_t plen = 253; plen <= 256; plen++) { /* without brackets */
      n = (size_t)sprintf(buf, "%s", kw);
      memset(buf + n, 'l', 60);
      buf[n + 60] = '@';
      memset(buf + n + 61, 'd', plen - 61);
      n += plen;
      buf[n++] = '>';
      CHECK_INT(sl_cmd_check_path(guarded(buf, n), n, is_mail, &rfc, NULL),
                plen + 2 <= 256 ? SL_PATH_OK : SL_PATH_TOO_LONG);
    }
  }
}

/* Regression (bug 5, fixed): a quoted-pair ("\" + byte) inside a quoted local
   part skips every check on the escaped byte: control bytes are accepted (RFC
   5321 4.1.2 allows only %d32-126 after "\"), and escaped bytes
         >= 0x80 do not count as non-ASCII, so a UTF-8 address written as
         quoted-pairs needs no SMTPUTF8: MAIL FROM:<"\x01"@b> is OK and
         MAIL FROM:<"\\\xc3\\\xa9"@b> is OK instead of NEED_SMTPUTF8. */
static void test_quoted_pair(void) {
  sl_path_limits lim = {256, 255, 0, 0};
  static const char ctl[] = "FROM:<\"\\\x01\"@b.example>";
  static const char utf[] = "FROM:<\"\\\xc3\\\xa9\"@b.example>";
  CHECK_INT(sl_cmd_check_path(U(ctl), sizeof ctl - 1, 1, &lim, NULL),
            SL_PATH_SYNTAX);
  CHECK_INT(sl_cmd_check_path(U(utf), sizeof utf - 1, 1, &lim, NULL),
            SL_PATH_NEED_SMTPUTF8);
}

/* ---- BDAT -----------------------------------------------------------------
 */

static void test_bdat(void) {
  static const struct {
    const char *arg;
    int rc;
    uint64_t size;
    int last;
  } bd[] = {
      {"0", 0, 0, 0},
      {"100", 0, 100, 0},
      {"100 LAST", 0, 100, 1},
      {"100 last", 0, 100, 1},
      {"100 LaSt", 0, 100, 1},
      {"0 LAST", 0, 0, 1},
      {"100   LAST", 0, 100, 1},
      {"100 ", 0, 100, 0},
      {"9999999999999999999", 0, 9999999999999999999ull, 0},
      {"18446744073709551615", -1, 0, 0}, /* 20 digits */
      {"99999999999999999999 LAST", -1, 0, 0},
      {"", -1, 0, 0},
      {" 100", -1, 0, 0},
      {"+100", -1, 0, 0},
      {"-1", -1, 0, 0},
      {"10x", -1, 0, 0},
      {"0x10", -1, 0, 0},
      {"100 LASTX", -1, 0, 0},
      {"100 LAS", -1, 0, 0},
      {"100 LAST ", -1, 0, 0},
      {"100 LAST x", -1, 0, 0},
      {"100 junk", -1, 0, 0},
      {"100\tLAST", -1, 0, 0},
      {"LAST", -1, 0, 0},
  };
  for (size_t t = 0; t < sizeof bd / sizeof bd[0]; t++) {
    size_t n = strlen(bd[t].arg);
    uint64_t size = 77;
    int last = 77;
    int rc = sl_cmd_bdat(guarded(bd[t].arg, n), n, &size, &last);
    if (rc != bd[t].rc)
      fprintf(stderr, "bdat \"%s\": %d\n", bd[t].arg, rc);
    CHECK_INT(rc, bd[t].rc);
    if (rc == 0 && bd[t].rc == 0) {
      CHECK(size == bd[t].size);
      CHECK_INT(last, bd[t].last);
    }
  }
}

/* ---- HELO -----------------------------------------------------------------
 */

static void test_helo(void) {
  static const struct {
    const char *arg;
    uint32_t max;
    size_t want;
  } h[] = {
      {"mx.example", 255, 10},
      {"[192.0.2.1]", 255, 11},
      {"[IPv6:2001:db8::1]", 255, 18},
      {"mx.example trailing words", 255, 10},
      {"x", 255, 1},
      {"", 255, 0},
      {" mx", 255, 0},
      {"mx\x01", 255, 0},
      {"m\tx", 255, 0},
      {"mx\x7f", 255, 0},
      {"abcdefghij", 10, 10},
      {"abcdefghijk", 10, 0},
      {"abcdefghij x", 10, 10},
      {"m\xc3\xbcnchen.example", 255, 16}, /* high bytes are kept */
  };
  for (size_t t = 0; t < sizeof h / sizeof h[0]; t++) {
    size_t n = strlen(h[t].arg);
    size_t got = sl_cmd_helo_arg(guarded(h[t].arg, n), n, h[t].max);
    if (got != h[t].want)
      fprintf(stderr, "helo \"%s\": %zu\n", h[t].arg, got);
    CHECK_INT(got, h[t].want);
  }
  /* 255 and 256 bytes against the RFC domain limit */
  char buf[300];
  memset(buf, 'd', sizeof buf);
  CHECK_INT(sl_cmd_helo_arg(guarded(buf, 255), 255, 255), 255);
  CHECK_INT(sl_cmd_helo_arg(guarded(buf, 256), 256, 255), 0);
}

/* Parameters an upstream without the extension must not see. */
static void drop_case(const char *line, uint32_t drop, const char *want,
                      uint32_t classes) {
  size_t n = strlen(line);
  sl_cmd c;
  sl_cmd_parse(U(line), n, &c);
  const uint8_t *g = sl_guard_copy(guard_end, line, n);
  CHECK_INT(sl_cmd_param_classes(g + c.arg, n - c.arg), classes);
  uint8_t out[600];
  size_t k = sl_cmd_drop_params(g, n, c.arg, drop, out);
  CHECK(k <= n);
  CHECK_MEM(out, k, want, strlen(want));
}

static void test_drop_params(void) {
  drop_case("MAIL FROM:<a@b.c> SIZE=10 RET=HDRS ENVID=x+2Cy AUTH=<>",
            SL_P_SIZE | SL_P_DSN | SL_P_AUTH, "MAIL FROM:<a@b.c>",
            SL_P_SIZE | SL_P_DSN | SL_P_AUTH);
  drop_case("MAIL FROM:<a@b.c> SIZE=10 BODY=7BIT", SL_P_DSN,
            "MAIL FROM:<a@b.c> SIZE=10 BODY=7BIT", SL_P_SIZE | SL_P_BODY_7BIT);
  drop_case("MAIL FROM:<a@b.c> SIZE=10  BODY=8BITMIME", SL_P_SIZE,
            "MAIL FROM:<a@b.c> BODY=8BITMIME", SL_P_SIZE | SL_P_BODY_8BIT);
  drop_case("MAIL FROM:<a@b.c> SMTPUTF8", 0, "MAIL FROM:<a@b.c> SMTPUTF8",
            SL_P_SMTPUTF8);
  drop_case("RCPT TO:<b@c.d> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@c.d", SL_P_DSN,
            "RCPT TO:<b@c.d>", SL_P_DSN);
  /* a quoted local part may hold '>' and spaces: the path is kept whole */
  drop_case("MAIL FROM:<\"x> SIZE=1\"@b.c> SIZE=5", SL_P_SIZE,
            "MAIL FROM:<\"x> SIZE=1\"@b.c>", SL_P_SIZE);
  drop_case("MAIL FROM:<> size=5", SL_P_SIZE, "MAIL FROM:<>", SL_P_SIZE);
  drop_case("RCPT TO:<b@c.d>", SL_P_DSN, "RCPT TO:<b@c.d>", 0);
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_drop_params);
  SL_RUN(test_verbs);
  SL_RUN(test_paths);
  SL_RUN(test_size);
  SL_RUN(test_path_lengths);
  SL_RUN(test_bdat);
  SL_RUN(test_helo);
  SL_RUN(test_quoted_pair);
  return sl_test_summary();
}
