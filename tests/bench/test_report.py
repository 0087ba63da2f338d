"""bench/report.py's arithmetic, on results written here: the chance that
two runs agree, and --compare's counts and exit status.

    python3 tests/bench/test_report.py
"""
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import report  # noqa: E402


def write_run(path, rounds, figures):
    """A results directory as bench/run writes it: figures is
    {key: [value of round 1, round 2, ...]} for the engine benchmark."""
    os.makedirs(path)
    results = []
    for i in range(rounds):
        name = "engine-r%d.json" % (i + 1)
        with open(os.path.join(path, name), "w") as f:
            json.dump({"summary": {k: v[i] for k, v in figures.items()}}, f)
        results.append({"bench": "engine", "round": i + 1, "rc": 0, "file": name,
                        "quiet_before": {"busy_before": 0.01, "under_load": False}})
    with open(os.path.join(path, "run.json"), "w") as f:
        json.dump({"started": "2026-12-05 00:00 UTC", "rounds": rounds, "results": results,
                   "machine_before": {"commit": "abc1234"}}, f)


class Chance(unittest.TestCase):
    def by_medians(self, n):
        """The same share counted on actual values: every way of dealing
        2n distinct values into two runs, real medians, min..max inclusive."""
        one = both = total = 0
        values = list(range(2 * n))
        for a in itertools.combinations(values, n):
            b = [v for v in values if v not in a]
            b_in_a = min(a) <= statistics.median(b) <= max(a)
            a_in_b = min(b) <= statistics.median(a) <= max(b)
            total += 1
            one += b_in_a
            both += b_in_a and a_in_b
        return one / total, both / total

    def test_three_rounds_by_hand(self):
        # of the 20 ways to deal 6 ranks, B's middle one lies below all of
        # A's in 4 (B holds ranks 1 and 2) and above all in 4: 12 of 20
        self.assertAlmostEqual(report.expected_inside(3, 3)[0], 12 / 20)

    def test_matches_counting_real_medians(self):
        for n in (1, 3, 5):
            got = report.expected_inside(n, n)
            want = self.by_medians(n)
            self.assertAlmostEqual(got[0], want[0], msg="%d rounds, one way" % n)
            self.assertAlmostEqual(got[1], want[1], msg="%d rounds, both ways" % n)

    def test_more_rounds_agree_more(self):
        self.assertLess(report.expected_inside(3, 3)[0], report.expected_inside(5, 5)[0])
        self.assertLess(report.expected_inside(5, 5)[0], report.expected_inside(7, 7)[0])


class Compare(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.a = os.path.join(self.tmp.name, "a")
        self.b = os.path.join(self.tmp.name, "b")

    def tearDown(self):
        self.tmp.cleanup()

    def compare(self):
        return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "report.py"),
                               "--compare", self.a, self.b], capture_output=True, text=True)

    def test_counts_and_status(self):
        write_run(self.a, 3, {"engine_cpu_us_per_msg": [1.0, 2.0, 3.0],
                              "engine_drain_msgs_per_s": [100, 110, 120]})
        # CPU: B's median 2.1 (x1.05) is in A's 1..3, A's 2 is not in B's
        # 2.05..2.15; the drain moved x1.9, outside both ways
        write_run(self.b, 3, {"engine_cpu_us_per_msg": [2.05, 2.1, 2.15],
                              "engine_drain_msgs_per_s": [200, 210, 220]})
        out = self.compare()
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("1 of 2 figures: B's median within A's spread; 0 of 2 both ways",
                      out.stdout)
        # 0.6 and 0.4 of each figure: 1.2 and 0.8 of two
        self.assertIn("would give about 1 and 1", out.stdout)
        self.assertIn("of the 2 medians with the same sign in both runs, 1 moved by less "
                      "than 10 % and 1 by less than 25 %", out.stdout)
        self.assertIn("3 rounds of each benchmark, none started under load", out.stdout)

    def test_runs_that_agree_exit_0(self):
        write_run(self.a, 3, {"engine_cpu_us_per_msg": [1.0, 2.0, 3.0]})
        write_run(self.b, 3, {"engine_cpu_us_per_msg": [1.5, 2.1, 2.9]})
        out = self.compare()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("1 of 1 figures: B's median within A's spread; 1 of 1 both ways",
                      out.stdout)

    def test_not_a_run(self):
        os.makedirs(self.a)
        write_run(self.b, 1, {"engine_cpu_us_per_msg": [1.0]})
        out = self.compare()
        self.assertEqual(out.returncode, 2)
        self.assertIn("has no run.json", out.stderr)


if __name__ == "__main__":
    unittest.main()
