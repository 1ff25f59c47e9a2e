/*
 * sl_transcript_test.c: golden transcripts of whole SMTP sessions through
 * the relay (llhttp test/request markdown files, made for two peers).
 *
 * Each transcripts/<name>.txt sets the policy and limits, then alternates
 * bytes from the client and the upstream, answers to the relay's requests
 * and clock steps with the exact bytes each peer must have received so far.
 * Every transcript is replayed: whole; with every peer input cut into
 * chunks of 1..8 bytes; cut in two at every split point of every input; and
 * in random chunkings with partial output acknowledgements.  The oracle
 * checks the guarantees of DESIGN.md after every step of every replay.
 * The format is described in transcripts/README.md.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_harness.h"
#include "sl_test.h"

typedef struct step {
  char op[24];
  char *arg;      /* raw text after the op */
  uint8_t *bytes; /* unescaped arg for byte ops */
  size_t nbytes;
  int line;
} step;

typedef struct transcript {
  char name[256];
  step *steps;
  size_t nsteps;
} transcript;

static size_t unescape(const char *s, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; s[i]; i++) {
    if (s[i] != '\\' || !s[i + 1]) {
      out[o++] = (uint8_t)s[i];
      continue;
    }
    char c = s[++i];
    if (c == 'r')
      out[o++] = '\r';
    else if (c == 'n')
      out[o++] = '\n';
    else if (c == 't')
      out[o++] = '\t';
    else if (c == '0')
      out[o++] = 0;
    else if (c == 'x' && isxdigit((unsigned char)s[i + 1]) &&
             isxdigit((unsigned char)s[i + 2])) {
      char hex[3] = {s[i + 1], s[i + 2], 0};
      out[o++] = (uint8_t)strtoul(hex, NULL, 16);
      i += 2;
    } else
      out[o++] = (uint8_t)c;
  }
  return o;
}

static int is_byte_op(const char *op) {
  return !strcmp(op, "c") || !strcmp(op, "u") || !strcmp(op, "expect-c") ||
         !strcmp(op, "expect-u") || !strcmp(op, "expect-c-not") ||
         !strcmp(op, "expect-u-not");
}

static int load(const char *path, transcript *t) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  snprintf(t->name, sizeof(t->name), "%s", path);
  char line[70000];
  size_t cap = 0;
  int lineno = 0;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    if (!n || line[0] == '#')
      continue;
    if (t->nsteps == cap) {
      cap = cap ? cap * 2 : 64;
      t->steps = realloc(t->steps, cap * sizeof(step));
    }
    step *s = &t->steps[t->nsteps++];
    memset(s, 0, sizeof(*s));
    s->line = lineno;
    char *sp = strchr(line, ' ');
    size_t oplen = sp ? (size_t)(sp - line) : n;
    if (oplen >= sizeof(s->op))
      oplen = sizeof(s->op) - 1;
    memcpy(s->op, line, oplen);
    s->arg = strdup(sp ? sp + 1 : "");
    if (is_byte_op(s->op)) {
      s->bytes = malloc(strlen(s->arg) + 1);
      s->nbytes = unescape(s->arg, s->bytes);
    }
  }
  fclose(f);
  return 0;
}

static void unload(transcript *t) {
  for (size_t i = 0; i < t->nsteps; i++) {
    free(t->steps[i].arg);
    free(t->steps[i].bytes);
  }
  free(t->steps);
}

static sl_duration parse_dur(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (!strcmp(end, "ms"))
    return (sl_duration)(v * 1e6);
  if (!strcmp(end, "us"))
    return (sl_duration)(v * 1e3);
  if (!strcmp(end, "m"))
    return (sl_duration)(v * 60e9);
  return (sl_duration)(v * 1e9); /* "s" or bare seconds */
}

static sl_status parse_status(const char *s) {
  if (!strncmp(s, "ok", 2))
    return SL_STATUS_OK;
  if (!strncmp(s, "timeout", 7))
    return SL_STATUS_TIMEOUT;
  return SL_STATUS_FAILED;
}

/* A KIND or TYPE of an expect step ("MESSAGE", "CLOSE_CLIENT") by the
   core's own names: the value, or -1. */
static int lookup(const char *(*name)(int), const char *s) {
  for (int v = 1; v < 64; v++)
    if (!strcasecmp(name(v), s))
      return v;
  return -1;
}
static const char *event_name(int v) { return sl_event_name((sl_event_kind)v); }
static const char *request_name(int v) {
  return sl_request_name((sl_request_type)v);
}

static uint32_t features_bit(const char *s) {
  static const char *f[] = {
      "PIPELINING", "SIZE",     "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
      "DSN",        "CHUNKING", "STARTTLS", "AUTH"};
  for (uint32_t i = 0; i < 9; i++)
    if (!strcmp(f[i], s))
      return 1u << i;
  return 0;
}

static sl_dnsbl_zone zones[SL_DNSBL_ZONES_MAX];
static char zone_names[SL_DNSBL_ZONES_MAX][96]; /* as long as a value */
static char auth_mechs[64];
static char client_name[96];

/* "set KEY VALUE..." before "start". Returns 0 or -1 (unknown key). */
static int apply_set(sl_harness *h, const char *arg) {
  char key[64], v1[96] = "", v2[96] = "", v3[96] = "";
  if (sscanf(arg, "%63s %95s %95s %95s", key, v1, v2, v3) < 1)
    return -1;
  sl_policy *p = &h->policy;
  sl_limits *l = &h->limits;
  long n = strtol(v1, NULL, 10);
  if (!strcmp(key, "mode"))
    p->mode = !strcmp(v1, "screen-first") ? SL_MODE_SCREEN_FIRST
                                          : SL_MODE_PASSTHROUGH;
  else if (!strcmp(key, "feature")) {
    uint32_t b = features_bit(v1 + 1);
    if (!b)
      return -1;
    if (v1[0] == '+')
      p->features |= b;
    else
      p->features &= ~b;
  } else if (!strcmp(key, "identity"))
    p->identity = !strcmp(v1, "xclient")    ? SL_IDENT_XCLIENT
                  : !strcmp(v1, "xforward") ? SL_IDENT_XFORWARD
                  : !strcmp(v1, "proxy1")   ? SL_IDENT_PROXY_V1
                  : !strcmp(v1, "proxy2")   ? SL_IDENT_PROXY_V2
                                            : SL_IDENT_NONE;
  else if (!strcmp(key, "upstream_tls"))
    p->upstream_tls = !strcmp(v1, "none")       ? SL_UPTLS_NONE
                      : !strcmp(v1, "required") ? SL_UPTLS_REQUIRED
                      : !strcmp(v1, "implicit") ? SL_UPTLS_IMPLICIT
                                                : SL_UPTLS_OPPORTUNISTIC;
  else if (!strcmp(key, "vrfy"))
    p->vrfy = !strcmp(v1, "relay") ? SL_VRFY_RELAY
              : !strcmp(v1, "502") ? SL_VRFY_502
                                   : SL_VRFY_252;
  else if (!strcmp(key, "forbid_unauth_pipelining"))
    p->forbid_unauth_pipelining = (uint8_t)n;
  else if (!strcmp(key, "lenient_normalize"))
    p->lenient = n ? SL_LENIENT_NORMALIZE_BARE_LF : 0;
  else if (!strcmp(key, "auth_requires_tls"))
    p->auth_requires_tls = (uint8_t)n;
  else if (!strcmp(key, "auth_mechanisms")) {
    snprintf(auth_mechs, sizeof(auth_mechs), "%s", arg + strlen(key) + 1);
    p->auth_mechanisms = auth_mechs;
  } else if (!strcmp(key, "greet_teaser"))
    p->greet_teaser = (uint8_t)n;
  else if (!strcmp(key, "upstream_attempts"))
    p->upstream_attempts = (uint8_t)n;
  else if (!strcmp(key, "greet_delay"))
    p->normal.greet_delay = parse_dur(v1);
  else if (!strcmp(key, "reply_delay"))
    p->normal.reply_delay = parse_dur(v1);
  else if (!strcmp(key, "jitter"))
    p->normal.jitter = parse_dur(v1);
  else if (!strcmp(key, "stutter")) {
    p->normal.stutter_bytes = (uint32_t)n;
    p->normal.stutter_interval = parse_dur(v2);
  } else if (!strcmp(key, "data_rate"))
    p->normal.data_rate = (uint64_t)n;
  else if (!strcmp(key, "suspect_greet_delay"))
    p->suspect.greet_delay = parse_dur(v1);
  else if (!strcmp(key, "suspect_reply_delay"))
    p->suspect.reply_delay = parse_dur(v1);
  else if (!strcmp(key, "pregreet_action"))
    p->pregreet_action = !strcmp(v1, "drop")     ? SL_ACT_DROP
                         : !strcmp(v1, "reject") ? SL_ACT_REJECT
                         : !strcmp(v1, "tarpit") ? SL_ACT_TARPIT
                                                 : SL_ACT_CONTINUE;
  else if (!strcmp(key, "dnsbl_action"))
    p->dnsbl_action = !strcmp(v1, "drop")     ? SL_ACT_DROP
                      : !strcmp(v1, "tarpit") ? SL_ACT_TARPIT
                      : !strcmp(v1, "reject") ? SL_ACT_REJECT
                                              : SL_ACT_CONTINUE;
  else if (!strcmp(key, "pregreet_score"))
    p->pregreet_score = (int32_t)n;
  else if (!strcmp(key, "tarpit_score"))
    p->tarpit_score = (int32_t)n;
  else if (!strcmp(key, "reject_score"))
    p->reject_score = (int32_t)n;
  else if (!strcmp(key, "allow_score"))
    p->allow_score = (int32_t)n;
  else if (!strcmp(key, "dnsbl_timeout"))
    p->dnsbl_timeout = parse_dur(v1);
  else if (!strcmp(key, "dnsbl")) {
    if (p->ndnsbl >= SL_DNSBL_ZONES_MAX)
      return -1;
    sl_dnsbl_zone *z = &zones[p->ndnsbl];
    memset(z, 0, sizeof(*z));
    snprintf(zone_names[p->ndnsbl], sizeof(zone_names[0]), "%s", v1);
    z->zone = zone_names[p->ndnsbl];
    z->weight = (int32_t)strtol(v2, NULL, 10);
    p->dnsbl = zones;
    p->ndnsbl++;
  } else if (!strcmp(key, "admission"))
    h->info.admission = !strcmp(v1, "tempfail") ? SL_ADMIT_TEMPFAIL
                        : !strcmp(v1, "tarpit") ? SL_ADMIT_TARPIT
                                                : SL_ADMIT_ACCEPT;
  else if (!strcmp(key, "relay_domains")) {
    /* replaces the harness's "every domain"; up to three entries */
    static char rd[3][96];
    static const char *rdp[3];
    const char *vs[3] = {v1, v2, v3};
    p->rcpt.flags &= ~(uint32_t)SL_RCPT_ANY_DOMAIN;
    p->rcpt.ndomains = 0;
    for (int i = 0; i < 3 && vs[i][0]; i++) {
      if (!strcmp(vs[i], "*")) {
        p->rcpt.flags |= SL_RCPT_ANY_DOMAIN;
        continue;
      }
      snprintf(rd[i], sizeof(rd[i]), "%s", vs[i]);
      rdp[p->rcpt.ndomains++] = rd[i];
    }
    p->rcpt.domains = rdp;
  } else if (!strcmp(key, "relay_allow")) {
    const char *vs[3] = {v1, v2, v3};
    for (int i = 0; i < 3 && vs[i][0]; i++)
      p->rcpt.flags |=
          !strcmp(vs[i], "source_route")   ? SL_RCPT_ALLOW_SOURCE_ROUTE
          : !strcmp(vs[i], "percent_hack") ? SL_RCPT_ALLOW_PERCENT_HACK
                                           : SL_RCPT_ALLOW_BANG_PATH;
  } else if (!strcmp(key, "mynetworks")) {
    /* one IPv4 prefix, "A.B.C.D/N" */
    static sl_prefix net;
    char *slash = strchr(v1, '/');
    if (!slash)
      return -1;
    memset(&net, 0, sizeof(net));
    if (sl_addr_parse(&net.addr, v1, (size_t)(slash - v1)) != 0)
      return -1;
    net.bits = (uint8_t)strtol(slash + 1, NULL, 10);
    p->rcpt.mynetworks = &net;
    p->rcpt.nmynetworks = 1;
  } else if (!strcmp(key, "conn_proxy"))
    h->info.flags |= SL_CONN_EXPECT_PROXY;
  else if (!strcmp(key, "conn_tls"))
    h->info.flags |= SL_CONN_TLS;
  else if (!strcmp(key, "pool_features")) {
    /* comma-separated feature names, or "none" */
    h->info.flags |= SL_CONN_POOL_CAPS;
    h->info.pool_features = 0;
    for (char *t = strtok(v1, ","); t; t = strtok(NULL, ",")) {
      uint32_t b = features_bit(t);
      if (!b && strcmp(t, "none"))
        return -1;
      h->info.pool_features |= b;
    }
  } else if (!strcmp(key, "pool_size"))
    h->info.pool_size = (uint64_t)n;
  else if (!strcmp(key, "client_name")) {
    snprintf(client_name, sizeof(client_name), "%s", v1);
    h->info.client_name = client_name;
  }
  /* limits */
  else if (!strcmp(key, "recipients_max"))
    l->recipients_max = (uint32_t)n;
  else if (!strcmp(key, "recipient_overshoot_max"))
    l->recipient_overshoot_max = (uint32_t)n;
  else if (!strcmp(key, "record_timeout"))
    l->record_timeout = parse_dur(v1);
  else if (!strcmp(key, "message_size_max"))
    l->message_size_max = (uint64_t)n;
  else if (!strcmp(key, "text_line_max"))
    l->text_line_max = (uint32_t)n;
  else if (!strcmp(key, "errors_max"))
    l->errors_max = (uint32_t)n;
  else if (!strcmp(key, "junk_commands_max"))
    l->junk_commands_max = (uint32_t)n;
  else if (!strcmp(key, "pipeline_max"))
    l->pipeline_max = (uint32_t)n;
  else if (!strcmp(key, "command_timeout"))
    l->command_timeout = parse_dur(v1);
  else if (!strcmp(key, "data_block_timeout"))
    l->data_block_timeout = parse_dur(v1);
  else if (!strcmp(key, "upstream_command_timeout"))
    l->upstream_command_timeout = parse_dur(v1);
  else if (!strcmp(key, "upstream_connect_timeout"))
    l->upstream_connect_timeout = parse_dur(v1);
  else if (!strcmp(key, "session_timeout"))
    l->session_timeout = parse_dur(v1);
  else
    return -1;
  return 0;
}

typedef struct plan {
  size_t chunk;    /* fixed chunk size, 0: whole */
  long split_step; /* step whose input is cut at split_pos, -1: none */
  size_t split_pos;
  uint64_t seed; /* nonzero: random chunk sizes and output acks */
} plan;

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t feed(sl_harness *h, int up, const uint8_t *p, size_t n,
                   const plan *pl, long idx, uint64_t *rs) {
  if (pl->split_step == idx && pl->split_pos < n) {
    size_t a = up ? sl_harness_upstream(h, p, pl->split_pos, 0)
                  : sl_harness_client(h, p, pl->split_pos, 0);
    size_t b =
        up ? sl_harness_upstream(h, p + pl->split_pos, n - pl->split_pos, 0)
           : sl_harness_client(h, p + pl->split_pos, n - pl->split_pos, 0);
    return a + b;
  }
  if (!pl->seed)
    return up ? sl_harness_upstream(h, p, n, pl->chunk)
              : sl_harness_client(h, p, n, pl->chunk);
  size_t done = 0;
  while (done < n) {
    size_t c = 1 + (size_t)(rnd(rs) % 17);
    if (c > n - done)
      c = n - done;
    h->out_chunk = (rnd(rs) & 1) ? 1 + (size_t)(rnd(rs) % 9) : 0;
    /* what the relay does not take now waits in the harness */
    if (up)
      sl_harness_upstream(h, p + done, c, 0);
    else
      sl_harness_client(h, p + done, c, 0);
    done += c;
  }
  h->out_chunk = 0;
  sl_harness_pump(h);
  return done;
}

/* Runs one replay; returns 0 or -1 after printing why. */

/* An expect-stat value: stage and end_reason by their names (as the
   session log writes them), the counters as numbers.  0, or -1. */
static int stat_value(const char *field, const char *value, long long *v) {
  int by_name = !strcmp(field, "stage") || !strcmp(field, "end_reason");
  if (!by_name) {
    char *end;
    *v = strtoll(value, &end, 10);
    return *end ? -1 : 0;
  }
  for (int i = 0; i < 32; i++) {
    const char *name = !strcmp(field, "stage")
                           ? sl_stage_name((sl_stage)i)
                           : sl_end_reason_name((sl_end_reason)i);
    if (name && !strcmp(name, value)) {
      *v = i;
      return 0;
    }
  }
  return -1;
}

static int run(const transcript *t, const plan *pl, int verbose) {
  sl_harness h;
  sl_harness_defaults(&h);
  sl_bytes want_c = {0}, want_u = {0};
  uint64_t rs = pl->seed ? pl->seed : 1;
  int started = 0, rc = 0;
  char why[700] = "";
  for (size_t i = 0; i < t->nsteps && !rc; i++) {
    const step *s = &t->steps[i];
    const char *op = s->op;
    if (!strcmp(op, "set")) {
      if (apply_set(&h, s->arg)) {
        snprintf(why, sizeof(why), "unknown setting '%s'", s->arg);
        rc = -1;
      }
      continue;
    }
    if (!started) {
      if (strcmp(op, "start")) {
        snprintf(why, sizeof(why), "'start' must follow the settings");
        rc = -1;
        break;
      }
      int e = sl_harness_start(&h, 8, 1, 42);
      if (e) {
        snprintf(why, sizeof(why), "start: %s", sl_err_name(e));
        rc = -1;
      }
      started = 1;
      continue;
    }
    if (!strcmp(op, "c") || !strcmp(op, "u")) {
      int up = op[0] == 'u';
      size_t got = feed(&h, up, s->bytes, s->nbytes, pl, (long)i, &rs);
      (void)got;
    } else if (!strcmp(op, "expect-c") || !strcmp(op, "expect-u")) {
      sl_bytes *want = op[7] == 'c' ? &want_c : &want_u;
      const sl_bytes *got = op[7] == 'c' ? &h.client_out : &h.upstream_out;
      sl_bytes_add(want, s->bytes, s->nbytes);
      if (got->len != want->len ||
          (got->len && memcmp(got->p, want->p, got->len))) {
        size_t at = 0;
        while (at < got->len && at < want->len && got->p[at] == want->p[at])
          at++;
        size_t from = at > 120 ? at - 120 : 0;
        snprintf(why, sizeof(why),
                 "%s stream differs at byte %zu (got %zu bytes, want %zu)\n"
                 "  got:  ...%.*s\n  want: ...%.*s",
                 op + 7, at, got->len, want->len,
                 (int)(got->len - from > 240 ? 240 : got->len - from),
                 (const char *)got->p + from,
                 (int)(want->len - from > 240 ? 240 : want->len - from),
                 (const char *)want->p + from);
        rc = -1;
      }
    } else if (!strcmp(op, "expect-c-not") || !strcmp(op, "expect-u-not")) {
      const sl_bytes *got = op[7] == 'c' ? &h.client_out : &h.upstream_out;
      if (s->nbytes && got->len >= s->nbytes &&
          memmem(got->p, got->len, s->bytes, s->nbytes)) {
        snprintf(why, sizeof(why), "%s stream contains forbidden '%s'", op + 7,
                 s->arg);
        rc = -1;
      }
    } else if (!strcmp(op, "connect")) {
      if (sl_harness_connect(&h, parse_status(s->arg))) {
        snprintf(why, sizeof(why), "no CONNECT_UPSTREAM pending");
        rc = -1;
      }
    } else if (!strcmp(op, "tls-client")) {
      if (sl_harness_tls_client(&h, parse_status(s->arg))) {
        snprintf(why, sizeof(why), "no STARTTLS_CLIENT pending");
        rc = -1;
      }
    } else if (!strcmp(op, "tls-upstream")) {
      if (sl_harness_tls_upstream(&h, parse_status(s->arg))) {
        snprintf(why, sizeof(why), "no STARTTLS_UPSTREAM pending");
        rc = -1;
      }
    } else if (!strcmp(op, "dnsbl")) {
      unsigned zone, a, b, c, d;
      char st[16];
      uint32_t ans[8];
      uint8_t n = 0;
      const char *p = s->arg;
      int k = 0;
      if (sscanf(p, "%u %15s%n", &zone, st, &k) < 2) {
        snprintf(why, sizeof(why), "bad dnsbl step");
        rc = -1;
        break;
      }
      p += k;
      int m;
      while (n < 8 && sscanf(p, " %u.%u.%u.%u%n", &a, &b, &c, &d, &m) == 4) {
        ans[n++] = a << 24 | b << 16 | c << 8 | d;
        p += m;
      }
      if (sl_harness_dnsbl(&h, zone, parse_status(st), ans, n)) {
        snprintf(why, sizeof(why), "no DNSBL lookup pending for zone %u", zone);
        rc = -1;
      }
    } else if (!strcmp(op, "advance")) {
      sl_harness_advance(&h, parse_dur(s->arg));
    } else if (!strcmp(op, "eof-c")) {
      sl_harness_client_eof(&h);
    } else if (!strcmp(op, "eof-u")) {
      sl_harness_upstream_eof(&h);
    } else if (!strcmp(op, "expect-event") || !strcmp(op, "expect-req")) {
      char name[64];
      long count = -1;
      int nf = sscanf(s->arg, "%63s %ld", name, &count);
      int ev = op[7] == 'e';
      int k = ev ? lookup(event_name, name) : lookup(request_name, name);
      if (nf < 1 || k < 0) {
        snprintf(why, sizeof(why), "unknown name '%s'", s->arg);
        rc = -1;
        break;
      }
      size_t got = ev ? sl_harness_events(&h, (sl_event_kind)k)
                      : sl_harness_requests(&h, (sl_request_type)k);
      if (count < 0 ? got == 0 : got != (size_t)count) {
        snprintf(why, sizeof(why), "%s %s: got %zu", op, s->arg, got);
        rc = -1;
      }
    } else if (!strcmp(op, "expect-closed") || !strcmp(op, "expect-open")) {
      int closed = sl_harness_closed(&h);
      if (closed != (op[7] == 'c')) {
        snprintf(why, sizeof(why), "%s: relay is %s (want 0x%x)", op,
                 closed ? "closed" : "open", sl_relay_want(h.r));
        rc = -1;
      }
    } else if (!strcmp(op, "expect-stat")) {
      char field[64], value[64];
      long long v;
      if (sscanf(s->arg, "%63s %63s", field, value) != 2 ||
          stat_value(field, value, &v) != 0) {
        fprintf(stderr, "%s:%d: expect-stat: bad '%s'\n", t->name, s->line,
                s->arg);
        rc = -1;
        break;
      }
      const sl_stats *st = sl_relay_stats(h.r);
      long long got =
          !strcmp(field, "messages_accepted")     ? st->messages_accepted
          : !strcmp(field, "messages_rejected")   ? st->messages_rejected
          : !strcmp(field, "messages_tempfailed") ? st->messages_tempfailed
          : !strcmp(field, "recipients_accepted") ? st->recipients_accepted
          : !strcmp(field, "recipients_relay_denied")
              ? st->recipients_relay_denied
          : !strcmp(field, "score")              ? st->score
          : !strcmp(field, "stage")              ? st->stage
          : !strcmp(field, "end_reason")         ? st->end_reason
          : !strcmp(field, "tarpitted")          ? st->tarpitted
          : !strcmp(field, "pregreet_bytes")     ? st->pregreet_bytes
          : !strcmp(field, "sync_violations")    ? st->sync_violations
          : !strcmp(field, "starttls_discarded") ? st->starttls_discarded
          : !strcmp(field, "upstream_attempts")  ? st->upstream_attempts
          : !strcmp(field, "tls_upstream")       ? st->tls_upstream
          : !strcmp(field, "errors")             ? st->errors
          : !strcmp(field, "delay_s") ? (long long)(st->delay_total / SL_SEC)
                                      : -999999;
      if (got != v) {
        if (!strcmp(field, "stage"))
          snprintf(why, sizeof(why), "stat stage = %s, want %s",
                   sl_stage_name((sl_stage)got), value);
        else if (!strcmp(field, "end_reason"))
          snprintf(why, sizeof(why), "stat end_reason = %s, want %s",
                   sl_end_reason_name((sl_end_reason)got), value);
        else
          snprintf(why, sizeof(why), "stat %s = %lld, want %lld", field, got,
                   v);
        rc = -1;
      }
    } else {
      snprintf(why, sizeof(why), "unknown step '%s'", op);
      rc = -1;
    }
    if (!rc && h.failure[0]) {
      snprintf(why, sizeof(why), "%s", h.failure);
      rc = -1;
    }
    if (rc)
      fprintf(stderr, "%s:%d: %s\n", t->name, s->line, why);
  }
  if (rc && verbose)
    fprintf(stderr, "  (plan: chunk %zu, split step %ld at %zu, seed %llu)\n",
            pl->chunk, pl->split_step, pl->split_pos,
            (unsigned long long)pl->seed);
  sl_bytes_free(&want_c);
  sl_bytes_free(&want_u);
  sl_harness_free(&h);
  return rc;
}

static const char *only; /* run just this transcript (argv[1]) */

static void run_all(void) {
  DIR *d = opendir("transcripts");
  CHECK(d != NULL);
  if (!d)
    return;
  struct dirent *e;
  char *names[512];
  size_t nn = 0;
  while ((e = readdir(d)) && nn < 512) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".txt"))
      names[nn++] = strdup(e->d_name);
  }
  closedir(d);
  CHECK(nn > 0);
  for (size_t i = 0; i < nn; i++) {
    if (only && !strstr(names[i], only)) {
      free(names[i]);
      continue;
    }
    char path[600];
    snprintf(path, sizeof(path), "transcripts/%s", names[i]);
    transcript t;
    memset(&t, 0, sizeof(t));
    CHECK(load(path, &t) == 0);
    int failed = 0, runs = 0;
    plan pl = {0, -1, 0, 0};
    /* whole, then every chunk size 1..8 */
    for (size_t chunk = 0; chunk <= 8 && !failed; chunk++) {
      pl.chunk = chunk;
      failed |= run(&t, &pl, 1) != 0;
      runs++;
    }
    /* every split point of every peer input */
    pl.chunk = 0;
    for (size_t s = 0; s < t.nsteps && !failed; s++) {
      if (strcmp(t.steps[s].op, "c") && strcmp(t.steps[s].op, "u"))
        continue;
      for (size_t k = 1; k < t.steps[s].nbytes && !failed; k++) {
        pl.split_step = (long)s;
        pl.split_pos = k;
        failed |= run(&t, &pl, 1) != 0;
        runs++;
      }
    }
    /* random chunkings with partial output acknowledgements */
    pl.split_step = -1;
    for (uint64_t seed = 1; seed <= 24 && !failed; seed++) {
      pl.seed = seed * 0x9e3779b97f4a7c15ull;
      failed |= run(&t, &pl, 1) != 0;
      runs++;
    }
    if (failed)
      sl_test_cur_failed_++;
    printf("%-48s %s (%d replays)\n", names[i], failed ? "FAIL" : "ok", runs);
    sl_test_passed_ += !failed;
    sl_test_failed_ += failed;
    unload(&t);
    free(names[i]);
  }
}

int main(int argc, char **argv) {
  if (argc > 1)
    only = argv[1];
  sl_test_cur_failed_ = 0;
  run_all();
  return sl_test_summary();
}
