/*
 * sp_policy.h: the screening/tarpit policy of a replay, read from a file in
 * sluiced's configuration format with sluiced's own grammar (the shared
 * library sluice_config, config/include/sluice/config.h: the same key
 * table, value parsers and messages).  Keys flagged daemon-only there
 * (listen, upstream, TLS files, workers, logging, DNS resolver, per-IP
 * admission...) are parsed and validated, then ignored with one note on
 * stderr (unless SLUICE_REPLAY_QUIET_NOTES is set), so a sluiced.conf
 * replays as is; an unknown key is an error naming FILE:LINE and the
 * nearest key.
 *
 * The replay forces what an in-process replay cannot do: no TLS on either
 * leg (STARTTLS is never offered, upstream_tls none).
 */
#ifndef SP_POLICY_H
#define SP_POLICY_H

#include <stddef.h>

#include "sluice/limits.h"
#include "sluice/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_POLICY_LABEL_MAX 128
#define SP_ZONE_NAME_MAX 201
/* The replay keeps relay-control lists in the struct (it is copied by
   value); sluiced has no such bound. */
#define SP_RELAY_DOMAINS_MAX 32
#define SP_RELAY_NAME_MAX 256
#define SP_MYNETWORKS_MAX 16

typedef struct sp_policy {
  char label[SP_POLICY_LABEL_MAX]; /* file name or "key=value" */
  sl_policy policy;
  sl_limits limits;
  sl_dnsbl_zone zones[SL_DNSBL_ZONES_MAX];
  char zone_names[SL_DNSBL_ZONES_MAX][SP_ZONE_NAME_MAX];
  char hostname[256];
  char auth_mechanisms[128];
  /* relay_domains and mynetworks (policy.rcpt points here) */
  char relay_names[SP_RELAY_DOMAINS_MAX][SP_RELAY_NAME_MAX];
  const char *relay_ptrs[SP_RELAY_DOMAINS_MAX];
  sl_prefix mynetworks[SP_MYNETWORKS_MAX];
  int relay_any; /* "relay_domains = *" was given */
} sp_policy;

/* Defaults: the core's defaults (sl_policy_default, sl_limits_default) with
 * hostname "sluice.replay", then the replay's forced settings. */
void sp_policy_init(sp_policy *p);

/* Fixes internal pointers after a struct copy (zones, strings). */
void sp_policy_fixup(sp_policy *p);

/*
 * Applies one "key = value" (key and value already trimmed).  where names
 * the place for messages ("FILE:LINE" or "--set").  Returns 0, or -1 with
 * "WHERE: message" in err.  Accepts, besides the sluiced keys, the short
 * aliases greet_delay, reply_delay, jitter, stutter_bytes, stutter_interval,
 * data_rate and throttle (= data_rate) for the normal_* profile.
 */
int sp_policy_set(sp_policy *p, const char *key, const char *value,
                  const char *where, char *err, size_t errlen);

/* Reads a whole file into p (on top of what p holds).  0 or -1 + err. */
int sp_policy_load(sp_policy *p, const char *path, char *err, size_t errlen);

/* Checks with sl_policy_check/sl_limits_check, naming the wrong key.
 * 0 or -1 + err. */
int sp_policy_finish(sp_policy *p, char *err, size_t errlen);

/* sl_parse_duration: "5s" -> 5e9 ns; units ns, us, ms, s, m, h, d, bare
 * number = seconds; a decimal fraction is allowed ("2.5s").  0 or -1. */
int sp_parse_duration(const char *s, sl_duration *out);

#ifdef __cplusplus
}
#endif
#endif
