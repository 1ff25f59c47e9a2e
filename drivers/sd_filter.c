/*
 * sd_filter.c: one session's content filters; see sd_filter.h.
 *
 * Per message: the relay's tap fills the envelope (MAIL, the RCPTs the
 * upstream accepted) and the spool (the content with its dot-stuffing
 * removed: memory up to filter_spool_memory, and while the worker's spools
 * hold less than filter_spool_memory_total, then an unlinked temporary
 * file).  Every filter gets one connection per message, fed from the spool
 * as the body arrives, at the filter's own pace (non-blocking, in the
 * worker's epoll loop): a filter slower than the client never makes the
 * worker buffer more than one chunk for it, the rest waits in the spool.
 * Milters are connected at MAIL (connect, HELO, MAIL) and asked at each
 * RCPT (sd_filters_rcpt, the RCPT check), as Postfix asks them; rspamd
 * and clamd at the first body bytes (rspamd needs the accepted
 * recipients).  The end of data only waits for the final answers, under
 * filter_timeout from the end; before it, a filter's timeout runs only
 * while sluice waits on it (an answer, or room to write).  The
 * protocols are the core's pure codecs (sluice/clamd.h, sluice/rspamd.h,
 * sluice/milter.h); this file only moves bytes and keeps the order.
 * Failures (refused, timeout, garbage) become filter_default_action.  The
 * verdicts combine with sl_verdict_combine, and the result is handed to
 * the session from a timer, never from inside a call the session made.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sd_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_log.h"
#include "sd_metrics.h"
#include "sluice/clamd.h"
#include "sluice/filter.h"
#include "sluice/milter.h"
#include "sluice/rspamd.h"

#define IO_CHUNK 65536            /* bytes moved per write from the spool */
#define IN_MAX (256 * 1024)       /* largest filter answer read (rspamd JSON) */
#define HDR_SCAN_MAX (256 * 1024) /* header section looked at */
#define HDR_MAX 1024              /* header fields of one message handled */
#define HOPS_MAX 64               /* header changes kept per message */
#define RCPTS_MAX 1000
#define LOG_MAX 1024

enum { FC_IDLE, FC_CONNECTING, FC_RUN, FC_DONE };

/* A header change asked for by a filter (spool mode applies them). */
enum { HOP_ADD_TOP, HOP_ADD_END, HOP_INSERT, HOP_CHANGE, HOP_REMOVE };
typedef struct hop {
  int op;
  char *name, *value; /* value NULL: remove */
  long index;         /* INSERT: position; CHANGE/REMOVE: nth (0: all) */
} hop;

/* A RCPT question to a milter: none, to send, sent, answered. */
enum { RQ_NONE, RQ_WANT, RQ_SENT, RQ_DONE };

typedef struct fconn {
  sd_handler h;
  sd_timer timer;
  sd_filters *f;
  const sl_filter_cfg *cfg;
  int fd;
  uint32_t ev;
  uint8_t state;
  uint8_t eof;
  uint8_t armed;     /* the timer runs (sluice waits on the filter) */
  uint8_t progress;  /* bytes moved since the timer was set */
  uint8_t live;      /* milter: started at MAIL, RCPTs asked one by one */
  uint8_t skip_body; /* milter: SMFIR_SKIP, no more body */
  uint8_t rq;        /* RQ_*: the RCPT being asked */
  uint16_t rq_code;  /* its answer: 0 passes */
  char rq_text[SL_CHECK_TEXT_MAX];
  sl_verdict verdict; /* once FC_DONE */
  const char *fail;   /* a failure's reason (the verdict is the default) */
  char *text;         /* what the filter said, for the client */
  size_t text_len;
  uint64_t start;
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  uint64_t spool_off, spool_end; /* body bytes still to send */
  uint8_t *in;
  size_t in_len, in_cap;
  int phase;
  /* rspamd */
  sl_http_reader *http;
  uint8_t *hbody;
  /* milter */
  sl_milter_reader mr;
  uint8_t *mbuf;
  sl_milter_session ms;
  uint8_t await; /* command whose reply is awaited, 0 none */
  size_t item;   /* RCPT or header index of the phase */
} fconn;

typedef struct rcpt {
  char *addr, *params;
  int state; /* 0 pending, 1 accepted, -1 refused */
} rcpt;

typedef struct hdr {
  size_t off, len;             /* the whole field, CRLF included */
  size_t name_len;             /* from off */
  size_t value_off, value_len; /* after the colon, without the final CRLF */
} hdr;

struct sd_filters {
  sd_loop *loop;
  const sd_config *cfg;
  sd_filters_done_fn done;
  void *ctx;
  sd_timer fire;    /* hands the verdict over, outside the caller's stack */
  sd_timer rq_fire; /* the same for a RCPT's answer */
  /* the message */
  int active;  /* MAIL seen and not ended or aborted */
  int ended;   /* SL_REQ_FILTER taken */
  int holding; /* spool mode: the body the relay writes is held back */
  uint32_t id;
  char *mail_addr, *mail_params;
  rcpt *rcpts;
  size_t nrcpts;
  char client_ip[SL_ADDR_STRLEN], *client_name, *helo;
  char session_id[24]; /* the session log's id: rspamd's Queue-Id */
  sl_addr client;
  int body_started; /* the first body bytes came: every filter runs */
  uint64_t t_end;   /* when the end of data came */
  /* the header section's end, watched as the body streams: 1 at a line
     start, 2 after a CR there; hdr_end once the empty line passed */
  int hst, hdr_end, hdr_scanned;
  /* the RCPT the milters are being asked about (sd_filters_rcpt) */
  char *rq_addr;
  sd_filters_rcpt_fn rq_cb;
  void *rq_ctx;
  int rq_open, rq_sync;
  /* spool */
  uint8_t *mem;
  size_t mem_len, mem_cap;
  int spool_fd;
  uint64_t size; /* bytes spooled */
  int bol, dot;  /* unstuffing: at a line start; a dot dropped there */
  int spool_err;
  /* headers of the message, scanned at the end */
  uint8_t *hbuf;
  size_t hbuf_len, body_off;
  hdr *hdrs;
  size_t nhdrs;
  /* filters */
  fconn *fc;
  size_t nfc, ndone;
  hop hops[HOPS_MAX];
  size_t nhops;
  int discard_tag;
  const char *discard_by;
  /* spool mode: the changed message being given upstream */
  uint8_t *inj_head;
  int inj_ready;
  size_t inj_head_len, inj_head_off;
  uint64_t inj_off;
  int inj_bol;
  char log[LOG_MAX];
};

static uint64_t now_ns(const sd_filters *f) { return sd_loop_now(f->loop); }

static void fc_start(fconn *c);
static void fc_pump(fconn *c);
static int headers_ready(sd_filters *f);
static void log_entry(sd_filters *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *memdup0(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* ---- the spool ------------------------------------------------------------
 */

static int spool_file(sd_filters *f) {
  const char *dir = f->cfg->filter_spool_dir;
  if (dir == NULL)
    dir = getenv("TMPDIR");
  if (dir == NULL || !*dir)
    dir = "/tmp";
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    /* file systems without O_TMPFILE: a named file, unlinked at once */
    char path[4096];
    snprintf(path, sizeof path, "%s/sluiced-spool-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd >= 0) {
      unlink(path);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  if (fd < 0)
    sd_log(SD_LOG_ERR, "filter spool in %s: %s", dir, strerror(errno));
  return fd;
}

/* Message bytes all spools of this process hold in memory (a worker is
   one process with one loop: no lock). */
static uint64_t spool_mem_total;

/* Watches for the empty line that ends the header section. */
static void hdr_watch(sd_filters *f, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n && !f->hdr_end; i++) {
    if (f->hst == 2 && p[i] == '\n')
      f->hdr_end = 1;
    f->hst = p[i] == '\n' ? 1 : (f->hst == 1 && p[i] == '\r') ? 2 : 0;
  }
}

static void spool_put(sd_filters *f, const uint8_t *p, size_t n) {
  if (f->spool_err || !n)
    return;
  if (!f->hdr_end)
    hdr_watch(f, p, n);
  size_t room = f->mem_len < f->cfg->filter_spool_memory
                    ? (size_t)(f->cfg->filter_spool_memory - f->mem_len)
                    : 0;
  uint64_t total = f->cfg->filter_spool_memory_total;
  if (total) {
    uint64_t free_total = spool_mem_total < total ? total - spool_mem_total : 0;
    if (room > free_total)
      room = (size_t)free_total;
  }
  if (f->spool_fd < 0 && room) {
    size_t take = n < room ? n : room;
    if (f->mem_len + take > f->mem_cap) {
      size_t cap = f->mem_cap ? f->mem_cap * 2 : 16384;
      while (cap < f->mem_len + take)
        cap *= 2;
      uint8_t *m = realloc(f->mem, cap);
      if (m == NULL) {
        f->spool_err = 1;
        return;
      }
      f->mem = m;
      f->mem_cap = cap;
    }
    memcpy(f->mem + f->mem_len, p, take);
    f->mem_len += take;
    spool_mem_total += take;
    f->size += take;
    p += take;
    n -= take;
  }
  if (!n)
    return;
  if (f->spool_fd < 0 && (f->spool_fd = spool_file(f)) < 0) {
    f->spool_err = 1;
    return;
  }
  while (n) {
    ssize_t w = pwrite(f->spool_fd, p, n, (off_t)(f->size - f->mem_len));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      sd_log(SD_LOG_ERR, "filter spool write: %s", strerror(errno));
      f->spool_err = 1;
      return;
    }
    f->size += (size_t)w;
    p += w;
    n -= (size_t)w;
  }
}

/* Up to n spooled bytes from off into buf; the count, or -1. */
static long spool_get(const sd_filters *f, uint64_t off, uint8_t *buf,
                      size_t n) {
  if (off >= f->size)
    return 0;
  if (n > f->size - off)
    n = (size_t)(f->size - off);
  size_t done = 0;
  if (off < f->mem_len) {
    size_t m = f->mem_len - (size_t)off < n ? f->mem_len - (size_t)off : n;
    memcpy(buf, f->mem + off, m);
    done = m;
  }
  while (done < n) {
    ssize_t r = pread(f->spool_fd, buf + done, n - done,
                      (off_t)(off + done - f->mem_len));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    done += (size_t)r;
  }
  return (long)done;
}

/* The wire form the relay gives (dot-stuffed CRLF lines, never the
   terminator) back to the message: a dot at a line start was stuffing. */
static void spool_unstuff(sd_filters *f, const uint8_t *p, size_t n) {
  size_t i = 0, start = 0;
  while (i < n) {
    if (f->bol && p[i] == '.' && !f->dot) {
      spool_put(f, p + start, i - start);
      f->dot = 1;
      f->bol = 0;
      start = ++i;
      continue;
    }
    f->bol = p[i] == '\n';
    f->dot = 0;
    i++;
  }
  spool_put(f, p + start, n - start);
}

/* ---- per-message state ------------------------------------------------------
 */

static void fc_close(fconn *c) {
  if (c->fd >= 0) {
    sd_loop_del(c->f->loop, c->fd);
    close(c->fd);
    c->fd = -1;
  }
  sd_timer_stop(c->f->loop, &c->timer);
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = c->out_cap = 0;
  free(c->in);
  c->in = NULL;
  c->in_len = c->in_cap = 0;
  free(c->http);
  c->http = NULL;
  free(c->hbody);
  c->hbody = NULL;
  free(c->mbuf);
  c->mbuf = NULL;
}

static void message_clear(sd_filters *f) {
  for (size_t i = 0; i < f->nfc; i++) {
    fc_close(&f->fc[i]);
    free(f->fc[i].text);
    f->fc[i].text = NULL;
    f->fc[i].state = FC_IDLE;
    f->fc[i].live = f->fc[i].skip_body = 0;
    f->fc[i].rq = RQ_NONE;
  }
  free(f->rq_addr);
  f->rq_addr = NULL;
  f->rq_open = 0; /* a question still open is never answered */
  sd_timer_stop(f->loop, &f->rq_fire);
  f->body_started = 0;
  f->t_end = 0;
  f->hst = 1;
  f->hdr_end = f->hdr_scanned = 0;
  sd_timer_stop(f->loop, &f->fire);
  free(f->mail_addr);
  free(f->mail_params);
  f->mail_addr = f->mail_params = NULL;
  for (size_t i = 0; i < f->nrcpts; i++) {
    free(f->rcpts[i].addr);
    free(f->rcpts[i].params);
  }
  free(f->rcpts);
  f->rcpts = NULL;
  f->nrcpts = 0;
  free(f->client_name);
  free(f->helo);
  f->client_name = f->helo = NULL;
  free(f->mem);
  f->mem = NULL;
  spool_mem_total -= f->mem_len;
  f->mem_len = f->mem_cap = 0;
  if (f->spool_fd >= 0)
    close(f->spool_fd);
  f->spool_fd = -1;
  f->size = 0;
  f->bol = 1;
  f->dot = 0;
  f->spool_err = 0;
  free(f->hbuf);
  f->hbuf = NULL;
  free(f->hdrs);
  f->hdrs = NULL;
  f->hbuf_len = f->body_off = f->nhdrs = 0;
  for (size_t i = 0; i < f->nhops; i++) {
    free(f->hops[i].name);
    free(f->hops[i].value);
  }
  f->nhops = 0;
  f->discard_tag = 0;
  f->discard_by = NULL;
  free(f->inj_head);
  f->inj_head = NULL;
  f->inj_head_len = f->inj_head_off = 0;
  f->inj_ready = 0;
  f->inj_off = 0;
  f->inj_bol = 1;
  f->active = f->ended = f->holding = 0;
  f->ndone = 0;
  f->id = 0;
}

sd_filters *sd_filters_new(sd_loop *loop, const sd_config *cfg,
                           sd_filters_done_fn done, void *ctx);
static void fire_cb(sd_timer *t);
static void rq_fire_cb(sd_timer *t);

sd_filters *sd_filters_new(sd_loop *loop, const sd_config *cfg,
                           sd_filters_done_fn done, void *ctx) {
  sd_filters *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  f->fc = calloc(cfg->nfilters ? cfg->nfilters : 1, sizeof *f->fc);
  if (f->fc == NULL) {
    free(f);
    return NULL;
  }
  f->loop = loop;
  f->cfg = cfg;
  f->done = done;
  f->ctx = ctx;
  f->nfc = cfg->nfilters;
  f->spool_fd = -1;
  f->bol = 1;
  f->hst = 1;
  f->inj_bol = 1;
  sd_timer_init(&f->fire, fire_cb);
  sd_timer_init(&f->rq_fire, rq_fire_cb);
  for (size_t i = 0; i < f->nfc; i++) {
    f->fc[i].f = f;
    f->fc[i].fd = -1;
    f->fc[i].cfg = &cfg->filters[i];
  }
  return f;
}

void sd_filters_free(sd_filters *f) {
  if (f == NULL)
    return;
  message_clear(f);
  free(f->fc);
  free(f);
}

/* "<addr> params" of a MAIL FROM: or RCPT TO: line. */
static void split_path(const uint8_t *p, size_t n, char **addr, char **params) {
  *addr = *params = NULL;
  const uint8_t *colon = memchr(p, ':', n);
  if (colon == NULL)
    return;
  size_t i = (size_t)(colon - p) + 1;
  while (i < n && p[i] == ' ')
    i++;
  size_t a0 = i, a1;
  if (i < n && p[i] == '<') {
    a0 = i + 1;
    const uint8_t *gt = memchr(p + a0, '>', n - a0);
    a1 = gt ? (size_t)(gt - p) : n;
    i = gt ? a1 + 1 : n;
  } else {
    while (i < n && p[i] != ' ')
      i++;
    a1 = i;
  }
  while (i < n && p[i] == ' ')
    i++;
  *addr = memdup0(p + a0, a1 - a0);
  *params = memdup0(p + i, n - i);
}

void sd_filters_tap(sd_filters *f, sl_filter_item item, const uint8_t *p,
                    size_t n) {
  switch (item) {
  case SL_FI_MAIL:
    message_clear(f);
    f->active = 1;
    split_path(p, n, &f->mail_addr, &f->mail_params);
    break;
  case SL_FI_RCPT: {
    if (!f->active || f->nrcpts >= RCPTS_MAX)
      break;
    rcpt *nr = realloc(f->rcpts, (f->nrcpts + 1) * sizeof *nr);
    if (nr == NULL)
      break;
    f->rcpts = nr;
    split_path(p, n, &nr[f->nrcpts].addr, &nr[f->nrcpts].params);
    nr[f->nrcpts].state = 0;
    f->nrcpts++;
    break;
  }
  case SL_FI_RCPT_REPLY:
    for (size_t i = 0; i < f->nrcpts; i++)
      if (f->rcpts[i].state == 0) {
        f->rcpts[i].state = n / 100 == 2 ? 1 : -1;
        break;
      }
    break;
  case SL_FI_BODY:
    if (!f->active || f->ended)
      break;
    if (f->cfg->filter_mode_spool)
      f->holding = 1;
    spool_unstuff(f, p, n);
    if (!f->body_started) {
      /* the recipients are all answered (the upstream's 354 came after
         them): every filter not yet connected starts now */
      f->body_started = 1;
      for (size_t i = 0; i < f->nfc; i++)
        if (f->fc[i].state == FC_IDLE)
          fc_start(&f->fc[i]);
    }
    /* each filter takes what it can of the new bytes; the rest waits in
       the spool (no filter stops the client) */
    for (size_t i = 0; i < f->nfc; i++)
      if (f->fc[i].state == FC_RUN)
        fc_pump(&f->fc[i]);
    break;
  case SL_FI_ABORT:
    message_clear(f);
    break;
  }
}

int sd_filters_holding(const sd_filters *f) { return f && f->holding; }

void sd_filters_session(sd_filters *f, const sl_addr *client,
                        const char *client_name, const char *helo,
                        const char *session_id) {
  if (!f->active)
    return;
  snprintf(f->session_id, sizeof f->session_id, "%s",
           session_id ? session_id : "");
  f->client = *client;
  if (sl_addr_format(client, f->client_ip, sizeof f->client_ip) < 0)
    f->client_ip[0] = '\0';
  free(f->client_name);
  free(f->helo);
  f->client_name = client_name ? strdup(client_name) : NULL;
  f->helo = helo ? strdup(helo) : NULL;
  /* milters hear the envelope as it happens: connect, HELO, MAIL now */
  for (size_t i = 0; i < f->nfc; i++) {
    fconn *c = &f->fc[i];
    if (c->cfg->kind != SL_FILTER_MILTER || c->state != FC_IDLE)
      continue;
    c->live = 1;
    fc_start(c);
    if (c->state == FC_RUN)
      fc_pump(c);
  }
}

/* The answer of one milter to the RCPT asked (a refusal: its code and
   text, re-framed as a 4xx/5xx line without CR/LF). */
static void rq_set(fconn *c, sl_verdict v, const uint8_t *text, size_t len) {
  c->rq = RQ_DONE;
  c->rq_code = 0;
  c->rq_text[0] = '\0';
  if (v != SL_VERDICT_REJECT && v != SL_VERDICT_TEMPFAIL)
    return;
  if (c->state != FC_DONE) /* a finished one is logged already */
    log_entry(c->f, "%s:rcpt-%s", c->cfg->name, sl_verdict_name(v));
  if (len == 0) {
    /* Postfix's words for a milter's bare reject or tempfail at RCPT */
    const char *d = v == SL_VERDICT_REJECT
                        ? "5.7.1 Command rejected"
                        : "4.7.1 Service unavailable - try again later";
    c->rq_code = v == SL_VERDICT_REJECT ? 550 : 451;
    snprintf(c->rq_text, sizeof c->rq_text, "%s", d);
    return;
  }
  uint8_t line[SL_FILTER_REPLY_MAX];
  int n = sl_filter_reply(line, v, text, len);
  if (n < 6) {
    c->rq_code = v == SL_VERDICT_REJECT ? 550 : 451;
    return;
  }
  c->rq_code = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
                          (line[2] - '0'));
  size_t tl = (size_t)n - 4 - 2; /* after "DDD ", before CRLF */
  if (tl >= sizeof c->rq_text)
    tl = sizeof c->rq_text - 1;
  memcpy(c->rq_text, line + 4, tl);
  c->rq_text[tl] = '\0';
}

/* Every milter has answered the open question: the combined answer (any
   reject wins, then any tempfail), to the caller of sd_filters_rcpt or its
   callback.  1 if answered (code, text set). */
static int rq_collect(sd_filters *f, uint16_t *code, char *text) {
  if (!f->rq_open)
    return 0;
  const fconn *best = NULL;
  for (size_t i = 0; i < f->nfc; i++) {
    const fconn *c = &f->fc[i];
    if (c->cfg->kind != SL_FILTER_MILTER || c->rq == RQ_NONE)
      continue;
    if (c->rq != RQ_DONE)
      return 0;
    if (c->rq_code &&
        (best == NULL || (c->rq_code / 100 == 5 && best->rq_code / 100 != 5)))
      best = c;
  }
  *code = best ? best->rq_code : 0;
  snprintf(text, SL_CHECK_TEXT_MAX, "%s", best ? best->rq_text : "");
  f->rq_open = 0;
  for (size_t i = 0; i < f->nfc; i++)
    f->fc[i].rq = RQ_NONE;
  return 1;
}

/* Called when a milter's answer to the open question is in: the answer
   goes out from a timer, never from inside a filter's I/O (the session may
   ask the next RCPT at once). */
static void rq_check(sd_filters *f) {
  if (f->rq_sync || !f->rq_open)
    return;
  sd_timer_set(f->loop, &f->rq_fire, now_ns(f));
}

static void rq_fire_cb(sd_timer *t) {
  sd_filters *f =
      (sd_filters *)(void *)((char *)t - offsetof(sd_filters, rq_fire));
  uint16_t code;
  char text[SL_CHECK_TEXT_MAX];
  if (rq_collect(f, &code, text))
    f->rq_cb(f->rq_ctx, code, text);
}

/* A finished milter answers an open question with its verdict: a reject
   or tempfail at connect, HELO or MAIL (or a failure's default action)
   refuses every recipient, as Postfix then refuses the transaction. */
static void rq_from_verdict(fconn *c) {
  if (c->rq == RQ_WANT || c->rq == RQ_SENT) {
    rq_set(c, c->verdict, (const uint8_t *)c->text, c->text_len);
    rq_check(c->f);
  }
}

int sd_filters_rcpt(sd_filters *f, const char *sender, const char *addr,
                    sd_filters_rcpt_fn cb, void *ctx, uint16_t *code,
                    char *text) {
  *code = 0;
  text[0] = '\0';
  if (f == NULL || !f->active || f->body_started)
    return 1;
  /* a transaction the relay did not tap (filter_skip after an AUTH that
     followed an abandoned filtered one) is not the milters' */
  const char *mail = f->mail_addr ? f->mail_addr : "";
  /* the relay cuts the sender at half its small buffer, the session at
     SL_CHECK_TEXT_MAX: a sender that long is compared as a prefix */
  size_t cut = f->cfg->limits.small_buffer_size / 2 - 1;
  if (cut > SL_CHECK_TEXT_MAX - 1)
    cut = SL_CHECK_TEXT_MAX - 1;
  size_t sl = strlen(sender);
  if (sl > strlen(mail) || memcmp(sender, mail, sl) != 0 ||
      (sl < cut && mail[sl] != '\0'))
    return 1;
  int any = 0;
  for (size_t i = 0; i < f->nfc; i++)
    if (f->fc[i].cfg->kind == SL_FILTER_MILTER && f->fc[i].live)
      any = 1;
  if (!any)
    return 1;
  free(f->rq_addr);
  if ((f->rq_addr = strdup(addr)) == NULL)
    return 1; /* no memory: the recipient goes on unasked */
  f->rq_cb = cb;
  f->rq_ctx = ctx;
  f->rq_open = 1;
  f->rq_sync = 1;
  for (size_t i = 0; i < f->nfc; i++) {
    fconn *c = &f->fc[i];
    if (c->cfg->kind != SL_FILTER_MILTER || !c->live)
      continue;
    c->rq = RQ_WANT;
    if (c->state == FC_DONE)
      rq_from_verdict(c);
    else if (c->state == FC_RUN)
      fc_pump(c);
  }
  f->rq_sync = 0;
  return rq_collect(f, code, text);
}

void sd_filters_rcpt_cancel(sd_filters *f) {
  if (f == NULL)
    return;
  f->rq_open = 0;
  sd_timer_stop(f->loop, &f->rq_fire);
}

const char *sd_filters_log(const sd_filters *f) { return f ? f->log : ""; }

/* ---- headers
 * ------------------------------------------------------------------ */

/* Reads the header section from the spool and indexes its fields. */
static void scan_headers(sd_filters *f) {
  size_t n = f->size < HDR_SCAN_MAX ? (size_t)f->size : HDR_SCAN_MAX;
  f->hbuf = malloc(n ? n : 1);
  f->hdrs = calloc(HDR_MAX, sizeof *f->hdrs);
  if (f->hbuf == NULL || f->hdrs == NULL ||
      spool_get(f, 0, f->hbuf, n) != (long)n) {
    f->nhdrs = 0;
    f->body_off = 0;
    return;
  }
  f->hbuf_len = n;
  size_t i = 0;
  f->body_off = 0;
  while (i < n) {
    if (i + 1 < n && f->hbuf[i] == '\r' && f->hbuf[i + 1] == '\n') {
      f->body_off = i + 2; /* the empty line */
      return;
    }
    /* one field: up to a CRLF not followed by a blank */
    size_t s = i;
    const uint8_t *colon = NULL;
    for (; i < n; i++) {
      if (!colon && f->hbuf[i] == ':')
        colon = f->hbuf + i;
      if (f->hbuf[i] == '\n' &&
          (i + 1 >= n || (f->hbuf[i + 1] != ' ' && f->hbuf[i + 1] != '\t'))) {
        i++;
        break;
      }
    }
    if (colon == NULL || f->nhdrs == HDR_MAX || colon == f->hbuf + s) {
      /* not a header section after all: the whole message is body */
      f->nhdrs = 0;
      f->body_off = 0;
      return;
    }
    hdr *h = &f->hdrs[f->nhdrs++];
    h->off = s;
    h->len = i - s;
    h->name_len = (size_t)(colon - (f->hbuf + s));
    h->value_off = (size_t)(colon - f->hbuf) + 1;
    size_t end = s + h->len;
    if (end >= 2 && f->hbuf[end - 1] == '\n' && f->hbuf[end - 2] == '\r')
      end -= 2;
    h->value_len = end > h->value_off ? end - h->value_off : 0;
  }
  /* headers only, no empty line (or past the scan bound): no body */
  f->body_off = i;
}

/* The header section is in the spool (its empty line came, the scan
   bound is reached, or the message ended): indexed once.  1 if so. */
static int headers_ready(sd_filters *f) {
  if (f->hdr_scanned)
    return 1;
  if (!f->hdr_end && f->size < HDR_SCAN_MAX && !f->ended)
    return 0;
  scan_headers(f);
  f->hdr_scanned = 1;
  return 1;
}

static void add_hop(sd_filters *f, int op, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen, int has_value,
                    long index) {
  if (f->nhops == HOPS_MAX)
    return;
  sl_bytes bn = {name, nlen}, bv = {value, vlen};
  if (has_value && sl_filter_header_check(bn, bv) != SL_OK) {
    sd_log(SD_LOG_WARN, "filter: header change %.*s refused (malformed)",
           (int)(nlen > 64 ? 64 : nlen), (const char *)name);
    return;
  }
  hop *h = &f->hops[f->nhops];
  h->op = op;
  h->name = memdup0(name, nlen);
  h->value = has_value ? memdup0(value, vlen) : NULL;
  h->index = index;
  if (h->name == NULL || (has_value && h->value == NULL)) {
    free(h->name);
    free(h->value);
    return;
  }
  f->nhops++;
}

/* ---- filter I/O
 * ------------------------------------------------------------------ */

static void fc_io(sd_handler *h, uint32_t ev);
static void fc_timer(sd_timer *t);
static void fc_pump(fconn *c);

static int out_room(fconn *c, size_t n) {
  if (c->out_off == c->out_len)
    c->out_off = c->out_len = 0;
  if (c->out_len + n <= c->out_cap)
    return 0;
  size_t cap = c->out_cap ? c->out_cap : 4096;
  while (cap < c->out_len + n)
    cap *= 2;
  uint8_t *o = realloc(c->out, cap);
  if (o == NULL)
    return -1;
  c->out = o;
  c->out_cap = cap;
  return 0;
}

static void fc_finish(fconn *c, sl_verdict verdict, const char *fail,
                      const uint8_t *text, size_t len);

/* One entry of the session log's filters field, outside a message's own
   (a milter's verdict at connect, HELO, MAIL or one RCPT). */
static void log_entry(sd_filters *f, const char *fmt, ...) {
  size_t used = strlen(f->log);
  if (used + 200 >= sizeof f->log)
    return;
  if (used)
    used += (size_t)snprintf(f->log + used, sizeof f->log - used, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->log + used, sizeof f->log - used, fmt, ap);
  va_end(ap);
}

static void fc_fail(fconn *c, const char *why) {
  sl_verdict v = c->f->cfg->filter_default_action == SL_FILTER_ACT_ACCEPT
                     ? SL_VERDICT_ACCEPT
                 : c->f->cfg->filter_default_action == SL_FILTER_ACT_REJECT
                     ? SL_VERDICT_REJECT
                     : SL_VERDICT_TEMPFAIL;
  const char *t = v == SL_VERDICT_REJECT
                      ? "550 5.7.1 Service unavailable - content filter failed"
                      : "451 4.7.1 Service unavailable - try again later";
  fc_finish(c, v, why, (const uint8_t *)t, strlen(t));
}

static void check_all_done(sd_filters *f) {
  if (f->ndone == f->nfc)
    sd_timer_set(f->loop, &f->fire, now_ns(f));
}

static void fc_finish(fconn *c, sl_verdict verdict, const char *fail,
                      const uint8_t *text, size_t len) {
  if (c->state == FC_DONE)
    return;
  sd_filters *f = c->f;
  /* a milter is told the conversation is over; others just close */
  if (c->fd >= 0 && c->cfg->kind == SL_FILTER_MILTER && !fail) {
    uint8_t q[SL_MILTER_HEADER_LEN];
    if (sl_milter_put_simple(q, sizeof q, SL_MILTER_CMD_QUIT) > 0)
      (void)!send(c->fd, q, sizeof q, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  /* text may point into this connection's buffers: copied first */
  free(c->text);
  c->text = len ? memdup0(text, len) : NULL;
  c->text_len = c->text ? len : 0;
  fc_close(c);
  c->state = FC_DONE;
  c->verdict = verdict;
  c->fail = fail;
  /* the latency metric is the wait the filter adds after the end of data
     (0 for a verdict before it) */
  uint64_t from = f->t_end > c->start ? f->t_end : c->start;
  uint64_t us = f->ended ? (now_ns(f) - from) / 1000 : 0;
  size_t idx = (size_t)(c - f->fc);
  sd_filter_observe(idx, fail ? -1 : (int)verdict, fail, us);
  if (fail)
    sd_log(SD_LOG_WARN, "filter %s failed (%s): counted as %s", c->cfg->name,
           fail, sl_verdict_name((sl_verdict)verdict));
  f->ndone++;
  if (!f->body_started && !f->ended) {
    /* decided on the envelope: no message line will name it */
    if (fail)
      log_entry(f, "%s:fail(%s)->%s", c->cfg->name, fail,
                sl_verdict_name(verdict));
    else
      log_entry(f, "%s:%s", c->cfg->name, sl_verdict_name(verdict));
  }
  rq_from_verdict(c);
  check_all_done(f);
}

static void fc_start(fconn *c) {
  sd_filters *f = c->f;
  c->start = now_ns(f);
  c->state = FC_CONNECTING;
  c->phase = 0;
  c->eof = 0;
  c->await = 0;
  c->item = 0;
  c->fail = NULL;
  c->h.cb = fc_io;
  sd_timer_init(&c->timer, fc_timer);
  sl_duration t = c->cfg->timeout ? c->cfg->timeout : f->cfg->filter_timeout;
  sd_timer_set(f->loop, &c->timer, c->start + t);
  c->armed = 1;
  c->progress = 0;
  int fam = c->cfg->path ? AF_UNIX : c->cfg->addr.ss.ss_family;
  c->fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fc_fail(c, "socket");
    return;
  }
  int rc;
  if (c->cfg->path) {
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "%s", c->cfg->path);
    rc = connect(c->fd, (struct sockaddr *)&un, sizeof un);
  } else {
    rc = connect(c->fd, (const struct sockaddr *)&c->cfg->addr.ss,
                 c->cfg->addr.len);
  }
  if (!c->cfg->path) {
    /* milter and clamd talk in small packets, each awaited: no Nagle */
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (rc != 0 && errno != EINPROGRESS) {
    fc_fail(c, "refused");
    return;
  }
  if (sd_loop_add(f->loop, c->fd, EPOLLOUT, &c->h) != 0) {
    fc_fail(c, "epoll");
    return;
  }
  c->ev = EPOLLOUT;
  if (rc == 0)
    c->state = FC_RUN;
}

static void fc_timer(sd_timer *t) {
  fconn *c = (fconn *)(void *)((char *)t - offsetof(fconn, timer));
  fc_fail(c, "timeout");
}

/* Writes what is queued; 0 when all is out, 1 would block, -1 error. */
static int fc_flush(fconn *c) {
  while (c->out_off < c->out_len) {
    ssize_t w =
        send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 1;
    if (w <= 0)
      return -1;
    c->out_off += (size_t)w;
    c->progress = 1;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

/* Reads what is there into c->in; 0 ok (maybe nothing), -1 error. */
static int fc_read(fconn *c) {
  for (;;) {
    if (c->in_len == c->in_cap) {
      if (c->in_cap >= IN_MAX)
        return -1;
      size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
      uint8_t *b = realloc(c->in, cap);
      if (b == NULL)
        return -1;
      c->in = b;
      c->in_cap = cap;
    }
    ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (r < 0)
      return -1;
    if (r == 0) {
      c->eof = 1;
      return 0;
    }
    c->in_len += (size_t)r;
    c->progress = 1;
  }
}

static void in_consume(fconn *c, size_t n) {
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

/* Queues up to IO_CHUNK spool bytes [spool_off, spool_end) after a
   kind-specific frame header; 0 done, 1 queued, -1 error. */
static int queue_spool(fconn *c, size_t max, int clamd, int milter) {
  if (c->spool_off >= c->spool_end)
    return 0;
  uint64_t left = c->spool_end - c->spool_off;
  size_t n = left < max ? (size_t)left : max;
  int chunked = !clamd && !milter; /* rspamd: HTTP chunks */
  uint8_t ch[SL_RSPAMD_CHUNK_HEADER_MAX];
  size_t hl = clamd     ? SL_CLAMD_CHUNK_HEADER_LEN
              : milter  ? SL_MILTER_HEADER_LEN
              : chunked ? sl_rspamd_put_chunk_header(ch, n)
                        : 0;
  if (out_room(c, n + hl + 2) != 0)
    return -1;
  uint8_t *o = c->out + c->out_len;
  if (spool_get(c->f, c->spool_off, o + hl, n) != (long)n)
    return -1;
  if (chunked) {
    memcpy(o, ch, hl);
    o[hl + n] = '\r';
    o[hl + n + 1] = '\n';
    c->out_len += 2;
  }
  if (clamd)
    sl_clamd_put_chunk_header(o, (uint32_t)n);
  if (milter) {
    /* the packet is built in place: length, 'B', data */
    uint32_t l = (uint32_t)n + 1;
    o[0] = (uint8_t)(l >> 24);
    o[1] = (uint8_t)(l >> 16);
    o[2] = (uint8_t)(l >> 8);
    o[3] = (uint8_t)l;
    o[4] = SL_MILTER_CMD_BODY;
  }
  c->out_len += n + hl;
  c->spool_off += n;
  return 1;
}

/* ---- clamd
 * ------------------------------------------------------------------------ */

static void clamd_step(fconn *c) {
  if (c->phase == 0) {
    if (out_room(c, SL_CLAMD_COMMAND_LEN) != 0)
      return fc_fail(c, "memory");
    c->out_len += sl_clamd_put_command(c->out + c->out_len);
    c->spool_off = 0;
    c->phase = 1;
  }
  while (c->phase == 1) {
    int fl = fc_flush(c);
    if (fl < 0) {
      /* clamd closes a stream past StreamMaxLength after saying so */
      if (fc_read(c) == 0 && c->in_len)
        break;
      return fc_fail(c, "write");
    }
    if (fl > 0)
      break;
    c->spool_end = c->f->size;
    int q = queue_spool(c, IO_CHUNK, 1, 0);
    if (q < 0)
      return fc_fail(c, "spool");
    if (q == 0 && !c->f->ended)
      break; /* all there is so far: more with the next body bytes */
    if (q == 0) {
      if (out_room(c, SL_CLAMD_CHUNK_HEADER_LEN) != 0)
        return fc_fail(c, "memory");
      c->out_len += sl_clamd_put_end(c->out + c->out_len);
      c->phase = 2;
    }
  }
  if (c->phase == 2) {
    int fl = fc_flush(c);
    if (fl < 0)
      return fc_fail(c, "write");
    if (fl == 0)
      c->phase = 3;
  }
  /* clamd may answer early (a size limit) whatever was sent, and close at
     once: what it said before a reset still counts */
  if (fc_read(c) != 0 && c->in_len == 0)
    return fc_fail(c, "read");
  if (c->in_len) {
    sl_clamd_reply rep;
    long n = sl_clamd_parse_reply(c->in, c->in_len, &rep);
    if (n == SL_ERR_INCOMPLETE && !c->eof)
      return;
    if (n <= 0)
      return fc_fail(c, "garbage");
    if (rep.status == SL_CLAMD_SIZE_LIMIT)
      return fc_fail(c, "size_limit");
    if (rep.status == SL_CLAMD_ERROR)
      return fc_fail(c, "error");
    if (rep.status == SL_CLAMD_FOUND) {
      char t[256];
      int tl =
          snprintf(t, sizeof t, "550 5.7.1 Message rejected: virus found (%s)",
                   rep.name);
      return fc_finish(c, SL_VERDICT_REJECT, NULL, (const uint8_t *)t,
                       (size_t)tl);
    }
    return fc_finish(c, SL_VERDICT_ACCEPT, NULL, NULL, 0);
  }
  if (c->eof)
    fc_fail(c, "closed");
}

/* ---- rspamd
 * ----------------------------------------------------------------------- */

static void rspamd_result(fconn *c) {
  size_t blen;
  const uint8_t *body = sl_http_reader_body(c->http, &blen);
  if (sl_http_reader_status(c->http) != 200)
    return fc_fail(c, "http_status");
  uint8_t *scratch = malloc(blen ? blen : 1);
  sl_rspamd_result *res = malloc(sizeof *res);
  if (scratch == NULL || res == NULL) {
    free(scratch);
    free(res);
    return fc_fail(c, "memory");
  }
  if (sl_rspamd_parse_result(body, blen, scratch, blen ? blen : 1, res) !=
      SL_OK) {
    free(scratch);
    free(res);
    return fc_fail(c, "garbage");
  }
  sl_verdict v = sl_rspamd_verdict(res);
  if (res->action == SL_RSPAMD_ACTION_UNKNOWN) {
    free(scratch);
    free(res);
    return fc_fail(c, "unknown_action");
  }
  sd_filters *f = c->f;
  for (size_t i = 0; i < res->n_remove; i++)
    add_hop(f, HOP_REMOVE, res->remove[i].name.p, res->remove[i].name.len, NULL,
            0, 0, res->remove[i].order);
  for (size_t i = 0; i < res->n_add; i++)
    add_hop(f, HOP_ADD_TOP, res->add[i].name.p, res->add[i].name.len,
            res->add[i].value.p, res->add[i].value.len, 1, 0);
  if (res->action == SL_RSPAMD_REWRITE_SUBJECT && res->subject.len)
    add_hop(f, HOP_CHANGE, (const uint8_t *)"Subject", 7, res->subject.p,
            res->subject.len, 1, 1);
  fc_finish(c, v, NULL, res->smtp_message.p, res->smtp_message.len);
  free(scratch);
  free(res);
}

static void rspamd_step(fconn *c) {
  sd_filters *f = c->f;
  if (c->phase == 0) {
    sl_bytes *rc = calloc(f->nrcpts ? f->nrcpts : 1, sizeof *rc);
    if (rc == NULL)
      return fc_fail(c, "memory");
    size_t nr = 0;
    for (size_t i = 0; i < f->nrcpts; i++)
      if (f->rcpts[i].state == 1 && f->rcpts[i].addr)
        rc[nr++] = (sl_bytes){(const uint8_t *)f->rcpts[i].addr,
                              strlen(f->rcpts[i].addr)};
    sl_rspamd_request rq;
    memset(&rq, 0, sizeof rq);
    rq.chunked = 1; /* the message follows as it arrives */
    rq.ip = (sl_bytes){(const uint8_t *)f->client_ip, strlen(f->client_ip)};
    if (f->helo)
      rq.helo = (sl_bytes){(const uint8_t *)f->helo, strlen(f->helo)};
    if (f->client_name)
      rq.hostname =
          (sl_bytes){(const uint8_t *)f->client_name, strlen(f->client_name)};
    if (f->mail_addr)
      rq.from = (sl_bytes){(const uint8_t *)f->mail_addr, strlen(f->mail_addr)};
    rq.rcpts = rc;
    rq.nrcpts = nr;
    /* rspamd's history and log line name the message by it (qid), so an
       operator finds the session line of a rspamd verdict.  No User:
       sluice relays AUTH without decoding the SASL exchange, so it never
       knows the name (README). */
    rq.queue_id =
        (sl_bytes){(const uint8_t *)f->session_id, strlen(f->session_id)};
    size_t need = 4096 + 1100 * (nr + 8);
    long hl = out_room(c, need) == 0
                  ? sl_rspamd_request_head(c->out + c->out_len, need, &rq)
                  : SL_ERR_NOBUF;
    free(rc);
    if (hl < 0)
      return fc_fail(c, "request");
    c->out_len += (size_t)hl;
    c->spool_off = 0;
    c->http = malloc(sizeof *c->http);
    c->hbody = malloc(IN_MAX);
    if (c->http == NULL || c->hbody == NULL)
      return fc_fail(c, "memory");
    sl_http_reader_init(c->http, c->hbody, IN_MAX);
    c->phase = 1;
  }
  while (c->phase == 1) {
    int fl = fc_flush(c);
    if (fl < 0)
      return fc_fail(c, "write");
    if (fl > 0)
      break;
    c->spool_end = f->size;
    int q = queue_spool(c, IO_CHUNK, 0, 0);
    if (q < 0)
      return fc_fail(c, "spool");
    if (q == 0 && !f->ended)
      break; /* all there is so far */
    if (q == 0) {
      size_t el = sizeof SL_RSPAMD_CHUNK_END - 1;
      if (out_room(c, el) != 0)
        return fc_fail(c, "memory");
      memcpy(c->out + c->out_len, SL_RSPAMD_CHUNK_END, el);
      c->out_len += el;
      c->phase = 2;
    }
  }
  if (c->phase == 2 && fc_flush(c) < 0)
    return fc_fail(c, "write");
  if (fc_read(c) != 0)
    return fc_fail(c, "read");
  if (c->in_len) {
    size_t used = 0;
    int rc = sl_http_reader_feed(c->http, c->in, c->in_len, &used);
    in_consume(c, used);
    if (rc == SL_OK)
      return rspamd_result(c);
    if (rc != SL_ERR_INCOMPLETE)
      return fc_fail(c, "garbage");
  }
  if (c->eof) {
    if (sl_http_reader_eof(c->http) == SL_OK)
      return rspamd_result(c);
    fc_fail(c, "closed");
  }
}

/* ---- milter
 * ------------------------------------------------------------------------ */

enum {
  MP_OPTNEG,
  MP_CONNECT,
  MP_HELO,
  MP_MAIL,
  MP_RCPT,
  MP_DATA,
  MP_HEADER,
  MP_EOH,
  MP_BODY,
  MP_EOB,
  MP_EOB_WAIT
};

#define MILTER_OFFER_ACTIONS                                                   \
  (SL_MILTER_ACT_ADDHDRS | SL_MILTER_ACT_CHGHDRS | SL_MILTER_ACT_QUARANTINE |  \
   SL_MILTER_ACT_SETSYMLIST)

/* Splits a params string into sl_bytes words (at most max). */
static size_t words(const char *s, sl_bytes *w, size_t max) {
  size_t n = 0;
  while (s && *s && n < max) {
    while (*s == ' ')
      s++;
    const char *e = s;
    while (*e && *e != ' ')
      e++;
    if (e > s)
      w[n++] = (sl_bytes){(const uint8_t *)s, (size_t)(e - s)};
    s = e;
  }
  return n;
}

/* Queues the next command the filter takes; sets c->await when it
   answers.  Returns 0 queued or nothing left to queue, -1 error. */
static int milter_next(fconn *c) {
  sd_filters *f = c->f;
  for (;;) {
    uint8_t cmd = 0;
    long n = 0;
    sl_bytes w[16];
    size_t need = 4096;
    switch (c->phase) {
    case MP_CONNECT:
      cmd = SL_MILTER_CMD_CONNECT;
      break;
    case MP_HELO:
      cmd = SL_MILTER_CMD_HELO;
      break;
    case MP_MAIL:
      cmd = SL_MILTER_CMD_MAIL;
      break;
    case MP_RCPT:
      if (c->live) {
        /* one RCPT at a time, as the relay asks; DATA with the body */
        if (c->rq == RQ_WANT) {
          cmd = SL_MILTER_CMD_RCPT;
          break;
        }
        if (c->rq == RQ_SENT || (!f->body_started && !f->ended))
          return 0;
        c->phase = MP_DATA;
        continue;
      }
      while (c->item < f->nrcpts && f->rcpts[c->item].state != 1)
        c->item++;
      if (c->item >= f->nrcpts) {
        c->phase = MP_DATA;
        continue;
      }
      cmd = SL_MILTER_CMD_RCPT;
      break;
    case MP_DATA:
      cmd = SL_MILTER_CMD_DATA;
      break;
    case MP_HEADER:
      if (!headers_ready(f))
        return 0; /* the header section is still arriving */
      if (c->item >= f->nhdrs) {
        c->phase = MP_EOH;
        continue;
      }
      cmd = SL_MILTER_CMD_HEADER;
      need = f->hdrs[c->item].len + 64;
      break;
    case MP_EOH:
      cmd = SL_MILTER_CMD_EOH;
      break;
    case MP_BODY:
      c->spool_end = f->size;
      if (!sl_milter_sends(&c->ms, SL_MILTER_CMD_BODY) || c->skip_body ||
          c->spool_off >= c->spool_end) {
        if (!f->ended)
          return 0; /* more body to come */
        c->phase = MP_EOB;
        continue;
      }
      /* whole chunks while the body streams: the milter answers each one,
         and a round trip per small piece would leave it behind the client */
      if (!f->ended && c->spool_end - c->spool_off < SL_MILTER_CHUNK_MAX &&
          sl_milter_expects_reply(&c->ms, SL_MILTER_CMD_BODY))
        return 0;
      if (queue_spool(c, SL_MILTER_CHUNK_MAX, 0, 1) < 0)
        return -1;
      if (sl_milter_expects_reply(&c->ms, SL_MILTER_CMD_BODY))
        c->await = SL_MILTER_CMD_BODY;
      return 0;
    case MP_EOB:
      cmd = SL_MILTER_CMD_BODYEOB;
      break;
    default:
      return 0;
    }
    if (cmd == SL_MILTER_CMD_RCPT && c->live && !sl_milter_sends(&c->ms, cmd)) {
      rq_set(c, SL_VERDICT_ACCEPT, NULL, 0); /* not asked: passes */
      rq_check(f);
      continue;
    }
    if (!sl_milter_sends(&c->ms, cmd) && cmd != SL_MILTER_CMD_BODYEOB) {
      /* the filter opted out of this event: the next phase */
      c->phase = c->phase == MP_RCPT     ? MP_DATA
                 : c->phase == MP_HEADER ? MP_EOH
                                         : c->phase + 1;
      c->item = 0;
      if (c->phase == MP_BODY) {
        c->spool_off = f->body_off;
        c->spool_end = f->size;
      }
      continue;
    }
    if (out_room(c, need) != 0)
      return -1;
    uint8_t *o = c->out + c->out_len;
    switch (cmd) {
    case SL_MILTER_CMD_CONNECT: {
      sl_milter_macro m[2] = {
          {{(const uint8_t *)"j", 1},
           {(const uint8_t *)f->cfg->hostname, strlen(f->cfg->hostname)}},
          {{(const uint8_t *)"{daemon_name}", 13},
           {(const uint8_t *)"sluiced", 7}}};
      long ml = sl_milter_put_macro(o, need, cmd, m, 2);
      if (ml < 0)
        return -1;
      char host[300];
      if (f->client_name)
        snprintf(host, sizeof host, "%s", f->client_name);
      else
        snprintf(host, sizeof host, "[%s]", f->client_ip);
      n = sl_milter_put_connect(o + ml, need - (size_t)ml,
                                (sl_bytes){(const uint8_t *)host, strlen(host)},
                                &f->client);
      if (n >= 0)
        n += ml;
      break;
    }
    case SL_MILTER_CMD_HELO: {
      const char *h = f->helo ? f->helo : "";
      n = sl_milter_put_helo(o, need,
                             (sl_bytes){(const uint8_t *)h, strlen(h)});
      break;
    }
    case SL_MILTER_CMD_MAIL: {
      size_t nw = words(f->mail_params, w, 16);
      const char *a = f->mail_addr ? f->mail_addr : "";
      n = sl_milter_put_mail(o, need, (sl_bytes){(const uint8_t *)a, strlen(a)},
                             w, nw);
      break;
    }
    case SL_MILTER_CMD_RCPT: {
      if (c->live) {
        const char *a = f->rq_addr ? f->rq_addr : "";
        n = sl_milter_put_rcpt(o, need,
                               (sl_bytes){(const uint8_t *)a, strlen(a)}, w, 0);
        break;
      }
      rcpt *r = &f->rcpts[c->item];
      size_t nw = words(r->params, w, 16);
      const char *a = r->addr ? r->addr : "";
      n = sl_milter_put_rcpt(o, need, (sl_bytes){(const uint8_t *)a, strlen(a)},
                             w, nw);
      break;
    }
    case SL_MILTER_CMD_HEADER: {
      hdr *h = &f->hdrs[c->item];
      const uint8_t *v = f->hbuf + h->value_off;
      size_t vl = h->value_len;
      if (!(c->ms.protocol & SL_MILTER_P_HDR_LEADSPC) && vl && v[0] == ' ')
        v++, vl--;
      /* folded lines go to the filter with LF line breaks, as Postfix
         sends them */
      uint8_t *tmp = malloc(vl ? vl : 1);
      if (tmp == NULL)
        return -1;
      size_t tl = 0;
      for (size_t i = 0; i < vl; i++)
        if (!(v[i] == '\r' && i + 1 < vl && v[i + 1] == '\n'))
          tmp[tl++] = v[i];
      n = sl_milter_put_header(o, need,
                               (sl_bytes){f->hbuf + h->off, h->name_len},
                               (sl_bytes){tmp, tl});
      free(tmp);
      break;
    }
    default: {
      long ml = 0;
      if (cmd == SL_MILTER_CMD_DATA || cmd == SL_MILTER_CMD_BODYEOB) {
        /* the queue id, as Postfix gives it ("i"): rspamd's milter names
           the message by it (X-Rspamd-Queue-Id) */
        char qid[32];
        snprintf(qid, sizeof qid, "%08X%06X", f->id,
                 (unsigned)(f->size & 0xffffff));
        sl_milter_macro m = {{(const uint8_t *)"i", 1},
                             {(const uint8_t *)qid, strlen(qid)}};
        ml = sl_milter_put_macro(o, need, cmd, &m, 1);
        if (ml < 0)
          return -1;
      }
      n = sl_milter_put_simple(o + ml, need - (size_t)ml, cmd);
      if (n >= 0)
        n += ml;
      break;
    }
    }
    if (n < 0)
      return -1;
    c->out_len += (size_t)n;
    if (sl_milter_expects_reply(&c->ms, cmd))
      c->await = cmd;
    if (cmd == SL_MILTER_CMD_RCPT && c->live) {
      c->rq = RQ_SENT;
      if (!c->await) {
        rq_set(c, SL_VERDICT_ACCEPT, NULL, 0); /* no reply wanted */
        rq_check(f);
      }
      return 0;
    }
    /* the phase after this command */
    if (c->phase == MP_RCPT || c->phase == MP_HEADER) {
      c->item++;
    } else {
      c->phase++;
      if (c->phase == MP_RCPT || c->phase == MP_HEADER)
        c->item = 0;
      if (c->phase == MP_BODY) {
        c->spool_off = f->body_off;
        c->spool_end = f->size;
      }
    }
    return 0;
  }
}

/* A live milter's reply to a RCPT: the recipient's answer.  1 if taken;
   0 for a reply that ends the whole conversation (accept, discard, ...),
   which fc_finish turns into the answer. */
static int milter_rcpt_reply(fconn *c, const sl_milter_reply *rp) {
  switch (rp->kind) {
  case SL_MILTER_CONTINUE:
    rq_set(c, SL_VERDICT_ACCEPT, NULL, 0);
    break;
  case SL_MILTER_REJECT:
    rq_set(c, SL_VERDICT_REJECT, NULL, 0);
    break;
  case SL_MILTER_TEMPFAIL:
    rq_set(c, SL_VERDICT_TEMPFAIL, NULL, 0);
    break;
  case SL_MILTER_REPLYCODE:
    rq_set(c, rp->verdict, rp->text.p, rp->text.len);
    break;
  default:
    return 0;
  }
  c->await = 0;
  rq_check(c->f);
  return 1;
}

/* One packet from the filter.  Returns 1 to go on, 0 when finished. */
static int milter_packet(fconn *c, uint8_t cmd, const uint8_t *data,
                         size_t len) {
  sl_milter_reply rp;
  const char *why = NULL;
  if (sl_milter_decode(cmd, data, len, &rp) != SL_OK) {
    fc_fail(c, "garbage");
    return 0;
  }
  if (c->phase == MP_OPTNEG + 1 && c->await == SL_MILTER_CMD_OPTNEG) {
    if (sl_milter_negotiate(MILTER_OFFER_ACTIONS, &rp, &c->ms, &why) != SL_OK) {
      sd_log(SD_LOG_ERR, "filter %s: milter negotiation: %s", c->cfg->name,
             why);
      fc_fail(c, "negotiation");
      return 0;
    }
    c->await = 0;
    return 1;
  }
  if (c->await == 0) {
    fc_fail(c, "unsolicited");
    return 0;
  }
  if (rp.kind == SL_MILTER_REPLBODY) {
    /* never offered: a milter that replaces bodies cannot be used */
    sd_log(SD_LOG_ERR,
           "filter %s: body replacement is not supported (configuration "
           "error: use this milter without it)",
           c->cfg->name);
    fc_fail(c, "replbody");
    return 0;
  }
  if (sl_milter_check_reply(&c->ms, c->await, &rp, &why) != SL_OK) {
    sd_log(SD_LOG_ERR, "filter %s: %s", c->cfg->name, why ? why : "bad reply");
    fc_fail(c, "garbage");
    return 0;
  }
  sd_filters *f = c->f;
  if (c->await == SL_MILTER_CMD_RCPT && c->live && milter_rcpt_reply(c, &rp))
    return 1;
  switch (rp.kind) {
  case SL_MILTER_CONTINUE:
    c->await = 0;
    if (c->phase == MP_EOB_WAIT) {
      fc_finish(c, SL_VERDICT_ACCEPT, NULL, NULL, 0);
      return 0;
    }
    return 1;
  case SL_MILTER_SKIP:
    c->await = 0;
    c->skip_body = 1;
    return 1;
  case SL_MILTER_PROGRESS: {
    sl_duration t = c->cfg->timeout ? c->cfg->timeout : f->cfg->filter_timeout;
    sd_timer_set(f->loop, &c->timer, now_ns(f) + t);
    return 1;
  }
  case SL_MILTER_ADDHEADER:
    add_hop(f, HOP_ADD_END, rp.name.p, rp.name.len, rp.value.p, rp.value.len, 1,
            0);
    return 1;
  case SL_MILTER_INSHEADER:
    add_hop(f, HOP_INSERT, rp.name.p, rp.name.len, rp.value.p, rp.value.len, 1,
            (long)rp.index);
    return 1;
  case SL_MILTER_CHGHEADER:
    add_hop(f, rp.value.len ? HOP_CHANGE : HOP_REMOVE, rp.name.p, rp.name.len,
            rp.value.p, rp.value.len, rp.value.len != 0,
            rp.index ? (long)rp.index : 1);
    return 1;
  case SL_MILTER_QUARANTINE:
  case SL_MILTER_ADDRCPT:
  case SL_MILTER_ADDRCPT_PAR:
  case SL_MILTER_DELRCPT:
  case SL_MILTER_CHGFROM:
    /* envelope changes were never offered; a quarantine is logged */
    sd_log(SD_LOG_INFO, "filter %s: modification '%c' ignored", c->cfg->name,
           rp.cmd);
    return 1;
  case SL_MILTER_REPLBODY:
    sd_log(SD_LOG_ERR,
           "filter %s: body replacement is not supported (configuration error)",
           c->cfg->name);
    fc_fail(c, "replbody");
    return 0;
  case SL_MILTER_ACCEPT:
    fc_finish(c, SL_VERDICT_ACCEPT, NULL, NULL, 0);
    return 0;
  case SL_MILTER_DISCARD:
    fc_finish(c, SL_VERDICT_DISCARD, NULL, NULL, 0);
    return 0;
  case SL_MILTER_REPLYCODE:
    fc_finish(c, rp.verdict, NULL, rp.text.p, rp.text.len);
    return 0;
  case SL_MILTER_REJECT:
    fc_finish(c, SL_VERDICT_REJECT, NULL, NULL, 0);
    return 0;
  default: /* TEMPFAIL, SHUTDOWN, CONN_FAIL */
    fc_finish(c, SL_VERDICT_TEMPFAIL, NULL, NULL, 0);
    return 0;
  }
}

static void milter_step(fconn *c) {
  if (c->phase == MP_OPTNEG) {
    c->mbuf = malloc(SL_MILTER_CHUNK_MAX + 1);
    if (c->mbuf == NULL || out_room(c, 64) != 0)
      return fc_fail(c, "memory");
    sl_milter_reader_init(&c->mr, c->mbuf, SL_MILTER_CHUNK_MAX + 1);
    long n = sl_milter_put_optneg(
        c->out + c->out_len, 64, SL_MILTER_VERSION, MILTER_OFFER_ACTIONS,
        SL_MILTER_P_ALL & ~(uint32_t)SL_MILTER_P_RCPT_REJ);
    if (n < 0)
      return fc_fail(c, "request");
    c->out_len += (size_t)n;
    c->await = SL_MILTER_CMD_OPTNEG;
    c->phase = MP_CONNECT;
  }
  for (int guard = 0; guard < 4096; guard++) {
    int fl = fc_flush(c);
    if (fl < 0)
      return fc_fail(c, "write");
    int idle = 0;
    if (fl == 0 && !c->await && c->phase < MP_EOB_WAIT) {
      size_t before = c->out_len;
      int phase = c->phase;
      uint8_t rq = c->rq;
      if (milter_next(c) != 0)
        return fc_fail(c, "request");
      if (c->state != FC_RUN)
        return;
      if (c->phase == MP_EOB_WAIT && !c->await)
        c->await = SL_MILTER_CMD_BODYEOB;
      if (c->out_len != before || c->phase != phase || c->await || c->rq != rq)
        continue;
      idle = 1; /* nothing to say until the client sends more */
    }
    if (fc_read(c) != 0)
      return fc_fail(c, "read");
    int more = 0;
    while (c->in_len) {
      size_t used = 0;
      int rc = sl_milter_reader_feed(&c->mr, c->in, c->in_len, &used);
      in_consume(c, used);
      if (rc == SL_ERR_INCOMPLETE)
        break;
      if (rc != SL_OK)
        return fc_fail(c, "garbage");
      const uint8_t *d;
      size_t dl;
      uint8_t cmd = sl_milter_reader_packet(&c->mr, &d, &dl);
      if (!milter_packet(c, cmd, d, dl))
        return;
      more = 1;
    }
    if (c->eof)
      return fc_fail(c, "closed");
    if (!more && (fl > 0 || c->await || idle))
      return; /* wait for the socket, or the client */
  }
}

/* ---- dispatch
 * ---------------------------------------------------------------------- */

/* Before the end of data a filter's timeout runs only while sluice waits
   on it (its answer, or room to write), from its last progress: a filter
   idle because the client is slow is not failing.  From the end of data
   on, the deadline set then stands. */
static void fc_arm(fconn *c) {
  sd_filters *f = c->f;
  if (f->ended)
    return;
  int waiting = c->await || c->out_off < c->out_len;
  if (!waiting) {
    if (c->armed)
      sd_timer_stop(f->loop, &c->timer);
    c->armed = 0;
  } else if (!c->armed || c->progress) {
    sl_duration t = c->cfg->timeout ? c->cfg->timeout : f->cfg->filter_timeout;
    sd_timer_set(f->loop, &c->timer, now_ns(f) + t);
    c->armed = 1;
  }
  c->progress = 0;
}

static void fc_pump(fconn *c) {
  if (c->state == FC_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err)
      return fc_fail(c, "refused");
    c->state = FC_RUN;
  }
  if (c->state != FC_RUN)
    return;
  switch (c->cfg->kind) {
  case SL_FILTER_CLAMD:
    clamd_step(c);
    break;
  case SL_FILTER_RSPAMD:
    rspamd_step(c);
    break;
  default:
    milter_step(c);
    break;
  }
  if (c->state != FC_RUN || c->fd < 0)
    return;
  fc_arm(c);
  uint32_t m = EPOLLIN | (c->out_off < c->out_len ? EPOLLOUT : 0);
  if (m != c->ev) {
    sd_loop_mod(c->f->loop, c->fd, m, &c->h);
    c->ev = m;
  }
}

static void fc_io(sd_handler *h, uint32_t ev) {
  fconn *c = (fconn *)(void *)h;
  (void)ev;
  if (c->fd < 0 || c->state == FC_DONE)
    return;
  fc_pump(c);
}

void sd_filters_end(sd_filters *f, uint32_t id) {
  f->ended = 1;
  f->t_end = now_ns(f);
  f->id = id;
  headers_ready(f);
  if (f->spool_err) {
    /* the filters cannot have the whole message: every one has failed */
    for (size_t i = 0; i < f->nfc; i++) {
      if (f->fc[i].state == FC_IDLE)
        f->fc[i].start = now_ns(f);
      fc_fail(&f->fc[i], "spool");
    }
    check_all_done(f);
    return;
  }
  for (size_t i = 0; i < f->nfc; i++) {
    fconn *c = &f->fc[i];
    if (c->state == FC_DONE)
      continue;
    if (c->state == FC_IDLE) {
      fc_start(c); /* a message without body bytes */
    } else {
      /* the final answer is due within the filter's timeout from now */
      sl_duration t =
          c->cfg->timeout ? c->cfg->timeout : f->cfg->filter_timeout;
      sd_timer_set(f->loop, &c->timer, now_ns(f) + t);
      c->armed = 1;
    }
    if (c->state == FC_RUN)
      fc_pump(c);
  }
  check_all_done(f);
}

/* The message's log entry: "name:verdict" per filter. */
static void log_message(sd_filters *f) {
  size_t used = strlen(f->log);
  if (used + 200 >= sizeof f->log)
    return;
  if (used)
    used += (size_t)snprintf(f->log + used, sizeof f->log - used, "; ");
  for (size_t i = 0; i < f->nfc && used < sizeof f->log; i++) {
    fconn *c = &f->fc[i];
    if (c->fail)
      used +=
          (size_t)snprintf(f->log + used, sizeof f->log - used,
                           "%s%s:fail(%s)->%s", i ? " " : "", c->cfg->name,
                           c->fail, sl_verdict_name((sl_verdict)c->verdict));
    else
      used += (size_t)snprintf(f->log + used, sizeof f->log - used, "%s%s:%s",
                               i ? " " : "", c->cfg->name,
                               sl_verdict_name((sl_verdict)c->verdict));
  }
}

static void fire_cb(sd_timer *t) {
  sd_filters *f =
      (sd_filters *)(void *)((char *)t - offsetof(sd_filters, fire));
  if (!f->ended || f->ndone != f->nfc)
    return;
  sl_verdict v[16];
  for (size_t i = 0; i < f->nfc; i++)
    v[i] = (sl_verdict)f->fc[i].verdict;
  sl_verdict_sum sum;
  sl_verdict_combine(v, f->nfc,
                     f->cfg->filter_discard_action == SL_FILTER_DISCARD_TAG
                         ? SL_DISCARD_AS_TAG
                         : SL_DISCARD_AS_REJECT,
                     &sum);
  log_message(f);
  const uint8_t *text = NULL;
  size_t len = 0;
  if (sum.decider < f->nfc) {
    text = (const uint8_t *)f->fc[sum.decider].text;
    len = f->fc[sum.decider].text_len;
  }
  int verdict = (int)sum.verdict;
  if (sum.discard_tagged) {
    f->discard_tag = 1;
    for (size_t i = 0; i < f->nfc; i++)
      if (f->fc[i].verdict == SL_VERDICT_DISCARD)
        f->discard_by = f->fc[i].cfg->name;
  }
  uint32_t id = f->id;
  if (verdict == SL_VERDICT_TEMPFAIL || verdict == SL_VERDICT_REJECT ||
      !f->cfg->filter_mode_spool) {
    if (verdict == SL_VERDICT_CHANGE && f->nhops)
      sd_log(SD_LOG_INFO,
             "filters: %zu header change(s) not made (stream mode)", f->nhops);
    f->holding = 0;
  }
  /* copy what the callback needs: it may start the next message */
  uint8_t copy[SL_FILTER_REPLY_MAX];
  if (len > sizeof copy)
    len = sizeof copy;
  if (len)
    memcpy(copy, text, len);
  f->done(f->ctx, id, verdict, len ? copy : NULL, len);
}

/* ---- spool mode: the changed message
 * ------------------------------------------------ */

static int name_is(const sd_filters *f, const hdr *h, const char *name) {
  return strlen(name) == h->name_len &&
         !strncasecmp((const char *)f->hbuf + h->off, name, h->name_len);
}

static int put_hdr(uint8_t **b, size_t *len, size_t *cap, const char *name,
                   const char *value) {
  size_t need = *len + SL_FILTER_HEADER_MAX;
  if (need > *cap) {
    uint8_t *nb = realloc(*b, need * 2);
    if (nb == NULL)
      return -1;
    *b = nb;
    *cap = need * 2;
  }
  long n = sl_filter_header_put(
      *b + *len, *cap - *len, (sl_bytes){(const uint8_t *)name, strlen(name)},
      (sl_bytes){(const uint8_t *)value, strlen(value)});
  if (n < 0)
    return 0; /* checked when taken: cannot happen */
  *len += (size_t)n;
  return 0;
}

static int put_raw(uint8_t **b, size_t *len, size_t *cap, const uint8_t *p,
                   size_t n) {
  if (*len + n > *cap) {
    size_t c2 = (*len + n) * 2;
    uint8_t *nb = realloc(*b, c2);
    if (nb == NULL)
      return -1;
    *b = nb;
    *cap = c2;
  }
  memcpy(*b + *len, p, n);
  *len += n;
  return 0;
}

/* The header section with every change made, in inj_head. */
static int build_head(sd_filters *f) {
  uint8_t *b = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  if (f->discard_tag)
    rc |= put_hdr(&b, &len, &cap, "X-Sluice-Filter-Discard",
                  f->discard_by ? f->discard_by : "yes");
  for (size_t i = 0; i < f->nhops; i++)
    if (f->hops[i].op == HOP_ADD_TOP)
      rc |= put_hdr(&b, &len, &cap, f->hops[i].name, f->hops[i].value);
  int applied[HOPS_MAX] = {0};
  /* per name, the occurrence number of each original field */
  for (size_t i = 0; i <= f->nhdrs; i++) {
    for (size_t k = 0; k < f->nhops; k++)
      if (f->hops[k].op == HOP_INSERT &&
          ((size_t)f->hops[k].index == i ||
           (i == f->nhdrs && (size_t)f->hops[k].index > i)))
        rc |= put_hdr(&b, &len, &cap, f->hops[k].name, f->hops[k].value);
    if (i == f->nhdrs)
      break;
    hdr *h = &f->hdrs[i];
    long nth = 1;
    for (size_t j = 0; j < i; j++)
      if (f->hdrs[j].name_len == h->name_len &&
          !strncasecmp((const char *)f->hbuf + f->hdrs[j].off,
                       (const char *)f->hbuf + h->off, h->name_len))
        nth++;
    const hop *act = NULL;
    for (size_t k = 0; k < f->nhops; k++) {
      const hop *o = &f->hops[k];
      if ((o->op == HOP_CHANGE || o->op == HOP_REMOVE) &&
          name_is(f, h, o->name) && (o->index == 0 || o->index == nth)) {
        act = o;
        applied[k] = 1;
      }
    }
    if (act == NULL)
      rc |= put_raw(&b, &len, &cap, f->hbuf + h->off, h->len);
    else if (act->op == HOP_CHANGE)
      rc |= put_hdr(&b, &len, &cap, act->name, act->value);
  }
  for (size_t i = 0; i < f->nhops; i++)
    if (f->hops[i].op == HOP_ADD_END ||
        /* smfi_chgheader: a change of a header that is not there adds it
           (sendmail's and Postfix's reading; rspamd's milter relies on it) */
        (f->hops[i].op == HOP_CHANGE && !applied[i]))
      rc |= put_hdr(&b, &len, &cap, f->hops[i].name, f->hops[i].value);
  if (rc) {
    free(b);
    return -1;
  }
  f->inj_head = b;
  f->inj_ready = 1;
  f->inj_head_len = len;
  f->inj_head_off = 0;
  /* the body from the original's empty line on (or the whole message
     when it had no header section) */
  f->inj_off =
      f->nhdrs ? f->hdrs[f->nhdrs - 1].off + f->hdrs[f->nhdrs - 1].len : 0;
  f->inj_bol = 1;
  return 0;
}

/* Dot-stuffs src into dst (room for 2 * n); returns the bytes written. */
static size_t stuff(int *bol, const uint8_t *src, size_t n, uint8_t *dst) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (*bol && src[i] == '.')
      dst[o++] = '.';
    dst[o++] = src[i];
    *bol = src[i] == '\n';
  }
  return o;
}

long sd_filters_inject(sd_filters *f, uint8_t *buf, size_t cap) {
  if (!f->inj_ready) {
    if (build_head(f) != 0)
      return -1;
  }
  size_t half = cap / 2;
  if (f->inj_head_off < f->inj_head_len) {
    size_t n = f->inj_head_len - f->inj_head_off;
    if (n > half)
      n = half;
    size_t o = stuff(&f->inj_bol, f->inj_head + f->inj_head_off, n, buf);
    f->inj_head_off += n;
    return (long)o;
  }
  if (f->inj_off >= f->size)
    return 0;
  uint8_t tmp[IO_CHUNK];
  size_t n = half < sizeof tmp ? half : sizeof tmp;
  long r = spool_get(f, f->inj_off, tmp, n);
  if (r < 0)
    return -1;
  f->inj_off += (uint64_t)r;
  return (long)stuff(&f->inj_bol, tmp, (size_t)r, buf);
}

void sd_filters_release(sd_filters *f) {
  if (f == NULL)
    return;
  char keep[LOG_MAX];
  memcpy(keep, f->log, sizeof keep);
  message_clear(f);
  memcpy(f->log, keep, sizeof keep);
}
