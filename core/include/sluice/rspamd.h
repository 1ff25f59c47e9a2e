/*
 * sluice/rspamd.h: rspamd's HTTP protocol ("POST /checkv2", rspamd's
 * doc/developers/protocol).
 *
 * Three pieces, each pure:
 *  - the request head: "POST /checkv2 HTTP/1.1", Content-Length and the
 *    envelope as headers (IP, Helo, Hostname, From, one Rcpt per
 *    recipient, Queue-Id, User); the message follows as the body;
 *  - an incremental HTTP/1.1 response reader: status line, headers, a body
 *    framed by Content-Length, chunked transfer coding or the end of the
 *    stream, into a caller-owned buffer, every part bounded;
 *  - a bounded JSON reader for the reply body: action, score,
 *    required_score, subject, messages.smtp_message, milter.add_headers and
 *    milter.remove_headers.
 * The driver owns the socket and the timeout.
 */
#ifndef SLUICE_RSPAMD_H
#define SLUICE_RSPAMD_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"
#include "sluice/filter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- request ----------------------------------------------------------- */

/* Longest header value written (after sanitising); longer values are an
   error, never cut: a cut recipient would be a different recipient. */
#define SL_RSPAMD_VALUE_MAX 998
/* Most recipients one request carries (RFC 5321's minimum is 100). */
#define SL_RSPAMD_RCPT_MAX 1000

/*
 * The envelope.  Zero the struct, then set what is known; a field with len
 * 0 is left out.  Fields added later will be zero-compatible.
 */
typedef struct sl_rspamd_request {
  uint64_t content_length; /* exact bytes of the message body that follows */
  sl_bytes ip;             /* client address text, e.g. "192.0.2.1" */
  sl_bytes helo;
  sl_bytes hostname; /* verified client host name */
  sl_bytes from;     /* MAIL FROM address, without <> (empty: "<>") */
  const sl_bytes *rcpts;
  size_t nrcpts;
  sl_bytes queue_id;
  sl_bytes user; /* SASL user name of an authenticated client */
  /* Host header value (HTTP/1.1 requires one); "localhost" when empty. */
  sl_bytes host;
  /* rspamd "Flags" header, e.g. "milter" or "pass_all"; not sanitised
     beyond the header-value rules. */
  sl_bytes flags;
  /* Nonzero: "Transfer-Encoding: chunked" instead of Content-Length
     (content_length is ignored), so the message can follow while it is
     still arriving; rspamd 3.4 reads a chunked /checkv2 body.  The caller
     frames the body (sl_rspamd_put_chunk_header, then "0" CRLF CRLF). */
  int chunked;
} sl_rspamd_request;

/*
 * Writes the request head, up to and including the blank line, into
 * out[0..cap).  Header values are sanitised: CR, LF, NUL and other control
 * bytes (TAB included) and DEL become '?', leading and trailing blanks are
 * dropped (bytes >= 0x80 are kept: rspamd reads UTF-8 addresses).  An
 * empty from is written as "<>".
 * Returns the length written, or SL_ERR_NOBUF (cap too small; out is
 * garbage then), SL_ERR_INVALID_ARGUMENT (NULL out or rq, NULL rcpts with
 * nrcpts > 0, nrcpts > SL_RSPAMD_RCPT_MAX, an empty or blank recipient, a
 * value longer than SL_RSPAMD_VALUE_MAX).
 */
long sl_rspamd_request_head(uint8_t *out, size_t cap,
                            const sl_rspamd_request *rq);

/* The longest chunk header sl_rspamd_put_chunk_header writes. */
#define SL_RSPAMD_CHUNK_HEADER_MAX 18
/* The end of a chunked body: the last chunk and the empty trailer. */
#define SL_RSPAMD_CHUNK_END "0\r\n\r\n"
/*
 * Writes the header of one chunk of n > 0 bytes (RFC 9112 7.1: hex size,
 * CRLF) into out (SL_RSPAMD_CHUNK_HEADER_MAX bytes); the chunk's data and
 * a CRLF follow it.  Returns the length written.
 */
size_t sl_rspamd_put_chunk_header(uint8_t *out, uint64_t n);

/* ---- HTTP/1.1 response reader ------------------------------------------ */

/* Longest status line or header line (CRLF included), and the whole head. */
#define SL_HTTP_LINE_MAX 2048
#define SL_HTTP_HEAD_MAX 16384

/* Reader state; treat the fields as private. */
typedef struct sl_http_reader {
  uint8_t *body;
  size_t body_cap;
  size_t body_len;
  uint64_t remaining; /* Content-Length body or current chunk */
  uint32_t head_len;
  uint32_t line_len;
  uint16_t status;
  uint8_t state;
  uint8_t framing;
  uint8_t flags;
  uint8_t pad_[3];
  uint8_t line[SL_HTTP_LINE_MAX];
} sl_http_reader;

/* Starts reading one response whose body goes into body[0..body_cap). */
void sl_http_reader_init(sl_http_reader *h, uint8_t *body, size_t body_cap);

/*
 * Feeds response bytes.  *consumed is set to the bytes used (bytes after
 * the end of the response are not consumed).  Returns
 *  SL_OK              the response is complete (status and body ready);
 *  SL_ERR_INCOMPLETE  all bytes were used, more are needed;
 *  SL_ERR_MALFORMED   not HTTP/1.x, a bad status line, header or chunk
 *                     size, a line or head over its bound, an unsupported
 *                     Content-Encoding or Transfer-Encoding, both or two
 *                     different Content-Lengths, a 1xx other than 100;
 *  SL_ERR_NOBUF       the body does not fit body_cap;
 *  SL_ERR_INVALID_ARGUMENT  NULL h or consumed, NULL buf with len > 0.
 * Errors are sticky: every later call returns the same one.  An interim
 * "100 Continue" response is skipped.
 */
int sl_http_reader_feed(sl_http_reader *h, const uint8_t *buf, size_t len,
                        size_t *consumed);

/*
 * The peer closed the stream.  Returns SL_OK if the response is complete
 * (including a body delimited by the end of the stream), SL_ERR_MALFORMED
 * if it was cut short, or the sticky error.
 */
int sl_http_reader_eof(sl_http_reader *h);

/* After SL_OK: the status code (100..599) and the body. */
unsigned sl_http_reader_status(const sl_http_reader *h);
const uint8_t *sl_http_reader_body(const sl_http_reader *h, size_t *len);

/* ---- the JSON reply ---------------------------------------------------- */

typedef enum sl_rspamd_action {
  SL_RSPAMD_NO_ACTION = 0,
  SL_RSPAMD_GREYLIST = 1,
  SL_RSPAMD_ADD_HEADER = 2,
  SL_RSPAMD_REWRITE_SUBJECT = 3,
  SL_RSPAMD_SOFT_REJECT = 4,
  SL_RSPAMD_REJECT = 5,
  SL_RSPAMD_ACTION_UNKNOWN = 6 /* missing or not one of the above */
} sl_rspamd_action;

/* Most header operations kept from one reply; more is SL_ERR_NOBUF. */
#define SL_RSPAMD_HEADERS_MAX 32
/* Deepest JSON nesting accepted. */
#define SL_RSPAMD_DEPTH_MAX 32

typedef struct sl_rspamd_header {
  sl_bytes name;  /* unescaped, in the caller's scratch buffer */
  sl_bytes value; /* add_headers only: unescaped, in scratch */
  /* add_headers: the "order" field; -1 (rspamd's default, also when
     absent) appends, as rspamd's own milter proxy does (SMFIR_ADDHEADER,
     seen in the captures); n >= 0 is the position asked for (0 = top).
     remove_headers: the number given (0: every instance, n: the n-th). */
  long order;
} sl_rspamd_header;

typedef struct sl_rspamd_result {
  sl_rspamd_action action;
  int has_score;
  int64_t score_milli;          /* "score" * 1000, rounded toward zero */
  int64_t required_score_milli; /* "required_score" * 1000 */
  sl_bytes smtp_message;        /* messages.smtp_message, unescaped */
  sl_bytes subject;             /* "subject" (rewrite subject), unescaped */
  size_t n_add;
  sl_rspamd_header add[SL_RSPAMD_HEADERS_MAX];
  size_t n_remove;
  sl_rspamd_header remove[SL_RSPAMD_HEADERS_MAX];
} sl_rspamd_result;

/*
 * Parses rspamd's reply body.  Strings are unescaped into
 * scratch[0..scratch_cap) (unescaping never grows a string, so scratch as
 * large as the body always suffices), and *res points into it.  Unknown
 * keys are skipped; the top level must be an object.  A value of
 * milter.add_headers may be a string, an object {"value": ..., "order":
 * ...} or an array of those (one header each).  \u escapes become UTF-8
 * (a lone surrogate becomes U+FFFD); a NUL (\u0000) in a string is an
 * error.  Numbers are read without floating point, clamped to +-10^12.
 * Returns SL_OK, or SL_ERR_MALFORMED (not JSON, nesting deeper than
 * SL_RSPAMD_DEPTH_MAX, a known key with a wrong type), SL_ERR_NOBUF
 * (scratch too small or more than SL_RSPAMD_HEADERS_MAX header
 * operations), SL_ERR_INVALID_ARGUMENT (NULL pointers).  *res is zeroed
 * first, then filled.
 */
int sl_rspamd_parse_result(const uint8_t *json, size_t len, uint8_t *scratch,
                           size_t scratch_cap, sl_rspamd_result *res);

/* The action's name as rspamd writes it ("no action", "soft reject", ...);
   "unknown" for SL_RSPAMD_ACTION_UNKNOWN and other values. */
const char *sl_rspamd_action_name(sl_rspamd_action a);

/*
 * The verdict an action means: REJECT for reject, TEMPFAIL for soft reject
 * and greylist, CHANGE for add header and rewrite subject (and for no
 * action when the result carries milter header operations), ACCEPT for no
 * action, TEMPFAIL for an unknown action (the filter failed).
 */
sl_verdict sl_rspamd_verdict(const sl_rspamd_result *res);

#ifdef __cplusplus
}
#endif
#endif
