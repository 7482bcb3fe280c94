"""The board interface: everything the firmware asks of the hardware, and nothing else.

Each board folder (board/<name>/board.py) provides `class Board(hal.Board)`; fbtool
puts that module into the image as `board`, next to this one as `hal`. The firmware
only ever talks to a Board instance, so it never knows which board it runs on.
docs/boards.md is the contract a port must meet; this module holds what is common.
"""
from fleetbox import port

# LED patterns the firmware can show (docs/boards.md gives each one's blink code).
LED_BOOTING = "booting"
LED_UNPROVISIONED = "unprovisioned"
LED_RUNNING = "running"
LED_NO_LINK = "no-link"
LED_UPLINK_FAILING = "uplink-failing"
LED_UPDATING = "updating"
LED_RESCUE = "rescue"
LED_FAULT = "fault"
LED_REVOKED = "revoked"
LED_PATTERNS = (LED_BOOTING, LED_UNPROVISIONED, LED_RUNNING, LED_NO_LINK, LED_UPLINK_FAILING,
                LED_UPDATING, LED_RESCUE, LED_FAULT, LED_REVOKED)

# Blink codes: one character per LED_STEP_MS step ("1" on, "0" off), repeated; docs/boards.md.
LED_STEP_MS = 125
LED_BLINK = {
    LED_BOOTING: "1100110011001100",        # 4 Hz flicker
    LED_UNPROVISIONED: "1111111100000000",  # slow 0.5 Hz blink
    LED_RUNNING: "1111111111111110",        # on, with a short dark beat every 2 s (alive)
    LED_NO_LINK: "1000000000000000",        # one flash every 2 s
    LED_UPLINK_FAILING: "1010000000000000",  # two flashes every 2 s
    LED_RESCUE: "1010100000000000",         # three flashes every 2 s
    LED_UPDATING: "1111000011110000",       # 1 Hz blink
    LED_FAULT: "1010101010101010",          # 4 Hz rapid blink
    LED_REVOKED: "1111111111110000",        # long on, short off: the cloud revoked the box
}

# Events Board.poll() returns, as (kind, value) pairs.
EV_LINK = "link"          # value: True (cable in, link negotiated) or False
EV_POWER = "power"        # value: POWER_POE or POWER_ADAPTER
EV_BUTTON = "button"      # value: BUTTON_PRESS or BUTTON_LONG_PRESS

POWER_POE = "poe"
POWER_ADAPTER = "adapter"
POWER_UNKNOWN = "unknown"

BUTTON_PRESS = "press"
BUTTON_LONG_PRESS = "long-press"
BUTTON_FACTORY_RESET = "factory-reset"
LONG_PRESS_MS = 5000      # held at least this long: a long press
FACTORY_RESET_MS = 10000  # held at least this long: factory reset (docs/provisioning.md)


def button_event(held_ms):
    """The button event of a press held for held_ms (every board classifies presses alike)."""
    if held_ms >= FACTORY_RESET_MS:
        return (EV_BUTTON, BUTTON_FACTORY_RESET)
    return (EV_BUTTON, BUTTON_LONG_PRESS if held_ms >= LONG_PRESS_MS else BUTTON_PRESS)


class Board:
    name = "abstract"
    identity_dir = "/identity"   # factory identity, mounted read-only
    data_dir = "/data"           # LittleFS for config and spool

    def _link_power_changes(self):
        """Events for link and power changes since the last poll; boards provide
        _read_link() and _read_power() and keep the last values in _link and _power."""
        events = []
        link = self._read_link()
        if link != self._link:
            self._link = link
            events.append((EV_LINK, link))
        power = self._read_power()
        if power != self._power:
            self._power = power
            events.append((EV_POWER, power))
        return events
    watchdog_ms = 60000          # the hardware watchdog's timeout once started
    has_rtc = False              # True: time() is right from power-on
    device_memory = 512          # devices the firmware remembers between sweeps: what the heap holds

    def __init__(self):
        self._clock = None       # (unix ms, ticks ms) of the last clock reading
        self._led = None         # the LED pattern shown (led())

    # -- identity and storage
    def identity(self):
        """The factory identity dict (serial, device key, key id) written by fbtool."""
        import json
        with open(self.identity_dir + "/identity.json") as f:
            return json.load(f)

    def unique_id(self):
        """The chip's unique id as lowercase hex (burnt in at the factory, never changes)."""
        raise NotImplementedError

    def partition(self, name):
        """The flash partition `name` as a block device (readblocks/writeblocks/ioctl)."""
        raise NotImplementedError

    # -- network
    def link_up(self):
        """True while the ethernet cable is in and the link is negotiated."""
        return True

    def address(self):
        """The box's IPv4 address (DHCP on real boards) as a string, or None while it has none."""
        return None

    def mac(self):
        """The ethernet MAC address as 'aa:bb:cc:dd:ee:ff'."""
        raise NotImplementedError

    # -- power, LED, button
    def power_source(self):
        """POWER_POE, POWER_ADAPTER or POWER_UNKNOWN."""
        return POWER_UNKNOWN

    def led(self, pattern):
        """Show one of LED_PATTERNS; the board does the blinking (show_led). The same
        pattern again changes nothing."""
        if pattern not in LED_PATTERNS:
            raise ValueError("unknown LED pattern %r" % pattern)
        if pattern != self._led:
            self._led = pattern
            self.show_led(pattern)

    def show_led(self, pattern):
        """The board's part of led(): start showing a new, known pattern."""
        raise NotImplementedError

    def poll(self):
        """Events since the last call: a list of (EV_*, value). Called a few times a second."""
        return []

    # -- watchdog, reset
    def feed_watchdog(self):
        """Start the watchdog on the first call, then keep it from resetting the box."""
        raise NotImplementedError

    def reboot(self):
        """Reset the box now; does not return."""
        raise NotImplementedError

    # -- clock
    def time(self):
        """UNIX seconds, or None while the box has no RTC and has not learnt the time yet."""
        if self._clock is None:
            return None
        unix_ms, ticks = self._clock
        now = port.ticks_ms()
        # Re-anchored on every reading, so the ticks counter wrapping never shows.
        unix_ms += port.ticks_diff(now, ticks)
        self._clock = (unix_ms, now)
        return unix_ms // 1000

    def set_time(self, unix_s):
        """Set the clock (from the cloud's reply when the board has no RTC)."""
        self._clock = (int(unix_s) * 1000, port.ticks_ms())
