/*
 * sp_policy.c: sluiced-format policy files for the replay; see sp_policy.h.
 * The grammar is sluice_config's (one key table for both drivers): each
 * load or set runs on a scratch sl_config seeded from the replay's policy,
 * and the keys the core uses are copied back.  Daemon-only keys are parsed
 * and validated there and then dropped with the scratch config.
 */
#include "sp_policy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"

/* Short names for sweeps (--sweep greet_delay=0,2,6): the normal profile. */
static const struct {
  const char *alias, *key;
} aliases[] = {
    {"greet_delay", "normal_greet_delay"},
    {"reply_delay", "normal_reply_delay"},
    {"jitter", "normal_jitter"},
    {"stutter_bytes", "normal_stutter_bytes"},
    {"stutter_interval", "normal_stutter_interval"},
    {"data_rate", "normal_data_rate"},
    {"throttle", "normal_data_rate"},
};

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

void sp_policy_init(sp_policy *p) {
  memset(p, 0, sizeof *p);
  sl_policy_default(&p->policy);
  sl_limits_default(&p->limits);
  snprintf(p->hostname, sizeof p->hostname, "sluice.replay");
  snprintf(p->label, sizeof p->label, "default");
  /* The replay's upstream is simulated and accepts every recipient, and
     captured sessions name whatever domains they named: relay control is
     not what a replay measures, so every domain passes unless the policy
     sets relay_domains (sluiced's default refuses them all). */
  p->policy.rcpt.flags = SL_RCPT_ANY_DOMAIN;
  sp_policy_fixup(p);
}

int sp_parse_duration(const char *s, sl_duration *out) {
  return sl_parse_duration(s, out);
}

/* A scratch config holding p's policy, limits, names and zones. */
static sl_config *to_config(const sp_policy *p, char *err, size_t errlen) {
  sl_config *c = sl_config_new();
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->limits = p->limits;
  c->policy = p->policy;
  free(c->hostname);
  c->hostname = strdup(p->hostname);
  c->auth_mechanisms =
      p->auth_mechanisms[0] ? strdup(p->auth_mechanisms) : NULL;
  for (unsigned i = 0; i < p->policy.ndnsbl; i++) {
    c->zones[i] = p->zones[i];
    c->zone_names[i] = strdup(p->zone_names[i]);
    c->zones[i].zone = c->zone_names[i];
    if (c->zone_names[i] == NULL)
      c->policy.ndnsbl = 0;
  }
  if (c->hostname == NULL || (p->auth_mechanisms[0] && !c->auth_mechanisms)) {
    sl_config_unref(c);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->policy.hostname = c->hostname;
  c->policy.auth_mechanisms = c->auth_mechanisms;
  c->policy.dnsbl = c->zones;
  /* relay control: the lists are the config's own (heap) copies */
  c->policy.rcpt.domains = NULL;
  c->policy.rcpt.ndomains = 0;
  c->policy.rcpt.mynetworks = NULL;
  c->policy.rcpt.nmynetworks = 0;
  c->relay_any = p->relay_any;
  if (p->policy.rcpt.ndomains || p->policy.rcpt.nmynetworks) {
    c->relay_domains = calloc(SP_RELAY_DOMAINS_MAX, sizeof *c->relay_domains);
    c->mynetworks = calloc(SP_MYNETWORKS_MAX, sizeof *c->mynetworks);
    if (c->relay_domains == NULL || c->mynetworks == NULL) {
      sl_config_unref(c);
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
    for (unsigned i = 0; i < p->policy.rcpt.ndomains; i++) {
      c->relay_domains[i] = strdup(p->relay_names[i]);
      if (c->relay_domains[i] == NULL)
        break;
      c->nrelay_domains++;
    }
    for (unsigned i = 0; i < p->policy.rcpt.nmynetworks; i++)
      c->mynetworks[c->nmynetworks++] = p->mynetworks[i];
    c->policy.rcpt.domains = (const char *const *)c->relay_domains;
    c->policy.rcpt.ndomains = (uint32_t)c->nrelay_domains;
    c->policy.rcpt.mynetworks = c->mynetworks;
    c->policy.rcpt.nmynetworks = (uint32_t)c->nmynetworks;
  }
  return c;
}

/* Copies the keys the replay applies back into p (fixed-size fields). */
static int from_config(sp_policy *p, const sl_config *c, const char *where,
                       char *err, size_t errlen) {
  const char *host = c->hostname ? c->hostname : "";
  const char *auth = c->auth_mechanisms ? c->auth_mechanisms : "";
  if (strlen(host) >= sizeof p->hostname) {
    snprintf(err, errlen, "%s: hostname: too long", where);
    return -1;
  }
  if (strlen(auth) >= sizeof p->auth_mechanisms) {
    snprintf(err, errlen, "%s: auth_mechanisms: too long", where);
    return -1;
  }
  if (c->nrelay_domains > SP_RELAY_DOMAINS_MAX ||
      c->nmynetworks > SP_MYNETWORKS_MAX) {
    snprintf(err, errlen,
             "%s: relay_domains/mynetworks: at most %d domains and %d "
             "networks in the replay",
             where, SP_RELAY_DOMAINS_MAX, SP_MYNETWORKS_MAX);
    return -1;
  }
  for (size_t i = 0; i < c->nrelay_domains; i++)
    if (strlen(c->relay_domains[i]) >= SP_RELAY_NAME_MAX) {
      snprintf(err, errlen, "%s: relay_domains: \"%s\" too long", where,
               c->relay_domains[i]);
      return -1;
    }
  p->limits = c->limits;
  p->policy = c->policy;
  for (size_t i = 0; i < c->nrelay_domains; i++)
    snprintf(p->relay_names[i], SP_RELAY_NAME_MAX, "%s", c->relay_domains[i]);
  for (size_t i = 0; i < c->nmynetworks; i++)
    p->mynetworks[i] = c->mynetworks[i];
  p->relay_any = c->relay_any;
  snprintf(p->hostname, sizeof p->hostname, "%s", host);
  snprintf(p->auth_mechanisms, sizeof p->auth_mechanisms, "%s", auth);
  for (unsigned i = 0; i < c->policy.ndnsbl; i++) {
    p->zones[i] = c->zones[i];
    /* The grammar keeps zone names to 200 octets, so they fit. */
    snprintf(p->zone_names[i], SP_ZONE_NAME_MAX, "%s", c->zone_names[i]);
  }
  sp_policy_fixup(p);
  return 0;
}

int sp_policy_set(sp_policy *p, const char *key, const char *value,
                  const char *where, char *err, size_t errlen) {
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (!strcmp(key, aliases[i].alias))
      key = aliases[i].key;
  char e[512];
  sl_config *c = to_config(p, e, sizeof e);
  if (c == NULL) {
    snprintf(err, errlen, "%s: %s", where, e);
    return -1;
  }
  int rc = sl_config_set(c, key, value, where, 0, err, errlen);
  if (rc == 0)
    rc = from_config(p, c, where, err, errlen);
  sl_config_unref(c);
  return rc;
}

/* The daemon-only keys a file set, for the note on stderr. */
static void note_daemon_keys(const sl_config *c, const char *path) {
  size_t n;
  const sl_config_key *k = sl_config_keys(&n);
  char list[512] = "";
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(k[i].flags & SL_KEY_DAEMON) || c->key_line[i] == 0)
      continue;
    size_t used = strlen(list);
    if (used + strlen(k[i].name) + 8 < sizeof list)
      snprintf(list + used, sizeof list - used, "%s%s", count ? ", " : "",
               k[i].name);
    else if (used + 6 < sizeof list && strcmp(list + used - 3, "...") != 0)
      snprintf(list + used, sizeof list - used, ", ...");
    count++;
  }
  if (count && getenv("SLUICE_REPLAY_QUIET_NOTES") == NULL)
    fprintf(stderr,
            "sluice-replay: note: %s: %d daemon-only key%s ignored by the "
            "replay: %s\n",
            path, count, count == 1 ? "" : "s", list);
}

int sp_policy_load(sp_policy *p, const char *path, char *err, size_t errlen) {
  sl_config *c = to_config(p, err, errlen);
  if (c == NULL)
    return -1;
  int rc = sl_config_load(c, path, err, errlen);
  if (rc == 0)
    rc = from_config(p, c, path, err, errlen);
  if (rc == 0) {
    note_daemon_keys(c, path);
    const char *b = strrchr(path, '/');
    snprintf(p->label, sizeof p->label, "%s", b ? b + 1 : path);
  }
  sl_config_unref(c);
  return rc;
}

int sp_policy_finish(sp_policy *p, char *err, size_t errlen) {
  /* What an in-process replay cannot do. */
  p->policy.features &= ~(uint32_t)SL_FEAT_STARTTLS;
  p->policy.upstream_tls = SL_UPTLS_NONE;
  sp_policy_fixup(p);
  return sl_config_check_core(&p->policy, &p->limits, p->label, err, errlen);
}
