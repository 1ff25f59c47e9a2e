/*
 * sl_config.c: the configuration grammar of sluiced and sluice-replay; see
 * sluice/config.h.  Every key is one row of `keys` below: to add a key, add
 * its field (to sl_config, or to sl_policy/sl_limits in the core) and one
 * row; parsing, defaults, the dump, "-n" and the suggestions follow.
 */
#include "sluice/config.h"
#include "sluice/utf8.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- enum names: the one place each list is spelt ----------------------- */

/* The core's own names, in value order from 0 (sluice/policy.h,
   sluice/ratelim.h). */
#define CORE_NAME_(name, value, text) text,
static const char *const mode_names[] = {SL_MODE_MAP(CORE_NAME_) NULL};
static const char *const vrfy_names[] = {SL_VRFY_POLICY_MAP(CORE_NAME_) NULL};
static const char *const ident_names[] = {SL_IDENTITY_MAP(CORE_NAME_) NULL};
static const char *const uptls_names[] = {SL_UPSTREAM_TLS_MAP(CORE_NAME_) NULL};
static const char *const action_names[] = {SL_ACTION_MAP(CORE_NAME_) NULL};
static const char *const admit_names[] = {SL_ADMISSION_MAP(CORE_NAME_) NULL};
#undef CORE_NAME_
static const char *const balance_names[] = {"roundrobin", "leastconn", NULL};
static const char *const backend_names[] = {"shm", "redis", NULL};
static const char *const logfmt_names[] = {"logfmt", "json", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug",
                                          NULL};
static const char *const filter_kind_names[] = {"rspamd", "clamd", "milter",
                                                NULL};
static const char *const filter_action_names[] = {"tempfail", "accept",
                                                  "reject", NULL};
static const char *const filter_mode_names[] = {"auto", "stream", "spool",
                                                NULL};
static const char *const filter_discard_names[] = {"reject", "tag", NULL};
/* Bit i of policy_stages is policy_stage_names[i] (SL_POLICY_AT_* order). */
static const char *const policy_stage_names[] = {"mail", "rcpt", "data", "helo",
                                                 NULL};

/* Bit i of filter_skip is filter_skip_names[i] (SL_FILTER_SKIP_* order). */
static const char *const filter_skip_names[] = {"authenticated", "mynetworks",
                                                "dnswl", NULL};
/* Bit i of policy.features is feature_names[i] (SL_FEAT_* order). */
static const char *const feature_names[] = {
    "pipelining", "size",     "8bitmime", "smtputf8", "enhancedstatuscodes",
    "dsn",        "chunking", "starttls", "auth",     NULL};

/* The enums stored as int must be int-sized, and the name tables must
   follow the core's numbering. */
_Static_assert(sizeof(sl_mode) == sizeof(int), "enum size");
_Static_assert(SL_MODE_SCREEN_FIRST == 1 && SL_VRFY_RELAY == 2 &&
                   SL_IDENT_PROXY_V2 == 3 && SL_IDENT_XFORWARD == 4 &&
                   SL_UPTLS_IMPLICIT == 3 && SL_ACT_DROP == 3,
               "name tables follow the core's enums");
_Static_assert(SL_FEAT_AUTH == 1u << 8 && SL_FEAT_STARTTLS == 1u << 7,
               "feature_names follows SL_FEAT_*");

/* ---- the key table ------------------------------------------------------ */

#define O(f) offsetof(sl_config, f)
#define D SL_KEY_DAEMON
#define R SL_KEY_REPEAT
#define KEY(name, type, field, min, max, names, def, flags, doc)               \
  { name, type, O(field), min, max, names, def, flags, doc }
#define TARPIT_KEYS(p, f)                                                      \
  KEY(p "_greet_delay", SL_CT_DURATION, policy.f.greet_delay, 0, 0, NULL,      \
      NULL, 0, "hold the greeting this long"),                                 \
      KEY(p "_reply_delay", SL_CT_DURATION, policy.f.reply_delay, 0, 0, NULL,  \
          NULL, 0, "hold every other reply this long"),                        \
      KEY(p "_jitter", SL_CT_DURATION, policy.f.jitter, 0, 0, NULL, NULL, 0,   \
          "add [0, jitter) to each delay"),                                    \
      KEY(p "_stutter_bytes", SL_CT_U32, policy.f.stutter_bytes, 0, 1 << 20,   \
          NULL, NULL, 0, "reply bytes sent per stutter_interval (0: off)"),    \
      KEY(p "_stutter_interval", SL_CT_DURATION, policy.f.stutter_interval, 0, \
          0, NULL, NULL, 0, "interval between stutter chunks"),                \
      KEY(p "_data_rate", SL_CT_SIZE64, policy.f.data_rate, 0, 0, NULL, NULL,  \
          0, "DATA bytes/s read (0: unlimited)")

/*
 * One row per key, in the order --print-config and sluiced.conf.example
 * list them:
 *   KEY(name, type, field of sl_config, min, max, enum names, default text,
 *       flags, doc)
 * min/max bound integers and enum indexes (both 0: the type's range); a
 * NULL default means the core's (sl_limits_default, sl_policy_default,
 * sl_ratelim_config_default) or none; flags D = daemon-only (sluice-replay
 * ignores it), R = repeatable.  A new relay limit is its sl_limits field
 * plus, e.g.:
 *   KEY("foo_max", SL_CT_U32, limits.foo_max, 1, 1000, NULL, NULL, 0,
 *       "what it bounds"),
 * and its "#foo_max = DEFAULT" line in drivers/sluiced.conf.example (the
 * ctest config_example_all_keys and testbeds check that the example lists
 * every key with its default).
 */
static const sl_config_key keys[] = {
    /* listeners */
    KEY("listen", SL_CT_LISTEN, listen, 0, 0, NULL, NULL, D | R,
        "ADDRESS:PORT [tls] [proxy] [nofilter]: a listening socket"),
    KEY("trusted_proxy", SL_CT_TRUSTED, trusted, 0, 0, NULL, NULL, D | R,
        "addresses or CIDR ranges allowed to send PROXY headers"),
    /* upstreams */
    KEY("upstream", SL_CT_UPSTREAM, upstream, 0, 0, NULL, NULL, D | R,
        "HOST:PORT [weight=N]: a server of the upstream pool"),
    KEY("upstream_balance", SL_CT_ENUM, balance, 0, 0, balance_names,
        "roundrobin", D, "how sessions are spread over the upstreams"),
    KEY("upstream_attempts", SL_CT_U8, policy.upstream_attempts, 1, 16, NULL,
        NULL, 0, "connect attempts before the client has seen anything"),
    KEY("upstream_tls", SL_CT_ENUM, policy.upstream_tls, 0, 0, uptls_names,
        NULL, D, "TLS toward the upstream"),
    KEY("upstream_tls_verify", SL_CT_BOOL, upstream_tls_verify, 0, 0, NULL,
        "no", D, "verify the upstream's certificate"),
    KEY("upstream_tls_ca", SL_CT_FILE, upstream_tls_ca, 0, 0, NULL, NULL, D,
        "CA file for upstream verification (empty: the system store)"),
    KEY("upstream_tls_name", SL_CT_STRING, upstream_tls_name, 0, 0, NULL, NULL,
        D, "SNI and the name checked in the upstream's certificate"),
    KEY("upstream_tls_ciphers", SL_CT_STRING, upstream_tls_ciphers, 0, 0, NULL,
        NULL, D, "OpenSSL cipher list toward upstreams"),
    KEY("health_interval", SL_CT_DURATION, health_interval, 0, 0, NULL, "10s",
        D, "active health check interval (0: off)"),
    KEY("health_timeout", SL_CT_DURATION, health_timeout, 0, 0, NULL, "5s", D,
        "time limit of one health check"),
    KEY("health_rise", SL_CT_U32, health_rise, 1, 100, NULL, "2", D,
        "passed checks that bring a server back"),
    KEY("health_fall", SL_CT_U32, health_fall, 1, 100, NULL, "3", D,
        "consecutive failures that mark a server down"),
    KEY("down_retry", SL_CT_DURATION, down_retry, 0, 0, NULL, "30s", D,
        "without checks, a down server is tried again after this"),
    KEY("upstream_wait", SL_CT_DURATION, upstream_wait, 0, 0, NULL, "0s", D,
        "once every upstream refused, retry with back-off this long"),
    KEY("client_name_lookup", SL_CT_BOOL, client_name_lookup, 0, 0, NULL, "no",
        D, "forward-confirmed reverse lookup of the client for XCLIENT NAME="),
    /* client TLS */
    KEY("tls_cert", SL_CT_FILE, tls_cert, 0, 0, NULL, NULL, D,
        "certificate chain (PEM); with it STARTTLS is offered"),
    KEY("tls_key", SL_CT_FILE, tls_key, 0, 0, NULL, NULL, D,
        "private key of tls_cert (PEM)"),
    KEY("tls_ciphers", SL_CT_STRING, tls_ciphers, 0, 0, NULL, NULL, D,
        "OpenSSL cipher list (TLS <= 1.2)"),
    KEY("tls_ciphersuites", SL_CT_STRING, tls_ciphersuites, 0, 0, NULL, NULL, D,
        "TLS 1.3 cipher suites"),
    KEY("sni", SL_CT_SNI, sni, 0, 0, NULL, NULL, D | R,
        "HOSTNAME CERT KEY: another certificate by SNI name"),
    /* SMTP policy */
    KEY("mode", SL_CT_ENUM, policy.mode, 0, 0, mode_names, NULL, 0,
        "passthrough or screen (greet locally, connect upstream at MAIL)"),
    KEY("hostname", SL_CT_HOSTNAME, hostname, 0, 0, NULL, NULL, 0,
        "our name in replies and EHLO (default: the machine's name)"),
    KEY("features", SL_CT_FEATURES, policy.features, 0, 0, feature_names, NULL,
        0, "ESMTP extensions sluice may offer"),
    KEY("lenient_bare_lf", SL_CT_LENIENT, policy.lenient, 0, 0, NULL, NULL, 0,
        "re-serialise bare-LF DATA lines instead of refusing the message"),
    KEY("vrfy", SL_CT_ENUM, policy.vrfy, 0, 0, vrfy_names, NULL, 0,
        "VRFY/EXPN answer: 252, 502 or relay"),
    KEY("identity", SL_CT_ENUM, policy.identity, 0, 0, ident_names, NULL, 0,
        "client identity toward upstreams"),
    KEY("auth_requires_tls", SL_CT_BOOL8, policy.auth_requires_tls, 0, 0, NULL,
        NULL, 0, "offer AUTH only on a TLS client leg"),
    KEY("auth_mechanisms", SL_CT_STRING, auth_mechanisms, 0, 0, NULL, NULL, 0,
        "screen mode: AUTH mechanisms offered before the upstream is known"),
    KEY("greet_teaser", SL_CT_BOOL8, policy.greet_teaser, 0, 0, NULL, NULL, 0,
        "screen mode: send 220- at once, the final 220 after greet_delay"),
    KEY("forbid_unauth_pipelining", SL_CT_BOOL8,
        policy.forbid_unauth_pipelining, 0, 0, NULL, NULL, 0,
        "bytes after a command that must end a pipelined group: 554, close"),
    /* relay control (sluice/rcpt_policy.h) */
    KEY("relay_domains", SL_CT_RELAY_DOMAINS, relay_domains, 0, 0, NULL, NULL,
        R,
        "recipient domains passed on: example.com, .example.com (its "
        "subdomains), [192.0.2.1], * (all) or file:PATH; none: all refused"),
    KEY("relay_allow", SL_CT_RELAY_ALLOW, policy.rcpt.flags, 0, 0, NULL, "none",
        0,
        "routing allowed in recipients: none or source_route percent_hack "
        "bang_path"),
    KEY("mynetworks", SL_CT_MYNETWORKS, mynetworks, 0, 0, NULL, NULL, R,
        "client CIDR ranges trusted like authenticated clients"),
    /* tarpit */
    TARPIT_KEYS("normal", normal),
    TARPIT_KEYS("suspect", suspect),
    /* screening */
    KEY("pregreet_action", SL_CT_ENUM, policy.pregreet_action, 0, 0,
        action_names, NULL, 0, "what bytes before our greeting get"),
    KEY("pregreet_score", SL_CT_I32, policy.pregreet_score, INT32_MIN,
        INT32_MAX, NULL, NULL, 0, "score a pregreet adds"),
    KEY("dnsbl", SL_CT_DNSBL, zones, 0, 0, NULL, NULL, R,
        "ZONE WEIGHT [127.0.0.N ...]: a DNSBL/DNSWL zone and its weight"),
    KEY("dnsbl_timeout", SL_CT_DURATION, policy.dnsbl_timeout, 0, 0, NULL, NULL,
        0, "answers not in by then count as not listed"),
    KEY("tarpit_score", SL_CT_I32, policy.tarpit_score, INT32_MIN, INT32_MAX,
        NULL, NULL, 0, "score from which the suspect profile applies"),
    KEY("reject_score", SL_CT_I32, policy.reject_score, INT32_MIN, INT32_MAX,
        NULL, NULL, 0, "score from which dnsbl_action applies"),
    KEY("allow_score", SL_CT_I32, policy.allow_score, INT32_MIN, INT32_MAX,
        NULL, NULL, 0, "score up to which pregreet and tarpit are skipped"),
    KEY("dnsbl_action", SL_CT_ENUM, policy.dnsbl_action, 0, 0, action_names,
        NULL, 0, "what reaching reject_score gets"),
    KEY("dns_servers", SL_CT_STRING, dns_servers, 0, 0, NULL, NULL, D,
        "resolver for DNSBL lookups, IP[:PORT],... (empty: resolv.conf)"),
    KEY("dns_timeout", SL_CT_DURATION, dns_timeout, 0, 0, NULL, "2s", D,
        "per-try DNS timeout"),
    KEY("dns_tries", SL_CT_U32, dns_tries, 1, 10, NULL, "2", D, "DNS tries"),
    /* per-client admission */
    KEY("ratelim_entries", SL_CT_U32, ratelim.entries, 16, 1 << 24, NULL, NULL,
        D, "slots of the per-prefix table"),
    KEY("per_ip_concurrency", SL_CT_U32, ratelim.concurrency_max, 0, 1000000,
        NULL, NULL, D, "live sessions per client prefix (0: no limit)"),
    KEY("per_ip_rate", SL_CT_U32, ratelim.rate_max, 0, 100000000, NULL, NULL, D,
        "new sessions per prefix per window (0: no limit)"),
    KEY("per_ip_rate_window", SL_CT_DURATION, ratelim.rate_window, 0, 0, NULL,
        NULL, D, "the per_ip_rate window"),
    KEY("ipv4_prefix", SL_CT_U8, ratelim.ipv4_prefix, 1, 32, NULL, NULL, D,
        "IPv4 clients are counted per /ipv4_prefix"),
    KEY("ipv6_prefix", SL_CT_U8, ratelim.ipv6_prefix, 1, 128, NULL, NULL, D,
        "IPv6 clients are counted per /ipv6_prefix"),
    KEY("over_concurrency", SL_CT_ENUM, ratelim.over_concurrency, 1, 2,
        admit_names, NULL, D, "tarpit or tempfail over per_ip_concurrency"),
    KEY("over_rate", SL_CT_ENUM, ratelim.over_rate, 1, 2, admit_names, NULL, D,
        "tarpit or tempfail over per_ip_rate"),
    /* shared state (drivers/sd_state.h): one machine or several */
    KEY("state_backend", SL_CT_ENUM, state_backend, 0, 0, backend_names, "shm",
        D, "where limits, screening passes and greylisting live: shm or redis"),
    KEY("state_entries", SL_CT_U32, state_entries, 16, 1 << 24, NULL, "65536",
        D, "shm slots for screening passes and greylisting triplets"),
    KEY("redis", SL_CT_STRING, redis, 0, 0, NULL, NULL, D,
        "state_backend = redis: inet:HOST:PORT or unix:PATH"),
    KEY("redis_timeout", SL_CT_DURATION, redis_timeout, 0, 0, NULL, "50ms", D,
        "lookup budget; later answers give the local verdict"),
    KEY("redis_key_prefix", SL_CT_STRING, redis_key_prefix, 0, 0, NULL,
        "sluice:", D, "prepended to every Redis key (one per deployment)"),
    KEY("redis_lease", SL_CT_DURATION, redis_lease, 0, 0, NULL, "60s", D,
        "a shared live count is dropped this long after its instance stops "
        "renewing it"),
    KEY("redis_username", SL_CT_STRING, redis_username, 0, 0, NULL, NULL, D,
        "Redis 6+ ACL user for AUTH (empty: the default user)"),
    KEY("redis_password", SL_CT_STRING, redis_password, 0, 0, NULL, NULL,
        D | SL_KEY_SECRET,
        "AUTH password (requirepass or the ACL user's); prefer "
        "redis_password_file"),
    KEY("redis_password_file", SL_CT_FILE, redis_password_file, 0, 0, NULL,
        NULL, D, "file holding the AUTH password (one line), read at start"),
    KEY("redis_tls", SL_CT_BOOL, redis_tls, 0, 0, NULL, "no", D,
        "TLS to Redis (its tls-port); the certificate is always verified"),
    KEY("redis_tls_ca", SL_CT_FILE, redis_tls_ca, 0, 0, NULL, NULL, D,
        "CA file that signed Redis's certificate (empty: the system store)"),
    KEY("redis_tls_cert", SL_CT_FILE, redis_tls_cert, 0, 0, NULL, NULL, D,
        "client certificate for Redis's tls-auth-clients (with "
        "redis_tls_key)"),
    KEY("redis_tls_key", SL_CT_FILE, redis_tls_key, 0, 0, NULL, NULL, D,
        "private key of redis_tls_cert"),
    KEY("redis_tls_name", SL_CT_STRING, redis_tls_name, 0, 0, NULL, NULL, D,
        "name Redis's certificate must carry (empty: the host of redis)"),
    KEY("screen_pass_ttl", SL_CT_DURATION, screen_pass_ttl, 0, 0, NULL, "0s", D,
        "remember a client that passed screening this long (0: off)"),
    /* greylisting and policy services at RCPT (drivers/sd_check.c) */
    KEY("greylist", SL_CT_BOOL, greylist, 0, 0, NULL, "no", D,
        "greylist at RCPT, keyed by client /24 or /64, normalised sender "
        "and recipient"),
    KEY("greylist_delay", SL_CT_DURATION, greylist_delay, 0, 0, NULL, "300s", D,
        "a new triplet is deferred until this long after its first try"),
    KEY("greylist_retry_window", SL_CT_DURATION, greylist_retry_window, 0, 0,
        NULL, "2d", D, "a retry must come within the delay plus this"),
    KEY("greylist_max_age", SL_CT_DURATION, greylist_max_age, 0, 0, NULL, "35d",
        D, "a passed triplet is forgotten this long after its last use"),
    KEY("greylist_auto_allow", SL_CT_U32, greylist_auto_allow, 0, 1000000, NULL,
        "5", D, "passes after which a client is not greylisted (0: never)"),
    KEY("greylist_spf", SL_CT_BOOL, greylist_spf, 0, 0, NULL, "yes", D,
        "where the sender passes SPF, its domain replaces the client's "
        "/24 or /64 in the triplet"),
    KEY("greylist_spf_timeout", SL_CT_DURATION, greylist_spf_timeout, 0, 0,
        NULL, "5s", D, "budget of one SPF check (then the /24 or /64)"),
    KEY("greylist_asn_zone", SL_CT_STRING, greylist_asn_zone, 0, 0, NULL, NULL,
        D,
        "origin-ASN TXT zone (Team Cymru's format, e.g. origin.asn.cymru.com):"
        " the AS replaces an IPv4 client's /24 when SPF did not pass"),
    KEY("greylist_asn6_zone", SL_CT_STRING, greylist_asn6_zone, 0, 0, NULL,
        NULL, D, "the same for IPv6 clients (e.g. origin6.asn.cymru.com)"),
    KEY("policy_service", SL_CT_STRING, policy_service, 0, 0, NULL, NULL, D,
        "Postfix policy delegation server asked at RCPT: inet:HOST:PORT or "
        "unix:PATH"),
    KEY("policy_stages", SL_CT_POLICY_STAGES, policy_stages, 0, 0,
        policy_stage_names, "rcpt", D,
        "where policy_service is asked, as Postfix's protocol_state: any of "
        "helo mail rcpt data"),
    KEY("policy_timeout", SL_CT_DURATION, policy_timeout, 0, 0, NULL, "10s", D,
        "connect, write and answer budget of one policy query"),
    KEY("policy_default_action", SL_CT_STRING, policy_default_action, 0, 0,
        NULL, "451 4.3.5 Server configuration problem", D,
        "the action when the policy service fails (Postfix's default)"),
    /* limits (sl_limits) */
    KEY("command_line_max", SL_CT_SIZE32, limits.command_line_max, 0, 0, NULL,
        NULL, 0, "longest command line"),
    KEY("auth_line_max", SL_CT_SIZE32, limits.auth_line_max, 0, 0, NULL, NULL,
        0, "longest AUTH continuation line"),
    KEY("reply_line_max", SL_CT_SIZE32, limits.reply_line_max, 0, 0, NULL, NULL,
        0, "longest upstream reply line"),
    KEY("reply_max", SL_CT_SIZE32, limits.reply_max, 0, 0, NULL, NULL, 0,
        "longest upstream reply"),
    KEY("text_line_max", SL_CT_SIZE32, limits.text_line_max, 0, 0, NULL, NULL,
        0, "longest DATA line"),
    KEY("path_max", SL_CT_SIZE32, limits.path_max, 0, 0, NULL, NULL, 0,
        "longest MAIL/RCPT path"),
    KEY("domain_max", SL_CT_SIZE32, limits.domain_max, 0, 0, NULL, NULL, 0,
        "longest domain"),
    KEY("message_size_max", SL_CT_SIZE64, limits.message_size_max, 0, 0, NULL,
        NULL, 0, "largest message (SIZE)"),
    KEY("recipients_max", SL_CT_U32, limits.recipients_max, 1, 1000000, NULL,
        NULL, 0, "recipients per message"),
    KEY("recipient_overshoot_max", SL_CT_U32, limits.recipient_overshoot_max, 0,
        1000000, NULL, NULL, 0,
        "RCPTs over recipients_max (452) that are not counted as errors"),
    KEY("pipeline_max", SL_CT_U32, limits.pipeline_max, 2, 32, NULL, NULL, 0,
        "pipelined commands read ahead of their replies"),
    KEY("errors_max", SL_CT_U32, limits.errors_max, 1, 1000000, NULL, NULL, 0,
        "errors before 421 and close"),
    KEY("junk_commands_max", SL_CT_U32, limits.junk_commands_max, 1, 1000000,
        NULL, NULL, 0, "NOOP/RSET/VRFY... before 421 and close"),
    KEY("buffer_size", SL_CT_SIZE32, limits.buffer_size, 0, 0, NULL, NULL, 0,
        "large pool buffer (DATA, long replies)"),
    KEY("small_buffer_size", SL_CT_SIZE32, limits.small_buffer_size, 0, 0, NULL,
        NULL, 0, "small pool buffer (command lines)"),
    KEY("proxy_header_timeout", SL_CT_DURATION, limits.proxy_header_timeout, 0,
        0, NULL, NULL, 0, "time for a PROXY header"),
    KEY("command_timeout", SL_CT_DURATION, limits.command_timeout, 0, 0, NULL,
        NULL, 0, "time for a whole command line"),
    KEY("data_block_timeout", SL_CT_DURATION, limits.data_block_timeout, 0, 0,
        NULL, NULL, 0, "time for a DATA line"),
    KEY("record_timeout", SL_CT_DURATION, limits.record_timeout, 0, 0, NULL,
        NULL, 0, "a whole command, DATA or reply line, from its first byte"),
    KEY("send_timeout", SL_CT_DURATION, limits.send_timeout, 0, 0, NULL, NULL,
        0, "time a client may take to read"),
    KEY("upstream_connect_timeout", SL_CT_DURATION,
        limits.upstream_connect_timeout, 0, 0, NULL, NULL, 0,
        "upstream connect"),
    KEY("upstream_greeting_timeout", SL_CT_DURATION,
        limits.upstream_greeting_timeout, 0, 0, NULL, NULL, 0,
        "upstream greeting"),
    KEY("upstream_command_timeout", SL_CT_DURATION,
        limits.upstream_command_timeout, 0, 0, NULL, NULL, 0,
        "upstream reply to a command"),
    KEY("upstream_data_init_timeout", SL_CT_DURATION,
        limits.upstream_data_init_timeout, 0, 0, NULL, NULL, 0,
        "upstream reply to DATA"),
    KEY("upstream_data_term_timeout", SL_CT_DURATION,
        limits.upstream_data_term_timeout, 0, 0, NULL, NULL, 0,
        "upstream reply to end-of-data"),
    KEY("tls_handshake_timeout", SL_CT_DURATION, limits.tls_handshake_timeout,
        0, 0, NULL, NULL, 0, "a TLS handshake"),
    KEY("session_timeout", SL_CT_DURATION, limits.session_timeout, 0, 0, NULL,
        NULL, 0, "a whole session (0: off)"),
    /* process */
    KEY("workers", SL_CT_U32, workers, 0, 256, NULL, "0", D,
        "worker processes (0: one per core)"),
    KEY("max_connections", SL_CT_U32, max_connections, 1, 1000000, NULL,
        "10000", D, "sessions per worker"),
    KEY("max_connections_total", SL_CT_U32, max_connections_total, 0, 100000000,
        NULL, "0", D, "sessions across all workers (0: no cap)"),
    KEY("pool_memory", SL_CT_SIZE64, pool_memory, 0, 0, NULL, "268435456", D,
        "buffer-pool memory per worker"),
    KEY("pool_keep_free", SL_CT_U32, pool_keep_free, 0, 1000000, NULL, "1024",
        D, "free buffers kept per size class"),
    KEY("drain_timeout", SL_CT_DURATION, drain_timeout, 0, 0, NULL, "30s", D,
        "SIGTERM: time sessions get to finish"),
    KEY("log_format", SL_CT_ENUM, log_format, 0, 0, logfmt_names, "logfmt", D,
        "logfmt or json"),
    KEY("log_level", SL_CT_ENUM, log_level, 0, 0, level_names, "info", D,
        "error, warn, info or debug"),
    KEY("log_file", SL_CT_LOGFILE, log_file, 0, 0, NULL, NULL, D,
        "log file (empty: stderr; SIGUSR1 reopens it)"),
    KEY("metrics_listen", SL_CT_ADDRPORT, metrics_listen, 0, 0, NULL, NULL, D,
        "ADDRESS:PORT of the OpenMetrics endpoint (empty: off)"),
    /* service: privileges and pidfile (sluiced binds, then drops) */
    KEY("user", SL_CT_STRING, user, 0, 0, NULL, NULL, D,
        "after binding, run as this user (not root; empty: stay as started)"),
    KEY("group", SL_CT_STRING, group, 0, 0, NULL, NULL, D,
        "with user: run with this group (empty: the user's primary group)"),
    KEY("pid_file", SL_CT_LOGFILE, pid_file, 0, 0, NULL, NULL, D,
        "the master's pid, written after the drop (empty: none)"),
    /* content filters (sluiced's sd_filter.c) */
    KEY("filter", SL_CT_FILTER, filters, 0, 0, filter_kind_names, NULL, D | R,
        "rspamd|clamd|milter inet:HOST:PORT|unix:PATH [name=N] "
        "[timeout=DUR]: a content filter every filtered message passes"),
    KEY("filter_timeout", SL_CT_DURATION, filter_timeout, 0, 0, NULL, "30s", D,
        "a filter's whole answer to one message (below "
        "upstream_data_term_timeout)"),
    KEY("filter_default_action", SL_CT_ENUM, filter_default_action, 0, 0,
        filter_action_names, "tempfail", D,
        "a filter refused, timed out or answered garbage: tempfail, accept "
        "or reject"),
    KEY("filter_mode", SL_CT_ENUM, filter_mode, 0, 0, filter_mode_names, "auto",
        D,
        "stream (body upstream and to the filters at once), spool (held, "
        "filtered, changed, then relayed) or auto (spool when a filter may "
        "change headers)"),
    KEY("filter_spool_memory", SL_CT_SIZE64, filter_spool_memory, 0, 0, NULL,
        "1048576", D,
        "message bytes of one spool held in memory before an unlinked "
        "temporary file"),
    KEY("filter_spool_memory_total", SL_CT_SIZE64, filter_spool_memory_total, 0,
        0, NULL, "67108864", D,
        "spool bytes held in memory by all sessions of one worker process "
        "together; past it spools go to their temporary file (0: no cap)"),
    KEY("filter_spool_dir", SL_CT_STRING, filter_spool_dir, 0, 0, NULL, NULL, D,
        "spool mode: directory of the temporary files (empty: $TMPDIR, "
        "else /tmp)"),
    KEY("filter_discard_action", SL_CT_ENUM, filter_discard_action, 0, 0,
        filter_discard_names, "reject", D,
        "a filter's discard: reject (5xx) or tag (delivered with "
        "X-Sluice-Filter-Discard, spool mode)"),
    KEY("filter_skip", SL_CT_FILTER_SKIP, filter_skip, 0, 0, filter_skip_names,
        "none", D,
        "sessions not filtered: none or authenticated mynetworks dnswl "
        "(score <= allow_score)"),
};
#define NKEYS (sizeof keys / sizeof keys[0])

const sl_config_key *sl_config_keys(size_t *n) {
  if (n)
    *n = NKEYS;
  return keys;
}

static size_t key_index(const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].name, name) == 0)
      return i;
  return NKEYS;
}

const sl_config_key *sl_config_key_find(const char *name) {
  size_t i = key_index(name);
  return i < NKEYS ? &keys[i] : NULL;
}

size_t sl_config_edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return (size_t)-1; /* no key is that long */
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

const char *sl_config_suggest(const char *name) {
  /* Close enough to be a typo: 2 edits, or a third of the name for long
     names (normal_greet_dealy, max_conections_total...). */
  size_t limit = strlen(name) / 3;
  if (limit < 2)
    limit = 2;
  const char *best = NULL;
  size_t bestd = limit + 1;
  for (size_t i = 0; i < NKEYS; i++) {
    size_t d = sl_config_edit_distance(name, keys[i].name);
    if (d < bestd) {
      bestd = d;
      best = keys[i].name;
    }
  }
  return best;
}

/* ---- value parsers ------------------------------------------------------ */

static char *xstrdup(const char *s) {
  if (s == NULL)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

int sl_parse_duration(const char *s, sl_duration *out) {
  /* Whole part exact in integers; a fraction ("2.5s", "0.25ms") is added
     rounded to the nanosecond. */
  if (!is_digit(*s))
    return -1;
  uint64_t whole = 0;
  for (; is_digit(*s); s++) {
    if (whole > (UINT64_MAX - 9) / 10)
      return -1;
    whole = whole * 10 + (uint64_t)(*s - '0');
  }
  double frac = 0, scale = 1;
  if (*s == '.') {
    s++;
    if (!is_digit(*s))
      return -1;
    for (; is_digit(*s); s++) {
      scale /= 10;
      frac += (*s - '0') * scale;
    }
  }
  static const struct {
    const char *unit;
    uint64_t mul;
  } units[] = {{"", SL_SEC},
               {"s", SL_SEC},
               {"ms", SL_MSEC},
               {"us", SL_USEC},
               {"ns", 1},
               {"m", 60 * SL_SEC},
               {"h", 3600 * SL_SEC},
               {"d", 86400 * SL_SEC}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(s, units[i].unit) != 0)
      continue;
    uint64_t mul = units[i].mul;
    if (whole > UINT64_MAX / mul)
      return -1;
    uint64_t ns = whole * mul;
    uint64_t extra = (uint64_t)(frac * (double)mul + 0.5);
    if (ns > UINT64_MAX - extra)
      return -1;
    *out = (sl_duration)(ns + extra);
    return 0;
  }
  return -1;
}

int sl_parse_size(const char *s, uint64_t *out) {
  if (!is_digit(*s))
    return -1;
  uint64_t v = 0;
  for (; is_digit(*s); s++) {
    if (v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  uint64_t mul;
  if (*s == '\0')
    mul = 1;
  else if (!strcmp(s, "k") || !strcmp(s, "K"))
    mul = 1024;
  else if (!strcmp(s, "M"))
    mul = 1024 * 1024;
  else if (!strcmp(s, "G"))
    mul = 1024ull * 1024 * 1024;
  else
    return -1;
  if (v > UINT64_MAX / mul)
    return -1;
  *out = v * mul;
  return 0;
}

int sl_parse_bool(const char *s, int *out) {
  if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") ||
      !strcmp(s, "1"))
    *out = 1;
  else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") ||
           !strcmp(s, "0"))
    *out = 0;
  else
    return -1;
  return 0;
}

static int parse_i64(const char *s, int64_t *out) {
  if (*s == '\0')
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end != '\0')
    return -1;
  *out = v;
  return 0;
}

int sl_hostname_valid(const char *s) {
  size_t n = strlen(s), label = 0;
  if (n == 0 || n > 255)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '.') {
      if (label == 0)
        return 0; /* empty label */
      label = 0;
      continue;
    }
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          is_digit(ch) || ch == '-' || ch == '_'))
      return 0;
    if (++label > 63)
      return 0;
  }
  return 1;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port; 0 or -1. */
static int split_hostport(const char *s, char *host, size_t hostlen,
                          uint16_t *port) {
  const char *p;
  size_t n;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':')
      return -1;
    n = (size_t)(rb - s - 1);
    if (n >= hostlen)
      return -1;
    memcpy(host, s + 1, n);
    p = rb + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
      return -1;
    n = (size_t)(colon - s);
    if (n >= hostlen || memchr(s, ':', n) != NULL)
      return -1; /* v6 needs [] */
    memcpy(host, s, n);
    p = colon + 1;
  }
  host[n] = '\0';
  int64_t v;
  if (parse_i64(p, &v) != 0 || v < 0 || v > 65535)
    return -1;
  *port = (uint16_t)v;
  return 0;
}

int sl_parse_addrport(const char *s, sl_sockaddr *out) {
  char host[256];
  uint16_t port;
  if (split_hostport(s, host, sizeof host, &port) != 0)
    return -1;
  if (strcmp(host, "*") == 0 || host[0] == '\0')
    strcpy(host, "0.0.0.0");
  /* AI_NUMERICHOST: a literal only, never a lookup (the same literals the
     daemon always took, "127.1" and "fe80::1%eth0" included). */
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
    return -1;
  int ok = res->ai_addrlen <= sizeof out->ss &&
           (res->ai_family == AF_INET || res->ai_family == AF_INET6);
  if (ok) {
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (res->ai_family == AF_INET)
      ((struct sockaddr_in *)(void *)&out->ss)->sin_port = htons(port);
    else
      ((struct sockaddr_in6 *)(void *)&out->ss)->sin6_port = htons(port);
  }
  freeaddrinfo(res);
  return ok ? 0 : -1;
}

int sl_cidr_parse(const char *s, sl_cidr *out) {
  char buf[80];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n >= sizeof buf)
    return -1;
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

/* ---- lifecycle ---------------------------------------------------------- */

typedef struct pctx {
  const char *where; /* "FILE:LINE" */
  const char *key;   /* NULL: a message about the line itself */
  int line;
  char *err;
  size_t errlen;
} pctx;

static int fail(pctx *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(pctx *p, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (p->key)
    snprintf(p->err, p->errlen, "%s: %s: %s", p->where, p->key, msg);
  else
    snprintf(p->err, p->errlen, "%s: %s", p->where, msg);
  return -1;
}

static int set_value(pctx *p, sl_config *c, const sl_config_key *k, char *v);
static int set_machine_hostname(pctx *p, sl_config *c);

sl_config *sl_config_new(void) {
  sl_config *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->refs = 1;
  c->key_line = calloc(NKEYS, sizeof *c->key_line);
  if (c->key_line == NULL) {
    free(c);
    return NULL;
  }
  /* The core owns the defaults of its structs; the table's def column holds
     the daemon's own. */
  sl_limits_default(&c->limits);
  sl_policy_default(&c->policy);
  sl_ratelim_config_default(&c->ratelim);
  for (size_t i = 0; i < NKEYS; i++) {
    if (keys[i].def == NULL)
      continue;
    char buf[128], err[256];
    snprintf(buf, sizeof buf, "%s", keys[i].def);
    pctx p = {"default", keys[i].name, 0, err, sizeof err};
    if (set_value(&p, c, &keys[i], buf) != 0) {
      /* A bad default is a bug of the table; the unit test catches it. */
      sl_config_unref(c);
      return NULL;
    }
  }
  char err[256];
  pctx p = {"default", "hostname", 0, err, sizeof err};
  if (set_machine_hostname(&p, c) != 0) {
    sl_config_unref(c);
    return NULL;
  }
  return c;
}

sl_config *sl_config_ref(sl_config *c) {
  c->refs++;
  return c;
}

static int is_string_type(sl_config_type t) {
  return t == SL_CT_STRING || t == SL_CT_FILE || t == SL_CT_LOGFILE ||
         t == SL_CT_HOSTNAME || t == SL_CT_ADDRPORT;
}

void sl_config_unref(sl_config *c) {
  if (c == NULL || --c->refs > 0)
    return;
  for (size_t i = 0; i < NKEYS; i++)
    if (is_string_type(keys[i].type))
      free(*(char **)(void *)((char *)c + keys[i].off));
  for (size_t i = 0; i < c->nlisten; i++)
    free(c->listen[i].text);
  free(c->listen);
  for (size_t i = 0; i < c->nupstream; i++)
    free(c->upstream[i].text);
  free(c->upstream);
  free(c->trusted);
  for (size_t i = 0; i < c->nsni; i++) {
    free(c->sni[i].hostname);
    free(c->sni[i].cert);
    free(c->sni[i].key);
  }
  free(c->sni);
  for (size_t i = 0; i < SL_DNSBL_ZONES_MAX; i++)
    free(c->zone_names[i]);
  for (size_t i = 0; i < c->nrelay_domains; i++)
    free(c->relay_domains[i]);
  free(c->relay_domains);
  free(c->mynetworks);
  for (size_t i = 0; i < c->nfilters; i++) {
    free(c->filters[i].text);
    free(c->filters[i].name);
    free(c->filters[i].path);
    free(c->filters[i].host);
  }
  free(c->filters);
  free(c->key_line);
  free(c->path);
  free(c);
}

/* ---- setting one key ---------------------------------------------------- */

static int split(char *s, char **w, int max) {
  int n = 0;
  for (char *t = strtok(s, " \t"); t; t = strtok(NULL, " \t")) {
    if (n == max)
      return max + 1;
    w[n++] = t;
  }
  return n;
}

static int enum_list(const sl_config_key *k, char *list, size_t len) {
  list[0] = '\0';
  for (int j = 0; k->names[j]; j++) {
    if ((k->min || k->max) && (j < k->min || j > k->max))
      continue;
    size_t used = strlen(list);
    snprintf(list + used, len - used, "%s%s", used ? ", " : "", k->names[j]);
  }
  return 0;
}

static int add_listen(pctx *p, sl_config *c, char *v) {
  char *w[8];
  int n = split(v, w, 7);
  if (n < 1 || n > 7)
    return fail(p, "expected ADDRESS:PORT [tls] [proxy] [nofilter]");
  sl_listen_cfg l;
  memset(&l, 0, sizeof l);
  if (sl_parse_addrport(w[0], &l.addr) != 0)
    return fail(p, "\"%s\" is not a numeric ADDRESS:PORT (IPv6 as [::1]:25)",
                w[0]);
  for (int i = 1; i < n; i++) {
    if (!strcmp(w[i], "tls"))
      l.tls = 1;
    else if (!strcmp(w[i], "proxy"))
      l.proxy = 1;
    else if (!strcmp(w[i], "nofilter"))
      l.nofilter = 1;
    else
      return fail(p, "unknown option \"%s\" (tls, proxy, nofilter)", w[i]);
  }
  sl_listen_cfg *nl = realloc(c->listen, (c->nlisten + 1) * sizeof *nl);
  if (nl == NULL)
    return fail(p, "out of memory");
  c->listen = nl;
  l.text = xstrdup(w[0]);
  l.line = p->line;
  c->listen[c->nlisten++] = l;
  return 0;
}

static int add_upstream(pctx *p, sl_config *c, char *v) {
  char *w[4];
  int n = split(v, w, 3);
  if (n < 1 || n > 3)
    return fail(p, "expected HOST:PORT [weight=N]");
  sl_upstream_cfg u;
  memset(&u, 0, sizeof u);
  u.weight = 1;
  char host[256];
  uint16_t port;
  if (split_hostport(w[0], host, sizeof host, &port) != 0 || host[0] == '\0')
    return fail(p, "\"%s\" is not HOST:PORT (IPv6 as [::1]:25)", w[0]);
  /* A numeric address is taken as is; a host name is resolved by sluiced
     when it loads the file (this library does no DNS). */
  if (sl_parse_addrport(w[0], &u.addr) != 0) {
    if (w[0][0] == '[' || !sl_hostname_valid(host))
      return fail(p, "\"%s\" is not a host name or address", host);
    u.addr.len = 0;
  }
  for (int i = 1; i < n; i++) {
    int64_t wt;
    if (strncmp(w[i], "weight=", 7) == 0 && parse_i64(w[i] + 7, &wt) == 0 &&
        wt >= 1 && wt <= 1000)
      u.weight = (uint32_t)wt;
    else
      return fail(p, "bad option \"%s\" (weight=1..1000)", w[i]);
  }
  if (c->nupstream >= 64)
    return fail(p, "at most 64 servers");
  sl_upstream_cfg *nu = realloc(c->upstream, (c->nupstream + 1) * sizeof *nu);
  if (nu == NULL)
    return fail(p, "out of memory");
  c->upstream = nu;
  u.text = xstrdup(w[0]);
  u.line = p->line;
  c->upstream[c->nupstream++] = u;
  return 0;
}

static int add_dnsbl(pctx *p, sl_config *c, char *v) {
  char *w[2 + SL_DNSBL_CODES_MAX + 1];
  int n = split(v, w, 2 + SL_DNSBL_CODES_MAX);
  if (n < 2 || n > 2 + SL_DNSBL_CODES_MAX)
    return fail(p, "expected ZONE WEIGHT [127.0.0.N ...] (at most %d codes)",
                SL_DNSBL_CODES_MAX);
  if (c->policy.ndnsbl >= SL_DNSBL_ZONES_MAX)
    return fail(p, "at most %d zones", SL_DNSBL_ZONES_MAX);
  if (strlen(w[0]) > 200 || strchr(w[0], '.') == NULL)
    return fail(p, "\"%s\" is not a DNS zone", w[0]);
  int64_t wt;
  if (parse_i64(w[1], &wt) != 0 || wt < -1000000 || wt > 1000000)
    return fail(p, "weight \"%s\" is not an integer", w[1]);
  sl_dnsbl_zone *z = &c->zones[c->policy.ndnsbl];
  memset(z, 0, sizeof *z);
  for (int i = 2; i < n; i++) {
    struct in_addr a;
    if (inet_pton(AF_INET, w[i], &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
      return fail(p, "return code \"%s\" is not a 127.x.y.z address", w[i]);
    z->codes[z->ncodes++] = ntohl(a.s_addr);
  }
  size_t zi = c->policy.ndnsbl;
  free(c->zone_names[zi]);
  c->zone_names[zi] = xstrdup(w[0]);
  if (c->zone_names[zi] == NULL)
    return fail(p, "out of memory");
  c->zone_lines[zi] = p->line;
  z->zone = c->zone_names[zi];
  z->weight = (int32_t)wt;
  c->policy.ndnsbl++;
  c->policy.dnsbl = c->zones;
  return 0;
}

static int add_trusted(pctx *p, sl_config *c, char *v) {
  for (char *q = v; *q; q++)
    if (*q == ',')
      *q = ' ';
  char *w[33];
  int n = split(v, w, 32);
  if (n < 1 || n > 32)
    return fail(p, "expected 1 to 32 CIDR ranges");
  for (int i = 0; i < n; i++) {
    sl_cidr cd;
    if (sl_cidr_parse(w[i], &cd) != 0)
      return fail(p, "\"%s\" is not an address or CIDR range", w[i]);
    sl_cidr *nt = realloc(c->trusted, (c->ntrusted + 1) * sizeof *nt);
    if (nt == NULL)
      return fail(p, "out of memory");
    c->trusted = nt;
    c->trusted[c->ntrusted++] = cd;
  }
  return 0;
}

/* ---- relay control: relay_domains, relay_allow, mynetworks --------------- */

/* Points the policy at the lists again (they move when they grow). */
static void relay_fixup(sl_config *c) {
  c->policy.rcpt.domains = (const char *const *)c->relay_domains;
  c->policy.rcpt.ndomains = (uint32_t)c->nrelay_domains;
  c->policy.rcpt.mynetworks = c->mynetworks;
  c->policy.rcpt.nmynetworks = (uint32_t)c->nmynetworks;
}

static int add_relay_domain(pctx *p, sl_config *c, const char *d,
                            const char *src, int line) {
  if (!strcmp(d, "*")) {
    c->policy.rcpt.flags |= SL_RCPT_ANY_DOMAIN;
    c->relay_any = 1;
    return 0;
  }
  size_t n = strlen(d);
  int bad = n == 0 || n > 255 || !strcmp(d, ".") || strchr(d, '@') != NULL ||
            sl_utf8_check((const uint8_t *)d, n) != n; /* U-labels: UTF-8 */
  for (size_t i = 0; i < n && !bad; i++)
    if ((unsigned char)d[i] <= 0x20 || d[i] == 0x7f)
      bad = 1;
  if (bad) {
    if (src)
      return fail(p, "%s:%d: \"%s\" is not a domain, .domain or [address]", src,
                  line, d);
    return fail(p, "\"%s\" is not a domain, .domain or [address]", d);
  }
  if (c->nrelay_domains == 0 ||
      (c->nrelay_domains & (c->nrelay_domains - 1)) == 0) {
    size_t cap = c->nrelay_domains ? 2 * c->nrelay_domains : 8;
    if (cap < 8)
      cap = 8;
    char **nd = realloc(c->relay_domains, cap * sizeof *nd);
    if (nd == NULL)
      return fail(p, "out of memory");
    c->relay_domains = nd;
  }
  char *s = xstrdup(d);
  if (s == NULL)
    return fail(p, "out of memory");
  c->relay_domains[c->nrelay_domains++] = s;
  /* A list replaces a preset "every domain" (the replay's default) unless
     the file itself said "*". */
  if (!c->relay_any)
    c->policy.rcpt.flags &= ~(uint32_t)SL_RCPT_ANY_DOMAIN;
  relay_fixup(c);
  return 0;
}

/* Words of one line, separated by commas or blanks. */
static int add_relay_words(pctx *p, sl_config *c, char *v, const char *src,
                           int line) {
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t' || *q == '\r' || *q == '\n')
      *q = ' ';
  char *save = NULL;
  for (char *s = strtok_r(v, " ", &save); s; s = strtok_r(NULL, " ", &save))
    if (add_relay_domain(p, c, s, src, line) != 0)
      return -1;
  return 0;
}

/* "file:/etc/sluice/relay_domains": one or more domains a line, '#'
   comments; a relative path is taken from the configuration's directory.
   Read again with the rest of the file on every reload. */
static int add_relay_file(pctx *p, sl_config *c, const char *path) {
  char full[4096];
  const char *slash = c->path ? strrchr(c->path, '/') : NULL;
  if (path[0] != '/' && slash)
    snprintf(full, sizeof full, "%.*s/%s", (int)(slash - c->path), c->path,
             path);
  else
    snprintf(full, sizeof full, "%s", path);
  FILE *f = fopen(full, "r");
  if (f == NULL)
    return fail(p, "cannot open %s: %s", full, strerror(errno));
  char buf[4096];
  int line = 0, rc = 0;
  while (rc == 0 && fgets(buf, sizeof buf, f)) {
    line++;
    char *hash = strchr(buf, '#');
    if (hash)
      *hash = '\0';
    rc = add_relay_words(p, c, buf, full, line);
  }
  if (rc == 0 && ferror(f))
    rc = fail(p, "cannot read %s", full);
  fclose(f);
  return rc;
}

static int add_relay_domains(pctx *p, sl_config *c, char *v) {
  if (!strncmp(v, "file:", 5)) {
    const char *path = v + 5;
    while (*path == ' ')
      path++;
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
#define NRELAY_ALLOW (sizeof relay_allow_names / sizeof relay_allow_names[0])

static int set_relay_allow(pctx *p, sl_config *c, char *v) {
  uint32_t flags = 0;
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t')
      *q = ' ';
  char *save = NULL;
  for (char *s = strtok_r(v, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
    if (!strcmp(s, "none"))
      continue;
    size_t i = 0;
    while (i < NRELAY_ALLOW && strcmp(s, relay_allow_names[i].name))
      i++;
    if (i == NRELAY_ALLOW)
      return fail(p,
                  "\"%s\" is not none, source_route, percent_hack or "
                  "bang_path",
                  s);
    flags |= relay_allow_names[i].flag;
  }
  c->policy.rcpt.flags = (c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN) | flags;
  return 0;
}

static int add_mynetworks(pctx *p, sl_config *c, char *v) {
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t')
      *q = ' ';
  char *save = NULL;
  for (char *s = strtok_r(v, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
    sl_cidr cd;
    if (sl_cidr_parse(s, &cd) != 0)
      return fail(p, "\"%s\" is not an address or CIDR range", s);
    sl_prefix *nm = realloc(c->mynetworks, (c->nmynetworks + 1) * sizeof *nm);
    if (nm == NULL)
      return fail(p, "out of memory");
    c->mynetworks = nm;
    memset(&nm[c->nmynetworks], 0, sizeof *nm);
    nm[c->nmynetworks].addr.family = cd.family == 4 ? SL_AF_INET : SL_AF_INET6;
    memcpy(nm[c->nmynetworks].addr.bytes, cd.bytes, 16);
    nm[c->nmynetworks].bits = cd.bits;
    c->nmynetworks++;
  }
  relay_fixup(c);
  return 0;
}

const char *sl_config_relay_warning(const sl_config *c) {
  if (!c->nrelay_domains && !(c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN))
    return "relay_domains is not set: every recipient of a client that is "
           "neither authenticated nor in mynetworks is refused (454 4.7.1); "
           "list the domains the upstream accepts mail for, or "
           "\"relay_domains = *\" if the upstream does its own relay control";
  if ((c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN) &&
      c->policy.identity == SL_IDENT_NONE)
    return "relay_domains = * with identity = none: the upstream sees only "
           "sluice's address, so it must not trust that address (an upstream "
           "with sluice in its mynetworks becomes an open relay)";
  return NULL;
}

static int add_sni(pctx *p, sl_config *c, char *v) {
  char *w[4];
  int n = split(v, w, 3);
  if (n != 3)
    return fail(p, "expected HOSTNAME CERT_FILE KEY_FILE");
  sl_sni_cfg *ns = realloc(c->sni, (c->nsni + 1) * sizeof *ns);
  if (ns == NULL)
    return fail(p, "out of memory");
  c->sni = ns;
  sl_sni_cfg *s = &c->sni[c->nsni];
  s->hostname = xstrdup(w[0]);
  s->cert = xstrdup(w[1]);
  s->key = xstrdup(w[2]);
  s->line = p->line;
  c->nsni++;
  if (!s->hostname || !s->cert || !s->key)
    return fail(p, "out of memory");
  return 0;
}

/* ---- content filters ----------------------------------------------------- */

/* "inet:HOST:PORT" ([V6]:PORT) or "unix:PATH", as Postfix writes milter
   addresses. */
static int filter_address(pctx *p, sl_filter_cfg *f, const char *a) {
  if (!strncmp(a, "unix:", 5)) {
    const char *path = a + 5;
    if (path[0] != '/')
      return fail(p, "\"%s\": unix: needs an absolute path", a);
    if (strlen(path) >= 108) /* sizeof sun_path */
      return fail(p, "\"%s\": the socket path is longer than 107 bytes", a);
    f->path = xstrdup(path);
    return f->path ? 0 : fail(p, "out of memory");
  }
  if (strncmp(a, "inet:", 5) != 0)
    return fail(p,
                "\"%s\" is not inet:HOST:PORT or unix:PATH (IPv6 as "
                "inet:[::1]:PORT)",
                a);
  char host[256];
  uint16_t port;
  if (split_hostport(a + 5, host, sizeof host, &port) != 0 || host[0] == '\0' ||
      port == 0)
    return fail(p, "\"%s\" is not inet:HOST:PORT (IPv6 as inet:[::1]:PORT)", a);
  if (sl_parse_addrport(a + 5, &f->addr) != 0) {
    if (a[5] == '[' || !sl_hostname_valid(host))
      return fail(p, "\"%s\" is not a host name or address", host);
    f->addr.len = 0;
  }
  f->host = xstrdup(host);
  f->port = port;
  return f->host ? 0 : fail(p, "out of memory");
}

static int add_filter(pctx *p, sl_config *c, const sl_config_key *k, char *v) {
  char *w[5];
  int n = split(v, w, 4);
  if (n < 2 || n > 4)
    return fail(p, "expected rspamd|clamd|milter ADDRESS [name=N] "
                   "[timeout=DUR]");
  if (c->nfilters >= 16)
    return fail(p, "at most 16 filters");
  sl_filter_cfg f;
  memset(&f, 0, sizeof f);
  f.kind = -1;
  for (int j = 0; k->names[j]; j++)
    if (!strcmp(k->names[j], w[0]))
      f.kind = j;
  if (f.kind < 0)
    return fail(p, "\"%s\" is not rspamd, clamd or milter", w[0]);
  const char *name = NULL;
  int rc = filter_address(p, &f, w[1]);
  for (int i = 2; i < n && rc == 0; i++) {
    if (!strncmp(w[i], "name=", 5)) {
      name = w[i] + 5;
      int ok = *name != '\0' && strlen(name) <= 64;
      for (const char *q = name; ok && *q; q++)
        ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
             is_digit(*q) || *q == '-' || *q == '_' || *q == '.';
      if (!ok)
        rc = fail(p, "name \"%s\": 1 to 64 letters, digits, '-', '_', '.'",
                  name);
    } else if (!strncmp(w[i], "timeout=", 8)) {
      if (sl_parse_duration(w[i] + 8, &f.timeout) != 0 || f.timeout == 0)
        rc = fail(p, "\"%s\" is not a duration above 0 (e.g. timeout=10s)",
                  w[i] + 8);
    } else {
      rc = fail(p, "unknown option \"%s\" (name=N, timeout=DUR)", w[i]);
    }
  }
  char defname[32];
  if (rc == 0 && name == NULL) {
    snprintf(defname, sizeof defname, "%s-%zu", w[0], c->nfilters + 1);
    name = defname;
  }
  for (size_t i = 0; rc == 0 && i < c->nfilters; i++)
    if (!strcmp(c->filters[i].name, name))
      rc = fail(p, "name \"%s\" is already used at line %d", name,
                c->filters[i].line);
  sl_filter_cfg *nf =
      rc == 0 ? realloc(c->filters, (c->nfilters + 1) * sizeof *nf) : NULL;
  if (rc == 0 && nf == NULL)
    rc = fail(p, "out of memory");
  if (rc == 0) {
    c->filters = nf;
    f.name = xstrdup(name);
    f.text = xstrdup(w[1]);
    f.line = p->line;
    if (f.name == NULL || f.text == NULL)
      rc = fail(p, "out of memory");
  }
  if (rc != 0) {
    free(f.name);
    free(f.text);
    free(f.path);
    free(f.host);
    return -1;
  }
  c->filters[c->nfilters++] = f;
  return 0;
}

static int set_filter_skip(pctx *p, sl_config *c, char *v) {
  uint32_t flags = 0;
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t')
      *q = ' ';
  char *save = NULL;
  for (char *s = strtok_r(v, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
    if (!strcmp(s, "none"))
      continue;
    int x = 0;
    while (filter_skip_names[x] && strcmp(s, filter_skip_names[x]))
      x++;
    if (filter_skip_names[x] == NULL)
      return fail(p, "\"%s\" is not none, authenticated, mynetworks or dnswl",
                  s);
    flags |= 1u << x;
  }
  c->filter_skip = flags;
  return 0;
}

static int set_policy_stages(pctx *p, sl_config *c, char *v) {
  uint32_t flags = 0;
  for (char *q = v; *q; q++)
    if (*q == ',' || *q == '\t')
      *q = ' ';
  char *save = NULL;
  for (char *s = strtok_r(v, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
    int x = 0;
    while (policy_stage_names[x] && strcmp(s, policy_stage_names[x]))
      x++;
    if (policy_stage_names[x] == NULL)
      return fail(p,
                  "\"%s\" is not a stage sluice asks at: helo, mail, rcpt or "
                  "data (connect and end-of-message are not done yet)",
                  s);
    flags |= 1u << x;
  }
  if (!flags)
    return fail(p, "name at least one stage: helo, mail, rcpt or data");
  c->policy_stages = flags;
  return 0;
}

static int set_features(pctx *p, sl_config *c, char *v) {
  for (char *q = v; *q; q++)
    if (*q == ',')
      *q = ' ';
  char *w[16];
  int n = split(v, w, 15);
  if (n > 15)
    return fail(p, "too many words");
  uint32_t f = 0;
  for (int j = 0; j < n; j++) {
    if (!strcmp(w[j], "all")) {
      f = SL_FEAT_ALL;
      continue;
    }
    if (!strcmp(w[j], "none"))
      continue;
    int found = 0;
    for (int x = 0; feature_names[x]; x++)
      if (!strcmp(feature_names[x], w[j])) {
        f |= 1u << x;
        found = 1;
      }
    if (!found)
      return fail(p, "unknown feature \"%s\"", w[j]);
  }
  c->policy.features = f;
  c->features_set = 1;
  return 0;
}

static int set_machine_hostname(pctx *p, sl_config *c) {
  char host[256];
  if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
    strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  char *s = xstrdup(host);
  if (s == NULL)
    return fail(p, "out of memory");
  free(c->hostname);
  c->hostname = s;
  c->policy.hostname = s;
  return 0;
}

static int set_value(pctx *p, sl_config *c, const sl_config_key *k, char *v) {
  void *dst = (char *)c + k->off;
  int64_t i;
  uint64_t u;
  sl_duration d;
  int b;
  if (*v == '\0' && !is_string_type(k->type))
    return fail(p, "empty value");
  switch (k->type) {
  case SL_CT_DURATION:
    if (sl_parse_duration(v, &d) != 0)
      return fail(p, "\"%s\" is not a duration (e.g. 30s, 2.5s, 500ms, 5m)", v);
    *(sl_duration *)dst = d;
    return 0;
  case SL_CT_SIZE32:
  case SL_CT_SIZE64:
    if (sl_parse_size(v, &u) != 0)
      return fail(p, "\"%s\" is not a size (e.g. 512, 64k, 10M)", v);
    if (k->type == SL_CT_SIZE32) {
      if (u > UINT32_MAX)
        return fail(p, "%s is too large", v);
      *(uint32_t *)dst = (uint32_t)u;
    } else {
      *(uint64_t *)dst = u;
    }
    return 0;
  case SL_CT_U8:
  case SL_CT_U32:
  case SL_CT_I32: {
    if (parse_i64(v, &i) != 0)
      return fail(p, "\"%s\" is not an integer", v);
    int64_t lo = k->min, hi = k->max;
    if (!lo && !hi) {
      lo = k->type == SL_CT_I32 ? INT32_MIN : 0;
      hi = k->type == SL_CT_U8    ? UINT8_MAX
           : k->type == SL_CT_U32 ? (int64_t)UINT32_MAX
                                  : INT32_MAX;
    }
    if (i < lo || i > hi)
      return fail(p, "%s is out of range %" PRId64 "..%" PRId64, v, lo, hi);
    if (k->type == SL_CT_U8)
      *(uint8_t *)dst = (uint8_t)i;
    else if (k->type == SL_CT_U32)
      *(uint32_t *)dst = (uint32_t)i;
    else
      *(int32_t *)dst = (int32_t)i;
    return 0;
  }
  case SL_CT_BOOL:
  case SL_CT_BOOL8:
  case SL_CT_LENIENT:
    if (sl_parse_bool(v, &b) != 0)
      return fail(p, "\"%s\" is not yes or no", v);
    if (k->type == SL_CT_BOOL8)
      *(uint8_t *)dst = (uint8_t)b;
    else if (k->type == SL_CT_LENIENT)
      *(uint32_t *)dst = b ? SL_LENIENT_NORMALIZE_BARE_LF : 0;
    else
      *(int *)dst = b;
    return 0;
  case SL_CT_ENUM:
    for (int j = 0; k->names[j]; j++) {
      if (strcmp(k->names[j], v) != 0)
        continue;
      if ((k->min || k->max) && (j < k->min || j > k->max))
        break;
      *(int *)dst = j;
      return 0;
    }
    {
      char list[256];
      enum_list(k, list, sizeof list);
      return fail(p, "\"%s\" is not one of: %s", v, list);
    }
  case SL_CT_HOSTNAME:
    /* Empty: back to the machine's name (the documented default). */
    if (*v == '\0')
      return set_machine_hostname(p, c);
    /* Goes into replies and EHLO: one DNS name, never "mx example". */
    if (!sl_hostname_valid(v))
      return fail(p,
                  "\"%s\" is not a host name (letters, digits, '-', '_' "
                  "and dots, no blanks, at most 255 characters)",
                  v);
    __attribute__((fallthrough)); /* then stored like any string */
  case SL_CT_STRING:
  case SL_CT_FILE:
  case SL_CT_LOGFILE:
  case SL_CT_ADDRPORT: {
    if (k->type == SL_CT_ADDRPORT && *v) {
      sl_sockaddr a;
      if (sl_parse_addrport(v, &a) != 0)
        return fail(p, "\"%s\" is not a numeric ADDRESS:PORT", v);
    }
    char *s = v[0] ? xstrdup(v) : NULL;
    if (v[0] && s == NULL)
      return fail(p, "out of memory");
    free(*(char **)dst);
    *(char **)dst = s;
    if (k->type == SL_CT_HOSTNAME)
      c->policy.hostname = c->hostname;
    if (k->off == O(auth_mechanisms))
      c->policy.auth_mechanisms = s;
    return 0;
  }
  case SL_CT_FEATURES:
    return set_features(p, c, v);
  case SL_CT_LISTEN:
    return add_listen(p, c, v);
  case SL_CT_UPSTREAM:
    return add_upstream(p, c, v);
  case SL_CT_TRUSTED:
    return add_trusted(p, c, v);
  case SL_CT_SNI:
    return add_sni(p, c, v);
  case SL_CT_DNSBL:
    return add_dnsbl(p, c, v);
  case SL_CT_RELAY_DOMAINS:
    return add_relay_domains(p, c, v);
  case SL_CT_RELAY_ALLOW:
    return set_relay_allow(p, c, v);
  case SL_CT_MYNETWORKS:
    return add_mynetworks(p, c, v);
  case SL_CT_FILTER:
    return add_filter(p, c, k, v);
  case SL_CT_FILTER_SKIP:
    return set_filter_skip(p, c, v);
  case SL_CT_POLICY_STAGES:
    return set_policy_stages(p, c, v);
  }
  return fail(p, "internal: bad key type");
}

static int unknown_key(pctx *p, const char *key) {
  p->key = NULL;
  const char *near = sl_config_suggest(key);
  if (near)
    return fail(p, "unknown key \"%s\" (did you mean \"%s\"?)", key, near);
  return fail(p, "unknown key \"%s\"", key);
}

int sl_config_set(sl_config *c, const char *key, const char *value,
                  const char *where, int line, char *err, size_t errlen) {
  pctx p = {where, key, line, err, errlen};
  size_t i = key_index(key);
  if (i == NKEYS)
    return unknown_key(&p, key);
  char buf[4096];
  if (strlen(value) >= sizeof buf)
    return fail(&p, "value too long");
  snprintf(buf, sizeof buf, "%s", value);
  if (set_value(&p, c, &keys[i], buf) != 0)
    return -1;
  if (line > 0)
    c->key_line[i] = line;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

int sl_config_parse(sl_config *c, const char *text, size_t len,
                    const char *name, char *err, size_t errlen) {
  /* Lines of this text that set each key: a second one is an error for a
     key that is not repeatable (the last one used to win silently). */
  int *seen = calloc(NKEYS, sizeof *seen);
  if (seen == NULL) {
    snprintf(err, errlen, "%s: out of memory", name);
    return -1;
  }
  if (c->path == NULL)
    c->path = xstrdup(name); /* for finish's messages */
  char where[600];
  pctx p = {where, NULL, 0, err, errlen};
  size_t pos = 0;
  int rc = 0;
  while (pos < len && rc == 0) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    p.line++;
    p.key = NULL;
    snprintf(where, sizeof where, "%s:%d", name, p.line);
    char raw[4096];
    if (n >= sizeof raw) {
      rc = fail(&p, "line too long");
      break;
    }
    memcpy(raw, text + pos, n);
    raw[n] = '\0';
    pos += n + (nl ? 1 : 0);
    if (memchr(raw, '\0', n) != NULL) {
      rc = fail(&p, "NUL byte in line");
      break;
    }
    char *hash = strchr(raw, '#');
    if (hash)
      *hash = '\0';
    char *s = trim(raw);
    if (*s == '\0')
      continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      rc = fail(&p, "expected \"key = value\"");
      break;
    }
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    if (*k == '\0') {
      rc = fail(&p, "expected \"key = value\"");
      break;
    }
    size_t i = key_index(k);
    if (i == NKEYS) {
      rc = unknown_key(&p, k);
      break;
    }
    p.key = keys[i].name;
    if (seen[i] && !(keys[i].flags & SL_KEY_REPEAT)) {
      rc = fail(&p,
                "already set at line %d (only listen, upstream, "
                "trusted_proxy, sni, dnsbl, relay_domains, mynetworks and "
                "filter may repeat)",
                seen[i]);
      break;
    }
    seen[i] = p.line;
    rc = set_value(&p, c, &keys[i], v);
    if (rc == 0)
      c->key_line[i] = p.line;
  }
  free(seen);
  return rc;
}

int sl_config_load(sl_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 8192, len = 0, n;
  char *buf = malloc(cap);
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len < cap)
      continue;
    char *nb = cap >= (16u << 20) ? NULL : realloc(buf, cap * 2);
    if (nb == NULL) {
      fclose(f);
      free(buf);
      snprintf(err, errlen, "%s: larger than 16 MiB or out of memory", path);
      return -1;
    }
    buf = nb;
    cap *= 2;
  }
  int rerr = ferror(f);
  fclose(f);
  if (buf == NULL || rerr) {
    free(buf);
    snprintf(err, errlen, "%s: cannot read", path);
    return -1;
  }
  free(c->path);
  c->path = xstrdup(path);
  int rc = sl_config_parse(c, buf, len, path, err, errlen);
  free(buf);
  return rc;
}

/* ---- whole-config checks ------------------------------------------------ */

/* "FILE:LINE: KEY" where KEY was set, or "FILE: KEY". */
static void key_where(const sl_config *c, const char *name, const char *key,
                      char *out, size_t len) {
  size_t i = key_index(key);
  int line = (c && i < NKEYS) ? c->key_line[i] : 0;
  if (line > 0)
    snprintf(out, len, "%s:%d: %s", name, line, key);
  else
    snprintf(out, len, "%s: %s", name, key);
}

static void format_duration(sl_duration d, char *out, size_t len);

static int check_core(const sl_policy *pol, const sl_limits *l,
                      const sl_config *c, const char *name, char *err,
                      size_t errlen) {
  char w[700];
#define LIMIT_FAIL(key, ...)                                                   \
  do {                                                                         \
    char m_[300];                                                              \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                      \
    key_where(c, name, key, w, sizeof w);                                      \
    snprintf(err, errlen, "%s: %s", w, m_);                                    \
    return -1;                                                                 \
  } while (0)
  if (sl_limits_check(l) != 0) {
    /* The same conditions as sl_limits_check, each named. */
    if (l->command_line_max < 64)
      LIMIT_FAIL("command_line_max", "%u is below 64", l->command_line_max);
    if (l->small_buffer_size < 300)
      LIMIT_FAIL("small_buffer_size", "%u is below 300", l->small_buffer_size);
    if (l->small_buffer_size % 8)
      LIMIT_FAIL("small_buffer_size", "%u is not a multiple of 8",
                 l->small_buffer_size);
    if (l->buffer_size % 8)
      LIMIT_FAIL("buffer_size", "%u is not a multiple of 8", l->buffer_size);
    if (l->buffer_size > 65528)
      LIMIT_FAIL("buffer_size", "%u is above 65528", l->buffer_size);
    if (l->command_line_max > l->small_buffer_size)
      LIMIT_FAIL("command_line_max", "%u does not fit small_buffer_size (%u)",
                 l->command_line_max, l->small_buffer_size);
    if (l->auth_line_max < l->command_line_max)
      LIMIT_FAIL("auth_line_max", "%u is below command_line_max (%u)",
                 l->auth_line_max, l->command_line_max);
    if (l->auth_line_max + 2 > l->buffer_size)
      LIMIT_FAIL("buffer_size", "%u must be at least auth_line_max + 2 (%u)",
                 l->buffer_size, l->auth_line_max + 2);
    if (l->reply_line_max < 64)
      LIMIT_FAIL("reply_line_max", "%u is below 64", l->reply_line_max);
    if (l->reply_max < l->reply_line_max)
      LIMIT_FAIL("reply_max", "%u is below reply_line_max (%u)", l->reply_max,
                 l->reply_line_max);
    if ((uint64_t)l->reply_max + 512 > l->buffer_size)
      LIMIT_FAIL("buffer_size",
                 "%u must be at least reply_max + 512 (%" PRIu64 ")",
                 l->buffer_size, (uint64_t)l->reply_max + 512);
    if (l->text_line_max < 80)
      LIMIT_FAIL("text_line_max", "%u is below 80", l->text_line_max);
    if (l->path_max < 16)
      LIMIT_FAIL("path_max", "%u is below 16", l->path_max);
    if (l->domain_max < 16)
      LIMIT_FAIL("domain_max", "%u is below 16", l->domain_max);
    snprintf(err, errlen, "%s: the limits are inconsistent (sl_limits_check)",
             name);
    return -1;
  }
  if (sl_policy_check(pol) != 0) {
    if (pol->hostname == NULL || !sl_hostname_valid(pol->hostname))
      LIMIT_FAIL("hostname", "\"%s\" is not a host name",
                 pol->hostname ? pol->hostname : "");
    if (pol->normal.stutter_bytes && !pol->normal.stutter_interval)
      LIMIT_FAIL("normal_stutter_bytes", "needs normal_stutter_interval");
    if (pol->suspect.stutter_bytes && !pol->suspect.stutter_interval)
      LIMIT_FAIL("suspect_stutter_bytes", "needs suspect_stutter_interval");
    snprintf(err, errlen, "%s: the policy is inconsistent (sl_policy_check)",
             name);
    return -1;
  }
#undef LIMIT_FAIL
  return 0;
}

int sl_config_check_core(const sl_policy *p, const sl_limits *l,
                         const char *name, char *err, size_t errlen) {
  return check_core(p, l, NULL, name, err, errlen);
}

/* AUTH and TLS toward Redis: settings that only make sense together. */
static int redis_checks(const sl_config *c, const char *name, char *err,
                        size_t errlen) {
  char w[700];
  const char *msg = NULL, *at = NULL;
  if (c->redis_password && c->redis_password_file) {
    at = "redis_password_file";
    msg = "set redis_password or redis_password_file, not both";
  } else if (c->redis_username && !c->redis_password &&
             !c->redis_password_file) {
    at = "redis_username";
    msg = "an ACL user needs redis_password or redis_password_file";
  } else if (!c->redis_tls && (c->redis_tls_ca || c->redis_tls_cert ||
                               c->redis_tls_key || c->redis_tls_name)) {
    at = c->redis_tls_ca     ? "redis_tls_ca"
         : c->redis_tls_cert ? "redis_tls_cert"
         : c->redis_tls_key  ? "redis_tls_key"
                             : "redis_tls_name";
    msg = "has no effect without redis_tls = yes";
  } else if (!c->redis_tls_cert != !c->redis_tls_key) {
    at = c->redis_tls_cert ? "redis_tls_cert" : "redis_tls_key";
    msg = "redis_tls_cert and redis_tls_key go together";
  } else if (c->redis_tls && c->redis && strncmp(c->redis, "inet:", 5) != 0) {
    at = "redis_tls";
    msg = "Redis speaks TLS on its tls-port only: redis must be "
          "inet:ADDRESS:PORT";
  }
  if (msg == NULL)
    return 0;
  key_where(c, name, at, w, sizeof w);
  snprintf(err, errlen, "%s: %s", w, msg);
  return -1;
}

int sl_config_finish(sl_config *c, unsigned flags, char *err, size_t errlen) {
  const char *name = c->path ? c->path : "config";
  char w[700];
  c->policy.hostname = c->hostname ? c->hostname : "localhost";
  c->policy.auth_mechanisms = c->auth_mechanisms;
  c->policy.dnsbl = c->policy.ndnsbl ? c->zones : NULL;
  c->features_set = c->key_line[key_index("features")] > 0 || c->features_set;
  if (flags & SL_CONFIG_DAEMON) {
    if (c->nlisten == 0) {
      snprintf(err, errlen,
               "%s: no \"listen\" line (e.g. listen = "
               "127.0.0.1:2525)",
               name);
      return -1;
    }
    if (c->nupstream == 0) {
      snprintf(err, errlen,
               "%s: no \"upstream\" line (e.g. upstream = "
               "127.0.0.1:2526)",
               name);
      return -1;
    }
    if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
      key_where(c, name, c->tls_cert ? "tls_cert" : "tls_key", w, sizeof w);
      snprintf(err, errlen, "%s: tls_cert and tls_key go together", w);
      return -1;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
      if (c->listen[i].tls && c->tls_cert == NULL) {
        snprintf(err, errlen, "%s:%d: listen %s tls needs tls_cert and tls_key",
                 name, c->listen[i].line, c->listen[i].text);
        return -1;
      }
      if (c->listen[i].proxy && c->ntrusted == 0) {
        snprintf(err, errlen,
                 "%s:%d: listen %s proxy needs at least one "
                 "trusted_proxy range",
                 name, c->listen[i].line, c->listen[i].text);
        return -1;
      }
    }
    if (c->nsni && c->tls_cert == NULL) {
      snprintf(err, errlen, "%s:%d: sni needs a default tls_cert and tls_key",
               name, c->sni[0].line);
      return -1;
    }
    /* STARTTLS is only offered when there is a certificate to offer it with. */
    if (c->tls_cert == NULL)
      c->policy.features &= ~(uint32_t)SL_FEAT_STARTTLS;
    else if (!c->features_set)
      c->policy.features |= SL_FEAT_STARTTLS;
    /* The end of data waits for the verdicts before the upstream's own
       reply: a filter slower than that wait would let the upstream leg
       time out under a message the filter would have accepted. */
    char du[32], dt[32];
    format_duration(c->limits.upstream_data_term_timeout, du, sizeof du);
    if (c->filter_timeout == 0 ||
        c->filter_timeout >= c->limits.upstream_data_term_timeout) {
      format_duration(c->filter_timeout, dt, sizeof dt);
      key_where(c, name, "filter_timeout", w, sizeof w);
      snprintf(err, errlen,
               "%s: %s is not between 0 and upstream_data_term_timeout (%s)", w,
               dt, du);
      return -1;
    }
    for (size_t i = 0; i < c->nfilters; i++) {
      const sl_filter_cfg *fl = &c->filters[i];
      if (fl->timeout >= c->limits.upstream_data_term_timeout) {
        format_duration(fl->timeout, dt, sizeof dt);
        snprintf(err, errlen,
                 "%s:%d: filter: %s: timeout=%s is not below "
                 "upstream_data_term_timeout (%s)",
                 name, fl->line, fl->name, dt, du);
        return -1;
      }
    }
    if (c->filter_mode == SL_FILTER_MODE_AUTO) {
      /* rspamd ("add header") and milters (header actions) may change the
         message; only clamd never does. */
      c->filter_mode_spool = 0;
      for (size_t i = 0; i < c->nfilters; i++)
        if (c->filters[i].kind != SL_FILTER_CLAMD)
          c->filter_mode_spool = 1;
    } else {
      c->filter_mode_spool = c->filter_mode == SL_FILTER_MODE_SPOOL;
    }
    if (c->filter_discard_action == SL_FILTER_DISCARD_TAG && c->nfilters &&
        !c->filter_mode_spool) {
      key_where(c, name, "filter_discard_action", w, sizeof w);
      snprintf(err, errlen,
               "%s: tag adds a header, which needs filter_mode spool (or "
               "auto with an rspamd or milter filter)",
               w);
      return -1;
    }
    if (c->metrics_listen &&
        sl_parse_addrport(c->metrics_listen, &c->metrics_addr) != 0) {
      key_where(c, name, "metrics_listen", w, sizeof w);
      snprintf(err, errlen, "%s: \"%s\" is not a numeric ADDRESS:PORT", w,
               c->metrics_listen);
      return -1;
    }
    if (c->state_backend == 1) {
      const char *r = c->redis;
      if (r == NULL) {
        key_where(c, name, "state_backend", w, sizeof w);
        snprintf(err, errlen,
                 "%s: state_backend = redis needs redis = "
                 "inet:HOST:PORT or unix:PATH",
                 w);
        return -1;
      }
      sl_sockaddr sa;
      if (!(strncmp(r, "unix:/", 6) == 0 && strlen(r) < 6 + 100) &&
          !(strncmp(r, "inet:", 5) == 0 &&
            sl_parse_addrport(r + 5, &sa) == 0)) {
        key_where(c, name, "redis", w, sizeof w);
        snprintf(err, errlen,
                 "%s: \"%s\" is neither inet:ADDRESS:PORT "
                 "(numeric) nor unix:/PATH",
                 w, r);
        return -1;
      }
    }
    if (redis_checks(c, name, err, errlen) != 0)
      return -1;
    if (c->policy_service) {
      const char *ps = c->policy_service;
      sl_sockaddr sa;
      if (!(strncmp(ps, "unix:/", 6) == 0 && strlen(ps) < 6 + 100) &&
          !(strncmp(ps, "inet:", 5) == 0 &&
            sl_parse_addrport(ps + 5, &sa) == 0)) {
        key_where(c, name, "policy_service", w, sizeof w);
        snprintf(err, errlen,
                 "%s: \"%s\" is neither inet:ADDRESS:PORT "
                 "(numeric) nor unix:/PATH",
                 w, ps);
        return -1;
      }
    }
    if (c->greylist && c->greylist_delay < SL_SEC) {
      key_where(c, name, "greylist_delay", w, sizeof w);
      snprintf(err, errlen, "%s: at least 1s", w);
      return -1;
    }
    /* the relay asks the driver about each RCPT only when someone answers */
    c->policy.rcpt_check =
        c->greylist ||
        (c->policy_service && (c->policy_stages & SL_POLICY_AT_RCPT));
    /* a milter is asked at each RCPT, as Postfix asks it (sd_filter.c) */
    for (size_t i = 0; i < c->nfilters; i++)
      if (c->filters[i].kind == SL_FILTER_MILTER)
        c->policy.rcpt_check = 1;
    c->policy.check_stages = 0;
    if (c->policy_service && (c->policy_stages & SL_POLICY_AT_MAIL))
      c->policy.check_stages |= SL_CHECK_MAIL;
    if (c->policy_service && (c->policy_stages & SL_POLICY_AT_DATA))
      c->policy.check_stages |= SL_CHECK_DATA;
    if (c->policy_service && (c->policy_stages & SL_POLICY_AT_HELO))
      c->policy.check_stages |= SL_CHECK_HELO;
    if (c->redis_lease && c->redis_lease < 3 * SL_SEC) {
      key_where(c, name, "redis_lease", w, sizeof w);
      snprintf(err, errlen, "%s: at least 3s (sessions renew it every third)",
               w);
      return -1;
    }
  }
  return check_core(&c->policy, &c->limits, c, name, err, errlen);
}

static int check_readable(const char *path, char *why, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(why, len, "%s", strerror(errno));
    return -1;
  }
  struct stat st;
  int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  close(fd);
  if (!ok)
    snprintf(why, len, "not a regular file");
  return ok ? 0 : -1;
}

int sl_config_check_files(const sl_config *c, char *err, size_t errlen) {
  const char *name = c->path ? c->path : "config";
  char w[700], why[128];
  for (size_t i = 0; i < NKEYS; i++) {
    if (keys[i].type != SL_CT_FILE && keys[i].type != SL_CT_LOGFILE)
      continue;
    const char *v =
        *(char *const *)(const void *)((const char *)c + keys[i].off);
    if (keys[i].type == SL_CT_FILE && v && check_readable(v, why, sizeof why)) {
      key_where(c, name, keys[i].name, w, sizeof w);
      snprintf(err, errlen, "%s: cannot read \"%s\": %s", w, v, why);
      return -1;
    }
    /* "-" is stderr; "syslog" and "syslog:SOCKET" are not files (the
       socket is the syslog daemon's, checked when sluiced connects). */
    if (keys[i].type == SL_CT_LOGFILE && v &&
        (!strcmp(v, "-") || !strcmp(v, "syslog") || !strncmp(v, "syslog:", 7)))
      continue;
    if (keys[i].type == SL_CT_LOGFILE && v) {
      /* Appending needs the directory; the file itself may not exist yet. */
      char dir[4096];
      snprintf(dir, sizeof dir, "%s", v);
      char *slash = strrchr(dir, '/');
      if (slash == dir)
        slash[1] = '\0';
      else if (slash)
        *slash = '\0';
      else
        snprintf(dir, sizeof dir, ".");
      struct stat st;
      if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        key_where(c, name, keys[i].name, w, sizeof w);
        snprintf(err, errlen, "%s: directory \"%s\" does not exist", w, dir);
        return -1;
      }
    }
  }
  for (size_t i = 0; i < c->nsni; i++) {
    const char *files[2] = {c->sni[i].cert, c->sni[i].key};
    for (int j = 0; j < 2; j++)
      if (check_readable(files[j], why, sizeof why)) {
        snprintf(err, errlen, "%s:%d: sni: cannot read \"%s\": %s", name,
                 c->sni[i].line, files[j], why);
        return -1;
      }
  }
  return 0;
}

/* ---- dump --------------------------------------------------------------- */

static void format_duration(sl_duration d, char *out, size_t len) {
  if (d % SL_SEC == 0)
    snprintf(out, len, "%" PRIu64 "s", d / SL_SEC);
  else if (d % SL_MSEC == 0)
    snprintf(out, len, "%" PRIu64 "ms", d / SL_MSEC);
  else if (d % SL_USEC == 0)
    snprintf(out, len, "%" PRIu64 "us", d / SL_USEC);
  else
    snprintf(out, len, "%" PRIu64 "ns", d);
}

/* The value of a single-valued key, as the file would spell it. */
static void format_value(const sl_config *c, const sl_config_key *k, char *out,
                         size_t len) {
  const void *src = (const char *)c + k->off;
  out[0] = '\0';
  switch (k->type) {
  case SL_CT_DURATION:
    format_duration(*(const sl_duration *)src, out, len);
    break;
  case SL_CT_U8:
    snprintf(out, len, "%u", *(const uint8_t *)src);
    break;
  case SL_CT_U32:
  case SL_CT_SIZE32:
    snprintf(out, len, "%u", *(const uint32_t *)src);
    break;
  case SL_CT_SIZE64:
    snprintf(out, len, "%" PRIu64, *(const uint64_t *)src);
    break;
  case SL_CT_I32:
    snprintf(out, len, "%d", *(const int32_t *)src);
    break;
  case SL_CT_BOOL8:
    snprintf(out, len, "%s", *(const uint8_t *)src ? "yes" : "no");
    break;
  case SL_CT_LENIENT:
    snprintf(out, len, "%s", *(const uint32_t *)src ? "yes" : "no");
    break;
  case SL_CT_BOOL:
    snprintf(out, len, "%s", *(const int *)src ? "yes" : "no");
    break;
  case SL_CT_ENUM:
    snprintf(out, len, "%s", k->names[*(const int *)src]);
    break;
  case SL_CT_STRING:
  case SL_CT_FILE:
  case SL_CT_LOGFILE:
  case SL_CT_HOSTNAME:
  case SL_CT_ADDRPORT: {
    const char *s = *(char *const *)src;
    snprintf(out, len, "%s", s ? s : "");
    break;
  }
  case SL_CT_RELAY_ALLOW:
    for (size_t x = 0; x < NRELAY_ALLOW; x++)
      if (c->policy.rcpt.flags & relay_allow_names[x].flag) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? " " : "",
                 relay_allow_names[x].name);
      }
    if (!out[0])
      snprintf(out, len, "none");
    break;
  case SL_CT_POLICY_STAGES:
    for (int x = 0; policy_stage_names[x]; x++)
      if (c->policy_stages & (1u << x)) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? " " : "",
                 policy_stage_names[x]);
      }
    break;
  case SL_CT_FILTER_SKIP:
    for (int x = 0; filter_skip_names[x]; x++)
      if (c->filter_skip & (1u << x)) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? " " : "",
                 filter_skip_names[x]);
      }
    if (!out[0])
      snprintf(out, len, "none");
    break;
  case SL_CT_FEATURES:
    for (int x = 0; feature_names[x]; x++)
      if (c->policy.features & (1u << x)) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? " " : "",
                 feature_names[x]);
      }
    break;
  default:
    break; /* repeatable keys: dump_entries */
  }
}

static void dump_entries(const sl_config *c, const sl_config_key *k, FILE *f) {
  switch (k->type) {
  case SL_CT_LISTEN:
    for (size_t i = 0; i < c->nlisten; i++)
      fprintf(f, "listen = %s%s%s%s\n", c->listen[i].text,
              c->listen[i].tls ? " tls" : "",
              c->listen[i].proxy ? " proxy" : "",
              c->listen[i].nofilter ? " nofilter" : "");
    break;
  case SL_CT_UPSTREAM:
    for (size_t i = 0; i < c->nupstream; i++)
      fprintf(f, "upstream = %s weight=%u\n", c->upstream[i].text,
              c->upstream[i].weight);
    break;
  case SL_CT_TRUSTED:
    for (size_t i = 0; i < c->ntrusted; i++) {
      char a[INET6_ADDRSTRLEN];
      inet_ntop(c->trusted[i].family == 4 ? AF_INET : AF_INET6,
                c->trusted[i].bytes, a, sizeof a);
      fprintf(f, "trusted_proxy = %s/%u\n", a, c->trusted[i].bits);
    }
    break;
  case SL_CT_SNI:
    for (size_t i = 0; i < c->nsni; i++)
      fprintf(f, "sni = %s %s %s\n", c->sni[i].hostname, c->sni[i].cert,
              c->sni[i].key);
    break;
  case SL_CT_DNSBL:
    for (size_t i = 0; i < c->policy.ndnsbl; i++) {
      fprintf(f, "dnsbl = %s %d", c->zones[i].zone, c->zones[i].weight);
      for (size_t j = 0; j < c->zones[i].ncodes; j++) {
        uint32_t a = c->zones[i].codes[j];
        fprintf(f, " %u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                a & 255);
      }
      fputc('\n', f);
    }
    break;
  case SL_CT_RELAY_DOMAINS:
    if (c->relay_any ||
        (c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN && !c->nrelay_domains))
      fprintf(f, "relay_domains = *\n");
    for (size_t i = 0; i < c->nrelay_domains; i++)
      fprintf(f, "relay_domains = %s\n", c->relay_domains[i]);
    break;
  case SL_CT_FILTER:
    for (size_t i = 0; i < c->nfilters; i++) {
      const sl_filter_cfg *fl = &c->filters[i];
      fprintf(f, "filter = %s %s name=%s", filter_kind_names[fl->kind],
              fl->text, fl->name);
      if (fl->timeout) {
        char d[32];
        format_duration(fl->timeout, d, sizeof d);
        fprintf(f, " timeout=%s", d);
      }
      fputc('\n', f);
    }
    break;
  case SL_CT_MYNETWORKS:
    for (size_t i = 0; i < c->nmynetworks; i++) {
      char a[SL_ADDR_STRLEN];
      sl_addr_format(&c->mynetworks[i].addr, a, sizeof a);
      fprintf(f, "mynetworks = %s/%u\n", a, c->mynetworks[i].bits);
    }
    break;
  default:
    break;
  }
}

void sl_config_dump(const sl_config *c, FILE *f, unsigned flags) {
  sl_config *def = (flags & SL_DUMP_CHANGED) ? sl_config_new() : NULL;
  for (size_t i = 0; i < NKEYS; i++) {
    const sl_config_key *k = &keys[i];
    if (k->flags & SL_KEY_REPEAT) {
      dump_entries(c, k, f);
      continue;
    }
    char v[1024], dv[1024];
    format_value(c, k, v, sizeof v);
    if (def) {
      /* Like postconf -n: what the file set, when it is not the default. */
      if (c->key_line[i] == 0)
        continue;
      format_value(def, k, dv, sizeof dv);
      /* features set in the file also stops STARTTLS being added for a
         certificate, so it matters even when it spells the default. */
      if (strcmp(v, dv) == 0 && k->type != SL_CT_FEATURES)
        continue;
    }
    /* A secret is not printed: dumps end up in tickets and chat logs. */
    if ((k->flags & SL_KEY_SECRET) && v[0])
      fprintf(f, "# %s is set (not shown)\n", k->name);
    else
      fprintf(f, "%s = %s\n", k->name, v);
  }
  sl_config_unref(def);
}
