"""Stage-0 loader and boot state on MicroPython, from a real flash image, through power cuts and crashes.

The flash is written by fbtool (partition table, loader, boot state, slots); the box
is the sim ROM on MicroPython, powered, reset and cut by the simulator's hardware
(simulator/hardware.py), which tells the ROM each reset's cause. The slots hold small
applications whose behaviour a file in the board's state directory chooses (confirm,
crash, idle), so each test drives the loader through one story.
"""
import hashlib
import importlib.util
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time

import pytest

from fbtool import flash, image
from simulator.hardware import Hardware

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
ROM = os.path.join(ROOT, "board", "sim", "rom.py")
WRITER = os.path.join(ROOT, "tests", "mp", "bootstate_writer.py")
POWER_CUT_TRIALS = 30
BS = flash.bootstate_module()

APP_MAIN = '''
import os
import sys
import time

import bootstate

VERSION = %r


def run(board):
    try:
        with open(os.getenv("FLEETBOX_SIM_DIR") + "/mode-" + VERSION) as f:
            mode = f.read().strip()
    except OSError:
        mode = "idle"
    print("app %%s on %%s: %%s" %% (VERSION, board.slot, mode))
    if mode == "confirm":
        print("confirmed", bootstate.confirm(board.slot))
    elif mode == "crash":
        sys.exit(75)   # dies early and reboots, as the app's fault handler does
    while True:
        time.sleep(1)
'''
APP_BOARD = '''
class Board:
    def __init__(self, rom, slot):
        self.rom = rom
        self.slot = slot
'''


def _sim_rom():
    spec = importlib.util.spec_from_file_location("sim_rom", ROM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SIM_ROM = _sim_rom()


def _pack(files, version, counter):
    """A format-1 firmware image (docs/firmware-image.md) of `files`, with a security counter."""
    manifest = {"format": 1, "kind": "app", "board": "sim", "version": version, "created": 0,
                "security_counter": counter,
                "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files]}
    mbytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    body = struct.pack(image.HEADER, image.MAGIC, 1, 0, len(mbytes)) + mbytes + b"".join(d for _, d in files)
    return body + hashlib.sha256(body).digest()


def _app_files(tmp, version):
    out = []
    for arc, text in (("fleetbox/__init__.mpy", ""), ("fleetbox/main.mpy", APP_MAIN % version),
                      ("board.mpy", APP_BOARD)):
        src = os.path.join(str(tmp), "src-%s-%s.py" % (version, arc.replace("/", "_")))
        with open(src, "w") as f:
            f.write(text)
        out.append((arc, image.compile_mpy(src, arc[:-4] + ".py")))
    return out


class Box:
    """A flash image with two test applications, and the simulated hardware that runs it."""

    def __init__(self, tmp, counter_a=0, counter_b=0, slot_b=True):
        self.dir = str(tmp)
        self.flash = os.path.join(self.dir, "flash.img")
        self.state_dir = os.path.join(self.dir, "board")
        os.makedirs(self.state_dir, exist_ok=True)
        self.board = flash.load_board("sim")
        flash.write_sim(self.flash, _pack(_app_files(tmp, "1.0"), "1.0", counter_a), identity={}, config={},
                        erase=True)
        if slot_b:
            self.write_slot("slot_b", _pack(_app_files(tmp, "2.0"), "2.0", counter_b))
        self.lines = []
        self.hw = None

    def write_slot(self, name, blob):
        part = [p for p in self.board["flash"]["partitions"] if p["name"] == name][0]
        data = blob if len(blob) == part["size"] else flash.slot_partition(self.board, name, blob)
        with open(self.flash, "r+b") as f:
            f.seek(part["offset"])
            f.write(data)

    def mode(self, version, mode):
        with open(os.path.join(self.state_dir, "mode-" + version), "w") as f:
            f.write(mode)

    def bootstate(self, fn, *args):
        """Run a bootstate function on the host against this flash (as the updater does on the box)."""
        rom = SIM_ROM.Rom(self.flash)
        try:
            return fn(*args, dev=rom.partition("bootstate"))
        finally:
            rom.flash.close()

    def state(self):
        rom = SIM_ROM.Rom(self.flash)
        try:
            store = BS.Store(rom.partition("bootstate"))
            st = store.load()
            return st, store.valid
        finally:
            rom.flash.close()

    def power_on(self):
        cmd = [MICROPYTHON, "-X", "heapsize=512K", ROM, self.flash]
        self.hw = Hardware(self.state_dir, cmd, os.environ, self.lines.append, watchdog_s=60, echo=self.lines.append)
        self.hw.power_on()

    def count(self, text):
        return sum(1 for line in list(self.lines) if text in line)

    def wait(self, text, n=1, timeout=30):
        deadline = time.time() + timeout
        while self.count(text) < n:
            if time.time() > deadline:
                raise AssertionError("no %d x %r in:\n%s" % (n, text, "\n".join(self.lines)))
            time.sleep(0.05)

    def off(self):
        if self.hw:
            self.hw.shutdown()

    def log(self):
        return "\n".join(self.lines)


@pytest.fixture
def box(tmp_path):
    made = []

    def make(**kw):
        b = Box(tmp_path, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.off()


def test_boot_state_matches_the_documented_vector():
    with open(os.path.join(ROOT, "docs", "flash-layout.md")) as f:
        doc = f.read()
    block = doc.split("## Boot state")[1].split("```")[1]
    hexed = "".join(re.sub(r"\(.*?\)", "", block).split())
    st = BS.State()
    st.active, st.trial, st.crash_boots, st.seq, st.counter = 1, BS.PENDING, 1, 5, 7
    st.records[0] = (b"\x11" * 32, 7, "1.2.0")
    assert bytes(BS.encode(st)).hex() == hexed
    back = BS.decode(bytes.fromhex(hexed))
    assert (back.active, back.trial, back.counter, back.records[1]) == (1, BS.PENDING, 7, None)


def test_power_cut_while_boot_state_is_written_always_leaves_one_valid_copy(tmp_path):
    board = flash.load_board("sim")
    img = str(tmp_path / "flash.img")
    with open(img, "wb") as f:
        f.write(b"\xff" * board["flash"]["size"])
    with open(img, "r+b") as f:
        f.write(flash.partition_table(board))
    rng = random.Random(11)
    last = 0
    single = 0
    for trial in range(POWER_CUT_TRIALS):
        p = subprocess.Popen([MICROPYTHON, "-X", "heapsize=256K", WRITER, ROOT, img, "write"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines = []
        want = rng.randint(1, 30)
        while len(lines) < want:
            line = p.stdout.readline()
            assert line.startswith("saved "), "writer died: %s" % "".join(lines + [line, p.stdout.read()])
            lines.append(line)
        time.sleep(rng.uniform(0, 0.005))
        os.killpg(p.pid, signal.SIGKILL)
        lines += p.stdout.read().splitlines(True)
        p.wait()
        saved = [int(x.split()[1]) for x in lines if x.startswith("saved ") and x.endswith("\n")]
        if lines[-1] != "saved %d\n" % saved[-1]:
            saved.append(saved[-1] + 1)     # cut while printing: that save had returned
        # The box reads it back: the newest save that returned, or the one in flight.
        out = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", WRITER, ROOT, img, "check"],
                             capture_output=True, text=True, timeout=60).stdout
        got = json.loads(out.strip().splitlines()[-1])
        assert got["valid"] >= 1 and got["consistent"], (trial, got)
        assert got["counter"] in (saved[-1], saved[-1] + 1), (trial, got, saved[-1])
        # So does the host's own reading of the partition.
        host = flash.read_boot_state(flash.read_partition(img, board, "bootstate"), board["flash"]["block_size"])
        assert host.counter == got["counter"] and host.seq == got["seq"]
        assert saved[0] == last + 1 or saved[0] == last + 2, (trial, last, saved[0])
        last = got["counter"]
        single += got["valid"] == 1
    print("%d power cuts; %d left a single valid copy (cut between erase and program)"
          % (POWER_CUT_TRIALS, single))


def test_a_staged_slot_boots_on_trial_confirms_and_is_verified_once(box):
    b = box()
    b.mode("2.0", "confirm")
    b.bootstate(BS.set_pending, "slot_b", None)
    b.power_on()
    b.wait("confirmed True")
    b.off()
    log = b.log()
    assert "slot_b 2.0 boots on trial" in log and "slot_b verified whole: 3 files" in log
    st, valid = b.state()
    assert (st.active, st.trial, valid) == (1, BS.CONFIRMED, 2)
    assert st.records[1][2] == "2.0"
    # The next boot trusts the verified-once record: no whole-slot check, no trial.
    b.lines.clear()
    b.power_on()
    b.wait("app 2.0 on slot_b")
    b.off()
    assert "verified whole" not in b.log() and "on trial" not in b.log()


def test_a_crash_loop_on_trial_reverts_to_the_previous_slot(box):
    b = box()
    b.mode("2.0", "crash")
    b.bootstate(BS.set_pending, "slot_b", None)
    b.power_on()
    b.wait("app 1.0 on slot_a", timeout=60)
    b.off()
    assert b.count("app 2.0 on slot_b") == 1 + BS.MAX_CRASH_BOOTS
    assert "reverting from slot_b to slot_a: crash loop" in b.log()
    st, _ = b.state()
    assert (st.active, st.trial, st.reverted_from, st.reason) == (0, BS.CONFIRMED, 1, BS.REASON_CRASH_LOOP)
    assert st.bad == 2


def test_power_cuts_during_a_trial_do_not_revert_it(box):
    b = box()
    b.mode("2.0", "idle")
    b.bootstate(BS.set_pending, "slot_b", None)
    b.power_on()
    b.wait("app 2.0 on slot_b")
    rng = random.Random(5)
    cuts = BS.MAX_CRASH_BOOTS + 3
    for _i in range(cuts):
        # At a random instant: while the loader verifies or writes the boot state, or later.
        time.sleep(rng.uniform(0, 0.4))
        b.hw.power_cut(0.05)
    b.wait("app 2.0 on slot_b", n=b.count("app 2.0 on slot_b") + 1)
    st, _ = b.state()
    assert (st.active, st.trial, st.crash_boots) == (1, BS.PENDING, 0), st.describe()
    assert 1 <= st.power_boots <= cuts
    # The good image confirms itself at last; a crash reset before that would have counted.
    b.mode("2.0", "confirm")
    b.hw.power_cut(0.05)
    b.wait("confirmed True")
    b.off()
    assert "reverting" not in b.log() and b.count("app 1.0") == 0
    st, _ = b.state()
    assert (st.active, st.trial) == (1, BS.CONFIRMED)


def test_a_slot_below_the_security_counter_is_refused(box):
    b = box(counter_a=5, counter_b=3)
    assert b.state()[0].counter == 5          # fbtool flash stored slot A's counter
    b.mode("2.0", "confirm")
    b.bootstate(BS.set_pending, "slot_b", None)
    b.power_on()
    b.wait("app 1.0 on slot_a")
    b.off()
    assert "slot_b refused: security counter 3 is below 5" in b.log()
    assert b.count("app 2.0") == 0
    st, _ = b.state()
    assert (st.active, st.counter, st.reason) == (0, 5, BS.REASON_ROLLBACK)


def test_a_newer_security_counter_is_stored_once_confirmed(box):
    b = box(counter_a=1, counter_b=4)
    b.mode("2.0", "confirm")
    b.bootstate(BS.set_pending, "slot_b", None)
    b.power_on()
    b.wait("confirmed True")
    b.off()
    st, _ = b.state()
    assert (st.active, st.counter) == (1, 4)
    # slot A (counter 1) can no longer come back: not even as the fallback.
    b.write_slot("slot_b", b"\xff" * 0x100000)
    b.lines.clear()
    b.power_on()
    b.wait("RESCUE")
    b.off()
    assert "slot_a refused: security counter 1 is below 4" in b.log()


def test_damaged_boot_state_copies(box):
    b = box()
    b.bootstate(BS.set_pending, "slot_b", None)   # seq 1 in block 1; flash's seq 0 in block 0
    bs_part = [p for p in b.board["flash"]["partitions"] if p["name"] == "bootstate"][0]
    block = b.board["flash"]["block_size"]
    with open(b.flash, "r+b") as f:
        f.seek(bs_part["offset"] + block + 40)
        f.write(b"\x5a")                          # the newest copy rots: the older one stands
    b.power_on()
    b.wait("app 1.0 on slot_a")
    b.off()
    assert "(1 valid copies)" in b.log() and b.count("app 2.0") == 0
    with open(b.flash, "r+b") as f:
        for blk in (0, 1):
            f.seek(bs_part["offset"] + blk * block + 7)
            f.write(b"\x55")
    b.lines.clear()
    b.power_on()
    b.wait("app 1.0 on slot_a")
    b.off()
    assert "(0 valid copies)" in b.log()
    st, valid = b.state()                        # written afresh, with slot A's record
    assert valid >= 1 and st.active == 0 and st.records[0][2] == "1.0"


def test_no_slot_verifies_rescue_without_crashing(box):
    b = box(slot_b=False)
    files = dict(_app_files(b.dir, "1.0"))
    manifest = json.loads(flash.slot_files({"version": "1.0", "files": [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()]},
        {})["manifest.json"])
    files["fleetbox/main.mpy"] = files["fleetbox/main.mpy"][:-1] + b"\x00"   # one flipped byte
    files["manifest.json"] = json.dumps(manifest).encode()
    b.write_slot("slot_a", flash.lfs_partition(0x100000, 4096, files))
    b.power_on()
    b.wait("RESCUE: no slot verifies")
    time.sleep(1.5)
    assert b.hw.running(), b.log()               # waits for rescue: no exit, no traceback
    b.off()
    log = b.log()
    assert "slot_a does not verify: /app/fleetbox/main.mpy does not match its digest" in log
    assert "slot_b does not verify: no usable manifest" in log   # flashed empty
    assert "Traceback" not in log and b.count("app ") == 0
    with open(os.path.join(b.state_dir, "led")) as f:
        assert f.read() == "rescue"


def test_the_real_firmware_confirms_its_trial_after_a_cycle_and_an_upload(tmp_path):
    """The whole firmware, staged into slot B, through a power cut at a random instant of its trial boot."""
    from simulator.runner import Simulation
    from tests.faults.update_sim import boot_state, one_printer_site
    site_yaml, printer = one_printer_site(tmp_path, 11)
    s = Simulation(str(tmp_path), snmp_port=17381, cloud_port=17653, interval=5, liberty="127.77.21.1",
                   rescue="127.77.21.2", site_yaml=site_yaml, echo=lambda m: None,
                   targets=[printer])
    try:
        s.prepare()
        s.start_site()
        s.start_cloud()
        s.flash_box()
        board = flash.load_board("sim")
        with open(s.image, "rb") as f:
            slot_b = flash.slot_partition(board, "slot_b", f.read())
        part = [p for p in board["flash"]["partitions"] if p["name"] == "slot_b"][0]
        with open(s.flash, "r+b") as f:
            f.seek(part["offset"])
            f.write(slot_b)
        rom = SIM_ROM.Rom(s.flash)
        BS.set_pending("slot_b", None, dev=rom.partition("bootstate"))
        rom.flash.close()
        s.boot_box()
        s.wait_for("the trial boot", lambda: any("boots on trial" in x for x in s.box_log), 30)
        time.sleep(random.Random().uniform(0, 1.5))
        s.hw.power_cut(0.2)      # while it verifies, starts, collects, uploads or confirms
        cut = len(s.box_log)
        s.wait_for("the box back", lambda: any(x.startswith("I loader: starting") for x in s.box_log[cut:]), 60)
        if not any("main: slot_b confirmed" in x for x in s.box_log[:cut]):
            s.wait_for("the confirmation", lambda: any("main: slot_b confirmed" in x for x in s.box_log[cut:]), 120)
        log = "\n".join(s.box_log)
        # Confirmed only after the box's first upload was acknowledged.
        confirmed = log.index("main: slot_b confirmed")
        assert "main: uploaded" in log[log.rindex("loader: reset cause", 0, confirmed):confirmed], log
        assert "reverting" not in log, log
        starts = [x for x in s.box_log if x.startswith("I loader: starting")]
        assert starts and all(x.endswith("from slot_b") for x in starts), starts
    finally:
        s.stop()
    st, _ = boot_state(s)
    assert (st.active, st.trial, st.crash_boots) == (1, BS.CONFIRMED, 0)
