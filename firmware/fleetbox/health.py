"""Health: the app's side of the hardware — watchdog, status LED, button, link, power, clock.

One asyncio task (run) ticks a few times a second: it feeds the watchdog while the
app makes progress, turns the board's events into app state (link down pauses the
network work, a button press starts a collection now, a long press reboots) and
keeps the LED on the pattern the state calls for (led_pattern gives the order).
The app reports what it learns (uplink results, the cloud's time) here.
"""
import hal
from fleetbox import port

TICK_MS = 250
STALL_S = 3600      # no progress for this long: stop feeding, let the watchdog reset the box
FAULT_REBOOT_S = 10

UPLINK_OK = "ok"
UPLINK_RESCUE = "rescue"
UPLINK_FAILING = "failing"


def _log(level, msg):
    port.log("health", level, msg)


def traceback_lines(exc):
    """MicroPython: the exception's traceback as lines (CPython's tests need none)."""
    import sys
    if not hasattr(sys, "print_exception"):
        return []
    import io
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    return [line for line in buf.getvalue().split("\n") if line]


class Health:
    def __init__(self, board, stall_s=STALL_S, fault_reboot_s=FAULT_REBOOT_S):
        self.board = board
        self.fault_reboot_s = fault_reboot_s
        self.stall_ms = int(stall_s * 1000)
        self.feed_ms = max(100, min(1000, board.watchdog_ms // 4))
        self.link = board.link_up()
        self.power = board.power_source()
        self.provisioned = True
        self.revoked = False
        self.on_factory_reset = None   # set by the app: wipes the data partition and reboots
        self.uplink = None        # None until the first delivery attempt, then UPLINK_*
        self.updating = False
        self.fault = None
        self.degraded = None      # why the last cycle failed (the loop went on); None after a clean one
        self.errors = {}          # stage -> cycles that failed there since boot (uploaded: counters())
        self.wake = False         # a button press asked for a collection now
        now = port.ticks_ms()
        self._progress = now
        self._fed = None
        self.events = 0

    # -- the LED state machine
    def led_pattern(self):
        """The pattern for the current state, most urgent first."""
        if self.fault or self.degraded:
            return hal.LED_FAULT
        if self.updating:
            return hal.LED_UPDATING
        if self.revoked:
            return hal.LED_REVOKED
        if not self.provisioned:
            return hal.LED_UNPROVISIONED
        if not self.link:
            return hal.LED_NO_LINK
        if self.uplink == UPLINK_FAILING:
            return hal.LED_UPLINK_FAILING
        if self.uplink == UPLINK_RESCUE:
            return hal.LED_RESCUE
        return hal.LED_RUNNING

    def show(self):
        self.board.led(self.led_pattern())

    # -- what the app reports
    def progress(self):
        """The app is alive and moving (called on every step of its loop)."""
        self._progress = port.ticks_ms()

    def delivered(self, via_rescue):
        self.uplink = UPLINK_RESCUE if via_rescue else UPLINK_OK
        self.show()

    def delivery_failed(self):
        self.uplink = UPLINK_FAILING
        self.show()

    def cycle_failed(self, stage, exc):
        """A cycle raised at `stage` (collect, spool, upload, ...): count it, show it; the loop goes on."""
        self.errors[stage] = self.errors.get(stage, 0) + 1
        self.degraded = "%s: %r" % (stage, exc)
        self.show()

    def cycle_ok(self):
        if self.degraded:
            self.degraded = None
            self.show()

    def counters(self):
        """What the cloud learns of the box's own troubles: failed cycles by stage since boot."""
        return dict(self.errors)

    def set_updating(self, on):
        self.updating = bool(on)
        self.show()

    def set_provisioned(self, on):
        self.provisioned = bool(on)
        self.show()

    def set_revoked(self, on):
        self.revoked = bool(on)
        self.show()

    def cloud_time(self, unix_s):
        """The cloud's clock (from an upload reply): the box's time from now on."""
        if not isinstance(unix_s, int) or unix_s <= 0:
            return
        known = self.board.time()
        if known is None or abs(known - unix_s) > 2:
            self.board.set_time(unix_s)
            _log(port.INFO, "clock set from the cloud: %d%s" % (unix_s, "" if known is None else " (was %d)" % known))

    def status(self):
        """The box's hardware state, for logs and uploads."""
        return {"link": self.link, "power": self.power, "address": self.board.address(),
                "mac": self.board.mac(), "led": self.led_pattern(), "time_known": self.board.time() is not None}

    # -- the task
    def stalled(self):
        return port.ticks_diff(port.ticks_ms(), self._progress) > self.stall_ms

    def tick(self):
        """One step: feed the watchdog unless the app stalled, then handle the board's events."""
        now = port.ticks_ms()
        if not self.stalled():
            if self._fed is None or port.ticks_diff(now, self._fed) >= self.feed_ms:
                self.board.feed_watchdog()
                self._fed = now
        for kind, value in self.board.poll():
            self.events += 1
            self.handle(kind, value)

    def handle(self, kind, value):
        if kind == hal.EV_LINK:
            self.link = bool(value)
            _log(port.INFO if value else port.WARN,
                 "link %s%s" % ("up" if value else "down", ", address %s" % self.board.address() if value else
                                ": network work paused, collected data stays in the spool"))
        elif kind == hal.EV_POWER:
            self.power = value
            _log(port.INFO, "power source: %s" % value)
        elif kind == hal.EV_BUTTON and value == hal.BUTTON_PRESS:
            _log(port.INFO, "button: collecting now")
            self.wake = True
        elif kind == hal.EV_BUTTON and value == hal.BUTTON_LONG_PRESS:
            _log(port.WARN, "button held: rebooting")
            self.board.reboot()
        elif kind == hal.EV_BUTTON and value == hal.BUTTON_FACTORY_RESET:
            _log(port.WARN, "button held 10 s: factory reset")
            if self.on_factory_reset:
                self.on_factory_reset()
            self.board.reboot()
        else:
            _log(port.WARN, "ignoring event %r %r" % (kind, value))
        self.show()

    async def run(self):
        """The health task: runs for as long as the app does."""
        self.show()
        while True:
            self.tick()
            await port.sleep_ms(TICK_MS)

    # -- waits for the app (they count as progress: waiting is what the app should do)
    async def sleep(self, seconds):
        """Sleep up to `seconds`; returns early (True) when the button asks for a collection."""
        start, total = port.ticks_ms(), int(seconds * 1000)
        while True:
            self.progress()
            if self.wake:
                self.wake = False
                return True
            left = total - port.ticks_diff(port.ticks_ms(), start)
            if left <= 0:
                return False
            await port.sleep_ms(min(TICK_MS, left))

    async def network(self):
        """Return once the link is up (at once when it is)."""
        while not self.link:
            self.progress()
            await port.sleep_ms(TICK_MS)

    def fatal(self, exc):
        """The app died of an unexpected error: show it, then reset the box."""
        self.fault = repr(exc)
        for line in traceback_lines(exc):
            _log(port.ERROR, line)   # through log(): the threshold, and secrets masked
        _log(port.ERROR, "fault: %s; rebooting in %d s" % (self.fault, self.fault_reboot_s))
        try:
            self.show()
        except Exception:  # noqa: BLE001  (the LED must not stop the reset)
            pass
        import time
        time.sleep(self.fault_reboot_s)
        self.board.reboot()

