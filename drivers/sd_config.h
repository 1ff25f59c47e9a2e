/*
 * sd_config.h: sluiced's configuration.  The grammar (every key, its
 * parser, default and doc) is the shared library sluice_config
 * (config/include/sluice/config.h); this layer adds what only the daemon
 * does with a parsed file: resolve upstream host names, refuse a listener
 * that is also an upstream, check that its files can be read.  A parsed
 * config is immutable and reference counted: relays keep pointers into its
 * policy and limits, so it lives until the last session that uses it ends
 * (SIGHUP reload makes a new one).
 */
#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "sluice/config.h"

/* The daemon's names for the shared types. */
typedef sl_sockaddr sd_sockaddr;
typedef sl_listen_cfg sd_listen_cfg;
typedef sl_upstream_cfg sd_upstream_cfg;
typedef sl_cidr sd_cidr;
typedef sl_sni_cfg sd_sni_cfg;
typedef sl_config sd_config;

enum {
  SD_BALANCE_RR = SL_BALANCE_RR,
  SD_BALANCE_LEASTCONN = SL_BALANCE_LEASTCONN
};

/* Parses a file, finishes it for the daemon (sl_config_finish with
 * SL_CONFIG_DAEMON), resolves upstream host names and checks what would
 * make the start fail (a listener that is an upstream, unreadable
 * certificates, a missing log directory).  0, or -1 with
 * "file:line: key: message" in err. */
int sd_config_load(const char *path, sd_config **out, char *err, size_t errlen);
/* Same from a string; name is used in messages. */
int sd_config_parse(const char *text, size_t len, const char *name,
                    sd_config **out, char *err, size_t errlen);
/* A config with every default (listen/upstream empty). */
sd_config *sd_config_defaults(void);

sd_config *sd_config_ref(sd_config *c);
void sd_config_unref(sd_config *c);

/* Writes every key with its value in config-file syntax. */
void sd_config_dump(const sd_config *c, FILE *f);

/* Nonzero when the shared-state settings (state_backend, state_entries,
   redis, redis_timeout, redis_key_prefix, redis_lease) differ: they are
   fixed at start, a reload cannot change them. */
int sd_config_state_differs(const sd_config *a, const sd_config *b);

/* Helpers shared with the driver and its tests. */
int sd_parse_duration(const char *s, sl_duration *out);
int sd_parse_size(const char *s, uint64_t *out);
/* "1.2.3.4:25", "[::1]:25", "host:25" (numeric only if numeric). */
int sd_parse_hostport(const char *s, sd_sockaddr *out, int numeric);
int sd_cidr_parse(const char *s, sd_cidr *out);
int sd_cidr_match(const sd_cidr *c, const struct sockaddr *sa);
int sd_sockaddr_format(const struct sockaddr *sa, char *out, size_t len);

#endif
