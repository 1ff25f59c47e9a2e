/*
 * sl_oracle.h: the protocol oracle, an independent reference model of the
 * guarantees of DESIGN.md section 2, checked after every step of a driver.
 *
 * The oracle is told everything that crosses the relay's boundary (bytes in
 * and out on both legs, requests, the driver's answers) and keeps its own
 * small model of both SMTP streams.  It never looks inside the relay: it is
 * written from the RFCs and the guarantees, not from sl_relay.c, so a bug in
 * the relay is not mirrored here.  Where the model cannot know what a correct
 * relay would do (an end of data made ambiguous by a smuggling byte), it only
 * allows what is safe (one reply, then closing).
 *
 * Test-only code: it allocates with malloc and aborts on out-of-memory.
 *
 * Guarantees checked (numbers as in DESIGN.md 3):
 *  (1) client output is a sequence of replies, never more than the client's
 *      commands (command lines, DATA bodies after a 354, BDAT chunks, AUTH
 *      continuations after 334), matched in order; unsolicited 421, 221,
 *      554, 521 are allowed once, and nothing may follow them;
 *  (2) 2xx replies to end-of-data / BDAT LAST seen by the client never
 *      outnumber the upstream's 2xx to terminators / BDAT LAST received
 *      after they were sent (per session); a message the client sent with a
 *      framing violation is never reported accepted; an AUTH user named
 *      to the filter tap or a check is the one of the exchange the upstream
 *      answered 235, and once named stays named until STARTTLS; no new
 *      upstream connection after that 235 (the next leg would not be
 *      authenticated);
 *  (3) upstream bytes are well-formed SMTP (see sl_oracle.c); a BDAT
 *      transaction may reach it as one DATA body, committed only once the
 *      client's LAST chunk is in and clean;
 *  (4) after a 220 to the client's STARTTLS, bytes sent before the handshake
 *      completed are never answered;
 *  (5) every client output line is a valid reply line;
 *  (6) the relay's memory (state + borrowed pool buffers) stays within
 *      sl_relay_memory_bound(), when a pool is being watched;
 *  (7) handle_expiry at a due deadline makes progress or moves the deadline
 *      past now; after the relay asked to close the client, SL_CLOSED comes
 *      within the sum of the configured timeouts;
 *  (8) the upstream is a strict RFC 5321 receiver whose capability set is
 *      what its own last accepted EHLO offered (learned from the upstream
 *      bytes; none before an EHLO, after HELO, XCLIENT or a TLS switch; a
 *      refused EHLO or HELO changes nothing, RFC 5321 4.1.4):
 *      no command (BDAT, STARTTLS, AUTH, XCLIENT, XFORWARD) and no MAIL/RCPT
 *      parameter (SIZE, BODY=8BITMIME/7BIT/BINARYMIME, SMTPUTF8, RET, ENVID,
 *      NOTIFY, ORCPT, AUTH; unknown ones) it did not offer, no 8-bit path
 *      without SMTPUTF8 on the transaction; no second command in flight
 *      without PIPELINING, none after a command that ends a group (RFC 2920
 *      3.1) before its reply; and nothing sluice meant as content that the
 *      receiver reads as a command: bytes after DATA before its 354, a line
 *      in command state that is no command sluice sends (a body after a
 *      refused DATA, content after end-of-data), body or chunk bytes after
 *      the receiver answered in the middle of them;
 *  (9) progress (sl_oracle_progress): when the driver has drained the relay
 *      and is about to move the clock, every consumed command is answered
 *      unless the tarpit policy in force delays it, a request is pending,
 *      the upstream owes a reply (or is half-way through one), the client
 *      is not reading, or the pool refused a buffer;
 *  (10) completeness (sl_oracle_stats): request ids are unique, SESSION_END
 *      comes once and last and before SL_CLOSED, and the statistics equal
 *      the bytes that crossed the boundary and the events (MESSAGE by code
 *      class and last code, STARTTLS_INJECTION bytes, the TARPIT switch);
 *      with RCPT checks on, every RCPT sent upstream matches a check asked
 *      about that recipient since the last match.
 */
#ifndef SL_ORACLE_H
#define SL_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/bufpool.h"
#include "sluice/relay.h"

typedef struct sl_oracle sl_oracle;

/* The three structures are copied; policy strings must outlive the oracle. */
sl_oracle *sl_oracle_new(const sl_limits *, const sl_policy *,
                         const sl_conn_info *);
void sl_oracle_free(sl_oracle *);

/* Bytes the relay accepted from the client / emitted to it, in order. */
void sl_oracle_client_in(sl_oracle *, const uint8_t *, size_t);
void sl_oracle_client_out(sl_oracle *, const uint8_t *, size_t);
/* Bytes the relay accepted from the upstream / emitted to it. */
void sl_oracle_upstream_in(sl_oracle *, const uint8_t *, size_t);
void sl_oracle_upstream_out(sl_oracle *, const uint8_t *, size_t);
/* Every request the relay issued, in order. */
void sl_oracle_request(sl_oracle *, const sl_request *);
/* The driver's answer to a request, told BEFORE sl_relay_complete(): a
   connect OK or a TLS switch starts a fresh stream on that leg. */
void sl_oracle_completed(sl_oracle *, uint32_t request_type, sl_status);
/* The driver gave the verdict (an sl_verdict) on the message of the last
   SL_REQ_FILTER and the relay took it.  From the request to the verdict no
   terminator may go upstream; after a refusal (TEMPFAIL, REJECT, DISCARD)
   none for that message at all (guarantee 2: the upstream never commits
   what the filters refused), and the client's reply to its end of data is
   of the refusal's class, 4xx or 5xx (guarantee 5: the filter's text is
   re-framed, one reply in its place). */
void sl_oracle_filter_verdict(sl_oracle *, int verdict);
/* An item the relay gave its filter tap (an sl_filter_item): the AUTH
   user it names is checked (guarantee 2). */
void sl_oracle_filter_item(sl_oracle *, sl_filter_item item, const uint8_t *p,
                           size_t n);

/* Optional hooks for guarantees 6 and 7.  watch_pool: the pool lends to this
   relay only.  expiry: called by the driver just before
   sl_relay_handle_expiry(r, now). */
void sl_oracle_watch_pool(sl_oracle *, const sl_bufpool *);
/* Buffers of the watched pool the driver itself holds (pool exhaustion
   tests); they do not count against the relay. */
void sl_oracle_pool_driver_held(sl_oracle *, uint32_t nsmall, uint32_t nlarge);
void sl_oracle_expiry(sl_oracle *, const sl_relay *r, sl_tstamp now);

/* After each step: 0 if all guarantees hold so far, else -1 with a message
   naming the guarantee and the bytes in why.  A violation is sticky. */
int sl_oracle_check(sl_oracle *, const sl_relay *r, sl_tstamp now, char *why,
                    size_t whylen);

/* Guarantee 9.  Called by the driver after it has drained the relay (all
   output taken, all requests read) and before it moves the clock or runs an
   expiry: every command the relay consumed must have been answered unless
   something legitimately holds the oldest one unanswered.  The oracle knows
   the policy (a tarpit profile in force that delays replies: reply_delay,
   jitter, stutter, greet_delay for the greeting, data_rate for a body) and
   the upstream (a reply outstanding, a TLS switch); the driver tells what
   only it knows, as SL_HOLD_* bits. */
enum sl_oracle_hold {
  SL_HOLD_REQUEST = 1u << 0, /* a connect/TLS/DNSBL/check request unanswered */
  SL_HOLD_CLIENT_OUT = 1u << 1, /* the client is not reading its output */
  SL_HOLD_POOL = 1u << 2        /* the pool ran dry since the last expiry */
};
void sl_oracle_progress(sl_oracle *, unsigned holds, sl_tstamp now);

/* Guarantee 10.  The relay's statistics against what crossed the boundary:
   bytes in and out on both legs, the MESSAGE events (accepted / tempfailed
   / rejected by the upstream's code class, the last code), the
   STARTTLS_INJECTION bytes, the TARPIT switch, SESSION_END (once, the last
   request, stats final, before SL_CLOSED).  want: sl_relay_want() now.
   Request ids are checked unique as they are told (sl_oracle_request). */
void sl_oracle_stats(sl_oracle *, const sl_stats *, unsigned want);

/* Counters for tests and the fuzz harness's statistics. */
typedef struct sl_oracle_counts {
  uint64_t client_commands, client_replies;
  uint64_t client_accepted, upstream_accepted;
  uint64_t upstream_commands, upstream_replies;
} sl_oracle_counts;
void sl_oracle_counts_get(const sl_oracle *, sl_oracle_counts *);

#endif
