/*
 * oracle_test.c: the protocol oracle must catch violations.  Each case
 * feeds sl_oracle hand-made streams (no relay involved) that break one
 * guarantee and checks the oracle names it, plus clean sessions that must
 * pass, so the oracle is known to be neither blind nor trigger-happy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_oracle.h"

static int failures;

typedef struct env {
  sl_limits lim;
  sl_policy pol;
  sl_conn_info info;
  sl_oracle *o;
} env;

static void env_init(env *e) {
  memset(e, 0, sizeof(*e));
  sl_limits_default(&e->lim);
  sl_policy_default(&e->pol);
  e->info.client.family = SL_AF_INET;
  e->info.client.bytes[0] = 192;
  e->info.client.bytes[3] = 7;
  e->o = sl_oracle_new(&e->lim, &e->pol, &e->info);
}

static void C(env *e, const char *s) {
  sl_oracle_client_in(e->o, (const uint8_t *)s, strlen(s));
}
static void c(env *e, const char *s) {
  sl_oracle_client_out(e->o, (const uint8_t *)s, strlen(s));
}
static void U(env *e, const char *s) {
  sl_oracle_upstream_in(e->o, (const uint8_t *)s, strlen(s));
}
static void u(env *e, const char *s) {
  sl_oracle_upstream_out(e->o, (const uint8_t *)s, strlen(s));
}

/* The oracle's verdict without a relay: liveness/memory need one, the
   stream checks do not, so a NULL relay is fine for sl_oracle's stream
   part; we read the verdict through a tiny relay-free path. */
static int verdict(env *e, char *why, size_t n);

static void expect(env *e, const char *name, const char *needle) {
  char why[512];
  int rc = verdict(e, why, sizeof(why));
  if (!needle) {
    if (rc != 0) {
      printf("FAIL %s: unexpected violation: %s\n", name, why);
      failures++;
    } else {
      printf("ok   %s\n", name);
    }
  } else if (rc == 0) {
    printf("FAIL %s: violation not detected (wanted \"%s\")\n", name, needle);
    failures++;
  } else if (!strstr(why, needle)) {
    printf("FAIL %s: wrong violation: %s (wanted \"%s\")\n", name, why, needle);
    failures++;
  } else {
    printf("ok   %s: %s\n", name, why);
  }
  sl_oracle_free(e->o);
}

static uint8_t *no_buf(void *ctx, uint32_t min, uint32_t *cap) {
  (void)ctx;
  (void)min;
  *cap = 0;
  return NULL;
}
static void no_put(void *ctx, uint8_t *b, uint32_t cap) {
  (void)ctx;
  (void)b;
  (void)cap;
}

/* A real relay, idle, only so sl_oracle_check() has something to query
   for guarantees 6 and 7 (nothing is fed to it). */
static sl_relay *idle_relay(env *e, void **mem) {
  static sl_pool pool = {no_buf, no_put, NULL}; /* an idle relay needs none */
  size_t n = sl_relay_size(&e->lim);
  *mem = malloc(n);
  sl_relay *r = NULL;
  e->pol.mode = SL_MODE_SCREEN_FIRST;
  if (!*mem || sl_relay_init(&r, *mem, n, &e->lim, &e->pol, &pool, &e->info, 1,
                             1000) != 0) {
    printf("FAIL: cannot create an idle relay\n");
    exit(1);
  }
  return r;
}

static int verdict(env *e, char *why, size_t n) {
  void *mem;
  sl_policy saved = e->pol;
  sl_relay *r = idle_relay(e, &mem);
  int rc = sl_oracle_check(e->o, r, 1000, why, n);
  e->pol = saved;
  free(mem);
  return rc;
}

/* Connect, greeting, sluice's EHLO answered with the given extension
   lines (each "250-X\r\n" or "250 X\r\n"), the client's greeting. */
static void up_with(env *e, const char *ehlo_reply) {
  sl_oracle_completed(e->o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(e, "220 up ESMTP\r\n");
  u(e, "EHLO mx.sluice.test\r\n");
  U(e, ehlo_reply);
  c(e, "220 up ESMTP\r\n");
}

/* Up to an open transaction with CHUNKING (and PIPELINING) offered. */
static void chunking_prefix(env *e) {
  up_with(e, "250-up\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
  C(e, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n");
  u(e, "EHLO c\r\n");
  U(e, "250-up\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
  c(e, "250-up\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
  u(e, "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n");
  U(e, "250 ok\r\n250 ok\r\n");
  c(e, "250 ok\r\n250 ok\r\n");
}

/* A clean pass-through session: connect, greeting, EHLO, one message. */
static void clean_prefix(env *e) {
  sl_oracle_completed(e->o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(e, "220 up ESMTP\r\n");
  u(e, "EHLO mx.sluice.test\r\n");
  U(e, "250-up\r\n250 PIPELINING\r\n");
  c(e, "220 up ESMTP\r\n");
  C(e, "EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT "
       "TO:<b@example.net>\r\nDATA\r\n");
  u(e, "EHLO client\r\n");
  U(e, "250-up\r\n250 PIPELINING\r\n");
  c(e, "250-up\r\n250 PIPELINING\r\n");
  u(e, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  U(e, "250 ok\r\n250 ok\r\n");
  c(e, "250 ok\r\n250 ok\r\n");
  u(e, "DATA\r\n");
  U(e, "354 go\r\n");
  c(e, "354 go\r\n");
}

/* Up to the upstream's 354 to a DATA whose body the client pipelined
   behind it (the client's reply not given yet). */
static void early_body_prefix(env *e) {
  sl_oracle_completed(e->o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(e, "220 up ESMTP\r\n");
  u(e, "EHLO mx.sluice.test\r\n");
  U(e, "250-up\r\n250 PIPELINING\r\n");
  c(e, "220 up ESMTP\r\n");
  C(e, "EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT "
       "TO:<b@example.net>\r\nDATA\r\nbody\r\n.\r\n");
  u(e, "EHLO client\r\n");
  U(e, "250-up\r\n250 PIPELINING\r\n");
  c(e, "250-up\r\n250 PIPELINING\r\n");
  u(e, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  U(e, "250 ok\r\n250 ok\r\n");
  c(e, "250 ok\r\n250 ok\r\n");
  u(e, "DATA\r\n");
  U(e, "354 go\r\n");
}

/* ---- guarantee 8: the upstream's view --------------------------------- */

#define ALL_EXT                                                                \
  "250-up\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-BINARYMIME\r\n"             \
  "250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-SIZE 1000000\r\n"            \
  "250-STARTTLS\r\n250 AUTH PLAIN\r\n"

/* One command line sent upstream after sluice's EHLO got ehlo_reply. */
static void one_cmd(const char *name, const char *ehlo_reply, const char *cmd,
                    const char *needle) {
  env e;
  env_init(&e);
  up_with(&e, ehlo_reply);
  u(&e, cmd);
  expect(&e, name, needle);
}

static void upstream_view_tests(void) {
  env e;

  /* Clean: every extension used is offered (upper and lower case). */
  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "MAIL FROM:<a\xc3\xa9@b.c> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS "
        "ENVID=x AUTH=<>\r\n");
  u(&e, "RCPT TO:<d\xc3\xa9@e.f> NOTIFY=NEVER ORCPT=rfc822;d@e.f\r\n");
  u(&e, "BDAT 3 LAST\r\nabc");
  U(&e, "250 ok\r\n250 ok\r\n250 ok\r\n");
  u(&e, "MAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRSET\r\nNOOP\r\n");
  expect(&e, "extensions used as offered", NULL);

  env_init(&e);
  up_with(&e, "250-up\r\n250-pipelining\r\n250-chunking\r\n250 size\r\n");
  u(&e, "MAIL FROM:<a@b.c> SIZE=5\r\nRCPT TO:<d@e.f>\r\nBDAT 1 LAST\r\nx");
  expect(&e, "keywords in lower case, SIZE without a value", NULL);

  one_cmd("BDAT without CHUNKING", "250-up\r\n250 PIPELINING\r\n",
          "BDAT 3 LAST\r\n", "did not offer CHUNKING");
  one_cmd("STARTTLS not offered", "250-up\r\n250 PIPELINING\r\n",
          "STARTTLS\r\n", "did not offer STARTTLS");
  one_cmd("AUTH not offered", "250-up\r\n250 STARTTLS\r\n",
          "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", "did not offer AUTH");
  one_cmd("BODY=8BITMIME not offered", "250-up\r\n250 SMTPUTF8\r\n",
          "MAIL FROM:<a@b.c> BODY=8BITMIME\r\n", "did not offer 8BITMIME");
  one_cmd("SMTPUTF8 not offered", "250-up\r\n250 8BITMIME\r\n",
          "MAIL FROM:<a@b.c> SMTPUTF8\r\n", "did not offer SMTPUTF8");
  one_cmd("SIZE not offered", "250-up\r\n250 8BITMIME\r\n",
          "MAIL FROM:<a@b.c> SIZE=100\r\n", "did not offer SIZE");
  one_cmd("RET not offered", "250-up\r\n250 8BITMIME\r\n",
          "MAIL FROM:<a@b.c> RET=FULL\r\n", "did not offer DSN");
  one_cmd("NOTIFY not offered", "250-up\r\n250 8BITMIME\r\n",
          "RCPT TO:<a@b.c> NOTIFY=NEVER\r\n", "did not offer DSN");
  one_cmd("BINARYMIME without CHUNKING", "250-up\r\n250 BINARYMIME\r\n",
          "MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n", "did not offer CHUNKING");
  one_cmd("unknown MAIL parameter", ALL_EXT, "MAIL FROM:<a@b.c> XYZZY=1\r\n",
          "belongs to no extension");
  one_cmd("UTF-8 path without SMTPUTF8 on MAIL", ALL_EXT,
          "MAIL FROM:<a\xc3\xa9@b.c>\r\n", "without SMTPUTF8");
  one_cmd("UTF-8 path, SMTPUTF8 not offered", "250 up\r\n", "VRFY \xc3\xa9\r\n",
          "did not offer SMTPUTF8");
  one_cmd("no EHLO extension after a refused EHLO", "502 5.5.2 no\r\n",
          "MAIL FROM:<a@b.c> SIZE=1\r\n", "did not offer SIZE");

  env_init(&e);
  e.pol.identity = SL_IDENT_XCLIENT;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  up_with(&e, "250-up\r\n250 PIPELINING\r\n");
  u(&e, "XCLIENT ADDR=192.0.0.7\r\n");
  expect(&e, "XCLIENT not offered", "did not offer XCLIENT");

  /* A refused EHLO leaves the state (and the extensions) of the last
     accepted one (RFC 5321 4.1.4). */
  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "EHLO c\r\n");
  U(&e, "502 5.5.2 no\r\n");
  u(&e, "MAIL FROM:<a@b.c> SIZE=1\r\nRCPT TO:<d@e.f>\r\n");
  expect(&e, "extensions kept after a refused second EHLO", NULL);

  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "EHLO c\r\n");
  U(&e, "250-up\r\n250 SIZE\r\n");
  u(&e, "MAIL FROM:<a@b.c> SIZE=1\r\nRCPT TO:<d@e.f>\r\n");
  expect(&e, "a second accepted EHLO replaces the set",
         "did not offer PIPELINING");

  /* HELO: a strict receiver offers no extension afterwards. */
  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "HELO c\r\n");
  U(&e, "250 up\r\n");
  u(&e, "MAIL FROM:<a@b.c> BODY=8BITMIME\r\n");
  expect(&e, "extension used after HELO", "did not offer 8BITMIME");

  /* STARTTLS: the set is learned again from the EHLO after the handshake
     (RFC 3207 4.2), never kept from before it. */
  env_init(&e);
  up_with(&e, "250-up\r\n250-CHUNKING\r\n250 STARTTLS\r\n");
  u(&e, "STARTTLS\r\n");
  U(&e, "220 go\r\n");
  sl_oracle_completed(e.o, SL_REQ_STARTTLS_UPSTREAM, SL_STATUS_OK);
  u(&e, "EHLO mx.sluice.test\r\n");
  U(&e, "250-up\r\n250 PIPELINING\r\n");
  u(&e, "BDAT 1 LAST\r\n");
  expect(&e, "CHUNKING offered only before STARTTLS", "did not offer CHUNKING");

  env_init(&e);
  up_with(&e, "250-up\r\n250 STARTTLS\r\n");
  u(&e, "STARTTLS\r\n");
  U(&e, "220 go\r\n");
  sl_oracle_completed(e.o, SL_REQ_STARTTLS_UPSTREAM, SL_STATUS_OK);
  u(&e, "EHLO mx.sluice.test\r\n");
  U(&e, "250-up\r\n250 CHUNKING\r\n");
  u(&e, "BDAT 1 LAST\r\nx");
  expect(&e, "CHUNKING offered after STARTTLS", NULL);

  /* Pipelined groups. */
  one_cmd("two commands in flight without PIPELINING", "250-up\r\n250 SIZE\r\n",
          "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
          "did not offer PIPELINING");
  one_cmd("command after NOOP before its reply", ALL_EXT,
          "NOOP\r\nMAIL FROM:<a@b.c>\r\n", "before the reply to sync");
  one_cmd("command after HELO before its reply", ALL_EXT,
          "HELO c\r\nMAIL FROM:<a@b.c>\r\n", "before the reply to HELO");
  one_cmd("QUIT after AUTH before its reply", ALL_EXT, "AUTH LOGIN\r\nQUIT\r\n",
          "before the reply to AUTH");
  one_cmd("QUIT in flight without PIPELINING", "250-up\r\n250 SIZE\r\n",
          "MAIL FROM:<a@b.c>\r\nQUIT\r\n", "did not offer PIPELINING");
  one_cmd("QUIT after a pipelined MAIL", ALL_EXT,
          "MAIL FROM:<a@b.c>\r\nQUIT\r\n", NULL);

  /* Content a strict receiver would read as commands. */
  one_cmd("body before the 354", ALL_EXT,
          "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n",
          "before the reply to DATA");

  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
  U(&e, "250 ok\r\n550 no\r\n554 no valid recipients\r\n");
  u(&e, "Subject: x\r\n");
  expect(&e, "body after a DATA refused", "reads \"Subject: x\" as a command");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "x\r\n.\r\n");
  u(&e, "x\r\n.\r\n.\r\n");
  expect(&e, "content after end-of-data", "reads \".\" as a command");

  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "BDAT 10 LAST\r\nabc");
  U(&e, "503 5.5.1 no transaction\r\n");
  u(&e, "defghij");
  expect(&e, "chunk bytes after the BDAT was answered", "BDAT chunk bytes");

  env_init(&e);
  up_with(&e, ALL_EXT);
  u(&e, "BDAT 10 LAST\r\nabc");
  U(&e, "503 5.5.1 no transaction\r\n");
  sl_request q = {SL_REQ_CLOSE_UPSTREAM, 77, {{0}}};
  sl_oracle_request(e.o, &q);
  expect(&e, "chunk abandoned after the BDAT was answered", NULL);
}

/* ---- guarantee 9: progress ------------------------------------------------
 */

static void progress_tests(void) {
  env e;

  env_init(&e);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "command unanswered with nothing to wait for", "guarantee 9");

  env_init(&e);
  C(&e, "EHLO early\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "greeting not sent with nothing to wait for", "guarantee 9");

  env_init(&e);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  c(&e, "250 ok\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "command answered", NULL);

  env_init(&e);
  e.pol.normal.reply_delay = SL_SEC;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "reply held by the normal profile's delay", NULL);

  env_init(&e);
  e.pol.normal.greet_delay = SL_SEC;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "greet_delay does not hold a later reply", "guarantee 9");

  env_init(&e);
  e.pol.suspect.stutter_bytes = 1;
  e.pol.suspect.stutter_interval = SL_SEC;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "suspect profile not in force holds nothing", "guarantee 9");

  env_init(&e);
  e.pol.suspect.stutter_bytes = 1;
  e.pol.suspect.stutter_interval = SL_SEC;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  sl_request tq = {SL_REQ_EVENT, 5, {{0}}};
  tq.ev.kind = SL_EV_TARPIT;
  tq.ev.tarpit.reason = SL_TARPIT_SCORE;
  sl_oracle_request(e.o, &tq);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "suspect profile in force after TARPIT", NULL);

  static const struct {
    unsigned hold;
    const char *name;
  } holds[] = {{SL_HOLD_REQUEST, "waiting for the connect request"},
               {SL_HOLD_CLIENT_OUT, "waiting for the client to read"},
               {SL_HOLD_POOL, "waiting for a pool buffer"}};
  for (size_t i = 0; i < sizeof(holds) / sizeof(holds[0]); i++) {
    env_init(&e);
    c(&e, "220 hi\r\n");
    C(&e, "MAIL FROM:<a@b.c>\r\n");
    sl_oracle_progress(e.o, holds[i].hold, 1000);
    expect(&e, holds[i].name, NULL);
  }

  env_init(&e);
  e.info.admission = SL_ADMIT_TARPIT;
  e.pol.suspect.reply_delay = SL_SEC;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "suspect profile in force by admission", NULL);

  env_init(&e);
  e.pol.normal.data_rate = 10;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  c(&e, "220 hi\r\n");
  C(&e, "NOOP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "data_rate does not hold a command's reply", "guarantee 9");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "x\r\n.\r\n");
  u(&e, "x\r\n.\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "waiting for the upstream's reply to end-of-data", NULL);

  env_init(&e);
  clean_prefix(&e);
  C(&e, "x\r\n.\r\n");
  u(&e, "x\r\n.\r\n");
  U(&e, "250 ok\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "upstream answered end-of-data, client not", "guarantee 9");

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220-up ESMTP\r\n");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "greeting held while the upstream's greeting arrives", NULL);

  env_init(&e);
  clean_prefix(&e);
  /* NUL: the relay may read on to the client's end before it answers */
  sl_oracle_client_in(e.o, (const uint8_t *)"x\0y\r\n", 5);
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "smuggled body, its end still coming", NULL);

  env_init(&e);
  chunking_prefix(&e);
  C(&e, "BDAT 10 LAST\r\nabc");
  sl_oracle_progress(e.o, 0, 1000);
  expect(&e, "BDAT whose chunk is still coming", NULL);
}

/* ---- guarantee 10: completeness --------------------------------------------
 */

static void event_with(env *e, uint32_t id, sl_event ev) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_EVENT;
  q.id = id;
  q.ev = ev;
  sl_oracle_request(e->o, &q);
}

/* An event whose payload the check does not look at. */
static void event(env *e, uint32_t id, sl_event_kind kind) {
  sl_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = kind;
  event_with(e, id, ev);
}

/* A session with one accepted message and stats that agree with it. */
static void stats_session(env *e, sl_stats *st) {
  clean_prefix(e);
  C(e, "x\r\n.\r\n");
  u(e, "x\r\n.\r\n");
  U(e, "250 ok\r\n");
  c(e, "250 ok\r\n");
  event_with(
      e, 0x101,
      (sl_event){.kind = SL_EV_MESSAGE, .message = {.code = 250, .size = 3}});
  memset(st, 0, sizeof(*st));
  st->end = SL_TSTAMP_NONE;
  st->client_bytes_in = strlen("EHLO client\r\nMAIL FROM:<a@example.org>\r\n"
                               "RCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
  st->client_bytes_out = strlen("220 up ESMTP\r\n250-up\r\n250 PIPELINING\r\n"
                                "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
  st->upstream_bytes_in = strlen("220 up ESMTP\r\n250-up\r\n250 PIPELINING\r\n"
                                 "250-up\r\n250 PIPELINING\r\n250 ok\r\n"
                                 "250 ok\r\n354 go\r\n250 ok\r\n");
  st->upstream_bytes_out = strlen("EHLO mx.sluice.test\r\nEHLO client\r\n"
                                  "MAIL FROM:<a@example.org>\r\nRCPT "
                                  "TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
  st->messages_accepted = 1;
  st->last_upstream_code = 250;
}

static void completeness_tests(void) {
  env e;
  sl_stats st;

  env_init(&e);
  stats_session(&e, &st);
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "statistics equal the events and the bytes", NULL);

  env_init(&e);
  stats_session(&e, &st);
  st.messages_accepted = 2;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "a MESSAGE event dropped",
         "guarantee 10: stats messages_accepted");

  env_init(&e);
  stats_session(&e, &st);
  st.messages_accepted = 0;
  st.messages_rejected = 1;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "a message counted in the wrong class", "guarantee 10");

  env_init(&e);
  stats_session(&e, &st);
  st.client_bytes_in--;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "client bytes miscounted", "guarantee 10: stats client_bytes_in");

  env_init(&e);
  stats_session(&e, &st);
  st.tarpitted = 1;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "tarpitted without a TARPIT event", "guarantee 10");

  env_init(&e);
  stats_session(&e, &st);
  event_with(&e, 0x201,
             (sl_event){.kind = SL_EV_STARTTLS_INJECTION,
                        .starttls_injection = {.bytes = 9}});
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "STARTTLS_INJECTION bytes not in the stats",
         "guarantee 10: stats starttls_discarded");

  /* every other field compared, each off by one */
  static const char *const fields[] = {
      "client_bytes_out", "upstream_bytes_in", "upstream_bytes_out",
      "messages_tempfailed", "last_upstream_code"};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    env_init(&e);
    stats_session(&e, &st);
    if (i == 0)
      st.client_bytes_out++;
    else if (i == 1)
      st.upstream_bytes_in++;
    else if (i == 2)
      st.upstream_bytes_out--;
    else if (i == 3)
      st.messages_tempfailed = 1;
    else
      st.last_upstream_code = 451;
    sl_oracle_stats(e.o, &st, 0);
    char name[64], needle[64];
    snprintf(name, sizeof(name), "stats %s off", fields[i]);
    snprintf(needle, sizeof(needle), "guarantee 10: stats %s", fields[i]);
    expect(&e, name, needle);
  }

  env_init(&e);
  stats_session(&e, &st);
  event_with(
      &e, 0x201,
      (sl_event){.kind = SL_EV_TARPIT, .tarpit = {.reason = SL_TARPIT_SCORE}});
  event_with(
      &e, 0x202,
      (sl_event){.kind = SL_EV_TARPIT, .tarpit = {.reason = SL_TARPIT_ACTION}});
  st.tarpitted = 1;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "two TARPIT switches", "2 TARPIT events");

  env_init(&e);
  stats_session(&e, &st);
  event_with(
      &e, 0x201,
      (sl_event){.kind = SL_EV_TARPIT, .tarpit = {.reason = SL_TARPIT_SCORE}});
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "TARPIT event, stats not tarpitted", "tarpitted = 0");

  env_init(&e);
  e.info.admission = SL_ADMIT_TARPIT;
  sl_oracle_free(e.o);
  e.o = sl_oracle_new(&e.lim, &e.pol, &e.info);
  stats_session(&e, &st);
  st.tarpitted = 1;
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "tarpitted by admission, no event needed", NULL);

  env_init(&e);
  stats_session(&e, &st);
  event(&e, 0x301, SL_EV_SESSION_END);
  sl_oracle_stats(e.o, &st, 0);
  expect(&e, "SESSION_END with stats still open", "stats end is unset");

  env_init(&e);
  stats_session(&e, &st);
  sl_oracle_stats(e.o, &st, SL_CLOSED);
  expect(&e, "SL_CLOSED without SESSION_END", "guarantee 10");

  env_init(&e);
  stats_session(&e, &st);
  event(&e, 0x301, SL_EV_SESSION_END);
  st.end = 2000;
  st.end_reason = SL_END_QUIT;
  sl_oracle_stats(e.o, &st, SL_CLOSED);
  expect(&e, "SESSION_END, then SL_CLOSED", NULL);

  env_init(&e);
  event(&e, 0x301, SL_EV_SESSION_END);
  event_with(&e, 0x401,
             (sl_event){.kind = SL_EV_MESSAGE, .message = {.code = 250}});
  expect(&e, "a request after SESSION_END", "after SESSION_END");

  env_init(&e);
  event(&e, 0x301, SL_EV_DNSBL_SCORE);
  event_with(
      &e, 0x201,
      (sl_event){.kind = SL_EV_TARPIT, .tarpit = {.reason = SL_TARPIT_SCORE}});
  event_with(&e, 0x301,
             (sl_event){.kind = SL_EV_PREGREET, .pregreet = {.bytes = 3}});
  expect(&e, "a request id issued twice", "issued twice");
}

/* ---- content filters (issue 11): guarantees 2 and 5 ------------------- */

static void filter_req(env *e, uint32_t id) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_FILTER;
  q.id = id;
  sl_oracle_request(e->o, &q);
}

static void close_upstream(env *e, uint32_t id) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_CLOSE_UPSTREAM;
  q.id = id;
  sl_oracle_request(e->o, &q);
}

/* The body is in, upstream without its terminator, the verdict asked. */
static void filtered_prefix(env *e) {
  clean_prefix(e);
  C(e, "Subject: x\r\n\r\nbody\r\n.\r\n");
  u(e, "Subject: x\r\n\r\nbody\r\n");
  filter_req(e, 0x1004);
}

/* A filtered BDAT transaction to a CHUNKING upstream: a first chunk
   relayed and answered, the client's LAST chunk sent up as a plain chunk
   and answered, the verdict asked. */
static void chunked_filtered_prefix(env *e) {
  chunking_prefix(e);
  C(e, "BDAT 3\r\na\r\nBDAT 3 LAST\r\nc\r\n");
  u(e, "BDAT 3\r\na\r\n");
  U(e, "250 2.0.0 3 octets\r\n");
  c(e, "250 2.0.0 3 octets\r\n");
  u(e, "BDAT 3\r\nc\r\n");
  U(e, "250 2.0.0 3 octets\r\n");
  filter_req(e, 0x1004);
}

static void filter_cases(void) {
  env e;

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 0); /* accept */
  u(&e, ".\r\n");
  U(&e, "250 2.0.0 queued\r\n");
  c(&e, "250 2.0.0 queued\r\n");
  expect(&e, "filters accept, the upstream's 250 relayed", NULL);

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4); /* reject */
  close_upstream(&e, 0x1104);
  c(&e, "550 5.7.1 spam\r\n");
  expect(&e, "filters reject, leg closed, 550", NULL);

  env_init(&e);
  filtered_prefix(&e);
  u(&e, ".\r\n");
  expect(&e, "terminator before the filters' verdict",
         "while the content filters' verdict was pending");

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4);
  u(&e, ".\r\n");
  expect(&e, "terminator of a message the filters refused",
         "a message the content filters refused");

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 2); /* discard: never a 250 */
  u(&e, ".\r\n");
  expect(&e, "terminator of a discarded message",
         "a message the content filters refused");

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 3); /* tempfail */
  close_upstream(&e, 0x1104);
  c(&e, "550 5.7.1 no\r\n");
  expect(&e, "tempfail answered 5xx", "not the refusal's 4xx");

  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4);
  close_upstream(&e, 0x1104);
  c(&e, "250 2.0.0 ok\r\n");
  expect(&e, "a refused message answered 250", "guarantee 5");

  /* A chunked message (issue 11): the client's LAST chunk went up as a
     plain one, "BDAT 0 LAST" held for the verdict. */
  env_init(&e);
  chunked_filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 0); /* accept */
  u(&e, "BDAT 0 LAST\r\n");
  U(&e, "250 2.0.0 queued\r\n");
  c(&e, "250 2.0.0 queued\r\n");
  expect(&e, "chunked: filters accept, BDAT 0 LAST, 250 relayed", NULL);

  env_init(&e);
  chunked_filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4); /* reject */
  u(&e, "RSET\r\n");
  U(&e, "250 2.0.0 Ok\r\n");
  c(&e, "550 5.7.1 spam\r\n");
  C(&e, "MAIL FROM:<a@b.c>\r\n");
  u(&e, "MAIL FROM:<a@b.c>\r\n");
  expect(&e, "chunked: filters reject, RSET, 550, the leg goes on", NULL);

  env_init(&e);
  chunked_filtered_prefix(&e);
  u(&e, "BDAT 0 LAST\r\n");
  expect(&e, "chunked: BDAT LAST before the filters' verdict",
         "BDAT LAST sent upstream while the content filters' verdict");

  env_init(&e);
  chunked_filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4);
  u(&e, "BDAT 0 LAST\r\n");
  expect(&e, "chunked: BDAT 0 LAST after a reject",
         "after the content filters refused the message, not RSET");

  env_init(&e);
  chunked_filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 3);
  u(&e, "MAIL FROM:<a@b.c>\r\n");
  expect(&e, "chunked: a new transaction without RSET after a tempfail",
         "not RSET");

  env_init(&e);
  chunked_filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4);
  u(&e, "RSET\r\n");
  U(&e, "250 2.0.0 Ok\r\n");
  c(&e, "250 2.0.0 Ok\r\n");
  expect(&e, "chunked: a refused message answered 250", "guarantee 5");

  /* the filter's text framing a second reply: one reply too many */
  env_init(&e);
  filtered_prefix(&e);
  sl_oracle_filter_verdict(e.o, 4);
  close_upstream(&e, 0x1104);
  c(&e, "550 5.7.1 a\r\n250 2.0.0 injected\r\n");
  expect(&e, "reply injected through a filter's text", "guarantee 1");
}

/* ---- a MAIL held for a RCPT check (screen-first, no upstream yet) ----- */

static void held_env(env *e, int screen_first, int rcpt_check) {
  env_init(e);
  sl_oracle_free(e->o);
  e->pol.mode = screen_first ? SL_MODE_SCREEN_FIRST : SL_MODE_PASSTHROUGH;
  e->pol.rcpt_check = (uint8_t)rcpt_check;
  e->o = sl_oracle_new(&e->lim, &e->pol, &e->info);
  c(e, "220 sluice ESMTP\r\n");
  C(e, "EHLO client\r\n");
  c(e, "250 sluice\r\n");
  C(e, "MAIL FROM:<a@example.org> SIZE=10\r\nRCPT TO:<b@example.net>\r\n");
  c(e, "250 2.1.0 Ok\r\n");
}

/* The driver is asked about a recipient (SL_REQ_RCPT_CHECK at RCPT). */
static void rcpt_check_req(env *e, uint32_t id, const char *rcpt) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_RCPT_CHECK;
  q.id = id;
  q.check.sender = "a@example.org";
  q.check.rcpt = rcpt;
  q.check.helo = "client";
  q.check.helo_len = 6;
  q.check.sasl_username = "";
  q.check.sasl_method = "";
  q.check.stage = SL_CMD_RCPT;
  sl_oracle_request(e->o, &q);
}

static void held_upstream(env *e, const char *mail) {
  rcpt_check_req(e, 0x601, "b@example.net");
  sl_oracle_completed(e->o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(e, "220 up ESMTP\r\n");
  u(e, "EHLO client\r\n");
  U(e, "250-up\r\n250-SIZE 1000\r\n250 PIPELINING\r\n");
  u(e, mail);
  U(e, "250 2.1.0 Ok\r\n");
  u(e, "RCPT TO:<b@example.net>\r\n");
  U(e, "250 2.1.5 Ok\r\n");
  c(e, "250 2.1.5 Ok\r\n");
}

static void held_mail_tests(void) {
  env e;
  held_env(&e, 1, 1);
  held_upstream(&e, "MAIL FROM:<a@example.org>\r\n");
  C(&e, "DATA\r\n");
  u(&e, "DATA\r\n");
  U(&e, "354 go\r\n");
  c(&e, "354 go\r\n");
  C(&e, "hi\r\n.\r\n");
  u(&e, "hi\r\n.\r\n");
  U(&e, "250 queued\r\n");
  c(&e, "250 queued\r\n");
  expect(&e, "held MAIL sent upstream once a RCPT passed", NULL);

  held_env(&e, 1, 1);
  c(&e, "450 4.7.1 Greylisted\r\n");
  C(&e, "QUIT\r\n");
  c(&e, "221 bye\r\n");
  expect(&e, "held MAIL, greylisted RCPT, no upstream at all", NULL);

  held_env(&e, 0, 1);
  expect(&e, "local 250 to MAIL in pass-through", "guarantee 2");

  held_env(&e, 1, 0);
  expect(&e, "local 250 to MAIL without a RCPT check", "guarantee 2");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "hi\r\n.\r\nMAIL FROM:<x@example.org>\r\n");
  u(&e, "hi\r\n.\r\n");
  U(&e, "250 queued\r\n");
  c(&e, "250 queued\r\n250 2.1.0 Ok\r\n");
  expect(&e, "local 250 to MAIL with the upstream connected", "guarantee 2");

  held_env(&e, 1, 1);
  held_upstream(&e, "MAIL FROM:<other@example.org>\r\n");
  expect(&e, "held MAIL replayed as another sender", "the held MAIL");

  /* guarantee 10: the recipient relayed is the one the check was about */
  held_env(&e, 1, 1);
  rcpt_check_req(&e, 0x601, "c@example.net");
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up ESMTP\r\n");
  u(&e, "EHLO client\r\n");
  U(&e, "250-up\r\n250 PIPELINING\r\n");
  u(&e, "MAIL FROM:<a@example.org>\r\n");
  U(&e, "250 2.1.0 Ok\r\n");
  u(&e, "RCPT TO:<b@example.net>\r\n");
  expect(&e, "a RCPT relayed that no check asked about", "guarantee 10");

  held_env(&e, 1, 1);
  {
    /* the check's path is cut at half a small buffer: a prefix matches */
    char longp[400], line[440];
    memset(longp, 'x', sizeof longp);
    longp[0] = 'b';
    longp[sizeof longp - 1] = 0;
    size_t cut = e.lim.small_buffer_size / 2 - 1;
    char asked[400];
    memcpy(asked, longp, cut);
    asked[cut] = 0;
    rcpt_check_req(&e, 0x601, asked);
    snprintf(line, sizeof line, "RCPT TO:<%s@example.net>\r\n", longp);
    sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
    U(&e, "220 up ESMTP\r\n");
    u(&e, "EHLO client\r\n");
    U(&e, "250-up\r\n250 PIPELINING\r\n");
    u(&e, "MAIL FROM:<a@example.org>\r\n");
    U(&e, "250 2.1.0 Ok\r\n");
    u(&e, line);
  }
  expect(&e, "a long recipient asked about cut, relayed whole", NULL);

  held_env(&e, 1, 1);
  held_upstream(&e, "MAIL FROM:<a@example.org> SIZE=99\r\n");
  expect(&e, "held MAIL replayed with another parameter", "the held MAIL");

  held_env(&e, 1, 1);
  held_upstream(&e, "MAIL FROM:<a@example.org>\r\n");
  C(&e, "DATA\r\n");
  u(&e, "DATA\r\n");
  U(&e, "354 go\r\n");
  c(&e, "354 go\r\n");
  C(&e, "hi\r\n.\r\n");
  c(&e, "250 queued\r\n");
  expect(&e, "held MAIL, 250 to end-of-data the upstream did not give",
         "guarantee 2");
}

/* ---- guarantee 2: the AUTH user, and the leg that accepted it -------- */

#define AUTH_EXT "250-up\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"

/* After EHLO, one AUTH exchange: each of lines goes to the client's side
   and upstream, each of replies back, the last one final. */
static void auth_prefix(env *e, const char *const *lines,
                        const char *const *replies) {
  up_with(e, AUTH_EXT);
  C(e, "EHLO c\r\n");
  u(e, "EHLO c\r\n");
  U(e, AUTH_EXT);
  c(e, AUTH_EXT);
  for (size_t i = 0; lines[i]; i++) {
    C(e, lines[i]);
    u(e, lines[i]);
    U(e, replies[i]);
    c(e, replies[i]);
  }
}

static void check_named(env *e, uint32_t id, const char *user,
                        const char *method) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_RCPT_CHECK;
  q.id = id;
  q.check.sender = "a@b.c";
  q.check.rcpt = "d@e.f";
  q.check.helo = "c";
  q.check.helo_len = 1;
  q.check.sasl_username = user;
  q.check.sasl_username_len = (uint16_t)strlen(user);
  q.check.sasl_method = method;
  q.check.authed = 1;
  sl_oracle_request(e->o, &q);
}

static void connect_req(env *e, uint32_t id) {
  sl_request q;
  memset(&q, 0, sizeof(q));
  q.type = SL_REQ_CONNECT_UPSTREAM;
  q.id = id;
  sl_oracle_request(e->o, &q);
}

static void auth_user_tests(void) {
  static const char *const plain[] = {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                                      NULL};
  static const char *const plain_authzid[] = {
      "AUTH PLAIN YWRtaW4AYWxpY2UAc2VjcmV0\r\n", NULL};
  static const char *const ok[] = {"235 2.7.0 ok\r\n"};
  static const char *const refused[] = {"535 5.7.8 no\r\n"};
  static const char *const login[] = {"AUTH LOGIN\r\n", "YWxpY2U=\r\n",
                                      "c2VjcmV0\r\n", NULL};
  static const char *const login_ok[] = {"334 VXNlcm5hbWU6\r\n",
                                         "334 UGFzc3dvcmQ6\r\n", "235 ok\r\n"};
  static const char *const login_cancel[] = {"AUTH LOGIN\r\n", "*\r\n", NULL};
  static const char *const cancel_r[] = {"334 VXNlcm5hbWU6\r\n",
                                         "501 5.7.0 cancelled\r\n"};
  env e;

  env_init(&e);
  auth_prefix(&e, plain, ok);
  check_named(&e, 0x701, "alice", "PLAIN");
  sl_oracle_filter_item(e.o, SL_FI_MAIL, (const uint8_t *)"MAIL", 4);
  sl_oracle_filter_item(e.o, SL_FI_AUTH_USER, (const uint8_t *)"alice", 5);
  expect(&e, "AUTH PLAIN accepted, its authcid named", NULL);

  env_init(&e);
  auth_prefix(&e, plain_authzid, ok);
  check_named(&e, 0x701, "admin", "PLAIN");
  expect(&e, "the authzid named as the AUTH user", "guarantee 2");

  env_init(&e);
  auth_prefix(&e, plain, refused);
  check_named(&e, 0x701, "alice", "PLAIN");
  expect(&e, "a refused AUTH's user named", "guarantee 2");

  env_init(&e);
  auth_prefix(&e, login, login_ok);
  check_named(&e, 0x701, "alice", "LOGIN");
  expect(&e, "AUTH LOGIN accepted, its user named", NULL);

  env_init(&e);
  auth_prefix(&e, login, login_ok);
  check_named(&e, 0x701, "alice", "PLAIN");
  expect(&e, "AUTH LOGIN named as PLAIN", "mechanism");

  env_init(&e);
  auth_prefix(&e, login_cancel, cancel_r);
  check_named(&e, 0x701, "alice", "LOGIN");
  expect(&e, "a cancelled AUTH LOGIN's user named", "guarantee 2");

  env_init(&e);
  auth_prefix(&e, plain, ok);
  sl_oracle_filter_item(e.o, SL_FI_MAIL, (const uint8_t *)"MAIL", 4);
  sl_oracle_filter_item(e.o, SL_FI_AUTH_USER, (const uint8_t *)"bob", 3);
  expect(&e, "the filter tap names another user", "guarantee 2");

  /* RFC 4954 4: a further AUTH gets 503; the first one stands. */
  env_init(&e);
  auth_prefix(&e, plain, ok);
  check_named(&e, 0x701, "alice", "PLAIN");
  C(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  u(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  U(&e, "503 5.5.1 already authenticated\r\n");
  c(&e, "503 5.5.1 already authenticated\r\n");
  check_named(&e, 0x702, "alice", "PLAIN");
  expect(&e, "a further AUTH refused, the first user still named", NULL);

  env_init(&e);
  auth_prefix(&e, plain, ok);
  check_named(&e, 0x701, "alice", "PLAIN");
  C(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  u(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  U(&e, "503 5.5.1 already authenticated\r\n");
  c(&e, "503 5.5.1 already authenticated\r\n");
  check_named(&e, 0x702, "", "");
  expect(&e, "a further AUTH refused, the user forgotten", "names no AUTH");

  env_init(&e);
  auth_prefix(&e, plain, ok);
  C(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  u(&e, "AUTH PLAIN AGJvYgBwdw==\r\n");
  U(&e, "503 5.5.1 already authenticated\r\n");
  c(&e, "503 5.5.1 already authenticated\r\n");
  check_named(&e, 0x702, "bob", "PLAIN");
  expect(&e, "a further AUTH refused, its user named", "guarantee 2");

  env_init(&e);
  auth_prefix(&e, plain, refused);
  close_upstream(&e, 0x702);
  connect_req(&e, 0x703);
  expect(&e, "a refused AUTH's leg lost, a new leg", NULL);

  env_init(&e);
  auth_prefix(&e, plain, ok);
  close_upstream(&e, 0x702);
  connect_req(&e, 0x703);
  expect(&e, "an authenticated leg lost, a new leg", "authenticated on a lost");

  env_init(&e);
  auth_prefix(&e, plain, ok);
  check_named(&e, 0x701, "alice", "PLAIN");
  sl_oracle_filter_item(e.o, SL_FI_MAIL, (const uint8_t *)"MAIL", 4);
  sl_oracle_filter_item(e.o, SL_FI_RCPT, (const uint8_t *)"RCPT", 4);
  expect(&e, "the filter tap leaves out a user named before", "names no AUTH");
}

int main(void) {
  env e;

  filter_cases();
  auth_user_tests();

  env_init(&e);
  clean_prefix(&e);
  C(&e, "Subject: x\r\n..dot\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  u(&e, "Subject: x\r\n..dot\r\n\r\nbody\r\n.\r\n");
  U(&e, "250 2.0.0 queued\r\n");
  c(&e, "250 2.0.0 queued\r\n221 bye\r\n");
  expect(&e, "clean session", NULL);

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO x\n");
  expect(&e, "bare LF upstream", "guarantee 3");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "body\r\n.\r\n");
  u(&e, "body\r\n.\r\n");
  c(&e, "250 queued\r\n");
  expect(&e, "250 to end-of-data without the upstream's", "guarantee 2");

  /* A body the client sent before its 354 (pipelining allowed) goes up
     once the upstream said 354, possibly before that 354 has reached a
     client reading slowly: the terminator is judged when the client's
     DATA has its reply.  A 354 makes it the client's message; any other
     reply means the client never sent one. */
  env_init(&e);
  early_body_prefix(&e);
  c(&e, "354 g");
  u(&e, "body\r\n.\r\n");
  c(&e, "o\r\n");
  expect(&e, "end of data sent upstream while the client's 354 was on its way",
         NULL);

  env_init(&e);
  early_body_prefix(&e);
  c(&e, "554 5");
  u(&e, "body\r\n.\r\n");
  c(&e, ".5.1 no\r\n");
  expect(&e, "end of data sent upstream for a DATA the client got 554 to",
         "guarantee 3: end-of-data sent upstream for message #1 that the "
         "client never sent");

  /* A 2xx on the wire before BDAT LAST went out (nothing of a chunk was
     being sent, so guarantee 8 has nothing to say) is not the upstream
     accepting that message. */
  env_init(&e);
  chunking_prefix(&e);
  C(&e, "BDAT 0 LAST\r\n");
  U(&e, "250 early\r\n");
  u(&e, "BDAT 0 LAST\r\n");
  c(&e, "250 queued\r\n");
  expect(&e, "upstream 250 that came before BDAT LAST", "guarantee 2");

  /* The same early 250 in the middle of a DATA body: a strict receiver
     that answers there has stopped reading the body (guarantee 8). */
  env_init(&e);
  clean_prefix(&e);
  C(&e, "body\r\n.\r\n");
  U(&e, "250 early\r\n");
  u(&e, "body\r\n.\r\n");
  expect(&e, "body bytes after a reply in the middle of the body",
         "guarantee 8: body bytes");

  env_init(&e);
  c(&e, "220 hi\r\nX-Injected: yes\r\n");
  expect(&e, "raw injected line", "guarantee 5");

  env_init(&e);
  c(&e, "220 hi\r\n250-a\r\n251 b\r\n");
  C(&e, "NOOP\r\n");
  expect(&e, "code change in a multi-line reply", "guarantee 5");

  env_init(&e);
  c(&e, "220 hi\r\n250 a\nb\r\n");
  expect(&e, "bare LF in client output", "guarantee 5");

  env_init(&e);
  C(&e, "NOOP\r\n");
  c(&e, "220 hi\r\n250 ok\r\n250 ok\r\n");
  expect(&e, "more replies than commands", "guarantee 1");

  env_init(&e);
  C(&e, "NOOP\r\n");
  c(&e, "220 hi\r\n250 ok\r\n421 4.4.2 timeout\r\n");
  expect(&e, "unsolicited 421 is allowed", NULL);

  env_init(&e);
  c(&e, "220 hi\r\n421 4.4.2 timeout\r\n250 ok\r\n");
  expect(&e, "reply after the closing 421", "guarantee 1");

  env_init(&e);
  e.pol.features |= SL_FEAT_STARTTLS;
  C(&e, "EHLO a\r\nSTARTTLS\r\nNOOP\r\n");
  c(&e, "220 hi\r\n250 x\r\n220 go ahead\r\n250 ok\r\n");
  expect(&e, "STARTTLS injection answered", "guarantee 4");

  env_init(&e);
  C(&e, "EHLO a\r\nSTARTTLS\r\nNOOP\r\n");
  c(&e, "220 hi\r\n250 x\r\n220 go ahead\r\n");
  sl_oracle_completed(e.o, SL_REQ_STARTTLS_CLIENT, SL_STATUS_OK);
  C(&e, "EHLO a\r\n");
  c(&e, "250 x\r\n");
  expect(&e, "STARTTLS injection discarded", NULL);

  /* The upstream's handshake starts only once it has read STARTTLS and
     answered 220: a request while "STARTTLS" is unsent (the 220 came
     early) puts the commands still queued after the handshake. */
  env_init(&e);
  up_with(&e, "250-up\r\n250 STARTTLS\r\n");
  U(&e, "220 go\r\n");
  sl_oracle_request(e.o,
                    &(sl_request){.type = SL_REQ_STARTTLS_UPSTREAM, .id = 77});
  expect(&e, "STARTTLS_UPSTREAM before STARTTLS went out",
         "guarantee 3: STARTTLS_UPSTREAM requested");

  env_init(&e);
  up_with(&e, "250-up\r\n250 STARTTLS\r\n");
  U(&e, "220 go\r\n");
  u(&e, "STARTTLS\r\n");
  sl_oracle_request(e.o,
                    &(sl_request){.type = SL_REQ_STARTTLS_UPSTREAM, .id = 77});
  sl_oracle_completed(e.o, SL_REQ_STARTTLS_UPSTREAM, SL_STATUS_OK);
  u(&e, "EHLO mx.sluice.test\r\n");
  expect(&e, "STARTTLS_UPSTREAM after STARTTLS and an early 220", NULL);

  env_init(&e);
  up_with(&e, "250-up\r\n250 STARTTLS\r\n");
  u(&e, "QUIT\r\n");
  u(&e, "NOOP\r\n");
  expect(&e, "command after QUIT", "after QUIT or a failed handshake");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "body\n.\r\nMAIL FROM:<evil@example.org>\r\n");
  u(&e, "body\r\n.\r\n");
  expect(&e, "terminator upstream for a smuggled message", "guarantee 3");

  env_init(&e);
  clean_prefix(&e);
  C(&e, "body\n.\r\nMAIL FROM:<evil@example.org>\r\n");
  c(&e, "554 5.6.0 smuggling\r\n250 ok\r\n");
  expect(&e, "session goes on after smuggling", "guarantee 1");

  env_init(&e);
  clean_prefix(&e);
  u(&e, "body\r\n.\r\n");
  expect(&e, "terminator before the client's end-of-data", "guarantee 3");

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\nMAIL FROM:<a@b.c>\r\n");
  expect(&e, "command pipelined after EHLO", "guarantee 8");

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250 up\r\n");
  u(&e, "XCLIENT ADDR=10.0.0.1\r\n");
  expect(&e, "client XCLIENT relayed", "guarantee 3");

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250-up\r\n250 CHUNKING\r\n");
  u(&e, "BDAT 3 LAST\r\na\nb");
  expect(&e, "BDAT chunk with bare LF", "guarantee 3");

  /* Guarantee 8: BDAT only to an upstream whose EHLO offered CHUNKING. */
  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250-up\r\n250 PIPELINING\r\n");
  u(&e, "BDAT 3 LAST\r\nabc");
  expect(&e, "BDAT to an upstream without CHUNKING", "guarantee 8");

  /* ... which gets the BDAT transaction as one DATA body instead. */
  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250 up\r\n");
  c(&e, "220 up\r\n");
  C(&e, "EHLO client\r\n");
  u(&e, "EHLO client\r\n");
  U(&e, "250 up\r\n");
  c(&e, "250 up\r\n");
  C(&e, "MAIL FROM:<a@example.org>\r\n");
  u(&e, "MAIL FROM:<a@example.org>\r\n");
  U(&e, "250 ok\r\n");
  c(&e, "250 ok\r\n");
  C(&e, "RCPT TO:<b@example.net>\r\n");
  u(&e, "RCPT TO:<b@example.net>\r\n");
  U(&e, "250 ok\r\n");
  c(&e, "250 ok\r\n");
  C(&e, "BDAT 4\r\n.a\r\nBDAT 2 LAST\r\nb\r");
  u(&e, "DATA\r\n");
  U(&e, "354 go\r\n");
  u(&e, "..a\r\n");
  c(&e, "250 chunk\r\n");
  expect(&e, "BDAT content withheld before its LAST chunk", NULL);

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250 up\r\n");
  C(&e, "EHLO client\r\nMAIL FROM:<a@example.org>\r\n");
  C(&e, "RCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nb\r\n\r\n");
  u(&e, "EHLO client\r\n");
  U(&e, "250 up\r\n");
  u(&e, "MAIL FROM:<a@example.org>\r\n");
  U(&e, "250 ok\r\n");
  u(&e, "RCPT TO:<b@example.net>\r\n");
  U(&e, "250 ok\r\n");
  u(&e, "DATA\r\n");
  U(&e, "354 go\r\n");
  u(&e, "b\r\n\r\n.\r\n");
  U(&e, "250 queued\r\n");
  c(&e, "220 up\r\n250 up\r\n250 ok\r\n250 ok\r\n250 queued\r\n");
  expect(&e, "BDAT transaction sent as DATA", NULL);

  env_init(&e);
  sl_oracle_completed(e.o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(&e, "220 up\r\n");
  u(&e, "EHLO mx\r\n");
  U(&e, "250 up\r\n");
  C(&e, "EHLO client\r\nMAIL FROM:<a@example.org>\r\n");
  C(&e, "RCPT TO:<b@example.net>\r\nBDAT 4 LAST\r\nb\n\r\n");
  u(&e, "EHLO client\r\n");
  U(&e, "250 up\r\n");
  u(&e, "MAIL FROM:<a@example.org>\r\n");
  U(&e, "250 ok\r\n");
  u(&e, "RCPT TO:<b@example.net>\r\n");
  U(&e, "250 ok\r\n");
  u(&e, "DATA\r\n");
  U(&e, "354 go\r\n");
  u(&e, "b\r\n\r\n.\r\n");
  expect(&e, "BDAT transaction with a bare LF committed as DATA",
         "guarantee 3");

  upstream_view_tests();
  progress_tests();
  completeness_tests();
  held_mail_tests();

  printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
