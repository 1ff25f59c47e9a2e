/*
 * sp_transcript.h: the session transcript format (see ../TRANSCRIPT.md),
 * a writer into an sp_buf and a bounded, zero-copy reader.
 *
 * The reader never reads outside the buffer it is given, checks every
 * number, and reports errors as "offset N (line L): what".  Record data
 * points into the caller's buffer, which must outlive the records.
 */
#ifndef SP_TRANSCRIPT_H
#define SP_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "sp_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_TRANSCRIPT_MAGIC "sluice-transcript 1"

typedef enum sp_side { SP_SIDE_CLIENT = 0, SP_SIDE_SERVER = 1 } sp_side;

typedef enum sp_rec_type {
  SP_REC_CLIENT = 'C', /* client bytes */
  SP_REC_SERVER = 'S', /* server bytes */
  SP_REC_GAP = 'G',    /* bytes of one side missing from the capture */
  SP_REC_END = 'E'     /* a side or the session ended */
} sp_rec_type;

typedef enum sp_end_reason {
  SP_END_CLIENT_FIN,
  SP_END_CLIENT_RST,
  SP_END_SERVER_FIN,
  SP_END_SERVER_RST,
  SP_END_CAPTURE, /* the capture holds no more of the session */
  SP_END_TLS      /* TLS starts here; nothing after it is readable */
} sp_end_reason;

/* "client-fin", ... as written in E records; NULL for a bad value. */
const char *sp_end_reason_str(sp_end_reason r);

typedef struct sp_record {
  sp_rec_type type;
  uint64_t t_us;       /* microseconds since the header's start */
  sp_side side;        /* SP_REC_GAP only */
  uint64_t len;        /* C/S: byte count; G: missing bytes */
  const uint8_t *data; /* C/S only */
  sp_end_reason end;   /* E only */
} sp_record;

#define SP_SOURCE_MAX 256
typedef struct sp_transcript_header {
  char source[SP_SOURCE_MAX]; /* capture file name, no directory */
  uint64_t session;           /* 1-based number within the capture */
  char client_ip[SP_ADDRSTRLEN];
  uint16_t client_port;
  char server_ip[SP_ADDRSTRLEN];
  uint16_t server_port;
  int64_t start_sec;   /* absolute capture time of the first packet */
  uint32_t start_usec; /* 0..999999 */
} sp_transcript_header;

/* Writers.  They return 0 or SP_ERR_NOMEM; the header's strings must hold
 * no whitespace or control characters (source is sanitised: such bytes are
 * written as '_'). */
int sp_transcript_put_header(sp_buf *b, const sp_transcript_header *h);
int sp_transcript_put_record(sp_buf *b, const sp_record *r);

typedef struct sp_transcript_reader {
  const uint8_t *data;
  size_t len, pos;
  uint64_t line; /* 1-based line of pos, counting raw data lines */
  uint64_t last_t;
  int closed;   /* the terminal E record has been read */
  int ended[2]; /* client / server FIN seen */
  sp_transcript_header hdr;
  char err[200];
} sp_transcript_reader;

/*
 * Parses the header of data[0..len).  Returns 0, or SP_ERR_MALFORMED with
 * r->err set.  Unknown header keys are skipped (forward compatibility).
 */
int sp_transcript_reader_init(sp_transcript_reader *r, const uint8_t *data,
                              size_t len);

/*
 * Reads the next record.  Returns 1 with *rec filled, 0 at the end of a
 * complete transcript, or SP_ERR_MALFORMED with r->err set: bad syntax,
 * length past the end, time going backwards, a record after the terminal E,
 * or input ending before the terminal E (a truncated file).
 */
int sp_transcript_next(sp_transcript_reader *r, sp_record *rec);

/* Reads a whole file of at most max_bytes into *data (free() it).
 * SP_ERR_IO or SP_ERR_NOMEM/SP_ERR_MALFORMED (too big), err set. */
int sp_transcript_load(const char *path, size_t max_bytes, uint8_t **data,
                       size_t *len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
