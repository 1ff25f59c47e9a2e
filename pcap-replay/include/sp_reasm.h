/*
 * sp_reasm.h: reassembly of one direction of a TCP connection.
 *
 * Segments go in in capture order; in-order events come out through a
 * callback, synchronously:
 *   SP_EV_DATA  new in-order bytes (one event per segment, or per piece of a
 *               segment where older buffered bytes won an overlap);
 *   SP_EV_GAP   bytes the capture does not hold (lost, cut by the snapshot
 *               length, or given up when the out-of-order buffer was full);
 *               never invented;
 *   SP_EV_FIN   the sender's FIN, once every byte before it is accounted;
 *   SP_EV_RST   the sender's RST (anything still buffered is emitted first).
 *
 * Sequence numbers: the stream starts at SYN+1 when the SYN is seen, else at
 * the first segment seen (a capture that starts mid-stream).  Offsets are 64
 * bits internally, so wraparound of the 32-bit sequence space is invisible.
 * Overlaps: the first copy of a byte wins; differing later copies of bytes
 * still buffered are counted as conflicts; copies of bytes already delivered
 * count as retransmitted bytes.
 *
 * Memory: out-of-order data is buffered in one region that spans from the
 * next expected byte to the furthest byte held, capped at max_ooo bytes
 * (a single segment larger than the cap is still accepted).  A segment that
 * would need more turns the oldest hole into a gap.  In-order data with
 * nothing buffered is passed through without copying.
 */
#ifndef SP_REASM_H
#define SP_REASM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_ev_type {
  SP_EV_DATA,
  SP_EV_GAP,
  SP_EV_FIN,
  SP_EV_RST
} sp_ev_type;

typedef struct sp_stream_ev {
  sp_ev_type type;
  int64_t ts_us;       /* time of the packet that made the event possible */
  const uint8_t *data; /* SP_EV_DATA: valid during the callback only */
  uint64_t len;        /* SP_EV_DATA: bytes; SP_EV_GAP: missing bytes */
} sp_stream_ev;

/* Returns 0 to go on; a nonzero value is handed back by the sp_stream_*
 * call that emitted the event (the stream stays consistent). */
typedef int (*sp_stream_emit_fn)(void *ctx, const sp_stream_ev *ev);

typedef struct sp_reasm_stats {
  uint64_t segments;        /* segments with payload or FIN */
  uint64_t ooo_segments;    /* arrived ahead of a hole */
  uint64_t retrans_bytes;   /* copies of bytes already delivered */
  uint64_t conflict_bytes;  /* buffered bytes a later copy contradicted */
  uint64_t gaps, gap_bytes; /* all SP_EV_GAP events */
  uint64_t overflow_gaps;   /* gaps forced by max_ooo */
  uint64_t trunc_bytes;     /* cut off by the snapshot length */
  uint64_t after_end_bytes; /* payload after FIN/RST */
} sp_reasm_stats;

typedef struct sp_ival sp_ival;

/* One direction.  Fields are private; read them only through the calls. */
typedef struct sp_stream {
  sp_stream_emit_fn emit;
  void *ctx;
  size_t max_ooo;
  int started, syn_seen, fin_pending, ended;
  uint32_t base_seq; /* sequence number of stream offset 0 */
  uint64_t next;     /* next stream offset to deliver */
  uint64_t fin_off;  /* stream offset of the FIN */
  uint8_t *buf;      /* buffered bytes; buf[0] is stream offset buf_base */
  size_t buf_cap;
  uint64_t buf_base;
  sp_ival *iv; /* buffered ranges, sorted, disjoint, all > next */
  size_t iv_head, iv_len, iv_cap;
  sp_reasm_stats st;
} sp_stream;

void sp_stream_init(sp_stream *s, size_t max_ooo, sp_stream_emit_fn emit,
                    void *ctx);
/* Frees the buffers; the stream may be initialised again. */
void sp_stream_free(sp_stream *s);

/*
 * Feeds one segment: seq and flags from the TCP header, payload[0..caplen)
 * the bytes captured, wirelen (>= caplen) the payload length on the wire.
 * Returns 0, SP_ERR_NOMEM (the segment is then dropped as if lost), or the
 * callback's nonzero value.
 */
int sp_stream_segment(sp_stream *s, int64_t ts_us, uint32_t seq, uint8_t flags,
                      const uint8_t *payload, uint32_t caplen,
                      uint32_t wirelen);

/*
 * No more segments will come (end of capture, or the peer reset): every
 * hole becomes a gap, buffered data is delivered, and a pending FIN is
 * emitted.  Returns 0 or the callback's nonzero value.
 */
int sp_stream_flush(sp_stream *s, int64_t ts_us);

/* Nonzero once FIN or RST has been emitted. */
int sp_stream_ended(const sp_stream *s);
/* Nonzero once a SYN or any segment fixed the initial sequence number. */
int sp_stream_started(const sp_stream *s);
/* Stream offset of the next byte to deliver (bytes + gaps so far). */
uint64_t sp_stream_offset(const sp_stream *s);
/* The sequence number of the SYN (valid when a SYN was seen). */
int sp_stream_syn_seq(const sp_stream *s, uint32_t *isn);
const sp_reasm_stats *sp_stream_stats(const sp_stream *s);

#ifdef __cplusplus
}
#endif
#endif
