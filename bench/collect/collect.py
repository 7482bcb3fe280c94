"""Discovery and collection on a simulated site, the box's collector on MicroPython.

Usage: .venv/bin/python bench/collect/collect.py [--part PARTS] [-v]
    (PARTS: the parts to run, e.g. "c" or "ab"; all three by default; -v: (c) names the
    firmware modules loaded at the end, i.e. what the peak carried)

(a) Sweep of a /24 holding 20 printers (every real recording + one live pysnmp printer)
    and 30 other devices (switch, UPS, camera, Linux server recordings, several times),
    1 s timeout, one retry: wall time, packets, against net-snmp's snmpget of the same
    system group, 64 processes at a time (the peer a script would use).
(b) LAN bytes, both directions (SNMP payload), for a full collection of 8 printers (the
    first 8 recordings), then of all 19, after discovery (its system-group GET is shown
    apart): first contact and the next scan (row counts remembered, supplies' static
    columns cached on flash: only levels read), against snmpbulkwalk of the same tables
    (+ snmpget of the same scalars) per printer.
(c) MicroPython heap during (a) with full records going to a spool as on the box (live
    bytes sampled after each record and every 20 ms): the code heap (every module a cycle
    uses, imported first; a board keeps them frozen in flash) apart from the data heap
    (the rest), and whether the sweep runs in `-X heapsize=` code + 48 KB, code + 64 KB
    (1 and 2 collectors) and in 192K, 224K, 256K.
"""
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host-tools"), os.path.join(ROOT, "firmware")]
from simulator.site import Site, walks_dir  # noqa: E402
from fbtool import profiles as compiler  # noqa: E402
from tests.update_kit import bytecode  # noqa: E402

PORT = 17581
NET = "127.45.0."
MP = os.path.join(ROOT, ".venv", "bin", "micropython")
SYS = ["1.3.6.1.2.1.1.%d.0" % i for i in range(1, 7)]
TABLES = ["1.3.6.1.2.1.1", "1.3.6.1.2.1.2.2.1.6", "1.3.6.1.2.1.4.20.1.2", "1.3.6.1.2.1.25.3.2",
          "1.3.6.1.2.1.25.3.5", "1.3.6.1.2.1.43.5.1.1.17", "1.3.6.1.2.1.43.10.2", "1.3.6.1.2.1.43.11",
          "1.3.6.1.2.1.43.12", "1.3.6.1.2.1.43.13.4", "1.3.6.1.2.1.43.16.5", "1.3.6.1.2.1.43.18"]


def site_description(net=NET):
    """A /24 (net + "0/24"): the 19 recordings and a live pysnmp printer from .10 up, then 30
    other devices (switch, UPS, camera, Linux server recordings, several times) from .100."""
    walks = walks_dir()
    recs = sorted(glob.glob(str(walks / "recordings" / "*.snmprec")))
    negs = sorted(glob.glob(str(walks / "negative" / "*.snmprec")))
    devs, n = [], 10
    for p in recs:
        devs.append({"name": "p-" + os.path.basename(p)[:-8], "address": net + str(n), "kind": "recording",
                     "recording": p, "printer": True})
        n += 1
    devs.append({"name": "live-hp", "address": net + str(n), "kind": "dynamic", "manufacturer": "HP",
                 "model": "LaserJet Pro M404dn", "serial": "PHBQB07213", "sys_descr": "HP ETHERNET MULTI-ENVIRONMENT",
                 "sys_object_id": "1.3.6.1.4.1.11.2.3.9.1", "sys_name": "NPI1", "location": "", "contact": "",
                 "mac": "a0:d3:c1:8c:2d:1e",
                 "printer": {"hr_device_descr": "HP LaserJet Pro M404dn", "technology": "laser", "duplex": True,
                             "life_count": 48213, "pages_per_second": 1.0,
                             "supplies": [{"description": "Black Cartridge HP 58A", "type": "tonerCartridge",
                                           "colorant": "black", "unit": "percent", "max": 100, "level": 63}]}})
    n = 100
    for i in range(30):
        p = negs[i % len(negs)]
        devs.append({"name": "o-%d" % i, "address": net + str(n + i), "kind": "recording", "recording": p,
                     "printer": False})
    return {"network": net + "0/24", "devices": devs}




def mp_sweep(mpy, prof, targets, kind, heap="256K", workers=2, sample_ms=0, runs=1, gc_threshold=0,
             statics=None, spool=None, port=PORT, mode="frozen"):
    opts = {"targets": targets, "port": port, "kind": kind, "workers": workers, "window": 256,
            "timeout_ms": 1000, "retries": 1, "profiles": prof, "sample_ms": sample_ms, "runs": runs,
            "gc_threshold": gc_threshold, "statics": statics, "spool": spool}
    r = subprocess.run([MP, "-X", "heapsize=" + str(heap), os.path.join(os.path.dirname(__file__), "_mp_sweep.py"),
                        mpy, mode], input=json.dumps(opts) + "\n", capture_output=True, text=True, timeout=600)
    recs = [line.split()[1:] for line in r.stdout.splitlines() if line.startswith("REC ")]
    res = [line[7:] for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode or not res:
        return None, recs, (r.stderr or r.stdout)[-600:]
    return json.loads(res[0]), recs, ""


def code_heap(mpy):
    """Bytes of heap the firmware's modules hold once imported (what a board keeps in flash)."""
    r = subprocess.run([MP, "-X", "heapsize=4M", os.path.join(os.path.dirname(__file__), "_mp_sweep.py"), mpy,
                        "probe"], capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    return int(r.stdout.split("CODE ")[1].split()[0])


ROMFS_PROBE = """
import gc, sys, vfs
gc.collect()
before = gc.mem_alloc()
with open(sys.argv[1], "rb") as f:
    image = f.read()
vfs.mount(vfs.VfsRom(image), "/rom")
sys.path.insert(0, "/rom")
from fleetbox import (assemble, batchfile, collector, countertables, devstate, discovery, features, icmp,
                      probe, profiles, readplan, records, sanity, snmp, spool, sweep, targets, walker, web)
gc.collect()
print("ROMFS %d %d" % (len(image), gc.mem_alloc() - before - len(image)))
"""


def code_heap_romfs(mpy):
    """(image bytes, heap the same modules hold when run in place from a ROMFS image): the
    bytecode stays in the image, as in a board's flash; what is left is what importing
    makes (module dicts, functions, classes, interned names)."""
    from mpremote.romfs import VfsRomWriter
    w = VfsRomWriter()
    w.opendir("fleetbox")
    pkg = os.path.join(mpy, "fleetbox")
    for name in sorted(os.listdir(pkg)):
        with open(os.path.join(pkg, name), "rb") as f:
            w.mkfile(name, f.read())
    w.closedir()
    image = os.path.join(mpy, "code.romfs")
    with open(image, "wb") as f:
        f.write(w.finalise())
    script = os.path.join(mpy, "romfs_probe.py")
    with open(script, "w") as f:
        f.write(ROMFS_PROBE)
    r = subprocess.run([MP, "-X", "heapsize=4M", script, image], capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(r.stdout + r.stderr)
    size, held = r.stdout.split("ROMFS ")[1].split()[:2]
    return int(size), int(held)


def snmpget_sweep():
    """net-snmp: snmpget of the system group on every address, 64 at a time."""
    def one(i):
        p = subprocess.run(["snmpget", "-v2c", "-c", "public", "-t", "1", "-r", "1", "-On",
                            "%s%d:%d" % (NET, i, PORT)] + SYS, capture_output=True, text=True)
        return p.returncode == 0
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        answered = sum(ex.map(one, range(1, 255)))
    return time.time() - t, answered


def netsnmp_bytes(addr, extra_oids):
    """Octets both ways for snmpbulkwalk of TABLES plus snmpget of extra_oids (net-snmp -d)."""
    total = 0
    cmds = [["snmpbulkwalk", "-v2c", "-c", "public", "-d", "-On", "%s:%d" % (addr, PORT), t] for t in TABLES]
    if extra_oids:
        cmds.append(["snmpget", "-v2c", "-c", "public", "-d", "-On", "%s:%d" % (addr, PORT)] + extra_oids)
    for c in cmds:
        r = subprocess.run(c, capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        total += sum(int(x) for x in re.findall(r"^(?:Sending|Received) (\d+) byte", out, re.M))
    return total


def main():
    parts = sys.argv[sys.argv.index("--part") + 1] if "--part" in sys.argv else "abc"
    with tempfile.TemporaryDirectory() as tmp:
        mpy = bytecode(os.path.join(tmp, "mpy"), None)
        prof = os.path.join(tmp, "profiles.json")
        compiler.compile_to(prof)
        desc = site_description()
        site = Site.from_dict(desc, port_override=PORT)
        site.start()
        try:
            printers = [d["address"] for d in desc["devices"] if d.get("printer")]
            print("site: %d devices (%d printers) on %s0/24, port %d; 1 s timeout, 1 retry" % (
                len(desc["devices"]), len(printers), NET, PORT))

            if "a" in parts:
                # (a) discovery sweep
                res, recs, err = mp_sweep(mpy, prof, [NET + "0/24"], "discovery", heap="256K", workers=4,
                                          statics=os.path.join(tmp, "statics-a"))
                if res is None:
                    print("(a) sweep FAILED: " + err)
                else:
                    r = res["runs"][0]
                    peer_s, peer_n = snmpget_sweep()
                    print("(a) /24 discovery sweep: fleetbox %.2f s (every address probed, answering agents known),"
                          " %.2f s with the discovery records of %d/%d printers;"
                          " %d packets out, %d in, %d+%d bytes"
                          % (r["probe_ms"] / 1000, r["ms"] / 1000, r["found"], len(printers), r["packets_out"],
                             r["packets_in"], r["bytes_out"], r["bytes_in"]))
                    print("    net-snmp snmpget x64 parallel: %.2f s, %d answering agents   ratio %.1fx"
                          "  (goal < 4 s: %s)"
                          % (peer_s, peer_n, peer_s / (r["probe_ms"] / 1000),
                             "met" if r["probe_ms"] < 4000 else "NOT met"))
                    if r["ms"] - r["probe_ms"] > 500:
                        print("    (the records took longer: one snmpsim process serves the replayed agents,"
                              " and it cannot"
                              " encode the zebra recording's hrDeviceID \"0\" (a 1-arc OID): a walk reaching it goes"
                              " unanswered, 1 s + 2 s)")

            if "b" in parts:
                # (b) LAN bytes for a full collection of 8 printers
                eight = printers[:8]
                res, recs, err = mp_sweep(mpy, prof, eight, "full", heap="1M", runs=2,
                                          statics=os.path.join(tmp, "statics8"))
                if res is None:
                    print("(b) collection FAILED: " + err)
                else:
                    first, second = res["runs"]
                    peer = sum(netsnmp_bytes(a, []) for a in eight)
                    print("(b) full collection of 8 printers, LAN bytes both ways (SNMP payload):")
                    print("    fleetbox first contact %d B (%.0f B/printer), next scan %d B (%.0f B/printer)"
                          % (first["collect_bytes"], first["collect_bytes"] / 8, second["collect_bytes"],
                             second["collect_bytes"] / 8))
                    print("    net-snmp snmpbulkwalk of the same %d tables: %d B (%.0f B/printer)   ratio %.1fx / %.1fx"
                          % (len(TABLES), peer, peer / 8, peer / first["collect_bytes"],
                             peer / second["collect_bytes"]))
                    print("    goal < 2048 B/printer on average: first contact %s, next scan %s"
                          % ("met" if first["collect_bytes"] / 8 < 2048 else "NOT met",
                             "met" if second["collect_bytes"] / 8 < 2048 else "NOT met"))
                    res_all, _, _ = mp_sweep(mpy, prof, printers[:19], "full", heap="1M", runs=2,
                                             statics=os.path.join(tmp, "statics19"))
                    if res_all:
                        f, s = res_all["runs"]
                        print("    all 19 recordings: first contact %.0f B/printer, next scan %.0f B/printer"
                              % (f["collect_bytes"] / f["found"], s["collect_bytes"] / s["found"]))
                        print("    (the same with discovery's system-group GET counted in: %.0f / %.0f B/printer)"
                              % ((f["bytes_out"] + f["bytes_in"]) / f["found"],
                                 (s["bytes_out"] + s["bytes_in"]) / s["found"]))

            if "c" in parts:
                # (c) heap: sweep + full collection of the 20 printers, records to a spool as on the box
                code = code_heap(mpy)
                print("(c) code heap: %d B (every module a cycle uses, imported: on a board they are frozen"
                      " into flash); data heap = live heap - code heap" % code)
                rom, held = code_heap_romfs(mpy)
                print("    the same modules run in place from a %d B ROMFS image (bytecode in the image, as in"
                      " flash): %d B of heap" % (rom, held))
                runs = [(code + 48 * 1024, 1), (code + 64 * 1024, 1), (code + 64 * 1024, 2),
                        (192 * 1024, 1), (224 * 1024, 1), (256 * 1024, 2)]
                for i, (heap, workers) in enumerate(runs):
                    spool_dir = os.path.join(tmp, "spool-c%d" % i)
                    frozen = i < 3      # code + N: every module imported first; else as the box imports them
                    res, recs, err = mp_sweep(mpy, prof, [NET + "0/24"], "full", heap=heap, sample_ms=20,
                                              workers=workers, statics=os.path.join(tmp, "statics-c"),
                                              spool=spool_dir, mode="frozen" if frozen else "box")
                    ok = res is not None and res["runs"][0]["found"] == len(printers)
                    extra = ""
                    if res is not None:
                        extra = "%d printers in %.2f s, %d batches spooled, %s peak %d B (live %d B)" % (
                            res["runs"][0]["found"], res["runs"][0]["ms"] / 1000, res["runs"][0]["spooled"],
                            "data heap" if frozen else "heap above the modules imported first",
                            res["peak"] - res["code"], res["peak"])
                    label = ("code+%dK" % ((heap - code) // 1024)) if heap - code in (48 * 1024, 64 * 1024) \
                        else "%dK" % (heap // 1024)
                    print("(c) -X heapsize=%s (%d B), %d collector(s), sweep + full collection of %d printers%s: %s %s"
                          % (label, heap, workers, len(printers), "" if frozen else " (modules imported as the box"
                             " does)", "OK" if ok else "FAILED", extra or err[-900:]))
                    if res is not None and "-v" in sys.argv:
                        print("    modules loaded: " + " ".join(res.get("modules", ())))
        finally:
            site.stop()


if __name__ == "__main__":
    main()
