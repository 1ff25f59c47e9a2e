/*
 * sl_reply.h: parsing and re-framing of upstream SMTP replies (RFC 5321
 * 4.2, 4.3.2, 4.5.3.1.5).
 *
 * The upstream is not trusted to frame its replies: every line is checked
 * (three digits, first 2..5, one code throughout, '-' or ' ' or nothing after
 * it, CRLF only, no NUL, bounded length), and what reaches the client is
 * rebuilt from the parsed lines, so no upstream byte can start a line of its
 * own in the client stream.
 */
#ifndef SL_REPLY_H
#define SL_REPLY_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_reply {
  uint32_t code; /* 200..599 */
  uint32_t nlines;
  uint32_t len; /* bytes of the whole reply, CRLFs included */
} sl_reply;

/*
 * Looks for one complete reply at the start of buf.  Returns 1 and fills *r
 * when one is there, 0 when more bytes are needed (and the prefix is valid
 * so far), -1 when the bytes cannot be a valid reply: a line longer than
 * line_max (CRLF included), a whole reply longer than total_max, a bad code,
 * a code change, a bare CR or LF, or a NUL.
 */
int sl_reply_scan(const uint8_t *buf, size_t len, uint32_t line_max,
                  uint32_t total_max, sl_reply *r);

/*
 * Iterates over the lines of a reply found by sl_reply_scan: *pos starts at
 * 0; each call sets *text and *textlen to the line's text (after "DDD-" or
 * "DDD ", empty for a bare "DDD") and returns 1, or 0 after the last line.
 */
int sl_reply_next_line(const uint8_t *buf, const sl_reply *r, size_t *pos,
                       const uint8_t **text, size_t *textlen);

/* Writes "DDD-" or "DDD " (last) then text with control bytes other than TAB
   replaced by '?', then CRLF.  Returns bytes written (textlen + 6). */
size_t sl_reply_put_line(uint8_t *out, unsigned code, int last,
                         const uint8_t *text, size_t textlen);

/* Writes v in decimal (at most 20 digits); returns the digits written. */
size_t sl_put_decimal(uint8_t *out, uint64_t v);

#endif
