"""The box's updater (fleetbox.updater) on MicroPython, over HTTPS with Range, into a real
LittleFS slot: a 1 MiB image installs with only 64 KB of heap above what the interpreter,
the modules and the inputs hold (TLS session included), and a cut resumes where it stopped."""
import os

from tests import update_kit as kit

FREE = 64 * 1024


def _serve(tmp_path, size):
    data, wrap = kit.signed(kit.fbi(size))
    return kit.RangeServer(str(tmp_path), {"img.fbu": data}), wrap, data


def test_one_mebibyte_installs_in_64k_of_heap_and_resumes_after_a_cut(tmp_path):
    srv, wrap, data = _serve(tmp_path, 1 << 20)
    try:
        heap = kit.base_heap(str(tmp_path), srv, "img.fbu", wrap, 2048) + FREE
        r = kit.run_box(str(tmp_path), srv, "img.fbu", wrap, "install", heap, 2048, ["100"])
        assert r.returncode == 4 and "cut 100" in r.stdout, r.stdout + r.stderr
        r = kit.run_box(str(tmp_path), srv, "img.fbu", wrap, "install", heap, 2048)
        assert r.returncode == 0, r.stdout + r.stderr
        ok = r.stdout.strip().splitlines()[-1].split()
        chunks = -(-(len(data) - 20000) // 4096)    # about: the head is small next to 1 MiB
        assert ok[0] == "ok" and ok[1] == "2.0.0"
        assert int(ok[2]) < chunks - 90              # the resumed run fetched only what was missing
        assert "resuming" in r.stdout
        assert int(ok[3]) < FREE
        print("1 MiB over HTTPS into LittleFS, %d free bytes: heap used at most %s, live at most %s"
              % (FREE, ok[3], ok[5]))
    finally:
        srv.stop()


def test_too_little_heap_fails_so_the_limit_is_real(tmp_path):
    srv, wrap, _ = _serve(tmp_path, 256 * 1024)
    try:
        heap = kit.base_heap(str(tmp_path), srv, "img.fbu", wrap) + 8 * 1024
        r = kit.run_box(str(tmp_path), srv, "img.fbu", wrap, "install", heap)
        assert r.returncode != 0 and "MemoryError" in r.stdout + r.stderr
        assert not os.path.exists(os.path.join(str(tmp_path), "state", "update.resume.tmp"))
    finally:
        srv.stop()
