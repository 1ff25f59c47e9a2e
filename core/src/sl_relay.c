/*
 * sl_relay.c: the SMTP relay state machine's API (sluice/relay.h) and
 * its run loop; the layers it drives are described in sl_relay_int.h.
 *
 * Every API call records its input, then run() makes all the progress it
 * can, one step after another until none reports progress: answers taken by
 * sl_relay_complete() are applied (step_answers), timers fire
 * (step_expiry), DNSBL lookups go out (sl__step_dnsbl), replies leave the
 * queue in order (sl__step_replies), the upstream leg advances its
 * preamble or notices the upstream failed or left (sl__step_upstream),
 * client bytes become commands or message data
 * (sl__step_client), and the legs close (step_close).  This file also owns
 * the relay's buffers and its request ring.
 */
#include <string.h>

#include "sl_dnsbl.h"
#include "sl_pcg.h"
#include "sl_relay_int.h"
#include "sluice/filter.h"

static int client_read_ok(const sl_relay *r);
static int upstream_read_ok(const sl_relay *r);
static int step_expiry(sl_relay *r);

/* ---- buffers ------------------------------------------------------------ */

void sl__buf_release(sl_relay *r, sl_buf *b) {
  if (b->p)
    r->pool->put(r->pool->ctx, b->p, b->cap);
  b->p = NULL;
  b->cap = 0;
  b->off = b->len = 0;
}

/* Makes room for need more bytes at the tail: compacts, or moves the bytes
   to a larger buffer.  Returns 0, or -1 (pool empty or need too large). */
int sl__buf_reserve(sl_relay *r, sl_buf *b, uint32_t need) {
  if (b->p && sl__buf_cap(b) - b->len >= need) {
    if (sl__buf_cap(b) - b->off - b->len < need) {
      memmove(b->p, b->p + b->off, b->len);
      b->off = 0;
    }
    return 0;
  }
  uint32_t want = b->len + need;
  if (want > r->lim->buffer_size)
    return -1;
  uint32_t cap = 0;
  uint8_t *p = r->pool->get(r->pool->ctx, want, &cap);
  if (!p || cap < want) {
    if (p)
      r->pool->put(r->pool->ctx, p, cap);
    r->starved = 1;
    r->t_retry = sl__tadd(r->now, 50 * SL_MSEC);
    if (r->t_starved == SL_TSTAMP_NONE)
      r->t_starved = r->now;
    return -1;
  }
  if (b->len)
    memcpy(p, b->p + b->off, b->len);
  uint16_t len = b->len;
  sl__buf_release(r, b);
  b->p = p;
  b->cap = cap;
  b->off = 0;
  b->len = len;
  return 0;
}

void sl__buf_consume(sl_relay *r, sl_buf *b, size_t n) {
  b->off = (uint16_t)(b->off + n);
  b->len = (uint16_t)(b->len - n);
  if (b->len == 0)
    sl__buf_release(r, b);
}

/* ---- requests ------------------------------------------------------------ */

uint32_t sl__new_id(sl_relay *r, uint32_t tag) {
  r->seq++;
  return (r->seq << 8) | tag;
}

static ring_ent *ring_push(sl_relay *r) {
  if (r->ring_len == RING_CAP) {
    /* Steps reserve room before they run: a full ring here is a bug, and
       is reported rather than a request silently lost. */
    r->err = (uint32_t)-SL_ERR_INTERNAL;
    return NULL;
  }
  ring_ent *e = &r->ring[(r->ring_head + r->ring_len) % RING_CAP];
  memset(e, 0, sizeof(*e));
  r->ring_len++;
  return e;
}

void sl__push_req(sl_relay *r, sl_request_type type, uint32_t id,
                  uint64_t arg) {
  ring_ent *e = ring_push(r);
  if (!e)
    return;
  e->type = (uint8_t)type;
  e->id = id;
  e->arg = arg;
}

void sl__event(sl_relay *r, const sl_event *ev) {
  ring_ent *e = ring_push(r);
  if (!e)
    return;
  e->type = SL_REQ_EVENT;
  e->kind = (uint8_t)ev->kind;
  e->id = sl__new_id(r, 0);
  switch (ev->kind) {
  case SL_EV_PREGREET:
    e->arg = ev->pregreet.bytes;
    break;
  case SL_EV_DNSBL_SCORE:
    e->arg = (uint64_t)(int64_t)ev->dnsbl.score;
    break;
  case SL_EV_TARPIT:
    e->arg = ev->tarpit.reason;
    break;
  case SL_EV_STARTTLS_INJECTION:
    e->arg = ev->starttls_injection.bytes;
    break;
  case SL_EV_SMUGGLING:
    e->arg = ev->smuggling.violation;
    break;
  case SL_EV_UPSTREAM_READY:
    e->arg = ev->upstream_ready.attempt;
    break;
  case SL_EV_UPSTREAM_FAILED:
    e->arg = ev->upstream_failed.failure;
    break;
  case SL_EV_MESSAGE:
    e->code = ev->message.code;
    e->arg = ev->message.size;
    break;
  case SL_EV_SESSION_END:
    e->arg = ev->session_end.reason;
    break;
  case SL_EV_REFUSAL:
    e->code = ev->refusal.code;
    e->arg = ev->refusal.command;
    break;
  case SL_EV_SCREEN_PASSED:
    break;
  }
}

/* sl__event() backwards. */
static void event_payload(const ring_ent *e, sl_event *ev) {
  ev->kind = (sl_event_kind)e->kind;
  switch (ev->kind) {
  case SL_EV_PREGREET:
    ev->pregreet.bytes = (uint32_t)e->arg;
    break;
  case SL_EV_DNSBL_SCORE:
    ev->dnsbl.score = (int32_t)(int64_t)e->arg;
    break;
  case SL_EV_TARPIT:
    ev->tarpit.reason = (sl_tarpit_reason)e->arg;
    break;
  case SL_EV_STARTTLS_INJECTION:
    ev->starttls_injection.bytes = (uint32_t)e->arg;
    break;
  case SL_EV_SMUGGLING:
    ev->smuggling.violation = (sl_violation)e->arg;
    break;
  case SL_EV_UPSTREAM_READY:
    ev->upstream_ready.attempt = (uint32_t)e->arg;
    break;
  case SL_EV_UPSTREAM_FAILED:
    ev->upstream_failed.failure = (sl_upstream_failure)e->arg;
    break;
  case SL_EV_MESSAGE:
    ev->message.code = e->code;
    ev->message.size = e->arg;
    break;
  case SL_EV_SESSION_END:
    ev->session_end.reason = (sl_end_reason)e->arg;
    break;
  case SL_EV_REFUSAL:
    ev->refusal.code = e->code;
    ev->refusal.command = (sl_command)e->arg;
    break;
  case SL_EV_SCREEN_PASSED:
    break;
  }
}

/* ---- the run loop -------------------------------------------------------- */

/* Applies one answer taken by sl_relay_complete(), if the ring has room. */
static int step_answers(sl_relay *r) {
  if (sl__ring_free(r) < STEP_ROOM)
    return 0;
  if (r->fres && sl__filter_apply(r))
    return 1; /* else it waits (pool, a chunk's reply): the others go on */
  if (r->res_connect) {
    sl_status st = (sl_status)(r->res_connect - 1);
    r->res_connect = 0;
    r->id_connect = 0;
    if (st == SL_STATUS_OK)
      sl__up_connected(r);
    else
      sl__up_fail(r, st == SL_STATUS_TIMEOUT ? SL_UPFAIL_TIMEOUT
                                             : SL_UPFAIL_CONNECT);
    return 1;
  }
  if (r->res_tls_client) {
    int ok = r->res_tls_client == SL_STATUS_OK + 1;
    r->res_tls_client = 0;
    r->id_tls_client = 0;
    if (r->cl != CL_TLS)
      return 1; /* the session ended meanwhile (a timeout) */
    if (ok) {
      /* RFC 3207 4.2: forget everything learnt before TLS. */
      r->stats.tls_client = 1;
      r->helo = r->esmtp = r->mail = 0;
      r->utf8_txn = r->authed = 0;
      sl__auth_forget(r);
      r->mail_held = r->mail_fail = 0;
      sl__buf_release(r, &r->mailh);
      r->rcpts = 0;
      r->offered = 0;
      sl__buf_release(r, &r->ehlo);
      r->replayed = 0;
      r->cl = CL_CMD;
      r->no_input = 0;
      r->t_client = r->now;
    } else {
      sl__up_close(r);
      sl__client_close_after_reply(r, SL_END_PROTOCOL);
    }
    return 1;
  }
  if (r->res_tls_up) {
    int ok = r->res_tls_up == SL_STATUS_OK + 1;
    r->res_tls_up = 0;
    r->id_tls_up = 0;
    if (ok) {
      r->stats.tls_upstream = 1;
      sl__up_ehlo(r); /* capabilities learnt in plaintext are not trusted */
    } else {
      sl__up_fail(r, SL_UPFAIL_TLS);
    }
    return 1;
  }
  return 0;
}

static int step_close(sl_relay *r) {
  int progress = 0;
  if (r->tls_pending && r->cout.len == 0 && sl__ring_free(r) >= 2) {
    r->tls_pending = 0;
    sl__buf_release(r, &r->cin);
    r->t_rec = SL_TSTAMP_NONE;
    r->id_tls_client = sl__new_id(r, TAG_TLS_CLIENT);
    sl__push_req(r, SL_REQ_STARTTLS_CLIENT, r->id_tls_client, 0);
    r->cl = CL_TLS;
    r->t_phase = r->now;
    progress = 1;
  }
  if (r->cl_eof && r->cl < CL_CLOSING && sl__ring_free(r) >= 2) {
    int line_left =
        r->cin.len && memchr(r->cin.p + r->cin.off, '\n', r->cin.len);
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        r->cl == CL_PROXY || r->cl == CL_TLS ||
        (r->cl == CL_AUTH && !line_left)) {
      /* an unfinished message or SASL exchange is never completed */
      sl__up_close(r);
      sl__client_close_after_reply(r, SL_END_CLIENT_CLOSED);
      progress = 1;
    } else if ((r->q_len == 0 ||
                (r->q_len == 1 && sl__q_peek(r) == Q_GREETING)) &&
               !r->tls_pending &&
               (!r->cin.len ||
                !memchr(r->cin.p + r->cin.off, '\n', r->cin.len) ||
                r->no_input || !r->greeted)) {
      sl__client_close_after_reply(r, SL_END_CLIENT_CLOSED);
      progress = 1;
    }
  }
  if (r->cl == CL_CLOSING && r->greet_held) {
    /* a greeting held back for a client that is gone is never sent */
    sl__buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl == CL_CLOSING && r->cout.len == 0 && sl__ring_free(r) >= 2) {
    sl__push_req(r, SL_REQ_CLOSE_CLIENT, sl__new_id(r, 0), 0);
    r->close_sent = 1;
    r->cl = CL_CLOSED;
    r->stats.end = r->now;
    sl__buf_release(r, &r->cin);
    progress = 1;
  }
  if (r->cl == CL_CLOSED && !r->end_sent && sl__ring_free(r) >= 2) {
    if (r->up == UP_READY && r->up_out == 0 && r->uout.len == 0) {
      if (sl__up_room(r, 4)) {
        sl__up_write_line(r, (const uint8_t *)"QUIT", 4);
        r->up = UP_QUIT;
      } else {
        sl__up_close(r);
      }
      progress = 1;
    } else if (r->up != UP_NONE && r->up != UP_QUIT) {
      sl__up_close(r);
      progress = 1;
    }
    if (r->up == UP_NONE) {
      sl__buf_release(r, &r->cout);
      sl__buf_release(r, &r->ehlo);
      sl__buf_release(r, &r->chk);
      sl__buf_release(r, &r->auser);
      sl__buf_release(r, &r->mailh);
      sl__buf_release(r, &r->uin);
      sl__buf_release(r, &r->uout);
      /* Screening ends with the session: no lookup or score after
         SESSION_END (guarantee 10), late answers are stale. */
      r->dnsbl_done = 1;
      r->dnsbl_pending = 0;
      /* chk is gone: a check still asked is stale too, its answer
         refused (SL_ERR_UNKNOWN_REQUEST), never written into it */
      r->chk_state = CHK_IDLE;
      r->chk_queued = 0;
      sl__event(r, &(sl_event){.kind = SL_EV_SESSION_END,
                               .session_end.reason =
                                   (sl_end_reason)r->stats.end_reason});
      r->end_sent = 1;
      progress = 1;
    }
  }
  return progress;
}

/* Per-record deadlines (record_timeout, Postfix's smtpd_per_record_deadline):
   the time from the first byte of a line to its LF, whatever the reads in
   between, so a peer dripping a byte at a time is bounded too.  n bytes
   just arrived at the tail of b. */
static sl_tstamp record_start(sl_tstamp t, const sl_buf *b, size_t n,
                              sl_tstamp now) {
  const uint8_t *p = b->p + b->off + b->len - n;
  if (memchr(p, '\n', n))
    return p[n - 1] == '\n' ? SL_TSTAMP_NONE : now; /* a new line began */
  return t == SL_TSTAMP_NONE ? now : t;
}

/* The record clocks run only while the relay reads that leg: a pause in
   reading (flow control, a throttle, a full ring) is the relay's own, so a
   line's clock starts again when reading resumes. */
static void record_clocks(sl_relay *r) {
  int c = client_read_ok(r), u = upstream_read_ok(r);
  if (c && !r->c_reading && r->t_rec != SL_TSTAMP_NONE)
    r->t_rec = r->now;
  if (u && !r->u_reading && r->t_urec != SL_TSTAMP_NONE)
    r->t_urec = r->now;
  r->c_reading = c != 0;
  r->u_reading = u != 0;
}

static void run(sl_relay *r) {
  /* Every step consumes input or changes state when it reports progress,
     so this ends; the bound only guards against a bug looping forever. */
  for (int i = 0;; i++) {
    if (i == 100000) {
      r->err = (uint32_t)-SL_ERR_INTERNAL;
      break;
    }
    int p = step_answers(r);
    p |= step_expiry(r);
    p |= sl__step_dnsbl(r);
    p |= sl__step_replies(r);
    p |= sl__step_upstream(r);
    p |= sl__step_client(r);
    p |= step_close(r);
    if (!p)
      break;
  }
  record_clocks(r);
}

/* ---- the public API ----------------------------------------------------- */

/* Every entry point: time must not go backwards (ngtcp2's rule). */
static int enter(sl_relay *r, sl_tstamp now) {
  if (!r)
    return SL_ERR_INVALID_ARGUMENT;
  if (r->err && sl_err_is_fatal(-(int)r->err))
    return -(int)r->err;
  if (now < r->now) {
    r->err = (uint32_t)-SL_ERR_TIME_BACKWARDS;
    return SL_ERR_TIME_BACKWARDS;
  }
  r->now = now;
  if (r->starved && now >= r->t_retry)
    r->starved = 0;
  if (sl__throttled(r))
    sl_tbucket_refill(&r->bucket, r->prof->data_rate, r->now);
  return 0;
}

static int leave(sl_relay *r) {
  run(r);
  /* Starvation ends with a pass that the pool refused nothing.  One buffer
     it still gives (or one that already has room) is no progress while
     another need is refused on every retry (guarantee 7). */
  if (!r->starved)
    r->t_starved = SL_TSTAMP_NONE;
  return r->err ? -(int)r->err : 0;
}

size_t sl_relay_size(const sl_limits *limits) {
  (void)limits;
  return (sizeof(struct sl_relay) + 7u) & ~(size_t)7u;
}

size_t sl_relay_memory_bound(const sl_limits *limits) {
  /* cin, cout, uin, uout; the EHLO line, a filter's refusal, the RCPT
     check's paths, a MAIL held for it and the AUTH user */
  return sl_relay_size(limits) + 4u * (size_t)limits->buffer_size +
         5u * (size_t)limits->small_buffer_size; /* ehlo, frep, chk, mailh,
                                                    auser */
}

int sl_relay_init(sl_relay **out, void *mem, size_t memlen,
                  const sl_limits *limits, const sl_policy *policy,
                  const sl_pool *pool, const sl_conn_info *info, uint64_t seed,
                  sl_tstamp now) {
  if (!out || !mem || !limits || !policy || !pool || !pool->get || !pool->put ||
      !info || ((uintptr_t)mem & 7u) || now == SL_TSTAMP_NONE)
    return SL_ERR_INVALID_ARGUMENT;
  if (sl_limits_check(limits) || sl_policy_check(policy))
    return SL_ERR_INVALID_ARGUMENT;
  if (memlen < sl_relay_size(limits))
    return SL_ERR_NOBUF;
  sl_relay *r = mem;
  memset(r, 0, sizeof(*r));
  r->lim = limits;
  r->pol = policy;
  r->pool = pool;
  r->prof = &policy->normal;
  r->info = *info;
  r->now = now;
  r->stats.start = now;
  r->stats.end = SL_TSTAMP_NONE;
  r->t_client = r->t_phase = now;
  r->t_release = r->t_up = r->t_retry = SL_TSTAMP_NONE;
  r->t_rec = r->t_urec = r->t_bye = r->t_starved = SL_TSTAMP_NONE;
  r->t_stutter = r->bucket.t = now;
  sl_pcg32 g;
  sl_pcg32_seed(&g, seed, RNG_STREAM);
  r->rng = g.state;
  r->stats.tls_client = (info->flags & SL_CONN_TLS) != 0;
  if (info->flags & SL_CONN_EXPECT_PROXY)
    r->cl = CL_PROXY;
  else {
    r->cl = CL_CMD;
    sl__session_start(r);
  }
  *out = r;
  return leave(r);
}

void sl_relay_set_client_name(sl_relay *r, const char *name) {
  if (r)
    r->info.client_name = name;
}

void sl_relay_free(sl_relay *r) {
  if (!r)
    return;
  sl__buf_release(r, &r->cin);
  sl__buf_release(r, &r->cout);
  sl__buf_release(r, &r->uin);
  sl__buf_release(r, &r->uout);
  sl__buf_release(r, &r->ehlo);
  sl__buf_release(r, &r->chk);
  sl__buf_release(r, &r->mailh);
  sl__buf_release(r, &r->frep);
  sl__buf_release(r, &r->auser);
}

static int dataish(const sl_relay *r) {
  /* A PROXY v2 header with TLVs can exceed a small buffer. */
  return r->cl == CL_PROXY || r->cl == CL_DATA || r->cl == CL_DISCARD ||
         r->cl == CL_BDAT || (r->cl == CL_WAIT && !r->no_input);
}

/* How many client bytes to hold: a long AUTH line needs the large buffer,
   or reading would stop short of its end and the line would never get its
   reply (guarantee 9). */
static uint32_t cin_target(const sl_relay *r) {
  return dataish(r) || sl__line_limit(r) > r->lim->small_buffer_size
             ? r->lim->buffer_size
             : r->lim->small_buffer_size;
}

static int client_read_ok(const sl_relay *r) {
  if (r->cl > CL_BDAT || r->cl == CL_TLS || r->no_input || r->cl_eof ||
      r->starved)
    return 0;
  if (sl__ring_free(r) < STEP_ROOM)
    return 0; /* backpressure: the driver drains requests first */
  if (r->cin.len >= cin_target(r))
    return 0;
  if (sl__throttled(r) && r->bucket.tokens == 0)
    return 0;
  return 1;
}

uint8_t *sl_relay_client_in_buf(sl_relay *r, size_t *cap, sl_tstamp now) {
  if (cap)
    *cap = 0;
  if (!cap || enter(r, now))
    return NULL;
  if (sl__throttled(r))
    sl_tbucket_refill(&r->bucket, r->prof->data_rate, r->now);
  if (!client_read_ok(r))
    return NULL;
  uint32_t target = cin_target(r);
  if ((sl__buf_free(&r->cin) == 0 || r->cin.cap < target) &&
      sl__buf_reserve(r, &r->cin, target - r->cin.len))
    return NULL;
  size_t room = sl__buf_free(&r->cin);
  if (sl__throttled(r) && room > r->bucket.tokens)
    room = (size_t)r->bucket.tokens;
  *cap = room;
  return sl__buf_tail(&r->cin);
}

int sl_relay_client_in_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > sl__buf_free(&r->cin))
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    sl__buf_grow(&r->cin, n);
    r->stats.client_bytes_in += n;
    /* The command timeout counts until a whole line is in (a drip of
       bytes does not restart it); DATA's timeout is per block (4.5.3.2.5). */
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        memchr(sl__buf_tail(&r->cin) - n, '\n', n))
      r->t_client = now;
    r->t_rec = record_start(r->t_rec, &r->cin, n, now);
    if (sl__throttled(r))
      sl_tbucket_take(&r->bucket, n);
    if (!r->greeted && r->cl != CL_PROXY) {
      r->pregreet = 1;
      r->stats.pregreet_bytes += (uint32_t)n;
    }
    if (r->wait_354 && r->cl == CL_WAIT) {
      if (!r->body_early) { /* counted once per DATA */
        r->body_early = 1;
        if (sl__sync_violation(r) && r->q_len)
          sl__refuse_sync(r);
      }
    } else if (r->q_sync && r->greeted && !r->sync_bad) {
      /* before the reply to a command that ends a group */
      r->sync_bad = sl__sync_violation(r) != 0;
    }
  } else if (r->cin.len == 0) {
    sl__buf_release(r, &r->cin);
  }
  return leave(r);
}

/* The copying convenience over in_buf/in_ack, for either leg. */
static long feed(sl_relay *r, int up, const uint8_t *data, size_t len,
                 sl_tstamp now) {
  size_t done = 0;
  while (done < len) {
    size_t cap;
    uint8_t *p = up ? sl_relay_upstream_in_buf(r, &cap, now)
                    : sl_relay_client_in_buf(r, &cap, now);
    if (!p || cap == 0)
      break;
    size_t n = len - done < cap ? len - done : cap;
    memcpy(p, data + done, n);
    int e = up ? sl_relay_upstream_in_ack(r, n, now)
               : sl_relay_client_in_ack(r, n, now);
    if (e)
      return e;
    done += n;
  }
  if (r && r->err && sl_err_is_fatal(-(int)r->err))
    return -(long)r->err;
  return (long)done;
}

long sl_relay_feed_client(sl_relay *r, const uint8_t *data, size_t len,
                          sl_tstamp now) {
  return feed(r, 0, data, len, now);
}

static int upstream_read_ok(const sl_relay *r) {
  return r->up >= UP_GREETING && r->up != UP_TLS && !r->up_eof && !r->starved &&
         r->uin.len < r->lim->buffer_size && sl__ring_free(r) >= STEP_ROOM;
}

uint8_t *sl_relay_upstream_in_buf(sl_relay *r, size_t *cap, sl_tstamp now) {
  if (cap)
    *cap = 0;
  if (!cap || enter(r, now) || !upstream_read_ok(r))
    return NULL;
  uint32_t need = r->uin.len < r->lim->small_buffer_size
                      ? r->lim->small_buffer_size - r->uin.len
                      : r->lim->buffer_size - r->uin.len;
  if (sl__buf_free(&r->uin) == 0 && sl__buf_reserve(r, &r->uin, need))
    return NULL;
  *cap = sl__buf_free(&r->uin);
  return sl__buf_tail(&r->uin);
}

int sl_relay_upstream_in_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > sl__buf_free(&r->uin))
    return SL_ERR_INVALID_ARGUMENT;
  sl__buf_grow(&r->uin, n);
  r->stats.upstream_bytes_in += n;
  if (n)
    r->t_urec = record_start(r->t_urec, &r->uin, n, now);
  if (r->uin.len == 0)
    sl__buf_release(r, &r->uin);
  return leave(r);
}

long sl_relay_feed_upstream(sl_relay *r, const uint8_t *data, size_t len,
                            sl_tstamp now) {
  return feed(r, 1, data, len, now);
}

int sl_relay_client_eof(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  r->cl_eof = 1;
  return leave(r);
}

int sl_relay_upstream_eof(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (r->up != UP_NONE && r->up != UP_CONNECTING)
    r->up_eof = 1;
  return leave(r);
}

/* The body of sl_relay_abort(); pushes at most one request (a close). */
static void abort_now(sl_relay *r) {
  if (r->cl < CL_CLOSING) {
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        r->up_out)
      sl__up_close(r);
    sl__client_close_after_reply(r, SL_END_CLIENT_CLOSED);
  }
  r->q_len = 0;
  sl__msize_clear(r);
  r->no_input = 1;
  r->tls_pending = 0;
  sl__buf_release(r, &r->cout);
  r->greet_held = 0;
}

int sl_relay_abort(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  abort_now(r);
  return leave(r);
}

int sl_relay_complete(sl_relay *r, const sl_completion *c, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (!c)
    return SL_ERR_INVALID_ARGUMENT;
  uint32_t tag = c->id & 0xffu;
  int ok = c->status == SL_STATUS_OK;
  uint8_t res = (uint8_t)(c->status + 1);
  if (c->status > SL_STATUS_TIMEOUT)
    return SL_ERR_INVALID_ARGUMENT;
  /* Connect and TLS answers are applied by step_answers() in run(), when
     the ring has room for the requests they make (guarantee 10). */
  if (c->id == 0) {
    return SL_ERR_UNKNOWN_REQUEST;
  } else if (tag == TAG_CONNECT) {
    if (c->id != r->id_connect || r->up != UP_CONNECTING || r->res_connect)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_connect = res;
  } else if (tag == TAG_TLS_CLIENT) {
    if (c->id != r->id_tls_client || r->cl != CL_TLS || r->res_tls_client)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_tls_client = res;
  } else if (tag == TAG_TLS_UPSTREAM) {
    if (c->id != r->id_tls_up || r->up != UP_TLS || r->res_tls_up)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_tls_up = res;
  } else if (tag == TAG_CHECK) {
    if (c->id != r->chk_id || r->chk_state != CHK_ASKED)
      return SL_ERR_UNKNOWN_REQUEST;
    r->chk_state = CHK_ANSWERED;
    r->chk_code = 0;
    if (ok && c->check_code >= 400 && c->check_code <= 599) {
      /* the driver's text goes to the client: one line, printable, in the
         recipient's half of chk (the recipient is asked about no more) */
      size_t half = sl__buf_cap(&r->chk) / 2, i = 0;
      char *t = (char *)r->chk.p + half;
      for (; i + 1 < half && i < SL_CHECK_TEXT_MAX - 1 && c->check_text[i];
           i++) {
        char ch = c->check_text[i];
        t[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
      }
      t[i] = 0;
      if (i) /* a refusal without text would be no reply line at all */
        r->chk_code = c->check_code;
    }
  } else if (tag >= TAG_DNSBL && tag < TAG_DNSBL + SL_DNSBL_ZONES_MAX) {
    uint32_t z = tag - TAG_DNSBL;
    if (r->dnsbl_done || !(r->dnsbl_pending & (1u << z)))
      return SL_ERR_UNKNOWN_REQUEST;
    r->dnsbl_pending = (uint16_t)(r->dnsbl_pending & ~(1u << z));
    unsigned n = c->ndnsbl_answers < SL_DNSBL_ANSWERS_MAX
                     ? c->ndnsbl_answers
                     : SL_DNSBL_ANSWERS_MAX;
    if (ok && sl_dnsbl_listed(&r->pol->dnsbl[z], c->dnsbl_answers, n))
      r->stats.score += r->pol->dnsbl[z].weight;
    /* the last answer: sl__step_dnsbl() decides */
  } else {
    return SL_ERR_UNKNOWN_REQUEST;
  }
  return leave(r);
}

int sl_relay_filter_verdict(sl_relay *r, uint32_t id, int verdict,
                            const uint8_t *text, size_t len, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (verdict < 0 || verdict > (int)SL_VERDICT_REJECT || (text == NULL && len))
    return SL_ERR_INVALID_ARGUMENT;
  sl_verdict v = (sl_verdict)verdict;
  if (id == 0 || id != r->id_filter || !r->fheld || r->fres)
    return SL_ERR_UNKNOWN_REQUEST;
  if (v == SL_VERDICT_DISCARD)
    v = SL_VERDICT_REJECT; /* never a 250 the upstream did not give */
  if (v == SL_VERDICT_TEMPFAIL || v == SL_VERDICT_REJECT) {
    /* The filter's words, never its framing (guarantee 5). */
    uint8_t line[SL_FILTER_REPLY_MAX];
    int n = sl_filter_reply(line, v, text, len);
    if (n <= 0)
      return SL_ERR_INTERNAL;
    r->fcode = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
                          (line[2] - '0'));
    sl__buf_release(r, &r->frep);
    if ((uint32_t)n <= r->lim->small_buffer_size &&
        sl__buf_reserve(r, &r->frep, (uint32_t)n) == 0)
      sl__buf_put(&r->frep, line, (size_t)n);
    else
      r->fcode = v == SL_VERDICT_REJECT ? 550 : 451; /* the fixed text's */
  }
  r->fres = (uint8_t)(v + 1);
  return leave(r);
}

const uint8_t *sl_relay_client_out(sl_relay *r, size_t *len, sl_tstamp now) {
  if (len)
    *len = 0;
  if (!len || enter(r, now) || !r->cout.len || r->greet_held)
    return NULL;
  size_t n = r->cout.len;
  if (r->prof->stutter_bytes) {
    if (now < r->t_stutter)
      return NULL;
    if (n > r->prof->stutter_bytes)
      n = r->prof->stutter_bytes;
  }
  *len = n;
  return r->cout.p + r->cout.off;
}

int sl_relay_client_out_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > r->cout.len || (n && r->greet_held))
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    sl__buf_consume(r, &r->cout, n);
    r->stats.client_bytes_out += n;
    r->t_client = now;
    if (r->prof->stutter_bytes)
      r->t_stutter = sl__tadd(now, r->prof->stutter_interval);
  }
  return leave(r);
}

const uint8_t *sl_relay_upstream_out(sl_relay *r, size_t *len, sl_tstamp now) {
  if (len)
    *len = 0;
  if (!len || enter(r, now) || !r->uout.len || r->up == UP_CONNECTING ||
      r->up == UP_TLS || r->up == UP_NONE)
    return NULL;
  *len = r->uout.len;
  return r->uout.p + r->uout.off;
}

int sl_relay_upstream_out_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > r->uout.len)
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    sl__buf_consume(r, &r->uout, n);
    r->stats.upstream_bytes_out += n;
    r->t_uout = now;
    if (!r->uout.len)
      sl__msize_out(r);
  }
  return leave(r);
}

int sl_relay_next_request(sl_relay *r, sl_request *out) {
  if (!r || !out || r->ring_len == 0)
    return 0;
  const ring_ent *e = &r->ring[r->ring_head];
  memset(out, 0, sizeof(*out));
  out->type = (sl_request_type)e->type;
  out->id = e->id;
  switch (e->type) {
  case SL_REQ_CONNECT_UPSTREAM:
    out->connect.attempt = (uint32_t)e->arg;
    break;
  case SL_REQ_DNSBL_LOOKUP:
    out->dnsbl.zone = (uint32_t)e->arg;
    break;
  case SL_REQ_EVENT:
    event_payload(e, &out->ev);
    break;
  case SL_REQ_RCPT_CHECK:
    out->check.sender = (const char *)r->chk.p;
    out->check.rcpt = (const char *)r->chk.p + sl__buf_cap(&r->chk) / 2;
    /* the kept EHLO/HELO line without its verb; no command (so no new
       EHLO) is read while the answer is out */
    out->check.helo =
        r->ehlo.len > 5 ? (const char *)r->ehlo.p + r->ehlo.off + 5 : "";
    out->check.helo_len = r->ehlo.len > 5 ? (uint16_t)(r->ehlo.len - 5) : 0;
    if (r->chk_stage == SL_CMD_EHLO || r->chk_stage == SL_CMD_HELO) {
      /* the EHLO/HELO being asked about (in chk's second half) is not
         kept yet; nothing of a transaction is known */
      out->check.helo = out->check.rcpt;
      out->check.helo_len = (uint16_t)strlen(out->check.rcpt);
      out->check.sender = out->check.rcpt = "";
    }
    out->check.rcpt_count = r->rcpts;
    out->check.stage = r->chk_stage;
    out->check.size = r->mail_size;
    out->check.authed = r->authed;
    sl__auth_check(r, out);
    out->check.allowlisted =
        r->authed ||
        sl_dnsbl_allowlisted(r->pol, r->dnsbl_done, r->stats.score) ||
        sl_rcpt_client_trusted(&r->pol->rcpt, &r->info.client);
    out->check.esmtp = r->chk_stage == SL_CMD_EHLO   ? 1
                       : r->chk_stage == SL_CMD_HELO ? 0
                                                     : r->esmtp;
    out->check.tls = r->stats.tls_client;
    break;
  default:
    break;
  }
  r->ring_head = (uint8_t)((r->ring_head + 1) % RING_CAP);
  r->ring_len--;
  /* A full ring may have paused input: let it go on. */
  run(r);
  return 1;
}

/* Is the relay waiting on the client to send (command or data)? */
static int waiting_for_client(const sl_relay *r) {
  if (r->no_input || r->cl_eof)
    return 0;
  if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT)
    return 1;
  /* in CL_AUTH the queue holds the AUTH that waits for this client */
  return r->cl == CL_AUTH || (r->cl == CL_CMD && r->greeted && r->q_len == 0);
}

/* When the client's or the upstream's unfinished line runs out of time,
   or SL_TSTAMP_NONE. */
static sl_tstamp client_record_due(const sl_relay *r) {
  if (r->t_rec == SL_TSTAMP_NONE || r->cl >= CL_CLOSING || r->cl == CL_PROXY ||
      r->cl == CL_TLS || !client_read_ok(r))
    return SL_TSTAMP_NONE;
  return sl__tadd(r->t_rec, r->lim->record_timeout);
}

static sl_tstamp upstream_record_due(const sl_relay *r) {
  if (r->t_urec == SL_TSTAMP_NONE || r->up < UP_GREETING || r->up == UP_TLS ||
      r->up == UP_QUIT || !upstream_read_ok(r))
    return SL_TSTAMP_NONE;
  return sl__tadd(r->t_urec, r->lim->record_timeout);
}

sl_tstamp sl_relay_next_deadline(const sl_relay *r) {
  if (!r || r->end_sent)
    return SL_TSTAMP_NONE;
  const sl_limits *l = r->lim;
  sl_tstamp t = SL_TSTAMP_NONE;
  if (r->starved)
    t = sl__tmin(t, r->t_retry);
  if (r->cl == CL_PROXY)
    t = sl__tmin(t, sl__tadd(r->t_phase, l->proxy_header_timeout));
  if (r->cl == CL_TLS)
    t = sl__tmin(t, sl__tadd(r->t_phase, l->tls_handshake_timeout));
  if (!r->dnsbl_done && r->cl != CL_PROXY)
    t = sl__tmin(t, sl__tadd(r->stats.start, r->pol->dnsbl_timeout));
  if (r->q_len && sl__q_peek(r) == Q_GREETING && r->prof->greet_delay) {
    /* once passed, the greeting waits on something else (the upstream) */
    sl_tstamp due =
        sl__tadd(r->stats.start, r->prof->greet_delay + r->greet_jitter);
    if (due > r->now)
      t = sl__tmin(t, due);
  }
  /* A closing session sends no more replies.  Once passed, the release
     waits on something else (room in cout while the client reads slowly or
     a stutter pause runs, the ring, an upstream reply), each with its own
     wake-up: a release time left here would be due forever and a driver
     would spin on handle_expiry (guarantee 7). */
  if (r->cl < CL_CLOSING && r->t_release > r->now)
    t = sl__tmin(t, r->t_release);
  if (r->cl < CL_CLOSING && r->t_bye != SL_TSTAMP_NONE)
    t = sl__tmin(t, sl__tadd(r->t_bye, l->send_timeout));
  if (r->cl < CL_CLOSING && r->t_starved != SL_TSTAMP_NONE)
    t = sl__tmin(t, sl__tadd(r->t_starved, l->send_timeout));
  if (r->up != UP_NONE && r->up != UP_READY)
    t = sl__tmin(t, r->t_up);
  if (r->up == UP_READY && r->up_out)
    t = sl__tmin(t, r->t_up);
  if (r->uout.len && r->up != UP_CONNECTING && r->up != UP_TLS)
    t = sl__tmin(t, sl__tadd(r->t_uout, l->upstream_command_timeout));
  t = sl__tmin(t, upstream_record_due(r));
  t = sl__tmin(t, client_record_due(r));
  if (r->cl < CL_CLOSED) {
    if (r->cl_eof && r->cl < CL_CLOSING)
      t = sl__tmin(t, sl__tadd(r->t_client, l->command_timeout));
    if (waiting_for_client(r))
      t = sl__tmin(
          t, sl__tadd(r->t_client, (r->cl == CL_DATA || r->cl == CL_DISCARD ||
                                    r->cl == CL_BDAT)
                                       ? l->data_block_timeout
                                       : l->command_timeout));
    if (r->cout.len && !r->greet_held) {
      t = sl__tmin(t, sl__tadd(r->t_client, l->send_timeout));
      if (r->prof->stutter_bytes && r->t_stutter > r->now)
        t = sl__tmin(t, r->t_stutter);
    }
    if (sl__throttled(r) && r->bucket.tokens == 0) /* until the next token */
      t = sl__tmin(t, sl_tbucket_next(&r->bucket, r->prof->data_rate));
    t = sl__tmin(t, sl__tadd(r->stats.start, l->session_timeout));
  }
  /* What is due but waits for a pool buffer is retried, not spun on. */
  if (r->starved && t <= r->now)
    t = r->t_retry;
  return t;
}

/* Ends the session with a goodbye that jumps the queue: the replies still
   owed will never come (timeouts, the session cap). */
static void force_close(sl_relay *r, enum local_reply id) {
  if (r->cl >= CL_CLOSING)
    return;
  if (r->cl_eof) {
    /* The client left: no goodbye can reach it, and one that waits for a
       pool buffer would keep the session open past its timeouts
       (guarantee 7). */
    abort_now(r);
    if (id == R_TIMEOUT)
      r->stats.end_reason = SL_END_TIMEOUT;
    return;
  }
  if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT || r->up_out)
    sl__up_close(r);
  r->q_len = 0;
  sl__msize_clear(r);
  r->q_sync = 0;
  r->wait_354 = r->body_early = r->quiet = 0;
  r->no_input = 1;
  r->tls_pending = 0;
  if (r->greet_held) {
    sl__buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl == CL_PROXY || r->cl == CL_TLS) {
    sl__client_close_after_reply(r, SL_END_TIMEOUT);
    return;
  }
  r->cl = CL_CMD;
  r->cmd_now = SL_CMD_NONE; /* answers no command */
  sl__q_push_local(r, id);
  /* Nothing more is read: the unread input gives its buffer back, which a
     starved pool may need for the goodbye itself (guarantee 7). */
  sl__buf_release(r, &r->cin);
  r->t_rec = SL_TSTAMP_NONE;
  if (r->t_bye == SL_TSTAMP_NONE)
    r->t_bye = r->now;
}

int sl_relay_handle_expiry(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  r->expire = 1; /* step_expiry() runs the timers */
  return leave(r);
}

/* The timers due at r->now, once the ring has room for everything they may
   push (a DNSBL verdict, a close, an upstream failure: guarantee 10). */
static int step_expiry(sl_relay *r) {
  if (!r->expire || sl__ring_free(r) < RING_CAP - 1)
    return 0;
  r->expire = 0;
  sl_tstamp now = r->now;
  const sl_limits *l = r->lim;
  if (!r->dnsbl_done && r->cl != CL_PROXY &&
      now >= sl__tadd(r->stats.start, r->pol->dnsbl_timeout))
    sl__dnsbl_finish(r); /* late answers count as "not listed" */
  if (r->cl < CL_CLOSING) {
    if ((r->cl == CL_PROXY &&
         now >= sl__tadd(r->t_phase, l->proxy_header_timeout)) ||
        (r->cl == CL_TLS &&
         now >= sl__tadd(r->t_phase, l->tls_handshake_timeout))) {
      force_close(r, R_TIMEOUT);
    } else if (r->t_bye != SL_TSTAMP_NONE &&
               now >= sl__tadd(r->t_bye, l->send_timeout)) {
      /* The goodbye of a forced close still found no buffer (or no
         reader) in a send timeout: close without it (guarantee 7). */
      r->stats.end_reason = SL_END_TIMEOUT;
      abort_now(r);
      r->stats.end_reason = SL_END_TIMEOUT;
      return 1;
    } else if (r->t_starved != SL_TSTAMP_NONE &&
               now >= sl__tadd(r->t_starved, l->send_timeout)) {
      /* The pool has refused every buffer for a send timeout: the session
         cannot get on, so it ends with a 421 (guarantee 7). */
      force_close(r, R_TEMPFAIL);
    } else if (r->cout.len && !r->greet_held &&
               now >= sl__tadd(r->t_client, l->send_timeout)) {
      /* The client does not read: no goodbye can reach it. */
      r->stats.end_reason = SL_END_TIMEOUT;
      abort_now(r);
      r->stats.end_reason = SL_END_TIMEOUT;
      return 1;
    } else if (waiting_for_client(r) &&
               now >= sl__tadd(r->t_client,
                               (r->cl == CL_DATA || r->cl == CL_DISCARD ||
                                r->cl == CL_BDAT)
                                   ? l->data_block_timeout
                                   : l->command_timeout)) {
      force_close(r, R_TIMEOUT);
    } else if (r->cl_eof && now >= sl__tadd(r->t_client, l->command_timeout)) {
      /* The client left with commands still unread, and the relay cannot
         get on with them (a pool refusing buffers): they get no more time
         than a command would (guarantee 7). */
      force_close(r, R_TIMEOUT);
    } else if (now >= client_record_due(r)) {
      force_close(r, R_TIMEOUT); /* a line dripping in */
    } else if (now >= sl__tadd(r->stats.start, l->session_timeout)) {
      force_close(r, R_TIMEOUT);
    }
  } else if (r->cl == CL_CLOSING && r->cout.len && !r->greet_held &&
             (now >= sl__tadd(r->t_client, l->send_timeout) ||
              now >= sl__tadd(r->stats.start, l->session_timeout))) {
    /* A goodbye still being written when the client stops reading it, or
       read so slowly that the session passes its cap: the session ends
       without the rest of it (guarantee 7), for the reason it was
       closing. */
    abort_now(r);
    return 1;
  }
  if (now >= upstream_record_due(r)) {
    sl__up_fail(r, SL_UPFAIL_TIMEOUT); /* a reply line dripping in */
    return 1;
  }
  if (r->up != UP_NONE && r->up != UP_QUIT && r->t_up != SL_TSTAMP_NONE &&
      now >= r->t_up && (r->up != UP_READY || r->up_out))
    sl__up_fail(r, SL_UPFAIL_TIMEOUT);
  else if (r->up == UP_QUIT &&
           now >= sl__tadd(r->t_uout, l->upstream_command_timeout))
    sl__up_close(r);
  else if (r->uout.len && r->up == UP_READY &&
           now >= sl__tadd(r->t_uout, l->upstream_command_timeout))
    sl__up_fail(r, SL_UPFAIL_TIMEOUT);
  return 1;
}

unsigned sl_relay_want(const sl_relay *r) {
  if (!r)
    return 0;
  unsigned w = 0;
  if (r->ring_len)
    w |= SL_WANT_REQUESTS;
  if (r->end_sent)
    return r->ring_len ? w : SL_CLOSED;
  if (client_read_ok(r))
    w |= SL_WANT_CLIENT_READ;
  if (r->cout.len && !r->greet_held &&
      (!r->prof->stutter_bytes || r->now >= r->t_stutter))
    w |= SL_WANT_CLIENT_WRITE;
  if (upstream_read_ok(r))
    w |= SL_WANT_UPSTREAM_READ;
  if (r->uout.len && r->up != UP_CONNECTING && r->up != UP_TLS &&
      r->up != UP_NONE)
    w |= SL_WANT_UPSTREAM_WRITE;
  return w;
}

int sl_relay_last_error(const sl_relay *r) {
  return r ? -(int)r->err : SL_ERR_INVALID_ARGUMENT;
}

const sl_stats *sl_relay_stats(const sl_relay *r) {
  return r ? &r->stats : NULL;
}

const sl_addr *sl_relay_client_addr(const sl_relay *r) {
  return r ? &r->info.client : NULL;
}
