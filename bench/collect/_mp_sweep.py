"""Runs ON MICROPYTHON for bench/collect/collect.py: one sweep, figures on stdout.

argv: MPY_DIR (precompiled firmware); options as one JSON line on stdin:
{targets, port, kind, workers, window, timeout_ms, retries, profiles, sample_ms, runs}.
Prints `REC <ip> <json size>` per record and one `RESULT <json>` line.
"""
import gc
import json
import sys

sys.path.insert(0, sys.argv[1])
import asyncio  # noqa: E402
import time  # noqa: E402

from fleetbox import devstate, profiles, snmp, targets  # noqa: E402
from fleetbox.sweep import SweepOptions, sweep  # noqa: E402

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
    gc.collect()
    base = gc.mem_alloc()
    w = asyncio.create_task(watch()) if opts["sample_ms"] else None
    runs = []
    found = []

    def emit(rec):
        found.append(rec["ip"])
        print("REC %s %d" % (rec["ip"], len(json.dumps(rec))))
        sample() if opts["sample_ms"] else None

    for _ in range(opts.get("runs", 1)):
        client = snmp.Client(timeout_ms=opts["timeout_ms"], retries=opts["retries"])
        found.clear()
        t = time.ticks_ms()
        stats = {}
        try:
            addrs = targets.expand(opts["targets"], [], opts["port"])
            probed, n = await sweep(client, addrs, emit, SweepOptions(
                scan=opts["kind"], profiles=lib, state=state, statics=statics, workers=opts["workers"],
                window=opts["window"], stats=stats))
        finally:
            client.close()
        ms = time.ticks_diff(time.ticks_ms(), t)
        st = client.stats
        runs.append({"ms": ms, "probe_ms": stats.get("ms", 0), "probed": probed, "found": n,
                     "packets_out": st["sent"] + stats.get("sent", 0),
                     "packets_in": st["received"] + stats.get("answered", 0) + stats.get("dropped", 0),
                     "bytes_out": st["bytes_out"] + stats.get("bytes_out", 0),
                     "bytes_in": st["bytes_in"] + stats.get("bytes_in", 0),
                     "collect_bytes": st["bytes_out"] + st["bytes_in"]})
    if w:
        w.cancel()
    loaded = sorted(m[9:] for m in sys.modules if m.startswith("fleetbox."))   # what the peak carried
    print("RESULT " + json.dumps({"runs": runs, "peak": peak[0], "base": base, "modules": loaded}))


asyncio.run(main())
