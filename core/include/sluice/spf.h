/*
 * sluice/spf.h: an SPF evaluator (RFC 7208) as a pure state machine.  It
 * never resolves anything: sl_spf_step() names the DNS question it needs
 * next (TXT, A, AAAA or MX of a name), the caller asks its resolver and
 * gives the answer back with sl_spf_answer(), and so on until a result.
 * The driver asks c-ares, as it does for DNSBL lookups.
 *
 * Covered: ip4, ip6, a, mx, include, exists, redirect, all (with their
 * qualifiers and CIDR lengths), the macros s l o d i h v p (digit and 'r'
 * transformers, delimiters, %% %_ %-), the limit of 10 terms that cause
 * DNS lookups, 10 MX names per mx, and 2 void lookups (4.6.4).  ptr is
 * counted as a lookup and never matches (RFC 7208 5.5: "SHOULD NOT be
 * published"); exp= is ignored (sluice only needs the result).
 */
#ifndef SLUICE_SPF_H
#define SLUICE_SPF_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_spf_result {
  SL_SPF_NONE = 0,
  SL_SPF_NEUTRAL,
  SL_SPF_PASS,
  SL_SPF_FAIL,
  SL_SPF_SOFTFAIL,
  SL_SPF_TEMPERROR,
  SL_SPF_PERMERROR
} sl_spf_result;

typedef enum sl_spf_qtype {
  SL_SPF_Q_TXT = 1,
  SL_SPF_Q_A,
  SL_SPF_Q_AAAA,
  SL_SPF_Q_MX
} sl_spf_qtype;

/* The outcome of one DNS question. */
typedef enum sl_spf_rcode {
  SL_SPF_DNS_OK = 0,   /* answers (possibly none: NODATA) */
  SL_SPF_DNS_NXDOMAIN, /* no such name */
  SL_SPF_DNS_ERROR     /* SERVFAIL, timeout: a temporary error */
} sl_spf_rcode;

#define SL_SPF_NAME_MAX 254    /* a domain name with its NUL */
#define SL_SPF_RECORD_MAX 1024 /* the TXT strings of one record, joined */
#define SL_SPF_DEPTH 11        /* the check plus 10 nested include/redirect */
#define SL_SPF_MX_MAX 10

typedef struct sl_spf_frame {
  char domain[SL_SPF_NAME_MAX];
  char record[SL_SPF_RECORD_MAX];
  uint16_t pos;        /* next term in record */
  uint8_t have_record; /* record fetched */
  uint8_t qual;        /* the mechanism being evaluated: its qualifier */
  uint8_t mech;        /* ... and kind (0: none) */
  uint8_t mx_n, mx_i;  /* mx: names and the one being asked about */
  uint8_t cidr4, cidr6;
  char redirect[SL_SPF_NAME_MAX]; /* "" if none */
  char mx[SL_SPF_MX_MAX][SL_SPF_NAME_MAX];
} sl_spf_frame;

typedef struct sl_spf {
  sl_addr ip;
  char sender[SL_SPF_NAME_MAX * 2]; /* local@domain */
  char helo[SL_SPF_NAME_MAX];
  uint8_t depth;   /* frames in use */
  uint8_t lookups; /* terms that caused DNS lookups */
  uint8_t voids;   /* lookups with no answer */
  uint8_t done;
  uint8_t waiting; /* a question is out */
  uint8_t result;  /* sl_spf_result when done */
  /* the question out */
  uint8_t qtype;
  char qname[SL_SPF_NAME_MAX];
  sl_spf_frame f[SL_SPF_DEPTH];
} sl_spf;

/*
 * Starts a check_host() of ip for sender (the MAIL FROM path; "" or no '@'
 * uses "postmaster@" helo as RFC 7208 2.4 says) and helo.  The domain is
 * the sender's.  Returns 0, or -1 when no domain can be made (the result
 * is then SL_SPF_NONE at once).
 */
int sl_spf_init(sl_spf *s, const sl_addr *ip, const char *sender,
                const char *helo);

/* Runs until a question is needed (returns 1: *type and *name, valid until
   the answer, say what) or the result is known (returns 0). */
int sl_spf_step(sl_spf *s, sl_spf_qtype *type, const char **name);

/* The answer to the question out.  TXT: strings (one record's strings
   already joined, one per record); A/AAAA: addrs; MX: names. */
void sl_spf_answer(sl_spf *s, sl_spf_rcode rc, const char *const *strs,
                   const sl_addr *addrs, size_t n);

sl_spf_result sl_spf_get_result(const sl_spf *s);
/* The domain SPF was checked for (the sender's, or the HELO's when the
   sender is null), whatever redirects were followed. */
const char *sl_spf_domain(const sl_spf *s);
const char *sl_spf_result_name(sl_spf_result r);

#ifdef __cplusplus
}
#endif
#endif
