"""Power cuts (SIGKILL of the box) at random instants of an update's download, install, switch, trial
boot and confirmation, on MicroPython from a real flash image: every cut ends in a box that boots
and uploads, and every rollout ends confirmed (a power-on reset never reverts a trial). Seeded; one
simulation for every trial, each round rolling out the next version into the other slot.
bench/update/powercut.py runs the same trials by the hundred."""
import random

from fbtool.image import firmware_version
from tests.faults.update_sim import BS, PHASES, ROUNDS, measure, power_cut_round, small_sim

TRIALS = 20
SEED = 1911


def test_power_cuts_at_random_instants_of_an_update_never_brick_the_box(tmp_path):
    rng = random.Random(SEED)
    sim = small_sim(str(tmp_path), net=72)
    trials = []
    try:
        sim.wait_cycles(1, 90)
        # a rollout without cuts first: how long each phase lasts on this machine
        since = len(sim.stamps)
        got, state, st = power_cut_round(sim, 1, rng, (), "%s.1" % firmware_version())
        windows = measure(sim, since)
        assert state == "confirmed" and windows, (state, windows)
        rnd = 1
        while len(trials) < TRIALS or {t["target"] for t in trials} != set(PHASES):
            missing = [p for p in PHASES if p not in {t["target"] for t in trials}]
            assert rnd < 16, (missing, trials)   # a late cut skips the next target now and then; not this often
            rnd += 1
            # once there are enough cuts, a round aims at one phase still missing: with no cut before
            # it in that round, no late cut can carry the rollout past it (a loaded machine does that)
            targets = ROUNDS[(rnd - 1) % len(ROUNDS)] if len(trials) < TRIALS else (missing[0],)
            got, state, st = power_cut_round(sim, rnd, rng, targets, "%s.%d" % (firmware_version(), rnd), windows)
            assert state == "confirmed", (rnd, got, "\n".join(sim.box_log[-40:]))
            # the new slot runs, confirmed, and its security counter is stored
            assert (st.active, st.trial, st.counter, st.crash_boots) == (rnd % 2, BS.CONFIRMED, rnd, 0), st.describe()
            trials += got
        assert not any("reverting" in x or "RESCUE" in x or "Traceback" in x for x in sim.box_log)
    finally:
        sim.stop()
    by_phase = {}
    for t in trials:
        by_phase[t["phase"]] = by_phase.get(t["phase"], 0) + 1
    print("%d power cuts in %d rollouts: %s; phases (s): %s" % (len(trials), rnd, by_phase, windows))
    assert {t["target"] for t in trials} == set(PHASES)
    assert len(set(by_phase) & set(PHASES)) >= 4, by_phase
