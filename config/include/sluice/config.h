/*
 * sluice/config.h: the configuration grammar shared by sluiced and
 * sluice-replay (library sluice_config, directory config/).
 *
 * One table of keys (sl_config_keys) owns every key: its name, value type,
 * target field in sl_config, default, flags (daemon-only, repeatable) and a
 * one-line doc.  Parsing, defaults, --print-config and its "-n" form, the
 * nearest-key suggestion and the documentation test all read that table,
 * so the two drivers cannot drift apart again.
 *
 * File format: one "key = value" per line; '#' starts a comment; blank lines
 * are ignored.  Only keys flagged SL_KEY_REPEAT may appear more than once.
 * Durations: a decimal number and a unit (ns us ms s m h d; bare = seconds):
 * "2.5s", "500ms".  Sizes: an integer with k/K, M or G (powers of 1024).
 * Booleans: yes/no, true/false, on/off, 1/0.  Every error reads
 * "FILE:LINE: KEY: message" (or "FILE: message" for whole-file checks).
 *
 * The library reads files and calls gethostname(), stat(), open() and
 * getaddrinfo() with AI_NUMERICHOST (literals only), but opens no socket and
 * does no DNS: host names in "upstream" are checked for syntax and left for
 * the daemon to resolve (addr.len 0).
 * Daemon-only keys (SL_KEY_DAEMON: listeners, upstreams, TLS files, processes,
 * logs, metrics, resolver, per-IP admission) are parsed and validated
 * here; only sluiced applies them, sluice-replay accepts and ignores them.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "sluice/limits.h"
#include "sluice/policy.h"
#include "sluice/ratelim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_sockaddr {
  struct sockaddr_storage ss;
  socklen_t len; /* 0: not resolved (an upstream given by host name) */
} sl_sockaddr;

typedef struct sl_listen_cfg {
  char *text; /* as written, e.g. "[::1]:2465" */
  sl_sockaddr addr;
  int tls;      /* implicit TLS (port 465 style) */
  int proxy;    /* PROXY v1/v2 expected from trusted_proxy sources */
  int nofilter; /* "nofilter": sessions of this listener skip the filters */
  int line;
} sl_listen_cfg;

typedef struct sl_upstream_cfg {
  char *text; /* HOST:PORT as written */
  sl_sockaddr addr;
  uint32_t weight;
  int line;
} sl_upstream_cfg;

/* ---- content filters ("filter" lines; sluiced's sd_filter.c) ---------- */

/* filter kinds, filter_default_action, filter_mode, filter_discard_action
   values (the order of their name tables). */
enum { SL_FILTER_RSPAMD = 0, SL_FILTER_CLAMD = 1, SL_FILTER_MILTER = 2 };
enum {
  SL_FILTER_ACT_TEMPFAIL = 0,
  SL_FILTER_ACT_ACCEPT = 1,
  SL_FILTER_ACT_REJECT = 2
};
enum {
  SL_FILTER_MODE_AUTO = 0,
  SL_FILTER_MODE_STREAM = 1,
  SL_FILTER_MODE_SPOOL = 2
};
enum { SL_FILTER_DISCARD_REJECT = 0, SL_FILTER_DISCARD_TAG = 1 };
/* policy_stages bits: the commands at which the policy service is asked
   (Postfix's protocol_state; README "Policy delegation at Postfix's
   stages"). */
enum {
  SL_POLICY_AT_MAIL = 1u << 0,
  SL_POLICY_AT_RCPT = 1u << 1,
  SL_POLICY_AT_DATA = 1u << 2,
  SL_POLICY_AT_HELO = 1u << 3
};

/* filter_skip bits: sessions that are not filtered. */
enum {
  SL_FILTER_SKIP_AUTHENTICATED = 1u << 0, /* the client authenticated */
  SL_FILTER_SKIP_MYNETWORKS = 1u << 1,    /* the client is in mynetworks */
  SL_FILTER_SKIP_DNSWL = 1u << 2          /* DNSBL score <= allow_score */
};

typedef struct sl_filter_cfg {
  char *text; /* ADDRESS as written: "inet:127.0.0.1:11333", "unix:/run/x" */
  char *name; /* name= or "KIND-N" (N counts from 1 in file order) */
  char *path; /* unix: the socket path; NULL for inet */
  sl_sockaddr addr; /* inet: the address (len 0: a host name, resolved by
                       sluiced when it loads the file) */
  char *host;       /* inet: the host as written */
  uint16_t port;
  int kind;            /* SL_FILTER_* */
  sl_duration timeout; /* timeout=, 0: filter_timeout */
  int line;
} sl_filter_cfg;

typedef struct sl_cidr {
  uint8_t family; /* 4 or 6 */
  uint8_t bits;
  uint8_t bytes[16];
} sl_cidr;

typedef struct sl_sni_cfg {
  char *hostname, *cert, *key;
  int line;
} sl_sni_cfg;

enum { SL_BALANCE_RR = 0, SL_BALANCE_LEASTCONN = 1 };
/* log_format and log_level values (the order of their name tables). */
enum { SL_LOGFORMAT_LOGFMT = 0, SL_LOGFORMAT_JSON = 1 };
enum {
  SL_LOGLEVEL_ERROR = 0,
  SL_LOGLEVEL_WARN,
  SL_LOGLEVEL_INFO,
  SL_LOGLEVEL_DEBUG
};

/*
 * A whole configuration.  The policy and limits are the core's own structs;
 * strings and arrays are owned by the config.  sluiced keeps one per
 * generation (reference counted: relays point into policy and limits).
 */
typedef struct sl_config {
  int refs;
  char *path;    /* the file (or name) it came from */
  int *key_line; /* per key of sl_config_keys: line it was last set on, 0 */

  sl_limits limits;
  sl_policy policy;
  sl_dnsbl_zone zones[SL_DNSBL_ZONES_MAX];
  char *zone_names[SL_DNSBL_ZONES_MAX];
  int zone_lines[SL_DNSBL_ZONES_MAX];
  char *hostname;
  char *auth_mechanisms;
  int features_set; /* "features" given: STARTTLS is not added implicitly */

  /* relay control (policy.rcpt points into these) */
  char **relay_domains;
  size_t nrelay_domains;
  int relay_any; /* "relay_domains = *" given (a list alone clears a
                    preset SL_RCPT_ANY_DOMAIN, as the replay's) */
  sl_prefix *mynetworks;
  size_t nmynetworks;

  sl_listen_cfg *listen;
  size_t nlisten;
  sl_cidr *trusted;
  size_t ntrusted;

  sl_upstream_cfg *upstream;
  size_t nupstream;
  int balance;
  sl_duration health_interval, health_timeout, down_retry;
  sl_duration
      upstream_wait;      /* retry refused connects with back-off this long */
  int client_name_lookup; /* forward-confirmed reverse lookup for XCLIENT NAME=
                           */
  uint32_t health_rise, health_fall;

  char *tls_cert, *tls_key, *tls_ciphers, *tls_ciphersuites;
  sl_sni_cfg *sni;
  size_t nsni;
  int upstream_tls_verify;
  char *upstream_tls_ca, *upstream_tls_name, *upstream_tls_ciphers;

  char *dns_servers; /* NULL: /etc/resolv.conf */
  sl_duration dns_timeout;
  uint32_t dns_tries;

  sl_ratelim_config ratelim;
  /* shared state (sluiced's sd_state.h) */
  int state_backend; /* 0 shm, 1 redis */
  uint32_t state_entries;
  char *redis; /* inet:HOST:PORT or unix:PATH */
  sl_duration redis_timeout, redis_lease, screen_pass_ttl;
  char *redis_key_prefix;
  char *redis_username, *redis_password, *redis_password_file;
  int redis_tls;
  char *redis_tls_ca, *redis_tls_cert, *redis_tls_key, *redis_tls_name;
  /* greylisting and policy services at RCPT (sluiced's sd_check.c) */
  int greylist;
  sl_duration greylist_delay, greylist_retry_window, greylist_max_age;
  uint32_t greylist_auto_allow;
  int greylist_spf;
  sl_duration greylist_spf_timeout;
  char *greylist_asn_zone, *greylist_asn6_zone;
  char *policy_service;   /* inet:HOST:PORT or unix:PATH */
  uint32_t policy_stages; /* SL_POLICY_AT_*: where policy_service is asked */
  sl_duration policy_timeout;
  char *policy_default_action;
  uint32_t max_connections;       /* per worker process */
  uint32_t max_connections_total; /* across all workers; 0: no such cap */
  uint64_t pool_memory;           /* buffer-pool cap per worker, bytes */
  uint32_t pool_keep_free;

  uint32_t workers; /* 0: one per core */
  int log_format, log_level;
  char *log_file;
  char *metrics_listen;
  sl_sockaddr metrics_addr;
  sl_duration drain_timeout;
  /* Content filters, in file order (every one sees each filtered message). */
  sl_filter_cfg *filters;
  size_t nfilters;
  sl_duration filter_timeout; /* a filter's whole answer to one message */
  int filter_default_action;  /* SL_FILTER_ACT_*: a filter failed */
  int filter_mode;            /* SL_FILTER_MODE_* */
  int filter_mode_spool;      /* derived by finish: auto resolved */
  uint64_t filter_spool_memory;
  /* all spools of one worker process together, 0: no cap */
  uint64_t filter_spool_memory_total;
  char *filter_spool_dir;    /* NULL: $TMPDIR, else /tmp */
  int filter_discard_action; /* SL_FILTER_DISCARD_* */
  uint32_t filter_skip;      /* SL_FILTER_SKIP_* */
  /* Privileges and pidfile (sluiced's sd_privs.c, sd_daemon.c). */
  char *user, *group;
  char *pid_file;
} sl_config;

/* ---- the key table ------------------------------------------------------ */

typedef enum sl_config_type {
  SL_CT_DURATION, /* sl_duration */
  SL_CT_U8,
  SL_CT_U32,
  SL_CT_I32,
  SL_CT_SIZE32,  /* uint32_t with k/M/G */
  SL_CT_SIZE64,  /* uint64_t with k/M/G */
  SL_CT_BOOL,    /* int */
  SL_CT_BOOL8,   /* uint8_t */
  SL_CT_LENIENT, /* policy.lenient: yes = SL_LENIENT_NORMALIZE_BARE_LF */
  SL_CT_ENUM,    /* int, index into names */
  SL_CT_STRING,  /* char *, empty = NULL */
  SL_CT_FILE,    /* char *: a file sluiced must be able to read */
  SL_CT_LOGFILE, /* char *: a file sluiced appends to (its directory must exist)
                  */
  SL_CT_HOSTNAME,      /* char *: a DNS host name */
  SL_CT_ADDRPORT,      /* char * + metrics_addr: numeric ADDRESS:PORT */
  SL_CT_FEATURES,      /* policy.features from names */
  SL_CT_RELAY_ALLOW,   /* policy.rcpt.flags: relay_allow names */
  SL_CT_FILTER_SKIP,   /* filter_skip: names of SL_FILTER_SKIP_* bits */
  SL_CT_POLICY_STAGES, /* policy_stages: names of SL_POLICY_AT_* bits */
  /* repeatable line types, each with its own parser */
  SL_CT_LISTEN,
  SL_CT_UPSTREAM,
  SL_CT_TRUSTED,
  SL_CT_SNI,
  SL_CT_DNSBL,
  SL_CT_RELAY_DOMAINS, /* relay_domains: domains, "*", "file:PATH" */
  SL_CT_MYNETWORKS,    /* mynetworks: CIDR ranges */
  SL_CT_FILTER         /* filter: KIND ADDRESS [name=N] [timeout=DUR] */
} sl_config_type;

enum {
  SL_KEY_DAEMON =
      1u << 0, /* applied by sluiced only; sluice-replay ignores it */
  SL_KEY_REPEAT = 1u << 1, /* may appear on several lines, each adds one */
  SL_KEY_SECRET = 1u << 2, /* never printed by sl_config_dump */
};

typedef struct sl_config_key {
  const char *name;
  sl_config_type type;
  size_t off;               /* offset of the target field in sl_config */
  int64_t min, max;         /* integers and enums; both 0: the type's range */
  const char *const *names; /* SL_CT_ENUM: value i is names[i] */
  const char *def;          /* default as text; NULL: the core's default
                               (sl_*_default) or none */
  unsigned flags;           /* SL_KEY_* */
  const char *doc;
} sl_config_key;

/* The table, in documentation order. */
const sl_config_key *sl_config_keys(size_t *n);
/* The key called name, or NULL. */
const sl_config_key *sl_config_key_find(const char *name);
/* The known key nearest to name by edit distance (at most 2, or a third of
   its length), or NULL when none is close. */
const char *sl_config_suggest(const char *name);
/* Levenshtein distance (exposed for the tests). */
size_t sl_config_edit_distance(const char *a, const char *b);

/* ---- a configuration ---------------------------------------------------- */

/* Every default (no listen, no upstream); refs 1.  NULL if out of memory. */
sl_config *sl_config_new(void);
sl_config *sl_config_ref(sl_config *c);
void sl_config_unref(sl_config *c);

/*
 * Applies "key = value" lines on top of c.  name names the text in errors.
 * A non-repeatable key given twice in one text is an error ("already set at
 * line N"); an unknown key is an error with the nearest key suggested.
 * 0, or -1 with "name:line: key: message" in err (c is then half-applied:
 * throw it away).
 */
int sl_config_parse(sl_config *c, const char *text, size_t len,
                    const char *name, char *err, size_t errlen);
/* Same from a file (at most 16 MiB); c->path is set to path. */
int sl_config_load(sl_config *c, const char *path, char *err, size_t errlen);
/* One key (no repeat check: the caller's own override).  where prefixes
   errors ("FILE:LINE" or "--set"); line is recorded when > 0. */
int sl_config_set(sl_config *c, const char *key, const char *value,
                  const char *where, int line, char *err, size_t errlen);

enum {
  SL_CONFIG_DAEMON = 1u << 0, /* finish: check what sluiced needs */
};
/*
 * Cross-key checks and derived fields, after parsing.  Always: the core's
 * sl_limits_check/sl_policy_check with a message naming the keys.  With
 * SL_CONFIG_DAEMON: listen and upstream are required, tls_cert and tls_key
 * go together, "listen ... tls" needs them, "proxy" needs trusted_proxy,
 * STARTTLS is offered iff there is a certificate (unless features is set),
 * every filter timeout is below upstream_data_term_timeout (the end of
 * data waits for the verdicts, then for the upstream), and
 * filter_mode auto is resolved into filter_mode_spool.
 * 0 or -1 + err.
 */
int sl_config_finish(sl_config *c, unsigned flags, char *err, size_t errlen);
/* The core's limit and policy checks, explained: which key is wrong. */
int sl_config_check_core(const sl_policy *p, const sl_limits *l,
                         const char *name, char *err, size_t errlen);
/* sluiced's start-up checks on files: every SL_CT_FILE (and sni files) is a
   readable regular file, the directory of log_file exists.  0 or -1 + err
   naming file:line: key. */
int sl_config_check_files(const sl_config *c, char *err, size_t errlen);

enum {
  SL_DUMP_CHANGED = 1u << 0, /* only keys set and different from the default */
};
/* Writes the keys in config syntax (every key, or with SL_DUMP_CHANGED only
   the ones a file changed, like postconf -n).  Parses back to the same. */
void sl_config_dump(const sl_config *c, FILE *f, unsigned flags);

/* ---- value parsers ------------------------------------------------------ */

/* Duration: decimal number (fraction allowed) and unit; 0 or -1. */
int sl_parse_duration(const char *s, sl_duration *out);
/* Size: integer with k/K, M, G; 0 or -1. */
int sl_parse_size(const char *s, uint64_t *out);
int sl_parse_bool(const char *s, int *out);
/* A DNS host name: labels of letters, digits, '-' and '_', dots between,
   at most 255 octets.  1 if valid. */
int sl_hostname_valid(const char *s);
/* Numeric "1.2.3.4:25", "[::1]:25", "*:25" (wildcard).  0 or -1. */
int sl_parse_addrport(const char *s, sl_sockaddr *out);
int sl_cidr_parse(const char *s, sl_cidr *out);

/* A warning about the relay-control settings an operator should see at
   startup and in --check-config (no relay_domains: every recipient
   refused; "*" without an identity toward the upstream), or NULL. */
const char *sl_config_relay_warning(const sl_config *c);

#ifdef __cplusplus
}
#endif
#endif
