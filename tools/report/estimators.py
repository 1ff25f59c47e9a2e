"""Estimators behind REPORT.md (tested by test_estimators.py).

Exact expected give-up.  The replay records, for every session, the longest
wait W the policy imposes under each client clock (sp_sim.h: w_read, w_reply,
w_session, run with patience "none").  A client whose patience is T gives up
iff T < W (tie rule: a reply arriving at the instant the patience runs out is
received), so the expected share that gives up is mean_s F(W_s-) with F the
patience CDF; no random draw is involved.  F(W_s) (patience that expires at
the same instant counts as expired) is the other ordering; both are reported,
which for point-mass models is the evaluation at W - eps and W + eps.

Every patience model returns a pair (lo, hi) of give-up probabilities for a
wait: the band between the two tie orderings and, for data that only bound
the CDF (interval-censored bins, Kaplan-Meier past its last event), between
the lowest and the highest CDF the data allow.
"""
import math

import numpy as np

INF = float("inf")


def wait(v):
    """A wait from a record: seconds, or "inf" (the reply never came)."""
    return INF if v == "inf" else float(v)


# ---- ops90: the operator's published closes under a 90 s greeting delay ----
# Cumulative shares of the hosts that closed within 90 s, read at the bin
# labels 10, 20, 25, 30 and 60 s (5 s bins).  The table is conditional on
# closing within 90 s: 4.9 % of the hosts were still waiting at 90 s, which is
# censoring at 90 s, not "never gives up".
OPS_LABELS = [10.0, 20.0, 25.0, 30.0, 60.0]
OPS_COND = [0.08, 0.37, 0.63, 0.87, 0.98]
OPS_STILL_WAITING_90 = 0.049
OPS_BIN = 5.0


def ops_points(reading):
    """Known points (t, F(t)) of the unconditional CDF.  reading "upper": a
    label is the bin's upper edge (closed by 10 s); "lower": its lower edge
    (the bin [10, 15) holds the closes labelled 10, so they are known only by
    15 s)."""
    shift = 0.0 if reading == "upper" else OPS_BIN
    closed = 1.0 - OPS_STILL_WAITING_90
    pts = [(0.0, 0.0)] + [(t + shift, p * closed) for t, p in zip(OPS_LABELS, OPS_COND)]
    pts.append((90.0, closed))
    return pts


def _icens_bounds(pts, w):
    """Interval-censored CDF bounds from known points: any non-decreasing F
    through them.  Returns (F_lo(w-), F_hi(w)): the lowest possible P(T < w)
    and the highest possible P(T <= w).  Past the last point F lies in
    [F(last), 1]."""
    lo = max([p for t, p in pts if t < w], default=0.0)
    hi = min([p for t, p in pts if t >= w], default=1.0)
    return lo, hi


def ops_bounds(w):
    """Nonparametric bounds: every non-decreasing CDF through the known
    points of either reading (wide: nothing is assumed inside a bin)."""
    if w == INF:
        return 1.0 - OPS_STILL_WAITING_90, 1.0
    lo_l, _ = _icens_bounds(ops_points("lower"), w)
    _, hi_u = _icens_bounds(ops_points("upper"), w)
    return lo_l, hi_u


def ops_intervals(reading):
    """The published table as interval-censored observations: (a, b, share)
    with a < T <= b; the 4.9 % still waiting at 90 s are (90, inf)."""
    pts = ops_points(reading)
    iv = [(t0, t1, p1 - p0) for (t0, p0), (t1, p1) in zip(pts, pts[1:])]
    iv.append((90.0, INF, OPS_STILL_WAITING_90))
    return iv


def _lognorm_cdf(t, mu, sigma):
    if t <= 0:
        return 0.0
    if t == INF:
        return 1.0
    return 0.5 * math.erfc(-(math.log(t) - mu) / (sigma * math.sqrt(2.0)))


_FITS = {}


def _mix_cdf(t, th):
    mu1, s1, mu2, s2, pi = th
    return pi * _lognorm_cdf(t, mu1, s1) + (1 - pi) * _lognorm_cdf(t, mu2, s2)


def ops_fit(reading):
    """Maximum-likelihood fit to the interval-censored table (each bin and
    the censored tail weighted by its published share) of a two-component
    log-normal mixture: the bulk that closes between 10 and 60 s and a slow
    tail, which a single log-normal cannot follow (it misses the published
    points by up to 14 points).  Returns (mu1, s1, mu2, s2, pi)."""
    if reading in _FITS:
        return _FITS[reading]
    from scipy.optimize import minimize
    iv = ops_intervals(reading)

    def unpack(x):
        return (x[0], math.exp(x[1]), x[2], math.exp(x[3]), 1 / (1 + math.exp(-x[4])))

    def nll(x):
        th = unpack(x)
        v = 0.0
        for a, b, p in iv:
            d = _mix_cdf(b, th) - _mix_cdf(a, th)
            v -= p * math.log(max(d, 1e-300))
        return v
    best = None
    for start in ([math.log(25), math.log(0.3), math.log(60), math.log(1.0), 2.0],
                  [math.log(22), math.log(0.2), math.log(90), math.log(1.5), 1.0]):
        r = minimize(nll, start, method="Nelder-Mead",
                     options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000, "maxfev": 20000})
        if best is None or r.fun < best.fun:
            best = r
    _FITS[reading] = tuple(float(v) for v in unpack(best.x))
    return _FITS[reading]


def ops_cdf(reading, t):
    return _mix_cdf(t, ops_fit(reading))


def ops_band(w):
    """(lo, hi) give-up probability for a wait w: the fits of the two bin
    readings (continuous, so the tie orderings coincide)."""
    a, b = ops_cdf("lower", w), ops_cdf("upper", w)
    return min(a, b), max(a, b)


def ops_mid(t):
    """The old single curve (piecewise-linear through the upper-edge points),
    only for drawing."""
    pts = ops_points("upper")
    for (t0, p0), (t1, p1) in zip(pts, pts[1:]):
        if t <= t1:
            return p0 + (p1 - p0) * (t - t0) / (t1 - t0)
    return pts[-1][1]


# ---- vendor10: 90 % wait exactly 10 s, 5 % 21 s, 5 % 100 s ----
VENDOR = [(10.0, 0.90), (21.0, 0.05), (100.0, 0.05)]


def vendor_band(w):
    lo = sum(p for t, p in VENDOR if t < w)
    hi = sum(p for t, p in VENDOR if t <= w)
    return lo, hi


# ---- RFC 5321 section 4.5.3.2: a legitimate MTA's per-command timeouts ----
RFC5321 = {"greeting": 300.0, "mail": 300.0, "rcpt": 300.0, "data": 120.0,
           "message": 600.0, "bdat": 600.0}
RFC5321_OTHER = 300.0  # EHLO, RSET, AUTH...: the 5 min of the other commands


def rfc5321_band(w_by):
    """An MTA waits each reply out up to the RFC timeout of that command and
    then gives up (and retries later).  w_by: the record's per-command
    longest waits.  Deterministic: (lo, hi) differ only on an exact tie."""
    lo = hi = 0.0
    for k, v in w_by.items():
        v = wait(v)
        lim = RFC5321.get(k, RFC5321_OTHER)
        if v > lim:
            lo = 1.0
        if v >= lim:
            hi = 1.0
    return lo, hi


# ---- Kaplan-Meier -------------------------------------------------------

def km(obs, min_event=0.005, z=1.959964):
    """obs: (time, event) pairs.  An event shorter than min_event seconds is
    treated as censored: a close within a few milliseconds of the last byte
    is a scripted tool or a capture cut short, not a client running out of
    patience.  Returns rows (t, at_risk, events, censored, S, lo, hi) at every
    distinct time with an event or a censoring, with the log-log
    (Kalbfleisch-Prentice) interval; S and its interval are only given up to
    the last observation (never extrapolated)."""
    obs = sorted((t, 1 if (e and t >= min_event) else 0) for t, e in obs)
    n = len(obs)
    rows, s, var, i = [], 1.0, 0.0, 0
    while i < n:
        t = obs[i][0]
        d = c = 0
        while i < n and obs[i][0] == t:
            d += obs[i][1]
            c += 1 - obs[i][1]
            i += 1
        at_risk = n - (i - d - c)
        if d:
            s *= 1.0 - d / at_risk
            if at_risk > d:
                var += d / (at_risk * (at_risk - d))
        if 0.0 < s < 1.0:
            se = math.sqrt(var) / abs(math.log(s))
            lo = s ** math.exp(z * se)
            hi = s ** math.exp(-z * se)
        else:
            lo = hi = s
        rows.append((t, at_risk, d, c, s, lo, hi))
    return rows


def km_band(rows, w):
    """(lo, hi) give-up probability for a wait w from a KM table: F(w-) and
    F(w) up to the last observation; past it the data say only that F lies
    between its last value and 1."""
    if not rows:
        return 0.0, 1.0
    last_t = rows[-1][0]
    f_lt = 1.0 - min([r[4] for r in rows if r[0] < w], default=1.0)
    f_le = 1.0 - min([r[4] for r in rows if r[0] <= w], default=1.0)
    if w > last_t:
        return f_lt, 1.0
    return f_lt, f_le


# ---- bootstrap over whole capture files ----------------------------------

def boot_mean(groups, values, reps=2000, seed=1, level=0.95):
    """Percentile CI of the mean of values when whole groups (capture files:
    sessions of one file are correlated) are resampled with replacement.
    With one group per value this is the ordinary bootstrap.  Returns
    (mean, lo, hi)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    keys = sorted(set(groups))
    idx = {k: i for i, k in enumerate(keys)}
    g = np.array([idx[k] for k in groups])
    sums = np.bincount(g, weights=values, minlength=len(keys))
    cnts = np.bincount(g, minlength=len(keys)).astype(float)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(keys), size=(reps, len(keys)))
    stat = sums[pick].sum(axis=1) / np.maximum(cnts[pick].sum(axis=1), 1e-300)
    a = (1.0 - level) / 2.0
    return float(values.mean()), float(np.quantile(stat, a)), float(np.quantile(stat, 1 - a))
