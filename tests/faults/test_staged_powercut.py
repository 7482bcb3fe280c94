"""A power cut mid-sweep loses no record the collector had handed over: the box (main.App on
MicroPython, its flash a real LittleFS image through the sim ROM's block device) is SIGKILLed
while it stages a sweep's records, started again, and its spool read back holds every record
whose hand-over returned, each once, in batches whose ids never repeat."""
import os
import random
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
WORKER = os.path.join(ROOT, "tests", "faults", "mp_staged_worker.py")
IMAGE_BYTES = 512 * 1024
TRIALS = 6


def _worker(image, mode, tag):
    return subprocess.Popen([MICROPYTHON, "-X", "heapsize=1M", WORKER, ROOT, image, mode, tag],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_sweep_killed_mid_batch_loses_no_staged_record(tmp_path):
    image = str(tmp_path / "data.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * IMAGE_BYTES)
    fmt = _worker(image, "format", "-")
    assert fmt.communicate(timeout=60)[0].strip() == "formatted"
    rng = random.Random(21)
    top = 0             # the newest batch id read back so far
    recovered = 0       # trials whose start adopted a staged batch
    for trial in range(TRIALS):
        tag = "t%d" % trial
        p = _worker(image, "sweep", tag)
        staged, lines = [], []
        want = rng.randint(1, 30)       # up to ~4 batches: never near the spool's bounds
        while len(staged) < want:
            line = p.stdout.readline()
            assert line, "sweep died: %s" % "".join(lines + [p.stdout.read()])
            lines.append(line)
            if line.startswith("staged "):
                staged.append(line.split()[1])
        time.sleep(rng.uniform(0, 0.02))
        os.killpg(p.pid, signal.SIGKILL)
        rest = p.stdout.read()      # (what the reads above buffered too: communicate would skip it)
        p.wait(60)
        # what it said before the power went (a line the kill cut short is no evidence)
        staged += [line.split()[1] for line in rest.split("\n")[:-1] if line.startswith("staged ")]

        s = _worker(image, "start", tag)
        out = s.communicate(timeout=60)[0]
        assert s.returncode == 0 and out.endswith("drained\n"), out
        got, ids = [], []
        for line in out.splitlines():
            if line.startswith("batch "):
                _, ident, scan, *keys = line.split()
                assert scan == "counters", line
                ids.append(int(ident))
                got += keys
        recovered += "I spool: recovered" in out
        # every record whose hand-over returned is back, each once; beyond them at most the
        # one in flight when the power went
        in_flight = "%s-%d" % (tag, len(staged))
        assert len(got) == len(set(got)), (trial, got)
        assert set(staged) <= set(got) <= set(staged) | {in_flight}, (trial, staged, got, out)
        assert ids == sorted(ids) and (not ids or ids[0] > top), (trial, top, ids)
        top = max(ids + [top])
    assert recovered >= TRIALS // 2, recovered     # most kills did land with records staged
