/* sl_envelope.c: 8-bit bytes in command lines; see sl_envelope.h. */
#include "sl_envelope.h"

#include "sluice/utf8.h"

int sl_env_has_smtputf8(const uint8_t *arg, size_t len) {
  for (size_t k = 0; k + 8 <= len; k++)
    if ((k == 0 || arg[k - 1] == ' ') && (k + 8 == len || arg[k + 8] == ' ') &&
        sl_ieq(arg + k, "SMTPUTF8", 8))
      return 1;
  return 0;
}

sl_env_verdict sl_env_8bit(sl_verb v, const uint8_t *line, size_t len,
                           size_t arg, int utf8_txn, int utf8_offered) {
  if (sl_utf8_is_ascii(line, len))
    return SL_ENV_OK;
  /* Postfix checks the whole line first, whatever the command: a byte
     sequence that is not UTF-8 is never a valid address or argument. */
  if (sl_utf8_check(line, len) != len)
    return SL_ENV_BAD_UTF8;
  const uint8_t *a = line + arg;
  size_t alen = len - arg;
  switch (v) {
  case SL_V_MAIL:
    return sl_env_mail_smtputf8(a, alen) ? SL_ENV_OK : SL_ENV_NEED_SMTPUTF8;
  case SL_V_VRFY:
  case SL_V_EXPN:
    /* RFC 6531 3.7.4.2: the string may be UTF-8 with the SMTPUTF8
       parameter, which only an offer allows. */
    return utf8_offered && sl_env_has_smtputf8(a, alen) ? SL_ENV_OK
                                                        : SL_ENV_NEED_SMTPUTF8;
  case SL_V_RCPT:
    return utf8_txn ? SL_ENV_OK : SL_ENV_NEED_SMTPUTF8;
  case SL_V_EHLO:
  case SL_V_HELO:
    return SL_ENV_HELO_8BIT;
  case SL_V_NOOP:
  case SL_V_HELP:
    /* free-text arguments; UTF-8 once the transaction allows it */
    return utf8_txn ? SL_ENV_OK : SL_ENV_8BIT;
  default:
    /* DATA, BDAT, RSET, QUIT, AUTH, STARTTLS ...: ASCII by definition */
    return SL_ENV_8BIT;
  }
}

int sl_env_mail_smtputf8(const uint8_t *arg, size_t len) {
  size_t off, n;
  if (sl_env_path(arg, len, &off, &n) < 0)
    return 0;
  size_t end = off + n + 1; /* after '>' */
  return sl_env_has_smtputf8(arg + end, len - end);
}

int sl_env_path(const uint8_t *arg, size_t len, size_t *off, size_t *n) {
  size_t i = 0;
  while (i < len && arg[i] != '<')
    i++;
  if (i == len)
    return -1;
  size_t start = ++i;
  int quoted = 0;
  for (; i < len; i++) {
    if (quoted && arg[i] == '\\') {
      i++;
      continue;
    }
    if (arg[i] == '"')
      quoted = !quoted;
    else if (arg[i] == '>' && !quoted) {
      *off = start;
      *n = i - start;
      return 0;
    }
  }
  return -1;
}
