"""MicroPython helper for tests/faults/test_flash_powercut.py: spool writes on the sim board's real flash.

Usage: micropython flash_writer.py REPO_ROOT FLASH.img write|check

The data partition is mounted exactly as the loader does it (the sim ROM's block
device, LittleFS2). `write` puts and acks spool batches forever, printing
"put ID" / "ack ID" once each call returned, for the test to SIGKILL at random.
`check` mounts again, reads every batch (verifying its digest) and prints one JSON line.
"""
import binascii
import hashlib
import json
import sys
import vfs

root, flash_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root + "/firmware")
sys.path.insert(0, root + "/board/sim")
import rom  # noqa: E402
from fleetbox.spool import Spool  # noqa: E402

r = rom.Rom(flash_path)
vfs.mount(vfs.VfsLfs2(r.partition("data")), "/data")
spool = Spool("/data/spool", max_items=64)


def batch(i):
    filler = (b"%08d" % i) * (200 + (i * 37) % 700)   # 1.6 .. 7 KB: some batches span blocks
    return json.dumps({"i": i, "sha": binascii.hexlify(hashlib.sha256(filler).digest()).decode(),
                       "filler": filler.decode()})


if mode == "write":
    i = 0
    while True:
        i += 1
        ident = spool.put(batch(i))
        print("put", ident)
        if i % 3 == 0:
            oldest = spool.peek()[0]
            spool.ack(oldest)
            print("ack", oldest)
else:
    ids, bad = [], []
    while True:
        item = spool.peek()
        if item is None:
            break
        ident, data = item
        try:
            b = json.loads(data)
            ok = binascii.hexlify(hashlib.sha256(b["filler"].encode()).digest()).decode() == b["sha"]
        except (ValueError, KeyError):
            ok = False
        (ids if ok else bad).append(ident)
        spool.ack(ident)
    print(json.dumps({"ids": ids, "bad": bad, "next": spool._next}))
