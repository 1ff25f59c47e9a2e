/*
 * sp_patience.h: client patience models for the replay: how long a client
 * waits for a reply before it closes the connection.
 *
 * Each session draws one patience value from the model with a PRNG seeded
 * by (run seed, capture name, session number), so the same session has the
 * same patience under every policy of a sweep (common random numbers) and
 * every run gives the same numbers.
 *
 * Models (the text is the --patience argument):
 *   none            never gives up (infinite patience)
 *   fixed:S         S seconds
 *   exp:MEAN        exponential with that mean (seconds)
 *   uniform:A:B     uniform on [A, B] seconds
 *   ops90           piecewise-linear CDF through the operator's published
 *                   closes under a 90 s greeting delay.  The table is
 *                   conditional on closing within 90 s (8 % by 10 s, 37 %
 *                   by 20 s, 63 % by 25 s, 87 % by 30 s, 98 % by 60 s) and
 *                   4.9 % were still waiting at 90 s, so the CDF is those
 *                   shares times 0.951, reaching 0.951 at 90 s; the 4.9 %
 *                   are censored at 90 s and never give up in a draw (the
 *                   report uses the interval-censored band instead).
 *   ops90-late      the same with the labels read as lower edges of 5 s
 *                   bins (every labelled point 5 s later).
 *   vendor10        "90 % of spammers go away after 10 seconds", per-family
 *                   timeouts near 21 s and 100 s, read as: 90 % wait
 *                   exactly 10 s, 5 % 21 s, 5 % 100 s.
 *   captured        the session's own give-up wait when the capture shows
 *                   one (it closed while waiting for a reply), else never.
 *   empirical       drawn from the Kaplan-Meier estimate of the input
 *                   sessions themselves (inverse transform; past the last
 *                   event time the survivors never give up).
 *   km:FILE.csv     the same from a CSV written by "sluice-replay patience".
 */
#ifndef SP_PATIENCE_H
#define SP_PATIENCE_H

#include <stddef.h>
#include <stdint.h>

#include "sp_km.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_pat_kind {
  SP_PAT_NONE,
  SP_PAT_FIXED,
  SP_PAT_EXP,
  SP_PAT_UNIFORM,
  SP_PAT_OPS90,
  SP_PAT_VENDOR10,
  SP_PAT_CAPTURED,
  SP_PAT_EMPIRICAL,
  SP_PAT_KM
} sp_pat_kind;

typedef struct sp_patience {
  sp_pat_kind kind;
  double a, b;
  char name[160];  /* as given */
  sp_km_row *rows; /* EMPIRICAL (after sp_patience_set_km) and KM */
  size_t nrows;
} sp_patience;

/* Parses a model; 0 or -1 with err. km:FILE reads the file now. */
int sp_patience_parse(sp_patience *m, const char *text, char *err,
                      size_t errlen);
/* For EMPIRICAL: the estimate to draw from (copied). 0 or -1 (memory). */
int sp_patience_set_km(sp_patience *m, const sp_km_row *rows, size_t n);
void sp_patience_free(sp_patience *m);

/* One line describing the model exactly, for every output. */
void sp_patience_describe(const sp_patience *m, char *out, size_t len);

/* Draws a patience in seconds (INFINITY = never gives up).  captured_wait:
 * the session's own give-up wait, or a negative number if it has none. */
double sp_patience_draw(const sp_patience *m, uint64_t seed,
                        double captured_wait);

/* splitmix64 step and a seed mixing helper (FNV-1a of the text). */
uint64_t sp_rng_next(uint64_t *state);
uint64_t sp_rng_seed(uint64_t run_seed, const char *source, uint64_t session);

#ifdef __cplusplus
}
#endif
#endif
