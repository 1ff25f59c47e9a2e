/*
 * sluice/clamd.h: the clamd INSTREAM protocol (clamd(8), "INSTREAM").
 *
 * The client sends "zINSTREAM" NUL, then the message as chunks, each a
 * 4-byte big-endian length followed by that many bytes, then a zero length.
 * clamd answers one NUL-terminated line (the 'z' prefix asks for NUL; a
 * newline is accepted too) and closes:
 *   "stream: OK"                              clean
 *   "stream: Eicar-Signature FOUND"           a signature matched
 *   "INSTREAM size limit exceeded. ERROR"     more than StreamMaxLength
 *   "<anything> ERROR"                        any other failure
 * The driver owns the socket (TCP or unix) and the timeout; this module only
 * frames and parses.
 */
#ifndef SLUICE_CLAMD_H
#define SLUICE_CLAMD_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"
#include "sluice/filter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The command, NUL included: 10 bytes. */
#define SL_CLAMD_COMMAND "zINSTREAM"
#define SL_CLAMD_COMMAND_LEN 10
/* A chunk header, and the end marker (a chunk header of length 0). */
#define SL_CLAMD_CHUNK_HEADER_LEN 4
/* Longest reply line accepted, terminator included.  clamd's replies are
   short; a virus name is at most a few hundred bytes. */
#define SL_CLAMD_REPLY_MAX 1024
/* Longest virus name kept (longer names are cut, name_truncated set). */
#define SL_CLAMD_NAME_MAX 128

/* Writes "zINSTREAM" NUL; out holds SL_CLAMD_COMMAND_LEN bytes.  Returns
   SL_CLAMD_COMMAND_LEN. */
size_t sl_clamd_put_command(uint8_t *out);

/*
 * Writes the 4-byte big-endian header of a chunk of len bytes (the chunk's
 * bytes follow it unchanged); len 0 is the end marker, which is what
 * sl_clamd_put_end writes.  Returns SL_CLAMD_CHUNK_HEADER_LEN.
 */
size_t sl_clamd_put_chunk_header(uint8_t *out, uint32_t len);
size_t sl_clamd_put_end(uint8_t *out);

typedef enum sl_clamd_status {
  SL_CLAMD_OK = 0,         /* "stream: OK" */
  SL_CLAMD_FOUND = 1,      /* "stream: NAME FOUND" */
  SL_CLAMD_SIZE_LIMIT = 2, /* "INSTREAM size limit exceeded. ERROR" */
  SL_CLAMD_ERROR = 3       /* any other "... ERROR" */
} sl_clamd_status;

typedef struct sl_clamd_reply {
  sl_clamd_status status;
  /* ACCEPT for OK, REJECT for FOUND, TEMPFAIL for SIZE_LIMIT and ERROR
     (the scan failed: the caller may apply its filter-failure default
     instead, as it does for a refused connection or a timeout). */
  sl_verdict verdict;
  /* FOUND: the signature name, printable ASCII only (other bytes become
     '?'), NUL-terminated; empty otherwise. */
  char name[SL_CLAMD_NAME_MAX + 1];
  size_t name_len;
  int name_truncated;
} sl_clamd_reply;

/*
 * Parses clamd's reply at the start of buf[0..len).  Returns the bytes of
 * the reply, terminator included (> 0), and fills *r; or
 *  SL_ERR_INCOMPLETE  no NUL or LF yet and len < SL_CLAMD_REPLY_MAX: read
 *                     more (at end of stream the filter has failed);
 *  SL_ERR_MALFORMED   no terminator within SL_CLAMD_REPLY_MAX bytes, or a
 *                     line that is none of the forms above (e.g. "stream:"
 *                     without OK/FOUND, a FOUND without a name);
 *  SL_ERR_INVALID_ARGUMENT  NULL r, or NULL buf with len > 0.
 * *r is written only on success.  A trailing CR before the LF is ignored.
 */
long sl_clamd_parse_reply(const uint8_t *buf, size_t len, sl_clamd_reply *r);

#ifdef __cplusplus
}
#endif
#endif
