/*
 * sl_envelope.h: where 8-bit bytes may appear in command lines, and the
 * recipient path of a RCPT (RFC 6531, RFC 3629).
 *
 * SMTPUTF8 is in effect for a transaction once its MAIL carried the
 * SMTPUTF8 parameter (RFC 6531 3.4); before that, and for commands outside
 * a transaction, a command line is ASCII.  Where UTF-8 is allowed it must
 * be well-formed (sluice/utf8.h).
 */
#ifndef SL_ENVELOPE_H
#define SL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "sl_cmd.h"

typedef enum sl_env_verdict {
  SL_ENV_OK = 0,
  SL_ENV_BAD_UTF8,      /* 500 5.5.2 Error: bad UTF-8 syntax (Postfix) */
  SL_ENV_NEED_SMTPUTF8, /* 553 5.6.7: a non-ASCII address without SMTPUTF8
                           (RFC 6531 3.4; Postfix's "Must declare SMTPUTF8
                           to send unicode address") */
  SL_ENV_HELO_8BIT,     /* 501 5.5.2: the EHLO/HELO argument precedes any
                           SMTPUTF8 and must be ASCII (A-labels; RFC 5321
                           4.1.2 asks 501 for invalid characters) */
  SL_ENV_8BIT           /* 500 5.5.2: any other command line with 8-bit
                           bytes and no SMTPUTF8 transaction */
} sl_env_verdict;

/*
 * Judges the 8-bit bytes of one command line (CRLF stripped; arg is the
 * offset of the argument as sl_cmd_parse() found it).  utf8_txn: the
 * transaction in force declared SMTPUTF8.  MAIL may carry UTF-8 with its
 * own SMTPUTF8 parameter, VRFY/EXPN with theirs (RFC 6531 3.7.4) when
 * SMTPUTF8 was offered (utf8_offered: they may be relayed, and nothing
 * the upstream did not offer may reach it, guarantee 8), RCPT and the
 * argument-taking commands within an SMTPUTF8 transaction; EHLO/HELO
 * never.  A line of ASCII is always SL_ENV_OK.  (MAIL's SMTPUTF8 parameter
 * without the offer is sl_cmd_check_path()'s 555.)
 */
sl_env_verdict sl_env_8bit(sl_verb v, const uint8_t *line, size_t len,
                           size_t arg, int utf8_txn, int utf8_offered);

/* Nonzero if the parameters of a MAIL/VRFY/EXPN argument (after the
   path or the string) include SMTPUTF8 as a whole word. */
int sl_env_has_smtputf8(const uint8_t *arg, size_t len);

/* Nonzero if a "FROM:<path> params" argument has the SMTPUTF8 parameter
   (searched after the path, so a quoted local part cannot fake it). */
int sl_env_mail_smtputf8(const uint8_t *arg, size_t len);

/*
 * The path of a "TO:<path> ..." / "FROM:<path> ..." argument that passed
 * sl_cmd_check_path(): sets *off and *n to the bytes between the angle
 * brackets and returns 0; -1 if there is no well-formed path.
 */
int sl_env_path(const uint8_t *arg, size_t len, size_t *off, size_t *n);

#endif
