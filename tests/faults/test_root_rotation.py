"""Root rotation on the box, on MicroPython from a real flash image: a new root reaches the
loader partition only when it carries a threshold of the old root's keys and of its own and
the next version; from then on the updater and the loader's verify_slot trust it, and an
image signed with a key it revoked is refused."""
import json
import os
import subprocess

from fbtool import flash, keys, signing
from tests import update_kit as kit
from tests.faults.test_boot_signed import SignedBox, _signed_app
from tests.faults.test_boot_state import BS, MICROPYTHON, ROOT

SCRIPT = os.path.join(ROOT, "tests", "mp", "rotate_flash.py")


def _key(name):
    return keys.load_private(os.path.join(kit.VECTORS, name + ".pem"))


def _vector(name):
    with open(os.path.join(kit.VECTORS, name), "rb") as f:
        return f.read()


def weak_root_2():
    """Version 2 with k1 revoked, signed by k2 alone: below the old root's threshold and its own."""
    new = [_key(n).public_key() for n in ("k2", "k3", "k4")]
    return signing.signed_root(signing.root_body(2, new, 2, new, 2, kit.EXPIRES, kit.CREATED), [_key("k2")])


def _serve(tmp, name, roots):
    d = os.path.join(str(tmp), name)
    os.makedirs(d, exist_ok=True)
    for version, data in roots.items():
        with open(os.path.join(d, "%d.fbr" % version), "wb") as f:
            f.write(data)
    return d


def _rotate(b, src, upto, image=None):
    args = [MICROPYTHON, "-X", "heapsize=512K", SCRIPT, ROOT, b.flash, src, str(upto)]
    if image is not None:
        paths = []
        for name, blob in (("image", image[0]), ("wrap", image[1]),
                           ("identity", json.dumps(kit.identity()).encode())):
            paths.append(os.path.join(b.dir, "rot-" + name))
            with open(paths[-1], "wb") as f:
                f.write(blob)
        os.makedirs(os.path.join(b.dir, "rot-state"), exist_ok=True)
        args += paths + [os.path.join(b.dir, "rot-state")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _rotated(b):
    """The rotated root stored on the loader partition, or None."""
    fs = flash.read_lfs(flash.read_partition(b.flash, b.board, "loader"), b.board["flash"]["block_size"])
    if "rotated.fbr" not in fs.listdir("/"):
        return None
    with fs.open("rotated.fbr", "rb") as f:
        return f.read()


def test_rotation_refused_then_accepted_and_the_loader_boots_a_slot_signed_under_the_new_root(tmp_path):
    b = SignedBox(tmp_path)
    try:
        # below threshold: refused, nothing stored, root 1 stays
        out = _rotate(b, _serve(tmp_path, "weak", {2: weak_root_2()}), 2)
        assert "refused threshold" in out and out.rstrip().endswith("trusted 1"), out
        # an older root served as the next one: refused
        out = _rotate(b, _serve(tmp_path, "old", {2: _vector("root-1.fbr")}), 2)
        assert "refused root_version root version 1 does not follow trusted version 1" in out, out
        assert _rotated(b) is None
        # an image signed by k2 and k4 does not verify under root 1 (k4 unknown there)
        k2k4 = _signed_app(b.dir, "2.0", 1, signers=("k2.pem", "k4.pem"))
        out = _rotate(b, _serve(tmp_path, "none", {}), 1, k2k4)
        assert "image refused threshold" in out, out
        # the real rotation: stored on the loader partition, out of a factory reset's reach
        good = _serve(tmp_path, "good", {2: _vector("root-2.fbr")})
        k1k2 = _signed_app(b.dir, "2.0", 1, signers=("k1.pem", "k2.pem"))
        out = _rotate(b, good, 2, k1k2)
        assert "rotated 2" in out and "trusted 2" in out, out
        assert "image refused threshold" in out, out      # k1 was revoked by root 2
        assert _rotated(b) == _vector("root-2.fbr")
        out = _rotate(b, good, 2, k2k4)
        assert out.splitlines()[0] == "trusted 2" and "staged 2.0" in out, out
        # no verified-once record: the loader checks slot B's signature under the rotated root
        b.bootstate(BS.set_pending, "slot_b", None)
        b.mode("2.0", "confirm")
        b.power_on()
        b.wait("confirmed True")
        log = b.log()
        assert "slot_b verified whole and signed" in log and "app 2.0 on slot_b" in log, log
    finally:
        b.off()


def test_a_stored_root_that_no_longer_verifies_leaves_the_one_before(tmp_path):
    b = SignedBox(tmp_path)
    try:
        out = _rotate(b, _serve(tmp_path, "good", {2: _vector("root-2.fbr")}), 2)
        assert "rotated 2" in out
        loader = flash.read_partition(b.flash, b.board, "loader")
        root2 = bytearray(_vector("root-2.fbr"))
        root2[40] ^= 1                                      # one bit of its body rots
        fixed = flash.lfs_partition(len(loader), b.board["flash"]["block_size"], {"rotated.fbr": bytes(root2)},
                                    existing=loader)
        b.write_slot("loader", fixed)
        out = _rotate(b, _serve(tmp_path, "none", {}), 1)
        assert "stored root /loader/rotated.fbr refused" in out and out.splitlines()[-1] == "trusted 1", out
        # delivered again, it is accepted again
        out = _rotate(b, _serve(tmp_path, "again", {2: _vector("root-2.fbr")}), 2)
        assert out.splitlines()[-1] == "trusted 2", out
    finally:
        b.off()
