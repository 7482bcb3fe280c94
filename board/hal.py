"""The board interface: everything the firmware asks of the hardware, and nothing else.

Each board folder (board/<name>/board.py) provides `class Board(hal.Board)`; fbtool
puts that module into the image as `board`, next to this one as `hal`. The firmware
only ever talks to a Board instance, so it never knows which board it runs on.
"""

# LED patterns the firmware can show (docs/boards.md gives each one's blink code).
LED_BOOTING = "booting"
LED_UNPROVISIONED = "unprovisioned"
LED_RUNNING = "running"
LED_UPLINK_FAILING = "uplink-failing"
LED_UPDATING = "updating"
LED_RESCUE = "rescue"
LED_FAULT = "fault"


class Board:
    name = "abstract"
    identity_dir = "/identity"   # factory identity, mounted read-only
    data_dir = "/data"           # LittleFS for config and spool

    def identity(self):
        """The factory identity dict (serial, device key, key id) written by fbtool."""
        import json
        with open(self.identity_dir + "/identity.json") as f:
            return json.load(f)

    def led(self, pattern):
        raise NotImplementedError

    def feed_watchdog(self):
        raise NotImplementedError

    def link_up(self):
        return True

    def power_source(self):
        return "unknown"

    def reboot(self):
        raise NotImplementedError
