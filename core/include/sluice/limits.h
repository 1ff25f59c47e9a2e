/*
 * sluice/limits.h: time, and the named limits of one relay.
 *
 * Every limit has its RFC default and a defined SMTP reply when it is
 * exceeded (see README "Limits").  The memory of a relay is a function of its
 * limits alone: sl_relay_size() and sl_relay_memory_bound().
 */
#ifndef SLUICE_LIMITS_H
#define SLUICE_LIMITS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A monotonic timestamp in nanoseconds; the origin is the driver's. */
typedef uint64_t sl_tstamp;
/* A span of time in nanoseconds. */
typedef uint64_t sl_duration;

/* "No deadline" / "never". */
#define SL_TSTAMP_NONE UINT64_MAX

#define SL_NSEC ((sl_duration)1)
#define SL_USEC ((sl_duration)1000)
#define SL_MSEC ((sl_duration)1000000)
#define SL_SEC ((sl_duration)1000000000)

#define SL_LIMITS_VERSION 1

typedef struct sl_limits {
  uint32_t version; /* SL_LIMITS_VERSION */

  /* Sizes in octets, each including the CRLF. */
  uint32_t command_line_max; /* 512, RFC 5321 4.5.3.1.4: 500 5.5.2 */
  uint32_t auth_line_max;    /* 12288, RFC 4954 section 4 */
  uint32_t reply_line_max;   /* 512, RFC 5321 4.5.3.1.5 (upstream replies) */
  uint32_t reply_max;        /* 13312: a whole multi-line upstream reply
                                (a 12288-octet AUTH challenge and its
                                framing) */
  uint32_t text_line_max;    /* 1000, RFC 5321 4.5.3.1.6: 554 5.6.0 */
  uint32_t path_max;         /* 256, RFC 5321 4.5.3.1.3: 501 5.1.3 */
  uint32_t domain_max;       /* 255, RFC 5321 4.5.3.1.2: 501 5.5.4 */
  uint64_t message_size_max; /* 52428800 (Postfix's default); 0 = none:
                                552 5.3.4 */
  uint32_t recipients_max;   /* 100, RFC 5321 4.5.3.1.8: 452 4.5.3 */
  uint32_t recipient_overshoot_max; /* 1000 (Postfix's
                                 smtpd_recipient_overshoot_limit): RCPTs
                                 over recipients_max in one transaction
                                 that get 452 without counting as errors,
                                 so a client can send DATA for the accepted
                                 ones and retry the rest (4.5.3.1.10) */
  uint32_t pipeline_max;            /* commands awaiting replies: 32 (2..32) */
  uint32_t errors_max;              /* 20 (Postfix smtpd_hard_error_limit):
                                       421 4.7.0 */
  uint32_t junk_commands_max;       /* 100 (smtpd_junk_command_limit), NOOP,
                                       RSET, VRFY, EXPN, HELP: 421 4.7.0 */
  uint32_t buffer_size;       /* a large pool buffer: 16384 (>= reply_max + 512,
                                 >= auth_line_max + 2, <= 65528) */
  uint32_t small_buffer_size; /* a small pool buffer: 512 (>= 300) */

  /* Timeouts (RFC 5321 4.5.3.2); 0 disables one. */
  sl_duration proxy_header_timeout; /* 5 s, PROXY header from a balancer */
  sl_duration command_timeout;      /* 300 s, server waits for a command
                                       (4.5.3.2.7), from the end of the previous
                                       one to the end of this line, not restarted
                                       by each byte: 421 4.4.2 */
  sl_duration data_block_timeout;   /* 180 s, between DATA/BDAT bytes */
  sl_duration record_timeout;       /* 60 s, from the first byte of a line (a
                                       command, DATA or reply line) to its LF
                                       (Postfix's smtpd_per_record_deadline):
                                       421 4.4.2 to a client, upstream failed */
  sl_duration send_timeout;         /* 300 s, client not reading our replies */
  sl_duration upstream_connect_timeout;   /* 30 s */
  sl_duration upstream_greeting_timeout;  /* 300 s (4.5.3.2.1) */
  sl_duration upstream_command_timeout;   /* 300 s: MAIL, RCPT, others */
  sl_duration upstream_data_init_timeout; /* 120 s (4.5.3.2.4) */
  sl_duration upstream_data_term_timeout; /* 600 s (4.5.3.2.6) */
  sl_duration tls_handshake_timeout;      /* 60 s, either leg */
  sl_duration session_timeout;            /* 7200 s, an overall cap on a session
                                             (README "Limits"): 421 4.4.2 */
} sl_limits;

/* Fills l with the defaults above. */
void sl_limits_default(sl_limits *l);

/* 0 if l is consistent, else SL_ERR_INVALID_ARGUMENT. */
int sl_limits_check(const sl_limits *l);

#ifdef __cplusplus
}
#endif
#endif
