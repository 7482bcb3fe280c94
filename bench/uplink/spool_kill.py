"""Spool power-cut trials, long run: hundreds of SIGKILLs of a MicroPython process writing and
acking batches into a real LittleFS image (tests/faults/spool_kill.py; make test runs 10).

Usage: .venv/bin/python bench/uplink/spool_kill.py [TRIALS]   (default 300)
"""
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.faults.spool_kill import run_trials  # noqa: E402

trials = int(sys.argv[1]) if len(sys.argv) > 1 else 300
with tempfile.TemporaryDirectory() as d:
    t0 = time.time()
    put, acked, kills = run_trials(trials, d, seed=int(t0))
    print("spool power cuts: %d trials, %d SIGKILLs mid-work, %d batches put, %d delivered in order, "
          "0 lost, 0 duplicated, 0 corrupted (%.0f s)" % (trials, kills, put, acked, time.time() - t0))
