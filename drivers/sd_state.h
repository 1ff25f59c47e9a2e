/*
 * sd_state.h: state that must hold beyond one worker process, one
 * configuration generation or (with Redis) one machine, behind one small
 * interface (a "state backend").
 *
 * What it holds:
 * - the per-client admission counts (sluice/ratelim.h): live sessions and
 *   connection rates per address prefix;
 * - the screening verdict cache: a client that passed screening is
 *   remembered for a TTL ("passed before", postscreen's PASS OLD), so a
 *   new session of it, on any worker or instance, is not screened again;
 * - greylisting triplets and the clients' pass counts (automatic
 *   allowlisting).  The policy (what makes a key, when to ask) is the
 *   caller's; the backend stores and decides by the timers it is given.
 *
 * Backends:
 * - "shm" (sd_state_shm_new): one machine.  One MAP_SHARED anonymous
 *   mapping made by the first process before it forks the workers, guarded
 *   by a process-shared robust mutex; the master keeps it across reloads.
 *   Every operation answers at once.
 * - "redis" (sd_state_redis_new, sd_redis.c): several instances.  It keeps
 *   a shm table as its local part and asks Redis over one pipelined,
 *   non-blocking connection per worker (attached to the worker's loop by
 *   sd_state_attach after fork).  An answer that does not come within
 *   redis_timeout, or a connection that is down, gives the local verdict
 *   (the shm part's); such a failure is logged and counted, and the
 *   connection is re-made with backoff.  Counts in Redis are leases that
 *   expire (sorted sets scored by expiry, changed by Lua scripts), so an
 *   instance that dies leaks nothing for longer than the lease.
 *
 * Calling convention for the operations that may wait (admit,
 * grey_check): they return SD_STATE_DONE with the result written to *res
 * (cb is never called), or SD_STATE_PENDING: cb(ctx, res) is then called
 * exactly once later from the worker's loop, never from inside the call,
 * unless sd_state_cancel(st, req) is called first (the session ended).
 * The result passed to cb is only valid during the call.
 */
#ifndef SD_STATE_H
#define SD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/ratelim.h"

typedef struct sd_state sd_state;
struct sd_loop;

enum { SD_STATE_DONE = 0, SD_STATE_PENDING = 1 };

/* A pending operation, for cancel; 0 is none. */
typedef uint32_t sd_state_req;

/* Which counts a session is in, for release and hold.  epoch: the local
   table's recount generation at admission; lease: nonzero when a shared
   (Redis) concurrency lease was taken for it, the lease's member id. */
typedef struct sd_state_ticket {
  uint32_t epoch;
  uint32_t counted_shared;
  uint64_t lease;
} sd_state_ticket;

typedef struct sd_admit_result {
  sl_admission admission;
  uint8_t passed_before; /* screening passed within screen_pass_ttl */
  uint8_t shared;        /* 1: the shared counts decided; 0: local only
                            (shm backend, or Redis down / over budget) */
} sd_admit_result;
typedef void (*sd_admit_cb)(void *ctx, const sd_admit_result *res);

/* Greylisting timers (postgrey's defaults: 300 s, 2 days, 35 days, 5). */
typedef struct sd_grey_params {
  uint32_t delay_s;        /* a triplet seen first less than this ago: wait */
  uint32_t retry_window_s; /* a retry must come within delay + this */
  uint32_t max_age_s;      /* a passed triplet (and a client's pass count)
                              is forgotten this long after its last use */
  uint32_t auto_allow;     /* passes after which a client skips the check;
                              0: never */
} sd_grey_params;

typedef enum sd_grey_verdict {
  SD_GREY_NEW = 0, /* first seen now (or its retry window had passed):
                      temporary failure */
  SD_GREY_EARLY,   /* retried before delay_s: temporary failure */
  SD_GREY_PASS,    /* retried in time, or passed before: accept */
  SD_GREY_ALLOWED, /* the client has auto_allow passes: accept */
  SD_GREY_UNKNOWN  /* no answer (Redis down or over budget, table full):
                      the caller's fallback decides */
} sd_grey_verdict;

typedef struct sd_grey_result {
  sd_grey_verdict verdict;
  uint32_t wait_s; /* SD_GREY_NEW/EARLY: seconds until a retry passes */
  uint32_t passes; /* the client's pass count after this check */
  uint8_t shared;  /* as in sd_admit_result */
} sd_grey_result;
typedef void (*sd_grey_cb)(void *ctx, const sd_grey_result *res);

/* What a backend needs beyond the limits (config keys state_backend,
   state_entries, redis, redis_timeout, redis_key_prefix, redis_lease and
   the redis_username, redis_password* and redis_tls* keys). */
typedef struct sd_state_config {
  uint32_t kv_entries;      /* shm slots for pass cache and greylisting */
  const char *redis;        /* "inet:HOST:PORT" or "unix:PATH" */
  uint64_t redis_timeout;   /* ns: the lookup budget */
  const char *redis_prefix; /* prepended to every key */
  uint32_t lease_s;         /* a shared live count expires after this
                               unless its session renews it */
  /* Redis across machines (README "Redis across machines: AUTH and TLS"):
     AUTH [username] password on every connection, the password given or
     read from password_file (at most one of the two); TLS when tls, the
     certificate verified against tls_ca (NULL: the system store) and
     tls_name (NULL: the host of redis), with a client certificate when
     tls_cert and tls_key are set. */
  const char *username, *password, *password_file;
  int tls;
  const char *tls_ca, *tls_cert, *tls_key, *tls_name;
} sd_state_config;

typedef struct sd_state_ops {
  const char *name;
  /* A new session from a (sl_ratelim_admit semantics: ACCEPT and TARPIT
     count as live and need one release, TEMPFAIL does not).  Fills *t.
     cb NULL: the local verdict alone, always SD_STATE_DONE (for a caller
     that cannot wait). */
  int (*admit)(sd_state *st, const sl_addr *a, uint64_t now, sd_state_ticket *t,
               sd_admit_cb cb, void *ctx, sd_admit_result *res,
               sd_state_req *req);
  /* The session ended.  A local count from before a recount is not in the
     table any more (unless hold renewed it): nothing is released there. */
  void (*release)(sd_state *st, const sl_addr *a, const sd_state_ticket *t);
  /* Live sessions of a's prefix in the local table. */
  uint32_t (*live)(sd_state *st, const sl_addr *a);
  /* New limits at a reload.  Returns 0, or 1 with a note in msg (a change
     that is applied only in part, or that forgets counts), or -1 with an
     error in msg. */
  int (*configure)(sd_state *st, const sl_ratelim_config *c, char *msg,
                   size_t msglen);
  /* A process holding live sessions died without releasing them: forget
     every local live count (the master calls this) ... */
  void (*recount)(sd_state *st);
  /* ... and each surviving process holds its sessions again: counts a's
     session if its ticket predates the recount, and renews the ticket.
     Redis: also renews the session's shared lease (called periodically). */
  void (*hold)(sd_state *st, const sl_addr *a, uint64_t now,
               sd_state_ticket *t);
  /* The client at a passed screening: remember it for ttl_s seconds. */
  void (*screen_pass)(sd_state *st, const sl_addr *a, uint32_t ttl_s);
  /* Check-and-record one greylisting triplet.  client_key names the
     client part alone (its pass count); triplet_key the whole triplet.
     Keys are at most SD_STATE_KEY_MAX bytes of any content. */
  int (*grey_check)(sd_state *st, const char *client_key,
                    const char *triplet_key, const sd_grey_params *p,
                    sd_grey_cb cb, void *ctx, sd_grey_result *res,
                    sd_state_req *req);
  /* A pending operation's callback must not run: its session is gone. */
  void (*cancel)(sd_state *st, sd_state_req req);
  /* In each worker after fork: the loop the backend may use. 0 or -1.
     loop NULL: detach (closes the worker's connection) before the loop
     is freed. */
  int (*attach)(sd_state *st, struct sd_loop *loop, uint32_t worker,
                uint64_t seed);
  void (*free)(sd_state *st);
} sd_state_ops;

#define SD_STATE_KEY_MAX 512

struct sd_state {
  const sd_state_ops *ops;
};

/* The shared-memory backend, sized from c (admission entries) and sc
   (kv_entries); call before fork. */
sd_state *sd_state_shm_new(const sl_ratelim_config *c,
                           const sd_state_config *sc, char *err, size_t errlen);
/* The Redis backend (with a shm part made here, so also before fork).
   Nothing connects until sd_state_attach. */
sd_state *sd_state_redis_new(const sl_ratelim_config *c,
                             const sd_state_config *sc, char *err,
                             size_t errlen);

/* --check-config for the Redis backend: reads the password file and loads
   the TLS files as sd_state_redis_new would, without connecting.  0, or -1
   with the reason in err. */
int sd_state_redis_check(const sd_state_config *sc, char *err, size_t errlen);

static inline int sd_state_admit(sd_state *st, const sl_addr *a, uint64_t now,
                                 sd_state_ticket *t, sd_admit_cb cb, void *ctx,
                                 sd_admit_result *res, sd_state_req *req) {
  *req = 0;
  if (st == NULL) {
    res->admission = SL_ADMIT_ACCEPT;
    res->passed_before = 0;
    res->shared = 0;
    return SD_STATE_DONE;
  }
  return st->ops->admit(st, a, now, t, cb, ctx, res, req);
}
static inline void sd_state_release(sd_state *st, const sl_addr *a,
                                    const sd_state_ticket *t) {
  if (st)
    st->ops->release(st, a, t);
}
static inline void sd_state_recount(sd_state *st) {
  if (st)
    st->ops->recount(st);
}
static inline void sd_state_hold(sd_state *st, const sl_addr *a, uint64_t now,
                                 sd_state_ticket *t) {
  if (st)
    st->ops->hold(st, a, now, t);
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
static inline void sd_state_screen_pass(sd_state *st, const sl_addr *a,
                                        uint32_t ttl_s) {
  if (st && ttl_s)
    st->ops->screen_pass(st, a, ttl_s);
}
static inline int sd_state_grey_check(sd_state *st, const char *client_key,
                                      const char *triplet_key,
                                      const sd_grey_params *p, sd_grey_cb cb,
                                      void *ctx, sd_grey_result *res,
                                      sd_state_req *req) {
  *req = 0;
  if (st == NULL) {
    res->verdict = SD_GREY_UNKNOWN;
    res->wait_s = 0;
    res->passes = 0;
    res->shared = 0;
    return SD_STATE_DONE;
  }
  return st->ops->grey_check(st, client_key, triplet_key, p, cb, ctx, res, req);
}
static inline void sd_state_cancel(sd_state *st, sd_state_req req) {
  if (st && req)
    st->ops->cancel(st, req);
}
static inline int sd_state_attach(sd_state *st, struct sd_loop *loop,
                                  uint32_t worker, uint64_t seed) {
  return st ? st->ops->attach(st, loop, worker, seed) : 0;
}
static inline void sd_state_free(sd_state *st) {
  if (st)
    st->ops->free(st);
}

/* ---- for backends: the shm part on its own (sd_state.c), which the Redis
   backend keeps as its local part and asks first ---- */
typedef struct sd_state_shm sd_state_shm;
sd_state_shm *sd_state_shm_create(const sl_ratelim_config *c,
                                  const sd_state_config *sc, char *err,
                                  size_t errlen);
void sd_state_shm_admit(sd_state_shm *s, const sl_addr *a, uint64_t now,
                        sd_state_ticket *t, sd_admit_result *res);
void sd_state_shm_release(sd_state_shm *s, const sl_addr *a,
                          const sd_state_ticket *t);
void sd_state_shm_recount(sd_state_shm *s);
void sd_state_shm_hold(sd_state_shm *s, const sl_addr *a, uint64_t now,
                       sd_state_ticket *t);
uint32_t sd_state_shm_live(sd_state_shm *s, const sl_addr *a);
int sd_state_shm_configure(sd_state_shm *s, const sl_ratelim_config *c,
                           char *msg, size_t msglen);
void sd_state_shm_screen_pass(sd_state_shm *s, const sl_addr *a,
                              uint32_t ttl_s);
void sd_state_shm_grey_check(sd_state_shm *s, const char *client_key,
                             const char *triplet_key, const sd_grey_params *p,
                             sd_grey_result *res);
void sd_state_shm_free(sd_state_shm *s);
/* The limits in force (the last configure's, from any process). */
void sd_state_shm_limits(sd_state_shm *s, sl_ratelim_config *out);
/* Wall-clock seconds (the kv table's times). */
uint64_t sd_state_wall_s(void);
/* The greylisting decision both backends make (the Redis script mirrors
   it): given whether the triplet was found and its fields, updates them
   and the client's pass count, and fills *res. */
void sd_state_grey_decide(const sd_grey_params *p, uint64_t now, int found,
                          uint64_t *first, uint32_t *passed,
                          uint32_t *client_passes, uint64_t *expires,
                          sd_grey_result *res);

#endif
