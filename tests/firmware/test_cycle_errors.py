"""The loop never dies: whatever a cycle raises (collect, spool, seal, upload, a flash fault)
is caught, logged, shown on the LED and counted, and the next cycle runs (CPython and
MicroPython). Only the health task's stall detection or a fatal error reaches the watchdog."""
import asyncio
import sys

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p[:-8] + "/board" not in sys.path:
        sys.path.append(_p[:-8] + "/board")   # hal.py lives in board/, next to firmware/

import hal  # noqa: E402
from check import LogCapture, fresh_dir, tmp  # noqa: E402
from fleetbox import cbor, config, envelope, main, port, uplink  # noqa: E402

DEVICE_KEY = "11" * 32


class Stop(Exception):
    """The test's end: raised from the app's wait, outside the cycle."""


class FakeBoard(hal.Board):
    name = "fake"
    watchdog_ms = 400

    def __init__(self, data_dir):
        hal.Board.__init__(self)
        self.data_dir = data_dir
        self.leds = []
        self.feeds = 0
        self.reboots = 0

    def show_led(self, pattern):
        self.leds.append(pattern)

    def feed_watchdog(self):
        self.feeds += 1

    def mac(self):
        return "02:00:00:00:00:02"

    def poll(self):
        return []

    def reboot(self):
        self.reboots += 1
        raise Stop("reboot")


def _fresh(name):
    return fresh_dir(tmp("fbcycle-") + name)


class Box:
    """An App whose printers and cloud are stand-ins: a sweep that finds one printer per
    cycle, a cloud transport that acknowledges every upload. `faults` maps a cycle number
    to the stage that must raise in it."""

    def __init__(self, name, faults, cycles, prepare=None):
        self.faults = faults
        self.cycles = cycles
        self.uploads = []
        self.leds_after = {}   # cycle -> LED at its end
        d = _fresh(name)
        if prepare:
            prepare(d)     # what the data partition holds at boot
        cfg = config.check({"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload", "name": "liberty"}],
                            "ca": "MAIFAA==", "pins": ["00" * 32],
                            "targets": ["127.0.0.1"], "intervals": {"full": 1}})
        self.board = FakeBoard(d)
        self.app = main.App(self.board, cfg, {"serial": "CYCLE-1", "kid": 1, "device_key": DEVICE_KEY})
        self.app.wait = self._wait
        self.app.uplink._post = self._post
        self.sealed = []        # the plaintext of every envelope sealed
        self.batches = []       # every batch's CBOR before it is compressed (docs/payload.md)
        self.printers = 1       # records the sweep finds per cycle
        self.swept = []         # cycles whose sweep ran to its end
        self.down = 0           # the cloud's down seq
        self._real = (main.sweep, envelope.seal, port.ticks_ms, main.Trial, uplink._start)
        main.Trial = None        # no boot slot to confirm (another test may have put the loader on the path)
        self.now = 0             # the box's ticks: each wait moves them on by what it was asked to wait
        port.ticks_ms = lambda: self.now
        main.sweep = self._sweep
        envelope.seal = self._sealing
        uplink._start = self._compressing

    def _fault(self, stage):
        if self.faults.get(self.app.cycle) == stage:
            raise {"collect": RuntimeError, "spool": OSError, "seal": MemoryError,
                   "upload": TypeError}[stage]("injected at " + stage)

    async def _sweep(self, client, addrs, on_record, opts):
        self._fault("collect")
        if self.faults.get(self.app.cycle) == "spool":
            self.app.spool.put = self.app.spool.put_file = self._broken_put   # staged batches are renamed in
        for n in range(self.printers):
            on_record({"serial": "P%d" % n, "ip": "127.0.0.%d" % (n + 1), "counters": {"total": self.app.cycle}})
        self.swept.append(self.app.cycle)
        return self.printers, self.printers

    def _broken_put(self, data, klass=0):
        del self.app.spool.put, self.app.spool.put_file     # the spool's own again from the next call
        self._fault("spool")

    def _sealing(self, key, kid, device_id, seq, ts, plaintext):
        self._fault("seal")
        self.sealed.append(plaintext)
        return self._real[1](key, kid, device_id, seq, ts, plaintext)

    def _compressing(self, outgoing):
        self.batches.append(cbor.dumps(outgoing))
        return self._real[4](outgoing)

    async def _post(self, i, body):
        self._fault("upload")
        self.uploads.append(self.app.cycle)
        # the cloud's answer: sealed for the box and bound to the envelope it answers (docs/downlink.md)
        self.down += 1
        answer = cbor.dumps({"ok": True, "re": envelope.parse_header(body)["seq"]})
        return 200, self._real[1](bytes.fromhex(DEVICE_KEY), 1, "CYCLE-1", self.down, 0, answer, 2,
                                  direction=envelope.DOWN)

    async def _wait(self, seconds):
        self.leds_after[self.app.cycle] = self.board._led
        port.set_flash_fault(None)
        self.now += int(seconds * 1000)
        if self.app.cycle >= self.cycles:
            raise Stop("done")
        await port.sleep_ms(0)

    def run(self):
        try:
            asyncio.run(self.app.main())
        except Stop:
            pass
        finally:
            main.sweep, envelope.seal, port.ticks_ms, main.Trial, uplink._start = self._real
            port.set_flash_fault(None)


def test_a_fault_at_each_stage_is_logged_counted_shown_and_the_loop_goes_on():
    faults = {2: "collect", 4: "spool", 6: "seal", 8: "upload"}
    box = Box("stages", faults, 10)
    with LogCapture(port.INFO) as log:
        box.run()
    h = box.app.health
    assert h.counters() == {"collect": 1, "spool": 1, "upload": 2}, h.counters()   # sealing is part of the upload
    for cycle, stage in faults.items():
        assert box.leds_after[cycle] == hal.LED_FAULT, (cycle, box.leds_after)
        assert box.leds_after[cycle + 1] == hal.LED_RUNNING, (cycle, box.leds_after)
        assert ("cycle %d failed at %s" % (cycle, "upload" if stage == "seal" else stage)) in log.text()
    assert h.fault is None and box.board.reboots == 0
    # every batch that was spooled arrived once: those of the cycles whose upload failed went
    # up with the next cycle's (the collect fault's cycle spooled nothing; the spool fault's
    # record stayed staged and the next cycle's sweep took it in as a batch of its own first)
    assert len(box.app.spool) == 0
    assert box.app.uplink.stats["sent"] == len(box.uploads) == 9, (box.app.uplink.stats, box.uploads)
    assert box.uploads.count(5) == 2 and box.uploads.count(7) == 2 and box.uploads.count(9) == 2, box.uploads


def test_the_failed_cycles_are_uploaded_with_the_next_batch():
    box = Box("counted", {1: "collect"}, 2)
    box.run()
    assert len(box.sealed) == 1 and len(box.batches) == 1
    # the batch map carries "h": {"collect": 1} (docs/payload.md), CBOR-encoded (then compressed)
    assert b"\xa1gcollect\x01" in box.batches[0], box.batches[0]


def test_a_flash_fault_in_a_cycle_is_survived():
    def eio(op, path):
        return port.EIO if op == "rename" else 0
    box = Box("flash", {}, 4)
    real = box._post

    async def post(i, body):
        if box.app.cycle == 2:
            port.set_flash_fault(eio)   # till the cycle's end: the delivered batch's state cannot be kept
        return await real(i, body)
    box.app.uplink._post = post
    box.run()
    assert box.app.health.counters() == {"upload": 1}, box.app.health.counters()
    assert box.board.reboots == 0 and len(box.app.spool) == 0
    assert box.uploads == [1, 2, 3, 3, 4], box.uploads   # batch 2 again: the cloud dedups it


def test_a_failed_collection_does_not_stop_the_drain():
    # cycle 1 cannot upload; cycle 2 cannot spool (a full flash): what waits goes up all the same
    box = Box("drain", {1: "upload", 2: "spool"}, 3)
    box.run()
    assert box.app.health.counters() == {"upload": 1, "spool": 1}, box.app.health.counters()
    # cycle 2's record, left staged by the refused spool, goes in as a batch at cycle 3's start
    assert box.uploads == [2, 3, 3], box.uploads
    assert box.leds_after[2] == hal.LED_FAULT and box.leds_after[3] == hal.LED_RUNNING


def test_a_batch_that_cannot_be_spooled_mid_sweep_waits_for_the_next():
    # 12 printers: the first batch of 8 fails to go in, the sweep goes on, the next record's
    # flush takes those 8 with it (9), the cycle's last batch the other 3
    box = Box("midsweep", {2: "spool"}, 3)
    box.printers = 12
    with LogCapture(port.INFO) as log:
        box.run()
    spooled = [line.rsplit(", ", 1)[1] for line in log.lines if "spooled batch" in line]
    assert spooled == ["8 records", "4 records", "9 records", "3 records", "8 records", "4 records"], spooled
    assert box.swept == [1, 2, 3], box.swept
    assert box.app.health.counters() == {"spool": 1}, box.app.health.counters()
    assert box.app.uplink.stats["sent"] == 6 and len(box.app.spool) == 0, box.app.uplink.stats
