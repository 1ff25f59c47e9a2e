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
  if (!*mem || sl_relay_init(&r, *mem, n, &e->lim, &e->pol, &pool, &e->info,
                             1, 1000) != 0) {
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

/* A clean pass-through session: connect, greeting, EHLO, one message. */
static void clean_prefix(env *e) {
  sl_oracle_completed(e->o, SL_REQ_CONNECT_UPSTREAM, SL_STATUS_OK);
  U(e, "220 up ESMTP\r\n");
  u(e, "EHLO mx.sluice.test\r\n");
  U(e, "250-up\r\n250 PIPELINING\r\n");
  c(e, "220 up ESMTP\r\n");
  C(e, "EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
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

int main(void) {
  env e;

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

  env_init(&e);
  clean_prefix(&e);
  C(&e, "body\r\n.\r\n");
  U(&e, "250 early\r\n"); /* before the terminator went out: not its reply */
  u(&e, "body\r\n.\r\n");
  c(&e, "250 queued\r\n");
  expect(&e, "upstream 250 that came before the terminator", "guarantee 2");

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
  expect(&e, "command pipelined after EHLO", "guarantee 3");

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

  printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
