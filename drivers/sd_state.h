/*
 * sd_state.h: state that must hold per machine, not per worker process nor
 * per configuration generation, behind one small interface (a "state
 * backend").
 *
 * Today it holds the per-client admission table (sluice/ratelim.h): live
 * sessions and connection rates per address prefix.  With N workers
 * (SO_REUSEPORT spreads one client's connections over them) a table per
 * worker would let a client have about N times the limit, and a table per
 * generation would forget every count at SIGHUP.  The "shm" backend keeps
 * one table in a MAP_SHARED anonymous mapping made by the first process
 * before it forks the workers, guarded by a process-shared robust mutex;
 * the master keeps it across reloads.  Another backend (Redis, for limits
 * across machines) fits behind the same operations.
 */
#ifndef SD_STATE_H
#define SD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/ratelim.h"

typedef struct sd_state sd_state;

typedef struct sd_state_ops {
  const char *name;
  /* A new session from a (sl_ratelim_admit semantics: ACCEPT and TARPIT
     count as live and need one release).  *ticket records which count the
     session is in, for release and hold. */
  sl_admission (*admit)(sd_state *st, const sl_addr *a, uint64_t now,
                        uint32_t *ticket);
  /* The session ended.  A ticket from before a recount is not in the
     counts any more (unless hold renewed it): nothing is released. */
  void (*release)(sd_state *st, const sl_addr *a, uint32_t ticket);
  uint32_t (*live)(sd_state *st, const sl_addr *a);
  /* New limits at a reload.  Returns 0, or 1 with a note in msg (a change
     that is applied only in part, or that forgets counts), or -1 with an
     error in msg. */
  int (*configure)(sd_state *st, const sl_ratelim_config *c, char *msg,
                   size_t msglen);
  /* A process holding live sessions died without releasing them: forget
     every live count (the master calls this) ... */
  void (*recount)(sd_state *st);
  /* ... and each surviving process holds its sessions again: counts a's
     session if its ticket predates the recount, and renews the ticket. */
  void (*hold)(sd_state *st, const sl_addr *a, uint64_t now, uint32_t *ticket);
  void (*free)(sd_state *st);
} sd_state_ops;

struct sd_state {
  const sd_state_ops *ops;
};

/* The shared-memory backend, sized from c (entries); call before fork. */
sd_state *sd_state_shm_new(const sl_ratelim_config *c, char *err,
                           size_t errlen);

static inline sl_admission sd_state_admit(sd_state *st, const sl_addr *a,
                                          uint64_t now, uint32_t *ticket) {
  return st ? st->ops->admit(st, a, now, ticket) : SL_ADMIT_ACCEPT;
}
static inline void sd_state_release(sd_state *st, const sl_addr *a,
                                    uint32_t ticket) {
  if (st)
    st->ops->release(st, a, ticket);
}
static inline void sd_state_recount(sd_state *st) {
  if (st)
    st->ops->recount(st);
}
static inline void sd_state_hold(sd_state *st, const sl_addr *a, uint64_t now,
                                 uint32_t *ticket) {
  if (st)
    st->ops->hold(st, a, now, ticket);
}
static inline uint32_t sd_state_live(sd_state *st, const sl_addr *a) {
  return st ? st->ops->live(st, a) : 0;
}
static inline int sd_state_configure(sd_state *st, const sl_ratelim_config *c,
                                     char *msg, size_t msglen) {
  if (msglen)
    msg[0] = 0;
  return st ? st->ops->configure(st, c, msg, msglen) : 0;
}
static inline void sd_state_free(sd_state *st) {
  if (st)
    st->ops->free(st);
}

#endif
