/*
 * sp_feed.h: a capture walked through the session tracker, the loop that
 * extract, stats and the script loader (sim, live) share: every frame
 * decoded, TCP segments fed to the tracker with the capture's time, other
 * frames counted (and shown to the caller, who decides what to warn about).
 */
#ifndef SP_FEED_H
#define SP_FEED_H

#include <stdint.h>

#include "sp_capture.h"
#include "sp_decode.h"
#include "sp_session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_feed_stats {
  uint64_t frames;                             /* frames read */
  uint64_t skipped[SP_DECODE_UNSUPPORTED + 1]; /* not fed, by status */
} sp_feed_stats;

/* A frame that was not fed (st != SP_DECODE_TCP). */
typedef void (*sp_feed_skip_fn)(void *ud, const sp_frame *f,
                                sp_decode_status st);

/* Feeds cap to t up to the end of the file (returns 0), a reading error
 * (returns its code with err filled, *read_error = 1; what was read is fed)
 * or a tracker error (returns its code, *read_error = 0, *packet = the
 * packet number).  Does not finish the tracker.  st and skip may be NULL. */
int sp_capture_feed(sp_capture *cap, sp_tracker *t, sp_feed_stats *st,
                    sp_feed_skip_fn skip, void *ud, char *err, size_t errlen,
                    int *read_error, uint64_t *packet);

#ifdef __cplusplus
}
#endif
#endif
