/*
 * sd_conn.c: one proxied session: the client socket, at most one upstream
 * socket, their TLS states and the relay that decides everything else.
 *
 * The driver never buffers SMTP bytes of its own: it reads straight into the
 * relay's input space (sl_relay_*_in_buf) and only when the relay wants
 * input, and it writes straight from the relay's output.  So there is never
 * driver-held plaintext to discard at STARTTLS (SECURITY.md 1.2), and no byte
 * is read ahead of the relay's decisions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd_log.h"
#include "sd_worker.h"

#define RUN_ROUNDS 64 /* bounded work per wake-up; level-triggered epoll
                         brings us back for the rest */

typedef struct sd_dnsq {
  struct sd_dnsq *next;
  sd_conn *c; /* NULL once the session is gone */
  uint32_t id;
  uint32_t zone;
} sd_dnsq;

/* The upstream leg: allocated on the first connect and kept (for the
   failover state and the log line) until the session ends.  Sessions that
   never go upstream (screened, tarpitted, held) point at no_uleg, a
   read-only stand-in with no socket, so a stray write faults at once. */
typedef struct sd_uleg {
  sd_handler uh;
  sd_conn *c;
  sd_tls_conn *utls;
  sd_server *server;
  uint64_t tried;
  int ufd;
  uint32_t uev; /* epoll mask registered (valid while ureg) */
  uint32_t u_hs_id, u_conn_id;
  uint8_t ureg;
  uint8_t u_hs;               /* handshake in progress */
  uint8_t u_connecting;
  uint8_t u_implicit_pending; /* implicit TLS upstream: connect then handshake */
  uint8_t u_rblk, u_wblk, u_tlswant, u_eof, u_hup, u_broken;
  uint8_t last; /* 1 + index of the last server picked, 0: none (log line) */
} sd_uleg;

static const sd_uleg no_uleg = {.ufd = -1};

/* What only some sessions need, allocated on first use: DNS queries, TLS
   names, the local address behind a wildcard listener, and the log line's
   lists.  A held plaintext session has none. */
#define SD_UPFAIL_MAX 8
#define SD_MSGS_MAX 12
typedef struct sd_xtra {
  sd_dnsq *dnsq;
  const char *tls_version, *tls_cipher; /* OpenSSL's static strings */
  uint64_t injection_bytes;
  uint64_t msgs[SD_MSGS_MAX]; /* SL_EV_MESSAGE args: code | size << 16 */
  uint32_t nmsgs;
  uint32_t dns_listed, dns_timeouts;
  uint16_t upfail[SD_UPFAIL_MAX]; /* kind | (1 + server index) << 8 */
  uint8_t nupfail;
  uint8_t smuggling;
  uint8_t have_local;
  sl_addr local;
} sd_xtra;

struct sd_conn {
  sd_handler ch;
  sd_timer timer;
  sd_gen *g; /* holds the config: listener and server names for the log */
  sd_conn *prev, *next;
  sd_tls_conn *ctls;
  sd_uleg *u; /* &no_uleg until the first upstream connect */
  sd_xtra *x; /* NULL until needed */
  int cfd;
  uint32_t c_hs_id;
  uint16_t listener;  /* index into g->cfg->listen */
  uint8_t cev;        /* epoll mask registered (EPOLLIN|EPOLLOUT fit); CEV_OFF */
  uint8_t c_tlswant;  /* sd_tls_want() after -2 */
  unsigned c_hs : 1, c_hs_implicit : 1; /* handshake; implicit TLS on accept */
  unsigned c_rblk : 1, c_wblk : 1;       /* last I/O would block */
  unsigned c_eof : 1, c_hup : 1, c_broken : 1;
  unsigned in_run : 1, logged : 1, admitted : 2, expect_proxy : 1, listener_tls : 1;
  unsigned dead : 1; /* freed at the end of the loop iteration */
  /* The relay's state; sl_relay_init() puts it at the start of mem. */
  _Alignas(8) unsigned char mem[];
};

#define CEV_OFF 0xffu
#define RELAY(c) ((sl_relay *)(void *)(c)->mem)
#define CW(c) ((c)->g->w)

static void conn_run(sd_conn *c);
static void conn_free(sd_conn *c);
static void upstream_io(sd_handler *h, uint32_t ev);

static uint64_t now_of(const sd_conn *c) { return sd_loop_now(CW(c)->loop); }

/* ---- small helpers ------------------------------------------------------ */

static sd_xtra *xtra(sd_conn *c) {
  if (c->x == NULL) c->x = calloc(1, sizeof *c->x);
  return c->x; /* NULL: out of memory; the detail is left out of the log */
}

static const char *server_name(const sd_conn *c, unsigned idx1) {
  const sd_config *cfg = c->g->cfg;
  return idx1 && idx1 <= cfg->nupstream ? cfg->upstream[idx1 - 1].text : "-";
}

static void to_sl_addr(const struct sockaddr *sa, sl_addr *a) {
  memset(a, 0, sizeof *a);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    a->family = SL_AF_INET;
    a->port = ntohs(in->sin_port);
    memcpy(a->bytes, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    a->port = ntohs(in6->sin6_port);
    if (memcmp(&in6->sin6_addr, mapped, 12) == 0) {
      /* A dual-stack socket's IPv4 peer: treat as IPv4 everywhere (logs,
         DNSBL names, per-IP limits). */
      a->family = SL_AF_INET;
      memcpy(a->bytes, (const uint8_t *)&in6->sin6_addr + 12, 4);
    } else {
      a->family = SL_AF_INET6;
      memcpy(a->bytes, &in6->sin6_addr, 16);
    }
  }
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void strappend(char *dst, size_t cap, const char *s) {
  /* Appends ",s" (or "s") when it fits whole; a log field is never cut
     in the middle of an item. */
  size_t n = strlen(dst), m = strlen(s) + (n ? 1 : 0);
  if (n + m + 1 > cap) return;
  if (n) dst[n++] = ',';
  memcpy(dst + n, s, strlen(s) + 1);
}

/* ---- refusing and lingering --------------------------------------------- */

void sd_refuse(sd_worker *w, int fd, int tls, const char *why) {
  if (!tls) {
    char line[300];
    const char *host = w->gen ? w->gen->cfg->policy.hostname : "localhost";
    int n = snprintf(line, sizeof line, "421 4.7.0 %s %s, try again later\r\n", host, why);
    /* A fresh socket's send buffer takes one short line; if not, the client
       sees the close, which also means "try later". */
    ssize_t wr = send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)wr;
  }
  sd_linger_close(w, fd);
}

#define LINGER_MAX 1024
#define LINGER_TIME (2 * SL_SEC)

struct sd_linger {
  sd_handler h;
  sd_timer timer;
  sd_worker *w;
  sd_linger *prev, *next;
  int fd;
  uint32_t drained;
};

static void linger_end(sd_linger *l) {
  sd_worker *w = l->w;
  sd_loop_del(w->loop, l->fd);
  close(l->fd);
  sd_timer_stop(w->loop, &l->timer);
  if (l->prev) l->prev->next = l->next;
  else w->lingers = l->next;
  if (l->next) l->next->prev = l->prev;
  w->nlinger--;
  free(l);
}

static void linger_io(sd_handler *h, uint32_t ev) {
  sd_linger *l = (sd_linger *)(void *)h;
  char buf[4096];
  (void)ev;
  for (int i = 0; i < 4; i++) {
    ssize_t n = recv(l->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || (l->drained += (uint32_t)n) > 65536) {
      linger_end(l);
      return;
    }
  }
}

static void linger_timeout(sd_timer *t) {
  linger_end((sd_linger *)(void *)((char *)t - offsetof(sd_linger, timer)));
}

void sd_linger_close(sd_worker *w, int fd) {
  shutdown(fd, SHUT_WR);
  sd_linger *l = w->nlinger < LINGER_MAX && !w->stop ? calloc(1, sizeof *l) : NULL;
  if (l == NULL) {
    close(fd);
    return;
  }
  l->h.cb = linger_io;
  l->w = w;
  l->fd = fd;
  sd_timer_init(&l->timer, linger_timeout);
  if (sd_loop_add(w->loop, fd, EPOLLIN, &l->h) != 0) {
    close(fd);
    free(l);
    return;
  }
  l->next = w->lingers;
  if (l->next) l->next->prev = l;
  w->lingers = l;
  w->nlinger++;
  sd_timer_set(w->loop, &l->timer, sd_loop_now(w->loop) + LINGER_TIME);
}

void sd_linger_free_all(sd_worker *w) {
  while (w->lingers) linger_end(w->lingers);
}

/* ---- legs ---------------------------------------------------------------- */

static void close_upstream(sd_conn *c) {
  if (c->u == &no_uleg) return;
  if (c->u->utls) {
    sd_tls_conn_free(c->u->utls);
    c->u->utls = NULL;
  }
  if (c->u->ufd >= 0) {
    if (c->u->ureg) sd_loop_del(CW(c)->loop, c->u->ufd);
    close(c->u->ufd);
    c->u->ufd = -1;
  }
  c->u->ureg = 0;
  c->u->uev = 0;
  c->u->u_hs = c->u->u_connecting = c->u->u_implicit_pending = 0;
  c->u->u_rblk = c->u->u_wblk = c->u->u_eof = c->u->u_hup = c->u->u_broken = 0;
  c->u->u_tlswant = 0;
  if (c->u->server) {
    sd_upstream_release(c->u->server);
    c->u->server = NULL;
  }
}

static void close_client(sd_conn *c) {
  if (c->cfd < 0) return;
  if (c->ctls) {
    /* sends close_notify when the session is healthy */
    sd_tls_conn_free(c->ctls);
    c->ctls = NULL;
  }
  sd_loop_del(CW(c)->loop, c->cfd);
  sd_linger_close(CW(c), c->cfd);
  c->cfd = -1;
  c->c_hs = 0;
}

static void complete(sd_conn *c, uint32_t id, sl_status st) {
  sl_completion comp;
  memset(&comp, 0, sizeof comp);
  comp.id = id;
  comp.status = st;
  sl_relay_complete(RELAY(c), &comp, now_of(c));
}

static void upstream_failed(sd_conn *c, const char *why) {
  if (c->u->server) {
    sd_upstream_report(c->u->server, 0, now_of(c));
    if (c->u->server->index < SD_MAX_SERVERS)
      __atomic_fetch_add(&sd_m->srv_connect_fail[c->u->server->index], 1, __ATOMIC_RELAXED);
    sd_gauge_set(&sd_m->srv_up[c->u->server->index], (uint64_t)c->u->server->up);
    sd_log(SD_LOG_DEBUG, "upstream %s: %s", c->u->server->cfg->text, why);
  }
  uint32_t id = c->u->u_conn_id;
  close_upstream(c);
  complete(c, id, SL_STATUS_FAILED);
}

static void upstream_ready(sd_conn *c) {
  if (c->u->server) {
    sd_upstream_report(c->u->server, 1, now_of(c));
    if (c->u->server->index < SD_MAX_SERVERS) {
      __atomic_fetch_add(&sd_m->srv_connect_ok[c->u->server->index], 1, __ATOMIC_RELAXED);
      sd_gauge_set(&sd_m->srv_up[c->u->server->index], 1);
    }
  }
  complete(c, c->u->u_conn_id, SL_STATUS_OK);
}

static void start_upstream_tls(sd_conn *c, uint32_t id, int implicit) {
  const sd_config *cfg = c->g->cfg;
  const char *name = cfg->upstream_tls_name;
  c->u->utls = c->g->tls_client ? sd_tls_conn_new(c->g->tls_client, c->u->ufd, 0, name) : NULL;
  if (c->u->utls == NULL) {
    sd_count(SD_C_TLS_UP_FAIL, 1);
    if (implicit) upstream_failed(c, "no TLS context");
    else complete(c, id, SL_STATUS_FAILED);
    return;
  }
  c->u->u_hs = 1;
  c->u->u_hs_id = id;
  c->u->u_implicit_pending = (uint8_t)implicit;
  c->u->u_rblk = c->u->u_wblk = 0;
}

static void connect_upstream(sd_conn *c, uint32_t id) {
  uint64_t now = now_of(c);
  if (c->u == &no_uleg) {
    sd_uleg *u = calloc(1, sizeof *u);
    if (u == NULL) {
      complete(c, id, SL_STATUS_FAILED);
      return;
    }
    u->uh.cb = upstream_io;
    u->c = c;
    u->ufd = -1;
    c->u = u;
  }
  close_upstream(c);
  c->u->u_conn_id = id;
  sd_server *s = sd_upstream_pick(c->g->ups, &c->u->tried, now);
  if (s == NULL) {
    /* Every server was tried once: start a new round rather than fail while
       the relay still allows attempts. */
    c->u->tried = 0;
    s = sd_upstream_pick(c->g->ups, &c->u->tried, now);
  }
  if (s == NULL) {
    complete(c, id, SL_STATUS_FAILED);
    return;
  }
  c->u->server = s;
  sd_upstream_acquire(s);
  c->u->last = (uint8_t)(s->index + 1);
  int fd = socket(s->cfg->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    sd_log(SD_LOG_WARN, "upstream socket: %s", strerror(errno));
    upstream_failed(c, "socket");
    return;
  }
  c->u->ufd = fd;
  set_nodelay(fd);
  if (connect(fd, (const struct sockaddr *)&s->cfg->addr.ss, s->cfg->addr.len) == 0) {
    c->u->u_connecting = 0;
  } else if (errno == EINPROGRESS) {
    c->u->u_connecting = 1;
    c->u->u_wblk = 1; /* wait for EPOLLOUT */
  } else {
    upstream_failed(c, strerror(errno));
    return;
  }
  if (sd_loop_add(CW(c)->loop, fd, c->u->u_connecting ? EPOLLOUT : EPOLLIN, &c->u->uh) != 0) {
    upstream_failed(c, "epoll");
    return;
  }
  c->u->ureg = 1;
  c->u->uev = c->u->u_connecting ? EPOLLOUT : EPOLLIN;
  if (!c->u->u_connecting) {
    if (c->g->cfg->policy.upstream_tls == SL_UPTLS_IMPLICIT) start_upstream_tls(c, id, 1);
    else upstream_ready(c);
  }
}

static int finish_connect(sd_conn *c) {
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(c->u->ufd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  if (err == 0 && c->u->u_hup) err = ECONNREFUSED;
  c->u->u_connecting = 0;
  c->u->u_wblk = 0;
  if (err != 0) {
    upstream_failed(c, strerror(err));
    return 1;
  }
  if (c->g->cfg->policy.upstream_tls == SL_UPTLS_IMPLICIT)
    start_upstream_tls(c, c->u->u_conn_id, 1);
  else
    upstream_ready(c);
  return 1;
}

static int step_client_hs(sd_conn *c) {
  int rc = sd_tls_handshake(c->ctls);
  if (rc == 0) {
    c->c_tlswant = (uint8_t)sd_tls_want(c->ctls);
    c->c_rblk = c->c_wblk = 1;
    return 0;
  }
  c->c_hs = 0;
  c->c_rblk = c->c_wblk = 0;
  c->c_tlswant = 0;
  if (rc == 1) {
    sd_count(SD_C_TLS_CLIENT_OK, 1);
    /* Both are OpenSSL's static strings: they outlive the SSL object. */
    sd_xtra *x = xtra(c);
    if (x) {
      x->tls_version = sd_tls_version(c->ctls);
      x->tls_cipher = sd_tls_cipher(c->ctls);
    }
    if (!c->c_hs_implicit) complete(c, c->c_hs_id, SL_STATUS_OK);
  } else {
    sd_count(SD_C_TLS_CLIENT_FAIL, 1);
    sd_log(SD_LOG_DEBUG, "client TLS handshake failed: %s", sd_tls_error(c->ctls));
    /* Nothing more can be said to this client in either protocol. */
    c->c_broken = 1;
    if (!c->c_hs_implicit) complete(c, c->c_hs_id, SL_STATUS_FAILED);
    if (!c->c_eof) {
      c->c_eof = 1;
      sl_relay_abort(RELAY(c), now_of(c));
    }
  }
  c->c_hs_implicit = 0;
  return 1;
}

static int step_upstream_hs(sd_conn *c) {
  int rc = sd_tls_handshake(c->u->utls);
  if (rc == 0) {
    c->u->u_tlswant = (uint8_t)sd_tls_want(c->u->utls);
    c->u->u_rblk = c->u->u_wblk = 1;
    return 0;
  }
  c->u->u_hs = 0;
  c->u->u_rblk = c->u->u_wblk = 0;
  c->u->u_tlswant = 0;
  int implicit = c->u->u_implicit_pending;
  c->u->u_implicit_pending = 0;
  if (rc == 1) {
    sd_count(SD_C_TLS_UP_OK, 1);
    if (implicit) upstream_ready(c);
    else complete(c, c->u->u_hs_id, SL_STATUS_OK);
  } else {
    sd_count(SD_C_TLS_UP_FAIL, 1);
    sd_log(SD_LOG_INFO, "upstream %s TLS handshake failed: %s", server_name(c, c->u->last),
           sd_tls_error(c->u->utls));
    if (implicit) {
      upstream_failed(c, "TLS handshake");
    } else {
      /* The upstream session is unusable; the relay decides what the
         client hears and asks us to close the leg. */
      c->u->u_broken = 1;
      complete(c, c->u->u_hs_id, SL_STATUS_FAILED);
    }
  }
  return 1;
}

/* ---- DNS ---------------------------------------------------------------- */

static void dns_done(void *arg, int status, const uint32_t *a, size_t n) {
  sd_dnsq *q = arg;
  sd_conn *c = q->c;
  switch (status) {
  case SD_DNS_OK: sd_count(SD_C_DNS_LISTED, 1); break;
  case SD_DNS_NOTFOUND: sd_count(SD_C_DNS_NOTLISTED, 1); break;
  case SD_DNS_TIMEOUT: sd_count(SD_C_DNS_TIMEOUT, 1); break;
  default: sd_count(SD_C_DNS_ERROR, 1); break;
  }
  if (c != NULL) {
    /* unlink q */
    for (sd_dnsq **pp = &c->x->dnsq; *pp; pp = &(*pp)->next)
      if (*pp == q) {
        *pp = q->next;
        break;
      }
    sl_completion comp;
    memset(&comp, 0, sizeof comp);
    comp.id = q->id;
    if (status == SD_DNS_OK) {
      comp.status = SL_STATUS_OK;
      size_t m = n < SL_DNSBL_ANSWERS_MAX ? n : SL_DNSBL_ANSWERS_MAX;
      memcpy(comp.dnsbl_answers, a, m * sizeof *a);
      comp.ndnsbl_answers = (uint8_t)m;
      c->x->dns_listed++;
    } else if (status == SD_DNS_NOTFOUND) {
      comp.status = SL_STATUS_OK; /* n = 0: not listed */
    } else if (status == SD_DNS_TIMEOUT) {
      comp.status = SL_STATUS_TIMEOUT;
      c->x->dns_timeouts++;
    } else {
      comp.status = SL_STATUS_FAILED;
    }
    if (status != SD_DNS_CANCELLED) {
      sl_relay_complete(RELAY(c), &comp, now_of(c));
      if (!c->in_run) conn_run(c);
    }
  }
  free(q);
}

static void dnsbl_lookup(sd_conn *c, uint32_t id, uint32_t zone) {
  const sl_policy *p = &c->g->cfg->policy;
  char name[300];
  if (c->g->dns == NULL || zone >= p->ndnsbl ||
      sl_addr_dnsbl_name(sl_relay_client_addr(RELAY(c)), p->dnsbl[zone].zone, name, sizeof name) < 0) {
    complete(c, id, SL_STATUS_FAILED);
    return;
  }
  sd_dnsq *q = xtra(c) ? calloc(1, sizeof *q) : NULL;
  if (q == NULL) {
    complete(c, id, SL_STATUS_FAILED);
    return;
  }
  q->c = c;
  q->id = id;
  q->zone = zone;
  if (sd_dns_query_a(c->g->dns, name, dns_done, q) != 0) {
    free(q);
    sd_count(SD_C_DNS_ERROR, 1);
    complete(c, id, SL_STATUS_FAILED);
    return;
  }
  q->next = c->x->dnsq;
  c->x->dnsq = q;
}

/* ---- events ------------------------------------------------------------- */

static const char *const stage_names[] = {"connect", "greeting", "helo", "mail",
                                          "rcpt", "data", "delivered"};
static const char *const end_names[] = {"none", "quit", "client_closed", "timeout",
                                        "upstream", "rejected", "protocol"};
static const char *const upfail_names[] = {"?", "connect", "timeout", "closed", "malformed",
                                           "greeting", "tls", "identity"};
static const char *const viol_names[] = {"none", "bare_lf", "bare_cr", "nul",
                                         "line_too_long", "size"};

static void log_session(sd_conn *c, const char *extra_end) {
  if (c->logged) return;
  c->logged = 1;
  const sl_stats *st = sl_relay_stats(RELAY(c));
  char cli[SL_ADDR_STRLEN], loc[SL_ADDR_STRLEN];
  sl_addr_format(sl_relay_client_addr(RELAY(c)), cli, sizeof cli);
  sl_addr local;
  const sd_xtra *x = c->x;
  if (x && x->have_local) local = x->local;
  else to_sl_addr((const struct sockaddr *)&c->g->cfg->listen[c->listener].addr.ss, &local);
  sl_addr_format(&local, loc, sizeof loc);
  uint64_t now = now_of(c);
  uint64_t dur = now - st->start;
  unsigned end = st->end_reason < 7 ? st->end_reason : 0;

  /* metrics */
  static const enum sd_counter endc[] = {SD_C_END_OTHER, SD_C_END_QUIT, SD_C_END_CLIENT_CLOSED,
                                         SD_C_END_TIMEOUT, SD_C_END_UPSTREAM,
                                         SD_C_END_REJECTED, SD_C_END_PROTOCOL};
  sd_count(extra_end ? SD_C_END_OTHER : endc[end], 1);
  sd_count(SD_C_MSG_ACCEPTED, st->messages_accepted);
  sd_count(SD_C_MSG_REJECTED, st->messages_rejected);
  sd_count(SD_C_MSG_TEMPFAILED, st->messages_tempfailed);
  sd_count(SD_C_RCPT_ACCEPTED, st->recipients_accepted);
  sd_count(SD_C_RCPT_RELAY_DENIED, st->recipients_relay_denied);
  sd_count(SD_C_CLIENT_IN, st->client_bytes_in);
  sd_count(SD_C_CLIENT_OUT, st->client_bytes_out);
  sd_count(SD_C_UP_IN, st->upstream_bytes_in);
  sd_count(SD_C_UP_OUT, st->upstream_bytes_out);
  if (st->tarpitted) sd_count(SD_C_TARPITTED, 1);
  sd_observe(SD_H_SESSION, dur / 1000u);
  if (st->delay_total) sd_observe(SD_H_DELAY, st->delay_total / 1000u);

  if (sd_log_level() < SD_LOG_INFO) return;
  sd_rec r;
  sd_rec_begin(&r, "info", "session");
  sd_rec_str(&r, "client", cli);
  sd_rec_u64(&r, "client_port", sl_relay_client_addr(RELAY(c))->port);
  sd_rec_str(&r, "local", loc);
  sd_rec_u64(&r, "local_port", local.port);
  sd_rec_str(&r, "listener", c->g->cfg->listen[c->listener].text);
  if (c->expect_proxy) sd_rec_str(&r, "proxy_protocol", "yes");
  static const char *const adm[] = {"accept", "tarpit", "tempfail"};
  sd_rec_str(&r, "admission", adm[c->admitted % 3]);
  if (x && x->tls_version && x->tls_version[0]) {
    sd_rec_str(&r, "tls", x->tls_version);
    sd_rec_str(&r, "tls_cipher", x->tls_cipher);
  }
  sd_rec_str(&r, "upstream", server_name(c, c->u->last));
  sd_rec_u64(&r, "upstream_attempts", st->upstream_attempts);
  if (x && x->nupfail) {
    /* "kind:server,...", items that fit whole in 63 characters */
    char upfail[64] = "", tmp[96];
    for (unsigned i = 0; i < x->nupfail; i++) {
      snprintf(tmp, sizeof tmp, "%s:%s", upfail_names[x->upfail[i] & 7],
               server_name(c, x->upfail[i] >> 8));
      strappend(upfail, sizeof upfail, tmp);
    }
    sd_rec_str(&r, "upstream_failures", upfail);
  }
  if (st->tls_upstream) sd_rec_str(&r, "upstream_tls", "yes");
  sd_rec_str(&r, "stage", stage_names[st->stage < 7 ? st->stage : 0]);
  sd_rec_str(&r, "end", extra_end ? extra_end : end_names[end]);
  sd_rec_i64(&r, "score", st->score);
  if (c->g->cfg->policy.ndnsbl) {
    sd_rec_u64(&r, "dnsbl_listed", x ? x->dns_listed : 0);
    sd_rec_u64(&r, "dnsbl_timeouts", x ? x->dns_timeouts : 0);
  }
  sd_rec_u64(&r, "pregreet_bytes", st->pregreet_bytes);
  sd_rec_str(&r, "tarpitted", st->tarpitted ? "yes" : "no");
  sd_rec_ms(&r, "delay_ms", st->delay_total);
  uint64_t inj = x ? x->injection_bytes : 0;
  if (inj || st->starttls_discarded)
    sd_rec_u64(&r, "starttls_injection_bytes",
               inj > st->starttls_discarded ? inj : st->starttls_discarded);
  if (st->sync_violations) sd_rec_u64(&r, "sync_violations", st->sync_violations);
  if (x && x->smuggling)
    sd_rec_str(&r, "smuggling", viol_names[x->smuggling < 6 ? x->smuggling : 0]);
  sd_rec_u64(&r, "commands", st->commands);
  sd_rec_u64(&r, "errors", st->errors);
  sd_rec_u64(&r, "junk", st->junk);
  sd_rec_u64(&r, "recipients", st->recipients_accepted);
  if (st->recipients_relay_denied)
    sd_rec_u64(&r, "relay_denied", st->recipients_relay_denied);
  sd_rec_u64(&r, "messages_accepted", st->messages_accepted);
  sd_rec_u64(&r, "messages_rejected", st->messages_rejected);
  sd_rec_u64(&r, "messages_tempfailed", st->messages_tempfailed);
  /* code:size per message, in order */
  char msgs[160] = "";
  for (unsigned i = 0; x && i < x->nmsgs && i < SD_MSGS_MAX; i++) {
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%" PRIu64 ":%" PRIu64, x->msgs[i] & 0xffff, x->msgs[i] >> 16);
    strappend(msgs, sizeof msgs, tmp);
  }
  sd_rec_str(&r, "messages", msgs);
  sd_rec_u64(&r, "last_upstream_code", st->last_upstream_code);
  sd_rec_u64(&r, "client_bytes_in", st->client_bytes_in);
  sd_rec_u64(&r, "client_bytes_out", st->client_bytes_out);
  sd_rec_u64(&r, "upstream_bytes_in", st->upstream_bytes_in);
  sd_rec_u64(&r, "upstream_bytes_out", st->upstream_bytes_out);
  sd_rec_ms(&r, "duration_ms", dur);
  sd_rec_emit(&r);
}

static void on_event(sd_conn *c, sl_event_kind kind, uint64_t arg) {
  switch (kind) {
  case SL_EV_PREGREET: sd_count(SD_C_PREGREET, 1); break;
  case SL_EV_DNSBL_SCORE:
    break; /* the final score is in the relay's stats */
  case SL_EV_TARPIT: break;
  case SL_EV_STARTTLS_INJECTION:
    sd_count(SD_C_STARTTLS_INJECTION, 1);
    if (xtra(c)) c->x->injection_bytes += arg;
    break;
  case SL_EV_SMUGGLING:
    sd_count(SD_C_SMUGGLING, 1);
    if (xtra(c)) c->x->smuggling = (uint8_t)(arg < 255 ? arg : 255);
    break;
  case SL_EV_UPSTREAM_READY: break;
  case SL_EV_UPSTREAM_FAILED: {
    static const enum sd_counter m[] = {SD_C_UPFAIL_CONNECT, SD_C_UPFAIL_CONNECT,
                                        SD_C_UPFAIL_TIMEOUT, SD_C_UPFAIL_CLOSED,
                                        SD_C_UPFAIL_MALFORMED, SD_C_UPFAIL_GREETING,
                                        SD_C_UPFAIL_TLS, SD_C_UPFAIL_IDENTITY};
    unsigned k = arg < 8 ? (unsigned)arg : 0;
    sd_count(m[k], 1);
    /* A greeting/protocol failure also counts against the server's health
       (the connect itself may have succeeded). */
    if (c->u->server && k >= SL_UPFAIL_TIMEOUT && k != SL_UPFAIL_IDENTITY)
      sd_upstream_report(c->u->server, 0, now_of(c));
    if (xtra(c) && c->x->nupfail < SD_UPFAIL_MAX)
      c->x->upfail[c->x->nupfail++] = (uint16_t)(k | (unsigned)c->u->last << 8);
    break;
  }
  case SL_EV_MESSAGE: {
    uint64_t code = arg & 0xffff, size = arg >> 16;
    sd_xtra *x = xtra(c);
    if (x && x->nmsgs < SD_MSGS_MAX) x->msgs[x->nmsgs++] = arg;
    if (code >= 200 && code < 300) sd_observe(SD_H_MSG_SIZE, size);
    break;
  }
  case SL_EV_SESSION_END: log_session(c, NULL); break;
  }
}

static int drain_requests(sd_conn *c) {
  sl_request req;
  int n = 0;
  while (n < 64 && sl_relay_next_request(RELAY(c), &req) == 1) {
    n++;
    switch (req.type) {
    case SL_REQ_CONNECT_UPSTREAM: connect_upstream(c, req.id); break;
    case SL_REQ_STARTTLS_CLIENT:
      if (c->g->tls_server == NULL || c->cfd < 0 ||
          (c->ctls = sd_tls_conn_new(c->g->tls_server, c->cfd, 1, NULL)) == NULL) {
        complete(c, req.id, SL_STATUS_FAILED);
        break;
      }
      c->c_hs = 1;
      c->c_hs_id = req.id;
      c->c_rblk = c->c_wblk = 0;
      break;
    case SL_REQ_STARTTLS_UPSTREAM:
      if (c->u->ufd < 0) complete(c, req.id, SL_STATUS_FAILED);
      else start_upstream_tls(c, req.id, 0);
      break;
    case SL_REQ_DNSBL_LOOKUP: dnsbl_lookup(c, req.id, req.u.dnsbl.zone); break;
    case SL_REQ_CLOSE_UPSTREAM: close_upstream(c); break;
    case SL_REQ_CLOSE_CLIENT: close_client(c); break;
    case SL_REQ_EVENT: on_event(c, req.u.event.kind, req.u.event.arg); break;
    }
  }
  return n > 0;
}

/* ---- byte pumps --------------------------------------------------------- */

/* Returns bytes (> 0), 0 EOF, -1 error, -2 would block. */
static long leg_read(int fd, sd_tls_conn *t, uint8_t *buf, size_t cap, uint8_t *tlswant) {
  if (t) {
    long n = sd_tls_read(t, buf, cap);
    if (n == -2) *tlswant = (uint8_t)sd_tls_want(t);
    return n;
  }
  for (;;) {
    ssize_t n = recv(fd, buf, cap, 0);
    if (n >= 0) return (long)n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -2 : -1;
  }
}

static long leg_write(int fd, sd_tls_conn *t, const uint8_t *buf, size_t len, uint8_t *tlswant) {
  if (t) {
    long n = sd_tls_write(t, buf, len);
    if (n == -2) *tlswant = (uint8_t)sd_tls_want(t);
    return n;
  }
  for (;;) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return (long)n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -2 : -1;
  }
}

static int read_client(sd_conn *c) {
  if (c->cfd < 0 || c->c_hs || c->c_eof) return 0;
  if (c->c_rblk && !(c->ctls && sd_tls_pending(c->ctls))) return 0;
  if (!(sl_relay_want(RELAY(c)) & SL_WANT_CLIENT_READ)) return 0;
  size_t cap = 0;
  uint64_t now = now_of(c);
  uint8_t *buf = sl_relay_client_in_buf(RELAY(c), &cap, now);
  if (buf == NULL || cap == 0) return 0;
  long n = leg_read(c->cfd, c->ctls, buf, cap, &c->c_tlswant);
  if (n == -2) {
    c->c_rblk = 1;
    /* Nothing came: an empty input buffer goes back to the pool, so an
       idle session holds none. */
    sl_relay_client_in_ack(RELAY(c), 0, now);
    return 0;
  }
  if (n > 0) {
    /* A short plaintext read drained the socket: wait for epoll (level-
       triggered, so nothing is missed) rather than try a read that would
       only block. */
    if (c->ctls == NULL && (size_t)n < cap) c->c_rblk = 1;
    sl_relay_client_in_ack(RELAY(c), (size_t)n, now);
    return 1;
  }
  c->c_eof = 1;
  if (n == 0) {
    /* A half-close: the relay still answers what it has read. */
    sl_relay_client_eof(RELAY(c), now);
  } else {
    c->c_broken = 1;
    sl_relay_abort(RELAY(c), now);
  }
  return 1;
}

static int read_upstream(sd_conn *c) {
  if (c->u->ufd < 0 || c->u->u_hs || c->u->u_connecting || c->u->u_eof) return 0;
  if (c->u->u_rblk && !(c->u->utls && sd_tls_pending(c->u->utls))) return 0;
  if (!(sl_relay_want(RELAY(c)) & SL_WANT_UPSTREAM_READ)) return 0;
  size_t cap = 0;
  uint64_t now = now_of(c);
  uint8_t *buf = sl_relay_upstream_in_buf(RELAY(c), &cap, now);
  if (buf == NULL || cap == 0) return 0;
  long n = leg_read(c->u->ufd, c->u->utls, buf, cap, &c->u->u_tlswant);
  if (n == -2) {
    c->u->u_rblk = 1;
    sl_relay_upstream_in_ack(RELAY(c), 0, now);
    return 0;
  }
  if (n > 0) {
    if (c->u->utls == NULL && (size_t)n < cap) c->u->u_rblk = 1;
    sl_relay_upstream_in_ack(RELAY(c), (size_t)n, now);
    return 1;
  }
  c->u->u_eof = 1;
  sl_relay_upstream_eof(RELAY(c), now);
  return 1;
}

static int write_client(sd_conn *c) {
  if (c->c_hs || (c->c_wblk && c->cfd >= 0 && !c->c_broken)) return 0;
  size_t len = 0;
  uint64_t now = now_of(c);
  const uint8_t *p = sl_relay_client_out(RELAY(c), &len, now);
  if (p == NULL || len == 0) return 0;
  if (c->cfd < 0 || c->c_broken) {
    /* The client is gone: its bytes have nowhere to go. */
    sl_relay_client_out_ack(RELAY(c), len, now);
    return 1;
  }
  long n = leg_write(c->cfd, c->ctls, p, len, &c->c_tlswant);
  if (n == -2) {
    c->c_wblk = 1;
    return 0;
  }
  if (n > 0) {
    sl_relay_client_out_ack(RELAY(c), (size_t)n, now);
    return 1;
  }
  c->c_broken = 1;
  if (!c->c_eof) {
    c->c_eof = 1;
    sl_relay_abort(RELAY(c), now);
  }
  return 1;
}

static int write_upstream(sd_conn *c) {
  if (c->u->u_hs || c->u->u_connecting || (c->u->u_wblk && c->u->ufd >= 0 && !c->u->u_broken)) return 0;
  size_t len = 0;
  uint64_t now = now_of(c);
  const uint8_t *p = sl_relay_upstream_out(RELAY(c), &len, now);
  if (p == NULL || len == 0) return 0;
  if (c->u->ufd < 0 || c->u->u_broken) {
    sl_relay_upstream_out_ack(RELAY(c), len, now);
    return 1;
  }
  long n = leg_write(c->u->ufd, c->u->utls, p, len, &c->u->u_tlswant);
  if (n == -2) {
    c->u->u_wblk = 1;
    return 0;
  }
  if (n > 0) {
    sl_relay_upstream_out_ack(RELAY(c), (size_t)n, now);
    return 1;
  }
  c->u->u_broken = 1;
  if (!c->u->u_eof) {
    c->u->u_eof = 1;
    sl_relay_upstream_eof(RELAY(c), now);
  }
  return 1;
}

static uint32_t tls_mask(uint8_t want) {
  uint32_t m = 0;
  if (want & SD_TLS_WANT_READ) m |= EPOLLIN;
  if (want & SD_TLS_WANT_WRITE) m |= EPOLLOUT;
  return m ? m : EPOLLIN;
}

static void update_masks(sd_conn *c, unsigned want) {
  if (c->cfd >= 0) {
    uint32_t m = 0;
    if (c->c_hs) {
      m = tls_mask(c->c_tlswant);
    } else {
      if ((want & SL_WANT_CLIENT_READ) && !c->c_eof) m |= EPOLLIN;
      if (c->c_wblk && !c->c_broken) m |= EPOLLOUT;
      if (c->ctls && c->c_tlswant && (c->c_rblk || c->c_wblk)) m |= tls_mask(c->c_tlswant);
    }
    if (c->c_hup && c->c_eof) {
      /* A hung-up socket is reported whatever the mask: stop listening or
         level-triggered epoll would spin on it. */
      if (c->cev != CEV_OFF) sd_loop_del(CW(c)->loop, c->cfd);
      c->cev = CEV_OFF;
    } else if (m != c->cev && c->cev != CEV_OFF) {
      sd_loop_mod(CW(c)->loop, c->cfd, m, &c->ch);
      c->cev = (uint8_t)m;
    }
  }
  if (c->u->ufd >= 0 && c->u->ureg) {
    uint32_t m = 0;
    if (c->u->u_connecting) m = EPOLLOUT;
    else if (c->u->u_hs) m = tls_mask(c->u->u_tlswant);
    else {
      if ((want & SL_WANT_UPSTREAM_READ) && !c->u->u_eof) m |= EPOLLIN;
      if (c->u->u_wblk && !c->u->u_broken) m |= EPOLLOUT;
      if (c->u->utls && c->u->u_tlswant && (c->u->u_rblk || c->u->u_wblk)) m |= tls_mask(c->u->u_tlswant);
    }
    if (c->u->u_hup && (c->u->u_eof || c->u->u_broken) && !c->u->u_connecting) {
      sd_loop_del(CW(c)->loop, c->u->ufd);
      c->u->ureg = 0;
    } else if (m != c->u->uev) {
      sd_loop_mod(CW(c)->loop, c->u->ufd, m, &c->u->uh);
      c->u->uev = m;
    }
  }
}

static void conn_run(sd_conn *c) {
  c->in_run = 1;
  for (int round = 0; round < RUN_ROUNDS; round++) {
    int progress = 0;
    if (c->c_hs && c->cfd >= 0 && !(c->c_rblk && c->c_wblk)) progress |= step_client_hs(c);
    if (c->u->u_connecting && !c->u->u_wblk) progress |= finish_connect(c);
    if (c->u->u_hs && c->u->ufd >= 0 && !(c->u->u_rblk && c->u->u_wblk)) progress |= step_upstream_hs(c);
    progress |= drain_requests(c);
    progress |= write_client(c);
    progress |= write_upstream(c);
    progress |= read_client(c);
    progress |= read_upstream(c);
    unsigned want = sl_relay_want(RELAY(c));
    if (c->c_hup && !c->c_eof && !(want & SL_WANT_CLIENT_READ)) {
      /* Reset or fully closed while the relay was not reading (e.g. a
         tarpit holding a reply): nobody is left to answer. */
      c->c_eof = 1;
      c->c_broken = 1;
      sl_relay_abort(RELAY(c), now_of(c));
      progress = 1;
    }
    if (c->u->u_hup && !c->u->u_eof && c->u->ufd >= 0 && !c->u->u_connecting &&
        !(want & SL_WANT_UPSTREAM_READ)) {
      c->u->u_eof = 1;
      c->u->u_broken = 1;
      sl_relay_upstream_eof(RELAY(c), now_of(c));
      progress = 1;
    }
    if (!progress) break;
  }
  c->in_run = 0;
  unsigned want = sl_relay_want(RELAY(c));
  if (want & SL_CLOSED) {
    conn_free(c);
    return;
  }
  if (sl_relay_last_error(RELAY(c)) && sl_err_is_fatal(sl_relay_last_error(RELAY(c)))) {
    sd_log(SD_LOG_ERR, "relay error %s; ending session", sl_err_name(sl_relay_last_error(RELAY(c))));
    log_session(c, "internal_error");
    conn_free(c);
    return;
  }
  update_masks(c, want);
  /* Requests left after the bounded rounds: come back at once, since the
     relay consumes no input until they are drained. */
  sd_timer_set(CW(c)->loop, &c->timer,
               (want & SL_WANT_REQUESTS) ? now_of(c) : sl_relay_next_deadline(RELAY(c)));
}

/* ---- epoll and timer callbacks ------------------------------------------ */

static void client_io(sd_handler *h, uint32_t ev) {
  sd_conn *c = (sd_conn *)(void *)((char *)h - offsetof(sd_conn, ch));
  if (c->dead) return;
  if (ev & (EPOLLERR | EPOLLHUP)) c->c_hup = 1;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) c->c_rblk = 0;
  if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) c->c_wblk = 0;
  conn_run(c);
}

static void upstream_io(sd_handler *h, uint32_t ev) {
  sd_conn *c = ((sd_uleg *)(void *)h)->c;
  if (c->dead) return;
  if (ev & (EPOLLERR | EPOLLHUP)) c->u->u_hup = 1;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) c->u->u_rblk = 0;
  if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) c->u->u_wblk = 0;
  conn_run(c);
}

static void conn_timer(sd_timer *t) {
  sd_conn *c = (sd_conn *)(void *)((char *)t - offsetof(sd_conn, timer));
  sl_relay_handle_expiry(RELAY(c), now_of(c));
  conn_run(c);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void conn_release(void *arg) {
  sd_conn *c = arg;
  sd_gen_unref(c->g);
  if (c->u != &no_uleg) free(c->u);
  free(c->x);
  free(c);
}

static void conn_free(sd_conn *c) {
  sd_worker *w = CW(c);
  if (c->dead) return;
  if (!c->logged) log_session(c, NULL);
  if (c->x) {
    for (sd_dnsq *q = c->x->dnsq; q; q = q->next) q->c = NULL; /* answered later, dropped */
    c->x->dnsq = NULL;
  }
  close_upstream(c);
  close_client(c);
  sd_timer_stop(w->loop, &c->timer);
  if (c->admitted != SL_ADMIT_TEMPFAIL && !c->expect_proxy && c->g->rl)
    sl_ratelim_release(c->g->rl, sl_relay_client_addr(RELAY(c))); /* no PROXY: the peer */
  sl_relay_free(RELAY(c));
  if (c->prev) c->prev->next = c->next;
  else w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  w->nconns--;
  sd_gauge_set(&sd_m->active[w->index], w->nconns);
  sd_gauge_set(&sd_m->pool_bytes[w->index], c->g->pool.allocated);
  c->dead = 1;
  /* epoll may still hold an event for the other leg in this batch. */
  sd_loop_defer(w->loop, conn_release, c);
}

void sd_conn_abort(sd_conn *c, const char *why) {
  log_session(c, why);
  conn_free(c);
}

static int trusted(const sd_config *cfg, const struct sockaddr *sa) {
  for (size_t i = 0; i < cfg->ntrusted; i++)
    if (sd_cidr_match(&cfg->trusted[i], sa)) return 1;
  return 0;
}

/* The cap across workers: each publishes its live count in shared memory. */
static int over_total(const sd_config *cfg) {
  if (!cfg->max_connections_total || !sd_m)
    return 0;
  uint64_t n = 0;
  for (size_t i = 0; i < SD_MAX_WORKERS; i++)
    n += __atomic_load_n(&sd_m->active[i], __ATOMIC_RELAXED);
  return n >= cfg->max_connections_total;
}

void sd_conn_accept(sd_worker *w, sd_listener *l, int fd, const struct sockaddr *peer,
                    socklen_t peerlen) {
  sd_gen *g = w->gen;
  const sd_config *cfg = g->cfg;
  uint64_t now = sd_loop_now(w->loop);
  (void)peerlen;
  if (w->nconns >= cfg->max_connections || over_total(cfg)) {
    sd_count(SD_C_REJECT_CAP, 1);
    sd_refuse(w, fd, l->tls, "Too many connections");
    return;
  }
  size_t rsize = sl_relay_size(&cfg->limits);
  sd_conn *c = malloc(sizeof *c + rsize);
  if (c == NULL) {
    sd_count(SD_C_REJECT_NOMEM, 1);
    sd_refuse(w, fd, l->tls, "Out of memory");
    return;
  }
  memset(c, 0, sizeof *c); /* the relay initialises its own state */
  c->ch.cb = client_io;
  c->u = (sd_uleg *)(uintptr_t)&no_uleg;
  sd_timer_init(&c->timer, conn_timer);
  c->g = g; /* referenced below once the session is sure to exist */
  c->cfd = fd;
  /* w->ls and g->cfg->listen are kept in step (sync_listeners) */
  c->listener = (uint16_t)(l - w->ls);
  c->listener_tls = l->tls != 0;
  sl_addr peer_addr, local_addr;
  to_sl_addr(peer, &peer_addr);
  struct sockaddr_storage ls;
  socklen_t lslen = sizeof ls;
  memset(&local_addr, 0, sizeof local_addr);
  if (getsockname(fd, (struct sockaddr *)&ls, &lslen) == 0)
    to_sl_addr((const struct sockaddr *)&ls, &local_addr);
  sl_addr laddr;
  to_sl_addr((const struct sockaddr *)&cfg->listen[c->listener].addr.ss, &laddr);
  if (memcmp(&laddr, &local_addr, sizeof laddr) != 0 && xtra(c)) {
    /* a wildcard listener: the address the client reached is kept */
    c->x->local = local_addr;
    c->x->have_local = 1;
  }
  set_nodelay(fd);

  sl_conn_info info;
  memset(&info, 0, sizeof info);
  info.client = peer_addr;
  info.local = local_addr;
  if (l->tls) info.flags |= SL_CONN_TLS;
  /* PROXY headers are honoured only from configured balancers; from anyone
     else the same bytes are just bad SMTP. */
  if (l->proxy && trusted(cfg, peer)) {
    info.flags |= SL_CONN_EXPECT_PROXY;
    c->expect_proxy = 1;
  }
  /* Per-IP limits key on the socket's peer; behind a balancer that is the
     balancer itself, so PROXY sessions are not limited here. */
  info.admission = SL_ADMIT_ACCEPT;
  if (!c->expect_proxy && g->rl) info.admission = sl_ratelim_admit(g->rl, &peer_addr, now);
  c->admitted = (unsigned)info.admission & 3u;
  if (info.admission == SL_ADMIT_TARPIT) sd_count(SD_C_ADMIT_TARPIT, 1);
  if (info.admission == SL_ADMIT_TEMPFAIL) sd_count(SD_C_ADMIT_TEMPFAIL, 1);
  /* Screen-first greets before it knows its upstream: it offers only what
     the healthy pool took at its last health checks (guarantee 8). */
  if (sd_upstreams_features(g->ups, &info.pool_features, &info.pool_size))
    info.flags |= SL_CONN_POOL_CAPS;

  uint64_t seed = w->seed ^ (now * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)c;
  sl_relay *r = NULL;
  int rc = sl_relay_init(&r, c->mem, rsize, &cfg->limits, &cfg->policy, &g->slpool, &info,
                         seed, now);
  if (rc == 0 && r != RELAY(c)) {
    /* RELAY() relies on the relay living at the start of its block */
    sl_relay_free(r);
    rc = SL_ERR_INVALID_ARGUMENT;
  }
  if (rc != 0) {
    sd_log(SD_LOG_ERR, "relay init: %s", sl_strerror(rc));
    if (info.admission != SL_ADMIT_TEMPFAIL && g->rl) sl_ratelim_release(g->rl, &peer_addr);
    free(c->x);
    free(c);
    sd_count(SD_C_REJECT_NOMEM, 1);
    sd_refuse(w, fd, l->tls, "Internal error");
    return;
  }
  if (sd_loop_add(w->loop, fd, EPOLLIN, &c->ch) != 0) {
    sl_relay_free(RELAY(c));
    if (info.admission != SL_ADMIT_TEMPFAIL && g->rl) sl_ratelim_release(g->rl, &peer_addr);
    free(c->x);
    free(c);
    close(fd);
    return;
  }
  c->cev = EPOLLIN;
  /* Level-triggered epoll reports bytes already waiting; until it does, no
     read is tried, so no input buffer is borrowed for an idle client. */
  c->c_rblk = 1;
  sd_gen_ref(g);
  c->next = w->conns;
  if (c->next) c->next->prev = c;
  w->conns = c;
  w->nconns++;
  sd_count(SD_C_ACCEPTED, 1);
  sd_gauge_set(&sd_m->active[w->index], w->nconns);
  if (l->tls) {
    /* Implicit TLS: the relay already counts the leg as TLS; nothing moves
       on it until the handshake is done. */
    c->ctls = g->tls_server ? sd_tls_conn_new(g->tls_server, fd, 1, NULL) : NULL;
    if (c->ctls == NULL) {
      sd_conn_abort(c, "tls_unavailable");
      return;
    }
    c->c_hs = 1;
    c->c_hs_implicit = 1;
  }
  conn_run(c);
}
