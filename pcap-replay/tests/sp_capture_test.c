/*
 * Captures written here, in every supported link type, both byte orders,
 * micro- and nanosecond pcap and pcapng, read back through sp_capture,
 * sp_decode and the tracker.  One file also goes through the CLI.
 */
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>

#include "sl_test.h"
#include "sp_capture.h"
#include "sp_decode.h"
#include "sp_session.h"
#include "sp_transcript.h"

#define LT_ETHERNET 1
#define LT_RAW 101
#define LT_SLL 113
#define LT_NULL 0
#define LT_LOOP 108
#define LT_SLL2 276
#define LT_IPV4 228
#define LT_IPV6 229

enum {
  F_V6 = 1,
  F_IPOPT = 2,
  F_V6EXT = 4,
  F_VLAN = 8,
  F_QINQ = 16,
  F_NULL_BE = 32,
  F_EXTRA = 64,
  F_TRUNC = 128
};

typedef struct frame {
  uint8_t b[512];
  uint32_t caplen, len;
  int64_t ts_us;
} frame;

static frame frames[16];
static size_t nframes;
static char tmpdir[256];

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}

/* IP + TCP; returns the length. */
static size_t ip_tcp(uint8_t *p, int opts, int from_client, uint32_t seq,
                     uint8_t flags, const char *data, uint8_t ipproto,
                     uint16_t frag) {
  size_t dlen = strlen(data), n = 0;
  uint8_t cip[16] = {0}, sip[16] = {0};
  if (opts & F_V6) {
    cip[0] = sip[0] = 0x20;
    cip[1] = sip[1] = 0x01;
    cip[15] = 1;
    sip[15] = 2;
    size_t ext = ((opts & F_V6EXT) ? 16u : 0u) + (frag ? 8u : 0u);
    memset(p, 0, 40 + ext);
    p[0] = 0x60;
    put16(p + 4, (uint32_t)(ext + 20 + dlen));
    p[7] = 64;
    memcpy(p + 8, from_client ? cip : sip, 16);
    memcpy(p + 24, from_client ? sip : cip, 16);
    n = 40;
    uint8_t *next = &p[6]; /* the chain: hop-by-hop, dest options, fragment */
    if (opts & F_V6EXT) {
      *next = 0;
      p[n] = 60;
      next = &p[n + 8];
      n += 16;
    }
    if (frag) {
      *next = 44;
      next = &p[n];
      put16(p + n + 2, (uint32_t)(frag << 3));
      n += 8;
    }
    *next = ipproto;
  } else {
    size_t ihl = (opts & F_IPOPT) ? 24 : 20;
    memset(p, 0, ihl);
    p[0] = (uint8_t)(0x40 | ihl / 4);
    put16(p + 2, (uint32_t)(ihl + 20 + dlen));
    put16(p + 6, frag);
    p[8] = 64;
    p[9] = ipproto;
    uint8_t c4[4] = {192, 0, 2, 1}, s4[4] = {192, 0, 2, 2};
    memcpy(p + 12, from_client ? c4 : s4, 4);
    memcpy(p + 16, from_client ? s4 : c4, 4);
    if (opts & F_IPOPT)
      memset(p + 20, 1, 4); /* NOPs */
    n = ihl;
  }
  uint8_t *t = p + n;
  memset(t, 0, 20);
  put16(t, from_client ? 40000 : 25);
  put16(t + 2, from_client ? 25 : 40000);
  put32(t + 4, seq);
  t[12] = 5 << 4;
  t[13] = flags;
  memcpy(t + 20, data, dlen);
  return n + 20 + dlen;
}

static size_t link_hdr(uint8_t *p, int lt, int opts) {
  uint16_t et = (opts & F_V6) ? 0x86dd : 0x0800;
  size_t n = 0;
  switch (lt) {
  case LT_ETHERNET:
    memset(p, 0xaa, 12);
    n = 12;
    if (opts & F_QINQ) {
      put16(p + n, 0x88a8);
      put16(p + n + 2, 7);
      n += 4;
    }
    if (opts & (F_VLAN | F_QINQ)) {
      put16(p + n, 0x8100);
      put16(p + n + 2, 42);
      n += 4;
    }
    put16(p + n, et);
    return n + 2;
  case LT_SLL:
    memset(p, 0, 16);
    put16(p + 14, et);
    return 16;
  case LT_SLL2:
    memset(p, 0, 20);
    put16(p, et);
    return 20;
  case LT_NULL:
  case LT_LOOP: {
    uint32_t fam = (opts & F_V6) ? (lt == LT_NULL ? 30 : 24) : 2;
    if (lt == LT_LOOP || (opts & F_NULL_BE)) {
      put32(p, fam);
    } else {
      p[0] = (uint8_t)fam;
      p[1] = p[2] = p[3] = 0;
    }
    return 4;
  }
  default:
    return 0;
  }
}

static void add(int lt, int opts, int64_t ts, int from_client, uint32_t seq,
                uint8_t flags, const char *data) {
  frame *f = &frames[nframes++];
  size_t n = link_hdr(f->b, lt, opts);
  n += ip_tcp(f->b + n, opts, from_client, seq, flags, data, 6, 0);
  f->caplen = f->len = (uint32_t)n;
  f->ts_us = ts;
}

#define T0 (INT64_C(1400000000) * 1000000 + 123456)

/* The standard session; F_EXTRA adds frames that must be skipped. */
static void build(int lt, int opts) {
  nframes = 0;
  add(lt, opts, T0, 1, 1000, SP_TCP_SYN, "");
  add(lt, opts, T0 + 100, 0, 5000, SP_TCP_SYN | SP_TCP_ACK, "");
  add(lt, opts, T0 + 200, 0, 5001, SP_TCP_ACK, "220 x\r\n");
  if (opts & F_EXTRA) {
    /* A UDP datagram, an ARP frame and a non-first TCP fragment. */
    frame *f = &frames[nframes++];
    size_t n = link_hdr(f->b, lt, opts);
    n += ip_tcp(f->b + n, opts, 1, 0, 0, "udp!", 17, 0);
    f->caplen = f->len = (uint32_t)n;
    f->ts_us = T0 + 250;
    f = &frames[nframes++];
    n = link_hdr(f->b, lt, opts);
    n += ip_tcp(f->b + n, opts, 1, 0, 0, "more", 6, 0x00b9);
    f->caplen = f->len = (uint32_t)n;
    f->ts_us = T0 + 260;
    if (lt == LT_ETHERNET) {
      f = &frames[nframes++];
      memset(f->b, 0xff, 60);
      put16(f->b + 12, 0x0806);
      f->caplen = f->len = 60;
      f->ts_us = T0 + 270;
    }
  }
  add(lt, opts, T0 + 300, 1, 1001, SP_TCP_ACK, "EHLO a\r\n");
  if (opts & F_TRUNC)
    frames[nframes - 1].caplen -= 3;
  add(lt, opts, T0 + 400, 1, 1009, SP_TCP_ACK | SP_TCP_FIN, "");
  add(lt, opts, T0 + 500, 0, 5008, SP_TCP_ACK | SP_TCP_FIN, "");
}

static void wr16(FILE *f, int be, uint32_t v) {
  uint8_t b[2] = {(uint8_t)(be ? v >> 8 : v), (uint8_t)(be ? v : v >> 8)};
  fwrite(b, 1, 2, f);
}
static void wr32(FILE *f, int be, uint32_t v) {
  if (be) {
    wr16(f, 1, v >> 16);
    wr16(f, 1, v & 0xffff);
  } else {
    wr16(f, 0, v & 0xffff);
    wr16(f, 0, v >> 16);
  }
}

static void write_pcap(const char *path, int be, int nano, uint32_t lt) {
  FILE *f = fopen(path, "wb");
  wr32(f, be, nano ? 0xa1b23c4d : 0xa1b2c3d4);
  wr16(f, be, 2);
  wr16(f, be, 4);
  wr32(f, be, 0);
  wr32(f, be, 0);
  wr32(f, be, 65535);
  wr32(f, be, lt);
  for (size_t i = 0; i < nframes; i++) {
    int64_t us = frames[i].ts_us;
    wr32(f, be, (uint32_t)(us / 1000000));
    /* Nanosecond files carry 789 ns more, which the reader drops. */
    wr32(f, be, (uint32_t)(nano ? (us % 1000000) * 1000 + 789 : us % 1000000));
    wr32(f, be, frames[i].caplen);
    wr32(f, be, frames[i].len);
    fwrite(frames[i].b, 1, frames[i].caplen, f);
  }
  fclose(f);
}

static void write_pcapng(const char *path, int be, int nano, uint32_t lt) {
  FILE *f = fopen(path, "wb");
  wr32(f, be, 0x0a0d0d0a); /* section header */
  wr32(f, be, 28);
  wr32(f, be, 0x1a2b3c4d);
  wr16(f, be, 1);
  wr16(f, be, 0);
  wr32(f, be, 0xffffffff);
  wr32(f, be, 0xffffffff);
  wr32(f, be, 28);
  uint32_t idb = nano ? 32 : 20; /* interface, with if_tsresol = 9 */
  wr32(f, be, 1);
  wr32(f, be, idb);
  wr16(f, be, (uint16_t)lt);
  wr16(f, be, 0);
  wr32(f, be, 65535);
  if (nano) {
    wr16(f, be, 9);
    wr16(f, be, 1);
    uint8_t opt[4] = {9, 0, 0, 0};
    fwrite(opt, 1, 4, f);
    wr32(f, be, 0); /* opt_endofopt */
  }
  wr32(f, be, idb);
  for (size_t i = 0; i < nframes; i++) {
    uint32_t pad = (4 - frames[i].caplen % 4) % 4;
    uint32_t blen = 32 + frames[i].caplen + pad;
    uint64_t ts = (uint64_t)frames[i].ts_us;
    if (nano)
      ts = ts * 1000 + 789;
    wr32(f, be, 6);
    wr32(f, be, blen);
    wr32(f, be, 0);
    wr32(f, be, (uint32_t)(ts >> 32));
    wr32(f, be, (uint32_t)ts);
    wr32(f, be, frames[i].caplen);
    wr32(f, be, frames[i].len);
    fwrite(frames[i].b, 1, frames[i].caplen, f);
    uint8_t z[4] = {0};
    fwrite(z, 1, pad, f);
    wr32(f, be, blen);
  }
  fclose(f);
}

/* libpcap's own writer, host byte order. */
static void write_libpcap(const char *path, int dlt, int nano) {
  pcap_t *p = pcap_open_dead_with_tstamp_precision(
      dlt, 65535,
      nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  pcap_dumper_t *d = pcap_dump_open(p, path);
  for (size_t i = 0; i < nframes; i++) {
    struct pcap_pkthdr h;
    h.ts.tv_sec = frames[i].ts_us / 1000000;
    h.ts.tv_usec = (suseconds_t)(nano ? (frames[i].ts_us % 1000000) * 1000 + 789
                                      : frames[i].ts_us % 1000000);
    h.caplen = frames[i].caplen;
    h.len = frames[i].len;
    pcap_dump((u_char *)d, &h, frames[i].b);
  }
  pcap_dump_close(d);
  pcap_close(p);
}

/* ---- reading back ---- */

typedef struct out {
  sp_buf text;
  int64_t start_us;
} out;

static int cb_begin(void *ud, sp_session *s) {
  out *o = ud;
  char c[SP_ADDRSTRLEN], v[SP_ADDRSTRLEN];
  sp_endpoint_addr_str(&s->client, c, sizeof c);
  sp_endpoint_addr_str(&s->server, v, sizeof v);
  o->start_us = s->start_us;
  return sp_buf_printf(&o->text, "%s %u > %s %u\n", c, s->client.port, v,
                       s->server.port);
}

static int cb_record(void *ud, sp_session *s, const sp_record *r) {
  (void)s;
  return sp_transcript_put_record(&((out *)ud)->text, r);
}

static const char want_body[] = "S 200 7\n220 x\r\n\n"
                                "C 300 8\nEHLO a\r\n\n"
                                "E 400 client-fin\n"
                                "E 500 server-fin\n";
static const char want_v4[] = "192.0.2.1 40000 > 192.0.2.2 25\n";
static const char want_v6[] = "2001::1 40000 > 2001::2 25\n";

static void check_file(const char *path, int v6, const char *body,
                       uint64_t fragments) {
  char err[512];
  sp_capture *cap;
  int rc = sp_capture_open(&cap, path, err, sizeof err);
  CHECK_INT(rc, 0);
  if (rc) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  out o;
  memset(&o, 0, sizeof o);
  sp_tracker_config cfg;
  sp_tracker_config_default(&cfg);
  sp_tracker_callbacks cb = {cb_begin, cb_record, NULL};
  sp_tracker *t = sp_tracker_new(&cfg, &cb, &o);
  sp_frame f;
  uint64_t frags = 0;
  while ((rc = sp_capture_next(cap, &f, err, sizeof err)) == 1) {
    sp_tcp_segment s;
    sp_decode_status st = sp_decode_frame(sp_capture_linktype(cap), f.data,
                                          f.caplen, f.wirelen, &s);
    frags += st == SP_DECODE_FRAGMENT;
    if (st != SP_DECODE_TCP)
      continue;
    s.ts_us = f.ts_us;
    CHECK_INT(sp_tracker_packet(t, &s), 0);
  }
  CHECK_INT(rc, 0);
  CHECK_INT(sp_tracker_finish(t), 0);
  CHECK_INT(frags, fragments);
  CHECK_INT(o.start_us, T0);
  char want[512];
  snprintf(want, sizeof want, "%s%s", v6 ? want_v6 : want_v4, body);
  sp_buf_append(&o.text, "", 1);
  if (strcmp((const char *)o.text.data, want) != 0)
    fprintf(stderr, "in %s:\n", path);
  CHECK_STR((const char *)o.text.data, want);
  sp_buf_free(&o.text);
  sp_tracker_free(t);
  sp_capture_close(cap);
}

static void fixture(const char *name, int lt, int dlt, int opts) {
  build(lt, opts);
  int v6 = (opts & F_V6) != 0;
  uint64_t frags = (opts & F_EXTRA) ? 1 : 0;
  char path[512];
  for (int be = 0; be < 2; be++)
    for (int nano = 0; nano < 2; nano++) {
      snprintf(path, sizeof path, "%s/%s-%s-%s.pcap", tmpdir, name,
               be ? "be" : "le", nano ? "ns" : "us");
      write_pcap(path, be, nano, (uint32_t)lt);
      check_file(path, v6, want_body, frags);
      remove(path);
      snprintf(path, sizeof path, "%s/%s-%s-%s.pcapng", tmpdir, name,
               be ? "be" : "le", nano ? "ns" : "us");
      write_pcapng(path, be, nano, (uint32_t)lt);
      check_file(path, v6, want_body, frags);
      remove(path);
    }
  snprintf(path, sizeof path, "%s/%s-libpcap.pcap", tmpdir, name);
  write_libpcap(path, dlt, 1);
  check_file(path, v6, want_body, frags);
  remove(path);
}

static void test_ethernet(void) {
  fixture("eth4", LT_ETHERNET, DLT_EN10MB, F_EXTRA);
  fixture("eth4opt", LT_ETHERNET, DLT_EN10MB, F_IPOPT | F_VLAN);
  fixture("eth6", LT_ETHERNET, DLT_EN10MB, F_V6 | F_V6EXT | F_EXTRA);
  fixture("qinq6", LT_ETHERNET, DLT_EN10MB, F_V6 | F_QINQ);
}

static void test_sll(void) {
  fixture("sll4", LT_SLL, DLT_LINUX_SLL, F_EXTRA);
  fixture("sll6", LT_SLL, DLT_LINUX_SLL, F_V6);
  fixture("sll2-4", LT_SLL2, DLT_LINUX_SLL2, F_IPOPT);
  fixture("sll2-6", LT_SLL2, DLT_LINUX_SLL2, F_V6 | F_V6EXT);
}

static void test_null_loop(void) {
  fixture("null4le", LT_NULL, DLT_NULL, F_EXTRA);
  fixture("null4be", LT_NULL, DLT_NULL, F_NULL_BE);
  fixture("null6", LT_NULL, DLT_NULL, F_V6);
  fixture("null6be", LT_NULL, DLT_NULL, F_V6 | F_NULL_BE);
  fixture("loop4", LT_LOOP, DLT_LOOP, 0);
  fixture("loop6", LT_LOOP, DLT_LOOP, F_V6);
}

static void test_raw(void) {
  fixture("raw4", LT_RAW, DLT_RAW, F_EXTRA);
  fixture("raw6", LT_RAW, DLT_RAW, F_V6);
  fixture("ipv4", LT_IPV4, DLT_IPV4, F_IPOPT);
  fixture("ipv6", LT_IPV6, DLT_IPV6, F_V6 | F_V6EXT);
}

static void test_snaplen_truncation(void) {
  build(LT_ETHERNET, F_VLAN | F_TRUNC);
  char path[512];
  snprintf(path, sizeof path, "%s/trunc.pcap", tmpdir);
  write_pcap(path, 0, 0, LT_ETHERNET);
  check_file(path, 0,
             "S 200 7\n220 x\r\n\n"
             "C 300 5\nEHLO \n"
             "G 300 C 3\n"
             "E 400 client-fin\n"
             "E 500 server-fin\n",
             0);
  remove(path);
}

static void test_decode_bounds(void) {
  /* Every prefix of a valid frame decodes without reading past it (ASan
   * checks the exact-size copies) and never claims a longer payload. */
  build(LT_ETHERNET, F_V6 | F_V6EXT | F_QINQ);
  frame *f = &frames[3]; /* the EHLO frame */
  for (uint32_t cut = 0; cut <= f->caplen; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, f->b, cut);
    sp_tcp_segment s;
    sp_decode_status st = sp_decode_frame(DLT_EN10MB, copy, cut, f->len, &s);
    if (st == SP_DECODE_TCP) {
      CHECK(s.payload + s.caplen <= copy + cut);
      CHECK_INT(s.wirelen, 8);
    } else {
      CHECK_INT(st, SP_DECODE_TRUNCATED);
    }
    /* Same bytes claiming to be the whole frame: malformed, not TCP. */
    st = sp_decode_frame(DLT_EN10MB, copy, cut, cut, &s);
    if (cut < f->caplen)
      CHECK(st != SP_DECODE_TCP || s.payload + s.caplen <= copy + cut);
    free(copy);
  }
  sp_tcp_segment s;
  CHECK_INT(sp_decode_frame(147, frames[0].b, 10, 10, &s),
            SP_DECODE_UNSUPPORTED);
}

static void test_cli_extract(void) {
  const char *exe = getenv("SLUICE_REPLAY");
  if (!exe) {
    printf("note: SLUICE_REPLAY unset, CLI check skipped\n");
    return;
  }
  build(LT_ETHERNET, F_EXTRA);
  char path[512], cmd[2048], tr[600];
  snprintf(path, sizeof path, "%s/cli-capture.pcap", tmpdir);
  write_pcap(path, 1, 1, LT_ETHERNET);
  snprintf(cmd, sizeof cmd, "'%s' extract -q --out '%s/cli-out' '%s'", exe,
           tmpdir, path);
  CHECK_INT(system(cmd), 0);
  snprintf(tr, sizeof tr, "%s/cli-out/cli-capture.1.transcript", tmpdir);
  uint8_t *data;
  size_t len;
  char err[512];
  CHECK_INT(sp_transcript_load(tr, 1 << 20, &data, &len, err, sizeof err), 0);
  sp_transcript_reader r;
  CHECK_INT(sp_transcript_reader_init(&r, data, len), 0);
  CHECK_STR(r.hdr.source, "cli-capture.pcap");
  CHECK_INT(r.hdr.session, 1);
  CHECK_STR(r.hdr.client_ip, "192.0.2.1");
  CHECK_INT(r.hdr.server_port, 25);
  CHECK_INT(r.hdr.start_sec, 1400000000);
  CHECK_INT(r.hdr.start_usec, 123456);
  sp_record rec;
  int n = 0;
  while (sp_transcript_next(&r, &rec) == 1)
    n++;
  CHECK_INT(n, 4);
  CHECK(r.closed);
  free(data);
  remove(tr);
  remove(path);
}

int main(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s", t ? t : "/tmp");
  SL_RUN(test_ethernet);
  SL_RUN(test_sll);
  SL_RUN(test_null_loop);
  SL_RUN(test_raw);
  SL_RUN(test_snaplen_truncation);
  SL_RUN(test_decode_bounds);
  SL_RUN(test_cli_extract);
  return sl_test_summary();
}
