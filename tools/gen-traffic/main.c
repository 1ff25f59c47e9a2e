/*
 * sluice-gen-traffic: writes synthetic SMTP captures (see README.md).
 *
 * Sessions start in order (Poisson arrivals), each is simulated whole, and its
 * frames go to a min-heap keyed by (timestamp, emission order).  A frame can
 * be written once it is older than the next session's start, because no later
 * session has a frame before its own SYN; so memory follows the number of
 * overlapping sessions, not the length of the capture.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#ifndef GEN_VERSION
#define GEN_VERSION "0.0.0"
#endif
/* Bumped whenever the same arguments would give different bytes. */
#define GEN_MODEL 1

struct frame {
  int64_t ts;
  uint64_t order;
  uint32_t len;
  uint8_t *data;
};

struct out {
  pcap_dumper_t *dumper;
  struct frame *heap;
  size_t n, cap;
  uint64_t order, packets;
  int oom;
};

static int frame_less(const struct frame *a, const struct frame *b) {
  return a->ts < b->ts || (a->ts == b->ts && a->order < b->order);
}

static void heap_push(struct out *o, int64_t ts, const uint8_t *p, size_t len) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 1024;
    struct frame *h = realloc(o->heap, cap * sizeof *h);
    if (!h) {
      o->oom = 1;
      return;
    }
    o->heap = h;
    o->cap = cap;
  }
  struct frame f = {ts, o->order++, (uint32_t)len, malloc(len)};
  if (!f.data) {
    o->oom = 1;
    return;
  }
  memcpy(f.data, p, len);
  size_t i = o->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!frame_less(&f, &o->heap[parent]))
      break;
    o->heap[i] = o->heap[parent];
    i = parent;
  }
  o->heap[i] = f;
}

static struct frame heap_pop(struct out *o) {
  struct frame top = o->heap[0], last = o->heap[--o->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const struct frame *best = &last;
    if (l < o->n && frame_less(&o->heap[l], best)) {
      m = l;
      best = &o->heap[l];
    }
    if (r < o->n && frame_less(&o->heap[r], best))
      m = r;
    if (m == i)
      break;
    o->heap[i] = o->heap[m];
    i = m;
  }
  if (o->n)
    o->heap[i] = last;
  return top;
}

static void on_frame(void *ctx, int64_t ts, const uint8_t *p, size_t len) {
  heap_push(ctx, ts, p, len);
}

static void flush_before(struct out *o, int64_t limit) {
  while (o->n && o->heap[0].ts < limit) {
    struct frame f = heap_pop(o);
    struct pcap_pkthdr h;
    h.ts.tv_sec = (time_t)(f.ts / 1000000);
    h.ts.tv_usec = (suseconds_t)(f.ts % 1000000);
    h.caplen = h.len = f.len;
    pcap_dump((u_char *)o->dumper, &h, f.data);
    free(f.data);
    o->packets++;
  }
}

/* ---- arguments ------------------------------------------------------- */

static const char *progname = "sluice-gen-traffic";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s --out FILE.pcap [--sessions N] [--mix NAME=W,...]\n"
          "         [--seed S] [--start-time EPOCH] [--rate SESSIONS_PER_SEC]\n"
          "         [--server IP:PORT] [--client-net CIDR]\n"
          "         [--patience fixed:S|uniform:A:B|exp:MEAN]\n"
          "         [--bot-patience DIST] [--mta-patience S]\n"
          "         [--server-delay-greeting S] [--server-reply-delay S]\n"
          "         [--message-size BYTES] [--reject-rate P] [--giveup-rst P]\n"
          "         [--linktype en10mb|raw]\n"
          "Writes a synthetic SMTP capture and FILE.pcap.json (ground truth).\n"
          "Dialects: mta mta-helo bot-pregreet bot-pipeline bot-impatient\n"
          "          bot-noquit bot-helo-forms\n"
          "Addresses must be documentation ranges (192.0.2.0/24,\n"
          "198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).\n",
          progname);
}

static void die_usage(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

static void die_usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", progname);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(try --help)\n");
  exit(2);
}

static double parse_num(const char *opt, const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
    fprintf(stderr, "%s: %s: bad value '%s' (want a number in [%g, %g])\n",
            progname, opt, s, lo, hi);
    exit(2);
  }
  return v;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t lo,
                          uint64_t hi) {
  char *end;
  errno = 0;
  if (*s == '-' || *s == 0)
    end = (char *)(uintptr_t)s;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || *s == '-' || v < lo || v > hi) {
    fprintf(stderr,
            "%s: %s: bad value '%s' (want an integer in [%" PRIu64 ", %" PRIu64
            "])\n",
            progname, opt, s, lo, hi);
    exit(2);
  }
  return (uint64_t)v;
}

static struct dist parse_dist(const char *opt, const char *s) {
  struct dist d = {DIST_FIXED, 0, 0};
  char buf[128];
  if (strlen(s) >= sizeof buf)
    die_usage("distribution too long: %s", s);
  strcpy(buf, s);
  char *a = strchr(buf, ':');
  if (!a)
    die_usage("bad distribution '%s' (fixed:S, uniform:A:B or exp:MEAN)", s);
  *a++ = 0;
  if (strcmp(buf, "fixed") == 0) {
    d.kind = DIST_FIXED;
    d.a = parse_num(opt, a, 0, 86400);
  } else if (strcmp(buf, "exp") == 0) {
    d.kind = DIST_EXP;
    d.a = parse_num(opt, a, 1e-6, 86400);
  } else if (strcmp(buf, "uniform") == 0) {
    char *b = strchr(a, ':');
    if (!b)
      die_usage("bad distribution '%s' (uniform:A:B)", s);
    *b++ = 0;
    d.kind = DIST_UNIFORM;
    d.a = parse_num(opt, a, 0, 86400);
    d.b = parse_num(opt, b, 0, 86400);
    if (d.b <= d.a)
      die_usage("uniform:A:B needs A < B, got '%s'", s);
  } else {
    die_usage("bad distribution '%s' (fixed:S, uniform:A:B or exp:MEAN)", s);
  }
  return d;
}

static int doc_v4(const uint8_t *b) {
  return (b[0] == 192 && b[1] == 0 && b[2] == 2) ||
         (b[0] == 198 && b[1] == 51 && b[2] == 100) ||
         (b[0] == 203 && b[1] == 0 && b[2] == 113);
}

static int doc_v6(const uint8_t *b) {
  return b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8;
}

static int parse_ip(const char *s, struct addr *a) {
  memset(a, 0, sizeof *a);
  if (inet_pton(AF_INET, s, a->b) == 1) {
    a->family = 4;
    return doc_v4(a->b) ? 0 : -2;
  }
  if (inet_pton(AF_INET6, s, a->b) == 1) {
    a->family = 6;
    return doc_v6(a->b) ? 0 : -2;
  }
  return -1;
}

static void parse_server(const char *s, struct config *c) {
  char buf[80];
  if (strlen(s) >= sizeof buf)
    die_usage("bad --server '%s'", s);
  strcpy(buf, s);
  char *host = buf, *port = strrchr(buf, ':');
  if (buf[0] == '[') {
    char *close = strchr(buf, ']');
    if (!close || close[1] != ':')
      die_usage("bad --server '%s' (want IP:PORT or [IPv6]:PORT)", s);
    *close = 0;
    host = buf + 1;
    port = close + 1;
  } else if (!port || strchr(buf, ':') != port) {
    die_usage("bad --server '%s' (want IP:PORT or [IPv6]:PORT)", s);
  }
  *port++ = 0;
  int r = parse_ip(host, &c->server);
  if (r == -1)
    die_usage("bad --server address in '%s'", s);
  if (r == -2)
    die_usage("--server %s is not a documentation address", s);
  c->server_port = (uint16_t)parse_u64("--server", port, 1, 65535);
}

static void parse_net(const char *s, struct config *c) {
  char buf[80];
  if (strlen(s) >= sizeof buf)
    die_usage("bad --client-net '%s'", s);
  strcpy(buf, s);
  char *slash = strchr(buf, '/');
  if (!slash)
    die_usage("bad --client-net '%s' (want ADDRESS/PREFIX)", s);
  *slash++ = 0;
  int r = parse_ip(buf, &c->client_net);
  if (r == -1)
    die_usage("bad --client-net address in '%s'", s);
  if (r == -2)
    die_usage("--client-net %s is not in a documentation range", s);
  unsigned minp = c->client_net.family == 4 ? 24 : 32;
  unsigned maxp = c->client_net.family == 4 ? 30 : 126;
  c->client_prefix = (unsigned)parse_u64("--client-net", slash, 0, 128);
  if (c->client_prefix < minp || c->client_prefix > maxp) {
    fprintf(stderr,
            "%s: --client-net %s: prefix must be /%u to /%u to stay inside "
            "the documentation range\n",
            progname, s, minp, maxp);
    exit(2);
  }
  unsigned bits = c->client_net.family == 4 ? 32 : 128;
  for (unsigned i = c->client_prefix; i < bits; i++)
    c->client_net.b[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

static void parse_mix(const char *s, struct config *c) {
  char buf[512];
  if (strlen(s) >= sizeof buf)
    die_usage("--mix too long: %s", s);
  strcpy(buf, s);
  double sum = 0;
  for (int i = 0; i < D_COUNT; i++)
    c->mix[i] = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq)
      die_usage("bad --mix item '%s' (want NAME=WEIGHT)", tok);
    *eq++ = 0;
    int d = -1;
    for (int i = 0; i < D_COUNT; i++)
      if (strcmp(tok, dialect_names[i]) == 0)
        d = i;
    if (d < 0)
      die_usage("unknown dialect '%s' in --mix", tok);
    c->mix[d] = parse_num("--mix", eq, 0, 1e6);
    sum += c->mix[d];
  }
  if (sum <= 0)
    die_usage("--mix '%s' has no positive weight", s);
  for (int i = 0; i < D_COUNT; i++)
    c->mix[i] /= sum;
}

/* ---- ground truth ---------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void json_dist(FILE *f, const struct dist *d) {
  if (d->kind == DIST_FIXED)
    fprintf(f, "{\"kind\": \"fixed\", \"seconds\": %.6g}", d->a);
  else if (d->kind == DIST_UNIFORM)
    fprintf(f, "{\"kind\": \"uniform\", \"min\": %.6g, \"max\": %.6g}", d->a,
            d->b);
  else
    fprintf(f, "{\"kind\": \"exp\", \"mean\": %.6g}", d->a);
}

static void addr_text(const struct addr *a, char *buf, size_t cap) {
  if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, buf,
                 (socklen_t)cap))
    snprintf(buf, cap, "?");
}

static int write_sidecar(const char *path, int argc, char **argv,
                         const struct config *c, const struct truth *t,
                         uint64_t packets) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  char ip[64];
  fprintf(f, "{\n  \"synthetic\": true,\n"
             "  \"note\": \"Synthetic SMTP traffic made by sluice-gen-traffic; "
             "not a real capture.\",\n");
  fprintf(f,
          "  \"tool\": \"sluice-gen-traffic\",\n  \"version\": \"%s\",\n"
          "  \"model\": %d,\n",
          GEN_VERSION, GEN_MODEL);
  /* argv[0] by its base name, so the record does not depend on the build
   * directory and the corpus regenerates byte for byte. */
  const char *a0 = strrchr(argv[0], '/');
  fprintf(f, "  \"command_line\": [");
  json_str(f, a0 ? a0 + 1 : argv[0]);
  for (int i = 1; i < argc; i++) {
    fprintf(f, ", ");
    json_str(f, argv[i]);
  }
  fprintf(f, "],\n  \"seed\": %" PRIu64 ",\n", c->seed);
  fprintf(f, "  \"capture_point\": \"server\",\n");
  fprintf(f, "  \"linktype\": \"%s\",\n",
          c->linktype == DLT_RAW ? "raw" : "en10mb");
  fprintf(f, "  \"parameters\": {\n    \"sessions\": %" PRIu64 ",\n",
          c->sessions);
  fprintf(f, "    \"start_time\": %.6f,\n", (double)c->start_us / 1e6);
  fprintf(f, "    \"rate\": %.6g,\n", c->rate);
  addr_text(&c->server, ip, sizeof ip);
  fprintf(f, "    \"server\": \"%s\",\n    \"server_port\": %u,\n", ip,
          c->server_port);
  addr_text(&c->client_net, ip, sizeof ip);
  fprintf(f, "    \"client_net\": \"%s/%u\",\n", ip, c->client_prefix);
  fprintf(f, "    \"patience\": ");
  json_dist(f, &c->patience);
  fprintf(f, ",\n    \"bot_patience\": ");
  json_dist(f, &c->bot_patience);
  fprintf(f, ",\n    \"mta_patience\": %.6g,\n", c->mta_patience);
  fprintf(f, "    \"server_delay_greeting\": %.6g,\n", c->greet_delay);
  fprintf(f, "    \"server_reply_delay\": %.6g,\n", c->reply_delay);
  fprintf(f, "    \"message_size\": %zu,\n", c->message_size);
  fprintf(f, "    \"reject_rate\": %.6g,\n", c->reject_rate);
  fprintf(f, "    \"giveup_rst\": %.6g\n  },\n", c->giveup_rst);
  fprintf(f, "  \"mix\": {");
  for (int i = 0; i < D_COUNT; i++)
    fprintf(f, "%s\"%s\": %.6g", i ? ", " : "", dialect_names[i], c->mix[i]);
  fprintf(f, "},\n");

  uint64_t count[D_COUNT] = {0}, gave[D_COUNT] = {0};
  for (uint64_t i = 0; i < c->sessions; i++) {
    count[t[i].dialect]++;
    gave[t[i].dialect] += (uint64_t)t[i].gave_up;
  }
  fprintf(f,
          "  \"summary\": {\"sessions\": %" PRIu64 ", \"packets\": %" PRIu64
          ", \"by_dialect\": {",
          c->sessions, packets);
  for (int i = 0; i < D_COUNT; i++)
    fprintf(f,
            "%s\"%s\": {\"sessions\": %" PRIu64 ", \"gave_up\": %" PRIu64 "}",
            i ? ", " : "", dialect_names[i], count[i], gave[i]);
  fprintf(f, "}},\n  \"sessions\": [\n");
  for (uint64_t i = 0; i < c->sessions; i++) {
    const struct truth *s = &t[i];
    addr_text(&s->caddr, ip, sizeof ip);
    fprintf(f,
            "    {\"id\": %" PRIu64
            ", \"dialect\": \"%s\", \"client\": \"%s\", "
            "\"client_port\": %u, \"start\": %.6f, \"end\": %.6f, "
            "\"rtt\": %.6f, \"patience\": %.6f, \"gave_up\": %s, "
            "\"gave_up_waiting_for\": \"%s\", \"end_reason\": \"%s\", "
            "\"pregreet\": %s, \"pipelined\": %s, \"rcpts\": %u, "
            "\"rcpts_rejected\": %u, \"messages_accepted\": %u",
            i, dialect_names[s->dialect], ip, s->cport,
            (double)s->start_us / 1e6, (double)s->end_us / 1e6, s->rtt,
            s->patience, s->gave_up ? "true" : "false", s->stage, s->end,
            s->pregreet ? "true" : "false", s->pipelined ? "true" : "false",
            s->rcpts, s->rcpts_rejected, s->messages);
    if (s->helo_form)
      fprintf(f, ", \"helo_form\": \"%s\"",
              s->helo_form == 1   ? "bare-ip"
              : s->helo_form == 2 ? "server-name"
                                  : "no-argument");
    fprintf(f, "}%s\n", i + 1 < c->sessions ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  return fclose(f) == 0 ? 0 : -1;
}

/* ---- client tuples --------------------------------------------------- */

/* Tuples are never reused within a capture: tshark and the replay driver
 * would otherwise see two sessions as one conversation. */
struct tupleset {
  uint64_t *k;
  size_t cap, n;
};

static uint64_t tuple_key(const struct addr *a, uint16_t port) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < 16; i++)
    h = (h ^ a->b[i]) * 1099511628211ULL;
  h = (h ^ port) * 1099511628211ULL;
  return h ? h : 1;
}

static int tuple_add(struct tupleset *s, uint64_t key) {
  if (2 * (s->n + 1) > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *k = calloc(cap, sizeof *k);
    if (!k)
      return -1;
    for (size_t i = 0; i < s->cap; i++)
      if (s->k[i]) {
        size_t j = (size_t)(s->k[i] % cap);
        while (k[j])
          j = (j + 1) % cap;
        k[j] = s->k[i];
      }
    free(s->k);
    s->k = k;
    s->cap = cap;
  }
  size_t j = (size_t)(key % s->cap);
  while (s->k[j]) {
    if (s->k[j] == key)
      return 1;
    j = (j + 1) % s->cap;
  }
  s->k[j] = key;
  s->n++;
  return 0;
}

static void pick_client(const struct config *c, struct rng *r,
                        struct truth *t) {
  t->caddr = c->client_net;
  unsigned bits = c->client_net.family == 4 ? 32 : 128;
  unsigned hostbits = bits - c->client_prefix;
  for (;;) {
    for (unsigned i = c->client_prefix; i < bits; i++)
      if (rng_u32(r) & 1)
        t->caddr.b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
      else
        t->caddr.b[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    /* not the network or (IPv4) broadcast address */
    int zero = 1, ones = 1;
    for (unsigned i = c->client_prefix; i < bits; i++) {
      int bit = (t->caddr.b[i / 8] >> (7 - i % 8)) & 1;
      zero &= !bit;
      ones &= bit;
    }
    if (!zero && !(ones && c->client_net.family == 4) && hostbits > 0)
      break;
  }
  t->cport = (uint16_t)(32768 + rng_below(r, 60999 - 32768 + 1));
}

int main(int argc, char **argv) {
  struct config c;
  memset(&c, 0, sizeof c);
  const char *out = NULL;
  c.sessions = 100;
  c.seed = 1;
  c.start_us = 1700000000LL * 1000000;
  c.rate = 10;
  parse_ip("192.0.2.25", &c.server);
  c.server_port = 25;
  parse_net("198.51.100.0/24", &c);
  c.patience = (struct dist){DIST_EXP, 10, 0};
  c.bot_patience = (struct dist){DIST_UNIFORM, 20, 120};
  c.mta_patience = 300;
  c.message_size = 2000;
  c.reject_rate = 0.1;
  c.giveup_rst = 0.3;
  c.linktype = DLT_EN10MB;
  parse_mix("mta=0.25,mta-helo=0.05,bot-pregreet=0.15,bot-pipeline=0.15,"
            "bot-impatient=0.2,bot-noquit=0.1,bot-helo-forms=0.1",
            &c);
  int net_given = 0;

  enum {
    O_OUT = 256,
    O_SESS,
    O_MIX,
    O_SEED,
    O_START,
    O_RATE,
    O_SERVER,
    O_NET,
    O_PAT,
    O_BPAT,
    O_MPAT,
    O_GREET,
    O_REPLY,
    O_MSIZE,
    O_REJ,
    O_RST,
    O_LINK
  };
  static const struct option opts[] = {
      {"out", required_argument, 0, O_OUT},
      {"sessions", required_argument, 0, O_SESS},
      {"mix", required_argument, 0, O_MIX},
      {"seed", required_argument, 0, O_SEED},
      {"start-time", required_argument, 0, O_START},
      {"rate", required_argument, 0, O_RATE},
      {"server", required_argument, 0, O_SERVER},
      {"client-net", required_argument, 0, O_NET},
      {"patience", required_argument, 0, O_PAT},
      {"bot-patience", required_argument, 0, O_BPAT},
      {"mta-patience", required_argument, 0, O_MPAT},
      {"server-delay-greeting", required_argument, 0, O_GREET},
      {"server-reply-delay", required_argument, 0, O_REPLY},
      {"message-size", required_argument, 0, O_MSIZE},
      {"reject-rate", required_argument, 0, O_REJ},
      {"giveup-rst", required_argument, 0, O_RST},
      {"linktype", required_argument, 0, O_LINK},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  opterr = 0;
  int o;
  while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (o) {
    case O_OUT:
      out = optarg;
      break;
    case O_SESS:
      c.sessions = parse_u64("--sessions", optarg, 1, 100000000);
      break;
    case O_MIX:
      parse_mix(optarg, &c);
      break;
    case O_SEED:
      c.seed = parse_u64("--seed", optarg, 0, UINT64_MAX);
      break;
    case O_START:
      c.start_us =
          (int64_t)parse_u64("--start-time", optarg, 0, 4000000000ULL) *
          1000000;
      break;
    case O_RATE:
      c.rate = parse_num("--rate", optarg, 1e-6, 1e6);
      break;
    case O_SERVER:
      parse_server(optarg, &c);
      break;
    case O_NET:
      parse_net(optarg, &c);
      net_given = 1;
      break;
    case O_PAT:
      c.patience = parse_dist("--patience", optarg);
      break;
    case O_BPAT:
      c.bot_patience = parse_dist("--bot-patience", optarg);
      break;
    case O_MPAT:
      c.mta_patience = parse_num("--mta-patience", optarg, 0, 86400);
      break;
    case O_GREET:
      c.greet_delay = parse_num("--server-delay-greeting", optarg, 0, 86400);
      break;
    case O_REPLY:
      c.reply_delay = parse_num("--server-reply-delay", optarg, 0, 86400);
      break;
    case O_MSIZE:
      c.message_size =
          (size_t)parse_u64("--message-size", optarg, 0, 100000000);
      break;
    case O_REJ:
      c.reject_rate = parse_num("--reject-rate", optarg, 0, 1);
      break;
    case O_RST:
      c.giveup_rst = parse_num("--giveup-rst", optarg, 0, 1);
      break;
    case O_LINK:
      if (strcmp(optarg, "en10mb") == 0)
        c.linktype = DLT_EN10MB;
      else if (strcmp(optarg, "raw") == 0)
        c.linktype = DLT_RAW;
      else
        die_usage("--linktype must be en10mb or raw, not '%s'", optarg);
      break;
    case 'h':
      usage(stdout);
      return 0;
    case ':':
    case '?':
    default:
      if (optopt)
        fprintf(stderr, "%s: option needs an argument or is unknown: -%c\n",
                progname, optopt);
      else
        fprintf(stderr, "%s: unknown option or missing argument: %s\n",
                progname, argv[optind - 1]);
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc)
    die_usage("unexpected argument '%s'", argv[optind]);
  if (!out)
    die_usage("%s", "--out FILE.pcap is required");
  if (c.server.family == 6 && !net_given)
    parse_net("2001:db8:5100::/48", &c);
  if (c.server.family != c.client_net.family)
    die_usage("%s", "--server and --client-net must be the same IP version");

  struct truth *truth = calloc((size_t)c.sessions, sizeof *truth);
  pcap_t *p = pcap_open_dead(c.linktype, 65535);
  if (!truth || !p) {
    fprintf(stderr, "%s: out of memory\n", progname);
    return 1;
  }
  struct out o_ = {0};
  o_.dumper = pcap_dump_open(p, out);
  if (!o_.dumper) {
    fprintf(stderr, "%s: %s\n", progname, pcap_geterr(p));
    return 1;
  }

  struct rng r;
  rng_seed(&r, c.seed, 0);
  struct tupleset tuples = {0};
  double start = (double)c.start_us;
  int rc = 0;
  for (uint64_t i = 0; i < c.sessions; i++) {
    struct truth *t = &truth[i];
    if (i)
      start += rng_exp(&r, 1e6 / c.rate);
    t->start_us = (int64_t)start;
    double u = rng_unit(&r), acc = 0;
    t->dialect = D_COUNT;
    for (int d = 0; d < D_COUNT; d++) {
      acc += c.mix[d];
      if (u < acc && c.mix[d] > 0) {
        t->dialect = (enum dialect)d;
        break;
      }
    }
    for (int d = D_COUNT - 1; t->dialect == D_COUNT && d >= 0; d--)
      if (c.mix[d] > 0)
        t->dialect = (enum dialect)d;
    int tries = 0, added;
    do {
      pick_client(&c, &r, t);
      added = tuple_add(&tuples, tuple_key(&t->caddr, t->cport));
    } while (added == 1 && ++tries < 1000);
    if (added != 0) {
      fprintf(stderr, "%s: %s\n", progname,
              added < 0 ? "out of memory"
                        : "--client-net too small for that many sessions");
      rc = 1;
      break;
    }
    flush_before(&o_, t->start_us);
    if (sim_session(&c, i, t, on_frame, &o_) || o_.oom) {
      fprintf(stderr, "%s: out of memory\n", progname);
      rc = 1;
      break;
    }
  }
  flush_before(&o_, INT64_MAX);
  pcap_dump_close(o_.dumper);
  pcap_close(p);
  free(o_.heap);
  free(tuples.k);
  if (rc) {
    free(truth);
    return rc;
  }
  size_t n = strlen(out) + 6;
  char *side = malloc(n);
  if (!side) {
    free(truth);
    return 1;
  }
  snprintf(side, n, "%s.json", out);
  if (write_sidecar(side, argc, argv, &c, truth, o_.packets)) {
    fprintf(stderr, "%s: cannot write %s: %s\n", progname, side,
            strerror(errno));
    rc = 1;
  }
  free(side);
  free(truth);
  return rc;
}
