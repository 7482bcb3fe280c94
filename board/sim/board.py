"""The sim board: MicroPython unix port, file-backed flash, hardware state shared with the simulator.

The simulator (simulator/hardware.py) is this board's hardware. It passes a state
directory in FLEETBOX_SIM_DIR; everything crosses it as small files, replaced by
atomic rename (docs/boards.md, "The sim board"):

  written by the box        led, watchdog (a counter, bumped on every feed), state.json
  written by the simulator  link ("up"/"down": the cable), power ("poe"/"adapter"),
                            events/<n> (one line: "button <held ms>" or "hang"),
                            flash ("ok", "enospc" or "eio": how the data partition's
                            writes fail from now on, the flash-full/flash-eio faults)

The box opens no listening socket: it polls the inputs from its main loop.
While the cable is out, the network layer refuses every new socket and address
lookup with OSError(ENETDOWN), as a real stack does with its interface down.
"""
import json
import os
import sys

import hal
from fleetbox import port

WATCHDOG_S = 60   # board.yaml hardware.watchdog_s; the simulator may set a shorter one
DEVICE_MEMORY = 512   # board.yaml hardware.device_memory
ENETDOWN = 100    # Linux errno "Network is down" (MicroPython's errno module lacks the name)
FLASH_FAULTS = {"ok": 0, "enospc": port.ENOSPC, "eio": port.EIO}


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


class _Network:
    """The socket module as the box sees it: the host's, cut off while the link is down."""

    def __init__(self, real, link_up):
        for name in dir(real):
            if not name.startswith("__") and name not in ("socket", "getaddrinfo"):
                setattr(self, name, getattr(real, name))
        self._real = real
        self._link_up = link_up

    def _check(self):
        if not self._link_up():
            raise OSError(ENETDOWN)

    def socket(self, *args):
        self._check()
        return self._real.socket(*args)

    def getaddrinfo(self, *args):
        self._check()
        return self._real.getaddrinfo(*args)


class Board(hal.Board):
    name = "sim"
    has_rtc = False
    device_memory = DEVICE_MEMORY

    def __init__(self, rom, slot):
        hal.Board.__init__(self)
        self.rom = rom
        self.slot = slot
        self.state_dir = os.getenv("FLEETBOX_SIM_DIR")
        self.watchdog_ms = int(float(os.getenv("FLEETBOX_SIM_WATCHDOG_S") or WATCHDOG_S) * 1000)
        if os.getenv("FLEETBOX_SIM_RTC") == "1":
            self.has_rtc = True
        self._feeds = 0
        self._link = self._read_link()
        self._power = self._read_power()
        self._install_network()
        self._flash_errno = 0
        self._read_flash()
        port.set_flash_fault(self._flash_fault)
        self.led(hal.LED_BOOTING)

    # -- the files shared with the simulator
    def _path(self, name):
        return "%s/%s" % (self.state_dir, name)

    def _publish(self, name, value):
        if not self.state_dir:
            return
        tmp = self._path(name + ".tmp")
        with open(tmp, "w") as f:
            f.write(value)
        os.rename(tmp, self._path(name))

    def _publish_state(self):
        self._publish("state.json", json.dumps({
            "led": self._led, "link": self._link, "power": self._power,
            "address": self.address(), "mac": self.mac(), "slot": self.slot,
            "time": self.time()}))

    def _read_link(self):
        return _read(self._path("link"), "up") != "down" if self.state_dir else True

    def _read_power(self):
        if not self.state_dir:
            return hal.POWER_ADAPTER
        p = _read(self._path("power"), hal.POWER_ADAPTER)
        return p if p in (hal.POWER_POE, hal.POWER_ADAPTER) else hal.POWER_UNKNOWN

    def _read_flash(self):
        mode = _read(self._path("flash"), "ok") if self.state_dir else "ok"
        errno = FLASH_FAULTS.get(mode, 0)
        if errno != self._flash_errno:
            port.log("board", port.WARN, "flash switch: %s (injected fault)" % mode)
            self._flash_errno = errno

    def _flash_fault(self, op, path):
        # every write to the data partition (fleetbox.port's file functions) fails while the switch
        # is on, and a failing chip (EIO) fails reads too; a full flash still reads and deletes
        # (deleting is how room is made)
        if not path.startswith(self.data_dir + "/") or (
                op in ("remove", "list", "read") and self._flash_errno == port.ENOSPC):
            return 0
        return self._flash_errno

    def _install_network(self):
        # Before the firmware imports `socket`: from then on every socket goes through the link.
        import socket
        if not isinstance(socket, _Network):
            sys.modules["socket"] = _Network(socket, self.link_up)

    # -- hal.Board
    def unique_id(self):
        # A chip id derived from the factory-programmed flash: stable for this flash file.
        import hashlib
        import binascii
        h = hashlib.sha256(("sim:" + self.rom.flash_path).encode()).digest()
        return binascii.hexlify(h[:6]).decode()

    def partition(self, name):
        return self.rom.partition(name)

    def link_up(self):
        return self._link

    def address(self):
        # The host's loopback stands in for DHCP: an address exactly while the link is up.
        return "127.0.0.1" if self._link else None

    def mac(self):
        uid = self.unique_id()
        # Locally administered, unicast (02:...), like a MAC derived from a chip id.
        return ":".join(["02"] + [uid[i:i + 2] for i in range(2, 12, 2)])

    def power_source(self):
        return self._power

    def show_led(self, pattern):
        self._publish("led", pattern)
        self._publish_state()

    def poll(self):
        if not self.state_dir:
            return []
        self._read_flash()
        events = self._link_power_changes()
        events += self._input_events()
        if events:
            self._publish_state()
        return events

    def _input_events(self):
        d = self._path("events")
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return []
        out = []
        for n in names[:16]:
            line = _read(d + "/" + n, "")
            try:
                os.remove(d + "/" + n)
            except OSError:
                pass
            words = line.split()
            if len(words) == 2 and words[0] == "button" and words[1].isdigit():
                out.append(hal.button_event(int(words[1])))
            elif words == ["hang"]:
                self._hang()
            else:
                port.log("board", port.WARN, "ignoring unknown input event %r" % line)
        return out

    def _hang(self):
        # A firmware bug made to order for the watchdog tests: a loop that never yields.
        port.log("board", port.WARN, "hanging on purpose (injected fault)")
        while True:
            port.ticks_ms()

    def set_time(self, unix_s):
        hal.Board.set_time(self, unix_s)
        self._publish_state()

    def feed_watchdog(self):
        # The simulator starts its watchdog at the first feed and resets the box
        # (kills and boots it again) when the counter stops moving for watchdog_ms.
        self._feeds += 1
        self._publish("watchdog", str(self._feeds))

    def reboot(self):
        self.rom.reset()
