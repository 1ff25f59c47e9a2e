/*
 * sp_decode.h: from one captured link-layer frame to a TCP segment.
 *
 * Pure function of its input (no libpcap, no allocation), so the fuzzer can
 * drive it directly.  It never reads outside [frame, frame + caplen).
 *
 * Link types (libpcap DLT_* values as returned by pcap_datalink()):
 *   DLT_EN10MB (Ethernet, with any number of 802.1Q / 802.1ad / QinQ tags),
 *   DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_NULL and DLT_LOOP (the 4-byte address
 *   family read in either byte order), DLT_RAW, DLT_IPV4, DLT_IPV6.
 * Network: IPv4 with options; IPv6 with its extension headers skipped.
 */
#ifndef SP_DECODE_H
#define SP_DECODE_H

#include <stdint.h>

#include "sp_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_TCP_FIN 0x01
#define SP_TCP_SYN 0x02
#define SP_TCP_RST 0x04
#define SP_TCP_PSH 0x08
#define SP_TCP_ACK 0x10

typedef struct sp_tcp_segment {
  int64_t ts_us; /* absolute capture time, microseconds (set by the caller) */
  sp_endpoint src, dst;
  uint32_t seq, ack;
  uint8_t flags; /* SP_TCP_* */
  /* Payload bytes present in the capture.  payload points into the frame. */
  const uint8_t *payload;
  uint32_t caplen;
  /* Payload length on the wire, from the IP length fields; >= caplen.  The
   * difference is what the snapshot length cut off. */
  uint32_t wirelen;
} sp_tcp_segment;

typedef enum sp_decode_status {
  SP_DECODE_TCP = 0,    /* *out is filled */
  SP_DECODE_OTHER,      /* not IP, or IP but not TCP: not our business */
  SP_DECODE_FRAGMENT,   /* IP fragment other than the first: ignored */
  SP_DECODE_TRUNCATED,  /* the snapshot length cut into the headers */
  SP_DECODE_MALFORMED,  /* header fields contradict each other */
  SP_DECODE_UNSUPPORTED /* link type not handled */
} sp_decode_status;

/* A short name of the status for messages ("truncated headers", ...). */
const char *sp_decode_status_str(sp_decode_status st);

/* Nonzero if dlt is one of the link types listed above. */
int sp_decode_link_supported(int dlt);

/*
 * Decodes frame[0..caplen) of link type dlt; wirelen is the frame's length
 * on the wire (>= caplen; a smaller value is treated as caplen).
 * out->ts_us is left untouched.
 */
sp_decode_status sp_decode_frame(int dlt, const uint8_t *frame, uint32_t caplen,
                                 uint32_t wirelen, sp_tcp_segment *out);

#ifdef __cplusplus
}
#endif
#endif
