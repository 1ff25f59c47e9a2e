/*
 * sl_tbucket.h: a token bucket of bytes, the relay's data_rate throttle.
 * Pure: time is an argument, and rate (bytes per second) is passed to each
 * call so a change of tarpit profile applies at once.
 */
#ifndef SL_TBUCKET_H
#define SL_TBUCKET_H

#include <stdint.h>

#include "sluice/limits.h"

typedef struct sl_tbucket {
  uint64_t tokens; /* bytes that may be taken now */
  sl_tstamp t;     /* tokens stand for the time up to t */
} sl_tbucket;

/* The bucket's size: an eighth of a second at rate, at least 512 bytes
   (one SMTP line always fits). */
uint64_t sl_tbucket_burst(uint64_t rate);

/* A full bucket at now, so the throttle slows bulk data, not the first
   lines.  Nothing changes when rate is 0 (no throttle). */
void sl_tbucket_fill(sl_tbucket *b, uint64_t rate, sl_tstamp now);

/* Adds the tokens earned since the last call, up to the burst.  A fraction
   of a token is not rounded away: its time carries over to the next call.
   Nothing changes when rate is 0.  now must not be before b->t. */
void sl_tbucket_refill(sl_tbucket *b, uint64_t rate, sl_tstamp now);

/* Takes n tokens, or all there are if fewer. */
void sl_tbucket_take(sl_tbucket *b, uint64_t n);

/* When an empty bucket has its next token (rate > 0). */
sl_tstamp sl_tbucket_next(const sl_tbucket *b, uint64_t rate);

#endif
