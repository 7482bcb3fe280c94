"""The sim board and its simulated hardware: LED/state, cable, power, button, watchdog, reboot, power cut.

One small simulation (two dynamic printers) runs the real box on MicroPython from its
flash image; faults go in through Simulation.inject, the same commands as
`python -m simulator run --forever` reads from stdin. The board's network cut-off is
also checked directly on MicroPython.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from simulator.runner import ROOT, SimError, Simulation

SNMP_PORT = 17361
CLOUD_PORT = 17643
WATCHDOG_S = 3
INTERVAL = 5
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def _small_site(path):
    with open(os.path.join(ROOT, "simulator", "site.yaml")) as f:
        site = yaml.safe_load(f)
    printers = [d for d in site["devices"] if d.get("kind") == "dynamic" and d.get("printer")][:2]
    for i, d in enumerate(printers):
        d["address"] = "127.31.6.%d" % (10 + i)
    site["network"] = "127.31.6.0/24"
    site["devices"] = printers
    with open(path, "w") as f:
        yaml.safe_dump(site, f)
    return [d["address"] for d in printers]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("boardsim")
    addrs = _small_site(str(d / "site.yaml"))
    s = Simulation(str(d), snmp_port=SNMP_PORT, cloud_port=CLOUD_PORT, interval=INTERVAL,
                   liberty="127.77.16.1", rescue="127.77.16.2", site_yaml=str(d / "site.yaml"),
                   echo=lambda s: None, watchdog_s=WATCHDOG_S, targets=["%s-%s" % (addrs[0], addrs[-1])])
    try:
        s.start()
        s.wait_cycles(1, 120)
        yield s
    finally:
        s.stop()


def _uploaded(sim):
    return sum(1 for line in sim.box_log if "uploaded" in line)


def _upload_ids(sim):
    return sorted({u["upload"] for u in sim.cloud.store.uploads(sim.serial)})


def _assert_nothing_lost(sim):
    ids = _upload_ids(sim)
    assert ids and ids == list(range(1, ids[-1] + 1)), ids


def _wait_uploads(sim, n, timeout=90):
    target = _uploaded(sim) + n
    sim.wait_for("%d more uploads" % n, lambda: _uploaded(sim) >= target, timeout)


def test_led_and_hardware_state_are_visible(sim):
    st = sim.board_state()
    assert sim.led() == "running" and st["led"] == "running"
    assert st["link"] is True and st["power"] == "adapter" and st["address"]
    assert len(st["mac"].split(":")) == 6 and st["mac"].startswith("02:")
    # No RTC: the box learnt the time from the cloud's reply.
    sim.wait_for("the clock", lambda: (sim.board_state() or {}).get("time"), 30)
    assert any("clock set from the cloud" in line for line in sim.box_log)


def test_cable_pull_pauses_the_box_and_replug_resumes_with_nothing_lost(sim):
    sim.inject("cable-pull")
    sim.wait_for("LED no-link", lambda: sim.led() == "no-link", 20)
    time.sleep(1.5)   # an upload already on the wire when the cable went may still land
    before = len(sim.cloud.store.uploads(sim.serial))
    mark = len(sim.box_log)
    time.sleep(2 * INTERVAL)
    assert len(sim.cloud.store.uploads(sim.serial)) == before
    assert not any("uploaded" in line for line in sim.box_log[mark:])
    # No new collection starts (a sweep already running may finish: its batch waits in the spool).
    assert sum("scan probed" in line for line in sim.box_log[mark:]) <= 1
    assert sim.board_state()["address"] is None
    sim.inject("cable-plug")
    sim.wait_for("LED running", lambda: sim.led() == "running", 60)
    _wait_uploads(sim, 2)
    _assert_nothing_lost(sim)
    assert {d["ip"] for d in sim.devices()} == {d.address for d in sim.site.devices}


def test_power_source_change_reaches_the_box(sim):
    sim.inject("poe")
    sim.wait_for("PoE", lambda: sim.board_state()["power"] == "poe", 20)
    assert any("power source: poe" in line for line in sim.box_log)
    sim.inject("adapter")
    sim.wait_for("adapter power", lambda: sim.board_state()["power"] == "adapter", 20)


def test_long_press_reboots_and_the_hardware_boots_it_again(sim):
    boots = sim.hw.boots
    sim.inject("long-press")
    sim.wait_for("a reboot", lambda: sim.hw.resets["reboot"] >= 1 and sim.hw.boots > boots, 30)
    _wait_uploads(sim, 1)
    _assert_nothing_lost(sim)


def test_watchdog_resets_a_hung_loop(sim):
    boots = sim.hw.boots
    sim.inject("hang")
    sim.wait_for("the hang", lambda: any("hanging on purpose" in line for line in sim.box_log), 20)
    sim.wait_for("a watchdog reset", lambda: sim.hw.resets["watchdog"] >= 1 and sim.hw.boots > boots, WATCHDOG_S + 20)
    assert sim.hw.boots == boots + 1
    _wait_uploads(sim, 1)
    assert sim.led() == "running"
    _assert_nothing_lost(sim)


def test_power_cut_then_power_on_loses_nothing(sim):
    _wait_uploads(sim, 1)
    sim.inject("power-cut 0.5")
    assert sim.hw.resets["power"] == 1
    _wait_uploads(sim, 2)
    _assert_nothing_lost(sim)
    assert sim.box.poll() is None


def test_unknown_commands_are_refused_with_the_list(sim):
    with pytest.raises(SimError) as e:
        sim.inject("unplug-everything")
    assert "cable-pull" in str(e.value)
    with pytest.raises(SimError):
        sim.inject("printer no-such-printer down")


BOARD_SCRIPT = r"""
import sys, os
sys.path[:0] = [ROOT + "/firmware", ROOT + "/board", ROOT + "/board/sim"]
import hal, board

class Rom:
    flash_path = "/tmp/x.img"

b = board.Board(Rom(), "slot_a")
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.close()
with open(STATE + "/link", "w") as f: f.write("down")
os.mkdir(STATE + "/events")
with open(STATE + "/events/000001", "w") as f: f.write("button 120\n")
with open(STATE + "/events/000002", "w") as f: f.write("button 7000\n")
ev = b.poll()
out = {"events": ev, "link": b.link_up(), "address": b.address(), "left": os.listdir(STATE + "/events")}
for call in (lambda: socket.socket(), lambda: socket.getaddrinfo("127.0.0.1", 80)):
    try:
        call(); out.setdefault("refused", []).append(False)
    except OSError as e:
        out.setdefault("refused", []).append(e.args[0] == 100)   # ENETDOWN
with open(STATE + "/link", "w") as f: f.write("up")
out["up"] = b.poll()
socket.socket().close()
b.feed_watchdog(); b.feed_watchdog()
out["fed"] = open(STATE + "/watchdog").read()
out["led"] = open(STATE + "/led").read()
import json
print(json.dumps(out))
"""


def test_sim_board_cuts_the_network_while_the_cable_is_out(tmp_path):
    script = tmp_path / "b.py"
    script.write_text("ROOT = %r\nSTATE = %r\n" % (ROOT, str(tmp_path)) + BOARD_SCRIPT)
    r = subprocess.run([MICROPYTHON, str(script)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, FLEETBOX_SIM_DIR=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["events"] == [["link", False], ["button", "press"], ["button", "long-press"]]
    assert out["link"] is False and out["address"] is None and out["left"] == []
    assert out["refused"] == [True, True]          # no socket, no lookup while the link is down
    assert out["up"] == [["link", True]]
    assert out["fed"] == "2" and out["led"] == "booting"


def test_fault_schedule_arguments_parse_or_explain():
    import argparse
    from simulator.__main__ import _fault_arg
    assert _fault_arg("20:cable-pull") == (20.0, "cable-pull")
    assert _fault_arg("1.5: printer hp-m404dn slow delay=3") == (1.5, "printer hp-m404dn slow delay=3")
    with pytest.raises(argparse.ArgumentTypeError):
        _fault_arg("cable-pull")
