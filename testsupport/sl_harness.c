/* sl_harness.c: a test driver around one relay; see sl_harness.h. */
#include "sl_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_oracle.h"

void sl_bytes_add(sl_bytes *b, const void *p, size_t n) {
  if (!n)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
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

void sl_bytes_free(sl_bytes *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

void sl_harness_defaults(sl_harness *h) {
  memset(h, 0, sizeof(*h));
  sl_limits_default(&h->limits);
  sl_policy_default(&h->policy);
  h->policy.hostname = "mx.sluice.test";
  /* The harness plays an operator whose upstream does relay control, so
     recipients of any domain pass (relay_domains = *); the relay-control
     transcripts and tests set their own list with "set relay_domains". */
  h->policy.rcpt.flags = SL_RCPT_ANY_DOMAIN;
  h->info.client.family = SL_AF_INET;
  h->info.client.bytes[0] = 192;
  h->info.client.bytes[2] = 2;
  h->info.client.bytes[3] = 1;
  h->info.client.port = 40000;
  h->info.local.family = SL_AF_INET;
  h->info.local.bytes[0] = 198;
  h->info.local.bytes[1] = 51;
  h->info.local.bytes[2] = 100;
  h->info.local.bytes[3] = 1;
  h->info.local.port = 25;
  h->now = 1000 * SL_SEC;
}

static void fail(sl_harness *h, const char *what) {
  if (!h->failure[0])
    snprintf(h->failure, sizeof(h->failure), "%s", what);
}

static void check(sl_harness *h) {
  if (h->oracle && !h->failure[0]) {
    char why[400];
    sl_oracle_stats(h->oracle, sl_relay_stats(h->r), sl_relay_want(h->r));
    if (sl_oracle_check(h->oracle, h->r, h->now, why, sizeof(why)) != 0)
      fail(h, why);
  }
  int e = sl_relay_last_error(h->r);
  if (e) {
    char why[96];
    snprintf(why, sizeof(why), "relay API error %s", sl_err_name(e));
    fail(h, why);
  }
}

static void on_request(sl_harness *h, const sl_request *q) {
  if (h->nlog < SL_HARNESS_LOG_MAX)
    h->log[h->nlog++] = *q;
  if (h->oracle)
    sl_oracle_request(h->oracle, q);
  switch (q->type) {
  case SL_REQ_CONNECT_UPSTREAM:
    if (h->pending_connect || h->upstream_open)
      fail(h, "CONNECT_UPSTREAM while an upstream leg is open");
    h->pending_connect = q->id;
    break;
  case SL_REQ_STARTTLS_CLIENT:
    h->pending_tls_client = q->id;
    break;
  case SL_REQ_STARTTLS_UPSTREAM:
    h->pending_tls_upstream = q->id;
    break;
  case SL_REQ_DNSBL_LOOKUP:
    if (q->dnsbl.zone < SL_DNSBL_ZONES_MAX)
      h->pending_dnsbl[q->dnsbl.zone] = q->id;
    break;
  case SL_REQ_RCPT_CHECK:
    if (h->pending_check)
      fail(h, "RCPT_CHECK while another is out");
    h->pending_check = q->id;
    h->check = *q;
    snprintf(h->check_sender, sizeof(h->check_sender), "%s", q->check.sender);
    snprintf(h->check_rcpt, sizeof(h->check_rcpt), "%s", q->check.rcpt);
    snprintf(h->check_helo, sizeof(h->check_helo), "%.*s",
             (int)q->check.helo_len, q->check.helo);
    /* the AUTH user only with its mechanism, after a successful AUTH */
    if (!q->check.sasl_username || !q->check.sasl_method ||
        q->check.sasl_username_len > SL_AUTH_USER_MAX ||
        (q->check.sasl_username_len && !q->check.authed) ||
        (q->check.sasl_username_len != 0) != (q->check.sasl_method[0] != 0))
      fail(h, "RCPT_CHECK with a SASL user out of place");
    else
      snprintf(h->check_user, sizeof(h->check_user), "%.*s",
               (int)q->check.sasl_username_len, q->check.sasl_username);
    break;
  case SL_REQ_CLOSE_UPSTREAM:
    /* that connection is gone, with whatever it had still to deliver */
    h->pending_upstream.len = 0;
    h->upstream_open = 0;
    h->pending_connect = 0;
    h->pending_tls_upstream = 0;
    h->pending_filter = 0; /* a held message dies with its leg */
    h->upstream_closed++;
    break;
  case SL_REQ_CLOSE_CLIENT:
    h->pending_client.len = 0;
    h->client_closed = 1;
    break;
  case SL_REQ_FILTER:
    h->pending_filter = q->id;
    break;
  default:
    break;
  }
}

void sl_harness_pump(sl_harness *h) {
  for (int guard = 0; guard < 10000; guard++) {
    int progress = 0;
    sl_request q;
    while (sl_relay_next_request(h->r, &q)) {
      on_request(h, &q);
      progress = 1;
    }
    size_t n;
    const uint8_t *p = sl_relay_client_out(h->r, &n, h->now);
    if (p && n && !h->client_closed && !h->client_stalled) {
      if (h->out_chunk && n > h->out_chunk)
        n = h->out_chunk;
      sl_bytes_add(&h->client_out, p, n);
      if (h->oracle)
        sl_oracle_client_out(h->oracle, p, n);
      sl_relay_client_out_ack(h->r, n, h->now);
      progress = 1;
    }
    p = sl_relay_upstream_out(h->r, &n, h->now);
    if (p && n && h->upstream_open) {
      if (h->out_chunk && n > h->out_chunk)
        n = h->out_chunk;
      sl_bytes_add(&h->upstream_out, p, n);
      if (h->oracle)
        sl_oracle_upstream_out(h->oracle, p, n);
      sl_relay_upstream_out_ack(h->r, n, h->now);
      progress = 1;
    }
    if (!progress)
      break;
  }
  check(h);
}

/* The pool the relay sees: the bufpool, noting every refusal. */
static uint8_t *counted_get(void *ctx, uint32_t min, uint32_t *cap) {
  sl_harness *h = ctx;
  uint8_t *b = h->inner_pool.get(h->inner_pool.ctx, min, cap);
  if (!b)
    h->pool_refused = 1;
  return b;
}

static void counted_put(void *ctx, uint8_t *buf, uint32_t cap) {
  sl_harness *h = ctx;
  h->inner_pool.put(h->inner_pool.ctx, buf, cap);
}

int sl_harness_start(sl_harness *h, uint32_t pool_buffers, int with_oracle,
                     uint64_t seed) {
  uint32_t ns = pool_buffers * 2, nl = pool_buffers;
  size_t need = sl_bufpool_need(h->limits.small_buffer_size, ns,
                                h->limits.buffer_size, nl);
  h->pool_mem = malloc(need);
  size_t rs = sl_relay_size(&h->limits);
  h->relay_mem = malloc(rs);
  if (!h->pool_mem || !h->relay_mem)
    return SL_ERR_NOBUF;
  int e = sl_bufpool_init(&h->bufpool, h->pool_mem, need,
                          h->limits.small_buffer_size, ns,
                          h->limits.buffer_size, nl);
  if (e)
    return e;
  sl_bufpool_as_pool(&h->bufpool, &h->inner_pool);
  h->pool.get = counted_get;
  h->pool.put = counted_put;
  h->pool.ctx = h;
  if (with_oracle)
    h->oracle = sl_oracle_new(&h->limits, &h->policy, &h->info);
  e = sl_relay_init(&h->r, h->relay_mem, rs, &h->limits, &h->policy, &h->pool,
                    &h->info, seed, h->now);
  if (e)
    return e;
  sl_harness_pump(h);
  return 0;
}

void sl_harness_free(sl_harness *h) {
  if (h->r)
    sl_relay_free(h->r);
  if (h->oracle)
    sl_oracle_free(h->oracle);
  free(h->pool_mem);
  free(h->relay_mem);
  sl_bytes_free(&h->client_out);
  sl_bytes_free(&h->upstream_out);
  sl_bytes_free(&h->client_in);
  sl_bytes_free(&h->upstream_in);
  sl_bytes_free(&h->filter_content);
  sl_bytes_free(&h->filter_user);
  sl_bytes_free(&h->pending_client);
  sl_bytes_free(&h->pending_upstream);
  h->r = NULL;
}

/* Offers the pending bytes of one peer; returns how many were taken. */
static size_t offer(sl_harness *h, int up) {
  sl_bytes *pb = up ? &h->pending_upstream : &h->pending_client;
  size_t done = 0;
  while (done < pb->len) {
    size_t want = pb->len - done;
    if (h->in_chunk && want > h->in_chunk)
      want = h->in_chunk;
    size_t cap;
    uint8_t *buf = up ? sl_relay_upstream_in_buf(h->r, &cap, h->now)
                      : sl_relay_client_in_buf(h->r, &cap, h->now);
    if (!buf || !cap)
      break;
    if (want > cap)
      want = cap;
    const uint8_t *p = pb->p + done;
    memcpy(buf, p, want);
    if (up) {
      sl_bytes_add(&h->upstream_in, p, want);
      if (h->oracle)
        sl_oracle_upstream_in(h->oracle, p, want);
      sl_relay_upstream_in_ack(h->r, want, h->now);
    } else {
      sl_bytes_add(&h->client_in, p, want);
      if (h->oracle)
        sl_oracle_client_in(h->oracle, p, want);
      sl_relay_client_in_ack(h->r, want, h->now);
    }
    done += want;
    sl_harness_pump(h);
    if (pb->len < done)
      return done; /* the connection closed: its pending bytes are gone */
  }
  if (done) {
    memmove(pb->p, pb->p + done, pb->len - done);
    pb->len -= done;
  }
  return done;
}

/* After every step: pending input first, then ends of stream behind it. */
static void settle(sl_harness *h) {
  for (int round = 0; round < 4; round++) {
    size_t moved = offer(h, 0) + offer(h, 1);
    if (h->eof_client == 1 && !h->pending_client.len) {
      h->eof_client = 2;
      sl_relay_client_eof(h->r, h->now);
      sl_harness_pump(h);
      moved = 1;
    }
    if (h->eof_upstream == 1 && !h->pending_upstream.len) {
      h->eof_upstream = 2;
      sl_relay_upstream_eof(h->r, h->now);
      sl_harness_pump(h);
      moved = 1;
    }
    if (!moved)
      break;
  }
}

static size_t feed(sl_harness *h, int up, const uint8_t *p, size_t n,
                   size_t chunk) {
  sl_bytes *pb = up ? &h->pending_upstream : &h->pending_client;
  if ((up && !h->upstream_open) || (!up && h->client_closed))
    return 0; /* nobody is connected to receive them */
  sl_bytes_add(pb, p, n);
  size_t saved = h->in_chunk;
  h->in_chunk = chunk;
  size_t took = offer(h, up);
  h->in_chunk = saved;
  settle(h);
  return took;
}

size_t sl_harness_client(sl_harness *h, const void *p, size_t n, size_t chunk) {
  return feed(h, 0, p, n, chunk);
}

size_t sl_harness_upstream(sl_harness *h, const void *p, size_t n,
                           size_t chunk) {
  return feed(h, 1, p, n, chunk);
}

void sl_harness_client_eof(sl_harness *h) {
  h->eof_client = 1;
  settle(h);
}

void sl_harness_upstream_eof(sl_harness *h) {
  h->eof_upstream = 1;
  settle(h);
}

/* Hands an answer to the relay (and the oracle), then lets things settle. */
static void deliver(sl_harness *h, const sl_completion *c,
                    sl_request_type type) {
  if (h->oracle)
    sl_oracle_completed(h->oracle, type, c->status);
  sl_relay_complete(h->r, c, h->now);
  sl_harness_pump(h);
  settle(h);
}

static int answer(sl_harness *h, uint32_t *pending, sl_request_type type,
                  sl_status st) {
  if (!*pending)
    return -1;
  sl_completion c;
  memset(&c, 0, sizeof(c));
  c.id = *pending;
  c.status = st;
  *pending = 0;
  if (type == SL_REQ_CONNECT_UPSTREAM && st == SL_STATUS_OK)
    h->upstream_open = 1;
  /* Plaintext a peer sent before the handshake is consumed by the TLS
     layer (as a bad ClientHello or record), never by the relay. */
  if (type == SL_REQ_STARTTLS_CLIENT)
    h->pending_client.len = 0;
  if (type == SL_REQ_STARTTLS_UPSTREAM)
    h->pending_upstream.len = 0;
  deliver(h, &c, type);
  return 0;
}

int sl_harness_connect(sl_harness *h, sl_status st) {
  return answer(h, &h->pending_connect, SL_REQ_CONNECT_UPSTREAM, st);
}
int sl_harness_tls_client(sl_harness *h, sl_status st) {
  return answer(h, &h->pending_tls_client, SL_REQ_STARTTLS_CLIENT, st);
}
int sl_harness_tls_upstream(sl_harness *h, sl_status st) {
  return answer(h, &h->pending_tls_upstream, SL_REQ_STARTTLS_UPSTREAM, st);
}

static void harness_tap(void *ctx, sl_filter_item item, const uint8_t *p,
                        size_t n) {
  sl_harness *h = ctx;
  if ((unsigned)item < 8)
    h->filter_items[item]++;
  if (item == SL_FI_BODY)
    sl_bytes_add(&h->filter_content, p, n);
  if (h->oracle)
    sl_oracle_filter_item(h->oracle, item, p, n);
  if (item == SL_FI_AUTH_USER) {
    h->filter_user.len = 0;
    sl_bytes_add(&h->filter_user, p, n);
  }
}

void sl_harness_filters_on(sl_harness *h, uint32_t skip) {
  h->info.flags |= SL_CONN_FILTER;
  h->info.filter_skip = skip;
  h->info.filter_tap = harness_tap;
  h->info.filter_ctx = h;
}

int sl_harness_filter_verdict(sl_harness *h, int verdict, const char *text) {
  if (!h->pending_filter)
    return -1;
  uint32_t id = h->pending_filter;
  h->pending_filter = 0;
  int rc = sl_relay_filter_verdict(h->r, id, verdict, (const uint8_t *)text,
                                   text ? strlen(text) : 0, h->now);
  if (rc == 0 && h->oracle)
    sl_oracle_filter_verdict(h->oracle, verdict);
  sl_harness_pump(h);
  return rc;
}

int sl_harness_dnsbl(sl_harness *h, uint32_t zone, sl_status st,
                     const uint32_t *answers, uint8_t n) {
  if (zone >= SL_DNSBL_ZONES_MAX || !h->pending_dnsbl[zone])
    return -1;
  sl_completion c;
  memset(&c, 0, sizeof(c));
  c.id = h->pending_dnsbl[zone];
  c.status = st;
  if (n > SL_DNSBL_ANSWERS_MAX)
    n = SL_DNSBL_ANSWERS_MAX;
  for (uint8_t i = 0; i < n; i++)
    c.dnsbl_answers[i] = answers[i];
  c.ndnsbl_answers = n;
  h->pending_dnsbl[zone] = 0;
  deliver(h, &c, SL_REQ_DNSBL_LOOKUP);
  return 0;
}

int sl_harness_check(sl_harness *h, sl_status st, uint16_t code,
                     const char *text) {
  if (!h->pending_check)
    return -1;
  sl_completion c;
  memset(&c, 0, sizeof(c));
  c.id = h->pending_check;
  c.status = st;
  c.check_code = code;
  if (text)
    snprintf(c.check_text, sizeof(c.check_text), "%s", text);
  h->pending_check = 0;
  deliver(h, &c, SL_REQ_RCPT_CHECK);
  return 0;
}

static void settle(sl_harness *h);

void sl_harness_before_time(sl_harness *h) {
  sl_harness_pump(h);
  settle(h);
  if (!h->oracle || h->failure[0])
    return;
  unsigned holds = 0;
  int dnsbl = 0;
  for (size_t i = 0; i < SL_DNSBL_ZONES_MAX; i++)
    dnsbl |= h->pending_dnsbl[i] != 0;
  if (h->pending_connect || h->pending_tls_client || h->pending_tls_upstream ||
      h->pending_check || dnsbl)
    holds |= SL_HOLD_REQUEST;
  if (h->client_stalled)
    holds |= SL_HOLD_CLIENT_OUT;
  if (h->pool_refused)
    holds |= SL_HOLD_POOL;
  sl_oracle_progress(h->oracle, holds, h->now);
  check(h);
}

/* One expiry at h->now, as a driver runs it. */
static void expire_now(sl_harness *h) {
  sl_harness_before_time(h);
  if (h->oracle)
    sl_oracle_expiry(h->oracle, h->r, h->now);
  h->pool_refused = 0; /* the relay retries now; a refusal sets it again */
  sl_relay_handle_expiry(h->r, h->now);
  sl_harness_pump(h);
  settle(h);
}

void sl_harness_advance(sl_harness *h, sl_duration d) {
  sl_tstamp target = h->now + d;
  for (int guard = 0; guard < 100000; guard++) {
    sl_tstamp t = sl_relay_next_deadline(h->r);
    if (t == SL_TSTAMP_NONE || t > target)
      break;
    sl_harness_before_time(h);
    if (t > h->now)
      h->now = t;
    expire_now(h);
    if (sl_relay_next_deadline(h->r) <= h->now && guard > 1000) {
      fail(h, "deadline does not advance after handle_expiry (guarantee 7)");
      break;
    }
  }
  sl_harness_before_time(h);
  h->now = target;
  expire_now(h);
}

int sl_harness_next_deadline(sl_harness *h, sl_duration max) {
  sl_tstamp t = sl_relay_next_deadline(h->r);
  if (t == SL_TSTAMP_NONE || t > h->now + max)
    return 0;
  sl_harness_before_time(h);
  if (t > h->now)
    h->now = t;
  expire_now(h);
  return 1;
}

size_t sl_harness_events(const sl_harness *h, sl_event_kind kind) {
  size_t n = 0;
  for (size_t i = 0; i < h->nlog; i++)
    if (h->log[i].type == SL_REQ_EVENT && h->log[i].ev.kind == kind)
      n++;
  return n;
}

void sl_request_describe(const sl_request *q, char *out, size_t len) {
  const sl_event *e = &q->ev;
  switch (q->type) {
  case SL_REQ_CONNECT_UPSTREAM:
    snprintf(out, len, "%s attempt=%u", sl_request_name(q->type),
             q->connect.attempt);
    return;
  case SL_REQ_DNSBL_LOOKUP:
    snprintf(out, len, "%s zone=%u", sl_request_name(q->type), q->dnsbl.zone);
    return;
  case SL_REQ_EVENT:
    break;
  default:
    snprintf(out, len, "%s", sl_request_name(q->type));
    return;
  }
  int n = snprintf(out, len, "event %s", sl_event_name(e->kind));
  if (n < 0 || (size_t)n >= len)
    return;
  out += n;
  len -= (size_t)n;
  switch (e->kind) {
  case SL_EV_PREGREET:
    snprintf(out, len, " bytes=%u", e->pregreet.bytes);
    break;
  case SL_EV_DNSBL_SCORE:
    snprintf(out, len, " score=%d", e->dnsbl.score);
    break;
  case SL_EV_TARPIT:
    snprintf(out, len, " reason=%s", sl_tarpit_reason_name(e->tarpit.reason));
    break;
  case SL_EV_STARTTLS_INJECTION:
    snprintf(out, len, " bytes=%u", e->starttls_injection.bytes);
    break;
  case SL_EV_SMUGGLING:
    snprintf(out, len, " violation=%s",
             sl_violation_name(e->smuggling.violation));
    break;
  case SL_EV_UPSTREAM_READY:
    snprintf(out, len, " attempt=%u", e->upstream_ready.attempt);
    break;
  case SL_EV_UPSTREAM_FAILED:
    snprintf(out, len, " failure=%s",
             sl_upstream_failure_name(e->upstream_failed.failure));
    break;
  case SL_EV_MESSAGE:
    snprintf(out, len, " code=%u size=%llu", e->message.code,
             (unsigned long long)e->message.size);
    break;
  case SL_EV_SESSION_END:
    snprintf(out, len, " reason=%s", sl_end_reason_name(e->session_end.reason));
    break;
  case SL_EV_REFUSAL:
    snprintf(out, len, " command=%s code=%u",
             sl_command_name(e->refusal.command), e->refusal.code);
    break;
  case SL_EV_SCREEN_PASSED: /* no payload */
    break;
  }
}

size_t sl_harness_requests(const sl_harness *h, sl_request_type type) {
  size_t n = 0;
  for (size_t i = 0; i < h->nlog; i++)
    if (h->log[i].type == type)
      n++;
  return n;
}

int sl_harness_closed(const sl_harness *h) {
  return (sl_relay_want(h->r) & SL_CLOSED) != 0;
}
