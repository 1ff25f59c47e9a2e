/*
 * sl_cmd.h: client command lines (RFC 5321 4.1, RFC 1869/6531/3461/3030).
 *
 * A line arrives without its CRLF and has already been checked for CR, LF
 * and NUL by the relay.  These functions classify the verb and check the
 * arguments the relay must understand before anything goes upstream.
 */
#ifndef SL_CMD_H
#define SL_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/relay.h"

/* The verbs are the public command list (sluice/relay.h), so a verb is the
   sl_command a reply answers: SL_V_UNKNOWN ... SL_V_NONSMTP (HTTP verbs,
   "Header:" lines, lines not starting with a letter: cross-protocol
   traffic, Postfix's forbidden commands).  XCLIENT and XFORWARD are never
   relayed: the identity is sluice's to assert.  The parser never returns
   SL_V_CONNECT, SL_V_END_OF_MESSAGE or SL_V_NONE. */
typedef enum sl_verb {
#define SL_V_ENUM_(name, value, text) SL_V_##name = value,
  SL_COMMAND_MAP(SL_V_ENUM_)
#undef SL_V_ENUM_
} sl_verb;

/* The verb and the offset of its argument (after the spaces following the
   verb; len when there is none). */
typedef struct sl_cmd {
  sl_verb verb;
  uint32_t arg;
} sl_cmd;

void sl_cmd_parse(const uint8_t *line, size_t len, sl_cmd *c);

/* Result of checking a MAIL or RCPT command. */
typedef enum sl_path_err {
  SL_PATH_OK = 0,
  SL_PATH_SYNTAX,        /* 501 5.5.4 / 5.1.7 / 5.1.3 */
  SL_PATH_TOO_LONG,      /* 501 5.1.3 (4.5.3.1.1-.3) */
  SL_PATH_PARAM,         /* 555 5.5.4 unsupported parameter */
  SL_PATH_NEED_SMTPUTF8, /* 553 5.6.7 (RFC 6531 3.4) */
  SL_PATH_SIZE           /* 552 5.3.4 SIZE= over the limit */
} sl_path_err;

/* MAIL and RCPT parameters sluice understands (bits of the offered
   features decide which are allowed). */
enum sl_param {
  SL_P_SIZE = 1u << 0,
  SL_P_BODY_8BIT = 1u << 1,
  SL_P_BODY_7BIT = 1u << 2,
  SL_P_SMTPUTF8 = 1u << 3,
  SL_P_DSN = 1u << 4,  /* RET, ENVID, NOTIFY, ORCPT */
  SL_P_AUTH = 1u << 5, /* MAIL AUTH= */
  SL_P_BODY_BINARY = 1u << 6
};

typedef struct sl_path_limits {
  uint32_t path_max, domain_max;
  uint64_t size_max; /* 0: none */
  uint32_t allowed;  /* sl_param bits the client was offered */
} sl_path_limits;

/*
 * Checks "MAIL FROM:<path> [params]" (is_mail) or "RCPT TO:<path> [params]"
 * starting at the argument.  A space after the colon is tolerated (common
 * practice); the angle brackets are not optional.  Fills *size when SIZE= is
 * given.
 */
sl_path_err sl_cmd_check_path(const uint8_t *arg, size_t len, int is_mail,
                              const sl_path_limits *lim, uint64_t *size);

/* The sl_param classes of the parameters of a MAIL or RCPT argument that
   passed sl_cmd_check_path() (BODY=7BIT counts as SL_P_BODY_7BIT). */
uint32_t sl_cmd_param_classes(const uint8_t *arg, size_t len);

/*
 * Copies a MAIL or RCPT line whose argument (at offset arg) passed
 * sl_cmd_check_path() into out, leaving out every parameter whose class is
 * in drop: what an upstream that lacks an extension must not see (RFC 1870,
 * 3461, 4954).  Returns the length written, at most len.
 */
size_t sl_cmd_drop_params(const uint8_t *line, size_t len, size_t arg,
                          uint32_t drop, uint8_t *out);

/* "BDAT <size> [LAST]": returns 0 and fills size/last, or -1. */
int sl_cmd_bdat(const uint8_t *arg, size_t len, uint64_t *size, int *last);

/* A usable EHLO/HELO argument: one non-empty token of printable bytes (no
   space, no control), at most domain_max bytes.  Returns the token length,
   0 if unusable. */
size_t sl_cmd_helo_arg(const uint8_t *arg, size_t len, uint32_t domain_max);

/* Case-insensitive compare of n bytes against an upper-case ASCII literal. */
int sl_ieq(const uint8_t *p, const char *upper, size_t n);

#endif
