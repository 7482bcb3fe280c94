"""Every refusal of issue 11 through the box's updater (fleetbox.updater.Installer.run):
each one logged with its reason, reported, nothing staged, the slot's old record never
trusted for the new bytes, and the box's state as before."""
import json

import pytest

from check import LogCapture
from fleetbox import keywrap, port, updater, updimage
from firmware.test_updater import DirSlot
from tests import update_kit as kit
from vectors import expected, load

NOW = expected()["created"] + 86400
OTHER = expected()["other_box"]


class Bytes:
    def __init__(self, data):
        self.data = data

    def fetch(self, offset, length):
        return self.data[offset:offset + length]


def _installer(tmp_path, staged, root=None, slot_size=1 << 20, min_time=NOW, version="1.5.0", counter=3):
    slot = DirSlot(str(tmp_path / "slot"), size=slot_size)
    return updater.Installer(root or updimage.load_root(load("root-1.fbr"), None, NOW), kit.identity(), slot,
                             str(tmp_path), "sim", version, counter, 1, min_time=min_time,
                             stage=lambda name, info: staged.append(info))


def _flip(data, at):
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


CASES = {
    "wrong_board": lambda: kit.signed(kit.fbi(6000, board="esp32-poe"), chunk_size=1024),
    "older_version": lambda: kit.signed(kit.fbi(6000, version="1.4.9"), chunk_size=1024),
    "security_counter": lambda: kit.signed(kit.fbi(6000), chunk_size=1024, security_counter=2),
    "unknown_key": lambda: kit.signed(kit.fbi(6000), signers=("k4.pem",), chunk_size=1024),
    "threshold": lambda: kit.signed(kit.fbi(6000), signers=("k2.pem",), chunk_size=1024),
    "expired": lambda: kit.signed(kit.fbi(6000), chunk_size=1024, expires=NOW - 1),
    "too_big": lambda: kit.signed(kit.fbi(40000), chunk_size=1024),
}


def _run(tmp_path, data, wrap, **kw):
    staged = []
    inst = _installer(tmp_path, staged, **kw)
    with LogCapture(port.INFO) as cap:
        report = inst.run(Bytes(data), {"wrap": wrap})
    return report, staged, cap.lines, inst


@pytest.mark.parametrize("reason", sorted(CASES))
def test_policy_refusals(tmp_path, reason):
    data, wrap = CASES[reason]()
    report, staged, lines, inst = _run(tmp_path, data, wrap, slot_size=32768 if reason == "too_big" else 1 << 20)
    assert report["state"] == "refused" and report["reason"] == reason, report
    assert staged == [] and inst.load_resume() is None
    assert any(("update refused [%s]" % reason) in line for line in lines), lines


def test_revoked_key_after_rotation(tmp_path):
    # k1 is left out of root v2: an image signed by k1 and k2 no longer meets the threshold
    r1 = updimage.load_root(load("root-1.fbr"), None, NOW)
    r2 = updimage.load_root(load("root-2.fbr"), r1, NOW)
    data, wrap = kit.signed(kit.fbi(6000), signers=("k1.pem", "k2.pem"), chunk_size=1024)
    staged = []
    report = _installer(tmp_path, staged, root=r2).run(Bytes(data), {"wrap": wrap})
    assert report["reason"] == "threshold" and staged == []
    data, wrap = kit.signed(kit.fbi(6000), signers=("k1.pem",), chunk_size=1024)
    report = _installer(tmp_path, staged, root=r2).run(Bytes(data), {"wrap": wrap})
    assert report["reason"] == "unknown_key" and staged == []


def test_byte_refusals(tmp_path):
    key = bytes(range(100, 132))
    data, wrap = kit.signed(kit.fbi(6000), chunk_size=1024, content_key=key)
    head = updimage.ImageReader(_reader(data), updimage.load_root(load("root-1.fbr"), None, NOW), "sim").head_size
    for name, bad, reason in (("truncated", data[:-100], "truncated"),
                              ("bit-flipped chunk", _flip(data, head + 2500), "bad_chunk"),
                              ("altered head", _flip(data, 40), "bad_signature")):
        report, staged, lines, _ = _run(tmp_path, bad, wrap)
        assert (report["state"], report["reason"]) == ("refused", reason), (name, report)
        assert staged == []
    # a wrap for another box (its serial), and one relabelled as ours: neither opens
    from fbtool import updimage as host
    other = json.loads(wrap)
    other["serial"] = OTHER["serial"]
    report, staged, _, _ = _run(tmp_path, data, json.dumps(other).encode())
    assert report["reason"] == "wrong_box" and staged == []
    theirs = json.loads(host.make_wrap(host.Image(data), key, OTHER["serial"], OTHER["kid"],
                                       bytes.fromhex(OTHER["device_key"])))
    theirs["serial"] = kit.identity()["serial"]
    report, staged, _, _ = _run(tmp_path, data, json.dumps(theirs).encode())
    assert report["reason"] == "wrong_box" and staged == []
    # our own wrap format, under our KEK, of a key that is not this image's
    forged = dict(json.loads(wrap), wrapped=keywrap.wrap(updimage.kek_for(kit.identity()), bytes(32)).hex())
    report, staged, _, _ = _run(tmp_path, data, json.dumps(forged).encode())
    assert report["reason"] == "wrong_key" and staged == []


def test_the_good_image_after_all_that_installs(tmp_path):
    data, wrap = kit.signed(kit.fbi(6000), chunk_size=1024)
    report, staged, lines, _ = _run(tmp_path, data, wrap)
    assert report["state"] == "staged" and report["version"] == "2.0.0" and len(staged) == 1


def _reader(data):
    pos = [0]

    def read(n):
        b = data[pos[0]:pos[0] + n]
        pos[0] += len(b)
        return b
    return read
