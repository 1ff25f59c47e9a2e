/*
 * sl_relay_filter.c: content filters in the relay (issue 11): what a
 * filtered transaction gives the driver's filter_tap, the terminator held
 * for SL_REQ_FILTER, and the verdict applied (sl_relay_filter_verdict).
 */
#include "sl_relay_int.h"
#include "sluice/filter.h"
#include "sluice/rcpt_policy.h"

/*
 * A filtered transaction's MAIL and RCPT lines, the upstream's RCPT replies
 * and its content as it goes upstream are given to the driver's filter_tap;
 * the terminator is held (fterm) and SL_REQ_FILTER asks for the verdict.
 * While it is held nothing else goes upstream (up_can_send), and a reply
 * the upstream sends meanwhile answers nothing it received (step_replies
 * fails the leg).  Accept: the terminator goes up and the upstream's reply
 * is relayed (guarantee 2).  Refusal: the leg is closed without it (as for
 * smuggling) and the end of data gets freply, one line re-framed by
 * sl_filter_reply (guarantee 5).  If the driver never answers, the
 * upstream_data_term_timeout running since the hold ends the wait. */

void sl__ftap(const sl_relay *r, sl_filter_item item, const uint8_t *p,
              size_t n) {
  if (r->fmsg && r->info.filter_tap)
    r->info.filter_tap(r->info.filter_ctx, item, p, n);
}

/* Is the transaction starting now filtered? */
int sl__filter_wanted(const sl_relay *r) {
  if (!(r->info.flags & SL_CONN_FILTER) || !r->info.filter_tap)
    return 0;
  uint32_t skip = r->info.filter_skip;
  if ((skip & SL_FSKIP_AUTHENTICATED) && r->authed)
    return 0;
  if ((skip & SL_FSKIP_MYNETWORKS) &&
      sl_rcpt_client_trusted(&r->pol->rcpt, &r->info.client))
    return 0;
  if ((skip & SL_FSKIP_DNSWL) && r->dnsbl_done &&
      r->stats.score <= r->pol->allow_score)
    return 0;
  return 1;
}

/* Content of a filtered message, as written upstream. */
void sl__filter_body(sl_relay *r, const uint8_t *p, size_t n) {
  if (!r->fmsg || !n)
    return;
  r->fbody = 1;
  sl__ftap(r, SL_FI_BODY, p, n);
}

/* The message whose terminator was just produced (not written) ends here:
   hold the terminator and ask for the verdict.  The step that calls this
   has ring room for one request. */
void sl__filter_hold(sl_relay *r, const uint8_t *term, size_t n,
                     uint64_t size) {
  memcpy(r->fterm, term, n);
  r->fterm_len = (uint8_t)n;
  r->fheld = 1;
  r->fbody = 0;
  r->fres = 0;
  r->fsize = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
  r->id_filter = sl__new_id(r, TAG_FILTER);
  sl__push_req(r, SL_REQ_FILTER, r->id_filter, 0);
}

void sl__filter_abort(sl_relay *r) {
  if (r->fbody || r->fheld)
    sl__ftap(r, SL_FI_ABORT, NULL, 0);
  r->fbody = r->fheld = 0;
  r->fterm_len = 0;
  r->fres = 0;
  r->id_filter = 0;
}

/* Applies the verdict taken by sl_relay_filter_verdict().  1: done (or
   nothing to do), 0: the pool has no room for the terminator yet. */
int sl__filter_apply(sl_relay *r) {
  sl_verdict v = (sl_verdict)(r->fres - 1);
  if (v == SL_VERDICT_ACCEPT || v == SL_VERDICT_CHANGE) {
    if (sl__buf_reserve(r, &r->uout, r->fterm_len))
      return 0;
    if (r->uout.len == 0)
      r->t_uout = r->now;
    sl__buf_put(&r->uout, r->fterm, r->fterm_len);
    r->fheld = 0;
    r->fres = 0;
    r->fterm_len = 0;
    r->id_filter = 0;
    /* the upstream's time to answer starts with the terminator */
    r->t_up = sl__tadd(r->now, r->lim->upstream_data_term_timeout);
    return 1;
  }
  r->fheld = 0; /* no ABORT: the driver gave this verdict */
  r->fres = 0;
  r->fterm_len = 0;
  r->id_filter = 0;
  sl__up_close(r);
  /* up_close made the held end's entry (the newest one the upstream owed:
     nothing was sent after it) a local 451; it is the filter's reply. */
  for (uint8_t i = r->q_len; i > 0; i--) {
    uint8_t *k = &r->q[(r->q_head + i - 1) % QUEUE_CAP];
    if (*k == Q_LOCAL + R_UPSTREAM_LOST) {
      *k = (uint8_t)(Q_LOCAL + (r->frep.len || r->fcode / 100 == 5
                                    ? R_FILTER
                                    : R_FILTER_TEMP));
      break;
    }
  }
  return 1;
}
