"""The loader on a box with a trust anchor (fbtool flash --root): it boots a slot the
updater installed only when the slot matches the signed head it came from, slot A by the
record written at manufacturing, and refuses anything else (the other slot keeps running)."""
import hashlib
import json
import os
import subprocess

from fbtool import flash
from tests import update_kit as kit
from tests.faults.test_boot_state import BS, MICROPYTHON, ROOT, Box, _app_files, _pack

ROOT1 = os.path.join(kit.VECTORS, "root-1.fbr")


class SignedBox(Box):
    def __init__(self, tmp):
        Box.__init__(self, tmp, slot_b=False)
        with open(ROOT1, "rb") as f:
            flash.write_sim(self.flash, _pack(_app_files(tmp, "1.0"), "1.0", 0), identity={}, config={},
                            erase=True, root=f.read())

    def update(self, image, wrap, version="1.0", counter=0):
        paths = {}
        for name, blob in (("image", image), ("wrap", wrap), ("identity", json.dumps(kit.identity()).encode())):
            paths[name] = os.path.join(self.dir, "upd-" + name)
            with open(paths[name], "wb") as f:
                f.write(blob)
        os.makedirs(os.path.join(self.dir, "upd-state"), exist_ok=True)
        script = os.path.join(ROOT, "tests", "mp", "updater_flash.py")
        return subprocess.run([MICROPYTHON, "-X", "heapsize=512K", script,
                               ROOT, self.flash, paths["image"], paths["wrap"], paths["identity"], ROOT1,
                               os.path.join(self.dir, "upd-state"), version, str(counter)],
                              capture_output=True, text=True, timeout=120)

    def slot_b_files(self):
        part = [p for p in self.board["flash"]["partitions"] if p["name"] == "slot_b"][0]
        return flash.read_lfs(flash.read_partition(self.flash, self.board, "slot_b")[:part["size"]], 4096)


def _signed_app(tmp, version="2.0", counter=1, signers=("k2.pem", "k3.pem")):
    return kit.signed(_pack(_app_files(tmp, version), version, counter), signers=signers, chunk_size=1024,
                      security_counter=counter)


def test_an_installed_signed_slot_boots_on_trial_and_slot_a_by_its_record(tmp_path):
    b = SignedBox(tmp_path)
    try:
        image, wrap = _signed_app(b.dir)
        r = b.update(image, wrap)
        assert r.returncode == 0 and "staged 2.0" in r.stdout, r.stdout + r.stderr
        st, _ = b.state()
        assert st.trial == BS.STAGED and st.records[1][1:] == (1, "2.0")     # the updater's verified-once record
        b.bootstate(BS.set_pending, "slot_b", None)      # no record: the loader checks the signature
        b.mode("2.0", "confirm")
        b.power_on()
        b.wait("confirmed True")
        log = b.log()
        assert "slot_b 2.0 boots on trial" in log
        assert "slot_b verified whole and signed" in log
        assert "slot_a verified whole" not in log         # slot A: its manufacturing record
        assert "app 2.0 on slot_b" in log
        st, _ = b.state()
        assert (st.active, st.trial, st.counter) == (1, 0, 1)
    finally:
        b.off()


def test_a_slot_whose_signature_or_files_were_altered_is_refused(tmp_path):
    b = SignedBox(tmp_path)
    try:
        image, wrap = _signed_app(b.dir)
        assert b.update(image, wrap).returncode == 0
        fs = b.slot_b_files()
        names = fs.listdir("/")
        assert "update.sig" in names and "payload.tail" in names and "manifest.json" in names
        # the attacker swaps a file and writes a matching manifest.json: no signature covers it
        files = {p: fs.open(p, "rb").read() for p in ("fleetbox/main.mpy", "fleetbox/__init__.mpy", "board.mpy",
                                                     "update.sig", "payload.tail")}
        files["fleetbox/main.mpy"] = _app_files(b.dir, "6.6")[1][1]
        man = json.loads(fs.open("manifest.json", "rb").read())
        for ent in man["files"]:
            if ent["path"] == "fleetbox/main.mpy":
                ent["size"] = len(files["fleetbox/main.mpy"])
                ent["sha256"] = hashlib.sha256(files["fleetbox/main.mpy"]).hexdigest()
        files["manifest.json"] = json.dumps(man, separators=(",", ":"), sort_keys=True).encode()
        b.write_slot("slot_b", flash.lfs_partition(0x100000, 4096, files))
        b.bootstate(BS.set_pending, "slot_b", None)
        b.mode("1.0", "idle")
        b.power_on()
        b.wait("app 1.0 on slot_a")
        log = b.log()
        assert "slot_b does not verify: slot does not match its signed payload digest" in log, log
        assert "app 6.6" not in log
    finally:
        b.off()


def test_the_updater_refuses_an_image_below_threshold_and_nothing_is_staged(tmp_path):
    b = SignedBox(tmp_path)
    try:
        image, wrap = _signed_app(b.dir, signers=("k2.pem",))
        r = b.update(image, wrap)
        assert r.returncode == 3 and "refused threshold" in r.stdout, r.stdout + r.stderr
        st, _ = b.state()
        assert (st.active, st.trial) == (0, 0)
    finally:
        b.off()
