/*
 * sl_caps.h: ESMTP capabilities (RFC 5321 4.1.1.1 and the extension RFCs).
 *
 * The EHLO reply a client sees is the intersection of what the upstream
 * offers, what sluice can relay and what the policy allows (DESIGN.md 2).
 * It is always rendered from flags, never copied, so unknown or dangerous
 * upstream keywords (XCLIENT, XFORWARD, BINARYMIME, a second STARTTLS) can
 * never reach the client.
 */
#ifndef SL_CAPS_H
#define SL_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "sl_reply.h"

/* Capability bits; the first nine equal the sl_feature bits of policy.h. */
enum sl_cap {
  SL_CAP_PIPELINING = 1u << 0,
  SL_CAP_SIZE = 1u << 1,
  SL_CAP_8BITMIME = 1u << 2,
  SL_CAP_SMTPUTF8 = 1u << 3,
  SL_CAP_ENHANCEDSTATUSCODES = 1u << 4,
  SL_CAP_DSN = 1u << 5,
  SL_CAP_CHUNKING = 1u << 6,
  SL_CAP_STARTTLS = 1u << 7,
  SL_CAP_AUTH = 1u << 8,
  SL_CAP_XCLIENT = 1u << 9,
  /* XFORWARD offering at least NAME ADDR PROTO HELO (Postfix
     XFORWARD_README); PORT and SOURCE are sent only when offered too, since
     an attribute the server does not know makes it refuse the command. */
  SL_CAP_XFORWARD = 1u << 10,
  SL_CAP_XFWD_PORT = 1u << 11,
  SL_CAP_XFWD_SOURCE = 1u << 12
};

typedef struct sl_caps {
  uint32_t bits;
  uint64_t size;     /* SIZE value; 0: none announced or unlimited */
  uint32_t auth_off; /* the AUTH mechanism list inside the reply */
  uint32_t auth_len;
} sl_caps;

/* Reads the keyword lines (all but the first) of an EHLO reply. */
void sl_caps_parse(const uint8_t *buf, const sl_reply *r, sl_caps *caps);

/* Longest EHLO reply sl_caps_render() writes beyond the two texts. */
#define SL_CAPS_RENDER_MAX 160

/*
 * Writes a 250 EHLO reply: the first line's text (greet), then one line per
 * bit of offer in a fixed order; SIZE with size (bare "SIZE" if 0); AUTH
 * with the mechanism list auth (dropped when authlen is 0).  out must hold
 * greetlen + authlen + SL_CAPS_RENDER_MAX.  Returns bytes written.
 */
size_t sl_caps_render(uint8_t *out, const uint8_t *greet, size_t greetlen,
                      uint32_t offer, uint64_t size, const uint8_t *auth,
                      size_t authlen);

#endif
