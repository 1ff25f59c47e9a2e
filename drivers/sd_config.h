/*
 * sd_config.h: sluiced's configuration file.
 *
 * Format: one "key = value" per line; '#' starts a comment; listen,
 * upstream, dnsbl, trusted_proxy, sni, relay_domains and mynetworks may
 * repeat.  Durations take a unit
 * (ms, s, m, h; bare numbers are seconds), sizes take k, M or G.  Every error
 * names "file:line".  A parsed config is immutable and reference counted:
 * relays keep pointers into its policy and limits, so it lives until the
 * last session that uses it ends (SIGHUP reload makes a new one).
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "sluice/limits.h"
#include "sluice/policy.h"
#include "sluice/ratelim.h"

typedef struct sd_sockaddr {
  struct sockaddr_storage ss;
  socklen_t len;
} sd_sockaddr;

typedef struct sd_listen_cfg {
  char *text;   /* as written, e.g. "[::1]:2465" */
  sd_sockaddr addr;
  int tls;      /* implicit TLS (port 465 style) */
  int proxy;    /* PROXY v1/v2 expected from trusted_proxy sources */
  int line;
} sd_listen_cfg;

typedef struct sd_upstream_cfg {
  char *text;
  sd_sockaddr addr;
  uint32_t weight;
  int line;
} sd_upstream_cfg;

typedef struct sd_cidr {
  uint8_t family; /* 4 or 6 */
  uint8_t bits;
  uint8_t bytes[16];
} sd_cidr;

typedef struct sd_sni_cfg {
  char *hostname, *cert, *key;
} sd_sni_cfg;

enum { SD_BALANCE_RR = 0, SD_BALANCE_LEASTCONN = 1 };

typedef struct sd_config {
  int refs;
  char *path;

  sl_limits limits;
  sl_policy policy;
  sl_dnsbl_zone zones[SL_DNSBL_ZONES_MAX];
  char *zone_names[SL_DNSBL_ZONES_MAX];
  char *hostname;
  char *auth_mechanisms;
  int features_set; /* "features" given: STARTTLS is not added implicitly */

  /* relay control (sl_policy.rcpt points into these) */
  char **relay_domains;
  size_t nrelay_domains;
  sl_prefix *mynetworks;
  size_t nmynetworks;

  sd_listen_cfg *listen;
  size_t nlisten;
  sd_cidr *trusted;
  size_t ntrusted;

  sd_upstream_cfg *upstream;
  size_t nupstream;
  int balance;
  sl_duration health_interval, health_timeout, down_retry;
  uint32_t health_rise, health_fall;

  char *tls_cert, *tls_key, *tls_ciphers, *tls_ciphersuites;
  sd_sni_cfg *sni;
  size_t nsni;
  int upstream_tls_verify;
  char *upstream_tls_ca, *upstream_tls_name, *upstream_tls_ciphers;

  char *dns_servers; /* NULL: /etc/resolv.conf */
  sl_duration dns_timeout;
  uint32_t dns_tries;

  sl_ratelim_config ratelim;
  uint32_t max_connections; /* per worker process */
  uint32_t max_connections_total; /* across all workers; 0: no such cap */
  uint64_t pool_memory;     /* buffer-pool cap per worker, bytes */
  uint32_t pool_keep_free;

  uint32_t workers; /* 0: one per core */
  int log_format, log_level;
  char *log_file;
  char *metrics_listen;
  sd_sockaddr metrics_addr;
  sl_duration drain_timeout;
} sd_config;

/* Parses a file.  0, or -1 with "file:line: message" in err. */
int sd_config_load(const char *path, sd_config **out, char *err,
                   size_t errlen);
/* Same from a string; name is used in messages. */
int sd_config_parse(const char *text, size_t len, const char *name,
                    sd_config **out, char *err, size_t errlen);
/* A config with every default (listen/upstream empty). */
sd_config *sd_config_defaults(void);

sd_config *sd_config_ref(sd_config *c);
void sd_config_unref(sd_config *c);

/* A warning about the relay-control settings an operator should see at
   startup and in --check-config (no relay_domains: every recipient
   refused), or NULL. */
const char *sd_config_relay_warning(const sd_config *c);

/* Writes every key with its value in config-file syntax. */
void sd_config_dump(const sd_config *c, FILE *f);

/* Helpers shared with the driver and its tests. */
int sd_parse_duration(const char *s, sl_duration *out);
int sd_parse_size(const char *s, uint64_t *out);
/* "1.2.3.4:25", "[::1]:25", "host:25" (numeric only if numeric). */
int sd_parse_hostport(const char *s, sd_sockaddr *out, int numeric);
int sd_cidr_parse(const char *s, sd_cidr *out);
int sd_cidr_match(const sd_cidr *c, const struct sockaddr *sa);
int sd_sockaddr_format(const struct sockaddr *sa, char *out, size_t len);

#endif
