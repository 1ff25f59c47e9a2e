/*
 * sluice/proxy.h: the PROXY protocol, versions 1 and 2 (haproxy
 * proxy-protocol.txt), as a parser for headers from a trusted balancer in
 * front and a writer for headers toward the upstream.
 *
 * Strict per the spec: v1 is "PROXY TCP4|TCP6|UNKNOWN ..." ended by CRLF
 * within 107 bytes, no leading zeros, ports 0..65535, single spaces; a lone CR
 * or LF never ends it.  v2 has the 12-byte signature, version 2, command
 * LOCAL or PROXY, families INET/INET6/UNSPEC over STREAM (or UNSPEC), and
 * its TLVs are skipped but bounded by the announced length.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_PROXY_V1_MAX 107 /* bytes, with CRLF */
#define SL_PROXY_V2_MAX (16 + 65535)

typedef struct sl_proxy_header {
  uint8_t version;  /* 1 or 2 */
  uint8_t local;    /* v2 LOCAL command or v1 UNKNOWN: keep the socket's
                       own addresses */
  sl_addr src, dst; /* family SL_AF_UNSPEC when local */
} sl_proxy_header;

/*
 * Parses a header at the start of buf.  Returns the header's length (> 0)
 * and fills *h; SL_ERR_INCOMPLETE if buf is a valid prefix of a header
 * (read more, within the deadline); SL_ERR_MALFORMED otherwise (abort the
 * connection); SL_ERR_INVALID_ARGUMENT for NULL h, or NULL buf with len > 0.
 * Never reads past len; *h is written only on success.  v2 PROXY over
 * UNSPEC is reported like LOCAL (local = 1).  A v1 line is refused when it
 * passes 107 bytes even if its fields are valid (long "::ffff:a.b.c.d"
 * forms can do that).  A v2 header announcing 65535 bytes stays INCOMPLETE
 * until they arrive unless its TLVs prove it malformed first, so the
 * caller needs SL_PROXY_V2_MAX bytes of buffer or must give up itself.
 */
long sl_proxy_parse(const uint8_t *buf, size_t len, sl_proxy_header *h);

/*
 * Writes a header naming src and dst (same family; SL_AF_UNSPEC writes v1
 * "PROXY UNKNOWN\r\n" or a v2 LOCAL header).  Returns its length (v1 at
 * most 104, v2 at most 52, no TLVs), or SL_ERR_NOBUF /
 * SL_ERR_INVALID_ARGUMENT; nothing is written on error.
 */
long sl_proxy_write_v1(uint8_t *out, size_t len, const sl_addr *src,
                       const sl_addr *dst);
long sl_proxy_write_v2(uint8_t *out, size_t len, const sl_addr *src,
                       const sl_addr *dst);

#ifdef __cplusplus
}
#endif
#endif
