/* sp_sim.c: virtual-clock replay through the core; see sp_sim.h. */
#include "sp_sim.h"

#include "sp_client.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/bufpool.h"
#include "sluice/relay.h"

#define T0 ((sl_tstamp)SL_SEC) /* virtual time of the connection */
#define NEVER SL_TSTAMP_NONE
#define MAX_STEPS 2000000

static const char *const outcome_names[SP_OUT_N] = {
    "delivered", "rejected", "gave-up", "completed-without-mail", "error"};

const char *sp_outcome_name(sp_outcome o) {
  return (unsigned)o < SP_OUT_N ? outcome_names[o] : "error";
}

/* ---- the simulator ------------------------------------------------------ */

typedef struct upreply {
  sl_tstamp due;
  const uint8_t *p;
  size_t len, done;
} upreply;

#define UPQ_MAX 64

struct sp_sim {
  sp_policy pol;
  sp_sim_config cfg;
  void *relay_mem, *pool_mem;
  size_t relay_size;
  sl_bufpool bp;
  sl_pool pool;
  uint64_t pool_out, pool_peak;
  /* per-session scratch */
  sp_client cl;  /* its reply and unit times are kept across sessions */
  uint8_t *ubuf; /* upstream bytes not yet parsed */
  size_t ulen, ucap;
  upreply q[UPQ_MAX];
  size_t qh, qn;
};

static uint8_t *pool_get(void *ctx, uint32_t min, uint32_t *cap) {
  sp_sim *s = ctx;
  sl_pool inner;
  sl_bufpool_as_pool(&s->bp, &inner);
  uint8_t *b = inner.get(inner.ctx, min, cap);
  if (b) {
    s->pool_out += *cap;
    if (s->pool_out > s->pool_peak)
      s->pool_peak = s->pool_out;
  }
  return b;
}

static void pool_put(void *ctx, uint8_t *buf, uint32_t cap) {
  sp_sim *s = ctx;
  sl_pool inner;
  sl_bufpool_as_pool(&s->bp, &inner);
  inner.put(inner.ctx, buf, cap);
  s->pool_out -= cap <= s->pool_out ? cap : s->pool_out;
}

sp_sim *sp_sim_new(const sp_policy *pol, const sp_sim_config *cfg) {
  sp_sim *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->pol = *pol;
  sp_policy_fixup(&s->pol);
  s->cfg = *cfg;
  s->relay_size = sl_relay_size(&s->pol.limits);
  s->relay_mem = aligned_alloc(8, (s->relay_size + 7) & ~(size_t)7);
  uint32_t ns = 16, nl = 8;
  size_t need = sl_bufpool_need(s->pol.limits.small_buffer_size, ns,
                                s->pol.limits.buffer_size, nl);
  s->pool_mem = aligned_alloc(8, (need + 7) & ~(size_t)7);
  if (!s->relay_mem || !s->pool_mem ||
      sl_bufpool_init(&s->bp, s->pool_mem, need,
                      s->pol.limits.small_buffer_size, ns,
                      s->pol.limits.buffer_size, nl)) {
    sp_sim_free(s);
    return NULL;
  }
  s->pool.get = pool_get;
  s->pool.put = pool_put;
  s->pool.ctx = s;
  return s;
}

void sp_sim_free(sp_sim *s) {
  if (!s)
    return;
  free(s->relay_mem);
  free(s->pool_mem);
  sp_client_free(&s->cl);
  free(s->ubuf);
  free(s);
}

static int ensure(void **p, size_t *cap, size_t n, size_t elem) {
  if (n <= *cap)
    return 0;
  size_t c = *cap ? *cap : 64;
  while (c < n)
    c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q)
    return -1;
  *p = q;
  *cap = c;
  return 0;
}

/* One session's state. */
typedef struct run {
  sp_sim *sim;
  const sp_script *s;
  sl_relay *r;
  sl_tstamp now;
  /* client */
  sp_client *c;
  int end_done, cl_closed, gave_up, relay_closed_client;
  sl_tstamp closed_at;
  sp_unit_kind gave_up_at;
  /* upstream */
  int up_open;
  uint32_t connect_id;
  sl_tstamp connect_due, up_since;
  double up_secs;
  int up_mode; /* 0 commands, 1 DATA body, 2 BDAT chunk */
  uint64_t bdat_left;
  int body_st;
  size_t cursor; /* capture-reply cursor over script units */
  uint32_t synth;
  /* dnsbl */
  uint32_t dns_id[SL_DNSBL_ZONES_MAX], dns_zone[SL_DNSBL_ZONES_MAX];
  unsigned ndns;
  sp_result *res;
} run;

static void up_push(run *x, sl_tstamp due, const uint8_t *p, size_t len) {
  sp_sim *s = x->sim;
  if (s->qn == UPQ_MAX)
    return; /* the relay pipelines at most pipeline_max (<= 32) */
  upreply *u = &s->q[(s->qh + s->qn++) % UPQ_MAX];
  u->due = due;
  u->p = p;
  u->len = len;
  u->done = 0;
}

static sl_tstamp lat(double secs) {
  return secs <= 0 ? 0 : (sl_tstamp)(secs * 1e9 + 0.5);
}

#define SYN(str) ((const uint8_t *)(str)), (sizeof(str) - 1)

/* The relay sent one complete upstream unit of kind k (line l). */
static int up_answer(run *x, sp_unit_kind k, const uint8_t *l, size_t ll) {
  const sp_script *s = x->s;
  const sp_sim_config *c = &x->sim->cfg;
  if (!c->upstream_sink && k != SP_U_OTHER) {
    for (size_t i = x->cursor; i < s->nu; i++)
      if (s->u[i].kind == k && s->u[i].reply_len) {
        const sp_unit *u = &s->u[i];
        int64_t d = u->reply_us - u->sent_us;
        x->cursor = i + 1;
        up_push(x, x->now + (d > 0 ? (sl_tstamp)d * 1000 : 0),
                s->sdata + u->reply_off, u->reply_len);
        return u->reply_code == 354;
      }
  }
  sl_tstamp due = x->now + (c->upstream_sink ? lat(c->sink_latency_s) : 0);
  if (!c->upstream_sink)
    x->synth++;
  switch (k) {
  case SP_U_HELO:
    if (ll >= 4 && toupper(l[0]) == 'E')
      up_push(x, due,
              SYN("250-upstream.replay\r\n250-PIPELINING\r\n"
                  "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
                  "250 SIZE 52428800\r\n"));
    else
      up_push(x, due, SYN("250 upstream.replay\r\n"));
    return 0;
  case SP_U_DATA:
    up_push(x, due, SYN("354 End data with <CR><LF>.<CR><LF>\r\n"));
    return 1;
  case SP_U_MESSAGE:
  case SP_U_BDAT:
    up_push(x, due, SYN("250 2.0.0 Ok: queued\r\n"));
    return 0;
  case SP_U_QUIT:
    up_push(x, due, SYN("221 2.0.0 Bye\r\n"));
    return 0;
  case SP_U_STARTTLS:
    up_push(x, due, SYN("454 4.7.0 TLS not available\r\n"));
    return 0;
  case SP_U_AUTH:
    up_push(x, due, SYN("235 2.7.0 Authentication successful\r\n"));
    return 0;
  default:
    if (ll >= 7 && !strncmp((const char *)l, "XCLIENT", 7))
      up_push(x, due, SYN("220 upstream.replay ESMTP\r\n"));
    else
      up_push(x, due, SYN("250 2.0.0 Ok\r\n"));
    return 0;
  }
}

/* Parses what the relay sent upstream into units and answers each. */
static void up_parse(run *x) {
  sp_sim *s = x->sim;
  size_t pos = 0;
  for (;;) {
    uint8_t *b = s->ubuf + pos;
    size_t n = s->ulen - pos;
    if (x->up_mode == 0) {
      uint8_t *nl = memchr(b, '\n', n);
      if (!nl)
        break;
      size_t ll = (size_t)(nl - b) + 1;
      sp_unit_kind k = sp_unit_classify(b, ll);
      if (k == SP_U_BDAT) {
        unsigned long long v = strtoull((const char *)b + 5, NULL, 10);
        x->bdat_left = v;
        x->up_mode = 2;
        pos += ll;
        continue;
      }
      int body = up_answer(x, k, b, ll);
      if (k == SP_U_DATA && body) {
        x->up_mode = 1;
        x->body_st = 2;
      }
      pos += ll;
    } else if (x->up_mode == 1) {
      /* CRLF.CRLF, byte by byte: body_st 2 = at a line start, 3 = ".",
       * 4 = ".CR", 1 = CR, 0 = inside a line. */
      size_t j = 0;
      int found = 0;
      for (; j < n && !found; j++) {
        uint8_t ch = b[j];
        switch (x->body_st) {
        case 2:
          x->body_st = ch == '.' ? 3 : ch == '\r' ? 1 : 0;
          break;
        case 3:
          x->body_st = ch == '\r' ? 4 : 0;
          break;
        case 4:
          if (ch == '\n')
            found = 1;
          else
            x->body_st = ch == '\r' ? 1 : 0;
          break;
        case 1:
          x->body_st = ch == '\n' ? 2 : ch == '\r' ? 1 : 0;
          break;
        default:
          x->body_st = ch == '\r' ? 1 : 0;
          break;
        }
      }
      pos += j;
      if (!found)
        break;
      up_answer(x, SP_U_MESSAGE, b, j);
      x->up_mode = 0;
    } else {
      size_t take = n < x->bdat_left ? n : (size_t)x->bdat_left;
      x->bdat_left -= take;
      pos += take;
      if (x->bdat_left)
        break;
      up_answer(x, SP_U_BDAT, b, 0);
      x->up_mode = 0;
    }
  }
  if (pos) {
    memmove(s->ubuf, s->ubuf + pos, s->ulen - pos);
    s->ulen -= pos;
  }
}

static void on_request(run *x, const sl_request *q) {
  switch (q->type) {
  case SL_REQ_CONNECT_UPSTREAM:
    x->connect_id = q->id;
    x->connect_due =
        x->now +
        (x->sim->cfg.upstream_sink ? lat(x->sim->cfg.sink_latency_s) : 0);
    x->up_since = x->now;
    break;
  case SL_REQ_STARTTLS_CLIENT:
  case SL_REQ_STARTTLS_UPSTREAM: {
    sl_completion c;
    memset(&c, 0, sizeof c);
    c.id = q->id;
    c.status = SL_STATUS_FAILED;
    sl_relay_complete(x->r, &c, x->now);
    break;
  }
  case SL_REQ_DNSBL_LOOKUP:
    if (x->ndns < SL_DNSBL_ZONES_MAX) {
      x->dns_id[x->ndns] = q->id;
      x->dns_zone[x->ndns++] = q->dnsbl.zone;
    }
    break;
  case SL_REQ_CLOSE_UPSTREAM:
    if (x->up_open || x->connect_id) {
      x->up_secs += (double)(x->now - x->up_since) / 1e9;
    }
    x->up_open = 0;
    x->connect_id = 0;
    x->sim->qn = 0;
    x->sim->ulen = 0;
    x->up_mode = 0;
    break;
  case SL_REQ_CLOSE_CLIENT:
    if (!x->cl_closed) {
      x->cl_closed = 1;
      x->relay_closed_client = 1;
      x->closed_at = x->now;
    }
    break;
  default:
    break;
  }
}

static void answer_dns(run *x) {
  const sp_dnsbl_table *t = x->sim->cfg.dnsbl;
  for (unsigned i = 0; i < x->ndns; i++) {
    sl_completion c;
    memset(&c, 0, sizeof c);
    c.id = x->dns_id[i];
    c.status = SL_STATUS_OK;
    const char *zone = x->dns_zone[i] < x->sim->pol.policy.ndnsbl
                           ? x->sim->pol.zone_names[x->dns_zone[i]]
                           : "";
    for (size_t j = 0; t && j < t->n; j++)
      if (!strcmp(t->v[j].ip, x->s->client_ip) && !strcmp(t->v[j].zone, zone)) {
        memcpy(c.dnsbl_answers, t->v[j].a, sizeof c.dnsbl_answers);
        c.ndnsbl_answers = t->v[j].n;
        break;
      }
    sl_relay_complete(x->r, &c, x->now);
  }
  x->ndns = 0;
}

static void pump(run *x) {
  sp_sim *s = x->sim;
  for (int guard = 0; guard < 100000; guard++) {
    int progress = 0;
    sl_request q;
    while (sl_relay_next_request(x->r, &q)) {
      on_request(x, &q);
      progress = 1;
    }
    if (x->ndns) {
      answer_dns(x);
      progress = 1;
    }
    size_t n;
    const uint8_t *p = sl_relay_client_out(x->r, &n, x->now);
    if (p && n) {
      if (!x->cl_closed)
        sp_client_read(x->c, p, n, x->now);
      sl_relay_client_out_ack(x->r, n, x->now);
      progress = 1;
    }
    p = sl_relay_upstream_out(x->r, &n, x->now);
    if (p && n) {
      if (x->up_open && !ensure((void **)&s->ubuf, &s->ucap, s->ulen + n, 1)) {
        memcpy(s->ubuf + s->ulen, p, n);
        s->ulen += n;
        up_parse(x);
      }
      sl_relay_upstream_out_ack(x->r, n, x->now);
      progress = 1;
    }
    if (!progress)
      break;
  }
}

static void client_close(run *x, int abort_it) {
  if (x->cl_closed)
    return;
  x->cl_closed = 1;
  x->closed_at = x->now;
  if (abort_it)
    sl_relay_abort(x->r, x->now);
  else
    sl_relay_client_eof(x->r, x->now);
}

int sp_sim_run(sp_sim *sim, const sp_script *s, double patience,
               sp_result *res) {
  memset(res, 0, sizeof *res);
  res->source = s->source;
  res->session = s->session;
  res->client_ip = s->client_ip;
  res->policy = sim->pol.label;
  res->patience_s = patience;
  res->deliver_s = -1;
  res->gave_up_at = "";
  res->reject_by = "";
  res->cls = s->cls;
  res->captured_s = (double)s->duration_us / 1e6;
  res->relay_bytes = sim->relay_size;
  if (sp_client_begin(&sim->cl, s, res, T0, 1.0))
    return SP_ERR_NOMEM;
  sim->qh = sim->qn = 0;
  sim->ulen = 0;
  sim->pool_out = sim->pool_peak = 0;

  run x;
  memset(&x, 0, sizeof x);
  x.sim = sim;
  x.s = s;
  x.res = res;
  x.c = &sim->cl;
  x.now = T0;
  sl_conn_info info;
  memset(&info, 0, sizeof info);
  if (sl_addr_parse(&info.client, s->client_ip, strlen(s->client_ip)))
    info.client.family = SL_AF_UNSPEC;
  info.client.port = s->client_port;
  if (sl_addr_parse(&info.local, s->server_ip, strlen(s->server_ip)))
    info.local.family = SL_AF_UNSPEC;
  info.local.port = s->server_port;
  int e = sl_relay_init(&x.r, sim->relay_mem, sim->relay_size, &sim->pol.limits,
                        &sim->pol.policy, &sim->pool, &info,
                        sp_rng_seed(sim->cfg.seed, s->source, s->session), T0);
  if (e) {
    res->outcome = SP_OUT_ERROR;
    res->note = "relay-init";
    return 0;
  }
  const char *note = NULL;
  int steps, moved = 1;
  sl_tstamp expired_at = NEVER;
  for (steps = 0; steps < MAX_STEPS; steps++) {
    pump(&x);
    unsigned want = sl_relay_want(x.r);
    if (want & SL_CLOSED)
      break;
    if (sl_relay_last_error(x.r))
      break;
    sl_tstamp t_write = NEVER, t_end = NEVER, t_pat = NEVER, t_up = NEVER,
              t_conn = NEVER;
    if (!x.cl_closed) {
      if (want & SL_WANT_CLIENT_READ)
        t_write = sp_client_write_due(x.c, x.now);
      if (!x.end_done)
        t_end = sp_client_end_due(x.c, x.now);
      t_pat =
          sp_client_patience_due(x.c, patience, sim->cfg.clock_reply, x.now);
    }
    if (x.connect_id && !x.up_open)
      t_conn = x.connect_due;
    if (x.up_open && sim->qn && (want & SL_WANT_UPSTREAM_READ))
      t_up = sim->q[sim->qh].due;
    sl_tstamp t_dl = sl_relay_next_deadline(x.r);
    /* A deadline already handled at this instant that did not move is not
     * an event (the core can report a passed greet-delay deadline while it
     * still waits for the upstream's greeting; see REPORT.md). */
    if (t_dl <= x.now && expired_at == x.now && !moved)
      t_dl = NEVER;
    moved = 0;
    sl_tstamp t = t_write;
    if (t_end < t)
      t = t_end;
    if (t_pat < t)
      t = t_pat;
    if (t_up < t)
      t = t_up;
    if (t_conn < t)
      t = t_conn;
    if (t_dl < t)
      t = t_dl;
    if (t == NEVER) {
      if (!x.cl_closed)
        sp_client_note_forever(x.c);
      if (!x.cl_closed) {
        note = "client:script-end";
        client_close(&x, 1);
        continue;
      }
      break; /* closed by us, relay has nothing more to do */
    }
    if (t > x.now) {
      x.now = t;
      moved = 1;
    }
    /* The waits at this instant, before anything due at it arrives (a wait
     * is longest just before the byte that ends it, and bytes arrive only
     * at such instants). */
    if (!x.cl_closed)
      sp_client_note_waits(x.c, x.now);
    /* Everything due at now, in a fixed order: the core's deadlines and the
     * upstream before the client's patience (the tie rule of sp_sim.h). */
    if (t_conn <= x.now) {
      sl_completion c;
      memset(&c, 0, sizeof c);
      c.id = x.connect_id;
      c.status = SL_STATUS_OK;
      x.up_open = 1;
      const uint8_t *g = NULL;
      size_t gl = 0;
      sl_tstamp gd = 0;
      if (!sim->cfg.upstream_sink && s->greet_len && s->greet_code == 220) {
        g = s->sdata + s->greet_off;
        gl = s->greet_len;
        gd = s->greet_us > 0 ? (sl_tstamp)s->greet_us * 1000 : 0;
      } else {
        if (!sim->cfg.upstream_sink)
          x.synth++;
        g = (const uint8_t *)"220 upstream.replay ESMTP\r\n";
        gl = 27;
        gd = sim->cfg.upstream_sink ? lat(sim->cfg.sink_latency_s) : 0;
      }
      sl_relay_complete(x.r, &c, x.now);
      up_push(&x, x.now + gd, g, gl);
      moved = 1;
      continue;
    }
    if (t_up <= x.now) {
      upreply *u = &sim->q[sim->qh];
      long took =
          sl_relay_feed_upstream(x.r, u->p + u->done, u->len - u->done, x.now);
      if (took > 0)
        u->done += (size_t)took;
      if (u->done >= u->len) {
        sim->qh = (sim->qh + 1) % UPQ_MAX;
        sim->qn--;
      }
      moved = 1;
      continue;
    }
    if (t_dl <= x.now) {
      sl_relay_handle_expiry(x.r, x.now);
      expired_at = x.now;
      continue;
    }
    if (t_pat <= x.now) {
      x.gave_up = 1;
      x.gave_up_at = sp_client_awaited(x.c);
      note = "client:gave-up";
      client_close(&x, 1);
      moved = 1;
      continue;
    }
    if (t_write <= x.now) {
      size_t len;
      const uint8_t *p = sp_client_write_bytes(x.c, &len);
      long took = sl_relay_feed_client(x.r, p, len, x.now);
      sp_client_wrote(x.c, took > 0 ? (uint64_t)took : 0, x.now);
      moved = 1;
      continue;
    }
    if (t_end <= x.now) {
      x.end_done = 1;
      note = sp_client_end_note(x.c);
      client_close(&x, sp_client_end_aborts(x.c));
      moved = 1;
      continue;
    }
  }
  pump(&x);
  const sl_stats *st = sl_relay_stats(x.r);
  if (!x.cl_closed)
    x.closed_at = x.now;
  if (x.up_open || x.connect_id)
    x.up_secs += (double)(x.now - x.up_since) / 1e9;
  int err = sl_relay_last_error(x.r);
  /* "relay:" and the core's end reason, e.g. "relay:client_closed" */
  switch ((sl_end_reason)st->end_reason) {
#define RELAY_END_(name, value, text)                                          \
  case SL_END_##name:                                                          \
    if (x.relay_closed_client)                                                 \
      note = "relay:" text;                                                    \
    break;
    SL_END_REASON_MAP(RELAY_END_)
#undef RELAY_END_
  }
  res->held_s = (double)(x.closed_at - T0) / 1e9;
  res->delay_s = (double)st->delay_total / 1e9;
  res->replies = x.c->rx;
  res->upstream_s = x.up_secs;
  res->synth_replies = x.synth;
  res->peak_pool_bytes = sim->pool_peak;
  res->score = st->score;
  res->tarpitted = st->tarpitted;
  res->stage = sp_client_stage_name(x.c);
  if (err || steps >= MAX_STEPS) {
    res->outcome = SP_OUT_ERROR;
    res->note = err ? sl_err_name(err) : "step-limit";
  } else if (x.gave_up) {
    res->outcome = SP_OUT_GAVE_UP;
    res->gave_up_at = sp_unit_name(x.gave_up_at);
  } else if (res->messages) {
    res->outcome = SP_OUT_DELIVERED;
  } else if (x.c->rejected || st->end_reason == SL_END_REJECTED ||
             st->end_reason == SL_END_PROTOCOL) {
    res->outcome = SP_OUT_REJECTED;
    res->reject_by =
        st->end_reason == SL_END_TIMEOUT ? "timeout"
        : st->end_reason == SL_END_REJECTED || st->end_reason == SL_END_PROTOCOL
            ? "sluice"
            : "upstream";
  } else if (st->end_reason == SL_END_UPSTREAM || s->end == SP_SEND_GAP) {
    res->outcome = SP_OUT_ERROR;
  } else {
    res->outcome = SP_OUT_NO_MAIL;
  }
  if (!res->note)
    res->note = note ? note : "";
  sl_relay_free(x.r);
  return 0;
}
