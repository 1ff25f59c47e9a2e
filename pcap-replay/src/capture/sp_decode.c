#include "sp_decode.h"

#include <pcap/dlt.h>
#include <string.h>

/* Both the bytes present (cap) and the bytes the packet had on the wire
 * (wire) are carried down the layers: the difference becomes a gap in the
 * stream, never invented data. */
typedef struct cursor {
  const uint8_t *p;
  uint32_t cap;
  uint32_t wire;
} cursor;

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static void skip(cursor *c, uint32_t n) {
  c->p += n;
  c->cap -= n;
  c->wire -= n;
}

const char *sp_decode_status_str(sp_decode_status st) {
  switch (st) {
  case SP_DECODE_TCP:
    return "tcp";
  case SP_DECODE_OTHER:
    return "not tcp";
  case SP_DECODE_FRAGMENT:
    return "non-first ip fragment";
  case SP_DECODE_TRUNCATED:
    return "truncated headers";
  case SP_DECODE_MALFORMED:
    return "malformed headers";
  case SP_DECODE_UNSUPPORTED:
    return "unsupported link type";
  }
  return "?";
}

int sp_decode_link_supported(int dlt) {
  switch (dlt) {
  case DLT_EN10MB:
  case DLT_LINUX_SLL:
  case DLT_LINUX_SLL2:
  case DLT_NULL:
  case DLT_LOOP:
  case DLT_RAW:
  case DLT_IPV4:
  case DLT_IPV6:
    return 1;
  default:
    return 0;
  }
}

static sp_decode_status decode_tcp(cursor c, sp_tcp_segment *out) {
  if (c.cap < 20)
    return c.wire < 20 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
  uint32_t hlen = (uint32_t)(c.p[12] >> 4) * 4;
  if (hlen < 20 || hlen > c.wire)
    return SP_DECODE_MALFORMED;
  if (hlen > c.cap)
    return SP_DECODE_TRUNCATED;
  out->src.port = rd16(c.p);
  out->dst.port = rd16(c.p + 2);
  out->seq = rd32(c.p + 4);
  out->ack = rd32(c.p + 8);
  out->flags = c.p[13] & 0x1f;
  skip(&c, hlen);
  out->payload = c.p;
  out->wirelen = c.wire;
  out->caplen = c.cap < c.wire ? c.cap : c.wire;
  return SP_DECODE_TCP;
}

static sp_decode_status decode_ipv4(cursor c, sp_tcp_segment *out) {
  if (c.cap < 20)
    return c.wire < 20 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
  if (c.p[0] >> 4 != 4)
    return SP_DECODE_MALFORMED;
  uint32_t ihl = (uint32_t)(c.p[0] & 0x0f) * 4;
  uint32_t total = rd16(c.p + 2);
  /* A total length of 0 is what segmentation offload leaves in captures
   * taken on the sending host: the frame length is then authoritative. */
  if (total == 0)
    total = c.wire;
  if (ihl < 20 || total < ihl)
    return SP_DECODE_MALFORMED;
  if (ihl > c.cap)
    return SP_DECODE_TRUNCATED;
  uint16_t frag = rd16(c.p + 6);
  if ((frag & 0x1fff) != 0)
    return SP_DECODE_FRAGMENT;
  uint8_t proto = c.p[9];
  out->src.family = out->dst.family = 4;
  memset(out->src.ip, 0, sizeof out->src.ip);
  memset(out->dst.ip, 0, sizeof out->dst.ip);
  memcpy(out->src.ip, c.p + 12, 4);
  memcpy(out->dst.ip, c.p + 16, 4);
  if (proto != 6)
    return SP_DECODE_OTHER;
  /* The IP length, not the frame length, bounds the segment: Ethernet pads
   * short frames, and the padding is not payload. */
  if (total < c.wire)
    c.wire = total;
  if (c.cap > c.wire)
    c.cap = c.wire;
  skip(&c, ihl);
  return decode_tcp(c, out);
}

static sp_decode_status decode_ipv6(cursor c, sp_tcp_segment *out) {
  if (c.cap < 40)
    return c.wire < 40 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
  if (c.p[0] >> 4 != 6)
    return SP_DECODE_MALFORMED;
  uint32_t plen = rd16(c.p + 4);
  uint8_t next = c.p[6];
  out->src.family = out->dst.family = 6;
  memcpy(out->src.ip, c.p + 8, 16);
  memcpy(out->dst.ip, c.p + 24, 16);
  /* Payload length 0 means a jumbogram or segmentation offload: the frame
   * length is then the only bound we have. */
  if (plen != 0 && plen + 40 < c.wire)
    c.wire = plen + 40;
  if (c.cap > c.wire)
    c.cap = c.wire;
  skip(&c, 40);
  for (int n = 0; n < 16; n++) {
    uint32_t len;
    switch (next) {
    case 6:
      return decode_tcp(c, out);
    case 0:   /* hop-by-hop */
    case 43:  /* routing */
    case 60:  /* destination options */
    case 135: /* mobility */
    case 139: /* HIP */
    case 140: /* shim6 */
      if (c.cap < 2)
        return c.wire < 2 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
      len = ((uint32_t)c.p[1] + 1) * 8;
      break;
    case 51: /* AH counts in 4-byte units, minus 2 */
      if (c.cap < 2)
        return c.wire < 2 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
      len = ((uint32_t)c.p[1] + 2) * 4;
      break;
    case 44: /* fragment */
      if (c.cap < 8)
        return c.wire < 8 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
      if ((rd16(c.p + 2) & 0xfff8) != 0)
        return SP_DECODE_FRAGMENT;
      len = 8;
      break;
    default: /* no next header, ESP, UDP, ICMPv6, ... */
      return SP_DECODE_OTHER;
    }
    if (len > c.wire)
      return SP_DECODE_MALFORMED;
    if (len > c.cap)
      return SP_DECODE_TRUNCATED;
    next = c.p[0];
    skip(&c, len);
  }
  return SP_DECODE_MALFORMED;
}

static sp_decode_status decode_ip_by_version(cursor c, sp_tcp_segment *out) {
  if (c.cap < 1)
    return c.wire < 1 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
  switch (c.p[0] >> 4) {
  case 4:
    return decode_ipv4(c, out);
  case 6:
    return decode_ipv6(c, out);
  default:
    return SP_DECODE_OTHER;
  }
}

/* c points at a 2-byte EtherType. */
static sp_decode_status decode_ethertype(cursor c, sp_tcp_segment *out) {
  for (int tags = 0;; tags++) {
    if (c.cap < 2)
      return c.wire < 2 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
    uint16_t type = rd16(c.p);
    switch (type) {
    case 0x0800:
      skip(&c, 2);
      return decode_ipv4(c, out);
    case 0x86dd:
      skip(&c, 2);
      return decode_ipv6(c, out);
    case 0x8100: /* 802.1Q */
    case 0x88a8: /* 802.1ad */
    case 0x9100: /* old QinQ */
    case 0x9200:
      if (tags >= 8)
        return SP_DECODE_MALFORMED;
      if (c.cap < 6)
        return c.wire < 6 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
      skip(&c, 4); /* type + TCI; the inner type follows */
      break;
    default:
      return SP_DECODE_OTHER;
    }
  }
}

static int family_of(uint32_t v) {
  switch (v) {
  case 2:
    return 4;
  case 10: /* Linux */
  case 24: /* NetBSD, OpenBSD, BSD/OS */
  case 28: /* FreeBSD */
  case 30: /* Darwin */
    return 6;
  default:
    return 0;
  }
}

sp_decode_status sp_decode_frame(int dlt, const uint8_t *frame, uint32_t caplen,
                                 uint32_t wirelen, sp_tcp_segment *out) {
  cursor c = {frame, caplen, wirelen < caplen ? caplen : wirelen};
  switch (dlt) {
  case DLT_EN10MB:
    if (c.cap < 14)
      return c.wire < 14 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
    skip(&c, 12);
    return decode_ethertype(c, out);
  case DLT_LINUX_SLL:
    if (c.cap < 16)
      return c.wire < 16 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
    skip(&c, 14);
    return decode_ethertype(c, out);
  case DLT_LINUX_SLL2: {
    if (c.cap < 20)
      return c.wire < 20 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
    /* SLL2 puts the protocol first, unlike SLL. */
    uint16_t type = rd16(c.p);
    skip(&c, 20);
    if (type == 0x0800)
      return decode_ipv4(c, out);
    if (type == 0x86dd)
      return decode_ipv6(c, out);
    return SP_DECODE_OTHER;
  }
  case DLT_NULL:
  case DLT_LOOP: {
    if (c.cap < 4)
      return c.wire < 4 ? SP_DECODE_MALFORMED : SP_DECODE_TRUNCATED;
    /* The family is in the capturing host's byte order for DLT_NULL and in
     * network order for DLT_LOOP, and writers get this wrong: accept
     * either order for both. */
    uint32_t be = rd32(c.p);
    uint32_t le = (uint32_t)c.p[0] | (uint32_t)c.p[1] << 8 |
                  (uint32_t)c.p[2] << 16 | (uint32_t)c.p[3] << 24;
    int fam = family_of(be);
    if (!fam)
      fam = family_of(le);
    skip(&c, 4);
    if (fam == 4)
      return decode_ipv4(c, out);
    if (fam == 6)
      return decode_ipv6(c, out);
    return SP_DECODE_OTHER;
  }
  case DLT_RAW:
    return decode_ip_by_version(c, out);
  case DLT_IPV4:
    return decode_ipv4(c, out);
  case DLT_IPV6:
    return decode_ipv6(c, out);
  default:
    return SP_DECODE_UNSUPPORTED;
  }
}
