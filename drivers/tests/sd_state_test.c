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
  sd_state *st = sd_state_shm_new(&c, err, sizeof err);
  CHECK(st != NULL);
  return st;
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
        uint32_t t;
        accepted += sd_state_admit(st, &a, 0, &t) == SL_ADMIT_ACCEPT;
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
  uint32_t t;
  CHECK_INT(sd_state_admit(st, &a, 0, &t), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_admit(st, &a, 0, &t), SL_ADMIT_TEMPFAIL);
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 256;
  c.concurrency_max = 2;
  char msg[300];
  CHECK_INT(sd_state_configure(st, &c, msg, sizeof msg), 0);
  CHECK_INT(sd_state_live(st, &a), 1);
  CHECK_INT(sd_state_admit(st, &a, 0, &t), SL_ADMIT_ACCEPT);
  c.entries = 512; /* cannot grow under the workers: noted, the rest applied */
  c.concurrency_max = 3;
  CHECK_INT(sd_state_configure(st, &c, msg, sizeof msg), 1);
  CHECK(strstr(msg, "next restart") != NULL);
  CHECK_INT(sd_state_admit(st, &a, 0, &t), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_live(st, &a), 3);
  sd_state_free(st);
}

/* A process died holding two sessions; the survivor holds one.  After the
   recount only the survivor's counts, and a release of a pre-recount
   ticket that was not held again does nothing. */
static void test_recount(void) {
  sd_state *st = make(3);
  sl_addr a = v4(3);
  uint32_t dead1, dead2, kept, released;
  CHECK_INT(sd_state_admit(st, &a, 0, &dead1), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_admit(st, &a, 0, &dead2), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_admit(st, &a, 0, &kept), SL_ADMIT_ACCEPT);
  CHECK_INT(sd_state_admit(st, &a, 0, &released), SL_ADMIT_TEMPFAIL);
  sd_state_recount(st);
  CHECK_INT(sd_state_live(st, &a), 0);
  uint32_t newer;
  CHECK_INT(sd_state_admit(st, &a, 0, &newer),
            SL_ADMIT_ACCEPT); /* before the hold */
  sd_state_hold(st, &a, 0, &kept);
  sd_state_hold(st, &a, 0, &kept);  /* twice: counted once */
  sd_state_hold(st, &a, 0, &newer); /* admitted after the recount: already in */
  CHECK_INT(sd_state_live(st, &a), 2);
  sd_state_release(st, &a, dead1); /* never held again: not in the counts */
  CHECK_INT(sd_state_live(st, &a), 2);
  sd_state_release(st, &a, kept);
  sd_state_release(st, &a, newer);
  CHECK_INT(sd_state_live(st, &a), 0);
  sd_state_free(st);
}

int main(void) {
  SL_RUN(test_shared_across_processes);
  SL_RUN(test_configure_keeps_counts);
  SL_RUN(test_recount);
  return sl_test_summary();
}
