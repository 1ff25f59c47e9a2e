/* sp_policy.c: sluiced-format policy files for the replay; see sp_policy.h. */
#include "sp_policy.h"

#include "sluice/addr.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { K_DUR, K_U32, K_U8, K_I32, K_SIZE32, K_SIZE64, K_BOOL8,
                    K_BOOLBIT, K_ENUM, K_FEATURES, K_HOST, K_AUTHMECH } kind;

typedef struct keydef {
  const char *name;
  kind k;
  size_t off;
  const char *const *names; /* K_ENUM */
} keydef;

static const char *const mode_names[] = {"passthrough", "screen", NULL};
static const char *const vrfy_names[] = {"252", "502", "relay", NULL};
static const char *const ident_names[] = {"none", "xclient", "proxy1", "proxy2", NULL};
static const char *const action_names[] = {"continue", "tarpit", "reject", "drop", NULL};
static const char *const feature_names[] = {
    "pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
    "dsn", "chunking", "starttls", "auth", NULL};

#define O(f) offsetof(sp_policy, f)
#define TARPIT(p, f)                                                          \
  {p "_greet_delay", K_DUR, O(policy.f.greet_delay), NULL},                   \
  {p "_reply_delay", K_DUR, O(policy.f.reply_delay), NULL},                   \
  {p "_jitter", K_DUR, O(policy.f.jitter), NULL},                             \
  {p "_stutter_bytes", K_U32, O(policy.f.stutter_bytes), NULL},               \
  {p "_stutter_interval", K_DUR, O(policy.f.stutter_interval), NULL},         \
  {p "_data_rate", K_SIZE64, O(policy.f.data_rate), NULL}

static const keydef keys[] = {
    {"mode", K_ENUM, O(policy.mode), mode_names},
    {"hostname", K_HOST, 0, NULL},
    {"features", K_FEATURES, O(policy.features), NULL},
    {"lenient_bare_lf", K_BOOLBIT, O(policy.lenient), NULL},
    {"vrfy", K_ENUM, O(policy.vrfy), vrfy_names},
    {"identity", K_ENUM, O(policy.identity), ident_names},
    {"upstream_attempts", K_U8, O(policy.upstream_attempts), NULL},
    {"auth_requires_tls", K_BOOL8, O(policy.auth_requires_tls), NULL},
    {"auth_mechanisms", K_AUTHMECH, 0, NULL},
    {"greet_teaser", K_BOOL8, O(policy.greet_teaser), NULL},
    {"forbid_unauth_pipelining", K_BOOL8, O(policy.forbid_unauth_pipelining), NULL},
    TARPIT("normal", normal),
    TARPIT("suspect", suspect),
    /* aliases for sweeps: the normal profile */
    {"greet_delay", K_DUR, O(policy.normal.greet_delay), NULL},
    {"reply_delay", K_DUR, O(policy.normal.reply_delay), NULL},
    {"jitter", K_DUR, O(policy.normal.jitter), NULL},
    {"stutter_bytes", K_U32, O(policy.normal.stutter_bytes), NULL},
    {"stutter_interval", K_DUR, O(policy.normal.stutter_interval), NULL},
    {"data_rate", K_SIZE64, O(policy.normal.data_rate), NULL},
    {"throttle", K_SIZE64, O(policy.normal.data_rate), NULL},
    {"pregreet_action", K_ENUM, O(policy.pregreet_action), action_names},
    {"pregreet_score", K_I32, O(policy.pregreet_score), NULL},
    {"dnsbl_timeout", K_DUR, O(policy.dnsbl_timeout), NULL},
    {"dnsbl_action", K_ENUM, O(policy.dnsbl_action), action_names},
    {"tarpit_score", K_I32, O(policy.tarpit_score), NULL},
    {"reject_score", K_I32, O(policy.reject_score), NULL},
    {"allow_score", K_I32, O(policy.allow_score), NULL},
    {"command_line_max", K_SIZE32, O(limits.command_line_max), NULL},
    {"auth_line_max", K_SIZE32, O(limits.auth_line_max), NULL},
    {"reply_line_max", K_SIZE32, O(limits.reply_line_max), NULL},
    {"reply_max", K_SIZE32, O(limits.reply_max), NULL},
    {"text_line_max", K_SIZE32, O(limits.text_line_max), NULL},
    {"path_max", K_SIZE32, O(limits.path_max), NULL},
    {"domain_max", K_SIZE32, O(limits.domain_max), NULL},
    {"message_size_max", K_SIZE64, O(limits.message_size_max), NULL},
    {"recipients_max", K_U32, O(limits.recipients_max), NULL},
    {"pipeline_max", K_U32, O(limits.pipeline_max), NULL},
    {"errors_max", K_U32, O(limits.errors_max), NULL},
    {"junk_commands_max", K_U32, O(limits.junk_commands_max), NULL},
    {"buffer_size", K_SIZE32, O(limits.buffer_size), NULL},
    {"small_buffer_size", K_SIZE32, O(limits.small_buffer_size), NULL},
    {"proxy_header_timeout", K_DUR, O(limits.proxy_header_timeout), NULL},
    {"command_timeout", K_DUR, O(limits.command_timeout), NULL},
    {"data_block_timeout", K_DUR, O(limits.data_block_timeout), NULL},
    {"send_timeout", K_DUR, O(limits.send_timeout), NULL},
    {"upstream_connect_timeout", K_DUR, O(limits.upstream_connect_timeout), NULL},
    {"upstream_greeting_timeout", K_DUR, O(limits.upstream_greeting_timeout), NULL},
    {"upstream_command_timeout", K_DUR, O(limits.upstream_command_timeout), NULL},
    {"upstream_data_init_timeout", K_DUR, O(limits.upstream_data_init_timeout), NULL},
    {"upstream_data_term_timeout", K_DUR, O(limits.upstream_data_term_timeout), NULL},
    {"tls_handshake_timeout", K_DUR, O(limits.tls_handshake_timeout), NULL},
    {"session_timeout", K_DUR, O(limits.session_timeout), NULL},
};

/* sluiced keys that only the live daemon uses (sockets, TLS, processes,
 * logging, DNS resolver, per-IP admission): accepted and ignored. */
static const char *const driver_only[] = {
    "listen", "upstream", "trusted_proxy", "sni", "upstream_balance",
    "upstream_tls", "upstream_tls_verify", "upstream_tls_ca",
    "upstream_tls_name", "upstream_tls_ciphers", "health_interval",
    "health_timeout", "health_rise", "health_fall", "down_retry", "tls_cert",
    "tls_key", "tls_ciphers", "tls_ciphersuites", "dns_servers", "dns_timeout",
    "dns_tries", "ratelim_entries", "per_ip_concurrency", "per_ip_rate",
    "per_ip_rate_window", "ipv4_prefix", "ipv6_prefix", "over_concurrency",
    "over_rate", "workers", "max_connections", "pool_memory",
    "pool_keep_free", "drain_timeout", "log_format", "log_level", "log_file",
    "metrics_listen", NULL};

static int fail(char *err, size_t errlen, const char *where, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, const char *where, const char *fmt,
                ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(err, errlen, "%s: %s", where, msg);
  return -1;
}

void sp_policy_fixup(sp_policy *p) {
  for (unsigned i = 0; i < SL_DNSBL_ZONES_MAX; i++)
    p->zones[i].zone = p->zone_names[i];
  p->policy.dnsbl = p->zones;
  p->policy.hostname = p->hostname;
  p->policy.auth_mechanisms = p->auth_mechanisms[0] ? p->auth_mechanisms : NULL;
  for (unsigned i = 0; i < SP_RELAY_DOMAINS_MAX; i++)
    p->relay_ptrs[i] = p->relay_names[i];
  p->policy.rcpt.domains = p->relay_ptrs;
  p->policy.rcpt.mynetworks = p->mynetworks;
}

/* relay_domains / relay_allow / mynetworks, as sluiced reads them (words
   separated by commas or blanks; relay_domains also "*" and "file:PATH"). */
static int relay_word(sp_policy *p, const char *key, const char *w,
                      const char *where, char *err, size_t errlen) {
  sl_rcpt_policy *r = &p->policy.rcpt;
  if (!strcmp(key, "relay_domains")) {
    if (!strcmp(w, "*")) {
      r->flags |= SL_RCPT_ANY_DOMAIN;
      return 0;
    }
    if (!p->relay_set) {
      /* the first list replaces the replay's default of every domain */
      r->flags &= ~(uint32_t)SL_RCPT_ANY_DOMAIN;
      p->relay_set = 1;
    }
    if (r->ndomains >= SP_RELAY_DOMAINS_MAX || strlen(w) >= SP_RELAY_NAME_MAX ||
        strchr(w, '@') || !strcmp(w, "."))
      return fail(err, errlen, where,
                  "relay_domains: \"%s\" is not a domain, or more than %d in the replay",
                  w, SP_RELAY_DOMAINS_MAX);
    snprintf(p->relay_names[r->ndomains++], SP_RELAY_NAME_MAX, "%s", w);
    return 0;
  }
  if (!strcmp(key, "relay_allow")) {
    if (!strcmp(w, "source_route")) r->flags |= SL_RCPT_ALLOW_SOURCE_ROUTE;
    else if (!strcmp(w, "percent_hack")) r->flags |= SL_RCPT_ALLOW_PERCENT_HACK;
    else if (!strcmp(w, "bang_path")) r->flags |= SL_RCPT_ALLOW_BANG_PATH;
    else if (strcmp(w, "none"))
      return fail(err, errlen, where, "relay_allow: \"%s\" is not none, "
                  "source_route, percent_hack or bang_path", w);
    return 0;
  }
  /* mynetworks */
  const char *slash = strchr(w, '/');
  size_t n = slash ? (size_t)(slash - w) : strlen(w);
  sl_prefix np;
  memset(&np, 0, sizeof np);
  if (r->nmynetworks >= SP_MYNETWORKS_MAX || sl_addr_parse(&np.addr, w, n) != 0)
    return fail(err, errlen, where, "mynetworks: \"%s\" is not an address or CIDR range", w);
  unsigned max = np.addr.family == SL_AF_INET ? 32 : 128;
  char *end = NULL;
  unsigned long bits = slash ? strtoul(slash + 1, &end, 10) : max;
  if ((slash && (!slash[1] || *end)) || bits > max)
    return fail(err, errlen, where, "mynetworks: \"%s\" is not an address or CIDR range", w);
  np.bits = (uint8_t)bits;
  p->mynetworks[r->nmynetworks++] = np;
  return 0;
}

static int relay_words(sp_policy *p, const char *key, const char *value,
                       const char *where, char *err, size_t errlen) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", value);
  char *save = NULL;
  for (char *w = strtok_r(buf, " ,\t\r\n", &save); w; w = strtok_r(NULL, " ,\t\r\n", &save))
    if (relay_word(p, key, w, where, err, errlen)) return -1;
  return 0;
}

static int relay_key(sp_policy *p, const char *key, const char *value,
                     const char *where, char *err, size_t errlen) {
  if (!strcmp(key, "relay_allow")) {
    /* replaces the earlier list; a bad value leaves it as it was */
    uint32_t before = p->policy.rcpt.flags;
    p->policy.rcpt.flags &= SL_RCPT_ANY_DOMAIN;
    int rc = relay_words(p, key, value, where, err, errlen);
    if (rc) p->policy.rcpt.flags = before;
    return rc;
  }
  if (strcmp(key, "relay_domains") || strncmp(value, "file:", 5))
    return relay_words(p, key, value, where, err, errlen);
  const char *path = value + 5;
  while (*path == ' ') path++;
  FILE *f = fopen(path, "r");
  if (!f)
    return fail(err, errlen, where, "relay_domains: cannot open %s: %s", path, strerror(errno));
  char line[1024];
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    rc = relay_words(p, key, line, where, err, errlen);
  }
  fclose(f);
  return rc;
}

void sp_policy_init(sp_policy *p) {
  memset(p, 0, sizeof *p);
  sl_policy_default(&p->policy);
  sl_limits_default(&p->limits);
  snprintf(p->hostname, sizeof p->hostname, "sluice.replay");
  snprintf(p->label, sizeof p->label, "default");
  /* The replay's upstream is simulated and accepts every recipient, and
     captured sessions name whatever domains they named: relay control is
     not what a replay measures, so every domain passes unless the policy
     file sets relay_domains (sluiced's default refuses them all). */
  p->policy.rcpt.flags = SL_RCPT_ANY_DOMAIN;
  sp_policy_fixup(p);
}

int sp_parse_duration(const char *s, sl_duration *out) {
  if (!isdigit((unsigned char)*s))
    return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || v < 0 || v != v)
    return -1;
  double mul;
  if (*end == '\0' || !strcmp(end, "s"))
    mul = 1e9;
  else if (!strcmp(end, "ms"))
    mul = 1e6;
  else if (!strcmp(end, "us"))
    mul = 1e3;
  else if (!strcmp(end, "m"))
    mul = 60e9;
  else if (!strcmp(end, "h"))
    mul = 3600e9;
  else if (!strcmp(end, "d"))
    mul = 86400e9;
  else
    return -1;
  double ns = v * mul;
  if (ns >= 1.8e19)
    return -1;
  *out = (sl_duration)(ns + 0.5);
  return 0;
}

static int parse_u64(const char *s, uint64_t *out, int sizes) {
  if (!isdigit((unsigned char)*s))
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno)
    return -1;
  uint64_t mul = 1;
  if (*end == '\0')
    mul = 1;
  else if (sizes && (!strcmp(end, "k") || !strcmp(end, "K")))
    mul = 1024;
  else if (sizes && !strcmp(end, "M"))
    mul = 1024 * 1024;
  else if (sizes && !strcmp(end, "G"))
    mul = 1024ull * 1024 * 1024;
  else
    return -1;
  if (v > UINT64_MAX / mul)
    return -1;
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

static int add_dnsbl(sp_policy *p, const char *value, const char *where,
                     char *err, size_t errlen) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", value);
  char *w[2 + SL_DNSBL_CODES_MAX + 1];
  int n = 0;
  for (char *s = strtok(buf, " \t"); s && n < (int)(sizeof w / sizeof w[0]);
       s = strtok(NULL, " \t"))
    w[n++] = s;
  if (n < 2 || n > 2 + SL_DNSBL_CODES_MAX)
    return fail(err, errlen, where,
                "dnsbl: expected ZONE WEIGHT [127.0.0.N ...] (at most %d codes)",
                SL_DNSBL_CODES_MAX);
  if (p->policy.ndnsbl >= SL_DNSBL_ZONES_MAX)
    return fail(err, errlen, where, "dnsbl: at most %d zones", SL_DNSBL_ZONES_MAX);
  if (strlen(w[0]) >= SP_ZONE_NAME_MAX || !strchr(w[0], '.'))
    return fail(err, errlen, where, "dnsbl: \"%s\" is not a DNS zone", w[0]);
  char *end;
  errno = 0;
  long wt = strtol(w[1], &end, 10);
  if (errno || *end || wt < -1000000 || wt > 1000000)
    return fail(err, errlen, where, "dnsbl: weight \"%s\" is not an integer", w[1]);
  sl_dnsbl_zone *z = &p->zones[p->policy.ndnsbl];
  memset(z, 0, sizeof *z);
  for (int i = 2; i < n; i++) {
    sl_addr a;
    if (sl_addr_parse(&a, w[i], strlen(w[i])) != 0 || a.family != SL_AF_INET ||
        a.bytes[0] != 127)
      return fail(err, errlen, where,
                  "dnsbl: return code \"%s\" is not a 127.x.y.z address", w[i]);
    z->codes[z->ncodes++] = (uint32_t)a.bytes[0] << 24 |
                            (uint32_t)a.bytes[1] << 16 |
                            (uint32_t)a.bytes[2] << 8 | a.bytes[3];
  }
  snprintf(p->zone_names[p->policy.ndnsbl], SP_ZONE_NAME_MAX, "%s", w[0]);
  z->weight = (int32_t)wt;
  p->policy.ndnsbl++;
  sp_policy_fixup(p);
  return 0;
}

int sp_policy_set(sp_policy *p, const char *key, const char *value,
                  const char *where, char *err, size_t errlen) {
  if (!strcmp(key, "dnsbl"))
    return add_dnsbl(p, value, where, err, errlen);
  if (!strcmp(key, "relay_domains") || !strcmp(key, "relay_allow") ||
      !strcmp(key, "mynetworks"))
    return relay_key(p, key, value, where, err, errlen);
  for (const char *const *d = driver_only; *d; d++)
    if (!strcmp(*d, key))
      return 0;
  const keydef *kd = NULL;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strcmp(keys[i].name, key))
      kd = &keys[i];
  if (!kd)
    return fail(err, errlen, where, "unknown key \"%s\"", key);
  char *base = (char *)p;
  uint64_t u;
  sl_duration d;
  int b;
  switch (kd->k) {
  case K_DUR:
    if (sp_parse_duration(value, &d))
      return fail(err, errlen, where, "%s: \"%s\" is not a duration (e.g. 5s, 500ms)",
                  key, value);
    memcpy(base + kd->off, &d, sizeof d);
    return 0;
  case K_U32:
  case K_SIZE32:
    if (parse_u64(value, &u, kd->k == K_SIZE32) || u > UINT32_MAX)
      return fail(err, errlen, where, "%s: \"%s\" is not a number", key, value);
    {
      uint32_t v = (uint32_t)u;
      memcpy(base + kd->off, &v, sizeof v);
    }
    return 0;
  case K_U8:
    if (parse_u64(value, &u, 0) || u > 255)
      return fail(err, errlen, where, "%s: \"%s\" is not a number 0..255", key, value);
    {
      uint8_t v = (uint8_t)u;
      memcpy(base + kd->off, &v, sizeof v);
    }
    return 0;
  case K_SIZE64:
    if (parse_u64(value, &u, 1))
      return fail(err, errlen, where, "%s: \"%s\" is not a size", key, value);
    memcpy(base + kd->off, &u, sizeof u);
    return 0;
  case K_I32: {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || !*value || *end || v < INT32_MIN || v > INT32_MAX)
      return fail(err, errlen, where, "%s: \"%s\" is not an integer", key, value);
    int32_t x = (int32_t)v;
    memcpy(base + kd->off, &x, sizeof x);
    return 0;
  }
  case K_BOOL8:
  case K_BOOLBIT:
    if (parse_bool(value, &b))
      return fail(err, errlen, where, "%s: \"%s\" is not yes/no", key, value);
    if (kd->k == K_BOOL8) {
      uint8_t v = (uint8_t)b;
      memcpy(base + kd->off, &v, sizeof v);
    } else {
      p->policy.lenient = b ? SL_LENIENT_NORMALIZE_BARE_LF : 0;
    }
    return 0;
  case K_ENUM:
    for (unsigned i = 0; kd->names[i]; i++)
      if (!strcmp(kd->names[i], value)) {
        int v = (int)i; /* every enum here is int-sized */
        memcpy(base + kd->off, &v, sizeof v);
        return 0;
      }
    return fail(err, errlen, where, "%s: \"%s\" is not one of the allowed values",
                key, value);
  case K_FEATURES: {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", value);
    uint32_t f = 0;
    for (char *s = strtok(buf, " \t,"); s; s = strtok(NULL, " \t,")) {
      if (!strcmp(s, "all")) {
        f = SL_FEAT_ALL;
        continue;
      }
      if (!strcmp(s, "none"))
        continue;
      int found = 0;
      for (unsigned i = 0; feature_names[i]; i++)
        if (!strcmp(feature_names[i], s)) {
          f |= 1u << i;
          found = 1;
        }
      if (!found)
        return fail(err, errlen, where, "features: unknown feature \"%s\"", s);
    }
    p->policy.features = f;
    return 0;
  }
  case K_HOST:
    if (!*value || strlen(value) >= sizeof p->hostname)
      return fail(err, errlen, where, "hostname: empty or too long");
    snprintf(p->hostname, sizeof p->hostname, "%s", value);
    return 0;
  case K_AUTHMECH:
    if (strlen(value) >= sizeof p->auth_mechanisms)
      return fail(err, errlen, where, "auth_mechanisms: too long");
    snprintf(p->auth_mechanisms, sizeof p->auth_mechanisms, "%s", value);
    sp_policy_fixup(p);
    return 0;
  }
  return fail(err, errlen, where, "internal error");
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
               s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

int sp_policy_load(sp_policy *p, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  char line[1024];
  unsigned lineno = 0;
  int rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char where[600];
    snprintf(where, sizeof where, "%s:%u", path, lineno);
    if (!strchr(line, '\n') && !feof(f)) {
      rc = fail(err, errlen, where, "line too long");
      break;
    }
    char *h = strchr(line, '#');
    if (h)
      *h = '\0';
    char *s = trim(line);
    if (!*s)
      continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      rc = fail(err, errlen, where, "expected \"key = value\"");
      break;
    }
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    if (!*k || !*v) {
      rc = fail(err, errlen, where, "expected \"key = value\"");
      break;
    }
    if ((rc = sp_policy_set(p, k, v, where, err, errlen)) != 0)
      break;
  }
  fclose(f);
  if (!rc) {
    const char *b = strrchr(path, '/');
    snprintf(p->label, sizeof p->label, "%s", b ? b + 1 : path);
  }
  return rc;
}

int sp_policy_finish(sp_policy *p, char *err, size_t errlen) {
  /* What an in-process replay cannot do. */
  p->policy.features &= ~(uint32_t)SL_FEAT_STARTTLS;
  p->policy.upstream_tls = SL_UPTLS_NONE;
  sp_policy_fixup(p);
  if (sl_limits_check(&p->limits)) {
    snprintf(err, errlen, "%s: inconsistent limits (sl_limits_check)", p->label);
    return -1;
  }
  if (sl_policy_check(&p->policy)) {
    snprintf(err, errlen, "%s: inconsistent policy (sl_policy_check)", p->label);
    return -1;
  }
  return 0;
}
