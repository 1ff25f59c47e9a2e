/*
 * sluice/ratelim.h: admission, the verdict a relay starts with
 * (sl_admission), and the per-client-address table that gives it from
 * concurrency and rate, pure and driver-owned.
 *
 * One table serves every relay of a process; the driver owns its memory and
 * passes now.  A verdict from sl_ratelim_admit() becomes
 * sl_conn_info.admission.  Addresses are grouped by prefix (IPv4 /32 and IPv6
 * /64 by default) so one host cannot dodge the limits by hopping addresses.
 * The table is a fixed-size open-addressing hash; when it is full the least
 * recently seen idle entry is recycled, and entries with live connections are
 * never evicted (so concurrency counts stay exact).
 *
 * Details of the implementation the caller may rely on:
 * - IPv4-mapped IPv6 addresses count as their IPv4 address; SL_AF_UNSPEC
 *   addresses are not tracked (admit gives ACCEPT, release does nothing).
 * - Lookups probe at most 64 slots, so a lookup is O(1) whatever the load;
 *   size entries about 1.25x the distinct prefixes expected at once (at
 *   90% load a few admissions already find no slot).  No slot for a new
 *   prefix gives the over_concurrency verdict; if that is TARPIT, the
 *   connection is not tracked and its release is a no-op.
 * - The rate is a sliding window: attempts in the current window plus the
 *   previous window's, weighted by how much of it lies within rate_window
 *   of now.  Windows start at the prefix's first attempt.  Every attempt
 *   counts, refused or not (as Postfix's anvil counts them).  Recycling an
 *   idle entry forgets its rate history.
 * - The hash key is fixed so runs and replays stay deterministic.
 */
#ifndef SLUICE_RATELIM_H
#define SLUICE_RATELIM_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/errors.h"
#include "sluice/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a connection is let in (sl_conn_info.admission).
   XX(NAME, value, "name"): SL_ADMIT_NAME, sl_admission_name() gives "name". */
#define SL_ADMISSION_MAP(XX)                                                   \
  XX(ACCEPT, 0, "accept")     /* normal screening */                           \
  XX(TARPIT, 1, "tarpit")     /* suspect tarpit profile from the start */      \
  XX(TEMPFAIL, 2, "tempfail") /* "421 4.7.0" greeting, then close */

typedef enum sl_admission {
#define SL_ADMISSION_ENUM_(name, value, text) SL_ADMIT_##name = value,
  SL_ADMISSION_MAP(SL_ADMISSION_ENUM_)
#undef SL_ADMISSION_ENUM_
} sl_admission;

/* "accept", "tarpit", "tempfail"; "unknown" for any other value. */
const char *sl_admission_name(sl_admission a);

typedef struct sl_ratelim sl_ratelim;

typedef struct sl_ratelim_config {
  uint32_t entries;         /* table slots, e.g. 65536 */
  uint32_t concurrency_max; /* live sessions per prefix; 0 = no limit (50) */
  uint32_t rate_max;        /* new sessions per prefix per window; 0 = none */
  sl_duration rate_window;  /* 60 s */
  uint8_t ipv4_prefix;      /* 32 */
  uint8_t ipv6_prefix;      /* 64 */
  /* What exceeding a limit gives: SL_ADMIT_TEMPFAIL (421) or
     SL_ADMIT_TARPIT. */
  sl_admission over_concurrency;
  sl_admission over_rate;
} sl_ratelim_config;

void sl_ratelim_config_default(sl_ratelim_config *c);

/* Bytes of memory for a table with c->entries slots. */
size_t sl_ratelim_size(const sl_ratelim_config *c);

/* Creates the table in mem (memlen >= sl_ratelim_size(c), 8-aligned).
   c is copied.  Returns 0 or SL_ERR_INVALID_ARGUMENT (NULL or misaligned
   mem, entries 0, prefixes above 32/128, rate_max without rate_window, a
   verdict that is no sl_admission) / SL_ERR_NOBUF.  sl_ratelim_size()
   returns 0 for such an invalid c. */
int sl_ratelim_init(sl_ratelim **out, void *mem, size_t memlen,
                    const sl_ratelim_config *c);

/* Applies new limits to a live table (a configuration reload) without
   losing its counts.  c->entries must equal the table's.  Returns 0, 1 when
   the prefix lengths changed and the table was emptied (its keys no longer
   match; releases of earlier connections are then ignored), or
   SL_ERR_INVALID_ARGUMENT. */
int sl_ratelim_reconfigure(sl_ratelim *rl, const sl_ratelim_config *c);

/*
 * A new connection from a at now.  Returns the verdict.  When it is
 * SL_ADMIT_ACCEPT or SL_ADMIT_TARPIT the connection counts as live and the
 * caller MUST call sl_ratelim_release() once when it ends; a TEMPFAIL
 * verdict is not counted as live.
 */
sl_admission sl_ratelim_admit(sl_ratelim *rl, const sl_addr *a, sl_tstamp now);

/* The connection admitted earlier from a has ended.  A release without a
   live connection is ignored. */
void sl_ratelim_release(sl_ratelim *rl, const sl_addr *a);

/* Rebuilding the live counts (a driver process that held some of them
   died): clear_live() forgets every live count, keeping rate history;
   hold() then counts one live session of a again, without counting an
   attempt or judging it. */
void sl_ratelim_clear_live(sl_ratelim *rl);
void sl_ratelim_hold(sl_ratelim *rl, const sl_addr *a, sl_tstamp now);

/* Live sessions currently counted for a's prefix. */
uint32_t sl_ratelim_live(const sl_ratelim *rl, const sl_addr *a);

#ifdef __cplusplus
}
#endif
#endif
