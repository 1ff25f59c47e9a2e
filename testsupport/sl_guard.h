/*
 * sl_guard.h: buffers that end right at an unmapped page, so that a parser
 * reading one byte past its input crashes at once (picohttpparser's
 * test.c does the same).  Test-only code.
 */
#ifndef SL_GUARD_H
#define SL_GUARD_H

#include <stddef.h>
#include <stdint.h>

/* Maps len writable bytes followed by a PROT_NONE page and returns the end
   of the writable part (the guard's first byte).  Exits with status 2 if
   the mapping fails. */
uint8_t *sl_guard_area(size_t len);

/* Copies p[0..n) so that it ends at end (from sl_guard_area); returns the
   copy. */
const uint8_t *sl_guard_copy(uint8_t *end, const void *p, size_t n);

#endif
