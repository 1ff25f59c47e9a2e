/* symbols_canary.c: a library that does what the core must never do, so the
   ctest core_symbols_canary proves tools/check-core-symbols.sh catches it. */
#include <stdlib.h>
#include <time.h>

void *sl_canary_alloc(size_t n);
void *sl_canary_alloc(size_t n) { return time(NULL) > 0 ? malloc(n) : NULL; }
