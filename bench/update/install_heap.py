"""Peak MicroPython heap and time of the box's updater (fleetbox.updater) installing a 512 KiB
and a 1 MiB image over HTTPS with Range into a LittleFS slot, given only 64 KB of heap
above the interpreter, its modules and inputs (the TLS session is inside the 64 KB).

Usage: .venv/bin/python bench/update/install_heap.py   (~1 min; binds 127.0.0.1, a free port)
"""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "host-tools")]

from tests import update_kit as kit  # noqa: E402

FREE = 64 * 1024


def one(size, slot_kib):
    with tempfile.TemporaryDirectory() as tmp:
        data, wrap = kit.signed(kit.fbi(size))
        srv = kit.RangeServer(tmp, {"img.fbu": data})
        try:
            heap = kit.base_heap(tmp, srv, "img.fbu", wrap, slot_kib) + FREE
            r = kit.run_box(tmp, srv, "img.fbu", wrap, "install", heap, slot_kib)
        finally:
            srv.stop()
    last = r.stdout.strip().splitlines()[-1].split() if r.stdout.strip() else ["failed"]
    if r.returncode or last[0] != "ok":
        print("  %7d bytes: FAILED\n%s%s" % (size, r.stdout, r.stderr))
        return 1
    print("  %4d KiB image, %4d chunks of 4 KiB: heap used at most %6s B (live %6s B) of %d free; "
          "install %5.1f s" % (size // 1024, int(last[2]), last[3], last[5], FREE, int(last[4]) / 1000))
    return 0


def main():
    print("fleetbox.updater on MicroPython, HTTPS Range download into a LittleFS slot:")
    return one(512 * 1024, 1024) + one(1 << 20, 2048)


if __name__ == "__main__":
    sys.exit(main())
