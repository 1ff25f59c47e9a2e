/*
 * sl_relay_int.h: what the files of the relay share, and nothing else
 * (sl_relay.c, sl_relay_replies.c, sl_relay_upstream.c, sl_relay_client.c,
 * sl_relay_screen.c).  Not installed; only core/src includes it.
 *
 * Layers.  sl_relay.c holds the API and run(), which calls one step per
 * layer: replies (sl_relay_replies.c) above the two legs, the upstream
 * (sl_relay_upstream.c) and the client (sl_relay_client.c); screening
 * (sl_relay_screen.c) serves them.  Pure pieces that need no relay state
 * are modules of their own, with their own headers and tests (XCLIENT and
 * XFORWARD lines: sl_xclient.h; the throttle's token bucket: sl_tbucket.h;
 * DNSBL matching and the greeting verdict: sl_dnsbl.h).
 *
 * Names.  A function used by more than one of these files is named sl__*
 * (libuv's uv__ convention) and declared here, under the file that defines
 * it (one-line helpers are static inline here); everything else stays
 * static in its file.  Types, enum constants and macros keep their short
 * names: they have no linkage and never leave the core.
 */
#ifndef SL_RELAY_INT_H
#define SL_RELAY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sl_data.h"
#include "sl_reply.h"
#include "sl_tbucket.h"
#include "sl_xclient.h"
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

/* The preamble's own lines.  One the pool has no buffer for stays due
   (pre_due) and is written before any further reply is read, so it is never
   lost (guarantee 8) and the preamble's timeout keeps running meanwhile
   (guarantee 7). */
enum sl_pre_line {
  SL_PRE_NONE,
  SL_PRE_EHLO_OWN,    /* EHLO <hostname> */
  SL_PRE_HELO_OWN,    /* HELO <hostname> */
  SL_PRE_CLIENT_EHLO, /* the client's EHLO or HELO line */
  SL_PRE_STARTTLS,
  SL_PRE_XCLIENT
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
  Q_UP_DATA_SYNC,   /* a DATA whose body came too early: its reply is
                       swallowed, the client gets 554 and the upstream leg
                       closes before any body byte is sent */
  Q_UP_BDAT_DATA,   /* the DATA that carries a BDAT transaction to an upstream
                       without CHUNKING: its 354 is swallowed and the entry
                       becomes the first chunk's reply; any other reply is
                       that chunk's */
  Q_UP_RSET_OWN,    /* sluice's own RSET after that DATA was refused: its
                       reply goes to no client command */
  Q_UP_XFORWARD,    /* sluice's own XFORWARD before an upstream MAIL: its 250
                       goes to no client command, a refusal fails the leg */
  Q_UP_BDAT_FLAST,  /* a filtered transaction's LAST chunk, sent upstream as
                       a plain chunk ahead of the held "BDAT 0 LAST": read
                       once the verdict is in; a 2xx goes to no one, a
                       refusal is the client's reply under an accept and
                       is dropped under a refusal (the filter's wins) */
  Q_UP_RSET_FILTER, /* the RSET that ends a chunked message the filters
                       refused: its reply goes to no one, then the client
                       gets the filter's (R_FILTER, R_FILTER_TEMP) */
  Q_UP_MAIL_HELD,   /* the MAIL answered locally (mail_held), sent once a RCPT
                       passed its check: its 2xx goes to no client command, a
                       refusal becomes the transaction's (mail_fail) */
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
  R_AUTH_LOST,
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
  R_CHECK,       /* policy.rcpt_check refused: chk_code and chk_text */
  R_MAIL_HELD,   /* a MAIL kept until a RCPT passes its check */
  R_MAIL_FAILED, /* that MAIL was refused when it went upstream: the code
                    is mail_fail_code, the text in chk's first half */
  R_COUNT
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

/* A request as the ring keeps it, 16 bytes where an sl_request takes 32
   (the ring is part of every idle session's state): an event's payload is
   at most a code and one number.  sl__event() and sl_relay_next_request()
   are the only places that pack and unpack it. */
typedef struct ring_ent {
  uint8_t type;  /* sl_request_type */
  uint8_t kind;  /* sl_event_kind */
  uint16_t code; /* ev.message.code, ev.refusal.code */
  uint32_t id;
  uint64_t arg; /* connect.attempt, dnsbl.zone or the event's number
                   (ev.refusal.command) */
} ring_ent;

/* Request id tags (low 8 bits); the rest is a sequence number, so answers
   to an earlier connect attempt or handshake are recognised as stale. */
enum {
  TAG_CONNECT = 1,
  TAG_TLS_CLIENT = 2,
  TAG_TLS_UPSTREAM = 3,
  TAG_FILTER = 4,
  TAG_CHECK = 5,
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
  sl_tstamp t_retry;   /* pool was empty: try again at */
  sl_tstamp t_rec;     /* first byte of the client's unfinished line */
  sl_tstamp t_urec;    /* first byte of the upstream's unfinished line */
  sl_tstamp t_bye;     /* a forced close queued its goodbye at */
  sl_tstamp t_starved; /* every pass since has had a buffer refused */
  sl_duration greet_jitter;

  uint64_t bdat_left;
  sl_tbucket bucket; /* the data_rate throttle */
  uint64_t up_size;
  sl_data data;

  uint32_t seq; /* request id sequence */
  uint32_t id_connect, id_tls_client, id_tls_up;
  uint32_t err;            /* sticky API error (stored negated) */
  uint32_t up_caps;        /* upstream EHLO capabilities */
  uint32_t offered;        /* capabilities offered to the client */
  uint16_t dnsbl_pending;  /* zones not yet answered */
  uint16_t rcpts;          /* accepted + pending recipients */
  uint16_t bdat_fail_code; /* the upstream's refusal of a BDAT's DATA */
  sl_stuff stuff;          /* BDAT content framed as DATA (bdat_down) */
  uint16_t overshoot;      /* RCPTs over recipients_max in this
                              transaction */

  ring_ent ring[RING_CAP];
  uint8_t ring_head, ring_len;
  uint8_t q[QUEUE_CAP];
  /* What each queued reply answers (sl_command), for SL_EV_REFUSAL: taken
     from cmd_now when the entry is pushed, kept when its kind changes. */
  uint8_t q_cmd[QUEUE_CAP];
  uint8_t cmd_now; /* sl_command of the line (or moment) being handled */
  uint32_t q_cur;  /* bit per queue slot: a MAIL or RCPT of the transaction
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
  /* For each: the upstream bytes read (stats.upstream_bytes_in, mod 2^32)
     when its terminator was all out (the first time uout ran empty after
     it was written; until then its bit in mmark_pend is set).  A reply
     that starts in bytes read before then was sent before the upstream
     could have read the end: it never counts as the message's acceptance
     (guarantee 2). */
  uint32_t mmark[MSIZE_CAP];
  uint8_t mmark_pend;
  uint8_t msize_head, msize_len;

  uint8_t cl, up;  /* enum cl_state, enum up_state */
  uint8_t attempt; /* connect attempts in this round */
  uint8_t up_out;  /* upstream replies outstanding (relayed commands) */
  uint8_t up_sync; /* outstanding commands that must end a group */
  uint8_t viol;    /* sl_violation of the message being refused */
  uint8_t bdat_cr;
  uint8_t dnsbl_asked; /* zones asked so far */
  uint8_t pre_due;     /* enum sl_pre_line: a preamble line waiting for a
                          buffer; no reply is read before it is out */
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
  uint8_t proxy_due : 1;   /* the PROXY header still waits for a buffer */

  /* Content filters (issue 11, sl_relay_filter.c). */
  uint8_t fmsg : 1;          /* the transaction in force is filtered */
  uint8_t fbody : 1;         /* its content is being given to filter_tap */
  uint8_t fheld : 1;         /* its terminator is held for SL_REQ_FILTER */
  uint8_t fchunked : 1;      /* ... and it is "BDAT 0 LAST" (fterm unused) */
  uint8_t fchunk_owed : 1;   /* the Q_UP_BDAT_FLAST before it is unanswered:
                                the verdict waits for that reply */
  uint8_t fchunk_failed : 1; /* ... which refused the chunk, and the client
                                has that refusal: the end goes as RSET */
  uint8_t fbol : 1;          /* BDAT content given to the tap ends a line */
  /* The AUTH user (SL_FI_AUTH_USER, check.sasl_username): the SASL
     exchange being read (enum auth_mech) and the name it gave, in a small
     pool buffer taken at the AUTH and kept only once the upstream said
     235. */
  uint8_t auth_mech : 2;
  /* auser came from AUTH LOGIN (else PLAIN) */
  uint8_t auser_login : 1;
  uint8_t fres;       /* the verdict taken (sl_verdict + 1), applied by
                         step_answers; 0 none */
  uint8_t fterm_len;  /* bytes of the held terminator */
  uint8_t fterm[5];   /* ".\r\n", or "\r\n.\r\n" after a BDAT without a
                         final CRLF */
  uint16_t fcode;     /* code of the refusal */
  uint32_t id_filter; /* the SL_REQ_FILTER of the held terminator */
  uint32_t fsize;     /* that message's size, for its MESSAGE event */
  sl_buf frep;        /* the refusal line, re-framed (a small pool buffer, held
                         until it is sent; without one the fixed R_FILTER text) */
  sl_buf auser;       /* the AUTH user name, decoded */
  /* policy.rcpt_check: the RCPT line stays unconsumed while its
     SL_REQ_RCPT_CHECK is out, then is read again with the answer.  chk is
     a small pool buffer, taken at the first MAIL, kept to the session's
     end: the sender in its first half, the recipient asked about in the
     second, which a refusal's text replaces until its reply is rendered
     (so the next RCPT waits for that: chk_queued). */
  sl_buf chk;
  uint32_t chk_id;
  uint16_t chk_code;  /* the answer: 0 pass, else the reply code */
  uint8_t chk_state;  /* CHK_IDLE, CHK_ASKED, CHK_ANSWERED */
  uint8_t chk_queued; /* an R_CHECK reply is in the queue */
  uint8_t chk_stage;  /* sl_command the check out is about */
  uint64_t mail_size; /* the transaction's MAIL SIZE=, for the checks */
  /* Screen-first with policy.rcpt_check, no upstream yet: a MAIL that
     passed the local checks is answered 250 by sluice and its line kept
     in mailh (a small pool buffer) until the first RCPT that passes its
     check, which connects the upstream and sends it there first
     (Q_UP_MAIL_HELD).  A greylisted client thus never costs the mail
     server a connection.  If the upstream refuses that MAIL, the RCPT and
     the rest of the transaction get its refusal (R_MAIL_FAILED) until
     RSET, MAIL or EHLO. */
  sl_buf mailh;
  uint16_t mail_fail_code;
  uint8_t mail_held : 1; /* mailh holds the transaction's MAIL, unsent */
  uint8_t mail_fail : 1; /* ... which the upstream refused */
};

enum { CHK_IDLE = 0, CHK_ASKED, CHK_ANSWERED };

/* The SASL mechanism whose user name is being learnt (auth_mech). */
enum auth_mech { AM_NONE = 0, AM_PLAIN, AM_LOGIN };

/* The PCG32 stream of the tarpit jitter (the seed comes from the driver). */
#define RNG_STREAM 0x736c7569636531ull

/* ---- helpers every layer uses ------------------------------------------ */

static inline sl_tstamp sl__tmin(sl_tstamp a, sl_tstamp b) {
  return a < b ? a : b;
}

static inline sl_tstamp sl__tadd(sl_tstamp t, sl_duration d) {
  return d == 0 || t == SL_TSTAMP_NONE ? SL_TSTAMP_NONE
         : t > SL_TSTAMP_NONE - d      ? SL_TSTAMP_NONE - 1
                                       : t + d;
}

static inline int sl__is_up(uint8_t k) { return k > Q_GREETING && k < Q_LOCAL; }

static inline int sl__is_smuggle(uint8_t v) {
  return v == SL_VIOL_BARE_LF || v == SL_VIOL_BARE_CR || v == SL_VIOL_NUL;
}

/* The part of a lent buffer the 16-bit offsets can address. */
static inline uint32_t sl__buf_cap(const sl_buf *b) {
  return b->cap < 65535u ? b->cap : 65535u;
}

static inline uint8_t *sl__buf_tail(sl_buf *b) {
  return b->p + b->off + b->len;
}

static inline uint32_t sl__buf_free(const sl_buf *b) {
  return b->p ? sl__buf_cap(b) - b->off - b->len : 0;
}

/* Counts n bytes written at the tail. */
static inline void sl__buf_grow(sl_buf *b, size_t n) {
  b->len = (uint16_t)(b->len + n);
}

/* Appends bytes; the caller reserved room. */
static inline void sl__buf_put(sl_buf *b, const void *p, size_t n) {
  memcpy(sl__buf_tail(b), p, n);
  sl__buf_grow(b, n);
}

static inline int sl__ring_free(const sl_relay *r) {
  return RING_CAP - r->ring_len;
}

static inline size_t sl__put_str(uint8_t *out, const char *s) {
  size_t n = strlen(s);
  memcpy(out, s, n);
  return n;
}

/* ---- functions shared between the files ------------------------------- */

/* Their comments are at their definitions.  The sl__step_* functions are
   steps of run() (sl_relay.c): each returns 1 when it consumed input or
   changed state, 0 when it can do nothing more now. */

/* sl_relay.c: buffers and the request ring */
void sl__buf_release(sl_relay *r, sl_buf *b);
int sl__buf_reserve(sl_relay *r, sl_buf *b, uint32_t need);
void sl__buf_consume(sl_relay *r, sl_buf *b, size_t n);
uint32_t sl__new_id(sl_relay *r, uint32_t tag);
void sl__push_req(sl_relay *r, sl_request_type type, uint32_t id, uint64_t arg);
void sl__event(sl_relay *r, const sl_event *ev);

/* sl_relay_replies.c: the reply queue and replies to the client */
int sl__q_full(const sl_relay *r);
uint8_t sl__q_peek(const sl_relay *r);
void sl__q_push(sl_relay *r, uint8_t k);
void sl__txn_reset(sl_relay *r);
void sl__msize_push(sl_relay *r, uint64_t size);
void sl__msize_clear(sl_relay *r);
void sl__msize_mark_newest(sl_relay *r);
void sl__msize_out(sl_relay *r);
void sl__q_push_local(sl_relay *r, enum local_reply id);
void sl__set_stage(sl_relay *r, sl_stage s);
void sl__client_close_after_reply(sl_relay *r, sl_end_reason why);
size_t sl__local_len(const sl_relay *r, enum local_reply id);
int sl__emit_upstream(sl_relay *r, const uint8_t *buf, const sl_reply *rep,
                      uint8_t kind);
int sl__is_sync(uint8_t k);
int sl__step_replies(sl_relay *r);
void sl__mail_refused(sl_relay *r, unsigned code, const uint8_t *text,
                      size_t n);
void sl__mail_refused_local(sl_relay *r, enum local_reply id);

/* sl_relay_upstream.c: the upstream leg */
sl_duration sl__up_timeout(const sl_relay *r, uint8_t kind);
void sl__up_write_line(sl_relay *r, const uint8_t *line, size_t len);
int sl__up_room(sl_relay *r, size_t n);
void sl__up_preamble_line(sl_relay *r, enum sl_pre_line which);
void sl__up_write_params(sl_relay *r, const uint8_t *line, size_t len,
                         uint32_t drop);
void sl__up_connect(sl_relay *r);
void sl__up_close(sl_relay *r);
void sl__q_fail_upstream(sl_relay *r, enum local_reply why);
void sl__up_fail(sl_relay *r, sl_upstream_failure why);
int sl__need_upstream(sl_relay *r);
int sl__up_can_send(const sl_relay *r);
void sl__probe_drop(sl_relay *r);
void sl__up_sent(sl_relay *r, uint8_t kind, int sync);
void sl__up_connected(sl_relay *r);
void sl__up_ehlo(sl_relay *r);
void sl__ident(const sl_relay *r, sl_ident *id);
int sl__step_upstream(sl_relay *r);

/* sl_relay_client.c: the client side */
int sl__sync_violation(sl_relay *r);
void sl__refuse_sync(sl_relay *r);
int sl__step_client(sl_relay *r);
void sl__session_start(sl_relay *r);
uint32_t sl__line_limit(const sl_relay *r);

/* sl_relay_screen.c: screening, tarpit and throttle */
void sl__use_suspect(sl_relay *r, sl_tarpit_reason reason);
int sl__allowlisted(const sl_relay *r);
void sl__dnsbl_finish(sl_relay *r);
sl_action sl__verdict(sl_relay *r);
sl_duration sl__jitter(sl_relay *r);
int sl__released(sl_relay *r, sl_duration delay);
int sl__step_dnsbl(sl_relay *r);
int sl__throttled(const sl_relay *r);

/* sl_relay_filter.c: content filters (issue 11) */
void sl__ftap(const sl_relay *r, sl_filter_item item, const uint8_t *p,
              size_t n);
int sl__filter_wanted(const sl_relay *r);
void sl__filter_body(sl_relay *r, const uint8_t *p, size_t n);
void sl__filter_hold(sl_relay *r, const uint8_t *term, size_t n, uint64_t size);
void sl__filter_abort(sl_relay *r);
int sl__filter_apply(sl_relay *r);
int sl__filter_refused(const sl_relay *r);
int sl__filter_end_answered(sl_relay *r);
void sl__filter_lost_end(sl_relay *r);
int sl__filter_chunked(const sl_relay *r);
void sl__filter_chunk(sl_relay *r, const uint8_t *p, size_t n);
void sl__filter_chunk_end(sl_relay *r);
void sl__auth_start(sl_relay *r, const uint8_t *arg, size_t alen);
void sl__auth_response(sl_relay *r, const uint8_t *line, size_t len);
void sl__auth_done(sl_relay *r, unsigned code);
void sl__auth_forget(sl_relay *r);
void sl__auth_tap(const sl_relay *r);
void sl__auth_check(const sl_relay *r, sl_request *out);

#endif
