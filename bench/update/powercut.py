"""Power cuts (SIGKILL of the sim board) at random instants of signed updates, by the hundred: the
trials of tests/faults/test_update_powercut.py (download twice, install, then switch, trial boot
or confirm, one rollout of the next version after another, in one simulation of one printer).
Prints, per phase hit: trials, bricks (no boot and upload after the cut), rollouts confirmed and
reverted, and the time. A brick starts a fresh simulation.

Usage: .venv/bin/python bench/update/powercut.py [--trials 200] [--seed 11]
       (~25 s per 10 trials; binds 127.77.73.x, 127.31.73.10 and ports 17773, 17873, 17973, 18023)
"""
import argparse
import os
import random
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host-tools")]

from fbtool.image import firmware_version  # noqa: E402
from tests.faults.update_sim import PHASES, ROUNDS, Bricked, measure, power_cut_round, small_sim  # noqa: E402


def _new_sim(tmp, n):
    sim = small_sim(os.path.join(tmp, "sim-%d" % n), net=73)
    sim.wait_cycles(1, 90)
    return sim


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    trials = []
    rollouts = {"confirmed": 0, "reverted": 0, "other": 0}
    with tempfile.TemporaryDirectory() as tmp:
        sims = 0
        sim = _new_sim(tmp, sims)
        try:
            since = len(sim.stamps)
            _, state, _ = power_cut_round(sim, 1, rng, (), "%s.1" % firmware_version())
            windows = measure(sim, since)
            print("phases without cuts (s): %s" % ", ".join("%s %.2f" % (k, windows[k]) for k in PHASES), flush=True)
            rnd = 1
            while len(trials) < args.trials:
                rnd += 1
                try:
                    got, state, _ = power_cut_round(sim, rnd, rng, ROUNDS[rnd % len(ROUNDS)],
                                                    "%s.%d" % (firmware_version(), rnd), windows)
                except Bricked as e:
                    trials += e.trials
                    print("BRICK in round %d: %s" % (rnd, e), flush=True)
                    sim.stop()
                    sims += 1
                    sim = _new_sim(tmp, sims)
                    rnd = 1
                    continue
                rollouts[state if state in rollouts else "other"] += 1
                trials += got
                if rnd % 10 == 0:
                    print("  %d trials, %d rollouts, %.0f s" % (len(trials), rnd - 1, time.time() - t0), flush=True)
        finally:
            sim.stop()
    elapsed = time.time() - t0
    print("\n%d power cuts in %.0f s (%.1f s a cut), seed %d" % (len(trials), elapsed, elapsed / max(1, len(trials)),
                                                                 args.seed))
    print("%-12s %7s %7s %10s %9s" % ("phase hit", "trials", "bricks", "confirmed", "reverted"))
    bricks = 0
    for phase in PHASES + ("after",):
        ts = [t for t in trials if t["phase"] == phase]
        b = sum(1 for t in ts if t.get("outcome") == "brick")
        bricks += b
        print("%-12s %7d %7d %10d %9d" % (phase, len(ts), b, sum(1 for t in ts if t.get("outcome") == "confirmed"),
                                          sum(1 for t in ts if t.get("outcome") == "reverted")))
    print("rollouts: %s; bricks: %d" % (", ".join("%s %d" % kv for kv in rollouts.items()), bricks))
    return 1 if bricks else 0


if __name__ == "__main__":
    sys.exit(main())
