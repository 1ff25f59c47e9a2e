#include "sp_reasm.h"

#include <stdlib.h>
#include <string.h>

#include "sp_decode.h"
#include "sp_util.h"

struct sp_ival {
  uint64_t start, end;
  int gap; /* known missing (snapshot length): no bytes in buf */
};

void sp_stream_init(sp_stream *s, size_t max_ooo, sp_stream_emit_fn emit,
                    void *ctx) {
  memset(s, 0, sizeof *s);
  s->max_ooo = max_ooo;
  s->emit = emit;
  s->ctx = ctx;
}

void sp_stream_free(sp_stream *s) {
  free(s->buf);
  free(s->iv);
  s->buf = NULL;
  s->iv = NULL;
  s->buf_cap = s->iv_cap = s->iv_len = s->iv_head = 0;
}

int sp_stream_ended(const sp_stream *s) { return s->ended; }
int sp_stream_started(const sp_stream *s) { return s->started; }
uint64_t sp_stream_offset(const sp_stream *s) { return s->next; }
const sp_reasm_stats *sp_stream_stats(const sp_stream *s) { return &s->st; }

int sp_stream_syn_seq(const sp_stream *s, uint32_t *isn) {
  if (!s->syn_seen)
    return 0;
  *isn = s->base_seq - 1;
  return 1;
}

static int emit_data(sp_stream *s, int64_t ts, const uint8_t *p, uint64_t n) {
  sp_stream_ev ev = {SP_EV_DATA, ts, p, n};
  return s->emit(s->ctx, &ev);
}

static int emit_gap(sp_stream *s, int64_t ts, uint64_t n) {
  s->st.gaps++;
  s->st.gap_bytes += n;
  sp_stream_ev ev = {SP_EV_GAP, ts, NULL, n};
  return s->emit(s->ctx, &ev);
}

static sp_ival *first_iv(sp_stream *s) {
  return s->iv_len ? &s->iv[s->iv_head] : NULL;
}

/* Delivers every buffered range that now starts at s->next. */
static int deliver_ready(sp_stream *s, int64_t ts) {
  sp_ival *v;
  while ((v = first_iv(s)) && v->start == s->next) {
    uint64_t start = v->start, end = v->end;
    int gap = v->gap;
    s->iv_head++;
    s->iv_len--;
    s->next = end;
    int rc =
        gap ? emit_gap(s, ts, end - start)
            : emit_data(s, ts, s->buf + (start - s->buf_base), end - start);
    if (rc)
      return rc;
  }
  if (!s->iv_len) {
    s->iv_head = 0;
    s->buf_base = s->next;
  }
  return 0;
}

/* Makes buf cover stream offsets [buf_base, end) with buf_base <= next. */
static int buf_cover(sp_stream *s, uint64_t end) {
  if (end - s->buf_base <= s->buf_cap)
    return 0;
  if (s->iv_len && s->buf_base < s->next) {
    /* Slide the live region down before growing: it starts at next. */
    uint64_t shift = s->next - s->buf_base;
    uint64_t live = s->iv[s->iv_head + s->iv_len - 1].end - s->next;
    memmove(s->buf, s->buf + shift, (size_t)live);
  }
  s->buf_base = s->next;
  if (end - s->buf_base <= s->buf_cap)
    return 0;
  size_t need = (size_t)(end - s->buf_base);
  size_t cap = s->buf_cap ? s->buf_cap : 4096;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(s->buf, cap);
  if (!p)
    return SP_ERR_NOMEM;
  s->buf = p;
  s->buf_cap = cap;
  return 0;
}

static int iv_insert_at(sp_stream *s, size_t idx, uint64_t start, uint64_t end,
                        int gap) {
  if (s->iv_head + s->iv_len == s->iv_cap) {
    if (s->iv_head > 0) {
      memmove(s->iv, s->iv + s->iv_head, s->iv_len * sizeof *s->iv);
      s->iv_head = 0;
    } else {
      size_t cap = s->iv_cap ? s->iv_cap * 2 : 16;
      sp_ival *p = realloc(s->iv, cap * sizeof *p);
      if (!p)
        return SP_ERR_NOMEM;
      s->iv = p;
      s->iv_cap = cap;
    }
  }
  sp_ival *base = s->iv + s->iv_head;
  memmove(base + idx + 1, base + idx, (s->iv_len - idx) * sizeof *base);
  base[idx].start = start;
  base[idx].end = end;
  base[idx].gap = gap;
  s->iv_len++;
  return 0;
}

/* Adds [start, end) to the buffered set; data is NULL for a known-missing
 * range.  Existing ranges win where they overlap. */
static int buffer_range(sp_stream *s, uint64_t start, uint64_t end,
                        const uint8_t *data) {
  size_t i = 0;
  while (start < end) {
    sp_ival *base = s->iv ? s->iv + s->iv_head : NULL; /* NULL + 0 is UB */
    while (i < s->iv_len && base[i].end <= start)
      i++;
    uint64_t piece_end = end;
    if (i < s->iv_len && base[i].start <= start) {
      /* Covered by an older copy: compare, keep the old bytes. */
      uint64_t ov_end = base[i].end < end ? base[i].end : end;
      if (data && !base[i].gap) {
        const uint8_t *old = s->buf + (start - s->buf_base);
        for (uint64_t k = 0; k < ov_end - start; k++)
          if (old[k] != data[k])
            s->st.conflict_bytes++;
      }
      if (data)
        data += ov_end - start;
      start = ov_end;
      continue;
    }
    if (i < s->iv_len && base[i].start < piece_end)
      piece_end = base[i].start;
    int rc = iv_insert_at(s, i, start, piece_end, data == NULL);
    if (rc)
      return rc;
    if (data) {
      memcpy(s->buf + (start - s->buf_base), data, (size_t)(piece_end - start));
      data += piece_end - start;
    }
    start = piece_end;
    i++;
  }
  return 0;
}

/* Gives up holes, oldest first, until [next, end) fits in max_ooo or the
 * segment starting at `start` is next in line. */
static int enforce_cap(sp_stream *s, int64_t ts, uint64_t start, uint64_t end) {
  while (end - s->next > s->max_ooo) {
    sp_ival *v = first_iv(s);
    uint64_t hole_end = v && v->start < start ? v->start : start;
    if (hole_end <= s->next)
      break;
    s->st.overflow_gaps++;
    uint64_t n = hole_end - s->next;
    s->next = hole_end;
    int rc = emit_gap(s, ts, n);
    if (!rc)
      rc = deliver_ready(s, ts);
    if (rc)
      return rc;
  }
  return 0;
}

static int try_fin(sp_stream *s, int64_t ts) {
  if (!s->fin_pending || s->ended || s->next < s->fin_off)
    return 0;
  s->ended = 1;
  sp_stream_ev ev = {SP_EV_FIN, ts, NULL, 0};
  return s->emit(s->ctx, &ev);
}

static int add_payload(sp_stream *s, int64_t ts, uint64_t start,
                       const uint8_t *p, uint32_t caplen, uint32_t wirelen) {
  uint64_t end = start + wirelen;
  uint64_t cap_end = start + caplen;
  if (s->fin_pending && end > s->fin_off) {
    s->st.after_end_bytes += end - (start > s->fin_off ? start : s->fin_off);
    if (start >= s->fin_off)
      return 0;
    end = s->fin_off;
    if (cap_end > end)
      cap_end = end;
  }
  if (start > s->next) {
    s->st.ooo_segments++;
    int rc = enforce_cap(s, ts, start, end);
    if (rc)
      return rc;
  }
  /* Trim what is already delivered (enforce_cap may have delivered more). */
  if (end <= s->next) {
    s->st.retrans_bytes += end - start;
    return 0;
  }
  if (start < s->next) {
    uint64_t d = s->next - start;
    s->st.retrans_bytes += d;
    p += d < caplen ? d : caplen;
    start = s->next;
    if (cap_end < start)
      cap_end = start;
  }
  s->st.trunc_bytes += end - cap_end;
  if (start == s->next && !s->iv_len) {
    /* The common case: in order, nothing buffered, no copy. */
    s->next = end;
    int rc = 0;
    if (cap_end > start)
      rc = emit_data(s, ts, p, cap_end - start);
    if (!rc && end > cap_end)
      rc = emit_gap(s, ts, end - cap_end);
    return rc;
  }
  int rc = buf_cover(s, end);
  if (!rc && cap_end > start)
    rc = buffer_range(s, start, cap_end, p);
  if (!rc && end > cap_end)
    rc = buffer_range(s, cap_end, end, NULL);
  if (!rc)
    rc = deliver_ready(s, ts);
  return rc;
}

int sp_stream_segment(sp_stream *s, int64_t ts_us, uint32_t seq, uint8_t flags,
                      const uint8_t *payload, uint32_t caplen,
                      uint32_t wirelen) {
  if (wirelen < caplen)
    wirelen = caplen;
  if (s->ended) {
    s->st.after_end_bytes += wirelen;
    return 0;
  }
  if (wirelen || (flags & (SP_TCP_FIN | SP_TCP_RST)))
    s->st.segments++;
  if (flags & SP_TCP_SYN) {
    if (!s->started) {
      s->started = 1;
      s->syn_seen = 1;
      s->base_seq = seq + 1;
    }
    seq++; /* the SYN occupies one sequence number; data follows it */
  }
  if (!s->started) {
    s->started = 1;
    s->base_seq = seq;
  }
  /* Map the 32-bit sequence number to a 64-bit offset near the next
   * expected byte: within 2 GiB either way is taken as the same epoch. */
  uint32_t next_seq = s->base_seq + (uint32_t)s->next;
  int64_t rel = (int32_t)(seq - next_seq);
  int64_t start_signed = (int64_t)s->next + rel;
  int rc = 0;
  if (flags & SP_TCP_RST) {
    /* A reset ends the stream now: whatever is missing stays missing. */
    rc = sp_stream_flush(s, ts_us);
    if (rc)
      return rc;
    if (!s->ended) {
      s->ended = 1;
      sp_stream_ev ev = {SP_EV_RST, ts_us, NULL, 0};
      return s->emit(s->ctx, &ev);
    }
    return 0;
  }
  if (wirelen) {
    if (start_signed < 0) {
      /* Before the first byte we chose as the start (mid-stream capture
       * whose first segments arrived reordered). */
      uint64_t before = (uint64_t)-start_signed;
      s->st.retrans_bytes += before < wirelen ? before : wirelen;
      if (before >= wirelen) {
        wirelen = 0;
      } else {
        uint32_t b = (uint32_t)before;
        payload += b < caplen ? b : caplen;
        caplen = b < caplen ? caplen - b : 0;
        wirelen -= b;
        start_signed = 0;
      }
    }
    if (wirelen)
      rc = add_payload(s, ts_us, (uint64_t)start_signed, payload, caplen,
                       wirelen);
    if (rc)
      return rc;
  }
  if ((flags & SP_TCP_FIN) && !s->fin_pending) {
    int64_t fin = start_signed + (int64_t)wirelen;
    if (fin >= (int64_t)s->next) {
      s->fin_pending = 1;
      s->fin_off = (uint64_t)fin;
    }
  }
  return try_fin(s, ts_us);
}

int sp_stream_flush(sp_stream *s, int64_t ts_us) {
  if (s->ended)
    return 0;
  sp_ival *v;
  int rc = 0;
  while (!rc && (v = first_iv(s))) {
    uint64_t n = v->start - s->next;
    s->next = v->start;
    rc = emit_gap(s, ts_us, n);
    if (!rc)
      rc = deliver_ready(s, ts_us);
  }
  if (!rc && s->fin_pending && s->next < s->fin_off) {
    uint64_t n = s->fin_off - s->next;
    s->next = s->fin_off;
    rc = emit_gap(s, ts_us, n);
  }
  if (!rc)
    rc = try_fin(s, ts_us);
  return rc;
}
