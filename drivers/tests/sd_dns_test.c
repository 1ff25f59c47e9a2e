/*
 * sd_dns_test.c: sd_dns against a real unbound on a free loopback port,
 * driven by an epoll loop like the proxy's.
 *
 * unbound serves a static zone dnsbl.test. from a config written into a
 * temporary directory; a UDP socket that is bound and never read plays the
 * server that never answers.  Without /usr/sbin/unbound the test says why and
 * passes with nothing run.
 */
#include "sd_dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sl_test.h"

#define UNBOUND "/usr/sbin/unbound"

static char dir[64];
static char server[32]; /* "127.0.0.1:port" of unbound */
static pid_t unbound_pid = -1;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A UDP socket bound to a free loopback port; *port gets the port. */
static int udp_bound(unsigned short *port) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

/* A port free for UDP and TCP on 127.0.0.1 (unbound binds both). */
static int free_port(unsigned short *port) {
  for (int i = 0; i < 20; i++) {
    struct sockaddr_in sa;
    int u = udp_bound(port), t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(*port);
    ok = u >= 0 && t >= 0 && bind(t, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (u >= 0)
      close(u);
    if (t >= 0)
      close(t);
    if (ok)
      return 0;
  }
  return -1;
}

/* One hand-made DNS query for 2.0.0.127.dnsbl.test A; 1 once any answer
 * with our id comes back within wait_ms. */
static int probe(unsigned short port, int wait_ms) {
  static const unsigned char q[] = {
      0x51, 0x7e, 0x01, 0x00, 0,   1,   0,   0,   0,   0, 0,   0,   1,
      '2',  1,    '0',  1,    '0', 3,   '1', '2', '7', 6, 'd', 'n', 's',
      'b',  'l',  4,    't',  'e', 's', 't', 0,   0,   1, 0,   1};
  unsigned char buf[512];
  struct sockaddr_in sa;
  struct pollfd pf;
  unsigned short p0;
  int fd = udp_bound(&p0), got = 0;
  if (fd < 0)
    return 0;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (sendto(fd, q, sizeof q, 0, (struct sockaddr *)&sa, sizeof sa) ==
      (ssize_t)sizeof q) {
    pf = (struct pollfd){fd, POLLIN, 0};
    if (poll(&pf, 1, wait_ms) == 1) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      got = n >= 12 && buf[0] == 0x51 && buf[1] == 0x7e;
    }
  }
  close(fd);
  return got;
}

static int start_unbound(void) {
  char conf[128], log[128];
  unsigned short port;
  FILE *f;
  if (free_port(&port) != 0)
    return -1;
  snprintf(server, sizeof server, "127.0.0.1:%u", port);
  snprintf(conf, sizeof conf, "%s/unbound.conf", dir);
  snprintf(log, sizeof log, "%s/unbound.log", dir);
  f = fopen(conf, "w");
  if (f == NULL)
    return -1;
  fprintf(f,
          "server:\n"
          "  interface: 127.0.0.1\n  port: %u\n  do-ip6: no\n"
          "  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n"
          "  directory: \"%s\"\n  pidfile: \"%s/unbound.pid\"\n"
          "  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n"
          "  num-threads: 1\n  so-reuseport: no\n"
          "  module-config: \"iterator\"\n"
          "  access-control: 127.0.0.0/8 allow\n"
          "  local-zone: \"dnsbl.test.\" static\n"
          "  local-data: \"2.0.0.127.dnsbl.test. A 127.0.0.2\"\n"
          "  local-data: \"2.0.0.127.dnsbl.test. A 127.0.0.10\"\n"
          "  local-data: \"3.0.0.127.dnsbl.test. TXT no-A-here\"\n"
          "remote-control:\n  control-enable: no\n",
          port, dir, dir);
  if (fclose(f) != 0)
    return -1;
  unbound_pid = fork();
  if (unbound_pid < 0)
    return -1;
  if (unbound_pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    /* Never outlive the test, even if it crashes. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execl(UNBOUND, "unbound", "-d", "-c", conf, (char *)NULL);
    _exit(127);
  }
  for (double end = now_s() + 10; now_s() < end;) {
    int st;
    if (waitpid(unbound_pid, &st, WNOHANG) == unbound_pid) {
      unbound_pid = -1;
      fprintf(stderr, "unbound exited early, see %s\n", log);
      return -1;
    }
    if (probe(port, 100))
      return 0;
  }
  fprintf(stderr, "unbound does not answer on %s, see %s\n", server, log);
  return -1;
}

static void stop_unbound(void) {
  int st;
  if (unbound_pid <= 0)
    return;
  kill(unbound_pid, SIGTERM);
  for (int i = 0; i < 50; i++) {
    if (waitpid(unbound_pid, &st, WNOHANG) == unbound_pid) {
      unbound_pid = -1;
      return;
    }
    usleep(50000);
  }
  kill(unbound_pid, SIGKILL);
  waitpid(unbound_pid, &st, 0);
  unbound_pid = -1;
}

/* ---- an epoll loop like the proxy's ----------------------------------- */

struct loop {
  int ep;
  int fds[64];
  int nfds;
  int bad; /* sock callback misuse seen */
};

static void loop_sock_cb(void *arg, int fd, int want_read, int want_write) {
  struct loop *l = arg;
  struct epoll_event ev;
  int i;
  for (i = 0; i < l->nfds && l->fds[i] != fd; i++) {
  }
  memset(&ev, 0, sizeof ev);
  ev.data.fd = fd;
  ev.events = (want_read ? EPOLLIN : 0u) | (want_write ? EPOLLOUT : 0u);
  if (!want_read && !want_write) {
    if (i == l->nfds || epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL) != 0)
      l->bad = 1;
    if (i < l->nfds)
      l->fds[i] = l->fds[--l->nfds];
  } else if (i < l->nfds) {
    if (epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) != 0)
      l->bad = 1;
  } else if (l->nfds == 64 || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    l->bad = 1;
  } else {
    l->fds[l->nfds++] = fd;
  }
}

static sd_dns *dns_new(struct loop *l, const char *servers, int timeout_ms,
                       int tries) {
  char err[256];
  sd_dns *d = sd_dns_new(servers, timeout_ms, tries, err, sizeof err);
  memset(l, 0, sizeof *l);
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  if (d == NULL)
    fprintf(stderr, "sd_dns_new(%s): %s\n", servers, err);
  else
    sd_dns_set_sock_cb(d, loop_sock_cb, l);
  return d;
}

/* Runs the loop until nothing is pending or max_s has passed. */
static void run(sd_dns *d, struct loop *l, double max_s) {
  double end = now_s() + max_s;
  for (int i = 0; i < 100000 && sd_dns_pending(d) > 0 && now_s() < end; i++) {
    struct epoll_event evs[16];
    int t = sd_dns_next_timeout_ms(d, 1000);
    int n = epoll_wait(l->ep, evs, 16, t);
    for (int k = 0; k < n; k++)
      sd_dns_process_fd(d, evs[k].data.fd,
                        (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0,
                        (evs[k].events & EPOLLOUT) != 0);
    if (n == 0)
      sd_dns_process_timeouts(d);
  }
}

static void loop_close(struct loop *l) {
  if (l->ep >= 0)
    close(l->ep);
}

struct result {
  int called, status;
  uint32_t a[8];
  size_t n;
  double at;
  sd_dns *chain; /* if set, the callback starts a query for 2.0.0.127 */
  struct result *chained;
};

static int in_query; /* set while sd_dns_query_a runs */

static int query(sd_dns *d, const char *name, struct result *r);

static void on_result(void *arg, int status, const uint32_t *a, size_t n) {
  struct result *r = arg;
  CHECK(!in_query); /* never called back from inside sd_dns_query_a */
  r->called++;
  r->status = status;
  r->n = n;
  r->at = now_s();
  for (size_t i = 0; i < n && i < 8; i++)
    r->a[i] = a[i];
  if (r->chain != NULL)
    CHECK_INT(query(r->chain, "2.0.0.127.dnsbl.test", r->chained), 0);
}

static int query(sd_dns *d, const char *name, struct result *r) {
  int rc;
  in_query++;
  rc = sd_dns_query_a(d, name, on_result, r);
  in_query--;
  return rc;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- tests ------------------------------------------------------------- */

static void test_listed_and_unlisted(void) {
  struct loop l;
  struct result listed = {0}, unlisted = {0}, nodata = {0};
  sd_dns *d = dns_new(&l, server, 1000, 2);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  CHECK_INT(query(d, "2.0.0.127.dnsbl.test", &listed), 0);
  CHECK_INT(query(d, "9.0.0.127.dnsbl.test", &unlisted), 0);
  CHECK_INT(query(d, "3.0.0.127.dnsbl.test", &nodata), 0);
  CHECK_INT(sd_dns_pending(d), 3);
  CHECK_INT(listed.called, 0); /* only from the loop */
  CHECK(l.nfds > 0);           /* the loop was told what to watch */
  run(d, &l, 5);
  CHECK_INT(sd_dns_pending(d), 0);
  CHECK_INT(listed.called, 1);
  CHECK_INT(listed.status, SD_DNS_OK);
  CHECK_INT(listed.n, 2);
  qsort(listed.a, listed.n, sizeof listed.a[0], cmp_u32);
  CHECK_INT(listed.a[0], 0x7f000002);
  CHECK_INT(listed.a[1], 0x7f00000a);
  CHECK_INT(unlisted.called, 1);
  CHECK_INT(unlisted.status, SD_DNS_NOTFOUND);
  CHECK_INT(unlisted.n, 0);
  CHECK_INT(nodata.called, 1);
  CHECK_INT(nodata.status, SD_DNS_NOTFOUND);
  CHECK_INT(sd_dns_next_timeout_ms(d, -1), -1);
  CHECK_INT(sd_dns_next_timeout_ms(d, 250), 250);
  sd_dns_free(d);
  CHECK_INT(l.nfds, 0); /* every socket was unwatched */
  CHECK_INT(l.bad, 0);
  loop_close(&l);
}

static void test_chained_query(void) {
  struct loop l;
  struct result second = {0}, first = {0};
  sd_dns *d = dns_new(&l, server, 1000, 2);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  first.chain = d;
  first.chained = &second;
  CHECK_INT(query(d, "7.0.0.127.dnsbl.test", &first), 0);
  run(d, &l, 5);
  CHECK_INT(first.called, 1);
  CHECK_INT(first.status, SD_DNS_NOTFOUND);
  CHECK_INT(second.called, 1);
  CHECK_INT(second.status, SD_DNS_OK);
  sd_dns_free(d);
  loop_close(&l);
}

static void test_many_concurrent(void) {
  struct loop l;
  static struct result r[100];
  char name[64];
  sd_dns *d = dns_new(&l, server, 2000, 2);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  memset(r, 0, sizeof r);
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "%d.0.0.127.dnsbl.test", i);
    CHECK_INT(query(d, name, &r[i]), 0);
  }
  CHECK_INT(sd_dns_pending(d), 100);
  run(d, &l, 10);
  CHECK_INT(sd_dns_pending(d), 0);
  for (int i = 0; i < 100; i++) {
    CHECK_INT(r[i].called, 1);
    CHECK_INT(r[i].status, i == 2 ? SD_DNS_OK : SD_DNS_NOTFOUND);
  }
  CHECK_INT(r[2].n, 2);
  sd_dns_free(d);
  CHECK_INT(l.bad, 0);
  loop_close(&l);
}

static void test_timeout(void) {
  struct loop l;
  struct result r = {0};
  unsigned short port;
  char srv[32];
  int silent = udp_bound(&port), t;
  double start;
  sd_dns *d;
  CHECK(silent >= 0);
  snprintf(srv, sizeof srv, "127.0.0.1:%u", port);
  d = dns_new(&l, srv, 300, 1);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  start = now_s();
  CHECK_INT(query(d, "2.0.0.127.dnsbl.test", &r), 0);
  t = sd_dns_next_timeout_ms(d, 10000);
  CHECK(t > 0 && t <= 300);
  CHECK_INT(sd_dns_next_timeout_ms(d, 50), 50);
  run(d, &l, 5);
  CHECK_INT(r.called, 1);
  CHECK_INT(r.status, SD_DNS_TIMEOUT);
  CHECK(r.at - start >= 0.29);
  CHECK(r.at - start < 1.5);
  sd_dns_free(d);
  loop_close(&l);
  close(silent);
}

/* Nothing listens: ICMP port unreachable ends the query early, as an error
 * rather than a timeout. */
static void test_refused(void) {
  struct loop l;
  struct result r = {0};
  unsigned short port;
  char srv[32];
  int fd = udp_bound(&port);
  double start;
  sd_dns *d;
  CHECK(fd >= 0);
  close(fd);
  snprintf(srv, sizeof srv, "127.0.0.1:%u", port);
  d = dns_new(&l, srv, 2000, 1);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  start = now_s();
  CHECK_INT(query(d, "2.0.0.127.dnsbl.test", &r), 0);
  run(d, &l, 5);
  CHECK_INT(r.called, 1);
  CHECK_INT(r.status, SD_DNS_ERROR);
  CHECK(r.at - start < 1.0);
  sd_dns_free(d);
  loop_close(&l);
}

static void test_free_cancels(void) {
  struct loop l;
  struct result r[3];
  unsigned short port;
  char srv[32];
  int silent = udp_bound(&port);
  sd_dns *d;
  memset(r, 0, sizeof r);
  CHECK(silent >= 0);
  snprintf(srv, sizeof srv, "127.0.0.1:%u", port);
  d = dns_new(&l, srv, 5000, 3);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  for (int i = 0; i < 3; i++)
    CHECK_INT(query(d, "2.0.0.127.dnsbl.test", &r[i]), 0);
  /* One loop turn: the queries are out, nothing can answer. */
  {
    struct epoll_event ev;
    if (epoll_wait(l.ep, &ev, 1, 20) == 1)
      sd_dns_process_fd(d, ev.data.fd, 1, 0);
  }
  CHECK_INT(sd_dns_pending(d), 3);
  CHECK(l.nfds == 1);
  sd_dns_free(d);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(r[i].called, 1);
    CHECK_INT(r[i].status, SD_DNS_CANCELLED);
  }
  CHECK_INT(l.nfds, 0);
  CHECK_INT(l.bad, 0);
  loop_close(&l);
  close(silent);
}

static void test_bad_input(void) {
  struct loop l;
  struct result r = {0};
  char err[256], longname[400];
  sd_dns *d;
  CHECK(sd_dns_new("not a server list", 500, 1, err, sizeof err) == NULL);
  CHECK(strstr(err, "not a server list") != NULL);
  CHECK(sd_dns_new("127.0.0.1", 0, 1, err, sizeof err) == NULL);
  CHECK(err[0] != '\0');
  CHECK(sd_dns_new("127.0.0.1", 500, 0, err, sizeof err) == NULL);
  CHECK(sd_dns_new("", 500, 1, err, sizeof err) == NULL);
  /* IPv6 and several servers parse; nothing is sent. */
  d = sd_dns_new("[::1]:53,127.0.0.1", 500, 1, err, sizeof err);
  CHECK(d != NULL);
  sd_dns_free(d);
  d = dns_new(&l, server, 500, 1);
  CHECK(d != NULL);
  if (d == NULL)
    return;
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  longname[63] = '.'; /* labels fine, the name is far over 255 */
  CHECK_INT(query(d, longname, &r), -1);
  CHECK_INT(query(d, "", &r), -1);
  CHECK_INT(sd_dns_pending(d), 0);
  run(d, &l, 0.2);
  CHECK_INT(r.called, 0); /* -1 means the callback never runs */
  sd_dns_free(d);
  CHECK_INT(r.called, 0);
  loop_close(&l);
}

int main(void) {
  int rc;
  if (access(UNBOUND, X_OK) != 0) {
    printf("skipped: %s not found (apt-get install unbound)\n", UNBOUND);
    return sl_test_summary();
  }
  snprintf(dir, sizeof dir, "/tmp/sd_dns_test.XXXXXX");
  if (mkdtemp(dir) == NULL || start_unbound() != 0) {
    fprintf(stderr, "cannot start unbound in %s\n", dir);
    stop_unbound();
    return 1;
  }
  SL_RUN(test_listed_and_unlisted);
  SL_RUN(test_chained_query);
  SL_RUN(test_many_concurrent);
  SL_RUN(test_timeout);
  SL_RUN(test_refused);
  SL_RUN(test_free_cancels);
  SL_RUN(test_bad_input);
  stop_unbound();
  rc = sl_test_summary();
  if (rc == 0) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", dir);
  }
  return rc;
}
