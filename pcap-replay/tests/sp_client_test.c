/* sp_client_test.c: the client model sim and live share (sp_client.h),
 * driven by hand on a clock of our own: anchoring and think times,
 * pipelined groups as captured, partial writes, reply counting across
 * reads, the patience deadline under both clocks, the three waits, the
 * time scale (live) and the delay count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_test.h"
#include "sp_client.h"
#include "sp_script.h"
#include "sp_tb.h"

#define MS 1000000ull /* ns */
#define T0 (1000 * MS)

/* Greeting at 50 ms; EHLO 50 ms later; MAIL, RCPT and DATA pipelined in
 * one write 30 ms after the EHLO reply; the message; QUIT; client FIN. */
static int load(sp_script *s) {
  sp_tb t;
  sp_tb_head(&t);
  sp_tb_rec(&t, 'S', 50000, "220 mx.example ESMTP\r\n");
  sp_tb_rec(&t, 'C', 100000, "EHLO client.example\r\n");
  sp_tb_rec(&t, 'S', 110000, "250-mx.example\r\n250 PIPELINING\r\n");
  sp_tb_rec(&t, 'C', 140000,
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
  sp_tb_rec(&t, 'S', 150000, "250 ok\r\n250 ok\r\n354 go ahead\r\n");
  sp_tb_rec(&t, 'C', 200000, "Subject: t\r\n\r\nhello\r\n.\r\n");
  sp_tb_rec(&t, 'S', 210000, "250 2.0.0 queued\r\n");
  sp_tb_rec(&t, 'C', 300000, "QUIT\r\n");
  sp_tb_rec(&t, 'S', 310000, "221 Bye\r\n");
  sp_tb_end(&t, 315000, "server-fin");
  sp_tb_end(&t, 320000, "client-fin");
  int rc = sp_tb_load(s, &t);
  CHECK_INT(rc, 0);
  return rc;
}

static void feed(sp_client *c, const char *text, uint64_t now) {
  sp_client_note_waits(c, now);
  sp_client_read(c, (const uint8_t *)text, strlen(text), now);
}

/* Writes the whole due write at now; returns its length. */
static size_t send_all(sp_client *c, uint64_t now) {
  size_t len;
  sp_client_write_bytes(c, &len);
  sp_client_wrote(c, len, now);
  return len;
}

static void test_session(void) {
  sp_script s;
  if (load(&s))
    return;
  sp_result r;
  memset(&r, 0, sizeof r);
  r.deliver_s = -1;
  sp_client c;
  memset(&c, 0, sizeof c);
  CHECK_INT(sp_client_begin(&c, &s, &r, T0, 1.0), 0);
  /* Waiting for the greeting: nothing to write, patience from T0. */
  CHECK(sp_client_waiting(&c));
  CHECK_INT(sp_client_awaited(&c), SP_U_GREETING);
  CHECK(sp_client_write_due(&c, T0) == SP_CLIENT_NEVER);
  CHECK(sp_client_patience_due(&c, 2.0, 0, T0) == T0 + 2000 * MS);
  CHECK(sp_client_patience_due(&c, INFINITY, 0, T0) == SP_CLIENT_NEVER);
  /* The greeting 70 ms late: the EHLO follows it by its think time. */
  feed(&c, "220 mx ESMTP\r\n", T0 + 120 * MS);
  CHECK_INT(c.rx, 1);
  CHECK(fabs(r.w_read - 0.12) < 1e-12);
  CHECK(sp_client_write_due(&c, T0 + 120 * MS) == T0 + 170 * MS);
  CHECK_INT(send_all(&c, T0 + 170 * MS), 21);
  CHECK_INT(sp_client_awaited(&c), SP_U_HELO);
  /* A multi-line reply split across reads counts once, at its last line;
   * the read clock restarts with every byte, the reply clock does not. */
  feed(&c, "250-mx.example\r\n250 PIPE", T0 + 200 * MS);
  CHECK_INT(c.rx, 1);
  CHECK(sp_client_patience_due(&c, 1.0, 0, T0 + 200 * MS) == T0 + 1200 * MS);
  CHECK(sp_client_patience_due(&c, 1.0, 1, T0 + 200 * MS) == T0 + 1170 * MS);
  /* Past the deadline: due now, never earlier. */
  CHECK(sp_client_patience_due(&c, 0.01, 1, T0 + 200 * MS) == T0 + 200 * MS);
  feed(&c, "LINING\r\n", T0 + 260 * MS);
  CHECK_INT(c.rx, 2);
  CHECK(fabs(r.w_read - 0.12) < 1e-12); /* the greeting's wait */
  CHECK(fabs(r.w_reply - 0.12) < 1e-12);
  CHECK(fabs(r.w_reply_by[SP_U_HELO] - 0.09) < 1e-12);
  CHECK(fabs(r.w_read_by[SP_U_HELO] - 0.06) < 1e-12);
  /* The pipelined group is one write, 30 ms after the EHLO reply; a partial
   * send keeps it due at once. */
  CHECK(sp_client_write_due(&c, T0 + 260 * MS) == T0 + 290 * MS);
  size_t len;
  sp_client_write_bytes(&c, &len);
  CHECK_INT(len, 58);
  sp_client_wrote(&c, 10, T0 + 290 * MS);
  CHECK_INT(c.units_sent, 1); /* MAIL not yet complete */
  CHECK(sp_client_write_due(&c, T0 + 291 * MS) == T0 + 291 * MS);
  CHECK_INT(send_all(&c, T0 + 291 * MS), 48);
  CHECK_INT(c.units_sent, 4); /* EHLO, MAIL, RCPT, DATA */
  CHECK_INT(sp_client_awaited(&c), SP_U_MAIL);
  /* Their replies in one read: three replies, stage data. */
  feed(&c, "250 ok\r\n250 ok\r\n354 go\r\n", T0 + 300 * MS);
  CHECK_INT(c.rx, 5);
  CHECK_STR(sp_client_stage_name(&c), "data");
  CHECK(sp_client_write_due(&c, T0 + 300 * MS) == T0 + 350 * MS);
  send_all(&c, T0 + 350 * MS);
  feed(&c, "250 queued\r\n", T0 + 400 * MS);
  CHECK_INT(r.messages, 1);
  CHECK(fabs(r.deliver_s - 0.4) < 1e-12);
  CHECK_STR(sp_client_stage_name(&c), "delivered");
  CHECK(sp_client_write_due(&c, T0 + 400 * MS) == T0 + 490 * MS);
  send_all(&c, T0 + 490 * MS);
  /* No wait for QUIT's reply; the FIN after it, as captured. */
  CHECK(sp_client_end_due(&c, T0 + 490 * MS) == SP_CLIENT_NEVER);
  feed(&c, "221 Bye\r\n", T0 + 500 * MS);
  CHECK(!sp_client_waiting(&c));
  CHECK(sp_client_patience_due(&c, 0.001, 0, T0 + 500 * MS) == SP_CLIENT_NEVER);
  CHECK(sp_client_end_due(&c, T0 + 500 * MS) == T0 + 510 * MS);
  CHECK_STR(sp_client_end_note(&c), "client:fin");
  CHECK(!sp_client_end_aborts(&c));
  /* the last wait noted: the message's reply (QUIT's is not awaited) */
  CHECK(fabs(r.w_session - 0.4) < 1e-12);
  CHECK(!c.rejected);
  CHECK(r.delay_s == 0); /* not counted: sim takes the relay's */
  CHECK_INT(r.bytes_client, s.clen);
  sp_client_free(&c);
  sp_script_free(&s);
}

/* live: a clock ten times slower, waits back in capture seconds, and the
 * wait beyond the captured reply time counted as delay. */
static void test_scaled(void) {
  sp_script s;
  if (load(&s))
    return;
  sp_result r;
  memset(&r, 0, sizeof r);
  sp_client c;
  memset(&c, 0, sizeof c);
  c.count_delay = 1;
  CHECK_INT(sp_client_begin(&c, &s, &r, T0, 10.0), 0);
  CHECK(sp_client_patience_due(&c, 2.0, 0, T0) == T0 + 20000 * MS);
  /* captured 50 ms, here 3 s of wall = 0.3 capture s: 0.25 s delay */
  feed(&c, "220 mx ESMTP\r\n", T0 + 3000 * MS);
  CHECK(fabs(r.w_read - 0.3) < 1e-12);
  CHECK(fabs(r.delay_s - 0.25) < 1e-12);
  CHECK(sp_client_write_due(&c, T0 + 3000 * MS) == T0 + 3500 * MS);
  send_all(&c, T0 + 3500 * MS);
  /* captured 10 ms, here 100 ms of wall = 10 ms: no delay */
  feed(&c, "250 mx\r\n", T0 + 3600 * MS);
  CHECK(fabs(r.delay_s - 0.25) < 1e-12);
  /* a rejection ends it */
  send_all(&c, T0 + 3900 * MS);
  feed(&c, "554 no\r\n250 ok\r\n", T0 + 4000 * MS);
  CHECK(c.rejected);
  /* waiting for DATA's reply that never comes */
  sp_client_note_forever(&c);
  CHECK(isinf(r.w_read) && isinf(r.w_reply_by[SP_U_DATA]));
  sp_client_free(&c);
  sp_script_free(&s);
}

/* A refused recipient and DATA: the captured message text goes out as
 * commands, and a server that takes its first header line for a command
 * answers "221 ... Goodbye" (sluiced, Postfix).  That reply lines up with
 * the message unit, but nothing was delivered: the session is rejected.
 * The same 2xx after a 354 is a delivery; a 221 never is. */
static void test_refused_data(void) {
  sp_script s;
  if (load(&s))
    return;
  for (int accept_data = 0; accept_data <= 1; accept_data++) {
    sp_result r;
    memset(&r, 0, sizeof r);
    r.deliver_s = -1;
    sp_client c;
    memset(&c, 0, sizeof c);
    CHECK_INT(sp_client_begin(&c, &s, &r, T0, 1.0), 0);
    feed(&c, "220 mx\r\n", T0 + 50 * MS);
    send_all(&c, T0 + 100 * MS);
    feed(&c, "250 mx\r\n", T0 + 110 * MS);
    send_all(&c, T0 + 140 * MS);
    if (accept_data)
      feed(&c, "250 ok\r\n250 ok\r\n354 go\r\n", T0 + 150 * MS);
    else
      feed(&c,
           "250 2.1.0 Ok\r\n454 4.7.1 Relay access denied\r\n"
           "503 5.5.1 Error: need RCPT command\r\n",
           T0 + 150 * MS);
    CHECK_INT(c.rx, 5);
    send_all(&c, T0 + 200 * MS);
    CHECK_INT(sp_client_awaited(&c), SP_U_MESSAGE);
    feed(&c, "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n",
         T0 + 210 * MS);
    CHECK_INT(r.messages, 0);
    CHECK(r.deliver_s < 0);
    CHECK(strcmp(sp_client_stage_name(&c), "delivered") != 0);
    CHECK_INT(c.rejected, !accept_data);
    sp_client_free(&c);
  }
  sp_script_free(&s);
}

/* sim reuses one client for every session: buffers are kept, state is
 * not. */
static void test_reuse(void) {
  sp_script s;
  if (load(&s))
    return;
  sp_result r;
  memset(&r, 0, sizeof r);
  sp_client c;
  memset(&c, 0, sizeof c);
  CHECK_INT(sp_client_begin(&c, &s, &r, T0, 1.0), 0);
  feed(&c, "220 mx\r\n", T0 + 50 * MS);
  send_all(&c, T0 + 100 * MS);
  uint64_t *kept = c.reply_t;
  CHECK_INT(sp_client_begin(&c, &s, &r, 2 * T0, 1.0), 0);
  CHECK(c.reply_t == kept);
  CHECK_INT(c.rx, 0);
  CHECK_INT(c.wi, 0);
  CHECK(sp_client_read_base(&c) == 2 * T0);
  CHECK(sp_client_patience_due(&c, 1.0, 1, 2 * T0) == 2 * T0 + 1000 * MS);
  sp_client_free(&c);
  sp_script_free(&s);
}

int main(void) {
  SL_RUN(test_session);
  SL_RUN(test_scaled);
  SL_RUN(test_refused_data);
  SL_RUN(test_reuse);
  return sl_test_summary();
}
