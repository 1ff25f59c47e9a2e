/*
 * sl_bytes.h: equality of two byte strings, shared by the address, PROXY
 * header and rate-limit code.
 */
#ifndef SL_BYTES_H
#define SL_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 1 if the n bytes at a and b are equal.  memcmp() is one of the few
   symbols the core may reference (tools/check-core-symbols.sh), as is the
   bcmp() clang turns this comparison into. */
static inline int sl_same_bytes(const uint8_t *a, const uint8_t *b, size_t n) {
  return memcmp(a, b, n) == 0;
}

#endif
