"""fleetbox.updater: streaming install of docs/vectors/update/app.fbu into a slot, resume
after a cut (with a half-written file beyond the resume record), and the refusals that
arrive with the bytes; on CPython and MicroPython (there also into a real LittleFS)."""
import json
import os

from check import raises, tmp
from fleetbox import port, updater, updimage
from vectors import DIR, expected, load

V = expected()
IDENT = V["identity"]
NOW = V["created"] + 86400
TMP = tmp("fbx-test-updater")


def _rmtree(path):
    try:
        ents = list(os.ilistdir(path)) if hasattr(os, "ilistdir") else [
            (n, 0x4000 if os.path.isdir(path + "/" + n) else 0x8000) for n in os.listdir(path)]
    except OSError:
        return
    for ent in ents:
        p = path + "/" + ent[0]
        if ent[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


class DirSlot:
    """A slot that is a plain directory (CPython has no vfs to mount a partition)."""

    def __init__(self, path, name="slot_b", size=1 << 20):
        self.name, self.path, self.size = name, path, size

    def mount(self, fresh=False):
        if fresh:
            _rmtree(self.path)
        try:
            os.mkdir(self.path)
        except OSError:
            pass

    def umount(self):
        pass


class RamDisk:
    """A block device in RAM (MicroPython's extended interface) for a real LittleFS slot."""

    def __init__(self, blocks=64, size=512):
        self.size = size
        self.data = bytearray(blocks * size)

    def readblocks(self, n, buf, off=0):
        a = n * self.size + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:
            self.ioctl(6, n)
            off = 0
        a = n * self.size + off
        self.data[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.size
        if op == 5:
            return self.size
        if op == 6:
            self.data[arg * self.size:(arg + 1) * self.size] = b"\xff" * self.size
        return 0


class Source:
    """The image as the service serves it, with faults: a cut after `cut` chunk fetches,
    a flipped bit in chunk `flip`, a chunk `short` cut short."""

    def __init__(self, data, cut=None, flip=None, short=None):
        self.data, self.cut, self.flip, self.short = data, cut, flip, short
        self.fetches = 0

    def fetch(self, offset, length):
        b = self.data[offset:offset + length]
        if length <= 1024 and offset >= self.head:
            if self.cut is not None and self.fetches >= self.cut:
                raise OSError("connection reset")
            self.fetches += 1
            i = (offset - self.head) // 1024
            if i == self.flip:
                b = bytearray(b)
                b[100] ^= 0x10
            if i == self.short:
                b = b[:-7]
        return b


def _root():
    return updimage.load_root(load("root-1.fbr"), None, NOW)


def _offer(wrap="app.fbw"):
    img = updimage.ImageReader(_reader(load("app.fbu")), _root(), "sim")
    return {"image": "".join("%02x" % b for b in img.digest), "wrap": load(wrap).decode()}, img.head_size


def _reader(data):
    pos = [0]

    def read(n):
        b = data[pos[0]:pos[0] + n]
        pos[0] += len(b)
        return b
    return read


def _installer(slot, staged, version="1.2.0", counter=3, identity=IDENT):
    try:
        os.mkdir(TMP)
    except OSError:
        pass
    return updater.Installer(_root(), identity, slot, TMP, "sim", version, counter, 1, min_time=NOW,
                             stage=lambda name, info: staged.append((name, info)))


def _source(**faults):
    s = Source(load("app.fbu"), **faults)
    s.head = _offer()[1]
    return s


def _expected_files():
    data = load("app.fbu")
    out = []
    img = updimage.install(_reader(data), lambda off, d: out.append(bytes(d)), _root(), "sim",
                           wrap=load("app.fbw"), identity=IDENT)
    payload = b"".join(out)
    m = int.from_bytes(payload[8:12], "little")
    man = json.loads(payload[12:12 + m])
    files, pos = {}, 12 + m
    for ent in man["files"]:
        files[ent["path"]] = payload[pos:pos + ent["size"]]
        pos += ent["size"]
    return files, payload[12:12 + m], img


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _check_slot(root):
    files, mbytes, img = _expected_files()
    for name, blob in files.items():
        assert _read(root + "/" + name) == blob, name
    assert _read(root + "/" + updater.MANIFEST_FILE) == mbytes
    assert _read(root + "/" + updater.SIG_FILE) == load("app.fbu")[:img.head_size]
    assert updater.verify_unpacked(root, img.payload_sha256(), bytearray(512), updater.MANIFEST_FILE) == 4


def _slot():
    return DirSlot(TMP + "/slot")


def test_installs_and_stages():
    staged = []
    inst = _installer(_slot(), staged)
    inst.forget()
    offer, _ = _offer()
    info = inst.install(_source(), offer)
    assert staged == [("slot_b", info)]
    assert info["version"] == "1.3.0" and info["counter"] == 3 and info["files"] == 4
    _check_slot(TMP + "/slot")
    assert inst.load_resume() is None


def test_cut_connection_resumes_at_the_next_chunk_even_after_a_half_write():
    staged = []
    inst = _installer(_slot(), staged)
    inst.forget()
    offer, _ = _offer()
    raises(OSError, inst.install, _source(cut=3), offer)
    rec = inst.load_resume()
    assert rec["next"] == 3 and staged == []
    # a power cut after the file write, before the record: bytes beyond the record
    with open(TMP + "/slot/fleetbox/beta.mpy", "ab") as f:
        f.write(b"garbage past the resume record")
    again = _installer(_slot(), staged)          # a new boot: the record is all it knows
    src = _source()
    again.install(src, offer)
    assert src.fetches == 7 - 3                  # only the chunks it did not have (7 in all)
    assert len(staged) == 1
    _check_slot(TMP + "/slot")


def _fail_opens(text, times):
    left = [times]

    def fault(op, path):
        if op == "open" and text in path and left[0]:
            left[0] -= 1
            return port.EIO
        return 0
    return fault


def test_a_flash_fault_while_cutting_back_keeps_the_slot():
    offer, _ = _offer()
    for fails, fetched in ((1, 7 - 3), (2, 0)):
        staged = []
        inst = _installer(_slot(), staged)
        inst.forget()
        raises(OSError, inst.install, _source(cut=3), offer)
        with open(TMP + "/slot/fleetbox/beta.mpy", "ab") as f:
            f.write(b"garbage past the resume record")
        src = _source()
        port.set_flash_fault(_fail_opens("beta.mpy", fails))
        try:
            if fails == 1:      # tried once more at once
                _installer(_slot(), staged).install(src, offer)
            else:               # left to the next attempt: the slot keeps what it had, nothing fetched again
                raises(OSError, _installer(_slot(), staged).install, src, offer)
        finally:
            port.set_flash_fault(None)
        assert src.fetches == fetched
        if fails == 2:
            assert inst.load_resume()["next"] == 3 and staged == []
            src = _source()
            _installer(_slot(), staged).install(src, offer)
            assert src.fetches == 7 - 3
        assert len(staged) == 1
        _check_slot(TMP + "/slot")


def test_a_slot_finished_before_a_cut_is_staged_without_a_download():
    offer, _ = _offer()

    def cut(name, info):
        raise OSError(5, "power cut before the switch")
    inst = updater.Installer(_root(), IDENT, _slot(), TMP, "sim", "1.2.0", 3, 1, min_time=NOW, stage=cut)
    inst.forget()
    raises(OSError, inst.install, _source(), offer)
    assert inst.load_resume()["next"] == 7
    staged = []
    src = _source()
    info = _installer(_slot(), staged).install(src, offer)
    assert src.fetches == 0 and staged == [("slot_b", info)] and info["counter"] == 3
    _check_slot(TMP + "/slot")


def test_chunk_refusals_stage_nothing():
    offer, _ = _offer()
    for faults, err in (({"flip": 4}, updimage.BadChunk), ({"short": 2}, updimage.Truncated)):
        staged = []
        inst = _installer(_slot(), staged)
        inst.forget()
        e = raises(err, inst.install, _source(**faults), offer)
        assert staged == [] and e.reason in ("bad_chunk", "truncated")


def test_offer_refusals_before_any_write():
    offer, _ = _offer()
    staged = []
    inst = _installer(_slot(), staged)
    other = dict(offer, wrap=load("app-other-box.fbw").decode())
    assert raises(updimage.WrongBox, inst.install, _source(), other).reason == "wrong_box"
    odd = dict(offer, image="00" * 32)
    assert raises(updater.Refused, inst.install, _source(), odd).reason == "offer"
    newer = _installer(_slot(), staged, version="1.4.0")
    assert raises(updimage.OlderVersion, newer.install, _source(), offer).reason == "older_version"
    higher = _installer(_slot(), staged, counter=4)
    assert raises(updimage.CounterRollback, higher.install, _source(), offer).reason == "security_counter"
    assert staged == []


def test_into_littlefs_on_micropython():
    if not port.MICROPYTHON:
        return      # CPython has no vfs; the directory slot above covers the logic there
    staged = []
    slot = updater.LfsSlot("slot_b", RamDisk(blocks=128), "/updtest")
    inst = _installer(slot, staged)
    inst.forget()
    offer, _ = _offer()
    raises(OSError, inst.install, _source(cut=5), offer)
    info = _installer(slot, staged).install(_source(), offer)
    assert staged == [("slot_b", info)]
    slot.mount()
    try:
        _check_slot("/updtest")
    finally:
        slot.umount()


_ = DIR
