/*
 * sl_data.h: the DATA body framer (RFC 5321 4.1.1.4, 4.5.2) and the BDAT
 * chunk checker (RFC 3030).
 *
 * The framer owns end-of-data.  It reads the client's dot-stuffed body and
 * writes a re-serialised body for the upstream: dot-stuffing undone and
 * redone, CRLF line ends only, and exactly one terminator "CRLF . CRLF" at
 * the end.  Every SMTP-smuggling form (bare LF, bare CR, NUL, any other
 * end-of-data variant) is a violation unless a named leniency allows it.
 * It is a resumable state machine: input may be split at any byte.
 */
#ifndef SL_DATA_H
#define SL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/relay.h"

typedef enum sl_data_status {
  SL_DATA_MORE = 0, /* all input consumed (or output full): call again */
  SL_DATA_END,      /* end-of-data consumed; ".\r\n" written if writing */
  SL_DATA_VIOLATION /* *consumed stops after the offending byte */
} sl_data_status;

typedef struct sl_data {
  uint32_t line_len;      /* bytes of the current line so far, no CRLF */
  uint32_t text_max;      /* longest line content allowed (limit - 2) */
  uint64_t size;          /* unstuffed message bytes so far, with CRLFs */
  uint64_t size_max;      /* 0: none */
  uint8_t state;          /* private: where in a line we are */
  uint8_t normalize_lf;   /* SL_LENIENT_NORMALIZE_BARE_LF */
  uint8_t discard;        /* write nothing: the message is being refused */
  uint8_t loose_end;      /* discarding after smuggling: a "." line with any
                             line ending ends the message */
  uint8_t loose_state;    /* private: where loose discarding resumes */
  sl_violation violation; /* the latest violation */
} sl_data;

void sl_data_init(sl_data *d, uint32_t text_line_max, uint64_t size_max,
                  int normalize_lf);

/* Switches to discarding the rest of the message; loose: accept any line
   ending around the final dot (after a smuggling violation the session is
   closed right after, so nothing that follows is ever read as SMTP). */
void sl_data_discard(sl_data *d, int loose);

/*
 * Frames in[0..inlen) into out[0..outcap).  outcap must be >= 4 unless
 * discarding.  Writes how much was consumed and produced.  Output grows at
 * most by 1 byte per input byte plus 3 (terminator), so outcap >= inlen + 4
 * guarantees all input is consumed or a status other than MORE is returned.
 */
sl_data_status sl_data_run(sl_data *d, const uint8_t *in, size_t inlen,
                           uint8_t *out, size_t outcap, size_t *consumed,
                           size_t *produced);

/*
 * Checks a BDAT chunk's bytes in place for bare CR, bare LF and NUL
 * (canonical MIME text, RFC 3030 section 3); it copies nothing, the caller
 * forwards the checked bytes itself.  state carries a pending CR across
 * calls (0 or 1).  Returns SL_VIOL_NONE with *consumed = len, or the
 * violation with *consumed counting the bytes up to the one that made it
 * certain (the NUL, the bare LF, the CR not followed by LF).
 */
sl_violation sl_bdat_check(uint8_t *state, const uint8_t *in, size_t len,
                           size_t *consumed);

/*
 * BDAT content re-framed as a DATA body, for an upstream without CHUNKING
 * (guarantee 8): the chunks' octets (not dot-stuffed) are checked as
 * canonical text (CRLF only, no NUL, lines within text_line_max) and written
 * dot-stuffed, so the only end-of-data the upstream can see is the one
 * sl_stuff_end() writes.  A CR at the end of one chunk may pair with an LF
 * at the start of the next.
 */
typedef struct sl_stuff {
  uint32_t line_len; /* content bytes of the current line */
  uint32_t text_max; /* longest line content allowed (limit - 2) */
  uint8_t cr;        /* a CR is pending (its LF not yet seen) */
  uint8_t mid;       /* inside a line (not at its start) */
} sl_stuff;

void sl_stuff_init(sl_stuff *s, uint32_t text_line_max);

/* Frames in[0..len) into out[0..outcap), outcap >= 2: consumes until the
   output is full, then reports consumed and produced.  Returns
   SL_VIOL_NONE, or the violation (bare CR/LF, NUL, line too long) with
   *consumed just after the offending byte. */
sl_violation sl_stuff_run(sl_stuff *s, const uint8_t *in, size_t len,
                          uint8_t *out, size_t outcap, size_t *consumed,
                          size_t *produced);

/* Writes the end of the body into out (room for 5): a CRLF when the content
   does not end with one (DATA cannot carry such a message otherwise), then
   "." CRLF.  Returns the bytes written.  The caller refuses a message whose
   content ends on a pending CR (s->cr) instead. */
size_t sl_stuff_end(sl_stuff *s, uint8_t *out);

#endif
