"""Chaos soak: the simulator (sim board, site, cloud) under random faults for a set time, then an
accounting of the cloud's store against what the box collected from the printers.

    .venv/bin/python bench/chaos/soak.py [--minutes 30] [--seed N] [--fault-every 12] [--json]

Faults, drawn with the seed (several may overlap, never two of one kind): power cuts, cable
pulls, liberty/rescue/both outages, printer faults (down, unreachable, lossy, slow, jammed,
noPaper, doorOpen), a full or failing data partition (flash-full, flash-eio), and hostile
cloud replies (the simulator's `hostile` command: liberty, rescue or both answer with crafted
replies, simulator/hostile.py, one mode after another). At the end every fault is healed and
the box given time to drain, then:

- lost: readings in batches the box spooled (its log: "spooled batch N", or "recovered ... as batch
  N" for what a power cut left staged) that the cloud's
  store does not hold, except those the spool's policy dropped (evicted to make room,
  unreadable): every reading that policy keeps must arrive;
- duplicated: readings the store holds beyond the records of the uploads it stored (each upload
  id is stored once), plus devices read twice in one cycle;
- dead: the box stopped, died of a fatal error (health's "fault:"), rebooted itself or was
  reset by the watchdog; boots not explained by a power cut count too (a crash loop).

The clock is real time: the sim has no time scaling, so the box's cycle interval is short
(--interval, default 10 s) and the minutes below are wall-clock minutes of the box running.
Exit status 1 unless lost, duplicated and dead are all 0.
"""
import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sqlalchemy import text  # noqa: E402

from simulator.runner import FAULTS, Simulation  # noqa: E402

# Addresses and ports of their own: a soak can run beside the tests (they use 17xxx).
PORTS = {"snmp": 27161, "cloud": 27443, "web": {80: 27080, 443: 27444}, "liberty": "127.77.27.1",
         "rescue": "127.77.27.2"}

SPOOLED = re.compile(r"^I main: spooled batch (\d+): (\S+), cycle (\d+), (\d+) records")
# a batch a power cut left staged, adopted when the box started again (docs/uplink.md "Batch files")
RECOVERED = re.compile(r"^[IW] spool: recovered (\d+) records an interrupted sweep staged as batch (\d+)")
EVICTED = re.compile(r"^W main: spool full: evicted batches ([\d ]+)")
UNREADABLE = re.compile(r"^W spool: batch (\d+) unreadable, dropped")
CYCLE_FAILED = re.compile(r"^E main: cycle \d+ failed at (\w+)")
FATAL = re.compile(r"^E health: fault: ")

PRINTER_FAULTS = (("down", "up"), ("unreachable", "up"), ("lossy", "up"), ("slow", "up"),
                  ("jammed", "clear"), ("noPaper", "clear"), ("doorOpen", "clear"))


def _site_yaml(state_dir):
    """The default site without Canon's second agent: its fixed UDP port 47545 would collide
    with a test's site running beside the soak."""
    import yaml
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    for dev in site.get("devices", []):
        dev.pop("extra_agent_port", None)
    path = os.path.join(state_dir, "site.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(site, f)
    return path


class SoakSimulation(Simulation):
    def box_config(self):
        cfg = Simulation.box_config(self)
        # retries within the soak's minutes: backoff after failed drains, return to liberty, timeouts
        cfg.update(backoff_s=[2, 15], return_after_s=30, http_timeout_s=5)
        return cfg


def hostile_supported():
    """Whether this simulator offers the `hostile` fault (older ones do not)."""
    return "hostile" in FAULTS


class Soak:
    def __init__(self, state_dir, seed, minutes, fault_every=12.0, interval=10, ports=PORTS, script=None,
                 hold_scale=1.0, hold_at_least=None, hostile_targets=("liberty", "liberty", "rescue", "both"),
                 echo=print):
        self.rng = random.Random(seed)
        self.seed = seed
        self.seconds = minutes * 60
        self.fault_every = fault_every
        self.script = list(script) if script else None   # fixed kinds in order (the short version)
        self.hold_scale = hold_scale                     # shorter faults (the short version)
        self.hold_at_least = dict(hold_at_least or {})   # kind -> seconds, after the scaling
        self.hostile_targets = hostile_targets           # drawn from for each hostile fault
        self.echo = echo
        self.sim = SoakSimulation(state_dir, snmp_port=ports["snmp"], cloud_port=ports["cloud"], interval=interval,
                                  liberty=ports["liberty"], rescue=ports["rescue"], web_ports=ports["web"],
                                  echo=lambda line: None, watchdog_s=30, site_yaml=_site_yaml(state_dir))
        self.active = {}       # kind -> (undo command, time it is due)
        self.faults = {}       # command verb -> times injected
        self.exits = []        # exit codes of the box stopping by itself
        self.started = self.ended = None

    # -- faults
    def _printers(self):
        return [d.name for d in self.sim.site.devices if d.is_printer and d.kind == "dynamic"]

    def _draw(self, kind):
        """(command, undo command or None, seconds held) for one fault of `kind`."""
        r = self.rng
        if kind == "power":
            return "power-cut %.1f" % r.uniform(0.2, 2.5), None, 0
        if kind == "cable":
            return "cable-pull", "cable-plug", r.uniform(2, 20)
        if kind == "cloud":
            which = r.choice(("liberty", "rescue", "both"))
            if which == "both":
                return "liberty-down rescue-down", "liberty-up rescue-up", r.uniform(5, 40)
            return which + "-down", which + "-up", r.uniform(5, 60)
        if kind == "printer":
            name = r.choice(self._printers())
            fault, undo = r.choice(PRINTER_FAULTS)
            return "printer %s %s" % (name, fault), "printer %s %s" % (name, undo), r.uniform(5, 40)
        if kind == "flash":
            return r.choice(("flash-full", "flash-eio")), "flash-ok", r.uniform(1, 15)
        if kind == "hostile":
            which = r.choice(self.hostile_targets)
            return "hostile " + which, "hostile-off", r.uniform(10, 40)
        raise ValueError(kind)

    def kinds(self):
        return ["power", "cable", "cloud", "printer", "flash"] + (["hostile"] if hostile_supported() else [])

    def _apply(self, commands):
        for command in commands.split(" ") if commands.startswith(("liberty-", "rescue-")) else [commands]:
            self.echo("%7.1f s  %s: %s" % (time.monotonic() - self.started, command, self.sim.inject(command)))

    def inject(self, kind):
        command, undo, hold = self._draw(kind)
        verb = command.split()[0] if not command.startswith("printer") else "printer-" + command.split()[2]
        self.faults[verb] = self.faults.get(verb, 0) + 1
        self._apply(command)
        if undo:
            hold = max(hold * self.hold_scale, self.hold_at_least.get(kind, 0))
            self.active[kind] = (undo, time.monotonic() + hold)

    def _heal_due(self, everything=False):
        now = time.monotonic()
        for kind, (undo, due) in list(self.active.items()):
            if everything or now >= due:
                del self.active[kind]
                self._apply(undo)

    def _watch(self):
        hw = self.sim.hw
        if hw.exit is not None:
            self.exits.append(hw.exit)
            self.echo("box stopped (exit %s): powering it on again" % hw.exit)
            hw.power_on()

    # -- the run
    def run(self):
        sim = self.sim
        old_handlers = None
        try:
            sim.start()
            old_handlers = _stop_on_signals()   # after the cloud's server, which takes SIGINT for itself
            sim.wait_cycles(1, 240)
            self.started = time.monotonic()
            next_fault = self.started + self._gap()
            while True:
                now = time.monotonic()
                if self.script is not None:
                    if not self.script and not self.active:
                        break
                elif now - self.started >= self.seconds:
                    break
                self._heal_due()
                self._watch()
                if now >= next_fault:
                    pending = self.script if self.script is not None else self.kinds()
                    free = [k for k in pending if k not in self.active]
                    if free:
                        kind = free[0] if self.script is not None else self.rng.choice(free)
                        if self.script is not None:
                            self.script.remove(kind)
                        self.inject(kind)
                    next_fault = now + self._gap()
                time.sleep(0.2)
            self._heal_due(everything=True)
            self.ended = time.monotonic()
            self._settle()
            return self.account()
        finally:
            sim.stop()
            if old_handlers:
                import signal
                for signum, handler in old_handlers.items():
                    signal.signal(signum, handler)

    def _gap(self):
        return self.rng.uniform(0.3, 1.7) * self.fault_every

    def _settle(self, timeout=180):
        """Wait until every batch the box spooled is in the store or dropped by policy, and one more
        cycle arrived (so what was collected before the last fault went up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._watch()
            if not self._missing(self._log()):
                return
            time.sleep(1)

    # -- the accounting
    def _log(self):
        spooled, dropped, errors, fatal = {}, set(), {}, 0
        for line in list(self.sim.box_log):
            m = SPOOLED.match(line)
            if m:
                spooled[int(m.group(1))] = int(m.group(4))
                continue
            m = RECOVERED.match(line)
            if m:
                spooled[int(m.group(2))] = int(m.group(1))
                continue
            m = EVICTED.match(line) or UNREADABLE.match(line)
            if m:
                dropped.update(int(i) for i in m.group(1).split())
                continue
            m = CYCLE_FAILED.match(line)
            if m:
                errors[m.group(1)] = errors.get(m.group(1), 0) + 1
            elif FATAL.match(line):
                fatal += 1
        return spooled, dropped, errors, fatal

    def _stored(self):
        return {u["upload"]: u["records"] for u in self.sim.cloud.store.uploads(self.sim.serial)}

    def _missing(self, log):
        spooled, dropped = log[0], log[1]
        stored = self._stored()
        return {i: n for i, n in spooled.items() if i not in dropped and stored.get(i) != n}

    def account(self):
        log = self._log()
        spooled, dropped, errors, fatal = log
        missing = self._missing(log)
        lost = sum(n - min(n, self._stored().get(i, 0)) for i, n in missing.items())
        with self.sim.cloud.store.engine.connect() as c:
            box = {"box": self.sim.serial}
            readings = c.execute(text("SELECT COUNT(*) FROM readings WHERE box = :box"), box).scalar()
            in_uploads = c.execute(text("SELECT COALESCE(SUM(records), 0) FROM uploads WHERE box = :box"),
                                   box).scalar()
            # a device read twice in one cycle (cycles with a known time: before the box learns
            # the time, each boot's first cycle is cycle 0)
            twice = [list(row) for row in c.execute(text(
                "SELECT device, cycle, scan, COUNT(*) FROM readings WHERE box = :box AND cycle > 0 "
                "GROUP BY device, cycle, scan HAVING COUNT(*) > 1"), box)]
        # an upload is stored once (its id is the key); more readings than its records: stored twice
        duplicated = max(0, readings - in_uploads) + sum(row[3] - 1 for row in twice)
        hw = self.sim.hw
        unexplained_boots = hw.boots - 1 - hw.resets["power"] - hw.resets["watchdog"] - hw.resets["reboot"]
        dead = len(self.exits) + fatal + hw.resets["watchdog"] + hw.resets["reboot"] + max(0, unexplained_boots)
        return {
            "seed": self.seed, "lost": lost, "duplicated": int(duplicated), "dead": dead,
            "faults": sum(self.faults.values()), "faults_by_kind": dict(sorted(self.faults.items())),
            "minutes": round(((self.ended or time.monotonic()) - self.started) / 60, 1),
            "batches_spooled": len(spooled), "batches_dropped_by_policy": len(dropped & set(spooled)),
            "batches_missing": sorted(missing), "readings_stored": readings, "duplicates_first": twice[:5],
            "hostile_replies": self.sim.hostile_replies(),
            "cycle_errors": errors, "fatal": fatal, "exits": self.exits, "boots": hw.boots, "resets": dict(hw.resets),
        }


def _stop_on_signals():
    """Ctrl-C and SIGTERM end the soak through its clean-up (the box, site and cloud stop);
    returns the handlers they had."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    old = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        old[signum] = signal.signal(signum, stop)
    return old


def summary(r):
    return ("lost %d  duplicated %d  dead %d  |  faults %d over %.1f minutes (real time)  |  %d batches spooled, "
            "%d dropped by the spool's policy, %d readings stored  |  %d hostile replies  |  boots %d, resets %s, "
            "cycle errors %s" % (
                r["lost"], r["duplicated"], r["dead"], r["faults"], r["minutes"], r["batches_spooled"],
                r["batches_dropped_by_policy"], r["readings_stored"], sum(r["hostile_replies"].values()), r["boots"],
                r["resets"], r["cycle_errors"] or {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault-every", type=float, default=12.0, help="mean seconds between faults")
    ap.add_argument("--interval", type=int, default=10, help="the box's full-scan interval, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the state directory (box.log, cloud.sqlite)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    state = tempfile.mkdtemp(prefix="fleetbox-soak-")
    print("chaos soak: seed %d, %.0f minutes, state %s" % (seed, args.minutes, state), flush=True)
    try:
        r = Soak(state, seed, args.minutes, args.fault_every, args.interval,
                 echo=lambda s: print(s, flush=True)).run()
    finally:
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(r, indent=1) if args.json else summary(r))
    return 0 if r["lost"] == r["duplicated"] == r["dead"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
