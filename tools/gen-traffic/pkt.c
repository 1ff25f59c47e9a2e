#include "pkt.h"

#include <pcap/pcap.h>
#include <string.h>

/* Locally administered MACs: the server's NIC and the router in front of it. */
static const uint8_t mac_server[6] = {0x02, 0x00, 0x5e, 0x10, 0x00, 0x25};
static const uint8_t mac_router[6] = {0x02, 0x00, 0x5e, 0x10, 0x00, 0x01};

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

uint32_t pkt_sum(uint32_t acc, const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i + 1 < n; i += 2)
    acc += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1)
    acc += (uint32_t)(p[n - 1] << 8);
  while (acc >> 16)
    acc = (acc & 0xffffu) + (acc >> 16);
  return acc;
}

uint16_t pkt_fold(uint32_t acc) {
  while (acc >> 16)
    acc = (acc & 0xffffu) + (acc >> 16);
  return (uint16_t)acc;
}

size_t pkt_build(uint8_t *buf, int linktype, const struct tcpseg *s) {
  size_t off = 0;
  int v6 = s->src->family == 6;
  size_t tcplen = 20 + s->optlen + s->plen;

  if (linktype == DLT_EN10MB) {
    memcpy(buf, s->to_server ? mac_server : mac_router, 6);
    memcpy(buf + 6, s->to_server ? mac_router : mac_server, 6);
    put16(buf + 12, v6 ? 0x86dd : 0x0800);
    off = 14;
  }

  uint8_t *ip = buf + off;
  uint32_t pseudo;
  if (v6) {
    put32(ip, 0x60000000u);
    put16(ip + 4, (uint32_t)tcplen);
    ip[6] = 6;
    ip[7] = s->ttl;
    memcpy(ip + 8, s->src->b, 16);
    memcpy(ip + 24, s->dst->b, 16);
    pseudo = pkt_sum(0, ip + 8, 32);
    off += 40;
  } else {
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, (uint32_t)(20 + tcplen));
    put16(ip + 4, s->ipid);
    put16(ip + 6, 0x4000); /* DF: both ends do path MTU discovery */
    ip[8] = s->ttl;
    ip[9] = 6;
    put16(ip + 10, 0);
    memcpy(ip + 12, s->src->b, 4);
    memcpy(ip + 16, s->dst->b, 4);
    put16(ip + 10, (uint16_t)~pkt_fold(pkt_sum(0, ip, 20)));
    pseudo = pkt_sum(0, ip + 12, 8);
    off += 20;
  }
  pseudo += 6 + (uint32_t)tcplen;

  uint8_t *t = buf + off;
  put16(t, s->sport);
  put16(t + 2, s->dport);
  put32(t + 4, s->seq);
  put32(t + 8, (s->flags & TCPF_ACK) ? s->ack : 0);
  t[12] = (uint8_t)(((20 + s->optlen) / 4) << 4);
  t[13] = s->flags;
  put16(t + 14, s->win);
  put16(t + 16, 0);
  put16(t + 18, 0);
  if (s->optlen)
    memcpy(t + 20, s->opt, s->optlen);
  if (s->plen)
    memcpy(t + 20 + s->optlen, s->payload, s->plen);
  put16(t + 16, (uint16_t)~pkt_fold(pkt_sum(pseudo, t, tcplen)));
  return off + tcplen;
}
