/*
 * sp_live.h: the client sessions of captures replayed over TCP against a
 * running SMTP server or proxy, on loopback (or inside a test network
 * namespace) only.  The client is sim's (sp_client.h), timings scaled by
 * the time scale, many sessions at once through poll(), bounded in count
 * and in total time.  The records are sim's, measured from the client
 * side; times are reported in capture seconds (wall time divided by the
 * time scale).
 *
 * Arrivals: each session starts at its captured start time (offset from
 * the first session of its capture file, times the time scale); captures
 * given together overlay their timelines.  asap starts them as fast as the
 * concurrency allows (a load test).
 * Source addresses: every distinct captured client address gets its own
 * loopback address 127.1.0.0 + k (IPv4 targets; Linux routes all of
 * 127.0.0.0/8 to lo), so the proxy's per-IP limits see the capture's
 * clients, not one host.  fixed_source uses the kernel's choice.
 */
#ifndef SP_LIVE_H
#define SP_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sp_patience.h"
#include "sp_script.h"
#include "sp_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_LIVE_MAX_CONC 4096

typedef struct sp_live_config {
  struct sockaddr_storage target;
  socklen_t target_len;
  const char *label; /* the records' policy column */
  double scale;      /* wall seconds per capture second */
  double limit_s;    /* wall clock, the whole run */
  long concurrency;  /* 1..SP_LIVE_MAX_CONC */
  int asap;          /* 1: arrivals as fast as possible */
  int fixed_source;  /* 1: the kernel's source address */
  int clock_reply;   /* patience clock, as sp_sim_config */
  uint64_t seed;     /* patience draws, as sim */
  const sp_patience *patience;
} sp_live_config;

typedef struct sp_live_stats {
  size_t late;        /* started late (held back by the concurrency) */
  size_t not_started; /* past the time limit */
  double wall_s;
  int per_client_sources; /* 1: 127.1.0.0 + k was used */
} sp_live_stats;

/* "IP:PORT" or "[IPv6]:PORT"; 0 or -1. */
int sp_live_parse_target(const char *text, struct sockaddr_storage *ss,
                         socklen_t *len);
/* 1 if live may connect there: loopback, or (netns) anything when this
 * process runs in another network namespace than PID 1. */
int sp_live_target_allowed(const struct sockaddr_storage *ss, int netns);

/* Replays set; res[i] is set->v[i]'s record (source NULL: not started
 * before the time limit).  0; -1 when poll failed (message printed, the
 * records so far kept); -2 when memory ran out (nothing run). */
int sp_live_run(const sp_live_config *cfg, const sp_script_set *set,
                sp_result *res, sp_live_stats *st);

#ifdef __cplusplus
}
#endif
#endif
