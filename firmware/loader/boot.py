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
SIG_FILE = "update.sig"          # the signed head the updater installed the slot from
TAIL_FILE = "payload.tail"       # the format-1 image's own digest, part of the signed payload hash
ROOT_FILE = "/loader/root.fbr"   # the trust anchor, written at manufacturing
ROTATED_FILE = "/loader/rotated.fbr"   # the newest root rotation accepted: a factory reset leaves it
RESCUE_RETRY_S = 60
_buf = bytearray(1024)


def log(msg, level="I"):
    """The app's log line format (docs/logging.md), by hand: the loader cannot import the app."""
    print(level + " loader: " + msg)


def _mount(name, path, readonly=False):
    fs = vfs.VfsLfs2(rom.partition(name))
    vfs.mount(fs, path, readonly=readonly)


def _sha256(path, whole=None):
    """SHA-256 of a file; whole, when given, is fed the same bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            n = f.readinto(_buf)
            if not n:
                break
            h.update(memoryview(_buf)[:n])
            if whole is not None:
                whole.update(memoryview(_buf)[:n])
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
        if path in ("/app/" + MANIFEST, "/app/" + SIG_FILE, "/app/" + TAIL_FILE):
            continue
        want = listed.pop(path, None)
        if want is None:
            raise bootstate.VerifyError("stray file %s" % path)
        if _sha256(path) != bytes.fromhex(want):
            raise bootstate.VerifyError("%s does not match its digest" % path)
    if listed:
        raise bootstate.VerifyError("%d files missing" % len(listed))


def _anchor():
    """The trusted root (fleetbox.updroot.Root) when the box has one, else None (a development box):
    the factory anchor and every rotation accepted since, link by link."""
    try:
        os.stat(ROOT_FILE)
    except OSError:
        return None
    from fleetbox import updroot       # on the loader partition with rsapss and errors
    # no time floor: a boot never fails because time passed
    return updroot.trusted_root(ROOT_FILE, ROTATED_FILE, lambda m: log(m, "W"))


def _check_signed(root, mbytes):
    """The slot against the signed head it was installed from: a threshold of valid image
    signatures, then the payload (format-1 header, manifest, files, tail) re-hashed against
    the signed payload SHA-256. Returns the signed manifest."""
    from fleetbox import updroot
    try:
        with open("/app/" + SIG_FILE, "rb") as f:
            head = f.read()
    except OSError:
        raise bootstate.VerifyError("no signature (%s) and no verified-once record" % SIG_FILE)
    pos = [16]

    def read(n):
        b = head[pos[0]:pos[0] + n]
        pos[0] += len(b)
        return b
    try:
        if head[:4] != b"FBUP":
            raise updroot.BadFormat("not a signed image head")
        msize, tsize = updroot._u32(head, 8), updroot._u32(head, 12)
        pos[0] = 16 + msize + tsize
        digest = hashlib.sha256(memoryview(head)[:pos[0]]).digest()
        sigs = updroot._read_signatures(read)
        updroot.check_signatures(digest, sigs, root.keys, root.roles["image"], "slot image")
        signed = updroot._json(head[16:16 + msize], "signed manifest")
        want = bytes.fromhex(signed["payload_sha256"])
    except (updroot.UpdateError, KeyError, ValueError, TypeError) as e:
        raise bootstate.VerifyError("signature check failed: %s" % e)
    whole = hashlib.sha256(b"FBIM\x01\x00\x00\x00" + len(mbytes).to_bytes(4, "little"))
    whole.update(mbytes)
    manifest = json.loads(mbytes)
    for ent in manifest["files"]:
        try:
            if _sha256("/app/" + ent["path"], whole) != bytes.fromhex(ent["sha256"]):
                raise bootstate.VerifyError("%s does not match its digest" % ent["path"])
        except OSError:
            raise bootstate.VerifyError("%s missing" % ent["path"])
    try:
        _sha256("/app/" + TAIL_FILE, whole)
    except OSError:
        raise bootstate.VerifyError("%s missing" % TAIL_FILE)
    if whole.digest() != want:
        raise bootstate.VerifyError("slot does not match its signed payload digest")
    if signed.get("version") != manifest.get("version"):
        raise bootstate.VerifyError("signed version %r, slot version %r" % (signed.get("version"),
                                                                           manifest.get("version")))
    return signed


def verify_slot(name, record=None):
    """The slot's info {"digest", "version", "counter", "full", "signed"}, or VerifyError.

    The one place that decides whether a slot may run. A slot whose manifest digest
    matches its verified-once record (`record`, written after a full check) is trusted
    without hashing every file. Otherwise, on a box with a trust anchor (ROOT_FILE), the
    slot must match the signed head it was installed from (version and security counter
    are the signed ones); a box without one (development) checks the files against the
    slot's manifest.json.
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
            try:
                root = _anchor()
            except Exception as e:    # an unreadable anchor trusts nothing
                raise bootstate.VerifyError("trust anchor unusable: %r" % e)
            if root is not None:
                with open("/app/" + MANIFEST, "rb") as f:
                    signed = _check_signed(root, f.read())
                info["version"] = signed["version"]
                info["counter"] = int(signed["security_counter"])
                info["recovery"] = signed.get("recovery") is True
                info["signed"] = True
            _check_files(manifest)
            info["full"] = True
            log("%s verified whole%s: %d files" % (name, " and signed" if root else "", len(manifest["files"])))
        else:   # what the full check found: the signed counter and version (manifest.json may carry none)
            info["counter"], info["version"] = record[1], record[2]
        return info
    finally:
        vfs.umount("/app")
        gc.collect()


def _verify(idx, record):
    return verify_slot(bootstate.SLOTS[idx], record)


def _start(slot):
    # The loader's own copies of the verifiers (and the rescue client) leave room for the app's.
    for mod in [m for m in sys.modules if m in ("fleetbox", "rescue") or m.startswith("fleetbox.")]:
        del sys.modules[mod]
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


def _rescue_fetch(st):
    """(staged?, seconds to the next attempt) of the rescue client (rescue.py, beside a trust anchor)."""
    try:
        import rescue
        return rescue.attempt(rom, st, log)
    except Exception as e:  # noqa: BLE001  (rescue must never crash the loader: it tries again later)
        log("rescue failed: %r" % e, "W")
        return False, RESCUE_RETRY_S


def rescue(store, st):
    """No slot may run: say so, show the LED, retry; never crash, never return until a slot
    verifies. Returns (slot, info, state)."""
    while True:
        log("RESCUE: no slot verifies (%s)" % st.describe())
        if hasattr(rom, "led"):
            rom.led("rescue")
        staged, wait = _rescue_fetch(st)
        if staged:
            st = store.load()          # the rescue staged a slot through bootstate.set_pending
            slot, info = bootstate.choose(st, None, _verify, log)
            store.save(st)
            if slot is not None:
                return slot, info, st
        time.sleep(wait)


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
            slot, info, st = rescue(store, st)
        if st.trial == bootstate.PENDING:
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
