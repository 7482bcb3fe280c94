"""Stage 0, the immutable loader: mounts the filesystems, picks the slot, starts the app.

It lives alone on the `loader` partition and is never updated in the field, so it
stays small and depends on nothing but the ROM's `rom` module and `vfs`.
Boot state (which slot is active) is `/data/boot.json`; see docs/flash-layout.md.
"""
import json
import sys
import vfs

import rom

SLOTS = ("slot_a", "slot_b")


def _mount(name, path, readonly=False):
    fs = vfs.VfsLfs2(rom.partition(name))
    vfs.mount(fs, path, readonly=readonly)


def _boot_state():
    try:
        with open("/data/boot.json") as f:
            state = json.load(f)
        if state.get("active") in SLOTS:
            return state
    except (OSError, ValueError):
        pass
    return {"active": SLOTS[0]}


def _start(slot):
    _mount(slot, "/app", True)
    sys.path[:] = [".frozen", "/app", "/loader"]
    import board
    from fleetbox import main
    print("I loader: starting %s from %s" % (main.VERSION, slot))   # the log's format, by hand: no app yet
    return main.run(board.Board(rom, slot))


def boot():
    _mount("identity", "/identity", True)
    _mount("data", "/data")
    state = _boot_state()
    active = state["active"]
    try:
        return _start(active)
    except ImportError as e:
        # The active slot holds no runnable app: the other slot is the rescue.
        print("W loader: %s is not bootable (%r), trying the other slot" % (active, e))
        vfs.umount("/app")
        return _start(SLOTS[1 - SLOTS.index(active)])


status = boot()   # what main.run() returned: the ROM's exit status on the sim board
