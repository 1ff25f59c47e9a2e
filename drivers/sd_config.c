/*
 * sd_config.c: the configuration parser.  Scalar keys are a table (name,
 * type, offset, bounds) so that parsing, the dump and the documentation
 * cannot drift apart; repeated keys have their own parsers below.
 */
#include "sd_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd_log.h"
#include "sluice/addr.h"
#include "sluice/utf8.h"

enum ktype { K_DUR, K_U8, K_U32, K_U64, K_I32, K_SIZE32, K_SIZE64, K_BOOL8,
             K_BOOL, K_ENUM, K_STR, K_FEATURES };

typedef struct keydef {
  const char *name;
  enum ktype type;
  size_t off;
  int64_t min, max;
  const char *const *names; /* K_ENUM: value i is names[i] */
} keydef;

static const char *const mode_names[] = {"passthrough", "screen", NULL};
static const char *const vrfy_names[] = {"252", "502", "relay", NULL};
static const char *const ident_names[] = {"none", "xclient", "proxy1", "proxy2", NULL};
static const char *const uptls_names[] = {"none", "opportunistic", "required", "implicit", NULL};
static const char *const action_names[] = {"continue", "tarpit", "reject", "drop", NULL};
static const char *const admit_names[] = {"accept", "tarpit", "tempfail", NULL};
static const char *const balance_names[] = {"roundrobin", "leastconn", NULL};
static const char *const logfmt_names[] = {"logfmt", "json", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const feature_names[] = {
    "pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
    "dsn", "chunking", "starttls", "auth", NULL};

#define O(f) offsetof(sd_config, f)
#define TARPIT_KEYS(p, f)                                                     \
  {p "_greet_delay", K_DUR, O(policy.f.greet_delay), 0, 0, NULL},             \
  {p "_reply_delay", K_DUR, O(policy.f.reply_delay), 0, 0, NULL},             \
  {p "_jitter", K_DUR, O(policy.f.jitter), 0, 0, NULL},                       \
  {p "_stutter_bytes", K_U32, O(policy.f.stutter_bytes), 0, 1 << 20, NULL},   \
  {p "_stutter_interval", K_DUR, O(policy.f.stutter_interval), 0, 0, NULL},   \
  {p "_data_rate", K_SIZE64, O(policy.f.data_rate), 0, 0, NULL}

static const keydef keys[] = {
    /* process */
    {"workers", K_U32, O(workers), 0, 256, NULL},
    {"max_connections", K_U32, O(max_connections), 1, 1000000, NULL},
    {"max_connections_total", K_U32, O(max_connections_total), 0, 100000000, NULL},
    {"pool_memory", K_SIZE64, O(pool_memory), 0, 0, NULL},
    {"pool_keep_free", K_U32, O(pool_keep_free), 0, 1000000, NULL},
    {"drain_timeout", K_DUR, O(drain_timeout), 0, 0, NULL},
    {"log_format", K_ENUM, O(log_format), 0, 0, logfmt_names},
    {"log_level", K_ENUM, O(log_level), 0, 0, level_names},
    {"log_file", K_STR, O(log_file), 0, 0, NULL},
    {"metrics_listen", K_STR, O(metrics_listen), 0, 0, NULL},
    /* client TLS */
    {"tls_cert", K_STR, O(tls_cert), 0, 0, NULL},
    {"tls_key", K_STR, O(tls_key), 0, 0, NULL},
    {"tls_ciphers", K_STR, O(tls_ciphers), 0, 0, NULL},
    {"tls_ciphersuites", K_STR, O(tls_ciphersuites), 0, 0, NULL},
    /* upstreams */
    {"upstream_balance", K_ENUM, O(balance), 0, 0, balance_names},
    {"upstream_tls", K_ENUM, O(policy.upstream_tls), 0, 0, uptls_names},
    {"upstream_tls_verify", K_BOOL, O(upstream_tls_verify), 0, 0, NULL},
    {"upstream_tls_ca", K_STR, O(upstream_tls_ca), 0, 0, NULL},
    {"upstream_tls_name", K_STR, O(upstream_tls_name), 0, 0, NULL},
    {"upstream_tls_ciphers", K_STR, O(upstream_tls_ciphers), 0, 0, NULL},
    {"upstream_attempts", K_U8, O(policy.upstream_attempts), 1, 16, NULL},
    {"health_interval", K_DUR, O(health_interval), 0, 0, NULL},
    {"health_timeout", K_DUR, O(health_timeout), 0, 0, NULL},
    {"health_rise", K_U32, O(health_rise), 1, 100, NULL},
    {"health_fall", K_U32, O(health_fall), 1, 100, NULL},
    {"down_retry", K_DUR, O(down_retry), 0, 0, NULL},
    /* SMTP policy */
    {"mode", K_ENUM, O(policy.mode), 0, 0, mode_names},
    {"hostname", K_STR, O(hostname), 0, 0, NULL},
    {"features", K_FEATURES, O(policy.features), 0, 0, feature_names},
    {"lenient_bare_lf", K_BOOL, O(policy.lenient), 0, 0, NULL},
    {"vrfy", K_ENUM, O(policy.vrfy), 0, 0, vrfy_names},
    {"identity", K_ENUM, O(policy.identity), 0, 0, ident_names},
    {"auth_requires_tls", K_BOOL8, O(policy.auth_requires_tls), 0, 0, NULL},
    {"auth_mechanisms", K_STR, O(auth_mechanisms), 0, 0, NULL},
    {"greet_teaser", K_BOOL8, O(policy.greet_teaser), 0, 0, NULL},
    {"forbid_unauth_pipelining", K_BOOL8, O(policy.forbid_unauth_pipelining), 0, 0, NULL},
    TARPIT_KEYS("normal", normal),
    TARPIT_KEYS("suspect", suspect),
    {"pregreet_action", K_ENUM, O(policy.pregreet_action), 0, 0, action_names},
    {"pregreet_score", K_I32, O(policy.pregreet_score), INT32_MIN, INT32_MAX, NULL},
    {"dnsbl_timeout", K_DUR, O(policy.dnsbl_timeout), 0, 0, NULL},
    {"dnsbl_action", K_ENUM, O(policy.dnsbl_action), 0, 0, action_names},
    {"tarpit_score", K_I32, O(policy.tarpit_score), INT32_MIN, INT32_MAX, NULL},
    {"reject_score", K_I32, O(policy.reject_score), INT32_MIN, INT32_MAX, NULL},
    {"allow_score", K_I32, O(policy.allow_score), INT32_MIN, INT32_MAX, NULL},
    {"dns_servers", K_STR, O(dns_servers), 0, 0, NULL},
    {"dns_timeout", K_DUR, O(dns_timeout), 0, 0, NULL},
    {"dns_tries", K_U32, O(dns_tries), 1, 10, NULL},
    /* per-client admission */
    {"ratelim_entries", K_U32, O(ratelim.entries), 16, 1 << 24, NULL},
    {"per_ip_concurrency", K_U32, O(ratelim.concurrency_max), 0, 1000000, NULL},
    {"per_ip_rate", K_U32, O(ratelim.rate_max), 0, 100000000, NULL},
    {"per_ip_rate_window", K_DUR, O(ratelim.rate_window), 0, 0, NULL},
    {"ipv4_prefix", K_U8, O(ratelim.ipv4_prefix), 1, 32, NULL},
    {"ipv6_prefix", K_U8, O(ratelim.ipv6_prefix), 1, 128, NULL},
    {"over_concurrency", K_ENUM, O(ratelim.over_concurrency), 1, 2, admit_names},
    {"over_rate", K_ENUM, O(ratelim.over_rate), 1, 2, admit_names},
    /* limits (sl_limits) */
    {"command_line_max", K_SIZE32, O(limits.command_line_max), 0, 0, NULL},
    {"auth_line_max", K_SIZE32, O(limits.auth_line_max), 0, 0, NULL},
    {"reply_line_max", K_SIZE32, O(limits.reply_line_max), 0, 0, NULL},
    {"reply_max", K_SIZE32, O(limits.reply_max), 0, 0, NULL},
    {"text_line_max", K_SIZE32, O(limits.text_line_max), 0, 0, NULL},
    {"path_max", K_SIZE32, O(limits.path_max), 0, 0, NULL},
    {"domain_max", K_SIZE32, O(limits.domain_max), 0, 0, NULL},
    {"message_size_max", K_SIZE64, O(limits.message_size_max), 0, 0, NULL},
    {"recipients_max", K_U32, O(limits.recipients_max), 1, 1000000, NULL},
    {"pipeline_max", K_U32, O(limits.pipeline_max), 2, 32, NULL},
    {"errors_max", K_U32, O(limits.errors_max), 1, 1000000, NULL},
    {"junk_commands_max", K_U32, O(limits.junk_commands_max), 1, 1000000, NULL},
    {"buffer_size", K_SIZE32, O(limits.buffer_size), 0, 0, NULL},
    {"small_buffer_size", K_SIZE32, O(limits.small_buffer_size), 0, 0, NULL},
    {"proxy_header_timeout", K_DUR, O(limits.proxy_header_timeout), 0, 0, NULL},
    {"command_timeout", K_DUR, O(limits.command_timeout), 0, 0, NULL},
    {"data_block_timeout", K_DUR, O(limits.data_block_timeout), 0, 0, NULL},
    {"send_timeout", K_DUR, O(limits.send_timeout), 0, 0, NULL},
    {"upstream_connect_timeout", K_DUR, O(limits.upstream_connect_timeout), 0, 0, NULL},
    {"upstream_greeting_timeout", K_DUR, O(limits.upstream_greeting_timeout), 0, 0, NULL},
    {"upstream_command_timeout", K_DUR, O(limits.upstream_command_timeout), 0, 0, NULL},
    {"upstream_data_init_timeout", K_DUR, O(limits.upstream_data_init_timeout), 0, 0, NULL},
    {"upstream_data_term_timeout", K_DUR, O(limits.upstream_data_term_timeout), 0, 0, NULL},
    {"tls_handshake_timeout", K_DUR, O(limits.tls_handshake_timeout), 0, 0, NULL},
    {"session_timeout", K_DUR, O(limits.session_timeout), 0, 0, NULL},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* ---- small parsers ------------------------------------------------------ */

static char *xstrdup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int sd_parse_duration(const char *s, sl_duration *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*s)) return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -1;
  uint64_t mul = SL_SEC;
  if (*end == '\0' || strcmp(end, "s") == 0) mul = SL_SEC;
  else if (strcmp(end, "ms") == 0) mul = SL_MSEC;
  else if (strcmp(end, "us") == 0) mul = SL_USEC;
  else if (strcmp(end, "m") == 0) mul = 60 * SL_SEC;
  else if (strcmp(end, "h") == 0) mul = 3600 * SL_SEC;
  else if (strcmp(end, "d") == 0) mul = 86400 * SL_SEC;
  else return -1;
  if (v > UINT64_MAX / mul) return -1;
  *out = (sl_duration)v * mul;
  return 0;
}

int sd_parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*s)) return -1;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -1;
  uint64_t mul = 1;
  if (*end == '\0') mul = 1;
  else if (strcmp(end, "k") == 0 || strcmp(end, "K") == 0) mul = 1024;
  else if (strcmp(end, "M") == 0) mul = 1024 * 1024;
  else if (strcmp(end, "G") == 0) mul = 1024ull * 1024 * 1024;
  else return -1;
  if (v > UINT64_MAX / mul) return -1;
  *out = (uint64_t)v * mul;
  return 0;
}

static int parse_bool(const char *s, int *out) {
  if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
    *out = 1;
  else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
    *out = 0;
  else
    return -1;
  return 0;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  if (*s == '\0') return -1;
  long long v = strtoll(s, &end, 10);
  if (errno || *end != '\0') return -1;
  *out = v;
  return 0;
}

int sd_parse_hostport(const char *s, sd_sockaddr *out, int numeric) {
  char host[256];
  const char *port;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) return -1;
    memcpy(host, s + 1, (size_t)(rb - s - 1));
    host[rb - s - 1] = '\0';
    port = rb + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host) return -1;
    if (memchr(s, ':', (size_t)(colon - s)) != NULL) return -1; /* v6 needs [] */
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    port = colon + 1;
  }
  int64_t p;
  if (parse_i64(port, &p) != 0 || p < 0 || p > 65535) return -1;
  if (strcmp(host, "*") == 0 || host[0] == '\0') strcpy(host, "0.0.0.0");
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = numeric ? AI_NUMERICHOST : 0;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) return -1;
  memset(out, 0, sizeof *out);
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  if (out->ss.ss_family == AF_INET)
    ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)p);
  else if (out->ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)p);
  else
    return -1;
  return 0;
}

int sd_cidr_parse(const char *s, sd_cidr *out) {
  char buf[80];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  memset(out, 0, sizeof *out);
  int maxbits;
  if (inet_pton(AF_INET, buf, out->bytes) == 1) {
    out->family = 4;
    maxbits = 32;
  } else if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
    out->family = 6;
    maxbits = 128;
  } else {
    return -1;
  }
  int64_t bits = maxbits;
  if (slash && (parse_i64(slash + 1, &bits) != 0 || bits < 0 || bits > maxbits))
    return -1;
  out->bits = (uint8_t)bits;
  return 0;
}

int sd_cidr_match(const sd_cidr *c, const struct sockaddr *sa) {
  const uint8_t *b;
  uint8_t mapped[16];
  int fam;
  if (sa->sa_family == AF_INET) {
    b = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    fam = 4;
  } else if (sa->sa_family == AF_INET6) {
    b = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    fam = 6;
    /* An IPv4-mapped peer on a dual-stack socket matches IPv4 ranges. */
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->family == 4 && memcmp(b, pfx, 12) == 0) {
      memcpy(mapped, b + 12, 4);
      b = mapped;
      fam = 4;
    }
  } else {
    return 0;
  }
  if (fam != c->family) return 0;
  unsigned full = c->bits / 8u, rest = c->bits % 8u;
  if (memcmp(b, c->bytes, full) != 0) return 0;
  if (rest) {
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    if ((b[full] & mask) != (c->bytes[full] & mask)) return 0;
  }
  return 1;
}

int sd_sockaddr_format(const struct sockaddr *sa, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
  }
  return snprintf(out, len, "unknown");
}

/* ---- lifecycle ---------------------------------------------------------- */

sd_config *sd_config_defaults(void) {
  sd_config *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->refs = 1;
  sl_limits_default(&c->limits);
  sl_policy_default(&c->policy);
  sl_ratelim_config_default(&c->ratelim);
  c->balance = SD_BALANCE_RR;
  c->health_interval = 10 * SL_SEC;
  c->health_timeout = 5 * SL_SEC;
  c->health_rise = 2;
  c->health_fall = 3;
  c->down_retry = 30 * SL_SEC;
  c->upstream_tls_verify = 0;
  c->dns_timeout = 2 * SL_SEC;
  c->dns_tries = 2;
  c->max_connections = 10000;
  c->pool_memory = 256ull * 1024 * 1024;
  c->pool_keep_free = 1024;
  c->workers = 0;
  c->log_format = SD_LOGFMT;
  c->log_level = SD_LOG_INFO;
  c->drain_timeout = 30 * SL_SEC;
  if (c->policy.dnsbl_timeout == 0) c->policy.dnsbl_timeout = 3 * SL_SEC;
  char host[256];
  if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
    strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  c->hostname = xstrdup(host);
  return c;
}

sd_config *sd_config_ref(sd_config *c) {
  c->refs++;
  return c;
}

void sd_config_unref(sd_config *c) {
  if (c == NULL || --c->refs > 0) return;
  for (size_t i = 0; i < NKEYS; i++)
    if (keys[i].type == K_STR) free(*(char **)(void *)((char *)c + keys[i].off));
  for (size_t i = 0; i < c->nlisten; i++) free(c->listen[i].text);
  free(c->listen);
  for (size_t i = 0; i < c->nupstream; i++) free(c->upstream[i].text);
  free(c->upstream);
  free(c->trusted);
  for (size_t i = 0; i < c->nsni; i++) {
    free(c->sni[i].hostname);
    free(c->sni[i].cert);
    free(c->sni[i].key);
  }
  free(c->sni);
  for (size_t i = 0; i < SL_DNSBL_ZONES_MAX; i++) free(c->zone_names[i]);
  for (size_t i = 0; i < c->nrelay_domains; i++) free(c->relay_domains[i]);
  free(c->relay_domains);
  free(c->mynetworks);
  free(c->path);
  free(c);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct pctx {
  const char *name;
  int line;
  char *err;
  size_t errlen;
} pctx;

__attribute__((format(printf, 2, 3))) static int fail(pctx *p, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(p->err, p->errlen, "%s:%d: %s", p->name, p->line, msg);
  return -1;
}

/* Splits s in place on blanks; returns the count (at most max). */
static int split(char *s, char **words, int max) {
  int n = 0;
  while (*s) {
    while (*s == ' ' || *s == '\t') *s++ = '\0';
    if (*s == '\0') break;
    if (n == max) return max + 1;
    words[n++] = s;
    while (*s && *s != ' ' && *s != '\t') s++;
  }
  return n;
}

static int set_scalar(pctx *p, sd_config *c, const keydef *k, const char *v) {
  void *dst = (char *)c + k->off;
  sl_duration d;
  uint64_t u;
  int64_t i;
  int b;
  switch (k->type) {
  case K_DUR:
    if (sd_parse_duration(v, &d) != 0)
      return fail(p, "%s: \"%s\" is not a duration (e.g. 30s, 500ms, 5m)", k->name, v);
    *(sl_duration *)dst = d;
    return 0;
  case K_SIZE32:
  case K_SIZE64:
    if (sd_parse_size(v, &u) != 0)
      return fail(p, "%s: \"%s\" is not a size (e.g. 512, 16k, 50M)", k->name, v);
    if (k->type == K_SIZE32) {
      if (u > UINT32_MAX) return fail(p, "%s: %s is too large", k->name, v);
      *(uint32_t *)dst = (uint32_t)u;
    } else {
      *(uint64_t *)dst = u;
    }
    return 0;
  case K_U8:
  case K_U32:
  case K_U64:
  case K_I32:
    if (parse_i64(v, &i) != 0) return fail(p, "%s: \"%s\" is not an integer", k->name, v);
    if ((k->min || k->max) && (i < k->min || i > k->max))
      return fail(p, "%s: %s is out of range %" PRId64 "..%" PRId64, k->name, v, k->min, k->max);
    if (k->type != K_I32 && i < 0) return fail(p, "%s: %s is negative", k->name, v);
    if (k->type == K_U8) *(uint8_t *)dst = (uint8_t)i;
    else if (k->type == K_U32) *(uint32_t *)dst = (uint32_t)i;
    else if (k->type == K_U64) *(uint64_t *)dst = (uint64_t)i;
    else *(int32_t *)dst = (int32_t)i;
    return 0;
  case K_BOOL:
  case K_BOOL8:
    if (parse_bool(v, &b) != 0) return fail(p, "%s: \"%s\" is not yes or no", k->name, v);
    if (k->type == K_BOOL8) *(uint8_t *)dst = (uint8_t)b;
    else if (k->off == O(policy.lenient))
      c->policy.lenient = b ? SL_LENIENT_NORMALIZE_BARE_LF : 0;
    else *(int *)dst = b;
    return 0;
  case K_ENUM:
    for (int j = 0; k->names[j]; j++) {
      if (strcmp(k->names[j], v) == 0) {
        if ((k->min || k->max) && (j < k->min || j > k->max)) break;
        *(int *)dst = j;
        return 0;
      }
    }
    {
      char list[256] = "";
      for (int j = 0; k->names[j]; j++) {
        if ((k->min || k->max) && (j < k->min || j > k->max)) continue;
        strncat(list, list[0] ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, k->names[j], sizeof list - strlen(list) - 1);
      }
      return fail(p, "%s: \"%s\" is not one of: %s", k->name, v, list);
    }
  case K_STR: {
    char **s = dst;
    free(*s);
    *s = v[0] ? xstrdup(v) : NULL;
    return 0;
  }
  case K_FEATURES: {
    char tmp[512], *w[16];
    snprintf(tmp, sizeof tmp, "%s", v);
    for (char *q = tmp; *q; q++)
      if (*q == ',') *q = ' ';
    int n = split(tmp, w, 15);
    if (n > 15) return fail(p, "features: too many words");
    uint32_t f = 0;
    for (int j = 0; j < n; j++) {
      if (!strcmp(w[j], "all")) {
        f = SL_FEAT_ALL;
        continue;
      }
      if (!strcmp(w[j], "none")) continue;
      int found = 0;
      for (int x = 0; feature_names[x]; x++)
        if (!strcmp(feature_names[x], w[j])) {
          f |= 1u << x;
          found = 1;
        }
      if (!found) return fail(p, "features: unknown feature \"%s\"", w[j]);
    }
    c->policy.features = f;
    c->features_set = 1;
    return 0;
  }
  }
  return fail(p, "internal: bad key type");
}

static int add_listen(pctx *p, sd_config *c, char *v) {
  char *w[8];
  int n = split(v, w, 7);
  if (n < 1 || n > 7) return fail(p, "listen: expected ADDRESS:PORT [tls] [proxy]");
  sd_listen_cfg l;
  memset(&l, 0, sizeof l);
  if (sd_parse_hostport(w[0], &l.addr, 1) != 0)
    return fail(p, "listen: \"%s\" is not a numeric ADDRESS:PORT (IPv6 as [::1]:25)", w[0]);
  for (int i = 1; i < n; i++) {
    if (!strcmp(w[i], "tls")) l.tls = 1;
    else if (!strcmp(w[i], "proxy")) l.proxy = 1;
    else return fail(p, "listen: unknown option \"%s\" (tls, proxy)", w[i]);
  }
  sd_listen_cfg *nl = realloc(c->listen, (c->nlisten + 1) * sizeof *nl);
  if (nl == NULL) return fail(p, "out of memory");
  c->listen = nl;
  l.text = xstrdup(w[0]);
  l.line = p->line;
  c->listen[c->nlisten++] = l;
  return 0;
}

static int add_upstream(pctx *p, sd_config *c, char *v) {
  char *w[4];
  int n = split(v, w, 3);
  if (n < 1 || n > 3) return fail(p, "upstream: expected HOST:PORT [weight=N]");
  sd_upstream_cfg u;
  memset(&u, 0, sizeof u);
  u.weight = 1;
  if (sd_parse_hostport(w[0], &u.addr, 0) != 0)
    return fail(p, "upstream: cannot resolve \"%s\" (HOST:PORT, IPv6 as [::1]:25)", w[0]);
  for (int i = 1; i < n; i++) {
    int64_t wt;
    if (strncmp(w[i], "weight=", 7) == 0 && parse_i64(w[i] + 7, &wt) == 0 && wt >= 1 &&
        wt <= 1000)
      u.weight = (uint32_t)wt;
    else
      return fail(p, "upstream: bad option \"%s\" (weight=1..1000)", w[i]);
  }
  if (c->nupstream >= 64) return fail(p, "upstream: at most 64 servers");
  sd_upstream_cfg *nu = realloc(c->upstream, (c->nupstream + 1) * sizeof *nu);
  if (nu == NULL) return fail(p, "out of memory");
  c->upstream = nu;
  u.text = xstrdup(w[0]);
  u.line = p->line;
  c->upstream[c->nupstream++] = u;
  return 0;
}

static int add_dnsbl(pctx *p, sd_config *c, char *v) {
  char *w[2 + SL_DNSBL_CODES_MAX + 1];
  int n = split(v, w, 2 + SL_DNSBL_CODES_MAX);
  if (n < 2 || n > 2 + SL_DNSBL_CODES_MAX)
    return fail(p, "dnsbl: expected ZONE WEIGHT [127.0.0.N ...] (at most %d codes)",
                SL_DNSBL_CODES_MAX);
  if (c->policy.ndnsbl >= SL_DNSBL_ZONES_MAX)
    return fail(p, "dnsbl: at most %d zones", SL_DNSBL_ZONES_MAX);
  if (strlen(w[0]) > 200 || strchr(w[0], '.') == NULL)
    return fail(p, "dnsbl: \"%s\" is not a DNS zone", w[0]);
  int64_t wt;
  if (parse_i64(w[1], &wt) != 0 || wt < -1000000 || wt > 1000000)
    return fail(p, "dnsbl: weight \"%s\" is not an integer", w[1]);
  sl_dnsbl_zone *z = &c->zones[c->policy.ndnsbl];
  memset(z, 0, sizeof *z);
  for (int i = 2; i < n; i++) {
    struct in_addr a;
    if (inet_pton(AF_INET, w[i], &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
      return fail(p, "dnsbl: return code \"%s\" is not a 127.x.y.z address", w[i]);
    z->codes[z->ncodes++] = ntohl(a.s_addr);
  }
  size_t zi = c->policy.ndnsbl;
  free(c->zone_names[zi]);
  c->zone_names[zi] = xstrdup(w[0]);
  z->zone = c->zone_names[zi];
  z->weight = (int32_t)wt;
  c->policy.ndnsbl++;
  return 0;
}

static int add_trusted(pctx *p, sd_config *c, char *v) {
  for (char *q = v; *q; q++)
    if (*q == ',') *q = ' ';
  char *w[33];
  int n = split(v, w, 32);
  if (n < 1 || n > 32) return fail(p, "trusted_proxy: expected 1 to 32 CIDR ranges");
  for (int i = 0; i < n; i++) {
    sd_cidr cd;
    if (sd_cidr_parse(w[i], &cd) != 0)
      return fail(p, "trusted_proxy: \"%s\" is not an address or CIDR range", w[i]);
    sd_cidr *nt = realloc(c->trusted, (c->ntrusted + 1) * sizeof *nt);
    if (nt == NULL) return fail(p, "out of memory");
    c->trusted = nt;
    c->trusted[c->ntrusted++] = cd;
  }
  return 0;
}

static int add_sni(pctx *p, sd_config *c, char *v) {
  char *w[4];
  int n = split(v, w, 3);
  if (n != 3) return fail(p, "sni: expected HOSTNAME CERT_FILE KEY_FILE");
  sd_sni_cfg *ns = realloc(c->sni, (c->nsni + 1) * sizeof *ns);
  if (ns == NULL) return fail(p, "out of memory");
  c->sni = ns;
  c->sni[c->nsni].hostname = xstrdup(w[0]);
  c->sni[c->nsni].cert = xstrdup(w[1]);
  c->sni[c->nsni].key = xstrdup(w[2]);
  c->nsni++;
  return 0;
}

/* ---- relay control: relay_domains, relay_allow, mynetworks --------------- */

static int add_relay_domain(pctx *p, sd_config *c, const char *d, const char *src,
                            int line) {
  if (!strcmp(d, "*")) {
    c->policy.rcpt.flags |= SL_RCPT_ANY_DOMAIN;
    return 0;
  }
  size_t n = strlen(d);
  int bad = n == 0 || n > 255 || !strcmp(d, ".") || strchr(d, '@') != NULL;
  for (size_t i = 0; i < n && !bad; i++)
    if ((unsigned char)d[i] <= 0x20 || d[i] == 0x7f) bad = 1;
  if (sl_utf8_check((const uint8_t *)d, n) != n) bad = 1; /* U-labels are UTF-8 */
  if (bad) {
    if (src)
      return fail(p, "relay_domains: %s:%d: \"%s\" is not a domain, .domain or [address]",
                  src, line, d);
    return fail(p, "relay_domains: \"%s\" is not a domain, .domain or [address]", d);
  }
  if ((c->nrelay_domains & (c->nrelay_domains + 1)) == 0 || c->nrelay_domains == 0) {
    size_t cap = c->nrelay_domains ? 2 * (c->nrelay_domains + 1) : 8;
    char **nd = realloc(c->relay_domains, cap * sizeof *nd);
    if (nd == NULL) return fail(p, "out of memory");
    c->relay_domains = nd;
  }
  c->relay_domains[c->nrelay_domains++] = xstrdup(d);
  return 0;
}

/* Words of one line (separated by commas, spaces or tabs); '#' comments
   are already gone. */
static int add_relay_words(pctx *p, sd_config *c, char *v, const char *src, int line) {
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t' || *q == '\r') *q = ' ';
  for (char *s = strtok(v, " "); s; s = strtok(NULL, " "))
    if (add_relay_domain(p, c, s, src, line) != 0) return -1;
  return 0;
}

/* "file:/etc/sluice/relay_domains": one or more domains a line, '#'
   comments; a relative path is taken from the configuration's directory.
   Read again on every reload, like the rest of the file. */
static int add_relay_file(pctx *p, sd_config *c, const char *path) {
  char full[4096];
  const char *slash = strrchr(p->name, '/');
  if (path[0] != '/' && slash)
    snprintf(full, sizeof full, "%.*s/%s", (int)(slash - p->name), p->name, path);
  else
    snprintf(full, sizeof full, "%s", path);
  FILE *f = fopen(full, "r");
  if (f == NULL) return fail(p, "relay_domains: cannot open %s: %s", full, strerror(errno));
  char buf[4096];
  int line = 0, rc = 0;
  while (rc == 0 && fgets(buf, sizeof buf, f)) {
    line++;
    char *hash = strchr(buf, '#');
    if (hash) *hash = '\0';
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    rc = add_relay_words(p, c, buf, full, line);
  }
  if (rc == 0 && ferror(f)) rc = fail(p, "relay_domains: cannot read %s", full);
  fclose(f);
  return rc;
}

static int add_relay_domains(pctx *p, sd_config *c, char *v) {
  if (!strncmp(v, "file:", 5)) {
    const char *path = v + 5;
    while (*path == ' ') path++;
    return add_relay_file(p, c, path);
  }
  return add_relay_words(p, c, v, NULL, 0);
}

static const struct {
  const char *name;
  uint32_t flag;
} relay_allow_names[] = {{"source_route", SL_RCPT_ALLOW_SOURCE_ROUTE},
                         {"percent_hack", SL_RCPT_ALLOW_PERCENT_HACK},
                         {"bang_path", SL_RCPT_ALLOW_BANG_PATH}};

static int set_relay_allow(pctx *p, sd_config *c, char *v) {
  uint32_t flags = 0;
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t') *q = ' ';
  for (char *s = strtok(v, " "); s; s = strtok(NULL, " ")) {
    if (!strcmp(s, "none")) continue;
    size_t i = 0;
    while (i < 3 && strcmp(s, relay_allow_names[i].name)) i++;
    if (i == 3)
      return fail(p, "relay_allow: \"%s\" is not none, source_route, percent_hack or bang_path", s);
    flags |= relay_allow_names[i].flag;
  }
  c->policy.rcpt.flags = (c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN) | flags;
  return 0;
}

static int add_mynetworks(pctx *p, sd_config *c, char *v) {
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t') *q = ' ';
  for (char *s = strtok(v, " "); s; s = strtok(NULL, " ")) {
    sd_cidr cd;
    if (sd_cidr_parse(s, &cd) != 0)
      return fail(p, "mynetworks: \"%s\" is not an address or CIDR range", s);
    sl_prefix *nm = realloc(c->mynetworks, (c->nmynetworks + 1) * sizeof *nm);
    if (nm == NULL) return fail(p, "out of memory");
    c->mynetworks = nm;
    memset(&nm[c->nmynetworks], 0, sizeof *nm);
    nm[c->nmynetworks].addr.family = cd.family == 4 ? SL_AF_INET : SL_AF_INET6;
    memcpy(nm[c->nmynetworks].addr.bytes, cd.bytes, 16);
    nm[c->nmynetworks].bits = cd.bits;
    c->nmynetworks++;
  }
  return 0;
}

const char *sd_config_relay_warning(const sd_config *c) {
  if (!c->nrelay_domains && !(c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN))
    return "relay_domains is not set: every recipient of a client that is neither "
           "authenticated nor in mynetworks is refused (454 4.7.1); list the domains "
           "the upstream accepts mail for, or \"relay_domains = *\" if the upstream "
           "does its own relay control";
  if ((c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN) && c->policy.identity == SL_IDENT_NONE)
    return "relay_domains = * with identity = none: the upstream sees only sluice's "
           "address, so it must not trust that address (an upstream with sluice in "
           "its mynetworks becomes an open relay)";
  return NULL;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

static int finish(pctx *p, sd_config *c) {
  p->line = 0;
  if (c->nlisten == 0) {
    snprintf(p->err, p->errlen, "%s: no \"listen\" line (e.g. listen = 127.0.0.1:2525)",
             p->name);
    return -1;
  }
  if (c->nupstream == 0) {
    snprintf(p->err, p->errlen,
             "%s: no \"upstream\" line (e.g. upstream = 127.0.0.1:2526)", p->name);
    return -1;
  }
  if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
    snprintf(p->err, p->errlen, "%s: tls_cert and tls_key go together", p->name);
    return -1;
  }
  for (size_t i = 0; i < c->nlisten; i++) {
    if (c->listen[i].tls && c->tls_cert == NULL) {
      snprintf(p->err, p->errlen, "%s:%d: listen %s tls needs tls_cert and tls_key",
               p->name, c->listen[i].line, c->listen[i].text);
      return -1;
    }
    if (c->listen[i].proxy && c->ntrusted == 0) {
      snprintf(p->err, p->errlen,
               "%s:%d: listen %s proxy needs at least one trusted_proxy range",
               p->name, c->listen[i].line, c->listen[i].text);
      return -1;
    }
  }
  if (c->nsni && c->tls_cert == NULL) {
    snprintf(p->err, p->errlen, "%s: sni needs a default tls_cert and tls_key", p->name);
    return -1;
  }
  /* STARTTLS is only offered when there is a certificate to offer it with. */
  if (c->tls_cert == NULL) c->policy.features &= ~(uint32_t)SL_FEAT_STARTTLS;
  else if (!c->features_set) c->policy.features |= SL_FEAT_STARTTLS;
  c->policy.hostname = c->hostname ? c->hostname : "localhost";
  c->policy.auth_mechanisms = c->auth_mechanisms;
  c->policy.dnsbl = c->policy.ndnsbl ? c->zones : NULL;
  c->policy.rcpt.domains = (const char *const *)c->relay_domains;
  c->policy.rcpt.ndomains = (uint32_t)c->nrelay_domains;
  c->policy.rcpt.mynetworks = c->mynetworks;
  c->policy.rcpt.nmynetworks = (uint32_t)c->nmynetworks;
  if (c->metrics_listen) {
    if (sd_parse_hostport(c->metrics_listen, &c->metrics_addr, 1) != 0) {
      snprintf(p->err, p->errlen, "%s: metrics_listen \"%s\" is not a numeric ADDRESS:PORT",
               p->name, c->metrics_listen);
      return -1;
    }
  }
  if (sl_limits_check(&c->limits) != 0) {
    snprintf(p->err, p->errlen,
             "%s: the limits are inconsistent (buffer_size must be >= reply_max and "
             ">= auth_line_max + 2, small_buffer_size >= 300, pipeline_max 2..32)",
             p->name);
    return -1;
  }
  if (sl_policy_check(&c->policy) != 0) {
    snprintf(p->err, p->errlen,
             "%s: the policy is inconsistent (check scores: allow_score <= tarpit_score "
             "<= reject_score, and the tarpit settings)",
             p->name);
    return -1;
  }
  return 0;
}

int sd_config_parse(const char *text, size_t len, const char *name, sd_config **out,
                    char *err, size_t errlen) {
  pctx p = {name, 0, err, errlen};
  sd_config *c = sd_config_defaults();
  if (c == NULL) return fail(&p, "out of memory");
  c->path = xstrdup(name);
  size_t pos = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    p.line++;
    char raw[4096];
    if (n >= sizeof raw) {
      fail(&p, "line too long");
      goto bad;
    }
    memcpy(raw, text + pos, n);
    raw[n] = '\0';
    pos += n + (nl ? 1 : 0);
    if (memchr(raw, '\0', n) != NULL) {
      fail(&p, "NUL byte in line");
      goto bad;
    }
    char *hash = strchr(raw, '#');
    if (hash) *hash = '\0';
    char *s = trim(raw);
    if (*s == '\0') continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      fail(&p, "expected \"key = value\"");
      goto bad;
    }
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    int rc;
    if (!strcmp(k, "listen")) rc = add_listen(&p, c, v);
    else if (!strcmp(k, "upstream")) rc = add_upstream(&p, c, v);
    else if (!strcmp(k, "dnsbl")) rc = add_dnsbl(&p, c, v);
    else if (!strcmp(k, "trusted_proxy")) rc = add_trusted(&p, c, v);
    else if (!strcmp(k, "sni")) rc = add_sni(&p, c, v);
    else if (!strcmp(k, "relay_domains")) rc = add_relay_domains(&p, c, v);
    else if (!strcmp(k, "relay_allow")) rc = set_relay_allow(&p, c, v);
    else if (!strcmp(k, "mynetworks")) rc = add_mynetworks(&p, c, v);
    else {
      const keydef *kd = NULL;
      for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].name, k)) kd = &keys[i];
      if (kd == NULL) {
        fail(&p, "unknown key \"%s\"", k);
        goto bad;
      }
      if (*v == '\0' && kd->type != K_STR) {
        fail(&p, "%s: empty value", k);
        goto bad;
      }
      rc = set_scalar(&p, c, kd, v);
    }
    if (rc != 0) goto bad;
  }
  if (finish(&p, c) != 0) goto bad;
  *out = c;
  return 0;
bad:
  sd_config_unref(c);
  return -1;
}

int sd_config_load(const char *path, sd_config **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      if (cap >= (16u << 20)) {
        fclose(f);
        free(buf);
        snprintf(err, errlen, "%s: larger than 16 MiB", path);
        return -1;
      }
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  int rerr = ferror(f);
  fclose(f);
  if (buf == NULL || rerr) {
    free(buf);
    snprintf(err, errlen, "%s: cannot read", path);
    return -1;
  }
  int rc = sd_config_parse(buf, len, path, out, err, errlen);
  free(buf);
  return rc;
}

static void dump_dur(FILE *f, const char *k, sl_duration d) {
  if (d % SL_SEC == 0)
    fprintf(f, "%s = %" PRIu64 "s\n", k, d / SL_SEC);
  else if (d % SL_MSEC == 0)
    fprintf(f, "%s = %" PRIu64 "ms\n", k, d / SL_MSEC);
  else
    fprintf(f, "%s = %" PRIu64 "us\n", k, d / SL_USEC);
}

void sd_config_dump(const sd_config *c, FILE *f) {
  for (size_t i = 0; i < c->nlisten; i++)
    fprintf(f, "listen = %s%s%s\n", c->listen[i].text, c->listen[i].tls ? " tls" : "",
            c->listen[i].proxy ? " proxy" : "");
  for (size_t i = 0; i < c->nupstream; i++)
    fprintf(f, "upstream = %s weight=%u\n", c->upstream[i].text, c->upstream[i].weight);
  for (size_t i = 0; i < c->ntrusted; i++) {
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->trusted[i].family == 4 ? AF_INET : AF_INET6, c->trusted[i].bytes, a, sizeof a);
    fprintf(f, "trusted_proxy = %s/%u\n", a, c->trusted[i].bits);
  }
  for (size_t i = 0; i < c->nsni; i++)
    fprintf(f, "sni = %s %s %s\n", c->sni[i].hostname, c->sni[i].cert, c->sni[i].key);
  for (size_t i = 0; i < c->policy.ndnsbl; i++) {
    fprintf(f, "dnsbl = %s %d", c->zones[i].zone, c->zones[i].weight);
    for (size_t j = 0; j < c->zones[i].ncodes; j++) {
      uint32_t a = c->zones[i].codes[j];
      fprintf(f, " %u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    }
    fputc('\n', f);
  }
  if (c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN) fprintf(f, "relay_domains = *\n");
  for (size_t i = 0; i < c->nrelay_domains; i++)
    fprintf(f, "relay_domains = %s\n", c->relay_domains[i]);
  fprintf(f, "relay_allow =");
  int any_allow = 0;
  for (size_t i = 0; i < 3; i++)
    if (c->policy.rcpt.flags & relay_allow_names[i].flag) {
      fprintf(f, " %s", relay_allow_names[i].name);
      any_allow = 1;
    }
  fprintf(f, "%s\n", any_allow ? "" : " none");
  for (size_t i = 0; i < c->nmynetworks; i++) {
    char a[SL_ADDR_STRLEN];
    sl_addr_format(&c->mynetworks[i].addr, a, sizeof a);
    fprintf(f, "mynetworks = %s/%u\n", a, c->mynetworks[i].bits);
  }
  for (size_t i = 0; i < NKEYS; i++) {
    const keydef *k = &keys[i];
    const void *src = (const char *)c + k->off;
    switch (k->type) {
    case K_DUR: dump_dur(f, k->name, *(const sl_duration *)src); break;
    case K_U8: fprintf(f, "%s = %u\n", k->name, *(const uint8_t *)src); break;
    case K_U32:
    case K_SIZE32: fprintf(f, "%s = %u\n", k->name, *(const uint32_t *)src); break;
    case K_U64:
    case K_SIZE64: fprintf(f, "%s = %" PRIu64 "\n", k->name, *(const uint64_t *)src); break;
    case K_I32: fprintf(f, "%s = %d\n", k->name, *(const int32_t *)src); break;
    case K_BOOL8: fprintf(f, "%s = %s\n", k->name, *(const uint8_t *)src ? "yes" : "no"); break;
    case K_BOOL:
      if (k->off == O(policy.lenient))
        fprintf(f, "%s = %s\n", k->name, c->policy.lenient ? "yes" : "no");
      else
        fprintf(f, "%s = %s\n", k->name, *(const int *)src ? "yes" : "no");
      break;
    case K_ENUM: fprintf(f, "%s = %s\n", k->name, k->names[*(const int *)src]); break;
    case K_STR: {
      const char *s = *(char *const *)src;
      fprintf(f, "%s = %s\n", k->name, s ? s : "");
      break;
    }
    case K_FEATURES: {
      fprintf(f, "%s =", k->name);
      for (int x = 0; feature_names[x]; x++)
        if (c->policy.features & (1u << x)) fprintf(f, " %s", feature_names[x]);
      fputc('\n', f);
      break;
    }
    }
  }
}
