/*
 * fuzz_relay.c: the relay driven by an operation language, with the
 * protocol oracle (testsupport/sl_oracle.h) checked after every step.
 *
 * Input = an 8-byte header choosing mode, policy and limits, then ops until
 * the input ends.  The language is documented in fuzz/README.md ("The relay
 * op language"); fuzz/tools/make-seeds.py writes it.  Missing header bytes
 * read as 0 (defaults); an unknown op byte maps to an op by its value, so
 * every mutation stays meaningful.  At the end the client closes and the
 * clock runs until the session ends (guarantee 7).
 *
 * Any oracle violation or relay API error prints the reason and aborts, so
 * libFuzzer, AFL++ and the standalone runner all see a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_harness.h"
#include "sl_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rd {
  const uint8_t *p;
  size_t n, i;
} rd;

static uint8_t get8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static uint16_t get16(rd *r) {
  uint16_t lo = get8(r);
  return (uint16_t)(lo | (uint16_t)(get8(r) << 8));
}

static const sl_dnsbl_zone zones[3] = {
    {"zen.example.org", 10, {0x7f000002, 0x7f000004}, 2},
    {"bl.example.net", 5, {0}, 0},
    {"wl.example.com", -20, {0x7f000a01}, 1}};

#define HELD_MAX 64

typedef struct fz {
  sl_harness h;
  uint8_t *held[HELD_MAX]; /* pool buffers the driver took (exhaustion) */
  uint32_t heldcap[HELD_MAX];
  size_t nheld;
  uint32_t held_small, held_large;
  sl_duration bound; /* guarantee 7: time allowed after the client left */
} fz;

/* FUZZ_RELAY_TRACE=1: on a violation, print what crossed the boundary. */
static void dump(const char *name, const sl_bytes *b) {
  fprintf(stderr, "--- %s (%zu bytes)\n", name, b->len);
  for (size_t i = 0; i < b->len && i < 8192; i++) {
    uint8_t c = b->p[i];
    if (c == '\n')
      fputs("\\n\n", stderr);
    else if (c == '\r')
      fputs("\\r", stderr);
    else if (c < 0x20 || c >= 0x7f)
      fprintf(stderr, "\\x%02x", c);
    else
      fputc(c, stderr);
  }
  fputc('\n', stderr);
}

static void trace(fz *f) {
  if (!f || !getenv("FUZZ_RELAY_TRACE"))
    return;
  sl_harness *h = &f->h;
  dump("client in", &h->client_in);
  dump("client out", &h->client_out);
  dump("upstream out", &h->upstream_out);
  dump("upstream in", &h->upstream_in);
  fprintf(stderr, "--- requests (now %llu)\n", (unsigned long long)h->now);
  for (size_t i = 0; i < h->nlog; i++) {
    char line[128];
    sl_request_describe(&h->log[i], line, sizeof line);
    fprintf(stderr, "  id %u %s\n", h->log[i].id, line);
  }
}

static void die(fz *f, const char *what) {
  trace(f);
  fprintf(stderr, "fuzz_relay: %s\n", what);
  if (f && f->h.failure[0])
    fprintf(stderr, "fuzz_relay: %s\n", f->h.failure);
  abort();
}

static void verify(fz *f) {
  if (!f->h.failure[0])
    return;
  die(f, "violation");
}

/* Guarantee 9: the relay is drained and checked before time moves or an
   expiry runs (sl_harness_before_time). */
static void before_time(fz *f) {
  sl_harness_before_time(&f->h);
  verify(f);
}

static void expire(fz *f) {
  sl_harness *h = &f->h;
  before_time(f);
  if (h->oracle)
    sl_oracle_expiry(h->oracle, h->r, h->now);
  h->pool_refused = 0; /* the relay retries now; a refusal sets it again */
  sl_relay_handle_expiry(h->r, h->now);
  sl_harness_pump(h);
  verify(f);
}

/* The clock moves to target, running every deadline on the way as a driver
   would (each one its own handle_expiry call). */
static void advance_to(fz *f, sl_tstamp target) {
  sl_harness *h = &f->h;
  for (int guard = 0; guard < 256; guard++) {
    sl_tstamp t = sl_relay_next_deadline(h->r);
    if (t == SL_TSTAMP_NONE || t > target)
      break;
    before_time(f);
    if (t > h->now)
      h->now = t;
    expire(f);
  }
  before_time(f);
  if (target > h->now)
    h->now = target;
  expire(f);
}

static void tarpit_profile(sl_tarpit *t, unsigned sel) {
  memset(t, 0, sizeof(*t));
  switch (sel & 3) {
  case 1:
    t->greet_delay = 2 * SL_SEC;
    t->reply_delay = 1 * SL_SEC;
    t->jitter = 500 * SL_MSEC;
    break;
  case 2:
    t->stutter_bytes = 16;
    t->stutter_interval = 1 * SL_SEC;
    t->reply_delay = 100 * SL_MSEC;
    break;
  case 3:
    t->data_rate = 64;
    t->greet_delay = 1 * SL_SEC;
    break;
  default:
    break;
  }
}

static void configure(fz *f, rd *r, uint32_t *pool_buffers, uint64_t *seed) {
  sl_harness *h = &f->h;
  sl_limits *l = &h->limits;
  sl_policy *p = &h->policy;
  uint8_t b0 = get8(r), b1 = get8(r), b2 = get8(r), b3 = get8(r);
  uint8_t b4 = get8(r), b5 = get8(r);
  uint16_t sd = get16(r);

  /* b0: mode and flags */
  p->mode = (b0 & 1) ? SL_MODE_SCREEN_FIRST : SL_MODE_PASSTHROUGH;
  if (b0 & 2)
    p->features |= SL_FEAT_STARTTLS;
  if (b0 & 4) {
    p->features |= SL_FEAT_AUTH;
    p->auth_requires_tls = (b0 & 0x40) ? 0 : 1;
    p->auth_mechanisms = "PLAIN LOGIN";
  }
  if (b0 & 8)
    p->lenient = SL_LENIENT_NORMALIZE_BARE_LF;
  p->forbid_unauth_pipelining = (b0 & 0x10) ? 1 : 0;
  if (b0 & 0x20)
    h->info.flags |= SL_CONN_EXPECT_PROXY;
  p->greet_teaser = (b0 & 0x80) ? 0 : 1;

  /* b1: identity, upstream TLS, VRFY, admission */
  p->identity = (sl_identity)(b1 & 3);
  p->upstream_tls = (sl_upstream_tls)((b1 >> 2) & 3);
  p->vrfy = (sl_vrfy_policy)(((b1 >> 4) & 3) % 3);
  h->info.admission = (sl_admission)(((b1 >> 6) & 3) % 3);
  if ((b1 >> 6) == 3)
    h->info.client_name = "client.example.org";

  /* b2: limits */
  if (b2 & 1) { /* small lines */
    l->command_line_max = 80;
    l->path_max = 16;
    l->domain_max = 16;
    l->text_line_max = 80;
    l->reply_line_max = 64;
    l->reply_max = 256;
    l->auth_line_max = 200;
  }
  if (b2 & 2) { /* small buffers */
    l->small_buffer_size = 304;
    l->buffer_size = l->reply_max + 512 > 1024 ? l->reply_max + 512 : 1024;
    if (l->buffer_size % 8)
      l->buffer_size += 8 - l->buffer_size % 8;
    if (l->auth_line_max + 2 > l->buffer_size)
      l->auth_line_max = l->buffer_size - 2;
    if (l->command_line_max > l->small_buffer_size)
      l->command_line_max = l->small_buffer_size;
  }
  l->pipeline_max = 2u + ((b2 >> 2) & 7) * 4u;
  if (b2 & 0x20)
    l->recipients_max = 2;
  if (b2 & 0x40)
    l->message_size_max = 200;
  if (b2 & 0x80) {
    l->errors_max = 3;
    l->junk_commands_max = 3;
    l->session_timeout = 900 * SL_SEC;
  }

  /* b3: tarpit profiles and pregreet */
  tarpit_profile(&p->normal, b3);
  tarpit_profile(&p->suspect, (unsigned)(b3 >> 2) | 1u);
  p->pregreet_action = (sl_action)((b3 >> 4) & 3);
  p->pregreet_score = 5;
  if (b3 & 0x40)
    p->features &= ~(uint32_t)SL_FEAT_PIPELINING;
  if (b3 & 0x80)
    p->features &= ~(uint32_t)SL_FEAT_CHUNKING;

  /* b4: DNSBL */
  p->ndnsbl = (uint8_t)(b4 & 3);
  p->dnsbl = p->ndnsbl ? zones : NULL;
  p->dnsbl_action = (sl_action)((b4 >> 2) & 3);
  p->tarpit_score = (b4 & 0x10) ? 5 : INT32_MAX;
  p->reject_score = (b4 & 0x20) ? 10 : INT32_MAX;
  p->allow_score = (b4 & 0x40) ? -10 : INT32_MIN;
  p->dnsbl_timeout = (b4 & 0x80) ? 1 * SL_SEC : 5 * SL_SEC;

  /* b5: pool size and output acknowledgement chunks */
  *pool_buffers = 1u + (b5 & 7);
  h->out_chunk = (size_t)(b5 >> 3) * 3;
  *seed = sd;
  /* the seed's top bit: content filters (the 'F' op answers them); bits
     13-14 pick filter_skip */
  if (sd & 0x8000)
    sl_harness_filters_on(h, (sd >> 13) & 3);
  /* bit 10 (with filters on): spool mode, a filtered BDAT goes up as DATA */
  if ((sd & 0x8000) && (sd & 0x0400))
    h->info.flags |= SL_CONN_FILTER_SPOOL;
  /* bit 12: RCPT checks (the 'G' op answers them); in screen-first this
     also holds the MAIL until a RCPT passes */
  p->rcpt_check = (sd >> 12) & 1;
  /* bit 11: the same checks at EHLO/HELO, MAIL and DATA
     (policy.check_stages) */
  if (sd & 0x0800)
    p->check_stages = SL_CHECK_HELO | SL_CHECK_MAIL | SL_CHECK_DATA;
}

static uint8_t *take_buf(fz *f, int large, uint32_t *cap) {
  sl_harness *h = &f->h;
  uint32_t min = large ? h->limits.buffer_size : h->limits.small_buffer_size;
  return h->inner_pool.get(h->inner_pool.ctx, min, cap);
}

static void pool_op(fz *f, uint8_t a) {
  sl_harness *h = &f->h;
  if (a & 0x80) {
    /* give everything back */
    for (size_t i = 0; i < f->nheld; i++)
      h->inner_pool.put(h->inner_pool.ctx, f->held[i], f->heldcap[i]);
    f->nheld = 0;
    f->held_small = f->held_large = 0;
  } else {
    int large = (a & 0x40) != 0;
    unsigned k = (a & 7) + 1u;
    for (unsigned i = 0; i < k && f->nheld < HELD_MAX; i++) {
      uint32_t cap;
      uint8_t *b = take_buf(f, large, &cap);
      if (!b)
        break;
      f->held[f->nheld] = b;
      f->heldcap[f->nheld++] = cap;
      if (cap > h->limits.small_buffer_size)
        f->held_large++;
      else
        f->held_small++;
    }
  }
  if (h->oracle)
    sl_oracle_pool_driver_held(h->oracle, f->held_small, f->held_large);
  sl_harness_pump(h);
}

static sl_status status_of(uint8_t b) { return (sl_status)(b % 3); }

static void feed(fz *f, rd *r, int upstream, int chunked) {
  size_t chunk = chunked ? get8(r) : 0;
  size_t len = get16(r);
  if (len > r->n - r->i)
    len = r->n - r->i;
  const uint8_t *p = r->p + r->i;
  r->i += len;
  if (upstream) {
    if (f->h.upstream_open)
      sl_harness_upstream(&f->h, p, len, chunk);
  } else if (!f->h.client_closed) {
    sl_harness_client(&f->h, p, len, chunk);
  }
}

static void time_op(fz *f, rd *r) {
  static const sl_duration unit[4] = {SL_MSEC, 100 * SL_MSEC, SL_SEC,
                                      10 * SL_SEC};
  uint8_t x = get8(r), y = get8(r);
  advance_to(f, f->h.now + (sl_duration)x * unit[y & 3]);
}

static void next_deadline(fz *f) {
  sl_tstamp t = sl_relay_next_deadline(f->h.r);
  if (t == SL_TSTAMP_NONE || t > f->h.now + 86400 * SL_SEC)
    return;
  before_time(f);
  if (t > f->h.now)
    f->h.now = t;
  expire(f);
}

/* The simulated upstream's EHLO reply with a chosen capability set
   (guarantee 8: the oracle learns it from these bytes and holds the relay
   to it).  mask bits: 0 PIPELINING, 1 CHUNKING, 2 BINARYMIME, 3 8BITMIME,
   4 SMTPUTF8, 5 DSN, 6 SIZE 10240000, 7 STARTTLS, 8 AUTH PLAIN LOGIN,
   9 XCLIENT, 10 ENHANCEDSTATUSCODES, 11 XFORWARD, 12 keywords in lower
   case, 13 refuse EHLO ("502 5.5.2", the client falls back to HELO),
   14 SIZE without a value, 15 a 220 greeting first. */
static void ehlo_op(fz *f, rd *r) {
  static const char *const kw[12] = {"PIPELINING",
                                     "CHUNKING",
                                     "BINARYMIME",
                                     "8BITMIME",
                                     "SMTPUTF8",
                                     "DSN",
                                     "SIZE 10240000",
                                     "STARTTLS",
                                     "AUTH PLAIN LOGIN",
                                     "XCLIENT NAME ADDR PORT PROTO HELO LOGIN",
                                     "ENHANCEDSTATUSCODES",
                                     "XFORWARD NAME ADDR PROTO HELO"};
  uint16_t mask = get16(r);
  char buf[640];
  size_t n = 0;
  if (!f->h.upstream_open)
    return;
  /* The greeting goes alone, so the relay has sent its EHLO before the
     reply arrives, as with a real server. */
  if (mask & 0x8000)
    sl_harness_upstream(&f->h, "220 up.example ESMTP\r\n", 22, 0);
  if (mask & 0x2000) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "502 5.5.2 EHLO?\r\n");
  } else {
    const char *lines[13];
    size_t nl = 0;
    for (unsigned i = 0; i < 12; i++)
      if (mask & (1u << i))
        lines[nl++] = i == 6 && (mask & 0x4000) ? "SIZE" : kw[i];
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250%cup.example\r\n",
                          nl ? '-' : ' ');
    for (size_t i = 0; i < nl; i++) {
      size_t at = n + 4;
      n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250%c%s\r\n",
                            i + 1 < nl ? '-' : ' ', lines[i]);
      if (mask & 0x1000)
        for (size_t j = at; j < n - 2; j++)
          if (buf[j] >= 'A' && buf[j] <= 'Z')
            buf[j] = (char)(buf[j] + 32);
    }
  }
  if (f->h.upstream_open)
    sl_harness_upstream(&f->h, buf, n, 0);
}

static void dnsbl_op(fz *f, rd *r) {
  uint8_t z = get8(r), st = get8(r), n = get8(r) & 7;
  uint32_t answers[8];
  for (uint8_t i = 0; i < n; i++)
    answers[i] = 0x7f000000u | get8(r);
  sl_harness_dnsbl(&f->h, z % 3, status_of(st), answers, n);
}

/* 'F': the filters' verdict on the held message: a verdict (sl_verdict,
   out-of-range values included) and one of the texts, some of which try
   to frame SMTP themselves (guarantee 5). */
static void filter_op(fz *f, rd *r) {
  static const char *const texts[] = {NULL,
                                      "550 5.7.1 spam",
                                      "451 4.7.1 later",
                                      "250 2.0.0 pretend ok",
                                      "550 5.7.1 a\r\n250 2.0.0 injected",
                                      "554-5.7.1 one\r\n554 5.7.1 two",
                                      "421 4.4.2 closing",
                                      "\r\n.\r\nRCPT TO:<x@y>\r\n",
                                      "Eicar-Signature"};
  uint8_t v = get8(r), t = get8(r);
  int verdict = (int)(v % 6); /* 5: out of range, refused by the API */
  int rc = sl_harness_filter_verdict(&f->h, verdict,
                                     texts[t % (sizeof texts / sizeof *texts)]);
  if (rc != 0 && rc != -1 && rc != SL_ERR_UNKNOWN_REQUEST &&
      !(verdict == 5 && rc == SL_ERR_INVALID_ARGUMENT)) {
    fprintf(stderr, "sl_relay_filter_verdict: %d\n", rc);
    abort();
  }
}

/* 'G': the answer to the pending RCPT check (policy service or
   greylisting), a status and one of the codes and texts, some of which try
   to frame SMTP themselves (guarantee 5). */
static void check_op(fz *f, rd *r) {
  static const uint16_t codes[] = {0, 450, 554, 421, 250, 451};
  static const char *const texts[] = {
      "4.7.1 Greylisted", "5.7.1 refused\r\n250 2.1.5 injected", "", NULL};
  uint8_t st = get8(r), k = get8(r);
  sl_harness_check(&f->h, status_of(st), codes[k % 6], texts[(k >> 3) % 4]);
}

static void run_op(fz *f, rd *r) {
  static const char ops[] = "CUTDASsNEeKPXcuH";
  uint8_t op = get8(r);
  /* 'F' (filter verdicts) came later: it is not in the table, so other
     bytes keep the op they always mapped to */
  if (op != 'F' && op != 'G' && (!strchr(ops, op) || op == 0))
    op = (uint8_t)ops[op % (sizeof(ops) - 1)];
  sl_harness *h = &f->h;
  switch (op) {
  case 'C':
    feed(f, r, 0, 0);
    break;
  case 'c':
    feed(f, r, 0, 1);
    break;
  case 'U':
    feed(f, r, 1, 0);
    break;
  case 'u':
    feed(f, r, 1, 1);
    break;
  case 'T':
    time_op(f, r);
    break;
  case 'D':
    next_deadline(f);
    break;
  case 'A':
    sl_harness_connect(h, status_of(get8(r)));
    break;
  case 'S':
    sl_harness_tls_client(h, status_of(get8(r)));
    break;
  case 's':
    sl_harness_tls_upstream(h, status_of(get8(r)));
    break;
  case 'N':
    dnsbl_op(f, r);
    break;
  case 'E':
    sl_harness_client_eof(h);
    break;
  case 'e':
    if (h->upstream_open)
      sl_harness_upstream_eof(h);
    break;
  case 'K':
    h->out_chunk = get8(r);
    break;
  case 'P':
    pool_op(f, get8(r));
    break;
  case 'X':
    sl_relay_abort(h->r, h->now);
    sl_harness_pump(h);
    break;
  case 'H':
    ehlo_op(f, r);
    break;
  case 'F':
    filter_op(f, r);
    break;
  case 'G':
    check_op(f, r);
    break;
  default:
    break;
  }
  verify(f);
}

/* Time the session may still take once the client has gone (guarantee 7):
   every timeout once, plus the tarpit's delays for a full pipeline. */
static sl_duration end_bound(const sl_harness *h) {
  const sl_limits *l = &h->limits;
  sl_duration t = l->proxy_header_timeout + l->command_timeout +
                  l->data_block_timeout + l->send_timeout +
                  l->upstream_connect_timeout + l->upstream_greeting_timeout +
                  l->upstream_command_timeout + l->upstream_data_init_timeout +
                  l->upstream_data_term_timeout + l->tls_handshake_timeout +
                  h->policy.dnsbl_timeout;
  const sl_tarpit *tp[2] = {&h->policy.normal, &h->policy.suspect};
  for (int i = 0; i < 2; i++) {
    t += (sl_duration)(l->pipeline_max + 2) *
         (tp[i]->greet_delay + tp[i]->reply_delay + tp[i]->jitter);
    if (tp[i]->stutter_bytes)
      t += (sl_duration)(l->pipeline_max + 2) *
           ((l->reply_max + 600) / tp[i]->stutter_bytes + 1) *
           tp[i]->stutter_interval;
  }
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz *f = calloc(1, sizeof(*f));
  if (!f)
    return 0;
  rd r = {data, size, 0};
  sl_harness_defaults(&f->h);
  uint32_t pool_buffers;
  uint64_t seed;
  configure(f, &r, &pool_buffers, &seed);
  if (sl_limits_check(&f->h.limits) || sl_policy_check(&f->h.policy))
    die(f, "harness built an invalid configuration");
  if (sl_harness_start(&f->h, pool_buffers, 1, seed) != 0)
    die(f, "sl_harness_start failed");
  sl_oracle_watch_pool(f->h.oracle, &f->h.bufpool);
  sl_harness_pump(&f->h);
  verify(f);

  for (int ops = 0; r.i < r.n && ops < 4096; ops++)
    run_op(f, &r);

  /* The end: the driver's buffers go back, the client leaves, and the peers
     fall silent; the relay must wind the session down on its own. */
  pool_op(f, 0x80);
  if (!f->h.client_closed)
    sl_harness_client_eof(&f->h);
  verify(f);
  sl_tstamp start = f->h.now;
  sl_duration bound = end_bound(&f->h);
  int steps = 0;
  while (!sl_harness_closed(&f->h) && steps < 400000) {
    sl_tstamp t = sl_relay_next_deadline(f->h.r);
    if (t == SL_TSTAMP_NONE) {
      if (sl_relay_want(f->h.r) & SL_WANT_REQUESTS) {
        sl_harness_pump(&f->h);
        steps++;
        continue;
      }
      die(f, "guarantee 7: client gone, session open and no deadline left");
    }
    if (t > start + bound)
      break;
    before_time(f);
    if (t > f->h.now)
      f->h.now = t;
    expire(f);
    steps++;
  }
  if (!sl_harness_closed(&f->h)) {
    char m[240];
    sl_tstamp t = sl_relay_next_deadline(f->h.r);
    snprintf(m, sizeof(m),
             "guarantee 7: client gone at %llu, still open at %llu after %d "
             "deadlines (next %llu, bound %llu)%s",
             (unsigned long long)start, (unsigned long long)f->h.now, steps,
             (unsigned long long)t, (unsigned long long)bound,
             f->h.pool_refused ? ", the pool refusing it buffers" : "");
    die(f, m);
  }
  verify(f);
  if (getenv("FUZZ_RELAY_TRACE") && !strcmp(getenv("FUZZ_RELAY_TRACE"), "2"))
    trace(f); /* every input, not only a failing one */
  sl_harness_free(&f->h);
  free(f);
  return 0;
}
