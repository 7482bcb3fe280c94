"""Corrupt files of every kind on the data partition at boot (CPython and MicroPython): the box
starts, drops what it cannot read (the least it can), collects and uploads, and never loops.

Boot state lives on its own raw partition, checked by CRC: tests/faults/test_boot_state.py."""
import os

from test_cycle_errors import Box, FakeBoard, _fresh  # first: it puts board/ (hal) on the path

from check import LogCapture  # noqa: E402
from fleetbox import main, port  # noqa: E402

# what a worn or half-written flash can leave: noise, nothing, cut JSON, JSON of the wrong shape,
# absurd numbers
DAMAGE = (b"\xff\xfe\x00garbage\x81", b"", b'{"d": {"S1": {"n": 1, "h"', b'[1, 2, 3]', b'"text"',
          b'{"d": 5, "n": "x", "b": null}', b"18446744073709551615", b"-7", b"null")
FILES = ("devices.json", "uplink.seq", "uplink.delta", "profiles.json", "spool/epoch", "spool/last",
         "statics/127.0.0.1_161.json", "pack/use.json", "pack/a/update.sig", "pack/a/manifest.json",
         "pack/b/profiles.json")


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _damage(blob):
    def prepare(d):
        os.mkdir(d + "/spool")
        os.mkdir(d + "/statics")
        for sub in ("pack", "pack/a", "pack/b"):
            os.mkdir(d + "/" + sub)
        for name in FILES:
            _write(d + "/" + name, blob)
        # a batch that is not JSON at all: unreadable, dropped, the queue goes on
        _write(d + "/spool/0000000003-1.b", b"\x00\x01" + blob)
        _write(d + "/spool/0000000004-0.b", b'{"scan": "full", "cycle": 7, "records": [{"serial": "OLD"}]}')
    return prepare


def test_every_file_damaged_every_way_the_box_still_collects_and_uploads():
    from fleetbox import pack
    from vectors import DIR
    anchor, pack.ROOT_FILE = pack.ROOT_FILE, DIR + "root-1.fbr"     # damaged packs meet a real check
    try:
        _every_file_damaged()
    finally:
        pack.ROOT_FILE = anchor


def _every_file_damaged():
    for blob in DAMAGE:
        with LogCapture(port.WARN) as log:
            box = Box("corrupt", {}, 3, _damage(blob))
            box.run()
        assert "pack in a refused at load" in log.text(), (blob, log.text())
        errors = box.app.health.counters()
        assert errors == {}, (blob, errors, log.text())
        assert box.board.reboots == 0 and box.app.health.fault is None, blob
        assert len(box.app.spool) == 0, (blob, box.app.spool.ids())
        # the readable old batch, then one per cycle
        assert box.uploads == [1, 1, 2, 3], (blob, box.uploads)
        assert box.app.uplink.seq > 0 and box.app.uplink.seq < 1 << 32, (blob, box.app.uplink.seq)


def test_a_damaged_config_stops_the_box_unprovisioned_without_a_loop():
    for blob in DAMAGE:
        d = _fresh("config")
        with open(d + "/config.json", "wb") as f:
            f.write(blob)
        board = FakeBoard(d)
        with LogCapture(port.ERROR):
            assert main.run(board) == main.EX_CONFIG, blob
        assert board._led == "unprovisioned" and board.reboots == 0
