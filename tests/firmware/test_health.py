"""Health: LED state machine, watchdog feeding and stall, button, link, clock (CPython and MicroPython)."""
import asyncio
import sys
import time

for _p in list(sys.path):
    if _p.endswith("/firmware") and _p[:-8] + "/board" not in sys.path:
        sys.path.append(_p[:-8] + "/board")   # hal.py lives in board/, next to firmware/

import hal  # noqa: E402
from check import raises  # noqa: E402
from fleetbox import health  # noqa: E402


class Rebooted(Exception):
    pass


class FakeBoard(hal.Board):
    """A board whose hardware is a list of pending events and counters."""
    name = "fake"
    watchdog_ms = 400

    def __init__(self):
        hal.Board.__init__(self)
        self.pending = []
        self.leds = []
        self.feeds = 0
        self.link = True

    def led(self, pattern):
        assert pattern in hal.LED_PATTERNS, pattern
        self.leds.append(pattern)

    def feed_watchdog(self):
        self.feeds += 1

    def link_up(self):
        return self.link

    def mac(self):
        return "02:00:00:00:00:01"

    def poll(self):
        out, self.pending = self.pending, []
        return out

    def reboot(self):
        raise Rebooted()


def test_led_follows_the_most_urgent_state():
    b = FakeBoard()
    h = health.Health(b)
    assert h.led_pattern() == hal.LED_RUNNING
    h.delivered(via_rescue=True)
    assert b.leds[-1] == hal.LED_RESCUE
    h.delivery_failed()
    assert b.leds[-1] == hal.LED_UPLINK_FAILING
    h.handle(hal.EV_LINK, False)
    assert b.leds[-1] == hal.LED_NO_LINK
    h.set_provisioned(False)
    assert b.leds[-1] == hal.LED_UNPROVISIONED
    h.set_updating(True)
    assert b.leds[-1] == hal.LED_UPDATING
    h.fault = "boom"
    assert h.led_pattern() == hal.LED_FAULT
    h.fault = None
    h.set_updating(False)
    h.set_provisioned(True)
    h.handle(hal.EV_LINK, True)
    assert b.leds[-1] == hal.LED_UPLINK_FAILING   # link back, the uplink still has to prove itself
    h.delivered(via_rescue=False)
    assert b.leds[-1] == hal.LED_RUNNING


def test_watchdog_fed_while_the_app_progresses_and_not_once_it_stalls():
    b = FakeBoard()
    h = health.Health(b, stall_s=0.2)
    assert h.feed_ms == 100   # a quarter of the board's watchdog timeout
    h.tick()
    assert b.feeds == 1
    h.tick()
    assert b.feeds == 1       # not again before feed_ms
    time.sleep(0.12)
    h.tick()
    assert b.feeds == 2
    time.sleep(0.25)          # no progress() for longer than stall_s
    assert h.stalled()
    h.tick()
    assert b.feeds == 2
    h.progress()
    h.tick()
    assert b.feeds == 3


def test_button_press_wakes_a_sleep_and_long_press_reboots():
    b = FakeBoard()
    h = health.Health(b)

    async def scenario():
        task = asyncio.create_task(h.run())
        t0 = time.time()
        b.pending.append(hal.button_event(150))
        woke = await h.sleep(30)
        assert woke is True and time.time() - t0 < 5
        assert await h.sleep(0.05) is False
        task.cancel()

    asyncio.run(scenario())
    assert hal.button_event(hal.LONG_PRESS_MS) == (hal.EV_BUTTON, hal.BUTTON_LONG_PRESS)
    b.pending.append(hal.button_event(hal.LONG_PRESS_MS + 1000))
    raises(Rebooted, h.tick)


def test_network_waits_for_the_link_and_counts_as_progress():
    b = FakeBoard()
    b.link = False
    h = health.Health(b, stall_s=0.2)
    assert h.led_pattern() == hal.LED_NO_LINK

    async def scenario():
        task = asyncio.create_task(h.run())
        waiter = asyncio.create_task(h.network())
        await asyncio.sleep(0.6)
        assert not waiter.done()
        assert not h.stalled()            # waiting for the cable is what the app should do
        b.pending.append((hal.EV_LINK, True))
        await asyncio.sleep(0.6)
        assert waiter.done()
        task.cancel()

    asyncio.run(scenario())
    assert h.link and b.leds[-1] == hal.LED_RUNNING


def test_clock_is_learnt_from_the_cloud_and_keeps_running():
    b = FakeBoard()
    h = health.Health(b)
    assert b.time() is None
    for bad in (None, 0, -5, "1700000000", 1.5e9):
        h.cloud_time(bad)
        assert b.time() is None
    h.cloud_time(1700000000)
    assert b.time() == 1700000000
    time.sleep(1.1)
    assert b.time() in (1700000001, 1700000002)
    h.cloud_time(1700000001)                 # within 2 s: kept, no jump backwards
    assert b.time() >= 1700000001


def test_fatal_shows_the_fault_and_resets():
    b = FakeBoard()
    h = health.Health(b, fault_reboot_s=0)
    raises(Rebooted, h.fatal, ValueError("broken"))
    assert b.leds[-1] == hal.LED_FAULT and "broken" in h.fault


def test_status_names_the_hardware_state():
    b = FakeBoard()
    h = health.Health(b)
    h.handle(hal.EV_POWER, hal.POWER_POE)
    st = h.status()
    assert st["power"] == "poe" and st["link"] is True and st["mac"] == "02:00:00:00:00:01"
    assert st["time_known"] is False
