/*
 * sl_ratelim.c: per-prefix admission, see ratelim.h.
 *
 * The table is open addressing with triangular probing (home, +1, +3, +6,
 * ...) bounded to SL_RL_PROBE slots, so a lookup costs at most that many
 * comparisons whatever the load or the addresses.  Linear probing was
 * tried first: its clusters outgrew the bound at 75% load and refused
 * clients of a table that still had room; triangular steps break them up
 * (and visit every slot of a power-of-two table).  Slots are never emptied once
 * used: an idle entry is recycled in place, which keeps every probe chain
 * intact without tombstones.
 *
 * Rates are counted with a sliding window: the count of the current window
 * plus the previous window's count weighted by the part of it that still
 * lies within one window of now.  That removes the fixed window's blind spot
 * (a burst of twice the limit straddling a window boundary) at the cost of
 * two counters.  Every attempt counts, refused or not, as Postfix's anvil
 * counts connection attempts: a client that hammers past the limit keeps
 * itself limited.
 */
#include <limits.h>
#include <string.h>

#include "sl_bytes.h"
#include "sluice/errors.h"
#include "sluice/ratelim.h"

#define SL_RL_PROBE 64u

typedef struct sl_rl_entry {
  uint8_t key[16]; /* the address with host bits cleared */
  uint8_t family;  /* 0: slot never used */
  uint8_t pad_[3];
  uint32_t live;
  uint32_t count, prev; /* attempts in this and the previous window */
  uint32_t pad2_;
  sl_tstamp window_start;
  sl_tstamp last_seen; /* for recycling the least recently seen */
} sl_rl_entry;

struct sl_ratelim {
  sl_ratelim_config cfg;
  sl_rl_entry slots[];
};

/* A fixed key: the core is deterministic, so the same inputs must land in
   the same slots on every run and replay.  The probe bound keeps the cost
   of crafted collisions constant. */
#define SL_RL_K0 0x736c756963652121ULL
#define SL_RL_K1 0x9e3779b97f4a7c15ULL

static uint64_t fmix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

static uint64_t key_hash(const uint8_t key[16], uint8_t family) {
  uint64_t w0, w1;
  memcpy(&w0, key, 8);
  memcpy(&w1, key + 8, 8);
  uint64_t h = fmix64(SL_RL_K0 ^ family ^ w0);
  return fmix64(h ^ SL_RL_K1 ^ w1);
}

static int config_ok(const sl_ratelim_config *c) {
  return c && c->entries > 0 && c->ipv4_prefix <= 32 && c->ipv6_prefix <= 128 &&
         (c->rate_max == 0 || c->rate_window > 0) &&
         c->over_concurrency <= SL_ADMIT_TEMPFAIL &&
         c->over_rate <= SL_ADMIT_TEMPFAIL;
}

void sl_ratelim_config_default(sl_ratelim_config *c) {
  memset(c, 0, sizeof *c);
  c->entries = 65536;
  c->concurrency_max = 50;
  c->rate_max = 0;
  c->rate_window = 60 * SL_SEC;
  c->ipv4_prefix = 32;
  c->ipv6_prefix = 64;
  c->over_concurrency = SL_ADMIT_TEMPFAIL;
  c->over_rate = SL_ADMIT_TEMPFAIL;
}

size_t sl_ratelim_size(const sl_ratelim_config *c) {
  if (!config_ok(c))
    return 0;
#if SIZE_MAX < UINT64_MAX
  if ((uint64_t)c->entries * sizeof(sl_rl_entry) + sizeof(sl_ratelim) >
      SIZE_MAX)
    return 0;
#endif
  return sizeof(sl_ratelim) + (size_t)c->entries * sizeof(sl_rl_entry);
}

int sl_ratelim_init(sl_ratelim **out, void *mem, size_t memlen,
                    const sl_ratelim_config *c) {
  if (!out || !mem || ((uintptr_t)mem & 7u) != 0)
    return SL_ERR_INVALID_ARGUMENT;
  size_t need = sl_ratelim_size(c);
  if (need == 0)
    return SL_ERR_INVALID_ARGUMENT;
  if (memlen < need)
    return SL_ERR_NOBUF;
  memset(mem, 0, need);
  sl_ratelim *rl = mem;
  rl->cfg = *c;
  *out = rl;
  return 0;
}

int sl_ratelim_reconfigure(sl_ratelim *rl, const sl_ratelim_config *c) {
  if (!rl || !config_ok(c) || c->entries != rl->cfg.entries)
    return SL_ERR_INVALID_ARGUMENT;
  /* Other prefix lengths make other keys: the old entries would never be
     found again, so they are forgotten rather than left to go stale. */
  int reset = c->ipv4_prefix != rl->cfg.ipv4_prefix ||
              c->ipv6_prefix != rl->cfg.ipv6_prefix;
  if (reset)
    memset(rl->slots, 0, (size_t)rl->cfg.entries * sizeof(sl_rl_entry));
  rl->cfg = *c;
  return reset;
}

/* The prefix of a as a key; 0 if a is not one the table tracks.  An
   IPv4-mapped IPv6 address is its IPv4 address: behind a dual-stack socket
   every IPv4 client would otherwise share the /64 ::ffff:0:0. */
static int make_key(const sl_ratelim *rl, const sl_addr *a, uint8_t key[16],
                    uint8_t *family) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *src;
  unsigned bits, nbytes;
  if (a->family == SL_AF_INET) {
    src = a->bytes;
  } else if (a->family == SL_AF_INET6) {
    src = sl_same_bytes(a->bytes, mapped, sizeof mapped) ? a->bytes + 12 : NULL;
  } else {
    return 0;
  }
  memset(key, 0, 16);
  if (a->family == SL_AF_INET || src) {
    *family = SL_AF_INET;
    bits = rl->cfg.ipv4_prefix;
    nbytes = 4;
  } else {
    *family = SL_AF_INET6;
    src = a->bytes;
    bits = rl->cfg.ipv6_prefix;
    nbytes = 16;
  }
  for (unsigned i = 0; i < nbytes && bits > 0; i++) {
    unsigned take = bits < 8 ? bits : 8;
    key[i] = (uint8_t)(src[i] & (0xffu << (8 - take)));
    bits -= take;
  }
  return 1;
}

/* Finds the entry for key.  With create, a missing key takes the first
   never-used slot of its window or else recycles the least recently seen
   idle one; NULL means the window is all live entries. */
static sl_rl_entry *find(sl_ratelim *rl, const uint8_t key[16], uint8_t family,
                         int create, sl_tstamp now) {
  uint32_t n = rl->cfg.entries;
  uint32_t probe = n < SL_RL_PROBE ? n : SL_RL_PROBE;
  /* Multiply-shift maps the hash onto any table size, power of two or
     not, without a division. */
  uint64_t i = ((key_hash(key, family) >> 32) * n) >> 32;
  sl_rl_entry *victim = NULL;
  for (uint32_t d = 0; d < probe; d++, i = (i + d) % n) {
    sl_rl_entry *e = &rl->slots[i];
    if (e->family == 0) {
      if (!create)
        return NULL;
      victim = e;
      break;
    }
    if (e->family == family && sl_same_bytes(e->key, key, 16))
      return e;
    if (create && e->live == 0 && (!victim || e->last_seen < victim->last_seen))
      victim = e;
  }
  if (!victim)
    return NULL;
  memset(victim, 0, sizeof *victim);
  memcpy(victim->key, key, 16);
  victim->family = family;
  victim->window_start = now;
  victim->last_seen = now;
  return victim;
}

/* Moves e's windows forward to the one holding now. */
static void roll(sl_rl_entry *e, sl_duration w, sl_tstamp now) {
  if (now < e->window_start)
    return; /* a driver's clock stepped back: stay in the current window */
  sl_duration elapsed = now - e->window_start;
  if (elapsed < w)
    return;
  e->prev = elapsed / 2 < w ? e->count : 0; /* elapsed < 2w, no overflow */
  e->count = 0;
  e->window_start += elapsed / w * w;
}

/* Attempts within the last window: this window's count plus the previous
   window's times the fraction (w - into) / w of it that the sliding window
   still covers.  Both terms of the fraction are shifted below 2^32 so the
   product with a 32-bit count fits 64 bits; windows under 4.29 s are exact,
   longer ones lose at most one part in 2^31. */
static uint64_t rate_estimate(const sl_rl_entry *e, sl_duration w,
                              sl_tstamp now) {
  sl_duration into = now > e->window_start ? now - e->window_start : 0;
  uint64_t r = w - into, d = w;
  while (d > UINT32_MAX) {
    d >>= 1;
    r >>= 1;
  }
  return e->count + (uint64_t)e->prev * r / d;
}

static sl_admission worse(sl_admission a, sl_admission b) {
  return a > b ? a : b;
}

sl_admission sl_ratelim_admit(sl_ratelim *rl, const sl_addr *a, sl_tstamp now) {
  uint8_t key[16], family;
  if (!rl || !a)
    return SL_ADMIT_TEMPFAIL;
  /* Without an address (a UNIX socket, PROXY UNKNOWN) there is nothing to
     group by; such clients are local by construction. */
  if (!make_key(rl, a, key, &family))
    return SL_ADMIT_ACCEPT;
  sl_rl_entry *e = find(rl, key, family, 1, now);
  if (!e)
    return rl->cfg.over_concurrency;
  e->last_seen = now > e->last_seen ? now : e->last_seen;
  sl_admission v = SL_ADMIT_ACCEPT;
  if (rl->cfg.concurrency_max && e->live >= rl->cfg.concurrency_max)
    v = worse(v, rl->cfg.over_concurrency);
  if (rl->cfg.rate_max) {
    roll(e, rl->cfg.rate_window, now);
    if (rate_estimate(e, rl->cfg.rate_window, now) >= rl->cfg.rate_max)
      v = worse(v, rl->cfg.over_rate);
    if (e->count < UINT32_MAX)
      e->count++;
  }
  if (v != SL_ADMIT_TEMPFAIL && e->live < UINT32_MAX)
    e->live++;
  return v;
}

void sl_ratelim_release(sl_ratelim *rl, const sl_addr *a) {
  uint8_t key[16], family;
  if (!rl || !a || !make_key(rl, a, key, &family))
    return;
  sl_rl_entry *e = find(rl, key, family, 0, 0);
  /* An unmatched release is a driver bug; ignoring it keeps the counts
     from wrapping to 4 billion live sessions. */
  if (e && e->live > 0)
    e->live--;
}

uint32_t sl_ratelim_live(const sl_ratelim *rl, const sl_addr *a) {
  uint8_t key[16], family;
  if (!rl || !a || !make_key(rl, a, key, &family))
    return 0;
  /* find() only writes when creating. */
  sl_rl_entry *e = find((sl_ratelim *)(uintptr_t)rl, key, family, 0, 0);
  return e ? e->live : 0;
}

void sl_ratelim_clear_live(sl_ratelim *rl) {
  if (!rl)
    return;
  for (uint32_t i = 0; i < rl->cfg.entries; i++)
    rl->slots[i].live = 0;
}

void sl_ratelim_hold(sl_ratelim *rl, const sl_addr *a, sl_tstamp now) {
  uint8_t key[16], family;
  if (!rl || !a || !make_key(rl, a, key, &family))
    return;
  /* No slot left: the session goes uncounted, as admit would have left
     it with a TARPIT over_concurrency verdict. */
  sl_rl_entry *e = find(rl, key, family, 1, now);
  if (e && e->live < UINT32_MAX)
    e->live++;
}
