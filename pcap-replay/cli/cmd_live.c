/*
 * live: the client sessions of captures replayed over TCP against a running
 * SMTP server or proxy, on loopback (or inside a test network namespace)
 * only.  The same client model as sim (sp_script.h anchoring, patience,
 * reactions as captured), timings scaled by --time-scale, many sessions at
 * once through poll(), bounded in count and in total time.  The records are
 * sim's, measured from the client side; times are reported in capture
 * seconds (wall time divided by the time scale).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sp_cli.h"
#include "sp_sim.h"
#include "sp_simopts.h"

#define LIVE_MAX_CONC 4096

typedef struct lsess {
  const sp_script *s;
  int fd, connected, done, gave_up, rejected, stage, eof_sent;
  double t0, last_tx, last_rx, patience, closed_at, end_wait_until;
  size_t wi, units_sent;
  uint64_t woff, csent;
  uint32_t rx, line_len;
  char line4[4];
  double *reply_t, *unit_t;
  const char *note;
  sp_unit_kind gave_up_at;
  sp_result res;
} lsess;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* 1 if addr is loopback. */
static int is_loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
  static const uint8_t v4m[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
    return 1;
  return !memcmp(a->sin6_addr.s6_addr, v4m, 12) && a->sin6_addr.s6_addr[12] == 127;
}

/* 1 if this process runs in another network namespace than PID 1. */
static int in_test_netns(void) {
  char a[128], b[128];
  ssize_t n = readlink("/proc/self/ns/net", a, sizeof a - 1);
  ssize_t m = readlink("/proc/1/ns/net", b, sizeof b - 1);
  if (n <= 0 || m <= 0)
    return 0;
  a[n] = b[m] = '\0';
  return strcmp(a, b) != 0;
}

static int parse_target(const char *text, struct sockaddr_storage *ss,
                        socklen_t *len) {
  char host[128];
  const char *colon = strrchr(text, ':');
  if (!colon || colon == text || strlen(text) >= sizeof host)
    return -1;
  size_t hl = (size_t)(colon - text);
  memcpy(host, text, hl);
  host[hl] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535)
    return -1;
  memset(ss, 0, sizeof *ss);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
      return -1;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    *len = sizeof *a;
    return 0;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
    return -1;
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  *len = sizeof *a;
  return 0;
}

/* The client view of one complete reply (the same rules as sim). */
static void reply_done(lsess *l, uint16_t code, double t, double scale) {
  uint32_t idx = l->rx++;
  const sp_script *s = l->s;
  if (idx < s->nu + 2)
    l->reply_t[idx] = t;
  sp_unit_kind k = idx == 0 ? SP_U_GREETING
                   : idx - 1 < s->nu ? (sp_unit_kind)s->u[idx - 1].kind
                                     : SP_U_OTHER;
  /* delay: the wait beyond the captured wait for this reply */
  double asked = idx == 0 ? l->t0 : idx - 1 < s->nu ? l->unit_t[idx - 1] : t;
  double cap = idx == 0 ? (s->greet_us >= 0 ? (double)s->greet_us / 1e6 : 0)
               : idx - 1 < s->nu && s->u[idx - 1].reply_us >= 0
                   ? (double)(s->u[idx - 1].reply_us - s->u[idx - 1].sent_us) / 1e6
                   : 0;
  double extra = (t - asked) / scale - cap;
  if (extra > 0)
    l->res.delay_s += extra;
  int cls = code / 100;
  if (cls == 2 || cls == 3) {
    int st = k == SP_U_GREETING ? 1 : k == SP_U_HELO ? 2 : k == SP_U_MAIL ? 3
             : k == SP_U_RCPT ? 4 : k == SP_U_DATA ? 5 : 0;
    if (cls == 2 && (k == SP_U_MESSAGE || k == SP_U_BDAT)) {
      st = 6;
      if (!l->res.messages)
        l->res.deliver_s = (t - l->t0) / scale;
      l->res.messages++;
    }
    if (st > l->stage)
      l->stage = st;
  } else if ((cls == 5 && (k == SP_U_GREETING || k == SP_U_MAIL ||
                           k == SP_U_RCPT || k == SP_U_DATA ||
                           k == SP_U_MESSAGE || k == SP_U_BDAT)) ||
             (cls == 4 && k == SP_U_GREETING) || code == 421 || code == 521) {
    l->rejected = 1;
  }
}

static void on_bytes(lsess *l, const uint8_t *p, size_t n, double t, double scale) {
  l->res.bytes_server += n;
  l->last_rx = t;
  for (size_t i = 0; i < n; i++) {
    if (l->line_len < 4)
      l->line4[l->line_len] = (char)p[i];
    l->line_len++;
    if (p[i] != '\n')
      continue;
    uint32_t ll = l->line_len;
    const char *c = l->line4;
    l->line_len = 0;
    if (ll >= 4 && c[0] >= '0' && c[0] <= '9' && c[1] >= '0' && c[1] <= '9' &&
        c[2] >= '0' && c[2] <= '9' && (c[3] == ' ' || c[3] == '\r' || c[3] == '\n'))
      reply_done(l, (uint16_t)((c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0')),
                 t, scale);
  }
}

static int waiting(const lsess *l) {
  if (l->rx >= 1 + l->units_sent)
    return 0;
  return !(l->rx >= 1 && l->rx - 1 < l->s->nu && l->s->u[l->rx - 1].kind == SP_U_QUIT);
}

static void finish(lsess *l, double t, const char *note, int rst) {
  if (l->done)
    return;
  if (l->fd >= 0) {
    if (rst) {
      struct linger lg = {1, 0};
      setsockopt(l->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(l->fd);
    l->fd = -1;
  }
  l->done = 1;
  l->closed_at = t;
  if (!l->note)
    l->note = note;
}

static double anchor(const lsess *l, uint32_t k) {
  return k == 0 ? l->t0 : l->reply_t[k - 1];
}

int sp_cmd_live(int argc, char **argv) {
  static sp_simopts o;
  memset(&o, 0, sizeof o);
  o.cfg.seed = 1;
  static const struct option longopts[] = {
      SP_SIMOPTS_LONG,
      {"connect", required_argument, 0, OPT_CONNECT},
      {"time-scale", required_argument, 0, OPT_TIMESCALE},
      {"concurrency", required_argument, 0, OPT_CONCURRENCY},
      {"time-limit", required_argument, 0, OPT_TIMELIMIT},
      {"netns", no_argument, 0, OPT_NETNS},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *target = NULL;
  double scale = 1.0, limit = 60.0;
  long conc = 100;
  int netns = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
    int r = sp_simopts_option(&o, c, optarg);
    if (r < 0)
      return SP_EXIT_USAGE;
    if (r)
      continue;
    char *end = NULL;
    switch (c) {
    case OPT_CONNECT: target = optarg; break;
    case OPT_TIMESCALE:
      scale = strtod(optarg, &end);
      if (*end || !(scale >= 1e-4 && scale <= 1e4)) {
        fprintf(stderr, "sluice-replay: --time-scale: 0.0001..10000\n");
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_CONCURRENCY:
      conc = strtol(optarg, &end, 10);
      if (*end || conc < 1 || conc > LIVE_MAX_CONC) {
        fprintf(stderr, "sluice-replay: --concurrency: 1..%d\n", LIVE_MAX_CONC);
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_TIMELIMIT:
      limit = strtod(optarg, &end);
      if (*end || !(limit > 0 && limit <= 86400)) {
        fprintf(stderr, "sluice-replay: --time-limit: seconds, 0..86400\n");
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_NETNS: netns = 1; break;
    case 'q': o.quiet = 1; break;
    case 'h':
    default: {
      FILE *f = c == 'h' ? stdout : stderr;
      fprintf(f, "usage: sluice-replay live --connect ADDR:PORT [--time-scale F] "
              "[--concurrency N]\n       [--time-limit S] [--patience MODEL] "
              "[--jsonl FILE] [--csv FILE] [--netns] FILE...\n"
              "Replays the client sessions over TCP against a server on "
              "loopback (or, with\n--netns, any address inside a test network "
              "namespace).  Defaults: scale 1,\nconcurrency 100, time limit 60 "
              "s (wall clock, for the whole run).\n");
      return c == 'h' ? SP_EXIT_OK : SP_EXIT_USAGE;
    }
    }
  }
  struct sockaddr_storage ss;
  socklen_t sslen = 0;
  if (!target || parse_target(target, &ss, &sslen)) {
    fprintf(stderr, "sluice-replay: live needs --connect IP:PORT (IPv6 as [::1]:PORT)\n");
    return SP_EXIT_USAGE;
  }
  if (!is_loopback(&ss) && !(netns && in_test_netns())) {
    fprintf(stderr, "sluice-replay: refusing to connect to %s: live replay only "
            "targets loopback addresses (127.0.0.0/8, ::1), or other addresses "
            "with --netns when running inside a test network namespace\n", target);
    return SP_EXIT_USAGE;
  }
  if (optind >= argc) {
    fprintf(stderr, "sluice-replay: live: no input files\n");
    return SP_EXIT_USAGE;
  }
  int rc = sp_simopts_build(&o, argc - optind, argv + optind);
  if (rc) {
    sp_simopts_free(&o);
    return rc;
  }
  size_t n = o.set.n;
  lsess *ls = calloc(n ? n : 1, sizeof *ls);
  struct pollfd *pf = calloc((size_t)conc, sizeof *pf);
  size_t *pmap = calloc((size_t)conc, sizeof *pmap);
  if (!ls || !pf || !pmap) {
    fprintf(stderr, "sluice-replay: out of memory\n");
    free(ls);
    free(pf);
    free(pmap);
    sp_simopts_free(&o);
    return SP_EXIT_INPUT;
  }
  const sp_patience *pm = &o.pats[0];
  double tstart = now_s(), deadline = tstart + limit;
  size_t next = 0, active = 0, finished = 0;
  int status = SP_EXIT_OK;
  static char label[160];
  snprintf(label, sizeof label, "live:%s", target);
  while (finished < n) {
    double t = now_s();
    /* start sessions */
    while (next < n && active < (size_t)conc && t < deadline) {
      lsess *l = &ls[next];
      l->s = &o.set.v[next];
      l->reply_t = calloc(l->s->nu + 2, sizeof(double));
      l->unit_t = calloc(l->s->nu + 1, sizeof(double));
      l->res.deliver_s = -1;
      l->patience = sp_patience_draw(pm, sp_rng_seed(o.cfg.seed, l->s->source, l->s->session),
                                     l->s->gave_up ? l->s->wait_s : -1.0);
      l->t0 = l->last_tx = l->last_rx = t;
      l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      next++;
      active++;
      if (!l->reply_t || !l->unit_t || l->fd < 0 ||
          (connect(l->fd, (struct sockaddr *)&ss, sslen) && errno != EINPROGRESS)) {
        finish(l, t, "connect-failed", 0);
        l->res.outcome = SP_OUT_ERROR;
        continue;
      }
      int one = 1;
      setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* timers and writes */
    double wake = t + 0.05;
    nfds_t np = 0;
    for (size_t i = 0; i < next; i++) {
      lsess *l = &ls[i];
      if (l->done)
        continue;
      const sp_script *s = l->s;
      if (t >= deadline) {
        finish(l, t, "time-limit", 1);
        l->res.outcome = SP_OUT_ERROR;
        continue;
      }
      if (l->eof_sent) {
        if (t >= l->end_wait_until)
          finish(l, t, l->note ? l->note : "client:fin", 0);
      } else if (l->connected && waiting(l) && !isinf(l->patience)) {
        double base = o.cfg.clock_reply
                          ? (l->rx == 0 ? l->t0 : l->unit_t[l->rx - 1 < s->nu ? l->rx - 1 : 0])
                          : (l->last_tx > l->last_rx ? l->last_tx : l->last_rx);
        double dl = base + l->patience * scale;
        if (t >= dl) {
          l->gave_up = 1;
          l->gave_up_at = l->rx == 0 ? SP_U_GREETING
                          : l->rx - 1 < s->nu ? (sp_unit_kind)s->u[l->rx - 1].kind
                                              : SP_U_OTHER;
          finish(l, t, "client:gave-up", 1);
          continue;
        }
        if (dl < wake)
          wake = dl;
      }
      short ev = POLLIN;
      if (!l->connected)
        ev = POLLOUT;
      else if (!l->eof_sent && l->wi < s->nw && l->rx >= s->w[l->wi].after_replies) {
        double at = anchor(l, s->w[l->wi].after_replies) +
                    (double)s->w[l->wi].think_us / 1e6 * scale;
        if (l->woff || t >= at)
          ev |= POLLOUT;
        else if (at < wake)
          wake = at;
      } else if (!l->eof_sent && l->wi >= s->nw && s->gave_up) {
        /* A captured give-up is not replayed: the patience model decides;
         * with nothing left to send or wait for, the client leaves. */
        if (!waiting(l)) {
          finish(l, t, "client:script-end", 0);
          continue;
        }
      } else if (!l->eof_sent && l->wi >= s->nw && s->end != SP_SEND_SERVER &&
                 l->rx >= s->end_after) {
        double at = anchor(l, s->end_after) + (double)s->end_think_us / 1e6 * scale;
        if (t >= at) {
          if (s->end == SP_SEND_FIN) {
            shutdown(l->fd, SHUT_WR);
            l->eof_sent = 1;
            l->note = "client:fin";
            l->end_wait_until = t + 2.0; /* the server's close, at most */
          } else {
            finish(l, t, s->end == SP_SEND_RST ? "client:rst"
                         : s->end == SP_SEND_TLS ? "client:tls"
                         : s->end == SP_SEND_GAP ? "client:capture-gap"
                                                 : "client:capture-end", 1);
            continue;
          }
        } else if (at < wake)
          wake = at;
      }
      pf[np].fd = l->fd;
      pf[np].events = ev;
      pf[np].revents = 0;
      pmap[np++] = i;
    }
    for (size_t i = 0; i < next; i++)
      if (ls[i].done && ls[i].fd == -1 && !ls[i].res.source) {
        lsess *l = &ls[i];
        l->fd = -2;
        active--;
        finished++;
        sp_result *r = &l->res;
        r->source = l->s->source;
        r->session = l->s->session;
        r->client_ip = l->s->client_ip;
        r->policy = label;
        r->patience_model = pm->name;
        r->patience_s = l->patience;
        r->gave_up_at = l->gave_up ? sp_unit_name(l->gave_up_at) : "";
        static const char *const stn[] = {"connect", "greeting", "helo", "mail",
                                          "rcpt", "data", "delivered"};
        r->stage = stn[l->stage];
        r->note = l->note ? l->note : "";
        r->held_s = (l->closed_at - l->t0) / scale;
        r->captured_s = (double)l->s->duration_us / 1e6;
        r->replies = l->rx;
        if (r->outcome == SP_OUT_ERROR)
          ;
        else if (l->gave_up)
          r->outcome = SP_OUT_GAVE_UP;
        else if (r->messages)
          r->outcome = SP_OUT_DELIVERED;
        else if (l->rejected)
          r->outcome = SP_OUT_REJECTED;
        else
          r->outcome = SP_OUT_NO_MAIL;
        free(l->reply_t);
        free(l->unit_t);
        l->reply_t = l->unit_t = NULL;
      }
    if (finished >= n)
      break;
    double wait_ms = (wake - now_s()) * 1000.0;
    int to = wait_ms < 0 ? 0 : wait_ms > 50 ? 50 : (int)wait_ms;
    if (poll(pf, np, to) < 0 && errno != EINTR) {
      perror("sluice-replay: poll");
      status = SP_EXIT_INPUT;
      break;
    }
    t = now_s();
    for (nfds_t k = 0; k < np; k++) {
      lsess *l = &ls[pmap[k]];
      if (l->done || !pf[k].revents)
        continue;
      const sp_script *s = l->s;
      if (!l->connected && (pf[k].revents & (POLLOUT | POLLERR | POLLHUP))) {
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) {
          finish(l, t, "connect-failed", 0);
          l->res.outcome = SP_OUT_ERROR;
          continue;
        }
        l->connected = 1;
        continue;
      }
      if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        uint8_t buf[16384];
        ssize_t got = recv(l->fd, buf, sizeof buf, 0);
        if (got > 0)
          on_bytes(l, buf, (size_t)got, t, scale);
        else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          finish(l, t, l->eof_sent ? "client:fin" : "server-closed", 0);
          continue;
        }
      }
      if ((pf[k].revents & POLLOUT) && l->wi < s->nw) {
        const sp_cwrite *w = &s->w[l->wi];
        ssize_t sent = send(l->fd, s->cdata + w->off + l->woff, w->len - l->woff,
                            MSG_NOSIGNAL);
        if (sent > 0) {
          l->woff += (uint64_t)sent;
          l->csent += (uint64_t)sent;
          l->res.bytes_client += (uint64_t)sent;
          l->last_tx = t;
          while (l->units_sent < s->nu && s->u[l->units_sent].end <= l->csent)
            l->unit_t[l->units_sent++] = t;
          if (l->woff >= w->len) {
            l->wi++;
            l->woff = 0;
          }
        } else if (sent < 0 && errno != EAGAIN && errno != EINTR) {
          finish(l, t, "server-closed", 0);
        }
      }
    }
  }
  FILE *fj = o.jsonl ? fopen(o.jsonl, "w") : NULL;
  FILE *fc = o.csv ? fopen(o.csv, "w") : NULL;
  if ((o.jsonl && !fj) || (o.csv && !fc)) {
    fprintf(stderr, "sluice-replay: cannot write the output files\n");
    status = SP_EXIT_INPUT;
  }
  if (fc) {
    fprintf(fc, "# live replay against %s, time scale %g (times in capture "
            "seconds); delay_s = wait beyond the captured reply time\n", target, scale);
    sp_simopts_describe(&o, fc, "# ");
    sp_result_csv_header(fc);
  }
  sp_summary sum;
  memset(&sum, 0, sizeof sum);
  for (size_t i = 0; i < n; i++) {
    if (!ls[i].res.source)
      continue;
    sp_summary_add(&sum, &ls[i].res);
    if (fj)
      sp_result_write_jsonl(fj, &ls[i].res);
    if (fc)
      sp_result_write_csv(fc, &ls[i].res);
  }
  if (fj && fclose(fj))
    status = SP_EXIT_INPUT;
  if (fc && fclose(fc))
    status = SP_EXIT_INPUT;
  if (!o.quiet) {
    printf("sluice-replay live: %zu sessions against %s, time scale %g, %.2f s wall\n",
           n, target, scale, now_s() - tstart);
    sp_simopts_describe(&o, stdout, "# ");
    sp_summary_print_header(stdout);
    sp_summary_print(stdout, label, pm->name, &sum);
  }
  for (size_t i = 0; i < n; i++) {
    if (ls[i].fd >= 0)
      close(ls[i].fd);
    free(ls[i].reply_t);
    free(ls[i].unit_t);
  }
  free(ls);
  free(pf);
  free(pmap);
  sp_simopts_free(&o);
  return status;
}
