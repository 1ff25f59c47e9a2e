/* sp_live.c: live replay over TCP; see sp_live.h. */
#include "sp_live.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sp_client.h"

#define NEVER SP_CLIENT_NEVER
#define NS 1000000000.0

typedef struct lsess {
  sp_client c; /* the client model, on the wall clock (ns) */
  const sp_script *s;
  sp_result *res;
  uint64_t start_at; /* wall time the connection is due (captured arrival) */
  uint32_t src;      /* source IPv4 address (host order), 0: kernel's */
  int fd, connected, done, gave_up, eof_sent;
  uint64_t closed_at, end_wait_until;
  double patience;
  const char *note;
  sp_unit_kind gave_up_at;
} lsess;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t wall(double secs) {
  return secs > 0 ? (uint64_t)nearbyint(secs * NS) : 0;
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
  return !memcmp(a->sin6_addr.s6_addr, v4m, 12) &&
         a->sin6_addr.s6_addr[12] == 127;
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

int sp_live_target_allowed(const struct sockaddr_storage *ss, int netns) {
  return is_loopback(ss) || (netns && in_test_netns());
}

int sp_live_parse_target(const char *text, struct sockaddr_storage *ss,
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

/* The longest waits, before bytes are taken in and when the connection
 * ends; not before the connection is up nor after the client's FIN. */
static void note_waits(lsess *l, uint64_t t) {
  if (l->connected && !l->eof_sent)
    sp_client_note_waits(&l->c, t);
}

static void finish(lsess *l, uint64_t t, const char *note, int rst) {
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

/* Captured arrivals: each session's start relative to the first session of
 * its capture file, scaled; order[] lists sessions by due time (stable). */
static const lsess *g_sort_ls;
static int by_start(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  uint64_t dx = g_sort_ls[x].start_at, dy = g_sort_ls[y].start_at;
  return dx < dy ? -1 : dx > dy ? 1 : x < y ? -1 : x > y;
}

static void plan_arrivals(const sp_script_set *set, lsess *ls, size_t *order,
                          uint64_t tstart, double scale, int asap) {
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
        ls[j].start_at = tstart + wall(off * scale);
      }
      run = i + 1;
    }
  }
  g_sort_ls = ls;
  qsort(order, set->n, sizeof *order, by_start);
}

/* One loopback address per distinct captured client address: 127.1.0.0 + k
 * (k from 1 in order of the sorted addresses). */
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

/* Opens session l at t: patience draw, client model, socket, bind, connect
 * (non-blocking; finished with an error note when any of it fails). */
static void start(const sp_live_config *cfg, lsess *l, uint64_t t) {
  const sp_script *s = l->s;
  l->res->deliver_s = -1;
  l->patience = sp_client_draw_patience(cfg->patience, cfg->seed, s);
  l->c.count_delay = 1;
  int nomem = sp_client_begin(&l->c, s, l->res, t, cfg->scale);
  l->fd = socket(cfg->target.ss_family,
                 SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->fd >= 0 && l->src) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(l->src);
    if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa)) {
      finish(l, t, "bind-failed", 0);
      l->res->outcome = SP_OUT_ERROR;
      return;
    }
  }
  if (nomem || l->fd < 0 ||
      (connect(l->fd, (const struct sockaddr *)&cfg->target, cfg->target_len) &&
       errno != EINPROGRESS)) {
    finish(l, t, "connect-failed", 0);
    l->res->outcome = SP_OUT_ERROR;
    return;
  }
  int one = 1;
  setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Timers of a started, open session at t: gives up, ends the script, or
 * returns the poll events it wants (0: finished now); *wake is lowered to
 * its next timer. */
static short step(const sp_live_config *cfg, lsess *l, uint64_t t,
                  uint64_t *wake) {
  const sp_script *s = l->s;
  sp_client *c = &l->c;
  if (l->eof_sent) {
    if (t >= l->end_wait_until) {
      finish(l, t, l->note ? l->note : "client:fin", 0);
      return 0;
    }
  } else if (l->connected) {
    uint64_t dl = sp_client_patience_due(c, l->patience, cfg->clock_reply, t);
    if (dl <= t) {
      note_waits(l, t);
      l->gave_up = 1;
      l->gave_up_at = sp_client_awaited(c);
      finish(l, t, "client:gave-up", 1);
      return 0;
    }
    if (dl < *wake)
      *wake = dl;
  }
  if (!l->connected)
    return POLLOUT;
  short ev = POLLIN;
  if (l->eof_sent)
    return ev;
  uint64_t wd = sp_client_write_due(c, t);
  if (wd != NEVER) {
    if (wd <= t)
      ev |= POLLOUT;
    else if (wd < *wake)
      *wake = wd;
  } else if (c->wi >= s->nw && s->gave_up) {
    /* A captured give-up is not replayed: the patience model decides;
     * with nothing left to send or wait for, the client leaves. */
    if (!sp_client_waiting(c)) {
      finish(l, t, "client:script-end", 0);
      return 0;
    }
  } else {
    uint64_t at = sp_client_end_due(c, t);
    if (at <= t) {
      if (!sp_client_end_aborts(c)) {
        shutdown(l->fd, SHUT_WR);
        l->eof_sent = 1;
        l->note = "client:fin";
        l->end_wait_until = t + wall(2.0); /* the server's close, at most */
      } else {
        finish(l, t, sp_client_end_note(c), 1);
        return 0;
      }
    } else if (at < *wake)
      *wake = at;
  }
  return ev;
}

/* Socket events of session l at t. */
static void on_events(lsess *l, short revents, uint64_t t) {
  sp_client *c = &l->c;
  if (!l->connected && (revents & (POLLOUT | POLLERR | POLLHUP))) {
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e) {
      finish(l, t, "connect-failed", 0);
      l->res->outcome = SP_OUT_ERROR;
      return;
    }
    l->connected = 1;
    return;
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    uint8_t buf[16384];
    ssize_t got = recv(l->fd, buf, sizeof buf, 0);
    if (got > 0) {
      note_waits(l, t);
      sp_client_read(c, buf, (size_t)got, t);
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      note_waits(l, t);
      finish(l, t, l->eof_sent ? "client:fin" : "server-closed", 0);
      return;
    }
  }
  if ((revents & POLLOUT) && c->wi < l->s->nw) {
    size_t len;
    const uint8_t *p = sp_client_write_bytes(c, &len);
    ssize_t sent = send(l->fd, p, len, MSG_NOSIGNAL);
    if (sent > 0)
      sp_client_wrote(c, (uint64_t)sent, t);
    else if (sent < 0 && errno != EAGAIN && errno != EINTR)
      finish(l, t, "server-closed", 0);
  }
}

/* The record of a finished session. */
static void record(const sp_live_config *cfg, lsess *l) {
  sp_result *r = l->res;
  r->source = l->s->source;
  r->session = l->s->session;
  r->client_ip = l->s->client_ip;
  r->policy = cfg->label;
  r->patience_model = cfg->patience->name;
  r->patience_s = l->patience;
  r->gave_up_at = l->gave_up ? sp_unit_name(l->gave_up_at) : "";
  r->stage = sp_client_stage_name(&l->c);
  r->note = l->note ? l->note : "";
  r->held_s = (double)(l->closed_at - l->c.t0) / NS / cfg->scale;
  r->captured_s = (double)l->s->duration_us / 1e6;
  r->replies = l->c.rx;
  if (r->outcome == SP_OUT_ERROR)
    ;
  else if (l->gave_up)
    r->outcome = SP_OUT_GAVE_UP;
  else if (r->messages)
    r->outcome = SP_OUT_DELIVERED;
  else if (l->c.rejected)
    r->outcome = SP_OUT_REJECTED;
  else
    r->outcome = SP_OUT_NO_MAIL;
}

int sp_live_run(const sp_live_config *cfg, const sp_script_set *set,
                sp_result *res, sp_live_stats *st) {
  size_t n = set->n, conc = (size_t)cfg->concurrency;
  memset(st, 0, sizeof *st);
  lsess *ls = calloc(n ? n : 1, sizeof *ls);
  struct pollfd *pf = calloc(conc, sizeof *pf);
  size_t *pmap = calloc(conc, sizeof *pmap);
  size_t *order = calloc(n ? n : 1, sizeof *order);
  if (!ls || !pf || !pmap || !order) {
    free(ls);
    free(pf);
    free(pmap);
    free(order);
    return -2;
  }
  for (size_t i = 0; i < n; i++) {
    ls[i].s = &set->v[i];
    ls[i].res = &res[i];
    ls[i].fd = -1;
  }
  uint64_t tstart = now_ns(), deadline = tstart + wall(cfg->limit_s);
  /* Arrival order and times; source addresses per distinct client. */
  plan_arrivals(set, ls, order, tstart, cfg->scale, cfg->asap);
  if (!cfg->fixed_source && cfg->target.ss_family == AF_INET) {
    plan_sources(set, ls);
    st->per_client_sources = 1;
  }
  uint64_t late_after = wall(0.1 * cfg->scale + 0.01);
  size_t next = 0, active = 0, finished = 0;
  int status = 0;
  while (finished < n) {
    uint64_t t = now_ns();
    /* past the time limit, sessions not yet started never will be */
    while (t >= deadline && next < n) {
      lsess *l = &ls[order[next++]];
      l->done = 1;
      l->fd = -2;
      st->not_started++;
      finished++;
    }
    /* start sessions whose arrival is due */
    while (next < n && active < conc && t < deadline &&
           ls[order[next]].start_at <= t) {
      lsess *l = &ls[order[next++]];
      if (t - l->start_at > late_after)
        st->late++; /* held back by the concurrency */
      active++;
      start(cfg, l, t);
    }
    /* timers and writes */
    uint64_t wake = t + wall(0.05);
    if (next < n && ls[order[next]].start_at < wake)
      wake = ls[order[next]].start_at;
    nfds_t np = 0;
    for (size_t j = 0; j < next; j++) {
      size_t i = order[j];
      lsess *l = &ls[i];
      if (l->done)
        continue;
      if (t >= deadline) {
        note_waits(l, t);
        finish(l, t, "time-limit", 1);
        l->res->outcome = SP_OUT_ERROR;
        continue;
      }
      short ev = step(cfg, l, t, &wake);
      if (!ev)
        continue;
      pf[np].fd = l->fd;
      pf[np].events = ev;
      pf[np].revents = 0;
      pmap[np++] = i;
    }
    for (size_t j = 0; j < next; j++) {
      lsess *l = &ls[order[j]];
      if (l->done && l->fd == -1 && !l->res->source) {
        l->fd = -2;
        active--;
        finished++;
        record(cfg, l);
      }
    }
    if (finished >= n)
      break;
    uint64_t tn = now_ns();
    int to = wake <= tn              ? 0
             : wake - tn > 50000000u ? 50
                                     : (int)((wake - tn) / 1000000u);
    if (poll(pf, np, to) < 0 && errno != EINTR) {
      perror("sluice-replay: poll");
      status = -1;
      break;
    }
    t = now_ns();
    for (nfds_t k = 0; k < np; k++) {
      lsess *l = &ls[pmap[k]];
      if (!l->done && pf[k].revents)
        on_events(l, pf[k].revents, t);
    }
  }
  st->wall_s = (double)(now_ns() - tstart) / NS;
  for (size_t i = 0; i < n; i++) {
    if (ls[i].fd >= 0)
      close(ls[i].fd);
    sp_client_free(&ls[i].c);
  }
  free(ls);
  free(order);
  free(pf);
  free(pmap);
  return status;
}
