/*
 * sl_milter_test.c: milter v6 MTA side (sluice/milter.h).
 *
 * Vectors in vectors/milter/ are whole sessions with real filters,
 * captured on loopback by vectors/capture_milter.py: a python3-milter
 * (libmilter) filter, vectors/test_milter.py, in six scenarios, and
 * rspamd 3.4's proxy worker in milter mode (all SMFIP_NR_* flags) with
 * GTUBE and a clean message.  Each session is replayed here as the MTA:
 * every packet sluice would send must be byte for byte the captured one
 * (which the real filter understood: its log is in the capture script's
 * output), sl_milter_sends / sl_milter_expects_reply must say exactly
 * when the filter sent or skipped a reply, and the filter's packets, fed
 * in one piece and one byte at a time, must decode to the expected
 * decisions and modifications.  Hand-made packets cover the rest.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_guard.h"
#include "sl_test.h"
#include "sluice/milter.h"

#define U(s) ((const uint8_t *)(s))
#define S(x) (x), sizeof(x) - 1
#define AREA (256 * 1024)

static uint8_t *guard_end;

static const uint8_t *guarded(const void *p, size_t n) {
  return sl_guard_copy(guard_end, p, n);
}

static sl_bytes B(const char *s) {
  return (sl_bytes){(const uint8_t *)s, strlen(s)};
}

static int bytes_is(sl_bytes b, const char *s) {
  return b.len == strlen(s) && memcmp(b.p, s, b.len) == 0;
}

/* ---- transcript replay ------------------------------------------------- */

/* What capture_milter.py offers: every action but CHGBODY, every step. */
#define OFFER_ACTIONS 0x1fdu
#define OFFER_PROTOCOL 0x1fffffu

typedef struct transcript {
  uint8_t data[16384];
  size_t len;
  size_t pos;
} transcript;

static void load(transcript *t, const char *path) {
  t->len = sl_test_read_file(path, t->data, sizeof(t->data));
  t->pos = 0;
}

/* The next record: its direction and packet, or 0 at the end. */
static int next_record(transcript *t, const uint8_t **p, size_t *n) {
  if (t->pos + 5 > t->len)
    return 0;
  uint8_t dir = t->data[t->pos];
  const uint8_t *h = t->data + t->pos + 1;
  *n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
  *p = t->data + t->pos + 5;
  t->pos += 5 + *n;
  return dir;
}

typedef struct replay {
  transcript t;
  sl_milter_session s;
  int negotiated;
  sl_milter_reply mods[16];
  size_t nmods;
  sl_milter_reply final; /* the decision that ended the last event */
  int failed;
} replay;

/* Reads the filter's packet through the reader, once whole and once a
   byte at a time, and decodes it. */
static void read_filter_packet(const uint8_t *p, size_t n,
                               sl_milter_reply *out) {
  static uint8_t buf[SL_MILTER_CHUNK_MAX + 1];
  sl_milter_reader r;
  const uint8_t *data;
  size_t dlen, used;
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded(p, n), n, &used), SL_OK);
  CHECK_INT(used, n);
  uint8_t cmd = sl_milter_reader_packet(&r, &data, &dlen);
  CHECK_INT(dlen + 5, n);
  CHECK_INT(sl_milter_decode(cmd, data, dlen, out), SL_OK);

  sl_milter_reader_init(&r, buf, sizeof(buf));
  for (size_t i = 0; i < n; i++) {
    int rc = sl_milter_reader_feed(&r, guarded(p + i, 1), 1, &used);
    CHECK_INT(used, 1);
    CHECK_INT(rc, i + 1 == n ? SL_OK : SL_ERR_INCOMPLETE);
    CHECK_INT(sl_milter_reader_partial(&r), i + 1 < n);
  }
  sl_milter_reply again;
  CHECK_INT(sl_milter_reader_packet(&r, &data, &dlen), cmd);
  CHECK_INT(sl_milter_decode(cmd, data, dlen, &again), SL_OK);
  CHECK_INT(again.kind, out->kind);
}

/* Sends one event as sluice would: skipped if the filter opted out,
   compared with the capture, and its replies read if one is due. */
static void event(replay *rp, uint8_t cmd, const uint8_t *pkt, long plen) {
  const uint8_t *p = NULL;
  size_t n = 0;
  CHECK(plen > 0);
  if (rp->negotiated && !sl_milter_sends(&rp->s, cmd))
    return;
  int dir = next_record(&rp->t, &p, &n);
  CHECK_INT(dir, '>');
  if (dir != '>' || (size_t)plen != n || memcmp(p, pkt, n) != 0) {
    fprintf(stderr, "packet '%c' differs from the capture\n", cmd);
    rp->failed = 1;
  }
  CHECK_MEM(pkt, plen, p, n);
  if (cmd == SL_MILTER_CMD_OPTNEG) {
    sl_milter_reply o;
    CHECK_INT(next_record(&rp->t, &p, &n), '<');
    read_filter_packet(p, n, &o);
    CHECK_INT(o.kind, SL_MILTER_OPTNEG);
    CHECK_INT(sl_milter_negotiate(OFFER_ACTIONS, &o, &rp->s, NULL), SL_OK);
    rp->negotiated = 1;
    return;
  }
  if (!sl_milter_expects_reply(&rp->s, cmd))
    return;
  for (;;) {
    sl_milter_reply r;
    const char *why = NULL;
    CHECK_INT(next_record(&rp->t, &p, &n), '<');
    read_filter_packet(p, n, &r);
    /* kept past the reader's next packet: decode from the transcript */
    CHECK_INT(sl_milter_decode(p[4], p + 5, n - 5, &r), SL_OK);
    CHECK_INT(sl_milter_check_reply(&rp->s, cmd, &r, &why), SL_OK);
    if (why)
      fprintf(stderr, "check_reply: %s\n", why);
    if (r.kind == SL_MILTER_PROGRESS)
      continue;
    if (r.kind >= SL_MILTER_ADDHEADER) {
      if (rp->nmods < 16)
        rp->mods[rp->nmods++] = r;
      continue;
    }
    rp->final = r;
    return;
  }
}

/* The session capture_milter.py plays, in its order. */
static void play(replay *rp, const char *file, const char *sender,
                 const char *body) {
  static uint8_t pkt[SL_MILTER_CHUNK_MAX + 64];
  memset(rp, 0, sizeof(*rp));
  load(&rp->t, file);
  event(
      rp, SL_MILTER_CMD_OPTNEG, pkt,
      sl_milter_put_optneg(pkt, sizeof(pkt), 6, OFFER_ACTIONS, OFFER_PROTOCOL));
  sl_milter_macro mc[] = {{B("j"), B("mx.example.org")},
                          {B("{daemon_name}"), B("sluice")}};
  /* macros go out unconditionally and are never answered */
  event(rp, SL_MILTER_CMD_MACRO, pkt,
        sl_milter_put_macro(pkt, sizeof(pkt), SL_MILTER_CMD_CONNECT, mc, 2));
  sl_addr a = {SL_AF_INET, 0, 54321, {192, 0, 2, 1}};
  event(rp, SL_MILTER_CMD_CONNECT, pkt,
        sl_milter_put_connect(pkt, sizeof(pkt), B("client.example.org"), &a));
  event(rp, SL_MILTER_CMD_HELO, pkt,
        sl_milter_put_helo(pkt, sizeof(pkt), B("client.example.org")));
  sl_milter_macro mm[] = {{B("i"), B("4XyZ1")}};
  event(rp, SL_MILTER_CMD_MACRO, pkt,
        sl_milter_put_macro(pkt, sizeof(pkt), SL_MILTER_CMD_MAIL, mm, 1));
  sl_bytes params[] = {B("SIZE=1000"), B("BODY=8BITMIME")};
  event(rp, SL_MILTER_CMD_MAIL, pkt,
        sl_milter_put_mail(pkt, sizeof(pkt), B(sender), params, 2));
  event(rp, SL_MILTER_CMD_RCPT, pkt,
        sl_milter_put_rcpt(pkt, sizeof(pkt), B("b@example.org"), NULL, 0));
  event(rp, SL_MILTER_CMD_DATA, pkt,
        sl_milter_put_simple(pkt, sizeof(pkt), SL_MILTER_CMD_DATA));
  const char *h[][2] = {{"From", "a@example.org"},
                        {"To", "b@example.org"},
                        {"Subject", "capture"}};
  for (int i = 0; i < 3; i++)
    event(rp, SL_MILTER_CMD_HEADER, pkt,
          sl_milter_put_header(pkt, sizeof(pkt), B(h[i][0]), B(h[i][1])));
  event(rp, SL_MILTER_CMD_EOH, pkt,
        sl_milter_put_simple(pkt, sizeof(pkt), SL_MILTER_CMD_EOH));
  event(rp, SL_MILTER_CMD_BODY, pkt,
        sl_milter_put_body(pkt, sizeof(pkt), U(body), strlen(body)));
  event(rp, SL_MILTER_CMD_BODYEOB, pkt,
        sl_milter_put_simple(pkt, sizeof(pkt), SL_MILTER_CMD_BODYEOB));
  event(rp, SL_MILTER_CMD_QUIT, pkt,
        sl_milter_put_simple(pkt, sizeof(pkt), SL_MILTER_CMD_QUIT));
  const uint8_t *p;
  size_t n;
  CHECK_INT(next_record(&rp->t, &p, &n), 0); /* nothing left over */
}

static const char *const pybody = "Hello milter.\r\n";

static void test_pymilter_negotiation(void) {
  replay rp;
  play(&rp, "vectors/milter/pymilter_accept.bin", "accept@example.org", pybody);
  CHECK_INT(rp.s.version, 6);
  CHECK_INT(rp.s.actions, OFFER_ACTIONS);
  CHECK_INT(rp.s.refused_actions, 0);
  /* python-milter: no DATA, no UNKNOWN, no reply to HELO and headers */
  CHECK_INT(rp.s.protocol, SL_MILTER_P_NR_HDR | SL_MILTER_P_NOUNKNOWN |
                               SL_MILTER_P_NODATA | SL_MILTER_P_SKIP |
                               SL_MILTER_P_NR_HELO);
  CHECK_INT(rp.final.kind, SL_MILTER_CONTINUE);
  CHECK_INT(rp.final.verdict, SL_VERDICT_ACCEPT);
  CHECK_INT(rp.nmods, 0);
  CHECK_INT(rp.failed, 0);
}

static void test_pymilter_decisions(void) {
  struct {
    const char *file, *sender;
    sl_milter_kind kind;
    sl_verdict v;
  } t[] = {
      {"vectors/milter/pymilter_reject.bin", "reject@example.org",
       SL_MILTER_REJECT, SL_VERDICT_REJECT},
      {"vectors/milter/pymilter_tempfail.bin", "tempfail@example.org",
       SL_MILTER_TEMPFAIL, SL_VERDICT_TEMPFAIL},
      {"vectors/milter/pymilter_discard.bin", "discard@example.org",
       SL_MILTER_DISCARD, SL_VERDICT_DISCARD},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    replay rp;
    play(&rp, t[i].file, t[i].sender, pybody);
    CHECK_INT(rp.final.kind, t[i].kind);
    CHECK_INT(rp.final.verdict, t[i].v);
    CHECK_INT(rp.failed, 0);
  }
}

static void test_pymilter_replycode(void) {
  replay rp;
  play(&rp, "vectors/milter/pymilter_replycode.bin", "replycode@example.org",
       pybody);
  CHECK_INT(rp.final.kind, SL_MILTER_REPLYCODE);
  CHECK_INT(rp.final.code, 554);
  CHECK_INT(rp.final.verdict, SL_VERDICT_REJECT);
  CHECK(bytes_is(rp.final.text, "554-5.7.0 Rejected by the test milter\r\n"
                                "554 5.7.0 second line: see the sluice tests"));
  /* what the client gets: one line, the filter's code and text */
  uint8_t out[SL_FILTER_REPLY_MAX];
  int n = sl_filter_reply(out, rp.final.verdict, rp.final.text.p,
                          rp.final.text.len);
  const char *want = "554 5.7.0 Rejected by the test milter second line: "
                     "see the sluice tests\r\n";
  CHECK_MEM(out, n, want, strlen(want));
}

static void test_pymilter_change(void) {
  replay rp;
  play(&rp, "vectors/milter/pymilter_change.bin", "change@example.org", pybody);
  CHECK_INT(rp.final.kind, SL_MILTER_ACCEPT);
  CHECK_INT(rp.nmods, 4);
  CHECK_INT(rp.mods[0].kind, SL_MILTER_ADDHEADER);
  CHECK(bytes_is(rp.mods[0].name, "X-Sluice-Test"));
  CHECK(bytes_is(rp.mods[0].value, "added"));
  CHECK_INT(rp.mods[1].kind, SL_MILTER_CHGHEADER);
  CHECK_INT(rp.mods[1].index, 1);
  CHECK(bytes_is(rp.mods[1].name, "Subject"));
  CHECK(bytes_is(rp.mods[1].value, "changed subject"));
  CHECK_INT(rp.mods[2].kind, SL_MILTER_INSHEADER);
  CHECK_INT(rp.mods[2].index, 0);
  CHECK(bytes_is(rp.mods[2].name, "X-Sluice-First"));
  CHECK(bytes_is(rp.mods[2].value, "inserted"));
  CHECK_INT(rp.mods[3].kind, SL_MILTER_QUARANTINE);
  CHECK(bytes_is(rp.mods[3].text, "held by the test milter"));
  for (size_t i = 0; i < 3; i++)
    CHECK_INT(sl_filter_header_check(rp.mods[i].name, rp.mods[i].value), SL_OK);
}

static void test_rspamd_milter(void) {
  replay rp;
  play(&rp, "vectors/milter/rspamd_gtube.bin", "a@example.org",
       "Spam test XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-"
       "EMAIL*C.34X\r\n");
  /* rspamd asks for every action and every no-reply flag */
  CHECK_INT(rp.s.refused_actions, SL_MILTER_ACT_CHGBODY);
  CHECK_INT(rp.s.actions, OFFER_ACTIONS);
  CHECK_INT(rp.s.protocol, SL_MILTER_P_NR_HDR | SL_MILTER_P_NR_CONN |
                               SL_MILTER_P_NR_HELO | SL_MILTER_P_NR_MAIL |
                               SL_MILTER_P_NR_RCPT | SL_MILTER_P_NR_DATA |
                               SL_MILTER_P_NR_UNKN | SL_MILTER_P_NR_EOH |
                               SL_MILTER_P_NR_BODY);
  CHECK_INT(rp.final.kind, SL_MILTER_REPLYCODE);
  CHECK_INT(rp.final.code, 554);
  CHECK(bytes_is(rp.final.text, "554 5.7.1 Gtube pattern"));
  CHECK_INT(rp.failed, 0);

  play(&rp, "vectors/milter/rspamd_ham.bin", "a@example.org",
       "Hello, this is a normal message.\r\n");
  CHECK_INT(rp.final.kind, SL_MILTER_ACCEPT);
  CHECK_INT(rp.nmods, 6);
  CHECK_INT(rp.mods[0].kind, SL_MILTER_ADDHEADER);
  CHECK(bytes_is(rp.mods[0].name, "X-Rspamd-Server"));
  CHECK(bytes_is(rp.mods[1].value, "4XyZ1"));
  CHECK_INT(rp.mods[4].kind, SL_MILTER_ADDHEADER);
  CHECK(bytes_is(rp.mods[4].name, "X-Spamd-Result"));
  CHECK(rp.mods[4].value.len > 0 &&
        memchr(rp.mods[4].value.p, '\n', rp.mods[4].value.len));
  CHECK_INT(rp.mods[5].kind, SL_MILTER_CHGHEADER);
  CHECK_INT(rp.mods[5].index, 1);
  CHECK(bytes_is(rp.mods[5].name, "X-Spam"));
  /* rspamd folds with LF TAB: a valid folded header for the writer */
  for (size_t i = 0; i < 6; i++)
    CHECK_INT(sl_filter_header_check(rp.mods[i].name, rp.mods[i].value), SL_OK);
  CHECK_INT(rp.failed, 0);
}

/* ---- encoders ---------------------------------------------------------- */

static void test_encoders(void) {
  uint8_t b[128];
  CHECK_MEM(b, sl_milter_put_simple(b, sizeof(b), SL_MILTER_CMD_EOH),
            "\0\0\0\1N", 5);
  CHECK_INT(sl_milter_put_simple(b, sizeof(b), SL_MILTER_CMD_HELO),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_simple(b, 4, SL_MILTER_CMD_QUIT), SL_ERR_NOBUF);
  CHECK_INT(sl_milter_put_simple(NULL, 5, SL_MILTER_CMD_QUIT),
            SL_ERR_INVALID_ARGUMENT);
  /* IPv6 and unknown clients */
  sl_addr a6 = {SL_AF_INET6, 0, 25, {0x20, 0x01, 0x0d, 0xb8}};
  a6.bytes[15] = 1;
  CHECK_MEM(b, sl_milter_put_connect(b, sizeof(b), B("h"), &a6),
            "\0\0\0\x12"
            "Ch\0"
            "6\0\x19"
            "2001:db8::1\0",
            22);
  sl_addr au = {SL_AF_UNSPEC, 0, 0, {0}};
  CHECK_MEM(b, sl_milter_put_connect(b, sizeof(b), B("[unknown]"), &au),
            "\0\0\0\x0c"
            "C[unknown]\0U",
            16);
  /* the null sender */
  CHECK_MEM(b, sl_milter_put_mail(b, sizeof(b), B(""), NULL, 0),
            "\0\0\0\4M<>\0", 8);
  /* a NUL cannot be framed */
  CHECK_INT(sl_milter_put_helo(b, sizeof(b), (sl_bytes){U("a\0b"), 3}),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_rcpt(b, sizeof(b), (sl_bytes){U("a\0b"), 3}, NULL, 0),
            SL_ERR_INVALID_ARGUMENT);
  sl_bytes bad = {U("X=\0"), 3};
  CHECK_INT(sl_milter_put_rcpt(b, sizeof(b), B("a"), &bad, 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_header(b, sizeof(b), B(""), B("v")),
            SL_ERR_INVALID_ARGUMENT);
  sl_milter_macro m = {B(""), B("v")};
  CHECK_INT(sl_milter_put_macro(b, sizeof(b), SL_MILTER_CMD_MAIL, &m, 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_macro(b, sizeof(b), SL_MILTER_CMD_QUIT, NULL, 0),
            SL_ERR_INVALID_ARGUMENT);
  /* body chunks: 1..65535 bytes, each exact fit and one short */
  static uint8_t chunk[SL_MILTER_CHUNK_MAX + 1], big[SL_MILTER_CHUNK_MAX + 8];
  memset(chunk, 'x', sizeof(chunk));
  CHECK_INT(sl_milter_put_body(big, sizeof(big), chunk, SL_MILTER_CHUNK_MAX),
            SL_MILTER_CHUNK_MAX + 5);
  CHECK_MEM(big, 5, "\0\1\0\0B", 5);
  CHECK_INT(
      sl_milter_put_body(big, sizeof(big), chunk, SL_MILTER_CHUNK_MAX + 1),
      SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_body(big, sizeof(big), chunk, 0),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_body(big, 9, chunk, 4), 9);
  CHECK_INT(sl_milter_put_body(big, 8, chunk, 4), SL_ERR_NOBUF);
  /* NULL pointers with lengths */
  CHECK_INT(sl_milter_put_macro(b, sizeof(b), SL_MILTER_CMD_MAIL, NULL, 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_connect(b, sizeof(b), B("h"), NULL),
            SL_ERR_INVALID_ARGUMENT);
  sl_addr bad_family = {9, 0, 0, {0}};
  CHECK_INT(sl_milter_put_connect(b, sizeof(b), B("h"), &bad_family),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_mail(b, sizeof(b), B("a"), NULL, 1),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_mail(b, sizeof(b), (sl_bytes){NULL, 1}, NULL, 0),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_helo(b, sizeof(b), (sl_bytes){NULL, 1}),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_put_body(b, sizeof(b), NULL, 1), SL_ERR_INVALID_ARGUMENT);
  /* a bad argument wins over a short buffer */
  CHECK_INT(sl_milter_put_helo(b, 2, (sl_bytes){U("a\0"), 2}),
            SL_ERR_INVALID_ARGUMENT);
  /* every encoder checks its room at every size */
  for (size_t cap = 0; cap < 40; cap++) {
    long r = sl_milter_put_mail(b, cap, B("a@example.org"), NULL, 0);
    CHECK_INT(r, cap >= 21 ? 21 : SL_ERR_NOBUF);
    r = sl_milter_put_optneg(b, cap, 6, 1, 2);
    CHECK_INT(r, cap >= 17 ? 17 : SL_ERR_NOBUF);
  }
}

/* ---- reader and decoder ------------------------------------------------ */

static void test_reader(void) {
  uint8_t buf[64];
  sl_milter_reader r;
  size_t used;
  const uint8_t *data;
  size_t dlen;
  /* two packets in one read: the first is taken, the rest left */
  const uint8_t two[] = "\0\0\0\1c\0\0\0\1a";
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded(two, 10), 10, &used), SL_OK);
  CHECK_INT(used, 5);
  CHECK_INT(sl_milter_reader_packet(&r, &data, &dlen), 'c');
  CHECK_INT(dlen, 0);
  CHECK_INT(sl_milter_reader_feed(&r, guarded(two + 5, 5), 5, &used), SL_OK);
  CHECK_INT(sl_milter_reader_packet(&r, &data, &dlen), 'a');
  CHECK_INT(sl_milter_reader_partial(&r), 0);
  /* no packet yet */
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_packet(&r, &data, &dlen), 0);
  CHECK(data == NULL && dlen == 0);
  /* zero length and over the buffer: malformed, and it stays so */
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded("\0\0\0\0", 4), 4, &used),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_milter_reader_feed(&r, guarded("\0\0\0\1c", 5), 5, &used),
            SL_ERR_MALFORMED);
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded("\0\0\0\x41", 4), 4, &used),
            SL_ERR_MALFORMED);
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded("\0\0\0\x40", 4), 4, &used),
            SL_ERR_INCOMPLETE);
  CHECK_INT(sl_milter_reader_partial(&r), 1);
  sl_milter_reader_init(&r, buf, sizeof(buf));
  CHECK_INT(sl_milter_reader_feed(&r, guarded("\xff\xff\xff\xff", 4), 4, &used),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_milter_reader_feed(NULL, U("x"), 1, &used),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_reader_feed(&r, NULL, 1, &used), SL_ERR_INVALID_ARGUMENT);
}

static void test_decode(void) {
  struct {
    uint8_t cmd;
    const char *d;
    size_t len;
    int rc;
    sl_milter_kind kind;
  } t[] = {
      {'c', S(""), SL_OK, SL_MILTER_CONTINUE},
      {'c', S("x"), SL_ERR_MALFORMED, 0},
      {'r', S("\0"), SL_ERR_MALFORMED, 0},
      {'4', S(""), SL_OK, SL_MILTER_SHUTDOWN},
      {'f', S(""), SL_OK, SL_MILTER_CONN_FAIL},
      {'p', S(""), SL_OK, SL_MILTER_PROGRESS},
      {'s', S(""), SL_OK, SL_MILTER_SKIP},
      {'y', S("451 4.7.1 later\0"), SL_OK, SL_MILTER_REPLYCODE},
      {'y', S("550\0"), SL_OK, SL_MILTER_REPLYCODE},
      /* a success is not a filter reply: Postfix refuses it too */
      {'y', S("250 2.0.0 ok\0"), SL_ERR_MALFORMED, 0},
      {'y', S("55x nope\0"), SL_ERR_MALFORMED, 0},
      {'y', S("550x\0"), SL_ERR_MALFORMED, 0},
      {'y', S("550 no NUL"), SL_ERR_MALFORMED, 0},
      {'y', S("550 a\0extra"), SL_ERR_MALFORMED, 0},
      {'h', S("X\0v\0"), SL_OK, SL_MILTER_ADDHEADER},
      {'h', S("\0v\0"), SL_ERR_MALFORMED, 0},
      {'h', S("X\0v"), SL_ERR_MALFORMED, 0},
      {'m', S("\0\0\0\2X\0\0"), SL_OK, SL_MILTER_CHGHEADER},
      {'m', S("\0\0\2X\0\0"), SL_ERR_MALFORMED, 0},
      {'i', S("\0\0\0\0X\0v\0"), SL_OK, SL_MILTER_INSHEADER},
      {'b', S("new body"), SL_OK, SL_MILTER_REPLBODY},
      {'+', S("<x@y>\0"), SL_OK, SL_MILTER_ADDRCPT},
      {'-', S("<x@y>\0"), SL_OK, SL_MILTER_DELRCPT},
      {'2', S("<x@y>\0"), SL_OK, SL_MILTER_ADDRCPT_PAR},
      {'2', S("<x@y>\0NOTIFY=NEVER\0"), SL_OK, SL_MILTER_ADDRCPT_PAR},
      {'2', S("<x@y>\0A\0B\0"), SL_ERR_MALFORMED, 0},
      {'e', S("<x@y>\0"), SL_OK, SL_MILTER_CHGFROM},
      {'q', S("why\0"), SL_OK, SL_MILTER_QUARANTINE},
      {'O', S("\0\0\0\6\0\0\0\1\0\0\0\0"), SL_OK, SL_MILTER_OPTNEG},
      {'O', S("\0\0\0\6\0\0\0\1\0\0\0\0\0\0\0\2{mail_addr}\0"), SL_OK,
       SL_MILTER_OPTNEG},
      {'O', S("\0\0\0\6\0\0\0\1\0\0\0\0\0\0\0\7x\0"), SL_ERR_MALFORMED, 0},
      {'O', S("\0\0\0\6\0\0\0\1\0\0\0"), SL_ERR_MALFORMED, 0},
      {'Z', S(""), SL_ERR_MALFORMED, 0},
      {'l', S(""), SL_ERR_MALFORMED, 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    sl_milter_reply r;
    int rc =
        sl_milter_decode(t[i].cmd, guarded(t[i].d, t[i].len), t[i].len, &r);
    if (rc != t[i].rc)
      fprintf(stderr, "decode case %zu ('%c'): %d\n", i, t[i].cmd, rc);
    CHECK_INT(rc, t[i].rc);
    if (rc == SL_OK)
      CHECK_INT(r.kind, t[i].kind);
  }
  sl_milter_reply r;
  CHECK_INT(sl_milter_decode(
                'O', U("\0\0\0\6\0\0\0\1\0\0\0\0\0\0\0\2{a} {b}\0"), 24, &r),
            SL_OK);
  CHECK(bytes_is(r.symlist[SL_MILTER_STAGE_MAIL], "{a} {b}"));
  CHECK_INT(sl_milter_decode('2', U("<x@y>\0NOTIFY=NEVER\0"), 19, &r), SL_OK);
  CHECK(bytes_is(r.addr, "<x@y>"));
  CHECK(bytes_is(r.args, "NOTIFY=NEVER"));
  CHECK_INT(sl_milter_decode('y', U("451 4.7.1 later\0"), 16, &r), SL_OK);
  CHECK_INT(r.code, 451);
  CHECK_INT(r.verdict, SL_VERDICT_TEMPFAIL);
}

static void test_negotiate_and_check(void) {
  sl_milter_reply o, r;
  sl_milter_session s;
  const char *why;
  CHECK_INT(sl_milter_decode('O', U("\0\0\0\1\0\0\0\0\0\0\0\0"), 12, &o),
            SL_OK);
  CHECK_INT(sl_milter_negotiate(OFFER_ACTIONS, &o, &s, &why), SL_ERR_MALFORMED);
  CHECK_STR(why, "milter protocol version below 2");
  CHECK_INT(sl_milter_decode('O', U("\0\0\0\7\0\0\0\0\0\0\0\0"), 12, &o),
            SL_OK);
  CHECK_INT(sl_milter_negotiate(OFFER_ACTIONS, &o, &s, &why), SL_ERR_MALFORMED);
  CHECK_STR(why, "milter protocol version above 6");
  /* a version 2 filter asking for header changes, no SKIP */
  CHECK_INT(
      sl_milter_decode('O', U("\0\0\0\2\0\0\0\x13\xff\xe0\0\x7f"), 12, &o),
      SL_OK);
  CHECK_INT(sl_milter_negotiate(SL_MILTER_ACT_ADDHDRS | SL_MILTER_ACT_CHGHDRS,
                                &o, &s, &why),
            SL_OK);
  CHECK_INT(s.actions, SL_MILTER_ACT_ADDHDRS | SL_MILTER_ACT_CHGHDRS);
  CHECK_INT(s.refused_actions, SL_MILTER_ACT_CHGBODY);
  CHECK_INT(s.protocol, 0x7f); /* unknown bits dropped */
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_CONNECT), 0);
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_DATA), 1);
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_BODYEOB), 1);
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_DATA), 1);
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_MACRO), 0);
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_QUIT), 0);
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_BODYEOB), 1);
  /* modifications: only at end of body, only when granted */
  CHECK_INT(sl_milter_decode('h', U("X\0v\0"), 4, &r), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODYEOB, &r, &why), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_EOH, &r, &why),
            SL_ERR_MALFORMED);
  CHECK_STR(why, "modification before the end of the message");
  CHECK_INT(sl_milter_decode('+', U("<x@y>\0"), 6, &r), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODYEOB, &r, &why),
            SL_ERR_MALFORMED);
  CHECK_STR(why, "modification not negotiated");
  CHECK_INT(sl_milter_decode('b', U("x"), 1, &r), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODYEOB, &r, &why),
            SL_ERR_MALFORMED);
  CHECK_STR(why, "body replacement is not supported");
  /* SKIP needs SMFIP_SKIP and a body chunk */
  CHECK_INT(sl_milter_decode('s', U(""), 0, &r), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODY, &r, &why),
            SL_ERR_MALFORMED);
  s.protocol = SL_MILTER_P_SKIP;
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_BODY), 1);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_HELO, &r, &why),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODY, &r, &why), SL_OK);
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_BODY), 0);
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_BODYEOB), 1);
  /* decisions: anywhere but during negotiation */
  CHECK_INT(sl_milter_decode('r', U(""), 0, &r), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_RCPT, &r, &why), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_OPTNEG, &r, &why),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_OPTNEG, &o, &why), SL_OK);
  CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_EOH, &o, &why),
            SL_ERR_MALFORMED);
  CHECK_INT(sl_milter_negotiate(0, &r, &s, &why), SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_negotiate(0, NULL, &s, NULL), SL_ERR_INVALID_ARGUMENT);
  /* every envelope action, granted or not; why may be NULL */
  static const struct {
    const char *pkt;
    size_t len;
    uint32_t action;
  } mods[] = {
      {S("+<x@y>\0"), SL_MILTER_ACT_ADDRCPT},
      {S("2<x@y>\0A=B\0"), SL_MILTER_ACT_ADDRCPT_PAR},
      {S("-<x@y>\0"), SL_MILTER_ACT_DELRCPT},
      {S("e<x@y>\0"), SL_MILTER_ACT_CHGFROM},
      {S("qwhy\0"), SL_MILTER_ACT_QUARANTINE},
      {S("i\0\0\0\1X\0v\0"), SL_MILTER_ACT_CHGHDRS},
  };
  for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
    CHECK_INT(sl_milter_decode((uint8_t)mods[i].pkt[0], U(mods[i].pkt + 1),
                               mods[i].len - 1, &r),
              SL_OK);
    s.actions = mods[i].action;
    CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODYEOB, &r, NULL),
              SL_OK);
    s.actions = SL_MILTER_ACT_ALL & ~mods[i].action;
    s.refused_actions = mods[i].action;
    CHECK_INT(sl_milter_check_reply(&s, SL_MILTER_CMD_BODYEOB, &r, &why),
              SL_ERR_MALFORMED);
    CHECK_STR(why, "modification not negotiated (asked for, but not offered)");
  }
  CHECK_INT(sl_milter_check_reply(NULL, SL_MILTER_CMD_BODYEOB, &r, &why),
            SL_ERR_INVALID_ARGUMENT);
  CHECK_INT(sl_milter_sends(NULL, SL_MILTER_CMD_HELO), 0);
  CHECK_INT(sl_milter_expects_reply(NULL, SL_MILTER_CMD_HELO), 0);
  memset(&s, 0, sizeof(s));
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_UNKNOWN), 1);
  s.protocol = SL_MILTER_P_NR_UNKN | SL_MILTER_P_NOUNKNOWN;
  CHECK_INT(sl_milter_expects_reply(&s, SL_MILTER_CMD_UNKNOWN), 0);
  CHECK_INT(sl_milter_sends(&s, SL_MILTER_CMD_UNKNOWN), 0);
  CHECK_INT(sl_milter_expects_reply(&s, 'Z'), 0);
}

int main(void) {
  guard_end = sl_guard_area(AREA);
  SL_RUN(test_pymilter_negotiation);
  SL_RUN(test_pymilter_decisions);
  SL_RUN(test_pymilter_replycode);
  SL_RUN(test_pymilter_change);
  SL_RUN(test_rspamd_milter);
  SL_RUN(test_encoders);
  SL_RUN(test_reader);
  SL_RUN(test_decode);
  SL_RUN(test_negotiate_and_check);
  return sl_test_summary();
}
