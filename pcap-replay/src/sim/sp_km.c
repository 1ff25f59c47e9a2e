/* sp_km.c: Kaplan-Meier with Greenwood intervals; see sp_km.h. */
#include "sp_km.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_obs(const void *a, const void *b) {
  const sp_km_obs *x = a, *y = b;
  if (x->t < y->t)
    return -1;
  if (x->t > y->t)
    return 1;
  return y->event - x->event; /* events first (stable tie order) */
}

size_t sp_km_estimate(sp_km_obs *obs, size_t n, double z, sp_km_row *rows) {
  if (n > 1)
    qsort(obs, n, sizeof *obs, cmp_obs);
  size_t nrows = 0, i = 0;
  double s = 1.0, gw = 0.0;
  int gw_inf = 0;
  while (i < n) {
    double t = obs[i].t;
    unsigned d = 0, c = 0;
    size_t at_risk = n - i;
    while (i < n && obs[i].t == t) {
      if (obs[i].event)
        d++;
      else
        c++;
      i++;
    }
    if (!d)
      continue;
    s *= 1.0 - (double)d / (double)at_risk;
    if (at_risk > d)
      gw += (double)d / ((double)at_risk * (double)(at_risk - d));
    else
      gw_inf = 1;
    sp_km_row *r = &rows[nrows++];
    r->t = t;
    r->at_risk = (unsigned)at_risk;
    r->events = d;
    r->censored = c;
    r->s = s;
    r->se = gw_inf ? 0.0 : s * sqrt(gw);
    r->lo = s - z * r->se;
    r->hi = s + z * r->se;
    if (r->lo < 0)
      r->lo = 0;
    if (r->hi > 1)
      r->hi = 1;
  }
  return nrows;
}

double sp_km_survival(const sp_km_row *rows, size_t nrows, double t) {
  double s = 1.0;
  for (size_t i = 0; i < nrows && rows[i].t <= t; i++)
    s = rows[i].s;
  return s;
}

void sp_km_write_csv(FILE *f, const sp_km_row *rows, size_t nrows) {
  fprintf(f, "time_s,at_risk,events,censored,survival,se,lower95,upper95\n");
  for (size_t i = 0; i < nrows; i++)
    fprintf(f, "%.6f,%u,%u,%u,%.6f,%.6f,%.6f,%.6f\n", rows[i].t,
            rows[i].at_risk, rows[i].events, rows[i].censored, rows[i].s,
            rows[i].se, rows[i].lo, rows[i].hi);
}

long sp_km_read_csv(const char *path, sp_km_row **rows, char *err,
                    size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  char line[512];
  size_t n = 0, cap = 0;
  sp_km_row *v = NULL;
  unsigned lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    if (lineno == 1 && !strncmp(line, "time_s", 6))
      continue;
    sp_km_row r;
    memset(&r, 0, sizeof r);
    if (sscanf(line, "%lf,%u,%u,%u,%lf", &r.t, &r.at_risk, &r.events,
               &r.censored, &r.s) != 5 ||
        r.t < 0 || r.s < 0 || r.s > 1 ||
        (n && (r.t < v[n - 1].t || r.s > v[n - 1].s))) {
      snprintf(err, errlen,
               "%s:%u: expected time_s,at_risk,events,censored,"
               "survival with time rising and survival falling",
               path, lineno);
      free(v);
      fclose(f);
      return -1;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      sp_km_row *p = realloc(v, cap * sizeof *p);
      if (!p) {
        free(v);
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return -1;
      }
      v = p;
    }
    v[n++] = r;
  }
  fclose(f);
  *rows = v;
  return (long)n;
}
