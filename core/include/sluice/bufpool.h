/*
 * sluice/bufpool.h: the buffer pool a relay borrows from (sl_pool), and a
 * ready-made one over caller memory (sl_bufpool).
 *
 * Two size classes (small and large) carved from one region the caller
 * supplies, each kept on a free list; no allocation.  Drivers that want a
 * pool that grows with demand may write their own sl_pool instead; tests,
 * the fuzzer and the replay driver use this one.
 */
#ifndef SLUICE_BUFPOOL_H
#define SLUICE_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The pool interface (owned by the driver).  get() lends a buffer of at
 * least min bytes and writes its capacity to *cap, or returns NULL (the
 * relay then stops taking input until a later call).  The relay only asks
 * for min <= limits.buffer_size.  put() takes it back with the capacity
 * get() reported.  Both are called only from inside relay calls, never
 * concurrently for one pool unless the driver allows it.
 */
typedef struct sl_pool {
  uint8_t *(*get)(void *ctx, uint32_t min, uint32_t *cap);
  void (*put)(void *ctx, uint8_t *buf, uint32_t cap);
  void *ctx;
} sl_pool;

typedef struct sl_bufpool {
  uint8_t *free_small, *free_large; /* free lists, linked through the
                                       first bytes of each buffer */
  uint32_t small_size, large_size;
  uint32_t small_free, large_free; /* buffers on the free lists */
  uint32_t small_total, large_total;
  uint64_t gets, misses; /* for statistics and tests */
} sl_bufpool;

/*
 * Carves nsmall buffers of small_size and nlarge of large_size bytes from
 * mem (sizes multiples of 8, >= 16).  Returns 0 or SL_ERR_NOBUF if memlen is
 * below sl_bufpool_need(), or SL_ERR_INVALID_ARGUMENT if a size breaks those
 * rules or small_size > large_size.  sl_bufpool_need() gives SIZE_MAX when
 * the total does not fit a size_t.
 */
int sl_bufpool_init(sl_bufpool *bp, void *mem, size_t memlen,
                    uint32_t small_size, uint32_t nsmall, uint32_t large_size,
                    uint32_t nlarge);
size_t sl_bufpool_need(uint32_t small_size, uint32_t nsmall,
                       uint32_t large_size, uint32_t nlarge);

/* Fills pool with get/put functions over bp.  A request for more than
   small_size gets a large buffer; none left: NULL.  There is no fallback
   from small to large, so line buffers cannot starve DATA of large ones.
   put() files a buffer by its cap; a cap matching neither class, or a
   return to a class with none lent out, is ignored. */
void sl_bufpool_as_pool(sl_bufpool *bp, sl_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
