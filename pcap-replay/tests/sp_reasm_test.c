/* Reassembly of one direction, with hand-built segment sequences. */
#include <stdlib.h>
#include <string.h>

#include "sl_test.h"
#include "sp_decode.h"
#include "sp_reasm.h"

/* Events rendered as "abc|G6|FIN" for compact expectations. */
typedef struct rec {
  char log[8192];
  size_t n;
  int fail_after; /* return nonzero from the callback after this many */
  int count;
} rec;

static int on_ev(void *ctx, const sp_stream_ev *ev) {
  rec *r = ctx;
  char tmp[64];
  const char *s = tmp;
  size_t len;
  switch (ev->type) {
  case SP_EV_DATA:
    s = (const char *)ev->data;
    len = (size_t)ev->len;
    break;
  case SP_EV_GAP:
    len =
        (size_t)snprintf(tmp, sizeof tmp, "G%llu", (unsigned long long)ev->len);
    break;
  case SP_EV_FIN:
    len = (size_t)snprintf(tmp, sizeof tmp, "FIN");
    break;
  default:
    len = (size_t)snprintf(tmp, sizeof tmp, "RST");
    break;
  }
  if (r->n && r->n < sizeof r->log - 1)
    r->log[r->n++] = '|';
  if (len > sizeof r->log - 1 - r->n)
    len = sizeof r->log - 1 - r->n;
  memcpy(r->log + r->n, s, len);
  r->n += len;
  r->log[r->n] = '\0';
  r->count++;
  return r->fail_after && r->count >= r->fail_after ? 42 : 0;
}

static sp_stream st;
static rec out;

static void setup(size_t max_ooo) {
  memset(&out, 0, sizeof out);
  sp_stream_init(&st, max_ooo, on_ev, &out);
}

static int seg(uint32_t seq, uint8_t flags, const char *data) {
  uint32_t n = (uint32_t)strlen(data);
  return sp_stream_segment(&st, 0, seq, flags, (const uint8_t *)data, n, n);
}

static void test_in_order(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, SP_TCP_ACK, "abc");
  seg(1004, SP_TCP_ACK, "def");
  CHECK(!sp_stream_ended(&st));
  seg(1007, SP_TCP_FIN | SP_TCP_ACK, "");
  CHECK_STR(out.log, "abc|def|FIN");
  CHECK(sp_stream_ended(&st));
  CHECK_INT(sp_stream_offset(&st), 6);
  CHECK_INT(st.st.ooo_segments, 0);
  sp_stream_free(&st);
}

static void test_reorder(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1004, 0, "def");
  seg(1007, 0, "ghi");
  CHECK_STR(out.log, "");
  seg(1001, 0, "abc");
  CHECK_STR(out.log, "abc|def|ghi");
  CHECK_INT(st.st.ooo_segments, 2);
  CHECK_INT(st.st.gaps, 0);
  sp_stream_free(&st);
}

static void test_retransmit(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "abc");
  seg(1001, 0, "abc");
  seg(1000, SP_TCP_SYN, ""); /* retransmitted SYN changes nothing */
  seg(1004, 0, "def");
  CHECK_STR(out.log, "abc|def");
  CHECK_INT(st.st.retrans_bytes, 3);
  sp_stream_free(&st);
}

static void test_overlap_first_copy_wins(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1004, 0, "def");      /* buffered */
  seg(1001, 0, "abcxyzgh"); /* covers it with other bytes */
  CHECK_STR(out.log, "abc|def|gh");
  CHECK_INT(st.st.conflict_bytes, 3);
  /* Overlap with delivered bytes: only the new tail comes out. */
  seg(1007, 0, "QQijk");
  CHECK_STR(out.log, "abc|def|gh|ijk");
  CHECK_INT(st.st.retrans_bytes, 2);
  /* A later copy that agrees is no conflict. */
  seg(1020, 0, "uvw");
  seg(1019, 0, "tuvwx");
  CHECK_INT(st.st.conflict_bytes, 3);
  sp_stream_free(&st);
}

static void test_gap_on_flush(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "abc");
  seg(1010, 0, "xyz");
  seg(1013, SP_TCP_FIN, "");
  CHECK_STR(out.log, "abc");
  CHECK(!sp_stream_ended(&st));
  CHECK_INT(sp_stream_flush(&st, 5), 0);
  CHECK_STR(out.log, "abc|G6|xyz|FIN");
  CHECK_INT(st.st.gap_bytes, 6);
  sp_stream_free(&st);
}

static void test_fin_waits_for_hole(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "abc");
  seg(1007, SP_TCP_FIN, "ghi");
  CHECK_STR(out.log, "abc");
  seg(1004, 0, "def");
  CHECK_STR(out.log, "abc|def|ghi|FIN");
  /* Data after the FIN is counted, never delivered. */
  seg(1010, 0, "zzz");
  CHECK_STR(out.log, "abc|def|ghi|FIN");
  CHECK_INT(st.st.after_end_bytes, 3);
  sp_stream_free(&st);
}

static void test_fin_hole_at_capture_end(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "abc");
  seg(1010, SP_TCP_FIN, "");
  sp_stream_flush(&st, 0);
  CHECK_STR(out.log, "abc|G6|FIN");
  sp_stream_free(&st);
}

static void test_rst_flushes(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "abc");
  seg(1006, 0, "fg");
  seg(1008, SP_TCP_RST, "");
  CHECK_STR(out.log, "abc|G2|fg|RST");
  CHECK(sp_stream_ended(&st));
  seg(1004, 0, "de");
  CHECK_STR(out.log, "abc|G2|fg|RST");
  sp_stream_free(&st);
}

static void test_wraparound(void) {
  setup(1 << 20);
  seg(0xfffffffdu, SP_TCP_SYN, "");
  seg(0xfffffffeu, 0, "abc"); /* spans the wrap */
  seg(4, 0, "ghi");           /* out of order, after the wrap */
  seg(1, 0, "def");
  seg(7, SP_TCP_FIN, "");
  CHECK_STR(out.log, "abc|def|ghi|FIN");
  CHECK_INT(sp_stream_offset(&st), 9);
  sp_stream_free(&st);
}

static void test_mid_stream_start(void) {
  setup(1 << 20);
  seg(5000, SP_TCP_ACK, "hello");
  seg(5005, SP_TCP_ACK, "world");
  /* Before the chosen start: dropped, counted. */
  seg(4990, SP_TCP_ACK, "0123456789");
  seg(4995, SP_TCP_ACK, "56789hel");
  CHECK_STR(out.log, "hello|world");
  CHECK_INT(st.st.retrans_bytes, 10 + 5 + 3);
  CHECK(sp_stream_started(&st));
  uint32_t isn;
  CHECK(!sp_stream_syn_seq(&st, &isn));
  sp_stream_free(&st);
}

static void test_truncated_snaplen(void) {
  setup(1 << 20);
  seg(1000, SP_TCP_SYN, "");
  sp_stream_segment(&st, 0, 1001, 0, (const uint8_t *)"abcd", 4, 10);
  seg(1011, 0, "xyz");
  CHECK_STR(out.log, "abcd|G6|xyz");
  CHECK_INT(st.st.trunc_bytes, 6);
  /* Out of order and truncated: the missing tail is kept as a gap. */
  sp_stream_segment(&st, 0, 1020, 0, (const uint8_t *)"pq", 2, 5);
  seg(1014, 0, "lmnopq");
  CHECK_STR(out.log, "abcd|G6|xyz|lmnopq|pq|G3");
  sp_stream_free(&st);
}

static void test_ooo_cap(void) {
  setup(8);
  seg(1000, SP_TCP_SYN, "");
  seg(1001, 0, "ab");
  seg(1006, 0, "fgh"); /* hole of 3, span 8: fits */
  CHECK_STR(out.log, "ab");
  seg(1013, 0, "mn"); /* span 12 > 8: the hole before fgh goes */
  CHECK_STR(out.log, "ab|G3|fgh");
  CHECK_INT(st.st.overflow_gaps, 1);
  /* The old hole's bytes arriving late are not invented back in. */
  seg(1003, 0, "cde");
  CHECK_STR(out.log, "ab|G3|fgh");
  seg(1009, 0, "ijkl");
  CHECK_STR(out.log, "ab|G3|fgh|ijkl|mn");
  sp_stream_free(&st);
  /* Cap 0: every hole is a gap at once. */
  setup(0);
  seg(1000, SP_TCP_SYN, "");
  seg(1004, 0, "def");
  CHECK_STR(out.log, "G3|def");
  sp_stream_free(&st);
}

static void test_callback_error_propagates(void) {
  setup(1 << 20);
  out.fail_after = 2;
  seg(1000, SP_TCP_SYN, "");
  CHECK_INT(seg(1001, 0, "abc"), 0);
  CHECK_INT(seg(1004, 0, "def"), 42);
  sp_stream_free(&st);
}

/* Property: a stream cut into random segments, shuffled, duplicated, with
 * random overlaps and some segments dropped, comes out as the original
 * bytes where present and gaps exactly where nothing arrived. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

typedef struct checker {
  const uint8_t *orig;
  uint64_t off;
  uint64_t gap_bytes;
  int bad;
  int fin;
} checker;

static int check_ev(void *ctx, const sp_stream_ev *ev) {
  checker *k = ctx;
  if (ev->type == SP_EV_DATA) {
    if (memcmp(k->orig + k->off, ev->data, (size_t)ev->len) != 0)
      k->bad++;
    k->off += ev->len;
  } else if (ev->type == SP_EV_GAP) {
    k->gap_bytes += ev->len;
    k->off += ev->len;
  } else if (ev->type == SP_EV_FIN) {
    k->fin++;
  }
  return 0;
}

static void random_run(int drop, size_t max_ooo) {
  enum { LEN = 200000, MAXSEG = 1500, NSEG = 600 };
  uint8_t *orig = malloc(LEN);
  for (size_t i = 0; i < LEN; i++)
    orig[i] = (uint8_t)rnd(256);
  struct cut {
    uint32_t off, len;
  } segs[NSEG * 3];
  size_t n = 0;
  for (uint32_t off = 0; off < LEN;) {
    uint32_t len = 1 + rnd(MAXSEG);
    if (off + len > LEN)
      len = LEN - off;
    segs[n].off = off;
    segs[n].len = len;
    n++;
    /* Some overlapping re-cuts and duplicates. */
    if (rnd(8) == 0 && n < NSEG * 3) {
      uint32_t back = rnd(off + 1);
      segs[n].off = off - back;
      segs[n].len = back + rnd(len) + 1;
      n++;
    }
    off += len;
  }
  uint8_t *present = calloc(LEN, 1);
  /* Shuffle locally: segments move up to 20 places. */
  for (size_t i = 0; i + 1 < n; i++) {
    size_t j = i + rnd(20);
    if (j >= n)
      j = n - 1;
    struct cut t = segs[i];
    segs[i] = segs[j];
    segs[j] = t;
  }
  checker k = {orig, 0, 0, 0, 0};
  sp_stream s;
  sp_stream_init(&s, max_ooo, check_ev, &k);
  uint32_t isn = 0xffff0000u; /* wraps during the run */
  sp_stream_segment(&s, 0, isn, SP_TCP_SYN, NULL, 0, 0);
  for (size_t i = 0; i < n; i++) {
    if (drop && rnd(50) == 0)
      continue;
    for (uint32_t b = 0; b < segs[i].len; b++)
      present[segs[i].off + b] = 1;
    sp_stream_segment(&s, 0, isn + 1 + segs[i].off, 0, orig + segs[i].off,
                      segs[i].len, segs[i].len);
  }
  sp_stream_segment(&s, 0, isn + 1 + LEN, SP_TCP_FIN, NULL, 0, 0);
  sp_stream_flush(&s, 0);
  uint64_t missing = 0;
  for (size_t i = 0; i < LEN; i++)
    missing += !present[i];
  CHECK_INT(k.bad, 0);
  CHECK_INT(k.off, LEN);
  CHECK_INT(k.fin, 1);
  if (max_ooo >= LEN)
    CHECK_INT(k.gap_bytes, missing);
  else
    CHECK(k.gap_bytes >= missing);
  if (!drop && max_ooo >= LEN)
    CHECK_INT(k.gap_bytes, 0);
  sp_stream_free(&s);
  free(present);
  free(orig);
}

static void test_random_streams(void) {
  for (int i = 0; i < 10; i++) {
    random_run(0, 1 << 20);
    random_run(1, 1 << 20);
    random_run(1, 4096); /* tight cap: gaps, never wrong bytes */
  }
}

int main(void) {
  SL_RUN(test_in_order);
  SL_RUN(test_reorder);
  SL_RUN(test_retransmit);
  SL_RUN(test_overlap_first_copy_wins);
  SL_RUN(test_gap_on_flush);
  SL_RUN(test_fin_waits_for_hole);
  SL_RUN(test_fin_hole_at_capture_end);
  SL_RUN(test_rst_flushes);
  SL_RUN(test_wraparound);
  SL_RUN(test_mid_stream_start);
  SL_RUN(test_truncated_snaplen);
  SL_RUN(test_ooo_cap);
  SL_RUN(test_callback_error_propagates);
  SL_RUN(test_random_streams);
  return sl_test_summary();
}
