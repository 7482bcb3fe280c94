"""A start that raises does not stop the box (CPython and MicroPython): a flash that fails while
the app is being built (listing the spool, reading device memory) is logged, counted ("start"
in the uploaded counters) and tried again with back-off while the watchdog is fed; what the
flash holds is still there when the start succeeds."""
import asyncio
import json

from test_cycle_errors import DEVICE_KEY, FakeBoard, _fresh  # first: it puts board/ (hal) on the path

from check import LogCapture  # noqa: E402
from fleetbox import health, main, port  # noqa: E402

CFG = {"endpoints": [{"url": "https://127.0.0.1:8443/v1/upload", "name": "liberty"}],
       "ca": "MAIFAA==", "pins": ["00" * 32], "targets": ["127.0.0.1"], "intervals": {"full": 60}}
BATCH = b'{"scan": "full", "cycle": 7, "records": [{"serial": "OLD"}]}'
DEVICES = b'{"S1": {"t": 5, "n": 2}}'


class Halt(BaseException):
    """The test's end, once the app was built (the box's run() catches every Exception)."""


class _Built(main.App):
    last = None

    async def main(self):
        _Built.last = self
        raise Halt()


def _prepare(d):
    for name, data in (("identity.json", json.dumps({"serial": "START-1", "kid": 1, "device_key": DEVICE_KEY})),
                       ("config.json", json.dumps(CFG))):
        with open(d + "/" + name, "w") as f:
            f.write(data)
    import os
    os.mkdir(d + "/spool")
    for name in ("0000000003-1.b", "0000000004-0.b"):
        with open(d + "/spool/" + name, "wb") as f:
            f.write(BATCH)
    with open(d + "/devices.json", "wb") as f:
        f.write(DEVICES)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _failing(op, suffix, times):
    """A flash fault: EIO for the first `times` times op reaches a path ending in suffix."""
    left = [times]

    def fault(o, path):
        if o == op and path.endswith(suffix) and left[0]:
            left[0] -= 1
            return port.EIO
        return 0
    return fault


class _Clock:
    """Virtual ticks: when every task sleeps, the clock jumps to the earliest wake-up, so
    back-offs of minutes take no time and concurrent sleeps do not add up."""

    def __enter__(self):
        self.now = 0
        self.sleepers = []
        self.real = (port.ticks_ms, port.sleep_ms)
        port.ticks_ms = lambda: self.now

        async def sleep_ms(ms):
            wake = self.now + ms
            self.sleepers.append(wake)
            try:
                while self.now < wake:
                    await asyncio.sleep(0)
                    if self.now < wake and wake <= min(self.sleepers):
                        # earliest: once the tasks still running had their turn to fall asleep
                        await asyncio.sleep(0)
                        await asyncio.sleep(0)
                        if wake <= min(self.sleepers):
                            self.now = max(self.now, wake)
            finally:
                self.sleepers.remove(wake)
            await asyncio.sleep(0)
        port.sleep_ms = sleep_ms
        return self

    def __exit__(self, *exc):
        port.ticks_ms, port.sleep_ms = self.real
        port.set_flash_fault(None)
        return False


class _Board(FakeBoard):
    def __init__(self, d):
        FakeBoard.__init__(self, d)
        self.fed_at = []

    def feed_watchdog(self):
        self.fed_at.append(port.ticks_ms())


def _starved_ms(board, until):
    """The longest the watchdog went without food (up to `until`)."""
    times = [0] + board.fed_at + [until]
    return max(b - a for a, b in zip(times, times[1:]))


def _boot(name, fault):
    d = _fresh(name)
    _prepare(d)
    board = _Board(d)
    board.identity_dir = d
    real_app, main.App, _Built.last = main.App, _Built, None
    try:
        with _Clock() as clock, LogCapture(port.INFO) as log:
            port.set_flash_fault(fault)
            try:
                main.run(board)
                raise AssertionError("run() returned")
            except Halt:
                pass
    finally:
        main.App = real_app
    return d, board, _Built.last, log, clock


def test_a_spool_that_cannot_be_listed_is_tried_again_with_back_off():
    d, board, app, log, clock = _boot("list", _failing("list", "/spool", 2))
    assert app is not None, log.text()
    # the two failures are counted: the first batch spooled carries them up ("h")
    assert app.health.counters() == {"start": 2}, app.health.counters()
    assert "cannot start, trying again in 5 s" in log.text() and "trying again in 10 s" in log.text(), log.text()
    assert clock.now >= 15000, clock.now
    # fed throughout the waits, always within the board's watchdog period
    assert _starved_ms(board, clock.now) <= board.watchdog_ms, board.fed_at
    assert board.reboots == 0 and app.health.fault is None
    assert app.spool.ids() == [3, 4] and _read(d + "/spool/0000000003-1.b") == BATCH


def test_device_memory_that_cannot_be_read_is_not_started_empty():
    d, board, app, log, _ = _boot("read", _failing("read", "/devices.json", 1))
    assert app.health.counters() == {"start": 1}, app.health.counters()
    # an empty memory would have been saved over the file after the first sweep
    assert app.devices.get("S1") == {"t": 5, "n": 2}, app.devices.devices
    assert _read(d + "/devices.json") == DEVICES
    assert board.reboots == 0 and app.spool.ids() == [3, 4]


def test_a_fault_that_lasts_keeps_the_box_waiting_fed_and_bounded():
    d = _fresh("lasting")
    _prepare(d)
    board = _Board(d)
    attempts = []
    stalled = []

    def build():
        attempts.append(port.ticks_ms())
        raise OSError(port.EIO)

    async def run():
        asyncio.create_task(box_health.run())
        task = asyncio.create_task(main.start(box_health, build))
        while clock.now < 3600 * 1000:
            await port.sleep_ms(1000)
            stalled.append(box_health.stalled())
        task.cancel()

    with _Clock() as clock, LogCapture(port.ERROR):
        box_health = health.Health(board)
        asyncio.run(run())
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # 5, 10, 20 ... s, then at most 5 minutes between tries: never a tight loop, never given up
    assert len(attempts) >= 12 and min(gaps) >= 5000 and max(gaps) <= 301000, gaps
    assert box_health.counters() == {"start": len(attempts)}
    assert _starved_ms(board, clock.now) <= board.watchdog_ms and not any(stalled)
    assert _read(d + "/spool/0000000003-1.b") == BATCH and _read(d + "/devices.json") == DEVICES
