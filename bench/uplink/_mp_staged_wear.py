"""MicroPython child of bench/uplink/staged_wear.py: stage batches the box's way on a LittleFS
image and count what the flash programs and erases.

Usage: micropython _mp_staged_wear.py ROOT RECORDS.json commit|nocommit BATCHES IMAGE
"""
import json
import sys

root, records_path, mode, batches, image = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, root + "/firmware")
sys.path.insert(0, root + "/board/sim")
import vfs  # noqa: E402
import rom  # noqa: E402
from fleetbox import port  # noqa: E402
from fleetbox.batchfile import BatchFile  # noqa: E402
from fleetbox.spool import Spool  # noqa: E402

SIZE = 736 * 1024   # esp32-poe's data partition (board/esp32-poe/board.yaml)


class Counted(rom.Partition):
    programmed = 0
    erased = 0

    def writeblocks(self, n, buf, off=None):
        Counted.programmed += len(buf)
        rom.Partition.writeblocks(self, n, buf, off)

    def ioctl(self, op, arg):
        if op == 6:
            Counted.erased += 1
        return rom.Partition.ioctl(self, op, arg)


with open(records_path) as f:
    records = json.load(f)
# nocommit: the staging without commits; commit: a commit after every record; slow: the box's
# bound (batchfile.COMMIT_MS) with a record every SLOW_MS (printers that take their time)
SLOW_MS = 5000
clock = [0]
if mode == "nocommit":
    port.sync_write = lambda f, path: None
elif mode == "slow":
    port.ticks_ms = lambda: clock[0]
img = open(image, "w+b")
img.write(b"\xff" * SIZE)
img.flush()
part = Counted(img, "data", 0, SIZE, 4096)
vfs.VfsLfs2.mkfs(part)
vfs.mount(vfs.VfsLfs2(part), "/d")
spool = Spool("/d/spool")
Counted.programmed = Counted.erased = 0
staged = BatchFile(spool.staged, lambda: {"scan": "full", "cycle": 1764460800}, 0 if mode == "commit" else None)
n = 0
for _ in range(batches):
    for _ in range(8):
        staged.add(records[n % len(records)])
        n += 1
        clock[0] += SLOW_MS
    staged.finish(spool, 0)
    if len(spool) > 16:
        spool.ack(spool.ids()[0])      # uploaded: the spool stays small, as on a box in touch with its cloud
print(json.dumps({"mode": mode, "batches": batches, "records": n, "programmed": Counted.programmed,
                  "erased": Counted.erased}))
