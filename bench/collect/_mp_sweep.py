"""Runs ON MICROPYTHON for bench/collect/collect.py and tests/interop/test_sweep_heap.py:
one sweep, figures on stdout.

argv: MPY_DIR (precompiled firmware), MODE; options as one JSON line on stdin:
{targets, port, kind, workers, window, timeout_ms, retries, profiles, sample_ms, runs,
 statics, spool}.
MODE "frozen": every module a collection cycle uses is imported first, as a board has them
in flash: `code` is the heap they hold, and everything above it is the sweep's data heap.
"probe": the same, print `CODE <bytes>` and stop (run again with heapsize = code + the
budget). "box": the modules few devices need (web, countertables, features, sanity, icmp)
are imported when a collection needs them, as the box does on the unix port.
spool: a folder; the records go to a spool there as the box sends them (staged on flash
record by record, a line each, the file renamed into the spool per batch of 8:
fleetbox.main). Prints `REC <ip> <json size>` per record
and one `RESULT <json>` line.
"""
import gc
import json
import sys

sys.path.insert(0, sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "frozen"
import asyncio  # noqa: E402
import time  # noqa: E402

from fleetbox import (  # noqa: E402,F401
    assemble, batchfile, collector, devstate, discovery, probe, profiles, readplan, records, snmp, spool,
    sweep as _sweep, targets, walker,
)
from fleetbox.sweep import SweepOptions, sweep  # noqa: E402

if MODE != "box":
    # the collector borrows these only while a device needs them; imported here they stay,
    # as frozen modules would
    from fleetbox import countertables, features, icmp, sanity, web  # noqa: E402,F401

BATCH_RECORDS = 8   # as fleetbox.main

gc.collect()
code = gc.mem_alloc()
if MODE == "probe":
    print("CODE %d" % code)
    sys.exit(0)
opts = json.loads(sys.stdin.readline())
peak = [0]
if opts.get("gc_threshold"):
    gc.threshold(opts["gc_threshold"])   # collect every N bytes allocated: less fragmentation


def sample():
    gc.collect()
    used = gc.mem_alloc()
    if used > peak[0]:
        peak[0] = used


async def watch():
    while True:
        sample()
        await asyncio.sleep_ms(opts["sample_ms"])


async def main():
    lib = profiles.load([opts["profiles"]])
    state = devstate.DeviceState()
    statics = devstate.Statics(opts["statics"]) if opts.get("statics") else None
    box_spool = spool.Spool(opts["spool"]) if opts.get("spool") else None
    gc.collect()
    base = gc.mem_alloc()
    w = asyncio.create_task(watch()) if opts["sample_ms"] else None
    runs = []
    found = [0]
    head = {"scan": opts["kind"], "cycle": 0}
    staged = batchfile.BatchFile(box_spool.staged, lambda: head) if box_spool is not None else None

    def emit(rec):
        found[0] += 1
        if staged is None:
            print("REC %s %d" % (rec["ip"], len(json.dumps(rec))))
        else:
            print("REC %s" % rec["ip"])
            staged.add(rec)
            if staged.count >= BATCH_RECORDS:
                staged.finish(box_spool, spool.BULK)
        sample() if opts["sample_ms"] else None

    for _ in range(opts.get("runs", 1)):
        client = snmp.Client(timeout_ms=opts["timeout_ms"], retries=opts["retries"])
        found[0] = 0
        t = time.ticks_ms()
        stats = {}
        try:
            addrs = targets.expand(opts["targets"], [], opts["port"])
            probed, n = await sweep(client, addrs, emit, SweepOptions(
                scan=opts["kind"], profiles=lib, state=state, statics=statics, workers=opts["workers"],
                window=opts["window"], stats=stats))
            if staged is not None and staged.count:
                staged.finish(box_spool, spool.BULK)
        finally:
            client.close()
        ms = time.ticks_diff(time.ticks_ms(), t)
        st = client.stats
        runs.append({"ms": ms, "probe_ms": stats.get("ms", 0), "probed": probed, "found": n,
                     "packets_out": st["sent"] + stats.get("sent", 0),
                     "packets_in": st["received"] + stats.get("answered", 0) + stats.get("dropped", 0),
                     "bytes_out": st["bytes_out"] + stats.get("bytes_out", 0),
                     "bytes_in": st["bytes_in"] + stats.get("bytes_in", 0),
                     "collect_bytes": st["bytes_out"] + st["bytes_in"],
                     "spooled": len(box_spool) if box_spool is not None else 0})
    if w:
        w.cancel()
    loaded = sorted(m[9:] for m in sys.modules if m.startswith("fleetbox."))   # what the peak carried
    print("RESULT " + json.dumps({"runs": runs, "peak": peak[0], "code": code, "base": base, "modules": loaded,
                                  "heap": gc.mem_alloc() + gc.mem_free()}))


asyncio.run(main())
