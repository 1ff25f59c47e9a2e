/* sp_client.c: the replayed client shared by sim and live; see
 * sp_client.h. */
#include "sp_client.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Grows in powers of two from 64 (sim reuses one client for every session;
 * the capacity decides which reply times are kept, see sp_client_anchor). */
static int ensure(uint64_t **p, size_t *cap, size_t n) {
  if (n <= *cap)
    return 0;
  size_t c = *cap ? *cap : 64;
  while (c < n)
    c *= 2;
  uint64_t *q = realloc(*p, c * sizeof *q);
  if (!q)
    return -1;
  *p = q;
  *cap = c;
  return 0;
}

double sp_client_draw_patience(const sp_patience *m, uint64_t seed,
                               const sp_script *s) {
  return sp_patience_draw(m, sp_rng_seed(seed, s->source, s->session),
                          s->gave_up ? s->wait_s : -1.0);
}

int sp_client_begin(sp_client *c, const sp_script *s, sp_result *res,
                    uint64_t t0, double scale) {
  c->s = s;
  c->res = res;
  c->scale = scale;
  c->t0 = c->last_tx = c->last_rx = t0;
  c->wi = 0;
  c->woff = c->csent = 0;
  c->units_sent = 0;
  c->rx = c->line_len = 0;
  c->rejected = 0;
  c->data_open = 0;
  c->stage = SL_STAGE_CONNECT;
  /* Last: a client without buffers still has a clock and a script (live
   * records it as a failed connection). */
  if (ensure(&c->reply_t, &c->reply_cap, s->nu + 2) ||
      ensure(&c->unit_t, &c->unit_cap, s->nu + 1))
    return -1;
  return 0;
}

void sp_client_free(sp_client *c) {
  free(c->reply_t);
  free(c->unit_t);
  c->reply_t = c->unit_t = NULL;
  c->reply_cap = c->unit_cap = 0;
}

/* A captured duration on the caller's clock.  Exact integers at scale 1:
 * sim's records must not move by a rounding. */
static uint64_t span(const sp_client *c, int64_t us) {
  if (c->scale == 1.0)
    return (uint64_t)us * 1000;
  double v = nearbyint((double)us * 1000.0 * c->scale);
  return v > 0 ? (uint64_t)v : 0;
}

static double secs(const sp_client *c, uint64_t ns) {
  return (double)ns / 1e9 / c->scale;
}

static sp_unit_kind unit_of_reply(const sp_client *c, uint32_t idx) {
  return idx == 0             ? SP_U_GREETING
         : idx - 1 < c->s->nu ? (sp_unit_kind)c->s->u[idx - 1].kind
                              : SP_U_OTHER;
}

/* live: the wait for this reply beyond the captured one.  The wait runs from
 * the later of the request going out and the previous reply (a pipelined
 * group's replies queue behind each other: counting each from its own
 * request would count one hold several times), and so does the captured
 * wait it is compared with.  A reply to a request not yet sent (a server
 * talking out of turn) has no wait. */
static void count_delay(sp_client *c, uint32_t idx, uint64_t t) {
  const sp_script *s = c->s;
  uint64_t prev = idx == 0                 ? c->t0
                  : idx - 1 < c->reply_cap ? c->reply_t[idx - 1]
                                           : t;
  uint64_t asked = idx == 0 ? c->t0
                   : idx - 1 < s->nu && idx - 1 < c->units_sent
                       ? c->unit_t[idx - 1]
                       : t;
  uint64_t from = asked > prev ? asked : prev;
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
  if (from > t)
    return;
  double extra = secs(c, t - from) - (cap > 0 ? cap : 0);
  if (extra > 0)
    c->res->delay_s += extra;
}

static void reply_done(sp_client *c, uint16_t code, uint64_t now) {
  uint32_t idx = c->rx;
  if (c->count_delay)
    count_delay(c, idx, now);
  c->rx++;
  if (idx < c->reply_cap)
    c->reply_t[idx] = now;
  sp_unit_kind k = unit_of_reply(c, idx);
  int cls = code / 100;
  int data_was_open = c->data_open;
  c->data_open = k == SP_U_DATA && cls == 3;
  if (cls == 2 || cls == 3) {
    sl_stage st = k == SP_U_GREETING ? SL_STAGE_GREETING
                  : k == SP_U_HELO   ? SL_STAGE_HELO
                  : k == SP_U_MAIL   ? SL_STAGE_MAIL
                  : k == SP_U_RCPT   ? SL_STAGE_RCPT
                  : k == SP_U_DATA   ? SL_STAGE_DATA
                                     : SL_STAGE_CONNECT;
    /* Replies are matched to the captured units by count, so after a
       refused DATA the captured message text goes out as commands and its
       reply can be a 2xx to something else: a server that takes a header
       line for a command says "221 ... Goodbye" and closes.  Only a
       message after a 354, never a 221, is a delivery. */
    if (cls == 2 && code != 221 &&
        ((k == SP_U_MESSAGE && data_was_open) || k == SP_U_BDAT)) {
      st = SL_STAGE_DELIVERED;
      if (!c->res->messages)
        c->res->deliver_s = secs(c, now - c->t0);
      c->res->messages++;
    }
    if (st > c->stage)
      c->stage = st;
  } else if ((cls == 5 &&
              (k == SP_U_GREETING || k == SP_U_MAIL || k == SP_U_RCPT ||
               k == SP_U_DATA || k == SP_U_MESSAGE || k == SP_U_BDAT)) ||
             (cls == 4 && k == SP_U_GREETING) || code == 421 || code == 521) {
    c->rejected = 1;
  }
}

static int digit(char ch) { return ch >= '0' && ch <= '9'; }

void sp_client_read(sp_client *c, const uint8_t *p, size_t n, uint64_t now) {
  c->res->bytes_server += n;
  c->last_rx = now;
  for (size_t i = 0; i < n; i++) {
    if (c->line_len < 4)
      c->line4[c->line_len] = (char)p[i];
    c->line_len++;
    if (p[i] != '\n')
      continue;
    const char *l = c->line4;
    uint32_t ll = c->line_len;
    c->line_len = 0;
    if (ll >= 4 && digit(l[0]) && digit(l[1]) && digit(l[2]) &&
        (l[3] == ' ' || l[3] == '\r' || l[3] == '\n'))
      reply_done(
          c, (uint16_t)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0')),
          now);
  }
}

int sp_client_waiting(const sp_client *c) {
  if (c->rx >= 1 + c->units_sent)
    return 0;
  return !(c->rx >= 1 && c->rx - 1 < c->s->nu &&
           c->s->u[c->rx - 1].kind == SP_U_QUIT);
}

sp_unit_kind sp_client_awaited(const sp_client *c) {
  return unit_of_reply(c, c->rx);
}

uint64_t sp_client_anchor(const sp_client *c, uint32_t k, uint64_t now) {
  if (k == 0)
    return c->t0;
  return k - 1 < c->reply_cap ? c->reply_t[k - 1] : now;
}

uint64_t sp_client_reply_base(const sp_client *c) {
  return c->rx == 0 ? c->t0 : c->unit_t[c->rx - 1 < c->s->nu ? c->rx - 1 : 0];
}

uint64_t sp_client_read_base(const sp_client *c) {
  return c->last_tx > c->last_rx ? c->last_tx : c->last_rx;
}

uint64_t sp_client_write_due(const sp_client *c, uint64_t now) {
  const sp_script *s = c->s;
  if (c->wi >= s->nw || c->rx < s->w[c->wi].after_replies)
    return SP_CLIENT_NEVER;
  if (c->woff)
    return now;
  const sp_cwrite *w = &s->w[c->wi];
  uint64_t a =
      sp_client_anchor(c, w->after_replies, now) + span(c, w->think_us);
  return a > now ? a : now;
}

const uint8_t *sp_client_write_bytes(const sp_client *c, size_t *len) {
  const sp_cwrite *w = &c->s->w[c->wi];
  *len = (size_t)(w->len - c->woff);
  return c->s->cdata + w->off + c->woff;
}

void sp_client_wrote(sp_client *c, uint64_t n, uint64_t now) {
  const sp_script *s = c->s;
  if (n) {
    c->woff += n;
    c->csent += n;
    c->res->bytes_client += n;
    c->last_tx = now;
    while (c->units_sent < s->nu && s->u[c->units_sent].end <= c->csent)
      c->unit_t[c->units_sent++] = now;
  }
  if (c->woff >= s->w[c->wi].len) {
    c->wi++;
    c->woff = 0;
  }
}

uint64_t sp_client_end_due(const sp_client *c, uint64_t now) {
  const sp_script *s = c->s;
  if (c->wi < s->nw || s->end == SP_SEND_SERVER || s->gave_up ||
      c->rx < s->end_after)
    return SP_CLIENT_NEVER;
  uint64_t a =
      sp_client_anchor(c, s->end_after, now) + span(c, s->end_think_us);
  return a > now ? a : now;
}

const char *sp_client_end_note(const sp_client *c) {
  switch (c->s->end) {
  case SP_SEND_FIN:
    return "client:fin";
  case SP_SEND_RST:
    return "client:rst";
  case SP_SEND_TLS:
    return "client:tls";
  case SP_SEND_GAP:
    return "client:capture-gap";
  default:
    return "client:capture-end";
  }
}

int sp_client_end_aborts(const sp_client *c) {
  return c->s->end != SP_SEND_FIN;
}

uint64_t sp_client_patience_due(const sp_client *c, double patience,
                                int clock_reply, uint64_t now) {
  if (isinf(patience) || !sp_client_waiting(c))
    return SP_CLIENT_NEVER;
  /* Rounded, not truncated: a patience equal to a wait in whole
   * nanoseconds must meet the tie rule, not expire 1 ns early. */
  double pat_ns = nearbyint(patience * 1e9 * c->scale);
  if (pat_ns < 0)
    return SP_CLIENT_NEVER;
  uint64_t pat = (uint64_t)pat_ns;
  uint64_t base =
      clock_reply ? sp_client_reply_base(c) : sp_client_read_base(c);
  uint64_t t = base + pat;
  return t < now ? now : t;
}

static void upd(double *m, double v) {
  if (v > *m)
    *m = v;
}

void sp_client_note_waits(sp_client *c, uint64_t now) {
  if (!sp_client_waiting(c))
    return;
  sp_result *r = c->res;
  sp_unit_kind k = sp_client_awaited(c);
  double rd = secs(c, now - sp_client_read_base(c));
  double rp = secs(c, now - sp_client_reply_base(c));
  upd(&r->w_read, rd);
  upd(&r->w_reply, rp);
  upd(&r->w_read_by[k], rd);
  upd(&r->w_reply_by[k], rp);
  upd(&r->w_session, secs(c, now - c->t0));
}

void sp_client_note_forever(sp_client *c) {
  if (!sp_client_waiting(c))
    return;
  sp_result *r = c->res;
  sp_unit_kind k = sp_client_awaited(c);
  r->w_read = r->w_reply = r->w_session = INFINITY;
  r->w_read_by[k] = r->w_reply_by[k] = INFINITY;
}

const char *sp_client_stage_name(const sp_client *c) {
  return sl_stage_name(c->stage);
}
