"""The esp32-poe board: ESP32 + LAN8720 (RMII) + PoE, on MicroPython's esp32 port.

Written against MicroPython 1.29's documented APIs (network.LAN, esp32.Partition,
machine.WDT/Pin/Timer/unique_id/reset); pins as in board.yaml. It runs on no
hardware here: `fbtool build --board esp32-poe` compiles it, that is all it is tested for.
"""
import binascii
import time

import esp32  # noqa: F401  (the ROM shim, rom.py, finds partitions with it)
import machine
import network

import hal

WATCHDOG_S = 60                  # board.yaml hardware.watchdog_s
DEVICE_MEMORY = 80               # board.yaml hardware.device_memory
PIN_LED = 33                     # active high
PIN_BUTTON = 34                  # BUT1, active low, external pull-up
PIN_POWER_SENSE = 39             # high: 5 V adapter present; low: PoE
ETH = dict(mdc=23, mdio=18, power=12, ref_clk=17, phy_addr=0)


class Board(hal.Board):
    name = "esp32-poe"
    has_rtc = False              # the RTC does not survive a power cut: time comes from the cloud
    device_memory = DEVICE_MEMORY

    def __init__(self, rom, slot):
        # First: the watchdog at the app's period. rom.lock_down started it at power-on for the
        # loader; making it again reconfigures its timeout on the esp32 port (were it not to, the
        # boot period would stay: still a watchdog).
        self.watchdog_ms = WATCHDOG_S * 1000
        self._wdt = machine.WDT(timeout=self.watchdog_ms)
        hal.Board.__init__(self)
        self.rom = rom
        self.slot = slot
        # Status LED: a 125 ms timer steps through the pattern's blink code (hal.LED_BLINK).
        self._led_pin = machine.Pin(PIN_LED, machine.Pin.OUT, value=0)
        self._code = hal.LED_BLINK[hal.LED_BOOTING]
        self._step = 0
        self._timer = machine.Timer(0)
        self._timer.init(period=hal.LED_STEP_MS, mode=machine.Timer.PERIODIC, callback=self._blink)
        # Button: edges timed in the (soft) interrupt handler, turned into events by poll().
        self._button = machine.Pin(PIN_BUTTON, machine.Pin.IN)
        self._down_at = None
        self._held_ms = None
        self._button.irq(trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, handler=self._on_button)
        self._sense = machine.Pin(PIN_POWER_SENSE, machine.Pin.IN)
        self._power = self._read_power()
        # Ethernet: DHCP starts with the interface; lwIP refuses traffic while the link is down.
        self.lan = network.LAN(mdc=machine.Pin(ETH["mdc"]), mdio=machine.Pin(ETH["mdio"]),
                               power=machine.Pin(ETH["power"]), phy_type=network.PHY_LAN8720,
                               phy_addr=ETH["phy_addr"], ref_clk=machine.Pin(ETH["ref_clk"]),
                               ref_clk_mode=machine.Pin.OUT)
        self.lan.active(True)
        self._link = self._read_link()
        self.led(hal.LED_BOOTING)

    # -- hardware reads
    def _read_link(self):
        return self.lan.status() in (network.ETH_CONNECTED, network.ETH_GOT_IP)

    def _read_power(self):
        return hal.POWER_ADAPTER if self._sense.value() else hal.POWER_POE

    def _on_button(self, pin):
        now = time.ticks_ms()
        if pin.value() == 0:
            self._down_at = now
        elif self._down_at is not None:
            self._held_ms = time.ticks_diff(now, self._down_at)
            self._down_at = None

    def _blink(self, timer):
        code = self._code
        self._led_pin.value(code[self._step % len(code)] == "1")
        self._step += 1

    # -- hal.Board
    def unique_id(self):
        return binascii.hexlify(machine.unique_id()).decode()

    def partition(self, name):
        return self.rom.partition(name)

    def link_up(self):
        return self._link

    def address(self):
        if not self._link:
            return None
        addr = self.lan.ifconfig()[0]
        return None if addr == "0.0.0.0" else addr

    def mac(self):
        return ":".join("%02x" % b for b in self.lan.config("mac"))

    def power_source(self):
        return self._power

    def show_led(self, pattern):
        self._code = hal.LED_BLINK[pattern]
        self._step = 0

    def poll(self):
        events = self._link_power_changes()
        held, self._held_ms = self._held_ms, None
        if held is not None:
            events.append(hal.button_event(held))
        return events

    def feed_watchdog(self):
        self._wdt.feed()

    def reboot(self):
        machine.reset()
