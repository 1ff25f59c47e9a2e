/*
 * sl_relay_screen.c: screening applied to the session: the DNSBL lookups,
 * score and greeting verdict (their rules are sl_dnsbl.h), the tarpit
 * (reply delays with jitter) and when the data_rate throttle applies (its
 * token bucket is sl_tbucket.h).
 */
#include <string.h>

#include "sl_dnsbl.h"
#include "sl_pcg.h"
#include "sl_relay_int.h"

/* ---- screening ------------------------------------------------------- */

void sl__use_suspect(sl_relay *r, sl_tarpit_reason reason) {
  if (r->prof == &r->pol->suspect)
    return;
  r->prof = &r->pol->suspect;
  r->stats.tarpitted = 1;
  sl__event(r, &(sl_event){.kind = SL_EV_TARPIT, .tarpit.reason = reason});
}

int sl__allowlisted(const sl_relay *r) {
  if (r->info.flags & SL_CONN_SCREEN_PASSED)
    return 1;
  return sl_dnsbl_allowlisted(r->pol, r->dnsbl_done, r->stats.score);
}

void sl__dnsbl_finish(sl_relay *r) {
  if (r->dnsbl_done)
    return;
  r->dnsbl_done = 1;
  r->dnsbl_pending = 0;
  if (r->pol->ndnsbl)
    sl__event(r, &(sl_event){.kind = SL_EV_DNSBL_SCORE,
                             .dnsbl.score = r->stats.score});
  if (r->stats.score >= r->pol->tarpit_score && !sl__allowlisted(r))
    sl__use_suspect(r, SL_TARPIT_SCORE);
}

/* The action a verdict asks for, once the greeting is due; a pregreet is
   judged (and reported) once. */
sl_action sl__verdict(sl_relay *r) {
  int judge = r->pregreet && !r->pregreet_judged && !sl__allowlisted(r);
  if (judge) {
    r->pregreet_judged = 1;
    sl__event(r, &(sl_event){.kind = SL_EV_PREGREET,
                             .pregreet.bytes = r->stats.pregreet_bytes});
  }
  return sl_dnsbl_verdict(r->pol, r->dnsbl_done, judge, &r->stats.score);
}

/* ---- tarpit -------------------------------------------------------------- */

sl_duration sl__jitter(sl_relay *r) {
  if (!r->prof->jitter)
    return 0;
  sl_pcg32 g = {r->rng, (RNG_STREAM << 1u) | 1u};
  sl_duration d = sl_pcg32_bounded64(&g, r->prof->jitter);
  r->rng = g.state;
  return d;
}

/* Tarpit gate for the head reply: 1 when it may be sent now. */
int sl__released(sl_relay *r, sl_duration delay) {
  if (delay == 0)
    return 1;
  if (r->t_release == SL_TSTAMP_NONE) {
    sl_duration d = delay + sl__jitter(r);
    r->t_release = sl__tadd(r->now, d);
    r->stats.delay_total += d; /* counted when the hold is decided */
  }
  return r->now >= r->t_release;
}

int sl__step_dnsbl(sl_relay *r) {
  int progress = 0;
  if (!r->dnsbl_done && r->pol->ndnsbl && r->dnsbl_asked == r->pol->ndnsbl &&
      !r->dnsbl_pending && sl__ring_free(r) >= STEP_ROOM) {
    sl__dnsbl_finish(r); /* every zone answered */
    progress = 1;
  }
  while (!r->dnsbl_done && r->cl != CL_PROXY &&
         r->dnsbl_asked < r->pol->ndnsbl && sl__ring_free(r) >= STEP_ROOM) {
    uint8_t z = r->dnsbl_asked++;
    r->dnsbl_pending = (uint16_t)(r->dnsbl_pending | (1u << z));
    sl__push_req(r, SL_REQ_DNSBL_LOOKUP, sl__new_id(r, TAG_DNSBL + z), z);
    progress = 1;
  }
  return progress;
}

/* ---- throttle ------------------------------------------------------------ */

/* The data_rate throttle applies to message data only. */
int sl__throttled(const sl_relay *r) {
  return r->prof->data_rate &&
         (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT);
}
