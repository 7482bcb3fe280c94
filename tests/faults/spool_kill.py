"""Power-cut trials of the spool: a MicroPython process writing and acking batches into a
real LittleFS image is SIGKILLed at random instants, rebooted, and checked.

After every kill the spool must hold every batch whose put() returned and whose ack()
had not started, each byte-exact, and no batch whose ack() returned; ids never repeat.
Used by tests/faults/test_spool_faults.py (a few trials) and bench/uplink/spool_kill.py (hundreds).
"""
import os
import random
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
WORKER = os.path.join(ROOT, "tests", "faults", "mp_spool_worker.py")
IMAGE_BYTES = 256 * 1024


class Violation(AssertionError):
    pass


def _run(image, tag, mode, kill_after=None):
    p = subprocess.Popen([MICROPYTHON, "-X", "heapsize=512K", WORKER, ROOT, image, tag, mode],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if kill_after is not None:
        try:
            p.wait(kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    out = p.communicate(timeout=120)[0]
    lines = out.splitlines()
    if lines and not out.endswith("\n"):
        lines.pop()   # the kill cut this line short: no evidence (the ledger allows for a lost last line)
    return p.returncode, lines


class Ledger:
    """What the worker said across all its lives, and the checks after each reboot."""

    def __init__(self):
        self.issued = {}      # id -> payload key, from put lines and surviving batches
        self.acked = set()
        self.acking = None    # the ack in flight when the power went
        self.kills = 0

    def reboot(self, lines):
        if "ready" not in lines:
            # The power went while it booted and listed its batches: nothing was written, and
            # the listing's last line may be cut short, so none of it is evidence.
            return None
        have = {}
        for line in lines[:lines.index("ready")]:
            if line.startswith("have "):
                _, ident, key = line.split()
                have[int(ident)] = key
        for ident, key in have.items():
            if ident in self.acked:
                raise Violation("batch %d came back after its ack returned" % ident)
            if ident in self.issued and self.issued[ident] != key:
                raise Violation("batch %d holds %s, put wrote %s" % (ident, key, self.issued[ident]))
            self.issued.setdefault(ident, key)   # put whose return the power cut hid
        for ident in self.issued:
            if ident not in self.acked and ident not in have and ident != self.acking:
                raise Violation("batch %d (%s) lost" % (ident, self.issued[ident]))
        if self.acking is not None and self.acking not in have:
            self.acked.add(self.acking)
        self.acking = None
        return have

    def life(self, lines):
        top = max(list(self.issued) + [0])
        for line in lines:
            word, _, rest = line.partition(" ")
            if word == "put":
                ident, key = rest.split()
                ident = int(ident)
                if ident <= top:
                    raise Violation("id %d issued again (newest before: %d)" % (ident, top))
                top = ident
                self.issued[ident] = key
            elif word == "acking":
                self.acking = int(rest)
            elif word == "ack":
                self.acked.add(int(rest))
                self.acking = None
            elif word == "Traceback" or "Error" in word or word == "evicted":
                raise Violation("worker failed: %s" % "\n".join(lines[-8:]))


def run_trials(trials, workdir, seed=None, max_delay=0.4):
    """Kill the worker `trials` times; returns (batches put, acked, kills). Raises Violation."""
    rnd = random.Random(seed)
    image = os.path.join(workdir, "data.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * IMAGE_BYTES)
    rc, out = _run(image, "fmt", "format")
    if rc != 0:
        raise Violation("format failed: %s" % out)
    ledger = Ledger()
    for t in range(trials):
        rc, lines = _run(image, "t%d" % t, "work", kill_after=rnd.uniform(0.03, max_delay))
        if ledger.reboot(lines) is not None:
            ledger.life(lines)
        ledger.kills += rc == -signal.SIGKILL
    rc, lines = _run(image, "end", "drain")
    if ledger.reboot(lines) is None:
        raise Violation("final drain did not come up: %s" % lines[-5:])
    ledger.life(lines)
    if rc != 0 or "drained" not in lines:
        raise Violation("final drain failed: %s" % lines[-5:])
    missing = [i for i in ledger.issued if i not in ledger.acked]
    if missing:
        raise Violation("never delivered: %s" % missing)
    return len(ledger.issued), len(ledger.acked), ledger.kills


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        print(run_trials(int(sys.argv[1]) if len(sys.argv) > 1 else 10, d), "%.1f s" % (time.time() - t0))
