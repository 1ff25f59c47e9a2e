/*
 * sp_util.h: small shared pieces of the sluice_pcap library: error codes,
 * a growable byte buffer, TCP endpoints.
 *
 * Functions of the library return 0 on success and a negative SP_ERR_* code
 * on failure; sp_strerror() names it.  Nothing here exits or prints.
 */
#ifndef SP_UTIL_H
#define SP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, message) */
#define SP_ERR_MAP(XX)                                                         \
  XX(NOMEM, -1, "out of memory")                                               \
  XX(IO, -2, "I/O error")                                                      \
  XX(MALFORMED, -3, "malformed input")                                         \
  XX(UNSUPPORTED, -4, "unsupported input")                                     \
  XX(CALLBACK, -5, "a callback reported failure")                              \
  XX(INVALID_ARGUMENT, -6, "invalid argument")

typedef enum sp_err {
  SP_OK = 0,
#define SP_ERR_ENUM_(name, value, msg) SP_ERR_##name = value,
  SP_ERR_MAP(SP_ERR_ENUM_)
#undef SP_ERR_ENUM_
} sp_err;

/* A short English description of err; never NULL. */
const char *sp_strerror(int err);

/*
 * A growable byte buffer.  Zero-initialise it ({0}) before use; capacity
 * doubles, so appending n bytes costs amortised O(n).
 */
typedef struct sp_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} sp_buf;

/* Makes room for at least `extra` more bytes.  SP_ERR_NOMEM on failure, the
 * buffer is then unchanged. */
int sp_buf_reserve(sp_buf *b, size_t extra);
int sp_buf_append(sp_buf *b, const void *p, size_t n);
/* printf-style append; SP_ERR_NOMEM or SP_ERR_INVALID_ARGUMENT (bad format). */
int sp_buf_printf(sp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sp_buf_free(sp_buf *b);

/* A TCP endpoint.  family is 4 or 6; IPv4 uses the first 4 bytes of ip. */
typedef struct sp_endpoint {
  uint8_t family;
  uint8_t ip[16];
  uint16_t port;
} sp_endpoint;

/* Writes the textual address (no port) into out; out must hold at least
 * SP_ADDRSTRLEN bytes. */
#define SP_ADDRSTRLEN 48
void sp_endpoint_addr_str(const sp_endpoint *e, char *out, size_t outlen);
int sp_endpoint_equal(const sp_endpoint *a, const sp_endpoint *b);

#ifdef __cplusplus
}
#endif
#endif
