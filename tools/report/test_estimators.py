#!/usr/bin/python3
"""Unit tests of tools/report/estimators.py (ctest: replay_estimators)."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import estimators as E  # noqa: E402
except ImportError as e:  # numpy absent: skipped (ctest SKIP_RETURN_CODE)
    print(f"skipped: {e} (apt-get install python3-numpy)")
    sys.exit(77)


class KM(unittest.TestCase):
    def test_hand_example(self):
        # 5 clients: gave up at 1, 3, 4 s; censored at 2 and 5 s.
        rows = E.km([(1, 1), (2, 0), (3, 1), (4, 1), (5, 0)])
        self.assertEqual([r[0] for r in rows], [1, 2, 3, 4, 5])
        self.assertEqual([r[1] for r in rows], [5, 4, 3, 2, 1])  # at risk
        self.assertAlmostEqual(rows[0][4], 0.8)
        self.assertAlmostEqual(rows[2][4], 0.8 * 2 / 3)
        self.assertAlmostEqual(rows[3][4], 0.8 * 2 / 3 * 1 / 2)
        # log-log interval at t = 1 by hand: var = 1/(5*4) = 0.05,
        # se = sqrt(0.05)/|ln 0.8| = 1.00210, S^exp(+-1.96 se).
        self.assertAlmostEqual(rows[0][5], 0.2036, places=3)
        self.assertAlmostEqual(rows[0][6], 0.9692, places=3)
        for r in rows:
            self.assertTrue(0 <= r[5] <= r[4] <= r[6] <= 1)

    def test_short_closes_are_censored(self):
        rows = E.km([(0.001, 1), (0.004, 1), (1.0, 0)])
        self.assertEqual(sum(r[2] for r in rows), 0)
        self.assertEqual(rows[-1][4], 1.0)

    def test_no_extrapolation(self):
        rows = E.km([(1, 1), (2, 0)])
        self.assertEqual(E.km_band(rows, 0.5), (0.0, 0.0))
        self.assertEqual(E.km_band(rows, 1.0), (0.0, 0.5))   # tie: both orders
        self.assertEqual(E.km_band(rows, 1.5), (0.5, 0.5))
        self.assertEqual(E.km_band(rows, 10.0), (0.5, 1.0))  # past the data


class Models(unittest.TestCase):
    def test_vendor_tie(self):
        # The tie that decided the old report: a 10 s wait and 10 s patience.
        self.assertEqual(E.vendor_band(10.0), (0.0, 0.90))
        self.assertEqual(E.vendor_band(9.999), (0.0, 0.0))
        self.assertAlmostEqual(E.vendor_band(10.001)[0], 0.90)
        self.assertAlmostEqual(E.vendor_band(E.INF)[0], 1.0)

    def test_ops_fit(self):
        # The log-normal fits pass near the published points of their
        # reading (within 4 points of percentage) and the lower-edge reading
        # is the later curve.
        for reading in ("upper", "lower"):
            for t, p in E.ops_points(reading)[1:]:
                self.assertLess(abs(E.ops_cdf(reading, t) - p), 0.04, (reading, t))
        for w in (5.0, 12.0, 20.0, 30.0, 60.0, 200.0):
            lo, hi = E.ops_band(w)
            self.assertLessEqual(lo, hi)
            self.assertAlmostEqual(lo, min(E.ops_cdf("lower", w), E.ops_cdf("upper", w)))
        # the censored tail is not "never": the fit reaches 1
        self.assertGreater(E.ops_band(1e5)[0], 0.999)

    def test_ops_bounds(self):
        closed = 1 - E.OPS_STILL_WAITING_90
        # Upper-edge reading: 8 % of the closers by 10 s; lower-edge: by 15 s.
        lo, hi = E.ops_bounds(10.0)
        self.assertEqual(lo, 0.0)
        self.assertAlmostEqual(hi, 0.08 * closed)
        lo, hi = E.ops_bounds(15.5)
        self.assertAlmostEqual(lo, 0.08 * closed)
        self.assertAlmostEqual(hi, 0.37 * closed)
        # Past 90 s: censored, not "never": between 95.1 % and 100 %.
        self.assertEqual(E.ops_bounds(200.0), (closed, 1.0))
        prev = (0, 0)
        for w in [0.5 * i for i in range(0, 260)]:
            b = E.ops_bounds(w)
            self.assertLessEqual(b[0], b[1])
            self.assertGreaterEqual(b[0], prev[0])
            self.assertGreaterEqual(b[1], prev[1])
            prev = b

    def test_rfc5321(self):
        self.assertEqual(E.rfc5321_band({"greeting": 299.0}), (0.0, 0.0))
        self.assertEqual(E.rfc5321_band({"greeting": 300.0}), (0.0, 1.0))
        self.assertEqual(E.rfc5321_band({"data": 121.0}), (1.0, 1.0))
        self.assertEqual(E.rfc5321_band({"helo": "inf"}), (1.0, 1.0))


class Bootstrap(unittest.TestCase):
    def test_files_not_sessions(self):
        # Two files, each internally identical: resampling files can give
        # 0 or 1, so the interval spans most of [0, 1]; resampling the same
        # values as 200 independent sessions gives a narrow one.
        groups = ["a"] * 100 + ["b"] * 100
        vals = [0.0] * 100 + [1.0] * 100
        m, lo, hi = E.boot_mean(groups, vals)
        self.assertAlmostEqual(m, 0.5)
        self.assertLessEqual(lo, 0.0 + 1e-9)
        self.assertGreaterEqual(hi, 1.0 - 1e-9)
        m, lo2, hi2 = E.boot_mean(list(range(200)), vals)
        self.assertGreater(lo2, 0.35)
        self.assertLess(hi2, 0.65)

    def test_constant(self):
        m, lo, hi = E.boot_mean(["a", "b", "c"], [0.25, 0.25, 0.25])
        self.assertEqual((m, lo, hi), (0.25, 0.25, 0.25))


if __name__ == "__main__":
    unittest.main()
