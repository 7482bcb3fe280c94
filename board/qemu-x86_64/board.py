"""The qemu-x86_64 board: the QEMU appliance, MicroPython as PID 1 on Linux (docs/boards.md).

Its hardware is what QEMU emulates and the ROM (rom.py, /init) brought up:
  flash     the virtio disk /dev/vda, partitions served by the ROM (O_SYNC writes)
  network   the virtio NIC eth0: carrier from sysfs, address from the DHCP client (dhcp.py)
  watchdog  the i6300esb: /dev/watchdog opened at the first feed, a byte written per feed
  LED       "board: led PATTERN" lines on the serial console (the host draws the LED)
  button    "button HELD_MS" lines typed on the serial console; "power poe|adapter" and
            "hang" (the watchdog test's firmware bug) likewise
  reset     reboot(RESTART): the VM resets; a power cut is the host killing QEMU
The box opens no listening socket: the console is read from the firmware's loop.
"""
import json
import select
import struct
import sys
import time

import hal

WATCHDOG_S = 60          # board.yaml hardware.watchdog_s (the ROM loads i6300esb with this heartbeat)
DEVICE_MEMORY = 512      # board.yaml hardware.device_memory
IFNAME = "eth0"
DHCP_BOOT_WAIT_MS = 30000
O_WRONLY = 1
TCGETS = 0x5401
TCSETS = 0x5402
ECHO = 0o10


def _read_text(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def log(msg):
    print("board: " + msg)


class _Socket:
    """The runtime's socket module with the Linux constants Debian's 1.25 build leaves out."""
    MSG_PEEK = 2

    def __init__(self, real):
        for name in dir(real):
            if not name.startswith("__"):
                setattr(self, name, getattr(real, name))


def _complete_socket_module():
    # Before the firmware imports `socket` (port.recv_datagram peeks at datagrams).
    import socket
    if not hasattr(socket, "MSG_PEEK"):
        sys.modules["socket"] = _Socket(socket)


_complete_socket_module()   # on import: the loader imports the board before the firmware


class Board(hal.Board):
    name = "qemu-x86_64"
    has_rtc = False      # the kernel's clock serves TLS validity checks; the firmware's is learnt from the cloud
    watchdog_ms = WATCHDOG_S * 1000
    device_memory = DEVICE_MEMORY

    def __init__(self, rom_, slot):
        hal.Board.__init__(self)
        self.rom = rom_
        self.slot = slot
        self._power = hal.POWER_ADAPTER
        self._pending = []       # events read from the console, returned by the next poll()
        self._wdt = None
        self._console = bytearray(128)
        self._line = b""
        self._quiet_console()
        self._poller = select.poll()
        self._poller.register(sys.stdin, select.POLLIN)
        import dhcp
        self.dhcp = dhcp.Client(IFNAME, log)
        self._link = self._read_link()
        self.led(hal.LED_BOOTING)
        if self._link:
            self.dhcp.wait(DHCP_BOOT_WAIT_MS)
        self._publish_state()

    def _quiet_console(self):
        # The console echoes what the host types; commands are not output.
        tio = bytearray(60)
        if self.rom.ioctl(0, TCGETS, tio) == 0:
            lflag = struct.unpack_from("<I", tio, 12)[0]
            struct.pack_into("<I", tio, 12, lflag & ~ECHO)
            self.rom.ioctl(0, TCSETS, tio)

    def _publish_state(self):
        print("board: state " + json.dumps({
            "led": self._led, "link": self._link, "power": self._power, "address": self.address(),
            "mac": self.mac(), "slot": self.slot, "time": self.time()}))

    # -- hal.Board
    def unique_id(self):
        # The NIC's burnt-in MAC is the box's unique id, as on an ESP32.
        return self.mac().replace(":", "")

    def partition(self, name):
        return self.rom.partition(name)

    def _read_link(self):
        return _read_text("/sys/class/net/%s/carrier" % IFNAME, "0") == "1"

    def _read_power(self):
        return self._power

    def link_up(self):
        return self._link

    def address(self):
        return self.dhcp.address if self._link else None

    def mac(self):
        return _read_text("/sys/class/net/%s/address" % IFNAME, "00:00:00:00:00:00")

    def power_source(self):
        return self._power

    def show_led(self, pattern):
        print("board: led " + pattern)

    def poll(self):
        self._read_console()
        before = self.dhcp.address
        was_link = self._link
        events = self._link_power_changes()
        if self._link and not was_link:
            self.dhcp.restart()   # plugged in again: maybe another network
        if self._link:
            self.dhcp.poll()
        events += self._pending
        self._pending = []
        if events or before != self.dhcp.address:
            self._publish_state()
        return events

    def _read_console(self):
        while self._poller.poll(0):
            n = self.rom.read(0, self._console, len(self._console))
            if n <= 0:
                return
            self._line += bytes(self._console[:n])
            while b"\n" in self._line:
                line, self._line = self._line.split(b"\n", 1)
                self._command(line.decode().strip())
            if len(self._line) > 256:
                self._line = b""

    def _command(self, line):
        words = line.split()
        if len(words) == 2 and words[0] == "button" and words[1].isdigit():
            self._pending.append(hal.button_event(int(words[1])))
        elif len(words) == 2 and words[0] == "power" and words[1] in (hal.POWER_POE, hal.POWER_ADAPTER):
            self._power = words[1]
        elif words == ["hang"]:
            # A firmware bug made to order for the watchdog: a loop that never yields, so no feed.
            log("hanging on purpose (injected fault)")
            while True:
                time.ticks_ms()
        elif words:
            log("ignoring console input %r" % line)

    def set_time(self, unix_s):
        hal.Board.set_time(self, unix_s)
        self._publish_state()

    def feed_watchdog(self):
        if self._wdt is None:
            self._wdt = self.rom.open_fd("/dev/watchdog", O_WRONLY)   # opening starts it; it never stops
            log("watchdog started (%d s)" % WATCHDOG_S)
        self.rom.write(self._wdt, b"\0", 1)

    def reboot(self):
        self.rom.reset()
