"""What committing staged records costs the flash: staging (fleetbox.batchfile) without
commits, with the box's bound (a commit once the batch went batchfile.COMMIT_MS without one)
when a record comes every 3 s, and with a commit after every record,
on a LittleFS image of esp32-poe's data partition, with the golden full records
(tests/data/records-golden.json), batches of 8 renamed into the spool and acknowledged.

Usage: .venv/bin/python bench/uplink/staged_wear.py [BATCHES]   (default 100, ~10 s)
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
CHILD = os.path.join(ROOT, "bench", "uplink", "_mp_staged_wear.py")


def full_records():
    out = []

    def walk(v):
        if isinstance(v, dict) and "ip" in v and "sources" in v:
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    with open(os.path.join(ROOT, "tests", "data", "records-golden.json")) as f:
        walk(json.load(f)["full"])
    return out


def main():
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    recs = full_records()
    sizes = sorted(len(json.dumps(r)) for r in recs)
    got = {}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "records.json"), "w") as f:
            json.dump(recs, f)
        for mode in ("nocommit", "slow", "commit"):
            r = subprocess.run([MICROPYTHON, "-X", "heapsize=2M", CHILD, ROOT, f.name, mode, str(batches),
                                os.path.join(d, "data.img")], capture_output=True, text=True, timeout=600, check=True)
            got[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    print("%d golden full records, %d..%d characters (median %d); %d batches of 8"
          % (len(recs), sizes[0], sizes[-1], sizes[len(sizes) // 2], batches))
    for mode, what in (("nocommit", "no commit"), ("slow", "the box's bound, a record every 5 s"),
                       ("commit", "a commit after every record")):
        g = got[mode]
        print("  %-36s %7d bytes programmed, %5.2f block erases per batch (%.2f per record)"
              % (what + ":", g["programmed"] // batches, g["erased"] / batches, g["erased"] / g["records"]))
    a = got["nocommit"]
    for mode in ("slow", "commit"):
        b = got[mode]
        print("  %s: x%.2f the bytes programmed, x%.2f the erases of no commit"
              % (mode, b["programmed"] / a["programmed"], b["erased"] / a["erased"]))


if __name__ == "__main__":
    main()
