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
   terminator ends it too. */
static void test_bdat_as_data(void) {
  sl_harness h;
  sl_harness_defaults(&h);
  sl_harness_filters_on(&h, 0);
  CHECK_INT(sl_harness_start(&h, 8, 1, 1), 0);
  CHECK_INT(sl_harness_connect(&h, SL_STATUS_OK), 0);
  sl_harness_upstream(&h,
                      S("220 up ESMTP\r\n250-up\r\n250-PIPELINING\r\n"
                        "250 CHUNKING\r\n"),
                      0);
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

int main(void) {
  SL_RUN(test_accept_relays_upstream_reply);
  SL_RUN(test_reject_closes_leg_and_reframes);
  SL_RUN(test_tempfail_default_text);
  SL_RUN(test_discard_is_refused);
  SL_RUN(test_reply_to_held_terminator);
  SL_RUN(test_bdat_as_data);
  SL_RUN(test_unfiltered_unchanged);
  SL_RUN(test_skip_mynetworks);
  return sl_test_summary();
}
