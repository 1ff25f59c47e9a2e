/*
 * sd_redis_test.c: the Redis state backend against a real redis-server
 * (Debian's, started here on a free loopback port; the test is skipped,
 * exit 77, when it is not installed).
 *
 * Two backend objects stand for two sluiced instances, each with its own
 * connection and loop: the concurrency limit holds across them, a release
 * on one frees a slot for the other, a screening pass recorded by one is
 * seen by the other, greylisting triplets live through postgrey's steps,
 * and with the server gone every operation answers at once with the local
 * verdict.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sd_loop.h"
#include "sd_metrics.h"
#include "sd_state.h"
#include "sl_test.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static pid_t redis_pid;
static char target[64];

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &l);
  close(fd);
  return ntohs(a.sin_port);
}

static void start_redis(int port) {
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  redis_pid = fork();
  if (redis_pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(REDIS_SERVER, REDIS_SERVER, "--port", p, "--bind", "127.0.0.1",
          "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir",
          "/tmp", "--loglevel", "warning", (char *)NULL);
    _exit(127);
  }
}

static void stop_redis(void) {
  if (redis_pid > 0) {
    kill(redis_pid, SIGTERM);
    waitpid(redis_pid, NULL, 0);
    redis_pid = 0;
  }
}

typedef struct inst {
  sd_loop *loop;
  sd_state *st;
} inst;

/* seed: the worker's random seed, which names its leases (two instances
   in one test process need different ones, as different processes have). */
static inst make(const char *prefix, uint64_t seed) {
  inst in;
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 256;
  c.concurrency_max = 2;
  /* A budget far above any loopback answer on a loaded machine: this test
     is about what is shared, not about the budget (sd_state_test is). */
  sd_state_config sc = {1024, target, 3 * SL_SEC, prefix, 5};
  char err[200];
  in.loop = sd_loop_new();
  in.st = sd_state_redis_new(&c, &sc, err, sizeof err);
  CHECK(in.st != NULL && in.loop != NULL);
  CHECK_INT(sd_state_attach(in.st, in.loop, 0, seed), 0);
  return in;
}

static void drop(inst *in) {
  sd_state_attach(in->st, NULL, 0, 0);
  sd_state_free(in->st);
  sd_loop_free(in->loop);
}

/* Runs both loops until *done (at most about 5 s), or without done for
   about 0.3 s (what was queued is sent and answered). */
static void spin(inst *a, inst *b, const int *done) {
  for (int i = 0; i < (done ? 1000 : 60) && !(done && *done); i++) {
    sd_loop_once(a->loop, 5);
    if (b)
      sd_loop_once(b->loop, 5);
  }
}

typedef struct answer {
  int done;
  sd_admit_result adm;
  sd_grey_result grey;
} answer;

static void on_admit(void *ctx, const sd_admit_result *r) {
  answer *a = ctx;
  a->adm = *r;
  a->done = 1;
}

static void on_grey(void *ctx, const sd_grey_result *r) {
  answer *a = ctx;
  a->grey = *r;
  a->done = 1;
}

static sd_admit_result admit(inst *in, const sl_addr *addr,
                             sd_state_ticket *t) {
  answer a = {0};
  sd_state_req req;
  if (sd_state_admit(in->st, addr, sd_loop_now(in->loop), t, on_admit, &a,
                     &a.adm, &req) == SD_STATE_DONE)
    return a.adm;
  spin(in, NULL, &a.done);
  CHECK(a.done);
  return a.adm;
}

static sd_grey_result grey(inst *in, const char *client, const char *triplet) {
  sd_grey_params p = {1, 10, 100, 2};
  answer a = {0};
  sd_state_req req;
  if (sd_state_grey_check(in->st, client, triplet, &p, on_grey, &a, &a.grey,
                          &req) == SD_STATE_DONE)
    return a.grey;
  spin(in, NULL, &a.done);
  CHECK(a.done);
  return a.grey;
}

static sl_addr v4(uint8_t last) {
  sl_addr a;
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET;
  a.bytes[0] = 198;
  a.bytes[1] = 51;
  a.bytes[2] = 100;
  a.bytes[3] = last;
  return a;
}

static void test_shared(void) {
  inst a = make("t1:", 42), b = make("t1:", 43);
  spin(&a, &b, NULL); /* both connect and load their scripts */
  sl_addr x = v4(1);
  sd_state_ticket t1, t2, t3;
  sd_admit_result r = admit(&a, &x, &t1);
  CHECK_INT(r.admission, SL_ADMIT_ACCEPT);
  CHECK_INT(r.shared, 1);
  CHECK_INT(admit(&b, &x, &t2).admission, SL_ADMIT_ACCEPT);
  /* the third session, on either instance, is over the shared limit of 2
     though each instance's own table holds one */
  r = admit(&a, &x, &t3);
  CHECK_INT(r.admission, SL_ADMIT_TEMPFAIL);
  CHECK_INT(r.shared, 1);
  CHECK_INT(sd_state_live(a.st, &x), 1);
  sd_state_release(b.st, &x, &t2);
  spin(&a, &b, NULL);
  CHECK_INT(admit(&a, &x, &t3).admission, SL_ADMIT_ACCEPT);
  /* a pass recorded by one is seen by the other */
  sl_addr y = v4(2);
  sd_state_ticket ty;
  CHECK_INT(admit(&b, &y, &ty).passed_before, 0);
  sd_state_screen_pass(a.st, &y, 60);
  spin(&a, &b, NULL);
  CHECK_INT(admit(&b, &y, &ty).passed_before, 1);
  /* greylisting through both */
  sd_grey_result g = grey(&a, "198.51.100.0/24", "s|r");
  CHECK_INT(g.verdict, SD_GREY_NEW);
  CHECK_INT(g.shared, 1);
  CHECK_INT(grey(&b, "198.51.100.0/24", "s|r").verdict, SD_GREY_EARLY);
  sleep(2);
  g = grey(&b, "198.51.100.0/24", "s|r");
  CHECK_INT(g.verdict, SD_GREY_PASS);
  CHECK_INT(g.passes, 1);
  CHECK_INT(grey(&a, "198.51.100.0/24", "s|r").verdict, SD_GREY_PASS);
  CHECK_INT(grey(&a, "198.51.100.0/24", "s2|r").verdict, SD_GREY_NEW);
  sleep(2);
  CHECK_INT(grey(&a, "198.51.100.0/24", "s2|r").passes, 2);
  CHECK_INT(grey(&b, "198.51.100.0/24", "never|seen").verdict, SD_GREY_ALLOWED);
  /* the server gone: local verdicts at once, greylisting unknown */
  stop_redis();
  spin(&a, &b, NULL);
  sl_addr z = v4(3);
  sd_state_ticket tz;
  answer an = {0};
  sd_state_req req;
  CHECK_INT(sd_state_admit(a.st, &z, sd_loop_now(a.loop), &tz, on_admit, &an,
                           &an.adm, &req),
            SD_STATE_DONE);
  CHECK_INT(an.adm.admission, SL_ADMIT_ACCEPT);
  CHECK_INT(an.adm.shared, 0);
  CHECK_INT(grey(&a, "c", "t").verdict, SD_GREY_UNKNOWN);
  drop(&a);
  drop(&b);
}

int main(void) {
  if (access(REDIS_SERVER, X_OK) != 0) {
    printf("redis-server not installed: skipped\n");
    return 77;
  }
  sd_metrics_init();
  int port = free_port();
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", port);
  start_redis(port);
  /* ready when it accepts a connection (at most 10 s) */
  for (int i = 0; i < 200; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int up = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (up)
      break;
    usleep(50000);
  }
  SL_RUN(test_shared);
  stop_redis();
  return sl_test_summary();
}
