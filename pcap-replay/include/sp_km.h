/*
 * sp_km.h: the Kaplan-Meier estimator with Greenwood confidence intervals.
 *
 * Observations are (time, event): event 1 means the client gave up at that
 * time; 0 means it was still there (right-censored: it waited at least that
 * long).  At a time with both, censored observations count as still at
 * risk (the usual convention).  S(t) = prod over event times t_j <= t of
 * (1 - d_j / n_j); Var S = S^2 * sum d_j / (n_j (n_j - d_j)) (Greenwood);
 * the interval is S +- z * sqrt(Var), clipped to [0, 1] (plain scale; where
 * n_j = d_j the sum is undefined and S = 0, the interval is [0, 0]).
 */
#ifndef SP_KM_H
#define SP_KM_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_km_obs {
  double t;
  int event;
} sp_km_obs;

typedef struct sp_km_row {
  double t;          /* a distinct time with at least one event */
  unsigned at_risk;  /* n_j */
  unsigned events;   /* d_j */
  unsigned censored; /* censored observations at exactly t_j */
  double s, se, lo, hi;
} sp_km_row;

/*
 * Sorts obs (in place) and fills rows (capacity n: at most one row per
 * observation).  Returns the number of rows.  z: 1.96 for 95 %.
 */
size_t sp_km_estimate(sp_km_obs *obs, size_t n, double z, sp_km_row *rows);

/* S(t) from rows: 1 before the first event time. */
double sp_km_survival(const sp_km_row *rows, size_t nrows, double t);

/* Writes "time_s,at_risk,events,censored,survival,se,lower95,upper95". */
void sp_km_write_csv(FILE *f, const sp_km_row *rows, size_t nrows);

/* Reads that CSV back (time_s and survival columns); returns rows read or
 * -1 with err set. *rows is malloc()ed. */
long sp_km_read_csv(const char *path, sp_km_row **rows, char *err,
                    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
