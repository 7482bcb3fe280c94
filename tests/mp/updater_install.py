"""Install an update image with fleetbox.updater on MicroPython, over HTTPS Range, into a
LittleFS slot in a file, and report the heap.

Usage: micropython -X heapsize=N tests/mp/updater_install.py MODULES URL ADDRESS CA ROOT WRAP IDENTITY
       SLOTFILE SLOT_KIB STATE_DIR probe|install [cut-after-N-chunks]
probe prints `base <bytes held before the install>`; install prints `free <heap free>`
then `ok <version> <chunks fetched> <max heap used> <ms> <max live heap>`, or
`refused <reason> <message>`, or `cut <chunks fetched>`.
"""
import binascii
import gc
import json
import os
import sys
import time

(modules, url, address, ca_path, pin_hex, root_path, wrap_path, ident_path, slot_path, slot_kib, state_dir,
 mode) = sys.argv[1:13]
cut = int(sys.argv[13]) if len(sys.argv) > 13 else None
sys.path.insert(0, modules)

from fleetbox import https, updater, updimage  # noqa: E402


class FileDisk:
    """A slot partition in a file (as the sim ROM's), 4 KiB erase blocks."""

    def __init__(self, path, blocks):
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
        self.blocks = blocks
        self.blank = bytearray(b"\xff" * 4096)

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            self.ioctl(6, n)
            off = 0
        self.f.seek(n * 4096 + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            self.f.write(self.blank)
        return 0


def _read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


root = updimage.load_root(_read(root_path))
identity = json.loads(_read(ident_path, "r"))
offer = {"wrap": _read(wrap_path)}
ca = _read(ca_path)
host, _, rest = url[len("https://"):].partition("/")
conn = https.Connection("https://" + host, ca, [binascii.unhexlify(pin_hex)], resolve=address)
slot = updater.LfsSlot("slot_b", FileDisk(slot_path, int(slot_kib) // 4), "/slot")
state = {"max": 0, "live": 0, "fetched": 0}


def _sample():
    used = gc.mem_alloc() - state["base"]
    gc.collect()
    live = gc.mem_alloc() - state["base"]
    state["max"] = max(state["max"], used)
    state["live"] = max(state["live"], live)


class Source(updater.RangeSource):
    def fetch_into(self, offset, buf):
        if cut is not None and state["fetched"] >= cut:
            raise OSError("cut by the test")
        n = updater.RangeSource.fetch_into(self, offset, buf)
        state["fetched"] += 1
        _sample()
        return n

    def fetch(self, offset, length):
        b = updater.RangeSource.fetch(self, offset, length)
        _sample()
        return b


src = Source(conn, "/" + rest)
staged = []
inst = updater.Installer(root, identity, slot, state_dir, "sim", "1.0.0", 0, 1, min_time=1796000000,
                         stage=lambda name, info: staged.append(info))
gc.collect()
if mode == "probe":
    print("base", gc.mem_alloc())
    sys.exit(0)
state["base"] = gc.mem_alloc()
print("free", gc.mem_free())
t0 = time.ticks_ms()
try:
    info = inst.install(src, offer)
except updimage.UpdateError as e:
    print("refused", e.reason, e)
    sys.exit(3)
except OSError as e:
    print("cut", state["fetched"], e)
    sys.exit(4)
ms = time.ticks_diff(time.ticks_ms(), t0)
print("ok", info["version"], state["fetched"], state["max"], ms, state["live"])
_ = os
