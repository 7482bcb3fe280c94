"""Stage 0, the immutable loader: verifies a slot, runs trials and reverts, else rescue.

It lives on the `loader` partition and is never updated in the field, so it stays
small and depends on nothing but built-ins, the ROM's `rom` module and `bootstate`
(beside it on the loader partition). The boot sequence: docs/flash-layout.md.
"""
import gc
import hashlib
import json
import os
import sys
import time
import vfs

import bootstate
import rom

MANIFEST = "manifest.json"
RESCUE_RETRY_S = 60
_buf = bytearray(1024)


def log(msg, level="I"):
    """The app's log line format (docs/logging.md), by hand: the loader cannot import the app."""
    print(level + " loader: " + msg)


def _mount(name, path, readonly=False):
    fs = vfs.VfsLfs2(rom.partition(name))
    vfs.mount(fs, path, readonly=readonly)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            n = f.readinto(_buf)
            if not n:
                break
            h.update(memoryview(_buf)[:n])
    return h.digest()


def _walk(top, out):
    for ent in os.ilistdir(top):
        path = top + "/" + ent[0]
        if ent[1] == 0x4000:
            _walk(path, out)
        else:
            out.append(path)
    return out


def _check_files(manifest):
    listed = {}
    for ent in manifest["files"]:
        listed["/app/" + ent["path"]] = ent["sha256"]
    for path in _walk("/app", []):
        if path == "/app/" + MANIFEST:
            continue
        want = listed.pop(path, None)
        if want is None:
            raise bootstate.VerifyError("stray file %s" % path)
        if _sha256(path) != bytes.fromhex(want):
            raise bootstate.VerifyError("%s does not match its digest" % path)
    if listed:
        raise bootstate.VerifyError("%d files missing" % len(listed))


def verify_slot(name, record=None):
    """The slot's info {"digest", "version", "counter", "full"}, or VerifyError.

    The one place that decides whether a slot may run. Today: the v1 image's per-file
    SHA-256 list, kept in the slot as manifest.json; a slot whose manifest digest
    matches its verified-once record (`record`) is trusted without hashing every file.
    The signature check of the signed image format goes here.
    """
    try:
        _mount(name, "/app", True)
    except OSError as e:
        raise bootstate.VerifyError("no filesystem (%r)" % e)
    try:
        try:
            digest = _sha256("/app/" + MANIFEST)
            with open("/app/" + MANIFEST) as f:
                manifest = json.load(f)
            info = {"digest": digest, "version": str(manifest["version"]),
                    "counter": int(manifest.get("security_counter", 0)), "full": False}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise bootstate.VerifyError("no usable manifest (%r)" % e)
        if record is None or record[0] != digest:
            _check_files(manifest)
            info["full"] = True
            log("%s verified whole: %d files" % (name, len(manifest["files"])))
        return info
    finally:
        vfs.umount("/app")
        gc.collect()


def _verify(idx, record):
    return verify_slot(bootstate.SLOTS[idx], record)


def _start(slot):
    _mount(slot, "/app", True)
    sys.path[:] = [".frozen", "/app", "/loader"]
    import board
    from fleetbox import main
    log("starting %s from %s" % (main.VERSION, slot))
    return main.run(board.Board(rom, slot))


def _reset_cause():
    try:
        return rom.reset_cause()
    except (AttributeError, OSError):
        return "unknown"       # counted as a crash: never lets a crash loop pass for a power cut


def _rescue_fetch():
    """Hook: the rescue client (a signed image from the rescue endpoint into a slot).

    Returns True when it installed something worth verifying again.
    """
    return False


def rescue(store, st):
    """No slot may run: say so, show the LED, retry; never crash, never return until a slot verifies."""
    while True:
        log("RESCUE: no slot verifies (%s)" % st.describe())
        if hasattr(rom, "led"):
            rom.led("rescue")
        if _rescue_fetch():
            slot, info = bootstate.choose(st, None, _verify, log)
            store.save(st)
            if slot is not None:
                return slot
        time.sleep(RESCUE_RETRY_S)


def boot():
    _mount("identity", "/identity", True)
    _mount("data", "/data")
    store = bootstate.Store(rom.partition("bootstate"))
    st = store.load()
    cause = _reset_cause()
    log("reset cause %s; boot state: %s (%d valid copies)" % (cause, st.describe(), store.valid))
    while True:
        slot, info = bootstate.choose(st, cause, _verify, log)
        cause = None          # one count per reset, however many tries in it
        if slot is None:
            store.save(st)
            slot = rescue(store, st)
        elif st.trial == bootstate.PENDING:
            log("%s %s boots on trial" % (bootstate.SLOTS[slot], info["version"]))
        store.save(st)
        name = bootstate.SLOTS[slot]
        try:
            return _start(name)
        except ImportError as e:
            log("%s is not runnable: %r" % (name, e), "W")
            vfs.umount("/app")
            bootstate.not_runnable(st, slot, log)
            store.save(st)


status = boot()   # what main.run() returned: the ROM's exit status on the sim board
