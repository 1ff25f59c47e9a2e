/*
 * sluice/policyd.h: Postfix's policy delegation protocol (SMTPD_POLICY_
 * README), the pure codec.  A request is "name=value" lines and an empty
 * line; the server answers "action=..." (and possibly other attributes)
 * and an empty line.  The action means what it means in Postfix's
 * access(5) table, so postgrey, postfix-policyd-spf-python and
 * policyd-rate-limit plug in unchanged.  The socket is the driver's.
 */
#ifndef SLUICE_POLICYD_H
#define SLUICE_POLICYD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Postfix's own limit on an attribute line (smtpd_policy_service's
   line_length_limit default 2048) bounds what sluice reads back. */
#define SL_POLICYD_LINE_MAX 2048
/* Text kept from an action for the SMTP reply (beside code and enhanced
   status code), with its NUL. */
#define SL_POLICYD_TEXT_MAX 256

typedef struct sl_policyd_attr {
  const char *name;
  const char *value; /* NULL: written as empty */
} sl_policyd_attr;

/*
 * Writes n "name=value\n" lines and the empty line into out.  A value's
 * bytes outside printable ASCII and space (CR, LF, NUL, ...) become '?',
 * so a client-chosen value cannot add an attribute or end the request.
 * Returns the length, or -1 if cap is too small.
 */
long sl_policyd_encode(const sl_policyd_attr *a, size_t n, char *out,
                       size_t cap);

/*
 * Looks for one whole response at the start of b: lines ending in LF (a
 * CR before it is dropped) up to an empty line.  Returns its length with
 * *act and *alen naming the value of its "action=" line, SL_ERR_INCOMPLETE
 * when the empty line has not come yet (and every line so far is within
 * SL_POLICYD_LINE_MAX), or SL_ERR_MALFORMED (a line without '=', an
 * overlong line, no or two action lines).
 */
long sl_policyd_parse(const uint8_t *b, size_t n, const uint8_t **act,
                      size_t *alen);

typedef enum sl_policyd_kind {
  SL_PD_DUNNO = 0, /* no decision: go on (also the actions a proxy cannot
                      carry out: PREPEND, WARN, HOLD, FILTER, ...) */
  SL_PD_OK,        /* accept: later checks (greylisting) are skipped */
  SL_PD_REFUSE,    /* reply with code and text: DEFER, REJECT, 4NN, 5NN */
  SL_PD_ERROR      /* not an action Postfix knows: the server is broken */
} sl_policyd_kind;

typedef struct sl_policyd_verdict {
  sl_policyd_kind kind;
  uint16_t code; /* SL_PD_REFUSE: 4xx or 5xx */
  /* SL_PD_REFUSE: "d.d.d text", printable ASCII only, its class that of
     code; an enhanced code the server gave in the wrong class or none is
     replaced by 4.7.1 / 5.7.1 */
  char text[SL_POLICYD_TEXT_MAX];
} sl_policyd_verdict;

/* What an action value means (access(5)): OK, DUNNO, REJECT [text],
   DEFER [text], DEFER_IF_PERMIT [text] (sluice has no later rule that
   could reject, so: DEFER), DEFER_IF_REJECT (DUNNO), 4NN [text], 5NN
   [text]; keywords are case-insensitive. */
void sl_policyd_action(const uint8_t *act, size_t n, sl_policyd_verdict *v);

#ifdef __cplusplus
}
#endif
#endif
