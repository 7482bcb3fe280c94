"""Install an update image through fleetbox.updimage on MicroPython and report the heap.

Usage: micropython -X heapsize=N tests/mp/update_install.py MODULES IMAGE ROOT WRAP IDENTITY probe|install
probe prints `base <bytes held before the install>`; run again with heapsize = base + budget
and install prints `free <heap free when the install starts>` then
`ok <payload sha256> <chunks> <max heap allocated> <ms> <max live heap>` (as the sink sees them), or raises MemoryError.
"""
import gc
import json
import sys
import time
from binascii import hexlify

modules, image_path, root_path, wrap_path, ident_path, mode = sys.argv[1:7]
sys.path.insert(0, modules)     # a folder holding fleetbox/ (bytecode, as on the box)

from fleetbox import updimage  # noqa: E402
import hashlib  # noqa: E402

with open(root_path, "rb") as f:
    root = updimage.load_root(f.read())
with open(wrap_path, "rb") as f:
    wrap = f.read()
with open(ident_path) as f:
    identity = json.load(f)

digest = hashlib.sha256()
state = {"max": 0, "live": 0}


def sink(offset, data):
    digest.update(data)
    used = gc.mem_alloc() - state["base"]     # live and not yet collected
    gc.collect()
    live = gc.mem_alloc() - state["base"]     # live: the reader's buffers and state
    state["max"] = max(state["max"], used)
    state["live"] = max(state["live"], live)


f = open(image_path, "rb")
gc.collect()
if mode == "probe":         # what the interpreter, the modules and the inputs hold
    print("base", gc.mem_alloc())
    sys.exit(0)
state["base"] = gc.mem_alloc()
print("free", gc.mem_free())
t0 = time.ticks_ms()
img = updimage.install(f.read, sink, root, "sim", wrap=wrap, identity=identity, slot_size=1 << 20,
                       readinto=f.readinto)
ms = time.ticks_diff(time.ticks_ms(), t0)
f.close()
print("ok", hexlify(digest.digest()).decode(), img.chunks, state["max"], ms, state["live"])
