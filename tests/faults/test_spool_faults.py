"""The spool on a real LittleFS image under MicroPython: power cuts (SIGKILL) at random
instants lose and duplicate nothing, and a full flash evicts by the documented order."""
import os
import random

from tests.faults import spool_kill


def test_power_cuts_at_random_instants_lose_nothing(tmp_path):
    put, acked, kills = spool_kill.run_trials(10, str(tmp_path), seed=random.randrange(1 << 30))
    assert kills >= 5          # most trials did cut the power mid-work
    assert put == acked > 0    # every batch delivered exactly once in the final drain


def test_full_flash_evicts_bulk_first_and_keeps_alerts(tmp_path):
    image = str(tmp_path / "data.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * spool_kill.IMAGE_BYTES)
    assert spool_kill._run(image, "fmt", "format")[0] == 0
    rc, lines = spool_kill._run(image, "fill", "fill")
    assert rc == 0, lines
    _, held, evicted, bulk, counters, alerts = lines[-1].split()
    assert int(evicted) > 0 and int(held) + int(evicted) == 90
    assert int(alerts) == 30                     # alerts go last
    assert int(bulk) == 0 < int(counters) < 30   # bulk went first, then the oldest counters
    assert os.path.getsize(image) == spool_kill.IMAGE_BYTES
