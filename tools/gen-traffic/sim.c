/*
 * sim.c: one SMTP session as seen by a capture taken at the server.
 *
 * Every time here is a capture timestamp in microseconds.  The server's
 * packets carry the time it sends them; the client's carry the time they
 * reach the server.  A client that sees a server packet captured at T can
 * therefore answer no earlier than T + rtt, which is how the client's
 * "now" is kept.
 *
 * The dialogue is half duplex, so the client is written as straight-line
 * code (send, read reply, ...).  The server answers each client write once it
 * has fully arrived, and queues its replies with their send times; they are
 * put on the wire lazily, when the client reads or writes, so that a client
 * that gives up first can cancel replies the server never got to send.
 * ACK numbers come from a per-side log of (time, rcv_nxt), so a packet only
 * acknowledges what had arrived by its own timestamp, whatever order the code
 * builds packets in.
 */
#include "gen.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const dialect_names[D_COUNT] = {
    "mta",           "mta-helo",   "bot-pregreet",  "bot-pipeline",
    "bot-impatient", "bot-noquit", "bot-helo-forms"};

#define SERVER_NAME "mx.example.net"
#define DELACK_US 40000 /* Linux's minimum delayed-ACK timeout */
#define SRV_WIN 65160
#define SRV_MSS 1460
#define INIT_CWND 10 /* RFC 6928 */

struct rlog {
  int64_t t;
  uint32_t nxt;
};

struct side {
  const struct addr *addr;
  uint16_t port;
  int to_server;
  uint32_t snd_nxt;
  uint16_t win, ipid;
  uint8_t ttl;
  struct rlog *log;
  size_t nlog, caplog;
  int ack_pending;
  int64_t ack_deadline;
  uint32_t ack_need;
  int unacked;
  int64_t last_t;
  int reset;
};

struct entry {
  int64_t t;
  size_t off, len;
  int close;
};

struct sess {
  const struct config *cfg;
  struct truth *tr;
  struct rng r;
  emit_fn emit;
  void *ectx;
  int oom;
  uint8_t *frame;
  struct side c, s;
  uint16_t mss;
  int64_t rtt, now, wait_start, patience_us, think_lo, think_hi;
  int over;
  const char *stage;
  /* server */
  char *sout;
  size_t soutlen, soutcap;
  struct entry *q;
  size_t nq, capq, qdel;
  char *sin;
  size_t sinlen, sincap;
  int64_t s_busy;
  int s_helo, s_mail, s_data, s_closed, s_fin_sent, s_errors;
  unsigned s_rcpt_ok;
  /* client */
  char *cin;
  size_t cinlen, cincap, cinoff;
  int64_t cin_ready, c_fin_at;
  int c_fin_seen;
  char reply[2048];
  char helo_name[64];
  char client_ip[64];
};

static int seq_ge(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }

static int64_t us(double seconds) { return (int64_t)(seconds * 1e6 + 0.5); }

static int64_t rnd_us(struct sess *S, double lo, double hi) {
  return us(rng_uniform(&S->r, lo, hi));
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 16;
  while (n < need)
    n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q)
    return -1;
  *p = q;
  *cap = n;
  return 0;
}

static void append(struct sess *S, char **buf, size_t *len, size_t *cap,
                   const char *p, size_t n) {
  /* The explicit overflow test also tells GCC's -O3 -Wstringop-overflow
     that *len + n cannot wrap. */
  if (n >= SIZE_MAX - *len || grow((void **)buf, cap, *len + n + 1, 1)) {
    S->oom = 1;
    return;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  (*buf)[*len] = 0;
}

static void log_push(struct sess *S, struct side *x, int64_t t, uint32_t nxt) {
  if (grow((void **)&x->log, &x->caplog, x->nlog + 1, sizeof *x->log)) {
    S->oom = 1;
    return;
  }
  x->log[x->nlog].t = t;
  x->log[x->nlog].nxt = nxt;
  x->nlog++;
}

static uint32_t rcv_at(const struct side *x, int64_t t) {
  size_t i = x->nlog;
  while (i > 0) {
    i--;
    if (x->log[i].t <= t)
      return x->log[i].nxt;
  }
  return 0;
}

static void emit_raw(struct sess *S, struct side *x, struct side *peer,
                     int64_t t, uint8_t flags, uint32_t seq, const uint8_t *p,
                     size_t n, const uint8_t *opt, size_t optlen) {
  struct tcpseg seg;
  memset(&seg, 0, sizeof seg);
  seg.src = x->addr;
  seg.dst = peer->addr;
  seg.sport = x->port;
  seg.dport = peer->port;
  seg.seq = seq;
  seg.ack = rcv_at(x, t);
  seg.flags = flags;
  seg.win = (flags & TCPF_RST) && !(flags & TCPF_ACK) ? 0 : x->win;
  seg.ttl = x->ttl;
  seg.ipid = x->ipid++;
  seg.to_server = x->to_server;
  seg.opt = opt;
  seg.optlen = optlen;
  seg.payload = p;
  seg.plen = n;
  size_t len = pkt_build(S->frame, S->cfg->linktype, &seg);
  S->emit(S->ectx, t, S->frame, len);
  if (t > x->last_t)
    x->last_t = t;
  if ((flags & TCPF_ACK) && x->ack_pending && seq_ge(seg.ack, x->ack_need)) {
    x->ack_pending = 0;
    x->unacked = 0;
  }
}

/* Sends the delayed ACK a side owes if its timer ran out before t. */
static void tick(struct sess *S, struct side *x, struct side *peer, int64_t t) {
  if (x->ack_pending && !x->reset && x->ack_deadline <= t) {
    int64_t d = x->ack_deadline;
    x->ack_pending = 0;
    x->unacked = 0;
    emit_raw(S, x, peer, d, TCPF_ACK, x->snd_nxt, NULL, 0, NULL, 0);
  }
}

static int64_t emit(struct sess *S, struct side *x, struct side *peer,
                    int64_t t, uint8_t flags, const void *p, size_t n) {
  if (t < x->last_t) /* one side's packets never go back in time */
    t = x->last_t;
  tick(S, x, peer, t);
  emit_raw(S, x, peer, t, flags, x->snd_nxt, p, n, NULL, 0);
  x->snd_nxt += (uint32_t)n + ((flags & (TCPF_SYN | TCPF_FIN)) ? 1u : 0u);
  return t;
}

/* Side x's kernel received up to nxt at time t: ACK every second segment at
 * once, otherwise arm the delayed ACK (RFC 1122 4.2.3.2). */
static void rx(struct sess *S, struct side *x, struct side *peer, int64_t t,
               uint32_t nxt) {
  log_push(S, x, t, nxt);
  x->unacked++;
  if (x->unacked >= 2) {
    emit(S, x, peer, t, TCPF_ACK, NULL, 0);
    return;
  }
  if (!x->ack_pending) {
    x->ack_pending = 1;
    x->ack_deadline = t + DELACK_US;
  }
  x->ack_need = nxt;
}

static int64_t seg_gap(size_t n) { return (int64_t)(n + 54) / 12 + 1; }

/* ---- the server ------------------------------------------------------ */

static void srv_queue(struct sess *S, int64_t t, const char *text, int close) {
  /* Replies to lines that arrived together leave in one write. */
  if (S->nq > S->qdel && S->q[S->nq - 1].t == t && !S->q[S->nq - 1].close) {
    append(S, &S->sout, &S->soutlen, &S->soutcap, text, strlen(text));
    S->q[S->nq - 1].len += strlen(text);
    S->q[S->nq - 1].close = close;
    return;
  }
  if (grow((void **)&S->q, &S->capq, S->nq + 1, sizeof *S->q)) {
    S->oom = 1;
    return;
  }
  struct entry *e = &S->q[S->nq++];
  e->t = t;
  e->off = S->soutlen;
  e->len = strlen(text);
  e->close = close;
  append(S, &S->sout, &S->soutlen, &S->soutcap, text, e->len);
}

static int ieq_prefix(const char *line, const char *word) {
  size_t n = strlen(word);
  return strncasecmp(line, word, n) == 0 && (line[n] == 0 || line[n] == ' ');
}

/* The reply of a plausible MTA (Postfix's wording) to one command line. */
static const char *srv_command(struct sess *S, const char *line, char *buf,
                               size_t cap, int *close) {
  const char *arg = strchr(line, ' ');
  while (arg && *arg == ' ')
    arg++;
  int has_arg = arg && *arg;
  *close = 0;
  if (ieq_prefix(line, "EHLO")) {
    if (!has_arg)
      return "501 5.5.4 Syntax: EHLO hostname\r\n";
    S->s_helo = 1;
    S->s_mail = 0;
    S->s_rcpt_ok = 0;
    return "250-" SERVER_NAME "\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
           "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n";
  }
  if (ieq_prefix(line, "HELO")) {
    if (!has_arg)
      return "501 Syntax: HELO hostname\r\n";
    S->s_helo = 1;
    S->s_mail = 0;
    S->s_rcpt_ok = 0;
    return "250 " SERVER_NAME "\r\n";
  }
  if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
    if (!S->s_helo)
      return "503 5.5.1 Error: send HELO/EHLO first\r\n";
    if (S->s_mail)
      return "503 5.5.1 Error: nested MAIL command\r\n";
    S->s_mail = 1;
    S->s_rcpt_ok = 0;
    return "250 2.1.0 Ok\r\n";
  }
  if (strncasecmp(line, "RCPT TO:", 8) == 0) {
    if (!S->s_mail)
      return "503 5.5.1 Error: need MAIL command\r\n";
    S->tr->rcpts++;
    if (rng_chance(&S->r, S->cfg->reject_rate)) {
      S->tr->rcpts_rejected++;
      snprintf(buf, cap,
               "550 5.1.1 %s: Recipient address rejected: User unknown in "
               "virtual mailbox table\r\n",
               line + 8);
      return buf;
    }
    S->s_rcpt_ok++;
    return "250 2.1.5 Ok\r\n";
  }
  if (strcasecmp(line, "DATA") == 0) {
    if (!S->s_mail)
      return "503 5.5.1 Error: need RCPT command\r\n";
    if (!S->s_rcpt_ok)
      return "554 5.5.1 Error: no valid recipients\r\n";
    S->s_data = 1;
    return "354 End data with <CR><LF>.<CR><LF>\r\n";
  }
  if (strcasecmp(line, "RSET") == 0) {
    S->s_mail = 0;
    S->s_rcpt_ok = 0;
    return "250 2.0.0 Ok\r\n";
  }
  if (strcasecmp(line, "NOOP") == 0)
    return "250 2.0.0 Ok\r\n";
  if (strcasecmp(line, "QUIT") == 0) {
    *close = 1;
    return "221 2.0.0 Bye\r\n";
  }
  return "502 5.5.2 Error: command not recognized\r\n";
}

/* Processes the complete lines of a client write that arrived at ta. */
static void srv_process(struct sess *S, int64_t ta) {
  const struct config *cfg = S->cfg;
  int64_t t = ta > S->s_busy ? ta : S->s_busy;
  int64_t group = t + rnd_us(S, 50e-6, 400e-6) + us(cfg->reply_delay);
  size_t pos = 0;
  char buf[1200];
  for (;;) {
    char *nl = memchr(S->sin + pos, '\n', S->sinlen - pos);
    if (!nl || S->s_closed)
      break;
    size_t n = (size_t)(nl - (S->sin + pos));
    char line[1100];
    size_t m = n > 0 && S->sin[pos + n - 1] == '\r' ? n - 1 : n;
    if (m >= sizeof line)
      m = sizeof line - 1;
    memcpy(line, S->sin + pos, m);
    line[m] = 0;
    pos += n + 1;
    if (S->s_data) {
      if (strcmp(line, ".") == 0) {
        /* the queue manager's fsync, then one write of its own */
        S->s_data = 0;
        S->s_mail = 0;
        S->s_rcpt_ok = 0;
        t = group + rnd_us(S, 2e-3, 30e-3);
        /* one draw per statement: argument order is unspecified */
        uint32_t qid = rng_u32(&S->r);
        uint32_t qid2 = rng_below(&S->r, 256);
        snprintf(buf, sizeof buf, "250 2.0.0 Ok: queued as %08X%02X\r\n", qid,
                 qid2);
        srv_queue(S, t, buf, 0);
        group = t + rnd_us(S, 50e-6, 400e-6) + us(cfg->reply_delay);
      }
      continue;
    }
    int close;
    const char *reply = srv_command(S, line, buf, sizeof buf, &close);
    if (reply[0] == '4' || reply[0] == '5')
      S->s_errors++;
    if (!close && S->s_errors >= 20) { /* smtpd_hard_error_limit */
      reply = "421 4.7.0 " SERVER_NAME " Error: too many errors\r\n";
      close = 1;
    }
    t = group;
    srv_queue(S, t, reply, close);
    if (close)
      S->s_closed = 1;
    /* A tarpit delays every reply, so each one is its own write. */
    if (cfg->reply_delay > 0)
      group = t + rnd_us(S, 50e-6, 400e-6) + us(cfg->reply_delay);
  }
  memmove(S->sin, S->sin + pos, S->sinlen - pos);
  S->sinlen -= pos;
  if (S->s_closed)
    S->sinlen = 0;
  if (t > S->s_busy)
    S->s_busy = t;
}

/* Puts one queued server write on the wire; the client's kernel gets it
 * unless the client already closed (deliver == 0). */
static int64_t srv_wire(struct sess *S, struct entry *e, int deliver) {
  int64_t t = e->t;
  size_t off = 0;
  while (off < e->len) {
    size_t n = e->len - off < S->mss ? e->len - off : S->mss;
    uint8_t fl = TCPF_ACK | (off + n == e->len ? TCPF_PSH : 0);
    t = emit(S, &S->s, &S->c, t, fl, S->sout + e->off + off, n);
    if (deliver)
      rx(S, &S->c, &S->s, t + S->rtt, S->s.snd_nxt);
    off += n;
    t += seg_gap(n);
  }
  if (deliver) {
    append(S, &S->cin, &S->cinlen, &S->cincap, S->sout + e->off, e->len);
    S->cin_ready = t + S->rtt;
  }
  if (e->close) {
    t = emit(S, &S->s, &S->c, t + rnd_us(S, 20e-6, 120e-6), TCPF_FIN | TCPF_ACK,
             NULL, 0);
    S->s_fin_sent = 1;
    if (deliver) {
      rx(S, &S->c, &S->s, t + S->rtt, S->s.snd_nxt);
      S->c_fin_seen = 1;
      S->c_fin_at = t + S->rtt;
    }
  }
  return t;
}

static void srv_wire_until(struct sess *S, int64_t t) {
  while (S->qdel < S->nq && S->q[S->qdel].t <= t)
    srv_wire(S, &S->q[S->qdel++], 1);
}

/* ---- the client ------------------------------------------------------ */

static void think(struct sess *S) {
  S->now += rnd_us(S, (double)S->think_lo / 1e6, (double)S->think_hi / 1e6);
}

/* One write(): MSS-sized segments in slow-start rounds. */
static void c_send(struct sess *S, const char *p, size_t len) {
  if (S->over)
    return;
  size_t cwnd = INIT_CWND, maxw = (size_t)(SRV_WIN / S->mss - 1), off = 0;
  int64_t t = S->now, round = t;
  while (off < len) {
    for (size_t k = 0; k < cwnd && off < len; k++) {
      size_t n = len - off < S->mss ? len - off : S->mss;
      srv_wire_until(S, t);
      uint8_t fl = TCPF_ACK | (off + n == len ? TCPF_PSH : 0);
      t = emit(S, &S->c, &S->s, t, fl, p + off, n);
      rx(S, &S->s, &S->c, t, S->c.snd_nxt);
      append(S, &S->sin, &S->sinlen, &S->sincap, p + off, n);
      S->now = t;
      off += n;
      t += seg_gap(n);
    }
    if (off < len) {
      round += S->rtt;
      if (t < round)
        t = round;
      cwnd = cwnd * 2 < maxw ? cwnd * 2 : maxw;
    }
  }
  srv_process(S, S->now);
  S->wait_start = S->now;
}

static void c_printf(struct sess *S, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void c_printf(struct sess *S, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  c_send(S, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void c_passive_close(struct sess *S, const char *end);

/* The client closes first: FIN (or RST).  Server writes sent before the
 * close reached the server are still in flight and draw a RST from the
 * client's kernel; later ones are never sent. */
static void c_close(struct sess *S, int64_t g, int rst, const char *end) {
  struct side *c = &S->c, *s = &S->s;
  if (g < S->now)
    g = S->now;
  if (S->c_fin_seen && !rst) {
    c_passive_close(S, end);
    return;
  }
  int64_t arrive = -1;
  uint32_t data_ack = 0;
  while (S->qdel < S->nq && S->q[S->qdel].t < g) {
    struct entry *e = &S->q[S->qdel++];
    srv_wire(S, e, 0);
    if (arrive < 0) {
      arrive = e->t + S->rtt;
      data_ack = c->snd_nxt;
    }
  }
  S->qdel = S->nq;
  S->tr->end = end;
  S->over = 1;
  if (rst) {
    emit(S, c, s, g, TCPF_RST | TCPF_ACK, NULL, 0);
    c->reset = s->reset = 1;
    if (arrive >= 0)
      emit_raw(S, c, s, arrive > g ? arrive : g + 1, TCPF_RST, data_ack, NULL,
               0, NULL, 0);
    return;
  }
  tick(S, s, c, g);
  emit(S, c, s, g, TCPF_FIN | TCPF_ACK, NULL, 0);
  log_push(S, s, g, c->snd_nxt);
  int64_t app = g + rnd_us(S, 100e-6, 800e-6);
  if (arrive >= 0) {
    emit(S, s, c, g, TCPF_ACK, NULL, 0);
    if (!S->s_fin_sent && app < arrive)
      emit(S, s, c, app, TCPF_FIN | TCPF_ACK, NULL, 0);
    emit_raw(S, c, s, arrive, TCPF_RST, data_ack, NULL, 0, NULL, 0);
    c->reset = s->reset = 1;
    return;
  }
  if (S->s_fin_sent) {
    emit(S, s, c, g, TCPF_ACK, NULL, 0);
    return;
  }
  /* The server's kernel ACKs the FIN; smtpd then reads EOF and closes. */
  emit(S, s, c, g, TCPF_ACK, NULL, 0);
  int64_t f = emit(S, s, c, app, TCPF_FIN | TCPF_ACK, NULL, 0);
  log_push(S, c, f + S->rtt, s->snd_nxt);
  c->ack_pending = 0;
  emit(S, c, s, f + S->rtt, TCPF_ACK, NULL, 0);
}

/* The server closed (after 221 or 421): the client closes too. */
static void c_passive_close(struct sess *S, const char *end) {
  int64_t t = S->now > S->c_fin_at ? S->now : S->c_fin_at;
  S->now = t + rnd_us(S, 20e-6, 600e-6);
  emit(S, &S->c, &S->s, S->now, TCPF_FIN | TCPF_ACK, NULL, 0);
  log_push(S, &S->s, S->now, S->c.snd_nxt);
  S->s.ack_pending = 0;
  emit(S, &S->s, &S->c, S->now, TCPF_ACK, NULL, 0);
  S->tr->end = end;
  S->over = 1;
}

static void c_give_up(struct sess *S) {
  S->tr->gave_up = 1;
  S->tr->stage = S->stage;
  int rst = rng_chance(&S->r, S->cfg->giveup_rst);
  c_close(S, S->wait_start + S->patience_us, rst,
          rst ? "gave-up-rst" : "gave-up-fin");
}

/* Reads one complete reply; returns its code, or -1 once the session is
 * over (the client gave up, or the server closed without a reply). */
static int c_read(struct sess *S, const char *stage) {
  S->stage = stage;
  for (;;) {
    if (S->over || S->oom)
      return -1;
    size_t pos = S->cinoff;
    while (pos < S->cinlen) {
      char *nl = memchr(S->cin + pos, '\n', S->cinlen - pos);
      if (!nl)
        break;
      size_t linelen = (size_t)(nl - (S->cin + pos)) + 1;
      if (linelen >= 4 && S->cin[pos + 3] == '-') {
        pos += linelen;
        continue;
      }
      size_t n = pos + linelen - S->cinoff;
      if (n >= sizeof S->reply)
        n = sizeof S->reply - 1;
      memcpy(S->reply, S->cin + S->cinoff, n);
      S->reply[n] = 0;
      S->cinoff = pos + linelen;
      if (S->cin_ready > S->now)
        S->now = S->cin_ready;
      S->wait_start = S->now;
      return atoi(S->reply);
    }
    if (S->qdel < S->nq) {
      struct entry *e = &S->q[S->qdel];
      if (e->t + S->rtt > S->wait_start + S->patience_us) {
        c_give_up(S);
        return -1;
      }
      S->qdel++;
      srv_wire(S, e, 1);
      /* A read timer restarts whenever bytes arrive. */
      S->wait_start = S->cin_ready;
      continue;
    }
    if (S->c_fin_seen) {
      c_passive_close(S, "server-closed");
      return -1;
    }
    c_give_up(S);
    return -1;
  }
}

static int c_cmd(struct sess *S, const char *stage, const char *line) {
  think(S);
  c_printf(S, "%s\r\n", line);
  return c_read(S, stage);
}

static void c_quit(struct sess *S) {
  if (S->over)
    return;
  think(S);
  c_printf(S, "QUIT\r\n");
  for (;;) {
    int code = c_read(S, "quit");
    if (code < 0)
      return;
    if (code == 221 || code == 421)
      break;
  }
  if (S->over)
    return;
  if (S->c_fin_seen) /* the server's FIN came with its 221 */
    c_passive_close(S, "quit");
  else
    c_close(S, S->now, 0, "quit");
}

/* ---- messages -------------------------------------------------------- */

static const char *const words[] = {
    "lorem",        "ipsum",      "dolor",      "sit",    "amet",
    "consectetur",  "adipiscing", "elit",       "sed",    "do",
    "eiusmod",      "tempor",     "incididunt", "ut",     "labore",
    "et",           "dolore",     "magna",      "aliqua", "enim",
    "ad",           "minim",      "veniam",     "quis",   "nostrud",
    "exercitation", "ullamco",    "laboris",    "nisi",   "aliquip"};

static char *build_message(struct sess *S, const char *from, const char *to,
                           int spam, size_t *len) {
  char *m = NULL;
  size_t n = 0, cap = 0;
  char hdr[1024], date[64];
  time_t secs = (time_t)(S->tr->start_us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  uint32_t id1 = rng_u32(&S->r);
  uint32_t id2 = rng_u32(&S->r);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  int k = snprintf(hdr, sizeof hdr,
                   "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\n"
                   "Message-ID: <%08x%08x@%s>\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n"
                   "X-Synthetic: sluice-gen-traffic\r\n\r\n",
                   from, to,
                   spam ? "Your account statement is ready"
                        : "Minutes of the weekly meeting",
                   date, id1, id2, spam ? "example.com" : "example.org");
  append(S, &m, &n, &cap, hdr, (size_t)k);
  size_t target = S->cfg->message_size;
  while (n < target && !S->oom) {
    char line[100];
    size_t l = 0;
    while (l < 64) {
      const char *w = words[rng_below(&S->r, sizeof words / sizeof *words)];
      size_t wl = strlen(w);
      if (l)
        line[l++] = ' ';
      memcpy(line + l, w, wl);
      l += wl;
    }
    line[l++] = '\r';
    line[l++] = '\n';
    append(S, &m, &n, &cap, line, l);
  }
  append(S, &m, &n, &cap, ".\r\n", 3);
  *len = n;
  return m;
}

/* ---- dialects -------------------------------------------------------- */

static void rcpt_addr(struct sess *S, char *buf, size_t cap) {
  snprintf(buf, cap, "user%u@example.net", rng_below(&S->r, 5000));
}

static int send_message(struct sess *S, const char *from, int spam) {
  char to[64];
  rcpt_addr(S, to, sizeof to);
  size_t len = 0;
  char *m = build_message(S, from, to, spam, &len);
  if (!m)
    return -1;
  think(S);
  c_send(S, m, len);
  free(m);
  int code = c_read(S, "message");
  if (code == 250)
    S->tr->messages++;
  return code;
}

/* MAIL, RCPT..., DATA, message, one command at a time. */
static int transaction_seq(struct sess *S, const char *from, unsigned nrcpt,
                           int spam) {
  char line[256], to[64];
  snprintf(line, sizeof line, "MAIL FROM:<%s>", from);
  int code = c_cmd(S, "mail", line);
  if (code != 250)
    return code;
  unsigned ok = 0;
  for (unsigned i = 0; i < nrcpt; i++) {
    rcpt_addr(S, to, sizeof to);
    snprintf(line, sizeof line, "RCPT TO:<%s>", to);
    code = c_cmd(S, "rcpt", line);
    if (code < 0 || code == 421)
      return code;
    ok += code == 250;
  }
  if (!ok)
    return 550;
  code = c_cmd(S, "data", "DATA");
  if (code != 354)
    return code;
  return send_message(S, from, spam);
}

/* MAIL, RCPT..., DATA in one write (RFC 2920), optionally the message too. */
static int transaction_pipe(struct sess *S, const char *from,
                            const char *mail_params, unsigned nrcpt,
                            int with_body, int spam) {
  char *buf = NULL, line[256], to[64];
  size_t n = 0, cap = 0;
  int k =
      snprintf(line, sizeof line, "MAIL FROM:<%s>%s\r\n", from, mail_params);
  append(S, &buf, &n, &cap, line, (size_t)k);
  for (unsigned i = 0; i < nrcpt; i++) {
    rcpt_addr(S, to, sizeof to);
    k = snprintf(line, sizeof line, "RCPT TO:<%s>\r\n", to);
    append(S, &buf, &n, &cap, line, (size_t)k);
  }
  append(S, &buf, &n, &cap, "DATA\r\n", 6);
  if (with_body) {
    size_t len = 0;
    char *m = build_message(S, from, to, spam, &len);
    if (m)
      append(S, &buf, &n, &cap, m, len);
    free(m);
  }
  if (S->oom) {
    free(buf);
    return -1;
  }
  S->tr->pipelined = 1;
  think(S);
  c_send(S, buf, n);
  free(buf);
  int code = c_read(S, "mail");
  for (unsigned i = 0; i < nrcpt && code >= 0 && code != 421; i++)
    code = c_read(S, "rcpt");
  if (code < 0 || code == 421)
    return code;
  code = c_read(S, "data");
  if (code != 354)
    return code;
  if (with_body) {
    code = c_read(S, "message");
    if (code == 250)
      S->tr->messages++;
    return code;
  }
  return send_message(S, from, spam);
}

static void bot_name(struct sess *S, char *buf, size_t cap) {
  uint32_t x = rng_u32(&S->r) & 0xffffffu;
  switch (rng_below(&S->r, 4)) {
  case 0:
    snprintf(buf, cap, "DESKTOP-%06X", x);
    break;
  case 1:
    snprintf(buf, cap, "user-pc%04x", x & 0xffffu);
    break;
  case 2:
    snprintf(buf, cap, "%06x.example.com", x);
    break;
  default:
    snprintf(buf, cap, "WIN-%06X", x);
    break;
  }
}

static void run_dialect(struct sess *S) {
  char line[256], from[96];
  enum dialect d = S->tr->dialect;
  int spam = d != D_MTA && d != D_MTA_HELO;
  unsigned nrcpt = spam ? 1 + rng_below(&S->r, 5) : 1 + rng_below(&S->r, 3);
  if (spam) {
    char l[3];
    for (int i = 0; i < 3; i++)
      l[i] = (char)('a' + rng_below(&S->r, 26));
    unsigned num = rng_below(&S->r, 1000);
    snprintf(from, sizeof from, "%c%c%c%u@example.com", l[0], l[1], l[2], num);
  } else
    snprintf(from, sizeof from, "list%u@example.org", rng_below(&S->r, 100));
  int code;

  switch (d) {
  case D_MTA:
  case D_MTA_HELO:
    if (c_read(S, "greeting") != 220)
      break;
    if (d == D_MTA) {
      snprintf(line, sizeof line, "EHLO %s", S->helo_name);
      code = c_cmd(S, "ehlo", line);
      if (code == 250 && strstr(S->reply, "PIPELINING")) {
        char size[48] = "";
        if (strstr(S->reply, "SIZE"))
          snprintf(size, sizeof size, " SIZE=%zu", S->cfg->message_size + 400);
        code = transaction_pipe(S, from, size, nrcpt, 0, 0);
      } else if (code == 250) {
        code = transaction_seq(S, from, nrcpt, 0);
      }
    } else {
      snprintf(line, sizeof line, "HELO %s", S->helo_name);
      code = c_cmd(S, "helo", line);
      if (code == 250)
        code = transaction_seq(S, from, nrcpt, 0);
    }
    if (code == 421)
      break;
    c_quit(S);
    break;

  case D_BOT_PREGREET:
    /* talks as soon as connect() returns */
    S->tr->pregreet = 1;
    S->now += rnd_us(S, 100e-6, 2e-3);
    snprintf(line, sizeof line, "%s %s",
             rng_chance(&S->r, 0.5) ? "EHLO" : "HELO", S->helo_name);
    c_printf(S, "%s\r\n", line);
    if (c_read(S, "greeting") != 220)
      break;
    if (c_read(S, "ehlo") != 250)
      break;
    code = transaction_seq(S, from, nrcpt, 1);
    if (code != 421)
      c_quit(S);
    break;

  case D_BOT_PIPELINE:
    if (c_read(S, "greeting") != 220)
      break;
    /* HELO gives no capabilities, and it pipelines all the same */
    snprintf(line, sizeof line, "%s %s",
             rng_chance(&S->r, 0.5) ? "EHLO" : "HELO", S->helo_name);
    if (c_cmd(S, "ehlo", line) != 250)
      break;
    code = transaction_pipe(S, from, "", nrcpt, rng_chance(&S->r, 0.5), 1);
    if (code != 421)
      c_quit(S);
    break;

  case D_BOT_IMPATIENT:
  case D_BOT_NOQUIT:
    if (c_read(S, "greeting") != 220)
      break;
    snprintf(line, sizeof line, "EHLO %s", S->helo_name);
    if (c_cmd(S, "ehlo", line) != 250)
      break;
    code = transaction_seq(S, from, nrcpt, 1);
    if (code == 421)
      break;
    if (d == D_BOT_NOQUIT) {
      if (!S->over) {
        int rst = rng_chance(&S->r, 0.5);
        S->now += rnd_us(S, 50e-6, 5e-3);
        c_close(S, S->now, rst, rst ? "drop-rst" : "drop-fin");
      }
      break;
    }
    c_quit(S);
    break;

  case D_BOT_HELO_FORMS: {
    if (c_read(S, "greeting") != 220)
      break;
    int form = (int)rng_below(&S->r, 3);
    const char *verb = rng_chance(&S->r, 0.7) ? "HELO" : "EHLO";
    S->tr->helo_form = form + 1;
    if (form == 0) /* its address literal without the brackets */
      snprintf(line, sizeof line, "%s %s", verb, S->client_ip);
    else if (form == 1) /* the server's own name */
      snprintf(line, sizeof line, "%s %s", verb, SERVER_NAME);
    else
      snprintf(line, sizeof line, "%s", verb);
    code = c_cmd(S, "helo", line);
    if (code < 0)
      break;
    code = transaction_seq(S, from, nrcpt, 1); /* even after a 501 */
    if (code != 421)
      c_quit(S);
    break;
  }
  case D_COUNT:
    break;
  }
  if (!S->over && S->c_fin_seen)
    c_passive_close(S, "server-closed");
  else if (!S->over)
    c_close(S, S->now, 0, "client-closed");
}

double dist_draw(const struct dist *d, struct rng *r) {
  switch (d->kind) {
  case DIST_FIXED:
    return d->a;
  case DIST_UNIFORM:
    return rng_uniform(r, d->a, d->b);
  case DIST_EXP:
    return rng_exp(r, d->a);
  }
  return d->a;
}

static void addr_str(const struct addr *a, char *buf, size_t cap) {
  if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, buf,
                 (socklen_t)cap))
    snprintf(buf, cap, "?");
}

int sim_session(const struct config *cfg, uint64_t index, struct truth *tr,
                emit_fn emitfn, void *ctx) {
  struct sess *S = calloc(1, sizeof *S);
  if (!S)
    return -1;
  S->cfg = cfg;
  S->tr = tr;
  S->emit = emitfn;
  S->ectx = ctx;
  /* One stream per session: a session's draws do not shift the others'. */
  rng_seed(&S->r, cfg->seed, index + 1);
  S->frame = malloc(SRV_MSS + PKT_OVERHEAD + 64);
  if (!S->frame) {
    free(S);
    return -1;
  }
  enum dialect d = tr->dialect;
  int mta = d == D_MTA || d == D_MTA_HELO;
  tr->stage = "done";
  tr->end = "?";

  S->rtt = us(mta ? rng_loguniform(&S->r, 4e-3, 150e-3)
                  : rng_loguniform(&S->r, 25e-3, 400e-3));
  tr->rtt = (double)S->rtt / 1e6;
  if (mta)
    tr->patience = cfg->mta_patience;
  else if (d == D_BOT_IMPATIENT)
    tr->patience = dist_draw(&cfg->patience, &S->r);
  else
    tr->patience = dist_draw(&cfg->bot_patience, &S->r);
  S->patience_us = us(tr->patience);
  S->think_lo = mta ? 300 : 20;
  S->think_hi = mta ? 3000 : 500;

  static const uint16_t mss_choices[] = {1460, 1460, 1460, 1452, 1400, 1380};
  uint16_t cmss = mss_choices[rng_below(&S->r, 6)];
  S->mss = cmss < SRV_MSS ? cmss : SRV_MSS;

  S->c.addr = &tr->caddr;
  S->c.port = tr->cport;
  S->c.to_server = 1;
  S->c.snd_nxt = rng_u32(&S->r);
  S->c.ipid = (uint16_t)rng_u32(&S->r);
  unsigned hops = 4 + rng_below(&S->r, 16);
  int windows = !mta && rng_chance(&S->r, 0.8);
  S->c.ttl = (uint8_t)((windows ? 128 : 64) - hops);
  S->c.win = windows ? 65535 : 64240;
  S->s.addr = &cfg->server;
  S->s.port = cfg->server_port;
  S->s.snd_nxt = rng_u32(&S->r);
  S->s.ipid = (uint16_t)rng_u32(&S->r);
  S->s.ttl = 64;
  S->s.win = SRV_WIN;
  addr_str(&tr->caddr, S->client_ip, sizeof S->client_ip);
  if (mta)
    snprintf(S->helo_name, sizeof S->helo_name, "mail%u.example.org",
             rng_below(&S->r, 100));
  else
    bot_name(S, S->helo_name, sizeof S->helo_name);

  /* Three-way handshake.  Options: MSS, NOP, NOP, SACK permitted. */
  uint8_t opt[8] = {2, 4, (uint8_t)(cmss >> 8), (uint8_t)cmss, 1, 1, 4, 2};
  int64_t t0 = tr->start_us;
  emit_raw(S, &S->c, &S->s, t0, TCPF_SYN, S->c.snd_nxt, NULL, 0, opt, 8);
  S->c.snd_nxt++;
  S->c.last_t = t0;
  log_push(S, &S->s, t0, S->c.snd_nxt);
  int64_t t1 = t0 + rnd_us(S, 15e-6, 80e-6);
  opt[2] = SRV_MSS >> 8;
  opt[3] = SRV_MSS & 0xff;
  emit_raw(S, &S->s, &S->c, t1, TCPF_SYN | TCPF_ACK, S->s.snd_nxt, NULL, 0, opt,
           8);
  S->s.snd_nxt++;
  S->s.last_t = t1;
  S->now = t1 + S->rtt;
  log_push(S, &S->c, S->now, S->s.snd_nxt);
  emit(S, &S->c, &S->s, S->now, TCPF_ACK, NULL, 0);
  S->wait_start = S->now;

  /* accept(), then the greeting after DNS lookups or the tarpit's delay */
  int64_t greet = S->now + rnd_us(S, 1e-3, 30e-3) + us(cfg->greet_delay);
  srv_queue(S, greet, "220 " SERVER_NAME " ESMTP\r\n", 0);
  S->s_busy = greet;

  run_dialect(S);

  tick(S, &S->c, &S->s, INT64_MAX);
  tick(S, &S->s, &S->c, INT64_MAX);
  tr->end_us = S->c.last_t > S->s.last_t ? S->c.last_t : S->s.last_t;
  if (!tr->gave_up)
    tr->stage = "none";
  int oom = S->oom;
  free(S->frame);
  free(S->c.log);
  free(S->s.log);
  free(S->sout);
  free(S->q);
  free(S->sin);
  free(S->cin);
  free(S);
  return oom ? -1 : 0;
}
