/*
 * sd_pool.c: free lists linked through the first bytes of each buffer.
 */
#include "sd_pool.h"

#include <stdlib.h>
#include <string.h>

void sd_pool_init(sd_pool *p, uint32_t small_size, uint32_t large_size,
                  size_t cap, uint32_t keep_free) {
  memset(p, 0, sizeof *p);
  /* A free buffer stores the next pointer in its first bytes. */
  if (small_size < sizeof(void *))
    small_size = sizeof(void *);
  if (large_size < small_size)
    large_size = small_size;
  p->small_size = small_size;
  p->large_size = large_size;
  p->cap = cap;
  p->keep_free = keep_free;
}

void sd_pool_set_budget(sd_pool *p, sd_pool_budget *b) { p->budget = b; }

static void charge(sd_pool *p, size_t n) {
  p->allocated += n;
  if (p->budget)
    p->budget->allocated += n;
}

static void uncharge(sd_pool *p, size_t n) {
  p->allocated -= n;
  if (p->budget)
    p->budget->allocated -= n;
}

static void free_list(void **head) {
  while (*head != NULL) {
    void *next;
    memcpy(&next, *head, sizeof next);
    free(*head);
    *head = next;
  }
}

void sd_pool_destroy(sd_pool *p) {
  free_list(&p->free_small);
  free_list(&p->free_large);
  uncharge(p, (size_t)p->nfree_small * p->small_size +
                  (size_t)p->nfree_large * p->large_size);
  p->nfree_small = p->nfree_large = 0;
}

uint8_t *sd_pool_get(sd_pool *p, uint32_t min, uint32_t *cap) {
  int small = min <= p->small_size;
  uint32_t size = small ? p->small_size : p->large_size;
  void **head = small ? &p->free_small : &p->free_large;
  uint32_t *nfree = small ? &p->nfree_small : &p->nfree_large;
  p->gets++;
  if (min > p->large_size) {
    p->misses++;
    return NULL;
  }
  uint8_t *b;
  if (*head != NULL) {
    b = *head;
    void *next;
    memcpy(&next, b, sizeof next);
    *head = next;
    (*nfree)--;
  } else {
    size_t limit = p->budget ? p->budget->cap : p->cap;
    size_t used = p->budget ? p->budget->allocated : p->allocated;
    if (limit != 0 && used + size > limit) {
      /* At the cap, a free buffer of the other class is still memory that
         could serve: release one so the next request can be met. */
      void **oh = small ? &p->free_large : &p->free_small;
      uint32_t *on = small ? &p->nfree_large : &p->nfree_small;
      uint32_t osize = small ? p->large_size : p->small_size;
      if (*oh != NULL && used - osize + size <= limit) {
        void *next;
        memcpy(&next, *oh, sizeof next);
        free(*oh);
        *oh = next;
        (*on)--;
        uncharge(p, osize);
      } else {
        p->misses++;
        return NULL;
      }
    }
    b = malloc(size);
    if (b == NULL) {
      p->misses++;
      return NULL;
    }
    charge(p, size);
  }
  p->lent += size;
  *cap = size;
  return b;
}

void sd_pool_put(sd_pool *p, uint8_t *buf, uint32_t cap) {
  if (buf == NULL)
    return;
  int small = cap == p->small_size;
  void **head = small ? &p->free_small : &p->free_large;
  uint32_t *nfree = small ? &p->nfree_small : &p->nfree_large;
  p->lent -= cap;
  if (*nfree >= p->keep_free) {
    free(buf);
    uncharge(p, cap);
    return;
  }
  memcpy(buf, head, sizeof(void *));
  *head = buf;
  (*nfree)++;
}

static uint8_t *pool_get(void *ctx, uint32_t min, uint32_t *cap) {
  return sd_pool_get(ctx, min, cap);
}

static void pool_put(void *ctx, uint8_t *buf, uint32_t cap) {
  sd_pool_put(ctx, buf, cap);
}

void sd_pool_as_sl_pool(sd_pool *p, sl_pool *out) {
  out->get = pool_get;
  out->put = pool_put;
  out->ctx = p;
}
