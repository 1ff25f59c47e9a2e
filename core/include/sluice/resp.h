/*
 * sluice/resp.h: RESP2, the Redis protocol, as a bounded encoder for
 * commands and a bounded parser for replies (redis.io "RESP protocol
 * spec", version 2).  Pure: no allocation, no I/O; the driver's Redis
 * client (drivers/sd_redis.c) owns the buffers.
 *
 * Commands are arrays of bulk strings.  Replies are any RESP2 value:
 * simple string, error, integer, bulk string (or nil), array (or nil),
 * arrays nested up to SL_RESP_DEPTH_MAX.  The parser consumes a whole reply
 * whatever its shape, so a pipelined stream stays in step, and reports its
 * top-level value and up to SL_RESP_ELEMS_MAX scalar elements of a
 * top-level array (nested arrays are skipped, marked SL_RESP_ARRAY).
 *
 * Bounds (a reply outside them is SL_ERR_MALFORMED, and the caller drops
 * the connection): a header line (type byte to CRLF) of at most
 * SL_RESP_LINE_MAX bytes, bulk strings of at most SL_RESP_BULK_MAX bytes,
 * arrays of at most SL_RESP_ARRAY_MAX elements.  Integers are strict: an
 * optional '-' then 1 to 19 digits that fit int64_t, no '+', no blanks.
 */
#ifndef SLUICE_RESP_H
#define SLUICE_RESP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_RESP_LINE_MAX 512
#define SL_RESP_BULK_MAX 65536
#define SL_RESP_ARRAY_MAX 1024
#define SL_RESP_DEPTH_MAX 4
#define SL_RESP_ELEMS_MAX 8

typedef enum sl_resp_type {
  SL_RESP_SIMPLE = '+',
  SL_RESP_ERROR = '-',
  SL_RESP_INT = ':',
  SL_RESP_BULK = '$',
  SL_RESP_ARRAY = '*',
  SL_RESP_NIL = 'n' /* "$-1" or "*-1" */
} sl_resp_type;

typedef struct sl_resp_val {
  uint8_t type;     /* sl_resp_type */
  int64_t i;        /* SL_RESP_INT: the value; SL_RESP_ARRAY: its count */
  const uint8_t *s; /* SIMPLE, ERROR, BULK: the bytes, inside the parsed
                       buffer (valid while it is) */
  uint32_t len;
} sl_resp_val;

typedef struct sl_resp_reply {
  sl_resp_val top;
  /* top is an array: its first nelem elements (nelem <= count) */
  sl_resp_val elem[SL_RESP_ELEMS_MAX];
  uint32_t nelem;
} sl_resp_reply;

typedef struct sl_resp_arg {
  const void *p;
  size_t len;
} sl_resp_arg;

/*
 * Writes the command args[0..n) as a RESP2 array of bulk strings to out.
 * Returns its length, or SL_ERR_NOBUF (nothing usable was written) when
 * cap is too small, or SL_ERR_INVALID_ARGUMENT (n == 0, a NULL pointer with
 * len > 0, more than SL_RESP_ARRAY_MAX args).
 */
long sl_resp_encode(uint8_t *out, size_t cap, const sl_resp_arg *args,
                    size_t n);

/*
 * Parses one reply at the start of buf.  Returns its length (> 0) and
 * fills *r; SL_ERR_INCOMPLETE when buf is a valid prefix of a reply (read
 * more; a reply is never longer than the bounds allow, so a buffer of
 * SL_RESP_BULK_MAX + 2 * SL_RESP_LINE_MAX bytes holds any reply whose
 * arrays hold short elements); SL_ERR_MALFORMED otherwise;
 * SL_ERR_INVALID_ARGUMENT for NULL r, or NULL buf with len > 0.  Never
 * reads past len.  The work is linear in len.
 */
long sl_resp_parse(const uint8_t *buf, size_t len, sl_resp_reply *r);

#ifdef __cplusplus
}
#endif
#endif
