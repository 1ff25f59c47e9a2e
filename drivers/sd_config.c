/*
 * sd_config.c: what sluiced adds to the shared grammar (sluice_config):
 * host-name resolution of upstreams, and the checks that would otherwise
 * only fail at start or reload.
 */
#include "sd_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "sd_log.h"

/* sluice_config numbers log_format and log_level like sd_log does. */
_Static_assert((int)SL_LOGFORMAT_LOGFMT == (int)SD_LOGFMT &&
                   (int)SL_LOGFORMAT_JSON == (int)SD_LOGJSON,
               "log_format values");
_Static_assert((int)SL_LOGLEVEL_ERROR == (int)SD_LOG_ERR &&
                   (int)SL_LOGLEVEL_WARN == (int)SD_LOG_WARN &&
                   (int)SL_LOGLEVEL_INFO == (int)SD_LOG_INFO &&
                   (int)SL_LOGLEVEL_DEBUG == (int)SD_LOG_DEBUG,
               "log_level values");

int sd_parse_duration(const char *s, sl_duration *out) {
  return sl_parse_duration(s, out);
}
int sd_parse_size(const char *s, uint64_t *out) {
  return sl_parse_size(s, out);
}
int sd_cidr_parse(const char *s, sd_cidr *out) { return sl_cidr_parse(s, out); }

int sd_parse_hostport(const char *s, sd_sockaddr *out, int numeric) {
  if (sl_parse_addrport(s, out) == 0)
    return 0;
  if (numeric)
    return -1;
  char host[256];
  const char *colon = strrchr(s, ':');
  if (s[0] == '[' || colon == NULL || (size_t)(colon - s) >= sizeof host)
    return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || colon[1] == '\0' || port < 0 || port > 65535)
    return -1;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
    return -1;
  memset(out, 0, sizeof *out);
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  if (out->ss.ss_family == AF_INET)
    ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
  else if (out->ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
  else
    return -1;
  return 0;
}

int sd_cidr_match(const sd_cidr *c, const struct sockaddr *sa) {
  const uint8_t *b;
  uint8_t mapped[16];
  int fam;
  if (sa->sa_family == AF_INET) {
    b = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)
            ->sin_addr;
    fam = 4;
  } else if (sa->sa_family == AF_INET6) {
    b = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)
            ->sin6_addr;
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
  if (fam != c->family)
    return 0;
  unsigned full = c->bits / 8u, rest = c->bits % 8u;
  if (memcmp(b, c->bytes, full) != 0)
    return 0;
  if (rest) {
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    if ((b[full] & mask) != (c->bytes[full] & mask))
      return 0;
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
    const struct sockaddr_in6 *in6 =
        (const struct sockaddr_in6 *)(const void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
  }
  return snprintf(out, len, "unknown");
}

sd_config *sd_config_defaults(void) { return sl_config_new(); }
sd_config *sd_config_ref(sd_config *c) { return sl_config_ref(c); }
void sd_config_unref(sd_config *c) { sl_config_unref(c); }
void sd_config_dump(const sd_config *c, FILE *f) { sl_config_dump(c, f, 0); }

/* The port and the address bytes of a resolved socket address. */
static int addr_parts(const sd_sockaddr *a, const uint8_t **bytes, size_t *n,
                      uint16_t *port) {
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *in =
        (const struct sockaddr_in *)(const void *)&a->ss;
    *bytes = (const uint8_t *)&in->sin_addr;
    *n = 4;
    *port = ntohs(in->sin_port);
    return 4;
  }
  if (a->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 =
        (const struct sockaddr_in6 *)(const void *)&a->ss;
    *bytes = (const uint8_t *)&in6->sin6_addr;
    *n = 16;
    *port = ntohs(in6->sin6_port);
    return 6;
  }
  return 0;
}

static int is_zero(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

static int is_loopback(int fam, const uint8_t *b) {
  static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 1};
  return fam == 4 ? b[0] == 127 : memcmp(b, v6lo, 16) == 0;
}

/* A listener that is also an upstream would relay every session to itself:
   the same address and port, or a wildcard listener and a loopback
   upstream on its port. */
static int listen_is_upstream(const sd_listen_cfg *l,
                              const sd_upstream_cfg *u) {
  const uint8_t *lb = NULL, *ub = NULL;
  size_t ln = 0, un = 0;
  uint16_t lp = 0, up = 0;
  int lf = addr_parts(&l->addr, &lb, &ln, &lp),
      uf = addr_parts(&u->addr, &ub, &un, &up);
  if (!lf || !uf || lp != up)
    return 0;
  if (lf == uf && memcmp(lb, ub, ln) == 0)
    return 1;
  return is_zero(lb, ln) && (lf == uf || lf == 6) && is_loopback(uf, ub);
}

static int daemon_checks(sd_config *c, char *err, size_t errlen) {
  const char *name = c->path ? c->path : "config";
  for (size_t i = 0; i < c->nupstream; i++) {
    sd_upstream_cfg *u = &c->upstream[i];
    if (u->addr.len == 0 && sd_parse_hostport(u->text, &u->addr, 0) != 0) {
      snprintf(err, errlen, "%s:%d: upstream: cannot resolve \"%s\"", name,
               u->line, u->text);
      return -1;
    }
  }
  for (size_t i = 0; i < c->nfilters; i++) {
    sl_filter_cfg *f = &c->filters[i];
    if (f->path == NULL && f->addr.len == 0 &&
        sd_parse_hostport(f->text + 5, &f->addr, 0) != 0) {
      snprintf(err, errlen, "%s:%d: filter: cannot resolve \"%s\"", name,
               f->line, f->text);
      return -1;
    }
  }
  for (size_t i = 0; i < c->nlisten; i++)
    for (size_t j = 0; j < c->nupstream; j++)
      if (listen_is_upstream(&c->listen[i], &c->upstream[j])) {
        snprintf(err, errlen,
                 "%s:%d: upstream: %s is the listener of line %d: sessions "
                 "would loop "
                 "into sluiced itself",
                 name, c->upstream[j].line, c->upstream[j].text,
                 c->listen[i].line);
        return -1;
      }
  return sl_config_check_files(c, err, errlen);
}

static int finish(sd_config *c, sd_config **out, char *err, size_t errlen) {
  if (sl_config_finish(c, SL_CONFIG_DAEMON, err, errlen) != 0 ||
      daemon_checks(c, err, errlen) != 0) {
    sl_config_unref(c);
    return -1;
  }
  *out = c;
  return 0;
}

int sd_config_parse(const char *text, size_t len, const char *name,
                    sd_config **out, char *err, size_t errlen) {
  sd_config *c = sl_config_new();
  if (c == NULL || (c->path = strdup(name)) == NULL) {
    sl_config_unref(c);
    snprintf(err, errlen, "%s: out of memory", name);
    return -1;
  }
  if (sl_config_parse(c, text, len, name, err, errlen) != 0) {
    sl_config_unref(c);
    return -1;
  }
  return finish(c, out, err, errlen);
}

int sd_config_load(const char *path, sd_config **out, char *err,
                   size_t errlen) {
  sd_config *c = sl_config_new();
  if (c == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  if (sl_config_load(c, path, err, errlen) != 0) {
    sl_config_unref(c);
    return -1;
  }
  return finish(c, out, err, errlen);
}

static int str_differs(const char *a, const char *b) {
  return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

int sd_config_state_differs(const sd_config *a, const sd_config *b) {
  return a->state_backend != b->state_backend ||
         a->state_entries != b->state_entries ||
         str_differs(a->redis, b->redis) ||
         a->redis_timeout != b->redis_timeout ||
         str_differs(a->redis_key_prefix, b->redis_key_prefix) ||
         a->redis_lease != b->redis_lease ||
         str_differs(a->redis_username, b->redis_username) ||
         str_differs(a->redis_password, b->redis_password) ||
         str_differs(a->redis_password_file, b->redis_password_file) ||
         a->redis_tls != b->redis_tls ||
         str_differs(a->redis_tls_ca, b->redis_tls_ca) ||
         str_differs(a->redis_tls_cert, b->redis_tls_cert) ||
         str_differs(a->redis_tls_key, b->redis_tls_key) ||
         str_differs(a->redis_tls_name, b->redis_tls_name);
}
