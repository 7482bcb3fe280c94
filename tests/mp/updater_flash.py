"""The box's updater writing a sim flash's inactive slot, as the firmware does: an image
from a file into slot_b (LittleFS through the sim ROM's partitions), then the boot state
staged with bootstate.set_pending.

Usage: micropython tests/mp/updater_flash.py REPO FLASH IMAGE WRAP IDENTITY ROOT STATE_DIR VERSION COUNTER
prints `staged <version>` or `refused <reason> <message>` (exit 3).
"""
import json
import sys

repo, flash_path, image_path, wrap_path, ident_path, root_path, state_dir, version, counter = sys.argv[1:10]
sys.path[:0] = [repo + "/firmware", repo + "/firmware/loader", repo + "/board/sim"]

import bootstate  # noqa: E402
import rom as sim_rom  # noqa: E402
from fleetbox import updater, updimage  # noqa: E402


def _read(path):
    with open(path, "rb") as f:
        return f.read()


rom = sim_rom.Rom(flash_path)
inst = updater.Installer(updimage.load_root(_read(root_path)), json.loads(_read(ident_path)),
                         updater.LfsSlot("slot_b", rom.partition("slot_b"), "/slot"), state_dir, "sim",
                         version, int(counter), 1,
                         stage=lambda name, info: bootstate.set_pending(name, info, dev=rom.partition("bootstate")))
try:
    info = inst.install(updater.FileSource(image_path), {"wrap": _read(wrap_path)})
except updimage.UpdateError as e:
    print("refused", e.reason, e)
    sys.exit(3)
print("staged", info["version"])
