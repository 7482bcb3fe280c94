"""Runs ON MICROPYTHON, started by `fbtool scan`: the firmware's collector, once, from the host.

argv: FIRMWARE_DIR; options arrive as one JSON line on stdin (the unix port aborts on
very long arguments). Prints one line per record: `REC <json>`, then `DONE <probed> <found>`.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import asyncio  # noqa: E402

from fleetbox import collector, snmp, targets  # noqa: E402

opts = json.loads(sys.stdin.readline())


def emit(rec):
    print("REC " + json.dumps(rec))


async def main():
    client = snmp.Client(timeout_ms=opts["timeout_ms"], retries=opts["retries"])
    try:
        addrs = targets.expand(opts["targets"], opts["exclude"], opts["port"])
        probed, found = await collector.sweep(client, addrs, emit, opts["community"].encode(),
                                              opts["version"], opts["workers"])
    finally:
        client.close()
    print("DONE %d %d" % (probed, found))


asyncio.run(main())
