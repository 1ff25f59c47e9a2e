/*
 * sl_relay_filter_test.c: content filters in the relay (issue 11): what
 * the tap is given, the terminator held until sl_relay_filter_verdict(),
 * an accept relaying the upstream's own reply, a refusal closing the leg
 * without the terminator and answering the filter's text re-framed, BDAT
 * sent as one DATA, an upstream reply to a held terminator, stale
 * verdicts.  Every session runs under the oracle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_harness.h"
#include "sl_test.h"
#include "sluice/rcpt_policy.h"

/* the verdict values (sluice/filter.h defines its own sl_bytes) */
enum {
  SL_VERDICT_ACCEPT = 0,
  SL_VERDICT_DISCARD = 2,
  SL_VERDICT_TEMPFAIL = 3,
  SL_VERDICT_REJECT = 4
};

#define S(x) x, sizeof(x) - 1

static int ends_with(const sl_bytes *b, const char *s) {
  size_t n = strlen(s);
  return b->len >= n && memcmp(b->p + b->len - n, s, n) == 0;
}

static int contains(const sl_bytes *b, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i + n <= b->len; i++)
    if (memcmp(b->p + i, s, n) == 0)
      return 1;
  return 0;
}

/* Pass-through with filters on, up to the 354 of one message. */
static void filtered_354(sl_harness *h, const char *caps) {
  sl_harness_defaults(h);
  sl_harness_filters_on(h, 0);
  CHECK_INT(sl_harness_start(h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(h, SL_STATUS_OK), 0);
  sl_harness_upstream(h, "220 up ESMTP\r\n", 14, 0);
  sl_harness_upstream(h, caps, strlen(caps), 0);
  sl_harness_client(h, S("EHLO c.example\r\n"), 0);
  sl_harness_client(h, S("MAIL FROM:<a@example.org>\r\n"), 0);
  sl_harness_upstream(h, S("250 2.1.0 ok\r\n"), 0);
  sl_harness_client(h, S("RCPT TO:<b@example.net>\r\n"), 0);
  sl_harness_upstream(h, S("250 2.1.5 ok\r\n"), 0);
  sl_harness_client(h, S("DATA\r\n"), 0);
  sl_harness_upstream(h, S("354 go\r\n"), 0);
}

static const char body[] = "Subject: t\r\n\r\n..dot line\r\nbody\r\n.\r\n";

static void test_accept_relays_upstream_reply(void) {
  sl_harness h;
  filtered_354(&h, "250-up\r\n250 PIPELINING\r\n");
  sl_harness_client(&h, S(body), 0);
  /* the content went up and to the tap; the terminator did not */
  CHECK(ends_with(&h.upstream_out, "..dot line\r\nbody\r\n"));
  CHECK(h.filter_content.len == strlen(body) - 3);
  CHECK(memcmp(h.filter_content.p, body, h.filter_content.len) == 0);
  CHECK_INT(h.filter_items[SL_FI_MAIL], 1);
  CHECK_INT(h.filter_items[SL_FI_RCPT], 1);
  CHECK_INT(h.filter_items[SL_FI_RCPT_REPLY], 1);
  CHECK(h.pending_filter != 0);
  CHECK(!ends_with(&h.client_out, "queued\r\n"));
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
  CHECK(ends_with(&h.upstream_out, "body\r\n.\r\n"));
  sl_harness_upstream(&h, S("250 2.0.0 queued as A1\r\n"), 0);
  CHECK(ends_with(&h.client_out, "250 2.0.0 queued as A1\r\n"));
  CHECK_INT(sl_relay_stats(h.r)->messages_accepted, 1);
  /* the same id again is stale */
  CHECK_INT(
      sl_relay_filter_verdict(h.r, 0x104, SL_VERDICT_ACCEPT, NULL, 0, h.now),
      SL_ERR_UNKNOWN_REQUEST);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

static void test_reject_closes_leg_and_reframes(void) {
  sl_harness h;
  filtered_354(&h, "250-up\r\n250 PIPELINING\r\n");
  sl_harness_client(&h, S(body), 0);
  int closed = h.upstream_closed;
  /* a filter text trying to frame a second reply and a terminator */
  CHECK_INT(sl_harness_filter_verdict(
                &h, SL_VERDICT_REJECT,
                "550 5.7.1 spam\r\n250 2.0.0 injected\r\n.\r\nRCPT TO:<x@y>"),
            0);
  CHECK(!ends_with(&h.upstream_out, ".\r\n"));
  CHECK_INT(h.upstream_closed, closed + 1);
  /* exactly one reply line, a 550, no CR/LF of the filter's */
  const char *last = (const char *)h.client_out.p;
  size_t n = h.client_out.len, start = 0;
  for (size_t i = 0; i + 1 < n; i++)
    if (last[i] == '\n')
      start = i + 1;
  CHECK(n > start + 4 && memcmp(last + start, "550 5.7.1 ", 10) == 0);
  CHECK(contains(&h.client_out, "spam"));
  CHECK(!contains(&h.client_out, "\r\n250 2.0.0 injected"));
  CHECK_INT(sl_relay_stats(h.r)->messages_rejected, 1);
  /* the next message opens a new upstream leg */
  sl_harness_client(&h, S("MAIL FROM:<a@example.org>\r\n"), 0);
  CHECK(h.pending_connect != 0);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

static void test_tempfail_default_text(void) {
  sl_harness h;
  filtered_354(&h, "250-up\r\n250 PIPELINING\r\n");
  sl_harness_client(&h, S(body), 0);
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_TEMPFAIL, NULL), 0);
  CHECK(ends_with(&h.client_out, "\r\n") &&
        contains(&h.client_out, "451 4.7.1 "));
  CHECK_INT(sl_relay_stats(h.r)->messages_tempfailed, 1);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* A discard never becomes a 250: the relay refuses it. */
static void test_discard_is_refused(void) {
  sl_harness h;
  filtered_354(&h, "250-up\r\n250 PIPELINING\r\n");
  sl_harness_client(&h, S(body), 0);
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_DISCARD, NULL), 0);
  CHECK(contains(&h.client_out, "550 5.7.1 "));
  CHECK(!ends_with(&h.upstream_out, ".\r\n"));
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* An upstream that answers a terminator the filters still hold answers
   something it never received: the leg fails, the client gets 451. */
static void test_reply_to_held_terminator(void) {
  sl_harness h;
  filtered_354(&h, "250-up\r\n250 PIPELINING\r\n");
  sl_harness_client(&h, S(body), 0);
  uint32_t id = h.pending_filter;
  sl_harness_upstream(&h, S("250 2.0.0 early\r\n"), 0);
  CHECK(!contains(&h.client_out, "early"));
  CHECK(contains(&h.client_out, "451 4.4.2"));
  CHECK_INT(h.pending_filter, 0); /* the held message died with its leg */
  CHECK_INT(sl_relay_filter_verdict(h.r, id, SL_VERDICT_ACCEPT, NULL, 0, h.now),
            SL_ERR_UNKNOWN_REQUEST);
  CHECK_INT(h.filter_items[SL_FI_ABORT], 1);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* BDAT from the client goes upstream as one DATA, so the one held
   terminator ends it too, when the upstream lacks CHUNKING or the driver
   swaps the body (spool mode). */
static void bdat_as_data(const char *caps, uint32_t flags) {
  sl_harness h;
  sl_harness_defaults(&h);
  sl_harness_filters_on(&h, 0);
  h.info.flags |= flags;
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h, "220 up ESMTP\r\n", 14, 0);
  sl_harness_upstream(&h, caps, strlen(caps), 0);
  sl_harness_client(&h, S("EHLO c.example\r\n"), 0);
  sl_harness_client(&h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\n"),
                    0);
  sl_harness_upstream(&h, S("250 ok\r\n250 ok\r\n"), 0);
  sl_harness_client(&h, S("BDAT 12 LAST\r\n.a\r\nb\r\nc\r\n\r\n"), 0);
  CHECK(contains(&h.upstream_out, "DATA\r\n"));
  CHECK(!contains(&h.upstream_out, "BDAT"));
  sl_harness_upstream(&h, S("354 go\r\n"), 0);
  CHECK(ends_with(&h.upstream_out, "..a\r\nb\r\nc\r\n\r\n"));
  CHECK(h.pending_filter != 0);
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
  CHECK(ends_with(&h.upstream_out, "\r\n.\r\n"));
  sl_harness_upstream(&h, S("250 2.0.0 queued\r\n"), 0);
  CHECK(ends_with(&h.client_out, "250 2.0.0 queued\r\n"));
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

static void test_bdat_as_data(void) {
  /* spool mode: the upstream's CHUNKING is not used */
  bdat_as_data("250-up\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n",
               SL_CONN_FILTER_SPOOL);
}

/* ---- chunked: a filtered BDAT transaction stays BDAT (issue 11) ---- */

#define CHUNKING_CAPS "250-up\r\n250-PIPELINING\r\n250 CHUNKING\r\n"

/* Up to the client's LAST chunk read and held: "BDAT 7" + ".a\r\nb\r\n"
   relayed and answered, then the LAST chunk "c\r\nd\r\n" (sent up as
   "BDAT 6") and "BDAT 0 LAST" held. */
static void chunked_held(sl_harness *h) {
  sl_harness_defaults(h);
  sl_harness_filters_on(h, 0);
  CHECK_INT(sl_harness_start(h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(h, SL_STATUS_OK), 0);
  sl_harness_upstream(h, S("220 up ESMTP\r\n" CHUNKING_CAPS), 0);
  sl_harness_client(h, S("EHLO c.example\r\n"), 0);
  CHECK(contains(&h->client_out, "CHUNKING"));
  sl_harness_client(h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\n"),
                    0);
  sl_harness_upstream(h, S("250 ok\r\n250 ok\r\n"), 0);
  sl_harness_client(h, S("BDAT 7\r\n.a\r\nb\r\n"), 0);
  CHECK(ends_with(&h->upstream_out, "BDAT 7\r\n.a\r\nb\r\n"));
  sl_harness_upstream(h, S("250 2.0.0 7 octets\r\n"), 0);
  CHECK(ends_with(&h->client_out, "250 2.0.0 7 octets\r\n"));
  sl_harness_client(h, S("BDAT 6 LAST\r\nc\r\nd\r\n"), 0);
  /* the LAST chunk went up as a plain chunk; the end is held */
  CHECK(ends_with(&h->upstream_out, "b\r\nBDAT 6\r\nc\r\nd\r\n"));
  CHECK(!contains(&h->upstream_out, "LAST"));
  CHECK(!contains(&h->upstream_out, "DATA"));
  CHECK(h->pending_filter != 0);
  /* the tap had the content dot-stuffed, as DATA carries it */
  CHECK(h->filter_content.len == 14 &&
        memcmp(h->filter_content.p, "..a\r\nb\r\nc\r\nd\r\n", 14) == 0);
}

static void test_chunked_accept(void) {
  for (int verdict_first = 0; verdict_first < 2; verdict_first++) {
    sl_harness h;
    chunked_held(&h);
    if (verdict_first)
      CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
    /* the LAST chunk's own 250 goes to no one */
    sl_harness_upstream(&h, S("250 2.0.0 chunk two\r\n"), 0);
    CHECK(!contains(&h.client_out, "chunk two"));
    CHECK_INT(contains(&h.upstream_out, "LAST"), verdict_first);
    if (!verdict_first)
      CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
    CHECK(ends_with(&h.upstream_out, "c\r\nd\r\nBDAT 0 LAST\r\n"));
    sl_harness_upstream(&h, S("250 2.0.0 queued as B1\r\n"), 0);
    CHECK(ends_with(&h.client_out, "250 2.0.0 7 octets\r\n"
                                   "250 2.0.0 queued as B1\r\n"));
    CHECK_INT(sl_relay_stats(h.r)->messages_accepted, 1);
    CHECK_STR(h.failure, "");
    sl_harness_free(&h);
  }
}

/* A refusal ends the upstream transaction with RSET, never "BDAT 0 LAST";
   the client gets the filter's reply and the leg carries the next
   transaction. */
static void test_chunked_reject_rset(void) {
  int verdicts[2] = {SL_VERDICT_REJECT, SL_VERDICT_TEMPFAIL};
  for (int i = 0; i < 2; i++) {
    sl_harness h;
    chunked_held(&h);
    int closed = h.upstream_closed;
    CHECK_INT(sl_harness_filter_verdict(&h, verdicts[i], "spam\r\n250 x"), 0);
    CHECK(!contains(&h.upstream_out, "RSET")); /* the chunk's reply first */
    sl_harness_upstream(&h, S("250 2.0.0 chunk two\r\n"), 0);
    CHECK(ends_with(&h.upstream_out, "c\r\nd\r\nRSET\r\n"));
    CHECK(!contains(&h.upstream_out, "LAST"));
    CHECK(!contains(&h.client_out, "chunk two"));
    sl_harness_upstream(&h, S("250 2.0.0 Ok\r\n"), 0);
    CHECK(contains(&h.client_out,
                   i == 0 ? "\r\n550 5.7.1 spam" : "\r\n451 4.7.1 spam"));
    CHECK(!contains(&h.client_out, "\r\n250 x"));
    CHECK_INT(h.upstream_closed, closed);
    CHECK_INT(i == 0 ? sl_relay_stats(h.r)->messages_rejected
                     : sl_relay_stats(h.r)->messages_tempfailed,
              1);
    /* the same leg carries the next message */
    sl_harness_client(&h, S("MAIL FROM:<a@example.org>\r\n"), 0);
    CHECK_INT(h.pending_connect, 0);
    CHECK(ends_with(&h.upstream_out, "RSET\r\nMAIL FROM:<a@example.org>\r\n"));
    sl_harness_upstream(&h, S("250 2.1.0 ok\r\n"), 0);
    CHECK(ends_with(&h.client_out, "250 2.1.0 ok\r\n"));
    CHECK_STR(h.failure, "");
    sl_harness_free(&h);
  }
}

/* The upstream refuses the client's LAST chunk: under an accept the client
   gets that refusal and the end goes as RSET; under a refusal the filter's
   reply wins.  Either way one reply, and no "BDAT 0 LAST". */
static void test_chunked_last_chunk_refused(void) {
  for (int reject = 0; reject < 2; reject++) {
    sl_harness h;
    chunked_held(&h);
    sl_harness_upstream(&h, S("552 5.3.4 chunk too big\r\n"), 0);
    CHECK(!contains(&h.client_out, "too big")); /* waits for the verdict */
    CHECK_INT(sl_harness_filter_verdict(
                  &h, reject ? SL_VERDICT_REJECT : SL_VERDICT_ACCEPT,
                  reject ? "spam" : NULL),
              0);
    CHECK(ends_with(&h.upstream_out, "c\r\nd\r\nRSET\r\n"));
    sl_harness_upstream(&h, S("250 2.0.0 Ok\r\n"), 0);
    CHECK(!contains(&h.upstream_out, "LAST"));
    CHECK_INT(contains(&h.client_out, "552 5.3.4 chunk too big\r\n"), !reject);
    CHECK_INT(contains(&h.client_out, "550 5.7.1 spam\r\n"), reject);
    CHECK(!contains(&h.client_out, "250 2.0.0 Ok"));
    CHECK_INT(sl_relay_stats(h.r)->messages_rejected, 1);
    CHECK_STR(h.failure, "");
    sl_harness_free(&h);
  }
}

/* An empty LAST chunk sends no "BDAT 0" upstream: the held end is the
   whole of it. */
static void test_chunked_empty_last(void) {
  sl_harness h;
  sl_harness_defaults(&h);
  sl_harness_filters_on(&h, 0);
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h, S("220 up ESMTP\r\n" CHUNKING_CAPS), 0);
  sl_harness_client(&h, S("EHLO c.example\r\n"), 0);
  sl_harness_client(&h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\n"
                      "BDAT 3\r\nx\r\n"),
                    0);
  sl_harness_upstream(&h, S("250 ok\r\n250 ok\r\n250 ok 3\r\n"), 0);
  sl_harness_client(&h, S("BDAT 0 LAST\r\n"), 0);
  CHECK(ends_with(&h.upstream_out, "BDAT 3\r\nx\r\n"));
  CHECK(h.pending_filter != 0);
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
  CHECK(ends_with(&h.upstream_out, "x\r\nBDAT 0 LAST\r\n"));
  sl_harness_upstream(&h, S("250 2.0.0 queued as C1\r\n"), 0);
  CHECK(ends_with(&h.client_out, "250 ok 3\r\n250 2.0.0 queued as C1\r\n"));
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* An empty LAST chunk after a chunk that ended on CR: the message would
   end on a bare CR, so it is refused as smuggling, nothing held. */
static void test_chunked_empty_last_after_cr(void) {
  sl_harness h;
  sl_harness_defaults(&h);
  sl_harness_filters_on(&h, 0);
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h, S("220 up ESMTP\r\n" CHUNKING_CAPS), 0);
  sl_harness_client(&h, S("EHLO c.example\r\n"), 0);
  sl_harness_client(&h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\n"
                      "BDAT 2\r\nx\r"),
                    0);
  sl_harness_upstream(&h, S("250 ok\r\n250 ok\r\n250 ok 2\r\n"), 0);
  sl_harness_client(&h, S("BDAT 0 LAST\r\n"), 0);
  CHECK(!contains(&h.upstream_out, "LAST"));
  CHECK_INT(h.pending_filter, 0);
  CHECK(ends_with(&h.client_out, "250 ok 2\r\n554 5.6.0 Error: bare CR, bare "
                                 "LF or NUL in message; SMTP smuggling "
                                 "refused\r\n"));
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* The upstream lost while the end is held and the LAST chunk unanswered:
   the client's LAST gets one local reply, not two. */
static void test_chunked_upstream_lost(void) {
  sl_harness h;
  chunked_held(&h);
  uint32_t id = h.pending_filter;
  size_t before = h.client_out.len;
  sl_harness_upstream_eof(&h);
  CHECK(h.client_out.len > before);
  sl_bytes tail = {h.client_out.p + before, h.client_out.len - before, 0};
  CHECK(contains(&tail, "451 "));
  size_t lines = 0;
  for (size_t i = 0; i < tail.len; i++)
    lines += tail.p[i] == '\n';
  CHECK_INT(lines, 1);
  CHECK_INT(sl_relay_filter_verdict(h.r, id, SL_VERDICT_ACCEPT, NULL, 0, h.now),
            SL_ERR_UNKNOWN_REQUEST);
  CHECK_INT(h.filter_items[SL_FI_ABORT], 1);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* The filters refused (or deferred) the message, and the leg is lost
   (a malformed reply, or the end of its stream) before the reply to the
   LAST chunk that the RSET waits for: the client's LAST gets the filters'
   reply, as it would with the leg up, not the loss's 451 (fuzz finding
   g5, guarantee 5). */
static void test_chunked_refused_then_upstream_lost(void) {
  for (int i = 0; i < 4; i++) {
    sl_harness h;
    chunked_held(&h);
    CHECK_INT(sl_harness_filter_verdict(
                  &h, i & 1 ? SL_VERDICT_TEMPFAIL : SL_VERDICT_REJECT, "spam"),
              0);
    size_t before = h.client_out.len;
    if (i & 2)
      sl_harness_upstream(&h, S("250 ok 5\ro\r\n"), 0);
    else
      sl_harness_upstream_eof(&h);
    sl_bytes tail = {h.client_out.p + before, h.client_out.len - before, 0};
    CHECK(tail.len > 12 &&
          !memcmp(tail.p, i & 1 ? "451 4.7.1 spam" : "550 5.7.1 spam", 14));
    CHECK(!contains(&tail, "4.4.2"));
    CHECK(!contains(&h.upstream_out, "LAST"));
    CHECK_INT(i & 1 ? sl_relay_stats(h.r)->messages_tempfailed
                    : sl_relay_stats(h.r)->messages_rejected,
              1);
    CHECK_STR(h.failure, "");
    sl_harness_free(&h);
  }
}

/* The filters accepted, the upstream refused the LAST chunk (its refusal
   is the client's answer to LAST), and in the same read sent garbage that
   fails the leg before the RSET went out: the held end answers no one, so
   LAST gets one reply, not a second 451 (AFL++ on the relay target,
   session 4; guarantee 1). */
static void test_chunked_last_refused_then_upstream_lost(void) {
  sl_harness h;
  chunked_held(&h);
  CHECK_INT(sl_harness_filter_verdict(&h, SL_VERDICT_ACCEPT, NULL), 0);
  size_t before = h.client_out.len;
  sl_harness_upstream(&h, S("552 5.3.4 chunk too big\r\nbogus\x00\r\n"), 0);
  sl_bytes tail = {h.client_out.p + before, h.client_out.len - before, 0};
  static const char want[] = "552 5.3.4 chunk too big\r\n";
  CHECK_MEM(tail.p, tail.len, want, sizeof(want) - 1);
  CHECK(!contains(&h.upstream_out, "LAST"));
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* Without SL_CONN_FILTER nothing changes: no request, no tap. */
static void test_unfiltered_unchanged(void) {
  sl_harness h;
  sl_harness_defaults(&h);
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h, S("220 up ESMTP\r\n250-up\r\n250 PIPELINING\r\n"), 0);
  sl_harness_client(&h, S("EHLO c\r\n"), 0);
  sl_harness_client(&h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\nDATA\r\n"),
                    0);
  sl_harness_upstream(&h, S("250 ok\r\n250 ok\r\n354 go\r\n"), 0);
  sl_harness_client(&h, S(body), 0);
  CHECK(ends_with(&h.upstream_out, "body\r\n.\r\n"));
  CHECK_INT(h.pending_filter, 0);
  CHECK_INT(h.filter_items[SL_FI_BODY], 0);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

/* filter_skip mynetworks: a client in mynetworks is not filtered; the
   same session without the skip is. */
static void skip_session(uint32_t skip, int want_filtered) {
  sl_harness h;
  static sl_prefix net;
  memset(&net, 0, sizeof net);
  net.addr.family = SL_AF_INET;
  net.addr.bytes[0] = 192; /* the harness's client, 192.0.2.1 */
  net.addr.bytes[2] = 2;
  net.bits = 24;
  sl_harness_defaults(&h);
  h.policy.rcpt.mynetworks = &net;
  h.policy.rcpt.nmynetworks = 1;
  sl_harness_filters_on(&h, skip);
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h, S("220 up ESMTP\r\n250-up\r\n250 PIPELINING\r\n"), 0);
  sl_harness_client(&h, S("EHLO c\r\n"), 0);
  sl_harness_client(&h,
                    S("MAIL FROM:<a@example.org>\r\n"
                      "RCPT TO:<b@example.net>\r\nDATA\r\n"),
                    0);
  sl_harness_upstream(&h, S("250 ok\r\n250 ok\r\n354 go\r\n"), 0);
  sl_harness_client(&h, S(body), 0);
  CHECK_INT(h.pending_filter != 0, want_filtered);
  CHECK_INT(ends_with(&h.upstream_out, "body\r\n.\r\n"), !want_filtered);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

static void test_skip_mynetworks(void) {
  skip_session(SL_FSKIP_MYNETWORKS, 0);
  skip_session(SL_FSKIP_AUTHENTICATED, 1);
}

/* ---- the AUTH user (SL_FI_AUTH_USER) ---- */

/* A filtered session on TLS whose upstream offers AUTH, after EHLO. */
static void auth_session(sl_harness *h) {
  sl_harness_defaults(h);
  sl_harness_filters_on(h, 0);
  h->policy.features |= SL_FEAT_AUTH;
  h->info.flags |= SL_CONN_TLS;
  CHECK_INT(sl_harness_start(h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(h, SL_STATUS_OK), 0);
  sl_harness_upstream(h,
                      S("220 up ESMTP\r\n250-up\r\n250-AUTH PLAIN LOGIN "
                        "CRAM-MD5\r\n250 PIPELINING\r\n"),
                      0);
  sl_harness_client(h, S("EHLO c.example\r\n"), 0);
}

/* The client's lines and the upstream's replies of one exchange, then a
   MAIL: the user the tap got, "" for none. */
static void auth_case(const char *const *client, const char *const *up,
                      const char *want) {
  sl_harness h;
  auth_session(&h);
  for (size_t i = 0; client[i]; i++) {
    sl_harness_client(&h, client[i], strlen(client[i]), 0);
    sl_harness_upstream(&h, up[i], strlen(up[i]), 0);
  }
  sl_harness_client(&h, S("MAIL FROM:<a@example.org>\r\n"), 0);
  CHECK_INT(h.filter_items[SL_FI_MAIL], 1);
  CHECK_INT(h.filter_items[SL_FI_AUTH_USER], want[0] != 0);
  CHECK_INT(h.filter_user.len, strlen(want));
  CHECK(memcmp(h.filter_user.p ? (const char *)h.filter_user.p : "", want,
               strlen(want)) == 0);
  CHECK_STR(h.failure, "");
  sl_harness_free(&h);
}

static void test_auth_user(void) {
  static const char *const ok[] = {"235 2.7.0 ok\r\n", NULL};
  /* PLAIN, initial response: authzid NUL authcid NUL password */
  auth_case(
      (const char *const[]){
          "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHMzY3JldA==\r\n", NULL},
      ok, "alice@example.org");
  /* PLAIN in the continuation, with an authzid */
  auth_case(
      (const char *const[]){"AUTH PLAIN\r\n", "YWRtaW4AYm9iAHB3\r\n", NULL},
      (const char *const[]){"334 \r\n", "235 2.7.0 ok\r\n", NULL}, "bob");
  /* LOGIN: the first response is the user, the second the password */
  auth_case(
      (const char *const[]){"AUTH LOGIN\r\n", "Y2Fyb2w=\r\n", "cHc=\r\n", NULL},
      (const char *const[]){"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n",
                            "235 2.7.0 ok\r\n", NULL},
      "carol");
  /* LOGIN with the user as initial response */
  auth_case(
      (const char *const[]){"auth login Y2Fyb2w=\r\n", "cHc=\r\n", NULL},
      (const char *const[]){"334 UGFzc3dvcmQ6\r\n", "235 2.7.0 ok\r\n", NULL},
      "carol");
  /* refused: no user */
  auth_case(
      (const char *const[]){
          "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHMzY3JldA==\r\n", NULL},
      (const char *const[]){"535 5.7.8 bad\r\n", NULL}, "");
  /* a name with CR LF (header injection toward rspamd), one too long, one
     not UTF-8, no NUL after the authcid, not base64: none */
  auth_case((const char *const[]){"AUTH PLAIN AGV2ZQ0KWC1TcGFtOiBubwBwdw==\r\n",
                                  NULL},
            ok, "");
  auth_case(
      (const char *const[]){
          "AUTH PLAIN "
          "AHV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1"
          "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1"
          "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1"
          "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1"
          "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1"
          "dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dQBwdw=="
          "\r\n",
          NULL},
      ok, "");
  auth_case((const char *const[]){"AUTH PLAIN AGr2cmcAcHc=\r\n", NULL}, ok, "");
  auth_case((const char *const[]){"AUTH PLAIN AGRhdmU=\r\n", NULL}, ok, "");
  auth_case((const char *const[]){"AUTH PLAIN YWJj=GRl\r\n", NULL}, ok, "");
  /* cancelled with "*", another mechanism: none */
  auth_case((const char *const[]){"AUTH LOGIN\r\n", "*\r\n", NULL},
            (const char *const[]){"334 VXNlcm5hbWU6\r\n",
                                  "501 5.7.0 cancelled\r\n", NULL},
            "");
  auth_case(
      (const char *const[]){"AUTH CRAM-MD5\r\n", "Y2Fyb2wgMTIz\r\n", NULL},
      (const char *const[]){"334 PDEyMz4=\r\n", "235 2.7.0 ok\r\n", NULL}, "");
}

int main(void) {
  SL_RUN(test_accept_relays_upstream_reply);
  SL_RUN(test_reject_closes_leg_and_reframes);
  SL_RUN(test_tempfail_default_text);
  SL_RUN(test_discard_is_refused);
  SL_RUN(test_reply_to_held_terminator);
  SL_RUN(test_bdat_as_data);
  SL_RUN(test_chunked_accept);
  SL_RUN(test_chunked_reject_rset);
  SL_RUN(test_chunked_last_chunk_refused);
  SL_RUN(test_chunked_empty_last);
  SL_RUN(test_chunked_empty_last_after_cr);
  SL_RUN(test_chunked_upstream_lost);
  SL_RUN(test_chunked_refused_then_upstream_lost);
  SL_RUN(test_chunked_last_refused_then_upstream_lost);
  SL_RUN(test_unfiltered_unchanged);
  SL_RUN(test_skip_mynetworks);
  SL_RUN(test_auth_user);
  return sl_test_summary();
}
