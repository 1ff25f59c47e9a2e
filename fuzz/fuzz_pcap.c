/*
 * fuzz_pcap.c: the capture side of pcap-replay (library sluice_pcap): frame
 * decoding, TCP reassembly, SMTP session tracking and the transcript
 * writer/reader, plus the libpcap-based file reader.
 *
 * Input (fuzz/README.md, "The pcap target"):
 *   byte 0  bits 0-2 link type (EN10MB, LINUX_SLL, LINUX_SLL2, NULL, LOOP,
 *           RAW, IPV4, IPV6); bit 3 use an unsupported link type instead
 *           (IEEE802_11); bit 7 whole-file mode;
 *   byte 1  tracker configuration: bits 0-1 max_ooo {512, 4 KiB, 64 KiB,
 *           1 MiB}; 2-3 max_pending {64, 1 KiB, 16 KiB, 64 KiB}; 4-5 idle
 *           timeout {never, 2 s, 60 s, 1 h}; bit 6 SMTP ports "25" only;
 *   frames mode: records of len16 (LE), dt8, cut8 and len frame bytes,
 *           decoded with the link type and fed to the tracker at a clock
 *           that moves by dt: < 0xf0 dt x 10 ms, 0xf0-0xfd (dt - 0xef) x
 *           10 min, 0xfe one second back (captures' clocks step back),
 *           0xff a burst: the last TCP segment again cut x 64 times, one
 *           second apart (retransmissions; reaches the idle sweeps); the
 *           frame's wire length is len + cut;
 *   whole-file mode: the rest of the input is a pcap/pcapng file, read
 *           through sp_capture_* from a memory-backed file (memfd).
 *
 * Oracles (abort on violation):
 *  - decode: a TCP payload lies inside the frame, caplen <= wirelen, both
 *    endpoints are IPv4 or IPv6; an unsupported link type says so; cutting
 *    the frame one byte inside the payload decodes the same segment with
 *    one payload byte less (the same wire length, the same pointer);
 *  - tracker: sessions are numbered 1, 2, ... in begin order; records come
 *    only between begin and finish, never after the terminal E record
 *    (TRANSCRIPT.md termination rule), with times that never decrease,
 *    non-empty data and gaps, at most one FIN per side; every begun session
 *    is finished, and it is finished only after its terminal record; the
 *    session's byte and gap counters equal its records;
 *  - transcript: the records written with sp_transcript_put_* read back
 *    with sp_transcript_reader_* as a complete transcript holding the same
 *    records and the same bytes per side.
 * ASan sees every frame in its own exactly sized heap block.
 *
 * FUZZ_PCAP_SKIP_OPEN_FINDINGS=1 stops reading a file at a frame that would
 * reproduce an open finding (fuzz/findings/README.md), so a campaign can
 * look for other bugs; CI runs without it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pcap/dlt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sp_capture.h"
#include "sp_decode.h"
#include "sp_session.h"
#include "sp_transcript.h"
#include "sp_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (256u << 10)
#define MAX_FRAMES 4096
#define MAX_FILE_FRAMES 20000

static void die(const char *what, const char *detail, long line) {
  fprintf(stderr, "fuzz_pcap: %s%s%s (fuzz_pcap.c:%ld)\n", what,
          detail ? ": " : "", detail ? detail : "", line);
  abort();
}
#define FAIL(what) die(what, NULL, __LINE__)
#define CHECK(cond, what)                                                      \
  do {                                                                         \
    if (!(cond))                                                               \
      die(what, NULL, __LINE__);                                               \
  } while (0)

/* ---- per-session model ----------------------------------------------------
 */

typedef struct rec_meta {
  sp_rec_type type;
  uint64_t t_us, len;
  sp_side side;
  sp_end_reason end;
} rec_meta;

typedef struct sess_chk {
  sp_buf tr;      /* the transcript, as extract would write it */
  sp_buf data[2]; /* bytes per side, as recorded */
  rec_meta *recs;
  size_t nrec, caprec;
  uint64_t gaps[2], gap_bytes[2];
  uint64_t last_t;
  int fin[2];
  int ended; /* the terminal record was seen */
} sess_chk;

typedef struct run {
  uint64_t begun, finished;
} run;

static void buf_add(sp_buf *b, const void *p, size_t n) {
  if (sp_buf_append(b, p, n))
    FAIL("out of memory");
}

static int cb_begin(void *ud, sp_session *s) {
  run *r = ud;
  CHECK(s->user == NULL, "begin: session already has user data");
  CHECK(s->number == r->begun + 1, "begin: sessions not numbered 1, 2, ...");
  CHECK(s->client.family == 4 || s->client.family == 6, "begin: client family");
  CHECK(s->server.family == s->client.family, "begin: server family");
  r->begun++;
  sess_chk *c = calloc(1, sizeof *c);
  if (!c)
    FAIL("out of memory");
  s->user = c;
  sp_transcript_header h;
  memset(&h, 0, sizeof h);
  snprintf(h.source, sizeof h.source, "fuzz input.pcap");
  h.session = s->number;
  sp_endpoint_addr_str(&s->client, h.client_ip, sizeof h.client_ip);
  sp_endpoint_addr_str(&s->server, h.server_ip, sizeof h.server_ip);
  h.client_port = s->client.port;
  h.server_port = s->server.port;
  CHECK(s->start_us >= 0, "begin: negative start time");
  h.start_sec = s->start_us / 1000000;
  h.start_usec = (uint32_t)(s->start_us % 1000000);
  if (sp_transcript_put_header(&c->tr, &h))
    FAIL("out of memory");
  return 0;
}

static int cb_record(void *ud, sp_session *s, const sp_record *rec) {
  (void)ud;
  sess_chk *c = s->user;
  CHECK(c != NULL, "record before begin");
  CHECK(!c->ended, "record after the terminal E record");
  CHECK(c->nrec == 0 || rec->t_us >= c->last_t, "record time went back");
  c->last_t = rec->t_us;
  switch (rec->type) {
  case SP_REC_CLIENT:
  case SP_REC_SERVER: {
    CHECK(rec->len > 0 && rec->data, "empty data record");
    int side = rec->type == SP_REC_CLIENT ? 0 : 1;
    CHECK(!c->fin[side], "data after that side's FIN");
    buf_add(&c->data[side], rec->data, (size_t)rec->len);
    break;
  }
  case SP_REC_GAP:
    CHECK(rec->len > 0, "empty gap record");
    CHECK(rec->side == SP_SIDE_CLIENT || rec->side == SP_SIDE_SERVER,
          "gap side");
    CHECK(!c->fin[rec->side], "gap after that side's FIN");
    c->gaps[rec->side]++;
    c->gap_bytes[rec->side] += rec->len;
    break;
  case SP_REC_END:
    switch (rec->end) {
    case SP_END_CLIENT_FIN:
    case SP_END_SERVER_FIN: {
      int side = rec->end == SP_END_CLIENT_FIN ? 0 : 1;
      CHECK(!c->fin[side], "two FINs on one side");
      c->fin[side] = 1;
      c->ended = c->fin[0] && c->fin[1];
      break;
    }
    case SP_END_CLIENT_RST:
    case SP_END_SERVER_RST:
    case SP_END_CAPTURE:
    case SP_END_TLS:
      c->ended = 1;
      break;
    default:
      FAIL("E record with an unknown reason");
    }
    break;
  default:
    FAIL("record of unknown type");
  }
  if (c->nrec == c->caprec) {
    size_t cap = c->caprec ? c->caprec * 2 : 16;
    rec_meta *p = realloc(c->recs, cap * sizeof *p);
    if (!p)
      FAIL("out of memory");
    c->recs = p;
    c->caprec = cap;
  }
  rec_meta m = {rec->type, rec->t_us, rec->len, rec->side, rec->end};
  c->recs[c->nrec++] = m;
  CHECK(sp_transcript_put_record(&c->tr, rec) == 0, "transcript writer failed");
  return 0;
}

/* The transcript must read back as written: complete, same records, same
   bytes per side. */
static void read_back(const sess_chk *c) {
  sp_transcript_reader rd;
  if (sp_transcript_reader_init(&rd, c->tr.data, c->tr.len) != 0)
    die("transcript header rejected", rd.err, __LINE__);
  sp_buf got[2] = {{0}, {0}};
  size_t i = 0;
  for (;;) {
    sp_record rec;
    int rc = sp_transcript_next(&rd, &rec);
    if (rc < 0)
      die("written transcript rejected by the reader", rd.err, __LINE__);
    if (rc == 0)
      break;
    CHECK(i < c->nrec, "reader returned more records than written");
    const rec_meta *m = &c->recs[i++];
    CHECK(rec.type == m->type && rec.t_us == m->t_us && rec.len == m->len,
          "reader: record differs from the one written");
    if (rec.type == SP_REC_GAP)
      CHECK(rec.side == m->side, "reader: gap side differs");
    if (rec.type == SP_REC_END)
      CHECK(rec.end == m->end, "reader: end reason differs");
    if (rec.type == SP_REC_CLIENT || rec.type == SP_REC_SERVER)
      buf_add(&got[rec.type == SP_REC_CLIENT ? 0 : 1], rec.data,
              (size_t)rec.len);
  }
  CHECK(i == c->nrec, "reader returned fewer records than written");
  for (int s = 0; s < 2; s++) {
    CHECK(got[s].len == c->data[s].len &&
              (got[s].len == 0 ||
               memcmp(got[s].data, c->data[s].data, got[s].len) == 0),
          "reader: bytes differ from the records written");
    sp_buf_free(&got[s]);
  }
}

static int cb_finish(void *ud, sp_session *s) {
  run *r = ud;
  sess_chk *c = s->user;
  CHECK(c != NULL, "finish without begin");
  CHECK(c->ended, "session finished before its terminal E record");
  for (int i = 0; i < 2; i++) {
    CHECK(s->bytes[i] == c->data[i].len, "session byte counter != records");
    CHECK(s->gaps[i] == c->gaps[i] && s->gap_bytes[i] == c->gap_bytes[i],
          "session gap counters != records");
  }
  CHECK(s->ends != 0, "session ends mask empty");
  if (s->tls != SP_TLS_NONE)
    CHECK(s->ends & (1u << SP_END_TLS), "TLS session without E tls");
  read_back(c);
  sp_buf_free(&c->tr);
  sp_buf_free(&c->data[0]);
  sp_buf_free(&c->data[1]);
  free(c->recs);
  free(c);
  s->user = NULL;
  r->finished++;
  return 0;
}

/* ---- decoding
 * ---------------------------------------------------------------- */

static const int dlts[8] = {DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2,
                            DLT_NULL,   DLT_LOOP,      DLT_RAW,
                            DLT_IPV4,   DLT_IPV6};

static int same_endpoint(const sp_endpoint *a, const sp_endpoint *b) {
  return a->family == b->family && a->port == b->port &&
         memcmp(a->ip, b->ip, a->family == 4 ? 4 : 16) == 0;
}

/* Decodes a copy of frame[0..len) in an exact heap block, checks the
   decoder's promises; returns 1 with *seg filled (payload pointing into
   *keep, which the caller frees) for a TCP segment. */
static int decode(int dlt, const uint8_t *frame, uint32_t len, uint32_t wire,
                  sp_tcp_segment *seg, uint8_t **keep) {
  uint8_t *f = malloc(len ? len : 1);
  if (!f)
    FAIL("out of memory");
  memcpy(f, frame, len);
  sp_decode_status st = sp_decode_frame(dlt, f, len, wire, seg);
  CHECK(st <= SP_DECODE_UNSUPPORTED, "decode: unknown status");
  CHECK(sp_decode_status_str(st) && strcmp(sp_decode_status_str(st), "?"),
        "decode: status without a name");
  if (!sp_decode_link_supported(dlt)) {
    CHECK(st == SP_DECODE_UNSUPPORTED, "decode: unsupported link decoded");
    free(f);
    return 0;
  }
  CHECK(st != SP_DECODE_UNSUPPORTED, "decode: supported link refused");
  if (st != SP_DECODE_TCP) {
    free(f);
    return 0;
  }
  CHECK(seg->src.family == 4 || seg->src.family == 6, "decode: family");
  CHECK(seg->dst.family == seg->src.family, "decode: families differ");
  CHECK(seg->caplen <= seg->wirelen, "decode: caplen > wirelen");
  CHECK(seg->payload >= f && seg->payload <= f + len &&
            seg->caplen <= (size_t)(f + len - seg->payload),
        "decode: payload outside the frame");
  CHECK((seg->flags & ~0x1fu) == 0, "decode: flags beyond FIN..ACK");
  if (seg->caplen > 0) {
    /* Metamorphic: one byte less of the frame, one byte less of payload. */
    uint32_t cut = (uint32_t)(seg->payload - f) + seg->caplen - 1;
    uint8_t *g = malloc(cut ? cut : 1);
    if (!g)
      FAIL("out of memory");
    memcpy(g, frame, cut);
    sp_tcp_segment s2;
    memset(&s2, 0, sizeof s2);
    sp_decode_status st2 = sp_decode_frame(dlt, g, cut, wire, &s2);
    CHECK(st2 == SP_DECODE_TCP, "decode: a frame cut inside the payload "
                                "is no longer TCP");
    CHECK(same_endpoint(&s2.src, &seg->src) &&
              same_endpoint(&s2.dst, &seg->dst) && s2.seq == seg->seq &&
              s2.ack == seg->ack && s2.flags == seg->flags,
          "decode: a frame cut inside the payload changed the headers");
    CHECK(s2.payload - g == seg->payload - f && s2.caplen == seg->caplen - 1 &&
              s2.wirelen == seg->wirelen,
          "decode: a frame cut inside the payload changed the payload");
    free(g);
  }
  *keep = f;
  return 1;
}

/* ---- drivers ----------------------------------------------------------------
 */

static void configure(sp_tracker_config *cfg, uint8_t b) {
  static const size_t ooo[4] = {512, 4096, 65536, 1u << 20};
  static const size_t pend[4] = {64, 1024, 16384, 65536};
  static const int64_t idle[4] = {0, 2000000, 60000000, 3600000000};
  sp_tracker_config_default(cfg);
  cfg->max_ooo = ooo[b & 3];
  cfg->max_pending = pend[(b >> 2) & 3];
  cfg->idle_timeout_us = idle[(b >> 4) & 3];
  if (b & 0x40)
    CHECK(sp_tracker_config_ports(cfg, "25") == 0, "ports \"25\" refused");
}

static void feed(sp_tracker *t, const sp_tcp_segment *seg) {
  int rc = sp_tracker_packet(t, seg);
  CHECK(rc == 0 || rc == SP_ERR_NOMEM, "tracker: unexpected error");
}

static void end_run(sp_tracker *t, run *r) {
  int rc = sp_tracker_finish(t);
  CHECK(rc == 0 || rc == SP_ERR_NOMEM, "tracker finish: unexpected error");
  const sp_tracker_counters *k = sp_tracker_get_counters(t);
  CHECK(k->sessions == r->begun, "tracker: session counter != begun");
  if (rc == 0)
    CHECK(r->finished == r->begun, "a session began and never finished");
  sp_tracker_free(t);
}

static void run_frames(int dlt, sp_tracker *t, const uint8_t *p, size_t n) {
  size_t i = 0;
  int64_t now = 1000000000; /* 2001-09-09, any positive time */
  sp_tcp_segment last;
  uint8_t *last_keep = NULL;
  int have_last = 0;
  for (unsigned frames = 0; i + 4 <= n && frames < MAX_FRAMES; frames++) {
    uint32_t len = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8;
    uint8_t dt = p[i + 2], cut = p[i + 3];
    i += 4;
    if (dt == 0xff) {
      if (!have_last)
        continue;
      for (unsigned k = 0; k < (unsigned)cut * 64; k++) {
        now += 1000000;
        last.ts_us = now;
        feed(t, &last);
      }
      continue;
    }
    if (dt == 0xfe)
      now = now > 1000000 ? now - 1000000 : 0;
    else if (dt >= 0xf0)
      now += (int64_t)(dt - 0xef) * 600000000;
    else
      now += (int64_t)dt * 10000;
    if (len > n - i)
      len = (uint32_t)(n - i);
    sp_tcp_segment seg;
    memset(&seg, 0, sizeof seg);
    uint8_t *keep = NULL;
    if (decode(dlt, p + i, len, len + cut, &seg, &keep)) {
      seg.ts_us = now;
      feed(t, &seg);
      free(last_keep);
      last = seg;
      last_keep = keep;
      have_last = 1;
    }
    i += len;
  }
  free(last_keep);
}

/* The whole input after the two header bytes is a capture file, read by
   libpcap from a memory-backed file. */
static void run_file(sp_tracker *t, const uint8_t *p, size_t n) {
  char path[64];
  char tmpl[] = "/tmp/fuzz_pcap.XXXXXX";
  int fd = memfd_create("fuzz_pcap", MFD_CLOEXEC);
  if (fd >= 0) {
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  } else { /* no memfd: an unlinked temporary file, opened by its fd path */
    fd = mkstemp(tmpl);
    if (fd < 0)
      FAIL("cannot create a temporary file");
    unlink(tmpl);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  for (size_t off = 0; off < n;) {
    ssize_t w = write(fd, p + off, n - off);
    if (w <= 0)
      FAIL("cannot write the temporary file");
    off += (size_t)w;
  }
  char err[512] = "";
  sp_capture *cap = NULL;
  int rc = sp_capture_open(&cap, path, err, sizeof err);
  if (rc != 0) {
    CHECK(rc == SP_ERR_MALFORMED || rc == SP_ERR_UNSUPPORTED ||
              rc == SP_ERR_NOMEM,
          "capture open: unexpected error");
    CHECK(err[0] != '\0' && cap == NULL, "capture open: error without message");
    close(fd);
    return;
  }
  int dlt = sp_capture_linktype(cap);
  CHECK(sp_decode_link_supported(dlt), "capture open: unsupported link taken");
  uint64_t number = 0;
  int skip_open = getenv("FUZZ_PCAP_SKIP_OPEN_FINDINGS") != NULL;
  for (unsigned frames = 0; frames < MAX_FILE_FRAMES; frames++) {
    sp_frame f;
    rc = sp_capture_next(cap, &f, err, sizeof err);
    if (rc == 0)
      break;
    if (rc < 0) {
      CHECK(rc == SP_ERR_MALFORMED && err[0], "capture: bad error report");
      break;
    }
    CHECK(rc == 1, "capture next: unexpected return");
    CHECK(f.number == ++number, "capture: packet numbers not 1, 2, ...");
    CHECK(f.caplen <= f.wirelen, "capture: caplen > wirelen");
    if (skip_open && (f.ts_us < 0 || f.ts_us > (INT64_C(1) << 60)))
      break; /* open finding pcap-negative-usec: look past it */
    CHECK(f.ts_us >= 0 && f.ts_us <= (INT64_C(1) << 60),
          "capture: time outside [0, 2^60] us");
    CHECK(f.offset < n, "capture: record offset past the file");
    sp_tcp_segment seg;
    memset(&seg, 0, sizeof seg);
    uint8_t *keep = NULL;
    if (decode(dlt, f.data, f.caplen, f.wirelen, &seg, &keep)) {
      seg.ts_us = f.ts_us;
      feed(t, &seg);
      free(keep);
    }
  }
  sp_capture_close(cap);
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > MAX_INPUT)
    return 0;
  uint8_t mode = data[0];
  sp_tracker_config cfg;
  configure(&cfg, data[1]);
  run r = {0, 0};
  sp_tracker_callbacks cb = {cb_begin, cb_record, cb_finish};
  sp_tracker *t = sp_tracker_new(&cfg, &cb, &r);
  if (!t)
    FAIL("out of memory");
  if (mode & 0x80) {
    run_file(t, data + 2, size - 2);
  } else {
    int dlt = (mode & 8) ? DLT_IEEE802_11 : dlts[mode & 7];
    run_frames(dlt, t, data + 2, size - 2);
  }
  end_run(t, &r);
  if (getenv("FUZZ_PCAP_STATS"))
    fprintf(stderr, "fuzz_pcap: %s mode, %llu session(s)\n",
            (mode & 0x80) ? "file" : "frames", (unsigned long long)r.begun);
  return 0;
}
