#include "sp_session.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A connection whose both ends are over lingers this long (capture time) so
 * that trailing ACKs and retransmitted FINs are not taken for a new
 * connection. */
#define LINGER_US (120 * INT64_C(1000000))
#define SWEEP_EVERY 4096

typedef enum cstate { C_PENDING, C_SMTP, C_IGNORED, C_DONE } cstate;

/* What a side's first bytes say. */
typedef enum fclass {
  F_NONE,     /* nothing recognisable */
  F_GREETING, /* "220" reply: server, and proof of SMTP */
  F_HELO,     /* HELO/EHLO: client, and proof of SMTP */
  F_REPLY,    /* another reply code: server */
  F_COMMAND,  /* another SMTP verb: client */
  F_TLS       /* TLS handshake record: client of implicit TLS */
} fclass;

typedef struct conn conn;

enum { T_UNKNOWN, T_NONE, T_STRIP, T_DONE };

typedef struct stream_ctx {
  conn *c;
  int ep;
} stream_ctx;

/* Per direction line tracking: TLS can only start at a line boundary, and
 * the client's lines give STARTTLS and the first command. */
typedef struct scanner {
  int line_start; /* the next byte begins a line */
  int partial;    /* the current line's beginning is missing (gap) */
  uint64_t off;   /* bytes and gap bytes seen */
  size_t n;       /* bytes kept of the current line */
  char line[16];
} scanner;

struct conn {
  conn *hnext;
  conn *prev, *next;
  sp_endpoint ep[2]; /* ep[0] sent the first packet seen */
  sp_stream st[2];   /* bytes sent by ep[i] */
  stream_ctx sx[2];
  struct sp_tracker *t;
  cstate state;
  int client; /* index into ep, -1 while unknown */
  int syn_client;
  int saw_syn, saw_payload;
  int judged[2];
  fclass cls[2];
  sp_buf pending; /* events held while undecided */
  uint64_t pkts[2];
  int64_t first_ts, last_ts;
  uint64_t last_t;
  int complete; /* the terminal E record is written */
  int fin[2];
  int starttls_armed, first_cmd_done;
  /* HTTP CONNECT tunnel: proxy preambles are stripped before judging. */
  int tunnel_client;    /* ep that sent CONNECT, -1 none */
  int tunnel[2];        /* T_* per ep */
  unsigned tunnel_m[2]; /* bytes of "\r\n\r\n" matched */
  scanner sc[2];
  sp_session sess;
};

struct sp_tracker {
  sp_tracker_config cfg;
  sp_tracker_callbacks cb;
  void *ud;
  conn **buckets;
  size_t nbuckets, nconns;
  conn *head, *tail;
  sp_tracker_counters ctr;
  int64_t now;
  uint64_t since_sweep;
  int err; /* sticky: first callback failure or allocation failure */
};

typedef struct pend_hdr {
  int64_t ts;
  uint64_t len;
  uint8_t ep, type;
} pend_hdr;

/* ---- configuration ---- */

void sp_tracker_config_default(sp_tracker_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  static const uint16_t def[] = {25, 465, 587, 2525};
  memcpy(cfg->ports, def, sizeof def);
  cfg->n_ports = sizeof def / sizeof def[0];
  cfg->max_ooo = 1u << 20;
  cfg->max_pending = 64u << 10;
  cfg->idle_timeout_us = 3600 * INT64_C(1000000);
}

int sp_tracker_config_ports(sp_tracker_config *cfg, const char *list) {
  uint16_t ports[SP_MAX_PORTS];
  size_t n = 0;
  const char *p = list;
  for (;;) {
    unsigned long v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9') {
      v = v * 10 + (unsigned long)(*p - '0');
      if (v > 65535)
        return SP_ERR_INVALID_ARGUMENT;
      p++;
    }
    if (p == start || v == 0 || n == SP_MAX_PORTS)
      return SP_ERR_INVALID_ARGUMENT;
    ports[n++] = (uint16_t)v;
    if (*p == '\0')
      break;
    if (*p != ',')
      return SP_ERR_INVALID_ARGUMENT;
    p++;
  }
  memcpy(cfg->ports, ports, n * sizeof ports[0]);
  cfg->n_ports = n;
  return SP_OK;
}

static int port_in_set(const sp_tracker *t, uint16_t port) {
  for (size_t i = 0; i < t->cfg.n_ports; i++)
    if (t->cfg.ports[i] == port)
      return 1;
  return 0;
}

/* ---- content classification ---- */

static int prefix_ci(const uint8_t *p, size_t n, const char *word) {
  size_t w = strlen(word);
  if (n < w)
    return 0;
  for (size_t i = 0; i < w; i++)
    if (toupper(p[i]) != word[i])
      return 0;
  /* The verb must end there: "HELOX" is not HELO. */
  return n == w || p[w] == ' ' || p[w] == '\r' || p[w] == '\n' || p[w] == ':' ||
         p[w] == '\t';
}

static fclass classify(const uint8_t *p, size_t n) {
  static const char *const verbs[] = {
      "MAIL", "RCPT", "DATA", "QUIT", "RSET",    "NOOP",     "STARTTLS", "AUTH",
      "BDAT", "VRFY", "EXPN", "HELP", "XCLIENT", "XFORWARD", "ETRN"};
  if (n >= 1 && p[0] == 0x16 && (n < 2 || p[1] == 0x03))
    return F_TLS;
  if (n >= 3 && isdigit(p[0]) && isdigit(p[1]) && isdigit(p[2]) &&
      (n == 3 || p[3] == ' ' || p[3] == '-' || p[3] == '\r' || p[3] == '\n'))
    return (p[0] == '2' && p[1] == '2' && p[2] == '0') ? F_GREETING : F_REPLY;
  if (prefix_ci(p, n, "HELO") || prefix_ci(p, n, "EHLO"))
    return F_HELO;
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (prefix_ci(p, n, verbs[i]))
      return F_COMMAND;
  return F_NONE;
}

/* ---- connection table ---- */

static uint64_t hash_ep(const sp_endpoint *e) {
  uint64_t h = 1469598103934665603ull;
  size_t n = e->family == 6 ? 16 : 4;
  for (size_t i = 0; i < n; i++)
    h = (h ^ e->ip[i]) * 1099511628211ull;
  h = (h ^ e->port) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* Symmetric, so both directions land in one bucket. */
static size_t bucket_of(const sp_tracker *t, const sp_endpoint *a,
                        const sp_endpoint *b) {
  uint64_t h = hash_ep(a) + hash_ep(b);
  h *= 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 32) & (t->nbuckets - 1);
}

static conn *lookup(sp_tracker *t, const sp_tcp_segment *s, int *ep) {
  for (conn *c = t->buckets[bucket_of(t, &s->src, &s->dst)]; c; c = c->hnext) {
    if (sp_endpoint_equal(&c->ep[0], &s->src) &&
        sp_endpoint_equal(&c->ep[1], &s->dst)) {
      *ep = 0;
      return c;
    }
    if (sp_endpoint_equal(&c->ep[0], &s->dst) &&
        sp_endpoint_equal(&c->ep[1], &s->src)) {
      *ep = 1;
      return c;
    }
  }
  return NULL;
}

static int grow_table(sp_tracker *t) {
  size_t nb = t->nbuckets * 2;
  conn **b = calloc(nb, sizeof *b);
  if (!b)
    return SP_ERR_NOMEM;
  conn **old = t->buckets;
  t->buckets = b;
  t->nbuckets = nb;
  for (conn *c = t->head; c; c = c->next) {
    size_t i = bucket_of(t, &c->ep[0], &c->ep[1]);
    c->hnext = b[i];
    b[i] = c;
  }
  free(old);
  return 0;
}

static int on_stream_ev(void *ctx, const sp_stream_ev *ev);

static conn *conn_new(sp_tracker *t, const sp_tcp_segment *s) {
  if (t->nconns >= t->nbuckets && grow_table(t))
    return NULL;
  conn *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->t = t;
  c->ep[0] = s->src;
  c->ep[1] = s->dst;
  c->client = c->syn_client = c->tunnel_client = -1;
  c->first_ts = c->last_ts = s->ts_us;
  for (int i = 0; i < 2; i++) {
    c->sx[i].c = c;
    c->sx[i].ep = i;
    sp_stream_init(&c->st[i], t->cfg.max_ooo, on_stream_ev, &c->sx[i]);
    c->sc[i].line_start = 1;
  }
  size_t b = bucket_of(t, &s->src, &s->dst);
  c->hnext = t->buckets[b];
  t->buckets[b] = c;
  c->prev = t->tail;
  if (t->tail)
    t->tail->next = c;
  else
    t->head = c;
  t->tail = c;
  t->nconns++;
  t->ctr.connections++;
  return c;
}

static void conn_release_buffers(conn *c) {
  sp_stream_free(&c->st[0]);
  sp_stream_free(&c->st[1]);
  sp_buf_free(&c->pending);
}

static void conn_remove(sp_tracker *t, conn *c) {
  conn **pp = &t->buckets[bucket_of(t, &c->ep[0], &c->ep[1])];
  while (*pp != c)
    pp = &(*pp)->hnext;
  *pp = c->hnext;
  if (c->prev)
    c->prev->next = c->next;
  else
    t->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    t->tail = c->prev;
  t->nconns--;
  conn_release_buffers(c);
  free(c);
}

/* ---- records ---- */

static sp_side side_of(const conn *c, int ep) {
  return ep == c->client ? SP_SIDE_CLIENT : SP_SIDE_SERVER;
}

static uint64_t rel_time(conn *c, int64_t ts) {
  /* Records stay in order even where the capture's clock stepped back. */
  uint64_t t = ts > c->first_ts ? (uint64_t)(ts - c->first_ts) : 0;
  if (t < c->last_t)
    t = c->last_t;
  c->last_t = t;
  return t;
}

static int put(conn *c, const sp_record *r) {
  sp_tracker *t = c->t;
  if (r->type == SP_REC_END) {
    c->sess.ends |= 1u << r->end;
    if (r->end != SP_END_CLIENT_FIN && r->end != SP_END_SERVER_FIN)
      c->complete = 1;
  }
  if (t->cb.record && t->cb.record(t->ud, &c->sess, r)) {
    t->err = SP_ERR_CALLBACK;
    return SP_ERR_CALLBACK;
  }
  return 0;
}

static int put_end(conn *c, int64_t ts, sp_end_reason why) {
  sp_record r = {SP_REC_END, rel_time(c, ts), SP_SIDE_CLIENT, 0, NULL, why};
  return put(c, &r);
}

static void client_line_done(conn *c, scanner *sc) {
  size_t n = sc->n;
  while (n && (sc->line[n - 1] == '\n' || sc->line[n - 1] == '\r' ||
               sc->line[n - 1] == ' '))
    n--;
  if (!c->first_cmd_done && n) {
    size_t w = 0;
    while (w < n && w < sizeof c->sess.first_command - 1 &&
           sc->line[w] != ' ' && (unsigned char)sc->line[w] > ' ' &&
           (unsigned char)sc->line[w] < 0x7f) {
      c->sess.first_command[w] = (char)toupper((unsigned char)sc->line[w]);
      w++;
    }
    c->sess.first_command[w] = '\0';
    c->first_cmd_done = 1;
  }
  if (n == 8 && prefix_ci((const uint8_t *)sc->line, n, "STARTTLS"))
    c->starttls_armed = 1;
}

static int on_data(conn *c, int ep, int64_t ts, const uint8_t *p, size_t n) {
  sp_side side = side_of(c, ep);
  scanner *sc = &c->sc[ep];
  size_t i = 0;
  while (i < n) {
    if (sc->line_start && p[i] == 0x16 && (sc->off == 0 || c->starttls_armed) &&
        (i + 1 >= n || p[i + 1] == 0x03)) {
      /* TLS starts here; the plaintext before it is still worth keeping. */
      int rc = 0;
      if (i > 0) {
        sp_record r = {(sp_rec_type)(side == SP_SIDE_CLIENT ? 'C' : 'S'),
                       rel_time(c, ts),
                       side,
                       i,
                       p,
                       0};
        c->sess.bytes[side] += i;
        rc = put(c, &r);
      }
      c->sess.tls = sc->off == 0 ? SP_TLS_IMPLICIT : SP_TLS_STARTTLS;
      return rc ? rc : put_end(c, ts, SP_END_TLS);
    }
    const uint8_t *nl = memchr(p + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - p) + 1 : n;
    if (side == SP_SIDE_CLIENT && !sc->partial) {
      size_t take = end - i;
      if (take > sizeof sc->line - sc->n)
        take = sizeof sc->line - sc->n;
      memcpy(sc->line + sc->n, p + i, take);
      sc->n += take;
    }
    if (nl) {
      if (side == SP_SIDE_CLIENT && !sc->partial)
        client_line_done(c, sc);
      sc->n = 0;
      sc->partial = 0;
    }
    sc->line_start = nl != NULL;
    sc->off += end - i;
    i = end;
  }
  sp_record r = {(sp_rec_type)(side == SP_SIDE_CLIENT ? 'C' : 'S'),
                 rel_time(c, ts),
                 side,
                 n,
                 p,
                 0};
  c->sess.bytes[side] += n;
  return put(c, &r);
}

/* An event of a decided SMTP connection. */
static int session_event(conn *c, int ep, const sp_stream_ev *ev) {
  if (c->complete)
    return 0;
  sp_side side = side_of(c, ep);
  switch (ev->type) {
  case SP_EV_DATA:
    return on_data(c, ep, ev->ts_us, ev->data, (size_t)ev->len);
  case SP_EV_GAP: {
    scanner *sc = &c->sc[ep];
    sc->off += ev->len;
    sc->line_start = 0;
    sc->partial = 1;
    sc->n = 0;
    c->sess.gaps[side]++;
    c->sess.gap_bytes[side] += ev->len;
    sp_record r = {SP_REC_GAP, rel_time(c, ev->ts_us), side, ev->len, NULL, 0};
    return put(c, &r);
  }
  case SP_EV_FIN: {
    c->fin[ep] = 1;
    int rc =
        put_end(c, ev->ts_us,
                side == SP_SIDE_CLIENT ? SP_END_CLIENT_FIN : SP_END_SERVER_FIN);
    if (c->fin[0] && c->fin[1])
      c->complete = 1;
    return rc;
  }
  case SP_EV_RST: {
    /* The peer's stream ends with the reset too: account for what it
     * still holds before the final record. */
    int rc = sp_stream_flush(&c->st[1 - ep], ev->ts_us);
    if (rc || c->complete)
      return rc;
    return put_end(c, ev->ts_us,
                   side == SP_SIDE_CLIENT ? SP_END_CLIENT_RST
                                          : SP_END_SERVER_RST);
  }
  }
  return 0;
}

/*
 * Spambots reach mail servers through open proxies: "CONNECT host:25
 * HTTP/1.x" and the proxy's "HTTP/1.x 200" reply precede the SMTP dialogue
 * on the proxy's port.  Both preambles, up to their blank line, are dropped
 * so the session is judged (and transcribed) from its first SMTP byte.
 * Returns 1 when the whole event was preamble, else 0 with *rest holding
 * what follows it.
 */
static int strip_preamble(conn *c, int ep, const sp_stream_ev *ev,
                          sp_stream_ev *rest) {
  const uint8_t *p = ev->data;
  size_t n = (size_t)ev->len;
  *rest = *ev;
  if (c->tunnel[ep] == T_UNKNOWN) {
    if (c->tunnel_client < 0 && n >= 8 && !memcmp(p, "CONNECT ", 8)) {
      c->tunnel_client = ep;
      c->tunnel[ep] = T_STRIP;
    } else if (c->tunnel_client == 1 - ep && n >= 5 && !memcmp(p, "HTTP/", 5)) {
      c->tunnel[ep] = T_STRIP;
    } else {
      c->tunnel[ep] = T_NONE;
    }
  }
  if (c->tunnel[ep] != T_STRIP)
    return 0;
  static const char blank[] = "\r\n\r\n";
  size_t i = 0;
  while (i < n && c->tunnel_m[ep] < 4) {
    if (p[i] == (uint8_t)blank[c->tunnel_m[ep]])
      c->tunnel_m[ep]++;
    else
      c->tunnel_m[ep] = p[i] == '\r' ? 1 : 0;
    i++;
  }
  if (c->tunnel_m[ep] == 4) {
    c->tunnel[ep] = T_DONE;
    c->sess.tunneled = 1;
  }
  if (i == n)
    return 1;
  rest->data = p + i;
  rest->len = n - i;
  return 0;
}

static int on_stream_ev(void *ctx, const sp_stream_ev *ev) {
  stream_ctx *x = ctx;
  conn *c = x->c;
  switch (c->state) {
  case C_SMTP:
    return session_event(c, x->ep, ev);
  case C_PENDING: {
    sp_stream_ev rest;
    if (!c->judged[x->ep] && ev->type == SP_EV_DATA) {
      if (strip_preamble(c, x->ep, ev, &rest))
        return 0;
      ev = &rest;
    }
    if (!c->judged[x->ep] && ev->type == SP_EV_GAP)
      c->tunnel[x->ep] = T_NONE;
    if (!c->judged[x->ep] &&
        (ev->type == SP_EV_DATA || ev->type == SP_EV_GAP)) {
      c->judged[x->ep] = 1;
      c->cls[x->ep] =
          ev->type == SP_EV_DATA ? classify(ev->data, (size_t)ev->len) : F_NONE;
    }
    pend_hdr h = {ev->ts_us, ev->len, (uint8_t)x->ep, (uint8_t)ev->type};
    int rc = sp_buf_append(&c->pending, &h, sizeof h);
    if (!rc && ev->type == SP_EV_DATA)
      rc = sp_buf_append(&c->pending, ev->data, (size_t)ev->len);
    if (rc)
      c->t->err = rc;
    return rc;
  }
  default:
    return 0;
  }
}

/* ---- decisions ---- */

static int strict_smtp(fclass f) { return f == F_GREETING || f == F_HELO; }

/* Which endpoint is the client by content: -1 unknown. */
static int client_by_content(const conn *c) {
  for (int pass = 0; pass < 2; pass++)
    for (int e = 0; e < 2; e++) {
      if (!c->judged[e])
        continue;
      fclass f = c->cls[e];
      int strict = strict_smtp(f);
      if (pass == 0 && !strict)
        continue;
      if (f == F_GREETING || f == F_REPLY)
        return 1 - e;
      if (f == F_HELO || f == F_COMMAND || f == F_TLS)
        return e;
    }
  return -1;
}

static int begin_session(conn *c, int client) {
  sp_tracker *t = c->t;
  c->state = C_SMTP;
  c->client = client;
  c->sess.number = ++t->ctr.sessions;
  c->sess.client = c->ep[client];
  c->sess.server = c->ep[1 - client];
  c->sess.start_us = c->first_ts;
  c->sess.packets[SP_SIDE_CLIENT] = c->pkts[client];
  c->sess.packets[SP_SIDE_SERVER] = c->pkts[1 - client];
  if (t->cb.begin && t->cb.begin(t->ud, &c->sess)) {
    t->err = SP_ERR_CALLBACK;
    return SP_ERR_CALLBACK;
  }
  /* Replay what was held, in arrival order. */
  size_t off = 0;
  int rc = 0;
  while (!rc && off + sizeof(pend_hdr) <= c->pending.len) {
    pend_hdr h;
    memcpy(&h, c->pending.data + off, sizeof h);
    off += sizeof h;
    sp_stream_ev ev = {(sp_ev_type)h.type, h.ts, NULL, h.len};
    if (ev.type == SP_EV_DATA) {
      ev.data = c->pending.data + off;
      off += (size_t)h.len;
    }
    rc = session_event(c, h.ep, &ev);
  }
  sp_buf_free(&c->pending);
  return rc;
}

static void ignore_conn(conn *c) {
  c->t->ctr.undecided_bytes += c->pending.len;
  c->state = C_IGNORED;
  conn_release_buffers(c);
}

/* Decides SMTP-ness and roles if the evidence allows, or if force. */
static int try_decide(conn *c, int force) {
  sp_tracker *t = c->t;
  if (c->state != C_PENDING)
    return 0;
  if (!c->saw_syn && !c->saw_payload) {
    if (force)
      ignore_conn(c);
    return 0;
  }
  int both_judged = c->judged[0] && c->judged[1];
  int srv_port[2] = {port_in_set(t, c->ep[0].port),
                     port_in_set(t, c->ep[1].port)};
  int by_content = client_by_content(c);
  int smtp = 0;
  if (c->syn_client >= 0)
    smtp = srv_port[1 - c->syn_client];
  else
    smtp = srv_port[0] || srv_port[1];
  for (int e = 0; e < 2; e++)
    if (c->judged[e] && strict_smtp(c->cls[e]))
      smtp = 1;
  if (!smtp) {
    if (both_judged || force)
      ignore_conn(c);
    return 0;
  }
  int client = c->syn_client;
  if (client < 0)
    client = by_content;
  if (client < 0 && !both_judged && !force)
    return 0; /* the other side's first bytes may still tell */
  if (client < 0 && srv_port[0] != srv_port[1])
    client = srv_port[0] ? 1 : 0;
  if (client < 0)
    client = 0;
  return begin_session(c, client);
}

static int finish_session(sp_tracker *t, conn *c) {
  int rc = 0;
  if (!c->complete) {
    rc = sp_stream_flush(&c->st[c->client], c->last_ts);
    if (!rc && !c->complete)
      rc = sp_stream_flush(&c->st[1 - c->client], c->last_ts);
    if (!rc && !c->complete)
      rc = put_end(c, c->last_ts, SP_END_CAPTURE);
  }
  for (int i = 0; i < 2; i++) {
    const sp_reasm_stats *s = sp_stream_stats(&c->st[i]);
    sp_reasm_stats *d = &t->ctr.reasm;
    d->segments += s->segments;
    d->ooo_segments += s->ooo_segments;
    d->retrans_bytes += s->retrans_bytes;
    d->conflict_bytes += s->conflict_bytes;
    d->gaps += s->gaps;
    d->gap_bytes += s->gap_bytes;
    d->overflow_gaps += s->overflow_gaps;
    d->trunc_bytes += s->trunc_bytes;
    d->after_end_bytes += s->after_end_bytes;
  }
  if (!rc && t->cb.finish && t->cb.finish(t->ud, &c->sess)) {
    t->err = SP_ERR_CALLBACK;
    rc = SP_ERR_CALLBACK;
  }
  c->state = C_DONE;
  conn_release_buffers(c);
  return rc;
}

/* Ends whatever c is doing, as if the capture stopped here. */
static int close_conn(sp_tracker *t, conn *c) {
  int rc = 0;
  if (c->state == C_PENDING)
    rc = try_decide(c, 1);
  if (!rc && c->state == C_SMTP)
    rc = finish_session(t, c);
  return rc;
}

static int sweep(sp_tracker *t) {
  int rc = 0;
  conn *next;
  for (conn *c = t->head; c; c = next) {
    next = c->next;
    int64_t idle = t->now - c->last_ts;
    int64_t limit = t->cfg.idle_timeout_us ? t->cfg.idle_timeout_us
                                           : 3600 * INT64_C(1000000);
    if (c->state == C_DONE && idle > LINGER_US) {
      conn_remove(t, c);
    } else if (c->state == C_IGNORED && idle > limit) {
      conn_remove(t, c);
    } else if (t->cfg.idle_timeout_us && idle > t->cfg.idle_timeout_us) {
      int r = close_conn(t, c);
      if (r && !rc)
        rc = r;
      conn_remove(t, c);
    }
  }
  return rc;
}

/* ---- public ---- */

sp_tracker *sp_tracker_new(const sp_tracker_config *cfg,
                           const sp_tracker_callbacks *cb, void *ud) {
  sp_tracker *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->cfg = *cfg;
  if (cb)
    t->cb = *cb;
  t->ud = ud;
  t->nbuckets = 1024;
  t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
  if (!t->buckets) {
    free(t);
    return NULL;
  }
  return t;
}

int sp_tracker_packet(sp_tracker *t, const sp_tcp_segment *s) {
  if (t->err)
    return t->err;
  t->ctr.segments++;
  if (s->ts_us > t->now)
    t->now = s->ts_us;
  int rc = 0;
  if (++t->since_sweep >= SWEEP_EVERY) {
    t->since_sweep = 0;
    if ((rc = sweep(t)) != 0)
      return rc;
  }
  int syn_only = (s->flags & (SP_TCP_SYN | SP_TCP_ACK)) == SP_TCP_SYN;
  int ep = 0;
  conn *c = lookup(t, s, &ep);
  if (c && syn_only) {
    /* A fresh SYN with another ISN on a known 4-tuple is a new connection
     * (port reuse); a retransmitted SYN is not. */
    uint32_t isn;
    int same = sp_stream_syn_seq(&c->st[ep], &isn) && isn == s->seq;
    if (c->state == C_DONE || (!same && sp_stream_started(&c->st[ep]))) {
      rc = close_conn(t, c);
      conn_remove(t, c);
      c = NULL;
      if (rc)
        return rc;
    }
  }
  if (!c) {
    c = conn_new(t, s);
    if (!c)
      return t->err = SP_ERR_NOMEM;
    ep = 0;
  }
  c->last_ts = s->ts_us;
  if (c->state == C_DONE) {
    /* After E tls the encrypted rest of the connection is expected. */
    if (c->sess.tls != SP_TLS_NONE)
      t->ctr.tls_packets++;
    else
      t->ctr.late_packets++;
    return 0;
  }
  c->pkts[ep]++;
  if (c->state == C_SMTP)
    c->sess.packets[side_of(c, ep)]++;
  if (s->flags & SP_TCP_SYN) {
    c->saw_syn = 1;
    if (c->syn_client < 0)
      c->syn_client = (s->flags & SP_TCP_ACK) ? 1 - ep : ep;
  }
  if (s->wirelen)
    c->saw_payload = 1;
  if (c->state == C_IGNORED) {
    if (s->flags & SP_TCP_FIN)
      c->fin[ep] = 1;
    if ((s->flags & SP_TCP_RST) || (c->fin[0] && c->fin[1]))
      c->state = C_DONE;
    return 0;
  }
  if ((s->flags & SP_TCP_RST) && sp_stream_ended(&c->st[ep])) {
    /* Reset after this side's FIN: the stream layer has nothing more to
     * say, but the connection is over. */
    sp_stream_ev ev = {SP_EV_RST, s->ts_us, NULL, 0};
    rc = on_stream_ev(&c->sx[ep], &ev);
  } else {
    rc = sp_stream_segment(&c->st[ep], s->ts_us, s->seq, s->flags, s->payload,
                           s->caplen, s->wirelen);
  }
  if (rc == SP_ERR_NOMEM)
    t->err = rc;
  if (rc)
    return t->err ? t->err : rc;
  if (c->state == C_PENDING) {
    rc = try_decide(c, c->pending.len > t->cfg.max_pending);
    if (rc)
      return rc;
  }
  if (c->state == C_SMTP && c->complete)
    rc = finish_session(t, c);
  return rc;
}

int sp_tracker_finish(sp_tracker *t) {
  int rc = 0;
  for (conn *c = t->head; c; c = c->next) {
    int r = close_conn(t, c);
    if (r && !rc)
      rc = r;
  }
  while (t->head)
    conn_remove(t, t->head);
  return rc;
}

const sp_tracker_counters *sp_tracker_get_counters(const sp_tracker *t) {
  return &t->ctr;
}

void sp_tracker_free(sp_tracker *t) {
  if (!t)
    return;
  while (t->head)
    conn_remove(t, t->head);
  free(t->buckets);
  free(t);
}
