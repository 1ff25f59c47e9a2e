/*
 * sluice/filter.h: what the content-filter codecs have in common.
 *
 * A content filter (rspamd, clamd, a milter) gives a verdict on one message.
 * The codecs (sluice/clamd.h, sluice/rspamd.h, sluice/milter.h) turn each
 * protocol's answer into an sl_verdict; this module combines the verdicts of
 * several filters into one decision, and turns a filter's reply text into a
 * reply sluice can give its client without letting the filter frame SMTP
 * (guarantee 5: no reply injection, here through filter replies).
 *
 * Everything here is pure: no I/O, no allocation; the caller owns every
 * buffer, and every output has a stated bound.
 */
#ifndef SLUICE_FILTER_H
#define SLUICE_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A byte string that is not NUL-terminated; p may be NULL when len is 0. */
typedef struct sl_bytes {
  const uint8_t *p;
  size_t len;
} sl_bytes;

/* One filter's decision on one message (or one envelope step). */
typedef enum sl_verdict {
  SL_VERDICT_ACCEPT = 0,   /* relay the message as it is */
  SL_VERDICT_CHANGE = 1,   /* relay it with the filter's header changes
                              (rspamd "add header", milter header actions):
                              needs spool mode */
  SL_VERDICT_DISCARD = 2,  /* the filter wants the message dropped with a
                              success reply; see sl_discard_as */
  SL_VERDICT_TEMPFAIL = 3, /* 4xx to the client */
  SL_VERDICT_REJECT = 4    /* 5xx to the client */
} sl_verdict;

/* The lower-case name ("accept", "change", "discard", "tempfail",
   "reject") for logs and metrics; "unknown" for other values. */
const char *sl_verdict_name(sl_verdict v);

/*
 * What a DISCARD becomes.  sluice never says 250 to the end of data unless
 * the upstream said it (guarantee 2), and a discarded message has not been
 * given to the upstream, so a discard cannot be honoured as the filter
 * means it.  The default refuses the message (the sender learns of it, no
 * mail is lost silently); TAG delivers it with a header the caller adds, so
 * the receiving side can file it away.
 */
typedef enum sl_discard_as {
  SL_DISCARD_AS_REJECT = 0, /* default: becomes REJECT */
  SL_DISCARD_AS_TAG = 1     /* becomes CHANGE, with discard_tagged set */
} sl_discard_as;

/* The outcome of several filters' verdicts. */
typedef struct sl_verdict_sum {
  sl_verdict verdict; /* ACCEPT, CHANGE, TEMPFAIL or REJECT, never DISCARD */
  /* Index of the first filter whose verdict decided (its reply is the one
     to give), or SIZE_MAX when the sum is ACCEPT or CHANGE. */
  size_t decider;
  int discard_tagged; /* 1 if a DISCARD became CHANGE (SL_DISCARD_AS_TAG):
                         the caller adds its tag header */
} sl_verdict_sum;

/*
 * Combines n verdicts: any REJECT wins, then any TEMPFAIL, then CHANGE if
 * any filter changes the message, else ACCEPT.  A DISCARD first becomes
 * what `as` says.  An out-of-range verdict counts as TEMPFAIL (a filter
 * that answered something sluice does not know has failed).  n == 0 gives
 * ACCEPT.  Returns SL_OK, or SL_ERR_INVALID_ARGUMENT for a NULL sum or a
 * NULL v with n > 0 (the sum is then zeroed).
 */
int sl_verdict_combine(const sl_verdict *v, size_t n, sl_discard_as as,
                       sl_verdict_sum *sum);

/* The longest reply sl_filter_reply writes, CRLF included: the SMTP reply
   line limit of RFC 5321 4.5.3.1.5. */
#define SL_FILTER_REPLY_MAX 512

/*
 * Writes the reply sluice gives its client for a filter's TEMPFAIL or
 * REJECT: exactly one line "DDD X.Y.Z text" CRLF, at most
 * SL_FILTER_REPLY_MAX bytes.
 *
 * `text` is whatever the filter said: a full SMTP reply, possibly
 * multi-line ("550-5.7.1 a" CRLF "550 5.7.1 b", a milter SMFIR_REPLYCODE),
 * a bare message (rspamd's messages.smtp_message, a clamd virus name), or
 * nothing (len 0).  What is kept of it:
 *  - a leading three-digit code is used only if its class matches the
 *    verdict (4xx for TEMPFAIL, 5xx for REJECT), its second digit is 0..5,
 *    and it is not 421 (sluice keeps the session open, so 421 would be a
 *    lie; it becomes 451); otherwise 451 / 550 is used;
 *  - an enhanced status code (RFC 3463 "c.sss.ddd") after a code of the
 *    verdict's class is kept if its class is the same (even when the
 *    code itself is replaced); otherwise "4.7.1" / "5.7.1" is used;
 *  - the text of every line (after its code, '-' or ' ' and any enhanced
 *    code of class 2, 4 or 5) is joined with one space; CR, LF, every other
 * control byte, DEL and bytes >= 0x80 become '?' (runs of CR/LF between lines
 *    become the one space); leading and trailing blanks are dropped; the
 *    text is cut to fit the line limit;
 *  - empty text becomes a default ("Message rejected by content filter" /
 *    "Message deferred by content filter, try again later").
 * So no byte of the filter can end the line or start another reply.
 * v must be SL_VERDICT_TEMPFAIL or SL_VERDICT_REJECT (map DISCARD with
 * sl_verdict_combine first).  out must hold SL_FILTER_REPLY_MAX bytes.
 * Returns the length written (> 0), or SL_ERR_INVALID_ARGUMENT (bad v, NULL
 * out, NULL text with len > 0); out is not written then.
 */
int sl_filter_reply(uint8_t *out, sl_verdict v, const uint8_t *text,
                    size_t len);

/* Longest header name a filter may set (RFC 5322 has no limit; 998 is the
   line limit, names are far shorter in practice). */
#define SL_FILTER_HEADER_NAME_MAX 128
/* Longest header a filter may set, all folded lines and CRLFs included. */
#define SL_FILTER_HEADER_MAX 8192

/*
 * Checks a header a filter asks to add or change, as the caller will write
 * it: name is 1..SL_FILTER_HEADER_NAME_MAX printable ASCII bytes other than
 * ':' (RFC 5322 2.2 ftext); value has no NUL, every CR is followed by LF,
 * every line break (LF or CRLF) is followed by a space or TAB (a folded
 * line, never a new header or the end of the headers), and it does not end
 * in a line break.  Returns SL_OK or SL_ERR_MALFORMED (SL_ERR_INVALID_ARGUMENT
 * for NULL with a non-zero length).
 */
int sl_filter_header_check(sl_bytes name, sl_bytes value);

/*
 * Writes "name: value" CRLF for a header that passed sl_filter_header_check,
 * with every line break of value written as CRLF.  A value that already
 * starts with a space or TAB gets no extra space (milter SMFIP_HDR_LEADSPC
 * style).  Returns the length written (<= SL_FILTER_HEADER_MAX), or
 * SL_ERR_MALFORMED (the header fails the check), SL_ERR_NOBUF (cap too
 * small or the header longer than SL_FILTER_HEADER_MAX; nothing useful is
 * written), SL_ERR_INVALID_ARGUMENT (NULL out).
 */
long sl_filter_header_put(uint8_t *out, size_t cap, sl_bytes name,
                          sl_bytes value);

#ifdef __cplusplus
}
#endif
#endif
