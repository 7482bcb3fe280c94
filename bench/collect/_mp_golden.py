"""Runs ON MICROPYTHON for bench/collect/records_golden.py: every scan kind, two sweeps each.

argv: FIRMWARE_DIR; options as one JSON line on stdin:
{targets: [[ip, port]], kinds, profiles, work (a writable folder), timeout_ms, retries}.
Per kind, a fresh device memory and statics folder; each address swept on its own (so
the order of answers never decides which of two addresses of one device is reported),
the device memory saved to its file after the first pass and read back for the second.
Prints `REC <kind> <pass> <json>`, `DUP ...`, `QUIET ...`, `STATE <kind> <pass> <json>`
and `WIRE <kind> <pass> <json>` lines.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import asyncio  # noqa: E402

from fleetbox import devstate, profiles, snmp  # noqa: E402

try:
    from fleetbox.sweep import SweepOptions, sweep  # noqa: E402
except ImportError:      # a firmware tree from before the collector was split (--firmware)
    from fleetbox import collector  # noqa: E402
    SweepOptions = dict

    async def sweep(client, addresses, on_record, o):
        return await collector.sweep(client, addresses, on_record, workers=o["workers"], scan=o["scan"],
                                     profile_list=o["profiles"], state=o["state"], statics=o["statics"],
                                     on_duplicate=o["on_duplicate"], on_unreachable=o["on_unreachable"])

opts = json.loads(sys.stdin.readline())


async def one_kind(kind, plist):
    path = "%s/devices-%s.json" % (opts["work"], kind)
    statics = devstate.Statics("%s/statics-%s" % (opts["work"], kind))
    for n in (1, 2):
        await one_pass(kind, plist, path, statics, n)


async def one_pass(kind, plist, path, statics, n):
    state = devstate.DeviceState(path)
    client = snmp.Client(timeout_ms=opts["timeout_ms"], retries=opts["retries"])

    def emit(rec):
        print("REC %s %d %s" % (kind, n, json.dumps(rec)))

    def dup(rec, first):
        print("DUP %s %d %s" % (kind, n, json.dumps([rec["ip"], first])))

    def quiet(marker):
        print("QUIET %s %d %s" % (kind, n, json.dumps(marker)))

    try:
        for host, p in opts["targets"]:
            await sweep(client, iter([(host, p)]), emit, SweepOptions(
                scan=kind, profiles=plist, state=state, statics=statics, workers=1,
                on_duplicate=dup, on_unreachable=quiet))
    finally:
        client.close()
    state.save()
    print("STATE %s %d %s" % (kind, n, json.dumps({k: state.get(k) for k in state.devices})))   # entries held as text
    st = client.stats
    print("WIRE %s %d %s" % (kind, n, json.dumps([st["sent"], st["bytes_out"], st["bytes_in"]])))


async def main():
    plist = profiles.load([opts["profiles"]])
    for kind in opts["kinds"]:
        await one_kind(kind, plist)
    print("DONE")


asyncio.run(main())
