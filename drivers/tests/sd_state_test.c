/*
 * sd_state_test.c: the shared-memory state backend: one table across
 * processes (fork), reconfiguration at reload, and the recount after a
 * process died holding live counts (tickets keep releases exact).
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sd_state.h"
#include "sl_test.h"

static sl_addr v4(uint8_t last) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET;
  a.bytes[0] = 192;
  a.bytes[2] = 2;
  a.bytes[3] = last;
  return a;
}

static sd_state *make(uint32_t conc) {
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 256;
  c.concurrency_max = conc;
  char err[200];
  sd_state_config sc = {.kv_entries = 1024};
  sd_state *st = sd_state_shm_new(&c, &sc, err, sizeof err);
  CHECK(st != NULL);
  return st;
}

/* The shm backend answers every admission at once. */
static sl_admission adm(sd_state *st, const sl_addr *a, sd_state_ticket *t) {
  sd_admit_result res;
  sd_state_req req;
  CHECK_INT(sd_state_admit(st, a, 0, t, NULL, NULL, &res, &req), SD_STATE_DONE);
  return res.admission;
}

/* Children admit from their own processes: the parent sees their counts,
   and the limit holds for all of them together. */
static void test_shared_across_processes(void) {
  sd_state *st = make(5);
  sl_addr a = v4(1);
  enum { KIDS = 4, EACH = 3 };
  for (int k = 0; k < KIDS; k++) {
    pid_t p = fork();
    if (p == 0) {
      int accepted = 0;
      for (int i = 0; i < EACH; i++) {
        sd_state_ticket t;
        accepted += adm(st, &a, &t) == SL_ADMIT_ACCEPT;
      }
      _exit(accepted);
    }
  }
  int total = 0, status;
  for (int k = 0; k < KIDS; k++) {
    wait(&status);
    total += WEXITSTATUS(status);
  }
  CHECK_INT(total, 5); /* 12 attempts, one table, a limit of 5 */
  CHECK_INT(sd_state_live(st, &a), 5);
  sd_state_free(st);
}

static void test_configure_keeps_counts(void) {
  sd_state *st = make(1);
  sl_addr a = v4(2);
  sd_state_ticket t;
  CHECK_INT(adm(st, &a, &t), SL_ADMIT_ACCEPT);
  CHECK_INT(adm(st, &a, &t), SL_ADMIT_TEMPFAIL);
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 256;
  c.concurrency_max = 2;
  char msg[300];
  CHECK_INT(sd_state_configure(st, &c, msg, sizeof msg), 0);
  CHECK_INT(sd_state_live(st, &a), 1);
  CHECK_INT(adm(st, &a, &t), SL_ADMIT_ACCEPT);
  c.entries = 512; /* cannot grow under the workers: noted, the rest applied */
  c.concurrency_max = 3;
  CHECK_INT(sd_state_configure(st, &c, msg, sizeof msg), 1);
  CHECK(strstr(msg, "next restart") != NULL);
  CHECK_INT(adm(st, &a, &t), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_live(st, &a), 3);
  sd_state_free(st);
}

/* A process died holding two sessions; the survivor holds one.  After the
   recount only the survivor's counts, and a release of a pre-recount
   ticket that was not held again does nothing. */
static void test_recount(void) {
  sd_state *st = make(3);
  sl_addr a = v4(3);
  sd_state_ticket dead1, dead2, kept, released;
  CHECK_INT(adm(st, &a, &dead1), SL_ADMIT_ACCEPT);
  CHECK_INT(adm(st, &a, &dead2), SL_ADMIT_ACCEPT);
  CHECK_INT(adm(st, &a, &kept), SL_ADMIT_ACCEPT);
  CHECK_INT(adm(st, &a, &released), SL_ADMIT_TEMPFAIL);
  sd_state_recount(st);
  CHECK_INT(sd_state_live(st, &a), 0);
  sd_state_ticket newer;
  CHECK_INT(adm(st, &a, &newer), SL_ADMIT_ACCEPT); /* before the hold */
  sd_state_hold(st, &a, 0, &kept);
  sd_state_hold(st, &a, 0, &kept);  /* twice: counted once */
  sd_state_hold(st, &a, 0, &newer); /* admitted after the recount: already in */
  CHECK_INT(sd_state_live(st, &a), 2);
  sd_state_release(st, &a, &dead1); /* never held again: not in the counts */
  CHECK_INT(sd_state_live(st, &a), 2);
  sd_state_release(st, &a, &kept);
  sd_state_release(st, &a, &newer);
  CHECK_INT(sd_state_live(st, &a), 0);
  sd_state_free(st);
}

/* A pass is seen by another process, per address, until its TTL. */
static void test_screen_pass(void) {
  sd_state *st = make(0);
  sl_addr a = v4(4), b = v4(5);
  sd_state_ticket t;
  sd_admit_result res;
  sd_state_req req;
  sd_state_admit(st, &a, 0, &t, NULL, NULL, &res, &req);
  CHECK_INT(res.passed_before, 0);
  pid_t p = fork();
  if (p == 0) {
    sd_state_screen_pass(st, &a, 1);
    _exit(0);
  }
  int status;
  waitpid(p, &status, 0);
  sd_state_admit(st, &a, 0, &t, NULL, NULL, &res, &req);
  CHECK_INT(res.passed_before, 1);
  sd_state_admit(st, &b, 0, &t, NULL, NULL, &res, &req);
  CHECK_INT(res.passed_before, 0);
  sleep(2); /* wall-clock seconds: the TTL of 1 s has passed */
  sd_state_admit(st, &a, 0, &t, NULL, NULL, &res, &req);
  CHECK_INT(res.passed_before, 0);
  sd_state_free(st);
}

static sd_grey_verdict grey(sd_state *st, const char *client,
                            const char *triplet, const sd_grey_params *p,
                            sd_grey_result *res) {
  sd_state_req req;
  CHECK_INT(sd_state_grey_check(st, client, triplet, p, NULL, NULL, res, &req),
            SD_STATE_DONE);
  return res->verdict;
}

/* postgrey's life of a triplet, with seconds for minutes: new, too early,
   passed after the delay, passed again; a client with auto_allow passes
   skips the check; a triplet not retried within its window is new again. */
static void test_greylist(void) {
  sd_state *st = make(0);
  sd_grey_params p = {1, 3, 100, 2};
  sd_grey_result r;
  CHECK_INT(grey(st, "192.0.2.0/24", "t1", &p, &r), SD_GREY_NEW);
  CHECK_INT(r.wait_s, 1);
  CHECK_INT(grey(st, "192.0.2.0/24", "t1", &p, &r), SD_GREY_EARLY);
  CHECK_INT(grey(st, "192.0.2.0/24", "t2", &p, &r), SD_GREY_NEW);
  CHECK_INT(grey(st, "198.51.100.0/24", "t3", &p, &r), SD_GREY_NEW);
  sleep(2);
  CHECK_INT(grey(st, "192.0.2.0/24", "t1", &p, &r), SD_GREY_PASS);
  CHECK_INT(r.passes, 1);
  CHECK_INT(grey(st, "192.0.2.0/24", "t1", &p, &r), SD_GREY_PASS);
  CHECK_INT(r.passes, 1); /* a triplet passes the client once */
  CHECK_INT(grey(st, "192.0.2.0/24", "t2", &p, &r), SD_GREY_PASS);
  CHECK_INT(r.passes, 2);
  CHECK_INT(grey(st, "192.0.2.0/24", "t-unseen", &p, &r), SD_GREY_ALLOWED);
  sleep(3); /* t3: first seen over delay + retry window ago, never retried */
  CHECK_INT(grey(st, "198.51.100.0/24", "t3", &p, &r), SD_GREY_NEW);
  sd_state_free(st);
}

int main(void) {
  SL_RUN(test_shared_across_processes);
  SL_RUN(test_configure_keeps_counts);
  SL_RUN(test_recount);
  SL_RUN(test_screen_pass);
  SL_RUN(test_greylist);
  return sl_test_summary();
}
