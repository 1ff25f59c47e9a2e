/*
 * live: the client sessions of captures replayed over TCP against a running
 * SMTP server or proxy, on loopback (or inside a test network namespace)
 * only.  The same client model as sim (sp_script.h anchoring, patience,
 * reactions as captured), timings scaled by --time-scale, many sessions at
 * once through poll(), bounded in count and in total time.  The records are
 * sim's, measured from the client side; times are reported in capture
 * seconds (wall time divided by the time scale).
 *
 * Arrivals: each session starts at its captured start time (offset from
 * the first session of its capture file, times the time scale); captures
 * given together overlay their timelines.  --arrivals asap starts them as
 * fast as the concurrency allows (the old behaviour, a load test).
 * Source addresses: every distinct captured client address gets its own
 * loopback address 127.1.0.0 + k (IPv4 targets; Linux routes all of
 * 127.0.0.0/8 to lo), so the proxy's per-IP limits see the capture's
 * clients, not one host.  --source fixed uses the kernel's choice.
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
  double start_at; /* wall time the connection is due (captured arrival) */
  uint32_t src;    /* source IPv4 address (host order), 0: kernel's */
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
  /* delay: the wait for this reply beyond the captured one.  The wait runs
   * from the later of the request going out and the previous reply (a
   * pipelined group's replies queue behind each other: counting each from
   * its own request would count one hold several times), and so does the
   * captured wait it is compared with.  A reply to a request not yet sent
   * (a server talking out of turn) has no wait. */
  double prev = idx == 0 ? l->t0 : l->reply_t[idx - 1];
  double asked = idx == 0 ? l->t0
                 : idx - 1 < s->nu && idx - 1 < l->units_sent
                     ? l->unit_t[idx - 1]
                     : t;
  double from = asked > prev ? asked : prev;
  double cap = 0;
  if (idx == 0)
    cap = s->greet_us >= 0 ? (double)s->greet_us / 1e6 : 0;
  else if (idx - 1 < s->nu && s->u[idx - 1].reply_us >= 0) {
    int64_t cprev = idx == 1 ? (s->greet_us >= 0 ? s->greet_us : 0)
                    : s->u[idx - 2].reply_us >= 0 ? s->u[idx - 2].reply_us
                                                  : 0;
    int64_t cfrom =
        s->u[idx - 1].sent_us > cprev ? s->u[idx - 1].sent_us : cprev;
    cap = (double)(s->u[idx - 1].reply_us - cfrom) / 1e6;
  }
  double extra = (t - from) / scale - (cap > 0 ? cap : 0);
  if (from <= t && extra > 0)
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

static void upd(double *m, double v) {
  if (v > *m)
    *m = v;
}

/* The longest waits under the three clocks (sp_sim.h), in capture seconds;
 * called before bytes are taken in and when the connection ends. */
static void note_waits(lsess *l, double t, double scale,
                       int clock_reply_unused) {
  (void)clock_reply_unused;
  if (!l->connected || l->eof_sent || !waiting(l))
    return;
  const sp_script *s = l->s;
  sp_unit_kind k = l->rx == 0          ? SP_U_GREETING
                   : l->rx - 1 < s->nu ? (sp_unit_kind)s->u[l->rx - 1].kind
                                       : SP_U_OTHER;
  double rb = l->last_tx > l->last_rx ? l->last_tx : l->last_rx;
  double pb = l->rx == 0                  ? l->t0
              : l->rx - 1 < l->units_sent ? l->unit_t[l->rx - 1]
                                          : rb;
  double rd = (t - rb) / scale, rp = (t - pb) / scale;
  upd(&l->res.w_read, rd);
  upd(&l->res.w_reply, rp);
  upd(&l->res.w_read_by[k], rd);
  upd(&l->res.w_reply_by[k], rp);
  upd(&l->res.w_session, (t - l->t0) / scale);
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

/* Captured arrivals: each session's start relative to the first session of
 * its capture file, scaled; order[] lists sessions by due time (stable). */
static const lsess *g_sort_ls;
static int by_start(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  double dx = g_sort_ls[x].start_at, dy = g_sort_ls[y].start_at;
  return dx < dy ? -1 : dx > dy ? 1 : x < y ? -1 : x > y;
}

static void plan_arrivals(const sp_script_set *set, lsess *ls, size_t *order,
                          double tstart, double scale, int asap) {
  /* A file's sessions are consecutive in the set (loaded file by file). */
  for (size_t i = 0, run = 0; i < set->n; i++) {
    order[i] = i;
    ls[i].start_at = tstart;
    if (i == set->n - 1 || strcmp(set->v[i + 1].source, set->v[i].source)) {
      int64_t first = set->v[run].start_us;
      for (size_t j = run; j <= i; j++)
        if (set->v[j].start_us < first)
          first = set->v[j].start_us;
      for (size_t j = run; j <= i && !asap; j++) {
        double off = (double)(set->v[j].start_us - first) / 1e6;
        ls[j].start_at = tstart + (off > 0 ? off : 0) * scale;
      }
      run = i + 1;
    }
  }
  g_sort_ls = ls;
  qsort(order, set->n, sizeof *order, by_start);
}

/* One loopback address per distinct captured client address: 127.1.0.0 + k
 * (k from 1 in order of first appearance). */
static const sp_script_set *g_sort_set;
static int by_client(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  int c = strcmp(g_sort_set->v[x].client_ip, g_sort_set->v[y].client_ip);
  return c ? c : x < y ? -1 : x > y;
}

static void plan_sources(const sp_script_set *set, lsess *ls) {
  size_t *ix = calloc(set->n ? set->n : 1, sizeof *ix);
  if (!ix)
    return; /* the kernel's address for everyone */
  for (size_t i = 0; i < set->n; i++)
    ix[i] = i;
  g_sort_set = set;
  qsort(ix, set->n, sizeof *ix, by_client);
  uint32_t k = 0;
  for (size_t i = 0; i < set->n; i++) {
    if (!i || strcmp(set->v[ix[i]].client_ip, set->v[ix[i - 1]].client_ip))
      k++;
    ls[ix[i]].src =
        0x7f010000u + (k < 0xfeffffu ? k : 0xfeffffu); /* 127.1.0.1 up */
  }
  free(ix);
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
      {"arrivals", required_argument, 0, OPT_ARRIVALS},
      {"source", required_argument, 0, OPT_SOURCE},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *target = NULL;
  double scale = 1.0, limit = 60.0;
  long conc = 100;
  int netns = 0, asap = 0, fixed_src = 0;
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
    case OPT_ARRIVALS:
      if (strcmp(optarg, "captured") && strcmp(optarg, "asap")) {
        fprintf(stderr, "sluice-replay: --arrivals: captured or asap\n");
        return SP_EXIT_USAGE;
      }
      asap = !strcmp(optarg, "asap");
      break;
    case OPT_SOURCE:
      if (strcmp(optarg, "per-client") && strcmp(optarg, "fixed")) {
        fprintf(stderr, "sluice-replay: --source: per-client or fixed\n");
        return SP_EXIT_USAGE;
      }
      fixed_src = !strcmp(optarg, "fixed");
      break;
    case 'q': o.quiet = 1; break;
    case 'h':
    default: {
      FILE *f = c == 'h' ? stdout : stderr;
      fprintf(f,
              "usage: sluice-replay live --connect ADDR:PORT [--time-scale F] "
              "[--concurrency N]\n       [--time-limit S] [--patience MODEL] "
              "[--jsonl FILE] [--csv FILE] [--netns]\n"
              "       [--arrivals captured|asap] [--source per-client|fixed] "
              "FILE...\n"
              "Replays the client sessions over TCP against a server on "
              "loopback (or, with\n--netns, any address inside a test network "
              "namespace).  Defaults: scale 1,\nconcurrency 100, time limit 60 "
              "s (wall clock, for the whole run), arrivals at their\ncaptured "
              "times (scaled), each captured client from its own 127.1.x.y "
              "address.\n");
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
  if (o.stream) {
    fprintf(stderr, "sluice-replay: --stream is for sim only\n");
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
  /* Arrival order and times; source addresses per distinct client. */
  size_t *order = calloc(n ? n : 1, sizeof *order);
  if (!order) {
    fprintf(stderr, "sluice-replay: out of memory\n");
    free(ls);
    free(pf);
    free(pmap);
    sp_simopts_free(&o);
    return SP_EXIT_INPUT;
  }
  plan_arrivals(&o.set, ls, order, tstart, scale, asap);
  if (!fixed_src && ss.ss_family == AF_INET)
    plan_sources(&o.set, ls);
  size_t next = 0, active = 0, finished = 0, late = 0;
  int status = SP_EXIT_OK;
  static char label[160];
  snprintf(label, sizeof label, "live:%s", target);
  size_t not_started = 0;
  while (finished < n) {
    double t = now_s();
    /* past the time limit, sessions not yet started never will be */
    while (t >= deadline && next < n) {
      lsess *l = &ls[order[next++]];
      l->done = 1;
      l->fd = -2;
      not_started++;
      finished++;
    }
    /* start sessions whose arrival is due */
    while (next < n && active < (size_t)conc && t < deadline &&
           ls[order[next]].start_at <= t) {
      lsess *l = &ls[order[next]];
      if (t - l->start_at > 0.1 * scale + 0.01)
        late++; /* held back by --concurrency */
      l->s = &o.set.v[order[next]];
      l->reply_t = calloc(l->s->nu + 2, sizeof(double));
      l->unit_t = calloc(l->s->nu + 1, sizeof(double));
      l->res.deliver_s = -1;
      l->patience = sp_patience_draw(pm, sp_rng_seed(o.cfg.seed, l->s->source, l->s->session),
                                     l->s->gave_up ? l->s->wait_s : -1.0);
      l->t0 = l->last_tx = l->last_rx = t;
      l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      next++;
      active++;
      if (l->fd >= 0 && l->src) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(l->src);
        if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa)) {
          finish(l, t, "bind-failed", 0);
          l->res.outcome = SP_OUT_ERROR;
          continue;
        }
      }
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
    if (next < n && ls[order[next]].start_at < wake)
      wake = ls[order[next]].start_at;
    nfds_t np = 0;
    for (size_t j = 0; j < next; j++) {
      size_t i = order[j];
      lsess *l = &ls[i];
      if (l->done)
        continue;
      const sp_script *s = l->s;
      if (t >= deadline) {
        note_waits(l, t, scale, 0);
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
          note_waits(l, t, scale, 0);
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
    for (size_t j = 0; j < next; j++)
      if (ls[order[j]].done && ls[order[j]].fd == -1 &&
          !ls[order[j]].res.source) {
        lsess *l = &ls[order[j]];
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
        if (got > 0) {
          note_waits(l, t, scale, 0);
          on_bytes(l, buf, (size_t)got, t, scale);
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          note_waits(l, t, scale, 0);
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
    sp_result_csv_header(fc, 0, NULL);
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
      sp_result_write_csv(fc, &ls[i].res, 0, NULL);
  }
  if (fj && fclose(fj))
    status = SP_EXIT_INPUT;
  if (fc && fclose(fc))
    status = SP_EXIT_INPUT;
  if (!o.quiet) {
    printf("sluice-replay live: %zu sessions against %s, time scale %g, %.2f s "
           "wall, "
           "arrivals %s, %zu started late (concurrency), %zu not started (time "
           "limit), "
           "sources %s\n",
           n, target, scale, now_s() - tstart, asap ? "asap" : "captured", late,
           not_started,
           fixed_src || ss.ss_family != AF_INET ? "kernel's"
                                                : "127.1.0.0 + k per client");
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
  free(order);
  free(pf);
  free(pmap);
  sp_simopts_free(&o);
  return status;
}
