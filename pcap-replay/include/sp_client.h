/*
 * sp_client.h: the replayed client, shared by sim (virtual clock) and live
 * (sockets, wall clock).  One model so that what sim predicts and what live
 * measures differ only in the server, not in how the client behaves.
 *
 * Times are nanoseconds on the caller's clock (sim: the virtual clock;
 * live: CLOCK_MONOTONIC).  Captured durations (think times, patience) are
 * multiplied by scale (live --time-scale; 1 in sim, where the arithmetic is
 * exact integers), and the waits and times recorded in sp_result are divided
 * by it, so records are in capture seconds either way.
 *
 * The model: writes as captured, each after the k-th reply plus its think
 * time (sp_script.h anchoring), a pipelined group as one write; replies
 * counted from the first line of each (a digit triple then space, CR or LF
 * ends a reply); stage, rejection and messages from the reply codes; the
 * longest waits under the three clocks (sp_sim.h, w_read/w_reply/w_session);
 * the patience deadline under the read or the reply clock.  Sockets, the
 * relay, and how a session ends are the caller's.
 */
#ifndef SP_CLIENT_H
#define SP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/relay.h"
#include "sp_patience.h"
#include "sp_script.h"
#include "sp_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_CLIENT_NEVER UINT64_MAX

typedef struct sp_client {
  const sp_script *s;
  sp_result *res;
  double scale;      /* caller's clock per capture second (1: sim) */
  int count_delay;   /* 1: res->delay_s from reply waits (live; sim has
                        the relay's own count) */
  uint64_t t0;       /* connection opened */
  uint64_t *reply_t; /* time of each complete reply (kept across sessions) */
  size_t reply_cap;
  uint64_t *unit_t; /* time each script unit was completely sent */
  size_t unit_cap;
  size_t wi;      /* next write */
  uint64_t woff;  /* bytes of it already sent */
  uint64_t csent; /* client bytes sent */
  size_t units_sent;
  uint64_t last_tx, last_rx;
  uint32_t rx; /* complete replies received */
  uint32_t line_len;
  char line4[4];
  int rejected;
  int data_open;  /* DATA's 354 came: the message unit's 2xx is a delivery */
  sl_stage stage; /* the furthest seen from the client, in the core's terms */
} sp_client;

/* The session's patience under model m: one draw per (seed, capture,
 * session), the same in sim and live; a captured give-up passes its wait
 * (models conditioned on it use it). */
double sp_client_draw_patience(const sp_patience *m, uint64_t seed,
                               const sp_script *s);

/* Starts a session at t0 (buffers are kept from earlier sessions; the
 * caller fills res first, its counters are added to).  -1: out of memory. */
int sp_client_begin(sp_client *c, const sp_script *s, sp_result *res,
                    uint64_t t0, double scale);
void sp_client_free(sp_client *c);

/* Bytes from the server at now. */
void sp_client_read(sp_client *c, const uint8_t *p, size_t n, uint64_t now);

/* 1 while a reply is awaited (not after QUIT's reply). */
int sp_client_waiting(const sp_client *c);
/* The unit whose reply is awaited (valid while waiting). */
sp_unit_kind sp_client_awaited(const sp_client *c);
/* Time the k-th reply arrived (0: the connection); now when not kept. */
uint64_t sp_client_anchor(const sp_client *c, uint32_t k, uint64_t now);
/* Start of the current wait under the reply / the read clock. */
uint64_t sp_client_reply_base(const sp_client *c);
uint64_t sp_client_read_base(const sp_client *c);

/* The next write: when it is due (never before now, now while one is
 * partly sent), SP_CLIENT_NEVER if none is ready (script written, or the
 * reply it follows not yet in). */
uint64_t sp_client_write_due(const sp_client *c, uint64_t now);
/* Its bytes not yet sent. */
const uint8_t *sp_client_write_bytes(const sp_client *c, size_t *len);
/* n bytes of it were taken at now. */
void sp_client_wrote(sp_client *c, uint64_t n, uint64_t now);

/* The scripted end (after the last write, its own anchor and think time):
 * when it is due, SP_CLIENT_NEVER if there is none to play (the server
 * ends the capture, or a captured give-up, which the patience model
 * replaces). */
uint64_t sp_client_end_due(const sp_client *c, uint64_t now);
/* Its note ("client:fin", ...); 1 from sp_client_end_aborts unless FIN. */
const char *sp_client_end_note(const sp_client *c);
int sp_client_end_aborts(const sp_client *c);

/* When patience (capture seconds, INFINITY: never) runs out under the
 * reply clock (clock_reply) or the read clock; SP_CLIENT_NEVER when not
 * waiting.  Rounded to the nanosecond (sp_sim.h tie rule), not before now. */
uint64_t sp_client_patience_due(const sp_client *c, double patience,
                                int clock_reply, uint64_t now);

/* The longest waits so far, at now (call before taking in what arrives at
 * now, and when the connection ends); note_forever: the awaited reply will
 * never come. */
void sp_client_note_waits(sp_client *c, uint64_t now);
void sp_client_note_forever(sp_client *c);

/* sl_stage_name() of the furthest stage seen: "connect" ... "delivered". */
const char *sp_client_stage_name(const sp_client *c);

#ifdef __cplusplus
}
#endif
#endif
