/*
 * sluice/errors.h: API error codes of the sluice core.
 *
 * Two layers of errors exist.  Protocol errors of the peers (a bad command,
 * a malformed upstream reply, a timeout) never surface here: the relay turns
 * them into SMTP replies and close requests.  The codes below are API errors:
 * the caller broke a precondition or the relay cannot go on.  They are
 * negative, generated from one table, and sticky on a relay (see
 * sl_relay_last_error()).
 */
#ifndef SLUICE_ERRORS_H
#define SLUICE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, fatal, message) */
#define SL_ERR_MAP(XX)                                                        \
  XX(INVALID_ARGUMENT, -1, 0, "invalid argument")                             \
  XX(BAD_STATE, -2, 0, "call not valid in the relay's current state")         \
  XX(NOBUF, -3, 0, "memory block or pool buffer too small")                   \
  XX(TIME_BACKWARDS, -4, 1, "timestamp earlier than a previous one")          \
  XX(UNKNOWN_REQUEST, -5, 0, "no outstanding request has that id")            \
  XX(CLOSED, -6, 0, "the relay has closed")                                   \
  XX(INCOMPLETE, -7, 0, "more input is needed")                               \
  XX(MALFORMED, -8, 0, "input does not follow the protocol")                  \
  XX(INTERNAL, -9, 1, "internal error (a bug in sluice)")

typedef enum sl_err {
  SL_OK = 0,
#define SL_ERR_ENUM_(name, value, fatal, msg) SL_ERR_##name = value,
  SL_ERR_MAP(SL_ERR_ENUM_)
#undef SL_ERR_ENUM_
} sl_err;

/* A short English description of err; never NULL ("unknown error"). */
const char *sl_strerror(int err);
/* The symbolic name of err without prefix, e.g. "BAD_STATE"; never NULL. */
const char *sl_err_name(int err);
/* Nonzero if err leaves the relay unusable: the caller must destroy it.
   A negative code missing from the table counts as fatal; SL_OK and
   positive values do not. */
int sl_err_is_fatal(int err);

#ifdef __cplusplus
}
#endif
#endif
