/*
 * sluice/greylist.h: what a greylisting triplet is made of, as pure text
 * functions.  Storage and timers are the state backend's (drivers/
 * sd_state.h); this only decides which deliveries count as "the same".
 *
 * Senders with rotating address pools (large providers, mailing lists
 * with VERP or BATV) are delayed again on every retry when the key is the
 * client IP and the literal sender.  So the client part is the SPF-pass
 * domain when SPF passed, else the client's /24 (IPv4) or /64 (IPv6); the
 * sender loses its BATV tag and +extension and its domain's case.
 */
#ifndef SLUICE_GREYLIST_H
#define SLUICE_GREYLIST_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* postgrey's timers (seconds; passes) */
#define SL_GREY_DELAY_DEFAULT 300u
#define SL_GREY_RETRY_WINDOW_DEFAULT (2u * 86400u)
#define SL_GREY_MAX_AGE_DEFAULT (35u * 86400u)
#define SL_GREY_AUTO_ALLOW_DEFAULT 5u

/* The longest key these functions write, with its NUL (the state
   backend's SD_STATE_KEY_MAX). */
#define SL_GREY_KEY_MAX 512

/*
 * The normalised sender of a reverse-path's content (no angle brackets):
 * a leading BATV tag "prvs=TAG=" is removed, the local part is cut at its
 * first '+', the domain is lower-cased.  The null sender is "".
 * Writes a NUL-terminated string; returns its length, or -1 if cap is too
 * small.
 */
int sl_grey_sender(const uint8_t *path, size_t n, char *out, size_t cap);

/* The recipient as keyed: the path as given with its domain lower-cased.
   Same returns as sl_grey_sender. */
int sl_grey_rcpt(const uint8_t *path, size_t n, char *out, size_t cap);

/*
 * The client part: "spf:<domain>" (lower-cased) when spf_domain is not
 * NULL or "", else "net:a.b.c.0/24" or "net:<prefix>::/64" (an IPv4-mapped
 * IPv6 address counts as IPv4), "net:unknown" for SL_AF_UNSPEC.  Same
 * returns as sl_grey_sender.
 */
int sl_grey_client(const sl_addr *a, const char *spf_domain, char *out,
                   size_t cap);

/*
 * The client part "asn:<number>" from an origin-ASN TXT answer in Team
 * Cymru's format ("23028 | 216.90.108.0/24 | US | arin | 1998-09-25"; a
 * prefix announced by several ASes lists them space-separated, and the
 * first is taken).  The query name is sl_addr_dnsbl_name() of the client
 * under the zone (origin.asn.cymru.com, origin6.asn.cymru.com for IPv6).
 * Same returns as sl_grey_sender; -1 also for an answer without a number.
 */
int sl_grey_asn(const char *txt, char *out, size_t cap);

/* The triplet key "<client> <sender> <rcpt>" from the three parts above.
   Same returns as sl_grey_sender. */
int sl_grey_triplet(const char *client, const char *sender, const char *rcpt,
                    char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
