/*
 * sd_pool.h: the buffer pool lent to relays.  Two size classes (small and
 * large); buffers are malloc'ed on demand up to a memory cap (get returns
 * NULL at the cap, and the relay then simply stops taking input until a
 * buffer is free), and at most keep_free buffers per class are kept on the
 * free lists so a burst does not pin memory forever.
 */
#ifndef SD_POOL_H
#define SD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/relay.h"

/* A cap shared by several pools: a worker's generations (a reload builds a
   new pool while the old one still lends to the old sessions), so the
   worker stays under pool_memory across reloads. */
typedef struct sd_pool_budget {
  size_t cap;       /* 0: no cap */
  size_t allocated; /* bytes allocated by every pool charging it */
} sd_pool_budget;

typedef struct sd_pool {
  uint32_t small_size, large_size;
  size_t cap;         /* bytes of buffers allocated at most (0: no cap) */
  size_t allocated;   /* bytes of buffers allocated now (lent + free) */
  size_t lent;        /* bytes lent out now */
  uint32_t keep_free; /* per class */
  void *free_small, *free_large;
  uint32_t nfree_small, nfree_large;
  uint64_t gets, misses;  /* misses: NULL returned at the cap */
  sd_pool_budget *budget; /* when set, its cap applies instead of cap */
} sd_pool;

void sd_pool_init(sd_pool *p, uint32_t small_size, uint32_t large_size,
                  size_t cap, uint32_t keep_free);
/* Frees every buffer on the free lists (lent ones must be back first). */
void sd_pool_destroy(sd_pool *p);
/* Charges p's allocations to b (set before the first get). */
void sd_pool_set_budget(sd_pool *p, sd_pool_budget *b);
uint8_t *sd_pool_get(sd_pool *p, uint32_t min, uint32_t *cap);
void sd_pool_put(sd_pool *p, uint8_t *buf, uint32_t cap);
void sd_pool_as_sl_pool(sd_pool *p, sl_pool *out);

#endif
