/* sp_patience.c: client patience models; see sp_patience.h. */
#include "sp_patience.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The published table is conditional on closing within 90 s (4.9 % were
 * still waiting at 90 s: censored there), so the unconditional CDF is the
 * table times 0.951 and reaches 0.951 at 90 s.  Labels read as upper bin
 * edges ("ops90") or lower edges of 5 s bins ("ops90-late": 5 s later). */
static const double ops90_t[] = {0, 10, 20, 25, 30, 60, 90};
static const double ops90_p[] = {
    0,    0.08 * 0.951, 0.37 * 0.951, 0.63 * 0.951, 0.87 * 0.951, 0.98 * 0.951,
    0.951};
#define OPS90_N (sizeof ops90_t / sizeof ops90_t[0])

uint64_t sp_rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t sp_rng_seed(uint64_t run_seed, const char *source, uint64_t session) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char *p = (const unsigned char *)source; *p; p++) {
    h ^= *p;
    h *= 1099511628211ull;
  }
  h ^= session * 0x9e3779b97f4a7c15ull;
  uint64_t s = h ^ (run_seed * 0xd1b54a32d192ed03ull);
  return sp_rng_next(&s);
}

static double unit(uint64_t *st) { /* [0, 1) with 53 bits */
  return (double)(sp_rng_next(st) >> 11) * (1.0 / 9007199254740992.0);
}

static int num(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || (*end && *end != ':') || !(v >= 0) || v > 1e9)
    return -1;
  *out = v;
  return 0;
}

int sp_patience_parse(sp_patience *m, const char *text, char *err,
                      size_t errlen) {
  memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", text);
  if (!strcmp(text, "none"))
    m->kind = SP_PAT_NONE;
  else if (!strcmp(text, "ops90"))
    m->kind = SP_PAT_OPS90;
  else if (!strcmp(text, "ops90-late")) {
    m->kind = SP_PAT_OPS90;
    m->a = 5.0; /* every label 5 s later: the lower-edge reading */
  } else if (!strcmp(text, "vendor10"))
    m->kind = SP_PAT_VENDOR10;
  else if (!strcmp(text, "captured"))
    m->kind = SP_PAT_CAPTURED;
  else if (!strcmp(text, "empirical"))
    m->kind = SP_PAT_EMPIRICAL;
  else if (!strncmp(text, "fixed:", 6)) {
    m->kind = SP_PAT_FIXED;
    if (num(text + 6, &m->a) || strchr(text + 6, ':'))
      goto bad;
  } else if (!strncmp(text, "exp:", 4)) {
    m->kind = SP_PAT_EXP;
    if (num(text + 4, &m->a) || m->a <= 0 || strchr(text + 4, ':'))
      goto bad;
  } else if (!strncmp(text, "uniform:", 8)) {
    m->kind = SP_PAT_UNIFORM;
    const char *c = strchr(text + 8, ':');
    if (!c || num(text + 8, &m->a) || num(c + 1, &m->b) || strchr(c + 1, ':') ||
        m->b < m->a)
      goto bad;
  } else if (!strncmp(text, "km:", 3)) {
    m->kind = SP_PAT_KM;
    long n = sp_km_read_csv(text + 3, &m->rows, err, errlen);
    if (n < 0)
      return -1;
    m->nrows = (size_t)n;
  } else
    goto bad;
  return 0;
bad:
  snprintf(err, errlen,
           "bad patience model \"%s\" (none, fixed:S, exp:MEAN, uniform:A:B, "
           "ops90, ops90-late, vendor10, captured, empirical, km:FILE.csv)",
           text);
  return -1;
}

int sp_patience_set_km(sp_patience *m, const sp_km_row *rows, size_t n) {
  free(m->rows);
  m->rows = NULL;
  m->nrows = 0;
  if (!n)
    return 0;
  m->rows = malloc(n * sizeof *rows);
  if (!m->rows)
    return -1;
  memcpy(m->rows, rows, n * sizeof *rows);
  m->nrows = n;
  return 0;
}

void sp_patience_free(sp_patience *m) {
  free(m->rows);
  m->rows = NULL;
  m->nrows = 0;
}

void sp_patience_describe(const sp_patience *m, char *out, size_t len) {
  switch (m->kind) {
  case SP_PAT_NONE:
    snprintf(out, len, "none: never gives up");
    break;
  case SP_PAT_FIXED:
    snprintf(out, len, "fixed: every client waits %g s", m->a);
    break;
  case SP_PAT_EXP:
    snprintf(out, len, "exp: exponential, mean %g s", m->a);
    break;
  case SP_PAT_UNIFORM:
    snprintf(out, len, "uniform: on [%g, %g] s", m->a, m->b);
    break;
  case SP_PAT_OPS90:
    snprintf(
        out, len,
        "%s: piecewise-linear CDF through the published closes "
        "(conditional on closing by 90 s) times 0.951, labels +%g s: "
        "7.6%%@%gs 35.2%%@%gs 59.9%%@%gs 82.7%%@%gs 93.2%%@%gs 95.1%%@90s; "
        "the 4.9%% still waiting at 90 s (censored) do not give up in a "
        "draw",
        m->a > 0 ? "ops90-late" : "ops90", m->a, 10 + m->a, 20 + m->a,
        25 + m->a, 30 + m->a, 60 + m->a);
    break;
  case SP_PAT_VENDOR10:
    snprintf(out, len, "vendor10: 90%% wait 10 s, 5%% 21 s, 5%% 100 s");
    break;
  case SP_PAT_CAPTURED:
    snprintf(out, len,
             "captured: the session's own captured give-up wait, "
             "else never gives up");
    break;
  case SP_PAT_EMPIRICAL:
  case SP_PAT_KM: {
    double last = m->nrows ? m->rows[m->nrows - 1].t : 0;
    double slast = m->nrows ? m->rows[m->nrows - 1].s : 1;
    snprintf(out, len,
             "%s: Kaplan-Meier of captured waits (%zu event times, "
             "last %.3f s, S=%.3f there; survivors never give up)",
             m->kind == SP_PAT_KM ? m->name : "empirical", m->nrows, last,
             slast);
    break;
  }
  }
}

double sp_patience_draw(const sp_patience *m, uint64_t seed,
                        double captured_wait) {
  uint64_t st = seed;
  double u = unit(&st);
  switch (m->kind) {
  case SP_PAT_NONE:
    return INFINITY;
  case SP_PAT_FIXED:
    return m->a;
  case SP_PAT_EXP:
    return -m->a * log1p(-u);
  case SP_PAT_UNIFORM:
    return m->a + (m->b - m->a) * u;
  case SP_PAT_OPS90:
    for (size_t i = 1; i < OPS90_N; i++)
      if (u < ops90_p[i]) {
        double f = (u - ops90_p[i - 1]) / (ops90_p[i] - ops90_p[i - 1]);
        /* the lower-edge reading moves the labelled points, not 0 or 90 */
        double t0 =
            ops90_t[i - 1] + (i - 1 > 0 && i - 1 < OPS90_N - 1 ? m->a : 0);
        double t1 = ops90_t[i] + (i < OPS90_N - 1 ? m->a : 0);
        return t0 + f * (t1 - t0);
      }
    return INFINITY;
  case SP_PAT_VENDOR10:
    return u < 0.90 ? 10.0 : u < 0.95 ? 21.0 : 100.0;
  case SP_PAT_CAPTURED:
    return captured_wait >= 0 ? captured_wait : INFINITY;
  case SP_PAT_EMPIRICAL:
  case SP_PAT_KM:
    /* P(T <= t) = 1 - S(t): the first event time where 1 - S >= u. */
    for (size_t i = 0; i < m->nrows; i++)
      if (1.0 - m->rows[i].s >= u)
        return m->rows[i].t;
    return INFINITY;
  }
  return INFINITY;
}
