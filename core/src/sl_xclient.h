/*
 * sl_xclient.h: the lines that tell an upstream who the real client is,
 * XCLIENT (Postfix XCLIENT_README) and XFORWARD (XFORWARD_README), with
 * their values in xtext (RFC 3461 4).  Pure: the caller writes the line.
 */
#ifndef SL_XCLIENT_H
#define SL_XCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"

/* Room for any line below: the 160-byte caps on the xtext'd name and HELO
   keep each under the 512-byte command line (RFC 5321 4.5.3.1.4), so one
   command suffices. */
#define SL_XCLIENT_LINE_MAX 512

/* The client as the upstream should log and judge it. */
typedef struct sl_ident {
  const sl_addr *addr; /* SL_AF_UNSPEC: unknown */
  const char *name;    /* its DNS name, or NULL: unknown */
  const uint8_t *helo; /* its EHLO/HELO argument, or NULL */
  size_t helo_len;
  int helo_seen; /* an EHLO or HELO was accepted in this session */
  int esmtp;     /* ... and it was EHLO */
} sl_ident;

/* The xtext of p[0..n) into out; returns its length, or 0 if it would be
   longer than max. */
size_t sl_xtext(uint8_t *out, size_t max, const uint8_t *p, size_t n);

/* "XCLIENT ADDR= PORT= NAME= [HELO= PROTO=]" (no CRLF) into line, which has
   SL_XCLIENT_LINE_MAX bytes; returns its length.  HELO and PROTO only when
   a HELO name is known. */
size_t sl_xclient_line(uint8_t *line, const sl_ident *id);

/* "XFORWARD NAME= ADDR= [PORT=] PROTO= HELO= [SOURCE=REMOTE]" (no CRLF)
   into line, which has SL_XCLIENT_LINE_MAX bytes; returns its length.
   up_caps are the upstream's EHLO capabilities (sl_caps.h): PORT and SOURCE
   are sent only if it offered them (SL_CAP_XFWD_PORT, SL_CAP_XFWD_SOURCE). */
size_t sl_xforward_line(uint8_t *line, const sl_ident *id, uint32_t up_caps);

#endif
