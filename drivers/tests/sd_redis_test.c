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
 *
 * Across machines: servers with requirepass, with an ACL user, and with
 * TLS only (certificates made here by the openssl CLI): the right password
 * or certificate shares state; a wrong password, a missing AUTH, a wrong
 * CA or name gives local verdicts at once and is counted.
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

/* Ready when it accepts a connection (at most 10 s). */
static void wait_port(int port) {
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
      return;
    usleep(50000);
  }
}

/* extra: more redis-server arguments, NULL-terminated (or NULL); port 0:
   extra has the ports (the caller waits). */
static void start_redis_with(int port, const char *const *extra) {
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *argv[40] = {REDIS_SERVER, "--port",      p,        "--bind",
                          "127.0.0.1",  "--save",      "",       "--appendonly",
                          "no",         "--daemonize", "no",     "--dir",
                          "/tmp",       "--loglevel",  "warning"};
  size_t n = 15;
  for (size_t i = 0; extra && extra[i] && n + 1 < 40; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  redis_pid = fork();
  if (redis_pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
    execv(REDIS_SERVER, (char *const *)argv);
#pragma GCC diagnostic pop
    _exit(127);
  }
  if (port)
    wait_port(port);
}

static void start_redis(int port) { start_redis_with(port, NULL); }

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
/* sc: AUTH and TLS settings (redis, prefix and timers are filled here). */
static inst make_with(const char *prefix, uint64_t seed, sd_state_config sc) {
  inst in;
  sl_ratelim_config c;
  sl_ratelim_config_default(&c);
  c.entries = 256;
  c.concurrency_max = 2;
  sc.kv_entries = 1024;
  sc.redis = target;
  /* A budget far above any loopback answer on a loaded machine: this test
     is about what is shared, not about the budget (sd_state_test is). */
  sc.redis_timeout = 3 * SL_SEC;
  sc.redis_prefix = prefix;
  sc.lease_s = 5;
  char err[200] = "";
  in.loop = sd_loop_new();
  in.st = sd_state_redis_new(&c, &sc, err, sizeof err);
  if (in.st == NULL)
    fprintf(stderr, "sd_state_redis_new: %s\n", err);
  CHECK(in.st != NULL && in.loop != NULL);
  CHECK_INT(sd_state_attach(in.st, in.loop, 0, seed), 0);
  return in;
}

static inst make(const char *prefix, uint64_t seed) {
  return make_with(prefix, seed, (sd_state_config){0});
}

/* In a worker's order: detach, the loop (its deferred flushes run on a
   detached backend), then the backend. */
static void drop(inst *in) {
  sd_state_attach(in->st, NULL, 0, 0);
  sd_loop_free(in->loop);
  sd_state_free(in->st);
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

/* A fresh admission of a new address: whether Redis answered it. */
static int shares(inst *in, uint8_t last) {
  sl_addr x = v4(last);
  sd_state_ticket t;
  sd_admit_result r = admit(in, &x, &t);
  sd_state_release(in->st, &x, &t);
  return r.shared;
}

/* Connection refused for AUTH or TLS: the admission is answered at once
   (never pending: nothing waits for a connection that is not ready), with
   the local verdict, and the refusal was counted. */
static void refused(sd_state_config sc, enum sd_counter counter) {
  uint64_t before = sd_m->c[counter];
  inst a = make_with("t2:", 44, sc);
  spin(&a, NULL, NULL);
  sl_addr x = v4(9);
  sd_state_ticket t;
  answer an = {0};
  sd_state_req req;
  CHECK_INT(sd_state_admit(a.st, &x, sd_loop_now(a.loop), &t, on_admit, &an,
                           &an.adm, &req),
            SD_STATE_DONE);
  CHECK_INT(an.adm.admission, SL_ADMIT_ACCEPT);
  CHECK_INT(an.adm.shared, 0);
  CHECK(sd_m->c[counter] > before);
  drop(&a);
}

static void test_auth(void) {
  int port = free_port();
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", port);
  /* requirepass for the default user, and an ACL user limited to what the
     backend runs (Redis's "user" directive, as in redis.conf) */
  const char *extra[] = {"--requirepass",
                         "default secret",
                         "--user",
                         "sluice",
                         "on",
                         ">acl secret",
                         "resetchannels",
                         "~t2:*",
                         "+evalsha",
                         "+script|load",
                         "+zrem",
                         "+set",
                         "+time",
                         "+zadd",
                         "+zcard",
                         "+zremrangebyscore",
                         "+zremrangebyrank",
                         "+pexpire",
                         "+expire",
                         "+exists",
                         "+get",
                         "+hmget",
                         "+hset",
                         "+incr",
                         NULL};
  start_redis_with(port, extra);
  inst a =
      make_with("t2:", 42, (sd_state_config){.password = "default secret"});
  inst b = make_with(
      "t2:", 43,
      (sd_state_config){.username = "sluice", .password = "acl secret"});
  spin(&a, &b, NULL);
  CHECK_INT(shares(&a, 20), 1);
  CHECK_INT(shares(&b, 21), 1);
  /* the limit is shared between the default user and the ACL user */
  sl_addr x = v4(22);
  sd_state_ticket t1, t2, t3;
  CHECK_INT(admit(&a, &x, &t1).admission, SL_ADMIT_ACCEPT);
  CHECK_INT(admit(&b, &x, &t2).admission, SL_ADMIT_ACCEPT);
  CHECK_INT(admit(&a, &x, &t3).admission, SL_ADMIT_TEMPFAIL);
  /* the ACL above (README) covers greylisting too */
  CHECK_INT(grey(&b, "c", "t").verdict, SD_GREY_NEW);
  CHECK_INT(sd_m->c[SD_C_STATE_ERROR], 0);
  drop(&a);
  drop(&b);
  refused((sd_state_config){.password = "wrong"}, SD_C_STATE_AUTH_FAILED);
  refused((sd_state_config){.username = "sluice", .password = "default secret"},
          SD_C_STATE_AUTH_FAILED);
  /* no AUTH at all: Redis answers NOAUTH, counted the same way */
  refused((sd_state_config){0}, SD_C_STATE_AUTH_FAILED);
  stop_redis();
}

static void sh(const char *cmd) {
  int rc = system(cmd);
  CHECK_INT(rc, 0);
}

static char dir[] = "/tmp/sd_redis_test.XXXXXX";

static void test_tls(void) {
  char cmd[2048];
  /* a CA, Redis's certificate for 127.0.0.1 and redis.test, a client
     certificate, and a second CA that signed none of them */
  snprintf(
      cmd, sizeof cmd,
      "set -e; cd %s; o='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes';"
      "for ca in ca other; do openssl req -x509 $o -keyout $ca.key -out "
      "$ca.pem -days 2 -subj /CN=$ca -addext basicConstraints=critical,CA:TRUE "
      "2>/dev/null; done;"
      "printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\n' > srv.ext;"
      "printf 'extendedKeyUsage=clientAuth\n' > cli.ext;"
      "for l in srv cli; do openssl req -new $o -keyout $l.key -out $l.csr "
      "-subj /CN=$l 2>/dev/null; openssl x509 -req -in $l.csr -CA ca.pem "
      "-CAkey ca.key -CAcreateserial -out $l.pem -days 2 -extfile $l.ext "
      "2>/dev/null; done",
      dir);
  sh(cmd);
  char cert[256], key[256], ca[256], ccert[256], ckey[256], other[256];
  snprintf(cert, sizeof cert, "%s/srv.pem", dir);
  snprintf(key, sizeof key, "%s/srv.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  snprintf(ccert, sizeof ccert, "%s/cli.pem", dir);
  snprintf(ckey, sizeof ckey, "%s/cli.key", dir);
  snprintf(other, sizeof other, "%s/other.pem", dir);
  int port = free_port();
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", port);
  /* TLS only (port 0: no plaintext port), client certificates required */
  const char *extra[] = {"--port",
                         "0",
                         "--tls-port",
                         ps,
                         "--tls-cert-file",
                         cert,
                         "--tls-key-file",
                         key,
                         "--tls-ca-cert-file",
                         ca,
                         "--requirepass",
                         "tls secret",
                         NULL};
  start_redis_with(0, extra);
  wait_port(port);
  sd_state_config ok = {.password = "tls secret",
                        .tls = 1,
                        .tls_ca = ca,
                        .tls_cert = ccert,
                        .tls_key = ckey};
  char err[300];
  CHECK_INT(sd_state_redis_check(&ok, err, sizeof err), 0);
  inst a = make_with("t3:", 42, ok);
  sd_state_config named = ok;
  named.tls_name = "redis.test";
  inst b = make_with("t3:", 43, named);
  spin(&a, &b, NULL);
  CHECK_INT(shares(&a, 30), 1);
  CHECK_INT(shares(&b, 31), 1);
  sl_addr x = v4(32);
  sd_state_ticket t1, t2, t3;
  CHECK_INT(admit(&a, &x, &t1).admission, SL_ADMIT_ACCEPT);
  CHECK_INT(admit(&b, &x, &t2).admission, SL_ADMIT_ACCEPT);
  CHECK_INT(admit(&b, &x, &t3).admission, SL_ADMIT_TEMPFAIL);
  drop(&a);
  drop(&b);
  sd_state_config bad = ok;
  bad.tls_ca = other;
  refused(bad, SD_C_STATE_TLS_FAILED);
  bad = ok;
  bad.tls_name = "other.test";
  refused(bad, SD_C_STATE_TLS_FAILED);
  /* Redis wants a client certificate: with TLS 1.3 its refusal comes
     after the handshake, at the first read, and counts the same */
  bad = ok;
  bad.tls_cert = bad.tls_key = NULL;
  refused(bad, SD_C_STATE_TLS_FAILED);
  uint64_t ready = sd_m->c[SD_C_STATE_CONNECTS];
  inst c;
  /* plaintext to the TLS port: never ready, answered locally */
  bad = ok;
  bad.tls = 0;
  bad.tls_ca = bad.tls_cert = bad.tls_key = NULL;
  c = make_with("t3:", 46, bad);
  spin(&c, NULL, NULL);
  CHECK_INT(shares(&c, 34), 0);
  CHECK_INT(sd_m->c[SD_C_STATE_CONNECTS], ready);
  drop(&c);
  /* a server that takes the connection and never answers the handshake
     (a listening socket nobody serves): lookups are answered locally
     meanwhile, and after 2 s the attempt is given up and made again */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in la;
  memset(&la, 0, sizeof la);
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t ll = sizeof la;
  CHECK_INT(bind(lfd, (struct sockaddr *)&la, sizeof la), 0);
  CHECK_INT(listen(lfd, 8), 0);
  CHECK_INT(getsockname(lfd, (struct sockaddr *)&la, &ll), 0);
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", ntohs(la.sin_port));
  c = make_with("t3:", 47, ok);
  int attempts = 0, held[2];
  uint64_t first = 0;
  for (int i = 0; i < 800 && attempts < 2; i++) {
    sd_loop_once(c.loop, 5);
    int afd = accept(lfd, NULL, NULL);
    if (afd < 0)
      continue;
    held[attempts++] = afd; /* kept open and silent */
    if (attempts == 1)
      first = sd_loop_now(c.loop);
    CHECK_INT(shares(&c, 35), 0);
  }
  CHECK_INT(attempts, 2);
  CHECK(sd_loop_now(c.loop) - first >= 2 * SL_SEC);
  while (attempts)
    close(held[--attempts]);
  drop(&c);
  close(lfd);
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", port);
  /* the files are checked as --check-config does */
  bad = ok;
  bad.tls_ca = "/nonexistent/ca.pem";
  CHECK_INT(sd_state_redis_check(&bad, err, sizeof err), -1);
  CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
  bad = ok;
  bad.tls_key = ca; /* not the certificate's key */
  CHECK_INT(sd_state_redis_check(&bad, err, sizeof err), -1);
  stop_redis();
}

static void test_password_file(void) {
  char path[256], err[300];
  snprintf(path, sizeof path, "%s/pw", dir);
  sd_state_config sc = {.password_file = path};
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("s3cret\n", f);
  fclose(f);
  CHECK_INT(sd_state_redis_check(&sc, err, sizeof err), 0);
  f = fopen(path, "w");
  fputs("two\nlines\n", f);
  fclose(f);
  CHECK_INT(sd_state_redis_check(&sc, err, sizeof err), -1);
  CHECK(strstr(err, "one line") != NULL);
  f = fopen(path, "w");
  fclose(f);
  CHECK_INT(sd_state_redis_check(&sc, err, sizeof err), -1);
  CHECK(strstr(err, "empty") != NULL);
  unlink(path);
  CHECK_INT(sd_state_redis_check(&sc, err, sizeof err), -1);
  CHECK(strstr(err, "No such file") != NULL);
  /* the file's password is what AUTH sends */
  int port = free_port();
  snprintf(target, sizeof target, "inet:127.0.0.1:%d", port);
  const char *extra[] = {"--requirepass", "from a file", NULL};
  start_redis_with(port, extra);
  f = fopen(path, "w");
  fputs("from a file\r\n", f);
  fclose(f);
  inst a = make_with("t4:", 42, sc);
  spin(&a, NULL, NULL);
  CHECK_INT(shares(&a, 40), 1);
  drop(&a);
  unlink(path);
  stop_redis();
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
  SL_RUN(test_shared);
  stop_redis();
  CHECK(mkdtemp(dir) != NULL);
  SL_RUN(test_auth);
  SL_RUN(test_password_file);
  if (system("openssl version > /dev/null 2>&1") == 0)
    SL_RUN(test_tls);
  else
    printf("openssl CLI not installed: TLS part skipped\n");
  char rm[300];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  stop_redis();
  return sl_test_summary();
}
