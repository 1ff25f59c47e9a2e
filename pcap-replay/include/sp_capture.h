/*
 * sp_capture.h: reading pcap and pcapng files through libpcap.
 *
 * Timestamps come out in microseconds whatever the file's precision
 * (libpcap scales nanosecond files down).  Every error message names the
 * file and the byte offset of the record that failed, so a bad capture can
 * be inspected with a hex dump.
 */
#ifndef SP_CAPTURE_H
#define SP_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "sp_util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_capture sp_capture;

typedef struct sp_frame {
  int64_t ts_us;       /* absolute capture time */
  const uint8_t *data; /* valid until the next sp_capture_next() */
  uint32_t caplen;     /* bytes present */
  uint32_t wirelen;    /* bytes on the wire (>= caplen) */
  uint64_t number;     /* 1-based packet number, as Wireshark counts */
  uint64_t offset;     /* byte offset of the record in the file */
} sp_frame;

/*
 * Opens path.  On failure returns SP_ERR_IO (cannot open), SP_ERR_MALFORMED
 * (not a capture, or a damaged header) or SP_ERR_UNSUPPORTED (link type not
 * handled by sp_decode), with a message naming the file in err.
 */
int sp_capture_open(sp_capture **out, const char *path, char *err,
                    size_t errlen);

/* The libpcap DLT_* link type of the file. */
int sp_capture_linktype(const sp_capture *c);

/*
 * Reads the next frame.  Returns 1 with *f filled, 0 at a clean end of
 * file, or SP_ERR_MALFORMED with err naming the file, the packet number and
 * the byte offset (truncated record, impossible lengths, garbage).
 */
int sp_capture_next(sp_capture *c, sp_frame *f, char *err, size_t errlen);

void sp_capture_close(sp_capture *c);

#ifdef __cplusplus
}
#endif
#endif
