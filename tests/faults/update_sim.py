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


def small_sim(state_dir, net, interval=3, echo=None):
    """A started Simulation of one printer on 127.31.<net>.10, liberty/rescue on 127.77.<net>.1/.2."""
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    printers = [d for d in site["devices"] if d.get("kind") == "dynamic" and d.get("printer")][:1]
    address = "127.31.%d.10" % net
    printers[0]["address"] = address
    site["network"] = "127.31.%d.0/24" % net
    site["devices"] = printers
    path = os.path.join(state_dir, "site.yaml")
    os.makedirs(state_dir, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(site, f)
    sim = Simulation(state_dir, snmp_port=17700 + net, cloud_port=17800 + net, interval=interval,
                     liberty="127.77.%d.1" % net, rescue="127.77.%d.2" % net, site_yaml=path,
                     echo=echo or (lambda m: None), targets=[address], updates=True,
                     web_ports={80: 17900 + net, 443: 17950 + net})
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
