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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd_conn.h"

#include "sd_check.h"
#include "sd_filter.h"
#include "sd_log.h"
#include "sluice/filter.h"
#include "sluice/proxy.h"

/* Bounded work per wake-up, so that one busy session cannot starve the
   others; conn_run comes back for the rest through its timer. */
#define RUN_ROUNDS 64

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
#define SD_REPLY_MAX 100 /* bytes of a reply line kept for the log */
#define SD_REPLY_RING 6

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
  uint8_t u_hs; /* handshake in progress */
  uint8_t u_connecting;
  uint8_t
      u_implicit_pending; /* implicit TLS upstream: connect then handshake */
  uint8_t u_rblk, u_wblk, u_tlswant, u_eof, u_hup, u_broken;
  uint8_t last; /* 1 + index of the last server picked, 0: none (log line) */
  /* upstream_wait: refused connects retried with back-off while every
     server has been tried, until wait_until (0: not waiting yet). */
  sd_timer retry;
  uint64_t wait_until;
  uint32_t backoff_ms, retries;
  /* Servers that refused this session's identity (XCLIENT): never tried
     again for it. */
  uint64_t identity_refused;
  const char *why; /* the last connect failure (a static string), for the log */
  /* The upstream's last final reply lines (a copy of what the relay read,
     for the log: a failure's reason, each message's queue id).  line is
     the one being read; ring holds the last SD_REPLY_RING, oldest first
     from ring_next; since counts those read after the last message. */
  char line[SD_REPLY_MAX];
  uint8_t line_len, ring_next, since;
  char ring[SD_REPLY_RING][SD_REPLY_MAX];
} sd_uleg;

static const sd_uleg no_uleg = {.ufd = -1};

/* What only some sessions need, allocated on first use: DNS queries, TLS
   names, the local address behind a wildcard listener, and the log line's
   lists.  A held plaintext session has none. */
#define SD_UPFAIL_MAX 8
#define SD_MSGS_MAX 12
#define SD_REFUSALS_MAX 480 /* bytes of the log line's refusals field */
#define SD_REFUSALS_N 16    /* refusals kept per session */
typedef struct sd_xtra {
  sd_dnsq *dnsq;
  const char *tls_version, *tls_cipher; /* OpenSSL's static strings */
  uint64_t injection_bytes;
  struct {
    uint64_t size;
    uint16_t code;
  } msgs[SD_MSGS_MAX]; /* each SL_EV_MESSAGE, in order */
  uint32_t nmsgs;
  uint32_t dns_listed, dns_timeouts;
  struct {
    sl_upstream_failure failure;
    uint8_t server; /* 1 + index, as sd_uleg.last */
  } upfail[SD_UPFAIL_MAX];
  uint8_t nupfail;
  sl_violation smuggling;
  uint8_t have_local;
  sl_addr local;
  /* client_name_lookup: the name for XCLIENT NAME= (malloc'ed, verified or
     "[UNAVAILABLE]"/"[TEMPUNAVAIL]"), the PTR name being confirmed, and an
     upstream connect held until the lookup is over. */
  char *client_name, *ptr_name;
  uint8_t name_state; /* 0 no lookup, 1 looking up, 2 done */
  uint8_t connect_held;
  uint32_t held_id;
  char *upreply;  /* the upstream's reply when it failed */
  char *pregreet; /* the first bytes sent before the greeting, escaped */
  /* Each 4xx/5xx reply the client was sent: what it answered and its code
     from the relay (SL_EV_REFUSAL), and the final line as written to the
     client (its text, malloc'ed).  Both come in the order the client reads
     them, so the n-th of each belong together. */
  struct {
    sl_command command;
    uint16_t code;
  } refs[SD_REFUSALS_N];
  uint8_t nrefs, nreftext;
  char *reftext[SD_REFUSALS_N];
  char refline[SD_REPLY_MAX]; /* the line being sent */
  uint8_t reflen;
  char *msgtext[SD_MSGS_MAX]; /* each message's final reply line */
  sd_check *check;            /* the RCPT check out (sd_check.h), or NULL */
  uint8_t check_milter;       /* the milters are asked (sd_filters_rcpt) */
  uint8_t check_not_rcpt;     /* the check is at EHLO, MAIL or DATA
                                 (policy_stages): no milter RCPT verdict */
  char check_rcpt[SL_CHECK_TEXT_MAX];   /* the recipient the check is about */
  char check_sender[SL_CHECK_TEXT_MAX]; /* and its transaction's sender */
  uint32_t check_id;
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
  uint16_t listener; /* index into g->cfg->listen */
  uint8_t cev;       /* epoll mask registered (EPOLLIN|EPOLLOUT fit); CEV_OFF */
  uint8_t c_tlswant; /* sd_tls_want() after -2 */
  unsigned c_hs : 1, c_hs_implicit : 1; /* handshake; implicit TLS on accept */
  unsigned c_rblk : 1, c_wblk : 1;      /* last I/O would block */
  unsigned c_eof : 1, c_hup : 1, c_broken : 1;
  unsigned in_run : 1, logged : 1, admitted : 2, expect_proxy : 1,
      listener_tls : 1;
  unsigned
      counted : 1; /* live in the admission table: release once at the end */
  unsigned pass_old : 1; /* passed screening before: not screened again */
  unsigned dead : 1;     /* freed at the end of the loop iteration */
  unsigned out_mid : 1,
      out_cap : 1;        /* client output: inside a line; in a 4xx/5xx line */
  sd_state_ticket ticket; /* the admission counts this session is in */
  char *helo;             /* the client's HELO/EHLO argument (malloc'ed) */
  /* Content filters (sd_filter.c): made at the first filtered MAIL.  In
     spool mode the changed message goes upstream from inj[] before the
     relay is told the verdict (and so writes the terminator). */
  sd_filters *flt;
  uint8_t *inj;
  size_t inj_len, inj_off;
  uint32_t inj_id;
  int inj_verdict;
  unsigned injecting : 1;
  /* The relay's state; sl_relay_init() puts it at the start of mem. */
  _Alignas(8) unsigned char mem[];
};

#define CEV_OFF 0xffu
#define RELAY(c) ((sl_relay *)(void *)(c)->mem)
/* A session's sd_conns embeds the host of the session's generation
   (sd_conn.h), which spares struct sd_conn a pointer of its own. */
static sd_conns *conns_of(const sd_conn *c) {
  return (sd_conns *)(void *)((char *)c->g->host -
                              offsetof(sd_conns, gen_host));
}
#define CS(c) conns_of(c)

static void conn_run(sd_conn *c);
static void conn_free(sd_conn *c);
static void upstream_io(sd_handler *h, uint32_t ev);

static uint64_t now_of(const sd_conn *c) { return sd_loop_now(CS(c)->loop); }

static uint64_t fmix(uint64_t h);
static const char *reply_back(const sd_uleg *u, unsigned k);

/* The session id as 16 hex digits. */
typedef struct sd_sid {
  char s[17];
} sd_sid;
static sd_sid sid_of(sd_conn *c) {
  sd_sid v;
  /* Derived, not stored (a held session's bytes count): the worker's
     random seed, the session's start (ns) and its block's address. */
  uint64_t id =
      fmix(CS(c)->seed ^ fmix(sl_relay_stats(RELAY(c))->start ^ (uintptr_t)c));
  snprintf(v.s, sizeof v.s, "%016" PRIx64, id);
  return v;
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static sd_xtra *xtra(sd_conn *c) {
  if (c->x == NULL)
    c->x = calloc(1, sizeof *c->x);
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
    const struct sockaddr_in6 *in6 =
        (const struct sockaddr_in6 *)(const void *)sa;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
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
  if (n + m + 1 > cap)
    return;
  if (n)
    dst[n++] = ',';
  memcpy(dst + n, s, strlen(s) + 1);
}

/* ---- refusing ---------------------------------------------------------- */

void sd_refuse(sd_conns *s, const sd_gen *g, int fd, int tls, const char *why) {
  if (!tls) {
    char line[300];
    const char *host = g ? g->cfg->policy.hostname : "localhost";
    int n = snprintf(line, sizeof line, "421 4.7.0 %s %s, try again later\r\n",
                     host, why);
    /* A fresh socket's send buffer takes one short line; if not, the client
       sees the close, which also means "try later". */
    ssize_t wr = send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)wr;
  }
  sd_linger_close(&s->lingers, fd);
}

/* ---- legs ---------------------------------------------------------------- */

static void close_upstream(sd_conn *c) {
  /* a changed message being sent dies with its leg (the relay has made
     its end a 451 and will not take the verdict) */
  c->injecting = 0;
  c->inj_len = c->inj_off = 0;
  if (c->u == &no_uleg)
    return;
  /* A pending upstream_wait retry belongs to the leg being closed (the
     relay may have given up on the attempt: its timeout, the client gone). */
  sd_timer_stop(CS(c)->loop, &c->u->retry);
  if (c->u->utls) {
    sd_tls_conn_free(c->u->utls);
    c->u->utls = NULL;
  }
  if (c->u->ufd >= 0) {
    if (c->u->ureg)
      sd_loop_del(CS(c)->loop, c->u->ufd);
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
  if (c->cfd < 0)
    return;
  if (c->ctls) {
    /* sends close_notify when the session is healthy */
    sd_tls_conn_free(c->ctls);
    c->ctls = NULL;
  }
  sd_loop_del(CS(c)->loop, c->cfd);
  sd_linger_close(&CS(c)->lingers, c->cfd);
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

static void connect_upstream(sd_conn *c, uint32_t id);

static void retry_timer(sd_timer *t) {
  sd_uleg *u = (sd_uleg *)(void *)((char *)t - offsetof(sd_uleg, retry));
  sd_conn *c = u->c;
  if (c->dead)
    return;
  u->tried = u->identity_refused; /* a new round over every server */
  u->retries++;
  connect_upstream(c, u->u_conn_id);
  conn_run(c);
}

/* A refused connect with every server tried: with upstream_wait, try the
   round again after a back-off (50 ms doubling to 1 s) rather than fail
   the attempt, so an upstream restart costs the client a short wait, not
   a 4xx.  Returns 1 when a retry is scheduled. */
static int wait_for_upstream(sd_conn *c) {
  const sd_config *cfg = c->g->cfg;
  sd_uleg *u = c->u;
  uint64_t now = now_of(c);
  if (cfg->upstream_wait == 0 || u == &no_uleg)
    return 0;
  for (uint32_t i = 0; i < c->g->ups->n && i < 64; i++)
    if (!(u->tried & (1ull << i)))
      return 0; /* another server is left: fail over */
  if (u->wait_until == 0) {
    u->wait_until = now + cfg->upstream_wait;
    u->backoff_ms = 50;
  }
  uint64_t at = now + (uint64_t)u->backoff_ms * SL_MSEC;
  if (at >= u->wait_until)
    return 0;
  u->backoff_ms = u->backoff_ms >= 500 ? 1000 : u->backoff_ms * 2;
  sd_timer_set(CS(c)->loop, &u->retry, at);
  return 1;
}

/* may_wait: a TCP connect failure (refused, unreachable), which
   upstream_wait may ride out; TLS and later failures never wait. */
static void upstream_failed_how(sd_conn *c, const char *why, int may_wait) {
  if (c->u != &no_uleg)
    c->u->why = why;
  if (c->u->server) {
    sd_upstream_report(c->u->server, 0, now_of(c));
    if (c->u->server->index < SD_MAX_SERVERS)
      __atomic_fetch_add(&sd_m->srv_connect_fail[c->u->server->index], 1,
                         __ATOMIC_RELAXED);
    sd_log(SD_LOG_DEBUG, "upstream %s: %s", c->u->server->cfg->text, why);
  }
  uint32_t id = c->u->u_conn_id;
  close_upstream(c);
  if (may_wait && wait_for_upstream(c))
    return;
  complete(c, id, SL_STATUS_FAILED);
}

static void upstream_failed(sd_conn *c, const char *why) {
  upstream_failed_how(c, why, 0);
}

static void upstream_ready(sd_conn *c) {
  if (c->u->server) {
    sd_upstream_report(c->u->server, 1, now_of(c));
    if (c->u->server->index < SD_MAX_SERVERS) {
      __atomic_fetch_add(&sd_m->srv_connect_ok[c->u->server->index], 1,
                         __ATOMIC_RELAXED);
    }
  }
  complete(c, c->u->u_conn_id, SL_STATUS_OK);
}

static void start_upstream_tls(sd_conn *c, uint32_t id, int implicit) {
  const sd_config *cfg = c->g->cfg;
  const char *name = cfg->upstream_tls_name;
  c->u->utls = c->g->tls_client
                   ? sd_tls_conn_new(c->g->tls_client, c->u->ufd, 0, name)
                   : NULL;
  if (c->u->utls == NULL) {
    sd_count(SD_C_TLS_UP_FAIL, 1);
    if (implicit)
      upstream_failed(c, "no TLS context");
    else
      complete(c, id, SL_STATUS_FAILED);
    return;
  }
  c->u->u_hs = 1;
  c->u->u_hs_id = id;
  c->u->u_implicit_pending = (uint8_t)implicit;
  c->u->u_rblk = c->u->u_wblk = 0;
}

static void connect_upstream(sd_conn *c, uint32_t id) {
  uint64_t now = now_of(c);
  if (c->x && c->x->name_state == 1) {
    /* XCLIENT needs the name: connect when the lookup is over (bounded by
       dns_timeout x dns_tries; the relay's connect timeout runs too). */
    c->x->connect_held = 1;
    c->x->held_id = id;
    return;
  }
  if (c->u == &no_uleg) {
    sd_uleg *u = calloc(1, sizeof *u);
    if (u == NULL) {
      complete(c, id, SL_STATUS_FAILED);
      return;
    }
    u->uh.cb = upstream_io;
    u->c = c;
    u->ufd = -1;
    sd_timer_init(&u->retry, retry_timer);
    c->u = u;
  }
  close_upstream(c);
  c->u->u_conn_id = id;
  c->u->tried |= c->u->identity_refused;
  sd_server *s = sd_upstream_pick(c->g->ups, &c->u->tried, now);
  if (s == NULL) {
    /* Every server was tried once: start a new round rather than fail while
       the relay still allows attempts; never with a server that refused
       this client's identity (it would refuse it again: an IPv6 client and
       a Postfix with inet_protocols = ipv4). */
    c->u->tried = c->u->identity_refused;
    s = sd_upstream_pick(c->g->ups, &c->u->tried, now);
  }
  if (s == NULL) {
    complete(c, id, SL_STATUS_FAILED);
    return;
  }
  c->u->server = s;
  sd_upstream_acquire(s);
  c->u->last = (uint8_t)(s->index + 1);
  int fd = socket(s->cfg->addr.ss.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    sd_log(SD_LOG_WARN, "upstream socket: %s", strerror(errno));
    upstream_failed(c, "socket");
    return;
  }
  c->u->ufd = fd;
  set_nodelay(fd);
  if (connect(fd, (const struct sockaddr *)&s->cfg->addr.ss,
              s->cfg->addr.len) == 0) {
    c->u->u_connecting = 0;
  } else if (errno == EINPROGRESS) {
    c->u->u_connecting = 1;
    c->u->u_wblk = 1; /* wait for EPOLLOUT */
  } else {
    upstream_failed_how(c, strerror(errno), 1);
    return;
  }
  if (sd_loop_add(CS(c)->loop, fd, c->u->u_connecting ? EPOLLOUT : EPOLLIN,
                  &c->u->uh) != 0) {
    upstream_failed(c, "epoll");
    return;
  }
  c->u->ureg = 1;
  c->u->uev = c->u->u_connecting ? EPOLLOUT : EPOLLIN;
  if (!c->u->u_connecting) {
    if (c->g->cfg->policy.upstream_tls == SL_UPTLS_IMPLICIT)
      start_upstream_tls(c, id, 1);
    else
      upstream_ready(c);
  }
}

static int finish_connect(sd_conn *c) {
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(c->u->ufd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
    err = errno;
  if (err == 0 && c->u->u_hup)
    err = ECONNREFUSED;
  c->u->u_connecting = 0;
  c->u->u_wblk = 0;
  if (err != 0) {
    upstream_failed_how(c, strerror(err), 1);
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
    if (!c->c_hs_implicit)
      complete(c, c->c_hs_id, SL_STATUS_OK);
  } else {
    sd_count(SD_C_TLS_CLIENT_FAIL, 1);
    sd_log(SD_LOG_DEBUG, "client TLS handshake failed: %s",
           sd_tls_error(c->ctls));
    /* Nothing more can be said to this client in either protocol. */
    c->c_broken = 1;
    if (!c->c_hs_implicit)
      complete(c, c->c_hs_id, SL_STATUS_FAILED);
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
    if (implicit)
      upstream_ready(c);
    else
      complete(c, c->u->u_hs_id, SL_STATUS_OK);
  } else {
    sd_count(SD_C_TLS_UP_FAIL, 1);
    sd_log(SD_LOG_INFO, "upstream %s TLS handshake failed: %s",
           server_name(c, c->u->last), sd_tls_error(c->u->utls));
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
  case SD_DNS_OK:
    sd_count(SD_C_DNS_LISTED, 1);
    break;
  case SD_DNS_NOTFOUND:
    sd_count(SD_C_DNS_NOTLISTED, 1);
    break;
  case SD_DNS_TIMEOUT:
    sd_count(SD_C_DNS_TIMEOUT, 1);
    break;
  default:
    sd_count(SD_C_DNS_ERROR, 1);
    break;
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
      if (!c->in_run)
        conn_run(c);
    }
  }
  free(q);
}

static void dnsbl_lookup(sd_conn *c, uint32_t id, uint32_t zone) {
  const sl_policy *p = &c->g->cfg->policy;
  char name[300];
  if (c->g->dns == NULL || zone >= p->ndnsbl ||
      sl_addr_dnsbl_name(sl_relay_client_addr(RELAY(c)), p->dnsbl[zone].zone,
                         name, sizeof name) < 0) {
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

/* ---- RCPT checks: policy service, greylisting (sd_check.h) ----------------
 */

static void check_complete(sd_conn *c, uint32_t id, uint16_t code,
                           const char *text) {
  sl_completion comp;
  memset(&comp, 0, sizeof comp);
  comp.id = id;
  comp.status = SL_STATUS_OK;
  comp.check_code = code;
  snprintf(comp.check_text, sizeof comp.check_text, "%s", text);
  sl_relay_complete(RELAY(c), &comp, now_of(c));
}

static void milter_rcpt_done(void *ctx, uint16_t code, const char *text) {
  sd_conn *c = ctx;
  c->x->check_milter = 0;
  check_complete(c, c->x->check_id, code, text);
  if (!c->in_run)
    conn_run(c);
}

/* The policy checks passed: the milters are asked next (Postfix calls
   its milters after smtpd's restrictions).  1 if answered now. */
static int rcpt_check_milters(sd_conn *c, const char *rcpt, uint16_t *code,
                              char *text) {
  if (c->x->check_not_rcpt) {
    *code = 0; /* the policy service's stage, not a recipient */
    text[0] = 0;
    return 1;
  }
  if (sd_filters_rcpt(c->flt, c->x->check_sender, rcpt, milter_rcpt_done, c,
                      code, text))
    return 1;
  c->x->check_milter = 1;
  return 0;
}

static void check_done(void *ctx, uint16_t code, const char *text) {
  sd_conn *c = ctx;
  c->x->check = NULL;
  if (code == 0) {
    uint16_t mc;
    char mt[SL_CHECK_TEXT_MAX];
    if (!rcpt_check_milters(c, c->x->check_rcpt, &mc, mt))
      return;
    code = mc;
    text = mt;
    check_complete(c, c->x->check_id, code, text);
  } else {
    check_complete(c, c->x->check_id, code, text);
  }
  if (!c->in_run)
    conn_run(c);
}

static void rcpt_check(sd_conn *c, const sl_request *q) {
  sd_xtra *x = xtra(c);
  if (x == NULL) {
    complete(c, q->id, SL_STATUS_FAILED); /* no memory: unchecked */
    return;
  }
  sd_sid sid = sid_of(c);
  sd_check_facts f = {sl_relay_client_addr(RELAY(c)), x->client_name, sid.s, q};
  uint16_t code;
  char text[SL_CHECK_TEXT_MAX];
  sd_check *k;
  x->check_id = q->id;
  x->check_not_rcpt = q->check.stage && q->check.stage != SL_CMD_RCPT;
  snprintf(x->check_rcpt, sizeof x->check_rcpt, "%s", q->check.rcpt);
  snprintf(x->check_sender, sizeof x->check_sender, "%s", q->check.sender);
  if (sd_check_start(CS(c)->loop, CS(c)->state, c->g->dns, c->g->cfg, &f,
                     check_done, c, &code, text, &k) == SD_STATE_DONE) {
    if (code == 0 && !rcpt_check_milters(c, x->check_rcpt, &code, text))
      return;
    check_complete(c, q->id, code, text);
    return;
  }
  x->check = k;
}

/* ---- the client's name (XCLIENT NAME=) ------------------------------------
 */

/* Postfix's rule for a usable name: letters, digits, hyphens and dots,
   labels of 1 to 63, at most 255 in all, and not an address in disguise. */
static int valid_hostname(const char *n) {
  size_t len = strlen(n), label = 0;
  int alpha = 0;
  if (len == 0 || len > 255)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = n[i];
    if (ch == '.') {
      if (label == 0 && i + 1 < len)
        return 0;
      label = 0;
    } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
               ch == '-' || (ch >= '0' && ch <= '9')) {
      if (++label > 63)
        return 0;
      if (!(ch >= '0' && ch <= '9'))
        alpha = 1;
    } else {
      return 0;
    }
  }
  return alpha;
}

static void name_finish(sd_conn *c, const char *name) {
  sd_xtra *x = c->x;
  x->client_name = strdup(name);
  sl_relay_set_client_name(RELAY(c), x->client_name); /* NULL: [UNAVAILABLE] */
  x->name_state = 2;
  if (x->connect_held) {
    x->connect_held = 0;
    connect_upstream(c, x->held_id);
  }
  if (!c->in_run)
    conn_run(c);
}

/* A query of this session's name lookup ended: unlinks q, returns its
   session or NULL (session gone, or lookups cancelled). */
static sd_conn *name_query_done(sd_dnsq *q, int status) {
  sd_conn *c = q->c;
  if (c != NULL)
    for (sd_dnsq **pp = &c->x->dnsq; *pp; pp = &(*pp)->next)
      if (*pp == q) {
        *pp = q->next;
        break;
      }
  free(q);
  return status == SD_DNS_CANCELLED ? NULL : c;
}

static const char *name_failure(int status) {
  /* No such name: permanent.  No answer, or an error: temporary (Postfix's
     TRY_AGAIN), so a reject_unknown_client_hostname says 450, not 550. */
  return status == SD_DNS_NOTFOUND ? "[UNAVAILABLE]" : "[TEMPUNAVAIL]";
}

static void fwd_a_done(void *arg, int status, const uint32_t *a, size_t n) {
  sd_conn *c = name_query_done(arg, status);
  if (c == NULL)
    return;
  const sl_addr *ca = sl_relay_client_addr(RELAY(c));
  uint32_t want = (uint32_t)ca->bytes[0] << 24 | (uint32_t)ca->bytes[1] << 16 |
                  (uint32_t)ca->bytes[2] << 8 | ca->bytes[3];
  if (status != SD_DNS_OK) {
    name_finish(c, name_failure(status));
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (a[i] == want) {
      name_finish(c, c->x->ptr_name);
      return;
    }
  name_finish(c, "[UNAVAILABLE]"); /* the name does not lead back: forged */
}

static void fwd_aaaa_done(void *arg, int status, const uint8_t (*a)[16],
                          size_t n) {
  sd_conn *c = name_query_done(arg, status);
  if (c == NULL)
    return;
  const sl_addr *ca = sl_relay_client_addr(RELAY(c));
  if (status != SD_DNS_OK) {
    name_finish(c, name_failure(status));
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (memcmp(a[i], ca->bytes, 16) == 0) {
      name_finish(c, c->x->ptr_name);
      return;
    }
  name_finish(c, "[UNAVAILABLE]");
}

static sd_dnsq *name_query(sd_conn *c) {
  sd_dnsq *q = calloc(1, sizeof *q);
  if (q == NULL)
    return NULL;
  q->c = c;
  q->zone = UINT32_MAX; /* not a DNSBL zone */
  q->next = c->x->dnsq;
  c->x->dnsq = q;
  return q;
}

static void name_unlink(sd_conn *c, sd_dnsq *q) {
  c->x->dnsq = q->next; /* q was pushed last */
  free(q);
}

static void ptr_done(void *arg, int status, const char *name) {
  sd_conn *c = name_query_done(arg, status);
  if (c == NULL)
    return;
  if (status != SD_DNS_OK) {
    name_finish(c, name_failure(status));
    return;
  }
  char n[256];
  snprintf(n, sizeof n, "%s", name);
  size_t len = strlen(n);
  if (len && n[len - 1] == '.')
    n[len - 1] = 0;
  if (!valid_hostname(n) || (c->x->ptr_name = strdup(n)) == NULL) {
    name_finish(c, "[UNAVAILABLE]");
    return;
  }
  const sl_addr *ca = sl_relay_client_addr(RELAY(c));
  sd_dnsq *q = name_query(c);
  int rc = -1;
  if (q && ca->family == SL_AF_INET)
    rc = sd_dns_query_a(c->g->dns, n, fwd_a_done, q);
  else if (q)
    rc = sd_dns_query_aaaa(c->g->dns, n, fwd_aaaa_done, q);
  if (rc != 0) {
    if (q)
      name_unlink(c, q);
    name_finish(c, "[TEMPUNAVAIL]");
  }
}

/* Starts the lookup of the client's name (for XCLIENT), from accept or
   once a PROXY header named the client. */
static void name_lookup_start(sd_conn *c, const sl_addr *a) {
  const sd_config *cfg = c->g->cfg;
  if (!cfg->client_name_lookup ||
      (cfg->policy.identity != SL_IDENT_XCLIENT &&
       cfg->policy.identity != SL_IDENT_XFORWARD) ||
      c->g->dns == NULL || a->family == SL_AF_UNSPEC || xtra(c) == NULL)
    return;
  char rev[128];
  if (sl_addr_dnsbl_name(a,
                         a->family == SL_AF_INET ? "in-addr.arpa" : "ip6.arpa",
                         rev, sizeof rev) < 0)
    return;
  sd_dnsq *q = name_query(c);
  if (q == NULL)
    return;
  if (sd_dns_query_ptr(c->g->dns, rev, ptr_done, q) != 0) {
    name_unlink(c, q);
    return;
  }
  c->x->name_state = 1;
}

/* ---- events ------------------------------------------------------------- */

/* "RCPT 550 5.1.1 <bad@example.test>: ...; MAIL 553 ...": each refusal
   with the command it answered, as whole items within cap (a reply the
   client never got, its session aborted, shows without text). */
static void refusals_field(const sd_xtra *x, char *out, size_t cap) {
  size_t n = 0;
  out[0] = 0;
  for (unsigned i = 0; i < x->nrefs; i++) {
    const char *text = i < x->nreftext ? x->reftext[i] : NULL;
    if (text && (unsigned)atoi(text) != x->refs[i].code)
      text = NULL;
    char item[SD_REPLY_MAX + 32];
    if (text)
      snprintf(item, sizeof item, "%s%s %s", n ? "; " : "",
               sl_command_name(x->refs[i].command), text);
    else
      snprintf(item, sizeof item, "%s%s %u", n ? "; " : "",
               sl_command_name(x->refs[i].command), x->refs[i].code);
    size_t m = strlen(item);
    if (n + m + 1 > cap)
      break;
    memcpy(out + n, item, m + 1);
    n += m;
  }
}

static void log_session(sd_conn *c, const char *extra_end) {
  if (c->logged)
    return;
  c->logged = 1;
  const sl_stats *st = sl_relay_stats(RELAY(c));
  char cli[SL_ADDR_STRLEN], loc[SL_ADDR_STRLEN];
  sl_addr_format(sl_relay_client_addr(RELAY(c)), cli, sizeof cli);
  sl_addr local;
  const sd_xtra *x = c->x;
  if (x && x->have_local)
    local = x->local;
  else
    to_sl_addr((const struct sockaddr *)&c->g->cfg->listen[c->listener].addr.ss,
               &local);
  sl_addr_format(&local, loc, sizeof loc);
  uint64_t now = now_of(c);
  uint64_t dur = now - st->start;
  sl_end_reason end = (sl_end_reason)st->end_reason;

  /* metrics */
  sd_count(extra_end ? SD_C_END_NONE : sd_c_end(end), 1);
  sd_count(SD_C_MSG_ACCEPTED, st->messages_accepted);
  sd_count(SD_C_MSG_REJECTED, st->messages_rejected);
  sd_count(SD_C_MSG_TEMPFAILED, st->messages_tempfailed);
  sd_count(SD_C_RCPT_ACCEPTED, st->recipients_accepted);
  sd_count(SD_C_RCPT_RELAY_DENIED, st->recipients_relay_denied);
  sd_count(SD_C_CLIENT_IN, st->client_bytes_in);
  sd_count(SD_C_CLIENT_OUT, st->client_bytes_out);
  sd_count(SD_C_UP_IN, st->upstream_bytes_in);
  sd_count(SD_C_UP_OUT, st->upstream_bytes_out);
  if (st->tarpitted)
    sd_count(SD_C_TARPITTED, 1);
  sd_observe(SD_H_SESSION, dur / 1000u);
  if (st->delay_total)
    sd_observe(SD_H_DELAY, st->delay_total / 1000u);

  if (sd_log_level() < SD_LOG_INFO)
    return;
  sd_rec r;
  sd_rec_begin(&r, "info", "session");
  sd_rec_str(&r, "session", sid_of(c).s);
  sd_rec_str(&r, "client", cli);
  sd_rec_u64(&r, "client_port", sl_relay_client_addr(RELAY(c))->port);
  sd_rec_str(&r, "local", loc);
  sd_rec_u64(&r, "local_port", local.port);
  if (c->x && c->x->client_name)
    sd_rec_str(&r, "client_name", c->x->client_name);
  sd_rec_str(&r, "listener", c->g->cfg->listen[c->listener].text);
  if (c->helo)
    sd_rec_str(&r, "helo", c->helo);
  if (c->expect_proxy)
    sd_rec_str(&r, "proxy_protocol", "yes");
  sd_rec_str(&r, "admission", sl_admission_name((sl_admission)c->admitted));
  if (c->pass_old)
    sd_rec_str(&r, "screen", "pass_old");
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
      snprintf(tmp, sizeof tmp, "%s:%s",
               sl_upstream_failure_name(x->upfail[i].failure),
               server_name(c, x->upfail[i].server));
      strappend(upfail, sizeof upfail, tmp);
    }
    sd_rec_str(&r, "upstream_failures", upfail);
  }
  if (c->u != &no_uleg && c->u->retries) {
    /* rounds retried under upstream_wait */
    sd_rec_u64(&r, "upstream_retries", c->u->retries);
  }
  if (st->tls_upstream)
    sd_rec_str(&r, "upstream_tls", "yes");
  sd_rec_str(&r, "stage", sl_stage_name((sl_stage)st->stage));
  sd_rec_str(&r, "end", extra_end ? extra_end : sl_end_reason_name(end));
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
  if (st->sync_violations)
    sd_rec_u64(&r, "sync_violations", st->sync_violations);
  if (x && x->smuggling)
    sd_rec_str(&r, "smuggling", sl_violation_name(x->smuggling));
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
    snprintf(tmp, sizeof tmp, "%u:%" PRIu64, x->msgs[i].code, x->msgs[i].size);
    strappend(msgs, sizeof msgs, tmp);
  }
  sd_rec_str(&r, "messages", msgs);
  if (x) {
    /* Each message's final reply from the upstream, "; "-separated: the
       queue id the operator greps the mail server's log for. */
    char rep[600] = "";
    for (unsigned i = 0; i < x->nmsgs; i++) {
      if (i)
        strappend(rep, sizeof rep, "; ");
      strappend(rep, sizeof rep, x->msgtext[i] ? x->msgtext[i] : "-");
    }
    if (x->nmsgs)
      sd_rec_str(&r, "replies", rep);
    if (x->upreply)
      sd_rec_str(&r, "upstream_reply", x->upreply);

    if (x->pregreet)
      sd_rec_str(&r, "pregreet", x->pregreet);
    if (x->nrefs) {
      char ref[SD_REFUSALS_MAX];
      refusals_field(x, ref, sizeof ref);
      sd_rec_str(&r, "refusals", ref);
    }
  }
  /* each filtered message's verdicts, "name:verdict ...; ..." */
  if (c->flt && sd_filters_log(c->flt)[0])
    sd_rec_str(&r, "filters", sd_filters_log(c->flt));
  sd_rec_u64(&r, "last_upstream_code", st->last_upstream_code);
  sd_rec_u64(&r, "client_bytes_in", st->client_bytes_in);
  sd_rec_u64(&r, "client_bytes_out", st->client_bytes_out);
  sd_rec_u64(&r, "upstream_bytes_in", st->upstream_bytes_in);
  sd_rec_u64(&r, "upstream_bytes_out", st->upstream_bytes_out);
  sd_rec_ms(&r, "duration_ms", dur);
  sd_rec_emit(&r);
}

static void on_event(sd_conn *c, const sl_event *ev) {
  switch (ev->kind) {
  case SL_EV_PREGREET:
    sd_count(SD_C_PREGREET, 1);
    break;
  case SL_EV_DNSBL_SCORE:
    break; /* the final score is in the relay's stats */
  case SL_EV_TARPIT:
    break;
  case SL_EV_STARTTLS_INJECTION:
    sd_count(SD_C_STARTTLS_INJECTION, 1);
    if (xtra(c))
      c->x->injection_bytes += ev->starttls_injection.bytes;
    break;
  case SL_EV_SMUGGLING:
    sd_count(SD_C_SMUGGLING, 1);
    if (xtra(c))
      c->x->smuggling = ev->smuggling.violation;
    break;
  case SL_EV_UPSTREAM_READY:
    break;
  case SL_EV_UPSTREAM_FAILED: {
    sl_upstream_failure k = ev->upstream_failed.failure;
    sd_count(sd_c_upfail(k), 1);
    /* A greeting/protocol failure also counts against the server's health
       (the connect itself may have succeeded). */
    if (c->u->server && k >= SL_UPFAIL_TIMEOUT && k != SL_UPFAIL_IDENTITY)
      sd_upstream_report(c->u->server, 0, now_of(c));
    if (xtra(c) && c->x->nupfail < SD_UPFAIL_MAX) {
      c->x->upfail[c->x->nupfail].failure = k;
      c->x->upfail[c->x->nupfail++].server = c->u->last;
    }
    if (c->u != &no_uleg) {
      /* What the upstream said, if it said anything: the operator's first
         question.  A refused identity is not retried on that server. */
      const char *said = k == SL_UPFAIL_CONNECT || k == SL_UPFAIL_TIMEOUT
                             ? NULL
                             : reply_back(c->u, 0);
      if (said && xtra(c) && c->x->upreply == NULL)
        c->x->upreply = strdup(said);
      if (k == SL_UPFAIL_IDENTITY && c->u->last)
        c->u->identity_refused |= 1ull << (c->u->last - 1);
      if (said == NULL && k == SL_UPFAIL_CONNECT && c->u->why)
        said = c->u->why;
      sd_log(k == SL_UPFAIL_IDENTITY ? SD_LOG_ERR : SD_LOG_WARN,
             "session=%s upstream %s failed (%s)%s%s%s", sid_of(c).s,
             server_name(c, c->u->last), sl_upstream_failure_name(k),
             said ? ": \"" : "", said ? said : "", said ? "\"" : "");
    }
    break;
  }
  case SL_EV_MESSAGE: {
    unsigned code = ev->message.code;
    uint64_t size = ev->message.size;
    sd_xtra *x = xtra(c);
    if (x && x->nmsgs < SD_MSGS_MAX) {
      x->msgs[x->nmsgs].code = ev->message.code;
      x->msgs[x->nmsgs].size = size;
      /* The reply to the end of data: after the last 354 read since the
         previous message, the first line with this code (pipelined MAIL
         and RCPT replies come before the 354); without a 354 (BDAT), the
         newest line with the code. */
      const char *text = NULL;
      if (c->u != &no_uleg && code) {
        int after354 = 0;
        for (unsigned k = c->u->since; k-- > 0;) {
          const char *l = reply_back(c->u, k);
          if (l && !strncmp(l, "354", 3))
            after354 = 1, text = NULL;
          else if (l && (unsigned)atoi(l) == code &&
                   (!after354 || text == NULL))
            text = l;
        }
        c->u->since = 0;
      }
      x->msgtext[x->nmsgs] = text ? strdup(text) : NULL;
      x->nmsgs++;
    }
    if (code >= 200 && code < 300)
      sd_observe(SD_H_MSG_SIZE, size);
    break;
  }
  case SL_EV_REFUSAL:
    if (xtra(c) && c->x->nrefs < SD_REFUSALS_N) {
      c->x->refs[c->x->nrefs].command = ev->refusal.command;
      c->x->refs[c->x->nrefs++].code = ev->refusal.code;
    }
    break;
  case SL_EV_SESSION_END:
    log_session(c, NULL);
    break;
  case SL_EV_SCREEN_PASSED:
    /* postscreen's PASS NEW: remembered for every worker (and with Redis
       every instance) until screen_pass_ttl */
    sd_state_screen_pass(CS(c)->state, sl_relay_client_addr(RELAY(c)),
                         (uint32_t)(c->g->cfg->screen_pass_ttl / SL_SEC));
    break;
  }
}

/* ---- content filters ------------------------------------------------------
 */

_Static_assert((int)SL_FSKIP_AUTHENTICATED ==
                       (int)SL_FILTER_SKIP_AUTHENTICATED &&
                   (int)SL_FSKIP_MYNETWORKS == (int)SL_FILTER_SKIP_MYNETWORKS &&
                   (int)SL_FSKIP_DNSWL == (int)SL_FILTER_SKIP_DNSWL,
               "filter_skip bits are the relay's");

static void filter_done(void *ctx, uint32_t id, int verdict,
                        const uint8_t *text, size_t len);
static long leg_write(int fd, sd_tls_conn *t, const uint8_t *buf, size_t len,
                      uint8_t *tlswant);

static void filter_tap(void *ctx, sl_filter_item item, const uint8_t *p,
                       size_t n) {
  sd_conn *c = ctx;
  if (c->flt == NULL && item == SL_FI_MAIL)
    c->flt = sd_filters_new(CS(c)->loop, c->g->cfg, filter_done, c);
  if (c->flt)
    sd_filters_tap(c->flt, item, p, n);
  if (c->flt && item == SL_FI_MAIL)
    sd_filters_session(c->flt, sl_relay_client_addr(RELAY(c)),
                       c->x ? c->x->client_name : NULL, c->helo, sid_of(c).s);
}

static void filter_done(void *ctx, uint32_t id, int verdict,
                        const uint8_t *text, size_t len) {
  sd_conn *c = ctx;
  if (c->dead)
    return;
  if (c->g->cfg->filter_mode_spool &&
      (verdict == SL_VERDICT_ACCEPT || verdict == SL_VERDICT_CHANGE) &&
      c->u->ufd >= 0) {
    /* spool mode: the changed message goes first (write_upstream) */
    c->injecting = 1;
    c->inj_id = id;
    c->inj_verdict = verdict;
    c->inj_len = c->inj_off = 0;
  } else {
    sl_relay_filter_verdict(RELAY(c), id, verdict, text, len, now_of(c));
    sd_filters_release(c->flt);
  }
  conn_run(c);
}

static void filter_end(sd_conn *c, uint32_t id) {
  if (c->flt == NULL) {
    /* no filter state (out of memory at MAIL): the default action */
    int a = c->g->cfg->filter_default_action;
    sl_relay_filter_verdict(RELAY(c), id,
                            a == SL_FILTER_ACT_ACCEPT   ? SL_VERDICT_ACCEPT
                            : a == SL_FILTER_ACT_REJECT ? SL_VERDICT_REJECT
                                                        : SL_VERDICT_TEMPFAIL,
                            NULL, 0, now_of(c));
    return;
  }
  sd_filters_end(c->flt, id);
}

/* Spool mode: sends the changed message, then lets the relay have the
   verdict (which writes the terminator).  1: progress. */
static int write_injected(sd_conn *c) {
  uint64_t now = now_of(c);
  if (c->u->ufd < 0 || c->u->u_broken) {
    c->injecting = 0;
    return 1;
  }
  if (c->inj == NULL && (c->inj = malloc(65536)) == NULL) {
    c->injecting = 0;
    sl_relay_filter_verdict(RELAY(c), c->inj_id, SL_VERDICT_TEMPFAIL, NULL, 0,
                            now);
    sd_filters_release(c->flt);
    return 1;
  }
  if (c->inj_off == c->inj_len) {
    long n = sd_filters_inject(c->flt, c->inj, 65536);
    if (n < 0) {
      /* the spool cannot be read back: nothing more may go upstream but
         the upstream has a partial message; a refusal closes the leg */
      c->injecting = 0;
      sl_relay_filter_verdict(RELAY(c), c->inj_id, SL_VERDICT_TEMPFAIL, NULL, 0,
                              now);
      sd_filters_release(c->flt);
      return 1;
    }
    if (n == 0) {
      c->injecting = 0;
      sl_relay_filter_verdict(RELAY(c), c->inj_id, c->inj_verdict, NULL, 0,
                              now);
      sd_filters_release(c->flt);
      return 1;
    }
    c->inj_len = (size_t)n;
    c->inj_off = 0;
  }
  long w = leg_write(c->u->ufd, c->u->utls, c->inj + c->inj_off,
                     c->inj_len - c->inj_off, &c->u->u_tlswant);
  if (w == -2) {
    c->u->u_wblk = 1;
    return 0;
  }
  if (w > 0) {
    c->inj_off += (size_t)w;
    return 1;
  }
  c->u->u_broken = 1;
  if (!c->u->u_eof) {
    c->u->u_eof = 1;
    sl_relay_upstream_eof(RELAY(c), now);
  }
  return 1;
}

static int drain_requests(sd_conn *c) {
  sl_request req;
  int n = 0;
  while (n < 64 && sl_relay_next_request(RELAY(c), &req) == 1) {
    n++;
    switch (req.type) {
    case SL_REQ_CONNECT_UPSTREAM:
      connect_upstream(c, req.id);
      break;
    case SL_REQ_STARTTLS_CLIENT:
      if (c->g->tls_server == NULL || c->cfd < 0 ||
          (c->ctls = sd_tls_conn_new(c->g->tls_server, c->cfd, 1, NULL)) ==
              NULL) {
        complete(c, req.id, SL_STATUS_FAILED);
        break;
      }
      c->c_hs = 1;
      c->c_hs_id = req.id;
      c->c_rblk = c->c_wblk = 0;
      break;
    case SL_REQ_STARTTLS_UPSTREAM:
      if (c->u->ufd < 0)
        complete(c, req.id, SL_STATUS_FAILED);
      else
        start_upstream_tls(c, req.id, 0);
      break;
    case SL_REQ_DNSBL_LOOKUP:
      dnsbl_lookup(c, req.id, req.dnsbl.zone);
      break;
    case SL_REQ_CLOSE_UPSTREAM:
      close_upstream(c);
      break;
    case SL_REQ_CLOSE_CLIENT:
      close_client(c);
      break;
    case SL_REQ_EVENT:
      on_event(c, &req.ev);
      break;
    case SL_REQ_FILTER:
      filter_end(c, req.id);
      break;
    case SL_REQ_RCPT_CHECK:
      rcpt_check(c, &req);
      break;
    }
  }
  return n > 0;
}

/* ---- byte pumps --------------------------------------------------------- */

/* Returns bytes (> 0), 0 EOF, -1 error, -2 would block. */
static long leg_read(int fd, sd_tls_conn *t, uint8_t *buf, size_t cap,
                     uint8_t *tlswant) {
  if (t) {
    long n = sd_tls_read(t, buf, cap);
    if (n == -2)
      *tlswant = (uint8_t)sd_tls_want(t);
    return n;
  }
  for (;;) {
    ssize_t n = recv(fd, buf, cap, 0);
    if (n >= 0)
      return (long)n;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -2 : -1;
  }
}

static long leg_write(int fd, sd_tls_conn *t, const uint8_t *buf, size_t len,
                      uint8_t *tlswant) {
  if (t) {
    long n = sd_tls_write(t, buf, len);
    if (n == -2)
      *tlswant = (uint8_t)sd_tls_want(t);
    return n;
  }
  for (;;) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
      return (long)n;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -2 : -1;
  }
}

/* The argument of a HELO or EHLO at the start of a line in b (first 64
   bytes, printable), malloc'ed, or NULL.  A command split across two reads
   is missed (the log line then has no helo). */
static char *helo_of(const uint8_t *b, size_t n) {
  for (size_t i = 0; i + 5 < n; i++) {
    if (i && b[i - 1] != '\n')
      continue;
    if (strncasecmp((const char *)b + i, "EHLO ", 5) &&
        strncasecmp((const char *)b + i, "HELO ", 5))
      continue;
    size_t j = i + 5, k = 0;
    char out[65];
    while (j < n && b[j] == ' ')
      j++;
    while (j < n && k < 64 && b[j] > 0x20 && b[j] < 0x7f)
      out[k++] = (char)b[j++];
    out[k] = 0;
    return k ? strdup(out) : NULL;
  }
  return NULL;
}

/* Bytes as printable text: \r, \n, \t, \\ and \xHH for the rest. */
static char *escaped(const uint8_t *b, size_t n) {
  char *o = malloc(n * 4 + 1);
  if (o == NULL)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = b[i];
    if (ch == '\r')
      k += (size_t)sprintf(o + k, "\\r");
    else if (ch == '\n')
      k += (size_t)sprintf(o + k, "\\n");
    else if (ch == '\t')
      k += (size_t)sprintf(o + k, "\\t");
    else if (ch == '\\')
      k += (size_t)sprintf(o + k, "\\\\");
    else if (ch >= 0x20 && ch < 0x7f)
      o[k++] = (char)ch;
    else
      k += (size_t)sprintf(o + k, "\\x%02x", ch);
  }
  o[k] = 0;
  return o;
}

static int read_client(sd_conn *c) {
  if (c->cfd < 0 || c->c_hs || c->c_eof)
    return 0;
  if (c->c_rblk && !(c->ctls && sd_tls_pending(c->ctls)))
    return 0;
  if (!(sl_relay_want(RELAY(c)) & SL_WANT_CLIENT_READ))
    return 0;
  size_t cap = 0;
  uint64_t now = now_of(c);
  uint8_t *buf = sl_relay_client_in_buf(RELAY(c), &cap, now);
  if (buf == NULL || cap == 0)
    return 0;
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
    if (c->ctls == NULL && (size_t)n < cap)
      c->c_rblk = 1;
    const sl_stats *st = sl_relay_stats(RELAY(c));
    uint8_t early[32];
    size_t nearly = 0;
    uint32_t pregreet = st->pregreet_bytes;
    if (st->stage < SL_STAGE_MAIL) {
      if (c->helo == NULL)
        c->helo = helo_of(buf, (size_t)n);
      if (c->x == NULL || c->x->pregreet == NULL) {
        nearly = (size_t)n < sizeof early ? (size_t)n : sizeof early;
        memcpy(early, buf, nearly); /* the relay may release buf */
      }
    }
    sl_relay_client_in_ack(RELAY(c), (size_t)n, now);
    if (nearly && st->pregreet_bytes > pregreet && xtra(c))
      c->x->pregreet = escaped(early, nearly);
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

/* Keeps the final lines of upstream replies ("250 2.0.0 Ok: queued as
   82EDCA78366"), printable ASCII only, for the log. */
static void tee_replies(sd_uleg *u, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = b[i];
    if (ch == '\n') {
      const char *l = u->line;
      if (u->line_len >= 3 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' &&
          l[1] <= '9' && l[2] >= '0' && l[2] <= '9' &&
          (u->line_len == 3 || l[3] == ' ')) {
        memcpy(u->ring[u->ring_next], u->line, u->line_len);
        u->ring[u->ring_next][u->line_len] = 0;
        u->ring_next = (uint8_t)((u->ring_next + 1) % SD_REPLY_RING);
        if (u->since < SD_REPLY_RING)
          u->since++;
      }
      u->line_len = 0;
    } else if (ch >= 0x20 && ch < 0x7f && u->line_len < SD_REPLY_MAX - 1) {
      u->line[u->line_len++] = (char)ch;
    }
  }
}

/* The k-th newest kept reply line (0: newest), or NULL. */
static const char *reply_back(const sd_uleg *u, unsigned k) {
  if (k >= SD_REPLY_RING)
    return NULL;
  const char *l = u->ring[((unsigned)u->ring_next + SD_REPLY_RING - 1u - k) %
                          SD_REPLY_RING];
  return l[0] ? l : NULL;
}

static int read_upstream(sd_conn *c) {
  if (c->u->ufd < 0 || c->u->u_hs || c->u->u_connecting || c->u->u_eof)
    return 0;
  if (c->u->u_rblk && !(c->u->utls && sd_tls_pending(c->u->utls)))
    return 0;
  if (!(sl_relay_want(RELAY(c)) & SL_WANT_UPSTREAM_READ))
    return 0;
  size_t cap = 0;
  uint64_t now = now_of(c);
  uint8_t *buf = sl_relay_upstream_in_buf(RELAY(c), &cap, now);
  if (buf == NULL || cap == 0)
    return 0;
  long n = leg_read(c->u->ufd, c->u->utls, buf, cap, &c->u->u_tlswant);
  if (n == -2) {
    c->u->u_rblk = 1;
    sl_relay_upstream_in_ack(RELAY(c), 0, now);
    return 0;
  }
  if (n > 0) {
    if (c->u->utls == NULL && (size_t)n < cap)
      c->u->u_rblk = 1;
    tee_replies(c->u, buf, (size_t)n);
    sl_relay_upstream_in_ack(RELAY(c), (size_t)n, now);
    return 1;
  }
  c->u->u_eof = 1;
  sl_relay_upstream_eof(RELAY(c), now);
  return 1;
}

/* Keeps the final line of each 4xx/5xx reply the client was sent (a
   refused MAIL or RCPT, a tarpit's 421, a smuggling 554): what the client
   was told, whoever said it; SL_EV_REFUSAL says what it answered.
   Sessions that are never refused allocate nothing. */
static void tee_refusals(sd_conn *c, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = b[i];
    if (!c->out_mid) {
      c->out_mid = 1;
      c->out_cap = (ch == '4' || ch == '5') && xtra(c) != NULL;
      if (c->out_cap)
        c->x->reflen = 0;
    }
    if (ch == '\n') {
      c->out_mid = 0;
      sd_xtra *x = c->x;
      if (!c->out_cap || x->reflen < 3 ||
          (x->reflen > 3 && x->refline[3] != ' '))
        continue;
      x->refline[x->reflen] = 0;
      if (x->nreftext == SD_REFUSALS_N)
        continue;
      /* Out of memory: an empty text keeps the pairing with the events. */
      char *t = strdup(x->refline);
      x->reftext[x->nreftext++] = t ? t : NULL;
    } else if (c->out_cap && ch >= 0x20 && ch < 0x7f &&
               c->x->reflen < SD_REPLY_MAX - 1) {
      c->x->refline[c->x->reflen++] = (char)ch;
    }
  }
}

static int write_client(sd_conn *c) {
  if (c->c_hs || (c->c_wblk && c->cfd >= 0 && !c->c_broken))
    return 0;
  size_t len = 0;
  uint64_t now = now_of(c);
  const uint8_t *p = sl_relay_client_out(RELAY(c), &len, now);
  if (p == NULL || len == 0)
    return 0;
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
    tee_refusals(c, p, (size_t)n);
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
  if (c->u->u_hs || c->u->u_connecting ||
      (c->u->u_wblk && c->u->ufd >= 0 && !c->u->u_broken))
    return 0;
  if (c->injecting)
    return write_injected(c);
  size_t len = 0;
  uint64_t now = now_of(c);
  const uint8_t *p = sl_relay_upstream_out(RELAY(c), &len, now);
  if (p == NULL || len == 0)
    return 0;
  /* spool mode: the relay's copy of a filtered body stays here; the
     changed one goes after the verdict (write_injected) */
  if (c->u->ufd < 0 || c->u->u_broken || sd_filters_holding(c->flt)) {
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
  if (want & SD_TLS_WANT_READ)
    m |= EPOLLIN;
  if (want & SD_TLS_WANT_WRITE)
    m |= EPOLLOUT;
  return m ? m : EPOLLIN;
}

static void update_masks(sd_conn *c, unsigned want) {
  if (c->cfd >= 0) {
    uint32_t m = 0;
    if (c->c_hs) {
      m = tls_mask(c->c_tlswant);
    } else {
      if ((want & SL_WANT_CLIENT_READ) && !c->c_eof)
        m |= EPOLLIN;
      if (c->c_wblk && !c->c_broken)
        m |= EPOLLOUT;
      if (c->ctls && c->c_tlswant && (c->c_rblk || c->c_wblk))
        m |= tls_mask(c->c_tlswant);
    }
    if (c->c_hup && c->c_eof) {
      /* A hung-up socket is reported whatever the mask: stop listening or
         level-triggered epoll would spin on it. */
      if (c->cev != CEV_OFF)
        sd_loop_del(CS(c)->loop, c->cfd);
      c->cev = CEV_OFF;
    } else if (m != c->cev && c->cev != CEV_OFF) {
      sd_loop_mod(CS(c)->loop, c->cfd, m, &c->ch);
      c->cev = (uint8_t)m;
    }
  }
  if (c->u->ufd >= 0 && c->u->ureg) {
    uint32_t m = 0;
    if (c->u->u_connecting)
      m = EPOLLOUT;
    else if (c->u->u_hs)
      m = tls_mask(c->u->u_tlswant);
    else {
      if ((want & SL_WANT_UPSTREAM_READ) && !c->u->u_eof)
        m |= EPOLLIN;
      if (c->u->u_wblk && !c->u->u_broken)
        m |= EPOLLOUT;
      if (c->u->utls && c->u->u_tlswant && (c->u->u_rblk || c->u->u_wblk))
        m |= tls_mask(c->u->u_tlswant);
    }
    if (c->u->u_hup && (c->u->u_eof || c->u->u_broken) && !c->u->u_connecting) {
      sd_loop_del(CS(c)->loop, c->u->ufd);
      c->u->ureg = 0;
    } else if (m != c->u->uev) {
      sd_loop_mod(CS(c)->loop, c->u->ufd, m, &c->u->uh);
      c->u->uev = m;
    }
  }
}

static void conn_run(sd_conn *c) {
  c->in_run = 1;
  int progress = 0;
  for (int round = 0; round < RUN_ROUNDS; round++) {
    progress = 0;
    if (c->c_hs && c->cfd >= 0 && !(c->c_rblk && c->c_wblk))
      progress |= step_client_hs(c);
    if (c->u->u_connecting && !c->u->u_wblk)
      progress |= finish_connect(c);
    if (c->u->u_hs && c->u->ufd >= 0 && !(c->u->u_rblk && c->u->u_wblk))
      progress |= step_upstream_hs(c);
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
    if (!progress)
      break;
  }
  c->in_run = 0;
  unsigned want = sl_relay_want(RELAY(c));
  if (want & SL_CLOSED) {
    conn_free(c);
    return;
  }
  if (sl_relay_last_error(RELAY(c)) &&
      sl_err_is_fatal(sl_relay_last_error(RELAY(c)))) {
    sd_log(SD_LOG_ERR, "relay error %s; ending session",
           sl_err_name(sl_relay_last_error(RELAY(c))));
    log_session(c, "internal_error");
    conn_free(c);
    return;
  }
  update_masks(c, want);
  /* The bounded rounds ended with work left: requests (the relay consumes
     no input until they are drained), or a leg still making progress.
     Come back at once: epoll would not, for a write the socket has not
     refused (no EPOLLOUT is asked for then), and a 5 MB DATA burst stalled
     with its upstream buffer full and the socket writable. */
  sd_timer_set(CS(c)->loop, &c->timer,
               (want & SL_WANT_REQUESTS) || progress
                   ? now_of(c)
                   : sl_relay_next_deadline(RELAY(c)));
}

/* ---- epoll and timer callbacks ------------------------------------------ */

static void client_io(sd_handler *h, uint32_t ev) {
  sd_conn *c = (sd_conn *)(void *)((char *)h - offsetof(sd_conn, ch));
  if (c->dead)
    return;
  if (ev & (EPOLLERR | EPOLLHUP))
    c->c_hup = 1;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
    c->c_rblk = 0;
  if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
    c->c_wblk = 0;
  conn_run(c);
}

static void upstream_io(sd_handler *h, uint32_t ev) {
  sd_conn *c = ((sd_uleg *)(void *)h)->c;
  if (c->dead)
    return;
  if (ev & (EPOLLERR | EPOLLHUP))
    c->u->u_hup = 1;
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
    c->u->u_rblk = 0;
  if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
    c->u->u_wblk = 0;
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
  if (c->u != &no_uleg)
    free(c->u);
  free(c->helo);
  sd_filters_free(c->flt);
  free(c->inj);
  if (c->x) {
    free(c->x->client_name);
    free(c->x->ptr_name);
    free(c->x->upreply);
    free(c->x->pregreet);
    for (unsigned i = 0; i < c->x->nreftext; i++)
      free(c->x->reftext[i]);
    for (unsigned i = 0; i < c->x->nmsgs; i++)
      free(c->x->msgtext[i]);
  }
  free(c->x);
  free(c);
}

static void conn_free(sd_conn *c) {
  sd_conns *s = CS(c);
  if (c->dead)
    return;
  if (!c->logged)
    log_session(c, NULL);
  if (c->x) {
    for (sd_dnsq *q = c->x->dnsq; q; q = q->next)
      q->c = NULL; /* answered later, dropped */
    c->x->dnsq = NULL;
    sd_check_cancel(c->x->check);
    c->x->check = NULL;
  }
  close_upstream(c);
  close_client(c);
  sd_filters_release(c->flt); /* filter sockets and the spool */
  sd_timer_stop(s->loop, &c->timer);
  if (c->u != &no_uleg)
    sd_timer_stop(s->loop, &c->u->retry);
  /* The address admitted: the peer, or the one its PROXY header named
     (sl_relay_client_addr is that one once the header is parsed). */
  if (c->counted)
    sd_state_release(s->state, sl_relay_client_addr(RELAY(c)), &c->ticket);
  sl_relay_free(RELAY(c));
  if (c->prev)
    c->prev->next = c->next;
  else
    s->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->n--;
  sd_gauge_set(&sd_m->active[s->index], s->n);
  sd_gauge_set(&sd_m->pool_bytes[s->index], s->gen_host.budget->allocated);
  c->dead = 1;
  /* epoll may still hold an event for the other leg in this batch. */
  sd_loop_defer(s->loop, conn_release, c);
}

void sd_conn_hold_all(sd_conns *s) {
  for (sd_conn *c = s->head; c; c = c->next)
    if (c->counted && !c->dead)
      sd_state_hold(s->state, sl_relay_client_addr(RELAY(c)),
                    sd_loop_now(s->loop), &c->ticket);
}

void sd_conn_abort(sd_conn *c, const char *why) {
  log_session(c, why);
  conn_free(c);
}

static int trusted(const sd_config *cfg, const struct sockaddr *sa) {
  for (size_t i = 0; i < cfg->ntrusted; i++)
    if (sd_cidr_match(&cfg->trusted[i], sa))
      return 1;
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

static void count_admission(sd_conn *c, sl_admission v) {
  c->admitted = (unsigned)v & 3u;
  c->counted = v != SL_ADMIT_TEMPFAIL && CS(c)->state != NULL;
  if (v == SL_ADMIT_TARPIT)
    sd_count(SD_C_ADMIT_TARPIT, 1);
  if (v == SL_ADMIT_TEMPFAIL)
    sd_count(SD_C_ADMIT_TEMPFAIL, 1);
}

/* The relay parsed a trusted PROXY header that the driver could not read
   ahead (see pend_peek): admit the client it names, on the local verdict
   alone, since the relay needs the answer now. */
static sl_admission proxy_admit(void *ctx, const sl_addr *client,
                                sl_tstamp now) {
  sd_conn *c = ctx;
  sd_admit_result res;
  sd_state_req req;
  sd_state_admit(CS(c)->state, client, now, &c->ticket, NULL, NULL, &res, &req);
  count_admission(c, res.admission);
  if (res.admission != SL_ADMIT_TEMPFAIL)
    name_lookup_start(c, client);
  return res.admission;
}

/* The driver admitted the client of the PROXY header before the relay
   existed (pend_peek read the same header ahead): the relay gets that
   verdict when it parses the header. */
static sl_admission proxy_preadmitted(void *ctx, const sl_addr *client,
                                      sl_tstamp now) {
  sd_conn *c = ctx;
  (void)now;
  if (c->admitted != SL_ADMIT_TEMPFAIL)
    name_lookup_start(c, client);
  return (sl_admission)c->admitted;
}

/* How a session starts: the admission decided before the relay exists
   (pre != NULL), with the client it is for (admitted), or on a proxy
   listener without it (the relay admits at its header). */
typedef struct sd_start {
  size_t listener;
  int tls, proxy, fd;
  const struct sockaddr *peer;
  const sd_admit_result *pre;
  const sd_state_ticket *ticket;
  const sl_addr *admitted;
} sd_start;

static void start_session(sd_conns *s, sd_gen *g, const sd_start *st);

/* ---- admission before the session --------------------------------------
 * A connection waits here, before its relay exists, while the shared state
 * (Redis) answers its admission, or on a proxy listener while the PROXY
 * header naming the client arrives.  Nothing is said to the client and
 * nothing is read: its bytes wait in the socket (a pregreet is still seen
 * by the relay).  The wait is bounded: the backend answers within
 * redis_timeout; the header within proxy_header_timeout, after which the
 * connection is closed unanswered as the relay would. */
#define SD_ADDR_TEXT 64
#define PEND_PEEK                                                              \
  232 /* a v1 line, or v2 with a few TLVs (HAProxy sends none) */

struct sd_pend {
  sd_handler h;
  sd_timer timer;
  sd_conns *s;
  sd_gen *g;
  sd_pend *prev, *next;
  int fd;
  uint16_t listener;
  uint8_t tls, proxy, registered;
  uint8_t local_seen; /* a LOCAL header was read (and consumed) */
  sd_state_req req;
  sd_state_ticket ticket;
  sl_addr client;
  struct sockaddr_storage peer;
};

static void pend_unlink(sd_pend *p) {
  sd_conns *s = p->s;
  if (p->prev)
    p->prev->next = p->next;
  else
    s->pend_head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  sd_timer_stop(s->loop, &p->timer);
  if (p->registered)
    sd_loop_del(s->loop, p->fd);
  p->registered = 0;
}

/* Hands the connection on to a session (pre: its admission, or NULL for
   the relay to judge the PROXY header itself). */
static void pend_finish(sd_pend *p, const sd_admit_result *pre) {
  sd_conns *s = p->s;
  sd_gen *g = p->g;
  pend_unlink(p);
  sd_start st = {p->listener,
                 p->tls,
                 p->proxy && !p->local_seen,
                 p->fd,
                 (const struct sockaddr *)&p->peer,
                 pre,
                 &p->ticket,
                 pre ? &p->client : NULL};
  start_session(s, g, &st);
  sd_gen_unref(g);
  free(p);
}

static void pend_drop(sd_pend *p) {
  sd_state_cancel(p->s->state, p->req);
  pend_unlink(p);
  close(p->fd);
  sd_gen_unref(p->g);
  free(p);
}

static void pend_admitted(void *ctx, const sd_admit_result *res) {
  sd_pend *p = ctx;
  p->req = 0;
  pend_finish(p, res);
}

/* Asks the state about p->client; the session starts now or when it
   answers. */
static void pend_admit(sd_pend *p) {
  sd_admit_result res;
  if (sd_state_admit(p->s->state, &p->client, sd_loop_now(p->s->loop),
                     &p->ticket, pend_admitted, p, &res,
                     &p->req) == SD_STATE_DONE)
    pend_finish(p, &res);
}

static int pend_after_local(sd_pend *p);

/* Reads the PROXY header ahead without consuming it.  Returns 1 when p
   moved on (admission asked, session started, or connection closed), 0 to
   wait for more bytes. */
static int pend_peek(sd_pend *p) {
  uint8_t buf[PEND_PEEK];
  ssize_t n = recv(p->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  if (n == 0 || n < 0) {
    /* Closed before a header: a balancer's plain TCP check, which costs
       no session, no log line and no count. */
    sd_count(SD_C_PROXY_PROBES, 1);
    pend_drop(p);
    return 1;
  }
  sl_proxy_header h;
  long hl = sl_proxy_parse(buf, (size_t)n, &h);
  if (hl == SL_ERR_INCOMPLETE && (size_t)n < sizeof buf)
    return 0;
  if (hl > 0 && !h.local) {
    p->client = h.src;
    sd_timer_stop(p->s->loop, &p->timer);
    if (p->registered)
      sd_loop_del(p->s->loop, p->fd);
    p->registered = 0;
    pend_admit(p);
    return 1;
  }
  if (hl > 0 && h.local) {
    /* LOCAL: the balancer speaks for itself, as its health checks do.  The
       header is taken here; a check closes right after it and costs no
       session, no greeting delay and no count.  Anything that follows is
       served as a session of the balancer's own address. */
    if (recv(p->fd, buf, (size_t)hl, MSG_DONTWAIT) != hl) {
      pend_drop(p);
      return 1;
    }
    p->local_seen = 1;
    return pend_after_local(p);
  }
  /* Too long to read ahead, or malformed: the relay judges the header as
     always. */
  pend_finish(p, NULL);
  return 1;
}

/* After a LOCAL header: a check's close, or a session of the balancer. */
static int pend_after_local(sd_pend *p) {
  uint8_t b;
  ssize_t n = recv(p->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  if (n <= 0) {
    sd_count(SD_C_PROXY_PROBES, 1);
    pend_drop(p);
    return 1;
  }
  pend_finish(p, NULL);
  return 1;
}

static void pend_io(sd_handler *h, uint32_t ev) {
  (void)ev;
  sd_pend *p = (sd_pend *)(void *)h;
  if (p->local_seen)
    pend_after_local(p);
  else
    pend_peek(p);
}

static void pend_timer(sd_timer *t) {
  sd_pend *p = (sd_pend *)(void *)((char *)t - offsetof(sd_pend, timer));
  if (p->local_seen) {
    /* a LOCAL header, then silence: serve it as the balancer's session */
    pend_finish(p, NULL);
    return;
  }
  /* No complete header within proxy_header_timeout: closed unanswered,
     as the relay would (haproxy's rule for a balancer that says nothing). */
  char peer[SD_ADDR_TEXT];
  sd_sockaddr_format((const struct sockaddr *)&p->peer, peer, sizeof peer);
  sd_log(
      SD_LOG_INFO,
      "proxy header from %s not complete within proxy_header_timeout: closed",
      peer);
  sd_count(SD_C_END_TIMEOUT, 1);
  pend_drop(p);
}

void sd_conn_pending_free_all(sd_conns *s) {
  while (s->pend_head)
    pend_drop(s->pend_head);
}

void sd_conn_accept(sd_conns *s, sd_gen *g, size_t listener, int tls, int proxy,
                    int fd, const struct sockaddr *peer, socklen_t peerlen) {
  const sd_config *cfg = g->cfg;
  if (s->n >= cfg->max_connections || over_total(cfg)) {
    sd_count(SD_C_REJECT_CAP, 1);
    sd_refuse(s, g, fd, tls, "Too many connections");
    return;
  }
  int by_header = proxy && trusted(cfg, peer);
  sl_addr peer_addr;
  to_sl_addr(peer, &peer_addr);
  sd_admit_result res;
  sd_state_ticket ticket;
  sd_state_req req = 0;
  memset(&ticket, 0, sizeof ticket);
  if (s->state == NULL) {
    sd_start st = {listener, tls, proxy, fd, peer, NULL, NULL, NULL};
    start_session(s, g, &st);
    return;
  }
  sd_pend *p = calloc(1, sizeof *p);
  if (p == NULL) {
    /* No room to wait: admit on the local verdict, or let the relay judge
       the header. */
    if (by_header) {
      sd_start st = {listener, tls, proxy, fd, peer, NULL, NULL, NULL};
      start_session(s, g, &st);
    } else {
      sd_state_admit(s->state, &peer_addr, sd_loop_now(s->loop), &ticket, NULL,
                     NULL, &res, &req);
      sd_start st = {listener, tls, proxy, fd, peer, &res, &ticket, &peer_addr};
      start_session(s, g, &st);
    }
    return;
  }
  (void)peerlen;
  p->h.cb = pend_io;
  sd_timer_init(&p->timer, pend_timer);
  p->s = s;
  p->g = sd_gen_ref(g);
  p->fd = fd;
  p->listener = (uint16_t)listener;
  p->tls = tls != 0;
  p->proxy = proxy != 0;
  memcpy(&p->peer, peer,
         peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
  p->next = s->pend_head;
  if (p->next)
    p->next->prev = p;
  s->pend_head = p;
  if (!by_header) {
    p->client = peer_addr;
    pend_admit(p);
    return;
  }
  if (pend_peek(p))
    return;
  if (sd_loop_add(s->loop, fd, EPOLLIN, &p->h) != 0) {
    pend_finish(p, NULL);
    return;
  }
  p->registered = 1;
  sd_timer_set(s->loop, &p->timer,
               sd_loop_now(s->loop) + cfg->limits.proxy_header_timeout);
}

static void start_session(sd_conns *s, sd_gen *g, const sd_start *st) {
  const sd_config *cfg = g->cfg;
  uint64_t now = sd_loop_now(s->loop);
  size_t listener = st->listener;
  int tls = st->tls, proxy = st->proxy, fd = st->fd;
  const struct sockaddr *peer = st->peer;
  size_t rsize = sl_relay_size(&cfg->limits);
  sd_conn *c = malloc(sizeof *c + rsize);
  if (c == NULL) {
    if (st->pre && st->pre->admission != SL_ADMIT_TEMPFAIL)
      sd_state_release(s->state, st->admitted, st->ticket);
    sd_count(SD_C_REJECT_NOMEM, 1);
    sd_refuse(s, g, fd, tls, "Out of memory");
    return;
  }
  memset(c, 0, sizeof *c); /* the relay initialises its own state */
  c->ch.cb = client_io;
  c->u = (sd_uleg *)(uintptr_t)&no_uleg;
  sd_timer_init(&c->timer, conn_timer);
  c->g = g; /* referenced below once the session is sure to exist */
  c->cfd = fd;
  /* the worker's listeners and g->cfg->listen are kept in step */
  c->listener = (uint16_t)listener;
  c->listener_tls = tls != 0;
  sl_addr peer_addr, local_addr;
  to_sl_addr(peer, &peer_addr);
  struct sockaddr_storage ls;
  socklen_t lslen = sizeof ls;
  memset(&local_addr, 0, sizeof local_addr);
  if (getsockname(fd, (struct sockaddr *)&ls, &lslen) == 0)
    to_sl_addr((const struct sockaddr *)&ls, &local_addr);
  sl_addr laddr;
  to_sl_addr((const struct sockaddr *)&cfg->listen[c->listener].addr.ss,
             &laddr);
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
  if (tls)
    info.flags |= SL_CONN_TLS;
  /* PROXY headers are honoured only from configured balancers; from anyone
     else the same bytes are just bad SMTP. */
  if (proxy && trusted(cfg, peer)) {
    info.flags |= SL_CONN_EXPECT_PROXY;
    c->expect_proxy = 1;
  }
  /* Per-IP limits key on the real client: the socket's peer, or behind a
     balancer the address its PROXY header names (admitted before the
     relay exists when the driver could read the header ahead, else when
     the relay has parsed it, before anything is said to the client).  The
     counts are the state backend's (sd_state.h): per machine, or shared
     by every instance. */
  info.admission = SL_ADMIT_ACCEPT;
  if (st->pre) {
    c->ticket = *st->ticket;
    count_admission(c, st->pre->admission);
    if (c->expect_proxy) {
      info.proxy_admit = proxy_preadmitted;
      info.proxy_admit_ctx = c;
    } else {
      info.admission = st->pre->admission;
    }
    if (st->pre->passed_before && cfg->screen_pass_ttl) {
      info.flags |= SL_CONN_SCREEN_PASSED;
      c->pass_old = 1;
      sd_count(SD_C_SCREEN_PASS_OLD, 1);
    }
  } else if (c->expect_proxy) {
    info.proxy_admit = proxy_admit;
    info.proxy_admit_ctx = c;
  }
  /* Screen-first greets before it knows its upstream: it offers only what
     the healthy pool took at its last health checks (guarantee 8). */
  if (sd_upstreams_features(g->ups, &info.pool_features, &info.pool_size))
    info.flags |= SL_CONN_POOL_CAPS;
  /* Content filters: every listener but "nofilter" ones; filter_skip is
     judged per transaction by the relay, which knows AUTH and the score. */
  if (cfg->nfilters && !cfg->listen[c->listener].nofilter) {
    info.flags |= SL_CONN_FILTER;
    /* spool mode swaps a DATA body (write_injected): BDAT goes as DATA */
    if (cfg->filter_mode_spool)
      info.flags |= SL_CONN_FILTER_SPOOL;
    info.filter_skip = cfg->filter_skip;
    info.filter_tap = filter_tap;
    info.filter_ctx = c;
  }

  uint64_t seed =
      s->seed ^ (now * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)c;

  sl_relay *r = NULL;
  int rc = sl_relay_init(&r, c->mem, rsize, &cfg->limits, &cfg->policy,
                         &g->slpool, &info, seed, now);
  if (rc == 0 && r != RELAY(c)) {
    /* RELAY() relies on the relay living at the start of its block */
    sl_relay_free(r);
    rc = SL_ERR_INVALID_ARGUMENT;
  }
  if (rc != 0) {
    sd_log(SD_LOG_ERR, "relay init: %s", sl_strerror(rc));
    if (c->counted)
      sd_state_release(s->state, st->admitted, &c->ticket);
    free(c->x);
    free(c);
    sd_count(SD_C_REJECT_NOMEM, 1);
    sd_refuse(s, g, fd, tls, "Internal error");
    return;
  }
  if (sd_loop_add(s->loop, fd, EPOLLIN, &c->ch) != 0) {
    sl_relay_free(RELAY(c));
    if (c->counted)
      sd_state_release(s->state, st->admitted, &c->ticket);
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
  c->next = s->head;
  if (c->next)
    c->next->prev = c;
  s->head = c;
  s->n++;
  sd_count(SD_C_ACCEPTED, 1);
  sd_gauge_set(&sd_m->active[s->index], s->n);
  if (!c->expect_proxy && c->admitted != SL_ADMIT_TEMPFAIL)
    name_lookup_start(c, &peer_addr);
  if (tls) {
    /* Implicit TLS: the relay already counts the leg as TLS; nothing moves
       on it until the handshake is done. */
    c->ctls =
        g->tls_server ? sd_tls_conn_new(g->tls_server, fd, 1, NULL) : NULL;
    if (c->ctls == NULL) {
      sd_conn_abort(c, "tls_unavailable");
      return;
    }
    c->c_hs = 1;
    c->c_hs_implicit = 1;
  }
  conn_run(c);
}
