"""Rescue end to end, on MicroPython from a real flash image: a provisioned box whose two slots
no longer verify asks the rescue endpoint (pinned mutual TLS with its factory certificate) for
the image an operator marked for rescue. An image signed with a key its root does not list is
refused, reported with the next request, and the box keeps asking; a signed image that
crash-loops on trial is left by the loader, which the rescue client reports (reverted,
crash_loop) with its next request, so the service offers it no more; the next one comes with a
root rotation, which the box walks before it installs; the rescued firmware boots on trial,
uploads, confirms and reports it to the rescue rollout."""
import json
import os
import subprocess


from cloud.updates import Updates
from fbtool import flash, keys, updimage
from simulator.runner import Simulation, _tool
from tests import update_kit as kit
from tests.faults.test_boot_state import APP_BOARD, BS, _pack
from tests.faults.update_sim import boot_state, one_printer_site

RESCUE_RETRY_S = 2


def _publish_rescue(svc, payload, signers, counter):
    data, key = updimage.sign(payload, [keys.load_private(os.path.join(kit.VECTORS, n)) for n in signers],
                              security_counter=counter, min_loader=1, expires=kit.EXPIRES, created=kit.CREATED)
    row, _ = svc.publish(data, key)
    return svc.create_rollout({"image": row["digest"], "rescue": True})


CRASHING_MAIN = """
import sys

VERSION = "9.9"


def run(board):
    print("app 9.9 crashes")
    sys.exit(75)   # dies at once and reboots, as the app's fault handler does: a crash reset
"""


def _crashing_image(tmp):
    """A format-1 firmware image whose app reboots as soon as it starts: a crash loop on trial."""
    from fbtool import image
    files = []
    for arc, text in (("fleetbox/__init__.mpy", ""), ("fleetbox/main.mpy", CRASHING_MAIN), ("board.mpy", APP_BOARD)):
        src = os.path.join(str(tmp), "crash-" + arc.replace("/", "_")[:-4] + ".py")
        with open(src, "w") as f:
            f.write(text)
        files.append((arc, image.compile_mpy(src, arc[:-4] + ".py")))
    return _pack(files, "9.9", 1)


def _progress(svc, rid, box):
    got = [p for p in svc.rollout_status(rid)[0]["progress"] if p["box"] == box]
    return got[0] if got else {}


def _break_slots_and_add_the_root(s):
    """Re-flash the loader with the trust anchor (identity and data stay), then wipe both slots."""
    r = subprocess.run([_tool("fbtool"), "flash", "--sim", s.flash, "--image", s.image, "--root",
                        os.path.join(kit.VECTORS, "root-1.fbr")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    board = flash.load_board("sim")
    block = board["flash"]["block_size"]
    loader = flash.read_partition(s.flash, board, "loader")
    fast = flash.lfs_partition(len(loader), block, {"rescue.json": json.dumps(
        {"board": "sim", "retry_s": RESCUE_RETRY_S}).encode()}, existing=loader)
    with open(s.flash, "r+b") as f:
        for name, blob in (("loader", fast), ("slot_a", None), ("slot_b", None)):
            p = [x for x in board["flash"]["partitions"] if x["name"] == name][0]
            f.seek(p["offset"])
            f.write(blob if blob is not None else b"\xff" * p["size"])


def test_a_box_with_no_bootable_slot_is_rescued_boots_the_image_and_uploads(tmp_path):
    site_yaml, printer = one_printer_site(tmp_path, 13)
    s = Simulation(str(tmp_path), snmp_port=17391, cloud_port=17663, interval=5, liberty="127.77.23.1",
                   rescue="127.77.23.2", site_yaml=site_yaml, echo=lambda m: None,
                   targets=[printer], fresh=True)
    try:
        s.start()
        s.wait_for("the first upload", lambda: any("main: uploaded" in x for x in s.box_log), 90)
        s.hw.shutdown()
        _break_slots_and_add_the_root(s)
        svc = Updates(s.cloud.store, None)
        with open(s.image, "rb") as f:
            payload = f.read()
        # signed by k4 alone: a key root 1 does not list
        bad = _publish_rescue(svc, payload, ("k4.pem",), 1)
        s.box_log.clear()
        s.boot_box()
        s.wait_for("the refusal", lambda: any("rescue: image refused [unknown_key]" in x for x in s.box_log), 60)
        s.wait_for("the refusal reported", lambda: _progress(svc, bad, s.serial).get("state") == "refused", 30)
        assert _progress(svc, bad, s.serial)["reason"] == "unknown_key"
        assert s.led() == "rescue" and s.hw.running()
        # a signed image that crash-loops: booted on trial, left by the loader, reported by the rescue client
        crash = _publish_rescue(svc, _crashing_image(tmp_path), ("k2.pem", "k3.pem"), 1)
        s.wait_for("the crash loop's revert",
                   lambda: any("reverting from slot_b to slot_a: crash loop" in x for x in s.box_log), 90)
        s.wait_for("the revert reported", lambda: _progress(svc, crash, s.serial).get("state") == "reverted", 60)
        assert _progress(svc, crash, s.serial)["reason"] == "crash_loop"
        assert sum("app 9.9 crashes" in x for x in s.box_log) == 1 + BS.MAX_CRASH_BOOTS
        assert s.led() == "rescue" and s.hw.running()
        mark = len(s.box_log)
        # the operator rotates the root (k1 revoked, k4 in) and marks an image signed under it
        from cloud.rescue import Rescue
        with open(os.path.join(kit.VECTORS, "root-2.fbr"), "rb") as f:
            assert Rescue(s.cloud.store, None, None, svc).publish_root(f.read()) == (2, True)
        good = _publish_rescue(svc, payload, ("k2.pem", "k4.pem"), 1)
        s.wait_for("the rescued firmware's trial", lambda: any("boots on trial" in x for x in s.box_log[mark:]), 90)
        s.wait_for("its confirmation", lambda: any("main: slot_b confirmed" in x for x in s.box_log), 120)
        s.wait_for("the confirmation reported", lambda: _progress(svc, good, s.serial).get("state") == "confirmed",
                   60)
        log = "\n".join(s.box_log)
        assert "slot_a does not verify" in log and "slot_b does not verify" in log, log
        assert "rescue: root rotated to version 2" in log, log
        staged = log.index("staged in slot_b", len("\n".join(s.box_log[:mark])))
        confirmed = log.index("main: slot_b confirmed")
        assert "main: uploaded" in log[staged:confirmed], log
        assert "Traceback" not in log, log
    finally:
        s.stop()
    st, _ = boot_state(s)
    assert (st.active, st.trial, st.counter) == (1, BS.CONFIRMED, 1)
