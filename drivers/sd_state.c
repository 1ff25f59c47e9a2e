/*
 * sd_state.c: the shared-memory state backend (see sd_state.h).
 *
 * One mapping: a header with the lock, then the sl_ratelim table.  The
 * mapping is MAP_SHARED | MAP_ANONYMOUS, so it is inherited at fork at the
 * same address in every worker and the table's pointer stays valid
 * everywhere.  The lock is a robust process-shared mutex: a worker killed
 * while holding it (the critical sections are a few dozen instructions)
 * does not wedge the others; the next locker marks it consistent.
 */
#include "sd_state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct shm_hdr {
  pthread_mutex_t lock;
  uint32_t entries; /* fixed for the mapping's life */
  uint32_t epoch;   /* bumped by each recount; tickets are epochs */
  _Alignas(16) unsigned char table[];
} shm_hdr;

typedef struct shm_state {
  sd_state base;
  shm_hdr *h;
  size_t maplen;
  sl_ratelim *rl;
} shm_state;

static void lock(shm_state *s) {
  int rc = pthread_mutex_lock(&s->h->lock);
  if (rc == EOWNERDEAD)
    pthread_mutex_consistent(&s->h->lock);
}

static void unlock(shm_state *s) { pthread_mutex_unlock(&s->h->lock); }

static sl_admission shm_admit(sd_state *st, const sl_addr *a, uint64_t now,
                              uint32_t *ticket) {
  shm_state *s = (shm_state *)st;
  lock(s);
  sl_admission v = sl_ratelim_admit(s->rl, a, now);
  *ticket = s->h->epoch;
  unlock(s);
  return v;
}

static void shm_release(sd_state *st, const sl_addr *a, uint32_t ticket) {
  shm_state *s = (shm_state *)st;
  lock(s);
  if (ticket == s->h->epoch)
    sl_ratelim_release(s->rl, a);
  unlock(s);
}

static void shm_recount(sd_state *st) {
  shm_state *s = (shm_state *)st;
  lock(s);
  sl_ratelim_clear_live(s->rl);
  s->h->epoch++;
  unlock(s);
}

static void shm_hold(sd_state *st, const sl_addr *a, uint64_t now,
                     uint32_t *ticket) {
  shm_state *s = (shm_state *)st;
  lock(s);
  if (*ticket != s->h->epoch) {
    sl_ratelim_hold(s->rl, a, now);
    *ticket = s->h->epoch;
  }
  unlock(s);
}

static uint32_t shm_live(sd_state *st, const sl_addr *a) {
  shm_state *s = (shm_state *)st;
  lock(s);
  uint32_t n = sl_ratelim_live(s->rl, a);
  unlock(s);
  return n;
}

static int shm_configure(sd_state *st, const sl_ratelim_config *c, char *msg,
                         size_t msglen) {
  shm_state *s = (shm_state *)st;
  sl_ratelim_config nc = *c;
  int note = 0;
  size_t o = 0;
  if (nc.entries != s->h->entries) {
    /* The mapping is shared with running workers and cannot grow under
       them; a new size needs a restart. */
    o += (size_t)snprintf(
        msg, msglen,
        "ratelim_entries %u takes effect at the next restart; the "
        "shared table keeps %u entries",
        nc.entries, s->h->entries);
    nc.entries = s->h->entries;
    note = 1;
  }
  lock(s);
  int rc = sl_ratelim_reconfigure(s->rl, &nc);
  unlock(s);
  if (rc < 0) {
    snprintf(msg, msglen, "the per-client limits cannot be applied");
    return -1;
  }
  if (rc == 1) {
    if (o < msglen)
      snprintf(msg + o, msglen - o,
               "%sipv4_prefix/ipv6_prefix changed: per-client counts "
               "start afresh",
               o ? "; " : "");
    note = 1;
  }
  return note;
}

static void shm_free(sd_state *st) {
  shm_state *s = (shm_state *)st;
  /* Only the creator destroys the mutex; children just unmap. */
  munmap(s->h, s->maplen);
  free(s);
}

static const sd_state_ops shm_ops = {"shm",    shm_admit,     shm_release,
                                     shm_live, shm_configure, shm_recount,
                                     shm_hold, shm_free};

sd_state *sd_state_shm_new(const sl_ratelim_config *c, char *err,
                           size_t errlen) {
  size_t tl = sl_ratelim_size(c);
  if (tl == 0) {
    snprintf(err, errlen,
             "the per-client limits table cannot be set up (ratelim_entries?)");
    return NULL;
  }
  shm_state *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->maplen = sizeof(shm_hdr) + tl;
  void *p = mmap(NULL, s->maplen, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "per-client limits table (%zu bytes): %s", s->maplen,
             strerror(errno));
    free(s);
    return NULL;
  }
  s->h = p;
  s->h->entries = c->entries;
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&s->h->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  if (rc != 0 || sl_ratelim_init(&s->rl, s->h->table, tl, c) != 0) {
    snprintf(err, errlen, "the per-client limits table cannot be set up");
    munmap(p, s->maplen);
    free(s);
    return NULL;
  }
  s->base.ops = &shm_ops;
  return &s->base;
}
