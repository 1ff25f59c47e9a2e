/*
 * sl_harness.h: a test driver around one relay, for unit tests, golden
 * transcripts and fuzzing.  It plays both peers and the driver: feeds bytes
 * in any chunking, drains and acknowledges output into accumulated streams,
 * drains requests into a log, answers requests on command, and moves a
 * virtual clock.  After every step it asks the protocol oracle (sl_oracle.h)
 * whether the relay kept the guarantees of DESIGN.md.
 *
 * Test-only code: it allocates with malloc.
 */
#ifndef SL_HARNESS_H
#define SL_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/bufpool.h"
#include "sluice/relay.h"

typedef struct sl_bytes {
  uint8_t *p;
  size_t len, cap;
} sl_bytes;

void sl_bytes_add(sl_bytes *b, const void *p, size_t n);
void sl_bytes_free(sl_bytes *b);

#define SL_HARNESS_LOG_MAX 256

typedef struct sl_harness {
  sl_limits limits;
  sl_policy policy;
  sl_conn_info info;
  sl_bufpool bufpool;
  sl_pool pool;
  void *pool_mem;
  void *relay_mem;
  sl_relay *r;
  sl_tstamp now;

  sl_bytes client_out;   /* everything the relay sent to the client */
  sl_bytes upstream_out; /* everything the relay sent upstream */
  sl_bytes client_in;    /* everything the relay consumed from the client */
  sl_bytes upstream_in;  /* everything the relay consumed from upstream */

  sl_request log[SL_HARNESS_LOG_MAX]; /* every request, in order */
  size_t nlog;

  /* Requests still waiting for an answer (0: none). */
  uint32_t pending_connect, pending_tls_client, pending_tls_upstream;
  uint32_t pending_dnsbl[SL_DNSBL_ZONES_MAX];
  uint32_t pending_filter; /* the last SL_REQ_FILTER, not yet answered */
  /* What the filter tap received (sl_harness_filters_on): the content of
     the filtered messages, and the count of each sl_filter_item. */
  sl_bytes filter_content;
  sl_bytes filter_user; /* the last SL_FI_AUTH_USER */
  uint32_t filter_items[8];
  /* SL_REQ_RCPT_CHECK: its id and what it asked about */
  uint32_t pending_check;
  sl_request check;
  char check_sender[512], check_rcpt[512], check_helo[512];
  char check_user[512]; /* check.sasl_username, terminated */
  int client_closed, upstream_closed, upstream_open;

  /* Bytes a peer has sent that the relay has not taken yet (it stopped
     reading): like a TCP socket, they wait and are offered again after
     every step, including each expiry while time advances. */
  sl_bytes pending_client, pending_upstream;
  size_t in_chunk; /* offer input at most this many bytes at a time */
  int eof_client, eof_upstream; /* an end of stream waits behind them */

  size_t out_chunk;   /* ack output at most this many bytes a step (0: all) */
  int client_stalled; /* the client reads nothing (a full socket buffer) */
  sl_pool inner_pool; /* h->pool wraps it to see refusals */
  int pool_refused;   /* the pool refused the relay a buffer since the last
                         expiry (guarantee 9: it waits for its retry timer) */
  struct sl_oracle *oracle; /* NULL: no oracle checks */
  char failure[512]; /* first oracle violation or API error, "" if none */
} sl_harness;

/* Creates the relay with h->limits/policy/info as set by the caller after
   sl_harness_defaults().  pool_buffers: large buffers in the pool (small
   ones get twice as many); with_oracle: check the guarantees after every
   step.  Returns 0 or a negative SL_ERR_*. */
void sl_harness_defaults(sl_harness *h);
int sl_harness_start(sl_harness *h, uint32_t pool_buffers, int with_oracle,
                     uint64_t seed);
void sl_harness_free(sl_harness *h);

/* A peer sends bytes: offered in chunks of at most chunk bytes (0: as much
   as the relay takes), draining output and requests after each chunk.
   What the relay does not take now stays pending and is offered again
   after later steps.  Returns the bytes the relay took during this call. */
size_t sl_harness_client(sl_harness *h, const void *p, size_t n, size_t chunk);
size_t sl_harness_upstream(sl_harness *h, const void *p, size_t n,
                           size_t chunk);
void sl_harness_client_eof(sl_harness *h);
void sl_harness_upstream_eof(sl_harness *h);

/* Answers the outstanding request of that kind; returns 0, or -1 if none. */
int sl_harness_connect(sl_harness *h, sl_status st);
int sl_harness_tls_client(sl_harness *h, sl_status st);
int sl_harness_tls_upstream(sl_harness *h, sl_status st);
/* Before sl_harness_start: the session's messages are filtered (the
   harness's tap records them in filter_content / filter_items). */
void sl_harness_filters_on(sl_harness *h, uint32_t skip);
/* Answers the pending SL_REQ_FILTER with an sl_verdict and the filter's
   text (NULL: none).  The relay's return (0, SL_ERR_UNKNOWN_REQUEST when
   the message ended otherwise), or -1 when no verdict is pending. */
int sl_harness_filter_verdict(sl_harness *h, int verdict, const char *text);
/* Answers the pending SL_REQ_RCPT_CHECK: code 0 passes, else the text. */
int sl_harness_check(sl_harness *h, sl_status st, uint16_t code,
                     const char *text);
int sl_harness_dnsbl(sl_harness *h, uint32_t zone, sl_status st,
                     const uint32_t *answers, uint8_t n);

/* Moves the clock forward by d and runs expiries that are due (repeatedly,
   as a driver would, until the next deadline is later than now). */
void sl_harness_advance(sl_harness *h, sl_duration d);
/* Jumps to the relay's next deadline (if any, at most `max` ahead) and runs
   it; returns 1 if it did. */
int sl_harness_next_deadline(sl_harness *h, sl_duration max);

/* Drains output and requests (done by every call above). */
void sl_harness_pump(sl_harness *h);

/* Guarantee 9: drains the relay (output, requests, pending input) and has
   the oracle check that every command it consumed is answered unless
   something legitimately holds it.  Called before the clock moves and
   before every handle_expiry, by the calls above and by drivers that run
   expiries themselves (the fuzzer). */
void sl_harness_before_time(sl_harness *h);

/* Number of logged events of a kind, and of requests of a type. */
size_t sl_harness_events(const sl_harness *h, sl_event_kind kind);
size_t sl_harness_requests(const sl_harness *h, sl_request_type type);
/* One line for a request, e.g. "event message code=250 size=113", from the
   core's names, for failure dumps. */
void sl_request_describe(const sl_request *q, char *out, size_t len);

int sl_harness_closed(const sl_harness *h); /* SL_CLOSED reached */

#endif
