"""The box's spool + uplink on MicroPython, driven by a test or bench/uplink over stdin.

Usage: micropython mp_uplink_box.py ROOT STATE_DIR < commands (one JSON per line):
  {"config": {...}, "identity": {...}}          first line
  {"put": batch, "class": 0}                     spool a batch (the JSON App._spool writes)
  {"drain": true}                                drain; prints {"sent", "error", "stats", "spool", "ticks"}
                                                 (ticks: 100 ms steps another task made meanwhile)
"""
import asyncio
import json
import sys

root, state = sys.argv[1], sys.argv[2]
sys.path.insert(0, root + "/firmware")
from fleetbox import config, uplink  # noqa: E402
from fleetbox.spool import Spool  # noqa: E402

first = json.loads(sys.stdin.readline())
cfg = config.check(first["config"])
up = uplink.Uplink(cfg, first["identity"], state)
spool = Spool(state + "/spool")


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
        print(json.dumps(out))
up.close()
