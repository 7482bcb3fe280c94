"""A small simulated site for the update path: one printer, short intervals, the whole firmware on
MicroPython booted from a real flash image that trusts the sim's signing root (simulator/updates.py);
and the power-cut trials of tests/faults/test_update_powercut.py and bench/update/powercut.py."""
import importlib.util
import os
import time

import yaml

from fbtool import flash
from simulator.runner import Simulation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BS = flash.bootstate_module()

# Where each phase of an update begins, as the box logs it (the last one seen before a cut names the phase).
PHASES = ("download", "install", "switch", "trial boot", "confirm")
MARKS = (("download", ("I update: offer: ", "I update: resuming ")),
         ("install", ("I update: downloaded ",)),
         ("switch", ("for a trial boot",)),
         ("trial boot", (" boots on trial",)),
         ("confirm", (" is on trial: it confirms",)),
         ("after", (" confirmed",)))


def _rom():
    spec = importlib.util.spec_from_file_location("sim_rom", os.path.join(ROOT, "board", "sim", "rom.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SIM_ROM = _rom()


def one_printer_site(directory, net):
    """(site.yaml written in `directory`, address): the default site's first dynamic printer alone,
    on 127.31.<net>.10, so each test file's simulation has a /24 of its own."""
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    printers = [d for d in site["devices"] if d.get("kind") == "dynamic" and d.get("printer")][:1]
    address = "127.31.%d.10" % net
    printers[0]["address"] = address
    site["network"] = "127.31.%d.0/24" % net
    site["devices"] = printers
    path = os.path.join(str(directory), "site.yaml")
    os.makedirs(str(directory), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(site, f)
    return path, address


def small_sim(state_dir, net, interval=3, echo=None):
    """A started Simulation of one printer on 127.31.<net>.10, liberty/rescue on 127.77.<net>.1/.2."""
    path, address = one_printer_site(state_dir, net)
    stamps = []      # (arrival time, line) of every box log line: how long each phase lasts here

    def stamp(message):
        if message.startswith("  | "):
            stamps.append((time.time(), message[4:]))
        if echo:
            echo(message)
    sim = Simulation(state_dir, snmp_port=17700 + net, cloud_port=17800 + net, interval=interval,
                     liberty="127.77.%d.1" % net, rescue="127.77.%d.2" % net, site_yaml=path,
                     echo=stamp, targets=[address], updates=True,
                     web_ports={80: 17900 + net, 443: 17950 + net})
    sim.stamps = stamps
    try:
        sim.start()
    except BaseException:
        sim.stop()
        raise
    return sim


def boot_state(sim):
    """(state, valid copies) of the box's boot-state partition, read from its flash file."""
    rom = SIM_ROM.Rom(sim.flash)
    try:
        store = BS.Store(rom.partition("bootstate"))
        return store.load(), store.valid
    finally:
        rom.flash.close()


def find(sim, text, since=0):
    """Index of the first box log line at or after since that holds text, or None."""
    lines = sim.box_log
    for i in range(since, len(lines)):
        if text in lines[i]:
            return i
    return None


def wait_line(sim, text, since=0, timeout=60):
    deadline = time.time() + timeout
    while True:
        i = find(sim, text, since)
        if i is not None:
            return i
        if sim.hw.exit is not None or time.time() > deadline:
            raise AssertionError("no %r in the box's log since line %d:\n%s"
                                 % (text, since, "\n".join(sim.box_log[max(since - 5, 0):][-40:])))
        time.sleep(0.05)


def phase_at(lines):
    """The update phase the box was in when its log ended with lines: the last mark seen."""
    for i in range(len(lines) - 1, -1, -1):
        for phase, texts in MARKS:
            if any(t in lines[i] for t in texts) and (phase != "after" or lines[i].rstrip().endswith(" confirmed")):
                return phase
    return None


def back(sim, since, timeout=90):
    """The box booted again after a cut at line since, and uploaded: the slot it started from."""
    start = wait_line(sim, "I loader: starting ", since, timeout)
    wait_line(sim, "I main: uploaded ", start, timeout)
    return sim.box_log[start].split()[-1]


def cut(sim, round_start):
    """Cut the power now (SIGKILL) and power on again; (phase hit, box log index of the cut)."""
    sim.hw.power_off()
    time.sleep(0.15)            # what the box printed before it died is still in the pipe
    at = len(sim.box_log)
    phase = phase_at(sim.box_log[round_start:at])
    sim.hw.resets["power"] += 1
    sim.hw.power_on()
    return phase, at


# -- power-cut trials: a rollout per round, cuts at random instants of its phases
TRIGGERS = (("download", ("I update: offer: ", "I update: resuming ")),
            ("install", ("I update: downloaded ",)),
            ("switch", ("for a trial boot",)),
            ("trial boot", (" boots on trial",)),
            ("confirm", (" is on trial: it confirms",)))
# How long each phase lasts on this machine, about: a cut falls uniformly within it after its mark.
WINDOWS = {"download": 2.5, "install": 0.8, "switch": 1.0, "trial boot": 0.8, "confirm": 2.0}
# Rounds: the download is cut twice (it resumes), then the install, then one of the three later phases
# (after a cut there the box boots, uploads and so confirms: one such cut per rollout).
ROUNDS = (("download", "download", "install", "switch"),
          ("download", "download", "install", "trial boot"),
          ("download", "download", "install", "confirm"))


def _next_mark(sim, since, done, timeout=120):
    """(line index, phase) of the next phase mark at or after since; None once done() says the rollout ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = sim.box_log
        for i in range(since, len(lines)):
            for phase, texts in TRIGGERS:
                if any(t in lines[i] for t in texts):
                    return i, phase
        since = max(since, len(lines))
        if done():
            return None
        time.sleep(0.02)
    raise AssertionError("no update step within %d s:\n%s" % (timeout, "\n".join(sim.box_log[-30:])))


def measure(sim, since):
    """{phase: seconds} of an update without cuts whose box lines start at stamps[since]."""
    marks = [texts for _, texts in TRIGGERS] + [(" confirmed",)]
    times = []
    for texts in marks:
        for t, line in sim.stamps[since:]:
            if any(x in line for x in texts) and (texts != (" confirmed",) or line.rstrip().endswith(" confirmed")):
                times.append(t)
                break
    if len(times) != len(marks):
        return None
    return {phase: max(0.05, times[i + 1] - times[i]) for i, phase in enumerate(PHASES)}


class Bricked(AssertionError):
    """The box did not boot and upload after a cut: .trials, the round's trials, the last one bricked."""

    def __init__(self, trials, msg):
        AssertionError.__init__(self, "the box did not come back after a cut in %s: %s" % (trials[-1]["phase"], msg))
        self.trials = trials


def power_cut_round(sim, rnd, rng, targets, version, windows=None):
    """Roll out version (security counter rnd) and cut the power once per target phase, each at a
    random instant of it; every cut must end in a box that boots and uploads. Returns (trials,
    rollout state, boot state): a trial is {"round", "target", "phase" (the one it hit), "slot"}."""
    upd = sim.updates
    since = len(sim.box_log)
    rid = upd.publish(upd.build(version, rnd))

    def done():
        return upd.box_state(rid)[0] in ("confirmed", "refused", "reverted")
    trials = []
    cursor = since
    for target in targets:
        want = PHASES.index(target)
        while True:
            mark = _next_mark(sim, cursor, done)
            if mark is None or PHASES.index(mark[1]) >= want:
                break
            cursor = mark[0] + 1
        if mark is None or mark[1] != target:
            continue        # the rollout went past this phase (an earlier cut landed late)
        time.sleep(rng.uniform(0, (windows or WINDOWS)[target]))
        hit, at = cut(sim, since)
        t0 = time.time()
        trial = {"round": rnd, "target": target, "phase": hit}
        try:
            trial["slot"] = back(sim, at)
        except AssertionError as e:
            trial["outcome"] = "brick"
            raise Bricked(trials + [trial], str(e))
        trial["back_s"] = time.time() - t0
        trials.append(trial)
        cursor = at
    state, _ = upd.follow(rid, timeout=180, since=since)
    for t in trials:
        t["outcome"] = state
    return trials, state, boot_state(sim)[0]
