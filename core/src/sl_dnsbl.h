/*
 * sl_dnsbl.h: DNSBL matching and the screening verdict at the greeting.
 * Pure: the relay asks the lookups and keeps the score; this decides what
 * an answer and a score mean under a policy (sluice/policy.h).
 */
#ifndef SL_DNSBL_H
#define SL_DNSBL_H

#include <stdint.h>

#include "sluice/policy.h"

/* 1 if the A answers (host order) list the client in zone z: an answer
   equals one of the zone's codes or, with no codes, is in 127.0.0.0/8 but
   not 127.255.255.x (the lists' "query refused" and error codes never list
   a client). */
int sl_dnsbl_listed(const sl_dnsbl_zone *z, const uint32_t *answers,
                    unsigned n);

/* 1 if a final score (every zone answered or timed out) is low enough to
   skip the pregreet verdict and the tarpit (allow_score). */
int sl_dnsbl_allowlisted(const sl_policy *p, int done, int32_t score);

/*
 * The action for the client once its greeting is due.  done: the DNSBL
 * score is final; pregreet: the client sent bytes before the greeting, to
 * be judged now, which adds pregreet_score to *score.  An allowlisted
 * client gets SL_ACT_CONTINUE and no pregreet judgement; otherwise the
 * strongest of dnsbl_action (score >= reject_score), pregreet_action, and
 * SL_ACT_TARPIT once a pregreet brought the score to tarpit_score.
 */
sl_action sl_dnsbl_verdict(const sl_policy *p, int done, int pregreet,
                           int32_t *score);

#endif
