"""The firmware collector's records from every printer recording, as canonical JSON.

Usage: .venv/bin/python bench/collect/records_golden.py [--check | --write | --print] [PATH] [--firmware DIR]
(default --check of tests/data/records-golden.json: prints identical/DIFFERENT, exit 0/1;
--write replaces PATH, --print writes the JSON to stdout; --firmware: another firmware tree,
e.g. `git archive` of an older commit, to compare against; ~40 s)

Every recording of shared/printer-walks (recordings/ and negative/, plus two recordings
with a vendor counter table or blob added, as tests/interop/test_recordings.py serves them) is
replayed by one snmpsim on 127.44.7.0/24 port 17471, and the collector runs ON
MICROPYTHON (bench/collect/_mp_golden.py) for every scan kind, two sweeps each with the
device memory and supplies cache of the first kept for the second. Only what varies
between runs is normalised: the collection time (records' collected_at and first_seen,
unreachable markers, device memory's "t" and "f"). The records, duplicates, markers,
device memory and request/byte counts are written in order, keys sorted: a refactoring
of the collector must leave the file byte-identical.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host-tools"), os.path.join(ROOT, "firmware")]
from simulator.site import Site, walks_dir  # noqa: E402
from fbtool import profiles as compiler  # noqa: E402
from tests.interop.vendor_rows import with_vendor_rows  # noqa: E402

PORT = 17471
NET = "127.44.7."
MP = os.path.join(os.path.dirname(sys.executable), "micropython")
KINDS = ("discovery", "full", "counters", "supplies", "parts", "alerts")
GOLDEN = os.path.join(ROOT, "tests", "data", "records-golden.json")
TIME = "<time>"

def devices(tmp):
    walks = walks_dir()
    paths = sorted(glob.glob(str(walks / "recordings" / "*.snmprec")))
    paths += sorted(glob.glob(str(walks / "negative" / "*.snmprec")))
    paths += with_vendor_rows(walks, os.path.join(tmp, "ricoh_mpc3002-tables.snmprec"),
                              os.path.join(tmp, "brother-blob.snmprec"))
    return [{"name": os.path.basename(p)[:-len(".snmprec")], "address": NET + str(10 + i), "kind": "recording",
             "recording": p, "printer": True} for i, p in enumerate(paths)]


def _normal(kind, value):
    if kind in ("REC", "QUIET") and value.get("collected_at"):
        value["collected_at"] = TIME
    if kind == "REC" and value.get("first_seen"):
        value["first_seen"] = TIME
    if kind == "STATE":
        for d in value.values():
            for k in ("t", "f"):
                if d.get(k):
                    d[k] = TIME
    return value


def generate(firmware=None, timeout_ms=1000, retries=1):
    """The canonical JSON text (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "profiles.json")
        compiler.compile_to(prof)
        devs = devices(tmp)
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        opts = {"targets": [[d["address"], PORT] for d in devs], "kinds": KINDS, "profiles": prof,
                "work": work, "timeout_ms": timeout_ms, "retries": retries}
        site = Site.from_dict({"devices": devs}, port_override=PORT)
        site.start()
        try:
            r = subprocess.run([MP, "-X", "heapsize=2M", os.path.join(os.path.dirname(__file__), "_mp_golden.py"),
                                firmware or os.path.join(ROOT, "firmware")], input=json.dumps(opts) + "\n",
                               capture_output=True, text=True, timeout=1800)
        finally:
            site.stop()
    lines = r.stdout.splitlines()
    if r.returncode or "DONE" not in lines:
        raise RuntimeError("collector run failed:\n" + (r.stdout + r.stderr)[-3000:])
    out = {"devices": [[d["name"], d["address"]] for d in devs]}
    for line in lines:
        tag, _, rest = line.partition(" ")
        if tag not in ("REC", "DUP", "QUIET", "STATE", "WIRE"):
            continue     # the collector's own log lines
        kind, n, text = rest.split(" ", 2)
        entry = out.setdefault(kind, {}).setdefault("sweep %s" % n, {})
        value = _normal(tag, json.loads(text))
        if tag in ("STATE", "WIRE"):
            entry[tag.lower()] = value
        else:
            entry.setdefault(tag.lower(), []).append(value)
    return json.dumps(out, sort_keys=True, indent=1) + "\n"


def main(argv):
    firmware = None
    if "--firmware" in argv:
        i = argv.index("--firmware")
        firmware = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    mode = argv[0] if argv and argv[0] in ("--write", "--check", "--print") else "--check"
    rest = argv[1:] if argv and argv[0] == mode else argv
    path = rest[0] if rest else GOLDEN
    text = generate(firmware)
    if mode == "--print":
        sys.stdout.write(text)
        return 0
    if mode == "--write":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        print("wrote %s (%d bytes)" % (path, len(text)))
        return 0
    with open(path) as f:
        same = f.read() == text
    print("%s: %s" % (path, "identical" if same else "DIFFERENT"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
