"""The collector's records from every recording, every scan kind, two sweeps each, on
MicroPython against snmpsim, byte-identical to tests/data/records-golden.json (made by
bench/collect/records_golden.py --write from the collector before it was split by job).

A difference is a behaviour change: if intended, regenerate the file with that command
and say why in the commit. Serves 127.44.7.0/24 port 17471 (tests/interop/test_recordings.py
serves the same recordings on 127.44.9.0/24 port 17473: both may run at once).
"""
import difflib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "collect"))

import records_golden  # noqa: E402


def test_records_are_byte_identical_to_the_golden_file():
    with open(records_golden.GOLDEN) as f:
        want = f.read()
    got = records_golden.generate()
    if got != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                 "golden", "now", n=2))[:200])
        raise AssertionError("records differ from %s:\n%s" % (records_golden.GOLDEN, diff))
