"""Child of tests/faults/test_staged_powercut.py, run on MicroPython: the box's own collection
(main.App.collect: records staged as they come, batches of 8 renamed into the spool) on a
real LittleFS image, killed mid-sweep, then started again.

Usage: micropython mp_staged_worker.py ROOT IMAGE MODE TAG   (MODE: format | sweep | start)

sweep: a sweep that never ends (its printers stand in for SNMP); "staged KEY" once the
collector's hand-over of that record returned. start: the app built again as at boot (the
spool adopts what was staged), then every batch read back and acknowledged: "batch ID
SCAN KEY..." each, "drained" at the end.
"""
import asyncio
import sys

root, image, mode, tag = sys.argv[1:5]
sys.path.insert(0, root + "/firmware")
sys.path.insert(0, root + "/board")
sys.path.insert(0, root + "/board/sim")
import vfs  # noqa: E402
import hal  # noqa: E402
import rom  # noqa: E402
from fleetbox import batchfile, config, main  # noqa: E402
from fleetbox.spool import read_batch  # noqa: E402

f = open(image, "r+b")
f.seek(0, 2)
part = rom.Partition(f, "data", 0, f.tell(), 4096)
if mode == "format":
    vfs.VfsLfs2.mkfs(part)
    print("formatted")
    sys.exit(0)
vfs.mount(vfs.VfsLfs2(part), "/d")


class Board(hal.Board):
    name = "staged-test"
    data_dir = "/d"

    def show_led(self, pattern):
        pass

    def poll(self):
        return []

    def mac(self):
        return "02:00:00:00:00:03"


cfg = config.check({"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload", "name": "liberty"}],
                    "ca": "MAIFAA==", "pins": ["00" * 32], "targets": ["127.0.0.1"],
                    "intervals": {"counters": 60}})
main.Trial = None
batchfile.COMMIT_MS = 0     # every record committed as it is staged: each one a cut must not lose
app = main.App(Board(), cfg, {"serial": "STAGED-1", "kid": 1, "device_key": "22" * 32})


def record(n):
    # 0.1 to 3 KB: a kill lands in a record, between records, at a rename
    return {"serial": "%s-%d" % (tag, n), "ip": "127.0.0.%d" % (n % 250 + 1), "collected_at": 1700000000 + n,
            "uptime_s": 1000 + n, "counters": {"total": n}, "note": "z" * ((n * 797) % 3000)}


async def endless_sweep(client, addrs, on_record, opts):
    n = 0
    while True:
        on_record(record(n))
        print("staged %s-%d" % (tag, n))
        n += 1
        await asyncio.sleep_ms(0)


if mode == "sweep":
    main.sweep = endless_sweep
    asyncio.run(app.collect("counters"))
else:
    while True:
        item = app.spool.peek(read_batch)
        if item is None:
            break
        ident, batch = item
        print("batch %d %s %s" % (ident, batch["scan"], " ".join(r["serial"] for r in batch["records"])))
        app.spool.ack(ident)
    print("drained")
