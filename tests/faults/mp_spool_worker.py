"""Child of the spool power-cut trials (tests/faults/spool_kill.py), run on MicroPython.

Usage: micropython mp_spool_worker.py ROOT IMAGE TAG MODE   (MODE: format | work | drain)

Mounts a LittleFS image through the sim board's ROM block device (board/sim/rom.py),
reports what the spool holds ("have ID PAYLOAD-KEY"), then puts and acks batches and
says so after each call returns, until it is killed (work) or the spool is empty (drain).
"""
import os
import sys

root, image, tag, mode = sys.argv[1:5]
sys.path.insert(0, root + "/firmware")
sys.path.insert(0, root + "/board/sim")
import vfs  # noqa: E402
import rom  # noqa: E402
from fleetbox.spool import Spool, BULK, COUNTERS, ALERTS  # noqa: E402

BLOCK = 4096
# work keeps the spool under 64 KB and 24 files (a file takes at least one 4 KB block of
# the 256 KB image), so eviction never has to drop a batch here (tests/faults/test_spool_faults.py
# tests eviction on a full flash apart)
f = open(image, "r+b")
f.seek(0, 2)
part = rom.Partition(f, "data", 0, f.tell(), BLOCK)
if mode == "format":
    vfs.VfsLfs2.mkfs(part)
    print("formatted")
    sys.exit(0)
vfs.mount(vfs.VfsLfs2(part), "/d")
spool = Spool("/d/spool", max_items=10000)
if mode == "fill":
    # More than the flash holds: every put must succeed, evicting bulk batches first.
    for n in range(90):
        spool.put(b"z" * 3000, (BULK, COUNTERS, ALERTS)[n % 3])
    kinds = [int(name.split("-")[1][0]) for name in os.listdir("/d/spool") if name.endswith(".b")]
    print("filled", len(spool), spool.evicted, kinds.count(BULK), kinds.count(COUNTERS), kinds.count(ALERTS))
    sys.exit(0)


def payload(n):
    size = 40 + (n * 7919) % 3000
    head = "%s-%d:%d:" % (tag, n, size)
    return (head + chr(97 + n % 26) * size).encode()


def check(data):
    """The payload key of a batch whose bytes are intact; raises if they are not."""
    text = data.decode()
    key, size, body = text.split(":", 2)
    n = int(key.rsplit("-", 1)[1])
    if len(body) != int(size) or body != chr(97 + n % 26) * int(size):
        raise ValueError("corrupt batch " + key)
    return key


for ident in spool.ids():
    with open(spool._file(ident), "rb") as g:
        print("have", ident, check(g.read()))
print("ready")
n = 0
while True:
    if mode == "drain" or n % 3 == 2 or spool.bytes > 64 * 1024 or len(spool) > 24:
        item = spool.peek()
        if item is None:
            if mode == "drain":
                break
        else:
            check(item[1])
            print("acking", item[0])
            spool.ack(item[0])
            print("ack", item[0])
    if mode == "work":
        ident = spool.put(payload(n), (BULK, COUNTERS, ALERTS)[n % 3])
        print("put", ident, "%s-%d" % (tag, n))
        if spool.evicted:
            print("evicted", spool.evicted_ids)
    n += 1
print("drained")
