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
 * Guarantees checked (numbers as in DESIGN.md 2):
 *  (1) client output is a sequence of replies, never more than the client's
 *      commands (command lines, DATA bodies after a 354, BDAT chunks, AUTH
 *      continuations after 334), matched in order; unsolicited 421, 221,
 *      554, 521 are allowed once, and nothing may follow them;
 *  (2) 2xx replies to end-of-data / BDAT LAST seen by the client never
 *      outnumber the upstream's 2xx to terminators / BDAT LAST received
 *      after they were sent (per session); a message the client sent with a
 *      framing violation is never reported accepted;
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
 *  (8) BDAT goes upstream only after the upstream's last EHLO reply
 *      offered CHUNKING.
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

/* Counters for tests and the fuzz harness's statistics. */
typedef struct sl_oracle_counts {
  uint64_t client_commands, client_replies;
  uint64_t client_accepted, upstream_accepted;
  uint64_t upstream_commands, upstream_replies;
} sl_oracle_counts;
void sl_oracle_counts_get(const sl_oracle *, sl_oracle_counts *);

#endif
