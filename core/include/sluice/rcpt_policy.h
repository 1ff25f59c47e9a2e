/*
 * sluice/rcpt_policy.h: relay control, which recipients sluice passes on.
 *
 * An upstream that trusts sluice's address (Postfix's permit_mynetworks
 * with sluice inside mynetworks) relays anything sluice gives it, so sluice
 * must do the relay control that upstream skips (../shared/SECURITY.md,
 * "Open relay"; RFC 5321 7.9).  The model is Postfix's relay_domains with
 * smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
 * reject_unauth_destination, and allow_untrusted_routing = no.
 *
 * Matching (one rule, no parent_domain_matches_subdomains switch):
 *   "example.com"   that domain only;
 *   ".example.com"  every subdomain of example.com, not example.com itself
 *                   (list both to get both);
 *   "[192.0.2.1]"   that address literal, as written (address literals are
 *                   otherwise refused);
 * compared without regard to ASCII case and to one trailing dot.  IDN
 * domains match as written: an A-label ("xn--...") matches its A-label
 * entry, a U-label (allowed with SMTPUTF8) its U-label entry; sluice does
 * not convert between them (list both forms if clients use both).
 *
 * Routing in the address is refused for untrusted clients unless a flag
 * allows it: source routes "<@a.test:u@b.test>" (RFC 5321 3.6.1 allows a
 * server to decline them), the percent hack "u%b.test@a.test" (also a
 * quoted local part holding '@': "\"u@b.test\"@a.test") and bang paths
 * "b.test!u@a.test".  These name a second destination the upstream may
 * route to, so the domain check alone would not stop them.
 */
#ifndef SLUICE_RCPT_POLICY_H
#define SLUICE_RCPT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"

#ifdef __cplusplus
extern "C" {
#endif

enum sl_rcpt_flag {
  /* Every domain is a relay domain ("relay_domains = *"): for an upstream
     that does its own relay control with the client's real identity
     (XCLIENT or PROXY) and does not trust sluice's address. */
  SL_RCPT_ANY_DOMAIN = 1u << 0,
  /* With a source route every hop and the final domain must be relay
     domains. */
  SL_RCPT_ALLOW_SOURCE_ROUTE = 1u << 1,
  SL_RCPT_ALLOW_PERCENT_HACK = 1u << 2,
  SL_RCPT_ALLOW_BANG_PATH = 1u << 3,
  SL_RCPT_FLAGS_ALL = (1u << 4) - 1
};

/* A client network: the first bits of addr (Postfix's mynetworks). */
typedef struct sl_prefix {
  sl_addr addr; /* family SL_AF_INET or SL_AF_INET6; port ignored */
  uint8_t bits; /* <= 32 or <= 128 */
} sl_prefix;

typedef struct sl_rcpt_policy {
  const char *const *domains; /* relay domains, NUL-terminated, as above */
  uint32_t ndomains;
  uint32_t flags;              /* sl_rcpt_flag bits */
  const sl_prefix *mynetworks; /* trusted clients: no relay control */
  uint32_t nmynetworks;
} sl_rcpt_policy;

typedef enum sl_rcpt_verdict {
  SL_RCPT_OK = 0,
  SL_RCPT_DENIED,       /* not a relay domain: 554 5.7.1 Relay access denied */
  SL_RCPT_UNCONFIGURED, /* no relay domain configured at all (and not
                           SL_RCPT_ANY_DOMAIN): every untrusted recipient is
                           refused, with 454 4.7.1 so that mail waits while
                           the operator fixes the configuration (Postfix's
                           defer_unauth_destination) */
  SL_RCPT_SOURCE_ROUTE, /* 554 5.7.1 */
  SL_RCPT_PERCENT_HACK, /* 554 5.7.1 */
  SL_RCPT_BANG_PATH     /* 554 5.7.1 */
} sl_rcpt_verdict;

/* The default: no relay domain, no flag, no network (every untrusted
   recipient refused, SL_RCPT_UNCONFIGURED). */
void sl_rcpt_policy_default(sl_rcpt_policy *p);

/* 0, or SL_ERR_INVALID_ARGUMENT for unknown flags, a NULL list with a
   count, an empty or NULL entry, an entry with a space, a control byte,
   an '@' or bytes that are not UTF-8, a prefix of an unknown family or
   too many bits. */
int sl_rcpt_policy_check(const sl_rcpt_policy *p);

/* Nonzero if client lies in one of p->mynetworks (an IPv4-mapped IPv6
   address also matches IPv4 prefixes). */
int sl_rcpt_client_trusted(const sl_rcpt_policy *p, const sl_addr *client);

/* Nonzero if the domain dom[0..n) (no brackets removed) is a relay domain
   by the rules above (SL_RCPT_ANY_DOMAIN matches every domain). */
int sl_rcpt_domain_allowed(const sl_rcpt_policy *p, const uint8_t *dom,
                           size_t n);

/*
 * Judges one recipient path, the bytes between '<' and '>' of a RCPT that
 * already passed the syntax checks (RFC 5321 4.1.2).  trusted: the client
 * authenticated (AUTH succeeded) or sl_rcpt_client_trusted(); a trusted
 * client is never refused (Postfix's permit_sasl_authenticated and
 * permit_mynetworks come first).  "postmaster" without a domain is always
 * accepted (RFC 5321 4.5.1).  Routing is judged before the domain.
 */
sl_rcpt_verdict sl_rcpt_check(const sl_rcpt_policy *p, const uint8_t *path,
                              size_t n, int trusted);

/* A short name for logs: "ok", "denied", "unconfigured", "source_route",
   "percent_hack", "bang_path". */
const char *sl_rcpt_verdict_name(sl_rcpt_verdict v);

#ifdef __cplusplus
}
#endif
#endif
