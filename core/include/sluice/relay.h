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
 * sl_pool (sluice/bufpool.h) only while they hold bytes, so an idle or
 * tarpitted session costs its state alone.  sl_relay_memory_bound() is the
 * most a relay ever holds.
 *
 * core/examples/sl_walkthrough.c drives one session through these calls by
 * hand, printing every byte, request and event.
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
 * The errors and lifetimes every call obeys are under "lifecycle" below.
 */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/bufpool.h"
#include "sluice/errors.h"
#include "sluice/limits.h"
#include "sluice/policy.h"
#include "sluice/ratelim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_relay sl_relay;

/* ---- connection facts at creation ------------------------------------ */

enum sl_conn_flag {
  SL_CONN_TLS = 1u << 0,           /* client leg is implicit TLS already */
  SL_CONN_EXPECT_PROXY = 1u << 1,  /* a PROXY v1/v2 header from a trusted
                                      balancer precedes SMTP */
  SL_CONN_POOL_CAPS = 1u << 2,     /* pool_features and pool_size are known */
  SL_CONN_SCREEN_PASSED = 1u << 3, /* the client passed screening before
                                     (the driver's cache, postscreen's
                                     PASS OLD): no DNSBL lookup, greet
                                     delay, pregreet test or score tarpit;
                                     an admission verdict still applies */
  SL_CONN_FILTER = 1u << 4,        /* content filters: each message of this
                                      session (unless filter_skip says not)
                                      is given to filter_tap, and its end
                                      waits for sl_relay_filter_verdict() */
  SL_CONN_FILTER_SPOOL = 1u << 5   /* the driver replaces a filtered
                                      message's content (spool mode): its
                                      BDAT transactions go upstream as one
                                      DATA, whose body the driver swaps */
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
 * content is the message as DATA carries it: CRLF lines, dot-stuffed,
 * never the terminator (BDAT content, which goes upstream as it came, is
 * given dot-stuffed too, so the tap reads one form).  Pointers are valid
 * during the call only.
 */
typedef enum sl_filter_item {
  SL_FI_MAIL = 1,   /* a transaction starts: its MAIL line */
  SL_FI_RCPT,       /* a RCPT line sent upstream */
  SL_FI_RCPT_REPLY, /* the upstream's reply to the oldest RCPT of this
                       transaction not yet answered: n = the code, p NULL */
  SL_FI_BODY,       /* message content (DATA or BDAT, dot-stuffed) */
  SL_FI_ABORT,      /* the message is not going to be filtered after all
                       (refused, upstream lost): drop what was given */
  SL_FI_AUTH_USER   /* right after SL_FI_MAIL, when the upstream accepted
                       the client's AUTH PLAIN or LOGIN: the user name
                       (authcid) it gave, decoded, 1..SL_AUTH_USER_MAX
                       bytes of printable ASCII or UTF-8, no CR, LF, NUL
                       or other control byte (rspamd's User, a milter's
                       {auth_authen}) */
} sl_filter_item;

/* The longest user name SL_FI_AUTH_USER gives; a longer one is not
   given at all. */
#define SL_AUTH_USER_MAX 255

typedef struct sl_conn_info {
  sl_addr client; /* replaced by the PROXY header's source when present */
  sl_addr local;
  uint32_t flags;          /* sl_conn_flag */
  sl_admission admission;  /* e.g. from sl_ratelim_admit() (ratelim.h) */
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
     back into the relay).  The held end of a filtered message is its DATA
     terminator, or for a BDAT transaction to an upstream with CHUNKING
     (and no SL_CONN_FILTER_SPOOL) a "BDAT 0 LAST" that follows every
     chunk, the client's LAST one sent as a plain chunk; without CHUNKING
     the transaction goes upstream as one DATA. */
  uint32_t filter_skip;
  void (*filter_tap)(void *ctx, sl_filter_item item, const uint8_t *p,
                     size_t n);
  void *filter_ctx;
} sl_conn_info;

/* ---- the vocabulary of requests, events and statistics ---------------
 *
 * Each list below is one X-macro, XX(NAME, value, "name"), that makes the
 * enum (SL_<prefix>_NAME = value) and its name function, which gives the
 * lower-case "name" (the word the drivers' logs and metrics use; for
 * commands, the verb as SMTP spells it) and "unknown" for a value outside
 * the list, never NULL.  A driver may expand a list itself, e.g. for one
 * counter per value.
 */

/* What the relay asks of the driver (sl_request.type). */
#define SL_REQUEST_MAP(XX)                                                     \
  /* open the upstream leg; connect.attempt counts from 0: pick another        \
     server on each retry */                                                   \
  XX(CONNECT_UPSTREAM, 1, "connect_upstream")                                  \
  /* client_out is fully sent: start the TLS server handshake on the           \
     client leg */                                                             \
  XX(STARTTLS_CLIENT, 2, "starttls_client")                                    \
  /* start the TLS client handshake upstream */                                \
  XX(STARTTLS_UPSTREAM, 3, "starttls_upstream")                                \
  /* A records of the client under policy.dnsbl[dnsbl.zone] */                 \
  XX(DNSBL_LOOKUP, 4, "dnsbl_lookup")                                          \
  /* close the upstream leg now; the relay has discarded any bytes it still    \
     held for it */                                                            \
  XX(CLOSE_UPSTREAM, 5, "close_upstream")                                      \
  /* client_out has been sent: close the client leg; the session is over */    \
  XX(CLOSE_CLIENT, 6, "close_client")                                          \
  /* something worth a log line or a counter: ev */                            \
  XX(EVENT, 7, "event")                                                        \
  /* a filtered message is complete (every SL_FI_BODY given) and its           \
     terminator is held: answer sl_relay_filter_verdict() */                   \
  XX(FILTER, 8, "filter")                                                      \
  /* policy.rcpt_check: may this RCPT go upstream? (policy service,            \
     greylisting); the facts are in check, the answer in check_code; with      \
     policy.check_stages also asked at MAIL and DATA (check.stage) */          \
  XX(RCPT_CHECK, 9, "rcpt_check")

typedef enum sl_request_type {
#define SL_REQUEST_ENUM_(name, value, text) SL_REQ_##name = value,
  SL_REQUEST_MAP(SL_REQUEST_ENUM_)
#undef SL_REQUEST_ENUM_
} sl_request_type;
const char *sl_request_name(sl_request_type t);

/* Events (sl_request.ev.kind); each names the member of ev that carries its
   payload. */
#define SL_EVENT_MAP(XX)                                                       \
  XX(PREGREET, 1, "pregreet")       /* pregreet.bytes sent too early */        \
  XX(DNSBL_SCORE, 2, "dnsbl_score") /* dnsbl.score: the final score */         \
  XX(TARPIT, 3, "tarpit")           /* tarpit.reason: suspect profile on */    \
  /* starttls_injection.bytes: plaintext after STARTTLS, discarded */          \
  XX(STARTTLS_INJECTION, 4, "starttls_injection")                              \
  XX(SMUGGLING, 5, "smuggling") /* smuggling.violation: message */             \
                                /* refused for its framing */                  \
  /* upstream_ready.attempt: the upstream greeted (and TLS and XCLIENT are     \
     done) on this connect attempt */                                          \
  XX(UPSTREAM_READY, 6, "upstream_ready")                                      \
  XX(UPSTREAM_FAILED, 7, "upstream_failed") /* upstream_failed.failure */      \
  /* a message's end: message.code is the upstream's reply (0: not             \
     relayed; a content filter's refusal: its code), message.size its          \
     octets */                                                                 \
  XX(MESSAGE, 8, "message")                                                    \
  /* the last request; session_end.reason, and the stats are final */          \
  XX(SESSION_END, 9, "session_end")                                            \
  /* a 4xx/5xx reply went into client_out: refusal.command is what it          \
     answered, refusal.code its code.  One per such reply, in the order the    \
     replies are sent, whoever wrote them (sluice or the upstream) */          \
  XX(REFUSAL, 10, "refusal")                                                   \
  /* no payload: the final greeting went out to a client that was screened     \
     (greet delay or DNSBL) and passed: no pregreet, no tarpit, score below    \
     tarpit_score.  Once per session, never with SL_CONN_SCREEN_PASSED; the    \
     driver may cache it and pass SL_CONN_SCREEN_PASSED next time */           \
  XX(SCREEN_PASSED, 11, "screen_passed")

typedef enum sl_event_kind {
#define SL_EVENT_ENUM_(name, value, text) SL_EV_##name = value,
  SL_EVENT_MAP(SL_EVENT_ENUM_)
#undef SL_EVENT_ENUM_
} sl_event_kind;
const char *sl_event_name(sl_event_kind k);

/* What a reply answered (ev.refusal.command): a client command by its verb
   (the values up to NONSMTP are the command parser's), or one of the three
   moments that are not commands.  Named as Postfix's logs name them. */
#define SL_COMMAND_MAP(XX)                                                     \
  XX(UNKNOWN, 0, "UNKNOWN") /* a line with no verb sluice knows */             \
  XX(EHLO, 1, "EHLO")                                                          \
  XX(HELO, 2, "HELO")                                                          \
  XX(MAIL, 3, "MAIL")                                                          \
  XX(RCPT, 4, "RCPT")                                                          \
  XX(DATA, 5, "DATA")                                                          \
  XX(BDAT, 6, "BDAT")                                                          \
  XX(RSET, 7, "RSET")                                                          \
  XX(NOOP, 8, "NOOP")                                                          \
  XX(QUIT, 9, "QUIT")                                                          \
  XX(VRFY, 10, "VRFY")                                                         \
  XX(EXPN, 11, "EXPN")                                                         \
  XX(HELP, 12, "HELP")                                                         \
  XX(AUTH, 13, "AUTH")                                                         \
  XX(STARTTLS, 14, "STARTTLS")                                                 \
  XX(XCLIENT, 15, "XCLIENT")                                                   \
  XX(XFORWARD, 16, "XFORWARD")                                                 \
  XX(ETRN, 17, "ETRN")                                                         \
  XX(NONSMTP, 18, "NONSMTP") /* HTTP verbs, header lines: not SMTP */          \
  XX(CONNECT, 19, "CONNECT") /* the greeting */                                \
  /* the end of a DATA message (a BDAT chunk's reply answers its BDAT) */      \
  XX(END_OF_MESSAGE, 20, "END-OF-MESSAGE")                                     \
  /* no command: sluice's own goodbye (timeout, too many errors, junk) */      \
  XX(NONE, 21, "NONE")

typedef enum sl_command {
#define SL_COMMAND_ENUM_(name, value, text) SL_CMD_##name = value,
  SL_COMMAND_MAP(SL_COMMAND_ENUM_)
#undef SL_COMMAND_ENUM_
} sl_command;
const char *sl_command_name(sl_command c);

/* Why the suspect tarpit profile came into force (ev.tarpit.reason). */
#define SL_TARPIT_REASON_MAP(XX)                                               \
  XX(SCORE, 1, "score") /* the DNSBL answers brought the score */              \
                        /* to tarpit_score */                                  \
  /* the greeting's verdict: pregreet_action, or dnsbl_action at               \
     reject_score, is SL_ACT_TARPIT, or a pregreet brought the score to        \
     tarpit_score */                                                           \
  XX(ACTION, 2, "action")                                                      \
  XX(ADMISSION, 3, "admission") /* admission was SL_ADMIT_TARPIT */

typedef enum sl_tarpit_reason {
#define SL_TARPIT_REASON_ENUM_(name, value, text) SL_TARPIT_##name = value,
  SL_TARPIT_REASON_MAP(SL_TARPIT_REASON_ENUM_)
#undef SL_TARPIT_REASON_ENUM_
} sl_tarpit_reason;
const char *sl_tarpit_reason_name(sl_tarpit_reason r);

/* Framing violations in a message body (ev.smuggling.violation). */
#define SL_VIOLATION_MAP(XX)                                                   \
  XX(NONE, 0, "none")                                                          \
  XX(BARE_LF, 1, "bare_lf")                                                    \
  XX(BARE_CR, 2, "bare_cr")                                                    \
  XX(NUL, 3, "nul")                                                            \
  XX(LINE_TOO_LONG, 4, "line_too_long")                                        \
  XX(SIZE, 5, "size")

typedef enum sl_violation {
#define SL_VIOLATION_ENUM_(name, value, text) SL_VIOL_##name = value,
  SL_VIOLATION_MAP(SL_VIOLATION_ENUM_)
#undef SL_VIOLATION_ENUM_
} sl_violation;
const char *sl_violation_name(sl_violation v);

/* How an upstream leg failed (ev.upstream_failed.failure). */
#define SL_UPSTREAM_FAILURE_MAP(XX)                                            \
  XX(CONNECT, 1, "connect")                                                    \
  XX(TIMEOUT, 2, "timeout")                                                    \
  XX(CLOSED, 3, "closed")                                                      \
  XX(MALFORMED, 4, "malformed") /* reply syntax or an unsolicited reply */     \
  XX(GREETING, 5, "greeting")   /* greeting not 220 */                         \
  XX(TLS, 6, "tls")             /* STARTTLS refused, required and missing, */  \
                                /* or the handshake failed */                  \
  XX(IDENTITY, 7, "identity")   /* XCLIENT or XFORWARD refused */

typedef enum sl_upstream_failure {
#define SL_UPSTREAM_FAILURE_ENUM_(name, value, text) SL_UPFAIL_##name = value,
  SL_UPSTREAM_FAILURE_MAP(SL_UPSTREAM_FAILURE_ENUM_)
#undef SL_UPSTREAM_FAILURE_ENUM_
} sl_upstream_failure;
const char *sl_upstream_failure_name(sl_upstream_failure f);

/* The furthest a session got (sl_stats.stage). */
#define SL_STAGE_MAP(XX)                                                       \
  XX(CONNECT, 0, "connect")   /* nothing said yet */                           \
  XX(GREETING, 1, "greeting") /* greeting (or teaser) sent */                  \
  XX(HELO, 2, "helo")                                                          \
  XX(MAIL, 3, "mail")                                                          \
  XX(RCPT, 4, "rcpt")                                                          \
  XX(DATA, 5, "data")           /* body being sent */                          \
  XX(DELIVERED, 6, "delivered") /* a message got the upstream's 2xx */

typedef enum sl_stage {
#define SL_STAGE_ENUM_(name, value, text) SL_STAGE_##name = value,
  SL_STAGE_MAP(SL_STAGE_ENUM_)
#undef SL_STAGE_ENUM_
} sl_stage;
const char *sl_stage_name(sl_stage s);

/* Why a session ended (sl_stats.end_reason, ev.session_end.reason). */
#define SL_END_REASON_MAP(XX)                                                  \
  XX(NONE, 0, "none")                                                          \
  XX(QUIT, 1, "quit")                   /* 221 after QUIT */                   \
  XX(CLIENT_CLOSED, 2, "client_closed") /* client EOF or driver abort */       \
  XX(TIMEOUT, 3, "timeout")             /* 421 4.4.2 after a client */         \
                                        /* timeout */                          \
  XX(UPSTREAM, 4, "upstream")           /* 421 after the upstream failed */    \
  XX(REJECTED, 5, "rejected")           /* admission/dnsbl/pregreet drop, */   \
                                        /* errors limit */                     \
  XX(PROTOCOL, 6, "protocol")           /* smuggling or another framing */     \
                                        /* violation */

typedef enum sl_end_reason {
#define SL_END_REASON_ENUM_(name, value, text) SL_END_##name = value,
  SL_END_REASON_MAP(SL_END_REASON_ENUM_)
#undef SL_END_REASON_ENUM_
} sl_end_reason;
const char *sl_end_reason_name(sl_end_reason e);

/* ---- requests (relay to driver) -------------------------------------- */

/* An event's payload, tagged by kind: read only the member kind names. */
typedef struct sl_event {
  sl_event_kind kind;
  union {
    struct {
      uint32_t bytes;
    } pregreet;
    struct {
      int32_t score;
    } dnsbl;
    struct {
      sl_tarpit_reason reason;
    } tarpit;
    struct {
      uint32_t bytes;
    } starttls_injection;
    struct {
      sl_violation violation;
    } smuggling;
    struct {
      uint32_t attempt;
    } upstream_ready;
    struct {
      sl_upstream_failure failure;
    } upstream_failed;
    struct {
      uint16_t code; /* the reply to the end of data; 0: not relayed */
      uint64_t size; /* message octets (unstuffed, with CRLFs), at most
                        UINT32_MAX */
    } message;
    struct {
      sl_end_reason reason;
    } session_end;
    struct {
      sl_command command;
      uint16_t code;
    } refusal;
  };
} sl_event;

/* A request, tagged by type: read only the member type names.  It is a
   copy and holds no pointer into the relay, except check's strings, valid
   until the check is answered or the relay is freed. */
typedef struct sl_request {
  sl_request_type type;
  uint32_t id; /* echo in sl_completion.id; ids are unique per relay */
  union {
    struct {
      uint32_t attempt;
    } connect; /* SL_REQ_CONNECT_UPSTREAM */
    struct {
      uint32_t zone; /* index into policy.dnsbl */
    } dnsbl;         /* SL_REQ_DNSBL_LOOKUP */
    sl_event ev;     /* SL_REQ_EVENT */
    /* SL_REQ_RCPT_CHECK: the paths without angle brackets, NUL-terminated
       (sender "" for the null sender; either cut at half a small buffer,
       255 bytes by default); helo the EHLO/HELO argument, helo_len bytes,
       not terminated. */
    struct {
      const char *sender;
      const char *rcpt;
      const char *helo;
      /* the AUTH user (sasl_username in Postfix's policy protocol), once
         the upstream accepted the AUTH: PLAIN's authcid or LOGIN's user
         name, decoded, UTF-8 without control bytes, sasl_username_len
         bytes (1..SL_AUTH_USER_MAX), not terminated; sasl_method its
         mechanism, "PLAIN" or "LOGIN".  "" and 0 before AUTH, after a
         refused one, and after another mechanism (no name is read). */
      const char *sasl_username;
      const char *sasl_method;
      uint16_t helo_len;
      uint16_t sasl_username_len;
      uint32_t rcpt_count; /* recipients accepted so far, this one not */
      /* the client is allowlisted: its DNSBL/DNSWL score is at or below
         allow_score, it authenticated, or relay control trusts it
         (mynetworks); greylisting skips it, a policy service is asked */
      uint8_t allowlisted;
      uint8_t authed;
      uint8_t esmtp;
      uint8_t tls;
      /* the command asked about (sl_command): SL_CMD_RCPT, or with
         policy.check_stages SL_CMD_EHLO/SL_CMD_HELO (helo the command's
         argument, sender and rcpt ""), SL_CMD_MAIL (rcpt "") or
         SL_CMD_DATA (rcpt "", rcpt_count the recipients the upstream
         accepted); a refusal answers that command */
      uint8_t stage;
      uint64_t size; /* the MAIL's SIZE= value, 0 if none */
    } check;
  };
} sl_request;

/* ---- completions (driver to relay) ----------------------------------- */

typedef enum sl_status {
  SL_STATUS_OK = 0,
  SL_STATUS_FAILED = 1,
  SL_STATUS_TIMEOUT = 2
} sl_status;

#define SL_DNSBL_ANSWERS_MAX 8
#define SL_CHECK_TEXT_MAX 256

typedef struct sl_completion {
  uint32_t id; /* the request's id */
  sl_status status;
  /* SL_REQ_DNSBL_LOOKUP, status OK: A answers in host order (0x7f000002);
     n = 0 means NXDOMAIN (not listed). */
  uint32_t dnsbl_answers[SL_DNSBL_ANSWERS_MAX];
  uint8_t ndnsbl_answers;
  /* SL_REQ_RCPT_CHECK, status OK: 0 lets the command go upstream; a 4xx or
     5xx refuses it locally with check_text ("d.d.d text"; bytes outside
     printable ASCII become '?', the line is cut at
     SL_CHECK_TEXT_MAX - 1).  Any other status lets it go upstream (the
     driver has applied its failure default already). */
  uint16_t check_code;
  char check_text[SL_CHECK_TEXT_MAX];
} sl_completion;

/* ---- session statistics ---------------------------------------------- */

typedef struct sl_stats {
  sl_tstamp start, end; /* end = SL_TSTAMP_NONE while open */
  uint64_t client_bytes_in, client_bytes_out;
  uint64_t upstream_bytes_in, upstream_bytes_out;
  sl_duration delay_total; /* time replies were held by the tarpit */
  uint32_t commands, errors, junk;
  uint32_t messages_accepted, messages_rejected, messages_tempfailed;
  uint32_t recipients_accepted;
  uint32_t recipients_relay_denied; /* refused by relay control (554/454
                                       at RCPT; sluice/rcpt_policy.h) */
  int32_t score;
  uint32_t pregreet_bytes;
  uint32_t sync_violations;    /* bytes sent ahead of a reply they needed */
  uint32_t starttls_discarded; /* plaintext bytes dropped after STARTTLS */
  uint16_t last_upstream_code; /* last end-of-data reply from upstream
                                  (or the refusal of a content filter) */
  uint8_t stage;               /* sl_stage, the furthest reached */
  uint8_t end_reason;          /* sl_end_reason */
  uint8_t upstream_attempts;
  uint8_t tarpitted; /* suspect profile in force at some point */
  uint8_t tls_client, tls_upstream;
} sl_stats;

/* ---- lifecycle -------------------------------------------------------
 *
 * Errors.  Each function below lists the SL_ERR_* codes it returns.  Those
 * taking a timestamp also return SL_ERR_TIME_BACKWARDS when now is earlier
 * than a timestamp given before, and, from then on or after
 * SL_ERR_INTERNAL, that fatal code again (sluice/errors.h: only fatal
 * errors are sticky).  After a fatal error only sl_relay_last_error(),
 * sl_relay_stats() and sl_relay_free() are of use.
 *
 * Lifetimes.
 * - limits, policy (with every pointer in it), pool, info->client_name and
 *   a name given to sl_relay_set_client_name() must stay valid and
 *   unchanged until sl_relay_free().
 * - A pointer returned by *_in_buf() or *_out() is valid until the next
 *   call on the same relay; one returned by sl_relay_stats() or
 *   sl_relay_client_addr() until sl_relay_free().
 * - A request filled by sl_relay_next_request() is the caller's copy and
 *   holds no pointer, so it stays valid after any call, sl_relay_free()
 *   included; the one exception is SL_REQ_RCPT_CHECK, whose strings
 *   (check.*) point into the relay until the check is answered or the
 *   relay is freed.
 * - sl_relay_free() ends the relay: nothing may be called on it afterwards,
 *   not even sl_relay_stats(); read the final statistics before, e.g. at
 *   the SL_EV_SESSION_END event or once sl_relay_want() says SL_CLOSED.
 */

/* Bytes of caller memory a relay needs (alignment 8).  No errors. */
size_t sl_relay_size(const sl_limits *limits);

/* The most memory a relay holds at once: its state plus every pool buffer
   it can borrow (guarantee 6).  No errors. */
size_t sl_relay_memory_bound(const sl_limits *limits);

/*
 * Creates a relay in mem (memlen >= sl_relay_size(limits), 8-aligned) and
 * sets *out.  The relay copies *info.  seed drives tarpit jitter, so equal
 * seeds and inputs give equal outputs.  The first requests (connect
 * upstream in pass-through mode, DNSBL lookups) are ready at once.
 * Returns 0, or
 *   SL_ERR_INVALID_ARGUMENT  a NULL pointer or pool function, mem not
 *                            8-aligned, now == SL_TSTAMP_NONE, or limits or
 *                            policy failing sl_limits_check() or
 *                            sl_policy_check();
 *   SL_ERR_NOBUF             memlen < sl_relay_size(limits).
 */
int sl_relay_init(sl_relay **out, void *mem, size_t memlen,
                  const sl_limits *limits, const sl_policy *policy,
                  const sl_pool *pool, const sl_conn_info *info, uint64_t seed,
                  sl_tstamp now);

/* Returns every borrowed buffer to the pool; the memory block is the
   caller's again.  Valid in any state, after a fatal error too, once per
   relay.  No errors. */
void sl_relay_free(sl_relay *r);

/* ---- input ------------------------------------------------------------ */

/*
 * Where the driver may write up to *cap received client bytes (e.g. recv()
 * into it), or NULL with *cap = 0 when the relay takes no client input now
 * (see sl_relay_want()), r or cap is NULL, or the call failed (see
 * sl_relay_last_error()).  NULL while SL_WANT_CLIENT_READ is set means the
 * pool had no buffer: the relay clears the want bit and sets a short
 * deadline to try again.
 */
uint8_t *sl_relay_client_in_buf(sl_relay *r, size_t *cap, sl_tstamp now);
/* n (<= the cap given) bytes were written there; the relay processes them.
   Returns 0, or SL_ERR_INVALID_ARGUMENT (r NULL, n above the cap), or a
   fatal code. */
int sl_relay_client_in_ack(sl_relay *r, size_t n, sl_tstamp now);
/* Copying convenience: offers data to the relay and returns how many bytes
   it took (< len: wait for SL_WANT_CLIENT_READ, then offer the rest), or
   the negative code sl_relay_client_in_ack() returned. */
long sl_relay_feed_client(sl_relay *r, const uint8_t *data, size_t len,
                          sl_tstamp now);

/* The same for the upstream leg. */
uint8_t *sl_relay_upstream_in_buf(sl_relay *r, size_t *cap, sl_tstamp now);
int sl_relay_upstream_in_ack(sl_relay *r, size_t n, sl_tstamp now);
long sl_relay_feed_upstream(sl_relay *r, const uint8_t *data, size_t len,
                            sl_tstamp now);

/* The client (or upstream) closed its sending side.  The relay still
   answers what it has read; the session ends when nothing is left to do.
   Returns 0, SL_ERR_INVALID_ARGUMENT (r NULL) or a fatal code. */
int sl_relay_client_eof(sl_relay *r, sl_tstamp now);
int sl_relay_upstream_eof(sl_relay *r, sl_tstamp now);

/* The client connection failed hard (reset, write error): the session ends
   now; an upstream message in progress is aborted by closing the upstream
   leg, never by sending its terminator.  The driver still drains requests
   (CLOSE_*, the SESSION_END event) until SL_CLOSED.  Returns 0,
   SL_ERR_INVALID_ARGUMENT (r NULL) or a fatal code. */
int sl_relay_abort(sl_relay *r, sl_tstamp now);

/*
 * The outcome of a request.  For SL_REQ_CONNECT_UPSTREAM, OK means the TCP
 * (or implicit TLS) connection is up; for SL_REQ_STARTTLS_*, that the
 * handshake finished.  Returns 0, or
 *   SL_ERR_INVALID_ARGUMENT  r or c NULL, or a status outside sl_status;
 *   SL_ERR_UNKNOWN_REQUEST   no request with that id is outstanding (already
 *                            answered, or overtaken by a retry, a close or
 *                            the end of screening): harmless, ignore it;
 *   a fatal code.
 */
int sl_relay_complete(sl_relay *r, const sl_completion *c, sl_tstamp now);

/*
 * The combined verdict (an sl_verdict of sluice/filter.h, passed as an int
 * so that this header does not pull in the codecs' types) on the message
 * of SL_REQ_FILTER `id`.  ACCEPT or
 * CHANGE: the terminator goes upstream and the client gets the upstream's
 * reply (guarantee 2).  TEMPFAIL or REJECT (DISCARD counts as REJECT): the
 * upstream leg is closed without the terminator (a chunked message's
 * transaction is ended by RSET instead, and the leg stays open) and the
 * client gets sl_filter_reply(v, text), one re-framed line (guarantee 5);
 * if the upstream refused the client's LAST chunk meanwhile, an ACCEPT
 * relays that refusal and the end goes as RSET too.  text is the
 * deciding filter's reply or message, NULL/0 for the default.  Returns 0,
 * SL_ERR_UNKNOWN_REQUEST (stale id: the message ended otherwise, e.g. the
 * upstream was lost meanwhile) or another SL_ERR_*.
 */
int sl_relay_filter_verdict(sl_relay *r, uint32_t id, int verdict,
                            const uint8_t *text, size_t len, sl_tstamp now);

/* ---- output ----------------------------------------------------------- */

/*
 * Bytes to send to the client now, or NULL with *len = 0 (nothing to send,
 * r or len NULL, or the call failed).  Tarpit delays, stutter and throttles
 * are already applied: send what is returned, no more, then ack what the
 * socket took.  The ack returns 0, SL_ERR_INVALID_ARGUMENT (r NULL, n above
 * what *_out() returned) or a fatal code.
 */
const uint8_t *sl_relay_client_out(sl_relay *r, size_t *len, sl_tstamp now);
int sl_relay_client_out_ack(sl_relay *r, size_t n, sl_tstamp now);
const uint8_t *sl_relay_upstream_out(sl_relay *r, size_t *len, sl_tstamp now);
int sl_relay_upstream_out_ack(sl_relay *r, size_t n, sl_tstamp now);

/*
 * Pops the oldest request into *out: returns 1, or 0 when none is left (or
 * r or out is NULL).  No request or event is ever dropped (guarantee 10).
 * The ring is small: when it has too little room for what the relay's next
 * step may request, the relay stops consuming input (SL_WANT_CLIENT_READ
 * and SL_WANT_UPSTREAM_READ are cleared, answers and expiries wait) until
 * the driver drains this function; each call runs the relay again, so the
 * driver drains until 0 and then looks at sl_relay_want() again.
 */
int sl_relay_next_request(sl_relay *r, sl_request *out);

/* ---- time and state ---------------------------------------------------- */

/* The earliest time the relay must be called back; SL_TSTAMP_NONE: none. */
sl_tstamp sl_relay_next_deadline(const sl_relay *r);
/* Runs what is due at now (timeouts, tarpit releases, token refills).
   Returns 0, SL_ERR_INVALID_ARGUMENT (r NULL) or a fatal code. */
int sl_relay_handle_expiry(sl_relay *r, sl_tstamp now);

enum sl_want {
  SL_WANT_CLIENT_READ = 1u << 0,
  SL_WANT_CLIENT_WRITE = 1u << 1,
  SL_WANT_UPSTREAM_READ = 1u << 2,
  SL_WANT_UPSTREAM_WRITE = 1u << 3,
  SL_WANT_REQUESTS = 1u << 4, /* sl_relay_next_request() has something */
  SL_CLOSED = 1u << 5         /* over: every request drained; free it */
};
/* sl_want bits for the relay's state now (a pure query); 0 for NULL. */
unsigned sl_relay_want(const sl_relay *r);

/* The sticky (fatal) error, 0 if none; SL_ERR_INVALID_ARGUMENT for NULL. */
int sl_relay_last_error(const sl_relay *r);

/* The session's counters (NULL for NULL); final once SL_EV_SESSION_END is
   out.  The pointer is valid until sl_relay_free(). */
const sl_stats *sl_relay_stats(const sl_relay *r);

/* The client's name for XCLIENT NAME= learnt after creation (the driver
   looks it up from accept on and holds the upstream connect until it is
   known): a verified name, "[UNAVAILABLE]" or "[TEMPUNAVAIL]".  Used if
   XCLIENT has not been sent yet; name must outlive the relay.  No
   errors. */
void sl_relay_set_client_name(sl_relay *r, const char *name);

/* The client address in force (after a PROXY header, the real client);
   NULL for NULL.  Valid until sl_relay_free(). */
const sl_addr *sl_relay_client_addr(const sl_relay *r);

#ifdef __cplusplus
}
#endif
#endif
