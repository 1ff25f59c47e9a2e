/* sl_dnsbl.c: DNSBL matching and the greeting verdict; see sl_dnsbl.h. */
#include "sl_dnsbl.h"

int sl_dnsbl_listed(const sl_dnsbl_zone *z, const uint32_t *answers,
                    unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    uint32_t a = answers[i];
    if (z->ncodes == 0) {
      if ((a >> 24) == 127 && (a >> 8) != 0x7fffffu)
        return 1;
      continue;
    }
    for (uint8_t k = 0; k < z->ncodes && k < SL_DNSBL_CODES_MAX; k++)
      if (a == z->codes[k])
        return 1;
  }
  return 0;
}

int sl_dnsbl_allowlisted(const sl_policy *p, int done, int32_t score) {
  return done && score <= p->allow_score;
}

sl_action sl_dnsbl_verdict(const sl_policy *p, int done, int pregreet,
                           int32_t *score) {
  sl_action act = SL_ACT_CONTINUE;
  if (sl_dnsbl_allowlisted(p, done, *score))
    return act;
  if (done && p->ndnsbl && *score >= p->reject_score)
    act = p->dnsbl_action;
  if (pregreet) {
    *score += p->pregreet_score;
    if (p->pregreet_action > act)
      act = p->pregreet_action;
    if (p->ndnsbl && *score >= p->reject_score && p->dnsbl_action > act)
      act = p->dnsbl_action;
    if (*score >= p->tarpit_score && act < SL_ACT_TARPIT)
      act = SL_ACT_TARPIT;
  }
  return act;
}
