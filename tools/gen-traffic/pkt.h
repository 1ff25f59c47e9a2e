/*
 * pkt.h: building one captured frame (Ethernet or raw IP, IPv4 or IPv6, TCP)
 * with valid checksums.
 */
#ifndef GEN_PKT_H
#define GEN_PKT_H

#include <stddef.h>
#include <stdint.h>

struct addr {
  int family; /* 4 or 6 */
  uint8_t b[16];
};

enum {
  TCPF_FIN = 0x01,
  TCPF_SYN = 0x02,
  TCPF_RST = 0x04,
  TCPF_PSH = 0x08,
  TCPF_ACK = 0x10
};

struct tcpseg {
  const struct addr *src, *dst;
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint8_t flags;
  uint16_t win;
  uint8_t ttl;
  uint16_t ipid;
  int to_server; /* picks the MAC pair: capture is taken at the server */
  const uint8_t *opt;
  size_t optlen; /* multiple of 4 */
  const uint8_t *payload;
  size_t plen;
};

/* Largest frame pkt_build() can produce for a payload of plen bytes. */
#define PKT_OVERHEAD (14 + 40 + 60)

/* RFC 1071 ones-complement sum folded to 16 bits, not yet complemented. */
uint32_t pkt_sum(uint32_t acc, const uint8_t *p, size_t n);
uint16_t pkt_fold(uint32_t acc);

/* Writes the frame into buf (at least plen + PKT_OVERHEAD bytes) and returns
 * its length.  linktype is DLT_EN10MB or DLT_RAW. */
size_t pkt_build(uint8_t *buf, int linktype, const struct tcpseg *s);

#endif
