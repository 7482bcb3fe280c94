"""The box's spool + uplink on MicroPython, driven by a test or bench/uplink over stdin.

Usage: micropython mp_uplink_box.py ROOT STATE_DIR < commands (one JSON per line):
  {"config": {...}, "identity": {...}}          first line; optional "clock_offset_s": N (the box's
                                                 clock N s off), or null (no clock: time 0 until a
                                                 sealed answer sets it)
  {"put": batch, "class": 0}                     spool a batch (the JSON App._spool writes)
  {"drain": true}                                drain; prints {"sent", "error", "stats", "spool", "ticks"}
                                                 (ticks: 100 ms steps another task made meanwhile;
                                                 clock: the box's time; seq: its envelope counter)
"""
import asyncio
import json
import sys
import time

root, state = sys.argv[1], sys.argv[2]
sys.path.insert(0, root + "/firmware")
from fleetbox import config, port, uplink  # noqa: E402
from fleetbox.spool import Spool  # noqa: E402

first = json.loads(sys.stdin.readline())
cfg = config.check(first["config"])
up = uplink.Uplink(cfg, first["identity"], state)
spool = Spool(state + "/spool")
if "clock_offset_s" in first:
    clock = [first["clock_offset_s"]]     # None: no clock yet

    def set_time(t):
        clock[0] = t - int(time.time())
    port.set_clock(lambda: None if clock[0] is None else int(time.time()) + clock[0])
    up.on_time = set_time


async def ticker(out):
    while True:
        await asyncio.sleep_ms(100)
        out["ticks"] += 1


async def drain(out):
    t = asyncio.create_task(ticker(out))   # stands for the health task: runs while the network is slow
    try:
        return await up.drain(spool)
    finally:
        t.cancel()


for line in sys.stdin:
    cmd = json.loads(line)
    if "put" in cmd:
        spool.put(json.dumps(cmd["put"]), cmd.get("class", 0))
    elif "drain" in cmd:
        out = {"sent": 0, "error": None, "ticks": 0}
        try:
            out["sent"] = asyncio.run(drain(out))
        except uplink.UplinkError as e:
            out["error"] = str(e)
        out["stats"] = up.stats
        out["spool"] = spool.ids()
        out["clock"] = port.time_s()
        out["seq"] = up.seq
        print(json.dumps(out))
up.close()
