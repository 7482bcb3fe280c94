"""The sim board: MicroPython unix port, file-backed flash, hardware state shared with the simulator.

The simulator passes a state directory in FLEETBOX_SIM_DIR; the board publishes its
LED pattern there (`led`) so `make sim` can show it live.
"""
import os
import sys

import hal


class Board(hal.Board):
    name = "sim"

    def __init__(self, rom, slot):
        self.rom = rom
        self.slot = slot
        self.state_dir = os.getenv("FLEETBOX_SIM_DIR")
        self._led = None

    def _publish(self, name, value):
        if not self.state_dir:
            return
        tmp = "%s/%s.tmp" % (self.state_dir, name)
        with open(tmp, "w") as f:
            f.write(value)
        os.rename(tmp, "%s/%s" % (self.state_dir, name))

    def led(self, pattern):
        if pattern != self._led:
            self._led = pattern
            self._publish("led", pattern)

    def feed_watchdog(self):
        self._publish("watchdog", "fed")

    def power_source(self):
        return "adapter"

    def reboot(self):
        # The simulator's runner boots the ROM again when the box exits with code 75.
        sys.exit(75)
