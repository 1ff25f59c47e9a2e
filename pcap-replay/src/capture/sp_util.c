#include "sp_util.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sp_strerror(int err) {
  switch (err) {
  case SP_OK:
    return "success";
#define SP_ERR_STR_(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    SP_ERR_MAP(SP_ERR_STR_)
#undef SP_ERR_STR_
  default:
    return "unknown error";
  }
}

int sp_buf_reserve(sp_buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return SP_OK;
  if (extra > SIZE_MAX / 2 - b->len)
    return SP_ERR_NOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p)
    return SP_ERR_NOMEM;
  b->data = p;
  b->cap = cap;
  return SP_OK;
}

int sp_buf_append(sp_buf *b, const void *p, size_t n) {
  if (n == 0)
    return SP_OK;
  int rc = sp_buf_reserve(b, n);
  if (rc)
    return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return SP_OK;
}

int sp_buf_printf(sp_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  /* Header and record lines are short: try in place first, so the common
   * case formats once. */
  int rc = sp_buf_reserve(b, 128);
  if (rc) {
    va_end(ap);
    return rc;
  }
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0) {
    va_end(ap2);
    return SP_ERR_INVALID_ARGUMENT;
  }
  if ((size_t)n >= b->cap - b->len) {
    rc = sp_buf_reserve(b, (size_t)n + 1);
    if (rc) {
      va_end(ap2);
      return rc;
    }
    vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, ap2);
  }
  va_end(ap2);
  b->len += (size_t)n;
  return SP_OK;
}

void sp_buf_free(sp_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void sp_endpoint_addr_str(const sp_endpoint *e, char *out, size_t outlen) {
  if (!inet_ntop(e->family == 6 ? AF_INET6 : AF_INET, e->ip, out,
                 (socklen_t)outlen))
    snprintf(out, outlen, "?");
}

int sp_endpoint_equal(const sp_endpoint *a, const sp_endpoint *b) {
  return a->family == b->family && a->port == b->port &&
         memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4) == 0;
}
