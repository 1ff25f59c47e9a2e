/*
 * sd_state.c: the shared-memory state backend (see sd_state.h).
 *
 * One mapping: a header with the lock, the sl_ratelim table, then a small
 * key-value table for the screening pass cache and greylisting.  The
 * mapping is MAP_SHARED | MAP_ANONYMOUS, so it is inherited at fork at the
 * same address in every worker and the tables' pointers stay valid
 * everywhere.  The lock is a robust process-shared mutex: a worker killed
 * while holding it (the critical sections are a few dozen instructions)
 * does not wedge the others; the next locker marks it consistent.
 *
 * The key-value table stores a keyed 64-bit hash of each key (SipHash-2-4
 * with a key drawn at creation), not the key: clients choose senders and
 * recipients, and a key they cannot compute means they cannot aim two
 * triplets at one slot.  Times there are wall-clock seconds (greylisting
 * spans days; the Redis backend uses the server's clock the same way).
 */
#include "sd_state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

/* Slots probed per key: bounded work whatever the load. */
#define KV_PROBE 32

typedef struct kv_slot {
  uint64_t key;     /* 0: never used */
  uint64_t expires; /* wall seconds; at or before now: free */
  uint64_t first;   /* greylisting: first seen */
  uint32_t count;   /* client pass count; triplet: 1 once passed */
  uint32_t pad_;
} kv_slot;

typedef struct shm_hdr {
  pthread_mutex_t lock;
  uint32_t entries;    /* fixed for the mapping's life */
  uint32_t epoch;      /* bumped by each recount; tickets are epochs */
  uint32_t kv_entries; /* fixed too */
  uint32_t pad_;
  uint64_t sipkey[2];
  size_t kv_off; /* from the header's start */
  /* The limits in force, for every process: a reload reconfigures once
     (the master), the workers' Redis scripts read them here. */
  sl_ratelim_config limits;
  _Alignas(16) unsigned char table[];
} shm_hdr;

struct sd_state_shm {
  sd_state base;
  shm_hdr *h;
  size_t maplen;
  sl_ratelim *rl;
  kv_slot *kv;
};

static void lock(sd_state_shm *s) {
  int rc = pthread_mutex_lock(&s->h->lock);
  if (rc == EOWNERDEAD)
    pthread_mutex_consistent(&s->h->lock);
}

static void unlock(sd_state_shm *s) { pthread_mutex_unlock(&s->h->lock); }

uint64_t sd_state_wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = ROTL(v1, 13);                                                         \
    v1 ^= v0;                                                                  \
    v0 = ROTL(v0, 32);                                                         \
    v2 += v3;                                                                  \
    v3 = ROTL(v3, 16);                                                         \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = ROTL(v3, 21);                                                         \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = ROTL(v1, 17);                                                         \
    v1 ^= v2;                                                                  \
    v2 = ROTL(v2, 32);                                                         \
  } while (0)

static uint64_t siphash24(const uint64_t k[2], const uint8_t *in, size_t len) {
  uint64_t v0 = 0x736f6d6570736575ull ^ k[0], v1 = 0x646f72616e646f6dull ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ull ^ k[0], v3 = 0x7465646279746573ull ^ k[1];
  uint64_t b = (uint64_t)len << 56;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m;
    memcpy(&m, in + i, 8); /* little-endian hosts; any fixed order will do */
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  for (size_t j = 0; i + j < len; j++)
    b |= (uint64_t)in[i + j] << (8 * j);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t kv_hash(sd_state_shm *s, char kind, const void *key,
                        size_t len) {
  uint8_t buf[SD_STATE_KEY_MAX + 1];
  if (len > SD_STATE_KEY_MAX)
    len = SD_STATE_KEY_MAX;
  buf[0] = (uint8_t)kind;
  memcpy(buf + 1, key, len);
  uint64_t h = siphash24(s->h->sipkey, buf, len + 1);
  return h ? h : 1;
}

/* The live slot of key, or NULL. */
static kv_slot *kv_find(sd_state_shm *s, uint64_t key, uint64_t now) {
  uint32_t n = s->h->kv_entries;
  for (uint32_t i = 0; i < KV_PROBE && i < n; i++) {
    kv_slot *e = &s->kv[(key + i) % n];
    if (e->key == 0)
      return NULL;
    if (e->key == key && e->expires > now)
      return e;
  }
  return NULL;
}

/* A slot for a new key: a free one in its window, else the one that
   expires first (the table is full there: forget the oldest). */
static kv_slot *kv_insert(sd_state_shm *s, uint64_t key, uint64_t now) {
  uint32_t n = s->h->kv_entries;
  kv_slot *victim = NULL;
  for (uint32_t i = 0; i < KV_PROBE && i < n; i++) {
    kv_slot *e = &s->kv[(key + i) % n];
    if (e->key == 0 || e->expires <= now || e->key == key) {
      victim = e;
      break;
    }
    if (victim == NULL || e->expires < victim->expires)
      victim = e;
  }
  if (victim == NULL) /* kv_entries >= 16: never; keeps the bound visible */
    victim = &s->kv[key % n];
  memset(victim, 0, sizeof *victim);
  victim->key = key;
  return victim;
}

static int shm_admit(sd_state *st, const sl_addr *a, uint64_t now,
                     sd_state_ticket *t, sd_admit_cb cb, void *ctx,
                     sd_admit_result *res, sd_state_req *req) {
  (void)cb;
  (void)ctx;
  *req = 0;
  sd_state_shm_admit((sd_state_shm *)st, a, now, t, res);
  return SD_STATE_DONE;
}

void sd_state_shm_admit(sd_state_shm *s, const sl_addr *a, uint64_t now,
                        sd_state_ticket *t, sd_admit_result *res) {
  uint64_t wall = sd_state_wall_s();
  uint64_t pk = kv_hash(s, 'p', a->bytes, sizeof a->bytes);
  lock(s);
  res->admission = sl_ratelim_admit(s->rl, a, now);
  t->epoch = s->h->epoch;
  res->passed_before = kv_find(s, pk, wall) != NULL;
  unlock(s);
  res->shared = 0;
  t->counted_shared = 0;
  t->lease = 0;
}

static void shm_release(sd_state *st, const sl_addr *a,
                        const sd_state_ticket *t) {
  sd_state_shm_release((sd_state_shm *)st, a, t);
}

void sd_state_shm_release(sd_state_shm *s, const sl_addr *a,
                          const sd_state_ticket *t) {
  lock(s);
  if (t->epoch == s->h->epoch)
    sl_ratelim_release(s->rl, a);
  unlock(s);
}

static void shm_recount(sd_state *st) {
  sd_state_shm_recount((sd_state_shm *)st);
}

void sd_state_shm_recount(sd_state_shm *s) {
  lock(s);
  sl_ratelim_clear_live(s->rl);
  s->h->epoch++;
  unlock(s);
}

static void shm_hold(sd_state *st, const sl_addr *a, uint64_t now,
                     sd_state_ticket *t) {
  sd_state_shm_hold((sd_state_shm *)st, a, now, t);
}

void sd_state_shm_hold(sd_state_shm *s, const sl_addr *a, uint64_t now,
                       sd_state_ticket *t) {
  lock(s);
  if (t->epoch != s->h->epoch) {
    sl_ratelim_hold(s->rl, a, now);
    t->epoch = s->h->epoch;
  }
  unlock(s);
}

static uint32_t shm_live(sd_state *st, const sl_addr *a) {
  return sd_state_shm_live((sd_state_shm *)st, a);
}

uint32_t sd_state_shm_live(sd_state_shm *s, const sl_addr *a) {
  lock(s);
  uint32_t n = sl_ratelim_live(s->rl, a);
  unlock(s);
  return n;
}

static int shm_configure(sd_state *st, const sl_ratelim_config *c, char *msg,
                         size_t msglen) {
  return sd_state_shm_configure((sd_state_shm *)st, c, msg, msglen);
}

int sd_state_shm_configure(sd_state_shm *s, const sl_ratelim_config *c,
                           char *msg, size_t msglen) {
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
  if (rc >= 0)
    s->h->limits = nc;
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

void sd_state_shm_limits(sd_state_shm *s, sl_ratelim_config *out) {
  lock(s);
  *out = s->h->limits;
  unlock(s);
}

static void shm_screen_pass(sd_state *st, const sl_addr *a, uint32_t ttl_s) {
  sd_state_shm_screen_pass((sd_state_shm *)st, a, ttl_s);
}

void sd_state_shm_screen_pass(sd_state_shm *s, const sl_addr *a,
                              uint32_t ttl_s) {
  uint64_t wall = sd_state_wall_s();
  uint64_t pk = kv_hash(s, 'p', a->bytes, sizeof a->bytes);
  lock(s);
  kv_slot *e = kv_find(s, pk, wall);
  if (e == NULL)
    e = kv_insert(s, pk, wall);
  e->expires = wall + ttl_s;
  unlock(s);
}

void sd_state_grey_decide(const sd_grey_params *p, uint64_t now, int found,
                          uint64_t *first, uint32_t *passed,
                          uint32_t *client_passes, uint64_t *expires,
                          sd_grey_result *res) {
  res->wait_s = 0;
  res->shared = 0;
  if (!found) {
    *first = now;
    *passed = 0;
    *expires = now + p->delay_s + p->retry_window_s;
    res->verdict = SD_GREY_NEW;
    res->wait_s = p->delay_s;
  } else if (*passed) {
    *expires = now + p->max_age_s;
    res->verdict = SD_GREY_PASS;
  } else if (now - *first < p->delay_s) {
    res->verdict = SD_GREY_EARLY;
    res->wait_s = (uint32_t)(p->delay_s - (now - *first));
  } else {
    *passed = 1;
    *expires = now + p->max_age_s;
    (*client_passes)++;
    res->verdict = SD_GREY_PASS;
  }
  res->passes = *client_passes;
}

static int shm_grey_check(sd_state *st, const char *client_key,
                          const char *triplet_key, const sd_grey_params *p,
                          sd_grey_cb cb, void *ctx, sd_grey_result *res,
                          sd_state_req *req) {
  (void)cb;
  (void)ctx;
  *req = 0;
  sd_state_shm_grey_check((sd_state_shm *)st, client_key, triplet_key, p, res);
  return SD_STATE_DONE;
}

void sd_state_shm_grey_check(sd_state_shm *s, const char *client_key,
                             const char *triplet_key, const sd_grey_params *p,
                             sd_grey_result *res) {
  uint64_t now = sd_state_wall_s();
  uint64_t ck = kv_hash(s, 'c', client_key, strlen(client_key));
  uint64_t tk = kv_hash(s, 'g', triplet_key, strlen(triplet_key));
  lock(s);
  kv_slot *c = kv_find(s, ck, now);
  uint32_t passes = c ? c->count : 0;
  if (p->auto_allow && passes >= p->auto_allow) {
    c->expires = now + p->max_age_s;
    unlock(s);
    res->verdict = SD_GREY_ALLOWED;
    res->wait_s = 0;
    res->passes = passes;
    res->shared = 0;
    return;
  }
  kv_slot *t = kv_find(s, tk, now);
  int found = t != NULL;
  uint64_t first = found ? t->first : 0, expires = found ? t->expires : 0;
  uint32_t passed = found ? t->count : 0, before = passes;
  sd_state_grey_decide(p, now, found, &first, &passed, &passes, &expires, res);
  if (t == NULL)
    t = kv_insert(s, tk, now);
  t->first = first;
  t->count = passed;
  t->expires = expires;
  if (passes != before) {
    /* kv_insert may have recycled the client's slot for the triplet */
    c = kv_find(s, ck, now);
    if (c == NULL)
      c = kv_insert(s, ck, now);
    c->count = passes;
    c->expires = now + p->max_age_s;
  }
  unlock(s);
}

static void shm_cancel(sd_state *st, sd_state_req req) {
  (void)st;
  (void)req;
}

static int shm_attach(sd_state *st, struct sd_loop *loop, uint32_t worker,
                      uint64_t seed) {
  (void)st;
  (void)loop;
  (void)worker;
  (void)seed;
  return 0;
}

static void shm_free(sd_state *st) { sd_state_shm_free((sd_state_shm *)st); }

void sd_state_shm_free(sd_state_shm *s) {
  /* Only the creator destroys the mutex; children just unmap. */
  munmap(s->h, s->maplen);
  free(s);
}

static const sd_state_ops shm_ops = {
    "shm",          shm_admit,   shm_release, shm_live,
    shm_configure,  shm_recount, shm_hold,    shm_screen_pass,
    shm_grey_check, shm_cancel,  shm_attach,  shm_free};

sd_state_shm *sd_state_shm_create(const sl_ratelim_config *c,
                                  const sd_state_config *sc, char *err,
                                  size_t errlen) {
  size_t tl = sl_ratelim_size(c);
  if (tl == 0) {
    snprintf(err, errlen,
             "the per-client limits table cannot be set up (ratelim_entries?)");
    return NULL;
  }
  uint32_t kvn = sc && sc->kv_entries ? sc->kv_entries : 65536;
  sd_state_shm *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  size_t kv_off = (sizeof(shm_hdr) + tl + 15) & ~(size_t)15;
  s->maplen = kv_off + (size_t)kvn * sizeof(kv_slot);
  void *p = mmap(NULL, s->maplen, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "shared state tables (%zu bytes): %s", s->maplen,
             strerror(errno));
    free(s);
    return NULL;
  }
  s->h = p;
  s->h->entries = c->entries;
  s->h->limits = *c;
  s->h->kv_entries = kvn;
  s->h->kv_off = kv_off;
  s->kv = (kv_slot *)((unsigned char *)p + kv_off);
  if (getrandom(s->h->sipkey, sizeof s->h->sipkey, 0) !=
      (ssize_t)sizeof s->h->sipkey) {
    snprintf(err, errlen, "no random key for the shared state: %s",
             strerror(errno));
    munmap(p, s->maplen);
    free(s);
    return NULL;
  }
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
  return s;
}

sd_state *sd_state_shm_new(const sl_ratelim_config *c,
                           const sd_state_config *sc, char *err,
                           size_t errlen) {
  sd_state_shm *s = sd_state_shm_create(c, sc, err, errlen);
  return s ? &s->base : NULL;
}
