/*
 * sl_caps_test.c: EHLO capability parsing and rendering (sl_caps.h).
 *
 * Parsing a Postfix-like EHLO reply (values, AUTH list, XCLIENT, STARTTLS,
 * unknown and lower-case keywords), refusing odd AUTH lists; rendering in
 * the fixed order, SIZE with and without value, AUTH dropped without
 * mechanisms, XCLIENT never, a single line when nothing is offered, and
 * every rendering scanning back as a valid reply with the same capabilities.
 * Replies and render buffers end right before a PROT_NONE page.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sl_caps.h"
#include "sl_guard.h"
#include "sl_reply.h"
#include "sl_test.h"

#include "sluice/caps.h"
#include "sluice/errors.h"
#include "sluice/policy.h"

#define U(s) ((const uint8_t *)(s))
#define AREA (64 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

/* Scans s as a reply (it must be one, exactly) and parses it. */
static const uint8_t *parse(const char *s, sl_caps *caps) {
  size_t n = strlen(s);
  const uint8_t *g = guarded(s, n);
  sl_reply r;
  int rc = sl_reply_scan(g, n, 512, 13312, &r);
  CHECK_INT(rc, 1);
  memset(caps, 0xa5, sizeof *caps);
  if (rc != 1) {
    memset(caps, 0, sizeof *caps);
    return g;
  }
  CHECK_INT(r.len, n);
  sl_caps_parse(g, &r, caps);
  return g;
}

static void test_parse_postfix(void) {
  static const char postfix[] = "250-mx.example.org\r\n"
                                "250-PIPELINING\r\n"
                                "250-SIZE 10240000\r\n"
                                "250-VRFY\r\n"
                                "250-ETRN\r\n"
                                "250-STARTTLS\r\n"
                                "250-AUTH PLAIN LOGIN\r\n"
                                "250-AUTH=PLAIN LOGIN\r\n"
                                "250-ENHANCEDSTATUSCODES\r\n"
                                "250-8BITMIME\r\n"
                                "250-DSN\r\n"
                                "250-SMTPUTF8\r\n"
                                "250-CHUNKING\r\n"
                                "250-XCLIENT NAME ADDR PROTO HELO\r\n"
                                "250-XFORWARD NAME ADDR PROTO HELO\r\n"
                                "250-BINARYMIME\r\n"
                                "250 X-FUTURE-EXTENSION a=b\r\n";
  sl_caps caps;
  const uint8_t *g = parse(postfix, &caps);
  CHECK_INT(caps.bits, SL_CAP_PIPELINING | SL_CAP_SIZE | SL_CAP_8BITMIME |
                           SL_CAP_SMTPUTF8 | SL_CAP_ENHANCEDSTATUSCODES |
                           SL_CAP_DSN | SL_CAP_CHUNKING | SL_CAP_STARTTLS |
                           SL_CAP_AUTH | SL_CAP_XCLIENT | SL_CAP_XFORWARD);
  CHECK(caps.size == 10240000);
  CHECK_MEM(g + caps.auth_off, caps.auth_len, "PLAIN LOGIN", 11);
}

/* Only the RFC 4954 keyword offers AUTH: a server that shows just the
   legacy "AUTH=" line has not (fuzz finding
   relay-g8-legacy-auth-equals-taken-as-auth). */
static void test_parse_legacy_auth_equals(void) {
  sl_caps caps;
  parse("250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 PIPELINING\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_PIPELINING);
  CHECK_INT(caps.auth_len, 0);
}

static void test_parse_variants(void) {
  sl_caps caps;
  const uint8_t *g;
  /* a single-line reply offers nothing, whatever its text says */
  parse("250 mx.example SIZE PIPELINING\r\n", &caps);
  CHECK_INT(caps.bits, 0);
  CHECK(caps.size == 0);
  CHECK_INT(caps.auth_len, 0);
  /* the first line is the greeting, never a keyword */
  parse("250-SIZE 5\r\n250 DSN\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_DSN);
  CHECK(caps.size == 0);
  /* lower case keywords */
  g = parse("250-mx\r\n250-size 42\r\n250-pipelining\r\n250-starttls\r\n"
            "250 auth cram-md5 plain\r\n",
            &caps);
  CHECK_INT(caps.bits,
            SL_CAP_SIZE | SL_CAP_PIPELINING | SL_CAP_STARTTLS | SL_CAP_AUTH);
  CHECK(caps.size == 42);
  CHECK_MEM(g + caps.auth_off, caps.auth_len, "cram-md5 plain", 14);
  /* SIZE without a value, with junk, with 19 and 20 digits */
  parse("250-mx\r\n250 SIZE\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_SIZE);
  CHECK(caps.size == 0);
  parse("250-mx\r\n250 SIZE abc\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_SIZE);
  CHECK(caps.size == 0);
  parse("250-mx\r\n250 SIZE 9999999999999999999\r\n", &caps);
  CHECK(caps.size == 9999999999999999999ull);
  parse("250-mx\r\n250 SIZE 99999999999999999999\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_SIZE); /* no overflow: at most 19 digits read */
  CHECK(caps.size == 9999999999999999999ull);
  /* prefixes and extensions of known keywords are unknown */
  parse("250-mx\r\n250-SIZEX 10\r\n250-PIPELININGS\r\n250-STARTTL\r\n"
        "250-XCLIENTS\r\n250 DSNX\r\n",
        &caps);
  CHECK_INT(caps.bits, 0);
  /* XCLIENT alone */
  parse("250-mx\r\n250 XCLIENT ADDR\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_XCLIENT);
  /* empty lines */
  parse("250-mx\r\n250-\r\n250\r\n", &caps);
  CHECK_INT(caps.bits, 0);
}

/* AUTH lists sluice would repeat to the client: SASL names only. */
static void test_parse_auth(void) {
  static const struct {
    const char *line;
    int ok;
  } a[] = {
      {"AUTH PLAIN", 1},
      {"AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256 GSSAPI X_OAUTH2", 1},
      {"AUTH=PLAIN", 0}, /* pre-RFC 4954: not the AUTH offer */
      {"AUTH", 0},
      {"AUTH ", 0},
      {"AUTH PLAIN\x01", 0},
      {"AUTH PLAIN;LOGIN", 0},
      {"AUTH <script>", 0},
      {"AUTH PLAIN\tLOGIN", 0},
      {"AUTH PL\xc3\xa4IN", 0},
      {"AUTH PLAIN,LOGIN", 0},
      {"AUTH PLAIN=", 0},
      {"AUTH PLAIN\x7f", 0},
  };
  for (size_t t = 0; t < sizeof a / sizeof a[0]; t++) {
    char buf[128];
    sl_caps caps;
    snprintf(buf, sizeof buf, "250-mx\r\n250-%s\r\n250 DSN\r\n", a[t].line);
    const uint8_t *g = parse(buf, &caps);
    if (!!(caps.bits & SL_CAP_AUTH) != a[t].ok)
      fprintf(stderr, "auth line \"%s\"\n", a[t].line);
    CHECK_INT(!!(caps.bits & SL_CAP_AUTH), a[t].ok);
    CHECK(caps.bits & SL_CAP_DSN);
    if (a[t].ok) {
      CHECK_MEM(g + caps.auth_off, caps.auth_len, a[t].line + 5,
                strlen(a[t].line) - 5);
    } else {
      CHECK_INT(caps.auth_len, 0);
    }
  }
  /* a refused second AUTH line keeps the first one */
  sl_caps caps;
  const uint8_t *g =
      parse("250-mx\r\n250-AUTH PLAIN\r\n250 AUTH=PLAIN;x\r\n", &caps);
  CHECK(caps.bits & SL_CAP_AUTH);
  CHECK_MEM(g + caps.auth_off, caps.auth_len, "PLAIN", 5);
}

/* ---- rendering ------------------------------------------------------------
 */

static const uint32_t all_caps =
    SL_CAP_PIPELINING | SL_CAP_SIZE | SL_CAP_8BITMIME | SL_CAP_SMTPUTF8 |
    SL_CAP_ENHANCEDSTATUSCODES | SL_CAP_DSN | SL_CAP_CHUNKING |
    SL_CAP_STARTTLS | SL_CAP_AUTH | SL_CAP_XCLIENT;

/* Renders into a buffer of exactly greetlen + authlen + SL_CAPS_RENDER_MAX
   bytes ending at the guard page. */
static size_t render(uint8_t **outp, const char *greet, uint32_t offer,
                     uint64_t size, const char *auth) {
  size_t gl = strlen(greet), al = auth ? strlen(auth) : 0;
  size_t cap = gl + al + SL_CAPS_RENDER_MAX;
  uint8_t *out = guard_end - cap;
  memset(out, 0xee, cap);
  size_t n =
      sl_caps_render(out, U(greet), gl, offer, size, U(auth ? auth : ""), al);
  CHECK(n <= cap);
  *outp = out;
  return n;
}

static void test_render(void) {
  uint8_t *out;
  size_t n;
  /* everything, in the fixed order; XCLIENT never */
  n = render(&out, "mx.example", all_caps, 10240000, "PLAIN LOGIN");
  static const char want_all[] = "250-mx.example\r\n"
                                 "250-PIPELINING\r\n"
                                 "250-SIZE 10240000\r\n"
                                 "250-8BITMIME\r\n"
                                 "250-SMTPUTF8\r\n"
                                 "250-ENHANCEDSTATUSCODES\r\n"
                                 "250-DSN\r\n"
                                 "250-CHUNKING\r\n"
                                 "250-STARTTLS\r\n"
                                 "250 AUTH PLAIN LOGIN\r\n";
  CHECK_MEM(out, n, want_all, sizeof want_all - 1);

  /* SIZE without a value */
  n = render(&out, "mx", SL_CAP_SIZE, 0, NULL);
  CHECK_MEM(out, n, "250-mx\r\n250 SIZE\r\n", 18);
  n = render(&out, "mx", SL_CAP_SIZE | SL_CAP_DSN, 1, NULL);
  CHECK_MEM(out, n, "250-mx\r\n250-SIZE 1\r\n250 DSN\r\n", 29);
  /* AUTH dropped with an empty mechanism list; it can be the last line */
  n = render(&out, "mx", SL_CAP_AUTH | SL_CAP_DSN, 0, NULL);
  CHECK_MEM(out, n, "250-mx\r\n250 DSN\r\n", 17);
  n = render(&out, "mx", SL_CAP_AUTH, 0, "");
  CHECK_MEM(out, n, "250 mx\r\n", 8);
  n = render(&out, "mx", SL_CAP_AUTH | SL_CAP_PIPELINING, 0, "PLAIN");
  CHECK_MEM(out, n, "250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n", 40);
  /* XCLIENT alone, nothing, unknown bits: a single line */
  n = render(&out, "mx.example Hi", SL_CAP_XCLIENT, 0, NULL);
  CHECK_MEM(out, n, "250 mx.example Hi\r\n", 19);
  n = render(&out, "mx", 0, 0, NULL);
  CHECK_MEM(out, n, "250 mx\r\n", 8);
  n = render(&out, "mx", 0xfffffc00u, 5, "PLAIN");
  CHECK_MEM(out, n, "250 mx\r\n", 8);
  n = render(&out, "mx", SL_CAP_DSN | 0x80000000u | SL_CAP_XCLIENT, 0, NULL);
  CHECK_MEM(out, n, "250-mx\r\n250 DSN\r\n", 17);
  /* an empty greeting text */
  n = render(&out, "", SL_CAP_DSN, 0, NULL);
  CHECK_MEM(out, n, "250-\r\n250 DSN\r\n", 15);
  /* the greeting's control bytes are neutralised */
  n = render(&out, "mx\r\n250 evil", 0, 0, NULL);
  CHECK_MEM(out, n, "250 mx??250 evil\r\n", 18);
}

/* Every combination of offered bits, with the largest SIZE, fits the
   documented bound, scans as one valid reply and parses back to the same
   offer (without XCLIENT, and without AUTH when no list is given). */
static void test_render_roundtrip(void) {
  static const char greet[] = "mx.example.org ESMTP ready";
  static const char auth[] = "PLAIN LOGIN CRAM-MD5";
  for (uint32_t offer = 0; offer < (1u << 10); offer++) {
    for (int with_auth = 0; with_auth < 2; with_auth++) {
      uint64_t size = offer & 1 ? UINT64_MAX : 35882577;
      uint8_t *out;
      size_t n = render(&out, greet, offer, size, with_auth ? auth : NULL);
      sl_reply r;
      int rc = sl_reply_scan(out, n, 512, 13312, &r);
      CHECK_INT(rc, 1);
      if (rc != 1)
        continue;
      CHECK_INT(r.len, n);
      CHECK_INT(r.code, 250);
      uint32_t want = offer & ~(uint32_t)SL_CAP_XCLIENT;
      if (!with_auth)
        want &= ~(uint32_t)SL_CAP_AUTH;
      unsigned nbits = 0;
      for (uint32_t b = want; b; b &= b - 1)
        nbits++;
      CHECK_INT(r.nlines, 1 + nbits);
      sl_caps caps;
      sl_caps_parse(out, &r, &caps);
      CHECK_INT(caps.bits, want);
      if (want & SL_CAP_SIZE)
        CHECK(caps.size ==
              (size > 9999999999999999999ull ? 1844674407370955161ull : size));
      if (want & SL_CAP_AUTH)
        CHECK_MEM(out + caps.auth_off, caps.auth_len, auth, sizeof auth - 1);
      /* the greeting line comes first and is intact */
      size_t pos = 0;
      const uint8_t *text;
      size_t tl;
      CHECK_INT(sl_reply_next_line(out, &r, &pos, &text, &tl), 1);
      CHECK_MEM(text, tl, greet, sizeof greet - 1);
    }
  }
}

/* The public entry point drivers use on health-check EHLO replies. */
static void test_ehlo_features(void) {
  static const char postfix[] =
      "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
      "250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n"
      "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
      "250-XCLIENT NAME ADDR\r\n250 SMTPUTF8\r\n";
  uint32_t f = 0xffffffffu;
  uint64_t size = 7;
  size_t n = sizeof postfix - 1;
  CHECK_INT(sl_ehlo_features(guarded(postfix, n), n, &f, &size), 0);
  /* no CHUNKING (smtpd_discard_ehlo_keywords = chunking), no AUTH; XCLIENT
     is not a feature */
  CHECK_INT(f, SL_FEAT_PIPELINING | SL_FEAT_SIZE | SL_FEAT_8BITMIME |
                   SL_FEAT_SMTPUTF8 | SL_FEAT_ENHANCEDSTATUSCODES |
                   SL_FEAT_DSN | SL_FEAT_STARTTLS);
  CHECK_INT(size, 10240000);
  static const char bare[] = "250 mx.example.org\r\n";
  n = sizeof bare - 1;
  CHECK_INT(sl_ehlo_features(guarded(bare, n), n, &f, &size), 0);
  CHECK_INT(f, 0);
  CHECK_INT(size, 0);
  static const char chunk[] = "250-a\r\n250-chunking\r\n250 AUTH PLAIN\r\n";
  n = sizeof chunk - 1;
  CHECK_INT(sl_ehlo_features(guarded(chunk, n), n, &f, &size), 0);
  CHECK_INT(f, SL_FEAT_CHUNKING | SL_FEAT_AUTH);
  /* not exactly one complete 2xx reply */
  static const char *bad[] = {
      "550 no\r\n",
      "250-a\r\n250-CHUNKING\r\n",
      "250 a\r\n250 b\r\n",
      "250-a\n250 CHUNKING\r\n",
      "250-a\r\n251 CHUNKING\r\n",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    n = strlen(bad[i]);
    f = 0x5a5a;
    CHECK_INT(sl_ehlo_features(guarded(bad[i], n), n, &f, &size),
              SL_ERR_INVALID_ARGUMENT);
  }
  CHECK_INT(sl_ehlo_features(NULL, 0, &f, &size), SL_ERR_INVALID_ARGUMENT);
}

/* XFORWARD counts only with its base attributes; PORT and SOURCE are
   remembered apart because sending an unoffered one gets it refused. */
static void test_parse_xforward(void) {
  sl_caps caps;
  parse("250-mx\r\n250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n",
        &caps);
  CHECK_INT(caps.bits, SL_CAP_XFORWARD | SL_CAP_XFWD_PORT | SL_CAP_XFWD_SOURCE);
  parse("250-mx\r\n250 xforward name addr proto helo\r\n", &caps);
  CHECK_INT(caps.bits, SL_CAP_XFORWARD);
  parse("250-mx\r\n250 XFORWARD ADDR PORT\r\n", &caps);
  CHECK_INT(caps.bits, 0);
  parse("250-mx\r\n250 XFORWARD\r\n", &caps);
  CHECK_INT(caps.bits, 0);
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_ehlo_features);
  SL_RUN(test_parse_postfix);
  SL_RUN(test_parse_legacy_auth_equals);
  SL_RUN(test_parse_variants);
  SL_RUN(test_parse_xforward);
  SL_RUN(test_parse_auth);
  SL_RUN(test_render);
  SL_RUN(test_render_roundtrip);
  return sl_test_summary();
}
