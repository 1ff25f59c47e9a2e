/*
 * sl_relay_screen.c: screening: DNSBL scoring and the pregreet verdict, the
 * tarpit (reply delays with jitter) and the data_rate throttle, a token
 * bucket.
 */
#include <string.h>

#include "sl_pcg.h"
#include "sl_relay_int.h"

static uint64_t burst(const sl_relay *r);

/* ---- screening ------------------------------------------------------- */

void sl__use_suspect(sl_relay *r, uint64_t reason) {
  if (r->prof == &r->pol->suspect)
    return;
  r->prof = &r->pol->suspect;
  r->stats.tarpitted = 1;
  sl__event(r, SL_EV_TARPIT, reason);
}

int sl__allowlisted(const sl_relay *r) {
  return r->dnsbl_done && r->stats.score <= r->pol->allow_score;
}

void sl__dnsbl_finish(sl_relay *r) {
  if (r->dnsbl_done)
    return;
  r->dnsbl_done = 1;
  r->dnsbl_pending = 0;
  if (r->pol->ndnsbl)
    sl__event(r, SL_EV_DNSBL_SCORE, (uint64_t)(int64_t)r->stats.score);
  if (r->stats.score >= r->pol->tarpit_score && !sl__allowlisted(r))
    sl__use_suspect(r, 1);
}

int sl__listed(const sl_dnsbl_zone *z, const sl_completion *c) {
  for (uint8_t i = 0; i < c->ndnsbl_answers && i < SL_DNSBL_ANSWERS_MAX; i++) {
    uint32_t a = c->dnsbl_answers[i];
    if (z->ncodes == 0) {
      /* 127.0.0.0/8, but not 127.255.255.x: the lists' "query refused"
         and error codes must never list a client. */
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

/* The action a verdict asks for, once the greeting is due. */
sl_action sl__verdict(sl_relay *r) {
  sl_action act = SL_ACT_CONTINUE;
  if (sl__allowlisted(r))
    return act;
  if (r->dnsbl_done && r->pol->ndnsbl && r->stats.score >= r->pol->reject_score)
    act = r->pol->dnsbl_action;
  if (r->pregreet && !r->pregreet_judged) {
    r->pregreet_judged = 1;
    sl__event(r, SL_EV_PREGREET, r->stats.pregreet_bytes);
    r->stats.score += r->pol->pregreet_score;
    if (r->pol->pregreet_action > act)
      act = r->pol->pregreet_action;
    if (r->pol->ndnsbl && r->stats.score >= r->pol->reject_score &&
        r->pol->dnsbl_action > act)
      act = r->pol->dnsbl_action;
    if (r->stats.score >= r->pol->tarpit_score && act < SL_ACT_TARPIT)
      act = SL_ACT_TARPIT;
  }
  return act;
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
    sl__push_req(r, SL_REQ_DNSBL_LOOKUP, sl__new_id(r, TAG_DNSBL + z), 0, z);
    progress = 1;
  }
  return progress;
}

/* ---- throttle ------------------------------------------------------------ */

/* Throttle (policy data_rate): a token bucket refilled from now. */
void sl__refill(sl_relay *r) {
  uint64_t rate = r->prof->data_rate;
  if (!rate)
    return;
  uint64_t cap = burst(r);
  if (r->now - r->t_tokens > 10 * SL_SEC)
    r->t_tokens = r->now - 10 * SL_SEC; /* the bucket is full long before */
  uint64_t add = rate * ((r->now - r->t_tokens) / SL_USEC) / 1000000u;
  if (!add)
    return;
  /* Only the time the new tokens stand for is used up, so fractions carry
     over to the next refill instead of being rounded away. */
  r->t_tokens += add * SL_SEC / rate;
  r->tokens += add;
  if (r->tokens >= cap) {
    r->tokens = cap;
    r->t_tokens = r->now;
  }
}

static uint64_t burst(const sl_relay *r) {
  uint64_t rate = r->prof->data_rate;
  return rate / 8 > 512 ? rate / 8 : 512;
}

/* A message starts with a full bucket: the throttle slows bulk data, not
   the first lines. */
void sl__throttle_start(sl_relay *r) {
  if (r->prof->data_rate) {
    r->tokens = burst(r);
    r->t_tokens = r->now;
  }
}

int sl__throttled(const sl_relay *r) {
  return r->prof->data_rate &&
         (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT);
}
