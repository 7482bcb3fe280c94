"""A power cut (SIGKILL) in the middle of flash writes: the data partition still mounts, the spool still reads.

The writer runs on MicroPython against the sim board's flash file through the sim ROM's
block device (which programs 256-byte pages, so a cut can tear a block) and LittleFS2,
exactly as the box does. Each trial kills it at a random instant, then checks the
partition with an independent LittleFS (littlefs-python) and the spool on MicroPython.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

from fbtool import flash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
WRITER = os.path.join(ROOT, "tests", "mp", "flash_writer.py")
TRIALS = 10


def _blank_flash(path):
    board = flash.load_board("sim")
    fl = board["flash"]
    with open(path, "wb") as f:
        f.write(b"\xff" * fl["size"])
    data = [p for p in fl["partitions"] if p["name"] == "data"][0]
    with open(path, "r+b") as f:
        f.write(flash.partition_table(board))
        f.seek(data["offset"])
        f.write(flash.lfs_partition(data["size"], fl["block_size"]))
    return board


def _mp(img, mode):
    return subprocess.Popen([MICROPYTHON, "-X", "heapsize=1M", WRITER, ROOT, str(img), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_power_cut_during_flash_writes_loses_nothing_that_was_stored(tmp_path):
    img = tmp_path / "flash.img"
    board = _blank_flash(img)
    bs = board["flash"]["block_size"]
    rng = random.Random(6)
    highest = 0
    cut_mid_write = 0
    for trial in range(TRIALS):
        p = _mp(img, "write")
        lines = []
        want = rng.randint(1, 25)
        while len(lines) < want:
            line = p.stdout.readline()
            assert line, "writer died: %s" % "".join(lines + [p.stdout.read()])
            lines.append(line)
        time.sleep(rng.uniform(0, 0.03))
        os.killpg(p.pid, signal.SIGKILL)
        lines += p.stdout.read().splitlines(True)
        p.wait()
        puts = [int(x.split()[1]) for x in lines if x.startswith("put ")]
        acks = [int(x.split()[1]) for x in lines if x.startswith("ack ")]
        assert puts and all(x.split()[0] in ("put", "ack") for x in lines), lines

        # An independent LittleFS implementation mounts what the cut left behind.
        fs = flash.read_lfs(flash.read_partition(str(img), board, "data"), bs)
        names = fs.listdir("spool")
        cut_mid_write += any(n.endswith(".tmp") for n in names)

        c = _mp(img, "check")
        out, _ = c.communicate(timeout=120)
        assert c.returncode == 0, out
        got = json.loads(out.strip().splitlines()[-1])
        assert got["bad"] == [], got            # no batch is torn
        present = set(got["ids"])
        stored = set(puts) - set(acks)
        # Every batch whose put returned is there, unless an ack of it may have been in flight.
        in_flight_ack = {min(stored)} if stored else set()
        assert stored - in_flight_ack <= present, (trial, sorted(stored), sorted(present))
        # Nothing appears that was acked, and at most the one put in flight beyond those reported.
        assert not present & set(acks), (trial, sorted(present), acks)
        assert present <= set(puts) | {max(puts) + 1}, (trial, sorted(present), puts)
        # Ids never repeat across power cuts (the cloud deduplicates on them).
        assert min(puts) > highest, (trial, highest, puts)
        highest = max(puts + list(present))
    print("%d power cuts, %d of them left an unfinished write behind" % (TRIALS, cut_mid_write))
