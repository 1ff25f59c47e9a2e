/*
 * sluice/relay.h: one SMTP relay session, as a pure state machine.
 *
 * A relay is one client session and at most one upstream session at a time.
 * It performs no I/O, reads no clock and allocates nothing: the driver moves
 * bytes, answers the relay's requests and passes "now" into every call.
 *
 * Vocabulary.  "client" and "upstream" name the two legs; "in" is bytes the
 * driver received from a leg, "out" is bytes the driver must send to it.
 * Every *_buf() has an *_ack() partner (BearSSL's shape).
 *
 * Memory.  The relay's state lives in a block the caller allocates, of
 * sl_relay_size() bytes.  Line and output buffers are borrowed from an
 * sl_pool only while they hold bytes, so an idle or tarpitted session costs
 * its state alone.  sl_relay_memory_bound() is the most a relay ever holds.
 *
 * The driver loop, in order:
 *   1. bytes from a leg: sl_relay_{client,upstream}_in_buf() + _in_ack()
 *      (or sl_relay_feed_{client,upstream}(), which copies);
 *   2. ends of stream: sl_relay_{client,upstream}_eof();
 *   3. answers: sl_relay_complete();
 *   4. drain sl_relay_next_request() until it returns 0 and act on each
 *      (the relay waits for room there rather than drop anything);
 *   5. send sl_relay_{client,upstream}_out() and _out_ack() what went out;
 *   6. wait per sl_relay_want() and until sl_relay_next_deadline(), then
 *      sl_relay_handle_expiry() when it has passed.
 * Timestamps passed in MUST never decrease (SL_ERR_TIME_BACKWARDS).
 */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/errors.h"
#include "sluice/limits.h"
#include "sluice/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_relay sl_relay;

/* ---- buffer pool (owned by the driver) ------------------------------- */

/*
 * get() lends a buffer of at least min bytes and writes its capacity to
 * *cap, or returns NULL (the relay then stops taking input until a later
 * call).  The relay only asks for min <= limits.buffer_size.  put() takes it
 * back with the capacity get() reported.  Both are called only from inside
 * relay calls, never concurrently for one pool unless the driver allows it.
 */
typedef struct sl_pool {
  uint8_t *(*get)(void *ctx, uint32_t min, uint32_t *cap);
  void (*put)(void *ctx, uint8_t *buf, uint32_t cap);
  void *ctx;
} sl_pool;

/* ---- connection facts at creation ------------------------------------ */

typedef enum sl_admission {
  SL_ADMIT_ACCEPT = 0,  /* normal screening */
  SL_ADMIT_TARPIT = 1,  /* suspect tarpit profile from the start */
  SL_ADMIT_TEMPFAIL = 2 /* "421 4.7.0" greeting, then close */
} sl_admission;

enum sl_conn_flag {
  SL_CONN_TLS = 1u << 0,          /* client leg is implicit TLS already */
  SL_CONN_EXPECT_PROXY = 1u << 1, /* a PROXY v1/v2 header from a trusted
                                     balancer precedes SMTP */
  SL_CONN_POOL_CAPS = 1u << 2,    /* pool_features and pool_size are known */
  SL_CONN_FILTER = 1u << 3        /* content filters: each message of this
                                     session (unless filter_skip says not)
                                     is given to filter_tap, and its end
                                     waits for sl_relay_filter_verdict() */
};

/* sl_conn_info.filter_skip: messages not filtered. */
enum sl_filter_skip {
  SL_FSKIP_AUTHENTICATED = 1u << 0, /* the upstream accepted AUTH */
  SL_FSKIP_MYNETWORKS = 1u << 1,    /* the client is in policy mynetworks */
  SL_FSKIP_DNSWL = 1u << 2          /* DNSBL score at or below allow_score */
};

/*
 * What filter_tap receives, in order, for a filtered transaction.  Lines
 * are the client's command lines as the relay checked them (without CRLF);
 * content is what goes upstream: CRLF lines, dot-stuffed, never the
 * terminator.  Pointers are valid during the call only.
 */
typedef enum sl_filter_item {
  SL_FI_MAIL = 1,   /* a transaction starts: its MAIL line */
  SL_FI_RCPT,       /* a RCPT line sent upstream */
  SL_FI_RCPT_REPLY, /* the upstream's reply to the oldest RCPT of this
                       transaction not yet answered: n = the code, p NULL */
  SL_FI_BODY,       /* message content (DATA, or BDAT framed as DATA) */
  SL_FI_ABORT       /* the message is not going to be filtered after all
                       (refused, upstream lost): drop what was given */
} sl_filter_item;

typedef struct sl_conn_info {
  sl_addr client; /* replaced by the PROXY header's source when present */
  sl_addr local;
  uint32_t flags;         /* sl_conn_flag */
  sl_admission admission; /* e.g. from sl_ratelim_admit() */
  const char *client_name; /* verified rDNS or NULL; must outlive the relay */
  /* With SL_CONN_POOL_CAPS: what the upstream pool can take, e.g. the
     intersection over the healthy upstreams of sl_ehlo_features() on their
     health-check EHLO replies.  Screen-first, whose EHLO reply comes before
     any upstream, offers no extension outside pool_features (PIPELINING and
     STARTTLS are sluice's own) and a SIZE no larger than pool_size (0: no
     limit known).  The upstream a session reaches is checked again: if it
     offers less, the relay downgrades or refuses (guarantee 8). */
  uint32_t pool_features; /* sl_feature bits */
  uint64_t pool_size;
  /* With SL_CONN_EXPECT_PROXY: called once when a header naming a client
     (not LOCAL) is parsed, before anything is said to the client; its
     verdict replaces admission.  Per-client limits then count the real
     client, not the balancer.  NULL: admission stays as given. */
  sl_admission (*proxy_admit)(void *ctx, const sl_addr *client, sl_tstamp now);
  void *proxy_admit_ctx;
  /* With SL_CONN_FILTER: sl_filter_skip bits, and the tap (must not call
     back into the relay).  Every message of a filtered transaction is
     BDAT-downgraded to DATA upstream, so one held terminator ends both. */
  uint32_t filter_skip;
  void (*filter_tap)(void *ctx, sl_filter_item item, const uint8_t *p,
                     size_t n);
  void *filter_ctx;
} sl_conn_info;

/* ---- requests (relay to driver) -------------------------------------- */

typedef enum sl_request_type {
  SL_REQ_CONNECT_UPSTREAM = 1, /* open the upstream leg; attempt counts from
                                  0: pick another server on each retry */
  SL_REQ_STARTTLS_CLIENT,      /* client_out is fully sent: start the TLS
                                  server handshake on the client leg */
  SL_REQ_STARTTLS_UPSTREAM,    /* start the TLS client handshake upstream */
  SL_REQ_DNSBL_LOOKUP,         /* A records of the client under a zone */
  SL_REQ_CLOSE_UPSTREAM,       /* close the upstream leg now; the relay has
                                  discarded any bytes it still held for it */
  SL_REQ_CLOSE_CLIENT,         /* client_out has been sent: close the client
                                  leg; the session is over */
  SL_REQ_EVENT,                /* something worth a log line / a counter */
  SL_REQ_FILTER                /* a filtered message is complete (every
                                  SL_FI_BODY given) and its terminator is
                                  held: answer sl_relay_filter_verdict() */
} sl_request_type;

typedef enum sl_event_kind {
  SL_EV_PREGREET = 1,     /* arg: bytes the client sent too early */
  SL_EV_DNSBL_SCORE,      /* arg: final score (int32 in uint64) */
  SL_EV_TARPIT,           /* switched to the suspect profile; arg: reason */
  SL_EV_STARTTLS_INJECTION, /* arg: plaintext bytes discarded */
  SL_EV_SMUGGLING,        /* arg: sl_violation of a rejected message */
  SL_EV_UPSTREAM_READY,   /* upstream greeted (and TLS/XCLIENT done) */
  SL_EV_UPSTREAM_FAILED,  /* arg: sl_upstream_failure */
  SL_EV_MESSAGE,          /* a message's end; arg: upstream reply code
                             (0: not relayed; a content filter's refusal:
                             its code) | size << 16 */
  SL_EV_SESSION_END       /* last request; the stats are final */
} sl_event_kind;

typedef enum sl_violation {
  SL_VIOL_NONE = 0,
  SL_VIOL_BARE_LF,
  SL_VIOL_BARE_CR,
  SL_VIOL_NUL,
  SL_VIOL_LINE_TOO_LONG,
  SL_VIOL_SIZE
} sl_violation;

typedef enum sl_upstream_failure {
  SL_UPFAIL_CONNECT = 1,
  SL_UPFAIL_TIMEOUT,
  SL_UPFAIL_CLOSED,
  SL_UPFAIL_MALFORMED,  /* reply syntax or an unsolicited reply */
  SL_UPFAIL_GREETING,   /* greeting not 220 */
  SL_UPFAIL_TLS,        /* STARTTLS refused, required and missing, or the
                           handshake failed */
  SL_UPFAIL_IDENTITY    /* XCLIENT refused */
} sl_upstream_failure;

typedef struct sl_request {
  sl_request_type type;
  uint32_t id; /* echo in sl_completion.id; ids are unique per relay */
  union {
    struct {
      uint32_t attempt;
    } connect;
    struct {
      uint32_t zone; /* index into policy.dnsbl */
    } dnsbl;
    struct {
      sl_event_kind kind;
      uint64_t arg;
    } event;
  } u;
} sl_request;

/* ---- completions (driver to relay) ----------------------------------- */

typedef enum sl_status {
  SL_STATUS_OK = 0,
  SL_STATUS_FAILED = 1,
  SL_STATUS_TIMEOUT = 2
} sl_status;

#define SL_DNSBL_ANSWERS_MAX 8

typedef struct sl_completion {
  uint32_t id; /* the request's id */
  sl_status status;
  /* SL_REQ_DNSBL_LOOKUP, status OK: A answers in host order (0x7f000002);
     n = 0 means NXDOMAIN (not listed). */
  uint32_t dnsbl_answers[SL_DNSBL_ANSWERS_MAX];
  uint8_t ndnsbl_answers;
} sl_completion;

/* ---- session statistics ---------------------------------------------- */

typedef enum sl_stage {
  SL_STAGE_CONNECT = 0, /* nothing said yet */
  SL_STAGE_GREETING,    /* greeting (or teaser) sent */
  SL_STAGE_HELO,
  SL_STAGE_MAIL,
  SL_STAGE_RCPT,
  SL_STAGE_DATA,        /* body being sent */
  SL_STAGE_DELIVERED    /* at least one message got the upstream's 2xx */
} sl_stage;

typedef enum sl_end_reason {
  SL_END_NONE = 0,
  SL_END_QUIT,           /* 221 after QUIT */
  SL_END_CLIENT_CLOSED,  /* client EOF or driver abort */
  SL_END_TIMEOUT,        /* 421 4.4.2 after a client timeout */
  SL_END_UPSTREAM,       /* 421 after the upstream failed */
  SL_END_REJECTED,       /* admission/dnsbl/pregreet drop, errors limit */
  SL_END_PROTOCOL        /* smuggling or other framing violation */
} sl_end_reason;

typedef struct sl_stats {
  sl_tstamp start, end;       /* end = SL_TSTAMP_NONE while open */
  uint64_t client_bytes_in, client_bytes_out;
  uint64_t upstream_bytes_in, upstream_bytes_out;
  sl_duration delay_total;    /* time replies were held by the tarpit */
  uint32_t commands, errors, junk;
  uint32_t messages_accepted, messages_rejected, messages_tempfailed;
  uint32_t recipients_accepted;
  uint32_t recipients_relay_denied; /* refused by relay control (554/454
                                       at RCPT; sluice/rcpt_policy.h) */
  int32_t score;
  uint32_t pregreet_bytes;
  uint32_t sync_violations; /* bytes sent ahead of a reply they needed */
  uint32_t starttls_discarded; /* plaintext bytes dropped after STARTTLS */
  uint16_t last_upstream_code; /* last end-of-data reply from upstream
                                  (or the refusal of a content filter) */
  uint8_t stage;       /* sl_stage, the furthest reached */
  uint8_t end_reason;  /* sl_end_reason */
  uint8_t upstream_attempts;
  uint8_t tarpitted;   /* suspect profile in force at some point */
  uint8_t tls_client, tls_upstream;
} sl_stats;

/* ---- lifecycle ------------------------------------------------------- */

/* Bytes of caller memory a relay needs (alignment 8). */
size_t sl_relay_size(const sl_limits *limits);

/* The most memory a relay holds at once: its state plus every pool buffer
   it can borrow (guarantee 6). */
size_t sl_relay_memory_bound(const sl_limits *limits);

/*
 * Creates a relay in mem (memlen >= sl_relay_size(limits), 8-aligned).
 * limits, policy, pool and info->client_name must outlive the relay; the
 * relay copies *info.  seed drives tarpit jitter, so equal seeds and inputs
 * give equal outputs.  Returns 0 and sets *out, or SL_ERR_INVALID_ARGUMENT /
 * SL_ERR_NOBUF.  The first requests (connect upstream in pass-through mode,
 * DNSBL lookups) are ready at once.
 */
int sl_relay_init(sl_relay **out, void *mem, size_t memlen,
                  const sl_limits *limits, const sl_policy *policy,
                  const sl_pool *pool, const sl_conn_info *info,
                  uint64_t seed, sl_tstamp now);

/* Returns every borrowed buffer to the pool.  The memory block is the
   caller's again afterwards.  Safe at any time. */
void sl_relay_free(sl_relay *r);

/* ---- input ------------------------------------------------------------ */

/*
 * Where the driver may write up to *cap received client bytes (e.g. recv()
 * into it), or NULL with *cap = 0 when the relay takes no client input now
 * (see sl_relay_want()).  The space stays valid until the next relay call.
 */
uint8_t *sl_relay_client_in_buf(sl_relay *r, size_t *cap, sl_tstamp now);
/* NULL while SL_WANT_CLIENT_READ is set means the pool had no buffer: the
   relay clears the want bit and sets a short deadline to try again. */
/* n (<= cap) bytes were written there; the relay processes them.  Returns 0
   or a negative SL_ERR_*. */
int sl_relay_client_in_ack(sl_relay *r, size_t n, sl_tstamp now);
/* Copying convenience: offers data to the relay and returns how many bytes
   it took (< len: wait for SL_WANT_CLIENT_READ, then offer the rest), or a
   negative SL_ERR_*. */
long sl_relay_feed_client(sl_relay *r, const uint8_t *data, size_t len,
                          sl_tstamp now);

uint8_t *sl_relay_upstream_in_buf(sl_relay *r, size_t *cap, sl_tstamp now);
int sl_relay_upstream_in_ack(sl_relay *r, size_t n, sl_tstamp now);
long sl_relay_feed_upstream(sl_relay *r, const uint8_t *data, size_t len,
                            sl_tstamp now);

/* The client (or upstream) closed its sending side.  The relay still
   answers what it has read; the session ends when nothing is left to do. */
int sl_relay_client_eof(sl_relay *r, sl_tstamp now);
int sl_relay_upstream_eof(sl_relay *r, sl_tstamp now);

/* The client connection failed hard (reset, write error): the session ends
   now; an upstream message in progress is aborted by closing the upstream
   leg, never by sending its terminator.  The driver still drains requests
   (CLOSE_*, the SESSION_END event) until SL_CLOSED. */
int sl_relay_abort(sl_relay *r, sl_tstamp now);

/*
 * The outcome of a request.  For SL_REQ_CONNECT_UPSTREAM, OK means the TCP
 * (or implicit TLS) connection is up; for SL_REQ_STARTTLS_*, that the
 * handshake finished.  Returns 0, SL_ERR_UNKNOWN_REQUEST (stale or unknown
 * id; harmless) or another SL_ERR_*.
 */
int sl_relay_complete(sl_relay *r, const sl_completion *c, sl_tstamp now);

/*
 * The combined verdict (an sl_verdict of sluice/filter.h, passed as an int
 * so that this header does not pull in the codecs' types) on the message
 * of SL_REQ_FILTER `id`.  ACCEPT or
 * CHANGE: the terminator goes upstream and the client gets the upstream's
 * reply (guarantee 2).  TEMPFAIL or REJECT (DISCARD counts as REJECT): the
 * upstream leg is closed without the terminator and the client gets
 * sl_filter_reply(v, text), one re-framed line (guarantee 5); text is the
 * deciding filter's reply or message, NULL/0 for the default.  Returns 0,
 * SL_ERR_UNKNOWN_REQUEST (stale id: the message ended otherwise, e.g. the
 * upstream was lost meanwhile) or another SL_ERR_*.
 */
int sl_relay_filter_verdict(sl_relay *r, uint32_t id, int verdict,
                            const uint8_t *text, size_t len, sl_tstamp now);

/* ---- output ----------------------------------------------------------- */

/*
 * Bytes to send to the client now, or NULL with *len = 0.  Tarpit delays,
 * stutter and throttles are already applied: send what is returned, no more,
 * then ack what the socket took.
 */
const uint8_t *sl_relay_client_out(sl_relay *r, size_t *len, sl_tstamp now);
int sl_relay_client_out_ack(sl_relay *r, size_t n, sl_tstamp now);
const uint8_t *sl_relay_upstream_out(sl_relay *r, size_t *len, sl_tstamp now);
int sl_relay_upstream_out_ack(sl_relay *r, size_t n, sl_tstamp now);

/*
 * Pops the oldest request into *out: returns 1, or 0 when none is left.
 * No request or event is ever dropped (guarantee 10).  The ring is small:
 * when it has too little room for what the relay's next step may request,
 * the relay stops consuming input (SL_WANT_CLIENT_READ and
 * SL_WANT_UPSTREAM_READ are cleared, answers and expiries wait) until the
 * driver drains this function; each call runs the relay again, so the
 * driver drains until 0 and then looks at sl_relay_want() again.
 */
int sl_relay_next_request(sl_relay *r, sl_request *out);

/* ---- time and state ---------------------------------------------------- */

/* The earliest time the relay must be called back; SL_TSTAMP_NONE: none. */
sl_tstamp sl_relay_next_deadline(const sl_relay *r);
/* Runs what is due at now (timeouts, tarpit releases, token refills). */
int sl_relay_handle_expiry(sl_relay *r, sl_tstamp now);

enum sl_want {
  SL_WANT_CLIENT_READ = 1u << 0,
  SL_WANT_CLIENT_WRITE = 1u << 1,
  SL_WANT_UPSTREAM_READ = 1u << 2,
  SL_WANT_UPSTREAM_WRITE = 1u << 3,
  SL_WANT_REQUESTS = 1u << 4, /* sl_relay_next_request() has something */
  SL_CLOSED = 1u << 5         /* over: every request drained; free it */
};
/* sl_want bits for the relay's state now (a pure query). */
unsigned sl_relay_want(const sl_relay *r);

/* The sticky API error, 0 if none. */
int sl_relay_last_error(const sl_relay *r);

/* The session's counters; valid for the relay's lifetime. */
const sl_stats *sl_relay_stats(const sl_relay *r);

/* The client's name for XCLIENT NAME= learnt after creation (the driver
   looks it up from accept on and holds the upstream connect until it is
   known): a verified name, "[UNAVAILABLE]" or "[TEMPUNAVAIL]".  Used if
   XCLIENT has not been sent yet; name must outlive the relay. */
void sl_relay_set_client_name(sl_relay *r, const char *name);

/* The client address in force (after a PROXY header, the real client). */
const sl_addr *sl_relay_client_addr(const sl_relay *r);

#ifdef __cplusplus
}
#endif
#endif
