/*
 * sluice/policy.h: screening, tarpitting and relaying policy, as data.
 *
 * A policy is read-only while relays use it; many relays share one.  Every
 * pointer in it must outlive the relays that use it.  Facts from outside
 * (DNSBL answers, the admission verdict) enter as answers and arguments, and
 * the policy decides what they mean.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdint.h>

#include "sluice/limits.h"
#include "sluice/rcpt_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each enum below is an X-macro list XX(NAME, value, "config name"): the
   enum and its sl_*_name() (the configuration's spelling) come from it. */

/* passthrough: connect upstream on accept and relay its greeting.
   screen: greet locally, screen, connect upstream at the first command that
   needs it (MAIL, AUTH, VRFY/EXPN when relayed) and replay the client's
   EHLO. */
#define SL_MODE_MAP(XX)                                                        \
  XX(PASSTHROUGH, 0, "passthrough")                                            \
  XX(SCREEN_FIRST, 1, "screen")

typedef enum sl_mode {
#define SL_MODE_ENUM_(name, value, text) SL_MODE_##name = value,
  SL_MODE_MAP(SL_MODE_ENUM_)
#undef SL_MODE_ENUM_
} sl_mode;
const char *sl_mode_name(sl_mode m);

/* ESMTP features sluice may offer the client (sl_policy.features). */
enum sl_feature {
  SL_FEAT_PIPELINING = 1u << 0, /* offered to the client even if the
                                   upstream lacks it: sluice serialises */
  SL_FEAT_SIZE = 1u << 1,
  SL_FEAT_8BITMIME = 1u << 2,
  SL_FEAT_SMTPUTF8 = 1u << 3,
  SL_FEAT_ENHANCEDSTATUSCODES = 1u << 4,
  SL_FEAT_DSN = 1u << 5,
  SL_FEAT_CHUNKING = 1u << 6,
  SL_FEAT_STARTTLS = 1u << 7, /* the driver holds a certificate for the
                                 client leg */
  SL_FEAT_AUTH = 1u << 8,     /* relay AUTH (submission) */
  SL_FEAT_ALL = (1u << 9) - 1
};

/* Named leniencies, all off by default (strict framing). */
enum sl_lenient {
  /* DATA lines ending in a bare LF are re-serialised with CRLF instead of
     rejecting the message; end-of-data still is CRLF "." CRLF only. */
  SL_LENIENT_NORMALIZE_BARE_LF = 1u << 0
};

/* 252: "252 2.5.0 Cannot VRFY user" (RFC 5321 3.5.3); 502: "502 5.5.1
   VRFY/EXPN disabled"; relay: to the upstream. */
#define SL_VRFY_POLICY_MAP(XX)                                                 \
  XX(252, 0, "252")                                                            \
  XX(502, 1, "502")                                                            \
  XX(RELAY, 2, "relay")

typedef enum sl_vrfy_policy {
#define SL_VRFY_ENUM_(name, value, text) SL_VRFY_##name = value,
  SL_VRFY_POLICY_MAP(SL_VRFY_ENUM_)
#undef SL_VRFY_ENUM_
} sl_vrfy_policy;
const char *sl_vrfy_policy_name(sl_vrfy_policy v);

/* How the upstream learns the client's identity.  xclient: XCLIENT
   ADDR/PORT/NAME/HELO/PROTO when offered; proxy1/proxy2: a PROXY header
   first; xforward: XFORWARD NAME/ADDR/PORT/PROTO/HELO/SOURCE before each
   upstream MAIL, when offered. */
#define SL_IDENTITY_MAP(XX)                                                    \
  XX(NONE, 0, "none")                                                          \
  XX(XCLIENT, 1, "xclient")                                                    \
  XX(PROXY_V1, 2, "proxy1")                                                    \
  XX(PROXY_V2, 3, "proxy2")                                                    \
  XX(XFORWARD, 4, "xforward")

typedef enum sl_identity {
#define SL_IDENT_ENUM_(name, value, text) SL_IDENT_##name = value,
  SL_IDENTITY_MAP(SL_IDENT_ENUM_)
#undef SL_IDENT_ENUM_
} sl_identity;
const char *sl_identity_name(sl_identity i);

/* none: never STARTTLS upstream; opportunistic: STARTTLS when offered;
   required: an upstream without STARTTLS has failed; implicit: the driver
   connects with TLS (port 465). */
#define SL_UPSTREAM_TLS_MAP(XX)                                                \
  XX(NONE, 0, "none")                                                          \
  XX(OPPORTUNISTIC, 1, "opportunistic")                                        \
  XX(REQUIRED, 2, "required")                                                  \
  XX(IMPLICIT, 3, "implicit")

typedef enum sl_upstream_tls {
#define SL_UPTLS_ENUM_(name, value, text) SL_UPTLS_##name = value,
  SL_UPSTREAM_TLS_MAP(SL_UPTLS_ENUM_)
#undef SL_UPTLS_ENUM_
} sl_upstream_tls;
const char *sl_upstream_tls_name(sl_upstream_tls t);

/* What a screening verdict does to the session.  continue: only log and
   score; tarpit: switch to the suspect tarpit profile; reject: 554 5.7.1 to
   every transaction command, the client may still QUIT (RFC 5321 3.1);
   drop: 521 5.7.1 and close. */
#define SL_ACTION_MAP(XX)                                                      \
  XX(CONTINUE, 0, "continue")                                                  \
  XX(TARPIT, 1, "tarpit")                                                      \
  XX(REJECT, 2, "reject")                                                      \
  XX(DROP, 3, "drop")

typedef enum sl_action {
#define SL_ACT_ENUM_(name, value, text) SL_ACT_##name = value,
  SL_ACTION_MAP(SL_ACT_ENUM_)
#undef SL_ACT_ENUM_
} sl_action;
const char *sl_action_name(sl_action a);

/* How replies go out.  All durations may be 0 (off). */
typedef struct sl_tarpit {
  sl_duration greet_delay;      /* hold the final greeting line this long */
  sl_duration reply_delay;      /* hold every other reply this long */
  sl_duration jitter;           /* add a uniform [0, jitter) to each delay */
  uint32_t stutter_bytes;       /* send at most this many reply bytes ... */
  sl_duration stutter_interval; /* ... per interval (spamd: 1 per 1 s) */
  uint64_t data_rate;           /* read DATA/BDAT at most this many bytes/s */
} sl_tarpit;

#define SL_DNSBL_ZONES_MAX 16
#define SL_DNSBL_CODES_MAX 8

typedef struct sl_dnsbl_zone {
  const char *zone; /* "zen.example.org"; NUL-terminated */
  int32_t weight;   /* added to the score when listed; negative: DNSWL */
  /* Listed means: some A answer equals one of these 127.x.y.z codes
     (host order, e.g. 0x7f000002); no codes: any 127/8 answer. */
  uint32_t codes[SL_DNSBL_CODES_MAX];
  uint8_t ncodes;
} sl_dnsbl_zone;

#define SL_POLICY_VERSION 1

/* policy.check_stages: the commands besides RCPT a check is asked at. */
enum sl_check_stage {
  SL_CHECK_MAIL = 1u << 0, /* check.stage SL_CMD_MAIL */
  SL_CHECK_DATA = 1u << 1, /* check.stage SL_CMD_DATA */
  SL_CHECK_HELO = 1u << 2  /* check.stage SL_CMD_EHLO or SL_CMD_HELO */
};

typedef struct sl_policy {
  uint32_t version; /* SL_POLICY_VERSION */
  sl_mode mode;
  const char *hostname; /* our name in local replies and EHLO upstream */
  uint32_t features;    /* sl_feature bits sluice may offer */
  uint32_t lenient;     /* sl_lenient bits */
  sl_vrfy_policy vrfy;
  sl_identity identity;
  sl_upstream_tls upstream_tls;
  uint8_t upstream_attempts; /* connect/greeting failures tolerated before
                                the client sees anything: 3 */
  uint8_t auth_requires_tls; /* offer AUTH only on a TLS client leg: 1 */
  uint8_t greet_teaser;      /* screen-first: send "220-" at once, the final
                                220 line after greet_delay: 1 */
  uint8_t forbid_unauth_pipelining; /* bytes after DATA/EHLO/QUIT/... before
                                       their reply: 554 5.5.0 and close */

  /* Tarpit profiles: normal for everyone, suspect once the score reaches
     tarpit_score, a pregreet or junk action says so, or admission was
     SL_ADMIT_TARPIT. */
  sl_tarpit normal;
  sl_tarpit suspect;

  /* Screening. */
  sl_action pregreet_action;  /* bytes before the final greeting line */
  int32_t pregreet_score;     /* added to the score on a pregreet */
  const sl_dnsbl_zone *dnsbl; /* zones, asked in order */
  uint8_t ndnsbl;
  sl_duration dnsbl_timeout;   /* answers not in by then count as unlisted */
  int32_t tarpit_score;        /* score >= this: suspect profile */
  int32_t reject_score;        /* score >= this: dnsbl_action */
  int32_t allow_score;         /* score <= this: skip pregreet and tarpit */
  sl_action dnsbl_action;      /* at reject_score */
  const char *auth_mechanisms; /* screen-first AUTH line ("PLAIN LOGIN"),
                                  NULL: AUTH offered only once upstream */

  /* Relay control at RCPT (sluice/rcpt_policy.h).  The default refuses
     every recipient of an unauthenticated client outside mynetworks. */
  sl_rcpt_policy rcpt;
  /* Ask the driver (SL_REQ_RCPT_CHECK) about each RCPT that passed relay
     control, before it goes upstream: policy services and greylisting. */
  uint8_t rcpt_check;
  /* sl_check_stage bits: ask the driver the same way (the request's
     check.stage says which) about each MAIL that passed sluice's own
     checks, and each DATA that has recipients once every RCPT reply is
     in; a refusal answers that command (Postfix's check_policy_service in
     smtpd_sender_restrictions / smtpd_data_restrictions). */
  uint8_t check_stages;
} sl_policy;

/* Fills p with a strict pass-through policy: all features, no tarpit, no
   DNSBL, VRFY 252, no identity, opportunistic upstream TLS, hostname
   "localhost", no relay domain (sl_rcpt_policy_default). */
void sl_policy_default(sl_policy *p);

/* 0 if p is consistent, else SL_ERR_INVALID_ARGUMENT. */
int sl_policy_check(const sl_policy *p);

#ifdef __cplusplus
}
#endif
#endif
