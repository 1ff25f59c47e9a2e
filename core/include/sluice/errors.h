/*
 * sluice/errors.h: API error codes of the sluice core.
 *
 * Two layers of errors exist.  Protocol errors of the peers (a bad command,
 * a malformed upstream reply, a timeout) never surface here: the relay turns
 * them into SMTP replies and close requests.  The codes below are API errors:
 * the caller broke a precondition or the relay cannot go on.  They are
 * negative and generated from one table; each function's comment lists the
 * ones it returns.
 *
 * On a relay, only the fatal codes (sl_err_is_fatal(): TIME_BACKWARDS,
 * INTERNAL) are sticky: the relay keeps the first one, every later call
 * that takes a timestamp returns it, sl_relay_last_error() reports it, and
 * the caller must free the relay.  The others are returned by the one call
 * that was wrong and change nothing, so the relay goes on.
 */
#ifndef SLUICE_ERRORS_H
#define SLUICE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, fatal, message).  -2 and -6 were codes nothing returned;
   their values are not reused. */
#define SL_ERR_MAP(XX)                                                         \
  XX(INVALID_ARGUMENT, -1, 0, "invalid argument")                              \
  XX(NOBUF, -3, 0, "memory block or buffer too small")                         \
  XX(TIME_BACKWARDS, -4, 1, "timestamp earlier than a previous one")           \
  XX(UNKNOWN_REQUEST, -5, 0, "no outstanding request has that id")             \
  XX(INCOMPLETE, -7, 0, "more input is needed")                                \
  XX(MALFORMED, -8, 0, "input does not follow the protocol")                   \
  XX(INTERNAL, -9, 1, "internal error (a bug in sluice)")

typedef enum sl_err {
  SL_OK = 0,
#define SL_ERR_ENUM_(name, value, fatal, msg) SL_ERR_##name = value,
  SL_ERR_MAP(SL_ERR_ENUM_)
#undef SL_ERR_ENUM_
} sl_err;

/* A short English description of err; never NULL ("unknown error"). */
const char *sl_strerror(int err);
/* The symbolic name of err without prefix, e.g. "TIME_BACKWARDS"; never NULL.
 */
const char *sl_err_name(int err);
/* Nonzero if err leaves the relay unusable: the caller must destroy it.
   A negative code missing from the table counts as fatal; SL_OK and
   positive values do not. */
int sl_err_is_fatal(int err);

#ifdef __cplusplus
}
#endif
#endif
