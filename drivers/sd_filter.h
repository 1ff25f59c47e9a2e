/*
 * sd_filter.h: one session's content filters (sd_filter.c): the message
 * spool, the filter connections (rspamd, clamd, milter over TCP or unix
 * sockets in the worker's epoll loop) and the combined verdict.
 *
 * The relay gives each filtered transaction to sd_filters_tap() (its
 * filter_tap); the session adds its facts at MAIL (sd_filters_session),
 * asks the milters about each RCPT (sd_filters_rcpt, from its answer to
 * SL_REQ_RCPT_CHECK), and at SL_REQ_FILTER calls sd_filters_end() and gets
 * the combined verdict through the done callback (never from inside
 * sd_filters_end or the tap).  The filters get the body while it streams.  In
 * spool mode the session sends the changed message itself (sd_filters_inject)
 * before it gives an accept to the relay.
 */
#ifndef SD_FILTER_H
#define SD_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "sd_config.h"
#include "sd_loop.h"
#include "sluice/relay.h"

typedef struct sd_filters sd_filters;

/* The combined verdict on the message of SL_REQ_FILTER id: an sl_verdict
   (ACCEPT, CHANGE, TEMPFAIL or REJECT) and the deciding filter's text. */
typedef void (*sd_filters_done_fn)(void *ctx, uint32_t id, int verdict,
                                   const uint8_t *text, size_t len);

/* NULL if out of memory.  cfg must outlive it (the session's generation). */
sd_filters *sd_filters_new(sd_loop *loop, const sd_config *cfg,
                           sd_filters_done_fn done, void *ctx);
void sd_filters_free(sd_filters *f);

/* The relay's filter_tap. */
void sd_filters_tap(sd_filters *f, sl_filter_item item, const uint8_t *p,
                    size_t n);

/* Right after the SL_FI_MAIL tap: the session's facts for the filters of
   this transaction, copied (client_name, helo and session_id may be NULL;
   session_id is the session log's id, at most 23 characters).  Milters
   are connected now and told connect, HELO and MAIL. */
void sd_filters_session(sd_filters *f, const sl_addr *client,
                        const char *client_name, const char *helo,
                        const char *session_id);

/* A recipient's answer from the milters: code 0 passes; else 4xx/5xx and
   text "d.d.d words" (SL_CHECK_TEXT_MAX bytes, one line). */
typedef void (*sd_filters_rcpt_fn)(void *ctx, uint16_t code, const char *text);
/* Asks every milter of the current filtered transaction (whose MAIL
   named sender) about rcpt (both without angle brackets), as Postfix does at
   each RCPT: any reject wins, then any tempfail.  A milter that refused or
   tempfailed at connect, HELO or MAIL, or has failed (filter_default_action),
   answers every recipient so.  Returns 1 with the answer in *code and text
   (SL_CHECK_TEXT_MAX; also when nothing is to be asked: f NULL, no transaction
   filtered, no milter), or 0: cb is called once later from the loop, unless
   sd_filters_rcpt_cancel, release or free come first. */
int sd_filters_rcpt(sd_filters *f, const char *sender, const char *rcpt,
                    sd_filters_rcpt_fn cb, void *ctx, uint16_t *code,
                    char *text);
void sd_filters_rcpt_cancel(sd_filters *f);

/* The message is complete (SL_REQ_FILTER id): the filters get its end and
   have filter_timeout from now for their final answers. */
void sd_filters_end(sd_filters *f, uint32_t id);

/* Spool mode: while this is nonzero the message's content the relay
   writes upstream is held back by the session (acked unsent); the changed
   message goes instead, from sd_filters_inject(). */
int sd_filters_holding(const sd_filters *f);
/* After an accept in spool mode: the next bytes of the changed message,
   dot-stuffed, without the terminator (the relay's).  Returns the length
   (0: all given), -1 on a spool read error. */
long sd_filters_inject(sd_filters *f, uint8_t *buf, size_t cap);
/* The message's verdict has been acted on: drop the spool. */
void sd_filters_release(sd_filters *f);

/* The per-message verdicts for the log line, "name:verdict ..." with
   messages separated by "; ", or "" (valid until the next call). */
const char *sd_filters_log(const sd_filters *f);

#endif
