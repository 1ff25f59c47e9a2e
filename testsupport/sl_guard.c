/* sl_guard.c: guard-page buffers for parser tests; see sl_guard.h. */
#include "sl_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

uint8_t *sl_guard_area(size_t len) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  len = (len + pg - 1) / pg * pg;
  uint8_t *m = mmap(NULL, len + pg, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || mprotect(m + len, pg, PROT_NONE) != 0) {
    perror("sl_guard_area: mmap/mprotect");
    exit(2);
  }
  return m + len;
}

const uint8_t *sl_guard_copy(uint8_t *end, const void *p, size_t n) {
  uint8_t *g = end - n;
  if (n)
    memcpy(g, p, n);
  return g;
}
