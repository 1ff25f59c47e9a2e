/* sp_sim_test.c: the virtual-clock replay, Kaplan-Meier, policy files and
 * patience models, on hand-made sessions with hand-computed answers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_test.h"
#include "sp_km.h"
#include "sp_patience.h"
#include "sp_policy.h"
#include "sp_script.h"
#include "sp_sim.h"
#include "sp_tb.h"

/* A plain MTA session, one command per write, 10 ms server latency. */
static void plain_session(sp_tb *t) {
  sp_tb_head(t);
  sp_tb_rec(t, 'S', 50000, "220 mx.example ESMTP\r\n");
  sp_tb_rec(t, 'C', 100000, "EHLO client.example\r\n");
  sp_tb_rec(t, 'S', 110000, "250-mx.example\r\n250 PIPELINING\r\n");
  sp_tb_rec(t, 'C', 200000, "MAIL FROM:<a@example.org>\r\n");
  sp_tb_rec(t, 'S', 210000, "250 2.1.0 Ok\r\n");
  sp_tb_rec(t, 'C', 300000, "RCPT TO:<b@example.net>\r\n");
  sp_tb_rec(t, 'S', 310000, "250 2.1.5 Ok\r\n");
  sp_tb_rec(t, 'C', 400000, "DATA\r\n");
  sp_tb_rec(t, 'S', 410000, "354 go ahead\r\n");
  sp_tb_rec(t, 'C', 500000, "Subject: t\r\n\r\nhello\r\n.\r\n");
  sp_tb_rec(t, 'S', 510000, "250 2.0.0 queued\r\n");
  sp_tb_rec(t, 'C', 600000, "QUIT\r\n");
  sp_tb_rec(t, 'S', 610000, "221 2.0.0 Bye\r\n");
  sp_tb_end(t, 620000, "server-fin");
  sp_tb_end(t, 630000, "client-fin");
}

/* setting: NULL or "key=value" pairs separated by ';'. */
static sp_result run_clock(const sp_script *s, const char *setting,
                           double patience, int clock_reply) {
  sp_policy p;
  sp_policy_init(&p);
  char err[256];
  for (const char *c = setting; c && *c;) {
    const char *semi = strchr(c, ';');
    size_t len = semi ? (size_t)(semi - c) : strlen(c);
    char kv[128], *eq;
    snprintf(kv, sizeof kv, "%.*s", (int)len, c);
    eq = strchr(kv, '=');
    CHECK(eq != NULL);
    if (!eq)
      break;
    *eq = '\0';
    CHECK_INT(sp_policy_set(&p, kv, eq + 1, "test", err, sizeof err), 0);
    c = semi ? semi + 1 : c + len;
  }
  CHECK_INT(sp_policy_finish(&p, err, sizeof err), 0);
  sp_sim_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.seed = 1;
  cfg.clock_reply = clock_reply;
  sp_sim *sim = sp_sim_new(&p, &cfg);
  sp_result r;
  memset(&r, 0, sizeof r);
  CHECK(sim != NULL);
  if (sim) {
    CHECK_INT(sp_sim_run(sim, s, patience, &r), 0);
    sp_sim_free(sim);
  }
  return r;
}

static sp_result run_one(const sp_script *s, const char *setting,
                         double patience) {
  return run_clock(s, setting, patience, 0);
}

static void test_script_model(void) {
  sp_tb t;
  plain_session(&t);
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  CHECK_INT(s.nu, 6); /* EHLO MAIL RCPT DATA message QUIT */
  CHECK_INT(s.u[4].kind, SP_U_MESSAGE);
  CHECK_INT(s.u[4].reply_code, 250);
  CHECK_INT(s.nw, 6);
  CHECK_INT(s.w[0].after_replies, 1);
  CHECK_INT(s.w[0].think_us, 50000); /* 100 ms - greeting at 50 ms */
  CHECK_INT(s.w[3].after_replies, 4);
  CHECK_INT(s.end, SP_SEND_FIN);
  CHECK_INT(s.gave_up, 0);             /* censored */
  CHECK(fabs(s.wait_s - 0.05) < 1e-9); /* longest wait: the greeting */
  sp_script_free(&s);
}

static void test_greet_delay_patience(void) {
  sp_tb t;
  plain_session(&t);
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  /* 10 s greeting delay, 5 s patience: gives up waiting for the greeting. */
  sp_result r = run_one(&s, "greet_delay=10s", 5.0);
  CHECK_INT(r.outcome, SP_OUT_GAVE_UP);
  CHECK_STR(r.gave_up_at, "greeting");
  CHECK(fabs(r.held_s - 5.0) < 1e-6);
  CHECK_INT(r.messages, 0);
  /* 20 s patience: waits the 10 s out and delivers. */
  r = run_one(&s, "greet_delay=10s", 20.0);
  CHECK_INT(r.outcome, SP_OUT_DELIVERED);
  CHECK_INT(r.messages, 1);
  CHECK(r.deliver_s > 10.0 && r.deliver_s < 11.0);
  CHECK_STR(r.stage, "delivered");
  /* No delay: the timing is the capture's (within the model's latencies). */
  r = run_one(&s, NULL, 5.0);
  CHECK_INT(r.outcome, SP_OUT_DELIVERED);
  CHECK(r.held_s > 0.55 && r.held_s < 0.7);
  /* A per-reply delay of 3 s with 2 s patience: gives up at the EHLO. */
  r = run_one(&s, "reply_delay=3", 2.0);
  CHECK_INT(r.outcome, SP_OUT_GAVE_UP);
  CHECK_STR(r.gave_up_at, "helo");
  sp_script_free(&s);
}

static void test_pipelining_as_captured(void) {
  sp_tb t;
  sp_tb_head(&t);
  sp_tb_rec(&t, 'S', 10000, "220 mx ESMTP\r\n");
  sp_tb_rec(&t, 'C', 20000, "EHLO c\r\n");
  sp_tb_rec(&t, 'S', 30000, "250-mx\r\n250 PIPELINING\r\n");
  sp_tb_rec(&t, 'C', 40000,
            "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
  sp_tb_rec(&t, 'S', 50000, "250 Ok\r\n250 Ok\r\n354 go\r\n");
  sp_tb_rec(&t, 'C', 60000, "x\r\n.\r\nQUIT\r\n");
  sp_tb_rec(&t, 'S', 70000, "250 queued\r\n221 Bye\r\n");
  sp_tb_end(&t, 80000, "client-fin");
  sp_tb_end(&t, 80100, "server-fin");
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  CHECK_INT(s.nw, 3);
  CHECK_INT(s.w[1].after_replies, 2); /* after greeting + EHLO only */
  CHECK_INT(s.nu, 6);
  /* Every reply delayed 1 s: the pipelined write still goes out once,
   * 10 ms after the EHLO reply, and the message is delivered. */
  sp_result r = run_one(&s, "reply_delay=1s", 100.0);
  CHECK_INT(r.outcome, SP_OUT_DELIVERED);
  CHECK_INT(r.replies, 7);
  CHECK_INT(r.bytes_client, s.clen);
  sp_script_free(&s);
}

static void test_captured_giveup(void) {
  sp_tb t;
  sp_tb_head(&t);
  sp_tb_rec(&t, 'S', 10000, "220 mx ESMTP\r\n");
  sp_tb_rec(&t, 'C', 20000, "HELO c\r\n");
  sp_tb_end(&t, 7020000, "client-fin"); /* gave up after 7 s without a reply */
  sp_tb_end(&t, 7020100, "server-fin");
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  CHECK_INT(s.gave_up, 1);
  CHECK(fabs(s.wait_s - 7.0) < 1e-9);
  CHECK_INT(s.gave_up_waiting, SP_U_HELO);
  sp_script_free(&s);
}

static void test_km_hand(void) {
  /* 1 event, 2 censored, 3 event, 3 censored, 4 event, 5 censored. */
  sp_km_obs o[6] = {{3, 0}, {1, 1}, {5, 0}, {3, 1}, {2, 0}, {4, 1}};
  sp_km_row r[6];
  size_t n = sp_km_estimate(o, 6, 1.96, r);
  CHECK_INT(n, 3);
  CHECK(fabs(r[0].t - 1) < 1e-12 && r[0].at_risk == 6 && r[0].events == 1);
  CHECK(fabs(r[0].s - 5.0 / 6.0) < 1e-12);
  CHECK(fabs(r[0].se - (5.0 / 6.0) * sqrt(1.0 / 30.0)) < 1e-12);
  CHECK(r[1].at_risk == 4 && r[1].censored == 1);
  CHECK(fabs(r[1].s - 0.625) < 1e-12);
  CHECK(fabs(r[2].s - 0.3125) < 1e-12);
  CHECK(fabs(r[2].se - 0.3125 * sqrt(1.0 / 30 + 1.0 / 12 + 0.5)) < 1e-12);
  CHECK(fabs(r[2].lo - 0.0) < 1e-12); /* 0.3125 - 1.96 * 0.2454 < 0 */
  CHECK(fabs(sp_km_survival(r, n, 3.5) - 0.625) < 1e-12);
  CHECK(fabs(sp_km_survival(r, n, 0.5) - 1.0) < 1e-12);
}

static void test_patience_models(void) {
  sp_patience m;
  char err[256];
  CHECK_INT(sp_patience_parse(&m, "ops90", err, sizeof err), 0);
  unsigned le10 = 0, le25 = 0, le60 = 0, inf = 0, N = 100000;
  for (unsigned i = 0; i < N; i++) {
    double p = sp_patience_draw(&m, sp_rng_seed(7, "x", i), -1);
    le10 += p <= 10 ? 1u : 0u;
    le25 += p <= 25 ? 1u : 0u;
    le60 += p <= 60 ? 1u : 0u;
    inf += isinf(p) ? 1u : 0u;
  }
  /* the published conditional shares times the 95.1 % that closed by 90 s */
  CHECK(fabs(le10 / (double)N - 0.08 * 0.951) < 0.005);
  CHECK(fabs(le25 / (double)N - 0.63 * 0.951) < 0.01);
  CHECK(fabs(le60 / (double)N - 0.98 * 0.951) < 0.005);
  CHECK(fabs(inf / (double)N - 0.049) < 0.003);
  /* the lower-edge reading: the 10 s label's closes are known only by 15 s */
  CHECK_INT(sp_patience_parse(&m, "ops90-late", err, sizeof err), 0);
  unsigned le15 = 0;
  le10 = 0;
  for (unsigned i = 0; i < N; i++) {
    double p = sp_patience_draw(&m, sp_rng_seed(7, "x", i), -1);
    le10 += p <= 10 ? 1u : 0u;
    le15 += p <= 15 ? 1u : 0u;
  }
  CHECK(fabs(le15 / (double)N - 0.08 * 0.951) < 0.005);
  CHECK(fabs(le10 / (double)N - 0.08 * 0.951 * 10 / 15) <
        0.005); /* linear from 0 */
  CHECK_INT(sp_patience_parse(&m, "vendor10", err, sizeof err), 0);
  unsigned ten = 0;
  for (unsigned i = 0; i < N; i++)
    ten += sp_patience_draw(&m, sp_rng_seed(7, "x", i), -1) == 10.0 ? 1u : 0u;
  CHECK(fabs(ten / (double)N - 0.90) < 0.005);
  CHECK_INT(sp_patience_parse(&m, "fixed:5", err, sizeof err), 0);
  CHECK(sp_patience_draw(&m, 1, -1) == 5.0);
  CHECK_INT(sp_patience_parse(&m, "captured", err, sizeof err), 0);
  CHECK(sp_patience_draw(&m, 1, 3.5) == 3.5);
  CHECK(isinf(sp_patience_draw(&m, 1, -1)));
  CHECK(sp_patience_parse(&m, "fixed:x", err, sizeof err) < 0);
  CHECK(sp_patience_parse(&m, "uniform:5:1", err, sizeof err) < 0);
  CHECK(sp_patience_parse(&m, "weibull:3", err, sizeof err) < 0);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static void test_policy_file(void) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char path[512], err[768];
  snprintf(path, sizeof path, "%s/sp_sim_test_%d.conf", dir, (int)getpid());
  sp_policy p;
  /* a good file, with daemon-only keys that are ignored */
  write_file(path, "# comment\nlisten = 127.0.0.1:2525\nmode = screen\n"
                   "normal_greet_delay = 6s\nsuspect_reply_delay = 500ms\n"
                   "suspect_stutter_bytes = 1\nsuspect_stutter_interval = 1s\n"
                   "dnsbl = zen.example.org 10 127.0.0.2 127.0.0.3\n"
                   "tarpit_score = 5\nworkers = 2\n");
  sp_policy_init(&p);
  CHECK_INT(sp_policy_load(&p, path, err, sizeof err), 0);
  CHECK_INT(sp_policy_finish(&p, err, sizeof err), 0);
  CHECK_INT(p.policy.mode, SL_MODE_SCREEN_FIRST);
  CHECK(p.policy.normal.greet_delay == 6 * SL_SEC);
  CHECK(p.policy.suspect.reply_delay == 500 * SL_MSEC);
  CHECK_INT(p.policy.ndnsbl, 1);
  CHECK_INT(p.policy.dnsbl[0].ncodes, 2);
  CHECK_INT(p.policy.dnsbl[0].codes[1], 0x7f000003);
  CHECK_STR(p.policy.dnsbl[0].zone, "zen.example.org");
  CHECK_INT(p.policy.tarpit_score, 5);
  /* unknown key: FILE:LINE */
  write_file(path, "mode = screen\n\nnormal_greet_dalay = 6s\n");
  sp_policy_init(&p);
  CHECK(sp_policy_load(&p, path, err, sizeof err) < 0);
  char want[600];
  snprintf(want, sizeof want, "%s:3: unknown key \"normal_greet_dalay\"", path);
  /* followed by the suggestion of the nearest key */
  CHECK(!strncmp(err, want, strlen(want)));
  CHECK(strstr(err, "did you mean \"normal_greet_delay\"") != NULL);
  /* bad values */
  const char *bad[] = {"normal_greet_delay = 6 parsecs\n",
                       "mode = sideways\n",
                       "dnsbl = nozone 10\n",
                       "dnsbl = z.example 10 10.0.0.1\n",
                       "tarpit_score = lots\n",
                       "features = pipelining teleport\n",
                       "just a line\n",
                       "pipeline_max = 1\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_file(path, bad[i]);
    sp_policy_init(&p);
    int rc = sp_policy_load(&p, path, err, sizeof err);
    if (!rc)
      rc = sp_policy_finish(&p, err, sizeof err);
    CHECK(rc < 0);
    if (i < 7) {
      char where[560];
      snprintf(where, sizeof where, "%s:1: ", path);
      CHECK(!strncmp(err, where, strlen(where)));
    }
  }
  unlink(path);
}

/* Tie rule (sp_sim.h): a reply that arrives at the instant the patience runs
 * out is received; patience strictly shorter than the wait gives up. */
static void test_tie_rule(void) {
  sp_tb t;
  plain_session(&t);
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  sp_result w = run_one(&s, "greet_delay=10s", INFINITY);
  CHECK_INT(w.outcome, SP_OUT_DELIVERED);
  /* The greeting is the longest wait: 10 s from the connection. */
  CHECK(w.w_read >= 10.0 && w.w_read < 10.2);
  CHECK(w.w_read_by[SP_U_GREETING] == w.w_read);
  CHECK(w.w_reply >= w.w_read && w.w_session >= w.w_reply);
  sp_result r = run_one(&s, "greet_delay=10s", w.w_read);
  CHECK_INT(r.outcome, SP_OUT_DELIVERED);
  r = run_one(&s, "greet_delay=10s", w.w_read - 1e-6);
  CHECK_INT(r.outcome, SP_OUT_GAVE_UP);
  CHECK_STR(r.gave_up_at, "greeting");
  sp_script_free(&s);
}

/* The three clocks: a 1 byte/s stutter keeps a per-read clock from ever
 * running out (bytes keep coming), but a per-reply clock sees the whole
 * reply take tens of seconds. */
static void test_clocks_stutter(void) {
  sp_tb t;
  plain_session(&t);
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  const char *st = "normal_stutter_bytes=1;normal_stutter_interval=1s";
  sp_result w = run_one(&s, st, INFINITY);
  CHECK(w.w_read <= 1.1);
  CHECK(w.w_reply > 20.0); /* a 32-byte EHLO reply at 1 byte/s */
  CHECK(w.w_session > w.w_reply);
  sp_result r = run_clock(&s, st, 5.0, 0);
  CHECK(r.outcome != SP_OUT_GAVE_UP);
  r = run_clock(&s, st, 5.0, 1);
  CHECK_INT(r.outcome, SP_OUT_GAVE_UP);
  sp_script_free(&s);
}

/* The exact method of the report: for any patience p, the replay gives up
 * iff p < W, the wait measured with patience "none" under the same clock
 * (the client's behaviour does not depend on p until it gives up). */
static void test_giveup_iff_wait_exceeds(void) {
  sp_tb t;
  plain_session(&t);
  sp_script s;
  if (sp_tb_load(&s, &t)) {
    CHECK(0);
    return;
  }
  static const char *const pols[] = {
      "greet_delay=10s", "reply_delay=3", "greet_delay=2;reply_delay=1",
      "normal_stutter_bytes=4;normal_stutter_interval=1s"};
  static const double pats[] = {0.01, 0.5, 1, 2.5, 3, 5, 9.9, 10.05, 20, 60};
  for (int clk = 0; clk < 2; clk++)
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
      sp_result w = run_clock(&s, pols[i], INFINITY, clk);
      double W = clk ? w.w_reply : w.w_read;
      for (size_t j = 0; j < sizeof pats / sizeof pats[0]; j++) {
        sp_result r = run_clock(&s, pols[i], pats[j], clk);
        if ((r.outcome == SP_OUT_GAVE_UP) != (pats[j] < W)) {
          fprintf(stderr, "policy %s clock %d patience %g: W %g outcome %s\n",
                  pols[i], clk, pats[j], W, sp_outcome_name(r.outcome));
          CHECK(0);
        }
      }
    }
  sp_script_free(&s);
}

/* The relay-control keys of sluiced's format: every domain by default in
   the replay, a list replaces that, a struct copy keeps working. */
static void test_relay_keys(void) {
  sp_policy p, q;
  char err[256];
  sp_policy_init(&p);
  CHECK(p.policy.rcpt.flags & SL_RCPT_ANY_DOMAIN);
  CHECK_INT(sp_policy_set(&p, "relay_domains", "a.test, .b.test", "t", err,
                          sizeof err),
            0);
  CHECK_INT(sp_policy_set(&p, "relay_domains", "c.test", "t", err, sizeof err),
            0);
  CHECK_INT(sp_policy_set(&p, "relay_allow", "bang_path", "t", err, sizeof err),
            0);
  CHECK_INT(sp_policy_set(&p, "mynetworks", "10.0.0.0/8, 2001:db8::/32", "t",
                          err, sizeof err),
            0);
  CHECK_INT(
      sp_policy_set(&p, "mynetworks", "10.0.0.0/33", "t", err, sizeof err), -1);
  CHECK_INT(sp_policy_set(&p, "relay_allow", "all", "t", err, sizeof err), -1);
  CHECK_INT(sp_policy_finish(&p, err, sizeof err), 0);
  q = p;
  sp_policy_fixup(&q);
  CHECK_INT(q.policy.rcpt.flags, SL_RCPT_ALLOW_BANG_PATH);
  CHECK_INT(q.policy.rcpt.ndomains, 3);
  CHECK_INT(q.policy.rcpt.nmynetworks, 2);
  CHECK_INT(sl_rcpt_check(&q.policy.rcpt, (const uint8_t *)"u@x.b.test", 10, 0),
            SL_RCPT_OK);
  CHECK_INT(sl_rcpt_check(&q.policy.rcpt, (const uint8_t *)"u@c.test", 8, 0),
            SL_RCPT_OK);
  CHECK_INT(sl_rcpt_check(&q.policy.rcpt, (const uint8_t *)"u@d.test", 8, 0),
            SL_RCPT_DENIED);
  CHECK_INT(sl_rcpt_check(&q.policy.rcpt, (const uint8_t *)"x!u@a.test", 10, 0),
            SL_RCPT_OK);
  sp_policy_init(&p);
  CHECK_INT(sp_policy_set(&p, "relay_domains", "*", "t", err, sizeof err), 0);
  CHECK_INT(sp_policy_set(&p, "relay_domains", "a.test", "t", err, sizeof err),
            0);
  CHECK(p.policy.rcpt.flags & SL_RCPT_ANY_DOMAIN); /* "*" given: stays */
}

int main(void) {
  SL_RUN(test_tie_rule);
  SL_RUN(test_clocks_stutter);
  SL_RUN(test_giveup_iff_wait_exceeds);
  SL_RUN(test_script_model);
  SL_RUN(test_greet_delay_patience);
  SL_RUN(test_pipelining_as_captured);
  SL_RUN(test_captured_giveup);
  SL_RUN(test_km_hand);
  SL_RUN(test_patience_models);
  SL_RUN(test_policy_file);
  SL_RUN(test_relay_keys);
  return sl_test_summary();
}
