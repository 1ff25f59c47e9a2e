/*
 * sd_check.h: the driver's answer to the relay's SL_REQ_RCPT_CHECK: a
 * Postfix policy delegation server (policy_service) asked first, at the
 * stages policy_stages names (the request's check.stage: MAIL, RCPT or
 * DATA, sent as Postfix's protocol_state), then, at RCPT only,
 * greylisting (greylist) through the state backend (sd_state.h), so the
 * triplets are shared by every worker and, with Redis, every instance.
 *
 * The policy server gets one connection per query (TCP or unix socket,
 * non-blocking on the worker's loop, policy_timeout for all of it); a
 * server that fails, times out or answers what is not an action gets
 * policy_default_action, as Postfix's smtpd_policy_service_default_action.
 * OK from the server skips greylisting, a refusal is the answer.
 * Greylisting skips clients the relay marks allowlisted; a backend that
 * cannot answer (Redis down or over budget) lets the recipient pass.  With
 * greylist_spf and a resolver, the sender is checked with SPF first
 * (sluice/spf.h, questions asked through sd_dns, greylist_spf_timeout for
 * all of them): where it passes, the sender's domain replaces the /24 or
 * /64 as the client part.
 */
#ifndef SD_CHECK_H
#define SD_CHECK_H

#include <stdint.h>

#include "sd_config.h"
#include "sd_dns.h"
#include "sd_loop.h"
#include "sd_state.h"
#include "sluice/addr.h"
#include "sluice/relay.h"

typedef struct sd_check sd_check;

/* The answer: code 0 passes; else a 4xx/5xx with text ("d.d.d ..."). */
typedef void (*sd_check_cb)(void *ctx, uint16_t code, const char *text);

typedef struct sd_check_facts {
  const sl_addr *client;
  const char *client_name; /* verified name, or NULL: "unknown" */
  const char *instance;    /* the session id (Postfix's "instance") */
  const sl_request *req;   /* the SL_REQ_RCPT_CHECK */
} sd_check_facts;

/*
 * Starts the checks.  Returns SD_STATE_DONE with the answer in *code and
 * text (SL_CHECK_TEXT_MAX bytes; cb is never called), or SD_STATE_PENDING
 * with *out set: cb is called exactly once later from the loop, unless
 * sd_check_cancel(*out) comes first.  cfg must outlive the check.
 */
int sd_check_start(sd_loop *loop, sd_state *st, sd_dns *dns,
                   const sd_config *cfg, const sd_check_facts *f,
                   sd_check_cb cb, void *ctx, uint16_t *code, char *text,
                   sd_check **out);
/* The session is gone: nothing is called back, everything is freed. */
void sd_check_cancel(sd_check *k);

#endif
