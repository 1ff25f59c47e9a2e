/*
 * sl_oracle.c: the protocol oracle; see sl_oracle.h.
 *
 * Two small stream models, one per leg, each fed the bytes in the order
 * they crossed the relay's boundary.
 *
 * Client leg.  Accepted client bytes are split into "commands", each owed
 * exactly one reply: the greeting (owed for the connection itself), every
 * line ended by LF (a line that is too long is one command, answered as soon
 * as it passes the limit), the end of a DATA body, a BDAT command (its chunk
 * follows whatever the reply is, RFC 3030 2), an AUTH continuation.  After
 * DATA, AUTH (and continuations) and STARTTLS the model waits for the reply
 * before reading on, since only the reply says what the next bytes are.
 * Client output is parsed into replies (guarantee 5) and matched in order.
 *
 * Upstream leg.  Emitted bytes are parsed as the commands of an SMTP client
 * (guarantee 3), received bytes as replies matched to those commands in
 * order.  2xx replies to a terminator or BDAT LAST that completed after the
 * command was sent count as upstream acceptances (guarantee 2).  The same
 * parse is the strict receiver's reading of the stream (guarantee 8): the
 * keywords of its last 2xx EHLO reply are the only extensions it knows, it
 * reads a body only after its own 354 and a chunk only after a BDAT it
 * offered, and everything else as commands, so a line that is no command
 * sluice sends is content read as a command.
 *
 * Progress and completeness (guarantees 9 and 10) are asked by the driver:
 * sl_oracle_progress() before the clock moves, sl_oracle_stats() with the
 * relay's statistics after each step.
 */
#include "sl_oracle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/proxy.h"

/* ---- small growable containers ------------------------------------------ */

typedef struct obuf {
  uint8_t *p;
  size_t len, cap;
} obuf;

static void ob_add(obuf *b, const uint8_t *p, size_t n) {
  if (!n)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    uint8_t *q = realloc(b->p, cap);
    if (!q)
      abort();
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void ob_drop(obuf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

/* A FIFO of small records. */
typedef struct fifo {
  uint32_t *v;
  size_t head, len, cap;
} fifo;

static void fifo_push(fifo *f, uint32_t x) {
  if (f->head + f->len == f->cap) {
    if (f->head) {
      memmove(f->v, f->v + f->head, f->len * sizeof(*f->v));
      f->head = 0;
    }
    if (f->len == f->cap) {
      size_t cap = f->cap ? f->cap * 2 : 16;
      uint32_t *q = realloc(f->v, cap * sizeof(*q));
      if (!q)
        abort();
      f->v = q;
      f->cap = cap;
    }
  }
  f->v[f->head + f->len++] = x;
}

static int fifo_pop(fifo *f, uint32_t *x) {
  if (!f->len)
    return 0;
  *x = f->v[f->head++];
  f->len--;
  if (!f->len)
    f->head = 0;
  return 1;
}

static void fifo_clear(fifo *f) { f->head = f->len = 0; }

/* ---- reply-line framing, used on both legs --------------------------------
 */

/* The reply being read: lines so far, code, whether it is complete. */
typedef struct rparse {
  uint32_t linelen; /* bytes of the current line, CRLF excluded */
  uint32_t total;   /* bytes of the current reply */
  uint16_t code;    /* code of the first line of the current reply */
  uint16_t curcode; /* code digits of the current line */
  uint8_t cr;       /* last byte was CR */
  uint8_t sep;      /* byte after the code on the current line, 0: none */
  uint8_t nlines;
  uint8_t kwlen;  /* bytes of the line's first word, 0xff: not ended */
  uint32_t caps;  /* UC_* keywords seen on lines 2.. (EHLO reply) */
  uint8_t kw[12]; /* first bytes of the current line's text */
} rparse;

/* Service extensions a strict receiver offers in its EHLO reply (RFC 5321
   4.1.1.1: one keyword per line after the first).  Only what sluice could
   ever use is named; the oracle checks every command, parameter and group
   sent upstream against the set the upstream itself offered (guarantee 8). */
enum {
  UC_PIPELINING = 1u << 0, /* RFC 2920 */
  UC_CHUNKING = 1u << 1,   /* RFC 3030: BDAT */
  UC_BINARYMIME = 1u << 2, /* RFC 3030: BODY=BINARYMIME */
  UC_8BITMIME = 1u << 3,   /* RFC 6152: BODY=8BITMIME / 7BIT */
  UC_SMTPUTF8 = 1u << 4,   /* RFC 6531 */
  UC_DSN = 1u << 5,        /* RFC 3461: RET ENVID NOTIFY ORCPT */
  UC_SIZE = 1u << 6,       /* RFC 1870 */
  UC_STARTTLS = 1u << 7,   /* RFC 3207 */
  UC_AUTH = 1u << 8,       /* RFC 4954: AUTH, MAIL AUTH= */
  UC_XCLIENT = 1u << 9,    /* Postfix XCLIENT */
  UC_XFORWARD = 1u << 10,  /* Postfix XFORWARD */
  UC_ALL = (1u << 11) - 1
};

static const struct {
  const char *kw;
  uint32_t bit;
} uc_names[] = {{"PIPELINING", UC_PIPELINING},
                {"CHUNKING", UC_CHUNKING},
                {"BINARYMIME", UC_BINARYMIME},
                {"8BITMIME", UC_8BITMIME},
                {"SMTPUTF8", UC_SMTPUTF8},
                {"DSN", UC_DSN},
                {"SIZE", UC_SIZE},
                {"STARTTLS", UC_STARTTLS},
                {"AUTH", UC_AUTH},
                {"XCLIENT", UC_XCLIENT},
                {"XFORWARD", 0}}; /* refused by guarantee 3 */

/* The keyword of an EHLO line: its first word, compared without case. */
static uint32_t uc_of(const uint8_t *kw, size_t n) {
  for (size_t i = 0; i < sizeof(uc_names) / sizeof(uc_names[0]); i++)
    if (strlen(uc_names[i].kw) == n && memcmp(uc_names[i].kw, kw, n) == 0)
      return uc_names[i].bit;
  return 0;
}

enum { RP_MORE = 0, RP_DONE = 1, RP_BAD = -1 };

static uint8_t upc(uint8_t c) {
  return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
}

/* Feeds one byte; returns RP_DONE at the end of a complete reply (code in
   rp->code), RP_BAD on a framing error (why set), else RP_MORE. */
static int rp_byte(rparse *rp, uint8_t c, uint32_t line_max, uint32_t total_max,
                   const char **why) {
  rp->total++;
  if (total_max && rp->total > total_max) {
    *why = "reply longer than reply_max";
    return RP_BAD;
  }
  if (rp->cr) {
    rp->cr = 0;
    if (c != '\n') {
      *why = "bare CR in a reply line";
      return RP_BAD;
    }
    if (rp->linelen < 3) {
      *why = "reply line shorter than its code";
      return RP_BAD;
    }
    if (rp->nlines && rp->curcode != rp->code) {
      *why = "reply code changes between lines";
      return RP_BAD;
    }
    if (!rp->nlines)
      rp->code = rp->curcode;
    rp->nlines++;
    if (rp->nlines > 1 && rp->linelen > 4) {
      size_t k = rp->kwlen != 0xff ? rp->kwlen : rp->linelen - 4;
      if (k <= sizeof(rp->kw))
        rp->caps |= uc_of(rp->kw, k);
    }
    int last = rp->sep != '-';
    rp->kwlen = 0xff;
    rp->linelen = 0;
    rp->sep = 0;
    rp->curcode = 0;
    if (last) {
      rp->total = 0;
      rp->nlines = 0;
      return RP_DONE;
    }
    return RP_MORE;
  }
  if (c == '\r') {
    rp->cr = 1;
    if (line_max && rp->linelen + 2 > line_max) {
      *why = "reply line longer than reply_line_max";
      return RP_BAD;
    }
    return RP_MORE;
  }
  if (c == '\n') {
    *why = "bare LF in a reply line";
    return RP_BAD;
  }
  if (c == 0) {
    *why = "NUL in a reply line";
    return RP_BAD;
  }
  uint32_t i = rp->linelen++;
  if (line_max && rp->linelen + 2 > line_max) {
    *why = "reply line longer than reply_line_max";
    return RP_BAD;
  }
  if (i < 3) {
    if (c < '0' || c > '9' || (i == 0 && (c < '2' || c > '5'))) {
      *why = "reply line does not start with a code 2xx..5xx";
      return RP_BAD;
    }
    rp->curcode = (uint16_t)(rp->curcode * 10 + (c - '0'));
  } else if (i == 3) {
    if (c != '-' && c != ' ') {
      *why = "reply code not followed by '-', ' ' or CRLF";
      return RP_BAD;
    }
    rp->sep = c;
  } else {
    if (c == ' ' && rp->kwlen == 0xff)
      rp->kwlen = (uint8_t)(i - 4 < 0xfe ? i - 4 : 0xfe);
    if (i - 4 < sizeof(rp->kw))
      rp->kw[i - 4] = upc(c);
  }
  return RP_MORE;
}

/* ---- the oracle ------------------------------------------------------------
 */

/* Client-side commands, in the order they are owed a reply. */
enum ck {
  CK_GREETING = 1,
  CK_CMD,
  CK_DATA,      /* held: a 354 makes the next bytes a body */
  CK_AUTH,      /* AUTH or a continuation; held: 334 asks for another line */
  CK_STARTTLS,  /* held: 220 discards everything up to the TLS completion */
  CK_EOD,       /* end of a DATA body; the body index in the high bits */
  CK_EOD_AMBIG, /* a body made ambiguous by a smuggling byte */
  CK_BDAT,
  CK_BDAT_LAST,
  CK_MAIL /* the high bits: its index in mails, and MAIL_UNCONNECTED */
};
/* The MAIL was read, or waited, while no upstream was connected. */
#define MAIL_UNCONNECTED (1u << 31)
#define CK_KIND(x) ((x)&0xffu)
#define CK_ARG(x) ((x) >> 8)

enum cmode {
  CM_PROXY, /* PROXY header from the balancer expected first */
  CM_CMD,   /* command lines */
  CM_SKIP,  /* rest of an overlong line, up to LF */
  CM_HOLD,  /* waiting for the reply to the last command */
  CM_BODY,  /* DATA body */
  CM_CHUNK, /* BDAT chunk bytes */
  CM_TLS,   /* between 220 to STARTTLS and the handshake's end: discard */
  CM_QUIET, /* a body sent before the reply to a DATA that was refused:
               dropped up to its end-of-data line, owed no reply */
  CM_DEAD   /* nothing more is read as SMTP */
};

/* Upstream-side commands awaiting a reply. */
enum uk {
  UK_GREETING = 1, /* the greeting, or the 220 after XCLIENT */
  UK_CMD,          /* may be pipelined */
  UK_SYNC,         /* must end a pipelined group (RFC 2920 3.1) */
  UK_EHLO,
  UK_HELO, /* ends a group; a 2xx leaves no extension offered */
  UK_DATA,
  UK_AUTH,
  UK_STARTTLS,
  UK_QUIT,
  UK_EOD,
  UK_BDAT,
  UK_BDAT_LAST,
  UK_MAIL /* pipelinable; its reply opens the transaction */
};

enum umode {
  UM_NONE,  /* no upstream connection */
  UM_PROXY, /* a PROXY header must come first */
  UM_CMD,
  UM_BODY, /* after 354 */
  UM_CHUNK,
  UM_TLS, /* 220 to STARTTLS: nothing may be sent until the handshake */
  UM_DEAD /* QUIT sent or TLS failed: nothing may be sent */
};

/* Where an AUTH exchange sent upstream stands (RFC 4954, RFC 4616 PLAIN,
   the LOGIN draft): the next continuation line is PLAIN's message,
   LOGIN's user name or its password; AU_SENT: only the outcome is owed. */
enum au_step { AU_NONE, AU_PLAIN, AU_LOGIN_USER, AU_LOGIN_PASS, AU_SENT };

typedef struct body {
  uint8_t complete, bad;
} body;

/* A client's BDAT transaction, which an upstream without CHUNKING receives
   as one DATA body (guarantee 8). */
typedef struct chunked {
  uint8_t complete, bad, committed;
} chunked;

struct sl_oracle {
  sl_limits lim;
  sl_policy pol;
  sl_conn_info info;
  sl_addr client_addr; /* in force: after an inbound PROXY header, its src */
  char why[512];
  int failed;

  /* ---- client leg ---- */
  obuf cin; /* accepted client bytes not yet modelled */
  enum cmode cm;
  fifo owed; /* CK_* still owed a reply */
  /* Every MAIL line the client sent, in order, for the MAIL lines that go
     upstream (each must be one of them, parameters aside), and whether
     sluice answered it 2xx itself: a held MAIL (screen-first with a RCPT
     check, no upstream yet; relay.h) whose 2xx upstream is then no
     client's. */
  struct omail {
    char *line;
    uint8_t local_ok;
  } * mails;
  size_t nmails, capmails, mail_cursor;
  fifo upmail;         /* per upstream MAIL awaiting its reply: 1 held */
  uint64_t up_mail_ok; /* upstream 2xx to client MAILs not yet relayed */
  uint32_t held;       /* the CK_* being held for (CM_HOLD) */
  size_t eod_wait;     /* body number + 1 of a terminator sent upstream
                          while the client's DATA still waited for its 354:
                          the body is the client's once that 354 reaches
                          it (a client reading slowly) */
  int closing;         /* an unsolicited closing reply was sent */
  int ambig_open;      /* CK_EOD_AMBIG owed or answered: session must end */
  uint64_t chunk_left;
  uint8_t q_state; /* CM_QUIET scanner (see quiet_byte) */
  /* DATA body scanner */
  uint32_t b_linelen;
  uint8_t b_cr, b_after_crlf, b_first_dot, b_line_bad;
  uint64_t b_size;
  body *bodies; /* every DATA body the client started, in order */
  size_t nbodies, capbodies;
  chunked *chunks; /* every BDAT transaction the client started */
  size_t nchunks, capchunks;
  int chunk_open;    /* the last one has not had its LAST chunk yet */
  int chunk_is_last; /* the chunk being read is a LAST one */
  uint8_t cc_cr;     /* its content so far ends in CR */
  rparse cout;       /* client output reply parser */
  uint64_t commands, replies, client_accepted;
  uint64_t out_bytes, up_out_bytes, nrequests;
  int client_close_req, tls_client_pending;

  /* ---- upstream leg ---- */
  enum umode um;
  obuf uout;        /* emitted upstream bytes not yet modelled */
  fifo upend;       /* UK_* awaiting a reply (emitted completely) */
  fifo early;       /* replies that came before any command awaited them:
                       code | caps << 10 (test scripts and eager
                       upstreams queue replies ahead) */
  int up_broken;    /* a malformed or unsolicited reply: stop counting */
  uint32_t up_caps; /* UC_*: what the upstream offers now (guarantee 8):
                       its last 2xx EHLO reply on this connection since the
                       greeting, a TLS switch or XCLIENT; HELO: none */
  int up_orphan;    /* the upstream answered while sluice was sending a
                       body or chunk it had not finished: the receiver is
                       no longer reading content, so more is commands */
  unsigned up_orphan_code;
  int up_tx_utf8;        /* the transaction's MAIL carried SMTPUTF8 */
  int up_auth_cont;      /* the next line is an AUTH continuation (334) */
  uint32_t up_last_kind; /* kind of the command the last reply answered */
  rparse uin;
  uint64_t up_chunk_left;
  int up_chunk_last;
  uint8_t up_chunk_cr, up_chunk_bad;
  uint32_t ub_linelen;
  uint8_t ub_cr, ub_first_dot;
  size_t up_bodies; /* upstream DATA bodies started (session-wide) */
  uint64_t upstream_accepted, up_commands, up_replies;

  /* ---- guarantee 2: the AUTH user named to filters and checks ---- */
  uint8_t au_step;    /* enum au_step: what the next continuation is */
  uint8_t au_further; /* the exchange upstream began after a 235 */
  uint8_t au_authed;  /* the upstream answered an exchange 235 */
  uint8_t au_given;   /* the relay named au_user since that 235 */
  uint8_t au_tap_due; /* SL_FI_MAIL came: SL_FI_AUTH_USER must follow */
  uint8_t au_cand_ok, au_user_ok;
  char au_method[6], au_umethod[6]; /* "PLAIN" or "LOGIN" */
  uint8_t au_cand[256], au_user[256];
  size_t au_cand_len, au_user_len;

  /* ---- guarantee 10: the recipients asked about are the ones relayed ---- */
  char **asked; /* check.rcpt of each RCPT check not yet matched */
  size_t nasked;

  /* ---- guarantee 10: requests and events against the statistics ---- */
  uint32_t *req_ids; /* every request id so far (unique per relay) */
  size_t nreq_ids, capreq_ids;
  uint32_t last_req_id;
  int session_end; /* SESSION_END seen */
  uint32_t ev_count[16];
  uint64_t ev_msg_2xx, ev_msg_4xx, ev_msg_5xx, ev_starttls_bytes;
  /* content filters: a verdict asked (SL_REQ_FILTER) and not given; the
     message refused (its terminator must never go up: the leg closes, or
     RSET ends a chunked one); the class its end of data's reply must have
     (4 or 5; 0: no refusal pending) */
  uint8_t f_pending, f_refused, f_class;
  uint16_t ev_last_code;
  uint64_t client_in_bytes, up_in_bytes;
  /* The codes of the REFUSAL events and of the 4xx/5xx replies the client
     got, each in order: the n-th of each must agree (the driver may see a
     reply's bytes before or after its event), and no reply goes without
     one. */
  uint16_t *ref_ev, *ref_out;
  size_t nref_ev, nref_out, capref_ev, capref_out, ref_matched;

  /* ---- guarantees 6 and 7 ---- */
  const sl_bufpool *pool;
  uint32_t drv_small, drv_large;
  int exp_valid;
  sl_tstamp exp_deadline, exp_now;
  unsigned exp_want;
  uint64_t exp_out, exp_req;
  sl_tstamp t_close_req;
};

static void fail(sl_oracle *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail(sl_oracle *o, const char *fmt, ...) {
  if (o->failed)
    return;
  o->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->why, sizeof(o->why), fmt, ap);
  va_end(ap);
}

/* Printable excerpt of bytes for messages. */
static const char *show(const uint8_t *p, size_t n, char *buf, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < cap; i++) {
    uint8_t c = p[i];
    if (c == '\r') {
      buf[o++] = '\\';
      buf[o++] = 'r';
    } else if (c == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (c < 0x20 || c >= 0x7f) {
      o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o < cap ? o : cap - 1] = 0;
  return buf;
}

static int ieq(const uint8_t *p, size_t n, const char *upper) {
  size_t k = strlen(upper);
  if (n < k)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (upc(p[i]) != (uint8_t)upper[i])
      return 0;
  return 1;
}

/* The verb of a line: the bytes before the first space. */
static int verb_is(const uint8_t *p, size_t n, const char *upper) {
  size_t k = strlen(upper);
  return ieq(p, n, upper) && (n == k || p[k] == ' ');
}

sl_oracle *sl_oracle_new(const sl_limits *l, const sl_policy *p,
                         const sl_conn_info *info) {
  sl_oracle *o = calloc(1, sizeof(*o));
  if (!o)
    abort();
  o->lim = *l;
  o->pol = *p;
  o->info = *info;
  o->client_addr = info->client;
  o->b_after_crlf = 1;
  o->t_close_req = SL_TSTAMP_NONE;
  if (info->flags & SL_CONN_EXPECT_PROXY) {
    o->cm = CM_PROXY;
  } else {
    o->cm = CM_CMD;
    fifo_push(&o->owed, CK_GREETING);
  }
  o->um = UM_NONE;
  return o;
}

void sl_oracle_free(sl_oracle *o) {
  if (!o)
    return;
  free(o->cin.p);
  free(o->uout.p);
  free(o->owed.v);
  for (size_t i = 0; i < o->nmails; i++)
    free(o->mails[i].line);
  free(o->mails);
  free(o->upmail.v);
  free(o->upend.v);
  free(o->early.v);
  free(o->bodies);
  free(o->chunks);
  free(o->req_ids);
  for (size_t i = 0; i < o->nasked; i++)
    free(o->asked[i]);
  free(o->asked);
  free(o->ref_ev);
  free(o->ref_out);
  free(o);
}

void sl_oracle_watch_pool(sl_oracle *o, const sl_bufpool *bp) { o->pool = bp; }

void sl_oracle_pool_driver_held(sl_oracle *o, uint32_t nsmall,
                                uint32_t nlarge) {
  o->drv_small = nsmall;
  o->drv_large = nlarge;
}

void sl_oracle_counts_get(const sl_oracle *o, sl_oracle_counts *c) {
  c->client_commands = o->commands;
  c->client_replies = o->replies;
  c->client_accepted = o->client_accepted;
  c->upstream_accepted = o->upstream_accepted;
  c->upstream_commands = o->up_commands;
  c->upstream_replies = o->up_replies;
}

/* ---- client leg: commands ---------------------------------------------------
 */

static void owe(sl_oracle *o, uint32_t k) {
  fifo_push(&o->owed, k);
  o->commands++;
}

static size_t mail_add(sl_oracle *o, const uint8_t *p, size_t len) {
  if (o->nmails == o->capmails) {
    size_t cap = o->capmails ? o->capmails * 2 : 8;
    struct omail *m = realloc(o->mails, cap * sizeof(*m));
    if (!m)
      abort();
    o->mails = m;
    o->capmails = cap;
  }
  char *t = malloc(len + 1);
  if (!t)
    abort();
  memcpy(t, p, len);
  t[len] = 0;
  o->mails[o->nmails].line = t;
  o->mails[o->nmails].local_ok = 0;
  return o->nmails++;
}

/* The MAIL a relay sends upstream is the client's line with whole
   parameters dropped (those the upstream did not offer): the same bytes up
   to the end of the path, then a subsequence of its parameters. */
static int mail_same(const char *client, const uint8_t *up, size_t n) {
  if (strlen(client) < 10)
    return 0;
  const char *gt = strchr(client, '>');
  size_t head = gt ? (size_t)(gt - client) + 1 : strcspn(client + 10, " ") + 10;
  if (head > strlen(client))
    head = strlen(client);
  if (n < head || memcmp(client, up, head))
    return 0;
  const char *c = client + head;
  size_t i = head;
  while (i < n) {
    while (i < n && up[i] == ' ')
      i++;
    size_t s0 = i;
    while (i < n && up[i] != ' ')
      i++;
    if (i == s0)
      break;
    /* the next client parameter equal to this one */
    for (;;) {
      while (*c == ' ')
        c++;
      if (!*c)
        return 0;
      size_t k = strcspn(c, " ");
      int eq = k == i - s0 && !memcmp(c, up + s0, k);
      c += k;
      if (eq)
        break;
    }
  }
  return 1;
}

/* A MAIL line went upstream: which client MAIL it is, and whether its 2xx
   is owed to that client or the client had a local one (held MAIL). */
static void up_mail(sl_oracle *o, const uint8_t *p, size_t len) {
  char s[120];
  for (size_t i = o->mail_cursor; i < o->nmails; i++) {
    if (mail_same(o->mails[i].line, p, len)) {
      o->mail_cursor = i + 1;
      fifo_push(&o->upmail, o->mails[i].local_ok);
      return;
    }
  }
  /* Hand-made streams may send a MAIL no client sent; a MAIL sluice
     answered itself, though, may only go upstream as the client sent it. */
  for (size_t i = o->mail_cursor; i < o->nmails; i++)
    if (o->mails[i].local_ok)
      fail(o,
           "guarantee 3: \"%s\" sent upstream for the held MAIL \"%s\" "
           "the client had its 2xx to",
           show(p, len < 60 ? len : 60, s, sizeof(s)), o->mails[i].line);
  fifo_push(&o->upmail, 0);
}

static void new_chunked(sl_oracle *o) {
  if (o->nchunks == o->capchunks) {
    size_t cap = o->capchunks ? o->capchunks * 2 : 8;
    chunked *q = realloc(o->chunks, cap * sizeof(*q));
    if (!q)
      abort();
    o->chunks = q;
    o->capchunks = cap;
  }
  chunked *c = &o->chunks[o->nchunks++];
  c->complete = c->bad = c->committed = 0;
  o->chunk_open = 1;
  o->cc_cr = 0;
}

/* The chunk being read has ended. */
static void chunk_end(sl_oracle *o) {
  if (!o->chunk_is_last || !o->nchunks)
    return;
  chunked *c = &o->chunks[o->nchunks - 1];
  c->complete = 1;
  if (o->cc_cr)
    c->bad = 1;
  o->chunk_open = 0;
}

static void chunk_byte(sl_oracle *o, uint8_t ch) {
  chunked *c = &o->chunks[o->nchunks - 1];
  if (o->cc_cr) {
    o->cc_cr = 0;
    if (ch == '\n')
      return;
    c->bad = 1;
  }
  if (ch == '\r')
    o->cc_cr = 1;
  else if (ch == '\n' || ch == 0)
    c->bad = 1;
}

/* An end-of-data upstream that no DATA body explains: the oldest complete,
   clean BDAT transaction not yet committed, sent as DATA. */
static int commit_chunked(sl_oracle *o) {
  for (size_t i = 0; i < o->nchunks; i++) {
    chunked *c = &o->chunks[i];
    if (c->complete && !c->bad && !c->committed) {
      c->committed = 1;
      return 1;
    }
  }
  return 0;
}

static body *new_body(sl_oracle *o) {
  if (o->nbodies == o->capbodies) {
    size_t cap = o->capbodies ? o->capbodies * 2 : 8;
    body *q = realloc(o->bodies, cap * sizeof(*q));
    if (!q)
      abort();
    o->bodies = q;
    o->capbodies = cap;
  }
  body *b = &o->bodies[o->nbodies++];
  b->complete = b->bad = 0;
  return b;
}

/* A clean command line: CRLF-terminated, no other CR, no NUL, within the
   limit.  Anything else is refused as a whole and only owed one reply. */
static int clean_line(const uint8_t *p, size_t whole, uint32_t limit) {
  if (whole > limit || whole < 2 || p[whole - 2] != '\r')
    return 0;
  for (size_t i = 0; i + 2 < whole; i++)
    if (p[i] == '\r' || p[i] == 0)
      return 0;
  return 1;
}

/* "BDAT" 1*SP 1*19DIGIT [1*SP "LAST"] *SP... as RFC 3030 writes it (the
   trailing spaces after the size are tolerated, as many servers do). */
static int parse_bdat(const uint8_t *p, size_t n, uint64_t *size, int *last) {
  size_t i = 4;
  if (i >= n || p[i] != ' ')
    return -1;
  while (i < n && p[i] == ' ')
    i++;
  size_t d0 = i;
  uint64_t v = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9') {
    v = v * 10 + (uint64_t)(p[i] - '0');
    i++;
  }
  if (i == d0 || i - d0 > 19 || (i < n && p[i] != ' '))
    return -1;
  while (i < n && p[i] == ' ')
    i++;
  *last = 0;
  if (i < n) {
    if (n - i != 4 || !ieq(p + i, 4, "LAST"))
      return -1;
    *last = 1;
  }
  *size = v;
  return 0;
}

/* The limit the relay applies to the line starting at p. */
static uint32_t line_limit(const sl_oracle *o, const uint8_t *p, size_t n,
                           int auth_cont) {
  if (auth_cont || (n >= 5 && ieq(p, n, "AUTH ")))
    return o->lim.auth_line_max;
  return o->lim.command_line_max;
}

static void body_line_end(sl_oracle *o, int crlf) {
  uint32_t content = o->b_linelen;
  if (o->b_first_dot && content > 0)
    content--; /* the stuffed dot does not count (4.5.3.1.6) */
  if (content + 2 > o->lim.text_line_max)
    o->b_line_bad = 1;
  o->b_size += (uint64_t)content + 2;
  if (o->lim.message_size_max && o->b_size > o->lim.message_size_max)
    o->b_line_bad = 1;
  o->b_linelen = 0;
  o->b_first_dot = 0;
  o->b_after_crlf = (uint8_t)crlf;
}

/* One body byte; returns 1 at the end of the body. */
static int body_byte(sl_oracle *o, uint8_t c) {
  body *b = &o->bodies[o->nbodies - 1];
  int lenient = (o->pol.lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0;
  if (o->b_cr) {
    o->b_cr = 0;
    if (c == '\n') {
      if (o->b_after_crlf && o->b_first_dot && o->b_linelen == 1)
        return 1; /* CRLF "." CRLF */
      body_line_end(o, 1);
      return 0;
    }
    b->bad = 2; /* bare CR: where the body ends is now ambiguous */
  }
  if (c == '\r') {
    o->b_cr = 1;
    return 0;
  }
  if (c == '\n') {
    if (!lenient) {
      b->bad = 2;
      return 0;
    }
    body_line_end(o, 0); /* normalised; a following "." is content */
    return 0;
  }
  if (c == 0) {
    b->bad = 2;
    return 0;
  }
  if (o->b_linelen == 0 && c == '.')
    o->b_first_dot = 1;
  o->b_linelen++;
  return 0;
}

/* One byte of a dropped early body: 1 at its end ("." line after CRLF), -1
   at a smuggling byte (the relay then ends the session), else 0.  States:
   0 line start, 1 ".", 2 ".\r", 3 inside a line, 4 CR inside a line; with
   the bare-LF leniency 5/6/7 are 0/1/2 after a normalised bare LF, where a
   "." line is content. */
static int quiet_byte(sl_oracle *o, uint8_t c) {
  int lenient = (o->pol.lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0;
  uint8_t st = o->q_state;
  if (c == 0)
    return -1;
  switch (st) {
  case 2:
    return c == '\n' ? 1 : -1;
  case 7:
  case 4:
    if (c != '\n')
      return -1;
    o->q_state = 0;
    return 0;
  case 0:
  case 5:
  case 1:
  case 6:
  case 3:
    if (c == '\r') {
      o->q_state = st == 1 ? 2 : st == 6 ? 7 : 4;
    } else if (c == '\n') {
      if (!lenient)
        return -1;
      o->q_state = 5;
    } else if (c == '.' && (st == 0 || st == 5)) {
      o->q_state = st == 0 ? 1 : 6;
    } else {
      o->q_state = 3;
    }
    return 0;
  default:
    return -1;
  }
}

/* Models as much of the accepted client bytes as can be known now. */
static void client_parse(sl_oracle *o) {
  size_t pos = 0;
  obuf *b = &o->cin;
  while (pos < b->len) {
    const uint8_t *p = b->p + pos;
    size_t n = b->len - pos;
    switch (o->cm) {
    case CM_PROXY: {
      sl_proxy_header h;
      long k = sl_proxy_parse(p, n, &h);
      if (k == SL_ERR_INCOMPLETE)
        goto out;
      if (k < 0) {
        o->cm = CM_DEAD; /* aborted, unanswered (haproxy's rule) */
        continue;
      }
      if (!h.local)
        o->client_addr = h.src;
      pos += (size_t)k;
      owe(o, CK_GREETING);
      o->commands--; /* the greeting answers the connection, not a command */
      o->cm = CM_CMD;
      continue;
    }
    case CM_CMD: {
      int cont = o->held == CK_AUTH; /* previous AUTH answered 334 */
      uint32_t limit = line_limit(o, p, n, cont);
      uint8_t *nl = memchr(p, '\n', n);
      if (!nl) {
        if (n >= limit) {
          /* refused as soon as it passes the limit; the rest is skipped */
          owe(o, CK_CMD);
          o->held = 0;
          pos += n;
          o->cm = CM_SKIP;
          continue;
        }
        goto out;
      }
      size_t whole = (size_t)(nl - p) + 1;
      pos += whole;
      if (!clean_line(p, whole, limit)) {
        /* a bad AUTH continuation cancels the exchange: still one reply,
           and that reply (not a 334) ends the hold */
        owe(o, cont ? CK_AUTH : CK_CMD);
        if (cont) {
          o->held = CK_AUTH;
          o->cm = CM_HOLD;
        } else {
          o->held = 0;
        }
        continue;
      }
      size_t len = whole - 2;
      if (cont) {
        owe(o, CK_AUTH);
        o->held = CK_AUTH;
        o->cm = CM_HOLD;
      } else if (verb_is(p, len, "DATA")) {
        owe(o, CK_DATA);
        o->held = CK_DATA;
        o->cm = CM_HOLD;
      } else if (verb_is(p, len, "AUTH")) {
        owe(o, CK_AUTH);
        o->held = CK_AUTH;
        o->cm = CM_HOLD;
      } else if (verb_is(p, len, "STARTTLS")) {
        owe(o, CK_STARTTLS);
        o->held = CK_STARTTLS;
        o->cm = CM_HOLD;
      } else if (verb_is(p, len, "BDAT")) {
        uint64_t size;
        int last;
        if (parse_bdat(p, len, &size, &last) == 0) {
          owe(o, last ? CK_BDAT_LAST : CK_BDAT);
          o->chunk_left = size;
          if (!o->chunk_open)
            new_chunked(o);
          o->chunk_is_last = last;
          if (size)
            o->cm = CM_CHUNK;
          else
            chunk_end(o);
        } else {
          owe(o, CK_CMD);
        }
      } else {
        if (verb_is(p, len, "MAIL") || verb_is(p, len, "RSET") ||
            verb_is(p, len, "EHLO") || verb_is(p, len, "HELO"))
          o->chunk_open = 0; /* an unfinished BDAT transaction is over */
        if (verb_is(p, len, "MAIL"))
          owe(o, CK_MAIL | (uint32_t)(mail_add(o, p, len) << 8) |
                     (o->um == UM_NONE ? MAIL_UNCONNECTED : 0));
        else
          owe(o, CK_CMD);
      }
      continue;
    }
    case CM_SKIP: {
      uint8_t *nl = memchr(p, '\n', n);
      if (!nl) {
        pos += n;
        continue;
      }
      pos += (size_t)(nl - p) + 1;
      o->cm = CM_CMD;
      continue;
    }
    case CM_HOLD:
      goto out;
    case CM_BODY: {
      body *bd = &o->bodies[o->nbodies - 1];
      while (pos < b->len) {
        uint8_t c = b->p[pos++];
        int end = body_byte(o, c);
        if (bd->bad == 2) {
          /* A smuggling byte: only the relay knows where it ends this
             message; allow its one reply, then the session must end. */
          owe(o, CK_EOD_AMBIG | (uint32_t)((o->nbodies - 1) << 8));
          o->ambig_open = 1;
          o->cm = CM_DEAD;
          break;
        }
        if (end) {
          bd->complete = 1;
          if (o->b_line_bad)
            bd->bad = 1;
          owe(o, CK_EOD | (uint32_t)((o->nbodies - 1) << 8));
          o->cm = CM_CMD;
          break;
        }
      }
      continue;
    }
    case CM_CHUNK: {
      uint64_t k = o->chunk_left < n ? o->chunk_left : n;
      for (size_t i = 0; i < k; i++)
        chunk_byte(o, p[i]);
      pos += (size_t)k;
      o->chunk_left -= k;
      if (!o->chunk_left) {
        o->cm = CM_CMD;
        chunk_end(o);
      }
      continue;
    }
    case CM_QUIET: {
      while (pos < b->len && o->cm == CM_QUIET) {
        int q = quiet_byte(o, b->p[pos++]);
        if (q > 0)
          o->cm = CM_CMD;
        else if (q < 0)
          o->cm = CM_DEAD; /* the relay ends the session (554) */
      }
      continue;
    }
    case CM_TLS:
    case CM_DEAD:
      pos = b->len;
      continue;
    }
  }
out:
  ob_drop(b, pos);
}

void sl_oracle_client_in(sl_oracle *o, const uint8_t *p, size_t n) {
  o->client_in_bytes += n;
  ob_add(&o->cin, p, n);
  client_parse(o);
}

/* ---- client leg: replies
 * ------------------------------------------------------ */

static int closing_code(unsigned code) {
  return code == 421 || code == 221 || code == 554 || code == 521;
}

static void ref_add(uint16_t **v, size_t *n, size_t *cap, unsigned code) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    uint16_t *p = realloc(*v, c * sizeof(*p));
    if (!p)
      abort();
    *v = p;
    *cap = c;
  }
  (*v)[(*n)++] = (uint16_t)code;
}

/* Guarantee 10: each 4xx/5xx reply the client got has its REFUSAL event,
   with its code, in the same order. */
static void ref_match(sl_oracle *o) {
  while (o->ref_matched < o->nref_ev && o->ref_matched < o->nref_out) {
    size_t k = o->ref_matched++;
    if (o->ref_ev[k] != o->ref_out[k]) {
      fail(o,
           "guarantee 10: refusal %zu: the client got %u, the REFUSAL "
           "event says %u",
           k + 1, o->ref_out[k], o->ref_ev[k]);
      return;
    }
  }
  if (o->session_end && o->nref_out > o->nref_ev)
    fail(o,
         "guarantee 10: %zu 4xx/5xx replies to the client, %zu REFUSAL "
         "events",
         o->nref_out, o->nref_ev);
}

static void client_reply(sl_oracle *o, unsigned code) {
  if (code >= 400) {
    ref_add(&o->ref_out, &o->nref_out, &o->capref_out, code);
    ref_match(o);
  }
  o->replies++;
  if (o->closing) {
    fail(o, "guarantee 1: reply %u after the closing reply", code);
    return;
  }
  uint32_t k;
  if (!fifo_pop(&o->owed, &k)) {
    if (closing_code(code)) {
      o->closing = 1;
      return;
    }
    if (o->cm == CM_TLS)
      fail(o, "guarantee 4: reply %u to plaintext sent after STARTTLS", code);
    else
      fail(o,
           "guarantee 1: reply %u without a command (%llu replies to %llu "
           "commands)",
           code, (unsigned long long)o->replies,
           (unsigned long long)o->commands);
    return;
  }
  unsigned cls = code / 100;
  switch (CK_KIND(k)) {
  case CK_DATA:
    if (code == 354) {
      new_body(o);
      o->b_linelen = 0;
      o->b_cr = 0;
      o->b_after_crlf = 1;
      o->b_first_dot = 0;
      o->b_line_bad = 0;
      o->b_size = 0;
      o->cm = CM_BODY;
    } else if (o->cin.len) {
      /* bytes sent before this refusal arrived: a body, never commands */
      o->cm = CM_QUIET;
      o->q_state = 0;
    } else {
      o->cm = CM_CMD;
    }
    o->held = 0;
    break;
  case CK_AUTH:
    if (code == 334) {
      o->held = CK_AUTH; /* the next line is a continuation */
    } else {
      o->held = 0;
    }
    o->cm = CM_CMD;
    break;
  case CK_STARTTLS:
    o->held = 0;
    if (code == 220) {
      o->cm = CM_TLS;
      o->tls_client_pending = 1;
    } else {
      o->cm = CM_CMD;
    }
    break;
  case CK_MAIL:
    /* A 2xx to MAIL is the upstream's, or sluice's own for a MAIL it
       holds for a RCPT check in screen-first before any upstream. */
    if (cls == 2 && !o->up_broken) {
      size_t i = (CK_ARG(k) & ~(MAIL_UNCONNECTED >> 8));
      if (o->up_mail_ok) {
        o->up_mail_ok--;
      } else if ((k & MAIL_UNCONNECTED) &&
                 o->pol.mode == SL_MODE_SCREEN_FIRST && o->pol.rcpt_check) {
        if (i < o->nmails)
          o->mails[i].local_ok = 1;
      } else {
        fail(o,
             "guarantee 2: client got %u to MAIL but the upstream gave none "
             "(and sluice holds a MAIL only in screen-first with a RCPT "
             "check, before the upstream is connected)",
             code);
      }
    }
    break;
  case CK_EOD:
  case CK_EOD_AMBIG:
  case CK_BDAT_LAST:
    if (o->f_class && cls != o->f_class && !closing_code(code))
      fail(o,
           "guarantee 5: the end of data of a message the content filters "
           "refused got %u, not the refusal's %uxx",
           code, o->f_class);
    o->f_class = 0;
    if (cls == 2) {
      if (CK_KIND(k) != CK_BDAT_LAST) {
        size_t i = CK_ARG(k);
        if (i < o->nbodies && o->bodies[i].bad)
          fail(o,
               "guarantee 2: %u to a message with a framing violation "
               "(bare CR/LF, NUL, overlong line or size)",
               code);
      }
      o->client_accepted++;
      if (o->client_accepted > o->upstream_accepted)
        fail(o,
             "guarantee 2: client got %u to end-of-data #%llu but the "
             "upstream accepted only %llu",
             code, (unsigned long long)o->client_accepted,
             (unsigned long long)o->upstream_accepted);
    }
    if (CK_KIND(k) == CK_EOD_AMBIG)
      o->closing = 1; /* nothing may follow the answer to smuggling */
    break;
  default:
    break;
  }
  if (o->cm == CM_CMD || o->cm == CM_BODY || o->cm == CM_QUIET)
    client_parse(o);
  if (o->eod_wait && o->held != CK_DATA) {
    /* the DATA whose body went up early has its reply now */
    size_t i = o->eod_wait - 1;
    o->eod_wait = 0;
    if (i >= o->nbodies)
      fail(o,
           "guarantee 3: end-of-data sent upstream for message #%zu "
           "that the client never sent",
           i + 1);
    else if (!o->bodies[i].complete)
      fail(o,
           "guarantee 3: end-of-data sent upstream before the client's "
           "message #%zu ended",
           i + 1);
    else if (o->bodies[i].bad)
      fail(o,
           "guarantee 3: end-of-data sent upstream for message #%zu "
           "that had a framing violation (smuggling bytes, overlong "
           "line or size)",
           i + 1);
  }
}

void sl_oracle_client_out(sl_oracle *o, const uint8_t *p, size_t n) {
  o->out_bytes += n;
  for (size_t i = 0; i < n; i++) {
    const char *why = NULL;
    int rc = rp_byte(&o->cout, p[i], 0, 0, &why);
    if (rc == RP_BAD) {
      char s[160];
      size_t from = i > 40 ? i - 40 : 0;
      fail(o, "guarantee 5: %s in client output near \"%s\"", why,
           show(p + from, i + 1 - from, s, sizeof(s)));
      o->cout.cr = 0;
      return;
    }
    if (rc == RP_DONE)
      client_reply(o, o->cout.code);
  }
}

/* ---- upstream leg
 * -------------------------------------------------------------- */

static const char *uk_name(uint32_t k) {
  static const char *const names[] = {
      "?",           "greeting", "command",   "sync",     "EHLO",
      "HELO",        "DATA",     "AUTH",      "STARTTLS", "QUIT",
      "end-of-data", "BDAT",     "BDAT LAST", "MAIL"};
  return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static void up_fresh(sl_oracle *o, int greeting) {
  ob_drop(&o->uout, o->uout.len);
  fifo_clear(&o->upend);
  fifo_clear(&o->early);
  memset(&o->uin, 0, sizeof(o->uin));
  o->up_broken = 0;
  o->up_caps = 0; /* re-learned from the next EHLO (RFC 3207 4.2) */
  o->up_orphan = 0;
  o->up_tx_utf8 = 0;
  o->up_auth_cont = 0;
  o->up_last_kind = 0;
  o->au_step = AU_NONE; /* an exchange in flight is lost with its leg */
  o->au_further = 0;
  o->au_cand_ok = 0;
  if (greeting) {
    fifo_push(&o->upend, UK_GREETING);
    int proxy = o->pol.identity == SL_IDENT_PROXY_V1 ||
                o->pol.identity == SL_IDENT_PROXY_V2;
    o->um = proxy ? UM_PROXY : UM_CMD;
  } else {
    o->um = UM_CMD;
  }
}

static void up_sent(sl_oracle *o, uint32_t kind);

/* A command is about to be outstanding: RFC 2920 pacing. */
static void up_pace(sl_oracle *o, uint32_t kind, const uint8_t *line,
                    size_t len) {
  char s[96];
  if (o->up_broken)
    return; /* desynchronised by a malformed reply: the relay must drop it */
  if (!o->upend.len)
    return;
  for (size_t i = 0; i < o->upend.len; i++) {
    uint32_t k = o->upend.v[o->upend.head + i];
    /* RFC 2920 3.1: EHLO, DATA, VRFY, EXPN, NOOP, QUIT (and extensions
       such as STARTTLS, AUTH, XCLIENT) must end a group; the end of a
       message may be followed by the next MAIL.  A QUIT may follow any
       command whose reply cannot change how the receiver reads the next
       line; after AUTH (a 334 makes it the SASL response) or STARTTLS (a
       220 makes it handshake bytes) it may not. */
    if (k == UK_CMD || k == UK_MAIL || k == UK_BDAT || k == UK_BDAT_LAST ||
        k == UK_EOD)
      continue;
    if (kind == UK_QUIT && k != UK_AUTH && k != UK_STARTTLS)
      continue;
    fail(o,
         "guarantee 8: \"%s\" sent upstream before the reply to %s "
         "(RFC 2920 3.1: that command ends a pipelined group)",
         show(line, len < 60 ? len : 60, s, sizeof(s)), uk_name(k));
    return;
  }
  /* Without PIPELINING every command waits for the previous reply (RFC
     5321 has no pipelining of its own), QUIT included. */
  if (!(o->up_caps & UC_PIPELINING))
    fail(o,
         "guarantee 8: \"%s\" sent upstream while %zu command(s) await "
         "a reply, to an upstream that did not offer PIPELINING",
         show(line, len < 60 ? len : 60, s, sizeof(s)), o->upend.len);
}

/* The extension a MAIL or RCPT parameter belongs to, 0 if it belongs to
   none a strict receiver knows (it answers 555, RFC 5321 4.1.1.11).  *val
   and vn: the value after '=', if any. */
static uint32_t param_need(const uint8_t *k, size_t kn, const uint8_t *val,
                           size_t vn, int mail) {
  if (mail) {
    if (kn == 4 && ieq(k, kn, "SIZE"))
      return UC_SIZE;
    if (kn == 4 && ieq(k, kn, "BODY")) {
      if (vn == 10 && ieq(val, vn, "BINARYMIME"))
        return UC_BINARYMIME; /* with CHUNKING too, checked by the caller */
      if ((vn == 8 && ieq(val, vn, "8BITMIME")) ||
          (vn == 4 && ieq(val, vn, "7BIT")))
        return UC_8BITMIME;
      return 0;
    }
    if (kn == 8 && ieq(k, kn, "SMTPUTF8"))
      return UC_SMTPUTF8;
    if ((kn == 3 && ieq(k, kn, "RET")) || (kn == 5 && ieq(k, kn, "ENVID")))
      return UC_DSN;
    if (kn == 4 && ieq(k, kn, "AUTH"))
      return UC_AUTH;
    return 0;
  }
  if ((kn == 6 && ieq(k, kn, "NOTIFY")) || (kn == 5 && ieq(k, kn, "ORCPT")))
    return UC_DSN;
  return 0;
}

static const char *uc_name(uint32_t bit) {
  for (size_t i = 0; i < sizeof(uc_names) / sizeof(uc_names[0]); i++)
    if (uc_names[i].bit == bit)
      return uc_names[i].kw;
  return "?";
}

/* Guarantee 8 for one command line: the verb and every parameter must be
   something the upstream's own EHLO reply offered, and the line must be a
   command sluice means (a strict receiver reads anything in command state
   as a command: a body line there is content read as a command). */
static void up_offered(sl_oracle *o, const uint8_t *p, size_t len) {
  static const struct {
    const char *verb;
    uint32_t need;
  } verbs[] = {{"EHLO", 0},
               {"HELO", 0},
               {"MAIL", 0},
               {"RCPT", 0},
               {"DATA", 0},
               {"RSET", 0},
               {"NOOP", 0},
               {"QUIT", 0},
               {"VRFY", 0},
               {"EXPN", 0},
               {"HELP", 0},
               {"BDAT", UC_CHUNKING},
               {"STARTTLS", UC_STARTTLS},
               {"AUTH", UC_AUTH},
               {"XCLIENT", UC_XCLIENT},
               {"XFORWARD", 0}}; /* refused by guarantee 3 */
  char s[120];
  size_t nv = sizeof(verbs) / sizeof(verbs[0]), vi;
  for (vi = 0; vi < nv; vi++)
    if (verb_is(p, len, verbs[vi].verb))
      break;
  if (vi == nv) {
    fail(o,
         "guarantee 8: the upstream reads \"%s\" as a command, and it is "
         "no command sluice sends (content read as a command?)",
         show(p, len < 60 ? len : 60, s, sizeof(s)));
    return;
  }
  if (verbs[vi].need && !(o->up_caps & verbs[vi].need)) {
    fail(o, "guarantee 8: %s sent upstream, which did not offer %s",
         verbs[vi].verb, uc_name(verbs[vi].need));
    return;
  }
  int mail = verb_is(p, len, "MAIL"), rcpt = verb_is(p, len, "RCPT");
  int eight = 0;
  for (size_t i = 0; i < len; i++)
    if (p[i] & 0x80)
      eight = 1;
  if (!mail && !rcpt) {
    if (eight && !(o->up_caps & UC_SMTPUTF8))
      fail(o,
           "guarantee 8: 8-bit bytes in \"%s\" sent upstream, which did "
           "not offer SMTPUTF8",
           show(p, len < 60 ? len : 60, s, sizeof(s)));
    return;
  }
  /* MAIL FROM:<path> params / RCPT TO:<path> params (RFC 5321 4.1.2) */
  size_t i = 4;
  while (i < len && p[i] != ':')
    i++;
  i++;
  while (i < len && p[i] == ' ')
    i++;
  if (i < len && p[i] == '<') {
    while (i < len && p[i] != '>')
      i++;
    i++;
  } else {
    while (i < len && p[i] != ' ')
      i++;
  }
  int utf8 = 0;
  while (i < len) {
    while (i < len && p[i] == ' ')
      i++;
    size_t k0 = i;
    while (i < len && p[i] != ' ')
      i++;
    if (i == k0)
      break;
    size_t kn = 0;
    while (k0 + kn < i && p[k0 + kn] != '=')
      kn++;
    const uint8_t *val = p + k0 + kn + (k0 + kn < i ? 1 : 0);
    size_t vn = (size_t)(p + i - val);
    uint32_t need = param_need(p + k0, kn, val, vn, mail);
    if (need == UC_SMTPUTF8)
      utf8 = 1;
    if (need == UC_BINARYMIME)
      need |= UC_CHUNKING; /* RFC 3030 3: BINARYMIME needs CHUNKING */
    if (!need) {
      fail(o,
           "guarantee 8: %s parameter \"%s\" sent upstream belongs to no "
           "extension (a strict receiver answers 555)",
           mail ? "MAIL" : "RCPT",
           show(p + k0, i - k0 < 40 ? i - k0 : 40, s, sizeof(s)));
      return;
    }
    if ((o->up_caps & need) != need) {
      fail(o,
           "guarantee 8: %s parameter \"%s\" sent upstream, which did not "
           "offer %s",
           mail ? "MAIL" : "RCPT",
           show(p + k0, i - k0 < 40 ? i - k0 : 40, s, sizeof(s)),
           uc_name((need & ~o->up_caps) & (~(need & ~o->up_caps) + 1u)));
      return;
    }
  }
  if (mail)
    o->up_tx_utf8 = utf8;
  /* RFC 6531 3.4: UTF-8 in a path only in a transaction whose MAIL said
     SMTPUTF8 (which itself needs the extension offered). */
  if (eight && !(mail ? utf8 : o->up_tx_utf8))
    fail(o,
         "guarantee 8: 8-bit bytes in \"%s\" sent upstream without "
         "SMTPUTF8 on the transaction's MAIL",
         show(p, len < 60 ? len : 60, s, sizeof(s)));
}

/* ---- guarantee 2: the AUTH user -------------------------------------
 * sluice names the client's AUTH user to content filters (SL_FI_AUTH_USER)
 * and policy checks (sasl_username) so they can key on it (per-user rate
 * limits).  A name it gives must be the one the exchange the upstream
 * answered 235 gave: PLAIN's authcid or LOGIN's user name, as sent
 * upstream, never the authzid, a password, or a name from a refused,
 * cancelled or later exchange.  Once given, the name stands until the
 * client's TLS switch resets the session: a later refused AUTH (503 after
 * a success, RFC 4954 4) does not take it away.  (Whether a name is given
 * at all also depends on the buffer pool; the model does not require it.) */

static int b64v(uint8_t c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* RFC 3629 without overlongs, surrogates or code points past U+10FFFF. */
static int utf8_ok(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = p[i];
    size_t k = c < 0x80                 ? 0
               : c >= 0xc2 && c <= 0xdf ? 1
               : c >= 0xe0 && c <= 0xef ? 2
               : c >= 0xf0 && c <= 0xf4 ? 3
                                        : 9;
    if (k == 9 || i + k >= n + (k ? 0 : 1))
      return 0;
    uint32_t cp = k == 0 ? c : c & (0x3fu >> k);
    for (size_t j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (p[i + j] & 0x3fu);
    }
    if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return 0;
    i += k + 1;
  }
  return 1;
}

static void au_keep(sl_oracle *o, const uint8_t *dec, size_t m, int plain);

/* A SASL response sent upstream: the user name it carries, if any. */
static void au_take(sl_oracle *o, const uint8_t *p, size_t n, int plain) {
  o->au_cand_ok = 0;
  o->au_cand_len = 0;
  if (n == 0 || n % 4)
    return;
  uint8_t *dec = malloc(n / 4 * 3);
  if (!dec)
    abort();
  size_t m = 0;
  for (size_t i = 0; i < n; i += 4) {
    int pad = 0;
    uint32_t q = 0;
    for (size_t j = 0; j < 4; j++) {
      int v = b64v(p[i + j]);
      if (p[i + j] == '=' && i + 4 == n && j >= 2 &&
          (j == 3 || p[i + 3] == '='))
        v = 0, pad++;
      else if (v < 0 || pad) {
        free(dec);
        return;
      }
      q = q << 6 | (uint32_t)v;
    }
    for (int j = 0; j < 3 - pad; j++)
      dec[m++] = (uint8_t)(q >> (16 - 8 * j));
  }
  au_keep(o, dec, m, plain);
  free(dec);
}

/* The decoded response: PLAIN's authcid, LOGIN's whole user name. */
static void au_keep(sl_oracle *o, const uint8_t *dec, size_t m, int plain) {
  const uint8_t *u = dec;
  size_t ulen = m;
  if (plain) { /* authzid NUL authcid NUL passwd (RFC 4616 2) */
    const uint8_t *a = memchr(dec, 0, m);
    const uint8_t *b = a ? memchr(a + 1, 0, m - (size_t)(a + 1 - dec)) : NULL;
    if (!b)
      return;
    u = a + 1;
    ulen = (size_t)(b - u);
  }
  if (ulen == 0 || ulen > SL_AUTH_USER_MAX || !utf8_ok(u, ulen))
    return;
  for (size_t i = 0; i < ulen; i++)
    if (u[i] < 0x20 || u[i] == 0x7f)
      return;
  memcpy(o->au_cand, u, ulen);
  o->au_cand_len = ulen;
  o->au_cand_ok = 1;
}

/* A line sent upstream (cont: an AUTH continuation after 334). */
static void au_line(sl_oracle *o, const uint8_t *p, size_t len, int cont) {
  if (cont) {
    if (len == 1 && p[0] == '*') { /* cancelled: 501 follows */
      o->au_step = AU_NONE;
      o->au_cand_ok = 0;
    } else if (o->au_step == AU_PLAIN) {
      au_take(o, p, len, 1);
      o->au_step = AU_SENT;
    } else if (o->au_step == AU_LOGIN_USER) {
      au_take(o, p, len, 0);
      o->au_step = AU_LOGIN_PASS;
    } else if (o->au_step == AU_LOGIN_PASS) {
      o->au_step = AU_SENT;
    }
    return;
  }
  if (!verb_is(p, len, "AUTH"))
    return;
  o->au_further = o->au_authed;
  o->au_step = AU_NONE;
  o->au_cand_ok = 0;
  o->au_method[0] = 0;
  size_t m = 5, e;
  while (m < len && p[m] == ' ')
    m++;
  for (e = m; e < len && p[e] != ' ';)
    e++;
  size_t ir = e;
  while (ir < len && p[ir] == ' ')
    ir++;
  int plain = ieq(p + m, e - m, "PLAIN");
  if (!plain && !ieq(p + m, e - m, "LOGIN"))
    return; /* no other mechanism names its user in a way sluice reads */
  snprintf(o->au_method, sizeof o->au_method, "%s", plain ? "PLAIN" : "LOGIN");
  if (ir < len) {
    au_take(o, p + ir, len - ir, plain);
    o->au_step = plain ? AU_SENT : AU_LOGIN_PASS;
  } else {
    o->au_step = plain ? AU_PLAIN : AU_LOGIN_USER;
  }
}

/* The upstream's reply to an AUTH line or continuation. */
static void au_reply(sl_oracle *o, unsigned code) {
  if (code == 334)
    return;
  if (code == 235) {
    /* A second success (an upstream that ignores RFC 4954's 503) names a
       user sluice may not know: from then on no name is right. */
    o->au_user_ok = !o->au_further && o->au_cand_ok && o->au_step != AU_PLAIN;
    o->au_user_len = o->au_user_ok ? o->au_cand_len : 0;
    memcpy(o->au_user, o->au_cand, o->au_user_len);
    memcpy(o->au_umethod, o->au_method, sizeof o->au_umethod);
    o->au_authed = 1;
    o->au_given = 0;
  }
  o->au_step = AU_NONE;
  o->au_further = 0;
  o->au_cand_ok = 0;
}

/* The relay named the AUTH user (len 0: it named none) to what. */
static void au_named(sl_oracle *o, const char *what, const uint8_t *name,
                     size_t len, const char *method) {
  char s[120], t[120];
  if (len == 0) {
    if (o->au_given)
      fail(o,
           "guarantee 2: %s names no AUTH user, though the upstream's 235 to "
           "\"%s\" still stands and was named before",
           what, show(o->au_user, o->au_user_len, s, sizeof(s)));
    return;
  }
  if (!o->au_authed || !o->au_user_ok)
    fail(o,
         "guarantee 2: %s names AUTH user \"%s\", which no exchange the "
         "upstream answered 235 gave",
         what, show(name, len, s, sizeof(s)));
  else if (len != o->au_user_len || memcmp(name, o->au_user, len) != 0)
    fail(o,
         "guarantee 2: %s names AUTH user \"%s\"; the upstream accepted "
         "\"%s\"",
         what, show(name, len, s, sizeof(s)),
         show(o->au_user, o->au_user_len, t, sizeof(t)));
  else if (method && strcmp(method, o->au_umethod) != 0)
    fail(o, "guarantee 2: %s names mechanism %s; the upstream accepted %s",
         what, method, o->au_umethod);
  else
    o->au_given = 1;
}

void sl_oracle_filter_item(sl_oracle *o, sl_filter_item item, const uint8_t *p,
                           size_t n) {
  if (o->au_tap_due && item != SL_FI_AUTH_USER)
    au_named(o, "the filter tap after SL_FI_MAIL", NULL, 0, NULL);
  o->au_tap_due = item == SL_FI_MAIL;
  if (item == SL_FI_AUTH_USER) {
    if (n == 0)
      fail(o, "guarantee 2: SL_FI_AUTH_USER with an empty name");
    else
      au_named(o, "SL_FI_AUTH_USER", p, n, NULL);
  }
}

/* ---- guarantee 10: a RCPT relayed is a RCPT asked about ---------------
 * With RCPT checks on (greylisting, a policy service, live milters), the
 * driver's verdict is about check.rcpt; the recipient that then goes
 * upstream must be that one, or a policy passed one address and the mail
 * server got another.  Each RCPT sent upstream must match a check asked
 * since the last match (checks the driver refused never match; the path
 * as the check gives it: inside the angle brackets, cut at half a small
 * buffer). */

#define ASKED_MAX 64

static void rcpt_asked(sl_oracle *o, const char *rcpt) {
  if (o->nasked == ASKED_MAX) { /* the oldest can no longer match */
    free(o->asked[0]);
    memmove(o->asked, o->asked + 1, (ASKED_MAX - 1) * sizeof *o->asked);
    o->nasked--;
  }
  if (!o->asked && !(o->asked = calloc(ASKED_MAX, sizeof *o->asked)))
    abort();
  size_t n = strlen(rcpt);
  char *c = malloc(n + 1);
  if (!c)
    abort();
  memcpy(c, rcpt, n + 1);
  o->asked[o->nasked++] = c;
}

/* The path of "RCPT TO:<path> ..." (quoted strings may hold '>'). */
static int rcpt_path(const uint8_t *p, size_t len, size_t *off, size_t *n) {
  size_t i = 4;
  while (i < len && p[i] == ' ')
    i++;
  if (i + 3 > len || !ieq(p + i, 3, "TO:"))
    return -1;
  i += 3;
  while (i < len && p[i] == ' ')
    i++;
  if (i >= len || p[i] != '<')
    return -1;
  size_t start = ++i;
  int quoted = 0;
  for (; i < len; i++) {
    if (quoted && p[i] == '\\' && i + 1 < len)
      i++;
    else if (p[i] == '"')
      quoted = !quoted;
    else if (p[i] == '>' && !quoted)
      break;
  }
  if (i >= len)
    return -1;
  *off = start;
  *n = i - start;
  return 0;
}

static void rcpt_relayed(sl_oracle *o, const uint8_t *p, size_t len) {
  char s[120];
  size_t off, n;
  if (!o->pol.rcpt_check || rcpt_path(p, len, &off, &n) != 0)
    return;
  size_t cut = o->lim.small_buffer_size / 2 - 1;
  for (size_t i = 0; i < o->nasked; i++) {
    size_t an = strlen(o->asked[i]);
    if ((an == n || (an >= cut && an < n)) &&
        memcmp(o->asked[i], p + off, an) == 0) {
      for (size_t j = 0; j <= i; j++)
        free(o->asked[j]);
      memmove(o->asked, o->asked + i + 1,
              (o->nasked - i - 1) * sizeof *o->asked);
      o->nasked -= i + 1;
      return;
    }
  }
  fail(o,
       "guarantee 10: \"%s\" sent upstream, but no RCPT check asked about "
       "that recipient",
       show(p, len < 80 ? len : 80, s, sizeof(s)));
}

/* One complete command line (with its CRLF) sent upstream. */
static void up_line(sl_oracle *o, const uint8_t *p, size_t whole) {
  char s[120];
  o->up_commands++;
  size_t len = whole - 2;
  int cont = o->up_auth_cont;
  o->up_auth_cont = 0;
  uint32_t limit = o->lim.command_line_max;
  int xclient = verb_is(p, len, "XCLIENT");
  int xforward = verb_is(p, len, "XFORWARD");
  if (cont || verb_is(p, len, "AUTH"))
    limit = o->lim.auth_line_max;
  else if (((xclient && o->pol.identity == SL_IDENT_XCLIENT) ||
            (xforward && o->pol.identity == SL_IDENT_XFORWARD)) &&
           limit < 512)
    limit = 512; /* built by sluice itself: the RFC limit applies */
  if (whole > limit)
    fail(o,
         "guarantee 3: upstream command line of %zu bytes (limit %u): "
         "\"%s\"",
         whole, limit, show(p, 60, s, sizeof(s)));
  for (size_t i = 0; i < len; i++) {
    if (p[i] == '\r' || p[i] == '\n' || p[i] == 0) {
      fail(o, "guarantee 3: bare CR/LF or NUL in upstream command \"%s\"",
           show(p, whole < 80 ? whole : 80, s, sizeof(s)));
      break;
    }
  }
  if (!cont && ((xclient && o->pol.identity != SL_IDENT_XCLIENT) ||
                (xforward && o->pol.identity != SL_IDENT_XFORWARD)))
    fail(o, "guarantee 3: \"%s\" sent upstream (identity is sluice's)",
         show(p, len < 60 ? len : 60, s, sizeof(s)));
  if (o->um == UM_DEAD) {
    fail(o,
         "guarantee 3: \"%s\" sent upstream after QUIT or a failed "
         "handshake",
         show(p, len < 60 ? len : 60, s, sizeof(s)));
    return;
  }
  if (!cont && !o->up_broken)
    up_offered(o, p, len);
  au_line(o, p, len, cont);
  if (!cont && verb_is(p, len, "RCPT"))
    rcpt_relayed(o, p, len);
  if (!cont && o->f_refused) {
    /* A chunked message the content filters refused is still open
       upstream: only RSET ends it (or QUIT, or closing the leg); a
       "BDAT 0 LAST" would commit it (guarantee 2). */
    if (verb_is(p, len, "RSET") || verb_is(p, len, "QUIT"))
      o->f_refused = 0;
    else
      fail(o,
           "guarantee 2: \"%s\" sent upstream after the content filters "
           "refused the message, not RSET",
           show(p, len < 60 ? len : 60, s, sizeof(s)));
  }
  uint32_t kind = UK_CMD;
  if (cont)
    kind = UK_AUTH;
  else if (verb_is(p, len, "EHLO"))
    kind = UK_EHLO;
  else if (verb_is(p, len, "HELO"))
    kind = UK_HELO;
  else if (verb_is(p, len, "MAIL")) {
    kind = UK_MAIL;
    up_mail(o, p, len);
  } else if (verb_is(p, len, "DATA"))
    kind = UK_DATA;
  else if (verb_is(p, len, "AUTH"))
    kind = UK_AUTH;
  else if (verb_is(p, len, "STARTTLS"))
    kind = UK_STARTTLS;
  else if (verb_is(p, len, "QUIT"))
    kind = UK_QUIT;
  else if (xclient)
    kind = UK_GREETING; /* answered by a new 220 greeting */
  else if (verb_is(p, len, "NOOP") || verb_is(p, len, "VRFY") ||
           verb_is(p, len, "EXPN") || verb_is(p, len, "HELP"))
    kind = UK_SYNC;
  else if (verb_is(p, len, "BDAT")) {
    uint64_t size;
    int last;
    if (parse_bdat(p, len, &size, &last) != 0) {
      fail(o, "guarantee 3: malformed BDAT sent upstream: \"%s\"",
           show(p, len < 60 ? len : 60, s, sizeof(s)));
      return;
    }
    up_pace(o, UK_CMD, p, len);
    if (last && o->f_pending)
      fail(o, "guarantee 2: BDAT LAST sent upstream while the content "
              "filters' verdict was pending");
    o->up_chunk_left = size;
    o->up_chunk_last = last;
    o->um = UM_CHUNK;
    if (!size) {
      o->um = UM_CMD;
      up_sent(o, last ? UK_BDAT_LAST : UK_BDAT);
      if (o->up_chunk_cr && last)
        fail(o, "guarantee 3: BDAT LAST ends the message on a bare CR");
      if (last)
        o->up_chunk_cr = o->up_chunk_bad = 0;
    }
    return;
  }
  up_pace(o, kind, p, len);
  up_sent(o, kind);
  if (kind == UK_QUIT)
    o->um = UM_DEAD;
}

/* One body byte sent upstream (after the 354). */
static void up_body_byte(sl_oracle *o, uint8_t c) {
  if (o->ub_cr) {
    o->ub_cr = 0;
    if (c != '\n') {
      fail(o, "guarantee 3: bare CR in the DATA body sent upstream");
      return;
    }
    uint32_t content = o->ub_linelen;
    if (o->ub_first_dot && content == 1) {
      /* the terminator: it commits the message the client sent */
      size_t i = o->up_bodies - 1;
      if (!(i < o->nbodies && o->bodies[i].complete && !o->bodies[i].bad) &&
          commit_chunked(o))
        o->up_bodies--; /* a BDAT transaction, not a DATA body */
      else if (i == o->nbodies && o->held == CK_DATA && !o->eod_wait)
        o->eod_wait = i + 1; /* judged when the client has its 354 */
      else if (i >= o->nbodies)
        fail(o,
             "guarantee 3: end-of-data sent upstream for message #%zu "
             "that the client never sent",
             i + 1);
      else if (!o->bodies[i].complete)
        fail(o,
             "guarantee 3: end-of-data sent upstream before the client's "
             "message #%zu ended",
             i + 1);
      else if (o->bodies[i].bad)
        fail(o,
             "guarantee 3: end-of-data sent upstream for message #%zu "
             "that had a framing violation (smuggling bytes, overlong "
             "line or size)",
             i + 1);
      if (o->f_pending)
        fail(o, "guarantee 2: end-of-data sent upstream while the content "
                "filters' verdict was pending");
      else if (o->f_refused)
        fail(o, "guarantee 2: end-of-data sent upstream for a message the "
                "content filters refused");
      o->um = UM_CMD;
      o->up_commands++;
      up_sent(o, UK_EOD);
    } else {
      if (o->ub_first_dot)
        content--;
      if (content + 2 > o->lim.text_line_max)
        fail(o, "guarantee 3: DATA line of %u octets sent upstream (limit %u)",
             content + 2, o->lim.text_line_max);
    }
    o->ub_linelen = 0;
    o->ub_first_dot = 0;
    return;
  }
  if (c == '\r') {
    o->ub_cr = 1;
    return;
  }
  if (c == '\n' || c == 0) {
    fail(o, "guarantee 3: %s in the DATA body sent upstream",
         c ? "bare LF" : "NUL");
    return;
  }
  if (o->ub_linelen == 0 && c == '.')
    o->ub_first_dot = 1;
  o->ub_linelen++;
}

static void up_chunk_byte(sl_oracle *o, uint8_t c) {
  if (o->up_chunk_cr) {
    o->up_chunk_cr = 0;
    if (c != '\n')
      o->up_chunk_bad = 1;
    else
      return;
  }
  if (c == '\r')
    o->up_chunk_cr = 1;
  else if (c == '\n' || c == 0)
    o->up_chunk_bad = 1;
}

/* A DATA sent upstream is outstanding until its reply: nothing may follow
   it (the upstream would read it as body after its 354). */
static int data_outstanding(const sl_oracle *o) {
  for (size_t i = 0; i < o->upend.len; i++)
    if (o->upend.v[o->upend.head + i] == UK_DATA)
      return 1;
  return 0;
}

static void up_parse(sl_oracle *o) {
  size_t pos = 0;
  obuf *b = &o->uout;
  char s[120];
  while (pos < b->len && !o->failed) {
    const uint8_t *p = b->p + pos;
    size_t n = b->len - pos;
    if (data_outstanding(o)) {
      /* before the 354 a strict receiver reads these bytes as commands
         (and after a refusal it never reads them as a body) */
      fail(o, "guarantee 8: \"%s\" sent upstream before the reply to DATA",
           show(p, n < 40 ? n : 40, s, sizeof(s)));
      break;
    }
    switch (o->um) {
    case UM_NONE:
      fail(o, "guarantee 3: bytes \"%s\" sent upstream with no connection",
           show(p, n < 40 ? n : 40, s, sizeof(s)));
      pos = b->len;
      continue;
    case UM_PROXY: {
      sl_proxy_header h;
      long k = sl_proxy_parse(p, n, &h);
      if (k == SL_ERR_INCOMPLETE)
        goto out;
      unsigned want = o->pol.identity == SL_IDENT_PROXY_V1 ? 1u : 2u;
      if (k < 0 || h.version != want) {
        fail(o,
             "guarantee 3: upstream does not start with a PROXY v%u "
             "header: \"%s\"",
             want, show(p, n < 40 ? n : 40, s, sizeof(s)));
      } else if (!h.local && !sl_addr_equal_ip(&h.src, &o->client_addr)) {
        char a[SL_ADDR_STRLEN], c[SL_ADDR_STRLEN];
        sl_addr_format(&h.src, a, sizeof(a));
        sl_addr_format(&o->client_addr, c, sizeof(c));
        fail(o, "guarantee 3: PROXY header upstream names %s, the client is %s",
             a, c);
      }
      pos += k > 0 ? (size_t)k : n;
      o->um = UM_CMD;
      continue;
    }
    case UM_CMD: {
      if (o->pol.identity != SL_IDENT_PROXY_V1 &&
          o->pol.identity != SL_IDENT_PROXY_V2 && n >= 6 &&
          memcmp(p, "PROXY ", 6) == 0)
        fail(o, "guarantee 3: a PROXY header went upstream though the "
                "policy has none");
      uint8_t *nl = memchr(p, '\n', n);
      if (!nl) {
        uint32_t lim = o->lim.auth_line_max > 512 ? o->lim.auth_line_max : 512;
        if (n > lim)
          fail(o,
               "guarantee 3: upstream command line longer than %u without "
               "LF: \"%s\"",
               lim, show(p, 40, s, sizeof(s)));
        goto out;
      }
      size_t whole = (size_t)(nl - p) + 1;
      if (whole < 2 || p[whole - 2] != '\r') {
        fail(o, "guarantee 3: upstream command line not ended by CRLF: \"%s\"",
             show(p, whole < 60 ? whole : 60, s, sizeof(s)));
        pos = b->len;
        continue;
      }
      pos += whole;
      up_line(o, p, whole);
      continue;
    }
    case UM_BODY:
      if (o->up_orphan) {
        fail(o,
             "guarantee 8: body bytes \"%s\" sent upstream after it "
             "answered %u in the middle of the body: a strict receiver "
             "reads them as commands",
             show(p, n < 40 ? n : 40, s, sizeof(s)), o->up_orphan_code);
        break;
      }
      while (pos < b->len && o->um == UM_BODY && !o->failed)
        up_body_byte(o, b->p[pos++]);
      continue;
    case UM_CHUNK: {
      if (o->up_orphan && o->up_chunk_left) {
        fail(o,
             "guarantee 8: BDAT chunk bytes \"%s\" sent upstream after "
             "it answered %u before the chunk was complete: a strict "
             "receiver reads them as commands",
             show(p, n < 40 ? n : 40, s, sizeof(s)), o->up_orphan_code);
        break;
      }
      uint64_t k = o->up_chunk_left < n ? o->up_chunk_left : n;
      for (size_t i = 0; i < k; i++)
        up_chunk_byte(o, p[i]);
      pos += (size_t)k;
      o->up_chunk_left -= k;
      if (!o->up_chunk_left) {
        /* A completed chunk must be canonical text (RFC 3030 3): a bare CR
           or LF inside it reaches the upstream's parser as is. */
        if (o->up_chunk_bad)
          fail(o, "guarantee 3: a BDAT chunk with bare CR, bare LF or NUL "
                  "was sent upstream in full");
        if (o->up_chunk_last && o->up_chunk_cr)
          fail(o, "guarantee 3: BDAT LAST chunk ends on a bare CR");
        up_sent(o, o->up_chunk_last ? UK_BDAT_LAST : UK_BDAT);
        if (o->up_chunk_last)
          o->up_chunk_cr = 0;
        o->up_chunk_bad = 0;
        o->um = UM_CMD;
      }
      continue;
    }
    case UM_TLS:
    case UM_DEAD:
      fail(o, "guarantee 3: bytes \"%s\" sent upstream %s",
           show(p, n < 40 ? n : 40, s, sizeof(s)),
           o->um == UM_TLS ? "between the 220 to STARTTLS and the handshake"
                           : "after QUIT or a failed handshake");
      pos = b->len;
      continue;
    }
  }
out:
  ob_drop(b, pos);
}

void sl_oracle_upstream_out(sl_oracle *o, const uint8_t *p, size_t n) {
  o->up_out_bytes += n;
  ob_add(&o->uout, p, n);
  up_parse(o);
}

/* The reply to command kind k; early: it arrived before k was sent. */
static void up_answer(sl_oracle *o, uint32_t k, unsigned code, uint32_t caps,
                      int early) {
  o->up_last_kind = k;
  unsigned cls = code / 100;
  switch (k) {
  case UK_EHLO:
  case UK_HELO:
    /* RFC 5321 4.1.4: a 2xx to EHLO resets and names the extensions, a 2xx
       to HELO leaves none; a refused one leaves the receiver in the state
       it was in (with what an earlier EHLO offered). */
    if (cls == 2) {
      o->up_caps = k == UK_EHLO ? caps : 0;
      o->up_tx_utf8 = 0;
    }
    break;
  case UK_GREETING: /* a greeting, or the 220 after XCLIENT: EHLO again */
    o->up_caps = 0;
    o->up_tx_utf8 = 0;
    break;
  case UK_DATA:
    if (code == 354) {
      o->um = UM_BODY;
      o->up_bodies++;
      o->ub_linelen = 0;
      o->ub_cr = 0;
      o->ub_first_dot = 0;
    }
    break;
  case UK_AUTH:
    if (code == 334)
      o->up_auth_cont = 1;
    au_reply(o, code);
    break;
  case UK_MAIL: {
    uint32_t held = 0;
    fifo_pop(&o->upmail, &held);
    if (cls == 2 && !held)
      o->up_mail_ok++;
    break;
  }
  case UK_STARTTLS:
    if (code == 220)
      o->um = UM_TLS;
    break;
  case UK_EOD:
  case UK_BDAT_LAST:
    /* A 2xx that was on the wire before the terminator went out is not the
       upstream accepting this message (guarantee 2). */
    if (cls == 2 && !early)
      o->upstream_accepted++;
    break;
  default:
    break;
  }
}

static void up_reply(sl_oracle *o, unsigned code, uint32_t caps) {
  o->up_replies++;
  uint32_t k;
  if (!fifo_pop(&o->upend, &k)) {
    /* Nothing outstanding yet: keep it for the next command, as a relay
       reading a buffered stream will. */
    fifo_push(&o->early, code | caps << 10);
    /* A strict receiver answers a DATA body or a BDAT chunk only once it
       has read all of it; a reply while sluice is still sending one means
       the receiver is not reading content any more (it refused the BDAT,
       or gave up on the message), so any further content bytes would be
       read as commands (guarantee 8). */
    if ((o->um == UM_BODY || (o->um == UM_CHUNK && o->up_chunk_left)) &&
        !o->up_orphan) {
      o->up_orphan = 1;
      o->up_orphan_code = code;
    }
    return;
  }
  up_answer(o, k, code, caps, 0);
}

/* A command was just sent: a reply already waiting answers it at once. */
static void up_sent(sl_oracle *o, uint32_t kind) {
  fifo_push(&o->upend, kind);
  uint32_t e, k;
  if (fifo_pop(&o->early, &e) && fifo_pop(&o->upend, &k))
    up_answer(o, k, e & 0x3ffu, e >> 10, 1);
}

void sl_oracle_upstream_in(sl_oracle *o, const uint8_t *p, size_t n) {
  o->up_in_bytes += n;
  for (size_t i = 0; i < n; i++) {
    if (o->up_broken || o->um == UM_TLS || o->um == UM_NONE)
      return; /* not replies to anything: discarded by a correct relay */
    const char *why = NULL;
    int rc =
        rp_byte(&o->uin, p[i], o->lim.reply_line_max, o->lim.reply_max, &why);
    if (rc == RP_BAD) {
      o->up_broken = 1;
      return;
    }
    if (rc == RP_DONE) {
      uint32_t caps = o->uin.caps;
      o->uin.caps = 0;
      up_reply(o, o->uin.code, caps);
    }
  }
}

/* ---- requests and completions
 * ---------------------------------------------------- */

/* Guarantee 10: ids are unique per relay (relay.h), and SESSION_END is the
   last request of a session. */
static void req_id(sl_oracle *o, const sl_request *q) {
  if (o->session_end)
    fail(o,
         "guarantee 10: request type %u after SESSION_END (the last "
         "request)",
         (unsigned)q->type);
  int dup = 0;
  if (o->nreq_ids && q->id <= o->last_req_id)
    for (size_t i = 0; i < o->nreq_ids && !dup; i++)
      dup = o->req_ids[i] == q->id;
  if (dup)
    fail(o, "guarantee 10: request id %u issued twice", q->id);
  if (o->nreq_ids == o->capreq_ids) {
    size_t cap = o->capreq_ids ? o->capreq_ids * 2 : 32;
    uint32_t *v = realloc(o->req_ids, cap * sizeof(*v));
    if (!v)
      abort();
    o->req_ids = v;
    o->capreq_ids = cap;
  }
  o->req_ids[o->nreq_ids++] = q->id;
  if (q->id > o->last_req_id)
    o->last_req_id = q->id;
  if (q->type != SL_REQ_EVENT)
    return;
  sl_event_kind kind = q->ev.kind;
  if ((unsigned)kind < 16)
    o->ev_count[kind]++;
  switch (kind) {
  case SL_EV_MESSAGE: {
    unsigned code = q->ev.message.code;
    if (code / 100 == 2)
      o->ev_msg_2xx++;
    else if (code / 100 == 4)
      o->ev_msg_4xx++;
    else if (code)
      o->ev_msg_5xx++;
    if (code)
      o->ev_last_code = (uint16_t)code;
    break;
  }
  case SL_EV_STARTTLS_INJECTION:
    o->ev_starttls_bytes += q->ev.starttls_injection.bytes;
    break;
  case SL_EV_SESSION_END:
    o->session_end = 1;
    ref_match(o);
    break;
  case SL_EV_REFUSAL:
    if (q->ev.refusal.command > SL_CMD_NONE)
      fail(o, "guarantee 10: REFUSAL names command %u, not in the list",
           (unsigned)q->ev.refusal.command);
    ref_add(&o->ref_ev, &o->nref_ev, &o->capref_ev, q->ev.refusal.code);
    ref_match(o);
    break;
  default:
    break;
  }
}

void sl_oracle_request(sl_oracle *o, const sl_request *q) {
  o->nrequests++;
  req_id(o, q);
  switch (q->type) {
  case SL_REQ_CLOSE_UPSTREAM:
    /* a held message dies with its leg; the next one goes on a new leg */
    o->f_pending = 0;
    o->f_refused = 0;
    if (o->um == UM_BODY && o->up_bodies > o->nbodies)
      o->up_bodies--; /* an aborted BDAT transaction sent as DATA */
    o->up_orphan = 0;
    o->um = UM_NONE;
    ob_drop(&o->uout, o->uout.len);
    fifo_clear(&o->upend);
    fifo_clear(&o->early);
    fifo_clear(&o->upmail);
    /* a MAIL read while this leg was up may now be held by sluice */
    for (size_t i = 0; i < o->owed.len; i++)
      if (CK_KIND(o->owed.v[o->owed.head + i]) == CK_MAIL)
        o->owed.v[o->owed.head + i] |= MAIL_UNCONNECTED;
    break;
  case SL_REQ_CLOSE_CLIENT:
    o->client_close_req = 1;
    break;
  case SL_REQ_FILTER:
    o->f_pending = 1;
    o->f_refused = 0;
    break;
  case SL_REQ_CONNECT_UPSTREAM:
    /* The authentication belongs to the leg that answered 235; sluice
       cannot repeat it (no password), so a new leg would carry the
       session on as authenticated where the server saw no AUTH. */
    if (o->au_authed)
      fail(o, "guarantee 2: a new upstream connection for a session "
              "authenticated on a lost one");
    break;
  case SL_REQ_RCPT_CHECK:
    if (q->check.stage == SL_CMD_RCPT && q->check.rcpt)
      rcpt_asked(o, q->check.rcpt);
    au_named(o, "the check request", (const uint8_t *)q->check.sasl_username,
             q->check.sasl_username ? q->check.sasl_username_len : 0,
             q->check.sasl_method);
    break;
  case SL_REQ_STARTTLS_CLIENT:
    if (o->cm != CM_TLS)
      fail(o, "guarantee 4: STARTTLS_CLIENT requested without a 220 reply to "
              "STARTTLS");
    break;
  case SL_REQ_STARTTLS_UPSTREAM:
    /* The receiver starts its handshake only after it read STARTTLS and
       answered 220; anything still unsent would follow the handshake. */
    if (o->um != UM_TLS)
      fail(o, "guarantee 3: STARTTLS_UPSTREAM requested before the upstream "
              "was sent STARTTLS and answered it 220");
    break;
  default:
    break;
  }
}

void sl_oracle_filter_verdict(sl_oracle *o, int verdict) {
  if (!o->f_pending)
    fail(o, "a filter verdict without an SL_REQ_FILTER");
  o->f_pending = 0;
  /* 0 ACCEPT, 1 CHANGE; 2 DISCARD counts as a refusal (5xx) */
  o->f_refused = verdict >= 2;
  o->f_class = verdict == 3 ? 4 : verdict >= 2 ? 5 : 0;
}

void sl_oracle_completed(sl_oracle *o, uint32_t type, sl_status st) {
  switch (type) {
  case SL_REQ_CONNECT_UPSTREAM:
    if (st == SL_STATUS_OK)
      up_fresh(o, 1);
    break;
  case SL_REQ_STARTTLS_UPSTREAM:
    if (st == SL_STATUS_OK && o->um == UM_TLS)
      up_fresh(o, 0);
    else
      o->um = UM_DEAD;
    break;
  case SL_REQ_STARTTLS_CLIENT:
    o->tls_client_pending = 0;
    /* Every byte received before this moment was plaintext sent before TLS
       and is never read as a command (guarantee 4). */
    ob_drop(&o->cin, o->cin.len);
    if (st == SL_STATUS_OK && o->cm == CM_TLS) {
      if (o->owed.len)
        fail(o,
             "guarantee 1: %zu command(s) before STARTTLS still owed a "
             "reply at the TLS switch",
             o->owed.len);
      fifo_clear(&o->owed);
      o->cm = CM_CMD;
      o->held = 0;
      /* RFC 3207 4.2: the AUTH learnt before TLS is forgotten */
      o->au_authed = o->au_given = o->au_user_ok = 0;
      o->au_step = AU_NONE;
      o->au_further = o->au_cand_ok = 0;
    } else {
      o->cm = CM_DEAD;
    }
    break;
  default:
    break;
  }
}

/* ---- guarantee 9: progress --------------------------------------------- */

/* A tarpit profile that may hold the reply to a command of kind k. */
static int profile_holds(const sl_tarpit *t, uint32_t k) {
  if (t->reply_delay || t->jitter || t->stutter_bytes)
    return 1;
  if (k == CK_GREETING && t->greet_delay)
    return 1;
  /* data_rate meters reading; the reply to a body waits for its end */
  return t->data_rate && (k == CK_EOD || k == CK_EOD_AMBIG || k == CK_BDAT ||
                          k == CK_BDAT_LAST);
}

void sl_oracle_progress(sl_oracle *o, unsigned holds, sl_tstamp now) {
  (void)now;
  if (o->failed || !o->owed.len || holds)
    return;
  /* the content filters' verdict is a pending request */
  if (o->f_pending)
    return;
  /* After the closing reply or the decision to close, what is still owed
     is never answered (the session is over). */
  if (o->closing || o->client_close_req)
    return;
  uint32_t head = CK_KIND(o->owed.v[o->owed.head]);
  /* A body made ambiguous by a smuggling byte ends where the relay decides
     (it may read on to the client's CRLF "." CRLF before it answers), so
     it may be waiting for client input. */
  if (head == CK_EOD_AMBIG)
    return;
  /* A BDAT is complete with its chunk (RFC 3030 2: the reply follows the
     chunk): while the client is still sending it, it waits for input. */
  if ((head == CK_BDAT || head == CK_BDAT_LAST) && o->owed.len == 1 &&
      o->cm == CM_CHUNK)
    return;
  /* Policy: the normal profile always, the suspect one once in force
     (admission said so, or the relay announced the switch). */
  if (profile_holds(&o->pol.normal, head))
    return;
  int suspect =
      o->info.admission == SL_ADMIT_TARPIT || o->ev_count[SL_EV_TARPIT] != 0;
  if (suspect && profile_holds(&o->pol.suspect, head))
    return;
  /* Flow control: the upstream owes a reply, or a TLS switch is under way
     (its request is pending, told as a hold). */
  if (o->upend.len || o->um == UM_TLS)
    return;
  /* A reply (even an unsolicited one) is half received: what it is, and
     so what the relay does next, is known only at its end. */
  if (o->uin.linelen || o->uin.nlines || o->uin.cr)
    return;
  static const char *const names[] = {
      "?",           "greeting",    "command", "DATA",      "AUTH", "STARTTLS",
      "end-of-data", "end-of-data", "BDAT",    "BDAT LAST", "MAIL"};
  fail(o,
       "guarantee 9: the %s (%zu owed) is unanswered with nothing to "
       "wait for (no tarpit delay, no pending request, no upstream reply "
       "outstanding), yet the clock has to move",
       head < sizeof(names) / sizeof(names[0]) ? names[head] : "?",
       o->owed.len);
}

/* ---- guarantee 10: statistics against the events ------------------------ */

void sl_oracle_stats(sl_oracle *o, const sl_stats *st, unsigned want) {
  if (o->failed)
    return;
#define SAME(field, value, what)                                               \
  if ((uint64_t)st->field != (uint64_t)(value)) {                              \
    fail(o, "guarantee 10: stats " #field " = %llu, but %s say %llu",          \
         (unsigned long long)st->field, what, (unsigned long long)(value));    \
    return;                                                                    \
  }
  SAME(client_bytes_in, o->client_in_bytes, "the bytes taken");
  SAME(client_bytes_out, o->out_bytes, "the bytes sent");
  SAME(upstream_bytes_in, o->up_in_bytes, "the bytes taken");
  SAME(upstream_bytes_out, o->up_out_bytes, "the bytes sent");
  SAME(messages_accepted, o->ev_msg_2xx, "the 2xx MESSAGE events");
  SAME(messages_tempfailed, o->ev_msg_4xx, "the 4xx MESSAGE events");
  SAME(messages_rejected, o->ev_msg_5xx, "the 5xx MESSAGE events");
  if (o->ev_count[SL_EV_MESSAGE])
    SAME(last_upstream_code, o->ev_last_code, "the MESSAGE events");
  SAME(starttls_discarded, o->ev_starttls_bytes,
       "the STARTTLS_INJECTION events");
#undef SAME
  int tp_ev = o->ev_count[SL_EV_TARPIT] != 0;
  if (tp_ev && !st->tarpitted)
    fail(o, "guarantee 10: a TARPIT event but stats tarpitted = 0");
  else if (st->tarpitted && !tp_ev && o->info.admission != SL_ADMIT_TARPIT)
    fail(o, "guarantee 10: stats tarpitted = 1 without a TARPIT event");
  else if (o->ev_count[SL_EV_TARPIT] > 1)
    fail(o, "guarantee 10: %u TARPIT events (the switch happens once)",
         o->ev_count[SL_EV_TARPIT]);
  else if (o->session_end && st->end == SL_TSTAMP_NONE)
    fail(o, "guarantee 10: SESSION_END but stats end is unset");
  else if ((want & SL_CLOSED) && !o->session_end)
    fail(o, "guarantee 10: SL_CLOSED without a SESSION_END event");
}

void sl_oracle_expiry(sl_oracle *o, const sl_relay *r, sl_tstamp now) {
  o->exp_valid = 1;
  o->exp_now = now;
  o->exp_deadline = sl_relay_next_deadline(r);
  o->exp_want = sl_relay_want(r);
  o->exp_out = o->out_bytes + o->up_out_bytes;
  o->exp_req = o->nrequests;
}

static sl_duration timeouts_sum(const sl_limits *l) {
  return l->proxy_header_timeout + l->command_timeout + l->data_block_timeout +
         l->send_timeout + l->upstream_connect_timeout +
         l->upstream_greeting_timeout + l->upstream_command_timeout +
         l->upstream_data_init_timeout + l->upstream_data_term_timeout +
         l->tls_handshake_timeout;
}

int sl_oracle_check(sl_oracle *o, const sl_relay *r, sl_tstamp now, char *why,
                    size_t whylen) {
  if (!o->failed) {
    unsigned want = sl_relay_want(r);
    /* (6) memory */
    if (o->pool) {
      const sl_bufpool *bp = o->pool;
      uint32_t ns = bp->small_total - bp->small_free - o->drv_small;
      uint32_t nl = bp->large_total - bp->large_free - o->drv_large;
      size_t held = sl_relay_size(&o->lim) + (size_t)ns * bp->small_size +
                    (size_t)nl * bp->large_size;
      size_t bound = sl_relay_memory_bound(&o->lim);
      if (held > bound)
        fail(o,
             "guarantee 6: relay holds %zu bytes, bound %zu (small %u/%u, "
             "large %u/%u lent)",
             held, bound, ns, bp->small_total, nl, bp->large_total);
    }
    /* (7) a due deadline handled must lead somewhere */
    if (o->exp_valid) {
      o->exp_valid = 0;
      sl_tstamp d = sl_relay_next_deadline(r);
      int progress = o->out_bytes + o->up_out_bytes != o->exp_out ||
                     o->nrequests != o->exp_req || want != o->exp_want;
      if (o->exp_deadline != SL_TSTAMP_NONE && o->exp_deadline <= o->exp_now &&
          !progress && d != SL_TSTAMP_NONE && d <= o->exp_now)
        fail(o,
             "guarantee 7: handle_expiry at %llu (deadline %llu) changed "
             "nothing and the deadline stays at %llu",
             (unsigned long long)o->exp_now,
             (unsigned long long)o->exp_deadline, (unsigned long long)d);
    }
    if (o->client_close_req && !(want & SL_WANT_REQUESTS)) {
      if (o->t_close_req == SL_TSTAMP_NONE)
        o->t_close_req = now;
      sl_duration bound = timeouts_sum(&o->lim);
      if (!(want & SL_CLOSED) && bound && now > o->t_close_req + bound)
        fail(o,
             "guarantee 7: client closed at %llu, not SL_CLOSED at %llu "
             "(bound %llu ns)",
             (unsigned long long)o->t_close_req, (unsigned long long)now,
             (unsigned long long)bound);
    }
  }
  if (o->failed) {
    if (why && whylen)
      snprintf(why, whylen, "%s", o->why);
    return -1;
  }
  return 0;
}
