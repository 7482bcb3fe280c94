"""A root rotation on a sim flash, as the box walks one: the trusted root from the loader
partition (anchor, or the rotation it accepted), fleetbox.updroot.rotate up to a version served
from a directory (<version>.fbr), then optionally an image installed into slot_b under the
root the box trusts afterwards.

Usage: micropython tests/mp/rotate_flash.py REPO FLASH SRC_DIR UPTO [IMAGE WRAP IDENTITY STATE_DIR]
prints `trusted N`, `rotated N` or `refused <reason> <message>`, `trusted N`, then `staged <version>`
or `image refused <reason> <message>`.
"""
import json
import sys

repo, flash_path, src_dir, upto = sys.argv[1:5]
sys.path[:0] = [repo + "/firmware", repo + "/firmware/loader", repo + "/board/sim"]

import bootstate  # noqa: E402
import rom as sim_rom  # noqa: E402
import vfs  # noqa: E402
from fleetbox import updater, updroot  # noqa: E402

ANCHOR, ROTATED = "/loader/root.fbr", "/loader/rotated.fbr"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


rom = sim_rom.Rom(flash_path)
vfs.mount(vfs.VfsLfs2(rom.partition("loader")), "/loader")
root = updroot.trusted_root(ANCHOR, ROTATED, print)
print("trusted", root.version)
try:
    root = updroot.rotate(root, lambda v: _read("%s/%d.fbr" % (src_dir, v)), int(upto), ROTATED)
    print("rotated", root.version)
except updroot.UpdateError as e:
    print("refused", e.reason, e)
root = updroot.trusted_root(ANCHOR, ROTATED, print)
print("trusted", root.version)
if len(sys.argv) > 5:
    image_path, wrap_path, ident_path, state_dir = sys.argv[5:9]
    inst = updater.Installer(root, json.loads(_read(ident_path)),
                             updater.LfsSlot("slot_b", rom.partition("slot_b"), "/slot"), state_dir, "sim",
                             "1.0", 0, bootstate.LOADER_VERSION,
                             stage=lambda name, info: bootstate.set_pending(name, info, dev=rom.partition("bootstate")))
    try:
        print("staged", inst.install(updater.FileSource(image_path), {"wrap": _read(wrap_path)})["version"])
    except updroot.UpdateError as e:
        print("image refused", e.reason, e)
vfs.umount("/loader")
