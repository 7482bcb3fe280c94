"""Walk a recorded printer's Printer-MIB and HOST-RESOURCES printer tables three ways.

Usage: .venv/bin/python bench/snmp/walk.py [RECORDING=printmaster_kyocera_cs4053] [RUNS=5]

One snmpsim replays the recording; each reader walks 1.3.6.1.2.1.43 then 1.3.6.1.2.1.25.3
(v2c GETBULK) through a counting UDP relay (_udpproxy.py), RUNS times:
  (a) the box's engine (fleetbox.snmp) on MicroPython, its default walk (max-repetitions
      from 10, growing while replies fit in 1400 octets), and again with it fixed at 10,
  (b) pysnmp 7 on CPython (bulk_walk_cmd, max-repetitions 10, no MIB lookups),
  (c) net-snmp's snmpbulkwalk (its default max-repetitions 10), one process per subtree.
Prints median wall time, requests, octets each way, rows, and ratios; checks that all
three read the same OIDs. Then polls 200 agents at once (200 loopback addresses on one
snmpsim): a 5-OID GET each, by the box's engine on MicroPython, by pysnmp on CPython
(asyncio.gather) and by 200 concurrent snmpget processes.
"""
import asyncio
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (NET_SNMP_ENV, Relay, Snmpsim, free_port, median,  # noqa: E402
                     run_micropython)

ROOTS = ["1.3.6.1.2.1.43", "1.3.6.1.2.1.25.3"]

MP_WALK = r"""
import json, asyncio, time
from fleetbox import snmp
opts = json.loads(input())

async def main():
    times, oids = [], []
    for run in range(opts["runs"]):
        c = snmp.Client(timeout_ms=2000, retries=1)
        seen = []
        t0 = time.ticks_us()
        for root in opts["roots"]:
            await c.walk_each("127.0.0.1", root, lambda o, v: seen.append(o), community=opts["community"],
                              port=opts["port"], reply_budget=opts["budget"])
        times.append(time.ticks_diff(time.ticks_us(), t0) / 1e6)
        c.close()
        oids = seen
    print(json.dumps({"times": times, "oids": oids}))
asyncio.run(main())
"""

MP_POLL = r"""
import json, asyncio, time
from fleetbox import snmp
opts = json.loads(input())

async def main():
    c = snmp.Client(timeout_ms=3000, retries=1, window=opts["window"])
    t0 = time.ticks_us()
    res = await asyncio.gather(*[c.get(h, opts["oids"], community=opts["community"], port=opts["port"])
                                 for h in opts["hosts"]])
    dt = time.ticks_diff(time.ticks_us(), t0) / 1e6
    ok = sum(1 for r in res if len(r) == len(opts["oids"]))
    c.close()
    print(json.dumps({"time": dt, "ok": ok, "stats": c.stats}))
asyncio.run(main())
"""


def pysnmp_walk(port, community, runs):
    from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, ObjectIdentity, ObjectType,
                                             SnmpEngine, UdpTransportTarget, bulk_walk_cmd)

    async def main():
        times, oids = [], []
        for _ in range(runs):
            eng = SnmpEngine()
            seen = []
            t0 = time.perf_counter()
            target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1)
            for root in ROOTS:
                async for ei, es, _ex, vbs in bulk_walk_cmd(eng, CommunityData(community), target, ContextData(),
                                                            0, 10, ObjectType(ObjectIdentity(root)),
                                                            lexicographicMode=False, lookupMib=False):
                    assert ei is None and not int(es), (ei, es)
                    seen += [str(o) for o, v in vbs]
            times.append(time.perf_counter() - t0)
            eng.close_dispatcher()
            oids = seen
        return times, oids
    return asyncio.run(main())


def netsnmp_walk(port, community, runs):
    times, oids = [], []
    for _ in range(runs):
        seen = []
        t0 = time.perf_counter()
        for root in ROOTS:
            r = subprocess.run(["snmpbulkwalk", "-v2c", "-c", community, "-On", "-Oq", "-t", "2", "-r", "1",
                                "127.0.0.1:%d" % port, root], capture_output=True, text=True, env=NET_SNMP_ENV)
            assert r.returncode == 0, r.stderr
            seen += [ln.split(" ", 1)[0][1:] for ln in r.stdout.splitlines() if ln.startswith(".")]
        times.append(time.perf_counter() - t0)
        oids = seen
    return times, oids


def measure(name, fn, agent_port, runs):
    relay = Relay(agent_port)
    try:
        times, oids = fn(relay.port, runs)
    finally:
        c = relay.counts()
    return {"name": name, "time": median(times), "rows": len(oids), "oids": oids,
            "requests": c["requests"] / runs, "bytes_out": c["bytes_out"] / runs,
            "bytes_in": c["bytes_in"] / runs}


def walk_bench(recording, runs):
    sim = Snmpsim([recording], [("127.0.0.1", free_port())])
    port = sim.endpoints[0][1]
    try:
        def box_walk(budget):
            return lambda p, n: (lambda o: (o["times"], o["oids"]))(run_micropython(MP_WALK, json.dumps(
                {"runs": n, "roots": ROOTS, "community": recording, "port": p, "budget": budget}), heap="1M"))
        box = measure("box engine (MicroPython)", box_walk(1400), port, runs)
        box10 = measure("  same, max-rep. fixed 10", box_walk(0), port, runs)
        pys = measure("pysnmp 7 (CPython)", lambda p, n: pysnmp_walk(p, recording, n), port, runs)
        net = measure("net-snmp snmpbulkwalk", lambda p, n: netsnmp_walk(p, recording, n), port, runs)
    finally:
        sim.close()
    same = box["oids"] == net["oids"] == pys["oids"] == box10["oids"]
    print("walk of %s under %s on recording %s, median of %d runs; same %d OIDs read by all three: %s"
          % (" and ".join(ROOTS), "snmpsim", recording, runs, net["rows"], "yes" if same else "NO"))
    print("%-26s %10s %9s %11s %11s %11s" % ("reader", "wall ms", "requests", "octets out", "octets in",
                                             "octets all"))
    for r in (box, box10, pys, net):
        print("%-26s %10.1f %9.0f %11.0f %11.0f %11.0f" % (r["name"], r["time"] * 1000, r["requests"],
                                                           r["bytes_out"], r["bytes_in"],
                                                           r["bytes_out"] + r["bytes_in"]))

    def tot(r):
        return r["bytes_out"] + r["bytes_in"]
    print("box / snmpbulkwalk: time %.2fx, requests %.2fx, octets %.2fx"
          % (box["time"] / net["time"], box["requests"] / net["requests"], tot(box) / tot(net)))
    print("box / pysnmp:       time %.2fx, requests %.2fx, octets %.2fx"
          % (box["time"] / pys["time"], box["requests"] / pys["requests"], tot(box) / tot(pys)))
    return same


def poll_bench(n=200, recording="printmaster_kyocera_cs4053"):
    hosts = ["127.41.%d.%d" % (1 + i // 250, 1 + i % 250) for i in range(n)]
    port = free_port()
    oids = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.25.3.2.1.3.1",
            "1.3.6.1.2.1.43.10.2.1.4.1.1"]
    t0 = time.perf_counter()
    sim = Snmpsim([recording], [(h, port) for h in hosts])
    print("poll of %d agents (one snmpsim on %d loopback addresses, started in %.1f s), a %d-OID GET each:"
          % (n, n, time.perf_counter() - t0, len(oids)))
    try:
        mp = run_micropython(MP_POLL, json.dumps({"hosts": hosts, "oids": oids, "community": recording,
                                                  "port": port, "window": 64}), heap="1M")
        from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, ObjectIdentity, ObjectType,
                                                 SnmpEngine, UdpTransportTarget, get_cmd)

        async def pys():
            eng = SnmpEngine()
            t0 = time.perf_counter()

            async def one(h):
                t = await UdpTransportTarget.create((h, port), timeout=3, retries=1)
                ei, es, ex, vbs = await get_cmd(eng, CommunityData(recording), t, ContextData(),
                                                *[ObjectType(ObjectIdentity(o)) for o in oids], lookupMib=False)
                return ei is None and len(vbs) == len(oids)
            res = await asyncio.gather(*[one(h) for h in hosts])
            dt = time.perf_counter() - t0
            eng.close_dispatcher()
            return dt, sum(res)
        pt, pok = asyncio.run(pys())
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["snmpget", "-v2c", "-c", recording, "-t", "3", "-r", "1", "%s:%d" % (h, port)]
                                  + oids, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NET_SNMP_ENV)
                 for h in hosts]
        nok = sum(1 for p in procs if p.wait() == 0)
        nt = time.perf_counter() - t0
    finally:
        sim.close()
    print("  box engine (MicroPython, 1 MiB heap, window 64): %7.0f ms, %d/%d answered"
          % (mp["time"] * 1000, mp["ok"], n))
    print("  pysnmp 7 (CPython):       %7.0f ms, %d/%d answered" % (pt * 1000, pok, n))
    print("  net-snmp, %d snmpget:    %7.0f ms, %d/%d answered" % (n, nt * 1000, nok, n))
    print("  box / pysnmp %.2fx, box / net-snmp %.2fx" % (mp["time"] / pt, mp["time"] / nt))


def main():
    recording = sys.argv[1] if len(sys.argv) > 1 else "printmaster_kyocera_cs4053"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    same = walk_bench(recording, runs)
    print()
    poll_bench()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
