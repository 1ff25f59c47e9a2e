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

typedef enum sl_mode {
  /* Connect upstream on accept and relay its greeting. */
  SL_MODE_PASSTHROUGH = 0,
  /* Greet locally, screen, connect upstream at the first command that needs
     it (MAIL, AUTH, VRFY/EXPN when relayed) and replay the client's EHLO. */
  SL_MODE_SCREEN_FIRST = 1
} sl_mode;

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

typedef enum sl_vrfy_policy {
  SL_VRFY_252 = 0,  /* "252 2.5.0 Cannot VRFY user" (RFC 5321 3.5.3) */
  SL_VRFY_502 = 1,  /* "502 5.5.1 VRFY/EXPN disabled" */
  SL_VRFY_RELAY = 2 /* relay to the upstream */
} sl_vrfy_policy;

typedef enum sl_identity {
  SL_IDENT_NONE = 0,
  SL_IDENT_XCLIENT = 1, /* XCLIENT ADDR/PORT/NAME/HELO/PROTO when offered */
  SL_IDENT_PROXY_V1 = 2,
  SL_IDENT_PROXY_V2 = 3,
  SL_IDENT_XFORWARD = 4 /* XFORWARD NAME/ADDR/PORT/PROTO/HELO/SOURCE before
                           each upstream MAIL, when offered */
} sl_identity;

typedef enum sl_upstream_tls {
  SL_UPTLS_NONE = 0,          /* never STARTTLS upstream */
  SL_UPTLS_OPPORTUNISTIC = 1, /* STARTTLS when offered */
  SL_UPTLS_REQUIRED = 2,      /* an upstream without STARTTLS has failed */
  SL_UPTLS_IMPLICIT = 3       /* the driver connects with TLS (port 465) */
} sl_upstream_tls;

/* What a screening verdict does to the session. */
typedef enum sl_action {
  SL_ACT_CONTINUE = 0, /* only log and score */
  SL_ACT_TARPIT = 1,   /* switch to the suspect tarpit profile */
  SL_ACT_REJECT = 2,   /* 554 5.7.1 to every transaction command; the
                          client may still QUIT (RFC 5321 3.1) */
  SL_ACT_DROP = 3      /* 521 5.7.1 and close */
} sl_action;

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
  SL_CHECK_DATA = 1u << 1  /* check.stage SL_CMD_DATA */
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
