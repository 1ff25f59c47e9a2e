/*
 * sl_bufpool.c: two fixed size classes over caller memory, see bufpool.h.
 *
 * A free buffer stores the pointer to the next free buffer in its first
 * bytes; memcpy keeps that independent of the region's alignment.
 */
#include <string.h>

#include "sluice/bufpool.h"
#include "sluice/errors.h"

static int size_ok(uint32_t s) { return s >= 16 && s % 8 == 0; }

size_t sl_bufpool_need(uint32_t small_size, uint32_t nsmall,
                       uint32_t large_size, uint32_t nlarge) {
  /* 64-bit products of 32-bit factors cannot overflow; only the sum and a
     32-bit size_t can.  SIZE_MAX means "no region is big enough". */
  uint64_t s = (uint64_t)small_size * nsmall;
  uint64_t l = (uint64_t)large_size * nlarge;
  if (s > UINT64_MAX - l || s + l > (uint64_t)SIZE_MAX)
    return SIZE_MAX;
  return (size_t)(s + l);
}

static void push(uint8_t **head, uint8_t *buf) {
  memcpy(buf, head, sizeof *head);
  *head = buf;
}

static uint8_t *pop(uint8_t **head) {
  uint8_t *buf = *head;
  memcpy(head, buf, sizeof *head);
  return buf;
}

int sl_bufpool_init(sl_bufpool *bp, void *mem, size_t memlen,
                    uint32_t small_size, uint32_t nsmall, uint32_t large_size,
                    uint32_t nlarge) {
  if (!bp || !size_ok(small_size) || !size_ok(large_size) ||
      small_size > large_size)
    return SL_ERR_INVALID_ARGUMENT;
  size_t need = sl_bufpool_need(small_size, nsmall, large_size, nlarge);
  if (need == SIZE_MAX || memlen < need || (need > 0 && !mem))
    return SL_ERR_NOBUF;
  memset(bp, 0, sizeof *bp);
  bp->small_size = small_size;
  bp->large_size = large_size;
  uint8_t *p = mem;
  if (need == 0) /* mem may be NULL: no pointer arithmetic on it */
    return 0;
  /* Pushed back to front so get() hands out buffers in address order,
     which keeps test runs and replays easy to read. */
  for (uint32_t i = nsmall; i > 0; i--)
    push(&bp->free_small, p + (size_t)(i - 1) * small_size);
  p += (size_t)small_size * nsmall;
  for (uint32_t i = nlarge; i > 0; i--)
    push(&bp->free_large, p + (size_t)(i - 1) * large_size);
  bp->small_free = bp->small_total = nsmall;
  bp->large_free = bp->large_total = nlarge;
  return 0;
}

static uint8_t *bufpool_get(void *ctx, uint32_t min, uint32_t *cap) {
  sl_bufpool *bp = ctx;
  bp->gets++;
  /* No fallback from an exhausted small class to the large one: the large
     buffers are the ones DATA and multi-line replies need, and letting line
     buffers drain them would turn a flood of idle sessions into stalled
     transfers. */
  if (min <= bp->small_size && bp->small_free > 0) {
    bp->small_free--;
    *cap = bp->small_size;
    return pop(&bp->free_small);
  }
  if (min > bp->small_size && min <= bp->large_size && bp->large_free > 0) {
    bp->large_free--;
    *cap = bp->large_size;
    return pop(&bp->free_large);
  }
  bp->misses++;
  *cap = 0;
  return NULL;
}

static void bufpool_put(void *ctx, uint8_t *buf, uint32_t cap) {
  sl_bufpool *bp = ctx;
  if (!buf)
    return;
  /* With equal sizes the classes are interchangeable: refill whichever has
     buffers out.  A capacity that matches neither class, or a class that is
     already full, means a foreign or doubly returned buffer; dropping it is
     safer than letting it corrupt the list. */
  if (cap == bp->small_size && bp->small_free < bp->small_total) {
    push(&bp->free_small, buf);
    bp->small_free++;
  } else if (cap == bp->large_size && bp->large_free < bp->large_total) {
    push(&bp->free_large, buf);
    bp->large_free++;
  }
}

void sl_bufpool_as_pool(sl_bufpool *bp, sl_pool *pool) {
  pool->get = bufpool_get;
  pool->put = bufpool_put;
  pool->ctx = bp;
}
