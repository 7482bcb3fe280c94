"""`fbtool scan`: run the firmware's collector once on MicroPython and show what it found."""
import json
import os
import subprocess
import sys

from . import paths

sys.path.insert(0, paths.FIRMWARE)
from fleetbox import targets  # noqa: E402  (the firmware's own parser: same rules as the box)


class ScanError(Exception):
    pass


def run(target_specs, community="public", version="2c", port=161, exclude=(), timeout_ms=1000,
        retries=1, workers=32):
    """Scan on MicroPython; returns (records sorted by ip, addresses probed)."""
    for spec in list(target_specs) + list(exclude):
        try:
            targets.parse(spec, port)
        except targets.TargetError as e:
            raise ScanError(str(e))
    opts = {"targets": list(target_specs), "exclude": list(exclude), "community": community,
            "version": version, "port": port, "timeout_ms": timeout_ms, "retries": retries, "workers": workers}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mp_scan.py")
    proc = subprocess.run([paths.micropython(), "-X", "heapsize=4M", script, paths.FIRMWARE],
                          input=json.dumps(opts) + "\n", capture_output=True, text=True)
    records, probed = [], None
    for line in proc.stdout.splitlines():
        if line.startswith("REC "):
            records.append(json.loads(line[4:]))
        elif line.startswith("DONE "):
            probed = int(line.split()[1])
        elif line.strip():
            print(line, file=sys.stderr)
    if proc.returncode != 0 or probed is None:
        raise ScanError("the collector failed on MicroPython:\n" + (proc.stderr or proc.stdout)[-2000:])
    records.sort(key=lambda r: targets.ip_to_int(r["ip"]))
    return records, probed


def lowest_supply(rec):
    levels = [s["percent"] for s in rec.get("supplies") or [] if s.get("percent") is not None]
    return min(levels) if levels else None


def table(records, title):
    from rich.table import Table
    t = Table(title=title)
    for col in ("address", "vendor", "model", "serial", "total pages", "lowest supply %"):
        t.add_column(col, justify="right" if col in ("total pages", "lowest supply %") else "left")
    for r in records:
        low = lowest_supply(r)
        total = (r.get("counters") or {}).get("total")
        t.add_row("%s:%d" % (r["ip"], r["port"]) if r.get("port", 161) != 161 else r["ip"],
                  r.get("manufacturer") or "?", r.get("model") or "?", r.get("serial") or "-",
                  "-" if total is None else str(total), "-" if low is None else str(low))
    return t
