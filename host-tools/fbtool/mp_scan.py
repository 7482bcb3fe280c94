"""Runs ON MICROPYTHON, started by `fbtool scan`: the firmware's collector, once, from the host.

argv: FIRMWARE_DIR; options arrive as one JSON line on stdin (the unix port aborts on
very long arguments). Prints one line per record: `REC <json>`, then `DONE <probed> <found>`.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import asyncio  # noqa: E402

from fleetbox import port, profiles, snmp, targets  # noqa: E402
from fleetbox.sweep import SweepOptions, sweep  # noqa: E402

opts = json.loads(sys.stdin.readline())
port.set_log_level(opts.get("log_level", "info"))


def emit(rec):
    print("REC " + json.dumps(rec))


async def main():
    client = snmp.Client(timeout_ms=opts["timeout_ms"], retries=opts["retries"])
    try:
        addrs = targets.expand(opts["targets"], opts["exclude"], opts["port"])
        v3 = opts.get("v3")
        if v3:
            cred = snmp.Credential.v3(v3["user"], v3["auth"], v3["auth_pass"], v3["priv"],
                                      v3["priv_pass"], v3["context"])
        else:
            cred = snmp.Credential(opts["version"], opts["community"])
        plist = profiles.load([opts["profiles"]]) if opts.get("profiles") else []
        probed, found = await sweep(client, addrs, emit, SweepOptions(
            scan=opts.get("kind", "full"), creds=[cred], profiles=plist, workers=opts["workers"],
            web_ports=opts.get("web_ports")))
    finally:
        client.close()
    print("DONE %d %d" % (probed, found))


asyncio.run(main())
