"""Bytes on the wire per upload, and the cloud's ingest rate.

The box's real uplink runs on MicroPython (mbedtls) against the real cloud over HTTPS,
through a byte-counting TCP relay on loopback: the figures are TCP payload both ways,
TLS records and handshakes included. The records are what the box's own collector
reads from the simulated site (8 printers; `fbtool scan --kind full|counters|alerts`);
later cycles advance the counters as printing would (pages, clock, uptime).

Per scan kind, two figures:
  no reuse   one drain = one upload on its own TLS connection (handshake included)
  reuse      the extra bytes of one more upload inside a kept-alive TLS session:
             (bytes of a drain of 1+N uploads - bytes of a drain of 1) / N
Peer: a commercial collector box's published figures (per upload). The first upload ever
(every printer in full) is also split: batch, compressed payload, envelope, TLS and HTTP.
"""
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import ssl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "firmware")]

from tests.uplink_kit import Kit, Relay  # noqa: E402
from tests.interop.test_uplink_micropython import run_box  # noqa: E402

SNMP_PORT = 17361
PEER = {"full": 4000, "counters": 3000, "alerts": 2000, "empty": 1000}
GOALS = {"full": 1500, "alerts": 300}
N = 4


def scan(kind, addresses):
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fbtool"), "scan", "--json", "--kind", kind,
                        "--port", str(SNMP_PORT), "--timeout-ms", "800", "--retries", "1"] + addresses,
                       capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise SystemExit("fbtool scan failed: " + r.stderr)
    return json.loads(r.stdout)


def later(records, k):
    """The same printers k cycles (of 5 minutes) later: some pages printed."""
    out = copy.deepcopy(records)
    for i, rec in enumerate(out):
        if rec.get("collected_at") is not None:
            rec["collected_at"] += 300 * k
        if rec.get("uptime_s") is not None:
            rec["uptime_s"] += 300 * k
        c = rec.get("counters") or {}
        for key in ("total", "mono", "print"):
            if isinstance(c.get(key), int):
                c[key] += (3 + i) * k
    return out


def batch(kind, records, k):
    recs = later(records, k)
    cycle = min(r.get("collected_at") or 0 for r in recs) or int(time.time())
    return {"put": {"scan": kind, "cycle": cycle, "records": recs}, "class": {"counters": 1, "alerts": 2}.get(kind, 0)}


def measure(kit, relay, state, identity, commands):
    relay.reset()
    cfg = kit.raw_cfg(endpoints=("liberty",), resolve={"liberty": (relay.address, relay.port)})
    out = run_box(state, cfg, identity, commands)
    time.sleep(0.2)
    assert all(o["error"] is None for o in out), out
    if os.getenv("BENCH_VERBOSE"):
        print("  ", identity["serial"], len(commands) - 1, "uploads:", relay.count,
              [o["stats"]["bytes_out"] for o in out])
    LAST.update(relay.count, envelopes=out[-1]["stats"]["bytes_out"])
    return relay.total


LAST = {}   # the last measure(): TCP bytes up, down, and the envelopes' bytes


def payload_sizes(records):
    """(batch as CBOR, payload as the box sends it) of a first upload: every record in full."""
    from fleetbox import cbor, uplink
    from fleetbox.delta import DeltaState
    with tempfile.TemporaryDirectory() as tmp:
        out, _ = DeltaState(os.path.join(tmp, "d")).encode(1, batch("full", records, 0)["put"])
    return len(cbor.dumps(out)), len(uplink.payload(1, out, 1))


def wire(kit, relay, scans, tmp):
    rows = {}
    for kind, records in scans.items():
        state = os.path.join(tmp, "box-" + kind)
        ident = kit.add_identity("FBX-00000%d" % len(rows))   # a serial of the usual length
        k = 0
        # first sight (everything travels), then the steady state
        first = measure(kit, relay, state, ident, [batch("full", scans["full"], k), {"drain": True}])
        split = dict(LAST)
        k += 1
        measure(kit, relay, state, ident, [batch(kind, records, k), {"drain": True}])  # first of its kind
        k += 1
        one = measure(kit, relay, state, ident, [batch(kind, records, k), {"drain": True}])
        k += 1
        cmds = [batch(kind, records, k + j) for j in range(N + 1)] + [{"drain": True}]
        many = measure(kit, relay, state, ident, cmds)
        rows[kind] = (first, one, (many - one) / N, split)
    return rows


def ingest_rate(kit, scans, seconds=6, threads=4):
    """Envelopes per second the cloud stores: threads of boxes posting sealed 8-record uploads."""
    from fleetbox import cbor, envelope
    serials = ["FBX-BENCH%02d" % i for i in range(threads)]
    keys = {s: os.urandom(32) for s in serials}
    with open(kit.manifest) as f:
        m = json.load(f)
    m.update({s: {"1": k.hex()} for s, k in keys.items()})
    with open(kit.manifest, "w") as f:
        json.dump(m, f)
    lib = kit.cloud.receivers["liberty"]
    ctx = ssl.create_default_context(cadata=__import__("simulator.pki", fromlist=["der"]).der(kit.ca[1]))
    payload = cbor.dumps({"scan": "full", "cycle": int(time.time()), "records": scans["full"]})
    counts = [0] * threads
    stop = time.time() + seconds

    def box(i):
        serial = serials[i]
        conn = http.client.HTTPSConnection("liberty.fleetbox.test", lib.port, context=ctx)
        conn.sock = None
        conn._create_connection = lambda addr, timeout=None, source_address=None: \
            __import__("socket").create_connection((lib.address, lib.port), timeout)
        seq = 0
        while time.time() < stop:
            seq += 1
            body = envelope.seal(keys[serial], 1, serial, seq, int(time.time()),
                                 cbor.dumps({"v": 1, "upload": seq}) + payload)
            conn.request("POST", "/v1/ingest", body)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                counts[i] += 1
        conn.close()

    ts = [threading.Thread(target=box, args=(i,)) for i in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.time() - t0)


def main():
    from simulator.site import Site
    site = Site.from_yaml(port_override=SNMP_PORT).start()
    try:
        printers = [d.address for d in site.devices if d.is_printer][:8]
        scans = {kind: scan(kind, printers) for kind in ("full", "counters", "alerts")}
    finally:
        site.stop()
    print("records: %d printers; full scan %d bytes as JSON" % (len(scans["full"]), len(json.dumps(scans["full"]))))
    with tempfile.TemporaryDirectory() as tmp:
        kit = Kit(tmp, ("127.77.20.1", 17743), ("127.77.20.2", 17743)).start()
        relay = Relay("127.77.20.3", (kit.cloud.receivers["liberty"].address, kit.cloud.receivers["liberty"].port))
        try:
            rows = wire(kit, relay, scans, tmp)
            rate = ingest_rate(kit, scans)
        finally:
            relay.stop()
            kit.stop()
    print()
    print("bytes on the wire per upload (TCP payload both ways, TLS included)")
    print("%-26s %10s %10s %10s %14s %12s" % ("scan", "no reuse", "reuse", "peer", "no reuse/peer", "reuse/peer"))
    labels = {"full": "full scan, 8 printers", "counters": "counters scan", "alerts": "alerts scan, nothing new"}
    for kind, (_first, one, reused, _split) in rows.items():
        print("%-26s %10d %10d %10d %13.2fx %11.2fx" % (labels[kind], one, reused, PEER[kind], one / PEER[kind],
                                                       reused / PEER[kind]))
    print("%-26s %10d %10d %10d %13.2fx %11.2fx  (nothing to send: no upload)" % (
        "empty scan (no printers)", 0, 0, PEER["empty"], 0, 0))
    print("%-26s %10d %10s %10d %13.2fx %12s  (a device's first upload ever: every field)" % (
        "first sight, full, 8", rows["full"][0], "-", PEER["full"], rows["full"][0] / PEER["full"], "-"))
    first, split = rows["full"][0], rows["full"][3]
    plain, sent = payload_sizes(scans["full"])
    print()
    print("first upload of %d printers, where the bytes go (before: 12,500, peer %d)" % (len(scans["full"]),
                                                                                       PEER["full"]))
    print("  %-66s %6d" % ("the batch as CBOR (payload version 2 sent it so)", plain))
    print("  %-66s %6d" % ("payload version 3: header + batch compressed with dictionary 1", sent))
    print("  %-66s %6d" % ("envelope (header, IV, padding, MAC) around it", split["envelopes"]))
    print("  %-66s %6d" % ("box -> cloud: + TLS handshake, HTTP request head, TLS records", split["up"]))
    print("  %-66s %6d" % ("cloud -> box: TLS handshake (server certificate), answer", split["down"]))
    print("  %-66s %6d  %s the peer's %d" % ("total", first, "under" if first <= PEER["full"] else "OVER",
                                             PEER["full"]))
    print()
    for kind, goal in GOALS.items():
        got = rows[kind][2]
        print("goal: %s under %d bytes with reuse: %d -> %s"
              % (labels[kind], goal, got, "met" if got < goal else "NOT met"))
    print("cloud ingest: %.0f envelopes/s (8-record full uploads, 4 boxes over HTTPS keep-alive, one SQLite store)"
          % rate)


if __name__ == "__main__":
    main()
