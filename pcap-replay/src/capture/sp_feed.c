/* sp_feed.c: a capture through the tracker; see sp_feed.h. */
#include "sp_feed.h"

int sp_capture_feed(sp_capture *cap, sp_tracker *t, sp_feed_stats *st,
                    sp_feed_skip_fn skip, void *ud, char *err, size_t errlen,
                    int *read_error, uint64_t *packet) {
  int dlt = sp_capture_linktype(cap);
  sp_frame f;
  *read_error = 0;
  *packet = 0;
  for (;;) {
    int rc = sp_capture_next(cap, &f, err, errlen);
    if (rc == 0)
      return 0;
    if (rc < 0) {
      *read_error = 1;
      return rc;
    }
    if (st)
      st->frames++;
    sp_tcp_segment seg;
    sp_decode_status ds =
        sp_decode_frame(dlt, f.data, f.caplen, f.wirelen, &seg);
    if (ds != SP_DECODE_TCP) {
      if (st)
        st->skipped[ds]++;
      if (skip)
        skip(ud, &f, ds);
      continue;
    }
    seg.ts_us = f.ts_us;
    rc = sp_tracker_packet(t, &seg);
    if (rc) {
      *packet = f.number;
      return rc;
    }
  }
}
