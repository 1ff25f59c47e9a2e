/*
 * sl_errors.c: the error table of errors.h, expanded from SL_ERR_MAP so the
 * enum, names, messages and fatality can never drift apart.
 */
#include "sluice/errors.h"

const char *sl_strerror(int err) {
  switch (err) {
  case SL_OK:
    return "success";
#define SL_ERR_MSG_(name, value, fatal, msg)                                   \
  case value:                                                                  \
    return msg;
    SL_ERR_MAP(SL_ERR_MSG_)
#undef SL_ERR_MSG_
  default:
    return "unknown error";
  }
}

const char *sl_err_name(int err) {
  switch (err) {
  case SL_OK:
    return "OK";
#define SL_ERR_NAME_(name, value, fatal, msg)                                  \
  case value:                                                                  \
    return #name;
    SL_ERR_MAP(SL_ERR_NAME_)
#undef SL_ERR_NAME_
  default:
    return "UNKNOWN";
  }
}

int sl_err_is_fatal(int err) {
  switch (err) {
#define SL_ERR_FATAL_(name, value, fatal, msg)                                 \
  case value:                                                                  \
    return fatal;
    SL_ERR_MAP(SL_ERR_FATAL_)
#undef SL_ERR_FATAL_
  default:
    /* An unknown negative code is treated as fatal: the caller cannot know
       the relay survived something sluice never promised. */
    return err < 0;
  }
}
