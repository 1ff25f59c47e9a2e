/*
 * sl_relay.c: the SMTP relay state machine; see sluice/relay.h.
 *
 * Shape.  Every API call records its input, then run() makes all the
 * progress it can: replies leave the pending queue in order (step_replies),
 * the upstream preamble advances (step_upstream), client bytes become
 * commands or message data (step_client), and the legs close (step_close).
 *
 * Ordering.  Each client command puts one entry on a small queue at the
 * moment it is consumed: either a local reply or "the upstream's reply to
 * what was just sent".  Replies are emitted from the head only, so local and
 * relayed replies interleave in command order (RFC 2920) and every command
 * gets exactly one.  Upstream reply bytes are parsed only when an upstream
 * entry is at the head, so an upstream can never answer ahead of its turn.
 * A command that needs an upstream which is not ready is left unconsumed in
 * the input buffer and parsed again later, so nothing is stored twice.
 */
#include <string.h>

#include "sl_caps.h"
#include "sl_cmd.h"
#include "sl_data.h"
#include "sl_envelope.h"
#include "sl_pcg.h"
#include "sl_relay_replies.h"
#include "sl_reply.h"
#include "sluice/filter.h"
#include "sluice/proxy.h"
#include "sluice/rcpt_policy.h"
#include "sluice/relay.h"

/* ---- internal types ---------------------------------------------------- */

/* Offsets are 16 bits (limits keep buffer_size below 64 KiB) so that five
   of these cost 80 bytes of state, not 120. */
typedef struct sl_buf {
  uint8_t *p;
  uint32_t cap; /* as the pool reported it (given back to put()) */
  uint16_t off, len;
} sl_buf;

enum cl_state {
  CL_PROXY,   /* reading a PROXY header from a trusted balancer */
  CL_CMD,     /* reading command lines */
  CL_AUTH,    /* the next line is an AUTH continuation */
  CL_WAIT,    /* a reply must come before more input is meaningful */
  CL_DATA,    /* message body after 354 */
  CL_DISCARD, /* refusing the rest of a message body */
  CL_BDAT,    /* inside a BDAT chunk */
  CL_TLS,     /* TLS handshake running on the client leg */
  CL_CLOSING, /* last reply queued; close when it is sent */
  CL_CLOSED
};

enum up_state {
  UP_NONE,
  UP_CONNECTING,
  UP_GREETING,
  UP_EHLO, /* our own EHLO, to learn the capabilities */
  UP_HELO, /* fallback when EHLO is refused */
  UP_STARTTLS,
  UP_TLS,
  UP_XCLIENT,
  UP_REPLAY, /* replaying the client's EHLO/HELO */
  UP_READY,
  UP_QUIT /* QUIT written; close once it is sent */
};

/* Queue entries: upstream replies below Q_LOCAL, local reply ids above. */
enum q_kind {
  Q_GREETING = 0,
  Q_UP,
  Q_UP_EHLO,
  Q_UP_HELO,
  Q_UP_MAIL,
  Q_UP_RCPT,
  Q_UP_DATA,
  Q_UP_END,
  Q_UP_BDAT,
  Q_UP_BDAT_LAST,
  Q_UP_RSET,
  Q_UP_AUTH,
  Q_UP_VRFY,
  Q_UP_DATA_SYNC, /* a DATA whose body came too early: its reply is
                     swallowed, the client gets 554 and the upstream leg
                     closes before any body byte is sent */
  Q_UP_BDAT_DATA, /* the DATA that carries a BDAT transaction to an upstream
                     without CHUNKING: its 354 is swallowed and the entry
                     becomes the first chunk's reply; any other reply is
                     that chunk's */
  Q_UP_RSET_OWN,  /* sluice's own RSET after that DATA was refused: its
                     reply goes to no client command */
  Q_UP_XFORWARD,  /* sluice's own XFORWARD before an upstream MAIL: its 250
                     goes to no client command, a refusal fails the leg */
  Q_LOCAL = 32
};

enum local_reply {
  R_OK,
  R_BYE,
  R_HELP,
  R_VRFY252,
  R_VRFY502,
  R_UNKNOWN,
  R_LINE_TOO_LONG,
  R_BAD_CHAR,
  R_SYNTAX,
  R_HELO_SYNTAX,
  R_BAD_SENDER,
  R_BAD_RCPT,
  R_PATH_TOO_LONG,
  R_PARAM,
  R_NEED_UTF8,
  R_SIZE,
  R_TOO_MANY_RCPT,
  R_RCPT_OVERSHOOT,
  R_NEED_HELO,
  R_NEED_MAIL,
  R_NESTED_MAIL,
  R_NEED_RCPT,
  R_TLS_READY,
  R_TLS_UNAVAIL,
  R_TLS_ACTIVE,
  R_AUTH_UNAVAIL,
  R_AUTH_NEED_TLS,
  R_NOT_IMPL,
  R_REJECTED,
  R_DROP,
  R_TEMPFAIL,
  R_NO_UPSTREAM,
  R_UPSTREAM_LOST,
  R_UPSTREAM_FAIL,
  R_SMUGGLE,
  R_TEXT_TOO_LONG,
  R_MSG_SIZE,
  R_TIMEOUT,
  R_TOO_MANY_ERRORS,
  R_TOO_MANY_JUNK,
  R_SYNC,
  R_NONSMTP,
  R_GREETING,
  R_EHLO_LOCAL,
  R_HELO_LOCAL,
  /* envelope rules (sl_envelope.h, sluice/rcpt_policy.h) */
  R_BAD_UTF8,
  R_8BIT,
  R_HELO_8BIT,
  R_RELAY_DENIED,
  R_RELAY_UNCONFIGURED,
  R_SOURCE_ROUTE,
  R_PERCENT_HACK,
  R_BANG_PATH,
  R_UP_NO_8BIT,
  R_UP_NO_UTF8,
  R_BDAT_OK,
  R_BDAT_FAILED,
  R_FILTER,      /* a content filter's refusal: frep, re-framed */
  R_FILTER_TEMP, /* ... its deferral when frep is empty */
  R_COUNT
};

enum {
  RF_CLOSE = 1, /* the session ends once this reply is sent */
  RF_HOST = 2,  /* "<code> <enhanced> <hostname> <text>" (greetings,
                   closings) */
  RF_NOERR = 4  /* a refusal that does not count toward errors_max */
};

static const struct {
  uint16_t code;
  uint8_t flags;
  const char *text;
} replies[R_COUNT] = {
    [R_OK] = {250, 0, "2.0.0 Ok"},
    [R_BYE] = {221, RF_CLOSE, "2.0.0 Bye"},
    [R_HELP] = {214, 0,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT"},
    [R_VRFY252] = {252, 0,
                   "2.5.0 Cannot VRFY user, but will accept message and "
                   "attempt delivery"},
    [R_VRFY502] = {502, 0, "5.5.1 VRFY and EXPN are disabled"},
    [R_UNKNOWN] = {500, 0, "5.5.2 Error: command not recognized"},
    [R_LINE_TOO_LONG] = {500, 0, "5.5.2 Error: line too long"},
    [R_BAD_CHAR] = {500, 0, "5.5.2 Error: bare CR, bare LF or NUL in command"},
    [R_SYNTAX] = {501, 0, "5.5.4 Syntax error in parameters or arguments"},
    [R_HELO_SYNTAX] = {501, 0, "5.5.4 Syntax: EHLO hostname"},
    [R_BAD_SENDER] = {501, 0, "5.1.7 Bad sender address syntax"},
    [R_BAD_RCPT] = {501, 0, "5.1.3 Bad recipient address syntax"},
    [R_PATH_TOO_LONG] = {501, 0, "5.1.3 Path too long"},
    [R_PARAM] = {555, 0, "5.5.4 Unsupported option"},
    [R_NEED_UTF8] = {553, 0, "5.6.7 Non-ASCII address requires SMTPUTF8"},
    [R_SIZE] = {552, 0, "5.3.4 Message size exceeds fixed limit"},
    [R_TOO_MANY_RCPT] = {452, 0, "4.5.3 Error: too many recipients"},
    [R_RCPT_OVERSHOOT] = {452, RF_NOERR, "4.5.3 Error: too many recipients"},
    [R_NEED_HELO] = {503, 0, "5.5.1 Error: send HELO/EHLO first"},
    [R_NEED_MAIL] = {503, 0, "5.5.1 Error: need MAIL command"},
    [R_NESTED_MAIL] = {503, 0, "5.5.1 Error: nested MAIL command"},
    [R_NEED_RCPT] = {503, 0, "5.5.1 Error: need RCPT command"},
    [R_TLS_READY] = {220, 0, "2.0.0 Ready to start TLS"},
    [R_TLS_UNAVAIL] = {502, 0, "5.5.1 Error: STARTTLS not available"},
    [R_TLS_ACTIVE] = {503, 0, "5.5.1 Error: TLS already active"},
    [R_AUTH_UNAVAIL] = {503, 0, "5.5.1 Error: authentication not enabled"},
    [R_AUTH_NEED_TLS] =
        {538, 0,
         "5.7.11 Encryption required for requested authentication mechanism"},
    [R_NOT_IMPL] = {502, 0, "5.5.1 Error: command not implemented"},
    [R_REJECTED] = {554, 0,
                    "5.7.1 Service unavailable; client rejected by policy"},
    [R_DROP] = {521, RF_CLOSE | RF_HOST,
                "5.7.1 Service unavailable; closing connection"},
    [R_TEMPFAIL] = {421, RF_CLOSE | RF_HOST,
                    "4.7.0 Service temporarily unavailable; try again later"},
    [R_NO_UPSTREAM] = {421, RF_CLOSE | RF_HOST,
                       "4.3.2 Service not available; no mail server reachable"},
    [R_UPSTREAM_LOST] =
        {451, 0,
         "4.4.2 Error: connection to the mail server lost; try again later"},
    [R_UPSTREAM_FAIL] =
        {451, 0, "4.3.0 Error: mail server unavailable; try again later"},
    [R_SMUGGLE] = {554, RF_CLOSE,
                   "5.6.0 Error: bare CR, bare LF or NUL in message; SMTP "
                   "smuggling refused"},
    [R_TEXT_TOO_LONG] = {554, 0, "5.6.0 Error: message line too long"},
    [R_MSG_SIZE] = {552, 0, "5.3.4 Error: message size exceeds fixed limit"},
    [R_TIMEOUT] = {421, RF_CLOSE | RF_HOST, "4.4.2 Error: timeout exceeded"},
    [R_TOO_MANY_ERRORS] = {421, RF_CLOSE | RF_HOST,
                           "4.7.0 Error: too many errors"},
    [R_TOO_MANY_JUNK] = {421, RF_CLOSE | RF_HOST,
                         "4.7.0 Error: too many junk commands"},
    [R_SYNC] = {554, RF_CLOSE, "5.5.0 Error: SMTP protocol synchronization"},
    [R_NONSMTP] = {221, RF_CLOSE,
                   "2.7.0 Error: I can break rules, too. Goodbye."},
    [R_GREETING] = {220, RF_HOST, "ESMTP"},
    [R_EHLO_LOCAL] = {250, 0, ""},
    [R_HELO_LOCAL] = {250, RF_HOST, ""},
    [R_BAD_UTF8] = {500, 0, "5.5.2 Error: bad UTF-8 syntax"},
    [R_8BIT] = {500, 0, "5.5.2 Error: non-ASCII command requires SMTPUTF8"},
    [R_HELO_8BIT] = {501, 0,
                     "5.5.2 Syntax: EHLO hostname (ASCII; IDNs as A-labels)"},
    [R_RELAY_DENIED] = {554, 0, "5.7.1 Relay access denied"},
    [R_RELAY_UNCONFIGURED] = {454, 0, "4.7.1 Relay access denied"},
    [R_SOURCE_ROUTE] = {554, 0,
                        "5.7.1 Relay access denied: source route refused"},
    [R_PERCENT_HACK] = {554, 0,
                        "5.7.1 Relay access denied: '%' or '@' in the local "
                        "part refused"},
    [R_BANG_PATH] = {554, 0, "5.7.1 Relay access denied: bang path refused"},
    /* RFC 6152 3: convert or refuse; sluice stores nothing to convert */
    [R_UP_NO_8BIT] = {550, 0,
                      "5.6.3 Error: 8-bit content needs a conversion the mail "
                      "server does not support"},
    /* RFC 6531 3.2: never forwarded to a server without SMTPUTF8 */
    [R_UP_NO_UTF8] = {553, 0,
                      "5.6.7 Error: the mail server does not support "
                      "SMTPUTF8"},
    /* a chunk taken on the way to DATA upstream: nothing is accepted yet */
    [R_BDAT_OK] = {250, 0, "2.0.0 Ok: chunk received"},
    /* the code is the upstream's refusal of DATA (bdat_fail_code) */
    [R_BDAT_FAILED] = {554, 0,
                       ".0.0 Error: the mail server refused the "
                       "message"},
    /* the filter's own line from frep (emit_local); these texts only
       when the pool had no buffer for it */
    [R_FILTER] = {550, 0, "5.7.1 Message rejected by content filter"},
    [R_FILTER_TEMP] = {451, 0,
                       "4.7.1 Message deferred by content filter; try again "
                       "later"},
};

/* The request ring never drops a request or an event (guarantee 10).  A
   step of run() pushes at most STEP_PUSH requests and runs only while
   STEP_ROOM slots are free, so one more is always left for the only push
   outside run() (sl_relay_abort's close); answers and expiries are applied
   by steps of run() too.  With less room the relay consumes no input and
   waits for the driver to drain sl_relay_next_request(), which runs it
   again. */
#define RING_CAP 8
#define STEP_PUSH 3
#define STEP_ROOM (STEP_PUSH + 1)
#define QUEUE_CAP 32
/* Messages whose end-of-data reply is still owed (BDAT LAST transactions
   can be pipelined back to back); a ninth waits for the first's reply. */
#define MSIZE_CAP 8

typedef struct ring_ent {
  uint8_t type, kind;
  uint16_t pad_;
  uint32_t id;
  uint64_t arg;
} ring_ent;

/* Request id tags (low 8 bits); the rest is a sequence number, so answers
   to an earlier connect attempt or handshake are recognised as stale. */
enum {
  TAG_CONNECT = 1,
  TAG_TLS_CLIENT = 2,
  TAG_TLS_UPSTREAM = 3,
  TAG_FILTER = 4,
  TAG_DNSBL = 16
};

struct sl_relay {
  const sl_limits *lim;
  const sl_policy *pol;
  const sl_pool *pool;
  const sl_tarpit *prof; /* tarpit profile in force */
  sl_conn_info info;
  sl_stats stats;
  uint64_t rng; /* PCG32 state; the stream is fixed (RNG_STREAM) */

  sl_buf cin, cout, uin, uout;
  sl_buf ehlo; /* the client's last EHLO/HELO line, for replay upstream */

  sl_tstamp now;
  sl_tstamp t_client;  /* last client activity (input or output sent) */
  sl_tstamp t_phase;   /* start of the PROXY wait or a TLS handshake */
  sl_tstamp t_release; /* the head reply leaves at this time */
  sl_tstamp t_up;      /* upstream must answer by then */
  sl_tstamp t_uout;    /* last upstream output progress */
  sl_tstamp t_stutter; /* next stutter slot */
  sl_tstamp t_tokens;  /* last throttle refill */
  sl_tstamp t_retry;   /* pool was empty: try again at */
  sl_tstamp t_rec;     /* first byte of the client's unfinished line */
  sl_tstamp t_urec;    /* first byte of the upstream's unfinished line */
  sl_duration greet_jitter;

  uint64_t bdat_left;
  uint64_t tokens;
  uint64_t up_size;
  sl_data data;

  uint32_t seq; /* request id sequence */
  uint32_t id_connect, id_tls_client, id_tls_up;
  uint32_t err;           /* sticky API error (stored negated) */
  uint32_t up_caps;       /* upstream EHLO capabilities */
  uint32_t offered;       /* capabilities offered to the client */
  uint16_t dnsbl_pending; /* zones not yet answered */
  uint16_t rcpts;         /* accepted + pending recipients */
  uint16_t bdat_fail_code; /* the upstream's refusal of a BDAT's DATA */
  sl_stuff stuff;          /* BDAT content framed as DATA (bdat_down) */
  uint16_t overshoot;     /* RCPTs over recipients_max in this
                             transaction */

  ring_ent ring[RING_CAP];
  uint8_t ring_head, ring_len;
  uint8_t q[QUEUE_CAP];
  uint32_t q_cur; /* bit per queue slot: a MAIL or RCPT of the transaction
                     in force (pipelined replies must not undo the state a
                     later RSET, MAIL or end of data set up) */
  uint32_t q_sync; /* bit per queue slot: a command that must end a
                      pipelined group (RFC 2920 3.1), whose client must
                      wait for this reply */
  uint8_t q_head, q_len;
  /* The size of each message whose end is in the queue, in queue order:
     the next MAIL may be read before the reply to the previous end of data
     arrives, so the size cannot live in the transaction state. */
  uint32_t msize[MSIZE_CAP];
  uint8_t msize_head, msize_len;

  uint8_t cl, up;  /* enum cl_state, enum up_state */
  uint8_t attempt; /* connect attempts in this round */
  uint8_t up_out;  /* upstream replies outstanding (relayed commands) */
  uint8_t up_sync; /* outstanding commands that must end a group */
  uint8_t viol;    /* sl_violation of the message being refused */
  uint8_t bdat_cr;
  uint8_t dnsbl_asked; /* zones asked so far */
  /* Answers taken by sl_relay_complete() and applied by a step of run()
     once the ring has room for what they push: status + 1, 0 none. */
  uint8_t res_connect, res_tls_client, res_tls_up;

  /* flags */
  uint8_t greeted : 1;    /* the final greeting line went out */
  uint8_t greet_held : 1; /* cout holds the upstream greeting, unsent */
  uint8_t teaser : 1;     /* "220-" sent */
  uint8_t helo : 1;       /* EHLO/HELO accepted in this session */
  uint8_t esmtp : 1;
  uint8_t mail : 1;     /* MAIL accepted (or pending) */
  uint8_t rejected : 1; /* every transaction gets 554 */
  uint8_t cl_eof : 1;
  uint8_t up_eof : 1;
  uint8_t up_used : 1;    /* the client saw something from this upstream */
  uint8_t up_gave_up : 1; /* all attempts failed: fail the next command */
  uint8_t up_tls_refused : 1;
  uint8_t xclient_done : 1;
  uint8_t xfwd_sent : 1; /* XFORWARD written for the MAIL not yet sent */
  uint8_t replayed : 1;
  uint8_t probe_held : 1; /* uin holds the probe's EHLO reply, for the
                             client's EHLO (pass-through) */
  uint8_t probe_own : 1;  /* the last EHLO upstream was sluice's own */
  uint8_t dnsbl_done : 1;
  uint8_t pregreet : 1;
  uint8_t pregreet_judged : 1;
  uint8_t skip_line : 1; /* discarding an overlong line up to its LF */
  uint8_t bdat_discard : 1;
  uint8_t bdat_last : 1;   /* the chunk being read ends the message */
  uint8_t tls_pending : 1; /* STARTTLS 220 queued; handshake after send */
  uint8_t close_sent : 1;  /* CLOSE_CLIENT requested */
  uint8_t end_sent : 1;    /* SESSION_END requested */
  uint8_t starved : 1;     /* the pool had no buffer */
  uint8_t no_input : 1;    /* after QUIT or STARTTLS: read nothing more */
  uint8_t wait_354 : 1;    /* after DATA: its reply is not yet out (sent
                              to the client); the bytes after it wait */
  uint8_t body_early : 1;  /* bytes came after DATA before its reply */
  uint8_t quiet : 1;       /* discarding such a body after a refused DATA:
                              no reply at its end */
  uint8_t c_reading : 1;   /* client input was wanted at the last run() */
  uint8_t u_reading : 1;   /* upstream input likewise */
  uint8_t sync_bad : 1;    /* bytes came before the reply to a command
                              that ends a group: the next command gets
                              554 5.5.0 (forbid_unauth_pipelining) */
  uint8_t expire : 1;      /* handle_expiry() called: check the timers */
  uint8_t bdat_down : 1;   /* this BDAT transaction goes upstream as DATA */
  uint8_t bdat_go : 1;     /* ... and the upstream said 354 */
  uint8_t bdat_failed : 1; /* ... and the upstream refused the DATA */
  uint8_t utf8_txn : 1;    /* the MAIL in force declared SMTPUTF8 */
  uint8_t authed : 1;      /* the upstream accepted AUTH (235): no relay
                              control, as Postfix's permit_sasl_authenticated */

  /* Content filters (issue 11): see "content filters" below. */
  uint8_t fmsg : 1;  /* the transaction in force is filtered */
  uint8_t fbody : 1; /* its content is being given to filter_tap */
  uint8_t fheld : 1; /* its terminator is held for SL_REQ_FILTER */
  uint8_t fres;      /* the verdict taken (sl_verdict + 1), applied by
                        step_answers; 0 none */
  uint8_t fterm_len; /* bytes of the held terminator */
  uint8_t fterm[5];  /* ".\r\n", or "\r\n.\r\n" after a BDAT without a
                        final CRLF */
  uint16_t fcode;    /* code of the refusal */
  uint32_t id_filter; /* the SL_REQ_FILTER of the held terminator */
  uint32_t fsize;     /* that message's size, for its MESSAGE event */
  sl_buf frep; /* the refusal line, re-framed (a small pool buffer, held
                  until it is sent; without one the fixed R_FILTER text) */
};

static int throttled(const sl_relay *r);
static void refill(sl_relay *r);
static void throttle_start(sl_relay *r);
static uint64_t burst(const sl_relay *r);

/* ---- small helpers ------------------------------------------------------ */

static sl_tstamp tmin(sl_tstamp a, sl_tstamp b) { return a < b ? a : b; }
static sl_tstamp tadd(sl_tstamp t, sl_duration d) {
  return d == 0 || t == SL_TSTAMP_NONE ? SL_TSTAMP_NONE
         : t > SL_TSTAMP_NONE - d      ? SL_TSTAMP_NONE - 1
                                       : t + d;
}
static int is_up(uint8_t k) { return k > Q_GREETING && k < Q_LOCAL; }
static int is_smuggle(uint8_t v) {
  return v == SL_VIOL_BARE_LF || v == SL_VIOL_BARE_CR || v == SL_VIOL_NUL;
}

/* ---- buffers ------------------------------------------------------------ */

static void buf_release(sl_relay *r, sl_buf *b) {
  if (b->p)
    r->pool->put(r->pool->ctx, b->p, b->cap);
  b->p = NULL;
  b->cap = 0;
  b->off = b->len = 0;
}

/* The part of a lent buffer the 16-bit offsets can address. */
static uint32_t buf_cap(const sl_buf *b) {
  return b->cap < 65535u ? b->cap : 65535u;
}

/* Makes room for need more bytes at the tail: compacts, or moves the bytes
   to a larger buffer.  Returns 0, or -1 (pool empty or need too large). */
static int buf_reserve(sl_relay *r, sl_buf *b, uint32_t need) {
  if (b->p && buf_cap(b) - b->off - b->len >= need)
    return 0;
  if (b->p && buf_cap(b) - b->len >= need) {
    memmove(b->p, b->p + b->off, b->len);
    b->off = 0;
    return 0;
  }
  uint32_t want = b->len + need;
  if (want > r->lim->buffer_size)
    return -1;
  uint32_t cap = 0;
  uint8_t *p = r->pool->get(r->pool->ctx, want, &cap);
  if (!p || cap < want) {
    if (p)
      r->pool->put(r->pool->ctx, p, cap);
    r->starved = 1;
    r->t_retry = tadd(r->now, 50 * SL_MSEC);
    return -1;
  }
  if (b->len)
    memcpy(p, b->p + b->off, b->len);
  uint16_t len = b->len;
  buf_release(r, b);
  b->p = p;
  b->cap = cap;
  b->off = 0;
  b->len = len;
  return 0;
}

static void buf_consume(sl_relay *r, sl_buf *b, size_t n) {
  b->off = (uint16_t)(b->off + n);
  b->len = (uint16_t)(b->len - n);
  if (b->len == 0)
    buf_release(r, b);
}

static uint8_t *buf_tail(sl_buf *b) { return b->p + b->off + b->len; }
static uint32_t buf_free(const sl_buf *b) {
  return b->p ? buf_cap(b) - b->off - b->len : 0;
}

/* Counts n bytes written at the tail. */
static void buf_grow(sl_buf *b, size_t n) { b->len = (uint16_t)(b->len + n); }

/* Appends bytes; the caller reserved room. */
static void buf_put(sl_buf *b, const void *p, size_t n) {
  memcpy(buf_tail(b), p, n);
  buf_grow(b, n);
}

/* ---- requests -------------------------------------------------------------
 */

static int ring_free(const sl_relay *r) { return RING_CAP - r->ring_len; }

static uint32_t new_id(sl_relay *r, uint32_t tag) {
  r->seq++;
  return (r->seq << 8) | tag;
}

static void push_req(sl_relay *r, sl_request_type type, uint32_t id,
                     uint8_t kind, uint64_t arg) {
  if (r->ring_len == RING_CAP) {
    /* Steps reserve room before they run: a full ring here is a bug, and
       is reported rather than a request silently lost. */
    r->err = (uint32_t)-SL_ERR_INTERNAL;
    return;
  }
  ring_ent *e = &r->ring[(r->ring_head + r->ring_len) % RING_CAP];
  e->type = (uint8_t)type;
  e->kind = kind;
  e->id = id;
  e->arg = arg;
  r->ring_len++;
}

static void event(sl_relay *r, sl_event_kind kind, uint64_t arg) {
  push_req(r, SL_REQ_EVENT, new_id(r, 0), (uint8_t)kind, arg);
}

/* ---- the reply queue ------------------------------------------------------
 */

static int q_full(const sl_relay *r) {
  return r->q_len >= QUEUE_CAP || r->q_len >= r->lim->pipeline_max;
}
static uint8_t q_peek(const sl_relay *r) { return r->q[r->q_head]; }
static void q_push(sl_relay *r, uint8_t k) {
  unsigned slot = (r->q_head + r->q_len) % QUEUE_CAP;
  r->q[slot] = k;
  r->q_cur &= ~(1u << slot);
  r->q_sync &= ~(1u << slot);
  if (k == Q_UP_MAIL || k == Q_UP_RCPT)
    r->q_cur |= 1u << slot;
  r->q_len++;
}

/* A new transaction state starts (RSET, MAIL, EHLO, end of data): replies
   still owed to earlier MAIL/RCPT commands no longer change it. */
static void txn_reset(sl_relay *r) {
  r->q_cur = 0;
  r->mail = 0;
  r->utf8_txn = 0;
  r->rcpts = 0;
  r->overshoot = 0;
}

static void msize_push(sl_relay *r, uint64_t size) {
  r->msize[(r->msize_head + r->msize_len) % MSIZE_CAP] =
      size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
  r->msize_len++;
}
static uint64_t msize_pop(sl_relay *r) {
  if (!r->msize_len)
    return 0;
  uint32_t v = r->msize[r->msize_head];
  r->msize_head = (uint8_t)((r->msize_head + 1) % MSIZE_CAP);
  r->msize_len--;
  return v;
}
/* Every end-of-data reply still owed is gone (failed over to local
   replies, or the queue was dropped). */
static void msize_clear(sl_relay *r) { r->msize_head = r->msize_len = 0; }

static int q_head_current(const sl_relay *r) {
  return (r->q_cur >> r->q_head) & 1u;
}
static void q_push_local(sl_relay *r, enum local_reply id) {
  q_push(r, (uint8_t)(Q_LOCAL + id));
}
static void q_pop(sl_relay *r) {
  r->q_sync &= ~(1u << r->q_head);
  r->q_head = (uint8_t)((r->q_head + 1) % QUEUE_CAP);
  r->q_len--;
  r->t_release = SL_TSTAMP_NONE;
}

/* ---- upstream leg ------------------------------------------------------ */

static sl_duration up_timeout(const sl_relay *r, uint8_t kind) {
  switch (kind) {
  case Q_UP_DATA:
  case Q_UP_BDAT_DATA:
    return r->lim->upstream_data_init_timeout;
  case Q_UP_END:
  case Q_UP_BDAT_LAST:
    return r->lim->upstream_data_term_timeout;
  default:
    return r->lim->upstream_command_timeout;
  }
}

/* Writes a command line (without CRLF) upstream.  The caller checked room
   with up_room(). */
static void up_write_line(sl_relay *r, const uint8_t *line, size_t len) {
  if (r->uout.len == 0)
    r->t_uout = r->now;
  buf_put(&r->uout, line, len);
  buf_put(&r->uout, "\r\n", 2);
}

static int up_room(sl_relay *r, size_t n) {
  return buf_reserve(r, &r->uout, (uint32_t)n + 2) == 0;
}

/* Writes a checked MAIL or RCPT line upstream without the parameters of
   the classes in drop (extensions the upstream did not offer).  The caller
   checked room for the whole line. */
static void up_write_params(sl_relay *r, const uint8_t *line, size_t len,
                            uint32_t drop) {
  if (!drop) {
    up_write_line(r, line, len);
    return;
  }
  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  if (r->uout.len == 0)
    r->t_uout = r->now;
  buf_grow(&r->uout,
           sl_cmd_drop_params(line, len, c.arg, drop, buf_tail(&r->uout)));
  buf_put(&r->uout, "\r\n", 2);
}

static void up_command(sl_relay *r, const char *s) {
  if (up_room(r, strlen(s)))
    up_write_line(r, (const uint8_t *)s, strlen(s));
  r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
}

static void up_connect(sl_relay *r) {
  r->id_connect = new_id(r, TAG_CONNECT);
  push_req(r, SL_REQ_CONNECT_UPSTREAM, r->id_connect, 0, r->attempt);
  r->stats.upstream_attempts++;
  r->up = UP_CONNECTING;
  r->up_caps = 0;
  r->up_size = 0;
  r->up_eof = 0;
  r->up_used = 0;
  r->up_tls_refused = 0;
  r->xclient_done = 0;
  r->replayed = 0;
  r->probe_held = 0;
  r->up_out = r->up_sync = 0;
  r->stats.tls_upstream = r->pol->upstream_tls == SL_UPTLS_IMPLICIT;
  r->t_up = tadd(r->now, r->lim->upstream_connect_timeout);
}

/* Closes the upstream leg at once, discarding what it holds.  An open
   message is thereby aborted without its terminator (SECURITY.md 1.1). */
static int q_owes_upstream(const sl_relay *r);
static void q_fail_upstream(sl_relay *r, enum local_reply why);

static void filter_abort(sl_relay *r);

static void up_close(sl_relay *r) {
  filter_abort(r); /* a message it carried is not filtered after all */
  /* whatever the reason, a reply this upstream still owed becomes local */
  if (q_owes_upstream(r))
    q_fail_upstream(r, R_UPSTREAM_LOST);
  if (r->up != UP_NONE)
    push_req(r, SL_REQ_CLOSE_UPSTREAM, new_id(r, 0), 0, 0);
  buf_release(r, &r->uin);
  buf_release(r, &r->uout);
  r->t_urec = SL_TSTAMP_NONE;
  r->up = UP_NONE;
  r->up_out = r->up_sync = 0;
  r->probe_held = 0;
  r->up_eof = 0;
  r->t_up = SL_TSTAMP_NONE;
  r->id_connect = r->id_tls_up = 0;
  r->res_connect = r->res_tls_up = 0; /* answers for that leg are stale */
  r->xfwd_sent = 0; /* a new leg needs its own XFORWARD */
}

/* Does a queued reply still depend on the upstream? */
static int q_owes_upstream(const sl_relay *r) {
  for (uint8_t i = 0; i < r->q_len; i++)
    if (is_up(r->q[(r->q_head + i) % QUEUE_CAP]))
      return 1;
  return 0;
}

/* Every reply still owed by the upstream becomes a local one; replies to
   sluice's own commands are owed to no one and go. */
static void q_fail_upstream(sl_relay *r, enum local_reply why) {
  uint8_t n = 0;
  for (uint8_t i = 0; i < r->q_len; i++) {
    uint8_t k = r->q[(r->q_head + i) % QUEUE_CAP];
    if (k == Q_UP_RSET_OWN || k == Q_UP_XFORWARD)
      continue;
    if (is_up(k))
      k = (uint8_t)(Q_LOCAL + why);
    else if (k == Q_GREETING && r->pol->mode == SL_MODE_PASSTHROUGH)
      k = (uint8_t)(Q_LOCAL + R_NO_UPSTREAM);
    r->q[(r->q_head + n++) % QUEUE_CAP] = k;
  }
  r->q_len = n;
  r->q_cur = 0; /* no reply left can change the transaction */
  r->mail = 0;
  r->rcpts = 0;
  msize_clear(r);
}

static void up_fail(sl_relay *r, sl_upstream_failure why) {
  event(r, SL_EV_UPSTREAM_FAILED, why);
  int used = r->up_used;
  up_close(r);
  if (r->greet_held) {
    /* the held greeting came from this upstream: the next one's replaces it */
    buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl >= CL_CLOSING)
    return;
  if (!used && r->attempt + 1u < r->pol->upstream_attempts) {
    r->attempt++;
    up_connect(r);
    return;
  }
  r->attempt = 0;
  /* A command left unconsumed while this upstream was being set up gets a
     local failure instead of starting yet another round of attempts. */
  r->up_gave_up = !used;
  q_fail_upstream(r, used ? R_UPSTREAM_LOST : R_UPSTREAM_FAIL);
  if (r->cl == CL_DATA) {
    r->viol = SL_VIOL_NONE;
    sl_data_discard(&r->data, 0);
    r->cl = CL_DISCARD;
  } else if (r->cl == CL_BDAT) {
    r->bdat_discard = 1;
    /* a chunk on its way to DATA upstream is not received after all */
    uint8_t *tail = &r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP];
    if (r->q_len && *tail == Q_LOCAL + R_BDAT_OK)
      *tail = Q_LOCAL + R_UPSTREAM_LOST;
  } else if (r->cl == CL_WAIT && !r->tls_pending && !r->wait_354) {
    /* the AUTH whose reply we waited for now has a local one (a DATA's
       bytes keep waiting until its reply is out) */
    r->cl = CL_CMD;
  }
}

/* Asks for the upstream a command needs.  1: ready; 0: not yet (leave the
   command unconsumed); -1: unavailable (answer it locally). */
static int need_upstream(sl_relay *r) {
  if (r->up == UP_READY)
    return 1;
  if (r->up_gave_up) {
    r->up_gave_up = 0;
    return -1;
  }
  if (r->up == UP_NONE && ring_free(r) >= 3) {
    r->attempt = 0;
    up_connect(r);
  }
  return 0;
}

/* May a command go upstream now (RFC 2920 pacing toward the upstream)? */
static int up_can_send(const sl_relay *r) {
  if (r->fheld)
    return 0; /* nothing may follow a message the filters hold */
  if (r->up_out == 0)
    return 1;
  return (r->up_caps & SL_CAP_PIPELINING) && r->up_sync == 0;
}

/* The held probe reply answers only the client's EHLO: anything else sent
   upstream first drops it, so it is never read as that command's reply. */
static void probe_drop(sl_relay *r) {
  if (!r->probe_held)
    return;
  r->probe_held = 0;
  sl_reply rep;
  if (r->uin.len &&
      sl_reply_scan(r->uin.p + r->uin.off, r->uin.len, r->lim->reply_line_max,
                    r->lim->reply_max, &rep) > 0)
    buf_consume(r, &r->uin, rep.len);
}

static void up_sent(sl_relay *r, uint8_t kind, int sync) {
  if (kind != Q_UP_EHLO)
    probe_drop(r);
  q_push(r, kind);
  r->up_out++;
  r->up_sync = (uint8_t)(r->up_sync + (sync ? 1 : 0));
  r->up_used = 1;
  r->t_up = tadd(r->now, up_timeout(r, kind));
}

/* ---- content filters (issue 11) ----------------------------------------
 *
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

static void ftap(const sl_relay *r, sl_filter_item item, const uint8_t *p,
                 size_t n) {
  if (r->fmsg && r->info.filter_tap)
    r->info.filter_tap(r->info.filter_ctx, item, p, n);
}

/* Is the transaction starting now filtered? */
static int filter_wanted(const sl_relay *r) {
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
static void filter_body(sl_relay *r, const uint8_t *p, size_t n) {
  if (!r->fmsg || !n)
    return;
  r->fbody = 1;
  ftap(r, SL_FI_BODY, p, n);
}

/* The message whose terminator was just produced (not written) ends here:
   hold the terminator and ask for the verdict.  The step that calls this
   has ring room for one request. */
static void filter_hold(sl_relay *r, const uint8_t *term, size_t n,
                        uint64_t size) {
  memcpy(r->fterm, term, n);
  r->fterm_len = (uint8_t)n;
  r->fheld = 1;
  r->fbody = 0;
  r->fres = 0;
  r->fsize = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
  r->id_filter = new_id(r, TAG_FILTER);
  push_req(r, SL_REQ_FILTER, r->id_filter, 0, 0);
}

static void filter_abort(sl_relay *r) {
  if (r->fbody || r->fheld)
    ftap(r, SL_FI_ABORT, NULL, 0);
  r->fbody = r->fheld = 0;
  r->fterm_len = 0;
  r->fres = 0;
  r->id_filter = 0;
}

/* Applies the verdict taken by sl_relay_filter_verdict().  1: done (or
   nothing to do), 0: the pool has no room for the terminator yet. */
static int filter_apply(sl_relay *r) {
  sl_verdict v = (sl_verdict)(r->fres - 1);
  if (v == SL_VERDICT_ACCEPT || v == SL_VERDICT_CHANGE) {
    if (buf_reserve(r, &r->uout, r->fterm_len))
      return 0;
    if (r->uout.len == 0)
      r->t_uout = r->now;
    buf_put(&r->uout, r->fterm, r->fterm_len);
    r->fheld = 0;
    r->fres = 0;
    r->fterm_len = 0;
    r->id_filter = 0;
    /* the upstream's time to answer starts with the terminator */
    r->t_up = tadd(r->now, r->lim->upstream_data_term_timeout);
    return 1;
  }
  r->fheld = 0; /* no ABORT: the driver gave this verdict */
  r->fres = 0;
  r->fterm_len = 0;
  r->id_filter = 0;
  up_close(r);
  /* up_close made the held end's entry (the newest one the upstream owed:
     nothing was sent after it) a local 451; it is the filter's reply. */
  for (uint8_t i = r->q_len; i > 0; i--) {
    uint8_t *k = &r->q[(r->q_head + i - 1) % QUEUE_CAP];
    if (*k == Q_LOCAL + R_UPSTREAM_LOST) {
      *k = (uint8_t)(Q_LOCAL + (r->frep.len || r->fcode / 100 == 5 ? R_FILTER
                                                                   : R_FILTER_TEMP));
      break;
    }
  }
  return 1;
}

/* xtext (RFC 3461 4) of p into out; returns the length or 0 if over max. */
static size_t xtext(uint8_t *out, size_t max, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c > 0x20 && c < 0x7f && c != '+' && c != '=') {
      if (o + 1 > max)
        return 0;
      out[o++] = c;
    } else {
      if (o + 3 > max)
        return 0;
      out[o++] = '+';
      out[o++] = (uint8_t)hex[c >> 4];
      out[o++] = (uint8_t)hex[c & 15];
    }
  }
  return o;
}

static size_t put_str(uint8_t *out, const char *s) {
  size_t n = strlen(s);
  memcpy(out, s, n);
  return n;
}

/* The EHLO/HELO argument stored in r->ehlo, or NULL. */
static const uint8_t *helo_name(const sl_relay *r, size_t *n) {
  if (!r->ehlo.len)
    return NULL;
  const uint8_t *l = r->ehlo.p + r->ehlo.off;
  sl_cmd c;
  sl_cmd_parse(l, r->ehlo.len, &c);
  *n = sl_cmd_helo_arg(l + c.arg, r->ehlo.len - c.arg, r->lim->domain_max);
  return l + c.arg;
}

/* XCLIENT ADDR PORT NAME HELO PROTO (Postfix XCLIENT_README): the upstream
   logs and judges the real client, not sluice. */
static void up_send_xclient(sl_relay *r) {
  uint8_t line[512];
  size_t o = put_str(line, "XCLIENT ADDR=");
  const sl_addr *a = &r->info.client;
  char ip[SL_ADDR_STRLEN];
  if (a->family == SL_AF_UNSPEC) {
    o += put_str(line + o, "[UNAVAILABLE]");
  } else {
    if (a->family == SL_AF_INET6)
      o += put_str(line + o, "IPV6:");
    int n = sl_addr_format(a, ip, sizeof(ip));
    if (n > 0) {
      memcpy(line + o, ip, (size_t)n);
      o += (size_t)n;
    }
    o += put_str(line + o, " PORT=");
    o += sl_put_decimal(line + o, a->port);
  }
  o += put_str(line + o, " NAME=");
  size_t n = 0;
  if (r->info.client_name)
    n = xtext(line + o, 160, (const uint8_t *)r->info.client_name,
              strlen(r->info.client_name));
  o += n ? n : put_str(line + o, "[UNAVAILABLE]");
  size_t hn;
  const uint8_t *h = helo_name(r, &hn);
  if (h && hn) {
    size_t k = put_str(line + o, " HELO=");
    size_t m = xtext(line + o + k, 160, h, hn);
    if (m)
      o += k + m;
    o += put_str(line + o, r->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP");
  }
  if (up_room(r, o))
    up_write_line(r, line, o);
  r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
  r->up = UP_XCLIENT;
}

/* XFORWARD NAME ADDR [PORT] PROTO HELO [SOURCE] (Postfix XFORWARD_README)
   into line; returns its length.  The 160-byte caps on the xtext'd name and
   HELO keep it under the 512-byte command line, so one command suffices. */
static size_t xforward_line(const sl_relay *r, uint8_t *line) {
  size_t o = put_str(line, "XFORWARD NAME=");
  size_t n = 0;
  if (r->info.client_name)
    n = xtext(line + o, 160, (const uint8_t *)r->info.client_name,
              strlen(r->info.client_name));
  o += n ? n : put_str(line + o, "[UNAVAILABLE]");
  o += put_str(line + o, " ADDR=");
  const sl_addr *a = &r->info.client;
  if (a->family == SL_AF_UNSPEC) {
    o += put_str(line + o, "[UNAVAILABLE]");
  } else {
    char ip[SL_ADDR_STRLEN];
    if (a->family == SL_AF_INET6)
      o += put_str(line + o, "IPV6:");
    int k = sl_addr_format(a, ip, sizeof(ip));
    if (k > 0) {
      memcpy(line + o, ip, (size_t)k);
      o += (size_t)k;
    }
    if (r->up_caps & SL_CAP_XFWD_PORT) {
      o += put_str(line + o, " PORT=");
      o += sl_put_decimal(line + o, a->port);
    }
  }
  size_t hn = 0;
  const uint8_t *h = helo_name(r, &hn);
  o += put_str(line + o, r->helo ? (r->esmtp ? " PROTO=ESMTP" : " PROTO=SMTP")
                                 : " PROTO=[UNAVAILABLE]");
  o += put_str(line + o, " HELO=");
  n = h && hn ? xtext(line + o, 160, h, hn) : 0;
  o += n ? n : put_str(line + o, "[UNAVAILABLE]");
  if (r->up_caps & SL_CAP_XFWD_SOURCE)
    o += put_str(line + o, " SOURCE=REMOTE");
  return o;
}

static void up_ready(sl_relay *r) {
  r->up = UP_READY;
  r->t_up = SL_TSTAMP_NONE;
  event(r, SL_EV_UPSTREAM_READY, r->attempt);
}

/* After the upstream's EHLO: TLS, then identity, then the client's EHLO. */
static void up_preamble_next(sl_relay *r) {
  const sl_policy *p = r->pol;
  if ((p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
       p->upstream_tls == SL_UPTLS_REQUIRED) &&
      !r->stats.tls_upstream && !r->up_tls_refused &&
      (r->up_caps & SL_CAP_STARTTLS)) {
    up_command(r, "STARTTLS");
    r->up = UP_STARTTLS;
    return;
  }
  if (p->upstream_tls == SL_UPTLS_REQUIRED && !r->stats.tls_upstream) {
    up_fail(r, SL_UPFAIL_TLS);
    return;
  }
  if (p->identity == SL_IDENT_XCLIENT && !r->xclient_done &&
      (r->up_caps & SL_CAP_XCLIENT)) {
    up_send_xclient(r);
    return;
  }
  if (r->helo && r->ehlo.len && !r->replayed) {
    if (up_room(r, r->ehlo.len))
      up_write_line(r, r->ehlo.p + r->ehlo.off, r->ehlo.len);
    r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
    r->replayed = 1;
    r->up = UP_REPLAY;
    return;
  }
  up_ready(r);
}

static void up_connected(sl_relay *r) {
  r->up = UP_GREETING;
  r->t_up = tadd(r->now, r->lim->upstream_greeting_timeout);
  if (r->pol->identity == SL_IDENT_PROXY_V1 ||
      r->pol->identity == SL_IDENT_PROXY_V2) {
    /* The header must be the first bytes upstream, before its greeting. */
    uint8_t hdr[232];
    long n = r->pol->identity == SL_IDENT_PROXY_V1
                 ? sl_proxy_write_v1(hdr, sizeof(hdr), &r->info.client,
                                     &r->info.local)
                 : sl_proxy_write_v2(hdr, sizeof(hdr), &r->info.client,
                                     &r->info.local);
    if (n > 0 && buf_reserve(r, &r->uout, (uint32_t)n) == 0) {
      r->t_uout = r->now;
      buf_put(&r->uout, hdr, (size_t)n);
    }
  }
}

/* ---- screening ------------------------------------------------------- */

static void use_suspect(sl_relay *r, uint64_t reason) {
  if (r->prof == &r->pol->suspect)
    return;
  r->prof = &r->pol->suspect;
  r->stats.tarpitted = 1;
  event(r, SL_EV_TARPIT, reason);
}

static int allowlisted(const sl_relay *r) {
  return r->dnsbl_done && r->stats.score <= r->pol->allow_score;
}

static void dnsbl_finish(sl_relay *r) {
  if (r->dnsbl_done)
    return;
  r->dnsbl_done = 1;
  r->dnsbl_pending = 0;
  if (r->pol->ndnsbl)
    event(r, SL_EV_DNSBL_SCORE, (uint64_t)(int64_t)r->stats.score);
  if (r->stats.score >= r->pol->tarpit_score && !allowlisted(r))
    use_suspect(r, 1);
}

static int listed(const sl_dnsbl_zone *z, const sl_completion *c) {
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
static sl_action verdict(sl_relay *r) {
  sl_action act = SL_ACT_CONTINUE;
  if (allowlisted(r))
    return act;
  if (r->dnsbl_done && r->pol->ndnsbl && r->stats.score >= r->pol->reject_score)
    act = r->pol->dnsbl_action;
  if (r->pregreet && !r->pregreet_judged) {
    r->pregreet_judged = 1;
    event(r, SL_EV_PREGREET, r->stats.pregreet_bytes);
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

/* ---- replies to the client --------------------------------------------- */

#define RNG_STREAM 0x736c7569636531ull

static sl_duration jitter(sl_relay *r) {
  if (!r->prof->jitter)
    return 0;
  sl_pcg32 g = {r->rng, (RNG_STREAM << 1u) | 1u};
  sl_duration d = sl_pcg32_bounded64(&g, r->prof->jitter);
  r->rng = g.state;
  return d;
}

/* Tarpit gate for the head reply: 1 when it may be sent now. */
static int released(sl_relay *r, sl_duration delay) {
  if (delay == 0)
    return 1;
  if (r->t_release == SL_TSTAMP_NONE) {
    sl_duration d = delay + jitter(r);
    r->t_release = tadd(r->now, d);
    r->stats.delay_total += d; /* counted when the hold is decided */
  }
  return r->now >= r->t_release;
}

static void set_stage(sl_relay *r, sl_stage s) {
  if (r->stats.stage < s)
    r->stats.stage = (uint8_t)s;
}

static void client_close_after_reply(sl_relay *r, sl_end_reason why) {
  r->cl = CL_CLOSING;
  if (!r->stats.end_reason)
    r->stats.end_reason = (uint8_t)why;
}

/* Bookkeeping after a reply with code went out. */
static void replied(sl_relay *r, unsigned code) {
  if (code >= 400 && r->cl < CL_CLOSING) {
    r->stats.errors++;
    if (r->lim->errors_max && r->stats.errors >= r->lim->errors_max) {
      /* Commands read but not yet answered locally get no answer: the
         421 comes next whatever the client's write sizes were.  Replies
         owed by the upstream keep their place. */
      uint8_t n = 0;
      for (uint8_t i = 0; i < r->q_len; i++) {
        uint8_t k = r->q[(r->q_head + i) % QUEUE_CAP];
        if (k < Q_LOCAL)
          r->q[(r->q_head + n++) % QUEUE_CAP] = k;
      }
      r->q_len = n;
      r->q_sync = 0;
      q_push_local(r, R_TOO_MANY_ERRORS);
      r->no_input = 1;
    }
  }
}

static size_t local_len(const sl_relay *r, enum local_reply id) {
  return strlen(replies[id].text) + strlen(r->pol->hostname) + 8;
}

/* An enhanced status code "d.ddd.ddd " (RFC 3463) at the start of s: its
   length with the space, or 0. */
static size_t enhanced_len(const char *s) {
  size_t i = 0;
  for (int part = 0; part < 3; part++) {
    size_t d = 0;
    while (s[i] >= '0' && s[i] <= '9' && d < 3) {
      i++;
      d++;
    }
    if (d == 0 || s[i] != (part < 2 ? '.' : ' '))
      return 0;
    i++;
  }
  return i;
}

/* "<code> <text>", or with RF_HOST "<code> <enhanced> <host> <rest>": RFC
   2034 puts the enhanced status code right after the reply code, so the
   hostname goes after it (as Postfix writes "421 4.4.2 host Error: ..."). */
static size_t render_local(uint8_t *o, enum local_reply id, unsigned code,
                           const char *host) {
  const char *text = replies[id].text;
  size_t n = sl_put_decimal(o, code);
  o[n++] = ' ';
  if (text[0] == '.') /* the class digit is the code's (R_BDAT_FAILED) */
    o[n++] = (uint8_t)('0' + code / 100);
  if (replies[id].flags & RF_HOST || id == R_HELO_LOCAL) {
    size_t e = enhanced_len(text);
    memcpy(o + n, text, e);
    n += e;
    text += e;
    n += put_str(o + n, host);
    if (text[0])
      o[n++] = ' ';
  }
  n += put_str(o + n, text);
  o[n++] = '\r';
  o[n++] = '\n';
  return n;
}

/* Renders a local reply into cout.  0 when done, -1 when cout has no room
   yet (the reply stays queued). */
static int emit_local(sl_relay *r, enum local_reply id) {
  const char *host = r->pol->hostname;
  if (id == R_EHLO_LOCAL) {
    /* screen-first: what sluice offers before any upstream exists, no
       more than the pool can take (guarantee 8) */
    uint32_t offer = r->pol->features & SL_FEAT_ALL;
    uint64_t size = r->lim->message_size_max;
    if (r->info.flags & SL_CONN_POOL_CAPS) {
      offer &= r->info.pool_features | SL_FEAT_PIPELINING | SL_FEAT_STARTTLS;
      if (r->info.pool_size && (!size || r->info.pool_size < size))
        size = r->info.pool_size;
    }
    if ((offer & SL_FEAT_STARTTLS) && r->stats.tls_client)
      offer &= ~(uint32_t)SL_FEAT_STARTTLS;
    const char *mech = r->pol->auth_mechanisms;
    size_t mlen = mech && (offer & SL_FEAT_AUTH) ? strlen(mech) : 0;
    if (r->pol->auth_requires_tls && !r->stats.tls_client)
      mlen = 0;
    size_t hl = strlen(host);
    if (buf_reserve(r, &r->cout, (uint32_t)(hl + mlen + SL_CAPS_RENDER_MAX)))
      return -1;
    size_t n = sl_caps_render(buf_tail(&r->cout), (const uint8_t *)host, hl,
                              offer, size, (const uint8_t *)mech, mlen);
    buf_grow(&r->cout, n);
    r->offered = offer & (mlen ? ~0u : ~(uint32_t)SL_CAP_AUTH);
    return 0;
  }
  if (id == R_FILTER && r->frep.len) {
    if (buf_reserve(r, &r->cout, r->frep.len))
      return -1;
    buf_put(&r->cout, r->frep.p + r->frep.off, r->frep.len);
    buf_release(r, &r->frep);
    return 0;
  }
  if (buf_reserve(r, &r->cout, (uint32_t)local_len(r, id)))
    return -1;
  unsigned code = replies[id].code;
  if (id == R_BDAT_FAILED && r->bdat_fail_code)
    code = r->bdat_fail_code;
  buf_grow(&r->cout, render_local(buf_tail(&r->cout), id, code, host));
  if (id == R_HELO_LOCAL)
    r->offered = 0;
  return 0;
}

unsigned sl_relay_reply_count(void) { return R_COUNT; }

int sl_relay_reply_enhanced(unsigned id) {
  return id < R_COUNT && id != R_GREETING && id != R_EHLO_LOCAL &&
         id != R_HELO_LOCAL;
}

size_t sl_relay_reply_render(unsigned id, const char *host, uint8_t *out,
                             size_t cap) {
  if (id >= R_COUNT || id == R_EHLO_LOCAL || !host ||
      cap < strlen(replies[id].text) + strlen(host) + 8)
    return 0;
  return render_local(out, (enum local_reply)id, replies[id].code, host);
}

/* The length of an enhanced status code (RFC 3463 "d.ddd.ddd") at the
   start of a reply line's text, followed by a space or the end; 0 if none. */
static size_t esc_len(const uint8_t *t, size_t n) {
  size_t i = 0;
  for (int part = 0; part < 3; part++) {
    size_t d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 3) {
      i++;
      d++;
    }
    if (d == 0)
      return 0;
    if (part < 2) {
      if (i >= n || t[i] != '.')
        return 0;
      i++;
    }
  }
  return i == n || t[i] == ' ' ? i : 0;
}

/* Re-frames an upstream reply into cout; EHLO replies are rebuilt from the
   capability intersection.  -1 when cout has no room yet. */
static int emit_upstream(sl_relay *r, const uint8_t *buf, const sl_reply *rep,
                         uint8_t kind) {
  if (kind == Q_UP_EHLO && rep->code / 100 == 2) {
    sl_caps caps;
    sl_caps_parse(buf, rep, &caps);
    size_t pos = 0, glen = 0;
    const uint8_t *greet = NULL;
    sl_reply_next_line(buf, rep, &pos, &greet, &glen);
    uint32_t offer = (r->pol->features & SL_FEAT_ALL) &
                     (caps.bits | SL_CAP_PIPELINING | SL_CAP_STARTTLS);
    if (r->stats.tls_client)
      offer &= ~(uint32_t)SL_CAP_STARTTLS;
    if (r->pol->auth_requires_tls && !r->stats.tls_client)
      offer &= ~(uint32_t)SL_CAP_AUTH;
    uint64_t size = r->lim->message_size_max;
    if (caps.size && (!size || caps.size < size))
      size = caps.size;
    size_t alen = (offer & SL_CAP_AUTH) ? caps.auth_len : 0;
    if (buf_reserve(r, &r->cout, (uint32_t)(glen + alen + SL_CAPS_RENDER_MAX)))
      return -1;
    size_t n = sl_caps_render(buf_tail(&r->cout), greet, glen, offer, size,
                              buf + caps.auth_off, alen);
    buf_grow(&r->cout, n);
    r->offered = offer & (alen ? ~0u : ~(uint32_t)SL_CAP_AUTH);
    r->up_caps = caps.bits;
    r->up_size = caps.size;
    return 0;
  }
  /* Each line is rebuilt: code, separator, sanitised text, CRLF.  RFC
     2034: once ENHANCEDSTATUSCODES is offered, every 2xx/4xx/5xx reply but
     the greeting and EHLO's starts with one; an upstream that does not
     write one (screen-first offered the extension before the upstream was
     known) gets the class's generic "c.0.0" (RFC 3463). */
  unsigned cls = rep->code / 100;
  int esc = (r->offered & SL_CAP_ENHANCEDSTATUSCODES) && kind != Q_UP &&
            kind != Q_UP_EHLO && kind != Q_UP_HELO && cls != 3;
  if (buf_reserve(r, &r->cout, rep->len + 10u * rep->nlines))
    return -1;
  size_t pos = 0, len;
  const uint8_t *text;
  uint32_t line = 0;
  while (sl_reply_next_line(buf, rep, &pos, &text, &len)) {
    line++;
    uint8_t *o = buf_tail(&r->cout);
    size_t n = sl_reply_put_line(o, rep->code, line == rep->nlines, text, len);
    if (esc && !esc_len(text, len)) {
      memmove(o + 10, o + 4, n - 4);
      memcpy(o + 4, "0.0.0 ", 6);
      o[4] = (uint8_t)('0' + cls);
      n += 6;
    }
    buf_grow(&r->cout, n);
  }
  if (kind == Q_UP_HELO) {
    r->offered = 0;
    r->up_caps = 0; /* a HELO session has no extensions upstream either */
  }
  return 0;
}

/* What a relayed reply means for the session. */
static void after_upstream_reply(sl_relay *r, uint8_t kind, unsigned code,
                                 int current) {
  unsigned cls = code / 100;
  switch (kind) {
  case Q_UP_EHLO:
  case Q_UP_HELO:
    if (cls == 2)
      set_stage(r, SL_STAGE_HELO);
    break;
  case Q_UP_MAIL:
    if (cls == 2)
      set_stage(r, SL_STAGE_MAIL);
    else if (current)
      txn_reset(r);
    break;
  case Q_UP_RCPT:
    if (current)
      ftap(r, SL_FI_RCPT_REPLY, NULL, code);
    if (cls == 2) {
      r->stats.recipients_accepted++;
      set_stage(r, SL_STAGE_RCPT);
    } else if (current && r->rcpts) {
      r->rcpts--;
    }
    break;
  case Q_UP_DATA:
    if (code == 354) {
      r->wait_354 = 0;
      r->body_early = 0; /* those bytes were the body */
      sl_data_init(&r->data, r->lim->text_line_max, r->lim->message_size_max,
                   (r->pol->lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0);
      r->cl = CL_DATA;
      r->t_client = r->now;
      throttle_start(r);
      set_stage(r, SL_STAGE_DATA);
    }
    /* refused: step_client() goes on once the reply is out */
    break;
  case Q_UP_END:
  case Q_UP_BDAT_LAST:
    if (cls == 2) {
      r->stats.messages_accepted++;
      set_stage(r, SL_STAGE_DELIVERED);
    } else if (cls == 4) {
      r->stats.messages_tempfailed++;
    } else {
      r->stats.messages_rejected++;
    }
    r->stats.last_upstream_code = (uint16_t)code;
    event(r, SL_EV_MESSAGE, code | (msize_pop(r) << 16));
    break;
  case Q_UP_AUTH:
    r->cl = code == 334 ? CL_AUTH : CL_CMD;
    if (code == 235)
      r->authed = 1;
    break;
  case Q_UP_BDAT_DATA:
    /* DATA refused (354 is handled before): this chunk had that reply, the
       transaction's other chunks get its code, and no chunk byte moves. */
    r->bdat_failed = 1;
    r->bdat_fail_code = (uint16_t)code;
    r->bdat_discard = 1;
    break;
  default:
    break;
  }
  if (code == 421) {
    /* The upstream is closing: so is this session (RFC 5321 3.8). */
    client_close_after_reply(r, SL_END_UPSTREAM);
  }
}

/* After a local reply went out. */
static void after_local_reply(sl_relay *r, enum local_reply id) {
  if (replies[id].flags & RF_CLOSE) {
    client_close_after_reply(r, id == R_BYE       ? SL_END_QUIT
                                : id == R_TIMEOUT ? SL_END_TIMEOUT
                                : id == R_SMUGGLE || id == R_SYNC ||
                                        id == R_NONSMTP
                                    ? SL_END_PROTOCOL
                                : id == R_NO_UPSTREAM ? SL_END_UPSTREAM
                                                      : SL_END_REJECTED);
    return;
  }
  if (id == R_TLS_READY) {
    r->tls_pending = 1;
    return;
  }
  if (id == R_EHLO_LOCAL || id == R_HELO_LOCAL)
    set_stage(r, SL_STAGE_HELO);
  if (id == R_FILTER || id == R_FILTER_TEMP) {
    /* a message the filters refused: counted as its reply says */
    if (r->fcode / 100 == 4)
      r->stats.messages_tempfailed++;
    else
      r->stats.messages_rejected++;
    event(r, SL_EV_MESSAGE, r->fcode | ((uint64_t)r->fsize << 16));
  }
  if (r->cl == CL_WAIT && r->q_len == 0 && !r->no_input && !r->wait_354)
    r->cl = CL_CMD; /* the AUTH we waited on was answered locally */
}

/* ---- step: replies leave the queue in order ------------------------- */

static int greeting_due(const sl_relay *r) {
  if (!r->dnsbl_done)
    return 0;
  if (!allowlisted(r) && r->prof->greet_delay &&
      r->now < tadd(r->stats.start, r->prof->greet_delay + r->greet_jitter))
    return 0;
  if (r->pol->mode == SL_MODE_PASSTHROUGH && r->up != UP_READY && !r->rejected)
    return 0;
  return 1;
}

static int emit_greeting(sl_relay *r) {
  sl_action act = verdict(r);
  if (act == SL_ACT_TARPIT)
    use_suspect(r, 2);
  if (act == SL_ACT_DROP) {
    if (r->greet_held) {
      buf_release(r, &r->cout); /* the upstream's greeting is not sent */
      r->greet_held = 0;
    }
    size_t need =
        local_len(r, R_DROP) + (r->teaser ? local_len(r, R_GREETING) : 0);
    if (buf_reserve(r, &r->cout, (uint32_t)need))
      return -1;
    if (r->teaser)
      emit_local(r, R_GREETING); /* finish the multi-line greeting first */
    emit_local(r, R_DROP);
    r->greeted = 1;
    set_stage(r, SL_STAGE_GREETING);
    q_pop(r);
    up_close(r);
    r->no_input = 1;
    client_close_after_reply(r, SL_END_REJECTED);
    return 0;
  }
  if (!r->greet_held && emit_local(r, R_GREETING))
    return -1;
  r->greet_held = 0;
  if (r->prof->greet_delay)
    r->stats.delay_total += r->now - r->stats.start; /* held by the tarpit */
  if (act == SL_ACT_REJECT) {
    r->rejected = 1;
    if (r->up != UP_NONE)
      up_close(r); /* a rejected client never reaches the mail server */
  }
  r->greeted = 1;
  set_stage(r, SL_STAGE_GREETING);
  q_pop(r);
  if (r->pol->mode == SL_MODE_PASSTHROUGH)
    r->up_used = 1;
  return 0;
}

static int is_sync(uint8_t k) {
  return k == Q_UP_EHLO || k == Q_UP_HELO || k == Q_UP_DATA ||
         k == Q_UP_DATA_SYNC || k == Q_UP_AUTH || k == Q_UP_VRFY ||
         k == Q_UP_BDAT_DATA;
}

/* After a BDAT transaction's DATA was refused, the upstream may still hold
   its MAIL and RCPTs while the client, whose transaction ends with LAST,
   starts afresh: reset it, with a reply that goes to no one. */
static void up_hidden_rset(sl_relay *r) {
  if (r->up != UP_READY || r->cl >= CL_CLOSING || r->q_len >= QUEUE_CAP ||
      !up_can_send(r) || !up_room(r, 4))
    return;
  up_write_line(r, (const uint8_t *)"RSET", 4);
  up_sent(r, Q_UP_RSET_OWN, 0);
}

/* The upstream's 354 to the DATA carrying a BDAT transaction: the client
   never sees it; the chunk waiting for it may now be framed, and the entry
   becomes that chunk's reply (taken locally, or the end-of-data's). */
static void bdat_go(sl_relay *r, const sl_reply *rep) {
  buf_consume(r, &r->uin, rep->len);
  r->up_out--;
  r->up_sync--;
  r->t_up = r->up_out ? tadd(r->now, r->lim->upstream_command_timeout)
                      : SL_TSTAMP_NONE;
  r->t_release = SL_TSTAMP_NONE;
  r->bdat_go = 1;
  r->q[r->q_head] = r->bdat_last ? Q_UP_BDAT_LAST : Q_LOCAL + R_BDAT_OK;
  if (r->bdat_last) /* its bytes are still to come: bdat_left */
    msize_push(r, r->data.size + r->bdat_left);
  set_stage(r, SL_STAGE_DATA);
}

static int step_replies(sl_relay *r) {
  int progress = 0;
  while (r->q_len && r->cl < CL_CLOSING && ring_free(r) >= STEP_ROOM) {
    uint8_t k = q_peek(r);
    if (k == Q_GREETING) {
      if (!greeting_due(r) || emit_greeting(r))
        break;
      progress = 1;
      continue;
    }
    if (k >= Q_LOCAL) {
      /* An AUTH whose upstream was lost after its 334: the answer goes to
         the continuation line the client is still to send. */
      if (r->cl == CL_AUTH)
        break;
      enum local_reply id = (enum local_reply)(k - Q_LOCAL);
      /* A chunk is answered once it has been read (RFC 3030 2). */
      if (id == R_BDAT_OK && r->cl == CL_BDAT && r->q_len == 1)
        break;
      /* Tarpits delay answers, never the goodbye of a closing session. */
      if (!(replies[id].flags & RF_CLOSE) && !released(r, r->prof->reply_delay))
        break;
      if (emit_local(r, id))
        break;
      q_pop(r);
      after_local_reply(r, id);
      if (!(replies[id].flags & RF_NOERR))
        replied(r, replies[id].code);
      progress = 1;
      continue;
    }
    if (r->up != UP_READY || !r->uin.len)
      break;
    sl_reply rep;
    const uint8_t *b = r->uin.p + r->uin.off;
    int rc = sl_reply_scan(b, r->uin.len, r->lim->reply_line_max,
                           r->lim->reply_max, &rep);
    /* A reply to the last command sent while its bytes (a BDAT chunk, the
       message, the line itself) are not all out yet answers something the
       upstream never received: a broken or hostile upstream. */
    if (rc > 0 && (r->up_out == 0 || /* nothing asked: an AUTH after 334 */
                   (r->q_len == 1 &&
                    (r->uout.len || (r->cl == CL_BDAT && !r->bdat_discard &&
                                     k != Q_UP_BDAT_DATA)))))
      rc = -1;
    if (k == Q_UP_BDAT_DATA && rc > 0 && rep.code != 354 && rep.code < 400)
      rc = -1; /* DATA "accepted" with no body: never a chunk's 2xx */
    if (rc > 0 && r->fheld && (k == Q_UP_END || k == Q_UP_BDAT_LAST))
      rc = -1; /* a reply to a terminator the filters still hold */
    if (rc < 0) {
      up_fail(r, SL_UPFAIL_MALFORMED);
      progress = 1;
      continue;
    }
    if (k == Q_UP_BDAT_DATA && rc > 0 && rep.code == 354) {
      bdat_go(r, &rep);
      progress = 1;
      continue;
    }
    if (k == Q_UP_XFORWARD && rc > 0 && rep.code / 100 != 2) {
      /* Refused like an XCLIENT: the leg fails (the MAIL behind it gets a
         local reply) and the driver never offers this session's identity
         to that server again. */
      buf_consume(r, &r->uin, rep.len);
      up_fail(r, SL_UPFAIL_IDENTITY);
      progress = 1;
      continue;
    }
    if (k == Q_UP_RSET_OWN || k == Q_UP_XFORWARD) {
      if (rc == 0)
        break;
      buf_consume(r, &r->uin, rep.len);
      r->up_out--;
      r->t_up = r->up_out ? tadd(r->now, r->lim->upstream_command_timeout)
                          : SL_TSTAMP_NONE;
      q_pop(r);
      progress = 1;
      continue;
    }
    if (k == Q_UP_DATA_SYNC) {
      if (rc == 0 || emit_local(r, R_SYNC))
        break;
      q_pop(r);
      up_close(r);
      after_local_reply(r, R_SYNC);
      replied(r, replies[R_SYNC].code);
      progress = 1;
      continue;
    }
    if (rc == 0 || !released(r, r->prof->reply_delay) ||
        emit_upstream(r, b, &rep, k))
      break;
    int current = q_head_current(r);
    buf_consume(r, &r->uin, rep.len);
    r->up_out--;
    if (is_sync(k))
      r->up_sync--;
    r->t_up = r->up_out ? tadd(r->now, r->lim->upstream_command_timeout)
                        : SL_TSTAMP_NONE;
    if (!(k == Q_UP_AUTH && rep.code == 334)) {
      q_pop(r);
    } else {
      r->t_release = SL_TSTAMP_NONE;
      /* the client was waiting for this: its continuation is no
         synchronisation error */
      r->q_sync &= ~(1u << r->q_head);
    }
    after_upstream_reply(r, k, rep.code, current);
    replied(r, rep.code);
    if (k == Q_UP_BDAT_DATA)
      up_hidden_rset(r);
    progress = 1;
  }
  return progress;
}

/* ---- step: the upstream preamble ------------------------------------ */

/* The upstream's session is fresh (after its greeting or TLS): its first
   EHLO is the client's own when the client has said EHLO, so a receiver
   that refuses a second EHLO (OpenSMTPD: "503 Already identified") never
   sees two; sluice's own name only when no client EHLO is known yet. */
static void up_ehlo(sl_relay *r) {
  r->replayed = 0;
  r->probe_own = 0;
  if (r->helo && r->esmtp && r->ehlo.len) {
    if (up_room(r, r->ehlo.len))
      up_write_line(r, r->ehlo.p + r->ehlo.off, r->ehlo.len);
    r->replayed = 1;
  } else {
    r->probe_own = 1;
    uint8_t line[300];
    size_t n = put_str(line, "EHLO ");
    n += put_str(line + n, r->pol->hostname);
    if (up_room(r, n))
      up_write_line(r, line, n);
  }
  r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
  r->up = UP_EHLO;
}

/* Whether the preamble needs the upstream's capabilities before the
   client's EHLO: only for STARTTLS or XCLIENT, which both reset the
   upstream's session, so the client's EHLO is again its first one.
   Otherwise pass-through relays the greeting at once and the client's
   EHLO is the upstream's first and only EHLO. */
static int up_needs_probe(const sl_relay *r) {
  const sl_policy *p = r->pol;
  return p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
         p->upstream_tls == SL_UPTLS_REQUIRED ||
         p->identity == SL_IDENT_XCLIENT || (r->helo && r->esmtp);
}

static int step_preamble(sl_relay *r) {
  sl_reply rep;
  int rc = r->uin.len
               ? sl_reply_scan(r->uin.p + r->uin.off, r->uin.len,
                               r->lim->reply_line_max, r->lim->reply_max, &rep)
               : 0;
  if (rc < 0) {
    up_fail(r, SL_UPFAIL_MALFORMED);
    return 1;
  }
  if (rc == 0) {
    if (r->up_eof) {
      up_fail(r, SL_UPFAIL_CLOSED);
      return 1;
    }
    return 0;
  }
  const uint8_t *b = r->uin.p + r->uin.off;
  unsigned code = rep.code, cls = code / 100;
  sl_caps caps;
  switch (r->up) {
  case UP_GREETING:
    if (code == 220 ||
        (cls == 5 && r->pol->mode == SL_MODE_PASSTHROUGH && !r->greeted)) {
      if (r->pol->mode == SL_MODE_PASSTHROUGH && !r->greeted &&
          !r->greet_held) {
        /* Relayed as the client's greeting once the preamble is done. */
        if (emit_upstream(r, b, &rep, Q_UP))
          return 0;
        r->greet_held = 1;
      }
      buf_consume(r, &r->uin, rep.len);
      if (cls == 5) {
        /* The mail server refuses this client: relay that, and answer
           everything else locally until QUIT (RFC 5321 3.1). */
        r->rejected = 1;
        up_close(r);
        return 1;
      }
      if (up_needs_probe(r))
        up_ehlo(r);
      else
        up_preamble_next(r);
      return 1;
    }
    buf_consume(r, &r->uin, rep.len);
    up_fail(r, SL_UPFAIL_GREETING);
    return 1;
  case UP_EHLO:
    if (cls == 2) {
      sl_caps_parse(b, &rep, &caps);
      r->up_caps = caps.bits;
      r->up_size = caps.size;
      const sl_policy *p = r->pol;
      int tls = (p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
                 p->upstream_tls == SL_UPTLS_REQUIRED) &&
                !r->stats.tls_upstream && !r->up_tls_refused &&
                (caps.bits & SL_CAP_STARTTLS);
      int xc = p->identity == SL_IDENT_XCLIENT && !r->xclient_done &&
               (caps.bits & SL_CAP_XCLIENT);
      if (r->probe_own && !tls && !xc && !r->helo &&
          p->mode == SL_MODE_PASSTHROUGH) {
        /* Nothing will reset the upstream's session, so the client's EHLO
           cannot go upstream as a second EHLO (a strict receiver refuses
           it): this reply stays in uin and answers the client's EHLO. */
        r->probe_held = 1;
      } else {
        buf_consume(r, &r->uin, rep.len);
      }
      up_preamble_next(r);
    } else {
      buf_consume(r, &r->uin, rep.len);
      uint8_t line[300];
      size_t n = put_str(line, "HELO ");
      n += put_str(line + n, r->pol->hostname);
      if (up_room(r, n))
        up_write_line(r, line, n);
      r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
      r->up = UP_HELO;
    }
    return 1;
  case UP_HELO:
    buf_consume(r, &r->uin, rep.len);
    if (cls != 2) {
      up_fail(r, SL_UPFAIL_GREETING);
      return 1;
    }
    r->up_caps = 0;
    up_preamble_next(r);
    return 1;
  case UP_STARTTLS:
    if (code == 220) {
      /* Anything after the 220 was sent before TLS: never read it as a
         reply (response injection, CVE-2011-0411's mirror). */
      buf_release(r, &r->uin);
      r->t_urec = SL_TSTAMP_NONE;
      r->id_tls_up = new_id(r, TAG_TLS_UPSTREAM);
      push_req(r, SL_REQ_STARTTLS_UPSTREAM, r->id_tls_up, 0, 0);
      r->up = UP_TLS;
      r->t_up = tadd(r->now, r->lim->tls_handshake_timeout);
      return 1;
    }
    buf_consume(r, &r->uin, rep.len);
    if (r->pol->upstream_tls == SL_UPTLS_REQUIRED) {
      up_fail(r, SL_UPFAIL_TLS);
      return 1;
    }
    r->up_tls_refused = 1;
    up_preamble_next(r);
    return 1;
  case UP_XCLIENT:
    buf_consume(r, &r->uin, rep.len);
    if (code != 220) {
      up_fail(r, SL_UPFAIL_IDENTITY);
      return 1;
    }
    r->xclient_done = 1; /* the upstream is back at its greeting */
    r->replayed = 0;     /* so the client's EHLO goes again */
    up_preamble_next(r);
    return 1;
  case UP_REPLAY:
    if (cls != 2) {
      buf_consume(r, &r->uin, rep.len);
      up_fail(r, SL_UPFAIL_GREETING);
      return 1;
    }
    /* After a replayed HELO the session has no extensions (RFC 2920 binds
       PIPELINING to the EHLO that offered it). */
    r->up_caps = 0;
    r->up_size = 0;
    if (r->esmtp) {
      sl_caps_parse(b, &rep, &caps);
      r->up_caps = caps.bits;
      r->up_size = caps.size;
    }
    buf_consume(r, &r->uin, rep.len);
    up_ready(r);
    return 1;
  default:
    return 0;
  }
}

static int step_upstream(sl_relay *r) {
  switch (r->up) {
  case UP_GREETING:
  case UP_EHLO:
  case UP_HELO:
  case UP_STARTTLS:
  case UP_XCLIENT:
  case UP_REPLAY:
    if (ring_free(r) < STEP_ROOM)
      return 0;
    return step_preamble(r);
  case UP_READY:
    if (ring_free(r) < STEP_ROOM)
      return 0;
    if (r->probe_held && r->up_out == 0) {
      if (!r->up_eof)
        return 0; /* the held reply waits for the client's EHLO */
      probe_drop(r);
    }
    if (r->up_out == 0 &&
        (r->cl == CL_DATA || r->cl == CL_BDAT ||
         (r->q_len && q_peek(r) == Q_GREETING)) &&
        (r->uin.len || r->up_eof)) {
      /* a message is being streamed, or the greeting still waits on this
         upstream: losing it is a failure, not an idle close */
      up_fail(r, r->uin.len ? SL_UPFAIL_MALFORMED : SL_UPFAIL_CLOSED);
      return 1;
    }
    if (r->up_out == 0 && (r->uin.len || r->up_eof) && q_owes_upstream(r)) {
      /* an AUTH answered 334 waits on this upstream: not idle */
      up_fail(r, r->uin.len ? SL_UPFAIL_MALFORMED : SL_UPFAIL_CLOSED);
      return 1;
    }
    if (r->up_out == 0 && (r->uin.len || r->up_eof)) {
      /* Idle and the upstream spoke or left (idle timeout, shutdown):
         drop it; the next command reconnects and replays the EHLO. */
      event(r, SL_EV_UPSTREAM_FAILED,
            r->uin.len ? SL_UPFAIL_MALFORMED : SL_UPFAIL_CLOSED);
      up_close(r);
      return 1;
    }
    if (r->up_out && r->up_eof) {
      sl_reply rep;
      if (!r->uin.len ||
          sl_reply_scan(r->uin.p + r->uin.off, r->uin.len,
                        r->lim->reply_line_max, r->lim->reply_max, &rep) == 0) {
        up_fail(r, SL_UPFAIL_CLOSED);
        return 1;
      }
    }
    return 0;
  case UP_QUIT:
    if (r->uout.len == 0 && ring_free(r) >= 2) {
      up_close(r);
      return 1;
    }
    return 0;
  default:
    return 0;
  }
}

/* ---- step: client input ---------------------------------------------- */

static uint32_t params_allowed(const sl_relay *r) {
  uint32_t o = r->offered, p = 0;
  if (o & SL_CAP_SIZE)
    p |= SL_P_SIZE;
  if (o & SL_CAP_8BITMIME)
    p |= SL_P_BODY_8BIT;
  if (o & SL_CAP_SMTPUTF8)
    p |= SL_P_SMTPUTF8;
  if (o & SL_CAP_DSN)
    p |= SL_P_DSN;
  if (o & SL_CAP_AUTH)
    p |= SL_P_AUTH;
  return p;
}

static enum local_reply path_reply(sl_path_err e, int is_mail) {
  switch (e) {
  case SL_PATH_TOO_LONG:
    return R_PATH_TOO_LONG;
  case SL_PATH_PARAM:
    return R_PARAM;
  case SL_PATH_NEED_SMTPUTF8:
    return R_NEED_UTF8;
  case SL_PATH_SIZE:
    return R_SIZE;
  default:
    return is_mail ? R_BAD_SENDER : R_BAD_RCPT;
  }
}

/* Bytes a client sent ahead of a reply it had to wait for (RFC 2920 3.1;
   Postfix's smtpd_forbid_unauth_pipelining).  Returns 1 if that ends the
   session. */
static int sync_violation(sl_relay *r) {
  r->stats.sync_violations++;
  return r->pol->forbid_unauth_pipelining;
}

/* Must this command end a pipelined group (RFC 2920 3.1; Postfix's
   SMTPD_CMD_FLAG_LAST)?  Without EHLO and an offered PIPELINING every
   command must.  STARTTLS (its plaintext tail is discarded), QUIT (nothing
   after it is read) and BDAT (its chunk follows it) have their own rules. */
static int ends_group(const sl_relay *r, sl_verb v) {
  switch (v) {
  case SL_V_EHLO:
  case SL_V_HELO:
  case SL_V_DATA:
  case SL_V_NOOP:
  case SL_V_VRFY:
  case SL_V_EXPN:
  case SL_V_AUTH:
    return 1;
  case SL_V_STARTTLS:
  case SL_V_QUIT:
  case SL_V_BDAT:
    return 0;
  default:
    return !(r->esmtp && (r->offered & SL_CAP_PIPELINING));
  }
}

/* Message bytes sent before the reply to DATA, under
   forbid_unauth_pipelining, while that reply is still queued: it is
   replaced by the refusal (a relayed DATA's own reply is swallowed and the
   upstream leg closed before a body byte moves). */
static void refuse_sync(sl_relay *r) {
  uint8_t *k = &r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP];
  *k = *k >= Q_LOCAL ? (uint8_t)(Q_LOCAL + R_SYNC) : (uint8_t)Q_UP_DATA_SYNC;
  r->wait_354 = 0;
  r->no_input = 1;
}

/* The body a client sent after a DATA that was then refused (locally or by
   the upstream) is message content, never commands: it is read up to its
   end-of-data line and dropped without a reply. */
static void discard_early_body(sl_relay *r) {
  sl_data_init(&r->data, r->lim->text_line_max, 0,
               (r->pol->lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0);
  sl_data_discard(&r->data, 0);
  r->viol = SL_VIOL_NONE;
  r->quiet = 1;
  r->cl = CL_DISCARD;
  r->t_client = r->now;
}

/* The message size allowed: the lower of ours and the upstream's SIZE
   (and, in screen-first, the pool's, which is what the client was
   offered). */
static uint64_t size_limit(const sl_relay *r) {
  uint64_t m = r->lim->message_size_max;
  if (r->up_size && (!m || r->up_size < m))
    m = r->up_size;
  if (r->pol->mode == SL_MODE_SCREEN_FIRST &&
      (r->info.flags & SL_CONN_POOL_CAPS) && r->info.pool_size &&
      (!m || r->info.pool_size < m))
    m = r->info.pool_size;
  return m;
}

/* Sends a client command line upstream, if the upstream can take it now.
   1: sent; 0: not now (leave it); -1: unavailable (answer locally). */
static int relay_line(sl_relay *r, const uint8_t *line, size_t len,
                      uint8_t kind) {
  int u = need_upstream(r);
  if (u <= 0)
    return u;
  if (!up_can_send(r) || !up_room(r, len))
    return 0;
  /* RFC 3461 6.2: relayed without NOTIFY/ORCPT to a server without DSN */
  up_write_params(r, line, len,
                  kind == Q_UP_RCPT && !(r->up_caps & SL_CAP_DSN) ? SL_P_DSN
                                                                  : 0);
  up_sent(r, kind, is_sync(kind));
  if (kind == Q_UP_RCPT)
    ftap(r, SL_FI_RCPT, line, len);
  return 1;
}

static int sasl_response(const uint8_t *p, size_t n) {
  if (n == 1 && p[0] == '*')
    return 1;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
      return 0;
  }
  return 1;
}

/* A SASL line toward the AUTH at the queue head (a continuation, or "*"
   to cancel the exchange); the upstream's answer is the client's reply. */
static void sasl_line(sl_relay *r, const uint8_t *line, size_t len) {
  up_write_line(r, line, len);
  r->q_sync |= 1u << r->q_head; /* the client waits for the answer again */
  r->up_out++;
  r->up_sync++;
  r->t_up = tadd(r->now, r->lim->upstream_command_timeout);
  r->cl = CL_WAIT;
}

/* The local reply for 8-bit bytes where they are not allowed, or -1. */
static int envelope_8bit(const sl_relay *r, sl_verb v, const uint8_t *line,
                         size_t len, size_t arg) {
  switch (sl_env_8bit(v, line, len, arg, r->utf8_txn,
                      (r->offered & SL_CAP_SMTPUTF8) != 0)) {
  case SL_ENV_OK:
    return -1;
  case SL_ENV_BAD_UTF8:
    return R_BAD_UTF8;
  case SL_ENV_NEED_SMTPUTF8:
    return R_NEED_UTF8;
  case SL_ENV_HELO_8BIT:
    return R_HELO_8BIT;
  default:
    return R_8BIT;
  }
}

/* Relay control for a RCPT that passed the syntax checks: the local
   refusal, or -1 to relay it. */
static int relay_control(const sl_relay *r, const uint8_t *arg, size_t alen) {
  const sl_rcpt_policy *p = &r->pol->rcpt;
  size_t off, n;
  if (sl_env_path(arg, alen, &off, &n) < 0)
    return R_BAD_RCPT;
  int trusted = r->authed || sl_rcpt_client_trusted(p, &r->info.client);
  switch (sl_rcpt_check(p, arg + off, n, trusted)) {
  case SL_RCPT_OK:
    return -1;
  case SL_RCPT_UNCONFIGURED:
    return R_RELAY_UNCONFIGURED;
  case SL_RCPT_SOURCE_ROUTE:
    return R_SOURCE_ROUTE;
  case SL_RCPT_PERCENT_HACK:
    return R_PERCENT_HACK;
  case SL_RCPT_BANG_PATH:
    return R_BANG_PATH;
  default:
    return R_RELAY_DENIED;
  }
}

static int is_junk(sl_verb v) {
  return v == SL_V_NOOP || v == SL_V_RSET || v == SL_V_VRFY || v == SL_V_EXPN ||
         v == SL_V_HELP;
}

/*
 * One complete command line (CRLF stripped; `whole` bytes with it).
 * Returns 1 when consumed, 0 to leave it for later.
 */
static int dispatch(sl_relay *r, const uint8_t *line, size_t len,
                    size_t whole) {
  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  const uint8_t *arg = line + c.arg;
  size_t alen = len - c.arg;
  int more = r->cin.len > whole; /* bytes pipelined after this line */
  int lr = -1;                   /* a local reply, or -1 */
  int early = 0; /* bytes follow a command that must end its group */
  int rc;

  if (r->cl == CL_AUTH) {
    r->sync_bad = 0; /* a continuation sent before the 334: counted */
    if (r->up != UP_READY) {
      r->cl = CL_CMD; /* the upstream is gone: the AUTH's 451 answers this */
      goto consumed;
    }
    if (!up_room(r, len))
      return 0;
    /* It belongs to the AUTH at the queue head.  Only a SASL response
       (base64, or "*" to cancel; RFC 4954 4) goes upstream: any other text
       cancels the exchange, so no arbitrary line reaches the upstream. */
    if (sasl_response(line, len))
      sasl_line(r, line, len);
    else
      sasl_line(r, (const uint8_t *)"*", 1);
    goto consumed;
  }
  if (is_junk(c.verb) && r->lim->junk_commands_max &&
      ++r->stats.junk > r->lim->junk_commands_max) {
    lr = R_TOO_MANY_JUNK;
    r->no_input = 1;
    goto reply;
  }
  /* RFC 2920 3.1, checked before the command runs as Postfix does: bytes
     after a command that must end a group, or that came before the reply
     to an earlier one, are a synchronisation error. */
  early = more && ends_group(r, c.verb); /* counted once consumed */
  if ((early || r->sync_bad) && r->pol->forbid_unauth_pipelining) {
    lr = R_SYNC;
    r->no_input = 1;
    goto reply;
  }
  if (r->rejected) {
    switch (c.verb) {
    case SL_V_QUIT:
      lr = R_BYE;
      r->no_input = 1;
      break;
    case SL_V_NOOP:
    case SL_V_RSET:
      lr = R_OK;
      break;
    case SL_V_HELP:
      lr = R_HELP;
      break;
    case SL_V_BDAT: {
      /* refused, but its chunk follows all the same (RFC 3030 2) */
      uint64_t size;
      int last;
      if (sl_cmd_bdat(arg, alen, &size, &last) == 0 && size) {
        r->bdat_left = size;
        r->bdat_discard = 1;
        r->cl = CL_BDAT;
      }
      lr = R_REJECTED;
      break;
    }
    case SL_V_DATA:
      /* refused like any DATA: bytes the client sent after it are a body
         to drop, never commands (as in the SL_V_DATA case below) */
      r->cl = CL_WAIT;
      r->wait_354 = 1;
      r->body_early = early != 0;
      lr = R_REJECTED;
      break;
    default:
      lr = R_REJECTED;
    }
    goto reply;
  }
  /* 8-bit bytes: only as SMTPUTF8 allows, and only well-formed UTF-8.  A
     RCPT outside a transaction gets its 503 first. */
  if (c.verb != SL_V_UNKNOWN && c.verb != SL_V_NONSMTP &&
      !(c.verb == SL_V_RCPT && !r->mail) &&
      (lr = envelope_8bit(r, c.verb, line, len, c.arg)) >= 0)
    goto reply;

  switch (c.verb) {
  case SL_V_EHLO:
  case SL_V_HELO: {
    if (!sl_cmd_helo_arg(arg, alen, r->lim->domain_max)) {
      lr = R_HELO_SYNTAX;
      break;
    }
    int via_up = r->pol->mode == SL_MODE_PASSTHROUGH || r->up == UP_READY;
    if (via_up) {
      int u = need_upstream(r);
      if (u == 0 || (u > 0 && !up_can_send(r)))
        return 0;
      if (u < 0) {
        lr = R_UPSTREAM_FAIL;
        break;
      }
      if (!up_room(r, len))
        return 0;
    }
    /* Keep the line: a later upstream connection replays it. */
    buf_release(r, &r->ehlo);
    if (buf_reserve(r, &r->ehlo, (uint32_t)len))
      return 0;
    buf_put(&r->ehlo, line, len);
    r->helo = 1;
    r->esmtp = c.verb == SL_V_EHLO;
    txn_reset(r);
    if (via_up) {
      if (r->probe_held && r->esmtp) {
        /* answered by the probe's reply, already in uin */
        r->probe_held = 0;
      } else {
        probe_drop(r);
        up_write_line(r, line, len);
      }
      up_sent(r, r->esmtp ? Q_UP_EHLO : Q_UP_HELO, 1);
      r->replayed = 1;
    } else {
      lr = r->esmtp ? R_EHLO_LOCAL : R_HELO_LOCAL;
    }
    break;
  }
  case SL_V_MAIL: {
    if (!r->helo) {
      lr = R_NEED_HELO;
      break;
    }
    if (r->mail) {
      lr = R_NESTED_MAIL;
      break;
    }
    sl_path_limits pl = {r->lim->path_max, r->lim->domain_max, size_limit(r),
                         params_allowed(r)};
    uint64_t size = 0;
    sl_path_err e = sl_cmd_check_path(arg, alen, 1, &pl, &size);
    if (e != SL_PATH_OK) {
      lr = (int)path_reply(e, 1);
      break;
    }
    int u = need_upstream(r);
    if (u == 0 || (u > 0 && !(up_can_send(r) && up_room(r, len))))
      return 0;
    if (u < 0) {
      lr = R_UPSTREAM_FAIL;
      break;
    }
    /* Only what this upstream's EHLO offered goes to it (guarantee 8):
       what cannot be dropped without changing the message is refused. */
    uint32_t has = sl_cmd_param_classes(arg, alen), up = r->up_caps;
    if ((has & SL_P_SMTPUTF8) && !(up & SL_CAP_SMTPUTF8)) {
      lr = R_UP_NO_UTF8;
      break;
    }
    if ((has & SL_P_BODY_8BIT) && !(up & SL_CAP_8BITMIME)) {
      lr = R_UP_NO_8BIT;
      break;
    }
    uint32_t drop = (up & SL_CAP_SIZE ? 0 : SL_P_SIZE) |
                    (up & SL_CAP_8BITMIME ? 0 : SL_P_BODY_7BIT) |
                    (up & SL_CAP_DSN ? 0 : SL_P_DSN) |
                    (up & SL_CAP_AUTH ? 0 : SL_P_AUTH);
    if (r->pol->identity == SL_IDENT_XFORWARD &&
        (up & SL_CAP_XFORWARD) && !r->xfwd_sent) {
      /* Postfix forgets XFORWARD attributes at each transaction's end
         (mail_reset): every MAIL needs its own.  Without PIPELINING the
         MAIL waits, unconsumed, for the XFORWARD's reply (RFC 2920). */
      uint8_t xl[512];
      size_t xn = xforward_line(r, xl);
      if (r->q_len + 2u > QUEUE_CAP || !up_room(r, xn + len + 2))
        return 0;
      up_write_line(r, xl, xn);
      up_sent(r, Q_UP_XFORWARD, 0);
      r->xfwd_sent = 1;
      if (!up_can_send(r))
        return 0;
    }
    r->xfwd_sent = 0;
    txn_reset(r);
    r->utf8_txn = sl_env_mail_smtputf8(arg, alen) != 0;
    r->bdat_cr = 0; /* a CRLF may span two chunks of one message only */
    r->bdat_down = r->bdat_go = r->bdat_failed = 0;
    up_write_params(r, line, len, drop);
    up_sent(r, Q_UP_MAIL, 0);
    r->fmsg = filter_wanted(r) ? 1u : 0u;
    ftap(r, SL_FI_MAIL, line, len);
    r->mail = 1;
    r->data.size = 0;
    break;
  }
  case SL_V_RCPT: {
    if (!r->mail) {
      lr = R_NEED_MAIL;
      break;
    }
    if (r->rcpts >= r->lim->recipients_max) {
      /* 452 (RFC 5321 4.5.3.1.10): the client delivers to the accepted
         ones and retries the rest.  A client that pipelines past the
         limit (Postfix's smtp client does) is not making errors until it
         overshoots by recipient_overshoot_max (Postfix's
         smtpd_recipient_overshoot_limit); then each one counts. */
      if (r->overshoot < r->lim->recipient_overshoot_max) {
        if (r->overshoot < UINT16_MAX)
          r->overshoot++;
        lr = R_RCPT_OVERSHOOT;
      } else {
        lr = R_TOO_MANY_RCPT;
      }
      break;
    }
    sl_path_limits pl = {r->lim->path_max, r->lim->domain_max, 0,
                         params_allowed(r)};
    sl_path_err e = sl_cmd_check_path(arg, alen, 0, &pl, NULL);
    if (e != SL_PATH_OK) {
      lr = (int)path_reply(e, 0);
      break;
    }
    if ((lr = relay_control(r, arg, alen)) >= 0) {
      r->stats.recipients_relay_denied++;
      break;
    }
    if ((rc = relay_line(r, line, len, Q_UP_RCPT)) == 0)
      return 0;
    if (rc < 0) {
      lr = R_UPSTREAM_FAIL;
      break;
    }
    r->rcpts++;
    break;
  }
  case SL_V_DATA:
    if (!r->mail)
      lr = R_NEED_MAIL;
    else if (!r->rcpts)
      lr = R_NEED_RCPT;
    else if ((rc = relay_line(r, line, len, Q_UP_DATA)) == 0)
      return 0;
    else if (rc < 0)
      lr = R_UPSTREAM_FAIL;
    /* Whatever the answer, the bytes after DATA wait for its reply: a
       354 makes them the body, a refusal makes them a body to drop, never
       commands (RFC 2920 3.1; they could smuggle a RCPT upstream). */
    r->cl = CL_WAIT;
    r->wait_354 = 1;
    r->body_early = early != 0;
    break;
  case SL_V_BDAT: {
    uint64_t size;
    int last;
    if (sl_cmd_bdat(arg, alen, &size, &last)) {
      lr = R_SYNTAX;
      break;
    }
    uint64_t max = size_limit(r);
    if (!(r->offered & SL_CAP_CHUNKING))
      lr = R_NOT_IMPL;
    else if (!r->mail)
      lr = R_NEED_MAIL;
    else if (r->bdat_failed) {
      /* the upstream refused this transaction's DATA: every chunk fails
         with its code, and LAST ends the transaction as usual */
      lr = R_BDAT_FAILED;
      if (last)
        txn_reset(r);
    } else if (!r->rcpts)
      lr = R_NEED_RCPT;
    else if (max && (size > max || r->data.size + size > max))
      lr = R_MSG_SIZE;
    if (lr < 0 && last && r->msize_len == MSIZE_CAP)
      return 0; /* wait for an earlier message's reply */
    int down = 0;
    if (lr < 0 && (rc = need_upstream(r)) <= 0) {
      if (rc == 0)
        return 0;
      lr = R_UPSTREAM_FAIL;
    }
    if (lr < 0 && (!(r->up_caps & SL_CAP_CHUNKING) || r->fmsg)) {
      /* Promised CHUNKING, but this upstream lacks it: the transaction
         goes to it as one DATA, never as BDAT (guarantee 8). */
      down = 1;
      if (!r->bdat_down) {
        if (!up_can_send(r) || !up_room(r, 4))
          return 0;
        up_write_line(r, (const uint8_t *)"DATA", 4);
        up_sent(r, Q_UP_BDAT_DATA, 1);
        r->bdat_down = 1;
        r->bdat_go = 0;
        sl_stuff_init(&r->stuff, r->lim->text_line_max);
        /* a first chunk that is LAST records its size in bdat_go() */
      } else {
        /* LAST is owed the end-of-data's reply once the terminator is
           out; other chunks are answered when read */
        q_push(r, last ? Q_UP_BDAT_LAST : (uint8_t)(Q_LOCAL + R_BDAT_OK));
        if (last)
          msize_push(r, r->data.size + size);
      }
      if (last)
        txn_reset(r);
    } else if (lr < 0) {
      rc = relay_line(r, line, len, last ? Q_UP_BDAT_LAST : Q_UP_BDAT);
      if (rc == 0)
        return 0;
      if (rc < 0) {
        lr = R_UPSTREAM_FAIL;
      } else if (last) {
        msize_push(r, r->data.size + size);
        txn_reset(r); /* the transaction ends with this chunk */
      }
    }
    /* The chunk's bytes follow whatever the answer is (RFC 3030 2). */
    r->bdat_left = size;
    r->bdat_discard = lr >= 0;
    r->bdat_last = last != 0;
    if (lr < 0)
      set_stage(r, SL_STAGE_DATA);
    if (size || (down && lr < 0)) { /* an empty chunk still ends a DATA */
      r->cl = CL_BDAT;
      throttle_start(r);
    }
    break;
  }
  case SL_V_RSET:
    if (r->up == UP_READY && !(up_can_send(r) && up_room(r, len)))
      return 0;
    txn_reset(r);
    if (r->up == UP_READY) {
      if ((rc = relay_line(r, line, len, Q_UP_RSET)) == 0)
        return 0;
      if (rc > 0)
        break;
    }
    lr = R_OK;
    break;
  case SL_V_NOOP:
    lr = R_OK;
    break;
  case SL_V_QUIT:
    lr = R_BYE;
    r->no_input = 1;
    break;
  case SL_V_VRFY:
  case SL_V_EXPN:
    if (r->pol->vrfy == SL_VRFY_RELAY) {
      if ((rc = relay_line(r, line, len, Q_UP_VRFY)) == 0)
        return 0;
      if (rc > 0)
        break;
      lr = R_UPSTREAM_FAIL;
      break;
    }
    lr = r->pol->vrfy == SL_VRFY_502 ? R_VRFY502 : R_VRFY252;
    break;
  case SL_V_HELP:
    lr = R_HELP;
    break;
  case SL_V_AUTH:
    if (!(r->offered & SL_CAP_AUTH)) {
      lr = (r->pol->features & SL_FEAT_AUTH) && r->pol->auth_requires_tls &&
                   !r->stats.tls_client
               ? R_AUTH_NEED_TLS
               : R_AUTH_UNAVAIL;
      break;
    }
    if (r->up == UP_READY && !(r->up_caps & SL_CAP_AUTH)) {
      lr = R_AUTH_UNAVAIL; /* offered by screen-first, not by this server */
      break;
    }
    if ((rc = relay_line(r, line, len, Q_UP_AUTH)) == 0)
      return 0;
    if (rc < 0) {
      lr = R_UPSTREAM_FAIL;
      break;
    }
    r->cl = CL_WAIT;
    break;
  case SL_V_STARTTLS:
    if (!(r->pol->features & SL_FEAT_STARTTLS)) {
      lr = R_TLS_UNAVAIL;
      break;
    }
    if (r->stats.tls_client) {
      lr = R_TLS_ACTIVE;
      break;
    }
    /* Plaintext after STARTTLS must never be read as commands inside TLS
       (CVE-2011-0411): drop it, count it, read nothing until the
       handshake. */
    if (more) {
      size_t extra = r->cin.len - whole;
      r->stats.starttls_discarded += (uint32_t)extra;
      event(r, SL_EV_STARTTLS_INJECTION, extra);
      whole = r->cin.len;
    }
    lr = R_TLS_READY;
    r->no_input = 1;
    r->cl = CL_WAIT;
    break;
  case SL_V_NONSMTP:
    lr = R_NONSMTP;
    r->no_input = 1;
    break;
  case SL_V_XCLIENT:
  case SL_V_XFORWARD:
  case SL_V_ETRN:
    lr = R_NOT_IMPL;
    break;
  default:
    lr = R_UNKNOWN;
    break;
  }
reply:
  if (lr >= 0)
    q_push_local(r, (enum local_reply)lr);
  if (early)
    r->stats.sync_violations++;
  r->sync_bad = 0;
  if (ends_group(r, c.verb) && r->q_len)
    r->q_sync |= 1u << ((r->q_head + r->q_len - 1) % QUEUE_CAP);
consumed:
  buf_consume(r, &r->cin, whole);
  r->stats.commands++;
  r->t_client = r->now;
  return 1;
}

static uint32_t line_limit(const sl_relay *r);

/* One line from cin: 1 consumed, 0 wait for more. */
static int step_line(sl_relay *r) {
  uint8_t *p = r->cin.p + r->cin.off;
  size_t n = r->cin.len;
  uint8_t *nl = memchr(p, '\n', n);
  if (r->skip_line) {
    /* the rest of an overlong line, up to its end */
    buf_consume(r, &r->cin, nl ? (size_t)(nl - p) + 1 : n);
    if (nl)
      r->skip_line = 0;
    return 1;
  }
  uint32_t limit = line_limit(r);
  if (r->cl == CL_AUTH && r->up == UP_READY && !up_room(r, 1))
    return 0; /* a cancel may have to go upstream */
  if (!nl) {
    if (n >= limit) {
      /* Never split a long line into two commands: refuse it whole. */
      buf_consume(r, &r->cin, n);
      r->skip_line = 1;
      goto too_long;
    }
    if (buf_free(&r->cin) == 0)
      buf_reserve(r, &r->cin, limit - (uint32_t)n); /* a long AUTH line */
    return 0;
  }
  size_t whole = (size_t)(nl - p) + 1;
  if (whole > limit) {
    buf_consume(r, &r->cin, whole);
    goto too_long;
  }
  size_t len = whole - 1;
  int bad = len == 0 || p[len - 1] != '\r';
  if (!bad) {
    len--;
    bad = memchr(p, '\r', len) != NULL || memchr(p, 0, len) != NULL;
  }
  if (bad) {
    if (r->cl == CL_AUTH && r->up != UP_READY) {
      r->cl = CL_CMD; /* the AUTH's local answer goes to this line */
    } else if (r->cl == CL_AUTH) {
      if (!up_room(r, 1))
        return 0;
      sasl_line(r, (const uint8_t *)"*", 1); /* cancel the exchange */
    } else {
      q_push_local(r, R_BAD_CHAR);
    }
    buf_consume(r, &r->cin, whole);
    r->stats.commands++;
    return 1;
  }
  return dispatch(r, p, len, whole);
too_long:
  r->stats.commands++;
  if (r->cl == CL_AUTH && r->up != UP_READY)
    r->cl = CL_CMD; /* the AUTH's local answer goes to this line */
  else if (r->cl == CL_AUTH)
    sasl_line(r, (const uint8_t *)"*", 1); /* room checked before consuming */
  else {
    q_push_local(r, R_LINE_TOO_LONG);
  }
  return 1;
}

static enum local_reply refusal(uint8_t viol) {
  if (is_smuggle(viol))
    return R_SMUGGLE;
  if (viol == SL_VIOL_LINE_TOO_LONG)
    return R_TEXT_TOO_LONG;
  if (viol == SL_VIOL_SIZE)
    return R_MSG_SIZE;
  return R_UPSTREAM_LOST;
}

/* Message data after 354: framed into uout, or discarded. */
static int step_data(sl_relay *r) {
  int discard = r->cl == CL_DISCARD;
  uint8_t *out = NULL;
  size_t room = 0;
  if (!discard) {
    if (r->msize_len == MSIZE_CAP)
      return 0; /* cannot happen: a 354 comes after earlier ends' replies */
    uint32_t want = r->cin.len + 4u < r->lim->buffer_size
                        ? r->cin.len + 4u
                        : r->lim->buffer_size / 2;
    if (buf_free(&r->uout) < 4 && buf_reserve(r, &r->uout, want))
      return 0;
    if (buf_free(&r->uout) < want && r->uout.len == 0 &&
        buf_reserve(r, &r->uout, want))
      return 0;
    room = buf_free(&r->uout);
    if (room < 4)
      return 0;
    out = buf_tail(&r->uout);
  }
  if (r->fmsg && !discard && ring_free(r) < STEP_ROOM)
    return 0; /* the end may need room for its SL_REQ_FILTER */
  size_t used = 0, made = 0;
  sl_data_status st = sl_data_run(&r->data, r->cin.p + r->cin.off, r->cin.len,
                                  out, room, &used, &made);
  /* a filtered message's terminator (".\r\n", the last bytes made at its
     end) is held back */
  size_t held = r->fmsg && !discard && st == SL_DATA_END ? 3 : 0;
  if (made - held) {
    if (r->uout.len == 0)
      r->t_uout = r->now;
    filter_body(r, out, made - held);
    buf_grow(&r->uout, made - held);
  }
  buf_consume(r, &r->cin, used);
  if (st == SL_DATA_END) {
    if (r->quiet) {
      r->quiet = 0; /* an early body after a refused DATA: no reply */
    } else if (discard) {
      q_push_local(r, refusal(r->viol));
      if (is_smuggle(r->viol))
        r->no_input = 1;
      r->mail = 0;
      r->rcpts = 0;
      r->viol = SL_VIOL_NONE;
    } else {
      txn_reset(r);
      msize_push(r, r->data.size);
      up_sent(r, Q_UP_END, 0);
      if (held)
        filter_hold(r, out + made - held, held, r->data.size);
    }
    r->cl = CL_CMD;
    return 1;
  }
  if (st == SL_DATA_VIOLATION && r->quiet) {
    /* smuggling bytes in a body that was never accepted: where it ends is
       ambiguous, so nothing after it is read; the session ends */
    event(r, SL_EV_SMUGGLING, r->data.violation);
    r->quiet = 0;
    r->cl = CL_CMD;
    r->no_input = 1;
    q_push_local(r, R_SMUGGLE);
    return 1;
  }
  if (st == SL_DATA_VIOLATION) {
    r->viol = (uint8_t)r->data.violation;
    if (is_smuggle(r->viol))
      event(r, SL_EV_SMUGGLING, r->viol);
    /* Abort the upstream transaction by closing; never send the
       terminator after a violation (SECURITY.md 1.1, rule 3). */
    up_close(r);
    sl_data_discard(&r->data, is_smuggle(r->viol));
    r->cl = CL_DISCARD;
    return 1;
  }
  return used > 0;
}

/* A chunk's content refused on the way to DATA upstream: the upstream
   transaction is aborted by closing, never by its terminator. */
static void bdat_down_refuse(sl_relay *r, sl_violation v) {
  r->viol = (uint8_t)v;
  up_close(r);
  q_fail_upstream(r, R_UPSTREAM_LOST);
  enum local_reply why = refusal((uint8_t)v);
  r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP] = (uint8_t)(Q_LOCAL + why);
  if (is_smuggle(r->viol)) {
    event(r, SL_EV_SMUGGLING, v);
    r->no_input = 1; /* as for DATA, the session ends */
  }
  r->bdat_discard = 1;
}

/* BDAT content framed as DATA for an upstream without CHUNKING. */
static int step_bdat_down(sl_relay *r) {
  if (!r->bdat_go)
    return 0; /* the chunk waits in cin for the 354 */
  size_t n = r->cin.len < r->bdat_left ? r->cin.len : (size_t)r->bdat_left;
  if (n) {
    uint32_t want =
        n + 2 < r->lim->buffer_size ? (uint32_t)n + 2 : r->lim->buffer_size / 2;
    if (buf_free(&r->uout) < 2 && buf_reserve(r, &r->uout, want))
      return 0;
    size_t used = 0, made = 0;
    sl_violation v =
        sl_stuff_run(&r->stuff, r->cin.p + r->cin.off, n, buf_tail(&r->uout),
                     buf_free(&r->uout), &used, &made);
    if (made && r->uout.len == 0)
      r->t_uout = r->now;
    filter_body(r, buf_tail(&r->uout), made);
    buf_grow(&r->uout, made);
    if (used > n)
      used = n;
    buf_consume(r, &r->cin, used);
    r->bdat_left -= used;
    r->data.size += used;
    if (v != SL_VIOL_NONE) {
      bdat_down_refuse(r, v);
      if (r->bdat_left == 0)
        r->cl = CL_CMD;
      return 1;
    }
    if (r->bdat_left)
      return used > 0;
  }
  r->cl = CL_CMD;
  if (!r->bdat_last)
    return 1;
  if (r->stuff.cr) {
    /* the message would end on a bare CR */
    bdat_down_refuse(r, SL_VIOL_BARE_CR);
    return 1;
  }
  if (buf_reserve(r, &r->uout, 5) ||
      (r->fmsg && ring_free(r) < STEP_ROOM)) {
    r->cl = CL_BDAT; /* try the end again when the pool (or ring) has room */
    return 0;
  }
  if (r->uout.len == 0)
    r->t_uout = r->now;
  if (r->fmsg) {
    /* the terminator is held for the verdict, never written yet */
    uint8_t term[5];
    size_t tn = sl_stuff_end(&r->stuff, term);
    filter_hold(r, term, tn, r->data.size);
  } else {
    buf_grow(&r->uout, sl_stuff_end(&r->stuff, buf_tail(&r->uout)));
  }
  /* the LAST chunk's entry now waits for the end-of-data's reply */
  r->up_out++;
  r->t_up = tadd(r->now, up_timeout(r, Q_UP_BDAT_LAST));
  r->bdat_down = r->bdat_go = 0;
  return 1;
}

/* A BDAT chunk's bytes: checked and copied upstream, or discarded. */
static int step_bdat(sl_relay *r) {
  if (r->bdat_down && !r->bdat_discard)
    return step_bdat_down(r);
  size_t n = r->cin.len < r->bdat_left ? r->cin.len : (size_t)r->bdat_left;
  if (!r->bdat_discard) {
    if (buf_free(&r->uout) == 0 || !r->uout.p) {
      uint32_t want = n + 1 < r->lim->buffer_size ? (uint32_t)n + 1
                                                  : r->lim->buffer_size / 2;
      if (buf_reserve(r, &r->uout, want))
        return 0;
    }
    if (n > buf_free(&r->uout))
      n = buf_free(&r->uout);
    size_t ok;
    sl_violation v = sl_bdat_check(&r->bdat_cr, r->cin.p + r->cin.off, n, &ok);
    if (v == SL_VIOL_NONE && r->bdat_last && n == r->bdat_left && r->bdat_cr) {
      /* the message would end on a bare CR: keep it back and refuse */
      v = SL_VIOL_BARE_CR;
      ok = n - 1;
    }
    if (r->uout.len == 0)
      r->t_uout = r->now;
    buf_put(&r->uout, r->cin.p + r->cin.off, ok);
    if (v != SL_VIOL_NONE) {
      r->viol = (uint8_t)v;
      event(r, SL_EV_SMUGGLING, v);
      up_close(r);
      q_fail_upstream(r, R_UPSTREAM_LOST);
      /* this chunk's own reply says why, and the session ends */
      r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP] =
          (uint8_t)(Q_LOCAL + R_SMUGGLE);
      r->no_input = 1;
      r->bdat_discard = 1;
      n = ok;
    }
  }
  buf_consume(r, &r->cin, n);
  r->bdat_left -= n;
  r->data.size += n;
  if (r->bdat_left == 0) {
    r->cl = CL_CMD;
    if (!r->cin.len)
      r->t_rec = SL_TSTAMP_NONE; /* the chunk was the record */
    return 1;
  }
  return n > 0;
}

static int step_proxy(sl_relay *r);

static int step_client(sl_relay *r) {
  int progress = 0;
  if (r->cl == CL_WAIT && r->wait_354 && r->q_len == 0 && r->cout.len == 0 &&
      !r->no_input) {
    /* A refused DATA's reply has left: bytes the client sent before it
       arrived are the body it should not have sent. */
    r->wait_354 = 0;
    if (r->body_early)
      discard_early_body(r);
    else
      r->cl = CL_CMD;
    r->body_early = 0;
    progress = 1;
  }
  while ((r->cin.len || (r->cl == CL_BDAT && r->bdat_left == 0)) &&
         r->cl < CL_CLOSING && ring_free(r) >= STEP_ROOM) {
    int rc;
    switch (r->cl) {
    case CL_PROXY:
      rc = step_proxy(r);
      break;
    case CL_CMD:
    case CL_AUTH:
      /* Pregreet bytes wait for the greeting; a client that does not read
         its replies gets no more of them. */
      if (!r->greeted || r->no_input || q_full(r) ||
          r->cout.len >= r->lim->buffer_size / 2)
        return progress;
      rc = step_line(r);
      break;
    case CL_DATA:
    case CL_DISCARD:
      rc = step_data(r);
      break;
    case CL_BDAT:
      rc = step_bdat(r);
      break;
    default:
      return progress;
    }
    if (rc <= 0)
      break;
    progress = 1;
  }
  return progress;
}

/* ---- session start, DNSBL, closing ------------------------------------ */

static void session_start(sl_relay *r) {
  r->t_client = r->now;
  if (r->info.admission == SL_ADMIT_TEMPFAIL) {
    r->dnsbl_done = 1;
    r->greeted = 1;
    r->no_input = 1;
    q_push_local(r, R_TEMPFAIL);
    return;
  }
  if (r->info.admission == SL_ADMIT_TARPIT)
    use_suspect(r, 3);
  if (r->pol->ndnsbl == 0 || r->info.client.family == SL_AF_UNSPEC)
    r->dnsbl_done = 1;
  q_push(r, Q_GREETING);
  r->greet_jitter = jitter(r);
  if (r->pol->mode == SL_MODE_PASSTHROUGH) {
    r->attempt = 0;
    up_connect(r);
  } else if (r->pol->greet_teaser && r->prof->greet_delay &&
             buf_reserve(r, &r->cout, (uint32_t)local_len(r, R_GREETING)) ==
                 0) {
    uint8_t *o = buf_tail(&r->cout);
    size_t n = put_str(o, "220-");
    n += put_str(o + n, r->pol->hostname);
    n += put_str(o + n, " ESMTP\r\n");
    buf_grow(&r->cout, n);
    r->teaser = 1;
  }
}

static int step_proxy(sl_relay *r) {
  sl_proxy_header h;
  long n = sl_proxy_parse(r->cin.p + r->cin.off, r->cin.len, &h);
  if (n == SL_ERR_INCOMPLETE)
    return 0;
  if (n < 0) {
    /* haproxy's rule: anything but a valid header aborts, unanswered */
    buf_release(r, &r->cin);
    r->no_input = 1;
    client_close_after_reply(r, SL_END_PROTOCOL);
    return 1;
  }
  if (!h.local) {
    r->info.client = h.src;
    r->info.local = h.dst;
    if (r->info.proxy_admit)
      r->info.admission =
          r->info.proxy_admit(r->info.proxy_admit_ctx, &h.src, r->now);
  }
  buf_consume(r, &r->cin, (size_t)n);
  r->cl = CL_CMD;
  if (!r->cin.len)
    r->t_rec = SL_TSTAMP_NONE; /* the header has its own deadline */
  if (r->cin.len) {
    r->pregreet = 1;
    r->stats.pregreet_bytes += r->cin.len;
  }
  session_start(r);
  return 1;
}

/* Applies one answer taken by sl_relay_complete(), if the ring has room. */
static int step_answers(sl_relay *r) {
  if (ring_free(r) < STEP_ROOM)
    return 0;
  if (r->fres)
    return filter_apply(r);
  if (r->res_connect) {
    sl_status st = (sl_status)(r->res_connect - 1);
    r->res_connect = 0;
    r->id_connect = 0;
    if (st == SL_STATUS_OK)
      up_connected(r);
    else
      up_fail(r, st == SL_STATUS_TIMEOUT ? SL_UPFAIL_TIMEOUT
                                         : SL_UPFAIL_CONNECT);
    return 1;
  }
  if (r->res_tls_client) {
    int ok = r->res_tls_client == SL_STATUS_OK + 1;
    r->res_tls_client = 0;
    r->id_tls_client = 0;
    if (r->cl != CL_TLS)
      return 1; /* the session ended meanwhile (a timeout) */
    if (ok) {
      /* RFC 3207 4.2: forget everything learnt before TLS. */
      r->stats.tls_client = 1;
      r->helo = r->esmtp = r->mail = 0;
      r->utf8_txn = r->authed = 0;
      r->rcpts = 0;
      r->offered = 0;
      buf_release(r, &r->ehlo);
      r->replayed = 0;
      r->cl = CL_CMD;
      r->no_input = 0;
      r->t_client = r->now;
    } else {
      up_close(r);
      client_close_after_reply(r, SL_END_PROTOCOL);
    }
    return 1;
  }
  if (r->res_tls_up) {
    int ok = r->res_tls_up == SL_STATUS_OK + 1;
    r->res_tls_up = 0;
    r->id_tls_up = 0;
    if (ok) {
      r->stats.tls_upstream = 1;
      up_ehlo(r); /* capabilities learnt in plaintext are not trusted */
    } else {
      up_fail(r, SL_UPFAIL_TLS);
    }
    return 1;
  }
  return 0;
}

static int step_dnsbl(sl_relay *r) {
  int progress = 0;
  if (!r->dnsbl_done && r->pol->ndnsbl &&
      r->dnsbl_asked == r->pol->ndnsbl && !r->dnsbl_pending &&
      ring_free(r) >= STEP_ROOM) {
    dnsbl_finish(r); /* every zone answered */
    progress = 1;
  }
  while (!r->dnsbl_done && r->cl != CL_PROXY &&
         r->dnsbl_asked < r->pol->ndnsbl && ring_free(r) >= STEP_ROOM) {
    uint8_t z = r->dnsbl_asked++;
    r->dnsbl_pending = (uint16_t)(r->dnsbl_pending | (1u << z));
    push_req(r, SL_REQ_DNSBL_LOOKUP, new_id(r, TAG_DNSBL + z), 0, z);
    progress = 1;
  }
  return progress;
}

static int step_close(sl_relay *r) {
  int progress = 0;
  if (r->tls_pending && r->cout.len == 0 && ring_free(r) >= 2) {
    r->tls_pending = 0;
    buf_release(r, &r->cin);
    r->t_rec = SL_TSTAMP_NONE;
    r->id_tls_client = new_id(r, TAG_TLS_CLIENT);
    push_req(r, SL_REQ_STARTTLS_CLIENT, r->id_tls_client, 0, 0);
    r->cl = CL_TLS;
    r->t_phase = r->now;
    progress = 1;
  }
  if (r->cl_eof && r->cl < CL_CLOSING && ring_free(r) >= 2) {
    int line_left =
        r->cin.len && memchr(r->cin.p + r->cin.off, '\n', r->cin.len);
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        r->cl == CL_PROXY || r->cl == CL_TLS ||
        (r->cl == CL_AUTH && !line_left)) {
      /* an unfinished message or SASL exchange is never completed */
      up_close(r);
      client_close_after_reply(r, SL_END_CLIENT_CLOSED);
      progress = 1;
    } else if ((r->q_len == 0 || (r->q_len == 1 && q_peek(r) == Q_GREETING)) &&
               !r->tls_pending &&
               (!r->cin.len ||
                !memchr(r->cin.p + r->cin.off, '\n', r->cin.len) ||
                r->no_input || !r->greeted)) {
      client_close_after_reply(r, SL_END_CLIENT_CLOSED);
      progress = 1;
    }
  }
  if (r->cl == CL_CLOSING && r->greet_held) {
    /* a greeting held back for a client that is gone is never sent */
    buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl == CL_CLOSING && r->cout.len == 0 && ring_free(r) >= 2) {
    push_req(r, SL_REQ_CLOSE_CLIENT, new_id(r, 0), 0, 0);
    r->close_sent = 1;
    r->cl = CL_CLOSED;
    r->stats.end = r->now;
    buf_release(r, &r->cin);
    progress = 1;
  }
  if (r->cl == CL_CLOSED && !r->end_sent && ring_free(r) >= 2) {
    if (r->up == UP_READY && r->up_out == 0 && r->uout.len == 0) {
      if (up_room(r, 4)) {
        up_write_line(r, (const uint8_t *)"QUIT", 4);
        r->up = UP_QUIT;
      } else {
        up_close(r);
      }
      progress = 1;
    } else if (r->up != UP_NONE && r->up != UP_QUIT) {
      up_close(r);
      progress = 1;
    }
    if (r->up == UP_NONE) {
      buf_release(r, &r->cout);
      buf_release(r, &r->ehlo);
      buf_release(r, &r->uin);
      buf_release(r, &r->uout);
      /* Screening ends with the session: no lookup or score after
         SESSION_END (guarantee 10), late answers are stale. */
      r->dnsbl_done = 1;
      r->dnsbl_pending = 0;
      event(r, SL_EV_SESSION_END, r->stats.end_reason);
      r->end_sent = 1;
      progress = 1;
    }
  }
  return progress;
}

static int step_expiry(sl_relay *r);
static int client_read_ok(const sl_relay *r);
static int upstream_read_ok(const sl_relay *r);

/* Per-record deadlines (record_timeout, Postfix's smtpd_per_record_deadline):
   the time from the first byte of a line to its LF, whatever the reads in
   between, so a peer dripping a byte at a time is bounded too.  n bytes
   just arrived at the tail of b. */
static sl_tstamp record_start(sl_tstamp t, const sl_buf *b, size_t n,
                              sl_tstamp now) {
  const uint8_t *p = b->p + b->off + b->len - n;
  if (memchr(p, '\n', n))
    return p[n - 1] == '\n' ? SL_TSTAMP_NONE : now; /* a new line began */
  return t == SL_TSTAMP_NONE ? now : t;
}

/* The record clocks run only while the relay reads that leg: a pause in
   reading (flow control, a throttle, a full ring) is the relay's own, so a
   line's clock starts again when reading resumes. */
static void record_clocks(sl_relay *r) {
  int c = client_read_ok(r), u = upstream_read_ok(r);
  if (c && !r->c_reading && r->t_rec != SL_TSTAMP_NONE)
    r->t_rec = r->now;
  if (u && !r->u_reading && r->t_urec != SL_TSTAMP_NONE)
    r->t_urec = r->now;
  r->c_reading = c != 0;
  r->u_reading = u != 0;
}

static void run(sl_relay *r) {
  /* Every step consumes input or changes state when it reports progress,
     so this ends; the bound only guards against a bug looping forever. */
  for (int i = 0;; i++) {
    if (i == 100000) {
      r->err = (uint32_t)-SL_ERR_INTERNAL;
      break;
    }
    int p = step_answers(r);
    p |= step_expiry(r);
    p |= step_dnsbl(r);
    p |= step_replies(r);
    p |= step_upstream(r);
    p |= step_client(r);
    p |= step_close(r);
    if (!p)
      break;
  }
  record_clocks(r);
}

/* ---- the public API ----------------------------------------------------- */

/* Every entry point: time must not go backwards (ngtcp2's rule). */
static int enter(sl_relay *r, sl_tstamp now) {
  if (!r)
    return SL_ERR_INVALID_ARGUMENT;
  if (r->err && sl_err_is_fatal(-(int)r->err))
    return -(int)r->err;
  if (now < r->now) {
    r->err = (uint32_t)-SL_ERR_TIME_BACKWARDS;
    return SL_ERR_TIME_BACKWARDS;
  }
  r->now = now;
  if (r->starved && now >= r->t_retry)
    r->starved = 0;
  if (throttled(r))
    refill(r);
  return 0;
}

static int leave(sl_relay *r) {
  run(r);
  return r->err ? -(int)r->err : 0;
}

size_t sl_relay_size(const sl_limits *limits) {
  (void)limits;
  return (sizeof(struct sl_relay) + 7u) & ~(size_t)7u;
}

size_t sl_relay_memory_bound(const sl_limits *limits) {
  /* cin, cout, uin, uout; the EHLO line and a filter's refusal */
  return sl_relay_size(limits) + 4u * (size_t)limits->buffer_size +
         2u * (size_t)limits->small_buffer_size;
}

int sl_relay_init(sl_relay **out, void *mem, size_t memlen,
                  const sl_limits *limits, const sl_policy *policy,
                  const sl_pool *pool, const sl_conn_info *info, uint64_t seed,
                  sl_tstamp now) {
  if (!out || !mem || !limits || !policy || !pool || !pool->get || !pool->put ||
      !info || ((uintptr_t)mem & 7u) || now == SL_TSTAMP_NONE)
    return SL_ERR_INVALID_ARGUMENT;
  if (sl_limits_check(limits) || sl_policy_check(policy))
    return SL_ERR_INVALID_ARGUMENT;
  if (memlen < sl_relay_size(limits))
    return SL_ERR_NOBUF;
  sl_relay *r = mem;
  memset(r, 0, sizeof(*r));
  r->lim = limits;
  r->pol = policy;
  r->pool = pool;
  r->prof = &policy->normal;
  r->info = *info;
  r->now = now;
  r->stats.start = now;
  r->stats.end = SL_TSTAMP_NONE;
  r->t_client = r->t_phase = now;
  r->t_release = r->t_up = r->t_retry = SL_TSTAMP_NONE;
  r->t_rec = r->t_urec = SL_TSTAMP_NONE;
  r->t_stutter = r->t_tokens = now;
  sl_pcg32 g;
  sl_pcg32_seed(&g, seed, RNG_STREAM);
  r->rng = g.state;
  r->stats.tls_client = (info->flags & SL_CONN_TLS) != 0;
  if (info->flags & SL_CONN_EXPECT_PROXY)
    r->cl = CL_PROXY;
  else {
    r->cl = CL_CMD;
    session_start(r);
  }
  *out = r;
  return leave(r);
}

void sl_relay_set_client_name(sl_relay *r, const char *name) {
  if (r)
    r->info.client_name = name;
}

void sl_relay_free(sl_relay *r) {
  if (!r)
    return;
  buf_release(r, &r->cin);
  buf_release(r, &r->cout);
  buf_release(r, &r->uin);
  buf_release(r, &r->uout);
  buf_release(r, &r->ehlo);
  buf_release(r, &r->frep);
}

static int dataish(const sl_relay *r) {
  /* A PROXY v2 header with TLVs can exceed a small buffer. */
  return r->cl == CL_PROXY || r->cl == CL_DATA || r->cl == CL_DISCARD ||
         r->cl == CL_BDAT || (r->cl == CL_WAIT && !r->no_input);
}

/* The longest line the client may send next: an AUTH command and its SASL
   continuations may be auth_line_max long (RFC 4954 4), every other command
   command_line_max. */
static uint32_t line_limit(const sl_relay *r) {
  if (r->cl == CL_AUTH ||
      (r->cin.len >= 5 && sl_ieq(r->cin.p + r->cin.off, "AUTH ", 5)))
    return r->lim->auth_line_max;
  return r->lim->command_line_max;
}

/* How many client bytes to hold: a long AUTH line needs the large buffer,
   or reading would stop short of its end and the line would never get its
   reply (guarantee 9). */
static uint32_t cin_target(const sl_relay *r) {
  return dataish(r) || line_limit(r) > r->lim->small_buffer_size
             ? r->lim->buffer_size
             : r->lim->small_buffer_size;
}

/* Throttle (policy data_rate): a token bucket refilled from now. */
static void refill(sl_relay *r) {
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
static void throttle_start(sl_relay *r) {
  if (r->prof->data_rate) {
    r->tokens = burst(r);
    r->t_tokens = r->now;
  }
}

static int throttled(const sl_relay *r) {
  return r->prof->data_rate &&
         (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT);
}

static int client_read_ok(const sl_relay *r) {
  if (r->cl > CL_BDAT || r->cl == CL_TLS || r->no_input || r->cl_eof ||
      r->starved)
    return 0;
  if (ring_free(r) < STEP_ROOM)
    return 0; /* backpressure: the driver drains requests first */
  if (r->cin.len >= cin_target(r))
    return 0;
  if (throttled(r) && r->tokens == 0)
    return 0;
  return 1;
}

uint8_t *sl_relay_client_in_buf(sl_relay *r, size_t *cap, sl_tstamp now) {
  if (cap)
    *cap = 0;
  if (!cap || enter(r, now))
    return NULL;
  if (throttled(r))
    refill(r);
  if (!client_read_ok(r))
    return NULL;
  uint32_t target = cin_target(r);
  if ((buf_free(&r->cin) == 0 || r->cin.cap < target) &&
      buf_reserve(r, &r->cin, target - r->cin.len))
    return NULL;
  size_t room = buf_free(&r->cin);
  if (throttled(r) && room > r->tokens)
    room = (size_t)r->tokens;
  *cap = room;
  return buf_tail(&r->cin);
}

int sl_relay_client_in_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > buf_free(&r->cin))
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    buf_grow(&r->cin, n);
    r->stats.client_bytes_in += n;
    /* The command timeout counts until a whole line is in (a drip of
       bytes does not restart it); DATA's timeout is per block (4.5.3.2.5). */
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        memchr(buf_tail(&r->cin) - n, '\n', n))
      r->t_client = now;
    r->t_rec = record_start(r->t_rec, &r->cin, n, now);
    if (throttled(r))
      r->tokens = r->tokens > n ? r->tokens - n : 0;
    if (!r->greeted && r->cl != CL_PROXY) {
      r->pregreet = 1;
      r->stats.pregreet_bytes += (uint32_t)n;
    }
    if (r->wait_354 && r->cl == CL_WAIT) {
      if (!r->body_early) { /* counted once per DATA */
        r->body_early = 1;
        if (sync_violation(r) && r->q_len)
          refuse_sync(r);
      }
    } else if (r->q_sync && r->greeted && !r->sync_bad) {
      /* before the reply to a command that ends a group */
      r->sync_bad = sync_violation(r) != 0;
    }
  } else if (r->cin.len == 0) {
    buf_release(r, &r->cin);
  }
  return leave(r);
}

/* The copying convenience over in_buf/in_ack, for either leg. */
static long feed(sl_relay *r, int up, const uint8_t *data, size_t len,
                 sl_tstamp now) {
  size_t done = 0;
  while (done < len) {
    size_t cap;
    uint8_t *p = up ? sl_relay_upstream_in_buf(r, &cap, now)
                    : sl_relay_client_in_buf(r, &cap, now);
    if (!p || cap == 0)
      break;
    size_t n = len - done < cap ? len - done : cap;
    memcpy(p, data + done, n);
    int e = up ? sl_relay_upstream_in_ack(r, n, now)
               : sl_relay_client_in_ack(r, n, now);
    if (e)
      return e;
    done += n;
  }
  if (r && r->err && sl_err_is_fatal(-(int)r->err))
    return -(long)r->err;
  return (long)done;
}

long sl_relay_feed_client(sl_relay *r, const uint8_t *data, size_t len,
                          sl_tstamp now) {
  return feed(r, 0, data, len, now);
}

static int upstream_read_ok(const sl_relay *r) {
  return r->up >= UP_GREETING && r->up != UP_TLS && !r->up_eof && !r->starved &&
         r->uin.len < r->lim->buffer_size && ring_free(r) >= STEP_ROOM;
}

uint8_t *sl_relay_upstream_in_buf(sl_relay *r, size_t *cap, sl_tstamp now) {
  if (cap)
    *cap = 0;
  if (!cap || enter(r, now) || !upstream_read_ok(r))
    return NULL;
  uint32_t need = r->uin.len < r->lim->small_buffer_size
                      ? r->lim->small_buffer_size - r->uin.len
                      : r->lim->buffer_size - r->uin.len;
  if (buf_free(&r->uin) == 0 && buf_reserve(r, &r->uin, need))
    return NULL;
  *cap = buf_free(&r->uin);
  return buf_tail(&r->uin);
}

int sl_relay_upstream_in_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > buf_free(&r->uin))
    return SL_ERR_INVALID_ARGUMENT;
  buf_grow(&r->uin, n);
  r->stats.upstream_bytes_in += n;
  if (n)
    r->t_urec = record_start(r->t_urec, &r->uin, n, now);
  if (r->uin.len == 0)
    buf_release(r, &r->uin);
  return leave(r);
}

long sl_relay_feed_upstream(sl_relay *r, const uint8_t *data, size_t len,
                            sl_tstamp now) {
  return feed(r, 1, data, len, now);
}

int sl_relay_client_eof(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  r->cl_eof = 1;
  return leave(r);
}

int sl_relay_upstream_eof(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (r->up != UP_NONE && r->up != UP_CONNECTING)
    r->up_eof = 1;
  return leave(r);
}

/* The body of sl_relay_abort(); pushes at most one request (a close). */
static void abort_now(sl_relay *r) {
  if (r->cl < CL_CLOSING) {
    if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT ||
        r->up_out)
      up_close(r);
    client_close_after_reply(r, SL_END_CLIENT_CLOSED);
  }
  r->q_len = 0;
  msize_clear(r);
  r->no_input = 1;
  r->tls_pending = 0;
  buf_release(r, &r->cout);
  r->greet_held = 0;
}

int sl_relay_abort(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  abort_now(r);
  return leave(r);
}

int sl_relay_complete(sl_relay *r, const sl_completion *c, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (!c)
    return SL_ERR_INVALID_ARGUMENT;
  uint32_t tag = c->id & 0xffu;
  int ok = c->status == SL_STATUS_OK;
  uint8_t res = (uint8_t)(c->status + 1);
  if (c->status > SL_STATUS_TIMEOUT)
    return SL_ERR_INVALID_ARGUMENT;
  /* Connect and TLS answers are applied by step_answers() in run(), when
     the ring has room for the requests they make (guarantee 10). */
  if (c->id == 0) {
    return SL_ERR_UNKNOWN_REQUEST;
  } else if (tag == TAG_CONNECT) {
    if (c->id != r->id_connect || r->up != UP_CONNECTING || r->res_connect)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_connect = res;
  } else if (tag == TAG_TLS_CLIENT) {
    if (c->id != r->id_tls_client || r->cl != CL_TLS || r->res_tls_client)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_tls_client = res;
  } else if (tag == TAG_TLS_UPSTREAM) {
    if (c->id != r->id_tls_up || r->up != UP_TLS || r->res_tls_up)
      return SL_ERR_UNKNOWN_REQUEST;
    r->res_tls_up = res;
  } else if (tag >= TAG_DNSBL && tag < TAG_DNSBL + SL_DNSBL_ZONES_MAX) {
    uint32_t z = tag - TAG_DNSBL;
    if (r->dnsbl_done || !(r->dnsbl_pending & (1u << z)))
      return SL_ERR_UNKNOWN_REQUEST;
    r->dnsbl_pending = (uint16_t)(r->dnsbl_pending & ~(1u << z));
    if (ok && listed(&r->pol->dnsbl[z], c))
      r->stats.score += r->pol->dnsbl[z].weight;
    /* the last answer: step_dnsbl() decides */
  } else {
    return SL_ERR_UNKNOWN_REQUEST;
  }
  return leave(r);
}

int sl_relay_filter_verdict(sl_relay *r, uint32_t id, int verdict,
                            const uint8_t *text, size_t len, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (verdict < 0 || verdict > (int)SL_VERDICT_REJECT || (text == NULL && len))
    return SL_ERR_INVALID_ARGUMENT;
  sl_verdict v = (sl_verdict)verdict;
  if (id == 0 || id != r->id_filter || !r->fheld || r->fres)
    return SL_ERR_UNKNOWN_REQUEST;
  if (v == SL_VERDICT_DISCARD)
    v = SL_VERDICT_REJECT; /* never a 250 the upstream did not give */
  if (v == SL_VERDICT_TEMPFAIL || v == SL_VERDICT_REJECT) {
    /* The filter's words, never its framing (guarantee 5). */
    uint8_t line[SL_FILTER_REPLY_MAX];
    int n = sl_filter_reply(line, v, text, len);
    if (n <= 0)
      return SL_ERR_INTERNAL;
    r->fcode = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
                          (line[2] - '0'));
    buf_release(r, &r->frep);
    if ((uint32_t)n <= r->lim->small_buffer_size &&
        buf_reserve(r, &r->frep, (uint32_t)n) == 0)
      buf_put(&r->frep, line, (size_t)n);
    else
      r->fcode = v == SL_VERDICT_REJECT ? 550 : 451; /* the fixed text's */
  }
  r->fres = (uint8_t)(v + 1);
  return leave(r);
}

const uint8_t *sl_relay_client_out(sl_relay *r, size_t *len, sl_tstamp now) {
  if (len)
    *len = 0;
  if (!len || enter(r, now) || !r->cout.len || r->greet_held)
    return NULL;
  size_t n = r->cout.len;
  if (r->prof->stutter_bytes) {
    if (now < r->t_stutter)
      return NULL;
    if (n > r->prof->stutter_bytes)
      n = r->prof->stutter_bytes;
  }
  *len = n;
  return r->cout.p + r->cout.off;
}

int sl_relay_client_out_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > r->cout.len || (n && r->greet_held))
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    buf_consume(r, &r->cout, n);
    r->stats.client_bytes_out += n;
    r->t_client = now;
    if (r->prof->stutter_bytes)
      r->t_stutter = tadd(now, r->prof->stutter_interval);
  }
  return leave(r);
}

const uint8_t *sl_relay_upstream_out(sl_relay *r, size_t *len, sl_tstamp now) {
  if (len)
    *len = 0;
  if (!len || enter(r, now) || !r->uout.len || r->up == UP_CONNECTING ||
      r->up == UP_TLS || r->up == UP_NONE)
    return NULL;
  *len = r->uout.len;
  return r->uout.p + r->uout.off;
}

int sl_relay_upstream_out_ack(sl_relay *r, size_t n, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  if (n > r->uout.len)
    return SL_ERR_INVALID_ARGUMENT;
  if (n) {
    buf_consume(r, &r->uout, n);
    r->stats.upstream_bytes_out += n;
    r->t_uout = now;
  }
  return leave(r);
}

int sl_relay_next_request(sl_relay *r, sl_request *out) {
  if (!r || !out || r->ring_len == 0)
    return 0;
  const ring_ent *e = &r->ring[r->ring_head];
  memset(out, 0, sizeof(*out));
  out->type = (sl_request_type)e->type;
  out->id = e->id;
  switch (e->type) {
  case SL_REQ_CONNECT_UPSTREAM:
    out->u.connect.attempt = (uint32_t)e->arg;
    break;
  case SL_REQ_DNSBL_LOOKUP:
    out->u.dnsbl.zone = (uint32_t)e->arg;
    break;
  case SL_REQ_EVENT:
    out->u.event.kind = (sl_event_kind)e->kind;
    out->u.event.arg = e->arg;
    break;
  default:
    break;
  }
  r->ring_head = (uint8_t)((r->ring_head + 1) % RING_CAP);
  r->ring_len--;
  /* A full ring may have paused input: let it go on. */
  run(r);
  return 1;
}

/* Is the relay waiting on the client to send (command or data)? */
static int waiting_for_client(const sl_relay *r) {
  if (r->no_input || r->cl_eof)
    return 0;
  if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT)
    return 1;
  /* in CL_AUTH the queue holds the AUTH that waits for this client */
  return r->cl == CL_AUTH || (r->cl == CL_CMD && r->greeted && r->q_len == 0);
}

/* When the client's or the upstream's unfinished line runs out of time,
   or SL_TSTAMP_NONE. */
static sl_tstamp client_record_due(const sl_relay *r) {
  if (r->t_rec == SL_TSTAMP_NONE || r->cl >= CL_CLOSING ||
      r->cl == CL_PROXY || r->cl == CL_TLS || !client_read_ok(r))
    return SL_TSTAMP_NONE;
  return tadd(r->t_rec, r->lim->record_timeout);
}

static sl_tstamp upstream_record_due(const sl_relay *r) {
  if (r->t_urec == SL_TSTAMP_NONE || r->up < UP_GREETING || r->up == UP_TLS ||
      r->up == UP_QUIT || !upstream_read_ok(r))
    return SL_TSTAMP_NONE;
  return tadd(r->t_urec, r->lim->record_timeout);
}

sl_tstamp sl_relay_next_deadline(const sl_relay *r) {
  if (!r || r->end_sent)
    return SL_TSTAMP_NONE;
  const sl_limits *l = r->lim;
  sl_tstamp t = SL_TSTAMP_NONE;
  if (r->starved)
    t = tmin(t, r->t_retry);
  if (r->cl == CL_PROXY)
    t = tmin(t, tadd(r->t_phase, l->proxy_header_timeout));
  if (r->cl == CL_TLS)
    t = tmin(t, tadd(r->t_phase, l->tls_handshake_timeout));
  if (!r->dnsbl_done && r->cl != CL_PROXY)
    t = tmin(t, tadd(r->stats.start, r->pol->dnsbl_timeout));
  if (r->q_len && q_peek(r) == Q_GREETING && r->prof->greet_delay) {
    /* once passed, the greeting waits on something else (the upstream) */
    sl_tstamp due =
        tadd(r->stats.start, r->prof->greet_delay + r->greet_jitter);
    if (due > r->now)
      t = tmin(t, due);
  }
  if (r->cl < CL_CLOSING) /* a closing session sends no more replies */
    t = tmin(t, r->t_release);
  if (r->up != UP_NONE && r->up != UP_READY)
    t = tmin(t, r->t_up);
  if (r->up == UP_READY && r->up_out)
    t = tmin(t, r->t_up);
  if (r->uout.len && r->up != UP_CONNECTING && r->up != UP_TLS)
    t = tmin(t, tadd(r->t_uout, l->upstream_command_timeout));
  t = tmin(t, upstream_record_due(r));
  t = tmin(t, client_record_due(r));
  if (r->cl < CL_CLOSED) {
    if (r->cl_eof && r->cl < CL_CLOSING)
      t = tmin(t, tadd(r->t_client, l->command_timeout));
    if (waiting_for_client(r))
      t = tmin(t, tadd(r->t_client, (r->cl == CL_DATA || r->cl == CL_DISCARD ||
                                     r->cl == CL_BDAT)
                                        ? l->data_block_timeout
                                        : l->command_timeout));
    if (r->cout.len && !r->greet_held) {
      t = tmin(t, tadd(r->t_client, l->send_timeout));
      if (r->prof->stutter_bytes && r->t_stutter > r->now)
        t = tmin(t, r->t_stutter);
    }
    if (throttled(r) && r->tokens == 0) /* until the next token */
      t = tmin(t, r->t_tokens +
                      (SL_SEC + r->prof->data_rate - 1) / r->prof->data_rate);
    t = tmin(t, tadd(r->stats.start, l->session_timeout));
  }
  /* What is due but waits for a pool buffer is retried, not spun on. */
  if (r->starved && t <= r->now)
    t = r->t_retry;
  return t;
}

/* Ends the session with a goodbye that jumps the queue: the replies still
   owed will never come (timeouts, the session cap). */
static void abort_now(sl_relay *r);

static void force_close(sl_relay *r, enum local_reply id) {
  if (r->cl >= CL_CLOSING)
    return;
  if (r->cl_eof) {
    /* The client left: no goodbye can reach it, and one that waits for a
       pool buffer would keep the session open past its timeouts
       (guarantee 7). */
    abort_now(r);
    if (id == R_TIMEOUT)
      r->stats.end_reason = SL_END_TIMEOUT;
    return;
  }
  if (r->cl == CL_DATA || r->cl == CL_DISCARD || r->cl == CL_BDAT || r->up_out)
    up_close(r);
  r->q_len = 0;
  msize_clear(r);
  r->q_sync = 0;
  r->wait_354 = r->body_early = r->quiet = 0;
  r->no_input = 1;
  r->tls_pending = 0;
  if (r->greet_held) {
    buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl == CL_PROXY || r->cl == CL_TLS) {
    client_close_after_reply(r, SL_END_TIMEOUT);
    return;
  }
  r->cl = CL_CMD;
  q_push_local(r, id);
}

int sl_relay_handle_expiry(sl_relay *r, sl_tstamp now) {
  int e = enter(r, now);
  if (e)
    return e;
  r->expire = 1; /* step_expiry() runs the timers */
  return leave(r);
}

/* The timers due at r->now, once the ring has room for everything they may
   push (a DNSBL verdict, a close, an upstream failure: guarantee 10). */
static int step_expiry(sl_relay *r) {
  if (!r->expire || ring_free(r) < RING_CAP - 1)
    return 0;
  r->expire = 0;
  sl_tstamp now = r->now;
  const sl_limits *l = r->lim;
  if (!r->dnsbl_done && r->cl != CL_PROXY &&
      now >= tadd(r->stats.start, r->pol->dnsbl_timeout))
    dnsbl_finish(r); /* late answers count as "not listed" */
  if (r->cl < CL_CLOSING) {
    if ((r->cl == CL_PROXY &&
         now >= tadd(r->t_phase, l->proxy_header_timeout)) ||
        (r->cl == CL_TLS &&
         now >= tadd(r->t_phase, l->tls_handshake_timeout))) {
      force_close(r, R_TIMEOUT);
    } else if (r->cout.len && !r->greet_held &&
               now >= tadd(r->t_client, l->send_timeout)) {
      /* The client does not read: no goodbye can reach it. */
      r->stats.end_reason = SL_END_TIMEOUT;
      abort_now(r);
      r->stats.end_reason = SL_END_TIMEOUT;
      return 1;
    } else if (waiting_for_client(r) &&
               now >=
                   tadd(r->t_client, (r->cl == CL_DATA || r->cl == CL_DISCARD ||
                                      r->cl == CL_BDAT)
                                         ? l->data_block_timeout
                                         : l->command_timeout)) {
      force_close(r, R_TIMEOUT);
    } else if (r->cl_eof && now >= tadd(r->t_client, l->command_timeout)) {
      /* The client left with commands still unread, and the relay cannot
         get on with them (a pool refusing buffers): they get no more time
         than a command would (guarantee 7). */
      force_close(r, R_TIMEOUT);
    } else if (now >= client_record_due(r)) {
      force_close(r, R_TIMEOUT); /* a line dripping in */
    } else if (now >= tadd(r->stats.start, l->session_timeout)) {
      force_close(r, R_TIMEOUT);
    }
  }
  if (now >= upstream_record_due(r)) {
    up_fail(r, SL_UPFAIL_TIMEOUT); /* a reply line dripping in */
    return 1;
  }
  if (r->up != UP_NONE && r->up != UP_QUIT && r->t_up != SL_TSTAMP_NONE &&
      now >= r->t_up && (r->up != UP_READY || r->up_out))
    up_fail(r, SL_UPFAIL_TIMEOUT);
  else if (r->up == UP_QUIT &&
           now >= tadd(r->t_uout, l->upstream_command_timeout))
    up_close(r);
  else if (r->uout.len && r->up == UP_READY &&
           now >= tadd(r->t_uout, l->upstream_command_timeout))
    up_fail(r, SL_UPFAIL_TIMEOUT);
  return 1;
}

unsigned sl_relay_want(const sl_relay *r) {
  if (!r)
    return 0;
  unsigned w = 0;
  if (r->ring_len)
    w |= SL_WANT_REQUESTS;
  if (r->end_sent)
    return r->ring_len ? w : SL_CLOSED;
  if (client_read_ok(r))
    w |= SL_WANT_CLIENT_READ;
  if (r->cout.len && !r->greet_held &&
      (!r->prof->stutter_bytes || r->now >= r->t_stutter))
    w |= SL_WANT_CLIENT_WRITE;
  if (upstream_read_ok(r))
    w |= SL_WANT_UPSTREAM_READ;
  if (r->uout.len && r->up != UP_CONNECTING && r->up != UP_TLS &&
      r->up != UP_NONE)
    w |= SL_WANT_UPSTREAM_WRITE;
  return w;
}

int sl_relay_last_error(const sl_relay *r) {
  return r ? -(int)r->err : SL_ERR_INVALID_ARGUMENT;
}

const sl_stats *sl_relay_stats(const sl_relay *r) {
  return r ? &r->stats : NULL;
}

const sl_addr *sl_relay_client_addr(const sl_relay *r) {
  return r ? &r->info.client : NULL;
}
